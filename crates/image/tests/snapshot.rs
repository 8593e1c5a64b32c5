//! Snapshots against the real kernel (run as root): overlay mounts of unpacked layers, the
//! copying fallback, hostile layer stacks, cleanup, and long layer stacks.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_image::snapshot::{prepare, remove_dir, Mode, Snapshot};
use berth_image::unpack::{unpack_layer, UnpackOptions};
use tar::{EntryType, Header};

/// Builds a layer tar.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn add(&mut self, path: &str, kind: EntryType, mode: u32, link: &str, data: &[u8]) {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        self.0.append_data(&mut h, path, data).unwrap();
    }

    fn dir(mut self, path: &str) -> Self {
        self.add(path, EntryType::Directory, 0o751, "", b"");
        self
    }

    fn file(mut self, path: &str, data: &str) -> Self {
        self.add(path, EntryType::Regular, 0o640, "", data.as_bytes());
        self
    }

    fn symlink(mut self, path: &str, target: &str) -> Self {
        self.add(path, EntryType::Symlink, 0o777, target, b"");
        self
    }

    fn hardlink(mut self, path: &str, target: &str) -> Self {
        self.add(path, EntryType::Link, 0o640, target, b"");
        self
    }

    fn null_device(mut self, path: &str) -> Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Char);
        h.set_mode(0o666);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        self.0.append_data(&mut h, path, &b""[..]).unwrap();
        self
    }

    fn fifo(mut self, path: &str) -> Self {
        self.add(path, EntryType::Fifo, 0o600, "", b"");
        self
    }

    /// Unpack into `dir` (created).
    fn unpack(self, dir: &Path) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        let tar = self.0.into_inner().unwrap();
        unpack_layer(&tar[..], dir, &UnpackOptions::default()).unwrap();
        dir.to_path_buf()
    }
}

/// The three layers of the scenario, under `base`.
fn three_layers(base: &Path) -> Vec<PathBuf> {
    let l1 = Layer::new()
        .dir("a")
        .file("a/file", "gone")
        .file("a/keep", "kept")
        .dir("b")
        .file("b/x", "x")
        .file("b/y", "y")
        .dir("etc")
        .file("etc/conf", "conf-v1")
        .fifo("etc/pipe")
        .dir("dev")
        .null_device("dev/null")
        .unpack(&base.join("l1"));
    let l2 = Layer::new()
        .dir("a")
        .file("a/.wh.file", "")
        .dir("b")
        .file("b/.wh..wh..opq", "")
        .file("b/z", "z")
        .dir("etc")
        .file("etc/conf", "conf-v2")
        .unpack(&base.join("l2"));
    let l3 = Layer::new()
        .symlink("link", "/etc/conf")
        .dir("hl")
        .file("hl/one", "shared")
        .hardlink("hl/two", "hl/one")
        .unpack(&base.join("l3"));
    vec![l1, l2, l3]
}

fn refs(layers: &[PathBuf]) -> Vec<&Path> {
    layers.iter().map(PathBuf::as_path).collect()
}

/// One line per entry under `root` (never following symlinks): path, type, mode, owner, and
/// content / target / device. The root itself and directory times are left out (an overlay root
/// shows the upper directory).
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let ft = m.file_type();
        let what = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("link -> {}", fs::read_link(&p).unwrap().display())
        } else if ft.is_file() {
            format!(
                "file nlink={} mtime={} {:?}",
                m.nlink(),
                m.mtime(),
                fs::read_to_string(&p).unwrap()
            )
        } else if ft.is_char_device() {
            format!("chr {}", m.rdev())
        } else if ft.is_fifo() {
            "fifo".to_string()
        } else {
            "other".to_string()
        };
        let mode = if ft.is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        };
        out.push(format!("{rel} {mode:o} {}:{} {what}", m.uid(), m.gid()));
        if ft.is_dir() {
            walk(root, &p, out);
        }
    }
}

fn mountinfo_has(path: &Path) -> bool {
    let needle = format!(" {} ", path.display());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(&needle))
}

