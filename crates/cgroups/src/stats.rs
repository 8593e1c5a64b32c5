//! Resource usage statistics, shaped and named exactly like the `data`
//! object of `runc events --stats` (runc's types/events.go), so tools that
//! parse runc's output (containerd's go-runc) parse ours. Fields Go tags
//! `omitempty` are skipped when zero or empty.
//!
//! Readers for v1 and v2 files follow runc's fs and fs2 drivers.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::convert;
use crate::error::{CgroupError, Result};
use crate::fsutil;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// All statistics of one container.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// CPU usage and throttling.
    pub cpu: Cpu,
    /// cpuset settings (v1 only).
    pub cpuset: CpuSet,
    /// Memory usage.
    pub memory: Memory,
    /// Process counts.
    pub pids: Pids,
    /// Block I/O.
    pub blkio: Blkio,
    /// Huge page usage by page size ("2MB").
    pub hugetlb: BTreeMap<String, Hugetlb>,
    /// Intel RDT (not collected; present for shape).
    pub intel_rdt: IntelRdt,
    /// Network interfaces (not collected by the cgroup manager).
    pub network_interfaces: Option<Vec<NetworkInterface>>,
}

/// Huge page usage.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hugetlb {
    /// Bytes in use.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak bytes (v1 only).
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Allocations that hit the limit.
    pub failcnt: u64,
}

/// One per-device block I/O counter.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioEntry {
    /// Device major number.
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    /// Device minor number.
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    /// "Read", "Write", "Sync", "Async", "Discard", "Total" or empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// Counter value.
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// Block I/O counters.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Blkio {
    /// Bytes transferred.
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// I/O operations.
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    /// Queued operations (CFQ).
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    /// Service time (CFQ).
    #[serde(
        rename = "ioServiceTimeRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    /// Wait time (CFQ).
    #[serde(rename = "ioWaitTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    /// Merged operations (CFQ).
    #[serde(rename = "ioMergedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    /// Disk time (CFQ).
    #[serde(rename = "ioTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    /// Sectors transferred (CFQ).
    #[serde(rename = "sectorsRecursive", skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// Process counts.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pids {
    /// Processes (tasks) now.
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// pids.max; 0 when unlimited.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// CFS throttling.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Throttling {
    /// Enforcement periods elapsed.
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    /// Periods in which the group was throttled.
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Total throttled time, ns.
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// CPU time, ns.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuUsage {
    /// Total CPU time.
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    /// Per CPU (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Per CPU in kernel mode (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    /// Per CPU in user mode (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    /// Kernel mode time.
    pub kernel: u64,
    /// User mode time.
    pub user: u64,
}

/// CPU statistics.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cpu {
    /// Usage.
    pub usage: CpuUsage,
    /// Throttling.
    pub throttling: Throttling,
}

/// cpuset configuration as runc reports it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuSet {
    /// CPUs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    /// cpuset.cpu_exclusive.
    pub cpu_exclusive: u64,
    /// Memory nodes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    /// cpuset.mem_hardwall.
    pub mem_hardwall: u64,
    /// cpuset.mem_exclusive.
    pub mem_exclusive: u64,
    /// cpuset.memory_migrate.
    pub memory_migrate: u64,
    /// cpuset.memory_spread_page.
    pub memory_spread_page: u64,
    /// cpuset.memory_spread_slab.
    pub memory_spread_slab: u64,
    /// cpuset.memory_pressure.
    pub memory_pressure: u64,
    /// cpuset.sched_load_balance.
    pub sched_load_balance: u64,
    /// cpuset.sched_relax_domain_level.
    pub sched_relax_domain_level: i64,
}

/// One memory counter group.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryEntry {
    /// Limit in bytes.
    pub limit: u64,
    /// Usage in bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak usage in bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Times the limit was hit.
    pub failcnt: u64,
}

/// Memory statistics.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    /// Page cache bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Memory+swap (v1 memsw; on v2 swap plus memory, as runc reports).
    pub swap: MemoryEntry,
    /// Kernel memory (v1).
    pub kernel: MemoryEntry,
    /// Kernel TCP memory (v1).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as is.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// Intel RDT statistics (not collected).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntelRdt {}

