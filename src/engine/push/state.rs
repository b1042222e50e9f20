//! The push room's state ([`Pushes`]): the changes not pushed yet and
//! their batching deadline, the tree pushes waiting for their
//! acknowledgement and their resend schedule, the announcements to
//! piggyback and the announced versions waited for. It owns this state
//! behind its own methods; the room (`push.rs`) builds and sends the
//! packets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::engine::timer::Every;
use crate::wire::proto;

/// Sends of one tree push before it is given up (the first and resends).
pub(super) const PUSH_TRIES: u8 = 8;

/// Sends after which a silent child's own children are sent the push too
/// (a child that silent is more likely down than slow).
pub(super) const ADOPT_AFTER: u8 = 5;

/// Unacknowledged tree pushes kept for resending, per node; past this a
/// push is sent once, untracked (anti-entropy repairs what is lost).
pub(super) const PENDING_CAP: usize = 256;

/// Unacknowledged tree pushes per peer; past this a push to that peer is
/// sent once, untracked: a peer that is slow to answer is sent nothing
/// more because it is slow.
pub(super) const PEER_CAP: u32 = 8;

/// The `push_id` of a push sent once and not to be acknowledged (past a
/// cap, or an extra copy): still a push, which its receiver applies and
/// forwards along the tree. Zero would make it an exchange's `Ack`,
/// whose deltas are applied but never forwarded, cutting off the
/// receiver's subtree. A node that predates it acknowledges it, and the
/// acknowledgement is ignored.
pub(in crate::engine) const UNTRACKED: u32 = u32::MAX;

/// Extra broadcast trees a push follows, at most, however lossy the
/// network (see [`LossEstimate`](super::loss::LossEstimate)).
pub(in crate::engine) const MAX_EXTRA_COPIES: usize = 6;

/// Fresh versions waiting to be announced; the oldest go first past this.
const ANNOUNCE_CAP: usize = 512;

/// Announced versions waited for; past this, announcements are ignored
/// (anti-entropy still finds what is missing).
const WANT_CAP: usize = 1024;

/// The wait after the `sends`-th send of a tree push, in retry waits:
/// doubling from the first (1, 2, 4, ...), as TCP and QUIC back off, so
/// a peer that is merely slow is sent a copy less and less often.
fn retry_factor(sends: u8) -> u32 {
    1 << sends.saturating_sub(1).min(8)
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
    /// The first send, and the last one.
    sent: Instant,
    last_sent: Instant,
    due: Instant,
}

/// A tree push answered.
pub(super) struct Acked {
    /// Since its first send.
    pub(super) waited: Duration,
    /// Since its last send.
    pub(super) since_last: Duration,
    /// Sends made.
    pub(super) tries: u8,
}

/// A tree push to send again.
pub(super) struct Resend {
    pub(super) to: SocketAddr,
    pub(super) peer: u64,
    pub(super) id: u32,
    pub(super) deltas: Vec<proto::NodeDelta>,
}

/// A push a silent peer did not acknowledge, to send to its children.
pub(super) struct Orphaned {
    pub(super) peer: u64,
    pub(super) roots: Vec<u64>,
    pub(super) deltas: Vec<proto::NodeDelta>,
}

/// A version announced to us that we lack, and whom to ask for it.
#[derive(Debug, Clone, Copy)]
struct Want {
    version: u64,
    from: SocketAddr,
}

/// A fresh version to announce, and to how many more packets.
#[derive(Debug, Clone, Copy)]
struct Announcement {
    key: u64,
    left: usize,
}

/// The push room's state: the changes not pushed yet, the tree pushes
/// waiting for their acknowledgement, the announcements to piggyback and
/// the announced versions waited for.
#[derive(Debug, Default)]
pub(in crate::engine) struct Pushes {
    /// Nodes whose state advanced since the last push, with the version
    /// they were at before (in key order, so pushes replay).
    fresh: BTreeMap<u64, u64>,
    /// When the fresh changes are pushed (at once, or at the end of the
    /// batching delay after the last push).
    push_at: Option<Instant>,
    /// When the last push was made.
    last_push: Option<Instant>,
    pending: Vec<PendingPush>,
    /// (due, id) of every pending push.
    dues: BTreeSet<(Instant, u32)>,
    /// Pending pushes per peer.
    per_peer: BTreeMap<u64, u32>,
    next_id: u32,
    /// Fresh versions to announce, oldest first.
    announce: Vec<Announcement>,
    /// Announced versions we lack, by node key, with their dues in order.
    wanted: BTreeMap<u64, Want>,
    want_dues: BTreeSet<(Instant, u64)>,
    /// When an overload warning may be logged again.
    pub(super) warned: Every,
}

impl Pushes {
    /// When the fresh changes are to be pushed, if any wait.
    pub fn push_at(&self) -> Option<Instant> {
        self.push_at
    }

    /// When the next resend is due, if any push is pending.
    pub fn next_due(&self) -> Option<Instant> {
        self.dues.first().map(|&(t, _)| t)
    }

    /// When the next announced version is to be pulled, if one is awaited.
    pub fn next_pull(&self) -> Option<Instant> {
        self.want_dues.first().map(|&(t, _)| t)
    }

    /// Notes that node `key` advanced past `before` at `now`: pushed at
    /// once if nothing was pushed within `delay`, else batched with what
    /// else changes until `delay` after the last push.
    pub(super) fn note(&mut self, key: u64, before: u64, now: Instant, delay: Duration) {
        self.fresh.entry(key).or_insert(before);
        if self.push_at.is_none() {
            let at = self.last_push.map_or(now, |t| (t + delay).max(now));
            self.push_at = Some(at);
        }
    }

