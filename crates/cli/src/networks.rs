//! Networks: the `networks` table of the database and the `berth network` commands (create, ls,
//! inspect, rm, prune, and the hidden `dns-serve` that runs a network's DNS server).
//!
//! A network is a row (name, id, bridge device, subnet, gateway, internal, dns); nothing is made
//! on the host when it is created: its bridge and firewall rules come with its first running
//! container (`container::network`) and stay until `network rm`. Addresses and published ports are
//! rows too (`network_addresses` with `UNIQUE (network, address)`, `published_ports`), taken
//! in immediate transactions, so concurrent `berth run`s never get the same address.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use berth_network::ipam::{self, Subnet};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{json, Value};

use crate::container::{record, Paths};
use crate::store::Store;

/// The tables (created with the others by `Db::open`).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    bridge TEXT NOT NULL UNIQUE,      -- the bridge device
    subnet TEXT NOT NULL,             -- a.b.c.d/n
    gateway TEXT NOT NULL,
    internal INTEGER NOT NULL,
    dns INTEGER NOT NULL,             -- a DNS server answers the containers' names
    created_ns INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS network_addresses (
    network TEXT NOT NULL REFERENCES networks(name),
    address TEXT NOT NULL,
    container_id TEXT NOT NULL,
    UNIQUE (network, address)
);
CREATE INDEX IF NOT EXISTS network_addresses_container ON network_addresses(container_id);
CREATE TABLE IF NOT EXISTS published_ports (
    container_id TEXT NOT NULL,
    host_ip TEXT NOT NULL,            -- 0.0.0.0: every address of the host
    host_port INTEGER NOT NULL,
    protocol TEXT NOT NULL,
    container_ip TEXT NOT NULL,
    container_port INTEGER NOT NULL,
    UNIQUE (host_ip, host_port, protocol)
);
CREATE INDEX IF NOT EXISTS published_ports_container ON published_ports(container_id);
";

/// The default network (docker's name), made on first use.
pub const DEFAULT_NETWORK: &str = "bridge";
/// Its bridge device.
pub const DEFAULT_BRIDGE: &str = "berth0";
/// Its subnet.
pub const DEFAULT_SUBNET: &str = "10.88.0.0/16";
/// User networks get a /24 of this pool when no subnet is given.
pub const USER_POOL: &str = "10.89.0.0/16";

/// A network.
#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    pub id: String,
    pub bridge: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub internal: bool,
    pub dns: bool,
    pub created_ns: i64,
    pub labels: BTreeMap<String, String>,
}

impl Network {
    /// The first 12 hex digits of the id.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    /// `<runroot>/networks/<id>`: the DNS server's files (hosts, pid, log).
    pub fn run_dir(&self, paths: &Paths) -> PathBuf {
        paths.runroot.join("networks").join(&self.id)
    }
}

const COLUMNS: &str = "name, id, bridge, subnet, gateway, internal, dns, created_ns, labels";

/// A row as stored: the name and the columns still to be parsed.
type RawRow = (
    String,
    String,
    String,
    String,
    String,
    bool,
    bool,
    i64,
    String,
);

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn finish(row: RawRow) -> Result<Network> {
    let (name, id, bridge, subnet, gateway, internal, dns, created_ns, labels) = row;
    Ok(Network {
        subnet: subnet
            .parse()
            .with_context(|| format!("network {name}: unreadable subnet in the database"))?,
        gateway: gateway
            .parse()
            .with_context(|| format!("network {name}: unreadable gateway in the database"))?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        name,
        id,
        bridge,
        internal,
        dns,
        created_ns,
    })
}

/// A network by name (or full id, or unique id prefix).
pub fn get(conn: &Connection, what: &str) -> Result<Option<Network>> {
    if let Some(row) = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM networks WHERE name = ?1 OR id = ?1"),
            [what],
            from_row,
        )
        .optional()?
    {
        return finish(row).map(Some);
    }
    if what.len() >= 3 && what.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut st = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM networks WHERE substr(id, 1, ?2) = ?1"
        ))?;
        let mut found: Vec<_> = st
            .query_map(params![what, what.len() as i64], from_row)?
            .collect::<rusqlite::Result<_>>()?;
        if found.len() == 1 {
            return finish(found.remove(0)).map(Some);
        }
        if found.len() > 1 {
            bail!(
                "network id prefix {what:?} is ambiguous ({} networks)",
                found.len()
            );
        }
    }
    Ok(None)
}

/// A network that must exist (a clear error naming it).
pub fn require(conn: &Connection, what: &str) -> Result<Network> {
    get(conn, what)?.ok_or_else(|| {
        anyhow!("network {what} not found (see `berth network ls`; `berth network create {what}` makes it)")
    })
}

