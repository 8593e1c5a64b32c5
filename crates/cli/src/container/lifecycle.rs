//! create, start, stop, kill, restart, rm and the monitor's clean-up.
//!
//! Consistency: a container's row is written in one transaction, its files live under its own
//! dirs, and every step that changes a container holds the flock on `<root>/containers/<id>/lock`
//! (start, the clean-up, rm), so the monitor's clean-up can never overtake the start that
//! records the container as running. A failed create or run leaves nothing: no row, no dirs, no
//! mount, no cgroup (the runtime undoes its own half-made container).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use berth_monitor::config::{ExitRecord, MonitorConfig, RuntimeChoice};
use berth_monitor::frame;
use nix::fcntl::{Flock, FlockArg};

use super::record::{self, Container, Status};
use super::settings::{self, CreateArgs, Settings};
use super::{defaults, helper_binary, spec, which, Paths};
use crate::store::Store;

/// Default seconds between the stop signal and SIGKILL (docker's).
pub const DEFAULT_STOP_TIMEOUT: u32 = 10;

/// Makes a 64-hex-digit id from the kernel's random source.
pub fn new_id() -> Result<String> {
    let mut b = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A docker-style name (`adjective_surname`) from the id.
pub(crate) fn generated_name(id: &str) -> String {
    const ADJ: &[&str] = &[
        "brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "proud", "quirky", "sharp", "tender", "vivid", "witty", "zen",
    ];
    const NAMES: &[&str] = &[
        "babbage", "curie", "dijkstra", "euler", "feynman", "gauss", "hopper", "knuth", "lamport",
        "lovelace", "noether", "pike", "ritchie", "shannon", "thompson", "turing", "wirth",
    ];
    let n = u64::from_str_radix(&id[..12.min(id.len())], 16).unwrap_or(0);
    format!(
        "{}_{}_{}",
        ADJ[(n % ADJ.len() as u64) as usize],
        NAMES[((n / 97) % NAMES.len() as u64) as usize],
        &id[..4.min(id.len())]
    )
}

pub(crate) fn check_name(n: &str) -> Result<()> {
    let ok = !n.is_empty()
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        bail!("invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
    }
    Ok(())
}

/// Turns the flags and the image's config into checked settings.
pub fn build_settings(
    a: &CreateArgs,
    img: &berth_image::formats::ImageConfig,
    id: &str,
    cmd: &[String],
    auto_remove: bool,
) -> Result<Settings> {
    let ic = &img.config;
    let entrypoint: Vec<String> = match &a.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => ic.entrypoint.clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !cmd.is_empty() {
        cmd.to_vec()
    } else if a.entrypoint.is_some() {
        Vec::new() // docker: --entrypoint resets the image's Cmd
    } else {
        ic.cmd.clone().unwrap_or_default()
    };
    let mut args = entrypoint.clone();
    args.extend(cmd);
    if args.is_empty() {
        bail!("no command specified: the image has no Cmd or Entrypoint, give one after the image name");
    }
    let mut env = ic.env.clone();
    for e in settings::collect_env(a)? {
        settings::merge_env(&mut env, &e);
    }
    let (network, net) = super::network::settings_of(a, ic)?;
    let stop_signal = a
        .stop_signal
        .clone()
        .or_else(|| ic.stop_signal.clone())
        .unwrap_or_else(|| "SIGTERM".into());
    settings::parse_signal(&stop_signal)?;
    let mut no_new_privileges = false;
    let mut seccomp = settings::Seccomp::Default;
    for o in &a.security_opt {
        let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), ""));
        match (k, v) {
            ("no-new-privileges", "" | "true") => no_new_privileges = true,
            ("no-new-privileges", "false") => no_new_privileges = false,
            ("seccomp", "unconfined") => seccomp = settings::Seccomp::Unconfined,
            ("seccomp", p) if !p.is_empty() => {
                let path = PathBuf::from(p);
                defaults::parse_seccomp_profile(&path, &[])
                    .with_context(|| format!("--security-opt {o}"))?;
                seccomp = settings::Seccomp::Profile(std::fs::canonicalize(&path).unwrap_or(path));
            }
            ("label" | "apparmor", _) => {} // no SELinux/AppArmor on this engine: accepted, as podman does
            _ => bail!("invalid --security-opt {o:?}: want seccomp=PROFILE|unconfined or no-new-privileges"),
        }
    }
    let runtime = match a.runtime.as_deref() {
        None | Some("berth") => None,
        Some(r) => Some(which(r).ok_or_else(|| anyhow!("runtime {r:?} not found in $PATH"))?),
    };
    let memory = a.memory.as_deref().map(settings::parse_size).transpose()?;
    if let Some(m) = memory {
        if m < 6 << 20 {
            bail!("invalid --memory: the minimum is 6 MiB");
        }
    }
    let cpus_milli = match &a.cpus {
        None => None,
        Some(c) => {
            let v: f64 = c
                .parse()
                .map_err(|_| anyhow!("invalid --cpus {c:?}: want a number such as 1.5"))?;
            let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            if !(0.01..=ncpu).contains(&v) {
                bail!("invalid --cpus {c:?}: range is 0.01 to {ncpu} (the CPUs of this host)");
            }
            Some((v * 1000.0).round() as u64)
        }
    };
    let mounts = super::volume::mounts(a, &ic.volumes)?;
    let (mut log_max_size, mut log_max_files) = (10u64 << 20, 3u32);
    for o in &a.log_opt {
        match o.split_once('=') {
            Some(("max-size", v)) => log_max_size = settings::parse_size(v)? as u64,
            Some(("max-file", v)) => {
                log_max_files = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    anyhow!("invalid --log-opt {o:?}: max-file must be a number >= 1")
                })?
            }
            _ => bail!("invalid --log-opt {o:?}: want max-size=SIZE or max-file=N"),
        }
    }
    Ok(Settings {
        entrypoint,
        args,
        env,
        workdir: a
            .workdir
            .clone()
            .or_else(|| ic.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
        user: a
            .user
            .clone()
            .or_else(|| ic.user.clone())
            .unwrap_or_default(),
        hostname: a.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
        read_only: a.read_only,
        tmpfs: mounts.tmpfs,
        binds: mounts.binds,
        memory,
        cpus_milli,
        pids_limit: a.pids_limit.filter(|p| *p > 0),
        ulimits: a
            .ulimit
            .iter()
            .map(|u| settings::parse_ulimit(u))
            .collect::<Result<_>>()?,
        sysctls: settings::parse_pairs(&a.sysctl, "sysctl")?,
        devices: a
            .device
            .iter()
            .map(|d| settings::parse_device(d))
            .collect::<Result<_>>()?,
        capabilities: defaults::capabilities(&a.cap_add, &a.cap_drop, a.privileged)?,
        privileged: a.privileged,
        seccomp,
        no_new_privileges,
        init: a.init,
        stop_signal,
        stop_timeout: a.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
        labels: {
            let mut l = ic.labels.clone();
            l.extend(settings::parse_pairs(&a.label, "label")?);
            l
        },
        runtime,
        network,
        net,
        interactive: a.interactive,
        tty: a.tty,
        auto_remove,
        log_max_size,
        log_max_files,
        volumes: mounts.volumes,
        pod: None,
        pod_infra: false,
    })
}

