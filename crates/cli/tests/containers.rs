//! The engine against real containers: `berth run/create/start/stop/kill/restart/rm/ps/logs/exec/
//! wait/inspect` on a busybox image made with `berth import`, driving the real binaries (berth,
//! berth-monitor, berth-init) as root. Every test removes its containers and checks the host is
//! left clean (no mounts under its root, no container dirs, no cgroups), even when it fails.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::engine::{text, Engine};

fn cgroup_exists(id: &str) -> bool {
    [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup",
    ]
    .iter()
    .any(|c| Path::new(c).join("berth").join(id).exists())
}

#[test]
fn run_in_the_foreground_gives_output_streams_and_exit_code() {
    let e = Engine::new();
    let o = e.output(&[
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}{err}");
    assert_eq!(out, "out\n");
    assert_eq!(err, "err\n");
    e.assert_clean();
    // Killed by a signal: 128 + n, as docker (under berth-init, which passes it on: a pid 1
    // cannot get a signal it has no handler for from inside its namespace).
    let o = e.output(&["run", "--rm", "--init", "bb", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(o.status.code(), Some(137));
    e.assert_clean();
}

/// docker's State.OOMKilled: true when the kernel's OOM killer killed a process of the container
/// (the memory cgroup's count, read before the cgroup is removed), false otherwise, and reset
/// by the next start.
#[test]
fn an_oom_kill_is_reported_by_inspect() {
    let e = Engine::new();
    // dd's 64 MiB block buffer cannot fit in 16 MiB (32 MiB with swap): dd is killed, sh goes on.
    let out = e.ok(&[
        "run",
        "--name",
        "oom",
        "--memory",
        "16m",
        "bb",
        "sh",
        "-c",
        // Only the first run: the second finds /ran (the container's files are kept).
        "[ -e /ran ] && exit 0; touch /ran; dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo rc=$?",
    ]);
    assert_eq!(out, "rc=137\n");
    assert_eq!(e.inspect("oom")["State"]["OOMKilled"], true);
    assert_eq!(e.inspect("oom")["State"]["ExitCode"], 0);
    // docker's `inspect -f` with nested fields, one line per item (containers, then images).
    assert_eq!(
        e.ok(&[
            "inspect",
            "-f",
            "{{.State.OOMKilled}} {{.State.ExitCode}}",
            "oom"
        ]),
        "true 0\n"
    );
    assert_eq!(
        e.ok(&[
            "container",
            "inspect",
            "--format",
            "{{.Name}}",
            "oom",
            "oom"
        ]),
        "oom\noom\n"
    );
    let err = e.fails(&["inspect", "-f", "{{.State.Nope}}", "oom"]);
    assert!(err.contains("Nope"), "{err}");
    e.ok(&["run", "--name", "fine", "--memory", "16m", "bb", "true"]);
    assert_eq!(e.inspect("fine")["State"]["OOMKilled"], false);
    // A new run of the same container starts from a clean count (a new cgroup).
    e.ok(&["start", "-a", "oom"]);
    e.wait_until("oom to exit", || {
        e.inspect("oom")["State"]["Status"] == "exited"
    });
    assert_eq!(e.inspect("oom")["State"]["OOMKilled"], false);
    e.ok(&["rm", "oom", "fine"]);
    e.assert_clean();
}

#[test]
fn detached_container_lifecycle() {
    let e = Engine::new();
    let id = e.ok(&["run", "-d", "--name", "web", "bb", "sleep", "1000"]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let ps = e.ok(&["ps"]);
    assert!(ps.contains("web") && ps.contains("Up "), "{ps}");
    let st = e.inspect("web");
    assert_eq!(st["State"]["Status"], "running");
    let pid = st["State"]["Pid"].as_i64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(cgroup_exists(id), "no cgroup for {id}");
    // Short id prefix and name both resolve.
    assert_eq!(e.inspect(&id[..6])["Id"], id);
    let t = Instant::now();
    e.ok(&["stop", "-t", "1", "web"]);
    assert!(t.elapsed() < Duration::from_secs(8));
    let st = e.inspect("web");
    assert_eq!(st["State"]["Status"], "exited");
    assert_eq!(
        st["State"]["ExitCode"], 137,
        "sleep as pid 1 ignores SIGTERM: killed"
    );
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(e.mounts().is_empty(), "rootfs still mounted after stop");
    assert!(!cgroup_exists(id), "cgroup left after stop");
    let ps = e.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("web Exited (137)"), "{ps}");
    // Start again: the container's own files survive restarts.
    e.ok(&["start", "web"]);
    e.ok(&["exec", "web", "sh", "-c", "echo kept > /data"]);
    e.ok(&["restart", "-t", "0", "web"]);
    assert_eq!(e.ok(&["exec", "web", "cat", "/data"]), "kept\n");
    assert_eq!(e.inspect("web")["RestartCount"], 1);
    // rm of a running container needs -f.
    let err = e.fails_with(125, &["rm", "web"]);
    assert!(err.contains("running"), "{err}");
    e.ok(&["rm", "-f", "web"]);
    e.assert_clean();
    assert!(!cgroup_exists(id));
}

#[test]
fn a_stop_signal_the_process_handles_ends_it_cleanly() {
    let e = Engine::new();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "t",
        "bb",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    e.ok(&["stop", "t"]);
    let st = e.inspect("t");
    assert_eq!(st["State"]["ExitCode"], 0);
    assert_eq!(e.ok(&["logs", "t"]), "bye\n");
    assert_eq!(e.ok(&["wait", "t"]), "0\n");
    e.ok(&["rm", "t"]);
    e.assert_clean();
}

#[test]
fn logs_tail_timestamps_follow_and_kill() {
    let e = Engine::new();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "l",
        "bb",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; done; echo oops >&2; sleep 1; echo late",
    ]);
    // -f follows until the container exits.
    let o = e.output(&["logs", "-f", "l"]);
    let (out, err) = text(&o);
    assert_eq!(out, "line1\nline2\nline3\nlate\n");
    assert_eq!(err, "oops\n");
    assert_eq!(e.ok(&["wait", "l"]), "0\n");
    assert_eq!(e.ok(&["logs", "--tail", "1", "l"]), "late\n");
    let ts = e.ok(&["logs", "-t", "--tail", "2", "l"]);
    for l in ts.lines() {
        let (t, rest) = l.split_once(' ').unwrap();
        assert!(t.len() >= 20 && t.ends_with('Z') && t.contains('T'), "{l}");
        assert!(rest.starts_with("line") || rest == "late", "{l}");
    }
    // The log is docker's json-file format.
    let log = e
        .root()
        .join("containers")
        .join(e.inspect("l")["Id"].as_str().unwrap())
        .join("ctr.log");
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["log"], "line1\n");
    assert_eq!(first["stream"], "stdout");
    // kill with a signal name.
    e.ok(&["run", "-d", "--name", "k", "bb", "sleep", "1000"]);
    e.ok(&["kill", "-s", "TERM", "k"]); // pid 1 without a handler: ignored
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(e.inspect("k")["State"]["Status"], "running");
    e.ok(&["kill", "k"]);
    assert_eq!(e.ok(&["wait", "k"]), "137\n");
    e.ok(&["rm", "l", "k"]);
    e.assert_clean();
}

