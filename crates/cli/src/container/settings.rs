//! What `berth create`/`run` were asked, as flags (clap) and as the parsed, checked `Settings` kept
//! in the database. Every value is checked here, before anything is made: a bad flag value is a
//! clear error and nothing is created.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The flags of `create` and `run` (docker's names).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CreateArgs {
    /// Name of the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (NAME=VALUE, or NAME to take it from here).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Override the image's entrypoint ("" clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Mount a tmpfs (PATH[:OPTIONS]).
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Bind mount (HOST:CONTAINER[:ro|rw|z|Z|shared|slave|private|rshared|rslave|rprivate]).
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Memory limit (bytes, or with b, k, m, g).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Number of CPUs (fractional).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Process count limit (-1: unlimited).
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Ulimit (NAME=SOFT[:HARD]).
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Namespaced kernel parameter (NAME=VALUE).
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Host device (HOST[:CONTAINER[:rwm]]).
    #[arg(long)]
    pub device: Vec<String>,
    /// Add capabilities.
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop capabilities.
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Every capability, every device, no seccomp, no masked paths.
    #[arg(long)]
    pub privileged: bool,
    /// seccomp=PROFILE.json|unconfined, no-new-privileges[:true|false].
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Run berth's small init as PID 1 (reaps zombies, forwards signals).
    #[arg(long)]
    pub init: bool,
    /// Signal that stops the container.
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Seconds to wait after the stop signal before killing.
    #[arg(long)]
    pub stop_timeout: Option<u32>,
    /// Metadata (KEY=VALUE).
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// OCI runtime binary (runc, crun, a path) instead of berth's built-in runtime.
    #[arg(long)]
    pub runtime: Option<String>,
    /// Network: none or host (bridge networks are not available yet).
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// Publish a port ([IP:]HOST:CONTAINER[/PROTO]).
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Log options: max-size=SIZE, max-file=N.
    #[arg(long)]
    pub log_opt: Vec<String>,
    /// When to pull the image: missing (default), always, never.
    #[arg(long, default_value = "missing")]
    pub pull: String,
}

/// A bind mount.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub options: Vec<String>,
}

/// A host device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Device {
    pub host: PathBuf,
    pub container: String,
    pub permissions: String,
}

/// One rlimit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ulimit {
    /// `RLIMIT_NOFILE` etc.
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

/// The seccomp filter a container gets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Seccomp {
    /// docker's default profile.
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// A profile file (docker or OCI format).
    Profile(PathBuf),
}

/// Checked settings of a container (kept as JSON in its row).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    /// Command (after the image's and flags' entrypoint and cmd are combined).
    pub args: Vec<String>,
    /// The entrypoint part of `args` (for inspect).
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
    pub hostname: String,
    pub read_only: bool,
    pub tmpfs: Vec<(String, String)>,
    pub binds: Vec<BindMount>,
    pub memory: Option<i64>,
    pub cpus_milli: Option<u64>,
    pub pids_limit: Option<i64>,
    pub ulimits: Vec<Ulimit>,
    pub sysctls: BTreeMap<String, String>,
    pub devices: Vec<Device>,
    pub capabilities: Vec<String>,
    pub privileged: bool,
    pub seccomp: Seccomp,
    pub no_new_privileges: bool,
    pub init: bool,
    pub stop_signal: String,
    pub stop_timeout: u32,
    pub labels: BTreeMap<String, String>,
    /// None: berth's built-in runtime; Some(path): a runtime binary.
    pub runtime: Option<PathBuf>,
    pub network: String,
    pub interactive: bool,
    pub tty: bool,
    pub auto_remove: bool,
    pub log_max_size: u64,
    pub log_max_files: u32,
}

/// Parses a size: bytes, or a number with b, k, m, g (and kb, mb, gb; case-insensitive).
pub fn parse_size(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.trim_end_matches('b') {
        n if n.ends_with('k') => (&n[..n.len() - 1], 1i64 << 10),
        n if n.ends_with('m') => (&n[..n.len() - 1], 1 << 20),
        n if n.ends_with('g') => (&n[..n.len() - 1], 1 << 30),
        n if n.ends_with('t') => (&n[..n.len() - 1], 1 << 40),
        n => (n, 1),
    };
    let v: f64 = num.parse().map_err(|_| {
        anyhow!("invalid size {s:?}: want a number with an optional unit b, k, m or g")
    })?;
    if !v.is_finite() || v < 0.0 {
        bail!("invalid size {s:?}: must not be negative");
    }
    Ok((v * mult as f64) as i64)
}

