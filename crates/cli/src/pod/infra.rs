//! A pod's infra container: `berth-init --pause` (berth's own static init in its pause mode: it
//! waits for SIGTERM/SIGINT, reaping children) from `localhost/berth-pause:<version>`, an image
//! of one file that berth makes itself on first use with its own import code, as podman builds
//! its pause image locally (nothing is pulled: pods work offline).

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

use super::{Pod, PodSettings};
use crate::container::lifecycle;
use crate::container::record::{self, Container};
use crate::container::settings::CreateArgs;
use crate::container::{helper_binary, Paths};
use crate::store::Store;

/// Where berth-init is in the pause image.
pub const PAUSE_PATH: &str = "/berth-init";

/// The pause image's name: `localhost/berth-pause:<berth's version>`.
pub fn pause_image() -> String {
    format!("localhost/berth-pause:{}", env!("CARGO_PKG_VERSION"))
}

/// The pause image (made now when it is not here): its name.
pub fn ensure_pause_image(store: &mut Store, paths: &Paths) -> Result<String> {
    let name = pause_image();
    if store.resolve(&name).is_ok() {
        return Ok(name);
    }
    let init = helper_binary("berth-init", "BERTH_INIT").ok_or_else(|| {
        anyhow!("berth-init was not found next to the berth binary (set BERTH_INIT): a pod's infra container runs it")
    })?;
    let binary = std::fs::read(&init).with_context(|| format!("reading {}", init.display()))?;
    std::fs::create_dir_all(&paths.root)
        .with_context(|| format!("creating {}", paths.root.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".pause-")
        .suffix(".tar")
        .tempfile_in(&paths.root)
        .context("creating the pause image's layer")?;
    {
        // One file, owned by root, with a fixed time: the same berth-init gives the same layer.
        let mut b = tar::Builder::new(tmp.as_file_mut());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(binary.len() as u64);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(
            &mut h,
            PAUSE_PATH.trim_start_matches('/'),
            binary.as_slice(),
        )
        .context("writing the pause image's layer")?;
        b.finish().context("writing the pause image's layer")?;
    }
    tmp.as_file_mut().flush()?;
    let file = tmp
        .path()
        .to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", tmp.path().display()))?
        .to_string();
    let changes = [
        format!(r#"ENTRYPOINT ["{PAUSE_PATH}", "--pause"]"#),
        "STOPSIGNAL SIGTERM".to_string(),
        "LABEL io.berth.pause=true".to_string(),
    ];
    crate::archive::import(store, &file, Some(&name), &changes)
        .context("making the pause image")?;
    Ok(name)
}

/// Creates the infra container of a pod being created: `<pod>-infra`, with the pod's network,
/// published ports and hostname.
pub fn create(
    store: &mut Store,
    paths: &Paths,
    pod_id: &str,
    pod_name: &str,
    s: &PodSettings,
) -> Result<Container> {
    let image = ensure_pause_image(store, paths)?;
    let args = CreateArgs {
        name: Some(format!("{pod_name}-infra")),
        hostname: Some(s.hostname.clone()),
        network: s.network.clone(),
        publish: s.publish.clone(),
        pull: "never".into(),
        infra_of: Some(pod_id.to_string()),
        ..CreateArgs::default()
    };
    lifecycle::create(store, paths, &image, &[], &args, false)
}

/// Starts the pod's infra container when it is not running; on a pod without a network of its
/// own (`--network none`) brings the loopback of its new namespace up, so that the pod's
/// containers reach each other on localhost.
pub fn start(store: &mut Store, paths: &Paths, pod: &Pod) -> Result<()> {
    let c = record::get(store.db.conn(), &pod.infra_id)?
        .ok_or_else(|| anyhow!("the infra container of pod {} is gone", pod.name))?;
    if !c.status().is_running() {
        lifecycle::start(store, paths, &c)?;
    }
    let c = record::get(store.db.conn(), &pod.infra_id)?
        .ok_or_else(|| anyhow!("the infra container of pod {} is gone", pod.name))?;
    let pid = c
        .live_pid()
        .ok_or_else(|| anyhow!("the infra container of pod {} exited", pod.name))?;
    if c.settings.network == "none" {
        loopback_up(pid)?;
    }
    Ok(())
}

/// Sets `lo` up in the network namespace of `pid` (from a short-lived thread that enters it).
fn loopback_up(pid: i32) -> Result<()> {
    let path = format!("/proc/{pid}/ns/net");
    let ns = berth_network::netns::open(Path::new(&path))?;
    berth_network::netns::run_in(ns.as_fd(), || {
        // The loopback of a namespace is always index 1.
        berth_network::netlink::Netlink::new()?.set_up(1)
    })?
    .with_context(|| format!("setting the loopback up in {path}"))
}
