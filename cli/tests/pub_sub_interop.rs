//! `amqtt_pub`/`amqtt_sub` with mosquitto 2.0 and mosquitto_pub/mosquitto_sub (interop).
//! Ignored by default: `cargo test -p amqtt-cli --test pub_sub_interop -- --include-ignored`.

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::{next_line, publish, run_program, within, Mosquitto, Sub};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
#[ignore = "needs mosquitto"]
async fn amqtt_pub_to_amqtt_sub_through_mosquitto_at_every_qos() {
    let broker = Mosquitto::start().await;
    for qos in ["0", "1", "2"] {
        let topic = format!("interop/{qos}");
        let mut sub = Sub::start(
            broker.addr,
            &["-t", &topic, "-q", qos, "-C", "1", "-v"],
            true,
        )
        .await;
        let (code, _, err) =
            publish(broker.addr, &["-t", &topic, "-q", qos, "-m", "hello"], b"").await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(sub.line().await, format!("{topic} hello"));
        assert_eq!(sub.exit_code().await, 0);
    }
}

#[tokio::test]
#[ignore = "needs mosquitto"]
async fn mosquitto_pub_to_amqtt_sub() {
    let broker = Mosquitto::start().await;
    let mut sub = Sub::start(
        broker.addr,
        &["-t", "m2a/#", "-q", "2", "-C", "2", "-F", "%t|%p|%q"],
        true,
    )
    .await;
    for (topic, payload) in [("m2a/1", "one"), ("m2a/2", "two")] {
        let args: Vec<String> = [
            "-h",
            "127.0.0.1",
            "-p",
            &broker.addr.port().to_string(),
            "-q",
            "2",
            "-t",
            topic,
            "-m",
            payload,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (code, _, err) = run_program(PathBuf::from("mosquitto_pub"), &args, b"").await;
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(sub.line().await, "m2a/1|one|2");
    assert_eq!(sub.line().await, "m2a/2|two|2");
    assert_eq!(sub.exit_code().await, 0);
}

#[tokio::test]
#[ignore = "needs mosquitto"]
async fn amqtt_pub_to_mosquitto_sub_with_retained_and_lines() {
    let broker = Mosquitto::start().await;
    let port = broker.addr.port().to_string();
    let (code, _, err) = publish(
        broker.addr,
        &["-t", "a2m/r", "-q", "1", "-r", "-m", "kept"],
        b"",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    // The retained message arrives first; then two lines published with -l.
    let mut child = tokio::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "a2m/#",
            "-q",
            "1",
            "-v",
            "-C",
            "3",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("a2m/r kept"));
    let (code, _, err) = publish(broker.addr, &["-t", "a2m/l", "-q", "1", "-l"], b"l1\nl2\n").await;
    assert_eq!(code, 0, "{err}");
    // aMQTT's -l keeps each line's newline in the payload; mosquitto_sub prints it as is.
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("a2m/l l1"));
    assert_eq!(next_line(&mut lines).await.as_deref(), Some(""));
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("a2m/l l2"));
    within("mosquitto_sub to exit", child.wait()).await.unwrap();
}

/// mosquitto_pub against mosquitto with `args`, asserting it succeeded.
async fn mosquitto_pub(broker: &Mosquitto, args: &[&str]) {
    let port = broker.addr.port().to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
    let (code, _, err) = run_program(PathBuf::from("mosquitto_pub"), &all, b"").await;
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
#[ignore = "needs mosquitto"]
async fn mosquitto_pub_to_amqtt_sub_at_every_qos_live_and_retained() {
    let broker = Mosquitto::start().await;
    for qos in ["0", "1", "2"] {
        // Retained before the subscription: delivered with retain 1 on subscribing.
        let retained = format!("m2a/retained/{qos}");
        mosquitto_pub(&broker, &["-q", qos, "-r", "-t", &retained, "-m", "kept"]).await;
        let mut sub = Sub::start(
            broker.addr,
            &["-t", &retained, "-q", qos, "-C", "1", "-F", "%t|%p|%q|%r"],
            true,
        )
        .await;
        assert_eq!(sub.line().await, format!("{retained}|kept|{qos}|1"));
        assert_eq!(sub.exit_code().await, 0);
        // Live: retain 0 on delivery to an existing subscription.
        let live = format!("m2a/live/{qos}");
        let mut sub = Sub::start(
            broker.addr,
            &["-t", &live, "-q", qos, "-C", "1", "-F", "%t|%p|%q|%r"],
            true,
        )
        .await;
        mosquitto_pub(&broker, &["-q", qos, "-t", &live, "-m", "now"]).await;
        assert_eq!(sub.line().await, format!("{live}|now|{qos}|0"));
        assert_eq!(sub.exit_code().await, 0);
    }
}

#[tokio::test]
#[ignore = "needs mosquitto"]
async fn amqtt_pub_to_mosquitto_sub_at_every_qos_retained() {
    let broker = Mosquitto::start().await;
    let port = broker.addr.port().to_string();
    for qos in ["0", "1", "2"] {
        let topic = format!("a2m/retained/{qos}");
        let (code, _, err) = publish(
            broker.addr,
            &["-t", &topic, "-q", qos, "-r", "-m", "kept"],
            b"",
        )
        .await;
        assert_eq!(code, 0, "{err}");
        // mosquitto_sub -R drops retained messages; without it the retained one arrives, and
        // `%r` shows its flag, `%q` the QoS it was delivered at.
        let mut child = tokio::process::Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                &topic,
                "-q",
                qos,
                "-C",
                "1",
                "-F",
                "%t|%p|%q|%r",
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(
            next_line(&mut lines).await,
            Some(format!("{topic}|kept|{qos}|1"))
        );
        within("mosquitto_sub to exit", child.wait()).await.unwrap();
    }
}
