//! Per-client-id session entries: the routing handle [`Subscriber`] that the subscription trie
//! points at, its bounded mailbox, and the registry of client ids used for takeover.
//!
//! A `Subscriber` outlives connections: while a connection drives it, messages routed to it go
//! into its mailbox (a bounded `VecDeque` behind a short `parking_lot::Mutex`, plus a [`MailSignal`]
//! that wakes the connection task); while it is offline with clean session 0, they go into the
//! [`SessionStore`](crate::store::SessionStore). Lock order, to stay deadlock-free: a
//! subscriber's `state` may be held while taking the trie's lock, the registry's lock or the
//! store's; never the other way round. No lock here is held across an `.await`.
//!
//! # Backpressure
//!
//! The mailbox is the whole backlog of an online subscriber: its connection takes from it only
//! what it can send at once (the free slots of the in-flight window for QoS 1/2, a bounded
//! number of bytes for QoS 0), so the session's own queue stays empty while it is online. The
//! mailbox has two marks ([`MailboxLimits`]):
//!
//! * at the **high-water mark** (a quarter of `max_queued_messages` / `max_queued_bytes`),
//!   [`Subscriber::deliver_online`] reports pressure, and the publisher whose message got there
//!   stops reading its socket (so it acknowledges nothing more and TCP slows the client down)
//!   until the mailbox is back under the **low-water mark** (half the high one); the
//!   subscriber's task wakes the publishers waiting on it ([`Subscriber::poll_room`]) when its
//!   taking brings the mailbox there;
//! * publishers already read (and acknowledged) what they had in flight when they met the mark,
//!   so a live subscriber's mailbox takes QoS 1/2 messages up to **twice** the bounds
//!   (`max_queued_messages` / `max_queued_bytes`): the slack for those in-flight batches
//!   (8 publishers with a window of 16 need 128 messages of it). QoS 0 messages beyond the
//!   bounds are dropped and counted;
//! * a subscriber that takes nothing at all for [`STALL_TIMEOUT`] while a publisher waits on
//!   it (a client that never reads its socket or never acknowledges) is marked **stalled**:
//!   nobody waits on it any more, and, as without backpressure, its mailbox is bounded by
//!   `max_queued_messages` / `max_queued_bytes` with the new QoS 0 message or the oldest QoS 1/2
//!   one dropped and counted. It stops being stalled once it takes its mailbox under the low
//!   mark again.
//!
//! So while subscribers keep up, even slowly, QoS 1/2 publishers are slowed to their pace and
//! nothing is lost; a dead subscriber costs its publishers at most one [`STALL_TIMEOUT`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use mqtt_codec::session::Message;
use mqtt_codec::{QoS, TopicFilter};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::hooks::ClientInfo;

/// The routing handle of one client id.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) client_id: Arc<str>,
    pub(crate) state: Mutex<SubscriberState>,
    /// Wakes the connection task when its mailbox goes from empty to non-empty, or when it is
    /// taken over ([`Subscriber::kick`]).
    pub(crate) wake: MailSignal,
    /// The id of the connection told to close because a new one takes its session over
    /// ([MQTT-3.1.4-2]); 0: none. Connection ids start at 1.
    kicked: AtomicU64,
    /// Signalled when the driving connection has let go (takeover waits for it).
    pub(crate) released: Notify,
    /// Messages dropped for this client because a bound was hit.
    pub(crate) dropped: AtomicU64,
    /// Messages its connections took from the mailbox so far: its progress, watched by the
    /// publishers waiting on it.
    pub(crate) taken: AtomicU64,
}

/// How long a subscriber may take nothing from its mailbox while publishers wait on it before
/// it is marked stalled and they stop waiting (see the module docs).
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_millis(1000);

/// The bounds of a mailbox and its backpressure marks (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MailboxLimits {
    /// At most this many messages (`max_queued_messages`).
    pub(crate) max_messages: usize,
    /// At most this many payload bytes (`max_queued_bytes`).
    pub(crate) max_bytes: usize,
    /// Publishers wait from this many messages on.
    pub(crate) high_messages: usize,
    /// … or from this many payload bytes on.
    pub(crate) high_bytes: usize,
    /// They resume once the mailbox holds at most this many messages …
    pub(crate) low_messages: usize,
    /// … and at most this many payload bytes.
    pub(crate) low_bytes: usize,
}

impl MailboxLimits {
    /// The marks for a mailbox bounded by `max_messages` and `max_bytes`: high at a quarter of
    /// the bounds, low at half of high.
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> MailboxLimits {
        let max_messages = max_messages.max(1);
        let max_bytes = max_bytes.max(1);
        let high_messages = (max_messages / 4).max(1);
        let high_bytes = (max_bytes / 4).max(1);
        MailboxLimits {
            max_messages,
            max_bytes,
            high_messages,
            high_bytes,
            low_messages: high_messages / 2,
            low_bytes: high_bytes / 2,
        }
    }
}

