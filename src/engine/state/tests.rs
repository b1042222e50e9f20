//! Tests of one node's versioned state: deltas within a room and without
//! gaps, tombstones and their collection, the reset of a receiver behind
//! collected tombstones, and replication under random histories.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message as _;

use super::*;

const GRACE: Duration = Duration::from_secs(30);

fn owner() -> proto::NodeId {
    proto::NodeId {
        name: "owner".into(),
        generation: 1,
        ip: Bytes::from_static(&[10, 0, 0, 1]),
        port: 7946,
    }
}

/// Every entry, tombstones included: key -> (value, version, tombstone).
fn all(s: &NodeState) -> BTreeMap<String, (Bytes, u64, bool)> {
    s.all()
        .map(|(k, e)| (k.clone(), (e.value.clone(), e.version, e.is_tombstone())))
        .collect()
}

/// The live view: key -> (value, version).
fn live(s: &NodeState) -> BTreeMap<String, (Bytes, u64)> {
    s.live()
        .map(|(k, e)| (k.clone(), (e.value.clone(), e.version)))
        .collect()
}

/// Entries are in strict version order, each key once, and every one is
/// found by its key.
fn assert_consistent(s: &NodeState) {
    let mut prev = 0;
    for (k, e) in s.all() {
        assert!(e.version > prev, "{k} at v{} after v{prev}", e.version);
        prev = e.version;
        assert_eq!(s.get(k).map(|e| e.version), Some(e.version), "{k}");
    }
    assert_eq!(
        s.all().count(),
        s.all()
            .map(|(k, _)| k)
            .collect::<std::collections::HashSet<_>>()
            .len()
    );
}

/// Checks what the wire decoder checks, and that the delta fits `room`.
fn assert_valid(d: &proto::NodeDelta, room: usize) {
    assert!(
        d.encoded_len() <= room,
        "delta of {} bytes in a room of {room}",
        d.encoded_len()
    );
    assert!(d.from_version <= d.to_version);
    let mut prev = d.from_version;
    for kv in &d.entries {
        assert!(
            kv.version > prev && kv.version <= d.to_version,
            "entry v{} outside ({}, {}] or out of order",
            kv.version,
            d.from_version,
            d.to_version
        );
        prev = kv.version;
    }
}

/// Replicates `src` to `dst` in deltas of at most `room` bytes until `dst`
/// is up to date; returns the changes `dst` reported and the deltas sent.
fn sync(
    src: &NodeState,
    dst: &mut NodeState,
    room: usize,
    now: Instant,
) -> (Vec<Change>, Vec<proto::NodeDelta>) {
    let mut changes = Vec::new();
    let mut sent = Vec::new();
    let mut frontier = None;
    while let Some(d) = src.delta(owner(), dst.max_version(), dst.last_gc_version(), room) {
        assert_valid(&d, room);
        if let Some(f) = frontier {
            // Pages follow each other: each starts where the last ended.
            assert_eq!(d.from_version, f, "a page skipped versions");
        }
        frontier = Some(d.to_version);
        dst.apply(&d, now, &mut changes).expect("delta refused");
        assert_consistent(dst);
        sent.push(d);
        assert!(sent.len() <= 10_000, "replication does not progress");
    }
    (changes, sent)
}

fn set(s: &mut NodeState, key: &str, value: &str) -> u64 {
    s.set_local(key.to_owned(), Bytes::copy_from_slice(value.as_bytes()))
}

fn deleted(changes: &[Change]) -> Vec<&str> {
    let mut v: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Deleted { key, .. } => Some(key.as_str()),
            Change::Set { .. } => None,
        })
        .collect();
    v.sort_unstable();
    v
}

/// A source with 60 writes: keys of varying size, some overwritten.
fn busy_source() -> NodeState {
    let mut s = NodeState::default();
    for i in 0..60u32 {
        let key = format!("key-{}", i % 37);
        let value = "v".repeat((i as usize * 7) % 50);
        set(&mut s, &key, &value);
    }
    s
}

// ----- deltas ---------------------------------------------------------------

#[test]
fn deltas_respect_the_room_and_leave_no_gaps() {
    let now = crate::engine::harness::origin();
    let src = busy_source();
    for room in [90, 120, 150, 300, 1000, 10_000] {
        let mut dst = NodeState::default();
        let (changes, sent) = sync(&src, &mut dst, room, now);
        assert_eq!(all(&dst), all(&src), "room {room}");
        assert_eq!(dst.max_version(), src.max_version());
        assert!(!changes.is_empty());
        if room < 300 {
            assert!(sent.len() > 1, "room {room} should need several pages");
        }
    }
}

