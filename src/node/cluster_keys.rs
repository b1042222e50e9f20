//! [`ClusterKeys`]: which member holds which encryption key, and whether a
//! rotation step is complete everywhere (like `serf keys -list`).

use std::collections::BTreeMap;
use std::fmt;

use crate::engine::{MemberStatus, NodeId};
use crate::seal::KeyId;

/// One member's published keys, as known to the node that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberKeys {
    /// The member.
    pub node: NodeId,
    /// Its liveness status as known here.
    pub status: MemberStatus,
    /// The ids of the keys it holds, primary first. `None` if it publishes
    /// none: a plaintext node, a node started without a keyring, a value
    /// that did not decode, or simply state that has not arrived here yet.
    pub keys: Option<Vec<KeyId>>,
}

impl MemberKeys {
    /// The id of the member's primary key, if it publishes its keys.
    pub fn primary(&self) -> Option<KeyId> {
        self.keys.as_ref().and_then(|keys| keys.first().copied())
    }

    /// Whether the member publishes that it holds `id`.
    pub fn holds(&self, id: KeyId) -> bool {
        self.keys.as_ref().is_some_and(|keys| keys.contains(&id))
    }

    /// Whether the member counts for rotation decisions (alive or suspect).
    pub fn is_healthy(&self) -> bool {
        self.status.is_healthy()
    }
}

/// How many healthy members hold a key and use it as primary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyUsage {
    /// Healthy members holding the key (primary or not).
    pub installed: usize,
    /// Healthy members sealing with it (their primary).
    pub primary: usize,
}

/// Which member holds which key, from [`Node::cluster_keys`](crate::Node::cluster_keys).
///
/// Built from the `__sw.keys` entries each member gossips, so it is as
/// current as this node's view of the cluster. Only *healthy* members
/// (status alive or suspect) count in the decisions: a dead or departed
/// member neither blocks a rotation nor is waited for. A healthy member
/// that publishes no keys (see [`MemberKeys::keys`]) blocks both steps,
/// since nothing is known of its keys.
///
/// A rotation from `old` to `new`, on every member:
///
/// 1. `install_key(new)`, then wait until [`safe_to_use(new)`](ClusterKeys::safe_to_use);
/// 2. `use_key(new)`, then wait until [`safe_to_remove(old)`](ClusterKeys::safe_to_remove),
///    plus a moment for datagrams in flight;
/// 3. `remove_key(old)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterKeys {
    members: Vec<MemberKeys>,
}

impl ClusterKeys {
    /// A view over `members`.
    pub fn new(members: Vec<MemberKeys>) -> ClusterKeys {
        ClusterKeys { members }
    }

    /// Every known member, healthy or not, sorted as the node listed them
    /// (by name).
    pub fn members(&self) -> &[MemberKeys] {
        &self.members
    }

    /// The members that count: alive or suspect.
    pub fn healthy(&self) -> impl Iterator<Item = &MemberKeys> {
        self.members.iter().filter(|m| m.is_healthy())
    }

    /// For every key id some healthy member holds, how many healthy members
    /// hold it and how many seal with it, out of
    /// [`healthy_count`](ClusterKeys::healthy_count).
    pub fn usage(&self) -> BTreeMap<KeyId, KeyUsage> {
        let mut usage: BTreeMap<KeyId, KeyUsage> = BTreeMap::new();
        for member in self.healthy() {
            let Some(keys) = &member.keys else { continue };
            for (i, id) in keys.iter().enumerate() {
                let entry = usage.entry(*id).or_default();
                entry.installed += 1;
                if i == 0 {
                    entry.primary += 1;
                }
            }
        }
        usage
    }

    /// How many members are healthy.
    pub fn healthy_count(&self) -> usize {
        self.healthy().count()
    }

    /// Healthy members that do not (or not known to) hold `id`: they would
    /// drop datagrams sealed under it. Empty when it is safe to use `id`.
    pub fn blocking_use(&self, id: KeyId) -> Vec<&MemberKeys> {
        self.healthy().filter(|m| !m.holds(id)).collect()
    }