/// Network interface counters (Go field names, as runc emits them).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct NetworkInterface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

// ---- readers ----------------------------------------------------------

fn opt_u64(dir: &Path, file: &str) -> Result<u64> {
    Ok(fsutil::read_u64_opt(dir, file)?.unwrap_or(0))
}

fn numbers(path: &Path, s: &str) -> Result<Vec<u64>> {
    s.split_whitespace()
        .map(|t| fsutil::parse_u64(path, t))
        .collect()
}

/// Parses a cpu list like "0-3,8" into ids.
fn parse_list(path: &Path, s: &str) -> Result<Vec<u16>> {
    let bad = || CgroupError::Parse {
        path: path.to_owned(),
        content: s.trim().to_owned(),
    };
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u16 = a.parse().map_err(|_| bad())?;
        let b: u16 = b.parse().map_err(|_| bad())?;
        if b < a {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    Ok(out)
}

/// Huge page size names ("2MB", "1GB") from /sys/kernel/mm/hugepages.
pub(crate) fn hugepage_sizes() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<(u64, String)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some((kb, convert::hugepage_size_name(kb)))
        })
        .collect();
    sizes.sort();
    sizes.into_iter().map(|(_, n)| n).collect()
}

/// v1 cpuacct: usage, per-CPU usage split, user/system time.
pub(crate) fn cpuacct_v1(dir: &Path, st: &mut Stats) -> Result<()> {
    let u = &mut st.cpu.usage;
    u.total = opt_u64(dir, "cpuacct.usage")?;
    if let Some(s) = fsutil::read_opt(dir, "cpuacct.usage_percpu")? {
        u.percpu = numbers(&dir.join("cpuacct.usage_percpu"), &s)?;
    }
    if let Some(s) = fsutil::read_opt(dir, "cpuacct.usage_all")? {
        let path = dir.join("cpuacct.usage_all");
        for line in s.lines().skip(1) {
            let v = numbers(&path, line)?;
            if let [_, user, sys] = v[..] {
                u.percpu_user.push(user);
                u.percpu_kernel.push(sys);
            }
        }
    }
    if let Some(s) = fsutil::read_opt(dir, "cpuacct.stat")? {
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .map_or(100, |v| v as u64);
        u.user = convert::ticks_to_ns(fsutil::keyed_value(&s, "user").unwrap_or(0), hz);
        u.kernel = convert::ticks_to_ns(fsutil::keyed_value(&s, "system").unwrap_or(0), hz);
    }
    Ok(())
}

/// v1 cpu.stat throttling counters.
pub(crate) fn cpu_v1(dir: &Path, st: &mut Stats) -> Result<()> {
    if let Some(s) = fsutil::read_opt(dir, "cpu.stat")? {
        let t = &mut st.cpu.throttling;
        t.periods = fsutil::keyed_value(&s, "nr_periods").unwrap_or(0);
        t.throttled_periods = fsutil::keyed_value(&s, "nr_throttled").unwrap_or(0);
        t.throttled_time = fsutil::keyed_value(&s, "throttled_time").unwrap_or(0);
    }
    Ok(())
}

/// v1 cpuset settings.
pub(crate) fn cpuset_v1(dir: &Path, st: &mut Stats) -> Result<()> {
    let c = &mut st.cpuset;
    if let Some(s) = fsutil::read_opt(dir, "cpuset.cpus")? {
        c.cpus = parse_list(&dir.join("cpuset.cpus"), &s)?;
    }
    if let Some(s) = fsutil::read_opt(dir, "cpuset.mems")? {
        c.mems = parse_list(&dir.join("cpuset.mems"), &s)?;
    }
    c.cpu_exclusive = opt_u64(dir, "cpuset.cpu_exclusive")?;
    c.mem_hardwall = opt_u64(dir, "cpuset.mem_hardwall")?;
    c.mem_exclusive = opt_u64(dir, "cpuset.mem_exclusive")?;
    c.memory_migrate = opt_u64(dir, "cpuset.memory_migrate")?;
    c.memory_spread_page = opt_u64(dir, "cpuset.memory_spread_page")?;
    c.memory_spread_slab = opt_u64(dir, "cpuset.memory_spread_slab")?;
    c.memory_pressure = opt_u64(dir, "cpuset.memory_pressure")?;
    c.sched_load_balance = opt_u64(dir, "cpuset.sched_load_balance")?;
    if let Some(s) = fsutil::read_opt(dir, "cpuset.sched_relax_domain_level")? {
        c.sched_relax_domain_level = s.trim().parse().map_err(|_| CgroupError::Parse {
            path: dir.join("cpuset.sched_relax_domain_level"),
            content: s.trim().to_owned(),
        })?;
    }
    Ok(())
}

