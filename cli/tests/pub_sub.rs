//! `amqtt_pub` and `amqtt_sub` run as processes against an in-process broker on 127.0.0.1:0.

mod common;

use std::net::SocketAddr;

use amqtt_broker::{Broker, BrokerConfig};
use amqtt_client::{ClientConfig, MQTTClient, QoS};
use common::{fast_fail_config, free_port, publish, run, within, Sub, TempDir};

struct TestBroker {
    broker: Broker,
    addr: SocketAddr,
}

impl TestBroker {
    async fn start() -> TestBroker {
        let yaml = "listeners: {default: {type: tcp, bind: \"127.0.0.1:0\"}}";
        let broker = Broker::new(BrokerConfig::from_yaml_str(yaml).unwrap()).unwrap();
        within("broker start", broker.start()).await.unwrap();
        let addr = broker.local_addr("default").unwrap();
        TestBroker { broker, addr }
    }

    async fn stop(self) {
        within("broker shutdown", self.broker.shutdown()).await;
    }
}

/// A library client subscribed to `filter`, to check what the tools publish.
async fn watcher(addr: SocketAddr, filter: &str) -> MQTTClient {
    let client = MQTTClient::new(None, ClientConfig::default()).unwrap();
    within("connect", client.connect(format!("mqtt://{addr}").as_str()))
        .await
        .unwrap();
    within("subscribe", client.subscribe(&[(filter, QoS::ExactlyOnce)]))
        .await
        .unwrap();
    client
}

#[tokio::test]
async fn published_message_reaches_amqtt_sub_at_every_qos_and_lines_are_flushed_one_by_one() {
    let broker = TestBroker::start().await;
    let mut sub = Sub::start(broker.addr, &["-t", "cli/#", "-q", "2", "-C", "3"], true).await;
    for (i, qos) in ["0", "1", "2"].iter().enumerate() {
        let payload = format!("message {i}");
        let (code, _, err) = publish(
            broker.addr,
            &["-t", "cli/a", "-q", qos, "-m", &payload],
            b"",
        )
        .await;
        assert_eq!(code, 0, "{err}");
        // Each line is readable before the next message is published: output is flushed.
        assert_eq!(sub.line().await, payload);
    }
    assert_eq!(sub.exit_code().await, 0);
    broker.stop().await;
}

