//! Opening many connections: paced by a connection rate, limited in concurrency, each
//! handshake in its own task so they spread over the runtime's threads.

use std::sync::Arc;
use std::time::Duration;

use mqtt_codec::QoS;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::BenchError;
use crate::link::Link;
use crate::stats::Counters;
use crate::transport::Target;

/// Handshakes in progress at once at most when no rate is given.
pub(crate) const DEFAULT_CONCURRENCY: usize = 256;

/// One connection to open, optionally with a subscription.
#[derive(Clone, Debug)]
pub(crate) struct Opening {
    /// Client id.
    pub(crate) client_id: String,
    /// Filter and QoS to subscribe to once connected.
    pub(crate) subscribe: Option<(String, QoS)>,
}

/// Pacing of new connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    /// New connections per second, or unpaced.
    pub(crate) rate: Option<f64>,
    /// Handshakes in progress at once at most.
    pub(crate) concurrency: usize,
}

/// Opens every connection (and subscription), in order; the first failure aborts the others
/// and is returned.
pub(crate) async fn open_all(
    target: &Target,
    openings: Vec<Opening>,
    keep_alive: u16,
    pace: Pace,
    counters: &Arc<Counters>,
) -> Result<Vec<Link>, BenchError> {
    let total = openings.len();
    let mut tasks = JoinSet::new();
    let permits = Arc::new(Semaphore::new(pace.concurrency.max(1)));
    let start = Instant::now();
    let mut links: Vec<Option<Link>> = (0..total).map(|_| None).collect();
    for (index, opening) in openings.into_iter().enumerate() {
        if let Some(rate) = pace.rate {
            tokio::time::sleep_until(start + Duration::from_secs_f64(index as f64 / rate)).await;
        }
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BenchError::Unexpected("closed semaphore"))?;
        // Fail fast: stop starting handshakes once one has failed.
        while let Some(joined) = tasks.try_join_next() {
            store(joined, &mut links)?;
        }
        let target = target.clone();
        let counters = counters.clone();
        tasks.spawn(async move {
            let result = open_one(&target, opening, keep_alive).await;
            drop(permit);
            if result.is_ok() {
                Counters::add(&counters.connected, 1);
            }
            (index, result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        store(joined, &mut links)?;
    }
    Ok(links.into_iter().flatten().collect())
}

type Joined = Result<(usize, Result<Link, BenchError>), tokio::task::JoinError>;

/// Puts a finished handshake in its slot, or returns its error.
fn store(joined: Joined, links: &mut [Option<Link>]) -> Result<(), BenchError> {
    let (index, result) = joined.map_err(|e| BenchError::Io(std::io::Error::other(e)))?;
    if let Some(slot) = links.get_mut(index) {
        *slot = Some(result?);
    }
    Ok(())
}

/// Opens one connection and subscribes if asked to.
pub(crate) async fn open_one(
    target: &Target,
    opening: Opening,
    keep_alive: u16,
) -> Result<Link, BenchError> {
    let mut link = Link::open(target, opening.client_id, keep_alive).await?;
    if let Some((filter, qos)) = &opening.subscribe {
        link.subscribe(filter, *qos).await?;
    }
    Ok(link)
}
