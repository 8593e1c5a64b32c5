//! `pull-bench`: cold pull + unpack of images from a local `docker-registry`, berth against
//! `podman pull` and `skopeo copy` + `umoci unpack`, with a floor column: a serial `tar -xzf` of
//! the (already fetched) layer blobs into one dir.
//!
//! Images, built offline and pushed to a registry on 127.0.0.1 (random port, temp storage):
//! (a) busybox, one layer; (b) a Debian bookworm minbase rootfs from debootstrap, one layer
//! (skipped with a message when debootstrap fails; its tree is cached in `--debian-rootfs`);
//! (c) a generated multi-layer image (deterministic; text and random data, many small files):
//! by default 8 layers, about 29 000 files, about 400 MB uncompressed ([`MultiShape::DEFAULT`]).
//!
//! Every run starts from a fresh, empty store (its own temp dir, all on the same filesystem)
//! which is removed afterwards, untimed. Columns are interleaved: round i runs them in an
//! order rotated by i. The page cache is not dropped (shared machine): the registry's storage
//! is warm for every column. Every command's exit status is checked. Needs root (podman's
//! overlay storage).

mod cli;
mod mounts;
mod pull;
mod stats;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::json;
use stats::{loadavg, rotated};

use pull::columns::{self, ALL};
use pull::images::{self, Image, MultiShape};
use pull::registry::Registry;
use pull::report::{self, ImageRun};

const IMAGES: [&str; 3] = ["busybox", "debian", "multi"];

/// Benchmark image pulls: berth vs podman vs skopeo+umoci, with a tar floor.
#[derive(Parser, Debug)]
#[command(name = "pull-bench")]
struct Args {
    /// Measured rounds for busybox.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Measured rounds for the Debian and the multi-layer images.
    #[arg(long, default_value_t = 3)]
    big_rounds: usize,
    /// Images, comma-separated, from: busybox, debian, multi (default: all).
    #[arg(long, value_delimiter = ',')]
    images: Vec<String>,
    /// Columns, comma-separated, from: berth, podman, skopeo+umoci, tar (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// berth binary (default: `berth` next to this binary, i.e. target/release/berth).
    #[arg(long)]
    berth: Option<PathBuf>,
    /// Layers of the multi-layer image.
    #[arg(long, default_value_t = MultiShape::DEFAULT.layers)]
    multi_layers: u64,
    /// Small text files (0.5-16 KiB) per layer.
    #[arg(long, default_value_t = MultiShape::DEFAULT.small)]
    multi_small: u64,
    /// Large files per layer.
    #[arg(long, default_value_t = MultiShape::DEFAULT.large)]
    multi_large: u64,
    /// MiB per large file.
    #[arg(long, default_value_t = MultiShape::DEFAULT.large_mib)]
    multi_large_mib: u64,
    /// Debian minbase tree: used when present, made with debootstrap otherwise (and kept).
    #[arg(
        long,
        default_value = "/var/tmp/berth-pull-bench/debian-bookworm-minbase"
    )]
    debian_rootfs: PathBuf,
    /// Dir under which the registry, images and stores are made (default: $TMPDIR or /tmp).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Also write every sample, summary and ratio to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() {
    cli::main("pull-bench", || run(Args::parse()));
}

fn run(args: Args) -> Result<()> {
    cli::check_only(&args.only, &ALL)?;
    for i in &args.images {
        if !IMAGES.contains(&i.as_str()) {
            bail!(
                "--images: unknown image {i:?} (known: {})",
                IMAGES.join(", ")
            );
        }
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("must run as root (podman's overlay storage, store ownership)");
    }
    for t in ["docker-registry", "skopeo", "umoci", "tar"] {
        if !pull::cmd::on_path(t) {
            bail!("`{t}` is needed to build and serve the images");
        }
    }
    let berth = args.berth.clone().unwrap_or_else(default_berth);
    let cols = columns::discover(&args.only, &berth);
    if cols.is_empty() {
        bail!("no column to run");
    }
    let wanted = |i: &str| args.images.is_empty() || args.images.iter().any(|x| x == i);

    let base_parent = args.workdir.clone().unwrap_or_else(std::env::temp_dir);
    let base = tempfile::Builder::new()
        .prefix("berth-pull-bench-")
        .tempdir_in(&base_parent)
        .with_context(|| format!("temp dir in {}", base_parent.display()))?;
    let reg = Registry::start(base.path())?;
    let work = base.path().join("images");
    std::fs::create_dir(&work)?;

    eprintln!("building and pushing the images ...");
    let mut imgs: Vec<(Image, usize)> = Vec::new();
    if wanted("busybox") {
        imgs.push((images::busybox(&work, &reg)?, args.rounds));
    }
    if wanted("debian") {
        let mirror = images::apt_mirror();
        match images::ensure_debootstrap(&args.debian_rootfs, &mirror) {
            Ok(()) => imgs.push((
                images::debian(&work, &reg, &args.debian_rootfs)?,
                args.big_rounds,
            )),
            Err(e) => eprintln!("skipping the Debian image: debootstrap failed: {e:#}"),
        }
    }
    if wanted("multi") {
        let shape = MultiShape {
            layers: args.multi_layers,
            small: args.multi_small,
            large: args.multi_large,
            large_mib: args.multi_large_mib,
        };
        imgs.push((images::multi(&work, &reg, shape)?, args.big_rounds));
    }

    let uts = nix::sys::utsname::uname().context("uname")?;
    let kernel = uts.release().to_string_lossy().into_owned();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "pull-bench: cold pull + unpack from docker-registry on {}; kernel {kernel}, {cpus} CPUs",
        reg.host()
    );
    println!(
        "fresh store per run under {} (one filesystem); warm registry: its storage is in the page cache for every column",
        base.path().display()
    );
    for c in &cols {
        println!("  {:<13} {}  ({})", c.name, c.bin.display(), c.version);
    }
    let load_before = loadavg();
    println!("load average before: {load_before}");

    let mut runs = Vec::new();
    for (img, rounds) in &imgs {
        eprintln!(
            "{}: check run per column, then {rounds} rounds ...",
            img.key
        );
        for c in &cols {
            c.once(img, base.path())?;
        }
        let mut samples = vec![Vec::with_capacity(*rounds); cols.len()];
        for i in 0..*rounds {
            for k in rotated(cols.len(), i) {
                samples[k].push(cols[k].once(img, base.path())?);
            }
        }
        runs.push(ImageRun {
            key: img.key,
            title: format!("{} ({rounds} rounds, interleaved)", img.title),
            compressed: img.compressed,
            uncompressed: img.uncompressed,
            samples: cols.iter().map(|c| c.name).zip(samples).collect(),
        });
    }
    print!("{}", report::table(&runs));
    let load_after = loadavg();
    println!("\nload average after: {load_after}");

    if let Some(path) = &args.json {
        let unix_time = stats::unix_time();
        let bins = stats::columns_json(
            cols.iter()
                .map(|c| (c.name, &c.bin as &Path, c.version.as_str())),
        );
        let meta = json!({
            "unix_time": unix_time,
            "kernel": kernel,
            "cpus": cpus,
            "rounds": args.rounds,
            "big_rounds": args.big_rounds,
            "warm_registry": true,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "columns": bins,
        });
        stats::write_json(path, &report::json(meta, &runs))?;
    }
    drop(reg);
    base.close().context("removing the work dir")?;
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
