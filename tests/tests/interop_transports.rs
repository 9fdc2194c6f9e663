//! TLS and WebSocket against real peers (ignored unless they are installed; `.ci/run` installs
//! them and runs `--include-ignored`):
//! - mosquitto_sub / mosquitto_pub over TLS, and with a client certificate over mutual TLS,
//!   against this broker;
//! - Python paho-mqtt over WebSocket and WebSocket + TLS against this broker (a QoS 1 round
//!   trip in a small script);
//! - this `MQTTClient` against a mosquitto broker over TLS, WebSocket and WebSocket + TLS,
//!   mosquitto configured by the test.
//!
//! Every process is started with `kill_on_drop` and every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use amqtt_broker::Broker;
use amqtt_client::{ClientConfig, MQTTClient, QoS};
use common::pki::Pki;
use common::{
    broker_with, echo, free_port, listener_yaml, listening, name, run, strings, within, Peer,
};
use tokio::io::{AsyncBufReadExt, BufReader};

/// This broker with `default` (tcp), `tls`, `mtls` (client certificates required), `ws` and
/// `wss` listeners.
async fn broker(pki: &Pki) -> Broker {
    let client_ca = format!(", cafile: \"{}\"", pki.ca.display());
    let mut listeners: Vec<(String, String)> = ["tcp", "tls", "ws", "wss"]
        .iter()
        .map(|k| {
            (
                name(k).to_string(),
                listener_yaml(pki, k, "127.0.0.1:0", ""),
            )
        })
        .collect();
    listeners.push((
        "mtls".into(),
        listener_yaml(pki, "tls", "127.0.0.1:0", &client_ca),
    ));
    broker_with(&listeners).await
}

fn port(broker: &Broker, listener: &str) -> String {
    broker.local_addr(listener).unwrap().port().to_string()
}

/// mosquitto_pub → this broker → mosquitto_sub at QoS 1 with `tls` flags on both: a
/// retained message first (its arrival shows the subscription is active; mosquitto_sub's
/// `-d` trace is block-buffered on a pipe), then a live one.
async fn mosquitto_clients_round_trip(port: &str, tls: &[String], topic: &str) {
    let publish = |message: &str, retain: bool| {
        let mut args = strings(&["-h", "127.0.0.1", "-p", port, "-q", "1", "-t", topic]);
        args.extend(strings(&["-m", message]));
        if retain {
            args.push("-r".into());
        }
        args.extend(tls.iter().cloned());
        async move {
            let (code, _, stderr) =
                run("mosquitto_pub", PathBuf::from("mosquitto_pub"), &args).await;
            assert_eq!(code, 0, "mosquitto_pub: {stderr}");
        }
    };
    publish("kept", true).await;
    let mut command = tokio::process::Command::new("mosquitto_sub");
    command
        .args(["-h", "127.0.0.1", "-p", port, "-q", "1", "-C", "2", "-v"])
        .args(["-t", topic, "-W", "15"])
        .args(tls)
        .stdin(Stdio::null());
    let mut sub = Peer::spawn("mosquitto_sub", &mut command);
    let mut stdout = BufReader::new(sub.child.stdout.take().unwrap()).lines();
    let line = within("the retained message", stdout.next_line())
        .await
        .unwrap();
    assert_eq!(line, Some(format!("{topic} kept")));
    publish("live", false).await;
    let line = within("the live message", stdout.next_line())
        .await
        .unwrap();
    assert_eq!(line, Some(format!("{topic} live")));
    let (code, _, stderr) = sub.finish().await;
    assert_eq!(code, 0, "mosquitto_sub: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto"]
async fn mosquitto_clients_over_tls_and_mutual_tls_against_this_broker() {
    let pki = Pki::new();
    let broker = broker(&pki).await;
    let ca = strings(&["--cafile", &pki.ca.display().to_string()]);
    mosquitto_clients_round_trip(&port(&broker, "tls"), &ca, "interop/tls").await;
    let mut mutual = ca.clone();
    mutual.extend(strings(&[
        "--cert",
        &pki.client.cert.display().to_string(),
        "--key",
        &pki.client.key.display().to_string(),
    ]));
    mosquitto_clients_round_trip(&port(&broker, "mtls"), &mutual, "interop/mtls").await;
    // Without a client certificate the mutual-TLS listener refuses mosquitto_pub.
    let mut args = strings(&["-h", "127.0.0.1", "-p", &port(&broker, "mtls")]);
    args.extend(strings(&["-t", "interop/x", "-m", "refused"]));
    args.extend(ca);
    let (code, _, _) = run("mosquitto_pub", PathBuf::from("mosquitto_pub"), &args).await;
    assert_ne!(code, 0, "mosquitto_pub without a client certificate");
    broker.shutdown().await;
}

/// paho-mqtt over WebSocket: connect, subscribe at QoS 1, publish at QoS 1 to itself, wait
/// for the message. Prints `OK` and exits 0 on success.
const PAHO_SCRIPT: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt

host, port, path, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
done = threading.Event()
result = {}

client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-ws-interop",
                     transport="websockets")
client.ws_set_options(path=path)
if ca:
    client.tls_set(ca_certs=ca)

