//! Whole nodes on encrypted UDP loopback (127.0.0.1:0): convergence, key
//! rotation under traffic with nothing dropped, rolling enablement from a
//! plaintext cluster, a stranger with the wrong key, and the cluster-wide
//! key view that says when a rotation step is safe.
//!
//! Real sockets and real time: every wait is bounded polling, and what is
//! asserted is behaviour (who sees what, what was dropped), never timing.

// Tests drive real nodes in real time: deadlines and timings read the clock.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use scuttlewire::node::ClusterKeys;
use scuttlewire::seal::{Key, KeyId, Keyring};
use scuttlewire::transport::{EncryptedStats, EncryptionConfig};
use scuttlewire::{Config, Node, NodeError};

const PATIENCE: Duration = Duration::from_secs(5);

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(name: &str, generation: u64) -> Config {
    Config {
        generation: Some(generation),
        ..Config::local()
            .with_name(name)
            .with_cluster("encrypted-cluster")
    }
}

async fn start(name: &str, seeds: &[SocketAddr], key: &Key) -> Node {
    Node::builder(config(name, 1))
        .seeds(seeds.iter().copied())
        .start_encrypted_udp(
            any(),
            Keyring::new(key.clone()),
            EncryptionConfig::default(),
        )
        .await
        .unwrap()
}

/// `n` nodes named `{prefix}0..`, each seeded with the first, each with its
/// own keyring holding `key`.
async fn cluster(prefix: &str, n: usize, key: &Key) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let seeds: Vec<SocketAddr> = nodes
            .first()
            .map(|f| f.local_id().addr)
            .into_iter()
            .collect();
        nodes.push(start(&format!("{prefix}{i}"), &seeds, key).await);
    }
    nodes
}

