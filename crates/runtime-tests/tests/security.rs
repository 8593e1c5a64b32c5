//! Security: seccomp (errno/kill/arg conditions), mount-destination symlink escapes, and
//! regression tests for the runc CVE classes (2019-5736 binary overwrite, 2024-21626 leaked fds
//! and cwd, 2021-30465 symlink-exchange race on mount destinations).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_runtime_tests::*;
use serde_json::{json, Value};

fn setup() -> Runtime {
    require_root_and_tools(&[]);
    Runtime::new()
}

fn seccomp(default: &str, syscalls: Value) -> Value {
    json!({
        "defaultAction": default,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                          "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": syscalls
    })
}

#[test]
fn seccomp_errno_action() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["linux"]["seccomp"] = seccomp(
        "SCMP_ACT_ALLOW",
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]),
    );
    b.set_sh(
        "grep -E '^Seccomp:' /proc/self/status; mkdir /tmp/x 2>&1; echo rc=$?; touch /tmp/file && echo touch-ok",
    );
    b.config["root"]["readonly"] = json!(false);
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("scerr"));
    let mut l = out.lines();
    assert_eq!(l.next(), Some("Seccomp:\t2"));
    assert!(l.next().unwrap().contains("Permission denied"), "{out}");
    assert_eq!(l.next(), Some("rc=1"));
    assert_eq!(l.next(), Some("touch-ok"));
    assert!(!b.rootfs().join("tmp/x").exists());
}

#[test]
fn seccomp_errno_default_is_eperm() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["linux"]["seccomp"] = seccomp(
        "SCMP_ACT_ALLOW",
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]),
    );
    b.set_sh("mkdir /tmp/x 2>&1; true");
    b.write_config();
    let out = rt.run_ok(&b, &unique_id("sceperm"));
    assert!(out.contains("Operation not permitted"), "{out}");
}

#[test]
fn seccomp_kill_action() {
    let rt = setup();
    let mut b = Bundle::busybox();
    b.config["linux"]["seccomp"] = seccomp(
        "SCMP_ACT_ALLOW",
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]),
    );
    // The inner shell execs the mkdir applet, which dies of SIGSYS (31): 128 + 31.
    b.set_sh("sh -c 'mkdir /tmp/x'; echo rc=$?");
    b.write_config();
    assert_eq!(rt.run_ok(&b, &unique_id("sckill")), "rc=159\n");
}

#[test]
fn seccomp_arg_condition() {
    let rt = setup();
    let mut b = Bundle::busybox();
    // kill(pid, 0) is denied; kill with any other signal passes.
    b.config["linux"]["seccomp"] = seccomp(
        "SCMP_ACT_ALLOW",
        json!([{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]}]),
    );
    b.set_sh(
        "kill -0 $$ 2>/dev/null && echo zero-ok || echo zero-denied; kill -CONT $$ && echo cont-ok",
    );
    b.write_config();
    assert_eq!(rt.run_ok(&b, &unique_id("scarg")), "zero-denied\ncont-ok\n");
}

