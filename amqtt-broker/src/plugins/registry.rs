//! The plugin registry: names (aMQTT's dotted class paths and legacy entry-point names) mapped
//! to constructors that type-check their config section, plus the translation of aMQTT's
//! default plugin set and of the deprecated `auth:` / `topic-check:` sections into plugin
//! specs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use crate::plugins::{
    AnonymousAuthPlugin, BrokerPlugin, BrokerSysPlugin, EventLoggerPlugin, FileAuthPlugin,
    PacketLoggerPlugin, PluginContext, PluginError, TopicAccessControlListPlugin, TopicTabooPlugin,
};

/// A plugin built from a typed config section (aMQTT's `BasePlugin` with its nested `Config`
/// dataclass). Register it with [`PluginRegistry::register`].
pub trait ConfiguredPlugin: BrokerPlugin + Sized {
    /// The config section. A missing or null section is read as an empty mapping, so field
    /// defaults apply; use `#[serde(deny_unknown_fields)]` so that typos are errors.
    type Config: DeserializeOwned;

    /// Builds the plugin. Errors should name what is wrong ([`PluginError::init`]).
    fn build(config: Self::Config, context: &PluginContext) -> Result<Self, PluginError>;

    /// Prepares applying a new config section to the running plugin (a reload, e.g. on
    /// SIGHUP): check everything and return the change to make, or an error that leaves the
    /// plugin as it is. [`PluginManager::reload`](crate::plugins::PluginManager::reload)
    /// applies the changes only when every plugin prepared its own. The default, `Ok(None)`,
    /// means the plugin cannot reload; a changed section then needs a restart.
    fn reconfigure(
        &self,
        config: Self::Config,
        context: &PluginContext,
    ) -> Result<Option<Reconfiguration>, PluginError> {
        let _ = (config, context);
        Ok(None)
    }
}

/// A prepared reload of one plugin, applied by calling it.
pub type Reconfiguration = Box<dyn FnOnce() + Send>;

/// Prepares a reload from a raw config section (see [`ConfiguredPlugin::reconfigure`]).
pub(crate) type Reloader = Box<
    dyn Fn(Option<&Value>, &PluginContext) -> Result<Option<Reconfiguration>, PluginError>
        + Send
        + Sync,
>;

/// A built plugin with its reloader, if its type can reload.
pub(crate) struct Built {
    pub(crate) plugin: Arc<dyn BrokerPlugin>,
    pub(crate) reloader: Option<Reloader>,
}

/// A config section that takes no key.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EmptyConfig {}

/// A constructor: the plugin's config section (if any) and its context in, a plugin out.
pub type PluginFactory = Arc<
    dyn Fn(Option<&Value>, &PluginContext) -> Result<Arc<dyn BrokerPlugin>, PluginError>
        + Send
        + Sync,
>;

/// One configured plugin: its name and its raw config section.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginSpec {
    /// The registered name (`amqtt.plugins.authentication.AnonymousAuthPlugin`, `auth_file`…).
    pub name: String,
    /// The config section; `None` (or YAML null) means an empty one.
    pub config: Option<Value>,
}

impl PluginSpec {
    /// A spec without config.
    pub fn new(name: impl Into<String>) -> PluginSpec {
        PluginSpec {
            name: name.into(),
            config: None,
        }
    }

    /// A spec with a config section given as YAML text (handy in code and tests).
    pub fn with_yaml(name: impl Into<String>, yaml: &str) -> Result<PluginSpec, PluginError> {
        let name = name.into();
        let config = serde_yaml::from_str(yaml)
            .map_err(|e| PluginError::config(name.clone(), ".", e.to_string()))?;
        Ok(PluginSpec {
            name,
            config: Some(config),
        })
    }

