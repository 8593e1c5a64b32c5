//! The printed tables and the `--json` document of the engine bench.

use serde_json::{json, Map, Value};

use super::procs::{Mem, MemSummary};
use crate::stats::{ratios_line, Summary};

/// Samples (ms) per column, in table order.
pub struct Timings {
    pub title: String,
    pub samples: Vec<(&'static str, Vec<f64>)>,
}

impl Timings {
    pub fn median(&self, col: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|(c, _)| *c == col)
            .and_then(|(_, s)| Summary::of(s))
            .map(|s| s.median)
    }

    /// `median(a) / median(b)` for each pair whose columns both ran.
    pub fn ratios(&self, pairs: &[(&str, &str)]) -> Vec<(String, f64)> {
        pairs
            .iter()
            .filter_map(|(a, b)| Some((format!("{a}/{b}"), self.median(a)? / self.median(b)?)))
            .collect()
    }

    pub fn table(&self, pairs: &[(&str, &str)]) -> String {
        let mut out = format!("\n{}\n", self.title);
        out.push_str(&format!(
            "  {:<14} {:>10} {:>10} {:>10}\n",
            "column", "median ms", "p90 ms", "min ms"
        ));
        for (col, s) in &self.samples {
            let Some(s) = Summary::of(s) else { continue };
            out.push_str(&format!(
                "  {:<14} {:>10.1} {:>10.1} {:>10.1}\n",
                col, s.median, s.p90, s.min
            ));
        }
        out.push_str(&ratios_line(&self.ratios(pairs)));
        out
    }

    pub fn json(&self, pairs: &[(&str, &str)]) -> Value {
        let cols: Map<String, Value> = self
            .samples
            .iter()
            .map(|(c, s)| {
                let sum = Summary::of(s);
                (
                    c.to_string(),
                    json!({
                        "samples_ms": s,
                        "median_ms": sum.map(|s| s.median),
                        "p90_ms": sum.map(|s| s.p90),
                        "min_ms": sum.map(|s| s.min),
                    }),
                )
            })
            .collect();
        let ratios: Map<String, Value> = self
            .ratios(pairs)
            .into_iter()
            .map(|(k, r)| (k, json!(r)))
            .collect();
        json!({"title": self.title, "columns": cols, "ratios_of_medians": ratios})
    }
}

/// One column's detached workload.
pub struct Detached {
    pub name: &'static str,
    /// Containers started.
    pub n: usize,
    /// Wall time to start them all, one after another, ms.
    pub start_ms: f64,
    /// Wall time to remove them all (`rm -f`), ms.
    pub rm_ms: f64,
    /// The watcher's process name.
    pub watcher: &'static str,
    /// The watchers found with all `n` running.
    pub mems: Vec<Mem>,
    /// The engine's daemons (dockerd + containerd), when it has any.
    pub daemons: Option<Vec<Mem>>,
}

impl Detached {
    pub fn per_container_ms(&self) -> f64 {
        self.start_ms / self.n.max(1) as f64
    }

    pub fn mem(&self) -> MemSummary {
        MemSummary::of(&self.mems)
    }

