//! Two loose engines on an explicit clock, for tests that hold `a` and `b`
//! by value rather than a [`Harness`]: thin conveniences over the harness
//! and its pump. New tests should use [`Harness`] (its
//! [`pair`](Harness::pair) gives the same two engines).

use std::time::{Duration, Instant};

use super::harness::{self, Harness};
use super::{Engine, Transmit};
use crate::Config;

/// Engines `a` and `b` running `config`, `b` seeded with `a`, run in steps
/// of `step` until they know each other; returns them and the clock.
pub(super) fn meet(config: &Config, step: Duration) -> (Engine, Engine, Instant) {
    let mut h = Harness::pair(config.clone(), step);
    let b = h.nodes.pop().expect("b");
    let a = h.nodes.pop().expect("a");
    (a, b, h.now)
}

/// Everything `e` has queued to send (its events are dropped).
pub(super) fn drain(e: &mut Engine) -> Vec<Transmit> {
    harness::drain(e, drop).transmits
}

/// Delivers every pending datagram between `a` and `b`, both ways, in the
/// harness's rounds, until both are quiet.
pub(super) fn shuttle(a: &mut Engine, b: &mut Engine, now: Instant) {
    let (from_a, from_b) = (a.local_id().addr, b.local_id().addr);
    loop {
        let (to_b, to_a) = (drain(a), drain(b));
        if to_b.is_empty() && to_a.is_empty() {
            return;
        }
        for t in to_b {
            b.handle_packet(now, from_a, &t.payload);
        }
        for t in to_a {
            a.handle_packet(now, from_b, &t.payload);
        }
    }
}
