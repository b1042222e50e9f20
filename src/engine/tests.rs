//! Engine-level tests, driven by hand on an explicit clock through the
//! [`Harness`]: its router passes every `poll_transmit()` datagram to the
//! addressed engine's `handle_packet`, checking each against the budget on
//! the way.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message as _;

use super::harness::{Harness, addr, id, origin};
use super::*;
use crate::wire::proto::message::Kind;

const GRACE: Duration = Duration::from_secs(1);

/// Fast gossip, a one-second tombstone grace, and probes rare enough that
/// failure detection stays out of these anti-entropy tests.
fn config() -> Config {
    Config {
        tombstone_grace: GRACE,
        probe_interval: Duration::from_secs(60),
        probe_timeout: Duration::from_secs(30),
        ..Config::local()
    }
}

/// `n` nodes running [`config`] under `budget`, each seeded with the one
/// before it.
fn net(n: usize, budget: usize) -> Harness {
    Harness::new(n, config(), budget)
}

fn key_sets<'a>(events: &'a [Event], owner: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    events.iter().filter_map(move |e| match e {
        Event::KeySet { node, key, .. } if node.name == owner => Some(key.as_str()),
        _ => None,
    })
}

fn key_deletes<'a>(events: &'a [Event], owner: &'a str) -> Vec<&'a str> {
    events
        .iter()
        .filter_map(move |e| match e {
            Event::KeyDeleted { node, key, .. } if node.name == owner => Some(key.as_str()),
            _ => None,
        })
        .collect()
}

// ----- reconciliation -------------------------------------------------------

#[test]
fn two_engines_reconcile() {
    let mut net = net(2, 1400);
    for i in 0..30 {
        net.nodes[0]
            .set(net.now, &format!("a{i}"), format!("value {i}"))
            .unwrap();
    }
    for i in 0..3 {
        net.nodes[1].set(net.now, &format!("b{i}"), "x").unwrap();
    }
    assert!(net.run_until(Duration::from_secs(5), Harness::converged));
    assert_eq!(net.nodes[1].entries("n0").unwrap().len(), 30);
    // The receiver heard of the node once and of each key once.
    let joined: Vec<_> = net.events[1]
        .iter()
        .filter(|e| matches!(e, Event::MemberJoined(n) if n.name == "n0"))
        .collect();
    assert_eq!(joined.len(), 1);
    let mut keys: Vec<&str> = key_sets(&net.events[1], "n0").collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 30);
    assert_eq!(net.nodes[0].fingerprint(), net.nodes[1].fingerprint());
    // Later writes follow.
    net.nodes[1].set(net.now, "b0", "changed").unwrap();
    assert!(net.run_until(Duration::from_secs(5), Harness::converged));
    assert_eq!(
        net.nodes[0].get("n1", "b0"),
        Some(Bytes::from_static(b"changed"))
    );
}

#[test]
fn three_engines_reconcile_through_a_chain_of_seeds() {
    // n1 knows n0, n2 knows n1: n0 and n2 meet through n1.
    let mut net = net(3, 1400);
    let now = net.now;
    for (i, e) in net.nodes.iter_mut().enumerate() {
        for k in 0..10 {
            e.set(now, &format!("k{k}"), format!("n{i}-{k}")).unwrap();
        }
    }
    assert!(net.run_until(Duration::from_secs(10), Harness::converged));
    for e in &net.nodes {
        assert_eq!(e.member_count(), 3);
    }
    let now = net.now;
    net.nodes[2].delete(now, "k3").unwrap();
    net.nodes[0].set(net.now, "k4", "again").unwrap();
    assert!(net.run_until(Duration::from_secs(10), Harness::converged));
    assert_eq!(net.nodes[0].get("n2", "k3"), None);
    assert_eq!(key_deletes(&net.events[0], "n2"), ["k3"]);
    assert_eq!(
        net.nodes[2].get("n0", "k4"),
        Some(Bytes::from_static(b"again"))
    );
}

#[test]
fn a_small_budget_pages_the_state_and_is_never_exceeded() {
    let budget = 300;
    let mut net = net(3, budget);
    for i in 0..60 {
        net.nodes[0]
            .set(net.now, &format!("key-{i}"), vec![i as u8; 60])
            .unwrap();
    }
    assert!(net.run_until(Duration::from_secs(30), Harness::converged));
    // Every datagram was checked on the way; the state needed many.
    assert!(net.log.len() > 20);
    for e in &net.nodes {
        assert!(e.metrics().largest_packet_sent <= budget);
    }
}

// ----- generations ----------------------------------------------------------

