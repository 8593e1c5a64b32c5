//! `create` and `run`: the parent side of container creation.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources};

use super::init::{self, InitContext, StartGate};
use super::{wait, Runtime, StartedProcess};
use crate::config;
use crate::error::Context;
use crate::hooks::{self, Phase};
use crate::linux::devices;
use crate::linux::namespaces::{self, Plan};
use crate::linux::process::Prepared;
use crate::linux::sync::{self, Tag};
use crate::state::{self, ContainerState, StateView, Status, FIFO};
use crate::{Error, Result};

/// The hooks run by the runtime (not the container) during create.
pub(super) const RUNTIME_HOOKS: [Phase; 2] = [Phase::Prestart, Phase::CreateRuntime];

/// Options of `create` (and `run`), as runc's flags.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
}

/// How the init is released once set up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode_ {
    /// `create`: the init blocks on the exec FIFO until `start`.
    Create,
    /// `run`: the init goes on at once after reporting Ready.
    Run,
}

/// Undoes a half-made container if creation fails: kills the init, removes the cgroup and the state dir.
struct Cleanup<'a> {
    dir: &'a Path,
    pid: Option<i32>,
    cgroup: Option<&'a berth_cgroups::Cgroup>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        if let Some(cg) = self.cgroup {
            let _ = cg.kill_all(nix::sys::signal::Signal::SIGKILL);
            let _ = cg.destroy();
        }
        let _ = std::fs::remove_dir_all(self.dir);
    }
}

/// Hands a seccomp notify fd (of the init, or of an exec'd process) to the config's listener with the
/// container's state, as runc does.
pub(super) fn hand_notify_fd(
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    fd: Option<OwnedFd>,
    view: &StateView,
    pid: i32,
) -> Result<()> {
    let listener = seccomp
        .and_then(|s| s.listener_path().clone())
        .ok_or_else(|| Error::Invalid("seccomp notify fd without a listenerPath".into()))?;
    let fd = fd.ok_or_else(|| Error::Child("no fd with SeccompFd".into()))?;
    let state_json =
        serde_json::to_value(view).map_err(|e| Error::Invalid(format!("encoding state: {e}")))?;
    berth_seccomp::send_to_listener(
        &listener,
        std::os::fd::AsFd::as_fd(&fd),
        &state_json,
        seccomp.and_then(|s| s.listener_metadata().as_deref()),
        pid,
    )?;
    Ok(())
}

/// The device cgroup rules of a spec with the defaults every container gets appended (as runc does).
pub(super) fn resources_with_default_devices(r: Option<&LinuxResources>) -> LinuxResources {
    let mut r = r.cloned().unwrap_or_default();
    let mut devs = r.devices().clone().unwrap_or_default();
    devs.extend(devices::default_cgroup_rules());
    r.set_devices(Some(devs));
    r
}

impl Runtime {
    /// `create`: sets the container up and leaves its init waiting for `start`.
    pub fn create(&self, opts: &CreateOptions) -> Result<StartedProcess> {
        self.create_inner(opts, Mode_::Create, false)
            .map(|(p, _)| p)
    }

    /// `run`: create and start; unless `detach`, waits for the container to exit, deletes it and returns
    /// its exit code (128 + signal if it was killed).
    pub fn run(&self, opts: &CreateOptions, detach: bool) -> Result<i32> {
        let (p, relay) = self.create_inner(opts, Mode_::Run, !detach)?;
        if detach {
            return Ok(0);
        }
        let code = wait::foreground(p.pid, relay);
        let _ = self.delete(&opts.id, &super::DeleteOptions { force: true });
        code
    }

    fn create_inner(
        &self,
        opts: &CreateOptions,
        mode: Mode_,
        foreground: bool,
    ) -> Result<(StartedProcess, Option<OwnedFd>)> {
        // Our /proc/<pid>/exe, and that of the init we fork, must not be reachable from a container.
        crate::linux::trampoline::set_non_dumpable()?;
        let dir = self.dir(&opts.id)?;
        let bundle = config::load_bundle(&opts.bundle)?;
        let spec = &bundle.spec;
        let linux = spec
            .linux()
            .as_ref()
            .ok_or_else(|| Error::Invalid("config has no linux section".into()))?;
        let process_spec = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::Invalid("config has no process".into()))?;
        let ns_list = linux.namespaces().clone().unwrap_or_default();
        if !ns_list.iter().any(|n| n.typ() == LinuxNamespaceType::Mount) {
            return Err(Error::Invalid(
                "berth-runtime needs a mount namespace (linux.namespaces has no \"mount\")".into(),
            ));
        }
        let mut process = Prepared::new(process_spec, linux.seccomp().as_ref())?;
        let plan = Plan::new(&ns_list)?;
        let terminal = process.terminal;
        if !terminal && opts.console_socket.is_some() {
            return Err(Error::Invalid(
                "--console-socket was given but process.terminal is false".into(),
            ));
        }
        if terminal && opts.console_socket.is_none() && !foreground {
            return Err(Error::Invalid(
                "process.terminal is true: a console socket is needed (--console-socket), or run in the foreground"
                    .into(),
            ));
        }
        if let Some(h) = spec.hostname() {
            crate::linux::rootfs::check_hostname(h)?;
        }
        let cgroup = berth_cgroups::Cgroup::new(linux.cgroups_path().as_deref(), &opts.id)?;
        let resources = resources_with_default_devices(linux.resources().as_ref());
        if plan.new_user {
            process.allow_setgroups = true;
        }

