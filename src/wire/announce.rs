//! Discovery announcements ([`proto::Announce`]): the one message that is
//! not a [`proto::Packet`]. A node with LAN discovery on sends it to a
//! multicast group, and every node that hears it decodes it here, with the
//! same care as a packet: a size cap before anything is read, then the
//! version, the cluster id and the announced identity are checked.

use std::net::IpAddr;

use bytes::{Buf, Bytes};
use prost::Message as _;

use super::{DecodeError, Limits, PROTOCOL_VERSION, check_node, proto};

/// Largest announcement [`decode_announce`] reads, in bytes (plaintext,
/// before any seal). The largest valid one, with a 255-byte name and an
/// IPv6 address, is 301 bytes; a typical one is 30 to 60.
pub const MAX_ANNOUNCE: usize = 512;

/// The announcement of `node` in cluster `cluster_id`, encoded.
pub fn encode_announce(cluster_id: u32, node: proto::NodeId) -> Bytes {
    proto::Announce {
        version: PROTOCOL_VERSION,
        cluster: cluster_id,
        node: Some(node),
    }
    .encode_to_vec()
    .into()
}

/// Decodes one announcement addressed to cluster `cluster_id` and checks
/// the announced node against `limits`. Never panics, whatever the bytes.
///
/// Refused: empty or over [`MAX_ANNOUNCE`] bytes (unread), not a protobuf
/// `Announce`, another protocol version, another cluster
/// ([`DecodeError::Cluster`], so a caller can count foreign clusters
/// apart from garbage), no node, or a node whose name breaks `limits` or
/// whose address no peer could gossip with (unspecified, multicast,
/// broadcast, port 0).
pub fn decode_announce(
    mut bytes: impl Buf,
    cluster_id: u32,
    limits: &Limits,
) -> Result<proto::Announce, DecodeError> {
    let len = bytes.remaining();
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    if len > MAX_ANNOUNCE {
        return Err(DecodeError::Invalid("announcement over the 512-byte cap"));
    }
    let announce =
        proto::Announce::decode(&mut bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if announce.version != PROTOCOL_VERSION {
        return Err(DecodeError::Version(announce.version));
    }
    if announce.cluster != cluster_id {
        return Err(DecodeError::Cluster {
            theirs: announce.cluster,
            ours: cluster_id,
        });
    }
    let node = announce
        .node
        .as_ref()
        .ok_or(DecodeError::Invalid("announcement without a node"))?;
    check_node(node, limits)?;
    if node.port == 0 {
        return Err(DecodeError::Invalid("announced port is 0"));
    }
    let ip = match node.ip.len() {
        4 => <[u8; 4]>::try_from(&node.ip[..]).map(IpAddr::from).ok(),
        _ => <[u8; 16]>::try_from(&node.ip[..]).map(IpAddr::from).ok(),
    };
    let reachable = ip.is_some_and(|ip| {
        !ip.is_unspecified()
            && !ip.is_multicast()
            && ip != IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
    });
    if !reachable {
        return Err(DecodeError::Invalid(
            "announced address is unspecified, multicast or broadcast",
        ));
    }
    Ok(announce)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::cluster_id;
    use crate::wire::tests::node_id;

    const CLUSTER: u32 = 0x5eed_0002;

    fn node(ip: &[u8], port: u32) -> proto::NodeId {
        proto::NodeId {
            name: "node-1".into(),
            generation: 1_700_000_000_000,
            ip: Bytes::copy_from_slice(ip),
            port,
        }
    }

    fn decode(bytes: &[u8]) -> Result<proto::Announce, DecodeError> {
        decode_announce(bytes, CLUSTER, &Limits::default())
    }

    /// Whether `n` names an address a peer could gossip with.
    fn gossipable(n: &proto::NodeId) -> bool {
        let ip: Option<IpAddr> = match n.ip.len() {
            4 => <[u8; 4]>::try_from(&n.ip[..]).ok().map(IpAddr::from),
            _ => <[u8; 16]>::try_from(&n.ip[..]).ok().map(IpAddr::from),
        };
        n.port != 0
            && ip.is_some_and(|ip| {
                !ip.is_unspecified() && !ip.is_multicast() && ip != IpAddr::from([255; 4])
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn decode_inverts_encode(n in node_id().prop_filter("gossipable", gossipable), cluster in any::<u32>()) {
            let bytes = encode_announce(cluster, n.clone());
            prop_assert!(bytes.len() <= MAX_ANNOUNCE);
            let back = decode_announce(&bytes[..], cluster, &Limits::default());
            prop_assert_eq!(back.map(|a| a.node), Ok(Some(n)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024), cluster in any::<u32>()) {
            let _ = decode_announce(&bytes[..], cluster, &Limits::default());
        }

        #[test]
        fn edited_announcements_never_panic_and_what_passes_is_valid(
            n in node_id(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encode_announce(CLUSTER, n).to_vec();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            if let Ok(a) = decode(&bytes) {
                prop_assert_eq!(a.version, PROTOCOL_VERSION);
                prop_assert_eq!(a.cluster, CLUSTER);
                prop_assert!(a.node.as_ref().is_some_and(gossipable));
            }
        }
    }

    #[test]
    fn a_typical_announcement_is_small() {
        let ipv4 = encode_announce(cluster_id("scuttlewire"), node(&[10, 0, 0, 1], 7946));
        let ipv6 = encode_announce(cluster_id("scuttlewire"), node(&[0xfd; 16], 7946));
        // version 2 + cluster 5 + node (2 + name 8 + generation 7 + ip 6|18 + port 3)
        assert_eq!(ipv4.len(), 33);
        assert_eq!(ipv6.len(), 45);
    }

    #[test]
    fn the_size_cap_is_checked_before_reading() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        let mut big = node(&[10, 0, 0, 1], 7946);
        big.name = "n".repeat(MAX_ANNOUNCE);
        let bytes = encode_announce(CLUSTER, big);
        assert!(bytes.len() > MAX_ANNOUNCE);
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::Invalid("announcement over the 512-byte cap"))
        );
        assert_eq!(MAX_ANNOUNCE, 512, "the refusal's text names the cap");
        // At the cap exactly the bytes are read (and here found malformed).
        assert!(matches!(
            decode(&[0xff; MAX_ANNOUNCE]),
            Err(DecodeError::Malformed(_))
        ));
        // The longest valid name fits well under the cap, over IPv6 too.
        let mut longest = node(&[0xfd; 16], 65_535);
        longest.name = "n".repeat(Limits::default().max_name_len);
        longest.generation = u64::MAX;
        let bytes = encode_announce(u32::MAX, longest);
        assert_eq!(bytes.len(), 301);
    }

    #[test]
    fn another_cluster_or_version_is_refused() {
        let bytes = encode_announce(cluster_id("theirs"), node(&[10, 0, 0, 1], 7946));
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::Cluster {
                theirs: cluster_id("theirs"),
                ours: CLUSTER
            })
        );
        let v2 = proto::Announce {
            version: 2,
            cluster: CLUSTER,
            node: Some(node(&[10, 0, 0, 1], 7946)),
        };
        assert_eq!(decode(&v2.encode_to_vec()), Err(DecodeError::Version(2)));
    }

    #[test]
    fn an_unusable_identity_is_refused() {
        let bad = [
            (
                proto::Announce {
                    version: PROTOCOL_VERSION,
                    cluster: CLUSTER,
                    node: None,
                },
                "announcement without a node",
            ),
            (announce(node(&[10, 0, 0, 1], 0)), "announced port is 0"),
            (
                announce(node(&[0, 0, 0, 0], 7946)),
                "announced address is unspecified, multicast or broadcast",
            ),
            (
                announce(node(&[239, 255, 77, 46], 7946)),
                "announced address is unspecified, multicast or broadcast",
            ),
            (
                announce(node(&[255; 4], 7946)),
                "announced address is unspecified, multicast or broadcast",
            ),
            (
                announce(node(&[10, 0, 1], 7946)),
                "address is neither IPv4 nor IPv6",
            ),
            (announce(node(&[10, 0, 0, 1], 70_000)), "port out of range"),
            (
                announce(proto::NodeId {
                    name: String::new(),
                    ..node(&[10, 0, 0, 1], 7946)
                }),
                "node name empty or too long",
            ),
        ];
        for (a, why) in bad {
            assert_eq!(
                decode(&a.encode_to_vec()),
                Err(DecodeError::Invalid(why)),
                "{a:?}"
            );
        }
    }

    fn announce(n: proto::NodeId) -> proto::Announce {
        proto::Announce {
            version: PROTOCOL_VERSION,
            cluster: CLUSTER,
            node: Some(n),
        }
    }

    #[test]
    fn packets_and_announcements_never_pass_for_each_other() {
        // A packet sent to the discovery port: its sender is field 3, not
        // 15, so it is an announcement without a node.
        let packet = proto::Packet {
            version: PROTOCOL_VERSION,
            cluster: CLUSTER,
            from: Some(node(&[10, 0, 0, 1], 7946)),
            messages: vec![proto::Message {
                kind: Some(proto::message::Kind::Ping(proto::Ping::default())),
            }],
            from_key: 0,
        };
        assert_eq!(
            decode(&packet.encode_to_vec()),
            Err(DecodeError::Invalid("announcement without a node"))
        );
        // An announcement sent to a gossip port: no sender, no messages.
        let bytes = encode_announce(CLUSTER, node(&[10, 0, 0, 1], 7946));
        assert_eq!(
            crate::wire::decode(&bytes[..], CLUSTER, &Limits::default()),
            Err(DecodeError::Invalid("no sender"))
        );
    }
}
