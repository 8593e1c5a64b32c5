//! Test fixtures: a real `docker-registry` (killed on drop), images built with umoci and pushed
//! with skopeo, and a `berth` runner with its own `--root`/`--runroot` temp dirs.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn require_tool(name: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "this test needs `{name}` on PATH");
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running `docker-registry serve` on 127.0.0.1, killed and reaped on drop.
pub struct Registry {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_with_htpasswd(None)
    }

    pub fn start_with_htpasswd(htpasswd: Option<&Path>) -> Registry {
        require_tool("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some(h) = htpasswd {
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                h.display()
            ));
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut reg = Registry { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = reg.child.try_wait() {
                panic!("docker-registry exited with {st}: {}", reg.log());
            }
            assert!(Instant::now() < deadline, "docker-registry did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        reg
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where the filesystem driver keeps a blob's bytes.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Push the OCI layout image `layout:tag` as `host/repo`.
    pub fn push_layout(&self, layout: &Path, tag: &str, repo: &str) {
        run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{}/{repo}", self.host()),
        ]));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OCI layout built with umoci in a temp dir.
pub struct Layout {
    pub work: tempfile::TempDir,
}

impl Layout {
    pub fn path(&self) -> PathBuf {
        self.work.path().join("layout")
    }

    pub fn bundle(&self) -> PathBuf {
        self.work.path().join("bundle")
    }

    /// A new image `t` holding `/bin/busybox`, unpacked afresh in `bundle()` (so changes made
    /// there become a new layer on top).
    pub fn busybox() -> Layout {
        for t in ["umoci", "skopeo", "busybox"] {
            require_tool(t);
        }
        let l = Layout {
            work: tempfile::tempdir().unwrap(),
        };
        let lp = l.path().display().to_string();
        run(Command::new("umoci").args(["init", "--layout", &lp]));
        run(Command::new("umoci").args(["new", "--image", &format!("{lp}:t")]));
        l.unpack();
        std::fs::create_dir_all(l.bundle().join("rootfs/bin")).unwrap();
        std::fs::copy("/usr/bin/busybox", l.bundle().join("rootfs/bin/busybox")).unwrap();
        l.repack();
        l.unpack();
        l
    }

    /// (Re)unpack image `t` into `bundle()`.
    pub fn unpack(&self) {
        let _ = std::fs::remove_dir_all(self.bundle());
        run(Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:t", self.path().display())])
            .arg(self.bundle()));
    }

    /// Add a layer with the changes made in `bundle()` to image `t` (call `unpack` again before
    /// the next change).
    pub fn repack(&self) {
        run(Command::new("umoci")
            .args(["repack", "--image", &format!("{}:t", self.path().display())])
            .arg(self.bundle()));
    }

    /// Set the image config of `t` (umoci config flags).
    pub fn config(&self, args: &[&str]) {
        run(Command::new("umoci")
            .args(["config", "--image", &format!("{}:t", self.path().display())])
            .args(args));
    }
}

/// `berth` with its own store.
pub struct Berth {
    pub root: tempfile::TempDir,
    pub runroot: tempfile::TempDir,
}

impl Berth {
    pub fn new() -> Berth {
        Berth {
            root: tempfile::tempdir().unwrap(),
            runroot: tempfile::tempdir().unwrap(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.arg("--root")
            .arg(self.root.path())
            .arg("--runroot")
            .arg(self.runroot.path())
            .env("REGISTRY_AUTH_FILE", self.runroot.path().join("auth.json"))
            .stdin(Stdio::null());
        c
    }

    /// Run `berth args...`, returning its output whatever the status.
    pub fn output(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Run `berth args...`, which must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run `berth args...`, which must fail with 125; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert_eq!(
            out.status.code(),
            Some(125),
            "berth {args:?}: want exit 125, got {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with("Error: "), "{err}");
        err
    }

    /// `berth images --format json`.
    pub fn images(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["images", "--format", "json"])).unwrap()
    }

    /// `berth inspect NAME` (the one object).
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let v: Vec<serde_json::Value> = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        assert_eq!(v.len(), 1);
        v.into_iter().next().unwrap()
    }

    pub fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.root
            .path()
            .join("layers")
            .join(diff_id.trim_start_matches("sha256:"))
    }

    /// Names in `<root>/blobs/sha256`.
    pub fn blobs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root.path().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// Final layer directories (no temp dirs, no sidecars).
    pub fn layer_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root.path().join("layers"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// `PRAGMA integrity_check` and foreign keys of the metadata database.
    pub fn check_db(&self) {
        let c = rusqlite::Connection::open(self.root.path().join("berth.db")).unwrap();
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let bad: i64 = c
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(bad, 0, "foreign key violations");
    }
}
