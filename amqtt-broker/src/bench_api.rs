//! The broker's hot paths without sockets, for the criterion benchmarks in `benches/`. Not a
//! stable API (hidden from the docs): it exists so the benchmarks measure the crate's own
//! private code, not a copy of it.
//!
//! * [`Trie`]: the subscription trie that every PUBLISH is matched against.
//! * [`FanOut`]: one PUBLISH routed to many online subscribers, then, per subscriber, taken
//!   from its mailbox into its protocol state machine and encoded into its output buffer, as
//!   a connection task does. The payload is shared by every copy (copied into the output only
//!   below [`mqtt_codec::outbuf::SHARE_PAYLOAD_AT`] bytes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use mqtt_codec::server::{ServerConfig, ServerConnection, ServerEvent};
use mqtt_codec::session::{Message, Session, SessionLimits};
use mqtt_codec::{OutBuf, QoS, TopicFilter};

use crate::events::Events;
use crate::hooks::{AllowAll, ClientInfo};
use crate::plugins::BrokerStats;
use crate::router::trie::SubscriptionTrie;
use crate::router::Router;
use crate::sessions::{MailboxLimits, Online, Subscriber};
use crate::store::{MemoryRetainedStore, MemorySessionStore};

/// The subscription trie with `u32` subscriber ids and its matching scratch space.
pub struct Trie {
    trie: SubscriptionTrie<u32>,
    stack: Vec<(u32, u32)>,
    out: Vec<(u32, QoS)>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie::new()
    }
}

impl Trie {
    /// An empty trie.
    pub fn new() -> Trie {
        Trie {
            trie: SubscriptionTrie::new(),
            stack: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Subscribes `subscriber` to the valid topic filter `filter` at QoS 0.
    pub fn insert(&mut self, filter: &str, subscriber: u32) {
        self.trie.insert(filter, subscriber, QoS::AtMostOnce);
    }

    /// Number of (filter, subscriber) pairs.
    pub fn len(&self) -> usize {
        self.trie.len()
    }

    /// Whether the trie is empty.
    pub fn is_empty(&self) -> bool {
        self.trie.len() == 0
    }

    /// Matches the topic name `topic`; returns the number of matching subscriptions.
    pub fn match_count(&mut self, topic: &str) -> usize {
        self.out.clear();
        self.trie.matches(topic, &mut self.stack, &mut self.out);
        self.out.len()
    }
}

/// A router with online subscribers, each with an accepted protocol state machine.
pub struct FanOut {
    router: Router,
    subscribers: Vec<Online1>,
    now: Instant,
    batch: Vec<Message>,
}

struct Online1 {
    sub: Arc<Subscriber>,
    machine: ServerConnection,
    out: OutBuf,
}

impl FanOut {
    /// `subscribers` online clients, each subscribed to `filter` at QoS 0.
    ///
    /// # Panics
    /// If `filter` is not a valid topic filter (this is benchmark set-up).
    pub fn new(subscribers: usize, filter: &str) -> FanOut {
        let limits = SessionLimits::default();
        let router = Router::new(
            Arc::new(MemoryRetainedStore::new()),
            Arc::new(MemorySessionStore::new()),
            Arc::new(AllowAll),
            Events::new(None),
            MailboxLimits::new(limits.max_queued_messages, limits.max_queued_bytes),
            Arc::new(BrokerStats::new()),
        );
        let filter = TopicFilter::new(filter).expect("a valid topic filter");
        let now = Instant::now();
        let subscribers = (0..subscribers)
            .map(|i| {
                let client_id: Arc<str> = format!("bench-{i}").into();
                let info = Arc::new(ClientInfo {
                    client_id: client_id.clone(),
                    username: None,
                    remote_addr: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
                    listener: "default".into(),
                    clean_session: true,
                    keep_alive: 60,
                });
                let sub = Arc::new(Subscriber::new(info));
                {
                    let mut state = sub.state.lock();
                    state.online = Some(Online {
                        conn_id: i as u64 + 1,
                    });
                    router.subscribe(&sub, &mut state, filter.clone(), QoS::AtMostOnce);
                }
                let machine = accepted(&client_id, now, Session::new(limits));
                Online1 {
                    sub,
                    machine,
                    out: OutBuf::new(),
                }
            })
            .collect();
        FanOut {
            router,
            subscribers,
            now,
            batch: Vec::new(),
        }
    }

    /// Routes `message` (QoS 0, so that no acknowledgement is awaited) to every subscriber and
    /// encodes each copy into that subscriber's output, then empties the outputs (as a socket
    /// write would). Returns the number of bytes encoded.
    pub fn publish(&mut self, message: &Message) -> usize {
        self.router.route(None, message);
        let mut bytes = 0;
        for s in &mut self.subscribers {
            // As the connection task takes its mailbox (within its in-flight window and write
            // budget; a QoS 0 message needs no window).
            let window = s.machine.publish_room();
            s.sub
                .take(&self.router.mailbox, window, usize::MAX, &mut self.batch);
            for m in self.batch.drain(..) {
                // A QoS 0 message is never queued, so nothing is dropped here.
                let _ = s.machine.publish(self.now, m);
            }
            while s.machine.poll_transmit(&mut s.out) {}
            bytes += s.out.remaining();
            let n = s.out.remaining();
            s.out.advance(n);
            s.out.shrink_if_empty();
        }
        bytes
    }
}

/// A state machine that has received and accepted a CONNECT from `client_id`.
fn accepted(client_id: &str, now: Instant, session: Session) -> ServerConnection {
    let mut machine = ServerConnection::new(ServerConfig::default(), now);
    let id = client_id.as_bytes();
    let mut connect = BytesMut::new();
    connect.extend_from_slice(&[0x10, (12 + id.len()) as u8, 0, 4]);
    connect.extend_from_slice(b"MQTT");
    connect.extend_from_slice(&[4, 0x02, 0, 60, 0, id.len() as u8]);
    connect.extend_from_slice(id);
    let _ = machine.handle_read(now, &mut connect);
    while let Some(event) = machine.poll_event() {
        if matches!(event, ServerEvent::Connect(_)) {
            machine.accept(now, session.clone(), false);
        }
    }
    let mut out = OutBuf::new();
    while machine.poll_transmit(&mut out) {}
    machine
}
