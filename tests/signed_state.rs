//! Signed state on real sockets: three nodes on loopback UDP with
//! identities from the cluster CA (`certs/node-N.id.*`), and a forger that
//! holds the cluster key (plaintext here) and node-3's valid identity
//! sending hand-made datagrams from a raw socket in node-3's name. Every
//! forgery about node-2's state or liveness (left, dead in its own name, a
//! raised incarnation) is dropped and counted, and node-2's next genuine
//! write reaches node-1. With signatures off, the same datagram
//! plants a key and hides node-2's write for good (so the test bites).

// Tests drive real nodes in real time: deadlines read the clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use scuttlewire::__private::wire::proto::{self, message::Kind};
use scuttlewire::__private::wire::{self, PROTOCOL_VERSION};
use scuttlewire::identity::{CaTrust, Identity, entry_message, head_message, member_message};
use scuttlewire::{Config, MemberStatus, Node, NodeId, Signatures};
use tokio::net::UdpSocket;

use common::{wait_for, wire_id};

const PATIENCE: Duration = Duration::from_secs(20);
const CLUSTER: &str = "scuttlewire";

fn identity(n: usize) -> Identity {
    Identity::load(
        format!("certs/node-{n}.id.key").as_ref(),
        Some(format!("certs/node-{n}.id.pem").as_ref()),
    )
    .unwrap()
}

fn trust() -> Arc<CaTrust> {
    Arc::new(CaTrust::load("certs/ca.pem".as_ref()).unwrap())
}

