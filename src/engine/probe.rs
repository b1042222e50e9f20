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

use rand::seq::SliceRandom;

use super::msg::{member_update, ping, state_of, update};
use super::observation::{Observation, SuspicionOutcome};
use super::phi::RttDetector;
use super::removed::{Removed, RemovedMembers};
use super::rumor::{Rumors, Subject};
use super::suspicion::Suspicions;
use super::{Engine, Event, MemberStatus};
use crate::config::Config;
use crate::wire::proto::{self, MemberState, message::Kind};

/// Broadcast ids remembered per node for deduplication.

#[derive(Debug)]
struct Probe {
    seq: u64,
    target: u64,
    addr: SocketAddr,
    sent_at: Instant,
    timeout_at: Instant,
    indirect: bool,
    /// Sequence number and send time of the second direct ping, sent
    /// with the indirect probes.
    second: Option<(u64, Instant)>,
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
pub(super) struct Dead {
    pub since: Instant,
    /// `None` for members that left: they are not retried.
    pub next_retry: Option<Instant>,
    pub backoff: Duration,
}

/// The failure detector's state, owned by the [`Engine`].
#[derive(Debug)]
pub(crate) struct Swim {
    pub leaving: bool,
    pub seq: u64,
    pub order: Vec<u64>,
    pub pos: usize,
    /// Members to probe before the round-robin goes on (a peer holds them
    /// down while we hold them up), oldest first.
    urgent: Vec<u64>,
    probe: Option<Probe>,
    relays: HashMap<u64, Relay>,
    pub next_probe: Instant,
    pub rtt: RttDetector,
    pub awareness: u32,
    pub suspicions: Suspicions,
    pub dead: HashMap<u64, Dead>,
    pub removed: RemovedMembers,
    pub rumors: Rumors,
    pub broadcast_seq: u64,
    pub seen: HashSet<(String, u64)>,
    pub seen_order: VecDeque<(String, u64)>,
    pub told_dead: HashMap<SocketAddr, Instant>,
}

impl Swim {
    pub fn new(config: &Config, now: Instant) -> Swim {
        Swim {
            leaving: false,
            seq: 0,
            order: Vec::new(),
            pos: 0,
            urgent: Vec::new(),
            probe: None,
            relays: HashMap::new(),
            next_probe: now + config.probe_interval,
            rtt: RttDetector::new(config.conviction_threshold),
            awareness: 0,
            suspicions: Suspicions::default(),
            dead: HashMap::new(),
            removed: RemovedMembers::default(),
            rumors: Rumors::default(),
            broadcast_seq: 0,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            told_dead: HashMap::new(),
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
        if let Some(s) = self.suspicions.next_deadline() {
            t = t.min(s);
        }
        for d in self.dead.values() {
            if let Some(r) = d.next_retry {
                t = t.min(r);
            }
        }
        t
    }

    /// Drops every probe, relay, suspicion and retry (the node is leaving).
    pub fn stop(&mut self) {
        self.leaving = true;
        self.probe = None;
        self.relays.clear();
        self.suspicions.clear();
        self.dead.clear();
    }

    /// Makes `key` the target of one of the next probe rounds (at most 16
    /// wait; more are dropped, the round-robin reaches them anyway).
    pub fn probe_soon(&mut self, key: u64) {
        if self.urgent.len() < 16 && !self.urgent.contains(&key) {
            self.urgent.push(key);
        }
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }
}

impl Engine {
    /// Probe timing stretched by local health (Lifeguard).
    fn scaled(&self, d: Duration) -> Duration {
        d * (1 + self.swim.awareness)
    }

    pub(super) fn my_incarnation(&self) -> u64 {
        self.members
            .get(self.members.me())
            .map_or(0, |k| k.incarnation)
    }

    /// Rumors are sent `retransmit_mult · ceil(log10(N + 1))` times.
    pub(super) fn rumor_limit(&self) -> u32 {
        let n = self.members.len() as f64;
        self.config.retransmit_mult * ((n + 1.0).log10().ceil().max(1.0) as u32)
    }

    pub(super) fn suspicion_bounds(&self) -> (Duration, Duration) {
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
            second: None,
            nacks_expected: 0,
            nacks: 0,
            acked: false,
        });
        let mut msgs = vec![ping(seq, &name, self.members.fingerprint())];
        // Buddy system: a suspect learns it is suspected from its prober.
        msgs.extend(buddy);
        self.send(addr, Some(target), msgs, Some(Subject::member(&name)));
    }

