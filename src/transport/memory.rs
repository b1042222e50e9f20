//! An in-process network for tests and examples.
//!
//! [`MemoryNetwork`] plays the part of the wire: every [`Memory`] transport
//! bound on it gets an address, and `send` hands the datagram straight to the
//! destination's inbox. What makes it useful is what a real network does to
//! datagrams, on demand and changeable at run time: an MTU (global and per
//! link), random loss from a seeded RNG, one-way cuts and two-way partitions,
//! and counters per link. The same seed and the same sequence of sends give
//! the same losses, so tests that use loss stay reproducible.
//!
//! Delivery happens inside `send`, under one lock: a datagram is either in
//! the destination's inbox when `send` returns or it was dropped (and
//! counted). There is no latency model here; `sim` has one.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use super::{MAX_DATAGRAM, Transport, TransportError};

/// One datagram waiting in an inbox: where it came from and its bytes.
type Datagram = (SocketAddr, Bytes);

/// First port handed out by [`MemoryNetwork::bind`].
const FIRST_PORT: u16 = 10_000;

/// Packet counters for one link, one address or the whole network.
///
/// `packets_sent` counts every datagram accepted by `send` (refusals with
/// [`TransportError::TooLarge`] are not sent and not counted); each sent
/// datagram is then counted exactly once as delivered or dropped, so
/// `packets_sent == packets_delivered + packets_dropped` always holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams accepted by `send`.
    pub packets_sent: u64,
    /// Payload bytes of those datagrams.
    pub bytes_sent: u64,
    /// Datagrams put in the destination's inbox.
    pub packets_delivered: u64,
    /// Datagrams lost: random loss, a cut link, no transport bound at the
    /// destination, or the destination's inbox full.
    pub packets_dropped: u64,
}

impl LinkStats {
    fn add(&mut self, other: &LinkStats) {
        self.packets_sent += other.packets_sent;
        self.bytes_sent += other.bytes_sent;
        self.packets_delivered += other.packets_delivered;
        self.packets_dropped += other.packets_dropped;
    }
}

/// An in-process datagram network with MTU, loss, partitions and counters.
///
/// Cheap to clone: clones share one network. The network lives as long as
/// any clone or any [`Memory`] bound on it. Every knob can be changed while
/// transports are in use and applies to the next `send`.
#[derive(Clone)]
pub struct MemoryNetwork {
    state: Arc<Mutex<State>>,
}

struct Inbox {
    /// Distinguishes this binding from a later one at the same address, so a
    /// dropped transport never unbinds its successor.
    id: u64,
    tx: mpsc::Sender<Datagram>,
}

struct State {
    rng: StdRng,
    mtu: usize,
    loss: f64,
    link_mtu: HashMap<(SocketAddr, SocketAddr), usize>,
    link_loss: HashMap<(SocketAddr, SocketAddr), f64>,
    cuts: HashSet<(SocketAddr, SocketAddr)>,
    inboxes: HashMap<SocketAddr, Inbox>,
    stats: HashMap<(SocketAddr, SocketAddr), LinkStats>,
    next_auto: u64,
    next_id: u64,
}

impl MemoryNetwork {
    /// Default MTU of a new network, in bytes: the same budget as
    /// [`super::UdpConfig`]'s default, so tests see realistic packet sizes.
    pub const DEFAULT_MTU: usize = 1_400;

    /// Datagrams an inbox holds before further ones are dropped (and
    /// counted), like a full socket receive buffer.
    pub const INBOX_CAPACITY: usize = 4_096;

