//! Namespaces: which to create at clone time, which to unshare later, which to join by path.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{open, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::error::Context;
use crate::Result;

/// The clone flag of a namespace type.
pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The /proc/<pid>/ns file name of a namespace type.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// A namespace to join, opened in the parent so the child can setns() it whatever its mounts.
pub struct Join {
    pub typ: LinuxNamespaceType,
    pub fd: OwnedFd,
    pub path: PathBuf,
}

/// How the init process gets its namespaces.
pub struct Plan {
    /// Created by clone() itself.
    pub clone_flags: CloneFlags,
    /// Created by the child with unshare() after the parent has set up cgroups and id maps.
    pub unshare_flags: CloneFlags,
    /// Joined by the child, user namespace first.
    pub joins: Vec<Join>,
    /// pid namespace joined by path: entered by the child, which then forks the real init into it (a
    /// pid namespace only affects children; the runtime itself never leaves its own).
    pub pid_join: Option<Join>,
    /// time namespace joined by path: entered by the parent, like pid.
    pub time_join: Option<Join>,
    /// A new user namespace is created (the parent writes the id maps).
    pub new_user: bool,
    /// A new time namespace is created (the parent unshares it before clone and writes the offsets).
    pub new_time: bool,
    /// The child must fork once more so that its child lands in a new pid namespace (one that cannot be
    /// made by clone, i.e. when a user namespace is joined) or in a pid namespace joined by path.
    pub fork_for_pid: bool,
}

impl Plan {
    pub fn new(list: &[LinuxNamespace]) -> Result<Plan> {
        let mut plan = Plan {
            clone_flags: CloneFlags::empty(),
            unshare_flags: CloneFlags::empty(),
            joins: Vec::new(),
            pid_join: None,
            time_join: None,
            new_user: false,
            new_time: false,
            fork_for_pid: false,
        };
        let user_joined = list
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_some());
        for ns in list {
            let t = ns.typ();
            match ns.path() {
                Some(p) => {
                    let fd = open(p, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                        .ctx(|| format!("opening {} namespace {}", proc_name(t), p.display()))?;
                    let join = Join {
                        typ: t,
                        fd,
                        path: p.clone(),
                    };
                    match t {
                        LinuxNamespaceType::Pid => {
                            plan.pid_join = Some(join);
                            plan.fork_for_pid = true;
                        }
                        LinuxNamespaceType::Time => plan.time_join = Some(join),
                        _ => plan.joins.push(join),
                    }
                }
                None => match t {
                    LinuxNamespaceType::Time => plan.new_time = true,
                    // The cgroup namespace is unshared after the move into the container's cgroup,
                    // so that its root is that cgroup.
                    LinuxNamespaceType::Cgroup => plan.unshare_flags |= flag(t),
                    LinuxNamespaceType::Pid if user_joined => plan.fork_for_pid = true,
                    _ if user_joined => plan.unshare_flags |= flag(t),
                    LinuxNamespaceType::User => {
                        plan.new_user = true;
                        plan.clone_flags |= flag(t);
                    }
                    _ => plan.clone_flags |= flag(t),
                },
            }
        }
        // The user namespace must be joined first: it grants the rights to join the others.
        plan.joins
            .sort_by_key(|j| (j.typ != LinuxNamespaceType::User) as u8);
        Ok(plan)
    }

    /// Whether the container gets a pid namespace of its own.
    pub fn private_pid(&self, list: &[LinuxNamespace]) -> bool {
        list.iter()
            .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none())
    }
}

/// Enters a namespace by fd.
pub fn enter(j: &Join) -> Result<()> {
    nix::sched::setns(j.fd.as_fd(), flag(j.typ)).ctx(|| {
        format!(
            "joining {} namespace {}",
            proc_name(j.typ),
            j.path.display()
        )
    })
}

/// clone(2) with `flags` and SIGCHLD, fork-style (the child runs on a copy of our stack).
/// Returns 0 in the child and the child's pid in the parent.
pub fn clone_process(flags: CloneFlags) -> Result<i32> {
    // SAFETY: without CLONE_VM the child gets a private copy of our address space, exactly like fork();
    // the library is only used from single-threaded processes, so no lock can be held by another thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags.bits() as libc::c_long) | libc::SIGCHLD as libc::c_long,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error())
            .ctx(|| format!("clone with namespaces {flags:?}"));
    }
    Ok(r as i32)
}

/// clone3(2) with `flags` and, if given, CLONE_INTO_CGROUP: the child starts life in that cgroup2
/// directory, which costs nothing, where moving it afterwards waits for an RCU grace period.
/// Returns 0 in the child and the child's pid in the parent.
pub fn clone3_process(flags: CloneFlags, cgroup: Option<&OwnedFd>) -> Result<i32> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let mut args = CloneArgs {
        flags: flags.bits() as u64,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: 0,
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: clone3 without CLONE_VM and without a stack is fork(): the child gets a private copy of our
    // address space; the library is only used from single-threaded processes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error())
            .ctx(|| format!("clone3 with namespaces {flags:?} into a cgroup"));
    }
    Ok(r as i32)
}

/// A clone that starts the child in `cgroup`'s cgroup2 directory when there is one (CLONE_INTO_CGROUP),
/// falling back to a plain clone where that fails. Returns the clone's result and whether the child was
/// born in the cgroup2 directory (if not, the caller must move it there).
pub fn clone_into_cgroup(
    flags: CloneFlags,
    cgroup: &berth_cgroups::Cgroup,
) -> Result<(Result<i32>, bool)> {
    let v2_fd = match cgroup.v2_path() {
        Some(p) => Some(
            open(
                p,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| format!("opening {}", p.display()))?,
        ),
        None => None,
    };
    Ok(match clone3_process(flags, v2_fd.as_ref()) {
        Err(_) if v2_fd.is_some() => (clone_process(flags), false),
        r => {
            let born = v2_fd.is_some() && r.is_ok();
            (r, born)
        }
    })
}

/// Namespace files of a running process that differ from ours (those we must join to exec into it).
pub fn of_process(pid: i32) -> Result<Vec<Join>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for t in [
        LinuxNamespaceType::User,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Time,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
    ] {
        let name = proc_name(t);
        let theirs = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let ours = format!("/proc/self/ns/{name}");
        let (a, b) = match (std::fs::metadata(&theirs), std::fs::metadata(&ours)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => continue,
        };
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let fd = open(&theirs, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .ctx(|| format!("opening {}", theirs.display()))?;
        out.push(Join {
            typ: t,
            fd,
            path: theirs,
        });
    }
    Ok(out)
}
