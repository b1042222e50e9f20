//! Traffic scenarios: `steady` (bandwidth per node, idle and loaded),
//! `probe-load` (messages per member per probe period), `budget` (largest
//! packet under a heavy mixed load) and `simspeed` (how fast the
//! simulator runs 10,000 nodes).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::{Cluster, net};
use crate::{BUDGET, Options, Out, secs, wall};
use scuttlewire::sim::SimStats;
use scuttlewire::{Config, SetError};

/// IPv4 (20 B) + UDP (8 B) headers of one datagram.
const UDP_IP: u64 = 28;
/// Seal frame of one datagram (AES-256-GCM: header, nonce, tag).
const SEAL: u64 = scuttlewire::seal::OVERHEAD as u64;
/// Simulated time after convergence before measuring, so join rumors and
/// the first full reconciliations are over.
const SETTLE: Duration = Duration::from_secs(30);
/// HashiCorp memberlist at N=256, LAN preset, bytes per node per second:
/// plaintext and AES-GCM (the figures the brief gives).
const MEMBERLIST_PLAIN: f64 = 164.0;
const MEMBERLIST_AES: f64 = 210.0;

/// Messages sent by all engines, by kind, summed (probe traffic only:
/// ping, ping-req, ack, nack).
fn probe_messages(c: &Cluster) -> u64 {
    (0..c.n)
        .filter_map(|i| c.sim.engine(i))
        .map(|e| {
            let s = &e.metrics().sent;
            s.ping + s.ping_req + s.ping_ack + s.ping_nack
        })
        .sum()
}

/// Messages sent by all engines, by kind (in `kind_names` order), summed.
fn sent_by_kind(c: &Cluster) -> [u64; 10] {
    let mut t = [0u64; 10];
    for e in (0..c.n).filter_map(|i| c.sim.engine(i)) {
        for (t, (_, k)) in t.iter_mut().zip(e.metrics().sent.by_kind()) {
            *t += k;
        }
    }
    t
}

/// Counters over one measured window.
struct Window {
    packets: u64,
    bytes: u64,
    probe_msgs: u64,
    /// Messages sent, by kind (in `kind_names` order).
    kinds: [u64; 10],
    secs: f64,
}

impl Window {
    fn measure(
        c: &mut Cluster,
        d: Duration,
        mut each_100ms: impl FnMut(&mut Cluster, u64),
    ) -> Self {
        let before: SimStats = c.sim.stats().clone();
        let probes = probe_messages(c);
        let kinds = sent_by_kind(c);
        let step = Duration::from_millis(100);
        let steps = (d.as_millis() / step.as_millis()) as u64;
        for k in 0..steps {
            each_100ms(c, k);
            c.sim.run_for(step);
        }
        let after = c.sim.stats();
        Window {
            packets: after.packets_sent - before.packets_sent,
            bytes: after.bytes_sent - before.bytes_sent,
            probe_msgs: probe_messages(c) - probes,
            kinds: {
                let mut k = sent_by_kind(c);
                for (a, b) in k.iter_mut().zip(kinds) {
                    *a -= b;
                }
                k
            },
            secs: secs(step) * steps as f64,
        }
    }

    fn per_node_s(&self, x: u64, n: usize) -> f64 {
        x as f64 / n as f64 / self.secs
    }
}

fn converge(n: usize, seed: u64, config: &Config) -> Cluster {
    let mut c = Cluster::converged(n, seed, config)
        .unwrap_or_else(|| panic!("n={n}: membership did not converge"));
    c.sim.run_for(SETTLE);
    c
}

