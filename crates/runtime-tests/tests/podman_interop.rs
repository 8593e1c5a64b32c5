//! podman drives the runtime under test exactly like runc: same output for the same container.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_runtime_tests::*;
use nix::mount::{umount2, MntFlags};

/// podman keeps one host-wide lock table (/dev/shm/libpod_lock) whatever its --root; two first
/// runs at once on a fresh host race to create it ("file exists"), so the tests take turns.
static PODMAN_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Private podman state (root, runroot, tmpdir, volumes, network config) in one temp dir;
/// everything podman mounted under it is unmounted and the dir removed on drop.
struct PodmanEnv {
    dir: tempfile::TempDir,
    cgroup_parent: String,
    _cg: CgroupCleanup,
    // Last: released after the clean-up above.
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl PodmanEnv {
    fn new() -> PodmanEnv {
        let dir = tempfile::Builder::new()
            .prefix("berth-podman-")
            .tempdir()
            .unwrap();
        for d in ["root", "runroot", "tmp", "volumes", "networks"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let cgroup_parent = format!("berth-rt-test-{}", unique_id("podman"));
        let cg = CgroupCleanup::new(&cgroup_parent);
        let turn = PODMAN_TURN.lock().unwrap_or_else(|e| e.into_inner());
        PodmanEnv {
            dir,
            cgroup_parent,
            _cg: cg,
            _turn: turn,
        }
    }

    fn p(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// `podman <global flags> run --rm ... --rootfs <rootfs> sh -c <script>` with `runtime`.
    fn run(&self, runtime: &Path, rootfs: &Path, script: &str) -> std::process::Output {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.p("root"))
            .arg("--runroot")
            .arg(self.p("runroot"))
            .arg("--tmpdir")
            .arg(self.p("tmp"))
            .arg("--volumepath")
            .arg(self.p("volumes"))
            .arg("--network-config-dir")
            .arg(self.p("networks"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "none"])
            .arg("--runtime")
            .arg(runtime)
            .args(["run", "--rm", "--network", "none", "--hostname", "fixed"])
            .args([
                "--ulimit",
                "nofile=20000:20000",
                "--ulimit",
                "nproc=32768:32768",
            ])
            .arg("--cgroup-parent")
            .arg(format!("/{}", self.cgroup_parent))
            .arg("--rootfs")
            .arg(rootfs)
            .args(["sh", "-c", script])
            .stdin(std::process::Stdio::null());
        output_of(cmd)
    }
}

impl Drop for PodmanEnv {
    fn drop(&mut self) {
        let base = self.dir.path().to_string_lossy().into_owned();
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut targets: Vec<String> = parse_mountinfo(&mi)
            .into_iter()
            .map(|m| m.target)
            .filter(|t| t.starts_with(&base))
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in targets {
            let _ = umount2(Path::new(&t), MntFlags::MNT_DETACH);
        }
    }
}

const SCRIPT: &str = "id; hostname; grep Cap /proc/self/status; grep -E 'Max (open files|processes)' /proc/self/limits; \
                      ls /sys/class/net; cat /proc/self/uid_map";

#[test]
fn podman_output_matches_runc() {
    require_root_and_tools(&["podman", "/usr/sbin/runc"]);
    let ours = runtime_bin().canonicalize().unwrap();
    let b = Bundle::busybox();
    let rootfs = b.rootfs();

    let env_runc = PodmanEnv::new();
    let want = env_runc.run(Path::new("/usr/sbin/runc"), &rootfs, SCRIPT);
    assert_success(&want, "podman --runtime runc");
    drop(env_runc);

    let env = PodmanEnv::new();
    let got = env.run(&ours, &rootfs, SCRIPT);
    assert_success(&got, &format!("podman --runtime {}", ours.display()));
    assert_eq!(stdout(&got), stdout(&want));
    let s = stdout(&got);
    assert!(s.starts_with("uid=0(root) gid=0(root)"), "{s}");
    assert!(s.contains("\nfixed\n"), "{s}");
    assert!(s.contains("lo\n"), "{s}");
    // podman's own default caps (not the OCI spec defaults) made it through.
    assert_eq!(
        status_field(&s, "CapEff").unwrap(),
        status_field(&s, "CapBnd").unwrap()
    );
    let podman_root = env.p("root");
    drop(env);
    assert!(!podman_root.exists(), "podman state dir left behind");
}

#[test]
fn podman_exit_code_passthrough() {
    require_root_and_tools(&["podman"]);
    let ours = runtime_bin().canonicalize().unwrap();
    let b = Bundle::busybox();
    let env = PodmanEnv::new();
    let out = env.run(&ours, &b.rootfs(), "echo out; echo err >&2; exit 23");
    assert_eq!(out.status.code(), Some(23), "{}", stderr(&out));
    assert_eq!(stdout(&out), "out\n");
    assert!(stderr(&out).contains("err"), "{}", stderr(&out));
}