#[test]
fn a_new_generation_replaces_the_old_and_stale_packets_cannot_resurrect_it() {
    let mut net = net(2, 1400);
    net.nodes[0].set(net.now, "old", "1").unwrap();
    assert!(net.run_until(Duration::from_secs(5), Harness::converged));
    let gen1: Vec<Bytes> = net
        .log
        .iter()
        .filter(|(i, _)| *i == 0)
        .map(|(_, t)| t.payload.clone())
        .collect();
    assert!(!gen1.is_empty());

    // n0 restarts with generation 2 and new state.
    let mut restarted = Engine::new(config(), id(0, 2), 1400, 99, net.now).unwrap();
    restarted.set(net.now, "new", "2").unwrap();
    restarted.add_seeds([addr(1)]);
    net.nodes[0] = restarted;
    assert!(net.run_until(Duration::from_secs(5), |n| {
        n.nodes[1].get("n0", "new").is_some()
    }));
    assert!(net.events[1].contains(&Event::MemberRestarted {
        old: id(0, 1),
        new: id(0, 2)
    }));
    let view = net.nodes[1].entries("n0").unwrap();
    assert_eq!(Some(view.clone()), net.nodes[0].entries("n0"));
    assert!(!view.contains_key("old"));

    // Every datagram the old generation ever sent, replayed.
    let stale_before = net.nodes[1].metrics().stale_generation;
    let events_before = net.events[1].len();
    for bytes in &gen1 {
        let now = net.now;
        net.nodes[1].handle_packet(now, addr(0), bytes);
    }
    net.deliver();
    assert!(net.nodes[1].metrics().stale_generation > stale_before);
    assert_eq!(net.nodes[1].get("n0", "old"), None);
    assert_eq!(net.nodes[1].entries("n0").unwrap(), view);
    let n0: Vec<_> = net.nodes[1]
        .members()
        .into_iter()
        .filter(|m| m.id.name == "n0")
        .collect();
    assert_eq!(n0.len(), 1);
    assert_eq!(n0[0].id.generation, 2);
    assert!(
        !net.events[1][events_before..].iter().any(|e| matches!(
            e,
            Event::MemberRestarted { .. } | Event::MemberJoined(_) | Event::KeySet { .. }
        )),
        "{:?}",
        &net.events[1][events_before..]
    );
}

// ----- tombstones -----------------------------------------------------------

/// The tombstones node `n0` has in `e`'s copy of its state.
fn tombstones_of_n0(e: &Engine) -> (bool, u64) {
    let k = e.members.by_name("n0").unwrap();
    (k.state.has_tombstones(), k.state.last_gc_version())
}

#[test]
fn tombstones_spread_and_are_collected_after_the_grace_period() {
    let mut net = net(3, 1400);
    net.nodes[0].set(net.now, "doomed", "1").unwrap();
    net.nodes[0].set(net.now, "kept", "1").unwrap();
    assert!(net.run_until(Duration::from_secs(5), Harness::converged));
    let now = net.now;
    let version = net.nodes[0].delete(now, "doomed").unwrap();
    assert_eq!(net.nodes[0].delete(now, "doomed"), None);
    assert!(net.run_until(Duration::from_secs(5), Harness::converged));
    for i in 1..3 {
        assert_eq!(key_deletes(&net.events[i], "n0"), ["doomed"]);
        assert_eq!(net.nodes[i].get("n0", "doomed"), None);
    }
    // Held as tombstones until the grace period is over...
    assert!(net.nodes.iter().all(|e| tombstones_of_n0(e) == (true, 0)));
    net.run_for(GRACE * 2);
    // ...then collected everywhere.
    for e in &net.nodes {
        assert_eq!(tombstones_of_n0(e), (false, version), "{}", e.local_id());
    }
    assert!(net.converged());
    // A newcomer gets the live state and never hears of the deleted key.
    let d = net.add(1);
    assert!(net.run_until(Duration::from_secs(5), Harness::converged));
    assert!(!key_sets(&net.events[d], "n0").any(|k| k == "doomed"));
    let k = net.nodes[d].members.by_name("n0").unwrap();
    assert_eq!(
        k.state.max_version(),
        net.nodes[0]
            .members
            .by_name("n0")
            .unwrap()
            .state
            .max_version()
    );
}

#[test]
fn a_peer_that_missed_collected_deletions_is_reset() {
    let mut net = net(3, 1400);
    for i in 0..8 {
        net.nodes[0].set(net.now, &format!("k{i}"), "v").unwrap();
    }
    assert!(net.run_until(Duration::from_secs(5), Harness::converged));
    net.isolated.insert(2);
    let now = net.now;
    net.nodes[0].delete(now, "k2").unwrap();
    net.nodes[0].delete(now, "k5").unwrap();
    net.nodes[0].set(net.now, "k9", "new").unwrap();
    net.run_for(GRACE * 2);
    let (_, gc) = tombstones_of_n0(&net.nodes[0]);
    assert!(gc > 8, "the deletions were collected at n0");
    assert!(net.nodes[2].get("n0", "k2").is_some(), "n2 heard nothing");
    net.isolated.clear();
    assert!(net.run_until(Duration::from_secs(10), Harness::converged));
    // It was the reset path: n2 got n0's state again from version 0.
    let reset = net.log.iter().any(|(_, t)| {
        t.to == addr(2)
            && proto::Packet::decode(t.payload.clone()).is_ok_and(|p| {
                p.messages.iter().any(|m| {
                    let deltas = match &m.kind {
                        Some(Kind::SynAck(sa)) => &sa.deltas,
                        Some(Kind::Ack(a)) => &a.deltas,
                        _ => return false,
                    };
                    deltas.iter().any(|d| {
                        d.node.as_ref().is_some_and(|n| n.name == "n0")
                            && d.from_version == 0
                            && d.last_gc_version == gc
                    })
                })
            })
    });
    assert!(reset, "n2 was not reset");
    let mut deleted = key_deletes(&net.events[2], "n0");
    deleted.sort_unstable();
    assert_eq!(deleted, ["k2", "k5"]);
    assert_eq!(tombstones_of_n0(&net.nodes[2]), (false, gc));
}

