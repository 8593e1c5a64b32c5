//! The process that runs in the container: everything from `process` resolved before fork, then applied
//! in the child in the order the kernel requires, ending in execve.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{PosixRlimit, Process, User};

use super::capabilities::{self, Resolved};
use super::{rlimits, user};
use crate::error::Context;
use crate::{Error, Result};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A process ready to be applied in the child; built in the parent so that bad input fails before fork.
pub struct Prepared {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub path_env: String,
    pub cwd: PathBuf,
    pub user: User,
    pub caps: Option<Resolved>,
    pub rlimits: Vec<PosixRlimit>,
    pub no_new_privs: bool,
    pub oom_score_adj: Option<i32>,
    pub seccomp: Option<berth_seccomp::CompiledFilter>,
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
    pub apparmor: Option<String>,
    pub selinux_label: Option<String>,
    pub io_priority: Option<(i64, i64)>,
    /// setgroups is allowed (false in a user namespace whose setgroups file says deny).
    pub allow_setgroups: bool,
    /// The sealed exec trampoline (see `trampoline`); `None` where there is none for this architecture.
    pub trampoline: Option<std::os::fd::OwnedFd>,
}

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Invalid(format!("{what} {s:?} contains a NUL byte")))
}

impl Prepared {
    pub fn new(p: &Process, seccomp: Option<&oci_spec::runtime::LinuxSeccomp>) -> Result<Prepared> {
        let args = p
            .args()
            .iter()
            .flatten()
            .map(|a| cstring(a, "argument"))
            .collect::<Result<Vec<_>>>()?;
        if args.is_empty() {
            return Err(Error::Invalid("process.args is empty".into()));
        }
        let env_list: Vec<String> = p.env().clone().unwrap_or_default();
        let env = env_list
            .iter()
            .map(|e| cstring(e, "environment variable"))
            .collect::<Result<Vec<_>>>()?;
        let path_env = env_list
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        let caps = p
            .capabilities()
            .as_ref()
            .map(capabilities::resolve)
            .transpose()?;
        let rlimits = p.rlimits().clone().unwrap_or_default();
        rlimits::check(&rlimits)?;
        let oom = p.oom_score_adj();
        if let Some(want) = oom {
            check_oom_score_adj(want)?;
        }
        let seccomp = seccomp.map(berth_seccomp::compile_cached).transpose()?;
        let io_priority = p.io_priority().as_ref().map(|io| {
            let class = match io.class() {
                oci_spec::runtime::IOPriorityClass::IoprioClassRt => 1,
                oci_spec::runtime::IOPriorityClass::IoprioClassBe => 2,
                oci_spec::runtime::IOPriorityClass::IoprioClassIdle => 3,
            };
            (class, io.priority())
        });
        if let Some(label) = p.selinux_label() {
            if !Path::new("/sys/fs/selinux/enforce").exists() && !label.is_empty() {
                return Err(Error::Unsupported(format!(
                    "process.selinuxLabel {label:?} is set but SELinux is not enabled on this host"
                )));
            }
        }
        if let Some(profile) = p.apparmor_profile() {
            if !profile.is_empty() && !apparmor_enabled() {
                return Err(Error::Unsupported(format!(
                    "process.apparmorProfile {profile:?} is set but AppArmor is not enabled on this host"
                )));
            }
        }
        if p.scheduler().is_some() {
            return Err(Error::Unsupported(
                "process.scheduler is not supported by berth-runtime yet".into(),
            ));
        }
        if p.exec_cpu_affinity().is_some() {
            return Err(Error::Unsupported(
                "process.execCPUAffinity is not supported by berth-runtime yet".into(),
            ));
        }
        Ok(Prepared {
            args,
            env,
            path_env,
            cwd: p.cwd().clone(),
            user: p.user().clone(),
            caps,
            rlimits,
            no_new_privs: p.no_new_privileges().unwrap_or(false),
            oom_score_adj: oom,
            seccomp,
            terminal: p.terminal().unwrap_or(false),
            console_size: p
                .console_size()
                .as_ref()
                .map(|b| (b.height() as u16, b.width() as u16)),
            apparmor: p.apparmor_profile().clone().filter(|s| !s.is_empty()),
            selinux_label: p.selinux_label().clone().filter(|s| !s.is_empty()),
            io_priority,
            allow_setgroups: true,
            trampoline: super::trampoline::create()?,
        })
    }

