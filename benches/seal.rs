//! Cost of encryption.
//!
//! * `seal_open/<cipher>/<size>`: one `Sealer::seal` plus one `Opener::open`
//!   of the frame it produced, per cipher, for 64- and 1,400-byte payloads.
//!   Throughput is in payload bytes.
//! * `aead_only/<cipher>/<size>`: the same seal and open done straight with
//!   `ring`, no framing, no replay window, no allocation: the floor
//!   `seal_open` is measured against (what the framing itself costs is the
//!   difference).
//! * `udp_loopback/{plain,encrypted}`: datagrams per second from one socket
//!   to another on 127.0.0.1, 1,400 bytes on the wire each (the default UDP
//!   budget: plain `Udp` carries a 1,400-byte payload, `Encrypted<Udp>` a
//!   1,366-byte payload sealed to 1,400). Each iteration moves a batch of
//!   1,000 datagrams in windows of 32 — send 32, receive 32 — so the
//!   receiver's socket buffer never overflows and nothing is dropped.
//!
//! ```text
//! cargo bench --bench seal -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use scuttlewire::__private::seal::{Opener, Sealer};
use scuttlewire::seal::{Cipher, Key, Keyring, OVERHEAD};
use scuttlewire::transport::{Encrypted, EncryptionConfig, Transport, Udp};

const LABEL: &str = "bench";
const WIRE: usize = 1_400;
const BATCH: usize = 1_000;
const WINDOW: usize = 32;

fn seal_open(c: &mut Criterion) {
    let key = Key::generate().expect("OS RNG");
    let keyring = Keyring::new(key.clone());
    let mut group = c.benchmark_group("seal_open");
    for cipher in Cipher::ALL {
        for size in [64usize, 1_400] {
            let payload = vec![0x5a; size];
            let mut sealer = Sealer::new(cipher, LABEL).expect("sealer");
            let mut opener = Opener::new(LABEL);
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(BenchmarkId::new(cipher.name(), size), &payload, |b, p| {
                b.iter(|| {
                    let frame = sealer.seal(&key, black_box(p)).expect("seal");
                    let opened = opener.open(&keyring, &frame).expect("open");
                    black_box(opened)
                });
            });
        }
    }
    group.finish();
}

fn aead_only(c: &mut Criterion) {
    use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
    let mut group = c.benchmark_group("aead_only");
    for (name, alg) in [
        ("AES-256-GCM", &AES_256_GCM),
        ("ChaCha20-Poly1305", &CHACHA20_POLY1305),
    ] {
        let key = LessSafeKey::new(UnboundKey::new(alg, &[7; 32]).expect("key"));
        for size in [64usize, 1_400] {
            let mut buf = vec![0x5a; size];
            let aad = [0u8; 40];
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new(name, size), |b| {
                let mut counter = 0u64;
                b.iter(|| {
                    counter += 1;
                    let mut nonce = [0u8; 12];
                    nonce[4..].copy_from_slice(&counter.to_be_bytes());
                    let tag = key
                        .seal_in_place_separate_tag(
                            Nonce::assume_unique_for_key(nonce),
                            Aad::from(&aad),
                            &mut buf,
                        )
                        .expect("seal");
                    key.open_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(&aad),
                        tag,
                        &mut buf,
                        0..,
                    )
                    .expect("open");
                    black_box(&buf);
                });
            });
        }
    }
    group.finish();
}

/// Moves one batch from `tx` to `rx`, window by window.
async fn batch<T: Transport>(tx: &T, rx: &T, to: SocketAddr, payload: &Bytes) {
    let mut left = BATCH;
    while left > 0 {
        let n = left.min(WINDOW);
        for _ in 0..n {
            tx.send(to, payload.clone()).await.expect("send");
        }
        for _ in 0..n {
            let (_, got) = rx.recv().await.expect("recv");
            debug_assert_eq!(got.len(), payload.len());
            black_box(got);
        }
        left -= n;
    }
}

fn udp_loopback(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let mut group = c.benchmark_group("udp_loopback");
    group.throughput(Throughput::Elements(BATCH as u64));

    let (a, b) = rt.block_on(async {
        (
            Udp::bind(any).await.expect("bind"),
            Udp::bind(any).await.expect("bind"),
        )
    });
    let to = b.local_addr();
    let payload = Bytes::from(vec![0x5a; WIRE]);
    group.bench_function("plain", |bench| {
        bench.iter(|| rt.block_on(batch(&a, &b, to, &payload)));
    });

    let keyring = Keyring::new(Key::generate().expect("OS RNG"));
    let (a, b) = rt.block_on(async {
        let wrap = |udp| Encrypted::new(udp, keyring.clone(), EncryptionConfig::new(LABEL));
        (
            wrap(Udp::bind(any).await.expect("bind")).expect("encrypted"),
            wrap(Udp::bind(any).await.expect("bind")).expect("encrypted"),
        )
    });
    let to = b.local_addr();
    let payload = Bytes::from(vec![0x5a; WIRE - OVERHEAD]);
    group.bench_function("encrypted", |bench| {
        bench.iter(|| rt.block_on(batch(&a, &b, to, &payload)));
    });
    let stats = b.stats();
    assert_eq!(
        stats.dropped(),
        0,
        "the benchmark dropped datagrams: {stats:?}"
    );
    group.finish();
}

criterion_group!(benches, seal_open, aead_only, udp_loopback);
criterion_main!(benches);
