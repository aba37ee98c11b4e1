//! A cluster under test control: in-process nodes whose peer traffic all goes
//! through a fault-injecting proxy per ordered pair of nodes, clients that
//! record a history, and the invariant checks every scenario ends with.
//!
//! Invariants checked:
//! * at most one leader per term (sampled continuously by a monitor thread);
//! * logs agree on every committed index;
//! * committed entries are never lost or changed, across crashes and restarts
//!   (each node's committed prefix is recorded before it crashes and sampled
//!   while it runs);
//! * a node's term never goes backwards across a restart;
//! * the history — including final reads on the leader after healing, so that
//!   every acknowledged write must be in the final state — is linearizable;
//! * after healing and a quiet period, every running member holds the same
//!   configuration as the leader, every node in the harness is a member of
//!   it and every member runs, and all have applied the same state (equal
//!   digests at equal applied indexes);
//! * with membership changes (`membership.rs`): a configuration seen
//!   committed is never undone, removed nodes stay out, and a transfer that
//!   reports success handed leadership to the node asked for.
//! * with clients of keys with short times to live (`ttl.rs`): no read sees
//!   a key past its deadline, and after healing, active expiry alone deletes
//!   every key that has a deadline on every replica, which then agree again.
//!
//! Every node runs its active expiry beside it ([`Expirer`], the leader's
//! deletion of expired keys), as the client port runs it in a `raftnode`
//! process; it stops when the node crashes or is let go.
//!
//! # Pools of ids
//!
//! A cluster may start with fewer voters than the ids it may ever use
//! ([`Chaos::with_pool`]): ids `1..=initial` form it, the others are added
//! later (and any may be removed and added back, with an empty data dir).
//! Every id has its port and a proxy on every directed link from the start,
//! and every node is given a dial address (its proxy) for every other id,
//! so partitions cut added nodes too. Because `Config.peers` on a new data
//! dir would be taken for the bootstrap members, the initial members' data
//! dirs get their bootstrap configuration (the initial voters) written
//! before their first start, exactly as a node writes it itself; every node
//! starts with `join = true`, which only matters for a new data dir without
//! one: an added node waits to be added.
//!
//! Only the fault suite includes this module (`#[path]` in `tests/faults.rs`),
//! so the checker's and the proxy's own unit tests run once, there.
#![allow(dead_code)]

pub mod linearizability;
pub mod membership;
pub mod netproxy;
pub mod power;
pub mod ttl;