    /// Whether seccomp must be loaded before the capabilities are dropped (without no_new_privs loading a
    /// filter needs CAP_SYS_ADMIN; a notify filter's fd must reach the parent before the container starts).
    pub fn seccomp_early(&self) -> bool {
        self.seccomp
            .as_ref()
            .is_some_and(|s| !self.no_new_privs || s.uses_notify())
    }

    /// Per-process settings that need privileges: rlimits, OOM score, I/O priority, LSM labels.
    pub fn apply_privileged(&self) -> Result<()> {
        rlimits::apply(&self.rlimits)?;
        if let Some(adj) = self.oom_score_adj {
            std::fs::write("/proc/self/oom_score_adj", adj.to_string())
                .ctx(|| format!("setting oom_score_adj to {adj}"))?;
        }
        if let Some((class, prio)) = self.io_priority {
            let value = (class << 13) | prio;
            // SAFETY: ioprio_set with integer arguments (IOPRIO_WHO_PROCESS, 0 = ourselves).
            if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .ctx(|| format!("setting the I/O priority class {class} level {prio}"));
            }
        }
        if let Some(p) = &self.apparmor {
            std::fs::write("/proc/self/attr/apparmor/exec", format!("exec {p}"))
                .ctx(|| format!("setting the AppArmor profile {p}"))?;
        }
        if let Some(l) = &self.selinux_label {
            std::fs::write("/proc/self/attr/exec", l)
                .ctx(|| format!("setting the SELinux label {l}"))?;
        }
        Ok(())
    }

    /// The early seccomp load (see [`Prepared::seccomp_early`]): sets no_new_privs first if asked, loads
    /// the filter and returns its notify fd, if any. Does nothing when the filter is loaded late.
    pub fn load_seccomp_early(&self) -> Result<Option<std::os::fd::OwnedFd>> {
        if !self.seccomp_early() {
            return Ok(None);
        }
        if self.no_new_privs {
            set_no_new_privs()?;
        }
        self.load_seccomp()
    }

    /// Loads the seccomp filter; returns the notify fd if it has one.
    pub fn load_seccomp(&self) -> Result<Option<std::os::fd::OwnedFd>> {
        match &self.seccomp {
            Some(f) => Ok(f.load()?),
            None => Ok(None),
        }
    }

    /// Drops privileges: bounding set, user and groups, the other capability sets, no_new_privs, cwd.
    pub fn drop_privileges(&self) -> Result<()> {
        // No capabilities object: the process gets none at all, bounding set included (as runc).
        let none = Resolved::empty();
        let caps = self.caps.as_ref().unwrap_or(&none);
        capabilities::apply_bounding(caps)?;
        user::switch(&self.user, self.allow_setgroups)?;
        capabilities::apply_sets(caps)?;
        if self.no_new_privs {
            set_no_new_privs()?;
        }
        nix::unistd::chdir(&self.cwd)
            .ctx(|| format!("chdir to process.cwd {}", self.cwd.display()))?;
        // A cwd reached through a leaked host descriptor (/proc/self/fd/N) would be outside the container's
        // root: getcwd then fails or says "(unreachable)" (the CVE-2024-21626 class).
        match nix::unistd::getcwd() {
            Ok(p) if p.is_absolute() => {}
            _ => {
                return Err(Error::Invalid(format!(
                    "process.cwd {} resolves outside the container",
                    self.cwd.display()
                )))
            }
        }
        Ok(())
    }

    /// The environment, with HOME from the container's /etc/passwd (or "/") added when it has none, as
    /// runc does. Read before the late seccomp filter is loaded.
    pub fn final_env(&self) -> Vec<CString> {
        let mut env = self.env.clone();
        if env.iter().any(|e| e.to_bytes().starts_with(b"HOME=")) {
            return env;
        }
        let uid = self.user.uid().to_string();
        let home = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|p| {
                p.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() > 5 && f[2] == uid).then(|| f[5].to_string())
                })
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "/".to_string());
        if let Ok(c) = CString::new(format!("HOME={home}")) {
            env.push(c);
        }
        env
    }

    /// Finds the program in the container (PATH of the process's own environment).
    pub fn resolve_program(&self) -> Result<CString> {
        let arg0 = self.args[0].to_bytes();
        let name = String::from_utf8_lossy(arg0).into_owned();
        if arg0.contains(&b'/') {
            return Ok(self.args[0].clone());
        }
        for dir in self.path_env.split(':').filter(|d| !d.is_empty()) {
            let candidate = Path::new(dir).join(&name);
            if let Ok(md) = std::fs::metadata(&candidate) {
                if md.is_file()
                    && nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok()
                {
                    return cstring_path(&candidate);
                }
            }
        }
        Err(Error::Invalid(format!(
            "exec: {name:?}: executable file not found in $PATH"
        )))
    }

    /// Checks the program can be exec'd (so the error is reported, see `trampoline::check`).
    pub fn check_program(&self, program: &CString) -> Result<()> {
        match &self.trampoline {
            Some(_) => super::trampoline::check(program),
            None => Ok(()),
        }
    }

    /// execve (through the trampoline when there is one); only returns on failure.
    pub fn exec(&self, program: &CString, env: &[CString]) -> Error {
        if let Some(t) = &self.trampoline {
            return super::trampoline::exec(t, program, &self.args, env);
        }
        match nix::unistd::execve(program, &self.args, env) {
            Err(e) => Error::Invalid(format!(
                "exec {:?}: {}",
                program.to_string_lossy(),
                std::io::Error::from(e)
            )),
            Ok(never) => match never {},
        }
    }
}

