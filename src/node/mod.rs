//! A running Raft node: the pure core of [`crate::raft`], a
//! [`LogStore`] and a [`StateMachine`], driven by
//! OS threads and connected to its peers over TCP.
//!
//! # Threads
//!
//! * **timer** (`timer.rs`) — ticks the core every [`Config::tick`].
//! * **writer** (`writer.rs`) — makes the core's output durable (group
//!   commit) and only then releases the messages that depend on it.
//! * **apply** (`apply.rs`) — applies committed entries to the state machine
//!   in log order, answers the clients waiting on them, serves reads, and
//!   captures the state for snapshots.
//! * **snapshot** (`snapshot.rs`) — writes captured states out as snapshot
//!   files (§7), after which the core compacts the log.
//! * **one per peer** (`peer.rs`) — owns the outbound connection to that peer:
//!   sends the messages the writer released and, on a leader, pulls
//!   AppendEntries from the core whenever it is woken.
//! * **listener**, plus **one per inbound connection** (`listener.rs`) — checks
//!   each peer's handshake ([`wire`]), then steps its messages into the core.
//!
//! They share one [`parking_lot::Mutex`] around the core and talk through
//! crossbeam channels (`shared.rs`). Whoever steps the core routes its output
//! while still holding the lock, so outputs leave in the order the core
//! produced them. No thread does I/O while holding the core lock.
//!
//! # Dependencies
//!
//! This layer builds on [`crate::raft`] (the rules), [`crate::storage`]
//! (durability) and the codec. It knows nothing of the key-value store or
//! the Redis protocol: commands, queries and replies are bytes, given meaning
//! by the [`StateMachine`] the node is started with.

pub mod config;
pub mod error;
pub mod sockets;
pub mod state_machine;
pub mod stats;
pub mod wire;

mod answer;
mod apply;
mod handshake;
mod listener;
mod peer;
mod shared;
mod snapshot;
mod snapshot_state;
mod timer;
mod writer;

pub use config::{Config, ConfigError, ReadMode};
pub use error::{Error, StartError};
pub use state_machine::{RestoreError, StateMachine, StateSnapshot};
pub use stats::HistogramSnapshot;

use crate::raft::membership::Configuration;
use crate::raft::membership::{ChangeError, ConfChange, Suffrage};
use crate::raft::message::{Entry, HardState, Index, NodeId, Payload, Term};
use crate::raft::{ProgressState, ProposeError, RaftCore, Restored, RoleKind, TransferError};
use crate::storage::{DiskStore, LogStore, Recovered, SnapshotStore, StorageError};
use crossbeam_channel::{bounded, unbounded, Receiver};
use log::{info, warn};
use parking_lot::{Mutex, RwLock};
use shared::{ReadAnswer, Shared};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Counters a node keeps for INFO and the metrics endpoint. Each counts
/// from the process's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// Linearizable reads answered.
    pub reads_served: u64,
    /// Heartbeat rounds started to confirm leadership for reads.
    pub read_rounds: u64,
    /// Reads served on the leader's lease without a round.
    pub lease_reads: u64,
    /// Followers found to have lost entries they acknowledged, while this
    /// node led, and replicated to again.
    pub followers_repaired: u64,
    /// Syncs (fsync) of the log: each makes a whole batch of writes durable
    /// (group commit), so under load there are far fewer than writes.
    pub log_syncs: u64,
    /// Terms in which this node learnt of a leader (itself included): each
    /// election it saw won, the first after start too.
    pub leader_changes: u64,
    /// Entries this node appended as leader: client commands and
    /// membership changes (a new leader's no-op is not one).
    pub proposals: u64,
    /// Entries this node learnt were committed.
    pub entries_committed: u64,
    /// Entries written to this node's log, whatever its role, and their
    /// size (each entry's [`Entry::size`]: its payload and 36 bytes).
    pub entries_appended: u64,
    pub bytes_appended: u64,
    /// How long each log sync took, in microseconds
    /// ([`stats::FSYNC_MICROS`]); its count is `log_syncs`, give or take
    /// one in progress.
    pub fsync_micros: HistogramSnapshot,
    /// How many entries each log write that appended any made durable with
    /// its one sync (the group commit's batch, [`stats::BATCH_ENTRIES`]).
    pub append_batch: HistogramSnapshot,
}

/// What a node knows about its snapshots and compacted log, for INFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// The latest snapshot's last included index and term (0 if none).
    pub index: Index,
    pub term: Term,
    /// Its file's size.
    pub bytes: u64,
    /// The first entry the in-memory log holds.
    pub log_first_index: Index,
    pub taken: u64,
    pub installed: u64,
    pub failed: u64,
    pub in_progress: bool,
    /// Unix time of the last snapshot taken or installed; 0 if none.
    pub last_save_unix: u64,
    /// Transfers to followers under way: bytes sent and total, by peer.
    pub sending: BTreeMap<NodeId, (u64, u64)>,
}

