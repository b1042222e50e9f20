//! Hostile datagrams straight at an honest node's UDP socket: truncated,
//! oversized, empty, random, wrong cluster, wrong version, replayed, and
//! valid-but-absurd packets. Every one is dropped and counted (or, where it
//! is valid protobuf, shown to change nothing), the node stays up, its
//! membership and state stay bounded, and it keeps converging with its
//! honest peers afterwards. Real loopback sockets, bounded polling only.

// Tests drive real nodes in real time: deadlines and timings read the clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scuttlewire::__private::seal::Sealer;
use scuttlewire::__private::wire::proto::{self, message::Kind};
use scuttlewire::__private::wire::{self, PROTOCOL_VERSION};
use scuttlewire::engine::Drops;
use scuttlewire::node::NodeMetrics;
use scuttlewire::seal::{Cipher, Key, Keyring};
use scuttlewire::transport::EncryptionConfig;
use scuttlewire::{Config, Node, NodeId};
use tokio::net::UdpSocket;

use common::{wait_for, wire_id};

const PATIENCE: Duration = Duration::from_secs(20);
const CLUSTER: &str = "scuttlewire";

fn packet(from: &NodeId, kinds: Vec<Kind>) -> proto::Packet {
    proto::Packet {
        version: PROTOCOL_VERSION,
        cluster: wire::cluster_id(CLUSTER),
        from: Some(wire_id(from)),
        from_key: 0,
        messages: kinds
            .into_iter()
            .map(|k| proto::Message { kind: Some(k) })
            .collect(),
    }
}

fn ping(seq: u64) -> Kind {
    Kind::Ping(proto::Ping {
        seq,
        target: String::new(),
        fingerprint: 0,
    })
}

fn ack(node: &NodeId, from: u64, to: u64, entries: Vec<proto::KeyValue>) -> Kind {
    Kind::Ack(proto::Ack {
        deltas: vec![proto::NodeDelta {
            head_version: 0,
            head_signature: Default::default(),
            node: Some(wire_id(node)),
            from_version: from,
            to_version: to,
            last_gc_version: 0,
            entries,
        }],
        push_id: 0,
    })
}

fn kv(key: impl Into<String>, value: impl Into<Vec<u8>>, version: u64) -> proto::KeyValue {
    proto::KeyValue {
        signature: Default::default(),
        key: key.into(),
        value: value.into().into(),
        version,
        tombstone: false,
    }
}

async fn metrics(node: &Node) -> NodeMetrics {
    node.metrics().await.expect("the node is still running")
}

/// Three honest nodes on loopback UDP, converged: the victim `a`, `b`, `c`.
async fn honest_cluster(ip: &str) -> Option<[Node; 3]> {
    let any: SocketAddr = format!("{ip}:0").parse().expect("literal address");
    let start = |name: &str, seed: Option<SocketAddr>| {
        let config = Config::local().with_name(name);
        Node::builder(config)
            .seeds(seed)
            .initial_state("name", name.to_owned())
            .start_udp(any)
    };
    let a = start("a", None).await.ok()?;
    let seed = Some(a.local_id().addr);
    let b = start("b", seed).await.expect("start b");
    let c = start("c", seed).await.expect("start c");
    let nodes = [a, b, c];
    let joined = wait_for(PATIENCE, async || {
        for n in &nodes {
            for name in ["a", "b", "c"] {
                if n.get(name, "name").await.unwrap().is_none() {
                    return false;
                }
            }
        }
        true
    })
    .await;
    assert!(joined, "the honest cluster did not converge");
    Some(nodes)
}

/// Sends `datagrams` one at a time to `victim`, each time waiting until
/// `counted` (read from the victim's metrics) has grown by one, so no
/// socket buffer overflows and every datagram is accounted for.
async fn send_each(
    raw: &UdpSocket,
    victim: &Node,
    datagrams: &[Vec<u8>],
    counted: impl Fn(&NodeMetrics) -> u64,
) -> u64 {
    let to = victim.local_id().addr;
    let before = counted(&metrics(victim).await);
    for (i, d) in datagrams.iter().enumerate() {
        raw.send_to(d, to).await.expect("raw send");
        let want = before + i as u64 + 1;
        let seen = wait_for(PATIENCE, async || counted(&metrics(victim).await) >= want).await;
        assert!(seen, "datagram {i} of {} was not counted", datagrams.len());
    }
    counted(&metrics(victim).await) - before
}

