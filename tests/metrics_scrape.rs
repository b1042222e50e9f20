//! The agent's Prometheus endpoint, end to end: two `scuttlewire agent`
//! processes on loopback, each with `--metrics-addr`, scraped with a plain
//! HTTP/1.1 request and read with a small parser of the text exposition
//! format. Checks what `docs/METRICS.md` promises: the names with their
//! HELP and TYPE lines, the member gauge, counters that grow, the probe
//! round-trip histogram; and that a port already taken stops the agent
//! with an error naming `--metrics-addr`.

// Tests drive real nodes in real time: deadlines and timings read the clock.
#![allow(clippy::disallowed_methods)]
#![cfg(feature = "agent")]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The agent binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_scuttlewire");

/// Bound for an agent to start, or a two-node cluster to form.
const PATIENCE: Duration = Duration::from_secs(20);

/// A running agent, killed when dropped.
struct Agent {
    child: Child,
    lines: mpsc::Receiver<String>,
    metrics: SocketAddr,
}

impl Agent {
    /// Starts agent `name` on a free loopback port, serving metrics on
    /// another, seeded with `seed` if given; returns once it printed its
    /// `started` line, with the address it gave there.
    fn start(name: &str, seed: Option<&str>) -> (Agent, String) {
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(BIN);
        cmd.args(["agent", "--name", name, "--bind", "127.0.0.1:0"])
            .args(["--preset", "local", "--json", "--log", "warn"])
            .args(["--metrics-addr", &metrics.to_string()])
            .env_clear()
            // Agents of one user share the default control socket path.
            .env("SCUTTLEWIRE_CONTROL", "none")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(seed) = seed {
            cmd.args(["--seeds", seed]);
        }
        let mut child = cmd.spawn().expect("the agent binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let agent = Agent {
            child,
            lines,
            metrics,
        };
        let started = agent.next_line(PATIENCE);
        let v: Value = serde_json::from_str(&started).expect("a JSON line");
        assert_eq!(v["event"], "started", "{started}");
        let addr = v["addr"].as_str().expect("an addr").to_owned();
        (agent, addr)
    }

    fn next_line(&self, wait: Duration) -> String {
        self.lines
            .recv_timeout(wait)
            .expect("the agent prints a line in time")
    }

