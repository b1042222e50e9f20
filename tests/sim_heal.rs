//! Self-healing membership in the simulator: partitions of any length
//! merge back through reconnects, and a member that really died stays
//! dead. Virtual time, seeded RNG, no sleeps. (That a refutation whose
//! rumor was lost still arrives through digests is shown at engine level,
//! in `src/engine/tests.rs`.)
#![cfg(feature = "sim")]

use std::time::Duration;

use scuttlewire::sim::{NetConfig, Sim};
use scuttlewire::{Config, Event, MemberStatus};

fn cluster(n: usize, seed: u64, config: &Config) -> Sim {
    let mut sim = Sim::new(NetConfig::default(), seed);
    sim.record_events(true);
    for i in 0..n {
        let seeds: Vec<usize> = if i == 0 { vec![] } else { vec![0] };
        sim.add_node(config.clone(), &seeds);
    }
    let joined = sim.run_until(Duration::from_secs(120), |s| all_see_alive(s, 0..n, n));
    assert!(joined, "membership did not converge");
    sim
}

/// Whether every node of `nodes` holds exactly `n` members, all alive.
fn all_see_alive(sim: &Sim, nodes: impl IntoIterator<Item = usize>, n: usize) -> bool {
    nodes.into_iter().all(|i| {
        sim.engine(i).is_some_and(|e| {
            let c = e.member_counts();
            e.member_count() == n && c.alive == n
        })
    })
}

fn views(sim: &Sim, n: usize) -> Vec<(usize, usize)> {
    (0..n)
        .map(|i| {
            let e = sim.engine(i);
            (
                e.map_or(0, |e| e.member_count()),
                e.map_or(0, |e| e.member_counts().alive),
            )
        })
        .collect()
}

/// Splits `n` nodes into `0..k | k..n` for `length`, checks both sides
/// removed each other, heals, and returns how long the merge took.
fn split_and_heal(sim: &mut Sim, n: usize, k: usize, length: Duration) -> Duration {
    let left: Vec<usize> = (0..k).collect();
    let right: Vec<usize> = (k..n).collect();
    sim.partition(&left, &right);
    let start = sim.elapsed();
    sim.run_for(length);
    // Each side holds the other down: dead if the split was short, removed
    // if it lasted past dead_retention.
    for i in 0..n {
        let own = if i < k { k } else { n - k };
        let alive = sim.engine(i).unwrap().member_counts().alive;
        assert_eq!(alive, own, "n{i}: {:?}", views(sim, n));
    }
    assert!(sim.elapsed() >= start + length);
    sim.heal();
    let healed_at = sim.elapsed();
    let seen: Vec<usize> = (0..n).map(|i| sim.events(i).len()).collect();
    let merged = sim.run_until(healed_at + Duration::from_secs(600), |s| {
        all_see_alive(s, 0..n, n)
    });
    assert!(merged, "the cluster stayed split: {:?}", views(sim, n));
    // Merging raises no suspicion of a member nobody lost: each side
    // suspects no one of its own side.
    for (i, &from) in seen.iter().enumerate() {
        let side = if i < k { 0..k } else { k..n };
        for e in &sim.events(i)[from..] {
            if let Event::MemberStatus { node, status } = e {
                let j: usize = node.name[1..].parse().unwrap();
                assert!(
                    !(side.contains(&j) && *status != MemberStatus::Alive),
                    "n{i} saw {node} {status:?} while merging"
                );
            }
        }
    }
    sim.elapsed() - healed_at
}

#[test]
fn a_two_three_split_ten_times_dead_retention_long_heals() {
    let config = Config::local();
    let mut sim = cluster(5, 21, &config);
    let took = split_and_heal(&mut sim, 5, 2, config.dead_retention * 10);
    eprintln!("2 | 3 split healed in {took:?}");
    // Within one reconnect interval plus a few rounds.
    assert!(
        took <= config.reconnect_interval + Duration::from_secs(1),
        "{took:?}"
    );
    // And it stays merged: no member is suspected for the next minute.
    let before: Vec<u64> = (0..5)
        .map(|i| sim.engine(i).unwrap().metrics().suspicions_started)
        .collect();
    sim.run_for(Duration::from_secs(60));
    assert!(all_see_alive(&sim, 0..5, 5));
    let after: Vec<u64> = (0..5)
        .map(|i| sim.engine(i).unwrap().metrics().suspicions_started)
        .collect();
    assert_eq!(before, after, "suspicions after the merge");
}

#[test]
fn a_split_shorter_than_dead_retention_heals_too() {
    let config = Config::local();
    let mut sim = cluster(5, 25, &config);
    let took = split_and_heal(&mut sim, 5, 2, config.dead_retention / 2);
    eprintln!("2 | 3 split of dead_retention / 2 healed in {took:?}");
    assert!(
        took <= config.reconnect_interval + Duration::from_secs(1),
        "{took:?}"
    );
}

#[test]
fn a_fifty_fifty_split_ten_times_dead_retention_long_heals() {
    let config = Config::lan();
    let mut sim = cluster(100, 22, &config);
    let took = split_and_heal(&mut sim, 100, 50, config.dead_retention * 10);
    eprintln!("50 | 50 split healed in {took:?}");
    assert!(
        took <= config.reconnect_interval + Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn a_member_that_really_died_stays_dead() {
    let config = Config::local();
    let n = 6;
    let mut sim = cluster(n, 23, &config);
    sim.crash(3);
    sim.run_for(config.dead_retention * 10);
    for i in (0..n).filter(|&i| i != 3) {
        let e = sim.engine(i).unwrap();
        assert_eq!(e.member_count(), n - 1, "n{i} still lists n3");
        assert!(e.metrics().reconnects > 0, "n{i} never tried to reconnect");
        // Dead once, removed once, never back.
        let about: Vec<&Event> = sim
            .events(i)
            .iter()
            .filter(|e| match e {
                Event::MemberStatus { node, .. } | Event::MemberRemoved(node) => node.name == "n3",
                Event::MemberJoined(node) => node.name == "n3",
                _ => false,
            })
            .collect();
        let dead = about
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::MemberStatus {
                        status: MemberStatus::Dead,
                        ..
                    }
                )
            })
            .count();
        let back = about
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::MemberStatus {
                        status: MemberStatus::Alive,
                        ..
                    }
                ) || matches!(e, Event::MemberJoined(_))
            })
            .count();
        assert_eq!(dead, 1, "n{i}: {about:?}");
        // n{i} may have met n3 at join (MemberJoined) but never after.
        assert!(back <= 1, "n{i}: {about:?}");
    }
    // A restart on the same address joins as a new generation.
    sim.restart(3, &[0]);
    let rejoined = sim.run_until(sim.elapsed() + Duration::from_secs(30), |s| {
        all_see_alive(s, 0..n, n)
    });
    assert!(rejoined, "{:?}", views(&sim, n));
}
