//! Packet events and packet statistics through a real broker: a plugin listening to
//! `mqtt_packet_sent` / `mqtt_packet_received` sees every packet, including the ones the
//! protocol machine answers by itself (CONNACK, the acks, PINGRESP), in order; and the `$SYS`
//! counters count them, with exact in-flight gauges.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use amqtt_broker::plugins::{BrokerPlugin, ClientInfo, Hooks, PluginManager, PluginRegistry};
use amqtt_broker::{Broker, BrokerConfig};
use async_trait::async_trait;
use common::{bounded, pid, RawClient};
use mqtt_codec::packet::Packet;
use mqtt_codec::QoS;

/// Records `in <client> <PACKET>` and `out <client> <PACKET>` lines.
struct PacketRecorder {
    lines: Arc<Mutex<Vec<String>>>,
}

impl PacketRecorder {
    fn push(&self, direction: &str, session: Option<&ClientInfo>, packet: &Packet) {
        let client = session.map_or("-".to_owned(), |s| s.client_id.to_string());
        self.lines
            .lock()
            .expect("lines")
            .push(format!("{direction} {client} {}", packet.name()));
    }
}

#[async_trait]
impl BrokerPlugin for PacketRecorder {
    fn hooks(&self) -> Hooks {
        Hooks::PACKET_RECEIVED | Hooks::PACKET_SENT
    }
    async fn on_mqtt_packet_received(&self, session: Option<&ClientInfo>, packet: &Packet) {
        self.push("in", session, packet);
    }
    async fn on_mqtt_packet_sent(&self, session: Option<&ClientInfo>, packet: &Packet) {
        self.push("out", session, packet);
    }
}

fn config(plugins: &str) -> BrokerConfig {
    BrokerConfig::from_yaml_str(&format!(
        "listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:0\n{plugins}"
    ))
    .expect("config")
}

async fn client(addr: SocketAddr, id: &str) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    let ack = c.handshake(common::connect(id, true)).await;
    assert_eq!(ack.return_code, mqtt_codec::ConnectReturnCode::Accepted);
    c
}

fn of_client<'a>(lines: &'a [String], prefix: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|l| l.starts_with(prefix))
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn a_plugin_sees_connack_suback_publish_and_puback_sent_in_order() {
    bounded(async {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let config = config("");
        let registry = PluginRegistry::new();
        let manager = PluginManager::builder_for_config(&config, &registry)
            .expect("plugins")
            .plugin(
                "packets",
                Arc::new(PacketRecorder {
                    lines: lines.clone(),
                }),
            )
            .build()
            .expect("manager");
        let broker = Broker::with_plugin_manager(config, manager).expect("broker");
        broker.start().await.expect("start");
        let addr = broker.local_addr("default").expect("bound");

        let mut s = client(addr, "s").await;
        s.subscribe(1, &[("t/#", QoS::AtLeastOnce)]).await;
        let mut p = client(addr, "p").await;
        p.publish("t/1", b"x", QoS::AtLeastOnce, false, 1).await;
        // `s` acknowledges the PUBLISH: a PUBACK only the protocol machine handles.
        let delivered = s.receive().await;
        assert_eq!(delivered.topic.as_str(), "t/1");
        s.publish("elsewhere", b"y", QoS::AtLeastOnce, false, 7)
            .await;
        s.ping().await;
        s.disconnect().await;
        p.disconnect().await;
        broker.shutdown().await;

        let lines = lines.lock().expect("lines").clone();
        assert_eq!(
            of_client(&lines, "out s "),
            [
                "out s CONNACK",
                "out s SUBACK",
                "out s PUBLISH",
                "out s PUBACK",
                "out s PINGRESP"
            ],
            "{lines:#?}"
        );
        assert_eq!(
            of_client(&lines, "in s "),
            [
                "in s SUBSCRIBE",
                "in s PUBACK",
                "in s PUBLISH",
                "in s PINGREQ",
                "in s DISCONNECT"
            ],
            "{lines:#?}"
        );
        assert_eq!(
            of_client(&lines, "out p "),
            ["out p CONNACK", "out p PUBACK"],
            "{lines:#?}"
        );
        // CONNECT arrives before there is a session.
        assert_eq!(of_client(&lines, "in - CONNECT").len(), 2, "{lines:#?}");
    })
    .await;
}

