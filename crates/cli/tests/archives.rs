//! `berth save`, `load` and `import`, checked against skopeo and against a private dockerd
//! (docker.io 20.10): `docker load` of what berth saves, `berth load` of what docker saves.

mod common;

use std::process::{Command, Stdio};

use common::{push_and_pull, run, Berth, Dockerd, Layout, Registry};

fn pulled_busybox() -> (Registry, Layout, Berth, String, String) {
    let reg = Registry::start();
    let l = Layout::busybox();
    l.config(&["--config.cmd", "sh", "--config.env", "SAVED=1"]);
    let (b, name, id) = push_and_pull(&reg, &l, "test/busybox:1");
    (reg, l, b, name, id)
}

#[test]
fn save_oci_archive_is_read_by_skopeo_and_loads_back() {
    let (_reg, _l, b, name, id) = pulled_busybox();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("img.tar");
    let f = file.to_str().unwrap();
    b.ok(&["save", "-o", f, "--format", "oci-archive", &name]);
    let out = run(Command::new("skopeo").args(["inspect", &format!("oci-archive:{f}")]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], b.inspect(&name)["Digest"]);
    assert!(v["Env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("SAVED=1")));
    let cfg =
        run(Command::new("skopeo").args(["inspect", "--config", &format!("oci-archive:{f}")]));
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["sh"]));
    // skopeo can convert it to a docker-archive.
    let da = dir.path().join("converted.tar");
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("oci-archive:{f}"),
        &format!("docker-archive:{}:conv/erted:1", da.display()),
    ]));
    // Round trip into a fresh store: same image id, same config.
    let b2 = Berth::new();
    let out = b2.ok(&["load", "-i", f]);
    assert_eq!(out.trim(), format!("Loaded image: {name}"));
    assert_eq!(b2.inspect(&name)["Id"], id);
    let layer = b2.inspect(&name)["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(b2.layer_dir(&layer).join("bin/busybox").is_file());
    // The docker-archive skopeo made loads too.
    b2.ok(&["load", "-i", da.to_str().unwrap()]);
    assert_eq!(b2.inspect("conv/erted:1")["Id"], id);
    b2.check_db();
}

#[test]
fn save_docker_archive_is_read_by_skopeo() {
    let (_reg, _l, b, name, id) = pulled_busybox();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("img.tar");
    let f = file.to_str().unwrap();
    b.ok(&["save", "-o", f, &name]); // docker-archive is the default
    let out = run(Command::new("skopeo").args(["inspect", &format!("docker-archive:{f}")]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["Env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("SAVED=1")));
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    let oci = dir.path().join("layout");
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("docker-archive:{f}"),
        &format!("oci:{}:x", oci.display()),
    ]));
    // Loading it back keeps the image id (config digest).
    let b2 = Berth::new();
    let out = b2.ok(&["load", "-i", f]);
    assert_eq!(out.trim(), format!("Loaded image: {name}"));
    assert_eq!(b2.inspect(&name)["Id"], id);
    // Saving an unknown image fails and leaves no file.
    let missing = dir.path().join("missing.tar");
    b.fails(&["save", "-o", missing.to_str().unwrap(), "nope:1"]);
    assert!(!missing.exists());
}

#[test]
fn load_what_skopeo_wrote() {
    for t in ["umoci", "skopeo"] {
        common::require_tool(t);
    }
    let l = Layout::busybox();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sk.tar");
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("oci:{}:t", l.path().display()),
        &format!("oci-archive:{}:example.com/sk/opeo:3", f.display()),
    ]));
    let b = Berth::new();
    let out = b.ok(&["load", "-i", f.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: example.com/sk/opeo:3");
    let images = b.images();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["RepoTags"][0], "example.com/sk/opeo:3");
    assert!(b.ok(&["images"]).contains("example.com/sk/opeo"));
    let layer = b.inspect("example.com/sk/opeo:3")["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(b.layer_dir(&layer).join("bin/busybox").is_file());

    // Not an archive at all: clear error, nothing recorded.
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"this is not a tarball").unwrap();
    b.fails(&["load", "-i", junk.to_str().unwrap()]);
    assert_eq!(b.images().len(), 1);
    b.check_db();
}

