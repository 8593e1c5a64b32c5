//! berth-init: a tiny init for containers (`berth run --init`), in the manner of tini.
//!
//! It runs as pid 1 of the container, starts `PROGRAM ARG...` as its only direct child, in a process
//! group of its own that also gets the terminal's foreground, and then only waits for signals:
//! - SIGCHLD: every exited process is reaped (orphans are reparented to pid 1, or to berth-init
//!   anyway when it is not pid 1: it makes itself a child subreaper);
//! - any other signal (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1/2, SIGWINCH, SIGCONT, real-time
//!   signals...) is forwarded to the child, or to the child's process group with `-g`.
//!
//! When the child exits, berth-init exits with its exit code, or 128 + the signal number when a signal
//! killed it. The synchronous signals (SIGSEGV, SIGFPE...) are never blocked, and SIGTTIN/SIGTTOU are
//! ignored so that the init is never stopped by the terminal it handed to the child.
//!
//! `berth-init --pause` runs no program: it is the pause process of a pod's infra container (it only
//! holds the namespaces the pod's containers join). It reaps whatever is reparented to it and exits 0
//! on SIGTERM or SIGINT; every other signal is ignored.
//!
//! The binary is linked statically (see build.rs): it is bind-mounted into containers whose rootfs may
//! have no libc, and it is the only file of the pod's pause image (`localhost/berth-pause`).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::process::exit;
use std::ptr;

const USAGE: &str = "usage: berth-init [-g] [--] PROGRAM [ARG...]
       berth-init --pause
Runs PROGRAM as the child of a minimal init: forwards signals to it, reaps zombies, and exits with
its exit code (128 + N when signal N killed it).
  -g        forward signals to the child's process group instead of the child only
  --pause   run no program: wait for SIGTERM or SIGINT (then exit 0), reaping children";

/// Exit code for a usage error.
const EXIT_USAGE: i32 = 2;

/// Signals the kernel sends to the thread that caused them: never blocked, never forwarded.
const SYNCHRONOUS: [libc::c_int; 7] = [
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// Terminal job-control signals, ignored by the init (the child holds the terminal's foreground).
const TTY_STOPS: [libc::c_int; 2] = [libc::SIGTTIN, libc::SIGTTOU];

/// What the command line asks for.
#[derive(Debug)]
struct Options {
    /// Forward signals to the child's whole process group.
    group: bool,
    /// Pause mode: no program (a pod's infra process).
    pause: bool,
    /// The program and its arguments (empty in pause mode).
    argv: Vec<CString>,
}

fn main() {
    let opts = match parse_args(std::env::args_os().skip(1).map(OsStringExt::into_vec)) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            println!("{USAGE}");
            exit(0);
        }
        Err(msg) => {
            eprintln!("berth-init: {msg}\n{USAGE}");
            exit(EXIT_USAGE);
        }
    };
    let result = if opts.pause { pause() } else { run(&opts) };
    match result {
        Ok(code) => exit(code),
        Err(e) => {
            eprintln!("berth-init: {e}");
            exit(1);
        }
    }
}

/// Parses `[-g] [--] PROGRAM [ARG...]`; `Ok(None)` asks for the help text.
fn parse_args(mut args: impl Iterator<Item = Vec<u8>>) -> Result<Option<Options>, String> {
    let mut group = false;
    let mut pause = false;
    let mut argv = Vec::new();
    for arg in args.by_ref() {
        match arg.as_slice() {
            b"-g" => group = true,
            b"--pause" => pause = true,
            b"-h" | b"--help" => return Ok(None),
            b"--" => break,
            [b'-', _, ..] => {
                return Err(format!("unknown option {}", String::from_utf8_lossy(&arg)))
            }
            _ => {
                argv.push(arg);
                break;
            }
        }
    }
    argv.extend(args);
    if pause {
        if group || !argv.is_empty() {
            return Err("--pause takes no program and no other option".to_string());
        }
        return Ok(Some(Options {
            group,
            pause,
            argv: Vec::new(),
        }));
    }
    if argv.is_empty() {
        return Err("no program to run".to_string());
    }
    let argv = argv
        .into_iter()
        .map(CString::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "an argument contains a NUL byte".to_string())?;
    Ok(Some(Options { group, pause, argv }))
}

/// Pause mode: no child of its own; reaps whatever is reparented to it until SIGTERM or SIGINT.
fn pause() -> io::Result<i32> {
    let (waitset, _) = block_signals()?;
    become_subreaper_unless_pid_1();
    loop {
        match wait_signal(&waitset)? {
            libc::SIGCHLD => {
                reap(0)?;
            }
            libc::SIGTERM | libc::SIGINT => return Ok(0),
            _ => {}
        }
    }
}

/// Not pid 1 (tests, or a pid namespace shared with something else): be the reaper of the
/// orphans below us anyway.
fn become_subreaper_unless_pid_1() {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer argument only.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            let e = io::Error::last_os_error();
            eprintln!("berth-init: warning: cannot become a child subreaper: {e}");
        }
    }
}

/// Starts the child and serves signals until it exits; returns the exit code to exit with.
fn run(opts: &Options) -> io::Result<i32> {
    let (waitset, old_mask) = block_signals()?;
    become_subreaper_unless_pid_1();
    let child = spawn(&opts.argv, &old_mask)?;
    loop {
        let sig = wait_signal(&waitset)?;
        if sig == libc::SIGCHLD {
            if let Some(status) = reap(child)? {
                return Ok(exit_code(status));
            }
        } else {
            forward(child, sig, opts.group);
        }
    }
}

