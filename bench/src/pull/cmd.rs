//! Running external commands with their exit status checked.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Run `cmd` (stdout discarded, stderr kept for the error); fail unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Like [`run`], returning the wall time in milliseconds.
pub fn timed(cmd: &mut Command) -> Result<f64> {
    let t = Instant::now();
    run(cmd)?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// Run `cmd` and return its stdout; fail unless it exits 0.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `name` is on `PATH`.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_is_checked() {
        assert!(run(&mut Command::new("true")).is_ok());
        let e = run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).unwrap_err();
        assert!(format!("{e}").contains("boom"), "{e}");
        assert_eq!(output(Command::new("echo").arg("hi")).unwrap(), "hi\n");
        assert!(on_path("sh"));
        assert!(!on_path("no-such-tool-berth"));
    }
}
