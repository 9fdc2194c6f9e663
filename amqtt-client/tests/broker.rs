//! The client against the in-process amqtt-rs broker, started by each test on 127.0.0.1:0.

mod common;

use std::net::SocketAddr;

use amqtt_broker::{Broker, BrokerConfig};
use amqtt_client::{ClientConfig, ConnectReturnCode};
use common::scenarios::{self, Restartable};
use common::{test_config, within};

/// An in-process broker that can be stopped and started again on the same port. A restarted
/// broker is a new one: it has forgotten every session, so clients see `session_present = 0`
/// and re-subscribe.
struct TestBroker {
    broker: Option<Broker>,
    addr: SocketAddr,
}

impl TestBroker {
    async fn start() -> TestBroker {
        let (broker, addr) = start_on("127.0.0.1:0").await;
        TestBroker {
            broker: Some(broker),
            addr,
        }
    }
}

async fn start_on(bind: &str) -> (Broker, SocketAddr) {
    let yaml = format!("listeners: {{default: {{type: tcp, bind: \"{bind}\"}}}}");
    let broker = Broker::new(BrokerConfig::from_yaml_str(&yaml).unwrap()).unwrap();
    within("broker start", broker.start()).await.unwrap();
    let addr = broker.local_addr("default").unwrap();
    (broker, addr)
}

impl Restartable for TestBroker {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    async fn stop(&mut self) {
        if let Some(broker) = self.broker.take() {
            within("broker shutdown", broker.shutdown()).await;
        }
    }
    async fn start_again(&mut self) {
        let (broker, _) = start_on(&self.addr.to_string()).await;
        self.broker = Some(broker);
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(broker) = self.broker.take() {
            // Stop it in the background; the runtime ends with the test anyway.
            tokio::spawn(async move { broker.shutdown().await });
        }
    }
}

macro_rules! against_broker {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let broker = TestBroker::start().await;
            scenarios::$name(broker.addr).await;
        }
    )*};
}

against_broker!(
    qos_0_1_2_both_directions,
    subscribe_returns_granted_qos_per_filter,
    deliver_message_times_out,
    retained_message_is_received_with_retain_flag,
    will_is_published_on_abnormal_close_only,
    keep_alive_sends_pingreq_on_a_short_interval,
    plugins_see_every_packet_sent_and_received,
    publishing_10000_qos1_from_the_message_loop_does_not_deadlock,
    concurrent_publishes_from_many_tasks,
    disconnect_waits_for_queued_qos1_publishes,
    messages_stream_ends_after_disconnect,
    pipelined_qos2_stream_is_received_exactly_once_without_reconnecting,
);

#[tokio::test]
async fn empty_client_id_with_persistent_session_is_identifier_rejected() {
    let broker = TestBroker::start().await;
    let config = ClientConfig {
        cleansession: false,
        ..test_config()
    };
    scenarios::refused_connack_is_a_typed_error(
        broker.addr,
        ConnectReturnCode::IdentifierRejected,
        config,
        "",
    )
    .await;
}

#[tokio::test]
async fn reconnect_mid_stream_with_persistent_sessions() {
    let mut broker = TestBroker::start().await;
    let gate = common::GatedProxy::start(broker.addr()).await;
    scenarios::reconnect_mid_stream_loses_and_duplicates_nothing(&mut broker, &gate).await;
}

#[tokio::test]
async fn gives_up_after_reconnect_retries() {
    let mut broker = TestBroker::start().await;
    scenarios::gives_up_after_reconnect_retries(&mut broker).await;
}

#[tokio::test]
async fn requests_wait_while_reconnecting() {
    let mut broker = TestBroker::start().await;
    let gate = common::GatedProxy::start(broker.addr()).await;
    scenarios::requests_wait_while_reconnecting_and_try_publish_fails_fast(&mut broker, &gate)
        .await;
}
