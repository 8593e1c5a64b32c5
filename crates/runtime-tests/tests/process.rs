//! The container process: args/env/cwd, user (uid/gid/additionalGids/umask), capabilities,
//! rlimits, noNewPrivileges, oomScoreAdj, personality, ioPriority.

use berth_runtime_tests::*;
use serde_json::json;

fn setup() -> Runtime {
    require_root_and_tools(&[]);
    Runtime::new()
}

fn status_of(out: &str, key: &str) -> String {
    status_field(out, key).unwrap_or_else(|| panic!("{key} missing in:\n{out}"))
}

#[test]
fn args_env_cwd() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.set_args(&[
        "sh",
        "-c",
        "pwd; echo \"$FOO|$BAR|$0|$1\"; env | sort",
        "arg0",
        "arg1",
    ]);
    b.config["process"]["env"] = json!(["PATH=/bin:/usr/bin", "FOO=foo value", "BAR="]);
    b.config["process"]["cwd"] = json!("/tmp");
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("args"));
    let mut l = out.lines();
    assert_eq!(l.next(), Some("/tmp"));
    assert_eq!(l.next(), Some("foo value||arg0|arg1"));
    // Exactly the configured env (the shell adds PWD/SHLVL; HOME: see home_env_from_passwd).
    let env: Vec<&str> = l
        .filter(|e| !["PWD=", "SHLVL=", "HOME="].iter().any(|p| e.starts_with(p)))
        .collect();
    assert_eq!(
        env,
        ["BAR=", "FOO=foo value", "PATH=/bin:/usr/bin"],
        "{out}"
    );
}

#[test]
fn home_env_from_passwd() {
    // runc compatibility: without HOME in process.env, HOME comes from the user's passwd entry
    // (/ when the user has none); an explicit HOME wins.
    let rt = setup();
    for (uid, env_home, want) in [
        (0, None, "/root"),
        (1000, None, "/home/user"),
        (4242, None, "/"),
        (1000, Some("HOME=/custom"), "/custom"),
    ] {
        let mut b = Bundle::busybox();
        b.config["process"]["user"] = json!({"uid": uid, "gid": uid});
        if let Some(h) = env_home {
            b.config["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!(h));
        }
        b.set_sh("echo $HOME");
        b.write_config();
        assert_eq!(
            rt.run_ok(&b, &unique_id("home")),
            format!("{want}\n"),
            "uid {uid}"
        );
    }
}

#[test]
fn cwd_created_if_missing() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["root"]["readonly"] = json!(false);
    b.config["process"]["cwd"] = json!("/work/dir");
    b.set_sh("pwd");
    b.write_config();
    assert_eq!(rt.run_ok(&b, &unique_id("cwdnew")), "/work/dir\n");
}

#[test]
fn missing_executable_is_an_error() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.set_args(&["no-such-binary-xyz"]);
    b.write_config();
    let id = unique_id("noexe");
    let out = rt.run(&b, &id);
    let msg = assert_failure(&out, "run missing executable");
    assert!(msg.contains("no-such-binary-xyz"), "{msg}");
    assert!(rt.container_ids().is_empty());
}

#[test]
fn user_uid_gid_additional_gids() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [100, 5]});
    b.set_sh("id; grep -E '^(Uid|Gid|Groups):' /proc/self/status");
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("user"));
    let mut l = out.lines();
    assert_eq!(
        l.next(),
        Some("uid=1000(user) gid=1000(user) groups=5(tty),100(users)"),
        "{out}"
    );
    let rest = l.collect::<Vec<_>>().join("\n");
    assert_eq!(status_of(&rest, "Uid"), "1000\t1000\t1000\t1000");
    assert_eq!(status_of(&rest, "Gid"), "1000\t1000\t1000\t1000");
    let groups_line = status_of(&rest, "Groups");
    let mut groups: Vec<&str> = groups_line.split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["100", "5"]);
}

#[test]
fn umask_default_and_configured() {
    let rt = setup();
    let b = Bundle::sh("umask");
    assert_eq!(rt.run_ok(&b, &unique_id("umask0")), "0022\n");
    let mut b = Bundle::busybox();
    b.config["process"]["user"]["umask"] = json!(0o027);
    b.config["root"]["readonly"] = json!(false);
    b.set_sh("umask; touch /tmp/f; stat -c %a /tmp/f");
    b.write_config();
    assert_eq!(rt.run_ok(&b, &unique_id("umask")), "0027\n640\n");
}

