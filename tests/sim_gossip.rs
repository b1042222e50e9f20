//! Scuttlebutt convergence in the deterministic simulator.
#![cfg(feature = "sim")]

use std::time::Duration;

use scuttlewire::Config;
use scuttlewire::sim::{NetConfig, Sim};

fn cluster(n: usize, net: NetConfig, seed: u64) -> Sim {
    let mut sim = Sim::new(net, seed);
    sim.record_events(false);
    for i in 0..n {
        let seeds: Vec<usize> = if i == 0 { vec![] } else { vec![0] };
        sim.add_node(Config::lan(), &seeds);
    }
    sim
}

fn all_have(sim: &Sim, owner: &str, key: &str, value: &[u8]) -> bool {
    (0..sim.len()).all(|i| {
        sim.engine(i)
            .and_then(|e| e.get(owner, key))
            .is_some_and(|v| v == value)
    })
}

fn all_know(sim: &Sim, n: usize) -> bool {
    (0..sim.len()).all(|i| sim.engine(i).is_some_and(|e| e.member_count() == n))
}

#[test]
fn fifty_nodes_converge_after_one_set() {
    let mut sim = cluster(50, NetConfig::default(), 1);
    assert!(
        sim.run_until(Duration::from_secs(60), |s| all_know(s, 50)),
        "membership did not converge"
    );
    sim.with_engine(7, |e, now| e.set(now, "color", "blue").unwrap());
    let start = sim.elapsed();
    assert!(
        sim.run_until(start + Duration::from_secs(30), |s| all_have(
            s, "n7", "color", b"blue"
        )),
        "value did not reach every node"
    );
    assert!(sim.stats().max_packet <= 1400);
}

#[test]
fn five_percent_loss_still_converges() {
    let net = NetConfig {
        loss: 0.05,
        ..NetConfig::default()
    };
    let mut sim = cluster(50, net, 2);
    assert!(sim.run_until(Duration::from_secs(60), |s| all_know(s, 50)));
    sim.with_engine(3, |e, now| e.set(now, "k", "v").unwrap());
    let start = sim.elapsed();
    assert!(sim.run_until(start + Duration::from_secs(30), |s| all_have(
        s, "n3", "k", b"v"
    )));
    assert!(sim.stats().packets_dropped > 0, "loss was not applied");
}

/// Pushes along the broadcast tree are acknowledged and resent after a
/// wait with a floor (10 ms on a LAN) that doubles at each resend, so a
/// lost datagram costs tens of milliseconds, not a gossip round. At 20%
/// loss, over 10 seeds × 5 writes to 64 nodes, the median write reaches
/// everyone within half a gossip round (100 ms) and the slowest within 5
/// rounds (1 s). The tail is real: a push and its resends can be lost
/// three or four times in a row somewhere in a 64-node tree (measured:
/// slowest 615 ms; the same spread before the digest-window change, so
/// no single seed's run is promised a bound).
#[test]
fn at_twenty_percent_loss_writes_reach_everyone_in_tens_of_milliseconds() {
    let mut took = Vec::new();
    for seed in 1..=10 {
        let mut sim = cluster(64, NetConfig::default(), seed);
        assert!(sim.run_until(Duration::from_secs(60), |s| all_know(s, 64)));
        // Let round-trip samples accumulate from probes.
        sim.run_for(Duration::from_secs(10));
        sim.net_mut().loss = 0.2;
        let dropped = sim.stats().packets_dropped;
        for (t, origin) in [5, 17, 33, 48, 60].into_iter().enumerate() {
            let key = format!("k{t}");
            sim.with_engine(origin, |e, now| e.set(now, &key, "v").unwrap());
            let start = sim.elapsed();
            let owner = format!("n{origin}");
            assert!(
                sim.run_until(start + Duration::from_secs(1), |s| all_have(
                    s, &owner, &key, b"v"
                )),
                "seed {seed}: write {t} from {owner} did not reach all 64 nodes within 1 s"
            );
            took.push(sim.elapsed() - start);
            sim.run_for(Duration::from_secs(1));
        }
        assert!(
            sim.stats().packets_dropped > dropped + 100,
            "loss was not applied"
        );
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median <= Duration::from_millis(100),
        "median {median:?} of {took:?}"
    );
}

#[test]
fn a_partition_heals() {
    let mut sim = cluster(20, NetConfig::default(), 3);
    assert!(sim.run_until(Duration::from_secs(60), |s| all_know(s, 20)));
    let left: Vec<usize> = (0..10).collect();
    let right: Vec<usize> = (10..20).collect();
    sim.partition(&left, &right);
    sim.with_engine(2, |e, now| e.set(now, "side", "left").unwrap());
    sim.with_engine(15, |e, now| e.set(now, "side", "right").unwrap());
    sim.run_for(Duration::from_secs(10));
    // Cut off: the right side has not heard of the left's write.
    for i in 10..20 {
        assert_eq!(sim.engine(i).unwrap().get("n2", "side"), None);
    }
    sim.heal();
    let start = sim.elapsed();
    assert!(sim.run_until(start + Duration::from_secs(30), |s| {
        all_have(s, "n2", "side", b"left") && all_have(s, "n15", "side", b"right")
    }));
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut sim = cluster(
            30,
            NetConfig {
                loss: 0.1,
                jitter: Duration::from_millis(3),
                ..NetConfig::default()
            },
            seed,
        );
        sim.run_for(Duration::from_secs(5));
        sim.with_engine(1, |e, now| e.set(now, "a", "b").unwrap());
        sim.run_for(Duration::from_secs(5));
        sim.stats().clone()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}
