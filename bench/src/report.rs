//! The printed table and the `--json` document.

use serde_json::{json, Map, Value};

use crate::stats::Summary;

/// The samples of one workload, per column (in table order).
pub struct Workload {
    /// JSON key: `run_seq` or `run_burst`.
    pub key: &'static str,
    /// Table heading.
    pub title: String,
    /// `(column, samples in ms)`.
    pub samples: Vec<(&'static str, Vec<f64>)>,
}

impl Workload {
    /// Summary of one column's samples.
    pub fn summary(&self, col: &str) -> Option<Summary> {
        self.samples
            .iter()
            .find(|(c, _)| *c == col)
            .and_then(|(_, s)| Summary::of(s))
    }

    /// `median(a) / median(b)`, when both columns ran.
    pub fn ratio(&self, a: &str, b: &str) -> Option<f64> {
        Some(self.summary(a)?.median / self.summary(b)?.median)
    }

    /// The ratios reported for this workload: berth against each peer and the floor, plus
    /// crun/runc, for the columns that ran.
    pub fn ratios(&self) -> Vec<(String, f64)> {
        let pairs = [
            ("berth", "crun"),
            ("berth", "runc"),
            ("berth", "floor"),
            ("crun", "runc"),
            ("runc", "floor"),
            ("crun", "floor"),
        ];
        pairs
            .iter()
            .filter_map(|(a, b)| self.ratio(a, b).map(|r| (format!("{a}/{b}"), r)))
            .collect()
    }
}

/// The table: median, p90, min and x floor per column, then the ratios of medians.
pub fn table(workloads: &[Workload]) -> String {
    let mut out = String::new();
    for w in workloads {
        out.push_str(&format!("\n{}\n", w.title));
        out.push_str(&format!(
            "  {:<8} {:>10} {:>10} {:>10} {:>9}\n",
            "column", "median ms", "p90 ms", "min ms", "x floor"
        ));
        let floor = w.summary("floor").map(|s| s.median);
        for (col, _) in &w.samples {
            let Some(s) = w.summary(col) else { continue };
            let xf = floor
                .map(|f| format!("{:.2}", s.median / f))
                .unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "  {:<8} {:>10.2} {:>10.2} {:>10.2} {:>9}\n",
                col, s.median, s.p90, s.min, xf
            ));
        }
        out.push_str(&crate::stats::ratios_line(&w.ratios()));
    }
    out
}

/// The `--json` document: `meta` as given, plus every sample, summary and ratio.
pub fn json(meta: Value, workloads: &[Workload]) -> Value {
    let mut ws = Map::new();
    for w in workloads {
        let mut cols = Map::new();
        for (col, samples) in &w.samples {
            let s = Summary::of(samples);
            cols.insert(
                col.to_string(),
                json!({
                    "samples_ms": samples,
                    "median_ms": s.map(|s| s.median),
                    "p90_ms": s.map(|s| s.p90),
                    "min_ms": s.map(|s| s.min),
                }),
            );
        }
        let ratios: Map<String, Value> =
            w.ratios().into_iter().map(|(k, r)| (k, json!(r))).collect();
        ws.insert(
            w.key.to_string(),
            json!({"title": w.title, "columns": cols, "ratios_of_medians": ratios}),
        );
    }
    json!({"meta": meta, "workloads": ws})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> Workload {
        Workload {
            key: "run_seq",
            title: "t".into(),
            samples: vec![
                ("berth", vec![2.0, 4.0, 3.0]),
                ("runc", vec![30.0, 40.0, 35.0]),
                ("floor", vec![1.0, 1.5, 2.0]),
            ],
        }
    }

    #[test]
    fn ratios_only_for_columns_that_ran() {
        let r = w().ratios();
        let keys: Vec<&str> = r.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["berth/runc", "berth/floor", "runc/floor"]);
        assert!((r[0].1 - 3.0 / 35.0).abs() < 1e-12);
        assert!((r[1].1 - 2.0).abs() < 1e-12);
    }

    #[test]
    fn table_and_json_carry_the_figures() {
        let t = table(&[w()]);
        assert!(t.contains("berth"), "{t}");
        assert!(t.contains("35.00"), "{t}");
        assert!(t.contains("berth/runc 0.09"), "{t}");
        let j = json(json!({"k": 1}), &[w()]);
        assert_eq!(
            j["workloads"]["run_seq"]["columns"]["runc"]["median_ms"],
            35.0
        );
        assert_eq!(
            j["workloads"]["run_seq"]["columns"]["berth"]["samples_ms"][1],
            4.0
        );
        assert_eq!(j["meta"]["k"], 1);
    }
}
