//! The control protocol's messages: requests, answers and how state values
//! travel in them (`docs/OPERATIONS.md` is the reference; keep the two in
//! step).
//!
//! A request is one JSON object per line, `{"v":1,"cmd":"<name>",...}`;
//! the answer is one line, `{"ok":true,...}` or `{"ok":false,"error":"..."}`
//! (`monitor` then streams event lines). Requests come from whoever can
//! open the socket, so [`Request::parse`] checks every field and says
//! which one is wrong; nothing here panics on what a peer sends.
//!
//! A state value is bytes. In JSON it is `"value"`: the bytes as UTF-8
//! (invalid sequences replaced by U+FFFD), plus `"base64"`: the exact bytes,
//! only when they are not valid UTF-8, so text stays readable and binary
//! stays exact.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use scuttlewire::seal::{Key, KeyId};
use serde_json::{Map, Value, json};

/// The protocol version this binary speaks (`"v"` of every request).
pub const VERSION: u64 = 1;

/// One operator request.
#[derive(Debug)]
pub enum Request {
    /// Every member, and the values of `keys` in each one's state.
    Members { keys: Vec<String> },
    /// The value of `key` in the state of `node`, as known to the agent.
    Get { node: String, key: String },
    /// Sets `key` of the agent's own node.
    Set { key: String, value: Bytes },
    /// Deletes `key` of the agent's own node.
    Delete { key: String },
    /// Every live key of `node` with value and version.
    Entries { node: String },
    /// The cluster-wide view of the encryption keys.
    KeysList,
    /// Installs a key (not as primary).
    KeysInstall { key: Key },
    /// Makes an installed key primary; refused unless safe or `force`.
    KeysUse { id: KeyId, force: bool },
    /// Uninstalls a key; refused unless safe or `force`.
    KeysRemove { id: KeyId, force: bool },
    /// Leave the cluster and stop the agent.
    Leave,
    /// Stream every event until the client disconnects.
    Monitor,
    /// The node's counters.
    Metrics,
}

impl Request {
    /// The `"cmd"` name, also the prefix of this request's error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Members { .. } => "members",
            Request::Get { .. } => "get",
            Request::Set { .. } => "set",
            Request::Delete { .. } => "delete",
            Request::Entries { .. } => "entries",
            Request::KeysList => "keys.list",
            Request::KeysInstall { .. } => "keys.install",
            Request::KeysUse { .. } => "keys.use",
            Request::KeysRemove { .. } => "keys.remove",
            Request::Leave => "leave",
            Request::Monitor => "monitor",
            Request::Metrics => "metrics",
        }
    }

    /// Parses one request line; the error says what is wrong with it.
    pub fn parse(line: &str) -> Result<Request, String> {
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("request is not JSON: {e}"))?;
        let Value::Object(fields) = value else {
            return Err("request is not a JSON object".to_owned());
        };
        let r = Fields(&fields);
        match fields.get("v").and_then(Value::as_u64) {
            Some(VERSION) => {}
            Some(v) => return Err(format!("protocol version {v} is not spoken here (v1 is)")),
            None => return Err(r#"request has no "v" (the protocol version, 1)"#.to_owned()),
        }
        let cmd = r.string("cmd")?;
        let request = match cmd.as_str() {
            "members" => Request::Members {
                keys: r.strings("keys")?,
            },
            "get" => Request::Get {
                node: r.string("node")?,
                key: r.string("key")?,
            },
            "set" => Request::Set {
                key: r.string("key")?,
                value: decode_value(&fields)?,
            },
            "delete" => Request::Delete {
                key: r.string("key")?,
            },
            "entries" => Request::Entries {
                node: r.string("node")?,
            },
            "keys.list" => Request::KeysList,
            "keys.install" => Request::KeysInstall {
                key: Key::from_base64(&r.string("key")?).map_err(|e| format!("\"key\": {e}"))?,
            },
            "keys.use" => Request::KeysUse {
                id: r.key_id()?,
                force: r.flag("force")?,
            },
            "keys.remove" => Request::KeysRemove {
                id: r.key_id()?,
                force: r.flag("force")?,
            },
            "leave" => Request::Leave,
            "monitor" => Request::Monitor,
            "metrics" => Request::Metrics,
            other => return Err(format!("unknown command {other:?}")),
        };
        Ok(request)
    }

    /// The request as one JSON line (what the client sends).
    pub fn to_line(&self) -> String {
        let mut m = Map::new();
        m.insert("v".into(), VERSION.into());
        m.insert("cmd".into(), self.name().into());
        let mut put = |k: &str, v: Value| {
            m.insert(k.into(), v);
        };
        match self {
            Request::Members { keys } => put("keys", json!(keys)),
            Request::Get { node, key } => {
                put("node", json!(node));
                put("key", json!(key));
            }
            Request::Set { key, value } => {
                put("key", json!(key));
                for (k, v) in value_fields(value) {
                    put(&k, v);
                }
            }
            Request::Delete { key } => put("key", json!(key)),
            Request::Entries { node } => put("node", json!(node)),
            Request::KeysInstall { key } => put("key", json!(key.to_base64())),
            Request::KeysUse { id, force } | Request::KeysRemove { id, force } => {
                put("id", json!(id.to_string()));
                put("force", json!(force));
            }
            Request::KeysList | Request::Leave | Request::Monitor | Request::Metrics => {}
        }
        Value::Object(m).to_string()
    }
}

