//! One function per subcommand; each turns flags into a library call and prints what runc prints.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use berth_runtime::{CreateOptions, DeleteOptions, ExecOptions, KillOptions, Runtime};
use oci_spec::runtime::{LinuxCpu, LinuxPids, LinuxResources, Process};

use crate::cli::{Cli, Command, CreateArgs, ExecArgs, ListFormat, UpdateArgs};
use crate::logging::Logger;
use crate::units;

pub fn dispatch(cli: Cli, log: &Logger) -> Result<i32> {
    if cli.systemd_cgroup {
        bail!(
            "the systemd cgroup driver (--systemd-cgroup) is not supported by berth-runtime: \
             use the cgroupfs driver (podman --cgroup-manager cgroupfs, containerd SystemdCgroup = false)"
        );
    }
    log.debug(&format!("command: {:?}", cli.command));
    // The runtime binary must be out of reach of containers (CVE-2019-5736 class). The library's
    // trampoline and non-dumpable setup cover it, except for a container that may hold CAP_SYS_PTRACE or
    // on an architecture without a trampoline: then run from a sealed memfd copy of this binary.
    if protection_needed(&cli) == Some(true)
        || (cfg!(not(target_arch = "x86_64")) && protection_needed(&cli).is_some())
    {
        berth_runtime::cloned_binary::ensure_cloned().context("protecting the runtime binary")?;
    }
    let rt = || Runtime::new(&cli.root).context("opening the state directory");
    match cli.command {
        Command::Spec { bundle } => spec(&bundle, cli.rootless.as_deref() == Some("true")),
        Command::Create(a) => {
            rt()?.create(&create_options(a))?;
            Ok(0)
        }
        Command::Start { id } => {
            rt()?.start(&id)?;
            Ok(0)
        }
        Command::Run { create, detach, .. } => Ok(rt()?.run(&create_options(create), detach)?),
        Command::State { id } => {
            let st = rt()?.state(&id)?;
            println!("{}", serde_json::to_string_pretty(&st)?);
            Ok(0)
        }
        Command::List { format, quiet } => list(&rt()?, format, quiet),
        Command::Kill { all, id, signal } => {
            let sig = berth_runtime::signal::parse(&signal)?;
            rt()?.kill(&id, sig, &KillOptions { all })?;
            Ok(0)
        }
        Command::Delete { force, id } => {
            rt()?.delete(&id, &DeleteOptions { force })?;
            Ok(0)
        }
        Command::Exec(a) => exec(&rt()?, *a),
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(&rt()?, &id, format, &ps_args),
        Command::Pause { id } => {
            rt()?.pause(&id)?;
            Ok(0)
        }
        Command::Resume { id } => {
            rt()?.resume(&id)?;
            Ok(0)
        }
        Command::Update(a) => update(&rt()?, *a),
        Command::Events {
            stats,
            interval,
            id,
        } => events(&rt()?, &id, stats, &interval),
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&berth_runtime::features::document())?
            );
            Ok(0)
        }
        Command::Checkpoint { .. } | Command::Restore { .. } => {
            bail!("checkpoint/restore is not supported by berth-runtime (no CRIU integration)")
        }
    }
}

/// `None` if the command puts no process into a container; else whether the strict (memfd) protection is
/// needed: when CAP_SYS_PTRACE appears anywhere in what configures the process (conservative: a plain
/// substring test on the raw JSON and flags).
fn protection_needed(cli: &Cli) -> Option<bool> {
    const CAP: &[u8] = b"SYS_PTRACE";
    let mentions = |p: &Path| {
        std::fs::read(p)
            .map(|raw| raw.windows(CAP.len()).any(|w| w == CAP))
            .unwrap_or(true)
    };
    match &cli.command {
        Command::Create(a) | Command::Run { create: a, .. } => {
            Some(mentions(&a.bundle.join("config.json")))
        }
        Command::Exec(a) => Some(
            a.cap.iter().any(|c| c.contains("SYS_PTRACE"))
                || a.process
                    .as_deref()
                    .is_some_and(|p| p == Path::new("-") || mentions(p))
                || mentions(&cli.root.join(&a.id).join("config.json")),
        ),
        _ => None,
    }
}

