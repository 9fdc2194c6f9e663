//! [`BrokerConfig`]: the broker's typed configuration, read from aMQTT's YAML.
//!
//! aMQTT's keys are read as they are, in both the underscore spelling aMQTT 0.12 parses
//! (`max_connections`, `timeout_disconnect_delay`) and the dashed one its docs show
//! (`max-connections`, `timeout-disconnect-delay`). Reading is strict like aMQTT's: an unknown
//! key or a wrong type is an error naming the file, the key's path and what was expected; there
//! is no silent fallback. The YAML is converted once into typed values here; nothing else in
//! the broker looks at YAML (plugin sections are kept raw for the plugin registry).
//!
//! This module does no IO except reading the file in [`BrokerConfig::from_yaml_file`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::error::ConfigError;

/// The broker's configuration (aMQTT's `BrokerConfig`, typed).
///
/// [`BrokerConfig::default`] is aMQTT's default configuration, except that the `default`
/// listener binds `127.0.0.1:1883` instead of `0.0.0.0:1883` (a broker started without any
/// config is reachable from this machine only, as mosquitto 2.0 does).
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerConfig {
    /// Listeners by name, with the `default` listener's values already inherited. Always
    /// contains `default`.
    pub listeners: BTreeMap<String, ListenerConfig>,
    /// Added to 1.5 × a client's keep-alive before the client is dropped (YAML
    /// `timeout_disconnect_delay` / `timeout-disconnect-delay`, seconds; default 0).
    pub timeout_disconnect_delay: Duration,
    /// How long a disconnected persistent session is kept (YAML `session_expiry_interval`,
    /// seconds); `None` (default): forever.
    pub session_expiry_interval: Option<Duration>,
    /// The deprecated top-level `sys_interval` (seconds), read by `BrokerSysPlugin` in legacy
    /// mode; `None` when absent.
    pub sys_interval: Option<Duration>,
    /// The `plugins` section in file order. `None` selects aMQTT's legacy loading from the
    /// `auth` / `topic-check` sections (when `plugins` is absent and one of them is present, or
    /// `plugins: null`).
    pub plugins: Option<Vec<PluginEntry>>,
    /// The deprecated `auth:` section, checked and kept raw (keys normalized to underscores).
    pub auth: Option<Mapping>,
    /// The deprecated `topic-check:` section, checked and kept raw (keys normalized to
    /// underscores).
    pub topic_check: Option<Mapping>,
    /// Resource limits (hardening); each is a top-level YAML key of the same name.
    pub limits: Limits,
}

/// One listener (aMQTT's `ListenerConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// `tcp` (default), `ws` or `external`.
    pub listener_type: ListenerType,
    /// `host:port` to listen on; `None` (YAML `bind: null`) means the listener is not started.
    /// aMQTT's forms are accepted: `""`, `"1883"` and `":1883"` mean every interface,
    /// `"host"` alone takes the type's default port, `"::1:1884"` splits at the last colon and
    /// `"[::1]:1884"` is accepted too.
    pub bind: Option<String>,
    /// Connections served at once on this listener; beyond it new connections are closed at
    /// once. 0 (default): no limit.
    pub max_connections: usize,
    /// TLS on this listener (default false).
    pub ssl: bool,
    /// CA file for verifying client certificates.
    pub cafile: Option<PathBuf>,
    /// CA directory for verifying client certificates.
    pub capath: Option<PathBuf>,
    /// CA certificates as PEM text.
    pub cadata: Option<String>,
    /// The server certificate (PEM).
    pub certfile: Option<PathBuf>,
    /// The server key (PEM).
    pub keyfile: Option<PathBuf>,
}

/// A listener's transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListenerType {
    /// MQTT over TCP.
    #[default]
    Tcp,
    /// MQTT over WebSocket.
    Ws,
    /// No server is started; connections come from [`crate::Broker::external_connected`].
    External,
}

/// One entry of the `plugins` section.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginEntry {
    /// The name as written (aMQTT's dotted class path, e.g.
    /// `amqtt.plugins.authentication.AnonymousAuthPlugin`, or the bare class name).
    pub name: String,
    /// The plugin's config section, raw; `Value::Null` when empty.
    pub config: Value,
}