use crate::support::{init_logging, wait_for};
use linearizability::{CheckResult, History, Input, Output};
use membership::{Plan, Report};
use netproxy::Net;
use parking_lot::Mutex;
use power::{PowerCutStore, PowerSwitch};
use raftnode::kv::expirer::Expirer;
use raftnode::kv::{KeyValue, Kv, KvNode};
use raftnode::node::Membership;
use raftnode::raft::membership::{Configuration, Member};
use raftnode::raft::message::{Entry, Index, NodeId, Term};
use raftnode::raft::RoleKind;
use raftnode::storage::{DiskStore, LogStore};
use raftnode::{Config, Error, Node, StartError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a scenario waits for the cluster to recover before failing.
pub const RECOVER: Duration = Duration::from_secs(20);

/// How long the harness waits for a node to halt. A halt can hang (see
/// `halting_a_node_while_peers_connect_returns` in `faults.rs`): the
/// harness then goes on without it (every thread but one stuck inbound
/// connection has stopped, the data dir is let go) and the halt ends when
/// the network shuts down.
const HALT_WAIT: Duration = Duration::from_secs(3);

/// The seed for a scenario: `RAFTNODE_SEED` if set, else the test's default.
pub fn seed(default: u64) -> u64 {
    std::env::var("RAFTNODE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The seeds a scenario that runs several times goes through:
/// `RAFTNODE_SEED` alone if set; else `defaults`, and under soak as many
/// again per soak factor (derived from them).
pub fn seeds(defaults: &[u64]) -> Vec<u64> {
    if let Some(seed) = std::env::var("RAFTNODE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    (0..u64::from(soak()))
        .flat_map(|round| defaults.iter().map(move |&s| s + 1000 * round))
        .collect()
}

/// Scales durations and iteration counts for soak runs (`RAFTNODE_SOAK=1`
/// multiplies by 10; any other number by that number).
pub fn soak() -> u32 {
    match std::env::var("RAFTNODE_SOAK").ok().as_deref() {
        None | Some("") | Some("0") => 1,
        Some("1") => 10,
        Some(n) => n.parse().unwrap_or(10),
    }
}

/// Leadership seen by the monitor: term -> every node seen leading it.
type Leaders = BTreeMap<Term, BTreeSet<NodeId>>;

struct Inner {
    /// The pool of ids: `1..=n`.
    n: u64,
    /// Ids `1..=initial` form the cluster; the others may be added later.
    initial: u64,
    dir: tempfile::TempDir,
    net: Net,
    raft_addrs: BTreeMap<NodeId, SocketAddr>,
    /// The listeners of ids not started yet, bound when the cluster was
    /// made, so that no other test takes their ports meanwhile.
    spare_listeners: Mutex<BTreeMap<NodeId, TcpListener>>,
    peers: BTreeMap<NodeId, BTreeMap<NodeId, String>>,
    /// The nodes the harness runs: `Some` while running, `None` once crashed
    /// (to be restarted from its data dir). An id not in the map is not a
    /// member as far as the harness knows: never added, or removed and let
    /// go (its data dir is never used again).
    nodes: Mutex<BTreeMap<NodeId, Option<Arc<KvNode>>>>,
    /// Each id's current data dir: a node added back gets an empty one.
    data_dirs: Mutex<BTreeMap<NodeId, PathBuf>>,
    /// Serializes starting, crashing, restarting and letting go of nodes,
    /// which the scenario and the membership thread both do.
    lifecycle: Mutex<()>,
    /// Nodes whose data dir refused to restart because it recorded their
    /// removal (at this index): they are let go, and must be no members.
    refused_restarts: Mutex<BTreeMap<NodeId, Index>>,
    /// Halts that did not return within [`HALT_WAIT`], still running.
    hung_halts: Mutex<Vec<(NodeId, JoinHandle<()>)>>,
    /// The power switch of each node's current run.
    switches: Mutex<BTreeMap<NodeId, PowerSwitch>>,
    /// Each running node's active expiry, as the client port runs it beside
    /// a node: stopped when the node is.
    expirers: Mutex<BTreeMap<NodeId, Expirer>>,
    paused: Mutex<BTreeSet<NodeId>>,
    history: History,
    /// The operations on keys with a time to live ([`ttl`]), which the
    /// linearizability checker never sees.
    ttl: ttl::TtlHistory,
    leaders: Mutex<Leaders>,
    /// Every committed entry ever observed on any node: index -> (term, entry).
    committed: Mutex<BTreeMap<Index, Entry>>,
    /// The highest term each data dir (node id and incarnation) has been
    /// seen to make durable.
    max_term: Mutex<BTreeMap<(NodeId, u64), Term>>,
    violations: Mutex<Vec<String>>,
    stop_clients: AtomicBool,
    stop_monitor: AtomicBool,
    stop_membership: AtomicBool,
    next_value: AtomicU64,
    /// Where clients send requests first (learnt from NotLeader).
    leader_hint: AtomicU64,
    /// What the pipelining clients saw.
    pipeline: PipelineCounters,
    /// A scenario's changes to the default chaos configuration.
    tweak: fn(&mut Config),
}

pub struct Chaos {
    pub seed: u64,
    pub rng: StdRng,
    inner: Arc<Inner>,
    clients: Vec<JoinHandle<()>>,
    monitor: Option<JoinHandle<()>>,
    membership: Option<JoinHandle<Report>>,
}

/// The timings of chaos clusters: fast elections keep scenarios short.
fn config_for(inner: &Inner, id: NodeId) -> Config {
    let mut config = Config::new(id, inner.data_dirs.lock()[&id].clone());
    config.cluster_id = "chaos".into();
    config.raft_addr = inner.raft_addrs[&id].to_string();
    config.peers = inner.peers[&id].clone();
    // Only a new data dir without a bootstrap configuration heeds it: a
    // node added to a pool's cluster waits to be added.
    config.join = inner.n > inner.initial;
    config.tick = Duration::from_millis(5);
    config.election_timeout_min = Duration::from_millis(60);
    config.election_timeout_max = Duration::from_millis(120);
    config.heartbeat_interval = Duration::from_millis(15);
    config.proposal_timeout = Duration::from_millis(800);
    config.connect_timeout = Duration::from_millis(200);
    config.io_timeout = Duration::from_millis(500);
    // Snapshots, compaction and InstallSnapshot happen during every
    // scenario's partitions, crashes and power cuts (§7).
    config.snapshot_entries = 200;
    config.snapshot_keep = 50;
    config.snapshot_chunk_bytes = 4096;
    (inner.tweak)(&mut config);
    config
}

/// What must agree across members: a membership without what depends on
/// who is looking (progress, reachability, client addresses learnt from
/// handshakes).
type SharedView = (Index, Vec<(NodeId, String, String, bool, Option<u64>)>);

fn shared_view(m: &Membership) -> SharedView {
    let members = m
        .members
        .iter()
        .map(|s| {
            let suffrage = s.suffrage.to_string();
            (
                s.id,
                s.raft_addr.clone(),
                suffrage,
                s.auto_promote,
                s.incarnation,
            )
        })
        .collect();
    (m.config_index, members)
}

impl Chaos {
    pub fn new(n: u64, seed: u64) -> Chaos {
        Chaos::with_config(n, seed, |_| {})
    }

    /// Like [`Chaos::new`], with `tweak` applied to every node's configuration.
    pub fn with_config(n: u64, seed: u64, tweak: fn(&mut Config)) -> Chaos {
        Chaos::with_pool(n, n, seed, tweak)
    }

    /// A cluster of voters `1..=initial` that may grow to ids `1..=n` (see
    /// the module docs), with `tweak` applied to every node's configuration.
    pub fn with_pool(n: u64, initial: u64, seed: u64, tweak: fn(&mut Config)) -> Chaos {
        assert!((1..=n).contains(&initial), "{initial} of {n} ids");
        init_logging();
        if n == initial {
            eprintln!("chaos: {n} nodes, seed {seed} (replay with RAFTNODE_SEED={seed})");
        } else {
            eprintln!(
                "chaos: {initial} voters of a pool of {n} ids, seed {seed} \
                 (replay with RAFTNODE_SEED={seed})"
            );
        }
        let listeners: BTreeMap<NodeId, TcpListener> = (1..=n)
            .map(|id| (id, TcpListener::bind("127.0.0.1:0").unwrap()))
            .collect();
        let raft_addrs: BTreeMap<NodeId, SocketAddr> = listeners
            .iter()
            .map(|(&id, l)| (id, l.local_addr().unwrap()))
            .collect();
        let net = Net::new(seed);
        let mut peers: BTreeMap<NodeId, BTreeMap<NodeId, String>> = BTreeMap::new();
        for from in 1..=n {
            for to in (1..=n).filter(|&to| to != from) {
                let proxy = net.add_link(from, to, raft_addrs[&to]);
                peers.entry(from).or_default().insert(to, proxy.to_string());
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let data_dirs = (1..=n)
            .map(|id| (id, dir.path().join(format!("node-{id}"))))
            .collect();
        let inner = Arc::new(Inner {
            n,
            initial,
            dir,
            net,
            raft_addrs,
            spare_listeners: Mutex::new(listeners),
            peers,
            nodes: Mutex::new(BTreeMap::new()),
            data_dirs: Mutex::new(data_dirs),
            lifecycle: Mutex::new(()),
            refused_restarts: Mutex::new(BTreeMap::new()),
            hung_halts: Mutex::new(Vec::new()),
            switches: Mutex::new(BTreeMap::new()),
            expirers: Mutex::new(BTreeMap::new()),
            paused: Mutex::new(BTreeSet::new()),
            history: History::new(),
            ttl: ttl::TtlHistory::default(),
            leaders: Mutex::new(BTreeMap::new()),
            committed: Mutex::new(BTreeMap::new()),
            max_term: Mutex::new(BTreeMap::new()),
            violations: Mutex::new(Vec::new()),
            stop_clients: AtomicBool::new(false),
            stop_monitor: AtomicBool::new(false),
            stop_membership: AtomicBool::new(false),
            next_value: AtomicU64::new(0),
            leader_hint: AtomicU64::new(1),
            pipeline: PipelineCounters::default(),
            tweak,
        });
        if n > initial {
            // What a node writes on its first start from its peer flags;
            // here the flags name the whole pool, so the harness writes it.
            let bootstrap = Configuration {
                members: (1..=initial)
                    .map(|id| (id, Member::voter(inner.raft_addrs[&id].to_string())))
                    .collect(),
                removed: BTreeMap::new(),
            };
            for id in 1..=initial {
                let config = config_for(&inner, id);
                let mut store = DiskStore::open(&config.data_dir, id, &config.cluster_id).unwrap();
                store.save_bootstrap(&bootstrap).unwrap();
            }
        }
        for id in 1..=initial {
            let listener = inner.listener(id);
            let node = start_node(&inner, id, listener).unwrap();
            inner.run(id, node);
        }
        let monitor = {
            let inner = inner.clone();
            thread::spawn(move || monitor(inner))
        };
        Chaos {
            seed,
            rng: StdRng::seed_from_u64(seed),
            inner,
            clients: Vec::new(),
            monitor: Some(monitor),
            membership: None,
        }
    }

    pub fn net(&self) -> &Net {
        &self.inner.net
    }

    /// Every id of the pool (for a cluster without one, its nodes).
    pub fn ids(&self) -> Vec<NodeId> {
        (1..=self.inner.n).collect()
    }

    pub fn node(&self, id: NodeId) -> Option<Arc<KvNode>> {
        self.inner.node(id)
    }

    /// The nodes running now.
    pub fn running(&self) -> Vec<NodeId> {
        self.inner.running()
    }

    /// The crashed nodes, waiting to be restarted.
    pub fn down(&self) -> Vec<NodeId> {
        self.inner.down()
    }

    /// A majority of the initial cluster.
    pub fn majority(&self) -> usize {
        self.inner.initial as usize / 2 + 1
    }

    /// The voters of the latest configuration a running node knows of (the
    /// leader's if there is one).
    pub fn voters(&self) -> Vec<NodeId> {
        self.inner.voters()
    }

    /// Whether fewer voters run than a majority of them: a scenario that
    /// crashes nodes should restart some.
    pub fn voters_short(&self) -> bool {
        let voters = self.voters();
        let running = self.running();
        let up = voters.iter().filter(|id| running.contains(id)).count();
        up < voters.len() / 2 + 1
    }

    /// Stops a node as a power failure would (unsynced writes are lost).
    pub fn crash(&self, id: NodeId) {
        let _lifecycle = self.inner.lifecycle.lock();
        self.inner.crash_locked(id);
    }

    /// A power failure everywhere at the same instant: every node crashes at
    /// once, so none gets to finish an fsync the others are waiting for.
    pub fn crash_all(&self) {
        let _lifecycle = self.inner.lifecycle.lock();
        thread::scope(|s| {
            for id in self.running() {
                s.spawn(move || self.inner.crash_locked(id));
            }
        });
    }

    /// Restarts a crashed node from its data dir, on its old port. Nothing
    /// happens if it was let go meanwhile, having been removed; a node whose
    /// data dir recorded its removal refuses to start, and is let go.
    pub fn restart(&self, id: NodeId) {
        self.inner.restart(id);
    }

    /// Freezes a node for `how_long` (as SIGSTOP would), then resumes it.
    pub fn pause_for(&self, id: NodeId, how_long: Duration) {
        let Some(node) = self.node(id) else { return };
        self.inner.paused.lock().insert(id);
        {
            let _frozen = node.pause();
            thread::sleep(how_long);
        }
        self.inner.paused.lock().remove(&id);
    }

    /// The leader of the highest term among the running nodes, once a
    /// majority of the voters of its configuration follow it.
    pub fn leader(&self) -> Option<NodeId> {
        self.inner.leader()
    }

    pub fn wait_for_leader(&self) -> NodeId {
        wait_for(RECOVER, "a leader backed by a majority", || self.leader())
    }

    /// A leader within `timeout`, or `None`.
    pub fn leader_within(&self, timeout: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader() {
                return Some(leader);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Starts `count` threads running `run(inner, id, keys, seed)`: ids
    /// from `first_id` up, seeds from the scenario's seed times `seed_mul`,
    /// so each kind of client has its own.
    fn spawn_clients(
        &mut self,
        count: usize,
        keys: usize,
        seed_mul: u64,
        first_id: usize,
        run: fn(Arc<Inner>, usize, usize, u64),
    ) {
        for client in 0..count {
            let inner = self.inner.clone();
            let seed = self.seed.wrapping_mul(seed_mul).wrapping_add(client as u64);
            self.clients.push(thread::spawn(move || {
                run(inner, first_id + client, keys, seed)
            }));
        }
    }

    /// Starts the thread that changes the membership at random moments
    /// (see `membership.rs`), through whichever node leads.
    pub fn start_membership_changes(&mut self, plan: Plan) {
        assert!(self.membership.is_none(), "membership changes already run");
        let inner = self.inner.clone();
        let seed = self.seed.wrapping_mul(131).wrapping_add(7);
        self.membership = Some(thread::spawn(move || membership::run(inner, plan, seed)));
    }

    /// Stops the membership thread once its current step is done; returns
    /// what it did (`None` if none ran).
    pub fn stop_membership_changes(&mut self) -> Option<Report> {
        let handle = self.membership.take()?;
        self.inner.stop_membership.store(true, Ordering::Release);
        let report = handle.join().expect("the membership thread panicked");
        self.inner.stop_membership.store(false, Ordering::Release);
        Some(report)
    }

    /// Starts `count` client threads working on `keys` keys.
    pub fn start_clients(&mut self, count: usize, keys: usize) {
        self.spawn_clients(count, keys, 31, 0, run_client);
    }

    /// Starts `count` clients that INCR and APPEND under client sessions,
    /// retrying every write with the same sequence number until it succeeds:
    /// any double application shows as a counter or a string that no
    /// linearization explains.
    pub fn start_session_clients(&mut self, count: usize, keys: usize) {
        self.spawn_clients(count, keys, 97, 500, run_session_client);
    }

    /// Starts `count` clients that pipeline: each burst starts 1 to 8 unique
    /// writes, or 1 to 8 reads, on random keys of `keys` through one node
    /// before waiting for the first, then waits for each in turn (see
    /// [`Chaos::pipeline_stats`] for what they saw).
    pub fn start_pipelined_clients(&mut self, count: usize, keys: usize) {
        self.spawn_clients(count, keys, 61, 700, run_pipelined_client);
    }

    /// Starts `count` clients of `keys` keys with short times to live, in a
    /// key space of their own (see [`ttl`]): [`Chaos::finish`] checks that
    /// no read saw one past its deadline, and that active expiry deleted
    /// every one on every replica.
    pub fn start_ttl_clients(&mut self, count: usize, keys: usize) {
        self.spawn_clients(count, keys, 89, 800, ttl::run_ttl_client);
    }

    /// What the pipelining clients saw so far.
    pub fn pipeline_stats(&self) -> PipelineStats {
        self.inner.pipeline.snapshot()
    }

    /// Reads `key` through node `id` only (never redirected) until `until`,
    /// recording every answer: a deposed leader must never serve one stale.
    pub fn read_via_until(&self, id: NodeId, key: &str, until: Instant) -> usize {
        let mut served = 0;
        while Instant::now() < until {
            let Some(node) = self.node(id) else { break };
            match recorded_read(&self.inner.history, 2000 + id as usize, &node, key) {
                Ok(_) => served += 1,
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
        served
    }

    /// The current term of node `id`.
    pub fn term_of(&self, id: NodeId) -> Term {
        self.node(id).expect("node is running").status().term
    }

    pub fn stop_clients(&mut self) {
        self.inner.stop_clients.store(true, Ordering::Release);
        for c in self.clients.drain(..) {
            c.join().expect("client thread panicked");
        }
        self.inner.stop_clients.store(false, Ordering::Release);
    }

    /// Writes through one specific node (not following redirects), recording
    /// every attempt. Returns how many were acknowledged.
    pub fn write_via(&self, id: NodeId, key: &str, count: usize, threads: usize) -> usize {
        let acked = AtomicU64::new(0);
        thread::scope(|s| {
            for t in 0..threads {
                let acked = &acked;
                s.spawn(move || {
                    for _ in (t..count).step_by(threads) {
                        let Some(node) = self.node(id) else { return };
                        let value = self.inner.fresh_value(1000 + t);
                        let op =
                            self.inner
                                .history
                                .invoke(1000 + t, key, Input::Write(value.clone()));
                        match node.set(key, value) {
                            Ok(()) => {
                                self.inner.history.complete(op, Output::Ok);
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => record_failure(&self.inner.history, op, &e),
                        }
                    }
                });
            }
        });
        acked.load(Ordering::Relaxed) as usize
    }

    /// Stops the membership changes and the clients, heals the network,
    /// restarts every crashed node, waits for the cluster to converge
    /// (membership and applied state), and checks every invariant and the
    /// history. Returns what the membership thread did, if one ran.
    pub fn finish(mut self) -> Option<Report> {
        let report = self.stop_membership_changes();
        self.stop_clients();
        let stopped = Instant::now();
        self.inner.net.heal();
        for id in self.down() {
            self.restart(id);
        }
        self.wait_for_leader();
        // Final reads on the leader, recorded after everything else: every
        // acknowledged write must be visible in them.
        let keys: BTreeSet<String> = self
            .inner
            .history
            .ops()
            .iter()
            .map(|op| op.key.clone())
            .collect();
        for key in &keys {
            wait_for(RECOVER, "a final read on the leader", || {
                let leader = self.wait_for_leader();
                let node = self.node(leader)?;
                recorded_read(&self.inner.history, 9999, &node, key)
                    .ok()
                    .map(drop)
            });
        }
        // Everyone converges: one configuration, the same applied state.
        let (view, ..) = self.converge();
        self.check_invariants();
        if let Some(report) = &report {
            eprintln!("chaos: seed {}: membership: {report}", self.seed);
            if let Err(e) = report.check_end(&view) {
                panic!("seed {}: {e}", self.seed);
            }
        }
        self.finish_ttl(stopped);
        let ops = self.inner.history.ops();
        let completed = ops.iter().filter(|op| op.is_completed()).count();
        let hung: Vec<NodeId> = self.inner.hung_halts.lock().iter().map(|h| h.0).collect();
        eprintln!(
            "chaos: seed {}: {} ops ({} completed, {} indefinite); network {}{}",
            self.seed,
            ops.len(),
            completed,
            ops.len() - completed,
            self.inner.net.stats(),
            match hung.is_empty() {
                true => String::new(),
                false => format!("; halts that hung (a known bug): nodes {hung:?}"),
            }
        );
        let pipeline = self.pipeline_stats();
        if pipeline.bursts > 0 {
            eprintln!("chaos: seed {}: pipelining: {pipeline}", self.seed);
        }
        match linearizability::check(&ops, Duration::from_secs(20)) {
            CheckResult::Ok => {}
            other => panic!("seed {}: history not linearizable:\n{other}", self.seed),
        }
        report
    }

    /// The end of a scenario with TTL clients (nothing without): every
    /// deadline they set is at most [`ttl::TTL_MS`] after its operation, so
    /// with the clients stopped (at `stopped`) and the cluster healed,
    /// active expiry alone must delete every key that has one, on every
    /// replica, within about a tick of the last deadline; then the replicas
    /// agree again. And no read saw a key past its deadline ([`ttl::check`]).
    fn finish_ttl(&self, stopped: Instant) {
        let ops = self.inner.ttl.ops();
        if ops.is_empty() {
            return;
        }
        wait_for(
            Duration::from_secs(5),
            "active expiry to delete every key with a time to live on every replica",
            || {
                let held = |id| {
                    self.node(id)
                        .is_some_and(|n| n.with_state(|kv| kv.expiries().is_empty()))
                };
                self.running().into_iter().all(held).then_some(())
            },
        );
        let took = stopped.elapsed();
        let (_, applied, _) = self.converge();
        let report = ttl::check(&ops, self.inner.ttl.base_ms);
        eprintln!(
            "chaos: seed {}: ttl: {report}; no key had a deadline on any replica {took:?} after \
             the clients stopped (then all agreed at entry {applied})",
            self.seed
        );
        assert!(
            report.violations.is_empty(),
            "seed {}: reads saw keys past their deadlines ({report}):\n{}",
            self.seed,
            report.violations.join("\n")
        );
        assert!(
            report.writes > 0 && report.gets_value > 0,
            "seed {}: the TTL clients did too little to check anything: {report}",
            self.seed
        );
    }

    /// Waits until the cluster is quiet and agrees (see [`Chaos::finish`]):
    /// one configuration, every member applied every entry and holds the
    /// same state. Returns the entry they applied up to and the digest of
    /// their state.
    pub fn wait_converged(&self) -> (Index, String) {
        let (_, applied, digest) = self.converge();
        (applied, digest)
    }

    /// Adds node `id` through the leader (retrying while it is busy or
    /// unknown), then starts it with an empty data dir and `join`; returns
    /// the change's entry. Not while a membership thread runs.
    pub fn add_node(&self, id: NodeId, auto_promote: bool) -> Index {
        let index = self
            .inner
            .change(raftnode::raft::membership::ConfChange::AddLearner {
                id,
                raft_addr: self.inner.raft_addrs[&id].to_string(),
                client_addr: None,
                auto_promote,
            });
        self.inner.start_joining(id);
        index
    }

    /// Removes node `id` through the leader (retrying while it is busy or
    /// unknown), then halts it for good; returns the change's entry. Not
    /// while a membership thread runs.
    pub fn remove_node(&self, id: NodeId) -> Index {
        let index = self
            .inner
            .change(raftnode::raft::membership::ConfChange::Remove { id });
        self.inner.let_go(id);
        index
    }

    /// The configuration as a leader that settled it holds it, if one has
    /// now (see `membership.rs`).
    pub fn settled(&self) -> Option<membership::Settled> {
        self.inner.settled()
    }

    /// Waits until the cluster is quiet and agrees (see [`Chaos::converged`]),
    /// starting members that do not run and letting go of nodes that are no
    /// members on the way; returns the final configuration, the entry every
    /// member applied up to, and the digest of their state.
    fn converge(&self) -> (membership::Settled, Index, String) {
        let deadline = Instant::now() + RECOVER;
        loop {
            for id in self.down() {
                self.restart(id);
            }
            let problem = match self.converged() {
                Ok((view, summary, applied, digest)) => {
                    eprintln!("chaos: seed {}: converged: {summary}", self.seed);
                    return (view, applied, digest);
                }
                Err(problem) => problem,
            };
            assert!(
                Instant::now() < deadline,
                "seed {}: the cluster did not converge within {RECOVER:?}: {problem}\n\
                 violations seen: {:?}",
                self.seed,
                self.inner.violations.lock()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the cluster has converged: a leader that committed an entry of
    /// its term and has nothing uncommitted; the nodes running are exactly
    /// the members of its configuration; every member holds that
    /// configuration (committed), has applied everything, and holds the same
    /// state. `Err` says what is still missing; diverging states at the same
    /// applied index fail the test.
    fn converged(&self) -> Result<(membership::Settled, String, Index, String), String> {
        let view = self.inner.settled().ok_or("no settled leader")?;
        self.inner.check_removal_reports(&view);
        self.inner.reconcile(&view);
        let members = view.members();
        let running: BTreeSet<NodeId> = self.running().into_iter().collect();
        if running != members {
            return Err(format!(
                "running {running:?}, members {members:?} (as of {})",
                view.config_index
            ));
        }
        let leader = self.node(view.leader).ok_or("the leader was let go")?;
        let lstatus = leader.status();
        if lstatus.commit_index != lstatus.last_log_index {
            return Err(format!(
                "the leader has committed {} of {}",
                lstatus.commit_index, lstatus.last_log_index
            ));
        }
        let reference = shared_view(&leader.membership());
        let mut digests = BTreeMap::new();
        for &id in &members {
            let node = self.node(id).ok_or(format!("member {id} is not running"))?;
            let status = node.status();
            let view_of = shared_view(&node.membership());
            if view_of != reference {
                return Err(format!(
                    "node {id} holds configuration {view_of:?}, the leader {reference:?}"
                ));
            }
            if (&status.members, &status.learners) != (&lstatus.members, &lstatus.learners)
                || status.config_change_in_progress
            {
                return Err(format!(
                    "node {id} has voters {:?} and learners {:?} (change in progress: {}), \
                     the leader {:?} and {:?}",
                    status.members,
                    status.learners,
                    status.config_change_in_progress,
                    lstatus.members,
                    lstatus.learners
                ));
            }
            if status.last_applied != lstatus.commit_index {
                return Err(format!(
                    "node {id} applied {}, the leader committed {}",
                    status.last_applied, lstatus.commit_index
                ));
            }
            let digest = node.with_state(|kv| kv.digest());
            if node.status().last_applied != status.last_applied {
                return Err(format!("node {id} is still applying"));
            }
            digests.insert(id, digest);
        }
        let distinct: BTreeSet<&String> = digests.values().collect();
        let digest = distinct.first().map_or_else(String::new, |d| (*d).clone());
        assert!(
            distinct.len() == 1,
            "seed {}: members applied the same {} entries but hold different states: \
             {digests:?}",
            self.seed,
            lstatus.commit_index
        );
        let summary = format!(
            "leader {} in term {}, {} (entry {}), every member applied {} entries",
            view.leader,
            view.term,
            view.describe(),
            view.config_index,
            lstatus.commit_index
        );
        Ok((view, summary, lstatus.commit_index, digest))
    }

    fn check_invariants(&self) {
        for id in self.running() {
            record_committed(&self.inner, &self.node(id).unwrap());
        }
        let violations = self.inner.violations.lock().clone();
        assert!(
            violations.is_empty(),
            "seed {}: {}",
            self.seed,
            violations.join("\n")
        );
        for (term, leaders) in self.inner.leaders.lock().iter() {
            assert!(
                leaders.len() <= 1,
                "seed {}: term {term} had leaders {leaders:?}",
                self.seed
            );
        }
    }

    /// Every term in which the monitor saw a leader, and who.
    pub fn leaders_seen(&self) -> Leaders {
        self.inner.leaders.lock().clone()
    }

    pub fn history_len(&self) -> usize {
        self.inner.history.ops().len()
    }

    /// How many writes and CASes invoked after the first `skip` operations of
    /// the history were acknowledged.
    pub fn acknowledged_writes_since(&self, skip: usize) -> usize {
        self.inner
            .history
            .ops()
            .iter()
            .skip(skip)
            .filter(|op| op.is_completed() && !matches!(op.input, Input::Read))
            .count()
    }
}

impl Inner {
    fn fresh_value(&self, client: usize) -> String {
        format!(
            "c{client}v{}",
            self.next_value.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn violation(&self, what: String) {
        self.violations.lock().push(what);
    }

    fn node(&self, id: NodeId) -> Option<Arc<KvNode>> {
        self.nodes.lock().get(&id).cloned().flatten()
    }

    /// A client's next node: the leader as last seen, or one at random
    /// one time in ten. `None` if that node is down, after pointing the
    /// hint at a random node and pausing a moment.
    fn pick_node(&self, rng: &mut StdRng) -> Option<(NodeId, Arc<KvNode>)> {
        let mut target = self.leader_hint.load(Ordering::Relaxed);
        if rng.gen_bool(0.1) {
            target = rng.gen_range(1..=self.n);
        }
        let node = self.node(target);
        if node.is_none() {
            self.leader_hint
                .store(rng.gen_range(1..=self.n), Ordering::Relaxed);
            thread::sleep(Duration::from_millis(5));
        }
        node.map(|node| (target, node))
    }

    /// After a client's attempt through `target`: follow a redirect to
    /// another leader, or, on any other error, point the hint at a random
    /// node and back off a little.
    fn after_attempt(&self, rng: &mut StdRng, target: NodeId, result: Result<(), Error>) {
        match result {
            Ok(()) => {}
            Err(Error::NotLeader { leader: Some(l) }) if l != target => {
                self.leader_hint.store(l, Ordering::Relaxed)
            }
            Err(_) => {
                self.leader_hint
                    .store(rng.gen_range(1..=self.n), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(rng.gen_range(1..10)));
            }
        }
    }

    fn running(&self) -> Vec<NodeId> {
        let nodes = self.nodes.lock();
        nodes
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    fn down(&self) -> Vec<NodeId> {
        let nodes = self.nodes.lock();
        nodes
            .iter()
            .filter(|(_, n)| n.is_none())
            .map(|(&id, _)| id)
            .collect()
    }

    /// The leader of the highest term among the running nodes, if a
    /// majority of the voters of its configuration follow it in that term.
    fn leader(&self) -> Option<NodeId> {
        let statuses: Vec<_> = self
            .running()
            .into_iter()
            .filter_map(|id| self.node(id)?.try_status())
            .collect();
        let leader = statuses
            .iter()
            .filter(|s| s.role == RoleKind::Leader)
            .max_by_key(|s| s.term)?;
        let agree = statuses
            .iter()
            .filter(|s| s.term == leader.term && s.leader_id == Some(leader.id))
            .filter(|s| leader.members.contains(&s.id))
            .count();
        (agree > leader.members.len() / 2).then_some(leader.id)
    }

    /// The voters of the latest configuration a running node knows of (the
    /// leader's if there is one).
    fn voters(&self) -> Vec<NodeId> {
        if let Some(status) = self.leader().and_then(|l| self.node(l)?.try_status()) {
            return status.members;
        }
        self.running()
            .into_iter()
            .filter_map(|id| self.node(id)?.try_status())
            .max_by_key(|s| s.config_index)
            .map_or_else(Vec::new, |s| s.members)
    }

    /// Node `id`'s listener: the one bound when the cluster was made, or
    /// its port bound again (once its last run has let go of it).
    fn listener(&self, id: NodeId) -> TcpListener {
        if let Some(listener) = self.spare_listeners.lock().remove(&id) {
            return listener;
        }
        let addr = self.raft_addrs[&id];
        wait_for(RECOVER, "a restarted node's port", || {
            TcpListener::bind(addr).ok()
        })
    }

    /// [`Chaos::crash`], with the lifecycle lock held.
    fn crash_locked(&self, id: NodeId) {
        let Some(node) = self.nodes.lock().get_mut(&id).and_then(Option::take) else {
            return;
        };
        record_committed(self, &node);
        // The instant of the power failure; the halt then stops the threads
        // and lets the store lose what was never synced.
        if let Some(switch) = self.switches.lock().get(&id) {
            switch.cut();
        }
        self.halt(&node);
        // A term adopted in memory but never written may be lost (nothing
        // that depends on it left the node); a durable one never may.
        self.max_term
            .lock()
            .entry((id, node.incarnation()))
            .and_modify(|t| *t = (*t).max(node.durable_term()))
            .or_insert(node.durable_term());
        if let Some(switch) = self.switches.lock().get(&id) {
            switch.check();
        }
    }

    /// [`Chaos::restart`].
    fn restart(&self, id: NodeId) {
        let _lifecycle = self.lifecycle.lock();
        match self.nodes.lock().get(&id) {
            Some(None) => {}
            Some(Some(_)) => panic!("node {id} is running"),
            // Let go meanwhile: it was removed.
            None => return,
        }
        let node = match start_node(self, id, self.listener(id)) {
            Ok(node) => node,
            Err(StartError::Removed { index, .. }) => {
                // It learnt of its removal before it went down (the
                // membership thread may not have let it go yet): as a
                // process, it would refuse to start just so.
                log::info!("chaos: node {id} refuses to restart: removed at {index}");
                self.nodes.lock().remove(&id);
                self.refused_restarts.lock().insert(id, index);
                return;
            }
            Err(e) => panic!("node {id} failed to restart: {e}"),
        };
        let term = node.status().term;
        let key = (id, node.incarnation());
        let before = self.max_term.lock().get(&key).copied().unwrap_or(0);
        assert!(
            term >= before,
            "node {id} restarted in term {term}, had reached {before}"
        );
        self.run(id, node);
    }

    /// Starts node `id`, which the harness does not run, with an empty data
    /// dir: it waits to be added (`join`), or is a member already.
    fn start_joining(&self, id: NodeId) {
        let _lifecycle = self.lifecycle.lock();
        if self.nodes.lock().contains_key(&id) {
            return;
        }
        self.refused_restarts.lock().remove(&id);
        {
            let mut dirs = self.data_dirs.lock();
            let mut dir = dirs[&id].clone();
            let mut generation = 1;
            while dir.exists() {
                dir = self.dir.path().join(format!("node-{id}.{generation}"));
                generation += 1;
            }
            dirs.insert(id, dir);
        }
        let node = start_node(self, id, self.listener(id))
            .unwrap_or_else(|e| panic!("node {id} failed to start with an empty data dir: {e}"));
        self.run(id, node);
    }

    /// Stops running node `id`, which is no member (removed, or its addition
    /// never happened), for good: its data dir is never used again.
    fn let_go(&self, id: NodeId) {
        let _lifecycle = self.lifecycle.lock();
        let Some(entry) = self.nodes.lock().remove(&id) else {
            return;
        };
        if let Some(node) = entry {
            record_committed(self, &node);
            self.halt(&node);
        }
    }

    /// Runs `node` as node `id`, with its active expiry beside it.
    fn run(&self, id: NodeId, node: KvNode) {
        let node = Arc::new(node);
        let expirer = Expirer::start(node.clone()).expect("start the active expiry thread");
        // A previous run's was stopped with it (see `halt`).
        self.expirers.lock().insert(id, expirer);
        self.nodes.lock().insert(id, Some(node));
    }

    /// Halts `node`, waiting at most [`HALT_WAIT`] (see there), then stops
    /// its active expiry: after the halt, so that a deletion it is waiting
    /// for fails at once instead of running out its timeout.
    fn halt(&self, node: &Arc<KvNode>) {
        self.halt_node(node);
        let expirer = self.expirers.lock().remove(&node.id());
        drop(expirer);
    }

    fn halt_node(&self, node: &Arc<KvNode>) {
        let (done, halted) = crossbeam_channel::bounded(1);
        let halting = {
            let node = node.clone();
            thread::spawn(move || {
                node.halt();
                let _ = done.send(());
            })
        };
        if halted.recv_timeout(HALT_WAIT).is_ok() {
            let _ = halting.join();
            return;
        }
        eprintln!(
            "chaos: halting node {} did not return within {HALT_WAIT:?}; going on without it \
             (bug: see halting_a_node_while_peers_connect_returns)",
            node.id()
        );
        self.hung_halts.lock().push((node.id(), halting));
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.inner.stop_membership.store(true, Ordering::Release);
        if let Some(m) = self.membership.take() {
            let _ = m.join();
        }
        self.inner.stop_clients.store(true, Ordering::Release);
        for c in self.clients.drain(..) {
            let _ = c.join();
        }
        self.inner.stop_monitor.store(true, Ordering::Release);
        if let Some(m) = self.monitor.take() {
            let _ = m.join();
        }
        let nodes: Vec<_> = self
            .inner
            .nodes
            .lock()
            .values_mut()
            .filter_map(Option::take)
            .collect();
        for node in nodes {
            self.inner.halt(&node);
        }
        let expirers = std::mem::take(&mut *self.inner.expirers.lock());
        drop(expirers);
        self.inner.net.shutdown();
        // With every proxy closed, a hung halt's connection ends, and so
        // does the halt.
        for (_, halting) in self.inner.hung_halts.lock().drain(..) {
            let _ = halting.join();
        }
    }
}

/// Starts node `id` on its data dir behind a fresh power switch.
fn start_node(inner: &Inner, id: NodeId, listener: TcpListener) -> Result<KvNode, StartError> {
    let config = config_for(inner, id);
    let store = DiskStore::open(&config.data_dir, id, &config.cluster_id)?;
    let switch = PowerSwitch::default();
    inner.switches.lock().insert(id, switch.clone());
    Node::start_with(
        config,
        listener,
        PowerCutStore::new(store, switch),
        Kv::new(),
    )
}

/// Records `node`'s committed prefix, checking it against every committed
/// entry seen before: committed entries never change or disappear.
fn record_committed(inner: &Inner, node: &KvNode) {
    let status = node.status();
    let commit = status.commit_index;
    // What compaction left of the log (§7): its committed part.
    let log = node.log_entries();
    let mut committed = inner.committed.lock();
    for entry in log.iter().take_while(|e| e.index <= commit) {
        match committed.get(&entry.index) {
            Some(seen) if seen != entry => inner.violation(format!(
                "node {} has {:?} committed at {}, but {:?} was committed there before",
                node.id(),
                entry,
                entry.index,
                seen
            )),
            Some(_) => {}
            None => {
                committed.insert(entry.index, entry.clone());
            }
        }
    }
    if status.last_log_index < commit {
        inner.violation(format!(
            "node {} reports commit index {commit} with a log ending at {}",
            node.id(),
            status.last_log_index
        ));
    }
}

/// Samples every running node: who leads which term, how terms move, and
/// (every so often) the committed prefixes.
fn monitor(inner: Arc<Inner>) {
    let mut last_sample = Instant::now();
    while !inner.stop_monitor.load(Ordering::Acquire) {
        let nodes: Vec<(NodeId, Arc<KvNode>)> = inner
            .nodes
            .lock()
            .iter()
            .filter_map(|(&id, n)| Some((id, n.clone()?)))
            .collect();
        let sample_logs = last_sample.elapsed() > Duration::from_millis(250);
        for (id, node) in nodes {
            let Some(status) = node.try_status() else {
                continue;
            };
            if status.role == RoleKind::Leader {
                let mut leaders = inner.leaders.lock();
                let set = leaders.entry(status.term).or_default();
                set.insert(id);
                if set.len() > 1 {
                    let msg = format!("term {} has two leaders: {set:?}", status.term);
                    drop(leaders);
                    inner.violation(msg);
                }
            }
            {
                let mut max_term = inner.max_term.lock();
                let t = max_term.entry((id, node.incarnation())).or_insert(0);
                *t = (*t).max(node.durable_term());
            }
            if sample_logs && !inner.paused.lock().contains(&id) {
                record_committed(&inner, &node);
            }
        }
        if sample_logs {
            last_sample = Instant::now();
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// A linearizable read through `node`, recorded in the history: a failed
/// read took no effect, so it leaves the history.
fn recorded_read(
    history: &History,
    client: usize,
    node: &KvNode,
    key: &str,
) -> Result<Option<String>, Error> {
    let op = history.invoke(client, key, Input::Read);
    match node.read(key.as_bytes()) {
        Ok(v) => {
            let v = v.map(|v| String::from_utf8(v).unwrap());
            history.complete(op, Output::Read(v.clone()));
            Ok(v)
        }
        Err(e) => {
            history.fail(op);
            Err(e)
        }
    }
}

/// Maps a node error to the history: definite failures leave the history;
/// anything that may have taken effect stays, with an unknown outcome.
fn record_failure(history: &History, op: linearizability::OpId, e: &Error) {
    match definite_failure(e) {
        true => history.fail(op),
        false => history.indefinite(op),
    }
}

/// Whether a write that failed with `e` definitely did not take effect;
/// otherwise it may have.
fn definite_failure(e: &Error) -> bool {
    match e {
        Error::NotLeader { .. }
        | Error::CommandTooLarge { .. }
        | Error::Transferring { .. }
        | Error::Change(_)
        | Error::Transfer(_) => true,
        Error::Timeout
        | Error::ShutDown
        | Error::Storage(_)
        | Error::Codec(_)
        | Error::TransferTimedOut { .. } => false,
    }
}

/// One client: a sequential process doing reads, unique writes and CASes on a
/// few keys, against whichever node it believes leads.
fn run_client(inner: Arc<Inner>, client: usize, keys: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut last_read: BTreeMap<String, Option<String>> = BTreeMap::new();
    while !inner.stop_clients.load(Ordering::Acquire) {
        let key = format!("k{}", rng.gen_range(0..keys));
        let Some((target, node)) = inner.pick_node(&mut rng) else {
            continue;
        };
        let result = match rng.gen_range(0..10) {
            0..=3 => recorded_read(&inner.history, client, &node, &key).map(|v| {
                last_read.insert(key.clone(), v);
            }),
            4..=7 => {
                let value = inner.fresh_value(client);
                let op = inner
                    .history
                    .invoke(client, key.as_str(), Input::Write(value.clone()));
                match node.set(key.as_str(), value) {
                    Ok(()) => {
                        inner.history.complete(op, Output::Ok);
                        Ok(())
                    }
                    Err(e) => {
                        record_failure(&inner.history, op, &e);
                        Err(e)
                    }
                }
            }
            _ => {
                let expected = last_read.get(&key).cloned().flatten().unwrap_or_default();
                let new = inner.fresh_value(client);
                let input = Input::Cas {
                    expected: expected.clone(),
                    new: new.clone(),
                };
                let op = inner.history.invoke(client, key.as_str(), input);
                match node.cas(key.as_str(), expected, new) {
                    Ok(swapped) => {
                        inner.history.complete(op, Output::Cas(swapped));
                        Ok(())
                    }
                    Err(e) => {
                        record_failure(&inner.history, op, &e);
                        Err(e)
                    }
                }
            }
        };
        inner.after_attempt(&mut rng, target, result);
    }
}

/// A client with a session: INCR and APPEND, each retried under the same
/// sequence number (against whichever node seems to lead) until it succeeds
/// or a few seconds pass.
fn run_session_client(inner: Arc<Inner>, client: usize, keys: usize, seed: u64) {
    use raftnode::kv::{Command, Outcome};
    let mut rng = StdRng::seed_from_u64(seed);
    let session: u64 = rng.gen::<u64>() | 1;
    let mut seq = 0;
    while !inner.stop_clients.load(Ordering::Acquire) {
        seq += 1;
        let k = rng.gen_range(0..keys);
        let (key, input, command) = if rng.gen_bool(0.5) {
            let key = format!("n{k}");
            let command = Command::Incr {
                key: key.clone().into_bytes(),
            };
            (key, Input::Incr, command)
        } else {
            let key = format!("a{k}");
            let token = format!("[{client}.{seq}]");
            let command = Command::Append {
                key: key.clone().into_bytes(),
                value: token.clone().into_bytes(),
            };
            (key, Input::Append(token), command)
        };
        let command = Command::Session {
            client: session,
            seq,
            command: Box::new(command),
        };
        let op = inner.history.invoke(client, key.as_str(), input.clone());
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut maybe_applied = false;
        loop {
            let target = inner.leader_hint.load(Ordering::Relaxed);
            let node = inner.nodes.lock().get(&target).cloned().flatten();
            let result = match node {
                Some(node) => node.write(command.clone()),
                None => Err(Error::NotLeader { leader: None }),
            };
            match result {
                Ok(Outcome::Integer(n)) => {
                    let output = match input {
                        Input::Incr => Output::Incr(n),
                        _ => Output::Ok,
                    };
                    inner.history.complete(op, output);
                    break;
                }
                Ok(other) => {
                    inner.violation(format!(
                        "client {client} seq {seq}: unexpected outcome {other:?}"
                    ));
                    inner.history.indefinite(op);
                    break;
                }
                Err(e) => {
                    maybe_applied |= !matches!(e, Error::NotLeader { .. });
                    match e {
                        Error::NotLeader { leader: Some(l) } if l != target => {
                            inner.leader_hint.store(l, Ordering::Relaxed)
                        }
                        _ => {
                            inner
                                .leader_hint
                                .store(rng.gen_range(1..=inner.n), Ordering::Relaxed);
                            thread::sleep(Duration::from_millis(rng.gen_range(1..10)));
                        }
                    }
                    if Instant::now() > deadline || inner.stop_clients.load(Ordering::Acquire) {
                        if maybe_applied {
                            inner.history.indefinite(op);
                        } else {
                            inner.history.fail(op);
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// What the pipelining clients saw ([`Chaos::pipeline_stats`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PipelineStats {
    /// Bursts that started at least one operation: of writes, of reads.
    pub bursts: u64,
    pub write_bursts: u64,
    pub read_bursts: u64,
    /// Operations started.
    pub started: u64,
    /// Bursts in which more than one operation completed, and the most
    /// operations completed in one burst.
    pub multi_completed: u64,
    pub largest_completed: u64,
    /// Starts refused (nothing proposed or started: a definite failure).
    pub start_failed: u64,
    /// Waits that said the entry lost its place, or the read was never
    /// confirmed ([`Error::NotLeader`]): a definite failure.
    pub wait_definite: u64,
    /// Waits with any other error (timeout, shutdown, storage): for a write,
    /// an unknown outcome; a read has no effect either way.
    pub wait_unknown: u64,
}

impl std::fmt::Display for PipelineStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bursts ({} of writes, {} of reads), {} ops started; {} bursts completed more \
             than one op (at most {}); {} starts refused; waits failed: {} definitely \
             (not leader), {} with an unknown outcome",
            self.bursts,
            self.write_bursts,
            self.read_bursts,
            self.started,
            self.multi_completed,
            self.largest_completed,
            self.start_failed,
            self.wait_definite,
            self.wait_unknown
        )
    }
}

/// [`PipelineStats`] as the clients count them.
#[derive(Default)]
struct PipelineCounters {
    write_bursts: AtomicU64,
    read_bursts: AtomicU64,
    started: AtomicU64,
    multi_completed: AtomicU64,
    largest_completed: AtomicU64,
    start_failed: AtomicU64,
    wait_definite: AtomicU64,
    wait_unknown: AtomicU64,
}

impl PipelineCounters {
    fn snapshot(&self) -> PipelineStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (write_bursts, read_bursts) = (get(&self.write_bursts), get(&self.read_bursts));
        PipelineStats {
            bursts: write_bursts + read_bursts,
            write_bursts,
            read_bursts,
            started: get(&self.started),
            multi_completed: get(&self.multi_completed),
            largest_completed: get(&self.largest_completed),
            start_failed: get(&self.start_failed),
            wait_definite: get(&self.wait_definite),
            wait_unknown: get(&self.wait_unknown),
        }
    }

    /// Counts a burst of `started` operations (of writes or of reads), of
    /// which `completed` completed.
    fn burst(&self, writes: bool, started: usize, completed: usize) {
        if started == 0 {
            return;
        }
        let bursts = match writes {
            true => &self.write_bursts,
            false => &self.read_bursts,
        };
        bursts.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(started as u64, Ordering::Relaxed);
        if completed > 1 {
            self.multi_completed.fetch_add(1, Ordering::Relaxed);
        }
        self.largest_completed
            .fetch_max(completed as u64, Ordering::Relaxed);
    }

    fn wait_failed(&self, e: &Error) {
        match e {
            Error::NotLeader { .. } => &self.wait_definite,
            _ => &self.wait_unknown,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

/// A client that pipelines: against whichever node it believes leads (as
/// [`run_client`] picks it), it starts a burst of 1 to 8 operations on random
/// keys — all unique writes or all reads, never both, as the client port
/// never has both in flight — recording each invocation as it starts it,
/// then waits for each in the order started and records its outcome.
fn run_pipelined_client(inner: Arc<Inner>, client: usize, keys: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !inner.stop_clients.load(Ordering::Acquire) {
        let Some((target, node)) = inner.pick_node(&mut rng) else {
            continue;
        };
        let burst: Vec<String> = (0..rng.gen_range(1..=8))
            .map(|_| format!("k{}", rng.gen_range(0..keys)))
            .collect();
        let result = if rng.gen_bool(0.5) {
            pipelined_writes(&inner, client, &node, &burst)
        } else {
            pipelined_reads(&inner, client, &node, &burst)
        };
        inner.after_attempt(&mut rng, target, result);
    }
}

/// One burst of unique writes to `keys` through `node`, recorded in the
/// history; the first error seen, if any.
///
/// A refused start proposed nothing, so it fails definitely whatever the
/// error, and ends the burst (the rest are never invoked). A wait's error
/// is recorded as [`run_client`] records a write's ([`record_failure`]):
/// `NotLeader` means the entry lost its place and will never apply.
fn pipelined_writes(
    inner: &Inner,
    client: usize,
    node: &KvNode,
    keys: &[String],
) -> Result<(), Error> {
    use raftnode::kv::{Command, Outcome};
    let history = &inner.history;
    let mut first_error = None;
    let mut started = Vec::with_capacity(keys.len());
    for key in keys {
        let value = inner.fresh_value(client);
        let op = history.invoke(client, key.as_str(), Input::Write(value.clone()));
        let command = Command::Set {
            key: key.clone().into_bytes(),
            value: value.into_bytes(),
        };
        match node.start_write(command) {
            Ok(pending) => started.push((op, pending)),
            Err(e) => {
                history.fail(op);
                inner.pipeline.start_failed.fetch_add(1, Ordering::Relaxed);
                first_error = Some(e);
                break;
            }
        }
    }
    let count = started.len();
    let mut completed = 0;
    for (op, pending) in started {
        match pending.wait() {
            Ok(Outcome::Done) => {
                history.complete(op, Output::Ok);
                completed += 1;
            }
            Ok(other) => {
                inner.violation(format!(
                    "client {client}: a pipelined SET produced {other:?}"
                ));
                history.indefinite(op);
            }
            Err(e) => {
                record_failure(history, op, &e);
                inner.pipeline.wait_failed(&e);
                first_error.get_or_insert(e);
            }
        }
    }
    inner.pipeline.burst(true, count, completed);
    first_error.map_or(Ok(()), Err)
}

/// One burst of linearizable reads of `keys` through `node`, recorded in
/// the history; the first error seen, if any. A read that fails, at its
/// start or its wait, took no effect and leaves the history, as
/// [`recorded_read`] has it; a refused start ends the burst.
fn pipelined_reads(
    inner: &Inner,
    client: usize,
    node: &KvNode,
    keys: &[String],
) -> Result<(), Error> {
    let history = &inner.history;
    let mut first_error = None;
    let mut started = Vec::with_capacity(keys.len());
    for key in keys {
        let op = history.invoke(client, key.as_str(), Input::Read);
        match node.start_read(key.as_bytes()) {
            Ok(pending) => started.push((op, pending)),
            Err(e) => {
                history.fail(op);
                inner.pipeline.start_failed.fetch_add(1, Ordering::Relaxed);
                first_error = Some(e);
                break;
            }
        }
    }
    let count = started.len();
    let mut completed = 0;
    for (op, pending) in started {
        match pending.wait() {
            Ok(v) => {
                let v = v.map(|v| String::from_utf8(v).unwrap());
                history.complete(op, Output::Read(v));
                completed += 1;
            }
            Err(e) => {
                history.fail(op);
                inner.pipeline.wait_failed(&e);
                first_error.get_or_insert(e);
            }
        }
    }
    inner.pipeline.burst(false, count, completed);
    first_error.map_or(Ok(()), Err)
}
