//! Test support for driving OCI runtime binaries (berth-runtime, or runc/crun for parity).
//!
//! The runtime under test is the binary named by `BERTH_RUNTIME`, else the workspace's
//! `target/release/berth-runtime`, else `target/debug/berth-runtime`.
//!
//! * [`Bundle`]: a throw-away OCI bundle whose rootfs is made from the host's static busybox.
//! * [`Runtime`]: the runtime binary plus a private `--root` state dir; dropping it kills and
//!   force-deletes every container still listed there, so nothing outlives a test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tempfile::TempDir;

pub mod console;

/// Host path of the static busybox used to build every rootfs.
pub const BUSYBOX: &str = "/usr/bin/busybox";

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The runtime binary under test: `$BERTH_RUNTIME`, else the workspace's release build, else
/// its debug build. Panics with a build hint when none exists.
pub fn runtime_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_RUNTIME") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "BERTH_RUNTIME={} does not exist", p.display());
        return p;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    for profile in ["release", "debug"] {
        let p = target.join(profile).join("berth-runtime");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "berth-runtime binary not found under {}/{{release,debug}}: run `cargo build -p berth-runtime-cli` first \
         (or set BERTH_RUNTIME=/path/to/runtime, e.g. /usr/sbin/runc)",
        target.display()
    );
}

/// True when the runtime under test is berth-runtime (not runc/crun used for parity checks).
pub fn is_berth() -> bool {
    runtime_bin()
        .file_name()
        .map(|n| n.to_string_lossy().contains("berth"))
        .unwrap_or(false)
}

fn which(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        return p.exists().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.exists())
}

fn install_hint(tool: &str) -> String {
    let pkg = match tool {
        "busybox" | BUSYBOX => "busybox-static",
        "unshare" | "nsenter" => "util-linux",
        "runc" | "/usr/sbin/runc" => "runc",
        "podman" => "podman",
        other => other,
    };
    format!("{tool} not installed: apt-get install {pkg}")
}

/// Panics unless running as root with every named tool available (name on `$PATH` or absolute
/// path). The busybox rootfs is always required, so `busybox` is checked even when not named.
pub fn require_root_and_tools(tools: &[&str]) {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("these tests must run as root (euid 0)".to_string());
    }
    if !Path::new(BUSYBOX).exists() {
        missing.push(format!(
            "busybox-static not installed ({BUSYBOX} missing): apt-get install busybox-static"
        ));
    }
    for t in tools {
        if which(t).is_none() {
            missing.push(install_hint(t));
        }
    }
    assert!(
        missing.is_empty(),
        "test prerequisites missing: {}",
        missing.join("; ")
    );
}

/// A unique container id: `<prefix>-<pid>-<counter>-<time>`; safe across parallel tests and
/// concurrent test binaries.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), t % 0x10000)
}

fn busybox_applets() -> &'static [String] {
    static LIST: OnceLock<Vec<String>> = OnceLock::new();
    LIST.get_or_init(|| {
        let out = Command::new(BUSYBOX)
            .arg("--list-full")
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", install_hint("busybox")));
        assert!(out.status.success(), "busybox --list-full failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().trim_start_matches('/').to_string())
            .filter(|l| !l.is_empty())
            .collect()
    })
}

