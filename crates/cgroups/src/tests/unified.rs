//! The cgroup v2 code paths, exercised on this host's cgroup2 mount
//! (/sys/fs/cgroup/unified on a hybrid host, where only hugetlb is
//! available) through a v2-only handle.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::*;
use crate::devices_bpf;
use crate::error::CgroupError;

fn v2_guard(tag: &str) -> Guard {
    let path = format!("/{}", unique(tag));
    Guard::create(Cgroup::for_v2_mount(&v2_mountpoint(), Path::new(&path)).unwrap())
}

fn has_controller(g: &Guard, c: &str) -> bool {
    crate::v2::controllers(g.cg.v2_dir().unwrap())
        .unwrap()
        .iter()
        .any(|x| x == c)
}

#[test]
fn v2_create_join_and_hugetlb() {
    let mut g = v2_guard("v2huge");
    let dir = g.cg.v2_dir().unwrap().to_owned();
    // create() enabled the root's controllers for the new cgroup.
    let root = crate::v2::controllers(&v2_mountpoint()).unwrap();
    assert_eq!(crate::v2::controllers(&dir).unwrap(), root);
    let pid = g.spawn_in("exec sleep 100");
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let name = dir.file_name().unwrap().to_str().unwrap();
    assert!(
        own.lines()
            .any(|l| l.starts_with("0::/") && l.ends_with(name)),
        "{own}"
    );
    assert_eq!(g.cg.pids().unwrap(), vec![pid]);

    g.cg.apply(&res(
        r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304},
                                          {"pageSize": "1GB", "limit": -1}]}"#,
    ))
    .unwrap();
    assert_eq!(read(&dir, "hugetlb.2MB.max"), "4194304");
    assert_eq!(read(&dir, "hugetlb.2MB.rsvd.max"), "4194304");
    // unified key/values are written as they are.
    g.cg.apply(&res(r#"{"unified": {"hugetlb.2MB.max": "6291456"}}"#))
        .unwrap();
    assert_eq!(read(&dir, "hugetlb.2MB.max"), "6291456");
    let e =
        g.cg.apply(&res(r#"{"unified": {"../hugetlb.2MB.max": "1"}}"#))
            .unwrap_err();
    assert!(matches!(e, CgroupError::Invalid { .. }), "{e}");
    let st = g.cg.stats().unwrap();
    assert_eq!(st.hugetlb["2MB"].usage, 0);
    assert!(st.cpu.usage.total < 1 << 40);

    if !has_controller(&g, "memory") {
        // Missing controllers are named, whether asked through the spec's
        // fields or through unified keys.
        let e =
            g.cg.apply(&res(r#"{"memory": {"limit": 1048576}}"#))
                .unwrap_err();
        assert!(
            matches!(&e, CgroupError::ControllerMissing { controller, .. } if controller == "memory"),
            "{e}"
        );
        let e =
            g.cg.apply(&res(r#"{"unified": {"memory.high": "1048576"}}"#))
                .unwrap_err();
        assert!(
            matches!(&e, CgroupError::ControllerMissing { controller, .. } if controller == "memory"),
            "{e}"
        );
        assert!(e.to_string().contains("memory.high"), "{e}");
        assert!(matches!(
            g.cg.oom_kill_count(),
            Err(CgroupError::ControllerMissing { .. })
        ));
    }
}

/// Every controller of a pure cgroup v2 host, applied and read back, then updated. On a hybrid
/// host (no memory/cpu/pids/io controller on cgroup2) the same settings fail with errors naming
/// the missing controller, tested in `v2_create_join_and_hugetlb`.
#[test]
fn v2_apply_and_update_read_back() {
    let mut g = v2_guard("v2apply");
    let full = ["memory", "cpu", "cpuset", "pids", "io"]
        .iter()
        .all(|c| has_controller(&g, c));
    if !full {
        let e = g.cg.apply(&res(r#"{"pids": {"limit": 100}}"#)).unwrap_err();
        assert!(
            matches!(&e, CgroupError::ControllerMissing { controller, .. } if controller == "pids"),
            "{e}"
        );
        return;
    }
    let dir = g.cg.v2_dir().unwrap().to_owned();
    let _pid = g.spawn_in("exec sleep 100");
    g.cg.apply(&res(r#"{
        "memory": {"limit": 67108864, "swap": 134217728, "reservation": 33554432},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 100},
        "unified": {"memory.high": "60000000"}
    }"#))
        .unwrap();
    assert_eq!(read(&dir, "memory.max"), "67108864");
    // v2's swap limit is swap alone: memsw 128 MiB - memory 64 MiB.
    assert_eq!(read(&dir, "memory.swap.max"), "67108864");
    assert_eq!(read(&dir, "memory.low"), "33554432");
    // unified keys are written after the spec's fields.
    assert_eq!(read(&dir, "memory.high"), "59998208");
    assert_eq!(read(&dir, "cpu.max"), "50000 100000");
    // shares 512 -> weight 1 + ((512 - 2) * 9999) / 262142 = 20.
    assert_eq!(read(&dir, "cpu.weight"), "20");
    assert_eq!(read(&dir, "cpuset.cpus"), "0");
    assert_eq!(read(&dir, "cpuset.mems"), "0");
    assert_eq!(read(&dir, "pids.max"), "100");

    g.cg.update(&res(
        r#"{"memory": {"limit": 33554432, "swap": 33554432}, "cpu": {"quota": -1}, "pids": {"limit": 200}}"#,
    ))
    .unwrap();
    assert_eq!(read(&dir, "memory.max"), "33554432");
    assert_eq!(read(&dir, "memory.swap.max"), "0");
    assert!(
        read(&dir, "cpu.max").starts_with("max "),
        "{}",
        read(&dir, "cpu.max")
    );
    assert_eq!(read(&dir, "pids.max"), "200");
    let st = g.cg.stats().unwrap();
    assert!(st.memory.usage.usage > 0, "{st:?}");
    assert_eq!(st.pids.current, 1, "{st:?}");
}

#[test]
fn v2_freeze_thaw() {
    let mut g = v2_guard("v2frz");
    let dir = g.cg.v2_dir().unwrap().to_owned();
    let pid = g.spawn_in("while :; do :; done");
    wait_running(pid);
    g.cg.freeze().unwrap();
    assert!(g.cg.is_frozen().unwrap());
    assert_eq!(read(&dir, "cgroup.freeze"), "1");
    assert!(read(&dir, "cgroup.events").contains("frozen 1"));
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cpu_ticks(pid), t0, "a frozen process used CPU");
    g.cg.thaw().unwrap();
    assert!(!g.cg.is_frozen().unwrap());
    wait_running(pid);
}

#[test]
fn v2_kill_all_and_destroy() {
    let mut g = v2_guard("v2kill");
    let a = g.spawn_in("sleep 100 & exec sleep 100");
    let dir = g.cg.v2_dir().unwrap().to_owned();
    // A child cgroup: pids() walks it, destroy() removes it.
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let b = g.spawn_in("exec sleep 100");
    // No internal processes in v2 below the root: only move b if allowed.
    let moved = std::fs::write(sub.join("cgroup.procs"), b.to_string()).is_ok();
    for _ in 0..100 {
        if g.cg.pids().unwrap().len() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let pids = g.cg.pids().unwrap();
    assert_eq!(pids.len(), 3, "{pids:?} (moved to sub: {moved})");
    g.cg.kill_all(Signal::SIGTERM).unwrap();
    let (st, _) = g.wait(b);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGTERM)
    );
    assert!(!g.cg.is_frozen().unwrap());
    let c = g.spawn_in("exec sleep 100");
    g.cg.kill_all(Signal::SIGKILL).unwrap();
    for p in [a, c] {
        let (st, _) = g.wait(p);
        assert!(!st.success());
    }
    for _ in 0..100 {
        if read(&dir, "cgroup.events").contains("populated 0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    g.cg.destroy().unwrap();
    assert!(!dir.exists());
    g.cg.destroy().unwrap();
}

/// Runs a script in a fresh child of `g` and returns its output.
fn run_in(g: &mut Guard, script: &str) -> String {
    let pid = g.spawn_in(script);
    g.wait(pid).1
}

#[test]
fn v2_bpf_device_filter_is_enforced_and_replaced() {
    let mut g = v2_guard("v2bpf");
    let dir = g.cg.v2_dir().unwrap().to_owned();
    g.cg.apply(&res(r#"{"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}
    ]}"#))
        .unwrap();
    assert_eq!(devices_bpf::attached_count(&dir).unwrap(), 1);
    let script = "cat /dev/null && echo null-ok\n\
                  head -c1 /dev/zero >/dev/null && echo zero-read-ok\n\
                  (echo x > /dev/zero) 2>/dev/null || echo zero-write-denied\n\
                  head -c1 /dev/full >/dev/null 2>&1 || echo full-denied";
    assert_eq!(
        run_in(&mut g, script),
        "null-ok\nzero-read-ok\nzero-write-denied\nfull-denied\n"
    );
    // update replaces the program: now everything but /dev/full writes.
    g.cg.update(&res(r#"{"devices": [
        {"allow": true, "access": "rwm"},
        {"allow": false, "type": "c", "major": 1, "minor": 7, "access": "w"}
    ]}"#))
        .unwrap();
    assert_eq!(devices_bpf::attached_count(&dir).unwrap(), 1);
    let script = "(: > /dev/zero) && echo zero-write-ok\n\
                  head -c1 /dev/full >/dev/null && echo full-read-ok\n\
                  (: > /dev/full) 2>/dev/null || echo full-write-denied";
    assert_eq!(
        run_in(&mut g, script),
        "zero-write-ok\nfull-read-ok\nfull-write-denied\n"
    );
}
