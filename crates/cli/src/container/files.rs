//! `cp`: copying files and directories into and out of a container's root filesystem, or a tar
//! stream of them on stdin/stdout (`-`), with docker's rules for where things land.
//!
//! The root filesystem of a running container is what its init sees (`/proc/<pid>/root`, so its
//! volumes and bind mounts are copied into and out of, as docker does); of a stopped one, the
//! snapshot (`<container dir>/snapshot/merged`) mounted here for the copy (under the container's
//! lock) with its volumes and bind mounts bound over it at their destinations.
//!
//! Security: the container's files are the container's to shape, so nothing in them may lead a
//! copy outside the root filesystem. Every path given inside the container is resolved with
//! openat2(RESOLVE_IN_ROOT) on a descriptor of the root (absolute and `..` symlinks are clamped to
//! it); below that, every entry is reached relative to its directory's descriptor with
//! O_NOFOLLOW, created with O_EXCL, and changed through its own descriptor (fchown, fchmod,
//! futimens) or with AT_SYMLINK_NOFOLLOW, so a symlink swapped in by a running container is
//! refused, never followed. A symlink is copied as a symlink; a final symlink in DEST (and in SRC
//! with `-L`) is followed the way docker does, inside the root.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use berth_runtime::linux::secure_path;
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FileStat, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::lifecycle;
use super::record::{self, Container};
use super::Paths;
use crate::store::Store;

/// Directory depth at which a copy gives up (a loop made by a running container, or an absurd tree).
const MAX_DEPTH: usize = 4096;
/// Symlinks followed while resolving one path.
const MAX_LINKS: usize = 40;

/// `cp`'s options.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpOpts {
    /// `-a`: keep the files' uid/gid (otherwise files copied in are root's, files copied out the
    /// invoking user's).
    pub archive: bool,
    /// `-L`: follow a symlink given as SRC.
    pub follow_link: bool,
}

/// One side of a copy as written on the command line.
#[derive(Debug, PartialEq, Eq)]
enum Arg {
    Stdio,
    Host(String),
    Container { name: String, path: String },
}

/// docker's rule: `-` is a tar stream; a path starting with `/` or `.` is local; otherwise
/// `NAME:PATH` names a container path.
fn parse_arg(s: &str) -> Arg {
    if s == "-" {
        return Arg::Stdio;
    }
    if s.starts_with('/') || s.starts_with('.') {
        return Arg::Host(s.into());
    }
    match s.split_once(':') {
        Some((name, path)) if !name.is_empty() => Arg::Container {
            name: name.into(),
            path: path.into(),
        },
        _ => Arg::Host(s.into()),
    }
}

/// A path with what its spelling says: `dir/.` copies a directory's contents, `dir/` must be a
/// directory.
#[derive(Debug, Clone)]
struct PathArg {
    path: PathBuf,
    contents: bool,
    trailing_slash: bool,
    shown: String,
}

impl PathArg {
    fn new(raw: &str, base: Option<&str>, shown: String) -> Result<PathArg> {
        if raw.is_empty() {
            bail!("empty path in {shown:?}");
        }
        if raw.as_bytes().contains(&0) {
            bail!("invalid path {shown:?}: it contains a NUL byte");
        }
        let contents = raw == "." || raw.ends_with("/.");
        let trailing_slash = raw.ends_with('/') && raw != "/";
        let mut path = PathBuf::from(raw);
        if let Some(b) = base {
            if !path.is_absolute() {
                path = Path::new(b).join(path); // a container path relative to its workdir
            }
        }
        Ok(PathArg {
            path,
            contents,
            trailing_slash,
            shown,
        })
    }

    /// The last name of the path (None for `/`, `..`, `.`).
    fn name(&self) -> Option<&OsStr> {
        if self.contents {
            return None;
        }
        match self.path.components().next_back() {
            Some(Component::Normal(n)) => Some(n),
            _ => None,
        }
    }
}

/// Where paths are looked up: the host as it is, or a root filesystem (confined to it).
#[derive(Clone, Copy)]
enum Side<'a> {
    Host,
    Root(BorrowedFd<'a>),
}

impl Side<'_> {
    fn open(&self, p: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        match self {
            Side::Host => {
                let p = if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                };
                nix::fcntl::open(p, flags | OFlag::O_CLOEXEC, Mode::empty())
            }
            Side::Root(root) => secure_path::open(*root, p, flags),
        }
    }
}

/// An entry found by [`locate`]: its directory, its name there and what is there now.
struct Located {
    dir: OwnedFd,
    name: OsString,
    stat: Option<FileStat>,
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn is_dir(st: &FileStat) -> bool {
    kind(st) == SFlag::S_IFDIR
}

/// Finds the directory and name of `path`, following a final symlink when `follow` (inside the
/// root for a container: the target is looked up again with RESOLVE_IN_ROOT).
fn locate(side: Side, path: &Path, follow: bool, shown: &str) -> Result<Located> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let (Some(parent), Some(Component::Normal(name))) =
            (p.parent(), p.components().next_back())
        else {
            bail!("{shown}: not a file or directory name");
        };
        let dir = side
            .open(parent, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(|e| match e {
                Errno::ENOENT | Errno::ENOTDIR => {
                    anyhow!("{shown}: the directory {} does not exist", parent.display())
                }
                e => anyhow!("{shown}: opening {}: {e}", parent.display()),
            })?;
        let name = name.to_os_string();
        match fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if follow && kind(&st) == SFlag::S_IFLNK => {
                let target = nix::fcntl::readlinkat(&dir, name.as_os_str())
                    .with_context(|| format!("{shown}: reading the symlink {}", p.display()))?;
                p = parent.join(target); // an absolute target replaces the parent
            }
            Ok(st) => {
                return Ok(Located {
                    dir,
                    name,
                    stat: Some(st),
                })
            }
            Err(Errno::ENOENT) => {
                return Ok(Located {
                    dir,
                    name,
                    stat: None,
                })
            }
            Err(e) => bail!("{shown}: {}: {e}", p.display()),
        }
    }
    bail!("{shown}: too many levels of symbolic links")
}

