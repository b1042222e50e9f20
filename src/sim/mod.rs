//! A deterministic discrete-event simulator driving N [`Engine`]s over a
//! virtual network: virtual clock, seeded RNG, per-link latency and jitter,
//! loss, duplication, partitions, crashes, restarts and slow nodes.
//!
//! Same seed and same calls give the same run, bit for bit: the engines are
//! pure, every random draw comes from the simulator's seeded RNG, and ties
//! in the event queue are broken by insertion order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::engine::harness::{self, Drained};
use crate::engine::{Engine, Event, NodeId};

/// Network conditions of the simulated network.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// One-way delay of every datagram.
    pub latency: Duration,
    /// Extra delay drawn uniformly in `0..=jitter` per datagram (this also
    /// reorders datagrams).
    pub jitter: Duration,
    /// Probability that a datagram is lost, 0.0..=1.0.
    pub loss: f64,
    /// Probability that a delivered datagram arrives twice.
    pub duplicate: f64,
    /// Packet budget of every engine (the transport's `max_payload`).
    pub budget: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            budget: 1400,
        }
    }
}

/// Traffic counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Datagrams sent by all engines.
    pub packets_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// Datagrams delivered to an engine.
    pub packets_delivered: u64,
    /// Datagrams lost to random loss, partitions or crashed receivers.
    pub packets_dropped: u64,
    /// Largest datagram sent, in bytes.
    pub max_packet: usize,
}

#[derive(Debug)]
enum Ev {
    Deliver {
        to: usize,
        from: SocketAddr,
        bytes: Bytes,
    },
    Timer {
        node: usize,
    },
}

/// Unix time in milliseconds of the simulation's start (2026-01-01), the
/// base of generations.
const SIM_EPOCH_MS: u64 = 1_767_225_600_000;

struct SimNode {
    engine: Option<Engine>,
    config: Config,
    addr: SocketAddr,
    generation: u64,
    scheduled: Option<Duration>,
    /// Extra delay on every datagram this node sends or receives.
    slow: Duration,
    events: Vec<Event>,
}

/// A callback the simulator calls for every event any engine produces:
/// `(node index, virtual time, event)`. See [`Sim::on_event`].
pub type EventHook = Box<dyn FnMut(usize, Duration, &Event)>;

/// The simulator.
pub struct Sim {
    base: Instant,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<(Duration, u64, usize)>>,
    pending: HashMap<u64, Ev>,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    blocked: HashSet<(usize, usize)>,
    rng: StdRng,
    net: NetConfig,
    stats: SimStats,
    record_events: bool,
    event_hook: Option<EventHook>,
}

impl Sim {
    /// A simulator with network `net`, all randomness drawn from `seed`.
    // A virtual clock needs a real `Instant` as its origin; nothing else
    // in the simulator reads the clock.
    #[allow(clippy::disallowed_methods)]
    pub fn new(net: NetConfig, seed: u64) -> Sim {
        Sim {
            base: Instant::now(),
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            blocked: HashSet::new(),
            rng: StdRng::seed_from_u64(seed),
            net,
            stats: SimStats::default(),
            record_events: true,
            event_hook: None,
        }
    }

    /// Whether to keep every node's events for [`Sim::events`] (default
    /// on; turn off for very large runs).
    pub fn record_events(&mut self, on: bool) {
        self.record_events = on;
    }

    /// Calls `hook` with `(node index, virtual time, event)` for every
    /// event any engine produces from now on, whether or not events are
    /// recorded. Lets large runs (the eval tool) count what they need —
    /// e.g. deliveries of one key — without keeping every event.
    /// Replaces any previous hook.
    pub fn on_event(&mut self, hook: impl FnMut(usize, Duration, &Event) + 'static) {
        self.event_hook = Some(Box::new(hook));
    }

