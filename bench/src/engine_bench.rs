//! `engine-bench`: the berth engine against podman (with crun and with runc) and docker, all
//! running the same busybox image.
//!
//! Workloads, every command's exit status checked (a failure stops the bench, it is never a
//! fast sample):
//! * `run --rm --network none IMAGE true`, `--rounds` interleaved rounds (round i runs the
//!   columns in an order rotated by i), after `--warmup` unrecorded runs per column;
//! * berth's phases: `create`, `start -a`, `rm` one after the other, beside a `run --rm`;
//! * `--detached` (berth) / `--detached-peers` (podman, docker) `run -d ... sleep 1000`
//!   containers started one after another: the time to start them all, then the memory (VmRSS,
//!   PSS) of each container's watcher (`berth-monitor`, `conmon`, `containerd-shim`) with all
//!   of them running, then the time of `rm -f` of them all.
//!
//! The image: a busybox-static rootfs `berth import`ed, `berth save`d as a docker-archive and
//! loaded from it into podman and dockerd (its id is checked to be the same everywhere).
//! Every engine has its own temp state: roots under `--workdir` (the disk, as /var/lib is), run
//! dirs on a tmpfs (as /run is on most hosts); dockerd is a private one (`--data-root`,
//! `--exec-root`, own socket, `--bridge=none --iptables=false`), skipped with a note when
//! `dockerd` is absent or does not start.
//!
//! Everything runs in a private mount namespace where `/sys/fs/cgroup/unified` is unmounted
//! (crun refuses hybrid cgroup hosts otherwise) and `/run` is an empty tmpfs, the same for
//! every column; the host's mounts are untouched. Guards remove every container, stop dockerd,
//! unmount and delete the temp dirs on the way out, also after a failure or Ctrl-C. Needs root.

mod cli;
mod engine;
mod mounts;
mod ns;
mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_runtime_tests::BUSYBOX;
use clap::Parser;
use serde_json::json;
use stats::{loadavg, rotated};

use engine::engines::{Berth, Column, Docker, Engine, Podman};
use engine::exec::{self, check_interrupted};
use engine::report::{self, Detached, Timings};

/// Every column, in table order.
const ALL: [&str; 4] = ["berth", "podman-crun", "podman-runc", "docker"];

/// The ratios printed for `run --rm`.
const RUN_RATIOS: [(&str, &str); 4] = [
    ("berth", "podman-crun"),
    ("berth", "podman-runc"),
    ("berth", "docker"),
    ("podman-crun", "podman-runc"),
];

/// The target: berth's `run --rm` median at most this fraction of podman + crun's.
const TARGET_VS_PODMAN_CRUN: f64 = 0.10;

/// The image's name in berth.
const IMAGE: &str = "bench/busybox:1";

/// Benchmark the berth engine against podman (crun, runc) and docker: `run --rm IMAGE true`,
/// and many detached containers (start time, watcher memory).
#[derive(Parser, Debug)]
#[command(name = "engine-bench")]
struct Args {
    /// Measured rounds of `run --rm IMAGE true` per column (0: skip).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Unrecorded `run --rm` per column before measuring (at least one always runs, as a check).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Rounds of berth's `create` / `start -a` / `rm` phases (0: skip).
    #[arg(long, default_value_t = 10)]
    phase_rounds: usize,
    /// Detached `sleep 1000` containers started with berth (0: skip the detached workload).
    #[arg(long, default_value_t = 200)]
    detached: usize,
    /// Detached containers per peer column (podman-crun, podman-runc, docker); default: as
    /// many as --detached.
    #[arg(long)]
    detached_peers: Option<usize>,
    /// Columns, comma-separated, from: berth, podman-crun, podman-runc, docker (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// berth binary (default: `berth` next to this binary, i.e. target/release/berth; its
    /// berth-monitor and berth-init are found next to it).
    #[arg(long)]
    berth: Option<PathBuf>,
    /// podman binary.
    #[arg(long, default_value = "podman")]
    podman: String,
    /// crun binary (podman's --runtime).
    #[arg(long, default_value = "crun")]
    crun: String,
    /// runc binary (podman's --runtime).
    #[arg(long, default_value = "runc")]
    runc: String,
    /// dockerd binary (a private daemon is started; the column is skipped without it).
    #[arg(long, default_value = "dockerd")]
    dockerd: String,
    /// docker client binary.
    #[arg(long, default_value = "docker")]
    docker: String,
    /// busybox-static binary for the image.
    #[arg(long, default_value = BUSYBOX)]
    busybox: PathBuf,
    /// Dir under which the engines' roots are made (default: $TMPDIR or /tmp); their run dirs
    /// are on a tmpfs.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Also write every sample, summary and ratio to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() {
    cli::main("engine-bench", || run(Args::parse()));
}