    /// Reads aMQTT's `plugins` section: a mapping `name: config`, or a list whose items are
    /// names or one-entry mappings `{name: config}`. Order is kept.
    pub fn list_from_yaml(section: &Value) -> Result<Vec<PluginSpec>, PluginError> {
        let bad = |what: &str| PluginError::config("plugins", ".", what.to_owned());
        let mut out = Vec::new();
        match section {
            Value::Null => {}
            Value::Mapping(map) => push_mapping(map, &mut out)?,
            Value::Sequence(items) => {
                for item in items {
                    match item {
                        Value::String(name) => out.push(PluginSpec::new(name.clone())),
                        Value::Mapping(map) => push_mapping(map, &mut out)?,
                        _ => {
                            return Err(bad(
                                "expected a plugin name or a mapping `name: config` in the list",
                            ))
                        }
                    }
                }
            }
            _ => {
                return Err(bad(
                    "expected a mapping `plugin name: config` or a list of plugin names",
                ))
            }
        }
        Ok(out)
    }
}

fn push_mapping(map: &Mapping, out: &mut Vec<PluginSpec>) -> Result<(), PluginError> {
    for (key, value) in map {
        let Value::String(name) = key else {
            return Err(PluginError::config(
                "plugins",
                ".",
                format!("plugin names must be strings, found {key:?}"),
            ));
        };
        out.push(PluginSpec {
            name: name.clone(),
            config: (!value.is_null()).then(|| value.clone()),
        });
    }
    Ok(())
}

/// Maps plugin names to constructors. [`PluginRegistry::new`] knows every packaged plugin under
/// its aMQTT dotted name and its legacy entry-point name; register your own before building
/// the broker.
#[derive(Clone)]
pub struct PluginRegistry {
    factories: BTreeMap<String, Registration>,
}

type Registration =
    Arc<dyn Fn(Option<&Value>, &PluginContext) -> Result<Built, PluginError> + Send + Sync>;

/// The packaged plugins: (dotted name, entry-point name).
const PACKAGED: [(&str, &str); 7] = [
    (
        "amqtt.plugins.logging_amqtt.EventLoggerPlugin",
        "event_logger_plugin",
    ),
    (
        "amqtt.plugins.logging_amqtt.PacketLoggerPlugin",
        "packet_logger_plugin",
    ),
    (
        "amqtt.plugins.authentication.AnonymousAuthPlugin",
        "auth_anonymous",
    ),
    ("amqtt.plugins.authentication.FileAuthPlugin", "auth_file"),
    (
        "amqtt.plugins.topic_checking.TopicTabooPlugin",
        "topic_taboo",
    ),
    (
        "amqtt.plugins.topic_checking.TopicAccessControlListPlugin",
        "topic_acl",
    ),
    ("amqtt.plugins.sys.broker.BrokerSysPlugin", "broker_sys"),
];

impl PluginRegistry {
    /// A registry with every packaged plugin.
    pub fn new() -> PluginRegistry {
        let mut r = PluginRegistry::empty();
        // Each under its dotted path, its entry-point name and its bare class name.
        let [events, packets, anonymous, file, taboo, acl, sys] = PACKAGED;
        for name in names(events) {
            r.register::<EventLoggerPlugin>(name);
        }
        for name in names(packets) {
            r.register::<PacketLoggerPlugin>(name);
        }
        for name in names(anonymous) {
            r.register::<AnonymousAuthPlugin>(name);
        }
        for name in names(file) {
            r.register::<FileAuthPlugin>(name);
        }
        for name in names(taboo) {
            r.register::<TopicTabooPlugin>(name);
        }
        for name in names(acl) {
            r.register::<TopicAccessControlListPlugin>(name);
        }
        for name in names(sys) {
            r.register::<BrokerSysPlugin>(name);
        }
        // aMQTT 0.12 keeps this name as a stub that only warns; accept it the same way.
        r.register_factory(
            "amqtt.plugins.persistence.SQLitePlugin",
            Arc::new(|_config, context| {
                tracing::warn!(
                    plugin = context.plugin_name(),
                    "SQLitePlugin is deprecated in aMQTT and does nothing here either"
                );
                Ok(Arc::new(NoopPlugin) as Arc<dyn BrokerPlugin>)
            }),
        );
        r
    }

    /// A registry that knows no plugin.
    pub fn empty() -> PluginRegistry {
        PluginRegistry {
            factories: BTreeMap::new(),
        }
    }

