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
use crate::engine::{Engine, Every};
use crate::transport::{Transport, TransportError};

/// How often the seed provider may be asked while the node knows no peer.
const SEED_RETRY: Duration = Duration::from_secs(1);

/// Datagrams already waiting that are read, at most, before due timers
/// run (see the timer branch of [`run`]). A full batch means the node is
/// behind. The pushes of one peer read in a batch are acknowledged
/// together (engine `acks`).
const READY_BATCH: usize = 64;

/// How often the driver reads how many datagrams the OS dropped for its
/// transport when nothing suggests it should look sooner. Reading
/// `/proc/net/udp` makes the kernel format a row per UDP socket on the
/// host, so it is not done per metrics call: with 1,024 nodes in one
/// process, a read every 5 s by each took a tenth of the CPU.
const OS_DROPS_CHECK: Duration = Duration::from_secs(30);

/// How often, at most, the driver reads the OS's drops while it finds
/// datagrams piling up unread (the sign that comes before a full buffer).
const OS_DROPS_CHECK_BUSY: Duration = Duration::from_secs(5);

/// How often the driver logs that its node is overloaded, or that the
/// OS drops its datagrams, at most (each).
const WARN_EVERY: Duration = Duration::from_secs(30);

/// How long a stopping node waits, at most, for its transport to send what
/// is queued and close. [`Transport::close`] itself should take about a
/// second at most (QUIC's: one to flush, one to close).
const LAST_WORDS_LIMIT: Duration = Duration::from_secs(5);

/// The transport's own counters, as the driver keeps them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IoCounts {
    pub send_errors: u64,
    pub recv_errors: u64,
    /// Datagrams the OS dropped at the transport's full receive buffer,
    /// as of the last check (`None`: the transport does not tell).
    pub os_receive_drops: Option<u64>,
}

/// Tells the engine when the node is overloaded, and says so in the log
/// (at most once per [`WARN_EVERY`]).
#[derive(Debug, Default)]
struct Overload {
    warned: Every,
}

impl Overload {
    fn note(&mut self, engine: &mut Engine, cause: &'static str, now: Instant) {
        engine.note_overload(now.into_std());
        if !self.warned.due(now.into_std(), WARN_EVERY) {
            return;
        }
        tracing::warn!(
            cause,
            shed_rounds = engine.metrics().shed_rounds,
            "node overloaded: shedding anti-entropy and announcements (probes, \
             rumors and pushes go on); dissemination slows down"
        );
    }
}

/// Watches the OS's receive drops and says, rate-limited, when they grow:
/// a node that cannot keep up with what it is sent loses datagrams before
/// it sees them, which nothing else would report.
#[derive(Debug)]
struct OsDrops {
    /// When the count was last read.
    checked: Instant,
    warned: Every,
    /// Drops not yet reported in a warning.
    unreported: u64,
}

impl OsDrops {
    fn new(now: Instant) -> OsDrops {
        OsDrops {
            checked: now,
            warned: Every::default(),
            unreported: 0,
        }
    }