#[test]
fn a_room_too_small_for_one_entry_gives_no_delta() {
    let mut src = NodeState::default();
    set(&mut src, "key", &"x".repeat(100));
    assert_eq!(src.delta(owner(), 0, 0, 60), None);
    let d = src.delta(owner(), 0, 0, 200).unwrap();
    assert_eq!(d.entries.len(), 1);
}

#[test]
fn an_up_to_date_peer_gets_no_delta() {
    let src = busy_source();
    assert_eq!(src.delta(owner(), src.max_version(), 0, 10_000), None);
    assert_eq!(src.delta(owner(), src.max_version() + 5, 0, 10_000), None);
}

#[test]
fn a_delta_lists_only_current_entries_of_its_range() {
    let mut src = NodeState::default();
    set(&mut src, "a", "1"); // v1, overwritten at v3
    set(&mut src, "b", "2"); // v2
    set(&mut src, "a", "3"); // v3
    let d = src.delta(owner(), 0, 0, 10_000).unwrap();
    let listed: Vec<(&str, u64)> = d
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.version))
        .collect();
    assert_eq!(listed, [("b", 2), ("a", 3)]);
    assert_eq!((d.from_version, d.to_version), (0, 3));
}

#[test]
fn a_gap_delta_is_refused_and_changes_nothing() {
    let now = crate::engine::harness::origin();
    let mut src = NodeState::default();
    for i in 0..6 {
        set(&mut src, &format!("k{i}"), "v");
    }
    let mut dst = NodeState::default();
    let first = src.delta(owner(), 0, 0, 50).unwrap();
    assert!(first.to_version < 5);
    let mut out = Vec::new();
    dst.apply(&first, now, &mut out).unwrap();
    let before = all(&dst);
    let gap = src
        .delta(owner(), dst.max_version() + 1, 0, 10_000)
        .unwrap();
    out.clear();
    assert_eq!(dst.apply(&gap, now, &mut out), Err(DeltaRefused::Gap));
    assert!(out.is_empty());
    assert_eq!(all(&dst), before);
    assert_eq!(dst.max_version(), first.to_version);
}

#[test]
fn duplicate_and_old_overlapping_deltas_are_harmless() {
    let now = crate::engine::harness::origin();
    let mut src = NodeState::default();
    set(&mut src, "a", "1");
    set(&mut src, "b", "1");
    let old = src.delta(owner(), 0, 0, 10_000).unwrap();
    set(&mut src, "a", "2");
    src.delete_local("b", now).unwrap();
    set(&mut src, "c", "1");
    let new = src.delta(owner(), 0, 0, 10_000).unwrap();
    let mut dst = NodeState::default();
    let mut out = Vec::new();
    dst.apply(&new, now, &mut out).unwrap();
    let after = all(&dst);
    assert_eq!(after, all(&src));
    for d in [&new, &old, &new, &old] {
        out.clear();
        assert_eq!(dst.apply(d, now, &mut out), Ok(()));
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(all(&dst), after);
    }
    // A partly overlapping delta only adds what is new.
    set(&mut src, "d", "1");
    let overlap = src.delta(owner(), 2, 0, 10_000).unwrap();
    out.clear();
    dst.apply(&overlap, now, &mut out).unwrap();
    assert_eq!(
        out,
        [Change::Set {
            key: "d".into(),
            value: Bytes::from_static(b"1"),
            version: 6
        }]
    );
    assert_eq!(all(&dst), all(&src));
}

// ----- tombstones -----------------------------------------------------------

#[test]
fn tombstones_spread_and_are_collected_after_the_grace_period() {
    let t0 = crate::engine::harness::origin();
    let mut src = NodeState::default();
    set(&mut src, "a", "1");
    set(&mut src, "b", "1");
    let mut dst = NodeState::default();
    sync(&src, &mut dst, 10_000, t0);
    assert_eq!(src.delete_local("a", t0), Some(3));
    assert_eq!(src.delete_local("a", t0), None, "already deleted");
    assert_eq!(src.delete_local("zzz", t0), None, "never set");

    let t1 = t0 + Duration::from_secs(1);
    let (changes, _) = sync(&src, &mut dst, 10_000, t1);
    assert_eq!(
        changes,
        [Change::Deleted {
            key: "a".into(),
            version: 3
        }]
    );
    assert!(dst.get("a").is_some_and(Entry::is_tombstone));
    assert!(!live(&dst).contains_key("a"));
    assert!(dst.has_tombstones());

    // Not before the grace period is over.
    assert_eq!(src.collect_tombstones(t0 + GRACE / 2, GRACE), 0);
    assert_eq!(src.last_gc_version(), 0);
    assert_eq!(src.collect_tombstones(t0 + GRACE, GRACE), 1);
    assert_eq!(src.last_gc_version(), 3);
    assert!(!src.has_tombstones());
    assert_eq!(src.get("a"), None);
    assert_consistent(&src);
    // The receiver's clock started when it learnt the deletion.
    assert_eq!(dst.collect_tombstones(t0 + GRACE, GRACE), 0);
    assert_eq!(dst.collect_tombstones(t1 + GRACE, GRACE), 1);
    assert_eq!(dst.last_gc_version(), 3);
    assert_eq!(live(&dst), live(&src));
    // A receiver up to date needs nothing more.
    assert_eq!(
        src.delta(owner(), dst.max_version(), dst.last_gc_version(), 10_000),
        None
    );
}