    /// PSS per watcher, KiB.
    pub fn pss_each_kib(&self) -> f64 {
        let m = self.mem();
        m.pss_sum_kib as f64 / m.count.max(1) as f64
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The detached table, then berth's ratios to each peer (per container).
pub fn detached_table(rows: &[Detached]) -> String {
    let mut out = String::from(
        "\ndetached `sleep 1000` containers, started one after another; memory of each container's watcher with all running\n",
    );
    out.push_str(&format!(
        "  {:<12} {:>4} {:>9} {:>8} {:<16} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "column",
        "N",
        "start s",
        "ms each",
        "watcher",
        "found",
        "RSS MiB",
        "med KiB",
        "PSS MiB",
        "PSS KiB",
        "rm -f s"
    ));
    for r in rows {
        let m = r.mem();
        out.push_str(&format!(
            "  {:<12} {:>4} {:>9.2} {:>8.1} {:<16} {:>5} {:>8.1} {:>8.0} {:>8.1} {:>8.0} {:>8.2}\n",
            r.name,
            r.n,
            r.start_ms / 1000.0,
            r.per_container_ms(),
            r.watcher,
            m.count,
            mib(m.rss_sum_kib),
            m.rss_median_kib,
            mib(m.pss_sum_kib),
            r.pss_each_kib(),
            r.rm_ms / 1000.0
        ));
    }
    out.push_str(
        "  (RSS MiB: sum over the watchers; med KiB: median RSS of one; PSS: shared pages split among the processes mapping them, sum and per watcher)\n",
    );
    for r in rows {
        if let Some(d) = &r.daemons {
            let s = MemSummary::of(d);
            out.push_str(&format!(
                "  {}: plus its daemons (dockerd + containerd): RSS {:.1} MiB, PSS {:.1} MiB\n",
                r.name,
                mib(s.rss_sum_kib),
                mib(s.pss_sum_kib)
            ));
        }
    }
    let ratios = detached_ratios(rows);
    if !ratios.is_empty() {
        out.push_str("  berth / peer, per container:\n");
        for (peer, start, rss, pss) in ratios {
            out.push_str(&format!(
                "    berth/{peer}: start {start:.2}, watcher RSS (median) {rss:.2}, watcher PSS {pss:.2}\n"
            ));
        }
    }
    out
}

/// For each peer: berth/peer of the per-container start time, the median watcher RSS and the
/// per-watcher PSS.
pub fn detached_ratios(rows: &[Detached]) -> Vec<(&'static str, f64, f64, f64)> {
    let Some(b) = rows.iter().find(|r| r.name == "berth") else {
        return Vec::new();
    };
    let bm = b.mem();
    rows.iter()
        .filter(|r| r.name != "berth")
        .map(|r| {
            let m = r.mem();
            (
                r.name,
                b.per_container_ms() / r.per_container_ms(),
                bm.rss_median_kib / m.rss_median_kib,
                b.pss_each_kib() / r.pss_each_kib(),
            )
        })
        .collect()
}

pub fn detached_json(rows: &[Detached]) -> Value {
    let cols: Map<String, Value> = rows
        .iter()
        .map(|r| {
            let m = r.mem();
            let daemons = r.daemons.as_ref().map(|d| {
                let s = MemSummary::of(d);
                json!({"rss_sum_kib": s.rss_sum_kib, "pss_sum_kib": s.pss_sum_kib})
            });
            (
                r.name.to_string(),
                json!({
                    "n": r.n,
                    "start_all_ms": r.start_ms,
                    "start_per_container_ms": r.per_container_ms(),
                    "rm_all_ms": r.rm_ms,
                    "watcher": r.watcher,
                    "watchers_found": m.count,
                    "rss_kib": r.mems.iter().map(|x| x.rss_kib).collect::<Vec<_>>(),
                    "pss_kib": r.mems.iter().map(|x| x.pss_kib).collect::<Vec<_>>(),
                    "rss_sum_kib": m.rss_sum_kib,
                    "rss_median_kib": m.rss_median_kib,
                    "pss_sum_kib": m.pss_sum_kib,
                    "daemons": daemons,
                }),
            )
        })
        .collect();
    let ratios: Map<String, Value> = detached_ratios(rows)
        .into_iter()
        .map(|(p, s, r, pss)| {
            (
                format!("berth/{p}"),
                json!({"start_per_container": s, "watcher_rss_median": r, "watcher_pss": pss}),
            )
        })
        .collect();
    json!({"columns": cols, "ratios": ratios})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(pid: i32, rss: u64, pss: u64) -> Mem {
        Mem {
            pid,
            rss_kib: rss,
            pss_kib: pss,
        }
    }

    #[test]
    fn timings_table_and_ratios() {
        let t = Timings {
            title: "run".into(),
            samples: vec![
                ("berth", vec![10.0, 12.0, 11.0]),
                ("podman-crun", vec![200.0, 220.0, 210.0]),
            ],
        };
        let pairs = [("berth", "podman-crun"), ("berth", "docker")];
        let r = t.ratios(&pairs);
        assert_eq!(r.len(), 1);
        assert!((r[0].1 - 11.0 / 210.0).abs() < 1e-12);
        let s = t.table(&pairs);
        assert!(s.contains("berth/podman-crun 0.05"), "{s}");
        let j = t.json(&pairs);
        assert_eq!(j["columns"]["podman-crun"]["median_ms"], 210.0);
    }

    #[test]
    fn detached_rows() {
        let rows = [
            Detached {
                name: "berth",
                n: 2,
                start_ms: 100.0,
                rm_ms: 50.0,
                watcher: "berth-monitor",
                mems: vec![mem(1, 1000, 300), mem(2, 1200, 500)],
                daemons: None,
            },
            Detached {
                name: "docker",
                n: 2,
                start_ms: 1000.0,
                rm_ms: 500.0,
                watcher: "containerd-shim",
                mems: vec![mem(3, 11000, 4000), mem(4, 11000, 4000)],
                daemons: Some(vec![mem(5, 40000, 30000)]),
            },
        ];
        let r = detached_ratios(&rows);
        assert_eq!(r.len(), 1);
        assert!((r[0].1 - 0.1).abs() < 1e-12);
        assert!((r[0].2 - 0.1).abs() < 1e-12);
        assert!((r[0].3 - 0.1).abs() < 1e-12);
        let t = detached_table(&rows);
        assert!(t.contains("berth/docker: start 0.10"), "{t}");
        assert!(t.contains("dockerd + containerd"), "{t}");
        let j = detached_json(&rows);
        assert_eq!(j["columns"]["berth"]["rss_sum_kib"], 2200);
        assert_eq!(j["columns"]["docker"]["daemons"]["rss_sum_kib"], 40000);
    }
}
