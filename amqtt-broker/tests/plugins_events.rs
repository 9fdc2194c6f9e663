//! Plugin events and the plugin context through a real broker: a custom plugin instance sees
//! aMQTT's events in order and can publish through its context; BrokerSysPlugin publishes
//! every `$SYS/broker/…` topic with plausible values.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amqtt_broker::plugins::{
    BrokerPlugin, ClientInfo, Hooks, PluginContext, PluginManager, PluginRegistry,
};
use amqtt_broker::{Broker, BrokerConfig};
use async_trait::async_trait;
use common::{bounded, RawClient};
use mqtt_codec::packet::Packet;
use mqtt_codec::session::Message;
use mqtt_codec::{QoS, TopicFilter, TopicName};

/// Records every event as a line; greets each client on `greetings/<id>`.
struct Recorder {
    lines: Arc<Mutex<Vec<String>>>,
    context: PluginContext,
}

impl Recorder {
    fn push(&self, line: String) {
        self.lines.lock().expect("lines").push(line);
    }
}

#[async_trait]
impl BrokerPlugin for Recorder {
    fn hooks(&self) -> Hooks {
        Hooks::ALL_EVENTS
    }
    async fn on_broker_pre_start(&self) {
        self.push("pre_start".into());
    }
    async fn on_broker_post_start(&self) {
        self.push("post_start".into());
    }
    async fn on_broker_pre_shutdown(&self) {
        self.push("pre_shutdown".into());
    }
    async fn on_broker_post_shutdown(&self) {
        self.push("post_shutdown".into());
    }
    async fn on_broker_client_connected(&self, session: &ClientInfo) {
        self.push(format!("connected {}", session.client_id));
        let topic = TopicName::new(format!("greetings/{}", session.client_id)).expect("topic");
        assert!(self.context.publish(topic, "hello", QoS::AtMostOnce, false));
    }
    async fn on_broker_client_disconnected(&self, session: &ClientInfo) {
        self.push(format!("disconnected {}", session.client_id));
    }
    async fn on_broker_client_subscribed(
        &self,
        session: &ClientInfo,
        topic: &TopicFilter,
        qos: QoS,
    ) {
        self.push(format!(
            "subscribed {} {topic} {}",
            session.client_id,
            qos.as_u8()
        ));
    }
    async fn on_broker_client_unsubscribed(&self, session: &ClientInfo, topic: &TopicFilter) {
        self.push(format!("unsubscribed {} {topic}", session.client_id));
    }
    async fn on_broker_retained_message(&self, client_id: Option<&str>, message: &Message) {
        self.push(format!("retained {client_id:?} {}", message.topic));
    }
    async fn on_broker_message_received(&self, session: &ClientInfo, message: &Message) {
        self.push(format!("received {} {}", session.client_id, message.topic));
    }
    async fn on_broker_message_broadcast(&self, session: Option<&ClientInfo>, message: &Message) {
        let from = session.map_or("broker".to_owned(), |s| s.client_id.to_string());
        self.push(format!("broadcast {from} {}", message.topic));
    }
    async fn on_mqtt_packet_received(&self, session: Option<&ClientInfo>, packet: &Packet) {
        let from = session.map_or("-".to_owned(), |s| s.client_id.to_string());
        self.push(format!("packet_in {from} {}", packet.name()));
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

fn position(lines: &[String], line: &str) -> usize {
    lines
        .iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("missing event `{line}` in {lines:#?}"))
}

#[tokio::test]
async fn a_custom_plugin_sees_amqtts_events_in_order_and_publishes_through_its_context() {
    bounded(async {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let config = config("");
        let registry = PluginRegistry::new();
        let builder = PluginManager::builder_for_config(&config, &registry).expect("plugins");
        let recorder = Recorder {
            lines: lines.clone(),
            context: builder.context().clone(),
        };
        let manager = builder
            .plugin("recorder", Arc::new(recorder))
            .build()
            .expect("manager");
        let broker = Broker::with_plugin_manager(config, manager).expect("broker");
        broker.start().await.expect("start");
        let addr = broker.local_addr("default").expect("bound");

        let mut s = client(addr, "s").await;
        s.subscribe(
            1,
            &[("t/#", QoS::AtLeastOnce), ("greetings/+", QoS::AtMostOnce)],
        )
        .await;
        let mut p = client(addr, "p").await;
        // The plugin greets `p` when it connects.
        let greeting = s.receive().await;
        assert_eq!(greeting.topic.as_str(), "greetings/p");
        assert_eq!(&greeting.payload[..], b"hello");
        p.publish("t/1", b"x", QoS::AtLeastOnce, true, 1).await;
        assert_eq!(s.receive().await.topic.as_str(), "t/1");
        s.unsubscribe(2, &["t/#"]).await;
        p.disconnect().await;
        s.disconnect().await;
        broker.shutdown().await;

        let lines = lines.lock().expect("lines").clone();
        assert_eq!(lines.first().map(String::as_str), Some("pre_start"));
        assert_eq!(lines.get(1).map(String::as_str), Some("post_start"));
        assert_eq!(lines.last().map(String::as_str), Some("post_shutdown"));
        let order = [
            "connected s",
            "subscribed s t/# 1",
            "subscribed s greetings/+ 0",
            "connected p",
            "broadcast broker greetings/p",
            "received p t/1",
            "retained None t/1",
            "broadcast p t/1",
            "unsubscribed s t/#",
            "disconnected s",
            "pre_shutdown",
        ];
        let positions: Vec<usize> = order.iter().map(|l| position(&lines, l)).collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "events out of order: {lines:#?}"
        );
        position(&lines, "disconnected p");
        position(&lines, "packet_in s SUBSCRIBE");
        position(&lines, "packet_in p PUBLISH");
    })
    .await;
}

