//! Whole nodes (driver task + engine) over the in-memory transport, on
//! tokio's paused clock: virtual time, no sleeps that can flake.

// Tests drive real nodes in real time: deadlines and timings read the clock.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::Duration;

use scuttlewire::transport::{MemoryNetwork, Transport};
use scuttlewire::{Config, Event, Node};

mod common;
use common::eventually;

async fn cluster(net: &MemoryNetwork, n: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut first: Option<SocketAddr> = None;
    for i in 0..n {
        let t = net.bind();
        let addr = t.local_addr();
        let config = Config {
            rng_seed: Some(i as u64),
            ..Config::local().with_name(format!("n{i}"))
        };
        let node = Node::builder(config)
            .seeds(first)
            .start(t)
            .await
            .expect("start");
        first.get_or_insert(addr);
        nodes.push(node);
    }
    nodes
}

async fn shutdown(nodes: Vec<Node>) {
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn fifty_nodes_converge_after_one_set() {
    let net = MemoryNetwork::new(1);
    let nodes = cluster(&net, 50).await;
    let joined = eventually(&nodes, Duration::from_secs(30), async |n| {
        n.members().await.unwrap().len() == 50
    })
    .await;
    assert!(joined, "membership did not converge");
    nodes[17].set("color", "green").await.unwrap();
    let spread = eventually(&nodes, Duration::from_secs(30), async |n| {
        n.get("n17", "color").await.unwrap().as_deref() == Some(&b"green"[..])
    })
    .await;
    assert!(spread, "the value did not reach every node");
    shutdown(nodes).await;
}

#[tokio::test(start_paused = true)]
async fn converges_with_five_percent_loss() {
    let net = MemoryNetwork::new(2);
    net.set_loss(0.05);
    let nodes = cluster(&net, 50).await;
    nodes[3].set("k", "v").await.unwrap();
    let spread = eventually(&nodes, Duration::from_secs(60), async |n| {
        n.get("n3", "k").await.unwrap().is_some()
    })
    .await;
    assert!(spread, "the value did not reach every node under loss");
    assert!(net.stats().packets_dropped > 0, "loss was not applied");
    shutdown(nodes).await;
}

#[tokio::test(start_paused = true)]
async fn a_partition_heals() {
    let net = MemoryNetwork::new(3);
    let nodes = cluster(&net, 10).await;
    assert!(
        eventually(&nodes, Duration::from_secs(30), async |n| {
            n.members().await.unwrap().len() == 10
        })
        .await
    );
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.local_id().addr).collect();
    net.partition(&addrs[..5], &addrs[5..]);
    nodes[1].set("side", "a").await.unwrap();
    nodes[8].set("side", "b").await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        nodes[9].get("n1", "side").await.unwrap(),
        None,
        "partition leaked"
    );
    assert_eq!(
        nodes[0].get("n8", "side").await.unwrap(),
        None,
        "partition leaked"
    );
    net.heal();
    let healed = eventually(&nodes, Duration::from_secs(30), async |n| {
        n.get("n1", "side").await.unwrap().is_some() && n.get("n8", "side").await.unwrap().is_some()
    })
    .await;
    assert!(healed, "state did not cross the healed partition");
    shutdown(nodes).await;
}

