//! Failure detection and membership lifecycle in the simulator: virtual
//! time, seeded RNG, no sleeps.
#![cfg(feature = "sim")]

use std::time::Duration;

use scuttlewire::sim::{NetConfig, Sim};
use scuttlewire::{Config, Event, MemberStatus};

fn cluster(n: usize, net: NetConfig, seed: u64, config: Config) -> Sim {
    let mut sim = Sim::new(net, seed);
    for i in 0..n {
        let seeds: Vec<usize> = if i == 0 { vec![] } else { vec![0] };
        sim.add_node(config.clone(), &seeds);
    }
    let joined = sim.run_until(Duration::from_secs(60), |s| {
        (0..n).all(|i| s.engine(i).is_some_and(|e| e.member_count() == n))
    });
    assert!(joined, "membership did not converge");
    sim
}

fn status(sim: &Sim, observer: usize, name: &str) -> Option<MemberStatus> {
    sim.engine(observer)?
        .members()
        .into_iter()
        .find(|m| m.id.name == name)
        .map(|m| m.status)
}

fn saw(sim: &Sim, observer: usize, name: &str, st: MemberStatus) -> bool {
    sim.events(observer).iter().any(
        |e| matches!(e, Event::MemberStatus { node, status } if node.name == name && *status == st),
    )
}

fn others(n: usize, skip: usize) -> impl Iterator<Item = usize> {
    (0..n).filter(move |i| *i != skip)
}

#[test]
fn every_member_detects_a_crashed_node() {
    let n = 32;
    let mut sim = cluster(n, NetConfig::default(), 11, Config::lan());
    sim.crash(5);
    let start = sim.elapsed();
    let detected = sim.run_until(start + Duration::from_secs(60), |s| {
        others(n, 5).all(|i| status(s, i, "n5") == Some(MemberStatus::Dead))
    });
    assert!(detected, "not every member declared n5 dead");
    for i in others(n, 5) {
        assert!(saw(&sim, i, "n5", MemberStatus::Dead));
        assert!(!saw(&sim, i, "n5", MemberStatus::Left));
        // The metrics agree with the events: n5 is the only death.
        let m = sim.engine(i).unwrap().metrics();
        assert_eq!(m.deaths_declared, 1, "n{i}");
        assert!(m.suspicions_started <= 1, "n{i}");
    }
}

#[test]
fn a_false_suspicion_is_refuted() {
    let n = 16;
    let mut sim = cluster(n, NetConfig::default(), 12, Config::lan());
    let everyone: Vec<usize> = others(n, 7).collect();
    // Cut n7 off long enough to be suspected, not long enough to die.
    sim.partition(&[7], &everyone);
    let start = sim.elapsed();
    let suspected = sim.run_until(start + Duration::from_secs(10), |s| {
        others(n, 7).any(|i| status(s, i, "n7") == Some(MemberStatus::Suspect))
    });
    assert!(suspected, "nobody suspected n7");
    sim.heal();
    sim.run_for(Duration::from_secs(30));
    for i in others(n, 7) {
        assert_eq!(
            status(&sim, i, "n7"),
            Some(MemberStatus::Alive),
            "observer n{i}"
        );
        assert!(
            !saw(&sim, i, "n7", MemberStatus::Dead),
            "n{i} declared n7 dead"
        );
    }
    let me = sim.engine(7).unwrap().members();
    let own = me.iter().find(|m| m.id.name == "n7").unwrap();
    assert!(own.incarnation >= 1, "n7 never raised its incarnation");
    let m = sim.engine(7).unwrap().metrics();
    assert!(m.refutations >= 1, "n7 counted no refutation");
    assert_eq!(m.refutations, own.incarnation, "one bump per refutation");
    let watchers =
        others(n, 7).filter(|i| sim.engine(*i).unwrap().metrics().suspicions_started > 0);
    assert!(watchers.count() >= 1);
}

#[test]
fn a_leave_is_reported_as_left_not_dead() {
    let n = 16;
    let mut sim = cluster(n, NetConfig::default(), 13, Config::lan());
    let told = sim.with_engine(4, |e, now| e.leave(now)).unwrap();
    assert!(told >= 3);
    sim.run_for(Duration::from_millis(500));
    sim.crash(4); // the process exits after leaving
    sim.run_for(Duration::from_secs(20));
    for i in others(n, 4) {
        assert!(
            saw(&sim, i, "n4", MemberStatus::Left),
            "n{i} did not see n4 leave"
        );
        assert!(
            !saw(&sim, i, "n4", MemberStatus::Dead),
            "n{i} declared n4 dead"
        );
    }
}

