//! The engine pump, and the N-engine test harness built on it.
//!
//! [`drain`] takes everything an engine has ready after a call into it, in
//! the order the [`Engine`] type doc asks for: its datagrams, then its
//! events, then the deadline of its next timer. Both drivers that run
//! engines on a virtual clock call it: the test [`Harness`] below and the
//! simulator (`crate::sim`), which then applies latency, loss and
//! partitions to the datagrams. It lives here, beside the engine whose
//! contract it encodes, and not in `sim`: the engine's own tests build
//! without the `sim` feature, so this module compiles under
//! `any(test, feature = "sim")` and everything but the pump under `test`
//! only. It is a `pub(crate)` function rather than an `Engine` method so
//! that it adds nothing to the engine's API.
//!
//! [`Harness`] wires N engines together by hand on an explicit clock: a
//! router hands every datagram to the addressed engine's `handle_packet`
//! within the same instant, checking each against the sender's budget on
//! the way, and logs it. Tests can isolate nodes, lose chosen datagrams,
//! run single timers and deliver single datagrams by hand. [`origin`] is
//! the only wall-clock read of the engine tests that use it.

#[cfg(test)]
use std::collections::HashSet;
#[cfg(test)]
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

#[cfg(test)]
use super::NodeId;
use super::{Engine, Event, Transmit};
#[cfg(test)]
use crate::Config;

/// What an engine had ready: see [`drain`].
pub(crate) struct Drained {
    /// The datagrams it queued, in order.
    pub(crate) transmits: Vec<Transmit>,
    /// When its `handle_timeout` must next be called. (The test harness
    /// asks each engine itself; only the simulator reads this.)
    #[cfg_attr(
        not(feature = "sim"),
        expect(dead_code, reason = "read by the simulator only")
    )]
    pub(crate) deadline: Instant,
}

/// Takes everything `engine` has ready: its datagrams (returned), then
/// each of its events (handed to `on_event`), then its next deadline.
pub(crate) fn drain(engine: &mut Engine, mut on_event: impl FnMut(Event)) -> Drained {
    let transmits = std::iter::from_fn(|| engine.poll_transmit()).collect();
    while let Some(e) = engine.poll_event() {
        on_event(e);
    }
    Drained {
        transmits,
        deadline: engine.poll_timeout(),
    }
}

/// The base of every virtual clock in the engine tests: read from the
/// wall clock once per process (`Instant` has no constant to start from),
/// and only moved by hand after that. Nothing depends on its value.
#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the one wall-clock read of the engine tests
pub(super) fn origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Address of harness node `i`: 10.0.0.`i + 1`.
#[cfg(test)]
pub(super) fn addr(i: usize) -> SocketAddr {
    let i = u8::try_from(i + 1).expect("at most 255 harness nodes");
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 7946)
}

/// Identity of harness node `i` at `generation`: named `n{i}`.
#[cfg(test)]
pub(super) fn id(i: usize, generation: u64) -> NodeId {
    NodeId::new(format!("n{i}"), generation, addr(i))
}

/// Engines wired together by hand on an explicit clock.
#[cfg(test)]
pub(super) struct Harness {
    /// The virtual clock: moved only by the harness's steps or by hand.
    pub(super) now: Instant,
    /// Config of the nodes [`Harness::add`] creates.
    pub(super) config: Config,
    /// Budget of the nodes [`Harness::add`] creates.
    pub(super) budget: usize,
    /// Node `i` is `nodes[i]`; a test may replace one (a restart).
    pub(super) nodes: Vec<Engine>,
    /// Every event node `i` produced, in order.
    pub(super) events: Vec<Vec<Event>>,
    /// Nodes whose datagrams, both ways, are lost.
    pub(super) isolated: HashSet<usize>,
    /// Where datagrams to an address no engine has go (for synthetic
    /// nodes held only by node 0); otherwise they are lost.
    pub(super) fallback: Option<usize>,
    /// Datagrams lost on purpose: `lose(sender, datagram)`.
    pub(super) lose: fn(usize, &Transmit) -> bool,
    /// Every datagram sent, lost ones included: (sender index, datagram).
    pub(super) log: Vec<(usize, Transmit)>,
}

#[cfg(test)]
impl Harness {
    /// `n` nodes running `config` under `budget`, each seeded with the one
    /// before it (node `i` is [`id`]`(i, 1)`, its RNG seeded with `i`).
    pub(super) fn new(n: usize, config: Config, budget: usize) -> Harness {
        let mut h = Harness {
            now: origin(),
            config,
            budget,
            nodes: Vec::new(),
            events: Vec::new(),
            isolated: HashSet::new(),
            fallback: None,
            lose: |_, _| false,
            log: Vec::new(),
        };
        for i in 0..n {
            h.add(i.saturating_sub(1));
        }
        h
    }

