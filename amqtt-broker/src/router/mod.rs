//! The router: the subscription trie, retained messages and delivery to subscribers.
//!
//! A PUBLISH is routed on the publisher's own task: the trie is matched under a read lock held
//! only for the match, the matches are merged per subscriber (one copy at the highest granted
//! QoS for overlapping subscriptions), then each subscriber gets the message in its bounded
//! mailbox (QoS = min(published, granted), retain 0) or, when it is offline with clean session
//! 0, in its stored session. The payload `Bytes` is shared by every copy. Scratch space is
//! per worker thread, so routing allocates nothing per message once warmed up and idle
//! connections hold none of it.
//!
//! Routing reports backpressure ([`Router::route_with`]): the subscribers whose mailbox is at
//! its high-water mark, on which the publisher's connection then waits before it reads more
//! (see [`crate::sessions`]).

pub(crate) mod trie;

use std::cell::RefCell;
use std::sync::Arc;

use bytes::BytesMut;
use mqtt_codec::session::{EncodedPublish, Message};
use mqtt_codec::{QoS, TopicFilter};
use parking_lot::RwLock;

use crate::events::{BrokerEvent, Events};
use crate::hooks::{AccessControl, Action, ClientInfo};
use crate::plugins::BrokerStats;
use crate::sessions::{Delivery, Mail, MailboxLimits, SubRef, Subscriber, SubscriberState};
use crate::store::{Enqueued, RetainOutcome, RetainedStore, SessionStore};
use trie::SubscriptionTrie;

/// Routes messages; shared by every connection task.
pub(crate) struct Router {
    trie: RwLock<SubscriptionTrie<SubRef>>,
    pub(crate) retained: Arc<dyn RetainedStore>,
    pub(crate) sessions: Arc<dyn SessionStore>,
    access: Arc<dyn AccessControl>,
    filters_topics: bool,
    events: Events,
    /// The bounds and backpressure marks of every mailbox.
    pub(crate) mailbox: MailboxLimits,
    /// Where drops are counted for `$SYS/broker/messages/publish/dropped`.
    stats: Arc<BrokerStats>,
}

#[derive(Default)]
struct Scratch {
    stack: Vec<(u32, u32)>,
    matches: Vec<(SubRef, QoS)>,
    /// Where fan-out PUBLISH packets are encoded; each is split off as shared bytes.
    arena: BytesMut,
}

/// The arena takes this much at a time: one allocation per ~50 small packets, and a packet that
/// outlives its neighbours (a slow subscriber's) pins at most this much with it.
const ARENA_CHUNK: usize = 4096;

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Scratch vectors above this capacity are released after use, so one huge fan-out does not
/// pin memory on a worker thread forever.
const SCRATCH_KEEP: usize = 4096;

impl Router {
    pub(crate) fn new(
        retained: Arc<dyn RetainedStore>,
        sessions: Arc<dyn SessionStore>,
        access: Arc<dyn AccessControl>,
        events: Events,
        mailbox: MailboxLimits,
        stats: Arc<BrokerStats>,
    ) -> Router {
        let filters_topics = access.filters_topics();
        Router {
            trie: RwLock::new(SubscriptionTrie::new()),
            retained,
            sessions,
            access,
            filters_topics,
            events,
            mailbox,
            stats,
        }
    }

    /// Routes a message published by `publisher` (`None`: by the broker itself): stores or
    /// clears it as retained when its retain flag is set, then delivers it to every matching
    /// subscriber with retain 0 ([MQTT-3.3.1-9]). Returns the number of subscribers reached.
    pub(crate) fn route(&self, publisher: Option<&ClientInfo>, message: &Message) -> usize {
        self.route_with(publisher, message, &mut |_| {})
    }

