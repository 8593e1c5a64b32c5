//! Bad input and CLI errors: invalid config.json, missing bundle/rootfs, duplicate and
//! path-like ids, unknown containers, `features`, `--systemd-cgroup`.

use std::path::Path;

use berth_runtime_tests::*;
use serde_json::{json, Value};

fn setup() -> Runtime {
    require_root_and_tools(&[]);
    Runtime::new()
}

/// Nothing may be left in the state dir after a failed create/run (berth's compiled-seccomp
/// cache, `+seccomp-cache`, is not a container's).
fn assert_root_empty(rt: &Runtime) {
    let left: Vec<_> = std::fs::read_dir(rt.root())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name())
                .filter(|n| !n.to_string_lossy().starts_with('+'))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left under --root: {left:?}");
}

fn bad_configs() -> Vec<(&'static str, String)> {
    let good = Bundle::default_config(&["true"]);
    let mut args_string = good.clone();
    args_string["process"]["args"] = json!("true");
    let mut uid_string = good.clone();
    uid_string["process"]["user"]["uid"] = json!("root");
    let mut no_root = good.clone();
    no_root.as_object_mut().unwrap().remove("root");
    let mut ns_bad = good.clone();
    ns_bad["linux"]["namespaces"] = json!([{"type": "bogus"}]);
    vec![
        ("syntax", "{ \"ociVersion\": \"1.0.2\", bad".to_string()),
        ("empty", String::new()),
        ("args-string", args_string.to_string()),
        ("uid-string", uid_string.to_string()),
        ("no-root", no_root.to_string()),
        ("bogus-namespace", ns_bad.to_string()),
    ]
}

#[test]
fn invalid_config_fails_and_leaves_nothing() {
    let rt = setup();
    for (name, text) in bad_configs() {
        let b = Bundle::busybox();
        std::fs::write(b.path().join("config.json"), &text).unwrap();
        let id = unique_id("badcfg");
        let out = rt.run(&b, &id);
        assert_failure(&out, &format!("run with {name} config"));
        assert_root_empty(&rt);
        let out = rt.try_create(&b, &id);
        assert_failure(&out, &format!("create with {name} config"));
        assert_root_empty(&rt);
    }
}

#[test]
fn invalid_config_message_names_config_json_berth_only() {
    // runc prints only the decoder error ("invalid character 'b' ...").
    let rt = setup();
    for (name, text) in bad_configs() {
        let b = Bundle::busybox();
        std::fs::write(b.path().join("config.json"), &text).unwrap();
        let out = rt.run(&b, &unique_id("badmsg"));
        let msg = assert_failure(&out, name);
        assert!(msg.contains("config.json"), "{name}: {msg}");
        if name == "args-string" {
            assert!(msg.contains("args"), "{name}: {msg}");
        }
    }
}

#[test]
fn missing_bundle_fails() {
    let rt = setup();
    let out = rt.detached(&[
        "create",
        "--bundle",
        "/nonexistent/berth-bundle",
        &unique_id("nob"),
    ]);
    let msg = assert_failure(&out, "create with missing bundle");
    assert!(msg.contains("/nonexistent/berth-bundle"), "{msg}");
    assert_root_empty(&rt);
}

#[test]
fn missing_config_json_fails() {
    let rt = setup();
    let b = Bundle::busybox();
    std::fs::remove_file(b.path().join("config.json")).unwrap();
    let out = rt.run(&b, &unique_id("nocfg"));
    let msg = assert_failure(&out, "run without config.json");
    assert!(msg.contains("config.json"), "{msg}");
    assert_root_empty(&rt);
}

#[test]
fn missing_rootfs_fails() {
    let rt = setup();
    let b = Bundle::sh("true");
    std::fs::remove_dir_all(b.rootfs()).unwrap();
    let out = rt.run(&b, &unique_id("norootfs"));
    assert_failure(&out, "run without rootfs");
    assert_root_empty(&rt);
}

#[test]
fn duplicate_id_fails_and_keeps_first() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    let id = unique_id("dup");
    let pid = rt.start_detached(&b, &id);
    let out = rt.try_create(&b, &id);
    let msg = assert_failure(&out, "duplicate create");
    assert!(msg.contains("exist"), "{msg}");
    assert_eq!(rt.status(&id), "running");
    assert_eq!(rt.state(&id)["pid"].as_i64(), Some(pid as i64));
    assert!(pid_alive(pid));
}

