//! Pushing fresh changes: a node that learns a new version by a push (or
//! writes one) forwards it at once, instead of waiting for anti-entropy.
//! A push leaves as soon as it is made when the node has pushed nothing
//! for `push_delay`; changes made within that delay of the last push are
//! batched into the next one, so a busy node sends fewer, fuller packets
//! and an idle one adds no delay.
//!
//! Two paths carry the news (Plumtree, Leitão et al. 2007, as iroh-gossip
//! uses it):
//! - the **broadcast tree** carries the entries: the healthy members in key
//!   order, rotated to start at the changed node, read as a complete
//!   [`TREE_FANOUT`]-ary tree. Every member holding the same membership
//!   computes the same tree, so each member is sent the change once, in
//!   about log₄ N hops, with no one left out by chance. Tree pushes are
//!   acknowledged (`PushAck`) and resent after a wait with a floor that
//!   doubles at every resend (RFC 6298's and RFC 9002's rules), at most
//!   [`PEER_CAP`](state::PEER_CAP) unacknowledged per peer and
//!   [`PENDING_CAP`](state::PENDING_CAP) per node:
//!   past a cap a push is sent once, untracked, so an overloaded peer is
//!   never sent more because it is slow;
//! - **lazy announcements** carry only (node, version) lines: each fresh
//!   version rides, as a `Syn` marked `announce`, on the next
//!   `push_fanout` packets this node sends anyway (probes, acks, pushes).
//!   A member whose view of the tree differs (a join or a death not yet
//!   known everywhere) learns of the version this way, waits a moment for
//!   the tree to deliver it, and pulls it from the announcer if it still
//!   lacks it.
//!
//! Versions learned by anti-entropy are not pushed again: they are old
//! news everywhere else, and re-pushing them is what made a join with
//! initial state cost O(N²) datagrams. Whatever both paths miss,
//! anti-entropy repairs.
//!
//! [`Pushes`] (`push/state.rs`) owns the room's state (the fresh changes,
//! the batching deadline, the pending tree pushes and their resend
//! schedule, the announcements to piggyback and the versions awaited
//! after one); this file's `impl Engine` builds the deltas from the member
//! table and sends through the outbox.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Engine;
use super::digest::{self, Line};
use super::observation::Observation;
use super::outbox::{FIELD, FLAG, MIN_ANNOUNCE, Outbox};
use crate::wire::Packer;
use crate::wire::proto::{self, message::Kind};
pub(super) use state::{MAX_EXTRA_COPIES, Pushes, UNTRACKED};

/// Children per node in the broadcast tree.
pub(super) const TREE_FANOUT: usize = 4;

/// Announcement lines piggybacked on one packet, at most.
const ANNOUNCE_PER_PACKET: usize = 32;

/// How often an overloaded node says so, at most.
const WARN_EVERY: Duration = Duration::from_secs(30);

impl Engine {
    /// Remembers that node `key` advanced past `before` (by a local write
    /// or a push), to push the news at once or with the next batch.
    pub(super) fn note_fresh(&mut self, key: u64, before: u64) {
        self.reconciler.fresh(self.last_now);
        if self.config.push_fanout == 0 || self.leaving {
            return;
        }
        self.pushes
            .note(key, before, self.last_now, self.config.push_delay);
    }

    /// Pushes the fresh changes if their batch is due at `now` (at the end
    /// of an input, so a push made while idle leaves at once).
    pub(super) fn push_if_due(&mut self, now: Instant) {
        if self.pushes.push_at().is_some_and(|t| now >= t) {
            self.push_fresh(now);
        }
    }

    /// Pushes the fresh changes as deltas to our children in each changed
    /// node's broadcast tree (acknowledged), and queues them for lazy
    /// announcement. Each node forwards each new version once, when it
    /// first learns it.
    pub(super) fn push_fresh(&mut self, now: Instant) {
        let fresh = self.pushes.take_fresh(now, self.config.push_fanout);
        if fresh.is_empty() {
            return;
        }
        let me = self.members.me();
        let roots = fresh.iter().enumerate().map(|(i, &(key, _))| (i, key));
        let mut targets = self.children_in_trees(0, me, roots);
        let tree_targets = targets.len();
        let extra = self.extra_tree_targets(now, &fresh, &targets);
        targets.extend(extra);
        let Some(packer) = self.outbox.start(false) else {
            return;
        };
        let room = Outbox::body_room(&packer);
        // Deltas per distinct set of fresh nodes (usually one set: all).
        let mut built: Vec<(Vec<usize>, Vec<proto::NodeDelta>)> = Vec::new();
        for (n, (peer, tree)) in targets.into_iter().enumerate() {
            let Some(to) = self.members.get(peer).map(|k| k.id.addr) else {
                continue;
            };
            let deltas = match built.iter().find(|b| b.0 == tree) {
                Some(b) => b.1.clone(),
                None => {
                    let lines = tree
                        .iter()
                        .map(|&i| {
                            let (key, from) = fresh[i];
                            // Never a reset: the peer is assumed current.
                            let line = Line {
                                key,
                                version: from,
                                gc: u64::MAX,
                                liveness: 0,
                            };
                            (line, false)
                        })
                        .collect();
                    let d = self.build_deltas(lines, room);
                    built.push((tree.clone(), d.clone()));
                    d
                }
            };
            if deltas.is_empty() {
                continue;
            }
            if n >= tree_targets {
                // An extra copy: sent once, neither acknowledged nor resent.
                self.metrics.push_copies += 1;
                self.send_push(to, peer, UNTRACKED, deltas);
                continue;
            }
            let roots = tree.iter().map(|&i| fresh[i].0).collect();
            let push_id = self.track_push(now, to, peer, roots, deltas.clone());
            self.metrics.pushes_sent += 1;
            self.send_push(to, peer, push_id, deltas);
        }
    }

