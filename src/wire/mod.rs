//! The wire: protobuf messages generated from `proto/`, a decoder with size
//! caps, and the [`Packer`] that fills one packet up to a byte budget.
//!
//! Every datagram is one [`proto::Packet`]. Decoding never trusts a length
//! field: prost checks each length against the bytes actually present before
//! it allocates, the datagram itself is refused above [`MAX_PACKET`], and
//! [`decode`] then checks the protocol version, the cluster id and the
//! per-field limits in [`Limits`] before the engine sees anything.
//!
//! The one other message, [`proto::Announce`] (LAN discovery, sent to its
//! own port), has its own capped decoder, [`decode_announce`].
//! [`sender_name`] reads only a packet's claimed sender, for a transport
//! that checks it against the peer it authenticated.

mod announce;
mod packer;
mod sender;

pub use announce::{MAX_ANNOUNCE, decode_announce, encode_announce};
pub use packer::{Packer, PackerError};
pub use sender::sender_name;

use bytes::Buf;
use prost::Message as _;

/// Generated protobuf types of the `scuttlewire.v1` package.
#[allow(missing_docs)]
#[allow(clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/scuttlewire.v1.rs"));
}

/// The protocol version this build speaks (`Packet.version`).
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest datagram [`decode`] looks at; anything larger is refused
/// unread. The same limit every transport enforces: one definition.
pub use crate::MAX_DATAGRAM as MAX_PACKET;

/// Caps on what one decoded packet may contain. Anything beyond them is
/// treated as hostile and the whole packet is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest node name, in bytes.
    pub max_name_len: usize,
    /// Longest key, in bytes.
    pub max_key_len: usize,
    /// Longest value, in bytes.
    pub max_value_len: usize,
    /// Most messages in one packet.
    pub max_messages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_name_len: 255,
            max_key_len: 1024,
            max_value_len: MAX_PACKET,
            max_messages: 1024,
        }
    }
}

/// Why a datagram was dropped by [`decode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The datagram is larger than [`MAX_PACKET`].
    #[error("datagram of {0} bytes is over the {MAX_PACKET}-byte cap")]
    Oversize(usize),
    /// The datagram is empty.
    #[error("empty datagram")]
    Empty,
    /// The bytes are not a valid protobuf `Packet`.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// The packet speaks another protocol version.
    #[error("protocol version {0} is not {PROTOCOL_VERSION}")]
    Version(u32),
    /// The packet belongs to another cluster.
    #[error("cluster id {theirs:#010x} is not ours ({ours:#010x})")]
    Cluster {
        /// The id in the packet.
        theirs: u32,
        /// Our cluster id.
        ours: u32,
    },
    /// A field breaks one of the [`Limits`] or an invariant of the schema.
    #[error("invalid packet: {0}")]
    Invalid(&'static str),
}

