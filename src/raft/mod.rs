//! The Raft consensus algorithm, as pure logic: every rule of the paper's
//! Figure 2 and the dissertation's extensions raftnode uses, with no I/O and
//! no clock.
//!
//! Section numbers (§5.2) refer to "In Search of an Understandable Consensus
//! Algorithm (Extended Version)" by Ongaro and Ousterhout; "the dissertation"
//! is Ongaro's "Consensus: Bridging Theory and Practice" (2014).
//!
//! # Where things are
//!
//! * [`RaftCore`] ([`core`]) — one node's state machine: inputs (`step`,
//!   `tick`, `propose`, `read_index`, `persisted`) in, a [`Ready`] out. Its
//!   rules are split by topic: `core/election.rs` (§5.2, §5.4.1, §9.6),
//!   `core/replication.rs` (§5.3, §5.4.2), `core/reads.rs` (§6.4),
//!   `core/snapshot.rs` (§7), `core/membership.rs` (chapter 4 of the
//!   dissertation, and leadership transfer, §3.10).
//! * [`membership`] — configurations and how one becomes the next.
//! * [`message`] — the entries and RPCs nodes exchange and store.
//! * [`log`] — the in-memory log and its own rules (the consistency check,
//!   conflicts, up-to-dateness).
//! * [`progress`] — the leader's view of each follower (probe/replicate).
//! * [`quorum`] — majorities.
//! * [`read_only`] — ReadIndex rounds and leases.
//! * [`ready`] — the hand-off to the node that drives the core.
//! * `scenario.rs` and `testscripts/` — scenario tests of whole clusters of
//!   cores (see [the scripts' docs](#testing)); `core/tests.rs` — one unit
//!   test per rule of the paper.
//!
//! Dependencies: none inside the crate. Nothing here knows about threads,
//! sockets, files or the state machine's commands; [`crate::node`] drives a
//! core, [`crate::storage`] keeps what it must not forget.
//!
//! # Roles and terms (§5.1)
//!
//! Every node starts as a follower. Time is divided into terms; each term
//! begins with an election. Every message carries its sender's term. A node
//! that sees a higher term adopts it and becomes a follower, whatever it was;
//! a request with a lower term is answered with a refusal carrying the
//! current term, so that the stale sender learns it is behind; a stale reply
//! is dropped. The current term and the vote (`current_term`, `voted_for`)
//! are persisted before any message that depends on them leaves.
//!
//! # Elections (§5.2, §5.4.1)
//!
//! A follower that hears nothing from a leader, and grants no vote, for a
//! randomized election timeout becomes a candidate: it increments its term,
//! votes for itself and asks every peer for its vote. A node grants at most
//! one vote per term and only to a candidate whose log is at least as
//! up-to-date as its own (a later last term, or the same last term and at
//! least as long), which is what guarantees that a new leader holds every
//! committed entry. A candidate with votes from a majority becomes leader;
//! one that hears from a leader of its term steps back to follower; one whose
//! timeout expires again starts a new term. The randomized timeout makes
//! split votes rare.
//!
//! # Pre-vote, check-quorum and leader stickiness (§9.6, §6.2, §4.2.3 of the dissertation)
//!
//! Plain Raft lets one badly connected node disturb a healthy cluster: cut
//! off, it times out again and again, raising its term; when it returns, its
//! higher term deposes the working leader. Three extensions, all on by
//! default, prevent that:
//!
//! * **Pre-vote.** Before becoming a candidate, a node asks its peers whether
//!   they *would* vote for it in the next term. Nobody changes term or vote
//!   for a pre-vote; only a majority of yes starts the real election. A node
//!   that cannot win therefore never raises anyone's term.
//! * **Check-quorum.** A leader that has not heard from a majority within an
//!   election timeout steps down (§6.2): it may be the minority side of a
//!   partition, where it could only keep clients waiting.
//! * **Leader stickiness.** A follower that heard from its leader within the
//!   minimum election timeout ignores vote requests — it does not even adopt
//!   their term (§4.2.3). A node that merely lost touch cannot depose a leader
//!   the rest of the cluster still follows. Leases (below) rely on this.
//!
//! # Replication (§5.3)
//!
//! The leader appends each proposal to its log and sends AppendEntries to each
//! follower, starting at that follower's `next_index` and carrying the index
//! and term of the entry just before. A follower accepts only if its log has
//! an entry there with that term (the consistency check, which by induction
//! means the logs are identical up to that point); it then deletes any entries
//! that *conflict* with the new ones (same index, other term) — never entries
//! that match, since a delayed message must not erase what a later one added
//! — and appends the rest. On rejection the leader moves `next_index` back,
//! skipping a whole term at a time thanks to the follower's hint.
//!
//! The leader tracks each follower as in etcd: in *probe* state it sends one
//! AppendEntries at a time until it learns where the logs match; in
//! *replicate* state it pipelines new entries without waiting for
//! acknowledgements. Messages are built lazily, when the peer's connection is
//! ready to write, so everything proposed meanwhile travels in one
//! AppendEntries (up to a size cap).
//!
//! # Commitment (§5.3, §5.4.2)
//!
//! An entry is committed once the leader has stored it on a majority of
//! servers. The leader may write its own disk in parallel with sending to
//! followers (§10.2.1 of the dissertation), but counts its own copy only once
//! it is durable. It only ever commits by counting replicas of an entry of
//! its *current* term; entries of earlier terms are committed indirectly, by
//! the Log Matching property. The paper's Figure 8 shows that counting
//! replicas of an old-term entry is unsafe. That is why a new leader appends
//! a no-op entry at the start of its term (§8): it lets it commit everything
//! before it promptly. Committed entries are handed out for application in
//! index order, each exactly once.
//!
//! # Linearizable reads without log entries (§6.4, §6.4.1 of the dissertation)
//!
//! A read must see every write acknowledged before it began. Writing reads
//! into the log would cost a disk write each; instead the leader uses
//! *ReadIndex*: it notes its commit index (or its term's no-op, until that
//! commits), confirms it is still the leader by having a majority answer a
//! heartbeat round sent after the read arrived, and serves the read once its
//! state machine has applied up to the noted index. Reads arriving together
//! share a round. With *leases* (opt-in), a leader that a majority answered
//! within the minimum election timeout, less a margin for clock drift, knows
//! no other leader can exist yet (stickiness) and skips the round — correct
//! only while clocks run at similar rates and the process is not paused. See
//! [`read_only`] for the bookkeeping.
//!
//! # Client sessions (§6.3 of the dissertation)
//!
//! Raft applies each committed entry exactly once, but a client whose request
//! timed out cannot know whether it was committed, and a retry would be a
//! second entry. Exactly-once semantics therefore belong to the state
//! machine: clients tag writes with an id and a sequence number, and the
//! state machine remembers each client's last reply. In raftnode that lives
//! with the key-value store, in [`crate::kv::session`]; the Raft layer only
//! guarantees the order and uniqueness of application it relies on.
//!
//! # Snapshots (§7)
//!
//! A node snapshots its state machine now and then and drops the log the
//! snapshot covers, keeping a tail; a follower that needs a dropped entry is
//! sent the snapshot instead. See `core/snapshot.rs`.
//!
//! # Membership changes (chapter 4 of the dissertation)
//!
//! The cluster's configuration — its voters and learners, with their
//! addresses — lives in the log: a change is an entry carrying the whole new
//! configuration, in force on each server from the moment it is appended,
//! and one voter at a time, so that old and new majorities always overlap
//! (§4.1). A leader proposes one change at a time, and none before it has
//! committed an entry of its own term (the fix for the single-server bug).
//! Learners get the log but never vote or count; a new server is added as
//! one and promoted once caught up. A leader that removes itself steps down
//! once the change commits (§4.2.2), and a leader can hand its leadership
//! to a chosen voter with TimeoutNow (§3.10). See [`membership`] for the
//! method and `core/membership.rs` for the rules.
//!
//! # Testing
//!
//! Every rule has a unit test named after its section in `core/tests.rs`.
//! Whole-cluster behaviour is tested by golden scripts in `testscripts/`,
//! run by `scenario.rs` over a simulated network and disks that check Raft's
//! safety properties after every message. After an intended change in
//! behaviour, regenerate their expected traces with
//! `UPDATE_GOLDENFILES=1 cargo test --release --lib raft::scenario` and read
//! the diff.

pub mod core;
pub mod log;
pub mod membership;
pub mod message;
pub mod progress;
pub mod quorum;
pub mod read_only;
pub mod ready;
#[cfg(test)]
mod scenario;

pub use self::core::{
    CoreConfig, NotLeader, Outgoing, ProposeError, RaftCore, Restored, RoleKind, SnapshotChunk,
    TransferError,
};
pub use progress::{Progress, ProgressState};
pub use ready::{Ready, ReadyRead};
