//! Layer unpacking against the real filesystem: every entry type, compression, whiteouts, and
//! hostile tars that try to escape the layer directory.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use berth_image::formats::Compression;
use berth_image::unpack::{unpack_layer, UnpackOptions};
use berth_image::{Digest, Error};
use tar::{EntryType, Header};

/// Append an entry with a raw (unsanitised) name and link name.
fn raw(b: &mut tar::Builder<Vec<u8>>, name: &[u8], kind: EntryType, link: &[u8], data: &[u8]) {
    let mut h = Header::new_gnu();
    {
        let g = h.as_gnu_mut().unwrap();
        g.name[..name.len()].copy_from_slice(name);
        g.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn lgetxattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let k = CString::new(key).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid strings and buffer.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A tar exercising every entry type and metadata kind.
fn full_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Directory);
    h.set_mode(0o750);
    h.set_uid(1234);
    h.set_gid(5678);
    h.set_mtime(1_500_000_000);
    h.set_size(0);
    b.append_data(&mut h, "etc/", &[][..]).unwrap();
    // File with owner, mode, mtime and a PAX xattr.
    b.append_pax_extensions([("SCHILY.xattr.user.berth", &b"hello"[..])])
        .unwrap();
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o4755);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_mtime(1_400_000_000);
    h.set_size(4);
    b.append_data(&mut h, "etc/file", &b"data"[..]).unwrap();
    // A deep file whose parents have no entries.
    let mut h = Header::new_gnu();
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(1);
    b.append_data(&mut h, "deep/er/x", &b"x"[..]).unwrap();
    raw(&mut b, b"etc/link", EntryType::Symlink, b"file", b"");
    raw(&mut b, b"etc/hard", EntryType::Link, b"etc/file", b"");
    raw(&mut b, b"fifo", EntryType::Fifo, b"", b"");
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Char);
    h.set_mode(0o666);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_size(0);
    b.append_data(&mut h, "null", &[][..]).unwrap();
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Block);
    h.set_mode(0o660);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_device_major(7).unwrap();
    h.set_device_minor(0).unwrap();
    h.set_size(0);
    b.append_data(&mut h, "loop0", &[][..]).unwrap();
    // Symlinked directories resolve inside the layer (relative and absolute).
    // The absolute target names a directory that exists in the layer but not on the host, so a
    // regression fails instead of writing into the host's /usr/lib (as an early version once did).
    raw(&mut b, b"usr/lib/", EntryType::Directory, b"", b"");
    raw(&mut b, b"berth-test-only/", EntryType::Directory, b"", b"");
    raw(&mut b, b"lib", EntryType::Symlink, b"usr/lib", b"");
    raw(&mut b, b"lib/a", EntryType::Regular, b"", b"A");
    raw(&mut b, b"abs", EntryType::Symlink, b"/berth-test-only", b"");
    raw(&mut b, b"abs/b", EntryType::Regular, b"", b"B");
    // A later entry replaces an earlier one of another type.
    raw(&mut b, b"swap", EntryType::Directory, b"", b"");
    raw(&mut b, b"swap/inner", EntryType::Regular, b"", b"i");
    raw(&mut b, b"swap", EntryType::Regular, b"", b"now a file");
    b.into_inner().unwrap()
}

