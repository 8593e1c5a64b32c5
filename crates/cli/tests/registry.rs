//! `berth pull`, `images`, `inspect`, `tag`, `rmi`, `image prune`, `push`, `login`/`logout`
//! against a real `docker-registry` seeded with skopeo from umoci-built images.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::Command;

use common::{run, Berth, Layout, Registry};

#[test]
fn pull_lists_inspects_and_unpacks_busybox() {
    let reg = Registry::start();
    let l = Layout::busybox();
    l.config(&[
        "--config.entrypoint",
        "/bin/busybox",
        "--config.cmd",
        "sh",
        "--config.env",
        "FOO=bar",
        "--config.workingdir",
        "/tmp",
        "--config.user",
        "1000:1000",
        "--config.exposedports",
        "8080/tcp",
        "--config.volume",
        "/data",
        "--config.label",
        "org.example=yes",
        "--config.stopsignal",
        "SIGTERM",
    ]);
    reg.push_layout(&l.path(), "t", "test/busybox:1");
    let b = Berth::new();
    let name = format!("{}/test/busybox:1", reg.host());

    // Not a terminal: nothing but the image id.
    let out = b.ok(&["pull", "--tls-verify=false", &name]);
    let id = out.trim();
    assert_eq!(id.len(), 64, "stdout is the image id only: {out:?}");
    assert!(id.bytes().all(|c| c.is_ascii_hexdigit()));

    let table = b.ok(&["images"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY"), "{table}");
    for col in ["TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(lines[0].contains(col), "{table}");
    }
    assert_eq!(lines.len(), 2, "{table}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], format!("{}/test/busybox", reg.host()));
    assert_eq!(row[1], "1");
    assert_eq!(row[2], &id[..12]);
    assert!(lines[1].ends_with("MB"), "{table}");

    let images = b.images();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["Id"], id);
    assert_eq!(images[0]["RepoTags"][0], name);

    let v = b.inspect(&name);
    assert_eq!(v["Id"], id);
    assert_eq!(v["RepoTags"][0], name);
    assert!(v["RepoDigests"][0]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/test/busybox@sha256:", reg.host())));
    let c = &v["Config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/busybox"]));
    assert_eq!(c["Cmd"], serde_json::json!(["sh"]));
    assert!(c["Env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("FOO=bar")));
    assert_eq!(c["WorkingDir"], "/tmp");
    assert_eq!(c["User"], "1000:1000");
    assert!(c["ExposedPorts"].get("8080/tcp").is_some(), "{c}");
    assert!(c["Volumes"].get("/data").is_some(), "{c}");
    assert_eq!(c["Labels"]["org.example"], "yes");
    assert_eq!(c["StopSignal"], "SIGTERM");
    let layers = v["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let busybox_len = std::fs::metadata("/usr/bin/busybox").unwrap().len();
    assert!(v["Size"].as_u64().unwrap() > busybox_len);

    // The layer is unpacked under its DiffID, byte for byte.
    let dir = b.layer_dir(layers[0].as_str().unwrap());
    let got = std::fs::read(dir.join("bin/busybox")).unwrap();
    assert_eq!(got, std::fs::read("/usr/bin/busybox").unwrap());
    // Short id and `sha256:` id resolve too.
    assert_eq!(b.inspect(&id[..12])["Id"], id);
    assert_eq!(b.inspect(&format!("sha256:{id}"))["Id"], id);

    // A second pull is a no-op that gives the same id.
    assert_eq!(
        b.ok(&["pull", "-q", "--tls-verify=false", &name]).trim(),
        id
    );
    assert_eq!(b.images().len(), 1);
    b.check_db();
}

#[test]
fn multi_layer_pull_turns_deletions_into_overlay_whiteouts() {
    let reg = Registry::start();
    let l = Layout::busybox();
    let etc = l.bundle().join("rootfs/etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("removeme"), "gone soon").unwrap();
    std::fs::write(etc.join("keep"), "kept").unwrap();
    l.repack();
    l.unpack();
    std::fs::remove_file(l.bundle().join("rootfs/etc/removeme")).unwrap();
    std::fs::write(l.bundle().join("rootfs/etc/added"), "new").unwrap();
    l.repack();
    reg.push_layout(&l.path(), "t", "test/layered:1");

    let b = Berth::new();
    let name = format!("{}/test/layered:1", reg.host());
    // On a terminal (script(1) gives it one): one line per layer, then the id.
    let shell = |extra: &str| {
        let cmd = format!(
            "{} --root {} --runroot {} pull {extra} --tls-verify=false {name}",
            env!("CARGO_BIN_EXE_berth"),
            b.root.path().display(),
            b.runroot.path().display()
        );
        run(Command::new("script").args(["-qec", &cmd, "/dev/null"]))
    };
    let out = shell("");
    assert_eq!(out.matches("Copying blob").count(), 3, "{out}");
    assert_eq!(out.matches("Copying config").count(), 1, "{out}");
    let id = out.lines().last().unwrap().trim();
    assert_eq!(id.len(), 64, "{out}");
    // --quiet on a terminal: the id alone.
    assert_eq!(shell("--quiet").trim(), id);
    let v = b.inspect(&name);
    let layers: Vec<String> = v["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers.len(), 3, "busybox, etc files, deletion");
    assert!(b.layer_dir(&layers[0]).join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_to_string(b.layer_dir(&layers[1]).join("etc/removeme")).unwrap(),
        "gone soon"
    );
    let top = b.layer_dir(&layers[2]);
    let wh = std::fs::symlink_metadata(top.join("etc/removeme")).unwrap();
    assert!(
        wh.file_type().is_char_device(),
        "overlay whiteout is a char device"
    );
    assert_eq!(wh.rdev(), 0, "whiteout device is 0/0");
    assert!(!top.join("etc/.wh.removeme").exists());
    assert_eq!(
        std::fs::read_to_string(top.join("etc/added")).unwrap(),
        "new"
    );
    let mut dirs = b.layer_dirs();
    let mut want: Vec<String> = layers
        .iter()
        .map(|d| d.trim_start_matches("sha256:").to_string())
        .collect();
    dirs.sort();
    want.sort();
    assert_eq!(dirs, want);
}

#[test]
fn tag_rmi_and_prune_collect_garbage() {
    let reg = Registry::start();
    let l = Layout::busybox();
    reg.push_layout(&l.path(), "t", "test/busybox:1");
    let b = Berth::new();
    let name = format!("{}/test/busybox:1", reg.host());
    let id = b
        .ok(&["pull", "--tls-verify=false", &name])
        .trim()
        .to_string();
    let blobs_before = b.blobs();
    assert_eq!(
        blobs_before.len(),
        3,
        "manifest, config, layer: {blobs_before:?}"
    );
    assert_eq!(b.layer_dirs().len(), 1);

    b.ok(&["tag", &name, "mine:v1", "example.com/other/name:2"]);
    let v = b.inspect("mine:v1");
    assert_eq!(v["Id"], id);
    let tags = v["RepoTags"].as_array().unwrap();
    assert_eq!(tags.len(), 3, "{tags:?}");
    assert!(tags.contains(&serde_json::json!("docker.io/library/mine:v1")));
    assert!(tags.contains(&serde_json::json!("example.com/other/name:2")));
    assert!(b.fails(&["tag", "nope:1", "x:1"]).contains("nope"));
    assert!(b.fails(&["tag", &name, "Bad Name"]).contains("invalid"));

    // By id with several tags: refused without -f, nothing changes.
    let err = b.fails(&["rmi", &id[..12]]);
    assert!(err.contains("-f"), "{err}");
    assert_eq!(b.inspect(&id)["RepoTags"].as_array().unwrap().len(), 3);
    // An unknown name among known ones: nothing removed.
    b.fails(&["rmi", "mine:v1", "nope:nope"]);
    assert_eq!(b.inspect(&id)["RepoTags"].as_array().unwrap().len(), 3);

    // By tag: untag only while other tags remain; blobs stay.
    let out = b.ok(&["rmi", "mine:v1"]);
    assert_eq!(out.trim(), "Untagged: docker.io/library/mine:v1");
    b.fails(&["inspect", "mine:v1"]);
    assert_eq!(b.blobs(), blobs_before);

    // Untagging the last names deletes the image and collects its blobs and layers.
    let out = b.ok(&["rmi", &name, "example.com/other/name:2"]);
    assert!(out.contains(&format!("Deleted: sha256:{id}")), "{out}");
    assert!(b.images().is_empty());
    assert!(b.blobs().is_empty(), "{:?}", b.blobs());
    assert!(b.layer_dirs().is_empty());

    // -f removes an image with several tags at once.
    b.ok(&["pull", "--tls-verify=false", &name]);
    b.ok(&["tag", &name, "again:1"]);
    let out = b.ok(&["rmi", "-f", &id]);
    assert_eq!(out.matches("Untagged:").count(), 2, "{out}");
    assert!(b.blobs().is_empty());

    // prune: an image whose only tag moved away is dangling and gets pruned.
    b.ok(&["pull", "--tls-verify=false", &name]);
    let imported = {
        let tar = tempfile::NamedTempFile::new().unwrap();
        run(Command::new("tar")
            .arg("-C")
            .arg(l.bundle().join("rootfs"))
            .arg("-cf")
            .arg(tar.path())
            .arg("."));
        b.ok(&["import", tar.path().to_str().unwrap(), "other:1"])
            .trim()
            .to_string()
    };
    b.ok(&["tag", "other:1", &name]); // moves the tag off the pulled image
    let pruned = b.ok(&["image", "prune"]);
    assert_eq!(pruned.trim(), id, "the pulled image is now dangling");
    let images = b.images();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["Id"], imported);
    assert_eq!(b.blobs().len(), 3);
    b.check_db();
}

#[test]
fn push_to_a_new_repository_is_seen_by_skopeo() {
    let reg = Registry::start();
    let l = Layout::busybox();
    reg.push_layout(&l.path(), "t", "test/busybox:1");
    let b = Berth::new();
    let name = format!("{}/test/busybox:1", reg.host());
    let id = b
        .ok(&["pull", "--tls-verify=false", &name])
        .trim()
        .to_string();
    let digest = b.inspect(&name)["Digest"].as_str().unwrap().to_string();

    let dest = format!("{}/pushed/copy:7", reg.host());
    b.ok(&["push", "--tls-verify=false", &name, &dest]);
    let out = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{dest}"),
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], digest, "same manifest bytes");
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    let cfg = run(Command::new("skopeo").args([
        "inspect",
        "--config",
        "--tls-verify=false",
        &format!("docker://{dest}"),
    ]));
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert!(cfg["rootfs"]["diff_ids"][0]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));

    // Push by local name without DEST goes to the name's own registry; a fresh store pulls it.
    b.ok(&["tag", &id, &format!("{}/pushed/byname:1", reg.host())]);
    b.ok(&[
        "push",
        "--tls-verify=false",
        &format!("{}/pushed/byname:1", reg.host()),
    ]);
    let b2 = Berth::new();
    let id2 = b2.ok(&[
        "pull",
        "--tls-verify=false",
        &format!("{}/pushed/byname:1", reg.host()),
    ]);
    assert_eq!(id2.trim(), id);

    // Without --tls-verify=false the plain-HTTP registry is refused (TLS handshake fails).
    let err = b.fails(&["push", &name, &dest]);
    assert!(err.contains(&reg.host()), "{err}");
}

#[test]
fn login_and_logout_with_htpasswd() {
    let reg_dir = tempfile::tempdir().unwrap();
    let htpasswd = reg_dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("alice:{}\n", bcrypt::hash("s3cret", 5).unwrap()),
    )
    .unwrap();
    let reg = Registry::start_with_htpasswd(Some(&htpasswd));
    let b = Berth::new();
    let auth = b.runroot.path().join("auth.json");
    let host = reg.host();

    let err = b.fails(&[
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        "wrong",
        &host,
    ]);
    assert!(
        err.contains("login failed") || err.contains("authentication"),
        "{err}"
    );
    assert!(!auth.exists(), "a failed login writes nothing");

    let out = b
        .cmd()
        .args([
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "--password-stdin",
            &host,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"s3cret\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&auth).unwrap()).unwrap();
    assert!(saved["auths"][&host]["auth"].is_string(), "{saved}");

    // The stored credentials are used by push and pull.
    let l = Layout::busybox();
    let tar = tempfile::NamedTempFile::new().unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(l.bundle().join("rootfs"))
        .arg("-cf")
        .arg(tar.path())
        .arg("."));
    let name = format!("{host}/auth/img:1");
    b.ok(&["import", tar.path().to_str().unwrap(), &name]);
    b.ok(&["push", "--tls-verify=false", &name]);
    let b2 = Berth::new();
    let err = b2.fails(&["pull", "--tls-verify=false", &name]);
    assert!(err.contains("authentication required"), "{err}");
    b2.ok(&[
        "pull",
        "--tls-verify=false",
        "--authfile",
        auth.to_str().unwrap(),
        &name,
    ]);

    b.ok(&["logout", &host]);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&auth).unwrap()).unwrap();
    assert!(saved["auths"].get(&host).is_none(), "{saved}");
    assert!(b.fails(&["logout", &host]).contains("not logged into"));
    assert!(b
        .fails(&["push", "--tls-verify=false", &name])
        .contains("authentication"));
}

