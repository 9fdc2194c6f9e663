//! The four modes: connect the clients, start them together, wait for them within the run's
//! bounds and turn their outcomes into a [`Report`].

use std::sync::Arc;
use std::time::Duration;

use mqtt_codec::topic::matches;
use mqtt_codec::{QoS, TopicName};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::{expand, PublishSettings, Settings, SubscribeSettings};
use crate::connect::{open_all, open_one, Opening, Pace, DEFAULT_CONCURRENCY};
use crate::error::BenchError;
use crate::link::Link;
use crate::payload::{now_ns, run_id};
use crate::publisher::{self, PublisherOutcome, PublisherPlan};
use crate::report::{ConnectReport, Latency, Progress, PublishReport, ReceiveReport, Report};
use crate::stats::{Counters, Delivery};
use crate::subscriber::{self, Finish, SubscriberOutcome, SubscriberPlan};

/// Extra time granted to tasks beyond their own bounds before the run gives up on them.
const GRACE: Duration = Duration::from_secs(5);

/// `amqtt_bench pub`.
pub(crate) async fn run_pub(s: Settings, p: PublishSettings) -> Result<Report, BenchError> {
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(counters.clone());
    let connect_start = Instant::now();
    let links = open_all(
        &s.target,
        publisher_openings(&s, &p),
        s.keep_alive,
        pace(&s),
        &counters,
    )
    .await?;
    let connect_s = connect_start.elapsed().as_secs_f64();
    let start = Instant::now();
    let outcomes = run_publishers(&s, &p, links, start, &counters).await;
    progress.stop();
    let mut report = Report {
        mode: "pub",
        url: s.target_url(),
        connections: connected(p.clients, connect_s),
        ..Report::default()
    };
    report.publish = Some(publish_report(&p, &outcomes, start));
    collect_errors(&mut report, outcomes.iter().map(|o| &o.error));
    Ok(report)
}

/// `amqtt_bench sub`.
pub(crate) async fn run_sub(s: Settings, sub: SubscribeSettings) -> Result<Report, BenchError> {
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(counters.clone());
    let connect_start = Instant::now();
    let links = open_all(
        &s.target,
        subscriber_openings(&s, &sub),
        s.keep_alive,
        pace(&s),
        &counters,
    )
    .await?;
    let connect_s = connect_start.elapsed().as_secs_f64();
    // A script or test starting publishers after us waits for this line.
    eprintln!("amqtt_bench: {} subscribers ready", sub.clients);
    let deadline = Instant::now() + s.duration;
    // No publishers here: nothing ever sends a Finish, subscribers stop at the deadline.
    let (_finish_tx, finish_rx) = watch::channel(None);
    let outcomes = run_subscribers(links, deadline, sub.count, None, finish_rx, &counters).await;
    progress.stop();
    let mut report = Report {
        mode: "sub",
        url: s.target_url(),
        connections: connected(sub.clients, connect_s),
        ..Report::default()
    };
    report.receive = Some(receive_report(&sub, &outcomes, None, None));
    collect_errors(&mut report, outcomes.iter().map(|o| &o.error));
    Ok(report)
}

/// `amqtt_bench pubsub`: subscribers first, then publishers; loss is counted against what was
/// actually sent on topics each subscriber's filter matches.
pub(crate) async fn run_pubsub(
    s: Settings,
    p: PublishSettings,
    sub: SubscribeSettings,
    quiet: Duration,
) -> Result<Report, BenchError> {
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(counters.clone());
    let connect_start = Instant::now();
    let sub_links = open_all(
        &s.target,
        subscriber_openings(&s, &sub),
        s.keep_alive,
        pace(&s),
        &counters,
    )
    .await?;
    let pub_links = open_all(
        &s.target,
        publisher_openings(&s, &p),
        s.keep_alive,
        pace(&s),
        &counters,
    )
    .await?;
    let connect_s = connect_start.elapsed().as_secs_f64();

    let start = Instant::now();
    let start_ns = now_ns();
    let deadline = start + s.duration;
    let (finish_tx, finish_rx) = watch::channel(None);
    let sub_deadline = deadline + p.drain * 2 + quiet;
    let sub_task = {
        let counters = counters.clone();
        tokio::spawn(async move {
            let only_run = Some(run_id());
            run_subscribers(
                sub_links,
                sub_deadline,
                sub.count,
                only_run,
                finish_rx,
                &counters,
            )
            .await
        })
    };
    let pub_outcomes = run_publishers(&s, &p, pub_links, start, &counters).await;

    let filters: Vec<String> = (0..sub.clients).map(|i| expand(&sub.topic, i)).collect();
    let expected: Vec<u64> = filters
        .iter()
        .map(|filter| {
            pub_outcomes
                .iter()
                .filter(|o| matches(filter, &expand(&p.topic, o.index)))
                .map(|o| o.sent)
                .sum()
        })
        .collect();
    let expected_total = expected.iter().sum();
    let _ = finish_tx.send(Some(Arc::new(Finish {
        expected,
        until: Instant::now() + p.drain,
        quiet,
    })));
    let sub_outcomes = match tokio::time::timeout_at(sub_deadline + GRACE, sub_task).await {
        Ok(Ok(outcomes)) => outcomes,
        _ => return Err(BenchError::Timeout("the subscribers to finish")),
    };
    progress.stop();

    let mut report = Report {
        mode: "pubsub",
        url: s.target_url(),
        connections: connected(p.clients + sub.clients, connect_s),
        ..Report::default()
    };
    report.publish = Some(publish_report(&p, &pub_outcomes, start));
    report.receive = Some(receive_report(
        &sub,
        &sub_outcomes,
        Some(expected_total),
        Some(start_ns),
    ));
    collect_errors(&mut report, pub_outcomes.iter().map(|o| &o.error));
    collect_errors(&mut report, sub_outcomes.iter().map(|o| &o.error));
    Ok(report)
}