/// The signal number of a name or number.
pub fn parse_signal(s: &str) -> Result<i32> {
    berth_runtime::signal::parse(s).map_err(|e| anyhow!("invalid signal {s:?}: {e}"))
}

fn rlimit_name(n: &str) -> Result<&'static str> {
    Ok(match n.to_ascii_lowercase().as_str() {
        "core" => "RLIMIT_CORE",
        "cpu" => "RLIMIT_CPU",
        "data" => "RLIMIT_DATA",
        "fsize" => "RLIMIT_FSIZE",
        "locks" => "RLIMIT_LOCKS",
        "memlock" => "RLIMIT_MEMLOCK",
        "msgqueue" => "RLIMIT_MSGQUEUE",
        "nice" => "RLIMIT_NICE",
        "nofile" => "RLIMIT_NOFILE",
        "nproc" => "RLIMIT_NPROC",
        "rss" => "RLIMIT_RSS",
        "rtprio" => "RLIMIT_RTPRIO",
        "rttime" => "RLIMIT_RTTIME",
        "sigpending" => "RLIMIT_SIGPENDING",
        "stack" => "RLIMIT_STACK",
        "as" => "RLIMIT_AS",
        _ => bail!("invalid ulimit {n:?}: unknown resource"),
    })
}

/// `NAME=SOFT[:HARD]` (-1 or unlimited for no limit).
pub fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid ulimit {s:?}: want NAME=SOFT[:HARD]"))?;
    let num = |v: &str| -> Result<u64> {
        match v {
            "-1" | "unlimited" => Ok(u64::MAX),
            v => v
                .parse()
                .map_err(|_| anyhow!("invalid ulimit {s:?}: {v:?} is not a number")),
        }
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(vals)?, num(vals)?),
    };
    if soft > hard {
        bail!("invalid ulimit {s:?}: the soft limit is above the hard limit");
    }
    Ok(Ulimit {
        kind: rlimit_name(name)?.into(),
        soft,
        hard,
    })
}

fn check_container_path(p: &str, what: &str) -> Result<()> {
    if !p.starts_with('/') {
        bail!("invalid {what} {p:?}: the container path must be absolute");
    }
    Ok(())
}

/// `-v HOST:CONTAINER[:OPTS]` (bind mounts; named volumes come with volumes).
pub fn parse_volume(s: &str) -> Result<BindMount> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => bail!("invalid volume {s:?}: want HOST-PATH:CONTAINER-PATH[:OPTIONS]"),
    };
    if !src.starts_with('/') {
        bail!(
            "invalid volume {s:?}: named volumes are not supported yet; give an absolute host path"
        );
    }
    check_container_path(dst, "volume")?;
    let source = std::fs::canonicalize(src)
        .with_context(|| format!("invalid volume {s:?}: host path {src}"))?;
    let mut options = vec!["rbind".to_string()];
    let mut prop = None;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" | "rw" => options.push(o.into()),
            "z" | "Z" => {} // SELinux relabelling: no SELinux here.
            "shared" | "slave" | "private" | "rshared" | "rslave" | "rprivate" => {
                prop = Some(o.to_string())
            }
            "nocopy" => {}
            _ => bail!("invalid volume {s:?}: unknown option {o:?}"),
        }
    }
    options.push(prop.unwrap_or_else(|| "rprivate".into()));
    Ok(BindMount {
        source,
        destination: dst.into(),
        options,
    })
}

/// `--tmpfs PATH[:OPTS]`.
pub fn parse_tmpfs(s: &str) -> Result<(String, String)> {
    let (p, o) = s.split_once(':').unwrap_or((s, ""));
    check_container_path(p, "tmpfs")?;
    for opt in o.split(',').filter(|o| !o.is_empty()) {
        let key = opt.split('=').next().unwrap_or("");
        if ![
            "size",
            "mode",
            "uid",
            "gid",
            "nr_inodes",
            "nr_blocks",
            "ro",
            "rw",
            "exec",
            "noexec",
            "suid",
            "nosuid",
            "dev",
            "nodev",
            "atime",
            "noatime",
            "relatime",
            "strictatime",
        ]
        .contains(&key)
        {
            bail!("invalid tmpfs {s:?}: unknown option {opt:?}");
        }
    }
    Ok((p.into(), o.into()))
}

