//! The container commands of the `berth` CLI (flattened into its top-level commands): argument
//! parsing and dispatch; the work is in the sibling modules.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Subcommand;

use super::attach::{self, Relay};
use super::exec::ExecArgs;
use super::lifecycle;
use super::query::{self, LogOpts};
use super::record::{self, Container};
use super::settings::CreateArgs;
use super::Paths;
use crate::store::Store;

/// `ps`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct PsArgs {
    /// Show every container (default: running ones).
    #[arg(short, long)]
    pub all: bool,
    /// Only ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter (id=, name=, status=, label=, ancestor=, exited=).
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// `json`, `table`, or a template such as `{{.ID}}\t{{.Names}}`.
    #[arg(long)]
    pub format: Option<String>,
}

/// `top`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct TopArgs {
    pub container: String,
    /// Options for ps (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

/// `stats`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct StatsArgs {
    /// Print one reading and exit.
    #[arg(long)]
    pub no_stream: bool,
    /// `json` (one object per line) or `table`.
    #[arg(long)]
    pub format: Option<String>,
    /// Containers (default: every running one).
    pub containers: Vec<String>,
}

/// `cp`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct CpArgs {
    /// Archive mode: keep the files' uid/gid.
    #[arg(short, long)]
    pub archive: bool,
    /// Follow a symlink given as SRC.
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// CONTAINER:PATH, a host path, or `-` (a tar stream on stdin).
    #[arg(allow_hyphen_values = true)]
    pub src: String,
    /// CONTAINER:PATH, a host path, or `-` (a tar stream on stdout).
    #[arg(allow_hyphen_values = true)]
    pub dst: String,
}

/// `rename`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

