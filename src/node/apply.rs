//! The apply thread: feeds committed entries to the state machine in log
//! order, answers the clients waiting on them, and serves confirmed reads.
//!
//! Entries and confirmed reads arrive on one channel in the order the core
//! released them, so a read is always served after every entry it must see.
//! So do installed snapshots, which replace the state before any entry that
//! follows them is applied.
//!
//! It is also where snapshots begin: after `snapshot_entries` applied
//! entries and as much log as the last snapshot's size (see
//! [`Applier::snapshot_due`]), or on request (BGSAVE), it captures the state between two
//! entries — a cheap copy-on-write capture — and hands it to the snapshot
//! thread to write out (see [`super::snapshot`]).

use super::shared::{ApplyWork, ReadAnswer, Shared};
use super::snapshot::{self, SnapshotJob};
use super::state_machine::StateMachine;
use crate::raft::membership::Configuration;
use crate::raft::message::{Entry, Index, Payload, Term};
use crate::storage::{SnapshotMeta, StorageError};
use crossbeam_channel::{select, Receiver, Sender};
use log::info;
use parking_lot::RwLock;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The apply thread's own state.
pub(crate) struct Applier<S> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) state: Arc<RwLock<S>>,
    pub(crate) snapshots: Sender<SnapshotJob>,
    /// The last entry applied (or the snapshot restored), and its term.
    pub(crate) applied: (Index, Term),
    /// The configuration in force at `applied`, and the index that set it:
    /// what a snapshot taken now records (§7).
    pub(crate) config: (Index, Configuration),
    /// The last included index of the latest snapshot taken or installed.
    pub(crate) snapshot_index: Index,
    /// About how many bytes of log were applied since then.
    pub(crate) log_bytes_since: u64,
}

/// A state whose snapshots are smaller than this is snapshotted every
/// `snapshot_entries` entries, whatever their size.
const SMALL_SNAPSHOT: u64 = 4 * 1024 * 1024;
/// However large the state, a snapshot is due once this much log has been
/// applied since the last one (and `snapshot_entries` entries): what bounds
/// the log kept in memory and on disk.
const MAX_LOG_BYTES_BETWEEN_SNAPSHOTS: u64 = 256 * 1024 * 1024;

pub(crate) fn run<S: StateMachine>(
    mut applier: Applier<S>,
    work: Receiver<ApplyWork>,
    shutdown: Receiver<()>,
) {
    loop {
        let work = select! {
            recv(work) -> w => match w { Ok(w) => w, Err(_) => return },
            recv(shutdown) -> _ => return,
        };
        match work {
            ApplyWork::Entries(entries) => {
                applier.apply_entries(&entries);
                if applier.snapshot_due() {
                    applier.start_snapshot();
                }
            }
            ApplyWork::Reads(ids) => serve_reads(&applier.shared, &applier.state, ids),
            ApplyWork::Restore(index, term) => {
                if let Err(e) = applier.restore(index, term) {
                    // The file was checked when it arrived, so this is the
                    // disk failing under us: stop, as for any storage error.
                    applier.shared.fail(e);
                    return;
                }
            }
            ApplyWork::SnapshotNow => applier.start_snapshot(),
        }
    }
}

impl<S: StateMachine> Applier<S> {
    /// Whether to take a snapshot now: at least `snapshot_entries` entries
    /// since the last one, and, once the state is not small, at least as
    /// many bytes of log as the last snapshot had. A snapshot costs about
    /// its own size to write (and a copy of every shard written meanwhile),
    /// so taking one each time the log has grown by as much keeps that cost
    /// proportional to the writes, not to the state (§5.1 of the Raft
    /// dissertation, on when to snapshot: compare the log's size with the
    /// snapshot's). With 100,000 keys of 100 bytes this spares a snapshot
    /// every 10,000 writes, about a fifth of the servers' CPU under load.
    fn snapshot_due(&self) -> bool {
        let every = self.shared.config.snapshot_entries;
        if every == 0 || self.applied.0 < self.snapshot_index.saturating_add(every) {
            return false;
        }
        let last = self.shared.snapshots.latest_bytes();
        last < SMALL_SNAPSHOT
            || self.log_bytes_since >= last
            || self.log_bytes_since >= MAX_LOG_BYTES_BETWEEN_SNAPSHOTS
    }

