//! The broker's TLS and WebSocket listeners on the wire: raw MQTT packets over rustls and over
//! a raw tungstenite client, so frame boundaries are under the test's control.

mod common;
mod transports_pki;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amqtt_broker::{Broker, BrokerConfig, BrokerError};
use bytes::{Bytes, BytesMut};
use common::{bounded, connect, filter, pid, publish, RawClient, RECV_DEADLINE};
use futures_util::{SinkExt, StreamExt};
use mqtt_codec::packet::{ConnAck, Packet, Subscribe};
use mqtt_codec::{ConnectReturnCode, Decoder, QoS};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use transports_pki::{CertFiles, Pki};

/// Starts a broker from `listeners_yaml` (the body of the `listeners` section) plus `extra`.
async fn start(listeners_yaml: &str, extra: &str) -> Broker {
    let yaml = format!("listeners:\n{listeners_yaml}\n{extra}");
    let config = BrokerConfig::from_yaml_str(&yaml).expect("test config");
    let broker = Broker::new(config).expect("broker");
    broker.start().await.expect("start");
    broker
}

fn addr(broker: &Broker, name: &str) -> SocketAddr {
    broker.local_addr(name).expect("listener bound")
}

fn encode(packets: &[Packet]) -> BytesMut {
    let mut out = BytesMut::new();
    for p in packets {
        p.encode(&mut out).expect("encodable packet");
    }
    out
}

/// MQTT packets over any byte stream (here: TLS).
struct StreamClient<S> {
    io: S,
    buf: BytesMut,
    decoder: Decoder,
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamClient<S> {
    fn new(io: S) -> Self {
        StreamClient {
            io,
            buf: BytesMut::new(),
            decoder: Decoder::new(usize::MAX >> 1),
        }
    }

    async fn send(&mut self, packets: &[Packet]) -> std::io::Result<()> {
        self.io.write_all(&encode(packets)).await?;
        self.io.flush().await
    }

    /// The next packet; `Err` on end of stream, a read error or the deadline.
    async fn recv(&mut self) -> Result<Packet, String> {
        let read = async {
            loop {
                if let Some(p) = self.decoder.decode(&mut self.buf).expect("valid packet") {
                    return Ok(p);
                }
                match self.io.read_buf(&mut self.buf).await {
                    Ok(0) => return Err("end of stream".to_owned()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("read error: {e}")),
                }
            }
        };
        tokio::time::timeout(RECV_DEADLINE, read)
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()))
    }

    async fn connack(&mut self, client_id: &str) -> Result<ConnAck, String> {
        self.send(&[Packet::Connect(Box::new(connect(client_id, true)))])
            .await
            .map_err(|e| format!("write error: {e}"))?;
        match self.recv().await? {
            Packet::ConnAck(ack) => Ok(ack),
            other => Err(format!("expected CONNACK, got {other:?}")),
        }
    }
}

