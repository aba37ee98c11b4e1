//! The Raft state machine: every rule of the paper's Figure 2, and nothing else.
//!
//! [`RaftCore`] is a plain struct. It does no I/O and reads no clock: the node's
//! threads feed it inputs and carry out what it asks for.
//!
//! * **Inputs.** [`RaftCore::step`] takes a message from a peer,
//!   [`RaftCore::tick`] advances logical time by one tick, [`RaftCore::propose`]
//!   offers a client command, and [`RaftCore::persisted`] reports that the log
//!   is durable up to some entry.
//! * **Outputs.** [`RaftCore::take_ready`] hands back a [`Ready`]: the hard
//!   state and log entries to write, the messages to send *after* that write is
//!   durable, the entries that are now committed and may be applied, and the
//!   peers whose replication thread should call [`RaftCore::append_for`].
//!
//! # Roles and terms (§5.1)
//!
//! Every node starts as a follower. Time is divided into terms; each term
//! begins with an election. Every message carries its sender's term. A node that
//! sees a higher term adopts it and becomes a follower, whatever it was; a
//! request with a lower term is answered with a refusal carrying the current
//! term, so that the stale sender learns it is behind; a stale reply is dropped.
//!
//! # Elections (§5.2, §5.4.1)
//!
//! A follower that hears nothing from a leader, and grants no vote, for a
//! randomized election timeout becomes a candidate: it increments its term,
//! votes for itself and asks every peer for its vote. A node grants at most one
//! vote per term (persisted before the reply leaves) and only to a candidate
//! whose log is at least as up-to-date as its own, which is what guarantees that
//! a new leader holds every committed entry. A candidate with votes from a
//! majority becomes leader; one that hears from a leader of its term steps back
//! to follower; one whose timeout expires again starts a new term. The
//! randomized timeout makes split votes rare.
//!
//! # Replication (§5.3)
//!
//! The leader appends each proposal to its log and sends AppendEntries to each
//! follower, starting at that follower's `next_index` and carrying the index and
//! term of the entry just before. A follower accepts only if its log has an
//! entry there with that term (the consistency check, which by induction means
//! the logs are identical up to that point); it then deletes any entries that
//! *conflict* with the new ones (same index, other term) — never entries that
//! match, since a delayed message must not erase what a later one added — and
//! appends the rest. On rejection the leader moves `next_index` back, skipping
//! a whole term at a time thanks to the follower's hint.
//!
//! A follower's progress is in one of two states, as in etcd: *probe*, where
//! the leader sends one AppendEntries and waits for the answer (or the next
//! heartbeat) because it does not know where the logs match, and *replicate*,
//! where the match point is known and new entries are pipelined without waiting
//! for acknowledgements. Messages are built lazily, when the peer's replication
//! thread is ready to write, so everything proposed meanwhile travels in one
//! AppendEntries (up to a size cap).
//!
//! # Commitment (§5.3, §5.4.2)
//!
//! An entry is committed once the leader has stored it on a majority of
//! servers — counting itself only once its own copy is durable. The leader only
//! ever commits by counting replicas of an entry of its *current* term; entries
//! of earlier terms are committed indirectly, by the Log Matching property. The
//! paper's Figure 8 shows that counting replicas of an old-term entry is unsafe.
//! That is why a new leader appends a no-op entry at the start of its term (§8):
//! it lets it commit everything before it promptly. Committed entries are handed
//! out for application in index order, each exactly once.

use crate::raft::log::RaftLog;
use crate::raft::message::{
    AppendResult, Entry, Envelope, HardState, Index, Message, NodeId, Payload, RejectHint, Term,
};
use log::{debug, error, info, warn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// The core's settings, in logical ticks.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub id: NodeId,
    /// The other voting members of the cluster.
    pub peers: Vec<NodeId>,
    /// The election timeout is drawn uniformly from `min..=max` ticks each time
    /// the timer is reset (§5.2).
    pub election_ticks_min: u32,
    pub election_ticks_max: u32,
    /// A leader sends a heartbeat to every follower this often.
    pub heartbeat_ticks: u32,
    /// The most entry bytes one AppendEntries carries (at least one entry is
    /// always sent).
    pub max_append_bytes: usize,
    /// Seeds the election-timeout generator, so tests are reproducible.
    pub seed: u64,
    /// Ask for pre-votes before a real election (§9.6 of the dissertation), so
    /// that a node that cannot win never bumps the cluster's term.
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a majority for an
    /// election timeout; a follower that heard from its leader within the
    /// minimum election timeout ignores vote requests (leader stickiness).
    pub check_quorum: bool,
    /// Serve reads on the leader's lease instead of a heartbeat round per
    /// read. Relies on check_quorum's stickiness and on bounded clock drift.
    pub lease_reads: bool,
}

impl CoreConfig {
    /// Ticks of 10 ms: election timeout 150–300 ms, heartbeat 50 ms.
    pub fn new(id: NodeId, peers: Vec<NodeId>) -> CoreConfig {
        CoreConfig {
            id,
            peers,
            election_ticks_min: 15,
            election_ticks_max: 30,
            heartbeat_ticks: 5,
            max_append_bytes: 1024 * 1024,
            seed: id,
            pre_vote: true,
            check_quorum: true,
            lease_reads: false,
        }
    }
}

/// Which of the three roles a node is in (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    Follower,
    /// Asking for pre-votes; not yet a candidate and still in its old term.
    PreCandidate,
    Candidate,
    Leader,
}

