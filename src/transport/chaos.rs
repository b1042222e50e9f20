//! [`Chaos`]: a decorator that makes any transport misbehave on purpose.
//!
//! The idea is toxiproxy's, in-process: wrap a real transport and, at run
//! time through a [`ChaosControl`] handle, lose, delay (with jitter),
//! duplicate and reorder its outbound datagrams, and cut links one way or
//! both ways. Tests then run real clusters through partitions and lossy
//! links and check that the protocol still converges.
//!
//! Outbound datagrams go through, in order: the size check (a payload over
//! `max_payload` is refused with [`TransportError::TooLarge`] as by any
//! transport), the outbound blocks, loss, duplication, then delay. A
//! datagram with no delay is sent at once by the caller's `send`; a delayed
//! one is queued for a background task that sends it when due, so `send`
//! never waits for the delay. Inbound datagrams from a blocked address are
//! dropped in `recv`. Every drop is counted in [`ChaosStats`].
//!
//! All randomness comes from one [`StdRng`] seeded at construction, so with
//! the same seed and the same sequence of sends the same datagrams are lost
//! and duplicated (delays still race with the clock).

// Delays and reordering are real time on a real socket: the transport reads the clock.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Transport, TransportError};

/// The misbehaviour a [`Chaos`] transport applies to outbound datagrams.
///
/// Plain data; the default is a transparent transport (everything off).
/// Probabilities are clamped to 0.0..=1.0 (NaN counts as 0) when applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosConfig {
    /// Probability that an outbound datagram is silently dropped.
    /// 0.0..=1.0; default 0.
    pub loss: f64,
    /// Probability that a datagram which was not lost is sent twice (each
    /// copy with its own delay, so the copies may arrive apart).
    /// 0.0..=1.0; default 0.
    pub duplicate: f64,
    /// Fixed delay added to every datagram. Default zero (sent at once).
    pub delay: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` for every datagram.
    /// Default zero.
    pub jitter: Duration,
    /// Probability that a datagram is held back by an extra delay drawn
    /// uniformly from `0..=reorder_delay`, so later datagrams overtake it.
    /// 0.0..=1.0; default 0.
    pub reorder: f64,
    /// The largest extra delay of a reordered datagram. Default 20 ms.
    pub reorder_delay: Duration,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            loss: 0.0,
            duplicate: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(20),
        }
    }
}

/// Counters of a [`Chaos`] transport since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChaosStats {
    /// Datagrams handed to `send` (refused oversized ones excluded).
    pub offered: u64,
    /// Copies handed to the inner transport, duplicates included (sent at
    /// once or when their delay ended).
    pub forwarded: u64,
    /// Outbound datagrams dropped by [`ChaosConfig::loss`].
    pub dropped_loss: u64,
    /// Outbound datagrams dropped because their destination is blocked.
    pub dropped_blocked_to: u64,
    /// Inbound datagrams dropped because their source is blocked.
    pub dropped_blocked_from: u64,
    /// Extra copies made by [`ChaosConfig::duplicate`].
    pub duplicated: u64,
    /// Copies that were held back by a delay, jitter or reordering.
    pub delayed: u64,
    /// Copies held back by [`ChaosConfig::reorder`].
    pub reordered: u64,
    /// Delayed copies dropped because too many were already waiting
    /// (more than [`Chaos::MAX_DELAYED`]).
    pub dropped_queue_full: u64,
    /// Delayed copies the inner transport refused when they were due.
    pub delayed_send_errors: u64,
}

impl ChaosStats {
    /// Every datagram dropped on purpose, either way.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss
            + self.dropped_blocked_to
            + self.dropped_blocked_from
            + self.dropped_queue_full
    }
}

#[derive(Default)]
struct Counters {
    offered: AtomicU64,
    forwarded: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_blocked_to: AtomicU64,
    dropped_blocked_from: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
    reordered: AtomicU64,
    dropped_queue_full: AtomicU64,
    delayed_send_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Settings {
    config: ChaosConfig,
    blocked_to: HashSet<SocketAddr>,
    blocked_from: HashSet<SocketAddr>,
    rng: StdRng,
}

struct Shared {
    settings: Mutex<Settings>,
    counters: Counters,
}

/// A cloneable handle that changes a [`Chaos`] transport's behaviour while
/// it runs (for example after the transport was moved into a node).
///
/// Every change applies to datagrams sent or received from then on;
/// datagrams already delayed keep their schedule.
#[derive(Clone)]
pub struct ChaosControl {
    shared: Arc<Shared>,
}

impl ChaosControl {
    fn lock(&self) -> MutexGuard<'_, Settings> {
        self.shared
            .settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The configuration in force.
    pub fn config(&self) -> ChaosConfig {
        self.lock().config.clone()
    }

    /// Replaces the whole configuration. Blocks are kept.
    pub fn set_config(&self, config: ChaosConfig) {
        self.lock().config = config;
    }

    /// Sets [`ChaosConfig::loss`].
    pub fn set_loss(&self, p: f64) {
        self.lock().config.loss = p;
    }

    /// Sets [`ChaosConfig::duplicate`].
    pub fn set_duplicate(&self, p: f64) {
        self.lock().config.duplicate = p;
    }

    /// Sets [`ChaosConfig::delay`] and [`ChaosConfig::jitter`].
    pub fn set_delay(&self, delay: Duration, jitter: Duration) {
        let mut s = self.lock();
        s.config.delay = delay;
        s.config.jitter = jitter;
    }

    /// Sets [`ChaosConfig::reorder`] and [`ChaosConfig::reorder_delay`].
    pub fn set_reorder(&self, p: f64, max_extra_delay: Duration) {
        let mut s = self.lock();
        s.config.reorder = p;
        s.config.reorder_delay = max_extra_delay;
    }

    /// Turns every misbehaviour off and heals every block: the transport is
    /// transparent again.
    pub fn calm(&self) {
        let mut s = self.lock();
        s.config = ChaosConfig::default();
        s.blocked_to.clear();
        s.blocked_from.clear();
    }

    /// Cuts both directions between this transport and each of `peers`:
    /// datagrams to them are dropped on `send`, datagrams from them on
    /// `recv`. Wrapping only one side of a link is therefore enough.
    pub fn partition(&self, peers: impl IntoIterator<Item = SocketAddr>) {
        let mut s = self.lock();
        for peer in peers {
            s.blocked_to.insert(peer);
            s.blocked_from.insert(peer);
        }
    }

    /// Cuts the one-way link from this transport to `peer`: sends to it are
    /// dropped, datagrams from it still arrive.
    pub fn block_to(&self, peer: SocketAddr) {
        self.lock().blocked_to.insert(peer);
    }

    /// Cuts the one-way link from `peer` to this transport: its datagrams
    /// are dropped on `recv`, sends to it still go out.
    pub fn block_from(&self, peer: SocketAddr) {
        self.lock().blocked_from.insert(peer);
    }

    /// Restores both directions to `peer`.
    pub fn unblock(&self, peer: SocketAddr) {
        let mut s = self.lock();
        s.blocked_to.remove(&peer);
        s.blocked_from.remove(&peer);
    }

    /// Restores every block and partition. Loss, delay, duplication and
    /// reordering settings stay.
    pub fn heal(&self) {
        let mut s = self.lock();
        s.blocked_to.clear();
        s.blocked_from.clear();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ChaosStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ChaosStats {
            offered: get(&c.offered),
            forwarded: get(&c.forwarded),
            dropped_loss: get(&c.dropped_loss),
            dropped_blocked_to: get(&c.dropped_blocked_to),
            dropped_blocked_from: get(&c.dropped_blocked_from),
            duplicated: get(&c.duplicated),
            delayed: get(&c.delayed),
            reordered: get(&c.reordered),
            dropped_queue_full: get(&c.dropped_queue_full),
            delayed_send_errors: get(&c.delayed_send_errors),
        }
    }

    /// Decides the fate of one outbound datagram: for each copy to send,
    /// how long to hold it back. Empty when it is dropped.
    fn plan(&self, to: SocketAddr) -> Vec<Duration> {
        let counters = &self.shared.counters;
        let mut s = self.lock();
        if s.blocked_to.contains(&to) {
            bump(&counters.dropped_blocked_to);
            return Vec::new();
        }
        let Settings { config, rng, .. } = &mut *s;
        if chance(rng, config.loss) {
            bump(&counters.dropped_loss);
            return Vec::new();
        }
        let copies = if chance(rng, config.duplicate) {
            bump(&counters.duplicated);
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let mut delay = config.delay + up_to(rng, config.jitter);
                if chance(rng, config.reorder) {
                    bump(&counters.reordered);
                    delay += up_to(rng, config.reorder_delay);
                }
                delay
            })
            .collect()
    }

    fn blocks_from(&self, from: SocketAddr) -> bool {
        let blocked = self.lock().blocked_from.contains(&from);
        if blocked {
            bump(&self.shared.counters.dropped_blocked_from);
        }
        blocked
    }
}

impl fmt::Debug for ChaosControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("ChaosControl")
            .field("config", &s.config)
            .field("blocked_to", &s.blocked_to)
            .field("blocked_from", &s.blocked_from)
            .finish_non_exhaustive()
    }
}

/// Draws `true` with probability `p` (clamped; NaN is 0). Draws nothing
/// when `p` is 0, so turning one knob on does not shift the others' draws.
fn chance(rng: &mut StdRng, p: f64) -> bool {
    if p.is_nan() || p <= 0.0 {
        false
    } else {
        p >= 1.0 || rng.random::<f64>() < p
    }
}

/// A duration drawn uniformly from `0..=max` (no draw when `max` is 0).
fn up_to(rng: &mut StdRng, max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

/// A datagram waiting for its delay to end.
struct Delayed {
    due: Instant,
    to: SocketAddr,
    payload: Bytes,
}

/// A [`Transport`] decorator that loses, delays, duplicates and reorders
/// the datagrams of `T`, and cuts links, as told by its [`ChaosControl`].
///
/// With everything off (the default) it is transparent and passes the
/// conformance suite. `max_payload()` is the inner transport's. `recv` is
/// cancellation safe: it awaits only the inner `recv`. Delayed datagrams
/// are sent by one background task, started on the first delayed send
/// (which must run inside a tokio runtime) and ended when the `Chaos` is
/// dropped; datagrams still waiting then are lost, like packets in flight.
///
/// ```no_run
/// # async fn demo() -> Result<(), scuttlewire::NodeError> {
/// use scuttlewire::transport::{Chaos, Udp};
/// use scuttlewire::{Config, Node};
/// let chaos = Chaos::new(Udp::bind("127.0.0.1:0".parse().unwrap()).await?, 7);
/// let control = chaos.control();
/// let node = Node::builder(Config::local().with_name("a")).start(chaos).await?;
/// control.set_loss(0.3);
/// control.partition(["127.0.0.1:7001".parse().unwrap()]);
/// control.heal();
/// # Ok(()) }
/// ```
pub struct Chaos<T> {
    inner: Arc<T>,
    control: ChaosControl,
    delayed: OnceLock<Delayer>,
}

