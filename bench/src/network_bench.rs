//! `network-bench`: what a container's network costs.
//!
//! * `run --rm IMAGE true`: berth with its default bridge network and with `--network none`,
//!   podman (crun) with its default network (netavark) and with `--network none`; `--rounds`
//!   interleaved rounds (round i runs the columns in an order rotated by i) after `--warmup`
//!   unrecorded runs per column, every exit status checked.
//! * TCP throughput, iperf3 (one stream, `--seconds` per sample, `--tcp-rounds` samples,
//!   interleaved): between two berth containers on a user network (veth - bridge - veth) and on
//!   the host's loopback. iperf3 is Debian's, copied with the libraries `ldd` names into an image
//!   of its own (busybox has no iperf).
//!
//! Everything runs in a private mount namespace (as engine-bench: `/sys/fs/cgroup/unified`
//! unmounted for crun, an empty tmpfs on `/run`, run dirs on a tmpfs) and a private network
//! namespace, which is the "host" here: both engines' bridges, veth pairs and firewall rules are
//! made there and vanish with it, and no traffic reaches the machine's network. Podman's default
//! subnet is moved to 10.90.0.0/16 so that its bridge never overlaps berth's 10.88.0.0/16.
//! Needs root, podman with crun and netavark (the podman columns are skipped without them),
//! iperf3 (the throughput part is skipped without it).

#[allow(dead_code)]
mod cli;
#[allow(dead_code)]
mod engine;
mod mounts;
#[allow(dead_code)]
mod ns;
#[allow(dead_code)]
mod stats;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_runtime_tests::BUSYBOX;
use clap::Parser;
use serde_json::{json, Value};

use engine::engines::{Berth, Podman, PODMAN_ULIMITS};
use engine::exec;
use stats::{loadavg, rotated, Summary};

const IMAGE: &str = "bench/busybox:1";
const IPERF_IMAGE: &str = "bench/iperf3:1";
const CMD: Duration = Duration::from_secs(120);

/// Benchmark the network of berth's containers: `run --rm` with and without a bridge network
/// (against podman's), and TCP throughput between two containers (against the host's loopback).
#[derive(Parser, Debug)]
#[command(name = "network-bench")]
struct Args {
    /// Measured rounds of `run --rm IMAGE true` per column (0: skip).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Unrecorded `run --rm` per column first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// iperf3 samples per column (0: skip the throughput part).
    #[arg(long, default_value_t = 5)]
    tcp_rounds: usize,
    /// Seconds per iperf3 sample.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// berth binary (default: `berth` next to this binary).
    #[arg(long)]
    berth: Option<PathBuf>,
    /// podman binary.
    #[arg(long, default_value = "podman")]
    podman: String,
    /// crun binary (podman's --runtime).
    #[arg(long, default_value = "crun")]
    crun: String,
    /// iperf3 binary.
    #[arg(long, default_value = "iperf3")]
    iperf3: String,
    /// busybox-static binary for the images.
    #[arg(long, default_value = BUSYBOX)]
    busybox: PathBuf,
    /// Also write every sample and summary to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() {
    cli::main("network-bench", || run(Args::parse()));
}

fn default_berth() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("berth")))
        .unwrap_or_else(|| PathBuf::from("berth"))
}

/// Moves the process (one thread yet) into a new network namespace with its loopback up.
fn enter_private_net_ns() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
    exec::run(
        Command::new("ip").args(["link", "set", "lo", "up"]),
        Duration::from_secs(10),
    )?;
    Ok(())
}

/// A column of the `run --rm` workload.
struct Col<'a> {
    name: &'static str,
    cmd: Box<dyn Fn() -> Command + 'a>,
}

fn summary_json(name: &str, samples: &[f64], unit: &str) -> Value {
    let s = Summary::of(samples);
    json!({"column": name, "unit": unit, "samples": samples,
           "median": s.map(|s| s.median), "p90": s.map(|s| s.p90), "min": s.map(|s| s.min)})
}