#[test]
fn exec_runs_in_the_container_with_its_flags() {
    let e = Engine::new();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "x",
        "--hostname",
        "box",
        "bb",
        "sleep",
        "1000",
    ]);
    assert_eq!(e.ok(&["exec", "x", "hostname"]), "box\n");
    assert_eq!(
        e.ok(&[
            "exec",
            "-e",
            "A=1",
            "-u",
            "app",
            "-w",
            "/tmp",
            "x",
            "sh",
            "-c",
            "echo $A $(id -u):$(id -g) $(pwd) $(id -G)"
        ]),
        "1 1000:1000 /tmp 1000 10\n"
    );
    let o = e.output(&["exec", "x", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let err = e.fails_with(127, &["exec", "x", "nosuchcommand"]);
    assert!(err.contains("not found"), "{err}");
    // stdin reaches an exec'd process.
    let out = e.output_with_stdin(&["exec", "-i", "x", "cat"], b"through exec\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through exec\n");
    // Same pid namespace as the container's init.
    let ps = e.ok(&["exec", "x", "ps", "-o", "pid,args"]);
    assert!(
        ps.lines()
            .any(|l| l.trim_start().starts_with("1 sleep 1000")),
        "{ps}"
    );
    e.ok(&["exec", "-d", "x", "sh", "-c", "echo bg > /tmp/bg"]);
    e.wait_until("the detached exec", || {
        e.output(&["exec", "x", "cat", "/tmp/bg"]).stdout == b"bg\n"
    });
    e.ok(&["stop", "-t", "0", "x"]);
    let err = e.fails_with(125, &["exec", "x", "true"]);
    assert!(err.contains("not running"), "{err}");
    e.ok(&["rm", "x"]);
    e.assert_clean();
}

#[test]
fn stdin_and_terminal() {
    let e = Engine::new();
    let out = e.output_with_stdin(
        &[
            "run",
            "-i",
            "--rm",
            "bb",
            "sh",
            "-c",
            "read a; echo got:$a; cat",
        ],
        b"one\ntwo\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got:one\ntwo\n");
    assert!(out.status.success());
    // -t: the process has a terminal (the monitor holds its master); output comes through it.
    let o = e.output(&[
        "run",
        "-t",
        "--rm",
        "bb",
        "sh",
        "-c",
        "tty; test -t 1 && echo isatty",
    ]);
    let (out, _) = text(&o);
    assert!(
        out.contains("/dev/pts/0") && out.contains("isatty"),
        "{out:?}"
    );
    assert!(o.status.success());
    e.assert_clean();
}

#[test]
fn settings_reach_the_container() {
    let e = Engine::new();
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::write(host_dir.path().join("f"), "from host").unwrap();
    let vol = format!("{}:/mnt/h:ro", host_dir.path().display());
    let o = e.ok(&[
        "run", "--rm", "--memory", "64m", "--pids-limit", "33", "--hostname", "hn",
        "--read-only", "--tmpfs", "/scratch:size=1m", "-v", &vol, "-e", "FOO=bar",
        "--cap-drop", "all", "--cap-add", "chown", "-w", "/mnt", "--label", "a=b",
        "bb", "sh", "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
         cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
         hostname; echo $FOO; pwd; cat /mnt/h/f; echo; \
         touch /rootfile 2>/dev/null || echo ro-root; touch /scratch/x && echo tmpfs-ok; \
         echo x > /mnt/h/g 2>/dev/null || echo ro-bind; grep CapEff /proc/self/status; \
         grep Seccomp: /proc/self/status",
    ]);
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines[0], "67108864");
    assert_eq!(lines[1], "33");
    assert_eq!(lines[2], "hn");
    assert_eq!(lines[3], "bar");
    assert_eq!(lines[4], "/mnt");
    assert_eq!(lines[5], "from host");
    assert_eq!(lines[6], "ro-root");
    assert_eq!(lines[7], "tmpfs-ok");
    assert_eq!(lines[8], "ro-bind");
    assert_eq!(
        lines[9].split_whitespace().nth(1),
        Some("0000000000000001"),
        "only CAP_CHOWN"
    );
    assert_eq!(
        lines[10].split_whitespace().nth(1),
        Some("2"),
        "docker's default seccomp filter"
    );
    assert!(!host_dir.path().join("g").exists());
    // Defaults: docker's capability set, masked /proc paths, no seccomp when unconfined.
    let o = e.ok(&["run", "--rm", "--security-opt", "seccomp=unconfined", "bb", "sh", "-c",
        "grep -E 'CapEff|Seccomp:' /proc/self/status; cat /proc/kcore | wc -c; cat /proc/self/uid_map"]);
    let l: Vec<&str> = o.lines().collect();
    assert_eq!(
        l[0].split_whitespace().nth(1),
        Some("00000000a80425fb"),
        "docker's default caps: {o}"
    );
    assert_eq!(l[1].split_whitespace().nth(1), Some("0"));
    assert_eq!(l[2].trim(), "0", "/proc/kcore is masked");
    // --init: berth-init is pid 1 and the command its child.
    let o = e.ok(&["run", "--rm", "--init", "bb", "ps", "-o", "pid,args"]);
    assert!(
        o.lines()
            .any(|l| l.trim_start() == "1 /dev/init -- ps -o pid,args"),
        "{o}"
    );
    // --user by name, with the image's group memberships.
    assert_eq!(
        e.ok(&["run", "--rm", "-u", "app", "bb", "id", "-G"]),
        "1000 10\n"
    );
    e.assert_clean();
}