/// Typed access to a request's fields, with errors naming the field.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn string(&self, name: &str) -> Result<String, String> {
        match self.0.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("{name:?} must be a string")),
            None => Err(format!("{name:?} is missing")),
        }
    }

    /// An array of strings; absent is empty.
    fn strings(&self, name: &str) -> Result<Vec<String>, String> {
        let bad = || format!("{name:?} must be an array of strings");
        match self.0.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
                .collect(),
            Some(_) => Err(bad()),
        }
    }

    /// A boolean; absent is false.
    fn flag(&self, name: &str) -> Result<bool, String> {
        match self.0.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(format!("{name:?} must be true or false")),
        }
    }

    fn key_id(&self) -> Result<KeyId, String> {
        self.string("id")?
            .parse()
            .map_err(|e| format!("\"id\": {e}"))
    }
}

/// `"value"` (lossy UTF-8) and, when the bytes are not UTF-8, `"base64"`.
pub fn value_fields(value: &[u8]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("value".into(), String::from_utf8_lossy(value).into());
    if std::str::from_utf8(value).is_err() {
        m.insert("base64".into(), STANDARD.encode(value).into());
    }
    m
}

/// The bytes of a value written by [`value_fields`]: `"base64"` when
/// present (exact), else the UTF-8 of `"value"`.
pub fn decode_value(fields: &Map<String, Value>) -> Result<Bytes, String> {
    match (fields.get("base64"), fields.get("value")) {
        (Some(Value::String(b64)), _) => STANDARD
            .decode(b64)
            .map(Bytes::from)
            .map_err(|_| "\"base64\" is not valid base64".to_owned()),
        (Some(_), _) => Err("\"base64\" must be a string".to_owned()),
        (None, Some(Value::String(text))) => Ok(Bytes::from(text.clone().into_bytes())),
        (None, Some(_)) => Err("\"value\" must be a string".to_owned()),
        (None, None) => Err("\"value\" is missing".to_owned()),
    }
}

/// `{"ok":true, <fields>}`.
pub fn ok(fields: Map<String, Value>) -> Value {
    let mut m = Map::new();
    m.insert("ok".into(), true.into());
    m.extend(fields);
    Value::Object(m)
}

/// `{"ok":false,"error":<message>}`.
pub fn error(message: impl Into<String>) -> Value {
    json!({"ok": false, "error": message.into()})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(request: Request) -> Request {
        Request::parse(&request.to_line()).unwrap()
    }

    #[test]
    fn requests_survive_their_own_encoding() {
        let r = round_trip(Request::Set {
            key: "bin".into(),
            value: Bytes::from_static(b"\xff\x00ok"),
        });
        assert!(
            matches!(r, Request::Set { key, value } if key == "bin" && value[..] == b"\xff\x00ok"[..])
        );
        let r = round_trip(Request::Members {
            keys: vec!["role".into(), "addr".into()],
        });
        assert!(matches!(r, Request::Members { keys } if keys == ["role", "addr"]));
        let key = Key::generate().unwrap();
        let id = key.id();
        let r = round_trip(Request::KeysInstall { key });
        assert!(matches!(r, Request::KeysInstall { key } if key.id() == id));
        let r = round_trip(Request::KeysRemove { id, force: true });
        assert!(matches!(r, Request::KeysRemove { id: got, force: true } if got == id));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let err = |line: &str| Request::parse(line).unwrap_err();
        assert!(err("nope").contains("not JSON"));
        assert!(err("[1]").contains("not a JSON object"));
        assert!(err(r#"{"cmd":"members"}"#).contains(r#""v""#));
        assert!(err(r#"{"v":2,"cmd":"members"}"#).contains("version 2"));
        assert!(err(r#"{"v":1,"cmd":"fly"}"#).contains("unknown command"));
        assert!(err(r#"{"v":1,"cmd":"get","node":"a"}"#).contains(r#""key" is missing"#));
        assert!(err(r#"{"v":1,"cmd":"get","node":1,"key":"k"}"#).contains("must be a string"));
        assert!(err(r#"{"v":1,"cmd":"members","keys":"role"}"#).contains("array"));
        assert!(err(r#"{"v":1,"cmd":"keys.use","id":"xyz"}"#).contains("\"id\""));
        assert!(
            err(r#"{"v":1,"cmd":"keys.use","id":"0011223344556677","force":1}"#).contains("force")
        );
        let e = err(r#"{"v":1,"cmd":"keys.install","key":"c2VjcmV0"}"#);
        assert!(e.contains("\"key\"") && !e.contains("c2VjcmV0"), "{e}");
        assert!(err(r#"{"v":1,"cmd":"set","key":"k","base64":"!"}"#).contains("base64"));
    }

    #[test]
    fn text_values_stay_readable_and_binary_ones_exact() {
        let text = value_fields(b"web");
        assert_eq!(Value::Object(text.clone()), json!({"value": "web"}));
        assert_eq!(decode_value(&text).unwrap(), Bytes::from_static(b"web"));
        let binary = value_fields(b"a\xff");
        assert_eq!(binary["value"], "a\u{fffd}");
        assert_eq!(binary["base64"], "Yf8=");
        assert_eq!(decode_value(&binary).unwrap(), Bytes::from_static(b"a\xff"));
    }

    #[test]
    fn answers_are_ok_or_an_error() {
        let mut fields = Map::new();
        fields.insert("version".into(), 3.into());
        assert_eq!(ok(fields), json!({"ok": true, "version": 3}));
        assert_eq!(error("set: no"), json!({"ok": false, "error": "set: no"}));
    }
}
