//! Snapshots and log compaction (§7): every rule about the log's compacted
//! prefix in one place.
//!
//! * **Taking one.** The node snapshots its state machine on its own, off
//!   the core lock, and reports the durable result with
//!   [`RaftCore::snapshot_taken`]. The log then drops its entries up to the
//!   snapshot's last included index *less* `snapshot_keep`, so a follower
//!   that is only slightly behind still gets entries rather than the whole
//!   state.
//! * **Sending one.** A leader whose follower needs an entry it no longer
//!   holds — `next_index` inside the compacted prefix — stops sending that
//!   follower AppendEntries and asks its replication thread to stream the
//!   latest snapshot ([`Outgoing::Snapshot`]). The follower answers
//!   [`SnapshotResult::Installed`] and is probed from there on, or
//!   [`SnapshotResult::Failed`] (or the connection drops) and the transfer
//!   starts over.
//! * **Receiving one** (Figure 13's receiver rules). A chunk from the leader
//!   of the current term resets the election timer like any AppendEntries.
//!   A snapshot that covers nothing beyond the commit index is stale (a
//!   duplicate, or overtaken by AppendEntries): applying it would roll the
//!   state back, so it is only acknowledged. Otherwise the node writes the
//!   chunks to a file and, once the file is whole, checked and durable,
//!   calls [`RaftCore::snapshot_received`]: if the log holds the snapshot's
//!   last included entry (same index and term) the entries after it are
//!   kept (rule 6), otherwise the whole log is discarded (rule 7); the state
//!   machine is restored from the snapshot before any later entry is applied
//!   ([`Ready::install`](crate::raft::Ready::install)).
//! * **Restarting** ([`RaftCore::restore`]) applies the same rules to what
//!   storage recovered, and re-applies committed entries without waiting
//!   for a leader.

use super::{RaftCore, Role};
use crate::raft::log::RaftLog;
use crate::raft::membership::{ConfigLog, Configuration};
use crate::raft::message::{
    Entry, Envelope, HardState, Index, Message, NodeId, Payload, SnapshotResult, Term,
};
use crate::raft::progress::ProgressState;
use crate::raft::CoreConfig;
use log::{debug, info, warn};

/// What a leader's replication thread should send a peer next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// An AppendEntries (entries, a heartbeat, or a commit index).
    Append(Envelope),
    /// The peer needs entries that are compacted: stream it the latest
    /// snapshot, stamping every chunk with `term` (the leader's).
    Snapshot { term: Term },
}

/// A chunk of a snapshot from the leader, for the node to write (the core
/// does no I/O); see [`RaftCore::take_snapshot_chunk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub from: NodeId,
    /// The leader's term when it sent the chunk.
    pub term: Term,
    pub last_included_index: Index,
    pub last_included_term: Term,
    pub offset: u64,
    pub total: u64,
    pub data: Vec<u8>,
    pub done: bool,
}

/// What a node recovered at start: its hard state, its latest snapshot's
/// last included index and term ((0, 0) without one), the configuration in
/// force there (the snapshot's, or the cluster's bootstrap configuration)
/// with the index of the entry that set it, the log storage holds, and the
/// commit index storage saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub hard_state: HardState,
    pub snapshot: (Index, Term),
    pub config: (Index, Configuration),
    pub entries: Vec<Entry>,
    pub commit_index: Index,
}

