//! Where retained messages and offline persistent sessions live: the [`RetainedStore`] and
//! [`SessionStore`] traits, and their in-memory implementations.
//!
//! The protocol code only talks to the traits, so a durable store (a file, SQLite like aMQTT's
//! `SessionDBPlugin`) can be added without touching it. Implementations are called from
//! connection tasks with short, non-blocking sections: they must not block on IO (a durable
//! store buffers and writes from its own task).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use mqtt_codec::session::{Message, Session};
use mqtt_codec::{QoS, TopicFilter};
use parking_lot::{Mutex, RwLock};

use crate::retained::RetainedTree;

/// What [`RetainedStore::retain`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetainOutcome {
    /// The message is now the topic's retained message (replacing any previous one).
    Stored,
    /// The empty payload cleared the topic's retained message ([MQTT-3.3.1-10]).
    Cleared,
    /// The empty payload found nothing to clear.
    Unchanged,
}

/// Retained messages, one per topic ([MQTT-3.3.1-5]).
pub trait RetainedStore: Send + Sync + 'static {
    /// Stores `message` as its topic's retained message, or clears the topic when the payload
    /// is empty ([MQTT-3.3.1-10], [MQTT-3.3.1-11]).
    fn retain(&self, message: Message) -> RetainOutcome;

    /// Appends every retained message whose topic matches `filter` to `out`.
    fn matching(&self, filter: &TopicFilter, out: &mut Vec<Message>);

    /// Number of retained topics.
    fn len(&self) -> usize;

    /// Whether no message is retained.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A disconnected persistent session (clean session 0).
#[derive(Clone, Debug)]
pub struct StoredSession {
    /// The protocol state: in-flight messages to retransmit, the queue, QoS 2 ids.
    pub session: Session,
    /// The session's subscriptions ([MQTT-3.1.2-4]).
    pub subscriptions: Vec<(TopicFilter, QoS)>,
    /// When its last connection ended.
    pub disconnected_at: SystemTime,
}

/// Why [`SessionStore::enqueue`] did not keep a message as asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued.
    Queued,
    /// Queued, and this older message was dropped to stay within the session's bounds.
    DroppedOldest(Message),
    /// Not queued: the session refuses it (e.g. QoS 0) or there is no such session.
    Refused(Message),
}

/// Offline persistent sessions by client id.
pub trait SessionStore: Send + Sync + 'static {
    /// Keeps the session of `client_id` whose connection just ended.
    fn save(&self, client_id: &str, session: StoredSession);

    /// Takes the session of `client_id` back (its client reconnected).
    fn take(&self, client_id: &str) -> Option<StoredSession>;

    /// Queues a message for the offline session `client_id` ([MQTT-3.1.2-5]).
    fn enqueue(&self, client_id: &str, message: Message) -> Enqueued;

    /// Forgets the session of `client_id`; returns whether there was one.
    fn remove(&self, client_id: &str) -> bool;

    /// The ids of sessions disconnected for longer than `max_age` at `now`.
    fn expired(&self, now: SystemTime, max_age: Duration) -> Vec<String>;

    /// Number of stored sessions.
    fn len(&self) -> usize;

    /// Whether no session is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Retained messages in memory, indexed by topic level: a wildcard SUBSCRIBE visits only the
/// branches its filter can match, not every retained topic.
#[derive(Debug, Default)]
pub struct MemoryRetainedStore {
    messages: RwLock<RetainedTree>,
}

impl MemoryRetainedStore {
    /// An empty store.
    pub fn new() -> MemoryRetainedStore {
        MemoryRetainedStore::default()
    }
}

impl RetainedStore for MemoryRetainedStore {
    fn retain(&self, mut message: Message) -> RetainOutcome {
        if message.payload.is_empty() {
            return match self.messages.write().remove(message.topic.as_str()) {
                Some(_) => RetainOutcome::Cleared,
                None => RetainOutcome::Unchanged,
            };
        }
        // A retained message lives long: copy the payload (and a long topic) out of the (much
        // larger) read buffer they share, so they do not pin that buffer.
        message.payload = Bytes::copy_from_slice(&message.payload);
        message.topic = crate::connection::detached_topic(message.topic);
        message.retain = true;
        self.messages.write().insert(message);
        RetainOutcome::Stored
    }

