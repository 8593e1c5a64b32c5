//! Image metadata in SQLite (`<root>/berth.db`): images, tags, and the layers each image stacks.
//!
//! Why SQLite rather than JSON files: several `berth` processes may run at once (two pulls, a pull
//! and an `rmi`), and every change here must be all-or-nothing. SQLite gives real transactions (an
//! image and its tags and layers appear together or not at all, even if the process is killed),
//! serialises concurrent writers with a busy timeout instead of corrupting a file, and in WAL mode
//! readers (`berth images`, `inspect`) never block on a writer nor block it.
//!
//! The blobs and unpacked layers live on disk beside the database; rows only ever point at content
//! that was fully written (and renamed into place) before the transaction that records it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// Bumped whenever a table is added or changed (tables: images, tags, image_layers, layers, and
/// the engine's containers; 2: volumes and container_volumes; 3: networks, network_addresses,
/// published_ports; 4: pods).
const SCHEMA_VERSION: i32 = 5;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,              -- config digest, sha256:<hex>
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    created TEXT,                     -- from the config, RFC 3339
    size INTEGER NOT NULL,            -- uncompressed bytes of all layers
    added INTEGER NOT NULL            -- unix seconds when stored here
);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,            -- registry/repository:tag
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    diff_id TEXT NOT NULL REFERENCES layers(diff_id),
    blob_digest TEXT NOT NULL,
    blob_size INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE TABLE IF NOT EXISTS layers (
    diff_id TEXT PRIMARY KEY,         -- unpacked under <root>/layers/<hex>
    size INTEGER NOT NULL             -- uncompressed tar bytes
);
";

/// One layer of an image, base first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRow {
    /// Digest of the uncompressed tar (names the unpacked directory).
    pub diff_id: String,
    /// Digest of the blob as stored and distributed.
    pub blob_digest: String,
    /// Blob size in bytes.
    pub blob_size: u64,
    /// Layer media type in the manifest.
    pub media_type: String,
    /// Uncompressed size.
    pub size: u64,
}

/// An image row with its tags and layers.
#[derive(Debug, Clone)]
pub struct ImageRow {
    /// Config digest (`sha256:<hex>`).
    pub id: String,
    /// Manifest digest.
    pub manifest_digest: String,
    /// Manifest media type.
    pub manifest_media_type: String,
    /// Creation time from the config.
    pub created: Option<String>,
    /// Uncompressed size of all layers.
    pub size: u64,
    /// Full tag names.
    pub tags: Vec<String>,
    /// Layers, base first.
    pub layers: Vec<LayerRow>,
}

/// The metadata database.
pub struct Db {
    conn: Connection,
}

impl Db {
    /// Open (creating) the database at `path`: WAL, busy timeout, foreign keys, schema.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // The WAL mode and the schema persist in the file: set them up once (and after an upgrade),
        // recorded by `user_version`, instead of at every command.
        let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < SCHEMA_VERSION {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Every berth command is a short process: checkpointing the WAL (two fsyncs) and deleting
        // it at each close would cost more than the command's own work, so the WAL stays. But the
        // first connection of a process rebuilds the WAL index by reading the whole WAL: keep it
        // short with frequent automatic checkpoints (every 64 pages, a few commands' worth),
        // instead of SQLite's default 1000 pages (4 MB read by every command). A crash loses
        // nothing committed either way (WAL + synchronous=NORMAL: consistent always).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        conn.pragma_update(None, "wal_autocheckpoint", 64)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        if version < SCHEMA_VERSION {
            conn.execute_batch(SCHEMA)
                .with_context(|| format!("creating the schema in {}", path.display()))?;
            conn.execute_batch(crate::container::record::SCHEMA)
                .with_context(|| format!("creating the schema in {}", path.display()))?;
            crate::container::record::migrate(&conn)
                .with_context(|| format!("upgrading the schema in {}", path.display()))?;
            conn.execute_batch(crate::container::volume::SCHEMA)
                .with_context(|| format!("creating the schema in {}", path.display()))?;
            conn.execute_batch(crate::networks::SCHEMA)
                .with_context(|| format!("creating the schema in {}", path.display()))?;
            conn.execute_batch(crate::pod::SCHEMA)
                .with_context(|| format!("creating the schema in {}", path.display()))?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok(Db { conn })
    }

