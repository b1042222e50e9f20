//! SWIM failure detection: probes (ping, ping-req, ack, nack), suspicion
//! and refutation, membership rumors, dead-member retries and removal,
//! leaving, and user broadcasts.
//!
//! Each probe period the node pings one member, taken from a shuffled
//! round-robin list. No ack before the phi-accrual timeout → `PingReq` to
//! `indirect_checks` others, who ping on our behalf and relay the ack or
//! answer with a nack. Still nothing by the end of the period → the member
//! becomes *suspect*; it is declared *dead* when its Lifeguard suspicion
//! timeout ends, unless it refutes by raising its incarnation.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::seq::SliceRandom;

use super::phi::RttDetector;
use super::rumor::{Rumors, Subject};
use super::suspicion::Suspicion;
use super::{Engine, Event, MemberStatus, NodeId};
use crate::config::Config;
use crate::wire::proto::{self, MemberState, message::Kind};

/// Broadcast ids remembered per node for deduplication.
const SEEN_BROADCASTS: usize = 8192;

#[derive(Debug)]
struct Probe {
    seq: u64,
    target: u64,
    addr: SocketAddr,
    sent_at: Instant,
    timeout_at: Instant,
    indirect: bool,
    nacks_expected: u32,
    nacks: u32,
    acked: bool,
}

#[derive(Debug)]
struct Relay {
    requester: SocketAddr,
    their_seq: u64,
    target: String,
    nack_at: Option<Instant>,
    expires: Instant,
}

#[derive(Debug)]
struct Dead {
    since: Instant,
    /// `None` for members that left: they are not retried.
    next_retry: Option<Instant>,
    backoff: Duration,
}

#[derive(Debug)]
struct Removed {
    generation: u64,
    incarnation: u64,
    at: Instant,
}

/// The failure detector's state, owned by the [`Engine`].
#[derive(Debug)]
pub(crate) struct Swim {
    pub leaving: bool,
    seq: u64,
    order: Vec<u64>,
    pos: usize,
    probe: Option<Probe>,
    relays: HashMap<u64, Relay>,
    pub next_probe: Instant,
    rtt: RttDetector,
    pub awareness: u32,
    suspicions: HashMap<u64, Suspicion>,
    dead: HashMap<u64, Dead>,
    removed: HashMap<String, Removed>,
    pub rumors: Rumors,
    broadcast_seq: u64,
    seen: HashSet<(String, u64)>,
    seen_order: VecDeque<(String, u64)>,
    told_dead: HashMap<SocketAddr, Instant>,
    /// Last fingerprint each peer reported (on probes and digests).
    pub peer_fingerprints: HashMap<u64, u64>,
}

impl Swim {
    pub fn new(config: &Config, now: Instant) -> Swim {
        Swim {
            leaving: false,
            seq: 0,
            order: Vec::new(),
            pos: 0,
            probe: None,
            relays: HashMap::new(),
            next_probe: now + config.probe_interval,
            rtt: RttDetector::new(config.conviction_threshold),
            awareness: 0,
            suspicions: HashMap::new(),
            dead: HashMap::new(),
            removed: HashMap::new(),
            rumors: Rumors::default(),
            broadcast_seq: 0,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            told_dead: HashMap::new(),
            peer_fingerprints: HashMap::new(),
        }
    }

    /// The earliest SWIM deadline.
    pub fn next_deadline(&self) -> Instant {
        let mut t = self.next_probe;
        if let Some(p) = &self.probe {
            if !p.acked && !p.indirect {
                t = t.min(p.timeout_at);
            }
        }
        for r in self.relays.values() {
            t = t.min(r.nack_at.unwrap_or(r.expires));
        }
        for s in self.suspicions.values() {
            t = t.min(s.deadline());
        }
        for d in self.dead.values() {
            if let Some(r) = d.next_retry {
                t = t.min(r);
            }
        }
        t
    }

    /// Whether `name` at `generation` was removed and must not come back
    /// through third-party news.
    pub fn is_removed(&self, name: &str, generation: u64) -> bool {
        self.removed
            .get(name)
            .is_some_and(|r| generation <= r.generation)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }
}

fn update(id: &NodeId, incarnation: u64, state: MemberState, from: &str) -> proto::Message {
    proto::Message {
        kind: Some(Kind::Member(proto::MemberUpdate {
            node: Some(id.to_proto()),
            incarnation,
            state: state as i32,
            from: from.to_owned(),
        })),
    }
}

