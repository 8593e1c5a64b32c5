//! A real `docker-registry serve` (distribution 2.8) on 127.0.0.1, killed and reaped on drop.

use std::fmt::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::{free_port, require_tool, run};

/// TLS settings of a registry.
pub struct Tls {
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// CA that client certificates must chain to (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// Token authentication (`auth: token:`): the registry accepts JWTs from `issuer` for
/// `service`, signed by a key whose certificate is in `rootcertbundle`, and sends clients to
/// `realm` for them.
pub struct TokenAuth {
    /// Where clients get tokens.
    pub realm: String,
    /// The `service` (and the tokens' `aud`).
    pub service: String,
    /// The tokens' `iss`.
    pub issuer: String,
    /// PEM certificates trusted to sign tokens.
    pub rootcertbundle: PathBuf,
}

/// How to run the registry (default: plain HTTP, no auth).
#[derive(Default)]
pub struct RegistryConfig {
    /// Serve HTTPS.
    pub tls: Option<Tls>,
    /// Basic auth from this htpasswd file (bcrypt).
    pub htpasswd: Option<PathBuf>,
    /// Bearer tokens (exclusive with `htpasswd`).
    pub token: Option<TokenAuth>,
}

/// A running `docker-registry serve`.
pub struct Registry {
    child: Child,
    /// Its config, log and storage (`data/`).
    pub dir: tempfile::TempDir,
    /// The port it listens on.
    pub port: u16,
}

impl Registry {
    /// Plain HTTP, no auth.
    pub fn start() -> Registry {
        Self::start_with(&RegistryConfig::default())
    }

    /// Plain HTTP, basic auth from `htpasswd` when given.
    pub fn start_with_htpasswd(htpasswd: Option<&Path>) -> Registry {
        Self::start_with(&RegistryConfig {
            htpasswd: htpasswd.map(Path::to_path_buf),
            ..RegistryConfig::default()
        })
    }

    /// As `cfg` says; returns once it accepts connections.
    pub fn start_with(cfg: &RegistryConfig) -> Registry {
        require_tool("docker-registry");
        let dir = tempfile::tempdir().expect("creating the registry's temp dir");
        let port = free_port();
        let mut yml = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some(t) = &cfg.tls {
            let _ = write!(
                yml,
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.cert.display(),
                t.key.display()
            );
            if let Some(ca) = &t.client_ca {
                let _ = write!(yml, "    clientcas:\n      - {}\n", ca.display());
            }
        }
        match (&cfg.htpasswd, &cfg.token) {
            (Some(_), Some(_)) => panic!("a registry has htpasswd or token auth, not both"),
            (Some(h), None) => {
                let _ = write!(
                    yml,
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    h.display()
                );
            }
            (None, Some(t)) => {
                let _ = write!(
                    yml,
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    t.realm,
                    t.service,
                    t.issuer,
                    t.rootcertbundle.display()
                );
            }
            (None, None) => {}
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, yml).expect("writing the registry config");
        let log = std::fs::File::create(dir.path().join("registry.log"))
            .expect("creating the registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdout(log.try_clone().expect("cloning the log fd"))
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let mut reg = Registry { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = reg.child.try_wait() {
                panic!("docker-registry exited with {st}: {}", reg.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen: {}",
                reg.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        reg
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What it logged so far.
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

    /// Push the OCI layout image `layout:tag` as `host/repo` with skopeo (plain HTTP, no auth).
    pub fn push_layout(&self, layout: &Path, tag: &str, repo: &str) {
        require_tool("skopeo");
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
