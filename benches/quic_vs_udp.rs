//! One gossip exchange over `Quic` against `Udp`, on loopback.
//!
//! * `round_trip/*`: send a 1,000-byte datagram, have the peer echo it,
//!   receive the echo — the latency of one exchange.
//! * `packets/*`: one-way datagrams of 1,000 bytes in bursts of 32, each
//!   burst received in full before the next — packets per second.
//!
//! Both run on one current-thread tokio runtime, so the figures compare the
//! per-datagram cost of each stack (QUIC: TLS record protection, framing,
//! acknowledgements, congestion control) rather than scheduling.
//!
//! ```text
//! cargo bench --bench quic_vs_udp -- --warm-up-time 1 --measurement-time 3
//! ```

// A bench measures time.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use scuttlewire::transport::{Quic, QuicConfig, Transport, Udp};
use tokio::runtime::Runtime;

const PAYLOAD: usize = 1_000;
const BURST: usize = 32;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

fn quic_config(node: u8) -> QuicConfig {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    QuicConfig::from_pem_files(
        dir.join("ca.pem"),
        dir.join(format!("node-{node}.pem")),
        dir.join(format!("node-{node}.key")),
    )
    .expect("dev certificates in certs/")
}

async fn quic_pair() -> (Arc<Quic>, Arc<Quic>) {
    let a = Quic::bind(loopback(), quic_config(1)).await.expect("bind");
    let b = Quic::bind(loopback(), quic_config(2)).await.expect("bind");
    (Arc::new(a), Arc::new(b))
}

async fn udp_pair() -> (Arc<Udp>, Arc<Udp>) {
    let a = Udp::bind(loopback()).await.expect("bind");
    let b = Udp::bind(loopback()).await.expect("bind");
    (Arc::new(a), Arc::new(b))
}

/// Sends one datagram each way so that connection setup is not measured.
async fn warm_up<T: Transport>(a: &T, b: &T) {
    let hello = Bytes::from_static(b"hello");
    a.send(b.local_addr(), hello.clone()).await.expect("send");
    let (from, _) = b.recv().await.expect("recv");
    b.send(from, hello).await.expect("send");
    a.recv().await.expect("recv");
}

fn round_trip<T: Transport>(c: &mut Criterion, name: &str, rt: &Runtime, a: Arc<T>, b: Arc<T>) {
    rt.block_on(warm_up(&*a, &*b));
    let echo = Arc::clone(&b);
    let echo_task = rt.spawn(async move {
        while let Ok((from, bytes)) = echo.recv().await {
            let _ = echo.send(from, bytes).await;
        }
    });
    let payload = Bytes::from(vec![0x5a; PAYLOAD]);
    let to = b.local_addr();
    c.benchmark_group("round_trip")
        .throughput(Throughput::Elements(1))
        .bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        a.send(to, payload.clone()).await.expect("send");
                        a.recv().await.expect("recv");
                    }
                    start.elapsed()
                })
            });
        });
    echo_task.abort();
}

fn packets<T: Transport>(c: &mut Criterion, name: &str, rt: &Runtime, a: Arc<T>, b: Arc<T>) {
    rt.block_on(warm_up(&*a, &*b));
    let payload = Bytes::from(vec![0xa5; PAYLOAD]);
    let to = b.local_addr();
    c.benchmark_group("packets")
        .throughput(Throughput::Elements(BURST as u64))
        .bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        for _ in 0..BURST {
                            a.send(to, payload.clone()).await.expect("send");
                        }
                        for _ in 0..BURST {
                            tokio::time::timeout(Duration::from_secs(5), b.recv())
                                .await
                                .expect("burst lost")
                                .expect("recv");
                        }
                    }
                    start.elapsed()
                })
            });
        });
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (a, b) = rt.block_on(udp_pair());
    round_trip(c, "udp", &rt, a, b);
    let (a, b) = rt.block_on(quic_pair());
    round_trip(c, "quic", &rt, a, b);
    let (a, b) = rt.block_on(udp_pair());
    packets(c, "udp", &rt, a, b);
    let (a, b) = rt.block_on(quic_pair());
    packets(c, "quic", &rt, a, b);
}

criterion_group!(quic_vs_udp, benches);
criterion_main!(quic_vs_udp);
