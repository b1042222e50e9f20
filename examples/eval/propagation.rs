//! `propagation`: simulated time until a key set on one random node has
//! reached every node, against the push-pull bound. With
//! `SW_EVAL_PROPAGATION_DEBUG` set, each trial prints its time and the
//! cluster's push counters so far.

use std::error::Error;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::cluster::{Cluster, plan};
use crate::plot::{self, Curve};
use crate::{BUDGET, Options, Out, mean, percentile, secs, wall};
use scuttlewire::Config;

/// Sampling period of the fraction-informed curve.
pub const SAMPLE: Duration = Duration::from_millis(10);

/// Longest simulated wait for one key to reach everyone.
const LIMIT: Duration = Duration::from_secs(120);

/// Simulated time a cluster runs at a new loss rate before its first
/// trial there: the loss of a real network is a standing condition, and
/// nodes adapt to the loss they measure (their pushes' redundancy), which
/// learns from one probe a second, decayed over ~64: a minute gets it
/// most of the way.
const SETTLE: Duration = Duration::from_secs(60);

/// Default cluster sizes.
const NODES: [usize; 4] = [64, 256, 1000, 10_000];

/// Rounds a push-pull epidemic needs to reach all of `n` nodes:
/// `log3(n) + log2(ln n)` (Karp et al., 2000).
pub fn bound(n: usize) -> f64 {
    let n = n as f64;
    n.log(3.0) + n.ln().log2()
}

/// One trial's result.
struct Trial {
    /// Simulated time until the last node had the key (`LIMIT` if never).
    took: Duration,
    /// Whether every node got it.
    complete: bool,
    /// Fraction informed at every [`SAMPLE`] after the write.
    curve: Vec<f64>,
}

/// Sets a fresh key on a random node of `c` and waits until all have it.
fn trial(c: &mut Cluster, rng: &mut StdRng, key: &str) -> Trial {
    // Start at a random phase of the gossip round.
    let gossip = c.config.gossip_interval;
    c.sim.run_for(gossip.mul_f64(rng.random::<f64>()));
    let origin = rng.random_range(0..c.n);
    let name = Cluster::name(origin);
    let start = c.sim.elapsed();
    {
        let mut w = c.watch.borrow_mut();
        w.watch_key(c.n, &name, key);
        w.mark(origin, start);
    }
    c.sim
        .with_engine(origin, |e, now| e.set(now, key, "v"))
        .and_then(Result::ok)
        .expect("origin is running and the key fits");
    let n = c.n;
    let watch = c.watch.clone();
    let mut curve = vec![1.0 / n as f64];
    let complete = c.run_steps(LIMIT, SAMPLE, |_| {
        let w = watch.borrow();
        curve.push(w.count as f64 / n as f64);
        w.count == n
    });
    if std::env::var_os("SW_EVAL_PROPAGATION_DEBUG").is_some() {
        let mut t = [0u64; 6];
        for i in 0..n {
            if let Some(m) = c.sim.with_engine(i, |e, _| e.metrics()) {
                t[0] += m.pushes_sent;
                t[1] += m.push_copies;
                t[2] += m.pushes_retried;
                t[3] += m.pulls;
                t[4] += m.pushes_unacked;
                t[5] += m.delta_gaps;
            }
        }
        let w = watch.borrow();
        eprintln!(
            "trial: {:?}, complete {complete}; so far, pushes sent/copies/resent/pulls/given up/gaps {t:?}",
            w.last - start
        );
    }
    let took = if complete {
        watch.borrow().last - start
    } else {
        LIMIT
    };
    Trial {
        took,
        complete,
        curve,
    }
}