/// Container commands.
#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Create and start a container from an image.
    Run {
        /// Run in the background and print the container id.
        #[arg(short, long)]
        detach: bool,
        /// Remove the container when it exits.
        #[arg(long)]
        rm: bool,
        #[command(flatten)]
        args: CreateArgs,
        /// Image.
        image: String,
        /// Command and arguments (default: the image's).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Create a container without starting it.
    Create {
        #[command(flatten)]
        args: CreateArgs,
        /// Image.
        image: String,
        /// Command and arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Start containers.
    Start {
        /// Attach to the output (one container).
        #[arg(short, long)]
        attach: bool,
        /// Attach stdin too.
        #[arg(short, long)]
        interactive: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers (stop signal, then SIGKILL after the timeout).
    Stop {
        /// Seconds to wait before killing.
        #[arg(short, long)]
        time: Option<u32>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers (default SIGKILL).
    Kill {
        /// Signal name or number.
        #[arg(short, long)]
        signal: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop and start containers.
    Restart {
        /// Seconds to wait before killing.
        #[arg(short, long)]
        time: Option<u32>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill running containers first.
        #[arg(short, long)]
        force: bool,
        /// Remove the containers' anonymous volumes too.
        #[arg(short, long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    Ps(PsArgs),
    /// Show a container's output.
    Logs {
        /// Follow new output until the container stops.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines (`all`: every line).
        #[arg(short = 'n', long)]
        tail: Option<String>,
        /// Only output since (RFC 3339, unix seconds, or a duration like 10m).
        #[arg(long)]
        since: Option<String>,
        /// Only output until.
        #[arg(long)]
        until: Option<String>,
        /// Prefix each line with its time.
        #[arg(short, long)]
        timestamps: bool,
        container: String,
    },
    /// Run a command in a running container.
    Exec {
        #[command(flatten)]
        args: ExecArgs,
        container: String,
        /// Command and arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// Attach to a running container's stdio.
    Attach {
        /// Do not send our stdin.
        #[arg(long)]
        no_stdin: bool,
        container: String,
    },
    /// Wait for containers to exit and print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show a container's processes (host `ps` output; default options -ef).
    Top(TopArgs),
    /// Show containers' CPU, memory, block I/O and process counts.
    Stats(StatsArgs),
    /// Copy files between a container and the host (`CONTAINER:PATH`; `-` is a tar stream).
    Cp(CpArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// Container management.
    Container {
        #[command(subcommand)]
        cmd: ContainerCmd,
    },
    /// Volume management (create, ls, inspect, rm, prune).
    Volume {
        #[command(subcommand)]
        cmd: super::volume::VolumeCmd,
    },
}

/// `berth container ...`.
#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// List containers.
    #[command(alias = "list")]
    Ls(PsArgs),
    /// Remove containers.
    Rm {
        #[arg(short, long)]
        force: bool,
        /// Remove the containers' anonymous volumes too.
        #[arg(short, long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show containers as JSON.
    Inspect {
        /// A Go-template-like format filled for each container, e.g. `{{.State.OOMKilled}}`.
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove every container that is not running.
    Prune {
        /// Do not ask (berth never asks; accepted for compatibility).
        #[arg(short, long)]
        force: bool,
    },
    /// Show a container's processes.
    Top(TopArgs),
    /// Show containers' resource usage.
    Stats(StatsArgs),
    /// Copy files between a container and the host.
    Cp(CpArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// Record a container's exit and release its resources (run by its monitor).
    #[command(hide = true)]
    Cleanup { id: String },
}

fn resolve(store: &Store, what: &str) -> Result<Container> {
    record::resolve(store.db.conn(), what)
}

/// The container-inspect part of `berth inspect`: JSON for every name that is a container, or
/// None when the first name is not one (then the caller tries images).
pub fn inspect_containers(
    store: &Store,
    paths: &Paths,
    names: &[String],
    format: Option<&str>,
) -> Result<Option<String>> {
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        match resolve(store, n) {
            Ok(c) => out.push(query::inspect_value(paths, &c)),
            Err(_) if i == 0 => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    query::inspect_output(&out, format).map(Some)
}

fn print(s: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(s.as_bytes());
}

/// Runs one container command; the process's exit status.
pub fn dispatch(store: &mut Store, paths: &Paths, cmd: &Commands) -> Result<u8> {
    match cmd {
        Commands::Run {
            detach,
            rm,
            args,
            image,
            cmd,
        } => run(store, paths, *detach, *rm, args, image, cmd),
        Commands::Create { args, image, cmd } => {
            let c = lifecycle::create(store, paths, image, cmd, args, false)?;
            print(&format!("{}\n", c.id));
            Ok(0)
        }
        Commands::Start {
            attach: att,
            interactive,
            containers,
        } => {
            if *att && containers.len() > 1 {
                bail!("start -a takes one container");
            }
            for n in containers {
                let c = resolve(store, n)?;
                let started = lifecycle::start(store, paths, &c)?;
                if *att {
                    let sock = match started {
                        Some(s) => s.sock,
                        None => attach::connect(&paths.run_dir(&c.id))?,
                    };
                    let code = attach::relay(
                        sock,
                        Relay {
                            stdin: *interactive && c.settings.interactive,
                            tty: c.settings.tty,
                            wait_for_cleanup: true,
                        },
                    )?;
                    return Ok(code.unwrap_or(0).clamp(0, 255) as u8);
                }
                print(&format!("{n}\n"));
            }
            Ok(0)
        }
        Commands::Stop { time, containers } => {
            for n in containers {
                let c = resolve(store, n)?;
                lifecycle::stop(store, paths, &c, *time)?;
                print(&format!("{n}\n"));
            }
            Ok(0)
        }
        Commands::Kill { signal, containers } => {
            let sig = super::settings::parse_signal(signal.as_deref().unwrap_or("KILL"))?;
            for n in containers {
                lifecycle::signal(&resolve(store, n)?, sig)?;
                print(&format!("{n}\n"));
            }
            Ok(0)
        }
        Commands::Restart { time, containers } => {
            for n in containers {
                let c = resolve(store, n)?;
                lifecycle::stop(store, paths, &c, *time)?;
                let c = resolve(store, &c.id)?;
                lifecycle::start(store, paths, &c)?;
                let tx = store.db.write()?;
                record::count_restart(&tx, &c.id)?;
                tx.commit()?;
                print(&format!("{n}\n"));
            }
            Ok(0)
        }
        Commands::Rm {
            force,
            volumes,
            containers,
        }
        | Commands::Container {
            cmd:
                ContainerCmd::Rm {
                    force,
                    volumes,
                    containers,
                },
        } => {
            let mut failed = None;
            for n in containers {
                match resolve(store, n).and_then(|c| {
                    lifecycle::remove_with_volumes(store, paths, &c, *force, *volumes)
                }) {
                    Ok(()) => print(&format!("{n}\n")),
                    // One name: main prints the error; several: each failure is printed here and
                    // the others are still removed.
                    Err(e) if containers.len() == 1 => failed = Some(e),
                    Err(e) => {
                        eprintln!("Error: {e:#}");
                        failed = Some(e);
                    }
                }
            }
            match failed {
                Some(e) if containers.len() == 1 => Err(e),
                Some(_) => Ok(125),
                None => Ok(0),
            }
        }
        Commands::Ps(a)
        | Commands::Container {
            cmd: ContainerCmd::Ls(a),
        } => {
            let rows = record::all(store.db.conn())?;
            let ports = query::published_ports(store.db.conn())?;
            print(&query::ps(
                rows,
                &ports,
                a.all,
                a.quiet,
                &a.filter,
                a.format.as_deref(),
            )?);
            Ok(0)
        }
        Commands::Logs {
            follow,
            tail,
            since,
            until,
            timestamps,
            container,
        } => {
            let c = resolve(store, container)?;
            let tail =
                match tail.as_deref() {
                    None | Some("all") => None,
                    Some(n) => Some(n.parse().map_err(|_| {
                        anyhow::anyhow!("invalid --tail {n:?}: want a number or all")
                    })?),
                };
            let o = LogOpts {
                follow: *follow,
                tail,
                since: since.as_deref().map(query::parse_since).transpose()?,
                until: until.as_deref().map(query::parse_since).transpose()?,
                timestamps: *timestamps,
            };
            query::logs(store, paths, &c, &o)?;
            Ok(0)
        }
        Commands::Exec {
            args,
            container,
            cmd,
        } => {
            let c = resolve(store, container)?;
            let code = super::exec::exec(paths, &c, cmd, args)?;
            Ok(code.clamp(0, 255) as u8)
        }
        Commands::Attach {
            no_stdin,
            container,
        } => {
            let c = resolve(store, container)?;
            if !c.status().is_running() {
                bail!("cannot attach to container {}: it is not running", c.name);
            }
            let sock = attach::connect(&paths.run_dir(&c.id))?;
            let code = attach::relay(
                sock,
                Relay {
                    stdin: !no_stdin && c.settings.interactive,
                    tty: c.settings.tty,
                    wait_for_cleanup: false,
                },
            )?;
            Ok(code.unwrap_or(0).clamp(0, 255) as u8)
        }
        Commands::Wait { containers } => {
            for n in containers {
                let c = resolve(store, n)?;
                let code = lifecycle::wait_exit(store, paths, &c.id, None)?;
                print(&format!("{}\n", code.unwrap_or(-1)));
            }
            Ok(0)
        }
        Commands::Container {
            cmd: ContainerCmd::Inspect { format, containers },
        } => {
            let mut out = Vec::new();
            for n in containers {
                out.push(query::inspect_value(paths, &resolve(store, n)?));
            }
            print(&query::inspect_output(&out, format.as_deref())?);
            Ok(0)
        }
        Commands::Top(a)
        | Commands::Container {
            cmd: ContainerCmd::Top(a),
        } => {
            let c = resolve(store, &a.container)?;
            print(&super::top::top(paths, &c, &a.ps_options)?);
            Ok(0)
        }
        Commands::Stats(a)
        | Commands::Container {
            cmd: ContainerCmd::Stats(a),
        } => {
            let o = super::stats::StatsOpts {
                no_stream: a.no_stream,
                format: a.format.clone(),
            };
            super::stats::stats(store, paths, &a.containers, &o)?;
            Ok(0)
        }
        Commands::Cp(a)
        | Commands::Container {
            cmd: ContainerCmd::Cp(a),
        } => {
            let o = super::files::CpOpts {
                archive: a.archive,
                follow_link: a.follow_link,
            };
            super::files::cp(store, paths, &a.src, &a.dst, o)?;
            Ok(0)
        }
        Commands::Rename(a)
        | Commands::Container {
            cmd: ContainerCmd::Rename(a),
        } => {
            super::manage::rename(store, &a.container, &a.new_name)?;
            Ok(0)
        }
        Commands::Container {
            cmd: ContainerCmd::Prune { .. },
        } => {
            let p = super::manage::prune(store, paths)?;
            if !p.ids.is_empty() {
                print("Deleted Containers:\n");
                for id in &p.ids {
                    print(&format!("{id}\n"));
                }
                print("\n");
            }
            print(&format!(
                "Total reclaimed space: {}\n",
                super::stats::human_size(p.bytes)
            ));
            for e in &p.errors {
                eprintln!("Error: {e}");
            }
            Ok(if p.errors.is_empty() { 0 } else { 1 })
        }
        Commands::Container {
            cmd: ContainerCmd::Cleanup { id },
        } => {
            lifecycle::cleanup(store, paths, id)?;
            Ok(0)
        }
        Commands::Volume { cmd } => super::volume::dispatch(store, paths, cmd),
    }
}

fn run(
    store: &mut Store,
    paths: &Paths,
    detach: bool,
    rm: bool,
    args: &CreateArgs,
    image: &str,
    cmd: &[String],
) -> Result<u8> {
    if detach && rm && args.interactive && args.tty {
        // docker allows it; nothing special to do.
    }
    let c = lifecycle::create(store, paths, image, cmd, args, rm)?;
    let started = match lifecycle::start(store, paths, &c) {
        Ok(s) => s,
        Err(e) => {
            // A failed run leaves nothing behind (its anonymous volumes included).
            let _ = lifecycle::remove_with_volumes(store, paths, &c, true, true);
            return Err(e);
        }
    };
    let Some(started) = started else {
        bail!("container {} was started by someone else", c.name);
    };
    if detach {
        drop(started.sock);
        print(&format!("{}\n", c.id));
        return Ok(0);
    }
    let (code, mut sock) = attach::relay_until_exit(
        started.sock,
        Relay {
            stdin: args.interactive,
            tty: args.tty,
            wait_for_cleanup: true,
        },
    )?;
    match code {
        Some(code) => {
            // The clean-up here, in this process, saves the monitor an exec of the engine.
            lifecycle::cleanup(store, paths, &c.id)?;
            attach::cleaned(&mut sock);
            Ok(code.clamp(0, 255) as u8)
        }
        None => {
            // The monitor went away without an exit code: report what the record says.
            std::thread::sleep(Duration::from_millis(50));
            let code = record::get(store.db.conn(), &c.id)?
                .and_then(|c| c.exit_code)
                .unwrap_or(125);
            Ok(code.clamp(0, 255) as u8)
        }
    }
}
