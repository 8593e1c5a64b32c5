//! The measured workloads: one `run` at a time, and a burst of concurrent `run`s.
//!
//! Every sample's exit status is checked: a failed run is an error, never a fast sample.

use std::path::Path;
use std::process::{Child, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::columns::Column;

/// A container id unique within this bench process (each column also has its own `--root`).
pub fn next_id(col: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "bench-{col}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn check(col: &Column, id: &str, out: &Output) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{} ({}) failed on {id}: {}\nstderr: {}",
        col.name,
        col.bin().display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// One `run` (or one floor command), waited for; returns its wall time in milliseconds.
pub fn one(col: &Column, bundle: &Path) -> Result<f64> {
    let id = next_id(col.name);
    let mut cmd = col.command(bundle, &id);
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("spawning {}", col.bin().display()))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    check(col, &id, &out)?;
    Ok(ms)
}

/// Spawns `n` runs at once and waits for all; returns the wall time from the first spawn to the
/// last exit, in milliseconds. Every child is waited for even when one fails.
pub fn burst(col: &Column, bundle: &Path, n: usize) -> Result<f64> {
    let mut children: Vec<(String, Child)> = Vec::with_capacity(n);
    let mut spawn_err = None;
    let start = Instant::now();
    for _ in 0..n {
        let id = next_id(col.name);
        match col.command(bundle, &id).spawn() {
            Ok(c) => children.push((id, c)),
            Err(e) => {
                spawn_err = Some(
                    anyhow::Error::new(e).context(format!("spawning {}", col.bin().display())),
                );
                break;
            }
        }
    }
    let mut outs = Vec::with_capacity(children.len());
    for (id, child) in children {
        outs.push((id, child.wait_with_output()));
    }
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if let Some(e) = spawn_err {
        return Err(e);
    }
    for (id, out) in outs {
        let out = out.with_context(|| format!("waiting for {} {id}", col.name))?;
        check(col, &id, &out)?;
    }
    Ok(ms)
}