/// Resource limits. Each is a top-level YAML key (underscore or dash spelling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `max_packet_size`: largest packet accepted from a client, in bytes (default 1 MiB, at
    /// most 268,435,460).
    pub max_packet_size: usize,
    /// `max_connect_packet_size`: largest packet accepted before CONNECT is answered
    /// (default 64 KiB).
    pub max_connect_packet_size: usize,
    /// `connect_timeout`: seconds a new connection has to send CONNECT (default 10).
    pub connect_timeout: Duration,
    /// `max_keepalive`: the largest keep-alive the broker honours, in seconds; a client asking
    /// for more (or for 0) is dropped after 1.5 × this much silence. `None` (default): no cap.
    pub max_keepalive: Option<u16>,
    /// `max_inflight`: outgoing QoS 1/2 messages in flight per client (default 20).
    pub max_inflight: u16,
    /// `max_queued_messages`: messages queued per client or offline session behind the
    /// in-flight window (default 1000); beyond it QoS 0 is dropped and the oldest QoS 1/2 too,
    /// counted and logged.
    pub max_queued_messages: usize,
    /// `max_queued_bytes`: payload bytes queued per session (default 64 MiB).
    pub max_queued_bytes: usize,
    /// `max_incoming_unreleased`: incoming QoS 2 messages awaiting PUBREL per client
    /// (default 100); beyond it the client is disconnected.
    pub max_incoming_unreleased: usize,
    /// `max_topic_levels`: levels in a topic name or filter (default 128); a deeper filter
    /// gets SUBACK 0x80, a deeper PUBLISH closes the connection.
    pub max_topic_levels: usize,
    /// `max_topic_length`: bytes in a topic name or filter (default 65,535, the spec's maximum
    /// [MQTT-4.7.3-3]; 1 to 65,535); a longer filter gets SUBACK 0x80, a longer PUBLISH closes
    /// the connection.
    pub max_topic_length: usize,
    /// `shutdown_timeout`: seconds `shutdown` waits for connections to flush (default 5).
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: 1024 * 1024,
            max_connect_packet_size: 64 * 1024,
            connect_timeout: Duration::from_secs(10),
            max_keepalive: None,
            max_inflight: 20,
            max_queued_messages: 1000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_incoming_unreleased: 100,
            max_topic_levels: 128,
            max_topic_length: MAX_TOPIC_LENGTH,
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// Plugins this broker knows, by aMQTT dotted path and bare class name.
pub const KNOWN_PLUGINS: &[(&str, &str)] = &[
    (
        "amqtt.plugins.logging_amqtt.EventLoggerPlugin",
        "EventLoggerPlugin",
    ),
    (
        "amqtt.plugins.logging_amqtt.PacketLoggerPlugin",
        "PacketLoggerPlugin",
    ),
    (
        "amqtt.plugins.authentication.AnonymousAuthPlugin",
        "AnonymousAuthPlugin",
    ),
    (
        "amqtt.plugins.authentication.FileAuthPlugin",
        "FileAuthPlugin",
    ),
    (
        "amqtt.plugins.topic_checking.TopicTabooPlugin",
        "TopicTabooPlugin",
    ),
    (
        "amqtt.plugins.topic_checking.TopicAccessControlListPlugin",
        "TopicAccessControlListPlugin",
    ),
    (
        "amqtt.plugins.sys.broker.BrokerSysPlugin",
        "BrokerSysPlugin",
    ),
];

/// aMQTT's entry-point names, used by the legacy `auth.plugins` / `topic-check.plugins` lists.
pub const LEGACY_PLUGIN_NAMES: &[&str] = &[
    "event_logger_plugin",
    "packet_logger_plugin",
    "auth_anonymous",
    "auth_file",
    "topic_taboo",
    "topic_acl",
    "broker_sys",
];

const PORT_TCP: u16 = 1883;
const PORT_WS: u16 = 8883;
/// The largest packet MQTT can express: 268,435,455 bytes of body plus a 5-byte fixed header.
const MAX_PACKET_SIZE_LIMIT: u64 = 268_435_460;
/// The longest topic name or filter the spec allows ([MQTT-4.7.3-3]).
const MAX_TOPIC_LENGTH: usize = 65_535;

impl BrokerConfig {
    /// Reads a config from aMQTT-style YAML text.
    pub fn from_yaml_str(yaml: &str) -> Result<BrokerConfig, ConfigError> {
        let value: Value = serde_yaml::from_str(yaml).map_err(|e| yaml_syntax_error(&e))?;
        BrokerConfig::from_yaml_value(value)
    }

    /// Reads a config from a YAML file; every error names the file.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<BrokerConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("", format!("cannot read the file: {e}")).in_file(path)
        })?;
        BrokerConfig::from_yaml_str(&text).map_err(|e| e.in_file(path))
    }

    /// Reads a config from a YAML value of the same shape (e.g. one built in code).
    pub fn from_yaml_value(value: Value) -> Result<BrokerConfig, ConfigError> {
        let root = match value {
            // An empty document is the default config, as in aMQTT.
            Value::Null => Mapping::new(),
            Value::Mapping(m) => m,
            other => return Err(expected("", "a mapping of config keys", &other)),
        };
        parse_root(&root)
    }

    /// The config with its `default` listener bound to `bind` (handy in tests:
    /// `BrokerConfig::default().with_default_bind("127.0.0.1:0")`).
    pub fn with_default_bind(mut self, bind: impl Into<String>) -> BrokerConfig {
        if let Some(l) = self.listeners.get_mut("default") {
            l.bind = Some(bind.into());
        }
        self
    }

    /// Checks a config built in code the way the YAML reader checks a file: a `default`
    /// listener, valid binds, supported listener types, known plugins, sane limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listeners.contains_key("default") {
            return Err(ConfigError::new(
                "listeners",
                "a listener named `default` is required",
            ));
        }
        for (name, listener) in &self.listeners {
            check_listener(listener, &join("listeners", name))?;
        }
        // Plugin names are resolved when the broker is built, by its plugin registry (which
        // may hold plugins registered in code), so they are not checked here.
        let l = &self.limits;
        if l.max_packet_size < 2 || l.max_packet_size as u64 > MAX_PACKET_SIZE_LIMIT {
            return Err(ConfigError::new(
                "max_packet_size",
                format!("expected 2 to {MAX_PACKET_SIZE_LIMIT}"),
            ));
        }
        if l.connect_timeout.is_zero() {
            return Err(ConfigError::new(
                "connect_timeout",
                "expected more than 0 seconds",
            ));
        }
        if l.max_topic_length == 0 || l.max_topic_length > MAX_TOPIC_LENGTH {
            return Err(ConfigError::new(
                "max_topic_length",
                format!("expected 1 to {MAX_TOPIC_LENGTH}"),
            ));
        }
        if l.max_inflight == 0 {
            return Err(ConfigError::new("max_inflight", "expected at least 1"));
        }
        if l.max_queued_messages == 0 {
            return Err(ConfigError::new(
                "max_queued_messages",
                "expected at least 1",
            ));
        }
        Ok(())
    }

    /// The `default` listener (always present in a parsed config).
    pub fn default_listener(&self) -> Option<&ListenerConfig> {
        self.listeners.get("default")
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let mut listeners = BTreeMap::new();
        listeners.insert(
            "default".to_owned(),
            ListenerConfig {
                bind: Some("127.0.0.1:1883".to_owned()),
                ..ListenerConfig::default()
            },
        );
        BrokerConfig {
            listeners,
            timeout_disconnect_delay: Duration::ZERO,
            session_expiry_interval: None,
            sys_interval: None,
            plugins: Some(default_plugins()),
            auth: None,
            topic_check: None,
            limits: Limits::default(),
        }
    }
}

