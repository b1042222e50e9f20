//! Digests: which version of each node a member holds.
//!
//! A full digest of N nodes costs about 10 bytes per node, so past ~120
//! nodes it no longer fits a 1,400-byte packet. Digests are therefore
//! *paged*: a page lists, in order, (1) the entries the sender needs to ask
//! for, (2) the sender itself, (3) the nodes that changed most recently
//! (fresh updates travel in every exchange), and (4) a window of the rest
//! that rotates round by round, in key order, so every node is compared
//! eventually. A page that lists everything is marked `complete`, which
//! lets the receiver treat absent nodes as unknown to the sender; any other
//! page names its window's first and last keys, and a node in that range
//! absent from the page is unknown to the sender just the same. A node that
//! lacks members (a newcomer whose join rumors have died out) is thus given
//! them within one rotation of its pages, not when a peer's page happens to
//! list them. Every digest also carries the
//! fingerprint of all versions: peers in sync detect it in 8 bytes.

use std::collections::HashSet;

use prost::Message as _;

use super::membership::Members;
use super::msg::state_of;
use super::outbox::DIGEST_FIXED;
use crate::wire::proto::{self, MemberState};

/// One digest line: node key, max version, last collected version, and
/// the node's liveness as the sender holds it (see [`liveness`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line {
    pub key: u64,
    pub version: u64,
    pub gc: u64,
    pub liveness: u64,
}

/// A member's incarnation and status in one number, as digests carry it:
/// `incarnation << 2 | state` (alive 0, suspect 1, dead 2, left 3), so an
/// alive member at incarnation 0 costs one byte and lists of them none.
pub(crate) fn liveness(incarnation: u64, state: MemberState) -> u64 {
    (incarnation << 2) | state as u64
}

/// The inverse of [`liveness`]; incarnations above 2^62 saturate.
pub(crate) fn split_liveness(liveness: u64) -> (u64, MemberState) {
    let state = match liveness & 3 {
        0 => MemberState::Alive,
        1 => MemberState::Suspect,
        2 => MemberState::Dead,
        _ => MemberState::Left,
    };
    (liveness >> 2, state)
}

fn varint(v: u64) -> usize {
    prost::encoding::encoded_len_varint(v)
}

fn cost(l: &Line) -> usize {
    8 + varint(l.version) + varint(l.gc) + varint(l.liveness)
}

struct Page {
    lines: Vec<Line>,
    seen: HashSet<u64>,
    used: usize,
}

impl Page {
    /// Adds a line if it keeps the page within `limit`; a line already
    /// present counts as added.
    fn add(&mut self, l: Line, limit: usize) -> bool {
        if self.seen.contains(&l.key) {
            return true;
        }
        let c = cost(&l);
        if self.used + c > limit {
            return false;
        }
        self.used += c;
        self.seen.insert(l.key);
        self.lines.push(l);
        true
    }
}

/// Our digest line for node `key`, if we know it.
pub(crate) fn line(members: &Members, key: u64) -> Option<Line> {
    members.get(key).map(|k| Line {
        key,
        version: k.state.max_version(),
        gc: k.state.last_gc_version(),
        liveness: liveness(k.incarnation, state_of(k.status)),
    })
}

/// Builds a digest page of at most `room` encoded bytes.
///
/// `unknown` (nodes the sender never heard of) and `requests` (lines where
/// the sender is behind its peer) come first;
/// `page` says whether to add the sender's own page after them, and
/// `cursor` is the rotating window's position, advanced past what was sent.
pub(crate) fn build(
    members: &Members,
    requests: &[Line],
    unknown: &[u64],
    page: bool,
    room: usize,
    cursor: &mut usize,
) -> proto::Digest {
    let mut b = Page {
        lines: Vec::new(),
        seen: HashSet::new(),
        used: DIGEST_FIXED,
    };
    let mut asked = Vec::new();
    for u in unknown {
        if b.used + 8 > room / 2 {
            break;
        }
        b.used += 8;
        asked.push(*u);
    }
    for r in requests {
        if !b.add(*r, room) {
            break;
        }
    }
    let line_of = |key: u64| line(members, key);
    let mut complete = false;
    // The window's first and last keys: a contiguous range of ours.
    let mut range: Option<(u64, u64)> = None;
    if page {
        if let Some(l) = line_of(members.me()) {
            b.add(l, room);
        }
        // Recent changes take up to half of what is left.
        let half = b.used + room.saturating_sub(b.used) / 2;
        for key in members.recent() {
            match line_of(key) {
                Some(l) if b.add(l, half) => {}
                _ => break,
            }
        }
        let mut last = None;
        complete = true;
        for (slot, key) in members.window(*cursor) {
            match line_of(key) {
                Some(l) if b.add(l, room) => {
                    last = Some(slot);
                    range = Some((range.map_or(key, |r: (u64, u64)| r.0), key));
                }
                _ => {
                    complete = false;
                    break;
                }
            }
        }
        if let Some(last) = last {
            *cursor = last + 1;
        }
    }
    if complete {
        range = None;
    }
    let lines = b.lines;
    let mut d = proto::Digest {
        fingerprint: members.fingerprint(),
        node_count: u32::try_from(members.len()).unwrap_or(u32::MAX),
        complete,
        nodes: lines.iter().map(|l| l.key).collect(),
        max_versions: lines.iter().map(|l| l.version).collect(),
        last_gc_versions: if lines.iter().any(|l| l.gc > 0) {
            lines.iter().map(|l| l.gc).collect()
        } else {
            Vec::new()
        },
        unknown: asked,
        liveness: if lines.iter().any(|l| l.liveness > 0) {
            lines.iter().map(|l| l.liveness).collect()
        } else {
            Vec::new()
        },
        window_first: range.map(|r| r.0),
        window_last: range.map(|r| r.1),
    };
    // The estimate above is conservative; this loop only guards it.
    while d.encoded_len() > room && !d.nodes.is_empty() {
        d.nodes.pop();
        d.max_versions.pop();
        d.last_gc_versions.pop();
        d.liveness.pop();
        d.complete = false;
        d.window_first = None;
        d.window_last = None;
    }
    d
}

/// The lines of a received digest (the decoder checked the array lengths).
pub(crate) fn lines(d: &proto::Digest) -> impl Iterator<Item = Line> + '_ {
    d.nodes
        .iter()
        .zip(&d.max_versions)
        .enumerate()
        .map(|(i, (key, version))| Line {
            key: *key,
            version: *version,
            gc: d.last_gc_versions.get(i).copied().unwrap_or(0),
            liveness: d.liveness.get(i).copied().unwrap_or(0),
        })
}
