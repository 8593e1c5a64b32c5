//! Filesystem setup: readonly rootfs, bind/rbind/tmpfs/proc/sysfs/devpts/mqueue/cgroup mounts
//! with options and propagation, rootfsPropagation, masked and readonly paths, devices.

use std::path::{Path, PathBuf};

use berth_runtime_tests::*;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde_json::{json, Value};

fn setup() -> Runtime {
    require_root_and_tools(&[]);
    Runtime::new()
}

fn add_mount(b: &mut Bundle, m: Value) {
    b.config["mounts"].as_array_mut().unwrap().push(m);
}

/// Runs `script` and returns (stdout, the container's mountinfo printed after a marker).
fn run_with_mountinfo(rt: &Runtime, b: &mut Bundle, script: &str) -> (String, String) {
    b.set_sh(&format!(
        "{script}; echo ==MOUNTINFO==; cat /proc/self/mountinfo"
    ));
    b.write_config();
    let out = rt.run_ok(b, &unique_id("mnt"));
    let (a, m) = out.split_once("==MOUNTINFO==\n").unwrap();
    (a.to_string(), m.to_string())
}

#[test]
fn rootfs_readonly() {
    let rt = setup();
    let mut b = Bundle::busybox();
    let (out, mi) = run_with_mountinfo(&rt, &mut b, "touch /newfile 2>&1; echo rc=$?");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    let root = mount_at(&mi, "/").unwrap();
    assert!(root.opts.contains(&"ro".to_string()), "{root:?}");
    assert!(!b.rootfs().join("newfile").exists());
}

#[test]
fn rootfs_writable_when_not_readonly() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["root"]["readonly"] = json!(false);
    let (out, mi) = run_with_mountinfo(&rt, &mut b, "echo data > /newfile && echo rc=$?");
    assert_eq!(out, "rc=0\n");
    let root = mount_at(&mi, "/").unwrap();
    assert!(root.opts.contains(&"rw".to_string()), "{root:?}");
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("newfile")).unwrap(),
        "data\n"
    );
}

#[test]
fn rootfs_is_pivoted_not_host_root() {
    let rt = setup();
    let b = Bundle::sh("ls /; cat /proc/self/mountinfo | wc -l");
    std::fs::write(b.rootfs().join(".in-container"), "").unwrap();
    let out = rt.run_ok(&b, &unique_id("root"));
    assert!(out.lines().any(|l| l == "bin"), "{out}");
    // busybox ls hides dotfiles without -a; the host's root dirs like /usr/lib are absent.
    assert!(!out.lines().any(|l| l == "lib64" || l == "boot"), "{out}");
    let b2 = Bundle::sh("ls -a / | grep -c in-container; ls /.. | grep -cx bin");
    std::fs::write(b2.rootfs().join(".in-container"), "").unwrap();
    assert_eq!(rt.run_ok(&b2, &unique_id("root2")), "1\n1\n");
}

/// A host dir with `top.txt` and a tmpfs submount at `sub/` holding `inner.txt`; unmounted on drop.
struct HostTree {
    dir: tempfile::TempDir,
}