impl fmt::Display for RoleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoleKind::Follower => "follower",
            RoleKind::PreCandidate => "pre-candidate",
            RoleKind::Candidate => "candidate",
            RoleKind::Leader => "leader",
        })
    }
}

/// A proposal was made to a node that is not the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotLeader {
    /// The leader of the current term, if this node knows it.
    pub leader: Option<NodeId>,
}

/// What the node must do after feeding the core some input. The order matters:
/// first make `hard_state`, `truncate_after` and `entries` durable, then send
/// `messages` (a vote or an acknowledgement must never leave before the state
/// it promises is on disk), then report the write with
/// [`RaftCore::persisted`]. `committed` may be applied at once.
#[derive(Debug, Default, PartialEq)]
pub struct Ready {
    /// New term and vote, to persist before sending any message.
    pub hard_state: Option<HardState>,
    /// Drop every stored entry after this index before appending `entries`.
    pub truncate_after: Option<Index>,
    /// New log entries to persist, in order.
    pub entries: Vec<Entry>,
    /// Messages to send once the above is durable.
    pub messages: Vec<Envelope>,
    /// Entries newly known to be committed, in index order, to apply.
    pub committed: Vec<Entry>,
    /// Peers with something to send: their replication threads should call
    /// [`RaftCore::append_for`].
    pub replicate: Vec<NodeId>,
    /// Reads whose leadership check passed: each may be served once the state
    /// machine has applied up to its index.
    pub reads: Vec<ReadyRead>,
    /// Reads that can no longer be confirmed, because this node stopped
    /// leading: the client should ask the new leader.
    pub aborted_reads: Vec<u64>,
}

/// A linearizable read that may now be served (see [`RaftCore::read_index`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyRead {
    pub id: u64,
    /// Serve the read from a state machine that has applied at least this far.
    pub index: Index,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.truncate_after.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.replicate.is_empty()
            && self.reads.is_empty()
            && self.aborted_reads.is_empty()
    }

    /// Whether anything must be written to disk.
    pub fn has_storage_work(&self) -> bool {
        self.hard_state.is_some() || self.truncate_after.is_some() || !self.entries.is_empty()
    }
}

/// How the leader is replicating to one follower (after etcd's Progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// Where the logs match is unknown: one AppendEntries at a time.
    Probe,
    /// The match point is known: send new entries as they come.
    Replicate,
}

/// The leader's view of one follower (Figure 2, "volatile state on leaders").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Index of the next entry to send.
    pub next_index: Index,
    /// Highest index known to be replicated (and durable) on the follower.
    pub match_index: Index,
    pub state: ProgressState,
    /// In probe state: an AppendEntries is out and unanswered.
    probe_sent: bool,
    /// A heartbeat is due regardless of anything else.
    heartbeat_due: bool,
    /// The highest commit index this follower has been told about.
    commit_sent: Index,
    /// The highest read round this follower has answered in this term.
    acked_round: u64,
    /// Heard from since the last check-quorum.
    recent_active: bool,
}

impl Progress {
    fn new(next_index: Index) -> Progress {
        Progress {
            next_index,
            match_index: 0,
            state: ProgressState::Probe,
            probe_sent: false,
            heartbeat_due: true,
            commit_sent: 0,
            acked_round: 0,
            recent_active: false,
        }
    }

    fn wants_send(&self, last_index: Index, commit_index: Index) -> bool {
        let has_news = self.next_index <= last_index || self.commit_sent < commit_index;
        self.heartbeat_due
            || match self.state {
                ProgressState::Probe => !self.probe_sent && has_news,
                ProgressState::Replicate => has_news,
            }
    }

    fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
    }
}

#[derive(Debug)]
enum Role {
    Follower {
        /// The leader of the current term, once heard from.
        leader: Option<NodeId>,
    },
    PreCandidate {
        /// Who answered the PreVote, and how.
        votes: BTreeMap<NodeId, bool>,
    },
    Candidate {
        /// Who answered this term's RequestVote, and how.
        votes: BTreeMap<NodeId, bool>,
    },
    Leader {
        progress: BTreeMap<NodeId, Progress>,
        reads: ReadQueue,
    },
}

/// The leader's linearizable reads waiting for their leadership check.
#[derive(Debug, Default)]
struct ReadQueue {
    /// Incremented for every read; AppendEntries carry the latest value and
    /// followers echo it back.
    round: u64,
    /// The index of this term's no-op: no read may be served from an earlier
    /// state, since entries before it may be committed without this leader
    /// knowing yet (§6.4 of the Raft dissertation, step 1).
    term_start: Index,
    /// In registration order, so rounds and indexes are non-decreasing.
    pending: VecDeque<PendingRead>,
    /// When each recent round was started (in ticks), for lease reads.
    started: VecDeque<(u64, u64)>,
    /// The highest round any AppendEntries has carried so far.
    sent_round: u64,
}

impl ReadQueue {
    /// Starts a new round at `tick`, returning its number.
    fn start_round(&mut self, tick: u64) -> u64 {
        self.round += 1;
        self.started.push_back((self.round, tick));
        while self.started.len() > 256 {
            self.started.pop_front();
        }
        self.round
    }

    /// When `round` (or the latest round before it still remembered) began.
    fn started_at(&self, round: u64) -> Option<u64> {
        self.started
            .iter()
            .rev()
            .find(|&&(r, _)| r <= round)
            .map(|&(_, tick)| tick)
    }
}

#[derive(Debug)]
struct PendingRead {
    id: u64,
    index: Index,
    round: u64,
}

