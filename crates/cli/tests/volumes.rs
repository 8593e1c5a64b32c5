//! Volumes on real containers (as root): `berth volume create/ls/inspect/rm/prune`, `-v NAME:/p`,
//! `-v /p`, `--mount`, the image's `Volumes` with copy-up, `rm -v` and `run --rm`. Every test
//! checks that nothing is left on the host: no container, no volume row or directory, no mount
//! (the [`Engine`] fixture force-removes containers and unmounts leftovers even when a test fails;
//! its temp root, volumes included, goes with it).

mod common;

use std::os::unix::fs::MetadataExt;

use common::engine::Engine;

/// The mountinfo line of `path` as the container sees it.
fn mount_line<'a>(mountinfo: &'a str, path: &str) -> &'a str {
    mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(path))
        .unwrap_or_else(|| panic!("{path} is not mounted:\n{mountinfo}"))
}

/// Nothing at all left: containers, volumes (rows and dirs), mounts.
fn assert_all_clean(e: &Engine) {
    e.assert_clean();
    assert!(e.volumes().is_empty(), "volumes left: {:?}", e.volumes());
    assert!(
        e.volume_dirs().is_empty(),
        "volume dirs left: {:?}",
        e.volume_dirs()
    );
}

#[test]
fn a_named_volume_outlives_its_container() {
    let e = Engine::new();
    e.ok(&[
        "run",
        "--name",
        "writer",
        "-v",
        "data:/data",
        "bb",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_eq!(e.volumes(), ["data"]);
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["volume", "inspect", "data"])).unwrap();
    let mountpoint = e.root().join("volumes/data/_data");
    assert_eq!(v[0]["Mountpoint"], mountpoint.to_str().unwrap());
    assert_eq!(v[0]["Anonymous"], false);
    assert_eq!(
        std::fs::read_to_string(mountpoint.join("f")).unwrap(),
        "kept\n"
    );
    let mounts = &e.inspect("writer")["Mounts"];
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Name"], "data");
    e.ok(&["rm", "-v", "writer"]); // -v: anonymous volumes only
    assert_eq!(e.volumes(), ["data"]);
    // Another container reads it (read-only here: writing fails).
    let out = e.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/in:ro",
        "bb",
        "sh",
        "-c",
        "cat /in/f; echo x > /in/g 2>/dev/null || echo refused",
    ]);
    assert_eq!(out, "kept\nrefused\n");
    // --rm removes anonymous volumes only: the named one stays.
    assert_eq!(e.volumes(), ["data"]);
    assert_eq!(e.ok(&["volume", "rm", "data"]), "data\n");
    assert_all_clean(&e);
}