/// The background sender of delayed datagrams.
struct Delayer {
    queue: mpsc::Sender<Delayed>,
    task: JoinHandle<()>,
}

impl<T: Transport> Chaos<T> {
    /// Most delayed datagrams waiting at once; beyond it they are dropped
    /// and counted in [`ChaosStats::dropped_queue_full`], so memory stays
    /// bounded whatever the send rate and delay.
    pub const MAX_DELAYED: usize = 16_384;

    /// Wraps `inner`, transparent until told otherwise, with its RNG seeded
    /// by `seed`.
    pub fn new(inner: T, seed: u64) -> Chaos<T> {
        Self::with_config(inner, ChaosConfig::default(), seed)
    }

    /// Wraps `inner` with `config` in force from the start.
    pub fn with_config(inner: T, config: ChaosConfig, seed: u64) -> Chaos<T> {
        let shared = Shared {
            settings: Mutex::new(Settings {
                config,
                blocked_to: HashSet::new(),
                blocked_from: HashSet::new(),
                rng: StdRng::seed_from_u64(seed),
            }),
            counters: Counters::default(),
        };
        Chaos {
            inner: Arc::new(inner),
            control: ChaosControl {
                shared: Arc::new(shared),
            },
            delayed: OnceLock::new(),
        }
    }