/// `steady`: bytes and packets per node per second at N = 256 and 1000
/// (or `--nodes`), idle and with every node setting a key every 10 s.
pub fn steady(opts: &Options, out: &mut Out) {
    let config = Config::lan();
    let sizes = opts.nodes.clone().unwrap_or(vec![256, 1000]);
    let pb = out.progress(sizes.len() as u64 * 2, "steady");
    let d = Duration::from_secs(opts.measure_secs);
    for &n in &sizes {
        let t0 = Instant::now();
        pb.set_message(format!("steady n={n} join"));
        let mut c = converge(n, n as u64, &config);
        pb.set_message(format!("steady n={n} idle"));
        let idle = Window::measure(&mut c, d, |_, _| {});
        pb.inc(1);
        pb.set_message(format!("steady n={n} load"));
        // Every node writes once per 10 s, spread evenly over the 100 steps.
        let loaded = Window::measure(&mut c, d, |c, k| {
            for i in (0..c.n).filter(|i| *i as u64 % 100 == k % 100) {
                c.sim
                    .with_engine(i, |e, now| e.set(now, "load", k.to_le_bytes().to_vec()));
            }
        });
        pb.inc(1);
        out.saw(&c.sim);
        let probe_periods = |w: &Window| w.secs / secs(config.probe_interval);
        for (load, w) in [("idle", &idle), ("1 set/node/10s", &loaded)] {
            let pk = w.per_node_s(w.packets, n);
            let payload = w.per_node_s(w.bytes, n);
            let udp = w.per_node_s(w.bytes + UDP_IP * w.packets, n);
            let sealed = w.per_node_s(w.bytes + (UDP_IP + SEAL) * w.packets, n);
            let msgs = w.packets as f64 / n as f64 / probe_periods(w);
            out.table(
                "steady",
                "nodes  load             pkts/node/s  payload B/node/s  +UDP/IP B/node/s  +seal B/node/s  memberlist plain/AES  msgs/member/period  max_packet/budget",
            );
            let ml = if n == 256 {
                format!("{MEMBERLIST_PLAIN:.0}/{MEMBERLIST_AES:.0}")
            } else {
                "-".to_owned()
            };
            let text = format!(
                "{n:>5}  {load:<15}  {pk:>11.2}  {payload:>16.1}  {udp:>16.1}  {sealed:>14.1}  {ml:>20}  {msgs:>18.2}  {}/{BUDGET}",
                c.sim.stats().max_packet
            );
            out.row(
                json!({
                    "scenario": "steady",
                    "nodes": n,
                    "load": load,
                    "sim_seconds": w.secs,
                    "packets_per_node_s": pk,
                    "payload_bytes_per_node_s": payload,
                    "udp_bytes_per_node_s": udp,
                    "sealed_bytes_per_node_s": sealed,
                    "memberlist_plain_bytes_per_node_s": (n == 256).then_some(MEMBERLIST_PLAIN),
                    "memberlist_aes_bytes_per_node_s": (n == 256).then_some(MEMBERLIST_AES),
                    "msgs_per_member_per_probe_period": msgs,
                    "messages_per_node_s": crate::kind_names()
                        .iter()
                        .zip(w.kinds)
                        .map(|(k, v)| ((*k).to_owned(), json!(w.per_node_s(v, n))))
                        .collect::<serde_json::Map<_, _>>(),
                    "max_packet_bytes": c.sim.stats().max_packet,
                    "budget_bytes": BUDGET,
                    "wall_seconds": wall(t0),
                }),
                text,
            );
        }
    }
    pb.finish_and_clear();
    out.note(
        "payload = the engine's datagram bytes; +UDP/IP adds 28 B per datagram; +seal adds \
         28 B + the seal frame (scuttlewire::seal::OVERHEAD). memberlist figures are HashiCorp's, LAN preset, N=256.",
    );
}

/// `probe-load`: datagrams per member per probe period in an idle,
/// converged cluster, at N = 64, 256, 1000, 10000 (or `--nodes`).
pub fn probe_load(opts: &Options, out: &mut Out) {
    let config = Config::lan();
    let sizes = opts.nodes.clone().unwrap_or(vec![64, 256, 1000, 10_000]);
    let pb = out.progress(sizes.len() as u64, "probe-load");
    let d = Duration::from_secs(opts.measure_secs);
    for &n in &sizes {
        let t0 = Instant::now();
        pb.set_message(format!("probe-load n={n}"));
        let mut c = converge(n, 7 + n as u64, &config);
        let w = Window::measure(&mut c, d, |_, _| {});
        pb.inc(1);
        out.saw(&c.sim);
        let periods = w.secs / secs(config.probe_interval);
        let all = w.packets as f64 / n as f64 / periods;
        let probes = w.probe_msgs as f64 / n as f64 / periods;
        out.table(
            "probe-load",
            "nodes  datagrams/member/period  probe msgs/member/period  target  max_packet/budget",
        );
        let text = format!(
            "{n:>5}  {all:>23.3}  {probes:>24.3}  {:>6}  {}/{BUDGET}",
            if all <= 2.1 { "<=2.1" } else { "OVER" },
            c.sim.stats().max_packet
        );
        out.row(
            json!({
                "scenario": "probe-load",
                "nodes": n,
                "sim_seconds": w.secs,
                "datagrams_per_member_per_probe_period": all,
                "probe_msgs_per_member_per_probe_period": probes,
                "max_packet_bytes": c.sim.stats().max_packet,
                "budget_bytes": BUDGET,
                "wall_seconds": wall(t0),
            }),
            text,
        );
    }
    pb.finish_and_clear();
}

/// The largest value `set` accepts for `key` on node `i`.
fn set_largest(c: &mut Cluster, i: usize, key: &str) {
    let mut len = BUDGET;
    while len > 0 {
        match c
            .sim
            .with_engine(i, |e, now| e.set(now, key, vec![0xa5u8; len]))
        {
            Some(Err(SetError::EntryTooLarge { len: l, max })) => len -= (l - max).max(1),
            _ => return,
        }
    }
}

