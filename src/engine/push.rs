//! Pushing fresh changes: a node that learns a new version forwards it at
//! once (batched over `push_delay`) instead of waiting for anti-entropy.
//!
//! Two paths carry a push:
//! - the **broadcast tree**: the healthy members in key order, rotated to
//!   start at the changed node, read as a complete [`TREE_FANOUT`]-ary
//!   tree. Every member holding the same membership computes the same tree,
//!   so each member is sent the change once, in about log₄ N hops, with no
//!   one left out by chance. Tree pushes are acknowledged (`PushAck`) and
//!   retried after a timeout drawn from the measured round-trip time, so a
//!   lost datagram costs a few milliseconds, not a gossip round;
//! - `push_fanout` **random peers**, unacknowledged: they cover members
//!   whose view of the tree differs (a join or a death not yet known
//!   everywhere) and give every member several chances.
//!
//! Whatever both miss, anti-entropy repairs.
//!
//! [`Pushes`] owns the room's state (the fresh changes, the batching
//! deadline, the pending tree pushes and their retry schedule); the
//! `impl Engine` part builds the deltas from the member table and sends
//! through the outbox.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Engine;
use super::digest::Line;
use super::observation::Observation;
use super::outbox::Outbox;
use crate::wire::proto::{self, message::Kind};

/// Children per node in the broadcast tree.
pub(super) const TREE_FANOUT: usize = 4;

/// Sends of one tree push before it is given up (the first and retries).
const PUSH_TRIES: u8 = 8;

/// Sends after which a silent child's own children are sent the push too
/// (at 20% loss all five are lost once in 3,000 pushes; a child that
/// silent is more likely down).
const ADOPT_AFTER: u8 = 5;

/// Unacknowledged tree pushes kept for retry; beyond this the oldest is
/// given up (anti-entropy still repairs what it carried).
const PENDING_CAP: usize = 1024;

/// The wait after the `sends`-th send of a tree push, in retry waits:
/// 1, 1, 1, 1, then doubling (2, 4, 8). A datagram lost at random is
/// answered by the next send, and at 20% loss one in 600 pushes needs a
/// fifth send: doubling from the second (1, 1, 2, 4, 8, ...) made that
/// member wait 8 retry waits (~30 ms on a LAN) instead of 4, and the
/// slowest member of a thousand set the propagation time. Backing off
/// starts once the silence looks like a paused or overloaded peer, when
/// its children are sent the push too ([`ADOPT_AFTER`]).
fn retry_factor(sends: u8) -> u32 {
    1 << sends.saturating_sub(ADOPT_AFTER - 1).min(8)
}

/// A tree push waiting for its `PushAck`.
#[derive(Debug)]
struct PendingPush {
    id: u32,
    to: SocketAddr,
    peer: u64,
    /// The changed nodes whose tree this push follows.
    roots: Vec<u64>,
    deltas: Vec<proto::NodeDelta>,
    tries: u8,
    /// Whether the peer's children were sent the push already.
    adopted: bool,
    sent: Instant,
    due: Instant,
}

/// A tree push to send again.
struct Resend {
    to: SocketAddr,
    id: u32,
    deltas: Vec<proto::NodeDelta>,
}

/// A push a silent peer did not acknowledge, to send to its children.
struct Orphaned {
    peer: u64,
    roots: Vec<u64>,
    deltas: Vec<proto::NodeDelta>,
}

/// The push room's state: the changes not pushed yet and the tree pushes
/// waiting for their acknowledgement.
#[derive(Debug, Default)]
pub(super) struct Pushes {
    /// Nodes whose state advanced since the last push, with the version
    /// they were at before (in key order, so pushes replay).
    fresh: BTreeMap<u64, u64>,
    /// When the fresh changes are pushed (the end of the batching delay).
    push_at: Option<Instant>,
    pending: Vec<PendingPush>,
    /// (due, id) of every pending push.
    dues: BTreeSet<(Instant, u32)>,
    next_id: u32,
}

impl Pushes {
    /// When the fresh changes are to be pushed, if any wait.
    pub fn push_at(&self) -> Option<Instant> {
        self.push_at
    }

    /// When the next retry is due, if any push is pending.
    pub fn next_due(&self) -> Option<Instant> {
        self.dues.first().map(|&(t, _)| t)
    }

    /// Notes that node `key` advanced past `before`; the batch is pushed
    /// at `at` if none is waiting yet.
    fn note(&mut self, key: u64, before: u64, at: Instant) {
        self.fresh.entry(key).or_insert(before);
        if self.push_at.is_none() {
            self.push_at = Some(at);
        }
    }

    /// Takes the fresh changes, in key order, ending the batch.
    fn take_fresh(&mut self) -> Vec<(u64, u64)> {
        self.push_at = None;
        std::mem::take(&mut self.fresh).into_iter().collect()
    }