/// What a copy reads.
enum Source {
    /// One entry (file, directory, symlink, ...) in a directory.
    Entry {
        dir: OwnedFd,
        name: OsString,
        stat: FileStat,
    },
    /// The entries of a directory (`dir/.`, `/`).
    Contents { dir: OwnedFd },
}

impl Source {
    fn is_dir(&self) -> bool {
        match self {
            Source::Entry { stat, .. } => is_dir(stat),
            Source::Contents { .. } => true,
        }
    }
}

fn open_source(side: Side, a: &PathArg, follow: bool) -> Result<Source> {
    let shown = &a.shown;
    if a.name().is_none() {
        let dir = side
            .open(&a.path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|e| anyhow!("{shown}: {e}"))?;
        return Ok(Source::Contents { dir });
    }
    let l = locate(side, &a.path, follow || a.trailing_slash, shown)?;
    let stat = l
        .stat
        .ok_or_else(|| anyhow!("{shown}: no such file or directory"))?;
    if a.trailing_slash && !is_dir(&stat) {
        bail!("{shown}: not a directory");
    }
    Ok(Source::Entry {
        dir: l.dir,
        name: l.name,
        stat,
    })
}

/// Where a copy writes: into `dir`, as `name` (None: the source's entries go straight into `dir`).
struct Target {
    dir: OwnedFd,
    name: Option<OsString>,
    /// `dir` is DEST itself (not its parent).
    into_dest: bool,
}

/// docker's rules for DEST: an existing directory receives SRC under SRC's name (or SRC's
/// contents for `SRC/.`); an existing file is replaced by a file; a missing DEST is created (its
/// parent must exist).
fn plan_target(side: Side, a: &PathArg, src: &Source, src_name: Option<&OsStr>) -> Result<Target> {
    let shown = &a.shown;
    let into_dir = |dir: OwnedFd| -> Target {
        match (src, src_name) {
            (Source::Entry { .. }, Some(n)) => Target {
                dir,
                name: Some(n.to_os_string()),
                into_dest: true,
            },
            _ => Target {
                dir,
                name: None,
                into_dest: true,
            },
        }
    };
    if a.name().is_none() {
        let dir = side
            .open(&a.path, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(|e| anyhow!("{shown}: {e}"))?;
        return Ok(into_dir(dir));
    }
    let l = locate(side, &a.path, true, shown)?;
    match &l.stat {
        Some(st) if is_dir(st) => {
            let dir = openat(
                &l.dir,
                l.name.as_os_str(),
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| anyhow!("{shown}: {e}"))?;
            Ok(into_dir(dir))
        }
        Some(_) => {
            if src.is_dir() {
                bail!("cannot copy a directory to {shown}: it is not a directory");
            }
            if a.trailing_slash {
                bail!("{shown}: not a directory");
            }
            Ok(Target {
                dir: l.dir,
                name: Some(l.name),
                into_dest: false,
            })
        }
        None => {
            if a.trailing_slash && !src.is_dir() {
                bail!("{shown}: the destination directory does not exist");
            }
            Ok(Target {
                dir: l.dir,
                name: Some(l.name),
                into_dest: false,
            })
        }
    }
}

/// Whose files the copies become.
#[derive(Debug, Clone, Copy)]
enum Owner {
    /// The source's uid/gid (`-a`).
    Keep,
    /// These.
    Set(u32, u32),
    /// Whoever creates them (this process).
    Leave,
}

/// What is copied of an entry besides its data.
#[derive(Debug, Clone, Copy)]
struct Meta {
    kind: SFlag,
    perm: u32,
    uid: u32,
    gid: u32,
    size: u64,
    atime: TimeSpec,
    mtime: TimeSpec,
    rdev: u64,
}

impl Meta {
    fn of(st: &FileStat) -> Meta {
        Meta {
            kind: kind(st),
            perm: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size.max(0) as u64,
            atime: TimeSpec::new(st.st_atime, st.st_atime_nsec),
            mtime: TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
            rdev: st.st_rdev,
        }
    }

    fn owner(&self, o: Owner) -> Option<(u32, u32)> {
        match o {
            Owner::Keep => Some((self.uid, self.gid)),
            Owner::Set(u, g) => Some((u, g)),
            Owner::Leave => None,
        }
    }
}

// ---- writing entries relative to a directory descriptor -------------------------------------

/// Makes room for `name` in `dir`: nothing there, or a directory kept when `keep_dir` (true is
/// returned); anything else but a directory is removed (never followed).
fn clear(dir: BorrowedFd, name: &OsStr, keep_dir: bool, shown: &Path) -> Result<bool> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => bail!("{}: {e}", shown.display()),
        Ok(st) if is_dir(&st) => {
            if keep_dir {
                Ok(true)
            } else {
                bail!(
                    "cannot overwrite the directory {} with a non-directory",
                    shown.display()
                )
            }
        }
        Ok(_) => {
            unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
                .with_context(|| format!("replacing {}", shown.display()))?;
            Ok(false)
        }
    }
}

/// Owner, mode and times of an entry through its own descriptor (chown before chmod: chown
/// clears set-id bits).
fn apply(fd: BorrowedFd, m: &Meta, owner: Owner, times: bool, shown: &Path) -> Result<()> {
    if let Some((u, g)) = m.owner(owner) {
        fchown(fd, Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))
            .with_context(|| format!("chown {}", shown.display()))?;
    }
    fchmod(fd, Mode::from_bits_truncate(m.perm))
        .with_context(|| format!("chmod {}", shown.display()))?;
    if times {
        futimens(fd, &m.atime, &m.mtime)
            .with_context(|| format!("setting the times of {}", shown.display()))?;
    }
    Ok(())
}

