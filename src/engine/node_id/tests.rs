//! Node identities: parsing, keys and wire round trips.

use super::*;

#[test]
fn round_trips_through_the_wire_form() {
    for addr in ["127.0.0.1:7946", "[::1]:9000"] {
        let id = NodeId::new("n1", 42, addr.parse().unwrap());
        assert_eq!(NodeId::from_proto(&id.to_proto()), Some(id));
    }
}

#[test]
fn generations_have_distinct_keys() {
    let a = NodeId::new("n1", 1, "127.0.0.1:1".parse().unwrap());
    let b = NodeId::new("n1", 2, "127.0.0.1:1".parse().unwrap());
    assert_ne!(a.key(), b.key());
}