/// Checks the merged view: whiteouts, opaque dir, symlink, hard links, content.
fn check_merged_view(snap: &Snapshot) {
    let m = snap.merged();
    assert!(m.join("a").is_dir());
    assert!(!m.join("a/file").exists(), "whiteout not applied");
    assert_eq!(fs::read_to_string(m.join("a/keep")).unwrap(), "kept");
    let mut b: Vec<_> = fs::read_dir(m.join("b"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    b.sort();
    assert_eq!(b, ["z"], "opaque dir must hide the lower content");
    assert_eq!(
        fs::read_link(m.join("link")).unwrap(),
        Path::new("/etc/conf")
    );
    assert_eq!(fs::read_to_string(m.join("etc/conf")).unwrap(), "conf-v2");
    let one = fs::metadata(m.join("hl/one")).unwrap();
    let two = fs::metadata(m.join("hl/two")).unwrap();
    assert_eq!(one.ino(), two.ino(), "hard link pair must share an inode");
    assert_eq!(one.nlink(), 2);
    assert_eq!(
        (one.uid(), one.gid(), one.mode() & 0o7777),
        (1000, 1001, 0o640)
    );
    assert!(fs::symlink_metadata(m.join("etc/pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
    let null = fs::symlink_metadata(m.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    // No overlay metadata leaks into the view.
    assert!(!m.join("a/.wh.file").exists());
    assert!(!m.join("b/.wh..wh..opq").exists());
}

#[test]
fn overlay_merged_view_and_writes_go_to_upper() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers(tmp.path());
    let before: Vec<_> = layers.iter().map(|l| listing(l)).collect();
    let snap = prepare(&refs(&layers), &tmp.path().join("c1"), Mode::Overlay).unwrap();
    assert_eq!(snap.mode(), Mode::Overlay);
    assert!(snap.is_mounted());
    assert!(mountinfo_has(snap.merged()));
    check_merged_view(&snap);

    let m = snap.merged();
    fs::write(m.join("new"), "new").unwrap();
    fs::write(m.join("etc/conf"), "changed").unwrap();
    fs::remove_file(m.join("b/z")).unwrap();
    let upper = snap.upper();
    assert_eq!(fs::read_to_string(upper.join("new")).unwrap(), "new");
    assert_eq!(
        fs::read_to_string(upper.join("etc/conf")).unwrap(),
        "changed"
    );
    assert!(fs::symlink_metadata(upper.join("b/z"))
        .unwrap()
        .file_type()
        .is_char_device());
    let after: Vec<_> = layers.iter().map(|l| listing(l)).collect();
    assert_eq!(before, after, "layer directories must not change");
}

#[test]
fn copy_mode_matches_overlay() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers(tmp.path());
    let before: Vec<_> = layers.iter().map(|l| listing(l)).collect();
    let ov = prepare(&refs(&layers), &tmp.path().join("ov"), Mode::Overlay).unwrap();
    let cp = prepare(&refs(&layers), &tmp.path().join("cp"), Mode::Copy).unwrap();
    assert_eq!(cp.mode(), Mode::Copy);
    assert!(!cp.is_mounted());
    assert!(!mountinfo_has(cp.merged()));
    check_merged_view(&cp);
    let (lo, lc) = (listing(ov.merged()), listing(cp.merged()));
    assert!(lo.len() > 10, "listing too small: {lo:?}");
    assert_eq!(lo, lc);

    fs::write(cp.merged().join("etc/conf"), "changed").unwrap();
    let after: Vec<_> = layers.iter().map(|l| listing(l)).collect();
    assert_eq!(before, after, "layer directories must not change");
}

#[test]
fn copy_mode_keeps_xattrs_but_not_overlay_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers(tmp.path());
    let conf = layers[1].join("etc/conf");
    xattr_set(&conf, "user.berth", b"v");
    let cp = prepare(&refs(&layers), &tmp.path().join("cp"), Mode::Copy).unwrap();
    let m = cp.merged();
    assert_eq!(
        xattr_get(&m.join("etc/conf"), "user.berth").as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(xattr_get(&m.join("b"), "trusted.overlay.opaque"), None);
    assert_eq!(
        xattr_get(&layers[1].join("b"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
}

fn xattr_set(p: &Path, k: &str, v: &[u8]) {
    let p = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let k = std::ffi::CString::new(k).unwrap();
    // SAFETY: valid strings and buffer.
    let rc = unsafe { libc::lsetxattr(p.as_ptr(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

fn xattr_get(p: &Path, k: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let k = std::ffi::CString::new(k).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid strings and buffer.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

#[test]
fn copy_mode_never_writes_through_a_lower_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let canary = tempfile::tempdir().unwrap();
    let abs = canary.path().display().to_string();
    let rel = format!("../../../../../../../../..{abs}");
    let l1 = Layer::new()
        .symlink("evil", &abs)
        .symlink("evil2", &rel)
        .dir("d")
        // A regression here must hit the canary, never the host's root (an early version of the copier
        // once chowned "/" and wrote /pwn through a link like this).
        .symlink("d/up", &format!("../{rel}"))
        .unpack(&tmp.path().join("l1"));
    let l2 = Layer::new()
        .dir("evil")
        .file("evil/pwn", "pwned")
        .dir("evil2")
        .file("evil2/pwn", "pwned")
        .dir("d/up")
        .file("d/up/pwn", "pwned")
        .unpack(&tmp.path().join("l2"));
    let snap = prepare(&[&l1, &l2], &tmp.path().join("c"), Mode::Copy).unwrap();
    let m = snap.merged();
    assert_eq!(fs::read_dir(canary.path()).unwrap().count(), 0);
    assert!(!tmp.path().join("pwn").exists());
    for p in ["evil", "evil2", "d/up"] {
        let md = fs::symlink_metadata(m.join(p)).unwrap();
        assert!(md.is_dir(), "{p} must be a real directory in merged");
        assert_eq!(fs::read_to_string(m.join(p).join("pwn")).unwrap(), "pwned");
    }
    assert_eq!(fs::read_dir(canary.path()).unwrap().count(), 0);
    assert!(!tmp.path().join("pwn").exists());
}

#[test]
fn unmount_drop_and_remove_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers(tmp.path());
    let dir = tmp.path().join("c");

    let snap = prepare(&refs(&layers), &dir, Mode::Overlay).unwrap();
    let merged = snap.merged().to_path_buf();
    assert!(mountinfo_has(&merged));
    drop(snap);
    assert!(!mountinfo_has(&merged), "drop must unmount");
    assert!(dir.exists(), "drop keeps the files");
    assert!(layers[0].join("a/keep").exists());

    fs::remove_dir_all(&dir).unwrap();
    let mut snap = prepare(&refs(&layers), &dir, Mode::Overlay).unwrap();
    snap.unmount().unwrap();
    assert!(!mountinfo_has(&merged));
    snap.unmount().unwrap();
    assert!(!snap.is_mounted());
    snap.remove().unwrap();
    assert!(!dir.exists());

    let snap = prepare(&refs(&layers), &dir, Mode::Overlay).unwrap();
    snap.remove().unwrap();
    assert!(!mountinfo_has(&merged));
    assert!(!dir.exists());
    let cp = prepare(&refs(&layers), &dir, Mode::Copy).unwrap();
    cp.remove().unwrap();
    assert!(!dir.exists());
    // The layers survive every removal.
    assert_eq!(
        fs::read_to_string(layers[1].join("etc/conf")).unwrap(),
        "conf-v2"
    );
    assert!(layers[0].join("a/keep").exists());
}

#[test]
fn remove_dir_cleans_up_a_leaked_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers(tmp.path());
    let dir = tmp.path().join("c");
    let snap = prepare(&refs(&layers), &dir, Mode::Overlay).unwrap();
    let merged = snap.merged().to_path_buf();
    // A process that died without unmounting; the guard still detaches if the test fails.
    std::mem::forget(snap);
    let _guard = Detach(merged.clone());
    assert!(mountinfo_has(&merged));
    // Preparing over a live snapshot is refused (merged shows the layers, so it is not empty).
    assert!(prepare(&refs(&layers), &dir, Mode::Overlay).is_err());
    remove_dir(&dir).unwrap();
    assert!(!mountinfo_has(&merged));
    assert!(!dir.exists());
    assert!(layers[0].join("a/keep").exists(), "layers must survive");
    remove_dir(&dir).unwrap();
}

#[test]
fn remove_never_deletes_through_a_nested_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers(tmp.path());
    let volume = tmp.path().join("volume");
    fs::create_dir(&volume).unwrap();
    fs::write(volume.join("precious"), "data").unwrap();
    for mode in [Mode::Copy, Mode::Overlay] {
        let dir = tmp.path().join("c");
        let snap = prepare(&refs(&layers), &dir, mode).unwrap();
        let target = snap.merged().join("a");
        nix::mount::mount(
            Some(&volume),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let guard = Detach(target.clone());
        if mode == Mode::Copy {
            // A plain directory holding a mount: removal stops at it.
            let err = snap.remove().unwrap_err();
            assert!(err.to_string().contains("mount point"), "{err}");
            assert_eq!(fs::read_to_string(volume.join("precious")).unwrap(), "data");
            assert!(dir.exists());
            drop(guard);
            remove_dir(&dir).unwrap();
        } else {
            // Detaching the overlay detaches what is mounted inside it too.
            snap.remove().unwrap();
            assert!(!mountinfo_has(&target));
            drop(guard);
        }
        assert!(!dir.exists());
        assert_eq!(fs::read_to_string(volume.join("precious")).unwrap(), "data");
    }
}

/// Detaches a mount when dropped.
struct Detach(PathBuf);

impl Drop for Detach {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn many_long_layers_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let long = "l".repeat(200);
    let mut layers = Vec::new();
    for i in 0..60 {
        let d = tmp.path().join(format!("{long}{i:02}")).join(&long);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("f{i}")), i.to_string()).unwrap();
        fs::write(d.join("top"), i.to_string()).unwrap();
        layers.push(d);
    }
    let total: usize = layers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(total > 4096, "the option string must exceed a page");
    let snap = prepare(&refs(&layers), &tmp.path().join("c"), Mode::Overlay).unwrap();
    assert!(mountinfo_has(snap.merged()));
    let m = snap.merged();
    assert_eq!(fs::read_to_string(m.join("top")).unwrap(), "59");
    for i in 0..60 {
        assert_eq!(
            fs::read_to_string(m.join(format!("f{i}"))).unwrap(),
            i.to_string()
        );
    }
}

#[test]
fn overlay_refused_on_overlay_upper_and_auto_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers(tmp.path());
    let outer = prepare(&refs(&layers), &tmp.path().join("outer"), Mode::Overlay).unwrap();
    // overlayfs cannot use an overlay as its upper filesystem: EINVAL.
    let inner = outer.merged().join("inner");
    let err = prepare(&refs(&layers), &inner, Mode::Overlay).unwrap_err();
    assert!(err.to_string().contains("mount overlay"), "{err}");
    fs::remove_dir_all(&inner).unwrap();
    let auto = prepare(&refs(&layers), &inner, Mode::Auto).unwrap();
    assert_eq!(auto.mode(), Mode::Copy);
    check_merged_view(&auto);
    let auto_ok = prepare(&refs(&layers), &tmp.path().join("auto"), Mode::Auto).unwrap();
    assert_eq!(auto_ok.mode(), Mode::Overlay);
}

#[test]
fn bad_arguments_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers(tmp.path());
    assert!(prepare(&[], &tmp.path().join("c"), Mode::Copy).is_err());
    let dir = tmp.path().join("busy");
    fs::create_dir_all(dir.join("merged")).unwrap();
    fs::write(dir.join("merged/stale"), "x").unwrap();
    let err = prepare(&refs(&layers), &dir, Mode::Copy).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    let missing = tmp.path().join("missing");
    assert!(prepare(&[&missing], &tmp.path().join("m"), Mode::Copy).is_err());
    assert!(prepare(&[&missing], &tmp.path().join("m2"), Mode::Overlay).is_err());
}
