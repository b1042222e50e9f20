//! The operator commands (`members`, `get`, `set`, `keys`, `monitor`, ...):
//! each connects to a running agent's control socket, sends one request,
//! prints the answer, readable or `--json`, and exits.
//!
//! Exit status 0 when the agent did what was asked; 1 with one `error:`
//! line on stderr when it refused, when `get` finds nothing, or when there
//! is no agent at the socket (nothing listens, or a stale socket file of
//! an agent that is gone). The protocol is in `docs/OPERATIONS.md`.

use std::io::{Read as _, Write as _};

use crate::Failure;
use crate::connection::{call, connect};
use crate::output;
use crate::protocol::Request;
use crate::socket_path::{ControlFlag, parse_control};
use crate::tables;
use clap::{Args, Subcommand};
use scuttlewire::seal::{Key, KeyId};
use serde_json::{Map, Value};

/// Flags every client command takes.
#[derive(Debug, Args)]
pub struct ClientOpts {
    /// The agent's control socket (as given to `agent --control`)
    /// [default: $XDG_RUNTIME_DIR/scuttlewire/agent.sock; as root
    /// /run/scuttlewire/agent.sock; else /tmp/scuttlewire-UID/agent.sock]
    #[arg(long, env = "SCUTTLEWIRE_CONTROL", value_name = "PATH", value_parser = parse_control)]
    control: Option<ControlFlag>,

    /// Print the answer as JSON instead of readable text
    #[arg(long)]
    json: bool,
}

