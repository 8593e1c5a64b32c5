//! Handing a seccomp notify fd to the seccomp agent at `linux.seccomp.listenerPath`.
//!
//! The runtime-spec: connect an `AF_UNIX`/`SOCK_STREAM` socket to `listenerPath`, send the
//! container process state as payload with the notify fd attached by `SCM_RIGHTS` (named
//! `"seccompFd"` in `fds`), one state per connection, then close the connection.

use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde_json::{json, Value};

use crate::SeccompError;

/// The `ociVersion` written when the state object carries none.
pub const OCI_VERSION: &str = "1.2.1";

/// The runtime-spec "container process state" sent with the notify fd:
/// `{ociVersion, fds: ["seccompFd"], pid, metadata?, state}`. `ociVersion` is taken from
/// `state_json` when it has one; `metadata` (`listenerMetadata`) is left out when `None`.
pub fn container_process_state(state_json: &Value, metadata: Option<&str>, pid: i32) -> Value {
    let version = state_json
        .get("ociVersion")
        .and_then(Value::as_str)
        .unwrap_or(OCI_VERSION);
    let mut state = json!({
        "ociVersion": version,
        "fds": ["seccompFd"],
        "pid": pid,
        "state": state_json,
    });
    if let (Some(metadata), Some(object)) = (metadata, state.as_object_mut()) {
        object.insert("metadata".into(), Value::from(metadata));
    }
    state
}

/// Sends the notify `fd` to the seccomp agent at `listener_path`: one `SCM_RIGHTS` message
/// carrying `fd` with the JSON [`container_process_state`] as payload. `state_json` is the
/// container's state object, `metadata` the spec's `listenerMetadata`, `pid` the container
/// process as the runtime sees it.
pub fn send_to_listener(
    listener_path: &Path,
    fd: BorrowedFd,
    state_json: &Value,
    metadata: Option<&str>,
    pid: i32,
) -> Result<(), SeccompError> {
    let payload = serde_json::to_vec(&container_process_state(state_json, metadata, pid))?;
    let mut stream =
        UnixStream::connect(listener_path).map_err(|source| SeccompError::ListenerConnect {
            path: listener_path.to_path_buf(),
            source,
        })?;
    let send_err = |source: std::io::Error| SeccompError::ListenerSend {
        path: listener_path.to_path_buf(),
        source,
    };
    let fds = [fd.as_raw_fd()];
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(&payload)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|errno| send_err(errno.into()))?;
    // A stream socket may take less than the whole payload; the fd went with the first part.
    if let Some(rest) = payload.get(sent..) {
        stream.write_all(rest).map_err(send_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_has_the_runtime_spec_fields() {
        let container = json!({"ociVersion": "1.0.2", "id": "c1", "status": "creating", "pid": 7});
        let state = container_process_state(&container, Some("meta"), 7);
        assert_eq!(state["ociVersion"], "1.0.2");
        assert_eq!(state["fds"], json!(["seccompFd"]));
        assert_eq!(state["pid"], 7);
        assert_eq!(state["metadata"], "meta");
        assert_eq!(state["state"], container);
    }

    #[test]
    fn metadata_is_omitted_and_version_defaulted() {
        let state = container_process_state(&json!({"id": "c1"}), None, 1);
        assert!(state.get("metadata").is_none());
        assert_eq!(state["ociVersion"], OCI_VERSION);
    }

    #[test]
    fn unreachable_listener_names_the_path() {
        let dir =
            std::env::temp_dir().join(format!("berth-seccomp-nolistener-{}", std::process::id()));
        let path = dir.join("agent.sock");
        let fd = std::fs::File::open("/dev/null").unwrap();
        let err = send_to_listener(&path, std::os::fd::AsFd::as_fd(&fd), &json!({}), None, 1)
            .unwrap_err();
        assert!(matches!(err, SeccompError::ListenerConnect { .. }));
        assert!(err.to_string().contains("agent.sock"), "{err}");
    }
}