fn status_of(state: MemberState) -> MemberStatus {
    match state {
        MemberState::Alive => MemberStatus::Alive,
        MemberState::Suspect => MemberStatus::Suspect,
        MemberState::Dead => MemberStatus::Dead,
        MemberState::Left => MemberStatus::Left,
    }
}

fn state_of(status: MemberStatus) -> MemberState {
    match status {
        MemberStatus::Alive => MemberState::Alive,
        MemberStatus::Suspect => MemberState::Suspect,
        MemberStatus::Dead => MemberState::Dead,
        MemberStatus::Left => MemberState::Left,
    }
}

impl Engine {
    /// Probe timing stretched by local health (Lifeguard).
    fn scaled(&self, d: Duration) -> Duration {
        d * (1 + self.swim.awareness)
    }

    fn my_incarnation(&self) -> u64 {
        self.members
            .get(self.members.me())
            .map_or(0, |k| k.incarnation)
    }

    /// Rumors are sent `retransmit_mult · ceil(log10(N + 1))` times.
    pub(super) fn rumor_limit(&self) -> u32 {
        let n = self.members.len() as f64;
        self.config.retransmit_mult * ((n + 1.0).log10().ceil().max(1.0) as u32)
    }

    fn suspicion_bounds(&self) -> (Duration, Duration) {
        let n = self.members.len().max(1) as f64;
        let min = self
            .config
            .probe_interval
            .mul_f64(f64::from(self.config.suspicion_mult) * n.log10().max(1.0));
        (min, min * self.config.suspicion_max_mult)
    }

    /// Runs the failure detector's due timers.
    pub(super) fn swim_timeout(&mut self, now: Instant) {
        if self.swim.leaving {
            // Nothing left to detect; keep the timer out of the way.
            self.swim.next_probe = now + self.config.probe_interval;
            return;
        }
        if now >= self.swim.next_probe {
            self.probe_round(now);
        }
        self.check_probe(now);
        self.check_relays(now);
        self.check_suspicions(now);
        self.check_dead(now);
    }

    fn probe_round(&mut self, now: Instant) {
        if let Some(p) = self.swim.probe.take() {
            if p.acked {
                self.swim.awareness = self.swim.awareness.saturating_sub(1);
            } else {
                self.probe_failed(now, &p);
            }
        }
        self.swim.next_probe = now + self.scaled(self.config.probe_interval);
        let Some(target) = self.next_target() else {
            return;
        };
        let Some(k) = self.members.get(target) else {
            return;
        };
        let (addr, name) = (k.id.addr, k.id.name.clone());
        let buddy = (k.status == MemberStatus::Suspect)
            .then(|| update(&k.id, k.incarnation, MemberState::Suspect, &self.me.name));
        let seq = self.swim.next_seq();
        let timeout = self.scaled(self.swim.rtt.timeout(self.config.probe_timeout));
        self.swim.probe = Some(Probe {
            seq,
            target,
            addr,
            sent_at: now,
            timeout_at: now + timeout,
            indirect: false,
            nacks_expected: 0,
            nacks: 0,
            acked: false,
        });
        let mut msgs = vec![ping(seq, &name, self.members.fingerprint())];
        // Buddy system: a suspect learns it is suspected from its prober.
        msgs.extend(buddy);
        self.send_messages(addr, msgs, Some(Subject::Member(name)));
    }

    /// The next member in the shuffled round-robin order.
    fn next_target(&mut self) -> Option<u64> {
        for _ in 0..2 {
            while self.swim.pos < self.swim.order.len() {
                let key = self.swim.order[self.swim.pos];
                self.swim.pos += 1;
                if self
                    .members
                    .get(key)
                    .is_some_and(|k| k.status.is_healthy() && key != self.members.me())
                {
                    return Some(key);
                }
            }
            let mut order = self.members.peers().to_vec();
            order.sort_unstable();
            order.shuffle(&mut self.rng);
            self.swim.order = order;
            self.swim.pos = 0;
        }
        None
    }

