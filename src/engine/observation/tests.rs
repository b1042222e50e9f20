//! Observations: what the engine measures, and the queue cap.

use std::time::Duration;

use super::*;
use crate::Config;
use crate::engine::harness::Harness;
use crate::engine::{Engine, MemberStatus};

fn observations(e: &mut Engine) -> Vec<Observation> {
    std::iter::from_fn(|| e.poll_observation()).collect()
}

/// The suspicions that ended since the last look: how long, and how.
fn suspicions_ended(e: &mut Engine) -> Vec<(Duration, SuspicionOutcome)> {
    observations(e)
        .into_iter()
        .filter_map(|o| match o {
            Observation::SuspicionEnded { after, outcome } => Some((after, outcome)),
            _ => None,
        })
        .collect()
}

fn status_of_b(a: &Engine) -> Option<MemberStatus> {
    a.members()
        .into_iter()
        .find(|m| m.id.name == "b")
        .map(|m| m.status)
}

/// Engines `a` (node 0) and `b` (node 1) that know each other.
fn pair() -> Harness {
    Harness::pair(Config::local(), Duration::from_millis(10))
}

/// Runs in steps of 10 ms: both nodes with every datagram delivered when
/// `connected`, else `a` alone with its datagrams lost (`b` is paused),
/// until `done(a)` or `limit` passes.
fn run_until(
    h: &mut Harness,
    connected: bool,
    limit: Duration,
    mut done: impl FnMut(&mut Engine) -> bool,
) -> bool {
    let end = h.now + limit;
    while h.now < end {
        if connected {
            h.step(Duration::from_millis(10));
        } else {
            h.now += Duration::from_millis(10);
            h.fire(0);
            h.drain(0);
        }
        if done(&mut h.nodes[0]) {
            return true;
        }
    }
    false
}

#[test]
fn nothing_is_recorded_until_observing_is_turned_on() {
    let mut h = pair();
    run_until(&mut h, true, Duration::from_secs(2), |_| false);
    assert_eq!(h.nodes[0].poll_observation(), None);
}

#[test]
fn a_probe_round_trip_and_the_suspicions_that_end_are_observed() {
    let mut h = pair();
    h.nodes[0].set_observing(true);
    // A probe answered: one round-trip sample. Datagrams are delivered
    // within the step they are sent in, so the sample is under 10 ms.
    let mut seen = Vec::new();
    let answered = run_until(&mut h, true, Duration::from_secs(2), |a| {
        seen.extend(observations(a));
        seen.iter().any(|o| matches!(o, Observation::ProbeRtt(_)))
    });
    assert!(answered, "no probe round trip observed: {seen:?}");
    let rtt = seen.iter().find_map(|o| match o {
        Observation::ProbeRtt(d) => Some(*d),
        _ => None,
    });
    assert!(
        rtt.is_some_and(|d| d < Duration::from_millis(10)),
        "{rtt:?}"
    );

    // b goes silent: a suspects it, then b hears of it and refutes.
    let suspected = run_until(&mut h, false, Duration::from_secs(5), |a| {
        status_of_b(a) == Some(MemberStatus::Suspect)
    });
    assert!(suspected, "a never suspected b");
    let started = h.now;
    let refuted = run_until(&mut h, true, Duration::from_secs(5), |a| {
        status_of_b(a) == Some(MemberStatus::Alive)
    });
    assert!(refuted, "b never refuted");
    let ended = suspicions_ended(&mut h.nodes[0]);
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].1, SuspicionOutcome::Refuted);
    assert!(ended[0].0 <= h.now - started + Duration::from_millis(10));

    // Silent again, for good: suspected, then declared dead when the
    // suspicion times out.
    let dead = run_until(&mut h, false, Duration::from_secs(30), |a| {
        status_of_b(a) == Some(MemberStatus::Dead)
    });
    assert!(dead, "a never declared b dead");
    let ended = suspicions_ended(&mut h.nodes[0]);
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].1, SuspicionOutcome::Dead);
    let (min, _) = h.nodes[0].suspicion_bounds();
    assert!(
        ended[0].0 >= min,
        "{:?} < the shortest suspicion {min:?}",
        ended[0].0
    );
}

#[test]
fn the_queue_keeps_the_newest_samples_up_to_its_cap() {
    let mut h = pair();
    let a = &mut h.nodes[0];
    a.set_observing(true);
    let n = OBSERVATION_CAP as u64 + 10;
    for i in 0..n {
        a.observations
            .record(Observation::PushAcked(Duration::from_millis(i)));
    }
    let kept = observations(a);
    assert_eq!(kept.len(), OBSERVATION_CAP);
    assert_eq!(kept[0], Observation::PushAcked(Duration::from_millis(10)));
    a.observations
        .record(Observation::PushAcked(Duration::ZERO));
    a.set_observing(false);
    assert_eq!(a.poll_observation(), None, "turning it off discards");
}