/// Owner and times of an entry that cannot be opened (symlink, device), without following it.
fn apply_nofollow(
    dir: BorrowedFd,
    name: &OsStr,
    m: &Meta,
    owner: Owner,
    shown: &Path,
) -> Result<()> {
    if let Some((u, g)) = m.owner(owner) {
        fchownat(
            dir,
            name,
            Some(Uid::from_raw(u)),
            Some(Gid::from_raw(g)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .with_context(|| format!("chown {}", shown.display()))?;
    }
    utimensat(
        dir,
        name,
        &m.atime,
        &m.mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .with_context(|| format!("setting the times of {}", shown.display()))?;
    Ok(())
}

/// Creates (or keeps) the directory `name` and opens it, never through a symlink.
fn put_dir(dir: BorrowedFd, name: &OsStr, shown: &Path) -> Result<OwnedFd> {
    if !clear(dir, name, true, shown)? {
        mkdirat(dir, name, Mode::from_bits_truncate(0o700))
            .with_context(|| format!("creating {}", shown.display()))?;
    }
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", shown.display()))
}

fn put_file(
    dir: BorrowedFd,
    name: &OsStr,
    m: &Meta,
    data: &mut dyn Read,
    owner: Owner,
    shown: &Path,
) -> Result<()> {
    clear(dir, name, false, shown)?;
    let fd = openat(
        dir,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .with_context(|| format!("creating {}", shown.display()))?;
    let mut f = File::from(fd);
    io::copy(data, &mut f).with_context(|| format!("writing {}", shown.display()))?;
    apply(f.as_fd(), m, owner, true, shown)
}

fn put_symlink(
    dir: BorrowedFd,
    name: &OsStr,
    m: &Meta,
    target: &OsStr,
    owner: Owner,
    shown: &Path,
) -> Result<()> {
    clear(dir, name, false, shown)?;
    symlinkat(target, dir, name)
        .with_context(|| format!("creating the symlink {}", shown.display()))?;
    apply_nofollow(dir, name, m, owner, shown)
}

fn put_special(dir: BorrowedFd, name: &OsStr, m: &Meta, owner: Owner, shown: &Path) -> Result<()> {
    clear(dir, name, false, shown)?;
    // The process umask is 0 during a copy, so the mode is taken as is.
    mknodat(dir, name, m.kind, Mode::from_bits_truncate(m.perm), m.rdev)
        .with_context(|| format!("creating the device or fifo {}", shown.display()))?;
    apply_nofollow(dir, name, m, owner, shown)
}

// ---- a tree walk feeding a sink -----------------------------------------------------------------

/// Where a walked tree goes: files under a directory, or a tar stream.
trait Sink {
    fn dir_begin(&mut self, name: &OsStr, m: &Meta) -> Result<()>;
    fn dir_end(&mut self, m: &Meta) -> Result<()>;
    fn file(&mut self, name: &OsStr, m: &Meta, data: &mut File) -> Result<()>;
    fn symlink(&mut self, name: &OsStr, m: &Meta, target: &OsStr) -> Result<()>;
    fn special(&mut self, name: &OsStr, m: &Meta) -> Result<()>;
}

/// Names in a directory (without `.` and `..`), sorted, read through a fresh descriptor.
fn list(dir: BorrowedFd, shown: &Path) -> Result<Vec<OsString>> {
    let fd = openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", shown.display()))?;
    let mut d =
        nix::dir::Dir::from_fd(fd).with_context(|| format!("reading {}", shown.display()))?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e.with_context(|| format!("reading {}", shown.display()))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Copies the entry `name` of `dir` to the sink as `as_name`.
fn walk(
    dir: BorrowedFd,
    name: &OsStr,
    as_name: &OsStr,
    sink: &mut dyn Sink,
    shown: &Path,
    depth: usize,
) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!(
            "{}: the tree is deeper than {MAX_DEPTH} directories",
            shown.display()
        );
    }
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .with_context(|| format!("{}", shown.display()))?;
    let k = kind(&st);
    if k == SFlag::S_IFDIR {
        let fd = openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening {}", shown.display()))?;
        let m = Meta::of(&fstat(&fd).with_context(|| format!("{}", shown.display()))?);
        sink.dir_begin(as_name, &m)?;
        walk_children(fd.as_fd(), sink, shown, depth + 1)?;
        sink.dir_end(&m)
    } else if k == SFlag::S_IFREG {
        let fd = openat(
            dir,
            name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_NOCTTY
                | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening {}", shown.display()))?;
        let st = fstat(&fd).with_context(|| format!("{}", shown.display()))?;
        if kind(&st) != SFlag::S_IFREG {
            bail!("{} changed while being copied", shown.display());
        }
        sink.file(as_name, &Meta::of(&st), &mut File::from(fd))
    } else if k == SFlag::S_IFLNK {
        let target = nix::fcntl::readlinkat(dir, name)
            .with_context(|| format!("reading the symlink {}", shown.display()))?;
        sink.symlink(as_name, &Meta::of(&st), &target)
    } else if k == SFlag::S_IFIFO || k == SFlag::S_IFCHR || k == SFlag::S_IFBLK {
        sink.special(as_name, &Meta::of(&st))
    } else {
        eprintln!("berth cp: skipping the socket {}", shown.display());
        Ok(())
    }
}

fn walk_children(dir: BorrowedFd, sink: &mut dyn Sink, shown: &Path, depth: usize) -> Result<()> {
    for n in list(dir, shown)? {
        walk(dir, &n, &n, sink, &shown.join(&n), depth)?;
    }
    Ok(())
}

/// Copies a source to a sink (under `as_name` when it is one entry).
fn copy_source(
    src: &Source,
    as_name: Option<&OsStr>,
    sink: &mut dyn Sink,
    shown: &Path,
) -> Result<()> {
    match src {
        Source::Entry { dir, name, .. } => {
            walk(dir.as_fd(), name, as_name.unwrap_or(name), sink, shown, 0)
        }
        Source::Contents { dir } => match as_name {
            // A new directory of that name, with the entries.
            Some(n) => {
                let m = Meta::of(&fstat(dir).with_context(|| format!("{}", shown.display()))?);
                sink.dir_begin(n, &m)?;
                walk_children(dir.as_fd(), sink, shown, 1)?;
                sink.dir_end(&m)
            }
            None => walk_children(dir.as_fd(), sink, shown, 0),
        },
    }
}

/// Writes a walked tree below a directory descriptor.
struct FsSink {
    /// The target directory.
    base: OwnedFd,
    /// The directories being filled below it.
    stack: Vec<OwnedFd>,
    shown: PathBuf,
    owner: Owner,
}

impl FsSink {
    fn cur(&self) -> BorrowedFd<'_> {
        self.stack.last().unwrap_or(&self.base).as_fd()
    }
}

impl Sink for FsSink {
    fn dir_begin(&mut self, name: &OsStr, _m: &Meta) -> Result<()> {
        self.shown.push(name);
        let fd = put_dir(self.cur(), name, &self.shown)?;
        self.stack.push(fd);
        Ok(())
    }

    fn dir_end(&mut self, m: &Meta) -> Result<()> {
        let fd = self
            .stack
            .pop()
            .ok_or_else(|| anyhow!("internal error: unbalanced directories"))?;
        apply(fd.as_fd(), m, self.owner, true, &self.shown)?;
        self.shown.pop();
        Ok(())
    }

    fn file(&mut self, name: &OsStr, m: &Meta, data: &mut File) -> Result<()> {
        let shown = self.shown.join(name);
        put_file(self.cur(), name, m, data, self.owner, &shown)
    }

    fn symlink(&mut self, name: &OsStr, m: &Meta, target: &OsStr) -> Result<()> {
        let shown = self.shown.join(name);
        put_symlink(self.cur(), name, m, target, self.owner, &shown)
    }

    fn special(&mut self, name: &OsStr, m: &Meta) -> Result<()> {
        let shown = self.shown.join(name);
        put_special(self.cur(), name, m, self.owner, &shown)
    }
}

/// Writes a walked tree as a tar stream.
struct TarSink<W: Write> {
    b: tar::Builder<W>,
    prefix: PathBuf,
}

fn header(m: &Meta, t: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(t);
    h.set_mode(m.perm);
    h.set_uid(m.uid.into());
    h.set_gid(m.gid.into());
    h.set_mtime(m.mtime.tv_sec().max(0) as u64);
    h.set_size(0);
    h
}

impl<W: Write> Sink for TarSink<W> {
    fn dir_begin(&mut self, name: &OsStr, m: &Meta) -> Result<()> {
        self.prefix.push(name);
        let mut h = header(m, tar::EntryType::Directory);
        self.b
            .append_data(&mut h, &self.prefix, io::empty())
            .context("writing the tar stream")
    }

    fn dir_end(&mut self, _m: &Meta) -> Result<()> {
        self.prefix.pop();
        Ok(())
    }

    fn file(&mut self, name: &OsStr, m: &Meta, data: &mut File) -> Result<()> {
        let mut h = header(m, tar::EntryType::Regular);
        h.set_size(m.size);
        // Exactly the size in the header, even when the file changes while it is read.
        let r = data.take(m.size).chain(io::repeat(0)).take(m.size);
        self.b
            .append_data(&mut h, self.prefix.join(name), r)
            .context("writing the tar stream")
    }

    fn symlink(&mut self, name: &OsStr, m: &Meta, target: &OsStr) -> Result<()> {
        let mut h = header(m, tar::EntryType::Symlink);
        self.b
            .append_link(&mut h, self.prefix.join(name), target)
            .context("writing the tar stream")
    }

    fn special(&mut self, name: &OsStr, m: &Meta) -> Result<()> {
        let t = if m.kind == SFlag::S_IFIFO {
            tar::EntryType::Fifo
        } else if m.kind == SFlag::S_IFCHR {
            tar::EntryType::Char
        } else {
            tar::EntryType::Block
        };
        let mut h = header(m, t);
        h.set_device_major(nix::sys::stat::major(m.rdev) as u32)?;
        h.set_device_minor(nix::sys::stat::minor(m.rdev) as u32)?;
        self.b
            .append_data(&mut h, self.prefix.join(name), io::empty())
            .context("writing the tar stream")
    }
}

// ---- a tar stream into a root filesystem ----------------------------------------------------------

/// A tar entry's path as a relative path with only normal components (`/` and `.` dropped); `..`
/// is refused.
fn clean_entry_path(p: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                bail!(
                    "refusing the tar entry {}: it climbs out with ..",
                    p.display()
                )
            }
        }
    }
    Ok(out)
}

