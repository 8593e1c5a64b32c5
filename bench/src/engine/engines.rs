//! The engines under test, each an instance of its own: berth and podman with temp `--root` and
//! `--runroot`, a private dockerd with temp `--data-root` and `--exec-root`. Dropping one removes
//! every container it holds, stops its daemon, kills its leftover watchers (by pid, found through
//! its own dirs) and unmounts what it mounted under its dirs; the dirs themselves belong to the
//! bench's temp dirs, removed after.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::exec::{self, run};
use super::procs::{self, Mem};

/// Limit for one `run`, `load`, `import`.
const CMD: Duration = Duration::from_secs(120);
/// Limit for removing every container of an engine.
const RM_ALL: Duration = Duration::from_secs(600);

/// podman asks for nofile 1048576 by default, which fails on hosts where the hard limit is lower
/// and the caller lacks CAP_SYS_RESOURCE (see host-notes): values every host allows.
pub const PODMAN_ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=32768:32768",
];

fn mkdir(p: &Path) -> Result<PathBuf> {
    fs::create_dir_all(p).with_context(|| format!("mkdir {}", p.display()))?;
    Ok(p.to_path_buf())
}

/// `Loaded image: NAME` of `podman load` / `docker load` output.
pub fn loaded_name(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Loaded image:"))
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
}

/// An image id without its `sha256:`.
pub fn bare_id(id: &str) -> String {
    let id = id.trim();
    id.strip_prefix("sha256:").unwrap_or(id).to_string()
}

/// `berth --root R --runroot RR`.
pub struct Berth {
    pub bin: PathBuf,
    pub root: PathBuf,
    pub runroot: PathBuf,
    pub version: String,
}

impl Berth {
    /// Its state in `disk/berth` (root) and `run/berth` (runroot).
    pub fn new(bin: PathBuf, disk: &Path, rundir: &Path) -> Result<Berth> {
        let version = exec::version(&bin);
        Ok(Berth {
            bin,
            root: mkdir(&disk.join("berth"))?,
            runroot: mkdir(&rundir.join("berth"))?,
            version,
        })
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot);
        c
    }

    /// `berth import TAR REF`; the image id.
    pub fn import(&self, tar: &Path, reference: &str) -> Result<String> {
        let o = run(self.cmd().arg("import").arg(tar).arg(reference), CMD)?;
        let id = bare_id(o.stdout.lines().last().unwrap_or(""));
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "berth import printed {:?}, not an image id",
                o.stdout.trim()
            );
        }
        Ok(id)
    }

    /// `berth save -o OUT --format docker-archive REF`.
    pub fn save(&self, reference: &str, out: &Path) -> Result<()> {
        run(
            self.cmd()
                .args(["save", "--format", "docker-archive", "-o"])
                .arg(out)
                .arg(reference),
            CMD,
        )?;
        Ok(())
    }

    /// `berth rm -f` of every container (`ps -aq` first); the wall time of both.
    pub fn remove_all(&self) -> Result<f64> {
        let ps = run(self.cmd().args(["ps", "-a", "-q"]), CMD)?;
        let ids: Vec<&str> = ps.stdout.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(ps.ms);
        }
        Ok(ps.ms + exec::timed(self.cmd().args(["rm", "-f"]).args(&ids), RM_ALL)?)
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        if let Err(e) = self.remove_all() {
            eprintln!("cleanup: berth: {e:#}");
        }
        procs::kill_leftovers("berth-monitor", &self.runroot.to_string_lossy());
        procs::unmount_under(&self.root);
        procs::unmount_under(&self.runroot);
    }
}

/// `podman --root R --runroot RR --tmpdir T ...` with a containers.conf of its own.
pub struct Podman {
    pub bin: PathBuf,
    pub root: PathBuf,
    pub runroot: PathBuf,
    pub tmpdir: PathBuf,
    conf: PathBuf,
    pub version: String,
}

impl Podman {
    /// Its store in `disk/podman`, runroot and tmpdir in `run/podman`.
    pub fn new(bin: PathBuf, disk: &Path, rundir: &Path) -> Result<Podman> {
        let dir = mkdir(&disk.join("podman"))?;
        let conf = dir.join("containers.conf");
        // Only so that no containers.conf of the host changes what is measured; every setting
        // that matters is a flag on the command line.
        fs::write(&conf, "[containers]\n[engine]\n").context("writing containers.conf")?;
        let version = exec::version(&bin);
        Ok(Podman {
            root: mkdir(&dir.join("root"))?,
            runroot: mkdir(&rundir.join("podman/run"))?,
            tmpdir: mkdir(&rundir.join("podman/tmp"))?,
            bin,
            conf,
            version,
        })
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("CONTAINERS_CONF", &self.conf)
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .arg("--tmpdir")
            .arg(&self.tmpdir)
            .args([
                "--storage-driver",
                "overlay",
                "--events-backend",
                "none",
                "--cgroup-manager",
                "cgroupfs",
            ]);
        c
    }