    /// Removes the hook set by [`Sim::on_event`].
    pub fn clear_event_hook(&mut self) {
        self.event_hook = None;
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// The virtual `Instant` of now.
    pub fn now(&self) -> Instant {
        self.base + self.now
    }

    /// The network conditions, changeable at any time.
    pub fn net_mut(&mut self) -> &mut NetConfig {
        &mut self.net
    }

    /// Traffic counters so far.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Number of nodes (crashed ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds a running node named `config.name` (or `n{index}` if empty),
    /// seeded with `seeds` (indexes of other nodes). Returns its index.
    pub fn add_node(&mut self, mut config: Config, seeds: &[usize]) -> usize {
        let i = self.nodes.len();
        if config.name.is_empty() {
            config.name = format!("n{i}");
        }
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + i as u32 + 1));
        let addr = SocketAddr::new(ip, 7946);
        self.by_addr.insert(addr, i);
        self.nodes.push(SimNode {
            engine: None,
            config,
            addr,
            generation: 0,
            scheduled: None,
            slow: Duration::ZERO,
            events: Vec::new(),
        });
        self.boot(i, seeds);
        i
    }

    /// Tells every running node about every other running node, as an
    /// alive member with empty state: the state after a completed join,
    /// reached without exchanging a packet. This is how clusters of many
    /// thousands of nodes start in reasonable time; [`Sim::add_node`] with
    /// seeds exercises the join itself. Members already known are kept.
    pub fn preload_all(&mut self) {
        let ids: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.engine.is_some())
            .map(|n| NodeId::new(n.config.name.clone(), n.generation, n.addr))
            .collect();
        for node in &mut self.nodes {
            if let Some(e) = node.engine.as_mut() {
                e.preload(&ids);
            }
        }
    }

    fn boot(&mut self, i: usize, seeds: &[usize]) {
        let seed_addrs: Vec<SocketAddr> = seeds.iter().map(|s| self.nodes[*s].addr).collect();
        let rng_seed = self.rng.random();
        let now = self.now();
        // As a real node's default: its boot time in Unix milliseconds (so
        // packets carry ids of realistic size), always above the last.
        let boot_ms = SIM_EPOCH_MS + self.elapsed().as_millis() as u64;
        let n = &mut self.nodes[i];
        n.generation = boot_ms.max(n.generation + 1);
        let id = NodeId::new(n.config.name.clone(), n.generation, n.addr);
        let mut engine = match Engine::new(n.config.clone(), id, self.net.budget, rng_seed, now) {
            Ok(e) => e,
            Err(e) => panic!("sim node {i}: {e}"),
        };
        engine.add_seeds(seed_addrs);
        n.engine = Some(engine);
        n.scheduled = None;
        self.pump(i);
    }

    /// The engine of node `i` (`None` while crashed).
    pub fn engine(&self, i: usize) -> Option<&Engine> {
        self.nodes[i].engine.as_ref()
    }

    /// Runs `f` on node `i`'s engine at the current virtual time, then
    /// sends what it queued. Does nothing while the node is crashed.
    pub fn with_engine<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Engine, Instant) -> R,
    ) -> Option<R> {
        let now = self.now();
        let r = f(self.nodes[i].engine.as_mut()?, now);
        self.pump(i);
        Some(r)
    }

    /// Events node `i` produced so far (if recording).
    pub fn events(&self, i: usize) -> &[Event] {
        &self.nodes[i].events
    }

    /// Crashes node `i`: it stops at once, silently.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].engine = None;
        self.nodes[i].scheduled = None;
    }

    /// Restarts node `i` with a new generation and empty state.
    pub fn restart(&mut self, i: usize, seeds: &[usize]) {
        self.boot(i, seeds);
    }

    /// Adds `delay` to every datagram node `i` sends or receives.
    pub fn set_slow(&mut self, i: usize, delay: Duration) {
        self.nodes[i].slow = delay;
    }

    /// Cuts every link between a node of `a` and a node of `b`, both ways.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        for x in a {
            for y in b {
                self.blocked.insert((*x, *y));
                self.blocked.insert((*y, *x));
            }
        }
    }

    /// Cuts the link from `from` to `to` only.
    pub fn cut(&mut self, from: usize, to: usize) {
        self.blocked.insert((from, to));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Runs until virtual time `elapsed() + d`.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end, |_| false);
    }

    /// Runs until virtual time `end` or until `stop` returns true (checked
    /// after every event). Returns whether `stop` fired.
    pub fn run_until(&mut self, end: Duration, mut stop: impl FnMut(&Sim) -> bool) -> bool {
        while let Some(Reverse((t, seq, _))) = self.queue.peek().copied() {
            if t > end {
                break;
            }
            self.queue.pop();
            self.now = t;
            let Some(ev) = self.pending.remove(&seq) else {
                continue;
            };
            self.dispatch(ev);
            if stop(self) {
                return true;
            }
        }
        self.now = self.now.max(end);
        false
    }

    fn dispatch(&mut self, ev: Ev) {
        let now = self.now();
        match ev {
            Ev::Deliver { to, from, bytes } => {
                let Some(engine) = self.nodes[to].engine.as_mut() else {
                    self.stats.packets_dropped += 1;
                    return;
                };
                self.stats.packets_delivered += 1;
                engine.handle_packet(now, from, &bytes);
                self.pump(to);
            }
            Ev::Timer { node } => {
                let n = &mut self.nodes[node];
                if n.scheduled != Some(self.now) {
                    return;
                }
                n.scheduled = None;
                let Some(engine) = n.engine.as_mut() else {
                    return;
                };
                engine.handle_timeout(now);
                self.pump(node);
            }
        }
    }

    fn push(&mut self, at: Duration, ev: Ev, node: usize) {
        let seq = self.seq;
        self.seq += 1;
        self.pending.insert(seq, ev);
        self.queue.push(Reverse((at, seq, node)));
    }

    /// Sends what node `i` queued, collects its events, re-arms its timer.
    /// Taking them is the engine tests' pump too ([`harness::drain`]); what
    /// is the simulator's own is what happens to the datagrams on the way.
    fn pump(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let Some(engine) = n.engine.as_mut() else {
            return;
        };
        let (hook, record, now) = (&mut self.event_hook, self.record_events, self.now);
        let Drained {
            transmits: out,
            deadline,
        } = harness::drain(engine, |e| {
            if let Some(hook) = hook.as_mut() {
                hook(i, now, &e);
            }
            if record {
                n.events.push(e);
            }
        });
        let deadline = deadline.saturating_duration_since(self.base);
        let from = self.nodes[i].addr;
        for t in out {
            self.stats.packets_sent += 1;
            self.stats.bytes_sent += t.payload.len() as u64;
            self.stats.max_packet = self.stats.max_packet.max(t.payload.len());
            let Some(&to) = self.by_addr.get(&t.to) else {
                self.stats.packets_dropped += 1;
                continue;
            };
            if self.blocked.contains(&(i, to))
                || self.rng.random_bool(self.net.loss.clamp(0.0, 1.0))
            {
                self.stats.packets_dropped += 1;
                continue;
            }
            let copies = if self.rng.random_bool(self.net.duplicate.clamp(0.0, 1.0)) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let jitter = if self.net.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    self.net.jitter.mul_f64(self.rng.random::<f64>())
                };
                let at =
                    self.now + self.net.latency + jitter + self.nodes[i].slow + self.nodes[to].slow;
                self.push(
                    at,
                    Ev::Deliver {
                        to,
                        from,
                        bytes: t.payload.clone(),
                    },
                    to,
                );
            }
        }
        let deadline = deadline.max(self.now);
        if self.nodes[i].scheduled != Some(deadline) {
            self.nodes[i].scheduled = Some(deadline);
            self.push(deadline, Ev::Timer { node: i }, i);
        }
    }
}
