//! The agent's control socket: a Unix domain socket on which operator
//! commands (`scuttlewire members`, `keys`, `monitor`, ...) reach the
//! running agent. The protocol is in `docs/OPERATIONS.md`.
//!
//! Access is the file system's: the socket is mode 0600 and, at the default
//! path, in a directory of mode 0700, so only the agent's user (and root)
//! may connect; whoever can connect may do anything the protocol offers,
//! key changes included. The socket is bound before the node starts, so an
//! agent that cannot have its socket never joins the cluster; a socket
//! left by an agent that was killed is noticed (nobody answers a connect)
//! and replaced; one that answers means another agent runs there, and this
//! one refuses to start. The file is removed when the agent stops.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use scuttlewire::Node;
use serde_json::Map;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Failure;
use crate::commands::Operator;
use crate::framing::{LineReader, LineWriter};
use crate::output;
use crate::protocol::{self, Request};
use crate::socket_path::SocketPath;

/// A bound control socket, not yet serving (the node is not started).
pub struct ControlSocket {
    listener: UnixListener,
    file: SocketFile,
}

/// Binds the control socket at `path`, replacing a stale one; refuses when
/// another agent listens there. Errors name `--control`.
pub fn bind(path: &SocketPath) -> Result<ControlSocket, Failure> {
    let shown = path.path.display();
    let fail = |message: String| Failure::runtime(format!("--control {shown}: {message}"));
    prepare_directory(path).map_err(fail)?;
    match std::fs::symlink_metadata(&path.path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(fail(
                "exists and is not a socket; remove it or choose another path".into(),
            ));
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(&path.path) {
            Ok(_) => return Err(fail("another agent is listening there".into())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(path = %shown, "removing the stale control socket of an agent that is gone");
                std::fs::remove_file(&path.path)
                    .map_err(|e| fail(format!("cannot remove the stale socket: {e}")))?;
            }
            Err(e) => {
                return Err(fail(format!(
                    "cannot tell whether an agent listens there: {e}"
                )));
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let listener = UnixListener::bind(&path.path).map_err(|e| fail(e.to_string()))?;
    let file = SocketFile::created(path.path.clone());
    std::fs::set_permissions(&path.path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fail(format!("cannot make the socket private (chmod 600): {e}")))?;
    Ok(ControlSocket { listener, file })
}

/// Creates the socket's directory (mode 0700) if missing. The default
/// directory under `/tmp` must be this user's and private: another user
/// could have made it first to catch the socket.
fn prepare_directory(path: &SocketPath) -> Result<(), String> {
    let Some(dir) = path.path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
    }
    if let Some(uid) = path.private_dir_owner {
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if meta.uid() != uid || meta.mode() & 0o077 != 0 {
            return Err(format!(
                "directory {} must belong to uid {uid} with mode 0700 (it has uid {} and mode {:o})",
                dir.display(),
                meta.uid(),
                meta.mode() & 0o777
            ));
        }
    }
    Ok(())
}

impl ControlSocket {
    /// Starts answering requests with `operator`.
    pub fn serve(self, operator: Operator) -> Control {
        // Room for one: a second leave while one is pending is answered
        // "already leaving" at once.
        let (leave_tx, leave_rx) = mpsc::channel(1);
        let task = tokio::spawn(accept(self.listener, operator, leave_tx));
        Control {
            task,
            leaves: leave_rx,
            _file: self.file,
        }
    }
}

/// A serving control socket. Dropping it stops serving and removes the
/// socket file.
pub struct Control {
    task: JoinHandle<()>,
    leaves: mpsc::Receiver<LineWriter>,
    _file: SocketFile,
}

impl Control {
    /// The next `leave` request: the connection to answer once the node
    /// has left. Pending forever once [`Control::close_leaves`] was called.
    pub async fn leave_requested(&mut self) -> LineWriter {
        match self.leaves.recv().await {
            Some(writer) => writer,
            None => std::future::pending().await,
        }
    }

    /// Refuses further `leave` requests ("already leaving") and returns the
    /// ones that arrived meanwhile, to be answered with the first.
    /// Received until `None`, not `try_recv`ed until empty: a connection
    /// that had its slot before the close but had not yet queued would
    /// otherwise be left in the channel, and its client would get no answer.
    pub async fn close_leaves(&mut self) -> Vec<LineWriter> {
        self.leaves.close();
        let mut waiting = Vec::new();
        while let Some(writer) = self.leaves.recv().await {
            waiting.push(writer);
        }
        waiting
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers a `leave` request: `{"ok":true,"told":N}`, or the error. A client
/// that stopped reading cannot hold up the agent's exit.
pub async fn answer_leave(mut writer: LineWriter, result: Result<usize, String>) {
    let answer = match result {
        Ok(told) => {
            let mut fields = Map::new();
            fields.insert("told".into(), told.into());
            protocol::ok(fields)
        }
        Err(e) => protocol::error(format!("leave: {e}")),
    };
    let line = answer.to_string();
    let _ = tokio::time::timeout(Duration::from_secs(2), writer.write_line(&line)).await;
}

/// The socket file, removed on drop if it is still the one this agent
/// created (not one a later agent bound after ours was removed by hand).
struct SocketFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl SocketFile {
    fn created(path: PathBuf) -> SocketFile {
        let identity = identity(&path);
        SocketFile { path, identity }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.identity.is_some() && identity(&self.path) == self.identity {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A file's (device, inode).
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Accepts connections, each served by its own task.
async fn accept(listener: UnixListener, operator: Operator, leaves: mpsc::Sender<LineWriter>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, operator.clone(), leaves.clone()));
            }
            Err(e) => {
                // Out of file descriptors, typically: wait instead of
                // spinning, and keep serving.
                tracing::warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Serves one client: requests and answers, line by line, until it hangs
/// up, asks to `leave`, or turns the connection into a `monitor` stream.
async fn connection(stream: UnixStream, operator: Operator, leaves: mpsc::Sender<LineWriter>) {
    let (read, write) = stream.into_split();
    let mut reader = LineReader::new(read);
    let mut writer = LineWriter::new(write);
    loop {
        let line = match reader.read_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(e) => {
                let answer = protocol::error(format!("unreadable request: {e}"));
                let _ = writer.write_line(&answer.to_string()).await;
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match Request::parse(&line) {
            Err(e) => protocol::error(e),
            Ok(Request::Leave) => {
                if let Err(refused) = leaves.try_send(writer) {
                    let mut writer = refused.into_inner();
                    let answer = protocol::error("leave: the agent is already leaving");
                    let _ = writer.write_line(&answer.to_string()).await;
                }
                return;
            }
            Ok(Request::Monitor) => return monitor(reader, writer, operator.node()).await,
            Ok(request) => operator.answer(request).await,
        };
        if writer.write_line(&answer.to_string()).await.is_err() {
            return;
        }
    }
}

/// Streams every event of `node` as the JSON line the agent prints with
/// `--json`, after an `{"ok":true}`, until the client hangs up or the node
/// stops. A client too slow to read gets a `lagged` line, never holds up
/// the node.
async fn monitor(mut reader: LineReader, mut writer: LineWriter, node: &Node) {
    // Subscribed before the answer: no event after it is missed.
    let mut events = node.events();
    let ack = protocol::ok(Map::new()).to_string();
    if writer.write_line(&ack).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(item) = event else { return };
                let line = output::stream_item(&item).to_json(output::now_ms());
                if writer.write_line(&line).await.is_err() {
                    return;
                }
            }
            // Anything the client sends is ignored; its hanging up ends
            // the stream.
            input = reader.read_line() => {
                if !matches!(input, Ok(Some(_))) {
                    return;
                }
            }
        }
    }
}