    fn check_probe(&mut self, now: Instant) {
        let Some(p) = self.swim.probe.as_mut() else {
            return;
        };
        if p.acked || p.indirect || now < p.timeout_at {
            return;
        }
        p.indirect = true;
        let (seq, target) = (p.seq, p.target);
        let Some(tid) = self.members.get(target).map(|k| k.id.to_proto()) else {
            return;
        };
        let relays =
            self.members
                .random_peers(&mut self.rng, self.config.indirect_checks, Some(target));
        let addrs: Vec<SocketAddr> = relays
            .iter()
            .filter_map(|k| self.members.get(*k).map(|k| k.id.addr))
            .collect();
        if let Some(p) = self.swim.probe.as_mut() {
            p.nacks_expected = addrs.len() as u32;
        }
        for addr in addrs {
            let msg = proto::Message {
                kind: Some(Kind::PingReq(proto::PingReq {
                    seq,
                    target: Some(tid.clone()),
                    nack: true,
                })),
            };
            self.send_messages(addr, vec![msg], None);
        }
    }

    fn probe_failed(&mut self, now: Instant, p: &Probe) {
        // Lifeguard: nacks we expected but did not get mean our own
        // network is the problem; without relays, any failure counts.
        let delta = if p.nacks_expected > 0 {
            p.nacks_expected.saturating_sub(p.nacks)
        } else {
            1
        };
        self.swim.awareness = (self.swim.awareness + delta).min(self.config.awareness_max);
        let Some(k) = self.members.get(p.target) else {
            return;
        };
        if k.status != MemberStatus::Alive {
            return;
        }
        let msg = proto::MemberUpdate {
            node: Some(k.id.to_proto()),
            incarnation: k.incarnation,
            state: MemberState::Suspect as i32,
            from: self.me.name.clone(),
        };
        tracing::debug!(target_node = %k.id, "probe failed; suspect");
        self.on_member_update(now, &msg);
    }

    fn check_relays(&mut self, now: Instant) {
        let mut nacks = Vec::new();
        self.swim.relays.retain(|_, r| {
            if r.nack_at.is_some_and(|t| now >= t) {
                r.nack_at = None;
                nacks.push((r.requester, r.their_seq));
            }
            now < r.expires
        });
        for (to, seq) in nacks {
            let msg = proto::Message {
                kind: Some(Kind::PingNack(proto::PingNack { seq })),
            };
            self.send_messages(to, vec![msg], None);
        }
    }

    fn check_suspicions(&mut self, now: Instant) {
        let due: Vec<(u64, u64)> = self
            .swim
            .suspicions
            .iter()
            .filter(|(_, s)| now >= s.deadline())
            .map(|(k, s)| (*k, s.incarnation))
            .collect();
        for (key, inc) in due {
            self.swim.suspicions.remove(&key);
            let Some(k) = self.members.get(key) else {
                continue;
            };
            if k.status != MemberStatus::Suspect || k.incarnation != inc {
                continue;
            }
            let msg = proto::MemberUpdate {
                node: Some(k.id.to_proto()),
                incarnation: inc,
                state: MemberState::Dead as i32,
                from: self.me.name.clone(),
            };
            self.on_member_update(now, &msg);
        }
    }

    fn check_dead(&mut self, now: Instant) {
        let retention = self.config.dead_retention;
        let mut remove = Vec::new();
        let mut retry = Vec::new();
        for (key, d) in &mut self.swim.dead {
            if now >= d.since + retention {
                remove.push(*key);
            } else if d.next_retry.is_some_and(|t| now >= t) {
                d.backoff *= 2;
                d.next_retry = Some(now + d.backoff);
                retry.push(*key);
            }
        }
        for key in retry {
            let Some(k) = self.members.get(key) else {
                continue;
            };
            // It may be back: tell it what we think, so it can refute.
            let seq = self.swim.next_seq();
            let msgs = vec![
                ping(seq, &k.id.name, self.members.fingerprint()),
                update(&k.id, k.incarnation, MemberState::Dead, &self.me.name),
            ];
            let addr = k.id.addr;
            self.send_messages(addr, msgs, None);
        }
        for key in remove {
            self.swim.dead.remove(&key);
            if let Some(k) = self.members.remove(key) {
                self.swim.removed.insert(
                    k.id.name.clone(),
                    Removed {
                        generation: k.id.generation,
                        incarnation: k.incarnation,
                        at: now,
                    },
                );
                self.swim.peer_fingerprints.remove(&key);
                self.events.push_back(Event::MemberRemoved(k.id));
            }
        }
        // Forget removals long past: by then no stale rumor survives.
        let forget = retention * 10;
        self.swim
            .removed
            .retain(|_, r| now.saturating_duration_since(r.at) < forget);
        self.swim
            .told_dead
            .retain(|_, t| now.saturating_duration_since(*t) < retention);
    }