#[test]
fn dead_members_are_removed_and_their_state_collected() {
    let n = 12;
    let config = Config {
        dead_retention: Duration::from_secs(20),
        ..Config::lan()
    };
    let mut sim = cluster(n, NetConfig::default(), 14, config);
    sim.with_engine(3, |e, now| e.set(now, "k", "v").unwrap());
    sim.run_for(Duration::from_secs(5));
    assert!(sim.engine(0).unwrap().get("n3", "k").is_some());
    sim.crash(3);
    sim.run_for(Duration::from_secs(90));
    for i in others(n, 3) {
        let e = sim.engine(i).unwrap();
        assert_eq!(status(&sim, i, "n3"), None, "n{i} still lists n3");
        assert_eq!(e.get("n3", "k"), None, "n{i} still holds n3's state");
        assert!(
            sim.events(i)
                .iter()
                .any(|e| matches!(e, Event::MemberRemoved(id) if id.name == "n3"))
        );
        assert_eq!(e.metrics().members_removed, 1, "n{i}");
        assert_eq!(e.metrics().member_rumors_queued, 0, "n{i}: rumors linger");
    }
}

#[test]
fn a_restarted_node_is_not_killed_by_stale_dead_rumors() {
    let n = 12;
    let mut sim = cluster(n, NetConfig::default(), 15, Config::lan());
    sim.crash(6);
    let start = sim.elapsed();
    assert!(sim.run_until(start + Duration::from_secs(60), |s| {
        others(n, 6).all(|i| status(s, i, "n6") == Some(MemberStatus::Dead))
    }));
    // Restart while the dead rumors about generation 1 are still around.
    sim.restart(6, &[0]);
    sim.with_engine(6, |e, now| e.set(now, "back", "yes").unwrap());
    let new_generation = sim.engine(6).unwrap().local_id().generation;
    sim.run_for(Duration::from_secs(40));
    for i in others(n, 6) {
        let m = sim.engine(i).unwrap().members();
        let n6 = m.iter().find(|m| m.id.name == "n6").expect("n6 missing");
        assert_eq!(
            n6.id.generation, new_generation,
            "n{i} holds the old generation"
        );
        assert_eq!(
            n6.status,
            MemberStatus::Alive,
            "n{i} sees the new n6 as {:?}",
            n6.status
        );
        assert!(sim.engine(i).unwrap().get("n6", "back").is_some());
    }
}

#[test]
fn a_broadcast_reaches_every_healthy_member_once() {
    let n = 40;
    let mut sim = cluster(n, NetConfig::default(), 16, Config::lan());
    sim.crash(9);
    sim.with_engine(2, |e, now| e.broadcast(now, &b"deploy v2"[..]).unwrap());
    sim.run_for(Duration::from_secs(10));
    for i in others(n, 2).filter(|i| *i != 9) {
        let got = sim
            .events(i)
            .iter()
            .filter(|e| matches!(e, Event::Broadcast { origin, payload } if origin == "n2" && &payload[..] == b"deploy v2"))
            .count();
        assert_eq!(got, 1, "n{i} delivered the broadcast {got} times");
    }
}

#[test]
fn a_slow_node_does_not_get_healthy_members_declared_dead() {
    let n = 24;
    let mut sim = cluster(n, NetConfig::default(), 17, Config::lan());
    // Every datagram to or from n9 takes 400 ms more: its probes time out.
    sim.set_slow(9, Duration::from_millis(400));
    sim.run_for(Duration::from_secs(120));
    for i in 0..n {
        for j in others(n, 9) {
            let name = format!("n{j}");
            assert!(
                !saw(&sim, i, &name, MemberStatus::Dead),
                "n{i} declared healthy {name} dead"
            );
        }
    }
}

#[test]
fn no_false_deaths_at_five_percent_loss() {
    let n = 32;
    let net = NetConfig {
        loss: 0.05,
        ..NetConfig::default()
    };
    let mut sim = cluster(n, net, 18, Config::lan());
    sim.run_for(Duration::from_secs(120));
    for i in 0..n {
        for j in 0..n {
            let name = format!("n{j}");
            assert!(
                !saw(&sim, i, &name, MemberStatus::Dead),
                "n{i} declared {name} dead"
            );
        }
    }
}

#[test]
fn a_member_declared_dead_in_a_partition_is_told_and_comes_back() {
    let n = 12;
    let mut sim = cluster(n, NetConfig::default(), 19, Config::lan());
    let everyone: Vec<usize> = others(n, 2).collect();
    sim.partition(&[2], &everyone);
    let start = sim.elapsed();
    assert!(sim.run_until(start + Duration::from_secs(60), |s| {
        others(n, 2).all(|i| status(s, i, "n2") == Some(MemberStatus::Dead))
    }));
    sim.heal();
    sim.run_for(Duration::from_secs(20));
    for i in others(n, 2) {
        assert_eq!(status(&sim, i, "n2"), Some(MemberStatus::Alive), "n{i}");
    }
    let told: u64 = others(n, 2)
        .map(|i| sim.engine(i).unwrap().metrics().dead_told)
        .sum();
    assert!(told >= 1, "nobody told n2 it was held for dead");
    assert!(sim.engine(2).unwrap().metrics().refutations >= 1);
}
