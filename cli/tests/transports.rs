//! `amqtt_pub`, `amqtt_sub` and `amqtt_bench` over TLS and WebSocket, end to end against the
//! in-process broker: `--url mqtts://… --ca-file`, a client certificate (`--cert/--key`) on a
//! mutual-TLS listener, `ws://` and `wss://`, `--extra-headers` arriving at a WebSocket server,
//! and the one-line errors of an untrusted certificate or a missing client certificate.
//! Certificates are made at test time (rcgen); nothing here needs an external peer.

mod common;
#[path = "../../amqtt-broker/tests/transports_pki/mod.rs"]
mod pki;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amqtt_broker::{Broker, BrokerConfig};
use amqtt_ws::tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use amqtt_ws::WsStream;
use bytes::BytesMut;
use common::{run, within, Sub};
use mqtt_codec::{Decoder, Packet};
use pki::Pki;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;

/// The broker: `tls`, `mtls` (client certificates required, signed by the test CA), `ws`,
/// `wss`.
async fn broker(pki: &Pki) -> Broker {
    let tls = pki.server_yaml();
    let ca = pki.ca.display();
    let yaml = format!(
        "listeners:\n\
         \x20 default: {{type: tcp, bind: \"127.0.0.1:0\"}}\n\
         \x20 tls: {{type: tcp, bind: \"127.0.0.1:0\", {tls}}}\n\
         \x20 mtls: {{type: tcp, bind: \"127.0.0.1:0\", {tls}, cafile: \"{ca}\"}}\n\
         \x20 ws: {{type: ws, bind: \"127.0.0.1:0\"}}\n\
         \x20 wss: {{type: ws, bind: \"127.0.0.1:0\", {tls}}}\n\
         plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
    );
    let broker = Broker::new(BrokerConfig::from_yaml_str(&yaml).unwrap()).unwrap();
    broker.start().await.unwrap();
    broker
}

