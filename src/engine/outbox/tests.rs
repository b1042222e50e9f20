//! The outbox's byte-size constants against the encoding.

use super::*;

#[test]
fn the_constants_follow_the_encoding() {
    assert_eq!(
        LEN,
        prost::encoding::encoded_len_varint(wire::MAX_PACKET as u64)
    );
    assert_eq!(FIELD, field_len(wire::MAX_PACKET) - wire::MAX_PACKET);
    assert_eq!(NESTING, 8);
    assert_eq!(varint_len(127), 1);
    assert_eq!(varint_len(128), 2);
    assert_eq!(varint_len(u64::MAX), 10);
    let flag = proto::Syn {
        digest: None,
        follow_up: true,
        announce: false,
    };
    assert_eq!(flag.encoded_len(), FLAG);
    // Every fixed field at its largest, and one line in each array (a
    // line's own bytes are counted by the digest builder).
    let fixed = proto::Digest {
        fingerprint: u64::MAX,
        node_count: u32::MAX,
        complete: true,
        nodes: vec![1],
        max_versions: vec![0],
        last_gc_versions: vec![0],
        unknown: vec![],
        liveness: vec![0],
        window_first: Some(u64::MAX),
        window_last: Some(u64::MAX),
    };
    assert!(fixed.encoded_len() - (8 + 1 + 1 + 1) <= DIGEST_FIXED);
}
