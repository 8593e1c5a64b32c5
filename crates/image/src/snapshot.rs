//! Container root filesystems built from a stack of unpacked layers.
//!
//! [`prepare`] makes `dir/upper`, `dir/work` and `dir/merged` and presents the layers (as
//! written by [`crate::unpack::unpack_layer`], overlay form) at `dir/merged`:
//!
//! - [`Mode::Overlay`] mounts overlayfs with the layers as `lowerdir` (top first), `dir/upper` and
//!   `dir/work`, and `index=off` (layers are shared by many snapshots; the inode index would tie
//!   a lower layer to one upper). `userxattr` is not used: the layers carry
//!   `trusted.overlay.opaque`, which only a `trusted.*` mount (init user namespace) reads.
//!   Long stacks: `mount(2)` copies one page of option data, and the string form cannot carry a
//!   path holding `:`, `,` or `\`. When either bites, the new mount API is used instead:
//!   `fsopen("overlay")`, one `fsconfig` `"lowerdir+"` per layer (kernel >= 6.8), `fsmount`,
//!   `move_mount`, which has no total length limit. Each directory is passed as an `O_PATH`
//!   descriptor (`FSCONFIG_SET_FD`, kernel >= 6.13); where that is refused, as a string, which
//!   `fsconfig` caps at 256 bytes, so a longer path goes as `/proc/self/fd/N` of that
//!   descriptor. Kernels without `lowerdir+` get the classic string with every directory named
//!   `/proc/self/fd/N` (about 18 bytes a layer, so roughly 200 layers fit a 4 KiB page).
//! - [`Mode::Copy`] builds `dir/merged` as a plain directory by copying the layers lowest first
//!   and applying their whiteouts (a 0/0 character device deletes the path below it, an opaque
//!   directory hides what was below it). Modes, owners, times, symlinks, devices, hard links
//!   within a layer and xattrs (minus `trusted.overlay.*`) are kept. Every directory of `merged`
//!   is entered by `openat(O_NOFOLLOW | O_DIRECTORY)` from the one above, and every entry is
//!   created or replaced without following its last component, so a symlink left by a lower
//!   layer never takes a later write outside `merged`.
//! - [`Mode::Auto`] tries overlay and falls back to copying when the mount fails with `EINVAL`,
//!   `ENODEV` or `EPERM` (no overlayfs, unsupported backing filesystem, no privilege).
//!
//! Nothing outside `dir` is written. [`Snapshot`] unmounts (lazily) when dropped;
//! [`Snapshot::remove`] unmounts and deletes `dir`.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, major, minor, mkdirat, mknodat, utimensat, FchmodatFlags,
    FileStat, Mode as StatMode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::error::{invalid, Error, IoContext, Result};

/// How a snapshot presents its layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An overlayfs mount; writes go to `dir/upper`.
    Overlay,
    /// A private copy of the layers in `dir/merged`.
    Copy,
    /// Overlay where the kernel allows it, otherwise a copy.
    Auto,
}

/// A prepared container root. Dropping it unmounts `merged` (lazily); the files stay.
#[derive(Debug)]
pub struct Snapshot {
    dir: PathBuf,
    merged: PathBuf,
    mode: Mode,
    mounted: bool,
}

impl Snapshot {
    /// The container's root filesystem, `dir/merged`.
    pub fn merged(&self) -> &Path {
        &self.merged
    }

    /// The snapshot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `dir/upper`, where an overlay snapshot's writes land.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// The mode actually used: [`Mode::Overlay`] or [`Mode::Copy`], never `Auto`.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether `merged` is an overlay mount held by this snapshot.
    pub fn is_mounted(&self) -> bool {
        self.mounted
    }

    /// Detach the overlay mount (lazily: busy files keep it alive until closed). Idempotent.
    pub fn unmount(&mut self) -> Result<()> {
        if self.mounted {
            match umount2(&self.merged, MntFlags::MNT_DETACH) {
                Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e).ctx(|| format!("unmount {}", self.merged.display())),
            }
            self.mounted = false;
        }
        Ok(())
    }

    /// Unmount and delete the whole snapshot directory (see [`remove_dir`]).
    pub fn remove(mut self) -> Result<()> {
        self.unmount()?;
        remove_dir(&self.dir)
    }
}