/// A snapshot could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BgsaveError {
    /// One is being written already.
    InProgress,
    ShutDown,
}

/// One member of the cluster as this node sees it, for RAFT.NODES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub id: NodeId,
    /// Where it listens for peers, as the configuration says.
    pub raft_addr: String,
    /// Where it serves clients, if known.
    pub client_addr: Option<String>,
    pub suffrage: Suffrage,
    /// A learner the leader will promote once it catches up.
    pub auto_promote: bool,
    /// Its data dir's incarnation, once recorded.
    pub incarnation: Option<u64>,
    /// On the leader: how far its log matches the leader's (for the leader
    /// itself, its durable last index); `None` on other nodes.
    pub match_index: Option<Index>,
    /// On the leader: the entries it lacks.
    pub lag: Option<Index>,
    /// On the leader, for the other members: how it is being replicated to
    /// (probing for the match point, pipelining, or sent the snapshot).
    pub replication: Option<ProgressState>,
    /// Whether this node can reach it (true for itself).
    pub connected: bool,
}

/// The cluster's membership as this node sees it (§4.1: the latest
/// configuration in its log, committed or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The index of the entry that set it (0: the bootstrap configuration).
    pub config_index: Index,
    /// That entry is not yet committed.
    pub change_in_progress: bool,
    pub members: Vec<MemberStatus>,
    /// A leadership transfer under way on this (leader) node: its target.
    pub transferring_to: Option<NodeId>,
}

/// A snapshot of a node's Raft state, for INFO and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: RoleKind,
    pub term: Term,
    pub leader_id: Option<NodeId>,
    pub commit_index: Index,
    pub last_applied: Index,
    pub last_log_index: Index,
    /// The voters of the configuration in force.
    pub members: Vec<NodeId>,
    /// Its learners.
    pub learners: Vec<NodeId>,
    /// The index of the entry that set it, and whether that entry is not
    /// yet committed.
    pub config_index: Index,
    pub config_change_in_progress: bool,
    /// On the leader, how much of each peer's log is known to match its
    /// own (§5.3); empty on other nodes.
    pub match_index: BTreeMap<NodeId, Index>,
}

/// An entry appended to the leader's log whose outcome is not known yet
/// ([`Node::start_proposal`]).
#[must_use = "a proposal's outcome is only known by waiting for it"]
pub struct Proposal<'a, S> {
    node: &'a Node<S>,
    /// The entry's index and term.
    key: (Index, Term),
    /// Taken by [`Proposal::wait`]; still here if the proposal is dropped
    /// unwaited.
    answer: Option<answer::Pending<Option<Vec<u8>>>>,
    /// When waiting gives up ([`Config::proposal_timeout`] after it was
    /// proposed).
    deadline: Instant,
}

impl<S> Proposal<'_, S> {
    /// Gives up waiting sooner: `timeout` from now, if that is before the
    /// proposal timeout.
    pub fn within(mut self, timeout: Duration) -> Self {
        self.deadline = self.deadline.min(Instant::now() + timeout);
        self
    }

    /// Waits until the entry is committed and applied; returns the state
    /// machine's reply. [`Error::NotLeader`] means it never will be (another
    /// entry took its place), [`Error::Timeout`] that it was not seen
    /// applied in time, so it may or may not be.
    pub fn wait(mut self) -> Result<Vec<u8>, Error> {
        let (node, key) = (self.node, self.key);
        let Some(pending) = self.answer.take() else {
            unreachable!("a proposal is waited for once");
        };
        let answer = node.await_answer(pending, self.deadline, || {
            node.shared.waiters.lock().remove(&key);
        })?;
        answer.ok_or_else(|| Error::NotLeader {
            leader: node.shared.core.lock().leader_id(),
        })
    }
}

impl<S> Drop for Proposal<'_, S> {
    /// Nobody will wait (its client went away): the entry still commits or
    /// not, but its waiter goes now.
    fn drop(&mut self) {
        if self.answer.is_some() {
            self.node.shared.waiters.lock().remove(&self.key);
        }
    }
}

/// A linearizable read started and not answered yet
/// ([`Node::start_query`]).
#[must_use = "a read's answer is only known by waiting for it"]
pub struct PendingQuery<'a, S> {
    node: &'a Node<S>,
    id: u64,
    /// Taken by [`PendingQuery::wait`]; still here if the read is dropped
    /// unwaited.
    answer: Option<answer::Pending<ReadAnswer>>,
    deadline: Instant,
}

impl<S> PendingQuery<'_, S> {
    /// Forgets the read, here and in the core, or a leader whose rounds
    /// are never confirmed would keep every abandoned read (issue 12).
    fn forget(&self) {
        self.node.shared.read_waiters.lock().remove(&self.id);
        let id = self.id;
        self.node.shared.with_core(|core| core.cancel_read(id));
    }
}

