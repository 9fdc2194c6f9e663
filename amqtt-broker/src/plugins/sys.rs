//! `$SYS/broker/…` statistics: the [`BrokerStats`] counters the broker keeps, and
//! `BrokerSysPlugin` (`amqtt.plugins.sys.broker.BrokerSysPlugin`), which publishes them.
//!
//! The broker bumps the counters on its hot path (relaxed atomics, no lock, no allocation).
//! Values that belong to sessions (in-flight and queued messages, subscriptions, retained
//! topics) are read from the broker when the plugin publishes, so the hot path does not keep
//! them. Process memory and CPU come from `/proc/self` (Linux; elsewhere they read 0).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use mqtt_codec::{QoS, TopicName};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::plugins::{BrokerPlugin, ConfiguredPlugin, Hooks, PluginContext, PluginError};

/// The topic retained at start-up with the broker's version.
pub const SYS_VERSION_TOPIC: &str = "$SYS/broker/version";

/// Broker-wide counters, shared by the broker (which updates them) and `BrokerSysPlugin`
/// (which publishes them). All updates are relaxed atomic additions.
#[derive(Debug)]
pub struct BrokerStats {
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    packets_received: AtomicU64,
    packets_sent: AtomicU64,
    publish_received: AtomicU64,
    publish_sent: AtomicU64,
    publish_dropped: AtomicU64,
    clients_connected: AtomicU64,
    clients_disconnected: AtomicU64,
    clients_maximum: AtomicU64,
    inflight_in: AtomicU64,
    inflight_out: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Bytes read from clients.
    pub bytes_received: u64,
    /// Bytes written to clients.
    pub bytes_sent: u64,
    /// Packets received (all types).
    pub packets_received: u64,
    /// Packets sent (all types).
    pub packets_sent: u64,
    /// PUBLISH packets received.
    pub publish_received: u64,
    /// PUBLISH packets sent.
    pub publish_sent: u64,
    /// Messages dropped because a subscriber's queue was full.
    pub publish_dropped: u64,
    /// Clients connected now.
    pub clients_connected: u64,
    /// Disconnections since start.
    pub clients_disconnected: u64,
    /// The most clients connected at once since start.
    pub clients_maximum: u64,
    /// Incoming QoS 2 messages received and not yet released (PUBREL), over connected clients.
    pub inflight_in: u64,
    /// Outgoing QoS 1/2 messages sent and not yet acknowledged, over connected clients.
    pub inflight_out: u64,
}

impl BrokerStats {
    /// All counters at zero.
    pub fn new() -> BrokerStats {
        BrokerStats {
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            packets_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            publish_received: AtomicU64::new(0),
            publish_sent: AtomicU64::new(0),
            publish_dropped: AtomicU64::new(0),
            clients_connected: AtomicU64::new(0),
            clients_disconnected: AtomicU64::new(0),
            clients_maximum: AtomicU64::new(0),
            inflight_in: AtomicU64::new(0),
            inflight_out: AtomicU64::new(0),
        }
    }

