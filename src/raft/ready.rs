//! The core's hand-off to the node: everything one batch of inputs asks the
//! node to do, in the order it must be done.

use super::membership::Configuration;
use super::message::{Entry, Envelope, HardState, Index, NodeId, Term};

/// What the node must do after feeding the core some input. The order matters:
/// first make `hard_state`, `truncate_after` and `entries` durable, then send
/// `messages` (a vote or an acknowledgement must never leave before the state
/// it promises is on disk), then report the write with
/// [`RaftCore::persisted`](super::RaftCore::persisted). `committed` may be
/// applied at once.
#[derive(Debug, Default, PartialEq)]
pub struct Ready {
    /// New term and vote, to persist before sending any message.
    pub hard_state: Option<HardState>,
    /// Drop the whole stored log first: an installed snapshot replaced it.
    pub reset_log: bool,
    /// Drop every stored entry after this index before appending `entries`.
    pub truncate_after: Option<Index>,
    /// New log entries to persist, in order.
    pub entries: Vec<Entry>,
    /// The commit index has reached this: save it with the log (no sync of
    /// its own is needed; losing it in a crash only means relearning it).
    pub commit_index: Option<Index>,
    /// Stored entries up to here may be dropped: a durable snapshot covers
    /// them (§7).
    pub compact_through: Option<Index>,
    /// A snapshot with this last included index and term was installed
    /// (its file is durable): the state machine must be restored from it
    /// before applying any entry in `committed`, which all follow it.
    pub install: Option<(Index, Term)>,
    /// The configuration in force changed (an entry was appended, or
    /// truncated away, or a snapshot installed): the index that set it and
    /// the configuration. The node dials the new members and stops dialing
    /// the ones that left.
    pub config: Option<(Index, Configuration)>,
    /// This node was removed from the cluster by the committed entry at this
    /// index: it must stop (and never come back on this data dir).
    pub removed: Option<Index>,
    /// Messages to send once the above is durable.
    pub messages: Vec<Envelope>,
    /// Entries newly known to be committed, in index order, to apply.
    pub committed: Vec<Entry>,
    /// Peers with something to send: their replication threads should call
    /// [`RaftCore::append_for`](super::RaftCore::append_for).
    pub replicate: Vec<NodeId>,
    /// Reads whose leadership check passed: each may be served once the state
    /// machine has applied up to its index.
    pub reads: Vec<ReadyRead>,
    /// Reads that can no longer be confirmed, because this node stopped
    /// leading: the client should ask the new leader.
    pub aborted_reads: Vec<u64>,
}

/// A linearizable read that may now be served (see
/// [`RaftCore::read_index`](super::RaftCore::read_index)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyRead {
    pub id: u64,
    /// Serve the read from a state machine that has applied at least this far.
    pub index: Index,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && !self.reset_log
            && self.truncate_after.is_none()
            && self.commit_index.is_none()
            && self.compact_through.is_none()
            && self.install.is_none()
            && self.config.is_none()
            && self.removed.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.replicate.is_empty()
            && self.reads.is_empty()
            && self.aborted_reads.is_empty()
    }

    /// Whether anything must be written to disk.
    pub fn has_storage_work(&self) -> bool {
        self.hard_state.is_some()
            || self.reset_log
            || self.truncate_after.is_some()
            || !self.entries.is_empty()
            || self.commit_index.is_some()
            || self.compact_through.is_some()
            || self.removed.is_some()
    }
}