impl<S> Drop for PendingQuery<'_, S> {
    /// Nobody will wait (its client went away).
    fn drop(&mut self) {
        if self.answer.is_some() {
            self.forget();
        }
    }
}

impl<S: StateMachine> PendingQuery<'_, S> {
    /// Waits for the read to be confirmed; returns the state machine's
    /// answer. [`Error::NotLeader`] means leadership was lost first.
    pub fn wait(mut self) -> Result<Vec<u8>, Error> {
        let node = self.node;
        let Some(pending) = self.answer.take() else {
            unreachable!("a read is waited for once");
        };
        let answer = node.await_answer(pending, self.deadline, || self.forget())?;
        match answer {
            ReadAnswer::Value(value) => Ok(value),
            // Everything the read must observe is applied: query the state
            // here, sparing a hop through the apply thread (a lease read
            // never leaves its client's thread at all).
            ReadAnswer::Serve(query) => {
                let value = node.state.read().query(&query);
                node.shared.reads_served.fetch_add(1, Ordering::Relaxed);
                Ok(value)
            }
            ReadAnswer::Aborted => Err(Error::NotLeader {
                leader: node.shared.core.lock().leader_id(),
            }),
        }
    }
}

/// A running node replicating the state machine `S`. Dropping it halts it.
pub struct Node<S> {
    shared: Arc<Shared>,
    state: Arc<RwLock<S>>,
    raft_addr: SocketAddr,
    shutdown: Mutex<Option<crossbeam_channel::Sender<()>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    inbound: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl<S: StateMachine> Node<S> {
    /// Opens the data dir, binds `config.raft_addr` and starts the threads.
    pub fn start(config: Config, state_machine: S) -> Result<Node<S>, StartError> {
        let listener = TcpListener::bind(&config.raft_addr).map_err(|source| StartError::Bind {
            addr: config.raft_addr.clone(),
            source,
        })?;
        Node::start_with_listener(config, listener, state_machine)
    }

    /// Like [`Node::start`] with an already bound listener (tests bind port 0
    /// for every node first, to learn all addresses before any node starts).
    pub fn start_with_listener(
        config: Config,
        listener: TcpListener,
        state_machine: S,
    ) -> Result<Node<S>, StartError> {
        // Contradictory settings are reported before the data dir is touched
        // (created, locked or read).
        config.core_config()?;
        let store = DiskStore::open(&config.data_dir, config.id, &config.cluster_id)?;
        Node::start_with(config, listener, store, state_machine)
    }

    /// Starts a node on any log store: the data dir in production, an
    /// in-memory or fault-injecting store in tests.
    ///
    /// The state machine is restored from the data dir's latest snapshot, if
    /// there is one, and the committed entries after it are applied without
    /// waiting for a leader.
    pub fn start_with<L: LogStore + 'static>(
        config: Config,
        listener: TcpListener,
        mut store: L,
        mut state_machine: S,
    ) -> Result<Node<S>, StartError> {
        let mut core_config = config.core_config()?;
        let raft_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.raft_addr.clone(),
            source,
        })?;
        let mut config = config;
        if config.raft_addr.ends_with(":0") {
            // Advertise the port the OS chose.
            config.raft_addr = raft_addr.to_string();
        }
        let incarnation = store.incarnation();
        core_config.incarnation = incarnation;
        let snapshots = SnapshotStore::open(&config.data_dir.join("snapshots"))?;
        let recovered = store.recover()?;
        if let Some(index) = recovered.removed {
            return Err(StartError::Removed {
                id: config.id,
                index,
            });
        }
        let (snapshot, snapshot_config) = restore_snapshot(&snapshots, &mut state_machine)?;
        check_log_reaches(&snapshots, snapshot.0, &recovered.entries)?;
        let base_config = match (snapshot_config, recovered.bootstrap.clone()) {
            (Some(config), _) => config,
            (None, Some(bootstrap)) => (0, bootstrap),
            (None, None) => (0, first_configuration(&config, &recovered, &mut store)?),
        };
        info!(
            "node {}: recovered term {}, vote {:?}, snapshot at {}, log entries {}..={}, \
             commit index {}, data dir incarnation {incarnation:016x} from {}",
            config.id,
            recovered.hard_state.current_term,
            recovered.hard_state.voted_for,
            snapshot.0,
            recovered.entries.first().map_or(0, |e| e.index),
            recovered.entries.last().map_or(0, |e| e.index),
            recovered.commit_index,
            config.data_dir.display()
        );
        let recovered_term = recovered.hard_state.current_term;
        let core = RaftCore::restore(
            core_config,
            Restored {
                hard_state: recovered.hard_state,
                snapshot,
                config: base_config.clone(),
                entries: recovered.entries,
                commit_index: recovered.commit_index,
            },
        );
        warn_about_flags(&config, core.configuration());
        // The configuration in force at the snapshot, for the apply thread,
        // which keeps it up to date as it applies entries.
        let applied_config = base_config;

        let (shutdown_tx, shutdown_rx) = bounded::<()>(0);
        let (to_writer, writer_rx) = unbounded();
        let (to_apply, apply_rx) = unbounded();
        // One job at a time: the apply thread starts one only when none is
        // being written.
        let (to_snapshot, snapshot_rx) = bounded(1);
        let members: Vec<NodeId> = core.configuration().members.keys().copied().collect();
        let shared = Shared::new(
            config,
            core,
            incarnation,
            (to_writer, to_apply, shutdown_rx.clone()),
            snapshots,
        );
        shared.last_applied.store(snapshot.0, Ordering::Release);
        (shared.durable_term).store(recovered_term, Ordering::Release);
        if let Some(info) = shared.snapshots.latest() {
            // LASTSAVE survives a restart: the snapshot's own time.
            let saved = std::fs::metadata(&info.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            (shared.snapshot_stats.last_save_unix).store(saved, Ordering::Relaxed);
        }
        let state = Arc::new(RwLock::new(state_machine));
        let inbound = Arc::new(Mutex::new(Vec::new()));
        let spawner = Spawner {
            id: shared.config.id,
            shared: &shared,
            shutdown: &shutdown_rx,
        };
        let threads = vec![
            spawner.spawn("timer", timer::run),
            spawner.spawn("writer", |s, rx| writer::run(s, store, writer_rx, rx)),
            spawner.spawn("apply", {
                let state = state.clone();
                move |shared, rx| {
                    let applier = apply::Applier {
                        shared,
                        state,
                        snapshots: to_snapshot,
                        applied: snapshot,
                        config: applied_config,
                        snapshot_index: snapshot.0,
                        log_bytes_since: 0,
                    };
                    apply::run(applier, apply_rx, rx)
                }
            }),
            spawner.spawn("snapshot", |s, rx| snapshot::run(s, snapshot_rx, rx)),
            spawner.spawn("listener", {
                let inbound = inbound.clone();
                |s, _| listener::run(s, listener, inbound)
            }),
        ];
        // Introduce this node to every member at once (see `peer.rs`).
        for id in members {
            shared.with_outbox(id, |_| {});
        }
        Ok(Node {
            shared,
            state,
            raft_addr,
            shutdown: Mutex::new(Some(shutdown_tx)),
            threads: Mutex::new(threads),
            inbound,
        })
    }

    /// Proposes a command and waits until it is committed and applied;
    /// returns the state machine's reply.
    pub fn propose(&self, command: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.start_proposal(command)?.wait()
    }

    /// Proposes a command without waiting for it: [`Proposal::wait`] waits.
    /// A caller with many commands at once (a client that pipelines)
    /// proposes them all before waiting for the first, so one fsync and one
    /// round trip commit the lot. They are applied in the order proposed.
    pub fn start_proposal(&self, command: Vec<u8>) -> Result<Proposal<'_, S>, Error> {
        if let Some(e) = self.shared.failure() {
            return Err(e);
        }
        let limit = self.shared.config.max_command_bytes();
        if command.len() > limit {
            return Err(Error::CommandTooLarge {
                len: command.len(),
                limit,
            });
        }
        self.append(|core| {
            core.propose(command).map_err(|e| match e {
                ProposeError::NotLeader(e) => Error::NotLeader { leader: e.leader },
                ProposeError::Transferring { target } => Error::Transferring { target },
            })
        })
    }

    /// Answers `query` linearizably: the answer reflects every write
    /// acknowledged before this call began (ReadIndex, §6.4 of the Raft
    /// dissertation — the leader confirms it still leads with a heartbeat
    /// round, then queries the state machine once it has applied up to the
    /// commit index it saw). Only the leader serves it; the read writes
    /// nothing to the log or the disk.
    pub fn query(&self, query: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.start_query(query)?.wait()
    }

    /// Starts a linearizable read without waiting for it:
    /// [`PendingQuery::wait`] waits. Reads started together share one
    /// heartbeat round.
    pub fn start_query(&self, query: Vec<u8>) -> Result<PendingQuery<'_, S>, Error> {
        if let Some(e) = self.shared.failure() {
            return Err(e);
        }
        let id = self.shared.next_read_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = answer::slot();
        let deadline = Instant::now() + self.shared.config.proposal_timeout;
        let started = self.shared.with_core(|core| {
            core.read_index(id)
                .map_err(|e| Error::NotLeader { leader: e.leader })?;
            // Registered under the core lock: before the read can be released.
            self.shared.read_waiters.lock().insert(id, (query, tx));
            Ok(())
        });
        match started {
            None => Err(self.shared.failure().unwrap_or(Error::ShutDown)),
            Some(result) => result.map(|()| PendingQuery {
                node: self,
                id,
                answer: Some(rx),
                deadline,
            }),
        }
    }

    /// Changes the cluster's membership (§4.1, one server at a time) and
    /// waits until the change is committed and applied; returns the index of
    /// its entry. Only the leader can; a change while another is in flight
    /// is refused ([`ChangeError::InProgress`]), as is one the configuration
    /// forbids.
    pub fn change_membership(&self, change: ConfChange) -> Result<Index, Error> {
        if let Some(e) = self.shared.failure() {
            return Err(e);
        }
        let (index, _) = self.append_and_wait(|core| {
            core.propose_change(change).map_err(|e| match e {
                ChangeError::NotLeader(leader) => Error::NotLeader { leader },
                e => Error::Change(e),
            })
        })?;
        Ok(index)
    }

    /// Has the core append an entry (`append` returns its index and term);
    /// the [`Proposal`] waits until it is committed and applied.
    fn append(
        &self,
        append: impl FnOnce(&mut RaftCore) -> Result<(Index, Term), Error>,
    ) -> Result<Proposal<'_, S>, Error> {
        let (tx, rx) = answer::slot();
        let deadline = Instant::now() + self.shared.config.proposal_timeout;
        let appended = self.shared.with_core(|core| {
            let key = append(core)?;
            self.shared.stats.proposals.fetch_add(1, Ordering::Relaxed);
            // Registered under the core lock, so it is in place before the
            // entry can possibly be applied.
            self.shared.waiters.lock().insert(key, tx);
            Ok(key)
        });
        match appended {
            None => Err(self.shared.failure().unwrap_or(Error::ShutDown)),
            Some(result) => Ok(Proposal {
                node: self,
                key: result?,
                answer: Some(rx),
                deadline,
            }),
        }
    }

    /// Like [`Node::append`], and waits; returns the entry's index and the
    /// state machine's reply.
    fn append_and_wait(
        &self,
        append: impl FnOnce(&mut RaftCore) -> Result<(Index, Term), Error>,
    ) -> Result<(Index, Vec<u8>), Error> {
        let proposal = self.append(append)?;
        let index = proposal.key.0;
        Ok((index, proposal.wait()?))
    }

    /// Hands this node's leadership to `target`, or to the most up-to-date
    /// voter (§3.10), and waits until the target leads; returns it. While it
    /// waits, the leader takes no writes; if the target has not taken over
    /// within the maximum election timeout, the transfer is abandoned
    /// ([`Error::TransferTimedOut`]) and this node takes writes again.
    pub fn transfer_leadership(&self, target: Option<NodeId>) -> Result<NodeId, Error> {
        let started = self.shared.with_core(|core| {
            core.transfer_leadership(target).map_err(|e| match e {
                TransferError::NotLeader(e) => Error::NotLeader { leader: e.leader },
                e => Error::Transfer(e),
            })
        });
        let target = match started {
            None => return Err(self.shared.failure().unwrap_or(Error::ShutDown)),
            Some(result) => result?,
        };
        let within = self.shared.config.election_timeout_max;
        let deadline = Instant::now() + within + 2 * self.shared.config.tick;
        loop {
            let (leader, transferring) = {
                let core = self.shared.core.lock();
                (core.leader_id(), core.transferring_to())
            };
            if leader == Some(target) {
                return Ok(target);
            }
            // The core gave up (an election timeout passed), or lost
            // leadership to someone else.
            if transferring.is_none() && leader == Some(self.id()) || Instant::now() > deadline {
                return Err(Error::TransferTimedOut { target, within });
            }
            if leader.is_some() && leader != Some(self.id()) {
                return Err(Error::NotLeader { leader });
            }
            thread::sleep(self.shared.config.tick);
        }
    }

    /// Runs `f` on this node's state machine as it is now: a *local* read,
    /// which on a follower, or on a leader deposed without knowing it, may
    /// miss recent writes. Use [`Node::query`] for a linearizable one.
    pub fn with_state<T>(&self, f: impl FnOnce(&S) -> T) -> T {
        f(&self.state.read())
    }
}

