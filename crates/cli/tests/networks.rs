//! Networks on real containers (as root): `berth network create/ls/inspect/rm/prune`, the
//! default bridge, user networks with DNS by name, `-p`/`-P` published ports, `--network none`,
//! `--ip`, bad input, concurrent runs.
//!
//! Each test runs the engine inside a network namespace of its own (the test body runs on a
//! thread that unshared one; every `berth` it starts, the containers' monitors and DNS servers
//! inherit it), which is the "host" the engine configures: its bridges, veth pairs, nftables
//! table and published ports live there, so tests can run side by side and nothing reaches the
//! machine's own interfaces, rules or network. Every test snapshots that host before and checks
//! after (links, the whole nft ruleset, nsfs mounts under its runroot, DNS server processes of
//! its runroot) that the engine left it exactly as it found it; the fixture removes containers
//! and networks also when a test fails.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::engine::{http_get, in_own_netns, retry, Engine};

/// What the engine may change on its host.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    links: Vec<String>,
    ruleset: String,
    ns_mounts: Vec<String>,
    dns_servers: Vec<String>,
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Interface names, `nft list ruleset`, and what of the engine's runroot is mounted or running.
fn host_state(runroot: &str) -> HostState {
    let mut links: Vec<String> = sh("ip", &["-o", "link"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    links.sort();
    let ns_mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(runroot))
        .map(str::to_string)
        .collect();
    let mut dns_servers = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains("dns-serve") && c.contains(runroot) {
                dns_servers.push(c);
            }
        }
    }
    HostState {
        links,
        ruleset: sh("nft", &["list", "ruleset"]),
        ns_mounts,
        dns_servers,
    }
}

/// An engine on a host of its own (see the module's doc).
struct Net {
    e: Engine,
    before: HostState,
}

impl Net {
    fn runroot(&self) -> String {
        self.e.b.runroot.path().to_string_lossy().into_owned()
    }

