//! Acknowledgements owed for tree pushes, merged per peer.
//!
//! A tree push is not acknowledged the moment it is read, but when the
//! engine next hands out its datagrams (`Engine::poll_transmit`): every
//! push read from one peer in between is acknowledged in one packet of
//! `PushAck`s, and a packet this node sends that peer in between carries
//! them instead of a datagram of their own. QUIC acknowledges a batch of
//! packets read together with one ACK frame the same way (RFC 9000
//! §13.2.2). Each push keeps its own `PushAck` message (a few bytes more
//! than one message listing every id), which every node already reads, so
//! a cluster mid-upgrade loses nothing. Nothing waits on a timer, so no
//! acknowledgement is later than the batch it was read in. A driver that
//! sends after every datagram acknowledges every push alone; the node's
//! driver does, except that before its timers run it reads the datagrams
//! already waiting (up to 64) and only then sends, so a busy node, behind
//! on its reads, sends fewer acknowledgements when datagrams cost most.
//! On a node that keeps up, pushes come one at a time from different
//! parents (each changed node's tree gives a member another parent) and
//! there is little to merge: see docs/PERFORMANCE.md.
//!
//! [`OwedAcks`] only keeps the ids; the push room (`push.rs`) puts them in
//! packets.

use std::net::SocketAddr;

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

    /// The ids `to` is owed, oldest first.
    pub fn owed_to(&self, to: SocketAddr) -> &[u32] {
        self.owed
            .iter()
            .find(|o| o.to == to)
            .map_or(&[], |o| o.ids.as_slice())
    }

    /// Notes that the first `n` ids owed to `to` were acknowledged (all of
    /// them, with `usize::MAX`: also how what cannot be sent is dropped).
    pub fn acknowledged(&mut self, to: SocketAddr, n: usize) {
        let Some(i) = self.owed.iter().position(|o| o.to == to) else {
            return;
        };
        let n = n.min(self.owed[i].ids.len());
        self.total -= n;
        if n == self.owed[i].ids.len() {
            self.owed.remove(i);
            if self.owed.is_empty() {
                // Owed briefly, at most a batch at a time: keep nothing.
                self.owed = Vec::new();
            }
        } else {
            self.owed[i].ids.drain(..n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn owed_ids_gather_per_peer_and_a_repeat_is_owed_once() {
        let mut acks = OwedAcks::default();
        assert!(acks.owe(addr(1), Some(7), 10));
        assert!(acks.owe(addr(2), None, 20));
        assert!(acks.owe(addr(1), None, 11));
        assert!(acks.owe(addr(1), None, 10));
        assert_eq!(acks.first(), Some((addr(1), Some(7))));
        assert_eq!(acks.owed_to(addr(1)), &[10, 11]);

        acks.acknowledged(addr(1), 1);
        assert_eq!(acks.owed_to(addr(1)), &[11], "the rest stays owed");
        acks.acknowledged(addr(1), 5);
        assert_eq!(acks.owed_to(addr(1)), &[] as &[u32]);
        assert_eq!(acks.first(), Some((addr(2), None)));
        acks.acknowledged(addr(2), 1);
        assert!(acks.is_empty());
        acks.acknowledged(addr(3), 1);
        assert!(acks.is_empty(), "nothing owed: nothing to note");
    }

    #[test]
    fn nothing_more_is_owed_past_the_cap() {
        let mut acks = OwedAcks::default();
        for id in 0..OWED_CAP as u32 {
            assert!(acks.owe(addr(id as u16 % 7), None, id));
        }
        assert!(!acks.owe(addr(1), None, u32::MAX - 1));
        acks.acknowledged(addr(1), usize::MAX);
        assert!(acks.owe(addr(1), None, u32::MAX - 1), "room again");
        let left: usize = (0..7).map(|p| acks.owed_to(addr(p)).len()).sum();
        assert_eq!(left, acks.total);
    }
}
