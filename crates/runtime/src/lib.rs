//! berth-runtime: the OCI runtime-spec as a library.
//!
//! A bundle (a root filesystem plus `config.json`) becomes an isolated process. The [`Runtime`] type holds the
//! state directory (runc's `--root`) and offers the runtime-spec operations: create, start, state, kill, delete,
//! plus runc's extras (run, exec, ps, pause, resume, update, events, features, spec).
//!
//! The process model (see ARCHITECTURE.md): the calling process clones the container's init directly into its
//! new namespaces (no re-exec of a helper binary); parent and child step through setup over a seqpacket socket;
//! `create` leaves the init blocked on an exec FIFO that `start` opens. The library forks, so it must be called
//! from a single-threaded process (the CLI, or a per-container monitor).

pub mod cloned_binary;
pub mod config;
pub mod error;
pub mod events;
pub mod features;
pub mod hooks;
pub mod id;
pub mod linux;
mod operations;
pub mod signal;
pub mod spec;
pub mod state;
pub mod time;

pub use error::{Error, Result};
pub use operations::{
    CreateOptions, DeleteOptions, ExecOptions, KillOptions, Runtime, StartedProcess,
};
pub use state::{ContainerState, Status};
