//! Unpack one layer tar stream into a directory, in one streaming pass, ready for overlayfs
//! stacking.
//!
//! - Decompression (gzip, zstd or none) is chosen by the caller or sniffed from magic bytes.
//! - OCI whiteouts become overlay whiteouts: `.wh.<name>` is a 0/0 character device `<name>`,
//!   `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory. Other `.wh..wh.*` (aufs
//!   metadata) are skipped.
//! - Every path is resolved inside the layer directory: `..` that would leave it is refused,
//!   absolute paths are taken relative to it, and parent directories are opened with
//!   `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so symlinks (absolute or `..`) resolve
//!   as if the layer directory were `/`. The last component is never followed: existing entries
//!   are replaced, files are created `O_EXCL | O_NOFOLLOW`, hard links use `linkat` without
//!   `AT_SYMLINK_FOLLOW` from a target resolved the same way.
//! - `trusted.overlay.*` xattrs from the tar are dropped (a layer must not forge overlay
//!   metadata); other `SCHILY.xattr.*` PAX records are applied.
//! - The total of decompressed bytes and of file bytes written are bounded by
//!   [`UnpackOptions::max_bytes`].
//!
//! On error the directory holds partial content; the caller discards it.

use std::cell::Cell;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode,
    SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::formats::Compression;

/// How to unpack a layer.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// The blob's compression; `None` sniffs it from the first bytes.
    pub compression: Option<Compression>,
    /// If set, the digest the (compressed) blob must have.
    pub expected_digest: Option<Digest>,
    /// If set, the DiffID (digest of the uncompressed tar) the layer must have.
    pub expected_diff_id: Option<Digest>,
    /// Bound on decompressed bytes and on file bytes written (decompression bombs).
    pub max_bytes: u64,
    /// Apply the tar's uid/gid (needs root); otherwise files belong to the caller.
    pub preserve_ownership: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            compression: None,
            expected_digest: None,
            expected_diff_id: None,
            max_bytes: 32 << 30,
            preserve_ownership: true,
        }
    }
}

/// What unpacking measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// sha256 of the blob as read (compressed).
    pub digest: Digest,
    /// Bytes of the blob as read.
    pub compressed_size: u64,
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    /// The compression that was used.
    pub compression: Compression,
}

/// Guess a blob's compression from its first bytes; xz, bzip2 and lz4 are clear errors.
pub fn sniff_compression(head: &[u8]) -> Result<Compression> {
    let unsupported = |name: &str| Error::Invalid {
        what: "layer".into(),
        reason: format!("{name} compression is not supported"),
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Compression::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Compression::Zstd)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Err(unsupported("xz"))
    } else if head.starts_with(b"BZh") {
        Err(unsupported("bzip2"))
    } else if head.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
        Err(unsupported("lz4"))
    } else {
        Ok(Compression::None)
    }
}

