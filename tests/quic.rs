//! `Quic` end to end on loopback: conformance, a cluster converging over
//! it, peers without a valid certificate refused before anything they send
//! is delivered, a valid certificate unable to speak in another node's
//! name, connections re-established after a loss, and the budget.

// Tests drive real nodes in real time: deadlines and timings read the clock.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use scuttlewire::__private::wire::{self, PROTOCOL_VERSION, proto};
use scuttlewire::transport::{QUIC_ALPN, Quic, QuicConfig, Transport, TransportError};
use scuttlewire::{Config, Event, MemberStatus, Node};
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(5);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
}

/// The committed development credentials of `node` (1..=3).
fn dev(node: u8) -> QuicConfig {
    let dir = certs();
    QuicConfig::from_pem_files(
        dir.join("ca.pem"),
        dir.join(format!("node-{node}.pem")),
        dir.join(format!("node-{node}.key")),
    )
    .unwrap()
}

async fn bind(config: QuicConfig) -> Quic {
    Quic::bind(loopback(), config).await.unwrap()
}

async fn recv(t: &Quic) -> (SocketAddr, Bytes) {
    timeout(PATIENCE, t.recv())
        .await
        .expect("datagram did not arrive")
        .expect("recv failed")
}

/// Asserts nothing is delivered for `wait`.
async fn nothing_arrives(t: &Quic, wait: Duration) {
    if let Ok(got) = timeout(wait, t.recv()).await {
        panic!("expected nothing, got {got:?}");
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = dn(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A node certificate for `localhost` signed by `issuer`, valid from
/// `from` to `until` (years).
fn node_cert(
    issuer: &Issuer<'_, KeyPair>,
    from: i32,
    until: i32,
) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name = dn("intruder");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let cert = params.signed_by(&key, issuer).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (cert.der().clone(), key)
}

/// The committed development CA, able to sign (as a leaked-but-expired
/// certificate would have been).
fn dev_ca() -> Issuer<'static, KeyPair> {
    let key = KeyPair::from_pem(&std::fs::read_to_string(certs().join("ca.key")).unwrap()).unwrap();
    Issuer::new(ca_params("scuttlewire cluster CA"), key)
}

/// A configuration that trusts the cluster CA (so, as a client, it goes
/// through with the handshake and sends) but presents `cert`.
fn intruder(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> QuicConfig {
    let mut config = QuicConfig::new(dev(1).ca, vec![cert], key);
    config.connect_timeout = Duration::from_secs(2);
    config
}

#[cfg(feature = "testing")]
#[tokio::test]
async fn quic_conforms() {
    scuttlewire::transport::conformance::run_all(|| bind(dev(1))).await;
}

#[cfg(feature = "testing")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_conforms_on_a_multi_threaded_runtime() {
    scuttlewire::transport::conformance::run_all(|| bind(dev(2))).await;
}

#[tokio::test]
async fn replies_come_from_the_listening_address() {
    let (a, b) = (bind(dev(1)).await, bind(dev(2)).await);
    a.send(b.local_addr(), Bytes::from_static(b"ping"))
        .await
        .unwrap();
    let (from, _) = recv(&b).await;
    assert_eq!(from, a.local_addr());
    // The reply rides the connection a opened: no second handshake.
    b.send(from, Bytes::from_static(b"pong")).await.unwrap();
    assert_eq!(
        recv(&a).await,
        (b.local_addr(), Bytes::from_static(b"pong"))
    );
    let (sa, sb) = (a.handle().stats(), b.handle().stats());
    assert_eq!((sa.connections_dialed, sb.connections_accepted), (1, 1));
    assert_eq!(sb.connections_dialed, 0, "{sb:?}");
}

#[tokio::test]
async fn payload_over_the_budget_is_refused_and_never_sent() {
    let (a, b) = (bind(dev(1)).await, bind(dev(2)).await);
    assert_eq!(a.max_payload(), QuicConfig::DEFAULT_MAX_PAYLOAD);
    assert_eq!(a.max_payload(), 1_150);
    // Once with no connection yet, once over an established one.
    for _ in 0..2 {
        let err = a
            .send(b.local_addr(), Bytes::from(vec![7; 1_151]))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::TooLarge {
                    len: 1_151,
                    max: 1_150
                }
            ),
            "{err}"
        );
        a.send(b.local_addr(), Bytes::from(vec![1; 1_150]))
            .await
            .unwrap();
        assert_eq!(recv(&b).await.1.len(), 1_150);
    }
    // A larger budget needs a larger initial MTU, and then is honoured.
    let mut big = dev(3);
    big.initial_mtu = 1_400;
    big.max_payload = 1_350;
    let c = bind(big).await;
    c.send(b.local_addr(), Bytes::from(vec![3; 1_350]))
        .await
        .unwrap();
    assert_eq!(recv(&b).await.1.len(), 1_350);
    nothing_arrives(&b, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn client_without_a_certificate_is_refused() {
    // Shows what the member logs (`cargo test -- --nocapture`).
    let _ = tracing_subscriber::fmt()
        .with_env_filter("scuttlewire=debug")
        .with_test_writer()
        .try_init();
    let server = bind(dev(1)).await;
    let watch = server.handle();

    // A bare quinn client that trusts the cluster CA but has no certificate.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(dev(1).ca[0].clone()).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![QUIC_ALPN.to_vec()];
    let quic_tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client(loopback()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic_tls)));

    let connecting = endpoint.connect(server.local_addr(), "localhost").unwrap();
    let outcome = timeout(PATIENCE, connecting).await.expect("handshake hung");
    match outcome {
        // TLS 1.3: the client finishes first and may believe it is in...
        Ok(conn) => {
            let sent = conn.send_datagram(Bytes::from_static(b"let me in"));
            let closed = timeout(PATIENCE, conn.closed())
                .await
                .expect("never closed");
            eprintln!("client saw: handshake ok, send {sent:?}, then closed: {closed}");
            let text = closed.to_string();
            assert!(
                text.contains("certificate") || text.contains("116"),
                "{text}"
            );
        }
        // ...or learns of the refusal before finishing.
        Err(e) => eprintln!("client saw: handshake failed: {e}"),
    }
    nothing_arrives(&server, Duration::from_millis(500)).await;
    let stats = watch.stats();
    assert_eq!(stats.handshakes_refused, 1, "{stats:?}");
    assert_eq!(
        (stats.connections_accepted, stats.datagrams_received),
        (0, 0)
    );
    endpoint.close(0u32.into(), b"");
}