#[test]
fn path_like_ids_rejected() {
    let rt = setup();
    let b = Bundle::sh("true");
    let outside = rt.root().parent().unwrap().to_path_buf();
    let marker = format!("berth-escape-{}", std::process::id());
    for id in [
        format!("../{marker}"),
        format!("a/{marker}"),
        "..".to_string(),
        ".".to_string(),
        String::new(),
        format!("/tmp/{marker}"),
        "has space".to_string(),
    ] {
        let out = rt.try_create(&b, &id);
        assert_failure(&out, &format!("create {id:?}"));
        assert_root_empty(&rt);
        assert!(!outside.join(&marker).exists(), "{id:?} escaped the root");
        assert!(
            !Path::new("/tmp").join(&marker).exists(),
            "{id:?} escaped the root"
        );
    }
}

#[test]
fn unknown_container_commands_fail() {
    let rt = setup();
    let id = unique_id("ghost");
    for args in [
        vec!["state", id.as_str()],
        vec!["start", id.as_str()],
        vec!["kill", id.as_str(), "KILL"],
        vec!["delete", id.as_str()],
        vec!["pause", id.as_str()],
        vec!["ps", id.as_str()],
    ] {
        let out = rt.output(&args);
        let msg = assert_failure(&out, &args.join(" "));
        assert!(
            msg.contains("not exist") || msg.contains("not found"),
            "{args:?}: {msg}"
        );
    }
    // delete --force of a missing container is not an error (runc semantics).
    let out = rt.output(&["delete", "--force", &id]);
    assert_success(&out, "delete --force missing");
}

#[test]
fn unknown_subcommand_and_flag_fail() {
    let rt = setup();
    assert_failure(&rt.output(&["frobnicate"]), "unknown subcommand");
    assert_failure(&rt.output(&["list", "--no-such-flag"]), "unknown flag");
}

#[test]
fn version_flag() {
    let rt = setup();
    let out = rt.output(&["--version"]);
    assert_success(&out, "--version");
    let s = stdout(&out).to_lowercase();
    assert!(s.contains("version"), "{s}");
    assert!(
        s.contains("spec"),
        "should print the runtime-spec version: {s}"
    );
}

#[test]
fn systemd_cgroup_gives_clear_error() {
    let rt = setup();
    let b = Bundle::sh("true");
    let out = rt.output(&[
        "--systemd-cgroup",
        "run",
        "--bundle",
        path_str(b.path()),
        &unique_id("sysd"),
    ]);
    let msg = assert_failure(&out, "--systemd-cgroup");
    assert!(msg.contains("systemd"), "{msg}");
    assert_root_empty(&rt);
}

fn features(rt: &Runtime) -> Value {
    let s = rt.ok(&["features"]);
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("features not JSON ({e}): {s}"))
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

#[test]
fn features_json() {
    let rt = setup();
    let f = features(&rt);
    assert!(
        f["ociVersionMin"].as_str().unwrap().starts_with("1.0"),
        "{f}"
    );
    assert!(
        f["ociVersionMax"].as_str().unwrap().starts_with("1."),
        "{f}"
    );
    let hooks = strs(&f["hooks"]);
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&h), "{h}");
    }
    let mo = strs(&f["mountOptions"]);
    for o in [
        "bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "rprivate", "rshared", "rslave",
    ] {
        assert!(mo.contains(&o), "mount option {o}");
    }
    let ns = strs(&f["linux"]["namespaces"]);
    for n in ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"] {
        assert!(ns.contains(&n), "namespace {n}");
    }
    let caps = strs(&f["linux"]["capabilities"]);
    for c in [
        "CAP_CHOWN",
        "CAP_SYS_ADMIN",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ] {
        assert!(caps.contains(&c), "{c}");
    }
    let sc = &f["linux"]["seccomp"];
    assert_eq!(sc["enabled"], true);
    for a in [
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
    ] {
        assert!(strs(&sc["actions"]).contains(&a), "{a}");
    }
    for o in ["SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_MASKED_EQ"] {
        assert!(strs(&sc["operators"]).contains(&o), "{o}");
    }
    assert!(strs(&sc["archs"]).contains(&"SCMP_ARCH_X86_64"));
    assert_eq!(f["linux"]["cgroup"]["v1"], true);
    assert_eq!(f["linux"]["cgroup"]["v2"], true);
}

#[test]
fn features_details_berth_only() {
    let rt = setup();
    let f = features(&rt);
    assert!(
        f["ociVersionMax"].as_str().unwrap().starts_with("1.2"),
        "{f}"
    );
    let ns = strs(&f["linux"]["namespaces"]);
    assert!(ns.contains(&"time"), "time namespace supported: {ns:?}");
    // No systemd cgroup driver: --systemd-cgroup is an error, so features must say so.
    assert_eq!(f["linux"]["cgroup"]["systemd"], false, "{f}");
    assert_eq!(f["linux"]["cgroup"]["systemdUser"], false, "{f}");
    // Exactly the capabilities the kernel knows (CAP_LAST_CAP + 1 of them).
    let last_cap: usize = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(strs(&f["linux"]["capabilities"]).len(), last_cap + 1);
}
