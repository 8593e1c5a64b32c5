//! Pods: groups of containers that share the network, IPC and UTS namespaces, as podman's.
//!
//! A pod is a row of the `pods` table and one **infra container**: an ordinary container (its row,
//! dirs, monitor, `ps`/`inspect` like any other) named `<pod>-infra`, marked by
//! `Settings::pod_infra`, that runs `berth-init --pause` from the small local image
//! `localhost/berth-pause:<version>` (built on first use: see [`infra`]). It holds the
//! namespaces: its network is the pod's (`pod create --network/-p`, so ports are published at the
//! pod), and every member (`run/create --pod P`, `Settings::pod`) joins it:
//! - the network as `--network container:<infra id>` (the networks code then joins the infra's
//!   persistent `<runroot>/netns/<id>`, or `/proc/<pid>/ns/net`, and shares its /etc/hosts);
//! - IPC and UTS by path, `/proc/<infra pid>/ns/{ipc,uts}`, at each start ([`namespace_joins`]);
//! - the pod's hostname.
//!
//! A member's start first starts the infra container when it is not running ([`before_start`]).
//! `pod start` starts the infra, then the members; `pod stop` stops the members, then the infra;
//! `pod rm` removes the members, the pod's row, then the infra (which `rm` alone refuses:
//! [`check_remove`]). A pod's own files (kube play's emptyDir volumes) live in `<root>/pods/<id>/`.

pub mod commands;
pub mod infra;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::container::lifecycle;
use crate::container::record::{self, Container, Status};
use crate::container::settings::{CreateArgs, Settings};
use crate::container::Paths;
use crate::store::Store;

/// The pods table, created with the others by `Db::open`. The members are the containers whose
/// settings name the pod (`Settings::pod`).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pods (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_ns INTEGER NOT NULL,
    infra_id TEXT NOT NULL,           -- the infra container (containers.id)
    settings TEXT NOT NULL            -- JSON: PodSettings
);
";

/// The namespaces a pod's containers share.
pub const SHARED_NAMESPACES: [&str; 3] = ["ipc", "net", "uts"];

/// What `pod create` was asked (kept as JSON in the pod's row).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PodSettings {
    pub hostname: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `--network` as given (None: the default, as for a container).
    #[serde(default)]
    pub network: Option<String>,
    /// `-p` as given (published by the infra container).
    #[serde(default)]
    pub publish: Vec<String>,
}

/// One pod.
#[derive(Debug, Clone)]
pub struct Pod {
    pub id: String,
    pub name: String,
    pub created_ns: i64,
    pub infra_id: String,
    pub settings: PodSettings,
}

impl Pod {
    /// The first 12 hex digits of the id.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

/// `<root>/pods/<id>`: the pod's own files (kube play's emptyDir volumes).
pub fn pod_dir(paths: &Paths, id: &str) -> PathBuf {
    paths.root.join("pods").join(id)
}

const COLUMNS: &str = "id, name, created_ns, infra_id, settings";

fn from_row(r: &Row<'_>) -> rusqlite::Result<(Pod, String)> {
    Ok((
        Pod {
            id: r.get(0)?,
            name: r.get(1)?,
            created_ns: r.get(2)?,
            infra_id: r.get(3)?,
            settings: PodSettings::default(),
        },
        r.get(4)?,
    ))
}

fn finish((mut p, settings): (Pod, String)) -> Result<Pod> {
    p.settings = serde_json::from_str(&settings)
        .with_context(|| format!("pod {}: unreadable settings in the database", p.id))?;
    Ok(p)
}

/// Every pod, newest first.
pub fn all(conn: &Connection) -> Result<Vec<Pod>> {
    let mut st = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM pods ORDER BY created_ns DESC"
    ))?;
    let rows = st.query_map([], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// One pod by full id.
pub fn get(conn: &Connection, id: &str) -> Result<Option<Pod>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM pods WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()?
    .map(finish)
    .transpose()
}

/// One pod by name, if there is one.
pub fn by_name(conn: &Connection, name: &str) -> Result<Option<Pod>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM pods WHERE name = ?1"),
        [name],
        from_row,
    )
    .optional()?
    .map(finish)
    .transpose()
}

/// A pod by name, full id or unique id prefix (an exact name wins).
pub fn resolve(conn: &Connection, what: &str) -> Result<Pod> {
    if let Some(p) = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM pods WHERE name = ?1 OR id = ?1"),
            [what],
            from_row,
        )
        .optional()?
    {
        return finish(p);
    }
    if !what.is_empty() && what.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut st = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM pods WHERE substr(id, 1, ?2) = ?1"
        ))?;
        let mut found: Vec<_> = st
            .query_map(params![what, what.len() as i64], from_row)?
            .collect::<rusqlite::Result<_>>()?;
        match found.len() {
            1 => return finish(found.remove(0)),
            0 => {}
            n => bail!("pod id prefix {what:?} is ambiguous ({n} pods)"),
        }
    }
    bail!("no such pod: {what}")
}