#[tokio::test(start_paused = true)]
async fn events_report_joins_and_key_changes() {
    let net = MemoryNetwork::new(4);
    let a = Node::builder(Config::local().with_name("a"))
        .start(net.bind())
        .await
        .unwrap();
    let mut events = a.events();
    let b = Node::builder(Config::local().with_name("b"))
        .seeds([a.local_id().addr])
        .initial_state("role", "db")
        .start(net.bind())
        .await
        .unwrap();
    b.set("load", "0.5").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut next = async || {
        tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("events did not arrive in time")
            .expect("stream ended")
            .expect("the test subscriber lagged")
    };
    let (mut joined, mut saw_role, mut saw_load) = (false, false, false);
    while !(joined && saw_role && saw_load) {
        match next().await {
            Event::MemberJoined(id) if id.name == "b" => joined = true,
            Event::KeySet {
                node, key, value, ..
            } if node.name == "b" => match key.as_str() {
                "role" => saw_role = &value[..] == b"db",
                "load" => saw_load = &value[..] == b"0.5",
                _ => {}
            },
            _ => {}
        }
    }
    b.delete("load").await.unwrap();
    loop {
        if let Event::KeyDeleted { node, key, .. } = next().await {
            assert_eq!((node.name.as_str(), key.as_str()), ("b", "load"));
            break;
        }
    }
    a.shutdown().await;
    b.shutdown().await;
    // After shutdown the stream ends and calls fail cleanly.
    while let Some(ev) = events.next().await {
        assert!(ev.is_ok(), "{ev:?}");
    }
    assert!(a.events().next().await.is_none());
    assert!(matches!(
        a.set("x", "y").await,
        Err(scuttlewire::NodeError::Closed)
    ));
}

