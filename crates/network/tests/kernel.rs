//! The library against the kernel, as root, each test in a network namespace of its own (the
//! test's thread unshares one; nft, run from that thread, works in it too), so the host's
//! interfaces and rules are never touched: a bridge, two "containers" (persistent namespaces
//! with a veth each) talking TCP, a published port reached at 127.0.0.1, a hairpin connection
//! through the gateway, and everything gone after the teardown.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use berth_network::bridge::{self, BridgeConfig, Endpoint};
use berth_network::firewall::nftables::Nftables;
use berth_network::firewall::{Firewall, NetworkRules, PortForward, Protocol};
use berth_network::ipam::Subnet;
use berth_network::netlink::Netlink;
use berth_network::netns;

/// A temp dir for namespace files; on drop (a failed test included) whatever is still mounted
/// under it is unmounted, so that the dir can go.
struct NsDir(tempfile::TempDir);

impl NsDir {
    fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Drop for NsDir {
    fn drop(&mut self) {
        let dir = self.0.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for m in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
            if m.starts_with(&format!("{dir}/")) {
                let _ = netns::remove(std::path::Path::new(m));
            }
        }
    }
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Moves this test's thread into a new network namespace (loopback up).
fn sandbox() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    Netlink::new().unwrap().set_up(1).unwrap();
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn nft_ruleset() -> String {
    let o = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A TCP server inside a namespace: accepts one connection, answers "hello from NAME".
fn serve_in(
    ns: &std::os::fd::OwnedFd,
    addr: SocketAddr,
    name: &'static str,
) -> std::thread::JoinHandle<()> {
    // The previous server's connection may still be closing: retry a little.
    let mut tries = 0;
    let l = loop {
        match netns::run_in(ns.as_fd(), || TcpListener::bind(addr)).unwrap() {
            Ok(l) => break l,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("bind {addr}: {e}, again");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    };
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.write_all(format!("hello from {name}").as_bytes());
        }
    })
}

