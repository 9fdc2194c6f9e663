//! Shared helpers for the broker's integration tests: a broker on 127.0.0.1:0 and a raw-packet
//! MQTT client built on the codec (it encodes and decodes packets, nothing more: tests drive
//! every protocol step by hand).
#![allow(dead_code)]

pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use amqtt_broker::{Broker, BrokerConfig, Extensions};
use bytes::{Bytes, BytesMut};
use mqtt_codec::packet::{
    ConnAck, Connect, LastWill, Packet, Publish, SubAck, Subscribe, Unsubscribe,
};
use mqtt_codec::{
    ConnectReturnCode, Decoder, KeepAlive, PacketId, Protocol, QoS, QosPid, SubAckReturnCode,
    TopicFilter, TopicName,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for a whole test.
pub const TEST_DEADLINE: Duration = Duration::from_secs(30);
/// How long to wait for one expected packet.
pub const RECV_DEADLINE: Duration = Duration::from_secs(5);
/// How long to wait before concluding that nothing arrives.
pub const QUIET: Duration = Duration::from_millis(300);

/// Runs a test body bounded by [`TEST_DEADLINE`].
pub async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_DEADLINE, body)
        .await
        .expect("test exceeded its deadline");
}

/// A started broker bound to 127.0.0.1:0.
pub struct TestBroker {
    pub broker: Broker,
    pub addr: SocketAddr,
}

impl TestBroker {
    /// Starts a broker with the default test listener plus `extra_yaml` top-level keys.
    pub async fn start() -> TestBroker {
        TestBroker::with_yaml("").await
    }

    pub async fn with_yaml(extra_yaml: &str) -> TestBroker {
        TestBroker::with_yaml_and(extra_yaml, Extensions::default()).await
    }

    pub async fn with_yaml_and(extra_yaml: &str, extensions: Extensions) -> TestBroker {
        let yaml = format!(
            "listeners:\n  default:\n    type: tcp\n    bind: \"127.0.0.1:0\"\n{extra_yaml}"
        );
        TestBroker::with_config(
            BrokerConfig::from_yaml_str(&yaml).expect("test config"),
            extensions,
        )
        .await
    }

    /// Starts a broker with the default test listener plus `extra_yaml`, its plugins built by
    /// the packaged plugin registry (as `Broker::new` does).
    pub async fn with_plugins(extra_yaml: &str) -> TestBroker {
        let yaml = format!(
            "listeners:\n  default:\n    type: tcp\n    bind: \"127.0.0.1:0\"\n{extra_yaml}"
        );
        let broker =
            Broker::new(BrokerConfig::from_yaml_str(&yaml).expect("test config")).expect("broker");
        TestBroker::started(broker).await
    }

    pub async fn with_config(config: BrokerConfig, extensions: Extensions) -> TestBroker {
        let broker = Broker::with_extensions(config, extensions).expect("broker");
        TestBroker::started(broker).await
    }

    async fn started(broker: Broker) -> TestBroker {
        broker.start().await.expect("start");
        let addr = broker.local_addr("default").expect("bound");
        TestBroker { broker, addr }
    }

    /// A raw client that has completed CONNECT with an accepted CONNACK.
    pub async fn client(&self, client_id: &str, clean_session: bool) -> (RawClient, ConnAck) {
        let mut c = RawClient::connect(self.addr).await;
        let ack = c.handshake(connect(client_id, clean_session)).await;
        assert_eq!(
            ack.return_code,
            ConnectReturnCode::Accepted,
            "CONNACK for {client_id}"
        );
        (c, ack)
    }

    /// Asserts that a well-behaved client is served normally: it connects, subscribes, and
    /// receives its own QoS 1 message (run after a bad input, to show the broker survived it).
    pub async fn assert_still_serves(&self) {
        let (mut c, _) = self.client("well-behaved", true).await;
        let ack = c.subscribe(1, &[("check/served", QoS::AtLeastOnce)]).await;
        assert_eq!(
            ack.return_codes,
            [SubAckReturnCode::Success(QoS::AtLeastOnce)]
        );
        c.publish("check/served", b"ok", QoS::AtLeastOnce, false, 2)
            .await;
        assert_eq!(c.receive().await.payload, Bytes::from_static(b"ok"));
        c.disconnect().await;
    }

    pub async fn stop(self) {
        self.broker.shutdown().await;
    }
}

/// A CONNECT with keep-alive 60 s.
pub fn connect(client_id: &str, clean_session: bool) -> Connect {
    Connect {
        protocol: Protocol::V311,
        keep_alive: KeepAlive::from_secs(60),
        client_id: client_id.to_owned(),
        clean_session,
        will: None,
        username: None,
        password: None,
    }
}

pub fn will(topic: &str, payload: &'static [u8], qos: QoS, retain: bool) -> LastWill {
    LastWill {
        topic: topic_name(topic),
        payload: Bytes::from_static(payload),
        qos,
        retain,
    }
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName::new(s).expect("valid topic")
}

pub fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).expect("valid filter")
}

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

