//! Routing of each resource to the hierarchy that holds its controller.
//!
//! On a legacy host everything is v1; on a unified host everything is v2.
//! On a hybrid host a controller is used from its v1 hierarchy when one is
//! mounted, else from the cgroup2 mount when that has it (e.g. hugetlb at
//! /sys/fs/cgroup/unified), with v2 file names and conversions. A resource
//! the spec asks for whose controller is nowhere is an error, found before
//! anything is written.

use std::cell::OnceCell;
use std::path::Path;

use oci_spec::runtime::{LinuxCpu, LinuxResources};

use crate::cgroup::Cgroup;
use crate::devices::DeviceState;
use crate::error::{CgroupError, Result};
use crate::layout::Layout;
use crate::stats::{self, Stats};
use crate::{devices_bpf, devices_v1, v1, v2};

/// Where one controller's files are.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

/// Finds controllers, reading the cgroup2 `cgroup.controllers` at most once.
pub(crate) struct Router<'a> {
    cg: &'a Cgroup,
    /// Check v2 controllers even on a unified host (for stats, which skip
    /// what is absent instead of failing on it).
    strict_v2: bool,
    v2_controllers: OnceCell<Vec<String>>,
}

impl<'a> Router<'a> {
    pub(crate) fn new(cg: &'a Cgroup, strict_v2: bool) -> Self {
        Router {
            cg,
            strict_v2,
            v2_controllers: OnceCell::new(),
        }
    }

    fn v2_has(&self, dir: &Path, ctrl: &str) -> bool {
        self.v2_controllers
            .get_or_init(|| v2::controllers(dir).unwrap_or_default())
            .iter()
            .any(|c| c == ctrl)
    }

    /// The place of controller `v1_name` (v1) / `v2_name` (v2), if any.
    pub(crate) fn find(&self, v1_name: &str, v2_name: &str) -> Option<Target<'a>> {
        if let Some(d) = self.cg.v1_dir(v1_name) {
            return Some(Target::V1(d));
        }
        let d = self.cg.v2_dir()?;
        let unchecked = self.cg.layout() == Layout::Unified && !self.strict_v2;
        if unchecked || self.v2_has(d, v2_name) {
            Some(Target::V2(d))
        } else {
            None
        }
    }

    /// Like [`Router::find`], but a missing controller is an error naming
    /// the spec field `resource`.
    pub(crate) fn require(
        &self,
        v1_name: &str,
        v2_name: &str,
        resource: &str,
    ) -> Result<Target<'a>> {
        self.find(v1_name, v2_name)
            .ok_or_else(|| self.missing(v1_name, v2_name, resource))
    }

    /// Like [`Router::require`], but always checks `cgroup.controllers` on
    /// v2 (for controllers whose files would not explain their absence).
    pub(crate) fn require_checked(
        &self,
        v1_name: &str,
        v2_name: &str,
        resource: &str,
    ) -> Result<Target<'a>> {
        match self.find(v1_name, v2_name) {
            Some(Target::V2(d)) if !self.v2_has(d, v2_name) => {
                Err(self.missing(v1_name, v2_name, resource))
            }
            Some(t) => Ok(t),
            None => Err(self.missing(v1_name, v2_name, resource)),
        }
    }

    fn missing(&self, v1_name: &str, v2_name: &str, resource: &str) -> CgroupError {
        CgroupError::ControllerMissing {
            controller: if self.cg.layout() == Layout::Unified {
                v2_name.to_owned()
            } else {
                v1_name.to_owned()
            },
            resource: resource.to_owned(),
        }
    }
}

fn cpu_sets_cpu(c: &LinuxCpu) -> bool {
    c.shares().is_some()
        || c.quota().is_some()
        || c.period().is_some()
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_period().is_some()
        || c.realtime_runtime().is_some()
}

fn cpu_sets_cpuset(c: &LinuxCpu) -> bool {
    c.cpus().as_deref().is_some_and(|s| !s.is_empty())
        || c.mems().as_deref().is_some_and(|s| !s.is_empty())
}

