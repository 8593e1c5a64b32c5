//! `top`, `stats`, `cp`, `rename` and `container prune` on real containers: the `berth` binary
//! (as root) with its own `--root`/`--runroot`, an image imported from a busybox rootfs tarball
//! on stdin, and `berth-monitor` from the same target directory.
//!
//! Every test owns an [`Env`] on a [`common::engine::Engine`], whose drop removes its containers
//! (`rm -f`) and unmounts anything left under its temp root, also when the test fails.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::engine::{mounts_under, sibling, Engine};

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "sleep", "cat", "ls", "mkdir", "ln", "echo", "stat", "rm", "test",
];

/// A busybox rootfs as an uncompressed tarball: /bin/busybox and applet links, /tmp, /etc.
fn rootfs_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for d in ["bin", "tmp", "etc", "proc", "sys", "dev"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if d == "tmp" { 0o1777 } else { 0o755 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        b.append_data(&mut h, d, std::io::empty()).unwrap();
    }
    b.append_path_with_name(BUSYBOX, "bin/busybox").unwrap();
    for a in APPLETS {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{a}"), "busybox")
            .unwrap();
    }
    b.into_inner().unwrap()
}

/// One test's engine, image and scratch dir.
struct Env {
    e: Engine,
    /// Host-side scratch files (canaries, files to copy).
    work: tempfile::TempDir,
}

impl std::ops::Deref for Env {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.e
    }
}

impl Env {
    fn new() -> Env {
        assert!(
            Path::new(BUSYBOX).is_file(),
            "{BUSYBOX} missing: apt-get install busybox-static"
        );
        sibling("berth-monitor");
        let e = Env {
            e: Engine::empty(),
            work: tempfile::tempdir().unwrap(),
        };
        // `import -`: the rootfs tarball on stdin.
        let out = e.output_with_stdin(&["import", "-", "bb:1"], &rootfs_tar());
        assert!(out.status.success(), "import -: {out:?}");
        e
    }

    /// `run -d` with a name; the id.
    fn run_d(&self, name: &str, flags: &[&str], cmd: &[&str]) -> String {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(flags);
        args.push("bb:1");
        args.extend_from_slice(cmd);
        self.ok(&args).trim().to_string()
    }

    fn exec(&self, name: &str, cmd: &[&str]) -> String {
        let mut args = vec!["exec", name];
        args.extend_from_slice(cmd);
        self.ok(&args)
    }