    /// A network with MTU [`Self::DEFAULT_MTU`], no loss and no cuts.
    /// `seed` drives the loss RNG.
    pub fn new(seed: u64) -> Self {
        let state = State {
            rng: StdRng::seed_from_u64(seed),
            mtu: Self::DEFAULT_MTU,
            loss: 0.0,
            link_mtu: HashMap::new(),
            link_loss: HashMap::new(),
            cuts: HashSet::new(),
            inboxes: HashMap::new(),
            stats: HashMap::new(),
            next_auto: 0,
            next_id: 0,
        };
        MemoryNetwork {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent data
        // (every update is a single assignment), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds a transport at a fresh address: `127.0.0.1:10000`, then the
    /// next port, moving on to `127.0.0.2` when ports run out. Addresses
    /// taken with [`Self::bind_addr`] are skipped.
    pub fn bind(&self) -> Memory {
        let mut state = self.lock();
        let addr = loop {
            let ports = u64::from(u16::MAX - FIRST_PORT) + 1;
            let n = state.next_auto;
            state.next_auto = n.wrapping_add(1);
            let ip = u32::from(Ipv4Addr::LOCALHOST).wrapping_add((n / ports) as u32);
            let port = FIRST_PORT + (n % ports) as u16;
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port);
            if !state.inboxes.contains_key(&addr) {
                break addr;
            }
        };
        self.bind_locked(&mut state, addr)
    }

    /// Binds a transport at `addr`. Port 0 picks the first free port from
    /// 10000 up on that IP. Fails with [`TransportError::Setup`] if the
    /// address is taken (or no port is free).
    pub fn bind_addr(&self, addr: SocketAddr) -> Result<Memory, TransportError> {
        let mut state = self.lock();
        let addr = if addr.port() == 0 {
            (FIRST_PORT..=u16::MAX)
                .map(|port| SocketAddr::new(addr.ip(), port))
                .find(|a| !state.inboxes.contains_key(a))
                .ok_or_else(|| TransportError::Setup(format!("no free port on {}", addr.ip())))?
        } else if state.inboxes.contains_key(&addr) {
            return Err(TransportError::Setup(format!(
                "address {addr} already bound"
            )));
        } else {
            addr
        };
        Ok(self.bind_locked(&mut state, addr))
    }

    fn bind_locked(&self, state: &mut State, addr: SocketAddr) -> Memory {
        let (tx, rx) = mpsc::channel(Self::INBOX_CAPACITY);
        let id = state.next_id;
        state.next_id += 1;
        state.inboxes.insert(addr, Inbox { id, tx });
        Memory {
            network: self.clone(),
            addr,
            id,
            max_payload: AtomicUsize::new(state.mtu),
            inbox: tokio::sync::Mutex::new(rx),
        }
    }

    /// Unbinds `addr`, as if its process died: datagrams to it are dropped
    /// from now on, and its transport's `recv` returns what is already queued
    /// and then [`TransportError::Closed`]; its `send` returns `Closed`.
    /// Returns whether anything was bound there.
    pub fn unbind(&self, addr: SocketAddr) -> bool {
        self.lock().inboxes.remove(&addr).is_some()
    }

    /// Sets the default MTU in bytes for every link without its own
    /// ([`Self::set_link_mtu`]). Values above [`MAX_DATAGRAM`] are clamped.
    /// Transports bound later report it as their `max_payload`.
    pub fn set_mtu(&self, bytes: usize) {
        self.lock().mtu = bytes.min(MAX_DATAGRAM);
    }

    /// Sets the MTU in bytes of the one-way link `from → to`, overriding the
    /// default. Values above [`MAX_DATAGRAM`] are clamped. Sends over it
    /// larger than this fail with [`TransportError::TooLarge`].
    pub fn set_link_mtu(&self, from: SocketAddr, to: SocketAddr, bytes: usize) {
        self.lock()
            .link_mtu
            .insert((from, to), bytes.min(MAX_DATAGRAM));
    }

    /// Sets the probability (0.0 to 1.0, clamped; NaN means 0) that a
    /// datagram on a link without its own loss setting is dropped.
    pub fn set_loss(&self, p: f64) {
        self.lock().loss = probability(p);
    }

    /// Sets the loss probability of the one-way link `from → to`, overriding
    /// the global one. Same range as [`Self::set_loss`].
    pub fn set_link_loss(&self, from: SocketAddr, to: SocketAddr, p: f64) {
        self.lock().link_loss.insert((from, to), probability(p));
    }

    /// Cuts both directions between every address in `a` and every address
    /// in `b`. Links inside `a` or inside `b` are untouched.
    pub fn partition(&self, a: &[SocketAddr], b: &[SocketAddr]) {
        let mut state = self.lock();
        for &x in a {
            for &y in b {
                state.cuts.insert((x, y));
                state.cuts.insert((y, x));
            }
        }
    }

    /// Cuts the one-way link `from → to`: datagrams on it are dropped while
    /// the reverse direction still works (an asymmetric failure).
    pub fn cut(&self, from: SocketAddr, to: SocketAddr) {
        self.lock().cuts.insert((from, to));
    }

    /// Restores every cut and partition. MTU and loss settings stay.
    pub fn heal(&self) {
        self.lock().cuts.clear();
    }

    /// Totals over the whole network.
    pub fn stats(&self) -> LinkStats {
        let state = self.lock();
        let mut total = LinkStats::default();
        state.stats.values().for_each(|s| total.add(s));
        total
    }

    /// Counters of the one-way link `from → to`.
    pub fn link_stats(&self, from: SocketAddr, to: SocketAddr) -> LinkStats {
        let state = self.lock();
        state.stats.get(&(from, to)).copied().unwrap_or_default()
    }

    /// Totals over every link leaving `addr`: what it sent and what became
    /// of it.
    pub fn stats_from(&self, addr: SocketAddr) -> LinkStats {
        self.sum_links(|from, _| from == addr)
    }

    /// Totals over every link arriving at `addr`: what was sent to it and
    /// how much of it arrived.
    pub fn stats_to(&self, addr: SocketAddr) -> LinkStats {
        self.sum_links(|_, to| to == addr)
    }

    fn sum_links(&self, pick: impl Fn(SocketAddr, SocketAddr) -> bool) -> LinkStats {
        let state = self.lock();
        let mut total = LinkStats::default();
        for (&(from, to), s) in &state.stats {
            if pick(from, to) {
                total.add(s);
            }
        }
        total
    }

    /// Sets every counter back to zero.
    pub fn reset_stats(&self) {
        self.lock().stats.clear();
    }

    /// Moves one datagram across the network; the heart of [`Memory::send`].
    fn deliver(
        &self,
        from: SocketAddr,
        sender_id: u64,
        to: SocketAddr,
        payload: Bytes,
    ) -> Result<(), TransportError> {
        let mut state = self.lock();
        let state = &mut *state;
        if state.inboxes.get(&from).is_none_or(|i| i.id != sender_id) {
            return Err(TransportError::Closed);
        }
        let link = (from, to);
        let mtu = state.link_mtu.get(&link).copied().unwrap_or(state.mtu);
        if payload.len() > mtu {
            return Err(TransportError::TooLarge {
                len: payload.len(),
                max: mtu,
            });
        }
        let loss = state.link_loss.get(&link).copied().unwrap_or(state.loss);
        // Draw only when loss is possible, so lossless links do not shift
        // the RNG sequence of the lossy ones.
        let lost = loss >= 1.0 || (loss > 0.0 && state.rng.random::<f64>() < loss);
        let delivered = !lost
            && !state.cuts.contains(&link)
            && state
                .inboxes
                .get(&to)
                .is_some_and(|inbox| inbox.tx.try_send((from, payload.clone())).is_ok());
        let stats = state.stats.entry(link).or_default();
        stats.packets_sent += 1;
        stats.bytes_sent += payload.len() as u64;
        if delivered {
            stats.packets_delivered += 1;
        } else {
            stats.packets_dropped += 1;
        }
        Ok(())
    }
}

impl fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryNetwork")
            .field("bound", &state.inboxes.len())
            .field("mtu", &state.mtu)
            .field("loss", &state.loss)
            .field("cuts", &state.cuts.len())
            .finish_non_exhaustive()
    }
}

