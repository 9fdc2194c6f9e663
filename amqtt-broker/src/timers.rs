//! One timer for every connection: a coarse wheel of deadlines driven by a single task, and the
//! broker's shutdown signal to the connection tasks.
//!
//! A tokio `Sleep` per connection costs 112 bytes in every connection's task, idle or not. Here a
//! connection registers its next deadline (connect timeout, keep-alive, a backpressure check)
//! rounded up to a [`TICK`], with its task's waker, in a map of buckets by tick; the driver task
//! ([`drive`]) sleeps until the earliest bucket, then wakes every waker due. A deadline is
//! therefore never early and at most one tick late: keep-alive expiry stays at 1.5 × the
//! keep-alive ([MQTT-3.1.2-24]) plus up to 100 ms.
//!
//! Each connection has at most one entry (re-arming removes the old one), and a connection has
//! an entry while it runs (without a deadline it registers at [`IDLE_RECHECK`]), so
//! [`Timers::stop`] reaches every connection task: it raises the stop flag and wakes every
//! entry; the tasks see the flag at their next poll ([`Timers::is_stopping`], one atomic load).
//!
//! Locking: one `parking_lot::Mutex` around the map, taken when a connection arms or disarms
//! (once per deadline, not per packet: a later deadline keeps the earlier entry, which fires
//! early and is re-armed then) and when the driver fires a bucket. Wakers are woken after the
//! lock is released.

use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use crate::broker::Shared;

/// The wheel's resolution: deadlines are rounded up to a multiple of it.
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// A connection without a deadline registers this far ahead, so that shutdown still reaches it.
pub(crate) const IDLE_RECHECK: Duration = Duration::from_secs(3600);

/// The shared deadline wheel (see the module docs).
#[derive(Debug)]
pub(crate) struct Timers {
    /// Tick 0; ticks count [`TICK`]s from here.
    origin: Instant,
    /// Connection id and waker of every armed connection, by tick.
    due: Mutex<BTreeMap<u64, Vec<(u64, Waker)>>>,
    /// Every tick up to this one has fired (its entries were woken and removed).
    fired: AtomicU64,
    /// The driver task, woken when an entry earlier than every other one is added.
    driver: AtomicWaker,
    /// The broker is shutting down: every connection closes.
    stopping: AtomicBool,
    /// The driver task was spawned.
    driven: AtomicBool,
}

impl Timers {
    /// An empty wheel starting now (tokio's clock, so paused-clock tests steer it).
    pub(crate) fn new() -> Timers {
        Timers {
            origin: tokio::time::Instant::now().into_std(),
            due: Mutex::new(BTreeMap::new()),
            fired: AtomicU64::new(0),
            driver: AtomicWaker::new(),
            stopping: AtomicBool::new(false),
            driven: AtomicBool::new(false),
        }
    }

    /// The first tick at or after `deadline` (never 0, so 0 can mean "not armed").
    pub(crate) fn tick_at_or_after(&self, deadline: Instant) -> u64 {
        let since = deadline.saturating_duration_since(self.origin);
        let tick = TICK.as_nanos();
        let ticks = since.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }

    /// The tick that `now` is in (every tick up to it is due).
    fn tick_of(&self, now: Instant) -> u64 {
        let ticks = now.saturating_duration_since(self.origin).as_nanos() / TICK.as_nanos();
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// When `tick` is due.
    fn instant_of(&self, tick: u64) -> Instant {
        let nanos = u128::from(tick).saturating_mul(TICK.as_nanos());
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        self.origin + Duration::from_nanos(nanos)
    }

    /// Whether the entry armed at `tick` has fired (and is gone from the wheel).
    pub(crate) fn has_fired(&self, tick: u64) -> bool {
        tick <= self.fired.load(Ordering::Acquire)
    }

    /// Registers connection `conn_id`'s `waker` at `tick`, removing its entry at `old` (0: none).
    /// Returns `false`, registering nothing, when `tick` has already fired: the deadline is due.
    pub(crate) fn arm(&self, conn_id: u64, old: u64, tick: u64, waker: &Waker) -> bool {
        let wake_driver = {
            let mut due = self.due.lock();
            if old != 0 {
                remove(&mut due, conn_id, old);
            }
            if self.has_fired(tick) {
                return false;
            }
            let earliest = due.first_key_value().is_none_or(|(&first, _)| tick < first);
            due.entry(tick).or_default().push((conn_id, waker.clone()));
            earliest
        };
        if wake_driver {
            self.driver.wake();
        }
        true
    }

    /// Removes connection `conn_id`'s entry at `tick` (0 or already fired: nothing to do).
    pub(crate) fn disarm(&self, conn_id: u64, tick: u64) {
        if tick == 0 || self.has_fired(tick) {
            return;
        }
        remove(&mut self.due.lock(), conn_id, tick);
    }

    /// Whether the broker is shutting down (every connection task closes).
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Signals shutdown to every connection task and to the driver.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        // Taken under the lock: a connection arming after this sees the flag at its next poll.
        let all = std::mem::take(&mut *self.due.lock());
        for (_, wakers) in all {
            for (_, waker) in wakers {
                waker.wake();
            }
        }
        self.driver.wake();
    }

