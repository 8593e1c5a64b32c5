//! Resolving paths inside a root filesystem without ever leaving it.
//!
//! Every lookup goes through openat2(2) with RESOLVE_IN_ROOT, so `..` and absolute symlinks are clamped to
//! the rootfs, and mounts are made onto `/proc/self/fd/<n>` of the resolved descriptor, so a symlink swapped
//! in after the check cannot redirect them (the CVE-2021-30465 class).

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};

use crate::error::Context;
use crate::Result;

/// What to create at a missing final component.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Dir,
    File,
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// The path relative to the root ("" for the root itself), with `.` dropped.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect()
}

/// Opens `path` (absolute, as seen inside the container) within `root`.
pub fn open(root: BorrowedFd, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let rel = relative(path);
    if rel.as_os_str().is_empty() {
        return openat2(root, ".", how(flags));
    }
    openat2(root, &rel, how(flags))
}

/// Makes sure `path` exists inside `root`, creating missing directories (and, for [`Kind::File`], an empty
/// final file), and returns an O_PATH descriptor of it. Nothing outside `root` is ever created or opened.
pub fn ensure(root: BorrowedFd, path: &Path, kind: Kind) -> Result<OwnedFd> {
    ensure_depth(root, path, kind, 0)
}

fn ensure_depth(root: BorrowedFd, path: &Path, kind: Kind, depth: u32) -> Result<OwnedFd> {
    if depth > 40 {
        return Err(Errno::ELOOP).ctx(|| format!("resolving {} in the rootfs", path.display()));
    }
    match open(root, path, OFlag::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e).ctx(|| format!("resolving {} in the rootfs", path.display())),
    }
    let rel = relative(path);
    let mut parent = open(root, Path::new("/"), OFlag::O_PATH | OFlag::O_DIRECTORY)
        .ctx(|| "opening the rootfs".into())?;
    let mut so_far = PathBuf::from("/");
    let comps: Vec<&OsStr> = rel.iter().collect();
    for (i, name) in comps.iter().enumerate() {
        so_far.push(name);
        let last = i + 1 == comps.len();
        let flags = if last && kind == Kind::File {
            OFlag::O_PATH
        } else {
            OFlag::O_PATH | OFlag::O_DIRECTORY
        };
        match open(root, &so_far, flags) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(e).ctx(|| format!("resolving {} in the rootfs", so_far.display()))
            }
        }
        if name.as_bytes() == b".." {
            // `..` of a missing directory: resolve it again now that everything before it exists.
            parent = open(root, &so_far, OFlag::O_PATH | OFlag::O_DIRECTORY)
                .ctx(|| format!("resolving {} in the rootfs", so_far.display()))?;
            continue;
        }
        create_at(parent.as_fd(), name, last && kind == Kind::File)
            .ctx(|| format!("creating {} in the rootfs", so_far.display()))?;
        parent = match open(root, &so_far, flags) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                // A dangling symlink: follow it by hand (still inside the root) and go on from its target.
                let target = nix::fcntl::readlinkat(parent.as_fd(), *name)
                    .ctx(|| format!("reading the symlink {}", so_far.display()))?;
                let mut next = match so_far.parent() {
                    Some(dir) => dir.join(target),
                    None => PathBuf::from(target),
                };
                for rest in &comps[i + 1..] {
                    next.push(rest);
                }
                return ensure_depth(root, &next, kind, depth + 1);
            }
            Err(e) => return Err(e).ctx(|| format!("opening {} in the rootfs", so_far.display())),
        };
    }
    Ok(parent)
}

/// Creates one entry in a directory given by an O_PATH descriptor. mkdirat/openat on a plain name never
/// follow a symlink in the final component (O_EXCL | O_NOFOLLOW for files).
fn create_at(dir: BorrowedFd, name: &OsStr, file: bool) -> nix::Result<()> {
    let r = if file {
        nix::fcntl::openat(
            dir,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_WRONLY,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop)
    } else {
        mkdirat(dir, name, Mode::from_bits_truncate(0o755))
    };
    match r {
        Err(Errno::EEXIST) => Ok(()),
        r => r,
    }
}

/// The magic-link path of a descriptor, to hand to mount(2) and friends.
pub fn proc_fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn rootfs() -> (tempfile::TempDir, OwnedFd) {
        let d = tempfile::tempdir().unwrap();
        let fd =
            nix::fcntl::open(d.path(), OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        (d, fd)
    }

    #[test]
    fn creates_nested_dirs_and_files_inside() {
        let (d, root) = rootfs();
        ensure(root.as_fd(), Path::new("/a/b/c"), Kind::Dir).unwrap();
        assert!(d.path().join("a/b/c").is_dir());
        ensure(root.as_fd(), Path::new("/x/y.conf"), Kind::File).unwrap();
        assert!(d.path().join("x/y.conf").is_file());
    }

    #[test]
    fn absolute_symlink_stays_inside() {
        let (d, root) = rootfs();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), d.path().join("evil")).unwrap();
        ensure(root.as_fd(), Path::new("/evil/sub"), Kind::Dir).unwrap();
        assert!(!outside.path().join("sub").exists(), "escaped the rootfs");
        let inside = d
            .path()
            .join(outside.path().strip_prefix("/").unwrap())
            .join("sub");
        assert!(inside.is_dir(), "{inside:?}");
    }

    #[test]
    fn dotdot_symlink_stays_inside() {
        let (d, root) = rootfs();
        std::fs::create_dir(d.path().join("dir")).unwrap();
        symlink("../../../../../../tmp", d.path().join("dir/up")).unwrap();
        let fd = ensure(root.as_fd(), Path::new("/dir/up/made-here"), Kind::Dir).unwrap();
        assert!(d.path().join("tmp/made-here").is_dir());
        let target = std::fs::read_link(proc_fd_path(&fd)).unwrap();
        assert!(target.starts_with(d.path()), "{target:?}");
    }

    #[test]
    fn dangling_symlink_as_final_file_is_created_inside() {
        let (d, root) = rootfs();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        symlink(&victim, d.path().join("link")).unwrap();
        ensure(root.as_fd(), Path::new("/link"), Kind::File).unwrap();
        assert!(!victim.exists(), "created a file outside the rootfs");
    }
}