/// Builds a busybox rootfs at `rootfs`: /bin/busybox, a symlink per applet (at its canonical
/// path, plus /bin/<applet>), /etc/passwd+group with root and `user` (uid/gid 1000), and empty
/// /proc /sys /dev /tmp.
pub fn make_busybox_rootfs(rootfs: &Path) {
    use std::os::unix::fs::{symlink, PermissionsExt};
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "home/user",
    ] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let bb = rootfs.join("bin/busybox");
    std::fs::copy(BUSYBOX, &bb).unwrap();
    std::fs::set_permissions(&bb, std::fs::Permissions::from_mode(0o755)).unwrap();
    for applet in busybox_applets() {
        let name = applet.rsplit('/').next().unwrap_or(applet);
        for link in [applet.clone(), format!("bin/{name}")] {
            let p = rootfs.join(&link);
            if p.symlink_metadata().is_ok() {
                continue;
            }
            let _ = symlink("/bin/busybox", &p);
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\ntty:x:5:\nusers:x:100:user\nuser:x:1000:\nnogroup:x:65534:\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/hostname"), "busybox\n").unwrap();
    std::os::unix::fs::chown(rootfs.join("home/user"), Some(1000), Some(1000)).unwrap();
}

/// A throw-away OCI bundle: `dir/config.json` plus `dir/rootfs` (busybox).
pub struct Bundle {
    /// The bundle directory (removed on drop).
    pub dir: TempDir,
    /// The config that [`Bundle::write_config`] writes to `config.json`; edit, then write.
    pub config: Value,
}

impl Bundle {
    /// A bundle in the system temp dir, config = `default_config(["sh"])`, already written.
    pub fn busybox() -> Bundle {
        Self::busybox_in(&std::env::temp_dir())
    }

    /// Same as [`Bundle::busybox`], with the bundle dir created under `parent`.
    pub fn busybox_in(parent: &Path) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-bundle-")
            .tempdir_in(parent)
            .unwrap();
        make_busybox_rootfs(&dir.path().join("rootfs"));
        let b = Bundle {
            dir,
            config: Self::default_config(&["sh"]),
        };
        b.write_config();
        b
    }

    /// The default config `runc spec` writes (with `terminal: false`), `process.args = args`.
    pub fn default_config(args: &[&str]) -> Value {
        let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        json!({
            "ociVersion": "1.0.2-dev",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": [
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"
                ],
                "cwd": "/",
                "capabilities": {
                    "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "runc",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                 "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
            ],
            "linux": {
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [
                    {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                    {"type": "uts"}, {"type": "mount"}
                ],
                "maskedPaths": [
                    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
                ],
                "readonlyPaths": [
                    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
                ]
            }
        })
    }

    /// Sets `process.args`.
    pub fn set_args(&mut self, args: &[&str]) {
        self.config["process"]["args"] = json!(args);
    }

    /// Sets `process.args` to `sh -c <script>`.
    pub fn set_sh(&mut self, script: &str) {
        self.set_args(&["sh", "-c", script]);
    }

    /// A busybox bundle running `sh -c <script>`, config written.
    pub fn sh(script: &str) -> Bundle {
        let mut b = Self::busybox();
        b.set_sh(script);
        b.write_config();
        b
    }

    /// Writes `self.config` to `<bundle>/config.json`.
    pub fn write_config(&self) {
        let s = serde_json::to_string_pretty(&self.config).unwrap();
        std::fs::write(self.path().join("config.json"), s).unwrap();
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The bundle's rootfs directory.
    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }
}

/// A runtime binary with its own `--root` state dir. Drop kills and force-deletes every
/// container left under that root.
pub struct Runtime {
    bin: PathBuf,
    root: TempDir,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    /// The runtime from [`runtime_bin`] with a fresh state dir.
    pub fn new() -> Runtime {
        Self::with_bin(runtime_bin())
    }

    /// A specific runtime binary (e.g. a copy of it, or runc for parity) with a fresh state dir.
    pub fn with_bin(bin: PathBuf) -> Runtime {
        let root = tempfile::Builder::new()
            .prefix("berth-root-")
            .tempdir()
            .unwrap();
        Runtime { bin, root }
    }

    /// The binary this runtime runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The `--root` state directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// `bin --root <root> args...`, stdin from /dev/null.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path()).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// `run --bundle <bundle> <id>`, stdout/stderr captured.
    pub fn run(&self, bundle: &Bundle, id: &str) -> Output {
        output_of(self.cmd(&["run", "--bundle", path_str(bundle.path()), id]))
    }

    /// `run` that must exit 0; returns stdout.
    pub fn run_ok(&self, bundle: &Bundle, id: &str) -> String {
        let out = self.run(bundle, id);
        assert_success(&out, &format!("run {id}"));
        stdout(&out)
    }

    /// Runs `args` and returns the captured output.
    pub fn output(&self, args: &[&str]) -> Output {
        output_of(self.cmd(args))
    }

