//! Tree pushes, driven by hand on an explicit clock: acknowledged,
//! retried while the acknowledgement is missing, given up after
//! [`PUSH_TRIES`] sends.

use std::time::Duration;

use prost::Message as _;

use super::*;
use crate::Config;
use crate::engine::Transmit;
use crate::engine::harness::Harness;

/// The writer and its peer in [`pair`].
const A: usize = 0;
const B: usize = 1;

/// Probes too rare to matter: no round-trip samples, so a retry waits a
/// tenth of `probe_timeout` (3 s).
fn config() -> Config {
    Config {
        probe_interval: Duration::from_secs(60),
        probe_timeout: Duration::from_secs(30),
        ..Config::local()
    }
}

/// Two engines that know each other.
fn pair() -> Harness {
    let mut h = Harness::pair(config(), Duration::from_millis(50));
    // Let the exchange that introduced them finish.
    h.now += Duration::from_secs(1);
    h.deliver();
    h
}

/// Push ids of the tree pushes (acks asking for an answer) in `ts`.
fn push_ids(ts: &[Transmit]) -> Vec<u32> {
    messages(ts)
        .filter_map(|k| match k {
            Kind::Ack(a) if a.push_id != 0 => Some(a.push_id),
            _ => None,
        })
        .collect()
}

fn messages(ts: &[Transmit]) -> impl Iterator<Item = Kind> + '_ {
    ts.iter().flat_map(|t| {
        proto::Packet::decode(t.payload.clone())
            .expect("engines send valid packets")
            .messages
            .into_iter()
            .filter_map(|m| m.kind)
    })
}

#[test]
fn a_lost_tree_push_is_sent_again_until_it_is_acknowledged() {
    let mut h = pair();
    h.nodes[A].set(h.now, "k", "v").unwrap();
    h.now += h.nodes[A].config.push_delay;
    h.nodes[A].handle_timeout(h.now);
    let first = h.drain(A);
    let ids = push_ids(&first);
    assert_eq!(ids.len(), 1, "one tree push, to b: {first:?}");
    // Lost, with everything else a sends. The retry comes within the
    // fallback wait of 3 s.
    let deadline = h.now + Duration::from_secs(3);
    let again = loop {
        h.now = h.nodes[A]
            .poll_timeout()
            .max(h.now + Duration::from_millis(1));
        assert!(h.now <= deadline, "no retry within 3 s");
        h.nodes[A].handle_timeout(h.now);
        let sent = h.drain(A);
        if !push_ids(&sent).is_empty() {
            break sent;
        }
    };
    assert_eq!(push_ids(&again), ids, "the same push, same id");
    assert_eq!(h.nodes[A].metrics().pushes_retried, 1);
    // Delivered this time: b applies it and answers with a PushAck.
    for t in &again {
        h.receive(B, A, &t.payload);
    }
    assert_eq!(h.nodes[B].get("a", "k").as_deref(), Some(&b"v"[..]));
    let answer = h.drain(B);
    let acked: Vec<u32> = messages(&answer)
        .filter_map(|k| match k {
            Kind::PushAck(p) => Some(p.push_id),
            _ => None,
        })
        .collect();
    assert_eq!(acked, ids);
    for t in &answer {
        h.receive(A, B, &t.payload);
    }
    // Nothing more to retry, however long we wait.
    for _ in 0..100 {
        h.now += Duration::from_millis(100);
        h.nodes[A].handle_timeout(h.now);
        assert!(push_ids(&h.drain(A)).is_empty());
    }
    let m = h.nodes[A].metrics();
    assert_eq!((m.pushes_retried, m.pushes_unacked), (1, 0));
}

#[test]
fn a_push_never_acknowledged_is_given_up_after_its_tries() {
    let mut h = pair();
    h.nodes[A].set(h.now, "k", "v").unwrap();
    h.now += h.nodes[A].config.push_delay;
    // Every datagram of a's that carries a tree push is lost; the rest
    // (probes, anti-entropy) gets through both ways, so b stays healthy.
    // The eight sends go out at 0, 3, 6, 9, 12, 18, 30 and 54 s (waits
    // of 1, 1, 1, 1, 2, 4, 8 times 3 s); the last is given up 16 waits
    // later, at 102 s.
    h.lose = |from, t| from == A && !push_ids(std::slice::from_ref(t)).is_empty();
    h.log.clear();
    let end = h.now + Duration::from_secs(120);
    let mut at = h.now;
    while at < end {
        h.step_to(at);
        at = h
            .next_deadline()
            .max(h.now + Duration::from_millis(1))
            .min(end);
    }
    let sent: Vec<u32> = h
        .log
        .iter()
        .filter(|(from, _)| *from == A)
        .flat_map(|(_, t)| push_ids(std::slice::from_ref(t)))
        .collect();
    assert_eq!(h.nodes[A].member_counts().alive, 2, "b stayed alive");
    assert_eq!(sent.len(), usize::from(PUSH_TRIES));
    assert!(sent.iter().all(|&id| id == sent[0]));
    let m = h.nodes[A].metrics();
    assert_eq!(m.pushes_retried, u64::from(PUSH_TRIES) - 1);
    assert_eq!(m.pushes_unacked, 1);
}

#[test]
fn the_children_of_a_silent_tree_child_are_adopted() {
    // Six engines that all know each other.
    let mut h = Harness::new(1, config(), 1400);
    for _ in 1..6 {
        h.add(0);
    }
    for _ in 0..200 {
        h.step(Duration::from_millis(50));
    }
    assert!(h.nodes.iter().all(|e| e.member_count() == 6));
    // The tree of n0's changes: the ring in key order, from n0.
    let mut ring: Vec<(u64, usize)> = h
        .nodes
        .iter()
        .enumerate()
        .map(|(i, e)| (e.local_id().key(), i))
        .collect();
    ring.sort_unstable();
    let root = ring.iter().position(|&(_, i)| i == 0).unwrap();
    let at = |rel: usize| ring[(root + rel) % 6].1;
    let (child, grandchild) = (at(1), at(5));
    // The child is down; n0 writes.
    h.isolated.insert(child);
    h.nodes[0].set(h.now, "k", "v").unwrap();
    let mut adopted = false;
    let end = h.now + Duration::from_secs(120);
    while h.now < end && !adopted {
        let next = h.next_deadline().max(h.now + Duration::from_millis(1));
        h.log.clear();
        h.step_to(next);
        adopted = h.log.iter().any(|(i, t)| {
            *i == 0
                && h.index(t.to) == Some(grandchild)
                && !push_ids(std::slice::from_ref(t)).is_empty()
        });
    }
    assert!(
        adopted,
        "n0 never sent a tree push to its silent child's child"
    );
    // When the fifth send goes unanswered (with the sixth), not before.
    assert_eq!(h.nodes[0].metrics().pushes_retried, u64::from(ADOPT_AFTER));
}