    /// A handle to change the behaviour at run time; clone it freely.
    pub fn control(&self) -> ChaosControl {
        self.control.clone()
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Queues one copy for later; drops it (counted) if the queue is full.
    fn send_later(&self, to: SocketAddr, payload: Bytes, delay: Duration) {
        let counters = &self.control.shared.counters;
        let delayer = self.delayed.get_or_init(|| {
            let (queue, rx) = mpsc::channel(Self::MAX_DELAYED);
            let task = tokio::spawn(deliver_when_due(
                Arc::downgrade(&self.inner),
                self.control.clone(),
                rx,
            ));
            Delayer { queue, task }
        });
        let item = Delayed {
            due: Instant::now() + delay,
            to,
            payload,
        };
        if delayer.queue.try_send(item).is_ok() {
            bump(&counters.delayed);
        } else {
            bump(&counters.dropped_queue_full);
        }
    }
}

/// Sends queued datagrams when they are due, earliest first. Ends when the
/// queue's sender (the `Chaos`) is gone or the inner transport is dropped.
async fn deliver_when_due<T: Transport>(
    inner: Weak<T>,
    control: ChaosControl,
    mut queue: mpsc::Receiver<Delayed>,
) {
    let counters = &control.shared.counters;
    // Keyed by (due, arrival) so equal deadlines keep their send order.
    let mut waiting: BTreeMap<(Instant, u64), Delayed> = BTreeMap::new();
    let mut arrivals = 0u64;
    loop {
        let next_due = waiting.first_key_value().map(|(&(due, _), _)| due);
        tokio::select! {
            item = queue.recv() => match item {
                Some(d) => {
                    arrivals += 1;
                    waiting.insert((d.due, arrivals), d);
                }
                None => return,
            },
            () = sleep_until(next_due) => {
                let now = Instant::now();
                while let Some(entry) = waiting.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let d = entry.remove();
                    let Some(inner) = inner.upgrade() else { return };
                    match inner.send(d.to, d.payload).await {
                        Ok(()) => bump(&counters.forwarded),
                        Err(TransportError::Closed) => return,
                        Err(_) => bump(&counters.delayed_send_errors),
                    }
                }
            }
        }
    }
}

