//! The nftables backend: batches of nft's JSON commands fed to `nft -j -f -` (each batch is one
//! kernel transaction: all of it or nothing).
//!
//! Berth's table, `inet berth`, has a fixed set of chains and rules, and every network or port
//! is an element of its sets and maps, so adding or removing one never edits a rule:
//!
//! ```text
//! set bridges, internal   (ifname)          the bridges up; those of internal networks
//! set subnets, masq       (ipv4 intervals)  every network's subnet; those to masquerade
//! map ports_any_addr/_port  proto . port           -> container address / port
//! map ports_ip_addr/_port   addr . proto . port    -> container address / port
//! chain forward     (filter, forward)   internal bridges: nothing in or out; bridges: accept
//! chain prerouting  (nat, dstnat)       to a local address: jump ports
//! chain output      (nat, -100)         the same for connections made on the host
//! chain ports                           dnat through the two pairs of maps
//! chain postrouting (nat, srcnat)       masquerade: 127.0.0.0/8 onto a bridge (published ports
//!                                       reached at 127.0.0.1, with route_localnet on the
//!                                       bridge); DNAT'ed traffic of a container back onto a
//!                                       bridge (hairpin); @masq leaving by another interface
//! ```
//!
//! nft 1.0.6 (Debian 12) crashes on JSON maps whose data is a concatenation (`addr . port`), so
//! the address and the port of a DNAT target live in two maps with the same key.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::{Firewall, NetworkRules, PortForward};
use crate::{Error, Result};

/// Berth's table.
pub const TABLE: &str = "berth";
/// Its family.
pub const FAMILY: &str = "inet";

/// The nftables backend (runs the `nft` binary).
pub struct Nftables {
    nft: PathBuf,
}

