//! Rumors: membership updates and user broadcasts piggybacked on every
//! packet, each retransmitted about `retransmit_mult · log10(N + 1)` times,
//! least-sent first, membership before user data.

use crate::wire::proto;

/// What a rumor is about: a newer rumor about the same subject replaces
/// the older one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Subject {
    Member(String),
    Broadcast(String, u64),
}

#[derive(Debug)]
struct Rumor {
    subject: Subject,
    msg: proto::Message,
    sent: u32,
    /// Encoded size, cached.
    size: usize,
}

/// Two queues, membership first.
#[derive(Debug, Default)]
pub(crate) struct Rumors {
    member: Vec<Rumor>,
    user: Vec<Rumor>,
}

impl Rumors {
    pub fn push(&mut self, subject: Subject, msg: proto::Message) {
        let size = prost::Message::encoded_len(&msg);
        let q = match subject {
            Subject::Member(_) => &mut self.member,
            Subject::Broadcast(..) => &mut self.user,
        };
        q.retain(|r| r.subject != subject);
        q.push(Rumor {
            subject,
            msg,
            sent: 0,
            size,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.member.is_empty() && self.user.is_empty()
    }

    /// Takes rumors, least sent first, while `fits(size)` accepts them;
    /// counts a transmission for each and drops those sent `limit` times.
    /// A rumor about `first` (the probe target: the buddy system) goes
    /// before all others.
    pub fn take(
        &mut self,
        limit: u32,
        first: Option<&Subject>,
        mut fits: impl FnMut(usize) -> bool,
    ) -> Vec<proto::Message> {
        let mut out = Vec::new();
        for q in [&mut self.member, &mut self.user] {
            q.sort_by_key(|r| (Some(&r.subject) != first, r.sent));
            for r in q.iter_mut() {
                if fits(r.size) {
                    r.sent += 1;
                    out.push(r.msg.clone());
                }
            }
            q.retain(|r| r.sent < limit);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bc(id: u64) -> proto::Message {
        proto::Message {
            kind: Some(proto::message::Kind::Broadcast(proto::Broadcast {
                origin: "a".into(),
                id,
                payload: vec![0; 10].into(),
            })),
        }
    }

    #[test]
    fn retransmits_up_to_the_limit_least_sent_first() {
        let mut r = Rumors::default();
        r.push(Subject::Broadcast("a".into(), 1), bc(1));
        for _ in 0..3 {
            assert_eq!(r.take(3, None, |_| true).len(), 1);
        }
        assert!(r.is_empty());
        r.push(Subject::Broadcast("a".into(), 2), bc(2));
        r.take(3, None, |_| true);
        r.push(Subject::Broadcast("a".into(), 3), bc(3));
        // Only room for one: the fresh rumor wins.
        let mut room = 1;
        let got = r.take(3, None, |_| {
            let ok = room > 0;
            room -= 1;
            ok
        });
        assert_eq!(got, vec![bc(3)]);
    }

    #[test]
    fn a_newer_rumor_replaces_the_older_about_the_same_subject() {
        let mut r = Rumors::default();
        let s = Subject::Member("x".into());
        r.push(s.clone(), bc(1));
        r.push(s.clone(), bc(2));
        assert_eq!(r.take(5, None, |_| true), vec![bc(2)]);
    }
}
