//! Rumors: membership updates and user broadcasts piggybacked on every
//! packet, each retransmitted about `retransmit_mult · log10(N + 1)` times,
//! least-sent first, membership before user data.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::wire::{field_len, proto};

/// What a rumor is about: a newer rumor about the same subject replaces
/// the older one. Names are held as their 64-bit hash (every node queues
/// hundreds of rumors; a name string per rumor, twice, was most of their
/// footprint). Two names colliding would only let one's rumor replace the
/// other's, which anti-entropy and probing repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Subject {
    /// A member, by name hash.
    Member(u64),
    /// A user broadcast: origin name hash, per-origin id.
    Broadcast(u64, u64),
}

impl Subject {
    pub fn member(name: &str) -> Subject {
        Subject::Member(name_hash(name))
    }

    pub fn broadcast(origin: &str, id: u64) -> Subject {
        Subject::Broadcast(name_hash(origin), id)
    }
}

/// FNV-1a-64 of a member name.
pub(crate) fn name_hash(name: &str) -> u64 {
    crate::wire::fnv1a64(&[name.as_bytes()])
}

/// A queued rumor, kept encoded: every node holds hundreds of them, and
/// the encoded message is a third of the decoded one's footprint.
#[derive(Debug)]
struct Rumor {
    subject: Subject,
    encoded: Bytes,
}

/// One queue, ordered by (times sent, age): the least-sent, oldest rumor
/// first. Taking, re-queueing and replacing are O(log n), so a queue of
/// thousands of join rumors costs no more per packet than a short one.
#[derive(Debug, Default)]
struct Queue {
    order: BTreeMap<(u32, u64), Rumor>,
    index: HashMap<Subject, (u32, u64)>,
    next_seq: u64,
}

impl Queue {
    fn push(&mut self, subject: Subject, msg: proto::Message, cap: usize) {
        if let Some(pos) = self.index.remove(&subject) {
            self.order.remove(&pos);
        }
        if self.order.len() >= cap {
            // Full: forget the most-sent rumor (anti-entropy still carries
            // what it said, only more slowly).
            if let Some((pos, r)) = self.order.pop_last() {
                debug_assert_eq!(self.index.get(&r.subject), Some(&pos));
                self.index.remove(&r.subject);
            }
        }
        let pos = (0, self.next_seq);
        self.next_seq += 1;
        let encoded = Bytes::from(prost::Message::encode_to_vec(&msg));
        self.index.insert(subject, pos);
        self.order.insert(pos, Rumor { subject, encoded });
    }

    /// Takes the rumor at `pos` if it fits `room`, counting a transmission.
    fn take_at(&mut self, pos: (u32, u64), limit: u32, room: &mut usize) -> Option<proto::Message> {
        let cost = field_len(self.order.get(&pos)?.encoded.len());
        if cost > *room {
            return None;
        }
        *room -= cost;
        let r = self.order.remove(&pos)?;
        // We encoded it ourselves, so it decodes; if it ever did not, the
        // rumor is dropped rather than sent broken.
        let msg = <proto::Message as prost::Message>::decode(r.encoded.clone()).ok();
        let sent = pos.0 + 1;
        if sent < limit {
            let next = (sent, pos.1);
            self.index.insert(r.subject, next);
            self.order.insert(next, r);
        } else {
            self.index.remove(&r.subject);
        }
        msg
    }

    fn take(
        &mut self,
        limit: u32,
        first: Option<&Subject>,
        room: &mut usize,
        out: &mut Vec<proto::Message>,
    ) {
        if let Some(pos) = first.and_then(|f| self.index.get(f).copied()) {
            out.extend(self.take_at(pos, limit, room));
        }
        // Look at a bounded number of candidates: past that the packet is
        // as full as rumors will make it.
        let candidates: Vec<(u32, u64)> = self.order.keys().take(MAX_SCAN).copied().collect();
        for pos in candidates {
            if *room < MIN_RUMOR {
                break;
            }
            out.extend(self.take_at(pos, limit, room));
        }
    }
}

/// Most membership rumors a queue holds. A node sends a few hundred rumor
/// copies a second and each rumor needs `retransmit_mult · log10(N + 1)`
/// of them, so 1,024 is already a minute of backlog; beyond that a burst
/// (thousands of joins, or suspicions under heavy loss) would only grow
/// every node's queue — 10,000 simulated nodes at 20% loss filled
/// 4,096-entry queues to 16 GB. The most-sent rumor is forgotten first;
/// digests still introduce members and probes still find failures. (At
/// most one rumor per member is queued, so up to 1,024 members a join
/// never reaches the cap.)
const MEMBER_CAP: usize = 1024;
const USER_CAP: usize = 4096;
/// Candidates examined per packet.
const MAX_SCAN: usize = 128;
/// No rumor is smaller than this (encoded, with its field header).
const MIN_RUMOR: usize = 12;

/// Two queues, membership first.
#[derive(Debug, Default)]
pub(crate) struct Rumors {
    member: Queue,
    user: Queue,
}

impl Rumors {
    pub fn push(&mut self, subject: Subject, msg: proto::Message) {
        match subject {
            Subject::Member(_) => self.member.push(subject, msg, MEMBER_CAP),
            Subject::Broadcast(..) => self.user.push(subject, msg, USER_CAP),
        }
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
    /// target: the buddy system) goes before all others.
    pub fn take(
        &mut self,
        limit: u32,
        first: Option<&Subject>,
        mut room: usize,
    ) -> Vec<proto::Message> {
        let mut out = Vec::new();
        self.member.take(limit, first, &mut room, &mut out);
        self.user.take(limit, first, &mut room, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bc(id: u64) -> proto::Message {
        proto::Message {
            kind: Some(proto::message::Kind::Broadcast(proto::Broadcast {
                origin: "a".into(),
                id,
                payload: vec![0; 10].into(),
            })),
        }
    }

    #[test]
    fn retransmits_up_to_the_limit_least_sent_first() {
        let mut r = Rumors::default();
        r.push(Subject::broadcast("a", 1), bc(1));
        for _ in 0..3 {
            assert_eq!(r.take(3, None, 10_000).len(), 1);
        }
        assert!(r.is_empty());
        r.push(Subject::broadcast("a", 2), bc(2));
        r.take(3, None, 10_000);
        r.push(Subject::broadcast("a", 3), bc(3));
        // Only room for one: the least-sent rumor wins.
        let one = field_len(prost::Message::encoded_len(&bc(3)));
        let got = r.take(3, None, one);
        assert_eq!(got, vec![bc(3)]);
    }

    #[test]
    fn the_buddy_goes_first_and_a_full_queue_forgets_the_most_sent() {
        let mut r = Rumors::default();
        r.push(Subject::broadcast("a", 1), bc(1));
        r.push(Subject::broadcast("a", 2), bc(2));
        let one = field_len(prost::Message::encoded_len(&bc(2)));
        let got = r.take(9, Some(&Subject::broadcast("a", 2)), one);
        assert_eq!(got, vec![bc(2)]);
        let mut q = Queue::default();
        for i in 0..5 {
            q.push(Subject::broadcast("a", i), bc(i), 3);
        }
        assert_eq!(q.order.len(), 3);
        assert_eq!(q.index.len(), 3);
    }

    #[test]
    fn a_newer_rumor_replaces_the_older_about_the_same_subject() {
        let mut r = Rumors::default();
        let s = Subject::member("x");
        r.push(s, bc(1));
        r.push(s, bc(2));
        assert_eq!(r.take(5, None, 10_000), vec![bc(2)]);
    }
}
