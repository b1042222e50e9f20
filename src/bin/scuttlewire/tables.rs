//! The readable form of the client commands' answers: aligned tables
//! (`members`, `entries`, `keys list`) and `name value` lines (`metrics`).
//!
//! Built from the JSON answers themselves (the same ones `--json`
//! prints), so the two forms cannot drift apart. Values come from other
//! nodes' state: control characters in them are escaped, so a value cannot
//! rewrite the operator's terminal.

use serde_json::{Map, Value};

/// `rows` under `headers`, columns two spaces apart, the last one not
/// padded; each line ends with `\n`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = width.saturating_sub(cell.chars().count()) + 2;
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `text` with control characters escaped (`\n`, `\u{1b}`, ...).
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// A JSON value as a cell: strings bare (escaped), `null` as `-`.
fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => printable(s),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// `members`: NAME ADDRESS STATUS INCARNATION GENERATION and a column per
/// chosen key, sorted by name.
pub fn members(list: &[Value], keys: &[String]) -> String {
    let mut headers = vec!["NAME", "ADDRESS", "STATUS", "INCARNATION", "GENERATION"];
    headers.extend(keys.iter().map(String::as_str));
    let mut rows: Vec<Vec<String>> = list
        .iter()
        .map(|m| {
            let mut row: Vec<String> = ["name", "addr", "status", "incarnation", "generation"]
                .iter()
                .map(|f| cell(&m[*f]))
                .collect();
            for key in keys {
                let value = m["keys"]
                    .as_array()
                    .and_then(|values| values.iter().find(|v| v["key"] == key.as_str()))
                    .map_or(Value::Null, |v| v["value"].clone());
                row.push(cell(&value));
            }
            row
        })
        .collect();
    rows.sort();
    table(&headers, &rows)
}

/// `entries`: KEY VALUE VERSION.
pub fn entries(list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| vec![cell(&e["key"]), cell(&e["value"]), cell(&e["version"])])
        .collect();
    table(&["KEY", "VALUE", "VERSION"], &rows)
}

/// `keys list`: each key with how many healthy members hold it and seal
/// with it, and what this agent does with it; then the members whose keys
/// are unknown.
pub fn keys(answer: &Map<String, Value>) -> String {
    let total = answer.get("healthy").map_or_else(|| "?".to_owned(), cell);
    let rows: Vec<Vec<String>> = answer
        .get("keys")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|k| {
            vec![
                cell(&k["id"]),
                format!("{}/{total}", cell(&k["installed"])),
                format!("{}/{total}", cell(&k["primary"])),
                cell(&k["here"]),
            ]
        })
        .collect();
    let mut out = table(&["KEY", "INSTALLED", "PRIMARY", "HERE"], &rows);
    let silent = answer.get("no_keys").and_then(Value::as_array);
    for name in silent.map(Vec::as_slice).unwrap_or_default() {
        out.push_str(&format!(
            "{} publishes no keys (not encrypted, or not heard from yet)\n",
            cell(name)
        ));
    }
    out
}

/// `metrics`: one `name value` line per counter, sorted by name.
pub fn metrics(counters: &Map<String, Value>) -> String {
    let width = counters.keys().map(String::len).max().unwrap_or(0);
    counters
        .iter()
        .map(|(name, value)| format!("{name:<width$}  {}\n", cell(value)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_members_table_is_aligned_sorted_and_has_a_column_per_key() {
        let list = vec![
            json!({"name":"b","addr":"127.0.0.1:2","status":"left","incarnation":0,
                   "generation":7,"keys":[{"key":"role","value":null}]}),
            json!({"name":"a","addr":"127.0.0.1:1","status":"alive","incarnation":1,
                   "generation":5,"keys":[{"key":"role","value":"web\u{1b}[2J"}]}),
        ];
        let text = members(&list, &["role".to_owned()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAME  ADDRESS      STATUS  INCARNATION  GENERATION  role"
        );
        assert_eq!(
            lines[1],
            r"a     127.0.0.1:1  alive   1            5           web\u{1b}[2J"
        );
        assert_eq!(
            lines[2],
            "b     127.0.0.1:2  left    0            7           -"
        );
    }

    #[test]
    fn key_usage_is_shown_out_of_the_healthy_members() {
        let answer = json!({"healthy":3,"keys":[{"id":"00112233445566ff","installed":3,
            "primary":1,"here":"primary"}],"no_keys":["c"]});
        let text = keys(answer.as_object().unwrap());
        assert!(
            text.contains("00112233445566ff  3/3        1/3      primary"),
            "{text}"
        );
        assert!(text.contains("c publishes no keys"), "{text}");
    }

    #[test]
    fn metrics_are_name_value_lines() {
        let counters = json!({"engine.packets_sent": 12, "members.alive": 3});
        let text = metrics(counters.as_object().unwrap());
        assert_eq!(text, "engine.packets_sent  12\nmembers.alive        3\n");
    }
}
