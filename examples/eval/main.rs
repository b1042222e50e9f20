//! The scuttlewire evaluation tool: runs the protocol in the deterministic
//! simulator and measures what the design promises — propagation speed,
//! bandwidth, failure detection, false positives, probe load and the
//! packet budget.
//!
//! ```text
//! cargo run --release --features sim --example eval -- [scenario] [options]
//! ```
//!
//! Scenarios: `propagation`, `steady`, `detection`, `false-positives`,
//! `probe-load`, `budget`, `simspeed`, or `all` (every one but `simspeed`
//! and `real`). Run with `--help` for the options. Every figure but those
//! of `real` is a simulated measurement: the same options give the same
//! numbers. `real` runs N nodes on loopback UDP sockets in this process
//! and measures by wall clock, so its figures depend on the machine.
//!
//! # Layout
//!
//! * `main.rs` — command line, output (table or JSON lines), budget summary.
//! * `cluster.rs` — building a converged cluster and watching its events.
//! * `propagation.rs` — rounds until one key reaches every node.
//! * `traffic.rs` — `steady` bandwidth and `probe-load` messages per member.
//! * `detection.rs` — time to declare a crashed node dead; false deaths.
//! * `real.rs` — `real`: N real nodes on loopback UDP (plain or
//!   encrypted): join time, idle and write traffic, write latency, push
//!   resends, kernel drops, false suspicions, memory.
//! * `plot.rs` — the SVG figures.

// The eval tool times its simulator runs (the simulated clusters themselves run on virtual time).
#![allow(clippy::disallowed_methods)]

mod cluster;
mod detection;
mod plot;
mod propagation;
mod real;
mod traffic;

use std::error::Error;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use scuttlewire::sim::Sim;

/// Packet budget of every engine: a 1,400-byte UDP payload (LAN MTU minus
/// headers and room for the seal).
pub const BUDGET: usize = 1400;

/// Message kinds, in the order `KindCounts::by_kind` lists them.
pub fn kind_names() -> [&'static str; 10] {
    scuttlewire::engine::KindCounts::default()
        .by_kind()
        .map(|(name, _)| name)
}

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Scenarios to run, in order.
    pub scenarios: Vec<String>,
    /// JSON-lines files to read (`replot`).
    pub inputs: Vec<PathBuf>,
    /// Independent trials per measurement.
    pub seeds: u64,
    /// Cluster sizes (each scenario has its own default).
    pub nodes: Option<Vec<usize>>,
    /// Loss rates for `propagation`, 0.0..=1.0.
    pub loss: Vec<f64>,
    /// Clusters at most this large are rebuilt for every seed; larger ones
    /// are built a few times and reused for several trials.
    pub fresh_max: usize,
    /// Simulated seconds of each traffic measurement.
    pub measure_secs: u64,
    /// Simulated seconds of the false-positive run.
    pub fp_secs: u64,
    /// One JSON object per line instead of tables.
    pub json: bool,
    /// Where the SVG plots go (`None`: no plots).
    pub plot: Option<PathBuf>,
    /// A file that also gets every JSON line (appended), whatever the
    /// output mode.
    pub json_file: Option<PathBuf>,
    /// Transports of `real`.
    pub transports: Vec<real::Sealing>,
    /// Initial keys per node in `real`.
    pub state: Vec<usize>,
    /// Signed state in `real` (each node with its own identity, trust on
    /// first use).
    pub signatures: scuttlewire::Signatures,
    /// Longest wall-clock wait for a `real` cluster to join, in seconds.
    pub join_cap_secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scenarios: vec![],
            inputs: vec![],
            seeds: 20,
            nodes: None,
            loss: vec![0.0, 0.05, 0.20],
            fresh_max: 256,
            measure_secs: 60,
            fp_secs: 600,
            json: false,
            plot: Some(PathBuf::from("docs/img")),
            json_file: None,
            transports: vec![real::Sealing::Plain],
            state: vec![0],
            signatures: scuttlewire::Signatures::Off,
            join_cap_secs: 120,
        }
    }
}

const HELP: &str = "\
usage: eval [scenario...] [options]

