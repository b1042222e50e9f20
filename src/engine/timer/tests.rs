//! The timer table.

use std::time::Duration;

use super::*;

#[test]
fn the_next_deadline_is_the_earliest_armed_one() {
    let t0 = crate::engine::harness::origin();
    let mut t = TimerTable::default();
    assert_eq!(t.next(), None);
    t.set(Timer::Gossip, Some(t0 + Duration::from_secs(2)));
    t.set(Timer::PushRetry, Some(t0 + Duration::from_secs(1)));
    assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
    assert!(t.is_due(Timer::PushRetry, t0 + Duration::from_secs(1)));
    assert!(!t.is_due(Timer::Gossip, t0 + Duration::from_secs(1)));
    assert!(!t.is_due(Timer::Push, t0 + Duration::from_secs(9)));
    t.set(Timer::PushRetry, None);
    assert_eq!(t.next(), Some(t0 + Duration::from_secs(2)));
}