fn read_all(mut s: TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn bridge_veth_firewall_and_teardown() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    sandbox();
    let links_before: Vec<String> = Netlink::new()
        .unwrap()
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    let dir = NsDir(tempfile::tempdir().unwrap());
    let subnet: Subnet = "10.213.0.0/24".parse().unwrap();
    let cfg = BridgeConfig {
        name: "berth-test0".into(),
        subnet,
        gateway: subnet.first_host(),
        internal: false,
    };
    let mut nl = Netlink::new().unwrap();
    let (br, made) = bridge::ensure_bridge(&mut nl, &cfg).unwrap();
    assert!(made);
    assert_eq!(bridge::ensure_bridge(&mut nl, &cfg).unwrap(), (br, false));
    // The same subnet under another name is refused: the host has it.
    let clash = BridgeConfig {
        name: "berth-test1".into(),
        ..cfg.clone()
    };
    let e = bridge::ensure_bridge(&mut nl, &clash)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("10.213.0.0/24") && e.contains("berth-test0"),
        "{e}"
    );
    let fw = Nftables::new().unwrap();
    let rules = NetworkRules {
        bridge: cfg.name.clone(),
        subnet,
        internal: false,
    };
    fw.add_network(&rules).unwrap();
    fw.add_network(&rules).unwrap(); // idempotent

    let mut spaces = Vec::new();
    for (i, addr) in ["10.213.0.2", "10.213.0.3"].iter().enumerate() {
        let path = dir.path().join(format!("ns{i}"));
        let ns = netns::create(&path).unwrap();
        bridge::connect(
            &mut nl,
            br,
            ns.as_fd(),
            &Endpoint {
                host_veth: format!("vethtest{i}"),
                address: ip(addr),
                subnet,
                gateway: cfg.gateway,
                default_route: true,
            },
        )
        .unwrap();
        spaces.push((path, ns));
    }
    assert_eq!(bridge::port_count(&mut nl, br).unwrap(), 2);

    // Container 0 talks to container 1 directly.
    let t = serve_in(&spaces[1].1, "10.213.0.3:80".parse().unwrap(), "one");
    let s = netns::run_in(spaces[0].1.as_fd(), || TcpStream::connect("10.213.0.3:80"))
        .unwrap()
        .unwrap();
    assert_eq!(read_all(s), "hello from one");
    t.join().unwrap();

    // A published port: the host's 127.0.0.1:18080 -> container 1's port 80.
    let port = PortForward {
        host_ip: None,
        host_port: 18080,
        protocol: Protocol::Tcp,
        container_ip: ip("10.213.0.3"),
        container_port: 80,
    };
    fw.add_ports(&[port]).unwrap();
    let t = serve_in(&spaces[1].1, "10.213.0.3:80".parse().unwrap(), "one");
    assert_eq!(
        read_all(TcpStream::connect("127.0.0.1:18080").unwrap()),
        "hello from one"
    );
    t.join().unwrap();
    // Hairpin: container 0 reaches container 1 through the published port on the gateway.
    let t = serve_in(&spaces[1].1, "10.213.0.3:80".parse().unwrap(), "one");
    let s = netns::run_in(spaces[0].1.as_fd(), || {
        TcpStream::connect("10.213.0.1:18080")
    })
    .unwrap()
    .unwrap();
    assert_eq!(read_all(s), "hello from one");
    t.join().unwrap();
    // A port bound to one host address only.
    let only = PortForward {
        host_ip: Some(ip("127.0.0.1")),
        host_port: 18081,
        ..port
    };
    fw.add_ports(&[only]).unwrap();
    let t = serve_in(&spaces[1].1, "10.213.0.3:80".parse().unwrap(), "one");
    assert_eq!(
        read_all(TcpStream::connect("127.0.0.1:18081").unwrap()),
        "hello from one"
    );
    t.join().unwrap();
    fw.remove_ports(&[port, only]).unwrap();
    fw.remove_ports(&[port]).unwrap(); // already gone: skipped
    assert!(TcpStream::connect("127.0.0.1:18080").is_err());

    // eth0's MAC is derived from its address.
    let out = Command::new("nsenter")
        .arg(format!("--net={}", spaces[1].0.display()))
        .args(["ip", "-o", "link", "show", "eth0"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("link/ether 02:42:0a:d5:00:03"), "{out}");
    assert_eq!(bridge::mac_of(ip("10.213.0.3")), [2, 0x42, 10, 213, 0, 3]);

    // Teardown: one veth deleted here, the other by a detached child.
    for (i, (path, ns)) in spaces.into_iter().enumerate() {
        let name = format!("vethtest{i}");
        if i == 0 {
            assert!(bridge::disconnect(&mut nl, &name).unwrap());
        } else {
            assert!(bridge::disconnect_in_background(&mut nl, &name).unwrap());
        }
        drop(ns);
        netns::remove(&path).unwrap();
        assert!(!path.exists());
    }
    assert!(!bridge::disconnect(&mut nl, "vethtest0").unwrap());
    assert!(bridge::wait_no_ports(&mut nl, br, Duration::from_secs(5)).unwrap());
    assert!(nl.link("vethtest1").unwrap().is_none());
    fw.remove_network(&rules, true).unwrap();
    assert!(nl.delete_link(&cfg.name).unwrap());
    fw.remove_network(&rules, true).unwrap(); // no table: nothing to do
    assert!(!nft_ruleset().contains("berth"), "{}", nft_ruleset());
    let links_after: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(links_before, links_after);
}

#[test]
fn removing_one_network_keeps_the_others_rules() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    sandbox();
    let fw = Nftables::new().unwrap();
    let a = NetworkRules {
        bridge: "berth-a".into(),
        subnet: "10.214.0.0/24".parse().unwrap(),
        internal: false,
    };
    let b = NetworkRules {
        bridge: "berth-b".into(),
        subnet: "10.214.1.0/24".parse().unwrap(),
        internal: true,
    };
    fw.add_network(&a).unwrap();
    fw.add_network(&b).unwrap();
    let rs = nft_ruleset();
    assert!(
        rs.contains("\"berth-a\"") && rs.contains("\"berth-b\""),
        "{rs}"
    );
    fw.remove_network(&a, false).unwrap();
    let rs = nft_ruleset();
    assert!(
        !rs.contains("berth-a") && rs.contains("\"berth-b\"") && rs.contains("10.214.1.0/24"),
        "{rs}"
    );
    fw.remove_network(&b, true).unwrap();
    assert!(!nft_ruleset().contains("berth"));
}

#[test]
fn a_namespace_file_comes_and_goes() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = NsDir(tempfile::tempdir().unwrap());
    let path = dir.path().join("sub/ns");
    let ns = netns::create(&path).unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(mounts.contains(path.to_str().unwrap()));
    // Only a loopback, up, inside.
    let links = netns::run_in(ns.as_fd(), || Netlink::new().unwrap().links().unwrap()).unwrap();
    assert_eq!(
        links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["lo"]
    );
    drop(ns);
    netns::remove(&path).unwrap();
    netns::remove(&path).unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(path.to_str().unwrap()));
}
