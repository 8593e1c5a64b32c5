//! cgroup v2 resource setters, translating the spec's v1-shaped values as
//! runc's fs2 driver does (see [`crate::convert`]). A missing interface file
//! is explained as a missing controller when the controller is not enabled
//! for the cgroup (its `cgroup.controllers`), else as a kernel limitation.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory};

use crate::convert;
use crate::error::{CgroupError, Result};
use crate::fsutil;

/// Controllers listed in `dir/cgroup.controllers`.
pub(crate) fn controllers(dir: &Path) -> Result<Vec<String>> {
    Ok(fsutil::read_in(dir, "cgroup.controllers")?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// Explains ENOENT on `dir/file` (see the module docs).
pub(crate) fn explain_missing(dir: &Path, file: &str, resource: &str) -> CgroupError {
    let controller = file.split('.').next().unwrap_or(file);
    if dir.is_dir() && controller != "cgroup" {
        if let Ok(list) = controllers(dir) {
            if !list.iter().any(|c| c == controller) {
                return CgroupError::ControllerMissing {
                    controller: controller.to_owned(),
                    resource: format!("{resource} ({})", dir.join(file).display()),
                };
            }
        }
    }
    fsutil::explain_missing(dir, file, resource)
}

/// Writes `value` to `dir/file`, explaining a missing file.
pub(crate) fn write(dir: &Path, file: &str, value: &str, resource: &str) -> Result<()> {
    fsutil::write_in(dir, file, value).map_err(|e| {
        if e.is_not_found() {
            explain_missing(dir, file, resource)
        } else {
            e
        }
    })
}

fn unsupported(what: &str) -> CgroupError {
    CgroupError::Unsupported(format!("{what} is not supported on cgroup v2"))
}

fn swap_for_v2(m: &LinuxMemory) -> Result<i64> {
    convert::memory_swap_to_v2(m.swap().unwrap_or(0), m.limit().unwrap_or(0)).map_err(|reason| {
        CgroupError::Invalid {
            field: "linux.resources.memory.swap".into(),
            reason,
        }
    })
}

/// Fails for memory values out of range or that cgroup v2 has no
/// equivalent for (no I/O; used before any write).
pub(crate) fn check_memory(m: &LinuxMemory) -> Result<()> {
    crate::v1::check_memory_values(m)?;
    swap_for_v2(m)?;
    if m.kernel().is_some_and(|k| k != 0) {
        return Err(unsupported(
            "linux.resources.memory.kernel (kernel memory is part of memory.max)",
        ));
    }
    if m.kernel_tcp().is_some_and(|k| k != 0) {
        return Err(unsupported(
            "linux.resources.memory.kernelTCP (kernel memory is part of memory.max)",
        ));
    }
    if m.swappiness().is_some_and(|s| s != u64::MAX) {
        return Err(unsupported(
            "linux.resources.memory.swappiness (there is no per-cgroup swappiness)",
        ));
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(unsupported("linux.resources.memory.disableOOMKiller"));
    }
    if m.use_hierarchy() == Some(false) {
        return Err(unsupported(
            "linux.resources.memory.useHierarchy=false (v2 is always hierarchical)",
        ));
    }
    Ok(())
}

/// memory.max, memory.swap.max (spec swap minus limit), memory.low.
pub(crate) fn set_memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    check_memory(m)?;
    let limit = m.limit().unwrap_or(0);
    let swap = m.swap().unwrap_or(0);
    if m.check_before_update() == Some(true) && limit > 0 {
        let usage = fsutil::read_u64(dir, "memory.current")?;
        if (limit as u64) < usage {
            return Err(CgroupError::Invalid {
                field: "linux.resources.memory.limit".into(),
                reason: format!(
                    "new limit {limit} is below the current usage {usage} (checkBeforeUpdate)"
                ),
            });
        }
    }
    let v2_swap = swap_for_v2(m)?;
    let mut swap_str = convert::v2_limit(v2_swap);
    if swap_str.is_none() && v2_swap == 0 && swap > 0 {
        // swap == limit: no swap at all.
        swap_str = Some("0".into());
    }
    if let Some(s) = swap_str {
        match write(dir, "memory.swap.max", &s, "linux.resources.memory.swap") {
            // Without swap accounting there is no swap to allow or forbid
            // beyond the host's; runc accepts "max" and "0" there too.
            Err(CgroupError::FileMissing { .. }) if s == "max" || s == "0" => {}
            r => r?,
        }
    }
    if let Some(v) = convert::v2_limit(limit) {
        match fsutil::write_in(dir, "memory.max", &v) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let usage = fsutil::read_u64(dir, "memory.current").unwrap_or(0);
                return Err(CgroupError::Invalid {
                    field: "linux.resources.memory.limit".into(),
                    reason: format!("cannot set memory.max to {v}: current usage {usage}"),
                });
            }
            r => r.map_err(|e| {
                if e.is_not_found() {
                    explain_missing(dir, "memory.max", "linux.resources.memory.limit")
                } else {
                    e
                }
            })?,
        }
    }
    if let Some(r) = m.reservation() {
        if let Some(v) = convert::v2_limit(r) {
            write(dir, "memory.low", &v, "linux.resources.memory.reservation")?;
        }
    }
    Ok(())
}

