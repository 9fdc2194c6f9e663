//! The client against a real mosquitto 2.0 broker started by each test (interop).
//! Ignored by default: `cargo test -p amqtt-client --test mosquitto -- --include-ignored`.

mod common;

use amqtt_client::{ClientConfig, ConnectReturnCode};
use common::scenarios::{self, Restartable};
use common::{test_config, Mosquitto};

impl Restartable for Mosquitto {
    fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
    async fn stop(&mut self) {
        Mosquitto::stop(self)
    }
    async fn start_again(&mut self) {
        Mosquitto::start_again(self).await
    }
}

macro_rules! against_mosquitto {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        #[ignore = "needs mosquitto"]
        async fn $name() {
            let broker = Mosquitto::start("").await;
            scenarios::$name(broker.addr).await;
        }
    )*};
}

against_mosquitto!(
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
#[ignore = "needs mosquitto"]
async fn anonymous_client_refused_with_not_authorized() {
    let broker = Mosquitto::start("allow_anonymous false").await;
    scenarios::refused_connack_is_a_typed_error(
        broker.addr,
        ConnectReturnCode::NotAuthorized,
        test_config(),
        "anon",
    )
    .await;
}

#[tokio::test]
#[ignore = "needs mosquitto"]
async fn empty_client_id_with_persistent_session_is_identifier_rejected() {
    let broker = Mosquitto::start("").await;
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
#[ignore = "needs mosquitto"]
async fn reconnect_mid_stream_with_persistent_sessions() {
    let mut broker = Mosquitto::start("persistence true").await;
    let gate = common::GatedProxy::start(broker.addr()).await;
    scenarios::reconnect_mid_stream_loses_and_duplicates_nothing(&mut broker, &gate).await;
}

#[tokio::test]
#[ignore = "needs mosquitto"]
async fn gives_up_after_reconnect_retries() {
    let mut broker = Mosquitto::start("").await;
    scenarios::gives_up_after_reconnect_retries(&mut broker).await;
}

#[tokio::test]
#[ignore = "needs mosquitto"]
async fn requests_wait_while_reconnecting() {
    let mut broker = Mosquitto::start("persistence true").await;
    let gate = common::GatedProxy::start(broker.addr()).await;
    scenarios::requests_wait_while_reconnecting_and_try_publish_fails_fast(&mut broker, &gate)
        .await;
}
