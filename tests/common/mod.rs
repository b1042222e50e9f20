//! Helpers shared by the integration tests.

// Deadlines for real nodes read the (tokio) clock.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use scuttlewire::Node;

/// Polls every 10 ms (of tokio time: virtual under a paused clock) until
/// `check` holds on every node, or `limit` passes. Returns whether it held.
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
