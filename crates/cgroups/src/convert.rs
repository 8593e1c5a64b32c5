//! Pure translations from the runtime-spec's (cgroup v1 shaped) resource
//! values to cgroup file contents, following runc (libcontainer/cgroups and
//! fs2) so a spec means the same under Berth as under runc.

/// Highest cgroup v1 `cpu.shares` (kernel MAX_SHARES = 1 << 18).
pub const MAX_CPU_SHARES: u64 = 1 << 18;
/// Lowest cgroup v1 `cpu.shares` (kernel MIN_SHARES).
pub const MIN_CPU_SHARES: u64 = 2;

/// `cpu.shares` [2, 262144] to `cpu.weight` [1, 10000], runc's linear
/// formula `1 + ((shares - 2) * 9999) / 262142`; 0 means "unset" and stays 0.
/// Out-of-range shares are clamped first.
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let s = shares.clamp(MIN_CPU_SHARES, MAX_CPU_SHARES);
    1 + ((s - 2) * 9999) / 262_142
}

/// blkio weight [10, 1000] to `io.weight` [1, 10000], runc's formula
/// `1 + (weight - 10) * 9999 / 990`; 0 stays 0 ("unset").
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// The spec's `memory.swap` is memory+swap (v1 `memsw`); cgroup v2's
/// `memory.swap.max` is swap alone. Returns the v2 value (-1 = max,
/// 0 = unset) or why it cannot be converted; same rules as runc.
pub fn memory_swap_to_v2(swap: i64, memory: i64) -> Result<i64, String> {
    if memory == -1 && swap == 0 {
        // Unlimited memory and no swap given: unlimited swap too.
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if memory == -1 {
        return Ok(swap);
    }
    if memory == 0 {
        return Err("unable to set swap limit without memory limit".into());
    }
    if memory < 0 {
        return Err(format!("invalid memory value: {memory}"));
    }
    if swap < memory {
        return Err(format!(
            "memory+swap limit ({swap}) should be >= memory limit ({memory})"
        ));
    }
    Ok(swap - memory)
}

/// A v1-style number for a v2 `.max`/`.low`/`.high` file: 0 is "unset"
/// (`None`), any negative value is "max".
pub fn v2_limit(value: i64) -> Option<String> {
    match value {
        0 => None,
        v if v < 0 => Some("max".into()),
        v => Some(v.to_string()),
    }
}

/// The `cpu.max` line for a quota and period (runc fs2): `None` when both
/// are unset (0); a quota <= 0 is "max"; the period is appended when set.
pub fn cpu_max(quota: i64, period: u64) -> Option<String> {
    if quota == 0 && period == 0 {
        return None;
    }
    let mut s = if quota > 0 {
        quota.to_string()
    } else {
        "max".to_string()
    };
    if period != 0 {
        s.push(' ');
        s.push_str(&period.to_string());
    }
    Some(s)
}

/// An `io.max` line, e.g. `8:0 rbps=1048576`; rate 0 (v1's "no limit")
/// becomes "max".
pub fn io_max_line(major: i64, minor: i64, key: &str, rate: u64) -> String {
    if rate == 0 {
        format!("{major}:{minor} {key}=max")
    } else {
        format!("{major}:{minor} {key}={rate}")
    }
}

/// A v1 `blkio.throttle.*_device` or weight-device line: `8:0 1048576`.
pub fn device_value_line(major: i64, minor: i64, value: u64) -> String {
    format!("{major}:{minor} {value}")
}

/// A huge page size in kB (as in /sys/kernel/mm/hugepages/hugepages-2048kB)
/// to the name used in hugetlb file names and stats ("2MB", "1GB", "64KB").
pub fn hugepage_size_name(kb: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut size = kb as f64 * 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size}{}", UNITS[unit])
}