fn tls_connector(pki: &Pki, client: Option<&CertFiles>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&pki.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(files) => {
            let certs = CertificateDer::pem_file_iter(&files.cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    pki: &Pki,
    client: Option<&CertFiles>,
    addr: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tls_connector(pki, client).connect(name, tcp).await
}

/// CONNECT over TLS with `client` as the client certificate: the CONNACK, or why there is none.
async fn tls_connack(
    pki: &Pki,
    client: Option<&CertFiles>,
    addr: SocketAddr,
) -> Result<ConnAck, String> {
    let tls = tls_connect(pki, client, addr)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    StreamClient::new(tls).connack("mtls").await
}

/// Subscribes `sub` to `t/#` at QoS 1, publishes QoS 1 from `publisher`, checks the round trip.
async fn qos1_round_trip<A, B>(sub: &mut StreamClient<A>, publisher: &mut StreamClient<B>)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    sub.send(&[Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: vec![(filter("t/#"), QoS::AtLeastOnce)],
    })])
    .await
    .unwrap();
    assert!(matches!(sub.recv().await.unwrap(), Packet::SubAck(_)));
    publisher
        .send(&[Packet::Publish(publish(
            "t/1",
            b"hello",
            QoS::AtLeastOnce,
            false,
            7,
        ))])
        .await
        .unwrap();
    assert_eq!(publisher.recv().await.unwrap(), Packet::PubAck(pid(7)));
    match sub.recv().await.unwrap() {
        Packet::Publish(p) => {
            assert_eq!(&p.payload[..], b"hello");
            assert_eq!(p.qos_pid.qos(), QoS::AtLeastOnce);
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[tokio::test]
async fn tls_listener_carries_qos1_traffic() {
    bounded(async {
        let pki = Pki::new();
        let broker = start(
            &format!(
                "  default: {{type: tcp, bind: \"127.0.0.1:0\", {}}}",
                pki.server_yaml()
            ),
            "",
        )
        .await;
        let a = addr(&broker, "default");
        let mut sub = StreamClient::new(tls_connect(&pki, None, a).await.unwrap());
        assert_eq!(
            sub.connack("sub").await.unwrap().return_code,
            ConnectReturnCode::Accepted
        );
        let mut publisher = StreamClient::new(tls_connect(&pki, None, a).await.unwrap());
        publisher.connack("pub").await.unwrap();
        qos1_round_trip(&mut sub, &mut publisher).await;
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn plain_mqtt_on_a_tls_listener_is_dropped_and_the_listener_keeps_serving() {
    bounded(async {
        let pki = Pki::new();
        let broker = start(
            &format!(
                "  default: {{bind: \"127.0.0.1:0\", {}}}",
                pki.server_yaml()
            ),
            "",
        )
        .await;
        let a = addr(&broker, "default");
        let mut plain = TcpStream::connect(a).await.unwrap();
        plain
            .write_all(&encode(&[Packet::Connect(Box::new(connect(
                "plain", true,
            )))]))
            .await
            .unwrap();
        // The broker answers with a TLS alert at most, never a CONNACK, and closes.
        let mut answer = Vec::new();
        let read = tokio::time::timeout(RECV_DEADLINE, plain.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "closed within the deadline");
        assert_ne!(answer.first(), Some(&0x20), "{answer:?}");
        tls_connack(&pki, None, a).await.unwrap();
        broker.shutdown().await;
    })
    .await;
}

fn mtls_listener(pki: &Pki, ca_key: &str) -> String {
    format!(
        "  default: {{bind: \"127.0.0.1:0\", {}, {ca_key}}}",
        pki.server_yaml()
    )
}

#[tokio::test]
async fn mutual_tls_accepts_a_client_certificate_signed_by_the_ca() {
    bounded(async {
        let pki = Pki::new();
        let broker = start(&mtls_listener(&pki, &format!("cafile: {:?}", pki.ca)), "").await;
        let ack = tls_connack(&pki, Some(&pki.client), addr(&broker, "default"))
            .await
            .unwrap();
        assert_eq!(ack.return_code, ConnectReturnCode::Accepted);
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    bounded(async {
        let pki = Pki::new();
        let broker = start(&mtls_listener(&pki, &format!("cafile: {:?}", pki.ca)), "").await;
        let a = addr(&broker, "default");
        let refused = tls_connack(&pki, None, a).await;
        assert!(refused.is_err(), "got {refused:?}");
        // The listener still serves a client with a good certificate.
        tls_connack(&pki, Some(&pki.client), a).await.unwrap();
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn mutual_tls_refuses_a_certificate_from_another_ca() {
    bounded(async {
        let pki = Pki::new();
        let broker = start(&mtls_listener(&pki, &format!("cafile: {:?}", pki.ca)), "").await;
        let refused = tls_connack(&pki, Some(&pki.rogue_client), addr(&broker, "default")).await;
        let why = refused.expect_err("a certificate from another CA is refused");
        assert!(
            why.contains("handshake")
                || why.contains("read error")
                || why.contains("end of stream"),
            "{why}"
        );
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn client_ca_from_capath_and_from_cadata_works_too() {
    bounded(async {
        let pki = Pki::new();
        let capath = pki.dir().join("cas");
        std::fs::create_dir(&capath).unwrap();
        std::fs::copy(&pki.ca, capath.join("ca.pem")).unwrap();
        for ca_key in [
            format!("capath: {capath:?}"),
            format!("cadata: {:?}", pki.ca_pem),
        ] {
            let broker = start(&mtls_listener(&pki, &ca_key), "").await;
            let a = addr(&broker, "default");
            tls_connack(&pki, Some(&pki.client), a).await.unwrap();
            assert!(tls_connack(&pki, Some(&pki.rogue_client), a).await.is_err());
            broker.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_stalled_handshake_is_dropped_at_connect_timeout_without_blocking_others() {
    bounded(async {
        let pki = Pki::new();
        let broker = start(
            &format!(
                "  default: {{bind: \"127.0.0.1:0\", {}}}",
                pki.server_yaml()
            ),
            "connect_timeout: 1",
        )
        .await;
        let a = addr(&broker, "default");
        // Opens TCP and never starts the TLS handshake.
        let mut silent = TcpStream::connect(a).await.unwrap();
        // Meanwhile another client is served at once.
        tls_connack(&pki, None, a).await.unwrap();
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut byte))
            .await
            .expect("closed within connect_timeout + margin");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn unreadable_certificate_is_a_config_error_naming_the_key() {
    let pki = Pki::new();
    let garbage = pki.dir().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let yaml = format!(
        "listeners: {{default: {{bind: \"127.0.0.1:0\", ssl: true, certfile: {garbage:?}, keyfile: {:?}}}}}",
        pki.server.key
    );
    let config = BrokerConfig::from_yaml_str(&yaml).expect("files exist, so the YAML is valid");
    match Broker::new(config) {
        Err(BrokerError::Config(e)) => {
            assert_eq!(e.key, "listeners.default.certfile");
            assert!(e.message.contains("garbage.pem"), "{e}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    // A key that does not belong to the certificate.
    let yaml = format!(
        "listeners: {{default: {{bind: \"127.0.0.1:0\", ssl: true, certfile: {:?}, keyfile: {:?}}}}}",
        pki.server.cert, pki.client.key
    );
    match Broker::new(BrokerConfig::from_yaml_str(&yaml).unwrap()) {
        Err(BrokerError::Config(e)) => assert_eq!(e.key, "listeners.default.keyfile", "{e}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

// ---- WebSocket ----

/// A raw WebSocket client: the test decides every frame.
struct WsClient<S> {
    ws: WebSocketStream<S>,
    buf: BytesMut,
    decoder: Decoder,
}

async fn ws_over<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    url: &str,
    subprotocol: Option<&str>,
) -> Result<WsClient<S>, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.into_client_request()?;
    if let Some(p) = subprotocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
    }
    let (ws, response) = tokio_tungstenite::client_async(request, io).await?;
    if let Some(p) = subprotocol {
        let chosen = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(chosen.as_deref(), Some(p.split(',').next().unwrap().trim()));
    }
    Ok(WsClient {
        ws,
        buf: BytesMut::new(),
        decoder: Decoder::new(usize::MAX >> 1),
    })
}

async fn ws_connect(addr: SocketAddr, subprotocol: &str) -> WsClient<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    ws_over(tcp, &format!("ws://{addr}/mqtt"), Some(subprotocol))
        .await
        .expect("upgrade")
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsClient<S> {
    async fn frame(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::Binary(Bytes::copy_from_slice(bytes)))
            .await
            .expect("send frame");
    }

    async fn recv(&mut self) -> Option<Packet> {
        let read = async {
            loop {
                if let Some(p) = self.decoder.decode(&mut self.buf).expect("valid packet") {
                    return Some(p);
                }
                match self.ws.next().await {
                    Some(Ok(Message::Binary(b))) => self.buf.extend_from_slice(&b),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(RECV_DEADLINE, read)
            .await
            .expect("a packet or the close within the deadline")
    }
}

fn ws_listener(extra: &str) -> String {
    format!("  default: {{type: ws, bind: \"127.0.0.1:0\"{extra}}}")
}

#[tokio::test]
async fn ws_packet_split_across_frames_is_reassembled() {
    bounded(async {
        let broker = start(&ws_listener(""), "").await;
        let mut c = ws_connect(addr(&broker, "default"), "mqtt").await;
        let bytes = encode(&[Packet::Connect(Box::new(connect("split", true)))]);
        // One byte per frame for the fixed header, then the rest in two frames.
        c.frame(&bytes[..1]).await;
        c.frame(&bytes[1..2]).await;
        c.frame(&bytes[2..7]).await;
        c.frame(&bytes[7..]).await;
        match c.recv().await {
            Some(Packet::ConnAck(ack)) => assert_eq!(ack.return_code, ConnectReturnCode::Accepted),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn ws_several_packets_in_one_frame_are_all_handled() {
    bounded(async {
        let broker = start(&ws_listener(""), "").await;
        let mut c = ws_connect(addr(&broker, "default"), "mqtt").await;
        let frame = encode(&[
            Packet::Connect(Box::new(connect("batch", true))),
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                filters: vec![(filter("t/#"), QoS::AtLeastOnce)],
            }),
            Packet::Publish(publish("t/a", b"one", QoS::AtLeastOnce, false, 2)),
            Packet::Publish(publish("t/b", b"two", QoS::AtMostOnce, false, 0)),
            Packet::PingReq,
        ]);
        c.frame(&frame).await;
        let mut got = Vec::new();
        while got.len() < 6 {
            got.push(c.recv().await.expect("a packet"));
        }
        assert!(matches!(got[0], Packet::ConnAck(_)), "{got:?}");
        assert!(
            got.iter().any(|p| matches!(p, Packet::SubAck(_))),
            "{got:?}"
        );
        let payloads: Vec<_> = got
            .iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p.payload.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(payloads, vec![Bytes::from("one"), Bytes::from("two")]);
        assert!(got.contains(&Packet::PubAck(pid(2))), "{got:?}");
        assert!(got.contains(&Packet::PingResp), "{got:?}");
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn ws_accepts_the_mqttv31_subprotocol_and_answers_with_it() {
    bounded(async {
        let broker = start(&ws_listener(""), "").await;
        let mut c = ws_connect(addr(&broker, "default"), "mqttv3.1").await;
        c.frame(&encode(&[Packet::Connect(Box::new(connect("v31", true)))]))
            .await;
        assert!(matches!(c.recv().await, Some(Packet::ConnAck(_))));
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn ws_upgrade_without_the_mqtt_subprotocol_is_refused() {
    bounded(async {
        let broker = start(&ws_listener(""), "").await;
        let a = addr(&broker, "default");
        let tcp = TcpStream::connect(a).await.unwrap();
        let refused = ws_over(tcp, &format!("ws://{a}/"), None).await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 400)
            }
            Err(e) => panic!("expected HTTP 400, got {e}"),
            Ok(_) => panic!("expected HTTP 400, got an upgrade"),
        }
        // Any path is fine with the subprotocol.
        let tcp = TcpStream::connect(a).await.unwrap();
        ws_over(tcp, &format!("ws://{a}/any/path?x=1"), Some("mqtt"))
            .await
            .unwrap();
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn ws_message_beyond_the_packet_limit_closes_the_connection() {
    bounded(async {
        let broker = start(&ws_listener(""), "max_packet_size: 1024").await;
        let mut c = ws_connect(addr(&broker, "default"), "mqtt").await;
        c.frame(&encode(&[Packet::Connect(Box::new(connect("big", true)))]))
            .await;
        assert!(matches!(c.recv().await, Some(Packet::ConnAck(_))));
        // 200 KiB in one message: over max_packet_size plus the slack for batched packets.
        let _ =
            c.ws.send(Message::Binary(vec![0u8; 200 * 1024].into()))
                .await;
        assert_eq!(c.recv().await, None);
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn wss_listener_carries_qos1_traffic() {
    bounded(async {
        let pki = Pki::new();
        let broker = start(&ws_listener(&format!(", {}", pki.server_yaml())), "").await;
        let a = addr(&broker, "default");
        let tls = tls_connect(&pki, None, a).await.unwrap();
        let mut c = ws_over(
            tls,
            &format!("wss://localhost:{}/mqtt", a.port()),
            Some("mqtt"),
        )
        .await
        .unwrap();
        c.frame(&encode(&[
            Packet::Connect(Box::new(connect("wss", true))),
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                filters: vec![(filter("t"), QoS::AtLeastOnce)],
            }),
            Packet::Publish(publish("t", b"secure", QoS::AtLeastOnce, false, 3)),
        ]))
        .await;
        let mut got = Vec::new();
        while got.len() < 4 {
            got.push(c.recv().await.expect("a packet"));
        }
        assert!(got.contains(&Packet::PubAck(pid(3))), "{got:?}");
        assert!(
            got.iter()
                .any(|p| matches!(p, Packet::Publish(p) if &p.payload[..] == b"secure")),
            "{got:?}"
        );
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn listeners_of_every_type_run_at_once_each_with_its_own_max_connections() {
    bounded(async {
        let pki = Pki::new();
        let listeners = format!(
            "  default: {{type: tcp, bind: \"127.0.0.1:0\", max_connections: 5}}\n\
             \x20 tls: {{type: tcp, bind: \"127.0.0.1:0\", max_connections: 5, {tls}}}\n\
             \x20 ws: {{type: ws, bind: \"127.0.0.1:0\", max_connections: 1}}\n\
             \x20 wss: {{type: ws, bind: \"127.0.0.1:0\", max_connections: 5, {tls}}}",
            tls = pki.server_yaml()
        );
        let broker = start(&listeners, "").await;
        let mut ws = ws_connect(addr(&broker, "ws"), "mqtt").await;
        ws.frame(&encode(&[
            Packet::Connect(Box::new(connect("ws-sub", true))),
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                filters: vec![(filter("all/#"), QoS::AtLeastOnce)],
            }),
        ]))
        .await;
        assert!(matches!(ws.recv().await, Some(Packet::ConnAck(_))));
        assert!(matches!(ws.recv().await, Some(Packet::SubAck(_))));

        // The ws listener is full: a second WebSocket connection is closed at once…
        let tcp = TcpStream::connect(addr(&broker, "ws")).await.unwrap();
        let second = ws_over(tcp, &format!("ws://{}/", addr(&broker, "ws")), Some("mqtt")).await;
        assert!(second.is_err(), "the ws listener allows one connection");

        // …while the others still accept, and traffic crosses transports.
        let mut tcp = RawClient::connect(addr(&broker, "default")).await;
        tcp.handshake(connect("tcp-pub", true)).await;
        let mut tls =
            StreamClient::new(tls_connect(&pki, None, addr(&broker, "tls")).await.unwrap());
        tls.connack("tls-pub").await.unwrap();
        let wss_addr = addr(&broker, "wss");
        let mut wss = ws_over(
            tls_connect(&pki, None, wss_addr).await.unwrap(),
            &format!("wss://localhost:{}/", wss_addr.port()),
            Some("mqtt"),
        )
        .await
        .unwrap();
        wss.frame(&encode(&[Packet::Connect(Box::new(connect(
            "wss-pub", true,
        )))]))
        .await;
        assert!(matches!(wss.recv().await, Some(Packet::ConnAck(_))));

        tcp.publish("all/tcp", b"from tcp", QoS::AtLeastOnce, false, 1)
            .await;
        tls.send(&[Packet::Publish(publish(
            "all/tls",
            b"from tls",
            QoS::AtLeastOnce,
            false,
            1,
        ))])
        .await
        .unwrap();
        assert_eq!(tls.recv().await.unwrap(), Packet::PubAck(pid(1)));
        wss.frame(&encode(&[Packet::Publish(publish(
            "all/wss",
            b"from wss",
            QoS::AtLeastOnce,
            false,
            1,
        ))]))
        .await;
        assert_eq!(wss.recv().await, Some(Packet::PubAck(pid(1))));
        let mut payloads = Vec::new();
        while payloads.len() < 3 {
            match ws.recv().await {
                Some(Packet::Publish(p)) => {
                    if let Some(id) = p.qos_pid.packet_id() {
                        ws.frame(&encode(&[Packet::PubAck(id)])).await;
                    }
                    payloads.push(p.payload);
                }
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
        payloads.sort();
        assert_eq!(
            payloads,
            vec![
                Bytes::from("from tcp"),
                Bytes::from("from tls"),
                Bytes::from("from wss")
            ]
        );
        broker.shutdown().await;
    })
    .await;
}
