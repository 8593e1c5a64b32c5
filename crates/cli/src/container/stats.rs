//! `stats`: CPU, memory, block I/O and process counts of running containers, from their cgroups
//! (the built-in runtime's `stats`, or `<runtime> events --stats` for a runtime binary).
//!
//! CPU % is the cgroup's CPU time over wall time between two samples (100% = one CPU busy), as
//! docker computes it from its two samples; memory usage leaves out the inactive page cache, as
//! docker's client does, and an unlimited container's limit shows as the host's memory.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use berth_monitor::config::RuntimeChoice;
use serde_json::json;

use super::lifecycle::runtime_choice;
use super::record::{self, Container};
use super::Paths;
use crate::store::Store;

/// Time between the two samples of a `--no-stream` run (and of the first streamed frame).
const FIRST_INTERVAL: Duration = Duration::from_millis(500);
/// Time between streamed frames.
const INTERVAL: Duration = Duration::from_secs(1);

/// `stats`'s options.
pub struct StatsOpts {
    pub no_stream: bool,
    /// `json` (one object per line and container) or `table`.
    pub format: Option<String>,
}

/// One reading of a container's cgroup.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    cpu_ns: u64,
    mem_usage: u64,
    mem_limit: u64,
    blk_read: u64,
    blk_write: u64,
    pids: u64,
}