/// Delete a snapshot directory, detaching whatever is still mounted on `dir/merged` first
/// (a snapshot left by a process that died, or a failed [`prepare`]). Never crosses into a
/// mount: with `merged` or anything below it still mounted (a volume bind-mounted into the
/// container, say) it stops with an error rather than delete through it. A missing `dir` is
/// fine.
pub fn remove_dir(dir: &Path) -> Result<()> {
    let (Some(name), parent) = (dir.file_name(), dir.parent()) else {
        return Err(invalid(
            "snapshot",
            format!("cannot remove {}", dir.display()),
        ));
    };
    let parent = match parent {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let pfd = match open_dir(parent) {
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    let dfd = match open_dir_at(pfd.as_fd(), name) {
        Err(Errno::ENOENT) => return Ok(()),
        other => other.ctx(|| format!("open {}", dir.display()))?,
    };
    let merged = dir.join("merged");
    for _ in 0..16 {
        match is_mount_root_at(dfd.as_fd(), OsStr::new("merged")) {
            Ok(true) => {}
            Ok(false) | Err(Errno::ENOENT) => break,
            Err(e) => return Err(e).ctx(|| format!("stat {}", merged.display())),
        }
        match umount2(&merged, MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) => {}
            Err(e) => return Err(e).ctx(|| format!("unmount {}", merged.display())),
        }
    }
    remove_all_at(pfd.as_fd(), name).map_err(|e| match e {
        Errno::EBUSY => invalid(
            "snapshot",
            format!("{} still holds a mount point", dir.display()),
        ),
        e => Error::Io {
            context: format!("remove {}", dir.display()),
            source: io::Error::from(e),
        },
    })
}

/// Whether `name` under `dir` is the root of a mount: `STATX_ATTR_MOUNT_ROOT` (Linux >= 5.8),
/// else a device number different from `dir`'s. The last component is not followed.
fn is_mount_root_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<bool> {
    let c = CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: statx is plain data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid directory descriptor, a NUL-terminated name and a buffer of the right type.
    let rc = unsafe {
        libc::statx(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS,
            &mut stx,
        )
    };
    if rc != 0 {
        return Err(Errno::last());
    }
    let flag = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if stx.stx_attributes_mask & flag != 0 {
        return Ok(stx.stx_attributes & flag != 0);
    }
    let dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
    Ok(fstat(dir)?.st_dev != dev)
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if self.mounted {
            let _ = umount2(&self.merged, MntFlags::MNT_DETACH);
        }
    }
}

/// Present `layers` (lowest first) at `dir/merged`, creating `dir/{upper,work,merged}`.
///
/// `dir/merged` must be empty; `dir/upper` may hold an earlier run's changes (overlay). On error
/// `dir` may hold partial content and nothing is mounted: delete it with [`remove_dir`].
pub fn prepare(layers: &[&Path], dir: &Path, mode: Mode) -> Result<Snapshot> {
    prepare_with(layers, dir, mode, OverlayOptions::default())
}

/// Overlay mount options beyond the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OverlayOptions {
    /// overlayfs `volatile`: no syncs of the upper dir (nor at unmount). For snapshots that are
    /// thrown away with their container (`run --rm`): after a crash the upper dir is unusable,
    /// which for those does not matter.
    pub volatile: bool,
}

