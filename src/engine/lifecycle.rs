//! The membership lifecycle: who sent a packet (a member learnt or refused
//! admission, a new generation, a node told it is held dead), applying
//! alive, suspect, dead and left rumors
//! by incarnation precedence (opening and closing suspicions, filling the
//! dead table), refuting rumors about ourselves, telling nodes we hold
//! them dead, removing members after their dead retention, and leaving.
//!
//! An `impl Engine` room: a status change touches the member table, the
//! suspicions, the dead and removed tables, the rumor queue, the events
//! and the outbox at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use super::admission::{Notice, Refusal};
use super::msg::{member_update, message, ping, status_of, update};
use super::node_id::routable;
use super::observation::{Observation, SuspicionOutcome};
use super::removed::Removed;
use super::rumor::Teller;
use super::suspicion::Suspicion;
use super::{Engine, Event, MemberStatus, NodeId};
use crate::wire::DecodeError;
use crate::wire::proto::message::Kind;
use crate::wire::proto::{self, MemberState};

/// Why a node was not learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotLearnt {
    /// An older generation than the one held, or one removed.
    Stale,
    /// Refused admission (counted and logged).
    Refused,
}

/// Where we last told a node that we hold it dead, and when: at most once
/// per probe interval per address, so a stream of packets from a node we
/// hold dead does not become a stream of answers.
#[derive(Debug, Default)]
pub(super) struct ToldDead {
    at: BTreeMap<SocketAddr, Instant>,
}

impl ToldDead {
    /// Whether `to` may be told now (not within `interval`); if so, the
    /// telling is recorded.
    fn may_tell(&mut self, to: SocketAddr, now: Instant, interval: Duration) -> bool {
        if self
            .at
            .get(&to)
            .is_some_and(|t| now.saturating_duration_since(*t) < interval)
        {
            return false;
        }
        self.at.insert(to, now);
        true
    }

    /// Forgets tellings older than `keep`.
    fn expire(&mut self, now: Instant, keep: Duration) {
        self.at
            .retain(|_, t| now.saturating_duration_since(*t) < keep);
    }
}

impl Engine {
    // ----- who is this: senders and members learnt from the network ---

