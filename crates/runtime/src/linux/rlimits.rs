//! `process.rlimits`, with a clear error where the host forbids raising a hard limit.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use crate::{Error, Result};

/// The spec's name of a limit, e.g. `RLIMIT_NOFILE`.
fn name(t: PosixRlimitType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{t:?}"))
}

fn resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Checks every limit against the current hard limits, so create fails before any fork when the host
/// would refuse (no CAP_SYS_RESOURCE means a hard limit can never be raised).
pub fn check(limits: &[PosixRlimit]) -> Result<()> {
    let can_raise = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    for l in limits {
        if l.soft() > l.hard() {
            return Err(Error::Invalid(format!(
                "rlimit {}: soft limit {} is above the hard limit {}",
                name(l.typ()),
                l.soft(),
                l.hard()
            )));
        }
        if can_raise {
            continue;
        }
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        if unsafe { libc::getrlimit(resource(l.typ()), &mut cur) } == 0
            && cur.rlim_max != libc::RLIM_INFINITY
            && l.hard() > cur.rlim_max
        {
            return Err(Error::Invalid(format!(
                "rlimit {}: hard limit {} is above the host's hard limit {} and raising it needs \
                 CAP_SYS_RESOURCE, which this runtime does not have",
                name(l.typ()),
                l.hard(),
                cur.rlim_max
            )));
        }
    }
    Ok(())
}

/// Applies the limits to the calling process.
pub fn apply(limits: &[PosixRlimit]) -> Result<()> {
    for l in limits {
        let r = libc::rlimit {
            rlim_cur: l.soft(),
            rlim_max: l.hard(),
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(resource(l.typ()), &r) } != 0 {
            return Err(Error::Invalid(format!(
                "setting rlimit {} to soft {} hard {}: {}",
                name(l.typ()),
                l.soft(),
                l.hard(),
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}
