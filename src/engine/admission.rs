//! Admission control: whether a node this engine has never held (or a new
//! generation of one it holds) may become a member, like memberlist's
//! `AliveDelegate`. Three checks, in this order, cheapest first:
//!
//! 1. its gossip address lies in one of `Config::allowed_networks` (an
//!    empty list allows every address);
//! 2. the member table is not full (`Config::max_members`; a new
//!    generation replaces a record, so only newcomers are capped);
//! 3. the application's [`AdmissionCheck`], if one is installed, says yes.
//!
//! A leaf: it decides and remembers whom it has logged; the lifecycle room
//! counts, logs and keeps the refused node out. Pure: no clock, no I/O
//! beyond what the application's check does itself.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use super::NodeId;
use crate::config::{Cidr, Config};

/// The application's say on who may join: called with the identity of
/// every node the engine would add as a member (a newcomer, or a new
/// generation of a member, i.e. a restart), after the address and
/// capacity checks pass. `Err` carries the reason, which is logged.
///
/// It runs on the node's driver task each time such a node is met (every
/// packet from it and every rumor or delta about it, until it is
/// admitted), so it must be quick and must not block. Members already
/// admitted are never asked again at the same generation.
pub type AdmissionCheck = Arc<dyn Fn(&NodeId) -> Result<(), String> + Send + Sync>;

/// Why a node was refused membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Its address is in none of `Config::allowed_networks`.
    Network,
    /// `Config::max_members` members are held already.
    Capacity(usize),
    /// The application's [`AdmissionCheck`] refused it, saying why.
    Check(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Network => f.write_str("its address is not in allowed_networks"),
            Refusal::Capacity(max) => write!(f, "max_members ({max}) members are held"),
            Refusal::Check(why) => write!(f, "the admission check refused it: {why}"),
        }
    }
}

/// Most names remembered as logged. Past it, refusals of further names
/// are counted, not logged (after one line saying so), so a flood of
/// invented names can neither grow memory nor flood the log.
const MAX_LOGGED: usize = 1_024;

/// What to log about one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Notice {
    /// The name's first refusal: log it.
    First,
    /// Too many names were logged: say that further ones will not be.
    Overflow,
    /// Already said.
    Quiet,
}

/// The admission checks and the names whose refusal was logged.
#[derive(Default)]
pub(super) struct Admission {
    networks: Vec<Cidr>,
    /// 0: no limit.
    max_members: usize,
    check: Option<AdmissionCheck>,
    /// Names whose refusal was logged (at most [`MAX_LOGGED`]).
    logged: HashSet<String>,
    /// Whether the [`Notice::Overflow`] line was given.
    overflowed: bool,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("networks", &self.networks)
            .field("max_members", &self.max_members)
            .field("check", &self.check.as_ref().map(|_| "installed"))
            .field("logged", &self.logged.len())
            .finish()
    }
}

impl Admission {
    /// The checks `config` asks for, with no application check yet.
    pub(super) fn new(config: &Config) -> Admission {
        Admission {
            networks: config.allowed_networks.clone(),
            max_members: config.max_members,
            ..Admission::default()
        }
    }

    /// Installs (or, with `None`, removes) the application's check.
    pub(super) fn set_check(&mut self, check: Option<AdmissionCheck>) {
        self.check = check;
    }

    /// Whether `id` may become a member of a table holding `held` members;
    /// `adds` is false for a new generation of a held member, which
    /// replaces its record and so is not capped.
    pub(super) fn judge(&self, id: &NodeId, held: usize, adds: bool) -> Result<(), Refusal> {
        if !self.networks.is_empty() && !self.networks.iter().any(|n| n.contains(id.addr.ip())) {
            return Err(Refusal::Network);
        }
        if adds && self.max_members != 0 && held >= self.max_members {
            return Err(Refusal::Capacity(self.max_members));
        }
        match &self.check {
            Some(check) => check(id).map_err(Refusal::Check),
            None => Ok(()),
        }
    }

    /// What to log about a refusal of `name`: [`Notice::First`] the first
    /// time since it was last admitted (remembering it, up to
    /// [`MAX_LOGGED`] names), [`Notice::Quiet`] after.
    pub(super) fn notice(&mut self, name: &str) -> Notice {
        if self.logged.contains(name) {
            return Notice::Quiet;
        }
        if self.logged.len() >= MAX_LOGGED {
            if self.overflowed {
                return Notice::Quiet;
            }
            self.overflowed = true;
            return Notice::Overflow;
        }
        self.logged.insert(name.to_owned());
        Notice::First
    }

    /// `name` was admitted: a later refusal of it is news again.
    pub(super) fn admitted(&mut self, name: &str) {
        if !self.logged.is_empty() {
            self.logged.remove(name);
        }
    }
}

#[cfg(test)]
mod tests;