fn meta_of_header(h: &tar::Header) -> Result<Meta> {
    let t = h.entry_type();
    let kind = match t {
        tar::EntryType::Directory => SFlag::S_IFDIR,
        tar::EntryType::Symlink => SFlag::S_IFLNK,
        tar::EntryType::Fifo => SFlag::S_IFIFO,
        tar::EntryType::Char => SFlag::S_IFCHR,
        tar::EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFREG,
    };
    let mtime = TimeSpec::new(h.mtime().unwrap_or(0) as i64, 0);
    let rdev = match (h.device_major(), h.device_minor()) {
        (Ok(Some(a)), Ok(Some(b))) => nix::sys::stat::makedev(a.into(), b.into()),
        _ => 0,
    };
    Ok(Meta {
        kind,
        perm: h.mode().context("a tar header's mode")? & 0o7777,
        // Empty numeric fields (some writers leave them so) read as root.
        uid: h.uid().unwrap_or(0) as u32,
        gid: h.gid().unwrap_or(0) as u32,
        size: h.size().unwrap_or(0),
        atime: mtime,
        mtime,
        rdev,
    })
}

/// The directory of `full` inside the root (made when missing, inside the root) and the last name.
fn entry_parent(root: BorrowedFd, full: &Path) -> Result<(OwnedFd, OsString)> {
    let (Some(parent), Some(name)) = (full.parent(), full.file_name()) else {
        bail!("{}: not a file name", full.display());
    };
    let dir = match secure_path::open(root, parent, OFlag::O_PATH | OFlag::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => secure_path::ensure(root, parent, secure_path::Kind::Dir)
            .with_context(|| format!("creating {}", parent.display()))?,
        Err(e) => bail!("{}: {e}", parent.display()),
    };
    Ok((dir, name.to_os_string()))
}

