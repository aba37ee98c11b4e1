//! The cluster under load: a local one of `raftnode run` children that the
//! benchmark starts and stops, or one it is pointed at; finding its leader,
//! and the server processes whose CPU time is counted.

use super::conn::{self, call_once, info_field, moved_to, Conn};
use super::error::BenchError;
use crate::redis::resp::Reply;
use std::fs::{self, File};
use std::net::{TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long the benchmark waits for a leader that takes writes.
pub(crate) const LEADER_WAIT: Duration = Duration::from_secs(10);
/// After this long without a leader, the wait says so on stderr.
const TELL_AFTER: Duration = Duration::from_secs(2);
/// How long a node may take to exit once its standard input is closed.
const STOP_WAIT: Duration = Duration::from_secs(3);
/// How many of each node's last log lines an error shows.
const TAIL_LINES: usize = 8;

/// A directory of the benchmark's own, removed with all it holds when
/// dropped.
pub(crate) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// A new, empty directory under `parent`.
    pub(crate) fn create(parent: &Path) -> Result<ScratchDir, BenchError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = parent.join(format!("raftnode-bench-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).map_err(|source| BenchError::Io {
            what: "create".into(),
            path: path.clone(),
            source,
        })?;
        Ok(ScratchDir { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("raftnode: cannot remove {}: {e}", self.path.display());
        }
    }
}

struct LocalNode {
    id: u64,
    client_addr: String,
    child: Child,
    log: PathBuf,
}

/// A cluster of `raftnode run` children on loopback, stopped when dropped.
/// Each child's standard input is a pipe from this process and the children
/// run with `--exit-on-stdin-eof`, so they exit when the benchmark does,
/// however it ends.
pub(crate) struct LocalCluster {
    nodes: Vec<LocalNode>,
}

impl LocalCluster {
    /// Starts `count` nodes with their data (and logs) in `dir`, on free
    /// loopback ports.
    pub(crate) fn start(
        dir: &Path,
        count: u64,
        read_mode: &str,
    ) -> Result<LocalCluster, BenchError> {
        let exe = std::env::current_exe().map_err(|source| BenchError::Io {
            what: "find the raftnode binary".into(),
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        let ports = free_ports(2 * count as usize)?;
        let client_port = |i: u64| ports[(i - 1) as usize];
        let raft_port = |i: u64| ports[(count + i - 1) as usize];
        let mut cluster = LocalCluster { nodes: Vec::new() };
        for i in 1..=count {
            let log = dir.join(format!("node-{i}.log"));
            let open_log = || {
                File::create(&log).map_err(|source| BenchError::Io {
                    what: "create".into(),
                    path: log.clone(),
                    source,
                })
            };
            let (out, err) = (open_log()?, open_log()?);
            let mut cmd = Command::new(&exe);
            cmd.arg("run")
                .args(["--id", &i.to_string()])
                .arg("--data-dir")
                .arg(dir.join(format!("node-{i}")))
                .args(["--raft-addr", &format!("127.0.0.1:{}", raft_port(i))])
                .args(["--client-addr", &format!("127.0.0.1:{}", client_port(i))])
                .args(["--cluster-id", "raftnode-bench", "--exit-on-stdin-eof"])
                .args(["--read-mode", read_mode])
                .stdin(Stdio::piped())
                .stdout(out)
                .stderr(err);
            for j in (1..=count).filter(|&j| j != i) {
                cmd.args(["--peer", &format!("{j}=127.0.0.1:{}", raft_port(j))]);
            }
            let child = cmd.spawn().map_err(|source| BenchError::Cluster {
                what: format!("cannot start node {i}: {source}"),
                tails: String::new(),
            })?;
            cluster.nodes.push(LocalNode {
                id: i,
                client_addr: format!("127.0.0.1:{}", client_port(i)),
                child,
                log,
            });
        }
        Ok(cluster)
    }

    pub(crate) fn client_addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client_addr.clone()).collect()
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.child.id()).collect()
    }

    /// An error if a node has exited.
    pub(crate) fn check_running(&mut self) -> Result<(), BenchError> {
        for node in &mut self.nodes {
            if let Ok(Some(status)) = node.child.try_wait() {
                let what = format!("node {} exited ({status})", node.id);
                return Err(BenchError::Cluster {
                    what,
                    tails: self.tails(),
                });
            }
        }
        Ok(())
    }

    /// The last lines of every node's log, one indented line each.
    pub(crate) fn tails(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let text = fs::read_to_string(&node.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("\n  node {}, the end of its log:", node.id));
            if lines.is_empty() {
                out.push_str(" (nothing logged)");
            }
            for line in &lines[lines.len().saturating_sub(TAIL_LINES)..] {
                out.push_str(&format!("\n    {line}"));
            }
        }
        out
    }
}

