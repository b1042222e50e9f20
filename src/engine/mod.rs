//! The sans-IO protocol engine: membership table, versioned key-value state
//! and Scuttlebutt reconciliation. It performs no I/O and reads no clock:
//! time comes with every call and randomness from a seeded RNG, so the same
//! inputs give the same outputs (which is what makes the simulator exact).
//!
//! # Rooms
//!
//! [`Engine`] (this file) wires the rooms together: the public API, the
//! input dispatcher (`handle_packet` → one handler per message kind), the
//! timer table and the output queues. Five rooms extend `Engine` because
//! each exchange they run touches several others' state: `reconcile`
//! (Scuttlebutt), `push` (fresh versions along the broadcast tree),
//! `probe` (SWIM), `lifecycle` (membership changes) and `signing` (signed
//! state and membership claims). Every other file
//! owns one piece of state behind its own methods and imports no room:
//!
//! | file | owns |
//! |---|---|
//! | `outbox` | packing under the budget, every byte-size constant, the send queue |
//! | `timer` | one deadline per kind of timer |
//! | `membership` | the member table, its indexes, the fingerprint, the broadcast tree's ring |
//! | `state` | one node's versioned key-value state and its deltas |
//! | `digest` | digest pages and their lines |
//! | `rumor` | the piggybacked rumor queues |
//! | `suspicion` | Lifeguard suspicions and their deadlines |
//! | `admission` | who may become a member: address allow-list, member cap, the application's check |
//! | `dead`, `removed` | members held dead (retries), members removed (stale-news guard, reconnects) |
//! | `reconnect` | drawing one reconnect candidate |
//! | `broadcast` | user broadcast ids and dedup |
//! | `phi` | round-trip times and the phi-accrual timeout |
//! | `loss` | datagram loss measured, and the extra push copies it calls for |
//! | `acks` | push acknowledgements owed, merged per peer until the next send |
//! | `observation` | measurements for the owner's histograms |
//! | `msg` | message builders, status ↔ wire conversions |
//! | `node_id`, `event`, `metrics`, `error` | identities, events, counters, errors |
//!
//! `docs/ARCHITECTURE.md` draws who calls whom.

mod acks;
mod admission;
mod broadcast;
mod dead;
mod digest;
mod error;
mod event;
#[cfg(any(test, feature = "sim"))]
pub(crate) mod harness;
mod lifecycle;
mod loss;
mod membership;
mod metrics;
mod msg;
mod node_id;
mod observation;
mod outbox;
mod phi;
mod probe;
mod push;
mod reconcile;
mod reconnect;
mod removed;
mod rumor;
mod signing;
mod state;
mod suspicion;
mod timer;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;

pub use admission::AdmissionCheck;
pub use error::{BroadcastError, EngineError, RESERVED_PREFIX, SetError};
pub use event::Event;
pub use membership::{Member, MemberStatus};
pub use metrics::{Drops, KindCounts, MemberCounts, Metrics, Refusals};
pub use node_id::NodeId;
pub use observation::{OBSERVATION_CAP, Observation, SuspicionOutcome};
pub use outbox::Transmit;
pub(crate) use timer::Every;

use crate::config::{Config, ConfigError};
use crate::wire::proto::MemberState;
use crate::wire::proto::message::Kind;
use crate::wire::{self, Limits, Packer, proto};
use acks::OwedAcks;
use admission::Admission;
use broadcast::Broadcasts;
use dead::DeadMembers;
use lifecycle::ToldDead;
use loss::LossEstimate;
use membership::Members;
use node_id::routable;
use observation::Observations;
use outbox::Outbox;
use phi::RttDetector;
use probe::Swim;
use push::Pushes;
use reconcile::Reconciler;
use reconnect::{Candidate, Pool};
use removed::RemovedMembers;
use rumor::{Rumors, Subject};
use suspicion::Suspicions;
use timer::{Timer, TimerTable};