#[test]
fn the_same_container_on_berth_and_on_runc() {
    let e = Engine::new();
    common::require_tool("runc");
    let script = "hostname; id; grep -E 'Cap(Eff|Bnd)|NoNewPrivs|Seccomp:' /proc/self/status; cat /proc/self/cgroup | wc -l; ls /dev | sort | tr '\\n' ' '";
    let args = |rt: &str| {
        vec![
            "run".to_string(),
            "--rm".into(),
            "--runtime".into(),
            rt.into(),
            "--hostname".into(),
            "same".into(),
            "-u".into(),
            "app".into(),
            "--security-opt".into(),
            "no-new-privileges".into(),
            "bb".into(),
            "sh".into(),
            "-c".into(),
            script.into(),
        ]
    };
    let run = |rt: &str| {
        let a = args(rt);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        e.ok(&refs)
    };
    let ours = run("berth");
    let theirs = run("runc");
    assert_eq!(ours, theirs, "berth and runc differ");
    assert!(
        ours.contains("NoNewPrivs:\t1") && ours.contains("uid=1000"),
        "{ours}"
    );
    // Exit codes come through a runtime binary too.
    let o = e.output(&[
        "run",
        "--rm",
        "--runtime",
        "runc",
        "bb",
        "sh",
        "-c",
        "exit 9",
    ]);
    assert_eq!(o.status.code(), Some(9));
    e.assert_clean();
}