/// Fails, before any write, for anything in `res` this host cannot do.
fn precheck(cg: &Cgroup, r: &Router, res: &LinuxResources) -> Result<()> {
    if let Some(u) = res.unified().as_ref().filter(|u| !u.is_empty()) {
        let mut keys: Vec<&str> = u.keys().map(String::as_str).collect();
        keys.sort_unstable();
        if cg.layout() != Layout::Unified {
            let hybrid = if cg.layout() == Layout::Hybrid {
                " (hybrid layout)"
            } else {
                ""
            };
            return Err(CgroupError::Unsupported(format!(
                "cgroup v2 'unified' resources are not supported on a cgroup v1 host{hybrid}: {}",
                keys.join(", ")
            )));
        }
        for k in keys {
            v2::check_unified_key(k)?;
        }
    }
    if let Some(n) = res.network() {
        let v2_msg =
            |what: &str| {
                CgroupError::Unsupported(format!(
                "linux.resources.network.{what} is not supported on cgroup v2 (no {} controller)",
                if what == "classID" { "net_cls" } else { "net_prio" }
            ))
            };
        if n.class_id().is_some() {
            if cg.layout() == Layout::Unified {
                return Err(v2_msg("classID"));
            }
            if cg.v1_dir("net_cls").is_none() {
                return Err(CgroupError::ControllerMissing {
                    controller: "net_cls".into(),
                    resource: "linux.resources.network.classID".into(),
                });
            }
        }
        if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            if cg.layout() == Layout::Unified {
                return Err(v2_msg("priorities"));
            }
            if cg.v1_dir("net_prio").is_none() {
                return Err(CgroupError::ControllerMissing {
                    controller: "net_prio".into(),
                    resource: "linux.resources.network.priorities".into(),
                });
            }
        }
    }
    if res.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        r.require_checked("rdma", "rdma", "linux.resources.rdma")?;
    }
    if res
        .hugepage_limits()
        .as_ref()
        .is_some_and(|l| !l.is_empty())
    {
        r.require_checked("hugetlb", "hugetlb", "linux.resources.hugepageLimits")?;
    }
    if let Some(m) = res.memory() {
        if let Target::V2(_) = r.require("memory", "memory", "linux.resources.memory")? {
            v2::check_memory(m)?;
        }
    }
    if let Some(c) = res.cpu() {
        if cpu_sets_cpu(c) {
            if let Target::V2(_) = r.require("cpu", "cpu", "linux.resources.cpu")? {
                v2::check_cpu(c)?;
            }
        }
        if cpu_sets_cpuset(c) {
            r.require("cpuset", "cpuset", "linux.resources.cpu.cpus/mems")?;
        }
    }
    if res.pids().is_some() {
        r.require("pids", "pids", "linux.resources.pids")?;
    }
    if let Some(b) = res.block_io() {
        if let Target::V2(_) = r.require("blkio", "io", "linux.resources.blockIO")? {
            v2::check_io(b)?;
        }
    }
    if let Some(rules) = res.devices() {
        if cg.v1_dir("devices").is_none() && cg.v2_dir().is_none() {
            return Err(CgroupError::ControllerMissing {
                controller: "devices".into(),
                resource: "linux.resources.devices".into(),
            });
        }
        DeviceState::from_spec(rules)?;
    }
    Ok(())
}

