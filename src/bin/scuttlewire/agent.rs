//! `scuttlewire agent`: start one node, print what happens, leave on a
//! signal or a `leave` command.
//!
//! The order matters: signal handlers are installed before the node starts
//! (a SIGTERM during start-up must still end in a graceful leave, not the
//! default kill), the control socket is bound before the node starts too
//! (and serves once it has), the event stream is subscribed right after
//! `start` (the earliest moment a handle exists), and the `started` line is
//! printed before any event line so readers can rely on it coming first.

// The agent's periodic report ticks on the runtime's clock.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use scuttlewire::identity::{CaTrust, Identity, IdentityError, Trust, TrustOnFirstUse};
use scuttlewire::transport::{EncryptionConfig, Quic, QuicConfig};
use scuttlewire::{Node, NodeError};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::{Interval, MissedTickBehavior};

use crate::Failure;
use crate::commands::Operator;
use crate::control::{self, Control};
use crate::framing::LineWriter;
use crate::keyfile::KeyFile;
use crate::logging;
use crate::options::{AgentArgs, IdentityFlags, Security};
use crate::output::{self, Output};
use crate::prometheus;
use crate::socket_path;

/// Runs the agent until SIGINT, SIGTERM or a `leave` command; returns once
/// the node has left.
pub async fn run(args: AgentArgs) -> Result<(), Failure> {
    logging::init(args.log.clone());
    let mut signals = Signals::install()?;
    if let Some(addr) = args.metrics_addr {
        prometheus::serve(addr)?;
    }
    let out = Output { json: args.json };
    // Bound before the node starts: an agent that cannot have its socket
    // (another agent runs there) never joins the cluster.
    let socket = socket_path::resolve(args.control.as_ref())
        .map(|path| control::bind(&path))
        .transpose()?;
    let (node, transport, key_file) = start(&args).await?;
    let mut control = socket.map(|s| s.serve(Operator::new(node.clone(), key_file)));
    let mut events = node.events();
    out.print(&output::started(node.local_id(), transport, &args.cluster));
    let mut reports = args.report_every().map(report_ticker);

    let stop = loop {
        tokio::select! {
            name = signals.next() => break Stop::Signal(name),
            writer = leave_requested(&mut control) => break Stop::Command(writer),
            event = events.next() => match event {
                Some(item) => out.print(&output::stream_item(&item)),
                // The driver stopped by itself (its transport closed):
                // there is nobody left to tell.
                None => return Err(Failure::runtime("the node stopped unexpectedly (transport closed)")),
            },
            () = next_tick(&mut reports) => match report(&node).await {
                Ok(line) => out.print(&line),
                Err(e) => return Err(Failure::runtime(format!("report: {e}"))),
            },
        }
    };

    // A SIGTERM and a `leave` command take the same path; `leave` commands
    // that came meanwhile are answered with the first one.
    let (reason, mut waiting) = match stop {
        Stop::Signal(name) => (name, Vec::new()),
        Stop::Command(writer) => ("leave command", vec![writer]),
    };
    if let Some(control) = control.as_mut() {
        waiting.extend(control.close_leaves().await);
    }
    tracing::info!(reason, "leaving the cluster");
    out.print(&output::leaving());
    let left = match node.leave().await {
        Ok(told) => Ok(told),
        // Already stopped: nothing was sent, and nothing is left to do.
        Err(NodeError::Closed) => Ok(0),
        Err(e) => Err(e.to_string()),
    };
    if let Ok(told) = left {
        out.print(&output::stopped(told));
    }
    for writer in waiting {
        control::answer_leave(writer, left.clone()).await;
    }
    // Stops serving and removes the socket file.
    drop(control);
    left.map(drop)
        .map_err(|e| Failure::runtime(format!("leave: {e}")))
}

