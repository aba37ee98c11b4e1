//! [`RaftCore`]: one node's Raft state machine — the struct, its inputs and
//! outputs, and the role transitions. The rules themselves live by topic in
//! the submodules: `core/election.rs` (§5.2, §5.4.1, pre-vote and check-quorum of
//! §9.6), `core/replication.rs` (§5.3, §5.4.2: AppendEntries and commitment) and
//! `core/reads.rs` (§6.4: ReadIndex and leases). The module docs of [`crate::raft`]
//! explain the protocol as a whole.
//!
//! The core is a plain struct. It does no I/O and reads no clock: the node's
//! threads feed it inputs and carry out what it asks for.
//!
//! * **Inputs.** [`RaftCore::step`] takes a message from a peer,
//!   [`RaftCore::tick`] advances logical time by one tick, [`RaftCore::propose`]
//!   offers a client command, [`RaftCore::read_index`] starts a linearizable
//!   read, and [`RaftCore::persisted`] reports that the log is durable up to
//!   some entry. Snapshots (§7, `core/snapshot.rs`) add
//!   [`RaftCore::snapshot_taken`] and [`RaftCore::snapshot_received`].
//! * **Outputs.** [`RaftCore::take_ready`] hands back a [`Ready`]: the hard
//!   state and log entries to write, the messages to send *after* that write is
//!   durable, the entries that are now committed and may be applied, reads
//!   that may be served, and the peers whose replication thread should call
//!   [`RaftCore::append_for`].

mod election;
mod membership;
mod reads;
mod replication;
mod snapshot;

pub use membership::{ProposeError, TransferError};
pub use snapshot::{Outgoing, Restored, SnapshotChunk};

use super::log::RaftLog;
use super::membership::{ConfigLog, Configuration};
use super::message::{
    AppendResult, Entry, Envelope, HardState, Index, Message, NodeId, Payload, RejectHint,
    SnapshotResult, Term,
};
use super::progress::Progress;
use super::read_only::ReadOnly;
use super::ready::Ready;
use log::{debug, info, warn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::fmt;

/// The core's settings, in logical ticks.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub id: NodeId,
    /// The other voters of a new cluster, for [`RaftCore::new`] (tests).
    /// A node passes its configuration in [`Restored`] instead; from then
    /// on membership comes from the log ([`crate::raft::membership`]).
    pub peers: Vec<NodeId>,
    /// The incarnation of this node's data dir (0 if it has none), which
    /// the leader records in the configuration.
    pub incarnation: u64,
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
    /// After a snapshot, the log keeps this many entries before its last
    /// included index, so a follower only slightly behind is sent entries,
    /// not the whole snapshot (§7).
    pub snapshot_keep: Index,
}

impl CoreConfig {
    /// Ticks of 10 ms: election timeout 150–300 ms, heartbeat 50 ms.
    pub fn new(id: NodeId, peers: Vec<NodeId>) -> CoreConfig {
        CoreConfig {
            id,
            peers,
            incarnation: 0,
            election_ticks_min: 15,
            election_ticks_max: 30,
            heartbeat_ticks: 5,
            max_append_bytes: 1024 * 1024,
            seed: id,
            pre_vote: true,
            check_quorum: true,
            lease_reads: false,
            snapshot_keep: 5000,
        }
    }
}

/// A follower being sent a snapshot that says nothing about it for this many
/// maximum election timeouts is probed again (see
/// [`Progress::tick_snapshot`]).
const SNAPSHOT_SILENCE_TIMEOUTS: u32 = 10;

/// Which of the three roles a node is in (§5.1), plus pre-candidate (§9.6).
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

/// A proposal or read was made to a node that is not the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotLeader {
    /// The leader of the current term, if this node knows it.
    pub leader: Option<NodeId>,
}

/// A role and the state only that role has.
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
        /// Every other member's, and for a while a removed member's (so it
        /// learns it was removed; see `core/membership.rs`).
        progress: BTreeMap<NodeId, Progress>,
        reads: ReadOnly,
        /// A leadership transfer under way (§3.10).
        transfer: Option<membership::Transfer>,
    },
}