/// `amqtt_bench conn`: idle connections opened at the connection rate and held for the
/// duration. Prints `connected N of M in S s` on stderr once every handshake has finished, so a
/// script can sample the broker's memory while they are held.
pub(crate) async fn run_conn(
    s: Settings,
    clients: u32,
    concurrency: usize,
) -> Result<Report, BenchError> {
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(counters.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<Result<(), BenchError>>(1024);
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    let spawner = {
        let s = s.clone();
        let counters = counters.clone();
        async move {
            for index in 0..clients {
                if let Some(rate) = s.connect_rate {
                    let due = start + Duration::from_secs_f64(f64::from(index) / rate);
                    tokio::time::sleep_until(due).await;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let opening = Opening {
                    client_id: format!("{}c{index}", s.client_id_prefix),
                    subscribe: None,
                };
                let target = s.target.clone();
                let counters = counters.clone();
                let done = done_tx.clone();
                let stop = stop_rx.clone();
                let keep_alive = s.keep_alive;
                tasks.spawn(async move {
                    let opened = open_one(&target, opening, keep_alive).await;
                    drop(permit);
                    match opened {
                        Ok(link) => {
                            Counters::add(&counters.connected, 1);
                            let _ = done.send(Ok(())).await;
                            hold(link, stop).await;
                        }
                        Err(e) => {
                            let _ = done.send(Err(e)).await;
                        }
                    }
                });
            }
            tasks
        }
    };
    let spawned = tokio::spawn(spawner);
    let mut connected_count = 0u64;
    let mut errors = Vec::new();
    for _ in 0..clients {
        match done_rx.recv().await {
            Some(Ok(())) => connected_count += 1,
            Some(Err(e)) => errors.push(e),
            None => break,
        }
    }
    let connect_s = start.elapsed().as_secs_f64();
    if connected_count == 0 {
        if let Some(first) = errors.into_iter().next() {
            return Err(first);
        }
        return Err(BenchError::Unexpected("end of the connection tasks"));
    }
    eprintln!("amqtt_bench: connected {connected_count} of {clients} in {connect_s:.3} s; holding for {:.1} s", s.duration.as_secs_f64());
    let hold_start = Instant::now();
    tokio::time::sleep(s.duration).await;
    let hold_s = hold_start.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    if let Ok(Ok(mut tasks)) = tokio::time::timeout(GRACE, spawned).await {
        let _ =
            tokio::time::timeout(GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    }
    progress.stop();
    let mut report = Report {
        mode: "conn",
        url: s.target_url(),
        connections: ConnectReport {
            count: u64::from(clients),
            connected: connected_count,
            failed: errors.len() as u64,
            connect_s,
            hold_s: Some(hold_s),
        },
        ..Report::default()
    };
    report.errors.extend(errors.iter().map(ToString::to_string));
    Ok(report)
}

/// Keeps an idle connection open, pinging within its keep-alive, until told to stop.
async fn hold(mut link: Link, mut stop: watch::Receiver<bool>) {
    link.release_buffers();
    loop {
        let ping = link
            .ping_at()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            () = tokio::time::sleep_until(ping) => {
                link.ping_if_due(Instant::now());
                if link.flush(Duration::from_secs(5)).await.is_err() {
                    return;
                }
                // Answers (PINGRESP) are not looked at; an idle connection keeps no buffer.
                link.inb.clear();
                link.release_buffers();
            }
        }
    }
    link.close().await;
}

async fn run_publishers(
    s: &Settings,
    p: &PublishSettings,
    links: Vec<Link>,
    start: Instant,
    counters: &Arc<Counters>,
) -> Vec<PublisherOutcome> {
    let deadline = start + s.duration;
    let mut tasks = JoinSet::new();
    for (index, link) in (0u32..).zip(links) {
        let plan = PublisherPlan {
            index,
            topic: publisher_topic(p, index),
            qos: p.qos,
            size: p.size,
            rate: p.rate,
            window: p.window,
            count: p.count,
        };
        tasks.spawn(publisher::run(
            link,
            plan,
            start,
            deadline,
            p.drain,
            counters.clone(),
        ));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    // Each publisher is bounded by deadline + drain (+ close); the grace covers scheduling.
    let _ = tokio::time::timeout_at(deadline + p.drain + GRACE, async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(outcome) = joined {
                outcomes.push(outcome);
            }
        }
    })
    .await;
    outcomes.sort_by_key(|o| o.index);
    outcomes
}

async fn run_subscribers(
    links: Vec<Link>,
    deadline: Instant,
    total_count: Option<u64>,
    only_run: Option<u32>,
    finish: watch::Receiver<Option<Arc<Finish>>>,
    counters: &Arc<Counters>,
) -> Vec<SubscriberOutcome> {
    let mut tasks = JoinSet::new();
    for (index, link) in links.into_iter().enumerate() {
        let plan = SubscriberPlan {
            index,
            deadline,
            total_count,
            only_run,
        };
        tasks.spawn(subscriber::run(
            link,
            plan,
            finish.clone(),
            counters.clone(),
        ));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    let _ = tokio::time::timeout_at(deadline + GRACE, async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(outcome) = joined {
                outcomes.push(outcome);
            }
        }
    })
    .await;
    outcomes
}

