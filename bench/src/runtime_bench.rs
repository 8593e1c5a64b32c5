//! `runtime-bench`: berth-runtime against runc and crun, running `true` in a busybox bundle.
//!
//! Workloads, each sample's exit status checked:
//! * `run --bundle B <id>` (create + start + wait + delete), `--runs` times one at a time;
//! * `--concurrency` such runs spawned at once, time until all exit, `--rounds` times;
//!
//! with a floor column, `unshare --fork --pid --mount --uts --ipc --net true`. Columns are
//! interleaved (round i runs them in an order rotated by i), each runtime has its own `--root`
//! temp dir, ids are unique. Everything runs inside a private mount namespace in which
//! `/sys/fs/cgroup/unified` is unmounted (crun refuses hybrid cgroup hosts otherwise), the
//! same for every column; the host's mounts are untouched. Needs root.

mod cli;
mod columns;
mod ns;
mod report;
mod stats;
mod workload;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use berth_runtime_tests::{Bundle, BUSYBOX};
use clap::Parser;
use serde_json::json;
use stats::{loadavg, rotated};

use columns::{Column, ALL};
use report::Workload;

/// Benchmark OCI runtimes (berth-runtime, runc, crun) on `run` of `true` in a busybox bundle.
#[derive(Parser, Debug)]
#[command(name = "runtime-bench")]
struct Args {
    /// Sequential `run`s per column (0: skip this workload).
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Rounds of the concurrent workload per column (0: skip it).
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// `run`s spawned at once in each round of the concurrent workload.
    #[arg(long, default_value_t = 20)]
    concurrency: usize,
    /// Unrecorded runs per column before measuring (at least one always runs, as a check).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Columns to run, comma-separated, from: berth, runc, crun, floor (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// berth-runtime binary (default: $BERTH_RUNTIME, else target/release/berth-runtime).
    #[arg(long)]
    berth: Option<PathBuf>,
    /// runc binary.
    #[arg(long, default_value = "/usr/sbin/runc")]
    runc: String,
    /// crun binary.
    #[arg(long, default_value = "/usr/bin/crun")]
    crun: String,
    /// Also write every sample, summary and ratio to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() {
    cli::main("runtime-bench", || run(Args::parse()));
}