// ----- local writes ---------------------------------------------------------

#[test]
fn set_refuses_what_could_never_be_gossiped_and_changes_nothing() {
    let now = origin();
    let mut e = Engine::new(config(), id(0, 1), 1400, 1, now).unwrap();
    let fp = e.fingerprint();
    let long_key = "k".repeat(config().max_key_len + 1);
    assert_eq!(
        e.set(now, &long_key, "v"),
        Err(SetError::KeyTooLong {
            len: 257,
            max: config().max_key_len
        })
    );
    let err = e.set(now, "k", vec![0u8; 1400]).unwrap_err();
    let SetError::EntryTooLarge { len, max } = err.clone() else {
        panic!("{err:?}");
    };
    assert!(len > max && max < 1400);
    assert!(err.to_string().contains(&max.to_string()), "{err}");
    assert_eq!(e.entries("n0"), Some(Default::default()));
    assert_eq!(e.fingerprint(), fp);
    // No version was taken by the refusals.
    assert_eq!(e.set(now, "k", "v"), Ok(1));
}

/// The longest value under key "k" that `set` accepts.
fn largest_value(e: &mut Engine) -> usize {
    let (mut ok, mut too_big) = (0, e.budget());
    while too_big - ok > 1 {
        let mid = (ok + too_big) / 2;
        match e.set(origin(), "probe", vec![0u8; mid]) {
            Ok(_) => ok = mid,
            Err(SetError::EntryTooLarge { .. }) => too_big = mid,
            Err(other) => panic!("{other}"),
        }
    }
    ok
}

#[test]
fn the_largest_entry_set_accepts_is_gossiped() {
    for budget in [400, 1400] {
        let mut net = net(3, budget);
        let biggest = largest_value(&mut net.nodes[0]);
        assert!(biggest > budget / 2, "{biggest} of {budget}");
        net.nodes[0]
            .set(net.now, "big", vec![7u8; biggest])
            .unwrap();
        assert!(
            net.run_until(Duration::from_secs(10), Harness::converged),
            "budget {budget}: an accepted entry of {biggest} bytes did not spread"
        );
        assert_eq!(
            net.nodes[2].get("n0", "big").map(|v| v.len()),
            Some(biggest)
        );
    }
}

// ----- hostile input --------------------------------------------------------

fn encode(cluster: &str, from: &NodeId, kinds: Vec<Kind>) -> Vec<u8> {
    proto::Packet {
        version: wire::PROTOCOL_VERSION,
        cluster: wire::cluster_id(cluster),
        from: Some(from.to_proto()),
        from_key: 0,
        messages: kinds
            .into_iter()
            .map(|k| proto::Message { kind: Some(k) })
            .collect(),
    }
    .encode_to_vec()
}

/// A delta of `owner`'s state from version 0 with one entry per key.
fn delta_of(owner: &NodeId, keys: &[&str]) -> proto::NodeDelta {
    proto::NodeDelta {
        head_version: 0,
        head_signature: Default::default(),
        node: Some(owner.to_proto()),
        from_version: 0,
        to_version: keys.len() as u64,
        last_gc_version: 0,
        entries: keys
            .iter()
            .zip(1..)
            .map(|(k, v)| proto::KeyValue {
                signature: Default::default(),
                key: (*k).into(),
                value: Bytes::from_static(b"v"),
                version: v,
                tombstone: false,
            })
            .collect(),
    }
}

fn ack(deltas: Vec<proto::NodeDelta>) -> Kind {
    Kind::Ack(proto::Ack { deltas, push_id: 0 })
}

