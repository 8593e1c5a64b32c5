//! Running the engines' commands: exit status checked, output kept, a time limit, wall time;
//! and the Ctrl-C flag that stops the bench between commands so that its guards clean up.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What a command that exited 0 left.
#[derive(Debug)]
pub struct Output {
    /// Wall time from spawn until it was reaped, in milliseconds.
    pub ms: f64,
    /// Its stdout.
    pub stdout: String,
}

/// The command line, for messages.
pub fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` (stdin /dev/null, stdout and stderr into unlinked temp files, so that a process it
/// leaves behind cannot hold a pipe open), waits at most `limit`, and fails unless it exited 0;
/// the error carries its stderr. The time is taken from just before the spawn until the reap.
pub fn run(cmd: &mut Command, limit: Duration) -> Result<Output> {
    let mut out = tempfile::tempfile().context("temp file for stdout")?;
    let mut err = tempfile::tempfile().context("temp file for stderr")?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?);
    let t = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {}", show(cmd)))?;
    let status = wait_for(&mut child, limit)?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("{} did not finish in {} s", show(cmd), limit.as_secs());
    };
    let stdout = read_all(&mut out);
    if !status.success() {
        bail!(
            "{} failed ({status}): {}",
            show(cmd),
            read_all(&mut err).trim()
        );
    }
    Ok(Output { ms, stdout })
}

/// Like [`run`], only the wall time.
pub fn timed(cmd: &mut Command, limit: Duration) -> Result<f64> {
    Ok(run(cmd, limit)?.ms)
}

fn read_all(f: &mut File) -> String {
    let mut b = Vec::new();
    let _ = f
        .seek(SeekFrom::Start(0))
        .and_then(|_| f.read_to_end(&mut b));
    String::from_utf8_lossy(&b).into_owned()
}

/// `pidfd_open`.
fn pidfd(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with integer arguments; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until `child` exits (reaped: `Some(status)`) or `limit` passes (`None`, still running).
/// Wakes on the exit itself (a pidfd), not on a polling interval.
pub fn wait_for(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let Some(fd) = pidfd(child.id()) else {
        // No pidfd (an old kernel): wait without a limit.
        return Ok(Some(child.wait().context("waiting for a child")?));
    };
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: poll on one valid pollfd that lives across the call.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n > 0 {
            return Ok(Some(child.wait().context("waiting for a child")?));
        }
        if n == 0 {
            return Ok(None);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e).context("poll on a pidfd");
        }
    }
}

/// First line of `bin --version` (or `?`).
pub fn version(bin: &std::path::Path) -> String {
    run(Command::new(bin).arg("--version"), Duration::from_secs(30))
        .ok()
        .and_then(|o| o.stdout.lines().next().map(|l| l.trim().to_string()))
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "?".into())
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT, SIGTERM and SIGHUP only set a flag, checked between commands by
/// [`check_interrupted`]: the bench then returns an error and its guards remove what it made.
/// (The command running at that moment gets the terminal's SIGINT itself and ends.)
pub fn install_interrupt_handler() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(s, &act) }.with_context(|| format!("installing a {s} handler"))?;
    }
    Ok(())
}

/// An error once SIGINT/SIGTERM/SIGHUP arrived.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; cleaning up");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_output_and_limit() {
        let o = run(
            Command::new("sh").args(["-c", "echo hi; echo noise >&2"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(o.stdout, "hi\n");
        assert!(o.ms > 0.0);
        let e = run(
            Command::new("sh").args(["-c", "echo boom >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(format!("{e}").contains("boom"), "{e}");
        let t = Instant::now();
        let e = run(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap_err();
        assert!(format!("{e}").contains("did not finish"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_process_left_behind_does_not_hold_the_command() {
        // The background sleep keeps stdout open; with a pipe the read would wait for it.
        let t = Instant::now();
        run(
            Command::new("sh").args(["-c", "sleep 5 & echo started"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(t.elapsed() < Duration::from_secs(4));
    }
}
