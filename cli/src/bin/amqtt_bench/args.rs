//! Command-line arguments of `amqtt_bench` (clap derive) and their validation.
//!
//! Everything a run needs is checked here, before any connection is opened, so a bad flag is a
//! one-line error and never a half-started run.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mqtt_codec::{QoS, TopicFilter, TopicName};

use crate::error::BenchError;
use crate::payload::HEADER_LEN;
use crate::transport::{Target, TlsFlags};

/// MQTT load generator: publishers, subscribers and idle connections against any broker.
///
/// Every run is bounded: by `--duration` (default 10 s) and, for publishers, also by `--count`.
/// Payloads carry a run id, the publisher index, a sequence number and the send time, so
/// subscribers measure loss, duplicates, reordering and end-to-end latency.
/// Transports: mqtt://, mqtts:// (with --ca-file or --insecure for private CAs), ws:// and
/// wss://.
/// Exit status: 0 after a complete run, 1 when it could not start, 3 when connections failed
/// during the run.
#[derive(Debug, Parser)]
#[command(name = "amqtt_bench", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) mode: Mode,
}

/// The four modes.
#[derive(Debug, Subcommand)]
pub(crate) enum Mode {
    /// Publishers only: `--clients` connections publishing to `--topic`.
    Pub(PubArgs),
    /// Subscribers only: `--clients` connections subscribed to `--topic`, counting what arrives.
    Sub(SubArgs),
    /// Subscribers and publishers in one process: expected counts are known, so loss is exact.
    Pubsub(PubSubArgs),
    /// Idle connections opened at `--connect-rate` and held for `--duration`.
    Conn(ConnArgs),
}

/// Flags every mode shares.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// Broker URL: mqtt://, mqtts://, ws:// or wss:// host[:port][/path], with optional
    /// user:password@ (also tcp:// and ssl://).
    #[arg(short = 'u', long, default_value = "mqtt://127.0.0.1:1883")]
    pub(crate) url: String,
    /// PEM file of the CAs that signed the broker's certificate (mqtts://, wss://; default:
    /// the Mozilla roots).
    #[arg(long = "ca-file", alias = "cafile", value_name = "FILE")]
    pub(crate) ca_file: Option<String>,
    /// Do not verify the broker's certificate or host name (mqtts://, wss://; for test brokers
    /// with self-signed certificates only).
    #[arg(long)]
    pub(crate) insecure: bool,
    /// How long the run lasts (publishing time, or holding time in `conn`), e.g. 10s, 500ms, 2m.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Keep-alive sent in CONNECT, in seconds; a PINGREQ goes out after half of it without
    /// other traffic.
    #[arg(short = 'k', long, default_value_t = 60)]
    pub(crate) keep_alive: u16,
    /// Client id prefix; the client index is appended (`<prefix>p3`, `<prefix>s0`, `<prefix>c9`).
    #[arg(long)]
    pub(crate) client_id_prefix: Option<String>,
    /// New connections per second while connecting (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) connect_rate: f64,
    /// Print one JSON object with the results on stdout instead of the text report.
    #[arg(long)]
    pub(crate) json: bool,
    /// Worker threads of the runtime (default: the number of CPUs this process may use).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
}

/// Publisher flags.
#[derive(Debug, Args)]
pub(crate) struct PublishFlags {
    /// Topic published to; `%i` is replaced by the publisher's index.
    #[arg(short = 't', long, default_value = "bench/%i")]
    pub(crate) topic: String,
    /// QoS of the PUBLISH packets: 0, 1 or 2.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub(crate) qos: u8,
    /// Payload size in bytes (at least 24: magic, publisher, sequence number, timestamp).
    #[arg(short = 's', long, default_value_t = 64)]
    pub(crate) size: usize,
    /// Messages per second per publisher (0 = as fast as possible).
    #[arg(short = 'r', long, default_value_t = 0.0)]
    pub(crate) rate: f64,
    /// Unacknowledged QoS 1/2 messages allowed per publisher.
    #[arg(short = 'w', long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=65000))]
    pub(crate) window: u16,
    /// Stop each publisher after this many messages (the run also stops at `--duration`).
    #[arg(short = 'n', long)]
    pub(crate) count: Option<u64>,
    /// After publishing: the longest to wait for outstanding acknowledgements and for the last
    /// messages to arrive (`pubsub` subscribers stop earlier, after `--quiet` without a new
    /// message; a backlog a broker left in TCP buffers still arrives and is counted).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) drain: Duration,
}