/// Why the agent stops.
enum Stop {
    /// SIGINT or SIGTERM.
    Signal(&'static str),
    /// A `leave` request on the control socket, answered once the node left.
    Command(LineWriter),
}

/// The next `leave` request, or never without a control socket.
async fn leave_requested(control: &mut Option<Control>) -> LineWriter {
    match control {
        Some(control) => control.leave_requested().await,
        None => std::future::pending().await,
    }
}

/// Starts the node the flags describe; returns it with the transport's name
/// for the `started` line, and the key file when it encrypts.
async fn start(args: &AgentArgs) -> Result<(Node, &'static str, Option<KeyFile>), Failure> {
    let security = args.security()?;
    let identity = args.identity()?;
    let mut config = args.config();
    config.signatures = args.signatures;
    let mut builder = Node::builder(config).seed_hosts(args.seed_hosts());
    if let Some(flags) = identity {
        let (identity, trust) = load_identity(&flags)?;
        builder = builder.identity(identity, trust);
    }
    if let Some(addr) = args.advertise_addr()? {
        builder = builder.advertise(addr);
    }
    if let Some(discovery) = args.discovery()? {
        builder = builder.discovery(discovery);
    }
    for (key, value) in args.state_items() {
        builder = builder.initial_state(key, value);
    }
    let bind = args.bind;
    let mut keys = None;
    let started = match security {
        Security::Plain => (builder.start_udp(bind).await, "udp"),
        Security::Encrypted { key_file, cipher } => {
            let (file, keyring) =
                KeyFile::load(&key_file).map_err(|e| Failure::flag("--key-file", e))?;
            keys = Some(file);
            let encryption = EncryptionConfig {
                cipher,
                ..EncryptionConfig::default()
            };
            let node = builder.start_encrypted_udp(bind, keyring, encryption).await;
            (node, "encrypted-udp")
        }
        Security::Quic { ca, cert, key } => {
            let mut tls = QuicConfig::from_pem_files(&ca, &cert, &key)
                .map_err(|e| Failure::flag("--quic-ca/--quic-cert/--quic-key", e))?;
            // Bind every packet's sender name to its connection's
            // certificate whenever ours names us, as the peers' will.
            let name = args.node_name();
            if tls.certificate_names(&name) {
                tls.node_name = Some(name);
            } else {
                tracing::warn!(
                    name = %name,
                    "the QUIC certificate does not carry --name: packets are not bound to node names"
                );
            }
            let quic = Quic::bind(bind, tls)
                .await
                .map_err(|e| Failure::runtime(format!("QUIC on --bind {bind}: {e}")))?;
            (builder.start(quic).await, "quic")
        }
    };
    match started {
        (Ok(node), transport) => Ok((node, transport, keys)),
        (Err(e), _) => Err(start_failure(e, bind)),
    }
}

/// Loads (or, uncertified and absent, creates) the identity key, its
/// certificate and the trust the flags name.
fn load_identity(flags: &IdentityFlags) -> Result<(Identity, Arc<dyn Trust>), Failure> {
    let identity = if flags.cert.is_none() && !flags.key.exists() {
        let identity = Identity::generate().map_err(Failure::runtime)?;
        write_secret(&flags.key, identity.pkcs8_pem().as_bytes()).map_err(|e| {
            Failure::flag("--identity-key", format!("{}: {e}", flags.key.display()))
        })?;
        tracing::info!(path = %flags.key.display(), "wrote a new identity key");
        identity
    } else {
        Identity::load(&flags.key, flags.cert.as_deref()).map_err(|e| {
            let flag = match e {
                IdentityError::Certificate(_) => "--identity-cert",
                _ => "--identity-key",
            };
            Failure::flag(flag, e)
        })?
    };
    let trust: Arc<dyn Trust> = match &flags.ca {
        Some(ca) => Arc::new(CaTrust::load(ca).map_err(|e| Failure::flag("--identity-ca", e))?),
        None => {
            tracing::warn!(
                "signed state without a CA: members' keys are trusted on first use (see docs/SECURITY.md)"
            );
            Arc::new(TrustOnFirstUse::new())
        }
    };
    Ok((identity, trust))
}

/// Writes `contents` to a new file readable by its owner only.
fn write_secret(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    std::io::Write::write_all(&mut options.open(path)?, contents)
}

/// Names the flag behind a refused start where the error alone does not.
fn start_failure(e: NodeError, bind: SocketAddr) -> Failure {
    match e {
        // Names the config field itself (e.g. `advertise`, `cluster`).
        NodeError::Config(e) => Failure::runtime(e),
        NodeError::Set(e) => Failure::flag("--state", e),
        NodeError::Transport(e) => Failure::runtime(format!("--bind {bind}: {e}")),
        other => Failure::runtime(other),
    }
}

/// The `report` line: members and counters, read from the node.
async fn report(node: &Node) -> Result<output::Line, NodeError> {
    let members = node.members().await?;
    let metrics = node.metrics().await?;
    Ok(output::report(members, &metrics))
}

/// Ticks every `period`, the first time one period after start (the
/// cluster has had time to say something); a slow report delays the next
/// one instead of bunching them up.
fn report_ticker(period: Duration) -> Interval {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// The next report tick, or never when reports are off.
async fn next_tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// SIGINT and SIGTERM, registered up front (`ctrl_c()` would register only
/// when first polled, after the node started).
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn install() -> Result<Signals, Failure> {
        let install = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| Failure::runtime(format!("cannot handle {name}: {e}")))
        };
        Ok(Signals {
            interrupt: install(SignalKind::interrupt(), "SIGINT")?,
            terminate: install(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