impl HostTree {
    fn new() -> HostTree {
        let dir = tempfile::Builder::new()
            .prefix("berth-hosttree-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("top.txt"), "top\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        mount(
            Some("tmpfs"),
            &dir.path().join("sub"),
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        std::fs::write(dir.path().join("sub/inner.txt"), "inner\n").unwrap();
        HostTree { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for HostTree {
    fn drop(&mut self) {
        let _ = umount2(&self.dir.path().join("sub"), MntFlags::MNT_DETACH);
    }
}

#[test]
fn bind_ro_and_rbind() {
    let rt = setup();
    let tree = HostTree::new();
    let mut b = Bundle::busybox();
    add_mount(
        &mut b,
        json!({"destination": "/mnt/bind", "type": "bind", "source": tree.path(),
               "options": ["bind", "ro"]}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/mnt/rbind", "type": "bind", "source": tree.path(),
               "options": ["rbind", "rw"]}),
    );
    let (out, mi) = run_with_mountinfo(
        &rt,
        &mut b,
        "cat /mnt/bind/top.txt; cat /mnt/bind/sub/inner.txt 2>/dev/null || echo no-inner; \
         cat /mnt/rbind/sub/inner.txt; touch /mnt/bind/x 2>/dev/null || echo ro-ok; \
         echo w > /mnt/rbind/written",
    );
    assert_eq!(out, "top\nno-inner\ninner\nro-ok\n");
    let m = mount_at(&mi, "/mnt/bind").unwrap();
    assert!(m.opts.contains(&"ro".to_string()), "{m:?}");
    let r = mount_at(&mi, "/mnt/rbind").unwrap();
    assert!(r.opts.contains(&"rw".to_string()), "{r:?}");
    assert!(
        mount_at(&mi, "/mnt/rbind/sub").is_some(),
        "rbind lost submount:\n{mi}"
    );
    assert!(
        mount_at(&mi, "/mnt/bind/sub").is_none(),
        "bind copied submount:\n{mi}"
    );
    assert_eq!(
        std::fs::read_to_string(tree.path().join("written")).unwrap(),
        "w\n"
    );
    assert!(!tree.path().join("x").exists());
}

#[test]
fn bind_mount_of_a_file() {
    let rt = setup();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("hosts");
    std::fs::write(&f, "10.0.0.1 magic-host\n").unwrap();
    let mut b = Bundle::busybox();
    add_mount(
        &mut b,
        json!({"destination": "/etc/hosts", "type": "bind", "source": f, "options": ["rbind", "ro"]}),
    );
    b.set_sh("cat /etc/hosts");
    b.write_config();
    assert_eq!(rt.run_ok(&b, &unique_id("fbind")), "10.0.0.1 magic-host\n");
    // The destination file was created inside the rootfs, not elsewhere.
    assert!(b.rootfs().join("etc/hosts").exists());
}

#[test]
fn tmpfs_with_size_mode_and_flags() {
    let rt = setup();
    let mut b = Bundle::busybox();
    add_mount(
        &mut b,
        json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "noexec", "nodev", "size=4m", "mode=1770"]}),
    );
    let (out, mi) = run_with_mountinfo(
        &rt,
        &mut b,
        "stat -c %a /scratch; cp /bin/busybox /scratch/bb && /scratch/bb true 2>/dev/null; echo exec-rc=$?; \
         dd if=/dev/zero of=/scratch/big bs=1M count=8 2>/dev/null; echo dd-rc=$?",
    );
    assert_eq!(out, "1770\nexec-rc=126\ndd-rc=1\n");
    let m = mount_at(&mi, "/scratch").unwrap();
    assert_eq!(m.fstype, "tmpfs");
    for o in ["rw", "nosuid", "nodev", "noexec"] {
        assert!(m.opts.contains(&o.to_string()), "{o} missing: {m:?}");
    }
    assert!(m.super_opts.contains(&"size=4096k".to_string()), "{m:?}");
    assert!(m.super_opts.contains(&"mode=1770".to_string()), "{m:?}");
}

#[test]
fn default_mounts_types_and_options() {
    let rt = setup();
    let mut b = Bundle::busybox();
    let (out, mi) = run_with_mountinfo(&rt, &mut b, "stat -c %a /dev/shm /dev /dev/mqueue");
    assert_eq!(out, "1777\n755\n1777\n");
    let has = |m: &MountInfo, o: &str| m.opts.iter().any(|x| x == o);
    let proc_ = mount_at(&mi, "/proc").unwrap();
    assert_eq!(proc_.fstype, "proc");
    let dev = mount_at(&mi, "/dev").unwrap();
    assert_eq!(dev.fstype, "tmpfs");
    assert!(has(&dev, "nosuid"), "{dev:?}");
    assert!(dev.super_opts.contains(&"mode=755".to_string()), "{dev:?}");
    assert!(
        dev.super_opts.contains(&"size=65536k".to_string()),
        "{dev:?}"
    );
    let pts = mount_at(&mi, "/dev/pts").unwrap();
    assert_eq!(pts.fstype, "devpts");
    assert!(has(&pts, "nosuid") && has(&pts, "noexec"), "{pts:?}");
    for o in ["gid=5", "mode=620", "ptmxmode=666"] {
        assert!(pts.super_opts.contains(&o.to_string()), "{o}: {pts:?}");
    }
    let shm = mount_at(&mi, "/dev/shm").unwrap();
    assert_eq!(shm.fstype, "tmpfs");
    assert!(has(&shm, "nosuid") && has(&shm, "noexec") && has(&shm, "nodev"));
    // (mode=1777 is tmpfs's default and so not shown in mountinfo; checked with stat below.)
    let mq = mount_at(&mi, "/dev/mqueue").unwrap();
    assert_eq!(mq.fstype, "mqueue");
    assert!(has(&mq, "nosuid") && has(&mq, "noexec") && has(&mq, "nodev"));
    let sys = mount_at(&mi, "/sys").unwrap();
    assert_eq!(sys.fstype, "sysfs");
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(has(&sys, o), "{o}: {sys:?}");
    }
    // /sys/fs/cgroup: cgroup2 on a unified host; on v1 a tmpfs with one ro mount per controller.
    if cgroup_v2_unified() {
        let cg = mount_at(&mi, "/sys/fs/cgroup").unwrap();
        assert_eq!(cg.fstype, "cgroup2");
        assert!(has(&cg, "ro"), "{cg:?}");
    } else {
        let mem = mount_at(&mi, "/sys/fs/cgroup/memory").unwrap();
        assert_eq!(mem.fstype, "cgroup", "{mem:?}");
        assert!(mem.super_opts.contains(&"memory".to_string()), "{mem:?}");
        assert!(has(&mem, "ro") && has(&mem, "nosuid"), "{mem:?}");
        for c in ["cpu", "cpuset", "pids", "devices", "freezer", "blkio"] {
            assert!(
                parse_mountinfo(&mi)
                    .iter()
                    .any(|m| m.target.starts_with("/sys/fs/cgroup/")
                        && m.super_opts.iter().any(|o| o == c)),
                "no {c} controller mount:\n{mi}"
            );
        }
    }
}