    /// Our children in the extra broadcast trees (1, 2, ...) of the
    /// `fresh` nodes, each with the fresh nodes (indexes) whose trees give
    /// it to us and that tree 0 (`sent`) did not: as many trees as the
    /// measured loss calls for
    /// ([`LossEstimate::extra_copies`](super::loss::LossEstimate::extra_copies),
    /// at most [`MAX_EXTRA_COPIES`]), none while the node sheds load.
    /// Each member then has a parent in each tree, so it is sent as many
    /// copies, from different members.
    fn extra_tree_targets(
        &mut self,
        now: Instant,
        fresh: &[(u64, u64)],
        sent: &[(u64, Vec<usize>)],
    ) -> Vec<(u64, Vec<usize>)> {
        if self.shedding(now) {
            return Vec::new();
        }
        let members = self.members.peers().len() + 1;
        let trees = self.loss.extra_copies(members, MAX_EXTRA_COPIES);
        let me = self.members.me();
        let mut out: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for tree in 1..=trees {
            let roots = fresh.iter().enumerate().map(|(i, &(key, _))| (i, key));
            for (peer, tags) in self.children_in_trees(tree, me, roots) {
                let already = sent.iter().find(|t| t.0 == peer).map(|t| t.1.as_slice());
                let entry = out.entry(peer).or_default();
                for tag in tags {
                    if !already.is_some_and(|a| a.contains(&tag)) && !entry.contains(&tag) {
                        entry.push(tag);
                    }
                }
            }
        }
        out.into_iter()
            .filter(|(_, tags)| !tags.is_empty())
            .map(|(peer, mut tags)| {
                tags.sort_unstable();
                (peer, tags)
            })
            .collect()
    }

    fn send_push(
        &mut self,
        to: SocketAddr,
        peer: u64,
        push_id: u32,
        deltas: Vec<proto::NodeDelta>,
    ) {
        let msg = proto::Message {
            kind: Some(Kind::Ack(proto::Ack { deltas, push_id })),
        };
        let Some(mut packer) = self.outbox.start(self.knows_us(Some(peer))) else {
            return;
        };
        self.outbox.add(&mut packer, msg);
        self.finish_with(packer, to, None, false);
    }

    /// Remembers a tree push for resending; returns its id, or
    /// [`UNTRACKED`] (sent once, not acknowledged) if the peer or this
    /// node is at its cap of unacknowledged pushes.
    fn track_push(
        &mut self,
        now: Instant,
        to: SocketAddr,
        peer: u64,
        roots: Vec<u64>,
        deltas: Vec<proto::NodeDelta>,
    ) -> u32 {
        if !self.pushes.may_track(peer) {
            self.metrics.pushes_capped += 1;
            self.warn_overload(now, "unacknowledged pushes at their cap");
            return UNTRACKED;
        }
        let due = now + self.push_retry_after();
        self.pushes.track(now, due, to, peer, roots, deltas)
    }

    /// How long a tree push waits for its `PushAck` before it is sent
    /// again (then doubling): the measured round trip plus four
    /// deviations, at least a fiftieth of `probe_timeout` (10 ms on a
    /// LAN), at most `probe_timeout`; a tenth of it before any round trip
    /// was measured.
    fn push_retry_after(&self) -> Duration {
        let t = self.config.probe_timeout;
        self.rtt.retry_after(t / 50, t / 10, t)
    }

    /// Logs, at most once per [`WARN_EVERY`], that this node is
    /// overloaded and why: a cluster that slows down says so.
    fn warn_overload(&mut self, now: Instant, cause: &'static str) {
        if self.pushes.warned.due(now, WARN_EVERY) {
            let m = &self.metrics;
            tracing::warn!(
                cause,
                resends = m.pushes_retried,
                capped = m.pushes_capped,
                given_up = m.pushes_unacked,
                "peers are slow to acknowledge pushes: dissemination slows down \
                 (anti-entropy repairs); check CPU and network load"
            );
        }
    }

