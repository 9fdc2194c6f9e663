//! The topic plugins aMQTT packages (`amqtt.plugins.topic_checking`): `TopicTabooPlugin` and
//! `TopicAccessControlListPlugin`.
//!
//! ACL entries are topic filters. A PUBLISH or a delivery is allowed when an entry
//! [matches](TopicFilter::matches) the topic; a SUBSCRIBE is allowed only when the requested
//! filter [lies within](TopicFilter::is_within) an entry, so a client allowed `a/+/c` cannot
//! subscribe to `a/#` or `#`. Both follow [MQTT-4.7.2-1]: an entry starting with a wildcard
//! (`#`, `+/…`) grants no `$SYS` topic. User names are looked up literally, so a user name
//! containing `+` or `#` gains nothing.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

use mqtt_codec::TopicFilter;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::plugins::{
    Action, BrokerPlugin, ClientInfo, ConfiguredPlugin, EmptyConfig, Hooks, PluginContext,
    PluginError, Reconfiguration,
};

/// The user name the topic plugins exempt from every check (as aMQTT documents). Only as safe
/// as the authentication: with `AnonymousAuthPlugin` anyone can claim it.
pub const ADMIN_USERNAME: &str = "admin";
/// The ACL user name that stands for clients without a user name.
pub const ANONYMOUS_USERNAME: &str = "anonymous";
/// The topics [`TopicTabooPlugin`] denies.
pub const TABOO_TOPICS: [&str; 3] = ["prohibited", "top-secret", "data/classified"];

/// `amqtt.plugins.topic_checking.TopicTabooPlugin` (entry point `topic_taboo`): denies the
/// topics `prohibited`, `top-secret` and `data/classified` for every action, except to the
/// user `admin`. The comparison is literal, as in aMQTT: a wildcard subscription is allowed,
/// and the taboo messages are then held back at delivery.
#[derive(Debug, Default)]
pub struct TopicTabooPlugin;

impl ConfiguredPlugin for TopicTabooPlugin {
    type Config = EmptyConfig;

    fn build(_config: EmptyConfig, _context: &PluginContext) -> Result<Self, PluginError> {
        Ok(TopicTabooPlugin)
    }
}

impl BrokerPlugin for TopicTabooPlugin {
    fn hooks(&self) -> Hooks {
        Hooks::TOPIC_FILTERING
    }

    fn topic_filtering(&self, session: &ClientInfo, topic: &str, _action: Action) -> Option<bool> {
        if session.username.as_deref() == Some(ADMIN_USERNAME) {
            return Some(true);
        }
        Some(!TABOO_TOPICS.contains(&topic))
    }
}

/// `amqtt.plugins.topic_checking.TopicAccessControlListPlugin` (entry point `topic_acl`).
///
/// Three tables, each mapping a user name (or `anonymous`) to topic filters:
/// `acl` (also `subscribe-acl`/`subscribe_acl`) for SUBSCRIBE, `publish-acl`/`publish_acl` for
/// PUBLISH and `receive-acl`/`receive_acl` for delivery. A table that is absent restricts
/// nothing; a table that is present but empty (or only comments) allows nothing, and a user
/// missing from a present table is denied. The user `admin` is exempt.
#[derive(Debug)]
pub struct TopicAccessControlListPlugin {
    /// Swapped whole on reload; a check reads it without locking.
    config: Arc<ArcSwap<AclConfig>>,
}

/// Config of [`TopicAccessControlListPlugin`].
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    /// SUBSCRIBE rules; also read as `subscribe-acl` and `subscribe_acl` (giving both is an
    /// error).
    #[serde(default, alias = "subscribe-acl", alias = "subscribe_acl")]
    pub acl: AclTable,
    /// PUBLISH rules; also read as `publish-acl`.
    #[serde(default, alias = "publish-acl")]
    pub publish_acl: AclTable,
    /// Delivery rules; also read as `receive-acl`.
    #[serde(default, alias = "receive-acl")]
    pub receive_acl: AclTable,
}

/// One ACL table: absent (no restriction) or rules per user name.
///
/// Read from YAML as a mapping `user: [filters]`, as the aMQTT docs' list of one-entry
/// mappings (`- user: [filters]`), or as null / nothing but comments (no rules: everything
/// denied). A single filter may be written without the list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AclTable {
    /// The table is not configured: everything is allowed.
    #[default]
    Unrestricted,
    /// Only what a user's filters cover is allowed.
    Rules(HashMap<String, Vec<TopicFilter>>),
}

