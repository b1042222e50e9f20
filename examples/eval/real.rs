//! `real`: N nodes in this process on loopback UDP, built with the public
//! [`Node`] API as an application would, measured by wall clock.
//!
//! Unlike every other scenario this one is not simulated: the figures
//! depend on the machine, its load and its kernel (socket buffers), which
//! is the point — a cluster that converges in the simulator can still
//! collapse on real sockets when the host cannot keep up. That is also why
//! `real` is not part of `all`.
//!
//! One run, per (nodes, transport, state keys):
//!
//! 1. **join** — nodes `n0000000`… start on `127.0.0.1:0` (the OS picks
//!    the ports) with `Config::lan()`, [`STAGGER`] apart, every one seeded
//!    with node 0 only, each with its `--state` keys set before it starts.
//!    Join time runs from the first start until every node counts all N
//!    members alive, capped at `--join-cap` seconds (`started_seconds`: when the last
//!    node started; the slowest node's progress is printed each second,
//!    and with `SW_EVAL_JOIN_DEBUG` set, once at most 12 nodes lack the
//!    full view, which members each of them lacks);
//! 2. **settle** for [`SETTLE`], then an **idle** window of `--secs`,
//!    whose last [`IDLE_TAIL`] is also reported on its own (how quiet the
//!    cluster is `SETTLE + --secs` after the join);
//! 3. [`WRITES`] **isolated writes**, each one key set on one node and a
//!    [`WRITE_WINDOW`] after it: the traffic over the idle rate, and the
//!    delay until each other node's event stream yields the `KeySet`;
//! 4. a **loaded** window of `--secs` (rounded up to 10 s) in which every
//!    node sets a key once per 10 s, spread evenly;
//! 5. every node is shut down and its event watcher joined; tasks still
//!    alive in the run's runtime are reported as leaked.
//!
//! "The idle rate" that writes and load are measured over is the idle
//! tail's: the baseline nearest them. After a large join the whole idle
//! window is still settling (1,024 nodes: 2.05-2.12 datagrams per node per
//! second against 1.99 in its tail), and measured over it a write came out
//! costing less than nothing.
//!
//! Traffic is the engines' own counters (`NodeMetrics::engine`: datagrams
//! and payload bytes queued), summed over nodes; the wire figure adds the
//! UDP/IP headers and, when encrypted, the seal frame. Push resends,
//! suspicions and deaths are counted over the whole run (join included);
//! nobody crashes, so every suspicion and death is a false one. Kernel
//! drops are the host-wide `Udp:` counters of `/proc/net/snmp`.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{Options, Out, mean, percentile, wall};
use scuttlewire::node::EventStream;
use scuttlewire::seal::{Cipher, Key, Keyring, OVERHEAD};
use scuttlewire::transport::EncryptionConfig;
use scuttlewire::{Config, Event, Lagged, Node};

/// Delay between two node starts.
const STAGGER: Duration = Duration::from_millis(5);
/// Time after the join before the idle window, so join rumors and the
/// first reconciliations of everyone's state are over.
const SETTLE: Duration = Duration::from_secs(5);
/// The end of the idle window, reported on its own.
const IDLE_TAIL: Duration = Duration::from_secs(5);
/// Isolated writes per run (from different nodes).
const WRITES: usize = 3;
/// The window after each isolated write.
const WRITE_WINDOW: Duration = Duration::from_secs(2);
/// How often the join is checked.
const JOIN_POLL: Duration = Duration::from_millis(100);
/// Every node writes once per this period in the loaded window.
const LOAD_PERIOD: Duration = Duration::from_secs(10);
/// The loaded window's step: `LOAD_PERIOD / LOAD_STEP` slots.
const LOAD_STEP: Duration = Duration::from_millis(100);
/// The key of the isolated writes.
const PROBE_KEY: &str = "probe";
/// IPv4 (20 B) + UDP (8 B) headers of one datagram.
const UDP_IP: u64 = 28;

/// How the nodes talk: plain UDP or sealed with one of two AEADs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// Plain UDP (`start_udp`).
    Plain,
    /// AES-256-GCM over UDP (`start_encrypted_udp`).
    Aes,
    /// ChaCha20-Poly1305 over UDP (`start_encrypted_udp`).
    Chacha,
}

