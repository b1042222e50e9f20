//! A private L2 network of Linux network namespaces, for running real
//! agent processes as if on separate hosts.
//!
//! Topology: one "switch" namespace holding a bridge `br0`, and one
//! namespace per host holding `lo` and `eth0`, the host end of a veth pair
//! whose other end (`p<i>`) is a port of the bridge. Every interface is
//! created *inside* a namespace this module made (`ip -n <ns> link add eth0
//! type veth peer name p<i> netns <switch>`), so nothing is ever added to,
//! or changed in, the machine's own network namespace, and addresses
//! (`10.231.<subnet>.<i>/24`) exist only inside these namespaces.
//!
//! Every name carries the test process's pid and a per-process counter
//! (`scw<pid>-<n>s`, `scw<pid>-<n>h<i>`, at most 15 characters), so two
//! runs or two nets never collide. [`Net`]'s `Drop` kills whatever still
//! runs inside its namespaces and deletes them (which destroys the veth
//! pairs and the bridge with them) and their `/etc/netns/<ns>/` files, on
//! every exit path including a panic. A run killed with SIGKILL cannot run
//! `Drop`; the next [`Net::new`] sweeps namespaces of this naming scheme
//! whose pid is no longer alive.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Prefix of every namespace this module makes; see [`parse_name`].
const PREFIX: &str = "scw";

/// Marker file in a net's scratch directory: this net made `/etc/netns`.
const MADE_ETC_NETNS: &str = "made-etc-netns";

