//! Container lifecycle: create/start/state/kill/delete, run, run --detach, list, ps, pause/resume,
//! update, events, pid files, preserve-fds, spec.

use std::time::Duration;

use berth_runtime_tests::*;
use serde_json::{json, Value};

fn setup() -> Runtime {
    require_root_and_tools(&[]);
    Runtime::new()
}

const T: Duration = Duration::from_secs(5);

#[test]
fn create_start_kill_delete() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("life");
    rt.create(&b, &id);
    let st = rt.state(&id);
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["id"], id.as_str());
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0, "{st}");
    assert!(pid_alive(pid as i32));
    let bundle = st["bundle"].as_str().unwrap();
    assert_eq!(
        std::path::Path::new(bundle).canonicalize().unwrap(),
        b.path().canonicalize().unwrap()
    );
    assert!(st["ociVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with('1')));

    // The created container has not run its process yet: its init is still the runtime's.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("sleep"));

    assert_success(&rt.detached(&["start", &id]), "start");
    assert_eq!(rt.wait_status(&id, "running", T), "running");
    assert_eq!(
        rt.state(&id)["pid"].as_i64().unwrap(),
        pid,
        "pid stable across start"
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains("sleep"));

    rt.ok(&["kill", &id, "KILL"]);
    assert_eq!(rt.wait_status(&id, "stopped", T), "stopped");
    rt.ok(&["delete", &id]);
    let out = rt.output(&["state", &id]);
    assert_failure(&out, "state after delete");
    assert!(!pid_alive(pid as i32));
    assert!(rt.container_ids().is_empty(), "{:?}", rt.container_ids());
}

#[test]
fn run_returns_exit_code_and_stdout() {
    let rt = setup();
    let b = Bundle::sh("echo hello-from-container; exit 42");
    let id = unique_id("exit");
    let out = rt.run(&b, &id);
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello-from-container\n");
    // run deletes the container afterwards.
    assert_failure(&rt.output(&["state", &id]), "state after run");
}

#[test]
fn run_passes_stdin() {
    let rt = setup();
    let b = Bundle::sh("read x; echo got:$x");
    let id = unique_id("stdin");
    let mut child = rt
        .cmd(&["run", "--bundle", path_str(b.path()), &id])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"ping\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out), "got:ping\n");
}

#[test]
fn run_killed_by_signal_reports_128_plus_signal() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("sig");
    let child = rt
        .cmd(&["run", "--bundle", path_str(b.path()), &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while rt.output(&["state", &id]).status.code() != Some(0) || rt.status(&id) != "running" {
        assert!(start.elapsed() < T, "container never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.ok(&["kill", &id, "KILL"]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
}

#[test]
fn run_detach() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("detach");
    let out = rt.detached(&["run", "--detach", "--bundle", path_str(b.path()), &id]);
    assert_success(&out, "run --detach");
    assert_eq!(rt.status(&id), "running");
    let pid = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    assert!(pid_alive(pid));
    rt.ok(&["delete", "--force", &id]);
    assert!(!pid_alive(pid));
}

#[test]
fn create_pid_file() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("pidf");
    let pidfile = b.path().join("init.pid");
    let out = rt.detached(&[
        "create",
        "--bundle",
        path_str(b.path()),
        "--pid-file",
        path_str(&pidfile),
        &id,
    ]);
    assert_success(&out, "create --pid-file");
    let pid: i64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, rt.state(&id)["pid"].as_i64().unwrap());
}

#[test]
fn list_plain_and_json() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let a = unique_id("lista");
    let c = unique_id("listc");
    rt.start_detached(&b, &a);
    rt.create(&b, &c);

    let table = rt.ok(&["list"]);
    let header = table.lines().next().unwrap();
    for col in ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"] {
        assert!(header.contains(col), "header {header:?} lacks {col}");
    }
    let row_a = table.lines().find(|l| l.starts_with(&a)).unwrap();
    assert!(row_a.contains("running"), "{row_a}");
    let row_c = table.lines().find(|l| l.starts_with(&c)).unwrap();
    assert!(row_c.contains("created"), "{row_c}");

    let quiet = rt.ok(&["list", "-q"]);
    let mut ids: Vec<&str> = quiet.lines().collect();
    ids.sort();
    let mut want = vec![a.as_str(), c.as_str()];
    want.sort();
    assert_eq!(ids, want);

    let js: Value = serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
    let arr = js.as_array().unwrap();
    assert_eq!(arr.len(), 2, "{js}");
    let ea = arr.iter().find(|e| e["id"] == a.as_str()).unwrap();
    assert_eq!(ea["status"], "running");
    assert!(ea["pid"].as_i64().unwrap() > 0);
    assert!(ea["bundle"].as_str().is_some());
    assert!(ea["created"].as_str().is_some());
    let ec = arr.iter().find(|e| e["id"] == c.as_str()).unwrap();
    assert_eq!(ec["status"], "created");
}

