//! Volumes: named and anonymous data directories that outlive containers (`berth volume ...`,
//! `-v NAME:/path`, `-v /path`, `--mount type=volume`, the image's `Volumes`).
//!
//! A volume is a row of the `volumes` table (name UNIQUE, labels, driver options, anonymous flag)
//! and a directory `<root>/volumes/<name>/_data` (docker's layout), made together: the directory
//! is made inside the write transaction that inserts the row and removed again when that
//! transaction fails, so a row never lacks its directory. A directory found without a row (a
//! create killed between the two) is adopted by the next create of that name. Removal renames the
//! directory aside (`.removing-*`) inside the transaction that deletes the row and deletes it after
//! the commit.
//!
//! Which container uses which volume is the `container_volumes` table (deleted with the
//! container's row): a volume in use cannot be removed (docker's rule, also with `-f`), `rm -v`
//! and `run --rm` remove the container's anonymous volumes, `volume prune` the unused ones.
//!
//! At every start, a volume whose data directory is empty gets the contents of the directory it
//! is mounted over in the container's root filesystem (docker's copy-up; not with `nocopy`),
//! copied with `files::copy_up` (resolved inside the root, never following the container's
//! symlinks). A volume with driver options (`--opt type=tmpfs,device=tmpfs,o=size=64m`, or
//! `type=none,o=bind,device=/srv/x`) is mounted on `_data` at its first use and stays mounted
//! until it is removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::mount::MsFlags;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{json, Value};

use super::record::Container;
use super::settings::{self, BindMount, CreateArgs, MountArg, Settings, VolumeMount};
use super::Paths;
use crate::store::Store;

/// The volume tables, created with the others by `Db::open` (after `containers`).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,            -- data under <root>/volumes/<name>/_data
    created_ns INTEGER NOT NULL,
    driver TEXT NOT NULL DEFAULT 'local',
    labels TEXT NOT NULL,             -- JSON object
    options TEXT NOT NULL,            -- JSON object: the local driver's type, device, o
    anonymous INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS container_volumes (
    container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    volume TEXT NOT NULL REFERENCES volumes(name),
    destination TEXT NOT NULL,
    PRIMARY KEY (container_id, destination)
);
CREATE INDEX IF NOT EXISTS container_volumes_by_volume ON container_volumes(volume);
";

/// One volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub created_ns: i64,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub anonymous: bool,
}

// ---- paths ----------------------------------------------------------------------------------------

/// `<root>/volumes`, with the root made absolute and its symlinks resolved: the paths are
/// compared with /proc/self/mountinfo and handed to the runtime as bind sources.
fn volumes_dir(paths: &Paths) -> PathBuf {
    std::fs::canonicalize(&paths.root)
        .or_else(|_| std::path::absolute(&paths.root))
        .unwrap_or_else(|_| paths.root.clone())
        .join("volumes")
}

/// `<root>/volumes/<name>`.
fn volume_dir(paths: &Paths, name: &str) -> PathBuf {
    volumes_dir(paths).join(name)
}

/// `<root>/volumes/<name>/_data`: what containers mount.
pub fn data_dir(paths: &Paths, name: &str) -> PathBuf {
    volume_dir(paths, name).join("_data")
}

// ---- rows -----------------------------------------------------------------------------------------

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Volume, String, String)> {
    Ok((
        Volume {
            name: r.get(0)?,
            created_ns: r.get(1)?,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            anonymous: r.get(4)?,
        },
        r.get(2)?,
        r.get(3)?,
    ))
}

fn finish((mut v, labels, options): (Volume, String, String)) -> Result<Volume> {
    v.labels = serde_json::from_str(&labels)
        .with_context(|| format!("volume {}: unreadable labels in the database", v.name))?;
    v.options = serde_json::from_str(&options)
        .with_context(|| format!("volume {}: unreadable options in the database", v.name))?;
    Ok(v)
}