#[test]
fn default_capabilities() {
    let rt = setup();
    let b = Bundle::sh("cat /proc/self/status");
    let out = rt.run_ok(&b, &unique_id("capdef"));
    let want = cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    assert_eq!(want, "0000000020000420");
    for k in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(status_of(&out, k), want, "{k}");
    }
    // The default config lists ambient caps but no inheritable ones; the kernel only allows
    // ambient caps that are also inheritable, so none end up raised.
    assert_eq!(status_of(&out, "CapInh"), "0000000000000000");
    assert_eq!(status_of(&out, "CapAmb"), "0000000000000000");
}

#[test]
fn all_five_capability_sets_as_root() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
        "permitted": ["CAP_CHOWN", "CAP_KILL"],
        "inheritable": ["CAP_KILL"],
        "ambient": ["CAP_KILL"]
    });
    b.set_sh("cat /proc/self/status");
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("caps"));
    let bnd = cap_mask(&["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"]);
    assert_eq!(status_of(&out, "CapBnd"), bnd);
    assert_eq!(status_of(&out, "CapInh"), cap_mask(&["CAP_KILL"]));
    assert_eq!(status_of(&out, "CapAmb"), cap_mask(&["CAP_KILL"]));
    // uid 0 exec would grant permitted = inheritable | bounding, but noNewPrivileges (default
    // config) caps it at the pre-exec permitted set; effective = permitted.
    let prm = cap_mask(&["CAP_CHOWN", "CAP_KILL"]);
    assert_eq!(status_of(&out, "CapPrm"), prm);
    assert_eq!(status_of(&out, "CapEff"), prm);
}

#[test]
fn all_five_capability_sets_as_user() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"]
    });
    b.set_sh("cat /proc/self/status");
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("capsu"));
    assert_eq!(
        status_of(&out, "CapBnd"),
        cap_mask(&[
            "CAP_CHOWN",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_RAW"
        ])
    );
    assert_eq!(
        status_of(&out, "CapInh"),
        cap_mask(&["CAP_KILL", "CAP_NET_BIND_SERVICE"])
    );
    // Non-root exec without file caps: permitted = effective = ambient.
    let amb = cap_mask(&["CAP_NET_BIND_SERVICE"]);
    assert_eq!(status_of(&out, "CapAmb"), amb);
    assert_eq!(status_of(&out, "CapPrm"), amb);
    assert_eq!(status_of(&out, "CapEff"), amb);
}

#[test]
fn no_capabilities_means_none() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["process"]["capabilities"] = json!({});
    b.set_sh("cat /proc/self/status; chown 1000 /tmp 2>/dev/null || echo chown-denied");
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("capnone"));
    for k in ["CapBnd", "CapPrm", "CapEff", "CapAmb", "CapInh"] {
        assert_eq!(status_of(&out, k), "0000000000000000", "{k}");
    }
    assert!(out.ends_with("chown-denied\n"));
}

#[test]
fn unknown_capability_is_an_error_berth_only() {
    // runc 1.1.5 only warns ("ignoring unknown or unavailable capabilities").
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["process"]["capabilities"]["bounding"] = json!(["CAP_NOT_A_CAP"]);
    b.set_sh("true");
    b.write_config();
    let out = rt.run(&b, &unique_id("capbad"));
    let msg = assert_failure(&out, "unknown capability");
    assert!(msg.contains("cap_not_a_cap"), "{msg}");
}

fn limits_line(limits: &str, name: &str) -> Vec<String> {
    let l = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} not in\n{limits}"));
    l[name.len()..]
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn rlimits_at_or_below_host_hard_limit() {
    let rt = setup();
    let (_, nofile_hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let (_, nproc_hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC).unwrap();
    let nofile_hard = nofile_hard.min(20000);
    let nproc_hard = nproc_hard.min(4096);
    let mut b = Bundle::busybox();
    b.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": nofile_hard},
        {"type": "RLIMIT_NPROC", "soft": 100, "hard": nproc_hard},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_STACK", "soft": 4194304, "hard": 8388608}
    ]);
    b.set_sh("cat /proc/self/limits; ulimit -n");
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("rlim"));
    assert_eq!(
        limits_line(&out, "Max open files"),
        ["512".to_string(), nofile_hard.to_string(), "files".into()]
    );
    assert_eq!(
        limits_line(&out, "Max processes"),
        [
            "100".to_string(),
            nproc_hard.to_string(),
            "processes".into()
        ]
    );
    assert_eq!(limits_line(&out, "Max core file size"), ["0", "0", "bytes"]);
    assert_eq!(
        limits_line(&out, "Max stack size"),
        ["4194304", "8388608", "bytes"]
    );
    assert!(out.ends_with("512\n"), "{out}");
}