#[derive(Debug)]
pub(crate) struct SubscriberState {
    /// The connection driving this session, if any.
    pub(crate) online: Option<Online>,
    /// Messages routed to the online connection, not yet taken by its task.
    pub(crate) mailbox: VecDeque<Message>,
    /// Sum of the payload lengths in `mailbox`.
    pub(crate) mailbox_bytes: usize,
    /// Took nothing for [`STALL_TIMEOUT`] while publishers waited: nobody waits on it.
    pub(crate) stalled: bool,
    /// Publishers waiting for the mailbox to go under the low-water mark.
    pub(crate) waiters: Vec<Waker>,
    pub(crate) subscriptions: Subscriptions,
    /// Clean session 0: kept (and queued for) while offline.
    pub(crate) persistent: bool,
    /// The client as last connected (for receive checks).
    pub(crate) info: Arc<ClientInfo>,
    /// Removed from the registry: nothing may be attached or queued any more.
    pub(crate) removed: bool,
}

/// The connection currently driving a session.
#[derive(Debug)]
pub(crate) struct Online {
    pub(crate) conn_id: u64,
}

/// What happened to a message handed to [`Subscriber::deliver_online`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// In the mailbox of the online connection; `pressure`: the mailbox is at its high-water
    /// mark and the subscriber is not stalled, so the publisher should wait.
    Mailbox { pressure: bool },
    /// The mailbox was full: `count` messages were dropped, the new QoS 0 one or the oldest
    /// ones; `last` is the last of them. `pressure` as for `Mailbox`.
    Dropped {
        last: Message,
        count: usize,
        pressure: bool,
    },
}

impl Subscriber {
    pub(crate) fn new(info: Arc<ClientInfo>) -> Subscriber {
        Subscriber {
            client_id: info.client_id.clone(),
            state: Mutex::new(SubscriberState {
                online: None,
                mailbox: VecDeque::new(),
                mailbox_bytes: 0,
                stalled: false,
                waiters: Vec::new(),
                subscriptions: Subscriptions::default(),
                persistent: false,
                info,
                removed: false,
            }),
            wake: MailSignal::default(),
            kicked: AtomicU64::new(0),
            released: Notify::new(),
            dropped: AtomicU64::new(0),
            taken: AtomicU64::new(0),
        }
    }

    /// Hands `message` to the online connection's mailbox, bounded by `limits`: when full, a
    /// QoS 0 message is dropped, a QoS 1/2 one replaces the oldest queued messages (as many as
    /// its size needs; one larger than the whole byte bound is dropped itself).
    pub(crate) fn deliver_online(
        state: &mut SubscriberState,
        message: Message,
        limits: &MailboxLimits,
    ) -> Delivery {
        let size = message.payload.len();
        // A live subscriber takes QoS 1/2 up to twice the bounds (see the module docs).
        let slack = if message.qos == QoS::AtMostOnce || state.stalled {
            1
        } else {
            2
        };
        let max_messages = limits.max_messages.saturating_mul(slack);
        let max_bytes = limits.max_bytes.saturating_mul(slack);
        let fits = |state: &SubscriberState| {
            state.mailbox.len() < max_messages
                && state.mailbox_bytes.saturating_add(size) <= max_bytes
        };
        if !fits(state) {
            if message.qos == QoS::AtMostOnce || size > max_bytes {
                return Delivery::Dropped {
                    last: message,
                    count: 1,
                    pressure: !state.stalled,
                };
            }
            let mut dropped = None;
            let mut count = 0;
            while !fits(state) {
                let Some(oldest) = state.mailbox.pop_front() else {
                    break;
                };
                state.mailbox_bytes -= oldest.payload.len();
                dropped = Some(oldest);
                count += 1;
            }
            state.mailbox_bytes += size;
            state.mailbox.push_back(message);
            let pressure = !state.stalled;
            return match dropped {
                Some(last) => Delivery::Dropped {
                    last,
                    count,
                    pressure,
                },
                None => Delivery::Mailbox { pressure },
            };
        }
        state.mailbox_bytes += size;
        state.mailbox.push_back(message);
        Delivery::Mailbox {
            pressure: !state.stalled
                && (state.mailbox.len() >= limits.high_messages
                    || state.mailbox_bytes >= limits.high_bytes),
        }
    }