#[test]
fn garbage_other_clusters_and_claims_about_us_are_dropped_and_counted() {
    let now = origin();
    let mut e = Engine::new(config(), id(0, 1), 1400, 1, now).unwrap();
    e.set(now, "mine", "1").unwrap();
    let mine = e.entries("n0");
    let peer = id(1, 1);
    let cluster = config().cluster;

    e.handle_packet(now, addr(1), &[]);
    e.handle_packet(now, addr(1), &vec![0u8; 70_000]);
    e.handle_packet(now, addr(1), b"\xff\xff\xff\xffnot protobuf");
    e.handle_packet(now, addr(1), &encode("elsewhere", &peer, vec![ack(vec![])]));
    let mut v2 = proto::Packet::decode(&encode(&cluster, &peer, vec![ack(vec![])])[..]).unwrap();
    v2.version = 2;
    e.handle_packet(now, addr(1), &v2.encode_to_vec());
    let nameless = NodeId::new("", 1, addr(1));
    e.handle_packet(
        now,
        addr(1),
        &encode(&cluster, &nameless, vec![ack(vec![])]),
    );
    // Our own name as the sender: a loop or a spoof.
    let me_again = id(0, 7);
    let about_me = delta_of(&me_again, &["mine", "evil"]);
    e.handle_packet(
        now,
        addr(1),
        &encode(&cluster, &me_again, vec![ack(vec![about_me.clone()])]),
    );
    let d = &e.metrics().drops;
    assert_eq!(
        (
            d.empty,
            d.oversize,
            d.malformed,
            d.cluster,
            d.version,
            d.invalid,
            d.from_self
        ),
        (1, 1, 1, 1, 1, 1, 1)
    );
    assert_eq!(d.total(), 7);
    assert_eq!(
        e.member_count(),
        1,
        "nothing was learnt from dropped packets"
    );
    assert_eq!(e.poll_event(), None);

    // A valid packet from a peer, carrying a delta about us.
    e.handle_packet(
        now,
        addr(1),
        &encode(&cluster, &peer, vec![ack(vec![about_me])]),
    );
    assert_eq!(e.metrics().deltas_about_self, 1);
    assert_eq!(e.entries("n0"), mine);
    assert_eq!(e.member_count(), 2, "the peer itself is real");
    assert_eq!(e.metrics().drops.total(), 7);
}

fn engine_with_a_peer(now: Instant) -> Engine {
    let mut e = Engine::new(config(), id(0, 1), 1400, 1, now).unwrap();
    e.set(now, "a", "1").unwrap();
    let peer = id(1, 1);
    e.handle_packet(
        now,
        addr(1),
        &encode(
            &config().cluster,
            &peer,
            vec![ack(vec![delta_of(&peer, &["x", "y"])])],
        ),
    );
    assert_eq!(e.member_count(), 2);
    e
}

fn drain_within_budget(e: &mut Engine) -> Result<(), TestCaseError> {
    while let Some(t) = e.poll_transmit() {
        prop_assert!(t.payload.len() <= e.budget());
    }
    while e.poll_event().is_some() {}
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_never_panic_the_engine(
        datagrams in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..6),
    ) {
        let now = origin();
        let mut e = engine_with_a_peer(now);
        for (i, bytes) in datagrams.iter().enumerate() {
            e.handle_packet(now + Duration::from_millis(i as u64), addr(1), bytes);
            drain_within_budget(&mut e)?;
        }
        e.handle_timeout(now + Duration::from_secs(1));
        drain_within_budget(&mut e)?;
    }

    /// Valid packets of every kind, with our cluster id: they get past the
    /// decoder into the protocol, which must neither panic nor answer
    /// above the budget.
    #[test]
    fn arbitrary_valid_packets_never_panic_the_engine(
        packets in prop::collection::vec(crate::wire::tests::packet(), 1..4),
    ) {
        let now = origin();
        let mut e = engine_with_a_peer(now);
        let cluster = wire::cluster_id(&config().cluster);
        for (i, mut p) in packets.into_iter().enumerate() {
            p.cluster = cluster;
            let at = now + Duration::from_millis(i as u64 * 100);
            e.handle_packet(at, addr(1), &p.encode_to_vec());
            drain_within_budget(&mut e)?;
            e.handle_timeout(at);
            drain_within_budget(&mut e)?;
        }
    }
}

// ----- scale ----------------------------------------------------------------

/// Teaches node 0 of `net` `n` synthetic nodes, each holding one key at a
/// version between 1 and a few hundred. Datagrams to them reach node 0.
fn add_synthetic_nodes(net: &mut Harness, n: usize) -> Vec<NodeId> {
    let feeder = NodeId::new("feeder", 1, "10.9.9.9:7946".parse().unwrap());
    let ids: Vec<NodeId> = (0..n)
        .map(|i| {
            let ip = Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250) as u8 + 1);
            NodeId::new(format!("s{i:04}"), 1, SocketAddr::new(ip.into(), 7946))
        })
        .collect();
    for chunk in ids.chunks(400) {
        let deltas = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let version = 1 + (i as u64 * 7) % 300;
                proto::NodeDelta {
                    head_version: 0,
                    head_signature: Default::default(),
                    node: Some(id.to_proto()),
                    from_version: 0,
                    to_version: version,
                    last_gc_version: 0,
                    entries: vec![proto::KeyValue {
                        signature: Default::default(),
                        key: "role".into(),
                        value: Bytes::from_static(b"synthetic"),
                        version,
                        tombstone: false,
                    }],
                }
            })
            .collect();
        let bytes = encode(&config().cluster, &feeder, vec![ack(deltas)]);
        assert!(bytes.len() <= wire::MAX_PACKET);
        let now = net.now;
        net.nodes[0].handle_packet(now, feeder.addr, &bytes);
    }
    while net.nodes[0].poll_transmit().is_some() {}
    net.fallback = Some(0);
    ids
}

