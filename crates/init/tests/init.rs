//! Drives the real berth-init binary. It runs as a child of the test (it makes itself a child
//! subreaper when it is not pid 1), or as pid 1 of a new pid namespace when the test runs as root.
//! Every process a test starts is killed when the test ends, passed or failed (see [`Init`]).

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const INIT: &str = env!("CARGO_BIN_EXE_berth-init");
const TIMEOUT: Duration = Duration::from_secs(10);

/// A running berth-init; dropping it SIGKILLs every process below it, then the init itself.
struct Init {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Init {
    /// Starts `berth-init [init_args] -- sh -c script`, with the script's stdout readable by line.
    fn start(init_args: &[&str], script: &str) -> Init {
        let mut child = Command::new(INIT)
            .args(init_args)
            .args(["--", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting berth-init");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Init { child, lines }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    /// The next line the script printed.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .expect("a line from the script in time")
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill with plain integers, on our own live (or zombie) child.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits (bounded) for the init to exit.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "berth-init did not exit in time");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        kill_tree(self.pid());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// pid -> (parent pid, state) of every process, from /proc/<pid>/stat.
fn processes() -> HashMap<i32, (i32, char)> {
    let mut out = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some(info) = stat(pid) {
            out.insert(pid, info);
        }
    }
    out
}

/// (parent pid, state) of one process, None once it is gone (reaped).
fn stat(pid: i32) -> Option<(i32, char)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Every descendant of `root`.
fn descendants(root: i32) -> Vec<i32> {
    let procs = processes();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            procs
                .iter()
                .filter(|(_, (ppid, _))| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// SIGKILLs every descendant of `root` (a few rounds, for processes forked meanwhile).
fn kill_tree(root: i32) {
    for _ in 0..3 {
        let pids = descendants(root);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: kill with plain integers.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` until it holds or the timeout passes.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn passes_the_exit_code_through() {
    let mut init = Init::start(&[], "exit 42");
    assert_eq!(init.wait().code(), Some(42));
    let mut init = Init::start(&[], "true");
    assert_eq!(init.wait().code(), Some(0));
}

#[test]
fn forwards_sigterm_to_the_child() {
    // The trap runs once the current `sleep` ends; the script then exits 7 through the init.
    let mut init = Init::start(
        &[],
        "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done",
    );
    assert_eq!(init.line(), "ready");
    init.signal(libc::SIGTERM);
    assert_eq!(init.wait().code(), Some(7));
}

#[test]
fn forwards_other_signals_to_the_child() {
    let mut init = Init::start(
        &[],
        "trap 'echo usr1' USR1; trap 'echo hup' HUP; trap 'exit 3' INT; echo ready; \
         while :; do sleep 0.05; done",
    );
    assert_eq!(init.line(), "ready");
    init.signal(libc::SIGUSR1);
    assert_eq!(init.line(), "usr1");
    init.signal(libc::SIGHUP);
    assert_eq!(init.line(), "hup");
    init.signal(libc::SIGINT);
    assert_eq!(init.wait().code(), Some(3));
}

#[test]
fn a_child_killed_by_a_signal_gives_128_plus_the_signal() {
    let mut init = Init::start(&[], "kill -KILL $$");
    assert_eq!(init.wait().code(), Some(128 + libc::SIGKILL));

    // An untrapped SIGTERM, forwarded, kills the child: 143.
    let mut init = Init::start(&[], "echo ready; exec sleep 30");
    assert_eq!(init.line(), "ready");
    init.signal(libc::SIGTERM);
    assert_eq!(init.wait().code(), Some(128 + libc::SIGTERM));
}

#[test]
fn group_mode_signals_the_whole_process_group() {
    // With -g the background job (same process group as the shell) gets the signal too.
    let mut init = Init::start(
        &["-g"],
        "exec 2>/dev/null; sh -c 'trap \"echo job; exit 0\" TERM; echo jobready; while :; do sleep 0.05; done' & \
         trap 'wait; exit 9' TERM; echo ready; while :; do sleep 0.05; done",
    );
    let mut got = [init.line(), init.line()];
    got.sort();
    assert_eq!(got, ["jobready", "ready"]);
    init.signal(libc::SIGTERM);
    assert_eq!(init.line(), "job");
    assert_eq!(init.wait().code(), Some(9));
}

#[test]
fn reaps_orphaned_zombies() {
    // The subshell exits at once, so its `sleep` is orphaned and reparented to the init (a child
    // subreaper here); the init must reap it when it exits while the main child goes on.
    let mut init = Init::start(&[], "(sleep 0.3 & echo $!); exec sleep 30");
    let orphan: i32 = init.line().parse().expect("the orphan's pid");
    let init_pid = init.pid();
    eventually("the orphan is reparented to berth-init", || {
        !stat(orphan).is_some_and(|(ppid, _)| ppid != init_pid)
    });
    // Zombie or not, /proc/<pid> stays until the process is reaped.
    eventually("the orphan is reaped", || stat(orphan).is_none());
    let zombies: Vec<i32> = descendants(init_pid)
        .into_iter()
        .filter(|pid| stat(*pid).is_some_and(|(_, state)| state == 'Z'))
        .collect();
    assert!(zombies.is_empty(), "zombies under berth-init: {zombies:?}");
    init.signal(libc::SIGTERM);
    assert_eq!(init.wait().code(), Some(128 + libc::SIGTERM));
}

#[test]
fn reaps_zombies_left_by_the_child() {
    // `sleep 0.2` becomes a zombie of the exec'd `sleep 0.5` (which never waits); when the main child
    // exits, the zombie is reparented to the init, which reaps it and then exits with the code.
    let mut init = Init::start(&[], "sleep 0.2 & echo $!; exec sleep 0.5");
    let zombie: i32 = init.line().parse().expect("the background job's pid");
    assert_eq!(init.wait().code(), Some(0));
    // The init exits only after the reaping round that saw its child exit, so the zombie is gone
    // already (were it not, it would be reparented again and reaped later by someone else).
    assert_eq!(stat(zombie), None, "the zombie outlived berth-init");
}

#[test]
fn exec_failure_exits_127() {
    let out = Command::new(INIT)
        .arg("/nonexistent/program")
        .output()
        .expect("running berth-init");
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/program"), "{stderr}");
}

#[test]
fn no_program_is_a_usage_error() {
    let out = Command::new(INIT).output().expect("running berth-init");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}

#[test]
fn the_binary_is_static() {
    // A static executable has no PT_INTERP program header (no dynamic loader).
    let mut elf = Vec::new();
    fs::File::open(INIT)
        .and_then(|mut f| f.read_to_end(&mut elf))
        .expect("reading the binary");
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "a 64-bit ELF");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let off = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(elf[off..off + 4].try_into().expect("4 bytes"));
        assert_ne!(
            p_type, 3,
            "berth-init has a PT_INTERP header: it is dynamically linked"
        );
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn runs_in_an_empty_chroot() {
    if !is_root() {
        eprintln!("skipped: chroot needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    fs::copy(INIT, dir.path().join("berth-init")).expect("copying the binary");
    // The only program there is berth-init itself: run it without arguments, under itself.
    let out = Command::new("chroot")
        .arg(dir.path())
        .args(["/berth-init", "/berth-init"])
        .output()
        .expect("running chroot");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("usage"), "{stderr}");
}

#[test]
fn as_pid_1_of_a_pid_namespace() {
    if !is_root() || !Path::new("/usr/bin/unshare").exists() {
        eprintln!("skipped: needs root and unshare(1)");
        return;
    }
    // Inside: the shell's parent is pid 1 (the init), an orphan is reaped, no zombie is left.
    let script = "[ \"$PPID\" = 1 ] || exit 11; (sleep 0.1 &); sleep 0.5; \
                  if grep -qs '^State:.*Z' /proc/[0-9]*/status; then exit 12; fi; exit 5";
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child", INIT])
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null());
    let mut child = cmd.spawn().expect("running unshare");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            // --kill-child: killing unshare kills the namespace's init, and the kernel the rest.
            let _ = child.kill();
            let _ = child.wait();
            panic!("berth-init in a pid namespace did not exit in time");
        }
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(5));
}

/// `berth-init --pause` (a pod's infra process), killed on drop (a failed test leaves nothing).
struct Paused(Child);

impl Paused {
    fn start(cmd: &mut Command) -> Paused {
        Paused(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("starting berth-init --pause"),
        )
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).expect("pid fits i32")
    }

    /// Waits (bounded) for it to exit.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "berth-init --pause did not exit in time"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        kill_tree(self.pid());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `pid` waits in sigwaitinfo (or has blocked `sig` on its way there).
fn waits_for_signals(pid: i32, sig: i32) -> bool {
    let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    if wchan.contains("sigtimedwait") {
        return true;
    }
    // sigwaitinfo unblocks the signals it waits for while it waits: SigBlk shows them only
    // between the sigprocmask and the wait.
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("SigBlk:"))?.to_string();
            u64::from_str_radix(l["SigBlk:".len()..].trim(), 16).ok()
        })
        .is_some_and(|mask| mask & (1 << (sig - 1)) != 0)
}

#[test]
fn pause_mode_ignores_other_signals_and_exits_0_on_sigterm_or_sigint() {
    for stop in [libc::SIGTERM, libc::SIGINT] {
        let mut pause = Paused::start(Command::new(INIT).arg("--pause"));
        let pid = pause.pid();
        eventually("berth-init waits for signals", || {
            waits_for_signals(pid, stop)
        });
        for sig in [libc::SIGHUP, libc::SIGUSR1, libc::SIGCHLD] {
            // SAFETY: kill with plain integers, on our own child.
            assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
        }
        thread::sleep(Duration::from_millis(100));
        assert!(
            pause.0.try_wait().expect("try_wait").is_none(),
            "berth-init --pause exited on an ignored signal"
        );
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(pid, stop) }, 0);
        assert_eq!(pause.wait().code(), Some(0));
    }
    // --pause takes no program.
    let out = Command::new(INIT)
        .args(["--pause", "sh"])
        .output()
        .expect("running berth-init");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn pause_mode_as_pid_1_reaps_orphans() {
    if !is_root()
        || !Path::new("/usr/bin/unshare").exists()
        || !Path::new("/usr/bin/nsenter").exists()
    {
        eprintln!("skipped: needs root, unshare(1) and nsenter(1)");
        return;
    }
    let mut unshare = Paused::start(
        Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", INIT])
            .arg("--pause"),
    );
    let mut pause = None;
    eventually("berth-init runs as pid 1 of its namespace", || {
        pause = descendants(unshare.pid()).first().copied();
        pause.is_some()
    });
    let pause = pause.expect("the pause process");
    eventually("berth-init waits for signals", || {
        waits_for_signals(pause, libc::SIGTERM)
    });
    // An orphan made inside the namespace is reparented to its pid 1, which must reap it.
    let out = Command::new("nsenter")
        .args(["--target", &pause.to_string(), "--pid", "--"])
        .args(["sh", "-c", "sh -c 'sleep 1 >/dev/null 2>&1 &'"])
        .output()
        .expect("running nsenter");
    assert!(out.status.success(), "{out:?}");
    eventually("the orphan is reparented to the pause process", || {
        !descendants(pause).is_empty()
    });
    eventually("the orphan is reaped", || descendants(pause).is_empty());
    // SAFETY: kill with plain integers, on a process of this test.
    assert_eq!(unsafe { libc::kill(pause, libc::SIGTERM) }, 0);
    assert_eq!(unshare.wait().code(), Some(0));
}