    /// Whether the driver task still has to be spawned (true once).
    pub(crate) fn needs_driver(&self) -> bool {
        !self.driven.swap(true, Ordering::AcqRel)
    }

    /// Wakes and removes every entry due at `now`.
    fn fire(&self, now: Instant) {
        let now_tick = self.tick_of(now);
        let fired = {
            let mut due = self.due.lock();
            let later = due.split_off(&now_tick.saturating_add(1));
            let fired = std::mem::replace(&mut *due, later);
            self.fired.fetch_max(now_tick, Ordering::AcqRel);
            fired
        };
        for (_, wakers) in fired {
            for (_, waker) in wakers {
                waker.wake();
            }
        }
    }

    /// The earliest tick with entries.
    fn first_tick(&self) -> Option<u64> {
        self.due.lock().first_key_value().map(|(&tick, _)| tick)
    }
}

fn remove(due: &mut BTreeMap<u64, Vec<(u64, Waker)>>, conn_id: u64, tick: u64) {
    let Some(entries) = due.get_mut(&tick) else {
        return;
    };
    if let Some(i) = entries.iter().position(|(id, _)| *id == conn_id) {
        entries.swap_remove(i);
    }
    if entries.is_empty() {
        due.remove(&tick);
    } else if entries.capacity() > 2 * entries.len() + 8 {
        // A bucket emptied by many disconnects does not keep its peak size.
        entries.shrink_to_fit();
    }
}

/// The driver task: sleeps until the earliest entry is due, wakes what is due, until shutdown.
pub(crate) async fn drive(shared: Arc<Shared>) {
    let timers = &shared.timers;
    let sleep = tokio::time::sleep(IDLE_RECHECK);
    tokio::pin!(sleep);
    let mut sleeping_for = None;
    loop {
        let woke = poll_fn(|cx| {
            timers.driver.register(cx.waker());
            if timers.is_stopping() {
                return Poll::Ready(false);
            }
            let Some(first) = timers.first_tick() else {
                return Poll::Pending;
            };
            if sleeping_for != Some(first) {
                sleep
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(timers.instant_of(first)));
                sleeping_for = Some(first);
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            Poll::Pending
        })
        .await;
        if !woke {
            break;
        }
        sleeping_for = None;
        timers.fire(tokio::time::Instant::now().into_std());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn a_deadline_is_rounded_up_to_the_next_tick_and_never_fires_early() {
        let timers = Timers::new();
        let origin = timers.origin;
        assert_eq!(timers.tick_at_or_after(origin), 1);
        assert_eq!(timers.tick_at_or_after(origin + TICK), 1);
        assert_eq!(
            timers.tick_at_or_after(origin + TICK + Duration::from_nanos(1)),
            2
        );
        assert!(
            timers.instant_of(timers.tick_at_or_after(origin + TICK * 3 / 2))
                >= origin + TICK * 3 / 2
        );
    }

    #[test]
    fn firing_wakes_and_removes_only_the_entries_due() {
        let timers = Timers::new();
        let (early, early_waker) = counting();
        let (late, late_waker) = counting();
        assert!(timers.arm(1, 0, 2, &early_waker));
        assert!(timers.arm(2, 0, 5, &late_waker));
        timers.fire(timers.instant_of(3));
        assert_eq!(early.0.load(Ordering::SeqCst), 1);
        assert_eq!(late.0.load(Ordering::SeqCst), 0);
        assert!(timers.has_fired(2) && !timers.has_fired(5));
        assert_eq!(timers.first_tick(), Some(5));
        // A tick already fired is due at once and registers nothing.
        assert!(!timers.arm(1, 0, 3, &early_waker));
        assert_eq!(timers.first_tick(), Some(5));
    }

    #[test]
    fn rearming_moves_the_entry_and_disarming_removes_it() {
        let timers = Timers::new();
        let (count, waker) = counting();
        assert!(timers.arm(7, 0, 10, &waker));
        assert!(timers.arm(7, 10, 4, &waker));
        assert_eq!(timers.first_tick(), Some(4));
        assert_eq!(timers.due.lock().len(), 1);
        timers.disarm(7, 4);
        assert_eq!(timers.first_tick(), None);
        timers.fire(timers.instant_of(20));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn stop_wakes_every_entry_and_raises_the_flag() {
        let timers = Timers::new();
        let (a, a_waker) = counting();
        let (b, b_waker) = counting();
        timers.arm(1, 0, 3, &a_waker);
        timers.arm(2, 0, 30_000, &b_waker);
        assert!(!timers.is_stopping());
        timers.stop();
        assert!(timers.is_stopping());
        assert_eq!(a.0.load(Ordering::SeqCst) + b.0.load(Ordering::SeqCst), 2);
        assert_eq!(timers.first_tick(), None);
    }
}
