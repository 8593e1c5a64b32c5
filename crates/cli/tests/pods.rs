//! Pods and `kube play` on real containers (as root): containers of a pod share the network
//! (localhost), IPC and UTS namespaces of its infra container (`berth-init --pause` from the
//! locally built `localhost/berth-pause` image); pod stop/start/rm; ports published at the pod;
//! Kubernetes manifests played and taken down; bad manifests refused with the field named and
//! nothing made. Each test runs in a network namespace of its own (its "host": see
//! `common::engine::in_own_netns`); the fixture removes pods and containers also when a test
//! fails, and every test checks that nothing is left (rows, dirs, mounts, namespaces, processes).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::engine::{http_get, in_own_netns, processes_under, retry, Engine};

fn pod_inspect(e: &Engine, pod: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["pod", "inspect", pod])).unwrap();
    v[0].clone()
}

/// `readlink /proc/self/ns/<ns>` inside a running container.
fn ns_in(e: &Engine, container: &str, ns: &str) -> String {
    e.ok(&[
        "exec",
        container,
        "readlink",
        &format!("/proc/self/ns/{ns}"),
    ])
    .trim()
    .to_string()
}

/// The namespace of a host process.
fn ns_of(pid: i64, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Everything is gone: containers, pods, their dirs, mounts, namespaces, and every process of
/// the store (monitors, containers).
fn assert_all_gone(e: &Engine, pids: &[i64]) {
    e.assert_clean();
    for p in pids {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "process {p} of the pod is still there"
        );
    }
    e.wait_until("the store's processes are gone", || {
        processes_under(e.b.runroot.path()).is_empty()
    });
}

#[test]
fn a_pods_containers_share_localhost_ipc_and_hostname() {
    in_own_netns(|| {
        let e = Engine::new();
        let pod = e.ok(&["pod", "create", "--name", "p", "--hostname", "podhost"]);
        let pod = pod.trim();
        assert_eq!(pod.len(), 64);
        // The pause image was made locally, and the infra container exists (created).
        let images = e.ok(&["images"]);
        assert!(images.contains("localhost/berth-pause"), "{images}");
        let infra = e.inspect("p-infra");
        assert_eq!(infra["Pod"], pod);
        assert_eq!(infra["IsInfra"], true);
        assert_eq!(pod_inspect(&e, "p")["State"], "Created");

        // A web server in one container, a client in another: localhost is shared.
        e.ok(&[
            "run", "-d", "--pod", "p", "--name", "web", "bb", "sh", "-c",
            "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www",
        ]);
        let got = e.ok(&[
            "run",
            "--rm",
            "--pod",
            "p",
            "bb",
            "sh",
            "-c",
            &retry("wget -qO- http://127.0.0.1:8080/"),
        ]);
        assert_eq!(got, "hello-from-web\n");
        // A container outside the pod does not see that server.
        let o = e.output(&[
            "run",
            "--rm",
            "bb",
            "wget",
            "-T",
            "2",
            "-qO-",
            "http://127.0.0.1:8080/",
        ]);
        assert_ne!(o.status.code(), Some(0), "reached the pod from outside");

        // UTS: the pod's hostname; IPC: one namespace (a POSIX message queue made in one
        // container is seen in the other, not outside).
        assert_eq!(e.ok(&["exec", "web", "hostname"]), "podhost\n");
        e.ok(&[
            "run", "-d", "--pod", "p", "--name", "side", "bb", "sleep", "1000",
        ]);
        assert_eq!(e.ok(&["exec", "side", "hostname"]), "podhost\n");
        e.ok(&["exec", "web", "touch", "/dev/mqueue/berth-q"]);
        assert_eq!(e.ok(&["exec", "side", "ls", "/dev/mqueue"]), "berth-q\n");
        assert_eq!(e.ok(&["run", "--rm", "bb", "ls", "/dev/mqueue"]), "");
        let infra_pid = e.inspect("p-infra")["State"]["Pid"].as_i64().unwrap();
        for ns in ["net", "ipc", "uts"] {
            let want = ns_of(infra_pid, ns);
            assert_eq!(ns_in(&e, "web", ns), want, "{ns} of web");
            assert_eq!(ns_in(&e, "side", ns), want, "{ns} of side");
        }
        // Each container keeps its own pid and mount namespaces.
        assert_ne!(ns_in(&e, "web", "pid"), ns_in(&e, "side", "pid"));
        assert_ne!(ns_in(&e, "web", "mnt"), ns_in(&e, "side", "mnt"));

        let v = pod_inspect(&e, "p");
        assert_eq!(v["State"], "Running");
        assert_eq!(v["Hostname"], "podhost");
        assert_eq!(v["NumContainers"], 3);
        assert_eq!(
            v["SharedNamespaces"],
            serde_json::json!(["ipc", "net", "uts"])
        );
        let ls: serde_json::Value =
            serde_json::from_str(&e.ok(&["pod", "ls", "--format", "json"])).unwrap();
        assert_eq!(ls[0]["Name"], "p");
        assert_eq!(ls[0]["Status"], "Running");
        assert_eq!(e.ok(&["pod", "ls", "-q"]), format!("{}\n", &pod[..12]));
        let table = e.ok(&["pod", "ls"]);
        assert!(
            table.starts_with("POD ID") && table.contains("Running"),
            "{table}"
        );

        let pids: Vec<i64> = ["p-infra", "web", "side"]
            .iter()
            .map(|c| e.inspect(c)["State"]["Pid"].as_i64().unwrap())
            .collect();
        e.ok(&["pod", "rm", "-f", "p"]);
        assert_all_gone(&e, &pids);
    });
}