    /// Takes from the front of the mailbox into `batch` what the connection can send at once:
    /// QoS 1/2 messages while `window` (free in-flight slots) lasts, any message while fewer than
    /// `budget` bytes were taken. Wakes the waiting publishers once the mailbox is under the
    /// low-water mark. Returns whether messages are left.
    pub(crate) fn take(
        &self,
        limits: &MailboxLimits,
        mut window: usize,
        budget: usize,
        batch: &mut Vec<Message>,
    ) -> bool {
        let mut bytes = 0usize;
        let before = batch.len();
        let mut state = self.state.lock();
        while let Some(front) = state.mailbox.front() {
            if bytes >= budget || (front.qos != QoS::AtMostOnce && window == 0) {
                break;
            }
            let Some(message) = state.mailbox.pop_front() else {
                break;
            };
            if message.qos != QoS::AtMostOnce {
                window -= 1;
            }
            // Roughly what it encodes to: fixed header, topic length, packet id.
            bytes += message.payload.len() + message.topic.as_str().len() + 8;
            state.mailbox_bytes -= message.payload.len();
            batch.push(message);
        }
        let more = !state.mailbox.is_empty();
        if !more && state.mailbox.capacity() > MAILBOX_KEEP {
            // One burst does not pin a large mailbox allocation for good.
            state.mailbox = VecDeque::new();
        }
        let waiters = if state.below_low(limits) {
            state.stalled = false;
            std::mem::take(&mut state.waiters)
        } else {
            Vec::new()
        };
        drop(state);
        self.taken
            .fetch_add((batch.len() - before) as u64, Ordering::Relaxed);
        for waker in waiters {
            waker.wake();
        }
        more
    }

    /// For a publisher waiting on this subscriber: ready once the mailbox is under the
    /// low-water mark, or nobody needs to wait (stalled, offline, removed); otherwise registers
    /// `cx`'s waker to be woken when it is.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>, limits: &MailboxLimits) -> Poll<()> {
        let mut state = self.state.lock();
        if state.stalled || state.online.is_none() || state.removed || state.below_low(limits) {
            return Poll::Ready(());
        }
        if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            state.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Marks the subscriber stalled (it took nothing for [`STALL_TIMEOUT`]) and releases every
    /// publisher waiting on it.
    pub(crate) fn mark_stalled(&self) {
        let waiters = {
            let mut state = self.state.lock();
            state.stalled = true;
            std::mem::take(&mut state.waiters)
        };
        for waker in waiters {
            waker.wake();
        }
    }

    /// Releases every publisher waiting on this subscriber (its connection is going away).
    pub(crate) fn release_waiters(state: &mut SubscriberState) -> Vec<Waker> {
        std::mem::take(&mut state.waiters)
    }

    /// Tells connection `conn_id`, driving this session, to close (a new connection takes the
    /// session over, [MQTT-3.1.4-2]): a flag and a wake-up, so a connection task stores
    /// nothing for it.
    pub(crate) fn kick(&self, conn_id: u64) {
        self.kicked.store(conn_id, Ordering::Release);
        self.wake.waker.wake();
    }

    /// Whether connection `conn_id` was told to close ([`Subscriber::kick`]).
    pub(crate) fn is_kicked(&self, conn_id: u64) -> bool {
        self.kicked.load(Ordering::Acquire) == conn_id
    }

    /// Counts a dropped message; returns the running count (for rate-limited logs).
    pub(crate) fn count_drop(&self) -> u64 {
        self.dropped.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// An empty mailbox keeps at most this much capacity.
const MAILBOX_KEEP: usize = 1024;

impl SubscriberState {
    /// Whether the mailbox is under both low-water marks.
    fn below_low(&self, limits: &MailboxLimits) -> bool {
        self.mailbox.len() <= limits.low_messages && self.mailbox_bytes <= limits.low_bytes
    }

    /// Empties the mailbox, returning what it held.
    pub(crate) fn take_mailbox(&mut self) -> VecDeque<Message> {
        self.mailbox_bytes = 0;
        std::mem::take(&mut self.mailbox)
    }
}

/// The subscriptions of one session by filter: a map allocated only once there is one, so a
/// session without subscriptions (many idle clients only publish, or only ping) is 40 bytes
/// smaller than with an empty `HashMap`.
// Boxed on purpose: the box is 8 bytes in every session entry, an empty `HashMap` 48.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
pub(crate) struct Subscriptions(Option<Box<HashMap<TopicFilter, QoS>>>);

impl Subscriptions {
    /// Adds or replaces the subscription to `filter`; returns the QoS it replaced.
    pub(crate) fn insert(&mut self, filter: TopicFilter, qos: QoS) -> Option<QoS> {
        self.0.get_or_insert_default().insert(filter, qos)
    }

    /// Removes the subscription to `filter`; returns its QoS if there was one.
    pub(crate) fn remove(&mut self, filter: &TopicFilter) -> Option<QoS> {
        let map = self.0.as_mut()?;
        let removed = map.remove(filter);
        if map.is_empty() {
            self.0 = None;
        }
        removed
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|map| map.is_empty())
    }

    /// Removes and returns every subscription.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (TopicFilter, QoS)> {
        self.0.take().into_iter().flat_map(|map| map.into_iter())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&TopicFilter, &QoS)> {
        self.0.iter().flat_map(|map| map.iter())
    }
}