impl RaftCore {
    /// Builds a core from what a node recovered: the state machine has been
    /// restored from the snapshot, so application resumes after it.
    ///
    /// The log is reconciled with the snapshot as an install would do it
    /// (§7): entries that follow the snapshot's last included entry are
    /// kept; a log that does not contain that entry (a crash came between
    /// installing a snapshot and discarding the log) is discarded whole.
    /// Storage must return entries that reach the snapshot (the node checks
    /// this; a gap is corruption). The saved commit index lets the committed
    /// entries be applied at once (they are final, §5.4), without waiting to
    /// hear from a leader.
    pub fn restore(config: CoreConfig, restored: Restored) -> RaftCore {
        let (snapshot_index, snapshot_term) = restored.snapshot;
        let keep = config.snapshot_keep;
        let mut entries = restored.entries;
        let first = entries.first().map_or(snapshot_index + 1, |e| e.index);
        let log = if snapshot_index == 0 {
            RaftLog::new(entries)
        } else if first == snapshot_index + 1 {
            RaftLog::after(snapshot_index, snapshot_term, entries)
        } else {
            let at_snapshot = entries
                .get((snapshot_index.saturating_sub(first)) as usize)
                .filter(|e| e.index == snapshot_index)
                .map(|e| e.term);
            if at_snapshot == Some(snapshot_term) {
                // Keep what the tail allows, as compaction would have; the
                // new offset must be an entry whose term is known.
                let offset = snapshot_index.saturating_sub(keep).max(first);
                let offset_term = entries[(offset - first) as usize].term;
                entries.drain(..=(offset - first) as usize);
                RaftLog::after(offset, offset_term, entries)
            } else {
                warn!(
                    "log entries {first}..={} do not contain the snapshot's last included \
                     entry {snapshot_index} of term {snapshot_term}; discarding them (§7)",
                    entries.last().map_or(0, |e| e.index)
                );
                let mut log = RaftLog::after(snapshot_index, snapshot_term, Vec::new());
                // Storage still holds them: have it drop them first thing.
                log.restore(snapshot_index, snapshot_term);
                log
            }
        };
        let commit_index = restored
            .commit_index
            .min(log.last_index())
            .max(snapshot_index);
        // §4.1: the configuration in force is the latest in the log, which
        // may be later than the snapshot's.
        let (config_index, base) = restored.config;
        let mut configs = ConfigLog::new(config_index, base);
        for entry in log.slice(snapshot_index + 1, log.last_index()) {
            if let Payload::Config(c) = &entry.payload {
                configs.push(entry.index, c.clone());
            }
        }
        let mut core = RaftCore::with_log(config, restored.hard_state, log, configs);
        core.snapshot = restored.snapshot;
        core.commit_index = commit_index;
        core.commit_saved = commit_index;
        core.last_applied = snapshot_index;
        core
    }

    /// The last included index and term of the latest durable snapshot.
    pub fn snapshot(&self) -> (Index, Term) {
        self.snapshot
    }