impl<S> Node<S> {
    pub fn id(&self) -> NodeId {
        self.shared.config.id
    }

    /// The address peers reach this node at (useful when bound to port 0).
    pub fn raft_addr(&self) -> SocketAddr {
        self.raft_addr
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Where node `id` serves clients, if known: this node's own from its
    /// configuration, a member's from the cluster's configuration, or else
    /// from its handshake.
    pub fn client_addr_of(&self, id: NodeId) -> Option<String> {
        if id == self.id() {
            return self.shared.config.client_addr.clone();
        }
        let recorded = self
            .shared
            .members
            .lock()
            .members
            .get(&id)
            .and_then(|m| m.client_addr.clone());
        recorded.or_else(|| self.shared.client_addrs.lock().get(&id).cloned())
    }

    /// Whether this node believes it can reach peer `id`: no longer once
    /// dialing it, a connection to it, or its connection to us has failed;
    /// again once a connection to or from it succeeds. (A follower rarely talks to other followers,
    /// so this is only as fresh as the last attempt; the leader, which
    /// heartbeats everyone, knows best.)
    pub fn peer_reachable(&self, id: NodeId) -> bool {
        !self.shared.unreachable_peers.lock().contains(&id)
    }

    /// The cluster's members as this node sees them; on the leader, with
    /// each one's replication progress.
    pub fn membership(&self) -> Membership {
        let core = self.shared.core.lock();
        let config = core.configuration();
        let last_index = core.log().last_index();
        let is_leader = core.role() == RoleKind::Leader;
        let members = config
            .members
            .iter()
            .map(|(&id, m)| {
                let match_index = match id == self.id() {
                    true => Some(core.persisted_index()).filter(|_| is_leader),
                    false => core.progress(id).map(|pr| pr.match_index()),
                };
                MemberStatus {
                    id,
                    raft_addr: m.raft_addr.clone(),
                    client_addr: m.client_addr.clone().or_else(|| self.client_addr_of(id)),
                    suffrage: m.suffrage,
                    auto_promote: m.auto_promote,
                    incarnation: m.incarnation,
                    match_index,
                    lag: match_index.map(|i| last_index.saturating_sub(i)),
                    replication: core.progress(id).map(|pr| pr.state()),
                    connected: id == self.id() || self.peer_reachable(id),
                }
            })
            .collect();
        Membership {
            config_index: core.config_index(),
            change_in_progress: core.config_change_in_progress(),
            members,
            transferring_to: core.transferring_to(),
        }
    }

    /// The leader of the current term, as far as this node knows.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.shared.core.lock().leader_id()
    }