#[test]
fn an_image_volume_gets_an_anonymous_volume_with_the_image_files() {
    let e = Engine::new();
    // A host directory the image's symlinks point at: the copy-up must never reach it.
    let canary = tempfile::tempdir().unwrap();
    std::fs::write(canary.path().join("secret"), "host secret").unwrap();
    let canary_path = canary.path().to_path_buf();
    e.import_image("vol", &["VOLUME /data /linked"], |root| {
        let data = root.join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("sub/seed"), "from the image\n").unwrap();
        std::os::unix::fs::chown(data.join("sub"), Some(1000), Some(1000)).unwrap();
        std::os::unix::fs::symlink(&canary_path, data.join("escape")).unwrap();
        // The whole volume path a symlink out of the root: resolved inside it, finds nothing.
        std::os::unix::fs::symlink(
            format!("/../../../../..{}", canary_path.display()),
            root.join("linked"),
        )
        .unwrap();
    });
    let out = e.ok(&[
        "run",
        "--rm",
        "vol",
        "sh",
        "-c",
        "cat /data/sub/seed; stat -c '%u %g' /data/sub; readlink /data/escape; ls -A /linked; grep -c ' /data ' /proc/self/mountinfo",
    ]);
    assert_eq!(
        out,
        format!("from the image\n1000 1000\n{}\n1\n", canary_path.display())
    );
    assert_eq!(std::fs::read_dir(canary.path()).unwrap().count(), 1);
    // run --rm took its two anonymous volumes with it.
    assert!(e.volumes().is_empty(), "{:?}", e.volumes());
    assert!(e.volume_dirs().is_empty(), "{:?}", e.volume_dirs());

    // Kept by rm, taken by rm -v; a -v at the image's path replaces its anonymous volume.
    e.ok(&[
        "run",
        "--name",
        "a",
        "vol",
        "sh",
        "-c",
        "echo changed > /data/sub/seed",
    ]);
    e.ok(&[
        "run",
        "--name",
        "b",
        "-v",
        "named:/data",
        "vol",
        "cat",
        "/data/sub/seed",
    ]);
    let vols = e.volumes();
    assert_eq!(vols.len(), 4, "{vols:?}"); // a: 2 anonymous; b: named + 1 anonymous
    assert!(vols.contains(&"named".to_string()));
    let anon_of_a: Vec<String> = e.inspect("a")["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(anon_of_a.len(), 2);
    assert!(anon_of_a.iter().all(|n| n.len() == 64));
    let data = anon_of_a
        .iter()
        .find(|n| {
            e.root()
                .join("volumes")
                .join(n)
                .join("_data/sub/seed")
                .exists()
        })
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(e.root().join("volumes").join(data).join("_data/sub/seed"))
            .unwrap(),
        "changed\n"
    );
    e.ok(&["rm", "-v", "a"]);
    assert_eq!(e.volumes().len(), 2);
    e.ok(&["rm", "b"]);
    assert_eq!(e.volumes().len(), 2, "rm without -v keeps the volumes");
    let pruned = e.ok(&["volume", "prune", "-f"]);
    assert!(pruned.contains("named"), "{pruned}");
    assert_all_clean(&e);
}

#[test]
fn mount_forms_read_back_in_mountinfo() {
    let e = Engine::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("h"), "host file\n").unwrap();
    let bind = format!(
        "type=bind,source={},target=/b,readonly",
        host.path().display()
    );
    let out = e.ok(&[
        "run",
        "--rm",
        "--mount",
        &bind,
        "--mount",
        "type=volume,src=mv,dst=/v,volume-label=team=db",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770",
        "--mount",
        "type=volume,target=/anon",
        "bb",
        "sh",
        "-c",
        "cat /b/h; echo x > /b/y 2>/dev/null || echo ro; stat -c %a /t; cat /proc/self/mountinfo",
    ]);
    let (head, mi) = out.split_at(out.find("1770\n").unwrap() + 5);
    assert_eq!(head, "host file\nro\n1770\n");
    let b = mount_line(mi, "/b");
    assert!(
        b.split(' ').nth(5).unwrap().split(',').any(|o| o == "ro"),
        "{b}"
    );
    assert!(b.contains(host.path().to_str().unwrap()), "{b}");
    let t = mount_line(mi, "/t");
    assert!(t.contains(" - tmpfs ") && t.contains("size=1024k"), "{t}");
    let v = mount_line(mi, "/v");
    assert!(v.contains("/volumes/mv/_data"), "{v}");
    assert!(mount_line(mi, "/anon").contains("/volumes/"));
    assert!(!host.path().join("y").exists());
    // The volume made by --mount keeps its label; the anonymous one went with --rm.
    assert_eq!(e.volumes(), ["mv"]);
    let ls = e.ok(&[
        "volume",
        "ls",
        "--filter",
        "label=team=db",
        "--format",
        "json",
    ]);
    let ls: serde_json::Value = serde_json::from_str(&ls).unwrap();
    assert_eq!(ls[0]["Name"], "mv");
    assert_eq!(ls[0]["Labels"]["team"], "db");
    e.ok(&["volume", "rm", "mv"]);

    // Driver options: a tmpfs volume, and a bind of a host directory (whose files survive the
    // volume's removal).
    e.ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=2m",
        "tv",
    ]);
    let dev = format!("device={}", host.path().display());
    e.ok(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        "o=bind",
        "-o",
        &dev,
        "hv",
    ]);
    let mi = e.ok(&[
        "run",
        "--rm",
        "-v",
        "tv:/tv",
        "-v",
        "hv:/hv",
        "bb",
        "sh",
        "-c",
        "echo via-volume > /hv/new; cat /proc/self/mountinfo",
    ]);
    let tv = mount_line(&mi, "/tv");
    assert!(
        tv.contains(" - tmpfs ") && tv.contains("size=2048k"),
        "{tv}"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("new")).unwrap(),
        "via-volume\n"
    );
    e.ok(&["volume", "rm", "tv", "hv"]);
    assert!(e.mounts().is_empty(), "{:?}", e.mounts());
    assert_eq!(
        std::fs::read_to_string(host.path().join("h")).unwrap(),
        "host file\n"
    );
    assert!(host.path().join("new").exists());
    assert_all_clean(&e);
}