#[test]
fn import_a_busybox_rootfs_tarball() {
    common::require_tool("busybox");
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/usr/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    let tar = dir.path().join("rootfs.tar.gz");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-czf")
        .arg(&tar)
        .arg("."));
    let b = Berth::new();
    let id = b.ok(&["import", tar.to_str().unwrap(), "imported:1"]);
    let id = id.trim();
    let v = b.inspect("imported:1");
    assert_eq!(v["Id"], id);
    assert_eq!(v["RepoTags"][0], "docker.io/library/imported:1");
    assert!(v["Created"].as_str().unwrap().ends_with('Z'));
    let layers = v["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let ld = b.layer_dir(layers[0].as_str().unwrap());
    assert_eq!(
        std::fs::read(ld.join("bin/busybox")).unwrap(),
        std::fs::read("/usr/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_link(ld.join("bin/sh")).unwrap(),
        std::path::Path::new("busybox")
    );

    // From stdin, untagged.
    let out = b
        .cmd()
        .args(["import", "-"])
        .stdin(std::fs::File::open(&tar).unwrap())
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id2 = String::from_utf8(out.stdout).unwrap();
    assert_eq!(b.images().len(), 2);
    assert!(b.ok(&["images"]).contains("<none>"));
    assert_eq!(
        b.inspect(id2.trim())["RootFS"]["Layers"],
        v["RootFS"]["Layers"]
    );

    // The imported image saves to an archive skopeo reads.
    let f = dir.path().join("imp.tar");
    b.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        f.to_str().unwrap(),
        "imported:1",
    ]);
    run(Command::new("skopeo").args(["inspect", &format!("oci-archive:{}", f.display())]));

    // A missing file is a clear error.
    let err = b.fails(&["import", "/nonexistent/rootfs.tar", "x:1"]);
    assert!(err.contains("/nonexistent/rootfs.tar"), "{err}");
}

#[test]
fn docker_loads_what_berth_saves_and_berth_loads_what_docker_saves() {
    // A two-layer image with a config, pulled into berth.
    let reg = Registry::start();
    let l = Layout::busybox();
    std::fs::create_dir_all(l.bundle().join("rootfs/etc")).unwrap();
    std::fs::write(l.bundle().join("rootfs/etc/motd"), "second layer\n").unwrap();
    l.repack();
    l.config(&["--config.cmd", "sh", "--config.env", "SAVED=1"]);
    let (b, name, id) = push_and_pull(&reg, &l, "test/twolayer:1");
    let berth_layers = b.inspect(&name)["RootFS"]["Layers"].clone();
    assert_eq!(berth_layers.as_array().unwrap().len(), 2, "{berth_layers}");

    let dockerd = Dockerd::start();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("berth.tar");
    b.ok(&["save", "-o", saved.to_str().unwrap(), &name]);
    let out = run(dockerd.docker().arg("load").arg("-i").arg(&saved));
    assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
    let inspect = |what: &str| -> serde_json::Value {
        let out = run(dockerd.docker().args(["image", "inspect", what]));
        let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        assert_eq!(v.len(), 1, "{out}");
        v.into_iter().next().unwrap()
    };
    let d = inspect(&name);
    assert_eq!(
        d["Id"],
        format!("sha256:{id}"),
        "same config, same image id"
    );
    assert_eq!(d["RepoTags"], serde_json::json!([name]));
    assert_eq!(d["RootFS"]["Layers"], berth_layers, "same layers (DiffIDs)");
    assert_eq!(d["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert!(d["Config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("SAVED=1")));

    // docker save of that image, under another name, loads back into a fresh berth store.
    run(dockerd
        .docker()
        .args(["tag", &name, "docker.example/re/tagged:2"]));
    let from_docker = dir.path().join("docker.tar");
    run(dockerd.docker().args([
        "save",
        "-o",
        from_docker.to_str().unwrap(),
        "docker.example/re/tagged:2",
    ]));
    let b2 = Berth::new();
    let out = b2.ok(&["load", "-i", from_docker.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: docker.example/re/tagged:2");
    let v = b2.inspect("docker.example/re/tagged:2");
    assert_eq!(v["Id"], id);
    assert_eq!(v["RootFS"]["Layers"], berth_layers);
    let top = v["RootFS"]["Layers"][1].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(b2.layer_dir(&top).join("etc/motd")).unwrap(),
        "second layer\n"
    );

    // An image docker made itself (docker import): berth loads it with docker's id and layer.
    let rootfs = dir.path().join("rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(l.bundle().join("rootfs"))
        .arg("-cf")
        .arg(&rootfs)
        .arg("."));
    run(dockerd
        .docker()
        .arg("import")
        .arg(&rootfs)
        .arg("made/by-docker:1"));
    let made = inspect("made/by-docker:1");
    let native = dir.path().join("native.tar");
    run(dockerd
        .docker()
        .args(["save", "-o", native.to_str().unwrap(), "made/by-docker:1"]));
    let out = b2.ok(&["load", "-i", native.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: docker.io/made/by-docker:1");
    let v = b2.inspect("made/by-docker:1");
    assert_eq!(format!("sha256:{}", v["Id"].as_str().unwrap()), made["Id"]);
    assert_eq!(v["RootFS"]["Layers"], made["RootFS"]["Layers"]);
    let layer = v["RootFS"]["Layers"][0].as_str().unwrap().to_string();
    assert!(b2.layer_dir(&layer).join("bin/busybox").is_file());
    b2.check_db();
}
