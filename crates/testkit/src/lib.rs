//! Fixtures shared by the integration tests of berth-registry and berth-cli (dev-dependency
//! only): a real `docker-registry` (plain, TLS, htpasswd or token auth; killed on drop), OCI
//! layouts built with umoci, certificates made with openssl, and a token server that issues
//! real JWTs. Everything panics with a message on failure: these are test helpers.
//!
//! Tests needing a peer binary call [`require_tool`], which fails naming the Debian package.

pub mod certs;
pub mod docker;
pub mod layout;
pub mod registry;
pub mod token;

use std::net::TcpListener;
use std::process::{Command, Stdio};

pub use certs::{make_certs, make_client_cert};
pub use docker::Dockerd;
pub use layout::Layout;
pub use registry::{Registry, RegistryConfig, Tls, TokenAuth};
pub use token::{token_registry, TokenServer, User};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("finding a free port: {e}"))
}

/// Whether `name` is on PATH.
pub fn has_tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Fail the test unless `name` is on PATH, naming the package that provides it.
pub fn require_tool(name: &str) {
    assert!(
        has_tool(name),
        "this test needs `{name}` on PATH (Debian package: {}; scripts/deps.sh installs it)",
        package_of(name)
    );
}

fn package_of(tool: &str) -> &'static str {
    match tool {
        "docker-registry" => "docker-registry",
        "openssl" => "openssl",
        "skopeo" => "skopeo",
        "umoci" => "umoci",
        "busybox" => "busybox-static",
        "dockerd" | "containerd" => "docker.io",
        "docker" => "docker.io (or docker-ce-cli)",
        "script" | "flock" => "util-linux",
        _ => "?",
    }
}

/// Run `cmd`, which must succeed; returns its stdout.
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

/// Deterministic pseudo-random bytes.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