/// The operator commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// List the members the agent knows, with status (like `serf members`)
    Members {
        /// State keys to show a column of, comma-separated
        #[arg(long, value_name = "KEY,...", value_delimiter = ',')]
        keys: Vec<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Print the value of KEY in NODE's state, as the agent knows it
    Get {
        node: String,
        key: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Set KEY of the agent's own node to VALUE; the cluster learns it
    Set {
        key: String,
        value: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Delete KEY of the agent's own node
    Delete {
        key: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List every key of NODE's state with its value and version
    Entries {
        node: String,
        /// Also the library's own keys (`__sw.*`, e.g. the key ids)
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Rotate the cluster's encryption keys (like `serf keys`)
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Make the agent leave the cluster gracefully and exit (as on SIGTERM)
    Leave {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Print the agent's events as they happen, until interrupted
    Monitor {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Print the agent's counters
    Metrics {
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// `keys ...`: a rotation is install (everywhere), use (everywhere), remove.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Every key the healthy members hold: on how many, primary on how many
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Install a key for opening (not sealing yet); `-` reads it from stdin
    Install {
        #[arg(value_name = "KEY_BASE64")]
        key: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Seal with an installed key; refused until every alive member holds it
    Use {
        #[arg(value_name = "KEY_ID", value_parser = parse_key_id)]
        id: KeyId,
        /// Switch even though some members do not hold the key yet (they
        /// will drop this node's datagrams until they do)
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Uninstall a key; refused while a member still seals with it
    Remove {
        #[arg(value_name = "KEY_ID", value_parser = parse_key_id)]
        id: KeyId,
        /// Remove even though some members still seal with it (their
        /// datagrams will be dropped here)
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

fn parse_key_id(text: &str) -> Result<KeyId, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a key id (16 hex digits, as `keys list` shows)"))
}

/// Runs one operator command.
pub async fn run(command: ClientCommand) -> Result<(), Failure> {
    match command {
        ClientCommand::Members { keys, opts } => {
            let answer = call(
                opts.control.as_ref(),
                Request::Members { keys: keys.clone() },
            )
            .await?;
            let list = array(&answer, "members");
            emit(&opts, &Value::Array(list.to_vec()), || {
                tables::members(list, &keys)
            })
        }
        ClientCommand::Get { node, key, opts } => {
            let answer = call(opts.control.as_ref(), Request::Get { node, key }).await?;
            let (node, key) = (text(&answer, "node"), text(&answer, "key"));
            let Some(value) = answer.get("value").and_then(Value::as_str) else {
                return Err(Failure::runtime(format!(
                    "get: {node} has no key {key:?} (as known to the agent)"
                )));
            };
            emit(&opts, &without_ok(&answer), || format!("{value}\n"))
        }
        ClientCommand::Set { key, value, opts } => {
            let request = Request::Set {
                key: key.clone(),
                value: value.into(),
            };
            let answer = call(opts.control.as_ref(), request).await?;
            let version = answer.get("version").cloned().unwrap_or(Value::Null);
            emit(&opts, &without_ok(&answer), || {
                format!("set {key} (version {version})\n")
            })
        }
        ClientCommand::Delete { key, opts } => {
            let answer = call(opts.control.as_ref(), Request::Delete { key: key.clone() }).await?;
            let readable = match answer.get("version") {
                Some(Value::Number(v)) => format!("deleted {key} (version {v})\n"),
                _ => format!("{key} was not set\n"),
            };
            emit(&opts, &without_ok(&answer), || readable)
        }
        ClientCommand::Entries { node, all, opts } => {
            let answer = call(opts.control.as_ref(), Request::Entries { node }).await?;
            let list: Vec<Value> = array(&answer, "entries")
                .iter()
                .filter(|e| all || !e["key"].as_str().is_some_and(is_reserved))
                .cloned()
                .collect();
            emit(&opts, &Value::Array(list.clone()), || {
                tables::entries(&list)
            })
        }
        ClientCommand::Keys(keys) => run_keys(keys).await,
        ClientCommand::Leave { opts } => {
            let answer = call(opts.control.as_ref(), Request::Leave).await?;
            let told = answer.get("told").and_then(Value::as_u64).unwrap_or(0);
            let members = if told == 1 { "member" } else { "members" };
            emit(&opts, &without_ok(&answer), || {
                format!("left the cluster (told {told} {members} directly); the agent stopped\n")
            })
        }
        ClientCommand::Monitor { opts } => monitor(&opts).await,
        ClientCommand::Metrics { opts } => {
            let answer = call(opts.control.as_ref(), Request::Metrics).await?;
            let empty = Map::new();
            let counters = answer
                .get("metrics")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            emit(&opts, &Value::Object(counters.clone()), || {
                tables::metrics(counters)
            })
        }
    }
}

async fn run_keys(command: KeysCommand) -> Result<(), Failure> {
    let (opts, request) = match command {
        KeysCommand::List { opts } => {
            let answer = call(opts.control.as_ref(), Request::KeysList).await?;
            return emit(&opts, &without_ok(&answer), || tables::keys(&answer));
        }
        KeysCommand::Install { key, opts } => {
            let key = read_key(&key)?;
            (opts, Request::KeysInstall { key })
        }
        KeysCommand::Use { id, force, opts } => (opts, Request::KeysUse { id, force }),
        KeysCommand::Remove { id, force, opts } => (opts, Request::KeysRemove { id, force }),
    };
    let done = match request {
        Request::KeysInstall { .. } => "installed (not yet sealing with it)",
        Request::KeysUse { .. } => "is now this agent's primary key",
        _ => "removed",
    };
    let answer = call(opts.control.as_ref(), request).await?;
    let id = text(&answer, "id");
    emit(&opts, &without_ok(&answer), || format!("key {id} {done}\n"))
}

/// The key of `keys install`: the argument, or stdin for `-` (keeps the
/// key out of the process list and the shell history).
fn read_key(arg: &str) -> Result<Key, Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::flag("KEY_BASE64", e);
    if arg != "-" {
        return Key::from_base64(arg).map_err(|e| fail(&e));
    }
    let mut text = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut text)
        .map_err(|e| fail(&format!("cannot read the key from stdin: {e}")))?;
    let key = Key::from_base64(&text).map_err(|e| fail(&e));
    // The text is the key: overwrite it before it is freed.
    let mut bytes = text.into_bytes();
    bytes.fill(0);
    std::hint::black_box(&bytes);
    key
}

/// `monitor`: every event line until interrupted, or until the agent
/// stops (then exit 0: the stream ended as streams do).
async fn monitor(opts: &ClientOpts) -> Result<(), Failure> {
    let mut connection = connect(opts.control.as_ref()).await?;
    connection.send(&Request::Monitor).await?;
    connection.answer().await?;
    loop {
        let Some(line) = connection.next_line().await? else {
            return Ok(());
        };
        let text = if opts.json {
            line
        } else {
            let parsed = serde_json::from_str(&line).ok();
            parsed
                .as_ref()
                .and_then(output::json_to_human)
                .unwrap_or(line)
        };
        if !print(&text) {
            // Nobody reads our stdout any more (`monitor | head`): done.
            return Ok(());
        }
    }
}

/// Prints `json` (compact, one line) with `--json`, else `readable()`.
fn emit(opts: &ClientOpts, json: &Value, readable: impl FnOnce() -> String) -> Result<(), Failure> {
    let text = if opts.json {
        json.to_string()
    } else {
        readable().trim_end_matches('\n').to_owned()
    };
    print(&text);
    Ok(())
}

/// Writes `text` and a newline to stdout; false if stdout is closed.
fn print(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}

/// The answer without its `"ok"`, for `--json`.
fn without_ok(answer: &Map<String, Value>) -> Value {
    let mut answer = answer.clone();
    answer.remove("ok");
    Value::Object(answer)
}

/// A key of the library's own (`__sw.keys`, ...), hidden by `entries`
/// unless `--all`.
fn is_reserved(key: &str) -> bool {
    key.starts_with(scuttlewire::engine::RESERVED_PREFIX)
}

fn array<'a>(answer: &'a Map<String, Value>, field: &str) -> &'a [Value] {
    answer
        .get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn text<'a>(answer: &'a Map<String, Value>, field: &str) -> &'a str {
    answer.get(field).and_then(Value::as_str).unwrap_or("")
}
