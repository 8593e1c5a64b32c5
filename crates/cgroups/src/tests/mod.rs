//! Tests against the real kernel (they run as root). Every test cgroup has a
//! unique name and sits in a [`Guard`] that thaws it, kills its processes
//! and removes it when the test ends, also when it panics.

mod host;
mod unified;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use crate::{Cgroup, Layout};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A cgroup name unique to this test process and call.
pub(crate) fn unique(tag: &str) -> String {
    format!(
        "berth-cgtest-{}-{tag}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Resources from runtime-spec JSON.
pub(crate) fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

/// The host's layout, from mountinfo.
pub(crate) fn host_layout() -> Layout {
    crate::layout::read_mounts().unwrap().layout
}

/// Owns a test cgroup and the processes started in it.
pub(crate) struct Guard {
    pub cg: Cgroup,
    children: Vec<Child>,
}

impl Guard {
    /// Wraps `cg` and creates it.
    pub(crate) fn create(cg: Cgroup) -> Self {
        let g = Guard {
            cg,
            children: Vec::new(),
        };
        g.cg.create().unwrap();
        g
    }

    /// Starts `sh -c script` inside the cgroup: the shell blocks on stdin
    /// until it has been added, so everything the script does is accounted.
    pub(crate) fn spawn_in(&mut self, script: &str) -> i32 {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read x && {{\n{script}\n}}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        self.children.push(child);
        self.cg.add_process(pid).unwrap();
        let c = self.children.last_mut().unwrap();
        c.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        pid
    }

    /// Waits for the child `pid`, returning its status and stdout.
    pub(crate) fn wait(&mut self, pid: i32) -> (ExitStatus, String) {
        let i = self
            .children
            .iter()
            .position(|c| c.id() as i32 == pid)
            .unwrap();
        let mut c = self.children.remove(i);
        drop(c.stdin.take());
        let mut out = String::new();
        c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        (c.wait().unwrap(), out)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.cg.thaw();
        // Grandchildren too: everything still in the cgroup.
        let _ = self.cg.kill_all(nix::sys::signal::Signal::SIGKILL);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for _ in 0..50 {
            if self.cg.destroy().is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// user+system CPU ticks of a process (/proc/<pid>/stat fields 14, 15).
pub(crate) fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Waits until a busy process has used some CPU (it is really running).
pub(crate) fn wait_running(pid: i32) {
    let start = cpu_ticks(pid);
    for _ in 0..200 {
        if cpu_ticks(pid) > start {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("process {pid} never ran");
}

/// Reads a cgroup file, trimmed.
pub(crate) fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_owned()
}

/// The cgroup2 mount point of this host (hybrid: .../unified).
pub(crate) fn v2_mountpoint() -> PathBuf {
    crate::layout::read_mounts()
        .unwrap()
        .v2
        .expect("host has a cgroup2 mount")
        .mountpoint
}
