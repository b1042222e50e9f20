//! The outbox: every packet the engine sends is started, packed and
//! queued here, under the transport's byte budget (ARCHITECTURE rule 2).
//! It owns the budget and every constant of the byte arithmetic the rooms
//! size their messages with, so a room asks "how much room is left for my
//! message body" and never adds up tags and length prefixes itself.
//!
//! The sizes are upper bounds derived from the protobuf encoding: a
//! message a room built within [`Outbox::body_room`] always fits, so
//! nothing is trimmed after the fact. If one ever did not (a bug), it is
//! dropped, logged, and a debug build panics.

use std::collections::VecDeque;
use std::net::SocketAddr;

use prost::Message as _;

use bytes::Bytes;

use super::metrics::KindCounts;
use super::node_id::NodeId;
use crate::identity::SIGNATURE_LEN;
use crate::wire::{self, Packer, PackerError, field_len, proto};

/// A datagram the engine wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    /// The encoded packet; never longer than the engine's budget.
    pub payload: Bytes,
}

/// Bytes of a field's tag: every field number of the schema is below 16.
pub(super) const TAG: usize = 1;

/// Most bytes of a length prefix: no packet is longer than
/// [`wire::MAX_PACKET`], whose length is a three-byte varint.
pub(super) const LEN: usize = varint_len(wire::MAX_PACKET as u64);

/// Bytes around the body of a length-delimited field: tag and length.
pub(super) const FIELD: usize = TAG + LEN;

/// Bytes around a message body in a packet: the packet's `messages` field
/// and the message's `oneof` field. (The packer's own room already counts
/// the outer one, so this is conservative by one field.)
pub(super) const NESTING: usize = 2 * FIELD;

/// A `bool` field set to true (`follow_up`): tag and one byte.
pub(super) const FLAG: usize = TAG + 1;

/// Bytes around one state entry in the smallest packet that carries it:
/// the message nesting and the delta's field in its `Ack`.
const ENTRY_NESTING: usize = NESTING + FIELD;

/// Slack for a relayed delta whose node has a longer name than ours (its
/// header carries that node's id, not ours).
const RELAY_SLACK: usize = 64;

/// Room below which no delta is worth starting (its header alone takes
/// about this much), and the least a budget must leave for an entry.
pub(super) const MIN_DELTA: usize = 16;

/// No rumor is smaller than this, encoded, with its field header.
pub(super) const MIN_RUMOR: usize = 12;

/// Least room worth a lazy announcement: a digest's fixed part and a
/// couple of lines, in a `Syn` with its flag.
pub(super) const MIN_ANNOUNCE: usize = DIGEST_FIXED + 2 * FIELD + FLAG + 24;

/// Encoded bytes of a digest's fixed part (fingerprint, count, flag, the
/// window's two keys and the four packed-array headers), rounded up.
pub(super) const DIGEST_FIXED: usize = 9 + 6 + 2 + 2 * 9 + 4 * FIELD;

/// Bytes of the varint encoding of `v`, at compile time.
const fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// What the outbox has sent since the engine started.
#[derive(Debug, Default, Clone)]
pub(super) struct Sent {
    pub packets: u64,
    pub bytes: u64,
    pub largest: usize,
    pub kinds: KindCounts,
}

/// Packs and queues the engine's datagrams.
#[derive(Debug)]
pub(super) struct Outbox {
    me: proto::NodeId,
    my_key: u64,
    cluster: u32,
    budget: usize,
    /// Bytes of the smallest packet that carries one entry, minus the
    /// entry: `budget - overhead` is the largest entry.
    overhead: usize,
    /// Whether entries carry signatures (see [`Outbox::new`]).
    signed: bool,
    queue: VecDeque<Transmit>,
    sent: Sent,
}