fn probability(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

/// A transport bound on a [`MemoryNetwork`]. Dropping it unbinds its address.
pub struct Memory {
    network: MemoryNetwork,
    addr: SocketAddr,
    id: u64,
    max_payload: AtomicUsize,
    /// Behind an async mutex because `recv` takes `&self`; locking it and
    /// `mpsc::Receiver::recv` are both cancellation safe.
    inbox: tokio::sync::Mutex<mpsc::Receiver<Datagram>>,
}

impl Memory {
    /// The network this transport is bound on, to turn its knobs.
    pub fn network(&self) -> &MemoryNetwork {
        &self.network
    }

    /// Changes what [`Transport::max_payload`] reports. By default it is the
    /// network's MTU when this transport was bound; later MTU changes do not
    /// alter it (the trait says `max_payload` only grows while in use), but
    /// sends are still checked against the link's current MTU. Use this to
    /// model a node configured with a smaller or larger budget than the path.
    pub fn set_max_payload(&self, bytes: usize) {
        self.max_payload
            .store(bytes.min(MAX_DATAGRAM), Ordering::Relaxed);
    }
}

impl fmt::Debug for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memory")
            .field("addr", &self.addr)
            .field("max_payload", &self.max_payload())
            .finish_non_exhaustive()
    }
}

