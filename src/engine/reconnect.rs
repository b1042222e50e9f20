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
use std::time::Instant;

use rand::Rng;

use super::Engine;
use super::msg::{ping, update};
use crate::wire::proto::MemberState;

impl Engine {
    /// Contacts one reconnect candidate, picked at random (see the module
    /// doc). Does nothing when there is none.
    pub(super) fn reconnect(&mut self, now: Instant) {
        let timeout = self.config.reconnect_timeout;
        let mut dead: Vec<u64> = self
            .swim
            .dead
            .iter()
            .filter(|(_, d)| {
                d.next_retry.is_some() && now.saturating_duration_since(d.since) < timeout
            })
            .map(|(k, _)| *k)
            .collect();
        dead.sort_unstable();
        let removed = self.swim.removed.to_reconnect(now, timeout).count();
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
            return;
        }
        self.metrics.reconnects += 1;
        let i = self.rng.random_range(0..total);
        let member = if i < dead.len() {
            self.members
                .get(dead[i])
                .map(|k| (k.id.clone(), k.incarnation))
        } else if i < dead.len() + removed {
            self.swim
                .removed
                .to_reconnect(now, timeout)
                .nth(i - dead.len())
                .map(|r| (r.id.clone(), r.incarnation))
        } else {
            let seed = seeds[i - dead.len() - removed];
            tracing::debug!(%seed, "reconnect: contacting a seed");
            self.send_syn(seed, &[], &[], false);
            return;
        };
        let Some((id, incarnation)) = member else {
            return;
        };
        tracing::debug!(node = %id, "reconnect: contacting a member held dead");
        let seq = self.swim.next_seq();
        let msgs = vec![
            ping(seq, &id.name, self.members.fingerprint()),
            update(&id, incarnation, MemberState::Dead, &self.me.name),
        ];
        // No peer key: the full header, so that a node which removed us
        // learns who we are.
        self.send(id.addr, None, msgs, None);
    }
}