impl Default for ListenerConfig {
    /// aMQTT's `ListenerConfig()`: TCP on `0.0.0.0:1883`, no limit, no TLS.
    fn default() -> Self {
        ListenerConfig {
            listener_type: ListenerType::Tcp,
            bind: Some(format!("0.0.0.0:{PORT_TCP}")),
            max_connections: 0,
            ssl: false,
            cafile: None,
            capath: None,
            cadata: None,
            certfile: None,
            keyfile: None,
        }
    }
}

impl ListenerConfig {
    /// The host and port to bind, per aMQTT's rules (see [`ListenerConfig::bind`]); `None`
    /// when the listener is not started. The host is `0.0.0.0` when the bind names no host.
    pub fn bind_host_port(&self) -> Option<(String, u16)> {
        let bind = self.bind.as_deref()?;
        parse_bind(bind, self.default_port()).ok()
    }

    fn default_port(&self) -> u16 {
        match self.listener_type {
            ListenerType::Ws => PORT_WS,
            ListenerType::Tcp | ListenerType::External => PORT_TCP,
        }
    }
}

impl ListenerType {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerType::Tcp => "tcp",
            ListenerType::Ws => "ws",
            ListenerType::External => "external",
        }
    }
}

impl PluginEntry {
    /// aMQTT's full dotted path for this plugin's name, if it is a known plugin.
    pub fn canonical_name(&self) -> Option<&'static str> {
        canonical_plugin_name(&self.name)
    }
}

/// aMQTT's dotted path for a plugin name (dotted or bare class name), if it is known.
pub fn canonical_plugin_name(name: &str) -> Option<&'static str> {
    KNOWN_PLUGINS
        .iter()
        .find(|(full, short)| *full == name || *short == name)
        .map(|(full, _)| *full)
}