#[test]
fn bad_input_fails_clearly_and_leaves_nothing() {
    let e = Engine::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--pull", "never", "no-such-image"],
            "image not known",
        ),
        (&["run", "--memory", "12x", "bb", "true"], "12x"),
        (&["run", "-p", "nonsense", "bb", "true"], "nonsense"),
        (&["run", "--cpus", "many", "bb", "true"], "--cpus"),
        (
            &["run", "--ulimit", "nofile=9:1", "bb", "true"],
            "soft limit",
        ),
        (&["run", "--cap-add", "NET_FLY", "bb", "true"], "NET_FLY"),
        (
            &["run", "--network", "no-such-net", "bb", "true"],
            "network no-such-net not found",
        ),
        (
            &["run", "--name", "bad/name", "bb", "true"],
            "invalid container name",
        ),
        (&["run", "bb"], "no command"),
        (&["run", "-u", "nobody-here", "bb", "true"], "nobody-here"),
        (
            &["run", "--runtime", "no-such-runtime", "bb", "true"],
            "no-such-runtime",
        ),
        (&["rm", "ghost"], "no such container"),
        (&["stop", "ghost"], "no such container"),
        (&["logs", "ghost"], "no such container"),
    ];
    for (args, want) in cases {
        let err = e.fails_with(125, args);
        assert!(err.contains(want), "berth {args:?}: {err}");
        e.assert_clean();
        // The monitor is started before the bundle is prepared (-u fails then): it must be gone.
        let left = common::engine::processes_under(e.b.runroot.path());
        assert!(left.is_empty(), "berth {args:?} left {left:?}");
    }
    // A command that is missing or not runnable: 127 / 126, and nothing left behind.
    let err = e.fails_with(127, &["run", "--rm", "bb", "/no/such/binary"]);
    assert!(
        err.contains("No such file") || err.contains("not found"),
        "{err}"
    );
    e.fails_with(127, &["run", "bb", "nosuchcmd"]);
    e.fails_with(126, &["run", "bb", "/etc/passwd"]);
    e.assert_clean();
    // Name clash.
    e.ok(&["create", "--name", "dup", "bb", "true"]);
    let err = e.fails_with(125, &["run", "--name", "dup", "bb", "true"]);
    assert!(err.contains("already in use"), "{err}");
    assert_eq!(e.ids().len(), 1);
    // An image in use cannot be deleted under its container.
    let err = e.fails_with(125, &["rmi", "bb"]);
    assert!(err.contains("dup"), "{err}");
    e.ok(&["rm", "dup"]);
    e.assert_clean();
}