/// The protocol state machine of one node.
///
/// # Use
///
/// The owner (the node driver, the simulator or a test) feeds it and drains
/// it; it never blocks and never does I/O.
///
/// * Getters: [`local_id`](Engine::local_id), [`get`](Engine::get),
///   [`entries`](Engine::entries), [`members`](Engine::members),
///   [`metrics`](Engine::metrics), [`budget`](Engine::budget),
///   [`needs_seeds`](Engine::needs_seeds).
/// * Input: [`handle_packet`](Engine::handle_packet) for every datagram
///   received, [`handle_timeout`](Engine::handle_timeout) when the instant
///   from [`poll_timeout`](Engine::poll_timeout) has passed.
/// * Local operations: [`set`](Engine::set), [`delete`](Engine::delete),
///   [`add_seeds`](Engine::add_seeds), [`set_seeds`](Engine::set_seeds),
///   [`set_admission_check`](Engine::set_admission_check).
/// * Output, after every input or operation, in this order: drain
///   [`poll_transmit`](Engine::poll_transmit) and send each datagram, drain
///   [`poll_event`](Engine::poll_event) (and
///   [`poll_observation`](Engine::poll_observation), if
///   [`set_observing`](Engine::set_observing) turned measurements on),
///   then re-arm the timer with [`poll_timeout`](Engine::poll_timeout).
///
/// # Time
///
/// Every input and every mutator takes `now`, the owner's clock, and the
/// engine reads no clock of its own. Time must not go backwards: each
/// `now` must be at or after the last one given (an earlier one is taken
/// as the latest seen, so nothing breaks, but timers measured from it are
/// off). The simulator passes virtual time, the node driver
/// `Instant::now()`.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    me: NodeId,
    cluster_id: u32,
    limits: Limits,
    rng: StdRng,
    /// Every deadline, one slot per kind of timer.
    timers: TimerTable,
    /// The latest `now` the engine was given.
    last_now: Instant,
    /// Whether [`leave`](Engine::leave) was called.
    leaving: bool,
    /// Until when the node sheds optional traffic (see
    /// [`note_overload`](Engine::note_overload)).
    overloaded_until: Option<Instant>,
    seeds: Vec<SocketAddr>,
    // ----- the rooms' state, each behind its own interface -----
    /// Members, their status and their versioned state.
    members: Members,
    /// Who may become a member.
    admission: Admission,
    /// Packing and the datagrams waiting to be sent.
    outbox: Outbox,
    /// Events waiting for the application.
    events: VecDeque<Event>,
    /// Scuttlebutt: the digest cursor and the last sign of divergence.
    reconciler: Reconciler,
    /// Fresh changes and the tree pushes awaiting acknowledgement.
    pushes: Pushes,
    /// Acknowledgements owed for pushes read, until the next send.
    acks: OwedAcks,
    /// Probing (SWIM) and local health.
    swim: Swim,
    /// Round-trip times measured on probes and pushes.
    rtt: RttDetector,
    /// Datagram loss measured on probes.
    loss: LossEstimate,
    /// Open suspicions and their timeouts.
    suspicions: Suspicions,
    /// Members held dead or left, until removal.
    dead: DeadMembers,
    /// Members removed, remembered against stale news.
    removed: RemovedMembers,
    /// Where we told a node it is held dead.
    told_dead: ToldDead,
    /// Membership rumors and user broadcasts waiting to piggyback.
    rumors: Rumors,
    /// Broadcast ids sent and seen.
    broadcasts: Broadcasts,
    /// Counters since start (the outbox counts what it sent).
    metrics: Metrics,
    /// Measurements for the owner's histograms (off unless asked for).
    observations: Observations,
    /// Our identity and the verified keys of others (signed state).
    signing: signing::Signing,
}