/// Copies iperf3 and the libraries `ldd` names into a busybox rootfs; its tar.
fn iperf_rootfs(iperf3: &Path, busybox: &Path, dir: &Path) -> Result<PathBuf> {
    let root = dir.join("iperf-rootfs");
    std::fs::create_dir_all(root.join("bin"))?;
    // iperf3 keeps each stream's buffer in a temp file under /tmp.
    std::fs::create_dir_all(root.join("tmp"))?;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    std::os::unix::fs::symlink("busybox", root.join("bin/sh"))?;
    let ldd = exec::run(Command::new("ldd").arg(iperf3), CMD)?;
    let mut files = vec![iperf3.to_path_buf()];
    for l in ldd.stdout.lines() {
        // "libx.so => /lib/.../libx.so (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = l
            .split("=>")
            .last()
            .and_then(|r| r.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(p) = path {
            files.push(PathBuf::from(p));
        }
    }
    for f in files {
        let dst = root.join(f.strip_prefix("/").unwrap_or(&f));
        if let Some(d) = dst.parent() {
            std::fs::create_dir_all(d)?;
        }
        // Copying follows symlinks: the file itself under the name the loader asks for.
        std::fs::copy(&f, &dst).with_context(|| format!("copying {}", f.display()))?;
    }
    let tar = dir.join("iperf-rootfs.tar");
    exec::run(
        Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&root)
            .arg("."),
        CMD,
    )?;
    Ok(tar)
}