/// Fails for cpu settings cgroup v2 has no equivalent for.
pub(crate) fn check_cpu(c: &LinuxCpu) -> Result<()> {
    if c.realtime_period().is_some_and(|p| p != 0) || c.realtime_runtime().is_some_and(|r| r != 0) {
        return Err(unsupported(
            "linux.resources.cpu.realtimePeriod/realtimeRuntime (no realtime group scheduling)",
        ));
    }
    Ok(())
}

/// cpu.weight (from shares), cpu.max, cpu.max.burst, cpu.idle.
pub(crate) fn set_cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    check_cpu(c)?;
    // idle first: an idle group ignores its weight and the kernel refuses
    // writing one, so shares are only written to a non-idle group.
    if let Some(i) = c.idle() {
        write(dir, "cpu.idle", &i.to_string(), "linux.resources.cpu.idle")?;
    }
    if let Some(s) = c.shares().filter(|&s| s != 0 && c.idle().unwrap_or(0) == 0) {
        let w = convert::cpu_shares_to_weight(s);
        write(
            dir,
            "cpu.weight",
            &w.to_string(),
            "linux.resources.cpu.shares",
        )?;
    }
    let mut burst = c.burst().map(|b| b.to_string());
    if let Some(b) = &burst {
        // Fails when the new burst exceeds the old quota: retried below.
        if fsutil::write_in(dir, "cpu.max.burst", b).is_ok() {
            burst = None;
        }
    }
    if let Some(max) = convert::cpu_max(c.quota().unwrap_or(0), c.period().unwrap_or(0)) {
        write(dir, "cpu.max", &max, "linux.resources.cpu.quota/period")?;
    }
    if let Some(b) = burst {
        write(dir, "cpu.max.burst", &b, "linux.resources.cpu.burst")?;
    }
    Ok(())
}

/// Fails for blockIO settings cgroup v2 has no equivalent for.
pub(crate) fn check_io(b: &LinuxBlockIo) -> Result<()> {
    let leaf_dev = b
        .weight_device()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|d| d.leaf_weight().is_some());
    if b.leaf_weight().is_some_and(|w| w != 0) || leaf_dev {
        return Err(unsupported("linux.resources.blockIO leafWeight"));
    }
    Ok(())
}

