//! Why the engine refuses something: errors of creation, local writes
//! and broadcasts, and the reserved key prefix writes are checked against.

use crate::config::ConfigError;
use crate::wire::PackerError;

/// Why an [`Engine`](super::Engine) could not be created. No engine exists afterwards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A config field is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The transport's budget cannot hold even an empty packet.
    #[error(transparent)]
    Budget(#[from] PackerError),
}

/// Prefix of the keys the library itself keeps in a node's state (for
/// example `__sw.keys`, the ids of the encryption keys a node holds).
/// Applications cannot `set` or `delete` them, but see them like any key.
pub const RESERVED_PREFIX: &str = "__sw.";

/// Why a local write was refused. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// The key starts with [`RESERVED_PREFIX`], which the library owns.
    #[error("keys starting with `{RESERVED_PREFIX}` are reserved for the library")]
    Reserved,
    /// The key is longer than `Config::max_key_len`.
    #[error("key of {len} bytes is longer than max_key_len ({max} bytes)")]
    KeyTooLong {
        /// Length of the refused key.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The key and value together could never fit one packet under the
    /// transport's budget, so they could never be gossiped.
    #[error("key and value take {len} bytes encoded; one packet holds at most {max}")]
    EntryTooLarge {
        /// Encoded size of the entry.
        len: usize,
        /// Largest entry that fits one packet.
        max: usize,
    },
}

/// Why a broadcast was refused. Nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastError {
    /// The payload could never fit one packet under the budget.
    #[error("broadcast takes {len} bytes encoded; one packet holds at most {max}")]
    TooLarge {
        /// Encoded size of the broadcast.
        len: usize,
        /// Largest that fits one packet.
        max: usize,
    },
}