enum Decoder<R: BufRead> {
    Plain(R),
    Gzip(Box<flate2::bufread::MultiGzDecoder<R>>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> Decoder<R> {
    fn into_inner(self) -> R {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => d.finish(),
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

/// Hashes the uncompressed stream and trips when it passes the limit.
struct Limited<R> {
    inner: HashingReader<R>,
    limit: u64,
    tripped: Rc<Cell<bool>>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.inner.count() > self.limit {
            self.tripped.set(true);
            return Err(io::Error::other("unpack size limit exceeded"));
        }
        Ok(n)
    }
}

/// Unpack the layer blob read from `blob` into the existing directory `dest`.
pub fn unpack_layer(blob: impl Read, dest: &Path, opts: &UnpackOptions) -> Result<Unpacked> {
    let root: OwnedFd = nix::fcntl::open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open layer dir {}", dest.display()))?;
    let mut buffered = BufReader::with_capacity(1 << 16, HashingReader::new(blob));
    let compression = match opts.compression {
        Some(c) => c,
        None => sniff_compression(buffered.fill_buf().ctx(|| "read layer".into())?)?,
    };
    let decoder = match compression {
        Compression::None => Decoder::Plain(buffered),
        Compression::Gzip => {
            Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(buffered)))
        }
        Compression::Zstd => Decoder::Zstd(
            zstd::stream::read::Decoder::with_buffer(buffered).ctx(|| "start zstd".into())?,
        ),
    };
    let tripped = Rc::new(Cell::new(false));
    let limited = Limited {
        inner: HashingReader::new(decoder),
        limit: opts.max_bytes,
        tripped: tripped.clone(),
    };
    let limit_err = |e: Error| {
        if tripped.get() {
            Error::SizeLimit(opts.max_bytes)
        } else {
            e
        }
    };
    let mut archive = tar::Archive::new(limited);
    let mut ctx = Ctx {
        root: root.as_fd(),
        opts,
        written: 0,
        dir_times: Vec::new(),
    };
    let entries = archive
        .entries()
        .ctx(|| "read layer tar".into())
        .map_err(limit_err)?;
    for entry in entries {
        let mut entry = entry.ctx(|| "read layer tar".into()).map_err(limit_err)?;
        ctx.entry(&mut entry).map_err(limit_err)?;
    }
    ctx.finish_dirs()?;
    let mut limited = archive.into_inner();
    io::copy(&mut limited, &mut io::sink())
        .ctx(|| "read layer tail".into())
        .map_err(limit_err)?;
    let (diff_id, uncompressed_size, decoder) =
        limited.inner.finish().ctx(|| "read layer tail".into())?;
    let (digest, compressed_size, _) = decoder
        .into_inner()
        .into_inner()
        .finish()
        .ctx(|| "read layer tail".into())?;
    for (expected, actual) in [
        (&opts.expected_digest, &digest),
        (&opts.expected_diff_id, &diff_id),
    ] {
        if let Some(expected) = expected {
            if expected != actual {
                return Err(Error::DigestMismatch {
                    expected: expected.clone(),
                    actual: actual.clone(),
                });
            }
        }
    }
    Ok(Unpacked {
        diff_id,
        digest,
        compressed_size,
        uncompressed_size,
        compression,
    })
}

/// Clean a tar path into components inside the root: `/` and `.` dropped, `..` popped, and a
/// `..` that would leave the root refused.
fn clean_path(path: &Path) -> std::result::Result<Vec<OsString>, String> {
    let mut out: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err("path escapes the layer root".into());
                }
            }
            Component::Normal(s) => out.push(s.to_owned()),
        }
    }
    Ok(out)
}

/// Open the directory `comps` with the layer dir as `/` (symlinks cannot leave it).
fn open_in_root(root: BorrowedFd<'_>, comps: &[OsString]) -> nix::Result<OwnedFd> {
    let path: PathBuf = if comps.is_empty() {
        PathBuf::from(".")
    } else {
        comps.iter().collect()
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, &path, how)
}

