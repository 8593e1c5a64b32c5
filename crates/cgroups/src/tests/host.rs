//! The public API on this host's real layout (hybrid: v1 controllers plus
//! hugetlb on /sys/fs/cgroup/unified). Tests needing the hybrid layout say
//! so and return early elsewhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::*;
use crate::error::CgroupError;

fn hybrid() -> bool {
    if host_layout() == Layout::Hybrid {
        return true;
    }
    eprintln!("skipped: this test needs a hybrid cgroup host");
    false
}

fn new_guard(tag: &str) -> Guard {
    let name = format!("/{}", unique(tag));
    Guard::create(Cgroup::new(Some(Path::new(&name)), "unused").unwrap())
}

fn v1(g: &Guard, ctrl: &str) -> PathBuf {
    g.cg.v1_dir(ctrl).unwrap().to_owned()
}

#[test]
fn new_resolves_paths_without_side_effects() {
    let id = unique("new");
    let cg = Cgroup::new(None, &id).unwrap();
    assert_eq!(cg.layout(), crate::detect_layout().unwrap());
    let mounts = cg.mounts();
    assert!(!mounts.is_empty());
    for m in &mounts {
        assert!(m.host_path.ends_with(Path::new("berth").join(&id)), "{m:?}");
        assert!(!m.host_path.exists(), "new() must not create {m:?}");
    }
    // Relative paths start at our own cgroup in each hierarchy.
    let own =
        crate::layout::parse_proc_cgroup(&std::fs::read_to_string("/proc/self/cgroup").unwrap());
    let rel = Cgroup::new(Some(Path::new("sub/x")), &id).unwrap();
    for d in &rel.v1 {
        let line = own
            .iter()
            .find(|l| d.controllers.iter().all(|c| l.controllers.contains(c)))
            .unwrap();
        let expect = d
            .mountpoint
            .join(line.path.trim_start_matches('/'))
            .join("sub/x");
        assert_eq!(d.path, expect);
    }
    // Bad ids and paths that reach the root or climb above it.
    assert!(matches!(
        Cgroup::new(None, "a/b"),
        Err(CgroupError::InvalidPath { .. })
    ));
    assert!(matches!(
        Cgroup::new(None, ""),
        Err(CgroupError::InvalidPath { .. })
    ));
    assert!(matches!(
        Cgroup::new(Some(Path::new("/")), "x"),
        Err(CgroupError::InvalidPath { .. })
    ));
    assert!(matches!(
        Cgroup::new(Some(Path::new("/a/../..")), "x"),
        Err(CgroupError::InvalidPath { .. })
    ));
}

#[test]
fn handle_round_trips_through_json() {
    let cg = Cgroup::new(Some(Path::new("/x/y")), "id").unwrap();
    let json = serde_json::to_string(&cg).unwrap();
    let back: Cgroup = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cg);
    assert_eq!(back.mounts(), cg.mounts());
}

#[test]
fn mounts_describe_every_hierarchy() {
    let cg = Cgroup::new(Some(Path::new("/m/t")), "id").unwrap();
    let mounts = cg.mounts();
    let mounted = crate::layout::read_mounts().unwrap();
    assert_eq!(
        mounts.len(),
        mounted.v1.len() + usize::from(mounted.v2.is_some())
    );
    if hybrid() {
        let mem = mounts.iter().find(|m| m.name == "memory").unwrap();
        assert_eq!(mem.host_path, Path::new("/sys/fs/cgroup/memory/m/t"));
        assert_eq!(mem.mountpoint_rel, Path::new("memory"));
        assert!(!mem.cgroup2 && mem.symlinks.is_empty());
        assert!(mounts
            .iter()
            .any(|m| m.name == "systemd" && m.controllers == ["name=systemd"]));
        let u = mounts.iter().find(|m| m.cgroup2).unwrap();
        assert_eq!(
            (u.name.as_str(), u.mountpoint_rel.as_path()),
            ("unified", Path::new("unified"))
        );
        assert_eq!(u.host_path, Path::new("/sys/fs/cgroup/unified/m/t"));
    }
    // Co-mounted controllers get symlinks.
    let info = "1 0 0:1 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                2 1 0:2 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
    let m = crate::layout::parse_mountinfo(info).unwrap();
    let cg = Cgroup::from_mounts(&m, Path::new("/c"), None).unwrap();
    let mounts = cg.mounts();
    assert_eq!(mounts[0].name, "cpu,cpuacct");
    assert_eq!(mounts[0].symlinks, vec!["cpu", "cpuacct"]);
    assert_eq!(
        mounts[0].host_path,
        Path::new("/sys/fs/cgroup/cpu,cpuacct/c")
    );
}