/// One node's Raft state machine. See the module docs.
#[derive(Debug)]
pub struct RaftCore {
    config: CoreConfig,
    // Persistent state on all servers (Figure 2).
    current_term: Term,
    voted_for: Option<NodeId>,
    log: RaftLog,
    // Volatile state on all servers.
    commit_index: Index,
    /// The highest index handed out in [`Ready::committed`]; the state machine
    /// applies exactly those, in order, so this is Figure 2's `lastApplied` as
    /// far as the core is concerned.
    last_applied: Index,
    /// The log is durable up to here (reported by [`RaftCore::persisted`]).
    persisted_index: Index,
    role: Role,
    /// Ticks since the timer was last reset; compared against
    /// `randomized_election_timeout` by followers and candidates.
    election_elapsed: u32,
    randomized_election_timeout: u32,
    /// Ticks since the leader last sent heartbeats.
    heartbeat_elapsed: u32,
    rng: StdRng,
    /// Ticks since the core was created: the core's only notion of time.
    ticks: u64,
    /// Leadership rounds started for reads, and reads served on the lease.
    read_rounds: u64,
    lease_reads_served: u64,
    /// Outputs accumulated since the last [`RaftCore::take_ready`].
    ready: Ready,
    hard_state_dirty: bool,
}

impl RaftCore {
    /// Builds a core from what storage recovered. Every node starts as a
    /// follower (§5.2); the recovered log is durable by definition. The commit
    /// index is volatile (Figure 2), so it starts at 0 and the node relearns it
    /// from the leader, re-applying the log to a fresh state machine.
    pub fn new(config: CoreConfig, hard_state: HardState, entries: Vec<Entry>) -> RaftCore {
        let log = RaftLog::new(entries);
        let mut core = RaftCore {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            current_term: hard_state.current_term,
            voted_for: hard_state.voted_for,
            persisted_index: log.last_index(),
            log,
            commit_index: 0,
            last_applied: 0,
            role: Role::Follower { leader: None },
            election_elapsed: 0,
            randomized_election_timeout: 0,
            heartbeat_elapsed: 0,
            ticks: 0,
            read_rounds: 0,
            lease_reads_served: 0,
            ready: Ready::default(),
            hard_state_dirty: false,
        };
        core.reset_election_timer();
        core
    }

    // ----- Queries ---------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// All voting members, this node included, in ascending order.
    pub fn members(&self) -> Vec<NodeId> {
        let mut members: Vec<NodeId> = self.config.peers.clone();
        members.push(self.config.id);
        members.sort_unstable();
        members.dedup();
        members
    }

    pub fn is_member(&self, id: NodeId) -> bool {
        id == self.config.id || self.config.peers.contains(&id)
    }

    pub fn role(&self) -> RoleKind {
        match self.role {
            Role::Follower { .. } => RoleKind::Follower,
            Role::PreCandidate { .. } => RoleKind::PreCandidate,
            Role::Candidate { .. } => RoleKind::Candidate,
            Role::Leader { .. } => RoleKind::Leader,
        }
    }