    /// Registers `P` under `name` (replacing any plugin registered under it).
    pub fn register<P: ConfiguredPlugin>(&mut self, name: impl Into<String>) -> &mut Self {
        let registration: Registration = Arc::new(|config, context| {
            let typed = parse_config::<P::Config>(context.plugin_name(), config)?;
            let plugin = Arc::new(P::build(typed, context)?);
            let target = plugin.clone();
            let reloader: Reloader = Box::new(move |config, context| {
                let typed = parse_config::<P::Config>(context.plugin_name(), config)?;
                target.reconfigure(typed, context)
            });
            Ok(Built {
                plugin,
                reloader: Some(reloader),
            })
        });
        self.factories.insert(name.into(), registration);
        self
    }

    /// Registers a constructor under `name` (replacing any plugin registered under it).
    pub fn register_factory(
        &mut self,
        name: impl Into<String>,
        factory: PluginFactory,
    ) -> &mut Self {
        let registration: Registration = Arc::new(move |config, context| {
            Ok(Built {
                plugin: factory(config, context)?,
                reloader: None,
            })
        });
        self.factories.insert(name.into(), registration);
        self
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// Builds the plugin `spec` names, type-checking its config.
    pub fn build(
        &self,
        spec: &PluginSpec,
        context: &PluginContext,
    ) -> Result<Arc<dyn BrokerPlugin>, PluginError> {
        Ok(self.build_reloadable(spec, context)?.plugin)
    }

    /// Builds the plugin `spec` names, with its reloader when its type can reload.
    pub(crate) fn build_reloadable(
        &self,
        spec: &PluginSpec,
        context: &PluginContext,
    ) -> Result<Built, PluginError> {
        let Some(factory) = self.factories.get(&spec.name) else {
            let mut known = self.names().collect::<Vec<_>>().join(", ");
            if spec.name.starts_with("amqtt.contrib.") {
                known.insert_str(0, "(aMQTT's contrib plugins are not part of amqtt-rs) ");
            }
            return Err(PluginError::UnknownPlugin {
                name: spec.name.clone(),
                known,
            });
        };
        factory(spec.config.as_ref(), &context.for_plugin(&spec.name))
    }
}

/// The dotted path, the entry-point name and the bare class name of a packaged plugin.
fn names((dotted, entry_point): (&'static str, &'static str)) -> [&'static str; 3] {
    let class = dotted.rsplit('.').next().unwrap_or(dotted);
    [dotted, entry_point, class]
}

impl Default for PluginRegistry {
    fn default() -> Self {
        PluginRegistry::new()
    }
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.factories.keys()).finish()
    }
}

/// Reads a plugin's config section into its typed `Config`; errors name the key.
pub(crate) fn parse_config<C: DeserializeOwned>(
    plugin: &str,
    config: Option<&Value>,
) -> Result<C, PluginError> {
    let value = match config {
        None | Some(Value::Null) => Value::Mapping(Mapping::new()),
        Some(v) => v.clone(),
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        PluginError::config(plugin, key, e.into_inner().to_string())
    })
}

/// aMQTT's default plugin set (`default_broker_plugins()`): EventLogger, PacketLogger,
/// AnonymousAuth with `allow_anonymous: true` and BrokerSys with `sys_interval: 20`.
pub fn default_plugin_specs() -> Vec<PluginSpec> {
    let mut anonymous = Mapping::new();
    anonymous.insert("allow_anonymous".into(), Value::Bool(true));
    let mut sys = Mapping::new();
    sys.insert("sys_interval".into(), Value::from(20));
    vec![
        PluginSpec::new(PACKAGED[0].0),
        PluginSpec::new(PACKAGED[1].0),
        PluginSpec {
            name: PACKAGED[2].0.to_owned(),
            config: Some(Value::Mapping(anonymous)),
        },
        PluginSpec {
            name: PACKAGED[6].0.to_owned(),
            config: Some(Value::Mapping(sys)),
        },
    ]
}