/// `amqtt_bench pub`.
#[derive(Debug, Args)]
pub(crate) struct PubArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Number of publishers.
    #[arg(short = 'c', long, default_value_t = 1)]
    pub(crate) clients: u32,
    #[command(flatten)]
    pub(crate) publish: PublishFlags,
}

/// `amqtt_bench sub`.
#[derive(Debug, Args)]
pub(crate) struct SubArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Number of subscribers.
    #[arg(short = 'c', long, default_value_t = 1)]
    pub(crate) clients: u32,
    /// Topic filter subscribed to; `%i` is replaced by the subscriber's index.
    #[arg(short = 't', long, default_value = "bench/#")]
    pub(crate) topic: String,
    /// Requested subscription QoS: 0, 1 or 2.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub(crate) qos: u8,
    /// Stop after this many messages in total (the run also stops at `--duration`).
    #[arg(short = 'n', long)]
    pub(crate) count: Option<u64>,
}

/// `amqtt_bench pubsub`.
#[derive(Debug, Args)]
pub(crate) struct PubSubArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Number of publishers.
    #[arg(short = 'p', long, default_value_t = 1)]
    pub(crate) pubs: u32,
    /// Number of subscribers.
    #[arg(short = 'S', long, default_value_t = 1)]
    pub(crate) subs: u32,
    #[command(flatten)]
    pub(crate) publish: PublishFlags,
    /// Topic filter of the subscribers; `%i` is replaced by the subscriber's index.
    #[arg(long, default_value = "bench/#")]
    pub(crate) sub_topic: String,
    /// Subscription QoS (default: the publishing QoS).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub(crate) sub_qos: Option<u8>,
    /// Once publishing has ended, subscribers stop after this long without a new message (or
    /// when everything sent arrived, or at `--drain`). The receive rate is the messages
    /// received over the time from the start of publishing to the last message received, the
    /// same for every broker.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) quiet: Duration,
}

/// `amqtt_bench conn`.
#[derive(Debug, Args)]
pub(crate) struct ConnArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Number of idle connections.
    #[arg(short = 'c', long, default_value_t = 1000)]
    pub(crate) clients: u32,
    /// Connections opened at once at most while connecting.
    #[arg(long, default_value_t = 256)]
    pub(crate) concurrency: usize,
}

/// Validated settings of one run.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) target: Target,
    pub(crate) duration: Duration,
    pub(crate) keep_alive: u16,
    pub(crate) client_id_prefix: String,
    pub(crate) connect_rate: Option<f64>,
}

/// Validated publisher settings.
#[derive(Clone, Debug)]
pub(crate) struct PublishSettings {
    pub(crate) clients: u32,
    pub(crate) topic: String,
    pub(crate) qos: QoS,
    pub(crate) size: usize,
    pub(crate) rate: Option<f64>,
    pub(crate) window: u16,
    pub(crate) count: Option<u64>,
    pub(crate) drain: Duration,
}

/// Validated subscriber settings.
#[derive(Clone, Debug)]
pub(crate) struct SubscribeSettings {
    pub(crate) clients: u32,
    pub(crate) topic: String,
    pub(crate) qos: QoS,
    pub(crate) count: Option<u64>,
}

