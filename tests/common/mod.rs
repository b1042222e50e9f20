//! Helpers shared by the integration tests.

// Deadlines for real nodes read the (tokio) clock.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::Duration;

use scuttlewire::__private::wire::proto;
use scuttlewire::{Node, NodeId};

/// Polls every 10 ms (of tokio time: virtual under a paused clock) until
/// `check` holds on every node, or `limit` passes. Returns whether it held.
#[allow(dead_code)] // not every test that shares this module needs it
pub async fn eventually(
    nodes: &[Node],
    limit: Duration,
    check: impl AsyncFn(&Node) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut all = true;
        for n in nodes {
            if !check(n).await {
                all = false;
                break;
            }
        }
        if all {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `check` every 5 ms (of tokio time) until it holds or `limit`
/// passes; returns whether it held.
#[allow(dead_code)] // not every test that shares this module needs it
pub async fn wait_for(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// A node identity as the wire carries it, for hand-made packets.
#[allow(dead_code)] // not every test that shares this module needs it
pub fn wire_id(id: &NodeId) -> proto::NodeId {
    let ip = match id.addr {
        SocketAddr::V4(a) => a.ip().octets().to_vec(),
        SocketAddr::V6(a) => a.ip().octets().to_vec(),
    };
    proto::NodeId {
        name: id.name.clone(),
        generation: id.generation,
        ip: ip.into(),
        port: u32::from(id.addr.port()),
    }
}
