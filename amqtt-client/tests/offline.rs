//! Client behaviour that needs no broker: URIs, ids, giving up on an unreachable broker.

mod common;

use std::time::{Duration, Instant};

use amqtt_client::{
    ClientConfig, ClientError, ConnectReturnCode, ConnectionState, MQTTClient, Packet, QoS,
};
use common::{free_port, test_config, within};

#[tokio::test]
async fn missing_client_id_is_generated_like_amqtt() {
    let client = MQTTClient::new(None, ClientConfig::default()).unwrap();
    let id = client.client_id();
    assert!(id.starts_with("amqtt/") && id.len() == 22, "{id}");
    assert!(id[6..].chars().all(|c| c.is_ascii_alphanumeric()));
    let other = MQTTClient::new(None, ClientConfig::default()).unwrap();
    assert_ne!(other.client_id(), id);
}

#[tokio::test]
async fn tls_setup_problems_fail_connect_at_once_naming_the_key_and_unknown_schemes_too() {
    let mut config = test_config();
    config.connection.cafile = Some("/nonexistent/ca.pem".into());
    let client = MQTTClient::new(Some("x".into()), config).unwrap();
    for uri in ["mqtts://127.0.0.1:1", "wss://127.0.0.1:1/mqtt"] {
        let err = client.connect(uri).await.unwrap_err();
        assert!(matches!(err, ClientError::Config(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("connection.cafile") && text.contains("/nonexistent/ca.pem"),
            "{text}"
        );
    }
    let err = client.connect("http://127.0.0.1:1").await.unwrap_err();
    assert!(err.to_string().contains("incorrect scheme"), "{err}");
}

#[tokio::test]
async fn requests_before_connect_fail_with_not_connected() {
    let client = MQTTClient::new(Some("x".into()), test_config()).unwrap();
    assert!(matches!(
        client.publish("a", "b", QoS::AtMostOnce, false).await,
        Err(ClientError::NotConnected)
    ));
    assert!(matches!(
        client.try_publish("a", "b", QoS::AtMostOnce, false),
        Err(ClientError::NotConnected)
    ));
    assert!(matches!(
        client.deliver_message(Some(Duration::from_millis(1))).await,
        Err(ClientError::NotConnected)
    ));
    assert!(matches!(
        client.subscribe(&[("a/#", QoS::AtMostOnce)]).await,
        Err(ClientError::NotConnected)
    ));
    assert_eq!(*client.state().borrow(), ConnectionState::Idle);
    // Disconnecting a client that never connected is only a warning.
    client.disconnect().await.unwrap();
}

#[tokio::test]
async fn invalid_topics_are_refused_before_sending() {
    let client = MQTTClient::new(Some("x".into()), test_config()).unwrap();
    let err = client
        .publish("a/+", "b", QoS::AtMostOnce, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("[MQTT-3.3.2-2]"), "{err}");
    let err = client
        .subscribe(&[("a/#/b", QoS::AtMostOnce)])
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidTopic { .. }), "{err}");
}

#[tokio::test]
async fn unreachable_broker_gives_up_after_reconnect_retries_with_amqtt_attempt_count() {
    // Nothing listens on the port. aMQTT: 1 attempt in connect(), then retries + 1 more.
    let config = ClientConfig {
        reconnect_retries: Some(2),
        reconnect_max_interval: Duration::from_millis(20),
        ..test_config()
    };
    let client = MQTTClient::new(Some("x".into()), config).unwrap();
    let uri = format!("mqtt://127.0.0.1:{}", free_port());
    let err = within("give up", client.connect(uri.as_str()))
        .await
        .unwrap_err();
    match &err {
        ClientError::ConnectFailed { attempts, last } => {
            assert_eq!(*attempts, 4);
            assert!(matches!(**last, ClientError::Io(_)), "{last}");
        }
        other => panic!("expected ConnectFailed, got {other}"),
    }
    assert_eq!(*client.state().borrow(), ConnectionState::Failed);
}

