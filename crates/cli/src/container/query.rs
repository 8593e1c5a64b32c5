//! Read-only views of containers: `ps`, `inspect`, `logs`.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use berth_monitor::logfile::{self, Entry, Follower};
use serde_json::{json, Value};

use super::record::{Container, Status};
use super::Paths;
use crate::store::Store;

fn ago(ns: i64) -> String {
    let secs = (logfile::now_ns() - ns).max(0) / 1_000_000_000;
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 86_400 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// docker's STATUS column.
pub fn status_text(c: &Container) -> String {
    match c.status() {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", ago(c.started_ns.unwrap_or(c.created_ns))),
        Status::RunningUnmonitored => format!(
            "Up {} (monitor lost)",
            ago(c.started_ns.unwrap_or(c.created_ns))
        ),
        Status::Exited(code) => {
            let when = c
                .finished_ns
                .map(|f| format!(" {} ago", ago(f)))
                .unwrap_or_default();
            match code {
                Some(code) => format!("Exited ({code}){when}"),
                None => "Exited (unknown)".into(),
            }
        }
    }
}

fn ns_rfc3339(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64);
    berth_runtime::time::rfc3339(t)
}

fn command_text(c: &Container) -> String {
    let s = c.settings.args.join(" ");
    if s.chars().count() > 20 {
        format!("\"{}…\"", s.chars().take(19).collect::<String>())
    } else {
        format!("\"{s}\"")
    }
}

/// One container as `ps --format json` and templates see it.
fn ps_fields(c: &Container, ports: &str) -> Value {
    json!({
        "ID": c.short_id(),
        "Id": c.id,
        "Image": c.image_name,
        "Command": command_text(c),
        "CreatedAt": ns_rfc3339(c.created_ns),
        "RunningFor": format!("{} ago", ago(c.created_ns)),
        "Status": status_text(c),
        "State": c.status().word(),
        "Names": c.name,
        "Labels": c.settings.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        "Ports": ports,
        "ExitCode": c.exit_code,
        "Pid": c.live_pid().unwrap_or(0),
    })
}

