//! `berth pull` (progress bars on a terminal), `images`, `inspect`, `history`, `tag`, `rmi`,
//! `image prune` (garbage collection of orphans), `push`, `login`/`logout` against a real
//! `docker-registry` seeded with skopeo from umoci-built images, with htpasswd or with token auth
//! (real JWTs from berth-testkit's token server).

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::Command;

use common::{push_and_pull, run, Berth, Layout, Registry};

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

    // Not a terminal: nothing but the image id, and nothing on stderr.
    let res = b.output(&["pull", "--tls-verify=false", &name]);
    assert!(res.status.success(), "{res:?}");
    assert!(res.stderr.is_empty(), "no progress on a pipe: {res:?}");
    let out = String::from_utf8(res.stdout).unwrap();
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
    // On a terminal (script(1) gives it one): a progress bar per layer, then the id.
    common::require_tool("script");
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
    // indicatif redraws the bars in place: count the distinct blobs they name.
    let mut blobs: Vec<&str> = out
        .match_indices("Copying blob ")
        .filter_map(|(i, m)| out.get(i + m.len()..i + m.len() + 12))
        .collect();
    blobs.sort();
    blobs.dedup();
    assert_eq!(blobs.len(), 3, "one bar per layer: {out}");
    assert!(
        blobs
            .iter()
            .all(|b| b.bytes().all(|c| c.is_ascii_hexdigit())),
        "{out}"
    );
    assert!(out.contains("Copying config"), "{out}");
    assert!(out.contains(" done"), "{out}");
    assert!(
        out.contains("MiB") || out.contains("KiB"),
        "bytes shown: {out}"
    );
    let id = out.lines().last().unwrap().trim();
    assert_eq!(id.len(), 64, "the id on a line of its own: {out:?}");
    // --quiet on a terminal: the id alone.
    assert_eq!(shell("--quiet").trim(), id);
    // push on a terminal: bars too (each blob uploaded), then the manifest digest.
    let push = format!(
        "{} --root {} --runroot {} push --tls-verify=false {name} {}/test/pushed:1",
        env!("CARGO_BIN_EXE_berth"),
        b.root.path().display(),
        b.runroot.path().display(),
        reg.host()
    );
    let out = run(Command::new("script").args(["-qec", &push, "/dev/null"]));
    assert!(
        out.contains("Copying blob ") && out.contains("Copying config "),
        "{out}"
    );
    assert!(out.contains("Pushed sha256:"), "{out}");
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
    let (b, name, id) = push_and_pull(&reg, &l, "test/busybox:1");
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
    let (b, name, id) = push_and_pull(&reg, &l, "test/busybox:1");
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