#[test]
fn list_empty_root() {
    let rt = setup();
    let js: Value =
        serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap_or(json!(null));
    // runc prints `null` for an empty list; an empty array is equally acceptable.
    assert!(
        js.is_null() || js.as_array().is_some_and(|a| a.is_empty()),
        "{js}"
    );
}

#[test]
fn kill_signal_names_and_numbers() {
    let rt = setup();
    // A shell that exits on TERM (trap) and dies on KILL; either way the container stops.
    for sig in ["TERM", "SIGTERM", "15", "KILL", "SIGKILL", "9"] {
        let mut b = Bundle::busybox();
        b.set_sh("trap 'exit 143' TERM; touch /tmp/ready; while true; do sleep 0.05; done");
        b.config["root"]["readonly"] = json!(false);
        b.write_config();
        let id = unique_id("kill");
        let pid = rt.start_detached(&b, &id);
        assert!(
            wait_for_path(&b.rootfs().join("tmp/ready"), T),
            "container did not start"
        );
        rt.ok(&["kill", &id, sig]);
        assert_eq!(rt.wait_status(&id, "stopped", T), "stopped", "kill {sig}");
        assert!(!pid_alive(pid));
        rt.ok(&["delete", &id]);
    }
}

#[test]
fn kill_default_signal_is_term() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.set_sh("trap 'echo got-term > /tmp/term; exit 0' TERM; touch /tmp/ready; while true; do sleep 0.05; done");
    b.config["root"]["readonly"] = json!(false);
    b.write_config();
    let id = unique_id("killdef");
    rt.start_detached(&b, &id);
    assert!(wait_for_path(&b.rootfs().join("tmp/ready"), T));
    rt.ok(&["kill", &id]);
    assert_eq!(rt.wait_status(&id, "stopped", T), "stopped");
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("tmp/term")).unwrap(),
        "got-term\n"
    );
}

#[test]
fn kill_all_kills_every_process() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("killall");
    let pid = rt.start_detached(&b, &id);
    // Add an exec'd process; --all must kill it too.
    let out = rt.detached(&["exec", "--detach", &id, "sleep", "999"]);
    assert_success(&out, "exec --detach");
    let pids = ps_pids(&rt, &id);
    assert_eq!(pids.len(), 2, "{pids:?}");
    rt.ok(&["kill", "--all", &id, "KILL"]);
    assert_eq!(rt.wait_status(&id, "stopped", T), "stopped");
    std::thread::sleep(Duration::from_millis(100));
    for p in pids {
        assert!(!pid_alive(p), "pid {p} survived kill --all");
    }
    assert!(!pid_alive(pid));
}

#[test]
fn kill_unknown_signal_fails() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("killbad");
    rt.start_detached(&b, &id);
    let out = rt.output(&["kill", &id, "SIGFOO"]);
    let msg = assert_failure(&out, "kill SIGFOO");
    assert!(msg.contains("sigfoo") || msg.contains("signal"), "{msg}");
    assert_eq!(rt.status(&id), "running");
}

fn ps_pids(rt: &Runtime, id: &str) -> Vec<i32> {
    let js: Value = serde_json::from_str(&rt.ok(&["ps", "--format", "json", id])).unwrap();
    js.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap() as i32)
        .collect()
}

#[test]
fn ps_json_lists_init_pid() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("ps");
    let pid = rt.start_detached(&b, &id);
    assert_eq!(ps_pids(&rt, &id), vec![pid]);
    let table = rt.ok(&["ps", &id]);
    assert!(table.lines().next().unwrap().contains("PID"), "{table}");
    assert!(table.contains(&pid.to_string()), "{table}");
}

#[test]
fn delete_running_requires_force() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("delrun");
    let pid = rt.start_detached(&b, &id);
    let out = rt.output(&["delete", &id]);
    let msg = assert_failure(&out, "delete running");
    assert!(
        msg.contains("running"),
        "error should name the state: {msg}"
    );
    assert_eq!(rt.status(&id), "running");
    assert!(pid_alive(pid));
    rt.ok(&["delete", "--force", &id]);
    assert!(!pid_alive(pid));
    assert_failure(&rt.output(&["state", &id]), "state after delete");
}