fn syn_digest(payload: &[u8]) -> Option<proto::Digest> {
    let p = proto::Packet::decode(payload).ok()?;
    p.messages.into_iter().find_map(|m| match m.kind {
        Some(Kind::Syn(s)) => s.digest,
        _ => None,
    })
}

#[test]
fn a_digest_of_a_thousand_nodes_is_paged_within_the_budget() {
    let mut net = net(1, 1400);
    add_synthetic_nodes(&mut net, 1000);
    let e = &net.nodes[0];
    assert_eq!(e.member_count(), 1002);
    let all: HashSet<u64> = e.members.keys().collect();
    let me = e.local_id().key();
    let mut seen = HashSet::new();
    let mut pages = 0;
    for _ in 0..100 {
        net.step(config().gossip_interval);
        let syns: Vec<proto::Digest> = net
            .log
            .drain(..)
            .filter_map(|(_, t)| syn_digest(&t.payload))
            .collect();
        for d in syns {
            pages += 1;
            assert!(!d.complete);
            assert_eq!(d.node_count, 1002);
            assert!(
                d.nodes.len() >= 80,
                "a page of only {} lines",
                d.nodes.len()
            );
            assert!(d.nodes.contains(&me), "a page always lists its sender");
            // The window's key range is listed in full: that is its claim.
            let (Some(first), Some(last)) = (d.window_first, d.window_last) else {
                panic!("a page without its window's range");
            };
            let in_range: Vec<u64> = all
                .iter()
                .copied()
                .filter(|&k| {
                    if first <= last {
                        (first..=last).contains(&k)
                    } else {
                        k >= first || k <= last
                    }
                })
                .collect();
            assert!(in_range.len() >= 20, "a window of {} keys", in_range.len());
            assert!(in_range.iter().all(|k| d.nodes.contains(k)));
            seen.extend(d.nodes);
        }
    }
    assert!(pages >= 20);
    assert!(net.nodes[0].metrics().largest_packet_sent <= 1400);
    // The rotating window got round to every node.
    assert_eq!(seen, all);
}

#[test]
fn answers_about_a_thousand_nodes_fit_the_budget() {
    let mut net = net(1, 1400);
    let ids = add_synthetic_nodes(&mut net, 1000);
    let peer = id(5, 1);
    let cluster = config().cluster;
    // A peer ahead on every node, and knowing 300 nodes we never heard of.
    let ahead = proto::Digest {
        fingerprint: 1,
        node_count: 1300,
        complete: false,
        nodes: ids
            .iter()
            .map(NodeId::key)
            .chain(1_000_000..1_000_300)
            .collect(),
        max_versions: vec![10_000; 1300],
        last_gc_versions: vec![],
        unknown: vec![],
        // ...and at a newer incarnation of each: membership news too.
        liveness: vec![5 << 2; 1300],
        window_first: None,
        window_last: None,
    };
    // A peer that has heard of every node but holds nothing.
    let behind = proto::Digest {
        fingerprint: 2,
        node_count: 1001,
        complete: true,
        nodes: ids.iter().map(NodeId::key).collect(),
        max_versions: vec![0; 1000],
        last_gc_versions: vec![],
        unknown: vec![],
        liveness: vec![],
        window_first: None,
        window_last: None,
    };
    for digest in [ahead, behind] {
        let syn = Kind::Syn(proto::Syn {
            digest: Some(digest),
            follow_up: false,
            announce: false,
        });
        let now = net.now;
        net.nodes[0].handle_packet(now, addr(5), &encode(&cluster, &peer, vec![syn]));
        let t = net.nodes[0].poll_transmit().expect("an answer");
        assert!(t.payload.len() <= 1400);
        let p = proto::Packet::decode(t.payload).unwrap();
        let Some(Kind::SynAck(sa)) = &p.messages[0].kind else {
            panic!("{p:?}")
        };
        let d = sa.digest.as_ref().unwrap();
        assert!(
            !d.nodes.is_empty() || !d.unknown.is_empty() || !sa.deltas.is_empty(),
            "an empty answer"
        );
        while net.nodes[0].poll_transmit().is_some() {}
    }
}

