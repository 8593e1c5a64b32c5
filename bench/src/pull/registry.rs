//! A `docker-registry serve` on 127.0.0.1 (random free port, temp storage), killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::cmd;

/// A running registry.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    /// Port it listens on.
    pub port: u16,
}

impl Registry {
    /// Start one with its storage in a temp dir under `base`.
    pub fn start(base: &Path) -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("registry-")
            .tempdir_in(base)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry (apt-get install docker-registry)")?;
        let mut reg = Registry { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = reg.child.try_wait()? {
                bail!("docker-registry exited with {st}: {}", reg.log());
            }
            if Instant::now() > deadline {
                bail!("docker-registry did not listen within 15 s: {}", reg.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(reg)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Push OCI layout `layout:tag` as `host/repo`.
    pub fn push(&self, layout: &Path, tag: &str, repo: &str) -> Result<()> {
        cmd::run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{}/{repo}", self.host()),
        ]))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