async fn start(n: usize, signatures: Signatures, seed: Option<SocketAddr>) -> Node {
    let mut config = Config::local().with_name(format!("node-{n}"));
    config.signatures = signatures;
    let mut b = Node::builder(config).initial_state("role", format!("r{n}"));
    if signatures.signs() {
        b = b.identity(identity(n), trust());
    }
    if let Some(seed) = seed {
        b = b.seeds([seed]);
    }
    b.start_udp("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// Three nodes that all hold each other's state.
async fn cluster(signatures: Signatures) -> Vec<Node> {
    let a = start(1, signatures, None).await;
    let seed = Some(a.local_id().addr);
    let nodes = vec![
        a,
        start(2, signatures, seed).await,
        start(3, signatures, seed).await,
    ];
    let names: Vec<String> = nodes.iter().map(|n| n.local_id().name.clone()).collect();
    let met = wait_for(PATIENCE, async || {
        for n in &nodes {
            for name in &names {
                if n.get(name, "role").await.unwrap().is_none() {
                    return false;
                }
            }
        }
        true
    })
    .await;
    assert!(met, "the cluster never converged");
    nodes
}

/// A datagram in `from`'s name carrying `deltas` as an exchange's `Ack`.
fn datagram(from: &NodeId, deltas: Vec<proto::NodeDelta>) -> Vec<u8> {
    proto::Packet {
        version: PROTOCOL_VERSION,
        cluster: wire::cluster_id(CLUSTER),
        from: Some(wire_id(from)),
        from_key: 0,
        messages: vec![proto::Message {
            kind: Some(Kind::Ack(proto::Ack { deltas, push_id: 0 })),
        }],
    }
    .encode_to_vec()
}

/// A datagram in `from`'s name carrying one membership claim about
/// `about`, signed by `signer` as `signed_as` if given.
fn claim(
    from: &NodeId,
    about: &NodeId,
    incarnation: u64,
    state: proto::MemberState,
    accuser: &str,
    signer: Option<(&Identity, &str)>,
) -> Vec<u8> {
    let signature = signer.map_or_else(Bytes::new, |(who, signed_as)| {
        let m = member_message(
            wire::cluster_id(CLUSTER),
            &about.name,
            about.generation,
            incarnation,
            state as u8,
            signed_as,
        );
        Bytes::copy_from_slice(&who.sign(&m))
    });
    proto::Packet {
        version: PROTOCOL_VERSION,
        cluster: wire::cluster_id(CLUSTER),
        from: Some(wire_id(from)),
        from_key: 0,
        messages: vec![proto::Message {
            kind: Some(Kind::Member(proto::MemberUpdate {
                node: Some(wire_id(about)),
                incarnation,
                state: state as i32,
                from: accuser.into(),
                signature,
            })),
        }],
    }
    .encode_to_vec()
}

/// Signed state and claims refused as forged or unsigned.
fn refused(e: &scuttlewire::engine::Metrics) -> u64 {
    e.signatures_invalid + e.unsigned_refused
}

async fn status_of(at: &Node, name: &str) -> Option<MemberStatus> {
    let members = at.members().await.unwrap();
    members
        .into_iter()
        .find(|m| m.id.name == name)
        .map(|m| m.status)
}

fn kv(key: &str, value: &str, version: u64) -> proto::KeyValue {
    proto::KeyValue {
        key: key.into(),
        value: Bytes::copy_from_slice(value.as_bytes()),
        version,
        tombstone: false,
        signature: Bytes::new(),
    }
}

/// node-2's state holds `__sw.id` (version 1) and `role` (version 2); each
/// forgery claims its version 3.
fn forgeries(owner: &NodeId) -> Vec<(&'static str, proto::NodeDelta)> {
    let cluster = wire::cluster_id(CLUSTER);
    let (name, generation) = (owner.name.as_str(), owner.generation);
    let sign_entry = |who: &Identity, e: &proto::KeyValue| {
        let m = entry_message(
            cluster,
            name,
            generation,
            &e.key,
            &e.value,
            e.version,
            e.tombstone,
        );
        Bytes::copy_from_slice(&who.sign(&m))
    };
    let head = |who: &Identity, v: u64| {
        Bytes::copy_from_slice(&who.sign(&head_message(cluster, name, generation, v)))
    };
    let (forger, owner_key) = (identity(3), identity(2));
    // What every member saw node-2 send: its role entry and head, signed.
    let mut role = kv("role", "r2", 2);
    role.signature = sign_entry(&owner_key, &role);
    let genuine_head = head(&owner_key, 2);
    let base = proto::NodeDelta {
        node: Some(wire_id(owner)),
        from_version: 2,
        to_version: 3,
        last_gc_version: 0,
        entries: vec![],
        head_version: 2,
        head_signature: genuine_head,
    };
    let mut by_forger = kv("forged", "x", 3);
    by_forger.signature = sign_entry(&forger, &by_forger);
    vec![
        (
            "a key in node-2's name, unsigned",
            proto::NodeDelta {
                entries: vec![kv("forged", "x", 3)],
                head_version: 0,
                head_signature: Bytes::new(),
                ..base.clone()
            },
        ),
        (
            "a key in node-2's name, signed by node-3",
            proto::NodeDelta {
                entries: vec![by_forger],
                head_version: 3,
                head_signature: head(&forger, 3),
                ..base.clone()
            },
        ),
        (
            "node-2's signed entry replayed at a new version",
            proto::NodeDelta {
                entries: vec![proto::KeyValue { version: 3, ..role }],
                ..base.clone()
            },
        ),
        ("node-2's version moved on, no entry", base),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_forge_another_members_state_or_liveness_when_signatures_are_required() {
    let nodes = cluster(Signatures::Require).await;
    let (a, b, m) = (&nodes[0], &nodes[1], &nodes[2]);
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let before = a.metrics().await.unwrap().engine;
    let attacks = forgeries(b.local_id());
    for (_, d) in &attacks {
        raw.send_to(&datagram(m.local_id(), vec![d.clone()]), a.local_id().addr)
            .await
            .unwrap();
    }
    let counted = wait_for(PATIENCE, async || {
        let e = a.metrics().await.unwrap().engine;
        refused(&e) - refused(&before) >= attacks.len() as u64
    })
    .await;
    let e = a.metrics().await.unwrap().engine;
    assert!(counted, "not every forgery was counted: {e:?}");
    assert_eq!(a.get("node-2", "forged").await.unwrap(), None);
    assert_eq!(
        a.get("node-2", "role").await.unwrap().as_deref(),
        Some(&b"r2"[..])
    );
    // node-2's genuine write at the version every forgery claimed.
    b.set("after", "1").await.unwrap();
    let arrived = wait_for(PATIENCE, async || {
        a.get("node-2", "after").await.unwrap().is_some()
    })
    .await;
    assert!(arrived, "node-2's genuine write never reached node-1");

    // Membership: node-2 left (unsigned, or signed by node-3), node-2
    // declared dead in its own name, node-3 "refuting" for node-2.
    use proto::MemberState::{Alive, Dead, Left};
    let forger = identity(3);
    let (m_id, b_id) = (m.local_id(), b.local_id());
    let before = a.metrics().await.unwrap().engine;
    let claims = [
        claim(m_id, b_id, 1, Left, "", None),
        claim(m_id, b_id, 1, Left, "", Some((&forger, "node-2"))),
        claim(m_id, b_id, 0, Dead, "node-2", Some((&forger, "node-2"))),
        claim(m_id, b_id, 5, Alive, "", Some((&forger, "node-2"))),
    ];
    for c in &claims {
        raw.send_to(c, a.local_id().addr).await.unwrap();
    }
    let counted = wait_for(PATIENCE, async || {
        let e = a.metrics().await.unwrap().engine;
        refused(&e) - refused(&before) >= claims.len() as u64
    })
    .await;
    assert!(counted, "not every forged claim was counted");
    assert_eq!(status_of(a, "node-2").await, Some(MemberStatus::Alive));
    let incarnation = a
        .members()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id.name == "node-2")
        .map(|m| m.incarnation);
    assert_eq!(incarnation, Some(0), "no forged incarnation was taken");
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_signatures_one_forged_datagram_hides_the_owners_next_write() {
    let nodes = cluster(Signatures::Off).await;
    let (a, b, m) = (&nodes[0], &nodes[1], &nodes[2]);
    // Unsigned, node-2's state holds only `role` (version 1): shift the
    // forgery down by one.
    let mut d = forgeries(b.local_id()).remove(0).1;
    d.from_version = 1;
    d.to_version = 2;
    d.entries[0].version = 2;
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    raw.send_to(&datagram(m.local_id(), vec![d]), a.local_id().addr)
        .await
        .unwrap();
    let planted = wait_for(PATIENCE, async || {
        a.get("node-2", "forged").await.unwrap().is_some()
    })
    .await;
    assert!(planted, "the forged key should pass without signatures");
    b.set("after", "1").await.unwrap();
    // node-3 gets it; node-1 believes it holds version 2 already.
    assert!(
        wait_for(PATIENCE, async || m
            .get("node-2", "after")
            .await
            .unwrap()
            .is_some())
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        a.get("node-2", "after").await.unwrap(),
        None,
        "unsigned, the owner's write at the forged version is hidden"
    );
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_the_cluster_ca_did_not_issue_is_refused() {
    let nodes = cluster(Signatures::Require).await;
    let a = &nodes[0];
    // A stranger's own key (trust on first use would take it; the CA
    // does not) under a member-like name.
    let mut config = Config::local().with_name("node-9");
    config.signatures = Signatures::Require;
    let stranger = Node::builder(config)
        .initial_state("role", "intruder")
        .identity(Identity::generate().unwrap(), trust())
        .seeds([a.local_id().addr])
        .start_udp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let refused = wait_for(PATIENCE, async || {
        a.metrics().await.unwrap().engine.identities_refused > 0
    })
    .await;
    assert!(refused, "node-1 never refused the stranger's identity");
    assert_eq!(a.get("node-9", "role").await.unwrap(), None);
    stranger.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}
