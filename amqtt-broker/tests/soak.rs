//! The soak test of issue #9: 200 clients connect, subscribe, publish at QoS 0, 1 and 2,
//! unsubscribe and disconnect (cleanly or by dropping the socket) in a loop against an
//! in-process broker for about 90 seconds. Asserted:
//! - the process's RSS (`/proc/self/status`) at the end is within 10% of its RSS after a
//!   warm-up, both measured with every client disconnected;
//! - no QoS 1/2 message is lost: every message a publisher saw acknowledged (PUBACK, or PUBCOMP)
//!   reaches its subscriber, which is offline part of the time (persistent sessions queue for
//!   it); QoS 2 is delivered exactly once.
//!
//! Each client is a small hand-written MQTT client over the codec that keeps its session state
//! across connections as the spec requires of a client: unacknowledged QoS 1/2 publishes are
//! re-sent with DUP and PUBREL is re-sent after a reconnect ([MQTT-4.4.0-1]), and incoming QoS 2
//! packet ids are remembered until PUBREL (Method B, [MQTT-4.3.3-2]). Each publisher keeps at
//! most [`WINDOW`] messages in flight, so the queues stay far below `max_queued_messages`: a
//! loss would be the broker's.
//!
//! Ignored by default (it takes up to 2 minutes); `.ci/run` runs it with `--include-ignored`.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::TestBroker;
use mqtt_codec::packet::{Connect, Packet, Publish, Subscribe, Unsubscribe};
use mqtt_codec::{
    ConnectReturnCode, Decoder, KeepAlive, PacketId, Protocol, QoS, QosPid, TopicFilter, TopicName,
};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Clients, each both a publisher and a subscriber (of the next client's topics).
const CLIENTS: usize = 200;
/// QoS 1/2 messages a publisher keeps unacknowledged at once.
const WINDOW: usize = 4;
const WARM_UP: Duration = Duration::from_secs(20);
const RUN: Duration = Duration::from_secs(60);
/// How long one packet may take to arrive before the test calls the broker stuck.
const PACKET_DEADLINE: Duration = Duration::from_secs(30);

/// Resident memory of this process in KiB.
fn rss_kib() -> u64 {
    common::rss_kib().expect("VmRSS in /proc/self/status (the soak test runs on Linux)")
}

/// Sequence numbers a publisher may use: the ledger's bit sets are allocated (and touched)
/// up front, so that the test's own bookkeeping does not grow the RSS being measured.
const MAX_SEQ: u64 = 1 << 16;

/// A set of sequence numbers below [`MAX_SEQ`].
struct Bits(Vec<u64>);

impl Bits {
    fn new() -> Bits {
        // Written to (not just zero-allocated) so that its pages are resident from the start.
        let mut words = vec![u64::MAX; (MAX_SEQ / 64) as usize];
        words.fill(0);
        Bits(words)
    }

    /// Adds `seq`; returns whether it was new.
    fn insert(&mut self, seq: u64) -> bool {
        let word = &mut self.0[(seq / 64) as usize];
        let bit = 1u64 << (seq % 64);
        let new = *word & bit == 0;
        *word |= bit;
        new
    }

    fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The members of `self` missing from `other`.
    fn missing_from(&self, other: &Bits) -> Vec<u64> {
        let mut out = Vec::new();
        for (i, (a, b)) in self.0.iter().zip(&other.0).enumerate() {
            let mut m = a & !b;
            while m != 0 {
                out.push(i as u64 * 64 + u64::from(m.trailing_zeros()));
                m &= m - 1;
            }
        }
        out
    }

    fn is_subset(&self, other: &Bits) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a & !b == 0)
    }
}

/// What every client records, for the final check.
#[derive(Default)]
struct Ledger {
    /// Per publisher: the QoS 1/2 sequence numbers acknowledged to it.
    confirmed: Vec<Mutex<Bits>>,
    /// Per subscriber: the QoS 1/2 sequence numbers received from its publisher.
    received: Vec<Mutex<Bits>>,
    qos2_duplicates: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    /// Clients whose outgoing flows are not all complete yet in the final drain.
    publishing: AtomicUsize,
    connections: AtomicU64,
    dropped_connections: AtomicU64,
}

