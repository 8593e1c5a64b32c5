//! The six hook phases of the runtime-spec: each hook gets the container state as JSON on stdin, runs with
//! exactly its own args and env, and is killed when its timeout passes.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};

use crate::error::Context;
use crate::state::StateView;
use crate::{Error, Result};

/// The lifecycle points at which hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prestart => "prestart",
            Phase::CreateRuntime => "createRuntime",
            Phase::CreateContainer => "createContainer",
            Phase::StartContainer => "startContainer",
            Phase::Poststart => "poststart",
            Phase::Poststop => "poststop",
        }
    }

    /// The hooks of this phase in a spec's `hooks`.
    pub fn select(self, h: &Hooks) -> &[Hook] {
        #[allow(deprecated)]
        let list = match self {
            Phase::Prestart => h.prestart(),
            Phase::CreateRuntime => h.create_runtime(),
            Phase::CreateContainer => h.create_container(),
            Phase::StartContainer => h.start_container(),
            Phase::Poststart => h.poststart(),
            Phase::Poststop => h.poststop(),
        };
        list.as_deref().unwrap_or(&[])
    }
}

/// Whether any of `phases` has a hook (so the steps that run them can be skipped when none does).
pub fn any(hooks: Option<&Hooks>, phases: &[Phase]) -> bool {
    hooks.is_some_and(|h| phases.iter().any(|p| !p.select(h).is_empty()))
}

/// Runs the hooks of `phase` in order; the first failure stops the others and is returned.
pub fn run(hooks: Option<&Hooks>, phase: Phase, state: &StateView) -> Result<()> {
    let Some(h) = hooks else { return Ok(()) };
    let list = phase.select(h);
    if list.is_empty() {
        return Ok(());
    }
    let json =
        serde_json::to_vec(state).map_err(|e| Error::Invalid(format!("encoding state: {e}")))?;
    for hook in list {
        run_one(hook, phase, &json)?;
    }
    Ok(())
}

fn output_file() -> Result<std::fs::File> {
    let fd =
        nix::sys::memfd::memfd_create("berth-hook-output", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .ctx(|| "memfd_create for hook output".into())?;
    Ok(std::fs::File::from(fd))
}

fn run_one(hook: &Hook, phase: Phase, state: &[u8]) -> Result<()> {
    let path = hook.path();
    let what = || format!("{} hook {}", phase.name(), path.display());
    let mut cmd = Command::new(path);
    if let Some(args) = hook.args() {
        if let Some((first, rest)) = args.split_first() {
            cmd.arg0(first).args(rest);
        }
    }
    cmd.env_clear();
    for e in hook.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    // Output goes to a memfd, so a chatty hook can never block on a full pipe and no thread is needed.
    let mut out = output_file()?;
    let dup = |f: &std::fs::File| -> Result<Stdio> {
        let fd = nix::unistd::dup(f.as_fd()).ctx(|| "dup of the hook output".into())?;
        Ok(Stdio::from(fd))
    };
    cmd.stdin(Stdio::piped())
        .stdout(dup(&out)?)
        .stderr(dup(&out)?);
    let mut child = cmd.spawn().ctx(what)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its stdin: EPIPE is not an error.
        let _ = stdin.write_all(state);
    }
    let timeout = hook.timeout().map(|t| Duration::from_secs(t.max(1) as u64));
    let status = wait_with_timeout(&mut child, timeout).ctx(what)?;
    let mut text = String::new();
    let _ = out.rewind();
    let _ = Read::by_ref(&mut out).take(4096).read_to_string(&mut text);
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(Error::Invalid(format!(
            "{} failed ({s}){}",
            what(),
            if text.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", text.trim())
            }
        ))),
        None => Err(Error::Invalid(format!(
            "{} timed out after {}s and was killed",
            what(),
            timeout.map(|t| t.as_secs()).unwrap_or(0)
        ))),
    }
}

/// Waits for the child; `Ok(None)` if the timeout passed (the child is then killed and reaped).
fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Option<Duration>,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let Some(timeout) = timeout else {
        return child.wait().map(Some);
    };
    let deadline = Instant::now() + timeout;
    // SAFETY: pidfd_open on our own child's pid, which cannot be reused before we reap it.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as i32, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that we now own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one pollfd we own.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if r > 0 {
            return child.wait().map(Some);
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
    }
}
