//! The broker fed byte streams on 1–3 in-memory connections (no sockets: `tokio::io::duplex`
//! through `Broker::external_connected`) that mostly share one client id: the class of
//! CVE-2024-8376 (sequences of CONNECT, DISCONNECT, SUBSCRIBE, UNSUBSCRIBE and PUBLISH across
//! session takeovers). The input is a sequence of operations: well-formed packets from small
//! tables of ids, topics and filters, raw bytes, closing and reopening a connection, letting
//! the broker run, and advancing the (paused) clock.
//!
//! Checked: nothing panics (libFuzzer aborts on any panic, in any task); every connection
//! ends within a minute of virtual time once its client side is closed (no stall); after
//! shutdown no connection is counted and no more sessions remain than there are client ids.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use amqtt_broker::{Broker, BrokerConfig};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mqtt_codec::packet::{Connect, LastWill, Packet, Publish, Subscribe, Unsubscribe};
use mqtt_codec::{KeepAlive, PacketId, Protocol, QoS, QosPid, TopicFilter, TopicName};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::task::JoinHandle;

const CLIENT_IDS: [&str; 4] = ["shared", "shared", "other", ""];
const USERS: [Option<&str>; 4] = [None, Some("alice"), Some("bob"), Some("anonymous")];
const TOPICS: [&str; 12] = [
    "a",
    "a/b",
    "a/x/c",
    "b/q",
    "s/1",
    "s/2",
    "$SYS/x",
    "$x/y",
    "public/p",
    "x/1",
    "/",
    "d/e/f/g/h/i",
];
const FILTERS: [&str; 14] = [
    "#",
    "+",
    "a/#",
    "+/b",
    "$SYS/#",
    "s/+",
    "public/#",
    "a/+/c",
    "x/1",
    "+/+/+",
    "$x/#",
    "/",
    "s/1",
    "d/e/f/g/h/i/#",
];

/// A broker with the default plugin set (packet logging on, so packet events run too).
const PLAIN: &str = "listeners:\n  default: {type: external}\n";
/// A broker with the ACL plugin, `$SYS` publishing and tight limits.
const TIGHT: &str = r##"listeners:
  default: {type: external}
max_packet_size: 512
max_inflight: 2
max_queued_messages: 3
max_queued_bytes: 64
max_incoming_unreleased: 2
max_topic_levels: 5
max_topic_length: 10
plugins:
  amqtt.plugins.logging_amqtt.PacketLoggerPlugin:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
  amqtt.plugins.topic_checking.TopicAccessControlListPlugin:
    acl:
      alice: ["a/+/c", "b/#", "s/#"]
      anonymous: ["public/#", "s/+"]
    publish-acl:
      alice: ["a/#", "b/#", "s/#"]
      anonymous: ["public/#", "s/1"]
  amqtt.plugins.sys.broker.BrokerSysPlugin:
    sys_interval: 1
"##;

#[derive(Arbitrary, Debug)]
struct Input {
    tight: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Connect {
        conn: u8,
        id: u8,
        clean: bool,
        keep_alive: u8,
        user: u8,
        will: Option<(u8, u8, bool)>,
        v31: bool,
    },
    Publish {
        conn: u8,
        topic: u8,
        qos: u8,
        pid: u8,
        retain: bool,
        dup: bool,
        payload: u8,
    },
    Subscribe {
        conn: u8,
        pid: u8,
        filters: Vec<(u8, u8)>,
    },
    Unsubscribe {
        conn: u8,
        pid: u8,
        filters: Vec<u8>,
    },
    Ack {
        conn: u8,
        kind: u8,
        pid: u8,
    },
    Ping {
        conn: u8,
    },
    Disconnect {
        conn: u8,
    },
    Raw {
        conn: u8,
        bytes: Vec<u8>,
    },
    /// Closes the client side; the slot gets a new connection at its next use.
    Close {
        conn: u8,
    },
    /// Lets the broker's tasks run.
    Run {
        turns: u8,
    },
    /// Advances the paused clock (keep-alive, connect timeout, takeover deadline, `$SYS`).
    Sleep {
        secs: u8,
    },
}

struct Slot {
    writer: WriteHalf<DuplexStream>,
    drain: JoinHandle<()>,
    serve: JoinHandle<()>,
}

fn pick<T: Copy>(table: &[T], i: u8) -> T {
    table[usize::from(i) % table.len()]
}

