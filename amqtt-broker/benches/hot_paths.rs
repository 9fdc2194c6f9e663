//! Criterion benchmarks of the broker's hot paths (issue #8):
//!
//! * `trie_match/100k`: matching one topic against 100,000 subscriptions of mixed filters
//!   (exact, `+` at any level, `#` at any depth, wildcards at the first level);
//! * `fan_out/1000`: one QoS 0 PUBLISH routed to 1,000 online subscribers and encoded into each
//!   one's output buffer (64 B and 1 KiB payloads; the 1 KiB payload is shared, not copied).
//!
//! Run with `cargo bench -p amqtt-broker --bench hot_paths`.

use std::hint::black_box;

use amqtt_broker::bench_api::{FanOut, Trie};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mqtt_codec::session::Message;
use mqtt_codec::{QoS, TopicName};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SUBSCRIPTIONS: u32 = 100_000;

/// Topics look like `site/S/dev/D/SENSOR` with 200 sites, 100 devices and 8 sensors.
fn topic(rng: &mut StdRng) -> String {
    format!(
        "site/{}/dev/{}/s{}",
        rng.gen_range(0..200),
        rng.gen_range(0..100),
        rng.gen_range(0..8)
    )
}

/// A filter over the topic space: 70 % exact topics, 15 % with `+` at one level, 10 % with `#`
/// below a site, 5 % starting with a wildcard.
fn filter(rng: &mut StdRng) -> String {
    let levels: Vec<String> = topic(rng).split('/').map(str::to_owned).collect();
    let roll = rng.gen_range(0..100);
    let mut levels = levels;
    if roll < 70 {
    } else if roll < 85 {
        let at = rng.gen_range(1..levels.len());
        levels[at] = "+".to_owned();
    } else if roll < 95 {
        let keep = rng.gen_range(2..levels.len());
        levels.truncate(keep);
        levels.push("#".to_owned());
    } else if rng.gen_bool(0.5) {
        levels[0] = "+".to_owned();
    } else {
        levels = vec!["+".to_owned(), levels[1].clone(), "#".to_owned()];
    }
    levels.join("/")
}

fn trie_match(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(8);
    let mut trie = Trie::new();
    for i in 0..SUBSCRIPTIONS {
        trie.insert(&filter(&mut rng), i);
    }
    let topics: Vec<String> = (0..4096).map(|_| topic(&mut rng)).collect();
    let matched: usize = topics.iter().map(|t| trie.match_count(t)).sum();
    eprintln!(
        "trie_match: {} subscriptions, {:.1} matches per topic on average",
        trie.len(),
        matched as f64 / topics.len() as f64
    );
    let mut group = c.benchmark_group("trie_match");
    group.throughput(Throughput::Elements(1));
    group.bench_function("100k", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % topics.len();
            black_box(trie.match_count(black_box(&topics[i])))
        })
    });
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 1000;
    let mut fan = FanOut::new(SUBSCRIBERS, "bench/fanout");
    let mut group = c.benchmark_group("fan_out");
    // Throughput in deliveries: one PUBLISH reaches every subscriber.
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    for size in [64usize, 1024] {
        let message = Message {
            topic: TopicName::new("bench/fanout").expect("valid"),
            payload: Bytes::from(vec![0x5a; size]),
            qos: QoS::AtMostOnce,
            retain: false,
        };
        let encoded = fan.publish(&message);
        let remaining = 2 + "bench/fanout".len() + size;
        let length_bytes = if remaining < 128 { 1 } else { 2 };
        assert_eq!(
            encoded,
            SUBSCRIBERS * (1 + length_bytes + remaining),
            "every subscriber got one PUBLISH"
        );
        group.bench_with_input(
            BenchmarkId::new("1000_subscribers", format!("{size}B")),
            &message,
            |b, message| b.iter(|| black_box(fan.publish(message))),
        );
    }
    group.finish();
}

criterion_group!(benches, trie_match, fan_out);
criterion_main!(benches);
