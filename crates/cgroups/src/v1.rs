//! cgroup v1 resource setters, one function per controller. Each takes the
//! container's directory in that controller's hierarchy. Unset (`None` or,
//! as in runc, 0) fields are not written.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxRdma};

use crate::convert;
use crate::error::{CgroupError, Result};
use crate::fsutil;

/// Writes `value` to `dir/file`; a missing file is explained in terms of
/// the spec field `resource`.
pub(crate) fn write(dir: &Path, file: &str, value: &str, resource: &str) -> Result<()> {
    fsutil::write_in(dir, file, value).map_err(|e| {
        if e.is_not_found() {
            fsutil::explain_missing(dir, file, resource)
        } else {
            e
        }
    })
}

fn invalid(field: &str, reason: String) -> CgroupError {
    CgroupError::Invalid {
        field: field.to_owned(),
        reason,
    }
}

/// Rejects negative limits other than -1 ("unlimited").
pub(crate) fn check_limit(field: &str, v: i64) -> Result<()> {
    if v < -1 {
        return Err(invalid(
            field,
            format!("{v} is negative (use -1 for unlimited)"),
        ));
    }
    Ok(())
}

fn set_mem_limit(dir: &Path, limit: i64) -> Result<()> {
    let value = limit.to_string();
    match fsutil::write_in(dir, "memory.limit_in_bytes", &value) {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let usage = fsutil::read_u64(dir, "memory.usage_in_bytes").unwrap_or(0);
            let peak = fsutil::read_u64(dir, "memory.max_usage_in_bytes").unwrap_or(0);
            Err(invalid(
                "linux.resources.memory.limit",
                format!(
                    "cannot set {} to {limit}: current usage {usage}, peak usage {peak}",
                    dir.join("memory.limit_in_bytes").display()
                ),
            ))
        }
        r => r.map_err(|e| {
            if e.is_not_found() {
                fsutil::explain_missing(
                    dir,
                    "memory.limit_in_bytes",
                    "linux.resources.memory.limit",
                )
            } else {
                e
            }
        }),
    }
}

fn set_swap(dir: &Path, swap: i64, implicit: bool) -> Result<()> {
    match write(
        dir,
        "memory.memsw.limit_in_bytes",
        &swap.to_string(),
        "linux.resources.memory.swap (swap accounting)",
    ) {
        // An implied "unlimited swap" needs no swap accounting.
        Err(CgroupError::FileMissing { .. }) if implicit => Ok(()),
        r => r,
    }
}

/// Rejects out-of-range memory values (no I/O; used before any write).
pub(crate) fn check_memory_values(m: &LinuxMemory) -> Result<()> {
    let fields = [
        (m.limit(), "limit"),
        (m.swap(), "swap"),
        (m.reservation(), "reservation"),
        (m.kernel(), "kernel"),
        (m.kernel_tcp(), "kernelTCP"),
    ];
    for (v, name) in fields {
        if let Some(v) = v {
            check_limit(&format!("linux.resources.memory.{name}"), v)?;
        }
    }
    // u64::MAX is -1 ("unset") as written by some tools.
    if let Some(s) = m.swappiness().filter(|&s| s != u64::MAX && s > 100) {
        return Err(invalid(
            "linux.resources.memory.swappiness",
            format!("{s} is not in 0..=100"),
        ));
    }
    Ok(())
}

/// Rejects out-of-range v1 cpu values (no I/O).
pub(crate) fn check_cpu_values(c: &LinuxCpu) -> Result<()> {
    if let Some(s) = c.shares().filter(|&s| s != 0) {
        if !(convert::MIN_CPU_SHARES..=convert::MAX_CPU_SHARES).contains(&s) {
            return Err(invalid(
                "linux.resources.cpu.shares",
                format!(
                    "{s} is not in {}..={}",
                    convert::MIN_CPU_SHARES,
                    convert::MAX_CPU_SHARES
                ),
            ));
        }
    }
    Ok(())
}

