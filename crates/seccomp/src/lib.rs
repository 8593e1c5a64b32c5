//! OCI seccomp profiles for Berth.
//!
//! [`compile`] turns a runtime-spec `linux.seccomp` object into a BPF program (with libseccomp)
//! in the runtime's parent process, so that profile errors surface before the container is
//! forked. The container's init then calls [`CompiledFilter::load`] right before `execve`; that
//! is a single `seccomp(2)` call. When a rule uses `SCMP_ACT_NOTIFY`, `load` returns the notify
//! fd, which the runtime hands to the seccomp agent with [`send_to_listener`]. [`features`] gives
//! the seccomp part of the runtime-spec features document.
//!
//! Filter flags are those oci-spec can parse: `SECCOMP_FILTER_FLAG_TSYNC`, `_LOG` and
//! `_SPEC_ALLOW` (`SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` is rejected when the spec is parsed).

mod cache;
mod compile;
mod error;
mod features;
mod filter;
mod kernel;
mod names;
mod notify;

pub use cache::{compile_cached, compile_in, set_cache_dir};
pub use compile::{compile, NOTIFY_FORBIDDEN_SYSCALLS};
pub use error::SeccompError;
pub use features::features;
pub use filter::CompiledFilter;
pub use notify::{container_process_state, send_to_listener, OCI_VERSION};