#[test]
fn pod_stop_start_and_rm() {
    in_own_netns(|| {
        let e = Engine::new();
        e.ok(&["pod", "create", "--name", "p", "--label", "team=a"]);
        // Creating a member does not start anything; starting it starts the infra first.
        e.ok(&["create", "--pod", "p", "--name", "a", "bb", "sleep", "1000"]);
        assert_eq!(pod_inspect(&e, "p")["State"], "Created");
        e.ok(&["start", "a"]);
        assert_eq!(e.inspect("p-infra")["State"]["Status"], "running");
        e.ok(&[
            "run", "-d", "--pod", "p", "--name", "b", "bb", "sleep", "1000",
        ]);
        assert_eq!(pod_inspect(&e, "p")["State"], "Running");
        assert_eq!(pod_inspect(&e, "p")["Labels"]["team"], "a");

        // stop: members (together: sleep as pid 1 ignores SIGTERM, so both are killed after
        // the one timeout), then the infra, which exits 0 on SIGTERM.
        let t = Instant::now();
        e.ok(&["pod", "stop", "-t", "1", "p"]);
        assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
        for c in ["a", "b"] {
            assert_eq!(e.inspect(c)["State"]["ExitCode"], 137, "{c}");
        }
        assert_eq!(e.inspect("p-infra")["State"]["ExitCode"], 0);
        assert_eq!(pod_inspect(&e, "p")["State"], "Exited");
        assert!(
            e.mounts().is_empty(),
            "mounts left after pod stop: {:?}",
            e.mounts()
        );

        // start: the infra, then the members, again sharing its (new) namespaces.
        e.ok(&["pod", "start", "p"]);
        assert_eq!(pod_inspect(&e, "p")["State"], "Running");
        let infra_pid = e.inspect("p-infra")["State"]["Pid"].as_i64().unwrap();
        assert_eq!(ns_in(&e, "a", "net"), ns_of(infra_pid, "net"));
        assert_eq!(ns_in(&e, "b", "ipc"), ns_of(infra_pid, "ipc"));
        // One member stopped: degraded.
        e.ok(&["stop", "-t", "0", "b"]);
        assert_eq!(pod_inspect(&e, "p")["State"], "Degraded");

        // rm without -f while something runs: a clear error, nothing removed.
        let err = e.fails_with(125, &["pod", "rm", "p"]);
        assert!(
            err.contains("running containers") && err.contains("pod rm -f"),
            "{err}"
        );
        assert_eq!(e.ids().len(), 3);
        // The infra container goes with its pod only; prune leaves it too.
        let err = e.fails_with(125, &["rm", "-f", "p-infra"]);
        assert!(err.contains("infra container of pod p"), "{err}");
        e.ok(&["pod", "stop", "p"]);
        e.ok(&["container", "prune"]);
        assert_eq!(e.ids().len(), 1, "prune removed the infra container");
        // A stopped pod goes without -f.
        e.ok(&["create", "--pod", "p", "--name", "c", "bb", "true"]);
        e.ok(&["pod", "rm", "p"]);
        assert_all_gone(&e, &[infra_pid]);
        assert!(e.output(&["pod", "inspect", "p"]).status.code() == Some(125));
    });
}

#[test]
fn ports_are_published_at_the_pod() {
    in_own_netns(|| {
        let e = Engine::new();
        let port = common::free_port();
        e.ok(&[
            "pod",
            "create",
            "--name",
            "p",
            "-p",
            &format!("{port}:8080"),
        ]);
        e.ok(&[
            "run",
            "-d",
            "--pod",
            "p",
            "--name",
            "web",
            "bb",
            "sh",
            "-c",
            "mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 8080 -h /www",
        ]);
        assert_eq!(http_get(port, "/"), "published\n");
        e.ok(&["pod", "rm", "-f", "p"]);
        assert_all_gone(&e, &[]);
    });
}

