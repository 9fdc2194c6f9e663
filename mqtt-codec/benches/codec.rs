//! Codec throughput, side by side with rumqttc's MQTT 3.1.1 codec (`rumqttc::mqttbytes::v4`).
//!
//! Three streams of 1,000 packets each: PUBLISH with 64-byte payloads, PUBLISH with 1 KiB
//! payloads, and a mixed stream (PUBLISH at every QoS, the acknowledgements, SUBSCRIBE, SUBACK,
//! UNSUBSCRIBE, PINGREQ). Both codecs decode the same bytes and encode the same packets.
//!
//! Times are the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time, so
//! that time spent descheduled on a shared machine does not count; both codecs are measured in
//! the same run. Run: `cargo bench -p mqtt-codec --bench codec`.
//!
//! Criterion measures one function after the other, so on a loaded machine the two codecs of a
//! group may run under different conditions. After criterion's groups, a paired check runs the
//! two codecs alternately on the same stream, round after round, and prints the median of the
//! per-round ratios: both sides of each ratio ran within microseconds of each other.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use cpu_time::ThreadTime;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use mqtt_codec::{
    Decoder, OutBuf, Packet, PacketId, Publish, QoS, QosPid, SubAck, SubAckReturnCode, Subscribe,
    TopicFilter, TopicName, Unsubscribe,
};
use rumqttc::mqttbytes::v4 as rumqtt;

const PACKETS: usize = 1000;
const MAX_PACKET_SIZE: usize = 1 << 20;
const TOPIC: &str = "sensors/building-7/floor-3/room-12/temperature";

fn id(n: usize) -> PacketId {
    PacketId::new((n % 65_535 + 1) as u16).expect("n % 65535 + 1 is not zero")
}

fn publish(n: usize, qos: QoS, payload: &Bytes) -> Packet {
    let qos_pid = match qos {
        QoS::AtMostOnce => QosPid::AtMostOnce,
        QoS::AtLeastOnce => QosPid::AtLeastOnce(id(n)),
        QoS::ExactlyOnce => QosPid::ExactlyOnce(id(n)),
    };
    Packet::Publish(Publish {
        dup: false,
        qos_pid,
        retain: false,
        topic: TopicName::new(TOPIC).expect("valid topic"),
        payload: payload.clone(),
    })
}

fn publish_stream(payload_len: usize) -> Vec<Packet> {
    let payload = Bytes::from(vec![0xa5; payload_len]);
    (0..PACKETS)
        .map(|n| publish(n, QoS::AtLeastOnce, &payload))
        .collect()
}

fn mixed_stream() -> Vec<Packet> {
    let small = Bytes::from(vec![0x5a; 64]);
    let large = Bytes::from(vec![0x5a; 1024]);
    let filter = |s: &str| TopicFilter::new(s).expect("valid filter");
    (0..PACKETS)
        .map(|n| match n % 10 {
            0 => publish(n, QoS::AtMostOnce, &small),
            1 => publish(n, QoS::AtLeastOnce, &large),
            2 => publish(n, QoS::ExactlyOnce, &small),
            3 => Packet::PubAck(id(n)),
            4 => Packet::PubRec(id(n)),
            5 => Packet::PubRel(id(n)),
            6 => Packet::PubComp(id(n)),
            7 => Packet::Subscribe(Subscribe {
                packet_id: id(n),
                filters: vec![
                    (filter("sensors/+/floor-3/#"), QoS::AtLeastOnce),
                    (filter("$SYS/broker/uptime"), QoS::AtMostOnce),
                ],
            }),
            8 => Packet::SubAck(SubAck {
                packet_id: id(n),
                return_codes: vec![
                    SubAckReturnCode::Success(QoS::AtLeastOnce),
                    SubAckReturnCode::Failure,
                ],
            }),
            _ => match n % 20 {
                9 => Packet::Unsubscribe(Unsubscribe {
                    packet_id: id(n),
                    filters: vec![filter("sensors/+/floor-3/#")],
                }),
                _ => Packet::PingReq,
            },
        })
        .collect()
}

fn encode_all(packets: &[Packet]) -> Bytes {
    let mut buf = BytesMut::new();
    for packet in packets {
        packet.encode(&mut buf).expect("bench packets encode");
    }
    buf.freeze()
}

