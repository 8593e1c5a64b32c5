//! Links `berth-runtime` as a position-dependent executable: no run-time relocations to apply (9,000+ in
//! a PIE build), fewer pages touched at every start of a short-lived runtime process. Only for the
//! binary: proc-macro dylibs must stay position-independent.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
