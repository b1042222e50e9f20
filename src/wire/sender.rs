//! The name a packet claims for its sender, read without decoding the rest.
//!
//! A transport that knows who is at the other end of a connection (QUIC
//! with a certificate per node) checks every datagram's claimed sender
//! against it before the engine sees the datagram. Decoding the whole
//! packet for that would double the decoding work; [`sender_name`] reads
//! only the `from` field and skips everything else unread.

use prost::Message as _;

/// The fields of [`proto::Packet`](super::proto::Packet) that
/// [`sender_name`] reads, under the same tags. Every other field is
/// skipped, so anything the full decoder accepts this accepts too.
#[derive(Clone, PartialEq, prost::Message)]
struct Header {
    #[prost(message, optional, tag = "3")]
    from: Option<Sender>,
}

/// The field of [`proto::NodeId`](super::proto::NodeId) that
/// [`sender_name`] reads.
#[derive(Clone, PartialEq, prost::Message)]
struct Sender {
    #[prost(string, tag = "1")]
    name: String,
}

/// The name in a datagram's `Packet.from`, the field the engine learns its
/// sender from; `None` when the bytes are not a protobuf `Packet` or name
/// no sender by name (a compact header, which names a member the receiver
/// already holds by its key; or an empty name, which the decoder refuses).
///
/// The same bytes decoded whole give the same name: both decoders merge a
/// repeated `from` field the protobuf way (the last `name` wins), and this
/// one refuses nothing the full one accepts. It checks nothing else
/// (version, cluster, limits): [`decode`](super::decode) does, later.
/// Never panics, whatever the bytes.
pub fn sender_name(bytes: &[u8]) -> Option<String> {
    if bytes.len() > super::MAX_PACKET {
        return None;
    }
    let name = Header::decode(bytes).ok()?.from?.name;
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto;

    fn packet(from: Option<&str>, from_key: u64) -> proto::Packet {
        proto::Packet {
            version: 1,
            cluster: 7,
            from: from.map(|name| proto::NodeId {
                name: name.to_owned(),
                generation: 3,
                ip: vec![127, 0, 0, 1].into(),
                port: 7946,
            }),
            from_key,
            messages: vec![proto::Message {
                kind: Some(proto::message::Kind::Ping(proto::Ping {
                    seq: 1,
                    target: "node-2".to_owned(),
                    fingerprint: 9,
                })),
            }],
        }
    }

    #[test]
    fn reads_the_full_sender_name_only() {
        let named = packet(Some("node-1"), 0).encode_to_vec();
        assert_eq!(sender_name(&named).as_deref(), Some("node-1"));
        let compact = packet(None, 42).encode_to_vec();
        assert_eq!(sender_name(&compact), None);
        let empty = packet(Some(""), 0).encode_to_vec();
        assert_eq!(sender_name(&empty), None);
        assert_eq!(sender_name(b"\xff\xff\xff garbage"), None);
        assert_eq!(sender_name(b""), None);
    }

    /// Two `from` fields: the protobuf merge keeps the last name, and so
    /// does the full decoder, so a forger cannot show the check one name
    /// and the engine another.
    #[test]
    fn a_repeated_sender_reads_as_the_full_decoder_reads_it() {
        let mut bytes = packet(Some("node-3"), 0).encode_to_vec();
        bytes.extend(packet(Some("node-1"), 0).encode_to_vec());
        let full = proto::Packet::decode(bytes.as_slice()).unwrap();
        assert_eq!(full.from.unwrap().name, "node-1");
        assert_eq!(sender_name(&bytes).as_deref(), Some("node-1"));
    }

    proptest::proptest! {
        /// Whatever the full decoder makes of some bytes, this reads the
        /// same sender name from them.
        #[test]
        fn agrees_with_the_full_decoder(
            name in "[a-z0-9-]{0,12}",
            flips in proptest::collection::vec((0usize..64, 0u8..=255), 0..4),
            cut in 0usize..80,
        ) {
            let mut bytes = packet(Some(&name), 0).encode_to_vec();
            for (at, byte) in flips {
                if let Some(b) = bytes.get_mut(at) {
                    *b = byte;
                }
            }
            bytes.truncate(cut.max(1));
            if let Ok(full) = proto::Packet::decode(bytes.as_slice()) {
                let expected = full.from.map(|f| f.name).filter(|n| !n.is_empty());
                proptest::prop_assert_eq!(sender_name(&bytes), expected);
            }
        }
    }
}
