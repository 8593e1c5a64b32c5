//! Failures: killed pulls, corrupt blobs, unreachable registries, unknown images, bad references.
//! Each must give a clear message, exit 125 and leave the store consistent.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use common::{Berth, Layout, Registry};

/// Biggest file under the registry's blob storage (the layer).
fn biggest_blob(reg: &Registry) -> std::path::PathBuf {
    let root = reg.dir.path().join("data/docker/registry/v2/blobs/sha256");
    let mut best = (0, None);
    for a in std::fs::read_dir(&root).unwrap() {
        for b in std::fs::read_dir(a.unwrap().path()).unwrap() {
            let p = b.unwrap().path().join("data");
            let len = std::fs::metadata(&p).unwrap().len();
            if len > best.0 {
                best = (len, Some(p));
            }
        }
    }
    best.1.unwrap()
}

#[test]
fn killed_pull_leaves_a_consistent_store_and_the_next_pull_completes() {
    let reg = Registry::start();
    let l = Layout::busybox();
    // A second, big layer of incompressible data.
    let mut data = vec![0u8; 50 << 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    std::fs::write(l.bundle().join("rootfs/big"), &data).unwrap();
    l.repack();
    reg.push_layout(&l.path(), "t", "test/big:1");
    let name = format!("{}/test/big:1", reg.host());
    let b = Berth::new();

    let mut child = b
        .cmd()
        .args(["pull", "--tls-verify=false", &name])
        .spawn()
        .unwrap();
    // Kill it once a blob download is under way.
    let tmp = b.root.path().join("tmp");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut killed_mid_download = false;
    loop {
        let partial = std::fs::read_dir(&tmp)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .any(|e| e.metadata().map(|m| m.len() > (1 << 20)).unwrap_or(false))
            })
            .unwrap_or(false);
        if partial {
            child.kill().unwrap();
            killed_mid_download = true;
            break;
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let st = child.wait().unwrap();
    assert!(
        killed_mid_download,
        "the pull ended ({st}) before it could be killed"
    );

    // Nothing recorded, no half layer under a final name, the database is sound.
    assert!(b.images().is_empty());
    b.fails(&["inspect", &name]);
    b.check_db();
    assert!(
        b.layer_dirs().iter().all(|d| !d.starts_with('.')),
        "temp dirs are not final layers"
    );

    // The next pull completes and cleans the dead process's temp files.
    let id = b.ok(&["pull", "--tls-verify=false", &name]);
    let v = b.inspect(&name);
    assert_eq!(v["Id"], id.trim());
    let layers = v["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    let big = std::fs::read(b.layer_dir(layers[1].as_str().unwrap()).join("big")).unwrap();
    assert!(big == data, "big file restored byte for byte");
    let leftovers: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "stale temp files: {leftovers:?}");
    let hidden: Vec<_> = std::fs::read_dir(b.root.path().join("layers"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "stale layer temp dirs: {hidden:?}");
    b.check_db();
}

#[test]
fn corrupt_blob_is_a_digest_error_and_records_nothing() {
    let reg = Registry::start();
    let l = Layout::busybox();
    reg.push_layout(&l.path(), "t", "test/busybox:1");
    let layer = biggest_blob(&reg);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&layer)
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    let mut byte = [0u8; 1];
    f.read_exact(&mut byte).unwrap();
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.write_all(&[byte[0] ^ 0xff]).unwrap();
    drop(f);

    let b = Berth::new();
    let name = format!("{}/test/busybox:1", reg.host());
    let err = b.fails(&["pull", "--tls-verify=false", &name]);
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(b.images().is_empty());
    let hex = layer
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        !b.blobs().iter().any(|x| x == hex),
        "the bad layer is not stored"
    );
    assert!(b.layer_dirs().is_empty());
    b.check_db();
}

#[test]
fn unreachable_registry_unknown_images_and_bad_references() {
    let b = Berth::new();
    let port = common::free_port();
    let start = Instant::now();
    let err = b.fails(&[
        "pull",
        "--tls-verify=false",
        &format!("127.0.0.1:{port}/x/y:1"),
    ]);
    assert!(err.contains("cannot reach registry"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(start.elapsed() < Duration::from_secs(20));

    let reg = Registry::start();
    let err = b.fails(&[
        "pull",
        "--tls-verify=false",
        &format!("{}/no/such:1", reg.host()),
    ]);
    assert!(err.contains("manifest unknown"), "{err}");

    assert!(b
        .fails(&["pull", "library/UPPER:1"])
        .contains("must be lowercase"));
    assert!(b
        .fails(&["pull", "a//b"])
        .contains("invalid image reference"));
    assert!(b
        .fails(&["inspect", "nothere:1"])
        .contains("image not known: nothere:1"));
    assert!(b.fails(&["rmi", "nothere"]).contains("image not known"));
    assert!(b
        .fails(&["save", "-o", "/dev/null", "nothere"])
        .contains("image not known"));
    assert!(b.fails(&["push", "nothere"]).contains("image not known"));
    assert!(b
        .fails(&["images", "--format", "yaml"])
        .contains("--format"));
    // Usage errors also exit 125.
    let out = b.output(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(b.images().is_empty());
    b.check_db();
}
