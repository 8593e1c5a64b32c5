//! Links `berth-init` as a static (static-pie) executable, since it is bind-mounted into containers
//! whose rootfs may have no libc at all (busybox, scratch images).
//!
//! `-C target-feature=+crt-static` would do this, but it can only be set for the whole build
//! (RUSTFLAGS, `.cargo/config.toml`), and the rest of the workspace must stay dynamic (proc-macros
//! cannot be static). So only the binary gets `-static-pie`; the libraries rustc names for a dynamic
//! gnu build (`-lc -lgcc_s -lm ...`, after a `-Bdynamic`) are pointed at the static archives by
//! linker scripts named `lib<name>.so` in a directory searched before the system's.
//! Nothing here touches the test harness or other targets: only `-bins` link arguments are used.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Each library a dynamic glibc build of std links, with the static archives that replace it.
const LIBS: &[(&str, &[&str])] = &[
    ("c", &["libc.a", "libgcc_eh.a", "libgcc.a"]),
    ("gcc_s", &["libgcc_eh.a", "libgcc.a"]),
    ("m", &["libm.a"]),
    ("rt", &["librt.a"]),
    ("pthread", &["libpthread.a"]),
    ("dl", &["libdl.a"]),
    ("util", &["libutil.a"]),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if target_os != "linux" || target_env != "gnu" || features.split(',').any(|f| f == "crt-static")
    {
        // musl targets and crt-static builds are static already.
        return;
    }
    let Some(out) = env::var_os("OUT_DIR") else {
        panic!("cargo did not set OUT_DIR");
    };
    let dir = Path::new(&out).join("static-libs");
    if let Err(e) = fs::create_dir_all(&dir) {
        panic!("creating {}: {e}", dir.display());
    }
    let linker = env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_string());
    for (name, archives) in LIBS {
        let found: Vec<PathBuf> = archives
            .iter()
            .filter_map(|archive| find_archive(&linker, archive))
            .collect();
        if *name == "c" && !found.first().is_some_and(|p| p.ends_with("libc.a")) {
            panic!(
                "berth-init must be linked statically, but `{linker} -print-file-name=libc.a` found no \
                 static glibc (install libc6-dev / glibc-static)"
            );
        }
        // An empty script is a valid linker script: the library's contents live in libc.a (glibc >= 2.34).
        let script = if found.is_empty() {
            String::from("/* empty */\n")
        } else {
            let paths: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
            format!("GROUP ( {} )\n", paths.join(" "))
        };
        let path = dir.join(format!("lib{name}.so"));
        if let Err(e) = fs::write(&path, script) {
            panic!("writing {}: {e}", path.display());
        }
    }
    println!("cargo:rustc-link-arg-bins=-L{}", dir.display());
    println!("cargo:rustc-link-arg-bins=-static-pie");
}

/// The absolute path of a static archive as the C compiler driver finds it, if it exists.
fn find_archive(linker: &str, archive: &str) -> Option<PathBuf> {
    let out = Command::new(linker)
        .arg(format!("-print-file-name={archive}"))
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    // The driver echoes the bare name back when it finds nothing.
    (path.is_absolute() && path.is_file()).then(|| fs::canonicalize(&path).unwrap_or(path))
}
