//! A container's network: the flags (`--network`, `-p`, `-P`, `--dns`, `--add-host`, `--ip`),
//! checked into [`NetSettings`]; at start, [`setup`] gives it its place (a persistent network
//! namespace joined by path, or the host's, or another container's), and [`teardown`] takes
//! everything back at clean-up, rm, or a failed start. The kernel work is `berth-network`'s.
//!
//! On a bridge network, under a host-wide lock (bridges, the nftables table and host ports are
//! shared by every Berth store on the host):
//! 1. the address and the published ports are taken in the database (one immediate
//!    transaction; `UNIQUE (network, address)`), host ports checked free by binding them;
//! 2. the network's bridge is made if it is not up (with its firewall rules);
//! 3. `<runroot>/netns/<id>` is made (a new namespace bind-mounted there, loopback up);
//! 4. a veth pair: `veth<id>` on the bridge, `eth0` in the namespace with the address and the
//!    default route via the gateway;
//! 5. the published ports' DNAT;
//! 6. on a network with DNS, the network's hosts file is rewritten and its DNS server started
//!    if it is not running.
//!
//! A failure at any step runs the teardown, which is driven by what is recorded (rows, the
//! namespace file, the veth name derived from the id) and skips what is not there, so nothing
//! half-made stays. The DNS server goes with the network's last container; the bridge and its
//! rules stay while the network exists ([`remove_kernel_side`] at `network rm`): deleting a
//! bridge costs the kernel 40-75 ms, which each `run --rm` would pay otherwise.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use berth_network::bridge::{self, BridgeConfig, Endpoint};
use berth_network::firewall::nftables::Nftables;
use berth_network::firewall::{Firewall, NetworkRules, PortForward, Protocol};
use berth_network::{dns, netlink::Netlink, netns};
use nix::fcntl::{Flock, FlockArg};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::record::{self, Container};
use super::settings::{self, CreateArgs, Settings};
use super::Paths;
use crate::networks::{self, Network};
use crate::store::Store;

/// The host-wide lock taken around every change of bridges, firewall rules and published ports.
pub const HOST_LOCK: &str = "/run/lock/berth-network.lock";

/// A published port as asked (`host_port` 0: any free port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// The network flags besides the mode (which is `Settings::network`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSettings {
    /// `-p`, one entry per port, and with `-P` the image's exposed ports (to free host ports).
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// `--dns` servers.
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// `--add-host NAME:IP` (IP may be `host-gateway`).
    #[serde(default)]
    pub add_hosts: Vec<(String, String)>,
    /// `--ip`.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
}

/// A container's network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode<'a> {
    None,
    Host,
    /// Another container's namespace (its full id once created).
    Container(&'a str),
    /// A bridge network by name (`bridge`: the default one).
    Bridge(&'a str),
}

/// The mode of a `Settings::network` value.
pub fn mode(network: &str) -> Mode<'_> {
    match network {
        "none" => Mode::None,
        "host" => Mode::Host,
        n => match n.strip_prefix("container:") {
            Some(c) => Mode::Container(c),
            None => Mode::Bridge(n),
        },
    }
}

fn parse_range(s: &str, spec: &str) -> Result<(u16, u16)> {
    let num = |x: &str| -> Result<u16> {
        x.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| anyhow!("invalid port {spec:?}: {x:?} is not a port number"))
    };
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(s)?, num(s)?),
    };
    if a > b {
        bail!("invalid port {spec:?}: the range {s} is reversed");
    }
    Ok((a, b))
}

/// `-p [IP:][HOST:]CONTAINER[/PROTO]` (ranges `A-B` on both sides, of the same length), one
/// entry per port.
pub fn parse_publish(s: &str) -> Result<Vec<PortSpec>> {
    settings::check_publish(s)?;
    let (spec, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let protocol =
        Protocol::parse(proto).ok_or_else(|| anyhow!("invalid port {s:?}: unknown protocol"))?;
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (ctr, host, ip) = match parts.as_slice() {
        [c] => (*c, "", ""),
        [c, h] => (*c, *h, ""),
        [c, h, ip] => (*c, *h, *ip),
        _ => bail!("invalid port {s:?}"),
    };
    let host_ip = match ip.trim_matches(|c| c == '[' || c == ']') {
        "" | "0.0.0.0" => None,
        "::" => None,
        a => match a.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => Some(v4),
            Ok(IpAddr::V6(_)) => bail!("invalid port {s:?}: IPv6 host addresses are not supported"),
            Err(_) => bail!("invalid port {s:?}: {a:?} is not an IP address"),
        },
    };
    let (c0, c1) = parse_range(ctr, s)?;
    let hosts = if host.is_empty() {
        None
    } else {
        Some(parse_range(host, s)?)
    };
    if let Some((h0, h1)) = hosts {
        if h1 - h0 != c1 - c0 {
            bail!("invalid port {s:?}: the host and container ranges differ in length");
        }
    }
    Ok((c0..=c1)
        .enumerate()
        .map(|(i, c)| PortSpec {
            host_ip,
            host_port: hosts.map_or(0, |(h0, _)| h0 + i as u16),
            container_port: c,
            protocol,
        })
        .collect())
}

