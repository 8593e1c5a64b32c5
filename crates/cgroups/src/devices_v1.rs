//! cgroup v1 devices controller: reads `devices.list` once, computes the
//! writes from the current to the wanted state (see
//! [`crate::devices::v1_transition`]) and issues them, one rule per write(2)
//! on a single open descriptor per file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use oci_spec::runtime::LinuxDeviceCgroup;

use crate::devices::{parse_devices_list, v1_transition, DeviceState};
use crate::error::{CgroupError, Result};
use crate::fsutil;

/// Applies the spec's device rules to the v1 cgroup `dir`.
pub(crate) fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let target = DeviceState::from_spec(rules)?;
    let list = fsutil::read_in(dir, "devices.list")?;
    let current = parse_devices_list(&list);
    let writes = v1_transition(current.as_ref(), &target);
    let mut allow: Option<File> = None;
    let mut deny: Option<File> = None;
    for w in writes {
        let (slot, name) = if w.allow {
            (&mut allow, "devices.allow")
        } else {
            (&mut deny, "devices.deny")
        };
        let path = dir.join(name);
        let err = |source| CgroupError::Write {
            path: path.clone(),
            value: w.line.clone(),
            source,
        };
        if slot.is_none() {
            *slot = Some(OpenOptions::new().write(true).open(&path).map_err(err)?);
        }
        if let Some(f) = slot.as_mut() {
            let n = f.write(w.line.as_bytes()).map_err(err)?;
            if n != w.line.len() {
                return Err(err(std::io::Error::from(std::io::ErrorKind::WriteZero)));
            }
        }
    }
    Ok(())
}