impl Sealing {
    /// Parses a `--transport` item.
    pub fn parse(s: &str) -> Result<Sealing, String> {
        match s.trim() {
            "plain" | "udp" => Ok(Sealing::Plain),
            "aes" | "aes-gcm" => Ok(Sealing::Aes),
            "chacha" | "chacha20" => Ok(Sealing::Chacha),
            other => Err(format!("bad transport: {other} (plain, aes, chacha)")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Sealing::Plain => "plain",
            Sealing::Aes => "aes",
            Sealing::Chacha => "chacha",
        }
    }

    fn cipher(self) -> Option<Cipher> {
        match self {
            Sealing::Plain => None,
            Sealing::Aes => Some(Cipher::Aes256Gcm),
            Sealing::Chacha => Some(Cipher::ChaCha20Poly1305),
        }
    }

    /// Bytes one datagram costs on the wire beyond its payload.
    fn per_datagram(self) -> u64 {
        UDP_IP
            + if self == Sealing::Plain {
                0
            } else {
                OVERHEAD as u64
            }
    }
}

/// One configuration to measure.
#[derive(Debug, Clone, Copy)]
struct Spec {
    n: usize,
    sealing: Sealing,
    state: usize,
    signatures: scuttlewire::Signatures,
}

/// `real`: every combination of `--nodes` (default 64, 256),
/// `--transport` and `--state`, one fresh runtime each.
pub fn run(opts: &Options, out: &mut Out) -> Result<(), Box<dyn Error>> {
    let sizes = opts.nodes.clone().unwrap_or(vec![64, 256]);
    for &n in &sizes {
        for &sealing in &opts.transports {
            for &state in &opts.state {
                let spec = Spec {
                    n: n.max(2),
                    sealing,
                    state,
                    signatures: opts.signatures,
                };
                eprintln!(
                    "real: {} nodes, {}, {} state keys ...",
                    spec.n,
                    sealing.name(),
                    state
                );
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?;
                let mut r = rt.block_on(measure(spec, opts))?;
                r.leaked_tasks = rt.metrics().num_alive_tasks();
                rt.shutdown_timeout(Duration::from_secs(5));
                report(out, spec, &r);
            }
        }
    }
    Ok(())
}

/// Engine and node counters summed over every node, at one moment.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    /// Nodes that count every node alive.
    full: usize,
    /// The fewest members any node counts alive, and the sum over nodes.
    min_alive: usize,
    sum_alive: usize,
    packets: u64,
    bytes: u64,
    largest_packet: usize,
    /// Tree pushes sent (first sends).
    pushes_sent: u64,
    pushes_retried: u64,
    /// Resends found spurious (answered sooner than any round trip).
    pushes_spurious: u64,
    /// Gossip rounds that shed optional traffic (overload).
    shed_rounds: u64,
    pushes_unacked: u64,
    /// Tree pushes sent once, untracked, at a cap.
    pushes_capped: u64,
    /// Extra copies along extra trees (sent only under measured loss).
    push_copies: u64,
    /// Announced versions pulled.
    pulls: u64,
    /// `PushAck` messages sent (each acknowledges one or more pushes).
    push_acks_sent: u64,
    /// Acknowledgements that did not take a datagram of their own.
    push_acks_merged: u64,
    suspicions: u64,
    deaths: u64,
    refutations: u64,
    drops: u64,
    seal_drops: u64,
    io_errors: u64,
    /// Datagrams the OS dropped at the nodes' full receive buffers, as
    /// the nodes themselves report it (`NodeMetrics::os_receive_drops`,
    /// refreshed every 30 s, every 5 s while busy).
    os_drops: u64,
    /// Messages sent, by kind (in `kind_names` order).
    kinds: [u64; 10],
}