#[test]
fn hybrid_apply_reads_back() {
    if !hybrid() {
        return;
    }
    let mut g = new_guard("apply");
    let pid = g.spawn_in("exec sleep 100");
    g.cg.apply(&res(r#"{
        "memory": {"limit": 67108864, "swap": 134217728, "reservation": 33554432,
                   "swappiness": 10, "disableOOMKiller": true, "useHierarchy": true},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000, "idle": 0,
                "realtimePeriod": 1000000, "realtimeRuntime": 10000,
                "cpus": "0", "mems": "0"},
        "pids": {"limit": 100},
        "blockIO": {"weight": 300,
                    "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 500}]}
    }"#))
        .unwrap();
    let mem = v1(&g, "memory");
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "67108864");
    assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "134217728");
    assert_eq!(read(&mem, "memory.soft_limit_in_bytes"), "33554432");
    assert_eq!(read(&mem, "memory.swappiness"), "10");
    assert!(read(&mem, "memory.oom_control").contains("oom_kill_disable 1"));
    let cpu = v1(&g, "cpu");
    assert_eq!(read(&cpu, "cpu.shares"), "512");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
    assert_eq!(read(&cpu, "cpu.cfs_burst_us"), "1000");
    assert_eq!(read(&cpu, "cpu.rt_period_us"), "1000000");
    assert_eq!(read(&cpu, "cpu.rt_runtime_us"), "10000");
    let cpuset = v1(&g, "cpuset");
    assert_eq!(read(&cpuset, "cpuset.cpus"), "0");
    assert_eq!(read(&cpuset, "cpuset.mems"), "0");
    assert_eq!(read(&v1(&g, "pids"), "pids.max"), "100");
    let blkio = v1(&g, "blkio");
    for weight_file in ["blkio.weight", "blkio.bfq.weight"] {
        if blkio.join(weight_file).exists() {
            assert_eq!(
                read(&blkio, weight_file).trim_start_matches("default "),
                "300"
            );
        }
    }
    assert_eq!(
        read(&blkio, "blkio.throttle.read_bps_device"),
        "254:0 1048576"
    );
    assert_eq!(
        read(&blkio, "blkio.throttle.write_iops_device"),
        "254:0 500"
    );
    // The process is in every hierarchy, including name=systemd and unified.
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let name =
        g.cg.v1_dir("memory")
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
    assert_eq!(
        cg.lines().filter(|l| l.ends_with(&name)).count(),
        g.cg.mounts().len(),
        "{cg}"
    );

    // update: lower memory below the old memsw (write order matters), and
    // remove the CPU quota.
    g.cg.update(&res(r#"{"memory": {"limit": 33554432, "swap": 50331648,
                                    "disableOOMKiller": false},
                         "cpu": {"quota": -1}}"#))
        .unwrap();
    assert!(read(&mem, "memory.oom_control").contains("oom_kill_disable 0"));
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "33554432");
    assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "50331648");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "-1");
    // An idle group takes no shares; leaving idle takes them again.
    g.cg.update(&res(r#"{"cpu": {"idle": 1, "shares": 256}}"#))
        .unwrap();
    assert_eq!(read(&cpu, "cpu.idle"), "1");
    g.cg.update(&res(r#"{"cpu": {"idle": 0, "shares": 256}}"#))
        .unwrap();
    assert_eq!(
        (
            read(&cpu, "cpu.idle").as_str(),
            read(&cpu, "cpu.shares").as_str()
        ),
        ("0", "256")
    );
    // Raising both above the old memsw needs the other order.
    g.cg.update(&res(
        r#"{"memory": {"limit": 100663296, "swap": 201326592}}"#,
    ))
    .unwrap();
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "100663296");
    assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "201326592");
    // Unlimited memory implies unlimited memsw.
    g.cg.update(&res(r#"{"memory": {"limit": -1}}"#)).unwrap();
    assert_eq!(
        read(&mem, "memory.memsw.limit_in_bytes"),
        read(&mem, "memory.limit_in_bytes")
    );
    assert!(read(&mem, "memory.limit_in_bytes").parse::<u64>().unwrap() > 1 << 60);
}

#[test]
fn hybrid_devices_v1() {
    if !hybrid() {
        return;
    }
    let mut g = new_guard("dev");
    g.cg.apply(&res(r#"{"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"},
        {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
        {"allow": false, "type": "c", "major": 1, "minor": 7, "access": "rw"}
    ]}"#))
        .unwrap();
    let dev = v1(&g, "devices");
    assert_eq!(read(&dev, "devices.list"), "c 1:3 rwm\nc 1:5 r\nc 1:7 m");
    let pid = g.spawn_in(
        "cat /dev/null && echo null-ok\n\
         head -c1 /dev/zero >/dev/null && echo zero-read-ok\n\
         (echo x > /dev/zero) 2>/dev/null || echo zero-write-denied\n\
         head -c1 /dev/full >/dev/null 2>&1 || echo full-denied",
    );
    let (st, out) = g.wait(pid);
    assert!(st.success());
    assert_eq!(
        out,
        "null-ok\nzero-read-ok\nzero-write-denied\nfull-denied\n"
    );
    // update by difference: /dev/zero gains write, /dev/full goes.
    g.cg.update(&res(r#"{"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rw"}
    ]}"#))
        .unwrap();
    assert_eq!(read(&dev, "devices.list"), "c 1:3 rwm\nc 1:5 rw");
    // Allow-all with one hole.
    g.cg.update(&res(r#"{"devices": [
        {"allow": true, "access": "rwm"},
        {"allow": false, "type": "c", "major": 1, "minor": 7, "access": "rwm"}
    ]}"#))
        .unwrap();
    assert_eq!(read(&dev, "devices.list"), "a *:* rwm");
    let pid = g.spawn_in("head -c1 /dev/full >/dev/null 2>&1 || echo full-denied; echo x > /dev/zero && echo zero-ok");
    let (_, out) = g.wait(pid);
    assert_eq!(out, "full-denied\nzero-ok\n");
}

#[test]
fn hybrid_hugetlb_lands_on_unified() {
    if !hybrid() {
        return;
    }
    let g = new_guard("huge");
    g.cg.apply(&res(
        r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 8388608}]}"#,
    ))
    .unwrap();
    let u = g.cg.v2_dir().unwrap();
    assert!(u.starts_with("/sys/fs/cgroup/unified"));
    assert_eq!(read(u, "hugetlb.2MB.max"), "8388608");
    assert_eq!(read(u, "hugetlb.2MB.rsvd.max"), "8388608");
    let e =
        g.cg.apply(&res(
            r#"{"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("3MB") && e.contains("not supported"), "{e}");
    let e =
        g.cg.apply(&res(
            r#"{"hugepageLimits": [{"pageSize": "../x", "limit": 1}]}"#,
        ))
        .unwrap_err();
    assert!(matches!(e, CgroupError::Invalid { .. }), "{e}");
    let st = g.cg.stats().unwrap();
    assert_eq!(st.hugetlb["2MB"].usage, 0);
    assert!(st.hugetlb.contains_key("1GB"));
}

#[test]
fn hybrid_errors_are_clear_and_write_nothing() {
    if !hybrid() {
        return;
    }
    let mut g = new_guard("err");
    let mem = v1(&g, "memory");
    let before = read(&mem, "memory.limit_in_bytes");
    let e = g
        .cg
        .apply(&res(r#"{"memory": {"limit": 1048576}, "unified": {"memory.high": "1M", "cpu.weight": "50"}}"#))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "cgroup v2 'unified' resources are not supported on a cgroup v1 host (hybrid layout): cpu.weight, memory.high"
    );
    let e =
        g.cg.apply(&res(
            r#"{"memory": {"limit": 1048576}, "network": {"classID": 1048577}}"#,
        ))
        .unwrap_err();
    assert!(
        matches!(&e, CgroupError::ControllerMissing { controller, .. } if controller == "net_cls"),
        "{e}"
    );
    assert!(
        e.to_string().contains("linux.resources.network.classID"),
        "{e}"
    );
    let e =
        g.cg.apply(&res(
            r#"{"network": {"priorities": [{"name": "eth0", "priority": 5}]}}"#,
        ))
        .unwrap_err();
    assert!(e.to_string().contains("net_prio"), "{e}");
    let e =
        g.cg.apply(&res(r#"{"rdma": {"mlx4_0": {"hcaHandles": 2}}}"#))
            .unwrap_err();
    assert!(e.to_string().contains("'rdma'"), "{e}");
    assert_eq!(
        read(&mem, "memory.limit_in_bytes"),
        before,
        "a refused apply wrote memory"
    );

    let invalid = [
        r#"{"memory": {"swappiness": 101}}"#,
        r#"{"memory": {"limit": -5}}"#,
        r#"{"cpu": {"shares": 1}}"#,
        r#"{"devices": [{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rx"}]}"#,
    ];
    for json in invalid {
        let e = g.cg.apply(&res(json)).unwrap_err();
        assert!(matches!(e, CgroupError::Invalid { .. }), "{json}: {e}");
    }
    // Kernel memory limits: honoured by old kernels, refused clearly by new.
    match g.cg.apply(&res(r#"{"memory": {"kernel": 104857600}}"#)) {
        Ok(()) => assert_eq!(read(&mem, "memory.kmem.limit_in_bytes"), "104857600"),
        Err(e) => assert!(
            e.to_string().contains("linux.resources.memory.kernel"),
            "{e}"
        ),
    }
    // A limit below the usage with checkBeforeUpdate.
    g.spawn_in("exec sleep 100");
    for _ in 0..100 {
        if read(&mem, "memory.usage_in_bytes") != "0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let e =
        g.cg.apply(&res(
            r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#,
        ))
        .unwrap_err();
    assert!(e.to_string().contains("checkBeforeUpdate"), "{e}");
    assert_eq!(read(&mem, "memory.limit_in_bytes"), before);
    // Before create() / after destroy(): the missing cgroup is named.
    let gone = Cgroup::new(Some(Path::new(&format!("/{}", unique("gone")))), "x").unwrap();
    let e = gone
        .apply(&res(r#"{"pids": {"limit": 5}}"#))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cgroup directory") && e.contains("pids"), "{e}");
}

#[test]
fn hybrid_freeze_thaw() {
    if !hybrid() {
        return;
    }
    let mut g = new_guard("frz");
    let pid = g.spawn_in("while :; do :; done");
    wait_running(pid);
    assert!(!g.cg.is_frozen().unwrap());
    g.cg.freeze().unwrap();
    assert!(g.cg.is_frozen().unwrap());
    assert_eq!(read(&v1(&g, "freezer"), "freezer.state"), "FROZEN");
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cpu_ticks(pid), t0, "a frozen process used CPU");
    g.cg.thaw().unwrap();
    assert!(!g.cg.is_frozen().unwrap());
    wait_running(pid);
}

#[test]
fn hybrid_pids_and_kill_all() {
    if !hybrid() {
        return;
    }
    let mut g = new_guard("kill");
    let a = g.spawn_in("sleep 100 & sleep 100 & wait");
    let b = g.spawn_in("exec sleep 100");
    // A nested cgroup counts too.
    let sub = v1(&g, "freezer").join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("cgroup.procs"), b.to_string()).unwrap();
    let mut pids = Vec::new();
    for _ in 0..100 {
        pids = g.cg.pids().unwrap();
        if pids.len() >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(pids.len(), 4, "{pids:?}");
    assert!(pids.contains(&a) && pids.contains(&b));
    // SIGTERM goes through freeze, signal, thaw.
    g.cg.kill_all(Signal::SIGTERM).unwrap();
    let (st, _) = g.wait(b);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGTERM)
    );
    assert!(!g.cg.is_frozen().unwrap());
    // SIGKILL (cgroup.kill on the unified tree) gets the rest.
    let c = g.spawn_in("exec sleep 100");
    g.cg.kill_all(Signal::SIGKILL).unwrap();
    let (st, _) = g.wait(c);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL)
    );
    let (st, _) = g.wait(a);
    assert!(!st.success());
    for _ in 0..100 {
        if g.cg.pids().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(g.cg.pids().unwrap(), Vec::<i32>::new());
    // destroy() removes the nested cgroup and every hierarchy's directory.
    g.cg.destroy().unwrap();
    for m in g.cg.mounts() {
        assert!(!m.host_path.exists(), "{} remains", m.host_path.display());
    }
    g.cg.destroy().unwrap();
    // Nothing to kill in a cgroup that does not exist.
    g.cg.kill_all(Signal::SIGTERM).unwrap();
}

#[test]
fn hybrid_stats_are_plausible() {
    if !hybrid() {
        return;
    }
    let mut g = new_guard("stats");
    g.cg.apply(&res(
        r#"{"memory": {"limit": 268435456}, "pids": {"limit": 50},
                        "cpu": {"quota": 200000, "period": 100000}}"#,
    ))
    .unwrap();
    let pid = g.spawn_in("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 100");
    wait_running(pid);
    let st = g.cg.stats().unwrap();
    assert!(st.pids.current >= 1);
    assert_eq!(st.pids.limit, 50);
    assert!(st.memory.usage.usage > 0);
    assert_eq!(st.memory.usage.limit, 268_435_456);
    assert!(!st.memory.raw.is_empty());
    assert!(st.cpu.usage.total > 0);
    assert_eq!(st.cpu.usage.percpu.len(), st.cpu.usage.percpu_user.len());
    assert!(!st.cpuset.cpus.is_empty());
    assert!(st.hugetlb.contains_key("2MB"));
    let json = serde_json::to_value(&st).unwrap();
    for key in [
        "cpu",
        "cpuset",
        "memory",
        "pids",
        "blkio",
        "hugetlb",
        "intel_rdt",
        "network_interfaces",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    assert!(json["memory"]["usage"]["usage"].as_u64().unwrap() > 0);
    assert_eq!(g.cg.oom_kill_count().unwrap(), 0);
}

#[test]
fn hybrid_oom_kill_is_counted() {
    if !hybrid() {
        return;
    }
    let mut g = new_guard("oom");
    g.cg.apply(&res(r#"{"memory": {"limit": 16777216, "swap": 16777216}}"#))
        .unwrap();
    // Grows a shell variable until the limit kills the shell.
    let pid = g.spawn_in("x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while :; do x=$x$x; done");
    let (st, _) = g.wait(pid);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL)
    );
    let n = g.cg.oom_kill_count().unwrap();
    assert!(n >= 1);
    // The same count through the reader that skips mountinfo.
    let rel = v1(&g, "memory")
        .strip_prefix("/sys/fs/cgroup/memory")
        .unwrap()
        .to_owned();
    assert_eq!(
        crate::oom_kill_count_at(&Path::new("/").join(rel), "unused").unwrap(),
        n
    );
}