    /// Captures the state as of the last applied entry and hands it to the
    /// snapshot thread, unless a snapshot is already being written.
    fn start_snapshot(&mut self) {
        let stats = &self.shared.snapshot_stats;
        if self.applied.0 == 0 || stats.in_progress.swap(true, Ordering::AcqRel) {
            return;
        }
        let meta = SnapshotMeta {
            last_included_index: self.applied.0,
            last_included_term: self.applied.1,
            config_index: self.config.0,
            config: self.config.1.clone(),
        };
        let job = SnapshotJob {
            meta,
            state: self.state.read().snapshot(),
        };
        self.snapshot_index = self.applied.0;
        self.log_bytes_since = 0;
        if self.snapshots.send(job).is_err() {
            stats.in_progress.store(false, Ordering::Release);
        }
    }

    /// Replaces the state with the latest snapshot, which is at least as
    /// new as the one installed at `index` (a newer one may have replaced
    /// it since).
    fn restore(&mut self, index: Index, term: Term) -> Result<(), StorageError> {
        let Some(info) = self.shared.snapshots.latest() else {
            return Err(StorageError::Missing {
                path: self.shared.snapshots.dir().to_path_buf(),
            });
        };
        let meta = snapshot::restore_from(&info, &mut *self.state.write())?;
        self.applied = (meta.last_included_index, meta.last_included_term);
        self.config = (meta.config_index, meta.config);
        self.snapshot_index = self.snapshot_index.max(self.applied.0);
        self.log_bytes_since = 0;
        self.shared
            .last_applied
            .store(self.applied.0, Ordering::Release);
        info!(
            "node {}: state restored from the snapshot at {} (installed at {index}, term {term})",
            self.shared.config.id, self.applied.0
        );
        Ok(())
    }

    fn apply_entries(&mut self, entries: &[Entry]) {
        // Entries a restored snapshot already covers were handed out before
        // it was installed.
        let skip = entries
            .iter()
            .take_while(|e| e.index <= self.applied.0)
            .count();
        let entries = &entries[skip..];
        let bytes: usize = entries.iter().map(Entry::size).sum();
        self.log_bytes_since = self.log_bytes_since.saturating_add(bytes as u64);
        if let Some(last) = entries.last() {
            self.applied = (last.index, last.term);
        }
        if let Some((index, config)) = entries.iter().rev().find_map(|e| match &e.payload {
            Payload::Config(c) => Some((e.index, c)),
            _ => None,
        }) {
            self.config = (index, config.clone());
        }
        apply_entries(&self.shared, &self.state, entries);
    }
}

fn apply_entries<S: StateMachine>(shared: &Shared, state: &RwLock<S>, entries: &[Entry]) {
    let mut replies = Vec::with_capacity(entries.len());
    {
        let mut state = state.write();
        for entry in entries {
            let reply = match &entry.payload {
                // A new leader's no-op (§8): nothing for the state machine.
                Payload::Noop => None,
                // A configuration change: its proposer waits for this empty
                // reply, which says the change is committed.
                Payload::Config(_) => Some(Vec::new()),
                Payload::Command(command) => Some(state.apply(entry.index, command)),
            };
            replies.push((entry.index, entry.term, reply));
        }
    }
    if let Some(last) = entries.last() {
        shared.last_applied.store(last.index, Ordering::Release);
    }
    let mut waiters = shared.waiters.lock();
    for (index, term, mut reply) in replies {
        // Whoever waits on this index with another term lost: their entry
        // was replaced before it could commit. At most one waiter holds
        // (index, term), so the reply moves to it.
        while let Some(key) = waiters
            .range((index, 0)..=(index, Term::MAX))
            .next()
            .map(|(&k, _)| k)
        {
            if let Some(answer) = waiters.remove(&key) {
                let _ = answer.send(if key.1 == term { reply.take() } else { None });
            }
        }
    }
}

fn serve_reads<S: StateMachine>(shared: &Shared, state: &RwLock<S>, ids: Vec<u64>) {
    let state = state.read();
    let mut read_waiters = shared.read_waiters.lock();
    for id in ids {
        if let Some((query, answer)) = read_waiters.remove(&id) {
            if answer.send(ReadAnswer::Value(state.query(&query))) {
                shared.reads_served.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