/// `create`: the container's row and dir; nothing runs yet.
pub fn create(
    store: &mut Store,
    paths: &Paths,
    image: &str,
    cmd: &[String],
    a: &CreateArgs,
    auto_remove: bool,
) -> Result<Container> {
    if let Some(n) = &a.name {
        check_name(n)?;
    }
    // `--pod` (checked before any pull): the pod's namespaces, hostname and network.
    let pod = crate::pod::membership(store, a)?;
    let img = match (a.pull.as_str(), store.resolve(image)) {
        ("never", r) => r?,
        ("missing", Ok(i)) => i,
        ("missing" | "always", _) => {
            let opts = crate::pull::PullOpts {
                quiet: true,
                platform: None,
                tls_verify: None,
                authfile: None,
            };
            crate::pull::pull(store, image, &opts)
                .with_context(|| format!("image {image} is not here and pulling it failed"))?;
            store.resolve(image)?
        }
        (p, _) => bail!("invalid --pull {p:?}: want missing, always or never"),
    };
    let config = store.config(&img)?;
    let id = new_id()?;
    let mut settings = build_settings(a, &config, &id, cmd, auto_remove)?;
    if let Some(p) = &pod {
        p.apply(&mut settings);
    }
    super::volume::set_sources(paths, &mut settings);
    super::network::check_at_create(store, &mut settings)?;
    let c = Container {
        name: a.name.clone().unwrap_or_else(|| generated_name(&id)),
        image_id: img.id.clone(),
        image_name: if img
            .tags
            .iter()
            .any(|t| crate::store::tag_name(image).ok().as_ref() == Some(t))
        {
            crate::util::short_name(&crate::store::tag_name(image)?)
        } else {
            image.to_string()
        },
        id,
        created_ns: berth_monitor::logfile::now_ns(),
        settings,
        state: "created".into(),
        pid: None,
        pid_start: None,
        monitor_pid: None,
        monitor_start: None,
        boot_id: None,
        exit_code: None,
        started_ns: None,
        finished_ns: None,
        restart_count: 0,
        oom_killed: false,
    };
    let dir = paths.container_dir(&c.id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tx = store.db.write()?;
    // The volumes it names are made with it (rows and dirs), or not at all.
    let mut made_volumes = Vec::new();
    let inserted = super::volume::create_for(&tx, paths, &c, &mut made_volumes)
        .and_then(|()| record::insert(&tx, &c))
        .and_then(|()| super::volume::record_use(&tx, &c))
        .and_then(|()| Ok(tx.commit()?));
    if let Err(e) = inserted {
        let _ = std::fs::remove_dir_all(&dir);
        super::volume::undo(&made_volumes);
        return Err(e);
    }
    Ok(c)
}

/// The per-container lock.
pub fn lock(paths: &Paths, id: &str) -> Result<Flock<File>> {
    let dir = paths.container_dir(id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .with_context(|| format!("opening {}/lock", dir.display()))?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| anyhow!("locking container {id}: {e}"))
}

fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

pub(crate) fn unmount_rootfs(paths: &Paths, id: &str) {
    let merged = paths.container_dir(id).join("snapshot/merged");
    if is_mountpoint(&merged) {
        let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Mounts (or, on a host without overlayfs, reuses the copied) root filesystem.
pub(crate) fn mount_rootfs(store: &Store, paths: &Paths, c: &Container) -> Result<PathBuf> {
    let snap_dir = paths.container_dir(&c.id).join("snapshot");
    let merged = snap_dir.join("merged");
    unmount_rootfs(paths, &c.id);
    let copied = std::fs::read_dir(&merged)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if copied {
        return Ok(merged);
    }
    let img = store
        .db
        .image(&c.image_id)?
        .ok_or_else(|| anyhow!("the image {} of container {} is gone", c.image_id, c.name))?;
    let dirs: Vec<PathBuf> = img
        .layers
        .iter()
        .map(|l| store.layer_dir(&l.diff_id))
        .collect();
    let refs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
    // A `--rm` container's upper dir is thrown away with it: no syncs for it (overlay `volatile`).
    let opts = berth_image::snapshot::OverlayOptions {
        volatile: c.settings.auto_remove,
    };
    let snap = berth_image::snapshot::prepare_with(
        &refs,
        &snap_dir,
        berth_image::snapshot::Mode::Auto,
        opts,
    )
    .with_context(|| format!("mounting the root filesystem of {}", c.name))?;
    // The mount outlives this process (the container uses it); the clean-up unmounts it.
    std::mem::forget(snap);
    Ok(merged)
}

pub(crate) fn runtime_choice(paths: &Paths, s: &Settings) -> RuntimeChoice {
    match &s.runtime {
        None => RuntimeChoice::Builtin {
            root: paths.builtin_runtime_root(),
        },
        Some(p) => RuntimeChoice::Binary {
            path: p.clone(),
            root: paths.binary_runtime_root(p),
        },
    }
}

/// How `start` reports back.
pub struct Started {
    /// The monitor's socket: attach frames (output, exit) arrive here.
    pub sock: UnixStream,
}

/// `start`: mounts the root, writes the config, starts a monitor and waits until the container
/// runs (or failed: then everything start made is undone and the container stays `created`).
pub fn start(store: &mut Store, paths: &Paths, c: &Container) -> Result<Option<Started>> {
    // A pod's container needs its infra container running (the namespaces it joins).
    crate::pod::before_start(store, paths, c)?;
    let _lock = lock(paths, &c.id)?;
    let c = record::get(store.db.conn(), &c.id)?
        .ok_or_else(|| anyhow!("no such container: {}", c.name))?;
    match c.status() {
        Status::Running | Status::RunningUnmonitored => return Ok(None),
        Status::Exited(_) if c.state == "running" => {
            // Died unrecorded (monitor killed, reboot): tidy what is left before starting again.
            cleanup_locked(store, paths, &c, None)?;
        }
        _ => {}
    }
    let outcome = start_locked(store, paths, &c);
    if outcome.is_err() {
        if let Err(e) = super::network::teardown(store, paths, &c) {
            eprintln!("warning: releasing the network of {}: {e:#}", c.name);
        }
        unmount_rootfs(paths, &c.id);
        let _ = std::fs::remove_dir_all(paths.run_dir(&c.id));
    }
    outcome.map(Some)
}

fn start_locked(store: &mut Store, paths: &Paths, c: &Container) -> Result<Started> {
    // The run dir (on the runroot, a tmpfs normally) holds what lives only while the container
    // runs: the monitor's files and the generated /etc files.
    let run_dir = paths.run_dir(&c.id);
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let monitor = helper_binary("berth-monitor", "BERTH_MONITOR").ok_or_else(|| {
        anyhow!("berth-monitor was not found next to the berth binary (set BERTH_MONITOR)")
    })?;
    // The monitor starts up (exec, loading) while we mount and write its bundle; it waits for GO.
    let mut sock = spawn_monitor(&monitor, &run_dir)?;
    if let Err(e) = prepare_bundle(store, paths, c, &run_dir) {
        // No GO: the monitor sees EOF and ends; wait for that (its end of the socket closes
        // with it), so that nothing of this start outlives the command.
        let _ = sock.shutdown(std::net::Shutdown::Write);
        let mut sink = [0u8; 256];
        while matches!(sock.read(&mut sink), Ok(n) if n > 0) {}
        return Err(e);
    }
    sock.write_all(&frame::encode(frame::GO, &[]))
        .context("starting the monitor")?;
    let f = frame::read_frame(&mut sock)
        .context("waiting for the monitor")?
        .ok_or_else(|| {
            let log = std::fs::read_to_string(run_dir.join("monitor.log")).unwrap_or_default();
            anyhow!(
                "the monitor ended before the container started: {}",
                log.trim()
            )
        })?;
    match f.kind {
        frame::STARTED => {
            let pid = f.int().unwrap_or(0);
            let mpid = f
                .payload
                .get(4..8)
                .and_then(|b| b.try_into().ok())
                .map(i32::from_be_bytes)
                .unwrap_or(0);
            let tx = store.db.write()?;
            record::set_running(&tx, &c.id, pid, mpid, berth_monitor::logfile::now_ns())?;
            tx.commit()?;
            Ok(Started { sock })
        }
        frame::ERROR => Err(super::start_failure(
            String::from_utf8_lossy(&f.payload).into_owned(),
        )),
        k => bail!("monitor protocol error: frame kind {k} before start"),
    }
}

/// Mounts the container's root, prepares its volumes and network, and writes its bundle
/// (config.json, the /etc files) and the monitor's config into `run_dir`.
fn prepare_bundle(store: &mut Store, paths: &Paths, c: &Container, run_dir: &Path) -> Result<()> {
    let dir = paths.container_dir(&c.id);
    let rootfs = mount_rootfs(store, paths, c)?;
    super::volume::prepare(store.db.conn(), paths, c, &rootfs)?;
    let net = super::network::setup(store, paths, c)?;
    spec::write_etc_files(run_dir, &c.settings, &net)?;
    let cgroup_v2 = matches!(
        berth_cgroups::detect_layout(),
        Ok(berth_cgroups::Layout::Unified)
    );
    let init = helper_binary("berth-init", "BERTH_INIT");
    let joins = crate::pod::namespace_joins(store, c)?;
    let config = spec::build(
        &c.settings,
        &spec::SpecInputs {
            id: &c.id,
            rootfs: &rootfs,
            dir: run_dir,
            init_binary: init.as_deref(),
            cgroup_v2,
            netns: net.netns.as_deref(),
            joins: &joins,
        },
    )?;
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&config)?)
        .context("writing config.json")?;
    let exe = std::env::current_exe().context("finding the berth binary")?;
    let mcfg = MonitorConfig {
        id: c.id.clone(),
        bundle: dir.clone(),
        runtime: runtime_choice(paths, &c.settings),
        log_path: dir.join("ctr.log"),
        log_max_size: c.settings.log_max_size,
        log_max_files: c.settings.log_max_files,
        terminal: c.settings.tty,
        stdin_open: c.settings.interactive,
        exit_command: vec![
            exe.display().to_string(),
            "--root".into(),
            paths.root.display().to_string(),
            "--runroot".into(),
            paths.runroot.display().to_string(),
            "container".into(),
            "cleanup".into(),
            c.id.clone(),
        ],
    };
    mcfg.save(run_dir).context("writing monitor.json")?;
    Ok(())
}

/// Starts `berth-monitor RUN_DIR` in a session of its own with one end of a socket pair as its
/// fd 3, stdout/stderr appending to `monitor.log`; returns our end.
///
/// posix_spawn (glibc: clone with CLONE_VM|CLONE_VFORK) rather than fork: forking this process
/// copies the page tables of everything the CLI mapped (SQLite, TLS, ...) just to exec a small
/// binary, twice with a double fork. The monitor stays our child until we exit (then init's, or
/// the nearest subreaper's); a zombie of it never counts as alive (`process_matches`).
fn spawn_monitor(monitor: &Path, run_dir: &Path) -> Result<UnixStream> {
    let (ours, theirs) = UnixStream::pair().context("socketpair")?;
    let prog = std::ffi::CString::new(monitor.as_os_str().as_encoded_bytes())?;
    let arg = std::ffi::CString::new(run_dir.as_os_str().as_encoded_bytes())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run_dir.join("monitor.log"))
        .context("opening monitor.log")?;
    let null = File::open("/dev/null").context("/dev/null")?;
    let env: Vec<std::ffi::CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            std::ffi::CString::new(kv).ok()
        })
        .collect();
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let argv = [prog.as_ptr(), arg.as_ptr(), std::ptr::null()];
    let mut pid: libc::pid_t = 0;
    // SAFETY: posix_spawn with file actions and attributes initialised, used and destroyed here;
    // every pointer (paths, argv, envp) outlives the call.
    let rc = unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut at: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut fa);
        libc::posix_spawnattr_init(&mut at);
        libc::posix_spawn_file_actions_adddup2(&mut fa, null.as_raw_fd(), 0);
        libc::posix_spawn_file_actions_adddup2(&mut fa, log.as_raw_fd(), 1);
        libc::posix_spawn_file_actions_adddup2(&mut fa, log.as_raw_fd(), 2);
        libc::posix_spawn_file_actions_adddup2(&mut fa, theirs.as_raw_fd(), 3);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::posix_spawnattr_setsigmask(&mut at, &empty);
        libc::posix_spawnattr_setflags(
            &mut at,
            libc::POSIX_SPAWN_SETSID | libc::POSIX_SPAWN_SETSIGMASK as libc::c_short,
        );
        let rc = libc::posix_spawn(
            &mut pid,
            prog.as_ptr(),
            &fa,
            &at,
            argv.as_ptr() as *const *mut libc::c_char,
            envp.as_ptr() as *const *mut libc::c_char,
        );
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut at);
        rc
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc))
            .with_context(|| format!("starting {}", monitor.display()));
    }
    drop(theirs);
    Ok(ours)
}