impl Engine {
    /// Creates the engine of node `me`, packing packets under `budget`
    /// bytes (the transport's `max_payload()`), with its RNG seeded by
    /// `rng_seed`. The config is validated first.
    pub fn new(
        config: Config,
        me: NodeId,
        budget: usize,
        rng_seed: u64,
        now: Instant,
    ) -> Result<Engine, EngineError> {
        config.validate()?;
        if !routable(&me.addr) {
            return Err(ConfigError {
                field: "advertise",
                reason: format!("{} is not an address peers can send to", me.addr),
            }
            .into());
        }
        if me.name.is_empty() {
            return Err(ConfigError {
                field: "name",
                reason: "the engine needs a non-empty node name".into(),
            }
            .into());
        }
        let cluster_id = wire::cluster_id(&config.cluster);
        let outbox = Outbox::new(&me, cluster_id, budget, config.signatures.signs())?;
        // Refuse from the network what this node could never gossip on:
        // keys longer than it accepts itself, values larger than an entry
        // that fits one packet under its budget.
        let limits = Limits {
            max_name_len: 255,
            max_key_len: config.max_key_len,
            max_value_len: outbox.max_entry(),
            max_messages: 1024,
        };
        let mut timers = TimerTable::default();
        timers.set(Timer::Gossip, Some(now + config.gossip_interval));
        timers.set(Timer::Gc, Some(now + config.tombstone_grace / 4));
        timers.set(Timer::Reconnect, Some(now + config.reconnect_interval));
        let mut engine = Engine {
            members: Members::new(me.clone()),
            admission: Admission::new(&config),
            cluster_id,
            limits,
            outbox,
            rng: StdRng::seed_from_u64(rng_seed),
            timers,
            last_now: now,
            leaving: false,
            overloaded_until: None,
            seeds: Vec::new(),
            events: VecDeque::new(),
            reconciler: Reconciler::new(now),
            pushes: Pushes::default(),
            acks: OwedAcks::default(),
            swim: Swim::new(&config, now),
            rtt: RttDetector::new(config.conviction_threshold),
            loss: LossEstimate::default(),
            suspicions: Suspicions::default(),
            dead: DeadMembers::default(),
            removed: RemovedMembers::default(),
            told_dead: ToldDead::default(),
            rumors: Rumors::default(),
            broadcasts: Broadcasts::default(),
            metrics: Metrics::default(),
            observations: Observations::default(),
            signing: signing::Signing::default(),
            me,
            config,
        };
        engine.arm_timers();
        Ok(engine)
    }

    // ----- getters -------------------------------------------------------

    /// This node's identity.
    pub fn local_id(&self) -> &NodeId {
        &self.me
    }

    /// The byte budget every packet is packed under.
    pub fn budget(&self) -> usize {
        self.outbox.budget()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The live value of `key` in the state of node `name`.
    pub fn get(&self, name: &str, key: &str) -> Option<Bytes> {
        let e = self.members.by_name(name)?.state.get(key)?;
        (!e.is_tombstone()).then(|| e.value.clone())
    }

    /// Every live key of node `name` with its value and version, sorted by
    /// key; `None` if the node is unknown.
    pub fn entries(&self, name: &str) -> Option<BTreeMap<String, (Bytes, u64)>> {
        let k = self.members.by_name(name)?;
        Some(
            k.state
                .live()
                .map(|(key, e)| (key.clone(), (e.value.clone(), e.version)))
                .collect(),
        )
    }

    /// Every known member (this node included) with its status.
    pub fn members(&self) -> Vec<Member> {
        let mut v: Vec<Member> = self
            .members
            .iter()
            .map(|k| Member {
                id: k.id.clone(),
                status: k.status,
                incarnation: k.incarnation,
            })
            .collect();
        v.sort_by(|a, b| a.id.name.cmp(&b.id.name));
        v
    }

    /// How many members are known, this node included (cheap).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// How many members are in each status.
    pub fn member_counts(&self) -> MemberCounts {
        let mut c = MemberCounts::default();
        for k in self.members.iter() {
            match k.status {
                MemberStatus::Alive => c.alive += 1,
                MemberStatus::Suspect => c.suspect += 1,
                MemberStatus::Dead => c.dead += 1,
                MemberStatus::Left => c.left += 1,
            }
        }
        c
    }

    /// Counters since start.
    pub fn metrics(&self) -> Metrics {
        let (member, user) = self.rumors.lens();
        let sent = self.outbox.sent();
        Metrics {
            member_rumors_queued: member,
            broadcasts_queued: user,
            packets_sent: sent.packets,
            bytes_sent: sent.bytes,
            largest_packet_sent: sent.largest,
            sent: sent.kinds.clone(),
            ..self.metrics.clone()
        }
    }

    /// Whether the engine knows no healthy peer: the driver should ask its
    /// seed provider for addresses (seeds already given stay in use).
    pub fn needs_seeds(&self) -> bool {
        self.members.peer_count() == 0
    }

    /// The fingerprint of every version this node holds; equal on two
    /// nodes exactly when they are in sync (up to hash collisions).
    pub fn fingerprint(&self) -> u64 {
        self.members.fingerprint()
    }

    // ----- input ---------------------------------------------------------

    /// Handles one datagram received from `from`. Garbage is dropped and
    /// counted in [`Metrics::drops`]; nothing here can panic on bad bytes.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let _span = tracing::trace_span!("packet", %from, len = bytes.len()).entered();
        self.advance(now);
        self.receive(now, from, bytes);
        self.push_if_due(now);
        self.arm_timers();
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.metrics.packets_received += 1;
        self.metrics.bytes_received += bytes.len() as u64;
        let packet = match wire::decode(bytes, self.cluster_id, &self.limits) {
            Ok(p) => p,
            Err(e) => {
                self.metrics.drops.count(&e);
                tracing::debug!(%from, error = %e, "dropped packet");
                return;
            }
        };
        let sender_key = match packet.from.as_ref() {
            Some(id) => self.full_sender(now, from, id),
            None => self.compact_sender(now, from, packet.from_key),
        };
        let Ok(sender_key) = sender_key else {
            return;
        };
        for msg in packet.messages {
            let Some(kind) = msg.kind else { continue };
            self.metrics.received.count(&kind);
            self.on_message(now, from, sender_key, kind);
        }
    }

