//! Where the control socket lives: `--control PATH` (or
//! `SCUTTLEWIRE_CONTROL`) on the agent and on every client command, so
//! both find the same socket by the same rule.
//!
//! The default follows where per-user and system runtime files go on
//! Linux: `$XDG_RUNTIME_DIR/scuttlewire/agent.sock` in a login session,
//! `/run/scuttlewire/agent.sock` for root (a system service), and
//! otherwise `/tmp/scuttlewire-<uid>/agent.sock`, whose directory must be
//! the user's own and private (as tmux and ssh-agent require of theirs).
//! `none` turns the socket off.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

/// The value of `--control`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlFlag {
    /// `none`: no control socket.
    Off,
    /// A path.
    Path(PathBuf),
    /// Empty (a variable set to nothing): as if absent.
    Default,
}

/// `--control`: a path, or `none`.
pub fn parse_control(text: &str) -> Result<ControlFlag, String> {
    Ok(match text.trim() {
        "" => ControlFlag::Default,
        "none" => ControlFlag::Off,
        _ => ControlFlag::Path(PathBuf::from(text)),
    })
}

/// A control socket's path, and what its directory must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketPath {
    /// The socket file.
    pub path: PathBuf,
    /// For the default under `/tmp`: the uid that must own the directory
    /// (with mode 0700).
    pub private_dir_owner: Option<u32>,
}

/// The socket `flag` names (the default when absent); `None` for `none`.
pub fn resolve(flag: Option<&ControlFlag>) -> Option<SocketPath> {
    match flag {
        Some(ControlFlag::Off) => None,
        Some(ControlFlag::Path(path)) => Some(SocketPath {
            path: path.clone(),
            private_dir_owner: None,
        }),
        Some(ControlFlag::Default) | None => Some(default_path(
            std::env::var_os("XDG_RUNTIME_DIR"),
            effective_uid(),
        )),
    }
}

/// The default socket for a process with runtime directory `xdg` and
/// effective uid `euid`.
fn default_path(xdg: Option<OsString>, euid: Option<u32>) -> SocketPath {
    // The XDG spec: a relative path in the variable is invalid, ignore it.
    let xdg = xdg.map(PathBuf::from).filter(|d| d.is_absolute());
    let (path, private_dir_owner) = match (xdg, euid) {
        (Some(dir), _) => (dir.join("scuttlewire"), None),
        (None, Some(0)) => (PathBuf::from("/run/scuttlewire"), None),
        (None, Some(uid)) => (PathBuf::from(format!("/tmp/scuttlewire-{uid}")), Some(uid)),
        // No /proc to learn the uid from: a shared name, still checked for
        // nothing; give --control on such a system.
        (None, None) => (PathBuf::from("/tmp/scuttlewire"), None),
    };
    SocketPath {
        path: path.join("agent.sock"),
        private_dir_owner,
    }
}

/// This process's effective uid: the second field of the `Uid:` line of
/// `/proc/self/status`, else the owner of `/proc/self`. (The standard
/// library has no `geteuid`, and this binary takes no `libc` dependency.)
fn effective_uid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1))
                .and_then(|euid| euid.parse().ok())
        })
        .or_else(|| std::fs::metadata("/proc/self").ok().map(|m| m.uid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_follows_the_runtime_dir_then_root_then_tmp() {
        let at = |xdg: Option<&str>, euid| default_path(xdg.map(OsString::from), euid);
        assert_eq!(
            at(Some("/run/user/1000"), Some(1000)).path,
            PathBuf::from("/run/user/1000/scuttlewire/agent.sock")
        );
        assert_eq!(
            at(None, Some(0)).path,
            PathBuf::from("/run/scuttlewire/agent.sock")
        );
        let user = at(None, Some(1000));
        assert_eq!(user.path, PathBuf::from("/tmp/scuttlewire-1000/agent.sock"));
        assert_eq!(user.private_dir_owner, Some(1000));
        assert_eq!(
            at(Some("relative"), Some(0)).path,
            PathBuf::from("/run/scuttlewire/agent.sock"),
            "a relative XDG_RUNTIME_DIR is ignored"
        );
    }

    #[test]
    fn none_turns_the_socket_off_and_empty_means_the_default() {
        assert_eq!(parse_control("none"), Ok(ControlFlag::Off));
        assert_eq!(parse_control(""), Ok(ControlFlag::Default));
        assert_eq!(
            parse_control("/x/a.sock"),
            Ok(ControlFlag::Path("/x/a.sock".into()))
        );
        assert_eq!(resolve(Some(&ControlFlag::Off)), None);
        assert!(resolve(None).is_some());
    }

    #[test]
    fn this_process_has_an_effective_uid() {
        assert!(effective_uid().is_some());
    }
}