/// A peer that lacks some members sends a page whose key range skips
/// them: the answer introduces them, which only the range can tell.
#[test]
fn members_missing_from_a_pages_key_range_are_introduced() {
    let mut net = net(1, 1400);
    add_synthetic_nodes(&mut net, 300);
    let peer = id(5, 1);
    let cluster = config().cluster;
    let mut keys: Vec<u64> = net.nodes[0].members.keys().collect();
    keys.sort_unstable();
    let range = &keys[100..160];
    // The peer lists 60 contiguous keys of ours but three, at our versions.
    let missing = [range[3], range[30], range[57]];
    let listed: Vec<u64> = range
        .iter()
        .copied()
        .filter(|k| !missing.contains(k))
        .collect();
    let versions: Vec<u64> = listed
        .iter()
        .map(|&k| net.nodes[0].members.get(k).unwrap().state.max_version())
        .collect();
    let introduced = |net: &mut Harness, window: Option<(u64, u64)>| -> Vec<u64> {
        let digest = proto::Digest {
            fingerprint: 1,
            node_count: 300,
            complete: false,
            nodes: listed.clone(),
            max_versions: versions.clone(),
            last_gc_versions: vec![],
            unknown: vec![],
            liveness: vec![],
            window_first: window.map(|w| w.0),
            window_last: window.map(|w| w.1),
        };
        let syn = Kind::Syn(proto::Syn {
            digest: Some(digest),
            follow_up: false,
            announce: false,
        });
        let now = net.now;
        net.nodes[0].handle_packet(now, addr(5), &encode(&cluster, &peer, vec![syn]));
        let mut given = Vec::new();
        while let Some(t) = net.nodes[0].poll_transmit() {
            let p = proto::Packet::decode(t.payload).unwrap();
            for m in p.messages {
                if let Some(Kind::SynAck(sa)) = m.kind {
                    given.extend(
                        sa.deltas
                            .iter()
                            .map(|d| NodeId::from_proto(d.node.as_ref().unwrap()).unwrap().key()),
                    );
                }
            }
        }
        given
    };
    // Without the range the page says nothing of what the peer lacks.
    let given = introduced(&mut net, None);
    assert!(missing.iter().all(|k| !given.contains(k)), "{given:?}");
    let given = introduced(&mut net, Some((range[0], range[59])));
    for k in missing {
        assert!(given.contains(&k), "{k} not introduced: {given:?}");
    }
    // Nothing outside the range is: the peer may well know those.
    let outside: Vec<&u64> = given.iter().filter(|k| !range.contains(k)).collect();
    assert!(outside.is_empty(), "outside the range: {outside:?}");
}

#[test]
fn a_newcomer_learns_hundreds_of_nodes_through_paged_exchanges() {
    let mut net = net(1, 1400);
    let ids = add_synthetic_nodes(&mut net, 300);
    let fresh = net.add(0);
    assert!(net.run_until(Duration::from_secs(60), |n| {
        n.nodes[fresh].member_count() == n.nodes[0].member_count()
    }));
    for id in &ids {
        assert_eq!(
            net.nodes[fresh].entries(&id.name),
            net.nodes[0].entries(&id.name),
            "{id}"
        );
    }
    assert_eq!(net.nodes[fresh].fingerprint(), net.nodes[0].fingerprint());
    let largest: HashMap<usize, usize> = net
        .nodes
        .iter()
        .enumerate()
        .map(|(i, e)| (i, e.metrics().largest_packet_sent))
        .collect();
    assert!(largest.values().all(|l| *l <= 1400), "{largest:?}");
}

// ----- compact sender header -------------------------------------------------

/// Whether a datagram carries a probe message (ping, ack, nack, ping-req).
fn is_probe(p: &proto::Packet) -> bool {
    p.messages.iter().any(|m| {
        matches!(
            m.kind,
            Some(Kind::Ping(_) | Kind::PingAck(_) | Kind::PingNack(_) | Kind::PingReq(_))
        )
    })
}

#[test]
fn peers_in_sync_name_themselves_by_key_on_probes() {
    let mut net = net(3, 1400);
    net.nodes[0].set(net.now, "k", "v").unwrap();
    assert!(net.run_until(Duration::from_secs(10), Harness::converged));
    // Two probe periods: each node probes both peers (round-robin) and
    // so hears both fingerprints.
    net.run_for(Duration::from_secs(130));
    net.log.clear();
    // Two more probe periods of an idle, in-sync cluster.
    net.run_for(Duration::from_secs(130));
    let cluster = wire::cluster_id(&config().cluster);
    let limits = net.nodes[0].limits;
    let (mut compact, mut full_probes) = (0, 0);
    for (i, t) in &net.log {
        let p = wire::decode(&t.payload[..], cluster, &limits).expect("valid packet");
        if !is_probe(&p) {
            continue;
        }
        if p.from.is_none() {
            assert_eq!(p.from_key, net.nodes[*i].local_id().key());
            compact += 1;
        } else {
            full_probes += 1;
        }
    }
    assert!(
        compact >= 6,
        "3 nodes x 2 probe periods, ping and ack: {compact}"
    );
    assert_eq!(full_probes, 0, "in sync, every probe packet is compact");
    // A compact ping costs less than the same ping with the full id.
    let n1 = net.nodes[1].local_id().key();
    assert!(net.nodes[0].knows_us(Some(n1)));
    let compact_ping = net.nodes[0].outbox.start(true).unwrap().len();
    let full = net.nodes[0].outbox.start(false).unwrap().len();
    assert!(compact_ping + 8 <= full, "{compact_ping} vs {full}");
    // Nobody dropped anything, and the cluster still agrees.
    for e in &net.nodes {
        assert_eq!(e.metrics().drops.total(), 0);
    }
    assert!(net.converged());
}

