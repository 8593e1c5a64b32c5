//! `berth-monitor RUN_DIR`: watches one container. Started by `berth` (detached, in its own session)
//! with fd 3 a unix socket back to its starter, which sends `GO` once `RUN_DIR/monitor.json` is
//! written (the monitor starts up meanwhile; EOF instead of `GO`: the start failed, it just ends).
//!
//! 1. Becomes a child subreaper, so the container's init (forked by the runtime, which then exits)
//!    becomes its child and its exit status comes here.
//! 2. Makes the container's stdio: pipes (stdout, stderr, and stdin when kept open), or a console
//!    socket on which the runtime sends the pty master.
//! 3. Creates and starts the container: berth's runtime library in a forked child (in-process, no
//!    runtime binary is exec'd), or a runtime binary's `create` + `start` (runc's protocol).
//! 4. Reports `STARTED` (init pid, own pid) or `ERROR` to the starter, binds `RUN_DIR/attach.sock`
//!    and relays: output to the log and to attach clients, client input to the container's stdin,
//!    resize and signal requests.
//! 5. When the init exits and its output is drained: writes `RUN_DIR/exit`, sends `EXIT` to the
//!    clients, and execs the configured exit command (the engine's clean-up) in its own place, with
//!    the starter's socket still open so that a foreground `berth run` returns only once the
//!    clean-up is done.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use berth_monitor::config::{self, ExitRecord, MonitorConfig, RuntimeChoice};
use berth_monitor::frame::{self, Decoder};
use berth_monitor::logfile::{self, Stream, Writer};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

/// The starter's socket, inherited.
const STARTER_FD: RawFd = 3;
/// How long output may keep coming after the init exited (processes that escaped its pid namespace).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// Quiet time after which the pages that activity faulted in are shed (see `shed_file_pages`).
const IDLE_SHED_MS: i32 = 1000;

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: berth-monitor RUN_DIR (started by berth)");
        return ExitCode::from(2);
    };
    // SAFETY: fcntl(F_GETFD) on an integer fd only queries its flags.
    if unsafe { libc::fcntl(STARTER_FD, libc::F_GETFD) } < 0 {
        eprintln!("berth-monitor: fd 3 (the starter's socket) is not open");
        return ExitCode::from(2);
    }
    // Nothing but stdio and fd 3 is meant for us: close whatever else the starter let through.
    // SAFETY: close_range on descriptors above 3, none of which this process uses.
    unsafe { libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) };
    // SAFETY: fd 3 is open (checked above) and handed to us by the starter; nothing else owns it.
    let starter = unsafe { UnixStream::from_raw_fd(STARTER_FD) };
    let _ = fcntl(&starter, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    match run(&dir, starter) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-monitor: {e}");
            ExitCode::from(1)
        }
    }
}

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The container's stdio as the monitor holds it.
struct Stdio3 {
    /// Where client input goes (pipe write end or the pty master).
    stdin: Option<OwnedFd>,
    /// Output sources: (fd, stream).
    outputs: Vec<(OwnedFd, Stream)>,
    /// The pty master (terminal containers).
    master: Option<RawFd>,
}

struct Client {
    sock: UnixStream,
    dec: Decoder,
}

