//! Logs on stderr: a minimal `tracing` subscriber behind `--log`.
//!
//! The library logs through `tracing` (seeds that do not resolve, the
//! address chosen to advertise, a key file readable by others, ...). A
//! full subscriber (`tracing-subscriber`) would be one more dependency of
//! every build with the `agent` feature, for what an agent needs: a level
//! per target prefix and one line per event. Spans are not shown (one
//! process runs one node, so the `node` span would say nothing new).
//!
//! The filter grammar is the common subset of `RUST_LOG` / `EnvFilter`:
//! `LEVEL` and `TARGET=LEVEL`, comma-separated; the longest matching target
//! wins, and a target without a directive logs at the bare `LEVEL` (or not
//! at all if there is none).

use std::fmt::{self, Write as _};
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

use crate::output::clock;

/// `--log` when not given: the library's notable moments, everyone's
/// warnings.
pub const DEFAULT_LOG: &str = "warn,scuttlewire=info";

/// A parsed `--log` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter {
    /// For targets without a directive.
    default: LevelFilter,
    /// `(target prefix, level)`, longest prefix first.
    targets: Vec<(String, LevelFilter)>,
}

impl LogFilter {
    /// Parses `warn,scuttlewire=info,scuttlewire::engine=debug`; empty is
    /// [`DEFAULT_LOG`] (an empty variable is not a request for silence:
    /// that is `off`).
    pub fn parse(text: &str) -> Result<LogFilter, String> {
        if text.trim().is_empty() {
            return LogFilter::parse(DEFAULT_LOG);
        }
        let mut filter = LogFilter {
            default: LevelFilter::OFF,
            targets: Vec::new(),
        };
        for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let level = |s: &str| {
                s.parse::<LevelFilter>().map_err(|_| {
                    format!("{s:?} is not a level (off, error, warn, info, debug, trace)")
                })
            };
            match directive.split_once('=') {
                None => filter.default = level(directive)?,
                Some((target, lvl)) if !target.is_empty() => {
                    filter.targets.push((target.to_owned(), level(lvl)?));
                }
                Some(_) => return Err(format!("{directive:?} has an empty target")),
            }
        }
        // Longest first, so the first match is the most specific; stable,
        // so of two identical targets the first given wins.
        filter
            .targets
            .sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        Ok(filter)
    }

    /// The level in force for `target`.
    fn level_for(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .find(|(prefix, _)| {
                target
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
            })
            .map_or(self.default, |(_, level)| *level)
    }

    /// The most verbose level any target may log at.
    fn max_level(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, l)| *l)
            .fold(self.default, LevelFilter::max)
    }
}

/// Installs the stderr subscriber for the whole process. A second call
/// (tests) is ignored.
pub fn init(filter: LogFilter) {
    let _ = tracing::subscriber::set_global_default(StderrLogger { filter });
}

/// Writes each enabled event as one line on stderr:
/// `12:00:01.123 WARN scuttlewire::node::seeds: seed does not resolve; retrying seed=db:7946`.
struct StderrLogger {
    filter: LogFilter,
}

impl Subscriber for StderrLogger {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // Decided once per call site, so a disabled log costs one branch.
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && *metadata.level() <= self.filter.level_for(metadata.target())
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.filter.max_level())
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut line = LineVisitor::default();
        event.record(&mut line);
        let text = format!(
            "{} {:>5} {}: {}{}\n",
            clock(),
            meta.level().as_str(),
            meta.target(),
            line.message,
            line.fields
        );
        // A closed stderr leaves nowhere to report the failure.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// Collects an event's message and its other fields as ` key=value`.
#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_shows_library_info_and_others_warnings() {
        let f = LogFilter::parse("warn,scuttlewire=info").unwrap();
        assert_eq!(f.level_for("scuttlewire::node::seeds"), LevelFilter::INFO);
        assert_eq!(f.level_for("scuttlewire"), LevelFilter::INFO);
        assert_eq!(f.level_for("scuttlewirex"), LevelFilter::WARN);
        assert_eq!(f.level_for("quinn"), LevelFilter::WARN);
        assert_eq!(f.max_level(), LevelFilter::INFO);
    }

    #[test]
    fn the_longest_target_wins() {
        let f = LogFilter::parse("scuttlewire=info, scuttlewire::engine=trace").unwrap();
        assert_eq!(
            f.level_for("scuttlewire::engine::probe"),
            LevelFilter::TRACE
        );
        assert_eq!(f.level_for("scuttlewire::node"), LevelFilter::INFO);
        assert_eq!(f.level_for("quinn"), LevelFilter::OFF);
    }

    #[test]
    fn bad_directives_are_refused() {
        assert!(LogFilter::parse("loud").is_err());
        assert!(LogFilter::parse("scuttlewire=loud").is_err());
        assert!(LogFilter::parse("=info").is_err());
        assert_eq!(
            LogFilter::parse("off").unwrap().max_level(),
            LevelFilter::OFF
        );
        assert_eq!(
            LogFilter::parse(" ").unwrap(),
            LogFilter::parse(DEFAULT_LOG).unwrap()
        );
    }
}