#[test]
fn cgroup_mount_shows_own_cgroup() {
    let rt = setup();
    let id = unique_id("cgmnt");
    let rel = format!("berth-rt-test-{id}");
    let _cleanup = CgroupCleanup::new(&rel);
    let mut b = Bundle::busybox();
    b.config["linux"]["cgroupsPath"] = json!(format!("/{rel}"));
    b.config["linux"]["resources"]["memory"] = json!({"limit": 50331648});
    let file = if cgroup_v2_unified() {
        "/sys/fs/cgroup/memory.max"
    } else {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    };
    b.set_sh(&format!("cat {file}"));
    b.write_config();
    assert_eq!(rt.run_ok(&b, &id), "50331648\n");
}

#[test]
fn proc_sysfs_mqueue_devpts_extra_mounts() {
    let rt = setup();
    let mut b = Bundle::busybox();
    add_mount(
        &mut b,
        json!({"destination": "/proc2", "type": "proc", "source": "proc",
        "options": ["nosuid", "noexec", "nodev"]}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/sys2", "type": "sysfs", "source": "sysfs",
        "options": ["ro", "nosuid", "noexec", "nodev"]}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/mq2", "type": "mqueue", "source": "mqueue",
        "options": ["ro"]}),
    );
    let (out, mi) = run_with_mountinfo(&rt, &mut b, "cat /proc2/1/comm; ls /sys2/class/net");
    assert_eq!(out, "sh\nlo\n");
    let p = mount_at(&mi, "/proc2").unwrap();
    assert_eq!(p.fstype, "proc");
    for o in ["nosuid", "noexec", "nodev"] {
        assert!(p.opts.contains(&o.to_string()), "{p:?}");
    }
    assert_eq!(mount_at(&mi, "/sys2").unwrap().fstype, "sysfs");
    let mq = mount_at(&mi, "/mq2").unwrap();
    assert_eq!(mq.fstype, "mqueue");
    assert!(mq.opts.contains(&"ro".to_string()), "{mq:?}");
}

