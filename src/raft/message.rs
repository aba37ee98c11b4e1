//! The types Raft nodes exchange and store: log entries and RPC messages.
//!
//! These are plain data. The rules for producing and consuming them live in
//! [`crate::raft::core`]; how they cross the network lives in [`crate::node::wire`]; how
//! entries are laid out on disk lives in [`crate::storage`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A node's identity within its cluster. Fixed for the life of the data dir.
pub type NodeId = u64;
/// A Raft term (§5.1). Term 0 is "before any election".
pub type Term = u64;
/// A position in the replicated log, starting at 1. Index 0 is "before the log".
pub type Index = u64;

/// One slot of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub index: Index,
    /// The term of the leader that created the entry.
    pub term: Term,
    pub payload: Payload,
}

/// What an entry carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Appended by every new leader at the start of its term, so that it can
    /// commit (and thereby learn the commit point of) the entries of earlier
    /// terms (§5.4.2, §8).
    Noop,
    /// An opaque command for the state machine.
    Command(Vec<u8>),
    /// The cluster's new configuration, in force from the moment it is
    /// appended to a log (§4.1 of the dissertation; see
    /// [`crate::raft::membership`]).
    Config(Configuration),
}

/// At least the encoded size of an integer, an enum tag or a length, each of
/// which the codec writes in at most 9 bytes.
const INT: usize = 9;

impl Entry {
    /// Bytes this entry counts against the AppendEntries size cap: never
    /// less than its encoded size, so a batch cut by these sizes is never
    /// larger on the wire than the cap says (a frame over the peer's limit
    /// would be refused, and the follower would wait for entries that never
    /// arrive).
    pub fn size(&self) -> usize {
        // Index, term, the payload's tag and a length.
        let header = 4 * INT;
        header
            + match &self.payload {
                Payload::Noop => 0,
                Payload::Command(data) => data.len(),
                Payload::Config(config) => config.encoded_size_bound(),
            }
    }
}

impl Configuration {
    /// At least its encoded size.
    fn encoded_size_bound(&self) -> usize {
        let members: usize = (self.members.values())
            .map(|m| {
                // Id, both addresses with their lengths and option tag,
                // suffrage, flag, incarnation and its option tag.
                8 * INT + m.raft_addr.len() + m.client_addr.as_ref().map_or(0, String::len)
            })
            .sum();
        // The two maps' lengths; each removal's id, index and incarnation.
        2 * INT + members + self.removed.len() * 4 * INT
    }
}

/// The state that must be on stable storage before a node answers any RPC
/// (Figure 2, "Persistent state on all servers"); the log is stored separately.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub current_term: Term,
    pub voted_for: Option<NodeId>,
}

/// A message from one node to another, stamped with the sender's term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub message: Message,
}

/// The Raft RPCs and their replies (Figure 2). Requests and replies travel as
/// separate one-way messages, so a reply is matched to its request by content
/// (indexes and terms), never by a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Sent by candidates to gather votes (§5.2).
    RequestVote {
        last_log_index: Index,
        last_log_term: Term,
        /// The candidate campaigns because the leader asked it to
        /// ([`Message::TimeoutNow`]): voters answer even while they believe
        /// that leader alive (§3.10 of the dissertation), which is the point.
        leadership_transfer: bool,
    },
    /// Reply to [`Message::RequestVote`].
    RequestVoteResponse { vote_granted: bool },
    /// Pre-vote (§9.6 of the Raft dissertation): "would you vote for me?",
    /// asked before starting a real election. The envelope's term is the term
    /// the sender *would* campaign in; neither side changes its term or vote.
    PreVote {
        last_log_index: Index,
        last_log_term: Term,
    },
    /// Reply to [`Message::PreVote`]. A grant carries the term asked about; a
    /// refusal carries the voter's own term.
    PreVoteResponse { vote_granted: bool },
    /// Sent by the leader to replicate entries (§5.3); also the heartbeat when
    /// `entries` is empty (§5.2).
    AppendEntries {
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: Index,
        /// The leader's current read round (see `core`'s ReadIndex docs):
        /// echoed back, it proves the follower still accepted this leader
        /// after every read registered up to that round.
        round: u64,
    },
    /// Reply to [`Message::AppendEntries`]. `round` echoes the request's round,
    /// or is 0 when the request was refused for its stale term.
    AppendEntriesResponse { round: u64, result: AppendResult },
    /// Sent by the leader to a follower that needs entries the leader has
    /// compacted away (§7): its latest snapshot file, a chunk at a time, in
    /// order. `data` goes at `offset` in the file, which is `total` bytes
    /// long; `done` marks the last chunk. The file carries its own checksum,
    /// so the follower checks it whole before installing it.
    InstallSnapshot {
        last_included_index: Index,
        last_included_term: Term,
        offset: u64,
        total: u64,
        data: Vec<u8>,
        done: bool,
    },
    /// Reply to [`Message::InstallSnapshot`].
    InstallSnapshotResponse {
        last_included_index: Index,
        result: SnapshotResult,
    },
    /// Sent by a leader transferring its leadership to a follower whose log
    /// it has brought up to date: start an election now, without waiting for
    /// the election timeout or asking for pre-votes (§3.10).
    TimeoutNow,
}