/// memory: limit, swap (memory+swap), reservation, kernel, kernelTCP,
/// swappiness, disableOOMKiller, useHierarchy, checkBeforeUpdate.
pub(crate) fn set_memory(dir: &Path, m: &LinuxMemory, updating: bool) -> Result<()> {
    check_memory_values(m)?;
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    if m.check_before_update() == Some(true) && limit > 0 {
        let usage = fsutil::read_u64(dir, "memory.usage_in_bytes")?;
        if (limit as u64) < usage {
            return Err(invalid(
                "linux.resources.memory.limit",
                format!("new limit {limit} is below the current usage {usage} (checkBeforeUpdate)"),
            ));
        }
    }
    let implicit = limit == -1 && swap == 0;
    if implicit {
        swap = -1;
    }
    if limit != 0 && swap != 0 {
        // Order the two writes so each fits the kernel's check that
        // memsw >= memory at every step.
        let cur = fsutil::read_u64(dir, "memory.limit_in_bytes")?;
        if swap == -1 || cur < swap as u64 {
            set_swap(dir, swap, implicit)?;
            set_mem_limit(dir, limit)?;
        } else {
            set_mem_limit(dir, limit)?;
            set_swap(dir, swap, implicit)?;
        }
    } else if limit != 0 {
        set_mem_limit(dir, limit)?;
    } else if swap != 0 {
        set_swap(dir, swap, false)?;
    }
    if let Some(r) = m.reservation().filter(|&r| r != 0) {
        write(
            dir,
            "memory.soft_limit_in_bytes",
            &r.to_string(),
            "linux.resources.memory.reservation",
        )?;
    }
    if let Some(k) = m.kernel().filter(|&k| k != 0) {
        write(
            dir,
            "memory.kmem.limit_in_bytes",
            &k.to_string(),
            "linux.resources.memory.kernel",
        )?;
        // Linux 5.16+ accepts and ignores the write: say so instead.
        let now = fsutil::read_u64(dir, "memory.kmem.limit_in_bytes")?;
        if k > 0 && now > k as u64 + 4096 {
            return Err(CgroupError::Unsupported(format!(
                "linux.resources.memory.kernel is not supported by this kernel: {} ignores limits",
                dir.join("memory.kmem.limit_in_bytes").display()
            )));
        }
    }
    if let Some(k) = m.kernel_tcp().filter(|&k| k != 0) {
        write(
            dir,
            "memory.kmem.tcp.limit_in_bytes",
            &k.to_string(),
            "linux.resources.memory.kernelTCP",
        )?;
    }
    if let Some(s) = m.swappiness().filter(|&s| s != u64::MAX) {
        write(
            dir,
            "memory.swappiness",
            &s.to_string(),
            "linux.resources.memory.swappiness",
        )?;
    }
    match m.disable_oom_killer() {
        Some(true) => write(
            dir,
            "memory.oom_control",
            "1",
            "linux.resources.memory.disableOOMKiller",
        )?,
        Some(false) if updating => write(
            dir,
            "memory.oom_control",
            "0",
            "linux.resources.memory.disableOOMKiller",
        )?,
        _ => {}
    }
    if let Some(h) = m.use_hierarchy() {
        let v = if h { "1" } else { "0" };
        match fsutil::write_in(dir, "memory.use_hierarchy", v) {
            Err(e) if !h && e.raw_os_error() == Some(libc::EINVAL) => {
                return Err(CgroupError::Unsupported(
                    "linux.resources.memory.useHierarchy=false is not supported by this kernel: \
                     memory.use_hierarchy is always 1"
                        .into(),
                ))
            }
            r => r?,
        }
    }
    Ok(())
}

