//! Interoperability with real clients: mosquitto_pub/mosquitto_sub and Python paho-mqtt.
//! Ignored by default; `.ci/run` installs the peers and runs them with `--include-ignored`.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use mqtt_codec::QoS;
use tokio::process::Command;

const PROCESS_DEADLINE: Duration = Duration::from_secs(20);

/// Runs a program to completion (bounded); returns (status code, stdout, stderr).
async fn run(program: &str, args: &[String]) -> (i32, String, String) {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let out = tokio::time::timeout(PROCESS_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} did not finish in time"))
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn args(b: &TestBroker, rest: &[&str]) -> Vec<String> {
    let mut v = vec![
        "-h".to_owned(),
        "127.0.0.1".to_owned(),
        "-p".to_owned(),
        b.addr.port().to_string(),
    ];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

/// Waits (bounded by the test deadline) until the broker has `n` subscriptions.
async fn wait_subscriptions(b: &TestBroker, n: usize) {
    while b.broker.subscription_count() < n {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
#[ignore = "needs mosquitto-clients"]
async fn mosquitto_clients_qos_0_1_2() {
    bounded(async {
        let b = TestBroker::start().await;
        let sub_args = args(&b, &["-t", "i/#", "-q", "2", "-C", "3", "-v", "-W", "15"]);
        let sub = tokio::spawn(async move { run("mosquitto_sub", &sub_args).await });
        wait_subscriptions(&b, 1).await;
        for qos in ["0", "1", "2"] {
            let (code, _, err) = run(
                "mosquitto_pub",
                &args(&b, &["-t", &format!("i/{qos}"), "-q", qos, "-m", qos]),
            )
            .await;
            assert_eq!(code, 0, "{err}");
        }
        let (code, out, err) = sub.await.unwrap();
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            vec!["i/0 0", "i/1 1", "i/2 2"]
        );
        b.stop().await;
    })
    .await;
}

#[tokio::test]
#[ignore = "needs mosquitto-clients"]
async fn mosquitto_clients_retained() {
    bounded(async {
        let b = TestBroker::start().await;
        let (code, _, err) = run(
            "mosquitto_pub",
            &args(&b, &["-t", "r/x", "-q", "1", "-r", "-m", "kept"]),
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = run(
            "mosquitto_sub",
            &args(
                &b,
                &[
                    "-t", "r/#", "-q", "1", "-C", "1", "-F", "%r %t %p", "-W", "10",
                ],
            ),
        )
        .await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), "1 r/x kept");
        b.stop().await;
    })
    .await;
}

#[tokio::test]
#[ignore = "needs mosquitto-clients"]
async fn mosquitto_sub_will_is_published_when_it_is_killed() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut watcher, _) = b.client("watcher", true).await;
        watcher.subscribe(1, &[("wills/#", QoS::AtLeastOnce)]).await;
        let mut child = Command::new("mosquitto_sub")
            .args(args(
                &b,
                &[
                    "-t",
                    "anything",
                    "--will-topic",
                    "wills/mosq",
                    "--will-payload",
                    "dead",
                    "--will-qos",
                    "1",
                ],
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        wait_subscriptions(&b, 2).await;
        child.kill().await.unwrap();
        let p = watcher.receive().await;
        assert_eq!(p.topic.as_str(), "wills/mosq");
        assert_eq!(&p.payload[..], b"dead");
        b.stop().await;
    })
    .await;
}

#[tokio::test]
#[ignore = "needs mosquitto-clients"]
async fn mosquitto_clients_persistent_session() {
    bounded(async {
        let b = TestBroker::start().await;
        // Subscribe with a persistent session, then leave.
        let (code, _, err) = run(
            "mosquitto_sub",
            &args(
                &b,
                &["-i", "mosq-persist", "-c", "-t", "p/#", "-q", "1", "-E"],
            ),
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = run(
            "mosquitto_pub",
            &args(&b, &["-t", "p/1", "-q", "1", "-m", "queued"]),
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = run(
            "mosquitto_sub",
            &args(
                &b,
                &[
                    "-i",
                    "mosq-persist",
                    "-c",
                    "-t",
                    "p/#",
                    "-q",
                    "1",
                    "-C",
                    "1",
                    "-v",
                    "-W",
                    "10",
                ],
            ),
        )
        .await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), "p/1 queued");
        b.stop().await;
    })
    .await;
}

