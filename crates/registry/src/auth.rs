//! Credentials, auth files (`config.json` / `auth.json`), and `WWW-Authenticate` challenges.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A user name and password (or identity token used as password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// New credentials.
    pub fn new(username: &str, password: &str) -> Self {
        Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }
    }

    /// `Authorization` header value for Basic auth.
    pub fn basic_header(&self) -> String {
        format!("Basic {}", self.encode())
    }

    fn encode(&self) -> String {
        B64.encode(format!("{}:{}", self.username, self.password))
    }

    fn decode(auth: &str) -> Option<Self> {
        let raw = B64.decode(auth.trim()).ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        Some(Credentials::new(u, p))
    }
}

/// The auth file that podman/skopeo/docker would use: `$REGISTRY_AUTH_FILE`, else
/// `$XDG_RUNTIME_DIR/containers/auth.json`, else `$HOME/.docker/config.json`.
pub fn default_auth_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return Some(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        return Some(Path::new(&d).join("containers/auth.json"));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker/config.json"))
}

/// A docker `config.json` / containers `auth.json`: `{"auths": {"host": {"auth": base64(user:pass)}}}`.
/// Keys other than `auths.<host>.auth` are kept untouched on save.
#[derive(Debug, Clone, Default)]
pub struct AuthFile {
    root: Map<String, Value>,
}

/// Keys under which docker stores docker.io credentials.
const HUB_KEYS: [&str; 4] = [
    "docker.io",
    "https://index.docker.io/v1/",
    "index.docker.io",
    "registry-1.docker.io",
];

fn keys_for(registry: &str) -> Vec<String> {
    if HUB_KEYS.contains(&registry) {
        return HUB_KEYS.iter().map(|s| s.to_string()).collect();
    }
    vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ]
}

impl AuthFile {
    /// Loads a file; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<Self> {
        let err = |detail: String| Error::AuthFile {
            path: path.display().to_string(),
            detail,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(err(e.to_string())),
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(root)) => {
                if root.get("auths").is_some_and(|a| !a.is_object()) {
                    return Err(err("\"auths\" is not an object".into()));
                }
                Ok(AuthFile { root })
            }
            Ok(_) => Err(err("not a JSON object".into())),
            Err(e) => Err(err(format!("invalid JSON: {e}"))),
        }
    }

    /// Credentials stored for a registry (`host[:port]`, docker.io aliases understood).
    pub fn get(&self, registry: &str) -> Option<Credentials> {
        let auths = self.root.get("auths")?.as_object()?;
        for k in keys_for(registry) {
            if let Some(entry) = auths.get(&k).and_then(Value::as_object) {
                if let Some(c) = entry
                    .get("auth")
                    .and_then(Value::as_str)
                    .and_then(Credentials::decode)
                {
                    return Some(c);
                }
                if let (Some(u), Some(p)) = (
                    entry.get("username").and_then(Value::as_str),
                    entry.get("password").and_then(Value::as_str),
                ) {
                    return Some(Credentials::new(u, p));
                }
            }
        }
        None
    }

    /// Stores credentials for a registry.
    pub fn set(&mut self, registry: &str, creds: &Credentials) {
        let auths = self
            .root
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Value::Object(m) = auths {
            let mut entry = Map::new();
            entry.insert("auth".into(), Value::String(creds.encode()));
            m.insert(registry.to_string(), Value::Object(entry));
        }
    }

    /// Removes a registry's credentials (all aliases); tells whether any were there.
    pub fn remove(&mut self, registry: &str) -> bool {
        let Some(Value::Object(m)) = self.root.get_mut("auths") else {
            return false;
        };
        let mut any = false;
        for k in keys_for(registry) {
            any |= m.remove(&k).is_some();
        }
        any
    }

    /// Writes the file atomically with mode 0600, creating its directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        let ctx = |what: &str| format!("auth file {}: {what}", path.display());
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(ctx("create directory"), e))?;
            }
        }
        let text =
            serde_json::to_string_pretty(&Value::Object(self.root.clone())).map_err(|e| {
                Error::AuthFile {
                    path: path.display().to_string(),
                    detail: e.to_string(),
                }
            })?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(ctx("create"), e))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.write_all(b"\n"))
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(ctx("write"), e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(ctx("rename"), e))
    }
}

