//! A running Raft node: the core, its storage and its state machine, driven by
//! OS threads.
//!
//! # Threads
//!
//! * **timer** — ticks the core every [`Config::tick`].
//! * **writer** — makes the core's output durable. It takes every pending
//!   [`Ready`] at once, writes the hard state (temp file, fsync, rename), appends
//!   all their entries and fsyncs the log once (group commit), and only then
//!   hands their messages to the peer threads — so no vote and no
//!   acknowledgement ever leaves before what it promises is on disk. Finally it
//!   tells the core how far the log is durable, which is when a leader counts
//!   itself towards a majority.
//! * **apply** — applies committed entries to the key-value map in log order
//!   and answers the clients waiting on them.
//! * **one per peer** ([`crate::node::peer`]) — owns the outbound connection to that
//!   peer: sends the messages the writer released and, on a leader, pulls
//!   AppendEntries from the core whenever it is woken.
//! * **listener**, plus **one per inbound connection** ([`crate::node::listener`]) —
//!   reads messages from peers and steps them into the core.
//!
//! They share one [`parking_lot::Mutex`] around the core and talk through
//! crossbeam channels. Whoever steps the core calls [`Shared::dispatch`] while
//! still holding the lock, which routes the core's output in the order it was
//! produced. No thread does I/O while holding the core lock.

pub mod config;
pub mod error;
mod listener;
mod peer;
pub mod sockets;
pub mod wire;

use crate::kv::{Command, Kv, Outcome};
use crate::node::config::Config;
use crate::node::error::{Error, StartError};
use crate::raft::{RaftCore, Ready, RoleKind};

use crate::node::peer::PeerHandle;
use crate::node::sockets::Sockets;
use crate::raft::message::{Entry, Index, NodeId, Payload, Term};
use crate::storage::Storage;
use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};
use log::{error, info};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

/// A client waiting for its entry (index, term) to be applied. It receives the
/// outcome, or `None` if another entry was committed at that index.
type Waiters = BTreeMap<(Index, Term), Sender<Option<Outcome>>>;

/// A client waiting for a linearizable read: the key, and where the value (or
/// `None` if this node stopped leading first) goes.
type ReadWaiters = HashMap<u64, (Vec<u8>, Sender<Option<Option<Vec<u8>>>>)>;

/// Work for the apply thread, in the order the core released it.
enum ApplyWork {
    Entries(Vec<Entry>),
    /// Reads confirmed by the core; every entry they must observe was sent
    /// before them on the same channel.
    Reads(Vec<u64>),
}

/// State shared by all of a node's threads.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) core: Mutex<RaftCore>,
    kv: Mutex<Kv>,
    waiters: Mutex<Waiters>,
    read_waiters: Mutex<ReadWaiters>,
    next_read_id: AtomicU64,
    reads_served: AtomicU64,
    last_applied: AtomicU64,
    to_writer: Sender<Ready>,
    to_apply: Sender<ApplyWork>,
    pub(crate) peers: BTreeMap<NodeId, PeerHandle>,
    /// Set once storage has failed: the node stops taking part (fail-stop).
    failure: Mutex<Option<String>>,
    failed: AtomicBool,
    pub(crate) stopping: AtomicBool,
    /// Set by [`Node::crash`]: the writer abandons unsynced writes.
    crashing: AtomicBool,
    /// Every open peer socket, so that halting can unblock their threads.
    pub(crate) sockets: Sockets,
    /// Peers' client addresses, learnt from their handshakes.
    pub(crate) client_addrs: Mutex<HashMap<NodeId, String>>,
}

impl Shared {
    /// Runs `f` on the core unless the node has failed, then routes whatever
    /// the core produced.
    pub(crate) fn with_core<T>(&self, f: impl FnOnce(&mut RaftCore) -> T) -> Option<T> {
        if self.failed.load(Ordering::Acquire) {
            return None;
        }
        let mut core = self.core.lock();
        let result = f(&mut core);
        self.dispatch(&mut core);
        Some(result)
    }

    /// Routes the core's pending output. Called with the core locked, so
    /// outputs leave in the order the core produced them.
    fn dispatch(&self, core: &mut RaftCore) {
        let mut ready = core.take_ready();
        if !ready.committed.is_empty() {
            let _ = self
                .to_apply
                .send(ApplyWork::Entries(std::mem::take(&mut ready.committed)));
        }
        if !ready.reads.is_empty() {
            let ids = ready.reads.drain(..).map(|r| r.id).collect();
            let _ = self.to_apply.send(ApplyWork::Reads(ids));
        }
        if !ready.aborted_reads.is_empty() {
            let mut read_waiters = self.read_waiters.lock();
            for id in ready.aborted_reads.drain(..) {
                if let Some((_, tx)) = read_waiters.remove(&id) {
                    let _ = tx.send(None);
                }
            }
        }
        for peer in std::mem::take(&mut ready.replicate) {
            if let Some(handle) = self.peers.get(&peer) {
                handle.wake();
            }
        }
        if ready.has_storage_work() || !ready.messages.is_empty() {
            let _ = self.to_writer.send(ready);
        }
    }