    /// Call with the number of bytes read from a client.
    #[inline]
    pub fn bytes_received(&self, bytes: usize) {
        self.bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Call with the number of bytes written to a client.
    #[inline]
    pub fn bytes_sent(&self, bytes: usize) {
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Call for a packet received from a client.
    #[inline]
    pub fn packet_received(&self, is_publish: bool) {
        self.packets_received.fetch_add(1, Ordering::Relaxed);
        if is_publish {
            self.publish_received.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Call for a packet sent to a client.
    #[inline]
    pub fn packet_sent(&self, is_publish: bool) {
        self.packets_sent.fetch_add(1, Ordering::Relaxed);
        if is_publish {
            self.publish_sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Call when a message for a subscriber is dropped (its queue was full).
    pub fn publish_dropped(&self) {
        self.publish_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Call when a client's CONNECT was accepted.
    pub fn client_connected(&self) {
        let now = self.clients_connected.fetch_add(1, Ordering::Relaxed) + 1;
        self.clients_maximum.fetch_max(now, Ordering::Relaxed);
    }

    /// Call when an accepted client's connection ended.
    pub fn client_disconnected(&self) {
        // Never below zero, even if a caller pairs the calls wrongly.
        let _ = self
            .clients_connected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        self.clients_disconnected.fetch_add(1, Ordering::Relaxed);
    }

    /// Call when a connection's in-flight counts changed from `before` to `after`, each
    /// `(incoming unreleased, outgoing unacknowledged)`; a closing connection reports `(0, 0)`
    /// as `after`.
    #[inline]
    pub fn inflight_changed(&self, before: (usize, usize), after: (usize, usize)) {
        let adjust = |gauge: &AtomicU64, from: usize, to: usize| {
            if to > from {
                gauge.fetch_add((to - from) as u64, Ordering::Relaxed);
            } else if from > to {
                // Never below zero, even if a caller pairs the calls wrongly.
                let down = (from - to) as u64;
                let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(down))
                });
            }
        };
        adjust(&self.inflight_in, before.0, after.0);
        adjust(&self.inflight_out, before.1, after.1);
    }

    /// Adds packets received and sent, as counted by a connection's protocol machine.
    #[inline]
    pub fn packets(&self, received: u64, publish_received: u64, sent: u64, publish_sent: u64) {
        let add = |counter: &AtomicU64, n: u64| {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&self.packets_received, received);
        add(&self.publish_received, publish_received);
        add(&self.packets_sent, sent);
        add(&self.publish_sent, publish_sent);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            bytes_received: get(&self.bytes_received),
            bytes_sent: get(&self.bytes_sent),
            packets_received: get(&self.packets_received),
            packets_sent: get(&self.packets_sent),
            publish_received: get(&self.publish_received),
            publish_sent: get(&self.publish_sent),
            publish_dropped: get(&self.publish_dropped),
            clients_connected: get(&self.clients_connected),
            clients_disconnected: get(&self.clients_disconnected),
            clients_maximum: get(&self.clients_maximum),
            inflight_in: get(&self.inflight_in),
            inflight_out: get(&self.inflight_out),
        }
    }
}

impl Default for BrokerStats {
    fn default() -> Self {
        BrokerStats::new()
    }
}

/// `amqtt.plugins.sys.broker.BrokerSysPlugin` (entry point `broker_sys`).
///
/// At start-up it retains `$SYS/broker/version`; then every `sys_interval` seconds (and once
/// right away) it publishes every `$SYS/broker/…` topic aMQTT has, retained, at QoS 0, values
/// as ASCII decimals. `sys_interval: 0` turns the periodic publishing off. Unlike aMQTT,
/// `clients/maximum` is the real maximum, not the current count.
pub struct BrokerSysPlugin {
    interval: Duration,
    context: PluginContext,
    state: Arc<Mutex<SysState>>,
    stop: CancellationToken,
}

/// Config of [`BrokerSysPlugin`].
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BrokerSysConfig {
    /// Seconds between two publications (default 20; 0 turns them off). Also read as
    /// `sys-interval`.
    #[serde(alias = "sys-interval", default = "default_interval")]
    pub sys_interval: u64,
}

fn default_interval() -> u64 {
    20
}

impl Default for BrokerSysConfig {
    fn default() -> Self {
        BrokerSysConfig {
            sys_interval: default_interval(),
        }
    }
}

/// What the plugin remembers between two publications (guarded by a `std` mutex held only
/// while computing a sample, never across `.await`).
#[derive(Debug)]
struct SysState {
    started: Instant,
    started_at: SystemTime,
    last_cpu: Option<(Instant, f64)>,
    cpu_max: f64,
}

impl BrokerSysPlugin {
    /// A plugin publishing every `config.sys_interval` seconds through `context`.
    pub fn new(config: BrokerSysConfig, context: PluginContext) -> BrokerSysPlugin {
        BrokerSysPlugin {
            interval: Duration::from_secs(config.sys_interval),
            context,
            state: Arc::new(Mutex::new(SysState {
                started: Instant::now(),
                started_at: SystemTime::now(),
                last_cpu: process_cpu_seconds().map(|s| (Instant::now(), s)),
                cpu_max: 0.0,
            })),
            stop: CancellationToken::new(),
        }
    }

    /// Every `$SYS/broker/…` topic with its current value.
    pub fn sample(&self) -> Vec<(&'static str, String)> {
        sample(&self.context, &self.state)
    }
}

impl ConfiguredPlugin for BrokerSysPlugin {
    type Config = BrokerSysConfig;

    fn build(config: BrokerSysConfig, context: &PluginContext) -> Result<Self, PluginError> {
        Ok(BrokerSysPlugin::new(config, context.clone()))
    }
}

#[async_trait]
impl BrokerPlugin for BrokerSysPlugin {
    fn hooks(&self) -> Hooks {
        Hooks::POST_START | Hooks::PRE_SHUTDOWN
    }

    async fn on_broker_post_start(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.started = Instant::now();
            state.started_at = SystemTime::now();
        }
        if let Ok(topic) = TopicName::new(SYS_VERSION_TOPIC) {
            let version = format!("amqtt-rs version {}", env!("CARGO_PKG_VERSION"));
            self.context.retain(topic, version, QoS::AtMostOnce);
        }
        if self.interval.is_zero() {
            return;
        }
        let context = self.context.clone();
        let state = self.state.clone();
        let stop = self.stop.clone();
        let interval = self.interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                for (topic, value) in sample(&context, &state) {
                    let Ok(topic) = TopicName::new(topic) else {
                        continue;
                    };
                    if !context.publish(topic, value, QoS::AtMostOnce, true) {
                        return;
                    }
                }
            }
        });
    }

    async fn on_broker_pre_shutdown(&self) {
        self.stop.cancel();
    }

    async fn close(&self) {
        self.stop.cancel();
    }
}