/// Adds to `l` an index tagged `multi` over `t` (as linux/amd64) and `arm` (linux/arm64).
fn make_index(l: &Layout) {
    l.config(&["--architecture", "arm64", "--tag", "arm"]);
    let index_path = l.path().join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    let by_tag = |tag: &str| {
        let mut d = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap()
            .clone();
        d.as_object_mut().unwrap().remove("annotations");
        d
    };
    let mut amd = by_tag("t");
    amd["platform"] = serde_json::json!({"os": "linux", "architecture": "amd64"});
    let mut arm = by_tag("arm");
    arm["platform"] = serde_json::json!({"os": "linux", "architecture": "arm64"});
    let inner = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [amd, arm],
    }))
    .unwrap();
    let hex = sha256_hex(&inner);
    std::fs::write(l.path().join("blobs/sha256").join(&hex), &inner).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hex}"),
            "size": inner.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

fn sha256_hex(data: &[u8]) -> String {
    let mut c = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        c.stdin.take().unwrap().write_all(data).unwrap();
    }
    let out = c.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[test]
fn index_resolves_to_the_requested_platform() {
    let reg = Registry::start();
    let l = Layout::busybox();
    make_index(&l);
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", l.path().display()),
        &format!("docker://{}/test/multi:1", reg.host()),
    ]));
    let name = format!("{}/test/multi:1", reg.host());
    let b = Berth::new();
    b.ok(&[
        "pull",
        "--tls-verify=false",
        "--platform",
        "linux/amd64",
        &name,
    ]);
    assert_eq!(b.inspect(&name)["Architecture"], "amd64");
    b.ok(&[
        "pull",
        "--tls-verify=false",
        "--platform",
        "linux/arm64",
        &name,
    ]);
    assert_eq!(b.inspect(&name)["Architecture"], "arm64");
    // The amd64 image lost its tag to the arm64 one and is now dangling.
    assert_eq!(b.images().len(), 2);
    let err = b.fails(&[
        "pull",
        "--tls-verify=false",
        "--platform",
        "linux/s390x",
        &name,
    ]);
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64"),
        "{err}"
    );
    assert!(b
        .fails(&["pull", "--tls-verify=false", "--platform", "linux", &name])
        .contains("invalid platform"));
}

