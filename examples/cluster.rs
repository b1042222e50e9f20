//! The main demo: a local cluster on loopback UDP.
//!
//! Starts eight nodes on `127.0.0.1` (ports chosen by the OS), each joining
//! through the first, waits until everyone knows everyone, sets one key on
//! the last node and prints how long until every node has it. Exits 0 by
//! itself.
//!
//! ```text
//! cargo run --example cluster
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use scuttlewire::{Config, Event, Node};

const NODES: usize = 8;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let mut nodes: Vec<Node> = Vec::new();
    let started = Instant::now();
    for i in 0..NODES {
        let mut builder = Node::builder(Config::lan().with_name(format!("node-{i}")))
            .initial_state("role", if i == 0 { "seed" } else { "worker" });
        if let Some(first) = nodes.first() {
            builder = builder.seeds([first.local_id().addr]);
        }
        nodes.push(builder.start_udp(any).await?);
    }
    println!("started {NODES} nodes on loopback UDP (LAN preset: gossip every 200 ms)");
    for n in &nodes {
        println!("  {}", n.local_id());
    }

    // Wait until every node knows every other.
    loop {
        let mut full = 0;
        for n in &nodes {
            if n.members().await?.len() == NODES {
                full += 1;
            }
        }
        if full == NODES {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err("membership did not converge within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("membership converged after {:?}", started.elapsed());

    // Every node but the writer watches for the key.
    let writer = &nodes[NODES - 1];
    let writer_name = writer.local_id().name.clone();
    let mut watchers = Vec::new();
    for n in &nodes[..NODES - 1] {
        let mut events = n.events();
        let name = n.local_id().name.clone();
        let owner = writer_name.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                if let Event::KeySet { node, key, .. } = ev {
                    if node.name == owner && key == "greeting" {
                        return Some((name, Instant::now()));
                    }
                }
            }
            None
        }));
    }
    let t0 = Instant::now();
    writer.set("greeting", "hello, cluster").await?;
    println!("{writer_name} set greeting = \"hello, cluster\"");
    let mut last = Duration::ZERO;
    for w in watchers {
        let got = tokio::time::timeout(Duration::from_secs(30), w).await;
        let Ok(Ok(Some((name, at)))) = got else {
            return Err("a node did not receive the key within 30 s".into());
        };
        let took = at.duration_since(t0);
        last = last.max(took);
        println!(
            "  {name:<8} has it after {:>7.1} ms",
            took.as_secs_f64() * 1e3
        );
    }
    println!(
        "every node has the value after {:.1} ms",
        last.as_secs_f64() * 1e3
    );

    let m = nodes[0].metrics().await?;
    println!(
        "node-0 traffic: {} packets / {} bytes sent, largest packet {} B (budget 1400 B), {} dropped",
        m.engine.packets_sent,
        m.engine.bytes_sent,
        m.engine.largest_packet_sent,
        m.engine.drops.total()
    );
    for n in nodes {
        n.shutdown().await;
    }
    Ok(())
}