    /// Takes the transport's count (`None`: not told), keeps it in `io`,
    /// and warns if it grew (at most once per [`WARN_EVERY`], naming the
    /// drops since the last warning); returns whether it did.
    fn check(&mut self, total: Option<u64>, io: &mut IoCounts, now: Instant) -> bool {
        self.checked = now;
        let Some(total) = total else {
            return false;
        };
        let before = io.os_receive_drops.unwrap_or(0);
        io.os_receive_drops = Some(total);
        self.unreported += total.saturating_sub(before);
        if self.unreported == 0 || !self.warned.due(now.into_std(), WARN_EVERY) {
            return false;
        }
        tracing::warn!(
            dropped = self.unreported,
            total,
            "the OS dropped datagrams at this node's full receive buffer: the node \
             cannot keep up with what it is sent (check CPU), or the buffer is small \
             (raise net.core.rmem_default, or hand Udp::from_std a socket with a \
             larger SO_RCVBUF)"
        );
        self.unreported = 0;
        true
    }
}

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
    let mut io = IoCounts::default();
    let mut os_drops = OsDrops::new(Instant::now());
    let mut overload = Overload::default();
    let mut os_drops_check = tokio::time::interval(OS_DROPS_CHECK);
    os_drops_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut recv_error_streak = 0u32;
    let mut next_seed_ask = Instant::now();
    let mut shutdown_ack = None;
    let mut leave_ack = None;
    let span = tracing::debug_span!("node", name = %engine.local_id().name);
    let _enter = span.enter();
    loop {
        while let Some(t) = engine.poll_transmit() {
            if let Err(e) = transport.send(t.to, t.payload).await {
                io.send_errors += 1;
                if !e.is_transient() {
                    tracing::warn!(error = %e, "transport closed; node stops");
                    // Bounded as at the end of the loop.
                    let _ = tokio::time::timeout(LAST_WORDS_LIMIT, transport.close()).await;
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
                    io.recv_errors += 1;
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
                Some(cmd) => handle(&mut engine, cmd, io),
            },
            () = telemetry.due() => telemetry.report(&engine, io),
            _ = os_drops_check.tick() => {
                let before = io.os_receive_drops;
                os_drops.check(transport.os_receive_drops(), &mut io, Instant::now());
                if io.os_receive_drops > before && before.is_some() {
                    overload.note(&mut engine, "the OS drops datagrams", Instant::now());
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                // Datagrams already waiting are read first (a batch at
                // most, so timers are never starved): an answer sitting in
                // the socket must not be taken for silence. A probe failed
                // or a push resent while its ack was queued here is how a
                // busy node came to suspect its peers and resend to them.
                let waiting = read_waiting(
                    &transport,
                    &mut engine,
                    &mut io,
                    &mut recv_error_streak,
                    READY_BATCH,
                );
                if waiting == READY_BATCH {
                    // A full batch was waiting: the node is behind.
                    let now = Instant::now();
                    overload.note(&mut engine, "datagrams pile up unread", now);
                    if now.saturating_duration_since(os_drops.checked) >= OS_DROPS_CHECK_BUSY {
                        os_drops_check.reset_immediately();
                    }
                }
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
    // Drain what is already queued so a final write still leaves, and out
    // of the transport's own queues (QUIC's) before it goes: `leave`
    // returns only once its rumors are on the wire. Bounded, so that a
    // transport stalled at the end (a send waiting on a full socket
    // buffer, a close that does not return) cannot hold a leave for ever.
    let last_words = async {
        while let Some(t) = engine.poll_transmit() {
            let _ = transport.send(t.to, t.payload).await;
        }
        transport.close().await;
    };
    if tokio::time::timeout(LAST_WORDS_LIMIT, last_words)
        .await
        .is_err()
    {
        tracing::warn!(
            limit = ?LAST_WORDS_LIMIT,
            "the transport did not send its last datagrams and close in time; the node stops anyway, and peers may not hear them"
        );
    }
    // The last counts, so what the final moments did is not lost.
    telemetry.drain(&mut engine);
    os_drops.check(transport.os_receive_drops(), &mut io, Instant::now());
    telemetry.report(&engine, io);
    if let Some(ack) = shutdown_ack {
        let _ = ack.send(());
    }
    if let Some((ack, told)) = leave_ack {
        let _ = ack.send(told);
    }
    // Refuse further commands and drop the ones still queued, so that
    // their callers hear `Closed` now. Dropping the receiver alone is not
    // enough: a command whose sender had its slot before the drop but
    // queued it after would stay in the channel while any handle lives
    // (see `answer` in `node/mod.rs`). After `close`, `recv` returns
    // `None` only once no sender holds a slot.
    commands.close();
    while commands.recv().await.is_some() {}
}

/// Reads and hands the engine the datagrams already waiting, `limit` at
/// most, without waiting for more; returns how many were waiting (a
/// receive error counts, and ends the batch: the next receive sees it
/// again).
fn read_waiting<T: Transport>(
    transport: &T,
    engine: &mut Engine,
    io: &mut IoCounts,
    recv_error_streak: &mut u32,
    limit: usize,
) -> usize {
    let mut waiting = 0;
    while waiting < limit {
        // Unconstrained: tokio's per-task budget would otherwise end a
        // batch early on transports that read through tokio channels and
        // locks (QUIC, memory), and a read it refused would look like
        // nothing waiting.
        match ready_now(tokio::task::coop::unconstrained(transport.recv())) {
            Some(Ok((from, bytes))) => {
                waiting += 1;
                *recv_error_streak = 0;
                engine.handle_packet(Instant::now().into_std(), from, &bytes);
            }
            Some(Err(_)) => {
                waiting += 1;
                io.recv_errors += 1;
                break;
            }
            None => break,
        }
    }
    waiting
}

/// Polls `fut` once: its output if it is ready at once, else `None` (and
/// the future is dropped, which a transport's `recv` allows: the driver's
/// `select!` drops it whenever another branch wins).
///
/// Not `tokio::time::timeout(Duration::ZERO, ..)`, which this replaced: a
/// zero timeout is a timer, and it fires at the time driver's next tick.
/// Every batch ended on one, so the node sat in it, reading nothing and
/// running no timer, until that tick came: up to a millisecond on an idle
/// runtime, much longer on a starved one, where answers then went unread
/// past their probes' timeouts: 1,024 nodes in one process on 2 cores
/// had 10³–10⁵ false suspicions per run with it, none without it in the
/// runs since (docs/PERFORMANCE.md).
fn ready_now<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

fn handle(engine: &mut Engine, cmd: Command, io: IoCounts) {
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
                send_errors: io.send_errors,
                recv_errors: io.recv_errors,
                os_receive_drops: io.os_receive_drops,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Udp;

    #[tokio::test]
    async fn a_waiting_datagram_is_taken_at_once_and_a_pending_poll_loses_nothing() {
        let a = Udp::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let b = Udp::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let to = b.local_addr();
        assert!(ready_now(b.recv()).is_none(), "nothing waiting");
        a.send(to, bytes::Bytes::from_static(b"one")).await.unwrap();
        a.send(to, bytes::Bytes::from_static(b"two")).await.unwrap();
        // The first is awaited (loopback delivery is not instantaneous);
        // polls that found nothing before it arrived lost nothing.
        let (_, first) = b.recv().await.unwrap();
        assert_eq!(&first[..], b"one");
        let second = loop {
            if let Some(r) = ready_now(b.recv()) {
                break r.unwrap().1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        assert_eq!(&second[..], b"two");
        assert!(ready_now(b.recv()).is_none());
    }

    #[test]
    fn os_drops_are_kept_and_warned_of_at_most_every_30_s() {
        let t0 = Instant::now();
        let mut d = OsDrops::new(t0);
        let mut io = IoCounts::default();
        assert!(
            !d.check(None, &mut io, t0),
            "a transport that does not tell"
        );
        assert_eq!(io.os_receive_drops, None);
        assert!(!d.check(Some(0), &mut io, t0), "none dropped");
        assert_eq!(io.os_receive_drops, Some(0));
        assert!(d.check(Some(40), &mut io, t0 + Duration::from_secs(5)));
        assert_eq!(io.os_receive_drops, Some(40));
        // More drops within 30 s: counted, not said again...
        assert!(!d.check(Some(90), &mut io, t0 + Duration::from_secs(10)));
        assert!(!d.check(Some(90), &mut io, t0 + Duration::from_secs(34)));
        assert_eq!(io.os_receive_drops, Some(90));
        // ...until 30 s after the last warning, naming the 50 since.
        assert!(d.check(Some(90), &mut io, t0 + Duration::from_secs(35)));
        assert_eq!(d.unreported, 0);
        // Nothing new: no warning, however long after.
        assert!(!d.check(Some(90), &mut io, t0 + Duration::from_secs(100)));
    }
}