fn create_options(a: CreateArgs) -> CreateOptions {
    CreateOptions {
        id: a.id,
        bundle: a.bundle,
        console_socket: a.console_socket,
        pid_file: a.pid_file,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
    }
}

fn spec(bundle: &Path, rootless: bool) -> Result<i32> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{} already exists: remove it first", path.display());
    }
    let v = if rootless {
        berth_runtime::spec::rootless_spec(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    } else {
        berth_runtime::spec::default_spec()
    };
    std::fs::write(&path, serde_json::to_string_pretty(&v)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(0)
}

fn list(rt: &Runtime, format: ListFormat, quiet: bool) -> Result<i32> {
    let all = rt.list()?;
    if quiet {
        for s in &all {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string(&all)?),
        ListFormat::Table => {
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &all {
                println!(
                    "{:<20} {:<8} {:<10} {:<40} {:<32} {}",
                    s.id,
                    s.pid,
                    s.status,
                    s.bundle.display(),
                    s.created,
                    s.owner
                );
            }
        }
    }
    Ok(0)
}

fn read_json_arg<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let raw = if path == Path::new("-") {
        let mut s = Vec::new();
        std::io::stdin()
            .read_to_end(&mut s)
            .with_context(|| format!("reading {what} from stdin"))?;
        s
    } else {
        std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))?
    };
    serde_json::from_slice(&raw).with_context(|| format!("invalid {what} JSON"))
}

fn exec(rt: &Runtime, a: ExecArgs) -> Result<i32> {
    let process: Process = match &a.process {
        Some(p) => read_json_arg(p, "process")?,
        None => {
            if a.command.is_empty() {
                bail!("exec needs a command (or --process)");
            }
            let mut p = rt.saved_process(&a.id)?;
            p.set_args(Some(a.command.clone()));
            p.set_terminal(Some(a.tty));
            if let Some(cwd) = &a.cwd {
                p.set_cwd(cwd.clone());
            }
            if !a.env.is_empty() {
                let mut env = p.env().clone().unwrap_or_default();
                for e in &a.env {
                    let key = e.split('=').next().unwrap_or("");
                    env.retain(|x| x.split('=').next() != Some(key));
                    env.push(e.clone());
                }
                p.set_env(Some(env));
            }
            let mut user = p.user().clone();
            if let Some(u) = &a.user {
                let (uid, gid) = match u.split_once(':') {
                    Some((u, g)) => (u, Some(g)),
                    None => (u.as_str(), None),
                };
                user.set_uid(
                    uid.parse()
                        .with_context(|| format!("invalid uid in {u:?}"))?,
                );
                if let Some(g) = gid {
                    user.set_gid(g.parse().with_context(|| format!("invalid gid in {u:?}"))?);
                }
            }
            if !a.additional_gids.is_empty() {
                user.set_additional_gids(Some(a.additional_gids.clone()));
            }
            p.set_user(user);
            if !a.cap.is_empty() {
                let mut caps = p.capabilities().clone().unwrap_or_default();
                for c in &a.cap {
                    let name = c.strip_prefix("CAP_").unwrap_or(c);
                    let cap: oci_spec::runtime::Capability = name
                        .parse()
                        .with_context(|| format!("unknown capability {c:?}"))?;
                    for set in [
                        caps.bounding().clone(),
                        caps.effective().clone(),
                        caps.permitted().clone(),
                    ]
                    .iter()
                    .enumerate()
                    {
                        let mut s = set.1.clone().unwrap_or_default();
                        s.insert(cap);
                        match set.0 {
                            0 => caps.set_bounding(Some(s)),
                            1 => caps.set_effective(Some(s)),
                            _ => caps.set_permitted(Some(s)),
                        };
                    }
                }
                p.set_capabilities(Some(caps));
            }
            if a.no_new_privs {
                p.set_no_new_privileges(Some(true));
            }
            if let Some(l) = &a.process_label {
                p.set_selinux_label(Some(l.clone()));
            }
            if let Some(ap) = &a.apparmor {
                p.set_apparmor_profile(Some(ap.clone()));
            }
            p
        }
    };
    let opts = ExecOptions {
        process,
        console_socket: a.console_socket,
        pid_file: a.pid_file,
        detach: a.detach,
        preserve_fds: a.preserve_fds,
    };
    Ok(rt.exec(&a.id, &opts)?)
}

