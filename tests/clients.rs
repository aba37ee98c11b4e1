//! Real client libraries and tools against real `raftnode` processes:
//! redis-py (the PyPI `redis` package, 8 or later) with its default settings,
//! standalone and in cluster mode, through a kill -9 of the leader; and
//! redis-cli in RESP3 (`-3`) and cluster (`-c`) modes.
//!
//! The Python side is in `tests/python/`; each script prints a transcript,
//! which the assertions here quote. The scripts run in the virtual
//! environment `target/redis-py-venv` that `.ci/python-env` makes (these
//! tests run it once if the environment is missing). Without `python3` the
//! redis-py tests skip with one line; without `redis-cli` the redis-cli test
//! does.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::process::{ProcCluster, Resp};
use support::WAIT;

/// How long a script may take to reach its READY-FOR-KILL line.
const BEFORE_KILL: Duration = Duration::from_secs(60);
/// How long a script may take after the kill (its own deadlines are shorter).
const AFTER_KILL: Duration = Duration::from_secs(90);

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `program` can be run at all.
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Whether `python` imports redis-py 8 or later.
fn has_redis_py_8(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import sys, redis; sys.exit(int(redis.__version__.split('.')[0]) < 8)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The virtual environment's Python with redis-py 8, made by `.ci/python-env`
/// if need be (once per test process, however many tests ask at once).
/// `None` if there is no `python3` at all, after printing one line: the
/// caller skips. Fails the test if Python is there but the environment
/// cannot be made.
fn redis_py() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<Option<PathBuf>, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let python = manifest_dir().join("target/redis-py-venv/bin/python");
        if has_redis_py_8(&python) {
            return Ok(Some(python));
        }
        if !installed("python3") {
            return Ok(None);
        }
        let script = manifest_dir().join(".ci/python-env");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .map_err(|e| format!("could not run {}: {e}", script.display()))?;
        if !out.status.success() || !has_redis_py_8(&python) {
            return Err(format!(
                "python3 is installed but target/redis-py-venv with redis-py 8 could not be \
                 made; run .ci/python-env and see what it says ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Some(python))
    });
    match found {
        Ok(Some(python)) => Some(python.clone()),
        Ok(None) => {
            eprintln!("python3 not found; skipping redis-py test");
            None
        }
        Err(message) => panic!("{message}"),
    }
}

/// A Python script run as a child process; killed when dropped, so no test
/// leaves one behind, passed or failed. Its stdout lines arrive through a
/// reader thread, so every wait has a deadline.
struct Script {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    transcript: Vec<String>,
}

impl Script {
    fn start(python: &Path, script: &str, args: &[String]) -> Script {
        let path = manifest_dir().join("tests/python").join(script);
        let mut child = Command::new(python)
            .arg("-u")
            .arg(&path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} {}: {e}", python.display(), path.display()));
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Script {
            name: script.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
            transcript: Vec::new(),
        }
    }

    /// What the script printed so far, and its stderr once it has ended.
    fn report(&mut self) -> String {
        let mut text = format!("--- {} transcript ---\n", self.name);
        for line in &self.transcript {
            text.push_str(line);
            text.push('\n');
        }
        let ended = matches!(self.child.try_wait(), Ok(Some(_)));
        if let Some(stderr) = self.stderr.take_if(|_| ended) {
            text.push_str(&format!(
                "--- {} stderr ---\n{}",
                self.name,
                stderr.join().unwrap_or_default()
            ));
        }
        text
    }

    /// Reads lines until one equals `marker`; fails the test if the script
    /// ends first or `timeout` passes.
    fn wait_for_line(&mut self, marker: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line == marker;
                    self.transcript.push(line);
                    if found {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let report = self.report();
                    panic!(
                        "{} did not print {marker} within {timeout:?}\n{report}",
                        self.name
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self
                        .child
                        .wait()
                        .map_or_else(|e| e.to_string(), |s| s.to_string());
                    let report = self.report();
                    panic!(
                        "{} ended ({status}) before printing {marker}\n{report}",
                        self.name
                    );
                }
            }
        }
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("write to {}: {e}", self.name));
    }

    /// Reads the rest of the output and waits for the script to end, within
    /// `timeout`; returns how it ended and its report.
    fn finish(&mut self, timeout: Duration) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.transcript.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let report = self.report();
                    panic!("{} did not end within {timeout:?}\n{report}", self.name);
                }
            }
        }
        let status = self.child.wait().expect("wait for the script");
        (status, self.report())
    }

    /// Runs to the end and fails the test unless the script passed.
    fn expect_pass(&mut self, timeout: Duration) -> String {
        let (status, report) = self.finish(timeout);
        assert!(
            status.success() && self.transcript.last().map(String::as_str) == Some("PASS"),
            "{} failed ({status})\n{report}",
            self.name
        );
        // The transcript, for `--nocapture` runs.
        println!("{report}");
        report
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn addr(cluster: &ProcCluster, id: u64) -> String {
    format!("127.0.0.1:{}", cluster.nodes[&id].client_port)
}

fn a_follower(cluster: &ProcCluster, leader: u64) -> u64 {
    cluster
        .running()
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower")
}

/// Kills the leader with kill -9 once the script says it is ready, tells the
/// script, and returns the new leader once the survivors agree on one.
fn kill_leader_when_ready(cluster: &mut ProcCluster, script: &mut Script, leader: u64) -> u64 {
    script.wait_for_line("READY-FOR-KILL", BEFORE_KILL);
    cluster.kill(leader);
    script.send_line("killed");
    let new = cluster.wait_for_leader();
    assert_ne!(new, leader, "the killed node cannot lead");
    new
}

/// The value of `key` on node `id`, read with our own RESP client.
fn get(cluster: &ProcCluster, id: u64, key: &str) -> Option<Vec<u8>> {
    use raftnode::redis::resp::Reply;
    match cluster.client(id).call(&["GET", key]) {
        Reply::Bulk(value) => Some(value),
        Reply::NullBulk => None,
        other => panic!("GET {key} on node {id} answered {other:?}"),
    }
}

#[test]
fn redis_py_defaults_connect_set_get_pipeline_and_follow_a_failover() {
    let Some(python) = redis_py() else { return };
    let mut cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower = a_follower(&cluster, leader);
    let mut args = vec![addr(&cluster, leader), addr(&cluster, follower)];
    args.extend(cluster.running().into_iter().map(|id| addr(&cluster, id)));
    let mut script = Script::start(&python, "standalone.py", &args);
    let new = kill_leader_when_ready(&mut cluster, &mut script, leader);
    let report = script.expect_pass(AFTER_KILL);
    // What redis-py wrote is really there, before the kill and after it.
    assert_eq!(
        get(&cluster, new, "before-kill:199").as_deref(),
        Some(&b"value-199"[..]),
        "{report}"
    );
    assert_eq!(
        get(&cluster, new, "after-kill:49").as_deref(),
        Some(&b"new-49"[..]),
        "{report}"
    );
}

#[test]
fn redis_py_cluster_client_through_a_follower_survives_leader_kill_9() {
    let Some(python) = redis_py() else { return };
    let mut cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower = a_follower(&cluster, leader);
    let args = [addr(&cluster, leader), addr(&cluster, follower)];
    let mut script = Script::start(&python, "cluster.py", &args);
    let new = kill_leader_when_ready(&mut cluster, &mut script, leader);
    let report = script.expect_pass(AFTER_KILL);
    for key in ["before-kill:0", "before-kill:599"] {
        assert!(get(&cluster, new, key).is_some(), "{key} is gone\n{report}");
    }
    assert_eq!(
        get(&cluster, new, "after-kill:599").as_deref(),
        Some(&b"after-kill-value-599"[..]),
        "{report}"
    );
}

/// redis-py's own methods for the string, key and expiry commands
/// (`set(nx=True, ex=10)`, `mget`, `scan_iter`, `expire(gt=True)`,
/// `incrbyfloat`, ...), standalone and through its cluster client, get
/// what they expect (`tests/python/commands.py`).
#[test]
fn redis_py_methods_for_strings_keys_and_expiry_work() {
    let Some(python) = redis_py() else { return };
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let mut script = Script::start(&python, "commands.py", &[addr(&cluster, leader)]);
    let report = script.expect_pass(Duration::from_secs(60));
    assert!(report.contains("cluster: ok"), "{report}");
}

/// Runs redis-cli with `args`, failing the test (and killing it) if it does
/// not end within [`WAIT`], or if it exits non-zero; returns its stdout,
/// trimmed.
fn redis_cli(args: &[&str]) -> String {
    let mut child = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redis-cli");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for redis-cli") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-cli {args:?} did not end within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "redis-cli {args:?} failed ({status}): {stdout}{stderr}"
    );
    stdout.trim().to_string()
}

