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
    /// Bind mount (HOST:CONTAINER[:ro|rw|z|Z|shared|slave|private|rshared|rslave|rprivate]), named
    /// volume (NAME:CONTAINER[:ro|rw|nocopy]) or anonymous volume (CONTAINER).
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Mount (type=bind|volume|tmpfs,source=...,target=...[,readonly][,...]: docker's keys).
    #[arg(long)]
    pub mount: Vec<String>,
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
    /// Network: bridge (the default), NAME (a user network), none, host, container:ID.
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// Publish a port ([IP:][HOST:]CONTAINER[/PROTO]; ranges A-B).
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes, each to a free host port.
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// DNS server for the container's resolv.conf.
    #[arg(long)]
    pub dns: Vec<String>,
    /// An /etc/hosts entry (NAME:IP; IP may be host-gateway).
    #[arg(long)]
    pub add_host: Vec<String>,
    /// The container's IPv4 address on its network.
    #[arg(long)]
    pub ip: Option<String>,
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
    /// Join a pod (name or id): share its network, IPC and UTS namespaces (see `pod create`).
    #[arg(long)]
    pub pod: Option<String>,
    /// Set by `pod create` only (no flag): the container is the infra container of this pod (id).
    #[arg(skip)]
    pub infra_of: Option<String>,
}

/// A bind mount.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub options: Vec<String>,
}

/// A volume (named or anonymous) mounted into the container; its data lives at `source`
/// (`<root>/volumes/<name>/_data`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeMount {
    /// The volume's name (an anonymous one gets 64 random hex digits at create).
    pub name: String,
    pub destination: String,
    pub readonly: bool,
    pub anonymous: bool,
    /// Do not copy the image's files into the volume when it is empty (`nocopy`).
    pub nocopy: bool,
    /// The volume's data directory on the host (set by create).
    pub source: PathBuf,
    /// Labels of a volume this mount creates (`--mount volume-label=K=V`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Driver options of a volume this mount creates (`--mount volume-opt=K=V`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// One `-v` or `--mount` value, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountArg {
    Bind(BindMount),
    Volume(VolumeMount),
    /// A tmpfs: path and mount options.
    Tmpfs(String, String),
}