    /// Engines `a` (node 0) and `b` (node 1, seeded with `a`) running
    /// `config`, stepped by `step` until they know each other.
    pub(super) fn pair(config: Config, step: Duration) -> Harness {
        let mut h = Harness::new(0, config, 1400);
        for (i, name) in ["a", "b"].into_iter().enumerate() {
            let id = NodeId::new(name, 1, addr(i));
            let e = Engine::new(h.config.clone(), id, h.budget, i as u64 + 1, h.now).unwrap();
            h.push(e);
        }
        h.nodes[1].add_seeds([addr(0)]);
        for _ in 0..200 {
            h.step(step);
            if h.nodes.iter().all(|e| e.member_count() == 2) {
                return h;
            }
        }
        panic!("the two engines never met");
    }

    /// Adds node [`id`]`(len, 1)`, seeded with node `seed` unless it is
    /// the first; returns its index.
    pub(super) fn add(&mut self, seed: usize) -> usize {
        let i = self.nodes.len();
        let mut e = Engine::new(
            self.config.clone(),
            id(i, 1),
            self.budget,
            i as u64,
            self.now,
        )
        .unwrap();
        if i > 0 {
            e.add_seeds([addr(seed)]);
        }
        self.push(e)
    }

    /// Adds an engine made by the test; returns its index.
    pub(super) fn push(&mut self, engine: Engine) -> usize {
        self.nodes.push(engine);
        self.events.push(Vec::new());
        self.nodes.len() - 1
    }

    /// The node a datagram to `to` reaches, if any.
    pub(super) fn index(&self, to: SocketAddr) -> Option<usize> {
        self.nodes
            .iter()
            .position(|e| e.local_id().addr == to)
            .or(self.fallback)
    }

    /// Runs node `i`'s timer if it is due.
    pub(super) fn fire(&mut self, i: usize) {
        if self.nodes[i].poll_timeout() <= self.now {
            self.nodes[i].handle_timeout(self.now);
        }
    }

    /// Takes node `i`'s datagrams without delivering them (they are lost),
    /// checks and logs them, and records its events.
    pub(super) fn drain(&mut self, i: usize) -> Vec<Transmit> {
        let events = &mut self.events[i];
        let out = drain(&mut self.nodes[i], |e| events.push(e)).transmits;
        let budget = self.nodes[i].budget();
        for t in &out {
            assert!(
                t.payload.len() <= budget,
                "n{i} sent {} bytes over a {budget}-byte budget",
                t.payload.len(),
            );
            self.log.push((i, t.clone()));
        }
        out
    }

    /// Hands `payload` from node `from` to node `to`, now.
    pub(super) fn receive(&mut self, to: usize, from: usize, payload: &[u8]) {
        let from = self.nodes[from].local_id().addr;
        self.nodes[to].handle_packet(self.now, from, payload);
    }

    /// Delivers datagrams in rounds until no engine has anything left to
    /// send: each round takes every node's datagrams, in node order, then
    /// hands them on in that order.
    pub(super) fn deliver(&mut self) {
        for _ in 0..100_000 {
            let sent: Vec<(usize, Transmit)> = (0..self.nodes.len())
                .flat_map(|i| self.drain(i).into_iter().map(move |t| (i, t)))
                .collect();
            if sent.is_empty() {
                return;
            }
            for (i, t) in sent {
                let Some(j) = self.index(t.to) else { continue };
                if self.isolated.contains(&i) || self.isolated.contains(&j) || (self.lose)(i, &t) {
                    continue;
                }
                self.receive(j, i, &t.payload);
            }
        }
        panic!("the engines never went quiet");
    }

    /// Moves the clock to `at`, runs the timers then due, delivers.
    pub(super) fn step_to(&mut self, at: Instant) {
        self.now = at;
        for i in 0..self.nodes.len() {
            self.fire(i);
        }
        self.deliver();
    }

    /// Moves the clock by `d`, runs due timers, delivers.
    pub(super) fn step(&mut self, d: Duration) {
        self.step_to(self.now + d);
    }

    /// The earliest deadline of any node.
    pub(super) fn next_deadline(&self) -> Instant {
        self.nodes
            .iter()
            .map(Engine::poll_timeout)
            .min()
            .expect("a harness with nodes")
    }

    /// Runs in 10 ms steps until `done` or `limit` of virtual time;
    /// returns whether `done` became true.
    pub(super) fn run_until(&mut self, limit: Duration, done: impl Fn(&Harness) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            self.step(Duration::from_millis(10));
            if done(self) {
                return true;
            }
        }
        false
    }

    /// Runs in 10 ms steps for `d` of virtual time.
    pub(super) fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// Whether every engine holds every engine's live state as its owner.
    pub(super) fn converged(&self) -> bool {
        self.nodes.iter().all(|owner| {
            let name = &owner.local_id().name;
            let truth = owner.entries(name);
            self.nodes.iter().all(|e| e.entries(name) == truth)
        })
    }
}