/// Whether `c` passes every `--filter KEY=VALUE`.
fn filtered(c: &Container, filters: &[String]) -> Result<bool> {
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid filter {f:?}: want KEY=VALUE"))?;
        let ok = match k {
            "id" => c.id.starts_with(v),
            "name" => c.name.contains(v),
            "status" => match v {
                "created" | "running" | "exited" => c.status().word() == v,
                "paused" | "restarting" | "removing" | "dead" => false,
                _ => bail!("invalid filter status={v:?}: want created, running or exited"),
            },
            "label" => match v.split_once('=') {
                Some((lk, lv)) => c.settings.labels.get(lk).map(String::as_str) == Some(lv),
                None => c.settings.labels.contains_key(v),
            },
            "ancestor" => {
                c.image_name == v
                    || c.image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
            }
            "exited" => matches!(c.status(), Status::Exited(Some(code)) if code.to_string() == v),
            _ => bail!(
                "invalid filter {k:?}: berth filters on id, name, status, label, ancestor, exited"
            ),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Fills a Go-template-like `{{.Field}}` / `{{.Nested.Field}}` format (docker's `--format`),
/// `\t` and `\n` escapes.
pub(crate) fn render(template: &str, fields: &Value) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after
            .find("}}")
            .ok_or_else(|| anyhow!("invalid --format: unclosed {{{{"))?;
        let key = after[..j].trim();
        if key == "json ." {
            out.push_str(&fields.to_string());
        } else {
            let name = key
                .strip_prefix('.')
                .ok_or_else(|| anyhow!("invalid --format field {key:?}: want {{{{.Name}}}}"))?;
            let found = name.split('.').try_fold(fields, |v, part| v.get(part));
            match found {
                Some(Value::String(s)) => out.push_str(s),
                Some(Value::Null) => {}
                Some(v) => out.push_str(&v.to_string()),
                None => bail!("invalid --format: no field {name:?}"),
            }
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out.replace("\\t", "\t").replace("\\n", "\n"))
}

/// `inspect`'s output: the JSON array, or with `--format` the template filled for each item,
/// one line each (docker's `inspect -f`).
pub fn inspect_output(items: &[Value], format: Option<&str>) -> Result<String> {
    match format {
        None => Ok(format!("{}\n", serde_json::to_string_pretty(items)?)),
        Some(t) => items
            .iter()
            .map(|v| render(t, v).map(|line| line + "\n"))
            .collect(),
    }
}

/// The PORTS column: a container's published ports in docker's form, by container id.
pub fn published_ports(
    conn: &rusqlite::Connection,
) -> Result<std::collections::HashMap<String, String>> {
    let mut st = conn.prepare(
        "SELECT container_id, host_ip, host_port, container_port, protocol FROM published_ports
         ORDER BY container_id, container_port, protocol",
    )?;
    let mut out: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    for row in rows {
        let (id, ip, host, ctr, proto) = row?;
        let e = out.entry(id).or_default();
        if !e.is_empty() {
            e.push_str(", ");
        }
        e.push_str(&format!("{ip}:{host}->{ctr}/{proto}"));
    }
    Ok(out)
}

/// `ps`.
pub fn ps(
    all_rows: Vec<Container>,
    ports: &std::collections::HashMap<String, String>,
    all: bool,
    quiet: bool,
    filters: &[String],
    format: Option<&str>,
) -> Result<String> {
    let port_of = |c: &Container| ports.get(&c.id).map_or("", String::as_str);
    let mut rows = Vec::new();
    for c in all_rows {
        if (all || c.status().is_running()) && filtered(&c, filters)? {
            rows.push(c);
        }
    }
    if quiet {
        return Ok(rows.iter().map(|c| format!("{}\n", c.short_id())).collect());
    }
    match format {
        Some("json") => {
            let v: Vec<Value> = rows.iter().map(|c| ps_fields(c, port_of(c))).collect();
            return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
        }
        Some(t) if !t.starts_with("table") => {
            return rows
                .iter()
                .map(|c| Ok(format!("{}\n", render(t, &ps_fields(c, port_of(c)))?)))
                .collect();
        }
        _ => {}
    }
    let mut table = vec![[
        "CONTAINER ID".to_string(),
        "IMAGE".into(),
        "COMMAND".into(),
        "CREATED".into(),
        "STATUS".into(),
        "PORTS".into(),
        "NAMES".into(),
    ]];
    for c in &rows {
        table.push([
            c.short_id().to_string(),
            c.image_name.clone(),
            command_text(c),
            format!("{} ago", ago(c.created_ns)),
            status_text(c),
            port_of(c).to_string(),
            c.name.clone(),
        ]);
    }
    Ok(tabulate(&table))
}

/// Columns padded to their widest cell plus three spaces (docker's tabwriter look).
pub fn tabulate<const N: usize>(rows: &[[String; N]]) -> String {
    let mut width = [0usize; N];
    for r in rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < N {
                line.push_str(&" ".repeat(width[i] - cell.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// docker-inspect-shaped JSON of a container.
pub fn inspect_value(paths: &Paths, c: &Container) -> Value {
    let st = c.status();
    let s = &c.settings;
    json!({
        "Id": c.id,
        "Created": ns_rfc3339(c.created_ns),
        "Path": s.args.first(),
        "Args": s.args.get(1..).unwrap_or(&[]),
        "State": {
            "Status": st.word(),
            "Running": st.is_running(),
            "Paused": false,
            "Restarting": false,
            "OOMKilled": c.oom_killed,
            "Dead": false,
            "Pid": c.live_pid().unwrap_or(0),
            "ExitCode": match st { Status::Exited(c) => c.unwrap_or(-1), _ => 0 },
            "MonitorAlive": c.monitor_alive(),
            "StartedAt": c.started_ns.map(ns_rfc3339),
            "FinishedAt": c.finished_ns.map(ns_rfc3339),
        },
        "Image": c.image_id,
        "ImageName": c.image_name,
        "Name": c.name,
        "Pod": s.pod.clone().unwrap_or_default(),
        "IsInfra": s.pod_infra,
        "RestartCount": c.restart_count,
        "LogPath": paths.container_dir(&c.id).join("ctr.log"),
        "NetworkSettings": super::network::inspect_value(paths, c),
        "Config": {
            "Hostname": s.hostname,
            "User": s.user,
            "Env": s.env,
            "Cmd": s.args.get(s.entrypoint.len()..).unwrap_or(&[]),
            "Entrypoint": s.entrypoint,
            "WorkingDir": s.workdir,
            "Labels": s.labels,
            "StopSignal": s.stop_signal,
            "StopTimeout": s.stop_timeout,
            "Tty": s.tty,
            "OpenStdin": s.interactive,
            "Image": c.image_name,
        },
        "HostConfig": {
            "AutoRemove": s.auto_remove,
            "Privileged": s.privileged,
            "ReadonlyRootfs": s.read_only,
            "NetworkMode": s.network,
            "Memory": s.memory.unwrap_or(0),
            "NanoCpus": s.cpus_milli.map_or(0, |m| m * 1_000_000),
            "PidsLimit": s.pids_limit,
            "CapAdd": null,
            "Capabilities": s.capabilities,
            "Init": s.init,
            "Runtime": s.runtime.as_ref().map_or("berth".into(), |p| p.display().to_string()),
            "Binds": s.binds.iter().map(|b| format!("{}:{}", b.source.display(), b.destination)).collect::<Vec<_>>(),
            "Tmpfs": s.tmpfs.iter().map(|(p, o)| (p.clone(), o.clone())).collect::<std::collections::BTreeMap<_, _>>(),
            "Sysctls": s.sysctls,
            "LogConfig": {"Type": "json-file", "Config": {"max-size": s.log_max_size.to_string(), "max-file": s.log_max_files.to_string()}},
        },
        "Mounts": s.binds.iter().map(|b| json!({"Type": "bind", "Source": b.source, "Destination": b.destination,
            "RW": !b.options.iter().any(|o| o == "ro")}))
            .chain(s.volumes.iter().map(|v| json!({"Type": "volume", "Name": v.name, "Source": v.source,
                "Destination": v.destination, "Driver": "local", "RW": !v.readonly})))
            .collect::<Vec<_>>(),
    })
}

/// `--since`/`--until`: RFC 3339, unix seconds, or a duration ago (`10m`, `1h30m`, `45s`).
pub fn parse_since(s: &str) -> Result<i64> {
    if let Some(ns) = logfile::parse_time_ns(s) {
        return Ok(ns);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e9) as i64);
    }
    let mut total = 0f64;
    let mut num = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() || ch == '.' {
            num.push(ch);
            continue;
        }
        let n: f64 = num.parse().map_err(|_| {
            anyhow!("invalid time {s:?}: want RFC 3339, unix seconds or a duration like 10m")
        })?;
        total += n * match ch {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            _ => bail!("invalid time {s:?}: unknown unit {ch:?}"),
        };
        num.clear();
    }
    if !num.is_empty() || total == 0.0 {
        bail!("invalid time {s:?}: want RFC 3339, unix seconds or a duration like 10m");
    }
    Ok(logfile::now_ns() - (total * 1e9) as i64)
}

fn print_entry(e: &Entry, timestamps: bool) {
    let text = if timestamps {
        format!("{} {}", e.time, e.log)
    } else {
        e.log.clone()
    };
    if e.stream == "stderr" {
        let _ = std::io::stderr().write_all(text.as_bytes());
    } else {
        let mut o = std::io::stdout();
        let _ = o.write_all(text.as_bytes());
        let _ = o.flush();
    }
}

/// `logs` options.
pub struct LogOpts {
    pub follow: bool,
    pub tail: Option<usize>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub timestamps: bool,
}

/// `logs`.
pub fn logs(store: &Store, paths: &Paths, c: &Container, o: &LogOpts) -> Result<()> {
    let path = paths.container_dir(&c.id).join("ctr.log");
    let mut follower = if o.follow {
        Some(Follower::at_end(&path)?)
    } else {
        None
    };
    let keep = |e: &Entry| {
        let t = e.time_ns();
        o.since.map_or(true, |s| t >= s) && o.until.map_or(true, |u| t <= u)
    };
    let mut entries: Vec<Entry> = logfile::read_all(&path, c.settings.log_max_files)?
        .into_iter()
        .filter(|e| keep(e))
        .collect();
    if let Some(n) = o.tail {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    let last_time = entries.last().map(|e| e.time.clone());
    for e in &entries {
        print_entry(e, o.timestamps);
    }
    let Some(f) = &mut follower else {
        return Ok(());
    };
    // Entries written between the follower's start and the full read would come twice: skip
    // those not newer than the last one printed.
    let mut skip_until = last_time;
    loop {
        let running = super::record::get(store.db.conn(), &c.id)?
            .is_some_and(|c| c.status().is_running() || c.monitor_alive());
        for e in f.poll()? {
            if let Some(t) = &skip_until {
                if e.time <= *t {
                    continue;
                }
                skip_until = None;
            }
            if keep(&e) {
                print_entry(&e, o.timestamps);
            }
        }
        if !running {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
