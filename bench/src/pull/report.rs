//! The printed table (medians, MB/s, ratios) and the `--json` document for `pull-bench`.

use serde_json::{json, Map, Value};

use super::columns::PEERS;
use crate::stats::Summary;

/// Samples of one image, per column (table order).
pub struct ImageRun {
    /// JSON key.
    pub key: &'static str,
    /// Heading.
    pub title: String,
    /// Compressed bytes (sum of layer blobs).
    pub compressed: u64,
    /// Uncompressed bytes (sum of layer tars).
    pub uncompressed: u64,
    /// `(column, samples in ms)`.
    pub samples: Vec<(&'static str, Vec<f64>)>,
}

impl ImageRun {
    fn median(&self, col: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|(c, _)| *c == col)
            .and_then(|(_, s)| Summary::of(s))
            .map(|s| s.median)
    }

    /// The peer with the smallest median, and that median.
    pub fn fastest_peer(&self) -> Option<(&'static str, f64)> {
        PEERS
            .iter()
            .filter_map(|p| self.median(p).map(|m| (*p, m)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Ratios of medians: berth over each peer, over the fastest peer and over the tar floor.
    pub fn ratios(&self) -> Vec<(String, f64)> {
        let Some(b) = self.median("berth") else {
            return Vec::new();
        };
        let mut out: Vec<(String, f64)> = PEERS
            .iter()
            .filter_map(|p| self.median(p).map(|m| (format!("berth/{p}"), b / m)))
            .collect();
        if let Some((p, m)) = self.fastest_peer() {
            out.push((format!("berth/fastest-peer({p})"), b / m));
        }
        if let Some(t) = self.median("tar") {
            out.push(("berth/tar".into(), b / t));
        }
        out
    }
}

/// MB (10^6 bytes) per second for `bytes` in `ms`.
pub fn mb_per_s(bytes: u64, ms: f64) -> f64 {
    bytes as f64 / 1e6 / (ms / 1000.0)
}

/// The table.
pub fn table(runs: &[ImageRun]) -> String {
    let mut out = String::new();
    for r in runs {
        out.push_str(&format!(
            "\n{}: {:.1} MB compressed, {:.1} MB uncompressed\n",
            r.title,
            r.compressed as f64 / 1e6,
            r.uncompressed as f64 / 1e6
        ));
        out.push_str(&format!(
            "  {:<13} {:>10} {:>10} {:>10} {:>11} {:>11}\n",
            "column", "median ms", "min ms", "max ms", "MB/s gz", "MB/s tar"
        ));
        for (col, samples) in &r.samples {
            let Some(s) = Summary::of(samples) else {
                continue;
            };
            let max = samples.iter().copied().fold(f64::MIN, f64::max);
            out.push_str(&format!(
                "  {:<13} {:>10.1} {:>10.1} {:>10.1} {:>11.1} {:>11.1}\n",
                col,
                s.median,
                s.min,
                max,
                mb_per_s(r.compressed, s.median),
                mb_per_s(r.uncompressed, s.median)
            ));
        }
        out.push_str(&crate::stats::ratios_line(&r.ratios()));
    }
    out
}

/// The `--json` document.
pub fn json(meta: Value, runs: &[ImageRun]) -> Value {
    let mut images = Map::new();
    for r in runs {
        let mut cols = Map::new();
        for (col, samples) in &r.samples {
            let s = Summary::of(samples);
            cols.insert(
                col.to_string(),
                json!({
                    "samples_ms": samples,
                    "median_ms": s.map(|s| s.median),
                    "min_ms": s.map(|s| s.min),
                    "mb_per_s_compressed": s.map(|s| mb_per_s(r.compressed, s.median)),
                    "mb_per_s_uncompressed": s.map(|s| mb_per_s(r.uncompressed, s.median)),
                }),
            );
        }
        let ratios: Map<String, Value> =
            r.ratios().into_iter().map(|(k, v)| (k, json!(v))).collect();
        images.insert(
            r.key.to_string(),
            json!({
                "title": r.title,
                "compressed_bytes": r.compressed,
                "uncompressed_bytes": r.uncompressed,
                "columns": cols,
                "ratios_of_medians": ratios,
            }),
        );
    }
    json!({"meta": meta, "images": images})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> ImageRun {
        ImageRun {
            key: "multi",
            title: "m".into(),
            compressed: 100_000_000,
            uncompressed: 200_000_000,
            samples: vec![
                ("berth", vec![1000.0, 900.0, 1100.0]),
                ("podman", vec![4000.0, 4100.0, 3900.0]),
                ("skopeo+umoci", vec![3000.0, 3000.0, 3000.0]),
                ("tar", vec![2000.0]),
            ],
        }
    }

    #[test]
    fn ratios_against_peers_fastest_and_floor() {
        let r = run();
        assert_eq!(r.fastest_peer(), Some(("skopeo+umoci", 3000.0)));
        let ratios = r.ratios();
        let get = |k: &str| ratios.iter().find(|(n, _)| n == k).unwrap().1;
        assert!((get("berth/podman") - 0.25).abs() < 1e-12);
        assert!((get("berth/fastest-peer(skopeo+umoci)") - 1.0 / 3.0).abs() < 1e-12);
        assert!((get("berth/tar") - 0.5).abs() < 1e-12);
        assert!((mb_per_s(100_000_000, 1000.0) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn no_berth_no_ratios_and_table_json_carry_figures() {
        let mut r = run();
        let t = table(std::slice::from_ref(&r));
        assert!(t.contains("berth/tar 0.50"), "{t}");
        assert!(t.contains("100.0"), "{t}");
        let j = json(json!({"k": 1}), std::slice::from_ref(&r));
        assert_eq!(
            j["images"]["multi"]["columns"]["podman"]["median_ms"],
            4000.0
        );
        assert_eq!(
            j["images"]["multi"]["columns"]["berth"]["mb_per_s_compressed"],
            100.0
        );
        r.samples.remove(0);
        assert!(r.ratios().is_empty());
    }
}
