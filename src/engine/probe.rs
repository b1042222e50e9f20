//! SWIM failure detection: probes (ping, ping-req, ack, nack), the
//! ping-reqs relayed for others, Lifeguard's local health, and the
//! suspicion timeouts that end in a death.
//!
//! Each probe period the node pings one member, taken from a shuffled
//! round-robin list. No ack before the phi-accrual timeout → `PingReq` to
//! `indirect_checks` others, who ping on our behalf and relay the ack or
//! answer with a nack. Still nothing by the end of the period → the member
//! becomes *suspect*; it is declared *dead* when its Lifeguard suspicion
//! timeout ends, unless it refutes by raising its incarnation.
//!
//! [`Swim`] owns the detector's state; the `impl Engine` part sends the
//! probes through the outbox and hands its conclusions (suspect, dead) to
//! the membership lifecycle.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::membership::Members;
use super::msg::{member_update, ping, state_of, update};
use super::observation::{Observation, SuspicionOutcome};
use super::rumor::Subject;
use super::{Engine, MemberStatus};
use crate::config::Config;
use crate::wire::proto::{self, MemberState, message::Kind};

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
    /// Whether the first ping was answered, however late: its round's
    /// loss sample.
    first_answered: bool,
}

/// A ping-req we carry out for another member.
#[derive(Debug)]
struct Relay {
    requester: SocketAddr,
    their_seq: u64,
    target: String,
    nack_at: Option<Instant>,
    expires: Instant,
}

impl Relay {
    /// When the relay next needs attention: its nack, else its end.
    fn deadline(&self) -> Instant {
        self.nack_at.unwrap_or(self.expires)
    }
}

/// The ping-reqs in flight, by our sequence number, with their deadlines
/// and ends in order.
#[derive(Debug, Default)]
struct Relays {
    by_seq: BTreeMap<u64, Relay>,
    /// (deadline, seq) of every relay.
    deadlines: BTreeSet<(Instant, u64)>,
    /// (expires, seq) of every relay.
    ends: BTreeSet<(Instant, u64)>,
}

impl Relays {
    fn insert(&mut self, seq: u64, r: Relay) {
        self.remove(seq);
        self.deadlines.insert((r.deadline(), seq));
        self.ends.insert((r.expires, seq));
        self.by_seq.insert(seq, r);
    }

    fn remove(&mut self, seq: u64) -> Option<Relay> {
        let r = self.by_seq.remove(&seq)?;
        self.deadlines.remove(&(r.deadline(), seq));
        self.ends.remove(&(r.expires, seq));
        Some(r)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(t, _)| t)
    }

    /// The nacks due at `now`, as (requester, their sequence number) in
    /// that order; relays past their end are dropped.
    fn due(&mut self, now: Instant) -> Vec<(SocketAddr, u64)> {
        let mut due = Vec::new();
        while let Some(&(t, seq)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            due.push(seq);
        }
        let mut nacks = Vec::new();
        for seq in due {
            let Some(r) = self.by_seq.get_mut(&seq) else {
                continue;
            };
            if r.nack_at.is_some_and(|t| now >= t) {
                r.nack_at = None;
                nacks.push((r.requester, r.their_seq));
            }
            self.deadlines.insert((r.deadline(), seq));
        }
        while let Some(&(t, seq)) = self.ends.first() {
            if now < t {
                break;
            }
            // Popped first, so the loop ends whatever `remove` finds.
            self.ends.pop_first();
            self.remove(seq);
        }
        nacks.sort_unstable();
        nacks
    }

    fn clear(&mut self) {
        *self = Relays::default();
    }
}

/// The failure detector's own state: the probe round-robin, the probe in
/// flight, the ping-reqs relayed for others, and local health
/// (Lifeguard's awareness). What it concludes goes through the engine's
/// membership lifecycle.
#[derive(Debug)]
pub(super) struct Swim {
    seq: u64,
    order: Vec<u64>,
    pos: usize,
    /// Members to probe before the round-robin goes on (a peer holds them
    /// down while we hold them up), oldest first.
    urgent: Vec<u64>,
    probe: Option<Probe>,
    relays: Relays,
    next_probe: Instant,
    awareness: u32,
}

impl Swim {
    pub fn new(config: &Config, now: Instant) -> Swim {
        Swim {
            seq: 0,
            order: Vec::new(),
            pos: 0,
            urgent: Vec::new(),
            probe: None,
            relays: Relays::default(),
            next_probe: now + config.probe_interval,
            awareness: 0,
        }
    }

    /// When the next probe round starts.
    pub fn next_probe(&self) -> Instant {
        self.next_probe
    }

    /// When the probe in flight times out (and goes indirect), if one is
    /// waiting for its direct ack.
    pub fn probe_timeout(&self) -> Option<Instant> {
        self.probe
            .as_ref()
            .filter(|p| !p.acked && !p.indirect)
            .map(|p| p.timeout_at)
    }

    /// The earliest nack or end of a relayed ping-req.
    pub fn relay_deadline(&self) -> Option<Instant> {
        self.relays.next_deadline()
    }

