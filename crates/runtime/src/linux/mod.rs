//! The Linux side of the runtime: one file per concern, in the order a container's init meets them.

pub mod capabilities;
pub mod console;
pub mod devices;
pub mod fds;
pub mod mounts;
pub mod namespaces;
pub mod process;
pub mod rlimits;
pub mod rootfs;
pub mod secure_path;
pub mod sync;
pub mod sysctl;
pub mod trampoline;
pub mod user;
