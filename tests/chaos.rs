//! Real UDP clusters (127.0.0.1:0) through the `Chaos` decorator:
//! partitions heal, heavy loss still converges, and duplicated or
//! reordered datagrams do no harm. Real time, so every wait is a bounded
//! poll for a condition, never a fixed sleep standing in for an assertion.

mod common;
use std::net::SocketAddr;
use std::time::Duration;

use scuttlewire::transport::{Chaos, ChaosControl, Transport, Udp};
use scuttlewire::{Config, MemberStatus, Node};

/// Long enough for a slow CI machine; a healthy run takes a fraction.
const PATIENCE: Duration = Duration::from_secs(20);

struct Cluster {
    nodes: Vec<Node>,
    controls: Vec<ChaosControl>,
    addrs: Vec<SocketAddr>,
}

impl Cluster {
    /// `n` nodes named `n0..`, each on its own UDP socket wrapped in a
    /// `Chaos`, all seeded with the first. `setup` configures each chaos
    /// before its node starts.
    async fn start(n: usize, setup: impl Fn(&ChaosControl)) -> Cluster {
        let mut cluster = Cluster {
            nodes: Vec::new(),
            controls: Vec::new(),
            addrs: Vec::new(),
        };
        for i in 0..n {
            let udp = Udp::bind(loopback()).await.expect("bind loopback UDP");
            let chaos = Chaos::new(udp, 100 + i as u64);
            setup(&chaos.control());
            cluster.addrs.push(chaos.local_addr());
            cluster.controls.push(chaos.control());
            let config = Config {
                rng_seed: Some(i as u64),
                ..Config::local().with_name(format!("n{i}"))
            };
            let node = Node::builder(config)
                .seeds(cluster.addrs.first().copied())
                .start(chaos)
                .await
                .expect("start node");
            cluster.nodes.push(node);
        }
        cluster
    }

    /// Polls until `check` holds on every node, or `PATIENCE` runs out.
    async fn eventually(&self, check: impl AsyncFn(&Node) -> bool) -> bool {
        eventually_on(&self.nodes, check).await
    }

