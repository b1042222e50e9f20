//! Admission control on real UDP sockets through the public API: a node
//! with an admission check never holds the nodes it refuses, while the
//! others, itself included, converge as usual. (The address allow-list
//! needs nodes at different addresses: `tests/multihost.rs` scenario 8
//! runs it across network namespaces; the engine tests cover it too.)

// Tests drive real nodes in real time: deadlines and timings read the clock.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::Duration;

use scuttlewire::{Config, Event, Node};

const PATIENCE: Duration = Duration::from_secs(30);

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(name: &str, config: Config, bind: &str, seed: Option<SocketAddr>) -> Node {
    Node::builder(config.with_name(name))
        .seeds(seed)
        .initial_state("owner", name.to_owned())
        .start_udp(bind.parse().unwrap())
        .await
        .unwrap()
}

async fn names(node: &Node) -> Vec<String> {
    let members = node.members().await.unwrap();
    members.into_iter().map(|m| m.id.name).collect()
}

/// `gate` refuses names starting with `rogue` (and admits only
/// 127.0.0.1, where everyone is). `rogue` joins the cluster through `b`,
/// and `b` and `c` hold all four; `gate` converges with `b` and `c` and
/// never holds, announces or stores the one it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_nodes_never_appear_while_the_others_converge() {
    let mut gated = Config::local();
    gated.allowed_networks = vec!["127.0.0.1/32".parse().unwrap()];
    let gate = Node::builder(gated.with_name("gate"))
        .initial_state("owner", "gate")
        .admit(|id| match id.name.starts_with("rogue") {
            true => Err(format!("{} is not one of ours", id.name)),
            false => Ok(()),
        })
        .start_udp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut events = gate.events();
    let seed = Some(gate.local_id().addr);
    let b = start("b", Config::local(), "127.0.0.1:0", seed).await;
    let c = start("c", Config::local(), "127.0.0.1:0", seed).await;
    let via_b = Some(b.local_id().addr);
    let rogue = start("rogue", Config::local(), "127.0.0.1:0", via_b).await;

    let everyone = ["b", "c", "gate", "rogue"];
    for node in [&b, &c] {
        wait_until("b and c hold everyone's state", async || {
            for owner in everyone {
                if node.get(owner, "owner").await.unwrap().is_none() {
                    return false;
                }
            }
            true
        })
        .await;
    }
    wait_until("gate holds b's and c's state", async || {
        gate.get("b", "owner").await.unwrap().is_some()
            && gate.get("c", "owner").await.unwrap().is_some()
    })
    .await;
    // Time for any late rumor, digest or delta to slip through.
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_eq!(names(&gate).await, ["b", "c", "gate"]);
    assert_eq!(gate.get("rogue", "owner").await.unwrap(), None);
    assert_eq!(gate.entries("rogue").await.unwrap(), None);
    for node in [&b, &c] {
        assert_eq!(names(node).await, everyone);
    }
    let refused = gate.metrics().await.unwrap().engine.refused;
    assert_eq!(refused.network, 0, "everyone is at 127.0.0.1: {refused:?}");
    assert!(refused.check > 0, "{refused:?}");
    assert_eq!(refused.capacity, 0);

    let mut joined = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(50), events.next()).await
    {
        if let Ok(Event::MemberJoined(id)) = event {
            joined.push(id.name);
        }
    }
    joined.sort_unstable();
    assert_eq!(joined, ["b", "c"]);

    for node in [gate, b, c, rogue] {
        node.shutdown().await;
    }
}