    /// Runs `args`, panics (with stderr) unless it exits 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert_success(&out, &args.join(" "));
        stdout(&out)
    }

    /// Runs `args` with stdout/stderr going to temp files rather than pipes, so a container
    /// that inherits them (create, run --detach, exec --detach) cannot keep the call waiting.
    pub fn detached(&self, args: &[&str]) -> Output {
        let mut o = tempfile::tempfile().unwrap();
        let mut e = tempfile::tempfile().unwrap();
        let mut cmd = self.cmd(args);
        cmd.stdout(o.try_clone().unwrap())
            .stderr(e.try_clone().unwrap());
        let what = format!("{cmd:?}");
        let mut child = cmd.spawn().unwrap();
        let status = wait_deadline(&mut child, cmd_timeout())
            .unwrap_or_else(|| panic!("timed out after {:?}: {what}", cmd_timeout()));
        Output {
            status,
            stdout: read_back(&mut o),
            stderr: read_back(&mut e),
        }
    }

    /// `create --bundle <bundle> <id>` (via [`Runtime::detached`]).
    pub fn try_create(&self, bundle: &Bundle, id: &str) -> Output {
        self.detached(&["create", "--bundle", path_str(bundle.path()), id])
    }

    /// `create --bundle <bundle> <id>` that must succeed.
    pub fn create(&self, bundle: &Bundle, id: &str) {
        let out = self.try_create(bundle, id);
        assert_success(&out, &format!("create {id}"));
    }

    /// `create` + `start` of a long-running container; returns its host pid.
    pub fn start_detached(&self, bundle: &Bundle, id: &str) -> i32 {
        self.create(bundle, id);
        let out = self.detached(&["start", id]);
        assert_success(&out, &format!("start {id}"));
        self.state(id)["pid"].as_i64().unwrap_or(0) as i32
    }

    /// `exec <id> cmd...` with captured output.
    pub fn exec(&self, id: &str, cmd: &[&str]) -> Output {
        self.exec_with(&[], id, cmd)
    }

    /// `exec <opts...> <id> cmd...` with captured output.
    pub fn exec_with(&self, opts: &[&str], id: &str, cmd: &[&str]) -> Output {
        let mut a = vec!["exec"];
        a.extend_from_slice(opts);
        a.push(id);
        a.extend_from_slice(cmd);
        self.output(&a)
    }

    /// `state <id>` parsed as JSON.
    pub fn state(&self, id: &str) -> Value {
        let s = self.ok(&["state", id]);
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("state {id} not JSON ({e}): {s}"))
    }

    /// `state.status` of `id`.
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap_or("").to_string()
    }

    /// Polls `state` until `status == want` or `timeout`; returns the last status seen.
    pub fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let s = self.status(id);
            if s == want || start.elapsed() > timeout {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ids of the containers this runtime lists under its root (`list --format json`) plus any
    /// subdirectory of the root (state dirs), deduplicated.
    pub fn container_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        if let Ok(out) = self.cmd(&["list", "--format", "json"]).output() {
            if let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&out.stdout) {
                for it in items {
                    if let Some(id) = it["id"].as_str() {
                        ids.push(id.to_string());
                    }
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.root.path()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) && !name.starts_with('+') {
                    ids.push(name);
                }
            }
        }
        ids.sort();
        ids.dedup();
        ids
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| -> bool {
            let mut c = self.cmd(args);
            c.stdout(Stdio::null()).stderr(Stdio::null());
            match c.spawn() {
                Ok(mut child) => wait_deadline(&mut child, Duration::from_secs(10))
                    .map(|s| s.success())
                    .unwrap_or(false),
                Err(_) => false,
            }
        };
        for id in self.container_ids() {
            quiet(&["kill", &id, "KILL"]);
            for _ in 0..50 {
                let ok = quiet(&["delete", "--force", &id]);
                if ok || !self.root.path().join(&id).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// How long one runtime command may take before the harness kills it and fails the test
/// (`BERTH_TEST_CMD_TIMEOUT` seconds, default 60): a hung runtime must not hang the suite.
pub fn cmd_timeout() -> Duration {
    std::env::var("BERTH_TEST_CMD_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(60))
}

/// Waits for `child` up to `timeout`; on timeout kills (SIGKILL) and reaps it, returns `None`.
pub fn wait_deadline(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` with stdout/stderr captured, like `Command::output`, but panics (after killing
/// it) when it runs past [`cmd_timeout`]. Once the command exited, output still held open by a
/// leftover process (e.g. a container that inherited the pipe) is collected for at most 5 s.
pub fn output_of(cmd: Command) -> Output {
    output_within(cmd, cmd_timeout())
}

/// [`output_of`] with an explicit time limit.
pub fn output_within(mut cmd: Command, timeout: Duration) -> Output {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let collect = |r: Option<Box<dyn Read + Send>>| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        if let Some(mut r) = r {
            let b = buf.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    b.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
                let _ = tx.send(());
            });
        }
        (buf, rx)
    };
    let (out, out_done) = collect(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let (err, err_done) = collect(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let status = wait_deadline(&mut child, timeout);
    let _ = out_done.recv_timeout(Duration::from_secs(5));
    let _ = err_done.recv_timeout(Duration::from_secs(1));
    let stdout = out.lock().unwrap().clone();
    let stderr = err.lock().unwrap().clone();
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "timed out after {timeout:?}: {what}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

fn read_back(f: &mut std::fs::File) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut v = Vec::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_end(&mut v);
    v
}

/// Path as `&str` (test paths are always UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("non-UTF-8 test path")
}

/// Captured stdout as a String.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Captured stderr as a String.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Panics with the command's stdout+stderr unless it exited 0.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "`{what}` failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Panics unless the command failed; returns stderr+stdout (lowercased) for message checks.
pub fn assert_failure(out: &Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "`{what}` unexpectedly succeeded:\nstdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    format!("{}{}", stderr(out), stdout(out)).to_lowercase()
}

/// The value of `key:` in a /proc/<pid>/status-style text (`"CapEff"` -> `"00000000a80425fb"`).
pub fn status_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// Bit mask for a list of capability names (`CAP_KILL`, ...), as /proc/<pid>/status prints it.
pub fn cap_mask(names: &[&str]) -> String {
    let mut m: u64 = 0;
    for n in names {
        let bit = cap_number(n).unwrap_or_else(|| panic!("unknown capability {n}"));
        m |= 1 << bit;
    }
    format!("{m:016x}")
}

/// The number of a capability name (with or without `CAP_`).
pub fn cap_number(name: &str) -> Option<u32> {
    const NAMES: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let n = name.strip_prefix("CAP_").unwrap_or(name);
    NAMES.iter().position(|x| *x == n).map(|i| i as u32)
}

/// Waits until `path` exists (or `timeout`); returns whether it does.
pub fn wait_for_path(path: &Path, timeout: Duration) -> bool {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Whether `pid` is alive (signal 0 succeeds and it is not a zombie).
pub fn pid_alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// True on a pure cgroup v2 host (`/sys/fs/cgroup` is the unified hierarchy).
pub fn cgroup_v2_unified() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Host directory of `pid`'s cgroup for a v1 `controller` (e.g. `"memory"`, `"pids"`), or its
/// cgroup v2 directory on a unified host. `None` when the controller is not mounted.
pub fn proc_cgroup_dir(pid: i32, controller: &str) -> Option<PathBuf> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    if cgroup_v2_unified() {
        let rel = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
        return Some(PathBuf::from(format!("/sys/fs/cgroup{rel}")));
    }
    cg.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, rel) = (parts.next()?, parts.next()?, parts.next()?);
        if ctrls.split(',').any(|c| c == controller) {
            Some(PathBuf::from(format!("/sys/fs/cgroup/{controller}{rel}")))
        } else if controller == "unified" && ctrls.is_empty() {
            Some(PathBuf::from(format!("/sys/fs/cgroup/unified{rel}")))
        } else {
            None
        }
    })
}

/// Every existing cgroup directory for the relative path `rel` (e.g. `"berth-rt-test/x"`) in
/// all hierarchies under /sys/fs/cgroup.
pub fn cgroup_dirs_for(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    if cgroup_v2_unified() {
        let p = Path::new("/sys/fs/cgroup").join(rel);
        return if p.exists() { vec![p] } else { vec![] };
    }
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let p = e.path().join(rel);
            if p.is_dir() {
                v.push(p);
            }
        }
    }
    v
}

/// Removes (rmdir, deepest first, in every hierarchy) the cgroup parent paths a test named in
/// its `cgroupsPath`, so nothing is left even when the runtime only removes the leaf.
pub struct CgroupCleanup {
    rels: Vec<String>,
}

impl CgroupCleanup {
    /// Cleans `rel` and each of its ancestors on drop (e.g. `"a/b/c"` -> `a/b/c`, `a/b`, `a`).
    pub fn new(rel: &str) -> CgroupCleanup {
        let rel = rel.trim_matches('/');
        let mut rels = Vec::new();
        let mut cur = rel.to_string();
        loop {
            rels.push(cur.clone());
            match cur.rsplit_once('/') {
                Some((parent, _)) => cur = parent.to_string(),
                None => break,
            }
        }
        CgroupCleanup { rels }
    }
}

impl Drop for CgroupCleanup {
    fn drop(&mut self) {
        for rel in &self.rels {
            for d in cgroup_dirs_for(rel) {
                // Nested leftovers (a runtime that left sub-cgroups) first.
                if let Ok(rd) = std::fs::read_dir(&d) {
                    for e in rd.flatten() {
                        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                            let _ = std::fs::remove_dir(e.path());
                        }
                    }
                }
                let _ = std::fs::remove_dir(&d);
            }
        }
    }
}

/// One /proc/<pid>/mountinfo entry.
#[derive(Debug, Clone)]
pub struct MountInfo {
    /// Mount point.
    pub target: String,
    /// Root of the mount within its filesystem.
    pub root: String,
    /// Per-mount options (`ro,nosuid,...`).
    pub opts: Vec<String>,
    /// Optional fields (`shared:N`, `master:N`).
    pub optional: Vec<String>,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source.
    pub source: String,
    /// Superblock options.
    pub super_opts: Vec<String>,
}

/// Parses mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split_whitespace().collect();
            let p: Vec<&str> = post.split_whitespace().collect();
            Some(MountInfo {
                root: f.get(3)?.to_string(),
                target: f.get(4)?.to_string(),
                opts: f.get(5)?.split(',').map(String::from).collect(),
                optional: f[6..].iter().map(|s| s.to_string()).collect(),
                fstype: p.first()?.to_string(),
                source: p.get(1).unwrap_or(&"").to_string(),
                super_opts: p
                    .get(2)
                    .unwrap_or(&"")
                    .split(',')
                    .map(String::from)
                    .collect(),
            })
        })
        .collect()
}

/// The top-most mount at `target` in mountinfo text.
pub fn mount_at(text: &str, target: &str) -> Option<MountInfo> {
    parse_mountinfo(text)
        .into_iter()
        .rev()
        .find(|m| m.target == target)
}

/// Kills (SIGKILL) and reaps a helper child on drop.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Inode string (`net:[4026531840]`) of a namespace link.
pub fn ns_link(path: impl AsRef<Path>) -> String {
    std::fs::read_link(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_mask_matches_kernel_bits() {
        assert_eq!(
            cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]),
            "0000000020000420"
        );
        assert_eq!(cap_number("CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(cap_number("CAP_NOPE"), None);
    }

    #[test]
    fn mountinfo_parsing() {
        let mi = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                  40 36 0:5 / /mnt2 ro,nosuid shared:7 - tmpfs tmpfs rw,size=4096k,mode=1770\n";
        let m = mount_at(mi, "/mnt2").unwrap();
        assert_eq!(m.fstype, "tmpfs");
        assert_eq!(m.opts, ["ro", "nosuid"]);
        assert_eq!(m.optional, ["shared:7"]);
        assert_eq!(m.super_opts, ["rw", "size=4096k", "mode=1770"]);
        assert_eq!(parse_mountinfo(mi)[0].root, "/mnt1");
        assert!(mount_at(mi, "/nope").is_none());
    }

    #[test]
    fn status_field_lookup() {
        let s = "Name:\tsh\nCapEff:\t0000000020000420\nNoNewPrivs:\t1\n";
        assert_eq!(
            status_field(s, "CapEff").as_deref(),
            Some("0000000020000420")
        );
        assert_eq!(status_field(s, "NoNewPrivs").as_deref(), Some("1"));
        assert_eq!(status_field(s, "Seccomp"), None);
    }

    #[test]
    fn unique_ids_differ() {
        let a = unique_id("x");
        let b = unique_id("x");
        assert_ne!(a, b);
        assert!(a.starts_with("x-"));
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
    }

    #[test]
    fn cgroup_cleanup_lists_ancestors() {
        let c = CgroupCleanup::new("/a/b/c/");
        assert_eq!(c.rels, ["a/b/c", "a/b", "a"]);
        std::mem::forget(c);
    }
}
