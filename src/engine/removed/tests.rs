//! The removed-members table.

use super::*;

fn removed(name: &str, generation: u64, at: Instant, left: bool) -> Removed {
    Removed {
        id: NodeId::new(name, generation, "10.0.0.1:7946".parse().unwrap()),
        incarnation: 3,
        at,
        left,
    }
}

#[test]
fn finds_by_name_and_key_and_forgets_both() {
    let t = crate::engine::harness::origin();
    let mut r = RemovedMembers::default();
    r.insert(removed("a", 1, t, false));
    let key = NodeId::new("a", 1, "10.0.0.1:7946".parse().unwrap()).key();
    assert_eq!(r.by_key(key).map(|r| r.incarnation), Some(3));
    assert!(r.is_removed("a", 1));
    assert!(!r.is_removed("a", 2), "a newer generation is a new node");
    // A newer removal of the same name replaces the key index too.
    r.insert(removed("a", 2, t, false));
    assert!(r.by_key(key).is_none());
    assert_eq!(r.len(), 1);
    assert!(r.forget("a").is_some());
    assert_eq!(r.len(), 0);
    assert!(r.names.is_empty());
}

#[test]
fn reconnects_the_dead_not_the_departed_until_the_timeout() {
    let t = crate::engine::harness::origin();
    let mut r = RemovedMembers::default();
    r.insert(removed("dead", 1, t, false));
    r.insert(removed("left", 1, t, true));
    let names = |now| {
        r.to_reconnect(now, Duration::from_secs(60))
            .map(|r| r.id.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(t), ["dead"]);
    assert!(names(t + Duration::from_secs(61)).is_empty());
    r.expire(t + Duration::from_secs(10), Duration::from_secs(5));
    assert_eq!(r.len(), 0);
    assert!(r.names.is_empty());
}