const COLUMNS: &str = "name, created_ns, labels, options, anonymous";

/// One volume by name.
pub fn get(conn: &Connection, name: &str) -> Result<Option<Volume>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM volumes WHERE name = ?1"),
        [name],
        from_row,
    )
    .optional()?
    .map(finish)
    .transpose()
}

/// Every volume, by name.
pub fn all(conn: &Connection) -> Result<Vec<Volume>> {
    let mut st = conn.prepare(&format!("SELECT {COLUMNS} FROM volumes ORDER BY name"))?;
    let rows = st.query_map([], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// The containers (id, name) that use a volume.
pub fn users(conn: &Connection, name: &str) -> Result<Vec<(String, String)>> {
    let mut st = conn.prepare(
        "SELECT DISTINCT c.id, c.name FROM container_volumes cv JOIN containers c
         ON c.id = cv.container_id WHERE cv.volume = ?1 ORDER BY c.name",
    )?;
    let rows = st.query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The anonymous volumes a container uses.
pub fn anonymous_of(conn: &Connection, container_id: &str) -> Result<Vec<String>> {
    let mut st = conn.prepare(
        "SELECT DISTINCT v.name FROM container_volumes cv JOIN volumes v ON v.name = cv.volume
         WHERE cv.container_id = ?1 AND v.anonymous = 1 ORDER BY v.name",
    )?;
    let rows = st.query_map([container_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- driver options (the local driver's type, device, o) ----------------------------------------

/// Checks the local driver's options: none, or `type` and `device` with an optional `o`.
pub fn check_options(opts: &BTreeMap<String, String>) -> Result<()> {
    if let Some(k) = opts
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "device" | "o"))
    {
        bail!("invalid volume option {k:?}: the local driver takes type, device and o");
    }
    if !opts.is_empty() {
        for k in ["type", "device"] {
            if !opts.get(k).is_some_and(|v| !v.is_empty()) {
                bail!("invalid volume options: {k} is missing (the local driver wants type=..., device=...[, o=...])");
            }
        }
        let (flags, _) = mount_flags(opts.get("o").map_or("", String::as_str));
        if flags.contains(MsFlags::MS_BIND) && !opts["device"].starts_with('/') {
            bail!(
                "invalid volume options: the device of a bind (o=bind) must be an absolute host path"
            );
        }
    }
    Ok(())
}

/// `o=` split into mount flags and the filesystem's own options (mount(8)'s words).
fn mount_flags(o: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for w in o.split(',').filter(|w| !w.is_empty()) {
        match w {
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags.remove(MsFlags::MS_RDONLY),
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "dirsync" => flags |= MsFlags::MS_DIRSYNC,
            w => data.push(w),
        }
    }
    (flags, data.join(","))
}

/// Mounts a volume with driver options on its data directory.
fn mount_driver(v: &Volume, data: &Path) -> Result<()> {
    let typ = v.options.get("type").map_or("", String::as_str);
    let device = v.options.get("device").map_or("", String::as_str);
    let (flags, opts) = mount_flags(v.options.get("o").map_or("", String::as_str));
    let what = || {
        format!(
            "mounting volume {} ({typ} {device} on {})",
            v.name,
            data.display()
        )
    };
    let fstype = (!flags.contains(MsFlags::MS_BIND)).then_some(typ);
    nix::mount::mount(
        Some(device),
        data,
        fstype,
        flags,
        (!opts.is_empty()).then_some(opts.as_str()),
    )
    .with_context(what)?;
    if flags.contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY) {
        // A bind mount ignores MS_RDONLY until remounted.
        nix::mount::mount(
            None::<&str>,
            data,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .with_context(what)?;
    }
    Ok(())
}

/// The mount points at or below `p` (of any filesystem, binds of the same one included), deepest
/// first.
fn mounts_under(p: &Path) -> Vec<PathBuf> {
    let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = mi
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(std::ffi::OsString::from_vec(unescape_mountinfo(m))))
        .filter(|m| m.starts_with(p))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    v
}

/// Whether `p` is a mount point.
fn mounted(p: &Path) -> bool {
    mounts_under(p).iter().any(|m| m == p)
}

/// mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let n = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(n as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Unmounts whatever is mounted at or below a volume's directory (its driver mount); an error
/// when something stays mounted: a directory is never deleted through a mount.
fn unmount_all(name: &str, dir: &Path) -> Result<()> {
    for m in mounts_under(dir) {
        nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting volume {name} ({})", m.display()))?;
    }
    if let Some(m) = mounts_under(dir).first() {
        bail!("volume {name}: {} is still mounted", m.display());
    }
    Ok(())
}

// ---- create and remove ----------------------------------------------------------------------------

/// Inserts a volume's row and makes its directory, in `tx`; the directory made (to remove if the
/// transaction fails) is pushed on `made`. A clear error when the name is taken.
fn create_locked(
    tx: &Transaction<'_>,
    paths: &Paths,
    v: &Volume,
    made: &mut Vec<PathBuf>,
) -> Result<()> {
    settings::check_volume_name(&v.name)?;
    check_options(&v.options)?;
    if get(tx, &v.name)?.is_some() {
        bail!(
            "a volume named {:?} already exists: remove it (berth volume rm {}) or choose another name",
            v.name,
            v.name
        );
    }
    let base = volumes_dir(paths);
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let dir = base.join(&v.name);
    match std::fs::create_dir(&dir) {
        Ok(()) => made.push(dir.clone()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Left without its row by a create that was killed: adopted.
            let md = std::fs::symlink_metadata(&dir)
                .with_context(|| format!("checking {}", dir.display()))?;
            if !md.is_dir() {
                bail!(
                    "cannot create volume {}: {} is in the way",
                    v.name,
                    dir.display()
                );
            }
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let data = dir.join("_data");
    match std::fs::create_dir(&data) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && data.is_dir() => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", data.display())),
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", data.display()))?;
    tx.execute(
        "INSERT INTO volumes (name, created_ns, driver, labels, options, anonymous)
         VALUES (?1, ?2, 'local', ?3, ?4, ?5)",
        params![
            v.name,
            v.created_ns,
            serde_json::to_string(&v.labels)?,
            serde_json::to_string(&v.options)?,
            v.anonymous
        ],
    )?;
    Ok(())
}

/// Removes directories made by a transaction that failed.
pub fn undo(made: &[PathBuf]) {
    for d in made {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// `volume create`: the row and the directory, both or neither.
pub fn create(store: &mut Store, paths: &Paths, v: &Volume) -> Result<()> {
    let tx = store.db.write()?;
    let mut made = Vec::new();
    let r = create_locked(&tx, paths, v, &mut made).and_then(|()| Ok(tx.commit()?));
    if r.is_err() {
        undo(&made);
    }
    r
}

fn random_suffix() -> Result<String> {
    Ok(super::lifecycle::new_id()?[..12].to_string())
}

/// Removes a volume no container uses: false when there is no such volume. The directory is
/// renamed aside inside the transaction that deletes the row, deleted after the commit.
pub fn remove(store: &mut Store, paths: &Paths, name: &str) -> Result<bool> {
    let tx = store.db.write()?;
    if get(&tx, name)?.is_none() {
        return Ok(false);
    }
    let users = users(&tx, name)?;
    if let Some((id, cname)) = users.first() {
        let more = match users.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        bail!(
            "volume {name} is in use by container {cname} ({}){more}: remove the container first (berth rm {cname})",
            &id[..12.min(id.len())]
        );
    }
    let dir = volume_dir(paths, name);
    unmount_all(name, &dir)?;
    let trash = volumes_dir(paths).join(format!(".removing-{name}-{}", random_suffix()?));
    let moved = match std::fs::rename(&dir, &trash) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
    };
    let r = tx
        .execute("DELETE FROM volumes WHERE name = ?1", [name])
        .map_err(anyhow::Error::from)
        .and_then(|_| Ok(tx.commit()?));
    if let Err(e) = r {
        if moved {
            let _ = std::fs::rename(&trash, &dir);
        }
        return Err(e).with_context(|| format!("removing volume {name}"));
    }
    if moved {
        if let Err(e) = unmount_all(name, &trash).and_then(|()| {
            std::fs::remove_dir_all(&trash).with_context(|| format!("deleting {}", trash.display()))
        }) {
            eprintln!(
                "berth: volume {name} is removed but its files could not all be deleted ({}): {e:#}",
                trash.display()
            );
        }
    }
    Ok(true)
}

/// Deletes what removals killed half-way left (`.removing-*`).
fn sweep(paths: &Paths) {
    let Ok(rd) = std::fs::read_dir(volumes_dir(paths)) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with(".removing-")
            && mounts_under(&e.path()).is_empty()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Removes the volumes of `names` that no container uses any more (a container's anonymous
/// volumes after it is removed); failures are reported, not fatal.
pub fn remove_unused(store: &mut Store, paths: &Paths, names: &[String]) {
    for n in names {
        match users(store.db.conn(), n) {
            Ok(u) if u.is_empty() => {}
            _ => continue,
        }
        if let Err(e) = remove(store, paths, n) {
            eprintln!("berth: removing volume {n}: {e:#}");
        }
    }
}

// ---- containers -----------------------------------------------------------------------------------

/// The mounts of `create`/`run` (`--tmpfs`, `-v`, `--mount`, the image's `Volumes`), checked.
pub struct Mounts {
    pub tmpfs: Vec<(String, String)>,
    pub binds: Vec<BindMount>,
    pub volumes: Vec<VolumeMount>,
}

/// Checks the mount flags, adds an anonymous volume for each of the image's `Volumes` that no
/// flag covers, and names the anonymous volumes. Two mounts on one path are an error (docker's).
pub fn mounts(a: &CreateArgs, image_volumes: &BTreeSet<String>) -> Result<Mounts> {
    let mut args = Vec::new();
    for t in &a.tmpfs {
        let (p, o) = settings::parse_tmpfs(t)?;
        args.push(MountArg::Tmpfs(p, o));
    }
    for v in &a.volume {
        args.push(settings::parse_volume(v)?);
    }
    for m in &a.mount {
        args.push(settings::parse_mount(m)?);
    }
    let mut seen = BTreeSet::new();
    for m in &args {
        let d = m.destination();
        let key = settings::clean_container_path(d, "mount").unwrap_or_else(|_| d.to_string());
        if !seen.insert(key) {
            bail!("duplicate mount point {d}: two mounts are given for it");
        }
    }
    for p in image_volumes {
        let Ok(d) = settings::clean_container_path(&format!("/{p}"), "image volume") else {
            continue; // `/` itself: nothing docker would mount either
        };
        if seen.insert(d.clone()) {
            args.push(MountArg::Volume(VolumeMount {
                destination: d,
                anonymous: true,
                ..VolumeMount::default()
            }));
        }
    }
    let mut out = Mounts {
        tmpfs: Vec::new(),
        binds: Vec::new(),
        volumes: Vec::new(),
    };
    for m in args {
        match m {
            MountArg::Tmpfs(p, o) => out.tmpfs.push((p, o)),
            MountArg::Bind(b) => out.binds.push(b),
            MountArg::Volume(mut v) => {
                if v.anonymous {
                    v.name = super::lifecycle::new_id()?;
                }
                check_options(&v.options)
                    .with_context(|| format!("the volume for {}", v.destination))?;
                out.volumes.push(v);
            }
        }
    }
    Ok(out)
}

/// Points each volume mount at its volume's data directory.
pub fn set_sources(paths: &Paths, s: &mut Settings) {
    for v in &mut s.volumes {
        v.source = data_dir(paths, &v.name);
    }
}

/// For a container being created, in its transaction: makes the volumes it names that do not
/// exist yet (directories made are pushed on `made`).
pub fn create_for(
    tx: &Transaction<'_>,
    paths: &Paths,
    c: &Container,
    made: &mut Vec<PathBuf>,
) -> Result<()> {
    for m in &c.settings.volumes {
        match get(tx, &m.name)? {
            Some(v) => {
                if !m.options.is_empty() && m.options != v.options {
                    bail!(
                        "volume {} already exists with other driver options: remove it first, or mount it without volume-opt",
                        m.name
                    );
                }
            }
            None => {
                let v = Volume {
                    name: m.name.clone(),
                    created_ns: berth_monitor::logfile::now_ns(),
                    labels: m.labels.clone(),
                    options: m.options.clone(),
                    anonymous: m.anonymous,
                };
                create_locked(tx, paths, &v, made)?;
            }
        }
    }
    Ok(())
}

/// Records which volumes a container uses (after its row, in the same transaction).
pub fn record_use(tx: &Transaction<'_>, c: &Container) -> Result<()> {
    for m in &c.settings.volumes {
        tx.execute(
            "INSERT INTO container_volumes (container_id, volume, destination) VALUES (?1, ?2, ?3)",
            params![c.id, m.name, m.destination],
        )?;
    }
    Ok(())
}

/// The per-volume lock (flock on its directory), held while it is mounted or filled.
fn lock(paths: &Paths, name: &str) -> Result<Flock<File>> {
    let dir = volume_dir(paths, name);
    let f =
        File::open(&dir).with_context(|| format!("opening volume {name} ({})", dir.display()))?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| anyhow!("locking volume {name}: {e}"))
}

fn is_empty_dir(p: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(p)
        .with_context(|| format!("reading {}", p.display()))?
        .next()
        .is_none())
}

/// Deletes what a failed copy-up put in a volume's data directory.
fn empty_dir(p: &Path) {
    let Ok(rd) = std::fs::read_dir(p) else { return };
    for e in rd.flatten() {
        let path = e.path();
        let _ = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
}

/// Before a container starts (its root filesystem mounted at `rootfs`): mounts its volumes that
/// have driver options, and fills each empty volume with what the image has at its path.
pub fn prepare(conn: &Connection, paths: &Paths, c: &Container, rootfs: &Path) -> Result<()> {
    if c.settings.volumes.is_empty() {
        return Ok(());
    }
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("opening {}", rootfs.display()))?;
    for m in &c.settings.volumes {
        let v = get(conn, &m.name)?.ok_or_else(|| {
            anyhow!(
                "volume {} of container {} is gone (removed by hand?)",
                m.name,
                c.name
            )
        })?;
        let _lock = lock(paths, &v.name)?;
        let data = data_dir(paths, &v.name);
        if !v.options.is_empty() && !mounted(&data) {
            mount_driver(&v, &data)?;
        }
        if !m.nocopy && is_empty_dir(&data)? {
            if let Err(e) = super::files::copy_up(root.as_fd(), Path::new(&m.destination), &data) {
                // Empty again, so that the next start copies it all (nothing here was the user's).
                empty_dir(&data);
                return Err(e.context(format!(
                    "copying {} of the image into volume {}",
                    m.destination, v.name
                )));
            }
        }
    }
    Ok(())
}

// ---- the commands -----------------------------------------------------------------------------------

/// `berth volume ...`.
#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a volume (a random name when none is given).
    Create {
        /// Volume driver (only `local`).
        #[arg(short, long, default_value = "local")]
        driver: String,
        /// Metadata (KEY=VALUE).
        #[arg(long)]
        label: Vec<String>,
        /// Driver options: type=FSTYPE, device=DEVICE, o=MOUNT-OPTIONS (mounted on first use).
        #[arg(short, long = "opt")]
        opt: Vec<String>,
        name: Option<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
        /// Filter (dangling=true|false, name=SUBSTRING, label=KEY[=VALUE], driver=local).
        #[arg(short, long)]
        filter: Vec<String>,
        /// `json` or `table`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show volumes as JSON.
    Inspect {
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove volumes (never one a container uses; -f: no error for a missing one).
    #[command(alias = "remove")]
    Rm {
        /// Do not fail on volumes that do not exist.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove every volume no container uses.
    Prune {
        /// Do not ask (berth never asks; accepted for compatibility).
        #[arg(short, long)]
        force: bool,
        /// Accepted for docker compatibility (named volumes are pruned anyway).
        #[arg(short, long)]
        all: bool,
        /// Only volumes with these labels (label=KEY[=VALUE], label!=KEY[=VALUE]).
        #[arg(long)]
        filter: Vec<String>,
    },
}

fn inspect_value(paths: &Paths, v: &Volume) -> Value {
    json!({
        "CreatedAt": crate::util::rfc3339(v.created_ns.div_euclid(1_000_000_000)),
        "Driver": "local",
        "Labels": v.labels,
        "Mountpoint": data_dir(paths, &v.name),
        "Name": v.name,
        "Options": v.options,
        "Scope": "local",
        "Anonymous": v.anonymous,
    })
}

fn label_matches(v: &Volume, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, want)) => v.labels.get(k).is_some_and(|x| x == want),
        None => v.labels.contains_key(f),
    }
}

/// Whether a volume passes `ls`'s filters (each key: any of its values; all keys).
fn filtered(conn: &Connection, v: &Volume, filters: &[String]) -> Result<bool> {
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in filters {
        let (k, val) = f
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid filter {f:?}: want KEY=VALUE"))?;
        by_key.entry(k).or_default().push(val);
    }
    for (k, vals) in by_key {
        let ok = match k {
            "dangling" => {
                let dangling = users(conn, &v.name)?.is_empty();
                vals.iter()
                    .map(|x| match *x {
                        "true" | "1" => Ok(dangling),
                        "false" | "0" => Ok(!dangling),
                        x => bail!("invalid filter dangling={x:?}: want true or false"),
                    })
                    .collect::<Result<Vec<bool>>>()?
                    .into_iter()
                    .any(|b| b)
            }
            "name" => vals.iter().any(|x| v.name.contains(x)),
            "label" => vals.iter().any(|x| label_matches(v, x)),
            "label!" => vals.iter().all(|x| !label_matches(v, x)),
            "driver" => vals.contains(&"local"),
            k => bail!("invalid filter {k:?}: want dangling, name, label or driver"),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn print(s: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(s.as_bytes());
}

/// `volume prune`: removes the volumes no container uses (with the labels asked); their names
/// and the bytes freed.
pub fn prune(store: &mut Store, paths: &Paths, filters: &[String]) -> Result<(Vec<String>, u64)> {
    for f in filters {
        if !(f.starts_with("label=") || f.starts_with("label!=")) {
            bail!(
                "invalid filter {f:?}: volume prune takes label=KEY[=VALUE] or label!=KEY[=VALUE]"
            );
        }
    }
    let mut names = Vec::new();
    let mut bytes = 0;
    for v in all(store.db.conn())? {
        if !users(store.db.conn(), &v.name)?.is_empty() || !filtered(store.db.conn(), &v, filters)?
        {
            continue;
        }
        let size = super::manage::disk_usage(&volume_dir(paths, &v.name));
        match remove(store, paths, &v.name) {
            Ok(true) => {
                names.push(v.name.clone());
                bytes += size;
            }
            Ok(false) => {}
            // Taken by a container meanwhile: not unused any more.
            Err(e) => eprintln!("berth: volume {}: {e:#}", v.name),
        }
    }
    sweep(paths);
    Ok((names, bytes))
}

/// Runs one `volume` command; the process's exit status.
pub fn dispatch(store: &mut Store, paths: &Paths, cmd: &VolumeCmd) -> Result<u8> {
    match cmd {
        VolumeCmd::Create {
            driver,
            label,
            opt,
            name,
        } => {
            if driver != "local" {
                bail!("volume driver {driver:?} is not available: berth has the local driver only");
            }
            let name = match name {
                Some(n) => n.clone(),
                None => super::lifecycle::new_id()?,
            };
            let mut options = BTreeMap::new();
            for o in opt {
                match o.split_once('=') {
                    Some((k, v)) if !k.is_empty() => {
                        options.insert(k.to_string(), v.to_string());
                    }
                    _ => bail!("invalid --opt {o:?}: want KEY=VALUE"),
                }
            }
            let v = Volume {
                name,
                created_ns: berth_monitor::logfile::now_ns(),
                labels: settings::parse_pairs(label, "label")?,
                options,
                anonymous: false,
            };
            create(store, paths, &v)?;
            print(&format!("{}\n", v.name));
            Ok(0)
        }
        VolumeCmd::Ls {
            quiet,
            filter,
            format,
        } => {
            let conn = store.db.conn();
            let mut rows = Vec::new();
            for v in all(conn)? {
                if filtered(conn, &v, filter)? {
                    rows.push(v);
                }
            }
            if *quiet {
                print(
                    &rows
                        .iter()
                        .map(|v| format!("{}\n", v.name))
                        .collect::<String>(),
                );
                return Ok(0);
            }
            match format.as_deref() {
                Some("json") => {
                    let v: Vec<Value> = rows.iter().map(|v| inspect_value(paths, v)).collect();
                    print(&format!("{}\n", serde_json::to_string_pretty(&v)?));
                }
                None | Some("table") => {
                    let mut table = vec![["DRIVER".to_string(), "VOLUME NAME".to_string()]];
                    for v in &rows {
                        table.push(["local".into(), v.name.clone()]);
                    }
                    print(&super::query::tabulate(&table));
                }
                Some(f) => bail!("unsupported --format {f:?} (want json or table)"),
            }
            Ok(0)
        }
        VolumeCmd::Inspect { volumes } => {
            let mut out = Vec::new();
            for n in volumes {
                let v = get(store.db.conn(), n)?.ok_or_else(|| anyhow!("no such volume: {n}"))?;
                out.push(inspect_value(paths, &v));
            }
            print(&format!("{}\n", serde_json::to_string_pretty(&out)?));
            Ok(0)
        }
        VolumeCmd::Rm { force, volumes } => {
            let mut failed = 0;
            for n in volumes {
                let r = match remove(store, paths, n) {
                    Ok(true) => {
                        print(&format!("{n}\n"));
                        Ok(())
                    }
                    Ok(false) if *force => Ok(()),
                    Ok(false) => Err(anyhow!("no such volume: {n}")),
                    Err(e) => Err(e),
                };
                if let Err(e) = r {
                    // One volume: the command's error (main prints it, exit 125).
                    if volumes.len() == 1 {
                        return Err(e);
                    }
                    eprintln!("Error: {e:#}");
                    failed += 1;
                }
            }
            sweep(paths);
            Ok(if failed > 0 { 1 } else { 0 })
        }
        VolumeCmd::Prune { filter, .. } => {
            let (names, bytes) = prune(store, paths, filter)?;
            if !names.is_empty() {
                print("Deleted Volumes:\n");
                for n in &names {
                    print(&format!("{n}\n"));
                }
                print("\n");
            }
            print(&format!(
                "Total reclaimed space: {}\n",
                super::stats::human_size(bytes)
            ));
            Ok(0)
        }
    }
}