impl Common {
    /// Checks the shared flags.
    pub(crate) fn settings(&self) -> Result<Settings, BenchError> {
        let tls = TlsFlags {
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
        };
        let target = Target::parse(&self.url, &tls)?;
        if self.duration.is_zero() {
            return Err(BenchError::Usage("--duration must be more than 0".into()));
        }
        if !self.connect_rate.is_finite() || self.connect_rate < 0.0 {
            return Err(BenchError::Usage(
                "--connect-rate must be 0 or a positive number".into(),
            ));
        }
        let prefix = self
            .client_id_prefix
            .clone()
            .unwrap_or_else(|| format!("amqtt-bench-{}-", std::process::id()));
        Ok(Settings {
            target,
            duration: self.duration,
            keep_alive: self.keep_alive,
            client_id_prefix: prefix,
            connect_rate: (self.connect_rate > 0.0).then_some(self.connect_rate),
        })
    }
}

impl PublishFlags {
    /// Checks the publisher flags.
    pub(crate) fn settings(&self, clients: u32) -> Result<PublishSettings, BenchError> {
        if self.size < HEADER_LEN {
            return Err(BenchError::Usage(format!(
                "--size must be at least {HEADER_LEN} bytes (magic, publisher, sequence, timestamp)"
            )));
        }
        if self.size > 256 * 1024 * 1024 {
            return Err(BenchError::Usage(
                "--size is larger than MQTT allows".into(),
            ));
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            return Err(BenchError::Usage(
                "--rate must be 0 or a positive number".into(),
            ));
        }
        check_template(&self.topic, clients, |t| TopicName::new(t).map(drop))?;
        Ok(PublishSettings {
            clients,
            topic: self.topic.clone(),
            qos: qos(self.qos),
            size: self.size,
            rate: (self.rate > 0.0).then_some(self.rate),
            window: self.window,
            count: self.count,
            drain: self.drain,
        })
    }
}

/// Checks a subscription template for `clients` subscribers.
pub(crate) fn subscribe_settings(
    clients: u32,
    topic: &str,
    qos_level: u8,
    count: Option<u64>,
) -> Result<SubscribeSettings, BenchError> {
    check_template(topic, clients, |t| TopicFilter::new(t).map(drop))?;
    Ok(SubscribeSettings {
        clients,
        topic: topic.to_owned(),
        qos: qos(qos_level),
        count,
    })
}

/// Replaces `%i` in a topic template with the client index.
pub(crate) fn expand(template: &str, index: u32) -> String {
    template.replace("%i", &index.to_string())
}

/// Checks that the template gives a valid topic for the first and the last client.
fn check_template<E: std::fmt::Display>(
    template: &str,
    clients: u32,
    check: impl Fn(String) -> Result<(), E>,
) -> Result<(), BenchError> {
    if clients == 0 {
        return Err(BenchError::Usage(
            "the number of clients must be at least 1".into(),
        ));
    }
    for index in [0, clients - 1] {
        let topic = expand(template, index);
        check(topic.clone()).map_err(|e| BenchError::Usage(format!("topic {topic:?}: {e}")))?;
    }
    Ok(())
}

fn qos(level: u8) -> QoS {
    QoS::from_u8(level).unwrap_or(QoS::AtMostOnce)
}

/// Parses `10`, `10s`, `500ms`, `2m`, `1.5s` into a [`Duration`].
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3days").is_err());
    }

    #[test]
    fn templates_replace_the_client_index() {
        assert_eq!(expand("bench/%i/x", 7), "bench/7/x");
        assert_eq!(expand("bench/all", 7), "bench/all");
    }

    #[test]
    fn a_wildcard_in_a_publish_topic_is_refused() {
        let flags = PublishFlags {
            topic: "bench/+".into(),
            qos: 0,
            size: 64,
            rate: 0.0,
            window: 16,
            count: None,
            drain: Duration::from_secs(1),
        };
        assert!(matches!(flags.settings(2), Err(BenchError::Usage(_))));
    }
}
