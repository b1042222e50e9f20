//! One real `scuttlewire agent` process, run inside a network namespace,
//! with its `--json` stdout parsed line by line as it arrives.
//!
//! The test observes agents only through what they print, as an operator
//! would: each stdout line is parsed into a [`Line`] stamped with the
//! test's own clock when it was read (so times of different agents compare
//! directly), stderr is kept for failure messages, and `Drop` SIGKILLs the
//! process so a failing or panicking test leaves nothing running.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One JSON line of an agent's stdout.
#[derive(Debug, Clone)]
pub struct Line {
    /// When the test read it.
    pub at: Instant,
    pub json: Value,
}

impl Line {
    /// The line's `"event"` field ("" if absent).
    pub fn event(&self) -> &str {
        self.json["event"].as_str().unwrap_or("")
    }
}

/// What the reader threads collect.
#[derive(Default)]
struct Output {
    lines: Vec<Line>,
    /// Stdout lines that were not JSON objects: with `--json` there must be
    /// none, so the test reports them.
    not_json: Vec<String>,
    stderr: Vec<String>,
}

/// A running (or finished) agent process.
pub struct Agent {
    /// Its gossip name (`--name`).
    pub name: String,
    child: Child,
    output: Arc<Mutex<Output>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the agents' output.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Agent {
    /// Starts `ip netns exec <ns> <bin> <args...>` with extra environment
    /// variables `env`. `ip netns exec` execs (does not fork), so the child's
    /// pid is the agent's and signals reach it directly. `SCUTTLEWIRE_*`
    /// variables of the test's own environment are not passed on, so only
    /// what the test says configures the agent.
    pub fn spawn(
        ns: &str,
        bin: &str,
        name: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Agent {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, bin])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SCUTTLEWIRE_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name} (ip netns exec {ns} {bin} {args:?}): {e}"));
        let output = Arc::new(Mutex::new(Output::default()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let out = Arc::clone(&output);
        let stdout_reader = std::thread::spawn(move || {
            for line in lines_of(stdout) {
                let at = Instant::now();
                match serde_json::from_str::<Value>(&line) {
                    Ok(json) if json.is_object() => lock(&out).lines.push(Line { at, json }),
                    _ => lock(&out).not_json.push(line),
                }
            }
        });
        let out = Arc::clone(&output);
        let stderr_reader = std::thread::spawn(move || {
            for line in lines_of(stderr) {
                lock(&out).stderr.push(line);
            }
        });
        Agent {
            name: name.to_string(),
            child,
            output,
            readers: vec![stdout_reader, stderr_reader],
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `f` over every JSON line read so far.
    pub fn with_lines<R>(&self, f: impl FnOnce(&[Line]) -> R) -> R {
        f(&lock(&self.output).lines)
    }

    /// The first line at or after `since` for which `pred` holds.
    pub fn first_since(&self, since: Instant, pred: impl Fn(&Line) -> bool) -> Option<Line> {
        self.with_lines(|lines| lines.iter().find(|l| l.at >= since && pred(l)).cloned())
    }

    /// The most recent line with this `event`.
    pub fn last_event(&self, event: &str) -> Option<Line> {
        self.with_lines(|lines| lines.iter().rev().find(|l| l.event() == event).cloned())
    }

    /// Stdout lines that were not JSON objects.
    pub fn not_json(&self) -> Vec<String> {
        lock(&self.output).not_json.clone()
    }

    /// The last `n` stderr lines, joined.
    pub fn stderr_tail(&self, n: usize) -> String {
        let out = lock(&self.output);
        let skip = out.stderr.len().saturating_sub(n);
        out.stderr[skip..].join("\n")
    }

    /// The exit status if the process has ended (reaping it).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// SIGKILL, as a crash or power loss would: no `leave`.
    pub fn kill9(&mut self) {
        if self.exit_status().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        self.join_readers();
    }

    /// Sends SIGTERM (the agent should leave and exit 0); see [`Agent::wait_exit`].
    pub fn signal_term(&self) {
        send_signal("-TERM", self.pid());
    }

    /// Polls for the process's exit until `limit` passes, then SIGKILLs it.
    /// Returns the exit status, or an error saying it did not exit in time.
    /// Either way all of its output is read by the time this returns.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + limit;
        let result = loop {
            if let Some(status) = self.exit_status() {
                break Ok(status);
            }
            if Instant::now() >= deadline {
                break Err(format!(
                    "{} (pid {}) did not exit within {limit:?}; its threads:\n{}",
                    self.name,
                    self.pid(),
                    threads(self.pid())
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if result.is_err() {
            self.kill9();
        }
        self.join_readers();
        result
    }

    /// Waits for the reader threads, which end at EOF once the process is
    /// gone, so every line it printed is in the log.
    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Never leave a process behind, whatever path led here.
        if self.exit_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `kill <signal> <pid>` (the crate has no libc dependency).
pub fn send_signal(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
}

/// The lines of `r`, lossily decoded, until EOF or a read error.
fn lines_of(r: impl Read) -> impl Iterator<Item = String> {
    let mut r = BufReader::new(r);
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                Some(String::from_utf8_lossy(&buf).into_owned())
            }
        }
    })
}

/// What each thread of process `pid` is doing, read from `/proc` before a
/// hung agent is killed: its name, its state (R running, S sleeping, D in
/// an uninterruptible wait), the kernel function it waits in, its CPU
/// ticks (user, system) and, where readable (root), its kernel stack.
/// Enough to tell a spinning task from one waiting on a future that never
/// wakes, or one blocked in a system call.
fn threads(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "  (gone)".to_string();
    };
    let mut out = String::new();
    for task in tasks.flatten() {
        let dir = task.path();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let stat = read("stat");
        // Fields after the parenthesised name: state is the first, utime
        // and stime the 12th and 13th.
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        let field = |i: usize| rest.get(i).copied().unwrap_or("?");
        out.push_str(&format!(
            "  tid {} {:?}: state {} wchan {} utime {} stime {}\n",
            task.file_name().to_string_lossy(),
            read("comm").trim(),
            field(0),
            read("wchan").trim(),
            field(11),
            field(12),
        ));
        for frame in read("stack").lines().take(8) {
            out.push_str(&format!("      {frame}\n"));
        }
    }
    out
}