#[test]
fn seccomp_default_errno_with_allow_list() {
    let rt = setup();
    let mut b = Bundle::busybox();
    // Deny-by-default with an allow list: uname is not allowed, so `uname` fails with EPERM.
    let allowed = [
        "read",
        "write",
        "open",
        "openat",
        "close",
        "fstat",
        "newfstatat",
        "stat",
        "lstat",
        "statx",
        "mmap",
        "munmap",
        "mprotect",
        "brk",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "ioctl",
        "access",
        "execve",
        "exit",
        "exit_group",
        "arch_prctl",
        "set_tid_address",
        "getpid",
        "getppid",
        "getuid",
        "geteuid",
        "getgid",
        "getegid",
        "fcntl",
        "dup2",
        "dup3",
        "wait4",
        "clone",
        "clone3",
        "fork",
        "vfork",
        "getcwd",
        "set_robust_list",
        "rseq",
        "prlimit64",
        "readlink",
        "readlinkat",
        "getrandom",
        "futex",
        "sigaltstack",
        "lseek",
        "pread64",
        "getdents64",
        "faccessat",
        "faccessat2",
        "poll",
        "ppoll",
        "pselect6",
        "select",
        "chdir",
        "setpgid",
        "getpgrp",
        "getpgid",
        "kill",
        "tgkill",
        "pipe",
        "pipe2",
        "prctl",
        "capget",
        "capset",
        "setgroups",
        "setuid",
        "setgid",
        "setresuid",
        "setresgid",
        "fchown",
        "fchdir",
        "umask",
        // What runtimes themselves need between loading the filter and execve.
        "fstatfs",
        "statfs",
        "close_range",
        "nanosleep",
        "clock_nanosleep",
        "clock_gettime",
        "epoll_pwait",
        "epoll_ctl",
        "epoll_create1",
        "gettid",
        "sched_yield",
        "madvise",
        "sched_getaffinity",
        "getrlimit",
        "setrlimit",
        "mremap",
        "personality",
        "getdents",
        "getppid",
        "openat2",
        "fchmod",
        "fchmodat",
        "waitid",
        "restart_syscall",
        "utimensat",
        "futimesat",
        "utime",
        "utimes",
    ];
    b.config["linux"]["seccomp"] = seccomp(
        "SCMP_ACT_ERRNO",
        json!([{"names": allowed.to_vec(), "action": "SCMP_ACT_ALLOW"}]),
    );
    b.set_sh(
        "mkdir /dev/shm/x 2>/dev/null || echo mkdir-denied; touch /dev/shm/y && echo touch-ok",
    );
    b.write_config();
    let out = rt.run(&b, &unique_id("scdeny"));
    assert_success(&out, "run with allow-list seccomp");
    assert_eq!(stdout(&out), "mkdir-denied\ntouch-ok\n");
}

/// A host directory with a `marker` file, outside any bundle.
fn host_canary() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("berth-canary-")
        .tempdir()
        .unwrap();
    std::fs::write(d.path().join("marker"), "host\n").unwrap();
    d
}

fn dir_entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn host_mounts_under(p: &Path) -> Vec<String> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = p.to_string_lossy();
    parse_mountinfo(&mi)
        .into_iter()
        .filter(|m| m.target.starts_with(&*p))
        .map(|m| m.target)
        .collect()
}

/// Mounts a tmpfs and a bind mount at destinations that are symlinks (`target`) in the rootfs;
/// both must land inside the rootfs and leave the host canary untouched.
fn symlink_destination_case(link_target: &dyn Fn(&Path) -> PathBuf, name: &str) {
    let rt = setup();
    let canary = host_canary();
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("volfile"), "vol\n").unwrap();
    let mut b = Bundle::busybox();
    std::os::unix::fs::symlink(link_target(canary.path()), b.rootfs().join("evil")).unwrap();
    std::os::unix::fs::symlink(link_target(canary.path()), b.rootfs().join("evil2")).unwrap();
    std::os::unix::fs::symlink(link_target(canary.path()), b.rootfs().join("mid")).unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/evil", "type": "tmpfs", "source": "tmpfs"}));
    mounts.push(
        json!({"destination": "/evil2", "type": "bind", "source": vol.path(),
                       "options": ["rbind", "rw"]}),
    );
    mounts.push(json!({"destination": "/mid/sub", "type": "tmpfs", "source": "tmpfs"}));
    b.set_sh(
        "echo pwned > /evil/pwned; echo pwned > /evil2/pwned2; echo pwned > /mid/sub/pwned3; \
         ls /evil2; echo ==; cat /proc/self/mountinfo",
    );
    b.write_config();
    let out = rt.run(&b, &unique_id(name));
    let before = dir_entries(canary.path());
    if out.status.success() {
        let s = stdout(&out);
        let (ls, _mi) = s.split_once("==\n").unwrap();
        // The bind mount is where the container writes: pwned2 went to the volume.
        assert!(ls.contains("volfile"), "{s}");
    }
    assert_eq!(before, ["marker"], "host canary dir was written to");
    assert_eq!(dir_entries(canary.path()), ["marker"]);
    assert!(host_mounts_under(canary.path()).is_empty());
    // Nothing on the host's side of the rootfs link target either.
    assert!(!Path::new("/pwned").exists());
}

#[test]
fn mount_destination_absolute_symlink_stays_in_rootfs() {
    symlink_destination_case(&|c| c.to_path_buf(), "symabs");
}

