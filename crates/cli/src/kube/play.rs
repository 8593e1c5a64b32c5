//! `kube play` and `kube down`: pods from checked manifests ([`super::manifest::PodPlan`]).
//!
//! Play is all or nothing: everything that can be checked is checked before anything is made
//! (the manifest, the pod names, the hostPath volumes); then each pod is created (its infra
//! container), its emptyDir volumes made under `<root>/pods/<id>/volumes/`, its containers
//! created (`<pod>-<container>`, in the pod) and the pod started. When any step fails, every pod
//! this play made is removed with its containers (`pod rm -f`), and the hostPath files and
//! directories it created are removed again.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::manifest::{HostPathType, PodPlan, VolumeSource};
use crate::container::lifecycle;
use crate::container::settings::CreateArgs;
use crate::container::Paths;
use crate::pod;
use crate::store::Store;

/// What play made for one pod.
#[derive(Debug)]
pub struct Played {
    pub pod_id: String,
    pub container_ids: Vec<String>,
}

/// The manifest's text (`-`: stdin).
pub fn read(file: &Path) -> Result<String> {
    if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the manifest from stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

/// Host paths a play created (removed again when the play fails).
#[derive(Default)]
struct Made {
    pods: Vec<pod::Pod>,
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl Made {
    fn undo(self, store: &mut Store, paths: &Paths) {
        for p in self.pods.iter().rev() {
            if let Err(e) = pod::remove(store, paths, p, true) {
                eprintln!("warning: removing pod {} again: {e:#}", p.name);
            }
        }
        for f in self.files.iter().rev() {
            let _ = std::fs::remove_file(f);
        }
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d); // only when still empty
        }
    }
}

/// The checks of hostPath volumes that need the host, before anything is made.
fn check_host_paths(plan: &PodPlan) -> Result<()> {
    for v in &plan.volumes {
        let VolumeSource::HostPath { path, typ } = &v.source else {
            continue;
        };
        let md = std::fs::metadata(path);
        match typ {
            HostPathType::Directory if !md.as_ref().is_ok_and(|m| m.is_dir()) => bail!(
                "{}.hostPath: {} is not a directory (type: Directory)",
                v.field,
                path.display()
            ),
            HostPathType::File if !md.as_ref().is_ok_and(|m| m.is_file()) => bail!(
                "{}.hostPath: {} is not a file (type: File)",
                v.field,
                path.display()
            ),
            HostPathType::DirectoryOrCreate if md.as_ref().is_ok_and(|m| !m.is_dir()) => bail!(
                "{}.hostPath: {} is there and not a directory (type: DirectoryOrCreate)",
                v.field,
                path.display()
            ),
            HostPathType::FileOrCreate if md.as_ref().is_ok_and(|m| !m.is_file()) => bail!(
                "{}.hostPath: {} is there and not a file (type: FileOrCreate)",
                v.field,
                path.display()
            ),
            HostPathType::Any if md.is_err() => bail!(
                "{}.hostPath: {} does not exist (a type of DirectoryOrCreate or FileOrCreate makes it)",
                v.field,
                path.display()
            ),
            _ => {}
        }
    }
    Ok(())
}

/// `kube play`: every pod of the manifest, or nothing.
pub fn play(store: &mut Store, paths: &Paths, plans: &[PodPlan]) -> Result<Vec<Played>> {
    for p in plans {
        if let Some(other) = pod::by_name(store.db.conn(), &p.name)? {
            bail!(
                "pod {} exists already (id {}): `berth kube down` the manifest first, or `berth pod rm -f {}`",
                p.name,
                other.short_id(),
                p.name
            );
        }
        check_host_paths(p)?;
    }
    let mut made = Made::default();
    let mut out = Vec::new();
    for p in plans {
        match play_one(store, paths, p, &mut made) {
            Ok(x) => out.push(x),
            Err(e) => {
                made.undo(store, paths);
                return Err(e);
            }
        }
    }
    Ok(out)
}