#[tokio::test]
async fn untrusted_certificates_are_refused_both_ways() {
    let rogue_ca = Issuer::new(ca_params("rogue CA"), KeyPair::generate().unwrap());
    let self_signed = {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    };
    let cases = [
        ("another CA", node_cert(&rogue_ca, 2020, 2090)),
        ("self-signed", self_signed),
        ("expired", node_cert(&dev_ca(), 2000, 2001)),
    ];
    for (what, (cert, key)) in cases {
        let member = bind(dev(1)).await;
        let intruder = bind(intruder(cert, key)).await;
        // The intruder dials the member and sends at once.
        for _ in 0..5 {
            let _ = intruder
                .send(member.local_addr(), Bytes::from_static(b"let me in"))
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nothing_arrives(&member, Duration::from_millis(500)).await;
        let stats = member.handle().stats();
        assert!(stats.handshakes_refused >= 1, "{what}: {stats:?}");
        assert_eq!(
            (stats.connections_accepted, stats.datagrams_received),
            (0, 0),
            "{what}"
        );
        // The member dials the intruder and refuses its server certificate.
        let _ = member
            .send(intruder.local_addr(), Bytes::from_static(b"hello?"))
            .await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while member.handle().stats().dial_failures == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: dial never failed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stats = member.handle().stats();
        assert_eq!(stats.dial_failures, 1, "{what}: {stats:?}");
        assert_eq!(stats.datagrams_sent, 0, "{what}: {stats:?}");
        nothing_arrives(&intruder, Duration::from_millis(100)).await;
        // While the back-off lasts, sends fail fast and say why.
        let err = member
            .send(intruder.local_addr(), Bytes::from_static(b"hello?"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::Unreachable { .. }),
            "{what}: {err}"
        );
        eprintln!("{what}: member dialling intruder: {err}");
    }
}

#[tokio::test]
async fn dead_peer_does_not_hold_up_the_others() {
    let (a, b) = (bind(dev(1)).await, bind(dev(2)).await);
    // Something that swallows UDP and never answers: a handshake to it
    // can only time out.
    let black_hole = std::net::UdpSocket::bind(loopback()).unwrap();
    for i in 0..200u8 {
        a.send(black_hole.local_addr().unwrap(), Bytes::from(vec![i; 100]))
            .await
            .ok();
    }
    let started = tokio::time::Instant::now();
    a.send(b.local_addr(), Bytes::from_static(b"still here"))
        .await
        .unwrap();
    assert_eq!(recv(&b).await.1, Bytes::from_static(b"still here"));
    assert!(started.elapsed() < Duration::from_secs(2));
    let stats = a.handle().stats();
    assert!(stats.dropped_queue_full >= 200 - 64, "{stats:?}");
}

async fn start(
    name: &str,
    config: QuicConfig,
    seeds: &[SocketAddr],
) -> (Node, scuttlewire::transport::QuicHandle) {
    let mut last = None;
    // A restarted node may find its old port still held for a moment.
    for _ in 0..50 {
        match Quic::bind(loopback(), config.clone()).await {
            Ok(quic) => {
                let handle = quic.handle();
                let node = Node::builder(Config::local().with_name(name))
                    .seeds(seeds.iter().copied())
                    .start(quic)
                    .await
                    .unwrap();
                return (node, handle);
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("bind failed: {last:?}");
}

async fn start_at(
    name: &str,
    config: QuicConfig,
    addr: SocketAddr,
    seeds: &[SocketAddr],
) -> (Node, scuttlewire::transport::QuicHandle) {
    for _ in 0..50 {
        if let Ok(quic) = Quic::bind(addr, config.clone()).await {
            let handle = quic.handle();
            let node = Node::builder(Config::local().with_name(name))
                .seeds(seeds.iter().copied())
                .start(quic)
                .await
                .unwrap();
            return (node, handle);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not bind {addr} again");
}

/// Waits until every node sees `value` under `key` of node `owner`.
async fn converge(nodes: &[&Node], owner: &str, key: &str, value: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for node in nodes {
        loop {
            let got = node.get(owner, key).await.unwrap();
            if got.as_deref() == Some(value.as_bytes()) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never saw {owner}.{key} = {value} (has {got:?})",
                node.local_id().name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Three QUIC nodes, each with a `role` every other node has learnt.
async fn three_converged() -> [Node; 3] {
    let (a, _) = start("node-1", dev(1), &[]).await;
    let seed = [a.local_id().addr];
    let (b, _) = start("node-2", dev(2), &seed).await;
    let (c, _) = start("node-3", dev(3), &seed).await;
    for (node, v) in [(&a, "1"), (&b, "2"), (&c, "3")] {
        node.set("role", v).await.unwrap();
    }
    let all = [&a, &b, &c];
    converge(&all, "node-1", "role", "1").await;
    converge(&all, "node-2", "role", "2").await;
    converge(&all, "node-3", "role", "3").await;
    [a, b, c]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_cluster_converges() {
    let [a, b, c] = three_converged().await;
    let all = [&a, &b, &c];
    for node in all {
        assert_eq!(node.members().await.unwrap().len(), 3);
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connection_is_reestablished() {
    let (a, quic_a) = start("node-1", dev(1), &[]).await;
    let (b, quic_b) = start("node-2", dev(2), &[a.local_id().addr]).await;
    b.set("k", "v1").await.unwrap();
    converge(&[&a], "node-2", "k", "v1").await;
    let before = (quic_a.stats(), quic_b.stats());

    // Kill the connection mid-gossip from a's side.
    assert!(quic_a.disconnect(b.local_id().addr) >= 1);
    b.set("k", "v2").await.unwrap();
    a.set("k", "a2").await.unwrap();
    converge(&[&a], "node-2", "k", "v2").await;
    converge(&[&b], "node-1", "k", "a2").await;
    let after = (quic_a.stats(), quic_b.stats());
    let opened =
        |s: &scuttlewire::transport::QuicStats| s.connections_dialed + s.connections_accepted;
    assert!(opened(&after.0) > opened(&before.0), "{:?}", after.0);
    assert!(opened(&after.1) > opened(&before.1), "{:?}", after.1);

    // Restart b at the same address: a reaches the new b.
    let b_addr = b.local_id().addr;
    b.shutdown().await;
    let (b2, _) = start_at("node-2", dev(2), b_addr, &[a.local_id().addr]).await;
    b2.set("k", "v3").await.unwrap();
    converge(&[&a], "node-2", "k", "v3").await;
    a.set("k", "a3").await.unwrap();
    converge(&[&b2], "node-1", "k", "a3").await;
    a.shutdown().await;
    b2.shutdown().await;
}

/// The first `Left` or `Dead` that `events` reports for the node `name`,
/// or `None` if neither comes within `wait`.
async fn verdict_on(
    events: &mut scuttlewire::node::EventStream,
    name: &str,
    wait: Duration,
) -> Option<MemberStatus> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .ok()??
            .expect("the test subscriber lagged");
        if let Event::MemberStatus { node, status } = event {
            if node.name == name && matches!(status, MemberStatus::Left | MemberStatus::Dead) {
                return Some(status);
            }
        }
    }
}

/// A graceful leave over QUIC reaches the peers before the endpoint
/// closes: they see the leaver `Left`, never suspect-then-`Dead`. On one
/// thread quinn's connection tasks cannot run between the last `send`
/// and the driver's return, so a transport that closed without flushing
/// would lose the leave every time, not just now and then.
#[tokio::test]
async fn leave_reaches_the_peers_before_the_endpoint_closes() {
    let [a, b, c] = three_converged().await;
    let (mut at_a, mut at_b) = (a.events(), b.events());
    c.leave().await.unwrap();
    // Long enough for a silent leaver to be suspected and declared dead.
    let wait = Duration::from_secs(10);
    for (node, events) in [(&a, &mut at_a), (&b, &mut at_b)] {
        let seen = verdict_on(events, "node-3", wait).await;
        let name = &node.local_id().name;
        assert_eq!(
            seen,
            Some(MemberStatus::Left),
            "{name} saw node-3 as {seen:?}"
        );
    }
    // And it stays departed: no later probe failure turns it dead.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for node in [&a, &b] {
        let members = node.members().await.unwrap();
        let left = members.iter().find(|m| m.id.name == "node-3");
        assert_eq!(
            left.map(|m| m.status),
            Some(MemberStatus::Left),
            "{}: {members:?}",
            node.local_id().name
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Waits (at most [`PATIENCE`] four times over) until `check` holds.
async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE * 4;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The datagram a node named `name` at `addr` (generation 1) sends to give
/// its state's first version, `key` = `value`: an `Ack` carrying the delta.
fn own_state(name: &str, addr: SocketAddr, key: &str, value: &str) -> Bytes {
    let SocketAddr::V4(v4) = addr else {
        panic!("loopback is IPv4 here")
    };
    let id = proto::NodeId {
        name: name.to_owned(),
        generation: 1,
        ip: v4.ip().octets().to_vec().into(),
        port: u32::from(addr.port()),
    };
    let delta = proto::NodeDelta {
        node: Some(id.clone()),
        from_version: 0,
        to_version: 1,
        entries: vec![proto::KeyValue {
            key: key.to_owned(),
            value: value.as_bytes().to_vec().into(),
            version: 1,
            ..Default::default()
        }],
        ..Default::default()
    };
    let packet = proto::Packet {
        version: PROTOCOL_VERSION,
        cluster: wire::cluster_id(&Config::local().cluster),
        from: Some(id),
        from_key: 0,
        messages: vec![proto::Message {
            kind: Some(proto::message::Kind::Ack(proto::Ack {
                deltas: vec![delta],
                push_id: 0,
            })),
        }],
    };
    packet.encode_to_vec().into()
}

/// With `node_name` set, the holder of node-3's certificate (a member in
/// good standing) cannot speak as node-1: its datagram claiming node-1 is
/// dropped and counted before the node reads it, while its datagrams as
/// node-3 pass. The same forgery sent to a node without `node_name` is
/// believed: node-1 joins with the forger's state. That is the hole the
/// check closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_name_not_on_the_certificate_is_dropped() {
    let mut strict = dev(2);
    strict.node_name = Some("node-2".into());
    let (node, quic) = start("node-2", strict, &[]).await;
    // node-3's certificate on a bare transport that sends what it likes.
    let mallory = bind(dev(3)).await;
    let at = mallory.local_addr();
    let forged = own_state("node-1", at, "owner", "mallory");
    mallory
        .send(node.local_id().addr, forged.clone())
        .await
        .unwrap();
    wait_until("the forged datagram is dropped", async || {
        quic.stats().dropped_name_mismatch == 1
    })
    .await;
    let stats = quic.stats();
    assert_eq!(stats.datagrams_received, 1, "{stats:?}");
    let metrics = node.metrics().await.unwrap();
    assert_eq!(metrics.engine.packets_received, 0, "the node never saw it");
    let names = |members: Vec<scuttlewire::Member>| -> Vec<String> {
        members.into_iter().map(|m| m.id.name).collect()
    };
    assert_eq!(names(node.members().await.unwrap()), ["node-2"]);
    assert_eq!(node.get("node-1", "owner").await.unwrap(), None);

    // The same peer under its own name is heard.
    let honest = own_state("node-3", at, "owner", "node-3");
    mallory.send(node.local_id().addr, honest).await.unwrap();
    wait_until("node-3's state arrives", async || {
        node.get("node-3", "owner").await.unwrap().as_deref() == Some(&b"node-3"[..])
    })
    .await;
    assert_eq!(names(node.members().await.unwrap()), ["node-2", "node-3"]);
    assert_eq!(node.get("node-1", "owner").await.unwrap(), None);
    assert_eq!(quic.stats().dropped_name_mismatch, 1);

    // Without node_name, nothing stops the forgery.
    let (lax, lax_quic) = start("node-2", dev(2), &[]).await;
    mallory.send(lax.local_id().addr, forged).await.unwrap();
    wait_until("the unchecked node believes the forgery", async || {
        lax.get("node-1", "owner").await.unwrap().as_deref() == Some(&b"mallory"[..])
    })
    .await;
    assert!(names(lax.members().await.unwrap()).contains(&"node-1".to_owned()));
    assert_eq!(lax_quic.stats().dropped_name_mismatch, 0);
    node.shutdown().await;
    lax.shutdown().await;
}