/// Records a new pod; a clear error when its name is taken.
pub fn insert(tx: &Transaction<'_>, p: &Pod) -> Result<()> {
    let taken: Option<String> = tx
        .query_row("SELECT id FROM pods WHERE name = ?1", [&p.name], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(other) = taken {
        bail!(
            "the pod name {:?} is already in use by pod {}: remove that pod, or choose another name",
            p.name,
            &other[..12.min(other.len())]
        );
    }
    tx.execute(
        "INSERT INTO pods (id, name, created_ns, infra_id, settings) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            p.id,
            p.name,
            p.created_ns,
            p.infra_id,
            serde_json::to_string(&p.settings)?
        ],
    )?;
    Ok(())
}

/// Deletes a pod's row.
pub fn delete(tx: &Transaction<'_>, id: &str) -> Result<()> {
    tx.execute("DELETE FROM pods WHERE id = ?1", [id])?;
    Ok(())
}

/// The pod's containers other than the infra one, oldest first.
pub fn members(conn: &Connection, pod: &Pod) -> Result<Vec<Container>> {
    let mut v: Vec<Container> = record::all(conn)?
        .into_iter()
        .filter(|c| c.settings.pod.as_deref() == Some(pod.id.as_str()) && c.id != pod.infra_id)
        .collect();
    v.reverse();
    Ok(v)
}

/// The pod's infra container (None when it is gone).
pub fn infra(conn: &Connection, pod: &Pod) -> Result<Option<Container>> {
    record::get(conn, &pod.infra_id)
}

/// The pod's state from its containers' (podman's words): Created, Running, Degraded (some
/// running), Exited.
pub fn state(containers: &[Container]) -> &'static str {
    let st: Vec<Status> = containers.iter().map(Container::status).collect();
    if st.is_empty() {
        return "Exited";
    }
    if st.iter().all(|s| s.is_running()) {
        "Running"
    } else if st.iter().any(|s| s.is_running()) {
        "Degraded"
    } else if st.iter().all(|s| *s == Status::Created) {
        "Created"
    } else {
        "Exited"
    }
}

/// What `--pod` (or `pod create`, for the infra container) changes in a container's settings.
#[derive(Debug, Clone)]
pub struct Membership {
    pod_id: String,
    /// The infra container itself.
    infra: bool,
    /// A member: the infra container's id and the pod's hostname.
    infra_id: String,
    hostname: String,
}

impl Membership {
    /// Applies it to freshly built settings (before the create-time checks of the network).
    pub fn apply(&self, s: &mut Settings) {
        s.pod = Some(self.pod_id.clone());
        if self.infra {
            s.pod_infra = true;
            return;
        }
        s.network = format!("container:{}", self.infra_id);
        s.net = Default::default();
        s.hostname = self.hostname.clone();
    }
}

/// Checks `--pod` and the flags it excludes, before anything is made; None without `--pod`.
pub fn membership(store: &Store, a: &CreateArgs) -> Result<Option<Membership>> {
    if let Some(pod_id) = &a.infra_of {
        return Ok(Some(Membership {
            pod_id: pod_id.clone(),
            infra: true,
            infra_id: String::new(),
            hostname: String::new(),
        }));
    }
    let Some(what) = &a.pod else { return Ok(None) };
    let pod = resolve(store.db.conn(), what)?;
    let shared = |flag: &str, what: &str| {
        anyhow!(
            "{flag} cannot be used with --pod: a pod's containers share its {what}; give it to `pod create` instead"
        )
    };
    if a.network.is_some() {
        return Err(shared("--network", "network"));
    }
    if !a.publish.is_empty() || a.publish_all {
        return Err(shared(
            "-p/--publish",
            "network (ports are published at the pod)",
        ));
    }
    if a.ip.is_some() || !a.dns.is_empty() || !a.add_host.is_empty() {
        return Err(shared("--ip/--dns/--add-host", "network"));
    }
    if a.hostname.is_some() {
        return Err(shared("--hostname", "hostname (UTS namespace)"));
    }
    Ok(Some(Membership {
        pod_id: pod.id,
        infra: false,
        infra_id: pod.infra_id,
        hostname: pod.settings.hostname,
    }))
}