scenarios:
  propagation      rounds and seconds until one key reaches every node
  steady           bytes and packets per node per second, idle and loaded
  detection        time until every member declares a crashed node dead
  false-positives  dead declarations about live nodes at 5% loss
  probe-load       messages per member per probe period, idle
  budget           largest packet under a heavy mixed load vs the budget
  simspeed         wall time of 10,000 nodes for 60 simulated seconds
  replot FILE      redraw detection.svg from the detection lines of a
                   --json-file (e.g. after running sizes separately)
  real             N nodes in this process on loopback UDP (default 64,256):
                   join time, idle and per-write traffic, write latency,
                   push resends, kernel UDP drops, false suspicions, RSS.
                   Wall clock, not simulated: figures depend on the machine
                   and its load, so it is not part of `all`
  all              every scenario above but simspeed and real (the default)

options:
  --seeds N        trials per measurement (default 20)
  --nodes A,B,..   cluster sizes (default depends on the scenario)
  --loss A,B,..    loss rates for propagation, as 0.05 or 5% (default 0,5%,20%)
  --fresh-max N    rebuild clusters up to N nodes for every seed (default 256)
  --secs S         simulated seconds per traffic measurement (default 60);
                   for real, wall seconds of the idle and loaded windows
  --fp-secs S      simulated seconds of the false-positive run (default 600)
  --transport A,.. real: plain, aes (AES-256-GCM), chacha
  --signatures S   real: off (default), sign or require: every node signs its state
                   (ChaCha20-Poly1305) (default plain)
  --state A,B,..   real: keys each node sets before it starts (default 0)
  --join-cap S     real: give up waiting for the join after S s (default 120)
  --json           one JSON object per line instead of tables
  --json-file F    also append every JSON line to file F
  --plot DIR       write SVG plots into DIR (default docs/img)
  --no-plot        write no plots
";

fn parse_list<T: std::str::FromStr>(s: &str, what: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .map(|x| x.trim().parse().map_err(|_| format!("bad {what}: {x}")))
        .collect()
}

fn parse_loss(s: &str) -> Result<Vec<f64>, String> {
    s.split(',')
        .map(|x| {
            let x = x.trim();
            let (num, scale) = match x.strip_suffix('%') {
                Some(p) => (p, 100.0),
                None => (x, 1.0),
            };
            let v: f64 = num.parse().map_err(|_| format!("bad loss: {x}"))?;
            let v = v / scale;
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(format!("loss out of range: {x}"))
            }
        })
        .collect()
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--seeds" => o.seeds = value("--seeds")?.parse().map_err(|_| "bad --seeds")?,
            "--nodes" => o.nodes = Some(parse_list(&value("--nodes")?, "node count")?),
            "--loss" => o.loss = parse_loss(&value("--loss")?)?,
            "--fresh-max" => {
                o.fresh_max = value("--fresh-max")?
                    .parse()
                    .map_err(|_| "bad --fresh-max")?
            }
            "--secs" => o.measure_secs = value("--secs")?.parse().map_err(|_| "bad --secs")?,
            "--fp-secs" => o.fp_secs = value("--fp-secs")?.parse().map_err(|_| "bad --fp-secs")?,
            "--transport" => {
                o.transports = value("--transport")?
                    .split(',')
                    .map(real::Sealing::parse)
                    .collect::<Result<_, _>>()?
            }
            "--state" => o.state = parse_list(&value("--state")?, "state key count")?,
            "--signatures" => {
                o.signatures = value("--signatures")?
                    .parse()
                    .map_err(|e| format!("--signatures: {e}"))?
            }
            "--join-cap" => {
                o.join_cap_secs = value("--join-cap")?.parse().map_err(|_| "bad --join-cap")?
            }
            "--json" => o.json = true,
            "--json-file" => o.json_file = Some(PathBuf::from(value("--json-file")?)),
            "--plot" => o.plot = Some(PathBuf::from(value("--plot")?)),
            "--no-plot" => o.plot = None,
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n\n{HELP}")),
            s if o.scenarios.last().is_some_and(|l| l == "replot") => {
                o.inputs.push(PathBuf::from(s))
            }
            s => o.scenarios.push(s.to_owned()),
        }
    }
    if o.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    if o.scenarios.is_empty() || o.scenarios.iter().any(|s| s == "all") {
        o.scenarios = [
            "propagation",
            "steady",
            "detection",
            "false-positives",
            "probe-load",
            "budget",
        ]
        .map(String::from)
        .to_vec();
    }
    Ok(o)
}