/// Open (creating missing ones, mode 0755) the directory `comps` inside the layer.
fn ensure_dir(root: BorrowedFd<'_>, comps: &[OsString]) -> nix::Result<OwnedFd> {
    match open_in_root(root, comps) {
        Err(Errno::ENOENT) if !comps.is_empty() => {
            let (last, parent) = comps.split_last().ok_or(Errno::ENOENT)?;
            let pfd = ensure_dir(root, parent)?;
            match mkdirat(&pfd, last.as_os_str(), Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
            open_in_root(root, comps)
        }
        other => other,
    }
}

/// Remove `name` under `dir` (recursively for directories), never following symlinks.
fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return unlinkat(dir, name, UnlinkatFlags::NoRemoveDir);
    }
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_owned());
        }
    }
    for n in names {
        remove_all_at(d.as_fd(), &n)?;
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

/// Set an xattr on `name` under `dir` (or on `dir` itself), not following a final symlink.
fn set_xattr_at(
    dir: BorrowedFd<'_>,
    name: Option<&OsStr>,
    key: &str,
    value: &[u8],
) -> io::Result<()> {
    let mut path = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    if let Some(n) = name {
        path.push(b'/');
        path.extend_from_slice(n.as_bytes());
    }
    let path = CString::new(path).map_err(io::Error::other)?;
    let key = CString::new(key).map_err(io::Error::other)?;
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe {
        let f = if name.is_some() {
            libc::lsetxattr
        } else {
            libc::setxattr
        };
        f(
            path.as_ptr(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

struct Ctx<'a> {
    root: BorrowedFd<'a>,
    opts: &'a UnpackOptions,
    written: u64,
    dir_times: Vec<(Vec<OsString>, i64)>,
}

/// Counts file bytes written against the limit.
struct CountingFile<'a> {
    file: File,
    written: &'a mut u64,
    limit: u64,
}

impl Write for CountingFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        *self.written += buf.len() as u64;
        if *self.written > self.limit {
            return Err(io::Error::other("file bytes over the unpack limit"));
        }
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Ctx<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let fail = |reason: String| Error::Entry {
            path: shown.clone(),
            reason,
        };
        let path = entry.path().map_err(|e| fail(e.to_string()))?.into_owned();
        let comps = clean_path(&path).map_err(&fail)?;
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            return Ok(());
        }
        let Some((name, parent)) = comps.split_last() else {
            return if kind.is_dir() {
                self.metadata_root(entry).map_err(|e| fail(e.to_string()))
            } else {
                Err(fail("non-directory entry for the layer root".into()))
            };
        };
        let name_bytes = name.as_bytes();
        let pfd = ensure_dir(self.root, parent)
            .map_err(|e| fail(format!("cannot open parent directory: {e}")))?;
        if let Some(rest) = name_bytes.strip_prefix(b".wh.") {
            if rest == b".wh..opq" {
                return set_xattr_at(pfd.as_fd(), None, "trusted.overlay.opaque", b"y")
                    .map_err(|e| fail(format!("set opaque xattr: {e}")));
            }
            if rest.starts_with(b".wh.") {
                return Ok(()); // aufs metadata, meaningless to overlayfs
            }
            if rest.is_empty() || rest == b"." || rest == b".." {
                return Err(fail("invalid whiteout name".into()));
            }
            let target = OsStr::from_bytes(rest);
            self.clear(pfd.as_fd(), target, false)
                .map_err(|e| fail(e.to_string()))?;
            return mknodat(&pfd, target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .map_err(|e| fail(format!("create whiteout: {e}")));
        }
        self.create(entry, pfd.as_fd(), name, &comps)
            .map_err(|e| match e {
                Error::Io { context, source } => fail(format!("{context}: {source}")),
                other => other,
            })
    }

    /// Remove whatever is at `name` (keeping a directory when `keep_dir`).
    fn clear(&self, dir: BorrowedFd<'_>, name: &OsStr, keep_dir: bool) -> Result<bool> {
        match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(e).ctx(|| "stat existing entry".into()),
            Ok(st) => {
                let is_dir =
                    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
                if keep_dir && is_dir {
                    return Ok(true);
                }
                remove_all_at(dir, name).ctx(|| "replace existing entry".into())?;
                Ok(false)
            }
        }
    }

    fn create<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        pfd: BorrowedFd<'_>,
        name: &OsStr,
        comps: &[OsString],
    ) -> Result<()> {
        use tar::EntryType as T;
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = Mode::from_bits_truncate(header.mode().ctx(|| "mode".into())? & 0o7777);
        let mtime = header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64;
        let owner = if self.opts.preserve_ownership {
            let uid = u32::try_from(header.uid().ctx(|| "uid".into())?).ok();
            let gid = u32::try_from(header.gid().ctx(|| "gid".into())?).ok();
            match (uid, gid) {
                (Some(u), Some(g)) => Some((Uid::from_raw(u), Gid::from_raw(g))),
                _ => {
                    return Err(crate::error::invalid("entry", "uid/gid out of range"));
                }
            }
        } else {
            None
        };
        let xattrs = self.xattrs(entry)?;
        let ts = TimeSpec::new(mtime, 0);
        let chown_at = |o: Option<(Uid, Gid)>| -> Result<()> {
            match o {
                Some((u, g)) => fchownat(pfd, name, Some(u), Some(g), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .ctx(|| "chown".into()),
                None => Ok(()),
            }
        };
        let set_xattrs = |xs: &[(String, Vec<u8>)]| -> Result<()> {
            for (k, v) in xs {
                set_xattr_at(pfd, Some(name), k, v).ctx(|| format!("set xattr {k}"))?;
            }
            Ok(())
        };
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                self.clear(pfd, name, false)?;
                let fd = openat(
                    pfd,
                    name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .ctx(|| "create file".into())?;
                let mut out = CountingFile {
                    file: File::from(fd),
                    written: &mut self.written,
                    limit: self.opts.max_bytes,
                };
                if let Err(e) = io::copy(entry, &mut out) {
                    if *out.written > out.limit {
                        return Err(Error::SizeLimit(self.opts.max_bytes));
                    }
                    return Err(e).ctx(|| "write file".into());
                }
                let file = out.file;
                if let Some((u, g)) = owner {
                    fchown(&file, Some(u), Some(g)).ctx(|| "chown".into())?;
                }
                fchmod(&file, mode).ctx(|| "chmod".into())?;
                set_xattrs(&xattrs)?;
                futimens(&file, &ts, &ts).ctx(|| "set mtime".into())?;
            }
            T::Directory => {
                if !self.clear(pfd, name, true)? {
                    mkdirat(pfd, name, Mode::from_bits_truncate(0o700)).ctx(|| "mkdir".into())?;
                }
                chown_at(owner)?;
                fchmodat(pfd, name, mode, FchmodatFlags::FollowSymlink).ctx(|| "chmod".into())?;
                set_xattrs(&xattrs)?;
                self.dir_times.push((comps.to_vec(), mtime));
            }
            T::Symlink => {
                let target = entry
                    .link_name()
                    .ctx(|| "symlink target".into())?
                    .ok_or_else(|| crate::error::invalid("symlink", "no target"))?;
                self.clear(pfd, name, false)?;
                symlinkat(target.as_ref(), pfd, name).ctx(|| "symlink".into())?;
                chown_at(owner)?;
                set_xattrs(&xattrs)?;
                utimensat(pfd, name, &ts, &ts, UtimensatFlags::NoFollowSymlink)
                    .ctx(|| "set mtime".into())?;
            }
            T::Link => {
                let target = entry
                    .link_name()
                    .ctx(|| "hard link target".into())?
                    .ok_or_else(|| crate::error::invalid("hard link", "no target"))?;
                let tcomps = clean_path(&target)
                    .map_err(|r| crate::error::invalid("hard link target", r))?;
                let (tname, tparent) = tcomps
                    .split_last()
                    .ok_or_else(|| crate::error::invalid("hard link", "target is the root"))?;
                let tfd =
                    open_in_root(self.root, tparent).ctx(|| "open hard link target".into())?;
                if tcomps == comps {
                    return Ok(());
                }
                self.clear(pfd, name, false)?;
                linkat(&tfd, tname.as_os_str(), pfd, name, AtFlags::empty())
                    .ctx(|| format!("hard link to {}", target.display()))?;
            }
            T::Char | T::Block | T::Fifo => {
                let (sflag, dev) = match kind {
                    T::Char => (SFlag::S_IFCHR, Self::dev(&header)?),
                    T::Block => (SFlag::S_IFBLK, Self::dev(&header)?),
                    _ => (SFlag::S_IFIFO, 0),
                };
                self.clear(pfd, name, false)?;
                mknodat(pfd, name, sflag, Mode::from_bits_truncate(0o600), dev)
                    .ctx(|| "mknod".into())?;
                chown_at(owner)?;
                fchmodat(pfd, name, mode, FchmodatFlags::FollowSymlink).ctx(|| "chmod".into())?;
                set_xattrs(&xattrs)?;
                utimensat(pfd, name, &ts, &ts, UtimensatFlags::NoFollowSymlink)
                    .ctx(|| "set mtime".into())?;
            }
            other => {
                return Err(crate::error::invalid(
                    "entry",
                    format!("unsupported tar entry type {other:?}"),
                ))
            }
        }
        Ok(())
    }

    fn dev(header: &tar::Header) -> Result<nix::libc::dev_t> {
        let major = header.device_major().ctx(|| "device major".into())?;
        let minor = header.device_minor().ctx(|| "device minor".into())?;
        Ok(makedev(
            u64::from(major.unwrap_or(0)),
            u64::from(minor.unwrap_or(0)),
        ))
    }

    /// `SCHILY.xattr.*` PAX records, minus `trusted.overlay.*`.
    fn xattrs<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        if let Some(exts) = entry.pax_extensions().ctx(|| "read PAX records".into())? {
            for ext in exts {
                let ext = ext.ctx(|| "read PAX record".into())?;
                let Ok(key) = ext.key() else { continue };
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    if !name.starts_with("trusted.overlay.") {
                        out.push((name.to_owned(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// A directory entry for the layer root itself: apply its ownership and mode.
    fn metadata_root<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let header = entry.header();
        let mode = Mode::from_bits_truncate(header.mode().ctx(|| "mode".into())? & 0o7777);
        if self.opts.preserve_ownership {
            let uid = u32::try_from(header.uid().ctx(|| "uid".into())?)
                .map_err(|_| crate::error::invalid("entry", "uid out of range"))?;
            let gid = u32::try_from(header.gid().ctx(|| "gid".into())?)
                .map_err(|_| crate::error::invalid("entry", "gid out of range"))?;
            fchown(
                self.root,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            )
            .ctx(|| "chown layer root".into())?;
        }
        fchmod(self.root, mode).ctx(|| "chmod layer root".into())?;
        let mtime = header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64;
        self.dir_times.push((Vec::new(), mtime));
        Ok(())
    }

    /// Directory mtimes last, deepest-last-written first, since creating entries changes them.
    fn finish_dirs(&mut self) -> Result<()> {
        for (comps, mtime) in self.dir_times.drain(..).rev() {
            let ts = TimeSpec::new(mtime, 0);
            let res = match comps.split_last() {
                None => futimens(self.root, &ts, &ts),
                Some((name, parent)) => open_in_root(self.root, parent).and_then(|p| {
                    utimensat(
                        &p,
                        name.as_os_str(),
                        &ts,
                        &ts,
                        UtimensatFlags::NoFollowSymlink,
                    )
                }),
            };
            match res {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => {
                    return Err(e).ctx(|| {
                        format!(
                            "set directory mtime of {:?}",
                            comps.iter().collect::<PathBuf>()
                        )
                    })
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_rules() {
        let c = |p: &str| clean_path(Path::new(p));
        let v = |xs: &[&str]| xs.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(c("./a/b/").unwrap(), v(&["a", "b"]));
        assert_eq!(c("/etc/passwd").unwrap(), v(&["etc", "passwd"]));
        assert_eq!(c("a/../b").unwrap(), v(&["b"]));
        assert_eq!(c("./").unwrap(), v(&[]));
        assert!(c("../x").is_err());
        assert!(c("a/../../x").is_err());
    }

    #[test]
    fn sniffing() {
        assert_eq!(
            sniff_compression(&[0x1f, 0x8b, 8]).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            sniff_compression(&[0x28, 0xb5, 0x2f, 0xfd]).unwrap(),
            Compression::Zstd
        );
        assert_eq!(sniff_compression(b"etc/\0\0").unwrap(), Compression::None);
        assert!(sniff_compression(&[0xfd, b'7', b'z', b'X', b'Z', 0])
            .unwrap_err()
            .to_string()
            .contains("xz"));
    }
}