#[test]
fn killing_the_cli_or_the_monitor_is_survived() {
    let e = Engine::new();
    // A foreground run whose CLI is SIGKILLed: the container keeps running.
    let mut fg = e.cmd();
    fg.args(["run", "--name", "fg", "bb", "sleep", "1000"])
        .stdout(Stdio::null());
    let mut child = fg.spawn().unwrap();
    e.wait_until("the container to run", || {
        e.output(&["ps", "-q", "--filter", "name=fg"]).stdout.len() > 1
    });
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(e.inspect("fg")["State"]["Status"], "running");
    // Its monitor SIGKILLed: ps says so, and rm -f still cleans everything.
    let st = e.inspect("fg");
    let pid = st["State"]["Pid"].as_i64().unwrap() as i32;
    let ppid: i32 = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap()
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{ppid}/comm")).unwrap();
    assert_eq!(
        comm.trim(),
        "berth-monitor",
        "the init's parent is its monitor"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(ppid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    e.wait_until("the monitor to die", || {
        !Path::new(&format!("/proc/{ppid}")).exists() || {
            std::fs::read_to_string(format!("/proc/{ppid}/stat"))
                .map_or(true, |s| s.contains(") Z"))
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let ps = e.ok(&["ps"]);
    assert!(ps.contains("monitor lost"), "{ps}");
    assert_eq!(e.inspect("fg")["State"]["MonitorAlive"], false);
    e.ok(&["rm", "-f", "fg"]);
    e.assert_clean();
    // A container whose init died unrecorded reads as exited, and rm cleans it.
    e.ok(&["run", "-d", "--name", "orphan", "bb", "sleep", "1000"]);
    let st = e.inspect("orphan");
    let pid = st["State"]["Pid"].as_i64().unwrap() as i32;
    let mon = {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        s.rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<i32>()
            .unwrap()
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mon),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    e.wait_until("the init to die", || {
        e.inspect("orphan")["State"]["Status"] == "exited"
    });
    let ps = e.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains("orphan Exited (unknown)"), "{ps}");
    e.ok(&["rm", "orphan"]);
    e.assert_clean();
}

#[test]
fn many_concurrent_commands_keep_the_database_whole() {
    let e = Engine::new();
    let n = 12;
    let children: Vec<_> = (0..n)
        .map(|i| {
            let mut c = e.cmd();
            c.args([
                "run",
                "-d",
                "--name",
                &format!("c{i}"),
                "bb",
                "sleep",
                "1000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            e.cmd()
                .args(["ps", "-a"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for mut r in readers {
        assert!(r.wait().unwrap().success());
    }
    assert_eq!(e.ids().len(), n);
    let ps = e.ok(&["ps", "--format", "{{.Names}}"]);
    assert_eq!(ps.lines().count(), n, "{ps}");
    let removers: Vec<_> = (0..n)
        .map(|i| {
            e.cmd()
                .args(["rm", "-f", &format!("c{i}")])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut r in removers {
        assert!(r.wait().unwrap().success());
    }
    e.b.check_db();
    e.assert_clean();
}

#[test]
fn start_attach_and_create_then_start() {
    let e = Engine::new();
    e.ok(&[
        "create",
        "--name",
        "sa",
        "bb",
        "sh",
        "-c",
        "echo hi; echo err >&2; exit 5",
    ]);
    assert_eq!(e.inspect("sa")["State"]["Status"], "created");
    let t = Instant::now();
    let o = e.output(&["start", "-a", "sa"]);
    let (out, err) = text(&o);
    assert_eq!((out.as_str(), err.as_str()), ("hi\n", "err\n"));
    assert_eq!(o.status.code(), Some(5));
    // The monitor's own clean-up ran (start -a leaves it to the monitor) and was prompt.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(e.inspect("sa")["State"]["ExitCode"], 5);
    assert!(e.mounts().is_empty());
    e.ok(&["rm", "sa"]);
    e.assert_clean();
}