    /// Hands one message to the room that handles its kind. A tree push
    /// travels as an `Ack` with a push id (the wire has no kind of its
    /// own for it), and is read as what it is.
    fn on_message(&mut self, now: Instant, from: SocketAddr, sender: Option<u64>, kind: Kind) {
        match kind {
            Kind::Syn(syn) => self.on_syn(now, from, sender, syn),
            Kind::SynAck(sa) => self.on_syn_ack(now, from, sender, sa),
            Kind::Ack(ack) if ack.push_id != 0 => self.on_push(now, from, sender, ack),
            Kind::Ack(ack) => self.apply_deltas(now, &ack.deltas, false),
            Kind::PushAck(a) => self.on_push_ack(now, a.push_id),
            Kind::Ping(p) => self.on_ping(from, sender, p),
            Kind::PingReq(r) => self.on_ping_req(now, from, r),
            Kind::PingAck(a) => self.on_ping_ack(now, from, sender, a),
            Kind::PingNack(n) => self.on_ping_nack(n),
            Kind::Member(u) => self.on_member_update(now, &u, Some(from)),
            Kind::Broadcast(b) => self.on_broadcast(b),
        }
    }

    /// A user broadcast: delivered and passed on, once.
    fn on_broadcast(&mut self, b: proto::Broadcast) {
        let (origin, payload) = (b.origin.clone(), b.payload.clone());
        let Some(out) = self.broadcasts.receive(&self.me.name, b) else {
            return;
        };
        self.events.push_back(Event::Broadcast { origin, payload });
        self.rumors.push_broadcast(out.subject, &out.msg);
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        if self.pushes.push_at().is_some_and(|t| now >= t) {
            self.push_fresh(now);
        }
        if self.pushes.next_due().is_some_and(|t| now >= t) {
            self.retry_pushes(now);
        }
        if self.pushes.next_pull().is_some_and(|t| now >= t) {
            self.pull(now);
        }
        self.swim_timeout(now);
        if self.timers.is_due(Timer::Gossip, now) {
            if !self.leaving {
                self.gossip_round(now);
            }
            // Keep the cadence, but never try to catch up on missed rounds.
            let interval = self.config.gossip_interval;
            let next = self.timers.get(Timer::Gossip).map_or(now, |t| t + interval);
            let next = if next <= now { now + interval } else { next };
            self.timers.set(Timer::Gossip, Some(next));
        }
        if self.timers.is_due(Timer::Reconnect, now) {
            if !self.leaving {
                self.reconnect(now);
            }
            let next = now + self.config.reconnect_interval;
            self.timers.set(Timer::Reconnect, Some(next));
        }
        if self.timers.is_due(Timer::Gc, now) {
            self.collect_tombstones(now);
            let next = now + (self.config.tombstone_grace / 4);
            self.timers.set(Timer::Gc, Some(next));
        }
        self.arm_timers();
    }

    /// Takes `now` as the engine's latest time. Time must not go
    /// backwards; an earlier `now` than one already given changes nothing.
    fn advance(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
    }

    /// Copies the rooms' earliest deadlines into the timer table; called
    /// at the end of every input, so [`poll_timeout`](Engine::poll_timeout)
    /// is a lookup.
    pub(super) fn arm_timers(&mut self) {
        let t = &mut self.timers;
        t.set(Timer::Probe, Some(self.swim.next_probe()));
        t.set(Timer::ProbeTimeout, self.swim.probe_timeout());
        t.set(Timer::Relay, self.swim.relay_deadline());
        t.set(Timer::Suspicion, self.suspicions.next_deadline());
        t.set(Timer::DeadRetry, self.dead.next_retry());
        t.set(Timer::Push, self.pushes.push_at());
        t.set(Timer::PushRetry, self.pushes.next_due());
        t.set(Timer::Pull, self.pushes.next_pull());
    }

