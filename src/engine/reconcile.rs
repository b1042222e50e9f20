//! Scuttlebutt reconciliation: Syn (digest) -> SynAck (digest + deltas) ->
//! Ack (deltas), with a bounded follow-up when a SynAck shows the opener is
//! behind on nodes its own digest page did not mention; the liveness each
//! digest line carries is merged into the membership lifecycle.
//!
//! Its own state is small ([`Reconciler`]: the digest cursor and the last
//! sign of divergence); the exchange itself is an `impl Engine` room,
//! because applying deltas reaches every member's state, the events, the
//! pushes (fresh versions are forwarded) and the lifecycle.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

use prost::Message as _;

use super::digest::{self, Line, liveness, split_liveness};
use super::lifecycle::supersedes;
use super::membership::Known;
use super::msg::state_of;
use super::outbox::{FIELD, FLAG, MIN_DELTA, Outbox};
use super::state::Change;
use super::{Engine, Event, MemberStatus, NodeId};
use crate::config::Config;
use crate::wire::field_len;
use crate::wire::proto::{self, MemberState, message::Kind};

/// What one side has that the other lacks, after comparing a digest.
struct Comparison {
    /// Nodes the peer is behind on: (key, peer's version, peer's gc), and
    /// whether the peer has never heard of the node.
    gives: Vec<(Line, bool)>,
    /// Nodes we are behind on, with our own versions.
    requests: Vec<Line>,
    /// Nodes in the peer's digest we have never heard of.
    unknown: Vec<u64>,
    /// The peer's view of members, where it differs from ours.
    news: Vec<News>,
    /// Removed members the peer lists as up at a newer incarnation: they
    /// refuted their death, so we take them back.
    revived: Vec<String>,
}

/// How a peer's view of one member (a digest line's liveness) differs
/// from ours.
#[derive(Debug, Clone)]
enum News {
    /// Newer by SWIM precedence and safe to take as is: a higher
    /// incarnation alive, a departure, or a claim that *we* are down (we
    /// refute).
    Apply(u64, u64, MemberState),
    /// The peer holds down (suspect, dead or removed) a member we hold up,
    /// at its incarnation: we cannot tell which of us is right, but the
    /// member can. It is told, so it refutes if alive (and its answer
    /// settles the matter everywhere), and probed next, so that if it is
    /// down our own detector finds out at once. Taking the claim as a
    /// suspicion instead (memberlist's merge) would make every healed
    /// partition raise false suspicions of members nobody lost.
    Doubt(u64, u64),
    /// The peer lists as up, at the incarnation we removed it at, a member
    /// we removed: it is told that we hold it dead, and comes back here if
    /// it answers.
    Removed(NodeId, u64),
}

/// The reconciliation room's own state.
#[derive(Debug)]
pub(super) struct Reconciler {
    /// Where the next digest page's window starts.
    cursor: usize,
    /// Last evidence that peers may disagree with us.
    last_divergence: Instant,
    /// When we last learned (or wrote) a version that is being pushed.
    last_fresh: Option<Instant>,
}

impl Reconciler {
    pub fn new(now: Instant) -> Reconciler {
        Reconciler {
            cursor: 0,
            last_divergence: now,
            last_fresh: None,
        }
    }

    /// The digest page cursor.
    fn cursor(&mut self) -> &mut usize {
        &mut self.cursor
    }

    /// Notes that a version was learned or written at `now` and is being
    /// pushed: the differences that causes are the pushes' to repair.
    pub fn fresh(&mut self, now: Instant) {
        self.last_fresh = Some(now);
    }

    /// Whether pushes of versions learned lately may still be on their
    /// way (within two gossip intervals of the last one), so a fingerprint
    /// that differs is no evidence of divergence yet.
    fn settling(&self, now: Instant, config: &Config) -> bool {
        self.last_fresh
            .is_some_and(|t| now.saturating_duration_since(t) < config.gossip_interval * 2)
    }