pub fn publish(topic: &str, payload: &[u8], qos: QoS, retain: bool, packet_id: u16) -> Publish {
    let qos_pid = match qos {
        QoS::AtMostOnce => QosPid::AtMostOnce,
        QoS::AtLeastOnce => QosPid::AtLeastOnce(pid(packet_id)),
        QoS::ExactlyOnce => QosPid::ExactlyOnce(pid(packet_id)),
    };
    Publish {
        dup: false,
        qos_pid,
        retain,
        topic: topic_name(topic),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// A client that speaks MQTT one packet at a time.
pub struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        RawClient {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(usize::MAX >> 1),
        }
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.encode(&mut out).expect("encodable packet");
        self.send_raw(&out).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends several packets in one write (pipelining).
    pub async fn send_all(&mut self, packets: &[Packet]) {
        let mut out = BytesMut::new();
        for p in packets {
            p.encode(&mut out).expect("encodable packet");
        }
        self.send_raw(&out).await;
    }

    /// Sends CONNECT and returns the CONNACK.
    pub async fn handshake(&mut self, connect: Connect) -> ConnAck {
        self.send(Packet::Connect(Box::new(connect))).await;
        self.recv_connack().await
    }

    /// The next packet, or `None` at end of stream; panics after [`RECV_DEADLINE`].
    pub async fn next(&mut self) -> Option<Packet> {
        self.next_within(RECV_DEADLINE)
            .await
            .expect("a packet or the close within the deadline")
    }

    /// `Err(())` on timeout; `Ok(None)` at end of stream.
    pub async fn next_within(&mut self, deadline: Duration) -> Result<Option<Packet>, ()> {
        let read = async {
            loop {
                if let Some(packet) = self
                    .decoder
                    .decode(&mut self.buf)
                    .expect("broker sent a valid packet")
                {
                    return Some(packet);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(deadline, read).await.map_err(|_| ())
    }

    /// The next packet; panics at end of stream or after the deadline.
    pub async fn recv(&mut self) -> Packet {
        self.next()
            .await
            .expect("a packet, not the end of the stream")
    }

    /// The next packet, which must be a PUBLISH.
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Asserts that nothing arrives for [`QUIET`].
    pub async fn expect_nothing(&mut self) {
        match self.next_within(QUIET).await {
            Err(()) => {}
            Ok(p) => panic!("expected nothing, got {p:?}"),
        }
    }

    /// Asserts that the broker closes the connection without sending anything more.
    pub async fn expect_closed(&mut self) {
        if let Some(p) = self.next().await {
            panic!("expected the connection to close, got {p:?}");
        }
    }

    pub async fn subscribe(&mut self, packet_id: u16, filters: &[(&str, QoS)]) -> SubAck {
        let filters = filters.iter().map(|(f, q)| (filter(f), *q)).collect();
        self.send(Packet::Subscribe(Subscribe {
            packet_id: pid(packet_id),
            filters,
        }))
        .await;
        match self.recv().await {
            Packet::SubAck(ack) => {
                assert_eq!(ack.packet_id, pid(packet_id));
                ack
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub async fn unsubscribe(&mut self, packet_id: u16, filters: &[&str]) {
        let filters = filters.iter().map(|f| filter(f)).collect();
        self.send(Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(packet_id),
            filters,
        }))
        .await;
        assert_eq!(self.recv().await, Packet::UnsubAck(pid(packet_id)));
    }

    /// Publishes and completes the QoS flow as the sender.
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        packet_id: u16,
    ) {
        self.send(Packet::Publish(publish(
            topic, payload, qos, retain, packet_id,
        )))
        .await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => assert_eq!(self.recv().await, Packet::PubAck(pid(packet_id))),
            QoS::ExactlyOnce => {
                assert_eq!(self.recv().await, Packet::PubRec(pid(packet_id)));
                self.send(Packet::PubRel(pid(packet_id))).await;
                assert_eq!(self.recv().await, Packet::PubComp(pid(packet_id)));
            }
        }
    }

    /// Receives a PUBLISH and completes its QoS flow as the receiver.
    pub async fn receive(&mut self) -> Publish {
        let p = self.recv_publish().await;
        self.ack(&p).await;
        p
    }

    pub async fn ack(&mut self, p: &Publish) {
        match p.qos_pid {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(id) => self.send(Packet::PubAck(id)).await,
            QosPid::ExactlyOnce(id) => {
                self.send(Packet::PubRec(id)).await;
                assert_eq!(self.recv().await, Packet::PubRel(id));
                self.send(Packet::PubComp(id)).await;
            }
        }
    }

    pub async fn disconnect(mut self) {
        self.send(Packet::Disconnect).await;
        // The broker closes after DISCONNECT.
        self.expect_closed().await;
    }

    /// Drops the socket without DISCONNECT.
    pub fn drop_connection(self) {}

    /// The socket, for a test that drives it itself from here on (nothing is left buffered
    /// after a handshake).
    pub fn into_stream(self) -> TcpStream {
        assert!(self.buf.is_empty(), "bytes left unread");
        self.stream
    }

    /// The next packet, which must be a CONNACK.
    pub async fn recv_connack(&mut self) -> ConnAck {
        match self.recv().await {
            Packet::ConnAck(ack) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// A PINGREQ answered by PINGRESP.
    pub async fn ping(&mut self) {
        self.send(Packet::PingReq).await;
        assert_eq!(self.recv().await, Packet::PingResp);
    }
}

/// Resident memory of this process in KiB, or `None` where `/proc` is missing (off Linux).
pub fn rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
}