#[test]
fn history_lists_steps_with_their_layers() {
    let reg = Registry::start();
    let l = Layout::busybox();
    let image = format!("{}:t", l.path().display());
    // A layer with its own history entry, then a step without a layer (umoci repack builds on
    // the image the bundle was unpacked from, so the config change comes last).
    std::fs::write(l.bundle().join("rootfs/data"), vec![7u8; 300_000]).unwrap();
    run(Command::new("umoci")
        .args([
            "repack",
            "--image",
            &image,
            "--history.created_by",
            "/bin/sh -c dd if=/dev/zero of=/data bs=1000 count=300 && echo a long command line",
            "--history.comment",
            "made by the test",
        ])
        .arg(l.bundle()));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.env",
        "A=1",
        "--history.created_by",
        "ENV A=1",
    ]));
    let (b, name, id) = push_and_pull(&reg, &l, "test/hist:1");
    let layers = b.inspect(&name)["RootFS"]["Layers"].clone();
    assert_eq!(layers.as_array().unwrap().len(), 2);

    let v: Vec<serde_json::Value> =
        serde_json::from_str(&b.ok(&["history", "--format", "json", &name])).unwrap();
    // Newest first: config (ENV), repack (data), repack (busybox).
    let by: Vec<&str> = v.iter().map(|h| h["createdBy"].as_str().unwrap()).collect();
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(by[0], "ENV A=1");
    assert!(by[1].starts_with("/bin/sh -c dd"), "{by:?}");
    assert_eq!(v[0]["id"], id, "the newest row carries the image id");
    assert_eq!(v[1]["id"], "<missing>");
    assert_eq!(v[0]["layer"], serde_json::Value::Null, "ENV made no layer");
    assert_eq!(v[0]["size"], 0);
    assert_eq!(v[1]["comment"], "made by the test");
    assert_eq!(v[1]["layer"], layers[1]);
    assert_eq!(v[2]["layer"], layers[0]);
    let data_layer = v[1]["size"].as_u64().unwrap();
    assert!(
        (300_000..320_000).contains(&data_layer),
        "uncompressed size of the data layer: {data_layer}"
    );
    let busybox_len = std::fs::metadata("/usr/bin/busybox").unwrap().len();
    assert!(v[2]["size"].as_u64().unwrap() > busybox_len);
    assert!(v.iter().all(|h| h["created"].is_string()), "{v:?}");

    let table = b.ok(&["history", &id[..12]]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    for col in ["ID", "CREATED", "CREATED BY", "SIZE", "COMMENT"] {
        assert!(lines[0].contains(col), "{table}");
    }
    assert!(
        lines[1].starts_with(&id[..12]) && lines[1].contains("ENV A=1"),
        "{table}"
    );
    assert!(lines[1].contains(" 0B"), "{table}");
    assert!(lines[2].starts_with("<missing>"), "{table}");
    assert!(
        lines[2].contains("...") && lines[2].contains("made by the test"),
        "{table}"
    );
    assert!(lines[2].contains("kB"), "{table}");
    assert!(lines[3].contains("MB"), "{table}");
    let full = b.ok(&["history", "--no-trunc", &name]);
    assert!(full.contains("echo a long command line"), "{full}");
    assert!(full.contains(&id), "{full}");

    assert!(b.fails(&["history", "nope:1"]).contains("nope"));
    assert!(b
        .fails(&["history", "--format", "yaml", &name])
        .contains("--format"));
}

/// Blob and layer names in a store, for before/after comparisons.
fn content(b: &Berth) -> (Vec<String>, Vec<String>) {
    (b.blobs(), b.layer_dirs())
}

#[test]
fn prune_collects_orphans_left_by_interrupted_work_and_keeps_live_images() {
    let reg = Registry::start();
    let l = Layout::busybox();
    let (b, name, id) = push_and_pull(&reg, &l, "test/live:1");
    let live = content(&b);
    let root = b.root.path();

    // What an interrupted pull or load leaves, and junk: a committed blob no image records, a
    // name in the blob dir that is no digest, an unpacked layer (and its size sidecar) no image
    // uses, and temp files of "pid 1" (alive, so only their age shows they are stale).
    let hex = |c: char| std::iter::repeat(c).take(64).collect::<String>();
    std::fs::write(root.join("blobs/sha256").join(hex('a')), b"orphan blob").unwrap();
    std::fs::write(root.join("blobs/sha256/not-a-digest"), b"junk").unwrap();
    let stray_layer = root.join("layers").join(hex('b'));
    std::fs::create_dir_all(stray_layer.join("usr/bin")).unwrap();
    std::fs::write(stray_layer.join("usr/bin/tool"), b"x").unwrap();
    std::fs::write(root.join("layers").join(format!("{}.size", hex('b'))), "1").unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let stale_tmp = root.join("tmp/1.99");
    std::fs::write(&stale_tmp, b"half a blob").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale_tmp)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let stale_unpack = root.join("layers/.tmp-1-7");
    std::fs::create_dir_all(stale_unpack.join("etc")).unwrap();
    let stale_load = root.join(".load-1-abc");
    std::fs::create_dir_all(&stale_load).unwrap();
    for d in [&stale_unpack, &stale_load] {
        std::fs::File::open(d).unwrap().set_modified(old).unwrap();
    }
    // Opening the store (any command) leaves them: pid 1 is alive.
    b.ok(&["images"]);
    assert!(stale_tmp.exists() && stale_unpack.exists() && stale_load.exists());

    // prune waits for a pull in progress (a shared lock on the store) before collecting.
    common::require_tool("flock");
    let holder = Command::new("flock")
        .arg("-s")
        .arg(root.join("lock"))
        .args(["sleep", "1.5"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let out = b.ok(&["image", "prune"]);
    let waited = started.elapsed();
    let mut holder = holder;
    holder.wait().unwrap();
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "prune must wait for the shared lock, took {waited:?}"
    );
    assert_eq!(out.trim(), "", "no dangling image to report: {out}");

    assert_eq!(content(&b), live, "only the live image's content is left");
    assert!(!root.join("blobs/sha256/not-a-digest").exists());
    assert!(!root
        .join("layers")
        .join(format!("{}.size", hex('b')))
        .exists());
    assert!(!stale_tmp.exists(), "stale temp file removed");
    assert!(!stale_unpack.exists(), "stale unpack dir removed");
    assert!(!stale_load.exists(), "stale load dir removed");

    // The live image is whole: inspect, history, its unpacked layer, a save that reads every blob.
    let v = b.inspect(&name);
    assert_eq!(v["Id"], id);
    let layer = v["RootFS"]["Layers"][0].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read(b.layer_dir(&layer).join("bin/busybox")).unwrap(),
        std::fs::read("/usr/bin/busybox").unwrap()
    );
    b.ok(&["history", &name]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("live.tar");
    b.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        f.to_str().unwrap(),
        &name,
    ]);
    let b2 = Berth::new();
    b2.ok(&["load", "-i", f.to_str().unwrap()]);
    assert_eq!(b2.inspect(&name)["Id"], id);
    b.check_db();

    // rmi collects too: the same kind of orphan is gone after removing the image.
    std::fs::write(root.join("blobs/sha256").join(hex('c')), b"orphan").unwrap();
    b.ok(&["rmi", &name]);
    assert_eq!(content(&b), (vec![], vec![]));
}

