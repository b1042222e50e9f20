//! Tree pushes, driven by hand on an explicit clock: acknowledged,
//! retried while the acknowledgement is missing, given up after
//! [`PUSH_TRIES`] sends.

use std::time::Duration;

use prost::Message as _;

use super::state::{ADOPT_AFTER, PEER_CAP, PUSH_TRIES};
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
            Kind::Ack(a) if a.push_id != 0 && a.push_id != UNTRACKED => Some(a.push_id),
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
    // The eight sends go out at 0, 3, 9, 21, 45, 93, 189 and 309 s (waits
    // of 1, 2, 4, 8, 16, 32 times 3 s, then the cap of four probe
    // timeouts, 120 s); the last is given up 120 s later, at 429 s.
    h.lose = |from, t| from == A && !push_ids(std::slice::from_ref(t)).is_empty();
    h.log.clear();
    let end = h.now + Duration::from_secs(500);
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

/// Announcement lines (node keys) in `ts`.
fn announced(ts: &[Transmit]) -> Vec<u64> {
    messages(ts)
        .filter_map(|k| match k {
            Kind::Syn(s) if s.announce => s.digest,
            _ => None,
        })
        .flat_map(|d| d.nodes)
        .collect()
}

#[test]
fn an_idle_write_is_pushed_at_once_and_a_burst_is_batched() {
    let mut h = pair();
    // Idle: the push leaves with the write itself, no timer needed.
    h.nodes[A].set(h.now, "k1", "v").unwrap();
    assert_eq!(push_ids(&h.drain(A)).len(), 1, "pushed at once");
    // Within push_delay of that push, writes wait for the batch.
    h.now += Duration::from_micros(500);
    h.nodes[A].set(h.now, "k2", "v").unwrap();
    h.nodes[A].set(h.now, "k3", "v").unwrap();
    assert!(push_ids(&h.drain(A)).is_empty(), "batched, not sent yet");
    let batch_by = h.now + h.nodes[A].config.push_delay;
    let sent = loop {
        h.now = h.nodes[A].poll_timeout().max(h.now);
        assert!(h.now <= batch_by, "the batch waits at most push_delay");
        h.nodes[A].handle_timeout(h.now);
        let sent = h.drain(A);
        if !push_ids(&sent).is_empty() {
            break sent;
        }
        h.now += Duration::from_micros(1);
    };
    assert_eq!(push_ids(&sent).len(), 1, "one push carries both writes");
    let entries: usize = messages(&sent)
        .filter_map(|k| match k {
            Kind::Ack(a) if a.push_id != 0 => Some(a.deltas),
            _ => None,
        })
        .flatten()
        .map(|d| d.entries.len())
        .sum();
    assert_eq!(entries, 2);
}

#[test]
fn a_peer_that_never_answers_is_sent_untracked_pushes_past_its_cap() {
    let mut h = pair();
    h.lose = |from, _| from == B;
    let writes = PEER_CAP as usize + 3;
    for i in 0..writes {
        // Far enough apart that each write is its own push.
        h.now += Duration::from_millis(10);
        h.nodes[A].set(h.now, &format!("k{i}"), "v").unwrap();
        h.deliver();
    }
    let m = h.nodes[A].metrics();
    assert_eq!(m.pushes_sent, writes as u64);
    assert_eq!(m.pushes_capped, 3, "tracked up to the cap, then sent once");
    // b got every write all the same.
    for i in 0..writes {
        assert!(h.nodes[B].get("a", &format!("k{i}")).is_some());
    }
}

/// `n` engines (local preset) that all know each other, settled for 2 s.
fn acquainted(n: usize) -> Harness {
    let mut h = Harness::new(1, Config::local(), 1400);
    for _ in 1..n {
        h.add(0);
    }
    assert!(h.run_until(Duration::from_secs(20), |h| {
        h.nodes.iter().all(|e| e.member_count() == n)
    }));
    h.run_for(Duration::from_secs(2));
    h
}

#[test]
fn a_member_the_tree_misses_learns_by_announcement_and_pulls() {
    let mut h = acquainted(5);
    // Every tree push to n3 is lost; everything else arrives.
    h.lose = |_, t| {
        t.to == crate::engine::harness::addr(3) && !push_ids(std::slice::from_ref(t)).is_empty()
    };
    h.log.clear();
    h.nodes[0].set(h.now, "k", "v").unwrap();
    assert!(h.run_until(Duration::from_secs(2), |h| {
        h.nodes[3].get("n0", "k").is_some()
    }));
    let m3 = h.nodes[3].metrics();
    assert!(m3.pulls >= 1, "n3 pulled what it was told of: {m3:?}");
    let n0 = h.nodes[0].local_id().key();
    let told = h
        .log
        .iter()
        .any(|(_, t)| h.index(t.to) == Some(3) && announced(std::slice::from_ref(t)).contains(&n0));
    assert!(told, "n3 was sent an announcement of n0's new version");
}

