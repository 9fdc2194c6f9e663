//! Broker events reach an installed `EventHook`, in order, from the one place they are emitted.

mod common;

use std::sync::{Arc, Mutex};

use amqtt_broker::hooks::BoxFuture;
use amqtt_broker::{BrokerEvent, EventHook, Extensions, LifecycleEvent};
use common::*;
use mqtt_codec::QoS;

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    notify: tokio::sync::Notify,
}

impl Recorder {
    fn push(&self, s: String) {
        self.events.lock().unwrap().push(s);
        self.notify.notify_waiters();
    }

    fn snapshot(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    async fn wait_for(&self, needle: &str) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.snapshot().iter().any(|e| e == needle) {
                return;
            }
            notified.await;
        }
    }
}

impl EventHook for Recorder {
    fn on_event(&self, event: &BrokerEvent<'_>) {
        let s = match event {
            BrokerEvent::ClientConnected {
                client,
                session_present,
            } => {
                format!("connected {} {session_present}", client.client_id)
            }
            BrokerEvent::ClientDisconnected { client, graceful } => {
                format!("disconnected {} {graceful}", client.client_id)
            }
            BrokerEvent::ClientSubscribed {
                client,
                filter,
                qos,
            } => {
                format!("subscribed {} {filter} {}", client.client_id, qos.as_u8())
            }
            BrokerEvent::ClientUnsubscribed { client, filter } => {
                format!("unsubscribed {} {filter}", client.client_id)
            }
            BrokerEvent::MessageReceived { client, message } => {
                format!("received {} {}", client.client_id, message.topic)
            }
            BrokerEvent::MessageBroadcast { message, .. } => format!("broadcast {}", message.topic),
            BrokerEvent::RetainedStored { message } => format!("retained {}", message.topic),
            BrokerEvent::RetainedCleared { topic } => format!("cleared {topic}"),
            BrokerEvent::OfflineQueued { client_id, message } => {
                format!("queued {client_id} {}", message.topic)
            }
            other => format!("{other:?}"),
        };
        self.push(s);
    }

    fn on_lifecycle(&self, event: LifecycleEvent) -> BoxFuture<'_, ()> {
        self.push(format!("{event:?}"));
        Box::pin(async {})
    }
}

#[tokio::test]
async fn every_broker_event_reaches_the_hook_in_order() {
    bounded(async {
        let recorder = Arc::new(Recorder::default());
        let ext = Extensions {
            events: Some(recorder.clone()),
            ..Extensions::default()
        };
        let b = TestBroker::with_yaml_and("", ext).await;
        let (mut c, _) = b.client("ev", false).await;
        c.subscribe(1, &[("e/#", QoS::AtLeastOnce)]).await;
        c.publish("e/r", b"x", QoS::AtLeastOnce, true, 2).await;
        c.receive().await;
        c.publish("e/r", b"", QoS::AtMostOnce, true, 3).await;
        c.receive().await;
        c.unsubscribe(4, &["e/#"]).await;
        c.subscribe(5, &[("off/#", QoS::AtLeastOnce)]).await;
        c.disconnect().await;
        recorder.wait_for("disconnected ev true").await;
        let (mut p, _) = b.client("pub", true).await;
        p.publish("off/1", b"q", QoS::AtLeastOnce, false, 1).await;
        recorder.wait_for("queued ev off/1").await;
        b.stop().await;

        let events = recorder.snapshot();
        let expected = [
            "PreStart",
            "PostStart",
            "connected ev false",
            "subscribed ev e/# 1",
            "received ev e/r",
            "retained e/r",
            "broadcast e/r",
            "received ev e/r",
            "cleared e/r",
            "broadcast e/r",
            "unsubscribed ev e/#",
            "subscribed ev off/# 1",
            "disconnected ev true",
            "connected pub false",
            "received pub off/1",
            "broadcast off/1",
            "queued ev off/1",
            "PreShutdown",
            "disconnected pub false",
            "PostShutdown",
        ];
        assert_eq!(events, expected);
    })
    .await;
}
