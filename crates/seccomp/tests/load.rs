//! Filters compiled from runtime-spec profiles, loaded in forked children against the real
//! kernel.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use berth_seccomp::{compile, features, SeccompError};
use common::*;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use serde_json::json;

const ENOSYS: i32 = libc::ENOSYS;
const EPERM: i32 = libc::EPERM;

fn getcwd() -> i32 {
    let mut buf = [0u8; 512];
    result(sys(
        libc::SYS_getcwd,
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
        0,
    ))
}

fn getppid() -> i32 {
    result(sys(libc::SYS_getppid, 0, 0, 0))
}

fn personality(persona: u64) -> i32 {
    result(sys(libc::SYS_personality, persona, 0, 0))
}

#[test]
fn errno_rules_return_their_errno_and_block_the_syscall() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("made-by-child");
    let path = CString::new(target.as_os_str().as_bytes()).unwrap();
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}
        ]
    })))
    .unwrap();
    assert!(!filter.uses_notify());

    let mkdir = || {
        let at_fdcwd = libc::AT_FDCWD as i64 as u64;
        result(sys(
            libc::SYS_mkdirat,
            at_fdcwd,
            path.as_ptr() as u64,
            0o755,
        ))
    };
    // Without the filter both calls work in a child (and mkdirat really creates the directory).
    let plain = fork_child(|| if getcwd() == 0 { mkdir() } else { 99 }).wait();
    assert_eq!(exit_code(plain), 0);
    std::fs::remove_dir(&target).unwrap();

    assert_eq!(exit_code(run_filtered(&filter, getcwd)), ENOSYS);
    assert_eq!(exit_code(run_filtered(&filter, mkdir)), EPERM);
    assert!(!target.exists(), "mkdirat ran despite SCMP_ACT_ERRNO");
}

#[test]
fn default_errno_ret_applies_to_unlisted_syscalls() {
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [
            {"names": ["exit", "exit_group", "getpid"], "action": "SCMP_ACT_ALLOW"}
        ]
    })))
    .unwrap();
    let status = run_filtered(&filter, || {
        if result(sys(libc::SYS_getpid, 0, 0, 0)) != 0 {
            return 99;
        }
        getppid()
    });
    assert_eq!(exit_code(status), ENOSYS);
}

#[test]
fn kill_and_trap_actions_end_the_child_with_sigsys() {
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_TRAP",
    ] {
        let filter = compile(&spec(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": action}]
        })))
        .unwrap();
        match run_filtered(&filter, || getppid() + 100) {
            WaitStatus::Signaled(_, Signal::SIGSYS, _) => {}
            other => panic!("{action}: expected death by SIGSYS, got {other:?}"),
        }
    }
}

#[test]
fn trace_without_tracer_fails_with_enosys() {
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 5}]
    })))
    .unwrap();
    assert_eq!(exit_code(run_filtered(&filter, getppid)), ENOSYS);
}

#[test]
fn log_action_and_log_default_allow_the_syscall() {
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_LOG",
        "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_LOG"},
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}
        ]
    })))
    .unwrap();
    let parent = std::process::id() as libc::c_long;
    let status = run_filtered(&filter, || {
        let ppid = sys(libc::SYS_getppid, 0, 0, 0);
        if ppid != parent {
            return 99;
        }
        getcwd()
    });
    assert_eq!(exit_code(status), EPERM);
}

#[test]
fn eq_condition_denies_only_the_matching_argument() {
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["personality"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]
        }]
    })))
    .unwrap();
    let status = run_filtered(&filter, || {
        if personality(0xffff_ffff) != 0 {
            return 99;
        }
        personality(8)
    });
    assert_eq!(exit_code(status), EPERM);
}

#[test]
fn masked_eq_uses_value_as_mask_and_value_two_as_target() {
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["personality"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 0, "value": 0xff, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]
        }]
    })))
    .unwrap();
    let status = run_filtered(&filter, || {
        if personality(0xffff_ffff) != 0 {
            return 97; // 0xffffffff & 0xff == 0xff: allowed
        }
        if personality(0x20008) != EPERM {
            return 98; // 0x20008 & 0xff == 8: denied
        }
        personality(8)
    });
    assert_eq!(exit_code(status), EPERM);
}

#[test]
fn conditions_on_one_index_are_split_into_ored_rules() {
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
            "args": [
                {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 131080, "op": "SCMP_CMP_EQ"}
            ]
        }]
    })))
    .unwrap();
    let status = run_filtered(&filter, || {
        if personality(0xffff_ffff) != 0 {
            return 97;
        }
        if personality(8) != ENOSYS {
            return 98;
        }
        personality(0x20008)
    });
    assert_eq!(exit_code(status), ENOSYS);
}

