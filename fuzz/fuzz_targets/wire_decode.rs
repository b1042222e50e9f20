//! `wire::decode` on arbitrary bytes: never panics, and whatever it accepts
//! re-encodes to a packet that decodes to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use scuttlewire::__private::wire::{self, DecodeError, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let ours = wire::cluster_id("fuzz");
    let packet = match wire::decode(data, ours, &limits) {
        // Retry under the packet's own cluster id to reach the validator.
        Err(DecodeError::Cluster { theirs, .. }) => wire::decode(data, theirs, &limits),
        other => other,
    };
    if let Ok(packet) = packet {
        let again = packet.encode_to_vec();
        let back = wire::decode(&again[..], packet.cluster, &limits)
            .expect("a re-encoded accepted packet must decode");
        assert_eq!(back, packet, "decode(encode(p)) != p");
    }
});