impl Counters {
    async fn read(nodes: &[Node]) -> Result<Counters, Box<dyn Error>> {
        let mut c = Counters {
            min_alive: usize::MAX,
            ..Counters::default()
        };
        for node in nodes {
            let m = node.metrics().await?;
            let e = &m.engine;
            c.full += usize::from(m.members.alive == nodes.len());
            c.min_alive = c.min_alive.min(m.members.alive);
            c.sum_alive += m.members.alive;
            c.packets += e.packets_sent;
            c.bytes += e.bytes_sent;
            c.largest_packet = c.largest_packet.max(e.largest_packet_sent);
            c.pushes_sent += e.pushes_sent;
            c.pushes_retried += e.pushes_retried;
            c.pushes_spurious += e.pushes_resent_spuriously;
            c.shed_rounds += e.shed_rounds;
            c.pushes_unacked += e.pushes_unacked;
            c.pushes_capped += e.pushes_capped;
            c.push_copies += e.push_copies;
            c.pulls += e.pulls;
            c.push_acks_sent += e.sent.push_ack;
            c.push_acks_merged += e.push_acks_merged;
            c.suspicions += e.suspicions_started;
            c.deaths += e.deaths_declared;
            c.refutations += e.refutations;
            c.drops += e.drops.total();
            c.seal_drops += m.seal.map_or(0, |s| s.dropped());
            c.io_errors += m.send_errors + m.recv_errors;
            c.os_drops += m.os_receive_drops.unwrap_or(0);
            for (t, (_, k)) in c.kinds.iter_mut().zip(e.sent.by_kind()) {
                *t += k;
            }
        }
        Ok(c)
    }
}

/// Traffic between two counter snapshots.
#[derive(Debug, Default, Clone, Copy)]
struct Traffic {
    packets: u64,
    bytes: u64,
    secs: f64,
}

impl Traffic {
    fn between(a: (&Counters, Instant), b: (&Counters, Instant)) -> Traffic {
        Traffic {
            packets: b.0.packets.saturating_sub(a.0.packets),
            bytes: b.0.bytes.saturating_sub(a.0.bytes),
            secs: b.1.duration_since(a.1).as_secs_f64(),
        }
    }

    /// What this window sent beyond `idle`'s rate, as (packets, bytes);
    /// may be negative (idle traffic is not perfectly even).
    fn over(&self, idle: &Traffic) -> (f64, f64) {
        let rate = |x: u64| x as f64 / idle.secs.max(1e-9);
        (
            self.packets as f64 - rate(idle.packets) * self.secs,
            self.bytes as f64 - rate(idle.bytes) * self.secs,
        )
    }
}

/// A watched key arriving at a node: the isolated write `write` reached
/// node `node` at `at`.
struct Arrival {
    node: usize,
    write: usize,
    at: Instant,
}

/// Everything one run measured.
#[derive(Debug, Default)]
struct Run {
    join: Option<f64>,
    /// Seconds from the first start to the last.
    started: f64,
    full_at_join_end: usize,
    join_cap: f64,
    idle: Traffic,
    /// The idle window's last [`IDLE_TAIL`].
    idle_tail: Traffic,
    idle_cpu: Option<f64>,
    /// Isolated writes: (packets, bytes) over the idle tail's rate, per
    /// write, cluster-wide.
    write_extra: Vec<(f64, f64)>,
    /// Isolated writes: messages sent by kind, all writes' windows summed.
    write_kinds: [u64; 10],
    /// Messages sent by kind from the first start to the end of the join.
    join_kinds: [u64; 10],
    /// Datagrams and payload bytes sent in the join.
    join_traffic: (u64, u64),
    /// Tree pushes sent and resent in the join, and in the loaded window.
    join_pushes: (u64, u64),
    loaded_pushes: (u64, u64),
    /// Isolated writes: write→node delays in ms, every (write, receiver).
    latencies_ms: Vec<f64>,
    loaded: Traffic,
    loaded_writes: u64,
    end: Counters,
    udp_rcvbuf_errors: Option<u64>,
    udp_in_errors: Option<u64>,
    events_missed: u64,
    peak_rss_kib: Option<u64>,
    leaked_tasks: usize,
    wall: f64,
}

/// Resends as a percentage of first sends, if any push was sent.
fn percent((sent, resent): (u64, u64)) -> Option<f64> {
    (sent > 0).then(|| resent as f64 / sent as f64 * 100.0)
}

/// The one place that reads a node's event stream: returns the next
/// event, counting what a lagging subscriber missed into `missed`.
async fn next_event(events: &mut EventStream, missed: &AtomicU64) -> Option<Event> {
    loop {
        match events.next().await? {
            Err(Lagged { missed: m }) => {
                missed.fetch_add(m, Ordering::Relaxed);
            }
            Ok(e) => return Some(e),
        }
    }
}