impl AclTable {
    /// Whether `user` may publish to or receive from the topic name `topic` under this table:
    /// some entry [matches](mqtt_codec::topic::matches) it. Allocates nothing.
    pub fn allows_topic(&self, user: &str, topic: &str) -> bool {
        let AclTable::Rules(rules) = self else {
            return true;
        };
        rules.get(user).is_some_and(|filters| {
            filters
                .iter()
                .any(|allowed| mqtt_codec::topic::matches(allowed.as_str(), topic))
        })
    }

    /// Whether `user` may subscribe with `filter` under this table: the filter must
    /// [lie within](TopicFilter::is_within) an entry. An invalid filter is refused.
    pub fn allows_filter(&self, user: &str, filter: &str) -> bool {
        let AclTable::Rules(rules) = self else {
            return true;
        };
        let Some(filters) = rules.get(user) else {
            return false;
        };
        let Ok(filter) = TopicFilter::new(filter.to_owned()) else {
            return false;
        };
        filters.iter().any(|allowed| filter.is_within(allowed))
    }

    fn is_empty_rules(&self) -> bool {
        matches!(self, AclTable::Rules(r) if r.is_empty())
    }
}

impl TopicAccessControlListPlugin {
    /// A plugin with these tables.
    pub fn new(config: AclConfig) -> TopicAccessControlListPlugin {
        TopicAccessControlListPlugin {
            config: Arc::new(ArcSwap::from_pointee(config)),
        }
    }

    fn warn_about_empty_tables(config: &AclConfig, context: &PluginContext) {
        for (key, table, what) in [
            ("acl", &config.acl, "every SUBSCRIBE"),
            ("publish_acl", &config.publish_acl, "every PUBLISH"),
            ("receive_acl", &config.receive_acl, "every delivery"),
        ] {
            if table.is_empty_rules() {
                tracing::warn!(
                    plugin = context.plugin_name(),
                    "`{key}` is present but has no entries: {what} is denied (except to `{ADMIN_USERNAME}`)"
                );
            }
        }
    }
}

impl ConfiguredPlugin for TopicAccessControlListPlugin {
    type Config = AclConfig;

    fn build(config: AclConfig, context: &PluginContext) -> Result<Self, PluginError> {
        TopicAccessControlListPlugin::warn_about_empty_tables(&config, context);
        Ok(TopicAccessControlListPlugin::new(config))
    }

    /// Replaces the tables; the next check (including deliveries to existing subscribers)
    /// uses the new ones.
    fn reconfigure(
        &self,
        config: AclConfig,
        context: &PluginContext,
    ) -> Result<Option<Reconfiguration>, PluginError> {
        TopicAccessControlListPlugin::warn_about_empty_tables(&config, context);
        let slot = self.config.clone();
        let config = Arc::new(config);
        Ok(Some(Box::new(move || slot.store(config))))
    }
}

impl BrokerPlugin for TopicAccessControlListPlugin {
    fn hooks(&self) -> Hooks {
        Hooks::TOPIC_FILTERING
    }

    fn topic_filtering(&self, session: &ClientInfo, topic: &str, action: Action) -> Option<bool> {
        let user = session.username.as_deref().unwrap_or(ANONYMOUS_USERNAME);
        if user == ADMIN_USERNAME {
            return Some(true);
        }
        let config = self.config.load();
        Some(match action {
            Action::Subscribe => config.acl.allows_filter(user, topic),
            Action::Publish => config.publish_acl.allows_topic(user, topic),
            Action::Receive => config.receive_acl.allows_topic(user, topic),
        })
    }
}

impl<'de> Deserialize<'de> for AclTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TableVisitor)
    }
}

struct TableVisitor;