fn run(args: Args) -> Result<()> {
    cli::check_only(&args.only, &ALL)?;
    if !nix::unistd::geteuid().is_root() {
        bail!("must run as root (containers, mounts, a private dockerd)");
    }
    if !args.busybox.is_file() {
        bail!(
            "{} not found: apt-get install busybox-static (or --busybox PATH)",
            args.busybox.display()
        );
    }
    let wanted = |c: &str| args.only.is_empty() || args.only.iter().any(|o| o == c);
    let berth_bin = args.berth.clone().unwrap_or_else(default_berth);
    if !berth_bin.is_file() {
        bail!(
            "{} not found: cargo build --release -p berth-cli -p berth-monitor -p berth-init (or --berth PATH)",
            berth_bin.display()
        );
    }
    // While the process has one thread: every child inherits this namespace.
    let setup = ns::enter_private_mount_ns()?;
    engine::mask_run()?;
    let run_dirs = ns::StateTmpfs::mount()?;
    exec::install_interrupt_handler()?;

    let parent = args.workdir.clone().unwrap_or_else(std::env::temp_dir);
    let base = tempfile::Builder::new()
        .prefix("berth-engine-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("temp dir in {}", parent.display()))?;
    let disk = base.path();
    let rund = run_dirs.path.as_path();

    // The image, once, in berth; then the same archive into the peers.
    let tar = engine::image::rootfs_tar(&args.busybox, disk)?;
    let berth = Berth::new(berth_bin, disk, rund)?;
    let image_id = berth.import(&tar, IMAGE)?;
    let archive = disk.join("busybox-docker-archive.tar");
    berth.save(IMAGE, &archive)?;

    let mut notes: Vec<String> = Vec::new();
    let crun = tool_for(&args.crun, wanted("podman-crun"), "podman-crun", &mut notes);
    let runc = tool_for(&args.runc, wanted("podman-runc"), "podman-runc", &mut notes);
    let podman = match (&crun, &runc) {
        (None, None) => None,
        _ => match engine::find_tool(&args.podman) {
            Some(p) => Some(Podman::new(p, disk, rund)?),
            None => {
                notes.push(format!("podman columns skipped: {} not found", args.podman));
                None
            }
        },
    };
    let podman_image = match &podman {
        Some(p) => {
            let name = p.load(&archive)?;
            check_same_image("podman", &p.image_id(&name)?, &image_id, &mut notes);
            Some(name)
        }
        None => None,
    };
    let docker = if wanted("docker") {
        start_docker(&args, disk, rund, &mut notes)
    } else {
        None
    };
    let docker_image = match &docker {
        Some(d) => {
            let name = d.load(&archive)?;
            check_same_image("docker", &d.image_id(&name)?, &image_id, &mut notes);
            Some(name)
        }
        None => None,
    };

    let mut cols: Vec<Column> = Vec::new();
    if wanted("berth") {
        cols.push(Column {
            name: "berth",
            engine: Engine::Berth(&berth),
            image: IMAGE.into(),
            version: berth.version.clone(),
        });
    }
    if let (Some(p), Some(img)) = (&podman, &podman_image) {
        for (name, rt) in [("podman-crun", &crun), ("podman-runc", &runc)] {
            if let Some(rt) = rt {
                cols.push(Column {
                    name,
                    engine: Engine::Podman(p, rt.clone()),
                    image: img.clone(),
                    version: format!("{} + {}", p.version, exec::version(rt)),
                });
            }
        }
    }
    if let (Some(d), Some(img)) = (&docker, &docker_image) {
        cols.push(Column {
            name: "docker",
            engine: Engine::Docker(d),
            image: img.clone(),
            version: format!("{} + {}", d.version, exec::version(&d.client)),
        });
    }
    if cols.is_empty() {
        bail!("no column to run");
    }

    let uts = nix::sys::utsname::uname().context("uname")?;
    let kernel = uts.release().to_string_lossy().into_owned();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "engine-bench: busybox image {}, kernel {kernel}, {cpus} CPUs",
        &image_id[..12]
    );
    println!(
        "private mount namespace ({} {}, /run an empty tmpfs); roots under {}, run dirs on a tmpfs at {}",
        ns::UNIFIED,
        if setup.unified_unmounted {
            "unmounted in it"
        } else {
            "was not mounted"
        },
        disk.display(),
        rund.display()
    );
    for c in &cols {
        println!("  {:<12} {}", c.name, c.version);
        println!("  {:<12} {}", "", c.describe());
    }
    for n in &notes {
        println!("note: {n}");
    }
    let load_before = loadavg();
    println!("load average before: {load_before} (other work on the machine skews every column)");

    // Check + warm-up.
    for c in &cols {
        for _ in 0..args.warmup.max(1) {
            check_interrupted()?;
            c.run_rm_true()?;
        }
    }

    let mut run_rm = None;
    if args.rounds > 0 {
        eprintln!("run --rm: {} rounds per column ...", args.rounds);
        let mut samples = vec![Vec::with_capacity(args.rounds); cols.len()];
        for i in 0..args.rounds {
            for k in rotated(cols.len(), i) {
                check_interrupted()?;
                samples[k].push(cols[k].run_rm_true()?);
            }
        }
        let t = Timings {
            title: format!(
                "run --rm --network none IMAGE true ({} rounds per column, interleaved), ms",
                args.rounds
            ),
            samples: cols.iter().map(|c| c.name).zip(samples).collect(),
        };
        print!("{}", t.table(&RUN_RATIOS));
        if let (Some(b), Some(p)) = (t.median("berth"), t.median("podman-crun")) {
            let r = b / p;
            println!(
                "  target berth/podman-crun <= {TARGET_VS_PODMAN_CRUN:.2}: {} ({r:.3})",
                if r <= TARGET_VS_PODMAN_CRUN {
                    "met"
                } else {
                    "NOT met"
                }
            );
        }
        run_rm = Some(t);
    }

    let phases = if args.phase_rounds > 0 && wanted("berth") {
        let p = berth_phases(&berth, args.phase_rounds)?;
        print!("{}", p.table(&[]));
        let sum: f64 = ["create", "start -a", "rm"]
            .iter()
            .filter_map(|k| p.median(k))
            .sum();
        println!("  sum of the three phases' medians: {sum:.1} ms");
        Some(p)
    } else {
        None
    };

    let mut detached = Vec::new();
    if args.detached > 0 {
        for c in &cols {
            let n = if c.name == "berth" {
                args.detached
            } else {
                args.detached_peers.unwrap_or(args.detached)
            };
            if n > 0 {
                detached.push(detached_run(c, n)?);
            }
        }
        print!("{}", report::detached_table(&detached));
    }

    let load_after = loadavg();
    println!("\nload average after: {load_after}");

    if let Some(path) = &args.json {
        let meta = json!({
            "unix_time": stats::unix_time(),
            "kernel": kernel,
            "cpus": cpus,
            "unified_unmounted": setup.unified_unmounted,
            "image_id": image_id,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "phase_rounds": args.phase_rounds,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "roots": disk.display().to_string(),
            "notes": notes,
            "columns": stats::columns_json(cols.iter().map(|c| (c.name, c.bin(), c.version.as_str()))),
            "commands": cols.iter().map(|c| (c.name.to_string(), json!(c.describe()))).collect::<serde_json::Map<_, _>>(),
        });
        let doc = json!({
            "meta": meta,
            "run_rm": run_rm.as_ref().map(|t| t.json(&RUN_RATIOS)),
            "berth_phases": phases.as_ref().map(|t| t.json(&[])),
            "detached": (!detached.is_empty()).then(|| report::detached_json(&detached)),
        });
        stats::write_json(path, &doc)?;
    }
    // Guards, in this order: the columns' engines (containers, daemon, mounts), then the temp
    // dirs, then the run dirs' tmpfs.
    drop(cols);
    drop(docker);
    drop(podman);
    drop(berth);
    base.close().context("removing the work dir")?;
    drop(run_dirs);
    Ok(())
}