fn memory_entry_v1(dir: &Path, prefix: &str) -> Result<MemoryEntry> {
    Ok(MemoryEntry {
        usage: opt_u64(dir, &format!("{prefix}.usage_in_bytes"))?,
        max: opt_u64(dir, &format!("{prefix}.max_usage_in_bytes"))?,
        failcnt: opt_u64(dir, &format!("{prefix}.failcnt"))?,
        limit: opt_u64(dir, &format!("{prefix}.limit_in_bytes"))?,
    })
}

fn memory_raw(dir: &Path, m: &mut Memory) -> Result<()> {
    let path = dir.join("memory.stat");
    let s = fsutil::read(&path)?;
    m.raw = fsutil::keyed_pairs(&path, &s)?.into_iter().collect();
    Ok(())
}

/// v1 memory: memory.stat, usage, memsw, kmem, kmem.tcp.
pub(crate) fn memory_v1(dir: &Path, st: &mut Stats) -> Result<()> {
    let m = &mut st.memory;
    memory_raw(dir, m)?;
    m.cache = m.raw.get("cache").copied().unwrap_or(0);
    m.usage = memory_entry_v1(dir, "memory")?;
    m.swap = memory_entry_v1(dir, "memory.memsw")?;
    m.kernel = memory_entry_v1(dir, "memory.kmem")?;
    m.kernel_tcp = memory_entry_v1(dir, "memory.kmem.tcp")?;
    Ok(())
}

/// pids.current and pids.max (v1 and v2).
pub(crate) fn pids(dir: &Path, st: &mut Stats) -> Result<()> {
    st.pids.current = fsutil::read_u64(dir, "pids.current")?;
    let max = fsutil::read_u64(dir, "pids.max")?;
    st.pids.limit = if max == u64::MAX { 0 } else { max };
    Ok(())
}

/// Parses a v1 blkio statistics file ("8:0 Read 4096" or "8:0 4096").
fn blkio_entries(path: &Path, s: &str) -> Result<Vec<BlkioEntry>> {
    let mut out = Vec::new();
    for line in s.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some((ma, mi)) = f.first().and_then(|d| d.split_once(':')) else {
            continue; // "Total N"
        };
        let bad = || CgroupError::Parse {
            path: path.to_owned(),
            content: line.to_owned(),
        };
        let (op, value) = match f[..] {
            [_, op, v] => (op.to_owned(), v),
            [_, v] => (String::new(), v),
            _ => return Err(bad()),
        };
        out.push(BlkioEntry {
            major: ma.parse().map_err(|_| bad())?,
            minor: mi.parse().map_err(|_| bad())?,
            op,
            value: value.parse().map_err(|_| bad())?,
        });
    }
    Ok(out)
}

