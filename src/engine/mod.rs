//! The sans-IO protocol engine: membership table, versioned key-value state
//! and Scuttlebutt reconciliation. It performs no I/O and reads no clock:
//! time comes with every call and randomness from a seeded RNG, so the same
//! inputs give the same outputs (which is what makes the simulator exact).

mod broadcast;
mod digest;
mod event;
mod gossip;
#[cfg(any(test, feature = "sim"))]
pub(crate) mod harness;
mod lifecycle;
mod membership;
mod metrics;
mod node_id;
mod observation;
#[cfg(test)]
mod pair;
mod phi;
mod probe;
mod push;
mod reconnect;
mod removed;
mod rumor;
mod state;
mod suspicion;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::StdRng;

pub use event::Event;
pub use membership::{Member, MemberStatus};
pub use metrics::{Drops, KindCounts, MemberCounts, Metrics};
pub use node_id::NodeId;
pub use observation::{OBSERVATION_CAP, Observation, SuspicionOutcome};

use crate::config::{Config, ConfigError};
use crate::wire::{self, DecodeError, Limits, PackerError, field_len, proto};
use membership::Members;
use probe::Swim;

/// A datagram the engine wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    /// The encoded packet; never longer than the engine's budget.
    pub payload: Bytes,
}

/// Why an [`Engine`] could not be created. No engine exists afterwards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A config field is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The transport's budget cannot hold even an empty packet.
    #[error(transparent)]
    Budget(#[from] PackerError),
}

/// Prefix of the keys the library itself keeps in a node's state (for
/// example `__sw.keys`, the ids of the encryption keys a node holds).
/// Applications cannot `set` or `delete` them, but see them like any key.
pub const RESERVED_PREFIX: &str = "__sw.";

/// Why a local write was refused. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// The key starts with [`RESERVED_PREFIX`], which the library owns.
    #[error("keys starting with `{RESERVED_PREFIX}` are reserved for the library")]
    Reserved,
    /// The key is longer than `Config::max_key_len`.
    #[error("key of {len} bytes is longer than max_key_len ({max} bytes)")]
    KeyTooLong {
        /// Length of the refused key.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The key and value together could never fit one packet under the
    /// transport's budget, so they could never be gossiped.
    #[error("key and value take {len} bytes encoded; one packet holds at most {max}")]
    EntryTooLarge {
        /// Encoded size of the entry.
        len: usize,
        /// Largest entry that fits one packet.
        max: usize,
    },
}

