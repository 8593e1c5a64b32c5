//! Test fixtures: the shared ones of `berth-testkit` (a real `docker-registry` killed on drop,
//! images built with umoci and pushed with skopeo, a JWT token server) and a `berth` runner with
//! its own `--root`/`--runroot` temp dirs.
#![allow(dead_code, unused_imports)]

pub mod engine;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub use berth_testkit::{
    free_port, has_tool, require_tool, run, Dockerd, Layout, Registry, RegistryConfig, TokenServer,
    User,
};

/// The output of `berth args...`, which must have succeeded; returns stdout.
pub fn expect_ok(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "berth {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The output of `berth args...`, which must have exited with `code`.
pub fn expect_exit(args: &[&str], code: i32, out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "berth {args:?}: want exit {code}, got {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pushes the layout's `t` image to `reg` as `repo` (`test/busybox:1`) and pulls it into a new
/// store: the store, the image's name there and its id.
pub fn push_and_pull(reg: &Registry, l: &Layout, repo: &str) -> (Berth, String, String) {
    reg.push_layout(&l.path(), "t", repo);
    let b = Berth::new();
    let name = format!("{}/{repo}", reg.host());
    let id = b
        .ok(&["pull", "--tls-verify=false", &name])
        .trim()
        .to_string();
    (b, name, id)
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
        expect_ok(args, self.output(args))
    }

    /// Run `berth args...`, which must fail with 125; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.output(args);
        expect_exit(args, 125, &out);
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