/// Applies `res` (see [`Cgroup::apply`]).
pub(crate) fn apply(cg: &Cgroup, res: &LinuxResources, updating: bool) -> Result<()> {
    let r = Router::new(cg, false);
    precheck(cg, &r, res)?;
    // Order as runc: cpuset and devices first, unified last.
    if let Some(c) = res.cpu().as_ref().filter(|c| cpu_sets_cpuset(c)) {
        match r.require("cpuset", "cpuset", "linux.resources.cpu.cpus/mems")? {
            Target::V1(d) => v1::set_cpuset(d, c)?,
            Target::V2(d) => v2::set_cpuset(d, c)?,
        }
    }
    if let Some(rules) = res.devices() {
        match (cg.v1_dir("devices"), cg.v2_dir()) {
            (Some(d), _) => devices_v1::apply(d, rules)?,
            (None, Some(d)) => devices_bpf::apply(d, rules)?,
            (None, None) => {}
        }
    }
    if let Some(m) = res.memory() {
        match r.require("memory", "memory", "linux.resources.memory")? {
            Target::V1(d) => v1::set_memory(d, m, updating)?,
            Target::V2(d) => v2::set_memory(d, m)?,
        }
    }
    if let Some(c) = res.cpu().as_ref().filter(|c| cpu_sets_cpu(c)) {
        match r.require("cpu", "cpu", "linux.resources.cpu")? {
            Target::V1(d) => v1::set_cpu(d, c)?,
            Target::V2(d) => v2::set_cpu(d, c)?,
        }
    }
    if let Some(p) = res.pids() {
        match r.require("pids", "pids", "linux.resources.pids")? {
            Target::V1(d) => v1::set_pids(d, p.limit())?,
            Target::V2(d) => v2::set_pids(d, p.limit())?,
        }
    }
    if let Some(b) = res.block_io() {
        match r.require("blkio", "io", "linux.resources.blockIO")? {
            Target::V1(d) => v1::set_blkio(d, b)?,
            Target::V2(d) => v2::set_io(d, b)?,
        }
    }
    if let Some(l) = res.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
        match r.require("hugetlb", "hugetlb", "linux.resources.hugepageLimits")? {
            Target::V1(d) => v1::set_hugetlb_files(d, l, ".limit_in_bytes")?,
            Target::V2(d) => v1::set_hugetlb_files(d, l, ".max")?,
        }
    }
    if let Some(n) = res.network() {
        if let (Some(id), Some(d)) = (n.class_id(), cg.v1_dir("net_cls")) {
            v1::set_net_cls(d, id)?;
        }
        if let (Some(p), Some(d)) = (n.priorities().as_deref(), cg.v1_dir("net_prio")) {
            v1::set_net_prio(d, p)?;
        }
    }
    if let Some(m) = res.rdma().as_ref().filter(|m| !m.is_empty()) {
        match r.require("rdma", "rdma", "linux.resources.rdma")? {
            Target::V1(d) | Target::V2(d) => v1::set_rdma(d, m)?,
        }
    }
    if let (Some(u), Some(d)) = (
        res.unified().as_ref().filter(|u| !u.is_empty()),
        cg.v2_dir(),
    ) {
        v2::set_unified(d, u)?;
    }
    Ok(())
}

/// Collects statistics from every controller present (see [`Cgroup::stats`]).
pub(crate) fn stats(cg: &Cgroup) -> Result<Stats> {
    let r = Router::new(cg, true);
    let mut st = Stats::default();
    match (cg.v1_dir("cpuacct"), cg.v1_dir("cpu"), cg.v2_dir()) {
        (None, None, Some(d)) => stats::cpu_v2(d, &mut st)?,
        (acct, cpu, _) => {
            if let Some(d) = acct {
                stats::cpuacct_v1(d, &mut st)?;
            }
            if let Some(d) = cpu {
                stats::cpu_v1(d, &mut st)?;
            }
        }
    }
    if let Some(d) = cg.v1_dir("cpuset") {
        stats::cpuset_v1(d, &mut st)?;
    }
    match r.find("memory", "memory") {
        Some(Target::V1(d)) => stats::memory_v1(d, &mut st)?,
        Some(Target::V2(d)) => stats::memory_v2(d, &mut st)?,
        None => {}
    }
    if let Some(Target::V1(d) | Target::V2(d)) = r.find("pids", "pids") {
        stats::pids(d, &mut st)?;
    }
    match r.find("blkio", "io") {
        Some(Target::V1(d)) => stats::blkio_v1(d, &mut st)?,
        Some(Target::V2(d)) => stats::io_v2(d, &mut st)?,
        None => {}
    }
    if let Some(t) = r.find("hugetlb", "hugetlb") {
        let sizes = stats::hugepage_sizes();
        match t {
            Target::V1(d) => stats::hugetlb_v1(d, &mut st, &sizes)?,
            Target::V2(d) => stats::hugetlb_v2(d, &mut st, &sizes)?,
        }
    }
    Ok(st)
}
