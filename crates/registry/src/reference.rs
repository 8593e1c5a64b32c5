//! Image references, normalised the way docker does.
//!
//! `alpine` becomes `docker.io/library/alpine:latest`; a first path component that contains `.` or `:`,
//! is `localhost`, or has an uppercase letter names a registry host; otherwise the host is `docker.io`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The default registry of unqualified names.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves docker.io's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

/// A fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// A repository on a registry (`registry` + `name`), the unit blob operations address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    /// Registry host as written in references (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// Repository path (`library/alpine`).
    pub name: String,
}

impl Repository {
    /// Builds and validates a repository.
    pub fn new(registry: &str, name: &str) -> Result<Self> {
        let text = format!("{registry}/{name}");
        let bad = |reason: String| Error::InvalidReference {
            reference: text.clone(),
            reason,
        };
        validate_host(registry).map_err(bad)?;
        validate_path(name).map_err(bad)?;
        Ok(Repository {
            registry: registry.to_string(),
            name: name.to_string(),
        })
    }

    /// Host and port to send API requests to.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.name)
    }
}

/// Host to send API requests to for a registry name (`docker.io` -> `registry-1.docker.io`).
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

impl Reference {
    /// Parses and normalises an image reference.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidReference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty reference"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace or control characters"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let digest = Digest::parse(d).map_err(|e| bad(&e.to_string()))?;
                (r, Some(digest))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(c) if last_slash.map_or(true, |sl| c > sl) => (&rest[..c], Some(&rest[c + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(|r| bad(&r))?;
        }
        if name.is_empty() {
            return Err(bad("empty repository name"));
        }
        let (registry, path) = split_domain(name);
        validate_host(&registry).map_err(|r| bad(&r))?;
        validate_path(&path).map_err(|r| bad(&r))?;
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository: path,
            tag,
            digest,
        })
    }

    /// Builds a reference from its parts (at least one of tag and digest).
    pub fn new(repo: &Repository, tag: Option<&str>, digest: Option<Digest>) -> Result<Self> {
        if let Some(t) = tag {
            validate_tag(t).map_err(|reason| Error::InvalidReference {
                reference: format!("{repo}:{t}"),
                reason,
            })?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(Error::InvalidReference {
                reference: repo.to_string(),
                reason: "needs a tag or a digest".into(),
            });
        }
        Ok(Reference {
            registry: repo.registry.clone(),
            repository: repo.name.clone(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// Registry host as written (`docker.io`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Host to send API requests to (`registry-1.docker.io` for docker.io).
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// Repository path (`library/alpine`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The repository this reference points into.
    pub fn repo(&self) -> Repository {
        Repository {
            registry: self.registry.clone(),
            name: self.repository.clone(),
        }
    }

    /// Tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// Digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to put after `/manifests/`: the digest when there is one, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse(s)
    }
}

fn split_domain(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            let host = if first == "index.docker.io" {
                DOCKER_HUB
            } else {
                first
            };
            let path = if host == DOCKER_HUB && !rest.contains('/') {
                format!("library/{rest}")
            } else {
                rest.to_string()
            };
            (host.to_string(), path)
        }
        Some(_) => (DOCKER_HUB.to_string(), name.to_string()),
        None => (DOCKER_HUB.to_string(), format!("library/{name}")),
    }
}

fn validate_tag(t: &str) -> std::result::Result<(), String> {
    let mut chars = t.chars();
    match chars.next() {
        None => return Err("empty tag".into()),
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => {}
        Some(_) => return Err(format!("tag {t:?} must start with a letter, digit or '_'")),
    }
    if t.len() > MAX_TAG {
        return Err(format!("tag longer than {MAX_TAG} characters"));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(format!("tag {t:?} may only contain [A-Za-z0-9_.-]"));
    }
    Ok(())
}

fn validate_host(h: &str) -> std::result::Result<(), String> {
    if h.is_empty() {
        return Err("empty registry host".into());
    }
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("registry host {h:?}: unclosed '['"))?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("registry host {h:?}: bad IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            p => (None, p.strip_prefix(':').map(Some).unwrap_or(Some(""))),
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(h), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err(format!("registry host {h:?}: bad port"));
        }
    }
    if let Some(host) = host {
        for label in host.split('.') {
            let ok = !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!("registry host {h:?} is not a valid host name"));
            }
        }
    }
    Ok(())
}