fn play_one(store: &mut Store, paths: &Paths, plan: &PodPlan, made: &mut Made) -> Result<Played> {
    let opts = pod::CreateOpts {
        name: Some(plan.name.clone()),
        hostname: plan.hostname.clone(),
        labels: plan.labels.clone(),
        network: None,
        publish: plan.publish.clone(),
    };
    let p = pod::create(store, paths, &opts).with_context(|| format!("pod {}", plan.name))?;
    made.pods.push(p.clone());
    // The volumes' host paths.
    let mut sources = Vec::new();
    for v in &plan.volumes {
        let src = match &v.source {
            VolumeSource::EmptyDir => {
                let d = pod::pod_dir(paths, &p.id).join("volumes").join(&v.name);
                std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
                // Kubernetes' emptyDir is world-writable: any user of any container writes it.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777))?;
                d
            }
            VolumeSource::HostPath { path, typ } => {
                match typ {
                    HostPathType::DirectoryOrCreate if !path.exists() => {
                        let mut missing = Vec::new();
                        let mut a = path.as_path();
                        while !a.exists() {
                            missing.push(a.to_path_buf());
                            a = a.parent().unwrap_or(Path::new("/"));
                        }
                        std::fs::create_dir_all(path).with_context(|| {
                            format!("{}.hostPath: creating {}", v.field, path.display())
                        })?;
                        made.dirs.extend(missing.into_iter().rev());
                    }
                    HostPathType::FileOrCreate if !path.exists() => {
                        std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(path)
                            .with_context(|| {
                                format!("{}.hostPath: creating {}", v.field, path.display())
                            })?;
                        made.files.push(path.clone());
                    }
                    _ => {}
                }
                path.clone()
            }
        };
        sources.push((v.name.clone(), src));
    }
    let mut ids = Vec::new();
    for c in &plan.containers {
        let mut volume = Vec::new();
        for m in &c.mounts {
            let src = sources
                .iter()
                .find(|(n, _)| *n == m.volume)
                .map(|(_, s)| s)
                .ok_or_else(|| anyhow!("{}: no volume {}", c.field, m.volume))?;
            let src = src
                .to_str()
                .ok_or_else(|| anyhow!("{}: {} is not UTF-8", c.field, src.display()))?;
            volume.push(format!(
                "{src}:{}{}",
                m.path,
                if m.read_only { ":ro" } else { "" }
            ));
        }
        let args = CreateArgs {
            name: Some(format!("{}-{}", plan.name, c.name)),
            pod: Some(p.id.clone()),
            env: c.env.clone(),
            workdir: c.workdir.clone(),
            entrypoint: c.entrypoint.clone(),
            memory: c.memory.map(|m| m.to_string()),
            cpus: c.cpus.clone(),
            volume,
            pull: c.pull.clone(),
            ..CreateArgs::default()
        };
        let ctr = lifecycle::create(store, paths, &c.image, &c.cmd, &args, false)
            .with_context(|| format!("pod {}: {} ({})", plan.name, c.field, c.name))?;
        ids.push(ctr.id);
    }
    pod::start(store, paths, &p)?;
    Ok(Played {
        pod_id: p.id,
        container_ids: ids,
    })
}

/// `kube down`: removes the manifest's pods (with their containers and emptyDir volumes);
/// the removed pods' ids, and the names of those that were not there.
pub fn down(
    store: &mut Store,
    paths: &Paths,
    plans: &[PodPlan],
) -> Result<(Vec<String>, Vec<String>)> {
    let (mut removed, mut missing) = (Vec::new(), Vec::new());
    for plan in plans {
        match pod::by_name(store.db.conn(), &plan.name)? {
            Some(p) => {
                pod::remove(store, paths, &p, true)?;
                removed.push(p.id);
            }
            None => missing.push(plan.name.clone()),
        }
    }
    Ok((removed, missing))
}
