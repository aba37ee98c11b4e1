//! Shared helpers for the threaded integration tests: a cluster of real nodes
//! on loopback, each in its own data dir, and deadline-based waiting.
#![allow(dead_code)]

use parking_lot::Mutex;
use raftnode::kv::{KeyValue, Kv, KvNode};
use raftnode::raft::membership::{ChangeError, ConfChange};
use raftnode::raft::message::{Index, NodeId};
use raftnode::raft::RoleKind;
use raftnode::{Config, Error, Node, Status};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
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
///
/// A cluster can grow: [`Cluster::reserve`] gives a new node an address,
/// [`Cluster::start_joining`] starts it with an empty data dir that waits to
/// be added ([`Config::join`]). Its address is recorded, so every later
/// (re)start dials it too.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    addrs: BTreeMap<NodeId, SocketAddr>,
    nodes: BTreeMap<NodeId, Option<Arc<KvNode>>>,
    pub proposal_timeout: Duration,
    /// A test's changes to every node's configuration.
    tweak: fn(&mut Config),
    /// The running nodes, shared with background threads ([`Writers`]).
    live: LiveNodes,
    /// Listeners bound by [`Cluster::reserve`] for nodes not yet started.
    reserved: BTreeMap<NodeId, TcpListener>,
    /// Data dirs that replaced a node's first one ([`Cluster::start_fresh`]).
    fresh_dirs: BTreeMap<NodeId, PathBuf>,
    fresh_count: u32,
}

