//! Nodes on real UDP loopback sockets (127.0.0.1:0, never a fixed port).

// Tests drive real nodes in real time: deadlines and timings read the clock.
#![allow(clippy::disallowed_methods)]

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

#[tokio::test]
async fn seeds_given_by_name_are_resolved_and_a_bad_name_is_not_fatal() {
    let any = "127.0.0.1:0".parse().unwrap();
    let a = Node::builder(Config::local().with_name("a"))
        .start_udp(any)
        .await
        .unwrap();
    let port = a.local_id().addr.port();
    // One name that never resolves, one that does (localhost: 127.0.0.1
    // and ::1, of which only the first has a node).
    let b = Node::builder(Config::local().with_name("b"))
        .seed_hosts([
            "no-such-host.invalid:7946".to_owned(),
            format!("localhost:{port}"),
        ])
        .start_udp(any)
        .await
        .unwrap();
    let joined = wait_for(Duration::from_secs(20), async || {
        a.metrics().await.unwrap().members.alive == 2
            && b.metrics().await.unwrap().members.alive == 2
    })
    .await;
    assert!(joined, "b never joined a through the name `localhost`");
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_seed_name_without_a_port_or_an_unspecified_advertise_is_refused() {
    let any = "127.0.0.1:0".parse().unwrap();
    let err = Node::builder(Config::local().with_name("x"))
        .seed_hosts(["db-1"])
        .start_udp(any)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`seeds`"), "{err}");
    let err = Node::builder(Config::local().with_name("x"))
        .advertise("0.0.0.0:7946".parse().unwrap())
        .start_udp(any)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`advertise`"), "{err}");
}

#[tokio::test]
async fn a_node_bound_to_the_unspecified_address_never_advertises_it() {
    // Whatever this host has, the node either picks one real address or
    // refuses to start naming `advertise`: it never advertises 0.0.0.0.
    match Node::builder(Config::local().with_name("x"))
        .start_udp("0.0.0.0:0".parse().unwrap())
        .await
    {
        Ok(node) => {
            let addr = node.local_id().addr;
            assert!(!addr.ip().is_unspecified() && addr.port() != 0, "{addr}");
            node.shutdown().await;
        }
        Err(e) => assert!(e.to_string().contains("`advertise`"), "{e}"),
    }
}

#[tokio::test]
async fn entries_list_every_live_key_and_healthy_members_skip_the_departed() {
    let any = "127.0.0.1:0".parse().unwrap();
    let a = Node::builder(Config::local().with_name("a"))
        .start_udp(any)
        .await
        .unwrap();
    let b = Node::builder(Config::local().with_name("b"))
        .seeds([a.local_id().addr])
        .initial_state("role", "db")
        .start_udp(any)
        .await
        .unwrap();
    b.set("load", "0.5").await.unwrap();
    b.set("gone", "x").await.unwrap();
    b.delete("gone").await.unwrap();
    let arrived = wait_for(Duration::from_secs(20), async || {
        a.entries("b").await.unwrap().is_some_and(|e| e.len() == 2)
    })
    .await;
    assert!(arrived, "{:?}", a.entries("b").await.unwrap());
    let entries = a.entries("b").await.unwrap().unwrap();
    let keys: Vec<&str> = entries.keys().map(String::as_str).collect();
    assert_eq!(keys, ["load", "role"], "a tombstone is not a live key");
    assert_eq!(&entries["role"].0[..], b"db");
    assert!(a.entries("nobody").await.unwrap().is_none());
    let healthy = a.healthy_members().await.unwrap();
    assert_eq!(healthy.len(), 2);
    b.leave().await.unwrap();
    let left = wait_for(Duration::from_secs(20), async || {
        a.healthy_members().await.unwrap().len() == 1
    })
    .await;
    assert!(left, "{:?}", a.members().await.unwrap());
    a.shutdown().await;
}