/// Sleeps until `due`, or forever when there is nothing to wait for.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

impl<T> Drop for Chaos<T> {
    fn drop(&mut self) {
        if let Some(delayer) = self.delayed.get() {
            delayer.task.abort();
        }
    }
}

impl<T: Transport> Transport for Chaos<T> {
    /// Refuses payloads over `max_payload` with [`TransportError::TooLarge`];
    /// otherwise applies the configured misbehaviour and returns `Ok` for
    /// dropped and delayed datagrams alike. Copies without delay are sent
    /// at once and report the inner transport's error.
    async fn send(&self, to: SocketAddr, payload: Bytes) -> Result<(), TransportError> {
        TransportError::check_len(payload.len(), self.inner.max_payload())?;
        let counters = &self.control.shared.counters;
        bump(&counters.offered);
        let mut result = Ok(());
        for delay in self.control.plan(to) {
            if delay.is_zero() || tokio::runtime::Handle::try_current().is_err() {
                let sent = self.inner.send(to, payload.clone()).await;
                if sent.is_ok() {
                    bump(&counters.forwarded);
                }
                if result.is_ok() {
                    result = sent;
                }
            } else {
                self.send_later(to, payload.clone(), delay);
            }
        }
        result
    }

    /// Receives the next datagram whose source is not blocked.
    async fn recv(&self) -> Result<(SocketAddr, Bytes), TransportError> {
        loop {
            let (from, payload) = self.inner.recv().await?;
            if !self.control.blocks_from(from) {
                return Ok((from, payload));
            }
        }
    }