fn publisher_openings(s: &Settings, p: &PublishSettings) -> Vec<Opening> {
    (0..p.clients)
        .map(|i| Opening {
            client_id: format!("{}p{i}", s.client_id_prefix),
            subscribe: None,
        })
        .collect()
}

fn subscriber_openings(s: &Settings, sub: &SubscribeSettings) -> Vec<Opening> {
    (0..sub.clients)
        .map(|i| Opening {
            client_id: format!("{}s{i}", s.client_id_prefix),
            subscribe: Some((expand(&sub.topic, i), sub.qos)),
        })
        .collect()
}

// The fallback is a constant, valid topic name: its `expect` cannot fire.
#[allow(clippy::expect_used)]
fn publisher_topic(p: &PublishSettings, index: u32) -> TopicName {
    // Checked for the first and last index by the argument validation; `%i` only inserts
    // digits, so every index in between is valid too.
    TopicName::new(expand(&p.topic, index))
        .unwrap_or_else(|_| TopicName::new("bench").expect("a constant, valid topic name"))
}

fn pace(s: &Settings) -> Pace {
    Pace {
        rate: s.connect_rate,
        concurrency: DEFAULT_CONCURRENCY,
    }
}

fn connected(count: u32, connect_s: f64) -> ConnectReport {
    ConnectReport {
        count: u64::from(count),
        connected: u64::from(count),
        failed: 0,
        connect_s,
        hold_s: None,
    }
}

fn publish_report(
    p: &PublishSettings,
    outcomes: &[PublisherOutcome],
    start: Instant,
) -> PublishReport {
    let sent = outcomes.iter().map(|o| o.sent).sum();
    let end = outcomes
        .iter()
        .map(|o| o.publish_end)
        .max()
        .unwrap_or(start);
    let duration_s = end.duration_since(start).as_secs_f64();
    PublishReport {
        publishers: p.clients,
        qos: p.qos.as_u8(),
        payload_size: p.size,
        rate_per_publisher: p.rate,
        window: p.window,
        duration_s,
        sent,
        acked: outcomes.iter().map(|o| o.acked).sum(),
        rate: per_second(sent, duration_s),
    }
}

fn receive_report(
    sub: &SubscribeSettings,
    outcomes: &[SubscriberOutcome],
    expected: Option<u64>,
    start_ns: Option<u64>,
) -> ReceiveReport {
    let mut total = Delivery::new(None);
    let mut gaps = 0;
    for outcome in outcomes {
        total.merge(&outcome.delivery);
        gaps += outcome.delivery.gaps();
    }
    let lost = match expected {
        Some(expected) => expected.saturating_sub(total.unique),
        None => gaps,
    };
    let should_have = expected.unwrap_or(total.unique + gaps);
    let from_ns = start_ns.or(total.first_ns).unwrap_or(0);
    let duration_s = total
        .last_ns
        .map_or(0.0, |last| last.saturating_sub(from_ns) as f64 / 1e9);
    ReceiveReport {
        subscribers: sub.clients,
        qos: sub.qos.as_u8(),
        received: total.received,
        unique: total.unique,
        expected,
        lost,
        loss_pct: if should_have == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / should_have as f64
        },
        duplicates: total.duplicates,
        out_of_order: total.out_of_order,
        foreign: total.foreign,
        duration_s,
        rate: per_second(total.received, duration_s),
        latency_us: Latency::of(&total.latency_us),
    }
}

fn collect_errors<'a>(report: &mut Report, errors: impl Iterator<Item = &'a Option<BenchError>>) {
    report
        .errors
        .extend(errors.flatten().map(ToString::to_string));
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

impl Settings {
    /// The broker URL for reports, without credentials.
    fn target_url(&self) -> String {
        format!("mqtt://{}", self.target.addr)
    }
}

/// Subscription QoS for `pubsub`: the flag, or the publishing QoS.
pub(crate) fn sub_qos(flag: Option<u8>, publish: QoS) -> u8 {
    flag.unwrap_or(publish.as_u8())
}