    /// The sender of a packet that carries its full id: learnt (or
    /// refused as an older generation: `Ok(None)`), announced on first
    /// contact, told if we hold it for dead. `Err` drops the packet: a
    /// sender that is malformed, unroutable, ourselves, or refused
    /// admission (a node kept out is not heard either).
    pub(super) fn full_sender(
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
        let sender_key = match self.learn_or_refuse(&sender) {
            Ok(key) => Some(key),
            Err(NotLearnt::Stale) => None,
            Err(NotLearnt::Refused) => return Err(()),
        };
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
    pub(super) fn compact_sender(
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

    /// Converts a member record from the network, refusing (and counting)
    /// one that is malformed or whose address no peer could send to.
    pub(super) fn node_id(&mut self, p: Option<&proto::NodeId>) -> Option<NodeId> {
        let id = NodeId::from_proto(p?)?;
        if !routable(&id.addr) {
            self.metrics.unroutable_ids += 1;
            return None;
        }
        Some(id)
    }

    /// Learns of a node from a packet or delta; returns its key, or `None`
    /// if `id` is an older generation than the one we know, or is refused
    /// admission.
    pub(super) fn learn(&mut self, id: &NodeId) -> Option<u64> {
        self.learn_or_refuse(id).ok()
    }

    /// [`learn`](Engine::learn), saying why a node was not learnt. Every
    /// member record is added here, and only after admission control
    /// let it in: a newcomer, or a new generation of a member.
    pub(super) fn learn_or_refuse(&mut self, id: &NodeId) -> Result<u64, NotLearnt> {
        match self.members.key_of(&id.name) {
            None if self.removed.is_removed(&id.name, id.generation) => {
                // Removed: only the node's own refutation brings it back.
                self.metrics.stale_generation += 1;
                Err(NotLearnt::Stale)
            }
            None => {
                self.admit(id, true)?;
                self.members.insert(id.clone());
                self.diverged();
                self.events.push_back(Event::MemberJoined(id.clone()));
                Ok(id.key())
            }
            Some(k) if k == id.key() => Ok(k),
            Some(k) => {
                let old = self.members.get(k).ok_or(NotLearnt::Stale)?.id.clone();
                if id.generation <= old.generation {
                    self.metrics.stale_generation += 1;
                    return Err(NotLearnt::Stale);
                }
                // A restart is admitted as a newcomer is, but replaces a
                // record, so it is not capped.
                self.admit(id, false)?;
                self.members.remove(k);
                self.members.insert(id.clone());
                self.events.push_back(Event::MemberRestarted {
                    old,
                    new: id.clone(),
                });
                Ok(id.key())
            }
        }
    }

    /// Admission control for `id`, which would add a member record if
    /// `adds` (else replace one): a refusal is counted, and logged the
    /// first time for its name.
    fn admit(&mut self, id: &NodeId, adds: bool) -> Result<(), NotLearnt> {
        let refusal = match self.admission.judge(id, self.members.len(), adds) {
            Ok(()) => {
                self.admission.admitted(&id.name);
                return Ok(());
            }
            Err(refusal) => refusal,
        };
        let r = &mut self.metrics.refused;
        match refusal {
            Refusal::Network => r.network += 1,
            Refusal::Capacity(_) => r.capacity += 1,
            Refusal::Check(_) => r.check += 1,
        }
        match self.admission.notice(&id.name) {
            Notice::First => tracing::warn!(
                name = ?id.name,
                addr = %id.addr,
                generation = id.generation,
                reason = %refusal,
                "node refused admission: not a member here (logged once per name)"
            ),
            Notice::Overflow => tracing::warn!(
                "many nodes refused admission: further names are counted, not logged"
            ),
            Notice::Quiet => {}
        }
        Err(NotLearnt::Refused)
    }

    // ----- membership changes -------------------------------------------

    /// Tells a node we hold for dead (or removed) that we do, so it can
    /// refute; at most once per probe interval per address.
    pub(super) fn tell_dead(
        &mut self,
        now: Instant,
        to: SocketAddr,
        id: &NodeId,
        incarnation: u64,
    ) {
        if !self.told_dead.may_tell(to, now, self.config.probe_interval) {
            return;
        }
        self.metrics.dead_told += 1;
        let msg = update(id, incarnation, MemberState::Dead, &self.me.name);
        self.send(to, None, vec![msg], None);
    }

    /// Queues an alive rumor about a member we just met.
    pub(super) fn announce_alive(&mut self, id: &NodeId) {
        let me = Teller::Member(self.members.me());
        self.rumors.push_member(&id.name, id.key(), me);
    }

    /// Queues a rumor of our own current status.
    fn rumor_about_me(&mut self) {
        self.sign_my_status();
        let me = self.members.me();
        self.rumors
            .push_member(&self.me.name, me, Teller::Member(me));
    }

    /// The incarnation at which `name` was removed, if it was.
    pub(super) fn removed_incarnation(&self, name: &str, generation: u64) -> Option<u64> {
        self.removed
            .get(name)
            .filter(|r| r.id.generation == generation)
            .map(|r| r.incarnation)
    }

    /// Applies a membership rumor (or our own conclusion) and re-gossips
    /// it if it changed anything. `reply_to` is where the claim came from,
    /// if from the network: a claim that we are dead is answered there
    /// directly (see [`Engine::about_me`]).
    pub(super) fn on_member_update(
        &mut self,
        now: Instant,
        u: &proto::MemberUpdate,
        reply_to: Option<SocketAddr>,
    ) {
        let Ok(state) = MemberState::try_from(u.state) else {
            return;
        };
        if u.node
            .as_ref()
            .is_some_and(|n| self.changes_nothing(n, u.incarnation, state))
        {
            return;
        }
        let Some(id) = self.node_id(u.node.as_ref()) else {
            return;
        };
        if id.name == self.me.name {
            self.about_me(&id, u.incarnation, state, reply_to);
            return;
        }
        // Our own claims (no reply address) are signed as they are made.
        if reply_to.is_some() && !self.claim_holds(u, &id, state) {
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
                match self.learn(&id) {
                    Some(k) => k,
                    None => return,
                }
            }
            None => {
                if state != MemberState::Alive {
                    return;
                }
                if let Some(r) = self.removed.get(&id.name) {
                    let newer = id.generation > r.id.generation
                        || (id.generation == r.id.generation && u.incarnation > r.incarnation);
                    if !newer {
                        return;
                    }
                    self.removed.forget(&id.name);
                }
                is_new = true;
                match self.learn(&id) {
                    Some(k) => k,
                    None => return,
                }
            }
        };
        let Some(k) = self.members.get(key) else {
            return;
        };
        let (cur, inc) = (k.status, k.incarnation);
        if !(is_new || supersedes(state, u.incarnation, cur, inc)) {
            if confirms(state, u.incarnation, cur, inc) {
                // Another suspector: Lifeguard shortens the timeout.
                if self.suspicions.confirm(key, &u.from) {
                    let from = Teller::named(&self.members, &u.from);
                    self.rumors.push_member(&id.name, key, from);
                }
            }
            return;
        }
        let status = status_of(state);
        self.members.set_status(key, status, u.incarnation);
        self.members
            .set_claim(key, super::signing::claim_of(u, state));
        self.diverged();
        match status {
            MemberStatus::Suspect => {
                let (min, max) = self.suspicion_bounds();
                let expected = if self.members.len() > 2 {
                    self.config.indirect_checks as u32
                } else {
                    0
                };
                let s = Suspicion::new(u.incarnation, &u.from, now, min, max, expected);
                // One of an older incarnation: the suspect refuted it.
                if let Some(old) = self.suspicions.insert(key, s) {
                    let ended = Observation::suspicion_ended(now, &old, SuspicionOutcome::Refuted);
                    self.observations.record(ended);
                }
            }
            MemberStatus::Alive => {
                if let Some(s) = self.suspicions.remove(key) {
                    let ended = Observation::suspicion_ended(now, &s, SuspicionOutcome::Refuted);
                    self.observations.record(ended);
                }
                self.dead.remove(key);
            }
            MemberStatus::Dead | MemberStatus::Left => {
                if let Some(s) = self.suspicions.remove(key) {
                    let outcome = if status == MemberStatus::Dead {
                        SuspicionOutcome::Dead
                    } else {
                        SuspicionOutcome::Left
                    };
                    let ended = Observation::suspicion_ended(now, &s, outcome);
                    self.observations.record(ended);
                }
                let retry = (status == MemberStatus::Dead).then_some(self.config.probe_interval);
                self.dead.insert(key, now, retry);
            }
        }
        if status != cur {
            match status {
                MemberStatus::Suspect => self.metrics.suspicions_started += 1,
                MemberStatus::Dead => self.metrics.deaths_declared += 1,
                MemberStatus::Alive | MemberStatus::Left => {}
            }
            self.events.push_back(Event::MemberStatus {
                node: id.clone(),
                status,
            });
        }
        let from = Teller::named(&self.members, &u.from);
        self.rumors.push_member(&id.name, key, from);
    }

    /// Whether a rumor about `node` at `incarnation` is one we can drop
    /// unread: about a member we hold at that generation, neither newer
    /// than our record nor a further suspicion to count. Under loss nearly
    /// every rumor a node receives is such a repeat; this check costs one
    /// lookup, where applying the rumor would first copy out its identity.
    fn changes_nothing(&self, node: &proto::NodeId, incarnation: u64, state: MemberState) -> bool {
        if node.name == self.me.name {
            return false;
        }
        self.members.by_name(&node.name).is_some_and(|k| {
            k.id.generation == node.generation
                && !supersedes(state, incarnation, k.status, k.incarnation)
                && !confirms(state, incarnation, k.status, k.incarnation)
        })
    }

    /// A rumor about ourselves: refute suspicion and death.
    ///
    /// The refutation spreads as a rumor among our peers, and is also sent
    /// straight back to `reply_to`, the node that made the claim. That
    /// node may hold us dead or removed, so none of our rumors would reach
    /// it: this is what lets two sides of a healed partition, each holding
    /// the other dead, merge again after one exchange.
    fn about_me(
        &mut self,
        id: &NodeId,
        incarnation: u64,
        state: MemberState,
        reply_to: Option<SocketAddr>,
    ) {
        if id.generation != self.me.generation {
            return;
        }
        let me = self.members.me();
        let mine = self.my_incarnation();
        match state {
            MemberState::Suspect | MemberState::Dead => {
                if self.leaving {
                    let inc = mine.max(incarnation);
                    self.members.set_status(me, MemberStatus::Left, inc);
                    self.rumor_about_me();
                    return;
                }
                if incarnation < mine {
                    // A stale rumor: we already refuted it, but whoever
                    // still spreads it may have missed the refutation.
                    // Gossip our current incarnation again (no bump).
                    self.rumor_about_me();
                    self.answer_claim(reply_to);
                    return;
                }
                let inc = incarnation + 1;
                self.members.set_status(me, MemberStatus::Alive, inc);
                self.metrics.refutations += 1;
                self.swim.raise_awareness(1, self.config.awareness_max);
                tracing::debug!(incarnation = inc, "refuting suspicion");
                self.rumor_about_me();
                self.answer_claim(reply_to);
            }
            MemberState::Alive | MemberState::Left => {}
        }
    }

    /// Sends our current incarnation, alive, to `to` (with our full id, so
    /// that a node which removed us can take us back).
    fn answer_claim(&mut self, to: Option<SocketAddr>) {
        let Some(to) = to else { return };
        let mut u = member_update(
            &self.me,
            self.my_incarnation(),
            MemberState::Alive,
            &self.me.name,
        );
        self.sign_claim(&mut u);
        self.send(to, None, vec![message(Kind::Member(u))], None);
    }

    /// Runs the dead table's due work: members down for `dead_retention`
    /// are removed (and remembered as removed); members held dead whose
    /// retry is due are told so again, with a ping to answer, in case they
    /// were only cut off.
    pub(super) fn dead_timeout(&mut self, now: Instant) {
        let retention = self.config.dead_retention;
        let due = self.dead.due(now, retention);
        for key in due.retry {
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
        for key in due.remove {
            if let Some(k) = self.members.remove(key) {
                self.removed.insert(Removed {
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
        self.removed.expire(now, forget);
        self.told_dead.expire(now, retention);
    }

    /// The shortest and longest suspicion timeouts at the current size
    /// (Lifeguard: `suspicion_mult · log10(N)` probe intervals, stretched
    /// up to `suspicion_max_mult` times for a lone suspector).
    pub(super) fn suspicion_bounds(&self) -> (Duration, Duration) {
        let n = self.members.len().max(1) as f64;
        let min = self
            .config
            .probe_interval
            .mul_f64(f64::from(self.config.suspicion_mult) * n.log10().max(1.0));
        (min, min * self.config.suspicion_max_mult)
    }

    // ----- leaving -------------------------------------------------------

    /// Leaves the cluster: marks this node left and sends the news at once
    /// to up to `gossip_nodes` peers (it also rides on later packets).
    /// Returns how many peers were told. The engine stops probing after.
    pub fn leave(&mut self, now: Instant) -> usize {
        self.advance(now);
        let me = self.members.me();
        let inc = self.my_incarnation() + 1;
        self.leaving = true;
        self.swim.stop();
        self.suspicions.clear();
        self.dead.clear();
        self.members.set_status(me, MemberStatus::Left, inc);
        let mut u = member_update(&self.me, inc, MemberState::Left, &self.me.name);
        self.sign_claim(&mut u);
        let msg = message(Kind::Member(u));
        self.rumor_about_me();
        let peers = self
            .members
            .random_peers(&mut self.rng, self.config.gossip_nodes.max(3), None);
        let addrs: Vec<SocketAddr> = peers
            .iter()
            .filter_map(|k| self.members.get(*k).map(|k| k.id.addr))
            .collect();
        for addr in &addrs {
            self.send(*addr, None, vec![msg.clone()], None);
        }
        self.arm_timers();
        addrs.len()
    }

    /// Whether [`leave`](Engine::leave) was called.
    pub fn has_left(&self) -> bool {
        self.leaving
    }
}

/// Incarnation precedence (SWIM, with Lifeguard's refinements): whether a
/// rumor of `state` at `incarnation` replaces a record of `cur` at `inc`.
pub(super) fn supersedes(
    state: MemberState,
    incarnation: u64,
    cur: MemberStatus,
    inc: u64,
) -> bool {
    match state {
        MemberState::Alive => incarnation > inc,
        MemberState::Suspect => {
            (incarnation > inc && cur != MemberStatus::Left)
                || (incarnation == inc && cur == MemberStatus::Alive)
        }
        MemberState::Dead => {
            incarnation >= inc && matches!(cur, MemberStatus::Alive | MemberStatus::Suspect)
        }
        MemberState::Left => cur != MemberStatus::Left && incarnation >= inc,
    }
}

/// Whether a rumor that does not supersede the record is still another
/// node's suspicion of the same incarnation, which Lifeguard counts.
fn confirms(state: MemberState, incarnation: u64, cur: MemberStatus, inc: u64) -> bool {
    state == MemberState::Suspect && cur == MemberStatus::Suspect && incarnation == inc
}

#[cfg(test)]
mod tests;