/// The running nodes of a [`Cluster`], by id, as background threads see them:
/// a node is taken out before it is halted.
pub type LiveNodes = Arc<Mutex<BTreeMap<NodeId, Arc<KvNode>>>>;

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
            live: LiveNodes::default(),
            reserved: BTreeMap::new(),
            fresh_dirs: BTreeMap::new(),
            fresh_count: 0,
        };
        for (id, listener) in listeners {
            let node = Node::start_with_listener(cluster.config(id), listener, Kv::new()).unwrap();
            cluster.insert(id, node);
        }
        cluster
    }

    /// The data dir node `id` runs on: its first one, or the empty one it was
    /// last started with by [`Cluster::start_fresh`].
    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        match self.fresh_dirs.get(&id) {
            Some(dir) => dir.clone(),
            None => self.dir.path().join(format!("node-{id}")),
        }
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
        self.nodes.values().flatten().map(|n| &**n).collect()
    }

    pub fn node(&self, id: NodeId) -> &KvNode {
        self.nodes[&id].as_deref().expect("node is running")
    }

    /// A running node, to hand to another thread.
    pub fn handle(&self, id: NodeId) -> Arc<KvNode> {
        self.nodes[&id].clone().expect("node is running")
    }

    /// The running nodes, kept up to date as nodes start and halt.
    pub fn live(&self) -> LiveNodes {
        self.live.clone()
    }

    pub fn is_running(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(Option::is_some)
    }

    fn insert(&mut self, id: NodeId, node: KvNode) {
        let node = Arc::new(node);
        self.live.lock().insert(id, node.clone());
        self.nodes.insert(id, Some(node));
    }

    pub fn halt(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(&id).and_then(Option::take) {
            self.live.lock().remove(&id);
            node.halt();
        }
    }

    /// Restarts a halted node from its data dir on its old address.
    pub fn restart(&mut self, id: NodeId) {
        self.restart_with(id, |_| {});
    }

    /// Restarts a halted node from its data dir on its old address, with
    /// `adjust` applied to its configuration.
    pub fn restart_with(&mut self, id: NodeId, adjust: impl FnOnce(&mut Config)) {
        assert!(!self.is_running(id), "node {id} is running");
        let mut config = self.config(id);
        adjust(&mut config);
        let listener = self.listener(id);
        let node = Node::start_with_listener(config, listener, Kv::new()).unwrap();
        self.insert(id, node);
    }

    /// The raft address node `id` has, or will have once started.
    pub fn raft_addr(&self, id: NodeId) -> String {
        self.addrs[&id].to_string()
    }

    /// Gives a node that is not part of the cluster yet an address (a port
    /// bound now, so that it can be named in `AddLearner` before the node
    /// starts); from now on every node started dials it there.
    pub fn reserve(&mut self, id: NodeId) -> String {
        if let std::collections::btree_map::Entry::Vacant(entry) = self.addrs.entry(id) {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
            entry.insert(listener.local_addr().unwrap());
            self.reserved.insert(id, listener);
        }
        self.raft_addr(id)
    }

    /// A listener on node `id`'s address: the reserved one, or its old
    /// address bound again.
    fn listener(&mut self, id: NodeId) -> TcpListener {
        if let Some(listener) = self.reserved.remove(&id) {
            return listener;
        }
        let addr = self.addrs[&id];
        wait_for(WAIT, "the node's port to be free again", || {
            TcpListener::bind(addr).ok()
        })
    }

    /// Starts node `id` with a new, empty data dir, joining the cluster
    /// (`Config::join`): it waits to be added by the leader. Its address is
    /// the reserved one, or its old one; it dials the other nodes (so it
    /// reaches the leader whatever its configuration says).
    pub fn start_joining(&mut self, id: NodeId) {
        self.start_fresh(id, true);
    }

    /// Starts node `id` with a new, empty data dir (a wiped machine), with
    /// `join` as given and every other node as its peers.
    pub fn start_fresh(&mut self, id: NodeId, join: bool) {
        assert!(!self.is_running(id), "node {id} is running");
        self.reserve(id);
        if self.nodes.contains_key(&id) {
            // Not the first data dir of this id: another one.
            self.fresh_count += 1;
            let dir = (self.dir.path()).join(format!("node-{id}.{}", self.fresh_count));
            self.fresh_dirs.insert(id, dir);
        }
        let mut config = self.config(id);
        config.join = join;
        let listener = self.listener(id);
        let node = Node::start_with_listener(config, listener, Kv::new()).unwrap();
        self.insert(id, node);
    }

    /// Proposes `change` on whichever node leads, retrying while leadership
    /// moves or another change is in flight; returns the index of its entry
    /// once committed. A change that timed out (outcome unknown) is retried
    /// too: if the retry finds it already made, the index of the
    /// configuration in force is returned. Any other error fails the test.
    pub fn change(&self, change: ConfChange) -> Index {
        let mut uncertain = false;
        wait_for(WAIT, &format!("the change {change} to commit"), || {
            let Some(leader) = self.live_leader() else {
                std::thread::sleep(Duration::from_millis(10));
                return None;
            };
            match leader.change_membership(change.clone()) {
                Ok(index) => Some(index),
                Err(Error::NotLeader { .. }) | Err(Error::Change(ChangeError::InProgress(_))) => {
                    std::thread::sleep(Duration::from_millis(10));
                    None
                }
                Err(Error::Timeout) => {
                    uncertain = true;
                    None
                }
                Err(Error::Change(e)) if uncertain && already_made(&change, &e) => {
                    Some(leader.status().config_index)
                }
                Err(e) => panic!("the change {change} failed: {e:?}"),
            }
        })
    }

    /// Adds node `id` (at its reserved address) as a learner.
    pub fn add_learner(&self, id: NodeId, auto_promote: bool) -> Index {
        self.change(ConfChange::AddLearner {
            id,
            raft_addr: self.raft_addr(id),
            client_addr: None,
            auto_promote,
        })
    }

    /// Waits until the leader counts `id` among the voters.
    pub fn wait_voter(&self, id: NodeId) {
        wait_for(WAIT, &format!("node {id} to become a voter"), || {
            let leader = self.live_leader()?;
            leader.status().members.contains(&id).then_some(())
        });
    }

    /// The running node that leads in the highest term, if any: no waiting
    /// for the others to agree.
    pub fn live_leader(&self) -> Option<&KvNode> {
        let statuses = self.running().into_iter().map(|n| (n, n.status()));
        statuses
            .filter(|(_, s)| s.role == RoleKind::Leader)
            .max_by_key(|(_, s)| s.term)
            .map(|(n, _)| n)
    }

    /// Waits until the running nodes agree on one leader of the highest term,
    /// checking on the way that no term ever shows two leaders.
    pub fn wait_for_leader(&self) -> NodeId {
        wait_for(WAIT, "a leader", || {
            let statuses: Vec<_> = self.running().iter().map(|n| n.status()).collect();
            agreed_leader(&statuses)
        })
    }

    /// Like [`Cluster::wait_for_leader`], among the given nodes only (the
    /// others may be removed, or strangers).
    pub fn wait_for_leader_among(&self, ids: &[NodeId]) -> NodeId {
        wait_for(WAIT, &format!("a leader among {ids:?}"), || {
            let statuses: Vec<_> = ids.iter().map(|&id| self.node(id).status()).collect();
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

    /// Writes through the running node that leads in the highest term (the
    /// others need not agree: some may be removed, or refused), retrying
    /// while leadership moves.
    pub fn write(&self, key: &str, value: &str) {
        wait_for(
            WAIT,
            &format!("the write {key} = {value} to be acknowledged"),
            || {
                let Some(leader) = self.live_leader() else {
                    std::thread::sleep(Duration::from_millis(10));
                    return None;
                };
                match leader.set(key, value) {
                    Ok(()) => Some(()),
                    Err(Error::NotLeader { .. })
                    | Err(Error::Timeout)
                    | Err(Error::Transferring { .. }) => None,
                    Err(e) => panic!("write failed: {e}"),
                }
            },
        )
    }

    /// Waits until every running node has applied `key = value`.
    pub fn wait_replicated(&self, key: &str, value: &str) {
        for node in self.running() {
            wait_for(WAIT, &format!("node {} to apply {key}", node.id()), || {
                (node.get(key.as_bytes()).as_deref() == Some(value.as_bytes())).then_some(())
            });
        }
    }

    /// Checks every acknowledged write: a linearizable read on the leader of
    /// `members` returns it, and every one of `members` has applied it.
    pub fn check_acknowledged(&self, members: &[NodeId], acked: &BTreeMap<String, String>) {
        let leader = self.node(self.wait_for_leader_among(members));
        let acked: Vec<(&String, &String)> = acked.iter().collect();
        // Several readers at once: their reads share heartbeat rounds.
        std::thread::scope(|s| {
            for part in acked.chunks(acked.len().div_ceil(4).max(1)) {
                s.spawn(move || {
                    for &(key, value) in part {
                        let read =
                            wait_for(
                                WAIT,
                                &format!("a linearizable read of {key}"),
                                || match leader.read(key.as_bytes()) {
                                    Ok(v) => Some(v),
                                    Err(Error::NotLeader { .. }) | Err(Error::Timeout) => None,
                                    Err(e) => panic!("read of {key} failed: {e}"),
                                },
                            );
                        assert_eq!(
                            read.as_deref(),
                            Some(value.as_bytes()),
                            "acknowledged write {key} = {value} lost (read on leader {})",
                            leader.id()
                        );
                    }
                });
            }
        });
        for &id in members {
            wait_applied(self.node(id), acked.iter().copied());
        }
    }
}

/// Waits until `node` has applied every one of the `acked` writes.
pub fn wait_applied<'a>(
    node: &KvNode,
    acked: impl Iterator<Item = (&'a String, &'a String)> + Clone,
) {
    wait_for(
        WAIT,
        &format!("node {} to apply every acknowledged write", node.id()),
        || {
            node.with_state(|kv| {
                acked
                    .clone()
                    .all(|(k, v)| kv.get(k.as_bytes()).map(Vec::as_slice) == Some(v.as_bytes()))
            })
            .then_some(())
        },
    );
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.live.lock().clear();
        for node in self.nodes.values_mut().filter_map(Option::take) {
            node.halt();
        }
    }
}