    // ----- inbound SWIM messages ---------------------------------------

    pub(super) fn on_ping(&mut self, from: SocketAddr, sender: Option<u64>, ping: proto::Ping) {
        if !ping.target.is_empty() && ping.target != self.me.name {
            // Meant for whoever had this address before us.
            return;
        }
        if let Some(s) = sender {
            self.swim.peer_fingerprints.insert(s, ping.fingerprint);
        }
        let ack = proto::Message {
            kind: Some(Kind::PingAck(proto::PingAck {
                seq: ping.seq,
                fingerprint: self.members.fingerprint(),
                target: String::new(),
            })),
        };
        self.send_messages(from, vec![ack], None);
    }

    pub(super) fn on_ping_req(&mut self, now: Instant, from: SocketAddr, req: proto::PingReq) {
        let Some(target) = req.target.as_ref().and_then(NodeId::from_proto) else {
            return;
        };
        if target.name == self.me.name {
            return;
        }
        let seq = self.swim.next_seq();
        let timeout = self.scaled(self.swim.rtt.timeout(self.config.probe_timeout));
        self.swim.relays.insert(
            seq,
            Relay {
                requester: from,
                their_seq: req.seq,
                target: target.name.clone(),
                nack_at: req.nack.then_some(now + timeout),
                expires: now + self.config.probe_interval,
            },
        );
        let msg = ping(seq, &target.name, self.members.fingerprint());
        self.send_messages(target.addr, vec![msg], None);
    }

    pub(super) fn on_ping_ack(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: Option<u64>,
        ack: proto::PingAck,
    ) {
        if ack.target.is_empty() {
            if let Some(s) = sender {
                self.swim.peer_fingerprints.insert(s, ack.fingerprint);
            }
        }
        if let Some(p) = self.swim.probe.as_mut() {
            if p.seq == ack.seq && !p.acked {
                p.acked = true;
                if from == p.addr && ack.target.is_empty() {
                    self.swim
                        .rtt
                        .record(now.saturating_duration_since(p.sent_at));
                }
                return;
            }
        }
        if let Some(r) = self.swim.relays.remove(&ack.seq) {
            let msg = proto::Message {
                kind: Some(Kind::PingAck(proto::PingAck {
                    seq: r.their_seq,
                    fingerprint: 0,
                    target: r.target,
                })),
            };
            self.send_messages(r.requester, vec![msg], None);
        }
    }

    pub(super) fn on_ping_nack(&mut self, nack: proto::PingNack) {
        if let Some(p) = self.swim.probe.as_mut() {
            if p.seq == nack.seq {
                p.nacks += 1;
            }
        }
    }

