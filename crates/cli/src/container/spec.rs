//! The OCI runtime config (`config.json`) of a container: the image's config and the container's
//! settings, with docker's defaults (its mounts, capability set, seccomp profile, masked paths).
//! Built at every start, when the root filesystem is mounted, because `--user NAME` is looked up in
//! the container's own /etc/passwd.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::OFlag;
use serde_json::{json, Value};

use super::defaults;
use super::settings::{merge_env, Seccomp, Settings};

/// Where `--init` puts berth-init inside the container (on /dev's tmpfs, so a read-only root works).
pub const INIT_PATH: &str = "/dev/init";

/// The default PATH when the image sets none (docker's).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The uid, gid, supplementary gids and home of a `--user` value inside a root filesystem.
#[derive(Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Reads a file of the container's root filesystem, never leaving it; None when it is not there.
fn read_in_root(root: &OwnedFd, path: &str) -> Option<String> {
    let fd = berth_runtime::linux::secure_path::open(
        root.as_fd(),
        Path::new(path),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
    )
    .ok()?;
    let mut s = String::new();
    use std::io::Read;
    std::fs::File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// Resolves `user[:group]` (names or numbers) with the rootfs's /etc/passwd and /etc/group.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<ResolvedUser> {
    let root: OwnedFd = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("opening {}", rootfs.display()))?;
    let passwd = read_in_root(&root, "/etc/passwd").unwrap_or_default();
    let group = read_in_root(&root, "/etc/group").unwrap_or_default();
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && (f[0] == user || f[2] == user)).then(|| {
            (
                f[0].to_string(),
                f[2].parse::<u32>().ok(),
                f[3].parse::<u32>().ok(),
                f[5].to_string(),
            )
        })
    });
    let (name, uid, mut gid, home) = match (entry, user.parse::<u32>()) {
        (Some((n, Some(u), g, h)), _) => (Some(n), u, g.unwrap_or(0), h),
        (_, Ok(u)) => (None, u, 0, "/".to_string()),
        _ => {
            bail!("unable to find user {user}: no matching entries in the container's /etc/passwd")
        }
    };
    let groups: Vec<(String, u32, Vec<String>)> = group
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4).then(|| {
                f[2].parse().ok().map(|g| {
                    (
                        f[0].to_string(),
                        g,
                        f[3].split(',').map(str::to_string).collect(),
                    )
                })
            })?
        })
        .collect();
    if let Some(g) = grp {
        gid = match groups
            .iter()
            .find(|(n, id, _)| n == g || id.to_string() == g)
        {
            Some((_, id, _)) => *id,
            None => g.parse().map_err(|_| {
                anyhow!(
                    "unable to find group {g}: no matching entries in the container's /etc/group"
                )
            })?,
        };
    }
    let mut additional_gids = Vec::new();
    if grp.is_none() {
        if let Some(n) = &name {
            for (_, id, members) in &groups {
                if members.iter().any(|m| m == n) && *id != gid && !additional_gids.contains(id) {
                    additional_gids.push(*id);
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

fn mount(dst: &str, typ: &str, src: &str, opts: &[&str]) -> Value {
    json!({"destination": dst, "type": typ, "source": src, "options": opts})
}

/// Files berth writes for the container (bind-mounted over the image's): hostname, hosts,
/// resolv.conf (their content depends on the network: see `network::hosts_file`, `resolv_conf`).
pub fn write_etc_files(dir: &Path, s: &Settings, net: &super::network::Attached) -> Result<()> {
    std::fs::write(dir.join("hostname"), format!("{}\n", s.hostname))?;
    std::fs::write(dir.join("hosts"), super::network::hosts_file(s, net))?;
    std::fs::write(dir.join("resolv.conf"), super::network::resolv_conf(s, net))?;
    Ok(())
}

/// Every character and block device directly under the host's /dev (for `--privileged`).
fn host_devices() -> Vec<Value> {
    let skip = [
        "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
    ];
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/dev") else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) {
            continue;
        }
        let Ok(md) = e.metadata() else { continue };
        let ft = md.file_type();
        let typ = if ft.is_char_device() {
            "c"
        } else if ft.is_block_device() {
            "b"
        } else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        let rdev = md.rdev();
        out.push(json!({
            "path": format!("/dev/{name}"), "type": typ,
            "major": nix::sys::stat::major(rdev), "minor": nix::sys::stat::minor(rdev),
            "fileMode": md.mode() & 0o777, "uid": md.uid(), "gid": md.gid(),
        }));
    }
    out
}

fn device_entry(d: &super::settings::Device) -> Result<(Value, Value)> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&d.host).with_context(|| format!("device {}", d.host.display()))?;
    let ft = md.file_type();
    let typ = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else {
        bail!("{} is not a device", d.host.display());
    };
    let (maj, min) = (
        nix::sys::stat::major(md.rdev()),
        nix::sys::stat::minor(md.rdev()),
    );
    Ok((
        json!({"path": d.container, "type": typ, "major": maj, "minor": min,
               "fileMode": md.mode() & 0o777, "uid": 0, "gid": 0}),
        json!({"allow": true, "type": typ, "major": maj, "minor": min, "access": d.permissions}),
    ))
}