/// A container's statistics from its runtime.
pub fn cgroup_stats(paths: &Paths, c: &Container) -> Result<berth_cgroups::Stats> {
    match runtime_choice(paths, &c.settings) {
        RuntimeChoice::Builtin { root } => berth_runtime::Runtime::new(root)
            .and_then(|rt| rt.stats(&c.id))
            .with_context(|| format!("reading the statistics of container {}", c.name)),
        RuntimeChoice::Binary { path, root } => {
            let out = Command::new(&path)
                .arg("--root")
                .arg(&root)
                .args(["events", "--stats", &c.id])
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {}", path.display()))?;
            if !out.status.success() {
                bail!(
                    "the runtime {} cannot report statistics of container {} (`events --stats` failed, {}): {}",
                    path.display(),
                    c.name,
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let v: serde_json::Value = serde_json::from_str(line).with_context(|| {
                format!(
                    "the runtime {} printed no JSON stats event: {line:?}",
                    path.display()
                )
            })?;
            let data = v.get("data").cloned().ok_or_else(|| {
                anyhow!("the runtime {}'s stats event has no data", path.display())
            })?;
            serde_json::from_value(data)
                .with_context(|| format!("reading the stats event of {}", path.display()))
        }
    }
}

/// The host's memory, for containers without a limit.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn sample(paths: &Paths, c: &Container, host_mem: u64) -> Result<Sample> {
    let s = cgroup_stats(paths, c)?;
    let at = Instant::now();
    let m = &s.memory;
    // docker's client: usage minus the inactive file cache (v1 total_inactive_file, v2 inactive_file).
    let inactive = m
        .raw
        .get("total_inactive_file")
        .or_else(|| m.raw.get("inactive_file"))
        .copied()
        .unwrap_or(0);
    let mem_usage = m.usage.usage.saturating_sub(inactive);
    let limit = m.usage.limit;
    let mem_limit = if limit == 0 || (host_mem > 0 && limit > host_mem) {
        host_mem
    } else {
        limit
    };
    let (mut blk_read, mut blk_write) = (0, 0);
    for e in &s.blkio.io_service_bytes_recursive {
        if e.op.eq_ignore_ascii_case("read") {
            blk_read += e.value;
        } else if e.op.eq_ignore_ascii_case("write") {
            blk_write += e.value;
        }
    }
    Ok(Sample {
        at,
        cpu_ns: s.cpu.usage.total,
        mem_usage,
        mem_limit,
        blk_read,
        blk_write,
        pids: s.pids.current,
    })
}

/// `%.4g` of a float (4 significant digits, no trailing zeros), as docker's units package prints.
fn sig4(v: f64) -> String {
    let decimals = match v {
        v if v >= 1000.0 => 0,
        v if v >= 100.0 => 1,
        v if v >= 10.0 => 2,
        _ => 3,
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Binary units (`64MiB`), docker's `BytesSize`.
pub fn bytes_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{}{}", sig4(v), UNITS[u])
}

/// Decimal units (`12.3kB`), docker's `HumanSize`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    format!("{}{}", sig4(v), UNITS[u])
}

/// One row of output.
struct Row {
    id: String,
    name: String,
    /// None: not running (shown as `--`).
    now: Option<Sample>,
    cpu_percent: f64,
}

fn cpu_percent(prev: Option<&Sample>, now: &Sample) -> f64 {
    let Some(p) = prev else { return 0.0 };
    let wall = now.at.saturating_duration_since(p.at).as_nanos() as f64;
    if wall <= 0.0 || now.cpu_ns < p.cpu_ns {
        return 0.0;
    }
    (now.cpu_ns - p.cpu_ns) as f64 / wall * 100.0
}

fn mem_percent(s: &Sample) -> f64 {
    if s.mem_limit == 0 {
        0.0
    } else {
        s.mem_usage as f64 / s.mem_limit as f64 * 100.0
    }
}

fn render(rows: &[Row], json_lines: bool) -> String {
    let mut out = String::new();
    if json_lines {
        for r in rows {
            let v = match &r.now {
                Some(s) => json!({
                    "ID": &r.id[..12.min(r.id.len())],
                    "Container": r.id,
                    "Name": r.name,
                    "CPUPerc": format!("{:.2}%", r.cpu_percent),
                    "MemUsage": format!("{} / {}", bytes_size(s.mem_usage), bytes_size(s.mem_limit)),
                    "MemPerc": format!("{:.2}%", mem_percent(s)),
                    "BlockIO": format!("{} / {}", human_size(s.blk_read), human_size(s.blk_write)),
                    "PIDs": s.pids.to_string(),
                    "CPUPercent": r.cpu_percent,
                    "MemoryUsageBytes": s.mem_usage,
                    "MemoryLimitBytes": s.mem_limit,
                    "BlockReadBytes": s.blk_read,
                    "BlockWriteBytes": s.blk_write,
                    "PidsCurrent": s.pids,
                }),
                None => json!({
                    "ID": &r.id[..12.min(r.id.len())],
                    "Container": r.id,
                    "Name": r.name,
                    "CPUPerc": "--",
                    "MemUsage": "-- / --",
                    "MemPerc": "--",
                    "BlockIO": "-- / --",
                    "PIDs": "--",
                }),
            };
            out.push_str(&v.to_string());
            out.push('\n');
        }
        return out;
    }
    let line = |cols: [&str; 7]| {
        format!(
            "{:<15}{:<22}{:<10}{:<22}{:<9}{:<20}{}\n",
            cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6]
        )
    };
    out.push_str(&line([
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "BLOCK I/O",
        "PIDS",
    ]));
    for r in rows {
        let id = &r.id[..12.min(r.id.len())];
        let (cpu, mem, memp, blk, pids) = match &r.now {
            Some(s) => (
                format!("{:.2}%", r.cpu_percent),
                format!("{} / {}", bytes_size(s.mem_usage), bytes_size(s.mem_limit)),
                format!("{:.2}%", mem_percent(s)),
                format!("{} / {}", human_size(s.blk_read), human_size(s.blk_write)),
                s.pids.to_string(),
            ),
            None => (
                "--".into(),
                "-- / --".into(),
                "--".into(),
                "-- / --".into(),
                "--".into(),
            ),
        };
        out.push_str(&line([id, &r.name, &cpu, &mem, &memp, &blk, &pids]));
    }
    out
}