/// `berth` next to this binary (both in target/release), else target/release/berth.
fn default_berth() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("berth")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| Path::new("target/release/berth").to_path_buf())
}

/// The runtime binary of a podman column, when the column is wanted and the binary exists.
fn tool_for(given: &str, wanted: bool, col: &str, notes: &mut Vec<String>) -> Option<PathBuf> {
    if !wanted {
        return None;
    }
    let t = engine::find_tool(given);
    if t.is_none() {
        notes.push(format!("{col} skipped: {given} not found"));
    }
    t
}

fn check_same_image(tool: &str, id: &str, berth_id: &str, notes: &mut Vec<String>) {
    if id != berth_id {
        let n = format!("{tool} holds the image as {id}, berth as {berth_id}: not the same config");
        eprintln!("warning: {n}");
        notes.push(n);
    }
}

fn start_docker(args: &Args, disk: &Path, rund: &Path, notes: &mut Vec<String>) -> Option<Docker> {
    let Some(dockerd) = engine::find_tool(&args.dockerd) else {
        notes.push(format!(
            "docker skipped: {} not found (apt-get install docker.io)",
            args.dockerd
        ));
        return None;
    };
    let Some(client) = engine::find_tool(&args.docker) else {
        notes.push(format!(
            "docker skipped: the {} client was not found",
            args.docker
        ));
        return None;
    };
    eprintln!("starting a private dockerd ...");
    match Docker::start(dockerd, client, disk, rund, Duration::from_secs(60)) {
        Ok(d) => Some(d),
        Err(e) => {
            notes.push(format!("docker skipped: {e:#}"));
            None
        }
    }
}

