//! Order statistics of a sample of durations (milliseconds).

/// Median, 90th percentile (nearest rank) and minimum of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (mean of the two middle values when `n` is even).
    pub median: f64,
    /// 90th percentile, nearest-rank method.
    pub p90: f64,
    /// Smallest sample.
    pub min: f64,
}

impl Summary {
    /// Summarises `samples`; `None` when empty or when any sample is not finite.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        // Nearest rank: the smallest value with at least 90% of samples at or below it.
        let rank = (0.9 * n as f64).ceil() as usize;
        let p90 = s[rank.clamp(1, n) - 1];
        Some(Summary {
            n,
            median,
            p90,
            min: s[0],
        })
    }
}

/// Seconds since the epoch, for the `--json` metadata.
pub fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `columns` object of the `--json` metadata: each column's binary and version.
pub fn columns_json<'a>(
    cols: impl Iterator<Item = (&'a str, &'a std::path::Path, &'a str)>,
) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = cols
        .map(|(name, bin, version)| {
            (
                name.to_string(),
                serde_json::json!({"bin": bin.display().to_string(), "version": version}),
            )
        })
        .collect();
    serde_json::Value::Object(map)
}

/// Writes the `--json` document (pretty, newline-terminated) and says so.
pub fn write_json(path: &std::path::Path, doc: &serde_json::Value) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = serde_json::to_string_pretty(doc)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    println!("\nwrote {}", path.display());
    Ok(())
}

/// The 1, 5 and 15 minute load averages, as printed before and after a run.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Column indices `0..n` rotated left by `round`: round i starts with column i mod n.
pub fn rotated(n: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (k + round) % n.max(1))
}

/// The "ratios of medians" line of a table, or nothing when there are none.
pub fn ratios_line(ratios: &[(String, f64)]) -> String {
    if ratios.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = ratios.iter().map(|(k, r)| format!("{k} {r:.2}")).collect();
    format!("  ratios of medians: {}\n", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn odd_sample() {
        let s = Summary::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!(s.n, 3);
        assert_eq!(s.median, 3.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.p90, 5.0);
    }

    #[test]
    fn even_sample_and_nearest_rank_p90() {
        let v: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let s = Summary::of(&v).unwrap();
        assert_eq!(s.median, 5.5);
        assert_eq!(s.p90, 9.0);
        assert_eq!(s.min, 1.0);
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(Summary::of(&v).unwrap().p90, 18.0);
    }

    #[test]
    fn single_and_empty() {
        let s = Summary::of(&[2.5]).unwrap();
        assert_eq!((s.median, s.p90, s.min), (2.5, 2.5, 2.5));
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
    }
}