/// One node's Raft state machine. See the module docs.
#[derive(Debug)]
pub struct RaftCore {
    config: CoreConfig,
    // Persistent state on all servers (Figure 2).
    current_term: Term,
    voted_for: Option<NodeId>,
    log: RaftLog,
    /// The configurations the log holds; the latest is in force (§4.1).
    configs: ConfigLog,
    /// Incarnations of other members' data dirs, as the node learned them
    /// from handshakes, for the leader to record.
    incarnations: BTreeMap<NodeId, u64>,
    /// This node's removal was reported in a [`Ready`].
    removal_reported: bool,
    /// The term in which this node, as leader, last sent a TimeoutNow: from
    /// then on its followers may vote for another leader in spite of their
    /// lease, so its own lease means nothing for the rest of that term.
    timeout_now_term: Term,
    // Volatile state on all servers.
    commit_index: Index,
    /// The highest index handed out in [`Ready::committed`]; the state machine
    /// applies exactly those, in order, so this is Figure 2's `lastApplied` as
    /// far as the core is concerned.
    last_applied: Index,
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
    /// Followers found to have lost entries they acknowledged, and brought
    /// up to date again.
    followers_repaired: u64,
    /// The core started with a term past 0: the node ran before, and may
    /// have been in some leader's lease when it stopped.
    restarted: bool,
    /// The last included index and term of the latest durable snapshot,
    /// (0, 0) before any: what a follower that needs compacted entries is
    /// sent (§7).
    snapshot: (Index, Term),
    /// A chunk of a snapshot a leader sent, waiting for the node to write
    /// it ([`RaftCore::take_snapshot_chunk`]).
    incoming_chunk: Option<SnapshotChunk>,
    snapshots_installed: u64,
    /// The highest commit index handed to storage to save.
    commit_saved: Index,
    /// Outputs accumulated since the last [`RaftCore::take_ready`] (the log
    /// keeps the entries to write).
    ready: Ready,
    hard_state_dirty: bool,
}

impl RaftCore {
    /// Builds a core from what storage recovered. Every node starts as a
    /// follower (§5.2); the recovered log is durable by definition. The commit
    /// index is volatile (Figure 2), so it starts at 0 and the node relearns it
    /// from the leader, re-applying the log to a fresh state machine.
    pub fn new(config: CoreConfig, hard_state: HardState, entries: Vec<Entry>) -> RaftCore {
        let voters = config.peers.iter().chain([&config.id]);
        let bootstrap = Configuration::of_voters(voters.map(|&id| (id, String::new())));
        let mut configs = ConfigLog::new(0, bootstrap);
        for entry in &entries {
            if let Payload::Config(c) = &entry.payload {
                configs.push(entry.index, c.clone());
            }
        }
        RaftCore::with_log(config, hard_state, RaftLog::new(entries), configs)
    }

