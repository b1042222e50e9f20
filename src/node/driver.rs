//! The driver task: the one owner of the engine and the transport. It
//! pumps datagrams in, timers and commands through, and datagrams and
//! events out.

// The driver owns the clock: the engine gets every instant from here.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::discovery::{self, Discoverer};
use super::keys::{KEYS_STATE_KEY, KeyPublisher};
use super::seeds::Seeds;
use super::telemetry::Telemetry;
use super::{Command, NodeMetrics, SeedProvider};
use crate::Event;
use crate::engine::Engine;
use crate::transport::{Transport, TransportError};

/// How often the seed provider may be asked while the node knows no peer.
const SEED_RETRY: Duration = Duration::from_secs(1);

// Each argument is one part the task owns from here on; a struct holding
// them would only be unpacked again on the first line.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<T: Transport>(
    mut engine: Engine,
    transport: T,
    mut commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<Event>,
    mut seeds: Seeds,
    mut seed_provider: Option<SeedProvider>,
    mut keys: Option<KeyPublisher>,
    mut telemetry: Telemetry,
    mut discovery: Option<Discoverer>,
) {
    let mut send_errors = 0u64;
    let mut recv_errors = 0u64;
    let mut recv_error_streak = 0u32;
    let mut next_seed_ask = Instant::now();
    let mut shutdown_ack = None;
    let mut leave_ack = None;
    let span = tracing::debug_span!("node", name = %engine.local_id().name);
    let _enter = span.enter();
    loop {
        while let Some(t) = engine.poll_transmit() {
            if let Err(e) = transport.send(t.to, t.payload).await {
                send_errors += 1;
                if !e.is_transient() {
                    tracing::warn!(error = %e, "transport closed; node stops");
                    transport.close().await;
                    return;
                }
                if let TransportError::TooLarge { max, len } = e {
                    // Never retried whole: later packets are packed smaller.
                    if engine.shrink_budget(max) {
                        tracing::warn!(to = %t.to, len, max, "transport limit shrank; packing smaller");
                    }
                    continue;
                }
                tracing::debug!(to = %t.to, error = %e, "send failed");
            }
        }
        while let Some(ev) = engine.poll_event() {
            // No subscriber is fine: events are then simply not observed.
            let _ = events.send(ev);
        }
        telemetry.drain(&mut engine);
        if let Some(provider) = seed_provider.as_mut() {
            if engine.needs_seeds() && Instant::now() >= next_seed_ask {
                seeds.add(&mut engine, provider());
                next_seed_ask = Instant::now() + SEED_RETRY;
            }
        }
        seeds.resolve_if_due(&engine);
        let mut deadline = Instant::from_std(engine.poll_timeout());
        if let Some(t) = seeds.next_due() {
            deadline = deadline.min(t);
        }
        tokio::select! {
            r = transport.recv() => match r {
                Ok((from, bytes)) => {
                    recv_error_streak = 0;
                    engine.handle_packet(Instant::now().into_std(), from, &bytes);
                }
                Err(e) if e.is_transient() => {
                    recv_errors += 1;
                    recv_error_streak += 1;
                    tracing::debug!(error = %e, "receive failed");
                    if recv_error_streak > 8 {
                        // A persistent error: do not spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "transport closed; node stops");
                    break;
                }
            },
            resolution = seeds.resolved() => seeds.apply(&mut engine, resolution),
            step = discovery::next(&mut discovery, engine.needs_seeds()) => {
                if let Some(d) = discovery.as_mut() {
                    d.handle(step, &mut engine, &mut seeds).await;
                }
            }
            cmd = commands.recv() => match cmd {
                None => break,
                Some(Command::Shutdown(ack)) => {
                    shutdown_ack = Some(ack);
                    break;
                }
                Some(Command::Leave(ack)) => {
                    let told = engine.leave(Instant::now().into_std());
                    leave_ack = Some((ack, told));
                    break;
                }
                Some(Command::AddSeeds(addrs)) => seeds.add(&mut engine, addrs),
                Some(Command::PublishKeys(ack)) => {
                    let published = keys.as_mut().map_or(Ok(()), |k| k.publish(&mut engine, Instant::now().into_std()));
                    let _ = ack.send(published);
                }
                Some(cmd) => handle(&mut engine, cmd, send_errors, recv_errors),
            },
            () = telemetry.due() => telemetry.report(&engine, send_errors, recv_errors),
            () = tokio::time::sleep_until(deadline) => {
                // Keyring changes made around the node handle (through a
                // `Keyring` clone) are published here, within one interval.
                if let Some(k) = keys.as_mut() {
                    if let Err(e) = k.publish(&mut engine, Instant::now().into_std()) {
                        tracing::debug!(error = %e, "could not publish key ids");
                    }
                }
                engine.handle_timeout(Instant::now().into_std());
            }
        }
    }
    // Drain what is already queued so a final write still leaves.
    while let Some(t) = engine.poll_transmit() {
        let _ = transport.send(t.to, t.payload).await;
    }
    // ...and out of the transport's own queues (QUIC's) before it goes:
    // `leave` returns only once its rumors are on the wire.
    transport.close().await;
    // The last counts, so what the final moments did is not lost.
    telemetry.drain(&mut engine);
    telemetry.report(&engine, send_errors, recv_errors);
    if let Some(ack) = shutdown_ack {
        let _ = ack.send(());
    }
    if let Some((ack, told)) = leave_ack {
        let _ = ack.send(told);
    }
}

fn handle(engine: &mut Engine, cmd: Command, send_errors: u64, recv_errors: u64) {
    let now = Instant::now().into_std();
    match cmd {
        Command::Set(k, v, tx) => {
            let _ = tx.send(engine.set(now, &k, v));
        }
        Command::Delete(k, tx) => {
            let _ = tx.send(engine.delete(now, &k));
        }
        Command::Get(n, k, tx) => {
            let _ = tx.send(engine.get(&n, &k));
        }
        Command::Members(tx) => {
            let _ = tx.send(engine.members());
        }
        Command::Entries(name, tx) => {
            let _ = tx.send(engine.entries(&name));
        }
        Command::Metrics(tx) => {
            let _ = tx.send(NodeMetrics {
                engine: engine.metrics(),
                members: engine.member_counts(),
                send_errors,
                recv_errors,
                seal: None,
                discovery: None,
            });
        }
        Command::ClusterKeys(tx) => {
            let snapshot = engine
                .members()
                .into_iter()
                .map(|m| {
                    let value = engine.get(&m.id.name, KEYS_STATE_KEY);
                    (m, value)
                })
                .collect();
            let _ = tx.send(snapshot);
        }
        Command::Broadcast(payload, tx) => {
            let _ = tx.send(engine.broadcast(now, payload));
        }
        // Handled in `run`, which owns what they need.
        Command::Shutdown(_)
        | Command::PublishKeys(_)
        | Command::Leave(_)
        | Command::AddSeeds(_) => {}
    }
}
