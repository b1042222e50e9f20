//! `Encrypted<Udp>` end to end on loopback: what arrives, what is dropped
//! and counted, key rotation under traffic, and rolling enablement.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use scuttlewire::seal::{Key, Keyring};
use scuttlewire::transport::{Encrypted, EncryptionConfig, Transport, TransportError, Udp};
use tokio::sync::watch;
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(5);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn udp() -> Udp {
    Udp::bind(loopback()).await.unwrap()
}

async fn node(keyring: &Keyring, config: EncryptionConfig) -> Encrypted<Tap<Udp>> {
    Encrypted::new(Tap::new(udp().await), keyring.clone(), config).unwrap()
}

fn config() -> EncryptionConfig {
    EncryptionConfig::new("integration")
}

async fn recv<T: Transport>(t: &T) -> Bytes {
    timeout(PATIENCE, t.recv())
        .await
        .expect("datagram did not arrive")
        .expect("recv failed")
        .1
}

/// Asserts nothing is delivered for a short while.
async fn nothing_arrives<T: Transport>(t: &T) {
    if let Ok(got) = timeout(Duration::from_millis(100), t.recv()).await {
        panic!("expected nothing, got {got:?}");
    }
}

async fn wait_until(progress: &mut watch::Receiver<u32>, n: u32) {
    timeout(PATIENCE, progress.wait_for(|&got| got >= n))
        .await
        .expect("traffic stalled")
        .unwrap();
}

/// A transport that remembers the last datagram it sent, so a test can play
/// the attacker who captures it and sends it again.
struct Tap<T> {
    inner: T,
    last: Mutex<Option<(SocketAddr, Bytes)>>,
}

impl<T: Transport> Tap<T> {
    fn new(inner: T) -> Tap<T> {
        Tap {
            inner,
            last: Mutex::new(None),
        }
    }

    fn captured(&self) -> (SocketAddr, Bytes) {
        self.last.lock().unwrap().clone().expect("nothing sent yet")
    }

    /// Sends raw bytes on the wire, bypassing any sealing.
    async fn send_raw(&self, to: SocketAddr, bytes: Bytes) {
        self.inner.send(to, bytes).await.unwrap();
    }
}

impl<T: Transport> Transport for Tap<T> {
    async fn send(&self, to: SocketAddr, payload: Bytes) -> Result<(), TransportError> {
        *self.last.lock().unwrap() = Some((to, payload.clone()));
        self.inner.send(to, payload).await
    }

    async fn recv(&self) -> Result<(SocketAddr, Bytes), TransportError> {
        self.inner.recv().await
    }

    fn max_payload(&self) -> usize {
        self.inner.max_payload()
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }
}

#[tokio::test]
async fn a_sealed_datagram_round_trips_and_is_not_readable_on_the_wire() {
    let ring = Keyring::new(Key::generate().unwrap());
    let a = node(&ring, config()).await;
    let b = node(&ring, config()).await;
    let secret = Bytes::from_static(b"\x08\x01the membership table");

    a.send(b.local_addr(), secret.clone()).await.unwrap();
    assert_eq!(recv(&b).await, secret);

    let (_, wire) = a.inner().captured();
    assert_eq!(wire.len(), secret.len() + scuttlewire::seal::OVERHEAD);
    assert_eq!(wire.len(), secret.len() + 34);
    assert_eq!(
        wire[0],
        scuttlewire::__private::seal::first_byte(scuttlewire::seal::Cipher::default())
    );
    assert_eq!(&wire[1..5], &ring.primary().hint().to_bytes());
    assert!(
        !wire.windows(8).any(|w| w == b"membersh"),
        "plaintext on the wire"
    );
    assert_eq!(a.stats().sealed, 1);
    assert_eq!(b.stats().opened, 1);
}

#[tokio::test]
async fn a_payload_of_exactly_max_payload_fills_the_wire_budget() {
    let ring = Keyring::new(Key::generate().unwrap());
    let a = node(&ring, config()).await;
    let b = node(&ring, config()).await;
    let payload = Bytes::from(vec![0x42; a.max_payload()]);
    a.send(b.local_addr(), payload.clone()).await.unwrap();
    assert_eq!(a.inner().captured().1.len(), a.inner().max_payload());
    assert_eq!(recv(&b).await, payload);
}