/// Where results go: a human-readable table or JSON lines on stdout,
/// progress on stderr. Also keeps the largest packet seen in any run.
pub struct Out {
    json: bool,
    json_file: Option<std::fs::File>,
    /// Largest datagram any simulated engine sent, over every run so far.
    pub max_packet: usize,
    /// Runs that contributed to `max_packet`.
    pub runs: u64,
    header_printed: Option<&'static str>,
}

impl Out {
    /// Prints `header` once before the first row of a new table.
    pub fn table(&mut self, title: &'static str, header: &str) {
        if self.json || self.header_printed == Some(title) {
            return;
        }
        self.header_printed = Some(title);
        println!("\n## {title}\n");
        println!("{header}");
        println!("{}", "-".repeat(header.len()));
    }

    /// Emits one result: `line` in table mode, `value` in JSON mode.
    pub fn row(&mut self, value: Value, line: String) {
        if let Some(f) = self.json_file.as_mut() {
            if let Err(e) = writeln!(f, "{value}") {
                eprintln!("cannot write the JSON file: {e}");
            }
        }
        if self.json {
            println!("{value}");
        } else {
            println!("{line}");
        }
    }

    /// Prints a note under a table (table mode only).
    pub fn note(&self, text: &str) {
        if !self.json {
            println!("{text}");
        }
    }

    /// Records the largest packet of a finished simulation.
    pub fn saw(&mut self, sim: &Sim) {
        self.max_packet = self.max_packet.max(sim.stats().max_packet);
        self.runs += 1;
    }

    /// A progress bar of `len` steps on stderr, hidden for JSON output or
    /// when stderr is not a terminal.
    pub fn progress(&self, len: u64, what: &str) -> ProgressBar {
        if self.json || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(len);
        pb.set_style(
            ProgressStyle::with_template("{msg:>28} [{bar:30}] {pos}/{len} {elapsed_precise}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_message(what.to_owned());
        pb
    }
}

/// Mean of `v` (0 if empty).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Nearest-rank percentile `p` (0..=100) of `v`: with fewer than 100
/// samples, p99 is the maximum.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// Wall-clock seconds since `t`.
pub fn wall(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// `d` in seconds.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() -> Result<(), Box<dyn Error>> {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let json_file = match &opts.json_file {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
        None => None,
    };
    let mut out = Out {
        json: opts.json,
        json_file,
        max_packet: 0,
        runs: 0,
        header_printed: None,
    };
    let started = Instant::now();
    for s in &opts.scenarios {
        match s.as_str() {
            "propagation" => propagation::run(&opts, &mut out)?,
            "steady" => traffic::steady(&opts, &mut out),
            "detection" => detection::detection(&opts, &mut out)?,
            "false-positives" => detection::false_positives(&opts, &mut out),
            "probe-load" => traffic::probe_load(&opts, &mut out),
            "budget" => traffic::budget(&opts, &mut out),
            "simspeed" => traffic::simspeed(&opts, &mut out),
            "real" => real::run(&opts, &mut out)?,
            "replot" => {
                if let Some(dir) = &opts.plot {
                    plot::detection_from(dir, &opts.inputs)?;
                }
            }
            other => {
                eprintln!("unknown scenario {other}\n\n{HELP}");
                std::process::exit(2);
            }
        }
    }
    if out.runs == 0 {
        return Ok(());
    }
    out.table(
        "budget summary",
        "runs  max_packet_bytes  budget_bytes  within",
    );
    let within = out.max_packet <= BUDGET;
    let line = format!(
        "{:>4}  {:>16}  {:>12}  {}",
        out.runs,
        out.max_packet,
        BUDGET,
        if within { "yes" } else { "NO" }
    );
    out.row(
        json!({
            "scenario": "budget-summary",
            "runs": out.runs,
            "max_packet_bytes": out.max_packet,
            "budget_bytes": BUDGET,
            "within_budget": within,
            "wall_seconds": wall(started),
        }),
        line,
    );
    if !within {
        return Err(format!("a packet of {} B exceeded the budget", out.max_packet).into());
    }
    Ok(())
}