    fn scrape(&self) -> Scrape {
        scrape(self.metrics)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (bound, read, released).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("bound").port()
}

/// One parsed response of the endpoint.
struct Scrape {
    /// `# HELP` text by metric name.
    help: HashMap<String, String>,
    /// `# TYPE` by metric name.
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Scrape {
    /// The value of the one sample named `name` whose labels include
    /// every pair of `labels`; `None` if there is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.samples.iter().filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        });
        let first = found.next()?;
        assert!(
            found.next().is_none(),
            "several {name} samples match {labels:?}"
        );
        Some(first.value)
    }
}

/// `GET /metrics` over a fresh connection; checks the status and the
/// content type, and parses the body.
fn scrape(addr: SocketAddr) -> Scrape {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8(response).expect("a UTF-8 response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("headers end with an empty line");
    let mut head = head.split("\r\n");
    let status = head.next().unwrap_or_default();
    assert!(status.starts_with("HTTP/1.1 200"), "status line: {status}");
    let headers: HashMap<String, String> = head
        .filter_map(|h| h.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let content_type = headers.get("content-type").map_or("", String::as_str);
    assert!(
        content_type.starts_with("text/plain"),
        "content type: {content_type:?}"
    );
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    parse(&body)
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// Parses the text exposition format: `# HELP name text`, `# TYPE name
/// type`, and `name{label="value",...} value` samples.
fn parse(body: &str) -> Scrape {
    let mut scrape = Scrape {
        help: HashMap::new(),
        types: HashMap::new(),
        samples: Vec::new(),
    };
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            scrape.help.insert(name.to_owned(), text.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            scrape.types.insert(name.to_owned(), kind.to_owned());
        } else if line.starts_with('#') {
            continue;
        } else {
            scrape.samples.push(parse_sample(line));
        }
    }
    scrape
}

fn parse_sample(line: &str) -> Sample {
    let (name, labels, rest) = match line.find(['{', ' ']) {
        Some(i) if line[i..].starts_with('{') => {
            let (labels, rest) = parse_labels(&line[i + 1..], line);
            (&line[..i], labels, rest)
        }
        Some(i) => (&line[..i], BTreeMap::new(), &line[i..]),
        None => panic!("a sample without a value: {line}"),
    };
    // A timestamp may follow the value.
    let value = rest.split_whitespace().next().unwrap_or_default();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("a bad value in {line}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// `k="v",...}` and what follows the closing brace.
fn parse_labels<'a>(mut s: &'a str, line: &str) -> (BTreeMap<String, String>, &'a str) {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return (labels, rest);
        }
        let (key, rest) = s
            .split_once("=\"")
            .unwrap_or_else(|| panic!("a bad label in {line}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("an unterminated label in {line}"),
                },
                Some((_, c)) => value.push(c),
                None => panic!("an unterminated label in {line}"),
            }
        };
        labels.insert(key.to_owned(), value);
        s = &rest[end + 1..];
    }
}

/// Scrapes `agent` until `ready` holds, or panics with what it last saw.
fn scrape_until(agent: &Agent, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let s = agent.scrape();
        if ready(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {PATIENCE:?}; last samples: {:?}",
            s.samples
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The metrics the docs promise on every node, with their Prometheus type.
const DOCUMENTED: &[(&str, &str)] = &[
    ("scuttlewire_packets_total", "counter"),
    ("scuttlewire_bytes_total", "counter"),
    ("scuttlewire_messages_total", "counter"),
    ("scuttlewire_dropped_packets_total", "counter"),
    ("scuttlewire_transport_errors_total", "counter"),
    ("scuttlewire_gossip_rounds_total", "counter"),
    ("scuttlewire_suspicions_total", "counter"),
    ("scuttlewire_refutations_total", "counter"),
    ("scuttlewire_deaths_total", "counter"),
    ("scuttlewire_removals_total", "counter"),
    ("scuttlewire_reconnects_total", "counter"),
    ("scuttlewire_push_retries_total", "counter"),
    ("scuttlewire_admission_refused_total", "counter"),
    ("scuttlewire_members", "gauge"),
    ("scuttlewire_queued_rumors", "gauge"),
    ("scuttlewire_largest_packet_bytes", "gauge"),
    ("scuttlewire_probe_rtt_seconds", "histogram"),
];

#[test]
fn two_agents_serve_their_metrics_for_prometheus() {
    let (a, a_addr) = Agent::start("a", None);
    let (b, _) = Agent::start("b", Some(&a_addr));

    let alive = |node: &'static str| {
        move |s: &Scrape| {
            s.value(
                "scuttlewire_members",
                &[("node", node), ("status", "alive")],
            ) == Some(2.0)
                && s.value("scuttlewire_probe_rtt_seconds_count", &[("node", node)])
                    .is_some_and(|n| n > 0.0)
        }
    };
    let first = scrape_until(
        &a,
        "a sees two alive members and a probe answered",
        alive("a"),
    );
    scrape_until(
        &b,
        "b sees two alive members and a probe answered",
        alive("b"),
    );

    for (name, kind) in DOCUMENTED {
        assert_eq!(
            first.types.get(*name).map(String::as_str),
            Some(*kind),
            "TYPE of {name}"
        );
        assert!(
            first.help.get(*name).is_some_and(|h| !h.is_empty()),
            "HELP of {name}"
        );
    }
    for s in &first.samples {
        assert_eq!(s.labels.get("node").map(String::as_str), Some("a"), "{s:?}");
    }
    for status in ["suspect", "dead", "left"] {
        let n = first.value("scuttlewire_members", &[("status", status)]);
        assert_eq!(n, Some(0.0), "{status} members");
    }
    let buckets = first
        .samples
        .iter()
        .filter(|s| s.name == "scuttlewire_probe_rtt_seconds_bucket")
        .count();
    assert!(buckets > 1, "the round trips render as a histogram");
    let all = first.value("scuttlewire_probe_rtt_seconds_bucket", &[("le", "+Inf")]);
    assert_eq!(
        all,
        first.value("scuttlewire_probe_rtt_seconds_count", &[]),
        "the +Inf bucket holds every sample"
    );

    let received = |s: &Scrape| {
        s.value("scuttlewire_packets_total", &[("direction", "received")])
            .expect("received packets")
    };
    // Probes run every 200 ms with the local preset; counters are
    // reported every second.
    std::thread::sleep(Duration::from_secs(3));
    let second = a.scrape();
    assert!(
        received(&second) > received(&first),
        "{} then {}",
        received(&first),
        received(&second)
    );
    let probes = |s: &Scrape| {
        s.value(
            "scuttlewire_messages_total",
            &[("direction", "received"), ("kind", "ping_ack")],
        )
        .expect("received ping acks")
    };
    assert!(probes(&second) > probes(&first));
    drop(b);
}

/// Two library nodes in this process, on encrypted UDP, with a recorder
/// installed by hand (the only global recorder of this test binary): each
/// reports under its own `node` label, seal counters included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_in_one_process_report_under_their_own_names() {
    use scuttlewire::seal::{Key, Keyring};
    use scuttlewire::transport::EncryptionConfig;
    use scuttlewire::{Config, Node};

    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.01, 0.1, 1.0])
        .expect("buckets")
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("no other recorder in this test binary");

    let key = Key::generate().unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let start = |name: &str, seeds: Vec<SocketAddr>| {
        Node::builder(Config::local().with_name(name))
            .seeds(seeds)
            .start_encrypted_udp(any, Keyring::new(key.clone()), EncryptionConfig::default())
    };
    let a = start("a", vec![]).await.unwrap();
    let b = start("b", vec![a.local_id().addr]).await.unwrap();

    let deadline = Instant::now() + PATIENCE;
    let s = loop {
        let s = parse(&handle.render());
        let ready = ["a", "b"].iter().all(|node| {
            s.value(
                "scuttlewire_members",
                &[("node", node), ("status", "alive")],
            ) == Some(2.0)
                && s.value("scuttlewire_probe_rtt_seconds_count", &[("node", node)])
                    .is_some_and(|n| n > 0.0)
        });
        if ready {
            break s;
        }
        assert!(Instant::now() < deadline, "{:?}", s.samples);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for node in ["a", "b"] {
        let sealed = s.value(
            "scuttlewire_sealed_packets_total",
            &[("node", node), ("direction", "sent")],
        );
        assert!(sealed.is_some_and(|n| n > 0.0), "{node}: {sealed:?}");
    }
    assert!(s.help.contains_key("scuttlewire_sealed_packets_total"));

    // A final report at shutdown: what b sent is all counted.
    let sent = b.metrics().await.unwrap().engine.packets_sent;
    b.shutdown().await;
    let s = parse(&handle.render());
    let reported = s.value(
        "scuttlewire_packets_total",
        &[("node", "b"), ("direction", "sent")],
    );
    assert!(
        reported.is_some_and(|n| n >= sent as f64),
        "{reported:?} < {sent}"
    );
    a.shutdown().await;
}

#[test]
fn a_metrics_port_already_taken_stops_the_agent_naming_the_flag() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("bound");
    let out = Command::new(BIN)
        .args([
            "agent",
            "--name",
            "x",
            "--bind",
            "127.0.0.1:0",
            "--preset",
            "local",
        ])
        .args(["--metrics-addr", &addr.to_string()])
        .env_clear()
        .env("SCUTTLEWIRE_CONTROL", "none")
        .stdin(Stdio::null())
        .output()
        .expect("the agent binary runs");
    assert!(!out.status.success(), "{:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--metrics-addr"), "{stderr}");
    assert!(out.stdout.is_empty(), "no node started: {:?}", out.stdout);
}
