//! A cluster on encrypted UDP, and a live key rotation under traffic.
//!
//! Starts five nodes on `127.0.0.1` (ports chosen by the OS) over
//! `Encrypted<Udp>` with AES-256-GCM, waits until a value set on one node
//! reaches every node, then rotates the cluster key while a writer keeps
//! setting a counter every 50 ms:
//!
//! 1. generate a new key, install it on every node, wait until
//!    `safe_to_use(new)` (every member publishes that it holds it);
//! 2. make it primary on every node, wait until `safe_to_remove(old)` (no
//!    member seals with the old key any more);
//! 3. remove the old key everywhere.
//!
//! It prints each step and the seal layer's drop counters, and ends with
//! "0 datagrams dropped" when nothing was lost. Exits 0 by itself, in a few
//! seconds.
//!
//! ```text
//! cargo run --example lan_encrypted_udp
//! ```
//!
//! To make a key for a real cluster, run this example and copy the line it
//! prints (`Key::generate()?.to_base64()`), or `openssl rand -base64 32`;
//! load it on each member with `Key::from_base64` or `Key::from_file`.

// The example times real nodes on real sockets.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scuttlewire::node::ClusterKeys;
use scuttlewire::seal::{Key, Keyring};
use scuttlewire::transport::{EncryptedStats, EncryptionConfig};
use scuttlewire::{Config, Node};

const NODES: usize = 5;
const PATIENCE: Duration = Duration::from_secs(10);

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    println!(
        "how to generate a key: Key::generate()?.to_base64() -> {}",
        Key::generate()?.to_base64()
    );

    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let old = Key::generate()?;
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..NODES {
        let config = Config::local()
            .with_name(format!("node-{i}"))
            .with_cluster("lan-demo");
        let seeds: Vec<SocketAddr> = nodes
            .first()
            .map(|n| n.local_id().addr)
            .into_iter()
            .collect();
        // An empty cluster label means "use the config's cluster name".
        let node = Node::builder(config)
            .seeds(seeds)
            .start_encrypted_udp(any, Keyring::new(old.clone()), EncryptionConfig::default())
            .await?;
        nodes.push(node);
    }
    println!(
        "started {NODES} nodes on encrypted UDP (AES-256-GCM), key {}",
        old.id()
    );

    let started = Instant::now();
    nodes[NODES - 1]
        .set("greeting", "hello, sealed world")
        .await?;
    wait_until("the greeting reaches every node", async || {
        for n in &nodes {
            if n.get(&format!("node-{}", NODES - 1), "greeting")
                .await?
                .is_none()
            {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    println!(
        "state propagated to all {NODES} nodes in {:?}",
        started.elapsed()
    );

    // A writer keeps state flowing during the whole rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (node, stop, written) = (nodes[0].clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut counter = 0u64;
            while !stop.load(Ordering::Relaxed) {
                counter += 1;
                node.set("counter", counter.to_string()).await?;
                written.store(counter, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok::<u64, scuttlewire::NodeError>(counter)
        })
    };

    let new = Key::generate()?;
    let new_id = new.id();
    println!("rotation: new key {new_id} replaces {}", old.id());

    for n in &nodes {
        n.install_key(new.clone()).await?;
    }
    println!("  1. installed on every node");
    wait_views(&nodes, "safe_to_use(new)", |v| v.safe_to_use(new_id)).await?;
    println!(
        "     every member holds it:\n{}",
        indent(&nodes[0].cluster_keys().await?)
    );

    for n in &nodes {
        n.use_key(new_id).await?;
    }
    println!("  2. primary on every node");
    wait_views(&nodes, "safe_to_remove(old)", |v| {
        v.safe_to_remove(old.id())
    })
    .await?;
    println!(
        "     no member seals with the old key:\n{}",
        indent(&nodes[0].cluster_keys().await?)
    );
    // Let datagrams sealed just before the switch drain (docs/SECURITY.md).
    tokio::time::sleep(Duration::from_millis(300)).await;

    for n in &nodes {
        n.remove_key(old.id()).await?;
    }
    println!("  3. old key removed everywhere");
    wait_views(&nodes, "only the new key left", |v| v.usage().len() == 1).await?;
    println!(
        "     {}",
        nodes[0].cluster_keys().await?.to_string().trim_end()
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let last = writer.await??;
    wait_until("the last counter reaches every node", async || {
        for n in &nodes {
            if n.get("node-0", "counter").await?.as_deref() != Some(last.to_string().as_bytes()) {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    println!(
        "state kept flowing: {} counter writes during the rotation, the last ({last}) is on every node",
        written.load(Ordering::Relaxed)
    );

    let mut dropped = 0;
    println!("seal layer counters per node:");
    for n in &nodes {
        let s = n.seal_stats().unwrap_or_default();
        dropped += s.dropped();
        println!("  {}: {}", n.local_id().name, summary(&s));
    }
    for n in &nodes {
        n.shutdown().await;
    }
    if dropped == 0 {
        println!("0 datagrams dropped");
        Ok(())
    } else {
        Err(format!("{dropped} datagrams dropped by the seal layer").into())
    }
}

fn summary(s: &EncryptedStats) -> String {
    format!(
        "sealed {}, opened {}, dropped: auth {}, unknown key {}, replay {}, malformed {}, plaintext {}",
        s.sealed,
        s.opened,
        s.dropped_auth,
        s.dropped_unknown_key,
        s.dropped_replay,
        s.dropped_malformed,
        s.dropped_plaintext
    )
}

fn indent(view: &ClusterKeys) -> String {
    view.to_string()
        .lines()
        .map(|l| format!("       {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls `check` until it holds, or fails after [`PATIENCE`].
async fn wait_until(
    what: &str,
    mut check: impl AsyncFnMut() -> Result<bool, scuttlewire::NodeError>,
) -> Result<(), Error> {
    let deadline = Instant::now() + PATIENCE;
    while !check().await? {
        if Instant::now() >= deadline {
            return Err(format!("timed out waiting until {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits until `check` holds on every node's view of the cluster's keys.
async fn wait_views(
    nodes: &[Node],
    what: &str,
    check: impl Fn(&ClusterKeys) -> bool,
) -> Result<(), Error> {
    wait_until(what, async || {
        for n in nodes {
            if !check(&n.cluster_keys().await?) {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await
}