    /// The next member in the shuffled round-robin order.
    fn next_target(&mut self) -> Option<u64> {
        while !self.swim.urgent.is_empty() {
            let key = self.swim.urgent.remove(0);
            if self
                .members
                .get(key)
                .is_some_and(|k| k.status.is_healthy() && key != self.members.me())
            {
                return Some(key);
            }
        }
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
        let addrs: Vec<(SocketAddr, u64)> = relays
            .iter()
            .filter_map(|k| self.members.get(*k).map(|k| (k.id.addr, k.key)))
            .collect();
        if let Some(p) = self.swim.probe.as_mut() {
            p.nacks_expected = addrs.len() as u32;
        }
        for (addr, relay) in addrs {
            let msg = proto::Message {
                kind: Some(Kind::PingReq(proto::PingReq {
                    seq,
                    target: Some(tid.clone()),
                    nack: true,
                })),
            };
            self.send(addr, Some(relay), vec![msg], None);
        }
        // A second direct ping alongside the relays (memberlist's TCP
        // fallback, over the same transport): on a lossy link one lost
        // ping or ack is the likeliest reason for the silence, and under
        // heavy loss this cuts false suspicions several-fold. It has a
        // sequence number of its own, so either ack gives a clean
        // round-trip sample.
        let second = self.swim.next_seq();
        let Some(p) = self.swim.probe.as_mut() else {
            return;
        };
        p.second = Some((second, now));
        let addr = p.addr;
        let msg = ping(second, &tid.name, self.members.fingerprint());
        self.send(addr, Some(target), vec![msg], None);
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
        // Alive: a new suspicion. Already suspect: our own failed probe is
        // an independent confirmation (Lifeguard shortens the timeout).
        if !k.status.is_healthy() {
            return;
        }
        let msg = member_update(&k.id, k.incarnation, MemberState::Suspect, &self.me.name);
        tracing::debug!(target_node = %k.id, "probe failed; suspect");
        self.on_member_update(now, &msg, None);
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
        nacks.sort_unstable();
        for (to, seq) in nacks {
            let msg = proto::Message {
                kind: Some(Kind::PingNack(proto::PingNack { seq })),
            };
            self.send(to, None, vec![msg], None);
        }
    }

    fn check_suspicions(&mut self, now: Instant) {
        // By key, not by deadline: runs replay as they always have.
        for (key, s) in self.swim.suspicions.take_due(now) {
            let inc = s.incarnation;
            let Some(k) = self.members.get(key) else {
                continue;
            };
            if k.status != MemberStatus::Suspect || k.incarnation != inc {
                continue;
            }
            let msg = member_update(&k.id, inc, MemberState::Dead, &self.me.name);
            self.on_member_update(now, &msg, None);
            if self.member_state(key) == Some((MemberState::Dead, inc)) {
                self.suspicion_ended(now, &s, SuspicionOutcome::Dead);
            }
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
        retry.sort_unstable();
        remove.sort_unstable();
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
            self.send(addr, Some(key), msgs, None);
        }
        for key in remove {
            self.swim.dead.remove(&key);
            if let Some(k) = self.members.remove(key) {
                self.swim.removed.insert(Removed {
                    id: k.id.clone(),
                    incarnation: k.incarnation,
                    at: now,
                    left: k.status == MemberStatus::Left,
                });
                self.metrics.members_removed += 1;
                self.events.push_back(Event::MemberRemoved(k.id));
            }
        }
        // Forget removals long past: by then no stale rumor survives, and
        // reconnecting has given up.
        let forget = (retention * 10).max(self.config.reconnect_timeout);
        self.swim.removed.expire(now, forget);
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
        self.heard_fingerprint(sender, ping.fingerprint);
        let ack = proto::Message {
            kind: Some(Kind::PingAck(proto::PingAck {
                seq: ping.seq,
                fingerprint: self.members.fingerprint(),
                target: String::new(),
            })),
        };
        self.send(from, sender, vec![ack], None);
    }

    pub(super) fn on_ping_req(&mut self, now: Instant, from: SocketAddr, req: proto::PingReq) {
        let Some(target) = self.node_id(req.target.as_ref()) else {
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
        self.send(target.addr, Some(target.key()), vec![msg], None);
    }

    pub(super) fn on_ping_ack(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: Option<u64>,
        ack: proto::PingAck,
    ) {
        if ack.target.is_empty() {
            self.heard_fingerprint(sender, ack.fingerprint);
        }
        if let Some(p) = self.swim.probe.as_mut() {
            let sent_at = if p.seq == ack.seq {
                Some(p.sent_at)
            } else {
                p.second.filter(|s| s.0 == ack.seq).map(|s| s.1)
            };
            if let Some(sent_at) = sent_at.filter(|_| !p.acked) {
                p.acked = true;
                if from == p.addr && ack.target.is_empty() {
                    let rtt = now.saturating_duration_since(sent_at);
                    self.swim.rtt.record(rtt);
                    self.observe(Observation::ProbeRtt(rtt));
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
            self.send(r.requester, None, vec![msg], None);
        }
    }

    pub(super) fn on_ping_nack(&mut self, nack: proto::PingNack) {
        if let Some(p) = self.swim.probe.as_mut() {
            if p.seq == nack.seq {
                p.nacks += 1;
            }
        }
    }

    /// The status of a member we hold, as a wire state, with incarnation.
    pub(super) fn member_state(&self, key: u64) -> Option<(MemberState, u64)> {
        self.members
            .get(key)
            .map(|k| (state_of(k.status), k.incarnation))
    }
}

#[cfg(test)]
mod tests;