    fn with_log(
        config: CoreConfig,
        hard_state: HardState,
        log: RaftLog,
        configs: ConfigLog,
    ) -> RaftCore {
        let mut core = RaftCore {
            configs,
            incarnations: BTreeMap::new(),
            removal_reported: false,
            timeout_now_term: 0,
            rng: StdRng::seed_from_u64(config.seed),
            config,
            current_term: hard_state.current_term,
            voted_for: hard_state.voted_for,
            log,
            commit_index: 0,
            last_applied: 0,
            snapshot: (0, 0),
            incoming_chunk: None,
            snapshots_installed: 0,
            commit_saved: 0,
            role: Role::Follower { leader: None },
            election_elapsed: 0,
            randomized_election_timeout: 0,
            heartbeat_elapsed: 0,
            ticks: 0,
            read_rounds: 0,
            lease_reads_served: 0,
            followers_repaired: 0,
            restarted: hard_state.current_term > 0,
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

    /// The voters of the configuration in force, in ascending order.
    pub fn members(&self) -> Vec<NodeId> {
        self.configs.latest().voters().collect()
    }

    /// Whether `id` is a member (voter or learner) of the configuration in
    /// force.
    pub fn is_member(&self, id: NodeId) -> bool {
        self.configs.latest().contains(id)
    }

    /// The configuration in force: the latest in the log (§4.1).
    pub fn configuration(&self) -> &Configuration {
        self.configs.latest()
    }

    /// The index of the entry that set the configuration in force (0: the
    /// bootstrap configuration, or one from before the snapshot).
    pub fn config_index(&self) -> Index {
        self.configs.latest_index()
    }

    /// The configuration in force at `index`, and the index that set it.
    pub fn configuration_at(&self, index: Index) -> (Index, &Configuration) {
        self.configs.at(index)
    }

    /// Whether the configuration in force is not yet committed.
    pub fn config_change_in_progress(&self) -> bool {
        self.configs.latest_index() > self.commit_index
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
        self.log.persisted_index()
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

    /// How many times a follower was found to have lost entries it had
    /// acknowledged (and was replicated to again from its log's end).
    pub fn followers_repaired(&self) -> u64 {
        self.followers_repaired
    }

    pub fn randomized_election_timeout(&self) -> u32 {
        self.randomized_election_timeout
    }

    /// The voters of the configuration in force (this node too, if it is
    /// one).
    fn voters(&self) -> Vec<NodeId> {
        self.configs.latest().voters().collect()
    }

    /// Whether this node votes in the configuration in force: only voters
    /// campaign, and only voters count towards majorities.
    pub fn is_voter(&self) -> bool {
        self.configs.latest().is_voter(self.config.id)
    }

    // ----- Inputs ----------------------------------------------------------

    /// Advances logical time to `ticks` ticks since the core was created,
    /// ticking once for every tick it is behind. A node derives `ticks` from
    /// its monotonic clock each time it uses the core, so a timer thread
    /// that runs late (or a process that was paused) loses no time: leases
    /// and stickiness (§6.4, §9.6) are measured in real time, not in timer
    /// wake-ups. Past a bound, the missed ticks only move the clock: every
    /// timeout they could fire has fired by then.
    pub fn tick_to(&mut self, ticks: u64) {
        let behind = ticks.saturating_sub(self.ticks);
        let bound =
            u64::from(SNAPSHOT_SILENCE_TIMEOUTS + 2) * u64::from(self.config.election_ticks_max);
        for _ in 0..behind.min(bound) {
            self.tick();
        }
        self.ticks = self.ticks.max(ticks);
    }

    /// Ticks since the core was created: its notion of time.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        self.election_elapsed += 1;
        if self.role() == RoleKind::Leader {
            self.tick_leader();
        } else if !self.is_voter() || self.forgot_its_votes() {
            // A learner (or a node not yet, or no longer, a member) never
            // starts an election (§4.2.1); nor does a member whose data dir
            // is not the one recorded for it (see `forgot_its_votes`).
            self.election_elapsed = self.election_elapsed.min(self.randomized_election_timeout);
        } else if self.election_elapsed >= self.randomized_election_timeout {
            // §5.2: no word from a leader and no vote granted for a whole
            // election timeout: start an election — first asking whether it
            // could be won, if pre-vote is on.
            if self.config.pre_vote {
                self.pre_campaign();
            } else {
                self.campaign(false);
            }
        }
    }

    fn tick_leader(&mut self) {
        let ticks = self.ticks;
        self.tick_transfer();
        self.propose_automatic_change();
        let Role::Leader {
            progress, reads, ..
        } = &mut self.role
        else {
            return;
        };
        self.heartbeat_elapsed += 1;
        let snapshot_limit = SNAPSHOT_SILENCE_TIMEOUTS * self.config.election_ticks_max;
        for (&peer, pr) in progress.iter_mut() {
            if pr.tick_snapshot(snapshot_limit) {
                warn!(
                    "node {}: no word from {peer} about its snapshot for {snapshot_limit} ticks; \
                     starting over",
                    self.config.id
                );
            }
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            // §5.2: leaders send periodic heartbeats to keep their authority
            // and prevent new elections. Each heartbeat starts a new round,
            // so its answers renew the read lease.
            self.heartbeat_elapsed = 0;
            progress.values_mut().for_each(Progress::heartbeat_due);
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

    /// Processes one message from a peer.
    pub fn step(&mut self, env: Envelope) {
        // Messages from non-members are not dropped: a leader added after
        // this node last heard may need to catch it up. Only their vote
        // requests are ignored (`ignores_vote_request`).
        if env.to != self.config.id || env.from == self.config.id {
            warn!(
                "node {}: dropping message from {} addressed to {}",
                self.config.id, env.from, env.to
            );
            return;
        }
        if self.ignores_vote_request(&env) {
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
            self.refuse_stale(env);
            return;
        }
        if env.term == self.current_term {
            if let Role::Leader { progress, .. } = &mut self.role {
                if let Some(pr) = progress.get_mut(&env.from) {
                    pr.mark_active();
                }
            }
        }
        self.handle(env);
    }

    /// §5.1: a request from a stale term is refused with our term, so that
    /// the sender learns it is behind and steps down; a stale reply is
    /// dropped.
    fn refuse_stale(&mut self, env: Envelope) {
        debug!(
            "node {}: stale {} from {} (term {} < {})",
            self.config.id,
            env.message.name(),
            env.from,
            env.term,
            self.current_term
        );
        let refusal = match env.message {
            Message::RequestVote { .. } => Message::RequestVoteResponse {
                vote_granted: false,
            },
            Message::PreVote { .. } => Message::PreVoteResponse {
                vote_granted: false,
            },
            Message::AppendEntries { prev_log_index, .. } => Message::AppendEntriesResponse {
                // Round 0: this proves nothing about any current leader's
                // reads.
                round: 0,
                result: AppendResult::Reject {
                    rejected_index: prev_log_index,
                    hint: RejectHint::LogTooShort {
                        last_index: self.log.last_index(),
                    },
                },
            },
            Message::InstallSnapshot {
                last_included_index,
                ..
            } => Message::InstallSnapshotResponse {
                last_included_index,
                result: SnapshotResult::Failed,
            },
            // A stale leader's TimeoutNow: that leader is gone.
            Message::TimeoutNow
            | Message::RequestVoteResponse { .. }
            | Message::PreVoteResponse { .. }
            | Message::AppendEntriesResponse { .. }
            | Message::InstallSnapshotResponse { .. } => return,
        };
        self.send(env.from, refusal);
    }

    /// Hands a message of the current term (or a pre-vote) to its rule.
    fn handle(&mut self, env: Envelope) {
        let from = env.from;
        match env.message {
            Message::RequestVote {
                last_log_index,
                last_log_term,
                ..
            } => self.handle_request_vote(from, last_log_index, last_log_term),
            Message::TimeoutNow => self.handle_timeout_now(from),
            Message::RequestVoteResponse { vote_granted } => {
                self.handle_vote_response(from, vote_granted)
            }
            Message::PreVote {
                last_log_index,
                last_log_term,
            } => self.handle_pre_vote(from, env.term, last_log_index, last_log_term),
            Message::PreVoteResponse { vote_granted } => {
                self.handle_pre_vote_response(from, env.term, vote_granted)
            }
            Message::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                round,
            } => {
                let result = self.handle_append_entries(
                    from,
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit,
                );
                if let Some(result) = result {
                    self.send(from, Message::AppendEntriesResponse { round, result });
                }
            }
            Message::AppendEntriesResponse { round, result } => {
                self.handle_append_response(from, round, result)
            }
            Message::InstallSnapshot {
                last_included_index,
                last_included_term,
                offset,
                total,
                data,
                done,
            } => self.handle_install_snapshot(
                from,
                SnapshotChunk {
                    from,
                    term: env.term,
                    last_included_index,
                    last_included_term,
                    offset,
                    total,
                    data,
                    done,
                },
            ),
            Message::InstallSnapshotResponse {
                last_included_index,
                result,
            } => self.handle_install_snapshot_response(from, last_included_index, result),
        }
    }

    /// Takes the outputs accumulated since the last call.
    pub fn take_ready(&mut self) -> Ready {
        let mut ready = std::mem::take(&mut self.ready);
        if self.hard_state_dirty {
            self.hard_state_dirty = false;
            ready.hard_state = Some(self.hard_state());
        }
        let unwritten = self.log.take_unwritten();
        ready.reset_log = unwritten.reset;
        ready.truncate_after = unwritten.truncate_after;
        ready.entries = unwritten.entries;
        if self.commit_index > self.commit_saved {
            self.commit_saved = self.commit_index;
            ready.commit_index = Some(self.commit_index);
        }
        if let Some(index) = self.removed_at().filter(|_| !self.removal_reported) {
            self.removal_reported = true;
            ready.removed = Some(index);
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
        if let Role::Leader {
            reads, transfer, ..
        } = &mut self.role
        {
            self.ready.aborted_reads.extend(reads.abort_all());
            if let Some(t) = transfer.take() {
                info!(
                    "node {}: stepped down in term {}; leadership transfer to {} ends here",
                    self.config.id, term, t.target
                );
            }
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

    fn become_leader(&mut self) {
        let next_index = self.log.last_index() + 1;
        // Learners too: they get the log, they just do not count.
        let progress = self
            .configs
            .latest()
            .members
            .keys()
            .filter(|&&peer| peer != self.config.id)
            .map(|&peer| (peer, Progress::new(next_index)))
            .collect();
        // §8: commit an entry of our own term at once, which also commits every
        // earlier entry and tells us the commit point; reads wait for it.
        let mut reads = ReadOnly::new(next_index);
        if self.config.lease_reads {
            // The first heartbeats start the first lease.
            reads.start_round(self.ticks);
        }
        self.role = Role::Leader {
            progress,
            reads,
            transfer: None,
        };
        self.heartbeat_elapsed = 0;
        // Check-quorum measures a full election timeout from here.
        self.election_elapsed = 0;
        info!(
            "node {}: became leader for term {}",
            self.config.id, self.current_term
        );
        self.append_own(Payload::Noop);
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

#[cfg(test)]
pub(crate) mod tests;
