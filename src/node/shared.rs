//! What a node's threads share: the core behind its lock, the channels
//! between threads, and the clients waiting for answers. It knows nothing of
//! the state machine's type: commands, queries and replies are bytes here.

use super::config::Config;
use super::error::Error;
use super::snapshot_state::{Incoming, SnapshotStats};
use super::sockets::Sockets;
use super::stats::NodeStats;
use crate::raft::membership::Configuration;
use crate::raft::message::{Entry, Envelope, Index, NodeId, Term};
use crate::raft::{RaftCore, Ready};
use crate::storage::{SnapshotStore, StorageError};
use crossbeam_channel::{Receiver, Sender};
use log::{error, info};
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where the apply thread sends a reply: `None` means the request definitely
/// did not happen here (another entry took its place, or leadership was lost
/// before a read was confirmed).
pub(crate) type Answer = super::answer::Answer<Option<Vec<u8>>>;

/// What a linearizable read's waiter is told.
pub(crate) enum ReadAnswer {
    /// The answer, from the apply thread.
    Value(Vec<u8>),
    /// The state machine has already applied everything the read must
    /// observe: the waiter queries it itself (here is its query back).
    Serve(Vec<u8>),
    /// Leadership was lost before the read was confirmed.
    Aborted,
}

/// A read waiting to be released: its query, and where the answer goes.
pub(crate) type ReadWaiter = (Vec<u8>, super::answer::Answer<ReadAnswer>);

/// Work for the apply thread, in the order the core released it.
pub(crate) enum ApplyWork {
    Entries(Vec<Entry>),
    /// Replace the state machine with the installed snapshot of this last
    /// included index and term; every entry sent after it follows it.
    Restore(Index, Term),
    /// Take a snapshot now (BGSAVE).
    SnapshotNow,
    /// Reads confirmed by the core; every entry they must observe was sent
    /// before them on the same channel.
    Reads(Vec<u64>),
}

/// How other threads reach one peer's replication thread. Dropping it stops
/// the thread.
pub(crate) struct Outbox {
    /// Messages released by the writer, to send as they are.
    pub(crate) messages: Sender<Envelope>,
    /// A nudge to pull AppendEntries from the core; one pending nudge is as
    /// good as many.
    pub(crate) wake: Sender<()>,
}

impl Outbox {
    pub(crate) fn send(&self, message: Envelope) {
        let _ = self.messages.send(message);
    }

    pub(crate) fn wake(&self) {
        let _ = self.wake.try_send(());
    }
}

