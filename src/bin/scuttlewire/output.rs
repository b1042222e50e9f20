//! What the agent prints on stdout: one line per event, JSON or readable.
//!
//! Every line is first built as a [`Line`] (an event name and ordered
//! fields holding JSON values), then rendered either way, so `--json` and
//! the readable form always carry the same information. JSON lines are
//! written by hand around `serde_json` values so that `ts_ms` and `event`
//! come first and the fields keep the documented order (serde_json's map
//! would sort the keys). Scripts and the multi-host test parse these lines:
//! field names are a contract.

// Event lines carry the wall-clock time they were printed at.
#![allow(clippy::disallowed_methods)]

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use scuttlewire::node::{DiscoveryStats, NodeMetrics};
use scuttlewire::{Event, Lagged, Member, MemberStatus, NodeId};
use serde_json::{Value, json};

/// One output line before rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    event: &'static str,
    fields: Vec<(&'static str, Value)>,
}

impl Line {
    fn new(event: &'static str) -> Line {
        Line {
            event,
            fields: Vec::new(),
        }
    }

    fn with(mut self, key: &'static str, value: impl Into<Value>) -> Line {
        self.fields.push((key, value.into()));
        self
    }

    /// `name`, `addr` and `generation` of a node, under `name_key`.
    fn node(self, name_key: &'static str, id: &NodeId) -> Line {
        self.with(name_key, id.name.as_str())
            .with("addr", id.addr.to_string())
            .with("generation", id.generation)
    }

    /// `{"ts_ms":..,"event":..,<fields in order>}`.
    pub fn to_json(&self, ts_ms: u64) -> String {
        let mut out = format!("{{\"ts_ms\":{ts_ms},\"event\":{}", Value::from(self.event));
        for (key, value) in &self.fields {
            out.push(',');
            out.push_str(&Value::from(*key).to_string());
            out.push(':');
            out.push_str(&value.to_string());
        }
        out.push('}');
        out
    }

    /// `12:00:01.123 member_joined b 10.0.0.2:7946 generation=17`: names and
    /// addresses bare, other fields as `key=value`.
    pub fn to_human(&self, ts_ms: u64) -> String {
        render_human(ts_ms, self.event, self.fields.iter().map(|(k, v)| (*k, v)))
    }
}

/// The readable form of one line, from its parts.
fn render_human<'a>(
    ts_ms: u64,
    event: &str,
    fields: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> String {
    let mut out = format!("{} {event}", clock_of(ts_ms));
    for (key, value) in fields {
        out.push(' ');
        match key {
            "name" | "node" | "origin" | "addr" => out.push_str(&human(value)),
            "members" => {
                out.push_str("members=");
                out.push_str(&human_members(value));
            }
            _ => {
                out.push_str(key);
                out.push('=');
                out.push_str(&human(value));
            }
        }
    }
    out
}

/// The order in which [`event`] and the other line builders write fields;
/// [`json_to_human`] restores it (a parsed JSON object sorts its keys).
const FIELD_ORDER: &[&str] = &[
    "name",
    "node",
    "origin",
    "addr",
    "old_generation",
    "generation",
    "status",
    "key",
    "value",
    "version",
    "payload",
    "missed",
    "transport",
    "cluster",
    "told",
    "debug",
];

/// The readable form of a JSON line as [`Line::to_json`] wrote it (what
/// `scuttlewire monitor` receives); `None` if it is not such a line.
/// Unknown fields come last, by name.
pub fn json_to_human(line: &Value) -> Option<String> {
    let object = line.as_object()?;
    let ts_ms = object.get("ts_ms")?.as_u64()?;
    let event = object.get("event")?.as_str()?;
    let mut fields: Vec<(&str, &Value)> = object
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "ts_ms" | "event"))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let rank = |k: &str| {
        FIELD_ORDER
            .iter()
            .position(|f| *f == k)
            .unwrap_or(usize::MAX)
    };
    fields.sort_by_key(|(k, _)| rank(k));
    Some(render_human(ts_ms, event, fields))
}

/// A value in a readable line: strings bare unless they need quotes,
/// `null` as `-`.
fn human(value: &Value) -> String {
    match value {
        Value::String(s) => {
            let plain = !s.is_empty()
                && !s
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '='));
            if plain { s.clone() } else { value.to_string() }
        }
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// The report's members as `a:alive,b:left`.
fn human_members(value: &Value) -> String {
    let Value::Array(members) = value else {
        return human(value);
    };
    let one = |m: &Value| format!("{}:{}", human(&m["name"]), human(&m["status"]));
    members.iter().map(one).collect::<Vec<_>>().join(",")
}

/// The first line: this node is up.
pub fn started(id: &NodeId, transport: &str, cluster: &str) -> Line {
    Line::new("started")
        .node("name", id)
        .with("transport", transport)
        .with("cluster", cluster)
}

/// A line for one item of the node's event stream: the event, or a
/// `lagged` line saying how many events this subscriber missed.
pub fn stream_item(item: &Result<Event, Lagged>) -> Line {
    match item {
        Ok(e) => event(e),
        Err(Lagged { missed }) => Line::new("lagged").with("missed", *missed),
    }
}