/// Why a broadcast was refused. Nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastError {
    /// The payload could never fit one packet under the budget.
    #[error("broadcast takes {len} bytes encoded; one packet holds at most {max}")]
    TooLarge {
        /// Encoded size of the broadcast.
        len: usize,
        /// Largest that fits one packet.
        max: usize,
    },
}

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
///   [`add_seeds`](Engine::add_seeds), [`set_seeds`](Engine::set_seeds).
/// * Output, after every input or operation, in this order: drain
///   [`poll_transmit`](Engine::poll_transmit) and send each datagram, drain
///   [`poll_event`](Engine::poll_event) (and
///   [`poll_observation`](Engine::poll_observation), if
///   [`set_observing`](Engine::set_observing) turned measurements on),
///   then re-arm the timer with [`poll_timeout`](Engine::poll_timeout).
#[derive(Debug)]
pub struct Engine {
    config: Config,
    me: NodeId,
    cluster_id: u32,
    budget: usize,
    limits: Limits,
    max_entry: usize,
    rng: StdRng,
    members: Members,
    seeds: Vec<SocketAddr>,
    cursor: usize,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_gossip: Instant,
    next_gc: Instant,
    next_reconnect: Instant,
    metrics: Metrics,
    swim: Swim,
    /// Nodes whose state advanced since the last push, with the version
    /// they were at before.
    fresh: HashMap<u64, u64>,
    push_at: Option<Instant>,
    /// Tree pushes awaiting their acknowledgement.
    pushes: push::Pushes,
    /// Measurements for the owner's histograms (off unless asked for).
    observations: observation::Observations,
    /// The latest `now` the engine was given (for `set`, which takes none).
    last_now: Instant,
    /// Last evidence that peers may disagree with us (see
    /// `anti_entropy_active`).
    last_divergence: Instant,
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
        let header = proto::Packet {
            version: wire::PROTOCOL_VERSION,
            cluster: cluster_id,
            from: Some(me.to_proto()),
            messages: vec![],
            from_key: 0,
        };
        // Smallest useful packet: header, message wrappers, a delta header.
        let delta_header = proto::NodeDelta {
            node: Some(me.to_proto()),
            from_version: u64::MAX,
            to_version: u64::MAX,
            last_gc_version: u64::MAX,
            entries: vec![],
        }
        .encoded_len();
        // Room for a relay whose name is longer than ours.
        const NESTING: usize = 12;
        const RELAY_SLACK: usize = 64;
        let overhead = header.encoded_len() + NESTING + delta_header + RELAY_SLACK;
        if overhead + 16 > budget {
            return Err(PackerError::BudgetTooSmall {
                budget,
                header: overhead + 16,
            }
            .into());
        }
        // Refuse from the network what this node could never gossip on:
        // keys longer than it accepts itself, values larger than an entry
        // that fits one packet under its budget.
        let limits = Limits {
            max_name_len: 255,
            max_key_len: config.max_key_len,
            max_value_len: budget - overhead,
            max_messages: 1024,
        };
        let interval = config.gossip_interval;
        Ok(Engine {
            members: Members::new(me.clone()),
            max_entry: budget - overhead,
            cluster_id,
            budget,
            limits,
            rng: StdRng::seed_from_u64(rng_seed),
            seeds: Vec::new(),
            cursor: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_gossip: now + interval,
            next_gc: now + config.tombstone_grace / 4,
            next_reconnect: now + config.reconnect_interval,
            metrics: Metrics::default(),
            swim: Swim::new(&config, now),
            fresh: HashMap::new(),
            push_at: None,
            pushes: push::Pushes::default(),
            observations: observation::Observations::default(),
            last_now: now,
            last_divergence: now,
            me,
            config,
        })
    }

    // ----- getters -------------------------------------------------------

    /// This node's identity.
    pub fn local_id(&self) -> &NodeId {
        &self.me
    }

    /// The byte budget every packet is packed under.
    pub fn budget(&self) -> usize {
        self.budget
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
        let (member, user) = self.swim.rumors.lens();
        Metrics {
            member_rumors_queued: member,
            broadcasts_queued: user,
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
        self.last_now = self.last_now.max(now);
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
            self.handle_message(now, from, sender_key, kind);
        }
    }

    /// The sender of a packet that carries its full id: learnt (or
    /// refused as an older generation: `Ok(None)`), announced on first
    /// contact, told if we hold it for dead. `Err` drops the packet.
    fn full_sender(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: &proto::NodeId,
    ) -> Result<Option<u64>, ()> {
        let Some(sender) = NodeId::from_proto(id) else {
            self.metrics
                .drops
                .count(&DecodeError::Invalid("bad sender"));
            return Err(());
        };
        if !routable(&sender.addr) {
            self.metrics.unroutable_ids += 1;
            return Err(());
        }
        if sender.name == self.me.name {
            // Our own name: a loop, a spoof, or our previous incarnation.
            self.metrics.drops.from_self += 1;
            return Err(());
        }
        let first_contact = self.members.key_of(&sender.name) != Some(sender.key());
        let sender_key = self.learn(&sender, now);
        if first_contact && sender_key.is_some() {
            // A node that contacted us directly is alive: spread the news as
            // a rumor, so joins reach everyone in O(log N) rounds instead of
            // waiting for digest pages to list the newcomer.
            self.announce_alive(&sender);
        }
        match sender_key.and_then(|k| self.member_state(k)) {
            Some((proto::MemberState::Dead, inc)) => self.tell_dead(now, from, &sender, inc),
            None => {
                if let Some(inc) = self.removed_incarnation(&sender.name, sender.generation) {
                    self.tell_dead(now, from, &sender, inc);
                }
            }
            _ => {}
        }
        Ok(sender_key)
    }

    /// The sender of a packet with a compact header (a peer in sync with
    /// us named itself by key): `Ok(None)` if we do not know the key.
    fn compact_sender(
        &mut self,
        now: Instant,
        from: SocketAddr,
        key: u64,
    ) -> Result<Option<u64>, ()> {
        if key == self.members.me() {
            self.metrics.drops.from_self += 1;
            return Err(());
        }
        let Some(k) = self.members.get(key) else {
            return Ok(None);
        };
        if k.status == MemberStatus::Dead {
            let (id, inc) = (k.id.clone(), k.incarnation);
            self.tell_dead(now, from, &id, inc);
        }
        Ok(Some(key))
    }

    /// Runs the timers that are due: gossip rounds and tombstone collection.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        if self.push_at.is_some_and(|t| now >= t) {
            self.push_fresh(now);
        }
        if self.push_retry_due(now) {
            self.retry_pushes(now);
        }
        self.swim_timeout(now);
        if now >= self.next_gossip {
            if !self.swim.leaving {
                self.gossip_round(now);
            }
            // Keep the cadence, but never try to catch up on missed rounds.
            self.next_gossip += self.config.gossip_interval;
            if self.next_gossip <= now {
                self.next_gossip = now + self.config.gossip_interval;
            }
        }
        if now >= self.next_reconnect {
            if !self.swim.leaving {
                self.reconnect(now);
            }
            self.next_reconnect = now + self.config.reconnect_interval;
        }
        if now >= self.next_gc {
            self.collect_tombstones(now);
            self.next_gc = now + (self.config.tombstone_grace / 4);
        }
    }

    // ----- local operations ---------------------------------------------

    /// Sets `key` of this node to `value`; returns the new version. Keys
    /// starting with [`RESERVED_PREFIX`] belong to the library and are
    /// refused.
    pub fn set(&mut self, key: &str, value: impl Into<Bytes>) -> Result<u64, SetError> {
        if key.starts_with(RESERVED_PREFIX) {
            return Err(SetError::Reserved);
        }
        self.set_reserved(key, value)
    }

    /// Like [`set`](Engine::set) but for the library's own keys (those
    /// under [`RESERVED_PREFIX`], e.g. the key ids a node holds).
    pub fn set_reserved(&mut self, key: &str, value: impl Into<Bytes>) -> Result<u64, SetError> {
        let value = value.into();
        self.check_entry(key, value.len())?;
        let me = self.members.me();
        let before = self.my_version();
        let v = self
            .members
            .with_state(me, |s| s.set_local(key.to_owned(), value))
            .unwrap_or(0);
        self.note_fresh(me, before);
        Ok(v)
    }

    /// Deletes `key` of this node, leaving a tombstone; returns the
    /// tombstone's version, or `None` if the key was not set.
    pub fn delete(&mut self, now: Instant, key: &str) -> Option<u64> {
        if key.starts_with(RESERVED_PREFIX) {
            return None;
        }
        self.last_now = self.last_now.max(now);
        let me = self.members.me();
        let before = self.my_version();
        let v = self
            .members
            .with_state(me, |s| s.delete_local(key, now))
            .flatten();
        if v.is_some() {
            self.note_fresh(me, before);
        }
        v
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
        let overhead = self.budget - self.max_entry;
        if max >= self.budget || max < overhead + 16 {
            return false;
        }
        self.budget = max;
        self.max_entry = max - overhead;
        true
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
        let kv_len = field_len(key.len())
            + field_len(value_len)
            + 1
            + prost::encoding::encoded_len_varint(u64::MAX);
        let len = field_len(kv_len);
        if len > self.max_entry {
            return Err(SetError::EntryTooLarge {
                len,
                max: self.max_entry,
            });
        }
        Ok(())
    }

    // ----- output --------------------------------------------------------

    /// The next datagram to send, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front();
        release_if_drained(&mut self.transmits);
        t
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
        let t = self
            .next_gossip
            .min(self.next_gc)
            .min(self.next_reconnect)
            .min(self.swim.next_deadline());
        let t = self.push_at.map_or(t, |p| t.min(p));
        self.pushes.next_due().map_or(t, |p| t.min(p))
    }

    // ----- internals -----------------------------------------------------

    /// Queues an encoded packet, counting it.
    fn queue(&mut self, to: SocketAddr, payload: Bytes) {
        debug_assert!(payload.len() <= self.budget);
        self.metrics.packets_sent += 1;
        self.metrics.bytes_sent += payload.len() as u64;
        self.metrics.largest_packet_sent = self.metrics.largest_packet_sent.max(payload.len());
        self.transmits.push_back(Transmit { to, payload });
    }

    fn header(&self) -> proto::Packet {
        self.header_for(None)
    }

    /// The packet header for member `peer`: our key alone if that peer
    /// knows our full identity, else our full id. It does if the
    /// fingerprint it last reported equals ours (the fingerprint covers
    /// every healthy member's key); if it never reported one, we assume
    /// so while the cluster looks in sync (no divergence seen here for a
    /// while). A wrong guess costs little: an unknown key's ping is still
    /// answered, and gossip introduces us anyway.
    fn header_for(&self, peer: Option<u64>) -> proto::Packet {
        let mine = self.members.fingerprint();
        let in_sync = peer
            .and_then(|p| self.members.get(p))
            .is_some_and(|k| match k.fingerprint {
                0 => !self.divergence_recent(self.last_now),
                heard => heard == mine,
            });
        proto::Packet {
            version: wire::PROTOCOL_VERSION,
            cluster: self.cluster_id,
            from: (!in_sync).then(|| self.me.to_proto()),
            messages: vec![],
            from_key: if in_sync { self.members.me() } else { 0 },
        }
    }

    /// Converts a member record from the network, refusing (and counting)
    /// one that is malformed or whose address no peer could send to.
    fn node_id(&mut self, p: Option<&proto::NodeId>) -> Option<NodeId> {
        let id = NodeId::from_proto(p?)?;
        if !routable(&id.addr) {
            self.metrics.unroutable_ids += 1;
            return None;
        }
        Some(id)
    }

    /// Learns of a node from a packet or delta; returns its key, or `None`
    /// if `id` is an older generation than the one we know.
    fn learn(&mut self, id: &NodeId, _now: Instant) -> Option<u64> {
        match self.members.key_of(&id.name) {
            None if self.swim.removed.is_removed(&id.name, id.generation) => {
                // Removed: only the node's own refutation brings it back.
                self.metrics.stale_generation += 1;
                None
            }
            None => {
                self.members.insert(id.clone());
                self.diverged();
                self.events.push_back(Event::MemberJoined(id.clone()));
                Some(id.key())
            }
            Some(k) if k == id.key() => Some(k),
            Some(k) => {
                let old = self.members.get(k)?.id.clone();
                if id.generation <= old.generation {
                    self.metrics.stale_generation += 1;
                    return None;
                }
                self.members.remove(k);
                self.members.insert(id.clone());
                self.events.push_back(Event::MemberRestarted {
                    old,
                    new: id.clone(),
                });
                Some(id.key())
            }
        }
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
    }
}

/// Whether peers can send to `addr`: a node advertising `0.0.0.0`, `::`
/// or port 0 would have every peer send to itself.
fn routable(addr: &SocketAddr) -> bool {
    !addr.ip().is_unspecified() && addr.port() != 0
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