/// v1 blkio: the first group of files (BFQ, CFQ, throttle recursive,
/// throttle) whose first file has entries, as runc chooses.
pub(crate) fn blkio_v1(dir: &Path, st: &mut Stats) -> Result<()> {
    type Field = fn(&mut Blkio) -> &mut Vec<BlkioEntry>;
    let groups: [&[(&str, Field)]; 4] = [
        &[
            ("blkio.bfq.io_service_bytes_recursive", |b| {
                &mut b.io_service_bytes_recursive
            }),
            ("blkio.bfq.io_serviced_recursive", |b| {
                &mut b.io_serviced_recursive
            }),
        ],
        &[
            ("blkio.io_service_bytes_recursive", |b| {
                &mut b.io_service_bytes_recursive
            }),
            ("blkio.io_serviced_recursive", |b| {
                &mut b.io_serviced_recursive
            }),
            ("blkio.io_queued_recursive", |b| &mut b.io_queued_recursive),
            ("blkio.io_service_time_recursive", |b| {
                &mut b.io_service_time_recursive
            }),
            ("blkio.io_wait_time_recursive", |b| {
                &mut b.io_wait_time_recursive
            }),
            ("blkio.io_merged_recursive", |b| &mut b.io_merged_recursive),
            ("blkio.time_recursive", |b| &mut b.io_time_recursive),
            ("blkio.sectors_recursive", |b| &mut b.sectors_recursive),
        ],
        &[
            ("blkio.throttle.io_service_bytes_recursive", |b| {
                &mut b.io_service_bytes_recursive
            }),
            ("blkio.throttle.io_serviced_recursive", |b| {
                &mut b.io_serviced_recursive
            }),
        ],
        &[
            ("blkio.throttle.io_service_bytes", |b| {
                &mut b.io_service_bytes_recursive
            }),
            ("blkio.throttle.io_serviced", |b| {
                &mut b.io_serviced_recursive
            }),
        ],
    ];
    for group in groups {
        let mut found = false;
        for (i, (file, field)) in group.iter().enumerate() {
            let Some(s) = fsutil::read_opt(dir, file)? else {
                if i == 0 {
                    break;
                }
                continue;
            };
            let entries = blkio_entries(&dir.join(file), &s)?;
            if i == 0 && entries.is_empty() {
                break;
            }
            found = true;
            *field(&mut st.blkio) = entries;
        }
        if found {
            return Ok(());
        }
    }
    Ok(())
}

/// v1 hugetlb usage per page size.
pub(crate) fn hugetlb_v1(dir: &Path, st: &mut Stats, sizes: &[String]) -> Result<()> {
    for s in sizes {
        let p = format!("hugetlb.{s}");
        st.hugetlb.insert(
            s.clone(),
            Hugetlb {
                usage: opt_u64(dir, &format!("{p}.usage_in_bytes"))?,
                max: opt_u64(dir, &format!("{p}.max_usage_in_bytes"))?,
                failcnt: opt_u64(dir, &format!("{p}.failcnt"))?,
            },
        );
    }
    Ok(())
}

/// v2 hugetlb usage per page size (current, and events' max as failcnt).
pub(crate) fn hugetlb_v2(dir: &Path, st: &mut Stats, sizes: &[String]) -> Result<()> {
    for s in sizes {
        let usage = opt_u64(dir, &format!("hugetlb.{s}.current"))?;
        let events = fsutil::read_opt(dir, &format!("hugetlb.{s}.events"))?.unwrap_or_default();
        st.hugetlb.insert(
            s.clone(),
            Hugetlb {
                usage,
                max: 0,
                failcnt: fsutil::keyed_value(&events, "max").unwrap_or(0),
            },
        );
    }
    Ok(())
}

/// v2 cpu.stat: usage, user/system and throttling (µs to ns).
pub(crate) fn cpu_v2(dir: &Path, st: &mut Stats) -> Result<()> {
    let s = fsutil::read_in(dir, "cpu.stat")?;
    let k = |key| fsutil::keyed_value(&s, key).unwrap_or(0);
    st.cpu.usage.total = k("usage_usec") * 1000;
    st.cpu.usage.user = k("user_usec") * 1000;
    st.cpu.usage.kernel = k("system_usec") * 1000;
    st.cpu.throttling.periods = k("nr_periods");
    st.cpu.throttling.throttled_periods = k("nr_throttled");
    st.cpu.throttling.throttled_time = k("throttled_usec") * 1000;
    Ok(())
}

/// v2 memory: memory.stat, current/max/peak, and swap reported as
/// memory+swap like v1 (as runc does).
pub(crate) fn memory_v2(dir: &Path, st: &mut Stats) -> Result<()> {
    let m = &mut st.memory;
    memory_raw(dir, m)?;
    m.cache = m.raw.get("file").copied().unwrap_or(0);
    m.usage.usage = fsutil::read_u64(dir, "memory.current")?;
    m.usage.limit = fsutil::read_u64(dir, "memory.max")?;
    m.usage.max = opt_u64(dir, "memory.peak")?;
    if let Some(swap) = fsutil::read_u64_opt(dir, "memory.swap.current")? {
        m.swap.usage = swap + m.usage.usage;
        let limit = opt_u64(dir, "memory.swap.max")?;
        m.swap.limit = if limit == u64::MAX {
            limit
        } else {
            limit.saturating_add(m.usage.limit)
        };
        m.swap.max = opt_u64(dir, "memory.swap.peak")?;
    }
    Ok(())
}

