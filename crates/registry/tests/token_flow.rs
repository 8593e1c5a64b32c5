//! Bearer token flow, retries and mid-body resume against a small real HTTP server run by the test:
//! a registry endpoint that answers 401 with a `Bearer` challenge and a token endpoint that issues tokens.
//! At the end, the same flow against a real `docker-registry` with token auth, checking real JWTs
//! (ES256, `x5c` header) issued by berth-testkit's token server.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use berth_registry::{Client, Credentials, Digest, Error, Reference, Repository};
use common::{bytes, test_options, TokenServer};

#[derive(Default)]
struct Seen {
    token_queries: Vec<String>,
    token_auth: Vec<Option<String>>,
    blob_ranges: Vec<Option<String>>,
    blob_requests: u32,
    unauthenticated: u32,
    storage_auth: Vec<Option<String>>,
}

struct Fake {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    manifest: Vec<u8>,
    blob: Vec<u8>,
}

const GOOD_BASIC: &str = "Basic YWxpY2U6cHc="; // alice:pw

impl Fake {
    fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#.to_vec();
        let blob = bytes(200_000, 42);
        let (s, st, m, b) = (seen.clone(), stop.clone(), manifest.clone(), blob.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    handle(c, port, &s, &m, &b);
                }
            }
        });
        Fake {
            port,
            seen,
            stop,
            thread: Some(thread),
            manifest,
            blob,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn respond(c: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut h = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers.iter().any(|(k, _)| *k == "Content-Length") {
        h.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    h.push_str("\r\n");
    let _ = c.write_all(h.as_bytes());
    let _ = c.write_all(body);
    let _ = c.flush();
}

fn handle(mut c: TcpStream, port: u16, seen: &Mutex<Seen>, manifest: &[u8], blob: &[u8]) {
    let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut first = [0u8; 1];
    if c.peek(&mut first).is_ok() && first[0] == 0x16 {
        // A TLS hello on this plain-HTTP port: answer like Go's net/http does.
        let _ = c.write_all(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        );
        return;
    }
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let len: usize = header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    let _ = r.read_exact(&mut body);
    let auth = header("authorization");
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));

    if path == "/token" {
        let mut s = seen.lock().unwrap();
        s.token_queries.push(query.to_string());
        s.token_auth.push(auth.clone());
        let n = s.token_queries.len();
        drop(s);
        if auth.as_deref().is_some_and(|a| a != GOOD_BASIC) {
            return respond(
                &mut c,
                "401 Unauthorized",
                &[],
                b"{\"details\":\"bad credentials\"}",
            );
        }
        let tok = format!("{{\"token\":\"tok-{n}\",\"expires_in\":300}}");
        return respond(
            &mut c,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            tok.as_bytes(),
        );
    }
    if let Some(d) = path.strip_prefix("/storage/") {
        // Like a registry's redirect to object storage: must arrive without the registry's token.
        seen.lock().unwrap().storage_auth.push(auth.clone());
        let start = header("range")
            .and_then(|r| {
                r.trim_start_matches("bytes=")
                    .trim_end_matches('-')
                    .parse()
                    .ok()
            })
            .unwrap_or(0usize);
        if d == Digest::sha256_of(manifest).hex() {
            let status = if start > 0 {
                "206 Partial Content"
            } else {
                "200 OK"
            };
            let cr = format!("bytes {start}-{}/{}", manifest.len() - 1, manifest.len());
            return respond(&mut c, status, &[("Content-Range", cr)], &manifest[start..]);
        }
        return respond(&mut c, "404 Not Found", &[], b"");
    }
    if path.starts_with("/v2/private/")
        || !auth
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer tok-"))
    {
        seen.lock().unwrap().unauthenticated += 1;
        let scope = path
            .strip_prefix("/v2/")
            .and_then(|p| {
                p.split_once("/manifests/")
                    .or_else(|| p.split_once("/blobs/"))
            })
            .map(|(name, _)| format!(",scope=\"repository:{name}:pull\""))
            .unwrap_or_default();
        let mut ch = format!(
            "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake-registry\"{scope}"
        );
        if path.starts_with("/v2/private/") {
            // Like Docker Hub for a private or missing repository: the token never grants access.
            ch.push_str(",error=\"insufficient_scope\"");
        }
        return respond(
            &mut c,
            "401 Unauthorized",
            &[
                ("WWW-Authenticate", ch),
                ("Content-Type", "application/json".into()),
            ],
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
    }
    let digest = Digest::sha256_of(manifest).to_string();
    match path {
        "/v2/" => respond(&mut c, "200 OK", &[], b"{}"),
        "/v2/x/y/manifests/t" => respond(
            &mut c,
            "200 OK",
            &[
                (
                    "Content-Type",
                    "application/vnd.oci.image.manifest.v1+json".into(),
                ),
                ("Docker-Content-Digest", digest),
            ],
            if method == "HEAD" { b"" } else { manifest },
        ),
        "/v2/x/y/manifests/lying" => respond(
            &mut c,
            "200 OK",
            &[
                (
                    "Content-Type",
                    "application/vnd.oci.image.manifest.v1+json".into(),
                ),
                (
                    "Docker-Content-Digest",
                    Digest::sha256_of(b"other").to_string(),
                ),
            ],
            manifest,
        ),
        p if p == format!("/v2/x/y/blobs/{digest}") => respond(
            &mut c,
            "307 Temporary Redirect",
            &[(
                "Location",
                format!("http://127.0.0.1:{port}/storage/{}", &digest[7..]),
            )],
            b"",
        ),
        "/v2/x/limited/manifests/t" => respond(
            &mut c,
            "429 Too Many Requests",
            &[("Retry-After", "7".into())],
            b"",
        ),
        p if p == format!("/v2/x/y/blobs/{}", Digest::sha256_of(blob)) => {
            let range = header("range");
            let n = {
                let mut s = seen.lock().unwrap();
                s.blob_requests += 1;
                s.blob_ranges.push(range.clone());
                s.blob_requests
            };
            match (n, range) {
                (1, _) => respond(&mut c, "503 Service Unavailable", &[], b"busy"),
                (2, _) => {
                    // Announce the whole blob, send part of it, hang up.
                    let h = format!(
                        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                        blob.len()
                    );
                    let _ = c.write_all(h.as_bytes());
                    let _ = c.write_all(&blob[..blob.len() / 3]);
                    let _ = c.flush();
                }
                (_, Some(r)) => {
                    let start: usize = r
                        .trim_start_matches("bytes=")
                        .trim_end_matches('-')
                        .parse()
                        .unwrap();
                    respond(
                        &mut c,
                        "206 Partial Content",
                        &[(
                            "Content-Range",
                            format!("bytes {start}-{}/{}", blob.len() - 1, blob.len()),
                        )],
                        &blob[start..],
                    )
                }
                (_, None) => respond(&mut c, "200 OK", &[], blob),
            }
        }
        _ => respond(
            &mut c,
            "404 Not Found",
            &[],
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        ),
    }
}

#[test]
fn bearer_token_is_fetched_cached_and_used() {
    let fake = Fake::start();
    let c = Client::new(test_options().insecure(&fake.host()));
    let r = Reference::parse(&format!("{}/x/y:t", fake.host())).unwrap();
    let m = c.get_manifest(&r, &[]).unwrap();
    assert_eq!(m.bytes, fake.manifest);
    assert_eq!(m.digest, Digest::sha256_of(&fake.manifest));
    assert_eq!(m.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert!(c.head_manifest(&r, &[]).unwrap().is_some());
    let _ = c.get_manifest(&r, &[]).unwrap();
    assert_eq!(c.stats().tokens_fetched, 1, "token cached per scope");
    {
        let s = fake.seen.lock().unwrap();
        assert_eq!(s.token_queries.len(), 1);
        let q = &s.token_queries[0];
        assert!(q.contains("service=fake-registry"), "{q}");
        assert!(q.contains("scope=repository%3Ax%2Fy%3Apull"), "{q}");
        assert_eq!(s.token_auth[0], None, "anonymous token request");
        assert_eq!(
            s.unauthenticated, 1,
            "only the first request goes without a token"
        );
    }

    // A header digest that does not match the body is caught.
    let lying = Reference::parse(&format!("{}/x/y:lying", fake.host())).unwrap();
    let e = c.get_manifest(&lying, &[]).unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e:?}");

    // A missing tag behind auth is still a clear 404.
    let missing = Reference::parse(&format!("{}/x/y:gone", fake.host())).unwrap();
    let e = c.get_manifest(&missing, &[]).unwrap_err();
    assert!(matches!(e, Error::ManifestUnknown { .. }), "{e:?}");
}

#[test]
fn blob_survives_503_and_cut_connection_by_range_resume() {
    let fake = Fake::start();
    let c = Client::new(test_options().insecure(&fake.host()));
    let repo = Repository::new(&fake.host(), "x/y").unwrap();
    let d = Digest::sha256_of(&fake.blob);
    let mut out = Vec::new();
    let n = c.get_blob(&repo, &d, &mut out, None).unwrap();
    assert_eq!(n, fake.blob.len() as u64);
    assert_eq!(out, fake.blob);
    let s = fake.seen.lock().unwrap();
    assert_eq!(
        s.blob_requests, 3,
        "503, cut short, resumed: {:?}",
        s.blob_ranges
    );
    assert_eq!(s.blob_ranges[..2], [None, None]);
    assert_eq!(
        s.blob_ranges[2],
        Some(format!("bytes={}-", fake.blob.len() / 3))
    );
    assert_eq!(c.stats().retries, 2);
}

#[test]
fn rate_limit_reports_retry_after() {
    let fake = Fake::start();
    let c = Client::new(test_options().insecure(&fake.host()));
    let r = Reference::parse(&format!("{}/x/limited:t", fake.host())).unwrap();
    let e = c.get_manifest(&r, &[]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooManyRequests {
                retry_after: Some(7),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("retry after 7 s"), "{e}");
    assert_eq!(c.stats().retries, 2, "429 retried per policy");
}

#[test]
fn token_with_credentials_and_login() {
    let fake = Fake::start();
    let c = Client::new(test_options().insecure(&fake.host()));
    let e = c
        .login(&fake.host(), &Credentials::new("alice", "nope"), None)
        .unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    assert!(e.to_string().contains("rejected the credentials"), "{e}");

    c.login(&fake.host(), &Credentials::new("alice", "pw"), None)
        .unwrap();
    let r = Reference::parse(&format!("{}/x/y:t", fake.host())).unwrap();
    c.get_manifest(&r, &[]).unwrap();
    let s = fake.seen.lock().unwrap();
    let last = s.token_queries.len() - 1;
    assert!(
        s.token_queries[last].contains("account=alice"),
        "{:?}",
        s.token_queries
    );
    assert_eq!(s.token_auth[last].as_deref(), Some(GOOD_BASIC));
}

#[test]
fn blob_redirect_drops_the_token() {
    let fake = Fake::start();
    let c = Client::new(test_options().insecure(&fake.host()));
    let repo = Repository::new(&fake.host(), "x/y").unwrap();
    // The fake serves the manifest bytes as a blob behind a redirect to "/storage/".
    let d = Digest::sha256_of(&fake.manifest);
    let mut out = Vec::new();
    c.get_blob(&repo, &d, &mut out, None).unwrap();
    assert_eq!(out, fake.manifest);
    // Resuming through the redirect keeps the Range header.
    let mut prefix = &fake.manifest[..10];
    let mut rest = Vec::new();
    c.get_blob(&repo, &d, &mut rest, Some(&mut prefix)).unwrap();
    assert_eq!(rest, &fake.manifest[10..]);
    let s = fake.seen.lock().unwrap();
    assert_eq!(
        s.storage_auth,
        [None, None],
        "token must not follow the redirect"
    );
}

#[test]
fn client_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Client>();
}

#[test]
fn insufficient_scope_says_repository_missing_or_private() {
    let fake = Fake::start();
    let c = Client::new(test_options().insecure(&fake.host()));
    let r = Reference::parse(&format!("{}/private/app:1", fake.host())).unwrap();
    let e = c.get_manifest(&r, &[]).unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("does not exist or needs other credentials"),
        "{e}"
    );
    assert_eq!(c.stats().tokens_fetched, 1);
}