fn url(broker: &Broker, scheme: &str, listener: &str, host: &str) -> String {
    let port = broker.local_addr(listener).unwrap().port();
    match scheme {
        "ws" | "wss" => format!("{scheme}://{host}:{port}/mqtt"),
        _ => format!("{scheme}://{host}:{port}"),
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// amqtt_sub and amqtt_pub over the same URL with the same TLS flags: a QoS 1 message goes
/// through and amqtt_sub exits 0 after `-n 1`.
async fn round_trip(url: &str, tls: &[String]) {
    let mut sub_args = strings(&["--url", url, "-t", "e2e/#", "-q", "1", "-n", "1", "-v"]);
    sub_args.extend(tls.iter().cloned());
    let mut sub = Sub::start_with(&sub_args, true).await;
    let mut pub_args = strings(&["--url", url, "-t", "e2e/x", "-m", "through", "-q", "1"]);
    pub_args.extend(tls.iter().cloned());
    let (code, _, stderr) = run("amqtt_pub", &pub_args, b"").await;
    assert_eq!(code, 0, "amqtt_pub over {url}: {stderr}");
    assert_eq!(sub.line().await, "e2e/x through", "over {url}");
    assert_eq!(sub.exit_code().await, 0, "amqtt_sub over {url}");
}

fn ca_flags(pki: &Pki) -> Vec<String> {
    vec!["--ca-file".into(), pki.ca.display().to_string()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_and_sub_over_mqtts_with_a_ca_file() {
    let pki = Pki::new();
    let broker = broker(&pki).await;
    round_trip(&url(&broker, "mqtts", "tls", "127.0.0.1"), &ca_flags(&pki)).await;
    // The host name is checked too: `localhost` is in the certificate.
    round_trip(&url(&broker, "mqtts", "tls", "localhost"), &ca_flags(&pki)).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_and_sub_over_ws_and_wss() {
    let pki = Pki::new();
    let broker = broker(&pki).await;
    round_trip(&url(&broker, "ws", "ws", "127.0.0.1"), &[]).await;
    round_trip(&url(&broker, "wss", "wss", "localhost"), &ca_flags(&pki)).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_opens_a_mutual_tls_listener() {
    let pki = Pki::new();
    let broker = broker(&pki).await;
    let mut flags = ca_flags(&pki);
    flags.extend([
        "--cert".to_string(),
        pki.client.cert.display().to_string(),
        "--key".to_string(),
        pki.client.key.display().to_string(),
    ]);
    round_trip(&url(&broker, "mqtts", "mtls", "127.0.0.1"), &flags).await;
    broker.shutdown().await;
}

/// Runs amqtt_pub once and checks it failed promptly with exactly one line on stderr.
async fn one_line_failure(args: Vec<String>) -> String {
    let started = Instant::now();
    let (code, stdout, stderr) = run("amqtt_pub", &args, b"").await;
    // A refused certificate is final: retrying it (4 attempts, 2 s and 4 s apart) would take
    // over 6 s.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no retries: {:?} {stderr}",
        started.elapsed()
    );
    assert_ne!(code, 0, "amqtt_pub should fail: {stdout} {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_certificate_is_a_one_line_error() {
    let pki = Pki::new();
    let broker = broker(&pki).await;
    let target = url(&broker, "mqtts", "tls", "127.0.0.1");
    // No --ca-file: the Mozilla roots do not know the test CA.
    let stderr = one_line_failure(strings(&["--url", &target, "-t", "t", "-m", "x"])).await;
    assert!(stderr.contains("not signed by a trusted CA"), "{stderr}");
    // The wrong CA, over wss.
    let target = url(&broker, "wss", "wss", "localhost");
    let other = pki.other_ca.display().to_string();
    let stderr = one_line_failure(strings(&[
        "--url",
        &target,
        "--ca-file",
        &other,
        "-t",
        "t",
        "-m",
        "x",
    ]))
    .await;
    assert!(stderr.contains("TLS handshake"), "{stderr}");
    // --insecure accepts it (and says nothing of it on stdout).
    let (code, _, stderr) = run(
        "amqtt_pub",
        &strings(&["--url", &target, "--insecure", "-t", "t", "-m", "x"]),
        b"",
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_without_a_client_certificate_fails_cleanly() {
    let pki = Pki::new();
    let broker = broker(&pki).await;
    let target = url(&broker, "mqtts", "mtls", "127.0.0.1");
    let mut args = strings(&["--url", &target, "-t", "t", "-m", "x"]);
    args.extend(ca_flags(&pki));
    one_line_failure(args.clone()).await;
    // A certificate from another CA is refused too.
    args.extend([
        "--cert".to_string(),
        pki.rogue_client.cert.display().to_string(),
        "--key".to_string(),
        pki.rogue_client.key.display().to_string(),
    ]);
    one_line_failure(args).await;
    broker.shutdown().await;
}

/// What the tiny WebSocket server saw: the upgrade request's headers and path, and the
/// PUBLISH topics and payloads that followed.
#[derive(Default, Debug)]
struct Seen {
    headers: Vec<(String, String)>,
    path: String,
    published: Vec<(String, Vec<u8>)>,
}

/// Accepts one WebSocket connection, records the request, answers CONNECT with an accepting
/// CONNACK and records every PUBLISH until the client disconnects.
async fn tiny_ws_server(listener: TcpListener, seen: Arc<Mutex<Seen>>) {
    let (tcp, _) = listener.accept().await.unwrap();
    let record = seen.clone();
    #[allow(clippy::result_large_err)] // tungstenite's callback signature.
    let callback = move |request: &Request, mut response: Response| {
        let mut seen = record.lock().unwrap();
        seen.path = request.uri().path().to_owned();
        for (name, value) in request.headers() {
            seen.headers.push((
                name.as_str().to_owned(),
                value.to_str().unwrap_or("").to_owned(),
            ));
        }
        response
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
        Ok(response)
    };
    let ws = amqtt_ws::tokio_tungstenite::accept_hdr_async(tcp, callback)
        .await
        .unwrap();
    let mut stream = WsStream::new(ws);
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    loop {
        while let Some(packet) = decoder.decode(&mut buf).unwrap() {
            match packet {
                Packet::Connect(_) => stream.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap(),
                Packet::Publish(publish) => seen
                    .lock()
                    .unwrap()
                    .published
                    .push((publish.topic.as_str().to_owned(), publish.payload.to_vec())),
                Packet::Disconnect => return,
                _ => {}
            }
            stream.flush().await.unwrap();
        }
        if stream.read_buf(&mut buf).await.unwrap() == 0 {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_headers_and_the_url_path_reach_the_websocket_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = tokio::spawn(tiny_ws_server(listener, seen.clone()));
    let target = format!("ws://127.0.0.1:{port}/custom/path");
    let (code, _, stderr) = run(
        "amqtt_pub",
        &strings(&[
            "--url",
            &target,
            "--extra-headers",
            r#"{"X-Api-Key": "s3cret", "X-Other": "two words"}"#,
            "-t",
            "hdr/t",
            "-m",
            "with headers",
        ]),
        b"",
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    within("the server to finish", server).await.unwrap();
    let seen = seen.lock().unwrap();
    let header = |name: &str| {
        seen.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-api-key"), Some("s3cret"), "{seen:?}");
    assert_eq!(header("x-other"), Some("two words"), "{seen:?}");
    assert_eq!(header("sec-websocket-protocol"), Some("mqtt"), "{seen:?}");
    assert_eq!(seen.path, "/custom/path");
    assert_eq!(
        seen.published,
        vec![("hdr/t".to_owned(), b"with headers".to_vec())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_extra_headers_are_a_one_line_error() {
    let stderr = one_line_failure(strings(&[
        "--url",
        "ws://127.0.0.1:1/mqtt",
        "--extra-headers",
        "[1, 2]",
        "-t",
        "t",
        "-m",
        "x",
    ]))
    .await;
    assert!(stderr.to_lowercase().contains("header"), "{stderr}");
}

/// Runs `amqtt_bench pubsub` at QoS 1 over `url` and checks nothing was lost.
async fn bench_pubsub(url: &str, extra: &[String]) {
    let mut args = strings(&[
        "pubsub",
        "--url",
        url,
        "--json",
        "--pubs",
        "2",
        "--subs",
        "2",
        "--qos",
        "1",
        "--count",
        "200",
        "--duration",
        "20s",
    ]);
    args.extend(extra.iter().cloned());
    let bench = common::bin("amqtt_bench");
    let output = within(
        "amqtt_bench",
        Command::new(bench)
            .args(&args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert!(output.status.success(), "{url}: {output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["publish"]["acked"], 400, "{url}: {report}");
    assert_eq!(report["receive"]["expected"], 800, "{url}: {report}");
    assert_eq!(report["receive"]["unique"], 800, "{url}: {report}");
    assert_eq!(report["receive"]["lost"], 0, "{url}: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqtt_bench_runs_over_mqtts_ws_and_wss() {
    let pki = Pki::new();
    let broker = broker(&pki).await;
    bench_pubsub(&url(&broker, "mqtts", "tls", "127.0.0.1"), &ca_flags(&pki)).await;
    bench_pubsub(&url(&broker, "ws", "ws", "127.0.0.1"), &[]).await;
    bench_pubsub(&url(&broker, "wss", "wss", "localhost"), &ca_flags(&pki)).await;
    bench_pubsub(
        &url(&broker, "wss", "wss", "localhost"),
        &strings(&["--insecure"]),
    )
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqtt_bench_refuses_an_untrusted_certificate_in_one_line() {
    let pki = Pki::new();
    let broker = broker(&pki).await;
    let target = url(&broker, "mqtts", "tls", "127.0.0.1");
    let (code, stdout, stderr) = run(
        "amqtt_bench",
        &strings(&[
            "conn",
            "--url",
            &target,
            "--clients",
            "1",
            "--duration",
            "1s",
        ]),
        b"",
    )
    .await;
    assert_ne!(code, 0, "{stdout}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("not signed by a trusted CA"), "{stderr}");
    broker.shutdown().await;
}