#[tokio::test(start_paused = true)]
async fn the_seed_provider_is_asked_while_no_peer_is_known() {
    let net = MemoryNetwork::new(5);
    let a = Node::builder(Config::local().with_name("a"))
        .start(net.bind())
        .await
        .unwrap();
    let a_addr = a.local_id().addr;
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let asked2 = asked.clone();
    let b = Node::builder(Config::local().with_name("b"))
        .seed_provider(move || {
            asked2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            vec![a_addr]
        })
        .start(net.bind())
        .await
        .unwrap();
    let both = [a.clone(), b.clone()];
    assert!(
        eventually(&both, Duration::from_secs(10), async |n| {
            n.members().await.unwrap().len() == 2
        })
        .await
    );
    assert!(asked.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn set_refuses_entries_that_cannot_fit_a_packet() {
    let net = MemoryNetwork::new(6);
    let a = Node::builder(Config::local().with_name("a"))
        .start(net.bind())
        .await
        .unwrap();
    let err = a.set("big", vec![0u8; 2000]).await.unwrap_err();
    assert!(
        err.to_string().contains("one packet holds at most"),
        "{err}"
    );
    let err = a.set("k".repeat(300), "v").await.unwrap_err();
    assert!(err.to_string().contains("max_key_len"), "{err}");
    assert_eq!(a.get("a", "big").await.unwrap(), None);
    a.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_bad_config_is_refused_naming_the_field() {
    let net = MemoryNetwork::new(7);
    let config = Config {
        gossip_fanout: 0,
        ..Config::local()
    };
    let err = Node::builder(config).start(net.bind()).await.unwrap_err();
    assert!(err.to_string().contains("gossip_fanout"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn leave_is_reported_as_left_and_broadcasts_arrive_once() {
    let net = MemoryNetwork::new(8);
    let nodes = cluster(&net, 6).await;
    assert!(
        eventually(&nodes, Duration::from_secs(30), async |n| {
            n.members().await.unwrap().len() == 6
        })
        .await
    );
    let mut streams: Vec<_> = nodes[1..].iter().map(|n| n.events()).collect();
    nodes[0].broadcast("hello all").await.unwrap();
    let too_big = nodes[0].broadcast(vec![0u8; 4000]).await.unwrap_err();
    assert!(
        matches!(too_big, scuttlewire::NodeError::Broadcast(_)),
        "{too_big}"
    );
    let told = nodes[5].leave().await.unwrap();
    assert!(told >= 1);
    tokio::time::sleep(Duration::from_secs(10)).await;
    for (i, s) in streams.iter_mut().enumerate().take(4) {
        let mut broadcasts = 0;
        let mut left = false;
        while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(1), s.next()).await {
            match ev.expect("the test subscriber lagged") {
                Event::Broadcast { origin, payload } => {
                    assert_eq!((origin.as_str(), &payload[..]), ("n0", &b"hello all"[..]));
                    broadcasts += 1;
                }
                Event::MemberStatus { node, status } if node.name == "n5" => {
                    assert_eq!(
                        status,
                        scuttlewire::MemberStatus::Left,
                        "observer n{}",
                        i + 1
                    );
                    left = true;
                }
                _ => {}
            }
        }
        assert_eq!(
            broadcasts,
            1,
            "observer n{} got the broadcast {broadcasts} times",
            i + 1
        );
        assert!(left, "observer n{} did not see n5 leave", i + 1);
    }
    shutdown(nodes[..5].to_vec()).await;
}

#[tokio::test(start_paused = true)]
async fn a_shrunken_path_limit_makes_nodes_pack_smaller_not_go_silent() {
    // Anti-entropy only (no pushes), and enough members that a digest page
    // is larger than the shrunken path: without re-packing, no Syn fits.
    let net = MemoryNetwork::new(9);
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..40 {
        let config = Config {
            rng_seed: Some(i),
            push_fanout: 0,
            ..Config::local().with_name(format!("n{i}"))
        };
        let seeds: Vec<SocketAddr> = nodes
            .first()
            .map(|n| n.local_id().addr)
            .into_iter()
            .collect();
        nodes.push(
            Node::builder(config)
                .seeds(seeds)
                .start(net.bind())
                .await
                .unwrap(),
        );
    }
    assert!(
        eventually(&nodes, Duration::from_secs(30), async |n| {
            n.members().await.unwrap().len() == 40
        })
        .await
    );
    // The path now carries less than the transports declared at bind time.
    net.set_mtu(300);
    nodes[2].set("blob", vec![b'x'; 60]).await.unwrap();
    let spread = eventually(&nodes, Duration::from_secs(30), async |n| {
        n.get("n2", "blob").await.unwrap().is_some()
    })
    .await;
    assert!(spread, "state stopped flowing after the limit shrank");
    shutdown(nodes).await;
}

/// A transport whose `close` never returns (a user's transport that waits
/// on a dead peer to flush): `leave` must still return.
struct NeverCloses(scuttlewire::transport::Memory);

impl Transport for NeverCloses {
    async fn send(
        &self,
        to: SocketAddr,
        payload: bytes::Bytes,
    ) -> Result<(), scuttlewire::transport::TransportError> {
        self.0.send(to, payload).await
    }

    async fn recv(
        &self,
    ) -> Result<(SocketAddr, bytes::Bytes), scuttlewire::transport::TransportError> {
        self.0.recv().await
    }

    fn max_payload(&self) -> usize {
        self.0.max_payload()
    }

    fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    async fn close(&self) {
        std::future::pending::<()>().await;
    }
}

#[tokio::test(start_paused = true)]
async fn leave_returns_when_the_transport_does_not_close() {
    let net = MemoryNetwork::new(9);
    let mut nodes = cluster(&net, 3).await;
    let config = Config {
        rng_seed: Some(3),
        ..Config::local().with_name("n3")
    };
    let stuck = Node::builder(config)
        .seeds([nodes[0].local_id().addr])
        .start(NeverCloses(net.bind()))
        .await
        .expect("start");
    nodes.push(stuck.clone());
    assert!(
        eventually(&nodes, Duration::from_secs(30), async |n| {
            n.members().await.unwrap().len() == 4
        })
        .await
    );
    let started = tokio::time::Instant::now();
    let left = tokio::time::timeout(Duration::from_secs(60), stuck.leave()).await;
    let took = started.elapsed();
    assert!(matches!(left, Ok(Ok(_))), "{left:?} after {took:?}");
    assert!(took <= Duration::from_secs(6), "leave took {took:?}");
    // The others heard it before the transport was given up on.
    nodes.pop();
    assert!(
        eventually(&nodes, Duration::from_secs(30), async |n| {
            n.members()
                .await
                .unwrap()
                .iter()
                .any(|m| m.id.name == "n3" && m.status == scuttlewire::MemberStatus::Left)
        })
        .await
    );
    shutdown(nodes).await;
}