/// Runs the scenario: every size in `--nodes` at every rate in `--loss`.
pub fn run(opts: &Options, out: &mut Out) -> Result<(), Box<dyn Error>> {
    let config = Config::lan();
    let round = secs(config.gossip_interval);
    let sizes = opts.nodes.clone().unwrap_or(NODES.to_vec());
    let total = sizes.len() as u64 * opts.loss.len() as u64 * opts.seeds;
    let pb = out.progress(total, "propagation");
    let mut curves: Vec<Curve> = Vec::new();
    for &n in &sizes {
        let t0 = Instant::now();
        let plan = plan(n, opts.seeds, opts.fresh_max);
        // Per loss rate: the trials, and the largest packet seen.
        let mut results: Vec<Vec<Trial>> = opts.loss.iter().map(|_| Vec::new()).collect();
        let mut joins = Vec::new();
        let mut max_packet = 0;
        for (ci, &trials) in plan.iter().enumerate() {
            pb.set_message(format!("propagation n={n} join"));
            let seed = (n as u64) << 16 | ci as u64;
            let Some(mut c) = Cluster::converged(n, seed, &config) else {
                return Err(format!("n={n}: membership did not converge").into());
            };
            joins.extend(c.join.map(secs));
            let mut rng = StdRng::seed_from_u64(seed);
            for (li, &loss) in opts.loss.iter().enumerate() {
                pb.set_message(format!("propagation n={n} loss={loss}"));
                if c.sim.net_mut().loss != loss {
                    c.sim.net_mut().loss = loss;
                    c.sim.run_for(SETTLE);
                }
                for t in 0..trials {
                    let r = trial(&mut c, &mut rng, &format!("k{li}.{t}"));
                    results[li].push(r);
                    pb.inc(1);
                    // Let the rumor die down before the next write.
                    c.sim.run_for(Duration::from_secs(2));
                }
            }
            max_packet = max_packet.max(c.sim.stats().max_packet);
            out.saw(&c.sim);
        }
        let b = bound(n);
        for (li, &loss) in opts.loss.iter().enumerate() {
            let rs = &results[li];
            let rounds: Vec<f64> = rs.iter().map(|r| secs(r.took) / round).collect();
            let seconds: Vec<f64> = rs.iter().map(|r| secs(r.took)).collect();
            let incomplete = rs.iter().filter(|r| !r.complete).count();
            let within_2s = rs
                .iter()
                .filter(|r| r.complete && secs(r.took) <= 2.0)
                .count();
            let line = json!({
                "scenario": "propagation",
                "nodes": n,
                "loss": loss,
                "seeds": rs.len(),
                "clusters": plan.len(),
                "rounds_mean": mean(&rounds),
                "rounds_p99": percentile(&rounds, 99.0),
                "rounds_min": percentile(&rounds, 0.0),
                "seconds_mean": mean(&seconds),
                "seconds_p99": percentile(&seconds, 99.0),
                "bound_rounds": b,
                "target_rounds": 1.1 * b,
                "incomplete": incomplete,
                "within_2s": within_2s,
                "join_seconds_mean": mean(&joins),
                "max_packet_bytes": max_packet,
                "budget_bytes": BUDGET,
                "wall_seconds": wall(t0),
            });
            out.table(
                "propagation",
                "nodes   loss  seeds  rounds_mean  rounds_p99  seconds_mean  seconds_p99  bound  1.1x  <=2s   max_packet/budget",
            );
            let text = format!(
                "{n:>5}  {:>4.0}%  {:>5}  {:>11.2}  {:>10.2}  {:>12.3}  {:>11.3}  {b:>5.2}  {:>4.1}  {:>2}/{:<2}  {max_packet}/{BUDGET}{}",
                loss * 100.0,
                rs.len(),
                mean(&rounds),
                percentile(&rounds, 99.0),
                mean(&seconds),
                percentile(&seconds, 99.0),
                1.1 * b,
                within_2s,
                rs.len(),
                if incomplete > 0 {
                    format!("  ({incomplete} incomplete after {LIMIT:?})")
                } else {
                    String::new()
                }
            );
            out.row(line, text);
            curves.push(Curve {
                nodes: n,
                loss,
                points: mean_curve(rs.iter().map(|r| r.curve.as_slice())),
                bound_rounds: b,
            });
        }
    }
    pb.finish_and_clear();
    out.note(&format!(
        "rounds = simulated time / gossip_interval ({} ms, LAN preset); p99 is nearest-rank, \
         so with fewer than 100 seeds it is the maximum.",
        config.gossip_interval.as_millis()
    ));
    if let Some(dir) = &opts.plot {
        plot::propagation(dir, &curves, round, SAMPLE)?;
    }
    Ok(())
}

/// Point-wise mean of curves of unequal length (a finished curve stays at
/// its last value).
fn mean_curve<'a>(curves: impl Iterator<Item = &'a [f64]> + Clone) -> Vec<f64> {
    let len = curves.clone().map(<[f64]>::len).max().unwrap_or(0);
    let count = curves.clone().count().max(1) as f64;
    (0..len)
        .map(|i| {
            curves
                .clone()
                .map(|c| c.get(i).or(c.last()).copied().unwrap_or(0.0))
                .sum::<f64>()
                / count
        })
        .collect()
}
