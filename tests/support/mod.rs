//! Shared helpers for the threaded integration tests: a cluster of real nodes
//! on loopback, each in its own data dir, and deadline-based waiting.
#![allow(dead_code)]

use raftnode::kv::{KeyValue, Kv, KvNode};
use raftnode::raft::message::NodeId;
use raftnode::raft::RoleKind;
use raftnode::{Config, Error, Node, Status};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long any wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `cond` until it returns `Some`, failing the test after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = cond() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// The leader of the highest term, if every node in `statuses` follows it;
/// fails the test if any term shows two leaders.
pub fn agreed_leader(statuses: &[Status]) -> Option<NodeId> {
    let mut leaders: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
    for s in statuses.iter().filter(|s| s.role == RoleKind::Leader) {
        leaders.entry(s.term).or_default().push(s.id);
    }
    for (term, ids) in &leaders {
        assert_eq!(ids.len(), 1, "two leaders in term {term}: {ids:?}");
    }
    let (&term, ids) = leaders.iter().next_back()?;
    let leader = ids[0];
    statuses
        .iter()
        .all(|s| s.term == term && s.leader_id == Some(leader))
        .then_some(leader)
}

/// Nodes 1..=n with data under one temporary directory. Every node is halted
/// when the cluster is dropped, whether the test passed or not.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    addrs: BTreeMap<NodeId, SocketAddr>,
    nodes: BTreeMap<NodeId, Option<KvNode>>,
    pub proposal_timeout: Duration,
    /// A test's changes to every node's configuration.
    tweak: fn(&mut Config),
}

impl Cluster {
    pub fn new(n: u64) -> Cluster {
        Cluster::with_timeout(n, Duration::from_secs(3))
    }

    pub fn with_timeout(n: u64, proposal_timeout: Duration) -> Cluster {
        Cluster::with_config(n, proposal_timeout, |_| {})
    }

    /// Like [`Cluster::with_timeout`], with `tweak` applied to every node's
    /// configuration (on restarts too).
    pub fn with_config(n: u64, proposal_timeout: Duration, tweak: fn(&mut Config)) -> Cluster {
        init_logging();
        let listeners: BTreeMap<NodeId, TcpListener> = (1..=n)
            .map(|id| (id, TcpListener::bind("127.0.0.1:0").expect("bind port 0")))
            .collect();
        let addrs = listeners
            .iter()
            .map(|(&id, l)| (id, l.local_addr().unwrap()))
            .collect();
        let mut cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            addrs,
            nodes: BTreeMap::new(),
            proposal_timeout,
            tweak,
        };
        for (id, listener) in listeners {
            let node = Node::start_with_listener(cluster.config(id), listener, Kv::new()).unwrap();
            cluster.nodes.insert(id, Some(node));
        }
        cluster
    }

    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    pub fn config(&self, id: NodeId) -> Config {
        let mut config = Config::new(id, self.data_dir(id));
        config.cluster_id = "test".into();
        config.raft_addr = self.addrs[&id].to_string();
        config.peers = self
            .addrs
            .iter()
            .filter(|(&peer, _)| peer != id)
            .map(|(&peer, addr)| (peer, addr.to_string()))
            .collect();
        config.proposal_timeout = self.proposal_timeout;
        (self.tweak)(&mut config);
        config
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub fn running(&self) -> Vec<&KvNode> {
        self.nodes.values().flatten().collect()
    }

    pub fn node(&self, id: NodeId) -> &KvNode {
        self.nodes[&id].as_ref().expect("node is running")
    }

    pub fn halt(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(&id).and_then(Option::take) {
            node.halt();
        }
    }

    /// Restarts a halted node from its data dir on its old address.
    pub fn restart(&mut self, id: NodeId) {
        assert!(self.nodes[&id].is_none(), "node {id} is running");
        let listener = wait_for(WAIT, "the node's port to be free again", || {
            TcpListener::bind(self.addrs[&id]).ok()
        });
        let node = Node::start_with_listener(self.config(id), listener, Kv::new()).unwrap();
        self.nodes.insert(id, Some(node));
    }

    /// Waits until the running nodes agree on one leader of the highest term,
    /// checking on the way that no term ever shows two leaders.
    pub fn wait_for_leader(&self) -> NodeId {
        wait_for(WAIT, "a leader", || {
            let statuses: Vec<_> = self.running().iter().map(|n| n.status()).collect();
            agreed_leader(&statuses)
        })
    }

    pub fn leader(&self) -> &KvNode {
        self.node(self.wait_for_leader())
    }

    /// Writes through whichever node leads, retrying while leadership moves.
    pub fn set(&self, key: &str, value: &str) {
        wait_for(WAIT, "a write to be accepted", || {
            match self.leader().set(key, value) {
                Ok(()) => Some(()),
                Err(Error::NotLeader { .. }) | Err(Error::Timeout) => None,
                Err(e) => panic!("write failed: {e}"),
            }
        })
    }

    /// Waits until every running node has applied `key = value`.
    pub fn wait_replicated(&self, key: &str, value: &str) {
        for node in self.running() {
            wait_for(WAIT, &format!("node {} to apply {key}", node.id()), || {
                (node.get(key.as_bytes()).as_deref() == Some(value.as_bytes())).then_some(())
            });
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut().filter_map(Option::take) {
            node.halt();
        }
    }
}
pub mod process;