/// An `rdma.max` line, e.g. `mlx4_0 hca_handle=2 hca_object=2000`; `None`
/// when neither limit is set.
pub fn rdma_line(
    device: &str,
    hca_handles: Option<u32>,
    hca_objects: Option<u32>,
) -> Option<String> {
    if hca_handles.is_none() && hca_objects.is_none() {
        return None;
    }
    let mut s = device.to_owned();
    if let Some(h) = hca_handles {
        s.push_str(&format!(" hca_handle={h}"));
    }
    if let Some(o) = hca_objects {
        s.push_str(&format!(" hca_object={o}"));
    }
    Some(s)
}

/// Converts user-HZ clock ticks (cpuacct.stat) to nanoseconds.
pub fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    if hz == 0 {
        return 0;
    }
    ticks.saturating_mul(1_000_000_000 / hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight() {
        assert_eq!(cpu_shares_to_weight(0), 0);
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1), 1);
        assert_eq!(cpu_shares_to_weight(1024), 39);
        assert_eq!(cpu_shares_to_weight(512), 20);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(cpu_shares_to_weight(1 << 20), 10_000);
    }

    #[test]
    fn blkio_to_io_weight() {
        assert_eq!(blkio_weight_to_io_weight(0), 0);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    #[test]
    fn swap_conversion() {
        assert_eq!(memory_swap_to_v2(0, -1), Ok(-1));
        assert_eq!(memory_swap_to_v2(-1, 100), Ok(-1));
        assert_eq!(memory_swap_to_v2(0, 100), Ok(0));
        assert_eq!(memory_swap_to_v2(300, 100), Ok(200));
        assert_eq!(memory_swap_to_v2(100, 100), Ok(0));
        assert_eq!(memory_swap_to_v2(300, -1), Ok(300));
        assert!(memory_swap_to_v2(50, 100).is_err());
        assert!(memory_swap_to_v2(300, 0).is_err());
        assert!(memory_swap_to_v2(300, -5).is_err());
    }

    #[test]
    fn cpu_max_strings() {
        assert_eq!(cpu_max(0, 0), None);
        assert_eq!(cpu_max(50_000, 0).as_deref(), Some("50000"));
        assert_eq!(cpu_max(50_000, 100_000).as_deref(), Some("50000 100000"));
        assert_eq!(cpu_max(-1, 0).as_deref(), Some("max"));
        assert_eq!(cpu_max(-1, 250_000).as_deref(), Some("max 250000"));
        assert_eq!(cpu_max(0, 250_000).as_deref(), Some("max 250000"));
    }

    #[test]
    fn v2_limits_and_lines() {
        assert_eq!(v2_limit(0), None);
        assert_eq!(v2_limit(-1).as_deref(), Some("max"));
        assert_eq!(v2_limit(4096).as_deref(), Some("4096"));
        assert_eq!(io_max_line(8, 0, "rbps", 1 << 20), "8:0 rbps=1048576");
        assert_eq!(io_max_line(254, 16, "wiops", 0), "254:16 wiops=max");
        assert_eq!(device_value_line(8, 16, 300), "8:16 300");
    }

    #[test]
    fn hugepage_names() {
        assert_eq!(hugepage_size_name(2048), "2MB");
        assert_eq!(hugepage_size_name(1_048_576), "1GB");
        assert_eq!(hugepage_size_name(64), "64KB");
        assert_eq!(hugepage_size_name(16 * 1024 * 1024), "16GB");
    }

    #[test]
    fn rdma_lines() {
        assert_eq!(rdma_line("mlx4_0", None, None), None);
        assert_eq!(
            rdma_line("mlx4_0", Some(2), Some(2000)).as_deref(),
            Some("mlx4_0 hca_handle=2 hca_object=2000")
        );
        assert_eq!(
            rdma_line("m", None, Some(5)).as_deref(),
            Some("m hca_object=5")
        );
    }

    #[test]
    fn ticks() {
        assert_eq!(ticks_to_ns(3, 100), 30_000_000);
        assert_eq!(ticks_to_ns(3, 0), 0);
    }
}
