//! Per-client-id session entries: the routing handle [`Subscriber`] that the subscription trie
//! points at, its bounded mailbox, and the registry of client ids used for takeover.
//!
//! A `Subscriber` outlives connections: while a connection drives it, messages routed to it go
//! into its mailbox (a bounded `VecDeque` behind a short `parking_lot::Mutex`, plus a [`MailSignal`]
//! that wakes the connection task); while it is offline with clean session 0, they go into the
//! [`SessionStore`](crate::store::SessionStore). Lock order, to stay deadlock-free: a
//! subscriber's `state` may be held while taking the trie's lock, the registry's lock or the
//! store's; never the other way round. No lock here is held across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use mqtt_codec::session::Message;
use mqtt_codec::{QoS, TopicFilter};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::hooks::ClientInfo;

/// The routing handle of one client id.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) client_id: Arc<str>,
    pub(crate) state: Mutex<SubscriberState>,
    /// Wakes the connection task when its mailbox goes from empty to non-empty.
    pub(crate) wake: MailSignal,
    /// Signalled when the driving connection has let go (takeover waits for it).
    pub(crate) released: Notify,
    /// Messages dropped for this client because a bound was hit.
    pub(crate) dropped: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct SubscriberState {
    /// The connection driving this session, if any.
    pub(crate) online: Option<Online>,
    /// Messages routed to the online connection, not yet taken by its task.
    pub(crate) mailbox: VecDeque<Message>,
    pub(crate) subscriptions: HashMap<TopicFilter, QoS>,
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
    /// Cancelled to make the connection close (takeover).
    pub(crate) kick: CancellationToken,
}

/// What happened to a message handed to [`Subscriber::deliver`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// In the mailbox of the online connection.
    Mailbox,
    /// The mailbox was full: this message (the new QoS 0 one, or the oldest) was dropped.
    Dropped(Message),
}

impl Subscriber {
    pub(crate) fn new(info: Arc<ClientInfo>) -> Subscriber {
        Subscriber {
            client_id: info.client_id.clone(),
            state: Mutex::new(SubscriberState {
                online: None,
                mailbox: VecDeque::new(),
                subscriptions: HashMap::new(),
                persistent: false,
                info,
                removed: false,
            }),
            wake: MailSignal::default(),
            released: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Hands `message` to the online connection's mailbox, bounded by `max_queued`: when full,
    /// a QoS 0 message is dropped, a QoS 1/2 one replaces the oldest queued message.
    pub(crate) fn deliver_online(
        state: &mut SubscriberState,
        message: Message,
        max_queued: usize,
    ) -> Delivery {
        if state.mailbox.len() >= max_queued {
            if message.qos == QoS::AtMostOnce {
                return Delivery::Dropped(message);
            }
            let oldest = state.mailbox.pop_front();
            state.mailbox.push_back(message);
            return match oldest {
                Some(oldest) => Delivery::Dropped(oldest),
                None => Delivery::Mailbox,
            };
        }
        state.mailbox.push_back(message);
        Delivery::Mailbox
    }

    /// Counts a dropped message; returns the running count (for rate-limited logs).
    pub(crate) fn count_drop(&self) -> u64 {
        self.dropped.fetch_add(1, Ordering::Relaxed) + 1
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

    /// Ready (and reset) once signalled; otherwise registers `cx`'s waker.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Register first, then check: a `notify` in between is not lost.
        self.waker.register(cx.waker());
        if self.pending.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
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
