//! Namespaces: each type created (inode differs from the host's), shared when absent, joined by
//! path; hostname/domainname; sysctl; user namespace mappings; cgroup namespace.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_runtime_tests::*;
use serde_json::json;

fn setup() -> Runtime {
    require_root_and_tools(&["unshare"]);
    Runtime::new()
}

/// `name -> link` for every `/proc/self/ns/*` printed as `name link` lines.
fn parse_ns(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

const PRINT_NS: &str =
    "for n in cgroup ipc mnt net pid uts user; do echo $n $(readlink /proc/self/ns/$n); done";

fn host_ns(name: &str) -> String {
    ns_link(format!("/proc/self/ns/{name}"))
}

fn user_ns_config(b: &mut Bundle) {
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
}

#[test]
fn default_namespaces_are_new_and_others_shared() {
    let rt = setup();
    let b = Bundle::sh(PRINT_NS);
    let ns = parse_ns(&rt.run_ok(&b, &unique_id("ns")));
    for n in ["ipc", "mnt", "net", "pid", "uts"] {
        assert_ne!(ns[n], host_ns(n), "{n} namespace not new");
        assert!(ns[n].starts_with(&format!("{n}:[")), "{ns:?}");
    }
    // Not requested: shared with the host (the runtime's own).
    assert_eq!(ns["user"], host_ns("user"));
    assert_eq!(ns["cgroup"], host_ns("cgroup"));
}

#[test]
fn all_namespace_types_created() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.set_sh(PRINT_NS);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    user_ns_config(&mut b);
    b.write_config();
    let ns = parse_ns(&rt.run_ok(&b, &unique_id("nsall")));
    for n in ["cgroup", "ipc", "mnt", "net", "pid", "uts", "user"] {
        assert!(ns[n].starts_with(&format!("{n}:[")), "{ns:?}");
        assert_ne!(ns[n], host_ns(n), "{n} namespace not new");
    }
}

#[test]
fn pid_namespace_init_is_pid_1() {
    let rt = setup();
    let b = Bundle::sh("echo $$; exec ps -o pid,comm");
    let out = rt.run_ok(&b, &unique_id("pid1"));
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["1"], "{out}");
    // Only the container's init (the shell, now exec'd into ps) is visible.
    assert_eq!(
        lines[1..],
        [vec!["PID", "COMMAND"], vec!["1", "ps"]],
        "{out}"
    );
}

#[test]
fn network_namespace_has_only_loopback() {
    let rt = setup();
    let b = Bundle::sh("ls /sys/class/net");
    assert_eq!(rt.run_ok(&b, &unique_id("net")), "lo\n");
}

#[test]
fn time_namespace_created_berth_only() {
    // runc 1.1.5 does not know the "time" namespace (runtime-spec 1.2); berth-runtime must.
    let rt = setup();
    let mut b = Bundle::busybox();
    b.set_sh("readlink /proc/self/ns/time; cut -d' ' -f1 /proc/uptime");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    b.config["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 0, "nanosecs": 0},
        "boottime": {"secs": 86400000, "nanosecs": 0}});
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("timens"));
    let mut l = out.lines();
    let link = l.next().unwrap();
    assert!(link.starts_with("time:["), "{out}");
    assert_ne!(link, host_ns("time"));
    let uptime: f64 = l.next().unwrap().parse().unwrap();
    assert!(uptime >= 86_400_000.0, "boottime offset not applied: {out}");
}

#[test]
fn hostname_set_in_new_uts() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.set_sh("hostname; cat /proc/sys/kernel/hostname");
    b.config["hostname"] = json!("box-one");
    b.write_config();
    let host_before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(rt.run_ok(&b, &unique_id("host")), "box-one\nbox-one\n");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_before
    );
}

#[test]
fn domainname_berth_only() {
    // `domainname` is runtime-spec 1.2; runc 1.1.5 ignores it.
    let rt = setup();
    let mut b = Bundle::busybox();
    b.set_sh("cat /proc/sys/kernel/domainname");
    b.config["hostname"] = json!("box-one");
    b.config["domainname"] = json!("example.test");
    b.write_config();
    let host_before = std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    assert_eq!(rt.run_ok(&b, &unique_id("domain")), "example.test\n");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap(),
        host_before
    );
}

#[test]
fn sysctl_in_new_namespaces() {
    let rt = setup();
    let host_fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_shmmax = std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let want_fwd = if host_fwd.trim() == "1" { "0" } else { "1" };
    let mut b = Bundle::busybox();
    b.set_sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax");
    b.config["linux"]["sysctl"] = json!({
        "net.ipv4.ip_forward": want_fwd,
        "kernel.shmmax": "123456789"
    });
    b.write_config();
    assert_eq!(
        rt.run_ok(&b, &unique_id("sysctl")),
        format!("{want_fwd}\n123456789\n")
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
        host_shmmax
    );
}