    fn id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    /// Remembers a tree push for retry at `due`; returns its id and
    /// whether the oldest pending push was given up to make room.
    fn track(
        &mut self,
        now: Instant,
        due: Instant,
        to: SocketAddr,
        peer: u64,
        roots: Vec<u64>,
        deltas: Vec<proto::NodeDelta>,
    ) -> (u32, bool) {
        let evicted = self.pending.len() >= PENDING_CAP;
        if evicted {
            let old = self.pending.remove(0);
            self.dues.remove(&(old.due, old.id));
        }
        let id = self.id();
        self.dues.insert((due, id));
        self.pending.push(PendingPush {
            id,
            to,
            peer,
            roots,
            deltas,
            tries: 1,
            adopted: false,
            sent: now,
            due,
        });
        (id, evicted)
    }

    /// Stops retrying push `id`; returns how long it waited and whether
    /// it was answered on its first send.
    fn acked(&mut self, id: u32, now: Instant) -> Option<(Duration, bool)> {
        let i = self.pending.iter().position(|p| p.id == id)?;
        let p = self.pending.swap_remove(i);
        self.dues.remove(&(p.due, p.id));
        Some((now.saturating_duration_since(p.sent), p.tries == 1))
    }

    /// The overdue pushes at `now`, in pending order: those to send again
    /// (each rescheduled `wait` times its [`retry_factor`] later), those
    /// whose peer's children must now be sent them, and how many were
    /// given up (after [`PUSH_TRIES`] sends, or when `healthy` says the
    /// peer is down).
    fn due(
        &mut self,
        now: Instant,
        wait: Duration,
        healthy: impl Fn(u64) -> bool,
    ) -> (Vec<Resend>, Vec<Orphaned>, u64) {
        let (mut resend, mut orphaned, mut given_up) = (Vec::new(), Vec::new(), 0);
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            if now < p.due {
                i += 1;
                continue;
            }
            let give_up = p.tries >= PUSH_TRIES || !healthy(p.peer);
            if (give_up || p.tries >= ADOPT_AFTER) && !p.adopted {
                p.adopted = true;
                orphaned.push(Orphaned {
                    peer: p.peer,
                    roots: p.roots.clone(),
                    deltas: p.deltas.clone(),
                });
            }
            if give_up {
                let p = self.pending.swap_remove(i);
                self.dues.remove(&(p.due, p.id));
                given_up += 1;
                continue;
            }
            self.dues.remove(&(p.due, p.id));
            p.tries += 1;
            p.due = now + wait * retry_factor(p.tries);
            self.dues.insert((p.due, p.id));
            resend.push(Resend {
                to: p.to,
                id: p.id,
                deltas: p.deltas.clone(),
            });
            i += 1;
        }
        (resend, orphaned, given_up)
    }
}

impl Engine {
    /// Remembers that node `key` advanced past `before`, to push the news
    /// after `push_delay` (batching what changes meanwhile).
    pub(super) fn note_fresh(&mut self, key: u64, before: u64) {
        self.diverged();
        if self.config.push_fanout == 0 || self.leaving {
            return;
        }
        let at = self.last_now + self.config.push_delay;
        self.pushes.note(key, before, at);
    }

    /// Pushes the fresh changes as deltas to our children in each changed
    /// node's broadcast tree (acknowledged) and to `push_fanout` random
    /// peers (not). Each node forwards each new version once, when it first
    /// learns it.
    pub(super) fn push_fresh(&mut self, now: Instant) {
        let fresh = self.pushes.take_fresh();
        if fresh.is_empty() {
            return;
        }
        // Who gets what: (peer, the fresh nodes whose tree has it as our
        // child, whether it was also drawn at random). Tree pushes carry
        // their roots' changes; random ones carry all.
        let me = self.members.me();
        let roots = fresh.iter().enumerate().map(|(i, &(key, _))| (i, key));
        let mut targets: Vec<(u64, Vec<usize>, bool)> = self
            .children_in_trees(me, roots)
            .into_iter()
            .map(|(child, tree)| (child, tree, false))
            .collect();
        let random = self
            .members
            .random_peers(&mut self.rng, self.config.push_fanout, None);
        for peer in random {
            match targets.iter_mut().find(|t| t.0 == peer) {
                Some(t) => t.2 = true,
                None => targets.push((peer, Vec::new(), true)),
            }
        }
        let Some(packer) = self.outbox.start(false) else {
            return;
        };
        let room = Outbox::body_room(&packer);
        let all: Vec<usize> = (0..fresh.len()).collect();
        // Deltas per distinct set of fresh nodes (usually one set: all).
        let mut built: Vec<(Vec<usize>, Vec<proto::NodeDelta>)> = Vec::new();
        for (peer, tree, random) in targets {
            let Some(to) = self.members.get(peer).map(|k| k.id.addr) else {
                continue;
            };
            let which = if random { &all } else { &tree };
            let deltas = match built.iter().find(|b| b.0 == *which) {
                Some(b) => b.1.clone(),
                None => {
                    let lines = which
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
                    built.push((which.clone(), d.clone()));
                    d
                }
            };
            if deltas.is_empty() {
                continue;
            }
            let push_id = if tree.is_empty() {
                0
            } else {
                let roots = tree.iter().map(|&i| fresh[i].0).collect();
                self.track_push(now, to, peer, roots, deltas.clone())
            };
            self.send_push(to, push_id, deltas);
        }
    }