/// v2 io.stat: bytes and operations per device.
pub(crate) fn io_v2(dir: &Path, st: &mut Stats) -> Result<()> {
    let Some(s) = fsutil::read_opt(dir, "io.stat")? else {
        return Ok(());
    };
    for line in s.lines() {
        let mut f = line.split_whitespace();
        let Some((ma, mi)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut st.blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut st.blkio.io_service_bytes_recursive, "Write"),
                "rios" => (&mut st.blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut st.blkio.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_runc() {
        let mut st = Stats::default();
        st.cpu.usage.total = 5;
        st.memory.usage.limit = 7;
        st.memory.raw.insert("cache".into(), 1);
        st.pids.current = 1;
        st.hugetlb.insert("2MB".into(), Hugetlb::default());
        st.blkio.io_service_bytes_recursive.push(BlkioEntry {
            major: 8,
            minor: 0,
            op: "Read".into(),
            value: 9,
        });
        let v: serde_json::Value = serde_json::to_value(&st).unwrap();
        assert_eq!(v["cpu"]["usage"]["total"], 5);
        assert_eq!(v["cpu"]["usage"]["kernel"], 0);
        assert!(v["cpu"]["usage"].get("percpu").is_none());
        assert_eq!(v["cpu"]["throttling"], serde_json::json!({}));
        assert_eq!(
            v["memory"]["usage"],
            serde_json::json!({"limit": 7, "failcnt": 0})
        );
        assert_eq!(
            v["memory"]["kernelTCP"],
            serde_json::json!({"limit": 0, "failcnt": 0})
        );
        assert_eq!(v["memory"]["raw"]["cache"], 1);
        assert_eq!(v["pids"], serde_json::json!({"current": 1}));
        assert_eq!(v["hugetlb"]["2MB"], serde_json::json!({"failcnt": 0}));
        assert_eq!(
            v["blkio"]["ioServiceBytesRecursive"][0],
            serde_json::json!({"major": 8, "op": "Read", "value": 9})
        );
        assert_eq!(v["cpuset"]["sched_relax_domain_level"], 0);
        assert_eq!(v["intel_rdt"], serde_json::json!({}));
        assert!(v["network_interfaces"].is_null());
        // And runc's own output parses back.
        let runc = r#"{"cpu":{"usage":{"total":13453980,"percpu":[5475556,7978424],
            "percpu_kernel":[0,8000000],"percpu_user":[0,0],"kernel":10000000,"user":0},
            "throttling":{}},"cpuset":{"cpus":[0,1],"cpu_exclusive":0,"mems":[0],
            "sched_load_balance":1,"sched_relax_domain_level":-1},
            "memory":{"usage":{"limit":9223372036854771712,"usage":737280,"max":2768896,"failcnt":0},
            "kernelTCP":{"limit":9223372036854771712,"failcnt":0},"raw":{"rss":49152}},
            "pids":{"current":1},"blkio":{},"hugetlb":{},"intel_rdt":{},"network_interfaces":null}"#;
        let back: Stats = serde_json::from_str(runc).unwrap();
        assert_eq!(back.cpu.usage.percpu_kernel, vec![0, 8_000_000]);
        assert_eq!(back.cpuset.sched_relax_domain_level, -1);
        assert_eq!(back.memory.raw["rss"], 49152);
    }

    #[test]
    fn parses_lists_and_blkio() {
        let p = Path::new("x");
        assert_eq!(parse_list(p, "0-2,5\n").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_list(p, "\n").unwrap(), Vec::<u16>::new());
        assert!(parse_list(p, "3-1").is_err());
        let e = blkio_entries(p, "8:0 Read 10\n8:0 Write 0\n8:16 7\nTotal 10\n").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].op, "Read");
        assert_eq!(e[2].minor, 16);
        assert_eq!(e[2].op, "");
    }
}