/// Before a pod member starts: its infra container must run (it holds the namespaces).
pub fn before_start(store: &mut Store, paths: &Paths, c: &Container) -> Result<()> {
    let Some(pod_id) = &c.settings.pod else {
        return Ok(());
    };
    if c.settings.pod_infra {
        return Ok(());
    }
    let pod = get(store.db.conn(), pod_id)?
        .ok_or_else(|| anyhow!("cannot start container {}: its pod is gone", c.name))?;
    infra::start(store, paths, &pod)
        .with_context(|| format!("starting the infra container of pod {}", pod.name))
}

/// The namespaces a starting container joins by path: a pod member, its infra's IPC and UTS
/// (the network is joined through `--network container:<infra>`).
pub fn namespace_joins(store: &Store, c: &Container) -> Result<Vec<(&'static str, PathBuf)>> {
    let Some(pod_id) = &c.settings.pod else {
        return Ok(Vec::new());
    };
    if c.settings.pod_infra {
        return Ok(Vec::new());
    }
    let pod = get(store.db.conn(), pod_id)?
        .ok_or_else(|| anyhow!("cannot start container {}: its pod is gone", c.name))?;
    let pid = infra(store.db.conn(), &pod)?
        .and_then(|i| i.live_pid())
        .ok_or_else(|| {
            anyhow!(
                "cannot start container {}: the infra container of pod {} is not running",
                c.name,
                pod.name
            )
        })?;
    Ok(["ipc", "uts"]
        .into_iter()
        .map(|t| (t, PathBuf::from(format!("/proc/{pid}/ns/{t}"))))
        .collect())
}

/// Whether `c` is the infra container of a pod that exists.
pub fn is_live_infra(store: &Store, c: &Container) -> Result<bool> {
    Ok(match (&c.settings.pod, c.settings.pod_infra) {
        (Some(id), true) => get(store.db.conn(), id)?.is_some_and(|p| p.infra_id == c.id),
        _ => false,
    })
}

/// `rm` of a pod's infra container: refused while the pod exists (`pod rm` removes it).
pub fn check_remove(store: &Store, c: &Container) -> Result<()> {
    if is_live_infra(store, c)? {
        let pod = c.settings.pod.as_deref().unwrap_or_default();
        let name = get(store.db.conn(), pod)?.map_or_else(|| pod.to_string(), |p| p.name);
        bail!(
            "container {} is the infra container of pod {name}: remove the pod instead (berth pod rm [-f] {name})",
            c.name
        );
    }
    Ok(())
}

/// `pod create`'s options.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub network: Option<String>,
    pub publish: Vec<String>,
}