#[tokio::test]
async fn a_refusing_connack_is_reported_as_sent_without_a_session() {
    bounded(async {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let config = config(
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    \
             allow_anonymous: false\n",
        );
        let registry = PluginRegistry::new();
        let manager = PluginManager::builder_for_config(&config, &registry)
            .expect("plugins")
            .plugin(
                "packets",
                Arc::new(PacketRecorder {
                    lines: lines.clone(),
                }),
            )
            .build()
            .expect("manager");
        let broker = Broker::with_plugin_manager(config, manager).expect("broker");
        broker.start().await.expect("start");
        let addr = broker.local_addr("default").expect("bound");
        let mut c = RawClient::connect(addr).await;
        let ack = c.handshake(common::connect("anon", true)).await;
        assert_ne!(ack.return_code, mqtt_codec::ConnectReturnCode::Accepted);
        c.expect_closed().await;
        broker.shutdown().await;
        let lines = lines.lock().expect("lines").clone();
        assert_eq!(lines, ["in - CONNECT", "out - CONNACK"]);
    })
    .await;
}

#[tokio::test]
async fn sys_counts_machine_handled_packets_and_unreleased_qos2_as_inflight_in() {
    bounded(async {
        let broker = Broker::new(config(
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n  \
             amqtt.plugins.sys.broker.BrokerSysPlugin:\n    sys_interval: 1\n",
        ))
        .expect("broker");
        broker.start().await.expect("start");
        let addr = broker.local_addr("default").expect("bound");
        let mut reader = client(addr, "reader").await;
        reader
            .subscribe(
                1,
                &[
                    ("$SYS/broker/messages/inflight/in", QoS::AtMostOnce),
                    ("$SYS/broker/messages/inflight/out", QoS::AtMostOnce),
                ],
            )
            .await;
        let mut slow = client(addr, "slow").await;
        slow.subscribe(1, &[("q/1", QoS::AtLeastOnce)]).await;
        let mut p = client(addr, "p").await;

        // A QoS 2 message held unreleased: PUBREC came back, no PUBREL yet.
        p.send(Packet::Publish(common::publish(
            "held",
            b"x",
            QoS::ExactlyOnce,
            false,
            1,
        )))
        .await;
        assert_eq!(p.recv().await, Packet::PubRec(pid(1)));
        // A QoS 1 message `slow` never acknowledges.
        p.publish("q/1", b"y", QoS::AtLeastOnce, false, 2).await;
        let unacked = slow.recv_publish().await;
        assert_eq!(unacked.topic.as_str(), "q/1");
        p.ping().await;

        // Exact counts: the answers the machine sends itself (PUBREC, PUBACK, PINGRESP) and the
        // PINGREQ it answers are counted too.
        let stats = broker.stats();
        assert_eq!(stats.inflight_in, 1);
        assert_eq!(stats.inflight_out, 1);
        // CONNECT ×3, SUBSCRIBE ×2, PUBLISH ×2, PINGREQ.
        assert_eq!(stats.packets_received, 8);
        assert_eq!(stats.publish_received, 2);

        // The next $SYS publications carry the same values.
        let (mut seen_in, mut seen_out) = (false, false);
        while !(seen_in && seen_out) {
            let m = reader.receive().await;
            let value = String::from_utf8(m.payload.to_vec()).expect("ascii");
            match m.topic.as_str() {
                "$SYS/broker/messages/inflight/in" if value == "1" => seen_in = true,
                "$SYS/broker/messages/inflight/out" if value == "1" => seen_out = true,
                _ => {}
            }
        }

        // Releasing and acknowledging brings both gauges back to 0.
        p.send(Packet::PubRel(pid(1))).await;
        assert_eq!(p.recv().await, Packet::PubComp(pid(1)));
        slow.send(Packet::PubAck(unacked.qos_pid.packet_id().expect("QoS 1")))
            .await;
        slow.ping().await;
        let stats = broker.stats();
        assert_eq!(stats.inflight_in, 0);
        assert_eq!(stats.inflight_out, 0);
        // Plus PUBREL, PUBACK, PINGREQ.
        assert_eq!(stats.packets_received, 11);
        broker.shutdown().await;
    })
    .await;
}