impl<'de> Visitor<'de> for TableVisitor {
    type Value = AclTable;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping `user: [topic filters]` or a list of such mappings")
    }

    fn visit_unit<E: de::Error>(self) -> Result<AclTable, E> {
        Ok(AclTable::Rules(HashMap::new()))
    }

    fn visit_none<E: de::Error>(self) -> Result<AclTable, E> {
        Ok(AclTable::Rules(HashMap::new()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AclTable, A::Error> {
        let mut rules = HashMap::new();
        read_entries(&mut map, &mut rules)?;
        Ok(AclTable::Rules(rules))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AclTable, A::Error> {
        let mut rules: HashMap<String, Vec<TopicFilter>> = HashMap::new();
        while let Some(Entries(entries)) = seq.next_element::<Entries>()? {
            for (user, filters) in entries {
                rules.entry(user).or_default().extend(filters);
            }
        }
        Ok(AclTable::Rules(rules))
    }
}

fn read_entries<'de, A: MapAccess<'de>>(
    map: &mut A,
    rules: &mut HashMap<String, Vec<TopicFilter>>,
) -> Result<(), A::Error> {
    while let Some(user) = map.next_key::<String>()? {
        let filters = map.next_value::<FilterList>()?;
        let mut parsed = Vec::with_capacity(filters.0.len());
        for text in filters.0 {
            let filter = TopicFilter::new(text.clone()).map_err(|e| {
                de::Error::custom(format!(
                    "user `{user}`: `{text}` is not a valid topic filter: {e}"
                ))
            })?;
            parsed.push(filter);
        }
        rules.entry(user).or_default().extend(parsed);
    }
    Ok(())
}

/// One item of the list form: a mapping with one (or more) `user: filters` entries.
struct Entries(Vec<(String, Vec<TopicFilter>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping `user: [topic filters]`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut rules = HashMap::new();
                read_entries(&mut map, &mut rules)?;
                Ok(Entries(rules.into_iter().collect()))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// A user's filters: a list, a single string, or null (none).
struct FilterList(Vec<String>);

impl<'de> Deserialize<'de> for FilterList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = FilterList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of topic filters")
            }
            fn visit_unit<E: de::Error>(self) -> Result<FilterList, E> {
                Ok(FilterList(Vec::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<FilterList, E> {
                Ok(FilterList(Vec::new()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FilterList, E> {
                Ok(FilterList(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FilterList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(FilterList(out))
            }
        }
        deserializer.deserialize_any(ListVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::client;

    fn acl(yaml: &str) -> TopicAccessControlListPlugin {
        let config: AclConfig = serde_yaml::from_str(yaml).unwrap();
        TopicAccessControlListPlugin::new(config)
    }

    fn sub(p: &dyn BrokerPlugin, who: Option<&str>, filter: &str) -> Option<bool> {
        p.topic_filtering(&client("c", who), filter, Action::Subscribe)
    }

    fn publish(p: &dyn BrokerPlugin, who: Option<&str>, topic: &str) -> Option<bool> {
        p.topic_filtering(&client("c", who), topic, Action::Publish)
    }

    fn receive(p: &dyn BrokerPlugin, who: Option<&str>, topic: &str) -> Option<bool> {
        p.topic_filtering(&client("c", who), topic, Action::Receive)
    }

    #[test]
    fn subscribe_must_lie_within_an_allowed_filter_not_merely_overlap() {
        let p = acl("acl:\n  alice: ['a/+/c', 'b/#']\n");
        assert_eq!(sub(&p, Some("alice"), "a/x/c"), Some(true));
        assert_eq!(sub(&p, Some("alice"), "a/+/c"), Some(true));
        assert_eq!(sub(&p, Some("alice"), "b/#"), Some(true));
        assert_eq!(sub(&p, Some("alice"), "b/x/+"), Some(true));
        assert_eq!(sub(&p, Some("alice"), "b"), Some(true));
        // Wider than allowed: refused.
        assert_eq!(sub(&p, Some("alice"), "a/#"), Some(false));
        assert_eq!(sub(&p, Some("alice"), "#"), Some(false));
        assert_eq!(sub(&p, Some("alice"), "+/+/c"), Some(false));
        assert_eq!(sub(&p, Some("alice"), "a/+/#"), Some(false));
        assert_eq!(sub(&p, Some("alice"), "a/x/c/d"), Some(false));
    }

    #[test]
    fn hash_entry_grants_no_sys_topics() {
        let p = acl(
            "acl: {root: ['#']}\npublish_acl: {root: ['#']}\nreceive_acl: {root: ['#', '+/x']}\n",
        );
        assert_eq!(sub(&p, Some("root"), "a/b"), Some(true));
        assert_eq!(sub(&p, Some("root"), "$SYS/#"), Some(false));
        assert_eq!(sub(&p, Some("root"), "$SYS/broker/uptime"), Some(false));
        assert_eq!(publish(&p, Some("root"), "$SYS/x"), Some(false));
        assert_eq!(receive(&p, Some("root"), "$SYS/x"), Some(false));
        assert_eq!(receive(&p, Some("root"), "a"), Some(true));
        let p = acl("acl: {ops: ['$SYS/#']}\n");
        assert_eq!(sub(&p, Some("ops"), "$SYS/broker/uptime"), Some(true));
        assert_eq!(sub(&p, Some("ops"), "$SYS/#"), Some(true));
    }

    #[test]
    fn user_names_with_wildcards_gain_nothing() {
        let p = acl("acl: {alice: ['a/#']}\npublish_acl: {alice: ['a/#']}\n");
        for who in ["#", "+", "a/#", "alice/#", "*"] {
            assert_eq!(sub(&p, Some(who), "a/b"), Some(false), "{who}");
            assert_eq!(publish(&p, Some(who), "a/b"), Some(false), "{who}");
        }
    }

    #[test]
    fn anonymous_entry_covers_clients_without_user_name() {
        let p = acl("acl:\n  - anonymous: [public/#]\n  - alice: [private/#]\n");
        assert_eq!(sub(&p, None, "public/x"), Some(true));
        assert_eq!(sub(&p, None, "private/x"), Some(false));
        assert_eq!(sub(&p, Some("alice"), "private/x"), Some(true));
        assert_eq!(sub(&p, Some("alice"), "public/x"), Some(false));
    }

    #[test]
    fn admin_is_exempt() {
        let p = acl("acl: {}\npublish_acl: {}\nreceive_acl: {}\n");
        assert_eq!(sub(&p, Some("admin"), "#"), Some(true));
        assert_eq!(publish(&p, Some("admin"), "x"), Some(true));
        assert_eq!(receive(&p, Some("admin"), "x"), Some(true));
        assert_eq!(sub(&p, Some("alice"), "x"), Some(false));
    }

    #[test]
    fn absent_tables_restrict_nothing_and_empty_tables_allow_nothing() {
        let open = acl("{}");
        assert_eq!(sub(&open, Some("x"), "#"), Some(true));
        assert_eq!(publish(&open, None, "a"), Some(true));
        assert_eq!(receive(&open, None, "a"), Some(true));
        // `acl:` followed only by comments is null: nothing allowed.
        let closed = acl("acl:\n  # nobody yet\npublish-acl: {}\nreceive-acl: []\n");
        assert_eq!(sub(&closed, Some("x"), "a"), Some(false));
        assert_eq!(publish(&closed, Some("x"), "a"), Some(false));
        assert_eq!(receive(&closed, Some("x"), "a"), Some(false));
        // A user listed with no filters is denied too.
        let empty_user = acl("acl: {bob: []}\n");
        assert_eq!(sub(&empty_user, Some("bob"), "a"), Some(false));
    }

    #[test]
    fn publish_and_receive_use_their_own_tables() {
        let p = acl("acl: {u: [s/#]}\npublish-acl: {u: [p/+]}\nreceive_acl: {u: [r]}\n");
        assert_eq!(publish(&p, Some("u"), "p/1"), Some(true));
        assert_eq!(publish(&p, Some("u"), "p/1/2"), Some(false));
        assert_eq!(publish(&p, Some("u"), "s/1"), Some(false));
        assert_eq!(receive(&p, Some("u"), "r"), Some(true));
        assert_eq!(receive(&p, Some("u"), "p/1"), Some(false));
    }

    #[test]
    fn config_forms_and_errors() {
        let c: AclConfig = serde_yaml::from_str("subscribe-acl:\n  u: single/topic\n").unwrap();
        assert_eq!(
            c.acl,
            AclTable::Rules(HashMap::from([(
                "u".to_owned(),
                vec![TopicFilter::new("single/topic").unwrap()]
            )]))
        );
        let err = serde_yaml::from_str::<AclConfig>("acl: {u: [a]}\nsubscribe-acl: {u: [b]}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate field `acl`"), "{err}");
        let err = serde_yaml::from_str::<AclConfig>("acl: {u: ['a/#/b']}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("user `u`: `a/#/b` is not a valid topic filter"),
            "{err}"
        );
        let err = serde_yaml::from_str::<AclConfig>("publish-acls: {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `publish-acls`"), "{err}");
        let err = serde_yaml::from_str::<AclConfig>("acl: 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a mapping `user: [topic filters]`"), "{err}");
    }

    #[test]
    fn taboo_denies_three_topics_except_to_admin() {
        let p = TopicTabooPlugin;
        for topic in TABOO_TOPICS {
            assert_eq!(publish(&p, Some("u"), topic), Some(false));
            assert_eq!(receive(&p, None, topic), Some(false));
            assert_eq!(sub(&p, Some("u"), topic), Some(false));
            assert_eq!(publish(&p, Some("admin"), topic), Some(true));
        }
        assert_eq!(publish(&p, Some("u"), "data/open"), Some(true));
        assert_eq!(sub(&p, Some("u"), "data/#"), Some(true));
    }
}
