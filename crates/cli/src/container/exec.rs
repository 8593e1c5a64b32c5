//! `exec`: another process in a running container. With berth's runtime it is started in-process
//! (this CLI is its parent: stdio and terminal are ours, the exit code comes straight back); with a
//! runtime binary, through its `exec --process`.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::record::Container;
use super::settings::merge_env;
use super::{spec, Paths};

/// `exec`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Run in the background.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Environment variables (NAME=VALUE).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Extended privileges (every capability).
    #[arg(long)]
    pub privileged: bool,
}

/// Runs the exec; returns the process's exit code (0 for `-d`).
pub fn exec(paths: &Paths, c: &Container, cmd: &[String], a: &ExecArgs) -> Result<i32> {
    if cmd.is_empty() {
        bail!("exec needs a command");
    }
    let Some(pid) = c.live_pid() else {
        bail!(
            "container {} is not running: cannot exec in a stopped container",
            c.name
        );
    };
    let rootfs = Path::new("/proc").join(pid.to_string()).join("root");
    let mut process = serde_json::to_value(saved_process(paths, c)?)?;
    process["args"] = serde_json::json!(cmd);
    process["terminal"] = serde_json::json!(a.tty);
    let mut env: Vec<String> = serde_json::from_value(process["env"].clone()).unwrap_or_default();
    for e in &a.env {
        if !e.contains('=') || e.starts_with('=') {
            bail!("invalid environment variable {e:?}: want NAME=VALUE");
        }
        merge_env(&mut env, e);
    }
    process["env"] = serde_json::json!(env);
    if let Some(w) = &a.workdir {
        if !w.starts_with('/') {
            bail!("the working directory {w:?} must be absolute");
        }
        process["cwd"] = serde_json::json!(w);
    }
    if let Some(u) = &a.user {
        let r = spec::resolve_user(&rootfs, u)?;
        process["user"] =
            serde_json::json!({"uid": r.uid, "gid": r.gid, "additionalGids": r.additional_gids});
    }
    if a.privileged {
        let all = super::defaults::capabilities(&[], &[], true)?;
        process["capabilities"] =
            serde_json::json!({"bounding": all, "effective": all, "permitted": all});
    }
    let process: oci_spec::runtime::Process =
        serde_json::from_value(process).context("building the exec process")?;
    let detach = a.detach;
    match &c.settings.runtime {
        None => {
            let rt = berth_runtime::Runtime::new(paths.builtin_runtime_root())?;
            let opts = berth_runtime::ExecOptions {
                process,
                console_socket: None,
                pid_file: None,
                detach,
                preserve_fds: 0,
            };
            // A detached process gets /dev/null as stdio; ours come back for the error message.
            let saved = if detach {
                Some(redirect_stdio_to_null()?)
            } else {
                None
            };
            let r = rt.exec(&c.id, &opts);
            if let Some(s) = saved {
                restore_stdio(s);
            }
            r.map_err(|e| super::start_failure(e.to_string()))
        }
        Some(bin) => {
            let f = tempfile::NamedTempFile::new().context("process file")?;
            serde_json::to_writer(&f, &process)?;
            let mut cmd = std::process::Command::new(bin);
            cmd.arg("--root")
                .arg(paths.binary_runtime_root(bin))
                .arg("exec")
                .arg("--process")
                .arg(f.path());
            if detach {
                cmd.arg("--detach")
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null());
            }
            if a.tty {
                cmd.arg("--tty");
            }
            cmd.arg(&c.id);
            let st = cmd
                .status()
                .with_context(|| format!("running {}", bin.display()))?;
            Ok(st.code().unwrap_or(125))
        }
    }
}

/// The container's process as written in its config.json (the base for exec).
fn saved_process(paths: &Paths, c: &Container) -> Result<serde_json::Value> {
    let cfg: serde_json::Value = serde_json::from_slice(
        &std::fs::read(paths.container_dir(&c.id).join("config.json"))
            .context("reading the container's config.json")?,
    )?;
    cfg.get("process")
        .cloned()
        .ok_or_else(|| anyhow!("the container's config.json has no process"))
}

/// Points our stdio at /dev/null; returns copies of the old ones.
fn redirect_stdio_to_null() -> Result<Vec<std::os::fd::OwnedFd>> {
    use std::os::fd::{AsFd, AsRawFd};
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let mut saved = Vec::new();
    for fd in 0..3 {
        // SAFETY: fds 0..2 are open for the process's lifetime; borrowed only to duplicate them.
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        saved.push(b.try_clone_to_owned().context("saving stdio")?);
        // SAFETY: dup2 of an fd we own onto our own stdio.
        unsafe { libc::dup2(null.as_fd().as_raw_fd(), fd) };
    }
    Ok(saved)
}

fn restore_stdio(saved: Vec<std::os::fd::OwnedFd>) {
    use std::os::fd::AsRawFd;
    for (i, fd) in saved.iter().enumerate() {
        // SAFETY: dup2 of an fd we own back onto our stdio.
        unsafe { libc::dup2(fd.as_raw_fd(), i as i32) };
    }
}