    /// A tree push arrived: owe it an acknowledgement (unless it is
    /// [`UNTRACKED`]; see [`acks`](super::acks) for when it leaves), then
    /// apply what it carries, forwarding what is new along the tree.
    pub(super) fn on_push(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: Option<u64>,
        push: proto::Ack,
    ) {
        if push.push_id != UNTRACKED && !self.acks.owe(from, sender, push.push_id) {
            tracing::debug!(%from, "too many acknowledgements owed; the push will be resent");
        }
        self.apply_deltas(now, &push.deltas, true);
    }

    /// Adds to `packer`, bound for `to`, a `PushAck` for each push `to`
    /// is owed an acknowledgement of, as many as fit (the rest stay owed
    /// for the next packet); returns how many it added.
    pub(super) fn add_owed_acks(&mut self, packer: &mut Packer, to: SocketAddr) -> u64 {
        if self.acks.is_empty() {
            return 0;
        }
        let mut added = 0;
        for &push_id in self.acks.owed_to(to) {
            let msg = proto::Message {
                kind: Some(Kind::PushAck(proto::PushAck { push_id })),
            };
            if !packer.fits(&msg) {
                break;
            }
            self.outbox.add(packer, msg);
            added += 1;
        }
        self.acks.acknowledged(to, added as usize);
        added
    }