/// `pod create`: the pod's row, dir and infra container (created, not started).
pub fn create(store: &mut Store, paths: &Paths, o: &CreateOpts) -> Result<Pod> {
    let id = lifecycle::new_id()?;
    let name = match &o.name {
        Some(n) => {
            lifecycle::check_name(n).map_err(|_| {
                anyhow!("invalid pod name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            })?;
            n.clone()
        }
        None => lifecycle::generated_name(&id),
    };
    if let Some(other) = by_name(store.db.conn(), &name)? {
        bail!(
            "the pod name {name:?} is already in use by pod {}: remove that pod, or choose another name",
            other.short_id()
        );
    }
    let settings = PodSettings {
        hostname: o.hostname.clone().unwrap_or_else(|| name.clone()),
        labels: o.labels.clone(),
        network: o.network.clone(),
        publish: o.publish.clone(),
    };
    let infra = infra::create(store, paths, &id, &name, &settings)?;
    let pod = Pod {
        id,
        name,
        created_ns: berth_monitor::logfile::now_ns(),
        infra_id: infra.id.clone(),
        settings,
    };
    let dir = pod_dir(paths, &pod.id);
    let made = std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating {}", dir.display()))
        .and_then(|()| {
            let tx = store.db.write()?;
            insert(&tx, &pod)?;
            Ok(tx.commit()?)
        });
    if let Err(e) = made {
        let _ = lifecycle::remove(store, paths, &infra, true);
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(pod)
}

/// `pod start`: the infra container, then every member that is not running. The first failure
/// is the error (the others are still tried).
pub fn start(store: &mut Store, paths: &Paths, pod: &Pod) -> Result<()> {
    infra::start(store, paths, pod)
        .with_context(|| format!("starting the infra container of pod {}", pod.name))?;
    let mut first = None;
    for m in members(store.db.conn(), pod)? {
        if m.status().is_running() {
            continue;
        }
        if let Err(e) = lifecycle::start(store, paths, &m) {
            let e = e.context(format!("pod {}: starting container {}", pod.name, m.name));
            if first.is_none() {
                first = Some(e);
            } else {
                eprintln!("Error: {e:#}");
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Sends every running container its stop signal, waits for them together (up to `timeout`,
/// or each one's own stop timeout), then stops (kills) what is left and waits for the clean-ups.
fn stop_all(
    store: &mut Store,
    paths: &Paths,
    cs: &[Container],
    timeout: Option<u32>,
) -> Result<()> {
    let running: Vec<&Container> = cs.iter().filter(|c| c.status().is_running()).collect();
    for c in &running {
        let sig = crate::container::settings::parse_signal(&c.settings.stop_signal)?;
        let _ = lifecycle::signal(c, sig);
    }
    let wait = timeout.unwrap_or_else(|| {
        running
            .iter()
            .map(|c| c.settings.stop_timeout)
            .max()
            .unwrap_or(0)
    });
    let deadline = Instant::now() + Duration::from_secs(wait.into());
    while Instant::now() < deadline && running.iter().any(|c| c.status().is_running()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut first = None;
    for c in running {
        // Kills what ignored the signal; waits for the monitors' clean-up of the others.
        let done = if c.status().is_running() {
            lifecycle::stop(store, paths, c, Some(0))
        } else {
            lifecycle::wait_exit(store, paths, &c.id, Some(Duration::from_secs(30))).map(drop)
        };
        if let Err(e) = done {
            first.get_or_insert(e.context(format!("stopping container {}", c.name)));
        }
    }
    first.map_or(Ok(()), Err)
}

/// `pod stop`: the members (together), then the infra container.
pub fn stop(store: &mut Store, paths: &Paths, pod: &Pod, timeout: Option<u32>) -> Result<()> {
    let ms = members(store.db.conn(), pod)?;
    stop_all(store, paths, &ms, timeout).with_context(|| format!("stopping pod {}", pod.name))?;
    if let Some(i) = infra(store.db.conn(), pod)? {
        stop_all(store, paths, &[i], timeout)
            .with_context(|| format!("stopping the infra container of pod {}", pod.name))?;
    }
    Ok(())
}

/// `pod rm`: a pod with running containers only with `force` (they are killed). The members go
/// first (with their anonymous volumes), then the pod's row and dir, then the infra container.
pub fn remove(store: &mut Store, paths: &Paths, pod: &Pod, force: bool) -> Result<()> {
    let ms = members(store.db.conn(), pod)?;
    let inf = infra(store.db.conn(), pod)?;
    if !force {
        let running: Vec<&str> = ms
            .iter()
            .chain(inf.iter())
            .filter(|c| c.status().is_running())
            .map(|c| c.name.as_str())
            .collect();
        if !running.is_empty() {
            bail!(
                "cannot remove pod {}: it has running containers ({}): stop it first (pod stop), or use pod rm -f",
                pod.name,
                running.join(", ")
            );
        }
    }
    for m in &ms {
        lifecycle::remove_with_volumes(store, paths, m, force, true)
            .with_context(|| format!("removing pod {}: container {}", pod.name, m.name))?;
    }
    let tx = store.db.write()?;
    delete(&tx, &pod.id)?;
    tx.commit()?;
    if let Some(i) = &inf {
        lifecycle::remove(store, paths, i, true).with_context(|| {
            format!(
                "removing the infra container of pod {} (the pod itself is gone; `berth rm -f {}` removes it)",
                pod.name, i.name
            )
        })?;
    }
    let dir = pod_dir(paths, &pod.id);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

fn ns_rfc3339(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64);
    berth_runtime::time::rfc3339(t)
}

/// `pod inspect`'s object (podman's field names).
pub fn inspect_value(store: &Store, pod: &Pod) -> Result<Value> {
    let conn = store.db.conn();
    let inf = infra(conn, pod)?;
    let ms = members(conn, pod)?;
    let all: Vec<Container> = inf.iter().cloned().chain(ms.iter().cloned()).collect();
    Ok(json!({
        "Id": pod.id,
        "Name": pod.name,
        "Created": ns_rfc3339(pod.created_ns),
        "State": state(&all),
        "Hostname": pod.settings.hostname,
        "Labels": pod.settings.labels,
        "CreateInfra": true,
        "InfraContainerId": pod.infra_id,
        "InfraConfig": {
            "NetworkMode": inf.as_ref().map(|i| i.settings.network.clone()),
            "PortBindings": pod.settings.publish,
        },
        "SharedNamespaces": SHARED_NAMESPACES,
        "NumContainers": all.len(),
        "Containers": all.iter().map(|c| json!({
            "Id": c.id,
            "Name": c.name,
            "State": c.status().word(),
        })).collect::<Vec<_>>(),
    }))
}