#[test]
fn sysctl_for_host_namespace_rejected() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.set_sh("true");
    // No network namespace: a net.* sysctl would change the host's.
    b.config["linux"]["namespaces"] =
        json!([{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]);
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    b.write_config();
    let host_fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let out = rt.run(&b, &unique_id("sysctlbad"));
    let msg = assert_failure(&out, "run with net sysctl in host netns");
    assert!(msg.contains("net.ipv4.ip_forward"), "{msg}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );
    assert!(rt.container_ids().is_empty());
}

#[test]
fn user_namespace_mappings() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.set_sh("id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; stat -c %u /bin/busybox");
    user_ns_config(&mut b);
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("userns"));
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"], "{out}");
    assert_eq!(lines[1], ["0"], "{out}");
    assert_eq!(lines[2], ["0", "100000", "65536"], "{out}");
    assert_eq!(lines[3], ["0", "100000", "65536"], "{out}");
    // The rootfs is owned by host root, which is unmapped: shows as the overflow uid.
    assert_eq!(lines[4], ["65534"], "{out}");
}

#[test]
fn user_namespace_process_is_unprivileged_on_host() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.set_sh("sleep 1000");
    user_ns_config(&mut b);
    b.write_config();
    let id = unique_id("usernsh");
    let pid = rt.start_detached(&b, &id);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids: Vec<String> = status_field(&status, "Uid")
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(uids, ["100000"; 4]);
    let gids: Vec<String> = status_field(&status, "Gid")
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(gids, ["100000"; 4]);
}

#[test]
fn cgroup_namespace_hides_host_paths() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.set_sh("cat /proc/self/cgroup");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("cgns"));
    assert!(!out.is_empty());
    for l in out.lines() {
        assert!(
            l.ends_with(":/"),
            "cgroup path not namespaced: {l:?} in\n{out}"
        );
    }
}

/// A `sleep` in fresh namespaces made by `unshare` (`--kill-child` so a `--fork`ed sleeper dies
/// with it); returns the guard and the pid of the `sleep` process.
fn unshared_sleeper(flags: &[&str], setup_sh: &str) -> (ChildGuard, i32) {
    let mut c = Command::new("unshare");
    c.arg("--kill-child")
        .args(flags)
        .args(["sh", "-c", &format!("{setup_sh} exec sleep 1000")])
        .stdin(Stdio::null());
    let child = ChildGuard(c.spawn().unwrap());
    let pid = child.0.id() as i32;
    let is_sleep = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
    };
    // Wait until the exec into sleep happened (setup done), in unshare itself or its child.
    let start = std::time::Instant::now();
    loop {
        if is_sleep(pid) {
            return (child, pid);
        }
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(c) = children
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .find(|&c| is_sleep(c))
        {
            return (child, c);
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "unshare helper never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn join_namespaces_by_path() {
    let rt = setup();
    let (_g, pid) = unshared_sleeper(&["--net", "--uts", "--ipc"], "hostname joined-uts;");
    let mut b = Bundle::busybox();
    b.set_sh("hostname; for n in net uts ipc; do echo $n $(readlink /proc/self/ns/$n); done");
    b.config["linux"]["namespaces"] = json!([
        {"type": "pid"},
        {"type": "mount"},
        {"type": "network", "path": format!("/proc/{pid}/ns/net")},
        {"type": "uts", "path": format!("/proc/{pid}/ns/uts")},
        {"type": "ipc", "path": format!("/proc/{pid}/ns/ipc")}
    ]);
    b.config.as_object_mut().unwrap().remove("hostname");
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("join"));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("joined-uts"));
    let ns = parse_ns(&lines.collect::<Vec<_>>().join("\n"));
    for n in ["net", "uts", "ipc"] {
        assert_eq!(ns[n], ns_link(format!("/proc/{pid}/ns/{n}")), "{n}");
        assert_ne!(ns[n], host_ns(n));
    }
}

#[test]
fn join_pid_namespace_by_path() {
    let rt = setup();
    let (_g, target) = unshared_sleeper(&["--pid", "--fork", "--mount-proc"], "");
    let mut b = Bundle::busybox();
    b.set_sh("readlink /proc/self/ns/pid; ps -o comm | grep -c sleep");
    b.config["linux"]["namespaces"] = json!([
        {"type": "pid", "path": format!("/proc/{target}/ns/pid")},
        {"type": "mount"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}
    ]);
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("joinpid"));
    let mut l = out.lines();
    assert_eq!(l.next().unwrap(), ns_link(format!("/proc/{target}/ns/pid")));
    // The sleeper is visible in the joined pid namespace.
    assert_eq!(l.next(), Some("1"), "{out}");
}

#[test]
fn join_nonexistent_namespace_path_fails() {
    let rt = setup();
    let mut b = Bundle::sh("true");
    b.config["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "mount"},
        {"type": "network", "path": "/proc/999999999/ns/net"}
    ]);
    b.write_config();
    let out = rt.run(&b, &unique_id("joinbad"));
    assert_failure(&out, "join missing ns path");
    assert!(rt.container_ids().is_empty());
}
