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
}
