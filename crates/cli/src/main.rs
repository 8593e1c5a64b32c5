//! `berth`: the container engine's command line: the container commands (run, create, start, stop,
//! kill, restart, rm, ps, logs, exec, attach, wait, inspect; see `container/`) and the image
//! commands (pull, push, images, inspect, history, tag, rmi, image prune, save, load, import, login,
//! logout).
//!
//! Failures print `Error: ...` on stderr and exit with 125, docker's code for engine failures.

mod archive;
mod container;
mod db;
mod images;
mod kube;
mod networks;
mod pod;
mod progress;
mod pull;
mod registry;
mod store;
mod util;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::store::Store;

/// Exit status for every berth failure (docker's 125).
const EXIT_FAILURE: u8 = 125;

#[derive(Parser)]
#[command(name = "berth", version, about = "Berth: manage images and containers")]
struct Cli {
    /// Storage root (blobs, layers, metadata database).
    #[arg(long, global = true, default_value = "/var/lib/berth")]
    root: PathBuf,
    /// Runtime state directory.
    #[arg(long, global = true, default_value = "/run/berth")]
    runroot: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

/// `--tls-verify`, `--tls-verify=false`.
#[derive(clap::Args, Clone)]
struct TlsArgs {
    /// Verify the registry's TLS certificate (`=false`: do not, and allow plain HTTP).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tls_verify: Option<bool>,
    /// Credentials file (default: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
    /// ~/.docker/config.json).
    #[arg(long)]
    authfile: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Containers(Box<container::commands::Commands>),
    /// Manage pods: containers sharing network, IPC and UTS namespaces.
    Pod {
        #[command(subcommand)]
        cmd: pod::commands::PodCmd,
    },
    /// Run (play) or remove (down) Kubernetes Pod and Deployment manifests.
    Kube {
        #[command(subcommand)]
        cmd: kube::KubeCmd,
    },
    /// Manage networks.
    Network {
        #[command(subcommand)]
        cmd: networks::NetworkCmd,
    },
    /// Pull an image from a registry.
    Pull {
        /// Print only the image id.
        #[arg(short, long)]
        quiet: bool,
        /// Platform to pick from a multi-platform image: os/arch[/variant].
        #[arg(long)]
        platform: Option<String>,
        #[command(flatten)]
        tls: TlsArgs,
        /// Image reference.
        reference: String,
    },
    /// Push an image to a registry.
    Push {
        /// Print nothing but the manifest digest.
        #[arg(short, long)]
        quiet: bool,
        #[command(flatten)]
        tls: TlsArgs,
        /// Local image.
        image: String,
        /// Destination reference (default: the image's name).
        destination: Option<String>,
    },
    /// List images.
    Images {
        /// `json` for machine-readable output.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show an image's configuration as JSON.
    Inspect {
        /// A Go-template-like format filled for each item, e.g. `{{.State.Status}}`.
        #[arg(short = 'f', long)]
        format: Option<String>,
        /// Containers or images (name or id).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show the steps that built an image (its config's history, matched to its layers).
    History {
        /// `json` for machine-readable output.
        #[arg(long)]
        format: Option<String>,
        /// Do not shorten the ids and CREATED BY.
        #[arg(long)]
        no_trunc: bool,
        /// Image (name or id).
        image: String,
    },
    /// Add names to an image.
    Tag {
        /// Image (name or id).
        source: String,
        /// New names.
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Remove images (untag; delete when no tag is left).
    Rmi {
        /// Remove an image even when several tags point at it.
        #[arg(short, long)]
        force: bool,
        /// Images (name or id).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Image management.
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
    /// Write an image to an archive.
    Save {
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Archive format.
        #[arg(long, value_enum, default_value = "docker-archive")]
        format: archive::Format,
        /// Image (name or id).
        image: String,
    },
    /// Load images from an oci-archive or docker-archive.
    Load {
        /// Input file.
        #[arg(short, long)]
        input: PathBuf,
        /// Print nothing.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Make a one-layer image from a rootfs tarball (`-` reads stdin).
    Import {
        /// Dockerfile instruction for the image's config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
        /// STOPSIGNAL, USER, VOLUME, WORKDIR), as docker's `import --change`.
        #[arg(short, long)]
        change: Vec<String>,
        /// Tarball, or `-`.
        file: String,
        /// Name for the image.
        reference: Option<String>,
    },
    /// Store credentials for a registry.
    Login {
        /// Username.
        #[arg(short, long)]
        username: Option<String>,
        /// Password.
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        tls: TlsArgs,
        /// Registry host.
        registry: String,
    },
    /// Forget the credentials of a registry.
    Logout {
        /// Credentials file.
        #[arg(long)]
        authfile: Option<PathBuf>,
        /// Registry host.
        registry: String,
    },
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Remove images without a tag and unreferenced blobs and layers.
    Prune {
        /// Do not ask (berth never asks; accepted for compatibility).
        #[arg(short, long)]
        force: bool,
    },
    /// List images.
    Ls {
        /// `json` for machine-readable output.
        #[arg(long)]
        format: Option<String>,
    },
}

fn json_format(f: Option<&str>) -> Result<bool> {
    match f {
        None | Some("table") => Ok(false),
        Some("json") => Ok(true),
        Some(o) => anyhow::bail!("unsupported --format {o:?} (want json or table)"),
    }
}

fn open(cli: &Cli) -> Result<Store> {
    Store::open(&cli.root, &cli.runroot)
}

fn paths(cli: &Cli) -> container::Paths {
    container::Paths {
        root: cli.root.clone(),
        runroot: cli.runroot.clone(),
    }
}

fn print(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
}

fn run(cli: Cli) -> Result<u8> {
    match &cli.cmd {
        Cmd::Network { cmd } => return networks::dispatch(&cli.root, &cli.runroot, cmd),
        Cmd::Pod { cmd } => return pod::commands::dispatch(&mut open(&cli)?, &paths(&cli), cmd),
        Cmd::Kube { cmd } => return kube::dispatch(&mut open(&cli)?, &paths(&cli), cmd),
        Cmd::Containers(c) => {
            return container::commands::dispatch(&mut open(&cli)?, &paths(&cli), c);
        }
        Cmd::Pull {
            quiet,
            platform,
            tls,
            reference,
        } => {
            let mut store = open(&cli)?;
            let opts = pull::PullOpts {
                quiet: *quiet,
                platform: platform.clone(),
                tls_verify: tls.tls_verify,
                authfile: tls.authfile.clone(),
            };
            let id = pull::pull(&mut store, reference, &opts)?;
            print(&format!("{}\n", id.trim_start_matches("sha256:")));
        }
        Cmd::Push {
            quiet,
            tls,
            image,
            destination,
        } => {
            let store = open(&cli)?;
            let d = registry::push(
                &store,
                image,
                destination.as_deref(),
                tls.tls_verify,
                tls.authfile.clone(),
                *quiet,
            )?;
            if !*quiet && std::io::stderr().is_terminal() {
                eprintln!("Pushed {d}");
            }
        }
        Cmd::Images { format }
        | Cmd::Image {
            cmd: ImageCmd::Ls { format },
        } => {
            let json = json_format(format.as_deref())?;
            print(&images::images(&open(&cli)?, json)?);
        }
        Cmd::Inspect {
            format,
            images: names,
        } => {
            let store = open(&cli)?;
            let fmt = format.as_deref();
            match container::commands::inspect_containers(&store, &paths(&cli), names, fmt)? {
                Some(out) => print(&out),
                None => print(&container::query::inspect_output(
                    &images::inspect(&store, names)?,
                    fmt,
                )?),
            }
        }
        Cmd::History {
            format,
            no_trunc,
            image,
        } => {
            let json = json_format(format.as_deref())?;
            print(&images::history(&open(&cli)?, image, json, *no_trunc)?);
        }
        Cmd::Tag { source, targets } => images::tag(&mut open(&cli)?, source, targets)?,
        Cmd::Rmi {
            force,
            images: names,
        } => {
            for l in images::rmi(&mut open(&cli)?, names, *force)? {
                print(&format!("{l}\n"));
            }
        }
        Cmd::Image {
            cmd: ImageCmd::Prune { .. },
        } => {
            for id in images::prune(&mut open(&cli)?)? {
                print(&format!("{}\n", id.trim_start_matches("sha256:")));
            }
        }
        Cmd::Save {
            output,
            format,
            image,
        } => archive::save(&open(&cli)?, image, output, *format)?,
        Cmd::Load { input, quiet } => {
            let names = archive::load(&mut open(&cli)?, input)?;
            if !*quiet {
                for n in names {
                    print(&format!("Loaded image: {n}\n"));
                }
            }
        }
        Cmd::Import {
            change,
            file,
            reference,
        } => {
            let id = archive::import(&mut open(&cli)?, file, reference.as_deref(), change)?;
            print(&format!("{}\n", id.trim_start_matches("sha256:")));
        }
        Cmd::Login {
            username,
            password,
            password_stdin,
            tls,
            registry: reg,
        } => {
            registry::login(
                reg,
                username.clone(),
                password.clone(),
                *password_stdin,
                tls.tls_verify,
                tls.authfile.clone(),
            )?;
            print("Login Succeeded!\n");
        }
        Cmd::Logout {
            authfile,
            registry: reg,
        } => {
            registry::logout(reg, authfile.clone())?;
            print(&format!("Removed login credentials for {reg}\n"));
        }
    }
    Ok(0)
}

fn main() -> ExitCode {
    let mut cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_FAILURE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // Paths end up in mount options, config.json and the monitor's files, read from other
    // working directories: make them absolute once.
    for p in [&mut cli.root, &mut cli.runroot] {
        if let Ok(abs) = std::path::absolute(&*p) {
            *p = abs;
        }
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            match e.downcast_ref::<container::ExitStatus>() {
                Some(s) => ExitCode::from(s.code),
                None => ExitCode::from(EXIT_FAILURE),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
