//! rtnetlink, synchronously: one `NETLINK_ROUTE` socket per [`Netlink`], one request at a time,
//! each acknowledged (or its dump collected) before the next. A socket belongs to the network
//! namespace it was opened in, so [`Netlink::in_netns`] opens one inside a container's namespace
//! (from a short-lived thread that enters it) and every request on it works there.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::{Error, Result};

/// A network interface, as a link dump shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// The bridge it is a port of.
    pub master: Option<u32>,
    /// `bridge`, `veth`, ... (None for a plain device).
    pub kind: Option<String>,
}

/// An IPv4 or IPv6 address of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// A route socket.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

fn nl_err(op: impl Into<String>, source: std::io::Error) -> Error {
    Error::Netlink {
        op: op.into(),
        source,
    }
}

impl Netlink {
    /// A socket in this thread's network namespace.
    pub fn new() -> Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| nl_err("opening a socket", e))?;
        sock.bind_auto()
            .map_err(|e| nl_err("binding the socket", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| nl_err("connecting the socket", e))?;
        Ok(Netlink { sock, seq: 0 })
    }

    /// A socket inside the network namespace `ns` (an nsfs file, e.g. from [`crate::netns`]).
    pub fn in_netns(ns: BorrowedFd<'_>) -> Result<Netlink> {
        crate::netns::run_in(ns, Netlink::new)?
    }

    /// Sends one request; returns the messages of a dump, or nothing once it is acknowledged.
    fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | flags;
        hdr.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(|e| nl_err(op, e))?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full().map_err(|e| nl_err(op, e))?;
            let mut off = 0;
            while off < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                    .map_err(|e| {
                        nl_err(
                            op,
                            std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
                        )
                    })?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                off += len;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(_) => Err(nl_err(op, e.to_io())),
                            None => Ok(out),
                        };
                    }
                    // A dump's part, or a reply before the acknowledgement.
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }

    /// Every interface.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.request(
            "listing links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })
            .collect())
    }

    /// The interface called `name`.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    /// Creates a bridge (up, with the given MAC address so that it never changes as ports come
    /// and go); its index.
    pub fn create_bridge(&mut self, name: &str, mac: [u8; 6]) -> Result<u32> {
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        self.request(
            &format!("creating bridge {name}"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        self.link(name)?.map(|l| l.index).ok_or_else(|| {
            nl_err(
                format!("creating bridge {name}"),
                std::io::Error::from_raw_os_error(libc::ENODEV),
            )
        })
    }

    /// Creates a veth pair: `host` here, up, a port of bridge `master`; `peer` inside the network
    /// namespace `peer_ns` with the MAC address `peer_mac` (down, to be configured there).
    pub fn create_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        peer_mac: [u8; 6],
        peer_ns: BorrowedFd<'_>,
    ) -> Result<()> {
        let mut p = LinkMessage::default();
        p.attributes = vec![
            LinkAttribute::IfName(peer.into()),
            LinkAttribute::Address(peer_mac.to_vec()),
            LinkAttribute::NetNsFd(peer_ns.as_raw_fd()),
        ];
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes = vec![
            LinkAttribute::IfName(host.into()),
            LinkAttribute::Controller(master),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
            ]),
        ];
        self.request(
            &format!("creating veth pair {host}/{peer}"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Sets an interface up.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(
            &format!("setting link {index} up"),
            RouteNetlinkMessage::SetLink(m),
            NLM_F_ACK,
        )?;
        Ok(())
    }

    /// Deletes an interface by name; false when there was none.
    pub fn delete_link(&mut self, name: &str) -> Result<bool> {
        let mut m = LinkMessage::default();
        m.attributes = vec![LinkAttribute::IfName(name.into())];
        match self.request(
            &format!("deleting link {name}"),
            RouteNetlinkMessage::DelLink(m),
            NLM_F_ACK,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The bytes of a request that deletes interface `index` (sequence number 1, acknowledged),
    /// to be sent where no allocation may happen (a forked child).
    pub fn delete_request(index: u32) -> Vec<u8> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_ACK;
        hdr.sequence_number = 1;
        let mut msg =
            NetlinkMessage::new(hdr, NetlinkPayload::from(RouteNetlinkMessage::DelLink(m)));
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }

    /// Deletes an interface by index; false when there was none.
    pub fn delete_link_index(&mut self, index: u32) -> Result<bool> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        match self.request(
            &format!("deleting link {index}"),
            RouteNetlinkMessage::DelLink(m),
            NLM_F_ACK,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds an IPv4 address with its prefix (and broadcast) to an interface.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix_len;
        m.header.index = index;
        let mask = if prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix_len))
        };
        let bcast = Ipv4Addr::from(u32::from(addr) | !mask);
        m.attributes = vec![
            AddressAttribute::Local(addr.into()),
            AddressAttribute::Address(addr.into()),
            AddressAttribute::Broadcast(bcast),
        ];
        match self.request(
            &format!("adding address {addr}/{prefix_len}"),
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Every IPv4 and IPv6 address.
    pub fn addresses(&mut self) -> Result<Vec<Address>> {
        let replies = self.request(
            "listing addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for m in replies {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                let addr = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let addr = addr.or_else(|| {
                    a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                });
                if let Some(addr) = addr {
                    out.push(Address {
                        index: a.header.index,
                        addr,
                        prefix_len: a.header.prefix_len,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Adds the IPv4 default route via `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(gateway))];
        self.request(
            &format!("adding the default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }
}

fn link_of(l: &LinkMessage) -> Link {
    let mut out = Link {
        index: l.header.index,
        name: String::new(),
        master: None,
        kind: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => out.name = n.clone(),
            LinkAttribute::Controller(m) => out.master = Some(*m),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        out.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    out
}