#[test]
fn real_registry_accepts_jwts_and_enforces_their_access() {
    let (ts, reg) = berth_testkit::token_registry("berth-registry-test");
    let host = reg.host();
    let alice = Client::new(test_options().insecure(&host));
    alice.set_credentials(&host, Credentials::new("alice", "alice-pw"));
    let repo = Repository::new(&host, "team/app").unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = bytes(70_000, 9);
    for data in [&config[..], &layer[..]] {
        alice
            .push_blob(
                &repo,
                &Digest::sha256_of(data),
                data.len() as u64,
                &mut &data[..],
                None,
            )
            .unwrap_or_else(|e| panic!("push as alice: {e}\n{}", reg.log()));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256_of(config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": Digest::sha256_of(&layer).to_string(), "size": layer.len()}],
    })
    .to_string();
    let r = Reference::parse(&format!("{host}/team/app:1")).unwrap();
    let pushed = alice
        .push_manifest(
            &r,
            manifest.as_bytes(),
            "application/vnd.oci.image.manifest.v1+json",
        )
        .unwrap();
    {
        let issued = ts.issued.lock().unwrap();
        assert!(
            issued.iter().any(|i| i.account.as_deref() == Some("alice")
                && i.access[0]["actions"] == serde_json::json!(["pull", "push"])),
            "{issued:?}"
        );
    }

    // bob may pull (his token grants pull only) ...
    let bob = Client::new(test_options().insecure(&host));
    bob.set_credentials(&host, Credentials::new("bob", "bob-pw"));
    let m = bob.get_manifest(&r, &[]).unwrap();
    assert_eq!(m.digest, pushed);
    let mut body = Vec::new();
    bob.get_blob(&repo, &Digest::sha256_of(&layer), &mut body, None)
        .unwrap();
    assert_eq!(body, layer);
    // ... but not push.
    let other = bytes(1000, 10);
    let e = bob
        .push_blob(
            &repo,
            &Digest::sha256_of(&other),
            other.len() as u64,
            &mut &other[..],
            None,
        )
        .unwrap_err();
    let msg = e.to_string();
    eprintln!("error shown to the user: {msg}");
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    assert!(msg.contains("push"), "{msg}");

    // Anonymous: the token server grants nothing, the registry refuses.
    let anon = Client::new(test_options().insecure(&host));
    let e = anon.get_manifest(&r, &[]).unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    // Wrong password: the token server refuses.
    let mallory = Client::new(test_options().insecure(&host));
    mallory.set_credentials(&host, Credentials::new("alice", "guess"));
    let e = mallory.get_manifest(&r, &[]).unwrap_err();
    assert!(e.to_string().contains("rejected the credentials"), "{e}");

    // The registry really checks the JWT: a token minted by this server works, the same claims
    // signed by another key (another server's certificate) do not.
    let status = |token: &str| -> u16 {
        match ureq::get(&format!("http://{host}/v2/team/app/manifests/1"))
            .set("Accept", "application/vnd.oci.image.manifest.v1+json")
            .set("Authorization", &format!("Bearer {token}"))
            .call()
        {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("GET the manifest: {e}"),
        }
    };
    let good = ts.token("alice", &[("team/app", &["pull"])]);
    assert_eq!(status(&good), 200);
    let forger = TokenServer::start("berth-registry-test", "berth-test-issuer", vec![]);
    let forged = forger.token("alice", &[("team/app", &["pull"])]);
    assert_eq!(status(&forged), 401, "a token signed by an untrusted key");
}
