//! A transport written outside the crate, plugged into real nodes.
//!
//! `BusTransport` moves datagrams over an in-process "bus" of tokio mpsc
//! channels: a `Bus` maps each address to its inbox. It implements
//! [`Transport`] exactly as the trait's documentation asks (whole
//! datagrams, a fixed `max_payload`, `TooLarge` for anything bigger,
//! never blocking on a slow peer, a cancellation-safe `recv`), proves it
//! with the crate's exported conformance suite, then carries a cluster of
//! three nodes.
//!
//! ```sh
//! cargo run --example custom_transport --features testing
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use scuttlewire::transport::{Transport, TransportError, conformance};
use scuttlewire::{Config, Node};
use tokio::sync::mpsc;

/// One datagram in flight: its source and its bytes.
type Datagram = (SocketAddr, Bytes);

/// The shared medium: every attached transport's inbox, by address.
#[derive(Clone, Default)]
struct Bus {
    inboxes: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Datagram>>>>,
    next_host: Arc<Mutex<u8>>,
}

impl Bus {
    /// Datagrams an inbox holds before newer ones are dropped (as a full
    /// socket buffer would).
    const INBOX: usize = 1024;

    /// Attaches a new transport at the next free address `10.99.0.N:7946`.
    fn attach(&self) -> BusTransport {
        let host = {
            let mut next = self
                .next_host
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *next = next.wrapping_add(1);
            *next
        };
        let addr = SocketAddr::from(([10, 99, 0, host], 7946));
        let (tx, rx) = mpsc::channel(Self::INBOX);
        self.lock().insert(addr, tx);
        BusTransport {
            bus: self.clone(),
            addr,
            inbox: tokio::sync::Mutex::new(rx),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::Sender<Datagram>>> {
        self.inboxes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`Transport`] on a [`Bus`].
struct BusTransport {
    bus: Bus,
    addr: SocketAddr,
    /// `recv` takes `&self`; both locking this async mutex and
    /// `mpsc::Receiver::recv` are cancellation safe, so `recv` is too.
    inbox: tokio::sync::Mutex<mpsc::Receiver<Datagram>>,
}

impl BusTransport {
    /// The largest datagram this transport carries.
    const MAX_PAYLOAD: usize = 1_200;
}

impl Transport for BusTransport {
    async fn send(&self, to: SocketAddr, payload: Bytes) -> Result<(), TransportError> {
        if payload.len() > Self::MAX_PAYLOAD {
            return Err(TransportError::TooLarge {
                len: payload.len(),
                max: Self::MAX_PAYLOAD,
            });
        }
        let inbox = self.bus.lock().get(&to).cloned();
        if let Some(inbox) = inbox {
            // Never wait on a slow receiver: a full inbox loses the
            // datagram, as UDP would. Nobody at `to`: lost as well.
            let _ = inbox.try_send((self.addr, payload));
        }
        Ok(())
    }

    async fn recv(&self) -> Result<(SocketAddr, Bytes), TransportError> {
        let mut inbox = self.inbox.lock().await;
        inbox.recv().await.ok_or(TransportError::Closed)
    }

    fn max_payload(&self) -> usize {
        Self::MAX_PAYLOAD
    }

    fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for BusTransport {
    fn drop(&mut self) {
        self.bus.lock().remove(&self.addr);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bus = Bus::default();

    // 1. The same checks every transport in the crate passes.
    conformance::run_all(|| std::future::ready(bus.attach())).await;
    println!("BusTransport passes the transport conformance suite");

    // 2. Three nodes on the bus, seeded with the first.
    let mut nodes = Vec::new();
    let mut seed = None;
    for name in ["alpha", "beta", "gamma"] {
        let transport = bus.attach();
        let addr = transport.local_addr();
        let node = Node::builder(Config::local().with_name(name))
            .seeds(seed)
            .initial_state("greeting", format!("hello from {name}"))
            .start(transport)
            .await?;
        seed.get_or_insert(addr);
        nodes.push(node);
    }

    // 3. Every node learns every greeting.
    let converged = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let mut missing = 0;
            for node in &nodes {
                for name in ["alpha", "beta", "gamma"] {
                    if node.get(name, "greeting").await?.is_none() {
                        missing += 1;
                    }
                }
            }
            if missing == 0 {
                return Ok::<_, scuttlewire::NodeError>(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    match converged {
        Ok(result) => result?,
        Err(_) => return Err("the three nodes did not converge within 20 s".into()),
    }
    for node in &nodes {
        let members = node.members().await?.len();
        let greeting = node.get("gamma", "greeting").await?.unwrap_or_default();
        println!(
            "{}: {members} members, gamma says {:?}",
            node.local_id().name,
            String::from_utf8_lossy(&greeting)
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}