#[test]
fn conditions_on_distinct_indexes_are_anded() {
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["lseek"], "action": "SCMP_ACT_ERRNO",
            "args": [
                {"index": 0, "value": 1000, "op": "SCMP_CMP_EQ"},
                {"index": 2, "value": 0, "op": "SCMP_CMP_EQ"}
            ]
        }]
    })))
    .unwrap();
    let status = run_filtered(&filter, || {
        let lseek = |fd: u64, whence: u64| result(sys(libc::SYS_lseek, fd, 0, whence));
        // fd 1000 is not open: a syscall that gets through fails with EBADF.
        if lseek(1000, libc::SEEK_CUR as u64) != libc::EBADF {
            return 97;
        }
        if lseek(1001, libc::SEEK_SET as u64) != libc::EBADF {
            return 98;
        }
        lseek(1000, libc::SEEK_SET as u64)
    });
    assert_eq!(exit_code(status), EPERM);
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["berth_no_such_syscall", "getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["another_made_up_one"], "action": "SCMP_ACT_KILL"}
        ]
    })))
    .unwrap();
    assert_eq!(exit_code(run_filtered(&filter, getcwd)), ENOSYS);
}

#[test]
fn rules_equal_to_the_default_action_are_skipped() {
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [
            {"names": ["exit", "exit_group", "getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
        ]
    })))
    .unwrap();
    let status = run_filtered(&filter, || {
        if getppid() != ENOSYS {
            return 98;
        }
        getcwd()
    });
    assert_eq!(exit_code(status), EPERM);
}

#[test]
fn extra_architectures_are_compiled_in() {
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]}
        ]
    })))
    .unwrap();
    let single = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    })))
    .unwrap();
    assert!(filter.instruction_count() > single.instruction_count());
    assert_eq!(exit_code(run_filtered(&filter, getcwd)), ENOSYS);
    let socket = || result(sys(libc::SYS_socket, 40, libc::SOCK_STREAM as u64, 0));
    assert_eq!(exit_code(run_filtered(&filter, socket)), EPERM);
}

#[test]
fn large_profiles_use_the_optimized_tree_and_still_work() {
    let allowed = [
        "exit",
        "exit_group",
        "getpid",
        "read",
        "write",
        "close",
        "openat",
        "fstat",
        "lseek",
        "mmap",
        "mprotect",
        "munmap",
        "brk",
        "rt_sigaction",
        "rt_sigprocmask",
        "ioctl",
        "pread64",
        "pwrite64",
        "readv",
        "writev",
        "access",
        "pipe",
        "select",
        "sched_yield",
        "mremap",
        "msync",
        "mincore",
        "madvise",
        "dup",
        "dup2",
        "pause",
        "nanosleep",
        "getitimer",
        "alarm",
        "setitimer",
        "sendfile",
        "socket",
        "connect",
        "accept",
        "uname",
    ];
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [{"names": allowed.as_slice(), "action": "SCMP_ACT_ALLOW"}]
    })))
    .unwrap();
    let status = run_filtered(&filter, || {
        if result(sys(libc::SYS_getpid, 0, 0, 0)) != 0 {
            return 97;
        }
        if result(sys(libc::SYS_sched_yield, 0, 0, 0)) != 0 {
            return 98;
        }
        getppid()
    });
    assert_eq!(exit_code(status), ENOSYS);
}

#[test]
fn flags_load_when_the_kernel_supports_them_and_error_otherwise() {
    let supported = features()["supportedFlags"].clone();
    for flag in [
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    ] {
        let compiled = compile(&spec(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": [flag],
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
        })));
        let is_supported = supported.as_array().unwrap().contains(&json!(flag));
        match compiled {
            Ok(filter) => {
                assert!(
                    is_supported,
                    "{flag} compiled but features() says unsupported"
                );
                assert_eq!(exit_code(run_filtered(&filter, getcwd)), ENOSYS, "{flag}");
            }
            Err(err) => {
                assert!(!is_supported, "{flag}: {err}");
                assert!(matches!(err, SeccompError::FlagUnsupported { .. }));
                assert!(err.to_string().contains(flag), "{err}");
            }
        }
    }
}

/// Drops `CAP_SYS_ADMIN` from the effective set of the calling (child) process.
fn drop_cap_sys_admin() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data structs, as the ABI requires.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
            return false;
        }
        data[0].effective &= !(1 << 21); // CAP_SYS_ADMIN
        libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) == 0
    }
}

#[test]
fn load_without_no_new_privs_or_cap_sys_admin_is_denied() {
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    })))
    .unwrap();
    let denied = fork_child(|| {
        if !drop_cap_sys_admin() {
            return 97;
        }
        match filter.load() {
            Err(SeccompError::LoadDenied) => 0,
            Err(_) => 98,
            Ok(_) => 99,
        }
    })
    .wait();
    assert_eq!(exit_code(denied), 0);

    let with_nnp = fork_child(|| {
        if !drop_cap_sys_admin() {
            return 97;
        }
        if nix::sys::prctl::set_no_new_privs().is_err() {
            return 98;
        }
        match filter.load() {
            Ok(None) => getcwd(),
            _ => LOAD_FAILED,
        }
    })
    .wait();
    assert_eq!(exit_code(with_nnp), ENOSYS);
}
