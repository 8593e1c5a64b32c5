//! The engine fixture shared by the container tests: a store with a busybox image `bb:latest`
//! (made with `berth import` of a busybox-static rootfs), the berth binaries of this build, and a
//! drop that force-removes every container and unmounts what is left, also when a test fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{expect_exit, expect_ok, Berth};

/// A binary of the workspace next to `berth` (built by `cargo build --workspace`).
pub fn sibling(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_berth")).with_file_name(name);
    assert!(
        p.is_file(),
        "{} is missing: build the whole workspace first (cargo build --workspace)",
        p.display()
    );
    p
}

/// A store with a busybox image `bb:latest`; on drop, every container is force-removed and the
/// host is checked for leftovers.
pub struct Engine {
    pub b: Berth,
}

pub fn busybox_rootfs_tar(dir: &Path) -> PathBuf {
    assert!(
        Path::new("/bin/busybox").is_file(),
        "busybox-static is missing (/bin/busybox): apt-get install busybox-static"
    );
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
    )
    .unwrap();
    let tar = dir.join("rootfs.tar");
    tar_dir(&root, &tar);
    tar
}

/// `tar -C dir -cf tar .`
fn tar_dir(dir: &Path, tar: &Path) {
    let st = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
}

impl Engine {
    pub fn new() -> Engine {
        let e = Engine::empty();
        let tar = busybox_rootfs_tar(e.b.runroot.path());
        e.b.ok(&["import", tar.to_str().unwrap(), "bb:latest"]);
        e
    }

    /// A store without any image.
    pub fn empty() -> Engine {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the container tests need root"
        );
        Engine { b: Berth::new() }
    }

    /// Imports another busybox image as `name`, its rootfs first changed by `extra`, with
    /// `import --change` instructions (`VOLUME /data`, ...).
    pub fn import_image(&self, name: &str, changes: &[&str], extra: impl FnOnce(&Path)) {
        let dir = tempfile::tempdir_in(self.b.runroot.path()).unwrap();
        busybox_rootfs_tar(dir.path());
        let root = dir.path().join("rootfs");
        extra(&root);
        let tar = dir.path().join("image.tar");
        tar_dir(&root, &tar);
        let mut args = vec!["import"];
        for c in changes {
            args.extend(["--change", c]);
        }
        args.extend([tar.to_str().unwrap(), name]);
        self.ok(&args);
    }

    /// Names of the volumes (`volume ls -q`).
    pub fn volumes(&self) -> Vec<String> {
        self.ok(&["volume", "ls", "-q"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Entries of `<root>/volumes` (one directory per volume).
    pub fn volume_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root().join("volumes"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn cmd(&self) -> Command {
        let mut c = self.b.cmd();
        c.env("BERTH_MONITOR", sibling("berth-monitor"))
            .env("BERTH_INIT", sibling("berth-init"));
        c
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        expect_ok(args, self.output(args))
    }

    /// Runs `berth args...` with `input` on its stdin (a write error, say when berth exits
    /// without reading it all, is left to the exit status); its output whatever the status.
    pub fn output_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(input);
        child.wait_with_output().unwrap()
    }

    /// Must fail with `code`; returns stderr.
    pub fn fails_with(&self, code: i32, args: &[&str]) -> String {
        let out = self.output(args);
        expect_exit(args, code, &out);
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Must fail with 125 and an `Error: ` line; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let err = self.fails_with(125, args);
        assert!(err.starts_with("Error: "), "{err}");
        err
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["container", "inspect", name])).unwrap();
        v[0].clone()
    }

    pub fn ids(&self) -> Vec<String> {
        self.ok(&["ps", "-aq"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn root(&self) -> &Path {
        self.b.root.path()
    }

    /// Mounts under this store (must be none when no container runs).
    pub fn mounts(&self) -> Vec<String> {
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.root().to_string_lossy().into_owned();
        mi.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .map(str::to_string)
            .collect()
    }

    pub fn container_dirs(&self) -> usize {
        std::fs::read_dir(self.root().join("containers"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Nothing of any container is left: no rows, dirs, mounts, run dirs, cgroups.
    pub fn assert_clean(&self) {
        assert!(self.ids().is_empty(), "containers left: {:?}", self.ids());
        assert_eq!(self.container_dirs(), 0, "container dirs left");
        assert!(self.mounts().is_empty(), "mounts left: {:?}", self.mounts());
        let run = self.b.runroot.path().join("containers");
        let left = std::fs::read_dir(&run).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "run dirs left in {}", run.display());
        let rt = self.b.runroot.path().join("runtime");
        // (The compiled-seccomp cache, `+seccomp-cache`, stays.)
        let states = std::fs::read_dir(&rt)
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('+'))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(states, 0, "runtime state left in {}", rt.display());
        let ns = self.b.runroot.path().join("netns");
        let left = std::fs::read_dir(&ns).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "network namespaces left in {}", ns.display());
        assert!(self.pods().is_empty(), "pods left: {:?}", self.pods());
        let pods = self.root().join("pods");
        let left = std::fs::read_dir(&pods).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "pod dirs left in {}", pods.display());
    }

    /// Ids of every pod (`pod ls -q`; none when the store has no pods table yet).
    pub fn pods(&self) -> Vec<String> {
        let out = self.output(&["pod", "ls", "-q"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Pods first: their infra containers go with them only.
        for id in self.pods() {
            let _ = self.output(&["pod", "rm", "-f", &id]);
        }
        for id in self.ids() {
            let _ = self.output(&["rm", "-f", &id]);
        }
        // The default network's bridge (and Berth's nftables table) go when no container of any
        // store uses it any more.
        let _ = self.output(&["network", "rm", "bridge"]);
        for m in self.mounts() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        for m in mounts_under(self.b.runroot.path()) {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Mount points under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs `body` on a thread in a network namespace of its own (loopback up), which is then the
/// "host" of every `berth` it starts (their monitors and containers inherit it): the default
/// bridge, veth pairs, nftables table and published ports live there, never on the machine's
/// own network, so such tests run side by side. A panic of the body is passed on.
pub fn in_own_netns<T: Send>(body: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET)");
            let st = Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .expect("running ip");
            assert!(st.success(), "ip link set lo up");
            body()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Processes whose command line names `dir` (a store's runroot: monitors, containers' clean-up).
pub fn processes_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(&dir) {
                out.push(format!("{}: {c}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// A shell loop for busybox: retries a command until it succeeds (a server may be starting).
pub fn retry(cmd: &str) -> String {
    format!("for i in $(seq 100); do {cmd} && exit 0; sleep 0.1; done; exit 1")
}

/// An HTTP GET of `path` on 127.0.0.1:port from the test's host, retried until the server
/// answers (it may still be starting); the body.
pub fn http_get(port: u16, path: &str) -> String {
    let t = Instant::now();
    loop {
        let got = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match got {
            Ok(r) if r.starts_with("HTTP/1.") => {
                return r.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
            }
            r => assert!(
                t.elapsed() < Duration::from_secs(20),
                "no answer on 127.0.0.1:{port}: {r:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
