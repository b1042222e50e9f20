//! `LossEstimate`: how many of this node's datagrams are lost, learned
//! from its probes (was the first ping of each probe answered by the end
//! of its round, however late?), and how many extra copies of a fresh
//! version that loss calls for.
//!
//! Probes alone feed it: one a second, with a round to answer in, so a
//! busy peer or host reads as delay, not loss. Tree pushes would add
//! samples, but their resend wait is short (10 ms on a LAN) and a push
//! answered after a resend cannot tell loss from delay; on a loaded,
//! loss-free host they read as loss. Only probes whose target answered
//! in the end (to the second ping or through a relay) count: a target
//! that never did may be down, which is not loss. Nor do the probes of a
//! node that was overloaded (`Engine::note_overload`) while they ran: its
//! own slowness is not the network's loss.
//!
//! A tree push reaches each member once; on a lossy network a lost push
//! waits for its resend (10 ms and up on a LAN, doubling), and the slowest
//! of N members is the one whose push was lost several times. Extra
//! copies sent at once along other broadcast trees make that unlikely
//! (each member has another parent in each), the way the
//! eager fanout of a gossip epidemic does, but they cost a datagram each;
//! so they are sent only while loss is measured, in the number that
//! loss calls for, and never by a node that sheds load. With no loss a
//! write still costs each member one push and one acknowledgement.

/// Samples (probe rounds, one a second) after which an old outcome
/// weighs `1/e` of a new one.
const MEMORY: f64 = 64.0;

/// Losses (decayed) below which the link is taken as loss-free: one or
/// two losses among the recent probes are noise (two decay to less than
/// 2; it takes three).
const MIN_LOST: f64 = 2.0;

/// Samples the loss rate is at least divided by, so that a few early
/// losses do not read as a very lossy network.
const MIN_SEEN: f64 = 16.0;

/// How many members may miss every copy of a version, in expectation, per
/// version: the copies are chosen to keep `N · p^copies` below this. A
/// member that misses them all waits for a resend (10 ms and up on a
/// LAN); the margin covers an estimate that reads the loss low.
const MISS: f64 = 0.001;

/// Round-trip loss above which the estimate is capped (a link losing
/// more is not helped by more copies).
const MAX_ROUND_TRIP_LOSS: f64 = 0.9;

/// A decayed count of this node's probes and of those whose first ping
/// went unanswered.
#[derive(Debug, Default, Clone)]
pub(crate) struct LossEstimate {
    lost: f64,
    seen: f64,
}

impl LossEstimate {
    /// Records the outcome of one probe: its first ping answered, or not
    /// (`lost`).
    pub fn record(&mut self, lost: bool) {
        let keep = 1.0 - 1.0 / MEMORY;
        self.lost = self.lost * keep + f64::from(u8::from(lost));
        self.seen = self.seen * keep + 1.0;
    }

    /// The decayed counts of losses and of samples.
    #[cfg(test)]
    pub fn counts(&self) -> (f64, f64) {
        (self.lost, self.seen)
    }

    /// The estimated chance that one datagram is lost: from the round-trip
    /// loss `q` (a request or its answer lost), `1 - sqrt(1 - q)`; zero
    /// until losses are more than noise.
    pub fn one_way(&self) -> f64 {
        if self.lost < MIN_LOST {
            return 0.0;
        }
        let q = (self.lost / self.seen.max(MIN_SEEN)).min(MAX_ROUND_TRIP_LOSS);
        1.0 - (1.0 - q).sqrt()
    }

    /// Extra copies of a fresh version to send, beyond the tree push, in
    /// a cluster of `members`, at most `max`: the fewest copies `c` with
    /// `members · p^c ≤ MISS`, less the one the tree sends.
    pub fn extra_copies(&self, members: usize, max: usize) -> usize {
        let p = self.one_way();
        if p <= 0.0 || members < 2 {
            return 0;
        }
        let copies = ((members as f64 / MISS).ln() / (1.0 / p).ln()).ceil();
        // `copies` is finite and positive here: p is in (0, 1).
        (copies as usize).saturating_sub(1).min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(outcomes: impl IntoIterator<Item = bool>) -> LossEstimate {
        let mut e = LossEstimate::default();
        for lost in outcomes {
            e.record(lost);
        }
        e
    }

    #[test]
    fn no_loss_and_a_single_loss_ask_for_no_copies() {
        assert_eq!(after([false; 500]).extra_copies(1000, 6), 0);
        let one = after((0..500).map(|i| i == 250));
        assert_eq!(one.one_way(), 0.0);
        assert_eq!(one.extra_copies(1000, 6), 0);
    }

    #[test]
    fn copies_grow_with_the_loss_and_the_cluster() {
        // 20% one-way loss is 36% round-trip loss.
        let steady = |q: f64| after((0..2000).map(|i| (i as f64 * q).fract() + q >= 1.0));
        let five = steady(1.0 - 0.95f64 * 0.95);
        let twenty = steady(1.0 - 0.8f64 * 0.8);
        assert!((five.one_way() - 0.05).abs() < 0.01, "{}", five.one_way());
        assert!(
            (twenty.one_way() - 0.2).abs() < 0.02,
            "{}",
            twenty.one_way()
        );
        // 1,000 · 0.05^5 ≤ 0.001 < 1,000 · 0.05^4: five copies, four extra.
        assert_eq!(five.extra_copies(1000, 6), 4);
        assert_eq!(five.extra_copies(16, 6), 3);
        assert_eq!(twenty.extra_copies(1000, 6), 6);
        assert_eq!(twenty.extra_copies(1000, 4), 4, "capped");
    }

    #[test]
    fn losses_fade() {
        assert!(after([true, true, true]).one_way() > 0.0);
        let mut e = after([true; 8]);
        for _ in 0..200 {
            e.record(false);
        }
        assert_eq!(e.extra_copies(1000, 6), 0, "old losses forgotten");
    }
}