#[test]
fn delete_created_container() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("delcr");
    rt.create(&b, &id);
    let pid = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    // A created (never started) container may be deleted with --force.
    rt.ok(&["delete", "--force", &id]);
    assert!(!pid_alive(pid));
    assert!(rt.container_ids().is_empty());
}

#[test]
fn start_twice_fails() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("start2");
    rt.start_detached(&b, &id);
    let out = rt.detached(&["start", &id]);
    assert_failure(&out, "second start");
    assert_eq!(rt.status(&id), "running");
}

/// The freezer state of `pid`'s cgroup: v1 `freezer.state`, or v2 `cgroup.events` "frozen".
fn freezer_state(pid: i32) -> String {
    if cgroup_v2_unified() {
        let d = proc_cgroup_dir(pid, "").unwrap();
        let ev = std::fs::read_to_string(d.join("cgroup.events")).unwrap();
        return if ev.contains("frozen 1") {
            "FROZEN"
        } else {
            "THAWED"
        }
        .into();
    }
    let d = proc_cgroup_dir(pid, "freezer").unwrap();
    read_trim(&d.join("freezer.state"))
}

#[test]
fn pause_resume() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("pause");
    let pid = rt.start_detached(&b, &id);
    rt.ok(&["pause", &id]);
    assert_eq!(rt.status(&id), "paused");
    assert_eq!(freezer_state(pid), "FROZEN");
    // The process is in the refrigerator (state D or S with frozen cgroup); it must not be gone.
    assert!(pid_alive(pid));
    rt.ok(&["resume", &id]);
    assert_eq!(rt.status(&id), "running");
    assert_eq!(freezer_state(pid), "THAWED");
    // Pausing a paused container twice, resuming a running one: errors.
    assert_failure(&rt.output(&["resume", &id]), "resume running");
}

fn read_trim(p: &std::path::Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn update_memory_and_pids() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("upd");
    let pid = rt.start_detached(&b, &id);
    rt.ok(&["update", "--memory", "64M", "--pids-limit", "77", &id]);
    let mem = proc_cgroup_dir(pid, "memory").unwrap();
    let v1 = mem.join("memory.limit_in_bytes").exists();
    let mfile = if v1 {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    assert_eq!(read_trim(&mem.join(mfile)), (64u64 << 20).to_string());
    assert_eq!(
        read_trim(&proc_cgroup_dir(pid, "pids").unwrap().join("pids.max")),
        "77"
    );

    // --resources - reads a LinuxResources JSON from stdin.
    let mut child = rt
        .cmd(&["update", "--resources", "-", &id])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"memory":{"limit":100663296},"pids":{"limit":55}}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out, "update --resources -");
    assert_eq!(read_trim(&mem.join(mfile)), "100663296");
    assert_eq!(
        read_trim(&proc_cgroup_dir(pid, "pids").unwrap().join("pids.max")),
        "55"
    );
}

#[test]
fn events_stats_json() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("events");
    rt.start_detached(&b, &id);
    let js: Value = serde_json::from_str(rt.ok(&["events", "--stats", &id]).trim()).unwrap();
    assert_eq!(js["type"], "stats", "{js}");
    assert_eq!(js["id"], id.as_str());
    assert_eq!(js["data"]["pids"]["current"], 1, "{js}");
    let usage = js["data"]["memory"]["usage"]["usage"].as_u64().unwrap();
    assert!(usage > 0, "{js}");
}

/// Reads stdout lines of a running `events` until `pred` holds for one or `limit` passes.
fn read_events_until(
    child: &mut std::process::Child,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + limit;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let done = pred(&v);
        seen.push(v);
        if done {
            break;
        }
    }
    seen
}

