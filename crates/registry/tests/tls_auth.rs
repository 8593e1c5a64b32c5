//! Basic auth over TLS against a real `docker-registry` (htpasswd + a CA made with openssl).

mod common;

use berth_registry::manifest::OCI_MANIFEST;
use berth_registry::{
    AuthFile, Client, ClientOptions, Credentials, Digest, Error, Reference, Repository,
};
use common::{bytes, make_certs, test_options, Registry, RegistryConfig, Tls};

#[test]
fn basic_auth_over_tls_with_private_ca() {
    let work = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(work.path());
    let htpasswd = work.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 5).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let reg = Registry::start_with(&RegistryConfig {
        tls: Some(Tls {
            cert,
            key,
            client_ca: None,
        }),
        htpasswd: Some(htpasswd),
        ..RegistryConfig::default()
    });
    let host = reg.host();
    let certs_root = work.path().join("certs.d");
    std::fs::create_dir_all(certs_root.join(&host)).unwrap();
    std::fs::copy(&ca, certs_root.join(&host).join("ca.crt")).unwrap();
    let auth_file = work.path().join("auth.json");
    let opts = ClientOptions {
        certs_root: certs_root.clone(),
        auth_file: Some(auth_file.clone()),
        ..test_options()
    };

    // Without the CA directory the TLS handshake fails with a clear error.
    let untrusting = Client::new(test_options());
    let e = untrusting.ping(&host).unwrap_err();
    assert!(matches!(e, Error::Tls { .. }), "{e:?}");
    let msg = e.to_string();
    eprintln!("error shown to the user: {msg}");
    assert!(
        msg.contains("TLS connection") && msg.contains("not trusted"),
        "{msg}"
    );
    assert!(msg.contains(&format!("{host}/*.crt")), "{msg}");

    // tls_verify=false: HTTPS without verifying the certificate reaches the registry (its 401).
    untrusting.set_tls_verify(&host, false);
    let e = untrusting.ping(&host).unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    untrusting.set_tls_verify(&host, true);
    assert!(matches!(
        untrusting.ping(&host).unwrap_err(),
        Error::Tls { .. }
    ));

    // With the CA but no credentials: 401 that says to log in.
    let c = Client::new(opts.clone());
    let e = c.ping(&host).unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    assert!(e.to_string().contains("log in"), "{e}");

    // Wrong password: 401, nothing stored.
    let e = c
        .login(&host, &Credentials::new("alice", "wrong"), Some(&auth_file))
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    eprintln!("error shown to the user: {e}");
    assert!(
        e.to_string().contains("invalid user name or password"),
        "{e}"
    );
    assert_eq!(AuthFile::load(&auth_file).unwrap().get(&host), None);

    // Right password: stored in the auth file.
    c.login(
        &host,
        &Credentials::new("alice", "s3cret"),
        Some(&auth_file),
    )
    .unwrap();
    assert_eq!(
        AuthFile::load(&auth_file).unwrap().get(&host),
        Some(Credentials::new("alice", "s3cret"))
    );

    // A fresh client reads the auth file: push and pull.
    let c2 = Client::new(opts.clone());
    let repo = Repository::new(&host, "private/app").unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = Digest::sha256_of(config);
    c2.push_blob(&repo, &cd, config.len() as u64, &mut &config[..], None)
        .unwrap();
    let layer = bytes(10_000, 5);
    let ld = Digest::sha256_of(&layer);
    c2.push_blob(&repo, &ld, layer.len() as u64, &mut layer.as_slice(), None)
        .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld.to_string(), "size": layer.len()}]
    }))
    .unwrap();
    let r = Reference::parse(&format!("{host}/private/app:1")).unwrap();
    let md = c2.push_manifest(&r, &manifest, OCI_MANIFEST).unwrap();
    let m = c2.get_manifest(&r, &[]).unwrap();
    assert_eq!(m.digest, md);
    let mut body = Vec::new();
    c2.get_blob(&repo, &ld, &mut body, None).unwrap();
    assert_eq!(body, layer);

    // skopeo reads the auth file we wrote and trusts the same CA directory.
    let out = common::run(std::process::Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--authfile",
        auth_file.to_str().unwrap(),
        "--cert-dir",
        certs_root.join(&host).to_str().unwrap(),
        &format!("docker://{host}/private/app:1"),
    ]));
    assert_eq!(out.as_bytes(), manifest.as_slice());

    // Logout removes the entry; a new client is refused again.
    assert!(c2.logout(&host, Some(&auth_file)).unwrap());
    let c3 = Client::new(opts);
    let e = c3.get_manifest(&r, &[]).unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
}

#[test]
fn client_certificate_from_certs_dir() {
    let work = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(work.path());
    let (client_cert, client_key) = common::make_client_cert(work.path());
    let reg = Registry::start_with(&RegistryConfig {
        tls: Some(Tls {
            cert,
            key,
            client_ca: Some(ca.clone()),
        }),
        ..RegistryConfig::default()
    });
    let host = reg.host();
    let certs_root = work.path().join("certs.d");
    let dir = certs_root.join(&host);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&ca, dir.join("ca.crt")).unwrap();
    let opts = ClientOptions {
        certs_root: certs_root.clone(),
        ..test_options()
    };

    // CA trusted but no client certificate: the registry refuses the handshake.
    let e = Client::new(opts.clone()).ping(&host).unwrap_err();
    eprintln!("error shown to the user: {e}");
    assert!(matches!(e, Error::Tls { .. }), "{e:?}");
    assert!(e.to_string().contains("client certificate"), "{e}");

    // A certificate without its key is a configuration error, not a silent anonymous connection.
    std::fs::copy(&client_cert, dir.join("client.cert")).unwrap();
    let e = Client::new(opts.clone()).ping(&host).unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert!(e.to_string().contains("has no key"), "{e}");

    std::fs::copy(&client_key, dir.join("client.key")).unwrap();
    Client::new(opts).ping(&host).unwrap();
}