#[test]
fn pod_flags_are_checked() {
    in_own_netns(|| {
        let e = Engine::new();
        e.ok(&["pod", "create", "--name", "p", "--network", "none"]);
        for (args, want) in [
            (
                vec!["--network", "host"],
                "--network cannot be used with --pod",
            ),
            (vec!["-p", "80:80"], "published at the pod"),
            (
                vec!["--hostname", "h"],
                "--hostname cannot be used with --pod",
            ),
        ] {
            let mut a = vec!["create", "--pod", "p"];
            a.extend(args);
            a.extend(["bb", "true"]);
            let err = e.fails_with(125, &a);
            assert!(err.contains(want), "{a:?}: {err}");
        }
        let err = e.fails_with(125, &["run", "--pod", "nosuch", "bb", "true"]);
        assert!(err.contains("no such pod: nosuch"), "{err}");
        let err = e.fails_with(125, &["pod", "create", "--name", "p"]);
        assert!(err.contains("already in use"), "{err}");
        let err = e.fails_with(125, &["pod", "create", "--name", "bad/name"]);
        assert!(err.contains("invalid pod name"), "{err}");
        let err = e.fails_with(125, &["pod", "create", "--network", "none", "-p", "80:80"]);
        assert!(
            err.contains("publishing ports needs a bridge network"),
            "{err}"
        );
        assert_eq!(e.pods().len(), 1, "a failed pod create left a pod");
        assert_eq!(e.ids().len(), 1, "a failed pod create left a container");
        e.ok(&["pod", "rm", "p"]);
        assert_all_gone(&e, &[]);
    });
}

/// Kubernetes' own example (`pods/simple-pod.yaml`, nginx), with busybox's httpd in its place.
const NGINX_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: nginx
spec:
  containers:
  - name: nginx
    image: bb
    command: ["httpd", "-f", "-p", "80"]
    ports:
    - containerPort: 80
      hostPort: HOSTPORT
"#;

#[test]
fn kube_play_runs_the_nginx_example_and_down_removes_it() {
    in_own_netns(|| {
        let e = Engine::new();
        let port = common::free_port();
        let f = e.b.runroot.path().join("nginx.yaml");
        std::fs::write(&f, NGINX_POD.replace("HOSTPORT", &port.to_string())).unwrap();
        let out = e.ok(&["kube", "play", f.to_str().unwrap()]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "Pod:", "{out}");
        assert_eq!(lines[2], "Containers:", "{out}");
        let pod = pod_inspect(&e, "nginx");
        assert_eq!(pod["Id"], lines[1]);
        assert_eq!(pod["State"], "Running");
        assert_eq!(e.inspect("nginx-nginx")["Id"], lines[3]);
        // httpd serves its working directory (/): give it a page.
        e.ok(&[
            "exec",
            "nginx-nginx",
            "sh",
            "-c",
            "echo hello-kube > /index.html",
        ]);
        // From inside the pod, on localhost...
        let got = e.ok(&[
            "run",
            "--rm",
            "--pod",
            "nginx",
            "bb",
            "sh",
            "-c",
            &retry("wget -qO- http://127.0.0.1:80/"),
        ]);
        assert_eq!(got, "hello-kube\n");
        // ...and from the host through the hostPort.
        assert_eq!(http_get(port, "/"), "hello-kube\n");

        // Played twice: refused, nothing changed.
        let err = e.fails_with(125, &["kube", "play", f.to_str().unwrap()]);
        assert!(err.contains("pod nginx exists already"), "{err}");
        assert_eq!(e.pods().len(), 1);

        let pids: Vec<i64> = ["nginx-infra", "nginx-nginx"]
            .iter()
            .map(|c| e.inspect(c)["State"]["Pid"].as_i64().unwrap())
            .collect();
        let out = e.ok(&["kube", "down", f.to_str().unwrap()]);
        assert!(out.contains(pod["Id"].as_str().unwrap()), "{out}");
        assert_all_gone(&e, &pids);
        let err = e.fails_with(125, &["kube", "down", f.to_str().unwrap()]);
        assert!(err.contains("no pod named nginx"), "{err}");
    });
}