/// The containers a frame shows: the named ones (re-read, so a stopped one shows `--`), or every
/// running one.
fn targets(store: &Store, names: &[String], ids: &[String]) -> Result<Vec<Container>> {
    if names.is_empty() {
        return Ok(record::all(store.db.conn())?
            .into_iter()
            .filter(|c| c.status().is_running())
            .collect());
    }
    let mut out = Vec::new();
    for id in ids {
        if let Some(c) = record::get(store.db.conn(), id)? {
            out.push(c);
        }
    }
    Ok(out)
}

/// A sample of every running container; the first failure of one that is still running after
/// it (a runtime that cannot report statistics) is the error.
fn take(
    paths: &Paths,
    cs: &[Container],
    host_mem: u64,
) -> (HashMap<String, Sample>, Option<anyhow::Error>) {
    let mut out = HashMap::new();
    let mut err = None;
    for c in cs.iter().filter(|c| c.status().is_running()) {
        match sample(paths, c, host_mem) {
            Ok(s) => {
                out.insert(c.id.clone(), s);
            }
            // One that exited meanwhile simply has no reading.
            Err(e) if err.is_none() && c.status().is_running() => err = Some(e),
            Err(_) => {}
        }
    }
    (out, err)
}

/// `stats [--no-stream] [--format json] [CONTAINERS...]`.
pub fn stats(store: &Store, paths: &Paths, names: &[String], o: &StatsOpts) -> Result<()> {
    let json_lines = match o.format.as_deref() {
        None | Some("table") => false,
        Some("json") => true,
        Some(f) => bail!("unsupported --format {f:?} (want json or table)"),
    };
    // Unknown names are an error up front; a named container that is not running shows `--`.
    let ids: Vec<String> = names
        .iter()
        .map(|n| record::resolve(store.db.conn(), n).map(|c| c.id))
        .collect::<Result<_>>()?;
    let host_mem = host_memory();
    let tty = std::io::stdout().is_terminal();
    let mut cs = targets(store, names, &ids)?;
    let (mut prev, err) = take(paths, &cs, host_mem);
    if let Some(e) = err {
        return Err(e);
    }
    std::thread::sleep(FIRST_INTERVAL);
    loop {
        let frame_start = Instant::now();
        cs = targets(store, names, &ids)?;
        let (now, _) = take(paths, &cs, host_mem);
        let rows: Vec<Row> = cs
            .iter()
            .map(|c| {
                let s = now.get(&c.id).copied();
                Row {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    cpu_percent: s.map_or(0.0, |s| cpu_percent(prev.get(&c.id), &s)),
                    now: s,
                }
            })
            .collect();
        let mut text = render(&rows, json_lines);
        if tty && !o.no_stream && !json_lines {
            text.insert_str(0, "\x1b[2J\x1b[H");
        }
        let mut out = std::io::stdout().lock();
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(()); // the reader went away (a closed pipe): done
        }
        drop(out);
        if o.no_stream {
            return Ok(());
        }
        prev = now;
        std::thread::sleep(INTERVAL.saturating_sub(frame_start.elapsed()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(bytes_size(64 << 20), "64MiB");
        assert_eq!(bytes_size(1_261_568), "1.203MiB");
        assert_eq!(bytes_size(512), "512B");
        assert_eq!(human_size(12_345), "12.35kB");
        assert_eq!(human_size(0), "0B");
    }

    #[test]
    fn cpu_is_time_over_wall_time() {
        let at = Instant::now();
        let a = Sample {
            at,
            cpu_ns: 1_000,
            mem_usage: 0,
            mem_limit: 0,
            blk_read: 0,
            blk_write: 0,
            pids: 1,
        };
        let b = Sample {
            at: at + Duration::from_millis(500),
            cpu_ns: 1_000 + 250_000_000,
            ..a
        };
        assert!((cpu_percent(Some(&a), &b) - 50.0).abs() < 1e-9);
        assert_eq!(cpu_percent(None, &b), 0.0);
    }
}
