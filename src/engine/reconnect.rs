//! Reconnecting: how a cluster split by a partition merges back.
//!
//! From either side, a partition looks like the death of everyone across
//! it: after `dead_retention` those members are removed and nothing would
//! ever contact them again (memberlist #222, Serf #605). So every
//! `reconnect_interval` a node contacts one member it holds dead, one it
//! removed as dead less than `reconnect_timeout` ago, or a seed that is not
//! an alive member — one of them, at random, so an idle cluster with dead
//! members sends one small packet per interval, never a storm.
//!
//! A member is told that we hold it dead (with a ping, so it has something
//! to answer): if it is alive it refutes, and sends the refutation straight
//! back to us (see `Engine::about_me`), which makes it a member here again;
//! if it holds *us* dead, it tells us so and we do the same. A seed gets a
//! digest, as at join. Once two nodes across the healed partition are
//! alive to each other, anti-entropy carries everyone's liveness across.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;

use super::dead::DeadMembers;
use super::membership::Members;
use super::node_id::NodeId;
use super::removed::RemovedMembers;

/// Whom a reconnect attempt contacts.
#[derive(Debug)]
pub(super) enum Candidate {
    /// A member held dead or removed as dead: told so, with a ping.
    Member {
        /// Its last identity.
        id: NodeId,
        /// The incarnation it is held dead at.
        incarnation: u64,
    },
    /// A seed that is not an alive member: sent a digest, as at join.
    Seed(SocketAddr),
    /// The member drawn left the table meanwhile: nobody this time.
    Vanished,
}

/// The places one reconnect attempt draws from.
pub(super) struct Pool<'a> {
    pub dead: &'a DeadMembers,
    pub removed: &'a RemovedMembers,
    pub members: &'a Members,
    pub seeds: &'a [SocketAddr],
}

impl Pool<'_> {
    /// Draws one candidate at random among the members held dead and the
    /// members removed as dead less than `timeout` ago, and the seeds that
    /// are not healthy members; `None` if there is none.
    pub fn draw(&self, now: Instant, timeout: Duration, rng: &mut StdRng) -> Option<Candidate> {
        let dead = self.dead.to_reconnect(now, timeout);
        let removed = self.removed.to_reconnect(now, timeout).count();
        let healthy: HashSet<SocketAddr> = self
            .members
            .peers()
            .iter()
            .filter_map(|k| self.members.get(*k).map(|k| k.id.addr))
            .collect();
        let seeds: Vec<SocketAddr> = self
            .seeds
            .iter()
            .copied()
            .filter(|s| !healthy.contains(s))
            .collect();
        let total = dead.len() + removed + seeds.len();
        if total == 0 {
            return None;
        }
        let i = rng.random_range(0..total);
        let member = if i < dead.len() {
            self.members
                .get(dead[i])
                .map(|k| (k.id.clone(), k.incarnation))
        } else if i < dead.len() + removed {
            self.removed
                .to_reconnect(now, timeout)
                .nth(i - dead.len())
                .map(|r| (r.id.clone(), r.incarnation))
        } else {
            return Some(Candidate::Seed(seeds[i - dead.len() - removed]));
        };
        Some(match member {
            Some((id, incarnation)) => Candidate::Member { id, incarnation },
            None => Candidate::Vanished,
        })
    }
}
