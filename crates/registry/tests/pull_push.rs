//! Pull and push against a real `docker-registry` seeded with skopeo.

mod common;

use std::process::Command;

use berth_registry::manifest::OCI_MANIFEST;
use berth_registry::{
    BlobPush, Client, ClientOptions, Digest, Error, Reference, Repository, RetryPolicy,
};
use common::{bytes, run, test_options, Registry, RegistryExt};
use serde_json::Value;

fn descriptors(manifest: &[u8]) -> Vec<(Digest, u64)> {
    let v: Value = serde_json::from_slice(manifest).unwrap();
    let mut out = vec![(
        Digest::parse(v["config"]["digest"].as_str().unwrap()).unwrap(),
        v["config"]["size"].as_u64().unwrap(),
    )];
    for l in v["layers"].as_array().unwrap() {
        out.push((
            Digest::parse(l["digest"].as_str().unwrap()).unwrap(),
            l["size"].as_u64().unwrap(),
        ));
    }
    out
}

#[test]
fn pulls_manifest_and_blobs_seeded_by_skopeo() {
    let reg = Registry::start();
    reg.seed_busybox();
    let c = reg.client();
    let r = Reference::parse(&format!("{}/test/busybox:1", reg.host())).unwrap();
    let m = c.get_manifest(&r, &[]).unwrap();
    assert_eq!(m.media_type, OCI_MANIFEST);
    assert_eq!(m.digest, Digest::sha256_of(&m.bytes));

    let head = c.head_manifest(&r, &[]).unwrap().expect("manifest exists");
    assert_eq!(head.digest.as_ref(), Some(&m.digest));
    assert_eq!(head.size, Some(m.bytes.len() as u64));

    // By digest: verified against the reference's digest.
    let by_digest = Reference::parse(&format!("{}/test/busybox@{}", reg.host(), m.digest)).unwrap();
    let m2 = c.get_manifest(&by_digest, &[]).unwrap();
    assert_eq!(m2.bytes, m.bytes);

    let descs = descriptors(&m.bytes);
    assert_eq!(descs.len(), 2, "config + one layer");
    let busybox_len = std::fs::metadata("/usr/bin/busybox").unwrap().len();
    for (d, size) in descs {
        assert_eq!(c.head_blob(&r.repo(), &d).unwrap(), Some(size));
        let mut body = Vec::new();
        let n = c.get_blob(&r.repo(), &d, &mut body, None).unwrap();
        assert_eq!(n, size);
        assert_eq!(body.len() as u64, size);
        assert_eq!(Digest::sha256_of(&body), d);
        if size > 1000 {
            // The layer is a gzip'd tar holding busybox; compressed it is still a sizeable fraction.
            assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip magic");
            assert!(
                size > busybox_len / 4,
                "layer of {size} bytes is too small for busybox"
            );
        }
    }
}

#[test]
fn missing_things_give_clear_errors() {
    let reg = Registry::start();
    reg.seed_busybox();
    let c = reg.client();
    let r = Reference::parse(&format!("{}/test/busybox:nope", reg.host())).unwrap();
    assert_eq!(c.head_manifest(&r, &[]).unwrap(), None);
    let e = c.get_manifest(&r, &[]).unwrap_err();
    assert!(matches!(e, Error::ManifestUnknown { .. }), "{e:?}");
    assert_eq!(e.status(), Some(404));
    let msg = e.to_string();
    eprintln!("error shown to the user: {msg}");
    assert!(
        msg.contains("manifest unknown") && msg.contains("test/busybox:nope"),
        "{msg}"
    );

    let other = Reference::parse(&format!("{}/no/such/repo:1", reg.host())).unwrap();
    let e = c.get_manifest(&other, &[]).unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");

    let d = Digest::sha256_of(b"not there");
    assert_eq!(c.head_blob(&r.repo(), &d).unwrap(), None);
    let e = c
        .get_blob(&r.repo(), &d, &mut Vec::new(), None)
        .unwrap_err();
    assert!(matches!(e, Error::BlobUnknown { .. }), "{e:?}");
    assert!(e.to_string().contains(&d.to_string()), "{e}");
}

