//! OCI hooks: all six phases with their state JSON on stdin, env, ordering, timeout, failure
//! cleanup.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_runtime_tests::*;
use serde_json::{json, Value};

fn setup() -> Runtime {
    require_root_and_tools(&[]);
    Runtime::new()
}

const PHASES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A hook that saves its stdin (the state) to `<dir>/<phase>.json`, appends the phase to
/// `<dir>/order` and its `$HOOKVAR` and args to `<dir>/<phase>.env`.
fn marker_hook(dir: &Path, phase: &str) -> Value {
    let d = dir.display();
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c",
            format!("cat > {d}/{phase}.json; echo \"$HOOKVAR $0 $1\" > {d}/{phase}.env; echo {phase} >> {d}/order"),
            "first-arg", "second-arg"],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", format!("HOOKVAR=var-{phase}")]
    })
}

/// Bundle with a marker hook for every phase; the marker dir is bind-mounted into the container
/// at the same absolute path, so hooks running in the container namespace reach it too.
fn hooked_bundle(dir: &Path) -> Bundle {
    let mut b = Bundle::busybox();
    b.set_sh("sleep 1000");
    let mut hooks = serde_json::Map::new();
    for p in PHASES {
        hooks.insert(p.to_string(), json!([marker_hook(dir, p)]));
    }
    b.config["hooks"] = Value::Object(hooks);
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": dir, "type": "bind", "source": dir, "options": ["rbind", "rw"]
    }));
    b.write_config();
    b
}

fn read_state(dir: &Path, phase: &str) -> Value {
    let s = std::fs::read_to_string(dir.join(format!("{phase}.json")))
        .unwrap_or_else(|e| panic!("{phase} hook did not run: {e}"));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{phase} state not JSON ({e}): {s:?}"))
}

fn ran(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("order"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn all_six_hook_phases_with_state() {
    let rt = setup();
    let markers = tempfile::Builder::new()
        .prefix("berth-hooks-")
        .tempdir()
        .unwrap();
    let dir = markers.path();
    let b = hooked_bundle(dir);
    let bundle_path = b.path().canonicalize().unwrap();
    let id = unique_id("hooks");

    rt.create(&b, &id);
    let after_create = ran(dir);
    for p in ["prestart", "createRuntime", "createContainer"] {
        assert!(
            after_create.iter().any(|x| x == p),
            "{p} not run by create: {after_create:?}"
        );
    }
    assert!(
        !after_create.iter().any(|x| x == "startContainer"),
        "{after_create:?}"
    );
    let pid = rt.state(&id)["pid"].as_i64().unwrap();

    rt.ok(&["start", &id]);
    assert!(wait_for_path(
        &dir.join("poststart.json"),
        Duration::from_secs(5)
    ));
    assert!(wait_for_path(
        &dir.join("startContainer.json"),
        Duration::from_secs(5)
    ));
    assert!(!dir.join("poststop.json").exists());

    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped", Duration::from_secs(5));
    rt.ok(&["delete", &id]);
    assert_eq!(ran(dir).len(), 6, "{:?}", ran(dir));
    assert_eq!(ran(dir).last().map(String::as_str), Some("poststop"));

    for phase in PHASES {
        let st = read_state(dir, phase);
        assert_eq!(st["id"], id.as_str(), "{phase}: {st}");
        assert!(st["ociVersion"].is_string(), "{phase}: {st}");
        let bundle = Path::new(st["bundle"].as_str().unwrap())
            .canonicalize()
            .unwrap();
        assert_eq!(bundle, bundle_path, "{phase}");
        match phase {
            "poststop" => {}
            // Run in the container's pid namespace: runc reports the in-namespace pid 1.
            "createContainer" | "startContainer" => {
                let p = st["pid"].as_i64();
                assert!(p == Some(pid) || p == Some(1), "{phase}: {st}");
            }
            _ => assert_eq!(st["pid"].as_i64(), Some(pid), "{phase}: {st}"),
        }
        let status = st["status"].as_str().unwrap();
        let allowed: &[&str] = match phase {
            "prestart" | "createRuntime" | "createContainer" => &["creating", "created"],
            "startContainer" => &["created"],
            "poststart" => &["running", "created"],
            _ => &["stopped"],
        };
        assert!(allowed.contains(&status), "{phase}: status {status:?}");
        let env = std::fs::read_to_string(dir.join(format!("{phase}.env"))).unwrap();
        assert_eq!(
            env,
            format!("var-{phase} first-arg second-arg\n"),
            "{phase}"
        );
    }
}

#[test]
fn run_runs_all_hooks_and_poststop() {
    let rt = setup();
    let markers = tempfile::Builder::new()
        .prefix("berth-hooks-")
        .tempdir()
        .unwrap();
    let dir = markers.path();
    let mut b = hooked_bundle(dir);
    b.set_sh("echo container-ran");
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("hookrun"));
    assert_eq!(out, "container-ran\n");
    let mut order = ran(dir);
    order.sort();
    let mut want = PHASES.to_vec();
    want.sort();
    assert_eq!(order, want);
    assert_eq!(ran(dir).last().map(String::as_str), Some("poststop"));
}

#[test]
fn hook_order_follows_spec_berth_only() {
    // runc 1.1.5 runs poststart hooks during `create` (before startContainer), against the
    // runtime-spec: poststart comes after the user process started, i.e. after `start`.
    let rt = setup();
    let markers = tempfile::tempdir().unwrap();
    let dir = markers.path();
    let b = hooked_bundle(dir);
    let id = unique_id("hookord");
    rt.create(&b, &id);
    let mut first = ran(dir);
    first.sort();
    assert_eq!(first, ["createContainer", "createRuntime", "prestart"]);
    assert_eq!(ran(dir).last().map(String::as_str), Some("createContainer"));
    rt.ok(&["start", &id]);
    assert!(wait_for_path(
        &dir.join("poststart.json"),
        Duration::from_secs(5)
    ));
    assert_eq!(ran(dir)[3..], ["startContainer", "poststart"]);
    let st = read_state(dir, "poststart");
    assert_eq!(st["status"], "running", "{st}");
    rt.ok(&["delete", "--force", &id]);
    assert_eq!(ran(dir)[5..], ["poststop"]);
    // The state's pid is the container process "as seen by the host", for every hook.
    let pid = read_state(dir, "createRuntime")["pid"].as_i64().unwrap();
    assert!(pid > 1);
    for phase in ["prestart", "createContainer", "startContainer", "poststart"] {
        assert_eq!(read_state(dir, phase)["pid"].as_i64(), Some(pid), "{phase}");
    }
}

#[test]
fn start_container_hook_runs_inside_container() {
    let rt = setup();
    let markers = tempfile::tempdir().unwrap();
    let dir = markers.path();
    let mut b = Bundle::busybox();
    b.set_sh("true");
    // startContainer: path resolved in the container; `hostname` is the container's.
    b.config["hostname"] = json!("hooked-box");
    b.config["hooks"] = json!({
        "startContainer": [{"path": "/bin/busybox",
            "args": ["busybox", "sh", "-c", format!("hostname > {}/sc-host; ls / > {}/sc-root", dir.display(), dir.display())]}]
    });
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": dir, "type": "bind", "source": dir, "options": ["rbind", "rw"]
    }));
    b.write_config();
    rt.run_ok(&b, &unique_id("schook"));
    assert_eq!(
        std::fs::read_to_string(dir.join("sc-host")).unwrap(),
        "hooked-box\n"
    );
    let root = std::fs::read_to_string(dir.join("sc-root")).unwrap();
    assert!(root.lines().any(|l| l == "bin"), "{root}");
    assert!(
        !root.lines().any(|l| l == "boot" || l == "lib64"),
        "saw host root: {root}"
    );
}