/// [`prepare`] with overlay options (ignored by [`Mode::Copy`]).
pub fn prepare_with(
    layers: &[&Path],
    dir: &Path,
    mode: Mode,
    opts: OverlayOptions,
) -> Result<Snapshot> {
    if layers.is_empty() {
        return Err(invalid("snapshot", "no layers"));
    }
    let merged = dir.join("merged");
    for d in [
        dir.to_path_buf(),
        dir.join("upper"),
        dir.join("work"),
        merged.clone(),
    ] {
        std::fs::create_dir_all(&d).ctx(|| format!("create {}", d.display()))?;
    }
    if std::fs::read_dir(&merged)
        .ctx(|| format!("read {}", merged.display()))?
        .next()
        .is_some()
    {
        return Err(invalid(
            "snapshot",
            format!("{} is not empty", merged.display()),
        ));
    }
    let mut snap = Snapshot {
        dir: dir.to_path_buf(),
        merged,
        mode: Mode::Copy,
        mounted: false,
    };
    match mode {
        Mode::Copy => copy_layers(layers, &snap.merged)?,
        Mode::Overlay => {
            mount_overlay(layers, dir, opts).map_err(|e| mount_error(e, &snap.merged))?;
            snap.mode = Mode::Overlay;
            snap.mounted = true;
        }
        Mode::Auto => match mount_overlay(layers, dir, opts) {
            Ok(()) => {
                snap.mode = Mode::Overlay;
                snap.mounted = true;
            }
            Err(Errno::EINVAL | Errno::ENODEV | Errno::EPERM) => copy_layers(layers, &snap.merged)?,
            Err(e) => return Err(mount_error(e, &snap.merged)),
        },
    }
    Ok(snap)
}

fn mount_error(e: Errno, merged: &Path) -> Error {
    Error::Io {
        context: format!("mount overlay on {}", merged.display()),
        source: io::Error::from(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Overlay mounting.

/// The most `mount(2)` copies of the data argument (one page, NUL included).
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096)
}

/// Whether a path can appear in the classic comma/colon separated option string.
fn plain(p: &Path) -> bool {
    !p.as_os_str()
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b',' | b':' | b'\\' | 0))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).ctx(|| format!("resolve {}", p.display()))
}

/// The classic option string, lowers top first.
fn options(lowers: &[PathBuf], upper: &Path, work: &Path, o: OverlayOptions) -> Vec<u8> {
    let mut s = b"lowerdir=".to_vec();
    for (i, l) in lowers.iter().rev().enumerate() {
        if i > 0 {
            s.push(b':');
        }
        s.extend_from_slice(l.as_os_str().as_bytes());
    }
    for (k, v) in [(",upperdir=", upper), (",workdir=", work)] {
        s.extend_from_slice(k.as_bytes());
        s.extend_from_slice(v.as_os_str().as_bytes());
    }
    s.extend_from_slice(b",index=off");
    if o.volatile {
        s.extend_from_slice(b",volatile");
    }
    s
}

fn mount_overlay(
    layers: &[&Path],
    dir: &Path,
    o: OverlayOptions,
) -> std::result::Result<(), Errno> {
    let abs = |p: &Path| absolute(p).map_err(|_| Errno::EINVAL);
    let lowers = layers
        .iter()
        .map(|l| abs(l))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let (upper, work, merged) = (
        abs(&dir.join("upper"))?,
        abs(&dir.join("work"))?,
        abs(&dir.join("merged"))?,
    );
    let opts = options(&lowers, &upper, &work, o);
    let all_plain = lowers.iter().all(|l| plain(l)) && plain(&upper) && plain(&work);
    if all_plain && opts.len() < page_size() {
        return mount_classic(&opts, &merged);
    }
    match mount_new_api(&lowers, &upper, &work, &merged, true, o) {
        // No new mount API (< 5.2) or no `lowerdir+` (< 6.8): descriptor paths, if they fit.
        Err(Errno::ENOSYS) | Err(Errno::EINVAL) => {
            mount_via_fd_paths(&lowers, &upper, &work, &merged, o)
        }
        other => other,
    }
}

fn mount_classic(opts: &[u8], merged: &Path) -> std::result::Result<(), Errno> {
    let data = CString::new(opts).map_err(|_| Errno::EINVAL)?;
    nix::mount::mount(
        Some("overlay"),
        merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_c_str()),
    )
}