impl Drop for BrokerSysPlugin {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::fmt::Debug for BrokerSysPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerSysPlugin")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

fn sample(context: &PluginContext, state: &Mutex<SysState>) -> Vec<(&'static str, String)> {
    let stats = context.stats().snapshot();
    // In-flight counts are kept exact by the connections (BrokerStats::inflight_changed).
    let (inflight_in, inflight_out) = (stats.inflight_in, stats.inflight_out);
    let queued: usize = context.sessions().iter().map(|s| s.queued).sum();
    let subscriptions = context.subscriptions().len();
    let retained = context.broker().map_or(0, |b| b.retained_count());
    let memory = process_memory_kib();
    let now = Instant::now();
    let cpu_now = process_cpu_seconds();
    let (uptime, started_at, cpu_percent, cpu_max) = match state.lock() {
        Ok(mut state) => {
            let percent = match (state.last_cpu, cpu_now) {
                (Some((then, cpu_then)), Some(cpu)) => {
                    let wall = now.duration_since(then).as_secs_f64();
                    if wall > 0.0 {
                        ((cpu - cpu_then) / wall * 100.0).max(0.0)
                    } else {
                        0.0
                    }
                }
                _ => 0.0,
            };
            state.last_cpu = cpu_now.map(|c| (now, c));
            state.cpu_max = state.cpu_max.max(percent);
            (
                now.duration_since(state.started).as_secs(),
                state.started_at,
                percent,
                state.cpu_max,
            )
        }
        Err(_) => (0, SystemTime::now(), 0.0, 0.0),
    };
    let epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mib = |kib: u64| format!("{:.3}", kib as f64 / 1024.0);
    vec![
        (
            "$SYS/broker/load/bytes/received",
            stats.bytes_received.to_string(),
        ),
        ("$SYS/broker/load/bytes/sent", stats.bytes_sent.to_string()),
        (
            "$SYS/broker/messages/received",
            stats.packets_received.to_string(),
        ),
        ("$SYS/broker/messages/sent", stats.packets_sent.to_string()),
        ("$SYS/broker/time", epoch(SystemTime::now()).to_string()),
        ("$SYS/broker/uptime", uptime.to_string()),
        (
            "$SYS/broker/uptime/formatted",
            format_utc(epoch(started_at)),
        ),
        (
            "$SYS/broker/clients/connected",
            stats.clients_connected.to_string(),
        ),
        (
            "$SYS/broker/clients/disconnected",
            stats.clients_disconnected.to_string(),
        ),
        (
            "$SYS/broker/clients/maximum",
            stats.clients_maximum.to_string(),
        ),
        (
            "$SYS/broker/clients/total",
            (stats.clients_connected + stats.clients_disconnected).to_string(),
        ),
        (
            "$SYS/broker/messages/inflight",
            (inflight_in + inflight_out).to_string(),
        ),
        ("$SYS/broker/messages/inflight/in", inflight_in.to_string()),
        (
            "$SYS/broker/messages/inflight/out",
            inflight_out.to_string(),
        ),
        (
            "$SYS/broker/messages/inflight/stored",
            (queued + retained).to_string(),
        ),
        (
            "$SYS/broker/messages/publish/received",
            stats.publish_received.to_string(),
        ),
        (
            "$SYS/broker/messages/publish/sent",
            stats.publish_sent.to_string(),
        ),
        ("$SYS/broker/messages/retained/count", retained.to_string()),
        (
            "$SYS/broker/messages/subscriptions/count",
            subscriptions.to_string(),
        ),
        ("$SYS/broker/heap/size", mib(memory.map_or(0, |m| m.0))),
        ("$SYS/broker/heap/maximum", mib(memory.map_or(0, |m| m.1))),
        ("$SYS/broker/cpu/percent", format!("{cpu_percent:.1}")),
        ("$SYS/broker/cpu/maximum", format!("{cpu_max:.1}")),
    ]
}

/// The process's resident set size and its peak, in KiB (`VmRSS`, `VmHWM`).
fn process_memory_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    let rss = field("VmRSS:")?;
    Some((rss, field("VmHWM:").unwrap_or(rss)))
}