    fn fail(&self, reason: String) {
        error!(
            "node {}: storage failed, stopping: {reason}",
            self.config.id
        );
        *self.failure.lock() = Some(reason);
        self.failed.store(true, Ordering::Release);
        // Nothing that waits on this node will complete now.
        self.waiters.lock().clear();
        self.read_waiters.lock().clear();
    }

    fn failure(&self) -> Option<Error> {
        self.failure.lock().clone().map(Error::Storage)
    }
}

/// Counters a node keeps for INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metrics {
    /// Linearizable reads answered with a value.
    pub reads_served: u64,
    /// Heartbeat rounds started to confirm leadership for reads.
    pub read_rounds: u64,
    /// Reads served on the leader's lease without a round.
    pub lease_reads: u64,
    /// Retried writes answered from their session instead of applied again.
    pub duplicates_suppressed: u64,
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
    pub members: Vec<NodeId>,
}

/// A running node. Dropping it halts it.
pub struct Node {
    shared: Arc<Shared>,
    raft_addr: SocketAddr,
    shutdown: Mutex<Option<Sender<()>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    inbound: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Node {
    /// Opens the data dir, binds `config.raft_addr` and starts the threads.
    pub fn start(config: Config) -> Result<Node, StartError> {
        let listener = TcpListener::bind(&config.raft_addr).map_err(|source| StartError::Bind {
            addr: config.raft_addr.clone(),
            source,
        })?;
        Node::start_with_listener(config, listener)
    }

    /// Like [`Node::start`] with an already bound listener (tests bind port 0
    /// for every node first, to learn all addresses before any node starts).
    pub fn start_with_listener(config: Config, listener: TcpListener) -> Result<Node, StartError> {
        let core_config = config.core_config().map_err(StartError::Config)?;
        let raft_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.raft_addr.clone(),
            source,
        })?;
        let (storage, recovered) = Storage::open(&config.data_dir, config.id, &config.cluster_id)?;
        info!(
            "node {}: recovered term {}, vote {:?}, {} log entries from {}",
            config.id,
            recovered.hard_state.current_term,
            recovered.hard_state.voted_for,
            recovered.entries.len(),
            config.data_dir.display()
        );
        let core = RaftCore::new(core_config, recovered.hard_state, recovered.entries);

