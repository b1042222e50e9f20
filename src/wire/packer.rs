//! The packer: fills one packet with messages, in priority order, without
//! ever exceeding the byte budget the transport declares.

use bytes::Bytes;
use prost::Message as _;

use super::field_len;
use super::proto::{Message, Packet};

/// Why a [`Packer`] could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackerError {
    /// The packet header alone does not fit the budget.
    #[error("budget of {budget} bytes cannot hold a {header}-byte packet header")]
    BudgetTooSmall {
        /// The budget given.
        budget: usize,
        /// Size of the header alone.
        header: usize,
    },
}

/// Fills one [`Packet`] with messages up to `budget` encoded bytes.
///
/// Messages are offered highest priority first; [`Packer::push`] hands a
/// message back when it does not fit, so the caller knows exactly what was
/// left out (and may try a smaller one, or keep it for the next packet).
/// The size accounting is exact: `finish()` returns at most `budget` bytes.
#[derive(Debug)]
pub struct Packer {
    packet: Packet,
    size: usize,
    budget: usize,
}

impl Packer {
    /// Starts a packet with `header` (its `messages` are ignored) under
    /// `budget` bytes.
    pub fn new(mut header: Packet, budget: usize) -> Result<Packer, PackerError> {
        header.messages.clear();
        let size = header.encoded_len();
        if size >= budget {
            return Err(PackerError::BudgetTooSmall {
                budget,
                header: size,
            });
        }
        Ok(Packer {
            packet: header,
            size,
            budget,
        })
    }

    /// Adds `msg` if it fits; otherwise returns it unchanged.
    // Handing the message back (not a boxed copy) is the point: the caller
    // keeps it for the next packet without an allocation.
    #[allow(clippy::result_large_err)]
    pub fn push(&mut self, msg: Message) -> Result<(), Message> {
        let cost = field_len(msg.encoded_len());
        if self.size + cost > self.budget {
            return Err(msg);
        }
        self.size += cost;
        self.packet.messages.push(msg);
        Ok(())
    }

    /// Whether `msg` would fit.
    pub fn fits(&self, msg: &Message) -> bool {
        self.size + field_len(msg.encoded_len()) <= self.budget
    }

    /// The largest encoded message body that still fits, in bytes.
    pub fn room(&self) -> usize {
        room_for(self.budget - self.size)
    }

    /// Bytes used so far, header included.
    pub fn len(&self) -> usize {
        self.size
    }

    /// How many messages were added.
    pub fn messages(&self) -> usize {
        self.packet.messages.len()
    }

    /// Whether no message has been added yet.
    pub fn is_empty(&self) -> bool {
        self.packet.messages.is_empty()
    }

    /// The budget this packer fills.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Encodes the packet, or `None` if it holds no message.
    pub fn finish(self) -> Option<Bytes> {
        if self.packet.messages.is_empty() {
            return None;
        }
        let bytes = self.packet.encode_to_vec();
        debug_assert!(bytes.len() <= self.budget);
        debug_assert_eq!(bytes.len(), self.size);
        Some(Bytes::from(bytes))
    }
}

/// The largest body `L` such that a length-delimited field holding it
/// (one tag byte, the varint length, the body) fits in `avail` bytes.
pub fn room_for(avail: usize) -> usize {
    let mut body = avail.saturating_sub(1);
    while body > 0 && field_len(body) > avail {
        body -= 1;
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto::{Ping, message::Kind};

    fn header() -> Packet {
        Packet {
            version: 1,
            cluster: 7,
            from: Some(crate::wire::proto::NodeId {
                name: "a".into(),
                generation: 1,
                ip: vec![127, 0, 0, 1].into(),
                port: 7946,
            }),
            messages: vec![],
            from_key: 0,
        }
    }

    fn ping(seq: u64) -> Message {
        Message {
            kind: Some(Kind::Ping(Ping {
                seq,
                target: "target-node".into(),
                fingerprint: 0,
            })),
        }
    }

    #[test]
    fn fills_up_to_the_budget_and_returns_what_does_not_fit() {
        for budget in 40..200 {
            let Ok(mut p) = Packer::new(header(), budget) else {
                continue;
            };
            let mut left_out = 0;
            for seq in 0..20 {
                if p.push(ping(seq)).is_err() {
                    left_out += 1;
                }
            }
            let kept = 20 - left_out;
            match p.finish() {
                Some(bytes) => {
                    assert!(bytes.len() <= budget, "{} > {budget}", bytes.len());
                    let back = Packet::decode(bytes).unwrap();
                    assert_eq!(back.messages.len(), kept);
                }
                None => assert_eq!(kept, 0),
            }
        }
    }

    #[test]
    fn room_is_exact() {
        for avail in 0..40_000 {
            let r = room_for(avail);
            if r > 0 {
                assert!(field_len(r) <= avail);
            }
            assert!(field_len(r + 1) > avail || avail == 0);
        }
    }

    #[test]
    fn refuses_a_budget_smaller_than_the_header() {
        assert!(matches!(
            Packer::new(header(), 5),
            Err(PackerError::BudgetTooSmall { .. })
        ));
    }
}