/// Decodes one datagram addressed to cluster `cluster_id` and checks it
/// against `limits`. Never panics, whatever the bytes.
pub fn decode(
    mut bytes: impl Buf,
    cluster_id: u32,
    limits: &Limits,
) -> Result<proto::Packet, DecodeError> {
    let len = bytes.remaining();
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    if len > MAX_PACKET {
        return Err(DecodeError::Oversize(len));
    }
    let packet =
        proto::Packet::decode(&mut bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if packet.version != PROTOCOL_VERSION {
        return Err(DecodeError::Version(packet.version));
    }
    if packet.cluster != cluster_id {
        return Err(DecodeError::Cluster {
            theirs: packet.cluster,
            ours: cluster_id,
        });
    }
    validate(&packet, limits)?;
    Ok(packet)
}

fn validate(p: &proto::Packet, limits: &Limits) -> Result<(), DecodeError> {
    match &p.from {
        Some(from) => check_node(from, limits)?,
        None if p.from_key != 0 => {}
        None => return Err(DecodeError::Invalid("no sender")),
    }
    if p.messages.is_empty() {
        return Err(DecodeError::Invalid("no messages"));
    }
    if p.messages.len() > limits.max_messages {
        return Err(DecodeError::Invalid("too many messages"));
    }
    use proto::message::Kind;
    for m in &p.messages {
        match m
            .kind
            .as_ref()
            .ok_or(DecodeError::Invalid("empty message"))?
        {
            Kind::Syn(s) => check_digest(s.digest.as_ref())?,
            Kind::SynAck(s) => {
                check_digest(s.digest.as_ref())?;
                check_deltas(&s.deltas, limits)?;
            }
            Kind::Ack(a) => check_deltas(&a.deltas, limits)?,
            Kind::PingReq(r) => check_node(
                r.target.as_ref().ok_or(DecodeError::Invalid("no target"))?,
                limits,
            )?,
            Kind::Member(u) => {
                check_node(
                    u.node.as_ref().ok_or(DecodeError::Invalid("no member"))?,
                    limits,
                )?;
                proto::MemberState::try_from(u.state)
                    .map_err(|_| DecodeError::Invalid("unknown member state"))?;
                if u.from.len() > limits.max_name_len {
                    return Err(DecodeError::Invalid("suspector name too long"));
                }
            }
            Kind::Broadcast(b) => {
                if b.origin.len() > limits.max_name_len {
                    return Err(DecodeError::Invalid("origin name too long"));
                }
            }
            Kind::Ping(_) | Kind::PingAck(_) | Kind::PingNack(_) | Kind::PushAck(_) => {}
        }
    }
    Ok(())
}

fn check_node(n: &proto::NodeId, limits: &Limits) -> Result<(), DecodeError> {
    if n.name.is_empty() || n.name.len() > limits.max_name_len {
        return Err(DecodeError::Invalid("node name empty or too long"));
    }
    if n.ip.len() != 4 && n.ip.len() != 16 {
        return Err(DecodeError::Invalid("address is neither IPv4 nor IPv6"));
    }
    if n.port > u32::from(u16::MAX) {
        return Err(DecodeError::Invalid("port out of range"));
    }
    Ok(())
}

fn check_digest(d: Option<&proto::Digest>) -> Result<(), DecodeError> {
    let d = d.ok_or(DecodeError::Invalid("no digest"))?;
    if d.nodes.len() != d.max_versions.len() {
        return Err(DecodeError::Invalid("digest arrays differ in length"));
    }
    if !d.last_gc_versions.is_empty() && d.last_gc_versions.len() != d.nodes.len() {
        return Err(DecodeError::Invalid("digest gc array differs in length"));
    }
    if !d.liveness.is_empty() && d.liveness.len() != d.nodes.len() {
        return Err(DecodeError::Invalid(
            "digest liveness array differs in length",
        ));
    }
    Ok(())
}

fn check_deltas(deltas: &[proto::NodeDelta], limits: &Limits) -> Result<(), DecodeError> {
    for d in deltas {
        check_node(
            d.node
                .as_ref()
                .ok_or(DecodeError::Invalid("delta without node"))?,
            limits,
        )?;
        if d.to_version < d.from_version {
            return Err(DecodeError::Invalid("delta range reversed"));
        }
        let mut prev = d.from_version;
        for kv in &d.entries {
            if kv.key.len() > limits.max_key_len || kv.value.len() > limits.max_value_len {
                return Err(DecodeError::Invalid("key or value too long"));
            }
            if kv.version <= prev || kv.version > d.to_version {
                return Err(DecodeError::Invalid("delta entries out of order or range"));
            }
            prev = kv.version;
        }
    }
    Ok(())
}

/// FNV-1a, 64 bits: a small, stable, dependency-free hash for ids that must
/// be equal on every node (cluster id, node keys). Not a defence against
/// an adversary; authenticity comes from the seal layer.
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separate parts so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The cluster id carried by every packet: the low 32 bits of FNV-1a-64
/// over the cluster name.
pub fn cluster_id(cluster: &str) -> u32 {
    fnv1a64(&[cluster.as_bytes()]) as u32
}

/// The key naming one generation of one node in digests.
pub fn node_key(name: &str, generation: u64) -> u64 {
    fnv1a64(&[name.as_bytes(), &generation.to_le_bytes()])
}

/// Bytes a length-delimited field of `len` bytes costs with a one-byte tag.
pub fn field_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

#[cfg(test)]
pub(crate) mod tests;