/// Received bits per second of an iperf3 `-J` report, in Gbit/s.
fn gbits(report: &str) -> Result<f64> {
    let v: Value = serde_json::from_str(report).context("iperf3 -J output")?;
    if let Some(e) = v["error"].as_str() {
        bail!("iperf3: {e}");
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .context("iperf3 -J: no end.sum_received.bits_per_second")
}

/// Kills a child (an iperf3 server) on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(args: Args) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("must run as root (containers, namespaces, bridges)");
    }
    let berth_bin = args.berth.clone().unwrap_or_else(default_berth);
    if !berth_bin.is_file() {
        bail!(
            "{} not found: cargo build --release -p berth-cli -p berth-monitor -p berth-init (or --berth PATH)",
            berth_bin.display()
        );
    }
    // While the process has one thread: every child inherits these namespaces.
    ns::enter_private_mount_ns()?;
    enter_private_net_ns()?;
    engine::mask_run()?;
    let run_dirs = ns::StateTmpfs::mount()?;
    exec::install_interrupt_handler()?;
    let base = tempfile::Builder::new()
        .prefix("berth-network-bench-")
        .tempdir()
        .context("temp dir")?;
    let disk = base.path();
    let rund = run_dirs.path.as_path();
    let tar = engine::image::rootfs_tar(&args.busybox, disk)?;
    let berth = Berth::new(berth_bin, disk, rund)?;
    berth.import(&tar, IMAGE)?;
    let archive = disk.join("busybox-docker-archive.tar");
    berth.save(IMAGE, &archive)?;

    let mut notes = Vec::new();
    let crun = engine::find_tool(&args.crun);
    let podman = match (engine::find_tool(&args.podman), &crun) {
        (Some(p), Some(_)) => {
            let p = Podman::new(p, disk, rund)?;
            // Its default network away from berth's 10.88.0.0/16.
            std::fs::write(
                disk.join("podman/containers.conf"),
                "[containers]\n[engine]\n[network]\ndefault_subnet = \"10.90.0.0/16\"\n",
            )?;
            Some(p)
        }
        _ => {
            notes.push(format!(
                "podman columns skipped: {} or {} not found",
                args.podman, args.crun
            ));
            None
        }
    };
    let podman_image = match &podman {
        Some(p) => Some(p.load(&archive)?),
        None => None,
    };

    println!(
        "network-bench: {} rounds of run --rm (+{} warm-up), {} x {} s of iperf3; load average {}",
        args.rounds,
        args.warmup,
        args.tcp_rounds,
        args.seconds,
        loadavg()
    );
    println!("berth: {} ({})", berth.bin.display(), berth.version);
    let mut doc = json!({"load_before": loadavg(), "berth": berth.version});

    // run --rm
    let mut cols: Vec<Col> = vec![
        Col {
            name: "berth-bridge",
            cmd: Box::new(|| {
                let mut c = berth.cmd();
                c.args(["run", "--rm", IMAGE, "true"]);
                c
            }),
        },
        Col {
            name: "berth-none",
            cmd: Box::new(|| {
                let mut c = berth.cmd();
                c.args(["run", "--rm", "--network", "none", IMAGE, "true"]);
                c
            }),
        },
    ];
    if let (Some(p), Some(img), Some(rt)) = (&podman, &podman_image, &crun) {
        println!(
            "podman: {} ({}), runtime {}",
            p.bin.display(),
            p.version,
            rt.display()
        );
        for (name, none) in [("podman-bridge", false), ("podman-none", true)] {
            cols.push(Col {
                name,
                cmd: Box::new(move || {
                    let mut c = p.cmd();
                    c.args(["run", "--rm", "--runtime"])
                        .arg(rt)
                        .args(PODMAN_ULIMITS);
                    if none {
                        c.args(["--network", "none"]);
                    }
                    c.args([img.as_str(), "true"]);
                    c
                }),
            });
        }
    }
    if args.rounds > 0 {
        for c in &cols {
            for _ in 0..args.warmup.max(1) {
                exec::timed(&mut (c.cmd)(), CMD).with_context(|| format!("{}: warm-up", c.name))?;
            }
        }
        let mut samples = vec![Vec::new(); cols.len()];
        for round in 0..args.rounds {
            for i in rotated(cols.len(), round) {
                exec::check_interrupted()?;
                let ms = exec::timed(&mut (cols[i].cmd)(), CMD)
                    .with_context(|| format!("{}: run --rm", cols[i].name))?;
                samples[i].push(ms);
            }
        }
        println!(
            "\nrun --rm IMAGE true ({} rounds, interleaved), ms:",
            args.rounds
        );
        println!("| column | median | p90 | min |\n|---|---:|---:|---:|");
        let mut med = std::collections::BTreeMap::new();
        let mut rows = Vec::new();
        for (c, s) in cols.iter().zip(&samples) {
            if let Some(x) = Summary::of(s) {
                println!(
                    "| {} | {:.1} | {:.1} | {:.1} |",
                    c.name, x.median, x.p90, x.min
                );
                med.insert(c.name, x.median);
            }
            rows.push(summary_json(c.name, s, "ms"));
        }
        let mut ratios = Vec::new();
        for (a, b) in [
            ("berth-bridge", "berth-none"),
            ("berth-bridge", "podman-bridge"),
            ("podman-bridge", "podman-none"),
        ] {
            if let (Some(x), Some(y)) = (med.get(a), med.get(b)) {
                ratios.push((format!("{a}/{b}"), x / y));
            }
        }
        print!("{}", stats::ratios_line(&ratios));
        if let (Some(b), Some(n)) = (med.get("berth-bridge"), med.get("berth-none")) {
            println!("  berth's bridge network adds {:.1} ms to run --rm", b - n);
        }
        if let (Some(b), Some(n)) = (med.get("podman-bridge"), med.get("podman-none")) {
            println!(
                "  podman's default network adds {:.1} ms to run --rm",
                b - n
            );
        }
        doc["run_rm"] = json!({"columns": rows,
            "ratios": ratios.iter().map(|(k, v)| json!({k.clone(): v})).collect::<Vec<_>>()});
    }

    // TCP throughput
    match engine::find_tool(&args.iperf3) {
        _ if args.tcp_rounds == 0 => {}
        None => notes.push(format!(
            "throughput skipped: {} not found (apt-get install iperf3)",
            args.iperf3
        )),
        Some(iperf3) => {
            let itar = iperf_rootfs(&iperf3, &args.busybox, disk)?;
            berth.import(&itar, IPERF_IMAGE)?;
            exec::run(
                berth
                    .cmd()
                    .args(["network", "create", "--subnet", "10.91.0.0/24", "benchnet"]),
                CMD,
            )?;
            exec::run(
                berth.cmd().args([
                    "run",
                    "-d",
                    "--name",
                    "iperf-srv",
                    "--network",
                    "benchnet",
                    "--ip",
                    "10.91.0.2",
                    IPERF_IMAGE,
                    "/usr/bin/iperf3",
                    "-s",
                ]),
                CMD,
            )?;
            let _host_srv = Reaped(
                Command::new(&iperf3)
                    .args(["-s", "-B", "127.0.0.1", "-p", "5202"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting the host's iperf3 server")?,
            );
            let t = args.seconds.to_string();
            let container = || {
                let mut c = berth.cmd();
                c.args([
                    "run",
                    "--rm",
                    "--network",
                    "benchnet",
                    IPERF_IMAGE,
                    "/usr/bin/iperf3",
                    "-c",
                    "10.91.0.2",
                    "-J",
                    "-t",
                    &t,
                ]);
                c
            };
            let loopback = || {
                let mut c = Command::new(&iperf3);
                c.args(["-c", "127.0.0.1", "-p", "5202", "-J", "-t", &t]);
                c
            };
            // Until both servers answer (they may still be starting).
            for (name, mk) in [
                ("containers", &container as &dyn Fn() -> Command),
                ("loopback", &loopback),
            ] {
                let mut ok = false;
                for _ in 0..50 {
                    let mut c = mk();
                    c.args(["-t", "1"]);
                    if exec::run(&mut c, CMD)
                        .ok()
                        .and_then(|o| gbits(&o.stdout).ok())
                        .is_some()
                    {
                        ok = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                if !ok {
                    bail!("the {name} iperf3 server does not answer");
                }
            }
            let mut samples = [Vec::new(), Vec::new()];
            let names = ["berth containers (bridge)", "host loopback"];
            for round in 0..args.tcp_rounds {
                for i in rotated(2, round) {
                    exec::check_interrupted()?;
                    let o = exec::run(&mut if i == 0 { container() } else { loopback() }, CMD)?;
                    samples[i].push(gbits(&o.stdout)?);
                }
            }
            println!(
                "\nTCP throughput, iperf3, 1 stream, {} s x {} samples (interleaved), Gbit/s:",
                args.seconds, args.tcp_rounds
            );
            println!("| between | median | min | max |\n|---|---:|---:|---:|");
            let mut rows = Vec::new();
            let mut meds = Vec::new();
            for (n, s) in names.iter().zip(&samples) {
                if let Some(x) = Summary::of(s) {
                    let max = s.iter().cloned().fold(f64::MIN, f64::max);
                    println!("| {n} | {:.2} | {:.2} | {max:.2} |", x.median, x.min);
                    meds.push(x.median);
                }
                rows.push(summary_json(n, s, "Gbit/s"));
            }
            if let [c, l] = meds[..] {
                println!("  ratio containers/loopback: {:.2}", c / l);
            }
            doc["tcp"] = json!({"seconds": args.seconds, "columns": rows});
            let _ = exec::run(berth.cmd().args(["rm", "-f", "iperf-srv"]), CMD);
            let _ = exec::run(berth.cmd().args(["network", "rm", "benchnet"]), CMD);
        }
    }
    for n in &notes {
        println!("note: {n}");
    }
    doc["notes"] = json!(notes);
    doc["load_after"] = json!(loadavg());
    println!("load average after: {}", loadavg());
    if let Some(p) = &args.json {
        stats::write_json(p, &doc)?;
    }
    Ok(())
}