/// CPU time (user + system) used by the process, in seconds.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may contain spaces and parentheses: fields start after the last `)`.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    // After `)`: state is field 3, utime field 14, stime field 15 (1-based, man proc).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // /proc reports clock ticks in USER_HZ, which Linux fixes at 100 for user space.
    Some((utime + stime) as f64 / 100.0)
}

/// `YYYY-MM-DD HH:MM:SS+00:00` for a Unix time (the format aMQTT publishes).
fn format_utc(secs: u64) -> String {
    let at = i64::try_from(secs)
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}+00:00",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_track_packets_and_clients_and_maximum() {
        let stats = BrokerStats::new();
        stats.bytes_received(10);
        stats.packet_received(true);
        stats.bytes_received(2);
        stats.packet_received(false);
        stats.bytes_sent(4);
        stats.packet_sent(false);
        stats.client_connected();
        stats.client_connected();
        stats.client_disconnected();
        stats.client_connected();
        stats.client_disconnected();
        stats.client_disconnected();
        stats.client_disconnected(); // one too many: stays at zero
        let s = stats.snapshot();
        assert_eq!(s.bytes_received, 12);
        assert_eq!(s.packets_received, 2);
        assert_eq!(s.publish_received, 1);
        assert_eq!(s.bytes_sent, 4);
        assert_eq!(s.packets_sent, 1);
        assert_eq!(s.publish_sent, 0);
        assert_eq!(s.clients_connected, 0);
        assert_eq!(s.clients_maximum, 2);
        assert_eq!(s.clients_disconnected, 4);
    }

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00+00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00+00:00");
        assert_eq!(format_utc(1_795_301_051), "2026-11-21 22:44:11+00:00");
    }

    #[test]
    fn sample_has_every_amqtt_topic_with_numeric_values() {
        let context = PluginContext::new();
        context.stats().bytes_received(7);
        context.stats().packet_received(true);
        context.stats().client_connected();
        let plugin = BrokerSysPlugin::new(BrokerSysConfig::default(), context);
        let sample = plugin.sample();
        let topics: Vec<&str> = sample.iter().map(|(t, _)| *t).collect();
        for suffix in [
            "load/bytes/received",
            "load/bytes/sent",
            "messages/received",
            "messages/sent",
            "time",
            "uptime",
            "uptime/formatted",
            "clients/connected",
            "clients/disconnected",
            "clients/maximum",
            "clients/total",
            "messages/inflight",
            "messages/inflight/in",
            "messages/inflight/out",
            "messages/inflight/stored",
            "messages/publish/received",
            "messages/publish/sent",
            "messages/retained/count",
            "messages/subscriptions/count",
            "heap/size",
            "heap/maximum",
            "cpu/percent",
            "cpu/maximum",
        ] {
            let topic = format!("$SYS/broker/{suffix}");
            assert!(topics.contains(&topic.as_str()), "{topic} missing");
        }
        assert_eq!(topics.len(), 23);
        for (topic, value) in &sample {
            if *topic == "$SYS/broker/uptime/formatted" {
                assert!(value.ends_with("+00:00"), "{value}");
            } else {
                assert!(value.parse::<f64>().is_ok(), "{topic} = {value}");
            }
        }
        let get = |name: &str| {
            sample
                .iter()
                .find(|(t, _)| *t == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("$SYS/broker/load/bytes/received"), "7");
        assert_eq!(get("$SYS/broker/messages/publish/received"), "1");
        assert_eq!(get("$SYS/broker/clients/connected"), "1");
        assert_eq!(get("$SYS/broker/clients/total"), "1");
        if cfg!(target_os = "linux") {
            let heap: f64 = get("$SYS/broker/heap/size").parse().unwrap();
            assert!(heap > 0.1 && heap < 100_000.0, "heap {heap} MiB");
            let time: u64 = get("$SYS/broker/time").parse().unwrap();
            assert!(time > 1_700_000_000);
        }
    }

    #[test]
    fn cpu_time_is_read_from_proc() {
        if cfg!(target_os = "linux") {
            let before = process_cpu_seconds().unwrap();
            let mut x = 0u64;
            for i in 0..2_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
            let after = process_cpu_seconds().unwrap();
            assert!(after >= before);
        }
    }

    #[test]
    fn config_reads_interval_and_rejects_strings() {
        let c: BrokerSysConfig = serde_yaml::from_str("sys_interval: 0").unwrap();
        assert_eq!(c.sys_interval, 0);
        let c: BrokerSysConfig = serde_yaml::from_str("{}").unwrap();
        assert_eq!(c.sys_interval, 20);
        assert!(serde_yaml::from_str::<BrokerSysConfig>("sys_interval: '20'").is_err());
    }
}
