//! `monitor.json`: the monitor's instructions, written by the CLI into the container's run dir
//! before it starts the monitor with that dir as its only argument.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The monitor config's file name inside the container's run dir.
pub const CONFIG_FILE: &str = "monitor.json";
/// The attach socket inside the run dir.
pub const ATTACH_SOCKET: &str = "attach.sock";
/// The console socket (terminal containers) inside the run dir.
pub const CONSOLE_SOCKET: &str = "console.sock";
/// The init's pid, written by the runtime.
pub const PID_FILE: &str = "pid";
/// The exit status, written by the monitor when the init exits (see [`ExitRecord`]).
pub const EXIT_FILE: &str = "exit";
/// The runtime's own error log (runc's `--log`), for runtime binaries.
pub const RUNTIME_LOG: &str = "runtime.log";

/// Which OCI runtime creates and starts the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuntimeChoice {
    /// Berth's own runtime library, called in a child of the monitor (no exec of a runtime binary).
    Builtin {
        /// The runtime's state root.
        root: PathBuf,
    },
    /// An OCI runtime binary spoken to with runc's command line (runc, crun, runsc, berth-runtime).
    Binary {
        /// The binary.
        path: PathBuf,
        /// Its `--root`.
        root: PathBuf,
    },
}

/// What one monitor does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// The container id (also the runtime's id).
    pub id: String,
    /// The OCI bundle (config.json).
    pub bundle: PathBuf,
    /// The runtime.
    pub runtime: RuntimeChoice,
    /// The log file (rotated to `<log>.1`, `<log>.2`, ...).
    pub log_path: PathBuf,
    /// Rotate when the log grows past this many bytes (0: never).
    pub log_max_size: u64,
    /// How many files to keep, the live one included (at least 1).
    pub log_max_files: u32,
    /// Whether the process has a terminal (a pty whose master the monitor holds).
    pub terminal: bool,
    /// Keep the container's stdin open for attach clients (`-i`); otherwise it reads /dev/null.
    pub stdin_open: bool,
    /// Run in place of the monitor once the container exited and its status is written
    /// (the engine's clean-up: record the exit, unmount, `--rm`).
    pub exit_command: Vec<String>,
}

impl MonitorConfig {
    /// Reads `dir/monitor.json`.
    pub fn load(dir: &Path) -> std::io::Result<MonitorConfig> {
        let data = std::fs::read(dir.join(CONFIG_FILE))?;
        serde_json::from_slice(&data).map_err(std::io::Error::other)
    }

    /// Writes `dir/monitor.json`.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let data = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(CONFIG_FILE), data)
    }
}

/// The content of the exit file.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    /// Exit code, 128 + signal number when killed by a signal.
    pub code: i32,
    /// When the init was reaped, nanoseconds since the epoch.
    pub finished_ns: i64,
    /// Whether the memory cgroup reported an OOM kill (not known to the monitor: always false here).
    #[serde(default)]
    pub oom_killed: bool,
}

impl ExitRecord {
    /// Reads `dir/exit`, `None` if it is not there (yet).
    pub fn load(dir: &Path) -> Option<ExitRecord> {
        let data = std::fs::read(dir.join(EXIT_FILE)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// Writes `dir/exit` atomically (temp file + rename).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(".exit.tmp");
        let data = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, dir.join(EXIT_FILE))
    }
}

/// A path that names `name` inside the directory open as `dir_fd`, short enough for a unix socket
/// address (108 bytes) however deep the directory is: `/proc/self/fd/<n>/<name>`.
pub fn short_socket_path(dir_fd: i32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{dir_fd}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_and_exit_record_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let c = MonitorConfig {
            id: "abc".into(),
            bundle: "/b".into(),
            runtime: RuntimeChoice::Binary {
                path: "/usr/bin/runc".into(),
                root: "/run/x".into(),
            },
            log_path: "/l".into(),
            log_max_size: 10,
            log_max_files: 2,
            terminal: true,
            stdin_open: false,
            exit_command: vec!["berth".into(), "cleanup".into()],
        };
        c.save(d.path()).unwrap();
        let back = MonitorConfig::load(d.path()).unwrap();
        assert_eq!(back.runtime, c.runtime);
        assert_eq!(back.exit_command, c.exit_command);
        assert!(ExitRecord::load(d.path()).is_none());
        let e = ExitRecord {
            code: 137,
            finished_ns: 5,
            oom_killed: false,
        };
        e.save(d.path()).unwrap();
        assert_eq!(ExitRecord::load(d.path()), Some(e));
    }
}
