//! The engine's containers: `create`/`run` turn an image into a container record, `start` mounts its
//! root filesystem, writes its runtime config and hands it to a `berth-monitor`, which creates and
//! starts it (berth's runtime library in-process, or a runtime binary) and watches it until it
//! exits; then the monitor execs `berth container cleanup`, which records the exit and unmounts.
//!
//! One file per concern: `settings` (flags, checked), `spec` (the OCI config), `record` (the
//! database rows and the live status), `lifecycle` (create, start, stop, kill, rm, cleanup),
//! `attach` (relaying a terminal or stdio to a monitor), `exec`, `query` (ps, inspect, logs,
//! top, stats), `files` (cp), `defaults` (docker's capability set, seccomp profile, masked paths).

pub mod attach;
pub mod commands;
pub mod defaults;
pub mod exec;
pub mod files;
pub mod lifecycle;
pub mod manage;
pub mod network;
pub mod query;
pub mod record;
pub mod settings;
pub mod spec;
pub mod stats;
pub mod top;
pub mod volume;

use std::path::{Path, PathBuf};

/// Exit status of a command that could not be run (docker's 126).
pub const EXIT_CANNOT_RUN: u8 = 126;
/// Exit status of a command that was not found (docker's 127).
pub const EXIT_NOT_FOUND: u8 = 127;

/// An error with the exit status the CLI should end with (the container's, 126, 127).
#[derive(Debug)]
pub struct ExitStatus {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitStatus {}

/// Docker's exit status for a failure to start a process: 127 not found, 126 not runnable.
pub fn start_failure(message: String) -> anyhow::Error {
    let m = message.to_ascii_lowercase();
    let code = if m.contains("not found") || m.contains("no such file") {
        EXIT_NOT_FOUND
    } else if m.contains("permission denied") || m.contains("exec format error") {
        EXIT_CANNOT_RUN
    } else {
        return anyhow::anyhow!(message);
    };
    anyhow::Error::new(ExitStatus { code, message })
}

/// Where the engine keeps things.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    pub runroot: PathBuf,
}

impl Paths {
    /// `<root>/containers/<id>`: the bundle (config.json), snapshot, log, etc files.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// `<runroot>/containers/<id>`: the monitor's files and sockets.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.runroot.join("containers").join(id)
    }

    /// The built-in runtime's state root.
    pub fn builtin_runtime_root(&self) -> PathBuf {
        self.runroot.join("runtime")
    }

    /// A runtime binary's `--root`.
    pub fn binary_runtime_root(&self, binary: &Path) -> PathBuf {
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runtime".into());
        self.runroot.join("runtimes").join(name)
    }
}

/// A helper binary installed next to `berth` (`berth-monitor`, `berth-init`), or named by an
/// environment variable (`BERTH_MONITOR`, `BERTH_INIT`).
pub fn helper_binary(name: &str, env: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join(name);
    p.is_file().then_some(p)
}

/// Looks a program up in $PATH (for `--runtime runc`).
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