#[test]
fn a_peer_out_of_sync_on_membership_gets_the_full_id() {
    let mut net = net(2, 1400);
    assert!(net.run_until(Duration::from_secs(10), Harness::converged));
    let n1 = net.nodes[1].local_id().key();
    // Let node 0 hear node 1's fingerprint on a probe.
    net.run_for(Duration::from_secs(130));
    assert!(net.nodes[0].knows_us(Some(n1)));
    // Node 0 writes: node 1's last reported fingerprint no longer matches,
    // but a write changes no one's knowledge of who node 0 is.
    net.nodes[0].set(net.now, "new", "1").unwrap();
    assert!(net.nodes[0].knows_us(Some(n1)));
    // A member joins: membership is in flux, so node 0 names itself in
    // full until it settles.
    net.add(0);
    assert!(net.run_until(Duration::from_secs(1), |h| h.nodes[0].member_count() == 3));
    assert!(!net.nodes[0].knows_us(Some(n1)));
    net.run_for(Duration::from_secs(30));
    assert!(net.nodes[0].knows_us(Some(n1)));
}

#[test]
fn a_compact_ping_from_an_unknown_key_is_still_answered() {
    let now = origin();
    let mut e = Engine::new(config(), id(0, 1), 1400, 1, now).unwrap();
    let ping = |from_key: u64| {
        proto::Packet {
            version: wire::PROTOCOL_VERSION,
            cluster: wire::cluster_id(&config().cluster),
            from: None,
            from_key,
            messages: vec![proto::Message {
                kind: Some(Kind::Ping(proto::Ping {
                    seq: 9,
                    target: "n0".into(),
                    fingerprint: 1,
                })),
            }],
        }
        .encode_to_vec()
    };
    e.handle_packet(now, addr(5), &ping(0xdead_beef));
    let t = e.poll_transmit().expect("an ack");
    assert_eq!(t.to, addr(5));
    let p = wire::decode(
        &t.payload[..],
        wire::cluster_id(&config().cluster),
        &e.limits,
    )
    .unwrap();
    assert!(p.from.is_some(), "an unknown peer gets our full id");
    assert!(matches!(p.messages[0].kind, Some(Kind::PingAck(ref a)) if a.seq == 9));
    assert_eq!(e.member_count(), 1, "a bare key teaches nothing");
    // Our own key: a loop or a spoof, dropped.
    e.handle_packet(now, addr(5), &ping(e.local_id().key()));
    assert!(e.poll_transmit().is_none());
    assert_eq!(e.metrics().drops.from_self, 1);
    // Neither a full id nor a key: refused by the decoder.
    e.handle_packet(now, addr(5), &ping(0));
    assert_eq!(e.metrics().drops.total(), 2);
}

#[test]
fn drained_queues_give_their_memory_back() {
    let mut net = net(1, 1400);
    add_synthetic_nodes(&mut net, 1000);
    let e = &mut net.nodes[0];
    assert!(e.events.len() >= 1000, "a join burst queues many events");
    while e.poll_event().is_some() {}
    assert!(e.events.capacity() <= 256, "{}", e.events.capacity());
    assert!(e.outbox.capacity() <= 256, "{}", e.outbox.capacity());
}

// ----- self-healing membership ---------------------------------------------

fn member_rumor(about: &NodeId, incarnation: u64, state: proto::MemberState, by: &str) -> Kind {
    Kind::Member(msg::member_update(about, incarnation, state, by))
}

fn status_of(e: &Engine, name: &str) -> Option<(MemberStatus, u64)> {
    e.members()
        .into_iter()
        .find(|m| m.id.name == name)
        .map(|m| (m.status, m.incarnation))
}

#[test]
fn a_refutation_whose_rumor_was_lost_still_arrives_through_digests() {
    let mut net = net(3, 1400);
    assert!(net.run_until(Duration::from_secs(5), |n| {
        n.nodes.iter().all(|e| e.member_count() == 3)
    }));
    let cluster = config().cluster;
    let (n1, n2) = (id(1, 1), id(2, 1));
    // n0 hears that n2 died, and is cut off before it can pass that on.
    let now = net.now;
    let dead = member_rumor(&n2, 0, proto::MemberState::Dead, "n1");
    net.nodes[0].handle_packet(now, addr(1), &encode(&cluster, &n1, vec![dead]));
    while net.nodes[0].poll_transmit().is_some() {}
    net.isolated.insert(0);
    assert_eq!(
        status_of(&net.nodes[0], "n2"),
        Some((MemberStatus::Dead, 0))
    );
    // n2 is suspected by n1 and refutes; its rumor runs out while n0
    // hears nothing.
    let suspect = member_rumor(&n2, 0, proto::MemberState::Suspect, "n1");
    net.nodes[2].handle_packet(now, addr(1), &encode(&cluster, &n1, vec![suspect]));
    net.run_for(Duration::from_secs(5));
    assert_eq!(
        status_of(&net.nodes[1], "n2"),
        Some((MemberStatus::Alive, 1))
    );
    assert_eq!(
        status_of(&net.nodes[0], "n2"),
        Some((MemberStatus::Dead, 0))
    );
    assert_eq!(net.nodes[2].metrics().member_rumors_queued, 0);
    // Back on the network: no rumor is left to tell n0, the digests do.
    net.isolated.clear();
    let healed = net.run_until(Duration::from_secs(2), |n| {
        status_of(&n.nodes[0], "n2") == Some((MemberStatus::Alive, 1))
    });
    assert!(healed, "n0 still holds n2 dead");
    assert!(net.nodes[0].metrics().liveness_merged > 0);
}