/// aMQTT's default plugin set: EventLogger, PacketLogger, AnonymousAuth (allow_anonymous:
/// true), BrokerSys (sys_interval: 20).
pub fn default_plugins() -> Vec<PluginEntry> {
    let map = |pairs: &[(&str, Value)]| {
        let mut m = Mapping::new();
        for (k, v) in pairs {
            m.insert(Value::from(*k), v.clone());
        }
        Value::Mapping(m)
    };
    vec![
        PluginEntry {
            name: "amqtt.plugins.logging_amqtt.EventLoggerPlugin".into(),
            config: Value::Null,
        },
        PluginEntry {
            name: "amqtt.plugins.logging_amqtt.PacketLoggerPlugin".into(),
            config: Value::Null,
        },
        PluginEntry {
            name: "amqtt.plugins.authentication.AnonymousAuthPlugin".into(),
            config: map(&[("allow_anonymous", Value::Bool(true))]),
        },
        PluginEntry {
            name: "amqtt.plugins.sys.broker.BrokerSysPlugin".into(),
            config: map(&[("sys_interval", Value::from(20))]),
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Parsing

fn parse_root(root: &Mapping) -> Result<BrokerConfig, ConfigError> {
    let mut map = Section::new(root, "")?;
    let mut config = BrokerConfig {
        plugins: None,
        ..BrokerConfig::default()
    };

    config.listeners = match map.take("listeners") {
        None => {
            let mut l = BTreeMap::new();
            l.insert("default".to_owned(), ListenerConfig::default());
            l
        }
        Some((v, path)) => parse_listeners(v, &path)?,
    };
    if let Some((v, path)) = map.take("timeout_disconnect_delay") {
        config.timeout_disconnect_delay = opt_duration(v, &path)?.unwrap_or(Duration::ZERO);
    }
    if let Some((v, path)) = map.take("session_expiry_interval") {
        config.session_expiry_interval = opt_duration(v, &path)?;
    }
    if let Some((v, path)) = map.take("sys_interval") {
        config.sys_interval = opt_duration(v, &path)?;
    }
    let auth = map.take("auth");
    let topic_check = map.take("topic_check");
    let plugins = map.take("plugins");
    if let Some((v, path)) = &auth {
        config.auth = parse_legacy_auth(v, path)?;
    }
    if let Some((v, path)) = &topic_check {
        config.topic_check = parse_legacy_topic_check(v, path)?;
    }
    config.plugins = match plugins {
        Some((v, path)) => parse_plugins(v, &path)?,
        None if auth.is_some() || topic_check.is_some() => None,
        None => Some(default_plugins()),
    };
    config.limits = parse_limits(&mut map)?;
    map.finish()?;
    Ok(config)
}

fn parse_limits(map: &mut Section<'_>) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    if let Some((v, path)) = map.take("max_packet_size") {
        limits.max_packet_size = size_in(v, &path, 2, MAX_PACKET_SIZE_LIMIT)?;
    }
    if let Some((v, path)) = map.take("max_connect_packet_size") {
        limits.max_connect_packet_size = size_in(v, &path, 2, MAX_PACKET_SIZE_LIMIT)?;
    }
    if let Some((v, path)) = map.take("connect_timeout") {
        limits.connect_timeout = duration(v, &path)?;
        if limits.connect_timeout.is_zero() {
            return Err(ConfigError::new(
                path,
                "expected a number of seconds greater than 0",
            ));
        }
    }
    if let Some((v, path)) = map.take("max_keepalive") {
        limits.max_keepalive = match v {
            Value::Null => None,
            v => Some(size_in(v, &path, 1, u64::from(u16::MAX))? as u16),
        };
    }
    if let Some((v, path)) = map.take("max_inflight") {
        limits.max_inflight = size_in(v, &path, 1, u64::from(u16::MAX))? as u16;
    }
    if let Some((v, path)) = map.take("max_queued_messages") {
        limits.max_queued_messages = size_in(v, &path, 1, u64::MAX)?;
    }
    if let Some((v, path)) = map.take("max_queued_bytes") {
        limits.max_queued_bytes = size_in(v, &path, 1, u64::MAX)?;
    }
    if let Some((v, path)) = map.take("max_incoming_unreleased") {
        limits.max_incoming_unreleased = size_in(v, &path, 1, u64::from(u16::MAX))?;
    }
    if let Some((v, path)) = map.take("max_topic_levels") {
        limits.max_topic_levels = size_in(v, &path, 1, u64::from(u16::MAX))?;
    }
    if let Some((v, path)) = map.take("max_topic_length") {
        limits.max_topic_length = size_in(v, &path, 1, MAX_TOPIC_LENGTH as u64)?;
    }
    if let Some((v, path)) = map.take("shutdown_timeout") {
        limits.shutdown_timeout = duration(v, &path)?;
    }
    Ok(limits)
}

/// Listener fields as read, before inheritance: `None` = not given.
#[derive(Default)]
struct RawListener {
    listener_type: Option<ListenerType>,
    bind: Option<Option<String>>,
    max_connections: Option<usize>,
    ssl: Option<bool>,
    cafile: Option<Option<PathBuf>>,
    capath: Option<Option<PathBuf>>,
    cadata: Option<Option<String>>,
    certfile: Option<Option<PathBuf>>,
    keyfile: Option<Option<PathBuf>>,
}

fn parse_listeners(v: &Value, path: &str) -> Result<BTreeMap<String, ListenerConfig>, ConfigError> {
    let Value::Mapping(m) = v else {
        return Err(expected(
            path,
            "a mapping of listener names to listener settings",
            v,
        ));
    };
    let mut raw = Vec::new();
    for (name, body) in m {
        let Value::String(name) = name else {
            return Err(expected(path, "listener names that are strings", name));
        };
        let lpath = join(path, name);
        raw.push((name.clone(), parse_listener(body, &lpath)?));
    }
    let Some(default_raw) = raw.iter().find(|(n, _)| n == "default").map(|(_, r)| r) else {
        return Err(ConfigError::new(
            path,
            "a listener named `default` is required (its values are inherited by the others)",
        ));
    };
    let default = apply(default_raw, &ListenerConfig::default());
    let mut out = BTreeMap::new();
    for (name, r) in &raw {
        // Inheritance: a field a listener does not give comes from `default` (aMQTT copies
        // the fields still equal to the dataclass default; an explicit value wins here).
        let listener = if name == "default" {
            default.clone()
        } else {
            apply(r, &default)
        };
        check_listener(&listener, &join(path, name))?;
        out.insert(name.clone(), listener);
    }
    Ok(out)
}

fn apply(raw: &RawListener, base: &ListenerConfig) -> ListenerConfig {
    ListenerConfig {
        listener_type: raw.listener_type.unwrap_or(base.listener_type),
        bind: raw.bind.clone().unwrap_or_else(|| base.bind.clone()),
        max_connections: raw.max_connections.unwrap_or(base.max_connections),
        ssl: raw.ssl.unwrap_or(base.ssl),
        cafile: raw.cafile.clone().unwrap_or_else(|| base.cafile.clone()),
        capath: raw.capath.clone().unwrap_or_else(|| base.capath.clone()),
        cadata: raw.cadata.clone().unwrap_or_else(|| base.cadata.clone()),
        certfile: raw
            .certfile
            .clone()
            .unwrap_or_else(|| base.certfile.clone()),
        keyfile: raw.keyfile.clone().unwrap_or_else(|| base.keyfile.clone()),
    }
}

fn parse_listener(v: &Value, path: &str) -> Result<RawListener, ConfigError> {
    let empty = Mapping::new();
    let m = match v {
        Value::Null => &empty,
        Value::Mapping(m) => m,
        other => return Err(expected(path, "a mapping of listener settings", other)),
    };
    let mut map = Section::new(m, path)?;
    let mut raw = RawListener::default();
    if let Some((v, path)) = map.take("type") {
        raw.listener_type = Some(match v {
            Value::String(s) if s == "tcp" => ListenerType::Tcp,
            Value::String(s) if s == "ws" => ListenerType::Ws,
            Value::String(s) if s == "external" => ListenerType::External,
            other => {
                return Err(expected(
                    &path,
                    "one of `tcp`, `ws`, `external` (lowercase)",
                    other,
                ))
            }
        });
    }
    if let Some((v, path)) = map.take("bind") {
        raw.bind = Some(match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => {
                return Err(expected(
                    &path,
                    "a \"host:port\" string (quote a bare port: \"1883\")",
                    other,
                ))
            }
        });
    }
    if let Some((v, path)) = map.take("max_connections") {
        raw.max_connections = Some(match v {
            // aMQTT: 0 or less means unlimited.
            Value::Number(n) if n.as_i64().is_some_and(|n| n <= 0) => 0,
            v => size_in(v, &path, 0, u64::MAX)?,
        });
    }
    if let Some((v, path)) = map.take("ssl") {
        raw.ssl = Some(boolean(v, &path)?);
    }
    if let Some((v, path)) = map.take("cafile") {
        raw.cafile = Some(opt_string(v, &path)?.map(PathBuf::from));
    }
    if let Some((v, path)) = map.take("capath") {
        raw.capath = Some(opt_string(v, &path)?.map(PathBuf::from));
    }
    if let Some((v, path)) = map.take("cadata") {
        raw.cadata = Some(opt_string(v, &path)?);
    }
    if let Some((v, path)) = map.take("certfile") {
        raw.certfile = Some(opt_string(v, &path)?.map(PathBuf::from));
    }
    if let Some((v, path)) = map.take("keyfile") {
        raw.keyfile = Some(opt_string(v, &path)?.map(PathBuf::from));
    }
    // Present in aMQTT's dataclass but unused there; accepted and ignored.
    for unused in ["reader", "writer"] {
        if let Some((v, path)) = map.take(unused) {
            opt_string(v, &path)?;
        }
    }
    map.finish()?;
    Ok(raw)
}

fn check_listener(l: &ListenerConfig, path: &str) -> Result<(), ConfigError> {
    if let Some(bind) = &l.bind {
        parse_bind(bind, l.default_port()).map_err(|m| ConfigError::new(join(path, "bind"), m))?;
    }
    if l.certfile.is_some() != l.keyfile.is_some() {
        return Err(ConfigError::new(
            path,
            "`certfile` and `keyfile` must be given together",
        ));
    }
    crate::listener::tls::check_files(l, path)?;
    Ok(())
}

/// aMQTT's `_split_bindaddr_port`, plus bracketed IPv6 (`[::1]:1883`).
fn parse_bind(bind: &str, default_port: u16) -> Result<(String, u16), String> {
    const ANY: &str = "0.0.0.0";
    let bad_port = |p: &str| {
        format!("invalid port {p:?} in {bind:?}: expected \"host:port\" with a port 0..65535")
    };
    let port_of = |p: &str| p.parse::<u16>().map_err(|_| bad_port(p));
    let bind = bind.trim();
    if bind.is_empty() {
        return Ok((ANY.to_owned(), default_port));
    }
    if let Some(rest) = bind.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!(
                "unclosed '[' in {bind:?}: expected \"[ipv6]:port\""
            ));
        };
        return match after.strip_prefix(':') {
            Some(port) => Ok((host.to_owned(), port_of(port)?)),
            None if after.is_empty() => Ok((host.to_owned(), default_port)),
            None => Err(format!(
                "unexpected {after:?} after ']' in {bind:?}: expected \"[ipv6]:port\""
            )),
        };
    }
    if bind.bytes().all(|b| b.is_ascii_digit()) {
        return Ok((ANY.to_owned(), port_of(bind)?));
    }
    match bind.rsplit_once(':') {
        Some(("", port)) => Ok((ANY.to_owned(), port_of(port)?)),
        Some((host, port)) => Ok((host.to_owned(), port_of(port)?)),
        None => Ok((bind.to_owned(), default_port)),
    }
}