impl Drop for LocalCluster {
    /// Closes every node's standard input (they exit cleanly), waits a
    /// little, and kills those still running.
    fn drop(&mut self) {
        for node in &mut self.nodes {
            drop(node.child.stdin.take());
        }
        let deadline = Instant::now() + STOP_WAIT;
        for node in &mut self.nodes {
            while Instant::now() < deadline && matches!(node.child.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(20));
            }
            if matches!(node.child.try_wait(), Ok(None)) {
                let _ = node.child.kill();
            }
            let _ = node.child.wait();
        }
    }
}

/// `n` distinct free ports on loopback: bound all at once (so they differ),
/// then released for the nodes to take.
fn free_ports(n: usize) -> Result<Vec<u16>, BenchError> {
    let failed = |source| BenchError::Io {
        what: "find a free port on".into(),
        path: PathBuf::from("127.0.0.1"),
        source,
    };
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)
}

/// The leader, ready for writes.
pub(crate) struct Leader {
    pub(crate) addr: String,
    /// Its `read_mode` (`read-index` or `lease`), as INFO says.
    pub(crate) read_mode: String,
}

/// Waits until a node names a leader and that leader takes a write (a
/// newly elected leader answers `-TRYAGAIN` until it has committed an entry
/// of its term), up to [`LEADER_WAIT`]. `check` runs between attempts and
/// may end the wait with its error (a local node exited).
pub(crate) fn wait_for_leader(
    addrs: &[String],
    check: &mut dyn FnMut() -> Result<(), BenchError>,
) -> Result<Leader, BenchError> {
    let start = Instant::now();
    let mut told = false;
    let mut last = String::from("no node answered");
    loop {
        check()?;
        let mut candidates: Vec<String> = Vec::new();
        for addr in addrs {
            match call_once(addr, &[b"INFO", b"raft"]) {
                Ok(reply) => {
                    let info = conn::text(&reply).unwrap_or_default();
                    match (
                        info_field(&info, "role").as_deref(),
                        info_field(&info, "leader_client_addr"),
                    ) {
                        (Some("leader"), _) => candidates.insert(0, addr.clone()),
                        (_, Some(leader)) if !leader.is_empty() => candidates.push(leader),
                        _ => last = format!("{addr}: knows no leader"),
                    }
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        if let Some(addr) = candidates.first() {
            match probe_write(addr) {
                Ok(leader) => return Ok(leader),
                Err(why) => last = why,
            }
        }
        if !told && start.elapsed() >= TELL_AFTER {
            eprintln!(
                "waiting for a leader (up to {} s; {last})",
                LEADER_WAIT.as_secs()
            );
            told = true;
        }
        if start.elapsed() >= LEADER_WAIT {
            return Err(BenchError::NoLeader {
                waited_secs: LEADER_WAIT.as_secs(),
                tails: format!(" (last: {last})"),
            });
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// One write on `addr`, following one redirect; the leader if it took it.
fn probe_write(addr: &str) -> Result<Leader, String> {
    let mut addr = addr.to_string();
    for _ in 0..2 {
        let mut c = Conn::connect(&addr).map_err(|e| format!("{addr}: {e}"))?;
        let reply = c
            .call(&[b"SET", b"raftnode-bench:probe", b"1"])
            .map_err(|e| format!("{addr}: {e}"))?;
        match reply {
            Reply::Simple(_) => {
                let info = c
                    .call(&[b"INFO", b"raft"])
                    .map_err(|e| format!("{addr}: {e}"))?;
                let info = conn::text(&info).unwrap_or_default();
                let read_mode = info_field(&info, "read_mode").unwrap_or_default();
                return Ok(Leader { addr, read_mode });
            }
            Reply::Error(text) => match moved_to(&text) {
                Some(target) => addr = target.to_string(),
                None => return Err(format!("{addr}: SET answered -{text}")),
            },
            other => return Err(format!("{addr}: SET answered {other:?}")),
        }
    }
    Err(format!("{addr}: redirected again"))
}

/// The process ids of every member of the cluster that `leader` leads, if
/// they all serve clients on this machine's loopback (and so are processes
/// here whose CPU time `/proc` has); `None` otherwise.
pub(crate) fn server_pids(leader: &str) -> Option<Vec<u32>> {
    let nodes = conn::text(&call_once(leader, &[b"CLUSTER", b"NODES"]).ok()?)?;
    let mut pids = Vec::new();
    for line in nodes.lines() {
        // `<id> <ip:port@bus-port> <flags> ...`
        let addr = line.split_whitespace().nth(1)?.split('@').next()?;
        let loopback = addr.to_socket_addrs().ok()?.all(|a| a.ip().is_loopback());
        if !loopback {
            return None;
        }
        let info = conn::text(&call_once(addr, &[b"INFO", b"server"]).ok()?)?;
        let pid: u32 = info_field(&info, "process_id")?.parse().ok()?;
        pids.push(pid);
    }
    (!pids.is_empty()).then_some(pids)
}