    fn matching(&self, filter: &TopicFilter, out: &mut Vec<Message>) {
        let messages = self.messages.read();
        if filter.has_wildcards() {
            messages.matching(filter.as_str(), out);
        } else {
            out.extend(messages.get(filter.as_str()).cloned());
        }
    }

    fn len(&self) -> usize {
        self.messages.read().len()
    }
}

/// Offline sessions in memory, sharded so that queueing for different sessions does not
/// contend on one lock.
#[derive(Debug)]
pub struct MemorySessionStore {
    shards: Box<[Mutex<HashMap<String, StoredSession>>]>,
}

const SHARDS: usize = 16;

impl MemorySessionStore {
    /// An empty store.
    pub fn new() -> MemorySessionStore {
        MemorySessionStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, client_id: &str) -> &Mutex<HashMap<String, StoredSession>> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(client_id);
        // In bounds: `shards` is never empty (`SHARDS` entries) and the index is reduced modulo
        // its length.
        #[allow(clippy::indexing_slicing)]
        &self.shards[(hash as usize) % self.shards.len()]
    }
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        MemorySessionStore::new()
    }
}

impl SessionStore for MemorySessionStore {
    fn save(&self, client_id: &str, session: StoredSession) {
        self.shard(client_id)
            .lock()
            .insert(client_id.to_owned(), session);
    }

    fn take(&self, client_id: &str) -> Option<StoredSession> {
        self.shard(client_id).lock().remove(client_id)
    }

    fn enqueue(&self, client_id: &str, message: Message) -> Enqueued {
        let mut shard = self.shard(client_id).lock();
        let Some(stored) = shard.get_mut(client_id) else {
            return Enqueued::Refused(message);
        };
        if message.qos == QoS::AtMostOnce {
            return Enqueued::Refused(message);
        }
        match stored.session.enqueue(message) {
            None => Enqueued::Queued,
            Some(dropped) => Enqueued::DroppedOldest(dropped),
        }
    }

    fn remove(&self, client_id: &str) -> bool {
        self.shard(client_id).lock().remove(client_id).is_some()
    }

    fn expired(&self, now: SystemTime, max_age: Duration) -> Vec<String> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            out.extend(
                shard
                    .iter()
                    .filter(|(_, s)| {
                        now.duration_since(s.disconnected_at)
                            .is_ok_and(|age| age >= max_age)
                    })
                    .map(|(id, _)| id.clone()),
            );
        }
        out
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_codec::TopicName;

    fn msg(topic: &str, payload: &'static [u8]) -> Message {
        Message {
            topic: TopicName::new(topic).unwrap(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            retain: true,
        }
    }

    #[test]
    fn retained_message_is_replaced_then_cleared_by_an_empty_payload() {
        let store = MemoryRetainedStore::new();
        assert_eq!(store.retain(msg("a/b", b"1")), RetainOutcome::Stored);
        assert_eq!(store.retain(msg("a/b", b"2")), RetainOutcome::Stored);
        let mut out = Vec::new();
        store.matching(&TopicFilter::new("a/+").unwrap(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].payload[..], b"2");
        assert_eq!(store.retain(msg("a/b", b"")), RetainOutcome::Cleared);
        assert_eq!(store.retain(msg("a/b", b"")), RetainOutcome::Unchanged);
        assert!(store.is_empty());
    }

    #[test]
    fn retained_matching_follows_the_dollar_rule() {
        let store = MemoryRetainedStore::new();
        store.retain(msg("$SYS/x", b"1"));
        store.retain(msg("x", b"2"));
        let mut out = Vec::new();
        store.matching(&TopicFilter::new("#").unwrap(), &mut out);
        assert_eq!(
            out.iter().map(|m| m.topic.as_str()).collect::<Vec<_>>(),
            vec!["x"]
        );
        out.clear();
        store.matching(&TopicFilter::new("$SYS/x").unwrap(), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn offline_session_expiry_reports_old_sessions_only() {
        let store = MemorySessionStore::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let stored = |at| StoredSession {
            session: Session::default(),
            subscriptions: vec![],
            disconnected_at: at,
        };
        store.save("old", stored(t0));
        store.save("new", stored(t0 + Duration::from_secs(50)));
        assert_eq!(
            store.expired(t0 + Duration::from_secs(60), Duration::from_secs(30)),
            vec!["old".to_owned()]
        );
        assert!(store.remove("old"));
        assert_eq!(store.len(), 1);
        assert!(store.take("new").is_some());
        assert!(store.is_empty());
    }
}