#[test]
fn unpacks_every_entry_type_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let tar = full_tar();
    let blob = gzip(&tar);
    let out = unpack_layer(
        &blob[..],
        dir.path(),
        &UnpackOptions {
            compression: Some(Compression::Gzip),
            expected_digest: Some(Digest::of_bytes(&blob)),
            expected_diff_id: Some(Digest::of_bytes(&tar)),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(out.diff_id, Digest::of_bytes(&tar));
    assert_eq!(out.digest, Digest::of_bytes(&blob));
    assert_eq!(out.uncompressed_size, tar.len() as u64);
    assert_eq!(out.compressed_size, blob.len() as u64);
    let p = dir.path();

    let etc = fs::symlink_metadata(p.join("etc")).unwrap();
    assert!(etc.is_dir());
    assert_eq!(
        (etc.uid(), etc.gid(), etc.mode() & 0o7777),
        (1234, 5678, 0o750)
    );
    assert_eq!(
        etc.mtime(),
        1_500_000_000,
        "dir mtime set after its children"
    );
    let f = fs::symlink_metadata(p.join("etc/file")).unwrap();
    assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (1000, 1001, 0o4755));
    assert_eq!(f.mtime(), 1_400_000_000);
    assert_eq!(f.nlink(), 2);
    assert_eq!(fs::read(p.join("etc/file")).unwrap(), b"data");
    assert_eq!(
        lgetxattr(&p.join("etc/file"), "user.berth").as_deref(),
        Some(&b"hello"[..])
    );
    let h = fs::symlink_metadata(p.join("etc/hard")).unwrap();
    assert_eq!(h.ino(), f.ino());
    assert_eq!(
        fs::read_link(p.join("etc/link")).unwrap(),
        Path::new("file")
    );
    assert_eq!(fs::read(p.join("deep/er/x")).unwrap(), b"x");
    assert!(fs::symlink_metadata(p.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let null = fs::symlink_metadata(p.join("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    let lp = fs::symlink_metadata(p.join("loop0")).unwrap();
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), libc::makedev(7, 0));
    assert_eq!(fs::read(p.join("usr/lib/a")).unwrap(), b"A");
    assert_eq!(fs::read(p.join("berth-test-only/b")).unwrap(), b"B");
    assert!(!Path::new("/berth-test-only").exists());
    assert_eq!(fs::read(p.join("swap")).unwrap(), b"now a file");
}

#[test]
fn zstd_plain_and_sniffed_agree() {
    let tar = full_tar();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for (blob, given, want) in [
        (zst.clone(), Some(Compression::Zstd), Compression::Zstd),
        (zst.clone(), None, Compression::Zstd),
        (tar.clone(), None, Compression::None),
        (tar.clone(), Some(Compression::None), Compression::None),
        (gzip(&tar), None, Compression::Gzip),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let opts = UnpackOptions {
            compression: given,
            ..Default::default()
        };
        let out = unpack_layer(&blob[..], dir.path(), &opts).unwrap();
        assert_eq!(out.compression, want);
        assert_eq!(out.diff_id, Digest::of_bytes(&tar));
        assert_eq!(out.digest, Digest::of_bytes(&blob));
        assert_eq!(fs::read(dir.path().join("etc/file")).unwrap(), b"data");
    }
}

#[test]
fn digest_mismatches_are_errors() {
    let tar = full_tar();
    let wrong = Digest::of_bytes(b"nope");
    for opts in [
        UnpackOptions {
            expected_digest: Some(wrong.clone()),
            ..Default::default()
        },
        UnpackOptions {
            expected_diff_id: Some(wrong.clone()),
            ..Default::default()
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        match unpack_layer(&tar[..], dir.path(), &opts) {
            Err(Error::DigestMismatch { expected, actual }) => {
                assert_eq!(expected, wrong);
                assert_eq!(actual, Digest::of_bytes(&tar));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn whiteouts_and_opaque_dirs_become_overlay_form() {
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, b"dir/", EntryType::Directory, b"", b"");
    raw(&mut b, b"dir/.wh..wh..opq", EntryType::Regular, b"", b"");
    raw(&mut b, b"dir/kept", EntryType::Regular, b"", b"k");
    raw(&mut b, b".wh.gone", EntryType::Regular, b"", b"");
    raw(&mut b, b"sub/.wh.old", EntryType::Regular, b"", b"");
    raw(&mut b, b".wh..wh.plnk", EntryType::Directory, b"", b"");
    // A forged overlay xattr in the tar is dropped.
    b.append_pax_extensions([("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..])])
        .unwrap();
    raw(&mut b, b"fake/", EntryType::Directory, b"", b"");
    let tar = b.into_inner().unwrap();
    let dir = tempfile::tempdir().unwrap();
    unpack_layer(&tar[..], dir.path(), &UnpackOptions::default()).unwrap();
    let p = dir.path();
    assert_eq!(
        lgetxattr(&p.join("dir"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!p.join("dir/.wh..wh..opq").exists());
    assert_eq!(fs::read(p.join("dir/kept")).unwrap(), b"k");
    for w in ["gone", "sub/old"] {
        let m = fs::symlink_metadata(p.join(w)).unwrap();
        assert!(m.file_type().is_char_device(), "{w}");
        assert_eq!(m.rdev(), 0, "{w}");
    }
    assert!(!p.join(".wh.gone").exists());
    assert!(fs::symlink_metadata(p.join(".wh..wh.plnk")).is_err());
    assert!(p.join("fake").is_dir());
    assert_eq!(lgetxattr(&p.join("fake"), "trusted.overlay.opaque"), None);
    assert_eq!(lgetxattr(&p.join("sub"), "trusted.overlay.opaque"), None);
}

#[test]
fn decompression_bomb_is_bounded() {
    let mut b = tar::Builder::new(Vec::new());
    let zeros = vec![0u8; 8 << 20];
    raw(&mut b, b"big", EntryType::Regular, b"", &zeros);
    let blob = gzip(&b.into_inner().unwrap());
    assert!(blob.len() < 100_000);
    let dir = tempfile::tempdir().unwrap();
    let opts = UnpackOptions {
        max_bytes: 1 << 20,
        ..Default::default()
    };
    match unpack_layer(&blob[..], dir.path(), &opts) {
        Err(Error::SizeLimit(n)) => assert_eq!(n, 1 << 20),
        other => panic!("{other:?}"),
    }
    let written = fs::metadata(dir.path().join("big"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(written <= 1 << 20, "{written}");
}

/// A directory outside the layer that hostile entries aim at; it must never change.
struct Canary {
    dir: tempfile::TempDir,
}

impl Canary {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("secret"), b"canary").unwrap();
        fs::set_permissions(dir.path().join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
        Canary { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn abs(&self, rest: &str) -> Vec<u8> {
        format!("{}/{rest}", self.path().display()).into_bytes()
    }
    fn check(&self) {
        let names: Vec<_> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("secret")],
            "canary dir changed"
        );
        let m = fs::symlink_metadata(self.path().join("secret")).unwrap();
        assert!(m.is_file());
        assert_eq!(m.nlink(), 1, "canary got a hard link");
        assert_eq!(m.mode() & 0o7777, 0o600);
        assert_eq!(m.uid(), 0);
        assert_eq!(fs::read(self.path().join("secret")).unwrap(), b"canary");
    }
}

/// Unpack `tar` into a fresh layer dir next to (not inside) the canary; return the result and dir.
fn hostile(
    tar: Vec<u8>,
) -> (
    berth_image::Result<berth_image::unpack::Unpacked>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let res = unpack_layer(&tar[..], dir.path(), &UnpackOptions::default());
    (res, dir)
}

fn one(entries: &[(&[u8], EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link) in entries {
        let data: &[u8] = if *kind == EntryType::Regular {
            b"pwned"
        } else {
            b""
        };
        raw(&mut b, name, *kind, link, data);
    }
    b.into_inner().unwrap()
}

#[test]
fn dotdot_paths_are_refused() {
    let canary = Canary::new();
    // Relative climb to the canary: depth does not matter, it is refused before any syscall.
    let name = format!("../../../../../../..{}/evil", canary.path().display());
    let (res, _d) = hostile(one(&[(name.as_bytes(), EntryType::Regular, b"")]));
    let err = res.unwrap_err().to_string();
    assert!(err.contains("escapes"), "{err}");
    let (res, _d) = hostile(one(&[(b"a/../../secret", EntryType::Regular, b"")]));
    assert!(res.is_err());
    canary.check();
}

#[test]
fn absolute_paths_stay_inside() {
    let canary = Canary::new();
    let name = canary.abs("secret");
    let (res, d) = hostile(one(&[(&name, EntryType::Regular, b"")]));
    res.unwrap();
    let inside = d
        .path()
        .join(canary.path().strip_prefix("/").unwrap())
        .join("secret");
    assert_eq!(fs::read(inside).unwrap(), b"pwned");
    canary.check();
}

#[test]
fn writes_through_escaping_symlinks_stay_inside() {
    let canary = Canary::new();
    let abs = canary.abs("");
    let rel = format!("../../../../../../../..{}", canary.path().display()).into_bytes();
    for link in [&abs, &rel] {
        // Through a symlinked parent directory.
        let (res, d) = hostile(one(&[
            (b"esc", EntryType::Symlink, link),
            (b"esc/evil", EntryType::Regular, b""),
        ]));
        if res.is_ok() {
            // Resolved inside the layer: the file must be there, not in the canary.
            let inside = d
                .path()
                .join(canary.path().strip_prefix("/").unwrap())
                .join("evil");
            assert!(inside.is_file());
        }
        canary.check();
        // Through a symlink to the file itself: the symlink is replaced, not followed.
        let mut target = link.clone();
        target.extend_from_slice(b"/secret");
        let (res, d) = hostile(one(&[
            (b"s", EntryType::Symlink, &target),
            (b"s", EntryType::Regular, b""),
        ]));
        res.unwrap();
        assert_eq!(fs::read(d.path().join("s")).unwrap(), b"pwned");
        canary.check();
        // A directory entry through a symlinked parent, and a device node.
        let (_res, _d) = hostile(one(&[
            (b"esc", EntryType::Symlink, link),
            (b"esc/newdir/", EntryType::Directory, b""),
            (b"esc/fifo", EntryType::Fifo, b""),
            (b"esc/.wh.secret", EntryType::Regular, b""),
            (b"esc/.wh..wh..opq", EntryType::Regular, b""),
        ]));
        canary.check();
        assert_eq!(lgetxattr(canary.path(), "trusted.overlay.opaque"), None);
    }
}

#[test]
fn hard_links_cannot_reach_outside() {
    let canary = Canary::new();
    let abs = canary.abs("secret");
    let rel = format!("../../../../../../..{}/secret", canary.path().display()).into_bytes();
    let (res, _d) = hostile(one(&[(b"h1", EntryType::Link, &abs)]));
    assert!(res.is_err(), "absolute hard link target outside resolved");
    let (res, _d) = hostile(one(&[(b"h2", EntryType::Link, &rel)]));
    assert!(res.unwrap_err().to_string().contains("escapes"));
    // Through a symlinked directory, and to a symlink that points out.
    let dir_link = canary.abs("");
    let (res, _d) = hostile(one(&[
        (b"d", EntryType::Symlink, &dir_link),
        (b"h3", EntryType::Link, b"d/secret"),
    ]));
    assert!(res.is_err());
    let (res, d) = hostile(one(&[
        (b"s", EntryType::Symlink, &abs),
        (b"h4", EntryType::Link, b"s"),
    ]));
    res.unwrap();
    // The link is to the symlink itself.
    assert!(fs::symlink_metadata(d.path().join("h4"))
        .unwrap()
        .file_type()
        .is_symlink());
    canary.check();
}

#[test]
fn wrong_declared_compression_and_garbage_are_errors() {
    let tar = full_tar();
    let dir = tempfile::tempdir().unwrap();
    let opts = UnpackOptions {
        compression: Some(Compression::Gzip),
        ..Default::default()
    };
    assert!(unpack_layer(&tar[..], dir.path(), &opts).is_err());
    let opts = UnpackOptions {
        compression: Some(Compression::Zstd),
        ..Default::default()
    };
    assert!(unpack_layer(&gzip(&tar)[..], dir.path(), &opts).is_err());
    // Truncated gzip stream.
    let blob = gzip(&tar);
    let dir = tempfile::tempdir().unwrap();
    assert!(unpack_layer(
        &blob[..blob.len() / 2],
        dir.path(),
        &UnpackOptions::default()
    )
    .is_err());
}

#[test]
fn symlink_mtime_and_ownership_off() {
    let dir = tempfile::tempdir().unwrap();
    let opts = UnpackOptions {
        preserve_ownership: false,
        ..Default::default()
    };
    unpack_layer(&full_tar()[..], dir.path(), &opts).unwrap();
    let link = fs::symlink_metadata(dir.path().join("etc/link")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(link.mtime(), 1_600_000_000);
    let f = fs::symlink_metadata(dir.path().join("etc/file")).unwrap();
    assert_eq!(
        (f.uid(), f.gid()),
        (0, 0),
        "tar owner 1000:1001 not applied"
    );
    assert_eq!(f.mode() & 0o7777, 0o4755);
}
