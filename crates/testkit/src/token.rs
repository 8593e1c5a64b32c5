//! A token server for registries with token auth (`auth: token:` in distribution's config):
//! answers `GET /token?service=..&scope=..` with a real JWT (ES256) whose header carries the
//! signing certificate as an `x5c` chain, as distribution 2.8 checks it against its
//! `rootcertbundle`. The key and the self-signed certificate are made with openssl.
//!
//! Users are checked with HTTP basic auth; a user gets, for every requested scope, the
//! requested actions it is allowed ([`User::actions`]). Anonymous requests get a token with no
//! access at all, as Docker's token servers do.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::registry::TokenAuth;
use crate::{require_tool, run};

/// An account of the token server.
#[derive(Clone)]
pub struct User {
    /// User name.
    pub name: String,
    /// Password.
    pub password: String,
    /// Actions granted on every repository (`pull`, `push`, ...).
    pub actions: Vec<String>,
}

impl User {
    /// `name`/`password` allowed `actions`.
    pub fn new(name: &str, password: &str, actions: &[&str]) -> User {
        User {
            name: name.into(),
            password: password.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// One token request, as seen and answered.
#[derive(Debug, Clone)]
pub struct Issued {
    /// `account` from the basic auth (none: anonymous).
    pub account: Option<String>,
    /// The `scope` parameters asked for.
    pub scopes: Vec<String>,
    /// The `access` claim granted.
    pub access: Value,
}

struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The certificate, DER, base64 (standard alphabet, as `x5c` wants).
    x5c: String,
    issuer: String,
    service: String,
}

impl Signer {
    /// A signed JWT for `sub` (empty: anonymous) with `access` (a JSON array).
    fn jwt(&self, sub: &str, access: Value, lifetime: Duration) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).expect("random jti");
        let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [self.x5c]});
        let claims = json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": self.service,
            "exp": now + lifetime.as_secs(),
            "nbf": now.saturating_sub(10),
            "iat": now,
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .expect("signing a token");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// A running token server on 127.0.0.1; stopped on drop.
pub struct TokenServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    signer: Arc<Signer>,
    /// Every request answered, in order.
    pub issued: Arc<Mutex<Vec<Issued>>>,
    dir: tempfile::TempDir,
}