fn run(dir: &Path, mut starter: UnixStream) -> Res<()> {
    // Started early: wait until the starter has written our config (or gave up: EOF).
    match frame::read_frame(&mut starter) {
        Ok(Some(f)) if f.kind == frame::GO => {}
        Ok(None) => return Ok(()),
        Ok(Some(f)) => {
            return Err(format!(
                "expected GO from the starter, got frame kind {}",
                f.kind
            ))
        }
        Err(e) => return Err(format!("waiting for the starter: {e}")),
    }
    let cfg = MonitorConfig::load(dir).map_err(err("reading monitor.json"))?;
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // SAFETY: setting a signal disposition to SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(err("blocking SIGCHLD"))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(err("signalfd"))?;
    let dir_fd: OwnedFd = nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(err("opening the run dir"))?;
    let mut log = Writer::open(&cfg.log_path, cfg.log_max_size, cfg.log_max_files)
        .map_err(err("opening the log"))?;

    let mut starter = Some(starter);
    let started = start_container(&cfg, dir, dir_fd.as_raw_fd());
    let (init, mut stdio) = match started {
        Ok(v) => v,
        Err(e) => {
            if let Some(s) = &mut starter {
                let _ = frame::write_frame(s, frame::ERROR, e.as_bytes());
            }
            return Err(e);
        }
    };
    let attach_path = config::short_socket_path(dir_fd.as_raw_fd(), config::ATTACH_SOCKET);
    let _ = std::fs::remove_file(dir.join(config::ATTACH_SOCKET));
    let listener = UnixListener::bind(&attach_path).map_err(err("binding the attach socket"))?;
    listener
        .set_nonblocking(true)
        .map_err(err("attach socket"))?;
    if let Some(s) = &mut starter {
        let mut p = init.as_raw().to_be_bytes().to_vec();
        p.extend_from_slice(&(std::process::id() as i32).to_be_bytes());
        if frame::write_frame(s, frame::STARTED, &p).is_err() {
            starter = None;
        }
    }

    shed_file_pages();
    let mut touched = true;
    let mut clients: Vec<Client> = Vec::new();
    let mut starter_dec = Decoder::default();
    let mut pending_stdin: Vec<u8> = Vec::new();
    let mut close_stdin_when_flushed = false;
    let mut exit: Option<(i32, Instant, i64)> = None;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // Reap: the init (and anything else that was reparented to us).
        while let Ok(ws) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            match ws {
                WaitStatus::Exited(p, c) if p == init => {
                    exit = Some((c, Instant::now(), logfile::now_ns()))
                }
                WaitStatus::Signaled(p, s, _) if p == init => {
                    exit = Some((128 + s as i32, Instant::now(), logfile::now_ns()))
                }
                WaitStatus::StillAlive => break,
                _ => {}
            }
        }
        if let Some((_, at, _)) = exit {
            if stdio.outputs.is_empty() || at.elapsed() > DRAIN_AFTER_EXIT {
                break;
            }
        }

        let mut fds: Vec<libc::pollfd> = Vec::new();
        let pfd = |fd: RawFd, events: i16| libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        fds.push(pfd(sfd.as_raw_fd(), libc::POLLIN));
        fds.push(pfd(listener.as_raw_fd(), libc::POLLIN));
        let out_base = fds.len();
        for (fd, _) in &stdio.outputs {
            fds.push(pfd(fd.as_raw_fd(), libc::POLLIN));
        }
        let stdin_idx = match (&stdio.stdin, pending_stdin.is_empty()) {
            (Some(fd), false) => {
                fds.push(pfd(fd.as_raw_fd(), libc::POLLOUT));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        let starter_idx = starter.as_ref().map(|s| {
            fds.push(pfd(s.as_raw_fd(), libc::POLLIN));
            fds.len() - 1
        });
        let client_base = fds.len();
        for c in &clients {
            fds.push(pfd(c.sock.as_raw_fd(), libc::POLLIN));
        }
        // After activity, shed the pages it faulted in once things are quiet again (an idle
        // monitor then blocks in poll with a minimal footprint).
        let timeout = if exit.is_some() {
            100
        } else if touched {
            IDLE_SHED_MS
        } else {
            -1
        };
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        if n == 0 && touched && exit.is_none() {
            shed_file_pages();
            touched = false;
            continue;
        }
        touched = true;
        if fds[0].revents != 0 {
            while let Ok(Some(_)) = sfd.read_signal() {}
        }
        if fds[1].revents != 0 {
            while let Ok((s, _)) = listener.accept() {
                let _ = s.set_nonblocking(false);
                clients.push(Client {
                    sock: s,
                    dec: Decoder::default(),
                });
            }
        }
        // Output: to the log and to every client (the starter too, when it stayed attached).
        let mut closed = Vec::new();
        for (i, (fd, stream)) in stdio.outputs.iter().enumerate() {
            let re = fds[out_base + i].revents;
            if re == 0 {
                continue;
            }
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => closed.push(i),
                Ok(n) => {
                    let data = &buf[..n];
                    let _ = log.write(*stream, data);
                    let kind = match stream {
                        Stream::Stdout => frame::STDOUT,
                        Stream::Stderr => frame::STDERR,
                    };
                    let f = frame::encode(kind, data);
                    clients.retain_mut(|c| c.sock.write_all(&f).is_ok());
                    if let Some(s) = &mut starter {
                        if s.write_all(&f).is_err() {
                            starter = None;
                        }
                    }
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(_) => closed.push(i),
            }
        }
        for i in closed.into_iter().rev() {
            stdio.outputs.remove(i);
        }
        if let Some(i) = stdin_idx {
            if fds[i].revents != 0 {
                if let Some(fd) = &stdio.stdin {
                    match nix::unistd::write(fd, &pending_stdin) {
                        Ok(n) => {
                            pending_stdin.drain(..n);
                        }
                        Err(nix::errno::Errno::EAGAIN) => {}
                        Err(_) => {
                            pending_stdin.clear();
                            stdio.stdin = None;
                        }
                    }
                }
            }
        }
        // Input from the starter and the clients.
        let mut requests = Vec::new();
        if let Some(i) = starter_idx {
            if fds[i].revents != 0 {
                let alive = match &mut starter {
                    Some(s) => read_frames(s, &mut starter_dec, &mut buf, &mut requests),
                    None => true,
                };
                if !alive {
                    starter = None;
                }
            }
        }
        let mut gone = Vec::new();
        for (k, c) in clients.iter_mut().enumerate() {
            if fds[client_base + k].revents != 0
                && !read_frames(&mut c.sock, &mut c.dec, &mut buf, &mut requests)
            {
                gone.push(k);
            }
        }
        for k in gone.into_iter().rev() {
            clients.remove(k);
        }
        for f in requests {
            match f.kind {
                frame::STDIN => pending_stdin.extend_from_slice(&f.payload),
                frame::STDIN_EOF => close_stdin_when_flushed = true,
                frame::RESIZE if f.payload.len() == 4 => {
                    if let Some(m) = stdio.master {
                        let ws = libc::winsize {
                            ws_row: u16::from_be_bytes([f.payload[0], f.payload[1]]),
                            ws_col: u16::from_be_bytes([f.payload[2], f.payload[3]]),
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        // SAFETY: TIOCSWINSZ reads a winsize struct that lives across the call.
                        unsafe { libc::ioctl(m, libc::TIOCSWINSZ, &ws) };
                    }
                }
                frame::SIGNAL => {
                    if let Some(sig) = f.int() {
                        // SAFETY: kill(2) with integer arguments.
                        unsafe { libc::kill(init.as_raw(), sig) };
                    }
                }
                _ => {}
            }
        }
        if close_stdin_when_flushed && pending_stdin.is_empty() && stdio.master.is_none() {
            stdio.stdin = None;
        }
    }

    let _ = log.flush_partial();
    let (code, _, finished_ns) = exit.unwrap_or((-1, Instant::now(), logfile::now_ns()));
    ExitRecord {
        code,
        finished_ns,
        oom_killed: false,
    }
    .save(dir)
    .map_err(err("writing the exit file"))?;
    let f = frame::encode(frame::EXIT, &code.to_be_bytes());
    for c in &mut clients {
        let _ = c.sock.write_all(&f);
    }
    drop(clients);
    drop(listener);
    let _ = std::fs::remove_file(dir.join(config::ATTACH_SOCKET));
    if let Some(s) = &mut starter {
        // A foreground starter cleans up itself (no exec of the engine here) and says CLEANED;
        // if it goes away without saying so (killed), the clean-up is ours.
        if s.write_all(&f).is_ok() && starter_cleaned(s, &mut starter_dec) {
            return Ok(());
        }
        // The clean-up keeps it open: the starter's end sees EOF when the clean-up is over.
        let _ = fcntl(&*s, FcntlArg::F_SETFD(FdFlag::empty()));
    }
    if cfg.exit_command.is_empty() {
        return Ok(());
    }
    let argv: Vec<CString> = cfg
        .exit_command
        .iter()
        .filter_map(|a| CString::new(a.as_str()).ok())
        .collect();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(err("unblocking signals"))?;
    let e = nix::unistd::execv(&argv[0], &argv).unwrap_err();
    Err(format!("exec {:?}: {e}", cfg.exit_command[0]))
}

/// Drops the page-table entries of the read-only file mappings (our binary's code, libc, ld.so)
/// that start-up touched, and turns off fault-around for them: the monitor idles for the
/// container's whole life, touching a few pages of code per event, while the kernel's fault-around
/// had mapped ~2.5 MB of libc and binary pages around the ones start-up needed. Only mappings that
/// are not writable and hold no private (copied) page are touched, so nothing but page-table entries
/// is dropped: the pages stay in the page cache and come back on use.
fn shed_file_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut current: Option<(usize, usize, bool)> = None;
    let shed = |vma: Option<(usize, usize, bool)>, anon_kb: u64| {
        if let Some((start, end, eligible)) = vma {
            if eligible && anon_kb == 0 {
                // SAFETY: advising the kernel about a mapping of this process that is read-only,
                // file-backed and holds no private pages: MADV_DONTNEED only drops its page-table
                // entries, which refault from the page cache with the same contents.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM);
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
                }
            }
        }
    };
    let mut anon_kb = 0u64;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                shed(current.take(), anon_kb);
                anon_kb = 0;
                let perms = f.next().unwrap_or("");
                let inode = f.nth(2).unwrap_or("0");
                let path = f.next().unwrap_or("");
                let eligible = !perms.contains('w') && inode != "0" && path.starts_with('/');
                current = Some((start, end, eligible));
                continue;
            }
        }
        if first == "Anonymous:" {
            anon_kb = f.next().and_then(|v| v.parse().ok()).unwrap_or(1);
        }
    }
    shed(current, anon_kb);
}

