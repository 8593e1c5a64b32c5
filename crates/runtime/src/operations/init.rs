//! The container's init process, from clone() to execve(): joins and unshares namespaces, builds the mount
//! namespace, pivots, applies the process settings, waits to be started and becomes the user's program.
//!
//! Every failure is sent to the parent over the sync socket (or, after `create` returned, to `start` through
//! the exec FIFO) and the process exits.

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::config::Bundle;
use crate::error::Context;
use crate::hooks::{self, Phase};
use crate::linux::namespaces::{self, Plan};
use crate::linux::process::{self, Prepared};
use crate::linux::sync::{Channel, Tag};
use crate::linux::{console, fds, rootfs, sysctl};
use crate::state::{StateView, Status};
use crate::{Error, Result};

/// How the init learns that it may exec the user's program.
#[derive(Clone, Copy)]
pub(super) enum StartGate {
    /// `create`: open the exec FIFO for writing (blocks until `start` opens it for reading).
    Fifo(RawFd),
    /// `run`: no wait; errors go over the sync socket.
    Socket,
}

pub(super) struct InitContext<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Bundle,
    pub plan: &'a Plan,
    pub process: &'a Prepared,
    pub cgroup: &'a berth_cgroups::Cgroup,
    pub chan: &'a Channel,
    pub gate: StartGate,
    pub console: Option<RawFd>,
    /// Move ourselves into the v1 hierarchies (the parent does it otherwise).
    pub join_cgroup_v1: bool,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub template: &'a StateView,
}

/// Runs the init; never returns.
pub(super) fn child_main(ctx: InitContext) -> ! {
    let err = match setup(&ctx) {
        Ok((gate, state)) => finish(&ctx, gate, state),
        Err(e) => {
            let _ = ctx.chan.send(Tag::Error, &e.to_string());
            // SAFETY: _exit ends this forked child without running the parent's atexit handlers.
            unsafe { libc::_exit(1) }
        }
    };
    report_late(&ctx, &err);
    // SAFETY: as above.
    unsafe { libc::_exit(1) }
}

/// An error after the init was released: for `run` over the socket, for `start` through the FIFO.
fn report_late(ctx: &InitContext, err: &Error) {
    match ctx.gate {
        StartGate::Socket => {
            let _ = ctx.chan.send(Tag::Error, &err.to_string());
        }
        StartGate::Fifo(_) => {
            if let Some(mut f) = LATE_FIFO.with(|c| c.take()) {
                let _ = f.write_all(err.to_string().as_bytes());
            }
        }
    }
}

thread_local! {
    static LATE_FIFO: std::cell::RefCell<Option<std::fs::File>> = const { std::cell::RefCell::new(None) };
}

