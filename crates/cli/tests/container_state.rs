//! What `ps` and `rm` make of containers whose processes are gone without the engine seeing it (a
//! reboot), and the log's rotation by size through `--log-opt`.

mod common;

use common::engine::Engine;

/// After a reboot the recorded pids mean nothing: the row's boot id differs from this boot's. Such a
/// container reads as exited (code unknown), and `start` and `rm` work on it.
#[test]
fn a_container_from_an_earlier_boot_reads_as_exited_and_can_be_removed_or_restarted() {
    let e = Engine::new();
    let id = e.ok(&["run", "-d", "--name", "old", "bb", "sleep", "1000"]);
    let id = id.trim().to_string();
    let pid = e.inspect("old")["State"]["Pid"].as_i64().unwrap();
    // Pretend this row was written in another boot (its processes still run here, which a real
    // reboot would have ended: the engine must not signal or trust them).
    let db = rusqlite::Connection::open(e.root().join("berth.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute(
        "UPDATE containers SET boot_id = 'an-earlier-boot' WHERE id = ?1",
        [&id],
    )
    .unwrap();
    drop(db);
    let ps = e.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert_eq!(ps.trim(), "old Exited (unknown)");
    assert_eq!(e.ok(&["ps", "-q"]), "", "not running");
    assert_eq!(e.inspect("old")["State"]["Status"], "exited");
    // The real processes are killed by the test (a reboot would have): then start it again.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    e.wait_until("the old init to go", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.contains(") Z"))
    });
    e.ok(&["start", "old"]);
    assert_eq!(e.inspect("old")["State"]["Status"], "running");
    assert_ne!(e.inspect("old")["State"]["Pid"].as_i64().unwrap(), pid);
    e.ok(&["rm", "-f", "old"]);
    e.assert_clean();
}

#[test]
fn logs_rotate_by_size_and_read_back_across_files() {
    let e = Engine::new();
    e.ok(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=3",
        "bb",
        "sh",
        "-c",
        "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    let id = e.inspect("chatty")["Id"].as_str().unwrap().to_string();
    let dir = e.root().join("containers").join(&id);
    let live = std::fs::metadata(dir.join("ctr.log")).unwrap().len();
    assert!(
        live < 2048 + 200,
        "the live file stays near max-size: {live}"
    );
    assert!(dir.join("ctr.log.1").exists() && dir.join("ctr.log.2").exists());
    assert!(
        !dir.join("ctr.log.3").exists(),
        "max-file=3 keeps three files"
    );
    let logs = e.ok(&["logs", "chatty"]);
    let lines: Vec<&str> = logs.lines().collect();
    assert!(lines.len() < 400, "older lines were rotated away");
    assert_eq!(*lines.last().unwrap(), "line-399");
    // What is kept is in order and without gaps.
    let nums: Vec<u32> = lines
        .iter()
        .map(|l| l.trim_start_matches("line-").parse().unwrap())
        .collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(
        e.ok(&["logs", "--tail", "2", "chatty"]),
        "line-398\nline-399\n"
    );
    let err = e.fails_with(125, &["run", "--log-opt", "max-file=0", "bb", "true"]);
    assert!(err.contains("max-file"), "{err}");
    e.ok(&["rm", "chatty"]);
    e.assert_clean();
}
