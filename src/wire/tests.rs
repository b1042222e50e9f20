//! Property and unit tests of the wire: encode/decode round trips, the
//! decoder's refusals, and the packer's exact size accounting.
//!
//! The strategies are `pub(crate)` so the engine's tests can throw valid
//! packets at `Engine::handle_packet` too.

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message as _;

use super::proto::{self, message::Kind};
use super::*;

// ----- strategies ---------------------------------------------------------

/// A valid node name: 1..=255 bytes of UTF-8 (mostly short ASCII, sometimes
/// multi-byte, sometimes at the length limit).
pub(crate) fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9.-]{1,24}",
        2 => "\\PC{1,40}",
        1 => "[a-z]{250,255}",
    ]
    .prop_filter("1..=255 bytes", |s| !s.is_empty() && s.len() <= 255)
}

/// A valid wire `NodeId`: 4 or 16 address bytes, a port that fits u16.
pub(crate) fn node_id() -> impl Strategy<Value = proto::NodeId> {
    let ip = prop_oneof![
        prop::collection::vec(any::<u8>(), 4),
        prop::collection::vec(any::<u8>(), 16),
    ];
    (name(), any::<u64>(), ip, 0..=u32::from(u16::MAX)).prop_map(|(name, generation, ip, port)| {
        proto::NodeId {
            name,
            generation,
            ip: Bytes::from(ip),
            port,
        }
    })
}

/// A valid digest: `nodes` and `max_versions` of equal length,
/// `last_gc_versions` and `liveness` empty or of that length too.
pub(crate) fn digest() -> impl Strategy<Value = proto::Digest> {
    (0usize..24).prop_flat_map(|n| {
        let optional = || prop_oneof![Just(Vec::new()), prop::collection::vec(any::<u64>(), n)];
        (
            (any::<u64>(), any::<u32>(), any::<bool>()),
            prop::collection::vec(any::<u64>(), n),
            prop::collection::vec(any::<u64>(), n),
            optional(),
            prop::collection::vec(any::<u64>(), 0..8),
            optional(),
        )
            .prop_map(
                |((fingerprint, node_count, complete), nodes, max_versions, gc, unknown, live)| {
                    proto::Digest {
                        fingerprint,
                        node_count,
                        complete,
                        nodes,
                        max_versions,
                        last_gc_versions: gc,
                        unknown,
                        liveness: live,
                        window_first: None,
                        window_last: None,
                    }
                },
            )
    })
}

/// A valid delta: entries strictly increasing in version within
/// `(from_version, to_version]`.
pub(crate) fn node_delta() -> impl Strategy<Value = proto::NodeDelta> {
    let entry = (
        "\\PC{0,12}",
        prop::collection::vec(any::<u8>(), 0..24),
        1u64..4,
        any::<bool>(),
    );
    (
        node_id(),
        prop_oneof![0u64..50, any::<u64>().prop_map(|v| v / 2)],
        prop::collection::vec(entry, 0..6),
        0u64..3,
        any::<u64>(),
    )
        .prop_map(|(node, from, raw, tail, last_gc_version)| {
            let mut version = from;
            let entries: Vec<proto::KeyValue> = raw
                .into_iter()
                .map(|(key, value, step, tombstone)| {
                    version += step;
                    proto::KeyValue {
                        signature: Default::default(),
                        key,
                        value: if tombstone {
                            Bytes::new()
                        } else {
                            Bytes::from(value)
                        },
                        version,
                        tombstone,
                    }
                })
                .collect();
            proto::NodeDelta {
                head_version: 0,
                head_signature: Default::default(),
                node: Some(node),
                from_version: from,
                to_version: version + tail,
                last_gc_version,
                entries,
            }
        })
}

fn deltas() -> impl Strategy<Value = Vec<proto::NodeDelta>> {
    prop::collection::vec(node_delta(), 0..4)
}