#[test]
fn push_and_pull_through_a_registry_with_jwt_token_auth() {
    let (ts, reg) = berth_testkit::token_registry("berth-cli-test");
    let host = reg.host();
    let l = Layout::busybox();
    let tar = tempfile::NamedTempFile::new().unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(l.bundle().join("rootfs"))
        .arg("-cf")
        .arg(tar.path())
        .arg("."));
    let b = Berth::new();
    let name = format!("{host}/team/app:1");
    let id = b
        .ok(&["import", tar.path().to_str().unwrap(), &name])
        .trim()
        .to_string();

    // Anonymous: the token server grants nothing.
    let err = b.fails(&["push", "--tls-verify=false", &name]);
    assert!(err.contains(&host), "{err}");

    // alice logs in (a token with her credentials) and pushes.
    b.ok(&[
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        "alice-pw",
        &host,
    ]);
    b.ok(&["push", "--tls-verify=false", &name]);
    assert!(
        ts.issued.lock().unwrap().iter().any(|i| i.account.as_deref()
            == Some("alice")
            && i.access.to_string().contains("push")),
        "alice's token granted push"
    );

    // bob pulls it into a fresh store.
    let bob = Berth::new();
    bob.ok(&[
        "login",
        "--tls-verify=false",
        "-u",
        "bob",
        "-p",
        "bob-pw",
        &host,
    ]);
    let pulled = bob.ok(&["pull", "--tls-verify=false", &name]);
    assert_eq!(pulled.trim(), id);
    let layer = bob.inspect(&name)["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(bob.layer_dir(&layer).join("bin/busybox").is_file());

    // bob's token has no push: a clear error naming what was refused.
    let err = bob.fails(&[
        "push",
        "--tls-verify=false",
        &name,
        &format!("{host}/team/bob:1"),
    ]);
    assert!(
        err.contains("push access to team/bob denied"),
        "error shown to the user: {err}"
    );

    // A wrong password is refused by the token server.
    let err = bob.fails(&[
        "login",
        "--tls-verify=false",
        "-u",
        "bob",
        "-p",
        "wrong",
        &host,
    ]);
    assert!(err.contains("rejected the credentials"), "{err}");
}
