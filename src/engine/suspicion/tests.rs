//! Lifeguard suspicion timeouts.

use super::*;

#[test]
fn confirmations_shrink_the_timeout_to_its_floor() {
    let t0 = crate::engine::harness::origin();
    let (min, max) = (Duration::from_secs(2), Duration::from_secs(12));
    let mut s = Suspicion::new(1, "a", t0, min, max, 3);
    assert_eq!(s.deadline, t0 + max);
    assert!(s.confirm("b"));
    let one = s.deadline;
    assert!(one < t0 + max && one > t0 + min);
    assert!(
        !s.confirm("b"),
        "the same suspector twice is not independent"
    );
    s.confirm("c");
    s.confirm("d");
    assert_eq!(s.deadline, t0 + min);
}

#[test]
fn the_deadline_index_follows_inserts_confirmations_and_removals() {
    let t0 = crate::engine::harness::origin();
    let (min, max) = (Duration::from_secs(2), Duration::from_secs(12));
    let mut ss = Suspicions::default();
    ss.insert(7, Suspicion::new(1, "a", t0, min, max, 3));
    ss.insert(3, Suspicion::new(4, "a", t0 + min, min, max, 0));
    // Key 3 expects no confirmations: due after `min`.
    assert_eq!(ss.next_deadline(), Some(t0 + min + min));
    assert!(ss.confirm(7, "b") && ss.confirm(7, "c") && ss.confirm(7, "d"));
    assert!(!ss.confirm(7, "e"), "no more than expected + 1 suspectors");
    assert!(!ss.confirm(9, "b"), "no suspicion of 9");
    // Fully confirmed, 7 is due after `min` too, and earlier than 3.
    assert_eq!(ss.next_deadline(), Some(t0 + min));
    assert!(ss.take_due(t0 + min - Duration::from_millis(1)).is_empty());
    let due: Vec<(u64, u64)> = ss
        .take_due(t0 + min + min)
        .into_iter()
        .map(|(key, s)| (key, s.incarnation))
        .collect();
    assert_eq!(due, vec![(3, 4), (7, 1)]);
    assert_eq!(ss.next_deadline(), None);
    assert!(ss.remove(7).is_none(), "taken when due");
    // Replacing and removing leave no stale timer behind.
    ss.insert(5, Suspicion::new(1, "a", t0, min, max, 3));
    ss.insert(5, Suspicion::new(2, "a", t0 + max, min, max, 3));
    assert_eq!(ss.next_deadline(), Some(t0 + max + max));
    assert_eq!(ss.remove(5).map(|s| s.incarnation), Some(2));
    assert_eq!(ss.next_deadline(), None);
    assert!(ss.take_due(t0 + max * 4).is_empty());
}