/// Every network, by name.
pub fn all(conn: &Connection) -> Result<Vec<Network>> {
    let mut st = conn.prepare(&format!("SELECT {COLUMNS} FROM networks ORDER BY name"))?;
    let rows = st.query_map([], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

fn insert(tx: &Transaction<'_>, n: &Network) -> Result<()> {
    tx.execute(
        &format!("INSERT INTO networks ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        params![
            n.name,
            n.id,
            n.bridge,
            n.subnet.to_string(),
            n.gateway.to_string(),
            n.internal,
            n.dns,
            n.created_ns,
            serde_json::to_string(&n.labels)?
        ],
    )?;
    Ok(())
}

/// Makes the default network's row unless it is there.
pub fn ensure_default(store: &mut Store) -> Result<()> {
    if get(store.db.conn(), DEFAULT_NETWORK)?.is_some() {
        return Ok(());
    }
    let subnet: Subnet = DEFAULT_SUBNET.parse()?;
    let n = Network {
        name: DEFAULT_NETWORK.into(),
        id: crate::container::lifecycle::new_id()?,
        bridge: DEFAULT_BRIDGE.into(),
        subnet,
        gateway: subnet.first_host(),
        internal: false,
        dns: false,
        created_ns: berth_monitor::logfile::now_ns(),
        labels: BTreeMap::new(),
    };
    let tx = store.db.write()?;
    if get(&tx, DEFAULT_NETWORK)?.is_none() {
        insert(&tx, &n)?;
    }
    tx.commit()?;
    Ok(())
}

/// What `network create` was asked.
#[derive(clap::Args, Debug, Clone)]
pub struct CreateOpts {
    /// Driver (only `bridge`).
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR form (default: the first free /24 of 10.89.0.0/16).
    #[arg(long)]
    pub subnet: Option<String>,
    /// Gateway (default: the subnet's first address).
    #[arg(long)]
    pub gateway: Option<String>,
    /// Keep the network's traffic on its bridge: no route out, no masquerade.
    #[arg(long)]
    pub internal: bool,
    /// No DNS server for the containers' names.
    #[arg(long)]
    pub disable_dns: bool,
    /// Metadata (KEY=VALUE).
    #[arg(short, long)]
    pub label: Vec<String>,
    /// The network's name.
    pub name: String,
}

/// The subnets in use on the host (its interfaces' IPv4 networks).
fn host_subnets() -> Result<Vec<(Subnet, String)>> {
    let mut nl = berth_network::netlink::Netlink::new()?;
    let links = nl.links()?;
    let mut out = Vec::new();
    for a in nl.addresses()? {
        let std::net::IpAddr::V4(ip) = a.addr else {
            continue;
        };
        let p = a.prefix_len.clamp(ipam::MIN_PREFIX, ipam::MAX_PREFIX);
        let m = u32::MAX << (32 - u32::from(p));
        if let Ok(s) = Subnet::new(Ipv4Addr::from(u32::from(ip) & m), p) {
            // Berth's own bridges count as the networks they serve, which are checked by name.
            let name = links
                .iter()
                .find(|l| l.index == a.index)
                .map_or_else(|| format!("#{}", a.index), |l| l.name.clone());
            out.push((s, name));
        }
    }
    Ok(out)
}

/// `network create`: checks everything, then inserts the row (nothing is made on the host).
pub fn create(store: &mut Store, o: &CreateOpts) -> Result<Network> {
    if o.driver != "bridge" {
        bail!(
            "invalid --driver {:?}: berth has bridge networks only",
            o.driver
        );
    }
    crate::container::lifecycle::check_name(&o.name).map_err(|_| {
        anyhow!(
            "invalid network name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
            o.name
        )
    })?;
    if matches!(o.name.as_str(), "host" | "none" | "default") {
        bail!("network name {:?} is reserved", o.name);
    }
    if o.name == DEFAULT_NETWORK {
        ensure_default(store)?;
    }
    let labels = crate::container::settings::parse_pairs(&o.label, "label")?;
    let given: Option<Subnet> = o
        .subnet
        .as_deref()
        .map(|s| s.parse::<Subnet>().map_err(|e| anyhow!("{e}")))
        .transpose()?;
    if o.gateway.is_some() && given.is_none() {
        bail!("--gateway needs --subnet");
    }
    let host = host_subnets().context("listing the host's addresses")?;
    let id = crate::container::lifecycle::new_id()?;
    let tx = store.db.write()?;
    if let Some(n) = get(&tx, &o.name)? {
        bail!(
            "network name {:?} is already in use by network {}: remove it, or choose another name",
            o.name,
            n.short_id()
        );
    }
    let taken = all(&tx)?;
    let subnet = match given {
        Some(s) => {
            if let Some(n) = taken.iter().find(|n| n.subnet.overlaps(&s)) {
                bail!(
                    "subnet {s} overlaps the subnet {} of network {}",
                    n.subnet,
                    n.name
                );
            }
            if let Some((h, iface)) = host
                .iter()
                .find(|(h, iface)| h.overlaps(&s) && !taken.iter().any(|n| &n.bridge == iface))
            {
                bail!("subnet {s} overlaps {h}, in use on the host by interface {iface}");
            }
            s
        }
        None => {
            let mut used: Vec<Subnet> = taken.iter().map(|n| n.subnet).collect();
            used.extend(host.iter().map(|(h, _)| *h));
            ipam::next_subnet(USER_POOL.parse()?, 24, &used).ok_or_else(|| {
                anyhow!("no free /24 subnet left in {USER_POOL}: give one with --subnet")
            })?
        }
    };
    let gateway = match &o.gateway {
        Some(g) => {
            let gw: Ipv4Addr = g
                .parse()
                .map_err(|_| anyhow!("invalid --gateway {g:?}: not an IPv4 address"))?;
            subnet.check_gateway(gw).map_err(|e| anyhow!("{e}"))?;
            gw
        }
        None => subnet.first_host(),
    };
    let n = Network {
        name: o.name.clone(),
        bridge: format!("berth-{}", &id[..8]),
        id,
        subnet,
        gateway,
        internal: o.internal,
        dns: !o.disable_dns,
        created_ns: berth_monitor::logfile::now_ns(),
        labels,
    };
    insert(&tx, &n)?;
    tx.commit()?;
    Ok(n)
}

/// Names of the containers (any state) set to use network `name`.
pub fn users(conn: &Connection, name: &str) -> Result<Vec<String>> {
    Ok(record::all(conn)?
        .into_iter()
        .filter(|c| c.settings.network == name)
        .map(|c| c.name)
        .collect())
}

/// `network rm`.
pub fn remove(store: &mut Store, paths: &Paths, what: &str) -> Result<()> {
    let n = require(store.db.conn(), what)?;
    let users = users(store.db.conn(), &n.name)?;
    if !users.is_empty() {
        bail!(
            "network {} is in use by container(s) {}: remove them first",
            n.name,
            users.join(", ")
        );
    }
    let left: i64 = store.db.conn().query_row(
        "SELECT count(*) FROM network_addresses WHERE network = ?1",
        [&n.name],
        |r| r.get(0),
    )?;
    if left > 0 {
        bail!("network {} still has {left} address(es) in use", n.name);
    }
    // The kernel side first: when it fails, the row stays, so that `network rm` can be run again.
    crate::container::network::remove_kernel_side(paths, &n)
        .with_context(|| format!("network {}: taking its bridge down", n.name))?;
    let tx = store.db.write()?;
    tx.execute("DELETE FROM networks WHERE name = ?1", [&n.name])?;
    tx.commit()?;
    let _ = std::fs::remove_dir_all(n.run_dir(paths));
    Ok(())
}

/// `network prune`: every user network no container uses; their names.
pub fn prune(store: &mut Store, paths: &Paths) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for n in all(store.db.conn())? {
        if n.name == DEFAULT_NETWORK || !users(store.db.conn(), &n.name)?.is_empty() {
            continue;
        }
        remove(store, paths, &n.name)?;
        out.push(n.name);
    }
    Ok(out)
}

/// The containers on a network now: (id, name, address).
pub fn attached(conn: &Connection, network: &str) -> Result<Vec<(String, String, Ipv4Addr)>> {
    let mut st = conn.prepare(
        "SELECT a.container_id, coalesce(c.name, ''), a.address FROM network_addresses a
         LEFT JOIN containers c ON c.id = a.container_id WHERE a.network = ?1 ORDER BY a.address",
    )?;
    let rows = st.query_map([network], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (id, name, a) = r?;
        if let Ok(ip) = a.parse() {
            out.push((id, name, ip));
        }
    }
    Ok(out)
}

fn time_rfc3339(ns: i64) -> String {
    crate::util::rfc3339(ns / 1_000_000_000)
}

/// docker's shape of `network inspect`.
pub fn inspect_value(conn: &Connection, n: &Network) -> Result<Value> {
    let mut containers = serde_json::Map::new();
    for (id, name, ip) in attached(conn, &n.name)? {
        containers.insert(
            id,
            json!({"Name": name, "IPv4Address": format!("{ip}/{}", n.subnet.prefix())}),
        );
    }
    Ok(json!({
        "Name": n.name,
        "Id": n.id,
        "Created": time_rfc3339(n.created_ns),
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": n.subnet.to_string(),
                                                   "Gateway": n.gateway.to_string()}]},
        "Internal": n.internal,
        "DNSEnabled": n.dns,
        "Containers": containers,
        "Options": {"com.docker.network.bridge.name": n.bridge},
        "Labels": n.labels,
    }))
}