fn run(args: Args) -> Result<()> {
    cli::check_only(&args.only, &ALL)?;
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "must run as root (containers, namespaces, cgroups): sudo {}",
            std::env::args().next().unwrap_or_default()
        );
    }
    if !Path::new(BUSYBOX).exists() {
        bail!("{BUSYBOX} not found: apt-get install busybox-static");
    }
    // First, while the process has one thread: every child below inherits this namespace.
    let setup = ns::enter_private_mount_ns()?;
    let state_tmpfs = ns::StateTmpfs::mount()?;
    // Every column's --root and the bundle are made under the temp dir: point it at the tmpfs.
    std::env::set_var("TMPDIR", &state_tmpfs.path);

    let cols = discover(&args);
    if !cols.iter().any(|c| c.name != "floor") {
        bail!("no runtime to benchmark (see the messages above)");
    }

    let mut bundle = Bundle::busybox();
    bundle.config = Bundle::default_config(&["true"]);
    bundle.write_config();
    let bpath = bundle.path().to_path_buf();

    let uts = nix::sys::utsname::uname().context("uname")?;
    let kernel = uts.release().to_string_lossy().into_owned();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "runtime-bench: `run` of `true` in a busybox bundle (runc-spec default config); kernel {kernel}, {cpus} CPUs"
    );
    println!(
        "private mount namespace; state dirs and bundle on a tmpfs (as /run); {} {}",
        ns::UNIFIED,
        if setup.unified_unmounted {
            "unmounted in it"
        } else {
            "was not mounted"
        }
    );
    for c in &cols {
        println!("  {:<6} {}  ({})", c.name, c.bin().display(), c.version);
    }
    let load_before = loadavg();
    println!("load average before: {load_before} (other work on the machine skews every column)");

    // Check + warm-up: one failed run stops the bench here.
    for c in &cols {
        for _ in 0..args.warmup.max(1) {
            workload::one(c, &bpath)?;
        }
    }

    let mut workloads = Vec::new();
    if args.runs > 0 {
        eprintln!("measuring: {} sequential runs per column ...", args.runs);
        let mut samples = vec![Vec::with_capacity(args.runs); cols.len()];
        for i in 0..args.runs {
            for k in rotated(cols.len(), i) {
                samples[k].push(workload::one(&cols[k], &bpath)?);
            }
        }
        workloads.push(Workload {
            key: "run_seq",
            title: format!(
                "run, one at a time ({} runs per column, interleaved)",
                args.runs
            ),
            samples: cols.iter().map(|c| c.name).zip(samples).collect(),
        });
    }
    if args.rounds > 0 {
        eprintln!(
            "measuring: {} rounds of {} concurrent runs per column ...",
            args.rounds, args.concurrency
        );
        let mut samples = vec![Vec::with_capacity(args.rounds); cols.len()];
        for i in 0..args.rounds {
            for k in rotated(cols.len(), i) {
                samples[k].push(workload::burst(&cols[k], &bpath, args.concurrency)?);
            }
        }
        workloads.push(Workload {
            key: "run_burst",
            title: format!(
                "{} runs at once, time until all exit ({} rounds per column, interleaved)",
                args.concurrency, args.rounds
            ),
            samples: cols.iter().map(|c| c.name).zip(samples).collect(),
        });
    }

    print!("{}", report::table(&workloads));
    let load_after = loadavg();
    println!("\nload average after: {load_after}");

    if let Some(path) = &args.json {
        let unix_time = stats::unix_time();
        let binaries = stats::columns_json(
            cols.iter()
                .map(|c| (c.name, c.bin() as &Path, c.version.as_str())),
        );
        let meta = json!({
            "unix_time": unix_time,
            "kernel": kernel,
            "cpus": cpus,
            "unified_unmounted": setup.unified_unmounted,
            "runs": args.runs,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "columns": binaries,
        });
        stats::write_json(path, &report::json(meta, &workloads))?;
    }
    Ok(())
}

/// The columns that were asked for and whose binary exists; a missing one is skipped with a
/// message on stderr.
fn discover(args: &Args) -> Vec<Column> {
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let mut cols = Vec::new();
    for name in ALL {
        if !wanted(name) {
            continue;
        }
        let col = match name {
            "berth" => {
                let p = args.berth.clone().unwrap_or_else(columns::default_berth);
                if columns::is_executable(&p) {
                    Some(Column::runtime("berth", p))
                } else {
                    eprintln!(
                        "skipping berth: {} not found (cargo build --release -p berth-runtime-cli, or --berth PATH)",
                        p.display()
                    );
                    None
                }
            }
            "runc" | "crun" => {
                let given = if name == "runc" {
                    &args.runc
                } else {
                    &args.crun
                };
                match columns::find_tool(given) {
                    Some(p) => Some(Column::runtime(name, p)),
                    None => {
                        eprintln!("skipping {name}: {given} not found (apt-get install {name}, or --{name} PATH)");
                        None
                    }
                }
            }
            _ => match columns::find_tool("unshare") {
                Some(p) => Some(Column::floor(p)),
                None => {
                    eprintln!("skipping floor: unshare not found (apt-get install util-linux)");
                    None
                }
            },
        };
        cols.extend(col);
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::rotated;

    #[test]
    fn rotation_starts_each_round_with_the_next_column() {
        let r: Vec<Vec<usize>> = (0..4).map(|i| rotated(3, i).collect()).collect();
        assert_eq!(
            r,
            [vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1], vec![0, 1, 2]]
        );
        assert_eq!(rotated(0, 5).count(), 0);
    }
}
