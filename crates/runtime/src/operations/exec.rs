//! `exec`: a new process in a running container's namespaces and cgroup.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::{create, wait, Runtime};
use crate::error::Context;
use crate::linux::namespaces::{self, Join};
use crate::linux::process::{self, Prepared};
use crate::linux::sync::{self, Channel, Tag};
use crate::linux::{console, fds};
use crate::state::Status;
use crate::{Error, Result};

/// Options of `exec`.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub detach: bool,
    pub preserve_fds: u32,
}

impl Runtime {
    /// The container's saved process, as the base that `exec`'s inline flags modify.
    pub fn saved_process(&self, id: &str) -> Result<Process> {
        let (_, st) = self.load(id)?;
        let spec = st.spec()?;
        spec.process()
            .clone()
            .ok_or_else(|| Error::Invalid("the saved config has no process".into()))
    }

    /// `exec`: runs `opts.process` in the container. Returns the exit code, or 0 with `detach`.
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<i32> {
        // The process we fork joins the container's pid namespace: its /proc/<pid>/exe (our binary) must
        // not be reachable from there while it sets up.
        crate::linux::trampoline::set_non_dumpable()?;
        let (dir, st) = self.load(id)?;
        let status = st.status(&dir);
        if !matches!(status, Status::Running | Status::Created) {
            return Err(Error::WrongState {
                op: "exec in",
                id: id.into(),
                status,
            });
        }
        let spec = st.spec()?;
        let linux = spec.linux().as_ref();
        let mut prepared = Prepared::new(&opts.process, linux.and_then(|l| l.seccomp().as_ref()))?;
        if !prepared.terminal && opts.console_socket.is_some() {
            return Err(Error::Invalid(
                "--console-socket was given but the process has no terminal".into(),
            ));
        }
        if prepared.terminal && opts.console_socket.is_none() && opts.detach {
            return Err(Error::Invalid(
                "a terminal for a detached exec needs --console-socket".into(),
            ));
        }
        let mut joins = namespaces::of_process(st.pid)?;
        if st.pid == 0 {
            return Err(Error::NotFound(id.into()));
        }
        // In a user namespace whose setgroups is denied, setgroups(2) would fail.
        if joins.iter().any(|j| j.typ == LinuxNamespaceType::User) {
            let sg =
                std::fs::read_to_string(format!("/proc/{}/setgroups", st.pid)).unwrap_or_default();
            prepared.allow_setgroups = sg.trim() != "deny";
        }
        let pid_join = joins
            .iter()
            .position(|j| j.typ == LinuxNamespaceType::Pid)
            .map(|i| joins.remove(i));
        let (console, relay): (Option<OwnedFd>, Option<OwnedFd>) = if !prepared.terminal {
            (None, None)
        } else if let Some(sock) = &opts.console_socket {
            let s = UnixStream::connect(sock)
                .ctx(|| format!("connecting to the console socket {}", sock.display()))?;
            (Some(OwnedFd::from(s)), None)
        } else {
            let (a, b) = UnixStream::pair().ctx(|| "console socketpair".into())?;
            (Some(OwnedFd::from(a)), Some(OwnedFd::from(b)))
        };
        let (parent_chan, child_chan) = sync::pair()?;
        // Entering the container's pid namespace only affects our children; there is no way back to an
        // ancestor pid namespace, which is fine: this process forks nothing else.
        if let Some(j) = &pid_join {
            namespaces::enter(j)?;
        }
        if !opts.detach {
            wait::block_signals()?;
        }
        let self_join = !joins.iter().any(|j| j.typ == LinuxNamespaceType::User);
        let (child, born_in_v2) = namespaces::clone_into_cgroup(CloneFlags::empty(), &st.cgroup)?;
        let pid = match child? {
            0 => {
                drop(parent_chan);
                exec_child(
                    &joins,
                    &prepared,
                    &child_chan,
                    console.as_ref().map(|c| c.as_raw_fd()),
                    opts.preserve_fds,
                    self_join.then_some(&st.cgroup),
                )
            }
            pid => pid,
        };
        drop(child_chan);
        drop(console);
        let kill_child = || {
            // SAFETY: kill our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        };
        if !self_join || (st.cgroup.v2_path().is_some() && !born_in_v2) {
            if let Err(e) = st.cgroup.add_process(pid) {
                kill_child();
                return Err(e.into());
            }
        }
        let outcome = (|| -> Result<()> {
            parent_chan.send(Tag::Continue, "")?;
            loop {
                let m = parent_chan
                    .recv()?
                    .ok_or_else(|| Error::Child("the exec'd process exited during setup".into()))?;
                match m.tag {
                    Tag::Ready => break,
                    Tag::SeccompFd => {
                        create::hand_notify_fd(
                            linux.and_then(|l| l.seccomp().as_ref()),
                            m.fd,
                            &st.view(status),
                            pid,
                        )?;
                        parent_chan.send(Tag::Continue, "")?;
                    }
                    Tag::Error => return Err(Error::Child(m.text)),
                    other => {
                        return Err(Error::Child(format!(
                            "protocol error: unexpected {other:?} during setup"
                        )))
                    }
                }
            }
            match parent_chan.recv()? {
                None => Ok(()),
                Some(m) if m.tag == Tag::Error => Err(Error::Child(m.text)),
                Some(m) => Err(Error::Child(format!(
                    "protocol error: unexpected {:?}",
                    m.tag
                ))),
            }
        })();
        if let Err(e) = outcome {
            kill_child();
            return Err(e);
        }
        if let Some(p) = &opts.pid_file {
            create::write_pid(p, pid)?;
        }
        if opts.detach {
            return Ok(0);
        }
        wait::foreground(pid, relay)
    }
}

fn exec_child(
    joins: &[Join],
    p: &Prepared,
    chan: &Channel,
    console: Option<i32>,
    preserve_fds: u32,
    join_cgroup: Option<&berth_cgroups::Cgroup>,
) -> ! {
    let r = (|| -> Result<std::convert::Infallible> {
        let _ = nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&nix::sys::signal::SigSet::empty()),
            None,
        );
        process::set_pdeathsig(libc::SIGKILL);
        if let Some(cg) = join_cgroup {
            cg.join_self_v1()?;
        }
        chan.expect(Tag::Continue)?;
        for j in joins {
            namespaces::enter(j)?;
        }
        if let Some(c) = console {
            console::setup(c, p.console_size)?;
        }
        p.apply_privileged()?;
        // A notify filter's fd goes to the parent, which hands it to the listener (as for the init).
        if let Some(fd) = p.load_seccomp_early()? {
            chan.send_fd(Tag::SeccompFd, "", Some(fd.as_raw_fd()))?;
            drop(fd);
            chan.expect(Tag::Continue)?;
        }
        p.drop_privileges()?;
        let program = p.resolve_program()?;
        p.check_program(&program)?;
        let env = p.final_env();
        fds::keep_only_stdio_and(preserve_fds)?;
        process::set_pdeathsig(0);
        chan.send(Tag::Ready, "")?;
        if !p.seccomp_early() {
            p.load_seccomp()?;
        }
        Err(p.exec(&program, &env))
    })();
    let Err(e) = r;
    let _ = chan.send(Tag::Error, &e.to_string());
    // SAFETY: _exit in a forked child.
    unsafe { libc::_exit(127) }
}