/// Sends `datagrams` to `victim`, then a marker it drops as another
/// protocol version, and waits until the marker is counted: by then the
/// victim has handled everything sent before it (one socket, one driver).
/// For valid packets, whose counters honest peers move as well.
async fn send_then_mark(raw: &UdpSocket, victim: &Node, datagrams: &[Vec<u8>]) {
    let to = victim.local_id().addr;
    for d in datagrams {
        raw.send_to(d, to).await.expect("raw send");
    }
    let n = send_each(raw, victim, &[marker()], |m| m.engine.drops.version).await;
    assert_eq!(n, 1);
}

/// A packet every node drops as speaking another protocol version.
fn marker() -> Vec<u8> {
    proto::Packet {
        version: PROTOCOL_VERSION + 1,
        cluster: wire::cluster_id(CLUSTER),
        from: None,
        from_key: 0,
        messages: vec![],
    }
    .encode_to_vec()
}

/// The victim's own view is unchanged: three members, the honest state,
/// nothing planted by the attacker.
async fn nothing_planted(victim: &Node) {
    assert_eq!(victim.members().await.unwrap().len(), 3);
    assert_eq!(victim.get("a", "evil").await.unwrap(), None);
    assert_eq!(victim.get("mallory", "evil").await.unwrap(), None);
    for name in ["a", "b", "c"] {
        assert_eq!(
            victim.get(name, "name").await.unwrap().as_deref(),
            Some(name.as_bytes())
        );
    }
}

/// After the attack the honest nodes still converge both ways.
async fn still_converges(nodes: &[Node; 3]) {
    let [a, b, c] = nodes;
    b.set("after", "attack").await.unwrap();
    a.set("victim", "fine").await.unwrap();
    let ok = wait_for(PATIENCE, async || {
        a.get("b", "after").await.unwrap().is_some()
            && c.get("a", "victim").await.unwrap().is_some()
    })
    .await;
    assert!(ok, "the victim stopped converging after the attack");
}

