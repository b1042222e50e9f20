//! 1,000 engines in one process, 1,400-byte budget.
#![cfg(feature = "sim")]

use std::time::Duration;

use scuttlewire::Config;
use scuttlewire::sim::{NetConfig, Sim};

/// Anti-entropy alone: the Scuttlebutt push-pull bound applies here
/// (log3 N + log2 ln N ≈ 9 rounds at N = 1,000).
#[test]
fn thousand_engines_learn_a_key_by_anti_entropy_alone() {
    let config = Config {
        push_fanout: 0,
        ..Config::lan()
    };
    thousand_engines(config);
}

/// With eager pushes of fresh changes (the default).
#[test]
fn thousand_engines_learn_a_key_with_eager_push() {
    thousand_engines(Config::lan());
}

fn thousand_engines(config: Config) {
    let n = 1000;
    let mut sim = Sim::new(NetConfig::default(), 42);
    sim.record_events(false);
    for i in 0..n {
        // Each joins through one of the first few nodes.
        let seeds: Vec<usize> = if i == 0 {
            vec![]
        } else if i < 8 {
            vec![0]
        } else {
            vec![i % 8]
        };
        sim.add_node(config.clone(), &seeds);
    }
    let joined = sim.run_until(Duration::from_secs(120), |s| {
        (0..n).all(|i| s.engine(i).is_some_and(|e| e.member_count() == n))
    });
    assert!(joined, "membership did not converge in 120 s");
    let join_time = sim.elapsed();
    sim.with_engine(123, |e, now| e.set(now, "hello", "world").unwrap());
    let start = sim.elapsed();
    let reached = sim.run_until(start + Duration::from_secs(60), |s| {
        (0..n).all(|i| s.engine(i).and_then(|e| e.get("n123", "hello")).is_some())
    });
    assert!(reached, "the key did not reach every engine");
    let took = sim.elapsed() - start;
    let rounds = took.as_secs_f64() / Config::lan().gossip_interval.as_secs_f64();
    println!(
        "n={n} push_fanout={} join={join_time:?} propagation={took:?} rounds={rounds:.1} max_packet={} budget=1400",
        config.push_fanout,
        sim.stats().max_packet
    );
    assert!(
        sim.stats().max_packet <= 1400,
        "a packet exceeded the budget"
    );
    for i in 0..n {
        assert!(sim.engine(i).unwrap().metrics().largest_packet_sent <= 1400);
    }
}