#[test]
fn a_set_after_a_delete_revives_the_key() {
    let now = crate::engine::harness::origin();
    let mut src = NodeState::default();
    set(&mut src, "a", "1");
    src.delete_local("a", now);
    set(&mut src, "a", "2");
    assert!(!src.has_tombstones());
    let mut dst = NodeState::default();
    sync(&src, &mut dst, 10_000, now);
    assert_eq!(live(&dst), live(&src));
    assert_eq!(src.collect_tombstones(now + GRACE, GRACE), 0);
}

// ----- the reset path -------------------------------------------------------

/// A receiver synced at version 10 (keys k0..k9), then a source that moved
/// on: k3 and k7 deleted and collected, k5 overwritten, k10 added.
fn diverged(now: Instant) -> (NodeState, NodeState) {
    let mut src = NodeState::default();
    for i in 0..10 {
        set(&mut src, &format!("k{i}"), &format!("value-{i}"));
    }
    let mut dst = NodeState::default();
    sync(&src, &mut dst, 10_000, now);
    assert_eq!(dst.max_version(), 10);
    src.delete_local("k3", now).unwrap();
    src.delete_local("k7", now).unwrap();
    set(&mut src, "k5", "new");
    set(&mut src, "k10", "new");
    assert_eq!(src.collect_tombstones(now + GRACE, GRACE), 2);
    assert_eq!(src.last_gc_version(), 12);
    (src, dst)
}

#[test]
fn a_receiver_behind_collected_tombstones_is_reset_from_zero() {
    let now = crate::engine::harness::origin();
    let (src, mut dst) = diverged(now);
    let d = src
        .delta(owner(), dst.max_version(), dst.last_gc_version(), 10_000)
        .unwrap();
    assert_eq!(d.from_version, 0, "a receiver behind the gc needs a reset");
    assert_eq!(d.last_gc_version, 12);
    let mut changes = Vec::new();
    dst.apply(&d, now, &mut changes).unwrap();
    assert_consistent(&dst);
    assert_eq!(all(&dst), all(&src));
    assert_eq!(dst.max_version(), src.max_version());
    assert_eq!(dst.last_gc_version(), 12);
    // Exactly the collected deletions are reported as deletions; the
    // overwritten key is reported as set, not deleted and set again.
    assert_eq!(deleted(&changes), ["k3", "k7"]);
    let set_keys: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Set { key, .. } => Some(key.as_str()),
            Change::Deleted { .. } => None,
        })
        .collect();
    assert_eq!(set_keys, ["k5", "k10"]);
    // Up to date now.
    assert_eq!(src.delta(owner(), 14, 12, 10_000), None);
}

#[test]
fn a_reset_split_into_truncated_pages_ends_with_the_source_state() {
    let now = crate::engine::harness::origin();
    for room in [45, 50, 70, 100, 200] {
        let (src, mut dst) = diverged(now);
        let (changes, sent) = sync(&src, &mut dst, room, now);
        assert_eq!(sent[0].from_version, 0);
        if room < 100 {
            assert!(sent.len() > 2, "room {room}: {} pages", sent.len());
        }
        assert_eq!(all(&dst), all(&src), "room {room}");
        assert_eq!(dst.max_version(), src.max_version());
        assert_eq!(dst.unverified_until(), 0);
        // Every key gone at the source was reported deleted, and the last
        // change of every other key is its current value.
        let d = deleted(&changes);
        assert!(d.contains(&"k3") && d.contains(&"k7"), "room {room}: {d:?}");
        for (key, (value, version)) in live(&src) {
            let last = changes.iter().rev().find(|c| match c {
                Change::Set { key: k, .. } | Change::Deleted { key: k, .. } => *k == key,
            });
            if let Some(c) = last {
                assert_eq!(
                    c,
                    &Change::Set {
                        key: key.clone(),
                        value,
                        version
                    }
                );
            }
        }
    }
}

#[test]
fn a_receiver_mid_reset_sends_only_valid_deltas() {
    let now = crate::engine::harness::origin();
    let (src, mut mid) = diverged(now);
    // Only the first page of the reset arrives.
    let page = src.delta(owner(), 10, 0, 50).unwrap();
    assert_eq!(page.from_version, 0);
    assert!(page.to_version < 10, "the test needs a short first page");
    let mut out = Vec::new();
    mid.apply(&page, now, &mut out).unwrap();
    // It still holds unconfirmed entries above its (lowered) version; a
    // delta it builds for a third node must not carry them.
    let mut third = NodeState::default();
    let (_, sent) = sync(&mid, &mut third, 10_000, now);
    assert!(!sent.is_empty());
    assert_eq!(third.max_version(), mid.max_version());
    // The third node then completes from the source.
    sync(&src, &mut third, 10_000, now);
    assert_eq!(all(&third), all(&src));
}