/// io.bfq.weight (or io.weight, converted), per-device weights, io.max.
pub(crate) fn set_io(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    check_io(b)?;
    let mut bfq = true;
    // BFQ takes the blkio range as is; io.weight needs the conversion.
    let mut weight_write = |line_bfq: String, line_io: String, resource: &str| -> Result<()> {
        if bfq {
            match fsutil::write_in(dir, "io.bfq.weight", &line_bfq) {
                Err(e) if e.is_not_found() => bfq = false,
                r => return r,
            }
        }
        write(dir, "io.weight", &line_io, resource)
    };
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        let io = convert::blkio_weight_to_io_weight(w);
        weight_write(
            w.to_string(),
            io.to_string(),
            "linux.resources.blockIO.weight",
        )?;
    }
    for d in b.weight_device().as_deref().unwrap_or_default() {
        if let Some(w) = d.weight() {
            let io = convert::blkio_weight_to_io_weight(w);
            weight_write(
                convert::device_value_line(d.major(), d.minor(), u64::from(w)),
                convert::device_value_line(d.major(), d.minor(), io),
                "linux.resources.blockIO.weightDevice",
            )?;
        }
    }
    let throttles = [
        (
            b.throttle_read_bps_device(),
            "rbps",
            "throttleReadBpsDevice",
        ),
        (
            b.throttle_write_bps_device(),
            "wbps",
            "throttleWriteBpsDevice",
        ),
        (
            b.throttle_read_iops_device(),
            "riops",
            "throttleReadIOPSDevice",
        ),
        (
            b.throttle_write_iops_device(),
            "wiops",
            "throttleWriteIOPSDevice",
        ),
    ];
    for (list, key, field) in throttles {
        for d in list.as_deref().unwrap_or_default() {
            let line = convert::io_max_line(d.major(), d.minor(), key, d.rate());
            write(
                dir,
                "io.max",
                &line,
                &format!("linux.resources.blockIO.{field}"),
            )?;
        }
    }
    Ok(())
}

/// cpuset.cpus and cpuset.mems.
pub(crate) fn set_cpuset(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        write(dir, "cpuset.cpus", cpus, "linux.resources.cpu.cpus")?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        write(dir, "cpuset.mems", mems, "linux.resources.cpu.mems")?;
    }
    Ok(())
}

/// pids.max (same rules as v1).
pub(crate) fn set_pids(dir: &Path, limit: i64) -> Result<()> {
    if limit == 0 {
        return Ok(());
    }
    let v = if limit < 0 {
        "max".to_string()
    } else {
        limit.to_string()
    };
    write(dir, "pids.max", &v, "linux.resources.pids.limit")
}

/// Rejects unified keys that are not plain file names of this cgroup.
pub(crate) fn check_unified_key(key: &str) -> Result<()> {
    if key.is_empty() || key.contains('/') || key == "." || key == ".." || !key.contains('.') {
        return Err(CgroupError::Invalid {
            field: "linux.resources.unified".into(),
            reason: format!("{key:?} is not a cgroup interface file name"),
        });
    }
    Ok(())
}

/// Writes the spec's `unified` key/value pairs as they are.
pub(crate) fn set_unified(dir: &Path, unified: &HashMap<String, String>) -> Result<()> {
    for k in unified.keys() {
        check_unified_key(k)?;
    }
    // Sorted, so the result does not depend on hash order.
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    for k in keys {
        write(
            dir,
            k,
            &unified[k],
            &format!("linux.resources.unified[{k:?}]"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(json: &str) -> LinuxMemory {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn v1_only_settings_are_refused() {
        assert!(check_memory(&mem(r#"{"limit": 1, "swap": 2, "reservation": 1}"#)).is_ok());
        assert!(check_memory(&mem(r#"{"useHierarchy": true, "disableOOMKiller": false}"#)).is_ok());
        for bad in [
            r#"{"kernel": 1}"#,
            r#"{"kernelTCP": 1}"#,
            r#"{"swappiness": 10}"#,
            r#"{"disableOOMKiller": true}"#,
            r#"{"useHierarchy": false}"#,
        ] {
            let e = check_memory(&mem(bad)).unwrap_err().to_string();
            assert!(e.contains("not supported on cgroup v2"), "{bad}: {e}");
        }
        let cpu: LinuxCpu = serde_json::from_str(r#"{"realtimeRuntime": 1000}"#).unwrap();
        assert!(check_cpu(&cpu)
            .unwrap_err()
            .to_string()
            .contains("realtime"));
        let io: LinuxBlockIo = serde_json::from_str(r#"{"leafWeight": 10}"#).unwrap();
        assert!(check_io(&io).is_err());
        let io: LinuxBlockIo = serde_json::from_str(
            r#"{"weightDevice": [{"major": 8, "minor": 0, "leafWeight": 10}]}"#,
        )
        .unwrap();
        assert!(check_io(&io).is_err());
    }

    #[test]
    fn unified_keys() {
        assert!(check_unified_key("memory.high").is_ok());
        for bad in ["", "..", "memory", "a/b.c", "../x.y"] {
            assert!(check_unified_key(bad).is_err(), "{bad}");
        }
    }
}