#[test]
fn mount_destination_dotdot_symlink_stays_in_rootfs() {
    symlink_destination_case(
        &|c| PathBuf::from(format!("../../../../../../../../../..{}", c.display())),
        "symrel",
    );
}

#[test]
fn mount_destination_symlink_to_root_stays_in_rootfs() {
    // A destination symlinked to "/" must not mount over the host's (or container's) root.
    let rt = setup();
    let mut b = Bundle::busybox();
    std::os::unix::fs::symlink("/", b.rootfs().join("rootlink")).unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/rootlink/etc", "type": "tmpfs", "source": "tmpfs"}));
    b.set_sh("ls /etc | grep -c passwd");
    b.write_config();
    let out = rt.run(&b, &unique_id("symroot"));
    // Mounting over the container's own /etc is the in-scope resolution (allowed); it must not
    // be the host's /etc.
    let host_etc = dir_entries(Path::new("/etc"));
    assert!(host_etc.contains(&"passwd".to_string()));
    if out.status.success() {
        let s = stdout(&out);
        assert!(s == "0\n" || s == "1\n", "{s}");
    }
    assert!(host_mounts_under(Path::new("/etc")).is_empty());
}

// ---- CVE-2019-5736 class -------------------------------------------------------------------

/// Runs as the container's init: for every new process in the container (an exec'd runtime
/// helper, or the runtime binary re-executed via `#!/proc/self/exe`), grab a read fd on its
/// /proc/<pid>/exe and keep trying to reopen it for writing after the process is gone.
const OVERWRITE_LOOP: &str = r#"
touch /ready
seen=" 1 "
n=0
while true; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case "$seen" in *" $p "*) continue;; esac
    seen="$seen$p "
    c=
    read c < $d/comm 2>/dev/null
    # The loop's own helpers are not runtime processes; and never more than 200 grabbers.
    case "$c" in sh|usleep|cat|readlink|"") continue;; esac
    n=$((n+1)); [ $n -gt 200 ] && continue
    echo "$p $c" >> /seen
    ( exec 3< $d/exe || exit 0
      echo "$c $(readlink /proc/self/fd/3)" >> /opened
      i=0
      while [ $i -lt 60 ]; do
        if echo PWNED >> /proc/self/fd/3; then echo "wrote via $p ($c)" >> /log; exit 0; fi
        if echo PWNED > $d/exe; then echo "wrote $d/exe ($c)" >> /log; exit 0; fi
        usleep 50000; i=$((i+1))
      done
    ) 2>/dev/null &
  done
  usleep 1000
done
"#;

