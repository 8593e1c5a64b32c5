//! The processes and mounts the engines leave: their per-container watchers (found by name and by
//! this bench's own dirs on their command line, never by name alone: other work on the machine
//! may run the same programs), their memory, and the mounts under the bench's dirs.

use std::fs;
use std::path::PathBuf;

/// One process and its memory, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mem {
    pub pid: i32,
    /// `VmRSS` of /proc/PID/status: every resident page it maps, shared ones (the binary, libc)
    /// counted in full in each process.
    pub rss_kib: u64,
    /// `Pss` of /proc/PID/smaps_rollup: shared pages divided among the processes that map them,
    /// so the sum over processes is what they cost together (0 when unreadable).
    pub pss_kib: u64,
}

/// A `Key:   123 kB` field of a /proc file, in KiB.
pub fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let mut it = rest.split_whitespace();
        let v = it.next()?.parse().ok()?;
        (it.next() == Some("kB")).then_some(v)
    })
}

/// The processes whose `comm` is `comm` (as the kernel truncates it: 15 bytes) and whose command
/// line contains `marker` (one of the bench's own dirs), with their memory; by pid.
pub fn find(comm: &str, marker: &str) -> Vec<Mem> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let want: String = comm.chars().take(15).collect();
    let mut found: Vec<Mem> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let base = PathBuf::from(format!("/proc/{pid}"));
            let c = fs::read_to_string(base.join("comm")).ok()?;
            if c.trim_end_matches('\n') != want {
                return None;
            }
            let cmdline = fs::read(base.join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if !cmdline.contains(marker) {
                return None;
            }
            let status = fs::read_to_string(base.join("status")).ok()?;
            let rss_kib = kib_field(&status, "VmRSS")?;
            let pss_kib = fs::read_to_string(base.join("smaps_rollup"))
                .ok()
                .and_then(|s| kib_field(&s, "Pss"))
                .unwrap_or(0);
            Some(Mem {
                pid,
                rss_kib,
                pss_kib,
            })
        })
        .collect();
    found.sort_by_key(|m| m.pid);
    found
}

/// SIGKILLs, by pid, the processes [`find`] returns for `comm` and `marker`: leftovers of
/// this bench's own engine instances (`marker` is a dir only this bench run uses).
pub fn kill_leftovers(comm: &str, marker: &str) {
    for m in find(comm, marker) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(m.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

pub use crate::mounts::unmount_under;

/// Sum, median and mean of the processes' RSS and the sum of their PSS, in KiB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemSummary {
    pub count: usize,
    pub rss_sum_kib: u64,
    pub rss_median_kib: f64,
    pub pss_sum_kib: u64,
}

impl MemSummary {
    pub fn of(mems: &[Mem]) -> MemSummary {
        let mut rss: Vec<u64> = mems.iter().map(|m| m.rss_kib).collect();
        rss.sort_unstable();
        let n = rss.len();
        let rss_median_kib = match n {
            0 => 0.0,
            _ if n % 2 == 1 => rss[n / 2] as f64,
            _ => (rss[n / 2 - 1] + rss[n / 2]) as f64 / 2.0,
        };
        MemSummary {
            count: n,
            rss_sum_kib: rss.iter().sum(),
            rss_median_kib,
            pss_sum_kib: mems.iter().map(|m| m.pss_kib).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kib_fields() {
        let s = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    2468 kB\nThreads: 1\n";
        assert_eq!(kib_field(s, "VmRSS"), Some(2468));
        assert_eq!(kib_field(s, "VmPeak"), Some(9000));
        assert_eq!(kib_field(s, "Threads"), None);
        assert_eq!(kib_field(s, "VmSwap"), None);
        assert_eq!(kib_field("Pss:   12 kB\nPss_Anon: 3 kB\n", "Pss"), Some(12));
    }

    #[test]
    fn finds_own_processes_by_name_and_marker() {
        let me = std::process::id() as i32;
        let comm = fs::read_to_string("/proc/self/comm").unwrap();
        let cmdline = fs::read("/proc/self/cmdline").unwrap();
        let arg0 = String::from_utf8_lossy(&cmdline)
            .split('\0')
            .next()
            .unwrap()
            .to_string();
        let found = find(comm.trim(), &arg0);
        let m = found.iter().find(|m| m.pid == me).expect("itself");
        assert!(m.rss_kib > 0);
        assert!(find(comm.trim(), "/no/such/marker/berth").is_empty());
    }

    #[test]
    fn summarises_memory() {
        let m = |pid, rss, pss| Mem {
            pid,
            rss_kib: rss,
            pss_kib: pss,
        };
        let s = MemSummary::of(&[m(1, 300, 100), m(2, 100, 50), m(3, 200, 70), m(4, 400, 80)]);
        assert_eq!(s.count, 4);
        assert_eq!(s.rss_sum_kib, 1000);
        assert_eq!(s.rss_median_kib, 250.0);
        assert_eq!(s.pss_sum_kib, 300);
        assert_eq!(MemSummary::of(&[]).rss_median_kib, 0.0);
    }
}