    /// Tells a node we hold for dead (or removed) that we do, so it can
    /// refute; at most once per probe interval per address.
    pub(super) fn tell_dead(
        &mut self,
        now: Instant,
        to: SocketAddr,
        id: &NodeId,
        incarnation: u64,
    ) {
        if self
            .swim
            .told_dead
            .get(&to)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.config.probe_interval)
        {
            return;
        }
        self.swim.told_dead.insert(to, now);
        let msg = update(id, incarnation, MemberState::Dead, &self.me.name);
        self.send_messages(to, vec![msg], None);
    }

    /// Queues an alive rumor about a member we just met.
    pub(super) fn announce_alive(&mut self, id: &NodeId) {
        let inc = self.members.get(id.key()).map_or(0, |k| k.incarnation);
        let msg = update(id, inc, MemberState::Alive, &self.me.name);
        self.swim.rumors.push(Subject::Member(id.name.clone()), msg);
    }

    /// The incarnation at which `name` was removed, if it was.
    pub(super) fn removed_incarnation(&self, name: &str, generation: u64) -> Option<u64> {
        self.swim
            .removed
            .get(name)
            .filter(|r| r.generation == generation)
            .map(|r| r.incarnation)
    }

    /// Applies a membership rumor (or our own conclusion) and re-gossips
    /// it if it changed anything.
    pub(super) fn on_member_update(&mut self, now: Instant, u: &proto::MemberUpdate) {
        let Some(id) = u.node.as_ref().and_then(NodeId::from_proto) else {
            return;
        };
        let Ok(state) = MemberState::try_from(u.state) else {
            return;
        };
        if id.name == self.me.name {
            self.about_me(&id, u.incarnation, state);
            return;
        }
        let mut is_new = false;
        let key = match self.members.key_of(&id.name) {
            Some(k) if k == id.key() => k,
            Some(k) => {
                let known = self.members.get(k).map_or(0, |k| k.id.generation);
                if id.generation <= known || state != MemberState::Alive {
                    return;
                }
                is_new = true;
                match self.learn(&id, now) {
                    Some(k) => k,
                    None => return,
                }
            }
            None => {
                if state != MemberState::Alive {
                    return;
                }
                if let Some(r) = self.swim.removed.get(&id.name) {
                    let newer = id.generation > r.generation
                        || (id.generation == r.generation && u.incarnation > r.incarnation);
                    if !newer {
                        return;
                    }
                    self.swim.removed.remove(&id.name);
                }
                is_new = true;
                match self.learn(&id, now) {
                    Some(k) => k,
                    None => return,
                }
            }
        };
        let Some(k) = self.members.get(key) else {
            return;
        };
        let (cur, inc) = (k.status, k.incarnation);
        let accept = match state {
            MemberState::Alive => u.incarnation > inc || is_new,
            MemberState::Suspect => {
                (u.incarnation > inc && cur != MemberStatus::Left)
                    || (u.incarnation == inc && cur == MemberStatus::Alive)
            }
            MemberState::Dead => {
                u.incarnation >= inc && matches!(cur, MemberStatus::Alive | MemberStatus::Suspect)
            }
            MemberState::Left => cur != MemberStatus::Left && u.incarnation >= inc,
        };
        if !accept {
            if state == MemberState::Suspect && cur == MemberStatus::Suspect && u.incarnation == inc
            {
                // Another suspector: Lifeguard shortens the timeout.
                if let Some(s) = self.swim.suspicions.get_mut(&key) {
                    if s.confirm(&u.from) {
                        self.swim.rumors.push(
                            Subject::Member(id.name.clone()),
                            proto::Message {
                                kind: Some(Kind::Member(u.clone())),
                            },
                        );
                    }
                }
            }
            return;
        }
        let status = status_of(state);
        self.members.set_status(key, status, u.incarnation);
        match status {
            MemberStatus::Suspect => {
                let (min, max) = self.suspicion_bounds();
                let expected = if self.members.len() > 2 {
                    self.config.indirect_checks as u32
                } else {
                    0
                };
                self.swim.suspicions.insert(
                    key,
                    Suspicion::new(u.incarnation, &u.from, now, min, max, expected),
                );
            }
            MemberStatus::Alive => {
                self.swim.suspicions.remove(&key);
                self.swim.dead.remove(&key);
            }
            MemberStatus::Dead | MemberStatus::Left => {
                self.swim.suspicions.remove(&key);
                let retry =
                    (status == MemberStatus::Dead).then(|| now + self.config.probe_interval);
                self.swim.dead.insert(
                    key,
                    Dead {
                        since: now,
                        next_retry: retry,
                        backoff: self.config.probe_interval,
                    },
                );
            }
        }
        if status != cur {
            self.events.push_back(Event::MemberStatus {
                node: id.clone(),
                status,
            });
        }
        self.swim.rumors.push(
            Subject::Member(id.name.clone()),
            proto::Message {
                kind: Some(Kind::Member(u.clone())),
            },
        );
    }

    /// A rumor about ourselves: refute suspicion and death.
    fn about_me(&mut self, id: &NodeId, incarnation: u64, state: MemberState) {
        if id.generation != self.me.generation {
            return;
        }
        let me = self.members.me();
        let mine = self.my_incarnation();
        match state {
            MemberState::Suspect | MemberState::Dead => {
                if self.swim.leaving {
                    let inc = mine.max(incarnation);
                    self.members.set_status(me, MemberStatus::Left, inc);
                    let msg = update(&self.me, inc, MemberState::Left, &self.me.name);
                    self.swim
                        .rumors
                        .push(Subject::Member(self.me.name.clone()), msg);
                    return;
                }
                if incarnation < mine {
                    return;
                }
                let inc = incarnation + 1;
                self.members.set_status(me, MemberStatus::Alive, inc);
                self.swim.awareness = (self.swim.awareness + 1).min(self.config.awareness_max);
                tracing::debug!(incarnation = inc, "refuting suspicion");
                let msg = update(&self.me, inc, MemberState::Alive, &self.me.name);
                self.swim
                    .rumors
                    .push(Subject::Member(self.me.name.clone()), msg);
            }
            MemberState::Alive | MemberState::Left => {}
        }
    }

    // ----- leave and broadcasts -----------------------------------------

    /// Leaves the cluster: marks this node left and sends the news at once
    /// to up to `gossip_nodes` peers (it also rides on later packets).
    /// Returns how many peers were told. The engine stops probing after.
    pub fn leave(&mut self, _now: Instant) -> usize {
        let me = self.members.me();
        let inc = self.my_incarnation() + 1;
        self.swim.leaving = true;
        self.swim.probe = None;
        self.swim.relays.clear();
        self.swim.suspicions.clear();
        self.swim.dead.clear();
        self.members.set_status(me, MemberStatus::Left, inc);
        let msg = update(&self.me, inc, MemberState::Left, &self.me.name);
        self.swim
            .rumors
            .push(Subject::Member(self.me.name.clone()), msg.clone());
        let peers = self
            .members
            .random_peers(&mut self.rng, self.config.gossip_nodes.max(3), None);
        let addrs: Vec<SocketAddr> = peers
            .iter()
            .filter_map(|k| self.members.get(*k).map(|k| k.id.addr))
            .collect();
        for addr in &addrs {
            self.send_messages(*addr, vec![msg.clone()], None);
        }
        addrs.len()
    }

    /// Whether [`leave`](Engine::leave) was called.
    pub fn has_left(&self) -> bool {
        self.swim.leaving
    }

    /// Sends `payload` to every healthy member, each delivering it once as
    /// [`Event::Broadcast`]. It rides on gossip and probe packets.
    pub fn broadcast(&mut self, payload: impl Into<Bytes>) -> Result<u64, super::BroadcastError> {
        let payload = payload.into();
        let id = self.swim.broadcast_seq;
        let msg = proto::Message {
            kind: Some(Kind::Broadcast(proto::Broadcast {
                origin: self.me.name.clone(),
                id,
                payload,
            })),
        };
        let len = crate::wire::field_len(prost::Message::encoded_len(&msg));
        if len > self.max_entry {
            return Err(super::BroadcastError::TooLarge {
                len,
                max: self.max_entry,
            });
        }
        self.swim.broadcast_seq += 1;
        self.remember_broadcast(self.me.name.clone(), id);
        self.swim
            .rumors
            .push(Subject::Broadcast(self.me.name.clone(), id), msg);
        Ok(id)
    }

    fn remember_broadcast(&mut self, origin: String, id: u64) -> bool {
        let key = (origin, id);
        if !self.swim.seen.insert(key.clone()) {
            return false;
        }
        self.swim.seen_order.push_back(key);
        if self.swim.seen_order.len() > SEEN_BROADCASTS {
            if let Some(old) = self.swim.seen_order.pop_front() {
                self.swim.seen.remove(&old);
            }
        }
        true
    }

    pub(super) fn on_broadcast(&mut self, b: proto::Broadcast) {
        if b.origin == self.me.name || !self.remember_broadcast(b.origin.clone(), b.id) {
            return;
        }
        self.events.push_back(Event::Broadcast {
            origin: b.origin.clone(),
            payload: b.payload.clone(),
        });
        let subject = Subject::Broadcast(b.origin.clone(), b.id);
        self.swim.rumors.push(
            subject,
            proto::Message {
                kind: Some(Kind::Broadcast(b)),
            },
        );
    }

    /// The status of a member we hold, as a wire state, with incarnation.
    pub(super) fn member_state(&self, key: u64) -> Option<(MemberState, u64)> {
        self.members
            .get(key)
            .map(|k| (state_of(k.status), k.incarnation))
    }
}

fn ping(seq: u64, target: &str, fingerprint: u64) -> proto::Message {
    proto::Message {
        kind: Some(Kind::Ping(proto::Ping {
            seq,
            target: target.to_owned(),
            fingerprint,
        })),
    }
}
