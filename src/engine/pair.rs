//! Two engines wired together by hand on an explicit clock: the setup of
//! the engine tests that drop or deliver single datagrams (pushes, probes).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::{Engine, NodeId, Transmit};
use crate::Config;

/// Address of test node `i` (a is 1, b is 2).
pub(super) fn addr(i: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 7946)
}

/// Engines `a` and `b` running `config`, `b` seeded with `a`, run in steps
/// of `step` until they know each other; returns them and the clock.
pub(super) fn meet(config: &Config, step: Duration) -> (Engine, Engine, Instant) {
    let mut now = Instant::now();
    let mut a = Engine::new(config.clone(), NodeId::new("a", 1, addr(1)), 1400, 1, now).unwrap();
    let mut b = Engine::new(config.clone(), NodeId::new("b", 1, addr(2)), 1400, 2, now).unwrap();
    b.add_seeds([addr(1)]);
    for _ in 0..200 {
        now += step;
        for e in [&mut a, &mut b] {
            if e.poll_timeout() <= now {
                e.handle_timeout(now);
            }
        }
        shuttle(&mut a, &mut b, now);
        if a.member_count() == 2 && b.member_count() == 2 {
            return (a, b, now);
        }
    }
    panic!("the two engines never met");
}

/// Everything `e` has queued to send.
pub(super) fn drain(e: &mut Engine) -> Vec<Transmit> {
    std::iter::from_fn(|| e.poll_transmit()).collect()
}

/// Delivers every pending datagram between `a` and `b`, both ways, until
/// both are quiet.
pub(super) fn shuttle(a: &mut Engine, b: &mut Engine, now: Instant) {
    loop {
        let (from_a, from_b) = (drain(a), drain(b));
        if from_a.is_empty() && from_b.is_empty() {
            return;
        }
        for t in from_a {
            b.handle_packet(now, addr(1), &t.payload);
        }
        for t in from_b {
            a.handle_packet(now, addr(2), &t.payload);
        }
    }
}