fn unblock_signals() {
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

fn become_ns_root() -> Result<()> {
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .ctx(|| "setgid(0) in the user namespace (is 0 mapped?)".into())?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .ctx(|| "setuid(0) in the user namespace (is 0 mapped?)".into())
}

fn setup(ctx: &InitContext) -> Result<(StartGate, StateView)> {
    unblock_signals();
    // If the runtime dies mid-setup, so do we (cleared before the runtime may exit).
    process::set_pdeathsig(libc::SIGKILL);
    let plan = ctx.plan;
    let spec = ctx.spec;
    let linux = spec.linux().as_ref();
    let mut state = ctx.template.clone();
    let user_joined = plan.joins.iter().any(|j| j.typ == LinuxNamespaceType::User);
    // The parent creates the cgroups and writes their limits while we build the mount namespace (two CPUs
    // at work); we only wait for it where the cgroups are first needed. With a user namespace the parent
    // must first write the id maps, so we wait at once.
    let early = !plan.new_user && !plan.fork_for_pid && !user_joined;
    let cgroup_ns = plan.unshare_flags & CloneFlags::CLONE_NEWCGROUP;
    let other_unshares = plan.unshare_flags & !CloneFlags::CLONE_NEWCGROUP;
    // Waits for the parent, joins the v1 hierarchies (a thread moving itself is cheap) and, once in its
    // cgroups, unshares the cgroup namespace so that its root is the container's cgroup.
    let join_cgroups = |state: &mut StateView| -> Result<()> {
        let go = ctx.chan.expect(Tag::Continue)?;
        state.pid = go.text.parse().unwrap_or(0);
        if ctx.join_cgroup_v1 {
            ctx.cgroup.join_self_v1()?;
        }
        Ok(())
    };
    if !early {
        join_cgroups(&mut state)?;
    }
    for j in &plan.joins {
        namespaces::enter(j)?;
        if j.typ == LinuxNamespaceType::User {
            become_ns_root()?;
        }
    }
    if plan.new_user {
        become_ns_root()?;
    }
    if !other_unshares.is_empty() {
        nix::sched::unshare(other_unshares).ctx(|| format!("unshare({other_unshares:?})"))?;
    }
    if !early && !cgroup_ns.is_empty() {
        nix::sched::unshare(cgroup_ns).ctx(|| "unshare(CLONE_NEWCGROUP)".into())?;
    }
    if plan.fork_for_pid {
        match &plan.pid_join {
            Some(j) => namespaces::enter(j)?,
            None => nix::sched::unshare(CloneFlags::CLONE_NEWPID)
                .ctx(|| "unshare(CLONE_NEWPID)".into())?,
        }
        let child = namespaces::clone_process(CloneFlags::empty())?;
        if child != 0 {
            // The intermediate: report the real init's pid and leave (the runtime reaps us).
            let _ = ctx.chan.send(Tag::Pid, &child.to_string());
            // SAFETY: _exit in a forked child.
            unsafe { libc::_exit(0) }
        }
        // No parent-death signal here: our parent, the intermediate, exits at once. Should the runtime
        // die, the sync socket reports it and we stop at the next step.
        state.pid = 0;
    }

    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).ctx(|| format!("sethostname {h:?}"))?;
    }
    if let Some(d) = spec.domainname() {
        set_domainname(d)?;
    }
    let in_userns = plan.new_user || user_joined;
    if in_userns && plan.clone_flags.contains(CloneFlags::CLONE_NEWPID) {
        // Non-dumpable, our /proc/self would belong to the host's root, out of reach of the user
        // namespace's root; alone in a new pid namespace, nothing can look at us anyway.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    }
    let setup = rootfs::Setup {
        rootfs: &ctx.bundle.rootfs,
        spec,
        cgroup: ctx.cgroup,
        in_userns,
        new_cgroupns: !cgroup_ns.is_empty(),
        cwd: &ctx.process.cwd,
    };
    let mut before_cgroups = || -> Result<()> {
        if early {
            join_cgroups(&mut state)?;
            if !cgroup_ns.is_empty() {
                nix::sched::unshare(cgroup_ns).ctx(|| "unshare(CLONE_NEWCGROUP)".into())?;
            }
        }
        Ok(())
    };
    let root_fd = rootfs::prepare(&setup, &mut before_cgroups)?;

    if hooks::any(spec.hooks().as_ref(), &super::create::RUNTIME_HOOKS) {
        ctx.chan.send(Tag::RunHooks, "")?;
        ctx.chan.expect(Tag::Continue)?;
    }
    hooks::run(spec.hooks().as_ref(), Phase::CreateContainer, &state)?;

    rootfs::pivot(&ctx.bundle.rootfs, ctx.no_pivot)?;
    drop(root_fd);
    for (k, v) in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        sysctl::write(k, v)?;
    }
    rootfs::finish(spec)?;
    if let Some(c) = ctx.console {
        console::setup(c, ctx.process.console_size)?;
    }
    if let Some(p) = linux.and_then(|l| l.personality().as_ref()) {
        process::set_personality(p)?;
    }
    if !ctx.no_new_keyring {
        join_session_keyring(&state.id)?;
    }

    let p = ctx.process;
    p.apply_privileged()?;
    if let Some(fd) = p.load_seccomp_early()? {
        ctx.chan.send_fd(Tag::SeccompFd, "", Some(fd.as_raw_fd()))?;
        drop(fd);
        ctx.chan.expect(Tag::Continue)?;
    }
    p.drop_privileges()?;
    fds::keep_only_stdio_and(ctx.preserve_fds)?;
    // From here the runtime may exit (create returns): survive it.
    process::set_pdeathsig(0);
    ctx.chan.send(Tag::Ready, "")?;
    Ok((ctx.gate, state))
}

/// Waits to be started, runs the startContainer hooks and execs. Returns only on failure.
fn finish(ctx: &InitContext, gate: StartGate, mut state: StateView) -> Error {
    let r = (|| -> Result<std::convert::Infallible> {
        match gate {
            StartGate::Fifo(fd) => {
                let path = format!("/proc/self/fd/{fd}");
                let f = nix::fcntl::open(
                    path.as_str(),
                    OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .ctx(|| "opening the exec fifo".into())?;
                let mut f = std::fs::File::from(f);
                f.write_all(b"0").ctx(|| "writing the exec fifo".into())?;
                LATE_FIFO.with(|c| *c.borrow_mut() = Some(f));
            }
            // `run`: go on at once; an error still reaches the runtime over the socket.
            StartGate::Socket => {}
        }
        state.status = Status::Created;
        hooks::run(ctx.spec.hooks().as_ref(), Phase::StartContainer, &state)?;
        let program = ctx.process.resolve_program()?;
        ctx.process.check_program(&program)?;
        let env = ctx.process.final_env();
        if !ctx.process.seccomp_early() {
            ctx.process.load_seccomp()?;
        }
        Err(ctx.process.exec(&program, &env))
    })();
    match r {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

fn set_domainname(d: &str) -> Result<()> {
    // SAFETY: setdomainname reads `len` bytes from the pointer of a live &str.
    let r = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("setdomainname {d:?}"));
    }
    Ok(())
}

/// A fresh session keyring per container, so containers do not share the host's keys.
fn join_session_keyring(id: &str) -> Result<()> {
    let name = std::ffi::CString::new(format!("_ses.{id}"))
        .map_err(|_| Error::InvalidId(id.to_string()))?;
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, name) reads a NUL-terminated string we own.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, 1, name.as_ptr()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(e).ctx(|| "joining a new session keyring".into());
        }
    }
    Ok(())
}