fn qos(q: u8) -> QoS {
    match q % 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn pid(n: u8) -> PacketId {
    PacketId::new(u16::from(n % 8) + 1).expect("non-zero")
}

fn topic(i: u8) -> TopicName {
    TopicName::new(pick(&TOPICS, i)).expect("the table holds valid topics")
}

fn filter(i: u8) -> TopicFilter {
    TopicFilter::new(pick(&FILTERS, i)).expect("the table holds valid filters")
}

/// The bytes an operation writes, and to which connection; `None` for the others.
fn encode(op: &Op) -> Option<(u8, Vec<u8>)> {
    let (conn, packet) = match op {
        Op::Connect {
            conn,
            id,
            clean,
            keep_alive,
            user,
            will,
            v31,
        } => (
            *conn,
            Packet::Connect(Box::new(Connect {
                protocol: if *v31 { Protocol::V31 } else { Protocol::V311 },
                keep_alive: KeepAlive::from_secs(u16::from(*keep_alive % 8)),
                client_id: pick(&CLIENT_IDS, *id).to_owned(),
                clean_session: *clean,
                will: will.map(|(t, q, retain)| LastWill {
                    topic: topic(t),
                    payload: Bytes::from_static(b"will"),
                    qos: qos(q),
                    retain,
                }),
                username: pick(&USERS, *user).map(str::to_owned),
                password: None,
            })),
        ),
        Op::Publish {
            conn,
            topic: t,
            qos: q,
            pid: p,
            retain,
            dup,
            payload,
        } => {
            let qos_pid = match qos(*q) {
                QoS::AtMostOnce => QosPid::AtMostOnce,
                QoS::AtLeastOnce => QosPid::AtLeastOnce(pid(*p)),
                QoS::ExactlyOnce => QosPid::ExactlyOnce(pid(*p)),
            };
            (
                *conn,
                Packet::Publish(Publish {
                    dup: *dup && qos_pid != QosPid::AtMostOnce,
                    qos_pid,
                    retain: *retain,
                    topic: topic(*t),
                    // An empty retained payload clears the retained message.
                    payload: Bytes::from(vec![b'p'; usize::from(*payload % 4) * 20]),
                }),
            )
        }
        Op::Subscribe {
            conn,
            pid: p,
            filters,
        } => {
            let mut list: Vec<_> = filters
                .iter()
                .take(4)
                .map(|(f, q)| (filter(*f), qos(*q)))
                .collect();
            if list.is_empty() {
                list.push((filter(0), QoS::AtLeastOnce));
            }
            (
                *conn,
                Packet::Subscribe(Subscribe {
                    packet_id: pid(*p),
                    filters: list,
                }),
            )
        }
        Op::Unsubscribe {
            conn,
            pid: p,
            filters,
        } => {
            let mut list: Vec<_> = filters.iter().take(4).map(|f| filter(*f)).collect();
            if list.is_empty() {
                list.push(filter(0));
            }
            (
                *conn,
                Packet::Unsubscribe(Unsubscribe {
                    packet_id: pid(*p),
                    filters: list,
                }),
            )
        }
        Op::Ack { conn, kind, pid: p } => {
            let id = pid(*p);
            let packet = match kind % 4 {
                0 => Packet::PubAck(id),
                1 => Packet::PubRec(id),
                2 => Packet::PubRel(id),
                _ => Packet::PubComp(id),
            };
            (*conn, packet)
        }
        Op::Ping { conn } => (*conn, Packet::PingReq),
        Op::Disconnect { conn } => (*conn, Packet::Disconnect),
        Op::Raw { conn, bytes } => return Some((*conn, bytes.clone())),
        Op::Close { .. } | Op::Run { .. } | Op::Sleep { .. } => return None,
    };
    let mut out = BytesMut::new();
    packet.encode(&mut out).ok()?;
    Some((conn, out.to_vec()))
}

/// Opens a connection served by the broker; its output is read and discarded.
fn open(broker: &Arc<Broker>) -> Slot {
    let (client, server) = tokio::io::duplex(16 * 1024);
    let (mut reader, writer) = tokio::io::split(client);
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    let b = broker.clone();
    let serve = tokio::spawn(async move {
        // Refused only for an unknown listener, which `default` is not.
        b.external_connected(server, "default")
            .await
            .expect("the default listener serves");
    });
    Slot {
        writer,
        drain,
        serve,
    }
}

/// Closes the client side and waits (in virtual time) for the broker to end the connection.
async fn close(mut slot: Slot) {
    let _ = slot.writer.shutdown().await;
    match tokio::time::timeout(Duration::from_secs(60), slot.serve).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
        Err(_) => panic!("a connection did not end within 60 s of its client closing"),
    }
    drop(slot.writer);
    match tokio::time::timeout(Duration::from_secs(60), slot.drain).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
        Err(_) => panic!("the broker kept a finished connection's stream open"),
    }
}

async fn run(input: Input) {
    let yaml = if input.tight { TIGHT } else { PLAIN };
    let config = BrokerConfig::from_yaml_str(yaml).expect("the fuzz configs are valid");
    let broker = Arc::new(Broker::new(config).expect("the fuzz configs build"));
    broker.start().await.expect("nothing to bind");
    let mut slots: [Option<Slot>; 3] = [None, None, None];
    let conns = 1 + input.ops.len() % 3;
    for op in input.ops.iter().take(256) {
        match op {
            Op::Close { conn } => {
                if let Some(slot) = slots[usize::from(*conn) % conns].take() {
                    close(slot).await;
                }
            }
            Op::Run { turns } => {
                for _ in 0..*turns % 16 {
                    tokio::task::yield_now().await;
                }
            }
            Op::Sleep { secs } => {
                tokio::time::sleep(Duration::from_secs(u64::from(*secs % 16))).await;
            }
            other => {
                let Some((conn, bytes)) = encode(other) else {
                    continue;
                };
                let slot = slots[usize::from(conn) % conns].get_or_insert_with(|| open(&broker));
                // The broker may have closed this connection already; a write that cannot
                // complete within a minute of virtual time is the broker not reading.
                match tokio::time::timeout(Duration::from_secs(60), slot.writer.write_all(&bytes))
                    .await
                {
                    Ok(_) => {}
                    Err(_) => panic!("the broker stopped reading a connection for 60 s"),
                }
                tokio::task::yield_now().await;
            }
        }
    }
    for slot in slots.iter_mut().filter_map(Option::take) {
        close(slot).await;
    }
    assert_eq!(
        broker.connected_clients(),
        0,
        "a connection is still counted"
    );
    // Persistent sessions may stay, at most one per client id ("" is never persistent).
    assert!(
        broker.session_count() <= 2,
        "{} sessions for 2 persistent client ids",
        broker.session_count()
    );
    broker.shutdown().await;
    assert_eq!(broker.connected_clients(), 0);
}

fuzz_target!(|input: Input| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(run(input));
});
