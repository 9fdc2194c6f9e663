//! TLS and WebSocket end to end, across the crates: the `amqtt_pub` and `amqtt_sub` binaries
//! (cli crate, configured by an aMQTT client YAML file) through the broker crate over tcp,
//! tls, ws and wss; an `MQTTClient` (client crate) that rides out a restart of the broker on
//! every transport; mutual TLS with a good, no and a bad client certificate from a config
//! file; a wrong CA in the config file. The per-crate details (handshake timeouts, header
//! parsing, certificate checks one by one) are tested in each crate's `tests/transports.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use amqtt_broker::Broker;
use amqtt_client::{ClientConfig, ConnectionState, MQTTClient, QoS};
use common::pki::{self, Pki};
use common::{
    broker_with, cli_bin, echo, listener_yaml, name, run, start_sub, strings, url, within, Peer,
};
use tokio::io::AsyncWriteExt;

const KINDS: [&str; 4] = ["tcp", "tls", "ws", "wss"];

/// An aMQTT client config file: the CA, optionally a client certificate, no retries.
fn client_yaml(pki: &Pki, name: &str, ca: &Path, cert: Option<&pki::CertFiles>) -> PathBuf {
    let mut yaml = format!(
        "reconnect_retries: 0\nconnection:\n  cafile: \"{}\"\n",
        ca.display()
    );
    if let Some(cert) = cert {
        yaml.push_str(&format!(
            "  certfile: \"{}\"\n  keyfile: \"{}\"\n",
            cert.cert.display(),
            cert.key.display()
        ));
    }
    let path = pki.dir().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqtt_pub_to_amqtt_sub_through_the_broker_over_every_transport() {
    let pki = Pki::new();
    let listeners: Vec<(String, String)> = KINDS
        .iter()
        .map(|k| {
            (
                name(k).to_string(),
                listener_yaml(&pki, k, "127.0.0.1:0", ""),
            )
        })
        .collect();
    let broker = broker_with(&listeners).await;
    let config = client_yaml(&pki, "client", &pki.ca, None);
    let config = config.display().to_string();
    for kind in KINDS {
        let url = url(kind, broker.local_addr(name(kind)).unwrap());
        let (sub, mut lines) = start_sub(&strings(&[
            "-c", &config, "--url", &url, "-t", "lines/#", "-q", "1", "-n", "2", "-v",
        ]))
        .await;
        // amqtt_pub -l: each stdin line is a QoS 1 message, published as it is read.
        let mut command = tokio::process::Command::new(cli_bin("amqtt_pub"));
        command
            .args([
                "-c", &config, "--url", &url, "-t", "lines/in", "-q", "1", "-l",
            ])
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::piped());
        let mut publisher = Peer::spawn("amqtt_pub", &mut command);
        let mut stdin = publisher.child.stdin.take().unwrap();
        stdin.write_all(b"first line\nsecond line\n").await.unwrap();
        drop(stdin);
        let (code, _, stderr) = publisher.finish().await;
        assert_eq!(code, 0, "amqtt_pub over {url}: {stderr}");
        // As in aMQTT, `-l` keeps each line's newline in the payload, so `-v` prints an empty
        // line after each message.
        for expected in ["lines/in first line", "", "lines/in second line", ""] {
            let line = within("a message", lines.next_line()).await.unwrap();
            assert_eq!(line.as_deref(), Some(expected), "over {url}");
        }
        let (code, _, _) = sub.finish().await;
        assert_eq!(code, 0, "amqtt_sub over {url} exits after -n 2");
    }
    broker.shutdown().await;
}

/// One listener of `kind` on `addr` (port 0 the first time, the same port after a restart).
async fn single(pki: &Pki, kind: &str, bind: &str) -> Broker {
    broker_with(&[(name(kind).to_string(), listener_yaml(pki, kind, bind, ""))]).await
}