/// After EXIT: waits for the starter's CLEANED (true), or its hang-up or silence (false).
fn starter_cleaned(s: &mut UnixStream, dec: &mut Decoder) -> bool {
    const PATIENCE: Duration = Duration::from_secs(60);
    if s.set_read_timeout(Some(PATIENCE)).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    loop {
        loop {
            match dec.next_frame() {
                Ok(Some(f)) if f.kind == frame::CLEANED => return true,
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return false,
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => dec.push(&buf[..n]),
        }
    }
}

/// Reads what a client sent; false when it hung up.
fn read_frames(
    s: &mut UnixStream,
    dec: &mut Decoder,
    buf: &mut [u8],
    out: &mut Vec<frame::Frame>,
) -> bool {
    match s.read(buf) {
        Ok(0) => false,
        Ok(n) => {
            dec.push(&buf[..n]);
            loop {
                match dec.next_frame() {
                    Ok(Some(f)) => out.push(f),
                    Ok(None) => return true,
                    Err(_) => return false,
                }
            }
        }
        Err(e) => e.kind() == std::io::ErrorKind::Interrupted,
    }
}

fn pipe() -> Res<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(err("pipe"))
}

/// Makes the stdio, creates and starts the container; returns the init's pid and our ends.
fn start_container(cfg: &MonitorConfig, dir: &Path, dir_fd: RawFd) -> Res<(Pid, Stdio3)> {
    let me = std::process::id();
    let console_listener = if cfg.terminal {
        let _ = std::fs::remove_file(dir.join(config::CONSOLE_SOCKET));
        Some(
            UnixListener::bind(config::short_socket_path(dir_fd, config::CONSOLE_SOCKET))
                .map_err(err("binding the console socket"))?,
        )
    } else {
        None
    };
    // The runtime connects by path from another process: name our fd through /proc/<our pid>.
    let console_path = PathBuf::from(format!("/proc/{me}/fd/{dir_fd}/{}", config::CONSOLE_SOCKET));
    let pid_file = dir.join(config::PID_FILE);
    let _ = std::fs::remove_file(&pid_file);

    // Child ends (given to the container) and our ends.
    let null = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(err("/dev/null"))
    };
    let (child_in, child_out, child_err, ours) = if cfg.terminal {
        (
            null()?,
            null()?,
            null()?,
            Stdio3 {
                stdin: None,
                outputs: Vec::new(),
                master: None,
            },
        )
    } else {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (in_child, in_ours) = if cfg.stdin_open {
            let (r, w) = pipe()?;
            nix::fcntl::fcntl(&w, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .map_err(err("stdin pipe"))?;
            (r, Some(w))
        } else {
            (null()?, None)
        };
        for fd in [&out_r, &err_r] {
            nix::fcntl::fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .map_err(err("output pipe"))?;
        }
        (
            in_child,
            out_w,
            err_w,
            Stdio3 {
                stdin: in_ours,
                outputs: vec![(out_r, Stream::Stdout), (err_r, Stream::Stderr)],
                master: None,
            },
        )
    };
    let console = cfg.terminal.then_some(console_path.as_path());
    match &cfg.runtime {
        RuntimeChoice::Builtin { root } => builtin_run(
            cfg,
            root,
            console,
            &pid_file,
            [&child_in, &child_out, &child_err],
        )?,
        RuntimeChoice::Binary { path, root } => {
            let stdio = [&child_in, &child_out, &child_err];
            let log = dir.join(config::RUNTIME_LOG);
            let mut create = vec![
                "create".to_string(),
                "--bundle".into(),
                cfg.bundle.display().to_string(),
                "--pid-file".into(),
                pid_file.display().to_string(),
            ];
            if let Some(c) = console {
                create.push("--console-socket".into());
                create.push(c.display().to_string());
            }
            create.push(cfg.id.clone());
            runtime_binary(path, root, &log, &create, Some(stdio))?;
            if let Err(e) =
                runtime_binary(path, root, &log, &["start".into(), cfg.id.clone()], None)
            {
                let _ = runtime_binary(
                    path,
                    root,
                    &log,
                    &["delete".into(), "--force".into(), cfg.id.clone()],
                    None,
                );
                return Err(e);
            }
        }
    }
    drop((child_in, child_out, child_err));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .map_err(err("reading the runtime's pid file"))?
        .trim()
        .parse()
        .map_err(err("the runtime's pid file"))?;
    let mut ours = ours;
    if let Some(l) = console_listener {
        let master = receive_master(&l)?;
        nix::fcntl::fcntl(&master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(err("pty master"))?;
        let dup = nix::unistd::dup(&master).map_err(err("dup"))?;
        let _ = fcntl(&dup, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        ours.master = Some(master.as_raw_fd());
        ours.outputs.push((master, Stream::Stdout));
        ours.stdin = Some(dup);
        let _ = std::fs::remove_file(dir.join(config::CONSOLE_SOCKET));
    }
    Ok((Pid::from_raw(pid), ours))
}

/// Creates and starts the container with berth's runtime library in a forked child (the library
/// forks the init; the child then exits and the init is reparented to us, the subreaper).
fn builtin_run(
    cfg: &MonitorConfig,
    root: &Path,
    console: Option<&Path>,
    pid_file: &Path,
    stdio: [&OwnedFd; 3],
) -> Res<()> {
    let (status_r, status_w) = pipe()?;
    let opts = berth_runtime::CreateOptions {
        id: cfg.id.clone(),
        bundle: cfg.bundle.clone(),
        console_socket: console.map(Path::to_path_buf),
        pid_file: Some(pid_file.to_path_buf()),
        ..Default::default()
    };
    // SAFETY: the monitor is single-threaded, so the child may run ordinary code after fork.
    match unsafe { nix::unistd::fork() }.map_err(err("fork"))? {
        ForkResult::Child => {
            let code = (|| -> Result<(), String> {
                for (i, fd) in stdio.iter().enumerate() {
                    // SAFETY: dup2 onto 0..2 of fds we hold open.
                    if unsafe { libc::dup2(fd.as_raw_fd(), i as i32) } < 0 {
                        return Err(format!("dup2: {}", std::io::Error::last_os_error()));
                    }
                }
                nix::sys::signal::sigprocmask(
                    SigmaskHow::SIG_SETMASK,
                    Some(&SigSet::empty()),
                    None,
                )
                .map_err(err("signal mask"))?;
                let rt = berth_runtime::Runtime::new(root).map_err(|e| e.to_string())?;
                rt.run(&opts, true).map_err(|e| e.to_string())?;
                Ok(())
            })();
            let c = match code {
                Ok(()) => 0,
                Err(e) => {
                    let _ = nix::unistd::write(&status_w, e.as_bytes());
                    1
                }
            };
            // SAFETY: _exit in the forked child: no destructors or atexit handlers of the parent run.
            unsafe { libc::_exit(c) }
        }
        ForkResult::Parent { child } => {
            drop(status_w);
            let mut msg = String::new();
            let _ = std::fs::File::from(status_r).read_to_string(&mut msg);
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                Ok(ws) if msg.is_empty() => Err(format!("creating the container: {ws:?}")),
                _ => Err(msg),
            }
        }
    }
}

/// Runs `runtime --root R --log L --log-format json ARGS`; its error message from the log on failure.
fn runtime_binary(
    path: &Path,
    root: &Path,
    log: &Path,
    args: &[String],
    stdio: Option<[&OwnedFd; 3]>,
) -> Res<()> {
    let mut cmd = Command::new(path);
    cmd.arg("--root")
        .arg(root)
        .arg("--log")
        .arg(log)
        .arg("--log-format")
        .arg("json")
        .args(args);
    match stdio {
        Some([i, o, e]) => {
            let dup = |fd: &OwnedFd| fd.try_clone().map(Stdio::from).map_err(err("dup"));
            cmd.stdin(dup(i)?).stdout(dup(o)?).stderr(dup(e)?);
        }
        None => {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
        }
    }
    let out = cmd
        .output()
        .map_err(|e| format!("running {}: {e}", path.display()))?;
    if out.status.success() {
        return Ok(());
    }
    // runc's JSON log: the last "error" line's "msg".
    let logged = std::fs::read_to_string(log).unwrap_or_default();
    let msg = logged
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error")
        .and_then(|v| v["msg"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
    Err(format!(
        "{} {}: {}",
        path.display(),
        args.first().map(String::as_str).unwrap_or(""),
        if msg.is_empty() {
            format!("{}", out.status)
        } else {
            msg
        }
    ))
}

/// Accepts the runtime's connection on the console socket and takes the pty master it sends.
fn receive_master(l: &UnixListener) -> Res<OwnedFd> {
    l.set_nonblocking(true).map_err(err("console socket"))?;
    let (s, _) = l
        .accept()
        .map_err(|e| format!("the runtime sent no terminal on the console socket: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(err("console socket"))?;
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut data = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut data)];
    let msg = nix::sys::socket::recvmsg::<()>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(err("receiving the pty master"))?;
    for c in msg.cmsgs().map_err(err("console message"))? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the fd was just received with SCM_RIGHTS; we are its only owner.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err("the runtime's console message carried no file descriptor".into())
}
