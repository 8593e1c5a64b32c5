//! `top`: a container's processes as the host's `ps` shows them (docker's way: run `ps` with the
//! user's options and keep the header and the rows whose PID is in the container's cgroup).

use std::collections::HashSet;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use berth_monitor::config::RuntimeChoice;

use super::lifecycle::runtime_choice;
use super::record::Container;
use super::Paths;

/// The host pids of every process in a running container, from its runtime.
pub fn container_pids(paths: &Paths, c: &Container) -> Result<Vec<i32>> {
    if !c.status().is_running() {
        bail!("container {} is not running", c.name);
    }
    match runtime_choice(paths, &c.settings) {
        RuntimeChoice::Builtin { root } => berth_runtime::Runtime::new(root)
            .and_then(|rt| rt.pids(&c.id))
            .with_context(|| format!("listing the processes of container {}", c.name)),
        RuntimeChoice::Binary { path, root } => {
            let out = Command::new(&path)
                .arg("--root")
                .arg(&root)
                .args(["ps", "--format", "json", &c.id])
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {}", path.display()))?;
            if !out.status.success() {
                bail!(
                    "{} ps {} failed ({}): {}",
                    path.display(),
                    c.id,
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            serde_json::from_slice(&out.stdout).with_context(|| {
                format!(
                    "{} ps --format json: want a JSON array of pids, got {:?}",
                    path.display(),
                    String::from_utf8_lossy(&out.stdout)
                )
            })
        }
    }
}

/// Keeps the header of `ps` output and the rows whose PID column is in `pids`.
pub fn filter_ps(output: &str, pids: &HashSet<i32>) -> Result<String> {
    let mut lines = output.lines();
    let header = lines.next().ok_or_else(|| anyhow!("ps printed nothing"))?;
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| {
            anyhow!("couldn't find the PID column in the ps output (give ps options that show it, such as -ef or -o pid,comm)")
        })?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// `top CONTAINER [ps OPTIONS]` (default `-ef`).
pub fn top(paths: &Paths, c: &Container, ps_args: &[String]) -> Result<String> {
    let pids: HashSet<i32> = container_pids(paths, c)?.into_iter().collect();
    let args: Vec<&str> = if ps_args.is_empty() {
        vec!["-ef"]
    } else {
        // docker passes the options as one string split on spaces: accept both forms.
        ps_args.iter().flat_map(|a| a.split_whitespace()).collect()
    };
    let out = Command::new("ps")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .context("running ps (is procps installed?)")?;
    if !out.status.success() {
        bail!(
            "ps {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    filter_ps(&String::from_utf8_lossy(&out.stdout), &pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_header_and_container_rows() {
        let ps = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                  root           1       0  0 10:00 ?        00:00:01 /sbin/init\n\
                  root         420       1  0 10:01 ?        00:00:00 sleep 1000\n\
                  root        4200       1  0 10:01 ?        00:00:00 sh -c 420\n";
        let pids = HashSet::from([420]);
        let out = filter_ps(ps, &pids).unwrap();
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.lines().nth(1).unwrap().ends_with("sleep 1000"));
    }

    #[test]
    fn no_pid_column_is_an_error() {
        let err = filter_ps("USER COMMAND\nroot init\n", &HashSet::new()).unwrap_err();
        assert!(err.to_string().contains("PID column"), "{err}");
    }
}