/// The network part of `create`/`run`'s flags: the mode (default: the default bridge network,
/// as docker's) and the rest.
pub fn settings_of(
    a: &CreateArgs,
    ic: &berth_image::formats::RunConfig,
) -> Result<(String, NetSettings)> {
    let network = match a.network.as_deref() {
        None | Some("default") => networks::DEFAULT_NETWORK.to_string(),
        Some("container:") => bail!("invalid --network container:: give a container"),
        Some("") => bail!("invalid --network \"\""),
        Some(n) => n.to_string(),
    };
    let mut net = NetSettings::default();
    for p in &a.publish {
        net.ports.extend(parse_publish(p)?);
    }
    if a.publish_all {
        for e in &ic.exposed_ports {
            let (p, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| anyhow!("the image exposes {e:?}, which is not a port"))?;
            let protocol = Protocol::parse(proto)
                .ok_or_else(|| anyhow!("the image exposes {e:?}: unknown protocol"))?;
            if !net
                .ports
                .iter()
                .any(|x| x.container_port == port && x.protocol == protocol)
            {
                net.ports.push(PortSpec {
                    host_ip: None,
                    host_port: 0,
                    container_port: port,
                    protocol,
                });
            }
        }
    }
    for d in &a.dns {
        net.dns.push(
            d.parse()
                .map_err(|_| anyhow!("invalid --dns {d:?}: not an IP address"))?,
        );
    }
    for h in &a.add_host {
        let (name, ip) = h
            .split_once([':', '='])
            .filter(|(n, ip)| !n.is_empty() && !ip.is_empty())
            .ok_or_else(|| anyhow!("invalid --add-host {h:?}: want NAME:IP"))?;
        if ip != "host-gateway"
            && ip
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<IpAddr>()
                .is_err()
        {
            bail!("invalid --add-host {h:?}: {ip:?} is not an IP address (or host-gateway)");
        }
        if name.contains(char::is_whitespace) {
            bail!("invalid --add-host {h:?}: the name has a space");
        }
        net.add_hosts.push((
            name.to_string(),
            ip.trim_matches(|c| c == '[' || c == ']').to_string(),
        ));
    }
    if let Some(ip) = &a.ip {
        net.ip = Some(
            ip.parse()
                .map_err(|_| anyhow!("invalid --ip {ip:?}: not an IPv4 address"))?,
        );
    }
    match mode(&network) {
        Mode::None | Mode::Container(_) if !net.ports.is_empty() => {
            bail!("publishing ports needs a bridge network: --network {network} has none")
        }
        Mode::Host if !net.ports.is_empty() => {
            eprintln!("WARNING: published ports are discarded with --network host");
            net.ports.clear();
        }
        Mode::Bridge(_) => {}
        _ if net.ip.is_some() => bail!("--ip needs a bridge network, not --network {network}"),
        _ => {}
    }
    Ok((network, net))
}

/// Checks at `create` what needs the database: the network exists (the default one is made on
/// first use), `--ip` is in its subnet; `container:NAME` becomes the container's full id.
pub fn check_at_create(store: &mut Store, s: &mut Settings) -> Result<()> {
    match mode(&s.network) {
        Mode::Bridge(name) => {
            if name == networks::DEFAULT_NETWORK {
                networks::ensure_default(store)?;
            }
            let n = networks::require(store.db.conn(), name)?;
            if let Some(ip) = s.net.ip {
                n.subnet
                    .check_address(n.gateway, ip)
                    .map_err(|e| anyhow!("--ip on network {}: {e}", n.name))?;
            }
            if n.internal && !s.net.ports.is_empty() {
                bail!(
                    "network {} is internal: ports cannot be published from it",
                    n.name
                );
            }
            // Store the name (an id prefix given as --network becomes the name).
            s.network = n.name;
        }
        Mode::Container(what) => {
            let other = record::resolve(store.db.conn(), what)
                .with_context(|| format!("--network container:{what}"))?;
            s.network = format!("container:{}", other.id);
        }
        Mode::None | Mode::Host => {}
    }
    Ok(())
}