#[test]
fn cve_2019_5736_runtime_binary_not_overwritable() {
    require_root_and_tools(&[]);
    // Work on a copy so a vulnerable runtime damages only the copy.
    let tmp = tempfile::tempdir().unwrap();
    let orig = runtime_bin();
    let copy = tmp.path().join(orig.file_name().unwrap());
    std::fs::copy(&orig, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let rt = Runtime::with_bin(copy.clone());

    let mut b = Bundle::busybox();
    b.config["root"]["readonly"] = json!(false);
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_DAC_OVERRIDE", "CAP_KILL"],
        "effective": ["CAP_DAC_OVERRIDE", "CAP_KILL"],
        "permitted": ["CAP_DAC_OVERRIDE", "CAP_KILL"]
    });
    b.set_sh(OVERWRITE_LOOP);
    b.write_config();
    std::fs::write(b.rootfs().join("evil.sh"), "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(
        b.rootfs().join("evil.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let id = unique_id("cve5736");
    rt.start_detached(&b, &id);
    assert!(wait_for_path(
        &b.rootfs().join("ready"),
        Duration::from_secs(5)
    ));
    for i in 0..10 {
        // The #!/proc/self/exe script re-executes whatever /proc/self/exe is for the exec'd
        // process inside the container; and plain execs give the loop runtime processes to grab.
        // (Bounded: the runtime binary run as the script's interpreter must exit promptly.)
        let _ = output_within(rt.cmd(&["exec", &id, "/evil.sh"]), Duration::from_secs(15));
        let _ = rt.exec(
            &id,
            &["sh", "-c", &format!("usleep {}", 100000 + i * 20000)],
        );
    }
    // Give the loop's writers time to retry after every runtime process exited, then stop the
    // container (before the bundle is removed, so the loop cannot write into it any more).
    std::thread::sleep(Duration::from_millis(3500));
    rt.ok(&["delete", "--force", &id]);
    let log = std::fs::read_to_string(b.rootfs().join("log")).unwrap_or_default();
    let after = std::fs::read(&copy).unwrap();
    assert!(log.is_empty(), "container wrote to a runtime binary: {log}");
    assert!(
        after == before,
        "runtime binary modified from inside the container"
    );
    // The loop really ran against the exec'd processes.
    let seen = std::fs::read_to_string(b.rootfs().join("seen")).unwrap_or_default();
    assert!(
        !seen.is_empty(),
        "the overwrite loop never saw an exec'd process"
    );
    let opened = std::fs::read_to_string(b.rootfs().join("opened")).unwrap_or_default();
    eprintln!("processes seen:\n{seen}\nexe handles grabbed:\n{opened}");
}

// ---- CVE-2024-21626 class -------------------------------------------------------------------

fn linked_fds(ls_l: &str) -> Vec<String> {
    ls_l.lines()
        .filter_map(|l| l.split_once(" -> "))
        .filter_map(|(a, _)| a.split_whitespace().last().map(String::from))
        .collect()
}

#[test]
fn cve_2024_21626_no_leaked_fds_in_init_and_exec() {
    let rt = setup();
    let b = Bundle::sh("ls -l /proc/$$/fd; sleep 1000");
    let id = unique_id("fdleak");
    let run = rt.run(&Bundle::sh("ls -l /proc/$$/fd"), &unique_id("fdrun"));
    assert_success(&run, "run");
    assert_eq!(
        linked_fds(&stdout(&run)),
        ["0", "1", "2"],
        "{}",
        stdout(&run)
    );
    rt.start_detached(&b, &id);
    let out = rt.exec(&id, &["sh", "-c", "ls -l /proc/$$/fd"]);
    assert_success(&out, "exec");
    assert_eq!(
        linked_fds(&stdout(&out)),
        ["0", "1", "2"],
        "{}",
        stdout(&out)
    );
}

const ESCAPE_PROBE: &str = "ls -a ../../../../../../../../ | grep -c '^.in-container-marker$'; pwd";

#[test]
fn cve_2024_21626_cwd_via_proc_self_fd_stays_in_container() {
    let rt = setup();
    // Control: the probe sees the marker from an ordinary cwd.
    let mut b = Bundle::busybox();
    std::fs::write(b.rootfs().join(".in-container-marker"), "").unwrap();
    b.config["process"]["cwd"] = json!("/tmp");
    b.set_sh(ESCAPE_PROBE);
    b.write_config();
    assert_eq!(rt.run_ok(&b, &unique_id("cwdctl")), "1\n/tmp\n");
    for n in 3..=10 {
        let mut b = Bundle::busybox();
        std::fs::write(b.rootfs().join(".in-container-marker"), "").unwrap();
        b.config["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        b.set_sh(ESCAPE_PROBE);
        b.write_config();
        let out = rt.run(&b, &unique_id("cwdfd"));
        if out.status.success() {
            let s = stdout(&out);
            assert!(
                s.starts_with("1\n"),
                "cwd /proc/self/fd/{n} escaped the container root: {s}"
            );
        }
    }
}

#[test]
fn cve_2024_21626_exec_cwd_via_proc_self_fd_stays_in_container() {
    let rt = setup();
    let b = Bundle::sh("sleep 1000");
    std::fs::write(b.rootfs().join(".in-container-marker"), "").unwrap();
    let id = unique_id("execcwd");
    rt.start_detached(&b, &id);
    // Control: the probe sees the marker from an ordinary cwd.
    let out = rt.exec_with(&["--cwd", "/tmp"], &id, &["sh", "-c", ESCAPE_PROBE]);
    assert_success(&out, "exec --cwd /tmp");
    assert_eq!(stdout(&out), "1\n/tmp\n");
    for n in 3..=10 {
        let cwd = format!("/proc/self/fd/{n}");
        let out = rt.exec_with(&["--cwd", &cwd], &id, &["sh", "-c", ESCAPE_PROBE]);
        if out.status.success() {
            let s = stdout(&out);
            assert!(s.starts_with("1\n"), "exec cwd {cwd} escaped: {s}");
        }
    }
}

// ---- CVE-2021-30465 class -------------------------------------------------------------------

struct RaceResult {
    ok: usize,
    outputs: Vec<String>,
    errors: Vec<String>,
    victim: Vec<String>,
    volume: Vec<String>,
}

/// Creates containers while a thread keeps exchanging the mount destination `/mnt/a` (a dir)
/// with `/mnt/b`, a symlink to the *host* path of `<rootfs>/victim`. Followed on the host side,
/// a mount (or mkdir) lands in `/victim`; resolved inside the rootfs it lands in
/// `<rootfs>/<host path of rootfs>/victim`.
fn symlink_exchange_race(rt: &Runtime) -> RaceResult {
    let mut b = Bundle::busybox();
    b.config["root"]["readonly"] = json!(false);
    let rootfs = b.rootfs().canonicalize().unwrap();
    std::fs::create_dir_all(rootfs.join("mnt/a")).unwrap();
    std::fs::create_dir_all(rootfs.join("victim")).unwrap();
    std::os::unix::fs::symlink(rootfs.join("victim"), rootfs.join("mnt/b")).unwrap();
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("VOLUME"), "").unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/mnt/a", "type": "bind", "source": vol.path(), "options": ["rbind"]
    }));
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/mnt/a/t", "type": "tmpfs", "source": "tmpfs"
    }));
    b.set_sh("ls /victim | grep -c VOLUME; grep -c ' /victim' /proc/self/mountinfo; true");
    b.write_config();

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let a =
            std::ffi::CString::new(rootfs.join("mnt/a").as_os_str().as_encoded_bytes()).unwrap();
        let bb =
            std::ffi::CString::new(rootfs.join("mnt/b").as_os_str().as_encoded_bytes()).unwrap();
        std::thread::spawn(move || {
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Vary the timing so the swap hits different steps of container setup.
                std::thread::sleep(Duration::from_micros(n * 7919 % 700));
                // SAFETY: renameat2 with valid NUL-terminated paths; RENAME_EXCHANGE swaps them.
                unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        bb.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    );
                }
            }
        })
    };
    let mut r = RaceResult {
        ok: 0,
        outputs: vec![],
        errors: vec![],
        victim: vec![],
        volume: vec![],
    };
    for _ in 0..40 {
        let out = rt.run(&b, &unique_id("race"));
        if out.status.success() {
            r.ok += 1;
            r.outputs.push(stdout(&out));
        } else {
            r.errors.push(stderr(&out));
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    r.victim = dir_entries(&rootfs.join("victim"));
    r.volume = dir_entries(vol.path());
    r
}

#[test]
fn cve_2021_30465_symlink_exchange_race_on_mount_destination() {
    let rt = setup();
    let r = symlink_exchange_race(&rt);
    let escaped: Vec<&String> = r.outputs.iter().filter(|s| *s != "0\n0\n").collect();
    assert!(escaped.is_empty(), "mount landed on /victim: {escaped:?}");
    assert!(!r.victim.iter().any(|e| e == "VOLUME"), "{:?}", r.victim);
    // (The runtime may create the nested mountpoint `t` inside the volume: that is in scope.)
    assert!(
        r.volume.iter().all(|e| e == "VOLUME" || e == "t"),
        "{:?}",
        r.volume
    );
    assert!(
        r.ok > 0,
        "no container ever started during the race: {:?}",
        r.errors
    );
}

#[test]
fn cve_2024_45310_symlink_exchange_race_creates_nothing_outside_berth_only() {
    // runc 1.1.5 (CVE-2024-45310, fixed in 1.1.14) can be raced into creating the nested
    // mountpoint directory through the swapped symlink, i.e. outside the intended path.
    let rt = setup();
    let r = symlink_exchange_race(&rt);
    assert!(
        r.victim.is_empty(),
        "runtime created {:?} through a swapped symlink",
        r.victim
    );
    assert!(
        r.ok > 0,
        "no container ever started during the race: {:?}",
        r.errors
    );
}
