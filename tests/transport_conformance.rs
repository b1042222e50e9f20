//! Every transport in the crate passes the same conformance suite.

use std::net::SocketAddr;

use scuttlewire::transport::{MemoryNetwork, Udp, conformance};

async fn udp(addr: &str) -> Udp {
    let addr: SocketAddr = addr.parse().expect("literal address");
    Udp::bind(addr).await.expect("bind loopback UDP")
}

#[tokio::test]
async fn udp_ipv4_conforms() {
    conformance::run_all(|| udp("127.0.0.1:0")).await;
}

#[tokio::test]
async fn udp_ipv6_conforms() {
    let loopback: SocketAddr = "[::1]:0".parse().expect("literal address");
    if let Err(e) = Udp::bind(loopback).await {
        eprintln!("skipping: no IPv6 loopback here ({e})");
        return;
    }
    conformance::run_all(|| udp("[::1]:0")).await;
}

#[tokio::test]
async fn memory_conforms() {
    let network = MemoryNetwork::new(42);
    conformance::run_all(|| std::future::ready(network.bind())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_conforms_on_a_multi_threaded_runtime() {
    let network = MemoryNetwork::new(42);
    conformance::run_all(|| std::future::ready(network.bind())).await;
}