#[test]
fn a_volume_in_use_cannot_be_removed() {
    let e = Engine::new();
    e.ok(&["create", "--name", "idle", "-v", "data:/d", "bb", "sh"]);
    e.ok(&[
        "run", "-d", "--name", "busy", "-v", "data:/d", "bb", "sleep", "1000",
    ]);
    for args in [
        &["volume", "rm", "data"][..],
        &["volume", "rm", "-f", "data"],
    ] {
        let err = e.fails_with(125, args);
        assert!(
            err.contains("volume data is in use by container busy") && err.contains("and 1 more"),
            "{err}"
        );
    }
    e.ok(&["rm", "-f", "busy"]);
    let err = e.fails_with(125, &["volume", "rm", "data"]);
    assert!(err.contains("in use by container idle"), "{err}");
    // Nothing was half-removed: the data is still there and usable.
    assert!(e.root().join("volumes/data/_data").is_dir());
    e.ok(&["start", "-a", "idle"]);
    e.ok(&["rm", "idle"]);
    e.ok(&["volume", "rm", "data"]);
    let err = e.fails_with(125, &["volume", "rm", "data"]);
    assert!(err.contains("no such volume: data"), "{err}");
    e.ok(&["volume", "rm", "-f", "data"]);
    assert_all_clean(&e);
}

#[test]
fn prune_removes_only_unused_volumes() {
    let e = Engine::new();
    e.ok(&["volume", "create", "used"]);
    e.ok(&["volume", "create", "--label", "keep=yes", "kept"]);
    let unnamed = e.ok(&["volume", "create"]);
    let unnamed = unnamed.trim();
    assert_eq!(unnamed.len(), 64);
    e.ok(&[
        "create", "--name", "c", "-v", "used:/u", "-v", "/anon", "bb", "sh",
    ]);
    e.ok(&[
        "run", "--name", "gone", "-v", "/anon", "bb", "sh", "-c", ":",
    ]);
    let anon_gone = e.inspect("gone")["Mounts"][0]["Name"]
        .as_str()
        .unwrap()
        .to_string();
    e.ok(&["rm", "gone"]);
    let dangling = e.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]);
    let mut want = vec![anon_gone.clone(), "kept".into(), unnamed.to_string()];
    want.sort();
    assert_eq!(dangling.lines().collect::<Vec<_>>(), want);
    let out = e.ok(&["volume", "prune", "-f", "--filter", "label!=keep"]);
    assert!(out.contains(&anon_gone) && out.contains(unnamed), "{out}");
    assert!(!out.contains("kept") && !out.contains("used"), "{out}");
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(e.volumes().len(), 3, "{:?}", e.volumes()); // kept, used, c's anonymous
    assert_eq!(e.volume_dirs().len(), 3);
    e.ok(&["rm", "-v", "c"]);
    assert_eq!(e.volumes(), ["kept", "used"]);
    e.ok(&["volume", "prune"]);
    assert_all_clean(&e);
}