/// Watches node `i`'s events until it stops, reporting isolated writes
/// (`PROBE_KEY`, value = write number) as they arrive.
fn watch(
    i: usize,
    mut events: EventStream,
    missed: Arc<AtomicU64>,
    arrivals: mpsc::UnboundedSender<Arrival>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(ev) = next_event(&mut events, &missed).await {
            let Event::KeySet { key, value, .. } = ev else {
                continue;
            };
            if key != PROBE_KEY {
                continue;
            }
            let at = Instant::now();
            let write = std::str::from_utf8(&value)
                .ok()
                .and_then(|s| s.parse().ok());
            if let Some(write) = write {
                let _ = arrivals.send(Arrival { node: i, write, at });
            }
        }
    })
}

/// Starts node `i` the way an application would.
async fn start(
    i: usize,
    spec: Spec,
    seed: Option<SocketAddr>,
    key: &Key,
) -> Result<Node, Box<dyn Error>> {
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let mut config = Config::lan().with_name(format!("n{i:07}"));
    config.signatures = spec.signatures;
    let mut builder = Node::builder(config).seeds(seed);
    if spec.signatures.signs() {
        let identity = scuttlewire::identity::Identity::generate()?;
        let trust = std::sync::Arc::new(scuttlewire::identity::TrustOnFirstUse::new());
        builder = builder.identity(identity, trust);
    }
    for k in 0..spec.state {
        builder = match k {
            0 => builder.initial_state("role", "worker"),
            1 => builder.initial_state("addr", format!("10.0.{}.{}:7000", i / 256, i % 256)),
            k => builder.initial_state(format!("k{k}"), format!("value-{i}-{k}")),
        };
    }
    let node = match spec.sealing.cipher() {
        None => builder.start_udp(any).await?,
        Some(cipher) => {
            let encryption = EncryptionConfig {
                cipher,
                ..EncryptionConfig::default()
            };
            builder
                .start_encrypted_udp(any, Keyring::new(key.clone()), encryption)
                .await?
        }
    };
    Ok(node)
}