fn validate_path(p: &str) -> std::result::Result<(), String> {
    if p.is_empty() {
        return Err("empty repository name".into());
    }
    if p.len() > MAX_NAME {
        return Err(format!("repository name longer than {MAX_NAME} characters"));
    }
    for comp in p.split('/') {
        validate_component(comp)?;
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn validate_component(c: &str) -> std::result::Result<(), String> {
    let err = |why: &str| Err(format!("repository path component {c:?} {why}"));
    if c.is_empty() {
        return err("is empty");
    }
    if c.chars().any(|ch| ch.is_ascii_uppercase()) {
        return err("must be lowercase");
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return err("must start and end with a lowercase letter or digit");
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return err("has an invalid separator (allowed: '.', '_', '__', '-')");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3.19", "docker.io/library/alpine:3.19"),
            ("user/app:1", "docker.io/user/app:1"),
            ("docker.io/alpine", "docker.io/library/alpine:latest"),
            ("index.docker.io/alpine", "docker.io/library/alpine:latest"),
            ("index.docker.io/user/app", "docker.io/user/app:latest"),
            (
                "docker.io/library/alpine",
                "docker.io/library/alpine:latest",
            ),
            ("localhost/x", "localhost/x:latest"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost:5000/x:y", "localhost:5000/x:y"),
            ("quay.io/ns/app:v1.2_3-rc", "quay.io/ns/app:v1.2_3-rc"),
            ("host/ns/app", "docker.io/host/ns/app:latest"),
            ("host.tld/ns/sub/app", "host.tld/ns/sub/app:latest"),
            (
                "127.0.0.1:5000/test/busybox:1",
                "127.0.0.1:5000/test/busybox:1",
            ),
            ("[::1]:5000/x", "[::1]:5000/x:latest"),
            ("a/b__c/d-e/f--g", "docker.io/a/b__c/d-e/f--g:latest"),
        ];
        for (i, o) in cases {
            assert_eq!(norm(i), o, "input {i}");
        }
    }

    #[test]
    fn digests_and_tags() {
        let r = Reference::parse(&format!("host.tld/ns/app@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), D);
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.to_string(), format!("host.tld/ns/app@{D}"));

        let r = Reference::parse(&format!("alpine:3@{D}")).unwrap();
        assert_eq!(r.tag(), Some("3"));
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/alpine:3@{D}"));

        let r = Reference::parse("localhost:5000/x").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "x");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.api_host(), "localhost:5000");
    }

    #[test]
    fn docker_hub_api_host() {
        let r = Reference::parse("alpine").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.repository(), "library/alpine");
        assert_eq!(r.name(), "docker.io/library/alpine");
        assert_eq!(r.repo().api_host(), "registry-1.docker.io");
    }

    #[test]
    fn uppercase_first_component_is_a_host() {
        let r = Reference::parse("Myhost/app").unwrap();
        assert_eq!(r.registry(), "Myhost");
        assert_eq!(r.repository(), "app");
    }

    #[test]
    fn rejects_invalid() {
        let long = "a".repeat(256);
        let long_tag = format!("x:{}", "t".repeat(129));
        let cases: Vec<String> = vec![
            "".into(),
            "Alpine".into(),
            "user/App".into(),
            "alpine:".into(),
            "alpine:-x".into(),
            "alpine:a/b".into(),
            "alpine@sha256:abc".into(),
            "alpine@md5:d41d8cd98f00b204e9800998ecf8427e".into(),
            format!("alpine@{}", D.to_uppercase()),
            "alpine@".into(),
            "/alpine".into(),
            "alpine/".into(),
            "a//b".into(),
            "-a".into(),
            "a-".into(),
            "a..b".into(),
            "a___b".into(),
            "a b".into(),
            "host:port/x".into(),
            "host:99999/x".into(),
            "ho_st.io/x".into(),
            ":tag".into(),
            "@sha256:e3b0".into(),
            long,
            long_tag,
            "[::1/x".into(),
        ];
        for c in cases {
            let e = Reference::parse(&c);
            assert!(e.is_err(), "{c:?} should be rejected, got {e:?}");
            let msg = e.unwrap_err().to_string();
            assert!(msg.contains("invalid image reference"), "{msg}");
        }
    }

    #[test]
    fn tag_limits() {
        assert!(Reference::parse(&format!("x:{}", "t".repeat(128))).is_ok());
        assert!(Reference::parse("x:_under").is_ok());
        assert!(Reference::parse("x:V1.0").is_ok());
    }

    #[test]
    fn repository_new() {
        let r = Repository::new("localhost:5000", "test/busybox").unwrap();
        assert_eq!(r.to_string(), "localhost:5000/test/busybox");
        assert!(Repository::new("localhost:5000", "Test").is_err());
        assert!(Repository::new("", "x").is_err());
        let rf = Reference::new(&r, Some("1"), None).unwrap();
        assert_eq!(rf.to_string(), "localhost:5000/test/busybox:1");
        assert!(Reference::new(&r, None, None).is_err());
    }
}
