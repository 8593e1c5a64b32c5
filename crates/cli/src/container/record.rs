//! Containers in the metadata database (`containers` table of `<root>/berth.db`, beside the images),
//! and the status a container has now, derived from its row and the live processes.
//!
//! The row is the truth about what a container *is* (its settings, image, name); what it is *doing*
//! is checked against the kernel every time: a recorded pid counts only while a process with that
//! pid and start time lives, and only in the boot that recorded it. So a killed monitor, a killed
//! CLI or a reboot never make `ps` lie.

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde::{Deserialize, Serialize};

use super::settings::Settings;

/// The containers table (foreign key to images: an image in use cannot be deleted under a container),
/// created with the others by `Db::open`.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL REFERENCES images(id),
    image_name TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    settings TEXT NOT NULL,           -- JSON: what create/run were asked
    state TEXT NOT NULL,              -- created | running | exited
    pid INTEGER, pid_start INTEGER,   -- the init, with its start time (/proc/<pid>/stat)
    monitor_pid INTEGER, monitor_start INTEGER,
    boot_id TEXT,                     -- the boot the pids belong to
    exit_code INTEGER,
    started_ns INTEGER, finished_ns INTEGER,
    restart_count INTEGER NOT NULL DEFAULT 0,
    oom_killed INTEGER NOT NULL DEFAULT 0 -- the memory cgroup counted an OOM kill in the last run
);
";

/// Brings a containers table made by an older schema up to this one (columns added since).
pub fn migrate(conn: &rusqlite::Connection) -> Result<()> {
    let has_oom: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('containers') WHERE name = 'oom_killed'",
        [],
        |r| r.get(0),
    )?;
    if !has_oom {
        conn.execute_batch(
            "ALTER TABLE containers ADD COLUMN oom_killed INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    Ok(())
}

/// One container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub image_name: String,
    pub created_ns: i64,
    pub settings: Settings,
    pub state: String,
    pub pid: Option<i32>,
    pub pid_start: Option<u64>,
    pub monitor_pid: Option<i32>,
    pub monitor_start: Option<u64>,
    pub boot_id: Option<String>,
    pub exit_code: Option<i32>,
    pub started_ns: Option<i64>,
    pub finished_ns: Option<i64>,
    pub restart_count: i64,
    pub oom_killed: bool,
}

/// What a container is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Made, never started (or reset).
    Created,
    /// Its init lives.
    Running,
    /// Its init lives but its monitor is gone (killed): nobody will record the exit.
    RunningUnmonitored,
    /// Exited; the code when it was recorded.
    Exited(Option<i32>),
}

impl Status {
    /// Docker's word for it (`State.Status`).
    pub fn word(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running | Status::RunningUnmonitored => "running",
            Status::Exited(_) => "exited",
        }
    }

    /// Whether the container's processes may be alive.
    pub fn is_running(self) -> bool {
        matches!(self, Status::Running | Status::RunningUnmonitored)
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn alive(pid: Option<i32>, start: Option<u64>) -> bool {
    match (pid, start) {
        (Some(p), Some(s)) if p > 0 => berth_runtime::state::process_matches(p, s),
        _ => false,
    }
}

impl Container {
    /// The status now.
    pub fn status(&self) -> Status {
        match self.state.as_str() {
            "created" => Status::Created,
            "running" => {
                if self.boot_id.as_deref() != Some(boot_id().as_str())
                    || !alive(self.pid, self.pid_start)
                {
                    // Died without its exit being recorded (monitor killed, or a reboot).
                    return Status::Exited(None);
                }
                if alive(self.monitor_pid, self.monitor_start) {
                    Status::Running
                } else {
                    Status::RunningUnmonitored
                }
            }
            _ => Status::Exited(self.exit_code),
        }
    }

    /// Whether the monitor lives (its clean-up included: it runs in the monitor's process).
    pub fn monitor_alive(&self) -> bool {
        self.boot_id.as_deref() == Some(boot_id().as_str())
            && alive(self.monitor_pid, self.monitor_start)
    }

    /// The init's pid if it lives.
    pub fn live_pid(&self) -> Option<i32> {
        (self.status().is_running()).then_some(self.pid).flatten()
    }

    /// The first 12 hex digits of the id.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

const COLUMNS: &str = "id, name, image_id, image_name, created_ns, settings, state, pid, pid_start,
    monitor_pid, monitor_start, boot_id, exit_code, started_ns, finished_ns, restart_count, oom_killed";

fn from_row(r: &Row<'_>) -> rusqlite::Result<(Container, String)> {
    let settings: String = r.get(5)?;
    Ok((
        Container {
            id: r.get(0)?,
            name: r.get(1)?,
            image_id: r.get(2)?,
            image_name: r.get(3)?,
            created_ns: r.get(4)?,
            settings: Settings::default(),
            state: r.get(6)?,
            pid: r.get(7)?,
            pid_start: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
            monitor_pid: r.get(9)?,
            monitor_start: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
            boot_id: r.get(11)?,
            exit_code: r.get(12)?,
            started_ns: r.get(13)?,
            finished_ns: r.get(14)?,
            restart_count: r.get(15)?,
            oom_killed: r.get(16)?,
        },
        settings,
    ))
}

fn finish((mut c, settings): (Container, String)) -> Result<Container> {
    c.settings = serde_json::from_str(&settings)
        .with_context(|| format!("container {}: unreadable settings in the database", c.id))?;
    Ok(c)
}

/// Every container, newest first.
pub fn all(conn: &Connection) -> Result<Vec<Container>> {
    let mut st = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM containers ORDER BY created_ns DESC"
    ))?;
    let rows = st.query_map([], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// One container by full id.
pub fn get(conn: &Connection, id: &str) -> Result<Option<Container>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM containers WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()?
    .map(finish)
    .transpose()
}

/// A container by name, full id or unique id prefix (docker's rules: an exact name wins).
pub fn resolve(conn: &Connection, what: &str) -> Result<Container> {
    let what_trim = what.strip_prefix('/').unwrap_or(what);
    if let Some(c) = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM containers WHERE name = ?1 OR id = ?1"),
            [what_trim],
            from_row,
        )
        .optional()?
    {
        return finish(c);
    }
    if !what_trim.is_empty() && what_trim.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut st = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM containers WHERE substr(id, 1, ?2) = ?1"
        ))?;
        let mut found: Vec<_> = st
            .query_map(params![what_trim, what_trim.len() as i64], from_row)?
            .collect::<rusqlite::Result<_>>()?;
        match found.len() {
            1 => return finish(found.remove(0)),
            0 => {}
            n => bail!("container id prefix {what:?} is ambiguous ({n} containers)"),
        }
    }
    bail!("no such container: {what}")
}