/// State shared by all of a node's threads.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) core: Mutex<RaftCore>,
    /// Clients waiting for their entry (index, term) to be applied.
    pub(crate) waiters: Mutex<BTreeMap<(Index, Term), Answer>>,
    /// Clients waiting for a linearizable read: the query, and where the
    /// answer goes.
    pub(crate) read_waiters: Mutex<HashMap<u64, ReadWaiter>>,
    pub(crate) next_read_id: AtomicU64,
    pub(crate) reads_served: AtomicU64,
    /// Syncs of the log by the writer: each makes a whole batch durable.
    pub(crate) log_syncs: AtomicU64,
    /// What the threads count for the metrics endpoint.
    pub(crate) stats: NodeStats,
    pub(crate) last_applied: AtomicU64,
    /// The term of the hard state storage last made durable.
    pub(crate) durable_term: AtomicU64,
    pub(crate) to_writer: Sender<Ready>,
    pub(crate) to_apply: Sender<ApplyWork>,
    /// The replication threads, one per peer this node sends to.
    pub(crate) peers: Mutex<BTreeMap<NodeId, Outbox>>,
    pub(crate) peer_threads: Mutex<Vec<JoinHandle<()>>>,
    /// What stops every thread, for the replication threads started later.
    pub(crate) shutdown: Receiver<()>,
    /// This `Shared` itself, for the threads it starts.
    pub(crate) this: OnceLock<Weak<Shared>>,
    /// The configuration in force (a copy of the core's), for addresses and
    /// handshakes.
    pub(crate) members: Mutex<Configuration>,
    /// Raft addresses peers advertised in their handshakes: how a node not
    /// yet told the configuration reaches its leader (a joining node).
    pub(crate) advertised: Mutex<BTreeMap<NodeId, String>>,
    /// Set once this node learnt it was removed from the cluster (the index
    /// of the entry that removed it), and the record of it is durable.
    pub(crate) removed: Mutex<Option<Index>>,
    pub(crate) removed_signal: Condvar,
    /// This node's data dir's incarnation.
    pub(crate) incarnation: u64,
    /// Set once storage has failed: the node stops taking part (fail-stop).
    failure: Mutex<Option<Arc<StorageError>>>,
    /// Signalled when `failure` is set ([`super::Node::wait_failed`]).
    failure_signal: Condvar,
    failed: AtomicBool,
    pub(crate) stopping: AtomicBool,
    /// Every open peer socket, so that halting can unblock their threads.
    pub(crate) sockets: Sockets,
    /// Peers' client addresses, learnt from their handshakes.
    pub(crate) client_addrs: Mutex<HashMap<NodeId, String>>,
    /// Peers this node failed to reach — dialing failed, or a connection to
    /// or from them ended — and has not had a connection with since, either
    /// way.
    pub(crate) unreachable_peers: Mutex<BTreeSet<NodeId>>,
    /// The data dir's snapshots.
    pub(crate) snapshots: SnapshotStore,
    pub(crate) snapshot_stats: SnapshotStats,
    /// A snapshot being received from the leader.
    pub(crate) incoming_snapshot: Mutex<Option<Incoming>>,
    /// When the core's tick 0 was, by the monotonic clock: the core is told
    /// how many ticks have passed since each time it is used.
    clock_start: Instant,
    /// Tests only: the timer thread skips its ticks while set, as a timer
    /// running very late would.
    pub(crate) timer_frozen: AtomicBool,
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        core: RaftCore,
        incarnation: u64,
        channels: (Sender<Ready>, Sender<ApplyWork>, Receiver<()>),
        snapshots: SnapshotStore,
    ) -> Arc<Shared> {
        let (to_writer, to_apply, shutdown) = channels;
        let members = core.configuration().clone();
        let shared = Arc::new(Shared {
            peers: Mutex::new(BTreeMap::new()),
            peer_threads: Mutex::new(Vec::new()),
            shutdown,
            this: OnceLock::new(),
            members: Mutex::new(members),
            advertised: Mutex::new(BTreeMap::new()),
            removed: Mutex::new(None),
            removed_signal: Condvar::new(),
            incarnation,
            config,
            core: Mutex::new(core),
            waiters: Mutex::new(BTreeMap::new()),
            read_waiters: Mutex::new(HashMap::new()),
            next_read_id: AtomicU64::new(1),
            reads_served: AtomicU64::new(0),
            log_syncs: AtomicU64::new(0),
            stats: NodeStats::default(),
            last_applied: AtomicU64::new(0),
            durable_term: AtomicU64::new(0),
            to_writer,
            to_apply,
            failure: Mutex::new(None),
            failure_signal: Condvar::new(),
            failed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            sockets: Sockets::default(),
            client_addrs: Mutex::new(HashMap::new()),
            unreachable_peers: Mutex::new(BTreeSet::new()),
            snapshots,
            snapshot_stats: SnapshotStats::default(),
            incoming_snapshot: Mutex::new(None),
            clock_start: Instant::now(),
            timer_frozen: AtomicBool::new(false),
        });
        let _ = shared.this.set(Arc::downgrade(&shared));
        shared
    }

    /// Where this node dials `peer`: the operator's `--peer` address for it
    /// if there is one (it may be a proxy), else the configuration's, else
    /// what the peer advertised.
    pub(crate) fn dial_addr(&self, peer: NodeId) -> Option<String> {
        if let Some(addr) = self.config.peers.get(&peer) {
            return Some(addr.clone());
        }
        let configured = (self.members.lock().members.get(&peer))
            .map(|m| m.raft_addr.clone())
            .filter(|a| !a.is_empty());
        configured.or_else(|| self.advertised.lock().get(&peer).cloned())
    }

    /// Stops the replication threads of nodes that have left: not in the
    /// configuration, not being told of their removal, not leading.
    pub(crate) fn prune_peers(&self, core: &RaftCore) {
        let mut peers = self.peers.lock();
        let gone: Vec<NodeId> = peers
            .keys()
            .copied()
            .filter(|&p| {
                !core.is_member(p) && core.progress(p).is_none() && core.leader_id() != Some(p)
            })
            .collect();
        for peer in gone {
            info!(
                "node {}: no longer replicating to {peer}, which left the cluster",
                self.config.id
            );
            // Dropping its only outbox ends the thread.
            peers.remove(&peer);
            self.client_addrs.lock().remove(&peer);
            self.advertised.lock().remove(&peer);
        }
        let mut threads = self.peer_threads.lock();
        let (done, running): (Vec<_>, Vec<_>) = threads.drain(..).partition(|h| h.is_finished());
        *threads = running;
        for handle in done {
            let _ = handle.join();
        }
    }

    /// Joins every replication thread (the node is halting: they have been
    /// told to stop).
    pub(crate) fn join_peer_threads(&self) {
        self.peers.lock().clear();
        let threads: Vec<_> = self.peer_threads.lock().drain(..).collect();
        for handle in threads {
            let _ = handle.join();
        }
    }

    /// Runs `f` on the core unless the node has failed, then routes whatever
    /// the core produced. The core's clock is brought up to date first, so
    /// whatever `f` does — a lease read, a vote request — is judged at the
    /// time it really happens, however late the timer thread runs.
    pub(crate) fn with_core<T>(&self, f: impl FnOnce(&mut RaftCore) -> T) -> Option<T> {
        if self.failed.load(Ordering::Acquire) {
            return None;
        }
        let mut core = self.core.lock();
        core.tick_to(self.ticks_now());
        let result = f(&mut core);
        self.dispatch(&mut core);
        Some(result)
    }

    /// Ticks since the core's tick 0, by the monotonic clock.
    fn ticks_now(&self) -> u64 {
        let elapsed = self.clock_start.elapsed().as_nanos();
        let ticks = elapsed / self.config.tick.as_nanos().max(1);
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// Routes the core's pending output. Called with the core locked, so
    /// outputs leave in the order the core produced them: committed entries
    /// and confirmed reads to the apply thread, wake-ups to the replication
    /// threads, and everything that must be written — with the messages that
    /// must wait for that write — to the writer.
    fn dispatch(&self, core: &mut RaftCore) {
        self.count_leader(core);
        let mut ready = core.take_ready();
        if let Some((index, term)) = ready.install.take() {
            // Before any entry committed after it.
            let _ = self.to_apply.send(ApplyWork::Restore(index, term));
        }
        if !ready.committed.is_empty() {
            let entries = std::mem::take(&mut ready.committed);
            (self.stats.entries_committed).fetch_add(entries.len() as u64, Ordering::Relaxed);
            let _ = self.to_apply.send(ApplyWork::Entries(entries));
        }
        if !ready.reads.is_empty() {
            // A read whose index is applied already is handed back to its
            // waiter to serve; the rest wait their turn behind the entries
            // on the apply thread's channel. (`last_applied` is stored only
            // once the state holds those entries.)
            let applied = self.last_applied.load(Ordering::Acquire);
            let mut later = Vec::new();
            let mut read_waiters = self.read_waiters.lock();
            for read in ready.reads.drain(..) {
                if read.index > applied {
                    later.push(read.id);
                } else if let Some((query, answer)) = read_waiters.remove(&read.id) {
                    answer.send(ReadAnswer::Serve(query));
                }
            }
            drop(read_waiters);
            if !later.is_empty() {
                let _ = self.to_apply.send(ApplyWork::Reads(later));
            }
        }
        if !ready.aborted_reads.is_empty() {
            let mut read_waiters = self.read_waiters.lock();
            for id in ready.aborted_reads.drain(..) {
                if let Some((_, answer)) = read_waiters.remove(&id) {
                    answer.send(ReadAnswer::Aborted);
                }
            }
        }
        if let Some((_, config)) = ready.config.take() {
            let ids: Vec<NodeId> = config.members.keys().copied().collect();
            *self.members.lock() = config;
            // New members are dialed at once (which also introduces this
            // node to them); departed ones are stopped by `prune_peers`.
            for id in ids {
                self.with_outbox(id, |_| {});
            }
        }
        for peer in std::mem::take(&mut ready.replicate) {
            self.with_outbox(peer, Outbox::wake);
        }
        if ready.has_storage_work() || !ready.messages.is_empty() {
            let _ = self.to_writer.send(ready);
        }
    }

    /// Counts a leader the first time this node knows one in a term (a
    /// leader re-elected in a later term counts again: it is a new
    /// election all the same). Called with the core locked, so the last
    /// counted term needs no more than a relaxed load and store.
    fn count_leader(&self, core: &RaftCore) {
        let term = core.current_term();
        if core.leader_id().is_some() && term > self.stats.leader_term.load(Ordering::Relaxed) {
            self.stats.leader_term.store(term, Ordering::Relaxed);
            self.stats.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// This node's removal from the cluster (by the entry at `index`) is
    /// durably recorded: it takes no further part, and whoever runs it is
    /// told ([`super::Node::wait_removed`]).
    pub(crate) fn mark_removed(&self, index: Index) {
        let mut removed = self.removed.lock();
        if removed.is_none() {
            info!(
                "node {}: removed from the cluster at index {index}",
                self.config.id
            );
            *removed = Some(index);
            self.removed_signal.notify_all();
        }
    }

    /// Stops the node after a storage failure: nothing it does from now on
    /// could be trusted to be durable (fail-stop).
    ///
    /// A failed write or fsync is never retried: after a failed fsync the
    /// kernel may have dropped the dirty pages and marked them clean, so a
    /// second fsync could succeed without the data being on disk. Only a
    /// restart, whose recovery reads back what the disk really holds, can
    /// go on. So the core is never stepped again, and the node stops
    /// answering its peers: its sockets are shut down and the listener
    /// closes at the next connection attempt (peers then see it as down,
    /// back off and log it once, instead of reconnecting to a node that
    /// hangs up on them — which logged two lines a tenth of a second on
    /// each side). Whoever runs the node is told
    /// ([`super::Node::wait_failed`]); `raftnode run` exits.
    pub(crate) fn fail(&self, e: StorageError) {
        let mut failure = self.failure.lock();
        if failure.is_some() {
            // Another thread failed first; its error is the one reported.
            return;
        }
        error!("node {}: storage failed, stopping: {e}", self.config.id);
        *failure = Some(Arc::new(e));
        self.failed.store(true, Ordering::Release);
        self.stopping.store(true, Ordering::Release);
        self.failure_signal.notify_all();
        drop(failure);
        self.sockets.shutdown_all();
        // Nothing that waits on this node will complete now: dropping the
        // answers tells every waiting client (with the failure, see
        // `Node::await_answer`). Under the core lock, so that a request
        // that got past the `failed` check in `with_core` has registered
        // its waiter before they are dropped. (Never called with the core
        // locked.)
        let _core = self.core.lock();
        self.waiters.lock().clear();
        self.read_waiters.lock().clear();
    }

    /// The storage failure that stopped the node, if one did.
    pub(crate) fn failure(&self) -> Option<Error> {
        self.storage_failure().map(Error::Storage)
    }

    /// Like [`Shared::failure`], the storage error itself.
    pub(crate) fn storage_failure(&self) -> Option<Arc<StorageError>> {
        self.failure.lock().clone()
    }

    /// Waits up to `timeout` for a storage failure.
    pub(crate) fn wait_failed(&self, timeout: Duration) -> Option<Arc<StorageError>> {
        let mut failure = self.failure.lock();
        if failure.is_none() {
            let _ = self.failure_signal.wait_for(&mut failure, timeout);
        }
        failure.clone()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}
