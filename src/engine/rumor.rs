//! Rumors: membership updates and user broadcasts piggybacked on every
//! packet, each retransmitted about `retransmit_mult · log10(N + 1)` times,
//! least-sent first, membership before user data.
//!
//! A membership rumor is held as two member keys — whom it is about and
//! who said so — and rendered from the member table when it is sent, so
//! it always carries the newest status known (every table change queues
//! one anyway). Under heavy loss every node of a large cluster queues a
//! rumor for hundreds of suspicions at once; as keys a queued rumor costs
//! about a third of the encoded message it replaced.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::membership::Members;
use super::msg::{name_hash, state_of, update};
use super::outbox::MIN_RUMOR;
use crate::wire::proto::message::Kind;
use crate::wire::{field_len, proto};

/// What a rumor is about: a newer rumor about the same subject replaces
/// the older one. A 64-bit hash of the member name, or of a broadcast's
/// origin and id: two subjects colliding would only let one's rumor
/// replace the other's, which anti-entropy and probing repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Subject(u64);

impl Subject {
    pub fn member(name: &str) -> Subject {
        Subject(name_hash(name))
    }

    pub fn broadcast(origin: &str, id: u64) -> Subject {
        Subject(super::membership::mix(name_hash(origin), id))
    }
}

/// Who a membership rumor is from: a member (by key) or, if the teller is
/// not in our table, its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Teller {
    Member(u64),
    Name(Box<str>),
}

impl Teller {
    /// The teller called `name`, by key if `members` knows it.
    pub fn named(members: &Members, name: &str) -> Teller {
        match members.key_of(name) {
            Some(k) => Teller::Member(k),
            None => Teller::Name(name.into()),
        }
    }
}

/// A queued membership rumor: the member record it is about, and who
/// told us.
#[derive(Debug)]
struct MemberRumor {
    key: u64,
    from: Teller,
}

/// What a queued rumor renders to when it is sent.
trait Body {
    /// The message, or `None` if it can no longer be said (the member was
    /// removed from the table): the rumor is then dropped.
    fn render(&self, members: &Members) -> Option<proto::Message>;
}

impl Body for MemberRumor {
    fn render(&self, members: &Members) -> Option<proto::Message> {
        let k = members.get(self.key)?;
        let from = match &self.from {
            Teller::Member(t) => members.get(*t)?.id.name.as_str(),
            Teller::Name(n) => n,
        };
        let mut msg = update(&k.id, k.incarnation, state_of(k.status), from);
        if let (Some(claim), Some(Kind::Member(u))) = (&k.claim, &mut msg.kind) {
            u.from = claim.signer.to_string();
            u.signature = Bytes::copy_from_slice(&claim.signature);
        }
        Some(msg)
    }
}

/// A user broadcast, kept encoded (a third of the decoded footprint).
impl Body for Bytes {
    fn render(&self, _: &Members) -> Option<proto::Message> {
        // We encoded it ourselves, so it decodes; if it ever did not, the
        // rumor is dropped rather than sent broken.
        <proto::Message as prost::Message>::decode(self.clone()).ok()
    }
}

#[derive(Debug)]
struct Queued<T> {
    /// (times sent, age): its place in `Queue::order`.
    pos: (u32, u64),
    body: T,
}

/// One queue, ordered by (times sent, age): the least-sent, oldest rumor
/// first. Taking, re-queueing and replacing are O(log n), so a queue of
/// thousands of join rumors costs no more per packet than a short one.
#[derive(Debug)]
struct Queue<T> {
    order: BTreeMap<(u32, u64), Subject>,
    index: HashMap<Subject, Queued<T>>,
    next_seq: u64,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            order: BTreeMap::new(),
            index: HashMap::new(),
            next_seq: 0,
        }
    }
}

impl<T: Body> Queue<T> {
    fn push(&mut self, subject: Subject, body: T, cap: usize) {
        if let Some(old) = self.index.remove(&subject) {
            self.order.remove(&old.pos);
        }
        if self.order.len() >= cap {
            // Full: forget the most-sent rumor (anti-entropy still carries
            // what it said, only more slowly).
            if let Some((_, s)) = self.order.pop_last() {
                self.index.remove(&s);
            }
        }
        let pos = (0, self.next_seq);
        self.next_seq += 1;
        self.order.insert(pos, subject);
        self.index.insert(subject, Queued { pos, body });
    }