    /// Snapshots installed from a leader since start.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
    }

    /// The node's own snapshot of the state up to `index` (whose entry had
    /// `term`) is durable: compact the log up to `snapshot_keep` entries
    /// before it, and have storage do the same. A snapshot older than one
    /// installed meanwhile is ignored.
    pub fn snapshot_taken(&mut self, index: Index, term: Term) {
        if index <= self.snapshot.0 {
            return;
        }
        self.snapshot = (index, term);
        let through = index.saturating_sub(self.config.snapshot_keep);
        // Only applied entries are ever in a snapshot, and they are held
        // (the log is compacted only here and at an install).
        if through > self.log.offset().0 && through <= self.log.last_index() {
            debug!(
                "node {}: compacting the log through {through} (snapshot at {index})",
                self.config.id
            );
            self.log.compact(through);
            self.configs.compact(through);
            self.ready.compact_through = Some(through);
        }
    }

    /// A follower's side of an InstallSnapshot chunk from the leader of its
    /// current term. A fresh chunk waits in the core for the node to write
    /// it; a stale snapshot is acknowledged at once.
    pub(super) fn handle_install_snapshot(&mut self, leader: NodeId, chunk: SnapshotChunk) {
        if !self.follow(leader) {
            return;
        }
        let index = chunk.last_included_index;
        if index <= self.commit_index {
            // Everything it holds is committed here already (and so part of
            // the log or the state): installing it could only go backwards.
            debug!(
                "node {}: ignoring a snapshot at {index}, at or below commit index {}",
                self.config.id, self.commit_index
            );
            self.send(
                leader,
                Message::InstallSnapshotResponse {
                    last_included_index: index,
                    result: SnapshotResult::Installed,
                },
            );
            return;
        }
        self.incoming_chunk = Some(chunk);
    }

    /// The chunk the last [`RaftCore::step`] accepted, for the node to
    /// write to its snapshot file.
    pub fn take_snapshot_chunk(&mut self) -> Option<SnapshotChunk> {
        self.incoming_chunk.take()
    }

    /// The node wrote a chunk: tell the leader how much it holds (which
    /// also shows the leader this follower is alive, for check-quorum).
    pub fn snapshot_chunk_written(&mut self, leader: NodeId, index: Index, bytes: u64) {
        self.send(
            leader,
            Message::InstallSnapshotResponse {
                last_included_index: index,
                result: SnapshotResult::Received { bytes },
            },
        );
    }

    /// The node could not take the snapshot (a chunk out of order, a file
    /// that failed its check): the leader must start over.
    pub fn snapshot_receive_failed(&mut self, leader: NodeId, index: Index) {
        self.send(
            leader,
            Message::InstallSnapshotResponse {
                last_included_index: index,
                result: SnapshotResult::Failed,
            },
        );
    }

    /// A snapshot from `leader` is whole, checked and durable: install it
    /// (§7, receiver rules 6–8), with `config`, the configuration in force
    /// at its last included index and the index that set it. The answer to
    /// the leader goes out once storage has carried out the log change it
    /// implies.
    pub fn snapshot_received(
        &mut self,
        leader: NodeId,
        index: Index,
        term: Term,
        config: (Index, Configuration),
    ) {
        let installed = Message::InstallSnapshotResponse {
            last_included_index: index,
            result: SnapshotResult::Installed,
        };
        if index <= self.commit_index {
            // Overtaken while it was being written.
            self.send(leader, installed);
            return;
        }
        if self.log.term_at(index) == Some(term) {
            // Rule 6: the log holds the snapshot's last entry, so the entries
            // after it match the leader's too; keep them.
            self.log.compact(index);
            self.ready.compact_through = Some(index);
        } else {
            // Rule 7: discard the entire log.
            self.log.restore(index, term);
        }
        // The snapshot's configuration, then any later ones the kept
        // entries set (§4.1).
        let before = (self.configs.latest_index(), self.configs.latest().clone());
        self.configs.reset(config.0, config.1);
        for entry in self.log.slice(index + 1, self.log.last_index()) {
            if let Payload::Config(c) = &entry.payload {
                self.configs.push(entry.index, c.clone());
            }
        }
        if (self.configs.latest_index(), self.configs.latest()) != (before.0, &before.1) {
            self.config_changed(None);
        }
        info!(
            "node {}: installed snapshot at index {index}, term {term} from {leader}",
            self.config.id
        );
        self.snapshot = (index, term);
        self.snapshots_installed += 1;
        // Rule 8: the state machine is replaced by the snapshot's before any
        // entry after it is applied.
        self.commit_index = index;
        self.last_applied = index;
        self.ready.install = Some((index, term));
        self.send(leader, installed);
    }

    /// Whether this node, as leader in `term`, still wants `peer` to get
    /// the snapshot being streamed to it; the stream stops when not.
    pub fn sending_snapshot_to(&self, peer: NodeId, term: Term) -> bool {
        term == self.current_term
            && self
                .progress(peer)
                .is_some_and(|pr| pr.state() == ProgressState::Snapshot)
    }

    /// The replication thread could not send the snapshot (none on disk, or
    /// reading it failed): probe again, which asks for it again.
    pub fn snapshot_send_failed(&mut self, peer: NodeId) {
        self.peer_unreachable(peer);
    }

    pub(super) fn handle_install_snapshot_response(
        &mut self,
        from: NodeId,
        index: Index,
        result: SnapshotResult,
    ) {
        let last_index = self.log.last_index();
        let Role::Leader { progress, .. } = &mut self.role else {
            return;
        };
        let Some(pr) = progress.get_mut(&from) else {
            return;
        };
        match result {
            SnapshotResult::Received { bytes } => {
                pr.snapshot_answered();
                debug!(
                    "node {}: {from} holds {bytes} bytes of the snapshot at {index}",
                    self.config.id
                );
            }
            SnapshotResult::Installed if index <= last_index => {
                info!(
                    "node {}: {from} installed the snapshot at {index}",
                    self.config.id
                );
                pr.snapshot_installed(index);
                self.maybe_commit();
            }
            SnapshotResult::Installed => warn!(
                "node {}: {from} claims a snapshot at {index}, past our last index {last_index}; ignored",
                self.config.id
            ),
            SnapshotResult::Failed => {
                if pr.state() == ProgressState::Snapshot {
                    warn!(
                        "node {}: {from} could not take the snapshot at {index}; starting over",
                        self.config.id
                    );
                    pr.become_probe();
                }
            }
        }
    }
}