    pub fn status(&self) -> Status {
        let core = self.shared.core.lock();
        self.status_of(&core)
    }

    /// Like [`Node::status`], but `None` instead of waiting while the node is
    /// paused or busy.
    pub fn try_status(&self) -> Option<Status> {
        let core = self.shared.core.try_lock_for(Duration::from_millis(1))?;
        Some(self.status_of(&core))
    }

    fn status_of(&self, core: &RaftCore) -> Status {
        Status {
            id: core.id(),
            role: core.role(),
            term: core.current_term(),
            leader_id: core.leader_id(),
            commit_index: core.commit_index(),
            last_applied: self.shared.last_applied.load(Ordering::Acquire),
            last_log_index: core.log().last_index(),
            members: core.members(),
            learners: core.configuration().learners().collect(),
            config_index: core.config_index(),
            config_change_in_progress: core.config_change_in_progress(),
            match_index: core
                .members()
                .into_iter()
                .filter_map(|id| Some((id, core.progress(id)?.match_index())))
                .collect(),
        }
    }

    /// Starts a snapshot of the state as applied now (BGSAVE); it is written
    /// in the background.
    pub fn bgsave(&self) -> Result<(), BgsaveError> {
        if self
            .shared
            .snapshot_stats
            .in_progress
            .load(Ordering::Acquire)
        {
            return Err(BgsaveError::InProgress);
        }
        self.shared
            .to_apply
            .send(shared::ApplyWork::SnapshotNow)
            .map_err(|_| BgsaveError::ShutDown)
    }