    /// [`Router::route`], calling `pressured` with every subscriber whose mailbox is at its
    /// high-water mark (the publisher should wait for them before it reads more).
    pub(crate) fn route_with(
        &self,
        publisher: Option<&ClientInfo>,
        message: &Message,
        pressured: &mut dyn FnMut(&Arc<Subscriber>),
    ) -> usize {
        if message.retain {
            match self.retained.retain(message.clone()) {
                RetainOutcome::Stored => {
                    self.events.emit(|| BrokerEvent::RetainedStored { message })
                }
                RetainOutcome::Cleared => self.events.emit(|| BrokerEvent::RetainedCleared {
                    topic: &message.topic,
                }),
                RetainOutcome::Unchanged => {}
            }
        }
        self.events.emit(|| BrokerEvent::MessageBroadcast {
            client: publisher,
            message,
        });
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.fan_out(message, &mut scratch, pressured),
            // Re-entered (an event hook routing from inside a delivery): use fresh scratch.
            Err(_) => self.fan_out(message, &mut Scratch::default(), pressured),
        })
    }

    fn fan_out(
        &self,
        message: &Message,
        scratch: &mut Scratch,
        pressured: &mut dyn FnMut(&Arc<Subscriber>),
    ) -> usize {
        let Scratch {
            stack,
            matches,
            arena,
        } = scratch;
        matches.clear();
        let merge = self
            .trie
            .read()
            .matches(message.topic.as_str(), stack, matches);
        if merge {
            // One copy per subscriber, at the highest QoS it was granted among its matching
            // filters ([MQTT-3.3.5-1]).
            matches.sort_unstable_by_key(|(s, _)| s.addr());
            matches.dedup_by(|later, kept| {
                if later.0 == kept.0 {
                    kept.1 = kept.1.max(later.1);
                    true
                } else {
                    false
                }
            });
        }
        let reached = matches.len();
        // Encoded once, on the first QoS 0 delivery of a fan-out, and shared by every
        // subscriber that gets it at QoS 0 (retain 0, [MQTT-3.3.1-9], so the bytes are the same).
        let mut encoded: Option<EncodedPublish> = None;
        for (sub, granted) in matches.drain(..) {
            let qos = message.qos.min(granted);
            if qos == QoS::AtMostOnce && reached > 1 && encoded.is_none() {
                encoded = EncodedPublish::qos0(
                    &message.topic,
                    &message.payload,
                    false,
                    arena,
                    ARENA_CHUNK,
                );
            }
            let mail = match &encoded {
                Some(packet) if qos == QoS::AtMostOnce => Mail::Encoded(packet.clone()),
                _ => Mail::Message(Message {
                    topic: message.topic.clone(),
                    payload: message.payload.clone(),
                    qos,
                    retain: false,
                }),
            };
            if self.deliver(&sub.0, mail, message.topic.as_str()) {
                pressured(&sub.0);
            }
        }
        if matches.capacity() > SCRATCH_KEEP {
            *matches = Vec::new();
        }
        if stack.capacity() > SCRATCH_KEEP {
            *stack = Vec::new();
        }
        reached
    }

    /// Hands one message (to `topic`) to one subscriber: its mailbox when online, its stored
    /// session when offline and persistent (QoS 1/2 only), otherwise nowhere. Returns whether its
    /// mailbox is at the high-water mark (the publisher should wait).
    pub(crate) fn deliver(&self, sub: &Arc<Subscriber>, message: Mail, topic: &str) -> bool {
        let mut state = sub.state.lock();
        if state.removed {
            return false;
        }
        if self.filters_topics && !self.access.check_topic(&state.info, topic, Action::Receive) {
            return false;
        }
        if state.online.is_some() {
            let was_empty = state.mailbox.is_empty();
            let outcome = Subscriber::deliver_online(&mut state, message, &self.mailbox);
            drop(state);
            match outcome {
                Delivery::Mailbox { pressure } => {
                    // Only the first message of a batch needs a wake-up: the task keeps
                    // taking from the mailbox until it is empty.
                    if was_empty {
                        sub.wake.notify();
                    }
                    pressure
                }
                Delivery::Dropped {
                    last,
                    count,
                    pressure,
                } => {
                    for _ in 0..count {
                        self.log_drop(sub, &last, "its mailbox is full");
                    }
                    pressure
                }
            }
        } else if let (true, Mail::Message(message)) = (state.persistent, message) {
            if message.qos == QoS::AtMostOnce {
                return false;
            }
            self.events.emit(|| BrokerEvent::OfflineQueued {
                client_id: &sub.client_id,
                message: &message,
            });
            let outcome = self.sessions.enqueue(&sub.client_id, message);
            drop(state);
            if let Enqueued::DroppedOldest(dropped) = outcome {
                self.log_drop(sub, &Mail::Message(dropped), "its offline queue is full");
            }
            false
        } else {
            false
        }
    }

    fn log_drop(&self, sub: &Subscriber, dropped: &Mail, why: &str) {
        self.stats.publish_dropped();
        let n = sub.count_drop();
        if n == 1 || n.is_multiple_of(1000) {
            tracing::warn!(
                client_id = %sub.client_id,
                topic = %dropped.topic(),
                qos = dropped.qos().as_u8(),
                dropped_total = n,
                "dropped a message for a slow or offline client: {why}"
            );
        } else {
            tracing::debug!(client_id = %sub.client_id, topic = %dropped.topic(), dropped_total = n, "dropped a message: {why}");
        }
    }

    /// Adds (or replaces, [MQTT-3.8.4-3]) a subscription of `sub`, whose state is locked.
    pub(crate) fn subscribe(
        &self,
        sub: &Arc<Subscriber>,
        state: &mut SubscriberState,
        filter: TopicFilter,
        qos: QoS,
    ) {
        self.trie
            .write()
            .insert(filter.as_str(), SubRef(sub.clone()), qos);
        state.subscriptions.insert(filter, qos);
    }

    /// Removes a subscription of `sub`; returns whether it existed.
    pub(crate) fn unsubscribe(
        &self,
        sub: &Arc<Subscriber>,
        state: &mut SubscriberState,
        filter: &TopicFilter,
    ) -> bool {
        if state.subscriptions.remove(filter).is_none() {
            return false;
        }
        self.trie
            .write()
            .remove(filter.as_str(), &SubRef(sub.clone()));
        true
    }

    /// Removes every subscription of `sub`.
    pub(crate) fn unsubscribe_all(&self, sub: &Arc<Subscriber>, state: &mut SubscriberState) {
        if state.subscriptions.is_empty() {
            return;
        }
        let key = SubRef(sub.clone());
        let mut trie = self.trie.write();
        for (filter, _) in state.subscriptions.drain() {
            trie.remove(filter.as_str(), &key);
        }
    }

    /// Number of (filter, client) subscriptions.
    pub(crate) fn subscription_count(&self) -> usize {
        self.trie.read().len()
    }
}