    /// Notes evidence, at `now`, that this node and its peers may disagree.
    fn diverged(&mut self, now: Instant) {
        self.last_divergence = now;
    }

    /// Whether anti-entropy should run: some evidence of divergence (a
    /// change here, a mismatching fingerprint heard on a probe or digest, a
    /// new member) is recent. An idle, in-sync cluster sends no Syn at all;
    /// the fingerprints riding on every probe detect a divergence within
    /// about one probe interval.
    ///
    /// With pushes turned off (`push_fanout = 0`) nothing else carries fresh
    /// news, so anti-entropy runs every round, as classic Scuttlebutt does.
    fn active(&self, now: Instant, config: &Config) -> bool {
        config.push_fanout == 0 || self.divergence_recent(now, config)
    }

    /// Whether this node has seen evidence of divergence within the last
    /// ten gossip rounds or two probe periods, whichever is longer.
    pub fn divergence_recent(&self, now: Instant, config: &Config) -> bool {
        let window = (config.gossip_interval * 10).max(config.probe_interval * 2);
        now.saturating_duration_since(self.last_divergence) < window
    }
}

impl Engine {
    /// One gossip round: a Syn with our digest page to `gossip_fanout`
    /// random peers (skipping those whose last reported fingerprint equals
    /// ours: they are in sync), or to a seed while we know no peer; and
    /// pending rumors to `gossip_nodes` random peers.
    pub(super) fn gossip_round(&mut self, now: Instant) {
        self.metrics.gossip_rounds += 1;
        let _span =
            tracing::trace_span!("gossip_round", round = self.metrics.gossip_rounds).entered();
        let mine = self.members.fingerprint();
        let mut targets: Vec<SocketAddr> = Vec::new();
        let shedding = self.shedding(now);
        if shedding {
            self.metrics.shed_rounds += 1;
        }
        let fanout = if self.anti_entropy_active(now) && !shedding {
            self.config.gossip_fanout
        } else {
            0
        };
        let peers = self.members.random_peers(&mut self.rng, fanout, None);
        for key in peers {
            match self.members.get(key) {
                Some(k) if k.fingerprint == mine => {}
                Some(k) => targets.push(k.id.addr),
                None => {}
            }
        }
        if self.members.peer_count() == 0 && !self.seeds.is_empty() {
            let i = rand::Rng::random_range(&mut self.rng, 0..self.seeds.len());
            targets.push(self.seeds[i]);
        }
        for to in &targets {
            self.send_syn(*to, &[], &[], false);
        }
        if !self.rumors.is_empty() {
            let extra = self
                .members
                .random_peers(&mut self.rng, self.config.gossip_nodes, None);
            for key in extra {
                let Some(addr) = self.members.get(key).map(|k| k.id.addr) else {
                    continue;
                };
                if !targets.contains(&addr) {
                    self.send(addr, None, Vec::new(), None);
                }
            }
        }
    }

    /// Records the fingerprint a peer reported; a mismatch is evidence that
    /// the cluster is not in sync, which keeps anti-entropy running.
    pub(super) fn heard_fingerprint(&mut self, peer: Option<u64>, fingerprint: u64) {
        if let Some(p) = peer {
            self.members.heard_fingerprint(p, fingerprint);
        }
        // While versions we just learned are still being pushed, peers
        // differ for a few round trips; that is no reason for digests.
        if fingerprint != self.members.fingerprint()
            && !self.reconciler.settling(self.last_now, &self.config)
        {
            self.diverged();
        }
    }

    /// Notes evidence that this node and its peers may disagree.
    pub(super) fn diverged(&mut self) {
        self.reconciler.diverged(self.last_now);
    }

    /// Whether anti-entropy should run (see [`Reconciler::active`]).
    fn anti_entropy_active(&self, now: Instant) -> bool {
        self.reconciler.active(now, &self.config)
    }