    /// Snapshots and the compacted log, for INFO and LASTSAVE.
    pub fn snapshot_status(&self) -> SnapshotStatus {
        let log_first_index = self.shared.core.lock().log().first_index();
        let latest = self.shared.snapshots.latest();
        let stats = &self.shared.snapshot_stats;
        SnapshotStatus {
            index: latest.as_ref().map_or(0, |s| s.meta.last_included_index),
            term: latest.as_ref().map_or(0, |s| s.meta.last_included_term),
            bytes: latest.as_ref().map_or(0, |s| s.bytes),
            log_first_index,
            taken: stats.taken.load(Ordering::Relaxed),
            installed: stats.installed.load(Ordering::Relaxed),
            failed: stats.failed.load(Ordering::Relaxed),
            in_progress: stats.in_progress.load(Ordering::Acquire),
            last_save_unix: stats.last_save_unix.load(Ordering::Relaxed),
            sending: stats.sending.lock().clone(),
        }
    }

    /// Tests only: reads the leader's core still holds, waiting for their
    /// round or their index.
    #[doc(hidden)]
    pub fn pending_reads(&self) -> usize {
        self.shared.core.lock().pending_reads()
    }

    /// Tests only: stops (or restarts) the timer thread's wake-ups, as a
    /// timer thread that runs very late would. Timeouts then fire only when
    /// something else uses the core; time is still measured by the clock.
    #[doc(hidden)]
    pub fn freeze_timer(&self, frozen: bool) {
        self.shared.timer_frozen.store(frozen, Ordering::Relaxed);
    }

    /// The index of the entry that removed this node from the cluster, once
    /// it learnt of it and recorded it (it then takes no further part).
    pub fn removed(&self) -> Option<Index> {
        *self.shared.removed.lock()
    }

