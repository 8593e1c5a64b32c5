//! The registry client: request plumbing (TLS, proxies, auth, retries, error mapping), login, tag lists.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rustls_pki_types::CertificateDer;

use crate::auth::{parse_token_response, AuthFile, Challenge, Credentials, Token};
use crate::config::ClientOptions;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::{api_host, Reference, Repository};
use crate::tls;

/// What an error response is about, to pick the clearest error.
#[derive(Clone, Copy)]
pub(crate) enum Subject<'a> {
    Manifest(&'a Reference),
    Blob(&'a Repository, &'a Digest),
    Repo(&'a Repository),
    Registry(&'a str),
}

impl Subject<'_> {
    fn registry(&self) -> &str {
        match self {
            Subject::Manifest(r) => r.registry(),
            Subject::Blob(r, _) | Subject::Repo(r) => &r.registry,
            Subject::Registry(r) => r,
        }
    }
}

/// One HTTP request to a registry.
pub(crate) struct Req<'a> {
    pub method: &'static str,
    pub registry: &'a str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<&'a [u8]>,
    /// Token scopes (`repository:<name>:pull`) this request needs.
    pub scopes: Vec<String>,
}

#[derive(Default)]
struct State {
    insecure: HashSet<String>,
    agents: HashMap<(String, &'static str, bool), ureq::Agent>,
    /// Scheme found for insecure registries (`https` without verification, or `http`).
    schemes: HashMap<String, &'static str>,
    challenges: HashMap<String, Challenge>,
    tokens: HashMap<(String, String), Token>,
    creds: HashMap<String, Credentials>,
    roots: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// Counters of what the client did, for callers and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// HTTP requests sent to registries (retries and auth round trips included).
    pub requests: u64,
    /// Requests repeated after a transient failure.
    pub retries: u64,
    /// Tokens fetched from token servers.
    pub tokens_fetched: u64,
    /// Blobs pushed by cross-repository mount.
    pub mounts: u64,
    /// Blobs pushed by upload.
    pub uploads: u64,
}

/// A blocking client for OCI distribution registries.
pub struct Client {
    pub(crate) opts: ClientOptions,
    state: Mutex<State>,
    stats: Mutex<Stats>,
}

impl Client {
    /// A client with the given options.
    pub fn new(opts: ClientOptions) -> Self {
        let state = State {
            insecure: opts.insecure_registries.clone(),
            ..State::default()
        };
        Client {
            opts,
            state: Mutex::new(state),
            stats: Mutex::new(Stats::default()),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn bump(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// What the client has done so far.
    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Like podman's `--tls-verify`: `false` stops verifying `registry`'s certificate and falls back to
    /// plain HTTP when it does not speak TLS; `true` goes back to verified HTTPS.
    pub fn set_tls_verify(&self, registry: &str, verify: bool) {
        let mut st = self.state();
        st.schemes.remove(registry);
        if verify {
            st.insecure.remove(registry);
        } else {
            st.insecure.insert(registry.to_string());
        }
    }

    /// Uses these credentials for `registry` (over those in the auth file) for this client's life.
    pub fn set_credentials(&self, registry: &str, creds: Credentials) {
        let mut st = self.state();
        st.creds.insert(registry.to_string(), creds);
        st.tokens.retain(|(r, _), _| r != registry);
    }

    fn insecure(&self, registry: &str) -> bool {
        self.state().insecure.contains(registry)
    }

    /// `scheme://api-host` for a registry. An insecure registry is probed once: HTTPS (unverified) when
    /// it answers over TLS, plain HTTP when the TLS handshake fails.
    pub(crate) fn base_url(&self, registry: &str) -> Result<String> {
        let host = api_host(registry);
        if !self.insecure(registry) {
            return Ok(format!("https://{host}"));
        }
        if let Some(s) = self.state().schemes.get(registry) {
            return Ok(format!("{s}://{host}"));
        }
        let agent = self.agent(host, "https", false)?;
        self.bump(|s| s.requests += 1);
        let scheme = match agent.get(&format!("https://{host}/v2/")).call() {
            Ok(_) | Err(ureq::Error::Status(..)) => Some("https"),
            // A plain-HTTP server answers a TLS hello with garbage (or hangs up).
            Err(ureq::Error::Transport(t))
                if tls::tls_cause(&t).is_some() || t.kind() == ureq::ErrorKind::Io =>
            {
                Some("http")
            }
            // Unreachable: decide on a later call; the real request reports the error.
            Err(ureq::Error::Transport(_)) => None,
        };
        match scheme {
            Some(s) => {
                self.state().schemes.insert(registry.to_string(), s);
                Ok(format!("{s}://{host}"))
            }
            None => Ok(format!("http://{host}")),
        }
    }

    fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        if let Some(c) = self.state().creds.get(registry) {
            return Ok(Some(c.clone()));
        }
        match &self.opts.auth_file {
            Some(p) => Ok(AuthFile::load(p)?.get(registry)),
            None => Ok(None),
        }
    }

    /// The agent for `scheme://host[:port]`: TLS roots = system + `<certs_root>/<host>/*.crt`, or no
    /// verification at all when `verify` is false; proxy per [`crate::config::ProxySettings`].
    fn agent(&self, host: &str, scheme: &'static str, verify: bool) -> Result<ureq::Agent> {
        let key = (host.to_string(), scheme, verify);
        if let Some(a) = self.state().agents.get(&key) {
            return Ok(a.clone());
        }
        let client = tls::registry_client_cert(&self.opts.certs_root, host)?;
        let cfg = if verify {
            let cached = self.state().roots.clone();
            let roots = match cached {
                Some(r) => r,
                None => {
                    let r = Arc::new(if self.opts.system_roots {
                        tls::system_roots()
                    } else {
                        Vec::new()
                    });
                    self.state().roots = Some(r.clone());
                    r
                }
            };
            let extra = tls::registry_cas(&self.opts.certs_root, host)?;
            tls::client_config(&roots, extra, client)?
        } else {
            tls::no_verify_config(client)?
        };
        let mut b = ureq::AgentBuilder::new()
            .tls_config(cfg)
            .timeout_connect(self.opts.connect_timeout)
            .timeout_read(self.opts.io_timeout)
            .timeout_write(self.opts.io_timeout)
            .user_agent(&self.opts.user_agent);
        if let Some(p) = self.opts.proxy.for_host(scheme, host) {
            let proxy =
                ureq::Proxy::new(p).map_err(|e| Error::Config(format!("bad proxy {p:?}: {e}")))?;
            b = b.proxy(proxy);
        }
        let agent = b.build();
        self.state().agents.insert(key, agent.clone());
        Ok(agent)
    }

    /// Sends a request: handles the auth challenge (Basic or Bearer token, cached per scope) and
    /// retries transient failures with backoff. Returns the final response whatever its status.
    pub(crate) fn send(&self, req: &Req<'_>) -> Result<ureq::Response> {
        let url = url::Url::parse(&req.url)
            .map_err(|e| Error::Config(format!("bad URL {}: {e}", req.url)))?;
        let host = host_port(&url);
        let scheme = if url.scheme() == "http" {
            "http"
        } else {
            "https"
        };
        let agent = self.agent(&host, scheme, !self.insecure(req.registry))?;
        // POST and PATCH change upload state: retry them only when the request surely was not processed.
        let idempotent = !matches!(req.method, "POST" | "PATCH");
        let mut auth_retried = false;
        let mut attempt = 0u32;
        loop {
            let auth = self.auth_header(req.registry, &req.scopes)?;
            let mut r = agent.request(req.method, &req.url);
            for (k, v) in &req.headers {
                r = r.set(k, v);
            }
            if let Some(a) = &auth {
                r = r.set("Authorization", a);
            }
            self.bump(|s| s.requests += 1);
            let result = match req.body {
                Some(b) => r.send_bytes(b),
                None => r.call(),
            };
            let resp = match result {
                Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
                Err(ureq::Error::Transport(t)) => {
                    let not_sent = matches!(
                        t.kind(),
                        ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns
                    );
                    let err = transport_error(req.registry, &host, &self.opts.certs_root, t);
                    if matches!(err, Error::Unreachable { .. })
                        && (idempotent || not_sent)
                        && attempt < self.opts.retry.max_retries
                    {
                        std::thread::sleep(self.opts.retry.backoff(attempt, None));
                        attempt += 1;
                        self.bump(|s| s.retries += 1);
                        continue;
                    }
                    return Err(err);
                }
            };
            let status = resp.status();
            if status == 401 && !auth_retried {
                if let Some(ch) = resp.header("www-authenticate").and_then(Challenge::parse) {
                    auth_retried = true;
                    let mut st = self.state();
                    st.tokens.retain(|(r, _), _| r != req.registry);
                    st.challenges.insert(req.registry.to_string(), ch);
                    continue;
                }
            }
            let transient = status == 429 || (status >= 500 && idempotent);
            if transient && attempt < self.opts.retry.max_retries {
                let ra = retry_after(&resp);
                std::thread::sleep(self.opts.retry.backoff(attempt, ra));
                attempt += 1;
                self.bump(|s| s.retries += 1);
                continue;
            }
            return Ok(resp);
        }
    }

    /// `Authorization` value for a request, fetching a bearer token when the registry wants one.
    fn auth_header(&self, registry: &str, scopes: &[String]) -> Result<Option<String>> {
        let challenge = self.state().challenges.get(registry).cloned();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credentials(registry)?.map(|c| c.basic_header())),
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scopes: Vec<String> = if scopes.is_empty() {
                    scope.into_iter().collect()
                } else {
                    scopes.to_vec()
                };
                let key = (registry.to_string(), scopes.join(" "));
                if let Some(t) = self.state().tokens.get(&key) {
                    if t.expires > Instant::now() {
                        return Ok(Some(format!("Bearer {}", t.value)));
                    }
                }
                let token = self.fetch_token(registry, &realm, service.as_deref(), &scopes)?;
                let value = format!("Bearer {}", token.value);
                self.state().tokens.insert(key, token);
                Ok(Some(value))
            }
        }
    }