/// Where a container is, network-wise, once [`setup`] is done.
#[derive(Debug, Clone, Default)]
pub struct Attached {
    /// The namespace to join by path (None: a new one, or the host's for `host`).
    pub netns: Option<PathBuf>,
    /// Its address on a bridge network, and the network.
    pub address: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
    /// The network's DNS server (a network with DNS).
    pub dns_server: Option<Ipv4Addr>,
    /// `container:` mode: the other container's run dir (its /etc/hosts and resolv.conf).
    pub etc_from: Option<PathBuf>,
}

/// What inspect shows (`<run dir>/network.json`, written by [`setup`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Recorded {
    pub network: String,
    pub network_id: String,
    pub address: Option<Ipv4Addr>,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: Option<String>,
    pub ports: Vec<(PortSpec, u16)>,
}

/// `<runroot>/netns/<id>`.
pub fn netns_path(paths: &Paths, id: &str) -> PathBuf {
    paths.runroot.join("netns").join(id)
}

/// The host end of a container's veth pair.
pub fn veth_name(id: &str) -> String {
    format!("veth{}", &id[..11.min(id.len())])
}

/// Takes the host-wide network lock.
pub fn host_lock() -> Result<Flock<File>> {
    let p = Path::new(HOST_LOCK);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
        .with_context(|| format!("opening {HOST_LOCK}"))?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| anyhow!("locking {HOST_LOCK}: {e}"))
}

fn firewall() -> Result<Nftables> {
    Ok(Nftables::new()?)
}

fn rules_of(n: &Network) -> NetworkRules {
    NetworkRules {
        bridge: n.bridge.clone(),
        subnet: n.subnet,
        internal: n.internal,
    }
}

/// Gives a starting container its network; on failure nothing of it is left.
pub fn setup(store: &mut Store, paths: &Paths, c: &Container) -> Result<Attached> {
    match mode(&c.settings.network) {
        Mode::Host => Ok(Attached::default()),
        Mode::None => Ok(Attached::default()),
        Mode::Container(id) => {
            let other = record::get(store.db.conn(), id)?
                .ok_or_else(|| anyhow!("cannot join the network of container {id}: it is gone"))?;
            let pid = other.live_pid().ok_or_else(|| {
                anyhow!(
                    "cannot join the network of container {}: it is not running",
                    other.name
                )
            })?;
            let own = netns_path(paths, &other.id);
            let ns = if own.exists() {
                own
            } else {
                PathBuf::from(format!("/proc/{pid}/ns/net"))
            };
            Ok(Attached {
                netns: Some(ns),
                etc_from: Some(paths.run_dir(&other.id)),
                ..Attached::default()
            })
        }
        Mode::Bridge(name) => {
            let _lock = host_lock()?;
            let r = attach_locked(store, paths, c, name);
            if r.is_err() {
                if let Err(e) = detach_locked(store, paths, &c.id) {
                    eprintln!("warning: undoing the network of {}: {e:#}", c.name);
                }
            }
            r
        }
    }
}

fn io_kind(e: &std::io::Error) -> std::io::ErrorKind {
    e.kind()
}

/// Checks that a host port is free by binding it.
fn check_port_free(ip: Option<Ipv4Addr>, port: u16, proto: Protocol) -> Result<()> {
    let addr = SocketAddrV4::new(ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port);
    let r = match proto {
        Protocol::Tcp => TcpListener::bind(addr).map(drop),
        Protocol::Udp => UdpSocket::bind(addr).map(drop),
        Protocol::Sctp => Ok(()),
    };
    r.map_err(|e| match io_kind(&e) {
        std::io::ErrorKind::AddrInUse => anyhow!(
            "port {port}/{proto} is already in use on the host ({addr}): choose another host port"
        ),
        std::io::ErrorKind::AddrNotAvailable => {
            anyhow!(
                "cannot publish {addr}/{proto}: {} is not an address of this host",
                addr.ip()
            )
        }
        _ => anyhow!("cannot publish {addr}/{proto}: {e}"),
    })
}