/// Blocks every asynchronous signal (they are taken with sigwaitinfo) and ignores the terminal stops.
/// Returns the set to wait on and the signal mask the init started with (restored in the child).
fn block_signals() -> io::Result<(libc::sigset_t, libc::sigset_t)> {
    // SAFETY: sigset_t is plain data; sigemptyset/sigfillset initialize it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigfillset(&mut set) };
    for sig in SYNCHRONOUS.iter().chain(TTY_STOPS.iter()) {
        // SAFETY: `set` is a valid sigset_t and `sig` a valid signal number.
        unsafe { libc::sigdelset(&mut set, *sig) };
    }
    for sig in TTY_STOPS {
        // SAFETY: SIG_IGN is a valid disposition for these catchable signals.
        if unsafe { libc::signal(sig, libc::SIG_IGN) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: both pointers are valid sigset_t.
    if unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set, &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((set, old))
}

/// Forks the child: own process group, terminal foreground, the original signal state, then exec.
fn spawn(argv: &[CString], old_mask: &libc::sigset_t) -> io::Result<libc::pid_t> {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(ptr::null());
    // SAFETY: the init is single-threaded, so the child may run any code after fork.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => exec_child(argv, &ptrs, old_mask),
        pid => {
            // Also done here, so that `-g` finds the group even before the child ran (EACCES once
            // the child has exec'd, which is fine: it did it itself).
            // SAFETY: setpgid on our own child with plain integers.
            unsafe { libc::setpgid(pid, pid) };
            Ok(pid)
        }
    }
}

/// The child's side of [`spawn`]; never returns.
fn exec_child(argv: &[CString], ptrs: &[*const libc::c_char], old_mask: &libc::sigset_t) -> ! {
    // SAFETY: setpgid(0, 0) puts the calling process in a group of its own.
    unsafe { libc::setpgid(0, 0) };
    // SAFETY: isatty/tcsetpgrp on fd 0 with our own group; SIGTTOU is still ignored here, and a
    // stdin that is no terminal (ENOTTY) or not ours (ENXIO, EPERM) is simply left alone.
    unsafe {
        if libc::isatty(libc::STDIN_FILENO) == 1 {
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp());
        }
    }
    // Rust's runtime ignores SIGPIPE: the program gets the default dispositions back.
    for sig in TTY_STOPS.into_iter().chain([libc::SIGPIPE]) {
        // SAFETY: SIG_DFL is a valid disposition for these signals.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: `old_mask` is the valid mask saved by block_signals.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, old_mask, ptr::null_mut()) };
    // SAFETY: `ptrs` holds pointers into `argv`'s live CStrings and ends with a null pointer.
    unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
    let err = io::Error::last_os_error();
    eprintln!("berth-init: exec {}: {err}", argv[0].to_string_lossy());
    let code = if err.raw_os_error() == Some(libc::ENOENT) {
        127
    } else {
        126
    };
    // SAFETY: _exit ends the forked child without running the parent's atexit handlers.
    unsafe { libc::_exit(code) }
}

/// Waits for the next signal of `set`.
fn wait_signal(set: &libc::sigset_t) -> io::Result<libc::c_int> {
    loop {
        // SAFETY: `set` is a valid sigset_t; a null siginfo pointer is allowed.
        let sig = unsafe { libc::sigwaitinfo(set, ptr::null_mut()) };
        if sig > 0 {
            return Ok(sig);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Reaps every exited process; returns the child's wait status once the child is among them (no
/// child of ours has pid 0: `reap(0)` reaps only).
fn reap(child: libc::pid_t) -> io::Result<Option<libc::c_int>> {
    let mut child_status = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid pointer to an int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => break,
            -1 => match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => break,
                _ => return Err(io::Error::last_os_error()),
            },
            pid if pid == child => child_status = Some(status),
            _ => {}
        }
    }
    Ok(child_status)
}

/// Passes `sig` on to the child (or its process group); a child already gone is not an error.
fn forward(child: libc::pid_t, sig: libc::c_int, group: bool) {
    let target = if group { -child } else { child };
    // SAFETY: kill with plain integers.
    if unsafe { libc::kill(target, sig) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            eprintln!("berth-init: forwarding signal {sig} to {target}: {err}");
        }
    }
}

/// The init's exit code for the child's wait status: its exit code, or 128 + the killing signal.
fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        parse_args(args.iter().map(|a| a.as_bytes().to_vec()))
    }

    #[test]
    fn parses_options_and_program() {
        let opts = parse(&["-g", "--", "-x", "a"]).unwrap().unwrap();
        assert!(opts.group);
        assert_eq!(opts.argv, [c"-x", c"a"]);
        let opts = parse(&["sh", "-g"]).unwrap().unwrap();
        assert!(!opts.group);
        assert_eq!(opts.argv, [c"sh", c"-g"]);
        assert!(parse(&["--help"]).unwrap().is_none());
        assert!(parse(&[]).is_err());
        assert!(parse(&["-g"]).is_err());
        assert!(parse(&["-z", "sh"]).unwrap_err().contains("-z"));
        let opts = parse(&["--pause"]).unwrap().unwrap();
        assert!(opts.pause && opts.argv.is_empty());
        assert!(parse(&["--pause", "sh"]).is_err());
        assert!(parse(&["-g", "--pause"]).is_err());
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(7 << 8), 7);
        assert_eq!(exit_code(libc::SIGKILL), 137);
        assert_eq!(exit_code(libc::SIGTERM), 143);
    }
}