    async fn shutdown(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn eventually_on(nodes: &[Node], check: impl AsyncFn(&Node) -> bool) -> bool {
    common::eventually(nodes, PATIENCE, check).await
}

async fn all_alive(n: &Node, count: usize) -> bool {
    let members = n.members().await.expect("node running");
    members.len() == count && members.iter().all(|m| m.status == MemberStatus::Alive)
}

async fn has(n: &Node, owner: &str, key: &str, value: &str) -> bool {
    n.get(owner, key).await.expect("node running").as_deref() == Some(value.as_bytes())
}

/// Needs the exported suite: `cargo test --features testing`.
#[cfg(feature = "testing")]
#[tokio::test]
async fn transparent_chaos_over_udp_conforms() {
    let mut seed = 0;
    scuttlewire::transport::conformance::run_all(|| {
        seed += 1;
        async move {
            let udp = Udp::bind(loopback()).await.expect("bind loopback UDP");
            Chaos::new(udp, seed)
        }
    })
    .await;
}

#[tokio::test]
async fn a_partition_keeps_news_on_its_side_until_healed() {
    partition_and_heal(MemberStatus::Suspect).await;
}

/// Like the test above, but the partition lasts until members are
/// declared dead, so healing has to go through the dead-member retries
/// (and a node told it is dead at an incarnation it already refuted must
/// gossip its current one again).
#[tokio::test]
async fn a_partition_long_enough_to_declare_deaths_heals() {
    partition_and_heal(MemberStatus::Dead).await;
}

/// Splits five nodes into {n0, n1} and {n2, n3, n4} until some node sees
/// a member as `until` (or worse), checks news stays on its side, heals,
/// and checks everything converges with every member alive.
async fn partition_and_heal(until: MemberStatus) {
    let c = Cluster::start(5, |_| {}).await;
    assert!(
        c.eventually(async |n| all_alive(n, 5).await).await,
        "no join"
    );

    let (left, right) = c.addrs.split_at(2);
    for (i, control) in c.controls.iter().enumerate() {
        if i < 2 {
            control.partition(right.iter().copied());
        } else {
            control.partition(left.iter().copied());
        }
    }
    c.nodes[0].set("side", "left").await.unwrap();
    c.nodes[4].set("side", "right").await.unwrap();
    let (left_nodes, right_nodes) = c.nodes.split_at(2);
    let spread_left = eventually_on(left_nodes, async |n| has(n, "n0", "side", "left").await);
    let spread_right = eventually_on(right_nodes, async |n| has(n, "n4", "side", "right").await);
    assert!(
        spread_left.await && spread_right.await,
        "no spread inside a side"
    );
    let detected = eventually_on(&c.nodes[..1], async |n| {
        let members = n.members().await.unwrap();
        members
            .iter()
            .any(|m| m.status == until || m.status == MemberStatus::Dead)
    })
    .await;
    assert!(detected, "the partition was never detected");
    // No datagram crosses the partition, so neither side can know yet.
    for n in left_nodes {
        assert_eq!(n.get("n4", "side").await.unwrap(), None);
    }
    for n in right_nodes {
        assert_eq!(n.get("n0", "side").await.unwrap(), None);
    }
    for control in &c.controls {
        let stats = control.stats();
        assert!(stats.dropped_blocked_to > 0, "{stats:?}");
    }

    for control in &c.controls {
        control.heal();
    }
    let healed = c
        .eventually(async |n| {
            has(n, "n0", "side", "left").await
                && has(n, "n4", "side", "right").await
                && all_alive(n, 5).await
        })
        .await;
    if !healed {
        for n in &c.nodes {
            let view: Vec<_> = n
                .members()
                .await
                .unwrap()
                .into_iter()
                .map(|m| (m.id.name, m.status, m.incarnation))
                .collect();
            eprintln!("{}: {view:?}", n.local_id().name);
        }
    }
    assert!(healed, "the cluster did not heal after the partition");
    c.shutdown().await;
}

#[tokio::test]
async fn thirty_percent_loss_still_converges() {
    let c = Cluster::start(5, |control| control.set_loss(0.3)).await;
    for (i, n) in c.nodes.iter().enumerate() {
        n.set("id", format!("node-{i}")).await.unwrap();
    }
    let converged = c
        .eventually(async |n| {
            for i in 0..5 {
                if !has(n, &format!("n{i}"), "id", &format!("node-{i}")).await {
                    return false;
                }
            }
            n.members().await.unwrap().len() == 5
        })
        .await;
    assert!(converged, "30% loss: state did not converge");

    let (offered, lost) = c.controls.iter().fold((0, 0), |(o, l), control| {
        let s = control.stats();
        (o + s.offered, l + s.dropped_loss)
    });
    let rate = lost as f64 / offered as f64;
    assert!(
        offered >= 50 && (0.15..0.45).contains(&rate),
        "{lost} of {offered} lost"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn duplicated_and_reordered_datagrams_do_no_harm() {
    let c = Cluster::start(5, |control| {
        control.set_duplicate(0.5);
        control.set_reorder(0.3, Duration::from_millis(30));
        control.set_delay(Duration::from_millis(1), Duration::from_millis(5));
    })
    .await;
    // Several writes per node, overwrites and a delete: the final state is
    // what every node must agree on, whatever order the deltas arrive in.
    for (i, n) in c.nodes.iter().enumerate() {
        for round in 0..3 {
            n.set("counter", round.to_string()).await.unwrap();
            n.set(format!("k{round}"), format!("{i}-{round}"))
                .await
                .unwrap();
        }
        n.delete("k1").await.unwrap();
    }
    let converged = c
        .eventually(async |n| {
            for i in 0..5 {
                let owner = format!("n{i}");
                let fine = has(n, &owner, "counter", "2").await
                    && has(n, &owner, "k0", &format!("{i}-0")).await
                    && has(n, &owner, "k2", &format!("{i}-2")).await
                    && n.get(&owner, "k1").await.unwrap().is_none();
                if !fine {
                    return false;
                }
            }
            all_alive(n, 5).await
        })
        .await;
    assert!(converged, "duplication and reordering: no convergence");

    let (duplicated, reordered) = c.controls.iter().fold((0, 0), |(d, r), control| {
        let s = control.stats();
        (d + s.duplicated, r + s.reordered)
    });
    assert!(duplicated > 0 && reordered > 0);
    for n in &c.nodes {
        let metrics = n.metrics().await.unwrap();
        // A duplicate is a valid packet, not garbage: nothing is dropped.
        assert_eq!(
            metrics.engine.drops.total(),
            0,
            "{:?}",
            metrics.engine.drops
        );
        assert_eq!(metrics.engine.delta_gaps, 0);
        assert_eq!(metrics.engine.stale_generation, 0);
    }
    c.shutdown().await;
}
