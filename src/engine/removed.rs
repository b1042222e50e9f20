//! Members removed from the table after their dead retention.
//!
//! They are remembered for two reasons: stale news (a relayed rumor or
//! delta from a peer that missed the death) must not bring a removed
//! member back — only its own refutation, at a higher incarnation, may —
//! and a member removed as dead is tried again every `reconnect_interval`
//! until `reconnect_timeout`, because a partition looks exactly like
//! death from either side. Members that left on purpose are not tried.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::node_id::NodeId;

/// One removed member.
#[derive(Debug, Clone)]
pub(crate) struct Removed {
    /// Its last identity (name, generation, address).
    pub id: NodeId,
    /// Its incarnation when it was removed.
    pub incarnation: u64,
    /// When it was removed.
    pub at: Instant,
    /// Whether it left on purpose (then it is never reconnected).
    pub left: bool,
}

/// The removed members, by name (ordered, so that whatever iterates them
/// does so in the same order on every run) and by node key.
#[derive(Debug, Default)]
pub(crate) struct RemovedMembers {
    by_name: BTreeMap<String, Removed>,
    names: HashMap<u64, String>,
}

impl RemovedMembers {
    /// Records a removal (replacing an older one of the same name).
    pub fn insert(&mut self, r: Removed) {
        if let Some(old) = self.by_name.get(&r.id.name) {
            self.names.remove(&old.id.key());
        }
        self.names.insert(r.id.key(), r.id.name.clone());
        self.by_name.insert(r.id.name.clone(), r);
    }

    /// The removal of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Removed> {
        self.by_name.get(name)
    }

    /// The removal of the node with key `key`, if any.
    pub fn by_key(&self, key: u64) -> Option<&Removed> {
        self.names.get(&key).and_then(|n| self.by_name.get(n))
    }

    /// Forgets the removal of `name` (it came back).
    pub fn forget(&mut self, name: &str) -> Option<Removed> {
        let r = self.by_name.remove(name)?;
        self.names.remove(&r.id.key());
        Some(r)
    }

    /// Whether `name` at `generation` was removed and must not come back
    /// through third-party news.
    pub fn is_removed(&self, name: &str, generation: u64) -> bool {
        self.get(name)
            .is_some_and(|r| generation <= r.id.generation)
    }

    /// Forgets removals older than `keep`.
    pub fn expire(&mut self, now: Instant, keep: Duration) {
        let names = &mut self.names;
        self.by_name.retain(|_, r| {
            let kept = now.saturating_duration_since(r.at) < keep;
            if !kept {
                names.remove(&r.id.key());
            }
            kept
        });
    }

    /// Members removed as dead less than `timeout` ago: the ones to try
    /// to reconnect, in name order.
    pub fn to_reconnect(&self, now: Instant, timeout: Duration) -> impl Iterator<Item = &Removed> {
        self.by_name
            .values()
            .filter(move |r| !r.left && now.saturating_duration_since(r.at) < timeout)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_name.len()
    }
}

#[cfg(test)]
mod tests;
