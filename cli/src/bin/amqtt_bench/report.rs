//! The results of a run: one serialisable [`Report`], printed as text or as JSON, and the
//! once-a-second progress line.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::stats::Counters;

/// Everything a run measured. Sections that do not apply to the mode are `null` in JSON.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    /// `pub`, `sub`, `pubsub` or `conn`.
    pub(crate) mode: &'static str,
    /// The broker URL.
    pub(crate) url: String,
    /// Opening the connections.
    pub(crate) connections: ConnectReport,
    /// What the publishers did.
    pub(crate) publish: Option<PublishReport>,
    /// What the subscribers received.
    pub(crate) receive: Option<ReceiveReport>,
    /// Errors of connections that failed during the run (one line each).
    pub(crate) errors: Vec<String>,
}

/// Opening the connections.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ConnectReport {
    /// Connections asked for.
    pub(crate) count: u64,
    /// Connections accepted by the broker.
    pub(crate) connected: u64,
    /// Connections that failed.
    pub(crate) failed: u64,
    /// Seconds from the first connection attempt until the last CONNACK (and SUBACK).
    pub(crate) connect_s: f64,
    /// Seconds the connections were held open (`conn` mode).
    pub(crate) hold_s: Option<f64>,
}

/// What the publishers did.
#[derive(Debug, Default, Serialize)]
pub(crate) struct PublishReport {
    /// Publishers.
    pub(crate) publishers: u32,
    /// QoS of the messages.
    pub(crate) qos: u8,
    /// Payload size in bytes.
    pub(crate) payload_size: usize,
    /// Messages per second per publisher asked for; `null` = as fast as possible.
    pub(crate) rate_per_publisher: Option<f64>,
    /// In-flight window per publisher (QoS 1/2).
    pub(crate) window: u16,
    /// Seconds from the start of publishing until the last message was queued.
    pub(crate) duration_s: f64,
    /// Messages sent.
    pub(crate) sent: u64,
    /// Messages acknowledged (QoS 1: PUBACK, QoS 2: PUBCOMP).
    pub(crate) acked: u64,
    /// Messages sent per second.
    pub(crate) rate: f64,
}

/// What the subscribers received.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ReceiveReport {
    /// Subscribers.
    pub(crate) subscribers: u32,
    /// Subscription QoS.
    pub(crate) qos: u8,
    /// Messages received, duplicates included.
    pub(crate) received: u64,
    /// Distinct messages received.
    pub(crate) unique: u64,
    /// Messages that should have arrived (`pubsub` mode, where what was sent is known).
    pub(crate) expected: Option<u64>,
    /// Messages that did not arrive: expected minus unique in `pubsub` mode, gaps in the
    /// sequence numbers otherwise.
    pub(crate) lost: u64,
    /// `lost` as a percentage of what should have arrived.
    pub(crate) loss_pct: f64,
    /// Messages received more than once.
    pub(crate) duplicates: u64,
    /// Messages received after a later one of the same publisher.
    pub(crate) out_of_order: u64,
    /// Messages without a benchmark stamp.
    pub(crate) foreign: u64,
    /// Seconds from the start of publishing (`pubsub`; `sub`: from the first message) to the
    /// last message received, drain included: the time messages actually flowed.
    pub(crate) duration_s: f64,
    /// Messages received per second over `duration_s`.
    pub(crate) rate: f64,
    /// End-to-end latency in microseconds.
    pub(crate) latency_us: Option<Latency>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Latency {
    /// Median.
    pub(crate) p50: u64,
    /// 99th percentile.
    pub(crate) p99: u64,
    /// 99.9th percentile.
    pub(crate) p999: u64,
    /// Largest.
    pub(crate) max: u64,
    /// Mean.
    pub(crate) mean: f64,
}

impl Latency {
    /// Percentiles of a histogram; `None` when it is empty.
    pub(crate) fn of(histogram: &Histogram<u64>) -> Option<Latency> {
        (!histogram.is_empty()).then(|| Latency {
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        })
    }
}

impl Report {
    /// Prints the report on stdout: JSON, or lines for a human.
    pub(crate) fn print(&self, json: bool) {
        let mut stdout = std::io::stdout().lock();
        if json {
            let _ = serde_json::to_writer(&mut stdout, self);
            let _ = writeln!(stdout);
            return;
        }
        let c = &self.connections;
        let _ = writeln!(
            stdout,
            "{} against {}: {} of {} connections in {:.3} s ({} failed){}",
            self.mode,
            self.url,
            c.connected,
            c.count,
            c.connect_s,
            c.failed,
            c.hold_s
                .map(|h| format!(", held {h:.1} s"))
                .unwrap_or_default()
        );
        if let Some(p) = &self.publish {
            let _ = writeln!(
                stdout,
                "sent     {:>12} msgs in {:.3} s = {:>12.0} msgs/s ({} publishers, QoS {}, {} B, {}; acked {})",
                p.sent,
                p.duration_s,
                p.rate,
                p.publishers,
                p.qos,
                p.payload_size,
                p.rate_per_publisher
                    .map(|r| format!("{r} msgs/s each"))
                    .unwrap_or_else(|| "as fast as possible".into()),
                p.acked
            );
        }
        if let Some(r) = &self.receive {
            let _ = writeln!(
                stdout,
                "received {:>12} msgs in {:.3} s = {:>12.0} msgs/s ({} subscribers, QoS {})",
                r.received, r.duration_s, r.rate, r.subscribers, r.qos
            );
            let _ = writeln!(
                stdout,
                "lost {} ({:.3}%){}, duplicates {}, out of order {}, foreign {}",
                r.lost,
                r.loss_pct,
                r.expected
                    .map(|e| format!(" of {e} expected"))
                    .unwrap_or_default(),
                r.duplicates,
                r.out_of_order,
                r.foreign
            );
            if let Some(l) = &r.latency_us {
                let _ = writeln!(
                    stdout,
                    "latency  p50 {} µs  p99 {} µs  p99.9 {} µs  max {} µs  mean {:.0} µs",
                    l.p50, l.p99, l.p999, l.max, l.mean
                );
            }
        }
        for error in &self.errors {
            let _ = writeln!(stdout, "error: {error}");
        }
    }
}

/// The progress line printed every second while stdout is a terminal.
pub(crate) struct Progress {
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts printing when stdout is a terminal; does nothing otherwise.
    pub(crate) fn start(counters: Arc<Counters>) -> Progress {
        if !std::io::stdout().is_terminal() {
            return Progress { task: None };
        }
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut ticks =
                tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
            let (mut sent, mut received) = (0, 0);
            loop {
                ticks.tick().await;
                let now_sent = Counters::get(&counters.sent);
                let now_received = Counters::get(&counters.received);
                println!(
                    "[{:>4.0} s] connected {:>6}  sent {:>11} ({:>9}/s)  acked {:>11}  received {:>11} ({:>9}/s)",
                    start.elapsed().as_secs_f64(),
                    Counters::get(&counters.connected),
                    now_sent,
                    now_sent - sent,
                    Counters::get(&counters.acked),
                    now_received,
                    now_received - received
                );
                (sent, received) = (now_sent, now_received);
            }
        });
        Progress { task: Some(task) }
    }

    /// Stops the progress line.
    pub(crate) fn stop(self) {
        if let Some(task) = self.task {
            task.abort();
        }
    }
}