/// Builds a tiny image: a gzip'd tar layer and a config; returns (layer, config, manifest bytes).
fn tiny_image(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), bytes(20_000, 7)).unwrap();
    let tgz = dir.join("layer.tar.gz");
    run(Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&root)
        .arg("."));
    let layer = std::fs::read(&tgz).unwrap();
    // The uncompressed tar's digest is the diff ID.
    let tar = run(Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc {} | sha256sum", tgz.display())));
    let diff_id = format!("sha256:{}", tar.split_whitespace().next().unwrap());
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256_of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": Digest::sha256_of(&layer).to_string(), "size": layer.len()}]
    }))
    .unwrap();
    (layer, config, manifest)
}

#[test]
fn push_then_skopeo_sees_and_copies_it() {
    let reg = Registry::start();
    let c = Client::new(ClientOptions {
        chunk_size: 4096,
        ..test_options().insecure(&reg.host())
    });
    let work = tempfile::tempdir().unwrap();
    let (layer, config, manifest) = tiny_image(work.path());
    let repo = Repository::new(&reg.host(), "new/app").unwrap();
    let ld = Digest::sha256_of(&layer);
    let res = c
        .push_blob(&repo, &ld, layer.len() as u64, &mut layer.as_slice(), None)
        .unwrap();
    let expected_chunks = layer.len().div_ceil(4096) as u64;
    assert_eq!(
        res,
        BlobPush::Uploaded {
            chunks: expected_chunks
        }
    );
    assert!(expected_chunks > 1, "layer should need several chunks");
    let cd = Digest::sha256_of(&config);
    c.push_blob(
        &repo,
        &cd,
        config.len() as u64,
        &mut config.as_slice(),
        None,
    )
    .unwrap();
    // Pushing again finds it there.
    assert_eq!(
        c.push_blob(&repo, &ld, layer.len() as u64, &mut layer.as_slice(), None)
            .unwrap(),
        BlobPush::AlreadyExists
    );
    let r = Reference::parse(&format!("{}/new/app:v1", reg.host())).unwrap();
    let md = c.push_manifest(&r, &manifest, OCI_MANIFEST).unwrap();
    assert_eq!(md, Digest::sha256_of(&manifest));

    let r2 = Reference::parse(&format!("{}/new/app:v2", reg.host())).unwrap();
    c.push_manifest(&r2, &manifest, OCI_MANIFEST).unwrap();
    let mut tags = c.list_tags(&repo).unwrap();
    tags.sort();
    assert_eq!(tags, ["v1", "v2"]);

    let out = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/new/app:v1", reg.host()),
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], md.to_string());
    assert_eq!(v["Layers"][0], ld.to_string());

    let oci = work.path().join("copy");
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/new/app:v1", reg.host()),
        &format!("oci:{}:v1", oci.display()),
    ]));
    let copied = std::fs::read(oci.join("blobs/sha256").join(ld.hex())).unwrap();
    assert_eq!(copied, layer);

    // A blob whose bytes do not match the announced digest is refused before the final PUT.
    let wrong = Digest::sha256_of(b"something else");
    let e = c
        .push_blob(
            &repo,
            &wrong,
            layer.len() as u64,
            &mut layer.as_slice(),
            None,
        )
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");
    assert_eq!(c.head_blob(&repo, &wrong).unwrap(), None);
}

