//! Nodes on real UDP loopback sockets (127.0.0.1:0, never a fixed port).

use std::time::Duration;

use scuttlewire::{Config, Node};

async fn wait_for(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn three_nodes_on_udp_converge_and_survive_garbage() {
    let any = "127.0.0.1:0".parse().unwrap();
    let a = Node::builder(Config::local().with_name("a"))
        .start_udp(any)
        .await
        .unwrap();
    let seed = a.local_id().addr;
    let b = Node::builder(Config::local().with_name("b"))
        .seeds([seed])
        .start_udp(any)
        .await
        .unwrap();
    let c = Node::builder(Config::local().with_name("c"))
        .seeds([seed])
        .start_udp(any)
        .await
        .unwrap();
    c.set("addr", "10.0.0.3:9000").await.unwrap();
    let nodes = [a.clone(), b.clone(), c.clone()];
    let ok = wait_for(Duration::from_secs(20), async || {
        for n in &nodes {
            if n.get("c", "addr").await.unwrap().is_none() {
                return false;
            }
        }
        true
    })
    .await;
    assert!(ok, "state did not reach all three nodes");
    let m = a.metrics().await.unwrap();
    assert_eq!(m.members.alive, 3, "{:?}", m.members);
    assert!(m.engine.largest_packet_sent <= 1400);

    // Garbage straight at node a's socket: dropped, counted, harmless.
    let raw = tokio::net::UdpSocket::bind(any).await.unwrap();
    raw.send_to(b"\xff\xfe this is not a packet", seed)
        .await
        .unwrap();
    raw.send_to(&[], seed).await.unwrap();
    let counted = wait_for(Duration::from_secs(10), async || {
        a.metrics().await.unwrap().engine.drops.total() >= 2
    })
    .await;
    assert!(counted, "garbage was not counted as dropped");

    // And the node still works.
    b.set("after", "garbage").await.unwrap();
    let ok = wait_for(Duration::from_secs(20), async || {
        a.get("b", "after").await.unwrap().is_some()
    })
    .await;
    assert!(ok, "node stopped converging after garbage");
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn nodes_converge_over_ipv6_loopback() {
    let any: std::net::SocketAddr = "[::1]:0".parse().unwrap();
    let Ok(a) = Node::builder(Config::local().with_name("a"))
        .start_udp(any)
        .await
    else {
        eprintln!("IPv6 loopback unavailable; skipping");
        return;
    };
    let b = Node::builder(Config::local().with_name("b"))
        .seeds([a.local_id().addr])
        .initial_state("v6", "yes")
        .start_udp(any)
        .await
        .unwrap();
    let ok = wait_for(Duration::from_secs(20), async || {
        a.get("b", "v6").await.unwrap().is_some()
    })
    .await;
    assert!(ok);
    a.shutdown().await;
    b.shutdown().await;
}