/// Records a new container; a clear error when its name is taken.
pub fn insert(tx: &Transaction<'_>, c: &Container) -> Result<()> {
    let taken: Option<String> = tx
        .query_row(
            "SELECT id FROM containers WHERE name = ?1",
            [&c.name],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(other) = taken {
        bail!(
            "the container name {:?} is already in use by container {}: remove or rename that container, or choose another name",
            c.name,
            &other[..12.min(other.len())]
        );
    }
    tx.execute(
        "INSERT INTO containers (id, name, image_id, image_name, created_ns, settings, state, restart_count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
        params![
            c.id,
            c.name,
            c.image_id,
            c.image_name,
            c.created_ns,
            serde_json::to_string(&c.settings)?,
            c.state
        ],
    )?;
    Ok(())
}

/// Marks a container running with its init and monitor.
pub fn set_running(
    tx: &Transaction<'_>,
    id: &str,
    pid: i32,
    monitor_pid: i32,
    started_ns: i64,
) -> Result<()> {
    let start = |p: i32| berth_runtime::state::proc_stat(p).map(|(s, _)| s as i64);
    tx.execute(
        "UPDATE containers SET state = 'running', pid = ?2, pid_start = ?3, monitor_pid = ?4,
         monitor_start = ?5, boot_id = ?6, exit_code = NULL, started_ns = ?7, finished_ns = NULL,
         oom_killed = 0 WHERE id = ?1",
        params![
            id,
            pid,
            start(pid).unwrap_or(0),
            monitor_pid,
            start(monitor_pid).unwrap_or(0),
            boot_id(),
            started_ns
        ],
    )?;
    Ok(())
}

/// Marks a container exited.
pub fn set_exited(
    tx: &Transaction<'_>,
    id: &str,
    code: Option<i32>,
    finished_ns: i64,
    oom_killed: bool,
) -> Result<()> {
    tx.execute(
        "UPDATE containers SET state = 'exited', exit_code = ?2, finished_ns = ?3, oom_killed = ?4
         WHERE id = ?1",
        params![id, code, finished_ns, oom_killed],
    )?;
    Ok(())
}

/// Counts a restart.
pub fn count_restart(tx: &Transaction<'_>, id: &str) -> Result<()> {
    tx.execute(
        "UPDATE containers SET restart_count = restart_count + 1 WHERE id = ?1",
        [id],
    )?;
    Ok(())
}

/// Renames; a clear error when the name is taken.
pub fn rename(tx: &Transaction<'_>, id: &str, name: &str) -> Result<()> {
    match tx.execute(
        "UPDATE containers SET name = ?2 WHERE id = ?1",
        params![id, name],
    ) {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            bail!("the container name {name:?} is already in use")
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes a container's row.
pub fn delete(tx: &Transaction<'_>, id: &str) -> Result<()> {
    tx.execute("DELETE FROM containers WHERE id = ?1", [id])?;
    Ok(())
}

/// Ids of the images containers use (not to be deleted under them).
pub fn images_in_use(conn: &Connection) -> Result<Vec<(String, String)>> {
    let mut st = conn.prepare("SELECT image_id, name FROM containers")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
