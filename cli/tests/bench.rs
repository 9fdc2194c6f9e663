//! `amqtt_bench` end to end: argument and connection errors without a broker, short bounded
//! runs against the in-process amqtt broker, and the same against a real mosquitto (ignored
//! unless mosquitto is installed: `--include-ignored`).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use amqtt_broker::{Broker, BrokerConfig};
use assert_cmd::Command as AssertCommand;
use serde_json::Value;

/// Every run below is bounded by its own `--duration`; this bounds the process on top.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

fn bench() -> AssertCommand {
    let mut cmd = AssertCommand::cargo_bin("amqtt_bench").expect("amqtt_bench is built");
    cmd.timeout(PROCESS_TIMEOUT);
    cmd
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn json_of(output: &[u8]) -> Value {
    let text = String::from_utf8_lossy(output);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Starts the amqtt broker in this process on a free port; returns it and its URL.
async fn start_amqtt() -> (Broker, String) {
    let config = BrokerConfig::from_yaml_str(
        "listeners: {default: {type: tcp, bind: \"127.0.0.1:0\"}}\n\
         plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n",
    )
    .unwrap();
    let broker = Broker::new(config).unwrap();
    broker.start().await.unwrap();
    let addr = broker.local_addr("default").unwrap();
    (broker, format!("mqtt://{addr}"))
}

/// Runs amqtt_bench with `args` off the async threads (the broker keeps running on them).
async fn bench_output(args: Vec<String>) -> std::process::Output {
    let run = tokio::task::spawn_blocking(move || bench().args(args).output().unwrap());
    tokio::time::timeout(PROCESS_TIMEOUT, run)
        .await
        .expect("amqtt_bench finished in time")
        .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_against_the_amqtt_broker_reports_exact_counts_at_qos1() {
    let (broker, url) = start_amqtt().await;
    let output = bench_output(strings(&[
        "pubsub",
        "--url",
        &url,
        "--json",
        "--pubs",
        "3",
        "--subs",
        "2",
        "--qos",
        "1",
        "--window",
        "16",
        "--count",
        "400",
        "--duration",
        "20s",
    ]))
    .await;
    broker.shutdown().await;
    assert!(output.status.success(), "{output:?}");
    let report = json_of(&output.stdout);
    assert_eq!(report["publish"]["sent"], 1200);
    assert_eq!(report["publish"]["acked"], 1200);
    assert_eq!(report["receive"]["expected"], 2400);
    assert_eq!(report["receive"]["unique"], 2400);
    assert_eq!(report["receive"]["lost"], 0);
    assert_eq!(report["receive"]["duplicates"], 0);
    assert_eq!(report["receive"]["out_of_order"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_against_the_amqtt_broker_loses_nothing_at_qos2() {
    let (broker, url) = start_amqtt().await;
    let output = bench_output(strings(&[
        "pubsub",
        "--url",
        &url,
        "--json",
        "--pubs",
        "2",
        "--subs",
        "1",
        "--qos",
        "2",
        "--count",
        "300",
        "--duration",
        "20s",
    ]))
    .await;
    broker.shutdown().await;
    assert!(output.status.success(), "{output:?}");
    let report = json_of(&output.stdout);
    assert_eq!(report["publish"]["acked"], 600);
    assert_eq!(report["receive"]["unique"], 600);
    assert_eq!(report["receive"]["lost"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_alone_stops_at_its_count_and_reports_it() {
    let (broker, url) = start_amqtt().await;
    let output = bench_output(strings(&[
        "pub",
        "--url",
        &url,
        "--json",
        "--clients",
        "4",
        "--qos",
        "0",
        "--count",
        "250",
        "--duration",
        "20s",
        "--size",
        "128",
    ]))
    .await;
    broker.shutdown().await;
    assert!(output.status.success(), "{output:?}");
    let report = json_of(&output.stdout);
    assert_eq!(report["mode"], "pub");
    assert_eq!(report["publish"]["sent"], 1000);
    assert_eq!(
        report["publish"]["acked"], 0,
        "QoS 0 has no acknowledgements"
    );
    assert_eq!(report["publish"]["payload_size"], 128);
    assert!(report["publish"]["duration_s"].as_f64().unwrap() < 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_alone_is_bounded_by_its_duration() {
    let (broker, url) = start_amqtt().await;
    let started = Instant::now();
    let output = bench_output(strings(&[
        "sub",
        "--url",
        &url,
        "--json",
        "--clients",
        "2",
        "--duration",
        "300ms",
    ]))
    .await;
    broker.shutdown().await;
    assert!(output.status.success(), "{output:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let report = json_of(&output.stdout);
    assert_eq!(report["receive"]["received"], 0);
    assert_eq!(report["receive"]["lost"], 0);
    assert!(report["receive"]["latency_us"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conn_against_the_amqtt_broker_holds_every_connection() {
    let (broker, url) = start_amqtt().await;
    let output = bench_output(strings(&[
        "conn",
        "--url",
        &url,
        "--json",
        "--clients",
        "50",
        "--duration",
        "300ms",
    ]))
    .await;
    // The load tool disconnected every client before exiting; wait (bounded) for the broker to
    // have handled all of them.
    let all_gone = tokio::time::timeout(Duration::from_secs(10), async {
        while broker.connected_clients() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    broker.shutdown().await;
    assert!(output.status.success(), "{output:?}");
    assert!(all_gone.is_ok(), "clients still connected after the run");
    let report = json_of(&output.stdout);
    assert_eq!(report["connections"]["connected"], 50);
    assert_eq!(report["connections"]["failed"], 0);
    assert!(report["connections"]["hold_s"].as_f64().unwrap() >= 0.3);
}

#[test]
fn an_unreachable_broker_is_a_one_line_error_and_a_failed_exit() {
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    for mode in ["pub", "sub", "pubsub", "conn"] {
        let output = bench()
            .args([mode, "--url", &url, "--duration", "1s", "--json"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{mode}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{mode}: {stderr}");
        assert!(
            stderr.starts_with("amqtt_bench: cannot connect to 127.0.0.1:"),
            "{mode}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{mode}: no report without a run");
    }
}

#[test]
fn an_unknown_url_scheme_is_refused() {
    let output = bench()
        .args(["pub", "--url", "http://127.0.0.1:8080", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the scheme must be mqtt://"), "{stderr}");
}

#[test]
fn a_payload_too_small_for_the_stamp_is_refused_before_connecting() {
    let output = bench()
        .args(["pub", "--url", "mqtt://127.0.0.1:1", "--size", "10"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--size must be at least 24"));
}

/// A mosquitto listening on a free local port, killed on drop.
struct Mosquitto {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Mosquitto {
    fn start() -> Mosquitto {
        let dir = TempDir::new();
        let port = free_port();
        let config = dir.0.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed");
        let mosquitto = Mosquitto {
            child,
            port,
            _dir: dir,
        };
        // Wait for the listener (an event we poll for), bounded.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        mosquitto
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "amqtt-bench-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[test]
#[ignore = "needs mosquitto"]
fn pubsub_at_qos1_delivers_every_message_exactly_once() {
    let broker = Mosquitto::start();
    let output = bench()
        .args(["pubsub", "--url", &broker.url(), "--json"])
        .args(["--pubs", "4", "--subs", "2", "--qos", "1", "--window", "8"])
        .args(["--count", "500", "--duration", "20s", "--topic", "bench/%i"])
        .args(["--sub-topic", "bench/#"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report = json_of(&output.stdout);
    assert_eq!(report["mode"], "pubsub");
    assert_eq!(report["connections"]["connected"], 6);
    assert_eq!(report["publish"]["sent"], 2000);
    assert_eq!(
        report["publish"]["acked"], 2000,
        "every PUBLISH got its PUBACK"
    );
    let receive = &report["receive"];
    assert_eq!(
        receive["expected"], 4000,
        "2 subscribers x 4 publishers x 500"
    );
    assert_eq!(receive["unique"], 4000);
    assert_eq!(receive["received"], 4000);
    assert_eq!(receive["lost"], 0);
    assert_eq!(receive["duplicates"], 0);
    assert_eq!(
        receive["out_of_order"], 0,
        "MQTT keeps each publisher's order"
    );
    assert!(receive["latency_us"]["p50"].as_u64().unwrap() > 0);
    assert_eq!(report["errors"].as_array().map(Vec::len), Some(0));
}

#[test]
#[ignore = "needs mosquitto"]
fn pubsub_at_qos2_counts_pubcomps_and_loses_nothing() {
    let broker = Mosquitto::start();
    let output = bench()
        .args(["pubsub", "--url", &broker.url(), "--json"])
        .args(["--pubs", "2", "--subs", "1", "--qos", "2", "--count", "300"])
        .args(["--duration", "20s", "--size", "100"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report = json_of(&output.stdout);
    assert_eq!(report["publish"]["acked"], 600);
    assert_eq!(report["publish"]["payload_size"], 100);
    assert_eq!(report["receive"]["unique"], 600);
    assert_eq!(report["receive"]["lost"], 0);
}

#[test]
#[ignore = "needs mosquitto"]
fn separate_pub_and_sub_processes_agree_on_the_counts() {
    let broker = Mosquitto::start();
    let mut sub = Command::new(assert_cmd::cargo::cargo_bin("amqtt_bench"))
        .args(["sub", "--url", &broker.url(), "--json", "--qos", "1"])
        .args(["--topic", "bench/#", "--count", "600", "--duration", "20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The subscriber says when its SUBSCRIBE was acknowledged.
    let mut ready = String::new();
    BufReader::new(sub.stderr.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "amqtt_bench: 1 subscribers ready");

    let output = bench()
        .args(["pub", "--url", &broker.url(), "--json", "--qos", "1"])
        .args(["--clients", "3", "--count", "200", "--rate", "2000"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let published = json_of(&output.stdout);
    assert_eq!(published["publish"]["sent"], 600);
    assert_eq!(published["publish"]["acked"], 600);
    assert!(published["receive"].is_null());

    let output = sub.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let received = json_of(&output.stdout);
    assert_eq!(received["receive"]["unique"], 600);
    assert_eq!(received["receive"]["lost"], 0);
    assert_eq!(received["receive"]["duplicates"], 0);
}

#[test]
#[ignore = "needs mosquitto"]
fn conn_holds_idle_connections_for_the_duration() {
    let broker = Mosquitto::start();
    let started = Instant::now();
    let output = bench()
        .args(["conn", "--url", &broker.url(), "--json"])
        .args([
            "--clients",
            "200",
            "--connect-rate",
            "2000",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report = json_of(&output.stdout);
    assert_eq!(report["connections"]["connected"], 200);
    assert_eq!(report["connections"]["failed"], 0);
    assert!(report["connections"]["hold_s"].as_f64().unwrap() >= 1.0);
    // 200 connections at 2,000/s take at least 0.1 s to open.
    assert!(report["connections"]["connect_s"].as_f64().unwrap() >= 0.09);
    assert!(started.elapsed() < Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connected 200 of 200"), "{stderr}");
}
