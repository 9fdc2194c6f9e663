//! Shared helpers for the client's integration tests: brokers to talk to, bounded waits.
#![allow(dead_code)]

pub mod scenarios;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use amqtt_client::{ClientConfig, MQTTClient};

/// Every test step is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

/// Awaits `future` for at most [`STEP`], panicking with `what` on timeout.
pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// A config for tests: no packet logger noise, quick reconnects.
pub fn test_config() -> ClientConfig {
    ClientConfig {
        reconnect_max_interval: Duration::from_millis(200),
        ..ClientConfig::default()
    }
}

/// A connected client.
pub async fn connected(addr: SocketAddr, id: &str, config: ClientConfig) -> MQTTClient {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let client = MQTTClient::new(Some(id.to_string()), config).unwrap();
    within("connect", client.connect(uri(addr).as_str()))
        .await
        .unwrap();
    client
}

/// `mqtt://addr`.
pub fn uri(addr: SocketAddr) -> String {
    format!("mqtt://{addr}")
}

/// A port that was free a moment ago (for brokers that must be restarted on the same port).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A mosquitto broker run by the test on 127.0.0.1, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
    extra: String,
}

impl Mosquitto {
    /// Starts mosquitto on a free port with `extra` config lines.
    pub async fn start(extra: &str) -> Mosquitto {
        Self::start_on(free_port(), extra, None).await
    }

    /// Starts mosquitto on `port`; `dir` keeps its persistence file across restarts.
    pub async fn start_on(port: u16, extra: &str, dir: Option<PathBuf>) -> Mosquitto {
        let dir = dir.unwrap_or_else(|| {
            let dir = std::env::temp_dir()
                .join(format!("amqtt-client-test-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            // mosquitto started as root drops to its own user, which must be able to save here.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            dir
        });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut mosquitto = Mosquitto {
            child: spawn(port, &dir, extra),
            addr,
            dir,
            extra: extra.to_string(),
        };
        mosquitto.wait_listening().await;
        mosquitto
    }

    /// Stops it with SIGTERM (it saves its persistence file) and waits for it to exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// Starts it again (after [`Mosquitto::stop`]) on the same port, config and persistence.
    pub async fn start_again(&mut self) {
        self.child = spawn(self.addr.port(), &self.dir, &self.extra);
        self.wait_listening().await;
    }

    async fn wait_listening(&mut self) {
        let addr = self.addr;
        within("mosquitto to listen", async {
            loop {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
}

fn spawn(port: u16, dir: &std::path::Path, extra: &str) -> Child {
    let conf = dir.join("mosquitto.conf");
    let anonymous = if extra.contains("allow_anonymous") {
        ""
    } else {
        "allow_anonymous true\n"
    };
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\n{anonymous}persistence_location {}/\n{extra}\n",
            dir.display()
        ),
    )
    .unwrap();
    Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto is installed")
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A scripted server: accepts connections on 127.0.0.1:0 and lets the test read and write
/// packets by hand (for behaviour a real broker will not show, such as a missing PINGRESP).
pub struct RawServer {
    listener: tokio::net::TcpListener,
    pub addr: SocketAddr,
}

/// One accepted connection of a [`RawServer`].
pub struct RawConnection {
    stream: tokio::net::TcpStream,
    buf: bytes::BytesMut,
    decoder: mqtt_codec::Decoder,
}

impl RawServer {
    pub async fn bind() -> RawServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        RawServer { listener, addr }
    }

    pub async fn accept(&self) -> RawConnection {
        let (stream, _) = within("accept", self.listener.accept()).await.unwrap();
        RawConnection {
            stream,
            buf: bytes::BytesMut::new(),
            decoder: mqtt_codec::Decoder::default(),
        }
    }
}

impl RawConnection {
    /// The next packet from the client; `None` at end of stream.
    pub async fn read(&mut self) -> Option<mqtt_codec::Packet> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(packet);
            }
            if within("read", self.stream.read_buf(&mut self.buf))
                .await
                .unwrap()
                == 0
            {
                return None;
            }
        }
    }

    pub async fn write(&mut self, packet: mqtt_codec::Packet) {
        use tokio::io::AsyncWriteExt;
        let mut out = bytes::BytesMut::new();
        packet.encode(&mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// Reads CONNECT and answers with a CONNACK carrying `code`.
    pub async fn handshake(
        &mut self,
        code: mqtt_codec::ConnectReturnCode,
    ) -> Box<mqtt_codec::Connect> {
        let connect = match self.read().await {
            Some(mqtt_codec::Packet::Connect(connect)) => connect,
            other => panic!("expected CONNECT, got {other:?}"),
        };
        self.write(mqtt_codec::Packet::ConnAck(mqtt_codec::ConnAck {
            session_present: false,
            return_code: code,
        }))
        .await;
        connect
    }
}

/// A TCP proxy in front of a broker that the test can close and open, to decide when a client
/// may reach the broker again after a restart (no timing assumptions).
pub struct GatedProxy {
    pub addr: SocketAddr,
    open: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl GatedProxy {
    /// Forwards connections to `target` while open; while closed, accepted connections are
    /// closed at once.
    pub async fn start(target: SocketAddr) -> GatedProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, gate) = tokio::sync::watch::channel(true);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*gate.borrow() {
                    continue; // dropped: the client sees the connection closed
                }
                let mut gate = gate.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        // Closing the gate cuts the connections it let through.
                        _ = gate.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        GatedProxy { addr, open, task }
    }

    pub fn close(&self) {
        self.open.send_replace(false);
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for GatedProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