#[test]
fn redis_cli_resp3_and_cluster_mode_work() {
    if !installed("redis-cli") {
        eprintln!("redis-cli not found; skipping (CI installs redis-tools)");
        return;
    }
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower = a_follower(&cluster, leader);
    let port = |id: u64| cluster.nodes[&id].client_port.to_string();
    let (leader_port, follower_port) = (port(leader), port(follower));

    // RESP3: HELLO 3 answers a map with proto 3, and a missing key is nil.
    // (--no-raw: redis-cli prints types, not raw text, into a pipe too.)
    let hello = redis_cli(&["-3", "--no-raw", "-p", &leader_port, "HELLO", "3"]);
    assert!(
        hello
            .lines()
            .any(|l| l.trim_start().ends_with("\"proto\" => (integer) 3")),
        "redis-cli -3 HELLO 3 printed:\n{hello}"
    );
    let missing = redis_cli(&["-3", "--no-raw", "-p", &leader_port, "GET", "missing"]);
    assert_eq!(missing, "(nil)");
    let info = redis_cli(&["-3", "-p", &leader_port, "INFO"]);
    assert!(
        info.lines().any(|l| l.trim_end() == "role:leader"),
        "redis-cli -3 INFO printed:\n{info}"
    );
    assert!(
        info.lines().any(|l| l.trim_end() == "cluster_enabled:1"),
        "redis-cli -3 INFO printed:\n{info}"
    );

    // Without -c a follower's MOVED is printed, naming the key's slot and the
    // leader; with -c redis-cli follows it.
    let slot = redis_cli(&["-p", &leader_port, "CLUSTER", "KEYSLOT", "tool"]);
    let moved = redis_cli(&["-p", &follower_port, "SET", "tool", "x"]);
    assert_eq!(moved, format!("MOVED {slot} {}", addr(&cluster, leader)));
    assert_eq!(
        redis_cli(&["-c", "-p", &follower_port, "SET", "tool", "redis-cli -c"]),
        "OK"
    );
    assert_eq!(
        redis_cli(&["-c", "-p", &follower_port, "GET", "tool"]),
        "redis-cli -c"
    );
    assert_eq!(
        redis_cli(&["-3", "-c", "-p", &follower_port, "GET", "tool"]),
        "redis-cli -c"
    );
    // The write went through the leader, once.
    let mut c = Resp::connect(cluster.nodes[&leader].client_port).unwrap();
    assert_eq!(
        c.call(&["GET", "tool"]),
        raftnode::redis::resp::Reply::Bulk(b"redis-cli -c".to_vec())
    );
}