/// The deprecated sections of an aMQTT config, as read from the YAML.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LegacySections {
    /// The `auth:` section.
    pub auth: Option<Value>,
    /// The `topic-check:` section.
    pub topic_check: Option<Value>,
    /// The top-level `sys_interval` (a number or a numeric string).
    pub sys_interval: Option<Value>,
}

/// Translates aMQTT's legacy configuration (used when `plugins` is absent or null) into plugin
/// specs, and tells whether topic filtering is on (`topic-check.enabled`).
///
/// As in aMQTT: the loggers and `broker_sys` (reading the top-level `sys_interval`, off when
/// absent) are always loaded; `auth.plugins` selects the auth plugins (all of
/// `auth_anonymous` and `auth_file` when omitted), which read `allow-anonymous` and
/// `password-file` from `auth`; without an `auth` section no plugin authenticates and every
/// CONNECT is refused. `topic-check.plugins` selects the topic plugins (`topic_taboo` and
/// `topic_acl` when omitted), which read `acl`/`subscribe-acl`, `publish-acl` and
/// `receive-acl` from `topic-check`.
pub fn legacy_plugin_specs(
    legacy: &LegacySections,
) -> Result<(Vec<PluginSpec>, bool), PluginError> {
    let mut specs = vec![
        PluginSpec::new("event_logger_plugin"),
        PluginSpec::new("packet_logger_plugin"),
    ];

    match legacy.auth.as_ref().filter(|v| !v.is_null()) {
        None => tracing::warn!(
            "legacy config without an `auth` section: no plugin authenticates, every CONNECT is refused"
        ),
        Some(auth) => {
            let auth = section_map("auth", auth)?;
            let names = selected(
                "auth",
                auth,
                &["auth_anonymous", "auth_file"],
            )?;
            for name in names {
                let config = match name.as_str() {
                    "auth_anonymous" => pick(auth, &[("allow-anonymous", "allow_anonymous")]),
                    "auth_file" => pick(auth, &[("password-file", "password_file")]),
                    _ => without(auth, &["plugins"]),
                };
                specs.push(PluginSpec {
                    name,
                    config: Some(config),
                });
            }
        }
    }

    let mut filtering = false;
    if let Some(topic) = legacy.topic_check.as_ref().filter(|v| !v.is_null()) {
        let topic = section_map("topic-check", topic)?;
        filtering = match topic.get("enabled") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(PluginError::config(
                    "topic-check",
                    "enabled",
                    format!("expected true or false, found {other:?}"),
                ))
            }
        };
        if filtering {
            let names = selected("topic-check", topic, &["topic_taboo", "topic_acl"])?;
            for name in names {
                let config = match name.as_str() {
                    "topic_taboo" => Value::Mapping(Mapping::new()),
                    "topic_acl" => pick(
                        topic,
                        &[
                            ("acl", "acl"),
                            ("subscribe-acl", "subscribe_acl"),
                            ("publish-acl", "publish_acl"),
                            ("receive-acl", "receive_acl"),
                        ],
                    ),
                    _ => without(topic, &["plugins", "enabled"]),
                };
                specs.push(PluginSpec {
                    name,
                    config: Some(config),
                });
            }
        }
    }

    let interval = match legacy.sys_interval.as_ref() {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            PluginError::config("sys_interval", ".", "expected a whole number of seconds")
        })?,
        Some(Value::String(s)) => s.trim().parse().map_err(|_| {
            PluginError::config(
                "sys_interval",
                ".",
                format!("expected a whole number of seconds, found `{s}`"),
            )
        })?,
        Some(other) => {
            return Err(PluginError::config(
                "sys_interval",
                ".",
                format!("expected a whole number of seconds, found {other:?}"),
            ))
        }
    };
    let mut sys = Mapping::new();
    sys.insert("sys_interval".into(), Value::from(interval));
    specs.push(PluginSpec {
        name: String::from("broker_sys"),
        config: Some(Value::Mapping(sys)),
    });
    Ok((specs, filtering))
}