    pub(super) fn send_syn(
        &mut self,
        to: SocketAddr,
        requests: &[Line],
        unknown: &[u64],
        follow_up: bool,
    ) {
        let Some(mut packer) = self.outbox.start(false) else {
            return;
        };
        let room = Outbox::body_room(&packer);
        let digest = digest::build(
            &self.members,
            requests,
            unknown,
            !follow_up,
            room,
            self.reconciler.cursor(),
        );
        let msg = proto::Message {
            kind: Some(Kind::Syn(proto::Syn {
                digest: Some(digest),
                follow_up,
                announce: false,
            })),
        };
        self.outbox.add(&mut packer, msg);
        self.finish(packer, to, None);
    }

    pub(super) fn on_syn(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: Option<u64>,
        syn: proto::Syn,
    ) {
        let Some(d) = syn.digest else { return };
        self.heard_fingerprint(sender, d.fingerprint);
        if syn.announce {
            self.on_announce(now, from, &d);
            return;
        }
        if !syn.follow_up && d.fingerprint == self.members.fingerprint() {
            self.metrics.in_sync += 1;
            return;
        }
        let mut cmp = self.compare(&d);
        self.merge_membership(now, from, sender, &mut cmp);
        let Some(mut packer) = self.outbox.start(false) else {
            return;
        };
        let room = Outbox::body_room(&packer);
        // Our digest: the requests, then (unless this ends the exchange) a
        // page of our own, which gets at least a quarter of the packet.
        let requests_room = room / 2;
        let probe = digest::build(
            &self.members,
            &cmp.requests,
            &cmp.unknown,
            false,
            requests_room,
            &mut 0,
        );
        let page_room = if syn.follow_up { 0 } else { room / 4 };
        let digest_room = field_len(probe.encoded_len()) + page_room;
        let deltas = self.build_deltas(cmp.gives, room.saturating_sub(digest_room + FLAG));
        let used: usize = deltas.iter().map(|d| field_len(d.encoded_len())).sum();
        let digest = digest::build(
            &self.members,
            &cmp.requests,
            &cmp.unknown,
            !syn.follow_up,
            room.saturating_sub(used + FLAG + FIELD),
            self.reconciler.cursor(),
        );
        let msg = proto::Message {
            kind: Some(Kind::SynAck(proto::SynAck {
                digest: Some(digest),
                deltas,
                follow_up: syn.follow_up,
            })),
        };
        self.outbox.add(&mut packer, msg);
        self.finish(packer, from, None);
    }

    pub(super) fn on_syn_ack(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: Option<u64>,
        sa: proto::SynAck,
    ) {
        self.apply_deltas(now, &sa.deltas, false);
        let Some(d) = sa.digest else { return };
        self.heard_fingerprint(sender, d.fingerprint);
        let mut cmp = self.compare(&d);
        self.merge_membership(now, from, sender, &mut cmp);
        if !cmp.gives.is_empty() {
            let Some(mut packer) = self.outbox.start(false) else {
                return;
            };
            let room = Outbox::body_room(&packer);
            let deltas = self.build_deltas(cmp.gives, room);
            if !deltas.is_empty() {
                let msg = proto::Message {
                    kind: Some(Kind::Ack(proto::Ack { deltas, push_id: 0 })),
                };
                self.outbox.add(&mut packer, msg);
                self.finish(packer, from, None);
            }
        }
        if !sa.follow_up && (!cmp.requests.is_empty() || !cmp.unknown.is_empty()) {
            self.send_syn(from, &cmp.requests, &cmp.unknown, true);
        }
    }