async fn wait_for(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether every node in `nodes` sees `value` under `key` of node `owner`.
async fn all_see(nodes: &[Node], owner: &str, key: &str, value: &str) -> bool {
    for n in nodes {
        if n.get(owner, key).await.unwrap().as_deref() != Some(value.as_bytes()) {
            return false;
        }
    }
    true
}

async fn wait_all_see(nodes: &[Node], owner: &str, key: &str, value: &str) {
    let ok = wait_for(PATIENCE, async || all_see(nodes, owner, key, value).await).await;
    assert!(ok, "{owner}/{key}={value} did not reach every node");
}

/// Waits until `check` holds on the cluster-key view of every node.
async fn wait_views(nodes: &[Node], what: &str, check: impl Fn(&ClusterKeys) -> bool) {
    let ok = wait_for(PATIENCE, async || {
        for n in nodes {
            if !check(&n.cluster_keys().await.unwrap()) {
                return false;
            }
        }
        true
    })
    .await;
    assert!(ok, "{what} never held on every node");
}

fn stats(node: &Node) -> EncryptedStats {
    node.seal_stats().expect("started encrypted and running")
}

fn names(blocking: Vec<&scuttlewire::node::MemberKeys>) -> Vec<String> {
    blocking.iter().map(|m| m.node.name.clone()).collect()
}

async fn shutdown(nodes: &[Node]) {
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn four_nodes_on_encrypted_udp_converge() {
    let key = Key::generate().unwrap();
    let nodes = cluster("a", 4, &key).await;
    nodes[3].set("color", "green").await.unwrap();
    wait_all_see(&nodes, "a3", "color", "green").await;
    let full = wait_for(PATIENCE, async || {
        for n in &nodes {
            if n.members().await.unwrap().len() != 4 {
                return false;
            }
        }
        true
    })
    .await;
    assert!(full, "membership did not converge");

    // Every member publishes the one key, as primary.
    wait_views(&nodes, "everyone holds the key", |v| {
        v.safe_to_use(key.id()) && v.usage()[&key.id()].primary == 4
    })
    .await;
    for n in &nodes {
        let s = stats(n);
        assert!(s.sealed > 0 && s.opened > 0, "{s:?}");
        assert_eq!(s.sent_plaintext + s.accepted_plaintext, 0, "{s:?}");
        assert_eq!(s.dropped(), 0, "{s:?}");
        let metrics = n.metrics().await.unwrap();
        assert!(
            metrics.seal.is_some_and(|m| m.opened >= s.opened),
            "{metrics:?}"
        );
    }
    shutdown(&nodes).await;
}

#[tokio::test]
async fn rotating_keys_on_a_live_cluster_under_traffic_drops_nothing() {
    let old = Key::generate().unwrap();
    let nodes = cluster("r", 4, &old).await;
    wait_views(&nodes, "everyone publishes its keys", |v| {
        v.healthy_count() == 4 && v.safe_to_use(old.id())
    })
    .await;

    // A writer sets a fresh key every 20 ms for the whole rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (node, stop, written) = (nodes[1].clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                node.set(format!("w{i}"), i.to_string()).await.unwrap();
                i += 1;
                written.store(i, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Every node rotates on its own, at its own pace, deciding each step
    // from its own view of the cluster: the cluster runs mixed in between.
    let new = Key::generate().unwrap();
    let new_id = new.id();
    let rotations: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let stagger = Duration::from_millis(40 * i as u64);
            tokio::spawn(rotate(n.clone(), new.clone(), old.id(), stagger))
        })
        .collect();
    for r in rotations {
        r.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    let total = written.load(Ordering::Relaxed);
    assert!(total > 10, "the writer barely ran ({total} writes)");
    let last = total - 1;
    wait_all_see(&nodes, "r1", &format!("w{last}"), &last.to_string()).await;
    for n in &nodes {
        for i in 0..total {
            let got = n.get("r1", &format!("w{i}")).await.unwrap();
            assert_eq!(got.as_deref(), Some(i.to_string().as_bytes()), "w{i}");
        }
        assert_eq!(n.list_keys().unwrap(), vec![new_id]);
        let s = stats(n);
        assert_eq!(s.dropped_auth, 0, "{s:?}");
        assert_eq!(s.dropped_unknown_key, 0, "{s:?}");
        assert_eq!(s.dropped_replay, 0, "{s:?}");
        assert_eq!(s.dropped(), 0, "{s:?}");
    }
    wait_views(&nodes, "only the new key is left", |v| {
        v.usage().keys().copied().collect::<Vec<KeyId>>() == vec![new_id]
    })
    .await;
    shutdown(&nodes).await;
}

/// One node's part of a rotation from `old` to `new`, each step taken once
/// this node's view says it is safe, after a `stagger` like a rolling
/// change across hosts.
async fn rotate(node: Node, new: Key, old: KeyId, stagger: Duration) {
    let new_id = new.id();
    tokio::time::sleep(stagger).await;
    assert_eq!(node.install_key(new).await.unwrap(), new_id);
    wait_view(&node, |v| v.safe_to_use(new_id)).await;
    tokio::time::sleep(stagger).await;
    node.use_key(new_id).await.unwrap();
    wait_view(&node, |v| v.safe_to_remove(old)).await;
    // Datagrams sealed under the old key just before a peer switched may
    // still be in a socket buffer: give them a moment (docs/SECURITY.md).
    tokio::time::sleep(Duration::from_millis(200)).await;
    node.remove_key(old).await.unwrap();
}

/// Waits until `check` holds on `node`'s view of the cluster's keys (a
/// plain loop, so the future can be spawned).
async fn wait_view(node: &Node, check: impl Fn(&ClusterKeys) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check(&node.cluster_keys().await.unwrap()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: rotation step never became safe",
            node.local_id().name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stage of a rolling enablement, as an `EncryptionConfig`.
fn stage(n: u8) -> EncryptionConfig {
    EncryptionConfig {
        send_plaintext: n == 1,
        accept_plaintext: n < 3,
        ..EncryptionConfig::default()
    }
}

#[tokio::test]
async fn a_plaintext_cluster_moves_to_encryption_by_rolling_restarts() {
    const N: usize = 4;
    let key = Key::generate().unwrap();
    let names: Vec<String> = (0..N).map(|i| format!("p{i}")).collect();

    // Stage 0: plain UDP.
    let mut nodes: Vec<Node> = Vec::new();
    for name in &names {
        let seeds: Vec<SocketAddr> = nodes
            .first()
            .map(|f| f.local_id().addr)
            .into_iter()
            .collect();
        let node = Node::builder(config(name, 1))
            .seeds(seeds)
            .initial_state("stage", "0")
            .start_udp(any())
            .await
            .unwrap();
        nodes.push(node);
    }
    for name in &names {
        wait_all_see(&nodes, name, "stage", "0").await;
    }

    for s in 1..=3u8 {
        for i in 0..N {
            nodes[i].shutdown().await;
            // Join through a running neighbour; the new generation
            // supersedes the old incarnation everywhere.
            let seed = nodes[(i + 1) % N].local_id().addr;
            nodes[i] = Node::builder(config(&names[i], 1 + u64::from(s)))
                .seeds([seed])
                .initial_state("stage", s.to_string())
                .start_encrypted_udp(any(), Keyring::new(key.clone()), stage(s))
                .await
                .unwrap();
            // State written on the restarted node reaches everyone, and
            // everyone's state reaches it.
            nodes[i].set("written", format!("{s}-{i}")).await.unwrap();
            wait_all_see(&nodes, &names[i], "written", &format!("{s}-{i}")).await;
            for (j, name) in names.iter().enumerate() {
                let expected = if j <= i { s } else { s - 1 };
                wait_all_see(&nodes, name, "stage", &expected.to_string()).await;
            }
        }
        for n in &nodes {
            let st = stats(n);
            if s >= 2 {
                assert_eq!(st.sent_plaintext, 0, "stage {s}: {st:?}");
            }
            assert_eq!(st.dropped_auth + st.dropped_unknown_key, 0, "{st:?}");
        }
    }
    // Everyone is on stage 3 now: all traffic sealed, still converging.
    nodes[0].set("final", "sealed").await.unwrap();
    wait_all_see(&nodes, "p0", "final", "sealed").await;
    shutdown(&nodes).await;
}

#[tokio::test]
async fn a_node_with_the_wrong_key_cannot_join() {
    let key = Key::generate().unwrap();
    let nodes = cluster("k", 3, &key).await;
    let seed = nodes[0].local_id().addr;
    let intruder = start("intruder", &[seed], &Key::generate().unwrap()).await;
    intruder.set("evil", "yes").await.unwrap();

    let counted = wait_for(PATIENCE, async || {
        let s = stats(&nodes[0]);
        s.dropped_unknown_key + s.dropped_auth >= 3
    })
    .await;
    assert!(
        counted,
        "the intruder's datagrams were not counted as dropped"
    );
    nodes[2].set("still", "working").await.unwrap();
    wait_all_see(&nodes, "k2", "still", "working").await;
    for n in &nodes {
        let members = n.members().await.unwrap();
        assert!(
            members.iter().all(|m| m.id.name != "intruder"),
            "{members:?}"
        );
        assert!(n.get("intruder", "evil").await.unwrap().is_none());
        assert!(stats(n).opened > 0);
    }
    assert_eq!(intruder.members().await.unwrap().len(), 1);
    intruder.shutdown().await;
    shutdown(&nodes).await;
}

#[tokio::test]
async fn rotation_steps_are_safe_only_once_every_member_is_ready() {
    let old = Key::generate().unwrap();
    let nodes = cluster("s", 3, &old).await;
    wait_views(&nodes, "everyone publishes the old key", |v| {
        v.healthy_count() == 3 && v.safe_to_use(old.id())
    })
    .await;
    let new = Key::generate().unwrap();
    let new_id = new.id();

    // Step 1 on two of three: s2 lacks the key and blocks.
    nodes[0].install_key(new.clone()).await.unwrap();
    nodes[1].install_key(new.clone()).await.unwrap();
    wait_views(&nodes[..1], "s1 publishes the new key", |v| {
        v.members()
            .iter()
            .any(|m| m.node.name == "s1" && m.holds(new_id))
    })
    .await;
    let view = nodes[0].cluster_keys().await.unwrap();
    assert!(!view.safe_to_use(new_id));
    assert_eq!(names(view.blocking_use(new_id)), ["s2"]);

    // s2 installs through its keyring handle, around the node API: the
    // driver notices and publishes on its own.
    nodes[2].keyring().unwrap().install(new.clone());
    wait_views(&nodes, "safe_to_use(new)", |v| v.safe_to_use(new_id)).await;
    assert!(
        !nodes[0]
            .cluster_keys()
            .await
            .unwrap()
            .safe_to_remove(old.id())
    );

    // Step 2 on two of three: s2 still seals with the old key and blocks.
    nodes[0].use_key(new_id).await.unwrap();
    nodes[1].use_key(new_id).await.unwrap();
    wait_views(&nodes[..1], "s1 publishes its new primary", |v| {
        v.members()
            .iter()
            .any(|m| m.node.name == "s1" && m.primary() == Some(new_id))
    })
    .await;
    let view = nodes[0].cluster_keys().await.unwrap();
    assert!(!view.safe_to_remove(old.id()));
    assert_eq!(names(view.blocking_remove(old.id())), ["s2"]);
    assert!(!view.safe_to_remove(new_id), "s0 and s1 seal with it");
    assert_eq!(
        nodes[0].remove_key(new_id).await.unwrap_err().to_string(),
        NodeError::Keyring(scuttlewire::seal::KeyringError::RemovePrimary(new_id)).to_string()
    );

    nodes[2].use_key(new_id).await.unwrap();
    wait_views(&nodes, "safe_to_remove(old)", |v| {
        v.safe_to_remove(old.id())
    })
    .await;
    for n in &nodes {
        n.remove_key(old.id()).await.unwrap();
        assert_eq!(n.list_keys().unwrap(), vec![new_id]);
    }
    nodes[1].set("after", "rotation").await.unwrap();
    wait_all_see(&nodes, "s1", "after", "rotation").await;
    shutdown(&nodes).await;
}

#[tokio::test]
async fn a_plain_node_has_no_keyring() {
    let node = Node::builder(config("plain", 1))
        .start_udp(any())
        .await
        .unwrap();
    assert!(node.keyring().is_none());
    assert!(node.seal_stats().is_none());
    assert!(matches!(node.list_keys(), Err(NodeError::NoKeyring)));
    assert!(matches!(
        node.install_key(Key::generate().unwrap()).await,
        Err(NodeError::NoKeyring)
    ));
    assert_eq!(node.metrics().await.unwrap().seal, None);
    let view = node.cluster_keys().await.unwrap();
    assert_eq!(view.members().len(), 1);
    assert!(view.members()[0].keys.is_none());
    node.shutdown().await;
}

#[tokio::test]
async fn a_node_on_its_own_encrypted_transport_gossips_its_key_ids_too() {
    use scuttlewire::transport::{Encrypted, Transport, Udp};
    let key = Key::generate().unwrap();
    let mut nodes: Vec<Node> = Vec::new();
    for name in ["c0", "c1"] {
        let ring = Keyring::new(key.clone());
        let udp = Udp::bind(any()).await.unwrap();
        let transport = Encrypted::new(udp, ring.clone(), EncryptionConfig::new("own")).unwrap();
        let seeds: Vec<SocketAddr> = nodes.iter().map(|n| n.local_id().addr).collect();
        assert_eq!(transport.max_payload(), 1_400 - scuttlewire::seal::OVERHEAD);
        assert_eq!(transport.max_payload(), 1_366, "34 bytes of seal overhead");
        let node = Node::builder(config(name, 1))
            .seeds(seeds)
            .keyring(ring)
            .start(transport)
            .await
            .unwrap();
        nodes.push(node);
    }
    wait_views(&nodes, "both publish the key", |v| {
        v.healthy_count() == 2 && v.safe_to_use(key.id())
    })
    .await;
    // The transport is the caller's: the node cannot read its counters.
    assert!(nodes[0].seal_stats().is_none());
    let new = nodes[0]
        .install_key(Key::generate().unwrap())
        .await
        .unwrap();
    assert!(nodes[0].keyring().unwrap().contains(new));
    wait_views(&nodes[1..], "c1 sees c0's new key", |v| {
        v.members()
            .iter()
            .any(|m| m.node.name == "c0" && m.holds(new))
    })
    .await;
    shutdown(&nodes).await;
}
