//! Client behaviours checked against any broker at `addr`; each broker's test file runs them.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amqtt_client::{
    ClientConfig, ClientError, ClientPlugin, ConnectionState, MQTTClient, Packet, PluginContext,
    QoS, SubAckReturnCode, WillConfig,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{connected, test_config, within, GatedProxy, STEP};

const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

pub async fn qos_0_1_2_both_directions(addr: SocketAddr) {
    for qos in QOS {
        let q = qos.as_u8();
        let topic = format!("qos/{q}");
        let sub = connected(addr, &format!("qos-sub-{q}"), test_config()).await;
        let granted = within("subscribe", sub.subscribe(&[(topic.as_str(), qos)]))
            .await
            .unwrap();
        assert_eq!(granted, [SubAckReturnCode::Success(qos)]);
        let publisher = connected(addr, &format!("qos-pub-{q}"), test_config()).await;
        within(
            "publish",
            publisher.publish(&topic, format!("payload {q}"), qos, false),
        )
        .await
        .unwrap();
        let message = within("deliver", sub.deliver_message(None)).await.unwrap();
        assert_eq!(message.topic.as_str(), topic);
        assert_eq!(&message.payload[..], format!("payload {q}").as_bytes());
        assert_eq!(message.qos, qos);
        assert!(!message.retain && !message.dup);
        assert_eq!(message.packet_id.is_some(), qos != QoS::AtMostOnce);
        within("disconnect", publisher.disconnect()).await.unwrap();
        within("disconnect", sub.disconnect()).await.unwrap();
    }
}

