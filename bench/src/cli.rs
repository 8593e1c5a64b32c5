//! The command-line plumbing every bench binary shares.

use anyhow::{bail, Result};

/// Runs the bench; an error is printed as `name: error` and exits with 1.
pub fn main(name: &str, run: impl FnOnce() -> Result<()>) {
    if let Err(e) = run() {
        eprintln!("{name}: {e:#}");
        std::process::exit(1);
    }
}

/// Every `--only` column is one of `all`.
pub fn check_only(only: &[String], all: &[&str]) -> Result<()> {
    for o in only {
        if !all.contains(&o.as_str()) {
            bail!("--only: unknown column {o:?} (known: {})", all.join(", "));
        }
    }
    Ok(())
}