impl TokenServer {
    /// Make a key and a self-signed certificate, and serve tokens for `users` on behalf of
    /// `service`, signed as `issuer`.
    pub fn start(service: &str, issuer: &str, users: Vec<User>) -> TokenServer {
        require_tool("openssl");
        let dir = tempfile::tempdir().expect("creating the token server's temp dir");
        let key_pem = dir.path().join("key.pem");
        let cert_pem = dir.path().join("cert.pem");
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=berth test token issuer",
            ])
            .arg("-keyout")
            .arg(&key_pem)
            .arg("-out")
            .arg(&cert_pem));
        let pkcs8 = dir.path().join("key.p8.der");
        run(Command::new("openssl")
            .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
            .arg(&key_pem)
            .arg("-out")
            .arg(&pkcs8));
        let cert_der = dir.path().join("cert.der");
        run(Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert_pem)
            .arg("-out")
            .arg(&cert_der));
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &std::fs::read(&pkcs8).expect("reading the PKCS#8 key"),
            &rng,
        )
        .expect("loading the P-256 key");
        let signer = Arc::new(Signer {
            key,
            rng,
            x5c: STANDARD.encode(std::fs::read(&cert_der).expect("reading the DER certificate")),
            issuer: issuer.into(),
            service: service.into(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the token server");
        let port = listener.local_addr().expect("token server address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(Mutex::new(Vec::new()));
        let (st, sg, is) = (stop.clone(), signer.clone(), issued.clone());
        let users = Arc::new(users);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = conn else { continue };
                let (sg, is, users) = (sg.clone(), is.clone(), users.clone());
                std::thread::spawn(move || handle(c, &sg, &users, &is));
            }
        });
        TokenServer {
            port,
            stop,
            thread: Some(thread),
            signer,
            issued,
            dir,
        }
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The signing certificate (PEM): the registry's `rootcertbundle`.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The registry settings that trust this server.
    pub fn auth(&self) -> TokenAuth {
        TokenAuth {
            realm: self.realm(),
            service: self.signer.service.clone(),
            issuer: self.signer.issuer.clone(),
            rootcertbundle: self.cert(),
        }
    }

    /// A token minted directly (not over HTTP) for `sub` with `access`
    /// (`[(repository, [actions])]`).
    pub fn token(&self, sub: &str, access: &[(&str, &[&str])]) -> String {
        let access: Vec<Value> = access
            .iter()
            .map(|(name, actions)| json!({"type": "repository", "name": name, "actions": actions}))
            .collect();
        self.signer
            .jwt(sub, Value::Array(access), Duration::from_secs(300))
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn respond(c: &mut TcpStream, status: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = c.write_all(head.as_bytes());
    let _ = c.write_all(body);
    let _ = c.flush();
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `repository:NAME:a,b` -> (`repository`, `NAME`, [`a`, `b`]).
fn parse_scope(s: &str) -> Option<(&str, &str, Vec<&str>)> {
    let (kind, rest) = s.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some((
        kind,
        name,
        actions.split(',').filter(|a| !a.is_empty()).collect(),
    ))
}

fn handle(mut c: TcpStream, signer: &Signer, users: &[User], issued: &Mutex<Vec<Issued>>) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(clone) = c.try_clone() else { return };
    let mut r = BufReader::new(clone);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut auth = None;
    let mut len = 0usize;
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" => auth = Some(v.trim().to_string()),
                "content-length" => len = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; len.min(1 << 20)];
    let _ = r.read_exact(&mut body);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if path != "/token" {
        return respond(&mut c, "404 Not Found", b"{}");
    }
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .collect();
    let service_ok = params
        .iter()
        .any(|(k, v)| k == "service" && *v == signer.service);
    if !service_ok {
        return respond(
            &mut c,
            "400 Bad Request",
            br#"{"details":"unknown service"}"#,
        );
    }
    let user = match auth.as_deref().and_then(|a| a.strip_prefix("Basic ")) {
        None => None,
        Some(b64) => {
            let decoded = STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok());
            let found = decoded
                .as_deref()
                .and_then(|d| d.split_once(':'))
                .and_then(|(u, p)| users.iter().find(|x| x.name == u && x.password == p));
            match found {
                Some(u) => Some(u),
                None => {
                    return respond(
                        &mut c,
                        "401 Unauthorized",
                        br#"{"details":"incorrect username or password"}"#,
                    )
                }
            }
        }
    };
    let access: Vec<Value> = scopes
        .iter()
        .filter_map(|s| parse_scope(s))
        .filter(|(kind, _, _)| *kind == "repository")
        .map(|(kind, name, want)| {
            let granted: Vec<&str> = match user {
                Some(u) => want
                    .into_iter()
                    .filter(|a| u.actions.iter().any(|x| x == a || x == "*"))
                    .collect(),
                None => Vec::new(),
            };
            json!({"type": kind, "name": name, "actions": granted})
        })
        .collect();
    let access = Value::Array(access);
    issued
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Issued {
            account: user.map(|u| u.name.clone()),
            scopes,
            access: access.clone(),
        });
    let token = signer.jwt(
        user.map_or("", |u| u.name.as_str()),
        access,
        Duration::from_secs(300),
    );
    let body = json!({"token": token, "access_token": token, "expires_in": 300});
    respond(&mut c, "200 OK", body.to_string().as_bytes());
}

/// A real docker-registry with `auth: token:` trusting a token server for `service`: alice may
/// pull and push, bob only pull.
pub fn token_registry(service: &str) -> (TokenServer, crate::Registry) {
    let ts = TokenServer::start(
        service,
        "berth-test-issuer",
        vec![
            User::new("alice", "alice-pw", &["pull", "push"]),
            User::new("bob", "bob-pw", &["pull"]),
        ],
    );
    let reg = crate::Registry::start_with(&crate::RegistryConfig {
        token: Some(ts.auth()),
        ..crate::RegistryConfig::default()
    });
    (ts, reg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_query_decoding() {
        assert_eq!(
            percent_decode("repository%3Ax%2Fy%3Apull%2Cpush"),
            "repository:x/y:pull,push"
        );
        assert_eq!(percent_decode("a+b%"), "a b%");
        assert_eq!(
            parse_scope("repository:x/y:pull,push"),
            Some(("repository", "x/y", vec!["pull", "push"]))
        );
        assert_eq!(
            parse_scope("repository:127.0.0.1:5000/x:pull"),
            Some(("repository", "127.0.0.1:5000/x", vec!["pull"]))
        );
        assert_eq!(parse_scope("nonsense"), None);
    }
}
