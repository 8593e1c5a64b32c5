//! Interop with real tools: layouts made by umoci are read and unpacked by berth-image; layouts
//! written by berth-image are accepted by `skopeo inspect`, `umoci unpack` and `skopeo copy` to
//! a docker-archive, which berth-image reads back.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use berth_image::digest::HashingSink;
use berth_image::formats::{
    layer_type, Descriptor, ImageConfig, RunConfig, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
};
use berth_image::layout::{DockerArchive, OciLayout};
use berth_image::unpack::{unpack_layer, UnpackOptions};
use berth_image::{BlobStore, Digest};

const BUSYBOX: &str = "/usr/bin/busybox";

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is required for this test: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn reads_and_unpacks_a_umoci_layout() {
    let t = tempfile::tempdir().unwrap();
    let (l, b) = (t.path().join("L"), t.path().join("B"));
    let img = format!("{}:t", p(&l));
    run("umoci", &["init", "--layout", p(&l)]);
    run("umoci", &["new", "--image", &img]);
    run("umoci", &["unpack", "--image", &img, p(&b)]);
    let rootfs = b.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    symlink("busybox", rootfs.join("bin/sh")).unwrap();
    fs::create_dir_all(rootfs.join("etc/opq")).unwrap();
    fs::write(rootfs.join("etc/opq/old"), b"old").unwrap();
    fs::write(rootfs.join("etc/gone"), b"bye").unwrap();
    run(
        "umoci",
        &["repack", "--refresh-bundle", "--image", &img, p(&b)],
    );
    // Second layer: a deletion (whiteout) and a hard link.
    fs::remove_file(rootfs.join("etc/gone")).unwrap();
    fs::hard_link(rootfs.join("bin/busybox"), rootfs.join("bin/bb")).unwrap();
    run("umoci", &["repack", "--image", &img, p(&b)]);
    run(
        "umoci",
        &[
            "config",
            "--image",
            &img,
            "--config.workingdir",
            "/srv",
            "--config.env",
            "FOO=bar",
            "--config.entrypoint",
            "/bin/sh",
            "--config.exposedports",
            "8080/tcp",
            "--config.label",
            "k=v",
        ],
    );

    let layout = OciLayout::open(&l).unwrap();
    let manifest = layout
        .read_manifest(layout.resolve(Some("t")).unwrap())
        .unwrap();
    let config = layout.read_config(&manifest).unwrap();
    assert_eq!(config.config.working_dir.as_deref(), Some("/srv"));
    assert!(config.config.env.iter().any(|e| e == "FOO=bar"));
    assert_eq!(config.config.entrypoint.as_deref().unwrap(), ["/bin/sh"]);
    assert!(config.config.exposed_ports.contains("8080/tcp"));
    assert_eq!(config.config.labels.get("k").map(String::as_str), Some("v"));
    assert_eq!(manifest.layers.len(), 2);
    assert_eq!(config.rootfs.diff_ids.len(), 2);

    let busybox = fs::read(BUSYBOX).unwrap();
    let mut dirs = Vec::new();
    for (i, desc) in manifest.layers.iter().enumerate() {
        let dir = t.path().join(format!("layer{i}"));
        fs::create_dir(&dir).unwrap();
        let opts = UnpackOptions {
            compression: Some(layer_type(&desc.media_type).unwrap().compression),
            expected_digest: Some(desc.digest.clone()),
            expected_diff_id: Some(config.rootfs.diff_ids[i].clone()),
            ..Default::default()
        };
        let out = unpack_layer(layout.open_blob(desc).unwrap(), &dir, &opts).unwrap();
        assert_eq!(out.compressed_size, desc.size);
        dirs.push(dir);
    }
    assert_eq!(fs::read(dirs[0].join("bin/busybox")).unwrap(), busybox);
    assert_eq!(
        fs::read_link(dirs[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(fs::read(dirs[0].join("etc/opq/old")).unwrap(), b"old");
    let gone = fs::symlink_metadata(dirs[1].join("etc/gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    let (bb, bx) = (
        fs::metadata(dirs[1].join("bin/bb")).unwrap(),
        fs::metadata(dirs[1].join("bin/busybox")).unwrap(),
    );
    assert_eq!(bb.ino(), bx.ino(), "hard link kept inside the layer");
    assert_eq!(fs::read(dirs[1].join("bin/bb")).unwrap(), busybox);
}

/// Writes to two sinks: the DiffID hasher and the compressor.
struct Tee<A, B>(A, B);

impl<A: Write, B: Write> Write for Tee<A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// Tar `build` into the store, compressed per `media_type`; return descriptor and DiffID.
fn write_layer(
    store: &BlobStore,
    media_type: &str,
    build: impl FnOnce(&mut tar::Builder<&mut dyn Write>),
) -> (Descriptor, Digest) {
    let blob = store.writer().unwrap();
    let mut sink = HashingSink::default();
    let blob = if media_type == OCI_LAYER_ZSTD {
        let mut enc = zstd::Encoder::new(blob, 3).unwrap();
        {
            let mut tee = Tee(&mut sink, &mut enc);
            let mut b = tar::Builder::<&mut dyn Write>::new(&mut tee);
            build(&mut b);
            b.finish().unwrap();
        }
        enc.finish().unwrap()
    } else {
        let mut enc = flate2::write::GzEncoder::new(blob, flate2::Compression::fast());
        {
            let mut tee = Tee(&mut sink, &mut enc);
            let mut b = tar::Builder::<&mut dyn Write>::new(&mut tee);
            build(&mut b);
            b.finish().unwrap();
        }
        enc.finish().unwrap()
    };
    let size = blob.size();
    let digest = blob.commit(None).unwrap();
    (Descriptor::new(media_type, digest, size), sink.finish().0)
}

fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

#[test]
fn layouts_we_write_are_accepted_by_skopeo_and_umoci() {
    let t = tempfile::tempdir().unwrap();
    let rootfs = t.path().join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::create_dir_all(rootfs.join("etc/opq")).unwrap();
    fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    symlink("busybox", rootfs.join("bin/sh")).unwrap();
    fs::write(rootfs.join("etc/hello"), b"hi\n").unwrap();
    fs::write(rootfs.join("etc/opq/old"), b"old").unwrap();

    let l = t.path().join("L");
    let mut layout = OciLayout::create(&l).unwrap();
    let (base, base_diff) = write_layer(layout.store(), OCI_LAYER_GZIP, |b| {
        b.follow_symlinks(false);
        b.append_dir_all(".", &rootfs).unwrap();
    });
    // Top layer (gzip for umoci 0.4.7, which has no zstd; zstd for the rest): whiteout, opaque
    // dir, hard link. The same tar, so the same DiffID.
    let top_tar = |b: &mut tar::Builder<&mut dyn Write>| {
        let mut h = header(tar::EntryType::Regular, 4);
        b.append_data(&mut h, "etc/zst", &b"zstd"[..]).unwrap();
        let mut h = header(tar::EntryType::Link, 0);
        b.append_link(&mut h, "etc/hard", "etc/zst").unwrap();
        let mut h = header(tar::EntryType::Regular, 0);
        b.append_data(&mut h, "etc/.wh.hello", &[][..]).unwrap();
        let mut h = header(tar::EntryType::Directory, 0);
        h.set_mode(0o755);
        b.append_data(&mut h, "etc/opq/", &[][..]).unwrap();
        let mut h = header(tar::EntryType::Regular, 0);
        b.append_data(&mut h, "etc/opq/.wh..wh..opq", &[][..])
            .unwrap();
        let mut h = header(tar::EntryType::Regular, 3);
        b.append_data(&mut h, "etc/opq/new", &b"new"[..]).unwrap();
    };
    let (top_gz, top_diff) = write_layer(layout.store(), OCI_LAYER_GZIP, top_tar);
    let (top, top_diff_z) = write_layer(layout.store(), OCI_LAYER_ZSTD, top_tar);
    assert_eq!(top_diff, top_diff_z);
    let run_config = RunConfig {
        entrypoint: Some(vec!["/bin/sh".into()]),
        cmd: Some(vec!["-c".into(), "echo hi".into()]),
        env: vec!["PATH=/bin".into()],
        working_dir: Some("/".into()),
        ..Default::default()
    };
    let config = ImageConfig::new(run_config, vec![base_diff.clone(), top_diff.clone()]);
    layout
        .write_image("t", &config, vec![base.clone(), top_gz.clone()])
        .unwrap();
    layout
        .write_image("z", &config, vec![base.clone(), top.clone()])
        .unwrap();
    let img = format!("{}:t", p(&l));
    let img_z = format!("{}:z", p(&l));

    // skopeo sees the same layers and config.
    for (image, top) in [(&img, &top_gz), (&img_z, &top)] {
        let inspect: serde_json::Value =
            serde_json::from_str(&run("skopeo", &["inspect", &format!("oci:{image}")])).unwrap();
        assert_eq!(
            inspect["Layers"],
            serde_json::json!([base.digest.as_str(), top.digest.as_str()])
        );
        assert_eq!(inspect["Architecture"], config.architecture.as_str());
        assert_eq!(inspect["Env"], serde_json::json!(["PATH=/bin"]));
    }

    // umoci unpacks it, applying our whiteouts, opaque dir and hard link.
    let bundle = t.path().join("B");
    run("umoci", &["unpack", "--image", &img, p(&bundle)]);
    let r = bundle.join("rootfs");
    let busybox = fs::read(BUSYBOX).unwrap();
    assert_eq!(fs::read(r.join("bin/busybox")).unwrap(), busybox);
    assert_eq!(
        fs::read_link(r.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(!r.join("etc/hello").exists(), "whiteout not applied");
    assert!(!r.join("etc/opq/old").exists(), "opaque dir not applied");
    assert_eq!(fs::read(r.join("etc/opq/new")).unwrap(), b"new");
    assert_eq!(
        fs::metadata(r.join("etc/hard")).unwrap().ino(),
        fs::metadata(r.join("etc/zst")).unwrap().ino()
    );

    // Our unpacker on the zstd layer, driven by the layout reader.
    let layout = OciLayout::open(&l).unwrap();
    let m = layout
        .read_manifest(layout.resolve(Some("z")).unwrap())
        .unwrap();
    let dir = t.path().join("top");
    fs::create_dir(&dir).unwrap();
    let out = unpack_layer(
        layout.open_blob(&m.layers[1]).unwrap(),
        &dir,
        &UnpackOptions {
            compression: Some(layer_type(&m.layers[1].media_type).unwrap().compression),
            expected_digest: Some(top.digest.clone()),
            expected_diff_id: Some(top_diff.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(out.diff_id, top_diff);
    assert!(fs::symlink_metadata(dir.join("etc/hello"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(
        fs::metadata(dir.join("etc/hard")).unwrap().ino(),
        fs::metadata(dir.join("etc/zst")).unwrap().ino()
    );

    // skopeo copies the zstd image (verifying blob digests) into a layout we read again.
    let l2 = t.path().join("L2");
    run(
        "skopeo",
        &[
            "copy",
            "-q",
            &format!("oci:{img_z}"),
            &format!("oci:{}:copied", p(&l2)),
        ],
    );
    let copied = OciLayout::open(&l2).unwrap();
    let m2 = copied
        .read_manifest(copied.resolve(Some("copied")).unwrap())
        .unwrap();
    assert_eq!(m2.layers[1].digest, top.digest);
    assert_eq!(m2.layers[1].media_type, OCI_LAYER_ZSTD);
    assert_eq!(
        copied.read_config(&m2).unwrap().rootfs.diff_ids[1],
        top_diff
    );

    // skopeo converts it to a docker-archive, which we read back.
    let archive = t.path().join("image.tar");
    run(
        "skopeo",
        &[
            "copy",
            "-q",
            &format!("oci:{img}"),
            &format!("docker-archive:{}:berth/test:v1", p(&archive)),
        ],
    );
    let da = DockerArchive::open(&archive).unwrap();
    assert_eq!(da.images.len(), 1);
    let image = &da.images[0];
    assert_eq!(image.repo_tags, vec!["docker.io/berth/test:v1".to_string()]);
    let (cfg, _) = da.read_config(image).unwrap();
    assert_eq!(
        cfg.rootfs.diff_ids,
        vec![base_diff.clone(), top_diff.clone()]
    );
    assert_eq!(cfg.config.entrypoint, config.config.entrypoint);
    assert_eq!(image.layers.len(), 2);
    for (i, name) in image.layers.iter().enumerate() {
        let dir = t.path().join(format!("da{i}"));
        fs::create_dir(&dir).unwrap();
        let out = unpack_layer(
            da.open_member(name).unwrap(),
            &dir,
            &UnpackOptions {
                expected_diff_id: Some(cfg.rootfs.diff_ids[i].clone()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(out.diff_id, cfg.rootfs.diff_ids[i]);
    }
    assert_eq!(fs::read(t.path().join("da0/bin/busybox")).unwrap(), busybox);
    assert_eq!(fs::read(t.path().join("da1/etc/zst")).unwrap(), b"zstd");
}
