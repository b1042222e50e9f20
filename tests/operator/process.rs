//! Real `scuttlewire` processes for the operator tests: agents that run
//! until killed (each with its control socket in the test's scratch
//! directory), and client commands that run to completion.
//!
//! Every child's stdout and stderr are read by threads as they arrive (a
//! full pipe must never stall a child), `SCUTTLEWIRE_*` variables of the
//! test's own environment are not passed on (only what a test says
//! configures a child), and `Drop` SIGKILLs whatever still runs, so a
//! failing test leaves nothing behind.

use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_scuttlewire");

/// Bound for anything the cluster should do (converge, spread a change).
pub const WAIT: Duration = Duration::from_secs(20);

/// A scratch directory for one test, named after the test and this
/// process's pid, removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("sw-op-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `scuttlewire` command line with a clean environment.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SCUTTLEWIRE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// A child whose output is collected line by line.
pub struct Process {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

fn collect(pipe: impl Read + Send + 'static, into: &Arc<Mutex<Vec<String>>>) -> JoinHandle<()> {
    let into = Arc::clone(into);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            into.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
        }
    })
}

impl Process {
    pub fn spawn(mut cmd: Command) -> Process {
        let mut child = cmd.spawn().expect("spawn scuttlewire");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(collect(out, &stdout));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(collect(err, &stderr));
        }
        Process {
            child,
            stdout,
            stderr,
            readers,
            status: None,
        }
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn stderr(&self) -> String {
        let lines = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        lines.join("\n")
    }

    /// The exit status, waiting at most `within`; `None` if still running.
    pub fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while self.status.is_none() && Instant::now() < deadline {
            self.status = self.child.try_wait().ok().flatten();
            if self.status.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if self.status.is_some() {
            // The pipes close with the process: let the readers finish.
            for reader in self.readers.drain(..) {
                let _ = reader.join();
            }
        }
        self.status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running agent.
pub struct Agent {
    pub name: String,
    /// Its gossip address, from the `started` line.
    pub addr: String,
    pub control: PathBuf,
    pub process: Process,
}

impl Agent {
    /// Starts agent `name` with its socket at `<scratch>/<name>.sock`,
    /// seeded by `seed`, and waits for its `started` line.
    pub fn start(scratch: &Scratch, name: &str, seed: Option<&Agent>, extra: &[&str]) -> Agent {
        let control = scratch.path(&format!("{name}.sock"));
        let control_text = control.to_string_lossy().into_owned();
        let mut args = vec!["agent", "--name", name, "--bind", "127.0.0.1:0"];
        args.extend(["--preset", "local", "--json", "--control", &control_text]);
        if let Some(seed) = seed {
            args.extend(["--seeds", seed.addr.as_str()]);
        }
        args.extend(extra);
        let process = Process::spawn(command(&args, &[]));
        let deadline = Instant::now() + Duration::from_secs(15);
        let addr = loop {
            let started = process.stdout().iter().find_map(|line| {
                let json: Value = serde_json::from_str(line).ok()?;
                (json["event"] == "started").then(|| json["addr"].as_str().map(str::to_owned))?
            });
            if let Some(addr) = started {
                break addr;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not start: {}",
                process.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Agent {
            name: name.to_owned(),
            addr,
            control,
            process,
        }
    }

    /// Runs a client command against this agent.
    pub fn run(&self, args: &[&str]) -> Run {
        client(&self.control, args)
    }

    /// `members --json`: name → status.
    pub fn statuses(&self) -> Vec<(String, String)> {
        let run = self.run(&["members", "--json"]);
        let Ok(Value::Array(members)) = serde_json::from_str::<Value>(&run.stdout) else {
            return Vec::new();
        };
        let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
        members
            .iter()
            .map(|m| (text(&m["name"]), text(&m["status"])))
            .collect()
    }

    /// Whether this agent sees exactly `names` as alive members.
    pub fn sees_alive(&self, names: &[&str]) -> bool {
        let statuses = self.statuses();
        statuses.len() == names.len()
            && names
                .iter()
                .all(|n| statuses.iter().any(|(name, s)| name == n && s == "alive"))
    }

    /// `keys list --json`.
    pub fn keys(&self) -> Value {
        self.run(&["keys", "list", "--json"]).ok().json()
    }
}

/// A finished client command.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    what: String,
}

impl Run {
    /// Asserts exit 0 and returns self.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "{} failed:\n{}", self.what, self.stderr);
        self
    }

    /// Asserts exit 1 with exactly one `error: ` line on stderr, and
    /// returns that line.
    #[track_caller]
    pub fn refused(self) -> String {
        assert_eq!(
            self.code,
            Some(1),
            "{}: expected exit 1\n{}",
            self.what,
            self.stdout
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}: stderr {:?}", self.what, self.stderr);
        assert!(lines[0].starts_with("error: "), "{}", lines[0]);
        lines[0].to_owned()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.what, self.stdout))
    }
}

/// Runs `scuttlewire <args> --control <control>` to completion (killed after
/// 30 s), with `stdin` as its input.
pub fn client_with_input(control: &Path, args: &[&str], stdin: &str) -> Run {
    let control = control.to_string_lossy().into_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--control", control.as_str()]);
    let mut cmd = command(&all, &[]);
    cmd.stdin(Stdio::piped());
    let mut process = Process::spawn(cmd);
    if let Some(mut input) = process.child.stdin.take() {
        use std::io::Write as _;
        let _ = input.write_all(stdin.as_bytes());
    }
    let status = process.wait(Duration::from_secs(30));
    Run {
        code: status.and_then(|s| s.code()),
        stdout: process.stdout().join("\n"),
        stderr: process.stderr(),
        what: format!("scuttlewire {}", all.join(" ")),
    }
}

/// Runs `scuttlewire <args> --control <control>` to completion.
pub fn client(control: &Path, args: &[&str]) -> Run {
    client_with_input(control, args, "")
}

/// Waits until `check` holds, polling; panics naming `what` after [`WAIT`].
#[track_caller]
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