async fn measure(spec: Spec, opts: &Options) -> Result<Run, Box<dyn Error>> {
    let t0 = Instant::now();
    let n = spec.n;
    let mut run = Run {
        join_cap: opts.join_cap_secs as f64,
        ..Run::default()
    };
    reset_peak_rss();
    let udp_before = udp_errors();
    let key = Key::generate()?;
    let missed = Arc::new(AtomicU64::new(0));
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    let mut watchers = Vec::with_capacity(n);

    // 1. Join.
    let first_start = Instant::now();
    for i in 0..n {
        let seed = nodes.first().map(|s| s.local_id().addr);
        let node = start(i, spec, seed, &key).await?;
        watchers.push(watch(i, node.events(), missed.clone(), arrivals_tx.clone()));
        nodes.push(node);
        tokio::time::sleep(STAGGER).await;
    }
    drop(arrivals_tx);
    run.started = wall(first_start);
    let cap = Duration::from_secs(opts.join_cap_secs);
    let mut told = 0;
    loop {
        let c = Counters::read(&nodes).await?;
        run.full_at_join_end = c.full;
        run.join_kinds = c.kinds;
        run.join_traffic = (c.packets, c.bytes);
        run.join_pushes = (c.pushes_sent, c.pushes_retried);
        let secs = first_start.elapsed().as_secs();
        if secs > told {
            // Progress, once a second: how far the slowest node is.
            told = secs;
            eprintln!(
                "  {secs:>3} s: {} of {n} full, alive counted: min {}, mean {:.1}; \
                 pushes {}, resent {}",
                c.full,
                c.min_alive,
                c.sum_alive as f64 / n as f64,
                c.pushes_sent,
                c.pushes_retried,
            );
            if std::env::var_os("SW_EVAL_JOIN_DEBUG").is_some() && n - c.full <= 12 {
                for (i, node) in nodes.iter().enumerate() {
                    let m = node.members().await?;
                    let alive: Vec<&str> = m
                        .iter()
                        .filter(|m| m.status == scuttlewire::MemberStatus::Alive)
                        .map(|m| m.id.name.as_str())
                        .collect();
                    if alive.len() < n {
                        let lacks: Vec<String> = (0..n)
                            .map(|j| format!("n{j:07}"))
                            .filter(|name| {
                                *name != format!("n{i:07}") && !alive.contains(&name.as_str())
                            })
                            .collect();
                        eprintln!("      n{i:07} lacks {lacks:?}");
                    }
                }
            }
        }
        if c.full == n {
            run.join = Some(wall(first_start));
            break;
        }
        if first_start.elapsed() >= cap {
            break;
        }
        tokio::time::sleep(JOIN_POLL).await;
    }

    // 2. Idle.
    tokio::time::sleep(SETTLE).await;
    let idle_for = Duration::from_secs(opts.measure_secs.max(1));
    let (a, cpu_a) = (Counters::read(&nodes).await?, cpu_secs());
    let ta = Instant::now();
    let tail = IDLE_TAIL.min(idle_for);
    tokio::time::sleep(idle_for - tail).await;
    let (m, tm) = (Counters::read(&nodes).await?, Instant::now());
    tokio::time::sleep(tail).await;
    let (b, cpu_b) = (Counters::read(&nodes).await?, cpu_secs());
    let tb = Instant::now();
    run.idle = Traffic::between((&a, ta), (&b, tb));
    run.idle_tail = Traffic::between((&m, tm), (&b, tb));
    run.idle_cpu = cpu_a
        .zip(cpu_b)
        .map(|(a, b)| (b - a) / run.idle.secs * 100.0);

    // 3. Isolated writes: (writer, when), arrivals counted at the end.
    let mut writes: Vec<(usize, Instant)> = Vec::with_capacity(WRITES);
    for w in 0..WRITES {
        let writer = (n - 1 + w * 7) % n;
        let before = Counters::read(&nodes).await?;
        let t_before = Instant::now();
        let written = Instant::now();
        nodes[writer].set(PROBE_KEY, w.to_string()).await?;
        tokio::time::sleep(WRITE_WINDOW).await;
        let after = Counters::read(&nodes).await?;
        let window = Traffic::between((&before, t_before), (&after, Instant::now()));
        run.write_extra.push(window.over(&run.idle_tail));
        for ((t, a), b) in run
            .write_kinds
            .iter_mut()
            .zip(after.kinds)
            .zip(before.kinds)
        {
            *t += a - b;
        }
        writes.push((writer, written));
    }

    // 4. Loaded: slot k of every LOAD_PERIOD writes the nodes i ≡ k.
    let slots = (LOAD_PERIOD.as_millis() / LOAD_STEP.as_millis()) as usize;
    let periods = opts.measure_secs.div_ceil(LOAD_PERIOD.as_secs()).max(1) as usize;
    let a = Counters::read(&nodes).await?;
    let ta = Instant::now();
    let mut tick = tokio::time::interval(LOAD_STEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for k in 0..slots * periods {
        tick.tick().await;
        for (i, node) in nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| i % slots == k % slots)
        {
            node.set("load", format!("{k}-{i}")).await?;
            run.loaded_writes += 1;
        }
    }
    tick.tick().await;
    run.end = Counters::read(&nodes).await?;
    run.loaded = Traffic::between((&a, ta), (&run.end, Instant::now()));
    run.loaded_pushes = (
        run.end.pushes_sent - a.pushes_sent,
        run.end.pushes_retried - a.pushes_retried,
    );

    let udp_after = udp_errors();
    run.udp_rcvbuf_errors = udp_before
        .zip(udp_after)
        .map(|(a, b)| b.0.saturating_sub(a.0));
    run.udp_in_errors = udp_before
        .zip(udp_after)
        .map(|(a, b)| b.1.saturating_sub(a.1));
    run.peak_rss_kib = peak_rss_kib();

    // 5. Shut down; the watchers end with their nodes' streams.
    for node in &nodes {
        node.shutdown().await;
    }
    drop(nodes);
    for w in watchers {
        w.await?;
    }
    // Late arrivals count too: every sender is gone, so this ends.
    while let Some(a) = arrivals.recv().await {
        if let Some(&(writer, written)) = writes.get(a.write) {
            if a.node != writer {
                let d = a.at.saturating_duration_since(written);
                run.latencies_ms.push(d.as_secs_f64() * 1e3);
            }
        }
    }
    run.events_missed = missed.load(Ordering::Relaxed);
    run.wall = wall(t0);
    Ok(run)
}