/// cpu: shares, cfs period/quota/burst, idle, realtime period/runtime.
pub(crate) fn set_cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    check_cpu_values(c)?;
    // idle first: an idle group ignores its weight and the kernel refuses
    // writing one, so shares are only written to a non-idle group.
    if let Some(i) = c.idle() {
        write(dir, "cpu.idle", &i.to_string(), "linux.resources.cpu.idle")?;
    }
    if let Some(s) = c.shares().filter(|&s| s != 0 && c.idle().unwrap_or(0) == 0) {
        write(
            dir,
            "cpu.shares",
            &s.to_string(),
            "linux.resources.cpu.shares",
        )?;
    }
    let period = c.period().unwrap_or(0);
    let quota = c.quota().unwrap_or(0);
    let mut burst = c.burst();
    let mut period_pending = false;
    if period != 0 {
        match fsutil::write_in(dir, "cpu.cfs_period_us", &period.to_string()) {
            // A smaller period can be refused until the quota shrinks too:
            // retry after writing the quota.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && quota != 0 => period_pending = true,
            r => r.map_err(|e| {
                if e.is_not_found() {
                    fsutil::explain_missing(dir, "cpu.cfs_period_us", "linux.resources.cpu.period")
                } else {
                    e
                }
            })?,
        }
    }
    if quota != 0 {
        let q = quota.to_string();
        match fsutil::write_in(dir, "cpu.cfs_quota_us", &q) {
            // The old burst may exceed the new quota: lower it first.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && burst.is_some() => {
                let b = burst.take().unwrap_or(0);
                write(
                    dir,
                    "cpu.cfs_burst_us",
                    &b.to_string(),
                    "linux.resources.cpu.burst",
                )?;
                write(dir, "cpu.cfs_quota_us", &q, "linux.resources.cpu.quota")?;
            }
            r => r.map_err(|e| {
                if e.is_not_found() {
                    fsutil::explain_missing(dir, "cpu.cfs_quota_us", "linux.resources.cpu.quota")
                } else {
                    e
                }
            })?,
        }
        if period_pending {
            write(
                dir,
                "cpu.cfs_period_us",
                &period.to_string(),
                "linux.resources.cpu.period",
            )?;
        }
    }
    if let Some(b) = burst {
        write(
            dir,
            "cpu.cfs_burst_us",
            &b.to_string(),
            "linux.resources.cpu.burst",
        )?;
    }
    if let Some(p) = c.realtime_period().filter(|&p| p != 0) {
        write(
            dir,
            "cpu.rt_period_us",
            &p.to_string(),
            "linux.resources.cpu.realtimePeriod",
        )?;
    }
    if let Some(r) = c.realtime_runtime().filter(|&r| r != 0) {
        write(
            dir,
            "cpu.rt_runtime_us",
            &r.to_string(),
            "linux.resources.cpu.realtimeRuntime",
        )?;
    }
    Ok(())
}

/// cpuset: cpus, mems (same file names on v1 and v2).
pub(crate) fn set_cpuset(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        write(dir, "cpuset.cpus", cpus, "linux.resources.cpu.cpus")?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        write(dir, "cpuset.mems", mems, "linux.resources.cpu.mems")?;
    }
    Ok(())
}

/// pids.max: like runc, 0 leaves it unset and a negative limit is "max".
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

