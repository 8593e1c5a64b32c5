//! The firewall of Berth's networks: one trait, implemented by the nftables backend
//! ([`nftables::Nftables`]). Everything Berth adds lives in a table of its own, so tearing it
//! down never touches anybody else's rules.
//!
//! What a network needs: masquerade for its containers' traffic leaving the host (not for an
//! internal network, whose traffic is kept on its bridge), forward accepts for its bridge, and
//! for published ports DNAT from the host's addresses (127.0.0.1 included, for connections made
//! on the host itself) to the container, with masquerade where the reply would otherwise not
//! come back the same way (from 127.0.0.1; a container through a published port on its own
//! bridge, "hairpin").

pub mod nftables;

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ipam::Subnet;
use crate::Result;

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// `tcp`, `udp`, `sctp`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// From its name.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the firewall needs to know of a network.
#[derive(Debug, Clone)]
pub struct NetworkRules {
    /// Its bridge device.
    pub bridge: String,
    pub subnet: Subnet,
    /// No traffic in or out of the bridge (no masquerade, forwarding dropped).
    pub internal: bool,
}

/// A published port: connections to `host_ip:host_port` (any local address when None) go to
/// `container_ip:container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub protocol: Protocol,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

/// A firewall backend.
pub trait Firewall {
    /// Sets up the rules of a network whose bridge was just made (idempotent: applying it again
    /// changes nothing).
    fn add_network(&self, net: &NetworkRules) -> Result<()>;
    /// Removes a network's rules; `last`: no other network of Berth is up on this host, so
    /// everything Berth added goes.
    fn remove_network(&self, net: &NetworkRules, last: bool) -> Result<()>;
    /// Publishes ports (all or none).
    fn add_ports(&self, ports: &[PortForward]) -> Result<()>;
    /// Withdraws published ports (those that are not there are skipped).
    fn remove_ports(&self, ports: &[PortForward]) -> Result<()>;
}
