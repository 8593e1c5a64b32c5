//! A disk cache of compiled filters. libseccomp takes 10-15 ms to compile docker's default
//! profile (~350 rules) on the development hosts, several times the rest of a container's start;
//! the engine starts the same profile over and over. Each entry holds the exact key it was made
//! for (the profile as JSON, libseccomp's version, the kernel release and the machine), and is used
//! only when that key matches byte for byte, so a hash collision or a changed libseccomp or kernel
//! can never load a wrong program. Entries are written to a temp file and renamed into place.
//! Any problem with the cache falls back to compiling.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use oci_spec::runtime::LinuxSeccomp;

use crate::{compile, CompiledFilter, SeccompError};

static CACHE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Caches compiled filters under `dir` for this process (the runtime sets it to a directory of
/// its state root, which only root can write). The first call wins.
pub fn set_cache_dir(dir: PathBuf) {
    let _ = CACHE_DIR.set(dir);
}

fn key(spec: &LinuxSeccomp) -> Option<Vec<u8>> {
    let uts = nix::sys::utsname::uname().ok()?;
    let v = libseccomp::ScmpVersion::current().ok()?;
    let mut k = format!(
        "berth-seccomp-cache 1\nlibseccomp {}.{}.{}\nkernel {}\nmachine {}\n",
        v.major,
        v.minor,
        v.micro,
        uts.release().to_string_lossy(),
        uts.machine().to_string_lossy()
    )
    .into_bytes();
    k.extend(serde_json::to_vec(spec).ok()?);
    Some(k)
}

fn entry_path(dir: &Path, key: &[u8]) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    dir.join(format!("{:016x}.bpf", h.finish()))
}

/// Entry layout: key length (u32 LE), key, flags (u64 LE), notify (u8), program.
fn decode(data: &[u8], key: &[u8]) -> Option<CompiledFilter> {
    let klen = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    if data.get(4..4 + klen)? != key {
        return None;
    }
    let rest = &data[4 + klen..];
    let flags = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let notify = *rest.get(8)? != 0;
    let program = crate::compile::parse_program(rest.get(9..)?).ok()?;
    Some(CompiledFilter::new(program, flags as libc::c_ulong, notify))
}

fn encode(key: &[u8], f: &CompiledFilter) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 16 + f.program().len() * 8);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    #[allow(clippy::unnecessary_cast)] // c_ulong is u32 on some targets
    out.extend_from_slice(&(f.flags() as u64).to_le_bytes());
    out.push(f.uses_notify() as u8);
    for ins in f.program() {
        out.extend_from_slice(&ins.code.to_ne_bytes());
        out.push(ins.jt);
        out.push(ins.jf);
        out.extend_from_slice(&ins.k.to_ne_bytes());
    }
    out
}

fn store(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// [`compile`], through the cache when one is set (see [`set_cache_dir`]).
pub fn compile_cached(spec: &LinuxSeccomp) -> Result<CompiledFilter, SeccompError> {
    match CACHE_DIR.get() {
        Some(dir) => compile_in(spec, dir),
        None => compile(spec),
    }
}

/// [`compile`] with the cache in `dir`.
pub fn compile_in(spec: &LinuxSeccomp, dir: &Path) -> Result<CompiledFilter, SeccompError> {
    let Some(k) = key(spec) else {
        return compile(spec);
    };
    let path = entry_path(dir, &k);
    if let Some(f) = std::fs::read(&path).ok().and_then(|d| decode(&d, &k)) {
        return Ok(f);
    }
    let f = compile(spec)?;
    let _ = store(dir, &path, &encode(&k, &f));
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder};

    fn profile(name: &str) -> LinuxSeccomp {
        LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![LinuxSyscallBuilder::default()
                .names(vec![name.to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .build()
                .unwrap()])
            .build()
            .unwrap()
    }

    #[test]
    fn cached_entries_equal_fresh_compiles_and_keys_are_exact() {
        let d = tempfile::tempdir().unwrap();
        let p = profile("mkdir");
        let fresh = compile(&p).unwrap();
        let first = compile_in(&p, d.path()).unwrap();
        let cached = compile_in(&p, d.path()).unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        for f in [&first, &cached] {
            assert_eq!(encode(b"k", f), encode(b"k", &fresh));
        }
        // Another profile: another entry, never the first one's program.
        let other = compile_in(&profile("rmdir"), d.path()).unwrap();
        assert_ne!(encode(b"k", &other), encode(b"k", &fresh));
        // A tampered entry whose key does not match is ignored (and replaced).
        let k = key(&p).unwrap();
        let path = entry_path(d.path(), &k);
        std::fs::write(&path, encode(b"another key", &other)).unwrap();
        let again = compile_in(&p, d.path()).unwrap();
        assert_eq!(encode(b"k", &again), encode(b"k", &fresh));
        // Truncated entries are ignored too.
        std::fs::write(&path, &encode(&k, &fresh)[..10]).unwrap();
        assert_eq!(
            encode(b"k", &compile_in(&p, d.path()).unwrap()),
            encode(b"k", &fresh)
        );
    }
}