    fn fetch_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<Token> {
        let mut url = url::Url::parse(realm).map_err(|e| Error::Protocol {
            registry: registry.to_string(),
            detail: format!("token realm {realm:?} is not a URL: {e}"),
        })?;
        let creds = self.credentials(registry)?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
            if let Some(c) = &creds {
                q.append_pair("account", &c.username);
            }
        }
        let host = host_port(&url);
        let scheme = if url.scheme() == "http" {
            "http"
        } else {
            "https"
        };
        let verify = !(self.insecure(registry) && host == api_host(registry));
        let agent = self.agent(&host, scheme, verify)?;
        let mut r = agent.request_url("GET", &url);
        if let Some(c) = &creds {
            r = r.set("Authorization", &c.basic_header());
        }
        self.bump(|s| {
            s.requests += 1;
            s.tokens_fetched += 1
        });
        let resp = match r.call() {
            Ok(resp) => resp,
            Err(ureq::Error::Status(401, _)) => return Err(Error::Unauthorized {
                registry: registry.to_string(),
                detail: match creds {
                    Some(_) => {
                        "the token server rejected the credentials (wrong user name or password?)"
                            .into()
                    }
                    None => "anonymous access refused by the token server; log in first".into(),
                },
            }),
            Err(ureq::Error::Status(code, resp)) => {
                return Err(Error::Http {
                    method: "GET".into(),
                    url: url.to_string(),
                    status: code,
                    detail: format!("token request failed: {}", error_detail(resp)),
                })
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(transport_error(registry, &host, &self.opts.certs_root, t))
            }
        };
        let body = read_limited(resp, 1 << 20).map_err(|e| Error::Unreachable {
            registry: registry.to_string(),
            detail: format!("reading token response: {e}"),
        })?;
        parse_token_response(&body).ok_or_else(|| Error::Protocol {
            registry: registry.to_string(),
            detail: "token response holds no token".into(),
        })
    }

    /// Turns a failed response into the clearest error for what was asked.
    pub(crate) fn error_from(
        &self,
        method: &str,
        url: &str,
        resp: ureq::Response,
        subj: Subject<'_>,
    ) -> Error {
        let status = resp.status();
        let registry = subj.registry().to_string();
        let ra = retry_after(&resp);
        let challenge = resp.header("www-authenticate").map(str::to_string);
        let insufficient_scope = challenge
            .as_deref()
            .is_some_and(|h| h.contains("insufficient_scope"));
        // The scope the registry wanted, e.g. `repository:team/app:pull,push` for an upload.
        let wanted_push = challenge
            .as_deref()
            .and_then(crate::auth::Challenge::parse)
            .and_then(|c| match c {
                crate::auth::Challenge::Bearer { scope, .. } => scope,
                crate::auth::Challenge::Basic => None,
            })
            .and_then(|s| {
                s.split(' ')
                    .filter_map(|one| one.rsplit_once(':'))
                    .find(|(_, actions)| actions.split(',').any(|a| a == "push"))
                    .map(|(name, _)| name.trim_start_matches("repository:").to_string())
            });
        let (code, message) = registry_error(resp);
        let detail = match (&code, &message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (None, Some(m)) => m.clone(),
            (Some(c), None) => c.clone(),
            (None, None) => format!("HTTP {status}"),
        };
        match status {
            401 => {
                let has_creds = self.credentials(&registry).ok().flatten().is_some();
                Error::Unauthorized {
                    detail: if let (true, Some(repo)) = (insufficient_scope, &wanted_push) {
                        format!("push access to {repo} denied: the credentials do not grant push, or the repository does not exist ({detail})")
                    } else if insufficient_scope {
                        format!("access denied: the repository does not exist or needs other credentials ({detail})")
                    } else if has_creds {
                        format!("invalid user name or password ({detail})")
                    } else {
                        format!("no credentials for this registry; log in first ({detail})")
                    },
                    registry,
                }
            }
            403 => Error::Denied { registry, detail },
            404 => match (code.as_deref(), subj) {
                (Some("NAME_UNKNOWN"), Subject::Manifest(r)) => Error::NameUnknown {
                    registry,
                    repository: r.repository().to_string(),
                },
                (_, Subject::Manifest(r)) => Error::ManifestUnknown {
                    registry,
                    reference: match r.digest() {
                        Some(d) => format!("{}@{d}", r.repository()),
                        None => format!("{}:{}", r.repository(), r.manifest_ref()),
                    },
                },
                (_, Subject::Blob(r, d)) => Error::BlobUnknown {
                    registry,
                    repository: r.name.clone(),
                    digest: d.to_string(),
                },
                (_, Subject::Repo(r)) => Error::NameUnknown {
                    registry,
                    repository: r.name.clone(),
                },
                _ => Error::Http {
                    method: method.to_string(),
                    url: url.to_string(),
                    status,
                    detail,
                },
            },
            429 => Error::TooManyRequests {
                registry,
                retry_after: ra,
            },
            _ => Error::Http {
                method: method.to_string(),
                url: url.to_string(),
                status,
                detail,
            },
        }
    }

    /// Checks that the registry answers `/v2/` (authenticating if it asks to).
    pub fn ping(&self, registry: &str) -> Result<()> {
        let url = format!("{}/v2/", self.base_url(registry)?);
        let req = Req {
            method: "GET",
            registry,
            url: url.clone(),
            headers: vec![],
            body: None,
            scopes: vec![],
        };
        let resp = self.send(&req)?;
        if resp.status() == 200 {
            return Ok(());
        }
        Err(self.error_from("GET", &url, resp, Subject::Registry(registry)))
    }

    /// Verifies `creds` against the registry's `/v2/` and, when `auth_file` is given, stores them there.
    /// On success the client also uses them from now on.
    pub fn login(
        &self,
        registry: &str,
        creds: &Credentials,
        auth_file: Option<&Path>,
    ) -> Result<()> {
        let previous = {
            let mut st = self.state();
            st.tokens.retain(|(r, _), _| r != registry);
            st.challenges.remove(registry);
            st.creds.insert(registry.to_string(), creds.clone())
        };
        let result = self.ping(registry);
        if let Err(e) = result {
            let mut st = self.state();
            match previous {
                Some(p) => st.creds.insert(registry.to_string(), p),
                None => st.creds.remove(registry),
            };
            st.tokens.retain(|(r, _), _| r != registry);
            return Err(match e {
                Error::Unauthorized { registry, detail } => Error::Unauthorized {
                    registry,
                    detail: format!("login failed: {detail}"),
                },
                e => e,
            });
        }
        if let Some(p) = auth_file {
            let mut f = AuthFile::load(p)?;
            f.set(registry, creds);
            f.save(p)?;
        }
        Ok(())
    }

    /// Forgets credentials for `registry` in this client and, when given, in the auth file.
    /// Tells whether the file held any.
    pub fn logout(&self, registry: &str, auth_file: Option<&Path>) -> Result<bool> {
        {
            let mut st = self.state();
            st.creds.remove(registry);
            st.tokens.retain(|(r, _), _| r != registry);
        }
        match auth_file {
            Some(p) => crate::auth::logout(p, registry),
            None => Ok(false),
        }
    }

    /// Lists a repository's tags, following `Link` pagination.
    pub fn list_tags(&self, repo: &Repository) -> Result<Vec<String>> {
        let base = self.base_url(&repo.registry)?;
        let mut url = format!("{base}/v2/{}/tags/list?n=1000", repo.name);
        let mut tags = Vec::new();
        for _ in 0..10_000 {
            let req = Req {
                method: "GET",
                registry: &repo.registry,
                url: url.clone(),
                headers: vec![("Accept", "application/json".into())],
                body: None,
                scopes: vec![pull_scope(&repo.name)],
            };
            let resp = self.send(&req)?;
            if resp.status() != 200 {
                return Err(self.error_from("GET", &url, resp, Subject::Repo(repo)));
            }
            let next = resp.header("link").and_then(link_next).map(str::to_string);
            let body = read_limited(resp, 16 << 20).map_err(|e| Error::Unreachable {
                registry: repo.registry.clone(),
                detail: format!("reading tag list: {e}"),
            })?;
            let v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| Error::Protocol {
                    registry: repo.registry.clone(),
                    detail: format!("tag list is not JSON: {e}"),
                })?;
            if let Some(list) = v["tags"].as_array() {
                tags.extend(list.iter().filter_map(|t| t.as_str().map(str::to_string)));
            }
            match next {
                Some(n) => {
                    let resolved = url::Url::parse(&url)
                        .and_then(|u| u.join(&n))
                        .map_err(|e| Error::Protocol {
                            registry: repo.registry.clone(),
                            detail: format!("bad Link header {n:?}: {e}"),
                        })?;
                    url = resolved.to_string();
                }
                None => return Ok(tags),
            }
        }
        Err(Error::Protocol {
            registry: repo.registry.clone(),
            detail: "tag list pagination does not end".into(),
        })
    }
}