/// Unpacks a tar stream into the existing directory `dest` of the root filesystem: every entry's
/// directory is resolved inside the root, so neither `..` nor symlinks (the container's or the
/// stream's own) can place anything outside it.
fn untar_into(
    root: BorrowedFd,
    dest: &Path,
    input: impl Read,
    owner: Owner,
    shown: &str,
) -> Result<()> {
    match secure_path::open(root, dest, OFlag::O_PATH | OFlag::O_DIRECTORY) {
        Ok(_) => {}
        Err(Errno::ENOENT | Errno::ENOTDIR) => {
            bail!(
                "{shown}: the destination must be an existing directory when copying a tar stream"
            )
        }
        Err(e) => bail!("{shown}: {e}"),
    }
    let mut ar = tar::Archive::new(input);
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    for entry in ar.entries().context("reading the tar stream")? {
        let mut e = entry.context("reading the tar stream")?;
        let raw = e.path().context("a tar entry's path")?.into_owned();
        let rel = clean_entry_path(&raw)?;
        if rel.as_os_str().is_empty() {
            continue; // the destination itself
        }
        let full = dest.join(&rel);
        let m = meta_of_header(e.header())?;
        let t = e.header().entry_type();
        let (dir, name) = entry_parent(root, &full)?;
        match t {
            tar::EntryType::Directory => {
                let fd = put_dir(dir.as_fd(), &name, &full)?;
                apply(fd.as_fd(), &m, owner, false, &full)?;
                dirs.push((full, m));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                put_file(dir.as_fd(), &name, &m, &mut e, owner, &full)?;
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name()
                    .context("a symlink's target")?
                    .ok_or_else(|| anyhow!("{}: symlink without a target", raw.display()))?
                    .into_owned();
                put_symlink(dir.as_fd(), &name, &m, target.as_os_str(), owner, &full)?;
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name()
                    .context("a hard link's target")?
                    .ok_or_else(|| anyhow!("{}: hard link without a target", raw.display()))?
                    .into_owned();
                let tfull = dest.join(clean_entry_path(&target)?);
                let (tdir, tname) = entry_parent(root, &tfull)?;
                clear(dir.as_fd(), &name, false, &full)?;
                // No AT_SYMLINK_FOLLOW: a symlink is linked as itself, never followed.
                linkat(
                    tdir.as_fd(),
                    tname.as_os_str(),
                    dir.as_fd(),
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .with_context(|| format!("linking {} to {}", full.display(), tfull.display()))?;
            }
            tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
                put_special(dir.as_fd(), &name, &m, owner, &full)?;
            }
            t => eprintln!(
                "berth cp: skipping the tar entry {} of type {t:?}",
                raw.display()
            ),
        }
    }
    // Directory times last: their entries changed them.
    for (p, m) in dirs.iter().rev() {
        if let Ok(fd) = secure_path::open(
            root,
            p,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
        ) {
            let _ = futimens(fd.as_fd(), &m.atime, &m.mtime);
        }
    }
    Ok(())
}

// ---- the container's root filesystem ------------------------------------------------------------

/// Unmounts a root filesystem mounted for a copy, and the volumes bound into it, last first (the
/// container's lock is held until then).
struct TempMount<'a> {
    paths: &'a Paths,
    id: String,
    volumes: Vec<PathBuf>,
    _lock: nix::fcntl::Flock<File>,
}

impl Drop for TempMount<'_> {
    fn drop(&mut self) {
        for m in self.volumes.iter().rev() {
            let _ = nix::mount::umount2(
                m,
                nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW,
            );
        }
        lifecycle::unmount_rootfs(self.paths, &self.id);
    }
}

/// The bind mounts of a container's config.json (its volumes, `-v` binds, the generated /etc
/// files): (host source, destination, read-only).
fn bind_mounts(paths: &Paths, c: &Container) -> Result<Vec<(PathBuf, PathBuf, bool)>> {
    let data = match std::fs::read(paths.container_dir(&c.id).join("config.json")) {
        Ok(d) => d,
        // Never started: its config (and its mounts) are made at the first start.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading the config.json of {}", c.name)),
    };
    let config: serde_json::Value = serde_json::from_slice(&data)
        .with_context(|| format!("parsing the config.json of {}", c.name))?;
    let mut out = Vec::new();
    for m in config["mounts"].as_array().into_iter().flatten() {
        let opts: Vec<&str> = m["options"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.as_str())
            .collect();
        let is_bind = m["type"] == "bind" || opts.iter().any(|o| *o == "bind" || *o == "rbind");
        if let (true, Some(src), Some(dst)) =
            (is_bind, m["source"].as_str(), m["destination"].as_str())
        {
            out.push((src.into(), dst.into(), opts.contains(&"ro")));
        }
    }
    Ok(out)
}

