//! Bridge networks for Berth's containers, netavark-style: small modules the engine calls.
//!
//! * [`netlink`]: rtnetlink requests, synchronous (bridge, veth pair, addresses, routes, link up,
//!   links moved into a network namespace), with `netlink-packet-route` over a `netlink-sys` socket;
//! * [`netns`]: persistent network namespaces (bind-mounted nsfs files) and work inside them;
//! * [`ipam`]: subnets and addresses: parsing, overlap, the next free address or subnet (pure);
//! * [`bridge`]: the steps put together: a network's bridge up or down, a container's veth in or out;
//! * [`firewall`]: one trait, and an nftables backend with a table of Berth's own (`inet berth`):
//!   masquerade, forward accepts, DNAT of published ports (also from the host's 127.0.0.1);
//! * [`dns`]: a small DNS server for a network: A records for its containers' names from a
//!   hosts-like file, the rest forwarded to the host's resolvers.
//!
//! Nothing here keeps state of its own: the engine records networks, addresses and ports in its
//! database and calls these functions to make the kernel match.

pub mod bridge;
pub mod dns;
pub mod firewall;
pub mod ipam;
pub mod netlink;
pub mod netns;

/// Errors of this crate; each says what was being done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A netlink request failed.
    #[error("netlink: {op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: std::io::Error,
    },
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A value given by the user is not valid.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// The firewall backend refused a change.
    #[error("firewall: {0}")]
    Firewall(String),
    /// A malformed DNS message.
    #[error("dns: {0}")]
    Dns(String),
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// The OS error number, when this is an I/O or netlink error.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Netlink { source, .. } | Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Error {
        Error::io("system call", std::io::Error::from(e))
    }
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