/// `pidfd_open`.
fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with integer arguments; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: the fd was just returned by the kernel and is owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until the process exits or `timeout` passes; true if it is gone.
fn wait_gone(pid: i32, start: Option<u64>, timeout: Option<Duration>) -> bool {
    let Some(fd) = pidfd(pid) else { return true };
    if let Some(s) = start {
        if !berth_runtime::state::process_matches(pid, s) {
            return true;
        }
    }
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => d.saturating_duration_since(Instant::now()).as_millis() as i32,
        };
        // SAFETY: poll on one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n > 0 {
            return true;
        }
        if n == 0 {
            return false;
        }
    }
}

/// Sends a signal to the container's init (checked by its start time, through a pidfd).
pub fn signal(c: &Container, sig: i32) -> Result<()> {
    let Some(pid) = c.live_pid() else {
        bail!("container {} is not running", c.name);
    };
    let fd = pidfd(pid).ok_or_else(|| anyhow!("container {} is not running", c.name))?;
    if !berth_runtime::state::process_matches(pid, c.pid_start.unwrap_or(0)) {
        bail!("container {} is not running", c.name);
    }
    // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e).with_context(|| format!("signalling container {}", c.name));
        }
    }
    Ok(())
}

/// Waits until a running container has exited and its clean-up is done; its exit code.
pub fn wait_exit(
    store: &mut Store,
    paths: &Paths,
    id: &str,
    timeout: Option<Duration>,
) -> Result<Option<i32>> {
    let c = record::get(store.db.conn(), id)?.ok_or_else(|| anyhow!("no such container: {id}"))?;
    if c.monitor_alive() {
        if !wait_gone(c.monitor_pid.unwrap_or(0), c.monitor_start, timeout) {
            bail!("container {} did not exit in time", c.name);
        }
    } else if let Some(pid) = c.live_pid() {
        if !wait_gone(pid, c.pid_start, timeout) {
            bail!("container {} did not exit in time", c.name);
        }
    }
    // Without a monitor (killed), nobody recorded the exit: do it here.
    if let Some(c) = record::get(store.db.conn(), id)? {
        if c.state == "running" && !c.status().is_running() {
            cleanup(store, paths, id)?;
        }
    }
    Ok(record::get(store.db.conn(), id)?.and_then(|c| c.exit_code))
}

