//! berth-cgroups: the cgroup manager of the Berth OCI runtime.
//!
//! One [`Cgroup`] handle covers a container's cgroup in every hierarchy of
//! the host, whatever its [`Layout`]: cgroup v1 (one hierarchy per
//! controller), cgroup v2 (one unified tree), or hybrid (v1 controllers plus
//! a cgroup2 mount holding the rest, e.g. hugetlb). It creates the cgroup,
//! moves processes in, applies the runtime-spec's `linux.resources`
//! (translating v1-shaped values for v2 as runc does), freezes, signals,
//! reports statistics in runc's `events --stats` shape, and removes the
//! cgroup again.
//!
//! A container start costs one read of /proc/self/mountinfo and then only
//! the mkdir/write calls the resources need: files are written without
//! checking first, and a missing file is explained after the fact.
//!
//! Modules: [`layout`] (detection), `cgroup` (the handle), `hybrid`
//! (routing each resource to its hierarchy), `v1` / `v2` (setters),
//! [`convert`] (pure v1-to-v2 translations), `devices`, `devices_v1`,
//! `devices_bpf` (device rules, v1 files and v2 BPF program), `freezer`,
//! [`stats`], [`error`].

mod cgroup;
pub mod convert;
mod devices;
mod devices_bpf;
mod devices_v1;
pub mod error;
mod freezer;
mod fsutil;
mod hybrid;
mod join;
pub mod layout;
pub mod stats;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

pub use cgroup::{oom_kill_count_at, Cgroup, CgroupMount};
pub use devices::default_device_rules;
pub use error::CgroupError;
pub use layout::{detect_layout, Layout};
pub use stats::Stats;
