//! What the agent does for each control request: read or change the node
//! through its public handle and build the answer (see `protocol` for the
//! shape of answers, `docs/OPERATIONS.md` for the contract).
//!
//! `leave` and `monitor` are not here: they take over the connection, so
//! `control` handles them. Every error message starts with the command as
//! typed (`keys use: ...`), so the client can print it as it is.

use std::collections::BTreeSet;
use std::sync::Arc;

use scuttlewire::node::{ClusterKeys, MemberKeys};
use scuttlewire::seal::{Key, KeyId};
use scuttlewire::{MemberStatus, Node, NodeError};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use crate::counters;
use crate::keyfile::KeyFile;
use crate::output::status_name;
use crate::protocol::{self, Request};

/// Runs control requests against one node.
#[derive(Clone)]
pub struct Operator {
    node: Node,
    /// `--key-file`, when the agent encrypts. The lock also serialises key
    /// changes, so the file is written in the order the keyring changed.
    key_file: Option<Arc<Mutex<KeyFile>>>,
}

type Answer = Result<Map<String, Value>, String>;

impl Operator {
    /// An operator of `node`, rewriting `key_file` after key changes.
    pub fn new(node: Node, key_file: Option<KeyFile>) -> Operator {
        Operator {
            node,
            key_file: key_file.map(|f| Arc::new(Mutex::new(f))),
        }
    }

    /// The node, for `monitor`.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The answer to `request` (`leave` and `monitor` excepted).
    pub async fn answer(&self, request: Request) -> Value {
        let name = request.name();
        let result = match request {
            Request::Members { keys } => self.members(&keys).await,
            Request::Get { node, key } => self.get(&node, &key).await,
            Request::Set { key, value } => match self.node.set(key, value).await {
                Ok(version) => Ok(fields([("version", json!(version))])),
                Err(e) => Err(text(e)),
            },
            // The version of the tombstone, or null: the key was not set.
            Request::Delete { key } => match self.node.delete(key).await {
                Ok(version) => Ok(fields([("version", json!(version))])),
                Err(e) => Err(text(e)),
            },
            Request::Entries { node } => self.entries(&node).await,
            Request::KeysList => self.keys_list().await,
            Request::KeysInstall { key } => self.install(key).await,
            Request::KeysUse { id, force } => self.use_key(id, force).await,
            Request::KeysRemove { id, force } => self.remove(id, force).await,
            Request::Metrics => self.metrics().await,
            Request::Leave | Request::Monitor => Err("not a one-answer command".to_owned()),
        };
        match result {
            Ok(fields) => protocol::ok(fields),
            // Named as typed on the command line: `keys use`, not `keys.use`.
            Err(message) => protocol::error(format!("{}: {message}", name.replace('.', " "))),
        }
    }

    async fn members(&self, keys: &[String]) -> Answer {
        let mut list = Vec::new();
        for m in self.node.members().await.map_err(text)? {
            let mut values = Vec::new();
            for key in keys {
                let value = self.node.get(&m.id.name, key).await.map_err(text)?;
                let mut v = Map::new();
                v.insert("key".into(), key.as_str().into());
                match value {
                    Some(bytes) => v.extend(protocol::value_fields(&bytes)),
                    None => {
                        v.insert("value".into(), Value::Null);
                    }
                }
                values.push(Value::Object(v));
            }
            list.push(json!({
                "name": m.id.name,
                "addr": m.id.addr.to_string(),
                "status": status_name(m.status),
                "incarnation": m.incarnation,
                "generation": m.id.generation,
                "keys": values,
            }));
        }
        Ok(fields([("members", Value::Array(list))]))
    }

    async fn get(&self, node: &str, key: &str) -> Answer {
        let mut answer = fields([("node", json!(node)), ("key", json!(key))]);
        match self.node.get(node, key).await.map_err(text)? {
            Some(bytes) => answer.extend(protocol::value_fields(&bytes)),
            None => {
                answer.insert("value".into(), Value::Null);
            }
        }
        Ok(answer)
    }

    async fn entries(&self, node: &str) -> Answer {
        let Some(entries) = self.node.entries(node).await.map_err(text)? else {
            return Err(format!("no member named {node:?} is known here"));
        };
        let list: Vec<Value> = entries
            .iter()
            .map(|(key, (value, version))| {
                let mut e = Map::new();
                e.insert("key".into(), key.as_str().into());
                e.extend(protocol::value_fields(value));
                e.insert("version".into(), (*version).into());
                Value::Object(e)
            })
            .collect();
        Ok(fields([
            ("node", json!(node)),
            ("entries", Value::Array(list)),
        ]))
    }

    async fn keys_list(&self) -> Answer {
        let local = self.node.list_keys().map_err(text)?;
        let view = self.node.cluster_keys().await.map_err(text)?;
        Ok(key_view(&local, &view))
    }