#[test]
fn kube_play_volumes_env_limits_and_a_deployment() {
    in_own_netns(|| {
        let e = Engine::new();
        let host = tempfile::tempdir().unwrap();
        let made = host.path().join("made/by/play");
        std::fs::write(host.path().join("conf.txt"), "from-host\n").unwrap();
        let yaml = format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  labels: {{app: demo}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: demo}}
  template:
    metadata:
      labels: {{app: demo}}
    spec:
      hostname: apphost
      containers:
      - name: writer
        image: bb
        imagePullPolicy: Never
        command: ["sh", "-c"]
        args: ["echo shared > /cache/note && sleep 1000"]
        env:
        - name: GREETING
          value: hi there
        workingDir: /cache
        volumeMounts:
        - {{name: cache, mountPath: /cache}}
        - {{name: conf, mountPath: /etc/conf.txt, readOnly: true}}
        - {{name: made, mountPath: /made}}
        resources:
          limits: {{memory: 64Mi, cpu: 500m}}
      - name: reader
        image: bb
        command: ["sleep", "1000"]
        volumeMounts:
        - {{name: cache, mountPath: /data, readOnly: true}}
      volumes:
      - name: cache
        emptyDir: {{}}
      - name: conf
        hostPath: {{path: {conf}, type: File}}
      - name: made
        hostPath: {{path: {made}, type: DirectoryOrCreate}}
"#,
            conf = host.path().join("conf.txt").display(),
            made = made.display(),
        );
        let f = host.path().join("app.yaml");
        std::fs::write(&f, yaml).unwrap();
        e.ok(&["kube", "play", f.to_str().unwrap()]);
        let pod = pod_inspect(&e, "app-pod");
        assert_eq!(pod["Hostname"], "apphost");
        assert_eq!(pod["Labels"]["app"], "demo");
        assert_eq!(
            e.ok(&[
                "exec",
                "app-pod-writer",
                "sh",
                "-c",
                "echo $GREETING; pwd; hostname"
            ]),
            "hi there\n/cache\napphost\n"
        );
        // The emptyDir is shared, the read-only mounts are read-only, the hostPath dir was made.
        let got = e.ok(&[
            "exec",
            "app-pod-reader",
            "sh",
            "-c",
            &retry("cat /data/note"),
        ]);
        assert_eq!(got, "shared\n");
        let o = e.output(&["exec", "app-pod-reader", "touch", "/data/x"]);
        assert_ne!(
            o.status.code(),
            Some(0),
            "a readOnly emptyDir mount is writable"
        );
        assert_eq!(
            e.ok(&["exec", "app-pod-writer", "cat", "/etc/conf.txt"]),
            "from-host\n"
        );
        assert!(made.is_dir());
        e.ok(&["exec", "app-pod-writer", "touch", "/made/file"]);
        assert!(made.join("file").is_file());
        let hc = &e.inspect("app-pod-writer")["HostConfig"];
        assert_eq!(hc["Memory"], 64 << 20, "{hc}");
        assert_eq!(hc["NanoCpus"], 500_000_000, "{hc}");

        e.ok(&["kube", "down", f.to_str().unwrap()]);
        assert_all_gone(&e, &[]);
        // A hostPath stays (as in Kubernetes); the emptyDir went with the pod.
        assert!(made.join("file").is_file());
    });
}

#[test]
fn kube_play_refuses_bad_manifests_and_leaves_nothing() {
    in_own_netns(|| {
        let e = Engine::new();
        let dir = e.b.runroot.path();
        let play = |name: &str, text: &str| -> String {
            let f = dir.join(name);
            std::fs::write(&f, text).unwrap();
            let err = e.fails_with(125, &["kube", "play", f.to_str().unwrap()]);
            assert!(e.pods().is_empty(), "{name}: a pod was left: {err}");
            assert!(e.ids().is_empty(), "{name}: containers were left: {err}");
            err
        };
        let base = NGINX_POD.replace("      hostPort: HOSTPORT\n", "");
        let err = play(
            "malformed.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: [x\n",
        );
        assert!(
            err.contains("malformed YAML") && err.contains("line"),
            "{err}"
        );
        let err = play(
            "probe.yaml",
            &format!("{base}    livenessProbe:\n      httpGet: {{path: /, port: 80}}\n"),
        );
        assert!(
            err.starts_with("Error: spec.containers[0].livenessProbe: unsupported field"),
            "{err}"
        );
        let err = play(
            "service.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
        );
        assert!(err.contains("kind: Service is not supported"), "{err}");
        let err = play(
            "hostpath.yaml",
            &format!("{base}  volumes:\n  - name: h\n    hostPath: {{path: /nonexistent-berth-dir, type: Directory}}\n"),
        );
        assert!(
            err.contains("spec.volumes[0].hostPath") && err.contains("not a directory"),
            "{err}"
        );
        // Fails after the pod and a first container were made: all of it is removed again.
        let err = play(
            "second-fails.yaml",
            &format!(
                "{base}  - name: broken\n    image: bb\n    command: [\"/no/such/program\"]\n"
            ),
        );
        assert!(err.contains("nginx-broken"), "{err}");
        let err = play(
            "no-image.yaml",
            &format!(
                "{base}  - name: other\n    image: no-such-image\n    imagePullPolicy: Never\n"
            ),
        );
        assert!(err.contains("spec.containers[1] (other)"), "{err}");
        assert_all_gone(&e, &[]);
    });
}