        let (shutdown_tx, shutdown_rx) = bounded::<()>(0);
        let (to_writer, writer_rx) = unbounded();
        let (to_apply, apply_rx) = unbounded();
        let mut peer_inputs = Vec::new();
        let mut peers = BTreeMap::new();
        for (&id, addr) in &config.peers {
            let (handle, inputs) = PeerHandle::new(id, addr.clone());
            peers.insert(id, handle);
            peer_inputs.push(inputs);
        }
        let shared = Arc::new(Shared {
            config,
            core: Mutex::new(core),
            kv: Mutex::new(Kv::new()),
            waiters: Mutex::new(BTreeMap::new()),
            read_waiters: Mutex::new(HashMap::new()),
            next_read_id: AtomicU64::new(1),
            reads_served: AtomicU64::new(0),
            last_applied: AtomicU64::new(0),
            to_writer,
            to_apply,
            peers,
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            crashing: AtomicBool::new(false),
            sockets: Sockets::default(),
            client_addrs: Mutex::new(HashMap::new()),
        });
        let id = shared.config.id;
        let inbound = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(format!("raft-{id}-{name}"))
                .spawn(f)
                .expect("spawning a thread")
        };
        {
            let (s, rx) = (shared.clone(), shutdown_rx.clone());
            threads.push(spawn("timer", Box::new(move || run_timer(s, rx))));
        }
        {
            let (s, rx) = (shared.clone(), shutdown_rx.clone());
            threads.push(spawn(
                "writer",
                Box::new(move || run_writer(s, storage, writer_rx, rx)),
            ));
        }
        {
            let (s, rx) = (shared.clone(), shutdown_rx.clone());
            threads.push(spawn("apply", Box::new(move || run_apply(s, apply_rx, rx))));
        }
        for inputs in peer_inputs {
            let (s, rx) = (shared.clone(), shutdown_rx.clone());
            let name = format!("peer-{}", inputs.peer);
            threads.push(spawn(&name, Box::new(move || peer::run(s, inputs, rx))));
        }
        {
            let (s, handles) = (shared.clone(), inbound.clone());
            threads.push(spawn(
                "listener",
                Box::new(move || listener::run(s, listener, handles)),
            ));
        }
        Ok(Node {
            shared,
            raft_addr,
            shutdown: Mutex::new(Some(shutdown_tx)),
            threads: Mutex::new(threads),
            inbound,
        })
    }

    pub fn id(&self) -> NodeId {
        self.shared.config.id
    }

    /// The address peers reach this node at (useful when bound to port 0).
    pub fn raft_addr(&self) -> SocketAddr {
        self.raft_addr
    }

    /// Sets `key` to `value`; returns once the write is committed and applied.
    pub fn set(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<(), Error> {
        self.write(Command::Set {
            key: key.into(),
            value: value.into(),
        })
        .map(|_| ())
    }

    /// Deletes `key`; returns whether it existed.
    pub fn delete(&self, key: impl Into<Vec<u8>>) -> Result<bool, Error> {
        self.delete_many(vec![key.into()]).map(|n| n > 0)
    }

    /// Deletes every key in one atomic write; returns how many existed.
    pub fn delete_many(&self, keys: Vec<Vec<u8>>) -> Result<usize, Error> {
        match self.write(Command::Delete { keys })? {
            Outcome::Deleted(n) => Ok(n),
            other => unreachable!("delete produced {other:?}"),
        }
    }

    /// Sets `key` to `new` if its value is `expected`; returns whether it did.
    /// An absent key never matches.
    pub fn cas(
        &self,
        key: impl Into<Vec<u8>>,
        expected: impl Into<Vec<u8>>,
        new: impl Into<Vec<u8>>,
    ) -> Result<bool, Error> {
        match self.write(Command::Cas {
            key: key.into(),
            expected: expected.into(),
            new: new.into(),
        })? {
            Outcome::Swapped(swapped) => Ok(swapped),
            other => unreachable!("cas produced {other:?}"),
        }
    }

    /// Reads `key` from this node's state machine as it is now.
    ///
    /// This is a *local* read: on a follower, or on a leader that has been
    /// deposed without knowing it, it may miss recent writes. Use
    /// [`Node::read`] for a linearizable read.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.shared.kv.lock().get(key).cloned()
    }

    /// Reads `key` linearizably: the value reflects every write acknowledged
    /// before this call began (ReadIndex, §6.4 of the Raft dissertation — the
    /// leader confirms it still leads with a heartbeat round, then reads once
    /// it has applied up to the commit index it saw). Only the leader serves
    /// it; the read writes nothing to the log or the disk.
    pub fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if let Some(e) = self.shared.failure() {
            return Err(e);
        }
        let id = self.shared.next_read_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = bounded(1);
        let started = self.shared.with_core(|core| {
            core.read_index(id)
                .map_err(|e| Error::NotLeader { leader: e.leader })?;
            // Registered under the core lock: before the read can be released.
            self.shared
                .read_waiters
                .lock()
                .insert(id, (key.to_vec(), tx));
            Ok(())
        });
        match started {
            None => return Err(self.shared.failure().unwrap_or(Error::ShutDown)),
            Some(result) => result?,
        }
        self.await_answer(rx, || {
            self.shared.read_waiters.lock().remove(&id);
        })
    }

    /// Where node `id` serves clients, if known: this node's own from its
    /// configuration, a peer's from its handshake.
    pub fn client_addr_of(&self, id: NodeId) -> Option<String> {
        if id == self.id() {
            return self.shared.config.client_addr.clone();
        }
        self.shared.client_addrs.lock().get(&id).cloned()
    }

    /// The leader of the current term, as far as this node knows.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.shared.core.lock().leader_id()
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub fn status(&self) -> Status {
        let core = self.shared.core.lock();
        self.status_of(&core)
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
        }
    }

    /// Adds one to the integer at `key` (absent counts as 0); returns the new
    /// value, or `Outcome::Refused` if the value is not an integer.
    pub fn incr(&self, key: impl Into<Vec<u8>>) -> Result<Outcome, Error> {
        self.write(Command::Incr { key: key.into() })
    }

    /// Appends `value` to the value at `key`; returns the new length.
    pub fn append(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<Outcome, Error> {
        self.write(Command::Append {
            key: key.into(),
            value: value.into(),
        })
    }

    /// Counters for INFO.
    pub fn metrics(&self) -> Metrics {
        let (read_rounds, lease_reads) = {
            let core = self.shared.core.lock();
            (core.read_rounds(), core.lease_reads_served())
        };
        Metrics {
            reads_served: self.shared.reads_served.load(Ordering::Relaxed),
            read_rounds,
            lease_reads,
            duplicates_suppressed: self.shared.kv.lock().duplicates_suppressed(),
        }
    }

    /// Proposes any write (wrapped in [`Command::Session`] for exactly-once
    /// application) and waits until it is applied.
    pub fn write(&self, command: Command) -> Result<Outcome, Error> {
        if let Some(e) = self.shared.failure() {
            return Err(e);
        }
        let data = command
            .encode()
            .map_err(|e| Error::Storage(format!("cannot encode command: {e}")))?;
        let limit = self.shared.config.max_command_bytes();
        if data.len() > limit {
            return Err(Error::CommandTooLarge {
                len: data.len(),
                limit,
            });
        }
        let (tx, rx) = bounded(1);
        let proposed = self.shared.with_core(|core| {
            let (index, term) = core
                .propose(data)
                .map_err(|e| Error::NotLeader { leader: e.leader })?;
            // Registered under the core lock, so it is in place before the
            // entry can possibly be applied.
            self.shared.waiters.lock().insert((index, term), tx);
            Ok((index, term))
        });
        let key = match proposed {
            None => return Err(self.shared.failure().unwrap_or(Error::ShutDown)),
            Some(result) => result?,
        };
        self.await_answer(rx, || {
            self.shared.waiters.lock().remove(&key);
        })
    }

    /// Waits for the apply thread's answer to a write or read: `None` means
    /// it definitely did not happen here (another entry took its place, or
    /// leadership was lost); no answer in time is a timeout, whose outcome is
    /// unknown.
    fn await_answer<T>(&self, rx: Receiver<Option<T>>, forget: impl FnOnce()) -> Result<T, Error> {
        match rx.recv_timeout(self.shared.config.proposal_timeout) {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => Err(Error::NotLeader {
                leader: self.shared.core.lock().leader_id(),
            }),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                forget();
                Err(Error::Timeout)
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                Err(self.shared.failure().unwrap_or(Error::ShutDown))
            }
        }
    }

    /// Stops every thread of this node, closes its sockets and files, and
    /// waits for all of them. Writes in flight get [`Error::ShutDown`]. Nothing
    /// is flushed that was not already durable. Idempotent.
    pub fn halt(&self) {
        self.stop();
    }

    /// For fault-injection tests: stops the node as a power failure would.
    /// Like [`Node::halt`], but the writer abandons any batch it has not
    /// synced yet and the log loses every write since its last fsync.
    pub fn crash(&self) {
        self.shared.crashing.store(true, Ordering::Release);
        self.stop();
    }

    /// For fault-injection tests: freezes the node, as SIGSTOP would, until
    /// the guard is dropped. Every thread that needs the core waits; sockets
    /// stay open and buffer what peers send. Do not call methods of this node
    /// from the pausing thread while paused (they would wait for it).
    pub fn pause(&self) -> impl Drop + '_ {
        self.shared.core.lock()
    }

    /// Like [`Node::status`], but `None` instead of waiting while the node is
    /// paused or busy.
    pub fn try_status(&self) -> Option<Status> {
        let core = self
            .shared
            .core
            .try_lock_for(std::time::Duration::from_millis(1))?;
        Some(self.status_of(&core))
    }

    /// A copy of this node's log, for tests that compare logs.
    pub fn log_entries(&self) -> Vec<Entry> {
        let core = self.shared.core.lock();
        core.log().slice(1, core.log().last_index()).to_vec()
    }

    fn stop(&self) {
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
        // The listener has exited, so no new inbound threads can appear.
        self.shared.sockets.shutdown_all();
        for handle in self.inbound.lock().drain(..) {
            let _ = handle.join();
        }
        self.shared.waiters.lock().clear();
        self.shared.read_waiters.lock().clear();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_timer(shared: Arc<Shared>, shutdown: Receiver<()>) {
    let ticker = crossbeam_channel::tick(shared.config.tick);
    loop {
        select! {
            recv(ticker) -> _ => {
                shared.with_core(|core| core.tick());
            }
            recv(shutdown) -> _ => return,
        }
    }
}

/// The writer thread: see the module docs.
fn run_writer(
    shared: Arc<Shared>,
    mut storage: Storage,
    jobs: Receiver<Ready>,
    shutdown: Receiver<()>,
) {
    let crash = |storage: Storage| {
        if shared.crashing.load(Ordering::Acquire) {
            storage.simulate_power_loss();
        }
    };
    loop {
        let first = select! {
            recv(jobs) -> job => match job { Ok(job) => job, Err(_) => return crash(storage) },
            recv(shutdown) -> _ => return crash(storage),
        };
        let mut batch = vec![first];
        batch.extend(jobs.try_iter());
        match persist(&mut storage, &batch, &shared.crashing) {
            Err(PersistError::Crashed) => return crash(storage),
            Ok(last_written) => {
                for ready in &mut batch {
                    for message in ready.messages.drain(..) {
                        if let Some(handle) = shared.peers.get(&message.to) {
                            handle.send(message);
                        }
                    }
                }
                if let Some((index, term)) = last_written {
                    shared.with_core(|core| core.persisted(index, term));
                }
            }
            Err(PersistError::Storage(e)) => {
                shared.fail(e.to_string());
                return;
            }
        }
    }
}

enum PersistError {
    Storage(crate::storage::StorageError),
    /// [`Node::crash`] struck between the writes and their fsync.
    Crashed,
}

impl From<crate::storage::StorageError> for PersistError {
    fn from(e: crate::storage::StorageError) -> PersistError {
        PersistError::Storage(e)
    }
}

/// Writes a batch of readies with one log fsync. The hard state goes first:
/// it is monotonic (terms only grow, a vote is cast once per term), so the
/// newest one covers every earlier ready, and it must never lag the log.
fn persist(
    storage: &mut Storage,
    batch: &[Ready],
    crashing: &AtomicBool,
) -> Result<Option<(Index, Term)>, PersistError> {
    if let Some(hard_state) = batch.iter().rev().find_map(|r| r.hard_state) {
        storage.save_hard_state(&hard_state)?;
    }
    let mut log_changed = false;
    let mut last_written = None;
    for ready in batch {
        if let Some(last_kept) = ready.truncate_after {
            storage.truncate_after(last_kept)?;
            log_changed = true;
        }
        if let Some(last) = ready.entries.last() {
            storage.append(&ready.entries)?;
            log_changed = true;
            last_written = Some((last.index, last.term));
        }
    }
    if crashing.load(Ordering::Acquire) {
        return Err(PersistError::Crashed);
    }
    if log_changed {
        storage.sync()?;
    }
    Ok(last_written)
}

/// The apply thread: applies committed entries in order, answers the clients
/// waiting on them, and serves confirmed reads.
fn run_apply(shared: Arc<Shared>, work: Receiver<ApplyWork>, shutdown: Receiver<()>) {
    loop {
        let work = select! {
            recv(work) -> w => match w { Ok(w) => w, Err(_) => return },
            recv(shutdown) -> _ => return,
        };
        match work {
            ApplyWork::Entries(entries) => apply_entries(&shared, &entries),
            ApplyWork::Reads(ids) => {
                let kv = shared.kv.lock();
                let mut read_waiters = shared.read_waiters.lock();
                for id in ids {
                    if let Some((key, tx)) = read_waiters.remove(&id) {
                        if tx.send(Some(kv.get(&key).cloned())).is_ok() {
                            shared.reads_served.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }
}

fn apply_entries(shared: &Shared, entries: &[Entry]) {
    let mut outcomes = Vec::with_capacity(entries.len());
    {
        let mut kv = shared.kv.lock();
        for entry in entries {
            let outcome = match &entry.payload {
                Payload::Noop => None,
                Payload::Command(bytes) => match Command::decode(bytes) {
                    Ok(command) => Some(kv.apply(entry.index, command)),
                    Err(e) => {
                        error!(
                            "node {}: entry {} holds an undecodable command ({e}); skipped",
                            shared.config.id, entry.index
                        );
                        None
                    }
                },
            };
            outcomes.push((entry.index, entry.term, outcome));
        }
    }
    if let Some(last) = entries.last() {
        shared.last_applied.store(last.index, Ordering::Release);
    }
    let mut waiters = shared.waiters.lock();
    for (index, term, outcome) in outcomes {
        // Whoever waits on this index with another term lost: their entry
        // was replaced before it could commit.
        while let Some(key) = waiters
            .range((index, 0)..=(index, Term::MAX))
            .next()
            .map(|(&k, _)| k)
        {
            if let Some(tx) = waiters.remove(&key) {
                let _ = tx.send(if key.1 == term { outcome.clone() } else { None });
            }
        }
    }
}