impl MountArg {
    /// Where it is mounted in the container.
    pub fn destination(&self) -> &str {
        match self {
            MountArg::Bind(b) => &b.destination,
            MountArg::Volume(v) => &v.destination,
            MountArg::Tmpfs(p, _) => p,
        }
    }
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
    /// Named and anonymous volumes (the image's `Volumes` included).
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
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
    /// The rest of the network flags (ports, DNS, hosts, address).
    #[serde(default)]
    pub net: super::network::NetSettings,
    pub interactive: bool,
    pub tty: bool,
    pub auto_remove: bool,
    pub log_max_size: u64,
    pub log_max_files: u32,
    /// The pod the container belongs to (its id; see `crate::pod`).
    #[serde(default)]
    pub pod: Option<String>,
    /// Whether it is its pod's infra container (`berth-init --pause`, holding the namespaces).
    #[serde(default)]
    pub pod_infra: bool,
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

/// A container path as docker cleans it: absolute, `.`, `..` and repeated `/` resolved
/// lexically, never `/` itself.
pub fn clean_container_path(p: &str, what: &str) -> Result<String> {
    check_container_path(p, what)?;
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        bail!("invalid {what} {p:?}: the container path cannot be /");
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Whether a volume name is valid (docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn check_volume_name(n: &str) -> Result<()> {
    let ok = n.len() >= 2
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        bail!(
            "invalid volume name {n:?}: want [a-zA-Z0-9][a-zA-Z0-9_.-]+ (at least 2 characters); a host path must be absolute"
        );
    }
    Ok(())
}

fn bind_source(src: &str, what: &str) -> Result<PathBuf> {
    if !src.starts_with('/') {
        bail!("invalid {what}: the bind source {src:?} must be an absolute host path");
    }
    std::fs::canonicalize(src)
        .with_context(|| format!("invalid {what}: bind source path {src} does not exist"))
}

const PROPAGATIONS: [&str; 6] = [
    "shared", "slave", "private", "rshared", "rslave", "rprivate",
];

/// `-v HOST:CONTAINER[:OPTS]` (bind mount), `-v NAME:CONTAINER[:OPTS]` (named volume, made on
/// first use) or `-v CONTAINER` (anonymous volume), with docker's rules.
pub fn parse_volume(s: &str) -> Result<MountArg> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [dst] => ("", *dst, ""),
        [_, o] if !o.starts_with('/') && o.split(',').all(|o| VOLUME_OPTS.contains(&o)) => {
            bail!("invalid volume {s:?}: an anonymous volume takes no options (want SOURCE:CONTAINER-PATH:OPTIONS)")
        }
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => bail!("invalid volume {s:?}: want [HOST-PATH|NAME:]CONTAINER-PATH[:OPTIONS]"),
    };
    if src.is_empty() && parts.len() > 1 {
        bail!("invalid volume {s:?}: empty source");
    }
    let dst = clean_container_path(dst, "volume")?;
    let what = format!("volume {s:?}");
    if src.starts_with('/') {
        let source = bind_source(src, &what)?;
        let mut options = vec!["rbind".to_string()];
        let mut prop = None;
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" | "rw" => options.push(o.into()),
                "z" | "Z" => {} // SELinux relabelling: no SELinux here.
                o if PROPAGATIONS.contains(&o) => prop = Some(o.to_string()),
                "nocopy" => {}
                _ => bail!("invalid {what}: unknown option {o:?}"),
            }
        }
        options.push(prop.unwrap_or_else(|| "rprivate".into()));
        return Ok(MountArg::Bind(BindMount {
            source,
            destination: dst,
            options,
        }));
    }
    if !src.is_empty() {
        check_volume_name(src).with_context(|| format!("invalid {what}"))?;
    }
    let mut v = VolumeMount {
        name: src.to_string(),
        destination: dst,
        anonymous: src.is_empty(),
        ..VolumeMount::default()
    };
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => v.readonly = true,
            "rw" => v.readonly = false,
            "nocopy" => v.nocopy = true,
            "z" | "Z" => {}
            o if PROPAGATIONS.contains(&o) => {
                bail!("invalid {what}: propagation ({o}) is only for bind mounts of host paths")
            }
            _ => bail!("invalid {what}: unknown option {o:?} (a volume takes ro, rw, nocopy)"),
        }
    }
    Ok(MountArg::Volume(v))
}

/// Options `-v` accepts after a path.
const VOLUME_OPTS: [&str; 12] = [
    "ro", "rw", "z", "Z", "nocopy", "shared", "slave", "private", "rshared", "rslave", "rprivate",
    "",
];

/// Splits a `--mount` value on commas outside double quotes (docker reads it as one CSV record).
fn csv_fields(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in s.chars() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        bail!("invalid --mount {s:?}: unbalanced double quote");
    }
    out.push(cur);
    Ok(out)
}

fn parse_bool(v: Option<&str>, key: &str, s: &str) -> Result<bool> {
    match v {
        None | Some("1" | "true") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(v) => bail!("invalid --mount {s:?}: {key}={v:?}: want true or false"),
    }
}

