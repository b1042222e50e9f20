//! The dead table: retries back off, retention removes.

use super::*;

const S: Duration = Duration::from_secs(1);

#[test]
fn retries_back_off_and_retention_removes() {
    let t0 = crate::engine::harness::origin();
    let mut d = DeadMembers::default();
    d.insert(1, t0, Some(S));
    d.insert(2, t0, None);
    assert_eq!(d.next_retry(), Some(t0 + S));
    let due = d.due(t0 + S, 10 * S);
    assert_eq!((due.retry, due.remove), (vec![1], vec![]));
    // Backoff doubled: next retry 2 s after the first.
    assert_eq!(d.next_retry(), Some(t0 + 3 * S));
    assert!(d.due(t0 + 2 * S, 10 * S).retry.is_empty());
    assert_eq!(d.to_reconnect(t0 + 2 * S, 5 * S), vec![1]);
    let due = d.due(t0 + 10 * S, 10 * S);
    assert_eq!(due.remove, vec![1, 2]);
    assert_eq!(d.next_retry(), None);
    assert!(d.to_reconnect(t0 + 10 * S, 5 * S).is_empty());
}
