//! The main demo: a local cluster on loopback UDP.
//!
//! Starts eight nodes on `127.0.0.1` (ports chosen by the OS), each joining
//! through the first, waits until everyone knows everyone, sets one key on
//! the last node and prints how long until every node has it. Exits 0 by
//! itself.
//!
//! ```text
//! cargo run --example cluster                      # 8 nodes, one write
//! cargo run --release --example cluster -- 128 20  # 128 nodes, 20 writes: mean and worst
//! ```

// The demo reports how long propagation took, in real time.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use scuttlewire::{Config, Event, Node};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(Ok(8), |a| a.parse())?;
    let count = count.max(2);
    let writes: usize = args.next().map_or(Ok(1), |a| a.parse())?;
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let mut nodes: Vec<Node> = Vec::new();
    let started = Instant::now();
    for i in 0..count {
        let mut builder = Node::builder(Config::lan().with_name(format!("node-{i}")))
            .initial_state("role", if i == 0 { "seed" } else { "worker" });
        if let Some(first) = nodes.first() {
            builder = builder.seeds([first.local_id().addr]);
        }
        nodes.push(builder.start_udp(any).await?);
    }
    println!("started {count} nodes on loopback UDP (LAN preset: gossip every 200 ms)");
    for n in nodes.iter().take(16) {
        println!("  {}", n.local_id());
    }

    // Wait until every node knows every other.
    loop {
        let mut full = 0;
        for n in &nodes {
            if n.members().await?.len() == count {
                full += 1;
            }
        }
        if full == count {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err("membership did not converge within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("membership converged after {:?}", started.elapsed());

    let mut totals = Vec::new();
    for w in 0..writes {
        let writer = &nodes[(count - 1 + w * 7) % count];
        let last = write_and_wait(&nodes, writer, w, writes == 1).await?;
        totals.push(last);
    }
    if writes > 1 {
        let mean = totals.iter().map(Duration::as_secs_f64).sum::<f64>() / writes as f64;
        let worst = totals.iter().max().copied().unwrap_or_default();
        println!(
            "{writes} writes: every node had the value after {:.1} ms on average, {:.1} ms at worst",
            mean * 1e3,
            worst.as_secs_f64() * 1e3
        );
    }

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

/// Sets a key on `writer` and waits until every other node has it; returns
/// how long the last one took.
async fn write_and_wait(
    nodes: &[Node],
    writer: &Node,
    round: usize,
    verbose: bool,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let writer_name = writer.local_id().name.clone();
    let key = format!("greeting-{round}");
    let mut watchers = Vec::new();
    for n in nodes.iter().filter(|n| n.local_id().name != writer_name) {
        let mut events = n.events();
        let name = n.local_id().name.clone();
        let (owner, key) = (writer_name.clone(), key.clone());
        watchers.push(tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                if let Ok(Event::KeySet { node, key: k, .. }) = ev {
                    if node.name == owner && k == key {
                        return Some((name, Instant::now()));
                    }
                }
            }
            None
        }));
    }
    let t0 = Instant::now();
    writer.set(key.as_str(), "hello, cluster").await?;
    if verbose {
        println!("{writer_name} set {key} = \"hello, cluster\"");
    }
    let mut last = Duration::ZERO;
    for w in watchers {
        let got = tokio::time::timeout(Duration::from_secs(30), w).await;
        let Ok(Ok(Some((name, at)))) = got else {
            return Err("a node did not receive the key within 30 s".into());
        };
        let took = at.duration_since(t0);
        last = last.max(took);
        if verbose {
            println!(
                "  {name:<8} has it after {:>7.1} ms",
                took.as_secs_f64() * 1e3
            );
        }
    }
    println!(
        "every node has the value after {:.1} ms",
        last.as_secs_f64() * 1e3
    );
    Ok(last)
}
