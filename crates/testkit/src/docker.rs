//! A private `dockerd` (docker.io 20.10) for interoperability tests: its own data root, exec
//! root, pidfile, unix socket and daemon.json in a temp dir, its own managed containerd, no
//! bridge, no iptables, no IP forwarding or masquerading, the `vfs` storage driver (no mounts),
//! and `deprecated-key-path` in the temp dir (else 20.10 writes /etc/docker/key.json). Nothing
//! on the host's network or in /etc is touched.
//!
//! Dropping it stops dockerd (SIGTERM, then SIGKILL for it and its containerd), unmounts
//! anything left under its directory and removes the directory, also when the test failed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::require_tool;

/// A running private dockerd.
pub struct Dockerd {
    child: Child,
    dir: Option<tempfile::TempDir>,
    socket: PathBuf,
}

impl Dockerd {
    /// Start one and wait until it answers; fails the test, with its log, if it cannot start.
    pub fn start() -> Dockerd {
        for t in ["dockerd", "containerd", "docker"] {
            require_tool(t);
        }
        // Short path: the unix sockets under it must fit in sun_path (108 bytes).
        let dir = tempfile::Builder::new()
            .prefix("berth-dockerd-")
            .tempdir_in("/tmp")
            .expect("creating the dockerd temp dir");
        let d = dir.path().to_path_buf();
        let socket = d.join("docker.sock");
        std::fs::create_dir_all(d.join("client")).expect("creating the docker client config dir");
        let daemon_json = d.join("daemon.json");
        std::fs::write(
            &daemon_json,
            serde_json::json!({"deprecated-key-path": d.join("key.json")}).to_string(),
        )
        .expect("writing daemon.json");
        let log = std::fs::File::create(d.join("dockerd.log")).expect("creating the dockerd log");
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(&daemon_json)
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                "--storage-driver=vfs",
                "--containerd-namespace=berth-test",
                "--containerd-plugins-namespace=berth-test-plugins",
                "--log-level=warn",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log fd"))
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        let mut dd = Dockerd {
            child,
            dir: Some(dir),
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = dd.child.try_wait() {
                panic!(
                    "dockerd exited with {st} before answering; its log:\n{}",
                    dd.log()
                );
            }
            let up = dd.socket.exists()
                && dd
                    .docker()
                    .args(["version", "--format", "{{.Server.Version}}"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer on {} within 60 s; its log:\n{}",
                dd.socket.display(),
                dd.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        dd
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// A `docker` client command for this daemon (its own client config dir).
    pub fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        c.env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env("DOCKER_CONFIG", self.dir().join("client"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .stdin(Stdio::null());
        c
    }

    /// What dockerd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default()
    }

    fn pid_of(&self, file: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir().join(file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|p| *p > 0)
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let containerd = self.pid_of("exec/containerd/containerd.pid");
        let pid = self.child.id() as i32;
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(self.child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // dockerd stops its containerd on a clean exit; after a SIGKILL it may not have.
        if let Some(c) = containerd {
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(c) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if alive(c) {
                // SAFETY: kill(2) of the containerd this dockerd started (pid from its pidfile).
                unsafe { libc::kill(c, libc::SIGKILL) };
            }
        }
        let dir = self.dir().to_path_buf();
        unmount_under(&dir);
        if let Some(d) = self.dir.take() {
            if let Err(e) = d.close() {
                eprintln!("removing {}: {e}", dir.display());
            }
        }
    }
}

/// Lazily unmount every mount point under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: umount2 on a NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}
