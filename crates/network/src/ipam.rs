//! IPv4 address management, pure: subnets parsed and checked, overlaps, the gateway, the lowest
//! free address of a subnet, the first free subnet of a pool. The engine keeps what is taken in
//! its database (a `UNIQUE (network, address)` row per address) and asks here what to take next.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::{Error, Result};

/// An IPv4 subnet: a network address (no host bits set) and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

/// The smallest subnet a network may have: a /30 holds a gateway and one container.
pub const MAX_PREFIX: u8 = 30;
/// The largest: a /8.
pub const MIN_PREFIX: u8 = 8;

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Subnet {
    /// A subnet from its network address and prefix; the address must have no host bits set.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Subnet> {
        let s = format!("{addr}/{prefix}");
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&prefix) {
            return Err(Error::Invalid {
                what: "subnet",
                value: s,
                reason: format!("the prefix length must be {MIN_PREFIX} to {MAX_PREFIX}"),
            });
        }
        if u32::from(addr) & !mask(prefix) != 0 {
            let net = Ipv4Addr::from(u32::from(addr) & mask(prefix));
            return Err(Error::Invalid {
                what: "subnet",
                value: s,
                reason: format!("host bits are set (the network is {net}/{prefix})"),
            });
        }
        Ok(Subnet { addr, prefix })
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    /// Whether `ip` is in this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.addr) & mask(p) == u32::from(other.addr) & mask(p)
    }

    /// The default gateway: the first host address.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// Whether `ip` may be given to a host (in the subnet, neither the network nor the
    /// broadcast address).
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.addr && ip != self.broadcast()
    }

    /// Checks a gateway given for this subnet.
    pub fn check_gateway(&self, gw: Ipv4Addr) -> Result<()> {
        if !self.is_host(gw) {
            return Err(Error::Invalid {
                what: "gateway",
                value: gw.to_string(),
                reason: format!("not a host address of the subnet {self}"),
            });
        }
        Ok(())
    }

    /// Checks an address asked for a container (`--ip`).
    pub fn check_address(&self, gateway: Ipv4Addr, ip: Ipv4Addr) -> Result<()> {
        if !self.is_host(ip) {
            return Err(Error::Invalid {
                what: "address",
                value: ip.to_string(),
                reason: format!("not a host address of the subnet {self}"),
            });
        }
        if ip == gateway {
            return Err(Error::Invalid {
                what: "address",
                value: ip.to_string(),
                reason: "it is the network's gateway".into(),
            });
        }
        Ok(())
    }

    /// The lowest host address that is neither the gateway nor in `used`.
    pub fn next_free(&self, gateway: Ipv4Addr, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        let first = u32::from(self.addr) + 1;
        let last = u32::from(self.broadcast());
        (first..last)
            .map(Ipv4Addr::from)
            .find(|ip| *ip != gateway && !used.contains(ip))
    }

    /// The subnets of `prefix` inside this one, in order.
    pub fn subnets(&self, prefix: u8) -> impl Iterator<Item = Subnet> {
        let base = u32::from(self.addr);
        let count: u64 = if prefix >= self.prefix {
            1u64 << (prefix - self.prefix)
        } else {
            0
        };
        let step = 1u64 << (32 - u32::from(prefix));
        (0..count).map(move |i| Subnet {
            addr: Ipv4Addr::from((u64::from(base) + i * step) as u32),
            prefix,
        })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = Error;

    fn from_str(s: &str) -> Result<Subnet> {
        let bad = |reason: &str| Error::Invalid {
            what: "subnet",
            value: s.into(),
            reason: reason.into(),
        };
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| bad("want an IPv4 network such as 10.89.0.0/24"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| bad("want an IPv4 network such as 10.89.0.0/24"))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| bad("the prefix length is not a number"))?;
        Subnet::new(addr, prefix)
    }
}

/// The first subnet of `prefix` in `pool` that overlaps none of `taken`.
pub fn next_subnet(pool: Subnet, prefix: u8, taken: &[Subnet]) -> Option<Subnet> {
    pool.subnets(prefix)
        .find(|s| !taken.iter().any(|t| t.overlaps(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_parse_strictly() {
        let s: Subnet = "10.89.3.0/24".parse().unwrap();
        assert_eq!((s.addr(), s.prefix()), (ip("10.89.3.0"), 24));
        assert_eq!(s.broadcast(), ip("10.89.3.255"));
        assert_eq!(s.to_string(), "10.89.3.0/24");
        for bad in [
            "10.89.3.1/24",
            "10.89.3.0",
            "10.89.3.0/33",
            "10.89.3.0/31",
            "10.0.0.0/7",
            "x/24",
            "10.89.3.0/x",
            "::1/64",
        ] {
            let e = bad.parse::<Subnet>().unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        assert!("10.89.3.1/24"
            .parse::<Subnet>()
            .unwrap_err()
            .to_string()
            .contains("10.89.3.0/24"));
    }

    #[test]
    fn overlaps_and_membership() {
        let a: Subnet = "10.88.0.0/16".parse().unwrap();
        let b: Subnet = "10.88.5.0/24".parse().unwrap();
        let c: Subnet = "10.89.0.0/24".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&b));
        assert!(a.contains(ip("10.88.255.7")) && !a.contains(ip("10.89.0.1")));
        assert!(!c.is_host(ip("10.89.0.0")) && !c.is_host(ip("10.89.0.255")));
        assert!(c.is_host(ip("10.89.0.254")));
        assert!(c.check_gateway(ip("10.89.1.1")).is_err());
        assert!(c.check_address(ip("10.89.0.1"), ip("10.89.0.1")).is_err());
        c.check_address(ip("10.89.0.1"), ip("10.89.0.9")).unwrap();
    }

    #[test]
    fn the_lowest_free_address_is_given() {
        let s: Subnet = "10.89.0.0/29".parse().unwrap();
        let gw = s.first_host();
        assert_eq!(gw, ip("10.89.0.1"));
        let mut used = HashSet::new();
        let mut got = Vec::new();
        while let Some(a) = s.next_free(gw, &used) {
            used.insert(a);
            got.push(a.to_string());
        }
        assert_eq!(
            got,
            [
                "10.89.0.2",
                "10.89.0.3",
                "10.89.0.4",
                "10.89.0.5",
                "10.89.0.6"
            ]
        );
        used.remove(&ip("10.89.0.4"));
        assert_eq!(s.next_free(gw, &used), Some(ip("10.89.0.4")));
        // A gateway elsewhere in the subnet is skipped too.
        assert_eq!(
            s.next_free(ip("10.89.0.2"), &HashSet::new()),
            Some(ip("10.89.0.1"))
        );
    }

    #[test]
    fn the_first_free_subnet_of_the_pool() {
        let pool: Subnet = "10.89.0.0/16".parse().unwrap();
        assert_eq!(
            next_subnet(pool, 24, &[]).unwrap().to_string(),
            "10.89.0.0/24"
        );
        let taken = ["10.89.0.0/24", "10.89.1.128/25", "10.89.3.0/24"]
            .map(|s| s.parse::<Subnet>().unwrap());
        assert_eq!(
            next_subnet(pool, 24, &taken).unwrap().to_string(),
            "10.89.2.0/24"
        );
        assert_eq!(next_subnet(pool, 24, &[pool]), None);
        assert_eq!(pool.subnets(24).count(), 256);
    }
}
