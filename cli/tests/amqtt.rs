//! The `amqtt` command: version, config errors, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use predicates::prelude::*;

const DEADLINE: Duration = Duration::from_secs(20);

fn amqtt() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("amqtt").expect("the amqtt binary is built")
}

fn temp_config(name: &str, yaml: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("amqtt-cli-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn version_prints_the_version_and_exits_0() {
    amqtt()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_shows_amqtt_flags() {
    amqtt()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("-c <FILE>").and(predicate::str::contains("-d")));
}

#[test]
fn bad_config_exits_1_naming_file_key_and_expectation() {
    let path = temp_config("bad", "listeners:\n  default:\n    bind: 1883\n");
    amqtt()
        .arg("-c")
        .arg(&path)
        .timeout(DEADLINE)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "{}: listeners.default.bind: expected",
            path.display()
        )));
}

#[test]
fn unknown_key_exits_1() {
    let path = temp_config(
        "unknown",
        "listeners: {default: {bind: \"127.0.0.1:0\"}}\nmax-qos: 1\n",
    );
    amqtt()
        .arg("-c")
        .arg(&path)
        .timeout(DEADLINE)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("max_qos: unknown key"));
}

#[test]
fn missing_config_file_exits_1() {
    amqtt()
        .args(["-c", "/nonexistent/amqtt-broker.yaml"])
        .timeout(DEADLINE)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("/nonexistent/amqtt-broker.yaml"));
}

/// Reads the broker's log until it says where it listens.
fn wait_listening(child: &mut Child) -> (SocketAddr, mpsc::Receiver<String>) {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = rx
            .recv_timeout(DEADLINE)
            .expect("the broker logs its listening address");
        if let Some(rest) = line.split("addr=").nth(1) {
            let addr = rest.split_whitespace().next().unwrap();
            return (addr.parse().unwrap(), rx);
        }
    }
}

fn wait_exit(mut child: Child) -> std::process::ExitStatus {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    rx.recv_timeout(DEADLINE)
        .expect("the broker exits in time")
        .unwrap()
}

#[cfg(unix)]
#[test]
fn sigterm_disconnects_clients_and_exits_0() {
    let path = temp_config(
        "run",
        "listeners: {default: {type: tcp, bind: \"127.0.0.1:0\"}}\n",
    );
    let mut child = Command::cargo_bin("amqtt")
        .unwrap()
        .arg("-c")
        .arg(&path)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (addr, logs) = wait_listening(&mut child);

    // CONNECT (MQTT 3.1.1, clean session, keep-alive 60, client id "cli-test").
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut connect = vec![0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 8];
    connect.extend_from_slice(b"cli-test");
    sock.write_all(&connect).unwrap();
    let mut connack = [0u8; 4];
    sock.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The broker closes the client's connection, then exits 0.
    let mut rest = Vec::new();
    let n = sock.read_to_end(&mut rest).unwrap();
    assert_eq!(n, 0, "no more bytes, just the close");
    let status = wait_exit(child);
    assert!(status.success(), "exit status {status:?}");
    let logs: Vec<String> = logs.try_iter().collect();
    assert!(
        logs.iter().any(|l| l.contains("SIGTERM received")),
        "{logs:?}"
    );
}