impl Nftables {
    /// Finds `nft` ($PATH, /usr/sbin, /sbin).
    pub fn new() -> Result<Nftables> {
        let from_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        from_path
            .into_iter()
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|d| d.join("nft"))
            .find(|p| p.is_file())
            .map(|nft| Nftables { nft })
            .ok_or_else(|| {
                Error::Firewall(
                    "nft was not found (install nftables): bridge networks need it".into(),
                )
            })
    }

    /// Applies one batch of commands.
    fn apply(&self, cmds: Vec<Value>) -> Result<()> {
        if cmds.is_empty() {
            return Ok(());
        }
        let doc = serde_json::to_vec(&json!({ "nftables": cmds }))
            .map_err(|e| Error::Firewall(e.to_string()))?;
        let mut child = Command::new(&self.nft)
            .args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("running {}", self.nft.display()), e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&doc)
                .map_err(|e| Error::io("writing to nft", e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::io("waiting for nft", e))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let first = err
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("failed");
            return Err(Error::Firewall(format!(
                "nft ({}): {}",
                out.status,
                first.trim()
            )));
        }
        Ok(())
    }

    /// The table, its sets, maps, chains and rules (chains flushed and their rules written
    /// again, so applying it twice leaves one copy; sets and maps keep their elements).
    fn skeleton() -> Vec<Value> {
        let mut c = vec![json!({"add": {"table": {"family": FAMILY, "name": TABLE}}})];
        let set = |name: &str, typ: Value, interval: bool| {
            let mut s = json!({"family": FAMILY, "table": TABLE, "name": name, "type": typ});
            if interval {
                s["flags"] = json!(["interval"]);
            }
            json!({"add": {"set": s}})
        };
        c.push(set("bridges", json!("ifname"), false));
        c.push(set("internal", json!("ifname"), false));
        c.push(set("subnets", json!("ipv4_addr"), true));
        c.push(set("masq", json!("ipv4_addr"), true));
        let map = |name: &str, key: Value, data: &str| {
            json!({"add": {"map": {"family": FAMILY, "table": TABLE, "name": name,
                "type": key, "map": data}}})
        };
        let any_key = json!(["inet_proto", "inet_service"]);
        let ip_key = json!(["ipv4_addr", "inet_proto", "inet_service"]);
        c.push(map("ports_any_addr", any_key.clone(), "ipv4_addr"));
        c.push(map("ports_any_port", any_key, "inet_service"));
        c.push(map("ports_ip_addr", ip_key.clone(), "ipv4_addr"));
        c.push(map("ports_ip_port", ip_key, "inet_service"));
        let base = |name: &str, typ: &str, hook: &str, prio: i32| {
            json!({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": name,
                "type": typ, "hook": hook, "prio": prio, "policy": "accept"}}})
        };
        c.push(base("forward", "filter", "forward", 0));
        c.push(base("prerouting", "nat", "prerouting", -100));
        c.push(base("output", "nat", "output", -100));
        c.push(base("postrouting", "nat", "postrouting", 100));
        c.push(json!({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": "ports"}}}));
        for chain in ["forward", "prerouting", "output", "postrouting", "ports"] {
            c.push(json!({"flush": {"chain": {"family": FAMILY, "table": TABLE, "name": chain}}}));
        }
        let rule = |chain: &str, expr: Value| {
            json!({"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain,
                "expr": expr}}})
        };
        let meta = |k: &str| json!({"meta": {"key": k}});
        let is = |left: Value, right: Value| json!({"match": {"op": "==", "left": left, "right": right}});
        let not = |left: Value, right: Value| json!({"match": {"op": "!=", "left": left, "right": right}});
        let saddr = json!({"payload": {"protocol": "ip", "field": "saddr"}});
        let daddr = json!({"payload": {"protocol": "ip", "field": "daddr"}});
        let dport = json!({"payload": {"protocol": "th", "field": "dport"}});
        // forward
        c.push(rule(
            "forward",
            json!([is(meta("iifname"), json!("@internal")),
                   not(meta("oifname"), json!("@internal")), {"drop": null}]),
        ));
        c.push(rule(
            "forward",
            json!([is(meta("oifname"), json!("@internal")),
                   not(meta("iifname"), json!("@internal")), {"drop": null}]),
        ));
        c.push(rule(
            "forward",
            json!([is(meta("oifname"), json!("@bridges")),
                   {"match": {"op": "in", "left": {"ct": {"key": "state"}},
                              "right": ["established", "related"]}},
                   {"accept": null}]),
        ));
        c.push(rule(
            "forward",
            json!([is(meta("iifname"), json!("@bridges")), {"accept": null}]),
        ));
        // to a local address: the published ports
        let local = is(
            json!({"fib": {"result": "type", "flags": ["daddr"]}}),
            json!("local"),
        );
        for chain in ["prerouting", "output"] {
            c.push(rule(
                chain,
                json!([local.clone(), {"jump": {"target": "ports"}}]),
            ));
        }
        let lookup = |key: Value, m: &str| json!({"map": {"key": {"concat": key}, "data": m}});
        let any_key = json!([meta("l4proto"), dport.clone()]);
        let ip_key = json!([daddr, meta("l4proto"), dport]);
        for (key, m) in [(ip_key, "ports_ip"), (any_key, "ports_any")] {
            c.push(rule(
                "ports",
                json!([is(meta("nfproto"), json!("ipv4")),
                       {"dnat": {"family": "ip",
                                 "addr": lookup(key.clone(), &format!("@{m}_addr")),
                                 "port": lookup(key, &format!("@{m}_port"))}}]),
            ));
        }
        // postrouting
        c.push(rule(
            "postrouting",
            json!([is(saddr.clone(), json!({"prefix": {"addr": "127.0.0.0", "len": 8}})),
                   is(meta("oifname"), json!("@bridges")), {"masquerade": null}]),
        ));
        c.push(rule(
            "postrouting",
            json!([{"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
                   is(saddr.clone(), json!("@subnets")),
                   is(meta("oifname"), json!("@bridges")), {"masquerade": null}]),
        ));
        c.push(rule(
            "postrouting",
            json!([is(saddr, json!("@masq")),
                   not(meta("oifname"), json!("@bridges")), {"masquerade": null}]),
        ));
        c
    }

    fn element(verb: &str, set: &str, elem: Value) -> Value {
        json!({verb: {"element": {"family": FAMILY, "table": TABLE, "name": set, "elem": [elem]}}})
    }

    fn network_elements(verb: &str, net: &NetworkRules) -> Vec<Value> {
        let prefix = json!({"prefix": {"addr": net.subnet.addr().to_string(),
                                       "len": net.subnet.prefix()}});
        let mut c = vec![
            Self::element(verb, "bridges", json!(net.bridge)),
            Self::element(verb, "subnets", prefix.clone()),
        ];
        if net.internal {
            c.push(Self::element(verb, "internal", json!(net.bridge)));
        } else {
            c.push(Self::element(verb, "masq", prefix));
        }
        c
    }

    fn port_elements(verb: &str, p: &PortForward) -> Vec<Value> {
        let (m, key) = match p.host_ip {
            None => (
                "ports_any",
                json!({"concat": [p.protocol.name(), p.host_port]}),
            ),
            Some(ip) => (
                "ports_ip",
                json!({"concat": [ip.to_string(), p.protocol.name(), p.host_port]}),
            ),
        };
        let (addr, port) = if verb == "delete" {
            (key.clone(), key)
        } else {
            (
                json!([key.clone(), p.container_ip.to_string()]),
                json!([key, p.container_port]),
            )
        };
        vec![
            Self::element(verb, &format!("{m}_addr"), addr),
            Self::element(verb, &format!("{m}_port"), port),
        ]
    }

    /// Deletes elements: in one batch, or, when that fails (some are already gone), one at a
    /// time, skipping those that fail.
    fn delete_elements(&self, cmds: Vec<Value>) -> Result<()> {
        if self.apply(cmds.clone()).is_ok() {
            return Ok(());
        }
        for c in cmds {
            let _ = self.apply(vec![c]);
        }
        Ok(())
    }

    /// Whether Berth's table exists.
    pub fn table_exists(&self) -> bool {
        Command::new(&self.nft)
            .args(["list", "table", FAMILY, TABLE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Firewall for Nftables {
    fn add_network(&self, net: &NetworkRules) -> Result<()> {
        let mut c = Self::skeleton();
        c.extend(Self::network_elements("add", net));
        self.apply(c)
    }

    fn remove_network(&self, net: &NetworkRules, last: bool) -> Result<()> {
        if last {
            let del = json!({"delete": {"table": {"family": FAMILY, "name": TABLE}}});
            return match self.apply(vec![del]) {
                Err(_) if !self.table_exists() => Ok(()),
                r => r,
            };
        }
        self.delete_elements(Self::network_elements("delete", net))
    }

    fn add_ports(&self, ports: &[PortForward]) -> Result<()> {
        let c = ports
            .iter()
            .flat_map(|p| Self::port_elements("add", p))
            .collect();
        self.apply(c)
    }

    fn remove_ports(&self, ports: &[PortForward]) -> Result<()> {
        let c = ports
            .iter()
            .flat_map(|p| Self::port_elements("delete", p))
            .collect();
        self.delete_elements(c)
    }
}