impl<'a> IntoIterator for &'a Subscriptions {
    type Item = (&'a TopicFilter, &'a QoS);
    type IntoIter = std::iter::FlatMap<
        std::option::Iter<'a, Box<HashMap<TopicFilter, QoS>>>,
        std::collections::hash_map::Iter<'a, TopicFilter, QoS>,
        fn(
            &'a Box<HashMap<TopicFilter, QoS>>,
        ) -> std::collections::hash_map::Iter<'a, TopicFilter, QoS>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().flat_map(|map| map.iter())
    }
}

/// "The mailbox has messages": a flag and a waker, so a waiting connection task stores no
/// future for it (a `Notify` waiter would add to every idle connection's task).
#[derive(Debug, Default)]
pub(crate) struct MailSignal {
    pending: AtomicBool,
    waker: AtomicWaker,
}

impl MailSignal {
    /// Signals the connection task (a no-op until it polls, then it is woken at once).
    pub(crate) fn notify(&self) {
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Registers the connection task's waker: call it before [`MailSignal::take`] (and before
    /// checking [`Subscriber::is_kicked`]), so a signal in between is not lost.
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }

    /// Whether the mailbox was signalled since the last call (and resets the signal).
    pub(crate) fn take(&self) -> bool {
        self.pending.load(Ordering::Acquire) && self.pending.swap(false, Ordering::AcqRel)
    }

    /// Forgets the registered waker (the connection is gone; a stored session must not keep
    /// its task's memory alive).
    pub(crate) fn clear(&self) {
        drop(self.waker.take());
    }
}

/// A handle compared by identity, as the subscription trie's subscriber type.
#[derive(Clone, Debug)]
pub(crate) struct SubRef(pub(crate) Arc<Subscriber>);

impl PartialEq for SubRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl SubRef {
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

/// Every client id with a session (connected, or offline and persistent).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    entries: Mutex<HashMap<Arc<str>, Arc<Subscriber>>>,
}

impl Registry {
    /// The entry for `info.client_id`, created if absent.
    pub(crate) fn get_or_create(&self, info: &Arc<ClientInfo>) -> Arc<Subscriber> {
        self.entries
            .lock()
            .entry(info.client_id.clone())
            .or_insert_with(|| Arc::new(Subscriber::new(info.clone())))
            .clone()
    }

    pub(crate) fn get(&self, client_id: &str) -> Option<Arc<Subscriber>> {
        self.entries.lock().get(client_id).cloned()
    }

    /// Removes `sub` if it is still the registered entry for its id.
    pub(crate) fn remove(&self, sub: &Arc<Subscriber>) {
        let mut entries = self.entries.lock();
        if entries
            .get(&sub.client_id)
            .is_some_and(|e| Arc::ptr_eq(e, sub))
        {
            entries.remove(&sub.client_id);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Calls `f` on every entry, under the registry lock (keep `f` short).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<Subscriber>)) {
        for sub in self.entries.lock().values() {
            f(sub);
        }
    }
}

#[cfg(test)]
mod tests {
    use mqtt_codec::{QoS, TopicFilter};

    use super::Subscriptions;

    fn filter(f: &str) -> TopicFilter {
        TopicFilter::new(f).unwrap()
    }

    #[test]
    fn subscriptions_allocate_only_while_there_are_some() {
        let mut subs = Subscriptions::default();
        assert!(subs.is_empty() && subs.0.is_none());
        assert_eq!(subs.insert(filter("a/#"), QoS::AtMostOnce), None);
        assert_eq!(
            subs.insert(filter("a/#"), QoS::AtLeastOnce),
            Some(QoS::AtMostOnce)
        );
        assert_eq!(subs.insert(filter("b"), QoS::ExactlyOnce), None);
        assert_eq!((&subs).into_iter().count(), 2);
        assert_eq!(subs.remove(&filter("a/#")), Some(QoS::AtLeastOnce));
        assert_eq!(subs.remove(&filter("a/#")), None);
        assert_eq!(subs.remove(&filter("b")), Some(QoS::ExactlyOnce));
        assert!(subs.is_empty() && subs.0.is_none());
        subs.insert(filter("c"), QoS::AtMostOnce);
        assert_eq!(
            subs.drain().collect::<Vec<_>>(),
            vec![(filter("c"), QoS::AtMostOnce)]
        );
        assert!(subs.0.is_none());
    }
}
