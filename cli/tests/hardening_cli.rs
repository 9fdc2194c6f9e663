//! Issue #9's operability items for `amqtt`: `--check-config` reports `file:line: key: problem`,
//! SIGHUP reloads ACLs without dropping clients (and keeps them when the new file is broken),
//! SIGTERM stops the broker within 5 s.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use predicates::prelude::*;

const DEADLINE: Duration = Duration::from_secs(20);

fn temp_config(name: &str, yaml: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("amqtt-harden-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("broker.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

fn check(name: &str, yaml: &str) -> assert_cmd::assert::Assert {
    let path = temp_config(name, yaml);
    assert_cmd::Command::cargo_bin("amqtt")
        .expect("binary")
        .arg("--check-config")
        .arg("-c")
        .arg(&path)
        .timeout(DEADLINE)
        .assert()
}

fn check_fails_with(name: &str, yaml: &str, line: usize, key: &str, problem: &str) {
    let path = temp_config(name, yaml);
    let want = format!("{}:{line}: {key}: ", path.display());
    check(name, yaml)
        .code(1)
        .stderr(predicate::str::contains(want).and(predicate::str::contains(problem)));
}

const HEAD: &str = "listeners:\n  default:\n    type: tcp\n    bind: \"127.0.0.1:0\"\n";

#[test]
fn check_config_accepts_a_valid_file() {
    check("valid", HEAD)
        .success()
        .stdout(predicate::str::contains("configuration OK"));
}

#[test]
fn check_config_names_file_line_and_key_for_each_kind_of_mistake() {
    // A typo'd key.
    check_fails_with(
        "typo",
        &format!("{HEAD}sys_intervl: 10\n"),
        5,
        "sys_intervl",
        "unknown key",
    );
    // A wrong type.
    check_fails_with(
        "type",
        &format!("{HEAD}max_inflight: 10\nmax_packet_size: big\n"),
        6,
        "max_packet_size",
        "expected",
    );
    // A negative size.
    check_fails_with(
        "negative",
        &format!("{HEAD}max_queued_messages: -5\n"),
        5,
        "max_queued_messages",
        "expected",
    );
    // A nested key.
    check_fails_with(
        "nested",
        "listeners:\n  default:\n    type: tcp\n    bind: 1883\n",
        4,
        "listeners.default.bind",
        "expected",
    );
    // A missing certificate file.
    check_fails_with(
        "cert",
        &format!("{HEAD}    certfile: /nonexistent/cert.pem\n    keyfile: /nonexistent/key.pem\n"),
        5,
        "listeners.default.certfile",
        "/nonexistent/cert.pem",
    );
    // An unknown plugin.
    check_fails_with(
        "plugin",
        &format!("{HEAD}plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n  amqtt.plugins.NoSuchPlugin:\n    x: 1\n"),
        8,
        "plugins.amqtt.plugins.NoSuchPlugin",
        "unknown plugin",
    );
}

/// Starts `amqtt -c path` and returns it with its address and log lines (the caller waits).
#[allow(clippy::zombie_processes)]
fn start(path: &std::path::Path) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    let mut child = Command::cargo_bin("amqtt")
        .expect("binary")
        .arg("-c")
        .arg(path)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
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
            .expect("the broker logs its address");
        if let Some(rest) = line.split("addr=").nth(1) {
            let addr = rest.split_whitespace().next().unwrap_or_default();
            return (child, addr.parse().expect("address"), rx);
        }
    }
}

fn wait_log(logs: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = logs
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

fn kill(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// A raw MQTT client on a blocking socket.
fn mqtt_connect(addr: SocketAddr, id: &str) -> TcpStream {
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    sock.write_all(&packet).expect("write");
    let mut connack = [0u8; 4];
    sock.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0]);
    sock
}

/// SUBSCRIBE to `filter` at QoS 0; returns the SUBACK return code.
fn subscribe(sock: &mut TcpStream, packet_id: u8, filter: &str) -> u8 {
    let mut body = vec![0, packet_id];
    body.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    body.extend_from_slice(filter.as_bytes());
    body.push(0);
    let mut packet = vec![0x82, body.len() as u8];
    packet.extend_from_slice(&body);
    sock.write_all(&packet).expect("write");
    let mut suback = [0u8; 5];
    sock.read_exact(&mut suback).expect("SUBACK");
    assert_eq!(&suback[..4], &[0x90, 3, 0, packet_id]);
    suback[4]
}

fn acl_config(allowed: &str) -> String {
    format!(
        "{HEAD}plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n  amqtt.plugins.topic_checking.TopicAccessControlListPlugin:\n    acl:\n      anonymous: [\"{allowed}\"]\n"
    )
}

#[cfg(unix)]
#[test]
fn sighup_reloads_acls_keeps_clients_and_survives_a_broken_file() {
    let path = temp_config("sighup", &acl_config("a/#"));
    let (child, addr, logs) = start(&path);
    let mut sock = mqtt_connect(addr, "hup");
    assert_eq!(subscribe(&mut sock, 1, "b/x"), 0x80);

    std::fs::write(&path, acl_config("b/#")).expect("rewrite");
    kill(&child, "-HUP");
    wait_log(&logs, "reloaded");
    // The same connection, still open, now gets the new rights.
    assert_eq!(subscribe(&mut sock, 2, "b/x"), 0x00);
    assert_eq!(subscribe(&mut sock, 3, "a/x"), 0x80);

    // A broken file: the reload fails and the previous ACL stays.
    std::fs::write(&path, format!("{HEAD}plugins: [oops\n")).expect("rewrite");
    kill(&child, "-HUP");
    wait_log(&logs, "reload failed");
    assert_eq!(subscribe(&mut sock, 4, "b/y"), 0x00);
    assert_eq!(subscribe(&mut sock, 5, "a/y"), 0x80);

    kill(&child, "-TERM");
    let mut child = child;
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
}

#[cfg(unix)]
#[test]
fn sigterm_and_sigint_stop_within_5_seconds_with_clients_connected() {
    for signal in ["-TERM", "-INT"] {
        let path = temp_config(&format!("stop{signal}"), HEAD);
        let (mut child, addr, _logs) = start(&path);
        let mut socks: Vec<TcpStream> = (0..20)
            .map(|i| mqtt_connect(addr, &format!("stop-{i}")))
            .collect();
        let start = Instant::now();
        kill(&child, signal);
        for s in &mut socks {
            let mut rest = Vec::new();
            assert_eq!(s.read_to_end(&mut rest).expect("read"), 0, "closed cleanly");
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("stopped within 5 s")
            .expect("wait");
        assert!(status.success(), "{signal}: {status:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