/// How a follower is getting on with a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotResult {
    /// The follower holds the first `bytes` bytes of the file.
    Received { bytes: u64 },
    /// The follower's state now includes everything up to the snapshot's
    /// last included index (it installed it, or already had it), and that
    /// is durable.
    Installed,
    /// The transfer failed (a chunk out of order, a file that did not check
    /// out, a stale term); the leader starts again.
    Failed,
}

/// The outcome of an AppendEntries at the follower.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendResult {
    /// The follower's log now matches the leader's up to and including
    /// `match_index` (and is durable up to there).
    Success { match_index: Index },
    /// The consistency check failed at `rejected_index` (the request's
    /// `prev_log_index`). The hint lets the leader skip a whole term at a time
    /// instead of probing one index per round trip (§5.3, "the protocol can be
    /// optimized").
    Reject {
        rejected_index: Index,
        hint: RejectHint,
    },
}

/// Why a follower's log did not match, so the leader can find the match point
/// in one round trip per term rather than one per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectHint {
    /// The follower's log ends before `prev_log_index`.
    LogTooShort { last_index: Index },
    /// The follower has an entry of `conflict_term` at `prev_log_index`;
    /// `first_index` is the first index of that term in its log.
    ConflictingTerm {
        conflict_term: Term,
        first_index: Index,
    },
}

impl Message {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::RequestVote { .. } => "RequestVote",
            Message::RequestVoteResponse { .. } => "RequestVoteResponse",
            Message::PreVote { .. } => "PreVote",
            Message::PreVoteResponse { .. } => "PreVoteResponse",
            Message::AppendEntries { .. } => "AppendEntries",
            Message::AppendEntriesResponse { .. } => "AppendEntriesResponse",
            Message::InstallSnapshot { .. } => "InstallSnapshot",
            Message::InstallSnapshotResponse { .. } => "InstallSnapshotResponse",
            Message::TimeoutNow => "TimeoutNow",
        }
    }
}

// ----- Membership (the rules are in `crate::raft::membership`) -----------

/// Whether a member votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Suffrage {
    Voter,
    /// Receives the log, but does not vote and does not count for any
    /// majority.
    Learner,
}

impl fmt::Display for Suffrage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Suffrage::Voter => "voter",
            Suffrage::Learner => "learner",
        })
    }
}

/// One member of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Where the member listens for its peers (each node may dial another
    /// address for it, such as a proxy; see the node's `--peer`).
    pub raft_addr: String,
    /// Where it serves clients, if known.
    pub client_addr: Option<String>,
    pub suffrage: Suffrage,
    /// A learner the leader promotes to voter once it has caught up.
    pub auto_promote: bool,
    /// Its data dir's incarnation, once a leader has learned it.
    pub incarnation: Option<u64>,
}

/// The members of the cluster as of some log index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    pub members: BTreeMap<NodeId, Member>,
    /// Ids removed from the cluster, with the index of the entry that
    /// removed each (at most [`REMEMBERED_REMOVALS`](super::membership::REMEMBERED_REMOVALS)).
    pub removed: BTreeMap<NodeId, Removal>,
}

/// A member's removal, as a configuration remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// The index of the entry that removed it.
    pub index: Index,
    /// The incarnation of its data dir then, if it was recorded: a node
    /// added back under the same id (a new data dir) is not the one removed.
    pub incarnation: Option<u64>,
}