    /// Waits up to `timeout` for this node to be removed from the cluster
    /// (see [`Node::removed`]).
    pub fn wait_removed(&self, timeout: Duration) -> Option<Index> {
        let mut removed = self.shared.removed.lock();
        if removed.is_none() {
            let _ = self.shared.removed_signal.wait_for(&mut removed, timeout);
        }
        *removed
    }

    /// The storage failure that stopped this node, if one did (fail-stop):
    /// a write or fsync of its data dir failed, so the node no longer takes
    /// part — its core is not stepped, its peer port is closed, and every
    /// request fails with [`Error::Storage`]. It never recovers by itself:
    /// halt it and start it again on the same data dir, whose recovery
    /// finds out what the disk really holds.
    pub fn failure(&self) -> Option<Arc<StorageError>> {
        self.shared.storage_failure()
    }

    /// Waits up to `timeout` for this node's storage to fail (see
    /// [`Node::failure`]); whoever runs a node should watch this, as
    /// `raftnode run` does (it exits).
    pub fn wait_failed(&self, timeout: Duration) -> Option<Arc<StorageError>> {
        self.shared.wait_failed(timeout)
    }

    /// The incarnation of this node's data dir.
    pub fn incarnation(&self) -> u64 {
        self.shared.incarnation
    }

    /// The highest term this node's storage has made durable. A node may
    /// adopt a term in memory and lose it in a crash before writing it
    /// (that is safe: nothing that depends on it has left), so a restart
    /// can only be held to this, not to [`Status::term`].
    pub fn durable_term(&self) -> Term {
        self.shared.durable_term.load(Ordering::Acquire)
    }

    /// Counters for INFO and the metrics endpoint.
    pub fn metrics(&self) -> Metrics {
        let core = self.shared.core.lock();
        let (read_rounds, lease_reads, followers_repaired) = (
            core.read_rounds(),
            core.lease_reads_served(),
            core.followers_repaired(),
        );
        // The rest are atomics: no need to hold up the core for them.
        drop(core);
        let stats = &self.shared.stats;
        let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        Metrics {
            reads_served: count(&self.shared.reads_served),
            read_rounds,
            lease_reads,
            followers_repaired,
            log_syncs: count(&self.shared.log_syncs),
            leader_changes: count(&stats.leader_changes),
            proposals: count(&stats.proposals),
            entries_committed: count(&stats.entries_committed),
            entries_appended: count(&stats.entries_appended),
            bytes_appended: count(&stats.bytes_appended),
            fsync_micros: stats.fsync.snapshot(),
            append_batch: stats.append_batch.snapshot(),
        }
    }

    /// A copy of this node's log (what compaction left of it), for tests
    /// that compare logs.
    pub fn log_entries(&self) -> Vec<Entry> {
        let core = self.shared.core.lock();
        core.log().slice(1, core.log().last_index()).to_vec()
    }

    /// For fault-injection tests: freezes the node, as SIGSTOP would, until
    /// the guard is dropped. Every thread that needs the core waits; sockets
    /// stay open and buffer what peers send. Do not call methods of this node
    /// from the pausing thread while paused (they would wait for it).
    pub fn pause(&self) -> impl Drop + '_ {
        self.shared.core.lock()
    }

    /// Waits for the apply thread's answer to a write or read: `None` means
    /// it definitely did not happen here (another entry took its place, or
    /// leadership was lost); no answer in time is a timeout, whose outcome is
    /// unknown.
    /// Waits for an answer until `deadline`; `forget` drops the waiter if
    /// none came.
    fn await_answer<T>(
        &self,
        rx: answer::Pending<T>,
        deadline: Instant,
        forget: impl FnOnce(),
    ) -> Result<T, Error> {
        match rx.wait_until(deadline) {
            Ok(answer) => Ok(answer),
            Err(answer::Waited::TimedOut) => {
                forget();
                Err(Error::Timeout)
            }
            Err(answer::Waited::Dropped) => Err(self.shared.failure().unwrap_or(Error::ShutDown)),
        }
    }

    /// Stops every thread of this node, closes its sockets and files, and
    /// waits for all of them. Writes in flight get [`Error::ShutDown`]. Nothing
    /// is flushed that was not already durable. Idempotent.
    pub fn halt(&self) {
        let Some(shutdown) = self.shutdown.lock().take() else {
            return;
        };
        info!("node {}: halting", self.id());
        self.shared.stopping.store(true, Ordering::Release);
        // Dropping the only sender wakes every thread's select on shutdown.
        drop(shutdown);
        sockets::wake_listener(self.raft_addr);
        self.shared.sockets.shutdown_all();
        for handle in self.threads.lock().drain(..) {
            let _ = handle.join();
        }
        self.shared.join_peer_threads();
        // The listener has exited, so no new inbound threads can appear.
        self.shared.sockets.shutdown_all();
        for handle in self.inbound.lock().drain(..) {
            let _ = handle.join();
        }
        self.shared.waiters.lock().clear();
        self.shared.read_waiters.lock().clear();
    }
}

