//! `MQTTClient` over every transport against the in-process broker: `mqtt://`, `mqtts://`,
//! `ws://` and `wss://` with QoS 1 traffic and a reconnect; certificate checks (CA, host
//! name, mutual TLS, the insecure option); WebSocket headers and path on the wire.

mod common;
#[path = "../../amqtt-broker/tests/transports_pki/mod.rs"]
mod pki;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use amqtt_broker::{Broker, BrokerConfig};
use amqtt_client::{ClientConfig, ClientError, ConnectParams, ConnectionState, MQTTClient, QoS};
use common::{test_config, within, STEP};
use pki::Pki;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// A broker with one listener of each kind: `default` (tcp), `tls`, `ws`, `wss`, plus
/// `extra` appended to the TLS listeners (e.g. a client CA).
async fn broker(pki: &Pki, bind_host: &str, extra: &str) -> Broker {
    let tls = format!("{}{extra}", pki.server_yaml());
    let yaml = format!(
        "listeners:\n\
         \x20 default: {{type: tcp, bind: \"{bind_host}:0\"}}\n\
         \x20 tls: {{type: tcp, bind: \"{bind_host}:0\", {tls}}}\n\
         \x20 ws: {{type: ws, bind: \"{bind_host}:0\"}}\n\
         \x20 wss: {{type: ws, bind: \"{bind_host}:0\", {tls}}}\n"
    );
    let broker = Broker::new(BrokerConfig::from_yaml_str(&yaml).unwrap()).unwrap();
    broker.start().await.unwrap();
    broker
}

fn port(broker: &Broker, listener: &str) -> u16 {
    broker.local_addr(listener).unwrap().port()
}

/// The URI of `scheme` on `broker`; TLS to `mqtts` goes to an IP address (checked against
/// the certificate's IP SAN), to `wss` to a host name.
fn uri(broker: &Broker, scheme: &str) -> String {
    match scheme {
        "mqtt" => format!("mqtt://127.0.0.1:{}", port(broker, "default")),
        "mqtts" => format!("mqtts://127.0.0.1:{}", port(broker, "tls")),
        "ws" => format!("ws://127.0.0.1:{}/mqtt", port(broker, "ws")),
        "wss" => format!("wss://localhost:{}/mqtt", port(broker, "wss")),
        other => panic!("no scheme {other}"),
    }
}

fn trusting(pki: &Pki) -> ClientConfig {
    let mut config = test_config();
    config.connection.cafile = Some(pki.ca.display().to_string());
    config
}

fn one_shot(mut config: ClientConfig) -> ClientConfig {
    config.auto_reconnect = false;
    config.connection_timeout = Duration::from_secs(5);
    config
}

async fn expect_message(client: &MQTTClient, payload: &str) {
    let message = within("a message", client.deliver_message(Some(STEP)))
        .await
        .unwrap();
    assert_eq!(&message.payload[..], payload.as_bytes());
    assert_eq!(message.qos, QoS::AtLeastOnce);
}