fn parse_plugins(v: &Value, path: &str) -> Result<Option<Vec<PluginEntry>>, ConfigError> {
    let mut out = Vec::new();
    match v {
        // aMQTT: an explicit `plugins: null` selects legacy entry-point loading.
        Value::Null => return Ok(None),
        Value::Mapping(m) => {
            for (name, cfg) in m {
                out.push(plugin_entry(name, cfg, path)?);
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                let ipath = format!("{path}[{i}]");
                match item {
                    Value::String(_) => out.push(plugin_entry(item, &Value::Null, &ipath)?),
                    Value::Mapping(m) if m.len() == 1 => {
                        for (name, cfg) in m {
                            out.push(plugin_entry(name, cfg, &ipath)?);
                        }
                    }
                    other => {
                        return Err(expected(
                            &ipath,
                            "a plugin name or a one-entry mapping `name: config`",
                            other,
                        ))
                    }
                }
            }
        }
        other => {
            return Err(expected(
                path,
                "a mapping of plugin names to their config",
                other,
            ))
        }
    }
    Ok(Some(out))
}

fn plugin_entry(name: &Value, cfg: &Value, path: &str) -> Result<PluginEntry, ConfigError> {
    let Value::String(name) = name else {
        return Err(expected(path, "plugin names that are strings", name));
    };
    // The name is resolved when the broker is built (see `Broker::with_plugins`): plugins
    // registered in code have names this module cannot know.
    let ppath = join(path, name);
    match cfg {
        Value::Null | Value::Mapping(_) => {}
        other => {
            return Err(expected(
                &ppath,
                "the plugin's config as a mapping (or nothing)",
                other,
            ))
        }
    }
    Ok(PluginEntry {
        name: name.clone(),
        config: cfg.clone(),
    })
}

/// The deprecated section `name` at `path`: `None` when it is empty, an error when it is not
/// a mapping.
fn legacy_section<'a>(
    v: &'a Value,
    path: &str,
    name: &str,
) -> Result<Option<Section<'a>>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::Mapping(m) => Section::new(m, path).map(Some),
        other => Err(expected(
            path,
            &format!("a mapping (deprecated `{name}:` section)"),
            other,
        )),
    }
}

fn parse_legacy_auth(v: &Value, path: &str) -> Result<Option<Mapping>, ConfigError> {
    let Some(mut map) = legacy_section(v, path, "auth")? else {
        return Ok(None);
    };
    let mut out = Mapping::new();
    if let Some((v, p)) = map.take("plugins") {
        out.insert("plugins".into(), legacy_plugin_list(v, &p)?);
    }
    if let Some((v, p)) = map.take("allow_anonymous") {
        out.insert("allow_anonymous".into(), Value::Bool(boolean(v, &p)?));
    }
    if let Some((v, p)) = map.take("password_file") {
        out.insert(
            "password_file".into(),
            opt_string(v, &p)?.map_or(Value::Null, Value::String),
        );
    }
    map.finish()?;
    tracing::warn!(
        "the `auth:` config section is deprecated; configure plugins in `plugins:` instead"
    );
    Ok(Some(out))
}