/// `--device HOST[:CONTAINER[:PERMS]]`.
pub fn parse_device(s: &str) -> Result<Device> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, ctr, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if p.chars().all(|c| "rwm".contains(c)) && !p.is_empty() => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => bail!("invalid device {s:?}: want HOST[:CONTAINER[:PERMISSIONS]]"),
    };
    if perms.is_empty() || !perms.chars().all(|c| "rwm".contains(c)) {
        bail!("invalid device {s:?}: permissions must be made of r, w and m");
    }
    check_container_path(ctr, "device")?;
    Ok(Device {
        host: host.into(),
        container: ctr.into(),
        permissions: perms.into(),
    })
}

/// `-p [IP:]HOST:CONTAINER[/PROTO]` or `-p CONTAINER[/PROTO]`: checked, for a clear error.
pub fn check_publish(s: &str) -> Result<()> {
    let (spec, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        bail!("invalid port {s:?}: unknown protocol {proto:?}");
    }
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let port = |p: &str| -> Result<()> {
        let range = p.split_once('-').map_or((p, p), |(a, b)| (a, b));
        for x in [range.0, range.1] {
            match x.parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => {}
                _ => bail!("invalid port {s:?}: {x:?} is not a port number"),
            }
        }
        Ok(())
    };
    match parts.as_slice() {
        [c] => port(c)?,
        [c, h] => {
            port(c)?;
            if !h.is_empty() {
                port(h)?;
            }
        }
        [c, h, ip] => {
            port(c)?;
            if !h.is_empty() {
                port(h)?;
            }
            ip.trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .map_err(|_| anyhow!("invalid port {s:?}: {ip:?} is not an IP address"))?;
        }
        _ => bail!("invalid port {s:?}"),
    }
    Ok(())
}

/// `KEY=VALUE` pairs.
pub fn parse_pairs(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("invalid {what} {s:?}: want KEY=VALUE"),
        })
        .collect()
}

/// `--env`, `--env-file` (in that order of precedence: later wins), as NAME=VALUE.
pub fn collect_env(args: &CreateArgs) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in &args.env_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading env file {}", f.display()))?;
        for l in text.lines() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            out.push(env_item(l)?);
        }
    }
    for e in &args.env {
        out.push(env_item(e)?);
    }
    Ok(out.into_iter().flatten().collect())
}

fn env_item(s: &str) -> Result<Option<String>> {
    match s.split_once('=') {
        Some(("", _)) => bail!("invalid environment variable {s:?}: empty name"),
        Some(_) => Ok(Some(s.to_string())),
        None => Ok(std::env::var(s).ok().map(|v| format!("{s}={v}"))),
    }
}

/// Sets `NAME=...` in `env` (replacing an earlier value of the same name).
pub fn merge_env(env: &mut Vec<String>, item: &str) {
    let name = item.split('=').next().unwrap_or(item);
    env.retain(|e| e.split('=').next() != Some(name));
    env.push(item.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("10MB").unwrap(), 10 << 20);
        assert!(parse_size("12x").unwrap_err().to_string().contains("12x"));
        assert!(parse_size("-1m").is_err());
    }

    #[test]
    fn ulimits_devices_volumes_ports() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!(
            (u.kind.as_str(), u.soft, u.hard),
            ("RLIMIT_NOFILE", 1024, 2048)
        );
        assert!(parse_ulimit("nofile=9:1").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
        let d = parse_device("/dev/null:/dev/mynull:rw").unwrap();
        assert_eq!(d.container, "/dev/mynull");
        assert_eq!(parse_device("/dev/null:r").unwrap().permissions, "r");
        assert!(parse_device("/dev/null:/x:q").is_err());
        let v = parse_volume("/tmp:/data:ro,rshared").unwrap();
        assert_eq!(v.options, ["rbind", "ro", "rshared"]);
        assert!(parse_volume("/tmp").is_err());
        assert!(parse_volume("/tmp:rel").is_err());
        assert!(parse_volume("/tmp:/x:bogus").is_err());
        for ok in ["80", "8080:80", "127.0.0.1:8080:80/udp", "127.0.0.1::80"] {
            check_publish(ok).unwrap();
        }
        for bad in ["nonsense", "99999:80", "1.2.3:80:80", "80/xyz", "a:b:c:d"] {
            assert!(check_publish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_merging() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        merge_env(&mut env, "A=2");
        assert_eq!(env, ["PATH=/bin", "A=2"]);
        assert!(env_item("=x").is_err());
        assert_eq!(parse_pairs(&["a=b=c".into()], "label").unwrap()["a"], "b=c");
        assert!(parse_pairs(&["novalue".into()], "label").is_err());
    }
}
