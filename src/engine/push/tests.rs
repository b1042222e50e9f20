//! Tree pushes, driven by hand on an explicit clock: acknowledged,
//! retried while the acknowledgement is missing, given up after
//! [`PUSH_TRIES`] sends.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use prost::Message as _;

use super::*;
use crate::Config;
use crate::engine::pair::{addr, drain, meet, shuttle};
use crate::engine::{NodeId, Transmit};

/// Probes too rare to matter: no round-trip samples, so a retry waits a
/// tenth of `probe_timeout` (3 s).
fn config() -> Config {
    Config {
        probe_interval: Duration::from_secs(60),
        probe_timeout: Duration::from_secs(30),
        ..Config::local()
    }
}

/// Two engines that know each other, and the clock.
fn pair() -> (Engine, Engine, Instant) {
    let (mut a, mut b, mut now) = meet(&config(), Duration::from_millis(50));
    // Let the exchange that introduced them finish.
    now += Duration::from_secs(1);
    shuttle(&mut a, &mut b, now);
    (a, b, now)
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
    let (mut a, mut b, mut now) = pair();
    a.set("k", "v").unwrap();
    now += a.config.push_delay;
    a.handle_timeout(now);
    let first = drain(&mut a);
    let ids = push_ids(&first);
    assert_eq!(ids.len(), 1, "one tree push, to b: {first:?}");
    // Lost, with everything else a sends. The retry comes within the
    // fallback wait of 3 s.
    let deadline = now + Duration::from_secs(3);
    let again = loop {
        now = a.poll_timeout().max(now + Duration::from_millis(1));
        assert!(now <= deadline, "no retry within 3 s");
        a.handle_timeout(now);
        let sent = drain(&mut a);
        if !push_ids(&sent).is_empty() {
            break sent;
        }
    };
    assert_eq!(push_ids(&again), ids, "the same push, same id");
    assert_eq!(a.metrics().pushes_retried, 1);
    // Delivered this time: b applies it and answers with a PushAck.
    for t in &again {
        b.handle_packet(now, addr(1), &t.payload);
    }
    assert_eq!(b.get("a", "k").as_deref(), Some(&b"v"[..]));
    let answer = drain(&mut b);
    let acked: Vec<u32> = messages(&answer)
        .filter_map(|k| match k {
            Kind::PushAck(p) => Some(p.push_id),
            _ => None,
        })
        .collect();
    assert_eq!(acked, ids);
    for t in &answer {
        a.handle_packet(now, addr(2), &t.payload);
    }
    // Nothing more to retry, however long we wait.
    for _ in 0..100 {
        now += Duration::from_millis(100);
        a.handle_timeout(now);
        assert!(push_ids(&drain(&mut a)).is_empty());
    }
    let m = a.metrics();
    assert_eq!((m.pushes_retried, m.pushes_unacked), (1, 0));
}

#[test]
fn a_push_never_acknowledged_is_given_up_after_its_tries() {
    let (mut a, mut b, mut now) = pair();
    a.set("k", "v").unwrap();
    now += a.config.push_delay;
    let mut sent = Vec::new();
    // Every datagram of a's that carries a tree push is lost; the rest
    // (probes, anti-entropy) gets through both ways, so b stays healthy.
    // The eight sends go out at 0, 3, 6, 9, 12, 18, 30 and 54 s (waits
    // of 1, 1, 1, 1, 2, 4, 8 times 3 s); the last is given up 16 waits
    // later, at 102 s.
    let end = now + Duration::from_secs(120);
    while now < end {
        for e in [&mut a, &mut b] {
            if e.poll_timeout() <= now {
                e.handle_timeout(now);
            }
        }
        loop {
            let from_a = drain(&mut a);
            let from_b = drain(&mut b);
            if from_a.is_empty() && from_b.is_empty() {
                break;
            }
            for t in from_a {
                let ids = push_ids(std::slice::from_ref(&t));
                if ids.is_empty() {
                    b.handle_packet(now, addr(1), &t.payload);
                }
                sent.extend(ids);
            }
            for t in from_b {
                a.handle_packet(now, addr(2), &t.payload);
            }
        }
        now = a
            .poll_timeout()
            .min(b.poll_timeout())
            .max(now + Duration::from_millis(1))
            .min(end);
    }
    assert_eq!(a.member_counts().alive, 2, "b stayed alive");
    assert_eq!(sent.len(), usize::from(PUSH_TRIES));
    assert!(sent.iter().all(|&id| id == sent[0]));
    let m = a.metrics();
    assert_eq!(m.pushes_retried, u64::from(PUSH_TRIES) - 1);
    assert_eq!(m.pushes_unacked, 1);
}