/// Scope for pulling from a repository.
pub(crate) fn pull_scope(name: &str) -> String {
    format!("repository:{name}:pull")
}

pub(crate) fn host_port(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// The target of a `Link: <url>; rel="next"` header.
fn link_next(h: &str) -> Option<&str> {
    h.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .contains("rel=\"next\"")
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

fn retry_after(resp: &ureq::Response) -> Option<u64> {
    resp.header("retry-after")
        .and_then(|v| v.trim().parse().ok())
}

pub(crate) fn read_limited(resp: ureq::Response, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    resp.into_reader().take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "response larger than {limit} bytes"
        )));
    }
    Ok(out)
}

/// `(code, message)` of the first entry of a registry's `{"errors": [...]}` body.
fn registry_error(resp: ureq::Response) -> (Option<String>, Option<String>) {
    let Ok(body) = read_limited(resp, 64 << 10) else {
        return (None, None);
    };
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            let t = String::from_utf8_lossy(&body).trim().to_string();
            return (None, (!t.is_empty()).then(|| t.chars().take(200).collect()));
        }
    };
    let first = &v["errors"][0];
    (
        first["code"].as_str().map(str::to_string),
        first["message"].as_str().map(str::to_string),
    )
}

fn error_detail(resp: ureq::Response) -> String {
    let status = resp.status();
    match registry_error(resp) {
        (_, Some(m)) => m,
        (Some(c), None) => c,
        _ => format!("HTTP {status}"),
    }
}

fn transport_error(registry: &str, host: &str, certs_root: &Path, t: ureq::Transport) -> Error {
    if let Some(cause) = tls::tls_cause(&t) {
        return Error::Tls {
            registry: registry.to_string(),
            detail: cause.to_string(),
            hint: tls::tls_hint(&cause, &certs_root.join(host)),
        };
    }
    let cause = std::error::Error::source(&t)
        .map(|s| s.to_string())
        .or_else(|| t.message().map(str::to_string))
        .unwrap_or_default();
    match t.kind() {
        ureq::ErrorKind::Dns => Error::Unreachable {
            registry: registry.to_string(),
            detail: format!("cannot resolve host {host}: {cause}"),
        },
        ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Io => Error::Unreachable {
            registry: registry.to_string(),
            detail: format!("connection to {host} failed: {cause}"),
        },
        _ => Error::Protocol {
            registry: registry.to_string(),
            detail: t.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header() {
        assert_eq!(
            link_next(r#"</v2/x/tags/list?last=b&n=2>; rel="next""#),
            Some("/v2/x/tags/list?last=b&n=2")
        );
        assert_eq!(link_next(r#"</a>; rel="prev""#), None);
        assert_eq!(link_next("garbage"), None);
    }
}