/// berth's `create`, `start -a` and `rm` of one container, one after the other, and a `run
/// --rm` in each round beside them.
fn berth_phases(berth: &Berth, rounds: usize) -> Result<Timings> {
    eprintln!("berth phases: {rounds} rounds ...");
    let limit = Duration::from_secs(120);
    let mut s: [Vec<f64>; 4] = Default::default();
    for _ in 0..rounds {
        check_interrupted()?;
        let c = exec::run(
            berth
                .cmd()
                .args(["create", "--network", "none", IMAGE, "true"]),
            limit,
        )?;
        let id = c.stdout.trim().to_string();
        if id.is_empty() {
            bail!("berth create printed no id");
        }
        s[0].push(c.ms);
        s[1].push(exec::timed(berth.cmd().args(["start", "-a", &id]), limit)?);
        s[2].push(exec::timed(berth.cmd().args(["rm", &id]), limit)?);
        s[3].push(exec::timed(
            berth
                .cmd()
                .args(["run", "--rm", "--network", "none", IMAGE, "true"]),
            limit,
        )?);
    }
    let [a, b, c, d] = s;
    Ok(Timings {
        title: format!("berth, phase by phase ({rounds} rounds), ms"),
        samples: vec![("create", a), ("start -a", b), ("rm", c), ("run --rm", d)],
    })
}

/// Starts `n` detached `sleep 1000` containers one after another, measures their watchers'
/// memory with all running, then removes them all.
fn detached_run(c: &Column, n: usize) -> Result<Detached> {
    eprintln!("{}: starting {n} detached containers ...", c.name);
    let mut start_ms = 0.0;
    for i in 0..n {
        check_interrupted()?;
        start_ms += c.run_detached_sleep()?;
        if (i + 1) % 50 == 0 && i + 1 < n {
            eprintln!("  {}/{n}", i + 1);
        }
    }
    // Let the last watchers finish their start-up before reading their memory.
    std::thread::sleep(Duration::from_secs(1));
    let mems = c.watchers();
    if mems.len() != n {
        eprintln!(
            "warning: {}: {} {} processes for {n} containers",
            c.name,
            mems.len(),
            c.watcher()
        );
    }
    let daemons = c.daemons();
    eprintln!("{}: removing them ...", c.name);
    let rm_ms = c.remove_all()?;
    for _ in 0..100 {
        if c.watchers().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = c.watchers().len();
    if left > 0 {
        eprintln!(
            "warning: {}: {left} {} still running 10 s after rm -f",
            c.name,
            c.watcher()
        );
    }
    Ok(Detached {
        name: c.name,
        n,
        start_ms,
        rm_ms,
        watcher: c.watcher(),
        mems,
        daemons,
    })
}
