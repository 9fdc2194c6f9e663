//! `amqtt` keeps serving clients when nobody reads its stderr: logging goes through a bounded,
//! lossy queue to a writer thread, so a full pipe drops log lines instead of stalling the broker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

const DEADLINE: Duration = Duration::from_secs(30);
/// Connections made while stderr is not read: each logs several lines at debug level, far more
/// than a pipe holds (64 KiB on Linux).
const CLIENTS: usize = 1500;

/// CONNECT (MQTT 3.1.1, clean session, keep-alive 60) with client id `id`, then CONNACK.
fn connect(addr: SocketAddr, id: &str) -> TcpStream {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut packet = vec![0x10, (12 + id.len()) as u8, 0, 4, b'M', b'Q', b'T', b'T', 4];
    packet.extend_from_slice(&[0x02, 0, 60, 0, id.len() as u8]);
    packet.extend_from_slice(id.as_bytes());
    sock.write_all(&packet).unwrap();
    let mut connack = [0u8; 4];
    sock.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK for {id}");
    sock
}

/// Connects until the broker listens on `addr` (it was just started).
fn wait_listening(addr: SocketAddr) {
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(start.elapsed() < DEADLINE, "the broker listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_unread_stderr_does_not_stall_the_broker() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("amqtt-cli-logging-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("broker.yaml");
    std::fs::write(
        &config,
        format!("listeners: {{default: {{type: tcp, bind: \"127.0.0.1:{port}\"}}}}\n"),
    )
    .unwrap();
    // `-d`: debug logging, with stderr a pipe that this test never reads until the end.
    let mut child = Command::cargo_bin("amqtt")
        .unwrap()
        .args(["-d", "-c"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(addr);

    // Each round trip logs a connection, a ping and a disconnection. Run in a thread so a
    // stalled broker fails the test at the deadline instead of hanging it.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for i in 0..CLIENTS {
            let mut sock = connect(addr, &format!("unread-stderr-{i:06}"));
            sock.write_all(&[0xc0, 0]).unwrap();
            let mut pingresp = [0u8; 2];
            sock.read_exact(&mut pingresp).unwrap();
            assert_eq!(pingresp, [0xd0, 0]);
            sock.write_all(&[0xe0, 0]).unwrap();
        }
        let _ = tx.send(());
    });
    let served = rx.recv_timeout(DEADLINE);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let exited = rx.recv_timeout(DEADLINE);
    let mut logs = Vec::new();
    if exited.is_ok() {
        stderr.read_to_end(&mut logs).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);

    assert!(
        served.is_ok(),
        "{CLIENTS} clients were not all served within {DEADLINE:?} while stderr was not read"
    );
    let status = exited
        .expect("the broker stops on SIGTERM with stderr unread")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    // The pipe did fill up (so the broker really logged more than it could hold), and what
    // it holds is the beginning of the log.
    assert!(
        logs.len() >= 32 * 1024,
        "only {} bytes of logs: the pipe never filled",
        logs.len()
    );
    let logs = String::from_utf8_lossy(&logs);
    assert!(logs.contains("unread-stderr-000000"), "{logs}");
}