/// Binds a stopped container's volumes and bind mounts over its root filesystem for a copy, at
/// their destinations resolved inside that root (a destination the image lacks is skipped: the
/// runtime makes it at start). Each host path mounted on is pushed to `done` as soon as it is
/// mounted, so that a failure half-way leaves the caller able to undo what was made.
fn mount_volumes(
    root: BorrowedFd,
    paths: &Paths,
    c: &Container,
    done: &mut Vec<PathBuf>,
) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    for (src, dst, ro) in bind_mounts(paths, c)? {
        if !src.exists() {
            // A file the engine generates at each start (/etc/hostname and the like), not there now.
            continue;
        }
        let target = match secure_path::open(root, &dst, OFlag::O_PATH | OFlag::O_CLOEXEC) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e).with_context(|| format!("resolving {}", dst.display())),
        };
        // The target as a host path (for the remount and the unmount; the container is stopped
        // and locked, so nothing moves it meanwhile) and through its descriptor for the mount.
        let fd_path = format!("/proc/self/fd/{}", target.as_raw_fd());
        let host = std::fs::read_link(&fd_path)
            .with_context(|| format!("locating {} in the root filesystem", dst.display()))?;
        mount(
            Some(&src),
            fd_path.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| {
            format!(
                "binding {} to {} for the copy",
                src.display(),
                dst.display()
            )
        })?;
        done.push(host.clone());
        if ro {
            mount(
                None::<&str>,
                &host,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .with_context(|| format!("making {} read-only for the copy", dst.display()))?;
        }
    }
    Ok(())
}

/// A descriptor of a container's root filesystem (field order: the descriptor is closed before
/// a temporary mount is undone).
struct Rootfs<'a> {
    fd: OwnedFd,
    _mount: Option<TempMount<'a>>,
}

fn open_merged(paths: &Paths, c: &Container) -> Result<OwnedFd> {
    let merged = paths.container_dir(&c.id).join("snapshot/merged");
    nix::fcntl::open(
        &merged,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| {
        format!(
            "opening the root filesystem of {} ({})",
            c.name,
            merged.display()
        )
    })
}

/// A running container's root as its own processes see it, volumes and bind mounts included:
/// `/proc/<init>/root`, walked from there in the container's mount namespace. `None` when the
/// init is gone (or its pid was reused: the start time must still match).
fn open_live_root(c: &Container) -> Option<OwnedFd> {
    let pid = c.live_pid()?;
    let fd = nix::fcntl::open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let start = berth_runtime::state::proc_stat(pid).map(|(s, _)| s)?;
    (Some(start) == c.pid_start).then_some(fd)
}

/// The running container's root: its live view, else the snapshot's mount.
fn open_running(paths: &Paths, c: &Container) -> Result<OwnedFd> {
    match open_live_root(c) {
        Some(fd) => Ok(fd),
        None => open_merged(paths, c),
    }
}

fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

fn rootfs_in_use(paths: &Paths, c: &Container) -> bool {
    let merged = paths.container_dir(&c.id).join("snapshot/merged");
    is_mountpoint(&merged) || std::fs::read_dir(&merged).is_ok_and(|mut d| d.next().is_some())
}

/// The container's root filesystem: the running container's, or mounted for the copy.
fn open_rootfs<'a>(
    store: &Store,
    paths: &'a Paths,
    c: &Container,
    write: bool,
) -> Result<Rootfs<'a>> {
    if write && c.settings.read_only {
        bail!(
            "container {} has a read-only root filesystem: cannot copy into it",
            c.name
        );
    }
    if c.status().is_running() && rootfs_in_use(paths, c) {
        return Ok(Rootfs {
            fd: open_running(paths, c)?,
            _mount: None,
        });
    }
    let lock = lifecycle::lock(paths, &c.id)?;
    let c = record::get(store.db.conn(), &c.id)?
        .ok_or_else(|| anyhow!("no such container: {}", c.name))?;
    if c.status().is_running() {
        // Started meanwhile: its own mount serves (the lock is not needed for that).
        drop(lock);
        return Ok(Rootfs {
            fd: open_running(paths, &c)?,
            _mount: None,
        });
    }
    lifecycle::mount_rootfs(store, paths, &c)?;
    let mut guard = TempMount {
        paths,
        id: c.id.clone(),
        volumes: Vec::new(),
        _lock: lock,
    };
    let fd = open_merged(paths, &c)?;
    mount_volumes(fd.as_fd(), paths, &c, &mut guard.volumes)?;
    Ok(Rootfs {
        fd,
        _mount: Some(guard),
    })
}

// ---- the command ----------------------------------------------------------------------------------

/// `cp [-a] [-L] SRC DST`.
pub fn cp(store: &Store, paths: &Paths, src: &str, dst: &str, o: CpOpts) -> Result<()> {
    // Modes are set explicitly; the umask must not trim what mknodat is given.
    let old_umask = nix::sys::stat::umask(Mode::empty());
    let r = cp_inner(store, paths, src, dst, o);
    nix::sys::stat::umask(old_umask);
    r
}

