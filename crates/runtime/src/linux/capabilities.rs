//! The five capability sets of `process.capabilities`.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability};
use oci_spec::runtime::LinuxCapabilities;

use crate::{Error, Result};

/// Capability sets resolved to the `caps` crate's type (done before fork, so bad names fail early).
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub bounding: Option<HashSet<Capability>>,
    pub effective: Option<HashSet<Capability>>,
    pub permitted: Option<HashSet<Capability>>,
    pub inheritable: Option<HashSet<Capability>>,
    pub ambient: Option<HashSet<Capability>>,
}

impl Resolved {
    /// Every set empty: a process with no capabilities at all.
    pub fn empty() -> Resolved {
        Resolved {
            bounding: Some(HashSet::new()),
            effective: Some(HashSet::new()),
            permitted: Some(HashSet::new()),
            inheritable: Some(HashSet::new()),
            ambient: Some(HashSet::new()),
        }
    }
}

/// A set absent from a present `capabilities` object is empty (as runc).
fn convert(set: &Option<oci_spec::runtime::Capabilities>) -> Result<Option<HashSet<Capability>>> {
    let Some(set) = set else {
        return Ok(Some(HashSet::new()));
    };
    let mut out = HashSet::new();
    for c in set {
        let name = format!("CAP_{c}");
        let cap = Capability::from_str(&name)
            .map_err(|_| Error::Invalid(format!("unknown capability {name}")))?;
        out.insert(cap);
    }
    Ok(Some(out))
}

/// The capabilities this kernel knows, probed once (the parent probes; the forked child inherits the answer).
fn supported() -> &'static HashSet<Capability> {
    static SUPPORTED: std::sync::OnceLock<HashSet<Capability>> = std::sync::OnceLock::new();
    SUPPORTED.get_or_init(caps::runtime::thread_all_supported)
}

/// Converts the spec's names; unknown to this kernel are dropped like runc does (with the bounding set
/// limited to what the kernel knows).
pub fn resolve(c: &LinuxCapabilities) -> Result<Resolved> {
    let known = supported();
    let keep = |s: Option<HashSet<Capability>>| s.map(|s| &s & known);
    Ok(Resolved {
        bounding: keep(convert(c.bounding())?),
        effective: keep(convert(c.effective())?),
        permitted: keep(convert(c.permitted())?),
        inheritable: keep(convert(c.inheritable())?),
        ambient: keep(convert(c.ambient())?),
    })
}

/// Drops what is not in the bounding set (needs CAP_SETPCAP, so it runs before the user switch).
pub fn apply_bounding(r: &Resolved) -> Result<()> {
    if let Some(b) = &r.bounding {
        for &cap in supported() {
            if !b.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).map_err(|e| {
                    Error::Invalid(format!("dropping {cap} from the bounding set: {e}"))
                })?;
            }
        }
    }
    Ok(())
}

fn mask(set: Option<&HashSet<Capability>>) -> u64 {
    set.into_iter()
        .flatten()
        .fold(0u64, |m, c| m | (1u64 << c.index()))
}

/// Sets permitted, inheritable and effective in one capset(2) call (set by set, the kernel would refuse an
/// intermediate state), then the ambient set (after the user switch, with keep-caps set).
pub fn apply_sets(r: &Resolved) -> Result<()> {
    let (p, i, e) = (
        mask(r.permitted.as_ref()),
        mask(r.inheritable.as_ref()),
        mask(r.effective.as_ref()),
    );
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut hdr = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [
        Data {
            effective: e as u32,
            permitted: p as u32,
            inheritable: i as u32,
        },
        Data {
            effective: (e >> 32) as u32,
            permitted: (p >> 32) as u32,
            inheritable: (i >> 32) as u32,
        },
    ];
    // SAFETY: capset reads a header and two data structs laid out as the kernel's v3 ABI.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) };
    if rc != 0 {
        return Err(Error::Invalid(format!(
            "setting capabilities (permitted {p:#x}, effective {e:#x}, inheritable {i:#x}): {}",
            std::io::Error::last_os_error()
        )));
    }
    caps::clear(None, CapSet::Ambient)
        .map_err(|e| Error::Invalid(format!("clearing the ambient capability set: {e}")))?;
    if let Some(amb) = &r.ambient {
        for cap in amb {
            // A cap that is not both permitted and inheritable cannot be ambient; runc skips it too.
            let _ = caps::raise(None, CapSet::Ambient, *cap);
        }
    }
    Ok(())
}