#[test]
fn the_children_of_a_silent_tree_child_are_adopted() {
    // Six engines that all know each other.
    let mut now = Instant::now();
    let mut nodes: Vec<Engine> = (0..6u8)
        .map(|i| {
            let id = NodeId::new(format!("n{i}"), 1, addr(i + 1));
            let mut e = Engine::new(config(), id, 1400, u64::from(i), now).unwrap();
            if i > 0 {
                e.add_seeds([addr(1)]);
            }
            e
        })
        .collect();
    let index = |to: SocketAddr| {
        usize::from(
            to.ip()
                .to_string()
                .rsplit('.')
                .next()
                .unwrap()
                .parse::<u8>()
                .unwrap()
                - 1,
        )
    };
    // Delivers everything, except to and from `down`; returns what was sent.
    let route = |nodes: &mut Vec<Engine>, now: Instant, down: Option<usize>| {
        let mut log = Vec::new();
        loop {
            let mut sent = Vec::new();
            for (i, e) in nodes.iter_mut().enumerate() {
                sent.extend(std::iter::from_fn(|| e.poll_transmit()).map(|t| (i, t)));
            }
            if sent.is_empty() {
                return log;
            }
            for (i, t) in sent {
                let j = index(t.to);
                if Some(i) != down && Some(j) != down {
                    nodes[j].handle_packet(now, addr(i as u8 + 1), &t.payload);
                }
                log.push((i, t));
            }
        }
    };
    for _ in 0..200 {
        now += Duration::from_millis(50);
        for e in nodes.iter_mut() {
            if e.poll_timeout() <= now {
                e.handle_timeout(now);
            }
        }
        route(&mut nodes, now, None);
    }
    assert!(nodes.iter().all(|e| e.member_count() == 6));
    // The tree of n0's changes: the ring in key order, from n0.
    let mut ring: Vec<(u64, usize)> = nodes
        .iter()
        .enumerate()
        .map(|(i, e)| (e.local_id().key(), i))
        .collect();
    ring.sort_unstable();
    let root = ring.iter().position(|&(_, i)| i == 0).unwrap();
    let at = |rel: usize| ring[(root + rel) % 6].1;
    let (child, grandchild) = (at(1), at(5));
    // The child is down; n0 writes.
    nodes[0].set("k", "v").unwrap();
    let mut adopted = false;
    let end = now + Duration::from_secs(120);
    while now < end && !adopted {
        now = nodes
            .iter()
            .map(Engine::poll_timeout)
            .min()
            .unwrap()
            .max(now + Duration::from_millis(1));
        for e in nodes.iter_mut() {
            if e.poll_timeout() <= now {
                e.handle_timeout(now);
            }
        }
        let log = route(&mut nodes, now, Some(child));
        adopted = log.iter().any(|(i, t)| {
            *i == 0 && index(t.to) == grandchild && !push_ids(std::slice::from_ref(t)).is_empty()
        });
    }
    assert!(
        adopted,
        "n0 never sent a tree push to its silent child's child"
    );
    // When the fifth send goes unanswered (with the sixth), not before.
    assert_eq!(nodes[0].metrics().pushes_retried, u64::from(ADOPT_AFTER));
}