#[test]
fn bad_volume_input_fails_clearly_and_leaves_nothing() {
    let e = Engine::new();
    e.ok(&["volume", "create", "data"]);
    e.ok(&["create", "--name", "taken", "bb", "sh"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "run",
                "--mount",
                "type=bind,source=/tmp,target=/x,bogus=1",
                "bb",
                "sh",
            ],
            "unknown key \"bogus\"",
        ),
        (
            &["run", "--mount", "type=bind,source=/tmp", "bb", "sh"],
            "target is missing",
        ),
        (
            &[
                "run",
                "--mount",
                "type=bind,source=/tmp,target=rel",
                "bb",
                "sh",
            ],
            "must be absolute",
        ),
        (
            &["run", "--mount", "type=bind,target=/x", "bb", "sh"],
            "needs source",
        ),
        (
            &[
                "run",
                "--mount",
                "type=bind,source=/nonexistent-berth,target=/x",
                "bb",
                "sh",
            ],
            "does not exist",
        ),
        (
            &[
                "run",
                "--mount",
                "type=tmpfs,target=/t,volume-nocopy",
                "bb",
                "sh",
            ],
            "only for type=volume",
        ),
        (&["run", "-v", "/data:ro", "bb", "sh"], "takes no options"),
        (&["run", "-v", "x/y:/d", "bb", "sh"], "invalid volume name"),
        (
            &[
                "run",
                "-v",
                "newvol:/x",
                "--mount",
                "type=tmpfs,target=/t,tmpfs-size=zz",
                "bb",
                "sh",
            ],
            "tmpfs-size",
        ),
        (
            &[
                "run",
                "-v",
                "newvol:/x",
                "-v",
                "/dup",
                "--mount",
                "type=volume,target=/dup/",
                "bb",
                "sh",
            ],
            "duplicate mount point",
        ),
        (
            &[
                "run",
                "--name",
                "taken",
                "-v",
                "newvol:/x",
                "-v",
                "/anon",
                "bb",
                "sh",
            ],
            "already in use",
        ),
        (
            &[
                "run",
                "-v",
                "newvol:/x",
                "--mount",
                "type=volume,src=new2,dst=/y,volume-opt=bogus=1",
                "bb",
                "sh",
            ],
            "invalid volume option \"bogus\"",
        ),
        (&["volume", "create", "data"], "already exists"),
        (
            &["volume", "create", "-o", "bogus=1", "v2"],
            "invalid volume option",
        ),
        (
            &["volume", "create", "-o", "type=tmpfs", "v2"],
            "device is missing",
        ),
        (&["volume", "create", "bad/name"], "invalid volume name"),
        (
            &["volume", "create", "-d", "nfs", "v2"],
            "local driver only",
        ),
        (&["volume", "inspect", "nope"], "no such volume: nope"),
        (&["volume", "rm", "nope"], "no such volume: nope"),
        (
            &["volume", "ls", "--filter", "colour=red"],
            "invalid filter",
        ),
    ];
    for (args, want) in cases {
        let err = e.fails_with(125, args);
        assert!(
            err.starts_with("Error: ") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    // Nothing half-made: only what existed before, rows and dirs alike.
    assert_eq!(e.volumes(), ["data"]);
    assert_eq!(e.volume_dirs(), ["data"]);
    assert_eq!(e.ids().len(), 1);
    e.b.check_db();
    e.ok(&["rm", "taken"]);
    e.ok(&["volume", "rm", "data"]);
    assert_all_clean(&e);
    // Check an uncleaned volumes dir did not survive as a file, either.
    assert!(!e.root().join("volumes/newvol").exists());
    let md = std::fs::metadata(e.root().join("volumes")).unwrap();
    assert!(md.is_dir() && md.uid() == 0);
}