#[tokio::test]
async fn a_datagram_under_the_wrong_key_is_dropped_and_counted() {
    let ours = Keyring::new(Key::generate().unwrap());
    let theirs = Keyring::new(Key::generate().unwrap());
    let stranger = node(&theirs, config()).await;
    let friend = node(&ours, config()).await;
    let rx = node(&ours, config()).await;

    stranger
        .send(rx.local_addr(), Bytes::from_static(b"let me in"))
        .await
        .unwrap();
    friend
        .send(rx.local_addr(), Bytes::from_static(b"hello"))
        .await
        .unwrap();
    // `recv` skips the stranger's datagram and returns the friend's.
    assert_eq!(recv(&rx).await, Bytes::from_static(b"hello"));
    let stats = rx.stats();
    assert_eq!(stats.dropped_unknown_key, 1);
    assert_eq!(stats.dropped(), 1);
    assert_eq!(stats.opened, 1);
}

#[tokio::test]
async fn a_datagram_for_another_cluster_label_is_dropped_as_forged() {
    let ring = Keyring::new(Key::generate().unwrap());
    let other = node(&ring, EncryptionConfig::new("another-cluster")).await;
    let rx = node(&ring, config()).await;
    other
        .send(rx.local_addr(), Bytes::from_static(b"hi"))
        .await
        .unwrap();
    nothing_arrives(&rx).await;
    assert_eq!(rx.stats().dropped_auth, 1);
}

#[tokio::test]
async fn a_replayed_datagram_is_dropped_and_counted() {
    let ring = Keyring::new(Key::generate().unwrap());
    let a = node(&ring, config()).await;
    let b = node(&ring, config()).await;
    a.send(b.local_addr(), Bytes::from_static(b"transfer once"))
        .await
        .unwrap();
    assert_eq!(recv(&b).await, Bytes::from_static(b"transfer once"));

    // The attacker sends the captured frame again, twice.
    let (to, frame) = a.inner().captured();
    a.inner().send_raw(to, frame.clone()).await;
    a.inner().send_raw(to, frame).await;
    a.send(b.local_addr(), Bytes::from_static(b"next"))
        .await
        .unwrap();
    assert_eq!(recv(&b).await, Bytes::from_static(b"next"));
    assert_eq!(b.stats().dropped_replay, 2);
}

#[tokio::test]
async fn tampered_and_garbage_datagrams_are_dropped_and_recv_carries_on() {
    let ring = Keyring::new(Key::generate().unwrap());
    let a = node(&ring, config()).await;
    let b = node(&ring, config()).await;
    a.send(b.local_addr(), Bytes::from_static(b"original"))
        .await
        .unwrap();
    let (to, frame) = a.inner().captured();
    assert_eq!(recv(&b).await, Bytes::from_static(b"original"));

    let mut tampered = frame.to_vec();
    *tampered.last_mut().unwrap() ^= 1;
    a.inner().send_raw(to, tampered.into()).await;
    a.inner().send_raw(to, Bytes::new()).await;
    a.inner()
        .send_raw(to, Bytes::from_static(&[0xC1; 10]))
        .await;
    a.inner()
        .send_raw(to, Bytes::from_static(b"\x08plain"))
        .await;
    a.send(to, Bytes::from_static(b"after")).await.unwrap();
    assert_eq!(recv(&b).await, Bytes::from_static(b"after"));
    let stats = b.stats();
    assert_eq!(stats.dropped_auth, 1);
    assert_eq!(stats.dropped_malformed, 2);
    assert_eq!(stats.dropped_plaintext, 1);
}