    fn remove(&mut self, subject: &Subject) {
        if let Some(q) = self.index.remove(subject) {
            self.order.remove(&q.pos);
        }
    }

    /// Renders the rumor about `subject` if it fits `room`, counting a
    /// transmission. `Err(())`: it did not fit.
    fn take_one(
        &mut self,
        subject: Subject,
        limit: u32,
        room: &mut usize,
        members: &Members,
    ) -> Result<Option<proto::Message>, ()> {
        let Some(q) = self.index.get(&subject) else {
            return Ok(None);
        };
        let Some(msg) = q.body.render(members) else {
            self.remove(&subject);
            return Ok(None);
        };
        let cost = field_len(prost::Message::encoded_len(&msg));
        if cost > *room {
            return Err(());
        }
        *room -= cost;
        let pos = q.pos;
        self.order.remove(&pos);
        let sent = pos.0 + 1;
        if sent < limit {
            let next = (sent, pos.1);
            self.order.insert(next, subject);
            if let Some(q) = self.index.get_mut(&subject) {
                q.pos = next;
            }
        } else {
            self.index.remove(&subject);
        }
        Ok(Some(msg))
    }

    fn take(
        &mut self,
        limit: u32,
        first: Option<&Subject>,
        room: &mut usize,
        members: &Members,
        out: &mut Vec<proto::Message>,
    ) {
        if let Some(&f) = first {
            if let Ok(m) = self.take_one(f, limit, room, members) {
                out.extend(m);
            }
        }
        // Look at a bounded number of candidates: past that (or past a
        // few that no longer fit) the packet is as full as rumors will
        // make it.
        let candidates: Vec<Subject> = self.order.values().take(MAX_SCAN).copied().collect();
        let mut misfits = 0;
        for subject in candidates {
            if *room < MIN_RUMOR || misfits >= MAX_MISFITS {
                break;
            }
            match self.take_one(subject, limit, room, members) {
                Ok(m) => out.extend(m),
                Err(()) => misfits += 1,
            }
        }
    }
}

/// Most membership rumors a queue holds. A node sends a few hundred rumor
/// copies a second and each rumor needs `retransmit_mult · log10(N + 1)`
/// of them, so 1,024 is already a minute of backlog; beyond that a burst
/// (thousands of joins, or suspicions under heavy loss) would only grow
/// every node's queue. The most-sent rumor is forgotten first; digests
/// still introduce members and probes still find failures. (At most one
/// rumor per member is queued, so up to 1,024 members a join never
/// reaches the cap.)
const MEMBER_CAP: usize = 1024;
const USER_CAP: usize = 4096;
/// Candidates examined per packet.
const MAX_SCAN: usize = 128;
/// Candidates that did not fit after which a packet counts as full.
const MAX_MISFITS: usize = 4;

/// Two queues, membership first.
#[derive(Debug, Default)]
pub(crate) struct Rumors {
    member: Queue<MemberRumor>,
    user: Queue<Bytes>,
}

impl Rumors {
    /// Queues a rumor about member record `key` (called `name`), told by
    /// `from`; it is rendered from the table when sent.
    pub fn push_member(&mut self, name: &str, key: u64, from: Teller) {
        let body = MemberRumor { key, from };
        self.member.push(Subject::member(name), body, MEMBER_CAP);
    }

    /// Queues a user broadcast.
    pub fn push_broadcast(&mut self, subject: Subject, msg: &proto::Message) {
        let encoded = Bytes::from(prost::Message::encode_to_vec(msg));
        self.user.push(subject, encoded, USER_CAP);
    }

    pub fn is_empty(&self) -> bool {
        self.member.order.is_empty() && self.user.order.is_empty()
    }

    /// Queued (membership, user) rumors.
    pub fn lens(&self) -> (usize, usize) {
        (self.member.order.len(), self.user.order.len())
    }

    /// Takes rumors, least sent first, while they fit in `room` bytes (each
    /// costs its field header too); counts a transmission for each and
    /// drops those sent `limit` times. A rumor about `first` (the probe
    /// target: the buddy system) goes before all others. Membership rumors
    /// are rendered from `members`.
    pub fn take(
        &mut self,
        limit: u32,
        first: Option<&Subject>,
        mut room: usize,
        members: &Members,
    ) -> Vec<proto::Message> {
        let mut out = Vec::new();
        self.member.take(limit, first, &mut room, members, &mut out);
        self.user.take(limit, None, &mut room, members, &mut out);
        out
    }
}

#[cfg(test)]
mod tests;