        // From here on, anything that fails undoes what was made.
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(opts.id.clone()))
            }
            Err(e) => return Err(e).ctx(|| format!("creating {}", dir.display())),
        }
        let mut cleanup = Cleanup {
            dir: &dir,
            pid: None,
            cgroup: None,
            armed: true,
        };

        let fifo = if mode == Mode_::Create {
            let path = dir.join(FIFO);
            nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o622))
                .ctx(|| format!("mkfifo {}", path.display()))?;
            // Writable by the init whatever uid it runs as (the umask took bits off mkfifo's mode).
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                &path,
                Mode::from_bits_truncate(0o622),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .ctx(|| format!("chmod {}", path.display()))?;
            Some(
                nix::fcntl::open(&path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                    .ctx(|| format!("opening {}", path.display()))?,
            )
        } else {
            None
        };

        // The console: the caller's socket, or (foreground run) a socketpair whose other end we relay.
        let (console, relay): (Option<OwnedFd>, Option<OwnedFd>) = if !terminal {
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
        let private_pid = plan.private_pid(&ns_list);
        let template = StateView {
            oci_version: spec.version().clone(),
            id: opts.id.clone(),
            pid: 0,
            status: Status::Creating,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: String::new(),
            owner: String::new(),
            annotations: spec.annotations().clone().unwrap_or_default(),
        };

        // Namespaces that only affect children (pid and time) are entered by us around the clone.
        let restore = ParentNamespaces::enter(&plan, linux)?;
        if foreground {
            wait::block_signals()?;
            if plan.fork_for_pid {
                // The init will be our grandchild: let it be reparented to us so that we can wait for it.
                // SAFETY: prctl with integer arguments.
                if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
                    return Err(std::io::Error::last_os_error())
                        .ctx(|| "prctl(PR_SET_CHILD_SUBREAPER)".into());
                }
            }
        }
        // Joining cgroups cheaply: the child is born in the cgroup2 part (CLONE_INTO_CGROUP), so that leaf
        // exists before the clone; it moves itself into the v1 hierarchies (cheap for a thread moving
        // itself) once we made them, with their limits, while it builds its mounts. Only a child in a new
        // user namespace, which may not write the host's cgroup files, is moved by us.
        cleanup.cgroup = Some(&cgroup);
        // Made with its ancestors' controllers enabled: a bare mkdir would leave a pure v2 host's
        // new levels without memory, cpu, io or pids.
        cgroup.create_v2()?;
        let self_join = !plan.new_user;
        let (clone_result, born_in_v2) = namespaces::clone_into_cgroup(plan.clone_flags, &cgroup)?;
        let pid = match clone_result {
            Ok(0) => {
                drop(parent_chan);
                let ctx = InitContext {
                    spec,
                    bundle: &bundle,
                    plan: &plan,
                    process: &process,
                    cgroup: &cgroup,
                    chan: &child_chan,
                    gate: match &fifo {
                        Some(f) => StartGate::Fifo(f.as_raw_fd()),
                        None => StartGate::Socket,
                    },
                    console: console.as_ref().map(|c| c.as_raw_fd()),
                    join_cgroup_v1: self_join,
                    no_pivot: opts.no_pivot,
                    no_new_keyring: opts.no_new_keyring,
                    preserve_fds: opts.preserve_fds,
                    template: &template,
                };
                init::child_main(ctx)
            }
            Ok(pid) => pid,
            Err(e) => {
                restore.leave()?;
                return Err(e);
            }
        };
        restore.leave()?;
        drop(child_chan);
        drop(console);
        cleanup.pid = Some(pid);

        if plan.new_user {
            write_id_maps(pid, linux)?;
        }
        cgroup.create()?;
        cgroup.apply(&resources)?;
        if !self_join || (cgroup.v2_path().is_some() && !born_in_v2) {
            // The slow path (see above): a full move through cgroup.procs.
            cgroup.add_process(pid)?;
        }
        parent_chan.send(Tag::Continue, &pid.to_string())?;

        let mut pid = pid;
        if plan.fork_for_pid {
            let m = parent_chan.expect(Tag::Pid)?;
            let intermediate = pid;
            pid = m
                .text
                .parse()
                .map_err(|_| Error::Child(format!("bad pid {:?} from the init", m.text)))?;
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(intermediate), None);
            cleanup.pid = Some(pid);
        }
        let mut view = template.clone();
        view.pid = pid;
        // The child stops for these hooks only if there are any (a round trip saved otherwise).
        if hooks::any(spec.hooks().as_ref(), &RUNTIME_HOOKS) {
            parent_chan.expect(Tag::RunHooks)?;
            hooks::run(spec.hooks().as_ref(), Phase::Prestart, &view)?;
            hooks::run(spec.hooks().as_ref(), Phase::CreateRuntime, &view)?;
            parent_chan.send(Tag::Continue, "")?;
        }
        loop {
            let m = parent_chan
                .recv()?
                .ok_or_else(|| Error::Child("the container's init exited during setup".into()))?;
            match m.tag {
                Tag::Ready => break,
                Tag::SeccompFd => {
                    hand_notify_fd(linux.seccomp().as_ref(), m.fd, &view, pid)?;
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
        let (pid_start, _) = state::proc_stat(pid)
            .ok_or_else(|| Error::Child("the container's init exited during setup".into()))?;
        let record = ContainerState {
            oci_version: spec.version().clone(),
            id: opts.id.clone(),
            pid,
            pid_start,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: crate::time::now(),
            owner: owner(),
            annotations: template.annotations.clone(),
            cgroup: cgroup.clone(),
            private_pid_ns: private_pid,
            config: serde_json::value::RawValue::from_string(
                String::from_utf8_lossy(&bundle.raw).into_owned(),
            )
            .map_err(|e| Error::Invalid(format!("saving the config: {e}")))?,
        };
        record.save(&dir)?;
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, pid)?;
        }
        if mode == Mode_::Run {
            // The init went on after Ready (nothing to wait for in `run`).
            // EOF means the user's program was exec'd (the socket is close-on-exec).
            match parent_chan.recv()? {
                None => {}
                Some(m) if m.tag == Tag::Error => return Err(Error::Child(m.text)),
                Some(m) => {
                    return Err(Error::Child(format!(
                        "protocol error: unexpected {:?} at start",
                        m.tag
                    )))
                }
            }
            let mut v = record.view(Status::Running);
            v.pid = pid;
            if let Err(e) = hooks::run(spec.hooks().as_ref(), Phase::Poststart, &v) {
                eprintln!("warning: {e}");
            }
        }
        cleanup.armed = false;
        Ok((StartedProcess { pid }, relay))
    }
}