    fn networks(&self) -> Vec<String> {
        self.e
            .ok(&["network", "ls", "--format", "json"])
            .parse::<serde_json::Value>()
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["Name"].as_str().unwrap().to_string())
            .collect()
    }

    /// The container's address (inspect).
    fn ip(&self, name: &str) -> String {
        self.e.inspect(name)["NetworkSettings"]["IPAddress"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits (veth pairs are deleted in the background, in 15-25 ms) until the host is as it
    /// was before the test; fails with the difference after 10 s.
    fn assert_host_as_before(&self) {
        let t = Instant::now();
        loop {
            let now = host_state(&self.runroot());
            if now == self.before {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the engine left its host changed:\nbefore: {:#?}\nafter: {now:#?}",
                self.before
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes every container and network (the default one included: its bridge goes with
    /// it), then checks the host is as it was.
    fn finish(self) {
        for id in self.e.ids() {
            self.e.ok(&["rm", "-f", &id]);
        }
        for n in self.networks() {
            self.e.ok(&["network", "rm", &n]);
        }
        self.e.assert_clean();
        self.assert_host_as_before();
    }
}

/// Runs a test body on a thread in a new network namespace (loopback up), with an engine.
fn on_own_host(body: impl FnOnce(&Net) + Send) {
    in_own_netns(|| {
        let e = Engine::new();
        let runroot = e.b.runroot.path().to_string_lossy().into_owned();
        let before = host_state(&runroot);
        let net = Net { e, before };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&net)));
        match r {
            Ok(()) => net.finish(),
            Err(p) => {
                // Tidy up as far as possible, then report the test's own failure.
                for id in net.e.ids() {
                    let _ = net.e.output(&["rm", "-f", &id]);
                }
                for n in net.networks() {
                    let _ = net.e.output(&["network", "rm", &n]);
                }
                std::panic::resume_unwind(p);
            }
        }
    })
}

/// A free TCP port of the test's host.
fn free_port() -> u16 {
    common::free_port()
}

#[test]
fn two_containers_talk_by_name_on_a_user_network() {
    on_own_host(|n| {
        let e = &n.e;
        let id = e.ok(&["network", "create", "--subnet", "10.89.7.0/24", "tnet"]);
        assert_eq!(id.trim().len(), 64);
        let web = e.ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "tnet",
            "bb",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ]);
        let web = web.trim();
        e.ok(&[
            "run",
            "-d",
            "--name",
            "srv",
            "--network",
            "tnet",
            "bb",
            "sh",
            "-c",
            "while true; do echo hello over tcp | nc -l -p 7000; done",
        ]);
        assert_eq!(n.ip("web"), "10.89.7.2");
        assert_eq!(n.ip("srv"), "10.89.7.3");
        // By name, bare and in the search domain (busybox wget and nc resolve through the
        // network's DNS server on the gateway).
        let out = e.ok(&[
            "run",
            "--rm",
            "--network",
            "tnet",
            "bb",
            "sh",
            "-c",
            &retry(
                "wget -q -O - http://web/hostname && wget -q -O - http://web.dns.berth/hostname",
            ),
        ]);
        assert_eq!(out, format!("{}\n{}\n", &web[..12], &web[..12]));
        let out = e.ok(&[
            "run",
            "--rm",
            "--network",
            "tnet",
            "bb",
            "sh",
            "-c",
            &retry("nc srv 7000"),
        ]);
        assert_eq!(out.trim(), "hello over tcp");
        let resolv = e.ok(&[
            "run",
            "--rm",
            "--network",
            "tnet",
            "bb",
            "cat",
            "/etc/resolv.conf",
        ]);
        assert!(
            resolv.contains("search dns.berth\nnameserver 10.89.7.1\n"),
            "{resolv}"
        );
        // An unknown name of the domain is not found (answered locally, never forwarded).
        let o = e.output(&[
            "run",
            "--rm",
            "--network",
            "tnet",
            "bb",
            "nslookup",
            "nosuch.dns.berth",
            "10.89.7.1",
        ]);
        assert!(!o.status.success());
        // inspect lists the containers; the bridge, its veths and the DNS server exist.
        let v: serde_json::Value =
            serde_json::from_str(&e.ok(&["network", "inspect", "tnet"])).unwrap();
        let ctrs = v[0]["Containers"].as_object().unwrap();
        assert_eq!(ctrs.len(), 2, "{v}");
        assert_eq!(v[0]["IPAM"]["Config"][0]["Gateway"], "10.89.7.1");
        let bridge = v[0]["Options"]["com.docker.network.bridge.name"]
            .as_str()
            .unwrap()
            .to_string();
        let now = host_state(&n.runroot());
        assert!(now.links.contains(&bridge), "{now:?}");
        assert_eq!(now.dns_servers.len(), 1, "{now:?}");
        assert_eq!(now.ns_mounts.len(), 2, "{now:?}");
        // The network's last container takes its namespace, veth and DNS server with it; the
        // bridge and its rules stay with the network, until `network rm`.
        e.ok(&["rm", "-f", "web", "srv"]);
        let now = host_state(&n.runroot());
        assert!(now.links.contains(&bridge), "{now:?}");
        assert!(
            now.dns_servers.is_empty() && now.ns_mounts.is_empty(),
            "{now:?}"
        );
        e.ok(&["network", "rm", "tnet"]);
        n.assert_host_as_before();
    });
}

#[test]
fn published_ports_answer_on_the_host_loopback_and_through_the_gateway() {
    on_own_host(|n| {
        let e = &n.e;
        let port = free_port();
        let p = format!("{port}:80");
        let web = e.ok(&[
            "run", "-d", "--name", "web", "-p", &p, "bb", "httpd", "-f", "-p", "80", "-h", "/etc",
        ]);
        // From the host, at 127.0.0.1 (DNAT in the output chain, route_localnet on the bridge).
        assert_eq!(http_get(port, "/hostname").trim(), &web.trim()[..12]);
        let ports = &e.inspect("web")["NetworkSettings"]["Ports"]["80/tcp"][0];
        assert_eq!(ports["HostPort"], port.to_string());
        // ps shows them as docker does.
        let ps = e.ok(&["ps", "--format", "{{.Names}} {{.Ports}}"]);
        assert!(ps.contains(&format!("web 0.0.0.0:{port}->80/tcp")), "{ps}");
        // From another container, through the published port on the default bridge's gateway.
        let url = format!("http://10.88.0.1:{port}/hostname");
        let out = e.ok(&[
            "run",
            "--rm",
            "bb",
            "sh",
            "-c",
            &retry(&format!("wget -q -O - {url}")),
        ]);
        assert_eq!(out.trim(), &web.trim()[..12]);
        // The same port again is refused, naming it; nothing of the second container stays.
        let err = e.fails_with(125, &["run", "--rm", "-p", &p, "bb", "true"]);
        assert!(
            err.contains(&port.to_string()) && err.contains("web"),
            "{err}"
        );
        // -P: the image's exposed ports, each to a free host port; bound to 127.0.0.1 only too.
        e.import_image("exposing:1", &["EXPOSE 80/tcp"], |_| {});
        e.ok(&[
            "run",
            "-d",
            "--name",
            "auto",
            "-P",
            "exposing:1",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ]);
        let hp: u16 = e.inspect("auto")["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_ne!(hp, port);
        let host = e.inspect("auto")["Config"]["Hostname"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(http_get(hp, "/hostname").trim(), host);
        let lo_port = free_port();
        e.ok(&[
            "run",
            "-d",
            "--name",
            "lo",
            "-p",
            &format!("127.0.0.1:{lo_port}:80"),
            "bb",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ]);
        assert!(!http_get(lo_port, "/hostname").is_empty());
        e.ok(&["rm", "-f", "web", "auto", "lo"]);
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the port is still forwarded"
        );
        let rules = sh("nft", &["list", "table", "inet", "berth"]);
        assert!(!rules.contains(&port.to_string()), "{rules}");
    });
}

#[test]
fn network_none_has_only_loopback_and_host_has_the_hosts() {
    on_own_host(|n| {
        let e = &n.e;
        let out = e.ok(&["run", "--rm", "--network", "none", "bb", "ip", "-o", "link"]);
        let names: Vec<&str> = out.lines().filter_map(|l| l.split(": ").nth(1)).collect();
        assert_eq!(names, ["lo"], "{out}");
        // The default is the bridge network: eth0 with an address of 10.88.0.0/16, and the
        // route out via the gateway.
        let out = e.ok(&[
            "run",
            "--rm",
            "bb",
            "sh",
            "-c",
            "ip -o -4 addr show eth0; ip route",
        ]);
        assert!(out.contains("inet 10.88.0.2/16"), "{out}");
        assert!(out.contains("default via 10.88.0.1 dev eth0"), "{out}");
        let hosts = e.ok(&[
            "run",
            "--rm",
            "--add-host",
            "db:10.1.2.3",
            "--add-host",
            "gw:host-gateway",
            "--hostname",
            "h1",
            "--dns",
            "192.0.2.53",
            "bb",
            "cat",
            "/etc/hosts",
            "/etc/resolv.conf",
        ]);
        assert!(hosts.contains("10.88.0.2\th1\n"), "{hosts}");
        assert!(
            hosts.contains("10.1.2.3\tdb\n") && hosts.contains("10.88.0.1\tgw\n"),
            "{hosts}"
        );
        assert!(hosts.contains("nameserver 192.0.2.53\n"), "{hosts}");
        // --ip, and --network container:NAME shares another's namespace.
        e.ok(&[
            "run",
            "-d",
            "--name",
            "a",
            "--ip",
            "10.88.3.3",
            "bb",
            "sleep",
            "60",
        ]);
        let out = e.ok(&[
            "run",
            "--rm",
            "--network",
            "container:a",
            "bb",
            "ip",
            "-o",
            "-4",
            "addr",
            "show",
            "eth0",
        ]);
        assert!(out.contains("inet 10.88.3.3/16"), "{out}");
        // --network host: the host's interfaces (here, the test's host: lo only, then berth0).
        let out = e.ok(&["run", "--rm", "--network", "host", "bb", "ip", "-o", "link"]);
        assert!(out.contains("berth0"), "{out}");
        e.ok(&["rm", "-f", "a"]);
    });
}

#[test]
fn bad_input_is_refused_clearly_and_leaves_nothing() {
    on_own_host(|n| {
        let e = &n.e;
        // A port in use on the host.
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let bp = busy.local_addr().unwrap().port();
        for spec in [format!("{bp}:80"), format!("127.0.0.1:{bp}:80")] {
            let err = e.fails_with(125, &["run", "--rm", "-p", &spec, "bb", "true"]);
            assert!(
                err.contains(&format!("port {bp}/tcp is already in use")),
                "{err}"
            );
        }
        drop(busy);
        let err = e.fails_with(125, &["run", "--rm", "--network", "nosuch", "bb", "true"]);
        assert!(err.contains("network nosuch not found"), "{err}");
        let err = e.fails_with(125, &["create", "--network", "nosuch", "bb", "true"]);
        assert!(err.contains("nosuch"), "{err}");
        e.ok(&["network", "create", "--subnet", "10.89.20.0/24", "n1"]);
        let err = e.fails_with(
            125,
            &["network", "create", "--subnet", "10.89.20.128/25", "n2"],
        );
        assert!(err.contains("overlaps") && err.contains("n1"), "{err}");
        let err = e.fails_with(
            125,
            &["network", "create", "--subnet", "10.88.1.0/24", "n2"],
        );
        assert!(err.contains("overlaps") && err.contains("bridge"), "{err}");
        for bad in [
            "10.89.21.1/24",
            "10.89.21.0/33",
            "nonsense",
            "10.89.21.0/31",
        ] {
            let err = e.fails_with(125, &["network", "create", "--subnet", bad, "n2"]);
            assert!(err.contains(bad), "{err}");
        }
        let err = e.fails_with(
            125,
            &[
                "network",
                "create",
                "--subnet",
                "10.89.21.0/24",
                "--gateway",
                "10.89.22.1",
                "n2",
            ],
        );
        assert!(err.contains("10.89.22.1"), "{err}");
        let err = e.fails_with(125, &["network", "create", "n1"]);
        assert!(err.contains("\"n1\" is already in use"), "{err}");
        let err = e.fails_with(125, &["network", "create", "host"]);
        assert!(err.contains("reserved"), "{err}");
        e.ok(&["create", "--name", "user", "--network", "n1", "bb", "true"]);
        let err = e.fails_with(125, &["network", "rm", "n1"]);
        assert!(err.contains("in use") && err.contains("user"), "{err}");
        e.ok(&["create", "--name", "user2", "bb", "true"]);
        let err = e.fails_with(125, &["network", "rm", "bridge"]);
        assert!(err.contains("in use") && err.contains("user2"), "{err}");
        e.ok(&["rm", "user", "user2"]);
        let err = e.fails_with(125, &["network", "rm", "nosuch"]);
        assert!(err.contains("nosuch"), "{err}");
        let err = e.fails_with(
            125,
            &[
                "run",
                "--rm",
                "--network",
                "n1",
                "--ip",
                "10.89.99.9",
                "bb",
                "true",
            ],
        );
        assert!(
            err.contains("10.89.99.9") && err.contains("10.89.20.0/24"),
            "{err}"
        );
        let err = e.fails_with(
            125,
            &["run", "--rm", "--network", "none", "-p", "80", "bb", "true"],
        );
        assert!(err.contains("bridge network"), "{err}");
        for bad in ["99999:80", "80/icmp", "1.2.3:80:80"] {
            e.fails_with(125, &["run", "--rm", "-p", bad, "bb", "true"]);
        }
        e.fails_with(125, &["run", "--rm", "--dns", "nope", "bb", "true"]);
        e.fails_with(125, &["run", "--rm", "--add-host", "nocolon", "bb", "true"]);
        e.ok(&[
            "network",
            "create",
            "--internal",
            "--subnet",
            "10.89.30.0/24",
            "inside",
        ]);
        let err = e.fails_with(
            125,
            &[
                "run",
                "--rm",
                "--network",
                "inside",
                "-p",
                "80",
                "bb",
                "true",
            ],
        );
        assert!(err.contains("internal"), "{err}");
        // An internal network: no route out.
        let out = e.ok(&["run", "--rm", "--network", "inside", "bb", "ip", "route"]);
        assert!(!out.contains("default"), "{out}");
        // A failed start (no such command) releases the address and the namespace.
        e.fails_with(
            127,
            &["run", "--rm", "--network", "n1", "bb", "/nonexistent"],
        );
        e.ok(&[
            "run",
            "-d",
            "--name",
            "after",
            "--network",
            "n1",
            "bb",
            "sleep",
            "60",
        ]);
        assert_eq!(n.ip("after"), "10.89.20.2");
        e.ok(&["rm", "-f", "after"]);
        assert!(e.ids().is_empty());
        let out = e.ok(&["network", "prune"]);
        assert!(out.contains("n1") && out.contains("inside"), "{out}");
        assert_eq!(n.networks(), ["bridge"]);
        // The default network can go too when unused (it is made again on first use).
        e.ok(&["network", "rm", "bridge"]);
        n.assert_host_as_before();
        e.ok(&["run", "--rm", "bb", "true"]);
    });
}

#[test]
fn concurrent_runs_never_share_an_address() {
    on_own_host(|n| {
        let e = &n.e;
        // A /28: the gateway and 13 addresses.
        e.ok(&["network", "create", "--subnet", "10.89.40.0/28", "small"]);
        let children: Vec<_> = (0..10)
            .map(|i| {
                e.cmd()
                    .args([
                        "run",
                        "-d",
                        "--name",
                        &format!("c{i}"),
                        "--network",
                        "small",
                        "bb",
                        "sleep",
                        "60",
                    ])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let mut ips: Vec<String> = (0..10).map(|i| n.ip(&format!("c{i}"))).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 10, "{ips:?}");
        for ip in &ips {
            assert!(ip.starts_with("10.89.40."), "{ip}");
        }
        // Each answers on its own address (no two containers claim one).
        let out = e.ok(&[
            "run",
            "--rm",
            "--network",
            "small",
            "bb",
            "sh",
            "-c",
            &format!(
                "for a in {}; do ping -c 1 -W 2 $a >/dev/null || echo lost $a; done; echo done",
                ips.join(" ")
            ),
        ]);
        assert_eq!(out.trim(), "done", "{out}");
        // The network is full now: the next run fails clearly and leaves nothing.
        e.ok(&[
            "run",
            "-d",
            "--name",
            "c10",
            "--network",
            "small",
            "bb",
            "sleep",
            "60",
        ]);
        e.ok(&[
            "run",
            "-d",
            "--name",
            "c11",
            "--network",
            "small",
            "bb",
            "sleep",
            "60",
        ]);
        e.ok(&[
            "run",
            "-d",
            "--name",
            "c12",
            "--network",
            "small",
            "bb",
            "sleep",
            "60",
        ]);
        let err = e.fails_with(
            125,
            &[
                "run",
                "--rm",
                "--name",
                "full",
                "--network",
                "small",
                "bb",
                "true",
            ],
        );
        assert!(err.contains("no free address"), "{err}");
        // An address in use is refused by --ip, naming its holder.
        let err = e.fails_with(
            125,
            &[
                "run",
                "--rm",
                "--network",
                "small",
                "--ip",
                &ips[0],
                "bb",
                "true",
            ],
        );
        assert!(err.contains("already in use"), "{err}");
        assert_eq!(e.ids().len(), 13);
    });
}