/// Fallback for kernels without `lowerdir+`: name each layer by an open descriptor.
pub(crate) fn mount_via_fd_paths(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    merged: &Path,
    o: OverlayOptions,
) -> std::result::Result<(), Errno> {
    let (lower_fds, upper_fd, work_fd) = (
        lowers
            .iter()
            .map(|l| open_path(l))
            .collect::<nix::Result<Vec<OwnedFd>>>()?,
        open_path(upper)?,
        open_path(work)?,
    );
    let short: Vec<PathBuf> = lower_fds.iter().map(|fd| proc_fd(fd.as_fd())).collect();
    let opts = options(
        &short,
        &proc_fd(upper_fd.as_fd()),
        &proc_fd(work_fd.as_fd()),
        o,
    );
    if opts.len() >= page_size() {
        return Err(Errno::E2BIG);
    }
    mount_classic(&opts, merged)
}

/// An `O_PATH` descriptor for a layer, upper or work directory.
fn open_path(p: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        p,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        StatMode::empty(),
    )
}

/// `/proc/self/fd/N`: the kernel's path lookup at mount time follows it to the directory.
fn proc_fd(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_SET_FD: libc::c_uint = 5;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn syscall_fd(ret: libc::c_long) -> std::result::Result<OwnedFd, Errno> {
    if ret < 0 {
        return Err(Errno::last());
    }
    let fd = i32::try_from(ret).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fsconfig(
    fs: BorrowedFd<'_>,
    cmd: libc::c_uint,
    key: Option<&str>,
    value: Option<&[u8]>,
    aux: libc::c_int,
) -> std::result::Result<(), Errno> {
    let key = key
        .map(CString::new)
        .transpose()
        .map_err(|_| Errno::EINVAL)?;
    let value = value
        .map(CString::new)
        .transpose()
        .map_err(|_| Errno::EINVAL)?;
    let kp = key.as_ref().map_or(std::ptr::null(), |k| k.as_ptr());
    let vp = value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
    // SAFETY: fsconfig with NUL-terminated strings (or NULL) that outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, kp, vp, aux) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Set a directory parameter: by descriptor (kernel >= 6.13, when `try_fd`), else as a string.
/// String values are capped at 256 bytes by `fsconfig` and `upperdir`/`workdir` strings are
/// unescaped, so a long path or one holding `\` goes as `/proc/self/fd/N`.
fn set_dir(
    fs: BorrowedFd<'_>,
    key: &str,
    dir: &Path,
    try_fd: bool,
) -> std::result::Result<(), Errno> {
    let fd = open_path(dir)?;
    if try_fd {
        match fsconfig(fs, FSCONFIG_SET_FD, Some(key), None, fd.as_raw_fd()) {
            Err(Errno::EINVAL) => {}
            other => return other,
        }
    }
    let bytes = dir.as_os_str().as_bytes();
    if bytes.len() < 256 && !bytes.contains(&b'\\') {
        fsconfig(fs, FSCONFIG_SET_STRING, Some(key), Some(bytes), 0)
    } else {
        let short = proc_fd(fd.as_fd());
        fsconfig(
            fs,
            FSCONFIG_SET_STRING,
            Some(key),
            Some(short.as_os_str().as_bytes()),
            0,
        )
    }
}

/// Mount with `fsopen`/`fsconfig`/`fsmount`/`move_mount`; `try_fd` passes directories as
/// descriptors where the kernel takes them.
fn mount_new_api(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    merged: &Path,
    try_fd: bool,
    o: OverlayOptions,
) -> std::result::Result<(), Errno> {
    let name = c"overlay";
    // SAFETY: fsopen with a static NUL-terminated name.
    let fs = syscall_fd(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })?;
    let fs = fs.as_fd();
    for l in lowers.iter().rev() {
        set_dir(fs, "lowerdir+", l, try_fd)?;
    }
    set_dir(fs, "upperdir", upper, try_fd)?;
    set_dir(fs, "workdir", work, try_fd)?;
    fsconfig(fs, FSCONFIG_SET_STRING, Some("index"), Some(b"off"), 0)?;
    if o.volatile {
        fsconfig(fs, FSCONFIG_SET_FLAG, Some("volatile"), None, 0)?;
    }
    fsconfig(fs, FSCONFIG_CMD_CREATE, None, None, 0)?;
    // SAFETY: fsmount on a configured filesystem context we own.
    let mnt = syscall_fd(unsafe {
        libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0)
    })?;
    let target = CString::new(merged.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: move_mount of our detached mount onto a NUL-terminated path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Copying.

fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        StatMode::empty(),
    )
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        StatMode::empty(),
    )
    .ctx(|| format!("open {}", path.display()))
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

fn is_whiteout(st: &FileStat) -> bool {
    kind(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

/// The names in a directory, without `.` and `..`, sorted for a stable order.
fn list_dir(fd: BorrowedFd<'_>) -> nix::Result<Vec<OsString>> {
    let dup = fd.try_clone_to_owned().map_err(|_| Errno::EBADF)?;
    let mut d = nix::dir::Dir::from_fd(dup)?;
    let mut names = Vec::new();
    for e in d.iter() {
        let n = e?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            names.push(OsString::from(OsStr::from_bytes(&n)));
        }
    }
    names.sort();
    Ok(names)
}

/// Remove `name` under `dir` (recursively), never following symlinks and never entering a
/// mount (`EBUSY`). Missing is fine.
fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
    let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => return Ok(()),
        other => other?,
    };
    if kind(&st) != SFlag::S_IFDIR {
        return unlinkat(dir, name, UnlinkatFlags::NoRemoveDir);
    }
    if is_mount_root_at(dir, name)? {
        return Err(Errno::EBUSY);
    }
    let fd = open_dir_at(dir, name)?;
    for n in list_dir(fd.as_fd())? {
        remove_all_at(fd.as_fd(), &n)?;
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

/// `/proc/self/fd/<dir>[/<name>]`, for the path-based xattr calls.
fn fd_path(dir: BorrowedFd<'_>, name: Option<&OsStr>) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    if let Some(n) = name {
        p.push(b'/');
        p.extend_from_slice(n.as_bytes());
    }
    CString::new(p).map_err(io::Error::other)
}

fn os_result(rc: isize) -> io::Result<usize> {
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

/// The xattrs of `name` under `dir` (or of `dir`), not following a final symlink, minus
/// `trusted.overlay.*`.
fn read_xattrs(dir: BorrowedFd<'_>, name: Option<&OsStr>) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let path = fd_path(dir, name)?;
    let mut names = vec![0u8; 4096];
    let len = loop {
        // SAFETY: valid path and a buffer of the given length.
        let rc = unsafe { libc::llistxattr(path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        match os_result(rc) {
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
            other => break other?,
        }
    };
    let mut out = Vec::new();
    for key in names[..len].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        if key.starts_with(b"trusted.overlay.") {
            continue;
        }
        let key = CString::new(key).map_err(io::Error::other)?;
        let mut val = vec![0u8; 256];
        let n = loop {
            // SAFETY: valid strings and a buffer of the given length.
            let rc = unsafe {
                libc::lgetxattr(
                    path.as_ptr(),
                    key.as_ptr(),
                    val.as_mut_ptr().cast(),
                    val.len(),
                )
            };
            match os_result(rc) {
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) => val.resize(val.len() * 4, 0),
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => break None,
                other => break Some(other?),
            }
        };
        if let Some(n) = n {
            val.truncate(n);
            out.push((key, val));
        }
    }
    Ok(out)
}

fn write_xattrs(
    dir: BorrowedFd<'_>,
    name: Option<&OsStr>,
    xattrs: &[(CString, Vec<u8>)],
) -> io::Result<()> {
    let path = fd_path(dir, name)?;
    for (k, v) in xattrs {
        // SAFETY: valid strings and a value buffer of the given length.
        let rc =
            unsafe { libc::lsetxattr(path.as_ptr(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Remove every xattr but `trusted.overlay.*` from a directory (before a layer's own apply).
fn clear_xattrs(dir: BorrowedFd<'_>) -> io::Result<()> {
    let path = fd_path(dir, None)?;
    for (k, _) in read_xattrs(dir, None)? {
        // SAFETY: valid NUL-terminated strings.
        let rc = unsafe { libc::lremovexattr(path.as_ptr(), k.as_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Copy `layers` (lowest first) into the empty directory `merged`.
fn copy_layers(layers: &[&Path], merged: &Path) -> Result<()> {
    let root = open_dir(merged)?;
    for layer in layers {
        let src = open_dir(layer)?;
        let mut cp = Copier {
            links: Vec::new(),
            merged: root.as_fd(),
        };
        cp.dir(src.as_fd(), root.as_fd(), &mut Vec::new())
            .map_err(|e| match e {
                Error::Io { context, source } => Error::Io {
                    context: format!("copy layer {}: {context}", layer.display()),
                    source,
                },
                other => other,
            })?;
    }
    Ok(())
}

struct Copier<'a> {
    /// `(dev, ino)` of multiply-linked files of this layer and where their first copy went.
    links: Vec<((u64, u64), Vec<OsString>)>,
    merged: BorrowedFd<'a>,
}

impl Copier<'_> {
    /// Merge the layer directory `src` into the merged directory `dst` (at `path`).
    fn dir(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        path: &mut Vec<OsString>,
    ) -> Result<()> {
        let shown = |path: &[OsString], name: &OsStr| {
            let mut p: PathBuf = ["/"].iter().collect();
            p.extend(path);
            p.push(name);
            p.display().to_string()
        };
        for name in list_dir(src).ctx(|| format!("list {}", shown(path, OsStr::new(""))))? {
            let at = shown(path, &name);
            let st = fstatat(src, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .ctx(|| format!("stat {}", at))?;
            if is_whiteout(&st) {
                remove_all_at(dst, &name).ctx(|| format!("apply whiteout {}", at))?;
                continue;
            }
            if kind(&st) == SFlag::S_IFDIR {
                let sub = open_dir_at(src, &name).ctx(|| format!("open {}", at))?;
                let opaque = is_opaque(sub.as_fd());
                let existing = match fstatat(dst, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(d) => Some(kind(&d) == SFlag::S_IFDIR),
                    Err(Errno::ENOENT) => None,
                    Err(e) => return Err(e).ctx(|| format!("stat merged {}", at)),
                };
                if opaque || existing == Some(false) {
                    remove_all_at(dst, &name).ctx(|| format!("replace {}", at))?;
                }
                if opaque || existing != Some(true) {
                    mkdirat(dst, name.as_os_str(), StatMode::from_bits_truncate(0o700))
                        .ctx(|| format!("mkdir {}", at))?;
                }
                let out = open_dir_at(dst, &name).ctx(|| format!("open merged {}", at))?;
                path.push(name.clone());
                let r = self.dir(sub.as_fd(), out.as_fd(), path);
                path.pop();
                r?;
                clear_xattrs(out.as_fd()).ctx(|| format!("reset xattrs of {}", at))?;
                self.meta(sub.as_fd(), None, out.as_fd(), None, &st)
                    .ctx(|| format!("copy metadata of {}", at))?;
                continue;
            }
            remove_all_at(dst, &name).ctx(|| format!("replace {}", at))?;
            if kind(&st) == SFlag::S_IFREG && st.st_nlink > 1 {
                let key = (st.st_dev, st.st_ino);
                if let Some((_, first)) = self.links.iter().find(|(k, _)| *k == key) {
                    let first = first.clone();
                    if self.link(&first, dst, &name).is_ok() {
                        continue;
                    }
                } else {
                    let mut p = path.clone();
                    p.push(name.clone());
                    self.links.push((key, p));
                }
            }
            self.entry(src, dst, &name, &st)
                .ctx(|| format!("copy {}", at))?;
        }
        Ok(())
    }

    /// Hard link `name` in `dst` to the merged file at `first` (no symlink followed).
    fn link(&self, first: &[OsString], dst: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
        let (fname, parent) = first.split_last().ok_or(Errno::EINVAL)?;
        let mut dir = self.merged.try_clone_to_owned().map_err(|_| Errno::EBADF)?;
        for c in parent {
            dir = open_dir_at(dir.as_fd(), c)?;
        }
        linkat(&dir, fname.as_os_str(), dst, name, AtFlags::empty())
    }

    /// Create a non-directory `name` in `dst` like the one in `src`.
    fn entry(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &OsStr,
        st: &FileStat,
    ) -> io::Result<()> {
        let k = kind(st);
        if k == SFlag::S_IFREG {
            let inp = openat(
                src,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                StatMode::empty(),
            )?;
            let out = openat(
                dst,
                name,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                StatMode::from_bits_truncate(0o600),
            )?;
            io::copy(&mut File::from(inp), &mut File::from(out))?;
        } else if k == SFlag::S_IFLNK {
            let target = readlinkat(src, name)?;
            symlinkat(target.as_os_str(), dst, name)?;
        } else if matches!(
            k,
            SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO | SFlag::S_IFSOCK
        ) {
            let dev = nix::sys::stat::makedev(major(st.st_rdev), minor(st.st_rdev));
            mknodat(dst, name, k, StatMode::from_bits_truncate(0o600), dev)?;
        } else {
            return Err(io::Error::other(format!(
                "unsupported file type {:o}",
                st.st_mode
            )));
        }
        self.meta(src, Some(name), dst, Some(name), st)
    }

    /// Owner, mode, xattrs and times of `src[/sname]` onto `dst[/dname]` (no symlink followed).
    fn meta(
        &self,
        src: BorrowedFd<'_>,
        sname: Option<&OsStr>,
        dst: BorrowedFd<'_>,
        dname: Option<&OsStr>,
        st: &FileStat,
    ) -> io::Result<()> {
        let now = match dname {
            Some(n) => fstatat(dst, n, AtFlags::AT_SYMLINK_NOFOLLOW)?,
            None => fstat(dst)?,
        };
        if (now.st_uid, now.st_gid) != (st.st_uid, st.st_gid) {
            let (u, g) = (
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
            );
            match dname {
                Some(n) => fchownat(dst, n, u, g, AtFlags::AT_SYMLINK_NOFOLLOW)?,
                None => fchown(dst, u, g)?,
            }
        }
        let symlink = kind(st) == SFlag::S_IFLNK;
        let perm = StatMode::from_bits_truncate(st.st_mode & 0o7777);
        match dname {
            None => fchmod(dst, perm)?,
            Some(n) if !symlink => {
                fchmodat(dst, n, perm, FchmodatFlags::NoFollowSymlink).or_else(|e| {
                    // Older kernels lack fchmodat2; `n` is known not to be a symlink here.
                    if e == Errno::EOPNOTSUPP || e == Errno::ENOSYS {
                        fchmodat(dst, n, perm, FchmodatFlags::FollowSymlink)
                    } else {
                        Err(e)
                    }
                })?
            }
            Some(_) => {}
        }
        let xattrs = read_xattrs(src, sname)?;
        write_xattrs(dst, dname, &xattrs)?;
        let at = TimeSpec::new(st.st_atime, st.st_atime_nsec);
        let mt = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
        match dname {
            None => nix::sys::stat::futimens(dst, &at, &mt)?,
            Some(n) => utimensat(dst, n, &at, &mt, UtimensatFlags::NoFollowSymlink)?,
        }
        Ok(())
    }
}

/// Whether a layer directory carries `trusted.overlay.opaque=y`.
fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 4];
    // SAFETY: valid fd, NUL-terminated key and a buffer of the given length.
    let rc = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    rc == 1 && buf[0] == b'y'
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Detaches a mount when dropped, so a failing test leaves none behind.
    struct Unmount(PathBuf);

    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = umount2(&self.0, MntFlags::MNT_DETACH);
        }
    }

    fn long_layers(base: &Path, n: usize) -> Vec<PathBuf> {
        let long = "d".repeat(200);
        (0..n)
            .map(|i| {
                let d = base.join(format!("{long}{i:02}")).join(&long);
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("top"), i.to_string()).unwrap();
                std::fs::write(d.join(format!("f{i}")), "x").unwrap();
                d
            })
            .collect()
    }

    #[test]
    fn option_string_is_top_first() {
        let l = [PathBuf::from("/l1"), PathBuf::from("/l2")];
        let s = options(
            &l,
            Path::new("/u"),
            Path::new("/w"),
            OverlayOptions::default(),
        );
        assert_eq!(s, b"lowerdir=/l2:/l1,upperdir=/u,workdir=/w,index=off");
        assert!(plain(Path::new("/a/b")));
        for bad in ["/a:b", "/a,b", "/a\\b"] {
            assert!(!plain(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn fd_path_fallback_mounts_long_stacks() {
        let tmp = tempfile::tempdir().unwrap();
        let layers = long_layers(tmp.path(), 60);
        assert!(
            options(&layers, tmp.path(), tmp.path(), OverlayOptions::default()).len() > page_size()
        );
        let (u, w, m) = (
            tmp.path().join("u"),
            tmp.path().join("w"),
            tmp.path().join("m"),
        );
        for d in [&u, &w, &m] {
            std::fs::create_dir(d).unwrap();
        }
        mount_via_fd_paths(&layers, &u, &w, &m, OverlayOptions::default()).unwrap();
        let _guard = Unmount(m.clone());
        assert_eq!(std::fs::read_to_string(m.join("top")).unwrap(), "59");
        assert!(m.join("f0").exists() && m.join("f59").exists());
    }

    /// Both ways of naming directories to `fsconfig`: descriptors, and strings (long paths as
    /// `/proc/self/fd/N`), on paths the option string cannot carry.
    #[test]
    fn new_api_mounts_paths_the_option_string_cannot_carry() {
        for try_fd in [true, false] {
            let tmp = tempfile::tempdir().unwrap();
            let base = tmp.path().join("odd:name,with\\chars");
            let mut layers = long_layers(&base, 2);
            let short = tmp.path().join("short:,");
            std::fs::create_dir(&short).unwrap();
            std::fs::write(short.join("top"), "short").unwrap();
            layers.push(short);
            assert!(layers[0].as_os_str().len() > 256);
            let (u, w, m) = (base.join("u"), base.join("w"), base.join("m"));
            for d in [&u, &w, &m] {
                std::fs::create_dir(d).unwrap();
            }
            mount_new_api(&layers, &u, &w, &m, try_fd, OverlayOptions::default()).unwrap();
            let _guard = Unmount(m.clone());
            assert_eq!(std::fs::read_to_string(m.join("top")).unwrap(), "short");
            assert!(m.join("f0").exists() && m.join("f1").exists());
            std::fs::write(m.join("new"), "x").unwrap();
            assert!(u.join("new").exists(), "upperdir must be the one given");
        }
    }

    /// `volatile` reaches the mount, by the option string and by the new mount API.
    #[test]
    fn volatile_overlays() {
        let mountinfo_opts = |m: &Path| -> String {
            let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            let m = m.to_string_lossy().into_owned();
            mi.lines()
                .find(|l| l.split(' ').nth(4) == Some(m.as_str()))
                .unwrap_or_default()
                .to_string()
        };
        let v = OverlayOptions { volatile: true };
        // Option string (plain paths).
        let tmp = tempfile::tempdir().unwrap();
        let layers = long_layers(tmp.path(), 2);
        let refs: Vec<&Path> = layers.iter().map(PathBuf::as_path).collect();
        let snap = prepare_with(&refs, &tmp.path().join("s"), Mode::Overlay, v).unwrap();
        assert!(mountinfo_opts(snap.merged()).contains("volatile"));
        std::fs::write(snap.merged().join("x"), "y").unwrap();
        snap.remove().unwrap();
        // New mount API (a path the option string cannot carry).
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("odd:name");
        let layers = long_layers(&base, 2);
        let (u, w, m) = (base.join("u"), base.join("w"), base.join("m"));
        for d in [&u, &w, &m] {
            std::fs::create_dir(d).unwrap();
        }
        mount_new_api(&layers, &u, &w, &m, true, v).unwrap();
        let _guard = Unmount(m.clone());
        assert!(
            mountinfo_opts(&m).contains("volatile"),
            "{}",
            mountinfo_opts(&m)
        );
        // Without it, no volatile.
        let tmp = tempfile::tempdir().unwrap();
        let layers = long_layers(tmp.path(), 1);
        let refs: Vec<&Path> = layers.iter().map(PathBuf::as_path).collect();
        let snap = prepare(&refs, &tmp.path().join("s"), Mode::Overlay).unwrap();
        assert!(!mountinfo_opts(snap.merged()).contains("volatile"));
        snap.remove().unwrap();
    }
}
