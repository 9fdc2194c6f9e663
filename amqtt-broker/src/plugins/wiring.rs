//! Connecting plugins to the broker: building the [`PluginManager`] a [`BrokerConfig`] asks for
//! (its `plugins` section, or the legacy `auth:` / `topic-check:` sections), installing it as the
//! broker's access control and event hook, and giving plugins a [`BrokerAccess`] to the
//! running broker.

use std::sync::{Arc, Weak};

use mqtt_codec::session::Message;
use mqtt_codec::{QoS, TopicFilter};
use serde_yaml::Value;

use crate::broker::{Broker, Extensions, Shared};
use crate::config::BrokerConfig;
use crate::error::{BrokerError, ConfigError};
use crate::plugins::StatsSnapshot;
use crate::plugins::{
    legacy_plugin_specs, BrokerAccess, LegacySections, PluginContext, PluginError, PluginManager,
    PluginManagerBuilder, PluginRegistry, PluginSpec, SessionSummary,
};

impl PluginManager {
    /// A builder holding the plugins `config` names, built by `registry`: the `plugins` section
    /// in order or, when it is absent (or null) in an aMQTT legacy config, the plugins the
    /// `auth:` / `topic-check:` sections select (see [`legacy_plugin_specs`]). Add plugin
    /// instances to it before [`build`](PluginManagerBuilder::build).
    pub fn builder_for_config<'r>(
        config: &BrokerConfig,
        registry: &'r PluginRegistry,
    ) -> Result<PluginManagerBuilder<'r>, PluginError> {
        let context = PluginContext::new().with_broker_config(Arc::new(config.clone()));
        let (specs, filtering) = specs_for_config(config)?;
        Ok(PluginManager::builder(registry, context)
            .specs(specs)
            .topic_filtering(filtering))
    }

    /// Applies `config`'s plugin sections to the running plugins (see
    /// [`PluginManager::reload`]): the same plugins must be configured, in the same order.
    pub fn reload_config(&self, config: &BrokerConfig) -> Result<(), PluginError> {
        let (specs, filtering) = specs_for_config(config)?;
        if filtering != self.topic_filtering_enabled() {
            tracing::warn!("`topic-check.enabled` changed: it applies after a restart");
        }
        self.reload(&specs)
    }
}

/// The plugin specs `config` names and whether topic filtering is on.
fn specs_for_config(config: &BrokerConfig) -> Result<(Vec<PluginSpec>, bool), PluginError> {
    Ok(match &config.plugins {
        Some(entries) => (
            entries
                .iter()
                .map(|entry| PluginSpec {
                    name: entry.name.clone(),
                    config: (!entry.config.is_null()).then(|| entry.config.clone()),
                })
                .collect(),
            true,
        ),
        None => {
            let legacy = LegacySections {
                auth: config.auth.clone().map(Value::Mapping),
                topic_check: config.topic_check.clone().map(Value::Mapping),
                sys_interval: config.sys_interval.map(|d| Value::from(d.as_secs())),
            };
            legacy_plugin_specs(&legacy)?
        }
    })
}

impl Broker {
    /// A broker for `config` with the plugins it names, built by `registry` (use
    /// [`PluginRegistry::new`] for aMQTT's packaged plugins plus your own). An unknown plugin
    /// name or a plugin config of the wrong shape is an error naming the plugin and the key.
    pub fn with_plugins(
        config: BrokerConfig,
        registry: &PluginRegistry,
    ) -> Result<Broker, BrokerError> {
        let manager = PluginManager::builder_for_config(&config, registry)
            .and_then(PluginManagerBuilder::build)
            .map_err(ConfigError::from)?;
        Broker::with_plugin_manager(config, manager)
    }

    /// A broker for `config` using `manager` for authentication, topic filtering and events
    /// (for plugin sets assembled in code, e.g. with plugin instances).
    pub fn with_plugin_manager(
        config: BrokerConfig,
        manager: PluginManager,
    ) -> Result<Broker, BrokerError> {
        let manager = Arc::new(manager);
        let context = manager.context().clone();
        let broker = Broker::with_extensions(
            config,
            Extensions {
                access: manager.clone(),
                events: Some(manager.clone()),
                stats: context.stats().clone(),
                plugins: Some(manager),
                ..Extensions::default()
            },
        )?;
        context.attach(Arc::new(SharedAccess(Arc::downgrade(broker.shared()))));
        Ok(broker)
    }

