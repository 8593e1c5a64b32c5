//! A bridge network's kernel side, put together from [`crate::netlink`] and [`crate::netns`]:
//! the bridge up with the gateway address (made when its first container comes, removed with
//! its last), and a container's veth pair: the host end a port of the bridge, the other end
//! `eth0` in the container's network namespace with its address and the default route.
//!
//! Each step that makes something undoes it when a later step of the same call fails.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::BorrowedFd;

use crate::ipam::Subnet;
use crate::netlink::{Link, Netlink};
use crate::{netns, Error, Result};

/// Every bridge Berth makes has a name starting with this (`berth0`, `berth-<id>`).
pub const BRIDGE_PREFIX: &str = "berth";

/// The interface name of a container's end of its veth pair.
pub const CONTAINER_IFNAME: &str = "eth0";

/// A network's bridge.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The device name (at most 15 bytes).
    pub name: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// Internal: no default route for the containers, no forwarding.
    pub internal: bool,
}

/// A container's place on a network.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The host end of the veth pair (at most 15 bytes).
    pub host_veth: String,
    pub address: Ipv4Addr,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// Whether to add the default route via the gateway.
    pub default_route: bool,
}

fn write_sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| Error::io(format!("writing {path}"), e))
}

/// A random locally administered unicast MAC address.
pub fn random_mac() -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut filled = 0;
    while filled < mac.len() {
        // SAFETY: getrandom writes at most the given length into the buffer we own.
        let n =
            unsafe { libc::getrandom(mac[filled..].as_mut_ptr().cast(), mac.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::io("getrandom", e));
        }
        filled += n as usize;
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

/// Whether a link is one of Berth's bridges.
pub fn is_berth_bridge(l: &Link) -> bool {
    l.kind.as_deref() == Some("bridge") && l.name.starts_with(BRIDGE_PREFIX)
}

/// A host interface (not `except`) with an address inside `subnet`: (interface, address).
pub fn subnet_in_use(
    nl: &mut Netlink,
    subnet: &Subnet,
    except: Option<u32>,
) -> Result<Option<(String, Ipv4Addr)>> {
    let links = nl.links()?;
    for a in nl.addresses()? {
        let IpAddr::V4(ip) = a.addr else { continue };
        if Some(a.index) == except {
            continue;
        }
        // Two prefixes overlap when they agree on the shorter one's bits.
        let m = mask(a.prefix_len.min(subnet.prefix()));
        let clash = u32::from(ip) & m == u32::from(subnet.addr()) & m;
        if clash {
            let name = links
                .iter()
                .find(|l| l.index == a.index)
                .map_or_else(|| format!("#{}", a.index), |l| l.name.clone());
            return Ok(Some((name, ip)));
        }
    }
    Ok(None)
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// Makes the bridge unless it is there: up, with the gateway address, `route_localnet` (so
/// that connections from the host's 127.0.0.1 can be DNAT'ed onto it), and IPv4 forwarding on
/// for a network that is not internal. Returns its index and whether it was made now.
pub fn ensure_bridge(nl: &mut Netlink, cfg: &BridgeConfig) -> Result<(u32, bool)> {
    if let Some(l) = nl.link(&cfg.name)? {
        if l.kind.as_deref() != Some("bridge") {
            return Err(Error::io(
                format!("interface {} exists and is not a bridge", cfg.name),
                std::io::Error::from_raw_os_error(libc::EEXIST),
            ));
        }
        nl.add_address(l.index, cfg.gateway, cfg.subnet.prefix())?;
        return Ok((l.index, false));
    }
    if let Some((iface, ip)) = subnet_in_use(nl, &cfg.subnet, None)? {
        return Err(Error::Invalid {
            what: "subnet",
            value: cfg.subnet.to_string(),
            reason: format!("it overlaps {ip} of host interface {iface}"),
        });
    }
    let index = nl.create_bridge(&cfg.name, random_mac()?)?;
    let configured = (|| -> Result<()> {
        nl.add_address(index, cfg.gateway, cfg.subnet.prefix())?;
        write_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", cfg.name),
            "1",
        )?;
        if !cfg.internal {
            let fwd = "/proc/sys/net/ipv4/ip_forward";
            if std::fs::read_to_string(fwd)
                .map(|v| v.trim() != "1")
                .unwrap_or(true)
            {
                write_sysctl(fwd, "1")?;
            }
        }
        Ok(())
    })();
    if let Err(e) = configured {
        let _ = nl.delete_link(&cfg.name);
        return Err(e);
    }
    Ok((index, true))
}

/// How many interfaces are ports of the bridge `index`.
pub fn port_count(nl: &mut Netlink, index: u32) -> Result<usize> {
    Ok(nl
        .links()?
        .iter()
        .filter(|l| l.master == Some(index))
        .count())
}

/// The MAC address of a container's `eth0`, derived from its IPv4 address (as docker does), so
/// that an address given again later comes with the same MAC and neighbours' ARP caches stay
/// right.
pub fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// Connects a container: the veth pair, `eth0` configured inside `ns`. A leftover link with the
/// host end's name (the previous run of the same container, still being deleted) is deleted
/// first.
pub fn connect(nl: &mut Netlink, bridge: u32, ns: BorrowedFd<'_>, ep: &Endpoint) -> Result<()> {
    let mac = mac_of(ep.address);
    match nl.create_veth(&ep.host_veth, bridge, CONTAINER_IFNAME, mac, ns) {
        Err(e) if e.errno() == Some(libc::EEXIST) => {
            nl.delete_link(&ep.host_veth)?;
            nl.create_veth(&ep.host_veth, bridge, CONTAINER_IFNAME, mac, ns)?;
        }
        r => r?,
    }
    let inside = netns::run_in(ns, || -> Result<()> {
        let mut n = Netlink::new()?;
        let eth0 = n.link(CONTAINER_IFNAME)?.ok_or_else(|| {
            Error::io(
                format!("{CONTAINER_IFNAME} did not arrive in the container's namespace"),
                std::io::Error::from_raw_os_error(libc::ENODEV),
            )
        })?;
        n.add_address(eth0.index, ep.address, ep.subnet.prefix())?;
        n.set_up(eth0.index)?;
        if ep.default_route {
            n.add_default_route(ep.gateway)?;
        }
        Ok(())
    })
    .and_then(|r| r);
    if let Err(e) = inside {
        let _ = nl.delete_link(&ep.host_veth);
        return Err(e);
    }
    Ok(())
}

/// Disconnects a container (deleting one end of a veth pair deletes both); false when it was
/// not connected.
pub fn disconnect(nl: &mut Netlink, host_veth: &str) -> Result<bool> {
    nl.delete_link(host_veth)
}

/// Disconnects a container without waiting: the kernel takes 15-25 ms to unregister a veth pair
/// (synchronize_net), so a detached child process does it (by index, so that a new link with
/// the same name, made meanwhile, is never the one deleted). False when it was not connected.
/// The caller must be single-threaded (it forks).
pub fn disconnect_in_background(nl: &mut Netlink, host_veth: &str) -> Result<bool> {
    let Some(link) = nl.link(host_veth)? else {
        return Ok(false);
    };
    let req = Netlink::delete_request(link.index);
    // SAFETY: the child only makes async-signal-safe system calls on memory prepared before the
    // fork (no allocation, no lock), then _exits.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            let mut ack = [0u8; 256];
            // SAFETY: plain system calls on a socket of our own and buffers we own; _exit never
            // returns.
            unsafe {
                libc::setsid();
                if libc::fork() != 0 {
                    libc::_exit(0);
                }
                let s = libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::NETLINK_ROUTE,
                );
                if s < 0 {
                    libc::_exit(1);
                }
                let mut to: libc::sockaddr_nl = std::mem::zeroed();
                to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
                let sent = libc::sendto(
                    s,
                    req.as_ptr().cast(),
                    req.len(),
                    0,
                    (&to as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                );
                // The acknowledgement comes once the kernel has deleted it.
                if sent > 0 {
                    libc::recv(s, ack.as_mut_ptr().cast(), ack.len(), 0);
                }
                libc::_exit(0)
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None)?;
            Ok(true)
        }
    }
}

/// Waits up to `timeout` until no interface is a port of the bridge `index` any more (ports
/// being deleted in the background); whether none is left.
pub fn wait_no_ports(nl: &mut Netlink, index: u32, timeout: std::time::Duration) -> Result<bool> {
    let end = std::time::Instant::now() + timeout;
    loop {
        if port_count(nl, index)? == 0 {
            return Ok(true);
        }
        if std::time::Instant::now() >= end {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
