//! Certificates made with openssl: a CA, a server certificate for 127.0.0.1, a client one.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{require_tool, run};

/// Makes a CA and a server certificate for 127.0.0.1 / localhost in `dir`; returns (ca.crt, server.crt, server.key).
pub fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    require_tool("openssl");
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.crt");
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("writing an openssl extension file");
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=berth test CA",
        ])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca));
    let (crt, key) = sign(dir, "server.crt", "/CN=127.0.0.1", &ext);
    (ca, crt, key)
}

/// Makes a client certificate signed by the CA in `dir` (from [`make_certs`]); returns (cert, key).
pub fn make_client_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let ext = dir.join("client-ext.cnf");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .expect("writing an openssl extension file");
    // docker's certs.d convention: a client certificate ends in `.cert`.
    sign(dir, "client.cert", "/CN=berth client", &ext)
}

/// A new key and the certificate `dir/<cert_name>` for `subject`, signed by `dir/ca.crt` with the
/// extensions in `ext` (key and request beside it, named by the certificate's stem); returns
/// (cert, key).
fn sign(dir: &Path, cert_name: &str, subject: &str, ext: &Path) -> (PathBuf, PathBuf) {
    let crt = dir.join(cert_name);
    let key = crt.with_extension("key");
    let csr = crt.with_extension("csr");
    run(Command::new("openssl")
        .args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", subject])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(dir.join("ca.crt"))
        .arg("-CAkey")
        .arg(dir.join("ca.key"))
        .arg("-extfile")
        .arg(ext)
        .arg("-out")
        .arg(&crt));
    (crt, key)
}