const PAHO_SCRIPT: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt

host, port = "127.0.0.1", int(sys.argv[1])
DEADLINE = 10

def client(cid, clean=True, will=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=clean)
    got, lock, flags = [], threading.Condition(), {}
    def on_connect(c, u, f, rc, props=None):
        with lock:
            flags["present"] = f.session_present
            flags["rc"] = rc
            lock.notify_all()
    def on_message(c, u, m):
        with lock:
            got.append((m.topic, m.payload, m.qos, m.retain))
            lock.notify_all()
    def on_subscribe(c, u, mid, codes, props=None):
        with lock:
            flags.setdefault("subacks", set()).add(mid)
            lock.notify_all()
    def on_disconnect(c, u, f, rc, props=None):
        with lock:
            flags["gone"] = True
            lock.notify_all()
    c.on_connect, c.on_message = on_connect, on_message
    c.on_subscribe, c.on_disconnect = on_subscribe, on_disconnect
    c.lock, c.flags = lock, flags
    if will:
        c.will_set(*will)
    c.connect(host, port, keepalive=30)
    c.loop_start()
    with lock:
        assert lock.wait_for(lambda: "rc" in flags, DEADLINE), "no CONNACK"
    assert flags["rc"] == 0, flags
    return c, got, lock, flags

def wait_n(got, lock, n):
    with lock:
        assert lock.wait_for(lambda: len(got) >= n, DEADLINE), got

def subscribe(c, topic, qos):
    r, mid = c.subscribe(topic, qos=qos)
    assert r == 0
    with c.lock:
        assert c.lock.wait_for(lambda: mid in c.flags.get("subacks", ()), DEADLINE), "no SUBACK"

# QoS 0/1/2 round trip through one subscriber.
s, got, lock, _ = client("paho-sub")
subscribe(s, "paho/#", 2)
p, _, _, _ = client("paho-pub")
for q in (0, 1, 2):
    p.publish(f"paho/{q}", f"m{q}".encode(), qos=q).wait_for_publish(DEADLINE)
wait_n(got, lock, 3)
assert sorted((t, pl, q) for t, pl, q, r in got) == [("paho/0", b"m0", 0), ("paho/1", b"m1", 1), ("paho/2", b"m2", 2)], got

# Retained: stored, delivered with retain=1 to a new subscriber.
p.publish("paho-r/x", b"kept", qos=1, retain=True).wait_for_publish(DEADLINE)
r, rgot, rlock, _ = client("paho-retained")
subscribe(r, "paho-r/#", 1)
wait_n(rgot, rlock, 1)
assert rgot[0] == ("paho-r/x", b"kept", 1, True), rgot

# Will: published when the connection drops without DISCONNECT.
w, wgot, wlock, _ = client("paho-will-watch")
subscribe(w, "paho-will/#", 1)
d, _, _, _ = client("paho-dying", will=("paho-will/x", b"gone", 1, False))
d.loop_stop()
d.socket().close()
wait_n(wgot, wlock, 1)
assert wgot[0][:2] == ("paho-will/x", b"gone"), wgot

# Persistent session: subscribe, disconnect, message queued, reconnect with session present.
ps, _, _, _ = client("paho-persist", clean=False)
subscribe(ps, "paho-p/#", 1)
ps.disconnect()
with ps.lock:
    assert ps.lock.wait_for(lambda: ps.flags.get("gone"), DEADLINE), "no disconnect"
ps.loop_stop()
p.publish("paho-p/1", b"queued", qos=1).wait_for_publish(DEADLINE)
ps, pgot, plock, pflags = client("paho-persist", clean=False)
assert pflags["present"], pflags
wait_n(pgot, plock, 1)
assert pgot[0][:3] == ("paho-p/1", b"queued", 1), pgot
print("OK")
"#;

#[tokio::test]
#[ignore = "needs python paho-mqtt"]
async fn paho_qos_retained_will_and_persistent_session() {
    bounded(async {
        let b = TestBroker::start().await;
        let (code, out, err) = run(
            "python3",
            &[
                "-c".to_owned(),
                PAHO_SCRIPT.to_owned(),
                b.addr.port().to_string(),
            ],
        )
        .await;
        assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
        assert_eq!(out.trim(), "OK");
        b.stop().await;
    })
    .await;
}