/// A line for one library event.
pub fn event(event: &Event) -> Line {
    match event {
        Event::MemberJoined(id) => Line::new("member_joined").node("node", id),
        Event::MemberRestarted { old, new } => Line::new("member_restarted")
            .with("node", new.name.as_str())
            .with("addr", new.addr.to_string())
            .with("old_generation", old.generation)
            .with("generation", new.generation),
        Event::MemberStatus { node, status } => Line::new("member_status")
            .node("node", node)
            .with("status", status_name(*status)),
        Event::MemberRemoved(id) => Line::new("member_removed").node("node", id),
        Event::KeySet {
            node,
            key,
            value,
            version,
        } => Line::new("key_set")
            .with("node", node.name.as_str())
            .with("key", key.as_str())
            .with("value", String::from_utf8_lossy(value))
            .with("version", *version),
        Event::KeyDeleted { node, key, version } => Line::new("key_deleted")
            .with("node", node.name.as_str())
            .with("key", key.as_str())
            .with("version", *version),
        Event::Broadcast { origin, payload } => Line::new("broadcast")
            .with("origin", origin.as_str())
            .with("payload", String::from_utf8_lossy(payload)),
        // An event this agent does not know yet (the enum is
        // non-exhaustive): shown, not lost.
        other => Line::new("other").with("debug", format!("{other:?}")),
    }
}

/// The periodic report: every member (this node included) sorted by name,
/// the counts by status, and the counters worth watching.
pub fn report(mut members: Vec<Member>, metrics: &NodeMetrics) -> Line {
    members.sort_by(|a, b| (&a.id.name, a.id.generation).cmp(&(&b.id.name, b.id.generation)));
    let members: Vec<Value> = members
        .iter()
        .map(|m| {
            json!({
                "name": m.id.name,
                "addr": m.id.addr.to_string(),
                "generation": m.id.generation,
                "status": status_name(m.status),
                "incarnation": m.incarnation,
            })
        })
        .collect();
    let counts = &metrics.members;
    Line::new("report")
        .with("members", members)
        .with("alive", counts.alive)
        .with("suspect", counts.suspect)
        .with("dead", counts.dead)
        .with("left", counts.left)
        .with("engine_drops", metrics.engine.drops.total())
        .with("seal_dropped", metrics.seal.map(|s| s.dropped()))
        .with("packets_received", metrics.engine.packets_received)
        .with("packets_sent", metrics.engine.packets_sent)
        .with("discovery", metrics.discovery.as_ref().map(discovery))
        .with("signed_refused", signed_refused(&metrics.engine))
}

/// Signed state refused, by reason (all zero unless signatures are on).
fn signed_refused(e: &scuttlewire::engine::Metrics) -> Value {
    json!({
        "invalid_signature": e.signatures_invalid,
        "unsigned": e.unsigned_refused,
        "identity": e.identities_refused,
        "unverifiable": e.deltas_unverifiable,
    })
}

/// LAN discovery's counters in a report (`null` without `--discovery`).
fn discovery(d: &DiscoveryStats) -> Value {
    json!({
        "sent": d.sent,
        "answered": d.answered,
        "received": d.received,
        "own": d.own,
        "joined_from": d.joined_from,
        "dropped_foreign": d.dropped_foreign,
        "dropped_malformed": d.dropped_malformed,
        "dropped_unsealed": d.dropped_unsealed,
        "send_errors": d.send_errors,
    })
}

/// A signal arrived; the node is leaving.
pub fn leaving() -> Line {
    Line::new("leaving")
}

/// The node left; `told` members were told directly.
pub fn stopped(told: usize) -> Line {
    Line::new("stopped").with("told", told)
}

/// A member status as printed and sent: `alive`, `suspect`, `dead`, `left`.
pub fn status_name(status: MemberStatus) -> &'static str {
    match status {
        MemberStatus::Alive => "alive",
        MemberStatus::Suspect => "suspect",
        MemberStatus::Dead => "dead",
        MemberStatus::Left => "left",
    }
}

/// Prints lines on stdout in the chosen form.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// `--json`.
    pub json: bool,
}