#[tokio::test]
async fn amqtt_output_format_matches_amqtt_sub_byte_for_byte() {
    // aMQTT observed: publishes `hello world`, `l1\n`, `l2\n` print `hello world\nl1\n\nl2\n\n`;
    // empty payloads are neither printed nor counted.
    let broker = TestBroker::start().await;
    let mut sub = Sub::start(broker.addr, &["-t", "fmt", "-q", "1", "-n", "3"], true).await;
    let (code, _, err) = publish(
        broker.addr,
        &["-t", "fmt", "-q", "1", "-m", "hello world"],
        b"",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = publish(broker.addr, &["-t", "fmt", "-q", "1", "-n"], b"").await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = publish(broker.addr, &["-t", "fmt", "-q", "1", "-l"], b"l1\nl2\n").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(sub.exit_code().await, 0);
    assert_eq!(sub.rest().await, ["hello world", "l1", "", "l2", ""]);
    broker.stop().await;
}

#[tokio::test]
async fn file_stdin_and_repeat_sources() {
    let broker = TestBroker::start().await;
    let watch = watcher(broker.addr, "src/#").await;
    let dir = TempDir::new("src");
    let file = dir.0.join("lines.txt");
    std::fs::write(&file, "a\nb\n").unwrap();
    let (code, _, err) = publish(
        broker.addr,
        &["-t", "src/f", "-q", "1", "-f", file.to_str().unwrap()],
        b"",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = publish(
        broker.addr,
        &["-t", "src/s", "-q", "1", "-s"],
        b"all\nof it",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = publish(
        broker.addr,
        &["-t", "src/r", "-q", "2", "-m", "x", "--repeat", "3"],
        b"",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let mut got = Vec::new();
    for _ in 0..6 {
        let m = within("message", watch.deliver_message(None))
            .await
            .unwrap();
        got.push(format!(
            "{}={}",
            m.topic,
            String::from_utf8_lossy(&m.payload)
        ));
    }
    assert_eq!(
        got,
        [
            "src/f=a\n",
            "src/f=b\n",
            "src/s=all\nof it",
            "src/r=x",
            "src/r=x",
            "src/r=x"
        ]
    );
    watch.disconnect().await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn retain_flag_verbose_format_json_and_filters() {
    let broker = TestBroker::start().await;
    for (topic, payload) in [("r/a", "one"), ("r/b", "\u{e9}t\u{e9}"), ("r/skip/x", "no")] {
        let (code, _, err) = publish(
            broker.addr,
            &["-t", topic, "-q", "1", "-r", "-m", payload],
            b"",
        )
        .await;
        assert_eq!(code, 0, "{err}");
    }
    // -v: "topic payload"; -T filters out.
    let mut sub = Sub::start(
        broker.addr,
        &["-t", "r/#", "-v", "-T", "r/skip/#", "-C", "2"],
        false,
    )
    .await;
    assert_eq!(sub.exit_code().await, 0);
    let mut lines = sub.rest().await;
    lines.sort();
    assert_eq!(lines, ["r/a one", "r/b \u{e9}t\u{e9}"]);
    // -F with mosquitto tokens.
    let mut sub = Sub::start(
        broker.addr,
        &["-t", "r/a", "-F", "%t|%p|%x|%l|%q|%r", "-q", "1", "-C", "1"],
        false,
    )
    .await;
    assert_eq!(sub.exit_code().await, 0);
    assert_eq!(sub.rest().await, ["r/a|one|6f6e65|3|1|1"]);
    // --json: one object per line.
    let mut sub = Sub::start(broker.addr, &["-t", "r/a", "--json", "-C", "1"], false).await;
    assert_eq!(sub.exit_code().await, 0);
    let line = sub.rest().await.remove(0);
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["topic"], "r/a");
    assert_eq!(json["payload"], "one");
    assert_eq!(json["retain"], 1);
    assert_eq!(json["payloadlen"], 3);
    // -R skips retained messages: with only retained ones, -W ends it with exit code 27.
    let mut sub = Sub::start(broker.addr, &["-t", "r/#", "-R", "-W", "1"], true).await;
    assert_eq!(sub.exit_code().await, 27);
    assert!(sub.rest().await.is_empty());
    broker.stop().await;
}

#[tokio::test]
async fn remove_retained_clears_what_it_sees() {
    let broker = TestBroker::start().await;
    let (code, _, err) = publish(
        broker.addr,
        &["-t", "rr/a", "-q", "1", "-r", "-m", "old"],
        b"",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let mut sub = Sub::start(
        broker.addr,
        &[
            "-t",
            "rr/#",
            "--remove-retained",
            "--retained-only",
            "-W",
            "5",
        ],
        false,
    )
    .await;
    // --retained-only stops at the first live message: the clearing publish itself.
    assert_eq!(sub.exit_code().await, 0);
    assert_eq!(sub.rest().await, ["old"]);
    // Nothing is retained any more: a new subscriber gets nothing before its timeout.
    let mut sub = Sub::start(broker.addr, &["-t", "rr/#", "-W", "1"], true).await;
    assert_eq!(sub.exit_code().await, 27);
    broker.stop().await;
}

#[tokio::test]
async fn exit_after_subscribe_and_url_with_credentials() {
    let broker = TestBroker::start().await;
    let url = format!("mqtt://user:pass@127.0.0.1:{}", broker.addr.port());
    let (code, out, err) = run(
        "amqtt_sub",
        &[
            "--url".into(),
            url.clone(),
            "-t".into(),
            "e/#".into(),
            "-E".into(),
        ],
        b"",
    )
    .await;
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    // mosquitto's -L with the topic in the path.
    let watch = watcher(broker.addr, "l/#").await;
    let l_url = format!("mqtt://127.0.0.1:{}/l/t", broker.addr.port());
    let (code, _, err) = run(
        "amqtt_pub",
        &[
            "-L".into(),
            l_url,
            "-m".into(),
            "via -L".into(),
            "-q".into(),
            "1".into(),
        ],
        b"",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let m = within("message", watch.deliver_message(None))
        .await
        .unwrap();
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("l/t", &b"via -L"[..]));
    watch.disconnect().await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn ctrl_c_disconnects_cleanly_so_the_will_is_not_published() {
    let broker = TestBroker::start().await;
    let watch = watcher(broker.addr, "wills/#").await;
    let mut sub = Sub::start(
        broker.addr,
        &[
            "-t",
            "x",
            "--will-topic",
            "wills/sub",
            "--will-message",
            "gone",
            "--will-qos",
            "1",
        ],
        true,
    )
    .await;
    let pid = sub.child.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(sub.exit_code().await, 0);
    // A killed subscriber (no DISCONNECT) does get its will published.
    let mut rude = Sub::start(
        broker.addr,
        &[
            "-t",
            "x",
            "--will-topic",
            "wills/rude",
            "--will-message",
            "gone",
            "--will-qos",
            "1",
        ],
        true,
    )
    .await;
    rude.child.kill().await.unwrap();
    let m = within("will", watch.deliver_message(None)).await.unwrap();
    // The first will to arrive is the killed one's: the clean one never comes.
    assert_eq!(m.topic.as_str(), "wills/rude");
    watch.disconnect().await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn errors_are_one_line_with_amqtt_exit_codes() {
    let dir = TempDir::new("errors");
    let config = fast_fail_config(&dir.0);
    let port = free_port().to_string();
    // Connection failure: exit 1, one line on stderr.
    let args: Vec<String> = [
        "-p",
        &port,
        "-t",
        "a",
        "-m",
        "b",
        "-c",
        config.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, out, err) = run("amqtt_pub", &args, b"").await;
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("amqtt_pub: connection failed:"), "{err}");
    let args: Vec<String> = ["-p", &port, "-t", "a", "-c", config.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (code, _, err) = run("amqtt_sub", &args, b"").await;
    assert_eq!(code, 1);
    assert!(
        err.starts_with("amqtt_sub: connection failed:") && err.lines().count() == 1,
        "{err}"
    );
    // No message source, or two: exit 1 (as aMQTT).
    let (code, _, err) = run("amqtt_pub", &["-t".into(), "a".into()], b"").await;
    assert_eq!(code, 1);
    assert!(err.contains("exactly one of --message"), "{err}");
    // Will topic without message: exit 1.
    let (code, _, err) = run(
        "amqtt_pub",
        &[
            "-t".into(),
            "a".into(),
            "-m".into(),
            "b".into(),
            "--will-topic".into(),
            "w".into(),
        ],
        b"",
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("--will-message"), "{err}");
    // Usage errors: exit 2.
    let (code, _, _) = run("amqtt_sub", &["-q".into(), "1".into()], b"").await;
    assert_eq!(code, 2);
    let (code, _, err) = run(
        "amqtt_pub",
        &[
            "-t".into(),
            "a".into(),
            "-q".into(),
            "3".into(),
            "-m".into(),
            "b".into(),
        ],
        b"",
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("expected 0, 1 or 2"), "{err}");
    let (code, _, _) = run("amqtt_pub", &["--bogus".into()], b"").await;
    assert_eq!(code, 2);
    // Bad config file: exit 1 naming the key.
    let bad = dir.0.join("bad.yaml");
    std::fs::write(&bad, "keep-alive: 3\n").unwrap();
    let (code, _, err) = run(
        "amqtt_pub",
        &[
            "-t".into(),
            "a".into(),
            "-m".into(),
            "b".into(),
            "-c".into(),
            bad.to_str().unwrap().into(),
        ],
        b"",
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("keep-alive"), "{err}");
    // --version and --help exit 0; -h is the host, not help.
    let (code, out, _) = run("amqtt_sub", &["--version".into()], b"").await;
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let (code, out, _) = run("amqtt_pub", &["--help".into()], b"").await;
    assert_eq!(code, 0);
    assert!(
        out.contains("--will-topic") && out.contains("-h, --host"),
        "{out}"
    );
}

#[tokio::test]
async fn mqtt_3_1_and_max_inflight_flags() {
    let broker = TestBroker::start().await;
    let watch = watcher(broker.addr, "v31/#").await;
    let (code, _, err) = publish(
        broker.addr,
        &[
            "-V", "mqttv31", "-M", "2", "-t", "v31/a", "-q", "2", "-m", "x", "--repeat", "5",
        ],
        b"",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    for _ in 0..5 {
        let m = within("message", watch.deliver_message(None))
            .await
            .unwrap();
        assert_eq!(m.topic.as_str(), "v31/a");
    }
    let (code, _, err) = publish(broker.addr, &["-V", "mqttv5", "-t", "a", "-m", "x"], b"").await;
    assert_eq!(code, 2, "{err}");
    watch.disconnect().await.unwrap();
    broker.stop().await;
}