/// A free host port (the kernel's choice of an ephemeral one).
fn free_port(ip: Option<Ipv4Addr>, proto: Protocol) -> Result<u16> {
    let addr = SocketAddrV4::new(ip.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
    let port = match proto {
        Protocol::Udp => UdpSocket::bind(addr).and_then(|s| s.local_addr()),
        _ => TcpListener::bind(addr).and_then(|s| s.local_addr()),
    }
    .with_context(|| format!("finding a free host port on {}", addr.ip()))?
    .port();
    Ok(port)
}

fn ip_text(ip: Option<Ipv4Addr>) -> String {
    ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string()
}

fn attach_locked(store: &mut Store, paths: &Paths, c: &Container, name: &str) -> Result<Attached> {
    let net = networks::require(store.db.conn(), name)?;
    let s = &c.settings;
    if net.internal && !s.net.ports.is_empty() {
        bail!(
            "network {} is internal: ports cannot be published from it",
            net.name
        );
    }
    // Host ports: the asked ones must be free, the others are chosen.
    let mut ports = Vec::new();
    for p in &s.net.ports {
        let host_port = if p.host_port == 0 {
            let mut port = 0;
            for _ in 0..16 {
                let cand = free_port(p.host_ip, p.protocol)?;
                let taken: bool = store.db.conn().query_row(
                    "SELECT count(*) > 0 FROM published_ports WHERE host_port = ?1 AND protocol = ?2",
                    params![cand, p.protocol.name()],
                    |r| r.get(0),
                )?;
                if !taken {
                    port = cand;
                    break;
                }
            }
            if port == 0 {
                bail!(
                    "no free host port found for {}/{}",
                    p.container_port,
                    p.protocol
                );
            }
            port
        } else {
            check_port_free(p.host_ip, p.host_port, p.protocol)?;
            p.host_port
        };
        ports.push((*p, host_port));
    }
    // The address and the ports, in one transaction.
    let tx = store.db.write()?;
    let used: HashSet<Ipv4Addr> = {
        let mut st = tx.prepare("SELECT address FROM network_addresses WHERE network = ?1")?;
        let rows = st.query_map([&net.name], |r| r.get::<_, String>(0))?;
        rows.filter_map(|r| r.ok()?.parse().ok()).collect()
    };
    let address = match s.net.ip {
        Some(ip) => {
            if used.contains(&ip) {
                let who: Option<String> = tx
                    .query_row(
                        "SELECT coalesce(c.name, a.container_id) FROM network_addresses a
                         LEFT JOIN containers c ON c.id = a.container_id
                         WHERE a.network = ?1 AND a.address = ?2",
                        params![net.name, ip.to_string()],
                        |r| r.get(0),
                    )
                    .optional()?;
                bail!(
                    "address {ip} is already in use on network {} by container {}",
                    net.name,
                    who.unwrap_or_default()
                );
            }
            ip
        }
        None => net.subnet.next_free(net.gateway, &used).ok_or_else(|| {
            anyhow!(
                "network {} has no free address left in {}",
                net.name,
                net.subnet
            )
        })?,
    };
    tx.execute(
        "INSERT INTO network_addresses (network, address, container_id) VALUES (?1, ?2, ?3)",
        params![net.name, address.to_string(), c.id],
    )
    .with_context(|| format!("taking address {address} on network {}", net.name))?;
    for (p, host_port) in &ports {
        let mut st = tx.prepare(
            "SELECT p.host_ip, coalesce(c.name, p.container_id) FROM published_ports p
             LEFT JOIN containers c ON c.id = p.container_id
             WHERE p.host_port = ?1 AND p.protocol = ?2",
        )?;
        let clash = st
            .query_map(params![host_port, p.protocol.name()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .filter_map(|r| r.ok())
            .find(|(ip, _)| ip == "0.0.0.0" || p.host_ip.is_none() || *ip == ip_text(p.host_ip));
        if let Some((_, who)) = clash {
            bail!(
                "port {host_port}/{} is already published by container {who}",
                p.protocol
            );
        }
        tx.execute(
            "INSERT INTO published_ports (container_id, host_ip, host_port, protocol, container_ip,
             container_port) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                c.id,
                ip_text(p.host_ip),
                host_port,
                p.protocol.name(),
                address.to_string(),
                p.container_port
            ],
        )
        .with_context(|| format!("publishing port {host_port}/{}", p.protocol))?;
    }
    tx.commit()?;

    // The kernel side.
    let mut nl = Netlink::new()?;
    let cfg = BridgeConfig {
        name: net.bridge.clone(),
        subnet: net.subnet,
        gateway: net.gateway,
        internal: net.internal,
    };
    let (br, made) = bridge::ensure_bridge(&mut nl, &cfg)
        .with_context(|| format!("network {}: bridge {}", net.name, net.bridge))?;
    if made {
        firewall()?
            .add_network(&rules_of(&net))
            .with_context(|| format!("network {}: firewall rules", net.name))?;
    }
    let ns_path = netns_path(paths, &c.id);
    let ns = netns::create(&ns_path).context("creating the network namespace")?;
    bridge::connect(
        &mut nl,
        br,
        ns.as_fd(),
        &Endpoint {
            host_veth: veth_name(&c.id),
            address,
            subnet: net.subnet,
            gateway: net.gateway,
            default_route: !net.internal,
        },
    )
    .with_context(|| format!("connecting to network {}", net.name))?;
    drop(ns);
    let forwards: Vec<PortForward> = ports
        .iter()
        .map(|(p, hp)| PortForward {
            host_ip: p.host_ip,
            host_port: *hp,
            protocol: p.protocol,
            container_ip: address,
            container_port: p.container_port,
        })
        .collect();
    if !forwards.is_empty() {
        firewall()?
            .add_ports(&forwards)
            .context("publishing the ports")?;
    }
    if net.dns {
        update_dns(store, paths, &net).with_context(|| format!("network {}: DNS", net.name))?;
    }
    let rec = Recorded {
        network: net.name.clone(),
        network_id: net.id.clone(),
        address: Some(address),
        prefix_len: net.subnet.prefix(),
        gateway: Some(net.gateway),
        mac: None,
        ports: ports.clone(),
    };
    let run_dir = paths.run_dir(&c.id);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    std::fs::write(run_dir.join("network.json"), serde_json::to_vec(&rec)?)
        .context("writing network.json")?;
    Ok(Attached {
        netns: Some(ns_path),
        address: Some(address),
        gateway: Some(net.gateway),
        dns_server: net.dns.then_some(net.gateway),
        etc_from: None,
    })
}

/// Takes back everything [`setup`] gave a container (idempotent: what is not there is skipped).
pub fn teardown(store: &mut Store, paths: &Paths, c: &Container) -> Result<()> {
    let has_rows: bool = store.db.conn().query_row(
        "SELECT EXISTS (SELECT 1 FROM network_addresses WHERE container_id = ?1)
             OR EXISTS (SELECT 1 FROM published_ports WHERE container_id = ?1)",
        [&c.id],
        |r| r.get(0),
    )?;
    let ns = netns_path(paths, &c.id);
    if !has_rows && std::fs::symlink_metadata(&ns).is_err() {
        return Ok(());
    }
    let _lock = host_lock()?;
    detach_locked(store, paths, &c.id)
}

fn detach_locked(store: &mut Store, paths: &Paths, id: &str) -> Result<()> {
    let conn = store.db.conn();
    let nets: Vec<String> = {
        let mut st =
            conn.prepare("SELECT DISTINCT network FROM network_addresses WHERE container_id = ?1")?;
        let rows = st.query_map([id], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let ports: Vec<PortForward> = {
        let mut st = conn.prepare(
            "SELECT host_ip, host_port, protocol, container_ip, container_port
             FROM published_ports WHERE container_id = ?1",
        )?;
        let rows = st.query_map([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u16>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u16>(4)?,
            ))
        })?;
        rows.filter_map(|r| r.ok())
            .filter_map(|(hip, hp, proto, cip, cp)| {
                Some(PortForward {
                    host_ip: Some(hip.parse::<Ipv4Addr>().ok()?).filter(|ip| !ip.is_unspecified()),
                    host_port: hp,
                    protocol: Protocol::parse(&proto)?,
                    container_ip: cip.parse().ok()?,
                    container_port: cp,
                })
            })
            .collect()
    };
    let mut first: Option<anyhow::Error> = None;
    let mut note = |e: anyhow::Error| {
        if first.is_none() {
            first = Some(e);
        }
    };
    if !ports.is_empty() {
        if let Err(e) = firewall().and_then(|f| Ok(f.remove_ports(&ports)?)) {
            note(e.context("withdrawing the published ports"));
        }
    }
    let mut nl = match Netlink::new() {
        Ok(n) => Some(n),
        Err(e) => {
            note(e.into());
            None
        }
    };
    if let Some(nl) = nl.as_mut() {
        if let Err(e) = bridge::disconnect_in_background(nl, &veth_name(id)) {
            note(anyhow::Error::from(e).context("deleting the veth pair"));
        }
    }
    if let Err(e) = netns::remove(&netns_path(paths, id)) {
        note(e.into());
    }
    let tx = store.db.write()?;
    tx.execute(
        "DELETE FROM network_addresses WHERE container_id = ?1",
        [id],
    )?;
    tx.execute("DELETE FROM published_ports WHERE container_id = ?1", [id])?;
    tx.commit()?;
    for name in nets {
        let Some(net) = networks::get(store.db.conn(), &name)? else {
            continue;
        };
        let left = networks::attached(store.db.conn(), &net.name)?;
        if net.dns {
            let r = if left.is_empty() {
                stop_dns(paths, &net)
            } else {
                update_dns(store, paths, &net)
            };
            if let Err(e) = r {
                note(e.context(format!("network {}: DNS", net.name)));
            }
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Takes a network's kernel side down (`network rm`): its DNS server, and its bridge and
/// firewall entries once no interface is a port of the bridge any more (veths of containers
/// that just went are deleted in the background: waited for up to a second; another store on
/// this host may still use a shared bridge: then it stays). With the last of Berth's bridges,
/// Berth's whole nftables table goes.
pub fn remove_kernel_side(paths: &Paths, net: &Network) -> Result<()> {
    let _lock = host_lock()?;
    stop_dns(paths, net).with_context(|| format!("network {}: DNS", net.name))?;
    let mut nl = Netlink::new()?;
    let Some(br) = nl.link(&net.bridge)? else {
        return Ok(());
    };
    if !bridge::wait_no_ports(&mut nl, br.index, Duration::from_secs(1))? {
        return Ok(());
    }
    let links = nl.links()?;
    let others = links
        .iter()
        .any(|l| bridge::is_berth_bridge(l) && l.name != net.bridge);
    firewall()?.remove_network(&rules_of(net), !others)?;
    nl.delete_link(&net.bridge)?;
    Ok(())
}

// --- DNS -------------------------------------------------------------------------------------

fn dns_pid(dir: &Path) -> Option<(i32, u64)> {
    let t = std::fs::read_to_string(dir.join("dns.pid")).ok()?;
    let mut f = t.split_whitespace();
    let pid = f.next()?.parse().ok()?;
    let start = f.next()?.parse().ok()?;
    berth_runtime::state::process_matches(pid, start).then_some((pid, start))
}

/// Rewrites the network's hosts file from its containers now, and starts its DNS server unless
/// it runs.
fn update_dns(store: &Store, paths: &Paths, net: &Network) -> Result<()> {
    let dir = net.run_dir(paths);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut entries: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    for (id, name, ip) in networks::attached(store.db.conn(), &net.name)? {
        let e = entries.entry(ip).or_default();
        if !name.is_empty() {
            e.push(name);
        }
        e.push(id[..12.min(id.len())].to_string());
    }
    let entries: Vec<(Ipv4Addr, Vec<String>)> = entries.into_iter().collect();
    dns::write_hosts(&dir.join("hosts"), &entries)?;
    if dns_pid(&dir).is_none() {
        start_dns(net, &dir)?;
    }
    Ok(())
}

/// Starts `berth network dns-serve` for a network, detached (own session, reparented to init),
/// and waits until it listens.
fn start_dns(net: &Network, dir: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("finding the berth binary")?;
    let upstream = dns::resolvers(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    let mut args: Vec<String> = vec![
        exe.display().to_string(),
        "network".into(),
        "dns-serve".into(),
        "--listen".into(),
        format!("{}:53", net.gateway),
        "--hosts".into(),
        dir.join("hosts").display().to_string(),
        "--ready-fd".into(),
    ];
    for u in upstream {
        args.push("--upstream".into());
        args.push(u.to_string());
    }
    let cargs: Vec<std::ffi::CString> = args
        .iter()
        .map(|a| std::ffi::CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dns.log"))
        .context("opening dns.log")?;
    let null = File::open("/dev/null").context("/dev/null")?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    // SAFETY: the CLI is single-threaded here (the netlink threads are joined); the child only
    // calls async-signal-safe functions (setsid, fork, chdir, dup2, fcntl, close_range, execv,
    // _exit).
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Child => {
            // SAFETY: plain syscalls on fds we own, in the forked child.
            unsafe {
                libc::setsid();
                if libc::fork() != 0 {
                    libc::_exit(0);
                }
                // Pin no mount through its working directory.
                libc::chdir(c"/".as_ptr());
                libc::dup2(null.as_raw_fd(), 0);
                libc::dup2(log.as_raw_fd(), 1);
                libc::dup2(log.as_raw_fd(), 2);
                if w.as_raw_fd() == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0);
                } else {
                    libc::dup2(w.as_raw_fd(), 3);
                }
                libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
                libc::execv(argv[0], argv.as_ptr());
                libc::_exit(127);
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            nix::sys::wait::waitpid(child, None)
                .context("waiting for the DNS server's launcher")?;
        }
    }
    // Its pid arrives once it listens; EOF without it means it failed (see its log).
    let mut pfd = libc::pollfd {
        fd: r.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
    let mut text = String::new();
    if n > 0 {
        let _ = File::from(r).read_to_string(&mut text);
    }
    let pid: i32 = match text.trim().parse() {
        Ok(p) => p,
        Err(_) => {
            let log = std::fs::read_to_string(dir.join("dns.log")).unwrap_or_default();
            bail!(
                "the DNS server of network {} did not start: {}",
                net.name,
                log.lines().last().unwrap_or("no reason given")
            );
        }
    };
    let start = berth_runtime::state::proc_stat(pid)
        .map(|(s, _)| s)
        .ok_or_else(|| anyhow!("the DNS server of network {} exited at once", net.name))?;
    std::fs::write(dir.join("dns.pid"), format!("{pid} {start}\n")).context("writing dns.pid")?;
    Ok(())
}

/// `pidfd_open`.
fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with integer arguments; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: the fd was just returned by the kernel and is owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Stops a network's DNS server (SIGTERM, SIGKILL after 2 s), waits until it is gone, and
/// removes its files.
fn stop_dns(paths: &Paths, net: &Network) -> Result<()> {
    let dir = net.run_dir(paths);
    if let Some((pid, _)) = dns_pid(&dir) {
        if let Some(fd) = pidfd(pid) {
            if dns_pid(&dir).is_some() {
                for (sig, wait_ms) in [(libc::SIGTERM, 2000), (libc::SIGKILL, 2000)] {
                    // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
                    unsafe {
                        libc::syscall(
                            libc::SYS_pidfd_send_signal,
                            fd.as_raw_fd(),
                            sig,
                            std::ptr::null::<libc::siginfo_t>(),
                            0,
                        );
                    }
                    let mut p = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: poll on one valid pollfd.
                    if unsafe { libc::poll(&mut p, 1, wait_ms) } > 0 {
                        break;
                    }
                }
            }
        }
    }
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

// --- /etc files ------------------------------------------------------------------------------

/// The container's /etc/hosts.
pub fn hosts_file(s: &Settings, net: &Attached) -> String {
    if let Some(dir) = &net.etc_from {
        if let Ok(t) = std::fs::read_to_string(dir.join("hosts")) {
            return t;
        }
    }
    let mut out = if s.network == "host" {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        let own = match net.address {
            Some(ip) => format!("{ip}\t{}\n", s.hostname),
            None => format!("127.0.1.1\t{}\n", s.hostname),
        };
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{own}")
    };
    for (name, ip) in &s.net.add_hosts {
        let ip = if ip == "host-gateway" {
            match net.gateway {
                Some(g) => g.to_string(),
                None => continue,
            }
        } else {
            ip.clone()
        };
        if !out.ends_with('\n') && !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    out
}

/// The container's /etc/resolv.conf: the network's DNS server (and search domain) on a network
/// with DNS; `--dns` servers instead of the host's; the host's otherwise, less loopback ones in
/// a namespace of its own (they are not reachable from there).
pub fn resolv_conf(s: &Settings, net: &Attached) -> String {
    if let Some(dir) = &net.etc_from {
        if let Ok(t) = std::fs::read_to_string(dir.join("resolv.conf")) {
            return t;
        }
    }
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let is_ns = |l: &str| l.split_whitespace().next() == Some("nameserver");
    let loopback = |l: &str| {
        l.split_whitespace()
            .nth(1)
            .and_then(|a| a.parse::<IpAddr>().ok())
            .is_some_and(|a| a.is_loopback())
    };
    let mut out = String::new();
    if let Some(gw) = net.dns_server {
        out.push_str(&format!("search {}\nnameserver {gw}\n", dns::DOMAIN));
        for d in &s.net.dns {
            out.push_str(&format!("nameserver {d}\n"));
        }
        for l in host.lines().filter(|l| l.starts_with("options")) {
            out.push_str(&format!("{l}\n"));
        }
        return out;
    }
    let own_ns = s.network != "host";
    for l in host.lines() {
        if is_ns(l) && (!s.net.dns.is_empty() || (own_ns && loopback(l))) {
            continue;
        }
        out.push_str(&format!("{l}\n"));
    }
    for d in &s.net.dns {
        out.push_str(&format!("nameserver {d}\n"));
    }
    out
}

/// `NetworkSettings` of docker's inspect (from `<run dir>/network.json` while it runs).
pub fn inspect_value(paths: &Paths, c: &Container) -> Value {
    let rec: Option<Recorded> = std::fs::read(paths.run_dir(&c.id).join("network.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(rec) = rec else {
        return json!({"IPAddress": "", "Gateway": "", "IPPrefixLen": 0, "Ports": {}, "Networks": {}});
    };
    let mut ports = serde_json::Map::new();
    for (p, hp) in &rec.ports {
        let e = ports
            .entry(format!("{}/{}", p.container_port, p.protocol))
            .or_insert_with(|| json!([]));
        if let Some(a) = e.as_array_mut() {
            a.push(json!({"HostIp": ip_text(p.host_ip), "HostPort": hp.to_string()}));
        }
    }
    let ip = rec.address.map(|a| a.to_string()).unwrap_or_default();
    let gw = rec.gateway.map(|a| a.to_string()).unwrap_or_default();
    json!({
        "IPAddress": ip,
        "Gateway": gw,
        "IPPrefixLen": rec.prefix_len,
        "Ports": ports,
        "Networks": {rec.network.clone(): {"NetworkID": rec.network_id, "IPAddress": ip,
                                           "Gateway": gw, "IPPrefixLen": rec.prefix_len}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_expand() {
        let p = parse_publish("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            p,
            [PortSpec {
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Udp
            }]
        );
        let p = parse_publish("80").unwrap();
        assert_eq!(
            (p[0].host_ip, p[0].host_port, p[0].protocol),
            (None, 0, Protocol::Tcp)
        );
        let p = parse_publish("0.0.0.0::53").unwrap();
        assert_eq!(
            (p[0].host_ip, p[0].host_port, p[0].container_port),
            (None, 0, 53)
        );
        let p = parse_publish("9000-9002:80-82").unwrap();
        assert_eq!(
            p.iter()
                .map(|x| (x.host_port, x.container_port))
                .collect::<Vec<_>>(),
            [(9000, 80), (9001, 81), (9002, 82)]
        );
        for bad in [
            "9000-9001:80",
            "99999:80",
            "80/icmp",
            "[fd00::1]:80:80",
            "82-80",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes() {
        assert_eq!(mode("none"), Mode::None);
        assert_eq!(mode("host"), Mode::Host);
        assert_eq!(mode("container:abc"), Mode::Container("abc"));
        assert_eq!(mode("bridge"), Mode::Bridge("bridge"));
        assert_eq!(mode("mynet"), Mode::Bridge("mynet"));
    }

    fn settings(network: &str) -> Settings {
        Settings {
            network: network.into(),
            hostname: "h1".into(),
            ..Settings::default()
        }
    }

    #[test]
    fn etc_files() {
        let mut s = settings("mynet");
        s.net.add_hosts = vec![
            ("db".into(), "10.1.2.3".into()),
            ("gw".into(), "host-gateway".into()),
        ];
        s.net.dns = vec!["192.0.2.53".parse().unwrap()];
        let a = Attached {
            address: Some("10.89.0.2".parse().unwrap()),
            gateway: Some("10.89.0.1".parse().unwrap()),
            dns_server: Some("10.89.0.1".parse().unwrap()),
            ..Attached::default()
        };
        let h = hosts_file(&s, &a);
        assert!(h.contains("10.89.0.2\th1\n"), "{h}");
        assert!(
            h.contains("10.1.2.3\tdb\n") && h.contains("10.89.0.1\tgw\n"),
            "{h}"
        );
        let r = resolv_conf(&s, &a);
        assert!(
            r.starts_with("search dns.berth\nnameserver 10.89.0.1\nnameserver 192.0.2.53\n"),
            "{r}"
        );
        // The default bridge has no DNS server: --dns replaces the host's servers.
        let plain = Attached {
            dns_server: None,
            ..a
        };
        let r = resolv_conf(&s, &plain);
        assert_eq!(
            r.lines()
                .filter(|l| l.starts_with("nameserver"))
                .collect::<Vec<_>>(),
            ["nameserver 192.0.2.53"]
        );
        let none = settings("none");
        assert!(hosts_file(&none, &Attached::default()).contains("127.0.1.1\th1"));
    }
}