/// One message of any kind, valid.
pub(crate) fn message() -> impl Strategy<Value = proto::Message> {
    let kind = prop_oneof![
        (digest(), any::<bool>()).prop_map(|(d, follow_up)| Kind::Syn(proto::Syn {
            digest: Some(d),
            follow_up,
            announce: false,
        })),
        (digest(), deltas(), any::<bool>()).prop_map(|(d, deltas, follow_up)| {
            Kind::SynAck(proto::SynAck {
                digest: Some(d),
                deltas,
                follow_up,
            })
        }),
        (deltas(), any::<u32>())
            .prop_map(|(deltas, push_id)| Kind::Ack(proto::Ack { deltas, push_id })),
        any::<u32>().prop_map(|push_id| Kind::PushAck(proto::PushAck { push_id })),
        (any::<u64>(), "\\PC{0,20}", any::<u64>()).prop_map(|(seq, target, fingerprint)| {
            Kind::Ping(proto::Ping {
                seq,
                target,
                fingerprint,
            })
        }),
        (any::<u64>(), node_id(), any::<bool>()).prop_map(|(seq, t, nack)| {
            Kind::PingReq(proto::PingReq {
                seq,
                target: Some(t),
                nack,
            })
        }),
        (any::<u64>(), any::<u64>(), "\\PC{0,20}").prop_map(|(seq, fingerprint, target)| {
            Kind::PingAck(proto::PingAck {
                seq,
                fingerprint,
                target,
            })
        }),
        any::<u64>().prop_map(|seq| Kind::PingNack(proto::PingNack { seq })),
        (node_id(), any::<u64>(), 0i32..=3, "[a-z0-9]{0,20}").prop_map(
            |(n, incarnation, state, from)| {
                Kind::Member(proto::MemberUpdate {
                    signature: Default::default(),
                    node: Some(n),
                    incarnation,
                    state,
                    from,
                })
            }
        ),
        (
            "[a-z0-9]{0,20}",
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(origin, id, payload)| Kind::Broadcast(proto::Broadcast {
                origin,
                id,
                payload: Bytes::from(payload),
            })),
    ];
    kind.prop_map(|k| proto::Message { kind: Some(k) })
}

/// A valid packet of this protocol version with 1..8 messages.
pub(crate) fn packet() -> impl Strategy<Value = proto::Packet> {
    (
        any::<u32>(),
        node_id(),
        prop::collection::vec(message(), 1..8),
    )
        .prop_map(|(cluster, from, messages)| proto::Packet {
            version: PROTOCOL_VERSION,
            cluster,
            from: Some(from),
            from_key: 0,
            messages,
        })
}

// ----- helpers ------------------------------------------------------------

const CLUSTER: u32 = 0x5eed_0001;

fn sender() -> proto::NodeId {
    proto::NodeId {
        name: "node-a".into(),
        generation: 7,
        ip: Bytes::from_static(&[10, 0, 0, 1]),
        port: 7946,
    }
}

fn ping(seq: u64) -> proto::Message {
    proto::Message {
        kind: Some(Kind::Ping(proto::Ping {
            seq,
            target: "node-b".into(),
            fingerprint: 0,
        })),
    }
}

fn packet_with(messages: Vec<proto::Message>) -> proto::Packet {
    proto::Packet {
        version: PROTOCOL_VERSION,
        cluster: CLUSTER,
        from: Some(sender()),
        from_key: 0,
        messages,
    }
}

fn one(kind: Kind) -> proto::Packet {
    packet_with(vec![proto::Message { kind: Some(kind) }])
}

fn decode_packet(p: &proto::Packet) -> Result<proto::Packet, DecodeError> {
    decode(&p.encode_to_vec()[..], CLUSTER, &Limits::default())
}