/// `stop`: the stop signal, then SIGKILL after `timeout` seconds.
pub fn stop(store: &mut Store, paths: &Paths, c: &Container, timeout: Option<u32>) -> Result<()> {
    if !c.status().is_running() {
        if c.state == "running" {
            cleanup(store, paths, &c.id)?;
        }
        return Ok(());
    }
    let t = timeout.unwrap_or(c.settings.stop_timeout);
    signal(c, settings::parse_signal(&c.settings.stop_signal)?)?;
    let pid = c.pid.unwrap_or(0);
    if !wait_gone(pid, c.pid_start, Some(Duration::from_secs(t.into()))) {
        let _ = signal(c, libc::SIGKILL);
        wait_gone(pid, c.pid_start, Some(Duration::from_secs(10)));
    }
    wait_exit(store, paths, &c.id, Some(Duration::from_secs(30)))?;
    Ok(())
}

/// The monitor's clean-up (`berth container cleanup ID`): record the exit, delete the runtime's
/// state, unmount, and remove the container when it was run with `--rm`.
pub fn cleanup(store: &mut Store, paths: &Paths, id: &str) -> Result<()> {
    let _lock = lock(paths, id)?;
    let Some(c) = record::get(store.db.conn(), id)? else {
        return Ok(());
    };
    let exit = ExitRecord::load(&paths.run_dir(id));
    cleanup_locked(store, paths, &c, exit)
}