    /// Contacts one reconnect candidate, picked at random (see
    /// [`reconnect`]). Does nothing when there is none.
    fn reconnect(&mut self, now: Instant) {
        let pool = Pool {
            dead: &self.dead,
            removed: &self.removed,
            members: &self.members,
            seeds: &self.seeds,
        };
        let Some(candidate) = pool.draw(now, self.config.reconnect_timeout, &mut self.rng) else {
            return;
        };
        self.metrics.reconnects += 1;
        match candidate {
            Candidate::Seed(seed) => {
                tracing::debug!(%seed, "reconnect: contacting a seed");
                self.send_syn(seed, &[], &[], false);
            }
            Candidate::Member { id, incarnation } => {
                tracing::debug!(node = %id, "reconnect: contacting a member held dead");
                let seq = self.swim.next_seq();
                let msgs = vec![
                    msg::ping(seq, &id.name, self.members.fingerprint()),
                    msg::update(&id, incarnation, MemberState::Dead, &self.me.name),
                ];
                // No peer key: the full header, so that a node which
                // removed us learns who we are.
                self.send(id.addr, None, msgs, None);
            }
            Candidate::Vanished => {}
        }
    }

    // ----- local operations ---------------------------------------------

    /// Sets `key` of this node to `value`; returns the new version. Keys
    /// starting with [`RESERVED_PREFIX`] belong to the library and are
    /// refused.
    pub fn set(
        &mut self,
        now: Instant,
        key: &str,
        value: impl Into<Bytes>,
    ) -> Result<u64, SetError> {
        if key.starts_with(RESERVED_PREFIX) {
            return Err(SetError::Reserved);
        }
        self.set_reserved(now, key, value)
    }

    /// Like [`set`](Engine::set) but for the library's own keys (those
    /// under [`RESERVED_PREFIX`], e.g. the key ids a node holds).
    pub(crate) fn set_reserved(
        &mut self,
        now: Instant,
        key: &str,
        value: impl Into<Bytes>,
    ) -> Result<u64, SetError> {
        let value = value.into();
        self.check_entry(key, value.len())?;
        self.advance(now);
        let me = self.members.me();
        let before = self.my_version();
        let v = self
            .members
            .with_state(me, |s| s.set_local(key.to_owned(), value))
            .unwrap_or(0);
        self.sign_own(key);
        self.note_fresh(me, before);
        self.push_if_due(now);
        self.arm_timers();
        Ok(v)
    }

    /// Deletes `key` of this node, leaving a tombstone; returns the
    /// tombstone's version, or `None` if the key was not set.
    pub fn delete(&mut self, now: Instant, key: &str) -> Option<u64> {
        if key.starts_with(RESERVED_PREFIX) {
            return None;
        }
        self.advance(now);
        let me = self.members.me();
        let before = self.my_version();
        let v = self
            .members
            .with_state(me, |s| s.delete_local(key, now))
            .flatten();
        if v.is_some() {
            self.sign_own(key);
            self.note_fresh(me, before);
        }
        self.push_if_due(now);
        self.arm_timers();
        v
    }

    /// Sends `payload` to every healthy member, each delivering it once as
    /// [`Event::Broadcast`]. It rides on gossip and probe packets.
    pub fn broadcast(
        &mut self,
        now: Instant,
        payload: impl Into<Bytes>,
    ) -> Result<u64, BroadcastError> {
        self.advance(now);
        let max = self.outbox.max_entry();
        let (id, out) = self
            .broadcasts
            .originate(&self.me.name, payload.into(), max)
            .map_err(|len| BroadcastError::TooLarge { len, max })?;
        self.rumors.push_broadcast(out.subject, &out.msg);
        Ok(id)
    }

    fn my_version(&self) -> u64 {
        self.members
            .get(self.members.me())
            .map_or(0, |k| k.state.max_version())
    }

