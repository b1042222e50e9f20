//! The anti-replay sliding window (RFC 6479, as in WireGuard).
//!
//! The window remembers, for one sender session, which counters near the
//! highest one seen have already been accepted. It is a ring of 32 64-bit
//! words (2048 bits). Moving the window forward clears whole words instead
//! of shifting bits, which is why one word is always "in flight" and the
//! usable window is 2048 − 64 = 1984 counters.
//!
//! The window is consulted only after a frame's tag verified: an attacker
//! without the key cannot move it.

/// Bits in the ring.
const RING_BITS: u64 = 2048;
/// Bits per word.
const WORD_BITS: u64 = u64::BITS as u64;
/// Words in the ring (a power of two, so `& (WORDS - 1)` is the modulus).
const WORDS: usize = (RING_BITS / WORD_BITS) as usize;

/// How far below the highest accepted counter a counter may be and still be
/// accepted (once): counter `c` is acceptable after `m` iff
/// `c + REPLAY_WINDOW >= m` and `c` was not accepted before.
pub const REPLAY_WINDOW: u64 = RING_BITS - WORD_BITS;

/// Which counters of one sender session were already accepted.
#[derive(Clone)]
pub struct ReplayWindow {
    /// Highest accepted counter plus one; 0 while nothing was accepted.
    top: u64,
    ring: [u64; WORDS],
}

impl ReplayWindow {
    /// An empty window: every counter is new.
    pub fn new() -> ReplayWindow {
        ReplayWindow {
            top: 0,
            ring: [0; WORDS],
        }
    }

    /// The highest counter accepted so far.
    pub fn highest(&self) -> Option<u64> {
        self.top.checked_sub(1)
    }

    /// Whether `counter` would be accepted, without recording it.
    pub fn check(&self, counter: u64) -> bool {
        let Some(n) = counter.checked_add(1) else {
            return false;
        };
        if n.saturating_add(REPLAY_WINDOW) < self.top {
            return false;
        }
        if n > self.top {
            return true;
        }
        let (word, bit) = position(n);
        self.ring[word] & bit == 0
    }

    /// Accepts `counter` and records it if it is new and inside the window;
    /// returns `false` (and changes nothing) for a replay or a counter older
    /// than the window.
    pub fn accept(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        // `check` refused u64::MAX, so this cannot overflow.
        let n = counter + 1;
        if n > self.top {
            let current = self.top / WORD_BITS;
            let target = n / WORD_BITS;
            let advance = (target - current).min(WORDS as u64);
            for i in 1..=advance {
                // Truncation is the modulus: WORDS divides 2^64.
                self.ring[(current.wrapping_add(i) as usize) & (WORDS - 1)] = 0;
            }
            self.top = n;
        }
        let (word, bit) = position(n);
        self.ring[word] |= bit;
        true
    }
}

impl Default for ReplayWindow {
    fn default() -> ReplayWindow {
        ReplayWindow::new()
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("highest", &self.highest())
            .finish_non_exhaustive()
    }
}

fn position(n: u64) -> (usize, u64) {
    let word = ((n / WORD_BITS) as usize) & (WORDS - 1);
    (word, 1u64 << (n % WORD_BITS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_counter_is_accepted_once() {
        let mut w = ReplayWindow::new();
        assert!(w.accept(0));
        assert!(!w.accept(0));
        assert!(w.accept(1));
        assert!(!w.accept(1));
        assert_eq!(w.highest(), Some(1));
    }

    #[test]
    fn reordering_inside_the_window_is_fine() {
        let mut w = ReplayWindow::new();
        for c in [5, 3, 9, 4, 0, 8] {
            assert!(w.accept(c), "{c}");
        }
        for c in [5, 3, 9, 4, 0, 8] {
            assert!(!w.accept(c), "{c}");
        }
        assert!(w.accept(1));
    }

    #[test]
    fn the_window_edge_is_accepted_once_and_one_beyond_is_refused() {
        let mut w = ReplayWindow::new();
        let top = 10_000;
        assert!(w.accept(top));
        let edge = top - REPLAY_WINDOW;
        assert!(!w.check(edge - 1));
        assert!(!w.accept(edge - 1), "just outside the window");
        assert!(w.accept(edge), "just inside the window");
        assert!(!w.accept(edge), "the second time is a replay");
    }

    #[test]
    fn a_big_jump_forgets_everything_behind() {
        let mut w = ReplayWindow::new();
        for c in 0..100 {
            assert!(w.accept(c));
        }
        assert!(w.accept(1_000_000));
        assert!(!w.accept(99));
        assert!(w.accept(1_000_000 - 1));
        assert!(w.accept(1_000_000 - REPLAY_WINDOW));
    }

    #[test]
    fn extreme_counters_do_not_overflow() {
        let mut w = ReplayWindow::new();
        assert!(!w.accept(u64::MAX));
        assert!(w.accept(u64::MAX - 1));
        assert!(!w.accept(u64::MAX - 1));
        assert!(!w.accept(0));
    }

    proptest! {
        /// The window agrees with a model that remembers every counter.
        #[test]
        fn matches_a_set_model(counters in proptest::collection::vec(0u64..5000, 0..400)) {
            let mut w = ReplayWindow::new();
            let mut seen = std::collections::BTreeSet::new();
            let mut max: Option<u64> = None;
            for c in counters {
                let in_window = max.is_none_or(|m| c + REPLAY_WINDOW >= m);
                let expected = in_window && !seen.contains(&c);
                prop_assert_eq!(w.accept(c), expected, "counter {}", c);
                if expected {
                    seen.insert(c);
                    max = Some(max.map_or(c, |m| m.max(c)));
                }
            }
        }
    }
}
