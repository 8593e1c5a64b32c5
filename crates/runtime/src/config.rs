//! Loading and checking a bundle's `config.json`.
//!
//! Deserialisation is oci-spec's; this module adds the checks the runtime-spec asks of a runtime before it
//! touches anything, so that bad input fails early with a message naming the field.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::{Error, Result};

/// A loaded and checked bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory, absolute.
    pub dir: PathBuf,
    /// The config, with `root.path` made absolute.
    pub spec: Spec,
    /// The absolute root filesystem path.
    pub rootfs: PathBuf,
    /// config.json as read (kept in the state directory for exec, update and delete).
    pub raw: Vec<u8>,
}

/// Reads `<bundle>/config.json` and checks it.
pub fn load_bundle(bundle: &Path) -> Result<Bundle> {
    let dir = std::fs::canonicalize(bundle).map_err(|e| Error::Io {
        context: format!("bundle directory {}", bundle.display()),
        err: e,
    })?;
    let path = dir.join("config.json");
    let raw = std::fs::read(&path).map_err(|e| Error::Io {
        context: format!("reading {}", path.display()),
        err: e,
    })?;
    let spec = parse(&raw, &path)?;
    let root = spec.root().as_ref().ok_or_else(|| Error::Config {
        path: path.clone(),
        msg: "root is missing".into(),
    })?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    let rootfs = std::fs::canonicalize(&rootfs).map_err(|e| Error::Io {
        context: format!("root.path {}", rootfs.display()),
        err: e,
    })?;
    if !rootfs.is_dir() {
        return Err(Error::Config {
            path,
            msg: format!("root.path {} is not a directory", rootfs.display()),
        });
    }
    Ok(Bundle {
        dir,
        spec,
        rootfs,
        raw,
    })
}

/// Parses config.json bytes and runs the checks.
pub fn parse(raw: &[u8], path: &Path) -> Result<Spec> {
    let de = &mut serde_json::Deserializer::from_slice(raw);
    let spec: Spec = serde_path_to_error::deserialize(de).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        msg: if e.path().to_string() == "." {
            e.inner().to_string()
        } else {
            format!("{}: {}", e.path(), e.inner())
        },
    })?;
    check(&spec).map_err(|msg| Error::Config {
        path: path.to_path_buf(),
        msg,
    })?;
    Ok(spec)
}

fn check(spec: &Spec) -> std::result::Result<(), String> {
    let version = spec.version();
    if !version.starts_with("1.") {
        return Err(format!(
            "ociVersion {version:?} is not supported (want 1.x)"
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or("process is missing (required for create)")?;
    let args = process.args().as_ref().map(|a| a.len()).unwrap_or(0);
    if args == 0 && process.command_line().is_none() {
        return Err("process.args must have at least one entry".into());
    }
    if !process.cwd().is_absolute() {
        return Err(format!(
            "process.cwd {} must be an absolute path",
            process.cwd().display()
        ));
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(format!(
                "mount destination {} must be an absolute path",
                m.destination().display()
            ));
        }
    }
    let linux = spec.linux().as_ref().ok_or("linux section is missing")?;
    let mut seen = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        if seen.contains(&ns.typ()) {
            return Err(format!("namespace {:?} is listed twice", ns.typ()));
        }
        seen.push(ns.typ());
    }
    let has = |t: LinuxNamespaceType| seen.contains(&t);
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    let new_user = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if maps && !has(LinuxNamespaceType::User) {
        return Err("uidMappings/gidMappings need a user namespace".into());
    }
    if new_user && !maps {
        return Err("a new user namespace needs uidMappings and gidMappings".into());
    }
    if (spec.hostname().is_some() || spec.domainname().is_some()) && !has(LinuxNamespaceType::Uts) {
        return Err("hostname/domainname need a new or joined uts namespace".into());
    }
    if linux.time_offsets().is_some() && !has(LinuxNamespaceType::Time) {
        return Err("timeOffsets need a time namespace".into());
    }
    // Features this runtime does not implement are refused, never silently ignored.
    if linux.intel_rdt().is_some() {
        return Err("linux.intelRdt is not supported by berth-runtime (no resctrl support)".into());
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err("linux.netDevices is not supported by berth-runtime yet".into());
    }
    if linux.memory_policy().is_some() {
        return Err("linux.memoryPolicy is not supported by berth-runtime yet".into());
    }
    if linux.mount_label().as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(
            "linux.mountLabel (SELinux mount labels) is not supported by berth-runtime".into(),
        );
    }
    for (k, _) in linux.sysctl().iter().flatten() {
        crate::linux::sysctl::check_namespaced(k, &seen)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Spec> {
        parse(s.as_bytes(), Path::new("config.json"))
    }

    #[test]
    fn default_spec_is_valid() {
        let v = crate::spec::default_spec();
        parse_str(&v.to_string()).unwrap();
        let v = crate::spec::rootless_spec(1000, 1000);
        parse_str(&v.to_string()).unwrap();
    }

    #[test]
    fn rejects_syntax_and_type_errors_with_the_file_name() {
        let e = parse_str("{not json").unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
        let mut v = crate::spec::default_spec();
        v["process"]["args"] = serde_json::json!("sh");
        let e = parse_str(&v.to_string()).unwrap_err().to_string();
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn rejects_semantic_errors() {
        type Edit = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "at least one",
                Box::new(|v| v["process"]["args"] = serde_json::json!([])),
            ),
            (
                "absolute",
                Box::new(|v| v["process"]["cwd"] = serde_json::json!("rel")),
            ),
            (
                "ociVersion",
                Box::new(|v| v["ociVersion"] = serde_json::json!("0.9")),
            ),
            (
                "twice",
                Box::new(|v| {
                    v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}, {"type": "pid"}])
                }),
            ),
            (
                "uts",
                Box::new(|v| v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}])),
            ),
            (
                "need a user namespace",
                Box::new(|v| {
                    v["linux"]["uidMappings"] =
                        serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}])
                }),
            ),
            (
                "intelRdt",
                Box::new(|v| v["linux"]["intelRdt"] = serde_json::json!({"closID": "x"})),
            ),
            (
                "net.ipv4.ip_forward",
                Box::new(|v| {
                    v["linux"]["namespaces"] = serde_json::json!([{"type": "uts"}]);
                    v["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
                }),
            ),
        ];
        for (want, edit) in cases {
            let mut v = crate::spec::default_spec();
            edit(&mut v);
            let e = parse_str(&v.to_string()).unwrap_err().to_string();
            assert!(e.contains(want), "want {want:?} in {e}");
        }
    }
}
