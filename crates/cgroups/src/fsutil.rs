//! Small file helpers for cgroup filesystems: one open and one write per
//! value, no existence checks up front (a missing file shows up as ENOENT and
//! is explained by the caller), `mkdir -p` that reports what it created, and
//! `rmdir` that removes child cgroups first and retries on EBUSY.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{CgroupError, Result};

/// Writes `value` to `path` with a single write(2), as cgroup files expect.
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    let err = |source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    };
    let mut f = fs::OpenOptions::new().write(true).open(path).map_err(err)?;
    let n = f.write(value.as_bytes()).map_err(err)?;
    if n != value.len() {
        return Err(err(std::io::Error::new(
            ErrorKind::WriteZero,
            format!("short write ({n} of {} bytes)", value.len()),
        )));
    }
    Ok(())
}

/// Writes `value` to `dir/file`.
pub(crate) fn write_in(dir: &Path, file: &str, value: &str) -> Result<()> {
    write(&dir.join(file), value)
}

/// Reads a whole (small) file: open, read until EOF, close. (No fstat for
/// a size hint: cgroup and proc files report size 0 or 4096 anyway.)
pub(crate) fn read(path: &Path) -> Result<String> {
    let err = |source| CgroupError::Read {
        path: path.to_owned(),
        source,
    };
    let mut f = fs::File::open(path).map_err(err)?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        let start = buf.len();
        buf.resize(buf.capacity(), 0);
        match f.read(&mut buf[start..]) {
            Ok(0) => {
                buf.truncate(start);
                break;
            }
            Ok(n) => buf.truncate(start + n),
            Err(e) if e.kind() == ErrorKind::Interrupted => buf.truncate(start),
            Err(e) => return Err(err(e)),
        }
    }
    String::from_utf8(buf).map_err(|e| CgroupError::Parse {
        path: path.to_owned(),
        content: String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Reads `dir/file`.
pub(crate) fn read_in(dir: &Path, file: &str) -> Result<String> {
    read(&dir.join(file))
}

/// Reads `dir/file`, mapping ENOENT to `None`.
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>> {
    match read_in(dir, file) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parses one unsigned number; "max" reads as `u64::MAX` (cgroup v2 style).
pub(crate) fn parse_u64(path: &Path, s: &str) -> Result<u64> {
    let t = s.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse().map_err(|_| CgroupError::Parse {
        path: path.to_owned(),
        content: t.to_owned(),
    })
}

/// Reads `dir/file` as one number (see [`parse_u64`]).
pub(crate) fn read_u64(dir: &Path, file: &str) -> Result<u64> {
    let path = dir.join(file);
    let s = read(&path)?;
    parse_u64(&path, &s)
}

/// Reads `dir/file` as one number; ENOENT gives `None`.
pub(crate) fn read_u64_opt(dir: &Path, file: &str) -> Result<Option<u64>> {
    let path = dir.join(file);
    match read(&path) {
        Ok(s) => parse_u64(&path, &s).map(Some),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Looks up `key` in flat-keyed content ("key value" lines).
pub(crate) fn keyed_value(content: &str, key: &str) -> Option<u64> {
    content.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Parses flat-keyed content into (key, value) pairs; malformed lines are an
/// error naming `path`.
pub(crate) fn keyed_pairs(path: &Path, content: &str) -> Result<Vec<(String, u64)>> {
    content
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let parsed = l
                .split_once(' ')
                .and_then(|(k, v)| Some((k.to_owned(), v.trim().parse().ok()?)));
            parsed.ok_or_else(|| CgroupError::Parse {
                path: path.to_owned(),
                content: l.to_owned(),
            })
        })
        .collect()
}

/// `mkdir -p path`, appending the directories it created (top-down) to
/// `created`. An existing directory is fine.
pub(crate) fn mkdir_p(path: &Path, created: &mut Vec<PathBuf>) -> Result<()> {
    let err = |source| CgroupError::Dir {
        op: "create",
        path: path.to_owned(),
        source,
    };
    match fs::create_dir(path) {
        Ok(()) => {
            created.push(path.to_owned());
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let parent = path.parent().ok_or_else(|| err(e))?;
            mkdir_p(parent, created)?;
            match fs::create_dir(path) {
                Ok(()) => {
                    created.push(path.to_owned());
                    Ok(())
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(err(e)),
            }
        }
        Err(e) => Err(err(e)),
    }
}

/// Removes a cgroup directory and its child cgroups. Absent is fine; EBUSY
/// (tasks still exiting) is retried a few times with a growing delay.
pub(crate) fn remove_cgroup_dir(path: &Path) -> Result<()> {
    let err = |source| CgroupError::Dir {
        op: "remove",
        path: path.to_owned(),
        source,
    };
    let mut delay = Duration::from_millis(10);
    for attempt in 0..6 {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::ENOTEMPTY)) => {
                if attempt == 5 {
                    return Err(err(e));
                }
                remove_children(path)?;
                if attempt > 0 {
                    std::thread::sleep(delay);
                    delay *= 2;
                }
            }
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}

fn remove_children(path: &Path) -> Result<()> {
    let entries = match fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_cgroup_dir(&entry.path())?;
        }
    }
    Ok(())
}

/// Pids listed in `dir/cgroup.procs`.
pub(crate) fn read_procs(dir: &Path) -> Result<Vec<i32>> {
    let path = dir.join("cgroup.procs");
    let s = read(&path)?;
    s.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.trim().parse().map_err(|_| CgroupError::Parse {
                path: path.clone(),
                content: l.to_owned(),
            })
        })
        .collect()
}

/// Pids in `dir` and every cgroup below it.
pub(crate) fn read_procs_recursive(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    out.extend(read_procs(dir)?);
    let entries = fs::read_dir(dir).map_err(|source| CgroupError::Read {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            match read_procs_recursive(&entry.path(), out) {
                // A child cgroup removed while we walk is not an error.
                Err(e) if e.is_not_found() => {}
                r => r?,
            }
        }
    }
    Ok(())
}

/// Explains an ENOENT on `dir/file`: either the cgroup itself is missing
/// (create() not called, or already destroyed) or the kernel lacks the file.
pub(crate) fn explain_missing(dir: &Path, file: &str, resource: &str) -> CgroupError {
    if !dir.is_dir() {
        return CgroupError::Dir {
            op: "use",
            path: dir.to_owned(),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
    }
    CgroupError::FileMissing {
        resource: resource.to_owned(),
        path: dir.join(file),
    }
}