fn invalid(p: &proto::Packet) -> &'static str {
    match decode_packet(p) {
        Err(DecodeError::Invalid(why)) => why,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn empty_digest() -> proto::Digest {
    proto::Digest::default()
}

fn delta(from: u64, to: u64, versions: &[u64]) -> proto::NodeDelta {
    proto::NodeDelta {
        head_version: 0,
        head_signature: Default::default(),
        node: Some(sender()),
        from_version: from,
        to_version: to,
        last_gc_version: 0,
        entries: versions
            .iter()
            .map(|v| proto::KeyValue {
                signature: Default::default(),
                key: format!("k{v}"),
                value: Bytes::from_static(b"v"),
                version: *v,
                tombstone: false,
            })
            .collect(),
    }
}

fn ack(deltas: Vec<proto::NodeDelta>) -> proto::Packet {
    one(Kind::Ack(proto::Ack { deltas, push_id: 0 }))
}

// ----- round trips and robustness -----------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_inverts_encode(p in packet()) {
        let bytes = p.encode_to_vec();
        prop_assert_eq!(bytes.len(), p.encoded_len());
        let back = decode(&bytes[..], p.cluster, &Limits::default());
        prop_assert_eq!(back, Ok(p));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), cluster in any::<u32>()) {
        let _ = decode(&bytes[..], cluster, &Limits::default());
    }

    #[test]
    fn damaged_packets_never_panic(
        p in packet(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        // Damage a valid packet, so that the decoder gets past the protobuf
        // layer often enough to exercise `validate` on odd contents.
        let mut bytes = p.encode_to_vec();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Ok(q) = decode(&bytes[..], p.cluster, &Limits::default()) {
            // Whatever got through holds the schema's invariants.
            prop_assert_eq!(q.version, PROTOCOL_VERSION);
            prop_assert!(!q.messages.is_empty());
        }
    }
}

// ----- each refusal, one by one --------------------------------------------

#[test]
fn an_empty_datagram_is_refused() {
    assert_eq!(
        decode(&[][..], CLUSTER, &Limits::default()),
        Err(DecodeError::Empty)
    );
}

