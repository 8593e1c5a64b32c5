//! The columns of the benchmark: each OCI runtime (with its own `--root`) and the floor.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_runtime_tests::{workspace_root, Runtime};

/// Every column name, in table order.
pub const ALL: [&str; 4] = ["berth", "runc", "crun", "floor"];

/// The floor: the namespaces a container gets, with no runtime around them.
pub const FLOOR_ARGS: [&str; 7] = [
    "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "true",
];

/// What a column runs.
pub enum Kind {
    /// An OCI runtime: `bin --root <own tmp dir> run --bundle B <id>`. Dropping it kills and
    /// deletes whatever container is left under its root.
    Runtime(Runtime),
    /// `unshare --fork --pid --mount --uts --ipc --net true`.
    Floor(PathBuf),
}

/// One column of the table.
pub struct Column {
    /// `berth`, `runc`, `crun` or `floor`.
    pub name: &'static str,
    /// What it runs.
    pub kind: Kind,
    /// First line of `--version` (or a note that it has none).
    pub version: String,
}

impl Column {
    /// A runtime column with a fresh state dir.
    pub fn runtime(name: &'static str, bin: PathBuf) -> Column {
        let version = version_of(&bin);
        Column {
            name,
            kind: Kind::Runtime(Runtime::with_bin(bin)),
            version,
        }
    }

    /// The floor column.
    pub fn floor(unshare: PathBuf) -> Column {
        let version = version_of(&unshare);
        Column {
            name: "floor",
            kind: Kind::Floor(unshare),
            version,
        }
    }

    /// The binary this column runs.
    pub fn bin(&self) -> &Path {
        match &self.kind {
            Kind::Runtime(rt) => rt.bin(),
            Kind::Floor(p) => p,
        }
    }

    /// The command for one sample: `run --bundle <bundle> <id>`, or the floor. stdin and stdout
    /// are /dev/null; stderr is piped so that a failure can be reported.
    pub fn command(&self, bundle: &Path, id: &str) -> Command {
        let mut c = match &self.kind {
            Kind::Runtime(rt) => {
                let mut c = rt.cmd(&["run", "--bundle"]);
                c.arg(bundle).arg(id);
                c
            }
            Kind::Floor(unshare) => {
                let mut c = Command::new(unshare);
                c.args(FLOOR_ARGS).stdin(Stdio::null());
                c
            }
        };
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        c
    }
}

/// First line of `bin --version`, or `?` when it has none.
pub fn version_of(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "?".to_string())
}

/// Where berth-runtime is when `--berth` is not given: `$BERTH_RUNTIME`, else
/// `<target>/release/berth-runtime` (`$CARGO_TARGET_DIR` or the workspace's `target/`).
/// Debug builds are not looked for: benchmarking one would mislead.
pub fn default_berth() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_RUNTIME") {
        return PathBuf::from(p);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("release/berth-runtime")
}

/// `tool` as an absolute path: itself if it contains a `/`, else the first match on `$PATH`
/// or in the sbin/bin dirs (sudo's PATH may lack /usr/sbin).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| is_executable(p))
}

/// A regular file with an execute bit.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