#[tokio::test]
async fn without_auto_reconnect_the_first_failure_is_returned() {
    let config = ClientConfig {
        auto_reconnect: false,
        ..test_config()
    };
    let client = MQTTClient::new(Some("x".into()), config).unwrap();
    let started = Instant::now();
    let uri = format!("mqtt://127.0.0.1:{}", free_port());
    let err = within("fail", client.connect(uri.as_str()))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Io(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn refused_connack_carries_its_code_and_uri_credentials_are_sent() {
    let server = common::RawServer::bind().await;
    let client = MQTTClient::new(Some("creds".into()), test_config()).unwrap();
    let uri = format!("mqtt://u%40x:p%3Aw@{}", server.addr);
    let connecting = tokio::spawn(async move { client.connect(uri.as_str()).await });
    let mut conn = server.accept().await;
    let connect = conn
        .handshake(ConnectReturnCode::BadUsernameOrPassword)
        .await;
    assert_eq!(connect.username.as_deref(), Some("u@x"));
    assert_eq!(connect.password.as_deref(), Some(&b"p:w"[..]));
    assert_eq!(connect.client_id, "creds");
    // aMQTT's CONNECT keep-alive is keep_alive - ping_delay.
    assert_eq!(connect.keep_alive.0, 9);
    let err = within("connect", connecting).await.unwrap().unwrap_err();
    assert_eq!(
        err.return_code(),
        Some(ConnectReturnCode::BadUsernameOrPassword)
    );
    assert!(
        err.to_string().contains("bad user name or password (0x04)"),
        "{err}"
    );
}

#[tokio::test]
async fn will_from_config_is_sent_in_connect() {
    let server = common::RawServer::bind().await;
    let config = ClientConfig {
        will: Some(amqtt_client::WillConfig {
            topic: "dead/x".into(),
            message: "bye".into(),
            qos: QoS::ExactlyOnce,
            retain: true,
        }),
        cleansession: false,
        ..test_config()
    };
    let client = MQTTClient::new(Some("will".into()), config).unwrap();
    let uri = format!("mqtt://{}", server.addr);
    let connecting =
        tokio::spawn(async move { client.connect(uri.as_str()).await.map(|_| client) });
    let mut conn = server.accept().await;
    let connect = conn.handshake(ConnectReturnCode::Accepted).await;
    let will = connect.will.clone().unwrap();
    assert_eq!(
        (
            will.topic.as_str(),
            &will.payload[..],
            will.qos,
            will.retain
        ),
        ("dead/x", &b"bye"[..], QoS::ExactlyOnce, true)
    );
    assert!(!connect.clean_session);
    let client = within("connect", connecting).await.unwrap().unwrap();
    let disconnecting = tokio::spawn(async move { client.disconnect().await });
    assert_eq!(conn.read().await, Some(Packet::Disconnect));
    within("disconnect", disconnecting).await.unwrap().unwrap();
}

#[tokio::test]
async fn missing_pingresp_is_a_lost_connection_and_the_client_reconnects() {
    let server = common::RawServer::bind().await;
    let config = ClientConfig {
        keep_alive: 2,
        ping_delay: 1,
        response_timeout: Duration::from_millis(300),
        ..test_config()
    };
    let client = MQTTClient::new(Some("ka".into()), config).unwrap();
    let mut state = client.state();
    let uri = format!("mqtt://{}", server.addr);
    let connecting = {
        let client = client.clone();
        tokio::spawn(async move { client.connect(uri.as_str()).await })
    };
    let mut conn = server.accept().await;
    conn.handshake(ConnectReturnCode::Accepted).await;
    within("connect", connecting).await.unwrap().unwrap();
    let silent_since = Instant::now();
    // The client pings after 1 s of not sending; the server never answers.
    assert_eq!(conn.read().await, Some(Packet::PingReq));
    within("Lost", state.wait_for(|s| *s == ConnectionState::Lost))
        .await
        .unwrap();
    assert!(
        silent_since.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        silent_since.elapsed()
    );
    // It reconnects by itself.
    let mut again = server.accept().await;
    again.handshake(ConnectReturnCode::Accepted).await;
    within(
        "Reconnected",
        state.wait_for(|s| {
            matches!(
                s,
                ConnectionState::Reconnected {
                    session_present: false
                }
            )
        }),
    )
    .await
    .unwrap();
    drop(conn);
    let disconnecting = tokio::spawn(async move { client.disconnect().await });
    assert_eq!(again.read().await, Some(Packet::Disconnect));
    within("disconnect", disconnecting).await.unwrap().unwrap();
}

#[tokio::test]
async fn protocol_version_3_1_sends_mqisdp() {
    let server = common::RawServer::bind().await;
    let config = ClientConfig {
        protocol_version: amqtt_client::Protocol::V31,
        ..test_config()
    };
    let client = MQTTClient::new(Some("old".into()), config).unwrap();
    let uri = format!("mqtt://{}", server.addr);
    let connecting = tokio::spawn(async move { client.connect(uri.as_str()).await });
    let mut conn = server.accept().await;
    let connect = conn.handshake(ConnectReturnCode::Accepted).await;
    assert_eq!(connect.protocol, amqtt_client::Protocol::V31);
    within("connect", connecting).await.unwrap().unwrap();
}

#[tokio::test]
async fn many_qos2_messages_awaiting_pubrel_are_not_a_protocol_error() {
    // A broker may pipeline many QoS 2 PUBLISHes before its PUBRELs; the client must accept
    // it (the codec's default cap of 100 unreleased ids is a broker-side protection).
    let server = common::RawServer::bind().await;
    let client = MQTTClient::new(Some("q2".into()), test_config()).unwrap();
    let uri = format!("mqtt://{}", server.addr);
    let connecting = {
        let client = client.clone();
        tokio::spawn(async move { client.connect(uri.as_str()).await })
    };
    let mut conn = server.accept().await;
    conn.handshake(ConnectReturnCode::Accepted).await;
    within("connect", connecting).await.unwrap().unwrap();
    let n = 300u16;
    for id in 1..=n {
        conn.write(Packet::Publish(mqtt_codec::Publish {
            dup: false,
            qos_pid: mqtt_codec::QosPid::ExactlyOnce(mqtt_codec::PacketId::new(id).unwrap()),
            retain: false,
            topic: amqtt_client::TopicName::new("q2/x").unwrap(),
            payload: bytes::Bytes::from(id.to_be_bytes().to_vec()),
        }))
        .await;
    }
    for id in 1..=n {
        assert_eq!(
            conn.read().await,
            Some(Packet::PubRec(mqtt_codec::PacketId::new(id).unwrap()))
        );
    }
    for id in 1..=n {
        conn.write(Packet::PubRel(mqtt_codec::PacketId::new(id).unwrap()))
            .await;
    }
    for id in 1..=n {
        assert_eq!(
            conn.read().await,
            Some(Packet::PubComp(mqtt_codec::PacketId::new(id).unwrap()))
        );
    }
    for id in 1..=n {
        let message = within("deliver", client.deliver_message(None))
            .await
            .unwrap();
        assert_eq!(&message.payload[..], id.to_be_bytes());
    }
    assert!(client.is_connected());
    let disconnecting = tokio::spawn(async move { client.disconnect().await });
    assert_eq!(conn.read().await, Some(Packet::Disconnect));
    within("disconnect", disconnecting).await.unwrap().unwrap();
}