/// Config with RLIMIT_NOFILE hard above the host's hard limit (raising it needs
/// CAP_SYS_RESOURCE, which this host lacks).
fn rlimit_above_hard_bundle() -> Option<Bundle> {
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let has_sys_resource = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| status_field(&s, "CapEff"))
        .and_then(|m| u64::from_str_radix(&m, 16).ok())
        .is_some_and(|m| m & (1 << 24) != 0);
    if has_sys_resource {
        // With CAP_SYS_RESOURCE the runtime may legitimately raise it: nothing to test.
        eprintln!("host has CAP_SYS_RESOURCE: rlimit-above-hard case not applicable");
        return None;
    }
    let mut b = Bundle::busybox();
    b.config["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "soft": hard + 1000, "hard": hard + 1000}]);
    b.set_sh("echo should-not-run");
    b.write_config();
    Some(b)
}

#[test]
fn rlimit_above_host_hard_limit_fails() {
    let rt = setup();
    let Some(b) = rlimit_above_hard_bundle() else {
        return;
    };
    let out = rt.run(&b, &unique_id("rlimbad"));
    let msg = assert_failure(&out, "rlimit above hard");
    assert!(!stdout(&out).contains("should-not-run"));
    assert!(msg.contains("rlimit"), "error should mention rlimit: {msg}");
    assert!(rt.container_ids().is_empty(), "{:?}", rt.container_ids());
}

#[test]
fn rlimit_above_host_hard_limit_message_berth_only() {
    // runc says "error setting rlimit type 7: operation not permitted"; berth names the limit.
    let rt = setup();
    let Some(b) = rlimit_above_hard_bundle() else {
        return;
    };
    let out = rt.run(&b, &unique_id("rlimmsg"));
    let msg = assert_failure(&out, "rlimit above hard");
    assert!(msg.contains("rlimit_nofile"), "{msg}");
    assert!(msg.contains("hard"), "{msg}");
}

#[test]
fn no_new_privileges() {
    let rt = setup();
    for (nnp, want) in [(true, "1"), (false, "0")] {
        let mut b = Bundle::busybox();
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        b.set_sh("grep NoNewPrivs /proc/self/status");
        b.write_config();
        let out = rt.run_ok(&b, &unique_id("nnp"));
        assert_eq!(status_of(&out, "NoNewPrivs"), want);
    }
}

#[test]
fn oom_score_adj_raised() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["process"]["oomScoreAdj"] = json!(567);
    b.set_sh("cat /proc/self/oom_score_adj");
    b.write_config();
    assert_eq!(rt.run_ok(&b, &unique_id("oom")), "567\n");
}

#[test]
fn personality_linux32_berth_only() {
    // linux.personality is runtime-spec 1.2; runc 1.1.5 ignores it.
    let rt = setup();
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("LINUX32 check written for x86_64 hosts");
        return;
    }
    let mut b = Bundle::busybox();
    b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    b.set_sh("uname -m");
    b.write_config();
    assert_eq!(rt.run_ok(&b, &unique_id("pers")), "i686\n");
    let mut b = Bundle::busybox();
    b.config["linux"]["personality"] = json!({"domain": "LINUX"});
    b.set_sh("uname -m");
    b.write_config();
    assert_eq!(rt.run_ok(&b, &unique_id("pers64")), "x86_64\n");
}

#[test]
fn io_priority_berth_only() {
    // process.ioPriority is runtime-spec 1.2; runc 1.1.5 ignores it.
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    b.set_sh("ionice -p $$");
    b.write_config();
    assert_eq!(rt.run_ok(&b, &unique_id("ioprio")), "best-effort: prio 6\n");
}

#[test]
fn io_priority_idle_class_berth_only() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    b.set_sh("ionice -p $$");
    b.write_config();
    assert_eq!(rt.run_ok(&b, &unique_id("ioidle")), "idle\n");
}
