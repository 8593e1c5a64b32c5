//! `berth pod ...`: create, ls, inspect, start, stop, rm.

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::{json, Value};

use super::Pod;
use crate::container::query::tabulate;
use crate::container::record::Container;
use crate::container::Paths;
use crate::store::Store;

/// `berth pod ...`.
#[derive(Subcommand, Debug)]
pub enum PodCmd {
    /// Create a pod (and its infra container, which holds the shared namespaces).
    Create {
        /// Name of the pod.
        #[arg(long)]
        name: Option<String>,
        /// Metadata (KEY=VALUE).
        #[arg(short = 'l', long = "label")]
        label: Vec<String>,
        /// Host name of the pod's containers (default: the pod's name).
        #[arg(long)]
        hostname: Option<String>,
        /// The pod's network (as `run --network`), shared by its containers.
        #[arg(long, alias = "net")]
        network: Option<String>,
        /// Publish a port of the pod ([IP:][HOST:]CONTAINER[/PROTO]).
        #[arg(short = 'p', long = "publish")]
        publish: Vec<String>,
    },
    /// List pods.
    #[command(alias = "list", alias = "ps")]
    Ls {
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// `json` or `table`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show pods as JSON.
    Inspect {
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Start pods: the infra container, then the others.
    Start {
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Stop pods: their containers, then the infra container.
    Stop {
        /// Seconds to wait before killing.
        #[arg(short, long)]
        time: Option<u32>,
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Remove pods and their containers.
    Rm {
        /// Kill running containers first.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        pods: Vec<String>,
    },
}

fn print(s: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(s.as_bytes());
}

/// Runs `f` on every pod named, printing the ids done; the error when only one was named,
/// otherwise the errors are printed and the exit status is 1.
fn each(
    store: &mut Store,
    names: &[String],
    mut f: impl FnMut(&mut Store, &Pod) -> Result<()>,
) -> Result<u8> {
    let mut failed = false;
    for n in names {
        let r = super::resolve(store.db.conn(), n).and_then(|p| {
            f(store, &p)?;
            Ok(p)
        });
        match r {
            Ok(p) => print(&format!("{}\n", p.id)),
            Err(e) if names.len() == 1 => return Err(e),
            Err(e) => {
                eprintln!("Error: {e:#}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

fn ago(ns: i64) -> String {
    let secs = (berth_monitor::logfile::now_ns() - ns).max(0) / 1_000_000_000;
    match secs {
        0 => "Less than a second ago".into(),
        s if s < 60 => format!("{s} seconds ago"),
        s if s < 3600 => format!("{} minutes ago", s / 60),
        s if s < 86_400 => format!("{} hours ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// One pod as `pod ls --format json` shows it (podman's field names).
fn ls_fields(p: &Pod, cs: &[Container]) -> Value {
    json!({
        "Id": p.id,
        "Name": p.name,
        "Status": super::state(cs),
        "Created": super::ns_rfc3339(p.created_ns),
        "InfraId": p.infra_id,
        "Labels": p.settings.labels,
        "Networks": cs.iter().find(|c| c.id == p.infra_id).map(|c| c.settings.network.clone()),
        "Containers": cs.iter().map(|c| json!({
            "Id": c.id, "Names": c.name, "Status": c.status().word(),
        })).collect::<Vec<_>>(),
    })
}

/// Runs one pod command; the process's exit status.
pub fn dispatch(store: &mut Store, paths: &Paths, cmd: &PodCmd) -> Result<u8> {
    match cmd {
        PodCmd::Create {
            name,
            label,
            hostname,
            network,
            publish,
        } => {
            let o = super::CreateOpts {
                name: name.clone(),
                hostname: hostname.clone(),
                labels: crate::container::settings::parse_pairs(label, "label")?,
                network: network.clone(),
                publish: publish.clone(),
            };
            let p = super::create(store, paths, &o)?;
            print(&format!("{}\n", p.id));
            Ok(0)
        }
        PodCmd::Ls { quiet, format } => {
            let pods = super::all(store.db.conn())?;
            if *quiet {
                print(
                    &pods
                        .iter()
                        .map(|p| format!("{}\n", p.short_id()))
                        .collect::<String>(),
                );
                return Ok(0);
            }
            let mut rows = Vec::new();
            for p in &pods {
                let conn = store.db.conn();
                let cs: Vec<Container> = super::infra(conn, p)?
                    .into_iter()
                    .chain(super::members(conn, p)?)
                    .collect();
                rows.push((p, cs));
            }
            match format.as_deref() {
                Some("json") => {
                    let v: Vec<Value> = rows.iter().map(|(p, cs)| ls_fields(p, cs)).collect();
                    print(&format!("{}\n", serde_json::to_string_pretty(&v)?));
                }
                None | Some("table") => {
                    let mut t = vec![[
                        "POD ID".to_string(),
                        "NAME".into(),
                        "STATUS".into(),
                        "CREATED".into(),
                        "INFRA ID".into(),
                        "# OF CONTAINERS".into(),
                    ]];
                    for (p, cs) in &rows {
                        t.push([
                            p.short_id().to_string(),
                            p.name.clone(),
                            super::state(cs).to_string(),
                            ago(p.created_ns),
                            p.infra_id[..12.min(p.infra_id.len())].to_string(),
                            cs.len().to_string(),
                        ]);
                    }
                    print(&tabulate(&t));
                }
                Some(f) => bail!("unsupported --format {f:?} (want json or table)"),
            }
            Ok(0)
        }
        PodCmd::Inspect { pods } => {
            let mut out = Vec::new();
            for n in pods {
                let p = super::resolve(store.db.conn(), n)?;
                out.push(super::inspect_value(store, &p)?);
            }
            print(&format!("{}\n", serde_json::to_string_pretty(&out)?));
            Ok(0)
        }
        PodCmd::Start { pods } => each(store, pods, |s, p| super::start(s, paths, p)),
        PodCmd::Stop { time, pods } => each(store, pods, |s, p| super::stop(s, paths, p, *time)),
        PodCmd::Rm { force, pods } => each(store, pods, |s, p| super::remove(s, paths, p, *force)),
    }
}
