//! `linux.sysctl`: only namespaced keys, and only when the container has the namespace that scopes them
//! (writing a host-wide key from a container would change the host).

use oci_spec::runtime::LinuxNamespaceType;

use crate::error::Context;
use crate::Result;

/// Checks that `key` is scoped by one of `namespaces` (as runc's validator does).
pub fn check_namespaced(
    key: &str,
    namespaces: &[LinuxNamespaceType],
) -> std::result::Result<(), String> {
    let has = |t| namespaces.contains(&t);
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        return if has(LinuxNamespaceType::Ipc) {
            Ok(())
        } else {
            Err(format!("sysctl {key:?} needs an ipc namespace"))
        };
    }
    if key.starts_with("net.") {
        return if has(LinuxNamespaceType::Network) {
            Ok(())
        } else {
            Err(format!("sysctl {key:?} needs a network namespace"))
        };
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return Err(format!(
            "sysctl {key:?} is not allowed: use the spec's hostname/domainname"
        ));
    }
    Err(format!(
        "sysctl {key:?} is not namespaced: a container may not change it for the whole host"
    ))
}

/// Writes one sysctl through /proc/sys (inside the container's mount namespace).
pub fn write(key: &str, value: &str) -> Result<()> {
    if key.contains("..") || key.contains('/') && key.contains('.') {
        return Err(crate::Error::Invalid(format!("invalid sysctl key {key:?}")));
    }
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).ctx(|| format!("setting sysctl {key}={value}"))
}
