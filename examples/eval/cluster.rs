//! Building a converged cluster in the simulator, and a [`Watch`] that
//! counts the events a measurement needs without recording every event.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use scuttlewire::sim::{NetConfig, Sim};
use scuttlewire::{Config, Event, MemberStatus};

use crate::BUDGET;

/// Nodes every other node joins through: node 0 starts alone, nodes
/// 1..SEED_NODES join through node 0, and node `i` through `i % SEED_NODES`.
pub const SEED_NODES: usize = 8;

/// Above this many nodes a cluster starts converged ([`Sim::preload_all`])
/// instead of joining by gossip: a 10,000-node join is 10^8 member
/// introductions, minutes of wall time that measure nothing the
/// 1,000-node join does not.
pub const JOIN_MAX: usize = 1000;

/// Longest simulated wait for membership to converge.
const JOIN_LIMIT: Duration = Duration::from_secs(600);

/// The network of every scenario: 1 ms one-way latency, up to 0.5 ms
/// jitter, `loss`, the [`BUDGET`].
pub fn net(loss: f64) -> NetConfig {
    NetConfig {
        latency: Duration::from_millis(1),
        jitter: Duration::from_micros(500),
        loss,
        duplicate: 0.0,
        budget: BUDGET,
    }
}

/// What the event hook counts. Shared between the hook and the scenario.
#[derive(Debug, Default)]
pub struct Watch {
    /// `(owner name, key)` whose arrival is counted.
    pub key: Option<(String, String)>,
    /// Subject of the `Dead` declarations counted in `informed`.
    pub dead: Option<String>,
    /// Which nodes have seen the watched key or death.
    pub informed: Vec<bool>,
    /// How many `informed` are true.
    pub count: usize,
    /// Virtual time of the latest new `informed` node.
    pub last: Duration,
    /// Every `Dead` declaration about any node.
    pub dead_events: u64,
    /// Every `Suspect` declaration about any node.
    pub suspect_events: u64,
}

impl Watch {
    /// Starts counting `(owner, key)` arrivals over `n` nodes.
    pub fn watch_key(&mut self, n: usize, owner: &str, key: &str) {
        self.reset(n);
        self.key = Some((owner.to_owned(), key.to_owned()));
    }

    /// Starts counting the nodes that declare `name` dead.
    pub fn watch_dead(&mut self, n: usize, name: &str) {
        self.reset(n);
        self.dead = Some(name.to_owned());
    }

    fn reset(&mut self, n: usize) {
        self.key = None;
        self.dead = None;
        self.informed = vec![false; n];
        self.count = 0;
    }

    /// Marks node `i` as informed at `t` (the origin of a key, or nodes
    /// that do not count).
    pub fn mark(&mut self, i: usize, t: Duration) {
        if let Some(slot) = self.informed.get_mut(i) {
            if !*slot {
                *slot = true;
                self.count += 1;
                self.last = t;
            }
        }
    }

    fn on_event(&mut self, i: usize, t: Duration, e: &Event) {
        match e {
            Event::KeySet { node, key, .. } => {
                if let Some((owner, k)) = &self.key {
                    if node.name == *owner && key == k {
                        self.mark(i, t);
                    }
                }
            }
            Event::MemberStatus { node, status } => match status {
                MemberStatus::Dead => {
                    self.dead_events += 1;
                    if self.dead.as_deref() == Some(node.name.as_str()) {
                        self.mark(i, t);
                    }
                }
                MemberStatus::Suspect => self.suspect_events += 1,
                _ => {}
            },
            _ => {}
        }
    }
}

/// A converged cluster of `n` engines and its [`Watch`].
pub struct Cluster {
    /// The simulator.
    pub sim: Sim,
    /// Number of nodes.
    pub n: usize,
    /// The config every node runs.
    pub config: Config,
    /// Simulated time membership took to converge (`None`: started
    /// converged, see [`JOIN_MAX`]).
    pub join: Option<Duration>,
    /// Counts what the hook sees.
    pub watch: Rc<RefCell<Watch>>,
}

impl Cluster {
    /// Builds `n` nodes running `config` on a loss-free [`net`], booted
    /// one after another over one gossip interval, seeded as [`SEED_NODES`] describes; runs until
    /// every node knows all `n` (checked every 100 ms of simulated time).
    /// Returns `None` if that takes longer than ten simulated minutes.
    /// Above [`JOIN_MAX`] nodes the cluster starts converged instead.
    pub fn converged(n: usize, seed: u64, config: &Config) -> Option<Cluster> {
        let mut sim = Sim::new(net(0.0), seed);
        sim.record_events(false);
        let watch = Rc::new(RefCell::new(Watch::default()));
        let w = watch.clone();
        sim.on_event(move |i, t, e| w.borrow_mut().on_event(i, t, e));
        if n > JOIN_MAX {
            for i in 0..n {
                sim.add_node(named(config, i), &[]);
                sim.run_for(config.gossip_interval / n as u32);
            }
            sim.preload_all();
            return Some(Cluster {
                sim,
                n,
                config: config.clone(),
                join: None,
                watch,
            });
        }
        for i in 0..n {
            let seeds: Vec<usize> = match i {
                0 => vec![],
                i if i < SEED_NODES => vec![0],
                i => vec![i % SEED_NODES],
            };
            sim.add_node(named(config, i), &seeds);
            // Spread the boots over one gossip interval, so the nodes'
            // rounds are not in lockstep.
            sim.run_for(config.gossip_interval / n as u32);
        }
        let step = Duration::from_millis(100);
        while sim.elapsed() < JOIN_LIMIT {
            sim.run_for(step);
            if (0..n).all(|i| sim.engine(i).is_some_and(|e| e.member_count() == n)) {
                let join = sim.elapsed();
                return Some(Cluster {
                    sim,
                    n,
                    config: config.clone(),
                    join: Some(join),
                    watch,
                });
            }
        }
        None
    }

    /// Runs `d` of simulated time in steps of `step`, calling `f` after
    /// each step; stops early when `f` returns true. Returns whether it
    /// stopped early.
    pub fn run_steps(
        &mut self,
        d: Duration,
        step: Duration,
        mut f: impl FnMut(&mut Sim) -> bool,
    ) -> bool {
        let end = self.sim.elapsed() + d;
        while self.sim.elapsed() < end {
            self.sim.run_for(step.min(end - self.sim.elapsed()));
            if f(&mut self.sim) {
                return true;
            }
        }
        false
    }

    /// Name of node `i`: host-like names of 9-10 bytes, so packets carry
    /// ids of realistic size (the simulator's default `n{i}` is shorter).
    pub fn name(i: usize) -> String {
        format!("node-{i:04}")
    }
}

/// `config` for node `i`, named [`Cluster::name`]`(i)`.
fn named(config: &Config, i: usize) -> Config {
    Config {
        name: Cluster::name(i),
        ..config.clone()
    }
}

/// How many clusters to build for `n` nodes, and how many trials each
/// runs, so that `seeds` trials are made in all: a fresh cluster per trial
/// up to `fresh_max` nodes, else four clusters, each reused for several
/// trials. Four at every larger size keeps the trials at each loss rate
/// equally far into that rate (at most ~12 simulated s with 20 seeds):
/// under sustained heavy loss a large cluster's membership degrades with
/// time (docs/PERFORMANCE.md, Heavy loss at 10,000 nodes).
pub fn plan(n: usize, seeds: u64, fresh_max: usize) -> Vec<u64> {
    let clusters = if n <= fresh_max { seeds } else { seeds.min(4) };
    (0..clusters)
        .map(|c| seeds / clusters + u64::from(c < seeds % clusters))
        .collect()
}