fn report(out: &mut Out, spec: Spec, r: &Run) {
    let n = spec.n as f64;
    let idle_pk = r.idle.packets as f64 / n / r.idle.secs;
    let idle_b = r.idle.bytes as f64 / n / r.idle.secs;
    let idle_wire =
        (r.idle.bytes + spec.sealing.per_datagram() * r.idle.packets) as f64 / n / r.idle.secs;
    let write_pk = mean(&r.write_extra.iter().map(|w| w.0).collect::<Vec<_>>()) / n;
    let write_b = mean(&r.write_extra.iter().map(|w| w.1).collect::<Vec<_>>()) / n;
    let (load_pk, load_b) = r.loaded.over(&r.idle_tail);
    let per_write = |x: f64| x / (r.loaded_writes.max(1) as f64) / n;
    let load_b_s = r.loaded.bytes as f64 / n / r.loaded.secs;
    let lat_mean = mean(&r.latencies_ms);
    let lat_p99 = percentile(&r.latencies_ms, 99.0);
    let expected = (spec.n - 1) * WRITES;
    let e = &r.end;
    let resend_pct =
        (e.pushes_sent > 0).then(|| e.pushes_retried as f64 / e.pushes_sent as f64 * 100.0);
    let rss_node = r.peak_rss_kib.map(|k| k as f64 / n);
    let opt = |x: Option<u64>| x.map_or("-".to_owned(), |x| x.to_string());
    let join = match r.join {
        Some(s) => format!("{s:.2}"),
        None => format!(">{:.0}", r.join_cap),
    };
    out.table(
        "real",
        "nodes  transport  state  join_s  full  idle_B/n/s  wire_B/n/s  idle_pk/n/s  cpu%  write_B/n  write_pk/n  load_B/n/s  load_B/n/w  load_pk/n/w  lat_mean_ms  lat_p99_ms  reached  resends  resend%  susp  deaths  rcvbuf_err  in_err  missed  rss_KiB/n  leaked",
    );
    let line = format!(
        "{:>5}  {:<9}  {:>5}  {join:>6}  {:>4}  {idle_b:>10.1}  {idle_wire:>10.1}  {idle_pk:>11.2}  {:>4}  {write_b:>9.1}  {write_pk:>10.2}  {load_b_s:>10.1}  {:>10.1}  {:>11.2}  {lat_mean:>11.1}  {lat_p99:>10.1}  {:>7}  {:>7}  {:>7}  {:>4}  {:>6}  {:>10}  {:>6}  {:>6}  {:>9}  {:>6}",
        spec.n,
        format!(
            "{}{}",
            spec.sealing.name(),
            if spec.signatures.signs() { "+sig" } else { "" }
        ),
        spec.state,
        r.full_at_join_end,
        r.idle_cpu.map_or("-".to_owned(), |c| format!("{c:.0}")),
        per_write(load_b),
        per_write(load_pk),
        format!("{}/{expected}", r.latencies_ms.len()),
        e.pushes_retried,
        resend_pct.map_or("-".to_owned(), |p| format!("{p:.1}")),
        e.suspicions,
        e.deaths,
        opt(r.udp_rcvbuf_errors),
        opt(r.udp_in_errors),
        r.events_missed,
        rss_node.map_or("-".to_owned(), |k| format!("{k:.0}")),
        r.leaked_tasks,
    );
    // Two halves: one `json!` this large overflows the macro recursion limit.
    let mut value = json!({
            "scenario": "real",
            "nodes": spec.n,
            "transport": spec.sealing.name(),
            "signatures": spec.signatures.to_string(),
            "state_keys": spec.state,
            "stagger_ms": STAGGER.as_millis() as u64,
            "joined": r.join.is_some(),
            "join_seconds": r.join,
            "started_seconds": r.started,
            "join_cap_seconds": r.join_cap,
            "nodes_with_full_view": r.full_at_join_end,
            "idle_seconds": r.idle.secs,
            "idle_payload_bytes_per_node_s": idle_b,
            "idle_wire_bytes_per_node_s": idle_wire,
            "idle_packets_per_node_s": idle_pk,
            "idle_tail_seconds": r.idle_tail.secs,
            "idle_tail_packets_per_node_s": r.idle_tail.packets as f64 / n / r.idle_tail.secs.max(1e-9),
            "idle_tail_payload_bytes_per_node_s": r.idle_tail.bytes as f64 / n / r.idle_tail.secs.max(1e-9),
            "idle_cpu_percent": r.idle_cpu,
            "isolated_writes": WRITES,
            "write_payload_bytes_per_node": write_b,
            "write_packets_per_node": write_pk,
            "write_window_seconds": WRITE_WINDOW.as_secs_f64(),
            "write_window_messages_per_node": crate::kind_names()
                .iter()
                .zip(r.write_kinds)
                .map(|(k, v)| ((*k).to_owned(), json!(v as f64 / WRITES as f64 / n)))
                .collect::<serde_json::Map<_, _>>(),
            "join_messages_per_node": crate::kind_names()
                .iter()
                .zip(r.join_kinds)
                .map(|(k, v)| ((*k).to_owned(), json!(v as f64 / n)))
                .collect::<serde_json::Map<_, _>>(),
            "join_packets_per_node": r.join_traffic.0 as f64 / n,
            "join_push_resend_percent": percent(r.join_pushes),
            "loaded_push_resend_percent": percent(r.loaded_pushes),
            "join_payload_bytes_per_node": r.join_traffic.1 as f64 / n,
            "write_latency_mean_ms": lat_mean,
            "write_latency_p99_ms": lat_p99,
            "write_arrivals": r.latencies_ms.len(),
            "write_arrivals_expected": expected,
    });
    let rest = json!({
            "loaded_seconds": r.loaded.secs,
            "loaded_writes": r.loaded_writes,
            "loaded_payload_bytes_per_node_s": load_b_s,
            "loaded_payload_bytes_per_node_per_write": per_write(load_b),
            "loaded_packets_per_node_per_write": per_write(load_pk),
            "pushes_sent": e.pushes_sent,
            "pushes_retried": e.pushes_retried,
            "pushes_unacked": e.pushes_unacked,
            "pushes_capped": e.pushes_capped,
            "push_copies": e.push_copies,
            "pulls": e.pulls,
            "pushes_resent_spuriously": e.pushes_spurious,
            "shed_rounds": e.shed_rounds,
            "node_os_receive_drops": e.os_drops,
            "push_acks_sent": e.push_acks_sent,
            "push_acks_merged": e.push_acks_merged,
            "push_resend_percent": resend_pct,
            "suspicions": e.suspicions,
            "deaths": e.deaths,
            "refutations": e.refutations,
            "engine_drops": e.drops,
            "seal_drops": e.seal_drops,
            "io_errors": e.io_errors,
            "udp_rcvbuf_errors": r.udp_rcvbuf_errors,
            "udp_in_errors": r.udp_in_errors,
            "events_missed": r.events_missed,
            "peak_rss_kib": r.peak_rss_kib,
            "peak_rss_kib_per_node": rss_node,
            "leaked_tasks": r.leaked_tasks,
            "max_packet_bytes": e.largest_packet,
            "wall_seconds": r.wall,
    });
    if let (Some(v), Value::Object(rest)) = (value.as_object_mut(), rest) {
        v.extend(rest);
    }
    out.row(value, line);
}

/// Host-wide `(RcvbufErrors, InErrors)` of the `Udp:` lines of
/// `/proc/net/snmp`; `None` off Linux.
fn udp_errors() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let field = |name: &str| {
        let at = names.split_whitespace().position(|f| f == name)?;
        values.split_whitespace().nth(at)?.parse().ok()
    };
    Some((field("RcvbufErrors")?, field("InErrors")?))
}

/// Resets the process's peak RSS to its current RSS (Linux 4.0+), so each
/// run reports its own peak on top of what earlier runs left allocated.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak RSS (`VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds (user + system) this process has used, assuming the usual
/// 100 clock ticks per second.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