    /// Drops the probe in flight and every relay (the node is leaving).
    pub fn stop(&mut self) {
        self.probe = None;
        self.relays.clear();
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

    /// Raises the local health multiplier by `by`, up to `max`.
    pub fn raise_awareness(&mut self, by: u32, max: u32) {
        self.awareness = (self.awareness + by).min(max);
    }

    /// Lowers the local health multiplier by one (a probe succeeded).
    fn lower_awareness(&mut self) {
        self.awareness = self.awareness.saturating_sub(1);
    }

    /// Probe timing stretched by local health (Lifeguard).
    fn scaled(&self, d: Duration) -> Duration {
        d * (1 + self.awareness)
    }

    /// The next member to probe: an urgent one, else the next in the
    /// shuffled round-robin order (reshuffled from `members` when it runs
    /// out).
    fn next_target(&mut self, members: &Members, rng: &mut StdRng) -> Option<u64> {
        let probeable = |key: u64| {
            members.get(key).is_some_and(|k| k.status.is_healthy()) && key != members.me()
        };
        while !self.urgent.is_empty() {
            let key = self.urgent.remove(0);
            if probeable(key) {
                return Some(key);
            }
        }
        for _ in 0..2 {
            while self.pos < self.order.len() {
                let key = self.order[self.pos];
                self.pos += 1;
                if probeable(key) {
                    return Some(key);
                }
            }
            let mut order = members.peers().to_vec();
            order.sort_unstable();
            order.shuffle(rng);
            self.order = order;
            self.pos = 0;
        }
        None
    }
}

impl Engine {
    /// Runs the failure detector's due timers.
    pub(super) fn swim_timeout(&mut self, now: Instant) {
        if self.leaving {
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
        self.dead_timeout(now);
    }

    fn probe_round(&mut self, now: Instant) {
        if let Some(p) = self.swim.probe.take() {
            // A loss sample, if the target answered in the end (a target
            // that never did may be down, which is not loss) and this node
            // was not overloaded at any time since the ping left (its own
            // slowness is not the network's loss).
            let overloaded = self.overloaded_until.is_some_and(|t| t > p.sent_at);
            if p.acked && !overloaded {
                self.loss.record(!p.first_answered);
            }
            if p.acked {
                self.swim.lower_awareness();
            } else {
                self.probe_failed(now, &p);
            }
        }
        self.swim.next_probe = now + self.swim.scaled(self.config.probe_interval);
        let Some(target) = self.swim.next_target(&self.members, &mut self.rng) else {
            return;
        };
        let Some(k) = self.members.get(target) else {
            return;
        };
        let (addr, name) = (k.id.addr, k.id.name.clone());
        let buddy = (k.status == MemberStatus::Suspect)
            .then(|| update(&k.id, k.incarnation, MemberState::Suspect, &self.me.name));
        let seq = self.swim.next_seq();
        let timeout = self
            .swim
            .scaled(self.rtt.timeout(self.config.probe_timeout));
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
            first_answered: false,
        });
        let mut msgs = vec![ping(seq, &name, self.members.fingerprint())];
        // Buddy system: a suspect learns it is suspected from its prober.
        msgs.extend(buddy);
        self.send(addr, Some(target), msgs, Some(Subject::member(&name)));
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
        self.swim.raise_awareness(delta, self.config.awareness_max);
        let Some(k) = self.members.get(p.target) else {
            return;
        };
        // Alive: a new suspicion. Already suspect: our own failed probe is
        // an independent confirmation (Lifeguard shortens the timeout).
        if !k.status.is_healthy() {
            return;
        }
        let mut msg = member_update(&k.id, k.incarnation, MemberState::Suspect, &self.me.name);
        self.sign_claim(&mut msg);
        tracing::debug!(target_node = %k.id, "probe failed; suspect");
        self.on_member_update(now, &msg, None);
    }

    fn check_relays(&mut self, now: Instant) {
        for (to, seq) in self.swim.relays.due(now) {
            let msg = proto::Message {
                kind: Some(Kind::PingNack(proto::PingNack { seq })),
            };
            self.send(to, None, vec![msg], None);
        }
    }

    fn check_suspicions(&mut self, now: Instant) {
        // By key, not by deadline: runs replay as they always have.
        for (key, s) in self.suspicions.take_due(now) {
            let inc = s.incarnation;
            let Some(k) = self.members.get(key) else {
                continue;
            };
            if k.status != MemberStatus::Suspect || k.incarnation != inc {
                continue;
            }
            let mut msg = member_update(&k.id, inc, MemberState::Dead, &self.me.name);
            self.sign_claim(&mut msg);
            self.on_member_update(now, &msg, None);
            if self.member_state(key) == Some((MemberState::Dead, inc)) {
                let ended = Observation::suspicion_ended(now, &s, SuspicionOutcome::Dead);
                self.observations.record(ended);
            }
        }
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
        let timeout = self
            .swim
            .scaled(self.rtt.timeout(self.config.probe_timeout));
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
            // A relay's answer carries our sequence number too.
            if p.seq == ack.seq && ack.target.is_empty() {
                p.first_answered = true;
            }
            let sent_at = if p.seq == ack.seq {
                Some(p.sent_at)
            } else {
                p.second.filter(|s| s.0 == ack.seq).map(|s| s.1)
            };
            if let Some(sent_at) = sent_at.filter(|_| !p.acked) {
                p.acked = true;
                if from == p.addr && ack.target.is_empty() {
                    let rtt = now.saturating_duration_since(sent_at);
                    self.rtt.record(rtt);
                    self.observations.record(Observation::ProbeRtt(rtt));
                }
                return;
            }
        }
        if let Some(r) = self.swim.relays.remove(ack.seq) {
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
