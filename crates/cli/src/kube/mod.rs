//! `berth kube play FILE` / `berth kube down FILE`: Kubernetes Pod manifests (and Deployments of
//! one replica, through their pod template) run locally as berth pods, as `podman kube play`.
//! `manifest` reads and checks the YAML (every unsupported field is an error naming it), `play`
//! makes the pods, all or nothing.

pub mod manifest;
pub mod play;

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use crate::container::Paths;
use crate::store::Store;

/// `berth kube ...`.
#[derive(Subcommand, Debug)]
pub enum KubeCmd {
    /// Run the pods of a Kubernetes manifest (Pod, or Deployment with one replica).
    Play {
        /// The manifest (YAML; several documents may be separated by `---`; `-` reads stdin).
        file: PathBuf,
    },
    /// Remove the pods a manifest's `kube play` made, with their containers and volumes.
    Down {
        /// The manifest given to `kube play`.
        file: PathBuf,
    },
}

fn print(s: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(s.as_bytes());
}

/// Runs one kube command; the process's exit status.
pub fn dispatch(store: &mut Store, paths: &Paths, cmd: &KubeCmd) -> Result<u8> {
    match cmd {
        KubeCmd::Play { file } => {
            let plans = manifest::parse(&play::read(file)?)?;
            // A container's failure is play's failure (125), not the container's exit status.
            let played = play::play(store, paths, &plans).map_err(|e| anyhow::anyhow!("{e:#}"))?;
            for p in played {
                print(&format!("Pod:\n{}\nContainers:\n", p.pod_id));
                for c in &p.container_ids {
                    print(&format!("{c}\n"));
                }
                print("\n");
            }
            Ok(0)
        }
        KubeCmd::Down { file } => {
            let plans = manifest::parse(&play::read(file)?)?;
            let (removed, missing) = play::down(store, paths, &plans)?;
            if !removed.is_empty() {
                print("Pods stopped:\n");
                for id in &removed {
                    print(&format!("{id}\n"));
                }
                print("Pods removed:\n");
                for id in &removed {
                    print(&format!("{id}\n"));
                }
            }
            if missing.is_empty() {
                Ok(0)
            } else {
                anyhow::bail!(
                    "no pod named {} (not played, or removed already)",
                    missing.join(", ")
                )
            }
        }
    }
}