/// Inputs of [`build`] besides the settings.
pub struct SpecInputs<'a> {
    pub id: &'a str,
    pub rootfs: &'a Path,
    /// The container's run dir (the generated /etc files live there).
    pub dir: &'a Path,
    /// berth-init on the host, for `--init`.
    pub init_binary: Option<&'a Path>,
    /// Whether the host's cgroups are pure v2 (then a private cgroup namespace, as docker).
    pub cgroup_v2: bool,
    /// The network namespace to join by path (a bridge network's, or another container's).
    pub netns: Option<&'a Path>,
    /// Other namespaces joined by path, by type (a pod's containers: its infra's ipc and uts).
    pub joins: &'a [(&'static str, std::path::PathBuf)],
}

/// The runtime config of a container.
pub fn build(s: &Settings, inp: &SpecInputs<'_>) -> Result<Value> {
    let user = resolve_user(inp.rootfs, &s.user)?;
    let mut env: Vec<String> = Vec::new();
    if !s.env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(DEFAULT_PATH.into());
    }
    merge_env(&mut env, &format!("HOSTNAME={}", s.hostname));
    if s.tty {
        merge_env(&mut env, "TERM=xterm");
    }
    for e in &s.env {
        merge_env(&mut env, e);
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            if user.home.is_empty() {
                "/"
            } else {
                &user.home
            }
        ));
    }
    let mut args = s.args.clone();
    if args.is_empty() {
        bail!("no command specified: the image has no Cmd or Entrypoint, give one after the image name");
    }
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            if s.privileged {
                &["nosuid", "noexec", "nodev"]
            } else {
                &["nosuid", "noexec", "nodev", "ro"]
            },
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
    ];
    for f in ["hostname", "hosts", "resolv.conf"] {
        let src = inp.dir.join(f);
        if src.exists() {
            mounts.push(json!({"destination": format!("/etc/{f}"), "type": "bind",
                "source": src, "options": ["rbind", "rprivate"]}));
        }
    }
    // The user's mounts (tmpfs, binds, volumes), parents before children (docker sorts them by
    // the depth of their destination), so `/a` never hides `/a/b`.
    let mut own: Vec<(usize, Value)> = Vec::new();
    let depth = |p: &str| p.split('/').filter(|c| !c.is_empty()).count();
    for (path, opts) in &s.tmpfs {
        let mut o: Vec<&str> = vec!["nosuid", "nodev", "noexec"];
        o.extend(opts.split(',').filter(|x| !x.is_empty()));
        own.push((
            depth(path),
            json!({"destination": path, "type": "tmpfs", "source": "tmpfs", "options": o}),
        ));
    }
    for b in &s.binds {
        own.push((
            depth(&b.destination),
            json!({"destination": b.destination, "type": "bind",
                "source": b.source, "options": b.options}),
        ));
    }
    for v in &s.volumes {
        let mut o = vec!["rbind", "rprivate"];
        if v.readonly {
            o.push("ro");
        }
        own.push((
            depth(&v.destination),
            json!({"destination": v.destination, "type": "bind", "source": v.source, "options": o}),
        ));
    }
    own.sort_by_key(|(d, _)| *d);
    mounts.extend(own.into_iter().map(|(_, m)| m));
    if s.init {
        let bin = inp
            .init_binary
            .ok_or_else(|| anyhow!("--init: berth-init was not found next to the berth binary"))?;
        mounts.push(
            json!({"destination": INIT_PATH, "type": "bind", "source": bin,
            "options": ["bind", "ro", "nosuid", "nodev"]}),
        );
        let mut a = vec![INIT_PATH.to_string(), "--".into()];
        a.append(&mut args);
        args = a;
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    match (inp.netns, s.network.as_str()) {
        (Some(path), _) => namespaces.push(json!({"type": "network", "path": path})),
        (None, "host") => {}
        (None, "none") => namespaces.push(json!({"type": "network"})),
        (None, other) => bail!("network {other:?}: no network namespace was set up"),
    }
    for (typ, path) in inp.joins {
        namespaces.retain(|n| n["type"] != *typ);
        namespaces.push(json!({"type": typ, "path": path}));
    }
    if inp.cgroup_v2 {
        namespaces.push(json!({"type": "cgroup"}));
    }

    let mut resources = serde_json::Map::new();
    let mut dev_rules = vec![json!({"allow": false, "access": "rwm"})];
    let mut devices = Vec::new();
    if s.privileged {
        dev_rules = vec![json!({"allow": true, "access": "rwm"})];
        devices = host_devices();
    }
    for d in &s.devices {
        let (dev, rule) = device_entry(d)?;
        devices.retain(|x| x["path"] != dev["path"]);
        devices.push(dev);
        dev_rules.push(rule);
    }
    resources.insert("devices".into(), json!(dev_rules));
    if let Some(m) = s.memory {
        resources.insert("memory".into(), json!({"limit": m}));
    }
    if let Some(c) = s.cpus_milli {
        resources.insert(
            "cpu".into(),
            json!({"quota": c as i64 * 100, "period": 100_000}),
        );
    }
    if let Some(p) = s.pids_limit {
        resources.insert("pids".into(), json!({"limit": p}));
    }

    let caps = &s.capabilities;
    let mut process = json!({
        "terminal": s.tty,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
        "args": args,
        "env": env,
        "cwd": if s.workdir.is_empty() { "/" } else { &s.workdir },
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": s.no_new_privileges,
    });
    if !s.ulimits.is_empty() {
        process["rlimits"] = json!(s
            .ulimits
            .iter()
            .map(|u| json!({"type": u.kind, "soft": u.soft, "hard": u.hard}))
            .collect::<Vec<_>>());
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": cgroups_path(inp.id),
        "devices": devices,
        "sysctl": s.sysctls,
    });
    if !s.privileged {
        linux["maskedPaths"] = json!(defaults::MASKED_PATHS);
        linux["readonlyPaths"] = json!(defaults::READONLY_PATHS);
    }
    match (&s.seccomp, s.privileged) {
        (_, true) | (Seccomp::Unconfined, _) => {}
        (Seccomp::Default, false) => {
            linux["seccomp"] = serde_json::to_value(defaults::default_seccomp(caps))?
        }
        (Seccomp::Profile(path), false) => {
            linux["seccomp"] = serde_json::to_value(defaults::parse_seccomp_profile(path, caps)?)?
        }
    }
    Ok(json!({
        "ociVersion": berth_runtime::spec::OCI_VERSION,
        "process": process,
        "root": {"path": inp.rootfs, "readonly": s.read_only},
        "hostname": s.hostname,
        "mounts": mounts,
        "linux": linux,
        "annotations": s.labels,
    }))
}

/// The container's cgroup, below the cgroup root of each hierarchy.
pub fn cgroups_path(id: &str) -> String {
    format!("/berth/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_from_the_rootfs_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nadm:x:4:www\n",
        )
        .unwrap();
        let u = resolve_user(d.path(), "www").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.clone()), (33, 33, vec![4]));
        assert_eq!(u.home, "/var/www");
        assert_eq!(resolve_user(d.path(), "www:adm").unwrap().gid, 4);
        assert_eq!(resolve_user(d.path(), "1234:5").unwrap().uid, 1234);
        assert_eq!(resolve_user(d.path(), "").unwrap().uid, 0);
        assert!(resolve_user(d.path(), "nobody-here").is_err());
        assert!(resolve_user(d.path(), "www:nogroup").is_err());
    }

    #[test]
    fn a_symlinked_passwd_does_not_leave_the_rootfs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        // Points at the host's /etc/passwd if followed naively; inside the root it is missing.
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("etc/passwd")).unwrap();
        assert!(resolve_user(d.path(), "root").is_err());
        assert_eq!(resolve_user(d.path(), "0").unwrap().uid, 0);
    }
}