/// `budget`: 256 nodes (or the first `--nodes`) under 5% loss, 1%
/// duplication and 5 ms jitter, every node writing values as large as
/// `set` accepts plus many small keys, broadcasts, a crash, a restart and
/// a leave; the largest datagram must stay within the budget.
pub fn budget(opts: &Options, out: &mut Out) {
    let n = opts
        .nodes
        .as_ref()
        .and_then(|v| v.first().copied())
        .unwrap_or(256);
    let t0 = Instant::now();
    let config = Config::lan();
    let mut c = converge(n, 99, &config);
    *c.sim.net_mut() = scuttlewire::sim::NetConfig {
        loss: 0.05,
        duplicate: 0.01,
        jitter: Duration::from_millis(5),
        ..net(0.0)
    };
    for i in 0..n {
        set_largest(&mut c, i, "big");
        for k in 0..20 {
            c.sim.with_engine(i, |e, now| {
                e.set(now, &format!("small{k}"), format!("value {k} of {i}"))
            });
        }
    }
    c.sim.run_for(Duration::from_secs(5));
    c.sim
        .with_engine(1, |e, now| e.broadcast(now, vec![7u8; 600]));
    c.sim.crash(n / 2);
    c.sim.with_engine(3, |e, now| e.leave(now));
    c.sim.run_for(Duration::from_secs(20));
    c.sim.restart(n / 2, &[0]);
    for i in 0..n {
        set_largest(&mut c, i, "big2");
    }
    c.sim.run_for(Duration::from_secs(35));
    out.saw(&c.sim);
    let engines_max = (0..n)
        .filter_map(|i| c.sim.engine(i))
        .map(|e| e.metrics().largest_packet_sent)
        .max()
        .unwrap_or(0);
    let max = c.sim.stats().max_packet.max(engines_max);
    out.table(
        "budget",
        "nodes  packets      max_packet_bytes  budget_bytes  within",
    );
    out.row(
        json!({
            "scenario": "budget",
            "nodes": n,
            "packets": c.sim.stats().packets_sent,
            "max_packet_bytes": max,
            "budget_bytes": BUDGET,
            "within_budget": max <= BUDGET,
            "wall_seconds": wall(t0),
        }),
        format!(
            "{n:>5}  {:>11}  {max:>16}  {BUDGET:>12}  {}",
            c.sim.stats().packets_sent,
            if max <= BUDGET { "yes" } else { "NO" }
        ),
    );
}

/// `simspeed`: wall time to join 10,000 nodes (or the first `--nodes`)
/// and then run them for 60 simulated seconds (or `--secs`).
pub fn simspeed(opts: &Options, out: &mut Out) {
    let n = opts
        .nodes
        .as_ref()
        .and_then(|v| v.first().copied())
        .unwrap_or(10_000);
    let config = Config::lan();
    let pb = out.progress(2, "simspeed");
    pb.set_message(format!("simspeed n={n} join"));
    let t0 = Instant::now();
    let mut c = Cluster::converged(n, 1, &config)
        .unwrap_or_else(|| panic!("n={n}: membership did not converge"));
    let join_wall = wall(t0);
    let join_packets = c.sim.stats().packets_delivered;
    pb.inc(1);
    pb.set_message(format!("simspeed n={n} run"));
    let d = Duration::from_secs(opts.measure_secs);
    let t1 = Instant::now();
    c.sim.run_for(d);
    let run_wall = wall(t1);
    pb.finish_and_clear();
    out.saw(&c.sim);
    let run_packets = c.sim.stats().packets_delivered - join_packets;
    out.table(
        "simspeed",
        "nodes  join_sim_s  join_wall_s  run_sim_s  run_wall_s  packets/wall_s  max_packet/budget  peak_MiB",
    );
    out.row(
        json!({
            "scenario": "simspeed",
            "nodes": n,
            "join_sim_seconds": c.join.map(secs),
            "started_converged": c.join.is_none(),
            "peak_rss_mib": peak_rss_mib(),
            "join_wall_seconds": join_wall,
            "join_packets": join_packets,
            "run_sim_seconds": secs(d),
            "run_wall_seconds": run_wall,
            "run_packets": run_packets,
            "max_packet_bytes": c.sim.stats().max_packet,
            "budget_bytes": BUDGET,
        }),
        format!(
            "{n:>5}  {:>10}  {join_wall:>11.1}  {:>9.0}  {run_wall:>10.1}  {:>14.0}  {}/{BUDGET}  {:>8}",
            c.join.map_or("converged".to_owned(), |j| format!("{:.1}", secs(j))),
            secs(d),
            run_packets as f64 / run_wall,
            c.sim.stats().max_packet,
            peak_rss_mib().map_or("?".to_owned(), |m| m.to_string()),
        ),
    );
}

/// Peak resident memory of this process in MiB (Linux), if known.
pub fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
