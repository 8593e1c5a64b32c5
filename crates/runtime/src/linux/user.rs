//! Switching to the process's user: supplementary groups, gid, uid, umask.

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::User;

use crate::error::Context;
use crate::Result;

/// Sets groups, gid and uid (keeping capabilities across the uid change so they can be set afterwards).
pub fn switch(user: &User, allow_setgroups: bool) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "prctl(PR_SET_KEEPCAPS)".into());
    }
    if allow_setgroups {
        let groups: Vec<Gid> = user
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&groups)
            .ctx(|| format!("setgroups({:?})", user.additional_gids()))?;
    }
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).ctx(|| format!("setting gid {gid}"))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).ctx(|| format!("setting uid {uid}"))?;
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}
