//! The direct probe's second chance, driven by hand on an explicit clock:
//! when a ping goes unanswered the prober pings the target again alongside
//! the indirect probes, so one lost datagram does not start a suspicion.

use std::time::{Duration, Instant};

use prost::Message as _;

use super::*;
use crate::engine::Transmit;
use crate::engine::harness::Harness;

/// The prober and its target.
const A: usize = 0;
const B: usize = 1;

fn pair() -> Harness {
    Harness::pair(Config::local(), Duration::from_millis(10))
}

/// Sequence numbers of the pings in `ts`.
fn pings(ts: &[Transmit]) -> Vec<u64> {
    ts.iter()
        .flat_map(|t| {
            proto::Packet::decode(t.payload.clone())
                .expect("engines send valid packets")
                .messages
        })
        .filter_map(|m| match m.kind {
            Some(Kind::Ping(p)) => Some(p.seq),
            _ => None,
        })
        .collect()
}

/// Runs `a`'s timers alone (b hears nothing, and its timers stand still)
/// until it sends a ping; returns the ping's sequence number and when it
/// went. The datagrams are dropped.
fn next_ping(h: &mut Harness) -> (u64, Instant) {
    for _ in 0..1000 {
        h.now += Duration::from_millis(1);
        h.fire(A);
        if let Some(&seq) = pings(&h.drain(A)).first() {
            return (seq, h.now);
        }
    }
    panic!("a sent no ping within a second");
}

fn status_of_b(a: &Engine) -> MemberStatus {
    a.members()
        .into_iter()
        .find(|m| m.id.name == "b")
        .map(|m| m.status)
        .expect("a knows b")
}

/// What became of a probe whose first ping was lost.
struct Outcome {
    /// a went on to suspect b.
    suspected: bool,
    /// a's decayed count of lost first pings afterwards.
    lost: f64,
}

/// Loses a's first ping to b, then delivers (or loses) the second one,
/// with a overloaded in between or not.
fn lose_a_ping(deliver_second: bool, overloaded: bool) -> Outcome {
    let mut h = pair();
    let before = h.nodes[A].metrics().suspicions_started;
    let (first, t1) = next_ping(&mut h);
    // The probe times out: a pings b again (there are no relays to ask in
    // a cluster of two), within the same probe period.
    let (second, t2) = next_ping(&mut h);
    assert_ne!(second, first);
    assert!(
        t2 - t1 < Config::local().probe_interval,
        "the second ping belongs to the same probe"
    );
    if overloaded {
        h.nodes[A].note_overload(h.now);
    }
    if deliver_second {
        let ping = proto::Packet {
            version: crate::wire::PROTOCOL_VERSION,
            cluster: crate::wire::cluster_id(&Config::local().cluster),
            from: Some(h.nodes[A].local_id().to_proto()),
            messages: vec![super::ping(second, "b", 0)],
            from_key: 0,
        };
        h.receive(B, A, &ping.encode_to_vec());
        h.deliver();
    }
    // The probe period ends; the next probe round judges this one.
    next_ping(&mut h);
    let a = &h.nodes[A];
    Outcome {
        suspected: a.metrics().suspicions_started > before || status_of_b(a) != MemberStatus::Alive,
        lost: a.loss.counts().0,
    }
}

#[test]
fn an_answer_to_the_second_ping_saves_the_target_from_suspicion() {
    assert!(!lose_a_ping(true, false).suspected);
}

#[test]
fn losing_both_pings_still_starts_a_suspicion() {
    assert!(lose_a_ping(false, false).suspected);
}

#[test]
fn a_lost_first_ping_is_a_loss_sample_only_if_the_target_answered_and_a_was_not_overloaded() {
    // The target answered the second ping: the first was lost on the way.
    assert_eq!(lose_a_ping(true, false).lost, 1.0);
    // The target never answered: it may be down, which is not loss.
    assert_eq!(lose_a_ping(false, false).lost, 0.0);
    // a was overloaded during the probe: its own slowness is not loss.
    assert_eq!(lose_a_ping(true, true).lost, 0.0);
}