    /// `podman load -i ARCHIVE`; the name it loaded.
    pub fn load(&self, archive: &Path) -> Result<String> {
        let o = run(self.cmd().args(["load", "-i"]).arg(archive), CMD)?;
        loaded_name(&o.stdout)
            .with_context(|| format!("podman load printed no image name: {:?}", o.stdout))
    }

    pub fn image_id(&self, reference: &str) -> Result<String> {
        let o = run(
            self.cmd()
                .args(["image", "inspect", "--format", "{{.Id}}", reference]),
            CMD,
        )?;
        Ok(bare_id(&o.stdout))
    }

    /// `podman rm -a -f -t 0`; its wall time.
    pub fn remove_all(&self) -> Result<f64> {
        exec::timed(self.cmd().args(["rm", "-a", "-f", "-t", "0"]), RM_ALL)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if let Err(e) = self.remove_all() {
            eprintln!("cleanup: podman: {e:#}");
        }
        procs::kill_leftovers("conmon", &self.root.to_string_lossy());
        for d in [&self.root, &self.runroot, &self.tmpdir] {
            procs::unmount_under(d);
        }
    }
}

/// A private dockerd: `--data-root`, `--exec-root`, its socket, pid file, key and config file in
/// the bench's dirs; no bridge, no iptables. Its managed containerd keeps its state under the
/// exec root. The client (`docker -H unix://SOCK`) gets a config dir of its own.
pub struct Docker {
    pub client: PathBuf,
    pub dockerd: PathBuf,
    daemon: Option<Child>,
    pub sock: PathBuf,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    client_config: PathBuf,
    pub log: PathBuf,
    pub version: String,
}

impl Docker {
    /// Starts dockerd and waits (up to `limit`) until it answers.
    pub fn start(
        dockerd: PathBuf,
        client: PathBuf,
        disk: &Path,
        rundir: &Path,
        limit: Duration,
    ) -> Result<Docker> {
        let dir = mkdir(&disk.join("docker"))?;
        let exec_root = mkdir(&rundir.join("docker"))?;
        let config = dir.join("daemon.json");
        // The trust key dockerd 20.10 writes to /etc/docker/key.json otherwise.
        let cfg = serde_json::json!({"deprecated-key-path": dir.join("key.json")});
        fs::write(&config, cfg.to_string()).context("writing daemon.json")?;
        let log = dir.join("dockerd.log");
        let logf = fs::File::create(&log).context("creating dockerd.log")?;
        let sock = exec_root.join("docker.sock");
        let data_root = mkdir(&dir.join("data"))?;
        let client_config = mkdir(&dir.join("client"))?;
        let mut cmd = Command::new(&dockerd);
        cmd.arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(&data_root)
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("--pidfile")
            .arg(exec_root.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--log-level=warn",
            ])
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf);
        // Its own process group: the terminal's Ctrl-C must not stop it under the bench's
        // feet; the guard stops it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let daemon = cmd
            .spawn()
            .with_context(|| format!("starting {}", dockerd.display()))?;
        let mut d = Docker {
            client,
            dockerd,
            daemon: Some(daemon),
            sock,
            data_root,
            exec_root,
            client_config,
            log,
            version: String::new(),
        };
        let t = Instant::now();
        loop {
            exec::check_interrupted()?;
            if let Some(ch) = d.daemon.as_mut() {
                if let Ok(Some(st)) = ch.try_wait() {
                    d.daemon = None;
                    bail!("dockerd exited ({st}): {}", d.log_tail());
                }
            }
            if d.sock.exists() {
                let v = run(
                    d.cmd().args(["version", "--format", "{{.Server.Version}}"]),
                    Duration::from_secs(10),
                );
                if let Ok(v) = v {
                    d.version = format!("dockerd {}", v.stdout.trim());
                    return Ok(d);
                }
            }
            if t.elapsed() > limit {
                bail!(
                    "dockerd did not answer within {} s: {}",
                    limit.as_secs(),
                    d.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let s = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.client);
        c.env("DOCKER_CONFIG", &self.client_config)
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()));
        c
    }

    /// `docker load -i ARCHIVE`; the name it loaded.
    pub fn load(&self, archive: &Path) -> Result<String> {
        let o = run(self.cmd().args(["load", "-i"]).arg(archive), CMD)?;
        loaded_name(&o.stdout)
            .with_context(|| format!("docker load printed no image name: {:?}", o.stdout))
    }

    pub fn image_id(&self, reference: &str) -> Result<String> {
        let o = run(
            self.cmd()
                .args(["image", "inspect", "--format", "{{.Id}}", reference]),
            CMD,
        )?;
        Ok(bare_id(&o.stdout))
    }

    /// `docker rm -f` of every container (`ps -aq` first); the wall time of both.
    pub fn remove_all(&self) -> Result<f64> {
        let ps = run(self.cmd().args(["ps", "-a", "-q"]), CMD)?;
        let ids: Vec<&str> = ps.stdout.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(ps.ms);
        }
        Ok(ps.ms + exec::timed(self.cmd().args(["rm", "-f"]).args(&ids), RM_ALL)?)
    }

    /// RSS and PSS of dockerd and its containerd.
    pub fn daemons(&self) -> Vec<Mem> {
        let mut v = procs::find("dockerd", &self.data_root.to_string_lossy());
        v.extend(procs::find("containerd", &self.exec_root.to_string_lossy()));
        v
    }

    fn stop_daemon(&mut self) {
        let Some(mut ch) = self.daemon.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(ch.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        match exec::wait_for(&mut ch, Duration::from_secs(30)) {
            Ok(Some(_)) => {}
            _ => {
                eprintln!("cleanup: dockerd did not stop in 30 s; killing it");
                let _ = ch.kill();
                let _ = ch.wait();
            }
        }
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            if let Err(e) = self.remove_all() {
                eprintln!("cleanup: docker: {e:#}");
            }
        }
        self.stop_daemon();
        let marker = self.exec_root.to_string_lossy().into_owned();
        procs::kill_leftovers("containerd-shim", &marker);
        procs::kill_leftovers("containerd", &marker);
        procs::unmount_under(&self.data_root);
        procs::unmount_under(&self.exec_root);
    }
}