    fn send_push(&mut self, to: SocketAddr, push_id: u32, deltas: Vec<proto::NodeDelta>) {
        let msg = proto::Message {
            kind: Some(Kind::Ack(proto::Ack { deltas, push_id })),
        };
        self.send(to, None, vec![msg], None);
    }

    /// Remembers a tree push for retry; returns its id.
    fn track_push(
        &mut self,
        now: Instant,
        to: SocketAddr,
        peer: u64,
        roots: Vec<u64>,
        deltas: Vec<proto::NodeDelta>,
    ) -> u32 {
        let due = now + self.push_retry_after();
        let (id, evicted) = self.pushes.track(now, due, to, peer, roots, deltas);
        if evicted {
            self.metrics.pushes_unacked += 1;
        }
        id
    }

    /// How long a tree push waits for its `PushAck` before it is sent
    /// again: from the round-trip times measured on probes and pushes
    /// (a tenth of `probe_timeout` until there are enough of them).
    fn push_retry_after(&self) -> Duration {
        self.rtt.retry_after(self.config.probe_timeout / 10)
    }

    /// A tree push arrived: acknowledge it, then apply what it carries.
    pub(super) fn on_push(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: Option<u64>,
        push: proto::Ack,
    ) {
        let msg = proto::Message {
            kind: Some(Kind::PushAck(proto::PushAck {
                push_id: push.push_id,
            })),
        };
        self.send(from, sender, vec![msg], None);
        self.apply_deltas(now, &push.deltas);
    }

    /// A tree push arrived: stop retrying it. A first-try answer is also a
    /// round-trip sample (a retried one is ambiguous, as in Karn's rule).
    /// Matched by id alone, as probe acks are by sequence number: a
    /// multi-homed peer may answer from another address than the one we
    /// sent to.
    pub(super) fn on_push_ack(&mut self, now: Instant, push_id: u32) {
        let Some((waited, first_try)) = self.pushes.acked(push_id, now) else {
            return;
        };
        if first_try {
            self.rtt.record(waited);
        }
        self.observations.record(Observation::PushAcked(waited));
    }

    /// Sends the overdue tree pushes again, after waits of
    /// [`retry_factor`] times the retry wait: random loss is best met by
    /// retrying soon, a peer that stays silent (paused, overloaded) by
    /// backing off. After [`ADOPT_AFTER`] silent sends the peer's children
    /// in the tree are sent the push as well (a crashed member not yet
    /// declared dead must not cut its subtree off); after [`PUSH_TRIES`],
    /// or once the peer is no longer healthy, the push is given up.
    pub(super) fn retry_pushes(&mut self, now: Instant) {
        let wait = self.push_retry_after();
        let members = &self.members;
        let healthy = |peer| members.get(peer).is_some_and(|k| k.status.is_healthy());
        let (resend, orphaned, given_up) = self.pushes.due(now, wait, healthy);
        self.metrics.pushes_unacked += given_up;
        for r in resend {
            self.metrics.pushes_retried += 1;
            self.send_push(r.to, r.id, r.deltas);
        }
        for o in orphaned {
            self.adopt_children(now, o.peer, &o.roots, &o.deltas);
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
        let orphans = self.children_in_trees(peer, roots.iter().map(|&r| (r, r)));
        for (child, roots) in orphans {
            let Some(to) = self.members.get(child).map(|k| k.id.addr) else {
                continue;
            };
            let id = self.track_push(now, to, child, roots, deltas.to_vec());
            self.send_push(to, id, deltas.to_vec());
        }
    }

    /// The children of `node` in the broadcast trees of the given roots
    /// (`(tag, root key)` pairs), us excluded: each child once, with the
    /// tags of the roots whose tree gives it to `node`.
    fn children_in_trees<T: Copy>(
        &mut self,
        node: u64,
        roots: impl IntoIterator<Item = (T, u64)>,
    ) -> Vec<(u64, Vec<T>)> {
        let ring = self.members.ring();
        let mut out: Vec<(u64, Vec<T>)> = Vec::new();
        for (tag, root) in roots {
            for child in ring.children_of(node, root, TREE_FANOUT) {
                match out.iter_mut().find(|o| o.0 == child) {
                    Some(o) => o.1.push(tag),
                    None => out.push((child, vec![tag])),
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