/// The same stream as rumqttc's packets, decoded by rumqttc from our encoding.
fn rumqtt_packets(bytes: &Bytes) -> Vec<rumqtt::Packet> {
    let mut buf = BytesMut::from(&bytes[..]);
    let mut packets = Vec::new();
    while !buf.is_empty() {
        packets.push(rumqtt::Packet::read(&mut buf, MAX_PACKET_SIZE).expect("rumqttc decodes it"));
    }
    packets
}

fn bench_stream(c: &mut Criterion<CpuTime>, name: &str, packets: Vec<Packet>) {
    let bytes = encode_all(&packets);
    let theirs = rumqtt_packets(&bytes);
    assert_eq!(theirs.len(), packets.len());

    // Both codecs must agree on the bytes before we compare their speed.
    let mut their_bytes = BytesMut::new();
    for packet in &theirs {
        packet
            .write(&mut their_bytes, MAX_PACKET_SIZE)
            .expect("rumqttc encodes it");
    }
    assert_eq!(their_bytes.freeze(), bytes, "the codecs disagree on {name}");

    let mut group = c.benchmark_group(format!("decode/{name}"));
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("amqtt-rs", |b| {
        let mut decoder = Decoder::new(MAX_PACKET_SIZE);
        // Filling the buffer is setup, not measured; each iteration decodes the whole stream.
        b.iter_batched_ref(
            || BytesMut::from(&bytes[..]),
            |buf| {
                while let Some(packet) = decoder.decode(buf).expect("valid stream") {
                    black_box(packet);
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("rumqttc", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&bytes[..]),
            |buf| {
                while !buf.is_empty() {
                    black_box(rumqtt::Packet::read(buf, MAX_PACKET_SIZE).expect("valid stream"));
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let mut group = c.benchmark_group(format!("encode/{name}"));
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("amqtt-rs", |b| {
        let mut buf = BytesMut::with_capacity(bytes.len());
        b.iter(|| {
            buf.clear();
            for packet in &packets {
                packet.encode(&mut buf).expect("bench packets encode");
            }
            black_box(&buf);
        })
    });
    group.bench_function("amqtt-rs-outbuf", |b| {
        // What a connection does: headers into the tail, large payloads shared, not copied.
        let mut out = OutBuf::new();
        b.iter(|| {
            for packet in &packets {
                packet.encode_into(&mut out).expect("bench packets encode");
            }
            black_box(&out);
            let n = out.remaining();
            out.advance(n);
        })
    });
    group.bench_function("rumqttc", |b| {
        let mut buf = BytesMut::with_capacity(bytes.len());
        b.iter(|| {
            buf.clear();
            for packet in &theirs {
                packet
                    .write(&mut buf, MAX_PACKET_SIZE)
                    .expect("bench packets encode");
            }
            black_box(&buf);
        })
    });
    group.finish();
}

/// The benchmark thread's CPU time.
struct CpuTime;

static WALL_TIME: WallTime = WallTime;

impl Measurement for CpuTime {
    type Intermediate = ThreadTime;
    type Value = Duration;

    fn start(&self) -> ThreadTime {
        ThreadTime::now()
    }

    fn end(&self, start: ThreadTime) -> Duration {
        start.elapsed()
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Durations print the same whichever clock measured them.
        WALL_TIME.formatter()
    }
}

fn codec(c: &mut Criterion<CpuTime>) {
    bench_stream(c, "publish_64B", publish_stream(64));
    bench_stream(c, "publish_1KiB", publish_stream(1024));
    bench_stream(c, "mixed", mixed_stream());
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = codec
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    paired_check();
}

/// The streams, each with our packets, rumqttc's packets and the bytes both encode them to.
fn streams() -> Vec<(&'static str, Vec<Packet>, Vec<rumqtt::Packet>, Bytes)> {
    [
        ("publish_64B", publish_stream(64)),
        ("publish_1KiB", publish_stream(1024)),
        ("mixed", mixed_stream()),
    ]
    .into_iter()
    .map(|(name, packets)| {
        let bytes = encode_all(&packets);
        let theirs = rumqtt_packets(&bytes);
        (name, packets, theirs, bytes)
    })
    .collect()
}

/// Runs both codecs alternately on each stream (which one goes first alternates too) for
/// about a second of CPU time per operation, timing each run with the thread's CPU time, and
/// prints the medians of the times and of the per-round ratios. Follows criterion's name
/// filter; skipped under `--list`, `--profile-time` and `--test`.
fn paired_check() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| a == "--list" || a == "--profile-time" || a == "--test")
    {
        return;
    }
    // Criterion's options that take a value; any other argument not starting with `-` is the
    // name filter.
    const WITH_VALUE: &[&str] = &[
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--color",
        "--output-format",
        "--plotting-backend",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--format",
    ];
    let mut filter = None;
    let mut skip_value = false;
    for arg in &args {
        if skip_value {
            skip_value = false;
        } else if WITH_VALUE.contains(&arg.as_str()) {
            skip_value = true;
        } else if !arg.starts_with('-') {
            filter = Some(arg.clone());
        }
    }
    println!("\npaired check: both codecs alternately, round after round (thread CPU time)");
    for (name, packets, theirs, bytes) in streams() {
        let wanted = |op: &str| {
            filter
                .as_deref()
                .is_none_or(|f| format!("{op}/{name}").contains(f))
        };
        if wanted("decode") {
            let mut decoder = Decoder::new(MAX_PACKET_SIZE);
            let ours = |buf: &mut BytesMut| {
                while let Some(packet) = decoder.decode(buf).expect("valid stream") {
                    black_box(packet);
                }
            };
            let rumqttc = |buf: &mut BytesMut| {
                while !buf.is_empty() {
                    black_box(rumqtt::Packet::read(buf, MAX_PACKET_SIZE).expect("valid stream"));
                }
            };
            let refill = |buf: &mut BytesMut| *buf = BytesMut::from(&bytes[..]);
            report(&format!("decode/{name}"), alternate(refill, ours, rumqttc));
        }
        if wanted("encode") {
            let ours = |buf: &mut BytesMut| {
                for packet in &packets {
                    packet.encode(buf).expect("bench packets encode");
                }
                black_box(&buf);
            };
            let rumqttc = |buf: &mut BytesMut| {
                for packet in &theirs {
                    packet
                        .write(buf, MAX_PACKET_SIZE)
                        .expect("bench packets encode");
                }
                black_box(&buf);
            };
            // As in criterion's group: each side reuses its buffer, cleared before each run.
            let clear = |buf: &mut BytesMut| buf.clear();
            report(&format!("encode/{name}"), alternate(clear, ours, rumqttc));
        }
    }
}

/// Alternates `ours` and `theirs`, each on its own buffer that `reset` prepares outside the
/// timing, for about a second of CPU time; returns the (ours, theirs) CPU time of every round.
fn alternate(
    mut reset: impl FnMut(&mut BytesMut),
    mut ours: impl FnMut(&mut BytesMut),
    mut theirs: impl FnMut(&mut BytesMut),
) -> Vec<(Duration, Duration)> {
    let mut timed = |run: &mut dyn FnMut(&mut BytesMut), buf: &mut BytesMut| {
        reset(buf);
        let start = ThreadTime::now();
        run(buf);
        start.elapsed()
    };
    let (mut our_buf, mut their_buf) = (BytesMut::new(), BytesMut::new());
    let mut rounds = Vec::new();
    let mut spent = Duration::ZERO;
    let wall = Instant::now();
    while spent < Duration::from_secs(1) && wall.elapsed() < Duration::from_secs(10) {
        let (a, b) = if rounds.len() % 2 == 0 {
            let a = timed(&mut ours, &mut our_buf);
            (a, timed(&mut theirs, &mut their_buf))
        } else {
            let b = timed(&mut theirs, &mut their_buf);
            (timed(&mut ours, &mut our_buf), b)
        };
        spent += a + b;
        rounds.push((a, b));
    }
    rounds
}

fn report(name: &str, rounds: Vec<(Duration, Duration)>) {
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        (at(0.5), at(0.1), at(0.9))
    };
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let (ours, _, _) = median(rounds.iter().map(|r| micros(r.0)).collect());
    let (theirs, _, _) = median(rounds.iter().map(|r| micros(r.1)).collect());
    let (ratio, p10, p90) = median(
        rounds
            .iter()
            .map(|r| r.1.as_secs_f64() / r.0.as_secs_f64())
            .collect(),
    );
    println!(
        "{name:<20} amqtt-rs {ours:8.2} µs  rumqttc {theirs:8.2} µs  \
         rumqttc/amqtt-rs {ratio:.2}× (p10 {p10:.2}×, p90 {p90:.2}×, {} rounds)",
        rounds.len()
    );
}