    /// Lowers the packet budget to `max` bytes, for a transport that
    /// reported a smaller limit than it declared (e.g. a QUIC peer whose
    /// datagram size shrank). Every later packet is packed under the new
    /// budget; what the refused packet carried is sent again by the
    /// protocol (gossip and probes retry). Returns false, changing nothing,
    /// if `max` is not smaller or too small to hold a useful packet.
    pub fn shrink_budget(&mut self, max: usize) -> bool {
        self.outbox.shrink(max)
    }

    /// Adds addresses to contact while this node knows no peer, and at
    /// every `reconnect_interval` while they are not alive members.
    pub fn add_seeds(&mut self, seeds: impl IntoIterator<Item = SocketAddr>) {
        for s in seeds {
            if s != self.me.addr && !s.ip().is_unspecified() && !self.seeds.contains(&s) {
                self.seeds.push(s);
            }
        }
    }

    /// Replaces the seed addresses (e.g. with a fresh DNS resolution).
    pub fn set_seeds(&mut self, seeds: impl IntoIterator<Item = SocketAddr>) {
        self.seeds.clear();
        self.add_seeds(seeds);
    }

    /// The seed addresses in use.
    pub fn seeds(&self) -> &[SocketAddr] {
        &self.seeds
    }

    /// Installs the application's say on who may become a member (or,
    /// with `None`, removes it): asked about every node this engine would
    /// add, or whose new generation it would take, once
    /// `Config::allowed_networks` and `Config::max_members` let it
    /// through. A refused node is not added, raises no event and has its
    /// packets dropped and its state ignored; see [`AdmissionCheck`].
    /// Members already held stay.
    pub fn set_admission_check(&mut self, check: Option<AdmissionCheck>) {
        self.admission.set_check(check);
    }

    /// Adds `ids` as alive members with empty state, as if a join had
    /// completed and its events been read: the simulator's converged start
    /// for clusters too large to join by gossip in reasonable time. Names
    /// already known are skipped.
    #[cfg(feature = "sim")]
    pub(crate) fn preload(&mut self, ids: &[NodeId]) {
        self.members
            .reserve(ids.len().saturating_sub(self.members.len()));
        for id in ids {
            if self.members.key_of(&id.name).is_none() {
                self.members.insert(id.clone());
            }
        }
    }

    fn check_entry(&self, key: &str, value_len: usize) -> Result<(), SetError> {
        if key.len() > self.config.max_key_len {
            return Err(SetError::KeyTooLong {
                len: key.len(),
                max: self.config.max_key_len,
            });
        }
        let len = self.outbox.entry_len(key.len(), value_len);
        let max = self.outbox.max_entry();
        if len > max {
            return Err(SetError::EntryTooLarge { len, max });
        }
        Ok(())
    }

    // ----- output --------------------------------------------------------