fn cstring_path(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("path {} contains a NUL byte", p.display())))
}

/// prctl(PR_SET_PDEATHSIG): `sig` when the parent dies, 0 to clear.
pub fn set_pdeathsig(sig: i32) {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) };
}

/// prctl(PR_SET_NO_NEW_PRIVS).
pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "prctl(PR_SET_NO_NEW_PRIVS)".into());
    }
    Ok(())
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.starts_with('Y'))
        .unwrap_or(false)
}

/// Lowering oom_score_adj below our own needs CAP_SYS_RESOURCE: refuse early with a clear message.
fn check_oom_score_adj(want: i32) -> Result<()> {
    if !(-1000..=1000).contains(&want) {
        return Err(Error::Invalid(format!(
            "oomScoreAdj {want} is outside -1000..1000"
        )));
    }
    let have_cap = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    if have_cap {
        return Ok(());
    }
    let cur: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ctx(|| "reading /proc/self/oom_score_adj".into())?
        .trim()
        .parse()
        .unwrap_or(0);
    if want < cur {
        return Err(Error::Invalid(format!(
            "oomScoreAdj {want} is below the runtime's own ({cur}); lowering it needs CAP_SYS_RESOURCE, \
             which this runtime does not have"
        )));
    }
    Ok(())
}

/// The personality(2) domain of the spec.
pub fn set_personality(p: &oci_spec::runtime::LinuxPersonality) -> Result<()> {
    use oci_spec::runtime::LinuxPersonalityDomain as D;
    let domain: libc::c_ulong = match p.domain() {
        D::PerLinux => 0x0000,
        D::PerLinux32 => 0x0008,
    };
    if let Some(f) = p.flags().iter().flatten().next() {
        return Err(Error::Unsupported(format!(
            "personality flag {f:?} is not supported by berth-runtime"
        )));
    }
    let flags = domain;
    // SAFETY: personality takes an integer.
    if unsafe { libc::personality(flags) } == -1 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("personality({flags:#x})"));
    }
    Ok(())
}