    /// Takes the fresh changes, in key order, ending the batch; they are
    /// queued for announcement to `fanout` packets.
    pub(super) fn take_fresh(&mut self, now: Instant, fanout: usize) -> Vec<(u64, u64)> {
        self.push_at = None;
        self.last_push = Some(now);
        let fresh: Vec<(u64, u64)> = std::mem::take(&mut self.fresh).into_iter().collect();
        if fanout > 0 {
            for &(key, _) in &fresh {
                self.announce.retain(|a| a.key != key);
                self.announce.push(Announcement { key, left: fanout });
            }
            let over = self.announce.len().saturating_sub(ANNOUNCE_CAP);
            self.announce.drain(..over);
        }
        fresh
    }

    /// A fresh push id: never 0 (an exchange's `Ack`) nor [`UNTRACKED`].
    pub(super) fn id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        if self.next_id == 0 || self.next_id == UNTRACKED {
            self.next_id = 1;
        }
        self.next_id
    }

    /// Whether a push to `peer` may be tracked for resending: neither the
    /// peer nor the node is at its cap of unacknowledged pushes.
    pub(super) fn may_track(&self, peer: u64) -> bool {
        self.pending.len() < PENDING_CAP
            && self.per_peer.get(&peer).copied().unwrap_or(0) < PEER_CAP
    }

    /// Remembers a tree push for resending at `due`; returns its id.
    pub(super) fn track(
        &mut self,
        now: Instant,
        due: Instant,
        to: SocketAddr,
        peer: u64,
        roots: Vec<u64>,
        deltas: Vec<proto::NodeDelta>,
    ) -> u32 {
        let id = self.id();
        self.dues.insert((due, id));
        *self.per_peer.entry(peer).or_default() += 1;
        self.pending.push(PendingPush {
            id,
            to,
            peer,
            roots,
            deltas,
            tries: 1,
            adopted: false,
            sent: now,
            last_sent: now,
            due,
        });
        id
    }

    /// Forgets pending push `p` in the indexes.
    fn untrack(&mut self, p: &PendingPush) {
        self.dues.remove(&(p.due, p.id));
        if let Some(n) = self.per_peer.get_mut(&p.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&p.peer);
            }
        }
    }

    /// Stops resending push `id`; returns how long it waited.
    pub(super) fn acked(&mut self, id: u32, now: Instant) -> Option<Acked> {
        let i = self.pending.iter().position(|p| p.id == id)?;
        let p = self.pending.swap_remove(i);
        self.untrack(&p);
        Some(Acked {
            waited: now.saturating_duration_since(p.sent),
            since_last: now.saturating_duration_since(p.last_sent),
            tries: p.tries,
        })
    }

    /// The overdue pushes at `now`, in pending order: those to send again
    /// (each rescheduled `wait` times its [`retry_factor`] later, at most
    /// `max_wait`), those
    /// whose peer's children must now be sent them, and how many were
    /// given up (after [`PUSH_TRIES`] sends, or when `healthy` says the
    /// peer is down).
    pub(super) fn due(
        &mut self,
        now: Instant,
        wait: Duration,
        max_wait: Duration,
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
                self.untrack(&p);
                given_up += 1;
                continue;
            }
            self.dues.remove(&(p.due, p.id));
            p.tries += 1;
            p.last_sent = now;
            p.due = now + (wait * retry_factor(p.tries)).min(max_wait);
            self.dues.insert((p.due, p.id));
            resend.push(Resend {
                to: p.to,
                peer: p.peer,
                id: p.id,
                deltas: p.deltas.clone(),
            });
            i += 1;
        }
        (resend, orphaned, given_up)
    }

    /// Whether fresh versions wait to be announced.
    pub fn has_announcements(&self) -> bool {
        !self.announce.is_empty()
    }

    /// The node keys to announce on the next packet, oldest first, at most
    /// `max`; each counts one more announcement.
    pub(super) fn take_announcements(&mut self, max: usize) -> Vec<u64> {
        let n = self.announce.len().min(max);
        let keys = self.announce[..n].iter().map(|a| a.key).collect();
        for a in &mut self.announce[..n] {
            a.left -= 1;
        }
        self.announce.retain(|a| a.left > 0);
        keys
    }

    /// Waits for `version` of node `key`, announced by `from`, until `due`.
    pub(super) fn want(&mut self, key: u64, version: u64, from: SocketAddr, due: Instant) {
        if let Some(w) = self.wanted.get_mut(&key) {
            // Already waiting: keep the deadline, ask for the newest.
            w.version = w.version.max(version);
            return;
        }
        if self.wanted.len() >= WANT_CAP {
            return;
        }
        self.wanted.insert(key, Want { version, from });
        self.want_dues.insert((due, key));
    }

    /// The announced versions due at `now`, grouped by announcer (in
    /// announcer order), with the version each waited for.
    pub(super) fn pulls_due(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<(u64, u64)>)> {
        let mut by_from: BTreeMap<SocketAddr, Vec<(u64, u64)>> = BTreeMap::new();
        while let Some(&(t, key)) = self.want_dues.first() {
            if now < t {
                break;
            }
            self.want_dues.pop_first();
            if let Some(w) = self.wanted.remove(&key) {
                by_from.entry(w.from).or_default().push((key, w.version));
            }
        }
        by_from.into_iter().collect()
    }
}