    /// Compares a peer's digest with what we hold.
    fn compare(&self, d: &proto::Digest) -> Comparison {
        let mut gives = Vec::new();
        let mut requests = Vec::new();
        let mut unknown = Vec::new();
        let (mut news, mut revived) = (Vec::new(), Vec::new());
        let mut listed = HashSet::new();
        let intro = |key| {
            (
                Line {
                    key,
                    version: 0,
                    gc: 0,
                    liveness: 0,
                },
                true,
            )
        };
        for line in digest::lines(d) {
            listed.insert(line.key);
            match self.members.get(line.key) {
                Some(k) => {
                    let mine = k.state.max_version();
                    if mine > line.version {
                        gives.push((line, false));
                    } else if mine < line.version {
                        requests.push(Line {
                            key: line.key,
                            version: mine,
                            gc: k.state.last_gc_version(),
                            liveness: liveness(k.incarnation, state_of(k.status)),
                        });
                    }
                    news.extend(self.liveness_news(k, line.liveness));
                }
                None => match self.removed.by_key(line.key) {
                    Some(r) => {
                        let (inc, state) = split_liveness(line.liveness);
                        let up = matches!(state, MemberState::Alive | MemberState::Suspect);
                        if up && inc > r.incarnation {
                            revived.push(r.id.name.clone());
                            unknown.push(line.key);
                        } else if up && !r.left {
                            news.push(News::Removed(r.id.clone(), r.incarnation));
                        }
                    }
                    None => unknown.push(line.key),
                },
            }
        }
        for key in &d.unknown {
            if self.members.get(*key).is_some() {
                gives.push(intro(*key));
            }
        }
        if d.complete {
            // Nodes absent from a complete digest are unknown to the peer.
            for key in self.members.keys() {
                if !listed.contains(&key) {
                    gives.push(intro(key));
                }
            }
        } else if let (Some(first), Some(last)) = (d.window_first, d.window_last) {
            // So are the healthy ones absent from its window's key range
            // (one it holds dead and removed need not come back).
            for key in self.members.in_range(first, last) {
                if !listed.contains(&key)
                    && self.members.get(key).is_some_and(|k| k.status.is_healthy())
                {
                    gives.push(intro(key));
                }
            }
        }
        Comparison {
            gives,
            requests,
            unknown,
            news,
            revived,
        }
    }

    /// A peer's view of member `k` (a digest line's liveness), if it
    /// differs from ours in a way that matters (see [`News`]).
    fn liveness_news(&self, k: &Known, line: u64) -> Option<News> {
        let (inc, state) = split_liveness(line);
        let down = matches!(state, MemberState::Suspect | MemberState::Dead);
        if k.key == self.members.me() {
            return (down && inc >= k.incarnation).then_some(News::Apply(k.key, inc, state));
        }
        if down && k.status == MemberStatus::Suspect && inc == k.incarnation {
            // Both of us suspect it. That the peer lists it so does not
            // say the peer probed it (it may only have heard the rumor),
            // so it is no independent confirmation (Lifeguard): nothing
            // to do, the suspicion runs its course.
            return None;
        }
        if down && supersedes(state, inc, k.status, k.incarnation) {
            return Some(News::Doubt(k.key, inc));
        }
        supersedes(state, inc, k.status, k.incarnation).then_some(News::Apply(k.key, inc, state))
    }

    /// Acts on what a digest said about membership (see [`News`]).
    fn merge_membership(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: Option<u64>,
        cmp: &mut Comparison,
    ) {
        for name in cmp.revived.drain(..) {
            self.removed.forget(&name);
        }
        if cmp.news.is_empty() {
            return;
        }
        let teller = sender
            .and_then(|k| self.members.get(k))
            .map(|k| k.id.name.clone())
            .unwrap_or_default();
        for news in std::mem::take(&mut cmp.news) {
            self.metrics.liveness_merged += 1;
            match news {
                News::Apply(key, incarnation, state) => {
                    let Some(id) = self.members.get(key).map(|k| k.id.clone()) else {
                        continue;
                    };
                    if key != self.members.me() && self.needs_signed_claim(key) {
                        // A digest line is unsigned: ask the member itself,
                        // whose answer to "held dead" is its signed alive.
                        if state == MemberState::Alive {
                            let held = self.members.get(key).map_or(0, |k| k.incarnation);
                            self.tell_dead(now, id.addr, &id, held);
                        }
                        continue;
                    }
                    let node = id.to_proto();
                    let u = proto::MemberUpdate {
                        node: Some(node),
                        incarnation,
                        state: state as i32,
                        from: teller.clone(),
                        signature: bytes::Bytes::new(),
                    };
                    self.on_member_update(now, &u, Some(from));
                }
                News::Doubt(key, incarnation) => {
                    let Some(id) = self.members.get(key).map(|k| k.id.clone()) else {
                        continue;
                    };
                    self.tell_dead(now, id.addr, &id, incarnation);
                    self.swim.probe_soon(key);
                }
                News::Removed(id, incarnation) => self.tell_dead(now, id.addr, &id, incarnation),
            }
        }
    }

