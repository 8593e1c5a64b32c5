//! The container monitor, shared between the `berth-monitor` binary and the `berth` CLI:
//!
//! - [`config`]: what the CLI asks a monitor to do (`monitor.json` in the container's run dir);
//! - [`frame`]: the attach protocol spoken over the monitor's unix socket;
//! - [`logfile`]: the container log (docker's `json-file` format, rotated by size): written by the
//!   monitor, read by `berth logs`.
//!
//! One monitor per container, like podman's conmon: it is the container init's parent (a child
//! subreaper), owns its stdio, writes its log, relays attach clients and the terminal, writes the
//! exit status, then execs the engine's clean-up command in its own place.

pub mod config;
pub mod frame;
pub mod logfile;