#[test]
fn member_records_with_an_unspecified_address_are_refused_and_counted() {
    let now = origin();
    let mut e = Engine::new(config(), id(0, 1), 1400, 1, now).unwrap();
    let cluster = config().cluster;
    let anywhere = NodeId::new("x", 1, "0.0.0.0:7946".parse().unwrap());
    // As a sender: the packet is dropped.
    let ping = Kind::Ping(proto::Ping {
        seq: 1,
        target: String::new(),
        fingerprint: 0,
    });
    e.handle_packet(now, addr(5), &encode(&cluster, &anywhere, vec![ping]));
    assert!(e.poll_transmit().is_none(), "answered an unroutable sender");
    // As a rumor or a delta from a good sender: the record is refused.
    let good = id(1, 1);
    let rumor = member_rumor(&anywhere, 0, proto::MemberState::Alive, "n1");
    let delta = ack(vec![delta_of(
        &NodeId::new("y", 1, "[::]:7946".parse().unwrap()),
        &["k"],
    )]);
    e.handle_packet(now, addr(1), &encode(&cluster, &good, vec![rumor, delta]));
    let names: Vec<String> = e.members().into_iter().map(|m| m.id.name).collect();
    assert_eq!(names, ["n0", "n1"]);
    assert_eq!(e.metrics().unroutable_ids, 3);
    // And a node cannot be created with one.
    let err = Engine::new(config(), anywhere, 1400, 1, now).unwrap_err();
    assert!(err.to_string().contains("advertise"), "{err}");
}

// ----- overload ---------------------------------------------------------------

/// What node 0 sent in `net.log`: (Syns opening an exchange, packets of
/// rumors only, pings).
fn node0_sent(net: &Harness) -> (usize, usize, usize) {
    let (mut syns, mut rumor_only, mut pings) = (0, 0, 0);
    for (_, t) in net.log.iter().filter(|(i, _)| *i == 0) {
        let p = proto::Packet::decode(t.payload.clone()).unwrap();
        let kinds: Vec<&Kind> = p.messages.iter().filter_map(|m| m.kind.as_ref()).collect();
        syns += kinds
            .iter()
            .filter(|k| matches!(k, Kind::Syn(s) if !s.follow_up && !s.announce))
            .count();
        pings += kinds.iter().filter(|k| matches!(k, Kind::Ping(_))).count();
        if !kinds.is_empty()
            && kinds
                .iter()
                .all(|k| matches!(k, Kind::Member(_) | Kind::Broadcast(_)))
        {
            rumor_only += 1;
        }
    }
    (syns, rumor_only, pings)
}

/// An overloaded node sheds anti-entropy but goes on probing and sending
/// rumors (refutations are rumors), for one probe interval after the last
/// note; with the same writes and no note, it opens exchanges again.
#[test]
fn an_overloaded_node_sheds_anti_entropy_and_keeps_probing_and_rumors() {
    // Anti-entropy every round (no pushes), fast probes.
    let cfg = Config {
        push_fanout: 0,
        ..Config::local()
    };
    let mut net = Harness::new(4, cfg, 1400);
    assert!(net.run_until(Duration::from_secs(10), |n| {
        n.nodes.iter().all(|e| e.member_count() == 4)
    }));
    let busy = |net: &mut Harness, overloaded: bool| {
        net.log.clear();
        for i in 0..10 {
            let now = net.now;
            if overloaded {
                net.nodes[0].note_overload(now);
            }
            net.nodes[0].set(now, "k", format!("{i}")).unwrap();
            net.nodes[0]
                .broadcast(now, Bytes::from(format!("b{overloaded}{i}")))
                .unwrap();
            net.run_for(Duration::from_millis(100));
        }
        node0_sent(net)
    };
    let (syns, rumor_only, pings) = busy(&mut net, true);
    assert_eq!(syns, 0, "anti-entropy shed while overloaded");
    assert!(rumor_only > 0, "rumors go on");
    assert!(pings >= 3, "probes go on: {pings} pings in 1 s");
    assert!(net.nodes[0].metrics().shed_rounds >= 15);
    // One probe interval after the last note, gossip is back.
    net.run_for(Duration::from_millis(250));
    let (syns, rumor_only, pings) = busy(&mut net, false);
    assert!(
        syns > 0 && rumor_only > 0,
        "{syns} syns, {rumor_only} rumor-only"
    );
    assert!(pings >= 3);
}
