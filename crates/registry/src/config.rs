//! Client settings: insecure registries, CA directories, auth file, retries, upload chunking.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// Default root of per-registry CA directories (`<root>/<host[:port]>/*.crt`).
pub const DEFAULT_CERTS_ROOT: &str = "/etc/containers/certs.d";

/// Settings of a [`crate::Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Registries (as written in references, `host[:port]`) whose TLS certificate is not verified, and
    /// that are spoken to over plain HTTP when they do not speak TLS (podman's `--tls-verify=false`).
    pub insecure_registries: HashSet<String>,
    /// Root of per-registry certificate directories (docker's `certs.d` layout): each
    /// `<root>/<registry>/*.crt` is trusted for that registry in addition to the system roots, and a
    /// `<name>.cert` + `<name>.key` pair there is presented as client certificate.
    pub certs_root: PathBuf,
    /// Whether to trust the system's root certificates.
    pub system_roots: bool,
    /// docker `config.json` / containers `auth.json` to read credentials from.
    pub auth_file: Option<PathBuf>,
    /// Retry policy for transient failures.
    pub retry: RetryPolicy,
    /// Bytes per PATCH in chunked blob uploads.
    pub chunk_size: usize,
    /// Timeout to connect.
    pub connect_timeout: Duration,
    /// Timeout of one read or write on a connection.
    pub io_timeout: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
    /// HTTP(S) proxies; the default reads the environment.
    pub proxy: ProxySettings,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: HashSet::new(),
            certs_root: PathBuf::from(DEFAULT_CERTS_ROOT),
            system_roots: true,
            auth_file: None,
            retry: RetryPolicy::default(),
            chunk_size: 8 << 20,
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(120),
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
            proxy: ProxySettings::from_env(),
        }
    }
}

impl ClientOptions {
    /// Marks a registry as insecure: certificate not verified, plain HTTP when it has no TLS.
    pub fn insecure(mut self, registry: &str) -> Self {
        self.insecure_registries.insert(registry.to_string());
        self
    }
}

/// Proxies for registry traffic. Loopback hosts never go through a proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// Proxy URL for `http://` requests.
    pub http: Option<String>,
    /// Proxy URL for `https://` requests.
    pub https: Option<String>,
    /// Hosts (`host`, `.domain`, `domain`, `*`) reached directly.
    pub no_proxy: Vec<String>,
}

impl ProxySettings {
    /// Reads `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` (either case).
    pub fn from_env() -> Self {
        let get = |n: &str| {
            std::env::var(n)
                .or_else(|_| std::env::var(n.to_ascii_lowercase()))
                .ok()
                .filter(|v| !v.trim().is_empty())
        };
        let all = get("ALL_PROXY");
        ProxySettings {
            http: get("HTTP_PROXY").or_else(|| all.clone()),
            https: get("HTTPS_PROXY").or(all),
            no_proxy: get("NO_PROXY")
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_ascii_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The proxy for a request with `scheme` to `host` (`host[:port]`), if any.
    pub fn for_host(&self, scheme: &str, host: &str) -> Option<&str> {
        let proxy = match scheme {
            "http" => self.http.as_deref(),
            _ => self.https.as_deref(),
        }?;
        let name = strip_port(host).to_ascii_lowercase();
        let loopback = name == "localhost"
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let excluded = self.no_proxy.iter().any(|n| {
            let n = strip_port(n).trim_start_matches('*');
            n.is_empty()
                || name == n.trim_start_matches('.')
                || (n.starts_with('.') && name.ends_with(n))
                || name.ends_with(&format!(".{n}"))
        });
        (!loopback && !excluded).then_some(proxy)
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// How transient failures (5xx, 429, connection errors, a body cut short) are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff; doubles each retry.
    pub initial_backoff: Duration,
    /// Upper bound of one backoff, also of a honoured `Retry-After`.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// Backoff before retry number `attempt` (0-based), or the server's `Retry-After` when given.
    pub fn backoff(&self, attempt: u32, retry_after: Option<u64>) -> Duration {
        let d = match retry_after {
            Some(s) => Duration::from_secs(s),
            None => self
                .initial_backoff
                .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX)),
        };
        d.min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_selection() {
        let p = ProxySettings {
            http: Some("http://proxy:3128".into()),
            https: Some("http://sproxy:3128".into()),
            no_proxy: vec![
                "internal.example".into(),
                ".corp".into(),
                "host:5000".into(),
            ],
        };
        assert_eq!(p.for_host("https", "quay.io"), Some("http://sproxy:3128"));
        assert_eq!(p.for_host("http", "quay.io:80"), Some("http://proxy:3128"));
        assert_eq!(p.for_host("https", "127.0.0.1:5000"), None);
        assert_eq!(p.for_host("https", "localhost:5000"), None);
        assert_eq!(p.for_host("https", "[::1]:5000"), None);
        assert_eq!(p.for_host("https", "internal.example"), None);
        assert_eq!(p.for_host("https", "reg.internal.example:443"), None);
        assert_eq!(p.for_host("https", "a.corp"), None);
        assert_eq!(p.for_host("https", "host:6000"), None);
        assert_eq!(
            p.for_host("https", "notinternal.example"),
            Some("http://sproxy:3128")
        );
        let all = ProxySettings {
            no_proxy: vec!["*".into()],
            ..p.clone()
        };
        assert_eq!(all.for_host("https", "quay.io"), None);
        assert_eq!(ProxySettings::default().for_host("https", "quay.io"), None);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(0, None), Duration::from_millis(100));
        assert_eq!(p.backoff(2, None), Duration::from_millis(400));
        assert_eq!(p.backoff(10, None), Duration::from_secs(1));
        assert_eq!(p.backoff(40, None), Duration::from_secs(1));
        assert_eq!(p.backoff(0, Some(3)), Duration::from_secs(1));
        assert_eq!(p.backoff(0, Some(0)), Duration::ZERO);
    }
}