#[tokio::test]
async fn broker_sys_publishes_every_sys_topic_with_plausible_values() {
    bounded(async {
        let broker = Broker::new(config(
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n  \
             amqtt.plugins.sys.broker.BrokerSysPlugin:\n    sys_interval: 1\n",
        ))
        .expect("broker");
        broker.start().await.expect("start");
        let addr = broker.local_addr("default").expect("bound");
        let mut c = client(addr, "sys-reader").await;
        let mut publisher = client(addr, "sys-publisher").await;
        publisher
            .publish("some/topic", b"payload", QoS::AtLeastOnce, true, 1)
            .await;
        c.subscribe(1, &[("$SYS/broker/#", QoS::AtMostOnce)]).await;

        // Retained values arrive at once; then each tick (1 s) delivers fresh values live
        // (retain 0), `load/bytes/received` first. The first live tick may have been sampled
        // just before the subscription; the second one was sampled after it. Collect that
        // whole tick.
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        let mut live = std::collections::BTreeSet::new();
        let mut ticks = 0;
        while live.len() < 23 {
            let p = c.receive().await;
            let topic = p.topic.as_str().to_owned();
            let value = String::from_utf8(p.payload.to_vec()).expect("ascii value");
            if !p.retain && topic == "$SYS/broker/load/bytes/received" {
                ticks += 1;
            }
            if !p.retain && ticks >= 2 {
                live.insert(topic.clone());
            }
            values.insert(topic, value);
        }
        assert_eq!(values.len(), 24, "{values:#?}");
        let get = |suffix: &str| -> &str {
            values
                .get(&format!("$SYS/broker/{suffix}"))
                .unwrap_or_else(|| panic!("missing $SYS/broker/{suffix}"))
        };
        let num = |suffix: &str| -> f64 {
            get(suffix)
                .parse()
                .unwrap_or_else(|_| panic!("{suffix} = {:?} is not a number", get(suffix)))
        };
        assert!(
            get("version").starts_with("amqtt-rs version "),
            "{}",
            get("version")
        );
        assert!(get("uptime/formatted").ends_with("+00:00"));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        assert!((num("time") - now).abs() < 30.0, "time {}", num("time"));
        assert!(num("uptime") >= 0.0 && num("uptime") < 60.0);
        assert!(num("heap/size") > 0.5, "heap {}", num("heap/size"));
        assert!(num("heap/maximum") >= num("heap/size"));
        assert!(num("cpu/percent") >= 0.0 && num("cpu/maximum") >= num("cpu/percent"));
        // The retained topics: `some/topic` and the $SYS ones themselves.
        assert!(num("messages/retained/count") >= 2.0);
        assert!(num("messages/subscriptions/count") >= 1.0);
        // Counters kept by the broker: two clients connected, each sent CONNECT, the reader
        // a SUBSCRIBE, the publisher a retained QoS 1 PUBLISH.
        assert!(
            num("load/bytes/received") >= 40.0,
            "{}",
            get("load/bytes/received")
        );
        assert!(num("load/bytes/sent") >= 8.0, "{}", get("load/bytes/sent"));
        assert!(
            num("messages/received") >= 4.0,
            "{}",
            get("messages/received")
        );
        assert!(num("messages/sent") >= 4.0, "{}", get("messages/sent"));
        assert_eq!(num("messages/publish/received"), 1.0);
        assert!(
            num("messages/publish/sent") >= 1.0,
            "{}",
            get("messages/publish/sent")
        );
        assert_eq!(num("clients/connected"), 2.0);
        assert_eq!(num("clients/maximum"), 2.0);
        assert_eq!(num("clients/disconnected"), 0.0);
        assert_eq!(num("clients/total"), 2.0);
        let stats = broker.stats();
        assert_eq!(stats.clients_connected, 2);
        assert!(stats.bytes_received as f64 >= num("load/bytes/received"));
        for gauge in [
            "messages/inflight",
            "messages/inflight/in",
            "messages/inflight/out",
            "messages/inflight/stored",
        ] {
            assert!(num(gauge) >= 0.0, "{gauge}");
        }
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn sys_interval_zero_only_retains_the_version() {
    bounded(async {
        let broker = Broker::new(config(
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n  \
             amqtt.plugins.sys.broker.BrokerSysPlugin:\n    sys_interval: 0\n",
        ))
        .expect("broker");
        broker.start().await.expect("start");
        let addr = broker.local_addr("default").expect("bound");
        let mut c = client(addr, "sys-zero").await;
        c.subscribe(1, &[("$SYS/#", QoS::AtMostOnce)]).await;
        let p = c.receive().await;
        assert_eq!(p.topic.as_str(), "$SYS/broker/version");
        assert!(p.retain);
        match c.next_within(Duration::from_millis(1500)).await {
            Err(()) => {}
            Ok(other) => panic!("expected no periodic $SYS message, got {other:?}"),
        }
        broker.shutdown().await;
    })
    .await;
}

/// Blocks forever on the first message event.
struct Stuck {
    entered: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait]
impl BrokerPlugin for Stuck {
    fn hooks(&self) -> Hooks {
        Hooks::MESSAGE_RECEIVED | Hooks::MESSAGE_BROADCAST
    }
    async fn on_broker_message_received(&self, _session: &ClientInfo, _message: &Message) {
        self.entered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
}

#[tokio::test]
async fn a_stuck_plugin_never_stalls_message_delivery() {
    bounded(async {
        let config = config("");
        let registry = PluginRegistry::new();
        let entered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let manager = PluginManager::builder_for_config(&config, &registry)
            .expect("plugins")
            .plugin(
                "stuck",
                Arc::new(Stuck {
                    entered: entered.clone(),
                }),
            )
            .queue_capacity(8)
            .lifecycle_timeout(Duration::from_millis(300))
            .build()
            .expect("manager");
        let broker = Broker::with_plugin_manager(config, manager).expect("broker");
        broker.start().await.expect("start");
        let addr = broker.local_addr("default").expect("bound");
        let mut s = client(addr, "s").await;
        s.subscribe(1, &[("load/#", QoS::AtLeastOnce)]).await;
        let mut p = client(addr, "p").await;
        const N: u16 = 300;
        for i in 1..=N {
            p.publish("load/x", &i.to_be_bytes(), QoS::AtLeastOnce, false, i)
                .await;
        }
        for i in 1..=N {
            let got = s.receive().await;
            assert_eq!(&got.payload[..], &i.to_be_bytes());
        }
        assert_eq!(entered.load(std::sync::atomic::Ordering::SeqCst), 1);
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn message_received_fires_before_the_publish_checks_and_broadcast_after() {
    bounded(async {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let config = config(
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n  \
             amqtt.plugins.topic_checking.TopicAccessControlListPlugin:\n    \
             publish-acl: {anonymous: [open/#]}\n",
        );
        let registry = PluginRegistry::new();
        let builder = PluginManager::builder_for_config(&config, &registry).expect("plugins");
        let recorder = Recorder {
            lines: lines.clone(),
            context: builder.context().clone(),
        };
        let manager = builder
            .plugin("recorder", Arc::new(recorder))
            .build()
            .expect("manager");
        let broker = Broker::with_plugin_manager(config, manager).expect("broker");
        broker.start().await.expect("start");
        let addr = broker.local_addr("default").expect("bound");
        let mut p = client(addr, "p").await;
        p.publish("closed/1", b"x", QoS::AtLeastOnce, false, 1)
            .await;
        p.publish("$SYS/fake", b"x", QoS::AtLeastOnce, false, 2)
            .await;
        p.publish("open/1", b"x", QoS::AtLeastOnce, false, 3).await;
        p.disconnect().await;
        broker.shutdown().await;
        let lines = lines.lock().expect("lines").clone();
        position(&lines, "received p closed/1");
        position(&lines, "received p $SYS/fake");
        position(&lines, "broadcast p open/1");
        assert!(
            !lines.iter().any(|l| l == "broadcast p closed/1"),
            "{lines:#?}"
        );
        assert!(
            !lines.iter().any(|l| l == "broadcast p $SYS/fake"),
            "{lines:#?}"
        );
    })
    .await;
}