fn runtime_delete(paths: &Paths, c: &Container) {
    match runtime_choice(paths, &c.settings) {
        RuntimeChoice::Builtin { root } => {
            if let Ok(rt) = berth_runtime::Runtime::new(root) {
                let _ = rt.delete(&c.id, &berth_runtime::DeleteOptions { force: true });
            }
        }
        RuntimeChoice::Binary { path, root } => {
            let _ = std::process::Command::new(path)
                .arg("--root")
                .arg(root)
                .args(["delete", "--force", &c.id])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Whether the kernel's OOM killer killed a process of the container (its memory cgroup's
/// `oom_kill` count, v1 or v2), as docker's `State.OOMKilled`. Unknown counts as no. On the
/// critical path of every foreground `run --rm`, hence the count read without mountinfo.
fn oom_kill_seen(c: &Container) -> bool {
    let path = super::spec::cgroups_path(&c.id);
    berth_cgroups::oom_kill_count_at(std::path::Path::new(&path), &c.id).is_ok_and(|n| n > 0)
}

fn cleanup_locked(
    store: &mut Store,
    paths: &Paths,
    c: &Container,
    exit: Option<ExitRecord>,
) -> Result<()> {
    // Read before the runtime's delete removes the cgroup.
    let oom_killed = c.state == "running" && oom_kill_seen(c);
    // The runtime's delete (cgroup removal) and the unmount are independent: side by side.
    std::thread::scope(|t| {
        t.spawn(|| runtime_delete(paths, c));
        unmount_rootfs(paths, &c.id);
    });
    if let Err(e) = super::network::teardown(store, paths, c) {
        eprintln!("warning: releasing the network of {}: {e:#}", c.name);
    }
    if c.state == "running" {
        let tx = store.db.write()?;
        record::set_exited(
            &tx,
            &c.id,
            exit.map(|e| e.code),
            exit.map_or_else(berth_monitor::logfile::now_ns, |e| e.finished_ns),
            oom_killed,
        )?;
        tx.commit()?;
    }
    let _ = std::fs::remove_dir_all(paths.run_dir(&c.id));
    if c.settings.auto_remove {
        remove_files_and_row(store, paths, c, true)?;
    }
    Ok(())
}

/// Removes the container's files and row; with `volumes`, its anonymous volumes too (those no
/// other container uses).
fn remove_files_and_row(
    store: &mut Store,
    paths: &Paths,
    c: &Container,
    volumes: bool,
) -> Result<()> {
    let dir = paths.container_dir(&c.id);
    berth_image::snapshot::remove_dir(&dir.join("snapshot"))
        .with_context(|| format!("removing the root filesystem of {}", c.name))?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    let _ = std::fs::remove_dir_all(paths.run_dir(&c.id));
    let anonymous = if volumes {
        super::volume::anonymous_of(store.db.conn(), &c.id)?
    } else {
        Vec::new()
    };
    let tx = store.db.write()?;
    record::delete(&tx, &c.id)?;
    tx.commit()?;
    super::volume::remove_unused(store, paths, &anonymous);
    Ok(())
}

/// `rm`: a running container only with `force` (killed first); anonymous volumes go with a
/// `--rm` container.
pub fn remove(store: &mut Store, paths: &Paths, c: &Container, force: bool) -> Result<()> {
    remove_with_volumes(store, paths, c, force, false)
}

/// `rm [-v]`: with `volumes`, the container's anonymous volumes are removed too (`rm -v`).
pub fn remove_with_volumes(
    store: &mut Store,
    paths: &Paths,
    c: &Container,
    force: bool,
    volumes: bool,
) -> Result<()> {
    // A pod's infra container goes with its pod only (`pod rm`).
    crate::pod::check_remove(store, c)?;
    if c.status().is_running() {
        if !force {
            bail!(
                "cannot remove container {}: it is running (stop it first, or use rm -f)",
                c.name
            );
        }
        signal(c, libc::SIGKILL)?;
        wait_exit(store, paths, &c.id, Some(Duration::from_secs(30)))?;
    } else if c.state == "running" {
        cleanup(store, paths, &c.id)?;
    }
    let _lock = lock(paths, &c.id)?;
    let Some(c) = record::get(store.db.conn(), &c.id)? else {
        return Ok(()); // removed by its own --rm clean-up meanwhile
    };
    runtime_delete(paths, &c);
    unmount_rootfs(paths, &c.id);
    if let Err(e) = super::network::teardown(store, paths, &c) {
        eprintln!("warning: releasing the network of {}: {e:#}", c.name);
    }
    let volumes = volumes || c.settings.auto_remove;
    remove_files_and_row(store, paths, &c, volumes)
}