#[test]
fn bind_propagation_options() {
    let rt = setup();
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let mut b = Bundle::busybox();
    add_mount(
        &mut b,
        json!({"destination": "/shared", "type": "bind", "source": d1.path(),
        "options": ["rbind", "rshared"]}),
    );
    add_mount(
        &mut b,
        json!({"destination": "/private", "type": "bind", "source": d2.path(),
        "options": ["rbind", "rprivate"]}),
    );
    let (_out, mi) = run_with_mountinfo(&rt, &mut b, "true");
    let s = mount_at(&mi, "/shared").unwrap();
    assert!(
        s.optional.iter().any(|o| o.starts_with("shared:")),
        "rshared not applied: {s:?}"
    );
    let p = mount_at(&mi, "/private").unwrap();
    assert!(no_propagation_tag(&p), "rprivate not applied: {p:?}");
}

fn no_propagation_tag(m: &MountInfo) -> bool {
    m.optional
        .iter()
        .all(|o| !o.starts_with("shared:") && !o.starts_with("master:"))
}

#[test]
fn rootfs_propagation_private() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["linux"]["rootfsPropagation"] = json!("private");
    let (_out, mi) = run_with_mountinfo(&rt, &mut b, "true");
    let root = mount_at(&mi, "/").unwrap();
    assert!(no_propagation_tag(&root), "{root:?}");
}

#[test]
fn rootfs_propagation_shared_berth_only() {
    // runc 1.1.5 makes the rootfs' parent mount private and so leaves "/" private here.
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["linux"]["rootfsPropagation"] = json!("shared");
    let (_out, mi) = run_with_mountinfo(&rt, &mut b, "true");
    let root = mount_at(&mi, "/").unwrap();
    assert!(
        root.optional.iter().any(|o| o.starts_with("shared:")),
        "rootfsPropagation shared not applied: {root:?}"
    );
}

#[test]
fn masked_paths() {
    let rt = setup();
    let mut b = Bundle::busybox();
    std::fs::write(b.rootfs().join("etc/secret"), "top-secret\n").unwrap();
    std::fs::create_dir_all(b.rootfs().join("secretdir")).unwrap();
    std::fs::write(b.rootfs().join("secretdir/f"), "x").unwrap();
    b.config["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .extend([
            json!("/etc/secret"),
            json!("/secretdir"),
            json!("/does/not/exist"),
        ]);
    let (out, mi) = run_with_mountinfo(
        &rt,
        &mut b,
        "wc -c < /proc/timer_list; wc -c < /etc/secret; ls /secretdir | wc -l; \
         ls /sys/firmware 2>/dev/null | wc -l; \
         touch /secretdir/new 2>/dev/null || echo ro",
    );
    assert_eq!(out, "0\n0\n0\n0\nro\n");
    // (timer_list is non-empty on the host.)
    assert!(!std::fs::read("/proc/timer_list").unwrap().is_empty());
    assert!(
        mount_at(&mi, "/proc/timer_list").is_some(),
        "/proc/timer_list not masked:\n{mi}"
    );
    let sd = mount_at(&mi, "/secretdir").unwrap();
    assert!(sd.opts.contains(&"ro".to_string()), "{sd:?}");
    // Host files untouched.
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("etc/secret")).unwrap(),
        "top-secret\n"
    );
}

#[test]
fn readonly_paths() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["root"]["readonly"] = json!(false);
    std::fs::create_dir_all(b.rootfs().join("data")).unwrap();
    b.config["linux"]["readonlyPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/data"));
    let (out, mi) = run_with_mountinfo(
        &rt,
        &mut b,
        "echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo sys-ro; \
         touch /data/x 2>/dev/null || echo data-ro; touch /other && echo other-rw",
    );
    assert_eq!(out, "sys-ro\ndata-ro\nother-rw\n");
    // Default readonlyPaths that exist on this host, plus /data.
    for p in [
        "/proc/sys",
        "/proc/sysrq-trigger",
        "/proc/irq",
        "/proc/bus",
        "/proc/fs",
        "/data",
    ] {
        if p != "/data" && !Path::new(p).exists() {
            continue;
        }
        let m = mount_at(&mi, p).unwrap_or_else(|| panic!("{p} not remounted:\n{mi}"));
        assert!(m.opts.contains(&"ro".to_string()), "{p}: {m:?}");
    }
}

