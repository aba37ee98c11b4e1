//! Real `raftnode run` processes on free loopback ports, and a small RESP
//! client to talk to them. Every process is killed when its cluster is
//! dropped; each also exits by itself if this test process dies, because it
//! runs with `--exit-on-stdin-eof` and its stdin is a pipe from us.

use super::{wait_for, WAIT};
use raftnode::redis::resp::{self, Limits, Reply};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_raftnode");

/// A port that is free now and that no other test in this process has been
/// given. It is taken from below the kernel's ephemeral port range: the OS
/// hands out ports in that range to every `bind(0)` and every outgoing
/// connection on the machine, so such a port could be taken by someone else
/// between now and the moment the node binds it (which made process tests
/// fail about once in a hundred runs with "Address already in use").
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Leave room above for free_port_block's raft ports (port + 100 + i).
    let range = 10_000..ephemeral_low.saturating_sub(200).max(10_001);
    for _ in 0..10_000 {
        let port = rand::Rng::gen_range(&mut rand::thread_rng(), range.clone());
        if GIVEN.lock().unwrap().insert(port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range {ephemeral_low}");
}

pub struct ProcNode {
    pub client_port: u16,
    pub raft_port: u16,
    /// How its command line names the rest of the cluster.
    pub start: Start,
    child: Option<Child>,
}

/// How a node's command line names the rest of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// `--peer` for each other founding member (the nodes the cluster was
    /// created with): on a new data dir, it forms the cluster with them.
    Peers,
    /// `--join` with the client address of this node, and no `--peer`.
    Join(u64),
    /// Neither: membership comes from the data dir alone.
    Bare,
}

pub struct ProcCluster {
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, ProcNode>,
    /// Flags added to every node's command line.
    pub extra_args: Vec<String>,
    /// The nodes the cluster was created with.
    pub founders: BTreeSet<u64>,
}

impl ProcCluster {
    /// Starts nodes `start` of an `n`-node cluster (the others stay down).
    pub fn start_some(n: u64, start: &[u64]) -> ProcCluster {
        super::init_logging();
        let mut cluster = ProcCluster {
            dir: tempfile::tempdir().unwrap(),
            nodes: (1..=n)
                .map(|id| {
                    let node = ProcNode {
                        client_port: free_port(),
                        raft_port: free_port(),
                        start: Start::Peers,
                        child: None,
                    };
                    (id, node)
                })
                .collect(),
            extra_args: Vec::new(),
            founders: (1..=n).collect(),
        };
        for &id in start {
            cluster.start_node(id);
        }
        cluster
    }

    pub fn start(n: u64) -> ProcCluster {
        let all: Vec<u64> = (1..=n).collect();
        ProcCluster::start_some(n, &all)
    }

    /// Like [`ProcCluster::start`], every node with `args` added.
    pub fn start_with(n: u64, args: &[&str]) -> ProcCluster {
        let mut cluster = ProcCluster::start_some(n, &[]);
        cluster.extra_args = args.iter().map(|a| a.to_string()).collect();
        for id in 1..=n {
            cluster.start_node(id);
        }
        cluster
    }