/// The part of an outgoing QoS 1/2 flow still to complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// PUBLISH sent; PUBACK (QoS 1) or PUBREC (QoS 2) awaited.
    Published,
    /// PUBREL sent; PUBCOMP awaited.
    Released,
}

#[derive(Clone, Debug)]
struct Outgoing {
    seq: u64,
    qos: QoS,
    stage: Stage,
}

/// A client's session state, kept across its connections.
struct Client {
    index: usize,
    id: String,
    rng: rand::rngs::StdRng,
    next_seq: u64,
    next_pid: u16,
    /// Unacknowledged outgoing QoS 1/2 messages by packet id, in sending order.
    outgoing: HashMap<u16, Outgoing>,
    order: VecDeque<u16>,
    /// Incoming QoS 2 ids answered with PUBREC and not yet released.
    incoming_q2: HashSet<u16>,
    ledger: Arc<Ledger>,
}

struct Conn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    buf: BytesMut,
    decoder: Decoder,
    out: BytesMut,
}

impl Conn {
    fn queue(&mut self, packet: Packet) {
        packet.encode(&mut self.out).expect("encodable packet");
    }

    async fn flush(&mut self) {
        if !self.out.is_empty() {
            self.wr.write_all(&self.out).await.expect("write to broker");
            self.out.clear();
        }
    }