fn section_map<'a>(section: &str, value: &'a Value) -> Result<&'a Mapping, PluginError> {
    value
        .as_mapping()
        .ok_or_else(|| PluginError::config(section, ".", "expected a mapping"))
}

/// The `plugins` list of a legacy section, or `default` when it is absent.
fn selected(section: &str, map: &Mapping, default: &[&str]) -> Result<Vec<String>, PluginError> {
    match map.get("plugins") {
        None | Some(Value::Null) => Ok(default.iter().map(|s| (*s).to_owned()).collect()),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    PluginError::config(section, "plugins", "expected a list of plugin names")
                })
            })
            .collect(),
        Some(_) => Err(PluginError::config(
            section,
            "plugins",
            "expected a list of plugin names",
        )),
    }
}

/// Copies the keys named in `(legacy name, new name)` pairs that are present in `map`.
fn pick(map: &Mapping, keys: &[(&str, &str)]) -> Value {
    let mut out = Mapping::new();
    for (from, to) in keys {
        let value = map.get(*from).or_else(|| map.get(*to));
        if let Some(value) = value {
            out.insert(Value::from(*to), value.clone());
        }
    }
    Value::Mapping(out)
}

fn without(map: &Mapping, drop: &[&str]) -> Value {
    let mut out = map.clone();
    for key in drop {
        out.remove(*key);
    }
    Value::Mapping(out)
}

/// A plugin that does nothing (for names kept only for compatibility).
struct NoopPlugin;

impl BrokerPlugin for NoopPlugin {
    fn hooks(&self) -> crate::plugins::Hooks {
        crate::plugins::Hooks::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_packaged_plugin_is_registered_under_both_names() {
        let r = PluginRegistry::new();
        for (dotted, entry_point) in PACKAGED {
            assert!(r.contains(dotted), "{dotted}");
            assert!(r.contains(entry_point), "{entry_point}");
            assert!(r.contains(names((dotted, entry_point))[2]));
            r.build(&PluginSpec::new(dotted), &PluginContext::new())
                .unwrap_or_else(|e| panic!("{dotted}: {e}"));
        }
    }

    #[test]
    fn an_unknown_name_is_an_import_error_listing_known_names() {
        let err = PluginRegistry::new()
            .build(
                &PluginSpec::new("amqtt.plugins.authentication.AnonymousAuth"),
                &PluginContext::new(),
            )
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with(
                "plugins: `amqtt.plugins.authentication.AnonymousAuth`: unknown plugin (PluginImportError); known plugins: "
            ),
            "{err}"
        );
        assert!(err.contains("amqtt.plugins.authentication.AnonymousAuthPlugin"));
    }