#[test]
fn hook_timeout_fails_create_and_cleans_up() {
    let rt = setup();
    let markers = tempfile::tempdir().unwrap();
    let pidfile = markers.path().join("hookpid");
    let mut b = Bundle::busybox();
    b.set_sh("sleep 1000");
    let id = unique_id("hooktmo");
    let rel = format!("berth-rt-test-{id}");
    let _cg = CgroupCleanup::new(&rel);
    b.config["linux"]["cgroupsPath"] = json!(format!("/{rel}"));
    b.config["hooks"] = json!({
        "createRuntime": [{"path": "/bin/sh",
            "args": ["sh", "-c", format!("echo $$ > {}; exec sleep 30", pidfile.display())],
            "timeout": 1}]
    });
    b.write_config();
    let start = Instant::now();
    let out = rt.try_create(&b, &id);
    let took = start.elapsed();
    let msg = assert_failure(&out, "create with timing-out hook");
    assert!(
        took < Duration::from_secs(10),
        "hook timeout not enforced: {took:?}"
    );
    assert!(
        msg.contains("timeout") || msg.contains("timed out"),
        "{msg}"
    );
    assert!(rt.container_ids().is_empty(), "{:?}", rt.container_ids());
    assert!(
        cgroup_dirs_for(&rel).is_empty(),
        "{:?}",
        cgroup_dirs_for(&rel)
    );
    // The timed-out hook process itself was killed.
    let hook_pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let start = Instant::now();
    while pid_alive(hook_pid) && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if pid_alive(hook_pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(hook_pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        panic!("timed-out hook {hook_pid} left running");
    }
}

#[test]
fn failing_create_runtime_hook_aborts_create() {
    let rt = setup();
    let markers = tempfile::tempdir().unwrap();
    let mut b = Bundle::busybox();
    b.set_sh("sleep 1000");
    let id = unique_id("hookfail");
    let rel = format!("berth-rt-test-{id}");
    let _cg = CgroupCleanup::new(&rel);
    b.config["linux"]["cgroupsPath"] = json!(format!("/{rel}"));
    b.config["hooks"] = json!({
        "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /dev/null; echo hook-says-no >&2; exit 3"]}],
        "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c",
            format!("touch {}/should-not-run", markers.path().display())]}]
    });
    b.write_config();
    let out = rt.try_create(&b, &id);
    let msg = assert_failure(&out, "create with failing hook");
    assert!(msg.contains("hook"), "{msg}");
    assert!(rt.container_ids().is_empty(), "{:?}", rt.container_ids());
    assert!(
        cgroup_dirs_for(&rel).is_empty(),
        "{:?}",
        cgroup_dirs_for(&rel)
    );
    assert!(!markers.path().join("should-not-run").exists());
    assert_failure(&rt.output(&["state", &id]), "state after failed create");
}

#[test]
fn failing_poststop_hook_does_not_block_delete() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.set_sh("sleep 1000");
    b.config["hooks"] = json!({
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}]
    });
    b.write_config();
    let id = unique_id("hookps");
    rt.start_detached(&b, &id);
    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped", Duration::from_secs(5));
    // runtime-spec: poststop errors are logged, the delete goes on.
    let _ = rt.output(&["delete", &id]);
    assert_failure(&rt.output(&["state", &id]), "state after delete");
}