    /// The next packet; `None` at end of stream. Panics when the broker is silent for
    /// [`PACKET_DEADLINE`] while a packet is due.
    async fn next(&mut self) -> Option<Packet> {
        let read = async {
            loop {
                if let Some(p) = self.decoder.decode(&mut self.buf).expect("valid packet") {
                    return Some(p);
                }
                match self.rd.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(PACKET_DEADLINE, read)
            .await
            .expect("the broker answered within the deadline")
    }
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

fn publish_packet(topic: &str, seq: u64, qos: QoS, id: u16, dup: bool) -> Packet {
    let qos_pid = match qos {
        QoS::AtMostOnce => QosPid::AtMostOnce,
        QoS::AtLeastOnce => QosPid::AtLeastOnce(pid(id)),
        QoS::ExactlyOnce => QosPid::ExactlyOnce(pid(id)),
    };
    let mut payload = seq.to_be_bytes().to_vec();
    payload.resize(64, 0xab);
    Packet::Publish(Publish {
        dup,
        qos_pid,
        retain: false,
        topic: TopicName::new(topic).expect("valid topic"),
        payload: Bytes::from(payload),
    })
}

impl Client {
    fn new(index: usize, ledger: Arc<Ledger>) -> Client {
        Client {
            index,
            id: format!("soak-{index}"),
            rng: rand::rngs::StdRng::seed_from_u64(index as u64),
            next_seq: 0,
            next_pid: 0,
            outgoing: HashMap::new(),
            order: VecDeque::new(),
            incoming_q2: HashSet::new(),
            ledger,
        }
    }

    fn publisher_of_mine(&self) -> usize {
        (self.index + 1) % CLIENTS
    }

    fn alloc_pid(&mut self) -> u16 {
        loop {
            // Ids 1 and 2 are SUBSCRIBE's and UNSUBSCRIBE's.
            self.next_pid = self.next_pid.wrapping_add(1).max(3);
            if !self.outgoing.contains_key(&self.next_pid) {
                return self.next_pid;
            }
        }
    }

    async fn connect(&mut self, addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        let (rd, wr) = stream.into_split();
        let mut conn = Conn {
            rd,
            wr,
            buf: BytesMut::new(),
            decoder: Decoder::new(1 << 20),
            out: BytesMut::new(),
        };
        conn.queue(Packet::Connect(Box::new(Connect {
            protocol: Protocol::V311,
            keep_alive: KeepAlive::from_secs(60),
            client_id: self.id.clone(),
            clean_session: false,
            will: None,
            username: None,
            password: None,
        })));
        conn.flush().await;
        match conn.next().await {
            Some(Packet::ConnAck(ack)) => {
                assert_eq!(ack.return_code, ConnectReturnCode::Accepted, "{}", self.id);
            }
            other => panic!("{}: expected CONNACK, got {other:?}", self.id),
        }
        self.ledger.connections.fetch_add(1, Ordering::Relaxed);
        // [MQTT-4.4.0-1] a resumed session re-sends what was unacknowledged, in order.
        for id in self.order.clone() {
            let Some(o) = self.outgoing.get(&id).cloned() else {
                continue;
            };
            match o.stage {
                Stage::Published => {
                    let topic = self.topic(o.qos);
                    conn.queue(publish_packet(&topic, o.seq, o.qos, id, true));
                }
                Stage::Released => conn.queue(Packet::PubRel(pid(id))),
            }
        }
        conn
    }

    fn topic(&self, qos: QoS) -> String {
        format!("soak/{}/q{}", self.index, qos.as_u8())
    }

    /// Handles one packet from the broker.
    fn on_packet(&mut self, conn: &mut Conn, packet: Packet) {
        match packet {
            Packet::Publish(p) => self.on_publish(conn, p),
            Packet::PubRel(id) => {
                self.incoming_q2.remove(&id.get());
                conn.queue(Packet::PubComp(id));
            }
            Packet::PubAck(id) => self.complete(id.get(), QoS::AtLeastOnce),
            Packet::PubRec(id) => {
                let o = self
                    .outgoing
                    .get_mut(&id.get())
                    .unwrap_or_else(|| panic!("PUBREC for unknown id {id:?}"));
                assert_eq!(o.qos, QoS::ExactlyOnce, "PUBREC for a QoS 1 message");
                o.stage = Stage::Released;
                conn.queue(Packet::PubRel(id));
            }
            Packet::PubComp(id) => self.complete(id.get(), QoS::ExactlyOnce),
            Packet::SubAck(ack) => {
                assert!(
                    !ack.return_codes
                        .contains(&mqtt_codec::SubAckReturnCode::Failure),
                    "SUBACK failure"
                );
            }
            Packet::UnsubAck(_) | Packet::PingResp => {}
            other => panic!("{}: unexpected {other:?}", self.id),
        }
    }

    fn on_publish(&mut self, conn: &mut Conn, p: Publish) {
        let from_mine = format!("soak/{}/", self.publisher_of_mine());
        let seq = p
            .payload
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .expect("a sequence number in the payload");
        let counts = p.topic.as_str().starts_with(&from_mine);
        match p.qos_pid {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(id) => {
                conn.queue(Packet::PubAck(id));
                if counts {
                    self.record(seq);
                }
            }
            QosPid::ExactlyOnce(id) => {
                conn.queue(Packet::PubRec(id));
                // Method B: an id awaiting PUBREL is a re-send of a message already delivered.
                if self.incoming_q2.insert(id.get()) && counts {
                    let new = self.record(seq);
                    if !new {
                        self.ledger.qos2_duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        self.ledger.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a received sequence number; returns whether it was new.
    fn record(&self, seq: u64) -> bool {
        self.ledger.received[self.index]
            .lock()
            .expect("ledger")
            .insert(seq)
    }

    fn complete(&mut self, id: u16, qos: QoS) {
        let Some(o) = self.outgoing.get(&id) else {
            panic!("{}: acknowledgement for unknown id {id}", self.id);
        };
        assert_eq!(o.qos, qos, "{}: wrong acknowledgement for id {id}", self.id);
        if qos == QoS::ExactlyOnce {
            assert_eq!(o.stage, Stage::Released, "PUBCOMP before PUBREL");
        }
        let seq = o.seq;
        self.outgoing.remove(&id);
        self.order.retain(|&i| i != id);
        self.ledger.confirmed[self.index]
            .lock()
            .expect("ledger")
            .insert(seq);
    }

    /// The first connection: the persistent subscription to the publisher's topics, made
    /// before anyone publishes (messages published before it are not due to this client).
    async fn subscribe_first(&mut self, addr: SocketAddr) {
        let mut conn = self.connect(addr).await;
        let main = format!("soak/{}/#", self.publisher_of_mine());
        conn.queue(Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![(
                TopicFilter::new(main.as_str()).expect("filter"),
                QoS::ExactlyOnce,
            )],
        }));
        conn.flush().await;
        match conn.next().await {
            Some(Packet::SubAck(ack)) => assert_eq!(
                ack.return_codes,
                [mqtt_codec::SubAckReturnCode::Success(QoS::ExactlyOnce)]
            ),
            other => panic!("{}: expected SUBACK, got {other:?}", self.id),
        }
        conn.queue(Packet::Disconnect);
        conn.flush().await;
        let _ = conn.next().await;
    }

    /// One connection: subscribe, publish `count` messages through the window, unsubscribe the
    /// extra filter, and end with DISCONNECT or by dropping the socket.
    async fn session(&mut self, addr: SocketAddr, count: usize) {
        let mut conn = self.connect(addr).await;
        let main = format!("soak/{}/#", self.publisher_of_mine());
        let extra = format!("soak/{}/q0", (self.index + 7) % CLIENTS);
        conn.queue(Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![
                (
                    TopicFilter::new(main.as_str()).expect("filter"),
                    QoS::ExactlyOnce,
                ),
                (
                    TopicFilter::new(extra.as_str()).expect("filter"),
                    QoS::AtMostOnce,
                ),
            ],
        }));
        conn.flush().await;
        // A quarter of the sessions end by losing the connection instead of DISCONNECT.
        let lose = self.rng.gen_range(0..4) == 0;
        // The ledger holds MAX_SEQ sequence numbers per publisher; beyond, it only subscribes.
        let count = count.min((MAX_SEQ - self.next_seq) as usize);
        let mut sent = 0;
        while sent < count || !self.outgoing.is_empty() {
            while sent < count && self.outgoing.len() < WINDOW {
                let qos = match self.rng.gen_range(0..3) {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => QoS::ExactlyOnce,
                };
                let seq = self.next_seq;
                self.next_seq += 1;
                let topic = self.topic(qos);
                let id = if qos == QoS::AtMostOnce {
                    0
                } else {
                    let id = self.alloc_pid();
                    self.outgoing.insert(
                        id,
                        Outgoing {
                            seq,
                            qos,
                            stage: Stage::Published,
                        },
                    );
                    self.order.push_back(id);
                    id
                };
                conn.queue(publish_packet(&topic, seq, qos, id, false));
                self.ledger.published.fetch_add(1, Ordering::Relaxed);
                sent += 1;
            }
            conn.flush().await;
            if sent == count && lose {
                // Lost connection: the broker keeps the session with what is in flight.
                self.ledger
                    .dropped_connections
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            if sent == count && self.outgoing.is_empty() {
                break;
            }
            match conn.next().await {
                Some(packet) => self.on_packet(&mut conn, packet),
                None => panic!("{}: the broker closed the connection", self.id),
            }
        }
        conn.queue(Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(2),
            filters: vec![TopicFilter::new(extra.as_str()).expect("filter")],
        }));
        conn.flush().await;
        // Keep serving incoming messages until the UNSUBACK, then leave.
        loop {
            match conn.next().await {
                Some(Packet::UnsubAck(id)) if id == pid(2) => break,
                Some(Packet::SubAck(_)) => {}
                Some(packet) => self.on_packet(&mut conn, packet),
                None => panic!("{}: the broker closed the connection", self.id),
            }
            conn.flush().await;
        }
        conn.queue(Packet::Disconnect);
        conn.flush().await;
        // The broker closes after DISCONNECT; what it sent meanwhile stays in the session.
        let _ = conn.wr.shutdown().await;
    }

    /// Loops over sessions until `stop`.
    async fn run(&mut self, addr: SocketAddr, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let count = self.rng.gen_range(5..30);
            self.session(addr, count).await;
            let pause = self.rng.gen_range(0..50);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    /// A last connection that completes every flow and receives until every publisher is
    /// done and its own publisher's confirmed messages are all in (or the deadline passes).
    async fn drain(&mut self, addr: SocketAddr) {
        let mut conn = self.connect(addr).await;
        conn.flush().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut publishing = true;
        loop {
            if publishing && self.outgoing.is_empty() {
                publishing = false;
                self.ledger.publishing.fetch_sub(1, Ordering::AcqRel);
            }
            let done = self.ledger.publishing.load(Ordering::Acquire) == 0 && {
                let want = self.ledger.confirmed[self.publisher_of_mine()]
                    .lock()
                    .expect("ledger");
                let got = self.ledger.received[self.index].lock().expect("ledger");
                want.is_subset(&got)
            };
            if done || tokio::time::Instant::now() > deadline {
                break;
            }
            // Short waits: the end condition also depends on the other clients.
            match tokio::time::timeout(Duration::from_millis(100), conn.next()).await {
                Ok(Some(packet)) => self.on_packet(&mut conn, packet),
                Ok(None) => panic!("{}: closed while draining", self.id),
                Err(_) => {}
            }
            conn.flush().await;
        }
        conn.queue(Packet::Disconnect);
        conn.flush().await;
    }
}

/// Runs every client's loop for `time`, then waits for all of them to finish their session.
async fn phase(addr: SocketAddr, clients: Vec<Client>, time: Duration) -> Vec<Client> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for mut c in clients {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            c.run(addr, &stop).await;
            c
        }));
    }
    tokio::time::sleep(time).await;
    stop.store(true, Ordering::Relaxed);
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.expect("client task"));
    }
    clients
}