    fn max_payload(&self) -> usize {
        self.inner.max_payload()
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    /// Closes the inner transport. Datagrams still held back by a delay
    /// count as in flight on the simulated network, not as queued: they
    /// are not waited for, and are lost if the inner transport refuses
    /// them or this transport is dropped first.
    async fn close(&self) {
        self.inner.close().await;
    }

    fn os_receive_drops(&self) -> Option<u64> {
        self.inner.os_receive_drops()
    }
}

impl<T: fmt::Debug> fmt::Debug for Chaos<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("inner", &self.inner)
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Memory, MemoryNetwork, conformance};

    /// Receives whatever arrives within `wait` of the last datagram.
    async fn drain(t: &Memory, wait: Duration) -> Vec<Bytes> {
        let mut got = Vec::new();
        while let Ok(Ok((_, b))) = tokio::time::timeout(wait, t.recv()).await {
            got.push(b);
        }
        got
    }

    fn numbered(i: u16) -> Bytes {
        Bytes::copy_from_slice(&i.to_be_bytes())
    }

    async fn lossy_pattern(seed: u64) -> Vec<Bytes> {
        let net = MemoryNetwork::new(1);
        let config = ChaosConfig {
            loss: 0.3,
            ..ChaosConfig::default()
        };
        let (a, b) = (Chaos::with_config(net.bind(), config, seed), net.bind());
        for i in 0..200 {
            a.send(b.local_addr(), numbered(i)).await.unwrap();
        }
        assert_eq!(a.control().stats().offered, 200);
        drain(&b, Duration::from_millis(5)).await
    }

    #[tokio::test]
    async fn loss_is_deterministic_by_seed() {
        let first = lossy_pattern(7).await;
        assert_eq!(first, lossy_pattern(7).await);
        assert_ne!(first, lossy_pattern(8).await);
        assert!((100..180).contains(&first.len()), "{}", first.len());
    }

    #[tokio::test]
    async fn full_duplication_sends_every_datagram_twice() {
        let net = MemoryNetwork::new(1);
        let (a, b) = (Chaos::new(net.bind(), 1), net.bind());
        a.control().set_duplicate(1.0);
        for i in 0..10 {
            a.send(b.local_addr(), numbered(i)).await.unwrap();
        }
        let got = drain(&b, Duration::from_millis(5)).await;
        let want: Vec<Bytes> = (0..10).flat_map(|i| [numbered(i), numbered(i)]).collect();
        assert_eq!(got, want);
        let stats = a.control().stats();
        assert_eq!((stats.duplicated, stats.forwarded), (10, 20));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_datagrams_arrive_after_their_delay() {
        let net = MemoryNetwork::new(1);
        let (a, b) = (Chaos::new(net.bind(), 1), net.bind());
        a.control()
            .set_delay(Duration::from_millis(100), Duration::from_millis(50));
        let start = Instant::now();
        a.send(b.local_addr(), numbered(1)).await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(99), b.recv())
                .await
                .is_err(),
            "arrived before its delay"
        );
        let (_, got) = b.recv().await.unwrap();
        assert_eq!(got, numbered(1));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(100) && waited <= Duration::from_millis(151));
        assert_eq!(a.control().stats().delayed, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn reordering_lets_later_datagrams_overtake() {
        let net = MemoryNetwork::new(1);
        let (a, b) = (Chaos::new(net.bind(), 3), net.bind());
        a.control().set_reorder(0.5, Duration::from_millis(30));
        for i in 0..100 {
            a.send(b.local_addr(), numbered(i)).await.unwrap();
        }
        let got = drain(&b, Duration::from_millis(100)).await;
        let mut sorted = got.clone();
        sorted.sort();
        let want: Vec<Bytes> = (0..100).map(numbered).collect();
        assert_eq!(sorted, want, "nothing lost or duplicated");
        assert_ne!(got, want, "order unchanged");
        assert!(a.control().stats().reordered > 0);
    }

    #[tokio::test]
    async fn partition_blocks_both_ways_until_heal() {
        let net = MemoryNetwork::new(1);
        let (a, b) = (Chaos::new(net.bind(), 1), net.bind());
        let control = a.control();
        control.partition([b.local_addr()]);
        a.send(b.local_addr(), numbered(1)).await.unwrap();
        b.send(a.local_addr(), numbered(2)).await.unwrap();
        assert!(drain(&b, Duration::from_millis(5)).await.is_empty());
        assert!(
            tokio::time::timeout(Duration::from_millis(5), a.recv())
                .await
                .is_err()
        );
        let stats = control.stats();
        assert_eq!(
            (stats.dropped_blocked_to, stats.dropped_blocked_from),
            (1, 1)
        );

        control.heal();
        a.send(b.local_addr(), numbered(3)).await.unwrap();
        b.send(a.local_addr(), numbered(4)).await.unwrap();
        assert_eq!(drain(&b, Duration::from_millis(5)).await, [numbered(3)]);
        assert_eq!(a.recv().await.unwrap().1, numbered(4));
    }

    #[tokio::test]
    async fn one_way_blocks_leave_the_other_direction() {
        let net = MemoryNetwork::new(1);
        let (a, b) = (Chaos::new(net.bind(), 1), net.bind());
        a.control().block_to(b.local_addr());
        a.send(b.local_addr(), numbered(1)).await.unwrap();
        b.send(a.local_addr(), numbered(2)).await.unwrap();
        assert!(drain(&b, Duration::from_millis(5)).await.is_empty());
        assert_eq!(a.recv().await.unwrap().1, numbered(2));

        a.control().unblock(b.local_addr());
        a.control().block_from(b.local_addr());
        a.send(b.local_addr(), numbered(3)).await.unwrap();
        b.send(a.local_addr(), numbered(4)).await.unwrap();
        assert_eq!(drain(&b, Duration::from_millis(5)).await, [numbered(3)]);
        assert!(
            tokio::time::timeout(Duration::from_millis(5), a.recv())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn oversized_payloads_are_refused_before_any_chaos() {
        let net = MemoryNetwork::new(1);
        let (a, b) = (Chaos::new(net.bind(), 1), net.bind());
        a.control().set_loss(1.0);
        let big = Bytes::from(vec![0; a.max_payload() + 1]);
        let err = a.send(b.local_addr(), big).await.unwrap_err();
        assert!(matches!(err, TransportError::TooLarge { .. }), "{err}");
        assert_eq!(a.control().stats().offered, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_chaos_ends_its_task_and_frees_the_inner_transport() {
        let net = MemoryNetwork::new(1);
        let (a, b) = (Chaos::new(net.bind(), 1), net.bind());
        let addr = a.local_addr();
        a.control()
            .set_delay(Duration::from_secs(1), Duration::ZERO);
        a.send(b.local_addr(), numbered(1)).await.unwrap();
        drop(a);
        tokio::task::yield_now().await;
        assert!(net.bind_addr(addr).is_ok(), "inner transport still alive");
        assert!(
            tokio::time::timeout(Duration::from_secs(2), b.recv())
                .await
                .is_err(),
            "a delayed datagram outlived its transport"
        );
    }

    #[tokio::test]
    async fn transparent_chaos_over_memory_conforms() {
        let net = MemoryNetwork::new(3);
        let mut seed = 0;
        conformance::run_all(|| {
            seed += 1;
            std::future::ready(Chaos::new(net.bind(), seed))
        })
        .await;
    }
}