    /// Deltas for `gives`, most out-of-date node first (scuttle-depth),
    /// within `room` encoded bytes.
    pub(super) fn build_deltas(
        &self,
        mut gives: Vec<(Line, bool)>,
        room: usize,
    ) -> Vec<proto::NodeDelta> {
        // Introductions first (a node unknown to the peer is the most
        // out-of-date of all), then by how far behind the peer is.
        let lag = |(l, intro): &(Line, bool)| {
            let behind = self
                .members
                .get(l.key)
                .map_or(0, |k| k.state.max_version().saturating_sub(l.version));
            (*intro, behind)
        };
        gives.sort_by_key(|g| std::cmp::Reverse(lag(g)));
        let mut out = Vec::new();
        let mut left = room;
        for (g, intro) in gives {
            if left < MIN_DELTA {
                break;
            }
            let Some(k) = self.members.get(g.key) else {
                continue;
            };
            let body_room = left.saturating_sub(FIELD);
            let delta = k
                .state
                .delta(k.id.to_proto(), g.version, g.gc, body_room)
                .or_else(|| intro.then(|| k.state.introduction(k.id.to_proto())));
            if let Some(delta) = delta {
                let cost = field_len(delta.encoded_len());
                if cost > left {
                    continue;
                }
                left -= cost;
                out.push(delta);
            }
        }
        out
    }

    /// Applies deltas from a peer, raising events for what changed.
    ///
    /// `pushed`: they came by a tree push, so what is new is pushed on to
    /// our children. Versions learned by anti-entropy are not: they are
    /// old news elsewhere (the exchange found them missing here).
    pub(super) fn apply_deltas(&mut self, now: Instant, deltas: &[proto::NodeDelta], pushed: bool) {
        let mut changes = Vec::new();
        for d in deltas {
            let Some(id) = self.node_id(d.node.as_ref()) else {
                continue;
            };
            if id.name == self.me.name {
                self.metrics.deltas_about_self += 1;
                continue;
            }
            let Some(key) = self.learn(&id) else {
                continue;
            };
            let Some(d) = self.check_delta(&id, key, d) else {
                continue;
            };
            changes.clear();
            let before = self.members.get(key).map_or(0, |k| k.state.max_version());
            let r = self
                .members
                .with_state(key, |s| s.apply(&d, now, &mut changes));
            if let Some(Err(_gap)) = r {
                self.metrics.delta_gaps += 1;
            }
            let after = self.members.get(key).map_or(0, |k| k.state.max_version());
            if after > before {
                if pushed {
                    self.note_fresh(key, before);
                } else {
                    // Others may lack it too: keep anti-entropy going.
                    self.diverged();
                }
            }
            for c in changes.drain(..) {
                self.events.push_back(match c {
                    Change::Set {
                        key,
                        value,
                        version,
                    } => Event::KeySet {
                        node: id.clone(),
                        key,
                        value,
                        version,
                    },
                    Change::Deleted { key, version } => Event::KeyDeleted {
                        node: id.clone(),
                        key,
                        version,
                    },
                });
            }
        }
    }
}