/// The time namespace entered (or made) by the parent for the clone, and left again afterwards.
struct ParentNamespaces {
    saved: Vec<(OwnedFd, CloneFlags)>,
}

impl ParentNamespaces {
    fn enter(plan: &Plan, linux: &oci_spec::runtime::Linux) -> Result<ParentNamespaces> {
        let mut saved = Vec::new();
        let save = |name: &str| {
            nix::fcntl::open(
                Path::new("/proc/self/ns").join(name).as_path(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| format!("opening /proc/self/ns/{name}"))
        };
        let time = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
        if let Some(j) = &plan.time_join {
            saved.push((save("time_for_children")?, time));
            namespaces::enter(j)?;
        } else if plan.new_time {
            saved.push((save("time_for_children")?, time));
            nix::sched::unshare(time).ctx(|| "unshare(CLONE_NEWTIME)".into())?;
            let mut offsets = String::new();
            for (clock, off) in linux.time_offsets().iter().flatten() {
                let name = match clock.as_str() {
                    "monotonic" | "boottime" => clock.as_str(),
                    other => {
                        return Err(Error::Invalid(format!(
                            "timeOffsets: unknown clock {other:?} (monotonic or boottime)"
                        )))
                    }
                };
                offsets.push_str(&format!(
                    "{name} {} {}\n",
                    off.secs().unwrap_or(0),
                    off.nanosecs().unwrap_or(0)
                ));
            }
            if !offsets.is_empty() {
                std::fs::write("/proc/self/timens_offsets", offsets)
                    .ctx(|| "writing /proc/self/timens_offsets".into())?;
            }
        }
        Ok(ParentNamespaces { saved })
    }

    fn leave(self) -> Result<()> {
        for (fd, flag) in self.saved {
            nix::sched::setns(&fd, flag)
                .ctx(|| "returning to the runtime's own namespace".into())?;
        }
        Ok(())
    }
}

fn write_id_maps(pid: i32, linux: &oci_spec::runtime::Linux) -> Result<()> {
    let fmt = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    let uid = fmt(linux.uid_mappings());
    let gid = fmt(linux.gid_mappings());
    std::fs::write(format!("/proc/{pid}/uid_map"), &uid)
        .ctx(|| format!("writing uid_map {:?}", uid.trim()))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), &gid)
        .ctx(|| format!("writing gid_map {:?}", gid.trim()))?;
    Ok(())
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("berth-tmp");
    std::fs::write(&tmp, pid.to_string()).ctx(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("writing the pid file {}", path.display()))
}

pub(super) fn write_pid(path: &Path, pid: i32) -> Result<()> {
    write_pid_file(path, pid)
}

fn owner() -> String {
    let uid = nix::unistd::getuid();
    if uid.is_root() {
        return "root".into();
    }
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "#".to_string() + &uid.to_string())
}
