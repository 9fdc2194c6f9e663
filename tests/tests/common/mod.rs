//! Helpers of the cross-crate tests: bounded waits, the CLI binaries, external peers killed on
//! drop, free ports.
#![allow(dead_code)]

#[path = "../../../amqtt-broker/tests/transports_pki/mod.rs"]
pub mod pki;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use amqtt_broker::{Broker, BrokerConfig};
use amqtt_client::{MQTTClient, QoS};
use pki::Pki;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Every test step is bounded by this.
pub const STEP: Duration = Duration::from_secs(15);

/// Awaits `future` for at most [`STEP`], panicking with `what` on timeout.
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// A port that was free a moment ago (bound on 127.0.0.1, then released). For peers that
/// cannot bind port 0 themselves; callers retry when the port was taken meanwhile.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

static BUILD: Mutex<bool> = Mutex::new(false);

/// The path of a binary of the `amqtt-cli` package (`amqtt_pub`, `amqtt_sub`, …) in this
/// target directory. `cargo test --workspace` has built them; when only this package's tests
/// run they may be missing, and are built once here.
pub fn cli_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    let mut built = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() && !*built {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "amqtt-cli", "--bins"])
            .stdout(Stdio::null())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building amqtt-cli's binaries failed");
        *built = true;
    }
    assert!(path.exists(), "{} not built", path.display());
    path
}

/// A child process killed on drop (`kill_on_drop`; tokio reaps it), so a failing or
/// timed-out test leaves nothing running.
pub struct Peer {
    pub child: tokio::process::Child,
    pub name: &'static str,
}

impl Peer {
    /// Spawns `command` with piped stdout and stderr (stdin as the caller set it).
    pub fn spawn(name: &'static str, command: &mut tokio::process::Command) -> Peer {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Peer { child, name }
    }

    /// Waits for the exit and returns (code, stdout, stderr).
    pub async fn finish(self) -> (i32, String, String) {
        let name = self.name;
        let output = within(&format!("{name} to finish"), self.child.wait_with_output())
            .await
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// Runs a program to completion within [`STEP`]; returns (code, stdout, stderr).
pub async fn run(name: &'static str, program: PathBuf, args: &[String]) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    Peer::spawn(name, &mut command).finish().await
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn listening(addr: SocketAddr) -> bool {
    tokio::time::timeout(STEP, async {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok()
}

/// Owned strings from string slices.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The YAML of one listener of `kind` bound to `bind`, with `extra` keys for TLS.
pub fn listener_yaml(pki: &Pki, kind: &str, bind: &str, extra: &str) -> String {
    let tls = pki.server_yaml();
    match kind {
        "tcp" => format!("{{type: tcp, bind: \"{bind}\"}}"),
        "tls" => format!("{{type: tcp, bind: \"{bind}\", {tls}{extra}}}"),
        "ws" => format!("{{type: ws, bind: \"{bind}\"}}"),
        "wss" => format!("{{type: ws, bind: \"{bind}\", {tls}{extra}}}"),
        other => panic!("no listener kind {other}"),
    }
}

/// The listener name of `kind`: the broker requires a `default`, which is the plain TCP one.
pub fn name(kind: &str) -> &str {
    if kind == "tcp" {
        "default"
    } else {
        kind
    }
}

/// A broker with the listeners `(name, yaml)` (and a plain `default` one if they have none),
/// anonymous logins allowed.
pub async fn broker_with(listeners: &[(String, String)]) -> Broker {
    let mut yaml = String::from("listeners:\n");
    if !listeners.iter().any(|(name, _)| name == "default") {
        yaml.push_str("  default: {type: tcp, bind: \"127.0.0.1:0\"}\n");
    }
    for (name, listener) in listeners {
        yaml.push_str(&format!("  {name}: {listener}\n"));
    }
    yaml.push_str(
        "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n",
    );
    let broker = Broker::new(BrokerConfig::from_yaml_str(&yaml).unwrap()).unwrap();
    broker.start().await.unwrap();
    broker
}

/// The URL of listener `kind` at `addr`: TLS by IP address for `tls`, by host name for `wss`.
pub fn url(kind: &str, addr: SocketAddr) -> String {
    let port = addr.port();
    match kind {
        "tcp" => format!("mqtt://127.0.0.1:{port}"),
        "tls" => format!("mqtts://127.0.0.1:{port}"),
        "ws" => format!("ws://127.0.0.1:{port}/mqtt"),
        "wss" => format!("wss://localhost:{port}/mqtt"),
        other => panic!("no listener kind {other}"),
    }
}

/// Starts `amqtt_sub -d ARGS` and waits until its subscription is acknowledged.
pub async fn start_sub(
    args: &[String],
) -> (
    Peer,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let mut command = tokio::process::Command::new(cli_bin("amqtt_sub"));
    command
        .arg("-d")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null());
    let mut peer = Peer::spawn("amqtt_sub", &mut command);
    let stdout = BufReader::new(peer.child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(peer.child.stderr.take().unwrap()).lines();
    within("amqtt_sub's SUBACK", async {
        loop {
            match stderr.next_line().await.unwrap() {
                Some(line) if line.contains("SubAck") => break,
                Some(_) => {}
                None => panic!("amqtt_sub ended before subscribing"),
            }
        }
    })
    .await;
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    (peer, stdout)
}

/// Publishes `payload` to `topic` at QoS 1 with `client` (subscribed to it) and checks that it
/// comes back: same topic, payload and QoS.
pub async fn echo(client: &MQTTClient, topic: &str, payload: &str) {
    within(
        "publish",
        client.publish(topic, payload.to_owned(), QoS::AtLeastOnce, false),
    )
    .await
    .unwrap();
    let message = within("message", client.deliver_message(None))
        .await
        .unwrap();
    assert_eq!(message.topic.as_str(), topic);
    assert_eq!(&message.payload[..], payload.as_bytes());
    assert_eq!(message.qos, QoS::AtLeastOnce);
}