    async fn install(&self, key: Key) -> Answer {
        let file = self.key_file()?;
        let mut file = file.lock().await;
        let id = key.id();
        file.remember(key.clone());
        self.node.install_key(key).await.map_err(text)?;
        self.save(&file)?;
        Ok(fields([("id", json!(id.to_string()))]))
    }

    async fn use_key(&self, id: KeyId, force: bool) -> Answer {
        let file = self.key_file()?;
        let file = file.lock().await;
        self.require_installed(id)?;
        if !force {
            let view = self.node.cluster_keys().await.map_err(text)?;
            let missing = names(view.blocking_use(id));
            if !missing.is_empty() {
                return Err(format!(
                    "not every alive member holds key {id} yet; missing on {missing} \
                     (install it there first, or give --force)"
                ));
            }
        }
        self.node.use_key(id).await.map_err(text)?;
        self.save(&file)?;
        Ok(fields([("id", json!(id.to_string()))]))
    }

    async fn remove(&self, id: KeyId, force: bool) -> Answer {
        let file = self.key_file()?;
        let mut file = file.lock().await;
        self.require_installed(id)?;
        if !force {
            let view = self.node.cluster_keys().await.map_err(text)?;
            let blocking = view.blocking_remove(id);
            if !blocking.is_empty() {
                let (sealing, unknown): (Vec<_>, Vec<_>) =
                    blocking.into_iter().partition(|m| m.keys.is_some());
                let mut why = Vec::new();
                if !sealing.is_empty() {
                    why.push(format!("still the primary key on {}", names(sealing)));
                }
                if !unknown.is_empty() {
                    why.push(format!("keys not known of {}", names(unknown)));
                }
                return Err(format!(
                    "key {id} is not safe to remove: {} (run `keys use` with the new key \
                     there first, or give --force)",
                    why.join("; ")
                ));
            }
        }
        self.node.remove_key(id).await.map_err(text)?;
        file.forget(id);
        self.save(&file)?;
        Ok(fields([("id", json!(id.to_string()))]))
    }

    async fn metrics(&self) -> Answer {
        let metrics = self.node.metrics().await.map_err(text)?;
        let counters: Map<String, Value> = counters::flatten(&metrics)
            .into_iter()
            .map(|(name, value)| (name, value.into()))
            .collect();
        Ok(fields([("metrics", Value::Object(counters))]))
    }

    /// The key file, or the library's "no keyring" error on an agent
    /// without encryption.
    fn key_file(&self) -> Result<&Arc<Mutex<KeyFile>>, String> {
        self.key_file
            .as_ref()
            .ok_or_else(|| NodeError::NoKeyring.to_string())
    }

    /// Refuses an id this node does not hold before asking the cluster
    /// anything: the clearest message for a mistyped id.
    fn require_installed(&self, id: KeyId) -> Result<(), String> {
        if self.node.list_keys().map_err(text)?.contains(&id) {
            Ok(())
        } else {
            Err(format!(
                "no installed key has id {id} (see `keys list`; install it with `keys install`)"
            ))
        }
    }

    /// Writes the keyring to the key file. The keyring has changed already;
    /// the message says so, so nobody repeats a change that took effect.
    fn save(&self, file: &KeyFile) -> Result<(), String> {
        let ids = self.node.list_keys().map_err(text)?;
        file.save(&ids).map_err(|e| {
            format!(
                "the running agent's keyring changed, but --key-file {} was not updated: {e}",
                file.path().display()
            )
        })
    }
}

/// The `keys.list` answer: this node's keys, each key's usage over the
/// healthy members, and the healthy members that publish no keys.
fn key_view(local: &[KeyId], view: &ClusterKeys) -> Map<String, Value> {
    let usage = view.usage();
    let ids: BTreeSet<KeyId> = usage.keys().chain(local).copied().collect();
    let keys: Vec<Value> = ids
        .iter()
        .map(|id| {
            let u = usage.get(id).copied().unwrap_or_default();
            json!({
                "id": id.to_string(),
                "installed": u.installed,
                "primary": u.primary,
                "here": if local.first() == Some(id) {
                    "primary"
                } else if local.contains(id) {
                    "installed"
                } else {
                    "absent"
                },
            })
        })
        .collect();
    let silent: Vec<Value> = view
        .healthy()
        .filter(|m| m.keys.is_none())
        .map(|m| m.node.name.as_str().into())
        .collect();
    fields([
        ("healthy", json!(view.healthy_count())),
        ("keys", Value::Array(keys)),
        ("no_keys", Value::Array(silent)),
    ])
}

/// `a, b (suspect)`: members named for a message.
fn names(members: Vec<&MemberKeys>) -> String {
    members
        .iter()
        .map(|m| match m.status {
            MemberStatus::Alive => m.node.name.clone(),
            other => format!("{} ({})", m.node.name, status_name(other)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn text(e: NodeError) -> String {
    e.to_string()
}