#[test]
fn docker_schema2_images_pull_and_save_as_oci() {
    let reg = Registry::start();
    let l = Layout::busybox();
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!("oci:{}:t", l.path().display()),
        &format!("docker://{}/test/v2s2:1", reg.host()),
    ]));
    let name = format!("{}/test/v2s2:1", reg.host());
    let b = Berth::new();
    let id = b.ok(&["pull", "--tls-verify=false", &name]);
    let v = b.inspect(&name);
    assert_eq!(
        v["ManifestType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let layer = v["RootFS"]["Layers"][0].as_str().unwrap().to_string();
    assert!(b.layer_dir(&layer).join("bin/busybox").is_file());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("o.tar");
    b.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        f.to_str().unwrap(),
        &name,
    ]);
    let out = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci-archive:{}", f.display()),
    ]));
    assert!(
        out.contains("application/vnd.oci.image.layer.v1.tar+gzip"),
        "{out}"
    );
    let b2 = Berth::new();
    b2.ok(&["load", "-i", f.to_str().unwrap()]);
    assert_eq!(b2.inspect(&name)["Id"], id.trim(), "same config, same id");
}

#[test]
fn concurrent_pulls_into_one_store() {
    let reg = Registry::start();
    let l = Layout::busybox();
    std::fs::write(l.bundle().join("rootfs/second"), "layer two").unwrap();
    l.repack();
    reg.push_layout(&l.path(), "t", "test/two:1");
    let name = format!("{}/test/two:1", reg.host());
    let b = Berth::new();
    let children: Vec<_> = (0..3)
        .map(|_| {
            b.cmd()
                .args(["pull", "--tls-verify=false", &name])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ids: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
    assert_eq!(b.images().len(), 1);
    assert_eq!(b.layer_dirs().len(), 2);
    b.check_db();
}