    /// Names of every container.
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ok(&["ps", "-a", "--format", "{{.Names}}"])
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.root().join("containers").join(id)
    }

    fn host(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn set_mtime(p: &Path, secs: u64) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn top_lists_the_containers_sleep_process() {
    let e = Env::new();
    e.run_d("t1", &[], &["sleep", "1000"]);
    let pid = e.inspect("t1")["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0);

    let out = e.ok(&["top", "t1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "header + the sleep: {out}");
    assert!(
        lines[0].contains("PID") && lines[0].contains("CMD"),
        "{out}"
    );
    assert!(lines[1].ends_with("sleep 1000"), "{out}");
    assert_eq!(
        lines[1].split_whitespace().nth(1),
        Some(pid.to_string().as_str()),
        "{out}"
    );

    // ps options, and `container top`.
    let out = e.ok(&["container", "top", "t1", "-o", "pid,comm"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines().nth(1).unwrap().trim().ends_with("sleep"),
        "{out}"
    );
    // Options without a PID column are a clear error.
    let err = e.fails(&["top", "t1", "-o", "comm"]);
    assert!(err.contains("PID column"), "{err}");

    // Several processes.
    e.run_d("t2", &[], &["sh", "-c", "sleep 1001 & sleep 1002 & wait"]);
    let out = e.ok(&["top", "t2"]);
    assert_eq!(out.lines().count(), 4, "header, sh, two sleeps: {out}");
    assert!(
        out.contains("sleep 1001") && out.contains("sleep 1002"),
        "{out}"
    );
    assert!(
        !out.contains("sleep 1000"),
        "t1's process in t2's top: {out}"
    );

    // Not running: a clear error.
    e.ok(&["stop", "-t", "1", "t1"]);
    let err = e.fails(&["top", "t1"]);
    assert!(err.contains("not running"), "{err}");
    e.fails(&["top", "nosuchcontainer"]);
}

#[test]
fn stats_show_the_memory_limit_and_the_pids() {
    let e = Env::new();
    let id = e.run_d(
        "s1",
        &["--memory", "64m"],
        &["sh", "-c", "sleep 1000 & sleep 1000 & wait"],
    );

    let out = e.ok(&["stats", "--no-stream", "--format", "json", "s1"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["Name"], "s1");
    assert_eq!(v["Container"], id.as_str());
    assert_eq!(v["MemoryLimitBytes"], 64u64 << 20, "{v}");
    assert!(v["MemUsage"].as_str().unwrap().ends_with("/ 64MiB"), "{v}");
    assert!(v["MemoryUsageBytes"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["PIDs"], "3", "sh and two sleeps: {v}");
    assert!(v["CPUPerc"].as_str().unwrap().ends_with('%'), "{v}");

    // The table, every running container by default.
    e.run_d("s2", &[], &["sleep", "1000"]);
    let out = e.ok(&["stats", "--no-stream"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains("MEM USAGE / LIMIT") && lines[0].contains("PIDS"),
        "{out}"
    );
    let s1 = lines.iter().find(|l| l.contains(" s1 ")).unwrap();
    assert!(s1.contains("/ 64MiB"), "{out}");
    assert!(s1.trim_end().ends_with(" 3"), "{out}");

    // Streaming: a new frame every second until stopped.
    let mut child = e
        .cmd()
        .args(["stats", "s1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut headers = 0;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while headers < 2 && start.elapsed() < Duration::from_secs(15) {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("CONTAINER ID") => headers += 1,
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(headers, 2, "two frames of streamed stats");

    // An unknown container and a bad format are errors.
    e.fails(&["stats", "--no-stream", "nosuchcontainer"]);
    e.fails(&["stats", "--no-stream", "--format", "yaml"]);
}

#[test]
fn cp_into_and_out_of_a_running_container() {
    let e = Env::new();
    e.run_d("c1", &[], &["sleep", "1000"]);

    // A file into a directory, keeping its mode and mtime; root-owned without -a.
    let f = e.host("hello.txt");
    std::fs::write(&f, b"hello from the host\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    set_mtime(&f, 1_500_000_000);
    nix::unistd::chown(&f, Some(1234.into()), Some(5678.into())).unwrap();
    e.ok(&["cp", f.to_str().unwrap(), "c1:/tmp"]);
    assert_eq!(
        e.exec("c1", &["cat", "/tmp/hello.txt"]),
        "hello from the host\n"
    );
    assert_eq!(
        e.exec("c1", &["stat", "-c", "%u:%g %a %Y", "/tmp/hello.txt"])
            .trim(),
        "0:0 640 1500000000"
    );
    // -a keeps uid/gid; to a new name.
    e.ok(&["cp", "-a", f.to_str().unwrap(), "c1:/tmp/kept.txt"]);
    assert_eq!(
        e.exec("c1", &["stat", "-c", "%u:%g", "/tmp/kept.txt"])
            .trim(),
        "1234:5678"
    );
    // Overwriting an existing file.
    std::fs::write(&f, b"second version\n").unwrap();
    e.ok(&["cp", f.to_str().unwrap(), "c1:/tmp/hello.txt"]);
    assert_eq!(e.exec("c1", &["cat", "/tmp/hello.txt"]), "second version\n");
    // A missing parent directory, or a file to `dir/` that does not exist: clear errors.
    let err = e.fails(&["cp", f.to_str().unwrap(), "c1:/nope/x"]);
    assert!(err.contains("does not exist"), "{err}");
    e.fails(&["cp", f.to_str().unwrap(), "c1:/nope/"]);

    // A directory tree with a symlink, to a new name and into an existing directory.
    let d = e.host("tree");
    std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
    std::fs::write(d.join("sub/deeper/f"), b"deep\n").unwrap();
    std::fs::set_permissions(d.join("sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("sub/deeper/f", d.join("link")).unwrap();
    e.ok(&["cp", d.to_str().unwrap(), "c1:/copied"]);
    assert_eq!(e.exec("c1", &["cat", "/copied/sub/deeper/f"]), "deep\n");
    assert_eq!(e.exec("c1", &["cat", "/copied/link"]), "deep\n");
    assert_eq!(
        e.exec(
            "c1",
            &["stat", "-c", "%F %a", "/copied/link", "/copied/sub"]
        ),
        "symbolic link 777\ndirectory 750\n"
    );
    e.ok(&["cp", d.to_str().unwrap(), "c1:/tmp"]);
    assert_eq!(e.exec("c1", &["cat", "/tmp/tree/sub/deeper/f"]), "deep\n");
    // `dir/.`: the contents into an existing directory.
    e.exec("c1", &["mkdir", "/contents"]);
    e.ok(&["cp", &format!("{}/.", d.display()), "c1:/contents"]);
    assert_eq!(e.exec("c1", &["cat", "/contents/sub/deeper/f"]), "deep\n");

    // Out again: a file, a directory (symlinks stay symlinks), to a new name and into a dir.
    let out = e.host("out");
    std::fs::create_dir(&out).unwrap();
    e.ok(&["cp", "c1:/tmp/hello.txt", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(out.join("hello.txt")).unwrap(),
        b"second version\n"
    );
    assert_eq!(mode(&out.join("hello.txt")), 0o640);
    e.ok(&["cp", "c1:/copied", out.join("tree2").to_str().unwrap()]);
    assert_eq!(
        std::fs::read(out.join("tree2/sub/deeper/f")).unwrap(),
        b"deep\n"
    );
    assert_eq!(
        std::fs::read_link(out.join("tree2/link")).unwrap(),
        Path::new("sub/deeper/f")
    );
    assert_eq!(mode(&out.join("tree2/sub")), 0o750);
    // -a out keeps the container's uid/gid.
    e.ok(&["cp", "-a", "c1:/tmp/kept.txt", out.to_str().unwrap()]);
    let md = std::fs::metadata(out.join("kept.txt")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    // A missing source is an error.
    let err = e.fails(&["cp", "c1:/no/such/file", out.to_str().unwrap()]);
    assert!(
        err.contains("does not exist") || err.contains("no such"),
        "{err}"
    );

    // `-` out: a tar stream of the path.
    let o = e.cmd().args(["cp", "c1:/copied", "-"]).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let mut ar = tar::Archive::new(&o.stdout[..]);
    let mut names = Vec::new();
    for en in ar.entries().unwrap() {
        let mut en = en.unwrap();
        let name = en.path().unwrap().display().to_string();
        if name == "copied/sub/deeper/f" {
            let mut s = String::new();
            en.read_to_string(&mut s).unwrap();
            assert_eq!(s, "deep\n");
        }
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "copied",
            "copied/link",
            "copied/sub",
            "copied/sub/deeper",
            "copied/sub/deeper/f"
        ]
    );

    // `-` in: a tar stream unpacked into a directory.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o600);
    h.set_uid(42);
    h.set_gid(43);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, "fromtar/inner.txt", &b"tared\n"[..])
        .unwrap();
    let data = b.into_inner().unwrap();
    for (flag, owner) in [(None, "0:0"), (Some("-a"), "42:43")] {
        let mut args = vec!["cp"];
        args.extend(flag);
        args.extend(["-", "c1:/tmp"]);
        let o = e.output_with_stdin(&args, &data);
        assert!(o.status.success(), "{o:?}");
        assert_eq!(
            e.exec(
                "c1",
                &["stat", "-c", "%u:%g %a %Y", "/tmp/fromtar/inner.txt"]
            )
            .trim(),
            format!("{owner} 600 1600000000")
        );
    }
    // Into something that is not a directory: refused.
    let o = e.output_with_stdin(&["cp", "-", "c1:/tmp/hello.txt"], &data);
    assert_eq!(o.status.code(), Some(125), "{o:?}");

    // Neither side a container, or both: errors.
    e.fails(&["cp", f.to_str().unwrap(), out.to_str().unwrap()]);
    e.fails(&["cp", "c1:/tmp/hello.txt", "c1:/tmp/x"]);
}

/// In a running container, cp sees what the container sees: a named volume and a bind mount
/// are copied into (landing in the volume / the host directory) and out of; a read-only bind
/// refuses the write with a clear error and keeps the file unchanged.
#[test]
fn cp_reaches_a_running_containers_volumes_and_binds() {
    let e = Env::new();
    let bind = e.host("bind");
    std::fs::create_dir(&bind).unwrap();
    let ro = e.host("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(ro.join("keep"), b"original\n").unwrap();
    let vol = format!("cpvol{}", std::process::id());
    e.run_d(
        "cv",
        &[
            "-v",
            &format!("{vol}:/data"),
            "-v",
            &format!("{}:/bind", bind.display()),
            "-v",
            &format!("{}:/ro:ro", ro.display()),
        ],
        &["sleep", "1000"],
    );
    let f = e.host("note.txt");
    std::fs::write(&f, b"into the volume\n").unwrap();
    e.ok(&["cp", f.to_str().unwrap(), "cv:/data/note.txt"]);
    assert_eq!(
        e.exec("cv", &["cat", "/data/note.txt"]),
        "into the volume\n"
    );
    e.ok(&["cp", f.to_str().unwrap(), "cv:/bind/"]);
    assert_eq!(
        std::fs::read(bind.join("note.txt")).unwrap(),
        b"into the volume\n"
    );
    // Out of the volume, as written by the container itself.
    e.exec("cv", &["sh", "-c", "echo made inside > /data/inside.txt"]);
    let out = e.host("inside.txt");
    e.ok(&["cp", "cv:/data/inside.txt", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), b"made inside\n");
    let err = e.fails(&["cp", f.to_str().unwrap(), "cv:/ro/keep"]);
    assert!(err.to_lowercase().contains("read-only"), "{err}");
    assert_eq!(std::fs::read(ro.join("keep")).unwrap(), b"original\n");

    // Stopped: the volumes are bound over the root for the copy, then unbound with it.
    e.ok(&["kill", "cv"]);
    e.wait_until("cv to exit", || {
        e.inspect("cv")["State"]["Status"] == "exited"
    });
    let g = e.host("stopped.txt");
    std::fs::write(&g, b"while stopped\n").unwrap();
    e.ok(&["cp", g.to_str().unwrap(), "cv:/data/"]);
    e.ok(&["cp", g.to_str().unwrap(), "cv:/bind/"]);
    assert_eq!(
        std::fs::read(bind.join("stopped.txt")).unwrap(),
        b"while stopped\n"
    );
    let out2 = e.host("inside2.txt");
    e.ok(&["cp", "cv:/data/inside.txt", out2.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out2).unwrap(), b"made inside\n");
    let err = e.fails(&["cp", g.to_str().unwrap(), "cv:/ro/keep"]);
    assert!(err.to_lowercase().contains("read-only"), "{err}");
    assert_eq!(std::fs::read(ro.join("keep")).unwrap(), b"original\n");
    assert!(e.mounts().is_empty(), "{:?}", e.mounts());
    e.ok(&["rm", "-f", "cv"]);
    let mp = e.ok(&["volume", "inspect", &vol]);
    let v: serde_json::Value = serde_json::from_str(&mp).unwrap();
    let dir = v[0]["Mountpoint"].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::read(Path::new(&dir).join("note.txt")).unwrap(),
        b"into the volume\n"
    );
    assert_eq!(
        std::fs::read(Path::new(&dir).join("stopped.txt")).unwrap(),
        b"while stopped\n"
    );
    e.ok(&["volume", "rm", &vol]);
}

#[test]
fn cp_with_stopped_and_created_containers() {
    let e = Env::new();
    // Exited: its root filesystem is not mounted; cp mounts it for the copy only.
    let o = e.output(&[
        "run",
        "--name",
        "done",
        "bb:1",
        "sh",
        "-c",
        "echo made inside > /made.txt",
    ]);
    assert!(o.status.success(), "{o:?}");
    let id = e.inspect("done")["Id"].as_str().unwrap().to_string();
    let merged = e.container_dir(&id).join("snapshot/merged");
    assert!(mounts_under(&merged).is_empty());
    let out = e.host("made.txt");
    e.ok(&["cp", "done:/made.txt", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), b"made inside\n");
    assert!(
        mounts_under(&merged).is_empty(),
        "cp left the rootfs mounted"
    );

    let f = e.host("in.txt");
    std::fs::write(&f, b"copied while stopped\n").unwrap();
    e.ok(&["cp", f.to_str().unwrap(), "done:/in.txt"]);
    assert!(
        mounts_under(&merged).is_empty(),
        "cp left the rootfs mounted"
    );
    // The change is in the container's layer: it sees it when started again.
    let o = e.output(&["start", "-a", "done"]);
    assert!(o.status.success(), "{o:?}");
    e.ok(&["cp", "done:/in.txt", e.host("back.txt").to_str().unwrap()]);
    assert_eq!(
        std::fs::read(e.host("back.txt")).unwrap(),
        b"copied while stopped\n"
    );

    // Created, never started: cp in, then the program sees the file.
    e.ok(&["create", "--name", "fresh", "bb:1", "cat", "/in.txt"]);
    e.ok(&["cp", f.to_str().unwrap(), "fresh:/in.txt"]);
    let o = e.output(&["start", "-a", "fresh"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "copied while stopped\n");

    // Read-only root filesystems are not written.
    e.ok(&["create", "--name", "ro", "--read-only", "bb:1", "true"]);
    let err = e.fails(&["cp", f.to_str().unwrap(), "ro:/in.txt"]);
    assert!(err.contains("read-only"), "{err}");
}

/// A host canary the container's symlinks point at; it must never be read or changed.
struct Canary {
    dir: PathBuf,
    file: PathBuf,
}

impl Canary {
    fn new(e: &Env) -> Canary {
        let dir = e.host("canary");
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("secret.txt");
        std::fs::write(&file, b"HOST SECRET\n").unwrap();
        Canary { dir, file }
    }

    /// The canary's path without the leading `/`.
    fn rel(&self) -> String {
        self.file.strip_prefix("/").unwrap().display().to_string()
    }

    fn dir_rel(&self) -> String {
        self.dir.strip_prefix("/").unwrap().display().to_string()
    }

    fn check(&self) {
        assert_eq!(
            std::fs::read(&self.file).unwrap(),
            b"HOST SECRET\n",
            "the canary changed"
        );
        let names: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["secret.txt"],
            "something was written beside the canary"
        );
    }
}

#[test]
fn cp_cannot_escape_the_rootfs_through_hostile_symlinks() {
    let e = Env::new();
    let canary = Canary::new(&e);
    let (rel, dir_rel) = (canary.rel(), canary.dir_rel());
    let file_abs = canary.file.display().to_string();
    let dir_abs = canary.dir.display().to_string();
    e.run_d("h", &[], &["sleep", "1000"]);
    // The container plants symlinks at the host: to /, climbing with .., straight at the canary.
    e.exec("h", &["ln", "-s", "/", "/slash"]);
    e.exec("h", &["mkdir", "-p", "/a/b"]);
    e.exec("h", &["ln", "-s", "../../../../../../../../..", "/a/b/up"]);
    e.exec("h", &["ln", "-s", &file_abs, "/direct"]);
    e.exec("h", &["ln", "-s", &dir_abs, "/dirlink"]);
    let out = e.host("out.txt");
    let outs = out.to_str().unwrap();

    // Reading: the host canary is not in the container, so these find nothing.
    for src in [
        format!("h:/slash/{rel}"),
        format!("h:/a/b/up/{rel}"),
        "h:/dirlink/secret.txt".to_string(),
    ] {
        e.fails(&["cp", &src, outs]);
        assert!(!out.exists(), "{src} produced {}", out.display());
    }
    e.fails(&["cp", "-L", "h:/direct", outs]);
    assert!(!out.exists());
    // Without -L a symlink is copied as the symlink itself, not what it names.
    e.ok(&["cp", "h:/direct", outs]);
    assert_eq!(std::fs::read_link(&out).unwrap(), canary.file);
    std::fs::remove_file(&out).unwrap();
    // A directory holding the symlinks copies them as symlinks.
    e.ok(&["cp", "h:/a", outs]);
    assert_eq!(
        std::fs::read_link(out.join("b/up")).unwrap(),
        Path::new("../../../../../../../../..")
    );
    std::fs::remove_dir_all(&out).unwrap();

    // Writing: nothing to write into at the host path inside the container...
    let evil = e.host("evil.txt");
    std::fs::write(&evil, b"EVIL\n").unwrap();
    let evils = evil.to_str().unwrap();
    for dst in [
        format!("h:/slash/{rel}"),
        format!("h:/a/b/up/{rel}"),
        "h:/dirlink/".into(),
    ] {
        e.fails(&["cp", evils, &dst]);
        canary.check();
    }
    // ...and once the container has such a directory of its own, the writes land there.
    e.exec("h", &["mkdir", "-p", &format!("/{dir_rel}")]);
    for dst in [
        format!("h:/slash/{rel}"),
        format!("h:/a/b/up/{rel}"),
        "h:/direct".to_string(),
        "h:/dirlink/secret.txt".to_string(),
    ] {
        e.ok(&["cp", evils, &dst]);
        canary.check();
        assert_eq!(e.exec("h", &["cat", &format!("/{rel}")]), "EVIL\n", "{dst}");
        e.exec("h", &["rm", &format!("/{rel}")]);
    }
    // A directory copied through them, too.
    let tree = e.host("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("x"), b"x").unwrap();
    e.ok(&[
        "cp",
        tree.to_str().unwrap(),
        &format!("h:/a/b/up/{dir_rel}"),
    ]);
    canary.check();
    assert_eq!(e.exec("h", &["cat", &format!("/{dir_rel}/tree/x")]), "x");
    // A symlink named like the destination file is replaced, not written through.
    e.exec("h", &["ln", "-s", &file_abs, "/tmp/victim"]);
    e.ok(&["cp", tree.to_str().unwrap(), "h:/tmp"]);
    e.ok(&["cp", evils, "h:/tmp/tree/x"]);
    canary.check();

    // A tar stream on stdin: its own symlink at the host dir, then a file through it; `..`.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    b.append_link(&mut h, "esc", &canary.dir).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "esc/pwned", &b"PWNED"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "slash/pwned2", &b"PWNED"[..])
        .unwrap();
    let data = b.into_inner().unwrap();
    let tar_in = |dst: &str, data: &[u8]| e.output_with_stdin(&["cp", "-", dst], data);
    let o = tar_in("h:/", &data);
    assert!(o.status.success(), "{o:?}");
    canary.check();
    assert_eq!(e.exec("h", &["cat", &format!("/{dir_rel}/pwned")]), "PWNED");
    assert_eq!(e.exec("h", &["cat", "/pwned2"]), "PWNED");
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..22].copy_from_slice(b"../../../../../escaped");
    h.set_size(0);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut data = h.as_bytes().to_vec();
    data.extend_from_slice(&[0u8; 1024]);
    let o = tar_in("h:/a/b", &data);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains(".."), "{o:?}");
    canary.check();

    // The same with the container stopped (its rootfs mounted by cp itself).
    e.ok(&["stop", "-t", "1", "h"]);
    e.fails(&["cp", &format!("h:/slash/{dir_rel}/nothing"), outs]);
    e.ok(&["cp", evils, &format!("h:/a/b/up/{rel}")]);
    canary.check();
    e.ok(&["cp", &format!("h:/slash/{rel}"), outs]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"EVIL\n",
        "read the container's copy"
    );
    canary.check();
}

#[test]
fn rename_then_ps_shows_the_new_name() {
    let e = Env::new();
    let id = e.run_d("old", &[], &["sleep", "1000"]);
    e.ok(&["create", "--name", "other", "bb:1", "true"]);
    e.ok(&["rename", "old", "new"]);
    assert_eq!(e.names(), ["new", "other"]);
    assert_eq!(e.inspect("new")["Id"], id.as_str());
    let ps = e.ok(&["ps"]);
    assert!(ps.contains("new") && !ps.contains("old"), "{ps}");
    e.fails(&["inspect", "old"]);
    // By id prefix, through `container rename`.
    e.ok(&["container", "rename", &id[..12], "newer"]);
    assert_eq!(e.names(), ["newer", "other"]);

    // A taken name: exit 125, a clear message, nothing changed.
    let err = e.fails(&["rename", "newer", "other"]);
    assert!(err.contains("\"other\" is already in use"), "{err}");
    assert_eq!(e.names(), ["newer", "other"]);
    // Invalid names and unknown containers.
    let err = e.fails(&["rename", "newer", "bad name"]);
    assert!(err.contains("invalid container name"), "{err}");
    e.fails(&["rename", "newer", "_underscore"]);
    let err = e.fails(&["rename", "ghost", "x"]);
    assert!(err.contains("no such container"), "{err}");
    // The renamed container still works under its new name.
    assert_eq!(e.ok(&["exec", "newer", "echo", "hi"]), "hi\n");
}

#[test]
fn container_prune_removes_stopped_containers_only() {
    let e = Env::new();
    let up = e.run_d("up", &[], &["sleep", "1000"]);
    let o = e.output(&[
        "run",
        "--name",
        "done",
        "bb:1",
        "sh",
        "-c",
        "echo x > /f; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let done = e.inspect("done")["Id"].as_str().unwrap().to_string();
    let fresh = e
        .ok(&["create", "--name", "fresh", "bb:1", "true"])
        .trim()
        .to_string();

    let out = e.ok(&["container", "prune", "-f"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert!(out.contains(&done) && out.contains(&fresh), "{out}");
    assert!(!out.contains(&up), "{out}");
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("Total reclaimed space: "), "{out}");
    assert_ne!(last, "Total reclaimed space: 0B", "{out}");

    assert_eq!(e.names(), ["up"]);
    assert!(!e.container_dir(&done).exists());
    assert!(!e.container_dir(&fresh).exists());
    assert!(e.container_dir(&up).exists());
    assert_eq!(e.exec("up", &["echo", "alive"]), "alive\n");

    // Nothing left to prune.
    let out = e.ok(&["container", "prune"]);
    assert_eq!(out, "Total reclaimed space: 0B\n");
}

#[test]
fn top_and_stats_through_a_runtime_binary() {
    let rt = sibling("berth-runtime");
    let e = Env::new();
    e.run_d(
        "rb",
        &["--runtime", rt.to_str().unwrap(), "--memory", "32m"],
        &["sleep", "1000"],
    );
    let out = e.ok(&["top", "rb"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("sleep 1000"), "{out}");
    let v: serde_json::Value = serde_json::from_str(
        e.ok(&["stats", "--no-stream", "--format", "json", "rb"])
            .trim(),
    )
    .unwrap();
    assert_eq!(v["MemoryLimitBytes"], 32u64 << 20, "{v}");
    assert_eq!(v["PIDs"], "1", "{v}");

    // A runtime without `events --stats`: a clear error, not an empty reading.
    let wrapper = e.host("nostats-runtime");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = events ] && {{ echo 'unknown command events' >&2; exit 1; }}; done\nexec {} \"$@\"\n",
            rt.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    e.run_d(
        "nostats",
        &["--runtime", wrapper.to_str().unwrap()],
        &["sleep", "1000"],
    );
    assert!(e.ok(&["top", "nostats"]).contains("sleep 1000"));
    let err = e.fails(&["stats", "--no-stream", "nostats"]);
    assert!(
        err.contains("cannot report statistics") && err.contains("unknown command events"),
        "{err}"
    );
}
