//! Three nodes on loopback gossiping over QUIC with mutual TLS, using the
//! development CA in `certs/` (development only — see `certs/README.md`).
//! State propagates; then one node restarts at the same address, with a
//! new generation, and rejoins.
//!
//! ```text
//! cargo run --example wan_quic
//! RUST_LOG=scuttlewire=debug cargo run --example wan_quic   # see handshakes
//! ```

// The example times real nodes on real sockets.
#![allow(clippy::disallowed_methods)]

use std::error::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scuttlewire::transport::{Quic, QuicConfig};
use scuttlewire::{Config, Node};
use tokio::time::{Instant, sleep};

fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
}

/// The QUIC settings of `name`, from its PEM files, with the gossip name
/// bound to the certificate: checked against this node's own certificate
/// at bind, and every peer's datagrams dropped if they claim a name their
/// certificate does not carry.
fn quic_config(name: &str) -> Result<QuicConfig, Box<dyn Error>> {
    let dir = certs();
    let mut config = QuicConfig::from_pem_files(
        dir.join("ca.pem"),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )?;
    config.node_name = Some(name.to_owned());
    Ok(config)
}

async fn start(name: &str, bind: SocketAddr, seeds: &[SocketAddr]) -> Result<Node, Box<dyn Error>> {
    let config = quic_config(name)?;
    // A restarted node may find its old port held for a moment while the
    // previous endpoint finishes closing.
    let deadline = Instant::now() + Duration::from_secs(5);
    let quic = loop {
        match Quic::bind(bind, config.clone()).await {
            Ok(quic) => break quic,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "bind failed; retrying");
                sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let node = Node::builder(Config::local().with_name(name))
        .seeds(seeds.iter().copied())
        .start(quic)
        .await?;
    println!("{name} up at {}", node.local_id().addr);
    Ok(node)
}

/// Waits until every node in `nodes` sees `owner.key == value`.
async fn until_everyone_sees(
    nodes: &[&Node],
    owner: &str,
    key: &str,
    value: &str,
) -> Result<Duration, Box<dyn Error>> {
    let started = Instant::now();
    for node in nodes {
        while node.get(owner, key).await?.as_deref() != Some(value.as_bytes()) {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("{} never saw {owner}.{key}", node.local_id().name).into());
            }
            sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(started.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "scuttlewire=warn".into()),
        )
        .init();
    let any: SocketAddr = "127.0.0.1:0".parse()?;

    let n1 = start("node-1", any, &[]).await?;
    let seed = [n1.local_id().addr];
    let n2 = start("node-2", any, &seed).await?;
    let n3 = start("node-3", any, &seed).await?;

    n1.set("region", "eu-west").await?;
    n3.set("load", "0.42").await?;
    let took = until_everyone_sees(&[&n1, &n2, &n3], "node-3", "load", "0.42").await?;
    until_everyone_sees(&[&n2, &n3], "node-1", "region", "eu-west").await?;
    println!("state propagated to all three nodes in {took:?}");

    // node-2 restarts at the same address: a new generation of node-2.
    let addr2 = n2.local_id().addr;
    let old_generation = n2.local_id().generation;
    n2.shutdown().await;
    println!("node-2 stopped");
    let n2 = start("node-2", addr2, &seed).await?;
    println!(
        "node-2 restarted at {addr2}, generation {old_generation} -> {}",
        n2.local_id().generation
    );
    n2.set("status", "back").await?;
    let took = until_everyone_sees(&[&n1, &n3], "node-2", "status", "back").await?;
    until_everyone_sees(&[&n2], "node-3", "load", "0.42").await?;
    println!("node-2 rejoined: its new state reached the others in {took:?}, and it caught up");

    for node in [&n1, &n2, &n3] {
        let members = node.members().await?;
        let summary: Vec<String> = members
            .iter()
            .map(|m| format!("{}#{}:{:?}", m.id.name, m.id.generation % 10_000, m.status))
            .collect();
        println!("{} sees {}", node.local_id().name, summary.join(", "));
    }
    for node in [n1, n2, n3] {
        node.shutdown().await;
    }
    Ok(())
}