impl Outbox {
    /// The outbox of node `me` in the cluster with id `cluster`, packing
    /// under `budget` bytes; an error if the budget cannot hold a packet
    /// carrying one small entry.
    /// With `signed`, every delta carries the owner's signed head and every
    /// entry its signature, and the largest entry shrinks by both.
    pub fn new(
        me: &NodeId,
        cluster: u32,
        budget: usize,
        signed: bool,
    ) -> Result<Outbox, PackerError> {
        let header = proto::Packet {
            version: wire::PROTOCOL_VERSION,
            cluster,
            from: Some(me.to_proto()),
            messages: vec![],
            from_key: 0,
        };
        let delta_header = proto::NodeDelta {
            node: Some(me.to_proto()),
            from_version: u64::MAX,
            to_version: u64::MAX,
            last_gc_version: u64::MAX,
            entries: vec![],
            head_version: if signed { u64::MAX } else { 0 },
            head_signature: if signed {
                bytes::Bytes::from_static(&[0; SIGNATURE_LEN])
            } else {
                bytes::Bytes::new()
            },
        }
        .encoded_len();
        let overhead = header.encoded_len() + ENTRY_NESTING + delta_header + RELAY_SLACK;
        if overhead + MIN_DELTA > budget {
            return Err(PackerError::BudgetTooSmall {
                budget,
                header: overhead + MIN_DELTA,
            });
        }
        Ok(Outbox {
            me: me.to_proto(),
            my_key: me.key(),
            cluster,
            budget,
            overhead,
            signed,
            queue: VecDeque::new(),
            sent: Sent::default(),
        })
    }

    /// The byte budget every packet is packed under.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// The largest encoded entry (or broadcast) one packet carries.
    pub fn max_entry(&self) -> usize {
        self.budget - self.overhead
    }

    /// The encoded size of a state entry with a key and a value of these
    /// lengths, at the largest version, as a field of its delta (with its
    /// signature, when signed).
    pub fn entry_len(&self, key_len: usize, value_len: usize) -> usize {
        let signature = if self.signed {
            field_len(SIGNATURE_LEN)
        } else {
            0
        };
        let kv_len = field_len(key_len)
            + field_len(value_len)
            + TAG
            + prost::encoding::encoded_len_varint(u64::MAX)
            + signature;
        field_len(kv_len)
    }

    /// Lowers the budget to `max` (see `Engine::shrink_budget`).
    pub fn shrink(&mut self, max: usize) -> bool {
        if max >= self.budget || max < self.overhead + MIN_DELTA {
            return false;
        }
        self.budget = max;
        true
    }

    /// Starts a packet: with our key alone in the header if `compact`
    /// (the peer knows our full id), else with our full id.
    pub fn start(&self, compact: bool) -> Option<Packer> {
        let header = proto::Packet {
            version: wire::PROTOCOL_VERSION,
            cluster: self.cluster,
            from: (!compact).then(|| self.me.clone()),
            messages: vec![],
            from_key: if compact { self.my_key } else { 0 },
        };
        Packer::new(header, self.budget).ok()
    }

    /// The room left in `p` for the body of one more message (a `Syn`,
    /// `SynAck` or `Ack` body, say).
    pub fn body_room(p: &Packer) -> usize {
        p.room().saturating_sub(NESTING)
    }

    /// Adds `msg` to `p`. It must fit: rooms size their messages with
    /// [`Outbox::body_room`].
    pub fn add(&mut self, p: &mut Packer, msg: proto::Message) {
        if !p.fits(&msg) {
            debug_assert!(false, "a message was sized over its room");
            tracing::warn!(
                budget = p.budget(),
                "message does not fit its packet; dropped"
            );
            return;
        }
        if let Some(k) = &msg.kind {
            self.sent.kinds.count(k);
        }
        // Cannot fail: `fits` said so.
        let _ = p.push(msg);
    }

    /// The bytes `p` has left, for piggybacked rumors (each sized with
    /// its own field header).
    pub fn spare(p: &Packer) -> usize {
        p.budget() - p.len()
    }

    /// Queues `p` for `to`, counting it; an empty packet is not sent.
    pub fn queue(&mut self, p: Packer, to: SocketAddr) {
        let Some(payload) = p.finish() else { return };
        debug_assert!(payload.len() <= self.budget);
        self.sent.packets += 1;
        self.sent.bytes += payload.len() as u64;
        self.sent.largest = self.sent.largest.max(payload.len());
        self.queue.push_back(Transmit { to, payload });
    }

    /// How many datagrams are queued.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Moves the datagrams queued after the first `from` ahead of those,
    /// in their order (acknowledgements overtake what is queued).
    pub fn move_to_front(&mut self, from: usize) {
        if from == 0 || from >= self.queue.len() {
            return;
        }
        self.queue.rotate_left(from);
    }

    /// The next datagram to send.
    pub fn poll(&mut self) -> Option<Transmit> {
        let t = self.queue.pop_front();
        super::release_if_drained(&mut self.queue);
        t
    }

    /// The queue's allocated capacity, in datagrams.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// What was sent so far.
    pub fn sent(&self) -> &Sent {
        &self.sent
    }
}

#[cfg(test)]
mod tests;
