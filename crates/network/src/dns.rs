//! A small DNS server for a user network, as aardvark-dns is for podman's: it listens on the
//! network's gateway address (UDP port 53), answers A queries for the names of the network's
//! containers from a hosts-like file the engine keeps (`ADDRESS NAME...` per line, re-read when
//! it changes), and forwards every other query, unchanged, to the host's resolvers.
//!
//! Names are answered bare (`web`) and under the network's search domain (`web.dns.berth`); a
//! name under that domain that is not a container is NXDOMAIN, never forwarded. A known name
//! asked for another type (AAAA, ...) gets an empty answer (NODATA), so resolvers do not go on
//! to ask the world. Queries to forward each get a thread (at most [`MAX_FORWARDS`] at a time)
//! so that a slow resolver never holds up the local answers.

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::{Error, Result};

/// The search domain of Berth's networks.
pub const DOMAIN: &str = "dns.berth";
/// TTL of local answers (containers come and go).
pub const TTL: u32 = 60;
/// Forwarded queries in flight at most.
pub const MAX_FORWARDS: usize = 64;
/// How long one upstream resolver is waited for.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const RCODE_NOERROR: u8 = 0;
const RCODE_FORMERR: u8 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;

/// The names of a network's containers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Hosts {
    names: HashMap<String, Vec<Ipv4Addr>>,
}

impl Hosts {
    /// Parses `ADDRESS NAME [NAME...]` lines (`#` comments, blank lines skipped; names are
    /// case-insensitive; lines with an address that is not IPv4 are skipped).
    pub fn parse(text: &str) -> Hosts {
        let mut names: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut f = line.split_whitespace();
            let Some(Ok(ip)) = f.next().map(str::parse::<Ipv4Addr>) else {
                continue;
            };
            for n in f {
                let e = names.entry(n.to_ascii_lowercase()).or_default();
                if !e.contains(&ip) {
                    e.push(ip);
                }
            }
        }
        Hosts { names }
    }

    /// The addresses of a name (bare, or under `domain`); Err(true) when it is under `domain`
    /// and unknown, Err(false) when it is not ours to answer.
    pub fn lookup(&self, name: &str, domain: &str) -> Result<&[Ipv4Addr], bool> {
        let n = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(ips) = self.names.get(&n) {
            return Ok(ips);
        }
        let d = domain.trim_matches('.').to_ascii_lowercase();
        if n == d {
            return Err(true);
        }
        match n.strip_suffix(&d).and_then(|h| h.strip_suffix('.')) {
            Some(h) => self.names.get(h).map(Vec::as_slice).ok_or(true),
            None => Err(false),
        }
    }
}

/// A question of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question ends in the message.
    end: usize,
}

/// Reads the first question of a query.
pub fn parse_query(msg: &[u8]) -> Result<Question> {
    if msg.len() < 12 {
        return Err(Error::Dns("message shorter than its header".into()));
    }
    if msg[2] & 0x80 != 0 {
        return Err(Error::Dns("not a query".into()));
    }
    if u16::from_be_bytes([msg[4], msg[5]]) == 0 {
        return Err(Error::Dns("no question".into()));
    }
    let mut pos = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = *msg
            .get(pos)
            .ok_or_else(|| Error::Dns("truncated name".into()))? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return Err(Error::Dns("compressed name in a question".into()));
        }
        let label = msg
            .get(pos..pos + len)
            .ok_or_else(|| Error::Dns("truncated label".into()))?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        pos += len;
        if pos > 12 + 255 {
            return Err(Error::Dns("name too long".into()));
        }
    }
    let tail = msg
        .get(pos..pos + 4)
        .ok_or_else(|| Error::Dns("truncated question".into()))?;
    Ok(Question {
        name: labels.join("."),
        qtype: u16::from_be_bytes([tail[0], tail[1]]),
        qclass: u16::from_be_bytes([tail[2], tail[3]]),
        end: pos + 4,
    })
}

/// A response to `query` (its id, opcode and RD flag, its first question) with `rcode` and A
/// records for `answers`.
pub fn response(query: &[u8], q: &Question, rcode: u8, answers: &[Ipv4Addr]) -> Vec<u8> {
    let mut r = Vec::with_capacity(q.end + answers.len() * 16);
    r.extend_from_slice(&query[0..2]);
    // QR, the query's opcode, AA, the query's RD; RA; rcode.
    r.push(0x80 | (query[2] & 0x78) | 0x04 | (query[2] & 0x01));
    r.push(0x80 | (rcode & 0x0f));
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&query[12..q.end]);
    for ip in answers {
        r.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        r.extend_from_slice(&TYPE_A.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&4u16.to_be_bytes());
        r.extend_from_slice(&ip.octets());
    }
    r
}

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this answer.
    Answer(Vec<u8>),
    /// Not ours: forward it to the host's resolvers.
    Forward,
    /// Malformed: no answer.
    Drop,
}