/// blkio: weight, leafWeight, weightDevice, throttle*. Uses the CFQ file
/// names (blkio.weight...) and falls back to BFQ's (blkio.bfq.weight...).
pub(crate) fn set_blkio(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    let mut bfq = false;
    let mut weight_write = |name: &str, value: &str, resource: &str| -> Result<()> {
        if !bfq {
            match fsutil::write_in(dir, &format!("blkio.{name}"), value) {
                Err(e) if e.is_not_found() => bfq = true,
                r => return r,
            }
        }
        write(dir, &format!("blkio.bfq.{name}"), value, resource)
    };
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        weight_write("weight", &w.to_string(), "linux.resources.blockIO.weight")?;
    }
    if let Some(w) = b.leaf_weight().filter(|&w| w != 0) {
        write(
            dir,
            "blkio.leaf_weight",
            &w.to_string(),
            "linux.resources.blockIO.leafWeight",
        )?;
    }
    for d in b.weight_device().as_deref().unwrap_or_default() {
        if let Some(w) = d.weight() {
            let line = convert::device_value_line(d.major(), d.minor(), u64::from(w));
            weight_write(
                "weight_device",
                &line,
                "linux.resources.blockIO.weightDevice",
            )?;
        }
        if let Some(w) = d.leaf_weight() {
            let line = convert::device_value_line(d.major(), d.minor(), u64::from(w));
            write(
                dir,
                "blkio.leaf_weight_device",
                &line,
                "linux.resources.blockIO.weightDevice.leafWeight",
            )?;
        }
    }
    let throttles = [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
            "throttleReadBpsDevice",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
            "throttleWriteBpsDevice",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
            "throttleReadIOPSDevice",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
            "throttleWriteIOPSDevice",
        ),
    ];
    for (list, file, field) in throttles {
        for d in list.as_deref().unwrap_or_default() {
            let line = convert::device_value_line(d.major(), d.minor(), d.rate());
            write(
                dir,
                file,
                &line,
                &format!("linux.resources.blockIO.{field}"),
            )?;
        }
    }
    Ok(())
}

/// Rejects page sizes that are not like "2MB" (they become file names).
pub(crate) fn check_page_size(ps: &str) -> Result<()> {
    if ps.is_empty() || !ps.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid(
            "linux.resources.hugepageLimits.pageSize",
            format!("{ps:?} is not a page size like \"2MB\""),
        ));
    }
    Ok(())
}

/// hugetlb with either file naming: `limit_suffix` is ".limit_in_bytes"
/// (v1) or ".max" (v2). The reservation limit (".rsvd" + suffix) is set too
/// where the kernel has it, as runc does.
pub(crate) fn set_hugetlb_files(
    dir: &Path,
    limits: &[LinuxHugepageLimit],
    limit_suffix: &str,
) -> Result<()> {
    let mut rsvd = true;
    for l in limits {
        let ps = l.page_size();
        check_page_size(ps)?;
        let value = if l.limit() < 0 && limit_suffix == ".max" {
            "max".to_string()
        } else {
            l.limit().to_string()
        };
        let file = format!("hugetlb.{ps}{limit_suffix}");
        fsutil::write_in(dir, &file, &value).map_err(|e| {
            if e.is_not_found() && dir.is_dir() {
                CgroupError::Unsupported(format!(
                    "hugetlb page size {ps:?} is not supported on this host: {} does not exist",
                    dir.join(&file).display()
                ))
            } else if e.is_not_found() {
                fsutil::explain_missing(dir, &file, "linux.resources.hugepageLimits")
            } else {
                e
            }
        })?;
        if rsvd {
            match fsutil::write_in(dir, &format!("hugetlb.{ps}.rsvd{limit_suffix}"), &value) {
                Err(e) if e.is_not_found() => rsvd = false,
                r => r?,
            }
        }
    }
    Ok(())
}

/// net_cls.classid.
pub(crate) fn set_net_cls(dir: &Path, class_id: u32) -> Result<()> {
    write(
        dir,
        "net_cls.classid",
        &class_id.to_string(),
        "linux.resources.network.classID",
    )
}

/// net_prio.ifpriomap, one interface per write.
pub(crate) fn set_net_prio(
    dir: &Path,
    prios: &[oci_spec::runtime::LinuxInterfacePriority],
) -> Result<()> {
    for p in prios {
        let line = format!("{} {}", p.name(), p.priority());
        write(
            dir,
            "net_prio.ifpriomap",
            &line,
            "linux.resources.network.priorities",
        )?;
    }
    Ok(())
}

/// rdma.max (same format on v1 and v2).
pub(crate) fn set_rdma(dir: &Path, rdma: &HashMap<String, LinuxRdma>) -> Result<()> {
    for (dev, r) in rdma {
        if let Some(line) = convert::rdma_line(dev, r.hca_handles(), r.hca_objects()) {
            write(dir, "rdma.max", &line, "linux.resources.rdma")?;
        }
    }
    Ok(())
}