/// Whether `refused` says that `change` is already in force.
fn already_made(change: &ConfChange, refused: &ChangeError) -> bool {
    match (change, refused) {
        (ConfChange::AddLearner { id, .. }, ChangeError::DuplicateId(other)) => id == other,
        (ConfChange::Promote { id }, ChangeError::AlreadyVoter(other)) => id == other,
        (ConfChange::Remove { id }, ChangeError::UnknownNode(other)) => id == other,
        _ => false,
    }
}

/// What [`Writers`] saw.
#[derive(Debug, Default)]
pub struct WriteLog {
    /// Every acknowledged write: key → value. Each key is written once (and
    /// retried with the same value while the outcome is unknown).
    pub acked: BTreeMap<String, String>,
    /// Errors a write should never get (anything but the leader moving, a
    /// transfer, a timeout or a halted node).
    pub unexpected: Vec<String>,
}

/// Background threads that write continuously through whichever running node
/// leads, each its own keys (`w{thread}-{n}`), recording every acknowledged
/// write. A write whose outcome is unknown (timeout, halted node) or that was
/// refused (not the leader, transfer under way) is retried, same key and
/// value, on the current leader. Stopped and joined on drop.
pub struct Writers {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriteLog>>,
    threads: Vec<JoinHandle<()>>,
}