    /// Healthy members that still seal with `id`, or whose keys are not
    /// known: removing `id` would drop their datagrams. Empty when it is
    /// safe to remove `id`.
    pub fn blocking_remove(&self, id: KeyId) -> Vec<&MemberKeys> {
        self.healthy()
            .filter(|m| m.keys.is_none() || m.primary() == Some(id))
            .collect()
    }

    /// Whether every healthy member holds `id`, so any of them may start
    /// sealing with it ([`Node::use_key`](crate::Node::use_key)).
    pub fn safe_to_use(&self, id: KeyId) -> bool {
        self.blocking_use(id).is_empty()
    }

    /// Whether no healthy member seals with `id` any more (and every healthy
    /// member's keys are known), so it may be uninstalled
    /// ([`Node::remove_key`](crate::Node::remove_key)).
    pub fn safe_to_remove(&self, id: KeyId) -> bool {
        self.blocking_remove(id).is_empty()
    }
}

/// One line per key: `<id>  installed on i/n, primary on p/n`, then one
/// line per healthy member that publishes no keys.
impl fmt::Display for ClusterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.healthy_count();
        for (id, usage) in self.usage() {
            writeln!(
                f,
                "{id}  installed on {}/{total}, primary on {}/{total}",
                usage.installed, usage.primary
            )?;
        }
        for member in self.healthy().filter(|m| m.keys.is_none()) {
            writeln!(f, "{}  publishes no keys", member.node.name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::KEY_ID_LEN;

    fn id(byte: u8) -> KeyId {
        KeyId::from_bytes([byte; KEY_ID_LEN])
    }

    fn member(name: &str, status: MemberStatus, keys: Option<Vec<KeyId>>) -> MemberKeys {
        MemberKeys {
            node: NodeId::new(name, 1, "127.0.0.1:1".parse().unwrap()),
            status,
            keys,
        }
    }

    #[test]
    fn a_key_is_safe_to_use_once_every_healthy_member_holds_it() {
        let (old, new) = (id(1), id(2));
        let mut view = ClusterKeys::new(vec![
            member("a", MemberStatus::Alive, Some(vec![old, new])),
            member("b", MemberStatus::Suspect, Some(vec![old])),
            member("c", MemberStatus::Dead, Some(vec![old])),
        ]);
        assert!(!view.safe_to_use(new));
        let blocking: Vec<&str> = view
            .blocking_use(new)
            .iter()
            .map(|m| m.node.name.as_str())
            .collect();
        assert_eq!(blocking, ["b"], "the dead member does not block");
        view.members[1].keys = Some(vec![old, new]);
        assert!(view.safe_to_use(new));
    }

    #[test]
    fn a_key_is_safe_to_remove_once_no_healthy_member_seals_with_it() {
        let (old, new) = (id(1), id(2));
        let mut view = ClusterKeys::new(vec![
            member("a", MemberStatus::Alive, Some(vec![new, old])),
            member("b", MemberStatus::Alive, Some(vec![old, new])),
            member("c", MemberStatus::Left, Some(vec![old])),
        ]);
        assert!(!view.safe_to_remove(old));
        assert!(!view.safe_to_remove(new), "a seals with new");
        view.members[1].keys = Some(vec![new, old]);
        assert!(view.safe_to_remove(old));
        let usage = view.usage();
        assert_eq!(
            usage[&old],
            KeyUsage {
                installed: 2,
                primary: 0
            }
        );
        assert_eq!(
            usage[&new],
            KeyUsage {
                installed: 2,
                primary: 2
            }
        );
    }

    #[test]
    fn a_member_with_unknown_keys_blocks_both_steps() {
        let k = id(1);
        let view = ClusterKeys::new(vec![
            member("a", MemberStatus::Alive, Some(vec![k])),
            member("b", MemberStatus::Alive, None),
        ]);
        assert!(!view.safe_to_use(k));
        assert!(!view.safe_to_remove(k));
        let text = view.to_string();
        assert!(text.contains("installed on 1/2"), "{text}");
        assert!(text.contains("b  publishes no keys"), "{text}");
    }
}