/// `ls -ln /dev` line for `name`, split on whitespace.
fn dev_line<'a>(ls: &'a str, name: &str) -> Vec<&'a str> {
    ls.lines()
        .find(|l| l.split_whitespace().any(|w| w == name))
        .unwrap_or_else(|| panic!("/dev/{name} missing:\n{ls}"))
        .split_whitespace()
        .collect()
}

#[test]
fn default_devices() {
    let rt = setup();
    let b = Bundle::sh("ls -ln /dev; echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c");
    let out = rt.run_ok(&b, &unique_id("devs"));
    for (name, maj, min) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let l = dev_line(&out, name);
        assert_eq!(l[0], "crw-rw-rw-", "{name}: {l:?}");
        assert_eq!((l[2], l[3]), ("0", "0"), "{name}: {l:?}");
        assert_eq!(l[4], format!("{maj},"), "{name}: {l:?}");
        assert_eq!(l[5], min.to_string(), "{name}: {l:?}");
    }
    let ptmx = dev_line(&out, "ptmx");
    assert!(
        ptmx[0].starts_with('l') && ptmx.last() == Some(&"pts/ptmx"),
        "{ptmx:?}"
    );
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let l = dev_line(&out, link);
        assert_eq!(l.last(), Some(&target), "{link}: {l:?}");
    }
    for d in ["pts", "shm", "mqueue"] {
        assert!(dev_line(&out, d)[0].starts_with('d'));
    }
    // No host devices leak in.
    assert!(
        !out.lines()
            .any(|l| l.ends_with(" vda") || l.ends_with(" kmsg")),
        "{out}"
    );
    assert!(out.ends_with("null-ok\n4\n4\n"), "{out}");
}

#[test]
fn linux_devices_created_with_mode_and_owner() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["linux"]["devices"] = json!([
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 416, "uid": 1000, "gid": 100},
        {"path": "/dev/sub/myzero", "type": "c", "major": 1, "minor": 5, "fileMode": 438, "uid": 0, "gid": 0}
    ]);
    b.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}
    ]);
    // Root in the container lacks CAP_DAC_OVERRIDE: mynull (0640, 1000:100) is not writable by it.
    b.set_sh(
        "ls -ln /dev/mynull /dev/sub/myzero; echo hi > /dev/mynull 2>/dev/null || echo w-denied; \
         echo hi > /dev/sub/myzero && echo w-ok; head -c 3 /dev/sub/myzero | wc -c",
    );
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("ldev"));
    let l: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        &l[..6],
        ["crw-r-----", "1", "1000", "100", "1,", "3"],
        "{out}"
    );
    let l: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&l[..6], ["crw-rw-rw-", "1", "0", "0", "1,", "5"], "{out}");
    assert!(out.ends_with("w-denied\nw-ok\n3\n"), "{out}");
}

#[test]
fn mount_destination_must_be_absolute_or_relative_is_in_rootfs() {
    // runtime-spec: destination should be absolute; a relative one is interpreted relative to
    // "/" in the container. Either way it must land inside the rootfs.
    let rt = setup();
    let mut b = Bundle::busybox();
    add_mount(
        &mut b,
        json!({"destination": "reltmp", "type": "tmpfs", "source": "tmpfs"}),
    );
    b.set_sh("cat /proc/self/mountinfo");
    b.write_config();
    let out = rt.run(&b, &unique_id("relmnt"));
    if out.status.success() {
        assert!(
            mount_at(&stdout(&out), "/reltmp").is_some(),
            "{}",
            stdout(&out)
        );
    }
    assert!(!PathBuf::from("reltmp").exists());
}