    #[test]
    fn a_wrong_field_type_names_plugin_and_key() {
        let spec = PluginSpec::with_yaml(
            "amqtt.plugins.authentication.AnonymousAuthPlugin",
            "allow_anonymous: maybe",
        )
        .unwrap();
        let err = PluginRegistry::new()
            .build(&spec, &PluginContext::new())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with(
                "plugins: `amqtt.plugins.authentication.AnonymousAuthPlugin`: allow_anonymous: invalid type: string \"maybe\", expected a boolean"
            ),
            "{err}"
        );
        let spec = PluginSpec::with_yaml(
            "amqtt.plugins.sys.broker.BrokerSysPlugin",
            "sys_interval: twenty",
        )
        .unwrap();
        let err = PluginRegistry::new()
            .build(&spec, &PluginContext::new())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("`amqtt.plugins.sys.broker.BrokerSysPlugin`: sys_interval: invalid type"),
            "{err}"
        );
        let spec = PluginSpec::with_yaml("topic_taboo", "extra: 1").unwrap();
        let err = PluginRegistry::new()
            .build(&spec, &PluginContext::new())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("`topic_taboo`: extra: unknown field `extra`"),
            "{err}"
        );
    }

    #[test]
    fn plugins_section_reads_mapping_and_list_forms_in_order() {
        let map: Value = serde_yaml::from_str("a.B:\nc.D:\n  x: 1\n").unwrap();
        let specs = PluginSpec::list_from_yaml(&map).unwrap();
        assert_eq!(specs[0], PluginSpec::new("a.B"));
        assert_eq!(specs[1].name, "c.D");
        assert!(specs[1].config.is_some());
        let list: Value = serde_yaml::from_str("- a.B\n- c.D: {x: 1}\n").unwrap();
        assert_eq!(PluginSpec::list_from_yaml(&list).unwrap(), specs);
        assert!(PluginSpec::list_from_yaml(&Value::from(3)).is_err());
    }

    #[test]
    fn default_specs_are_amqtts_default_set_and_build() {
        let specs = default_plugin_specs();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "amqtt.plugins.logging_amqtt.EventLoggerPlugin",
                "amqtt.plugins.logging_amqtt.PacketLoggerPlugin",
                "amqtt.plugins.authentication.AnonymousAuthPlugin",
                "amqtt.plugins.sys.broker.BrokerSysPlugin",
            ]
        );
        let r = PluginRegistry::new();
        for spec in &specs {
            r.build(spec, &PluginContext::new()).unwrap();
        }
    }

    #[test]
    fn legacy_sections_map_onto_the_packaged_plugins() {
        let yaml: Value = serde_yaml::from_str(
            "auth:\n  plugins: [auth_anonymous]\n  allow-anonymous: false\n  password-file: /x\n\
             topic-check:\n  enabled: true\n  plugins: [topic_acl]\n  acl: {u: [a]}\n  publish-acl: {u: [b]}\n",
        )
        .unwrap();
        let legacy = LegacySections {
            auth: yaml.get("auth").cloned(),
            topic_check: yaml.get("topic-check").cloned(),
            sys_interval: Some(Value::from("10")),
        };
        let (specs, filtering) = legacy_plugin_specs(&legacy).unwrap();
        assert!(filtering);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "event_logger_plugin",
                "packet_logger_plugin",
                "auth_anonymous",
                "topic_acl",
                "broker_sys"
            ]
        );
        let anon: Value = serde_yaml::from_str("allow_anonymous: false").unwrap();
        assert_eq!(specs[2].config, Some(anon));
        let acl: Value = serde_yaml::from_str("acl: {u: [a]}\npublish_acl: {u: [b]}").unwrap();
        assert_eq!(specs[3].config, Some(acl));
        let sys: Value = serde_yaml::from_str("sys_interval: 10").unwrap();
        assert_eq!(specs[4].config, Some(sys));
        let r = PluginRegistry::new();
        for spec in &specs {
            r.build(spec, &PluginContext::new()).unwrap();
        }
    }

    #[test]
    fn legacy_defaults_select_every_auth_plugin_and_disable_topic_checks() {
        let auth: Value = serde_yaml::from_str("allow-anonymous: true").unwrap();
        let topic: Value = serde_yaml::from_str("plugins: [topic_taboo]").unwrap();
        let legacy = LegacySections {
            auth: Some(auth),
            topic_check: Some(topic),
            sys_interval: None,
        };
        let (specs, filtering) = legacy_plugin_specs(&legacy).unwrap();
        assert!(!filtering);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "event_logger_plugin",
                "packet_logger_plugin",
                "auth_anonymous",
                "auth_file",
                "broker_sys"
            ]
        );
        let sys: Value = serde_yaml::from_str("sys_interval: 0").unwrap();
        assert_eq!(specs[4].config, Some(sys));
    }

    #[test]
    fn legacy_acl_and_subscribe_acl_together_are_an_error() {
        let topic: Value =
            serde_yaml::from_str("enabled: true\nplugins: [topic_acl]\nacl: {}\nsubscribe-acl: {}")
                .unwrap();
        let legacy = LegacySections {
            auth: None,
            topic_check: Some(topic),
            sys_interval: None,
        };
        let (specs, _) = legacy_plugin_specs(&legacy).unwrap();
        let acl = specs.iter().find(|s| s.name == "topic_acl").unwrap();
        let err = PluginRegistry::new()
            .build(acl, &PluginContext::new())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("duplicate field `acl`"), "{err}");
    }
}
