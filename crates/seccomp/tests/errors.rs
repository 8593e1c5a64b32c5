//! Profiles that must be refused, with messages naming what is wrong.

mod common;

use berth_seccomp::{compile, SeccompError};
use common::spec;
use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

fn compile_err(value: serde_json::Value) -> SeccompError {
    compile(&spec(value)).unwrap_err()
}

#[test]
fn notify_without_listener_path_is_an_error() {
    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert!(
        matches!(err, SeccompError::NotifyWithoutListener { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("listenerPath") && msg.contains("mkdirat"),
        "{msg}"
    );

    let empty = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "",
        "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert!(
        matches!(empty, SeccompError::NotifyWithoutListener { .. }),
        "{empty:?}"
    );
}

#[test]
fn notify_as_default_action_is_an_error() {
    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_NOTIFY",
        "listenerPath": "/run/agent.sock"
    }));
    assert!(matches!(err, SeccompError::NotifyDefaultAction), "{err:?}");
    assert!(err.to_string().contains("SCMP_ACT_NOTIFY"));
}

#[test]
fn notify_on_the_fd_handover_syscalls_is_an_error() {
    for syscall in berth_seccomp::NOTIFY_FORBIDDEN_SYSCALLS {
        let err = compile_err(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["mkdirat", syscall], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert!(
            matches!(err, SeccompError::NotifyForbiddenSyscall { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(syscall), "{err}");
    }
}

#[test]
fn errno_ret_beyond_16_bits_is_an_error() {
    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]
    }));
    let msg = err.to_string();
    assert!(msg.contains("getcwd") && msg.contains("70000"), "{msg}");

    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_TRACE",
        "defaultErrnoRet": 65536
    }));
    let msg = err.to_string();
    assert!(
        msg.contains("default action") && msg.contains("SCMP_ACT_TRACE"),
        "{msg}"
    );
}

#[test]
fn argument_index_past_the_sixth_is_an_error() {
    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["openat"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]
        }]
    }));
    assert!(
        matches!(err, SeccompError::ArgIndexOutOfRange { index: 6, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("openat"));
}

#[test]
fn empty_syscall_name_is_an_error() {
    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": [""], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert!(matches!(err, SeccompError::EmptySyscallName), "{err:?}");
}

#[test]
fn unknown_architecture_is_refused_when_the_spec_is_parsed() {
    let err = serde_json::from_value::<LinuxSeccomp>(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]
    }))
    .unwrap_err();
    assert!(err.to_string().contains("SCMP_ARCH_VAX"), "{err}");
}

#[test]
fn unknown_action_operator_and_flag_are_refused_when_the_spec_is_parsed() {
    for (value, name) in [
        (
            json!({"defaultAction": "SCMP_ACT_EXPLODE"}),
            "SCMP_ACT_EXPLODE",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
                "names": ["read"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ODD"}]}]}),
            "SCMP_CMP_ODD",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}),
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        ),
    ] {
        let err = serde_json::from_value::<LinuxSeccomp>(value).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
}