/// Install the new key on both → use it on both → remove the old one,
/// while a sender task streams numbered datagrams: every one arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_keys_under_traffic_loses_nothing() {
    const TOTAL: u32 = 1_200;
    const BURST: u32 = 16;
    let old = Key::generate().unwrap();
    let old_id = old.id();
    let tx_ring = Keyring::new(old.clone());
    let rx_ring = Keyring::new(old);
    let tx = Arc::new(node(&tx_ring, config()).await);
    let rx = Arc::new(node(&rx_ring, config()).await);

    // Flow control so loopback socket buffers never overflow: at most one
    // burst in flight. `progress` is how many datagrams have arrived.
    let (progress_tx, progress) = watch::channel(0u32);
    let receiver = {
        let rx = Arc::clone(&rx);
        tokio::spawn(async move {
            let mut seen = vec![false; TOTAL as usize];
            for n in 1..=TOTAL {
                let got = recv(&*rx).await;
                let seq = u32::from_be_bytes(got[..4].try_into().unwrap());
                assert!(!seen[seq as usize], "duplicate {seq}");
                seen[seq as usize] = true;
                progress_tx.send_replace(n);
            }
        })
    };
    let sender = {
        let tx = Arc::clone(&tx);
        let mut progress = progress.clone();
        let to = rx.local_addr();
        tokio::spawn(async move {
            for seq in 0..TOTAL {
                if seq % BURST == 0 {
                    progress.wait_for(|&n| n >= seq).await.unwrap();
                }
                let mut payload = seq.to_be_bytes().to_vec();
                payload.resize(64, 0xAA);
                tx.send(to, payload.into()).await.unwrap();
                if seq % 4 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };

    let mut progress = progress;
    // 1. Install everywhere, mid-stream.
    wait_until(&mut progress, 200).await;
    let new = Key::generate().unwrap();
    let new_id = rx_ring.install(new.clone());
    tx_ring.install(new);
    // 2. Switch every member, the sender while its datagrams are in flight.
    wait_until(&mut progress, 400).await;
    tx_ring.use_key(new_id).unwrap();
    rx_ring.use_key(new_id).unwrap();
    // 3. Remove the old key everywhere once everything sealed under it has
    //    arrived. With the flow control, every datagram sealed before the
    //    switch has a sequence number below `switched_at + BURST`, and all
    //    of those have arrived once `switched_at + 2 * BURST` have.
    let switched_at = *progress.borrow();
    assert!(
        switched_at + 4 * BURST < TOTAL,
        "the switch came after the traffic ({switched_at} of {TOTAL}); the test proves nothing"
    );
    wait_until(&mut progress, (switched_at + 3 * BURST).min(TOTAL)).await;
    rx_ring.remove(old_id).unwrap();
    tx_ring.remove(old_id).unwrap();
    assert_eq!(rx_ring.list(), vec![new_id]);

    timeout(Duration::from_secs(30), sender)
        .await
        .unwrap()
        .unwrap();
    timeout(Duration::from_secs(30), receiver)
        .await
        .unwrap()
        .unwrap();
    let stats = rx.stats();
    assert_eq!(stats.opened, u64::from(TOTAL));
    assert_eq!(stats.dropped(), 0, "{stats:?}");
}

/// A plaintext cluster moves to encryption through the three stages, and at
/// every step nodes one stage apart still hear each other.
#[tokio::test]
async fn rolling_enablement_moves_a_plain_cluster_to_encryption() {
    let ring = Keyring::new(Key::generate().unwrap());
    let packet = || Bytes::from_static(b"\x08\x01plain wire packet");
    let stage = |send_plaintext, accept_plaintext| EncryptionConfig {
        send_plaintext,
        accept_plaintext,
        ..config()
    };

    // A node not yet upgraded speaks plain UDP.
    let plain = udp().await;
    let stage1 = node(&ring, stage(true, true)).await;
    let stage2 = node(&ring, stage(false, true)).await;
    let stage3 = node(&ring, stage(false, false)).await;

    // Plain → stage 1 and stage 1 → plain.
    plain.send(stage1.local_addr(), packet()).await.unwrap();
    assert_eq!(recv(&stage1).await, packet());
    stage1.send(plain.local_addr(), packet()).await.unwrap();
    assert_eq!(recv(&plain).await, packet());

    // Stage 1 → stage 2 (plaintext accepted) and stage 2 → stage 1 (sealed
    // accepted).
    stage1.send(stage2.local_addr(), packet()).await.unwrap();
    assert_eq!(recv(&stage2).await, packet());
    stage2.send(stage1.local_addr(), packet()).await.unwrap();
    assert_eq!(recv(&stage1).await, packet());
    assert_eq!(stage1.stats().accepted_plaintext, 1);
    assert_eq!(stage1.stats().opened, 1);

    // Stage 2 ↔ stage 3: both send sealed.
    stage2.send(stage3.local_addr(), packet()).await.unwrap();
    assert_eq!(recv(&stage3).await, packet());
    stage3.send(stage2.local_addr(), packet()).await.unwrap();
    assert_eq!(recv(&stage2).await, packet());

    // Stage 3 refuses plaintext: from a stage-1 node or a plain one.
    stage1.send(stage3.local_addr(), packet()).await.unwrap();
    plain.send(stage3.local_addr(), packet()).await.unwrap();
    nothing_arrives(&stage3).await;
    assert_eq!(stage3.stats().dropped_plaintext, 2);
}

#[test]
fn sending_plaintext_while_refusing_it_is_a_setup_error() {
    let bad = EncryptionConfig {
        send_plaintext: true,
        accept_plaintext: false,
        ..config()
    };
    assert!(matches!(bad.validate(), Err(TransportError::Setup(_))));
}

#[cfg(feature = "testing")]
#[tokio::test]
async fn encrypted_udp_passes_the_transport_conformance_suite() {
    let ring = Keyring::new(Key::generate().unwrap());
    scuttlewire::transport::conformance::run_all(|| {
        let ring = ring.clone();
        async move { Encrypted::new(udp().await, ring, config()).unwrap() }
    })
    .await;
}