impl Writers {
    pub fn start(live: LiveNodes, threads: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let threads = (0..threads)
            .map(|t| {
                let (live, stop, log) = (live.clone(), stop.clone(), log.clone());
                std::thread::Builder::new()
                    .name(format!("writer-{t}"))
                    .spawn(move || write_until_stopped(t, &live, &stop, &log))
                    .expect("spawn a writer")
            })
            .collect();
        Writers { stop, log, threads }
    }

    /// How many writes have been acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.log.lock().acked.len()
    }

    /// Waits until `more` writes beyond the ones acknowledged now are
    /// acknowledged: writes go on.
    pub fn wait_for_more(&self, more: usize) {
        let target = self.acked_count() + more;
        wait_for(WAIT, &format!("{more} more acknowledged writes"), || {
            (self.acked_count() >= target).then_some(())
        });
    }

    /// Stops the writers and returns what they saw.
    pub fn stop(mut self) -> WriteLog {
        self.halt();
        std::mem::take(&mut *self.log.lock())
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The running node that leads in the highest term, if any.
pub fn leader_of(live: &LiveNodes) -> Option<Arc<KvNode>> {
    let nodes: Vec<Arc<KvNode>> = live.lock().values().cloned().collect();
    nodes
        .into_iter()
        .filter_map(|n| {
            let status = n.try_status()?;
            (status.role == RoleKind::Leader).then_some((status.term, n))
        })
        .max_by_key(|(term, _)| *term)
        .map(|(_, n)| n)
}

fn write_until_stopped(t: usize, live: &LiveNodes, stop: &AtomicBool, log: &Mutex<WriteLog>) {
    let mut leader: Option<Arc<KvNode>> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        // A node halted since is no longer live: writing to it would only
        // time out.
        let cached = leader
            .take()
            .filter(|n| (live.lock().get(&n.id())).is_some_and(|current| Arc::ptr_eq(current, n)));
        let Some(node) = cached.or_else(|| leader_of(live)) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let (key, value) = (format!("w{t}-{n}"), format!("v{n}"));
        match node.set(key.clone(), value.clone()) {
            Ok(()) => {
                log.lock().acked.insert(key, value);
                n += 1;
                leader = Some(node);
            }
            Err(Error::NotLeader { .. })
            | Err(Error::Transferring { .. })
            | Err(Error::Timeout)
            | Err(Error::ShutDown) => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => {
                log.lock()
                    .unexpected
                    .push(format!("write {key} on node {}: {e:?}", node.id()));
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// Watches a node's role from a background thread, every couple of
/// milliseconds, and records every role it was seen in and the highest term.
pub struct RoleWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<(BTreeSet<String>, u64)>>,
    thread: Option<JoinHandle<()>>,
}

impl RoleWatch {
    pub fn start(node: Arc<KvNode>) -> RoleWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new((BTreeSet::new(), 0)));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    if let Some(status) = node.try_status() {
                        let mut seen = seen.lock();
                        seen.0.insert(format!("{:?}", status.role));
                        seen.1 = seen.1.max(status.term);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        RoleWatch {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// The roles seen so far (`"Follower"`, `"PreCandidate"`, ...).
    pub fn roles(&self) -> BTreeSet<String> {
        self.seen.lock().0.clone()
    }

    /// The highest term seen so far.
    pub fn max_term(&self) -> u64 {
        self.seen.lock().1
    }
}

impl Drop for RoleWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
pub mod fuzz;
pub mod process;
pub mod redis_server;