/// `berth network ...`.
#[derive(clap::Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network.
    Create(CreateOpts),
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// `json` or `table`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show networks as JSON.
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove every network no container uses.
    Prune {
        /// Do not ask (berth never asks; accepted for compatibility).
        #[arg(short, long)]
        force: bool,
    },
    /// Serve a network's DNS (started by the engine, one per network in use).
    #[command(hide = true)]
    DnsServe {
        /// Address and port to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// The hosts-like file of the network's containers.
        #[arg(long)]
        hosts: PathBuf,
        /// Resolvers to forward other queries to.
        #[arg(long)]
        upstream: Vec<SocketAddr>,
        /// Write our pid to fd 3 once listening, then close it.
        #[arg(long)]
        ready_fd: bool,
    },
}

fn print(s: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(s.as_bytes());
}

/// The DNS server (`network dns-serve`): never returns unless it fails.
fn dns_serve(
    listen: SocketAddr,
    hosts: PathBuf,
    upstream: Vec<SocketAddr>,
    ready_fd: bool,
) -> Result<u8> {
    let ready = if ready_fd {
        // SAFETY: fd 3 was set up by the engine as the write end of a pipe for us alone.
        Some(std::fs::File::from(unsafe {
            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(3)
        }))
    } else {
        None
    };
    let cfg = berth_network::dns::ServerConfig {
        listen,
        hosts,
        upstream,
        domain: berth_network::dns::DOMAIN.into(),
    };
    berth_network::dns::serve(&cfg, ready)?;
    Ok(0)
}