    /// The next datagram to send, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        // Acknowledgements owed for the pushes read since the last call
        // leave now, merged per peer (see `acks`).
        self.flush_acks();
        self.outbox.poll()
    }

    /// The next event for the application, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        release_if_drained(&mut self.events);
        e
    }

    /// When [`handle_timeout`](Engine::handle_timeout) must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        // The gossip timer is always armed, so the fallback is never used.
        self.timers
            .next()
            .unwrap_or(self.last_now + self.config.gossip_interval)
    }

    /// Turns recording of [`Observation`]s on or off (off by default).
    /// Turning it off discards what is queued.
    pub fn set_observing(&mut self, on: bool) {
        self.observations.set_on(on);
    }

    /// The next measurement, if recording is on and one was made.
    #[must_use]
    pub fn poll_observation(&mut self) -> Option<Observation> {
        self.observations.poll()
    }

    // ----- internals -----------------------------------------------------

    /// Sends `msgs` (each sized to fit) in one packet to `to`, filling
    /// the rest with rumors, `buddy`'s first. Sends nothing if the packet
    /// would be empty.
    ///
    /// `peer` is the member at `to`, if known: a peer in sync with us gets
    /// the compact header (see [`Engine::knows_us`]).
    fn send(
        &mut self,
        to: SocketAddr,
        peer: Option<u64>,
        msgs: Vec<proto::Message>,
        buddy: Option<Subject>,
    ) {
        let Some(mut packer) = self.outbox.start(self.knows_us(peer)) else {
            return;
        };
        for m in msgs {
            self.outbox.add(&mut packer, m);
        }
        self.finish(packer, to, buddy.as_ref());
    }

    /// Fills the packet's spare room with rumors (membership first, the
    /// buddy's first of all) and queues it.
    fn finish(&mut self, packer: Packer, to: SocketAddr, buddy: Option<&Subject>) {
        self.finish_with(packer, to, buddy, true);
    }

    /// [`finish`](Engine::finish), with lazy announcements piggybacked
    /// only if `announce` (not on a tree push: its receiver gets the
    /// entries themselves).
    pub(super) fn finish_with(
        &mut self,
        mut packer: Packer,
        to: SocketAddr,
        buddy: Option<&Subject>,
        announce: bool,
    ) {
        let acked = self.add_owed_acks(&mut packer, to);
        if announce && !self.shedding(self.last_now) {
            self.add_announcement(&mut packer);
        }
        if !self.rumors.is_empty() {
            let limit = self.rumor_limit();
            let spare = Outbox::spare(&packer);
            for r in self.rumors.take(limit, buddy, spare, &self.members) {
                self.outbox.add(&mut packer, r);
            }
        }
        self.count_merged_acks(acked, &packer);
        self.outbox.queue(packer, to);
    }

    /// Says that this node is overloaded at `now` (its driver found
    /// datagrams piling up unread, or the OS dropping them): for one
    /// `probe_interval` after the last such note it sheds what only speeds
    /// dissemination up, in this order, and keeps what keeps members
    /// alive:
    ///
    /// 1. shed: anti-entropy `Syn`s to random peers and lazy announcements
    ///    (whose pulls would follow);
    /// 2. kept: probes, their acks and relays, rumors (a suspected
    ///    member's refutation travels as one: shedding rumor packets
    ///    turned an overloaded join at 1,024 nodes into 270 false deaths),
    ///    answers to peers' exchanges, and tree pushes with their acks
    ///    (already capped per peer and per node, and backing off).
    ///
    /// An overloaded cluster thus slows its dissemination down instead of
    /// failing its probes and declaring live members dead. Counted in
    /// [`Metrics::shed_rounds`].
    pub fn note_overload(&mut self, now: Instant) {
        self.advance(now);
        self.overloaded_until = Some(now + self.config.probe_interval);
    }

    /// Whether optional traffic is being shed at `now`.
    pub(super) fn shedding(&self, now: Instant) -> bool {
        self.overloaded_until.is_some_and(|t| now < t)
    }

    /// This node's incarnation.
    fn my_incarnation(&self) -> u64 {
        self.members
            .get(self.members.me())
            .map_or(0, |k| k.incarnation)
    }

    /// Rumors are sent `retransmit_mult · ceil(log10(N + 1))` times.
    fn rumor_limit(&self) -> u32 {
        let n = self.members.len() as f64;
        self.config.retransmit_mult * ((n + 1.0).log10().ceil().max(1.0) as u32)
    }

    /// Whether member `peer` knows our full identity, so that our key
    /// alone names us in a packet's header. It does if the fingerprint it
    /// last reported equals ours (the fingerprint covers every healthy
    /// member's key); otherwise we assume so while membership looks
    /// settled (no divergence seen here for a while: fresh versions being
    /// pushed do not count, they change fingerprints but not who knows
    /// whom). A wrong guess costs little: an unknown key's ping is still
    /// answered, a push still applied, and gossip introduces us anyway.
    pub(super) fn knows_us(&self, peer: Option<u64>) -> bool {
        let mine = self.members.fingerprint();
        let settled = !self
            .reconciler
            .divergence_recent(self.last_now, &self.config);
        peer.and_then(|p| self.members.get(p))
            .is_some_and(|k| k.fingerprint == mine || settled)
    }

    fn collect_tombstones(&mut self, now: Instant) {
        let grace = self.config.tombstone_grace;
        let keys: Vec<u64> = self.members.keys().collect();
        for key in keys {
            self.members.with_state(key, |s| {
                if s.has_tombstones() {
                    s.collect_tombstones(now, grace);
                }
            });
        }
        let members = &self.members;
        self.signing.retain(|k| members.get(k).is_some());
    }
}

/// Gives back the memory of a queue emptied after a burst (a join of
/// thousands of members queues tens of thousands of events; the capacity
/// would otherwise stay for the life of the engine).
fn release_if_drained<T>(q: &mut VecDeque<T>) {
    const KEEP: usize = 64;
    if q.is_empty() && q.capacity() > 4 * KEEP {
        q.shrink_to(KEEP);
    }
}

#[cfg(test)]
mod tests;