#[test]
fn cross_repository_mount() {
    let reg = Registry::start();
    let c = reg.client();
    let data = bytes(50_000, 3);
    let d = Digest::sha256_of(&data);
    let a = Repository::new(&reg.host(), "team/a").unwrap();
    let b = Repository::new(&reg.host(), "team/b").unwrap();
    assert!(matches!(
        c.push_blob(&a, &d, data.len() as u64, &mut data.as_slice(), None)
            .unwrap(),
        BlobPush::Uploaded { .. }
    ));
    let before = c.stats();
    let res = c
        .push_blob(&b, &d, data.len() as u64, &mut data.as_slice(), Some(&a))
        .unwrap();
    assert_eq!(res, BlobPush::Mounted);
    let after = c.stats();
    assert_eq!(after.mounts, before.mounts + 1);
    assert_eq!(after.uploads, before.uploads, "no upload for a mount");
    assert_eq!(c.head_blob(&b, &d).unwrap(), Some(data.len() as u64));
    let mut body = Vec::new();
    c.get_blob(&b, &d, &mut body, None).unwrap();
    assert_eq!(body, data);

    // The empty blob: no PATCH at all, just the closing PUT.
    let empty = Digest::sha256_of(b"");
    assert_eq!(
        c.push_blob(&a, &empty, 0, &mut &b""[..], None).unwrap(),
        BlobPush::Uploaded { chunks: 0 }
    );
    assert_eq!(c.head_blob(&a, &empty).unwrap(), Some(0));
}

#[test]
fn resume_and_digest_mismatch() {
    let reg = Registry::start();
    let c = reg.client();
    let data = bytes(300_000, 11);
    let d = Digest::sha256_of(&data);
    let repo = Repository::new(&reg.host(), "blobs/r").unwrap();
    c.push_blob(&repo, &d, data.len() as u64, &mut data.as_slice(), None)
        .unwrap();

    // Resume after 123_457 bytes: only the rest is fetched, and the whole is verified.
    let split = 123_457;
    let mut prefix = &data[..split];
    let mut rest = Vec::new();
    let total = c.get_blob(&repo, &d, &mut rest, Some(&mut prefix)).unwrap();
    assert_eq!(total, data.len() as u64);
    assert_eq!(rest, &data[split..]);

    // Everything already there: nothing more to fetch.
    let mut all = data.as_slice();
    let mut none = Vec::new();
    assert_eq!(
        c.get_blob(&repo, &d, &mut none, Some(&mut all)).unwrap(),
        data.len() as u64
    );
    assert!(none.is_empty());

    // A corrupt prefix is caught.
    let mut bad_prefix = vec![0u8; split];
    let e = c
        .get_blob(&repo, &d, &mut Vec::new(), Some(&mut bad_prefix.as_slice()))
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");
    bad_prefix.clear();

    // Corrupt the registry's stored copy (same length): the download is refused.
    let p = reg.blob_path(d.hex());
    let mut stored = std::fs::read(&p).unwrap();
    stored[1000] ^= 0xff;
    std::fs::write(&p, &stored).unwrap();
    let e = c.get_blob(&repo, &d, &mut Vec::new(), None).unwrap_err();
    let msg = e.to_string();
    eprintln!("error shown to the user: {msg}");
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");
    assert!(
        msg.contains("digest mismatch") && msg.contains(&d.to_string()),
        "{msg}"
    );
}

#[test]
fn unreachable_registry_is_a_clear_error() {
    let port = common::free_port();
    let host = format!("127.0.0.1:{port}");
    let c = Client::new(ClientOptions {
        retry: RetryPolicy {
            max_retries: 1,
            initial_backoff: std::time::Duration::from_millis(10),
            max_backoff: std::time::Duration::from_millis(10),
        },
        ..test_options().insecure(&host)
    });
    let r = Reference::parse(&format!("{host}/x/y:1")).unwrap();
    let e = c.get_manifest(&r, &[]).unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    let msg = e.to_string();
    eprintln!("error shown to the user: {msg}");
    assert!(
        msg.contains("cannot reach registry") && msg.contains(&host),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    assert_eq!(c.stats().retries, 1);

    let c = Client::new(test_options());
    let r = Reference::parse("no-such-host.invalid/x:1").unwrap();
    let e = c.get_manifest(&r, &[]).unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
}
