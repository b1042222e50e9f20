//! Incarnation precedence, case by case.

use super::*;
use MemberState as S;
use MemberStatus as M;

#[test]
fn precedence_follows_incarnations() {
    // (rumor, its incarnation, record, record's incarnation, supersedes)
    let cases = [
        (S::Alive, 2, M::Suspect, 1, true),
        (S::Alive, 1, M::Suspect, 1, false),
        (S::Alive, 2, M::Left, 1, true),
        (S::Suspect, 1, M::Alive, 1, true),
        (S::Suspect, 1, M::Suspect, 1, false),
        (S::Suspect, 2, M::Suspect, 1, true),
        (S::Suspect, 2, M::Left, 1, false),
        (S::Suspect, 0, M::Alive, 1, false),
        (S::Dead, 1, M::Suspect, 1, true),
        (S::Dead, 1, M::Dead, 1, false),
        (S::Dead, 0, M::Alive, 1, false),
        (S::Left, 1, M::Dead, 1, true),
        (S::Left, 0, M::Alive, 1, false),
        (S::Left, 3, M::Left, 1, false),
    ];
    for (state, inc, cur, cur_inc, want) in cases {
        assert_eq!(
            supersedes(state, inc, cur, cur_inc),
            want,
            "{state:?}@{inc} over {cur:?}@{cur_inc}"
        );
    }
    // A repeat of the suspicion we hold is a confirmation, not news.
    assert!(confirms(S::Suspect, 1, M::Suspect, 1));
    assert!(!confirms(S::Suspect, 2, M::Suspect, 1));
    assert!(!confirms(S::Dead, 1, M::Suspect, 1));
}
