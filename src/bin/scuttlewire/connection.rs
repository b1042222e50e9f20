//! The client's side of the control socket: connect (or say plainly that
//! no agent is there), send a request, read the answer, turn an
//! `{"ok":false}` into the agent's error message.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::net::UnixStream;

use crate::Failure;
use crate::framing::{LineReader, LineWriter};
use crate::protocol::Request;
use crate::socket_path::{self, ControlFlag};

/// How long a command waits for its answer (`monitor` waits forever).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest answer line read: `members --keys` of a large cluster.
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// A connection to an agent's control socket.
pub struct Connection {
    reader: LineReader,
    writer: LineWriter,
    path: String,
}

/// Connects to the socket `--control` names; "no agent at PATH (why)" when
/// nothing answers there.
pub async fn connect(control: Option<&ControlFlag>) -> Result<Connection, Failure> {
    let Some(socket) = socket_path::resolve(control) else {
        return Err(Failure::flag(
            "--control",
            "`none` names no socket; give the path the agent listens on",
        ));
    };
    let path = socket.path.display().to_string();
    let stream = UnixStream::connect(&socket.path)
        .await
        .map_err(|e| Failure::runtime(format!("no agent at {path} ({})", why(&socket.path, &e))))?;
    let (read, write) = stream.into_split();
    Ok(Connection {
        reader: LineReader::with_limit(read, MAX_ANSWER),
        writer: LineWriter::new(write),
        path,
    })
}

/// Why a connect failed, in an operator's words.
fn why(path: &Path, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            "no socket there; is the agent running, with this --control?".into()
        }
        std::io::ErrorKind::ConnectionRefused => {
            "nobody listens: a stale socket left by an agent that is gone".into()
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("permission denied; run as the user the agent runs as ({e})")
        }
        _ if path.as_os_str().len() >= 108 => format!("{e}; the path is too long for a socket"),
        _ => e.to_string(),
    }
}

impl Connection {
    /// The next line as it came (a `monitor` event); `None` when the agent
    /// closed the connection.
    pub async fn next_line(&mut self) -> Result<Option<String>, Failure> {
        let path = &self.path;
        self.reader
            .read_line()
            .await
            .map_err(|e| Failure::runtime(format!("{path}: {e}")))
    }

    pub async fn send(&mut self, request: &Request) -> Result<(), Failure> {
        let path = &self.path;
        self.writer
            .write_line(&request.to_line())
            .await
            .map_err(|e| Failure::runtime(format!("{path}: cannot send the request: {e}")))
    }

    /// The next line, parsed; an `{"ok":false}` answer becomes its error.
    pub async fn answer(&mut self) -> Result<Map<String, Value>, Failure> {
        let path = &self.path;
        let line = match self.reader.read_line().await {
            Ok(Some(line)) => line,
            Ok(None) => {
                return Err(Failure::runtime(format!(
                    "{path}: the agent closed the connection without answering"
                )));
            }
            Err(e) => return Err(Failure::runtime(format!("{path}: {e}"))),
        };
        let parsed: Result<Value, _> = serde_json::from_str(&line);
        let Ok(Value::Object(answer)) = parsed else {
            return Err(Failure::runtime(format!(
                "{path}: an answer that is not a JSON object"
            )));
        };
        match answer.get("ok") {
            Some(Value::Bool(true)) => Ok(answer),
            _ => Err(Failure::runtime(
                answer
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("the agent refused without saying why"),
            )),
        }
    }
}

/// Sends `request` and returns the agent's `ok` answer.
pub async fn call(
    control: Option<&ControlFlag>,
    request: Request,
) -> Result<Map<String, Value>, Failure> {
    let mut connection = connect(control).await?;
    connection.send(&request).await?;
    let path = connection.path.clone();
    tokio::time::timeout(ANSWER_TIMEOUT, connection.answer())
        .await
        .unwrap_or_else(|_| {
            Err(Failure::runtime(format!(
                "{path}: no answer from the agent in {} s",
                ANSWER_TIMEOUT.as_secs()
            )))
        })
}