fn cp_inner(store: &Store, paths: &Paths, src: &str, dst: &str, o: CpOpts) -> Result<()> {
    let container_arg = |name: &str, path: &str, shown: &str| -> Result<(Container, PathArg)> {
        let c = record::resolve(store.db.conn(), name)?;
        let base = if c.settings.workdir.is_empty() {
            "/".to_string()
        } else {
            c.settings.workdir.clone()
        };
        let p = PathArg::new(path, Some(&base), shown.to_string())?;
        Ok((c, p))
    };
    match (parse_arg(src), parse_arg(dst)) {
        (Arg::Container { .. }, Arg::Container { .. }) => {
            bail!("copying between containers is not supported: copy to the host first")
        }
        (Arg::Stdio, Arg::Stdio)
        | (Arg::Stdio, Arg::Host(_))
        | (Arg::Host(_), Arg::Stdio)
        | (Arg::Host(_), Arg::Host(_)) => {
            bail!("one of SRC and DST must be CONTAINER:PATH")
        }
        (Arg::Container { name, path }, Arg::Stdio) => {
            let (c, sp) = container_arg(&name, &path, src)?;
            let rootfs = open_rootfs(store, paths, &c, false)?;
            let source = open_source(Side::Root(rootfs.fd.as_fd()), &sp, o.follow_link)?;
            let as_name = sp.name().map(OsStr::to_os_string);
            let mut sink = TarSink {
                b: tar::Builder::new(io::BufWriter::new(io::stdout().lock())),
                prefix: PathBuf::new(),
            };
            copy_source(&source, as_name.as_deref(), &mut sink, &sp.path)?;
            let mut w = sink.b.into_inner().context("finishing the tar stream")?;
            w.flush().context("writing the tar stream")?;
            Ok(())
        }
        (Arg::Stdio, Arg::Container { name, path }) => {
            let (c, dp) = container_arg(&name, &path, dst)?;
            let rootfs = open_rootfs(store, paths, &c, true)?;
            let owner = if o.archive {
                Owner::Keep
            } else {
                Owner::Set(0, 0)
            };
            untar_into(rootfs.fd.as_fd(), &dp.path, io::stdin().lock(), owner, dst)
        }
        (Arg::Host(h), Arg::Container { name, path }) => {
            let (c, dp) = container_arg(&name, &path, dst)?;
            let sp = PathArg::new(&h, None, src.to_string())?;
            let source = open_source(Side::Host, &sp, o.follow_link)?;
            let rootfs = open_rootfs(store, paths, &c, true)?;
            let target = plan_target(Side::Root(rootfs.fd.as_fd()), &dp, &source, sp.name())?;
            let owner = if o.archive {
                Owner::Keep
            } else {
                Owner::Set(0, 0)
            };
            write_tree(&source, target, owner, &dp.path)
        }
        (Arg::Container { name, path }, Arg::Host(h)) => {
            let (c, sp) = container_arg(&name, &path, src)?;
            let dp = PathArg::new(&h, None, dst.to_string())?;
            let rootfs = open_rootfs(store, paths, &c, false)?;
            let source = open_source(Side::Root(rootfs.fd.as_fd()), &sp, o.follow_link)?;
            let target = plan_target(Side::Host, &dp, &source, sp.name())?;
            let owner = if o.archive { Owner::Keep } else { Owner::Leave };
            write_tree(&source, target, owner, &dp.path)
        }
    }
}

/// A new volume's "copy-up" (docker's): the contents of the directory `path` of a root
/// filesystem are copied into the host directory `dest` (the volume's empty data dir), owners,
/// modes and times kept, and `dest` takes the owner and mode of `path`. `path` is resolved inside
/// the root (RESOLVE_IN_ROOT) and nothing below it is followed, as for `cp`. False when `path` is
/// not a directory of the image (nothing to copy).
pub(crate) fn copy_up(root: BorrowedFd, path: &Path, dest: &Path) -> Result<bool> {
    let src = match secure_path::open(root, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(false),
        Err(e) => bail!("{}: {e}", path.display()),
    };
    let base = nix::fcntl::open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", dest.display()))?;
    let top = Meta::of(&fstat(&src).with_context(|| format!("{}", path.display()))?);
    // Modes are set explicitly; the umask must not trim what mknodat is given.
    let old_umask = nix::sys::stat::umask(Mode::empty());
    let r = (|| {
        let mut sink = FsSink {
            base,
            stack: Vec::new(),
            shown: dest.to_path_buf(),
            owner: Owner::Keep,
        };
        copy_source(&Source::Contents { dir: src }, None, &mut sink, path)?;
        apply(sink.base.as_fd(), &top, Owner::Keep, false, dest)
    })();
    nix::sys::stat::umask(old_umask);
    r.map(|()| true)
}