fn parse_legacy_topic_check(v: &Value, path: &str) -> Result<Option<Mapping>, ConfigError> {
    let Some(mut map) = legacy_section(v, path, "topic-check")? else {
        return Ok(None);
    };
    let mut out = Mapping::new();
    if let Some((v, p)) = map.take("enabled") {
        out.insert("enabled".into(), Value::Bool(boolean(v, &p)?));
    }
    if let Some((v, p)) = map.take("plugins") {
        out.insert("plugins".into(), legacy_plugin_list(v, &p)?);
    }
    for key in ["acl", "subscribe_acl", "publish_acl", "receive_acl"] {
        if let Some((v, p)) = map.take(key) {
            match v {
                Value::Null | Value::Mapping(_) | Value::Sequence(_) => {}
                other => {
                    return Err(expected(
                        &p,
                        "a mapping of user names to lists of topic filters",
                        other,
                    ))
                }
            }
            out.insert(key.into(), v.clone());
        }
    }
    map.finish()?;
    tracing::warn!(
        "the `topic-check:` config section is deprecated; configure plugins in `plugins:` instead"
    );
    Ok(Some(out))
}

fn legacy_plugin_list(v: &Value, path: &str) -> Result<Value, ConfigError> {
    let Value::Sequence(items) = v else {
        return Err(expected(path, "a list of plugin names", v));
    };
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if LEGACY_PLUGIN_NAMES.contains(&s.as_str()) => {}
            Value::String(_) => {
                return Err(ConfigError::new(
                    format!("{path}[{i}]"),
                    format!(
                        "unknown plugin; known names: {}",
                        LEGACY_PLUGIN_NAMES.join(", ")
                    ),
                ))
            }
            other => return Err(expected(&format!("{path}[{i}]"), "a plugin name", other)),
        }
    }
    Ok(v.clone())
}

// ---------------------------------------------------------------------------------------------
// A strict mapping walker: every key must be taken, or `finish` names the first unknown one.

struct Section<'a> {
    path: String,
    entries: Vec<(String, &'a Value, bool)>,
}

