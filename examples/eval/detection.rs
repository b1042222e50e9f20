//! Failure detection: `detection` (time until every member declares a
//! crashed node dead) and `false-positives` (dead declarations about live
//! nodes under loss).

use std::error::Error;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::cluster::{Cluster, plan};
use crate::plot;
use crate::{BUDGET, Options, Out, mean, percentile, secs, wall};
use scuttlewire::Config;

/// Longest simulated wait for a crash to be detected by everyone.
const LIMIT: Duration = Duration::from_secs(120);

/// `detection`: crash one random live node; measure the simulated time
/// until every other live member has declared it `Dead`.
pub fn detection(opts: &Options, out: &mut Out) -> Result<(), Box<dyn Error>> {
    let config = Config::lan();
    let sizes = opts.nodes.clone().unwrap_or(vec![64, 256, 1000]);
    let pb = out.progress(sizes.len() as u64 * opts.seeds, "detection");
    let mut points = Vec::new();
    for &n in &sizes {
        let t0 = Instant::now();
        let mut times = Vec::new();
        let mut first = Vec::new();
        let mut undetected = 0;
        let mut max_packet = 0;
        for (ci, &trials) in plan(n, opts.seeds, opts.fresh_max).iter().enumerate() {
            pb.set_message(format!("detection n={n} join"));
            let seed = 0xdead_0000 | (n as u64) << 8 | ci as u64;
            let Some(mut c) = Cluster::converged(n, seed, &config) else {
                return Err(format!("n={n}: membership did not converge").into());
            };
            pb.set_message(format!("detection n={n}"));
            c.sim.run_for(Duration::from_secs(10));
            let mut rng = StdRng::seed_from_u64(seed);
            let mut crashed: Vec<usize> = Vec::new();
            for _ in 0..trials {
                let victim = loop {
                    let v = rng.random_range(0..n);
                    if !crashed.contains(&v) {
                        break v;
                    }
                };
                // Start at a random phase of the probe period.
                c.sim
                    .run_for(config.probe_interval.mul_f64(rng.random::<f64>()));
                let start = c.sim.elapsed();
                crashed.push(victim);
                {
                    let mut w = c.watch.borrow_mut();
                    w.watch_dead(n, &Cluster::name(victim));
                    for &x in &crashed {
                        w.mark(x, start);
                    }
                }
                c.sim.crash(victim);
                let watch = c.watch.clone();
                let mut first_at = None;
                let all = c.run_steps(LIMIT, Duration::from_millis(100), |s| {
                    let w = watch.borrow();
                    if first_at.is_none() && w.count > crashed.len() {
                        first_at = Some(s.elapsed() - start);
                    }
                    w.count == n
                });
                if all {
                    times.push(secs(watch.borrow().last - start));
                } else {
                    undetected += 1;
                    times.push(secs(LIMIT));
                }
                if let Some(f) = first_at {
                    first.push(secs(f));
                }
                pb.inc(1);
                c.sim.run_for(Duration::from_secs(5));
            }
            max_packet = max_packet.max(c.sim.stats().max_packet);
            out.saw(&c.sim);
        }
        let (m, p99) = (mean(&times), percentile(&times, 99.0));
        points.push((n, m, p99));
        out.table(
            "detection",
            "nodes  seeds  all_dead_mean_s  all_dead_p99_s  first_dead_mean_s  undetected  max_packet/budget",
        );
        let text = format!(
            "{n:>5}  {:>5}  {m:>15.2}  {p99:>14.2}  {:>17.2}  {undetected:>10}  {max_packet}/{BUDGET}",
            times.len(),
            mean(&first),
        );
        out.row(
            json!({
                "scenario": "detection",
                "nodes": n,
                "seeds": times.len(),
                "seconds_mean": m,
                "seconds_p99": p99,
                "first_dead_seconds_mean": mean(&first),
                "undetected": undetected,
                "max_packet_bytes": max_packet,
                "budget_bytes": BUDGET,
                "wall_seconds": wall(t0),
            }),
            text,
        );
    }
    pb.finish_and_clear();
    out.note(
        "time from the crash until every live member declared the node Dead (first_dead: \
         until the first did, at 100 ms resolution); LAN preset; p99 = max below 100 seeds.",
    );
    if let Some(dir) = &opts.plot {
        plot::detection(dir, &points)?;
    }
    Ok(())
}

/// `false-positives`: 128 nodes (or the first `--nodes`), 5% loss,
/// `--fp-secs` simulated seconds, `--seeds` clusters; counts `Dead` and
/// `Suspect` declarations (every node is alive, so each is false).
pub fn false_positives(opts: &Options, out: &mut Out) {
    let config = Config::lan();
    let n = opts
        .nodes
        .as_ref()
        .and_then(|v| v.first().copied())
        .unwrap_or(128);
    let loss = 0.05;
    let pb = out.progress(opts.seeds, "false-positives");
    let t0 = Instant::now();
    let (mut deaths, mut suspects, mut worst, mut max_packet) = (0, 0, 0, 0);
    for seed in 0..opts.seeds {
        let mut c = Cluster::converged(n, 0xf0 + seed, &config)
            .unwrap_or_else(|| panic!("n={n}: membership did not converge"));
        c.sim.net_mut().loss = loss;
        let (d0, s0) = {
            let w = c.watch.borrow();
            (w.dead_events, w.suspect_events)
        };
        c.sim.run_for(Duration::from_secs(opts.fp_secs));
        let w = c.watch.borrow();
        deaths += w.dead_events - d0;
        suspects += w.suspect_events - s0;
        worst = worst.max(w.dead_events - d0);
        max_packet = max_packet.max(c.sim.stats().max_packet);
        drop(w);
        out.saw(&c.sim);
        pb.inc(1);
    }
    pb.finish_and_clear();
    out.table(
        "false-positives",
        "nodes  loss  seeds  sim_s  false_deaths  worst_seed  suspicions  max_packet/budget",
    );
    out.row(
        json!({
            "scenario": "false-positives",
            "nodes": n,
            "loss": loss,
            "seeds": opts.seeds,
            "sim_seconds": opts.fp_secs,
            "false_deaths": deaths,
            "false_deaths_worst_seed": worst,
            "suspicions": suspects,
            "max_packet_bytes": max_packet,
            "budget_bytes": BUDGET,
            "wall_seconds": wall(t0),
        }),
        format!(
            "{n:>5}  {:>3.0}%  {:>5}  {:>5}  {deaths:>12}  {worst:>10}  {suspects:>10}  {max_packet}/{BUDGET}",
            loss * 100.0,
            opts.seeds,
            opts.fp_secs
        ),
    );
}