/// Decides the answer to one query.
pub fn answer(query: &[u8], hosts: &Hosts, domain: &str) -> Action {
    let q = match parse_query(query) {
        Ok(q) => q,
        Err(_) if query.len() >= 12 && query[2] & 0x80 == 0 => {
            // A header we can echo: tell the client what is wrong.
            let mut r = query[..12].to_vec();
            r[2] = 0x80 | (query[2] & 0x79);
            r[3] = 0x80 | RCODE_FORMERR;
            r[4..12].fill(0);
            return Action::Answer(r);
        }
        Err(_) => return Action::Drop,
    };
    if q.qclass != CLASS_IN {
        return Action::Forward;
    }
    match hosts.lookup(&q.name, domain) {
        Ok(ips) if q.qtype == TYPE_A => Action::Answer(response(query, &q, RCODE_NOERROR, ips)),
        Ok(_) => Action::Answer(response(query, &q, RCODE_NOERROR, &[])),
        Err(true) => Action::Answer(response(query, &q, RCODE_NXDOMAIN, &[])),
        Err(false) => Action::Forward,
    }
}

/// The resolvers of a resolv.conf (the server runs in the host's namespace, so
/// loopback ones work too): `nameserver` lines, port 53.
pub fn resolvers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("nameserver")).then(|| f.next())?
        })
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address and port to listen on (the network's gateway, port 53).
    pub listen: SocketAddr,
    /// The hosts-like file of the network's containers.
    pub hosts: PathBuf,
    /// Where to forward the rest.
    pub upstream: Vec<SocketAddr>,
    /// The search domain answered locally.
    pub domain: String,
}

/// The hosts file, re-read when it changes (size, modification time, inode).
struct HostsFile {
    path: PathBuf,
    stamp: Option<(u64, SystemTime, u64)>,
    hosts: Hosts,
}

impl HostsFile {
    fn refresh(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(&self.path).ok();
        let stamp = md.map(|m| {
            (
                m.len(),
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                m.ino(),
            )
        });
        if stamp != self.stamp {
            self.hosts = Hosts::parse(&std::fs::read_to_string(&self.path).unwrap_or_default());
            self.stamp = stamp;
        }
    }
}