#[tokio::test]
async fn garbage_of_every_kind_is_dropped_and_counted() {
    let nodes = honest_cluster("127.0.0.1").await.expect("IPv4 loopback");
    let [a, b, _] = &nodes;
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let drops = |f: fn(&Drops) -> u64| move |m: &NodeMetrics| f(&m.engine.drops);

    // Zero-length.
    let n = send_each(&raw, a, &[vec![]], drops(|d| d.empty)).await;
    assert_eq!(n, 1);

    // Random bytes, seeded, of every size up to a full datagram.
    let mut rng = StdRng::seed_from_u64(7);
    let mut random: Vec<Vec<u8>> = (0..200)
        .map(|_| {
            let len = rng.random_range(1..1400);
            (0..len).map(|_| rng.random()).collect()
        })
        .collect();
    random.push((0..wire::MAX_PACKET).map(|_| rng.random()).collect());
    let n = send_each(&raw, a, &random, drops(Drops::total)).await;
    assert_eq!(n, random.len() as u64);

    // Every strict prefix of a valid one-message packet.
    let valid = packet(b.local_id(), vec![ping(1)]).encode_to_vec();
    let prefixes: Vec<Vec<u8>> = (1..valid.len()).map(|l| valid[..l].to_vec()).collect();
    let n = send_each(&raw, a, &prefixes, drops(Drops::total)).await;
    assert_eq!(n, prefixes.len() as u64);

    // Another cluster, another protocol version.
    let mut other = packet(b.local_id(), vec![ping(2)]);
    other.cluster = wire::cluster_id("another cluster");
    let n = send_each(&raw, a, &[other.encode_to_vec()], drops(|d| d.cluster)).await;
    assert_eq!(n, 1);
    let mut future = packet(b.local_id(), vec![ping(3)]);
    future.version = PROTOCOL_VERSION + 1;
    let n = send_each(&raw, a, &[future.encode_to_vec()], drops(|d| d.version)).await;
    assert_eq!(n, 1);

    // A key far beyond any limit, in the largest datagram IPv4 carries
    // (a 1 MiB key cannot travel in one datagram at all).
    let mut huge_key = packet(
        b.local_id(),
        vec![ack(b.local_id(), 0, 1, vec![kv("k", "v", 1)])],
    );
    let mut len = wire::MAX_PACKET - huge_key.encoded_len();
    loop {
        if let Some(Kind::Ack(ack)) = huge_key.messages[0].kind.as_mut() {
            ack.deltas[0].entries[0].key = "k".repeat(len);
        }
        if huge_key.encoded_len() <= wire::MAX_PACKET {
            break;
        }
        len -= 1;
    }
    let huge_key = huge_key.encode_to_vec();
    assert!(huge_key.len() > 65_000 && huge_key.len() <= wire::MAX_PACKET);
    let n = send_each(&raw, a, &[huge_key], drops(|d| d.invalid)).await;
    assert_eq!(n, 1);

    nothing_planted(a).await;
    still_converges(&nodes).await;
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn valid_but_absurd_packets_change_nothing() {
    let nodes = honest_cluster("127.0.0.1").await.expect("IPv4 loopback");
    let [a, b, _] = &nodes;
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let drops_before = metrics(a).await.engine.drops;

    // A digest claiming 2^63 and u64::MAX versions of b: a Syn is read
    // (and answered), but no state appears out of a claim.
    let b_key = b.local_id().key();
    let absurd_syn = |max: u64| {
        let digest = proto::Digest {
            fingerprint: 1,
            node_count: 1,
            complete: false,
            nodes: vec![b_key],
            max_versions: vec![max],
            last_gc_versions: vec![],
            unknown: vec![],
            liveness: vec![],
            window_first: None,
            window_last: None,
        };
        let syn = Kind::Syn(proto::Syn {
            digest: Some(digest),
            follow_up: false,
            announce: false,
        });
        packet(b.local_id(), vec![syn]).encode_to_vec()
    };
    let syns_before = metrics(a).await.engine.received.syn;
    send_then_mark(&raw, a, &[absurd_syn(1 << 63), absurd_syn(u64::MAX)]).await;
    assert!(metrics(a).await.engine.received.syn >= syns_before + 2);

    // A delta about a's own state, from someone else: ignored and counted.
    let about_me = packet(
        b.local_id(),
        vec![ack(
            a.local_id(),
            0,
            1 << 40,
            vec![kv("evil", "x", 1 << 40)],
        )],
    );
    let before = metrics(a).await.engine.deltas_about_self;
    send_then_mark(&raw, a, &[about_me.encode_to_vec()]).await;
    assert!(metrics(a).await.engine.deltas_about_self > before);

    // A delta that would leave a gap: refused and counted.
    let gap = packet(
        b.local_id(),
        vec![ack(
            b.local_id(),
            1 << 62,
            1 << 63,
            vec![kv("evil", "x", 1 << 63)],
        )],
    );
    let before = metrics(a).await.engine.delta_gaps;
    send_then_mark(&raw, a, &[gap.encode_to_vec()]).await;
    assert!(metrics(a).await.engine.delta_gaps > before);

    // A replay of b's own latest write, twice: accepted idempotently on
    // plain UDP (nothing tells a replay from a retransmission), and it
    // changes nothing.
    let version = b.set("color", "green").await.unwrap();
    assert!(
        wait_for(PATIENCE, async || a
            .get("b", "color")
            .await
            .unwrap()
            .is_some())
        .await
    );
    let replay = packet(
        b.local_id(),
        vec![ack(
            b.local_id(),
            version - 1,
            version,
            vec![kv("color", "green", version)],
        )],
    )
    .encode_to_vec();
    let mut events = a.events();
    let acks_before = metrics(a).await.engine.received.ack;
    send_then_mark(&raw, a, &[replay.clone(), replay]).await;
    assert!(metrics(a).await.engine.received.ack >= acks_before + 2);
    assert_eq!(
        a.get("b", "color").await.unwrap().as_deref(),
        Some(&b"green"[..])
    );
    // The replays raised no event: up to the honest write below, no key
    // event at all arrives.
    b.set("next", "write").await.unwrap();
    loop {
        let event = tokio::time::timeout(PATIENCE, events.next())
            .await
            .expect("an event")
            .expect("stream open")
            .expect("no lag");
        match &event {
            scuttlewire::Event::KeySet { key, .. } if key == "next" => break,
            scuttlewire::Event::KeySet { .. } | scuttlewire::Event::KeyDeleted { .. } => {
                panic!("a replay changed the state: {event:?}")
            }
            _ => {}
        }
    }

    let mut drops = metrics(a).await.engine.drops;
    drops.version -= 4;
    assert_eq!(drops, drops_before, "valid protobuf is not dropped");
    nothing_planted(a).await;
    still_converges(&nodes).await;
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn oversized_datagrams_are_dropped_unread() {
    // Only IPv6 carries a UDP payload over 65,507 bytes.
    let Some(nodes) = honest_cluster("[::1]").await else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    let a = &nodes[0];
    let raw = UdpSocket::bind("[::1]:0").await.unwrap();
    let huge = vec![0x08; 65_527];
    if let Err(e) = raw.send_to(&huge, a.local_id().addr).await {
        eprintln!(
            "this host cannot send a {}-byte datagram ({e}); skipping",
            huge.len()
        );
        return;
    }
    let sent = wait_for(PATIENCE, async || {
        metrics(a).await.engine.drops.oversize == 1
    })
    .await;
    assert!(sent, "an oversized datagram was not counted");
    nothing_planted(a).await;
    still_converges(&nodes).await;
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn an_encrypted_node_drops_replays_and_garbage() {
    let key = Key::from_bytes(&[42; 32]).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let start = |name: &'static str, seed: Option<SocketAddr>| {
        let keyring = Keyring::new(key.clone());
        Node::builder(Config::local().with_name(name))
            .seeds(seed)
            .initial_state("name", name)
            .start_encrypted_udp(any, keyring, EncryptionConfig::default())
    };
    let a = start("a", None).await.unwrap();
    let b = start("b", Some(a.local_id().addr)).await.unwrap();
    assert!(
        wait_for(PATIENCE, async || a
            .get("b", "name")
            .await
            .unwrap()
            .is_some())
        .await
    );

    // A frame sealed with the cluster key (as a captured datagram of b's
    // would be), delivered twice: opened once, then dropped as a replay.
    let raw = UdpSocket::bind(any).await.unwrap();
    let mut sealer = Sealer::new(Cipher::default(), CLUSTER).unwrap();
    let frame = sealer
        .seal(&key, &packet(b.local_id(), vec![ping(9)]).encode_to_vec())
        .unwrap();
    let seal = |m: &NodeMetrics| m.seal.expect("encrypted node");
    let opened_before = seal(&metrics(&a).await).opened;
    for _ in 0..2 {
        raw.send_to(&frame, a.local_id().addr).await.unwrap();
    }
    // Plaintext is refused, and only this test sends any: once it is
    // counted, the two frames before it have been handled.
    let plaintext = packet(b.local_id(), vec![ping(10)]).encode_to_vec();
    let n = send_each(&raw, &a, &[plaintext], |m| seal(m).dropped_plaintext).await;
    assert_eq!(n, 1);
    let stats = a.seal_stats().unwrap();
    assert_eq!(stats.dropped_replay, 1, "{stats:?}");
    assert!(stats.opened > opened_before);

    // Garbage never reaches the engine.
    let n = send_each(&raw, &a, &[vec![0xC1; 3], vec![]], |m| {
        seal(m).dropped_malformed
    })
    .await;
    assert_eq!(n, 2);
    assert_eq!(metrics(&a).await.engine.drops.total(), 0);

    b.set("after", "attack").await.unwrap();
    assert!(
        wait_for(PATIENCE, async || a
            .get("b", "after")
            .await
            .unwrap()
            .is_some())
        .await
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// A value of 60 KB fits a datagram and the decoder's caps, but no node
/// with a 1,400-byte budget could ever gossip it on (its own `set` refuses
/// anything that large). Accepting it plants state the cluster cannot
/// spread, so it must be refused like any other oversized field.
#[tokio::test]
async fn an_entry_too_large_to_gossip_on_is_refused() {
    let nodes = honest_cluster("127.0.0.1").await.expect("IPv4 loopback");
    let a = &nodes[0];
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mallory = NodeId::new("mallory", 1, raw.local_addr().unwrap());
    let huge = packet(
        &mallory,
        vec![ack(&mallory, 0, 1, vec![kv("evil", vec![b'x'; 60_000], 1)])],
    );
    send_then_mark(&raw, a, &[huge.encode_to_vec()]).await;
    // On plain UDP anyone may introduce a node; the entry is what matters.
    let planted = a.get("mallory", "evil").await.unwrap();
    assert!(
        planted.is_none(),
        "a {}-byte value was accepted",
        planted.map_or(0, |v| v.len())
    );
    still_converges(&nodes).await;
    for n in nodes {
        n.shutdown().await;
    }
}