impl Output {
    /// Prints `line` stamped with the current time and flushes at once:
    /// readers follow stdout through a pipe, where it is block-buffered.
    pub fn print(&self, line: &Line) {
        let ts = now_ms();
        let text = if self.json {
            line.to_json(ts)
        } else {
            line.to_human(ts)
        };
        let mut out = std::io::stdout().lock();
        // A reader that went away must not stop the node: the agent keeps
        // running (and leaves gracefully on its signal) without an audience.
        let _ = writeln!(out, "{text}").and_then(|()| out.flush());
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The current time of day, UTC, as `HH:MM:SS.mmm` (what a person reading
/// a terminal wants; JSON lines carry the full `ts_ms`).
pub fn clock() -> String {
    clock_of(now_ms())
}

fn clock_of(ts_ms: u64) -> String {
    let ms_of_day = ts_ms % 86_400_000;
    let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    format!("{h:02}:{m:02}:{:02}.{:03}", rest / 1_000, rest % 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use scuttlewire::engine::{MemberCounts, Metrics};

    fn id(name: &str, generation: u64) -> NodeId {
        NodeId::new(
            name.to_owned(),
            generation,
            "10.0.0.2:7946".parse().unwrap(),
        )
    }

    fn parse(line: &Line) -> Value {
        serde_json::from_str(&line.to_json(1_700_000_000_123)).unwrap()
    }

    #[test]
    fn a_status_change_renders_as_json_with_every_field() {
        let line = event(&Event::MemberStatus {
            node: id("b", 7),
            status: MemberStatus::Left,
        });
        let v = parse(&line);
        assert_eq!(v["ts_ms"], 1_700_000_000_123u64);
        assert_eq!(v["event"], "member_status");
        assert_eq!(v["node"], "b");
        assert_eq!(v["addr"], "10.0.0.2:7946");
        assert_eq!(v["generation"], 7);
        assert_eq!(v["status"], "left");
        assert!(
            line.to_json(1)
                .starts_with(r#"{"ts_ms":1,"event":"member_status","node":"b""#)
        );
    }

    #[test]
    fn key_values_are_lossy_utf8_and_restarts_name_both_generations() {
        let v = parse(&event(&Event::KeySet {
            node: id("b", 7),
            key: "role".into(),
            value: Bytes::from_static(b"w\"eb\xff"),
            version: 3,
        }));
        assert_eq!(v["value"], "w\"eb\u{fffd}");
        assert_eq!(v["version"], 3);
        let v = parse(&event(&Event::MemberRestarted {
            old: id("b", 7),
            new: id("b", 9),
        }));
        assert_eq!(
            (v["old_generation"].as_u64(), v["generation"].as_u64()),
            (Some(7), Some(9))
        );
    }

    #[test]
    fn a_report_lists_members_by_name_with_counters() {
        let member = |name, status| Member {
            id: id(name, 1),
            status,
            incarnation: 2,
        };
        let metrics = NodeMetrics {
            engine: Metrics {
                packets_received: 10,
                packets_sent: 11,
                ..Metrics::default()
            },
            members: MemberCounts {
                alive: 1,
                left: 1,
                ..MemberCounts::default()
            },
            ..NodeMetrics::default()
        };
        let line = report(
            vec![
                member("b", MemberStatus::Left),
                member("a", MemberStatus::Alive),
            ],
            &metrics,
        );
        let v = parse(&line);
        assert_eq!(v["members"][0]["name"], "a");
        assert_eq!(v["members"][1]["status"], "left");
        assert_eq!(v["members"][1]["incarnation"], 2);
        assert_eq!(
            (v["alive"].as_u64(), v["left"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(v["engine_drops"], 0);
        assert!(v["seal_dropped"].is_null());
        assert!(v["discovery"].is_null());
        assert_eq!(v["packets_sent"], 11);
        let human = line.to_human(0);
        assert!(
            human.starts_with("00:00:00.000 report members=a:alive,b:left alive=1"),
            "{human}"
        );
        assert!(human.contains("seal_dropped=-"), "{human}");
    }

    #[test]
    fn a_report_carries_the_discovery_counters() {
        let metrics = NodeMetrics {
            discovery: Some(DiscoveryStats {
                sent: 3,
                joined_from: 2,
                dropped_unsealed: 5,
                ..DiscoveryStats::default()
            }),
            ..NodeMetrics::default()
        };
        let v = parse(&report(Vec::new(), &metrics));
        assert_eq!(v["discovery"]["sent"], 3);
        assert_eq!(v["discovery"]["joined_from"], 2);
        assert_eq!(v["discovery"]["dropped_unsealed"], 5);
        assert_eq!(v["discovery"]["dropped_foreign"], 0);
    }

    #[test]
    fn a_json_line_reads_back_as_the_readable_line() {
        let line = event(&Event::KeySet {
            node: id("b", 7),
            key: "role".into(),
            value: Bytes::from_static(b"web"),
            version: 3,
        });
        let json: Value = serde_json::from_str(&line.to_json(3_723_004)).unwrap();
        assert_eq!(json_to_human(&json), Some(line.to_human(3_723_004)));
        assert_eq!(json_to_human(&serde_json::json!({"event": "x"})), None);
    }

    #[test]
    fn readable_lines_put_names_bare_and_quote_odd_values() {
        let line = event(&Event::MemberJoined(id("b", 5)));
        assert_eq!(
            line.to_human(3_723_004),
            "01:02:03.004 member_joined b 10.0.0.2:7946 generation=5"
        );
        let line = event(&Event::Broadcast {
            origin: "a".into(),
            payload: Bytes::from_static(b"hello world"),
        });
        assert!(
            line.to_human(0)
                .ends_with(r#"broadcast a payload="hello world""#)
        );
    }

    #[test]
    fn a_lag_becomes_a_lagged_line_with_the_count() {
        let line = stream_item(&Err(Lagged { missed: 12 }));
        let v = parse(&line);
        assert_eq!(
            (v["event"].as_str(), v["missed"].as_u64()),
            (Some("lagged"), Some(12))
        );
    }
}