/// Distinguishes the nets of one process.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Why this machine cannot run the test (not root, no `ip`, or no
/// permission to make namespaces), or `None` if it can.
pub fn skip_reason() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("network namespaces need Linux".into());
    }
    match effective_uid() {
        Some(0) => {}
        Some(uid) => {
            return Some(format!(
                "needs root to make network namespaces (euid {uid})"
            ));
        }
        None => return Some("cannot read the effective uid from /proc/self/status".into()),
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Some(format!(
                "`ip -V` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Err(e) => return Some(format!("iproute2 `ip` not runnable: {e}")),
    }
    // Root without CAP_SYS_ADMIN (e.g. an unprivileged container) cannot
    // make namespaces: find out with a throwaway one.
    let probe = format!("{PREFIX}{}-p", std::process::id());
    if let Err(e) = ip(&["netns", "add", &probe]) {
        return Some(format!("cannot make a network namespace: {e}"));
    }
    let _ = ip(&["netns", "del", &probe]);
    None
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // "Uid:\treal\teffective\tsaved\tfs"
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Runs `ip <args>`; the error names the command and quotes its stderr.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One simulated host: a namespace with one address on `eth0`.
#[derive(Debug, Clone)]
pub struct Host {
    /// The network namespace (`ip netns exec <ns> ...`).
    pub ns: String,
    /// Its host name, resolvable in every namespace of the net through
    /// `/etc/netns/<ns>/hosts` (`node-1`, `node-2`, ...).
    pub name: String,
    /// Its only address besides loopback.
    pub ip: Ipv4Addr,
    /// The bridge port (in the switch namespace) its cable plugs into.
    port: String,
}

/// A switch namespace with a bridge, and hosts plugged into it. Owns
/// everything it made and removes it in `Drop`.
pub struct Net {
    /// The namespace holding the bridge.
    switch: Option<String>,
    pub hosts: Vec<Host>,
    /// Every namespace made so far, in order, for `Drop`.
    namespaces: Vec<String>,
    /// `/etc/netns/<ns>` directories made so far, for `Drop`.
    etc_dirs: Vec<PathBuf>,
    /// A private directory for files the test hands its agents (keys).
    scratch: PathBuf,
    /// Whether this net made `/etc/netns` (then `Drop` removes it if empty).
    made_etc_netns: bool,
}

impl Net {
    /// Makes a net of `hosts` hosts named `node-1..`, with addresses
    /// `10.231.<subnet>.1..` (subnet chosen per run: only ever visible
    /// inside these namespaces anyway). Panics with the failing `ip`
    /// command if any step fails; what was made so far is removed.
    pub fn new(hosts: usize) -> Net {
        assert!(
            (1..=9).contains(&hosts),
            "1..=9 hosts (names stay within 15 characters)"
        );
        sweep_stale();
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let subnet = ((pid + n) % 250 + 1) as u8;
        let scratch = std::env::temp_dir().join(format!("scuttlewire-multihost-{pid}-{n}"));
        let mut net = Net {
            switch: None,
            hosts: Vec::new(),
            namespaces: Vec::new(),
            etc_dirs: Vec::new(),
            scratch,
            made_etc_netns: !Path::new("/etc/netns").exists(),
        };
        if let Err(e) = net.build(pid, n, subnet, hosts) {
            panic!("setting up the namespaces failed: {e}");
        }
        net
    }

    fn build(&mut self, pid: u32, n: u32, subnet: u8, hosts: usize) -> Result<(), String> {
        std::fs::create_dir_all(&self.scratch)
            .map_err(|e| format!("{}: {e}", self.scratch.display()))?;
        if self.made_etc_netns {
            // Tells a later sweep (should this process die without `Drop`)
            // that /etc/netns was this run's to remove.
            let marker = self.scratch.join(MADE_ETC_NETNS);
            std::fs::write(&marker, b"").map_err(|e| format!("{}: {e}", marker.display()))?;
        }
        let switch = format!("{PREFIX}{pid}-{n}s");
        debug_assert!(switch.len() <= 15);
        self.add_ns(&switch)?;
        self.switch = Some(switch.clone());
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for i in 1..=hosts {
            let ns = format!("{PREFIX}{pid}-{n}h{i}");
            debug_assert!(ns.len() <= 15);
            let port = format!("p{i}");
            let addr = Ipv4Addr::new(10, 231, subnet, i as u8);
            self.add_ns(&ns)?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &switch,
            ])?;
            ip(&["-n", &switch, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &switch, "link", "set", &port, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            self.hosts.push(Host {
                ns,
                name: format!("node-{i}"),
                ip: addr,
                port,
            });
        }
        // Every host resolves every other by name (`ip netns exec` bind-mounts
        // /etc/netns/<ns>/hosts over /etc/hosts).
        let mut hosts_file = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for h in &self.hosts {
            let _ = writeln!(hosts_file, "{} {}", h.ip, h.name);
        }
        for h in self.hosts.clone() {
            let dir = Path::new("/etc/netns").join(&h.ns);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            self.etc_dirs.push(dir.clone());
            std::fs::write(dir.join("hosts"), &hosts_file)
                .map_err(|e| format!("{}/hosts: {e}", dir.display()))?;
        }
        Ok(())
    }

    fn add_ns(&mut self, ns: &str) -> Result<(), String> {
        ip(&["netns", "add", ns])?;
        self.namespaces.push(ns.to_string());
        Ok(())
    }

    /// Host `i`, counting from 1 as the names do.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i - 1]
    }

    /// A directory removed with the net, for files given to agents.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// Points host `i`'s resolver (`/etc/netns/<ns>/resolv.conf`, which
    /// `ip netns exec` mounts over `/etc/resolv.conf`) at `nameserver` with
    /// resolv.conf's `options` line `options`. Removed with the net.
    pub fn set_resolver(&self, i: usize, nameserver: Ipv4Addr, options: &str) {
        let dir = Path::new("/etc/netns").join(&self.host(i).ns);
        let file = dir.join("resolv.conf");
        std::fs::write(
            &file,
            format!("nameserver {nameserver}\noptions {options}\n"),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }

    /// Unplugs (`false`) or replugs (`true`) host `i`'s cable: its bridge
    /// port goes down, so its `eth0` loses carrier and no frame passes
    /// either way, as when a cable or switch port fails.
    pub fn set_link(&self, i: usize, up: bool) {
        let switch = self.switch.as_deref().expect("switch namespace");
        let state = if up { "up" } else { "down" };
        ip(&["-n", switch, "link", "set", &self.host(i).port, state])
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Processes still inside would keep a namespace (and its veth)
        // alive after `ip netns del`: kill them first. Agents kill their own
        // children in their `Drop`; this catches anything else.
        for ns in &self.namespaces {
            kill_all_in(ns);
        }
        // Hosts first, then the switch: deleting a host namespace destroys
        // its veth pair, deleting the switch destroys the bridge.
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("multihost cleanup: {e}");
            }
        }
        for dir in &self.etc_dirs {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                eprintln!("multihost cleanup: {}: {e}", dir.display());
            }
        }
        if self.made_etc_netns {
            let _ = std::fs::remove_dir("/etc/netns"); // fails (harmlessly) unless empty
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// SIGKILLs every process in `ns` and waits (up to 5 s) until none is left.
fn kill_all_in(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids: Vec<String> = ip(&["netns", "pids", ns])
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if pids.is_empty() || Instant::now() >= deadline {
            if !pids.is_empty() {
                eprintln!("multihost cleanup: processes {pids:?} still in {ns}");
            }
            return;
        }
        let _ = Command::new("kill").arg("-KILL").args(&pids).output();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pid in a namespace name of this module's scheme (`scw<pid>-<n>s`,
/// `scw<pid>-<n>h<i>`, `scw<pid>-p`), or `None` for any other name.
fn parse_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, tail) = rest.split_once('-')?;
    let role_ok = tail == "p"
        || tail
            .strip_suffix('s')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        || tail.split_once('h').is_some_and(|(n, i)| {
            !n.is_empty()
                && !i.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && i.bytes().all(|b| b.is_ascii_digit())
        });
    if role_ok { pid.parse().ok() } else { None }
}

/// Whether `pid` is gone, so what it named after itself may be removed.
fn is_dead(pid: u32) -> bool {
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes what an earlier run of this test left when it was killed before
/// its `Drop` ran (SIGKILL, Ctrl-C): namespaces of this module's naming
/// scheme whose pid is no longer a live process (killing anything still in
/// them), their `/etc/netns/<ns>` files, its scratch directories, and
/// `/etc/netns` itself if that run had made it and it is now empty.
fn sweep_stale() {
    if let Ok(list) = ip(&["netns", "list"]) {
        for line in list.lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let Some(pid) = parse_name(name).filter(|&pid| is_dead(pid)) else {
                continue;
            };
            eprintln!("multihost: removing namespace {name} left by dead test process {pid}");
            kill_all_in(name);
            let _ = ip(&["netns", "del", name]);
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(name));
        }
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix("scuttlewire-multihost-"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
            .filter(|&pid| is_dead(pid))
        else {
            continue;
        };
        let dir = entry.path();
        eprintln!(
            "multihost: removing {} left by dead test process {pid}",
            dir.display()
        );
        if dir.join(MADE_ETC_NETNS).exists() {
            let _ = std::fs::remove_dir("/etc/netns"); // fails (harmlessly) unless empty
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn names_of_this_scheme_parse() {
    assert_eq!(parse_name("scw4194304-12s"), Some(4194304));
    assert_eq!(parse_name("scw77-0h3"), Some(77));
    assert_eq!(parse_name("scw77-p"), Some(77));
    assert_eq!(parse_name("scw77-0x"), None);
    assert_eq!(parse_name("scw-0h1"), None);
    assert_eq!(parse_name("docker-ns"), None);
    assert!("scw4194304-99h9".len() <= 15);
}