fn write_tree(source: &Source, target: Target, owner: Owner, shown: &Path) -> Result<()> {
    let Target {
        dir,
        name,
        into_dest,
    } = target;
    let mut sink = FsSink {
        base: dir,
        stack: Vec::new(),
        // Messages name the destination as given, entries below it appended.
        shown: if into_dest {
            shown.to_path_buf()
        } else {
            shown.parent().map(Path::to_path_buf).unwrap_or_default()
        },
        owner,
    };
    copy_source(source, name.as_deref(), &mut sink, shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn root_fd(p: &Path) -> OwnedFd {
        nix::fcntl::open(p, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap()
    }

    fn arg(p: &str, base: Option<&str>) -> PathArg {
        PathArg::new(p, base, p.to_string()).unwrap()
    }

    fn copy_in(host_src: &Path, root: &Path, dest: &str) -> Result<()> {
        let fd = root_fd(root);
        let sp = arg(host_src.to_str().unwrap(), None);
        let source = open_source(Side::Host, &sp, false)?;
        let dp = arg(dest, Some("/"));
        let t = plan_target(Side::Root(fd.as_fd()), &dp, &source, sp.name())?;
        write_tree(&source, t, Owner::Set(0, 0), &dp.path)
    }

    fn copy_out(root: &Path, src: &str, host_dst: &Path, follow: bool) -> Result<()> {
        let fd = root_fd(root);
        let sp = arg(src, Some("/"));
        let source = open_source(Side::Root(fd.as_fd()), &sp, follow)?;
        let dp = arg(host_dst.to_str().unwrap(), None);
        let t = plan_target(Side::Host, &dp, &source, sp.name())?;
        write_tree(&source, t, Owner::Leave, &dp.path)
    }

    #[test]
    fn args_are_parsed_like_docker() {
        assert_eq!(parse_arg("-"), Arg::Stdio);
        assert_eq!(parse_arg("./a:b"), Arg::Host("./a:b".into()));
        assert_eq!(parse_arg("/x:y"), Arg::Host("/x:y".into()));
        assert_eq!(
            parse_arg("web:/etc/hosts"),
            Arg::Container {
                name: "web".into(),
                path: "/etc/hosts".into()
            }
        );
        assert!(arg("/a/.", None).contents);
        assert!(arg("/a/", None).trailing_slash);
        assert_eq!(arg("rel", Some("/w")).path, Path::new("/w/rel"));
    }

    #[test]
    fn files_dirs_symlinks_modes_and_times_round_trip() {
        let host = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let src = host.path().join("tree");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), b"hello").unwrap();
        std::fs::set_permissions(src.join("sub/f"), std::fs::Permissions::from_mode(0o751))
            .unwrap();
        symlink("/nowhere", src.join("link")).unwrap();
        File::options()
            .write(true)
            .open(src.join("sub/f"))
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
            .unwrap();
        copy_in(&src, root.path(), "/").unwrap();
        let f = root.path().join("tree/sub/f");
        assert_eq!(std::fs::read(&f).unwrap(), b"hello");
        let md = std::fs::metadata(&f).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o751);
        assert_eq!(md.mtime(), 1_000_000_000);
        assert_eq!(
            std::fs::read_link(root.path().join("tree/link")).unwrap(),
            Path::new("/nowhere")
        );
        // And back out, into a new name.
        let back = host.path().join("back");
        copy_out(root.path(), "/tree", &back, false).unwrap();
        assert_eq!(std::fs::read(back.join("sub/f")).unwrap(), b"hello");
        // Contents mode into an existing directory.
        let into = host.path().join("into");
        std::fs::create_dir(&into).unwrap();
        copy_out(root.path(), "/tree/.", &into, false).unwrap();
        assert!(into.join("sub/f").is_file());
    }

    #[test]
    fn hostile_symlinks_stay_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        let canary_dir = host.path().join("canary");
        std::fs::create_dir(&canary_dir).unwrap();
        let canary = canary_dir.join("secret");
        std::fs::write(&canary, b"host secret").unwrap();
        let root = tempfile::tempdir().unwrap();
        symlink("/", root.path().join("slash")).unwrap();
        symlink("../../../../../../../../..", root.path().join("up")).unwrap();
        symlink(&canary, root.path().join("direct")).unwrap();
        let rel = canary
            .strip_prefix("/")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();

        // Reading through them finds nothing (the path does not exist inside the root).
        let out = host.path().join("out");
        for p in [format!("/slash/{rel}"), format!("/up/{rel}")] {
            assert!(copy_out(root.path(), &p, &out, false).is_err(), "{p}");
            assert!(!out.exists());
        }
        assert!(copy_out(root.path(), "/direct", &out, true).is_err());
        assert!(!out.exists());
        // Without -L the symlink itself is copied.
        copy_out(root.path(), "/direct", &out, false).unwrap();
        assert_eq!(std::fs::read_link(&out).unwrap(), canary);

        // Writing through them lands inside the root, never on the canary.
        let inside = root.path().join(&rel);
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        let evil = host.path().join("evil");
        std::fs::write(&evil, b"overwritten").unwrap();
        for p in [
            format!("/slash/{rel}"),
            format!("/up/{rel}"),
            "/direct".to_string(),
        ] {
            copy_in(&evil, root.path(), &p).unwrap();
            assert_eq!(std::fs::read(&canary).unwrap(), b"host secret", "{p}");
            assert_eq!(std::fs::read(&inside).unwrap(), b"overwritten", "{p}");
            std::fs::remove_file(&inside).unwrap();
        }
        assert_eq!(std::fs::read_dir(&canary_dir).unwrap().count(), 1);
    }

    #[test]
    fn copy_up_keeps_metadata_and_stays_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        let canary = host.path().join("canary");
        std::fs::create_dir(&canary).unwrap();
        std::fs::write(canary.join("secret"), b"host secret").unwrap();
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("sub/f"), b"image file").unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o1750)).unwrap();
        std::os::unix::fs::chown(&data, Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::chown(data.join("sub/f"), Some(42), Some(43)).unwrap();
        symlink(&canary, data.join("out")).unwrap();
        // Volume paths that are symlinks out of the root resolve inside it.
        symlink(&canary, root.path().join("abs")).unwrap();
        symlink("../../../../../../..", root.path().join("up")).unwrap();
        let fd = root_fd(root.path());

        let vol = host.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        assert!(copy_up(fd.as_fd(), Path::new("/data"), &vol).unwrap());
        assert_eq!(std::fs::read(vol.join("sub/f")).unwrap(), b"image file");
        let f = std::fs::metadata(vol.join("sub/f")).unwrap();
        assert_eq!((f.uid(), f.gid()), (42, 43));
        let d = std::fs::metadata(&vol).unwrap();
        assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o1750, 1234, 5678));
        assert_eq!(std::fs::read_link(vol.join("out")).unwrap(), canary);

        for p in ["/abs", "/up/canary", "/missing", "/data/sub/f"] {
            let empty = tempfile::tempdir().unwrap();
            assert!(
                !copy_up(fd.as_fd(), Path::new(p), empty.path()).unwrap(),
                "{p}"
            );
            assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0, "{p}");
        }
    }

    #[test]
    fn tar_streams_cannot_climb_out() {
        let host = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let fd = root_fd(root.path());
        // A symlink to the host directory, then a file through it.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "evil", host.path()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "evil/pwned", &b"abc"[..]).unwrap();
        let data = b.into_inner().unwrap();
        untar_into(fd.as_fd(), Path::new("/"), &data[..], Owner::Set(0, 0), "t").unwrap();
        assert!(!host.path().join("pwned").exists());
        let inside = root
            .path()
            .join(host.path().strip_prefix("/").unwrap())
            .join("pwned");
        assert_eq!(std::fs::read(inside).unwrap(), b"abc");

        // `..` in a name is refused.
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..10].copy_from_slice(b"../escaped");
        h.set_size(0);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(&[0u8; 1024]);
        let err =
            untar_into(fd.as_fd(), Path::new("/"), &data[..], Owner::Set(0, 0), "t").unwrap_err();
        assert!(err.to_string().contains(".."), "{err}");
    }
}