impl Transport for Memory {
    /// Refuses payloads over this transport's `max_payload` or the link's
    /// MTU with [`TransportError::TooLarge`] (like a socket with DF set);
    /// anything else is delivered or silently dropped, as UDP would.
    /// Empty payloads are delivered as empty datagrams.
    async fn send(&self, to: SocketAddr, payload: Bytes) -> Result<(), TransportError> {
        TransportError::check_len(payload.len(), self.max_payload())?;
        self.network.deliver(self.addr, self.id, to, payload)
    }

    async fn recv(&self) -> Result<(SocketAddr, Bytes), TransportError> {
        let mut inbox = self.inbox.lock().await;
        inbox.recv().await.ok_or(TransportError::Closed)
    }

    fn max_payload(&self) -> usize {
        self.max_payload.load(Ordering::Relaxed)
    }

    fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        let mut state = self.network.lock();
        if state
            .inboxes
            .get(&self.addr)
            .is_some_and(|i| i.id == self.id)
        {
            state.inboxes.remove(&self.addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Receives whatever is queued right now (delivery is synchronous).
    async fn drain(t: &Memory) -> Vec<Bytes> {
        let mut got = Vec::new();
        while let Ok(Ok((_, b))) = tokio::time::timeout(Duration::from_millis(5), t.recv()).await {
            got.push(b);
        }
        got
    }

    async fn lossy_pattern(seed: u64) -> Vec<Bytes> {
        let net = MemoryNetwork::new(seed);
        net.set_loss(0.3);
        let (a, b) = (net.bind(), net.bind());
        for i in 0..200u16 {
            a.send(b.local_addr(), Bytes::copy_from_slice(&i.to_be_bytes()))
                .await
                .unwrap();
        }
        drain(&b).await
    }

    #[tokio::test]
    async fn loss_is_deterministic_by_seed() {
        let first = lossy_pattern(7).await;
        assert_eq!(first, lossy_pattern(7).await);
        assert_ne!(first, lossy_pattern(8).await);
        assert!(
            (100..180).contains(&first.len()),
            "{} delivered",
            first.len()
        );
    }

    #[tokio::test]
    async fn partition_cuts_both_ways_until_heal() {
        let net = MemoryNetwork::new(1);
        let (a, b, c) = (net.bind(), net.bind(), net.bind());
        net.partition(&[a.local_addr()], &[b.local_addr(), c.local_addr()]);
        a.send(b.local_addr(), Bytes::from_static(b"x"))
            .await
            .unwrap();
        b.send(a.local_addr(), Bytes::from_static(b"y"))
            .await
            .unwrap();
        b.send(c.local_addr(), Bytes::from_static(b"z"))
            .await
            .unwrap();
        assert!(drain(&a).await.is_empty() && drain(&b).await.is_empty());
        assert_eq!(drain(&c).await, vec![Bytes::from_static(b"z")]);
        net.heal();
        a.send(b.local_addr(), Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(drain(&b).await.len(), 1);
    }

    #[tokio::test]
    async fn one_way_cut_leaves_reverse_direction() {
        let net = MemoryNetwork::new(1);
        let (a, b) = (net.bind(), net.bind());
        net.cut(a.local_addr(), b.local_addr());
        a.send(b.local_addr(), Bytes::from_static(b"x"))
            .await
            .unwrap();
        b.send(a.local_addr(), Bytes::from_static(b"y"))
            .await
            .unwrap();
        assert!(drain(&b).await.is_empty());
        assert_eq!(drain(&a).await, vec![Bytes::from_static(b"y")]);
    }

    #[tokio::test]
    async fn per_link_mtu_refuses_larger_payloads() {
        let net = MemoryNetwork::new(1);
        let (a, b, c) = (net.bind(), net.bind(), net.bind());
        net.set_link_mtu(a.local_addr(), b.local_addr(), 500);
        let big = Bytes::from(vec![0u8; 501]);
        let err = a.send(b.local_addr(), big.clone()).await.unwrap_err();
        assert!(matches!(
            err,
            TransportError::TooLarge { len: 501, max: 500 }
        ));
        a.send(c.local_addr(), big).await.unwrap();
        assert_eq!(drain(&c).await.len(), 1);
        assert_eq!(net.stats().packets_sent, 1, "refused sends are not counted");
    }

    #[tokio::test]
    async fn counters_add_up() {
        let net = MemoryNetwork::new(1);
        let (a, b) = (net.bind(), net.bind());
        let (ab, nowhere) = (b.local_addr(), "10.9.9.9:1".parse().unwrap());
        a.send(ab, Bytes::from_static(b"abc")).await.unwrap();
        a.send(nowhere, Bytes::from_static(b"de")).await.unwrap();
        let want = |sent, bytes, delivered, dropped| LinkStats {
            packets_sent: sent,
            bytes_sent: bytes,
            packets_delivered: delivered,
            packets_dropped: dropped,
        };
        assert_eq!(net.link_stats(a.local_addr(), ab), want(1, 3, 1, 0));
        assert_eq!(net.link_stats(a.local_addr(), nowhere), want(1, 2, 0, 1));
        assert_eq!(net.stats_from(a.local_addr()), want(2, 5, 1, 1));
        assert_eq!(net.stats_to(ab), want(1, 3, 1, 0));
        assert_eq!(net.stats(), want(2, 5, 1, 1));
        net.reset_stats();
        assert_eq!(net.stats(), LinkStats::default());
    }

    #[tokio::test]
    async fn addresses_are_unique_and_freed_on_drop() {
        let net = MemoryNetwork::new(1);
        let a = net.bind();
        assert_eq!(a.local_addr(), "127.0.0.1:10000".parse().unwrap());
        assert!(net.bind_addr(a.local_addr()).is_err(), "address is taken");
        let taken = a.local_addr();
        drop(a);
        let again = net.bind_addr(taken).unwrap();
        assert_ne!(net.bind().local_addr(), again.local_addr());
    }

    #[tokio::test]
    async fn unbind_closes_the_transport() {
        let net = MemoryNetwork::new(1);
        let (a, b) = (net.bind(), net.bind());
        a.send(b.local_addr(), Bytes::from_static(b"queued"))
            .await
            .unwrap();
        assert!(net.unbind(b.local_addr()));
        assert_eq!(b.recv().await.unwrap().1, Bytes::from_static(b"queued"));
        assert!(matches!(b.recv().await, Err(TransportError::Closed)));
        let err = b.send(a.local_addr(), Bytes::new()).await.unwrap_err();
        assert!(matches!(err, TransportError::Closed));
    }
}