    /// The connection, for the tables other modules own (containers).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Start an immediate (write-locking) transaction.
    pub fn write(&mut self) -> Result<Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
    }

    /// Every image, newest first.
    pub fn images(&self) -> Result<Vec<ImageRow>> {
        let ids: Vec<String> = {
            let mut st = self
                .conn
                .prepare("SELECT id FROM images ORDER BY added DESC, id")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        ids.iter()
            .filter_map(|id| self.image(id).transpose())
            .collect()
    }

    /// One image by full id.
    pub fn image(&self, id: &str) -> Result<Option<ImageRow>> {
        image(&self.conn, id)
    }

    /// Ids that start with `prefix` (a hex prefix, with or without `sha256:`).
    pub fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let hex = prefix.strip_prefix("sha256:").unwrap_or(prefix);
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(vec![]);
        }
        let mut st = self
            .conn
            .prepare("SELECT id FROM images WHERE substr(id, 8, ?1) = ?2")?;
        let rows = st.query_map(params![hex.len() as i64, hex.to_ascii_lowercase()], |r| {
            r.get(0)
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The image a tag points at.
    pub fn tag_target(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT image_id FROM tags WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }
}

fn image(conn: &Connection, id: &str) -> Result<Option<ImageRow>> {
    let row = conn
        .query_row(
            "SELECT manifest_digest, manifest_media_type, created, size FROM images WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((manifest_digest, manifest_media_type, created, size)) = row else {
        return Ok(None);
    };
    let mut st = conn.prepare("SELECT name FROM tags WHERE image_id = ?1 ORDER BY name")?;
    let tags = st
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    let mut st = conn.prepare(
        "SELECT l.diff_id, l.blob_digest, l.blob_size, l.media_type, y.size
         FROM image_layers l JOIN layers y ON y.diff_id = l.diff_id
         WHERE l.image_id = ?1 ORDER BY l.idx",
    )?;
    let layers = st
        .query_map([id], |r| {
            Ok(LayerRow {
                diff_id: r.get(0)?,
                blob_digest: r.get(1)?,
                blob_size: r.get::<_, i64>(2)? as u64,
                media_type: r.get(3)?,
                size: r.get::<_, i64>(4)? as u64,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(ImageRow {
        id: id.to_string(),
        manifest_digest,
        manifest_media_type,
        created,
        size: size as u64,
        tags,
        layers,
    }))
}

/// Record an image (replacing a row with the same id) and point `tags` at it, in `tx`.
pub fn record_image(tx: &Transaction<'_>, img: &ImageRow, added: i64) -> Result<()> {
    for l in &img.layers {
        tx.execute(
            "INSERT INTO layers (diff_id, size) VALUES (?1, ?2)
             ON CONFLICT(diff_id) DO UPDATE SET size = excluded.size",
            params![l.diff_id, l.size as i64],
        )?;
    }
    tx.execute(
        "INSERT INTO images (id, manifest_digest, manifest_media_type, created, size, added)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(id) DO UPDATE SET manifest_digest = excluded.manifest_digest,
           manifest_media_type = excluded.manifest_media_type, added = excluded.added",
        params![
            img.id,
            img.manifest_digest,
            img.manifest_media_type,
            img.created,
            img.size as i64,
            added
        ],
    )?;
    tx.execute("DELETE FROM image_layers WHERE image_id = ?1", [&img.id])?;
    for (i, l) in img.layers.iter().enumerate() {
        tx.execute(
            "INSERT INTO image_layers (image_id, idx, diff_id, blob_digest, blob_size, media_type)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                img.id,
                i as i64,
                l.diff_id,
                l.blob_digest,
                l.blob_size as i64,
                l.media_type
            ],
        )?;
    }
    for t in &img.tags {
        set_tag(tx, t, &img.id)?;
    }
    Ok(())
}

/// Point tag `name` at image `id` (moving it from another image if needed).
pub fn set_tag(tx: &Transaction<'_>, name: &str, id: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO tags (name, image_id) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
        params![name, id],
    )?;
    Ok(())
}

/// Remove tag `name`; tells whether it existed.
pub fn remove_tag(tx: &Transaction<'_>, name: &str) -> Result<bool> {
    Ok(tx.execute("DELETE FROM tags WHERE name = ?1", [name])? > 0)
}

/// Tags of image `id` inside `tx`.
pub fn tags_of(tx: &Transaction<'_>, id: &str) -> Result<Vec<String>> {
    let mut st = tx.prepare("SELECT name FROM tags WHERE image_id = ?1 ORDER BY name")?;
    let tags = st
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(tags)
}

/// Delete image `id` (its tags and layer list go with it).
pub fn remove_image(tx: &Transaction<'_>, id: &str) -> Result<bool> {
    Ok(tx.execute("DELETE FROM images WHERE id = ?1", [id])? > 0)
}

/// Ids of images with no tag.
pub fn dangling(tx: &Transaction<'_>) -> Result<Vec<String>> {
    let mut st = tx.prepare("SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM tags)")?;
    let ids = st
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(ids)
}

/// Drop layer rows no image uses; returns what is still referenced: (blob digests, diff ids).
pub fn sweep(tx: &Transaction<'_>) -> Result<(Vec<String>, Vec<String>)> {
    tx.execute(
        "DELETE FROM layers WHERE diff_id NOT IN (SELECT diff_id FROM image_layers)",
        [],
    )?;
    let mut blobs = Vec::new();
    let mut st = tx.prepare(
        "SELECT id FROM images UNION SELECT manifest_digest FROM images
         UNION SELECT blob_digest FROM image_layers",
    )?;
    for r in st.query_map([], |r| r.get::<_, String>(0))? {
        blobs.push(r?);
    }
    let mut st = tx.prepare("SELECT diff_id FROM layers")?;
    let diffs = st
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok((blobs, diffs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database made by the schema before `oom_killed` (version 4) gains the column, keeps
    /// its rows, and records the new version.
    #[test]
    fn a_version_4_database_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(&crate::container::record::SCHEMA.replace(
                ",\n    oom_killed INTEGER NOT NULL DEFAULT 0 -- the memory cgroup counted an OOM kill in the last run",
                "",
            ))
            .unwrap();
            let cols: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM pragma_table_info('containers') WHERE name = 'oom_killed'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(cols, 0, "the old schema must lack the column");
            conn.execute_batch(
                "INSERT INTO images (id, manifest_digest, manifest_media_type, size, added) VALUES ('i', 'd', 'm', 0, 0);
                 INSERT INTO containers (id, name, image_id, image_name, created_ns, settings, state)
                 VALUES ('c', 'n', 'i', 'img', 0, '{}', 'exited');",
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 4).unwrap();
        }
        let db = Db::open(&path).unwrap();
        let (n, oom): (String, bool) = db
            .conn()
            .query_row("SELECT name, oom_killed FROM containers", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((n.as_str(), oom), ("n", false));
        let v: i32 = db
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }
}