fn ps(rt: &Runtime, id: &str, format: ListFormat, args: &[String]) -> Result<i32> {
    let pids = rt.pids(id)?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    println!("{header}");
    for line in lines {
        let pid: Option<i32> = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(0)
}

fn update(rt: &Runtime, a: UpdateArgs) -> Result<i32> {
    if a.kernel_memory.is_some() || a.kernel_memory_tcp.is_some() {
        bail!("kernel memory limits are not supported: this kernel no longer has them");
    }
    let mut res: LinuxResources = match &a.resources {
        Some(p) => read_json_arg(p, "resources")?,
        None => LinuxResources::default(),
    };
    let mut mem = res.memory().unwrap_or_default();
    let mut mem_set = res.memory().is_some();
    if let Some(m) = &a.memory {
        mem.set_limit(Some(units::parse_size(m)?));
        mem_set = true;
    }
    if let Some(m) = &a.memory_reservation {
        mem.set_reservation(Some(units::parse_size(m)?));
        mem_set = true;
    }
    if let Some(m) = &a.memory_swap {
        mem.set_swap(Some(units::parse_size(m)?));
        mem_set = true;
    }
    if mem_set {
        res.set_memory(Some(mem));
    }
    let mut cpu: LinuxCpu = res.cpu().clone().unwrap_or_default();
    let mut cpu_set = res.cpu().is_some();
    if let Some(v) = a.cpu_period {
        cpu.set_period(Some(v));
        cpu_set = true;
    }
    if let Some(v) = a.cpu_quota {
        cpu.set_quota(Some(v));
        cpu_set = true;
    }
    if let Some(v) = a.cpu_share {
        cpu.set_shares(Some(v));
        cpu_set = true;
    }
    if let Some(v) = a.cpu_rt_period {
        cpu.set_realtime_period(Some(v));
        cpu_set = true;
    }
    if let Some(v) = a.cpu_rt_runtime {
        cpu.set_realtime_runtime(Some(v));
        cpu_set = true;
    }
    if let Some(v) = &a.cpuset_cpus {
        cpu.set_cpus(Some(v.clone()));
        cpu_set = true;
    }
    if let Some(v) = &a.cpuset_mems {
        cpu.set_mems(Some(v.clone()));
        cpu_set = true;
    }
    if cpu_set {
        res.set_cpu(Some(cpu));
    }
    if let Some(v) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(v);
        res.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = res.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        res.set_block_io(Some(b));
    }
    rt.update(&a.id, &res)?;
    Ok(0)
}

fn events(rt: &Runtime, id: &str, once: bool, interval: &str) -> Result<i32> {
    use berth_runtime::events::Event;
    let print_stats = |stats| -> Result<()> {
        let ev = Event {
            kind: "stats",
            id: id.to_string(),
            data: Some(stats),
        };
        println!("{}", serde_json::to_string(&ev)?);
        Ok(())
    };
    if once {
        print_stats(rt.stats(id)?)?;
        return Ok(0);
    }
    let every = units::parse_duration(interval)?;
    let (cgroup, _) = rt.cgroup_of(id)?;
    let mut ooms = cgroup.oom_kill_count().unwrap_or(0);
    loop {
        let (_, status) = rt.cgroup_of(id)?;
        if status == berth_runtime::Status::Stopped {
            return Ok(0);
        }
        let now = cgroup.oom_kill_count().unwrap_or(ooms);
        if now > ooms {
            let ev: Event<()> = Event {
                kind: "oom",
                id: id.to_string(),
                data: None,
            };
            println!("{}", serde_json::to_string(&ev)?);
            ooms = now;
        }
        match rt.stats(id) {
            Ok(s) => print_stats(s)?,
            Err(berth_runtime::Error::WrongState { .. }) => return Ok(0),
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(every);
    }
}