#[test]
fn an_oversize_datagram_is_refused_unread() {
    // A valid packet padded past the cap is refused by size alone.
    let mut big = packet_with(vec![ping(1)]);
    big.messages.push(proto::Message {
        kind: Some(Kind::Broadcast(proto::Broadcast {
            origin: "o".into(),
            id: 1,
            payload: Bytes::from(vec![0u8; 64 * 1024]),
        })),
    });
    let bytes = big.encode_to_vec();
    assert!(bytes.len() > 64 * 1024);
    assert_eq!(
        decode(&bytes[..], CLUSTER, &Limits::default()),
        Err(DecodeError::Oversize(bytes.len()))
    );
    let one_over = vec![0u8; MAX_PACKET + 1];
    assert_eq!(
        decode(&one_over[..], CLUSTER, &Limits::default()),
        Err(DecodeError::Oversize(MAX_PACKET + 1))
    );
    // At the cap exactly, the bytes are read (and here found malformed).
    let at_cap = vec![0u8; MAX_PACKET];
    assert!(matches!(
        decode(&at_cap[..], CLUSTER, &Limits::default()),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn malformed_protobuf_is_refused() {
    for bytes in [
        // Field 3 (`from`) claims 16 bytes; none follow.
        &[0x1a, 0x10][..],
        // A varint that never ends.
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ][..],
        // Field 0 does not exist in protobuf.
        &[0x00, 0x01][..],
    ] {
        assert!(
            matches!(
                decode(bytes, CLUSTER, &Limits::default()),
                Err(DecodeError::Malformed(_))
            ),
            "{bytes:02x?}"
        );
    }
}

#[test]
fn another_protocol_version_is_refused() {
    for version in [0, 2, u32::MAX] {
        let mut p = packet_with(vec![ping(1)]);
        p.version = version;
        assert_eq!(decode_packet(&p), Err(DecodeError::Version(version)));
    }
}

#[test]
fn another_cluster_is_refused() {
    let p = packet_with(vec![ping(1)]);
    let ours = cluster_id("ours");
    assert_eq!(
        decode(&p.encode_to_vec()[..], ours, &Limits::default()),
        Err(DecodeError::Cluster {
            theirs: CLUSTER,
            ours
        })
    );
}

#[test]
fn a_packet_without_sender_or_messages_is_invalid() {
    let mut p = packet_with(vec![ping(1)]);
    p.from = None;
    assert_eq!(invalid(&p), "no sender");
    assert_eq!(invalid(&packet_with(vec![])), "no messages");
    assert_eq!(
        invalid(&packet_with(vec![proto::Message { kind: None }])),
        "empty message"
    );
}

#[test]
fn too_many_messages_are_invalid() {
    let limit = Limits::default().max_messages;
    let at_limit = packet_with((0..limit as u64).map(ping).collect());
    assert!(decode_packet(&at_limit).is_ok());
    let over = packet_with((0..=limit as u64).map(ping).collect());
    assert_eq!(invalid(&over), "too many messages");
}

#[test]
fn bad_node_ids_are_invalid_wherever_they_appear() {
    let mut long = sender();
    long.name = "x".repeat(256);
    let mut empty = sender();
    empty.name.clear();
    let mut ip5 = sender();
    ip5.ip = Bytes::from_static(&[1, 2, 3, 4, 5]);
    let mut no_ip = sender();
    no_ip.ip = Bytes::new();
    let mut port = sender();
    port.port = 65_536;
    let cases = [
        (long, "node name empty or too long"),
        (empty, "node name empty or too long"),
        (ip5, "address is neither IPv4 nor IPv6"),
        (no_ip, "address is neither IPv4 nor IPv6"),
        (port, "port out of range"),
    ];
    for (bad, why) in cases {
        // As the sender.
        let mut p = packet_with(vec![ping(1)]);
        p.from = Some(bad.clone());
        assert_eq!(invalid(&p), why);
        // As a delta's node.
        let mut d = delta(0, 1, &[1]);
        d.node = Some(bad.clone());
        assert_eq!(invalid(&ack(vec![d])), why);
        // As a PingReq target.
        let p = one(Kind::PingReq(proto::PingReq {
            seq: 1,
            target: Some(bad.clone()),
            nack: false,
        }));
        assert_eq!(invalid(&p), why);
        // As a member rumor.
        let p = one(Kind::Member(proto::MemberUpdate {
            signature: Default::default(),
            node: Some(bad),
            incarnation: 0,
            state: 0,
            ..Default::default()
        }));
        assert_eq!(invalid(&p), why);
    }
    // The limits themselves are accepted.
    let mut edge = sender();
    edge.name = "é".repeat(127); // 254 bytes
    edge.ip = Bytes::from(vec![0u8; 16]);
    edge.port = 65_535;
    let mut p = packet_with(vec![ping(1)]);
    p.from = Some(edge);
    assert!(decode_packet(&p).is_ok());
}

#[test]
fn digests_must_have_matching_arrays() {
    let syn = |d: Option<proto::Digest>| {
        one(Kind::Syn(proto::Syn {
            digest: d,
            follow_up: false,
            announce: false,
        }))
    };
    let syn_ack = |d: Option<proto::Digest>| {
        one(Kind::SynAck(proto::SynAck {
            digest: d,
            deltas: vec![],
            follow_up: false,
        }))
    };
    let uneven = proto::Digest {
        nodes: vec![1, 2],
        max_versions: vec![1],
        ..empty_digest()
    };
    let uneven_gc = proto::Digest {
        nodes: vec![1, 2],
        max_versions: vec![1, 2],
        last_gc_versions: vec![0],
        ..empty_digest()
    };
    let uneven_liveness = proto::Digest {
        nodes: vec![1, 2],
        max_versions: vec![1, 2],
        liveness: vec![4],
        ..empty_digest()
    };
    for make in [&syn as &dyn Fn(_) -> _, &syn_ack] {
        assert_eq!(invalid(&make(None)), "no digest");
        assert_eq!(
            invalid(&make(Some(uneven.clone()))),
            "digest arrays differ in length"
        );
        assert_eq!(
            invalid(&make(Some(uneven_gc.clone()))),
            "digest gc array differs in length"
        );
        assert_eq!(
            invalid(&make(Some(uneven_liveness.clone()))),
            "digest liveness array differs in length"
        );
        assert!(decode_packet(&make(Some(empty_digest()))).is_ok());
    }
}

#[test]
fn deltas_must_be_ordered_gapless_ranges() {
    let mut no_node = delta(0, 1, &[1]);
    no_node.node = None;
    assert_eq!(invalid(&ack(vec![no_node])), "delta without node");
    assert_eq!(
        invalid(&ack(vec![delta(5, 4, &[])])),
        "delta range reversed"
    );
    let order = "delta entries out of order or range";
    // An entry at `from` is outside (from, to].
    assert_eq!(invalid(&ack(vec![delta(3, 9, &[3])])), order);
    // Above `to`.
    assert_eq!(invalid(&ack(vec![delta(3, 9, &[4, 10])])), order);
    // Repeated and decreasing versions.
    assert_eq!(invalid(&ack(vec![delta(0, 9, &[2, 2])])), order);
    assert_eq!(invalid(&ack(vec![delta(0, 9, &[5, 4])])), order);
    // The same checks apply inside a SynAck.
    let p = one(Kind::SynAck(proto::SynAck {
        digest: Some(empty_digest()),
        deltas: vec![delta(0, 9, &[5, 4])],
        follow_up: false,
    }));
    assert_eq!(invalid(&p), order);
    // A valid one, an empty range and an empty delta pass.
    assert!(decode_packet(&ack(vec![delta(3, 9, &[4, 9]), delta(7, 7, &[])])).is_ok());
}

#[test]
fn keys_and_values_beyond_the_limits_are_invalid() {
    let limits = Limits {
        max_key_len: 8,
        max_value_len: 16,
        ..Limits::default()
    };
    let with = |key: &str, value: usize| {
        let mut d = delta(0, 1, &[1]);
        d.entries[0].key = key.into();
        d.entries[0].value = Bytes::from(vec![1u8; value]);
        ack(vec![d]).encode_to_vec()
    };
    let check = |bytes: Vec<u8>| decode(&bytes[..], CLUSTER, &limits);
    assert!(check(with("12345678", 16)).is_ok());
    assert_eq!(
        check(with("123456789", 16)),
        Err(DecodeError::Invalid("key or value too long"))
    );
    assert_eq!(
        check(with("k", 17)),
        Err(DecodeError::Invalid("key or value too long"))
    );
}

#[test]
fn member_rumors_need_a_node_and_a_known_state() {
    let p = one(Kind::Member(proto::MemberUpdate {
        signature: Default::default(),
        node: None,
        incarnation: 1,
        state: 0,
        ..Default::default()
    }));
    assert_eq!(invalid(&p), "no member");
    let p = one(Kind::Member(proto::MemberUpdate {
        signature: Default::default(),
        node: Some(sender()),
        incarnation: 1,
        state: 4,
        ..Default::default()
    }));
    assert_eq!(invalid(&p), "unknown member state");
    let p = one(Kind::Member(proto::MemberUpdate {
        signature: Default::default(),
        node: Some(sender()),
        incarnation: 1,
        state: 1,
        from: "s".repeat(256),
    }));
    assert_eq!(invalid(&p), "suspector name too long");
    let p = one(Kind::PingReq(proto::PingReq {
        seq: 1,
        target: None,
        nack: true,
    }));
    assert_eq!(invalid(&p), "no target");
}

#[test]
fn a_broadcast_origin_beyond_the_name_limit_is_invalid() {
    let b = |origin: String| {
        one(Kind::Broadcast(proto::Broadcast {
            origin,
            id: 1,
            payload: Bytes::new(),
        }))
    };
    assert!(decode_packet(&b("o".repeat(255))).is_ok());
    assert_eq!(invalid(&b("o".repeat(256))), "origin name too long");
}

// ----- ids ------------------------------------------------------------------

#[test]
fn ids_are_stable_fnv1a() {
    // FNV-1a-64 of nothing is the offset basis; every part is followed by
    // a 0xff separator byte, so these values pin the exact definition
    // that every node must share.
    assert_eq!(fnv1a64(&[]), 0xcbf2_9ce4_8422_2325);
    let sep_only = (0xcbf2_9ce4_8422_2325u64 ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
    assert_eq!(fnv1a64(&[b""]), sep_only);
    assert_ne!(fnv1a64(&[b"ab", b"c"]), fnv1a64(&[b"a", b"bc"]));
    assert_eq!(cluster_id("x"), fnv1a64(&[b"x"]) as u32);
    assert_eq!(node_key("n", 1), fnv1a64(&[b"n", &1u64.to_le_bytes()]));
    assert_ne!(node_key("n", 1), node_key("n", 2));
}

// ----- packing ----------------------------------------------------------------

fn header(from: proto::NodeId) -> proto::Packet {
    proto::Packet {
        version: PROTOCOL_VERSION,
        cluster: CLUSTER,
        from: Some(from),
        from_key: 0,
        messages: vec![],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// One packer: a message is refused exactly when adding it would take
    /// the encoded packet over the budget; the packet holds exactly the
    /// accepted messages, in order.
    #[test]
    fn a_packer_accepts_exactly_what_fits(
        from in node_id(),
        budget in 0usize..2500,
        messages in prop::collection::vec(message(), 0..24),
    ) {
        let h = header(from);
        let mut packer = match Packer::new(h.clone(), budget) {
            Ok(p) => p,
            Err(PackerError::BudgetTooSmall { header, .. }) => {
                prop_assert_eq!(header, h.encoded_len());
                prop_assert!(header >= budget);
                return Ok(());
            }
        };
        prop_assert!(h.encoded_len() < budget);
        let mut accepted = Vec::new();
        let mut so_far = h.clone();
        for m in messages {
            so_far.messages.push(m.clone());
            let would_fit = so_far.encoded_len() <= budget;
            prop_assert_eq!(packer.fits(&m), would_fit);
            prop_assert_eq!(m.encoded_len() <= packer.room(), would_fit);
            match packer.push(m.clone()) {
                Ok(()) => {
                    prop_assert!(would_fit);
                    accepted.push(m);
                }
                Err(back) => {
                    prop_assert!(!would_fit);
                    prop_assert_eq!(back, m);
                    so_far.messages.pop();
                }
            }
            prop_assert_eq!(packer.len(), so_far.encoded_len());
        }
        match packer.finish() {
            None => prop_assert!(accepted.is_empty()),
            Some(bytes) => {
                prop_assert!(bytes.len() <= budget);
                let back = decode(bytes, CLUSTER, &Limits::default()).unwrap();
                prop_assert_eq!(back.messages, accepted);
            }
        }
    }

    /// A stream of messages packed into as many packets as it takes: every
    /// packet is within the budget, the packets carry the messages in
    /// order, and the only ones left out are those no packet could hold.
    #[test]
    fn packing_a_stream_loses_only_what_never_fits(
        budget in 60usize..1500,
        messages in prop::collection::vec(message(), 1..40),
    ) {
        let h = header(sender());
        let mut packets = Vec::new();
        let mut refused = Vec::new();
        let mut packer = Packer::new(h.clone(), budget).unwrap();
        for m in &messages {
            let m = match packer.push(m.clone()) {
                Ok(()) => continue,
                Err(m) => m,
            };
            if !packer.is_empty() {
                let full = std::mem::replace(&mut packer, Packer::new(h.clone(), budget).unwrap());
                packets.extend(full.finish());
            }
            if let Err(m) = packer.push(m) {
                // Too big even for an empty packet.
                let mut alone = h.clone();
                alone.messages.push(m.clone());
                prop_assert!(alone.encoded_len() > budget);
                refused.push(m);
            }
        }
        packets.extend(packer.finish());
        let mut carried = Vec::new();
        for bytes in packets {
            prop_assert!(bytes.len() <= budget, "{} > {}", bytes.len(), budget);
            let p = decode(bytes, CLUSTER, &Limits::default()).unwrap();
            prop_assert!(!p.messages.is_empty());
            carried.extend(p.messages);
        }
        let expected: Vec<_> = messages.into_iter().filter(|m| !refused.contains(m)).collect();
        prop_assert_eq!(carried, expected);
    }
}

// ----- measured sizes (the numbers in docs/WIRE.md) -----------------------------

fn digest_with(n: usize, version: u64, gc: u64) -> proto::Digest {
    proto::Digest {
        fingerprint: u64::MAX,
        node_count: 1000,
        complete: false,
        nodes: (0..n as u64).map(|i| u64::MAX - i).collect(),
        max_versions: vec![version; n],
        last_gc_versions: if gc > 0 { vec![gc; n] } else { vec![] },
        unknown: vec![],
        liveness: vec![],
        // A page that is not complete names its window's key range.
        window_first: Some(u64::MAX - n as u64),
        window_last: Some(u64::MAX),
    }
}

#[test]
fn digest_lines_cost_what_wire_md_says() {
    // Each extra line costs 8 bytes of key plus the varints of its version
    // (and of its gc version when any node has one).
    let line = |version: u64, gc: u64| {
        digest_with(101, version, gc).encoded_len() - digest_with(100, version, gc).encoded_len()
    };
    assert_eq!(line(100, 0), 9);
    assert_eq!(line(10_000, 0), 10);
    assert_eq!(line(1_000_000, 0), 11);
    assert_eq!(line(100, 100), 10);
    assert_eq!(line(10_000, 5_000), 12);
    // An empty page (fingerprint, count, window range, nothing listed).
    assert_eq!(digest_with(0, 0, 0).encoded_len(), 9 + 3 + 2 * 9);
}

/// How many lines at `version` fit in a Syn under `budget` from `from`.
fn lines_in_a_syn(from: &proto::NodeId, budget: usize, version: u64, gc: u64) -> usize {
    let syn = |n| proto::Message {
        kind: Some(Kind::Syn(proto::Syn {
            digest: Some(digest_with(n, version, gc)),
            follow_up: false,
            announce: false,
        })),
    };
    let mut n = 0;
    loop {
        let mut p = header(from.clone());
        p.messages.push(syn(n + 1));
        if p.encoded_len() > budget {
            return n;
        }
        n += 1;
    }
}

#[test]
fn a_1400_byte_syn_page_holds_109_to_146_digest_lines() {
    let from = proto::NodeId {
        name: "node-017".into(),
        generation: 1_735_000_000_000,
        ip: Bytes::from_static(&[10, 0, 0, 17]),
        port: 7946,
    };
    let h = header(from.clone());
    assert_eq!(h.encoded_len(), 35);
    assert_eq!(lines_in_a_syn(&from, 1400, 100, 0), 146);
    assert_eq!(lines_in_a_syn(&from, 1400, 10_000, 0), 132);
    assert_eq!(lines_in_a_syn(&from, 1400, 1_000_000, 0), 120);
    assert_eq!(lines_in_a_syn(&from, 1400, 10_000, 5_000), 109);
}

#[test]
fn delta_entries_cost_their_fields_plus_framing() {
    let kv = proto::KeyValue {
        signature: Default::default(),
        key: "color".into(),
        value: Bytes::from_static(b"blue"),
        version: 42,
        tombstone: false,
    };
    // key 2+5, value 2+4, version 1+1; framed by a tag and a length byte.
    assert_eq!(kv.encoded_len(), 15);
    assert_eq!(field_len(kv.encoded_len()), 17);
    let tomb = proto::KeyValue {
        signature: Default::default(),
        key: "color".into(),
        value: Bytes::new(),
        version: 43,
        tombstone: true,
    };
    assert_eq!(tomb.encoded_len(), 11);
    let intro = proto::NodeDelta {
        head_version: 0,
        head_signature: Default::default(),
        node: Some(sender()),
        ..Default::default()
    };
    // An introduction is the node id and nothing else.
    assert_eq!(intro.encoded_len(), 2 + sender().encoded_len());
}