def on_connect(c, userdata, flags, reason_code, properties):
    if reason_code != 0:
        result["error"] = "connect refused: %s" % reason_code
        done.set()
        return
    c.subscribe("paho/t", qos=1)

def on_subscribe(c, userdata, mid, reason_codes, properties):
    c.publish("paho/t", b"paho over websocket", qos=1)

def on_message(c, userdata, message):
    result["message"] = (message.topic, message.payload, message.qos)
    done.set()

client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(host, port, keepalive=30)
client.loop_start()
finished = done.wait(10)
client.disconnect()
client.loop_stop()
if not finished:
    print("TIMEOUT"); sys.exit(2)
if "error" in result:
    print(result["error"]); sys.exit(3)
if result["message"] != ("paho/t", b"paho over websocket", 1):
    print("WRONG %r" % (result["message"],)); sys.exit(4)
print("OK")
"#;

async fn paho_round_trip(host: &str, port: &str, ca: &str) {
    let args = strings(&["-c", PAHO_SCRIPT, host, port, "/mqtt", ca]);
    let (code, stdout, stderr) = run("python3", PathBuf::from("python3"), &args).await;
    assert_eq!(
        (code, stdout.trim()),
        (0, "OK"),
        "paho over {host}:{port} (ca {ca:?}): {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python paho-mqtt"]
async fn paho_over_websocket_and_websocket_tls_against_this_broker() {
    let pki = Pki::new();
    let broker = broker(&pki).await;
    paho_round_trip("127.0.0.1", &port(&broker, "ws"), "").await;
    paho_round_trip(
        "localhost",
        &port(&broker, "wss"),
        &pki.ca.display().to_string(),
    )
    .await;
    broker.shutdown().await;
}

/// A mosquitto broker configured by the test: a plain listener (mosquitto 2.0 with
/// libwebsockets refuses to start with only a WebSocket listener), a TLS listener and a
/// WebSocket listener. mosquitto cannot bind port 0, so ports are picked free and the start
/// is retried with new ones if one was taken meanwhile. Killed on drop.
struct Mosquitto {
    _peer: Peer,
    tls: SocketAddr,
    ws: SocketAddr,
    wss: SocketAddr,
}

impl Mosquitto {
    async fn start(pki: &Pki) -> Mosquitto {
        for _attempt in 0..5 {
            let (plain, tls, ws, wss) = (free_port(), free_port(), free_port(), free_port());
            let conf = pki.dir().join(format!("mosquitto-{tls}.conf"));
            // The WebSocket listener cannot be bound to an address in mosquitto 2.0.x: it
            // listens on all interfaces, and the test connects to 127.0.0.1.
            std::fs::write(
                &conf,
                format!(
                    "per_listener_settings false\nallow_anonymous true\n\
                     listener {plain} 127.0.0.1\n\
                     listener {tls} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
                     listener {ws}\nprotocol websockets\n\
                     listener {wss}\nprotocol websockets\ncertfile {}\nkeyfile {}\n",
                    pki.ca.display(),
                    pki.server.cert.display(),
                    pki.server.key.display(),
                    pki.server.cert.display(),
                    pki.server.key.display(),
                ),
            )
            .unwrap();
            let mut command = tokio::process::Command::new("mosquitto");
            command.arg("-c").arg(&conf).stdin(Stdio::null());
            let mut peer = Peer::spawn("mosquitto", &mut command);
            let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
            let up = listening(addr(plain)).await
                && listening(addr(tls)).await
                && listening(addr(ws)).await
                && listening(addr(wss)).await;
            if up && peer.child.try_wait().ok().flatten().is_none() {
                return Mosquitto {
                    _peer: peer,
                    tls: addr(tls),
                    ws: addr(ws),
                    wss: addr(wss),
                };
            }
            // A port was taken (or mosquitto failed): the guard kills it; try new ports.
        }
        panic!("mosquitto did not start with TLS and WebSocket listeners");
    }
}

async fn client_round_trip(uri: &str, pki: &Pki) {
    let mut config = ClientConfig {
        auto_reconnect: false,
        ..ClientConfig::default()
    };
    config.connection.cafile = Some(pki.ca.display().to_string());
    let client = MQTTClient::new(Some("amqtt-rs-interop".into()), config).unwrap();
    within("connect to mosquitto", client.connect(uri))
        .await
        .unwrap_or_else(|e| panic!("{uri}: {e}"));
    within("subscribe", client.subscribe(&[("rs/#", QoS::AtLeastOnce)]))
        .await
        .unwrap();
    echo(&client, "rs/t", "to mosquitto").await;
    within("disconnect", client.disconnect()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto"]
async fn this_client_against_mosquitto_over_tls_ws_and_wss() {
    let pki = Pki::new();
    let mosquitto = Mosquitto::start(&pki).await;
    client_round_trip(&format!("mqtts://127.0.0.1:{}", mosquitto.tls.port()), &pki).await;
    client_round_trip(&format!("mqtts://localhost:{}", mosquitto.tls.port()), &pki).await;
    client_round_trip(
        &format!("ws://127.0.0.1:{}/mqtt", mosquitto.ws.port()),
        &pki,
    )
    .await;
    client_round_trip(
        &format!("wss://localhost:{}/mqtt", mosquitto.wss.port()),
        &pki,
    )
    .await;
}