/// Waits (bounded) until the broker serves no connection.
async fn all_disconnected(b: &TestBroker) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.broker.connected_clients() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "connections left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run by .ci/run"]
async fn soak_200_clients_loop_without_leaking_memory_or_losing_qos1_and_qos2_messages() {
    let body = async {
        let b = TestBroker::start().await;
        let ledger = Arc::new(Ledger {
            confirmed: (0..CLIENTS).map(|_| Mutex::new(Bits::new())).collect(),
            received: (0..CLIENTS).map(|_| Mutex::new(Bits::new())).collect(),
            ..Ledger::default()
        });
        let mut clients: Vec<Client> = (0..CLIENTS)
            .map(|i| Client::new(i, ledger.clone()))
            .collect();
        for c in &mut clients {
            c.subscribe_first(b.addr).await;
        }

        let clients = phase(b.addr, clients, WARM_UP).await;
        all_disconnected(&b).await;
        let warm = rss_kib();
        let published_warm = ledger.published.load(Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        let mut clients = phase(b.addr, clients, RUN).await;
        all_disconnected(&b).await;
        let end = rss_kib();
        let ran = started.elapsed();

        // Every client completes its flows and collects what is due to it.
        ledger.publishing.store(CLIENTS, Ordering::Release);
        let addr = b.addr;
        let mut tasks = Vec::new();
        for mut c in clients.drain(..) {
            tasks.push(tokio::spawn(async move {
                c.drain(addr).await;
            }));
        }
        for t in tasks {
            t.await.expect("drain task");
        }

        let published = ledger.published.load(Ordering::Relaxed);
        let mut confirmed_total = 0;
        let mut lost = Vec::new();
        for subscriber in 0..CLIENTS {
            let publisher = (subscriber + 1) % CLIENTS;
            let confirmed = ledger.confirmed[publisher].lock().expect("ledger");
            let received = ledger.received[subscriber].lock().expect("ledger");
            confirmed_total += confirmed.len();
            let missing = confirmed.missing_from(&received);
            if !missing.is_empty() {
                lost.push((publisher, subscriber, missing.len(), missing[0]));
            }
        }
        let stats = b.broker.stats();
        eprintln!(
            "soak: {} connections ({} dropped), {published} messages published \
             ({} in the measured {ran:?}), {confirmed_total} QoS 1/2 confirmed, {} delivered, \
             {} dropped by the broker; RSS after warm-up {warm} KiB, at the end {end} KiB",
            ledger.connections.load(Ordering::Relaxed),
            ledger.dropped_connections.load(Ordering::Relaxed),
            published - published_warm,
            ledger.delivered.load(Ordering::Relaxed),
            stats.publish_dropped,
        );
        assert!(
            lost.is_empty(),
            "QoS 1/2 messages lost (publisher, subscriber, how many, first seq): {:?}",
            &lost[..lost.len().min(10)]
        );
        assert_eq!(
            ledger.qos2_duplicates.load(Ordering::Relaxed),
            0,
            "QoS 2 delivered twice"
        );
        assert!(
            confirmed_total > 10 * CLIENTS,
            "too little traffic to mean anything: {confirmed_total}"
        );
        assert!(
            end <= warm + warm / 10,
            "RSS grew from {warm} KiB after warm-up to {end} KiB"
        );
        b.stop().await;
    };
    tokio::time::timeout(Duration::from_secs(120), body)
        .await
        .expect("the soak test finished within 2 minutes");
}