/// Runs one `network` command.
pub fn dispatch(root: &std::path::Path, runroot: &std::path::Path, cmd: &NetworkCmd) -> Result<u8> {
    if let NetworkCmd::DnsServe {
        listen,
        hosts,
        upstream,
        ready_fd,
    } = cmd
    {
        return dns_serve(*listen, hosts.clone(), upstream.clone(), *ready_fd);
    }
    let mut store = Store::open(root, runroot)?;
    let paths = Paths {
        root: root.to_path_buf(),
        runroot: runroot.to_path_buf(),
    };
    match cmd {
        NetworkCmd::Create(o) => {
            let n = create(&mut store, o)?;
            print(&format!("{}\n", n.id));
        }
        NetworkCmd::Ls { quiet, format } => {
            ensure_default(&mut store)?;
            let nets = all(store.db.conn())?;
            if *quiet {
                for n in &nets {
                    print(&format!("{}\n", n.short_id()));
                }
                return Ok(0);
            }
            match format.as_deref() {
                Some("json") => {
                    let v: Vec<Value> = nets
                        .iter()
                        .map(|n| inspect_value(store.db.conn(), n))
                        .collect::<Result<_>>()?;
                    print(&(serde_json::to_string_pretty(&v)? + "\n"));
                }
                None | Some("table") => {
                    let mut out = format!(
                        "{:<14}{:<20}{:<10}{:<18}{}\n",
                        "NETWORK ID", "NAME", "DRIVER", "SUBNET", "GATEWAY"
                    );
                    for n in &nets {
                        out.push_str(&format!(
                            "{:<14}{:<20}{:<10}{:<18}{}\n",
                            n.short_id(),
                            n.name,
                            "bridge",
                            n.subnet.to_string(),
                            n.gateway
                        ));
                    }
                    print(&out);
                }
                Some(o) => bail!("unsupported --format {o:?} (want json or table)"),
            }
        }
        NetworkCmd::Inspect { networks } => {
            if networks.iter().any(|n| n == DEFAULT_NETWORK) {
                ensure_default(&mut store)?;
            }
            let mut out = Vec::new();
            for w in networks {
                out.push(inspect_value(
                    store.db.conn(),
                    &require(store.db.conn(), w)?,
                )?);
            }
            print(&(serde_json::to_string_pretty(&out)? + "\n"));
        }
        NetworkCmd::Rm { networks } => {
            let mut failed = None;
            for w in networks {
                match remove(&mut store, &paths, w) {
                    Ok(()) => print(&format!("{w}\n")),
                    Err(e) if networks.len() == 1 => return Err(e),
                    Err(e) => {
                        eprintln!("Error: {e:#}");
                        failed = Some(e);
                    }
                }
            }
            if failed.is_some() {
                return Ok(1);
            }
        }
        NetworkCmd::Prune { .. } => {
            let gone = prune(&mut store, &paths)?;
            if !gone.is_empty() {
                print("Deleted Networks:\n");
                for n in gone {
                    print(&format!("{n}\n"));
                }
            }
        }
        NetworkCmd::DnsServe { .. } => {} // served above
    }
    Ok(0)
}