/// `--mount type=bind|volume|tmpfs,...` with docker's keys: `src`/`source`,
/// `dst`/`destination`/`target`, `ro`/`readonly`, `bind-propagation`, `bind-nonrecursive`,
/// `volume-nocopy`, `volume-label`, `volume-opt`, `volume-driver` (local), `tmpfs-size`,
/// `tmpfs-mode`, `consistency` (ignored, as on Linux docker).
pub fn parse_mount(s: &str) -> Result<MountArg> {
    let mut typ = None;
    let mut source: Option<String> = None;
    let mut target: Option<String> = None;
    let mut readonly = false;
    let mut propagation = None;
    let mut nonrecursive = false;
    let mut nocopy = false;
    let mut labels = BTreeMap::new();
    let mut options = BTreeMap::new();
    let mut tmpfs_size = None;
    let mut tmpfs_mode = None;
    // Keys only one type takes, to refuse them on another.
    let mut typed: Vec<(&'static str, &'static str)> = Vec::new();
    for field in csv_fields(s)? {
        if field.is_empty() {
            continue;
        }
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = |v: Option<&str>| -> Result<String> {
            match v {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => bail!("invalid --mount {s:?}: {k} needs a value ({k}=...)"),
            }
        };
        match k.as_str() {
            "type" => {
                let t = need(v)?;
                if !matches!(t.as_str(), "bind" | "volume" | "tmpfs") {
                    bail!("invalid --mount {s:?}: unknown type {t:?} (want bind, volume or tmpfs)");
                }
                typ = Some(t);
            }
            "src" | "source" => source = Some(need(v)?),
            "dst" | "destination" | "target" => target = Some(need(v)?),
            "ro" | "readonly" => readonly = parse_bool(v, &k, s)?,
            "consistency" => {}
            "bind-propagation" => {
                let p = need(v)?;
                if !PROPAGATIONS.contains(&p.as_str()) {
                    bail!("invalid --mount {s:?}: unknown bind-propagation {p:?}");
                }
                propagation = Some(p);
                typed.push(("bind-propagation", "bind"));
            }
            "bind-nonrecursive" => {
                nonrecursive = parse_bool(v, &k, s)?;
                typed.push(("bind-nonrecursive", "bind"));
            }
            "volume-nocopy" => {
                nocopy = parse_bool(v, &k, s)?;
                typed.push(("volume-nocopy", "volume"));
            }
            "volume-label" | "volume-opt" => {
                let kv = need(v)?;
                let (a, b) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                if a.is_empty() {
                    bail!("invalid --mount {s:?}: {k} wants KEY=VALUE");
                }
                if k == "volume-label" {
                    labels.insert(a.to_string(), b.to_string());
                    typed.push(("volume-label", "volume"));
                } else {
                    options.insert(a.to_string(), b.to_string());
                    typed.push(("volume-opt", "volume"));
                }
            }
            "volume-driver" => {
                let d = need(v)?;
                if d != "local" {
                    bail!("invalid --mount {s:?}: volume driver {d:?} is not available (berth has the local driver only)");
                }
                typed.push(("volume-driver", "volume"));
            }
            "tmpfs-size" => {
                let v = need(v)?;
                tmpfs_size = Some(
                    parse_size(&v).with_context(|| format!("invalid --mount {s:?}: tmpfs-size"))?,
                );
                typed.push(("tmpfs-size", "tmpfs"));
            }
            "tmpfs-mode" => {
                let v = need(v)?;
                let m = u32::from_str_radix(&v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        anyhow!("invalid --mount {s:?}: tmpfs-mode {v:?} is not an octal mode")
                    })?;
                tmpfs_mode = Some(m);
                typed.push(("tmpfs-mode", "tmpfs"));
            }
            _ => bail!("invalid --mount {s:?}: unknown key {k:?}"),
        }
    }
    let typ = typ.unwrap_or_else(|| "volume".into());
    if let Some((key, t)) = typed.iter().find(|(_, t)| *t != typ) {
        bail!("invalid --mount {s:?}: {key} is only for type={t}, not type={typ}");
    }
    let target = target.ok_or_else(|| {
        anyhow!("invalid --mount {s:?}: the target is missing (target=CONTAINER-PATH)")
    })?;
    let what = format!("--mount {s:?}");
    let dst = clean_container_path(&target, "--mount target")
        .with_context(|| format!("invalid {what}"))?;
    match typ.as_str() {
        "bind" => {
            let src = source
                .ok_or_else(|| anyhow!("invalid {what}: a bind mount needs source=HOST-PATH"))?;
            let source = bind_source(&src, &what)?;
            let mut o = vec![if nonrecursive { "bind" } else { "rbind" }.to_string()];
            if readonly {
                o.push("ro".into());
            }
            o.push(propagation.unwrap_or_else(|| "rprivate".into()));
            Ok(MountArg::Bind(BindMount {
                source,
                destination: dst,
                options: o,
            }))
        }
        "tmpfs" => {
            if source.is_some() {
                bail!("invalid {what}: a tmpfs mount takes no source");
            }
            let mut o = Vec::new();
            if readonly {
                o.push("ro".to_string());
            }
            if let Some(n) = tmpfs_size {
                o.push(format!("size={n}"));
            }
            if let Some(m) = tmpfs_mode {
                o.push(format!("mode={m:o}"));
            }
            Ok(MountArg::Tmpfs(dst, o.join(",")))
        }
        _ => {
            let name = source.unwrap_or_default();
            if !name.is_empty() {
                check_volume_name(&name).with_context(|| format!("invalid {what}"))?;
            }
            Ok(MountArg::Volume(VolumeMount {
                anonymous: name.is_empty(),
                name,
                destination: dst,
                readonly,
                nocopy,
                source: PathBuf::new(),
                labels,
                options,
            }))
        }
    }
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
        let MountArg::Bind(v) = parse_volume("/tmp:/data:ro,rshared").unwrap() else {
            panic!("not a bind")
        };
        assert_eq!(v.options, ["rbind", "ro", "rshared"]);
        assert!(parse_volume("/tmp:rel").is_err());
        assert!(parse_volume("/tmp:/x:bogus").is_err());
        assert!(parse_volume("/nonexistent-host-dir:/x").is_err());
    }

    #[test]
    fn volume_and_mount_syntax() {
        let vol = |s: &str| match parse_volume(s).unwrap() {
            MountArg::Volume(v) => v,
            o => panic!("{s}: {o:?}"),
        };
        let v = vol("/data/");
        assert!(v.anonymous && v.name.is_empty() && v.destination == "/data");
        let v = vol("cache:/var/cache:ro,nocopy");
        assert_eq!(
            (v.name.as_str(), v.readonly, v.nocopy),
            ("cache", true, true)
        );
        for bad in [
            "/data:ro",
            "a:/x",
            "bad/name:/x",
            "cache:/x:rshared",
            "cache:rel",
            "cache:/",
            ":/x",
            "a:b:c:d",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
        let m = |s: &str| parse_mount(s).unwrap();
        let MountArg::Bind(b) = m("type=bind,src=/tmp,dst=/h,readonly,bind-propagation=rslave")
        else {
            panic!()
        };
        assert_eq!(b.options, ["rbind", "ro", "rslave"]);
        let MountArg::Volume(v) = m("source=data,target=/d,volume-opt=type=tmpfs,\"volume-opt=o=size=1m,uid=5\",volume-label=a=b,ro=false")
        else {
            panic!()
        };
        assert_eq!(v.name, "data");
        assert!(!v.readonly);
        assert_eq!(v.options["o"], "size=1m,uid=5");
        assert_eq!(v.labels["a"], "b");
        assert!(matches!(m("type=volume,target=/x"), MountArg::Volume(v) if v.anonymous));
        assert_eq!(
            m("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770"),
            MountArg::Tmpfs("/t".into(), "size=1048576,mode=1770".into())
        );
        for (bad, why) in [
            ("type=bind,target=/x,bogus=1", "unknown key"),
            ("type=bind,source=/tmp", "target is missing"),
            ("type=bind,source=/tmp,target=rel", "absolute"),
            ("type=bind,target=/x", "needs source"),
            (
                "type=bind,source=/nonexistent-host-dir,target=/x",
                "does not exist",
            ),
            ("type=nfs,target=/x", "unknown type"),
            ("type=tmpfs,source=x,target=/x", "no source"),
            ("type=volume,target=/x,tmpfs-size=1m", "only for type=tmpfs"),
            (
                "type=bind,source=/tmp,target=/x,volume-nocopy",
                "only for type=volume",
            ),
            ("type=volume,target=/x,volume-driver=nfs", "not available"),
            ("type=tmpfs,target=/x,tmpfs-mode=999", "octal"),
            ("target=/x,ro=maybe", "true or false"),
        ] {
            let e = format!("{:#}", parse_mount(bad).unwrap_err());
            assert!(e.contains(why), "{bad}: {e}");
        }
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