#[test]
fn events_stream_stats_and_exit_with_the_container() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("evstream");
    rt.start_detached(&b, &id);
    let mut child = rt
        .cmd(&["events", "--interval", "100ms", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen = read_events_until(&mut child, T, |_| false);
    assert!(seen.len() >= 3, "a stats event every 100ms: {seen:?}");
    for ev in &seen {
        assert_eq!(ev["type"], "stats", "{ev}");
        assert_eq!(ev["id"], id.as_str());
        assert_eq!(ev["data"]["pids"]["current"], 1, "{ev}");
    }
    rt.ok(&["kill", &id, "KILL"]);
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > T {
            let _ = child.kill();
            panic!("events did not exit after the container stopped");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn events_report_an_oom_kill() {
    let rt = setup();
    let mut b = Bundle::busybox();
    // Keep pid 1 alive; a child grows a shell variable past the 16 MiB limit and is OOM-killed.
    b.set_sh("sleep 0.5; sh -c 'x=$(head -c 67108864 /dev/zero | tr \"\\0\" x)'; sleep 1000");
    b.config["linux"]["resources"]["memory"] = json!({"limit": 16777216, "swap": 16777216});
    b.write_config();
    let id = unique_id("evoom");
    rt.start_detached(&b, &id);
    let mut child = rt
        .cmd(&["events", "--interval", "100ms", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen = read_events_until(&mut child, Duration::from_secs(15), |v| v["type"] == "oom");
    let _ = child.kill();
    let _ = child.wait();
    let oom = seen.iter().find(|v| v["type"] == "oom");
    assert!(oom.is_some(), "no oom event in {seen:?}");
    assert_eq!(oom.unwrap()["id"], id.as_str());
}

#[test]
fn preserve_fds() {
    use std::os::fd::AsRawFd;
    let rt = setup();
    let b = Bundle::sh("cat <&3; ls -l /proc/$$/fd 2>/dev/null");
    let id = unique_id("pfd");
    let mut data = tempfile::tempfile().unwrap();
    {
        use std::io::{Seek, Write};
        data.write_all(b"preserved-data\n").unwrap();
        data.rewind().unwrap();
    }
    let raw = data.as_raw_fd();
    let mut cmd = rt.cmd(&[
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        path_str(b.path()),
        &id,
    ]);
    // SAFETY: pre_exec runs in the forked child before exec; dup2 is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            let r = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = output_of(cmd);
    assert_success(&out, "run --preserve-fds 1");
    let s = stdout(&out);
    assert!(s.starts_with("preserved-data\n"), "{s}");
    // The shell's own fds: exactly 0 1 2 and the preserved 3 (the listing's own directory fd,
    // busybox ls running in-process, has no readable link target and is skipped).
    let fds: Vec<&str> = s
        .lines()
        .filter_map(|l| l.split_once(" -> ").map(|x| x.0))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{s}");
}

#[test]
fn spec_writes_runnable_config() {
    let rt = setup();
    let b = Bundle::busybox();
    std::fs::remove_file(b.path().join("config.json")).unwrap();
    rt.ok(&["spec", "--bundle", path_str(b.path())]);
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(b.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["root"]["path"], "rootfs");
    assert_eq!(cfg["process"]["args"], json!(["sh"]));
    let ns: Vec<&str> = cfg["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    for want in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&want), "{ns:?}");
    }
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(["sh", "-c", "echo spec-ok"]);
    std::fs::write(b.path().join("config.json"), cfg.to_string()).unwrap();
    let out = rt.run(&b, &unique_id("spec"));
    assert_success(&out, "run spec config");
    assert_eq!(stdout(&out), "spec-ok\n");
}

#[test]
fn spec_rootless_writes_runnable_config() {
    let rt = setup();
    let b = Bundle::busybox();
    std::fs::remove_file(b.path().join("config.json")).unwrap();
    rt.ok(&["spec", "--rootless", "--bundle", path_str(b.path())]);
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(b.path().join("config.json")).unwrap())
            .unwrap();
    let ns: Vec<&str> = cfg["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(ns.contains(&"user"), "{ns:?}");
    assert!(
        !ns.contains(&"network"),
        "rootless spec keeps the host network: {ns:?}"
    );
    let uid_map = &cfg["linux"]["uidMappings"][0];
    assert_eq!(uid_map["containerID"], 0);
    assert_eq!(uid_map["hostID"], 0, "running as root: host id is our uid");
    assert_eq!(uid_map["size"], 1);
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    std::fs::write(b.path().join("config.json"), cfg.to_string()).unwrap();
    let out = rt.run(&b, &unique_id("specrl"));
    assert_success(&out, "run rootless spec config");
    let s = stdout(&out);
    let mut lines = s.lines();
    assert_eq!(lines.next(), Some("0"));
    let map: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", "0", "1"]);
}

#[test]
fn cgroup_removed_after_delete() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.set_sh("sleep 1000");
    let id = unique_id("cgdel");
    let rel = format!("berth-rt-test-{id}/ctr");
    let _cleanup = CgroupCleanup::new(&rel);
    b.config["linux"]["cgroupsPath"] = json!(format!("/{rel}"));
    b.write_config();
    let pid = rt.start_detached(&b, &id);
    let mem = proc_cgroup_dir(pid, "memory").unwrap();
    assert!(mem.ends_with(&rel), "{}", mem.display());
    let dirs = cgroup_dirs_for(&rel);
    assert!(!dirs.is_empty());
    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped", T);
    rt.ok(&["delete", &id]);
    let left = cgroup_dirs_for(&rel);
    assert!(left.is_empty(), "left behind after delete: {left:?}");
}