async fn restart_and_reconnect(kind: &str) {
    let pki = Pki::new();
    let first = single(&pki, kind, "127.0.0.1:0").await;
    let addr = first.local_addr(name(kind)).unwrap();
    let mut config = ClientConfig {
        reconnect_max_interval: Duration::from_millis(100),
        reconnect_retries: None,
        ..ClientConfig::default()
    };
    config.connection.cafile = Some(pki.ca.display().to_string());
    let client = MQTTClient::new(Some(format!("restart-{kind}")), config).unwrap();
    within("connect", client.connect(url(kind, addr).as_str()))
        .await
        .unwrap();
    within("subscribe", client.subscribe(&[("r/#", QoS::AtLeastOnce)]))
        .await
        .unwrap();
    echo(&client, "r/1", "one").await;

    let mut state = client.state();
    first.shutdown().await;
    within("the loss to be seen", state.wait_for(|s| !s.is_connected()))
        .await
        .unwrap();
    // The same port again; the new broker knows nothing of the old session.
    let second = single(&pki, kind, &addr.to_string()).await;
    within(
        "reconnected",
        state.wait_for(|s| matches!(s, ConnectionState::Reconnected { .. })),
    )
    .await
    .unwrap();
    within(
        "subscribe again",
        client.subscribe(&[("r/#", QoS::AtLeastOnce)]),
    )
    .await
    .unwrap();
    echo(&client, "r/2", "two").await;
    within("disconnect", client.disconnect()).await.unwrap();
    second.shutdown().await;
}

#[tokio::test]
async fn a_client_rides_out_a_broker_restart_over_tcp() {
    restart_and_reconnect("tcp").await;
}

#[tokio::test]
async fn a_client_rides_out_a_broker_restart_over_tls() {
    restart_and_reconnect("tls").await;
}

#[tokio::test]
async fn a_client_rides_out_a_broker_restart_over_ws() {
    restart_and_reconnect("ws").await;
}

#[tokio::test]
async fn a_client_rides_out_a_broker_restart_over_wss() {
    restart_and_reconnect("wss").await;
}

/// Publishes with `amqtt_pub -c CONFIG` to `url`; returns (code, stderr).
async fn publish_with(config: &Path, url: &str) -> (i32, String) {
    let args = strings(&[
        "-c",
        &config.display().to_string(),
        "--url",
        url,
        "-t",
        "mtls/t",
        "-m",
        "certified",
        "-q",
        "1",
    ]);
    let (code, _, stderr) = run("amqtt_pub", cli_bin("amqtt_pub"), &args).await;
    (code, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_over_tls_and_wss_with_good_no_and_bad_client_certificates() {
    let pki = Pki::new();
    let client_ca = format!(", cafile: \"{}\"", pki.ca.display());
    let listeners: Vec<(String, String)> = ["tls", "wss"]
        .iter()
        .map(|k| {
            (
                k.to_string(),
                listener_yaml(&pki, k, "127.0.0.1:0", &client_ca),
            )
        })
        .collect();
    let broker = broker_with(&listeners).await;
    let good = client_yaml(&pki, "good", &pki.ca, Some(&pki.client));
    let none = client_yaml(&pki, "none", &pki.ca, None);
    let bad = client_yaml(&pki, "bad", &pki.ca, Some(&pki.rogue_client));
    for kind in ["tls", "wss"] {
        let url = url(kind, broker.local_addr(name(kind)).unwrap());
        // A subscriber with the good certificate sees what the good publisher sends.
        let (sub, mut lines) = start_sub(&strings(&[
            "-c",
            &good.display().to_string(),
            "--url",
            &url,
            "-t",
            "mtls/#",
            "-q",
            "1",
            "-n",
            "1",
        ]))
        .await;
        for (config, what) in [(&none, "no"), (&bad, "a foreign")] {
            let (code, stderr) = publish_with(config, &url).await;
            assert_ne!(code, 0, "{kind} with {what} client certificate: {stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr:?}");
        }
        let (code, stderr) = publish_with(&good, &url).await;
        assert_eq!(code, 0, "{kind} with the good certificate: {stderr}");
        let line = within("the message", lines.next_line()).await.unwrap();
        // Only the good publisher's message arrives: -n 1 and exactly this payload.
        assert_eq!(line.as_deref(), Some("certified"), "over {kind}");
        let (code, _, _) = sub.finish().await;
        assert_eq!(code, 0);
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_in_the_client_config_is_a_clear_one_line_error() {
    let pki = Pki::new();
    let broker = single(&pki, "wss", "127.0.0.1:0").await;
    let url = url("wss", broker.local_addr("wss").unwrap());
    let wrong = client_yaml(&pki, "wrong", &pki.other_ca, None);
    let (code, stderr) = publish_with(&wrong, &url).await;
    assert_ne!(code, 0);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.contains("TLS handshake with localhost failed"),
        "{stderr}"
    );
    assert!(stderr.contains("not signed by a trusted CA"), "{stderr}");
    broker.shutdown().await;
}
