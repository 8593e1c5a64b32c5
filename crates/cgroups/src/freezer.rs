//! Freezing and thawing: cgroup v1 `freezer.state` and cgroup v2
//! `cgroup.freeze` / `cgroup.events`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{CgroupError, Result};
use crate::fsutil;

/// How long a freeze may take before it is undone and reported.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Freezes a v1 cgroup and waits until `freezer.state` reads FROZEN.
///
/// v1 can get stuck in FREEZING while tasks fork; like runc, the write is
/// repeated, with an occasional thaw and short sleep, before giving up (and
/// thawing, since a half-frozen cgroup is worse than a running one).
pub(crate) fn freeze_v1(dir: &Path) -> Result<()> {
    let start = Instant::now();
    for i in 0u32.. {
        if i % 50 == 49 {
            fsutil::write_in(dir, "freezer.state", "THAWED")?;
            std::thread::sleep(Duration::from_millis(10));
        }
        fsutil::write_in(dir, "freezer.state", "FROZEN")?;
        if i % 25 == 24 {
            std::thread::sleep(Duration::from_micros(10));
        }
        let state = fsutil::read_in(dir, "freezer.state")?;
        match state.trim() {
            "FROZEN" => return Ok(()),
            "FREEZING" => {}
            other => {
                return Err(CgroupError::Parse {
                    path: dir.join("freezer.state"),
                    content: other.to_owned(),
                })
            }
        }
        if i >= 1000 || start.elapsed() > FREEZE_TIMEOUT {
            break;
        }
    }
    let _ = fsutil::write_in(dir, "freezer.state", "THAWED");
    Err(CgroupError::Timeout {
        what: "freezer.state to become FROZEN".into(),
        path: dir.to_owned(),
    })
}

/// Thaws a v1 cgroup.
pub(crate) fn thaw_v1(dir: &Path) -> Result<()> {
    fsutil::write_in(dir, "freezer.state", "THAWED")
}

/// Whether a v1 cgroup is frozen (FREEZING is waited out briefly).
pub(crate) fn is_frozen_v1(dir: &Path) -> Result<bool> {
    for _ in 0..100 {
        let state = fsutil::read_in(dir, "freezer.state")?;
        match state.trim() {
            "FROZEN" => return Ok(true),
            "THAWED" => return Ok(false),
            "FREEZING" => std::thread::sleep(Duration::from_millis(1)),
            other => {
                return Err(CgroupError::Parse {
                    path: dir.join("freezer.state"),
                    content: other.to_owned(),
                })
            }
        }
    }
    // Still in transition: not (yet) frozen.
    Ok(false)
}

fn v2_frozen(dir: &Path) -> Result<bool> {
    let events = fsutil::read_in(dir, "cgroup.events")?;
    Ok(fsutil::keyed_value(&events, "frozen") == Some(1))
}

/// Freezes a v2 cgroup and waits for `cgroup.events` to say `frozen 1`.
pub(crate) fn freeze_v2(dir: &Path) -> Result<()> {
    fsutil::write_in(dir, "cgroup.freeze", "1")?;
    let start = Instant::now();
    let mut delay = Duration::from_micros(100);
    loop {
        if v2_frozen(dir)? {
            return Ok(());
        }
        if start.elapsed() > FREEZE_TIMEOUT {
            let _ = fsutil::write_in(dir, "cgroup.freeze", "0");
            return Err(CgroupError::Timeout {
                what: "cgroup.events to report frozen 1".into(),
                path: dir.to_owned(),
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

/// Thaws a v2 cgroup.
pub(crate) fn thaw_v2(dir: &Path) -> Result<()> {
    fsutil::write_in(dir, "cgroup.freeze", "0")
}

/// Whether a v2 cgroup is frozen, per `cgroup.events`.
pub(crate) fn is_frozen_v2(dir: &Path) -> Result<bool> {
    v2_frozen(dir)
}