fn forward(query: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for up in upstream {
        let local: SocketAddr = if up.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(s) = UdpSocket::bind(local) else {
            continue;
        };
        if s.set_read_timeout(Some(UPSTREAM_TIMEOUT)).is_err() || s.connect(up).is_err() {
            continue;
        }
        if s.send(query).is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = s.recv(&mut buf) {
            // The answer to this query (same id), not a stray datagram.
            if n >= 12 && buf[0..2] == query[0..2] {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let q = parse_query(query).ok()?;
    Some(response(query, &q, RCODE_SERVFAIL, &[]))
}

/// Binds the socket (so that the caller can report readiness), then serves forever.
pub fn serve(cfg: &ServerConfig, ready: Option<std::fs::File>) -> Result<()> {
    let sock = UdpSocket::bind(cfg.listen)
        .map_err(|e| Error::io(format!("listening on {}", cfg.listen), e))?;
    if let Some(mut f) = ready {
        let _ = writeln!(f, "{}", std::process::id());
    }
    let sock = Arc::new(sock);
    let mut hosts = HostsFile {
        path: cfg.hosts.clone(),
        stamp: None,
        hosts: Hosts::default(),
    };
    let in_flight = Arc::new(AtomicUsize::new(0));
    let upstream: Arc<[SocketAddr]> = cfg.upstream.clone().into();
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("receiving a query", e)),
        };
        let query = &buf[..n];
        hosts.refresh();
        match answer(query, &hosts.hosts, &cfg.domain) {
            Action::Answer(r) => {
                let _ = sock.send_to(&r, peer);
            }
            Action::Drop => {}
            Action::Forward => {
                if upstream.is_empty() || in_flight.load(Ordering::Relaxed) >= MAX_FORWARDS {
                    if let Some(r) = servfail(query) {
                        let _ = sock.send_to(&r, peer);
                    }
                    continue;
                }
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (sock, count, upstream) = (sock.clone(), in_flight.clone(), upstream.clone());
                let query = query.to_vec();
                let spawned = std::thread::Builder::new().spawn(move || {
                    let r = forward(&query, &upstream).or_else(|| servfail(&query));
                    if let Some(r) = r {
                        let _ = sock.send_to(&r, peer);
                    }
                    count.fetch_sub(1, Ordering::Relaxed);
                });
                if spawned.is_err() {
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Writes a hosts file atomically (a temp file renamed over it), so the server never reads half.
pub fn write_hosts(path: &Path, entries: &[(Ipv4Addr, Vec<String>)]) -> Result<()> {
    let mut text = String::new();
    for (ip, names) in entries {
        text.push_str(&format!("{ip} {}\n", names.join(" ")));
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("renaming {} into place", tmp.display()), e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name.split('.').filter(|l| !l.is_empty()) {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    fn hosts() -> Hosts {
        Hosts::parse("# containers\n10.89.0.2 web abcdef123456\n10.89.0.3 db\nfd00::1 v6only\n\n")
    }

    #[test]
    fn names_are_found_bare_and_in_the_domain() {
        let h = hosts();
        let ip: Ipv4Addr = "10.89.0.2".parse().unwrap();
        assert_eq!(h.lookup("web", DOMAIN), Ok(&[ip][..]));
        assert_eq!(h.lookup("WEB.dns.berth.", DOMAIN), Ok(&[ip][..]));
        assert_eq!(h.lookup("abcdef123456", DOMAIN), Ok(&[ip][..]));
        assert_eq!(h.lookup("nope.dns.berth", DOMAIN), Err(true));
        assert_eq!(h.lookup("dns.berth", DOMAIN), Err(true));
        assert_eq!(h.lookup("example.org", DOMAIN), Err(false));
        assert_eq!(h.lookup("v6only", DOMAIN), Err(false));
    }

    #[test]
    fn a_queries_get_a_records() {
        let q = query(0x1234, "db.dns.berth", TYPE_A);
        let Action::Answer(r) = answer(&q, &hosts(), DOMAIN) else {
            panic!("no answer")
        };
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(r[2] & 0x80, 0x80, "a response");
        assert_eq!(r[2] & 0x01, 0x01, "RD copied");
        assert_eq!(r[3] & 0x0f, RCODE_NOERROR);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[r.len() - 4..], &[10, 89, 0, 3]);
        assert_eq!(&r[12..q.len()], &q[12..], "the question echoed");
    }

    #[test]
    fn other_types_unknown_names_and_the_rest() {
        let h = hosts();
        let Action::Answer(r) = answer(&query(1, "web", 28), &h, DOMAIN) else {
            panic!()
        };
        assert_eq!((r[3] & 0x0f, r[7]), (RCODE_NOERROR, 0), "AAAA: no data");
        let Action::Answer(r) = answer(&query(2, "gone.dns.berth", TYPE_A), &h, DOMAIN) else {
            panic!()
        };
        assert_eq!(r[3] & 0x0f, RCODE_NXDOMAIN);
        assert_eq!(
            answer(&query(3, "example.org", TYPE_A), &h, DOMAIN),
            Action::Forward
        );
        assert_eq!(answer(&[1, 2, 3], &h, DOMAIN), Action::Drop);
        let mut bad = query(4, "web", TYPE_A);
        bad.truncate(14);
        let Action::Answer(r) = answer(&bad, &h, DOMAIN) else {
            panic!()
        };
        assert_eq!(r[3] & 0x0f, RCODE_FORMERR);
    }

    #[test]
    fn resolvers_of_resolv_conf() {
        let r = resolvers("search x\nnameserver 10.0.0.1\nnameserver ::1\n# nameserver 1.1.1.1\noptions ndots:1\n");
        assert_eq!(
            r,
            vec![
                "10.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn a_local_server_answers_and_rereads_its_file() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("hosts");
        write_hosts(&file, &[("10.89.0.7".parse().unwrap(), vec!["one".into()])]).unwrap();
        // Find a free port on loopback, then serve there.
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            hosts: file.clone(),
            upstream: vec![],
            domain: DOMAIN.into(),
        };
        std::thread::spawn(move || serve(&cfg, None));
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let ask = |name: &str| -> Option<Vec<u8>> {
            for _ in 0..25 {
                c.send_to(&query(9, name, TYPE_A), ("127.0.0.1", port))
                    .unwrap();
                let mut b = [0u8; 512];
                if let Ok(n) = c.recv(&mut b) {
                    return Some(b[..n].to_vec());
                }
            }
            None
        };
        let r = ask("one").expect("an answer");
        assert_eq!(&r[r.len() - 4..], &[10, 89, 0, 7]);
        write_hosts(&file, &[("10.89.0.8".parse().unwrap(), vec!["two".into()])]).unwrap();
        let r = ask("two.dns.berth").expect("an answer");
        assert_eq!(&r[r.len() - 4..], &[10, 89, 0, 8]);
        // No upstream: a name that is not ours fails at once, it is not sent anywhere.
        let r = ask("example.org").expect("an answer");
        assert_eq!(r[3] & 0x0f, RCODE_SERVFAIL);
    }
}