impl<'a> Section<'a> {
    fn new(m: &'a Mapping, path: &str) -> Result<Section<'a>, ConfigError> {
        let mut entries: Vec<(String, &'a Value, bool)> = Vec::with_capacity(m.len());
        for (k, v) in m {
            let Value::String(k) = k else {
                return Err(expected(path, "keys that are strings", k));
            };
            let norm = k.replace('-', "_");
            if entries.iter().any(|(n, _, _)| *n == norm) {
                return Err(ConfigError::new(
                    join(path, k),
                    "given twice (the dashed and underscore spellings are the same key)",
                ));
            }
            entries.push((norm, v, false));
        }
        Ok(Section {
            path: path.to_owned(),
            entries,
        })
    }

    /// The value of `key` (underscore spelling; the dashed one matches too) and its path.
    fn take(&mut self, key: &str) -> Option<(&'a Value, String)> {
        let entry = self.entries.iter_mut().find(|(n, _, _)| n == key)?;
        entry.2 = true;
        Some((entry.1, join(&self.path, key)))
    }

    fn finish(self) -> Result<(), ConfigError> {
        match self.entries.iter().find(|(_, _, used)| !used) {
            None => Ok(()),
            Some((key, _, _)) => Err(ConfigError::new(join(&self.path, key), "unknown key")),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("{b} (a boolean)"),
        Value::Number(n) => format!("{n} (a number)"),
        Value::String(s) => format!("{s:?} (a string)"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

fn expected(path: &str, what: &str, got: &Value) -> ConfigError {
    ConfigError::new(path, format!("expected {what}, got {}", describe(got)))
}

fn yaml_syntax_error(e: &serde_yaml::Error) -> ConfigError {
    let mut msg = format!("invalid YAML: {e}");
    if let Some(loc) = e.location() {
        msg = format!("line {}: invalid YAML: {e}", loc.line());
    }
    ConfigError::new("", msg)
}

fn size_in(v: &Value, path: &str, min: u64, max: u64) -> Result<usize, ConfigError> {
    let what = || format!("a whole number from {min} to {max}");
    let n = match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| expected(path, &what(), v))?,
        other => return Err(expected(path, &what(), other)),
    };
    if n < min || n > max {
        return Err(expected(path, &what(), v));
    }
    usize::try_from(n).map_err(|_| expected(path, &what(), v))
}

fn duration(v: &Value, path: &str) -> Result<Duration, ConfigError> {
    let what = "a number of seconds (0 or more)";
    let secs = match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| expected(path, what, v))?,
        other => return Err(expected(path, what, other)),
    };
    // Up to about 31 years; beyond that `Duration` arithmetic with `Instant` could overflow.
    if !(0.0..=1e9).contains(&secs) {
        return Err(expected(path, what, v));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn opt_duration(v: &Value, path: &str) -> Result<Option<Duration>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        v => duration(v, path).map(Some),
    }
}

fn boolean(v: &Value, path: &str) -> Result<bool, ConfigError> {
    match v {
        Value::Bool(b) => Ok(*b),
        // PyYAML reads YAML 1.1 booleans; aMQTT configs may use them.
        Value::String(s) if matches!(s.as_str(), "on" | "yes" | "On" | "Yes" | "ON" | "YES") => {
            Ok(true)
        }
        Value::String(s) if matches!(s.as_str(), "off" | "no" | "Off" | "No" | "OFF" | "NO") => {
            Ok(false)
        }
        other => Err(expected(path, "true or false", other)),
    }
}

fn opt_string(v: &Value, path: &str) -> Result<Option<String>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(expected(path, "a string", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> ConfigError {
        match BrokerConfig::from_yaml_str(yaml) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn test_config_with_port_zero_parses() {
        let c =
            BrokerConfig::from_yaml_str("listeners: {default: {type: tcp, bind: \"127.0.0.1:0\"}}")
                .unwrap();
        let l = c.default_listener().unwrap();
        assert_eq!(l.bind_host_port(), Some(("127.0.0.1".to_owned(), 0)));
        assert_eq!(c.plugins, Some(default_plugins()));
    }

    #[test]
    fn amqtt_default_broker_yaml_parses() {
        let yaml = "
listeners:
  default:
    type: tcp
    bind: 0.0.0.0:1883
plugins:
  amqtt.plugins.logging_amqtt.EventLoggerPlugin:
  amqtt.plugins.logging_amqtt.PacketLoggerPlugin:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
  amqtt.plugins.sys.broker.BrokerSysPlugin:
    sys_interval: 20
";
        let c = BrokerConfig::from_yaml_str(yaml).unwrap();
        assert_eq!(c.plugins, Some(default_plugins()));
        assert_eq!(
            c.default_listener().unwrap().bind_host_port(),
            Some(("0.0.0.0".into(), 1883))
        );
    }

    #[test]
    fn a_deprecated_section_that_is_not_a_mapping_is_an_error_naming_it() {
        for key in ["auth", "topic-check"] {
            let err = BrokerConfig::from_yaml_str(&format!("{key}: [1]\n")).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(&format!("a mapping (deprecated `{key}:` section)")),
                "{text}"
            );
        }
        // Empty sections are allowed, as before.
        assert!(BrokerConfig::from_yaml_str("auth:\ntopic-check:\n").is_ok());
    }

    #[test]
    fn empty_document_is_amqtt_default_on_all_interfaces() {
        let c = BrokerConfig::from_yaml_str("").unwrap();
        assert_eq!(
            c.default_listener().unwrap().bind.as_deref(),
            Some("0.0.0.0:1883")
        );
    }

    #[test]
    fn broker_config_default_listens_on_localhost_only() {
        let c = BrokerConfig::default();
        c.validate().unwrap();
        assert_eq!(
            c.default_listener().unwrap().bind.as_deref(),
            Some("127.0.0.1:1883")
        );
    }

    #[test]
    fn dashed_and_underscore_spellings_are_both_read() {
        let a = BrokerConfig::from_yaml_str(
            "listeners: {default: {max-connections: 5}}\ntimeout-disconnect-delay: 2\nsession-expiry-interval: 60",
        )
        .unwrap();
        let b = BrokerConfig::from_yaml_str(
            "listeners: {default: {max_connections: 5}}\ntimeout_disconnect_delay: 2\nsession_expiry_interval: 60",
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.default_listener().unwrap().max_connections, 5);
        assert_eq!(a.timeout_disconnect_delay, Duration::from_secs(2));
        assert_eq!(a.session_expiry_interval, Some(Duration::from_secs(60)));
    }

    #[test]
    fn both_spellings_of_one_key_is_an_error() {
        let e = err("listeners: {default: {max-connections: 5, max_connections: 6}}");
        assert!(e.key.starts_with("listeners.default.max"), "{e}");
    }

    #[test]
    fn other_listeners_inherit_from_default() {
        let c = BrokerConfig::from_yaml_str(
            "listeners:\n  default: {type: tcp, max_connections: 7, bind: \"127.0.0.1:1883\"}\n  other: {bind: \"127.0.0.1:1884\"}",
        )
        .unwrap();
        let other = &c.listeners["other"];
        assert_eq!(other.max_connections, 7);
        assert_eq!(other.listener_type, ListenerType::Tcp);
        assert_eq!(other.bind_host_port(), Some(("127.0.0.1".into(), 1884)));
    }

    #[test]
    fn explicit_value_overrides_default_listener() {
        let c = BrokerConfig::from_yaml_str(
            "listeners:\n  default: {max_connections: 7, bind: \"127.0.0.1:1883\"}\n  other: {max_connections: 0, bind: \":1884\"}",
        )
        .unwrap();
        assert_eq!(c.listeners["other"].max_connections, 0);
        assert_eq!(
            c.listeners["other"].bind_host_port(),
            Some(("0.0.0.0".into(), 1884))
        );
    }

    #[test]
    fn bind_null_means_not_started() {
        let c = BrokerConfig::from_yaml_str("listeners: {default: {bind: null}}").unwrap();
        assert_eq!(c.default_listener().unwrap().bind_host_port(), None);
    }

    #[test]
    fn missing_default_listener_is_an_error() {
        let e = err("listeners: {other: {bind: \"1.2.3.4:1\"}}");
        assert_eq!(e.key, "listeners");
        assert!(e.message.contains("`default`"), "{e}");
    }

    #[test]
    fn unknown_key_names_its_path() {
        let e = err("listeners: {default: {bnd: \"1.2.3.4:1\"}}");
        assert_eq!(e.key, "listeners.default.bnd");
        assert_eq!(e.message, "unknown key");
        let e = err("keep-alive: 10");
        assert_eq!(e.key, "keep_alive");
    }

    #[test]
    fn numeric_bind_is_a_type_error_like_amqtt() {
        let e = err("listeners: {default: {bind: 1883}}");
        assert_eq!(e.key, "listeners.default.bind");
        assert!(e.message.contains("expected a \"host:port\" string"), "{e}");
        assert!(e.message.contains("1883 (a number)"), "{e}");
    }

    #[test]
    fn non_numeric_port_is_an_error() {
        let e = err("listeners: {default: {bind: \"localhost:mqtt\"}}");
        assert_eq!(e.key, "listeners.default.bind");
        assert!(e.message.contains("invalid port"), "{e}");
    }

    #[test]
    fn bind_forms_of_amqtt() {
        assert_eq!(parse_bind("", 1883), Ok(("0.0.0.0".into(), 1883)));
        assert_eq!(parse_bind("1884", 1883), Ok(("0.0.0.0".into(), 1884)));
        assert_eq!(parse_bind(":1884", 1883), Ok(("0.0.0.0".into(), 1884)));
        assert_eq!(
            parse_bind("example.org", 8883),
            Ok(("example.org".into(), 8883))
        );
        assert_eq!(parse_bind("::1:1884", 1883), Ok(("::1".into(), 1884)));
        assert_eq!(parse_bind("[::1]:1884", 1883), Ok(("::1".into(), 1884)));
        assert!(parse_bind("[::1:1884", 1883).is_err());
        assert!(parse_bind("host:70000", 1883).is_err());
    }

    #[test]
    fn ws_listener_parses_with_its_default_port() {
        let c =
            BrokerConfig::from_yaml_str("listeners: {default: {type: ws, bind: \"127.0.0.1\"}}")
                .unwrap();
        let l = c.default_listener().unwrap();
        assert_eq!(l.listener_type, ListenerType::Ws);
        assert_eq!(l.bind_host_port(), Some(("127.0.0.1".to_owned(), PORT_WS)));
    }

    #[test]
    fn ssl_without_certfile_is_an_error_naming_certfile() {
        let e = err("listeners: {default: {ssl: true}}");
        assert_eq!(e.key, "listeners.default.certfile");
    }

    #[test]
    fn missing_certificate_file_is_an_error_naming_file_and_key() {
        let e = err("listeners: {default: {ssl: on, certfile: /nonexistent/cert.pem, keyfile: /nonexistent/key.pem}}");
        assert_eq!(e.key, "listeners.default.certfile");
        assert!(e.message.contains("/nonexistent/cert.pem"), "{e}");
        let e = err("listeners: {default: {type: ws, cafile: /nonexistent/ca.pem}}");
        assert_eq!(e.key, "listeners.default.cafile");
        assert!(e.message.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn uppercase_type_is_an_error() {
        let e = err("listeners: {default: {type: TCP}}");
        assert_eq!(e.key, "listeners.default.type");
    }

    #[test]
    fn unknown_plugin_is_an_error_naming_it_when_the_broker_is_built() {
        let config = BrokerConfig::from_yaml_str("plugins:\n  amqtt.plugins.nope.NopePlugin:\n")
            .expect("names are resolved by the plugin registry");
        let Err(e) = crate::Broker::new(config) else {
            panic!("an unknown plugin must not build");
        };
        let e = e.to_string();
        assert!(
            e.starts_with("plugins.amqtt.plugins.nope.NopePlugin: unknown plugin"),
            "{e}"
        );
    }

    #[test]
    fn plugins_as_a_list_are_merged() {
        let c = BrokerConfig::from_yaml_str(
            "plugins:\n  - amqtt.plugins.logging_amqtt.EventLoggerPlugin\n  - FileAuthPlugin: {password_file: /x}\n",
        )
        .unwrap();
        let plugins = c.plugins.unwrap();
        assert_eq!(plugins.len(), 2);
        assert_eq!(
            plugins[1].canonical_name(),
            Some("amqtt.plugins.authentication.FileAuthPlugin")
        );
        assert!(matches!(plugins[1].config, Value::Mapping(_)));
    }

    #[test]
    fn legacy_sections_select_legacy_plugin_loading() {
        let yaml = "
listeners: {default: {type: tcp, bind: 0.0.0.0:1883}}
sys_interval: 20
auth:
  plugins: [auth_anonymous]
  allow-anonymous: true
  password-file: /path
topic-check:
  enabled: false
  plugins: [topic_acl]
  acl: {user: [a/b]}
  publish-acl: {user: [a/#]}
";
        let c = BrokerConfig::from_yaml_str(yaml).unwrap();
        assert_eq!(c.plugins, None);
        assert_eq!(c.sys_interval, Some(Duration::from_secs(20)));
        let auth = c.auth.unwrap();
        assert_eq!(auth.get("allow_anonymous"), Some(&Value::Bool(true)));
        let tc = c.topic_check.unwrap();
        assert!(tc.get("publish_acl").is_some());
    }

    #[test]
    fn legacy_unknown_entry_point_is_an_error() {
        let e = err("auth:\n  plugins: [auth_magic]\n");
        assert_eq!(e.key, "auth.plugins[0]");
    }

    #[test]
    fn limits_are_read_and_checked() {
        let c = BrokerConfig::from_yaml_str(
            "max_packet_size: 2048\nconnect-timeout: 2.5\nmax_inflight: 5",
        )
        .unwrap();
        assert_eq!(c.limits.max_packet_size, 2048);
        assert_eq!(c.limits.connect_timeout, Duration::from_millis(2500));
        assert_eq!(c.limits.max_inflight, 5);
        let e = err("max_packet_size: -1");
        assert_eq!(e.key, "max_packet_size");
        assert!(e.message.contains("whole number"), "{e}");
        let e = err("max_packet_size: 300000000");
        assert_eq!(e.key, "max_packet_size");
        let e = err("connect_timeout: 0");
        assert_eq!(e.key, "connect_timeout");
    }

    #[test]
    fn wrong_type_names_what_was_expected() {
        let e = err("session_expiry_interval: soon");
        assert_eq!(e.key, "session_expiry_interval");
        assert_eq!(
            e.message,
            "expected a number of seconds (0 or more), got \"soon\" (a string)"
        );
    }

    #[test]
    fn yaml_syntax_error_names_the_line() {
        let e = err("listeners:\n  default: {bind: [\n");
        assert!(e.message.contains("invalid YAML"), "{e}");
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("amqtt-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.yaml");
        std::fs::write(&path, "listeners: {default: {bind: 1883}}\n").unwrap();
        let e = BrokerConfig::from_yaml_file(&path).unwrap_err();
        assert_eq!(e.file.as_deref(), Some(path.as_path()));
        assert!(
            e.to_string()
                .starts_with(&format!("{}: listeners.default.bind: ", path.display())),
            "{e}"
        );
        let missing = BrokerConfig::from_yaml_file(dir.join("missing.yaml")).unwrap_err();
        assert!(missing.to_string().contains("missing.yaml"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