    /// Sends every acknowledgement still owed, one packet per peer (more
    /// only if one packet cannot hold them), with rumors and
    /// announcements in its spare room as on any packet. They go ahead of
    /// what is already queued: a sender waiting on them must not time out
    /// while the pushes they answered are forwarded.
    pub(super) fn flush_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        let first = self.outbox.queued();
        while let Some((to, peer)) = self.acks.first() {
            let Some(mut packer) = self.outbox.start(self.knows_us(peer)) else {
                self.acks.acknowledged(to, usize::MAX);
                continue;
            };
            let added = self.add_owed_acks(&mut packer, to);
            if added == 0 {
                // Not even one fits an empty packet: cannot happen with
                // any budget the outbox accepts; never loop on it.
                debug_assert!(false, "an empty packet holds no PushAck");
                self.acks.acknowledged(to, usize::MAX);
                continue;
            }
            // All but one rode with another.
            self.metrics.push_acks_merged += added - 1;
            self.finish(packer, to, None);
        }
        self.outbox.move_to_front(first);
    }

    /// Pushes were acknowledged in a packet that `finish_with` completed:
    /// counts in `push_acks_merged` every one that took no datagram of
    /// its own: all of them if the packet carries anything else (it was
    /// sent anyway), all but one if it carries acknowledgements alone.
    pub(super) fn count_merged_acks(&mut self, acked: u64, packer: &Packer) {
        if acked > 0 {
            let alone = packer.messages() as u64 == acked;
            self.metrics.push_acks_merged += acked - u64::from(alone);
        }
    }

    /// A tree push was acknowledged: stop resending it. A first-try
    /// answer is also a round-trip sample. An answer to a resent push is
    /// ambiguous (Karn's rule), except when it comes sooner after the
    /// last send than any round trip ever measured: then it answers an
    /// earlier send, the resend was spurious (the peer was only slow, as
    /// Eifel detects for TCP, RFC 3522), and the time since the first
    /// send is a sample. Dropping those samples is what kept the wait
    /// below the delays of a loaded peer, which then drew resends.
    /// Matched by id alone, as probe acks are by sequence number: a
    /// multi-homed peer may answer from another address than the one we
    /// sent to.
    pub(super) fn on_push_ack(&mut self, now: Instant, push_id: u32) {
        let Some(a) = self.pushes.acked(push_id, now) else {
            return;
        };
        if a.tries == 1 {
            self.rtt.record(a.waited);
        } else if self.rtt.min().is_some_and(|min| a.since_last < min) {
            self.metrics.pushes_resent_spuriously += 1;
            self.rtt.record(a.waited);
        }
        self.observations.record(Observation::PushAcked(a.waited));
    }

    /// Sends the overdue tree pushes again, after waits of
    /// [`retry_factor`] times the retry wait, each at most four
    /// `probe_timeout`s: a peer that stays silent (paused, overloaded) is
    /// sent copies less and less often. After
    /// [`ADOPT_AFTER`] silent sends the peer's children in the tree are
    /// sent the push as well (a crashed member not yet declared dead must
    /// not cut its subtree off); after [`PUSH_TRIES`], or once the peer is
    /// no longer healthy, the push is given up.
    pub(super) fn retry_pushes(&mut self, now: Instant) {
        let wait = self.push_retry_after();
        let members = &self.members;
        let healthy = |peer| members.get(peer).is_some_and(|k| k.status.is_healthy());
        let max_wait = self.config.probe_timeout * 4;
        let (resend, orphaned, given_up) = self.pushes.due(now, wait, max_wait, healthy);
        self.metrics.pushes_unacked += given_up;
        if resend.len() > 1 || given_up > 0 {
            self.warn_overload(now, "pushes resent");
        }
        for r in resend {
            self.metrics.pushes_retried += 1;
            self.send_push(r.to, r.peer, r.id, r.deltas);
        }
        for o in orphaned {
            self.adopt_children(now, o.peer, &o.roots, &o.deltas);
        }
    }

    /// Adds to `packer` a lazy announcement of the fresh versions waiting
    /// for one, if any and if it fits: the announcement rides on a packet
    /// that is sent anyway.
    pub(super) fn add_announcement(&mut self, packer: &mut Packer) {
        if !self.pushes.has_announcements() {
            return;
        }
        let room = Outbox::body_room(packer);
        if room < MIN_ANNOUNCE {
            return;
        }
        let keys = self.pushes.take_announcements(ANNOUNCE_PER_PACKET);
        let lines: Vec<Line> = keys
            .into_iter()
            .filter_map(|k| digest::line(&self.members, k))
            .collect();
        if lines.is_empty() {
            return;
        }
        let digest_room = room - FIELD - FLAG;
        let digest = digest::build(&self.members, &lines, &[], false, digest_room, &mut 0);
        if digest.nodes.is_empty() {
            return;
        }
        let msg = proto::Message {
            kind: Some(Kind::Syn(proto::Syn {
                digest: Some(digest),
                follow_up: false,
                announce: true,
            })),
        };
        self.metrics.announcements_sent += 1;
        self.outbox.add(packer, msg);
    }

    /// A lazy announcement from `from`: the versions it lists that we lack
    /// are waited for (the tree should bring them), then pulled.
    pub(super) fn on_announce(&mut self, now: Instant, from: SocketAddr, d: &proto::Digest) {
        let due = now + self.config.probe_timeout / 5;
        for line in digest::lines(d) {
            // A node we do not know: anti-entropy introduces it.
            let Some(k) = self.members.get(line.key) else {
                continue;
            };
            if k.state.max_version() < line.version {
                self.pushes.want(line.key, line.version, from, due);
            }
        }
    }

    /// Pulls the announced versions still missing after their wait: a
    /// follow-up `Syn` to each announcer listing our own versions of those
    /// nodes, answered with the deltas.
    pub(super) fn pull(&mut self, now: Instant) {
        for (from, wanted) in self.pushes.pulls_due(now) {
            let requests: Vec<Line> = wanted
                .iter()
                .filter_map(|&(key, version)| {
                    let l = digest::line(&self.members, key)?;
                    (l.version < version).then_some(l)
                })
                .collect();
            if requests.is_empty() {
                continue;
            }
            self.metrics.pulls += requests.len() as u64;
            self.send_syn(from, &requests, &[], true);
        }
    }

    /// Sends a push `peer` has not acknowledged to its children in each
    /// of the trees of `roots`.
    fn adopt_children(
        &mut self,
        now: Instant,
        peer: u64,
        roots: &[u64],
        deltas: &[proto::NodeDelta],
    ) {
        let orphans = self.children_in_trees(0, peer, roots.iter().map(|&r| (r, r)));
        for (child, roots) in orphans {
            let Some(to) = self.members.get(child).map(|k| k.id.addr) else {
                continue;
            };
            let id = self.track_push(now, to, child, roots, deltas.to_vec());
            self.send_push(to, child, id, deltas.to_vec());
        }
    }

    /// The children of `node` in broadcast tree number `tree` (0, or an
    /// extra one: [`Ring::children_in`](super::membership::Ring::children_in))
    /// of the given roots (`(tag, root key)` pairs), us excluded: each
    /// child once, with the tags of the roots whose tree gives it to
    /// `node`.
    fn children_in_trees<T: Copy>(
        &mut self,
        tree: usize,
        node: u64,
        roots: impl IntoIterator<Item = (T, u64)>,
    ) -> Vec<(u64, Vec<T>)> {
        let ring = self.members.ring();
        let mut out: Vec<(u64, Vec<T>)> = Vec::new();
        for (tag, root) in roots {
            let children = ring.children_in(tree, node, root, TREE_FANOUT);
            for child in children.into_iter().flatten() {
                match out.iter_mut().find(|o| o.0 == child) {
                    Some(o) => o.1.push(tag),
                    None => out.push((child, vec![tag])),
                }
            }
        }
        out
    }
}

mod state;
#[cfg(test)]
mod tests;