impl<S> Drop for Node<S> {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A snapshot's last included index and term, and the configuration in
/// force there with the index that set it (none without a snapshot).
type RestoredSnapshot = ((Index, Term), Option<(Index, Configuration)>);

/// Restores `state_machine` from the latest snapshot, if any; returns its
/// last included index and term ((0, 0) without one), and the configuration
/// in force there with the index that set it.
fn restore_snapshot<S: StateMachine>(
    snapshots: &SnapshotStore,
    state_machine: &mut S,
) -> Result<RestoredSnapshot, StorageError> {
    let Some(info) = snapshots.latest() else {
        return Ok(((0, 0), None));
    };
    let meta = snapshot::restore_from(&info, state_machine)?;
    Ok((
        (meta.last_included_index, meta.last_included_term),
        Some((meta.config_index, meta.config)),
    ))
}

/// The configuration of a data dir that holds none yet (no snapshot, no
/// bootstrap record), saved before the node starts: empty for a node that
/// joins an existing cluster (its leader will send it one) or that already
/// holds configuration entries; otherwise the cluster it forms from its
/// flags — this node and its `--peer`s, all voters (§4.1: the bootstrap
/// configuration). Once saved, the flags can never replace it.
fn first_configuration<L: LogStore>(
    config: &Config,
    recovered: &Recovered,
    store: &mut L,
) -> Result<Configuration, StorageError> {
    let holds_configs = (recovered.entries.iter()).any(|e| matches!(e.payload, Payload::Config(_)));
    let fresh = recovered.entries.is_empty() && recovered.hard_state == HardState::default();
    if config.join || holds_configs {
        if config.join && fresh {
            info!(
                "node {}: new data dir; waiting to be added to the cluster",
                config.id
            );
        }
        let empty = Configuration::default();
        store.save_bootstrap(&empty)?;
        return Ok(empty);
    }
    let mut bootstrap = Configuration::of_voters(
        (config.peers.iter().map(|(&id, addr)| (id, addr.clone())))
            .chain([(config.id, config.raft_addr.clone())]),
    );
    if let Some(me) = bootstrap.members.get_mut(&config.id) {
        me.client_addr = config.client_addr.clone();
    }
    if fresh {
        info!(
            "node {}: new data dir; forming a cluster of {}",
            config.id,
            bootstrap.describe()
        );
    } else {
        warn!(
            "node {}: this data dir predates membership in the log; recording the members \
             given by the flags ({}) as its configuration",
            config.id,
            bootstrap.describe()
        );
    }
    store.save_bootstrap(&bootstrap)?;
    Ok(bootstrap)
}

/// Once a data dir holds a configuration, `--peer` flags only say where to
/// dial members: a flag naming a non-member changes nothing, and says so.
fn warn_about_flags(config: &Config, latest: &Configuration) {
    let strangers: Vec<String> = (config.peers.keys())
        .filter(|id| !latest.contains(**id))
        .map(|id| id.to_string())
        .collect();
    if !strangers.is_empty() && !latest.is_empty() {
        warn!(
            "node {}: --peer {} not in the configuration of the data dir ({}); membership comes \
             from the data dir and changes only through RAFT.NODE, so those flags are only dial \
             addresses",
            config.id,
            strangers.join(", "),
            latest.describe()
        );
    }
}

/// The log must continue the snapshot: entries before its first one exist
/// only in the snapshot. A gap means files were lost or mixed up, and
/// starting anyway would lose committed writes.
fn check_log_reaches(
    snapshots: &SnapshotStore,
    snapshot_index: Index,
    entries: &[Entry],
) -> Result<(), StorageError> {
    match entries.first() {
        Some(first) if first.index > snapshot_index + 1 => Err(StorageError::Corrupt {
            path: snapshots.dir().to_path_buf(),
            offset: None,
            reason: format!(
                "the log starts at entry {}, but the latest snapshot only covers up to {}",
                first.index, snapshot_index
            ),
        }),
        _ => Ok(()),
    }
}

/// Starts a node's threads, each named after the node and its job.
struct Spawner<'a> {
    id: NodeId,
    shared: &'a Arc<Shared>,
    shutdown: &'a Receiver<()>,
}

impl Spawner<'_> {
    fn spawn(
        &self,
        name: &str,
        run: impl FnOnce(Arc<Shared>, Receiver<()>) + Send + 'static,
    ) -> JoinHandle<()> {
        let (shared, shutdown) = (self.shared.clone(), self.shutdown.clone());
        thread::Builder::new()
            .name(format!("raft-{}-{name}", self.id))
            .spawn(move || run(shared, shutdown))
            .expect("spawning a thread")
    }
}