    /// The broker's counters now (what `$SYS/broker/…` publishes).
    pub fn stats(&self) -> StatsSnapshot {
        self.shared().stats.snapshot()
    }

    /// The plugin manager, when the broker was built with plugins.
    pub fn plugins(&self) -> Option<&Arc<PluginManager>> {
        self.shared().plugins.as_ref()
    }

    /// Applies the plugin sections of `config` to the running plugins without dropping any
    /// client (what SIGHUP does): password files are re-read, ACLs replaced. All or nothing:
    /// on error (a malformed password file, an ACL of the wrong shape, plugins added or
    /// removed) the old settings stay and the error says why. Other parts of `config`
    /// (listeners, limits) are not applied.
    pub fn reload_plugins(&self, config: &BrokerConfig) -> Result<(), ConfigError> {
        let Some(plugins) = self.plugins() else {
            return Err(ConfigError::new(
                "plugins",
                "this broker was built without plugins; nothing to reload",
            ));
        };
        plugins.reload_config(config).map_err(ConfigError::from)
    }
}

impl From<PluginError> for ConfigError {
    /// `plugins.NAME[.KEY]: problem`, so the config loader's `file: key: problem` form applies.
    fn from(error: PluginError) -> ConfigError {
        match error {
            PluginError::UnknownPlugin { name, known } => ConfigError::new(
                format!("plugins.{name}"),
                format!("unknown plugin (PluginImportError); known plugins: {known}"),
            ),
            PluginError::Config {
                plugin,
                key,
                message,
            } => {
                let path = if key == "." {
                    format!("plugins.{plugin}")
                } else {
                    format!("plugins.{plugin}.{key}")
                };
                ConfigError::new(path, message)
            }
            PluginError::Init { plugin, message } => ConfigError::new(
                format!("plugins.{plugin}"),
                format!("plugin init failed (PluginInitError): {message}"),
            ),
            PluginError::PasswordFile { plugin, source } => ConfigError::new(
                format!("plugins.{plugin}.password_file"),
                source.to_string(),
            ),
        }
    }
}

/// The running broker as plugins see it; weak, so plugins never keep a dropped broker alive.
struct SharedAccess(Weak<Shared>);

impl BrokerAccess for SharedAccess {
    fn publish(&self, message: Message) -> bool {
        let Some(shared) = self.0.upgrade() else {
            return false;
        };
        if shared.cancel.is_cancelled() {
            return false;
        }
        shared.router.route(None, &message);
        true
    }

    fn retain(&self, message: Message) -> bool {
        let Some(shared) = self.0.upgrade() else {
            return false;
        };
        shared.router.retained.retain(message);
        true
    }

    fn sessions(&self) -> Vec<SessionSummary> {
        let Some(shared) = self.0.upgrade() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        shared.registry.for_each(|sub| {
            let state = sub.state.lock();
            out.push(SessionSummary {
                client_id: sub.client_id.to_string(),
                username: state.info.username.as_deref().map(str::to_owned),
                connected: state.online.is_some(),
                clean_session: !state.persistent,
                inflight_out: 0,
                inflight_in: 0,
                queued: state.mailbox.len(),
            });
        });
        out
    }

    fn subscriptions(&self) -> Vec<(String, TopicFilter, QoS)> {
        let Some(shared) = self.0.upgrade() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        shared.registry.for_each(|sub| {
            let state = sub.state.lock();
            for (filter, qos) in &state.subscriptions {
                out.push((sub.client_id.to_string(), filter.clone(), *qos));
            }
        });
        out
    }

    fn retained_count(&self) -> usize {
        self.0
            .upgrade()
            .map_or(0, |shared| shared.router.retained.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_errors_become_config_errors_naming_plugin_and_key() {
        let e: ConfigError = PluginError::config("a.B", "allow_anonymous", "invalid type").into();
        assert_eq!(e.to_string(), "plugins.a.B.allow_anonymous: invalid type");
        let e: ConfigError = PluginError::UnknownPlugin {
            name: "x.Y".into(),
            known: "a, b".into(),
        }
        .into();
        assert_eq!(
            e.to_string(),
            "plugins.x.Y: unknown plugin (PluginImportError); known plugins: a, b"
        );
    }
}