#[test]
fn a_delta_from_a_peer_that_missed_the_collection_cannot_resurrect() {
    let now = crate::engine::harness::origin();
    let mut src = NodeState::default();
    for i in 0..40 {
        set(&mut src, &format!("k{i}"), "v");
    }
    // `old` holds everything, before any deletion.
    let mut old = NodeState::default();
    sync(&src, &mut old, 10_000, now);
    // `dst` holds only the first few versions.
    let mut dst = NodeState::default();
    let first = src.delta(owner(), 0, 0, 100).unwrap();
    let mut out = Vec::new();
    dst.apply(&first, now, &mut out).unwrap();
    let start = dst.max_version();
    assert!(start < 30);
    // k30 is deleted and its tombstone collected at the source.
    src.delete_local("k30", now).unwrap();
    src.collect_tombstones(now + GRACE, GRACE);
    assert_eq!(src.last_gc_version(), 41);
    // dst gets the first page of its reset, then `old` offers the rest of
    // the range, from a history that still has k30.
    let page = src
        .delta(owner(), dst.max_version(), dst.last_gc_version(), 100)
        .unwrap();
    assert_eq!(page.from_version, 0);
    dst.apply(&page, now, &mut out).unwrap();
    assert!(dst.max_version() < 30);
    if let Some(stale) = old.delta(owner(), dst.max_version(), dst.last_gc_version(), 10_000) {
        // Refusing it is fine; applying it must not bring k30 back.
        let _ = dst.apply(&stale, now, &mut out);
    }
    sync(&src, &mut dst, 10_000, now);
    assert_eq!(live(&dst), live(&src));
    assert_eq!(dst.get("k30").filter(|e| !e.is_tombstone()), None);
}

// ----- random histories -----------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Set(u8, u8),
    Delete(u8),
    /// Let time pass and collect tombstones at the source.
    Collect,
    /// Replicate with the given room, source to receiver if `deliver`,
    /// receiver to relay if `relay` (a missed round otherwise).
    Round {
        room: usize,
        deliver: bool,
        relay: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..12, 0u8..40).prop_map(|(k, len)| Op::Set(k, len)),
        2 => (0u8..12).prop_map(Op::Delete),
        1 => Just(Op::Collect),
        3 => (50usize..300, prop::bool::weighted(0.6), prop::bool::weighted(0.3))
            .prop_map(|(room, deliver, relay)| Op::Round { room, deliver, relay }),
    ]
}

/// One round of replication: one delta (a page at most), as in gossip.
fn round(src: &NodeState, dst: &mut NodeState, room: usize, now: Instant) {
    if let Some(d) = src.delta(owner(), dst.max_version(), dst.last_gc_version(), room) {
        assert_valid(&d, room);
        let mut out = Vec::new();
        dst.apply(&d, now, &mut out).expect("delta refused");
        assert_consistent(dst);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the history and the rooms, a receiver that misses rounds
    /// ends with the source's live state once it catches up; so does a
    /// second receiver fed only by the first (relayed deltas are valid).
    #[test]
    fn replicas_converge_to_the_source(ops in prop::collection::vec(op(), 1..80)) {
        let t0 = crate::engine::harness::origin();
        let mut now = t0;
        let mut src = NodeState::default();
        let mut dst = NodeState::default();
        let mut relay = NodeState::default();
        for op in ops {
            match op {
                Op::Set(k, len) => {
                    set(&mut src, &format!("k{k}"), &"x".repeat(len.into()));
                }
                Op::Delete(k) => {
                    let _ = src.delete_local(&format!("k{k}"), now);
                }
                Op::Collect => {
                    now += GRACE;
                    src.collect_tombstones(now, GRACE);
                    dst.collect_tombstones(now, GRACE);
                    relay.collect_tombstones(now, GRACE);
                    assert_consistent(&src);
                }
                Op::Round { room, deliver, relay: to_relay } => {
                    if deliver {
                        round(&src, &mut dst, room, now);
                    }
                    if to_relay {
                        round(&dst, &mut relay, room, now);
                    }
                }
            }
        }
        sync(&src, &mut dst, 400, now);
        prop_assert_eq!(live(&dst), live(&src));
        prop_assert_eq!(dst.max_version(), src.max_version());
        sync(&dst, &mut relay, 400, now);
        prop_assert_eq!(live(&relay), live(&src));
    }
}