#[test]
fn measured_loss_sends_extra_copies_that_are_forwarded_along_the_tree() {
    for lossy in [false, true] {
        let mut h = acquainted(16);
        if lossy {
            // A third of the exchanges unanswered: ~18% of datagrams lost.
            for e in &mut h.nodes {
                for i in 0..64 {
                    e.loss.record(i % 3 == 0);
                }
            }
        }
        // Every tree push of the writer is lost; nothing else is.
        h.lose = |from, t| from == 0 && !push_ids(std::slice::from_ref(t)).is_empty();
        h.nodes[0].set(h.now, "k", "v").unwrap();
        // Delivered without moving the clock: no resend is due yet.
        h.deliver();
        let holding = h
            .nodes
            .iter()
            .filter(|e| e.get("n0", "k").is_some())
            .count();
        let m = h.nodes[0].metrics();
        assert_eq!(m.pushes_retried, 0);
        if lossy {
            // 1 + 5 copies keep 16 · 0.19^6 under 0.001: five extra
            // trees, in each of which the writer has up to four children.
            assert!((1..=20).contains(&m.push_copies), "{m:?}");
            // Only if the copies' receivers push on along the tree does
            // the write reach beyond them.
            assert_eq!(holding, 16, "every member has the write at once");
        } else {
            assert_eq!(m.push_copies, 0, "no loss measured, no copies");
            assert_eq!(holding, 1, "the write waits for its resends");
        }
    }
}

/// The packets in `ts` that carry `PushAck`s: the ids they acknowledge,
/// and how many other messages share the packet.
fn push_acks(ts: &[Transmit]) -> Vec<(Vec<u32>, usize)> {
    ts.iter()
        .filter_map(|t| {
            let kinds: Vec<Kind> = proto::Packet::decode(t.payload.clone())
                .expect("engines send valid packets")
                .messages
                .into_iter()
                .filter_map(|m| m.kind)
                .collect();
            let ids: Vec<u32> = kinds
                .iter()
                .filter_map(|k| match k {
                    Kind::PushAck(a) => Some(a.push_id),
                    _ => None,
                })
                .collect();
            (!ids.is_empty()).then(|| (ids.clone(), kinds.len() - ids.len()))
        })
        .collect()
}

#[test]
fn pushes_read_together_are_acknowledged_together_or_ride_on_a_packet_to_their_sender() {
    let mut h = pair();
    // Two pushes from a, read by b before b sends anything.
    h.nodes[A].set(h.now, "k1", "v").unwrap();
    let first = h.drain(A);
    h.now += h.nodes[A].config.push_delay;
    h.nodes[A].set(h.now, "k2", "v").unwrap();
    let second = h.drain(A);
    let ids = [push_ids(&first), push_ids(&second)].concat();
    assert_eq!(ids.len(), 2, "two pushes: {first:?} {second:?}");
    for t in first.iter().chain(&second) {
        h.receive(B, A, &t.payload);
    }
    let answer = h.drain(B);
    assert_eq!(
        push_acks(&answer)
            .into_iter()
            .map(|a| a.0)
            .collect::<Vec<_>>(),
        vec![ids.clone()],
        "one packet acknowledges both"
    );
    assert_eq!(answer.len(), 1, "one datagram: {answer:?}");
    assert_eq!(h.nodes[B].metrics().push_acks_merged, 1);
    for t in &answer {
        h.receive(A, B, &t.payload);
    }

    // A third push, read while b has news of its own for a: the
    // acknowledgement rides on b's push instead of a datagram of its own.
    h.now += h.nodes[A].config.push_delay;
    h.nodes[A].set(h.now, "k3", "v").unwrap();
    let third = h.drain(A);
    let third_id = push_ids(&third);
    assert_eq!(third_id.len(), 1);
    for t in &third {
        h.receive(B, A, &t.payload);
    }
    // (b forwarded a's news just now: its own write is pushed at once
    // only past the batching delay.)
    h.now += h.nodes[B].config.push_delay;
    h.nodes[B].set(h.now, "mine", "v").unwrap();
    let answer = h.drain(B);
    assert_eq!(answer.len(), 1, "b's push alone: {answer:?}");
    assert_eq!(push_ids(&answer).len(), 1, "b's own push");
    let acks = push_acks(&answer);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].0, third_id);
    assert!(acks[0].1 >= 1, "on the packet carrying b's push");
    assert_eq!(h.nodes[B].metrics().push_acks_merged, 2);
    for t in &answer {
        h.receive(A, B, &t.payload);
    }
    assert_eq!(h.nodes[A].get("b", "mine").as_deref(), Some(&b"v"[..]));

    // Every push of a was acknowledged: nothing is resent.
    for _ in 0..100 {
        h.now += Duration::from_millis(100);
        h.nodes[A].handle_timeout(h.now);
        assert!(push_ids(&h.drain(A)).is_empty(), "a resend");
    }
    let m = h.nodes[A].metrics();
    assert_eq!(
        (m.pushes_sent, m.pushes_retried, m.pushes_unacked),
        (3, 0, 0)
    );
}

#[test]
fn an_acknowledgement_leaves_ahead_of_the_pushes_it_caused() {
    let mut h = acquainted(6);
    h.nodes[A].set(h.now, "k", "v").unwrap();
    let pushes = h.drain(A);
    let mut forwarders = 0;
    for t in pushes
        .iter()
        .filter(|t| !push_ids(std::slice::from_ref(*t)).is_empty())
    {
        let to = h.index(t.to).expect("a harness node");
        h.receive(to, A, &t.payload);
        let out = h.drain(to);
        if push_ids(&out).is_empty() {
            continue; // a leaf of the tree: nothing to forward
        }
        forwarders += 1;
        assert_eq!(out[0].to, h.nodes[A].local_id().addr, "{out:?}");
        assert_eq!(push_acks(&out[..1]).len(), 1, "the acknowledgement first");
    }
    // Six members, four children each: one of a's children has a child.
    assert_eq!(forwarders, 1);
}
