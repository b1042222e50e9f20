//! Acknowledgements owed for tree pushes, merged per peer.
//!
//! A tree push is not acknowledged the moment it is read, but when the
//! engine next hands out its datagrams (`Engine::poll_transmit`): every
//! push read from one peer in between is acknowledged by a single
//! `PushAck` listing all their ids, and a packet this node sends that
//! peer in between carries the acknowledgement instead of a datagram of
//! its own. QUIC acknowledges a batch of packets read together with one
//! ACK frame the same way (RFC 9000 §13.2.2). Nothing waits on a timer,
//! so no acknowledgement is later than the batch it was read in. A driver
//! that sends after every datagram acknowledges every push alone; the
//! node's driver does, except that before its timers run it reads the
//! datagrams already waiting (up to 64) and only then sends, so a busy
//! node, behind on its reads, sends fewer acknowledgements when datagrams
//! cost most. On a node that keeps up, pushes come one at a time from
//! different parents (each changed node's tree gives a member another
//! parent) and there is little to merge: see docs/PERFORMANCE.md.
//!
//! [`OwedAcks`] only keeps the ids and builds `PushAck` bodies that fit a
//! room; the push room (`push.rs`) puts them in packets.

use std::net::SocketAddr;

use prost::encoding::encoded_len_varint;

use super::outbox::TAG;
use crate::wire::proto;

/// Push ids owed at most, over all peers: a driver that never asked for
/// its datagrams would otherwise grow the list without bound. Past it a
/// push is not acknowledged and its sender resends it (each batch of
/// reads is at most 64 datagrams, so this is never reached by the node's
/// driver).
const OWED_CAP: usize = 1024;

/// The acknowledgements one peer is owed.
#[derive(Debug)]
struct Owed {
    to: SocketAddr,
    /// The member at `to`, if known (its packets get the compact header).
    peer: Option<u64>,
    ids: Vec<u32>,
}

/// Acknowledgements owed, per peer address, in the order first owed.
#[derive(Debug, Default)]
pub(super) struct OwedAcks {
    owed: Vec<Owed>,
    total: usize,
}

impl OwedAcks {
    /// Owes `to` (the member `peer`, if known) an acknowledgement of push
    /// `id`; false (and nothing owed) past [`OWED_CAP`]. An id already
    /// owed (a resend read in the same batch) is owed once.
    pub fn owe(&mut self, to: SocketAddr, peer: Option<u64>, id: u32) -> bool {
        if self.total >= OWED_CAP {
            return false;
        }
        match self.owed.iter_mut().find(|o| o.to == to) {
            Some(o) if o.ids.contains(&id) => return true,
            Some(o) => {
                o.ids.push(id);
                o.peer = o.peer.or(peer);
            }
            None => self.owed.push(Owed {
                to,
                peer,
                ids: vec![id],
            }),
        }
        self.total += 1;
        true
    }

    /// Whether nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.owed.is_empty()
    }

    /// The first peer owed something: its address and member key.
    pub fn first(&self) -> Option<(SocketAddr, Option<u64>)> {
        self.owed.first().map(|o| (o.to, o.peer))
    }

    /// Forgets what `to` is owed (its packets cannot be built).
    pub fn forget(&mut self, to: SocketAddr) {
        if let Some(i) = self.owed.iter().position(|o| o.to == to) {
            self.total -= self.owed.remove(i).ids.len();
        }
    }

    /// Takes a `PushAck` for `to` of as many owed ids as fit in a message
    /// body of `room` bytes, oldest first; `None` if `to` is owed nothing
    /// or not even one id fits. Ids that do not fit stay owed.
    pub fn take(&mut self, to: SocketAddr, room: usize) -> Option<proto::PushAck> {
        let i = self.owed.iter().position(|o| o.to == to)?;
        let ids = &self.owed[i].ids;
        let n = fitting(ids, room);
        if n == 0 {
            return None;
        }
        let ack = proto::PushAck {
            push_id: ids[0],
            more_push_ids: ids[1..n].to_vec(),
        };
        self.total -= n;
        if n == ids.len() {
            self.owed.remove(i);
            if self.owed.is_empty() {
                // Owed briefly, at most a batch at a time: keep nothing.
                self.owed = Vec::new();
            }
        } else {
            self.owed[i].ids.drain(..n);
        }
        Some(ack)
    }
}

/// How many of `ids`, from the first, a `PushAck` body of at most `room`
/// bytes holds: the first in `push_id`, the rest packed in
/// `more_push_ids`.
fn fitting(ids: &[u32], room: usize) -> usize {
    let Some(&first) = ids.first() else { return 0 };
    let head = TAG + encoded_len_varint(u64::from(first));
    if head > room {
        return 0;
    }
    let mut packed = 0;
    let mut n = 1;
    for &id in &ids[1..] {
        let more = packed + encoded_len_varint(u64::from(id));
        if head + TAG + encoded_len_varint(more as u64) + more > room {
            break;
        }
        packed = more;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn owed_ids_merge_per_peer_and_a_repeat_is_owed_once() {
        let mut acks = OwedAcks::default();
        assert!(acks.owe(addr(1), Some(7), 10));
        assert!(acks.owe(addr(2), None, 20));
        assert!(acks.owe(addr(1), None, 11));
        assert!(acks.owe(addr(1), None, 10));
        assert_eq!(acks.first(), Some((addr(1), Some(7))));

        let a = acks.take(addr(1), 100).unwrap();
        assert_eq!((a.push_id, a.more_push_ids), (10, vec![11]));
        assert_eq!(acks.first(), Some((addr(2), None)));
        let b = acks.take(addr(2), 100).unwrap();
        assert_eq!((b.push_id, b.more_push_ids), (20, vec![]));
        assert!(acks.is_empty());
        assert!(acks.take(addr(1), 100).is_none());
    }

    #[test]
    fn a_take_fits_its_room_exactly_and_leaves_the_rest_owed() {
        // Each id a four-byte varint: one needs a five-byte body.
        let ids: Vec<u32> = (0..300).map(|i| i * 40_000 + 2_100_000).collect();
        for room in [0, 1, 4, 5, 6, 9, 10, 50, 127, 128, 129, 500, 2_000] {
            let mut acks = OwedAcks::default();
            for &id in &ids {
                acks.owe(addr(1), None, id);
            }
            let mut got = Vec::new();
            while let Some(a) = acks.take(addr(1), room) {
                let len = a.encoded_len();
                assert!(len <= room, "room {room}: {len} bytes");
                // Not one id more would have fitted.
                if let Some(&next) = ids.get(got.len() + 1 + a.more_push_ids.len()) {
                    let mut bigger = a.clone();
                    bigger.more_push_ids.push(next);
                    assert!(bigger.encoded_len() > room, "room {room}: one more fits");
                }
                got.push(a.push_id);
                got.extend(&a.more_push_ids);
            }
            if room >= 5 {
                assert_eq!(got, ids, "room {room}: every id, in order");
                assert!(acks.is_empty());
            } else {
                assert!(got.is_empty() && !acks.is_empty(), "room {room}");
            }
        }
    }

    #[test]
    fn nothing_more_is_owed_past_the_cap() {
        let mut acks = OwedAcks::default();
        for id in 0..OWED_CAP as u32 {
            assert!(acks.owe(addr(id as u16 % 7), None, id));
        }
        assert!(!acks.owe(addr(1), None, u32::MAX - 1));
        acks.forget(addr(1));
        assert!(acks.owe(addr(1), None, u32::MAX - 1), "room again");
    }
}