/// Removes stored credentials for `registry` from the auth file at `path`; tells whether any were there.
pub fn logout(path: &Path, registry: &str) -> Result<bool> {
    let mut f = AuthFile::load(path)?;
    let removed = f.remove(registry);
    if removed {
        f.save(path)?;
    }
    Ok(removed)
}

/// Authentication scheme asked for by a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="..."`.
    Basic,
    /// `Bearer realm="...",service="...",scope="..."`.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter, if given.
        service: Option<String>,
        /// `scope` parameter, if given.
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses a `WWW-Authenticate` header value; `None` for an unknown scheme or a Bearer without realm.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = match header.find(char::is_whitespace) {
            Some(i) => (&header[..i], &header[i..]),
            None => (header, ""),
        };
        let params = parse_params(rest);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            }),
            _ => None,
        }
    }
}

/// Parses `k="v", k2=v2` (quoted values may hold commas and `\"`).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == ',' || b[i].is_whitespace()) {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != '=' && b[i] != ',' {
            i += 1;
        }
        let key = b[ks..i]
            .iter()
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if i >= b.len() || b[i] != '=' {
            continue;
        }
        i += 1;
        let mut val = String::new();
        if i < b.len() && b[i] == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' && i + 1 < b.len() {
                    i += 1;
                }
                val.push(b[i]);
                i += 1;
            }
            i += 1;
        } else {
            while i < b.len() && b[i] != ',' {
                val.push(b[i]);
                i += 1;
            }
            val = val.trim().to_string();
        }
        if !key.is_empty() {
            out.insert(key, val);
        }
    }
    out
}

/// A bearer token and when it stops being usable.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub value: String,
    pub expires: Instant,
}

/// Parses a token endpoint's JSON answer (`token` or `access_token`, `expires_in`).
pub(crate) fn parse_token_response(body: &[u8]) -> Option<Token> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let value = v
        .get("token")
        .or_else(|| v.get("access_token"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())?
        .to_string();
    // Spec: default lifetime 60 s; keep a margin so a token does not expire in flight.
    let secs = v
        .get("expires_in")
        .and_then(Value::as_u64)
        .unwrap_or(60)
        .max(60);
    Some(Token {
        value,
        expires: Instant::now() + Duration::from_secs(secs - 10),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            }
        );
        let c = Challenge::parse(r#"bearer  realm=http://x/t , error="invalid_token""#).unwrap();
        assert!(
            matches!(c, Challenge::Bearer { realm, service: None, .. } if realm == "http://x/t")
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(Challenge::parse(""), None);
    }

    #[test]
    fn token_response() {
        let t = parse_token_response(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(t.value, "abc");
        let t = parse_token_response(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!(t.value, "xyz");
        assert!(parse_token_response(br#"{"token":""}"#).is_none());
        assert!(parse_token_response(b"nope").is_none());
    }

    #[test]
    fn auth_file_roundtrip_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/auth.json");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}},"credsStore":"x"}"#,
        )
        .unwrap();
        let mut f = AuthFile::load(&p).unwrap();
        assert_eq!(f.get("docker.io"), Some(Credentials::new("u", "p")));
        assert_eq!(f.get("quay.io"), None);
        f.set("localhost:5000", &Credentials::new("me", "s:e:cret"));
        f.save(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let g = AuthFile::load(&p).unwrap();
        assert_eq!(
            g.get("localhost:5000"),
            Some(Credentials::new("me", "s:e:cret"))
        );
        let raw: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(raw["credsStore"], "x");
        assert!(logout(&p, "docker.io").unwrap());
        assert!(!logout(&p, "docker.io").unwrap());
        assert_eq!(AuthFile::load(&p).unwrap().get("docker.io"), None);
        assert!(AuthFile::load(&p).unwrap().get("localhost:5000").is_some());
    }

    #[test]
    fn auth_file_errors_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = AuthFile::load(&dir.path().join("none.json")).unwrap();
        assert_eq!(missing.get("x"), None);
        let p = dir.path().join("bad.json");
        std::fs::write(&p, "{nope").unwrap();
        let e = AuthFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("invalid JSON"), "{e}");
        std::fs::write(&p, r#"{"auths": 3}"#).unwrap();
        assert!(AuthFile::load(&p).is_err());
    }

    #[test]
    fn credentials_debug_hides_password() {
        let c = Credentials::new("u", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.basic_header(), "Basic dTpodW50ZXIy");
    }
}