    pub fn current_term(&self) -> Term {
        self.current_term
    }

    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }

    pub fn hard_state(&self) -> HardState {
        HardState {
            current_term: self.current_term,
            voted_for: self.voted_for,
        }
    }

    /// The leader of the current term, if known.
    pub fn leader_id(&self) -> Option<NodeId> {
        match self.role {
            Role::Follower { leader } => leader,
            Role::PreCandidate { .. } | Role::Candidate { .. } => None,
            Role::Leader { .. } => Some(self.config.id),
        }
    }

    pub fn commit_index(&self) -> Index {
        self.commit_index
    }

    pub fn last_applied(&self) -> Index {
        self.last_applied
    }

    pub fn persisted_index(&self) -> Index {
        self.persisted_index
    }

    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// The leader's view of a follower; `None` unless leader.
    pub fn progress(&self, peer: NodeId) -> Option<&Progress> {
        match &self.role {
            Role::Leader { progress, .. } => progress.get(&peer),
            _ => None,
        }
    }

    /// How many heartbeat rounds were started to confirm reads.
    pub fn read_rounds(&self) -> u64 {
        self.read_rounds
    }

    /// How many reads were served on the leader's lease, without a round.
    pub fn lease_reads_served(&self) -> u64 {
        self.lease_reads_served
    }

    pub fn randomized_election_timeout(&self) -> u32 {
        self.randomized_election_timeout
    }

    fn quorum(&self) -> usize {
        // A majority of all voting members, this node included.
        let members = self.config.peers.len() + 1;
        members / 2 + 1
    }

    // ----- Inputs ----------------------------------------------------------

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        self.election_elapsed += 1;
        let ticks = self.ticks;
        match &mut self.role {
            Role::Leader { progress, reads } => {
                self.heartbeat_elapsed += 1;
                if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
                    // §5.2: leaders send periodic heartbeats to keep their
                    // authority and prevent new elections. Each heartbeat
                    // starts a new round, so its answers renew the read lease.
                    self.heartbeat_elapsed = 0;
                    for pr in progress.values_mut() {
                        pr.heartbeat_due = true;
                    }
                    if self.config.lease_reads {
                        reads.start_round(ticks);
                    }
                }
                if self.election_elapsed >= self.config.election_ticks_min {
                    self.election_elapsed = 0;
                    if self.config.check_quorum {
                        self.check_quorum();
                    }
                }
            }
            Role::Follower { .. } | Role::PreCandidate { .. } | Role::Candidate { .. } => {
                if self.election_elapsed >= self.randomized_election_timeout {
                    // §5.2: no word from a leader and no vote granted for a whole
                    // election timeout: start an election — first asking
                    // whether it could be won, if pre-vote is on.
                    if self.config.pre_vote {
                        self.pre_campaign();
                    } else {
                        self.campaign();
                    }
                }
            }
        }
    }

    /// Check-quorum: a leader that has not heard from a majority for an
    /// election timeout may be cut off from it, and a new leader may already
    /// lead; it steps down rather than keep clients waiting.
    fn check_quorum(&mut self) {
        let quorum = self.quorum();
        let Role::Leader { progress, .. } = &mut self.role else {
            return;
        };
        let active = 1 + progress.values().filter(|pr| pr.recent_active).count();
        for pr in progress.values_mut() {
            pr.recent_active = false;
        }
        if active < quorum {
            info!(
                "node {}: heard from only {active} of {} members in an election timeout; stepping down",
                self.config.id,
                self.config.peers.len() + 1
            );
            self.become_follower(self.current_term, None);
        }
    }

    /// Whether this node recently heard from a live leader (or is one), in
    /// which case it ignores vote requests: a node that merely lost touch
    /// must not depose a leader the rest of the cluster still follows.
    fn in_lease(&self) -> bool {
        self.config.check_quorum
            && match self.role {
                Role::Leader { .. } => true,
                Role::Follower { leader: Some(_) } => {
                    self.election_elapsed < self.config.election_ticks_min
                }
                _ => false,
            }
    }

    /// Offers a client command. On the leader it is appended to the log and its
    /// (index, term) returned: the command is committed if and when the entry at
    /// that index, with that term, is.
    pub fn propose(&mut self, command: Vec<u8>) -> Result<(Index, Term), NotLeader> {
        if self.role() != RoleKind::Leader {
            return Err(NotLeader {
                leader: self.leader_id(),
            });
        }
        let index = self.append_own(Payload::Command(command));
        Ok((index, self.current_term))
    }

    /// Starts a linearizable read with the caller's `id` (ReadIndex, §6.4 of
    /// the Raft dissertation). Only a leader can serve one. The read's index is
    /// the commit index now — or this term's no-op, if that is not committed
    /// yet, because only then does the leader know everything committed
    /// before it. The leader then needs a majority to answer a round of
    /// AppendEntries sent after this call, proving no newer leader existed
    /// when the read began; reads that arrive together share that round. The
    /// read comes out in [`Ready::reads`] once both hold, and in
    /// [`Ready::aborted_reads`] if leadership is lost first. It costs no log
    /// entry and no disk write.
    pub fn read_index(&mut self, id: u64) -> Result<(), NotLeader> {
        if self.role() != RoleKind::Leader {
            return Err(NotLeader {
                leader: self.leader_id(),
            });
        }
        if self.lease_valid() {
            self.lease_reads_served += 1;
            self.ready.reads.push(ReadyRead {
                id,
                index: self.commit_index,
            });
            return Ok(());
        }
        let (commit_index, ticks) = (self.commit_index, self.ticks);
        if let Role::Leader { progress, reads } = &mut self.role {
            // Reads arriving before the current round has gone out to anyone
            // share it: one heartbeat round confirms them all.
            let round = if reads.round > reads.sent_round {
                reads.round
            } else {
                self.read_rounds += 1;
                reads.start_round(ticks)
            };
            reads.pending.push_back(PendingRead {
                id,
                index: commit_index.max(reads.term_start),
                round,
            });
            // Ask now rather than at the next heartbeat.
            for pr in progress.values_mut() {
                pr.heartbeat_due = true;
            }
        }
        self.check_reads();
        Ok(())
    }

    /// Reports that the log is durable up to `index`, whose entry had `term`
    /// when written. If the entry has since been replaced, the report is stale
    /// and ignored (a later one will cover the replacement).
    pub fn persisted(&mut self, index: Index, term: Term) {
        if index > self.persisted_index && self.log.term_at(index) == Some(term) {
            self.persisted_index = index;
            if self.role() == RoleKind::Leader {
                self.maybe_commit();
            }
        }
    }

    /// The replication thread for `peer` lost its connection: whatever was in
    /// flight is presumed lost, so fall back to probing from the match point.
    pub fn peer_unreachable(&mut self, peer: NodeId) {
        if let Role::Leader { progress, .. } = &mut self.role {
            if let Some(pr) = progress.get_mut(&peer) {
                pr.become_probe();
            }
        }
    }

    /// Processes one message from a peer.
    pub fn step(&mut self, env: Envelope) {
        if env.to != self.config.id || !self.is_member(env.from) || env.from == self.config.id {
            warn!(
                "node {}: dropping message from {} addressed to {}",
                self.config.id, env.from, env.to
            );
            return;
        }
        let asks_for_vote = matches!(
            env.message,
            Message::RequestVote { .. } | Message::PreVote { .. }
        );
        if asks_for_vote && env.term > self.current_term && self.in_lease() {
            // Leader stickiness: we heard from a live leader too recently to
            // believe it is gone; do not even adopt the term (§9.6).
            debug!(
                "node {}: ignoring {} from {} for term {}: leader lease",
                self.config.id,
                env.message.name(),
                env.from,
                env.term
            );
            return;
        }
        // A pre-vote request and a pre-vote grant name a term nobody has
        // entered yet; they must not move anyone's term.
        let future_term = matches!(
            env.message,
            Message::PreVote { .. } | Message::PreVoteResponse { vote_granted: true }
        );
        if env.term > self.current_term && !future_term {
            // §5.1: a higher term means we are out of date, whatever our role.
            let leader = match env.message {
                Message::AppendEntries { .. } => Some(env.from),
                _ => None,
            };
            debug!(
                "node {}: term {} -> {} on {} from {}",
                self.config.id,
                self.current_term,
                env.term,
                env.message.name(),
                env.from
            );
            self.become_follower(env.term, leader);
        } else if env.term < self.current_term {
            // §5.1: reject requests from stale terms, answering with our term so
            // that the sender steps down; drop stale replies.
            debug!(
                "node {}: stale {} from {} (term {} < {})",
                self.config.id,
                env.message.name(),
                env.from,
                env.term,
                self.current_term
            );
            match env.message {
                Message::RequestVote { .. } => self.send(
                    env.from,
                    Message::RequestVoteResponse {
                        vote_granted: false,
                    },
                ),
                Message::PreVote { .. } => self.send(
                    env.from,
                    Message::PreVoteResponse {
                        vote_granted: false,
                    },
                ),
                Message::AppendEntries { prev_log_index, .. } => self.send(
                    env.from,
                    Message::AppendEntriesResponse {
                        // Round 0: this proves nothing about any current
                        // leader's reads.
                        round: 0,
                        result: AppendResult::Reject {
                            rejected_index: prev_log_index,
                            hint: RejectHint::LogTooShort {
                                last_index: self.log.last_index(),
                            },
                        },
                    },
                ),
                Message::RequestVoteResponse { .. }
                | Message::PreVoteResponse { .. }
                | Message::AppendEntriesResponse { .. } => {}
            }
            return;
        }

        if env.term == self.current_term {
            if let Role::Leader { progress, .. } = &mut self.role {
                if let Some(pr) = progress.get_mut(&env.from) {
                    pr.recent_active = true;
                }
            }
        }

        match env.message {
            Message::RequestVote {
                last_log_index,
                last_log_term,
            } => self.handle_request_vote(env.from, last_log_index, last_log_term),
            Message::RequestVoteResponse { vote_granted } => {
                self.handle_vote_response(env.from, vote_granted)
            }
            Message::PreVote {
                last_log_index,
                last_log_term,
            } => self.handle_pre_vote(env.from, env.term, last_log_index, last_log_term),
            Message::PreVoteResponse { vote_granted } => {
                self.handle_pre_vote_response(env.from, env.term, vote_granted)
            }
            Message::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                round,
            } => {
                let result = self.handle_append_entries(
                    env.from,
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit,
                );
                if let Some(result) = result {
                    self.send(env.from, Message::AppendEntriesResponse { round, result });
                }
            }
            Message::AppendEntriesResponse { round, result } => {
                self.handle_append_response(env.from, round, result)
            }
        }
    }

    /// Builds the next AppendEntries for `peer`, if the leader has anything to
    /// send it: new entries, a newer commit index, or a due heartbeat. Called by
    /// the peer's replication thread when it is ready to write, so everything
    /// appended since its last call travels in this one message.
    pub fn append_for(&mut self, peer: NodeId) -> Option<Envelope> {
        let Role::Leader { progress, reads } = &mut self.role else {
            return None;
        };
        let pr = progress.get_mut(&peer)?;
        let last_index = self.log.last_index();
        if !pr.wants_send(last_index, self.commit_index) {
            return None;
        }
        let prev_log_index = pr.next_index - 1;
        let Some(prev_log_term) = self.log.term_at(prev_log_index) else {
            // next_index is kept within 1..=last+1; anything else is a bug here,
            // but recover by probing from the known match point.
            error!(
                "node {}: next_index {} for {} is past the log end {}",
                self.config.id, pr.next_index, peer, last_index
            );
            pr.become_probe();
            return None;
        };
        let entries = self
            .log
            .entries_from(pr.next_index, self.config.max_append_bytes);
        let last_sent = prev_log_index + entries.len() as Index;
        match pr.state {
            // Pipelining: assume the entries arrive; a rejection or a lost
            // connection sends us back to probing.
            ProgressState::Replicate => pr.next_index = last_sent + 1,
            ProgressState::Probe => pr.probe_sent = true,
        }
        pr.heartbeat_due = false;
        // The follower can only commit what it holds (Figure 2, step 5 of
        // AppendEntries), so it learns at most `last_sent` from this message.
        pr.commit_sent = pr.commit_sent.max(self.commit_index.min(last_sent));
        Some(Envelope {
            from: self.config.id,
            to: peer,
            term: self.current_term,
            message: Message::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit: self.commit_index,
                round: {
                    reads.sent_round = reads.round;
                    reads.round
                },
            },
        })
    }

    /// Takes the outputs accumulated since the last call.
    pub fn take_ready(&mut self) -> Ready {
        let mut ready = std::mem::take(&mut self.ready);
        if self.hard_state_dirty {
            self.hard_state_dirty = false;
            ready.hard_state = Some(self.hard_state());
        }
        if self.commit_index > self.last_applied {
            ready.committed = self
                .log
                .slice(self.last_applied + 1, self.commit_index)
                .to_vec();
            self.last_applied = self.commit_index;
        }
        if let Role::Leader { progress, .. } = &self.role {
            let last_index = self.log.last_index();
            ready.replicate = progress
                .iter()
                .filter(|(_, pr)| pr.wants_send(last_index, self.commit_index))
                .map(|(&id, _)| id)
                .collect();
        }
        ready
    }

    // ----- Role transitions ------------------------------------------------

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.randomized_election_timeout = self
            .rng
            .gen_range(self.config.election_ticks_min..=self.config.election_ticks_max);
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        let was = self.role();
        if term > self.current_term {
            self.current_term = term;
            self.voted_for = None;
            self.hard_state_dirty = true;
        }
        let old_leader = self.leader_id();
        if let Role::Leader { reads, .. } = &mut self.role {
            let aborted = reads.pending.drain(..).map(|r| r.id);
            self.ready.aborted_reads.extend(aborted);
        }
        self.role = Role::Follower { leader };
        self.reset_election_timer();
        if was != RoleKind::Follower {
            info!(
                "node {}: {} -> follower in term {}",
                self.config.id, was, self.current_term
            );
        }
        if leader.is_some() && leader != old_leader {
            self.log_new_leader();
        }
    }

    fn log_new_leader(&self) {
        if let Some(leader) = self.leader_id() {
            info!(
                "node {}: leader for term {} is {}",
                self.config.id, self.current_term, leader
            );
        }
    }

    /// §9.6 of the dissertation: before disrupting anyone, ask whether we
    /// could win an election for the next term. Our term and vote stay as
    /// they are; only a majority of yes starts the real election.
    fn pre_campaign(&mut self) {
        let mut votes = BTreeMap::new();
        votes.insert(self.config.id, true);
        self.role = Role::PreCandidate { votes };
        self.reset_election_timer();
        let term = self.current_term + 1;
        info!(
            "node {}: asking for pre-votes for term {term}",
            self.config.id
        );
        if self.quorum() == 1 {
            self.campaign();
            return;
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.config.peers.clone() {
            self.ready.messages.push(Envelope {
                from: self.config.id,
                to: peer,
                term,
                message: Message::PreVote {
                    last_log_index,
                    last_log_term,
                },
            });
        }
    }

    /// §5.2: become a candidate, vote for ourselves, and ask everyone else.
    fn campaign(&mut self) {
        self.current_term += 1;
        self.voted_for = Some(self.config.id);
        self.hard_state_dirty = true;
        let mut votes = BTreeMap::new();
        votes.insert(self.config.id, true);
        self.role = Role::Candidate { votes };
        self.reset_election_timer();
        info!(
            "node {}: starting election for term {}",
            self.config.id, self.current_term
        );
        if self.quorum() == 1 {
            self.become_leader();
            return;
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.config.peers.clone() {
            self.send(
                peer,
                Message::RequestVote {
                    last_log_index,
                    last_log_term,
                },
            );
        }
    }

    fn become_leader(&mut self) {
        let next_index = self.log.last_index() + 1;
        let progress = self
            .config
            .peers
            .iter()
            .map(|&peer| (peer, Progress::new(next_index)))
            .collect();
        // §8: commit an entry of our own term at once, which also commits every
        // earlier entry and tells us the commit point.
        let mut reads = ReadQueue {
            term_start: next_index,
            ..ReadQueue::default()
        };
        if self.config.lease_reads {
            // The first heartbeats start the first lease.
            reads.start_round(self.ticks);
        }
        self.role = Role::Leader { progress, reads };
        self.heartbeat_elapsed = 0;
        // Check-quorum measures a full election timeout from here.
        self.election_elapsed = 0;
        info!(
            "node {}: became leader for term {}",
            self.config.id, self.current_term
        );
        self.append_own(Payload::Noop);
    }

    /// Appends an entry of the current term to the leader's own log.
    fn append_own(&mut self, payload: Payload) -> Index {
        let entry = Entry {
            index: self.log.last_index() + 1,
            term: self.current_term,
            payload,
        };
        let index = entry.index;
        self.ready.entries.push(entry.clone());
        self.log.append(entry);
        index
    }

    // ----- RequestVote -----------------------------------------------------

    fn handle_request_vote(
        &mut self,
        candidate: NodeId,
        last_log_index: Index,
        last_log_term: Term,
    ) {
        // Figure 2: grant if we have not voted for someone else this term and
        // the candidate's log is at least as up-to-date as ours (§5.4.1).
        let free_to_vote = self.voted_for.is_none_or(|v| v == candidate);
        let up_to_date = self.log.is_up_to_date(last_log_index, last_log_term);
        let vote_granted = free_to_vote && up_to_date;
        if vote_granted {
            self.voted_for = Some(candidate);
            self.hard_state_dirty = true;
            // §5.2: granting a vote resets the election timer.
            self.reset_election_timer();
        }
        debug!(
            "node {}: vote for {} in term {}: {} (free: {}, up-to-date: {})",
            self.config.id, candidate, self.current_term, vote_granted, free_to_vote, up_to_date
        );
        self.send(candidate, Message::RequestVoteResponse { vote_granted });
    }

    /// Would we vote for `candidate` in `term`? The same tests as a real vote
    /// (§5.4.1 and one vote per term), but nothing is recorded.
    fn handle_pre_vote(
        &mut self,
        candidate: NodeId,
        term: Term,
        last_index: Index,
        last_term: Term,
    ) {
        let up_to_date = self.log.is_up_to_date(last_index, last_term);
        let free = term > self.current_term
            || (self.leader_id().is_none() && self.voted_for.is_none_or(|v| v == candidate));
        let vote_granted = up_to_date && free;
        debug!(
            "node {}: pre-vote for {candidate} in term {term}: {vote_granted}",
            self.config.id
        );
        self.ready.messages.push(Envelope {
            from: self.config.id,
            to: candidate,
            term: if vote_granted {
                term
            } else {
                self.current_term
            },
            message: Message::PreVoteResponse { vote_granted },
        });
    }

    fn handle_pre_vote_response(&mut self, from: NodeId, term: Term, vote_granted: bool) {
        let quorum = self.quorum();
        let next_term = self.current_term + 1;
        let Role::PreCandidate { votes } = &mut self.role else {
            return;
        };
        if vote_granted && term != next_term {
            return; // a grant for an earlier pre-vote
        }
        *votes.entry(from).or_insert(false) |= vote_granted;
        let granted = votes.values().filter(|&&v| v).count();
        let refused = votes.len() - granted;
        if granted >= quorum {
            self.campaign();
        } else if refused >= quorum {
            // No way to win: wait as a follower for the next timeout.
            self.become_follower(self.current_term, None);
        }
    }

    fn handle_vote_response(&mut self, from: NodeId, vote_granted: bool) {
        let quorum = self.quorum();
        let Role::Candidate { votes } = &mut self.role else {
            return;
        };
        // A grant is final for the term (the voter persisted it); a refusal
        // arriving later answers an older request and must not undo it.
        *votes.entry(from).or_insert(false) |= vote_granted;
        let granted = votes.values().filter(|&&v| v).count();
        if granted >= quorum {
            self.become_leader();
        }
    }

    // ----- AppendEntries ---------------------------------------------------

    fn handle_append_entries(
        &mut self,
        leader: NodeId,
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: Index,
    ) -> Option<AppendResult> {
        match self.role {
            Role::Leader { .. } => {
                // Election Safety (§5.2) makes this impossible; a peer that does
                // it is broken, and obeying it could lose committed entries.
                error!(
                    "node {}: AppendEntries from {} while leader of term {}; ignored",
                    self.config.id, leader, self.current_term
                );
                return None;
            }
            // §5.2: a candidate that hears from the leader of its term steps down.
            Role::PreCandidate { .. } | Role::Candidate { .. } => {
                self.become_follower(self.current_term, Some(leader))
            }
            Role::Follower { leader: known } => {
                if known != Some(leader) {
                    self.role = Role::Follower {
                        leader: Some(leader),
                    };
                    self.log_new_leader();
                }
                self.election_elapsed = 0;
            }
        }

        if entries
            .iter()
            .enumerate()
            .any(|(i, e)| e.index != prev_log_index + 1 + i as Index || e.term > self.current_term)
        {
            warn!(
                "node {}: malformed AppendEntries from {} (entry indexes or terms out of order); ignored",
                self.config.id, leader
            );
            return None;
        }

        // The consistency check (§5.3).
        match self.log.term_at(prev_log_index) {
            None => {
                let last_index = self.log.last_index();
                let hint = RejectHint::LogTooShort { last_index };
                return Some(self.reject(leader, prev_log_index, hint));
            }
            Some(term) if term != prev_log_term => {
                let first_index = self.log.first_index_of_term_at(prev_log_index);
                let hint = RejectHint::ConflictingTerm {
                    conflict_term: term,
                    first_index,
                };
                return Some(self.reject(leader, prev_log_index, hint));
            }
            Some(_) => {}
        }

        // Skip entries we already have; truncate at the first conflict only.
        let last_new = prev_log_index + entries.len() as Index;
        let first_new = entries
            .iter()
            .position(|e| self.log.term_at(e.index) != Some(e.term));
        if let Some(first_new) = first_new {
            let index = entries[first_new].index;
            if index <= self.log.last_index() {
                if index <= self.commit_index {
                    // Leader Completeness (§5.4) says this cannot happen.
                    error!(
                        "node {}: leader {} would overwrite committed entry {} (commit index {}); ignored",
                        self.config.id, leader, index, self.commit_index
                    );
                    return None;
                }
                debug!(
                    "node {}: conflict at index {}; truncating {} entries",
                    self.config.id,
                    index,
                    self.log.last_index() - index + 1
                );
                self.truncate_after(index - 1);
            }
            for entry in entries.into_iter().skip(first_new) {
                self.ready.entries.push(entry.clone());
                self.log.append(entry);
            }
        }

        // Figure 2, AppendEntries step 5. `last_new` rather than our last index:
        // entries past it came from an earlier message and may yet be replaced.
        let new_commit = leader_commit.min(last_new);
        if new_commit > self.commit_index {
            self.commit_index = new_commit;
        }
        Some(AppendResult::Success {
            match_index: last_new,
        })
    }

    fn reject(&self, leader: NodeId, rejected_index: Index, hint: RejectHint) -> AppendResult {
        debug!(
            "node {}: rejecting AppendEntries at {} from {}: {:?}",
            self.config.id, rejected_index, leader, hint
        );
        AppendResult::Reject {
            rejected_index,
            hint,
        }
    }

    fn truncate_after(&mut self, last_kept: Index) {
        self.log.truncate_after(last_kept);
        self.persisted_index = self.persisted_index.min(last_kept);
        // Pending writes past the cut are void; if the cut reaches into what
        // storage already has, storage must cut too.
        self.ready.entries.retain(|e| e.index <= last_kept);
        let first_pending = self.ready.entries.first().map(|e| e.index);
        if first_pending.is_none_or(|first| first > last_kept) {
            self.ready.truncate_after = Some(
                self.ready
                    .truncate_after
                    .map_or(last_kept, |t| t.min(last_kept)),
            );
        }
    }

    fn handle_append_response(&mut self, from: NodeId, round: u64, result: AppendResult) {
        // Any answer in our term, accepting or not, shows the follower still
        // recognised us as leader when it read that round.
        if let Role::Leader { progress, .. } = &mut self.role {
            if let Some(pr) = progress.get_mut(&from) {
                pr.acked_round = pr.acked_round.max(round);
            }
        }
        self.handle_append_result(from, result);
        self.check_reads();
    }

    fn handle_append_result(&mut self, from: NodeId, result: AppendResult) {
        let last_index = self.log.last_index();
        let Role::Leader { progress, .. } = &mut self.role else {
            return;
        };
        let Some(pr) = progress.get_mut(&from) else {
            return;
        };
        match result {
            AppendResult::Success { match_index } => {
                if match_index > last_index {
                    warn!(
                        "node {}: {} claims to match up to {}, past our last index {}; ignored",
                        self.config.id, from, match_index, last_index
                    );
                    return;
                }
                pr.match_index = pr.match_index.max(match_index);
                pr.next_index = pr.next_index.max(pr.match_index + 1);
                if pr.state == ProgressState::Probe {
                    pr.state = ProgressState::Replicate;
                    pr.probe_sent = false;
                }
                self.maybe_commit();
            }
            AppendResult::Reject {
                rejected_index,
                hint,
            } => {
                if rejected_index <= pr.match_index || rejected_index >= pr.next_index {
                    // An answer to a message sent before a later success or
                    // rejection moved us on; it says nothing new. (A follower
                    // that acknowledged `match_index` holds our entry there, so
                    // a rejection at or below it is necessarily old.)
                    debug!(
                        "node {}: stale rejection at {} from {} (match {}, next {})",
                        self.config.id, rejected_index, from, pr.match_index, pr.next_index
                    );
                    return;
                }
                let next = match hint {
                    RejectHint::LogTooShort { last_index } => last_index + 1,
                    // If we have entries of the follower's conflicting term, the
                    // logs may match up to our last one of them; otherwise skip
                    // the follower's whole run of that term.
                    RejectHint::ConflictingTerm {
                        conflict_term,
                        first_index,
                    } => self
                        .log
                        .last_index_of_term(conflict_term, rejected_index)
                        .map_or(first_index, |i| i + 1),
                };
                pr.state = ProgressState::Probe;
                pr.probe_sent = false;
                pr.next_index = next.clamp(pr.match_index + 1, rejected_index.max(1));
                debug!(
                    "node {}: {} rejected at {}; next_index now {}",
                    self.config.id, from, rejected_index, pr.next_index
                );
            }
        }
    }

    /// §5.3, §5.4.2: commit the highest index stored on a majority, but only
    /// if its entry is from the current term (Figure 8).
    fn maybe_commit(&mut self) {
        let quorum = self.quorum();
        let Role::Leader { progress, .. } = &self.role else {
            return;
        };
        let matched = progress.values().map(|pr| pr.match_index);
        let majority_index = reached_by_majority(matched, self.persisted_index, quorum);
        if majority_index > self.commit_index
            && self.log.term_at(majority_index) == Some(self.current_term)
        {
            debug!(
                "node {}: commit index {} -> {}",
                self.config.id, self.commit_index, majority_index
            );
            self.commit_index = majority_index;
            self.check_reads();
        }
    }

    /// Lease reads: a majority answered a round that began less than the
    /// minimum election timeout ago (less a margin for clock drift), and with
    /// check-quorum none of them will vote for another leader before that
    /// timeout has passed since they heard us — so we still lead, and our
    /// committed state is the latest (once this term has committed an entry).
    fn lease_valid(&self) -> bool {
        if !(self.config.lease_reads && self.config.check_quorum) {
            return false;
        }
        let Role::Leader { progress, reads } = &self.role else {
            return false;
        };
        if self.commit_index < reads.term_start {
            return false;
        }
        // The leader has seen its own latest round.
        let acked = progress.values().map(|pr| pr.acked_round);
        let quorum_round = reached_by_majority(acked, reads.round, self.quorum());
        // 10% for clock drift between nodes, and one tick of granularity.
        let lease = u64::from(self.config.election_ticks_min) * 9 / 10;
        let lease = lease.saturating_sub(1);
        quorum_round > 0
            && reads
                .started_at(quorum_round)
                .is_some_and(|start| self.ticks < start + lease)
    }

    /// Releases every pending read whose round a majority has answered and
    /// whose index is committed (ReadIndex, §6.4 of the dissertation).
    fn check_reads(&mut self) {
        let quorum = self.quorum();
        let Role::Leader { progress, reads } = &mut self.role else {
            return;
        };
        if reads.pending.is_empty() {
            return;
        }
        // The leader vouches for itself, in any round.
        let acked = progress.values().map(|pr| pr.acked_round);
        let confirmed = reached_by_majority(acked, u64::MAX, quorum);
        while let Some(read) = reads.pending.front() {
            if read.round > confirmed || read.index > self.commit_index {
                break;
            }
            self.ready.reads.push(ReadyRead {
                id: read.id,
                index: read.index,
            });
            reads.pending.pop_front();
        }
    }

    fn send(&mut self, to: NodeId, message: Message) {
        self.ready.messages.push(Envelope {
            from: self.config.id,
            to,
            term: self.current_term,
            message,
        });
    }
}

/// The highest value that a majority (`quorum` members, counting the leader's
/// own value `own`) has reached: an index replicated, a round answered.
fn reached_by_majority(peers: impl Iterator<Item = u64>, own: u64, quorum: usize) -> u64 {
    let mut values: Vec<u64> = peers.collect();
    values.push(own);
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[quorum - 1]
}

#[cfg(test)]
mod tests;
