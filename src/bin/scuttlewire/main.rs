//! `scuttlewire`: the command-line agent of the scuttlewire gossip library.
//!
//! `scuttlewire agent` runs one cluster member until SIGINT or SIGTERM and
//! prints what it sees (joins, status changes, state, periodic reports) on
//! stdout, one line per event, readable or JSON. `scuttlewire keygen` prints
//! a fresh cluster key for `--key-file`. The operator commands (`members`,
//! `get`, `set`, `delete`, `entries`, `keys`, `leave`, `monitor`,
//! `metrics`) talk to a running agent through its control socket
//! (`docs/OPERATIONS.md`).
//!
//! The binary uses only the library's public API (see
//! `ARCHITECTURE.md`: `src/bin/` may not reach into engine internals).
//!
//! # Layout
//!
//! * `main` — the command line (clap) and the exit codes.
//! * `options` — the agent's flags and environment variables, and the
//!   checks that involve several of them.
//! * `values` — the parsers of single flag values (seeds, state,
//!   advertise, durations).
//! * `agent` — starts the node and runs the event / report / signal loop.
//! * `socket_path` — where the control socket is (`--control`).
//! * `control` — the agent's control socket: binding, connections,
//!   `leave` and `monitor`.
//! * `commands` — what the agent does for each other control request.
//! * `protocol` — the control protocol's requests and answers.
//! * `framing` — lines over a Unix stream, both ways.
//! * `counters` — the node's metrics as named counters (`metrics`).
//! * `keyfile` — `--key-file`: several keys, rewritten after key changes.
//! * `client` — the operator commands.
//! * `connection` — their side of the control socket.
//! * `tables` — their readable output.
//! * `output` — renders events and reports as JSON or readable lines.
//! * `prometheus` — the `--metrics-addr` endpoint.
//! * `logging` — a small stderr subscriber for the library's `tracing`
//!   logs, so the binary needs no logging dependency of its own.

mod agent;
mod client;
mod commands;
mod connection;
mod control;
mod counters;
mod framing;
mod keyfile;
mod logging;
mod options;
mod output;
mod prometheus;
mod protocol;
mod socket_path;
mod tables;
mod values;

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use client::ClientCommand;
use options::AgentArgs;

/// Gossip cluster membership and state (Scuttlebutt + SWIM).
///
/// Every option of `agent`, and `--control` of every command, can also be
/// given as an environment variable (shown as [env: ...]); a flag on the
/// command line wins over the environment.
#[derive(Debug, Parser)]
#[command(name = "scuttlewire", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The commands: `agent`, `keygen`, and the operator commands that talk to
/// a running agent.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run one cluster member until SIGINT or SIGTERM, then leave gracefully.
    ///
    /// Prints one line per event on stdout (member joined, status changed,
    /// key set, ...), readable or JSON (--json), and a report of every
    /// member every --report-interval. Logs go to stderr (--log).
    Agent(Box<AgentArgs>),
    /// Print a fresh random cluster key (base64, 32 bytes) for --key-file.
    ///
    /// Store it readable by the agent's user only, e.g.
    /// `umask 077; scuttlewire keygen > /etc/scuttlewire/cluster.key`, and
    /// give every member the same file.
    Keygen,
    #[command(flatten)]
    Client(ClientCommand),
}

/// Why the binary stops with a non-zero status; printed as one
/// `error: ...` line on stderr.
#[derive(Debug)]
pub struct Failure {
    message: String,
    /// 2 for a bad flag or environment variable (as clap's own errors),
    /// 1 for a failure at run time.
    code: u8,
}

impl Failure {
    /// A bad value of `flag` (e.g. `--bind`); the message says what is wrong.
    pub fn flag(flag: &str, message: impl fmt::Display) -> Failure {
        Failure {
            message: format!("{flag}: {message}"),
            code: 2,
        }
    }

    /// A failure once the flags were accepted (socket, node, signal).
    pub fn runtime(message: impl fmt::Display) -> Failure {
        Failure {
            message: message.to_string(),
            code: 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// How long the process waits at exit for work still on the runtime's
/// blocking threads. A seed's DNS lookup there can outlive its own timeout
/// (the lookup's future is dropped, not the `getaddrinfo` call, which a
/// resolver that never answers holds for `timeout` x `attempts` of
/// resolv.conf): it must not hold an agent that has left.
const EXIT_GRACE: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Agent(args) => agent::run(*args).await,
            Command::Keygen => keygen(),
            Command::Client(command) => client::run(command).await,
        }
    });
    runtime.shutdown_timeout(EXIT_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.code)
        }
    }
}

/// `scuttlewire keygen`: one base64 key on stdout, nothing else, so that
/// `> file` makes a valid `--key-file`.
fn keygen() -> Result<(), Failure> {
    let key = scuttlewire::seal::Key::generate().map_err(Failure::runtime)?;
    println!("{}", key.to_base64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn agent_is_a_subcommand_with_defaults() {
        let cli = Cli::try_parse_from(["scuttlewire", "agent"]).unwrap();
        let Command::Agent(args) = cli.command else {
            panic!("not the agent command");
        };
        assert_eq!(args.bind, "0.0.0.0:7946".parse().unwrap());
        assert_eq!(args.cluster, "scuttlewire");
        assert!(!args.json);
        let cli = Cli::try_parse_from(["scuttlewire", "agent", "--json"]).unwrap();
        let Command::Agent(args) = cli.command else {
            panic!("not the agent command");
        };
        assert!(args.json);
    }

    #[test]
    fn a_bad_flag_value_names_the_flag() {
        let err = Cli::try_parse_from(["scuttlewire", "agent", "--bind", "nope"]).unwrap_err();
        assert!(err.to_string().contains("--bind"), "{err}");
        let err = Cli::try_parse_from(["scuttlewire", "agent", "--preset", "mars"]).unwrap_err();
        assert!(err.to_string().contains("--preset"), "{err}");
    }
}