pub async fn subscribe_returns_granted_qos_per_filter(addr: SocketAddr) {
    let client = connected(addr, "grants", test_config()).await;
    let granted = within(
        "subscribe",
        client.subscribe(&[
            ("g/a/+", QoS::AtMostOnce),
            ("g/b/#", QoS::AtLeastOnce),
            ("g/c", QoS::ExactlyOnce),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(
        granted,
        [
            SubAckReturnCode::Success(QoS::AtMostOnce),
            SubAckReturnCode::Success(QoS::AtLeastOnce),
            SubAckReturnCode::Success(QoS::ExactlyOnce)
        ]
    );
    within("unsubscribe", client.unsubscribe(&["g/a/+", "g/b/#"]))
        .await
        .unwrap();
    // Only g/c is left: a publish to g/b/x is not delivered, g/c is.
    client
        .publish("g/b/x", "no", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    client
        .publish("g/c", "yes", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let message = within("deliver", client.deliver_message(None))
        .await
        .unwrap();
    assert_eq!(message.topic.as_str(), "g/c");
    client.disconnect().await.unwrap();
}

pub async fn deliver_message_times_out(addr: SocketAddr) {
    let client = connected(addr, "timeout", test_config()).await;
    let started = Instant::now();
    let result = client
        .deliver_message(Some(Duration::from_millis(300)))
        .await;
    assert!(matches!(result, Err(ClientError::Timeout)), "{result:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    client.ping().await.unwrap();
    client.disconnect().await.unwrap();
}

pub async fn retained_message_is_received_with_retain_flag(addr: SocketAddr) {
    let publisher = connected(addr, "ret-pub", test_config()).await;
    publisher
        .publish("ret/1", "kept", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    let sub = connected(addr, "ret-sub", test_config()).await;
    sub.subscribe(&[("ret/#", QoS::AtLeastOnce)]).await.unwrap();
    let message = within("retained", sub.deliver_message(None)).await.unwrap();
    assert_eq!(
        (message.topic.as_str(), &message.payload[..], message.retain),
        ("ret/1", &b"kept"[..], true)
    );
    // Live messages are not retained on delivery; clearing the retained message works.
    publisher
        .publish("ret/1", "", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    let cleared = within("clear", sub.deliver_message(None)).await.unwrap();
    assert!(cleared.payload.is_empty());
    publisher.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
}

pub async fn will_is_published_on_abnormal_close_only(addr: SocketAddr) {
    let watcher = connected(addr, "will-watch", test_config()).await;
    watcher
        .subscribe(&[("will/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let will_config = |topic: &str| ClientConfig {
        will: Some(WillConfig {
            topic: topic.to_string(),
            message: "gone".to_string(),
            qos: QoS::AtLeastOnce,
            retain: false,
        }),
        ..test_config()
    };
    // A clean disconnect discards the will.
    let polite = connected(addr, "will-polite", will_config("will/polite")).await;
    polite.disconnect().await.unwrap();
    // Dropping every handle closes the socket without DISCONNECT: the will goes out.
    let rude = connected(addr, "will-rude", will_config("will/rude")).await;
    let mut state = rude.state();
    drop(rude);
    let message = within("will", watcher.deliver_message(None)).await.unwrap();
    assert_eq!(
        (message.topic.as_str(), &message.payload[..]),
        ("will/rude", &b"gone"[..])
    );
    assert_eq!(message.qos, QoS::AtLeastOnce);
    within(
        "state",
        state.wait_for(|s| *s == ConnectionState::Disconnected),
    )
    .await
    .unwrap();
    watcher.disconnect().await.unwrap();
}

/// Records packet names seen by the plugin hooks and signals PINGRESPs.
struct Recorder {
    seen: Mutex<Vec<String>>,
    pings: mpsc::UnboundedSender<()>,
}

impl ClientPlugin for Recorder {
    fn name(&self) -> &str {
        "test.Recorder"
    }
    fn on_mqtt_packet_sent(&self, _: &PluginContext, packet: &Packet) {
        self.seen
            .lock()
            .unwrap()
            .push(format!("sent {}", packet.name()));
    }
    fn on_mqtt_packet_received(&self, _: &PluginContext, packet: &Packet) {
        self.seen
            .lock()
            .unwrap()
            .push(format!("received {}", packet.name()));
        if matches!(packet, Packet::PingResp) {
            let _ = self.pings.send(());
        }
    }
}

pub async fn keep_alive_sends_pingreq_on_a_short_interval(addr: SocketAddr) {
    // keep_alive 2, ping_delay 1: CONNECT carries 1 s, PINGREQ after 1 s without sending.
    let config = ClientConfig {
        keep_alive: 2,
        ping_delay: 1,
        ..test_config()
    };
    let client = MQTTClient::new(Some("keepalive".into()), config).unwrap();
    let (pings, mut pinged) = mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder {
        seen: Mutex::new(Vec::new()),
        pings,
    });
    client.add_plugin(recorder.clone());
    let started = Instant::now();
    client.connect(super::uri(addr).as_str()).await.unwrap();
    for _ in 0..3 {
        within("PINGRESP", pinged.recv()).await.unwrap();
    }
    // Three keep-alive periods of 1 s, never earlier.
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
    assert!(client.is_connected());
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|s| *s == "sent PINGREQ").count(),
        3,
        "{seen:?}"
    );
    client.disconnect().await.unwrap();
}

pub async fn plugins_see_every_packet_sent_and_received(addr: SocketAddr) {
    let client = MQTTClient::new(Some("plugins".into()), test_config()).unwrap();
    let (pings, _pinged) = mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder {
        seen: Mutex::new(Vec::new()),
        pings,
    });
    client.add_plugin(recorder.clone());
    client.connect(super::uri(addr).as_str()).await.unwrap();
    client
        .subscribe(&[("plug/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    client
        .publish("plug/1", "x", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    within("deliver", client.deliver_message(None))
        .await
        .unwrap();
    client.disconnect().await.unwrap();
    let seen = recorder.seen.lock().unwrap().clone();
    for expected in [
        "sent CONNECT",
        "received CONNACK",
        "sent SUBSCRIBE",
        "received SUBACK",
        "sent PUBLISH",
        "received PUBACK",
        "received PUBLISH",
        "sent DISCONNECT",
    ] {
        assert!(
            seen.iter().any(|s| s == expected),
            "{expected} missing from {seen:?}"
        );
    }
    assert_eq!(seen.first().map(String::as_str), Some("sent CONNECT"));
    assert_eq!(seen.last().map(String::as_str), Some("sent DISCONNECT"));
}

pub async fn publishing_10000_qos1_from_the_message_loop_does_not_deadlock(addr: SocketAddr) {
    let config = ClientConfig {
        incoming_queue_size: 4,
        request_queue_size: 4,
        max_inflight: 4,
        ..test_config()
    };
    let client = connected(addr, "loop", config).await;
    client
        .subscribe(&[("loop/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let n = 10_000u32;
    let run = async {
        // Ping-pong: each received message makes the handler publish the next one.
        client
            .publish(
                "loop/a",
                0u32.to_be_bytes().to_vec(),
                QoS::AtLeastOnce,
                false,
            )
            .await
            .unwrap();
        let mut messages = client.messages();
        let mut next = 1u32;
        while next < n {
            let message = messages.next().await.unwrap();
            assert_eq!(message.topic.as_str(), "loop/a");
            client
                .publish(
                    "loop/a",
                    next.to_be_bytes().to_vec(),
                    QoS::AtLeastOnce,
                    false,
                )
                .await
                .unwrap();
            next += 1;
        }
        // Burst: from inside the handler, publish 10,000 and await each while never reading;
        // the incoming queue (4) fills at once, acknowledgements must keep flowing.
        let _ = messages.next().await.unwrap();
        for i in 0..n {
            client
                .publish("loop/b", i.to_be_bytes().to_vec(), QoS::AtLeastOnce, false)
                .await
                .unwrap();
        }
        let mut burst = 0;
        while burst < n {
            let message = messages.next().await.unwrap();
            if message.topic.as_str() == "loop/b" {
                assert_eq!(&message.payload[..], burst.to_be_bytes());
                burst += 1;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("deadlock");
    client.disconnect().await.unwrap();
}

pub async fn concurrent_publishes_from_many_tasks(addr: SocketAddr) {
    let sub = connected(addr, "many-sub", test_config()).await;
    sub.subscribe(&[("many/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let publisher = connected(addr, "many-pub", test_config()).await;
    let (tasks, per_task) = (16u32, 200u32);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let publisher = publisher.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                let qos = if i % 2 == 0 {
                    QoS::AtLeastOnce
                } else {
                    QoS::ExactlyOnce
                };
                publisher
                    .publish(format!("many/{t}"), i.to_be_bytes().to_vec(), qos, false)
                    .await
                    .unwrap();
            }
        }));
    }
    let mut seen: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    let mut received = 0;
    while received < tasks * per_task {
        let message = within("deliver", sub.deliver_message(None)).await.unwrap();
        let fresh = seen
            .entry(message.topic.to_string())
            .or_default()
            .insert(message.payload.to_vec());
        assert!(
            fresh || message.qos == QoS::AtLeastOnce,
            "QoS 2 duplicate {message:?}"
        );
        received += u32::from(fresh);
    }
    for handle in handles {
        within("publisher task", handle).await.unwrap();
    }
    assert_eq!(seen.len(), tasks as usize);
    publisher.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
}

pub async fn disconnect_waits_for_queued_qos1_publishes(addr: SocketAddr) {
    let sub = connected(addr, "drain-sub", test_config()).await;
    sub.subscribe(&[("drain/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let publisher = connected(
        addr,
        "drain-pub",
        ClientConfig {
            request_queue_size: 512,
            ..test_config()
        },
    )
    .await;
    let tokens: Vec<_> = (0..200u32)
        .map(|i| {
            publisher
                .try_publish("drain/1", i.to_be_bytes().to_vec(), QoS::AtLeastOnce, false)
                .unwrap()
        })
        .collect();
    within("disconnect", publisher.disconnect()).await.unwrap();
    for token in tokens {
        // Every publish queued before `disconnect` completed before it returned.
        // Already resolved: this does not wait for long.
        within("token", token).await.unwrap();
    }
    for i in 0..200u32 {
        let message = within("deliver", sub.deliver_message(None)).await.unwrap();
        assert_eq!(&message.payload[..], i.to_be_bytes());
    }
    assert!(matches!(
        publisher
            .publish("drain/1", "late", QoS::AtMostOnce, false)
            .await,
        Err(ClientError::NotConnected)
    ));
    sub.disconnect().await.unwrap();
}

pub async fn messages_stream_ends_after_disconnect(addr: SocketAddr) {
    let client = connected(addr, "stream", test_config()).await;
    client
        .subscribe(&[("stream/#", QoS::AtMostOnce)])
        .await
        .unwrap();
    let stream = client.messages();
    for i in 0..3u8 {
        client
            .publish("stream/x", vec![i], QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    let got: Vec<_> = within("3 messages", stream.take(3).collect::<Vec<_>>()).await;
    assert_eq!(
        got.iter().map(|m| m.payload[0]).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let stream = client.messages();
    client.disconnect().await.unwrap();
    let rest: Vec<_> = within("stream end", stream.collect::<Vec<_>>()).await;
    assert!(rest.is_empty());
}

pub async fn refused_connack_is_a_typed_error(
    addr: SocketAddr,
    expected: amqtt_client::ConnectReturnCode,
    config: ClientConfig,
    id: &str,
) {
    let client = MQTTClient::new(Some(id.to_string()), config).unwrap();
    let started = Instant::now();
    let err = within("connect", client.connect(super::uri(addr).as_str()))
        .await
        .unwrap_err();
    assert_eq!(err.return_code(), Some(expected), "{err}");
    assert!(matches!(err, ClientError::Refused(_)));
    // Refusals are not retried.
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(*client.state().borrow(), ConnectionState::Failed);
    assert!(matches!(
        client.ping().await,
        Err(ClientError::NotConnected)
    ));
}

pub fn step() -> Duration {
    STEP
}

/// A broker the test can stop and start again on the same port.
pub trait Restartable {
    fn addr(&self) -> SocketAddr;
    async fn stop(&mut self);
    async fn start_again(&mut self);
}

/// The broker goes away mid-stream and comes back on the same port. With persistent sessions
/// no QoS 1/2 message is lost and no QoS 2 message is delivered twice.
///
/// The publisher reaches the broker through `gate`: for a broker that forgets sessions when it
/// restarts, the gate stays closed until the subscriber has re-subscribed (the client announces
/// `Reconnected` after that), so that no message can reach the broker before its subscriber.
pub async fn reconnect_mid_stream_loses_and_duplicates_nothing<B: Restartable>(
    broker: &mut B,
    gate: &GatedProxy,
) {
    let addr = broker.addr();
    let config = || ClientConfig {
        cleansession: false,
        reconnect_retries: None,
        ..test_config()
    };
    let sub = connected(addr, "rc-sub", config()).await;
    sub.subscribe(&[("rc/#", QoS::ExactlyOnce)]).await.unwrap();
    let publisher = connected(gate.addr, "rc-pub", config()).await;
    let n = 600u32;
    let publishing = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            for i in 0..n {
                let qos = if i % 2 == 0 {
                    QoS::AtLeastOnce
                } else {
                    QoS::ExactlyOnce
                };
                publisher
                    .publish("rc/x", i.to_be_bytes().to_vec(), qos, false)
                    .await
                    .unwrap();
            }
        })
    };
    let mut seen = BTreeSet::new();
    let mut sub_state = sub.state();
    let mut pub_state = publisher.state();
    let mut restarted = false;
    while seen.len() < n as usize {
        let message = tokio::time::timeout(Duration::from_secs(30), sub.deliver_message(None))
            .await
            .expect("messages keep coming after the restart")
            .unwrap();
        let i = u32::from_be_bytes(message.payload[..].try_into().unwrap());
        let fresh = seen.insert(i);
        assert!(
            fresh || message.qos == QoS::AtLeastOnce,
            "QoS 2 message {i} delivered twice"
        );
        if !restarted && seen.len() == n as usize / 3 {
            restarted = true;
            gate.close();
            broker.stop().await;
            within("Lost", sub_state.wait_for(|s| *s == ConnectionState::Lost))
                .await
                .unwrap();
            within("Lost", pub_state.wait_for(|s| *s == ConnectionState::Lost))
                .await
                .unwrap();
            broker.start_again().await;
            within(
                "subscriber Reconnected",
                sub_state.wait_for(|s| matches!(s, ConnectionState::Reconnected { .. })),
            )
            .await
            .unwrap();
            gate.open();
        }
    }
    within(
        "publisher Reconnected",
        pub_state.wait_for(|s| matches!(s, ConnectionState::Reconnected { .. })),
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(30), publishing)
        .await
        .unwrap()
        .unwrap();
    publisher.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
}

/// After a loss, `reconnect_retries` failed attempts end in `Failed`, and requests fail fast.
pub async fn gives_up_after_reconnect_retries<B: Restartable>(broker: &mut B) {
    let config = ClientConfig {
        reconnect_retries: Some(1),
        reconnect_max_interval: Duration::from_millis(50),
        ..test_config()
    };
    let client = connected(broker.addr(), "give-up", config).await;
    let mut state = client.state();
    broker.stop().await;
    within("Failed", state.wait_for(|s| *s == ConnectionState::Failed))
        .await
        .unwrap();
    assert!(matches!(
        client.publish("x", "y", QoS::AtLeastOnce, false).await,
        Err(ClientError::NotConnected)
    ));
    broker.start_again().await;
}

/// Requests made while reconnecting wait in the bounded queue; `try_publish` fails fast when
/// it is full, and what was queued goes out after the reconnect (through `gate`, opened once
/// the subscriber is back, as above).
pub async fn requests_wait_while_reconnecting_and_try_publish_fails_fast<B: Restartable>(
    broker: &mut B,
    gate: &GatedProxy,
) {
    let addr = broker.addr();
    let sub = connected(
        addr,
        "wait-sub",
        ClientConfig {
            cleansession: false,
            reconnect_retries: None,
            ..test_config()
        },
    )
    .await;
    sub.subscribe(&[("wait/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let config = ClientConfig {
        request_queue_size: 2,
        reconnect_retries: None,
        ..test_config()
    };
    let client = connected(gate.addr, "wait-pub", config).await;
    let mut state = client.state();
    let mut sub_state = sub.state();
    gate.close();
    broker.stop().await;
    within("Lost", state.wait_for(|s| *s == ConnectionState::Lost))
        .await
        .unwrap();
    within("Lost", sub_state.wait_for(|s| *s == ConnectionState::Lost))
        .await
        .unwrap();
    let first = client
        .try_publish("wait/1", "a", QoS::AtLeastOnce, false)
        .unwrap();
    let second = client
        .try_publish("wait/1", "b", QoS::AtLeastOnce, false)
        .unwrap();
    match client.try_publish("wait/1", "c", QoS::AtLeastOnce, false) {
        Err(ClientError::QueueFull(message)) => assert_eq!(&message.payload[..], b"c"),
        other => panic!("expected QueueFull, got {other:?}"),
    }
    broker.start_again().await;
    within(
        "subscriber back",
        sub_state.wait_for(|s| matches!(s, ConnectionState::Reconnected { .. })),
    )
    .await
    .unwrap();
    gate.open();
    within("first", first).await.unwrap();
    within("second", second).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(
            within("deliver", sub.deliver_message(None))
                .await
                .unwrap()
                .payload,
        );
    }
    assert_eq!(got, [&b"a"[..], &b"b"[..]]);
    client.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
}

/// A pipelined stream of QoS 2 messages: brokers legitimately have many PUBRELs queued behind
/// PUBLISHes, and the client must not treat that as an attack (it once disconnected at 100
/// unreleased ids). No reconnect, nothing lost, nothing twice.
pub async fn pipelined_qos2_stream_is_received_exactly_once_without_reconnecting(addr: SocketAddr) {
    let sub = connected(addr, "q2-sub", test_config()).await;
    sub.subscribe(&[("q2/#", QoS::ExactlyOnce)]).await.unwrap();
    let publisher = connected(addr, "q2-pub", test_config()).await;
    let n = 10_000u32;
    let sending = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let mut pending = futures_util::stream::FuturesUnordered::new();
            for i in 0..n {
                pending.push(
                    publisher
                        .start_publish("q2/x", i.to_be_bytes().to_vec(), QoS::ExactlyOnce, false)
                        .await
                        .unwrap(),
                );
                while pending.len() > 500 {
                    pending.next().await.unwrap().unwrap();
                }
            }
            while let Some(done) = pending.next().await {
                done.unwrap();
            }
        })
    };
    let mut messages = sub.messages();
    for i in 0..n {
        let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .expect("stalled")
            .unwrap();
        assert_eq!(&message.payload[..], i.to_be_bytes(), "in order, once each");
    }
    tokio::time::timeout(Duration::from_secs(30), sending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        *sub.state().borrow(),
        ConnectionState::Connected {
            session_present: false
        }
    );
    assert_eq!(
        *publisher.state().borrow(),
        ConnectionState::Connected {
            session_present: false
        }
    );
    publisher.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
}