    /// The command line that starts node `id`.
    pub fn command(&self, id: u64) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args([
                "--raft-addr",
                &format!("127.0.0.1:{}", self.nodes[&id].raft_port),
            ])
            .args([
                "--client-addr",
                &format!("127.0.0.1:{}", self.nodes[&id].client_port),
            ])
            .args(&self.extra_args);
        match self.nodes[&id].start {
            Start::Peers => {
                for &peer in self.founders.iter().filter(|&&p| p != id) {
                    let port = self.nodes[&peer].raft_port;
                    cmd.args(["--peer", &format!("{peer}=127.0.0.1:{port}")]);
                }
            }
            Start::Join(via) => {
                let port = self.nodes[&via].client_port;
                cmd.args(["--join", &format!("127.0.0.1:{port}")]);
            }
            Start::Bare => {}
        }
        cmd
    }

    /// A node `id` that is not part of the cluster yet, with its own ports,
    /// started (later) as `start` says.
    pub fn add_node(&mut self, id: u64, start: Start) {
        let node = ProcNode {
            client_port: free_port(),
            raft_port: free_port(),
            start,
            child: None,
        };
        assert!(self.nodes.insert(id, node).is_none(), "node {id} exists");
    }

    /// `host:port` of node `id`'s client port.
    pub fn client_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.nodes[&id].client_port)
    }

    /// `host:port` of node `id`'s raft port.
    pub fn raft_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.nodes[&id].raft_port)
    }

    /// Everything node `id` has logged (its stderr, across restarts).
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    /// Waits for node `id`'s process to exit by itself; its exit status.
    pub fn wait_exit(&mut self, id: u64, timeout: Duration) -> std::process::ExitStatus {
        let child = self.nodes.get_mut(&id).unwrap().child.as_mut();
        let child = child.expect("node is running");
        let status = wait_for(timeout, &format!("node {id} to exit"), || {
            child.try_wait().expect("wait for a node")
        });
        self.nodes.get_mut(&id).unwrap().child = None;
        status
    }

    /// Node `id`'s exit status, if its process has ended by itself.
    pub fn exited(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let child = self.nodes.get_mut(&id).unwrap().child.as_mut()?;
        child.try_wait().expect("wait for a node")
    }

    /// Runs node `id`'s command line once, expecting it not to start: with
    /// `--exit-on-stdin-eof` and no standard input, a node that does start
    /// exits at once with status 0. Its exit status and standard error.
    pub fn try_start(&self, id: u64) -> (std::process::ExitStatus, String) {
        let out = self
            .command(id)
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::null())
            .output()
            .expect("run raftnode");
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// Starts node `id` and waits until it serves clients.
    pub fn start_node(&mut self, id: u64) {
        self.spawn_node(id);
        // Ready once it answers PING.
        let port = self.nodes[&id].client_port;
        wait_for(WAIT, &format!("node {id} to serve clients"), || {
            let mut client = Resp::connect(port).ok()?;
            (client.call(&["PING"]) == Reply::Simple("PONG".into())).then_some(())
        });
    }

    /// Starts node `id`'s process without waiting for it (it may exit).
    pub fn spawn_node(&mut self, id: u64) {
        let mut cmd = self.command(id);
        cmd.arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(self.log_path(id))
                    .unwrap(),
            );
        let child = cmd.spawn().expect("spawn raftnode");
        self.nodes.get_mut(&id).unwrap().child = Some(child);
    }

    /// The process id of a running node.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes[&id].child.as_ref().map(Child::id)
    }

    /// Sends a signal (`"STOP"`, `"CONT"`, …) to a running node.
    pub fn signal(&self, id: u64, signal: &str) {
        let pid = self.pid(id).expect("node is running");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// kill -9: no chance to flush anything not already fsynced.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.nodes.get_mut(&id).unwrap().child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn client(&self, id: u64) -> Resp {
        Resp::connect(self.nodes[&id].client_port).expect("connect to node")
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.child.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// INFO as a map.
    pub fn info(&self, id: u64) -> BTreeMap<String, String> {
        self.client(id).info()
    }

    /// Waits until every running node names the same leader and knows its
    /// client address.
    pub fn wait_for_leader(&self) -> u64 {
        self.wait_for_leader_among(&self.running())
    }

    /// Like [`ProcCluster::wait_for_leader`], among the running nodes `ids`
    /// only (the others may know no leader, or another).
    pub fn wait_for_leader_among(&self, ids: &[u64]) -> u64 {
        wait_for(WAIT, "the processes to agree on a leader", || {
            let infos: Vec<_> = ids.iter().map(|&id| self.info(id)).collect();
            let leader = infos.first()?.get("leader_id")?.parse::<u64>().ok()?;
            if !ids.contains(&leader) {
                return None;
            }
            let addr = format!("127.0.0.1:{}", self.nodes[&leader].client_port);
            infos
                .iter()
                .all(|i| i["leader_id"] == leader.to_string() && i["leader_client_addr"] == addr)
                .then_some(leader)
        })
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

/// `+OK`.
pub fn ok() -> Reply {
    Reply::ok()
}

/// A bulk string reply holding `s`.
pub fn bulk(s: &str) -> Reply {
    Reply::Bulk(s.as_bytes().to_vec())
}

/// The text of `reply`, which must be an error starting with `prefix`.
pub fn error_starting(reply: &Reply, prefix: &str) -> String {
    match reply {
        Reply::Error(text) if text.starts_with(prefix) => text.clone(),
        other => panic!("expected an error starting with {prefix:?}, got {other:?}"),
    }
}

/// A plain RESP connection.
pub struct Resp {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Resp {
    pub fn connect(port: u16) -> std::io::Result<Resp> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Resp { stream, reader })
    }

    pub fn send(&mut self, args: &[&str]) {
        self.try_send(args).unwrap();
    }

    /// Sends a command; an error means the connection is gone.
    pub fn try_send(&mut self, args: &[&str]) -> std::io::Result<()> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let mut buf = Vec::new();
        resp::encode_command(&args, &mut buf);
        self.stream.write_all(&buf)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn read(&mut self) -> Reply {
        resp::read_reply(&mut self.reader, &Limits::default()).expect("a reply")
    }

    /// The next reply, or an error if the server closed the connection.
    pub fn try_read(&mut self) -> Result<Reply, resp::RespError> {
        resp::read_reply(&mut self.reader, &Limits::default())
    }

    pub fn call(&mut self, args: &[&str]) -> Reply {
        self.send(args);
        self.read()
    }

    /// INFO as a map of its `field:value` lines.
    pub fn info(&mut self) -> BTreeMap<String, String> {
        match self.call(&["INFO"]) {
            Reply::Bulk(text) => String::from_utf8(text)
                .unwrap()
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            other => panic!("INFO answered {other:?}"),
        }
    }
}