/// What a column runs.
pub enum Engine<'a> {
    Berth(&'a Berth),
    /// podman with this OCI runtime binary.
    Podman(&'a Podman, PathBuf),
    Docker(&'a Docker),
}

/// One column: an engine (and runtime) with the image it runs.
pub struct Column<'a> {
    /// `berth`, `podman-crun`, `podman-runc`, `docker`.
    pub name: &'static str,
    pub engine: Engine<'a>,
    /// The image's name in this engine.
    pub image: String,
    /// Engine (and runtime) versions.
    pub version: String,
}

impl Column<'_> {
    /// `ENGINE run --network none (--rm | -d) IMAGE ARGS...` (podman: `--runtime` and the
    /// ulimits too).
    pub fn run_cmd(&self, detach: bool, args: &[&str]) -> Command {
        let mut c = match &self.engine {
            Engine::Berth(b) => b.cmd(),
            Engine::Podman(p, _) => p.cmd(),
            Engine::Docker(d) => d.cmd(),
        };
        c.args([
            "run",
            if detach { "-d" } else { "--rm" },
            "--network",
            "none",
        ]);
        if let Engine::Podman(_, rt) = &self.engine {
            c.arg("--runtime").arg(rt).args(PODMAN_ULIMITS);
        }
        c.arg(&self.image).args(args);
        c
    }

    /// One `run --rm IMAGE true`; its wall time in ms.
    pub fn run_rm_true(&self) -> Result<f64> {
        exec::timed(&mut self.run_cmd(false, &["true"]), CMD)
            .with_context(|| format!("{}: run --rm", self.name))
    }

    /// Starts one `sleep 1000` container in the background; its wall time in ms.
    pub fn run_detached_sleep(&self) -> Result<f64> {
        exec::timed(&mut self.run_cmd(true, &["sleep", "1000"]), CMD)
            .with_context(|| format!("{}: run -d", self.name))
    }

    /// Removes (force) every container of the engine; the wall time.
    pub fn remove_all(&self) -> Result<f64> {
        match &self.engine {
            Engine::Berth(b) => b.remove_all(),
            Engine::Podman(p, _) => p.remove_all(),
            Engine::Docker(d) => d.remove_all(),
        }
        .with_context(|| format!("{}: removing every container", self.name))
    }

    /// The per-container watcher's process name (`comm`).
    pub fn watcher(&self) -> &'static str {
        match &self.engine {
            Engine::Berth(_) => "berth-monitor",
            Engine::Podman(..) => "conmon",
            Engine::Docker(_) => "containerd-shim",
        }
    }

    /// The column's watcher processes, found through the engine's own dirs.
    pub fn watchers(&self) -> Vec<Mem> {
        let marker = match &self.engine {
            Engine::Berth(b) => b.runroot.to_string_lossy().into_owned(),
            Engine::Podman(p, _) => p.root.to_string_lossy().into_owned(),
            Engine::Docker(d) => d.exec_root.to_string_lossy().into_owned(),
        };
        procs::find(self.watcher(), &marker)
    }

    /// The engine's daemons (docker only).
    pub fn daemons(&self) -> Option<Vec<Mem>> {
        match &self.engine {
            Engine::Docker(d) => Some(d.daemons()),
            _ => None,
        }
    }

    /// The engine's binary (dockerd for docker).
    pub fn bin(&self) -> &Path {
        match &self.engine {
            Engine::Berth(b) => &b.bin,
            Engine::Podman(p, _) => &p.bin,
            Engine::Docker(d) => &d.dockerd,
        }
    }

    /// The `run` command line, for the header (the image and the command left out).
    pub fn describe(&self) -> String {
        exec::show(&self.run_cmd(false, &["true"]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_load_output_and_ids() {
        assert_eq!(
            loaded_name(
                "Getting image source signatures\nLoaded image: localhost/bench/busybox:1\n"
            ),
            Some("localhost/bench/busybox:1".into())
        );
        assert_eq!(loaded_name("nothing\n"), None);
        assert_eq!(bare_id("sha256:abc\n"), "abc");
        assert_eq!(bare_id("abc"), "abc");
    }
}
