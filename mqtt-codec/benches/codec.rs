//! Codec throughput, side by side with rumqttc's MQTT 3.1.1 codec (`rumqttc::mqttbytes::v4`).
//!
//! Three streams of 1,000 packets each: PUBLISH with 64-byte payloads, PUBLISH with 1 KiB
//! payloads, and a mixed stream (PUBLISH at every QoS, the acknowledgements, SUBSCRIBE, SUBACK,
//! UNSUBSCRIBE, PINGREQ). Both codecs decode the same bytes and encode the same packets.
//!
//! Times are the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time, so
//! that time spent descheduled on a shared machine does not count; both codecs are measured in
//! the same run. Run: `cargo bench -p mqtt-codec --bench codec`.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use cpu_time::ThreadTime;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
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
criterion_main!(benches);
