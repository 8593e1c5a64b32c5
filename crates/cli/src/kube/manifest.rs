//! The part of Kubernetes' Pod and Deployment manifests that `berth kube play` runs, as serde
//! structs, and their checked form ([`PodPlan`]).
//!
//! Every modelled struct denies unknown fields, and the deserialization goes through
//! `serde_path_to_error`, so anything berth does not do is an error that names the field
//! (`spec.containers[0].livenessProbe: unsupported field`) instead of being silently ignored.
//! The YAML is read with `serde_norway`, the maintained fork of the archived `serde_yaml` (same
//! API and libyaml-based parser); several documents (`---`) may be in one file.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Deserializer};

/// `metadata` of a Pod or Deployment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Metadata {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Accepted and kept nowhere: they change nothing in how a pod runs.
    #[serde(default)]
    #[allow(dead_code)]
    annotations: BTreeMap<String, String>,
}

/// `kind: Pod`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PodDoc {
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: Metadata,
    spec: PodSpec,
    /// What `kubectl get -o yaml` and `podman kube generate` write: output, ignored.
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<serde::de::IgnoredAny>,
}

/// `kind: Deployment` (one replica: its pod template is run as one pod).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeploymentDoc {
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: Metadata,
    spec: DeploymentSpec,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeploymentSpec {
    #[serde(default)]
    replicas: Option<u32>,
    /// Checked against the template's labels, as Kubernetes does.
    #[serde(default)]
    selector: Option<Selector>,
    template: PodTemplate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Selector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PodTemplate {
    #[serde(default)]
    metadata: Option<TemplateMetadata>,
    spec: PodSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TemplateMetadata {
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PodSpec {
    containers: Vec<ContainerSpec>,
    #[serde(default)]
    volumes: Vec<VolumeSpec>,
    #[serde(default)]
    hostname: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ContainerSpec {
    name: String,
    image: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    ports: Vec<PortSpec>,
    #[serde(default)]
    volume_mounts: Vec<VolumeMountSpec>,
    #[serde(default)]
    resources: Option<Resources>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    image_pull_policy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EnvVar {
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PortSpec {
    container_port: u16,
    #[serde(default)]
    host_port: Option<u16>,
    #[serde(default)]
    protocol: Option<String>,
    /// A port's name (referenced by Services, which berth does not run): accepted.
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default, rename = "hostIP")]
    host_ip: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VolumeMountSpec {
    name: String,
    mount_path: String,
    #[serde(default)]
    read_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Resources {
    #[serde(default)]
    limits: Option<Limits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Limits {
    #[serde(default, deserialize_with = "quantity")]
    memory: Option<String>,
    #[serde(default, deserialize_with = "quantity")]
    cpu: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VolumeSpec {
    name: String,
    #[serde(default)]
    empty_dir: Option<EmptyDirSpec>,
    #[serde(default)]
    host_path: Option<HostPathSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EmptyDirSpec {
    #[serde(default)]
    medium: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HostPathSpec {
    path: String,
    #[serde(default, rename = "type")]
    typ: Option<String>,
}

/// A Kubernetes quantity: a string (`128Mi`, `500m`) or a bare number (`1`, `0.5`).
fn quantity<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Q {
        S(String),
        U(u64),
        F(f64),
    }
    Ok(Option::<Q>::deserialize(d)?.map(|q| match q {
        Q::S(s) => s,
        Q::U(n) => n.to_string(),
        Q::F(f) => f.to_string(),
    }))
}

/// What a hostPath volume's `type` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPathType {
    /// `""`: no check.
    Any,
    Directory,
    DirectoryOrCreate,
    File,
    FileOrCreate,
}

/// A pod volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A directory of the pod's own (`<root>/pods/<id>/volumes/<name>`), gone with the pod.
    EmptyDir,
    HostPath {
        path: PathBuf,
        typ: HostPathType,
    },
}

/// A checked pod volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVolume {
    pub name: String,
    pub source: VolumeSource,
    /// `spec.volumes[i]` (for errors found when it is made).
    pub field: String,
}

/// A checked volume mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMount {
    pub volume: String,
    pub path: String,
    pub read_only: bool,
}

/// A checked container of a pod, in `berth create`'s terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedContainer {
    pub name: String,
    pub image: String,
    /// `command[0]` (replaces the image's entrypoint, and then its Cmd too).
    pub entrypoint: Option<String>,
    /// The rest of `command`, then `args` (None: the image's Cmd).
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// Bytes.
    pub memory: Option<i64>,
    /// CPUs (fractional, as `--cpus`).
    pub cpus: Option<String>,
    /// `--pull`: missing, always, never.
    pub pull: String,
    pub mounts: Vec<PlannedMount>,
    /// `spec.containers[i]` of the document (for errors found when it is created).
    pub field: String,
}

/// One pod to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlan {
    pub name: String,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `-p` values of the pod (containers' ports with a hostPort).
    pub publish: Vec<String>,
    pub volumes: Vec<PlannedVolume>,
    pub containers: Vec<PlannedContainer>,
}

/// A name as Kubernetes allows it for pods and containers (a DNS label or subdomain), which is
/// also a valid berth name.
fn check_k8s_name(n: &str, field: &str) -> Result<()> {
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !ok {
        bail!("{field}: invalid name {n:?}: want lower case letters, digits, '-' and '.', starting with a letter or digit");
    }
    Ok(())
}

/// Memory: bytes from a quantity (`128Mi`, `1G`, `1e9`, `1048576`).
pub fn parse_memory(q: &str, field: &str) -> Result<i64> {
    let q = q.trim();
    const SUFFIXES: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (num, mult) = SUFFIXES
        .iter()
        .find_map(|(s, m)| q.strip_suffix(s).map(|n| (n, *m)))
        .unwrap_or((q, 1.0));
    let v: f64 = num
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .ok_or_else(|| {
            anyhow!("{field}: invalid quantity {q:?}: want a positive number with an optional suffix Ki, Mi, Gi, k, M, G...")
        })?;
    Ok((v * mult).round() as i64)
}

/// CPUs: `500m` (millicores) or a number of CPUs; as `--cpus` takes them.
pub fn parse_cpu(q: &str, field: &str) -> Result<String> {
    let q = q.trim();
    let bad =
        || anyhow!("{field}: invalid quantity {q:?}: want CPUs (0.5, 2) or millicores (500m)");
    let v: f64 = match q.strip_suffix('m') {
        Some(m) => m.parse::<f64>().map_err(|_| bad())? / 1000.0,
        None => q.parse().map_err(|_| bad())?,
    };
    if !v.is_finite() || v <= 0.0 {
        return Err(bad());
    }
    Ok(format!("{v}"))
}

/// Turns a serde error (with its path) into berth's message: unknown fields are "unsupported".
fn describe(e: serde_path_to_error::Error<serde_norway::Error>, doc: usize) -> anyhow::Error {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let at = inner
        .location()
        .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
        .unwrap_or_default();
    let msg = inner.to_string();
    // serde_norway's message may carry a path (`a.b[0]: `) and the location itself: keep the
    // bare reason.
    let msg = match msg.split_once(": ") {
        Some((pre, rest)) if !pre.contains(' ') => rest,
        _ => &msg,
    };
    let msg = msg.split(" at line ").next().unwrap_or(msg);
    let doc = if doc > 0 {
        format!("document {}: ", doc + 1)
    } else {
        String::new()
    };
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        // serde_path_to_error's path ends with the unknown key already.
        let full = if path == "." {
            field.to_string()
        } else if path == field || path.ends_with(&format!(".{field}")) {
            path.clone()
        } else {
            format!("{path}.{field}")
        };
        let supported = rest
            .split_once("expected ")
            .map(|(_, x)| format!(" (supported here: {})", x.replace("one of ", "")))
            .unwrap_or_default();
        return anyhow!("{doc}{full}: unsupported field{supported}{at}");
    }
    if path == "." {
        anyhow!("{doc}{msg}{at}")
    } else {
        anyhow!("{doc}{path}: {msg}{at}")
    }
}

/// Parses a manifest file's text into the pods to run; every error names the field.
pub fn parse(text: &str) -> Result<Vec<PodPlan>> {
    // First pass: each document as a plain value (YAML syntax errors come out here), for its kind.
    let mut values = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        values.push(serde_norway::Value::deserialize(doc).context("malformed YAML")?);
    }
    // Second pass: each document into the structs of its kind, with the path of any error.
    let mut plans = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let v = &values[i];
        if v.is_null() {
            continue; // an empty document (a trailing `---`)
        }
        let Some(map) = v.as_mapping() else {
            bail!("malformed manifest: document {} is not a mapping", i + 1);
        };
        let kind = map
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or_else(|| anyhow!("kind: missing (want Pod or Deployment)"))?;
        let plan = match kind {
            "Pod" => {
                let d: PodDoc =
                    serde_path_to_error::deserialize(doc).map_err(|e| describe(e, i))?;
                if d.api_version != "v1" {
                    bail!(
                        "apiVersion: {:?} is not supported for kind Pod (want v1)",
                        d.api_version
                    );
                }
                check_k8s_name(&d.metadata.name, "metadata.name")?;
                plan_pod(d.metadata.name, d.metadata.labels, d.spec, "spec")?
            }
            "Deployment" => {
                let d: DeploymentDoc =
                    serde_path_to_error::deserialize(doc).map_err(|e| describe(e, i))?;
                if d.api_version != "apps/v1" {
                    bail!(
                        "apiVersion: {:?} is not supported for kind Deployment (want apps/v1)",
                        d.api_version
                    );
                }
                check_k8s_name(&d.metadata.name, "metadata.name")?;
                match d.spec.replicas {
                    None | Some(1) => {}
                    Some(n) => bail!(
                        "spec.replicas: {n} replicas are not supported: berth kube play runs a Deployment as one pod (replicas: 1)"
                    ),
                }
                let mut labels = d.metadata.labels;
                let tlabels = d.spec.template.metadata.map(|m| m.labels).unwrap_or_default();
                if let Some(sel) = &d.spec.selector {
                    for (k, v) in &sel.match_labels {
                        if tlabels.get(k) != Some(v) {
                            bail!("spec.selector.matchLabels: {k}={v} does not match the labels of spec.template.metadata.labels");
                        }
                    }
                }
                labels.extend(tlabels);
                // podman's name for a Deployment's pod.
                let name = format!("{}-pod", d.metadata.name);
                plan_pod(name, labels, d.spec.template.spec, "spec.template.spec")?
            }
            other => bail!(
                "kind: {other} is not supported: berth kube play runs Pod and Deployment (replicas: 1)"
            ),
        };
        if plans.iter().any(|p: &PodPlan| p.name == plan.name) {
            bail!("metadata.name: the pod {} is in the file twice", plan.name);
        }
        plans.push(plan);
    }
    if plans.is_empty() {
        bail!("the file has no Pod or Deployment");
    }
    Ok(plans)
}

/// Checks a pod spec (field names of errors under `at`) into a plan.
fn plan_pod(
    name: String,
    labels: BTreeMap<String, String>,
    spec: PodSpec,
    at: &str,
) -> Result<PodPlan> {
    if spec.containers.is_empty() {
        bail!("{at}.containers: a pod needs at least one container");
    }
    let mut volumes = Vec::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        let field = format!("{at}.volumes[{i}]");
        check_k8s_name(&v.name, &format!("{field}.name"))?;
        if volumes.iter().any(|x: &PlannedVolume| x.name == v.name) {
            bail!("{field}.name: the volume {} is defined twice", v.name);
        }
        let source = match (&v.empty_dir, &v.host_path) {
            (Some(e), None) => {
                match e.medium.as_deref() {
                    None | Some("") => {}
                    Some(m) => bail!("{field}.emptyDir.medium: {m:?} is not supported (berth's emptyDir is a directory of the pod on disk)"),
                }
                VolumeSource::EmptyDir
            }
            (None, Some(h)) => {
                if !h.path.starts_with('/') {
                    bail!("{field}.hostPath.path: {:?} must be absolute", h.path);
                }
                if h.path.contains(':') || h.path.contains(',') {
                    bail!(
                        "{field}.hostPath.path: {:?}: paths with ':' or ',' are not supported",
                        h.path
                    );
                }
                let typ = match h.typ.as_deref() {
                    None | Some("") => HostPathType::Any,
                    Some("Directory") => HostPathType::Directory,
                    Some("DirectoryOrCreate") => HostPathType::DirectoryOrCreate,
                    Some("File") => HostPathType::File,
                    Some("FileOrCreate") => HostPathType::FileOrCreate,
                    Some(t) => bail!("{field}.hostPath.type: {t:?} is not supported (want Directory, DirectoryOrCreate, File or FileOrCreate)"),
                };
                VolumeSource::HostPath {
                    path: PathBuf::from(&h.path),
                    typ,
                }
            }
            (None, None) => {
                bail!("{field}: no volume source (berth supports emptyDir and hostPath)")
            }
            (Some(_), Some(_)) => {
                bail!("{field}: give one volume source, not emptyDir and hostPath")
            }
        };
        volumes.push(PlannedVolume {
            name: v.name.clone(),
            source,
            field,
        });
    }
    let mut publish = Vec::new();
    let mut host_ports = HashSet::new();
    let mut containers: Vec<PlannedContainer> = Vec::new();
    for (i, c) in spec.containers.into_iter().enumerate() {
        let field = format!("{at}.containers[{i}]");
        check_k8s_name(&c.name, &format!("{field}.name"))?;
        if containers.iter().any(|x| x.name == c.name) {
            bail!("{field}.name: the container {} is in the pod twice", c.name);
        }
        if c.image.trim().is_empty() {
            bail!("{field}.image: empty");
        }
        let mut env = Vec::new();
        for (j, e) in c.env.iter().enumerate() {
            if e.name.is_empty() || e.name.contains('=') {
                bail!("{field}.env[{j}].name: invalid name {:?}", e.name);
            }
            env.push(format!("{}={}", e.name, e.value));
        }
        for (j, p) in c.ports.iter().enumerate() {
            let pf = format!("{field}.ports[{j}]");
            if p.container_port == 0 {
                bail!("{pf}.containerPort: must be 1 to 65535");
            }
            let proto = match p.protocol.as_deref() {
                None | Some("TCP") => "tcp",
                Some("UDP") => "udp",
                Some("SCTP") => "sctp",
                Some(o) => bail!("{pf}.protocol: {o:?} is not a protocol (want TCP, UDP or SCTP)"),
            };
            match p.host_port {
                None if p.host_ip.is_some() => {
                    bail!("{pf}.hostIP: needs a hostPort")
                }
                None => {} // not published: reachable inside the pod only, as in Kubernetes
                Some(0) => bail!("{pf}.hostPort: must be 1 to 65535"),
                Some(h) => {
                    if !host_ports.insert((h, proto)) {
                        bail!("{pf}.hostPort: {h}/{proto} is published twice in the pod");
                    }
                    let ip = match &p.host_ip {
                        Some(ip) => {
                            ip.parse::<std::net::IpAddr>()
                                .map_err(|_| anyhow!("{pf}.hostIP: {ip:?} is not an IP address"))?;
                            format!("{ip}:")
                        }
                        None => String::new(),
                    };
                    publish.push(format!("{ip}{h}:{}/{proto}", p.container_port));
                }
            }
        }
        let mut mounts = Vec::new();
        for (j, m) in c.volume_mounts.iter().enumerate() {
            let mf = format!("{field}.volumeMounts[{j}]");
            if !volumes.iter().any(|v| v.name == m.name) {
                bail!("{mf}.name: no volume {:?} in {at}.volumes", m.name);
            }
            if !m.mount_path.starts_with('/') {
                bail!("{mf}.mountPath: {:?} must be absolute", m.mount_path);
            }
            if m.mount_path.contains(':') || m.mount_path.contains(',') {
                bail!(
                    "{mf}.mountPath: {:?}: paths with ':' or ',' are not supported",
                    m.mount_path
                );
            }
            if mounts.iter().any(|x: &PlannedMount| x.path == m.mount_path) {
                bail!("{mf}.mountPath: {} is mounted twice", m.mount_path);
            }
            mounts.push(PlannedMount {
                volume: m.name.clone(),
                path: m.mount_path.clone(),
                read_only: m.read_only,
            });
        }
        let limits = c.resources.and_then(|r| r.limits);
        let (memory, cpus) = match limits {
            None => (None, None),
            Some(l) => (
                l.memory
                    .as_deref()
                    .map(|m| parse_memory(m, &format!("{field}.resources.limits.memory")))
                    .transpose()?,
                l.cpu
                    .as_deref()
                    .map(|q| parse_cpu(q, &format!("{field}.resources.limits.cpu")))
                    .transpose()?,
            ),
        };
        if let Some(w) = &c.working_dir {
            if !w.starts_with('/') {
                bail!("{field}.workingDir: {w:?} must be absolute");
            }
        }
        let pull = match c.image_pull_policy.as_deref() {
            None | Some("IfNotPresent") => "missing",
            Some("Always") => "always",
            Some("Never") => "never",
            Some(p) => bail!("{field}.imagePullPolicy: {p:?} is not a policy (want Always, IfNotPresent or Never)"),
        };
        // Kubernetes: `command` replaces the image's entrypoint (and then its Cmd), `args` its Cmd.
        let mut command = c.command.into_iter();
        let entrypoint = command.next();
        let mut cmd: Vec<String> = command.collect();
        cmd.extend(c.args);
        containers.push(PlannedContainer {
            name: c.name,
            image: c.image,
            entrypoint,
            cmd,
            env,
            workdir: c.working_dir,
            memory,
            cpus,
            pull: pull.into(),
            mounts,
            field,
        });
    }
    Ok(PodPlan {
        name,
        hostname: spec.hostname,
        labels,
        publish,
        volumes,
        containers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NGINX: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: nginx
spec:
  containers:
  - name: nginx
    image: nginx:1.14.2
    ports:
    - containerPort: 80
";

    #[test]
    fn kubernetes_nginx_example() {
        let p = parse(NGINX).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "nginx");
        assert!(
            p[0].publish.is_empty(),
            "a containerPort alone is not published"
        );
        let c = &p[0].containers[0];
        assert_eq!(
            (c.name.as_str(), c.image.as_str()),
            ("nginx", "nginx:1.14.2")
        );
        assert_eq!(c.entrypoint, None);
        assert!(c.cmd.is_empty());
        assert_eq!(c.pull, "missing");
    }

    #[test]
    fn every_supported_field() {
        let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web, tier: front}
    spec:
      hostname: h1
      containers:
      - name: srv
        image: bb
        imagePullPolicy: Never
        command: ["httpd", "-f"]
        args: ["-p", "80"]
        env:
        - name: A
          value: "1"
        - name: EMPTY
        ports:
        - containerPort: 80
          hostPort: 8080
        - containerPort: 53
          hostPort: 5353
          protocol: UDP
          hostIP: 127.0.0.1
        volumeMounts:
        - name: scratch
          mountPath: /scratch
        - name: host
          mountPath: /host
          readOnly: true
        resources:
          limits:
            memory: 64Mi
            cpu: 500m
        workingDir: /srv
      volumes:
      - name: scratch
        emptyDir: {}
      - name: host
        hostPath:
          path: /tmp
          type: Directory
---
"#;
        let p = parse(text).unwrap();
        assert_eq!(p.len(), 1);
        let p = &p[0];
        assert_eq!(p.name, "web-pod");
        assert_eq!(p.hostname.as_deref(), Some("h1"));
        assert_eq!(p.labels["tier"], "front");
        assert_eq!(p.publish, ["8080:80/tcp", "127.0.0.1:5353:53/udp"]);
        let c = &p.containers[0];
        assert_eq!(c.entrypoint.as_deref(), Some("httpd"));
        assert_eq!(c.cmd, ["-f", "-p", "80"]);
        assert_eq!(c.env, ["A=1", "EMPTY="]);
        assert_eq!(c.memory, Some(64 << 20));
        assert_eq!(c.cpus.as_deref(), Some("0.5"));
        assert_eq!(c.workdir.as_deref(), Some("/srv"));
        assert_eq!(c.pull, "never");
        assert_eq!(c.mounts.len(), 2);
        assert!(c.mounts[1].read_only);
        assert_eq!(p.volumes[0].source, VolumeSource::EmptyDir);
        assert_eq!(
            p.volumes[1].source,
            VolumeSource::HostPath {
                path: "/tmp".into(),
                typ: HostPathType::Directory
            }
        );
    }

    fn err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn unsupported_fields_are_named() {
        let e = err(&format!(
            "{NGINX}    livenessProbe:\n      httpGet: {{path: /, port: 80}}\n"
        ));
        assert!(
            e.starts_with("spec.containers[0].livenessProbe: unsupported field"),
            "{e}"
        );
        let e = err(&format!("{NGINX}  restartPolicy: Always\n"));
        assert!(
            e.starts_with("spec.restartPolicy: unsupported field"),
            "{e}"
        );
        let e = err(&NGINX.replace(
            "    - containerPort: 80",
            "    - containerPort: 80\n      hostPortRange: 9",
        ));
        assert!(
            e.starts_with("spec.containers[0].ports[0].hostPortRange: unsupported field"),
            "{e}"
        );
        let e = err(&format!(
            "{NGINX}  volumes:\n  - name: c\n    configMap: {{name: x}}\n"
        ));
        assert!(
            e.starts_with("spec.volumes[0].configMap: unsupported field"),
            "{e}"
        );
        let e = err(&NGINX.replace("kind: Pod", "kind: Pod\nextra: 1"));
        assert!(e.starts_with("extra: unsupported field"), "{e}");
    }

    #[test]
    fn bad_values_and_documents() {
        assert!(err("apiVersion: v1\nkind: Pod\nmetadata: [").contains("malformed YAML"));
        assert!(err("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
            .starts_with("kind: Service is not supported"));
        let e = err(&NGINX.replace("containerPort: 80", "containerPort: eighty"));
        assert!(
            e.starts_with("spec.containers[0].ports[0].containerPort: invalid type"),
            "{e}"
        );
        let e = err(&NGINX.replace("    image: nginx:1.14.2\n", ""));
        assert!(
            e.starts_with("spec.containers[0]: missing field `image`"),
            "{e}"
        );
        assert!(
            err(&NGINX.replace("name: nginx\nspec", "name: Bad_Name\nspec"))
                .starts_with("metadata.name: invalid name")
        );
        assert!(err(&NGINX.replace("apiVersion: v1", "apiVersion: v2"))
            .starts_with("apiVersion: \"v2\" is not supported"));
        let two = format!("{NGINX}---\n{NGINX}");
        assert!(err(&two).contains("in the file twice"));
        let e = err(&format!(
            "{NGINX}    volumeMounts:\n    - {{name: nope, mountPath: /x}}\n"
        ));
        assert!(
            e.starts_with("spec.containers[0].volumeMounts[0].name: no volume"),
            "{e}"
        );
        let e = err(&format!(
            "{NGINX}  volumes:\n  - name: m\n    emptyDir: {{medium: Memory}}\n"
        ));
        assert!(e.starts_with("spec.volumes[0].emptyDir.medium"), "{e}");
        let e = err(&format!(
            "{NGINX}  volumes:\n  - name: s\n    hostPath: {{path: /x, type: Socket}}\n"
        ));
        assert!(e.starts_with("spec.volumes[0].hostPath.type"), "{e}");
        let d = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers: [{name: a, image: b}]\n";
        assert!(err(d).starts_with("spec.replicas: 3 replicas"));
        assert!(err("").contains("no Pod or Deployment"));
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_memory("128Mi", "m").unwrap(), 128 << 20);
        assert_eq!(parse_memory("1G", "m").unwrap(), 1_000_000_000);
        assert_eq!(parse_memory("1e6", "m").unwrap(), 1_000_000);
        assert_eq!(parse_memory("4096", "m").unwrap(), 4096);
        assert!(parse_memory("lots", "x.memory")
            .unwrap_err()
            .to_string()
            .starts_with("x.memory"));
        assert_eq!(parse_cpu("500m", "c").unwrap(), "0.5");
        assert_eq!(parse_cpu("2", "c").unwrap(), "2");
        assert!(parse_cpu("-1", "c").is_err());
        // A bare number in YAML is a quantity too.
        let p = parse(&format!(
            "{NGINX}    resources:\n      limits: {{cpu: 1, memory: 65536}}\n"
        ))
        .unwrap();
        assert_eq!(p[0].containers[0].cpus.as_deref(), Some("1"));
        assert_eq!(p[0].containers[0].memory, Some(65536));
    }
}
