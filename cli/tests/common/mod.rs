//! Helpers for the `amqtt_pub`/`amqtt_sub` tests: run the binaries, watch their output with
//! bounded waits, and a mosquitto broker for the interop tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// Every test step is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

/// Awaits `future` for at most [`STEP`].
pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// The path of one of this package's binaries.
pub fn bin(name: &str) -> PathBuf {
    assert_cmd::cargo::cargo_bin(name)
}

/// A client config file that fails fast when the broker is unreachable.
pub fn fast_fail_config(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("client.yaml");
    std::fs::write(
        &path,
        "reconnect_retries: 0\nreconnect_max_interval: 0.05\n",
    )
    .unwrap();
    path
}

/// A running `amqtt_sub` (started with `-d` so the test can see its SUBACK).
pub struct Sub {
    pub child: Child,
    pub stdout: Lines<BufReader<ChildStdout>>,
    stderr: Lines<BufReader<ChildStderr>>,
}

impl Sub {
    /// Starts `amqtt_sub -d -h 127.0.0.1 -p PORT ARGS…` and waits until its subscription is
    /// acknowledged (unless `wait_suback` is false).
    pub async fn start(addr: SocketAddr, args: &[&str], wait_suback: bool) -> Sub {
        Sub::start_with(&at(addr, args), wait_suback).await
    }

    /// Starts `amqtt_sub -d ARGS…` (the broker given in `ARGS`, e.g. `--url`) and waits until
    /// its subscription is acknowledged (unless `wait_suback` is false).
    pub async fn start_with(args: &[String], wait_suback: bool) -> Sub {
        let mut child = Command::new(bin("amqtt_sub"))
            .arg("-d")
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut sub = Sub {
            child,
            stdout,
            stderr,
        };
        if wait_suback {
            sub.wait_stderr("SubAck").await;
        }
        sub
    }

    /// Reads stderr until a line contains `needle`.
    pub async fn wait_stderr(&mut self, needle: &str) {
        within(&format!("'{needle}' on amqtt_sub's stderr"), async {
            loop {
                match self.stderr.next_line().await.unwrap() {
                    Some(line) if line.contains(needle) => return,
                    Some(_) => {}
                    None => panic!("amqtt_sub ended before '{needle}'"),
                }
            }
        })
        .await
    }

    /// The next stdout line.
    pub async fn line(&mut self) -> String {
        within("a line from amqtt_sub", self.stdout.next_line())
            .await
            .unwrap()
            .expect("amqtt_sub ended")
    }

    /// Waits for the exit status.
    pub async fn exit_code(&mut self) -> i32 {
        within("amqtt_sub to exit", self.child.wait())
            .await
            .unwrap()
            .code()
            .unwrap_or(-1)
    }

    /// All remaining stdout after exit.
    pub async fn rest(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = within("stdout", self.stdout.next_line()).await.unwrap() {
            lines.push(line);
        }
        lines
    }
}

/// Runs `amqtt_pub -h 127.0.0.1 -p PORT ARGS…` with `stdin` and returns (code, stdout, stderr).
pub async fn publish(addr: SocketAddr, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    run("amqtt_pub", &at(addr, args), stdin).await
}

/// `-h 127.0.0.1 -p PORT` followed by `args`.
fn at(addr: SocketAddr, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        "-h".to_string(),
        "127.0.0.1".to_string(),
        "-p".to_string(),
        addr.port().to_string(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    all
}

/// Runs a binary of this package to completion.
pub async fn run(name: &str, args: &[String], stdin: &[u8]) -> (i32, String, String) {
    run_program(bin(name), args, stdin).await
}

/// Runs any program to completion, feeding `stdin`.
pub async fn run_program(program: PathBuf, args: &[String], stdin: &[u8]) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(program)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    let output = within("process to finish", child.wait_with_output())
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Reads lines from any reader with a bound.
pub async fn next_line<R: AsyncRead + Unpin>(lines: &mut Lines<BufReader<R>>) -> Option<String> {
    within("line", lines.next_line()).await.unwrap()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "amqtt-cli-test-{}-{name}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// mosquitto on a free 127.0.0.1 port, killed on drop.
pub struct Mosquitto {
    child: std::process::Child,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Mosquitto {
    pub async fn start() -> Mosquitto {
        let dir = TempDir::new("mosquitto");
        let port = free_port();
        let conf = dir.0.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
        )
        .unwrap();
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        within("mosquitto to listen", async {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        Mosquitto {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