async fn qos1_traffic_and_a_reconnect(scheme: &str) {
    let pki = Pki::new();
    let broker = broker(&pki, "127.0.0.1", "").await;
    let uri = uri(&broker, scheme);
    let id = format!("over-{scheme}");
    let client = MQTTClient::new(Some(id.clone()), trusting(&pki)).unwrap();
    within("connect", client.connect(uri.as_str()))
        .await
        .unwrap();
    within("subscribe", client.subscribe(&[("t/#", QoS::AtLeastOnce)]))
        .await
        .unwrap();
    within(
        "publish",
        client.publish("t/1", "before", QoS::AtLeastOnce, false),
    )
    .await
    .unwrap();
    expect_message(&client, "before").await;

    // A second connection with the same client id takes the session over; the first client
    // loses its connection, reconnects over the same transport and takes it back.
    let mut state = client.state();
    let intruder = MQTTClient::new(Some(id), one_shot(trusting(&pki))).unwrap();
    within("intruder connect", intruder.connect(uri.as_str()))
        .await
        .unwrap();
    within(
        "reconnected",
        state.wait_for(|s| matches!(s, ConnectionState::Reconnected { .. })),
    )
    .await
    .unwrap();
    within(
        "publish after reconnect",
        client.publish("t/2", "after", QoS::AtLeastOnce, false),
    )
    .await
    .unwrap();
    expect_message(&client, "after").await;
    within("disconnect", client.disconnect()).await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn qos1_traffic_and_a_reconnect_over_tcp() {
    qos1_traffic_and_a_reconnect("mqtt").await;
}

#[tokio::test]
async fn qos1_traffic_and_a_reconnect_over_tls_to_an_ip_address() {
    qos1_traffic_and_a_reconnect("mqtts").await;
}

#[tokio::test]
async fn qos1_traffic_and_a_reconnect_over_websocket() {
    qos1_traffic_and_a_reconnect("ws").await;
}

#[tokio::test]
async fn qos1_traffic_and_a_reconnect_over_websocket_tls() {
    qos1_traffic_and_a_reconnect("wss").await;
}

async fn connect_error(config: ClientConfig, uri: &str) -> ClientError {
    let client = MQTTClient::new(Some("refused".into()), one_shot(config)).unwrap();
    within("connect", client.connect(uri)).await.unwrap_err()
}

#[tokio::test]
async fn wrong_ca_fails_with_a_clear_error() {
    let pki = Pki::new();
    let broker = broker(&pki, "127.0.0.1", "").await;
    let mut config = test_config();
    config.connection.cafile = Some(pki.other_ca.display().to_string());
    for scheme in ["mqtts", "wss"] {
        let err = connect_error(config.clone(), &uri(&broker, scheme)).await;
        assert!(matches!(err, ClientError::Tls(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("UnknownIssuer"), "{text}");
        assert!(
            text.contains("cafile"),
            "the error says what to change: {text}"
        );
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn without_a_configured_ca_the_public_roots_are_used_and_a_private_ca_fails() {
    let pki = Pki::new();
    let broker = broker(&pki, "127.0.0.1", "").await;
    let err = connect_error(test_config(), &uri(&broker, "mqtts")).await;
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    broker.shutdown().await;
}

#[tokio::test]
async fn ca_given_to_connect_as_cadata_overrides_the_config() {
    let pki = Pki::new();
    let broker = broker(&pki, "127.0.0.1", "").await;
    let client = MQTTClient::new(Some("cadata".into()), one_shot(test_config())).unwrap();
    let params = ConnectParams {
        cadata: Some(pki.ca_pem.clone()),
        ..ConnectParams::default()
    };
    within(
        "connect",
        client.connect_with(uri(&broker, "mqtts").as_str(), params),
    )
    .await
    .unwrap();
    client.disconnect().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn danger_accept_invalid_certs_connects_without_any_ca() {
    let pki = Pki::new();
    let broker = broker(&pki, "127.0.0.1", "").await;
    for scheme in ["mqtts", "wss"] {
        let config = one_shot(test_config().danger_accept_invalid_certs());
        let client = MQTTClient::new(Some(format!("insecure-{scheme}")), config).unwrap();
        within("connect", client.connect(uri(&broker, scheme).as_str()))
            .await
            .unwrap();
        client.disconnect().await.unwrap();
    }
    broker.shutdown().await;
}

/// A TCP relay on `bind_host` to `target`, counting the connections it accepts. Abort the
/// handle to stop it.
async fn counting_relay(
    bind_host: &str,
    target: SocketAddr,
) -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
    let listener = TcpListener::bind((bind_host, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let relay = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, accepted, relay)
}

#[tokio::test]
async fn a_refused_certificate_ends_connect_after_one_attempt_without_retrying() {
    let pki = Pki::new();
    let broker = broker(&pki, "127.0.0.1", "").await;
    let mtls = broker_with_client_ca(&pki).await;
    let tls = broker.local_addr("tls").unwrap();
    let wss = broker.local_addr("wss").unwrap();
    let mut foreign_ca = test_config();
    foreign_ca.connection.cafile = Some(pki.other_ca.display().to_string());
    // (what, client config, relay bind address, broker listener, URI scheme and path)
    let cases = [
        (
            "a foreign CA",
            foreign_ca.clone(),
            "127.0.0.1",
            tls,
            "mqtts",
            "",
        ),
        (
            "a foreign CA over wss",
            foreign_ca,
            "127.0.0.1",
            wss,
            "wss",
            "/mqtt",
        ),
        // 127.0.0.2 is loopback too, and not in the server certificate.
        (
            "a host name not in the certificate",
            trusting(&pki),
            "127.0.0.2",
            tls,
            "mqtts",
            "",
        ),
        (
            "no client certificate for mutual TLS",
            trusting(&pki),
            "127.0.0.1",
            mtls.local_addr("tls").unwrap(),
            "mqtts",
            "",
        ),
    ];
    for (what, config, bind_host, target, scheme, path) in cases {
        // `test_config` keeps auto_reconnect on: a retryable failure would be tried again.
        assert!(config.auto_reconnect);
        let (relay_addr, accepted, relay) = counting_relay(bind_host, target).await;
        let client = MQTTClient::new(Some("one-attempt".into()), config).unwrap();
        let uri = format!("{scheme}://{relay_addr}{path}");
        let err = within(what, client.connect(uri.as_str()))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Tls(_)), "{what}: {err:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "{what}: {err}");
        relay.abort();
    }
    mtls.shutdown().await;
    broker.shutdown().await;
}

/// A broker whose `tls` listener requires client certificates signed by the test CA.
async fn broker_with_client_ca(pki: &Pki) -> Broker {
    let yaml = format!(
        "listeners:\n\
         \x20 default: {{type: tcp, bind: \"127.0.0.1:0\"}}\n\
         \x20 tls: {{type: tcp, bind: \"127.0.0.1:0\", {}, cafile: {:?}}}\n",
        pki.server_yaml(),
        pki.ca
    );
    let broker = Broker::new(BrokerConfig::from_yaml_str(&yaml).unwrap()).unwrap();
    broker.start().await.unwrap();
    broker
}

#[tokio::test]
async fn a_network_failure_during_the_handshake_is_retried() {
    // A listener that accepts and closes at once: the handshake ends with the stream, which
    // the network may do to anyone, so the client tries again.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let pki = Pki::new();
    let mut config = trusting(&pki);
    config.reconnect_retries = Some(1);
    let client = MQTTClient::new(Some("retried".into()), config).unwrap();
    let err = within(
        "connect",
        client.connect(format!("mqtts://{addr}").as_str()),
    )
    .await
    .unwrap_err();
    match err {
        ClientError::ConnectFailed { attempts, .. } => assert_eq!(attempts, 3),
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    server.abort();
}

#[tokio::test]
async fn host_name_is_checked_unless_check_hostname_is_off() {
    let pki = Pki::new();
    // 127.0.0.2 is loopback too, and not in the server certificate.
    let broker = broker(&pki, "127.0.0.2", "").await;
    let other_name = format!("mqtts://127.0.0.2:{}", port(&broker, "tls"));
    let err = connect_error(trusting(&pki), &other_name).await;
    assert!(err.to_string().contains("not valid for name"), "{err}");
    let mut config = trusting(&pki);
    config.check_hostname = false;
    let client = MQTTClient::new(Some("no-hostname".into()), one_shot(config)).unwrap();
    within("connect", client.connect(other_name.as_str()))
        .await
        .unwrap();
    client.disconnect().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn client_certificate_from_the_config_passes_mutual_tls() {
    let pki = Pki::new();
    let broker = broker(&pki, "127.0.0.1", &format!(", cafile: {:?}", pki.ca)).await;
    let mut config = trusting(&pki);
    config.connection.certfile = Some(pki.client.cert.display().to_string());
    config.connection.keyfile = Some(pki.client.key.display().to_string());
    for scheme in ["mqtts", "wss"] {
        let client =
            MQTTClient::new(Some(format!("mtls-{scheme}")), one_shot(config.clone())).unwrap();
        within("connect", client.connect(uri(&broker, scheme).as_str()))
            .await
            .unwrap();
        within("publish", client.publish("m", "x", QoS::AtLeastOnce, false))
            .await
            .unwrap();
        client.disconnect().await.unwrap();
    }
    // Without a client certificate the broker refuses the connection.
    let client = MQTTClient::new(Some("no-cert".into()), one_shot(trusting(&pki))).unwrap();
    let refused = within("connect", client.connect(uri(&broker, "mqtts").as_str())).await;
    assert!(refused.is_err(), "{refused:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn bad_client_key_file_is_a_config_error_naming_it() {
    let pki = Pki::new();
    let mut config = trusting(&pki);
    config.connection.certfile = Some(pki.client.cert.display().to_string());
    config.connection.keyfile = Some(pki.ca.display().to_string());
    let err = connect_error(config, "mqtts://127.0.0.1:1").await;
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("connection.keyfile"), "{err}");
}

#[tokio::test]
#[allow(clippy::result_large_err)] // tungstenite's upgrade callback signature
async fn websocket_handshake_carries_path_subprotocol_and_additional_headers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut seen = None;
        let _ =
            tokio_tungstenite::accept_hdr_async(tcp, |request: &Request, response: Response| {
                let header = |name: &str| {
                    request
                        .headers()
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_owned())
                };
                seen = Some((
                    request.uri().to_string(),
                    header("sec-websocket-protocol"),
                    header("authorization"),
                    header("x-custom"),
                ));
                Ok(response)
            })
            .await;
        seen
    });
    let client = MQTTClient::new(Some("headers".into()), one_shot(test_config())).unwrap();
    let params = ConnectParams {
        additional_headers: vec![
            ("Authorization".into(), "Bearer abc".into()),
            ("X-Custom".into(), "1".into()),
        ],
        ..ConnectParams::default()
    };
    // The scripted server answers no CONNECT, so the connect itself fails; the request is
    // what this test checks.
    let url = format!("ws://{addr}/mqtt/path?token=x");
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        client.connect_with(url.as_str(), params),
    )
    .await;
    let seen = within("the handshake", server).await.unwrap().unwrap();
    assert_eq!(seen.0, "/mqtt/path?token=x");
    assert_eq!(seen.1.as_deref(), Some("mqtt"));
    assert_eq!(seen.2.as_deref(), Some("Bearer abc"));
    assert_eq!(seen.3.as_deref(), Some("1"));
}
