//! Unit tests of the Raft core, one per rule of the paper, modelled on etcd's
//! `raft_paper_test.go`. Section numbers refer to "In Search of an
//! Understandable Consensus Algorithm (Extended Version)".
//!
//! Two styles are used: single cores driven by hand-made envelopes (to check
//! one rule precisely), and a deterministic in-memory [`Network`] of cores (to
//! check rules that need several nodes to interact).

use super::*;
use crate::raft::membership::Configuration;
use crate::raft::{ProgressState, ReadyRead};
use std::collections::{BTreeSet, VecDeque};

// ===========================================================================
// Helpers: building cores, entries and envelopes
// ===========================================================================

/// `append_for` for tests that never compact: the AppendEntries, if any.
pub(crate) trait NextAppend {
    fn next_append(&mut self, peer: NodeId) -> Option<Envelope>;
}

impl NextAppend for RaftCore {
    fn next_append(&mut self, peer: NodeId) -> Option<Envelope> {
        match self.append_for(peer)? {
            Outgoing::Append(envelope) => Some(envelope),
            Outgoing::Snapshot { .. } => panic!("a snapshot for {peer} in a test without any"),
        }
    }
}

/// The configuration of node `id` in a cluster of nodes `1..=n`, with the
/// defaults of [`CoreConfig::new`] (election 15–30 ticks, heartbeat 5).
fn config(id: NodeId, n: u64) -> CoreConfig {
    let peers = (1..=n).filter(|&p| p != id).collect();
    let mut cfg = CoreConfig::new(id, peers);
    cfg.seed = id * 7919 + n;
    // The paper's algorithm as Figure 2 states it; the extensions (§9.6 of
    // the dissertation) have their own tests below, via `extended_config`.
    cfg.pre_vote = false;
    cfg.check_quorum = false;
    cfg
}

/// A command whose bytes depend only on (index, term), so that two entries with
/// the same index and term are identical, as the Log Matching property says.
fn entry(index: Index, term: Term) -> Entry {
    Entry {
        index,
        term,
        payload: Payload::Command(format!("{index}@{term}").into_bytes()),
    }
}

/// Entries 1, 2, … with the given terms.
fn entries_of(terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &t)| entry(i as Index + 1, t))
        .collect()
}

/// A fresh core of a cluster `1..=n`, term 0, empty log.
fn new_core(id: NodeId, n: u64) -> RaftCore {
    RaftCore::new(config(id, n), HardState::default(), Vec::new())
}

/// A core recovered with the given log (`terms[i]` is the term of index i+1)
/// and hard state.
fn core_with_log(
    id: NodeId,
    n: u64,
    terms: &[Term],
    term: Term,
    voted_for: Option<NodeId>,
) -> RaftCore {
    let hs = HardState {
        current_term: term,
        voted_for,
    };
    RaftCore::new(config(id, n), hs, entries_of(terms))
}

fn terms_of(core: &RaftCore) -> Vec<Term> {
    let log = core.log();
    log.slice(1, log.last_index())
        .iter()
        .map(|e| e.term)
        .collect()
}

fn log_entries(core: &RaftCore) -> Vec<Entry> {
    core.log().slice(1, core.log().last_index()).to_vec()
}

fn env(from: NodeId, to: NodeId, term: Term, message: Message) -> Envelope {
    Envelope {
        from,
        to,
        term,
        message,
    }
}

fn append(
    from: NodeId,
    to: NodeId,
    term: Term,
    prev: (Index, Term),
    entries: Vec<Entry>,
    commit: Index,
) -> Envelope {
    env(
        from,
        to,
        term,
        Message::AppendEntries {
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            entries,
            leader_commit: commit,
            round: 0,
        },
    )
}

fn heartbeat(from: NodeId, to: NodeId, term: Term) -> Envelope {
    append(from, to, term, (0, 0), Vec::new(), 0)
}

fn success(from: NodeId, to: NodeId, term: Term, match_index: Index) -> Envelope {
    env(
        from,
        to,
        term,
        Message::AppendEntriesResponse {
            round: 0,
            result: AppendResult::Success { match_index },
        },
    )
}

fn reject(
    from: NodeId,
    to: NodeId,
    term: Term,
    rejected_index: Index,
    hint: RejectHint,
) -> Envelope {
    env(
        from,
        to,
        term,
        Message::AppendEntriesResponse {
            round: 0,
            result: AppendResult::Reject {
                rejected_index,
                hint,
            },
        },
    )
}

fn vote_request(from: NodeId, to: NodeId, term: Term, last: (Index, Term)) -> Envelope {
    env(
        from,
        to,
        term,
        Message::RequestVote {
            last_log_index: last.0,
            last_log_term: last.1,
            leadership_transfer: false,
        },
    )
}

fn vote_response(from: NodeId, to: NodeId, term: Term, granted: bool) -> Envelope {
    env(
        from,
        to,
        term,
        Message::RequestVoteResponse {
            vote_granted: granted,
        },
    )
}

/// Ticks until the core starts a new election (its term grows, or with
/// pre-vote it starts asking), returning the number of ticks it took. Panics
/// if that takes longer than the maximum election timeout.
fn tick_until_campaign(core: &mut RaftCore) -> u32 {
    let term = core.current_term();
    for ticks in 1..=core.config().election_ticks_max {
        core.tick();
        if core.current_term() > term || core.role() == RoleKind::PreCandidate {
            return ticks;
        }
    }
    panic!(
        "node {} did not campaign within the maximum election timeout",
        core.id()
    );
}

/// Makes `core` leader of the next term by timing it out and feeding it a
/// granted vote from every peer. The outputs are left in its Ready.
fn make_leader(core: &mut RaftCore) {
    tick_until_campaign(core);
    if core.role() == RoleKind::PreCandidate {
        let next = core.current_term() + 1;
        for peer in core.config().peers.clone() {
            core.step(env(
                peer,
                core.id(),
                next,
                Message::PreVoteResponse { vote_granted: true },
            ));
        }
    }
    let term = core.current_term();
    for peer in core.config().peers.clone() {
        core.step(vote_response(peer, core.id(), term, true));
    }
    assert_eq!(core.role(), RoleKind::Leader);
}

/// Calls `append_for(peer)` until it has nothing more to send.
fn drain_appends(core: &mut RaftCore, peer: NodeId) -> Vec<Envelope> {
    let mut out = Vec::new();
    while let Some(env) = core.next_append(peer) {
        out.push(env);
        assert!(out.len() < 10_000, "append_for never runs dry");
    }
    out
}

/// A leader of term `term` (with log `terms` before its no-op) in a cluster of
/// `n`, whose own log is durable and whose every follower has acknowledged the
/// whole log, so that each is in Replicate state with nothing to send.
fn steady_leader(n: u64, terms: &[Term], term: Term) -> RaftCore {
    let mut leader = core_with_log(1, n, terms, term - 1, None);
    make_leader(&mut leader);
    assert_eq!(leader.current_term(), term);
    let last = leader.log().last_index();
    leader.persisted(last, term);
    for peer in 2..=n {
        leader.step(success(peer, 1, term, last));
    }
    settle(&mut leader);
    leader
}

/// Takes the Ready and lets every replication thread send what it wants.
fn settle(core: &mut RaftCore) -> (Ready, Vec<Envelope>) {
    let ready = core.take_ready();
    let mut sent = Vec::new();
    for &peer in &ready.replicate {
        sent.extend(drain_appends(core, peer));
    }
    (ready, sent)
}

fn append_entries_of(env: &Envelope) -> (Index, Term, &[Entry], Index) {
    match &env.message {
        Message::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
            ..
        } => (*prev_log_index, *prev_log_term, entries, *leader_commit),
        other => panic!("expected AppendEntries, got {other:?}"),
    }
}

fn only_message(ready: &Ready) -> &Envelope {
    assert_eq!(ready.messages.len(), 1, "messages: {:?}", ready.messages);
    &ready.messages[0]
}

fn append_result(env: &Envelope) -> &AppendResult {
    match &env.message {
        Message::AppendEntriesResponse { result, .. } => result,
        other => panic!("expected AppendEntriesResponse, got {other:?}"),
    }
}

fn vote_granted(env: &Envelope) -> bool {
    match env.message {
        Message::RequestVoteResponse { vote_granted } => vote_granted,
        ref other => panic!("expected RequestVoteResponse, got {other:?}"),
    }
}

// ===========================================================================
// A deterministic network of cores
// ===========================================================================

/// Decides whether the network loses an envelope.
type DropRule = Box<dyn Fn(&Envelope) -> bool>;

/// Cores `1..=n` exchanging envelopes through one FIFO queue. No threads, no
/// clock: time passes only when a test ticks a core. Storage is simulated by
/// reporting every write as durable as soon as it is taken from the Ready.
struct Network {
    cores: BTreeMap<NodeId, RaftCore>,
    queue: VecDeque<Envelope>,
    /// Directed links that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Message kinds (by [`Message::name`]) dropped everywhere.
    ignored: BTreeSet<&'static str>,
    /// An extra drop rule, for scenarios that need surgical losses.
    drop_if: Option<DropRule>,
    /// Everything each node was told to apply, in order.
    applied: BTreeMap<NodeId, Vec<Entry>>,
    /// Every envelope actually stepped into a core, in order.
    delivered: Vec<Envelope>,
    /// The nodes that were told they were removed, and at which index.
    removed: BTreeMap<NodeId, Index>,
    /// The reads each node released, in order.
    reads: BTreeMap<NodeId, Vec<ReadyRead>>,
}

impl Network {
    fn new(n: u64) -> Network {
        Network::from_cores((1..=n).map(|id| new_core(id, n)).collect())
    }

    fn from_cores(cores: Vec<RaftCore>) -> Network {
        Network {
            applied: cores.iter().map(|c| (c.id(), Vec::new())).collect(),
            cores: cores.into_iter().map(|c| (c.id(), c)).collect(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            ignored: BTreeSet::new(),
            drop_if: None,
            delivered: Vec::new(),
            removed: BTreeMap::new(),
            reads: BTreeMap::new(),
        }
    }

    /// Adds a node to the network (not to the cluster's configuration).
    fn add_core(&mut self, core: RaftCore) {
        self.applied.insert(core.id(), Vec::new());
        self.cores.insert(core.id(), core);
    }

    fn core(&self, id: NodeId) -> &RaftCore {
        &self.cores[&id]
    }

    fn core_mut(&mut self, id: NodeId) -> &mut RaftCore {
        self.cores.get_mut(&id).unwrap()
    }

    fn ids(&self) -> Vec<NodeId> {
        self.cores.keys().copied().collect()
    }

    fn drop_link(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    /// Cuts every link to and from `id`.
    fn isolate(&mut self, id: NodeId) {
        for other in self.ids() {
            if other != id {
                self.drop_link(id, other);
                self.drop_link(other, id);
            }
        }
    }

    /// Crash and restart `id`: a new core from its durable hard state and log
    /// (everything is durable at once here), with a fresh state machine.
    fn restart(&mut self, id: NodeId) {
        let old = self.core(id);
        let core = RaftCore::new(old.config().clone(), old.hard_state(), log_entries(old));
        self.cores.insert(id, core);
        self.applied.insert(id, Vec::new());
    }

    fn ignore(&mut self, kind: &'static str) {
        self.ignored.insert(kind);
    }

    /// Restores every link and stops ignoring anything.
    fn heal(&mut self) {
        self.cut.clear();
        self.ignored.clear();
        self.drop_if = None;
    }

    /// Collects the outputs of every core: simulates storage, records applied
    /// entries and queues messages. Returns whether anything happened.
    fn flush(&mut self) -> bool {
        let mut busy = false;
        for (&id, core) in self.cores.iter_mut() {
            let ready = core.take_ready();
            if ready.is_empty() {
                continue;
            }
            busy = true;
            // The write is durable at once; report it.
            if let Some(last) = ready.entries.last() {
                core.persisted(last.index, last.term);
            }
            self.applied.get_mut(&id).unwrap().extend(ready.committed);
            if let Some(index) = ready.removed {
                self.removed.insert(id, index);
            }
            self.reads.entry(id).or_default().extend(ready.reads);
            self.queue.extend(ready.messages);
            for peer in ready.replicate {
                while let Some(env) = core.next_append(peer) {
                    self.queue.push_back(env);
                }
            }
        }
        busy
    }

    fn dropped(&self, env: &Envelope) -> bool {
        self.cut.contains(&(env.from, env.to))
            || self.ignored.contains(env.message.name())
            || self.drop_if.as_ref().is_some_and(|f| f(env))
            || !self.cores.contains_key(&env.to)
    }

    /// Steps the oldest queued envelope into its target (unless dropped).
    /// Returns false if the queue was empty.
    fn deliver_one(&mut self) -> bool {
        let Some(env) = self.queue.pop_front() else {
            return false;
        };
        if !self.dropped(&env) {
            self.delivered.push(env.clone());
            self.core_mut(env.to).step(env);
        }
        true
    }

    /// Runs until no core has output and no message is in flight.
    fn deliver_all(&mut self) {
        for _ in 0..1_000_000 {
            let busy = self.flush();
            if !self.deliver_one() && !busy {
                return;
            }
        }
        panic!("network never went quiet");
    }

    fn tick(&mut self, id: NodeId) {
        self.core_mut(id).tick();
    }

    /// Times `id` out until it wins an election (a campaign can fail when the
    /// voters already voted in that term; the next one then succeeds).
    fn elect(&mut self, id: NodeId) {
        for _ in 0..5 {
            tick_until_campaign(self.core_mut(id));
            self.deliver_all();
            if self.core(id).role() == RoleKind::Leader {
                return;
            }
        }
        panic!("node {id} could not get elected");
    }

    /// Ticks `id` (a leader) through one heartbeat interval, then delivers.
    fn heartbeat(&mut self, id: NodeId) {
        for _ in 0..self.core(id).config().heartbeat_ticks {
            self.tick(id);
        }
        self.deliver_all();
    }

    fn propose(&mut self, id: NodeId, data: &[u8]) -> (Index, Term) {
        let at = self
            .core_mut(id)
            .propose(data.to_vec())
            .expect("not leader");
        self.deliver_all();
        at
    }

    /// The leader of the highest term, if any.
    fn leader(&self) -> Option<NodeId> {
        self.cores
            .values()
            .filter(|c| c.role() == RoleKind::Leader)
            .max_by_key(|c| c.current_term())
            .map(|c| c.id())
    }

    /// Every node applied entries 1, 2, 3, … in order, each once, and all
    /// applied sequences are prefixes of one another.
    fn check_applied_consistent(&self) {
        let longest = self.applied.values().max_by_key(|a| a.len()).unwrap();
        for (id, applied) in &self.applied {
            for (i, e) in applied.iter().enumerate() {
                assert_eq!(e.index, i as Index + 1, "node {id} applied out of order");
            }
            assert_eq!(
                applied[..],
                longest[..applied.len()],
                "node {id} applied a different sequence"
            );
        }
    }
}

/// A small deterministic pseudo-random generator (Knuth's MMIX LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

// ===========================================================================
// §5.1 Terms
// ===========================================================================

/// §5.1: "If a server's current term is smaller than the other's, it updates
/// its current term to the larger value. If a candidate or leader discovers
/// that its term is out of date, it immediately reverts to follower state."
#[test]
fn test_update_term_from_message_5_1() {
    for role in [RoleKind::Follower, RoleKind::Candidate, RoleKind::Leader] {
        for message in [
            heartbeat(2, 1, 5),
            vote_response(2, 1, 5, false),
            success(2, 1, 5, 0),
        ] {
            let mut core = core_with_log(1, 3, &[1], 1, Some(3));
            match role {
                RoleKind::Follower => {}
                RoleKind::Candidate => {
                    tick_until_campaign(&mut core);
                }
                RoleKind::Leader => make_leader(&mut core),
                RoleKind::PreCandidate => unreachable!("pre-vote is off here"),
            }
            assert_eq!(core.role(), role);
            assert!(core.current_term() < 5);
            core.take_ready();

            let is_append = matches!(message.message, Message::AppendEntries { .. });
            core.step(message);
            assert_eq!(core.role(), RoleKind::Follower, "{role} did not step down");
            assert_eq!(core.current_term(), 5);
            assert_eq!(core.voted_for(), None, "vote not cleared for a new term");
            // A heartbeat names the leader; a reply does not.
            let expected_leader = is_append.then_some(2);
            assert_eq!(core.leader_id(), expected_leader);
            let ready = core.take_ready();
            assert_eq!(
                ready.hard_state,
                Some(HardState {
                    current_term: 5,
                    voted_for: None
                }),
                "the new term must be persisted"
            );
        }
    }
}

/// §5.1: "If a server receives a request with a stale term number, it rejects
/// the request", answering with its own term so the sender learns it is behind.
#[test]
fn test_reject_stale_term_message_5_1() {
    let mut core = core_with_log(1, 3, &[1, 2], 3, Some(2));
    let before = log_entries(&core);

    // A stale AppendEntries is refused; the refusal carries our term.
    core.step(append(2, 1, 2, (2, 2), vec![entry(3, 2)], 3));
    let ready = core.take_ready();
    let reply = only_message(&ready);
    assert_eq!((reply.to, reply.term), (2, 3));
    assert!(matches!(
        append_result(reply),
        AppendResult::Reject {
            rejected_index: 2,
            ..
        }
    ));
    assert_eq!(ready.hard_state, None);
    assert!(ready.entries.is_empty());
    assert_eq!(log_entries(&core), before);
    assert_eq!(core.commit_index(), 0);
    assert_eq!(core.leader_id(), None, "a stale leader is not our leader");

    // A stale RequestVote is refused, with our term.
    core.step(vote_request(3, 1, 2, (9, 9)));
    let ready = core.take_ready();
    let reply = only_message(&ready);
    assert_eq!((reply.to, reply.term), (3, 3));
    assert!(!vote_granted(reply));
    assert_eq!(core.voted_for(), Some(2));
    assert_eq!(ready.hard_state, None);

    // A stale reply is dropped silently.
    core.step(vote_response(3, 1, 2, true));
    core.step(success(3, 1, 2, 2));
    assert!(core.take_ready().is_empty());
    assert_eq!(core.role(), RoleKind::Follower);
    assert_eq!(core.current_term(), 3);
}

/// A leader that learns of a higher term from a reply steps down (§5.1).
#[test]
fn test_step_down_on_higher_term_response() {
    for reply in [
        success(2, 1, 9, 1),
        reject(2, 1, 9, 1, RejectHint::LogTooShort { last_index: 0 }),
        vote_response(2, 1, 9, false),
    ] {
        let mut leader = steady_leader(3, &[], 1);
        leader.step(reply);
        assert_eq!(leader.role(), RoleKind::Follower);
        assert_eq!(leader.current_term(), 9);
        assert_eq!(leader.leader_id(), None);
        assert!(leader.progress(2).is_none());
        assert!(
            leader.next_append(2).is_none(),
            "an ex-leader must not replicate"
        );
        assert!(leader.propose(b"x".to_vec()).is_err());
        let ready = leader.take_ready();
        assert_eq!(ready.hard_state.map(|h| h.current_term), Some(9));
        assert!(ready.replicate.is_empty());
    }
}

// ===========================================================================
// §5.2 Leader election
// ===========================================================================

/// §5.2: "When servers start up, they begin as followers."
#[test]
fn test_start_as_follower_5_2() {
    let core = new_core(1, 3);
    assert_eq!(core.role(), RoleKind::Follower);
    assert_eq!(core.current_term(), 0);
    assert_eq!(core.leader_id(), None);
    assert_eq!(core.members(), vec![1, 2, 3]);

    let mut core = core_with_log(2, 3, &[1, 2], 4, Some(3));
    assert_eq!(core.role(), RoleKind::Follower);
    assert_eq!(
        core.hard_state(),
        HardState {
            current_term: 4,
            voted_for: Some(3)
        }
    );
    assert!(
        core.take_ready().is_empty(),
        "nothing to do before any input"
    );
    assert!(core.propose(b"x".to_vec()).is_err());
}

/// §5.2: "Leaders send periodic heartbeats (AppendEntries RPCs that carry no
/// log entries) to all followers in order to maintain their authority."
#[test]
fn test_leader_bcast_heartbeat_5_2() {
    let mut leader = steady_leader(3, &[1, 1], 2);
    let hb = leader.config().heartbeat_ticks;
    for _ in 0..hb - 1 {
        leader.tick();
        let (ready, sent) = settle(&mut leader);
        assert!(ready.replicate.is_empty(), "heartbeat before its interval");
        assert!(sent.is_empty());
    }
    leader.tick();
    let ready = leader.take_ready();
    assert_eq!(ready.replicate, vec![2, 3]);
    assert!(ready.messages.is_empty(), "AppendEntries are built lazily");
    for peer in [2, 3] {
        let msg = leader.next_append(peer).expect("heartbeat");
        assert_eq!((msg.from, msg.to, msg.term), (1, peer, 2));
        let (prev_index, prev_term, entries, commit) = append_entries_of(&msg);
        assert_eq!((prev_index, prev_term), (3, 2));
        assert!(entries.is_empty());
        assert_eq!(commit, 3);
        assert!(
            leader.next_append(peer).is_none(),
            "one heartbeat per interval"
        );
    }
    // The next interval sends again.
    for _ in 0..hb {
        leader.tick();
    }
    assert_eq!(leader.take_ready().replicate, vec![2, 3]);
}

/// Checks that `ready` starts an election of `term` by node 1 of a 3-node
/// cluster whose log ends at `last`.
fn assert_campaign_ready(ready: &Ready, term: Term, last: (Index, Term)) {
    // §5.2 / Figure 2: the vote for ourselves is persisted before any
    // RequestVote leaves, so both are in the same Ready.
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            current_term: term,
            voted_for: Some(1)
        })
    );
    let mut to: Vec<NodeId> = ready.messages.iter().map(|m| m.to).collect();
    to.sort_unstable();
    assert_eq!(to, vec![2, 3]);
    for m in &ready.messages {
        assert_eq!((m.from, m.term), (1, term));
        assert_eq!(
            m.message,
            Message::RequestVote {
                last_log_index: last.0,
                last_log_term: last.1,
                leadership_transfer: false,
            }
        );
    }
}

/// §5.2: "If a follower receives no communication over a period of time called
/// the election timeout, then it … begins an election": it increments its
/// term, votes for itself and sends RequestVote to every other server.
#[test]
fn test_follower_start_election_5_2() {
    let mut core = core_with_log(1, 3, &[1, 1], 1, None);
    let ticks = tick_until_campaign(&mut core);
    let cfg = core.config();
    assert!((cfg.election_ticks_min..=cfg.election_ticks_max).contains(&ticks));
    assert_eq!(core.role(), RoleKind::Candidate);
    assert_eq!(core.current_term(), 2);
    assert_eq!(core.voted_for(), Some(1));
    assert_campaign_ready(&core.take_ready(), 2, (2, 1));
}

/// §5.2: a candidate whose election times out (split vote) "starts a new
/// election by incrementing its term and initiating another round".
#[test]
fn test_candidate_start_new_election_5_2() {
    let mut core = core_with_log(1, 3, &[1, 1], 1, None);
    tick_until_campaign(&mut core);
    core.step(vote_response(2, 1, 2, false));
    core.take_ready();
    let ticks = tick_until_campaign(&mut core);
    assert!(ticks >= core.config().election_ticks_min);
    assert_eq!(core.role(), RoleKind::Candidate);
    assert_eq!(core.current_term(), 3);
    assert_eq!(core.voted_for(), Some(1));
    assert_campaign_ready(&core.take_ready(), 3, (2, 1));
    // Old-term votes do not count toward the new election.
    core.step(vote_response(2, 1, 2, true));
    assert_eq!(core.role(), RoleKind::Candidate);
    core.step(vote_response(3, 1, 3, true));
    assert_eq!(core.role(), RoleKind::Leader);
}

/// §5.2: "A candidate wins an election if it receives votes from a majority of
/// the servers in the full cluster for the same term."
#[test]
fn test_leader_election_in_one_round_rpc_5_2() {
    use RoleKind::*;
    /// (cluster size, vote replies in arrival order, resulting role)
    type Case = (u64, &'static [(NodeId, bool)], RoleKind);
    let cases: &[Case] = &[
        (1, &[], Leader),
        (3, &[(2, true), (3, true)], Leader),
        (3, &[(2, true)], Leader),
        (5, &[(2, true), (3, true), (4, true), (5, true)], Leader),
        (5, &[(2, true), (3, true), (4, true)], Leader),
        (5, &[(2, true), (3, true)], Leader),
        // No majority: the candidate waits (and later times out).
        (3, &[], Candidate),
        (3, &[(2, false), (3, false)], Candidate),
        (5, &[(2, true)], Candidate),
        (
            5,
            &[(2, false), (3, false), (4, false), (5, false)],
            Candidate,
        ),
        (5, &[], Candidate),
        // The same voter counts once, however often its answer arrives.
        (5, &[(2, true), (2, true), (2, true)], Candidate),
        // Refusals do not stand in the way of a majority of grants.
        (5, &[(2, true), (3, false), (4, true)], Leader),
    ];
    for (i, &(n, votes, want)) in cases.iter().enumerate() {
        let mut core = new_core(1, n);
        tick_until_campaign(&mut core);
        for &(from, granted) in votes {
            core.step(vote_response(from, 1, 1, granted));
        }
        assert_eq!(core.role(), want, "case {i}: n={n} votes={votes:?}");
        assert_eq!(core.current_term(), 1, "case {i}");
    }
}

/// §5.2: "Each server will vote for at most one candidate in a given term, on a
/// first-come-first-served basis" — asking again for the same candidate is fine.
#[test]
fn test_follower_vote_5_2() {
    let cases: &[(Option<NodeId>, NodeId, bool)] = &[
        (None, 2, true),
        (None, 3, true),
        (Some(2), 2, true),
        (Some(3), 3, true),
        (Some(2), 3, false),
        (Some(3), 2, false),
    ];
    for &(voted_for, candidate, want) in cases {
        let mut core = core_with_log(1, 3, &[], 1, voted_for);
        core.step(vote_request(candidate, 1, 1, (0, 0)));
        let ready = core.take_ready();
        let reply = only_message(&ready);
        assert_eq!((reply.to, reply.term), (candidate, 1));
        assert_eq!(
            vote_granted(reply),
            want,
            "voted {voted_for:?}, asked by {candidate}"
        );
        let expected_vote = if want { Some(candidate) } else { voted_for };
        assert_eq!(core.voted_for(), expected_vote);
        if want {
            // The vote must be durable before the reply leaves.
            assert_eq!(ready.hard_state.map(|h| h.voted_for), Some(Some(candidate)));
        } else {
            assert_eq!(ready.hard_state, None);
        }
    }

    // First come, first served within one term.
    let mut core = new_core(1, 3);
    core.step(vote_request(2, 1, 1, (0, 0)));
    core.step(vote_request(3, 1, 1, (0, 0)));
    let ready = core.take_ready();
    let grants: Vec<(NodeId, bool)> = ready
        .messages
        .iter()
        .map(|m| (m.to, vote_granted(m)))
        .collect();
    assert_eq!(grants, vec![(2, true), (3, false)]);
}

/// §5.2: "If the AppendEntries RPC is from a leader whose term is at least as
/// large as the candidate's current term, then the candidate recognizes the
/// leader as legitimate and returns to follower state."
#[test]
fn test_candidate_fallback_5_2() {
    for term in [1, 2] {
        let mut core = new_core(1, 3);
        tick_until_campaign(&mut core);
        assert_eq!(core.current_term(), 1);
        core.take_ready();
        core.step(heartbeat(2, 1, term));
        assert_eq!(
            core.role(),
            RoleKind::Follower,
            "AppendEntries of term {term}"
        );
        assert_eq!(core.current_term(), term);
        assert_eq!(core.leader_id(), Some(2));
        let ready = core.take_ready();
        let reply = only_message(&ready);
        assert_eq!(
            append_result(reply),
            &AppendResult::Success { match_index: 0 }
        );
    }
    // A stale AppendEntries does not.
    let mut core = new_core(1, 3);
    tick_until_campaign(&mut core);
    tick_until_campaign(&mut core);
    core.step(heartbeat(2, 1, 1));
    assert_eq!(core.role(), RoleKind::Candidate);
}

/// Ticks before a follower with this seed first campaigns.
fn first_timeout(seed: u64) -> u32 {
    let mut cfg = config(1, 3);
    cfg.seed = seed;
    let mut core = RaftCore::new(cfg, HardState::default(), Vec::new());
    tick_until_campaign(&mut core)
}

/// §5.2: "election timeouts are chosen randomly from a fixed interval"; over
/// many seeds every value of min..=max occurs, and nothing outside it.
#[test]
fn test_follower_election_timeout_randomized_5_2() {
    let cfg = config(1, 3);
    let (min, max) = (cfg.election_ticks_min, cfg.election_ticks_max);
    let seen: BTreeSet<u32> = (0..1000).map(first_timeout).collect();
    assert_eq!(seen, (min..=max).collect::<BTreeSet<u32>>());
}

/// §5.2: a candidate draws a new random timeout for each election.
#[test]
fn test_candidate_election_timeout_randomized_5_2() {
    let mut core = new_core(1, 3);
    let (min, max) = (
        core.config().election_ticks_min,
        core.config().election_ticks_max,
    );
    tick_until_campaign(&mut core);
    let mut seen = BTreeSet::new();
    for _ in 0..1000 {
        seen.insert(tick_until_campaign(&mut core));
        assert_eq!(core.role(), RoleKind::Candidate);
    }
    assert_eq!(seen, (min..=max).collect::<BTreeSet<u32>>());
    assert_eq!(core.current_term(), 1001);
}

/// §5.2: randomized timeouts spread the servers out "so that in most cases
/// only a single server will time out". With 5 nodes, count how often more
/// than one node times out on the first tick any node does.
#[test]
fn test_follower_election_timeout_nonconflict_5_2() {
    let rounds = 1000;
    let mut conflicts = 0;
    for round in 0..rounds {
        let mut cores: Vec<RaftCore> = (1..=5)
            .map(|id| {
                let mut cfg = config(id, 5);
                cfg.seed = round * 100 + id;
                RaftCore::new(cfg, HardState::default(), Vec::new())
            })
            .collect();
        let campaigners = loop {
            cores.iter_mut().for_each(RaftCore::tick);
            let n = cores
                .iter()
                .filter(|c| c.role() == RoleKind::Candidate)
                .count();
            if n > 0 {
                break n;
            }
        };
        if campaigners > 1 {
            conflicts += 1;
        }
    }
    assert!(
        conflicts * 10 <= rounds * 3,
        "{conflicts} of {rounds} rounds had simultaneous timeouts"
    );
}

/// §5.2: "RequestVote RPC … includes information about the candidate's log".
#[test]
fn test_vote_request_5_2() {
    for terms in [&[][..], &[1], &[1, 2], &[1, 2, 2, 3]] {
        let mut core = core_with_log(1, 3, terms, 3, None);
        tick_until_campaign(&mut core);
        let last = (terms.len() as Index, terms.last().copied().unwrap_or(0));
        assert_campaign_ready(&core.take_ready(), 4, last);
    }
}

// ===========================================================================
// §5.3 Log replication
// ===========================================================================

/// §5.3: "The leader appends the command to its log as a new entry, then issues
/// AppendEntries RPCs in parallel to each of the other servers."
#[test]
fn test_leader_start_replication_5_3() {
    let mut leader = steady_leader(3, &[1], 2);
    assert_eq!(leader.commit_index(), 2);
    let at = leader.propose(b"x".to_vec()).unwrap();
    assert_eq!(at, (3, 2));
    let expected = Entry {
        index: 3,
        term: 2,
        payload: Payload::Command(b"x".to_vec()),
    };
    assert_eq!(leader.log().get(3), Some(&expected));
    let ready = leader.take_ready();
    assert_eq!(ready.entries, vec![expected.clone()]);
    assert!(ready.messages.is_empty());
    assert_eq!(ready.replicate, vec![2, 3]);
    for peer in [2, 3] {
        let msg = leader.next_append(peer).unwrap();
        assert_eq!((msg.from, msg.to, msg.term), (1, peer, 2));
        assert_eq!(append_entries_of(&msg), (2, 2, &[expected.clone()][..], 2));
    }
}

/// §5.3: "When the entry has been safely replicated, the leader applies the
/// entry to its state machine"; it is handed out for application exactly once.
#[test]
fn test_leader_commit_entry_5_3() {
    let mut leader = steady_leader(3, &[], 1);
    assert_eq!(leader.commit_index(), 1);
    leader.propose(b"x".to_vec()).unwrap();
    settle(&mut leader);
    leader.persisted(2, 1);
    assert_eq!(
        leader.commit_index(),
        1,
        "one copy of three is not a majority"
    );
    leader.step(success(2, 1, 1, 2));
    assert_eq!(leader.commit_index(), 2);

    let ready = leader.take_ready();
    assert_eq!(ready.committed.len(), 1);
    assert_eq!(ready.committed[0].payload, Payload::Command(b"x".to_vec()));
    assert_eq!(leader.last_applied(), 2);
    // The new commit index is sent to both followers.
    assert_eq!(ready.replicate, vec![2, 3]);
    for peer in [2, 3] {
        let (_, _, _, commit) = append_entries_of(&leader.next_append(peer).unwrap());
        assert_eq!(commit, 2);
    }
    // Late acknowledgements commit nothing twice.
    leader.step(success(3, 1, 1, 2));
    leader.step(success(2, 1, 1, 2));
    assert!(leader.take_ready().committed.is_empty());
}

/// §5.3: an entry is committed "once the leader that created the entry has
/// replicated it on a majority of the servers".
#[test]
fn test_leader_acknowledged_commit_5_3() {
    let cases: &[(u64, &[NodeId], bool)] = &[
        (1, &[], true),
        (3, &[], false),
        (3, &[2], true),
        (3, &[2, 3], true),
        (5, &[], false),
        (5, &[2], false),
        (5, &[2, 3], true),
        (5, &[2, 3, 4], true),
        (5, &[2, 3, 4, 5], true),
    ];
    for &(n, acks, want) in cases {
        let mut leader = steady_leader(n, &[], 1);
        leader.propose(b"x".to_vec()).unwrap();
        leader.persisted(2, 1);
        for &peer in acks {
            leader.step(success(peer, 1, 1, 2));
        }
        let want_commit = if want { 2 } else { 1 };
        assert_eq!(leader.commit_index(), want_commit, "n={n} acks={acks:?}");
    }
}

/// §5.3: "This also commits all preceding entries in the leader's log,
/// including entries created by previous leaders."
#[test]
fn test_leader_commit_preceding_entries_5_3() {
    for terms in [&[][..], &[2], &[1, 1], &[1, 2, 2]] {
        let mut leader = core_with_log(1, 3, terms, 2, None);
        make_leader(&mut leader);
        leader.propose(b"x".to_vec()).unwrap();
        let last = leader.log().last_index();
        leader.persisted(last, 3);
        leader.step(success(2, 1, 3, last));
        assert_eq!(leader.commit_index(), last);
        let committed = leader.take_ready().committed;
        let mut expected = entries_of(terms);
        expected.push(Entry {
            index: last - 1,
            term: 3,
            payload: Payload::Noop,
        });
        expected.push(Entry {
            index: last,
            term: 3,
            payload: Payload::Command(b"x".to_vec()),
        });
        assert_eq!(committed, expected);
    }
}

/// §5.3 / Figure 2: "If leaderCommit > commitIndex, set commitIndex =
/// min(leaderCommit, index of last new entry)."
#[test]
fn test_follower_commit_entry_5_3() {
    /// (follower log, prev, new entries' terms, leader commit, expected commit)
    type Case = (&'static [Term], Index, &'static [Term], Index, Index);
    let cases: &[Case] = &[
        (&[], 0, &[1], 1, 1),
        (&[], 0, &[1, 1], 1, 1),
        (&[], 0, &[1, 1], 2, 2),
        (&[], 0, &[1, 1], 5, 2),
        (&[1], 1, &[1, 1], 3, 3),
        // Entries past the message's last one may still be replaced.
        (&[1, 1, 1], 1, &[1], 3, 2),
        (&[1, 1, 1], 0, &[], 3, 0),
        (&[1, 1, 1], 3, &[], 3, 3),
    ];
    for &(log, prev, new, commit, want) in cases {
        let mut core = core_with_log(2, 3, log, 1, None);
        let prev_term = if prev == 0 { 0 } else { log[prev as usize - 1] };
        let entries = (1..=new.len() as Index)
            .map(|i| entry(prev + i, new[i as usize - 1]))
            .collect();
        core.step(append(1, 2, 1, (prev, prev_term), entries, commit));
        assert_eq!(
            core.commit_index(),
            want,
            "log={log:?} prev={prev} new={new:?}"
        );
        let committed = core.take_ready().committed;
        assert_eq!(committed, log_entries(&core)[..want as usize].to_vec());
    }
}

/// §5.3: "If the follower does not find an entry in its log with the same index
/// and term, then it refuses the new entries." The refusal hints where the logs
/// may match.
#[test]
fn test_follower_check_append_entries_5_3() {
    use AppendResult::*;
    use RejectHint::*;
    let cases: &[(Index, Term, AppendResult)] = &[
        (0, 0, Success { match_index: 0 }),
        (1, 1, Success { match_index: 1 }),
        (2, 2, Success { match_index: 2 }),
        (3, 2, Success { match_index: 3 }),
        (
            3,
            3,
            Reject {
                rejected_index: 3,
                hint: ConflictingTerm {
                    conflict_term: 2,
                    first_index: 2,
                },
            },
        ),
        (
            2,
            1,
            Reject {
                rejected_index: 2,
                hint: ConflictingTerm {
                    conflict_term: 2,
                    first_index: 2,
                },
            },
        ),
        (
            1,
            2,
            Reject {
                rejected_index: 1,
                hint: ConflictingTerm {
                    conflict_term: 1,
                    first_index: 1,
                },
            },
        ),
        (
            4,
            2,
            Reject {
                rejected_index: 4,
                hint: LogTooShort { last_index: 3 },
            },
        ),
        (
            7,
            3,
            Reject {
                rejected_index: 7,
                hint: LogTooShort { last_index: 3 },
            },
        ),
    ];
    for (prev_index, prev_term, want) in cases {
        let mut core = core_with_log(2, 3, &[1, 2, 2], 3, None);
        core.step(append(1, 2, 3, (*prev_index, *prev_term), vec![], 3));
        let ready = core.take_ready();
        let reply = only_message(&ready);
        assert_eq!((reply.to, reply.term), (1, 3));
        assert_eq!(
            append_result(reply),
            want,
            "prev=({prev_index}, {prev_term})"
        );
        assert_eq!(
            terms_of(&core),
            vec![1, 2, 2],
            "a check never changes the log"
        );
        if matches!(want, Reject { .. }) {
            assert_eq!(core.commit_index(), 0, "a refused message commits nothing");
        }
    }
}

/// §5.3: "If an existing entry conflicts with a new one (same index but
/// different terms), delete the existing entry and all that follow it; append
/// any new entries not already in the log" — never delete matching entries.
#[test]
fn test_follower_append_entries_5_3() {
    // (prev, new entries as (index, term), resulting log terms, truncate_after,
    //  entries to write)
    type Case = (
        (Index, Term),
        &'static [(Index, Term)],
        &'static [Term],
        Option<Index>,
        &'static [Index],
    );
    let cases: &[Case] = &[
        ((2, 2), &[(3, 3)], &[1, 2, 3], None, &[3]),
        ((1, 1), &[(2, 3), (3, 4)], &[1, 3, 4], Some(1), &[2, 3]),
        ((0, 0), &[(1, 1)], &[1, 2], None, &[]),
        ((0, 0), &[(1, 1), (2, 2)], &[1, 2], None, &[]),
        ((0, 0), &[(1, 1), (2, 2), (3, 4)], &[1, 2, 4], None, &[3]),
        ((0, 0), &[(1, 3)], &[3], Some(0), &[1]),
        ((1, 1), &[], &[1, 2], None, &[]),
    ];
    for (prev, new, want_log, want_trunc, want_written) in cases {
        let mut core = core_with_log(2, 3, &[1, 2], 4, None);
        let entries = new.iter().map(|&(i, t)| entry(i, t)).collect();
        core.step(append(1, 2, 4, *prev, entries, 0));
        assert_eq!(terms_of(&core), *want_log, "prev={prev:?} new={new:?}");
        let ready = core.take_ready();
        assert_eq!(
            ready.truncate_after, *want_trunc,
            "prev={prev:?} new={new:?}"
        );
        let written: Vec<Index> = ready.entries.iter().map(|e| e.index).collect();
        assert_eq!(written, *want_written, "prev={prev:?} new={new:?}");
        let last_new = prev.0 + new.len() as Index;
        assert_eq!(
            append_result(only_message(&ready)),
            &AppendResult::Success {
                match_index: last_new
            }
        );
    }

    // A delayed, shorter AppendEntries arriving after a longer one must not
    // erase what the longer one added.
    let mut core = new_core(2, 3);
    core.step(append(1, 2, 1, (0, 0), entries_of(&[1, 1, 1]), 0));
    core.take_ready();
    core.step(append(1, 2, 1, (0, 0), entries_of(&[1]), 0));
    assert_eq!(terms_of(&core), vec![1, 1, 1]);
    let ready = core.take_ready();
    assert_eq!(ready.truncate_after, None);
    assert!(ready.entries.is_empty());
    assert_eq!(
        append_result(only_message(&ready)),
        &AppendResult::Success { match_index: 1 }
    );
}

/// §5.3, Figure 7: whatever a follower's log looks like, the leader brings it
/// into line with its own — using the conflict hints, in a few round trips.
#[test]
fn test_leader_sync_follower_log_5_3() {
    let leader_log: &[Term] = &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    // (Figure 7 follower, its log, rejections expected before the match)
    let followers: &[(&str, &[Term], usize)] = &[
        ("a", &[1, 1, 1, 4, 4, 5, 5, 6, 6], 1),
        ("b", &[1, 1, 1, 4], 1),
        ("c", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], 0),
        ("d", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], 0),
        ("e", &[1, 1, 1, 4, 4, 4, 4], 2),
        ("f", &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], 2),
    ];
    for &(name, follower_log, want_rejections) in followers {
        // The leader of term 8; node 3 stays silent, as in etcd's version.
        let mut leader = core_with_log(1, 3, leader_log, 7, None);
        make_leader(&mut leader);
        assert_eq!(leader.current_term(), 8);
        let follower = core_with_log(2, 3, follower_log, 7, None);
        let mut net = Network::from_cores(vec![leader, follower]);
        net.deliver_all();

        let (leader, follower) = (net.core(1), net.core(2));
        assert_eq!(
            log_entries(follower),
            log_entries(leader),
            "follower ({name})"
        );
        assert_eq!(leader.commit_index(), 11, "({name})");
        assert_eq!(follower.commit_index(), 11, "({name})");
        let rejections = net
            .delivered
            .iter()
            .filter(|m| {
                matches!(
                    m.message,
                    Message::AppendEntriesResponse {
                        result: AppendResult::Reject { .. },
                        ..
                    }
                )
            })
            .count();
        assert_eq!(rejections, want_rejections, "follower ({name})");
        net.check_applied_consistent();
        assert_eq!(net.applied[&2].len(), 11);
    }
}

// ===========================================================================
// §5.4 Safety
// ===========================================================================

/// §5.4.1: "the voter denies its vote if its own log is more up-to-date than
/// that of the candidate" — compare last terms, then lengths.
#[test]
fn test_voter_5_4_1() {
    let cases: &[(&[Term], (Index, Term), bool)] = &[
        // Voter's last entry is (2, 1).
        (&[1, 1], (2, 1), true),
        (&[1, 1], (3, 1), true),
        (&[1, 1], (1, 1), false),
        (&[1, 1], (0, 0), false),
        (&[1, 1], (1, 2), true),
        (&[1, 1], (3, 2), true),
        // Voter's last entry is (2, 2).
        (&[1, 2], (2, 1), false),
        (&[1, 2], (9, 1), false),
        (&[1, 2], (1, 2), false),
        (&[1, 2], (2, 2), true),
        (&[1, 2], (1, 3), true),
        // An empty voter votes for anyone.
        (&[], (0, 0), true),
    ];
    for &(log, last, want) in cases {
        let mut voter = core_with_log(1, 3, log, 2, None);
        voter.step(vote_request(2, 1, 3, last));
        let ready = voter.take_ready();
        assert_eq!(
            vote_granted(only_message(&ready)),
            want,
            "voter {log:?} candidate {last:?}"
        );
        assert_eq!(voter.voted_for(), want.then_some(2));
    }
}

/// §5.4.2: "Raft never commits log entries from previous terms by counting
/// replicas. Only log entries from the leader's current term are committed by
/// counting replicas."
#[test]
fn test_leader_only_commits_log_from_current_term_5_4_2() {
    // A leader of term 3 whose log holds entries of terms 1 and 2.
    let mut leader = core_with_log(1, 3, &[1, 2], 2, None);
    make_leader(&mut leader);
    assert_eq!(leader.current_term(), 3);
    // Both old entries are durable here and replicated on a majority…
    assert_eq!(leader.persisted_index(), 2);
    leader.step(success(2, 1, 3, 2));
    leader.step(success(3, 1, 3, 2));
    // …yet are not committed by counting replicas.
    assert_eq!(leader.commit_index(), 0);
    assert!(leader.take_ready().committed.is_empty());
    // Once the no-op of term 3 is on a majority, everything before it commits.
    leader.persisted(3, 3);
    assert_eq!(leader.commit_index(), 0);
    leader.step(success(2, 1, 3, 3));
    assert_eq!(leader.commit_index(), 3);
    assert_eq!(leader.take_ready().committed.len(), 3);
}

/// The whole of Figure 8, driven through the network with five nodes: an entry
/// of an old term replicated on a majority by a later leader may still be
/// overwritten, so it must not have been committed.
#[test]
fn test_figure_8_through_network_5_4_2() {
    let mut cores: Vec<RaftCore> = (1..=5).map(|id| new_core(id, 5)).collect();
    for core in &mut cores {
        // One entry per AppendEntries, so that entries can be lost one by one.
        core.config.max_append_bytes = 0;
    }
    let mut net = Network::from_cores(cores);
    net.elect(1);
    assert_eq!(net.core(1).commit_index(), 1);

    // (a) S1 leads; its entry X reaches only S2.
    for to in [3, 4, 5] {
        net.drop_link(1, to);
    }
    let (x_index, x_term) = net.propose(1, b"X");
    assert_eq!(x_index, 2);
    assert_eq!(net.core(2).log().get(2).map(|e| e.term), Some(x_term));

    // (b) S1 crashes; S5 is elected by S3 and S4 and writes an entry of its
    // own term at index 2, which goes nowhere before S5 crashes too.
    net.heal();
    net.isolate(1);
    net.drop_link(5, 2);
    net.drop_link(2, 5);
    net.ignore("AppendEntries");
    net.elect(5);
    let s5_term = net.core(5).current_term();
    assert_eq!(net.core(5).log().get(2).map(|e| e.term), Some(s5_term));
    net.heal();
    net.isolate(5);

    // (c) S1 restarts and is elected; it replicates X to S3 and S4, so X is
    // on a majority, but no entry of S1's new term gets out.
    net.restart(1);
    // S1's first probe to S3 and S4 may pass (they lack index 2, so they
    // refuse it and S1 backs up to send X); every later entry of S1's new
    // term is lost.
    let probed = std::cell::RefCell::new(BTreeSet::new());
    net.drop_if = Some(Box::new(move |m: &Envelope| match &m.message {
        Message::AppendEntries { entries, .. }
            if m.from == 1 && entries.iter().any(|e| e.term > x_term) =>
        {
            !(matches!(m.to, 3 | 4) && probed.borrow_mut().insert(m.to))
        }
        _ => false,
    }));
    net.elect(1);
    let s1_term = net.core(1).current_term();
    assert!(s1_term > s5_term);
    net.heartbeat(1);
    net.heartbeat(1);
    for id in [1, 2, 3, 4] {
        assert_eq!(
            net.core(id).log().get(2).map(|e| e.term),
            Some(x_term),
            "S{id}"
        );
    }
    // Figure 8 (c): not committed, since X is from an earlier term (S1 has
    // just restarted, so it knows of no commit at all).
    assert!(net.core(1).commit_index() < x_index);
    assert!(net.applied.values().all(|a| a.len() < x_index as usize));

    // (d) S1 crashes; S5 is elected by S2, S3, S4 (its last term is higher)
    // and overwrites X everywhere.
    net.heal();
    net.isolate(1);
    net.restart(5);
    net.elect(5);
    for id in [2, 3, 4, 5] {
        let e = net.core(id).log().get(2).unwrap();
        assert_eq!((e.term, &e.payload), (s5_term, &Payload::Noop), "S{id}");
        assert_eq!(net.core(id).commit_index(), 3, "S{id}");
    }

    // S1 rejoins, steps down and has X replaced as well.
    net.heal();
    net.heartbeat(5);
    net.heartbeat(5);
    assert_eq!(net.core(1).role(), RoleKind::Follower);
    for id in 1..=4 {
        assert_eq!(log_entries(net.core(id)), log_entries(net.core(5)), "S{id}");
    }
    net.check_applied_consistent();
    for (id, applied) in &net.applied {
        assert!(
            applied
                .iter()
                .all(|e| e.payload != Payload::Command(b"X".to_vec())),
            "S{id} applied the overwritten entry"
        );
    }
}

/// Figure 8 (e): had S1 got an entry of its own term onto a majority, X would
/// be committed with it and no later leader could lack it.
#[test]
fn test_figure_8_commit_with_current_term_entry_5_4_2() {
    let mut net = Network::new(5);
    net.elect(1);
    for to in [3, 4, 5] {
        net.drop_link(1, to);
    }
    net.propose(1, b"X");
    net.heal();
    net.isolate(1);
    net.ignore("AppendEntries");
    net.drop_link(5, 2);
    net.elect(5);
    net.heal();
    net.isolate(5);
    net.restart(1);
    net.elect(1);
    // S1's no-op reaches S2, S3, S4: X commits with it.
    assert_eq!(net.core(1).commit_index(), 3);
    assert_eq!(net.applied[&1][1].payload, Payload::Command(b"X".to_vec()));
    // S5 can no longer win: every majority holds a later-term entry.
    net.heal();
    net.isolate(1);
    net.restart(5);
    for _ in 0..3 {
        tick_until_campaign(net.core_mut(5));
        net.deliver_all();
        assert_ne!(net.core(5).role(), RoleKind::Leader);
    }
}

// ===========================================================================
// §8 Client interaction, and details of this implementation
// ===========================================================================

/// §8: "each leader commit a blank no-op entry into the log at the start of
/// its term."
#[test]
fn test_leader_appends_noop_on_election_8() {
    let mut leader = core_with_log(1, 3, &[1, 1], 1, None);
    make_leader(&mut leader);
    let noop = Entry {
        index: 3,
        term: 2,
        payload: Payload::Noop,
    };
    assert_eq!(leader.log().get(3), Some(&noop));
    let ready = leader.take_ready();
    assert_eq!(ready.entries, vec![noop.clone()]);
    assert_eq!(ready.replicate, vec![2, 3]);
    for peer in [2, 3] {
        let msg = leader.next_append(peer).unwrap();
        assert_eq!(append_entries_of(&msg), (2, 1, &[noop.clone()][..], 0));
    }

    // A single node commits its no-op as soon as it is durable.
    let mut solo = new_core(1, 1);
    tick_until_campaign(&mut solo);
    assert_eq!(solo.role(), RoleKind::Leader);
    assert_eq!(solo.take_ready().entries.len(), 1);
    assert_eq!(solo.commit_index(), 0);
    solo.persisted(1, 1);
    assert_eq!(solo.commit_index(), 1);
    assert_eq!(solo.take_ready().committed[0].payload, Payload::Noop);
}

/// The leader counts its own copy only once it is durable (module docs).
#[test]
fn test_leader_waits_for_own_persist_before_counting_itself() {
    // One follower's ack plus our own durable copy make a majority of 3.
    let mut leader = new_core(1, 3);
    make_leader(&mut leader);
    leader.step(success(2, 1, 1, 1));
    assert_eq!(leader.commit_index(), 0, "counted its own unwritten entry");
    leader.persisted(1, 0); // a report for another term's entry is ignored
    assert_eq!(leader.commit_index(), 0);
    leader.persisted(1, 1);
    assert_eq!(leader.commit_index(), 1);

    // Both followers' acks make a majority without us.
    let mut leader = new_core(1, 3);
    make_leader(&mut leader);
    leader.step(success(2, 1, 1, 1));
    leader.step(success(3, 1, 1, 1));
    assert_eq!(leader.commit_index(), 1);
    assert_eq!(leader.persisted_index(), 0);
}

/// §5.3, Figure 3 (State Machine Safety): under random proposals, elections,
/// partitions and lost messages, every node applies entries in index order,
/// each once, and all nodes apply the same sequence.
#[test]
fn test_committed_entries_applied_once_in_order() {
    for seed in 1..=8 {
        run_random_cluster(seed, false);
    }
}

/// As above, but the network also delivers messages out of order (as happens
/// across reconnections). This found a leader panic on late rejections.
#[test]
fn test_committed_entries_applied_once_in_order_with_reordering() {
    for seed in 1..=50 {
        run_random_cluster(seed, true);
    }
}

/// Random proposals, ticks, partitions and message losses (and, if `reorder`,
/// reordering) on 5 nodes; then heal and check State Machine Safety and that
/// everyone catches up.
fn run_random_cluster(seed: u64, reorder: bool) {
    let mut rng = Lcg(seed);
    let mut net = Network::new(5);
    let mut proposed = 0u32;
    for _ in 0..3000 {
        match rng.next(100) {
            0..=29 => {
                if let Some(id) = net.leader() {
                    proposed += 1;
                    net.core_mut(id)
                        .propose(proposed.to_be_bytes().to_vec())
                        .unwrap();
                }
            }
            30..=64 => {
                for id in 1..=5 {
                    net.tick(id);
                }
            }
            65..=67 => net.isolate(rng.next(5) + 1),
            68..=71 => net.heal(),
            _ => {
                // Deliver a few messages, losing (and maybe reordering) some.
                net.flush();
                for _ in 0..rng.next(20) {
                    if rng.next(10) == 0 {
                        net.queue.pop_front();
                    } else if reorder && rng.next(4) == 0 && net.queue.len() > 1 {
                        let i = rng.next(net.queue.len() as u64) as usize;
                        let m = net.queue.remove(i).unwrap();
                        net.queue.push_front(m);
                        net.deliver_one();
                    } else if !net.deliver_one() {
                        break;
                    }
                    net.flush();
                }
            }
        }
    }
    // Let the cluster settle and catch everyone up.
    net.heal();
    net.deliver_all();
    for _ in 0..200 {
        for id in 1..=5 {
            net.tick(id);
        }
        net.deliver_all();
    }
    let leader = net.leader().expect("a leader after healing");
    net.propose(leader, b"last");
    net.heartbeat(leader);
    net.check_applied_consistent();
    let last = net.core(leader).log().last_index();
    for id in 1..=5 {
        assert_eq!(
            net.applied[&id].len() as Index,
            last,
            "seed {seed}: node {id}"
        );
    }
    // Each command appears at most once in the applied sequence.
    let commands: Vec<&Vec<u8>> = net.applied[&1]
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::Command(c) => Some(c),
            Payload::Noop | Payload::Config(_) => None,
        })
        .collect();
    let distinct: BTreeSet<&Vec<u8>> = commands.iter().copied().collect();
    assert_eq!(distinct.len(), commands.len(), "seed {seed}");
    assert!(commands.len() > 10, "seed {seed}: too little got committed");
    assert!(
        (commands.len() as u32) <= proposed + 1,
        "seed {seed}: more applied than proposed"
    );
}

/// Figure 2: the term, vote and log are persistent; the commit index is
/// volatile. A restarted node is a follower with the same persistent state,
/// commit index 0, and it re-applies the log once it hears from the leader.
#[test]
fn test_restart_recovers_state() {
    let mut net = Network::new(3);
    net.elect(1);
    net.propose(1, b"a");
    net.propose(1, b"b");
    net.heartbeat(1);
    let old = net.core(2);
    assert_eq!(old.commit_index(), 3);

    let restarted = RaftCore::new(config(2, 3), old.hard_state(), log_entries(old));
    assert_eq!(restarted.role(), RoleKind::Follower);
    assert_eq!(restarted.hard_state(), old.hard_state());
    assert_eq!(log_entries(&restarted), log_entries(old));
    assert_eq!(restarted.commit_index(), 0);
    assert_eq!(restarted.last_applied(), 0);
    assert_eq!(restarted.persisted_index(), 3);
    assert_eq!(restarted.leader_id(), None);

    net.cores.insert(2, restarted);
    net.applied.insert(2, Vec::new());
    net.heartbeat(1);
    assert_eq!(net.core(2).commit_index(), 3);
    assert_eq!(net.applied[&2], log_entries(net.core(1)));
}

/// A malformed AppendEntries (indexes not consecutive after prev, or entries of
/// a later term than the message) is ignored: no panic, no change, no reply.
#[test]
fn test_malformed_append_ignored() {
    let bad: Vec<Vec<Entry>> = vec![
        vec![entry(3, 1), entry(4, 1)],
        vec![entry(2, 1), entry(4, 1)],
        vec![entry(2, 1), entry(2, 1)],
        vec![entry(1, 1)],
        vec![entry(2, 5)],
    ];
    for entries in bad {
        let mut core = core_with_log(2, 3, &[1], 1, None);
        core.step(append(1, 2, 1, (1, 1), entries.clone(), 9));
        assert_eq!(terms_of(&core), vec![1], "{entries:?}");
        assert_eq!(core.commit_index(), 0);
        let ready = core.take_ready();
        assert!(ready.entries.is_empty() && ready.truncate_after.is_none());
        assert!(ready.messages.is_empty(), "{entries:?}");
        assert!(ready.committed.is_empty());
    }
    // Terms that go down, or start below the previous entry's, or a
    // previous entry of a later term than the leader's: from a broken peer,
    // and written they would stop this node (storage refuses them).
    let bad: Vec<((Index, Term), Vec<Entry>)> = vec![
        ((1, 1), vec![entry(2, 3), entry(3, 2)]),
        ((1, 1), vec![entry(2, 2), entry(3, 3), entry(4, 1)]),
        ((1, 1), vec![entry(2, 0)]),
        ((1, 4), vec![]),
        ((1, 4), vec![entry(2, 4)]),
        ((u64::MAX, 1), vec![entry(0, 1)]),
    ];
    for (prev, entries) in bad {
        let mut core = core_with_log(2, 3, &[1], 1, None);
        core.step(append(1, 2, 3, prev, entries.clone(), 9));
        assert_eq!(terms_of(&core), vec![1], "{entries:?}");
        let ready = core.take_ready();
        assert!(ready.entries.is_empty() && ready.truncate_after.is_none());
        assert!(ready.messages.is_empty(), "{prev:?} {entries:?}");
    }
    // A prev index far past the end is just a rejection.
    let mut core = core_with_log(2, 3, &[1], 1, None);
    core.step(append(1, 2, 1, (u64::MAX, 1), vec![], u64::MAX));
    let ready = core.take_ready();
    assert!(matches!(
        append_result(only_message(&ready)),
        AppendResult::Reject { .. }
    ));
    assert_eq!(core.commit_index(), 0);
}

/// Misaddressed messages are dropped unread. (Messages from nodes outside
/// the configuration are heard, except a removed node's vote requests: see
/// `tests/membership.rs`.)
#[test]
fn test_non_member_message_dropped() {
    let messages = [vote_request(2, 7, 5, (9, 9)), heartbeat(1, 1, 5)];
    for m in messages {
        let mut core = core_with_log(1, 3, &[1], 1, None);
        core.step(m.clone());
        assert_eq!(core.current_term(), 1, "{m:?}");
        assert_eq!(core.voted_for(), None);
        assert_eq!(core.leader_id(), None);
        assert!(core.take_ready().is_empty(), "{m:?}");
    }
    // Nor can a non-member help elect a leader.
    let mut core = new_core(1, 3);
    tick_until_campaign(&mut core);
    core.step(vote_response(9, 1, 1, true));
    core.step(vote_response(8, 1, 1, true));
    assert_eq!(core.role(), RoleKind::Candidate);
    // Or ack an entry into commitment.
    let mut leader = new_core(1, 3);
    make_leader(&mut leader);
    leader.persisted(1, 1);
    leader.step(success(9, 1, 1, 1));
    assert_eq!(leader.commit_index(), 0);
}

/// Probe and replicate states (module docs, after etcd): while probing, one
/// AppendEntries is outstanding at a time; once the match point is known, new
/// entries are pipelined without waiting for acknowledgements.
#[test]
fn test_pipelining_and_probe() {
    let mut leader = core_with_log(1, 3, &[1, 1, 1], 1, None);
    make_leader(&mut leader);
    leader.take_ready();
    assert_eq!(leader.progress(2).unwrap().state(), ProgressState::Probe);

    // The first probe goes out; nothing more until it is answered.
    let probe = drain_appends(&mut leader, 2);
    assert_eq!(probe.len(), 1);
    assert_eq!(append_entries_of(&probe[0]).0, 3);
    leader.propose(b"a".to_vec()).unwrap();
    assert!(!leader.take_ready().replicate.contains(&2));
    assert!(
        leader.next_append(2).is_none(),
        "second probe while one is out"
    );

    // The follower's log is too short: probe further back, still one at a time.
    leader.step(reject(
        2,
        1,
        2,
        3,
        RejectHint::LogTooShort { last_index: 1 },
    ));
    let pr = leader.progress(2).unwrap();
    assert_eq!((pr.state(), pr.next_index()), (ProgressState::Probe, 2));
    let probe = drain_appends(&mut leader, 2);
    assert_eq!(probe.len(), 1);
    let (prev, _, entries, _) = append_entries_of(&probe[0]);
    assert_eq!((prev, entries.len()), (1, 4));

    // Success: replicate state, and proposals now go out one after another
    // without waiting for any answer.
    leader.step(success(2, 1, 2, 5));
    let pr = leader.progress(2).unwrap();
    assert_eq!(
        (pr.state(), pr.match_index(), pr.next_index()),
        (ProgressState::Replicate, 5, 6)
    );
    for (i, data) in [b"b", b"c", b"d"].into_iter().enumerate() {
        leader.propose(data.to_vec()).unwrap();
        let sent = drain_appends(&mut leader, 2);
        assert_eq!(sent.len(), 1);
        let (prev, _, entries, _) = append_entries_of(&sent[0]);
        assert_eq!((prev, entries.len()), (5 + i as Index, 1));
    }
    assert_eq!(leader.progress(2).unwrap().next_index(), 9);
    assert_eq!(leader.progress(2).unwrap().match_index(), 5);

    // A rejection of a pipelined message sends it back to probing.
    leader.step(reject(
        2,
        1,
        2,
        6,
        RejectHint::LogTooShort { last_index: 5 },
    ));
    let pr = leader.progress(2).unwrap();
    assert_eq!((pr.state(), pr.next_index()), (ProgressState::Probe, 6));
    assert_eq!(drain_appends(&mut leader, 2).len(), 1);
}

/// A lost connection voids whatever was in flight: back to probing from the
/// match point.
#[test]
fn test_peer_unreachable_falls_back_to_probe() {
    let mut leader = steady_leader(3, &[], 1);
    for data in [b"a", b"b"] {
        leader.propose(data.to_vec()).unwrap();
        drain_appends(&mut leader, 2);
    }
    let pr = leader.progress(2).unwrap();
    assert_eq!(
        (pr.state(), pr.match_index(), pr.next_index()),
        (ProgressState::Replicate, 1, 4)
    );

    leader.peer_unreachable(2);
    let pr = leader.progress(2).unwrap();
    assert_eq!((pr.state(), pr.next_index()), (ProgressState::Probe, 2));
    assert!(leader.take_ready().replicate.contains(&2));
    let sent = drain_appends(&mut leader, 2);
    assert_eq!(sent.len(), 1);
    let (prev, _, entries, _) = append_entries_of(&sent[0]);
    assert_eq!((prev, entries.len()), (1, 2));
    // Other peers are unaffected, and unknown peers are no-ops.
    assert_eq!(
        leader.progress(3).unwrap().state(),
        ProgressState::Replicate
    );
    leader.peer_unreachable(9);
    // A follower ignores the call.
    let mut follower = new_core(2, 3);
    follower.peer_unreachable(1);
    assert!(follower.take_ready().is_empty());
}

/// A follower whose log turns out shorter than what it acknowledged (a torn
/// tail cut off on restart, a damaged disk) is repaired: the leader forgets
/// the match point, probes from the follower's log end and brings it up to
/// date. Before this, every such rejection looked stale (it is below the
/// match index) and the follower stayed behind while that leader lasted.
#[test]
fn test_follower_that_lost_acknowledged_entries_is_repaired() {
    let mut leader = steady_leader(3, &[1, 1, 1, 1, 1], 2);
    for data in [b"a", b"b", b"c"] {
        leader.propose(data.to_vec()).unwrap();
    }
    let last = leader.log().last_index();
    leader.persisted(last, 2);
    settle(&mut leader);
    leader.step(success(2, 1, 2, last));
    leader.step(success(3, 1, 2, last));
    assert_eq!(leader.commit_index(), last);
    assert_eq!(leader.progress(2).unwrap().match_index(), last);

    // Node 2 restarts having lost its tail: its log ends at 4. One such
    // rejection could be a stale one, delayed; the second in a row is not.
    leader.propose(b"d".to_vec()).unwrap();
    settle(&mut leader);
    let too_short = reject(2, 1, 2, last, RejectHint::LogTooShort { last_index: 4 });
    leader.step(too_short.clone());
    assert_eq!(leader.followers_repaired(), 0);
    assert_eq!(leader.progress(2).unwrap().match_index(), last);
    leader.step(too_short);
    assert_eq!(leader.followers_repaired(), 1);
    let pr = leader.progress(2).unwrap();
    assert_eq!(
        (pr.state(), pr.match_index(), pr.next_index()),
        (ProgressState::Probe, 0, 5)
    );
    // The probe goes out from there, and the commit index stays put.
    let sent = drain_appends(&mut leader, 2);
    assert_eq!(sent.len(), 1);
    let (prev, _, entries, _) = append_entries_of(&sent[0]);
    assert_eq!(
        (prev, entries.len() as Index),
        (4, leader.log().last_index() - 4)
    );
    assert_eq!(leader.commit_index(), last);
    // Once it accepts, it is replicated to as before; a later rejection of
    // the same kind that is not below its match is an ordinary one.
    leader.step(success(2, 1, 2, leader.log().last_index()));
    let pr = leader.progress(2).unwrap();
    assert_eq!(
        (pr.state(), pr.match_index()),
        (ProgressState::Replicate, leader.log().last_index())
    );
    assert_eq!(leader.followers_repaired(), 1);
}

/// Messages are built when the replication thread is ready, so everything
/// proposed meanwhile travels together, up to `max_append_bytes`.
#[test]
fn test_batching_in_append_for() {
    let mut leader = steady_leader(3, &[], 1);
    for i in 0..5u8 {
        leader.propose(vec![i; 4]).unwrap();
    }
    let sent = drain_appends(&mut leader, 2);
    assert_eq!(sent.len(), 1);
    let (prev, _, entries, _) = append_entries_of(&sent[0]);
    assert_eq!(prev, 1);
    let indexes: Vec<Index> = entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, vec![2, 3, 4, 5, 6]);

    // A cap of two entries' worth splits the batch: 2 + 2 + 1.
    let mut leader = steady_leader(3, &[], 1);
    let four_bytes = Entry {
        index: 2,
        term: 1,
        payload: Payload::Command(vec![0; 4]),
    };
    leader.config.max_append_bytes = 2 * four_bytes.size();
    for i in 0..5u8 {
        leader.propose(vec![i; 4]).unwrap();
    }
    let sent = drain_appends(&mut leader, 2);
    let shape: Vec<(Index, usize)> = sent
        .iter()
        .map(|m| {
            let (prev, _, entries, _) = append_entries_of(m);
            (prev, entries.len())
        })
        .collect();
    assert_eq!(shape, vec![(1, 2), (3, 2), (5, 1)]);
    // An entry larger than the cap still goes out, alone.
    leader.propose(vec![0; 100]).unwrap();
    let sent = drain_appends(&mut leader, 2);
    assert_eq!(sent.len(), 1);
    assert_eq!(append_entries_of(&sent[0]).2.len(), 1);
}

/// A rejection that a follower sends in reply to a delayed AppendEntries of an
/// earlier term carries the follower's current term, so when that old leader
/// has since been re-elected it takes the rejection as a current one. If the
/// rejected index equals the follower's match index, the leader must see it as
/// stale (it once computed `next.clamp(match + 1, rejected)` with min > max
/// and panicked).
#[test]
fn test_stale_rejection_at_match_index_does_not_panic() {
    // Node 1 led term 1 and sent follower 2 an AppendEntries with prev index 2;
    // that message is delayed. Node 1 is re-elected in term 3.
    let delayed = append(1, 2, 1, (2, 1), vec![], 0);
    let mut leader = core_with_log(1, 3, &[1, 1], 2, None);
    leader.config.max_append_bytes = 0;
    make_leader(&mut leader);
    leader.take_ready();
    let mut follower = core_with_log(2, 3, &[1], 2, None);

    // Replication of term 3 to the follower: probe, reject, probe, success.
    let mut to_follower = drain_appends(&mut leader, 2);
    for _ in 0..2 {
        for m in to_follower.drain(..) {
            follower.step(m);
        }
        for reply in follower.take_ready().messages {
            leader.step(reply);
        }
        to_follower = drain_appends(&mut leader, 2);
    }
    assert_eq!(leader.progress(2).unwrap().match_index(), 2);
    assert_eq!(follower.current_term(), 3);

    // Now the delayed term-1 message arrives; the follower refuses it with its
    // (current) term 3, and the leader of term 3 takes that refusal in.
    follower.step(delayed);
    let reply = follower.take_ready().messages.pop().unwrap();
    assert_eq!(reply.term, 3);
    assert!(matches!(
        reply.message,
        Message::AppendEntriesResponse {
            result: AppendResult::Reject {
                rejected_index: 2,
                ..
            },
            ..
        }
    ));
    leader.step(reply);
    assert_eq!(leader.role(), RoleKind::Leader);
    assert_eq!(leader.progress(2).unwrap().match_index(), 2);
}

/// The same case without any change of term: a rejection of a pipelined
/// message overtaken (after a reconnection) by the success of a later one that
/// acknowledges exactly the rejected index.
#[test]
fn test_reordered_rejection_at_match_index_does_not_panic() {
    let mut leader = steady_leader(3, &[], 1);
    leader.config.max_append_bytes = 0; // one entry per message
    let mut follower = core_with_log(2, 3, &[1], 1, None);
    follower.step(heartbeat(1, 2, 1));
    follower.take_ready();

    // Two pipelined messages; the first is lost, so the follower rejects the
    // second: its log ends at 1, before the prev index 2.
    leader.propose(b"a".to_vec()).unwrap();
    leader.propose(b"b".to_vec()).unwrap();
    let sent = drain_appends(&mut leader, 2);
    assert_eq!(sent.len(), 2);
    follower.step(sent[1].clone());
    let late_reject = follower.take_ready().messages.pop().unwrap();
    assert!(matches!(
        late_reject.message,
        Message::AppendEntriesResponse {
            result: AppendResult::Reject {
                rejected_index: 2,
                ..
            },
            ..
        }
    ));

    // The connection drops; the leader probes from the match point, and the
    // follower's success for index 2 arrives before the old rejection.
    leader.peer_unreachable(2);
    let probe = drain_appends(&mut leader, 2);
    follower.step(probe[0].clone());
    for reply in follower.take_ready().messages {
        leader.step(reply);
    }
    assert_eq!(leader.progress(2).unwrap().match_index(), 2);

    leader.step(late_reject); // panics: min > max. min = 3, max = 2
    let pr = leader.progress(2).unwrap();
    assert_eq!(pr.match_index(), 2, "a stale rejection changes nothing");
    assert!(pr.next_index() > 2);
}

// ===========================================================================
// Linearizable reads: ReadIndex (§6.4 of the Raft dissertation)
// ===========================================================================

/// The round carried by an AppendEntries.
fn round_of(env: &Envelope) -> u64 {
    match env.message {
        Message::AppendEntries { round, .. } => round,
        ref other => panic!("expected AppendEntries, got {other:?}"),
    }
}

/// A follower's acknowledgement of `match_index`, echoing `round`.
fn ack(from: NodeId, term: Term, match_index: Index, round: u64) -> Envelope {
    env(
        from,
        1,
        term,
        Message::AppendEntriesResponse {
            round,
            result: AppendResult::Success { match_index },
        },
    )
}

fn read_ids(ready: &Ready) -> Vec<u64> {
    ready.reads.iter().map(|r| r.id).collect()
}

/// A read whose client gave up is forgotten: a leader that no majority
/// answers holds only the reads still waited for, and a later round does
/// not serve the cancelled one.
#[test]
fn test_cancelled_reads_are_forgotten_6_4() {
    let mut leader = steady_leader(3, &[], 1);
    let commit = leader.commit_index();
    let mut latest = 0;
    for id in 1..=100 {
        leader.read_index(id).unwrap();
        let (_, sent) = settle(&mut leader);
        latest = sent.iter().map(round_of).fold(latest, u64::max);
    }
    assert_eq!(leader.pending_reads(), 100);
    for id in 1..=99 {
        leader.cancel_read(id);
    }
    leader.cancel_read(12345); // unknown: nothing happens
    assert_eq!(leader.pending_reads(), 1);
    // Only the first read's round went out (the rest wait for it to be
    // answered); its answer sends the round the last read waits for.
    leader.step(ack(2, 1, commit, latest));
    let (ready, sent) = settle(&mut leader);
    assert!(read_ids(&ready).is_empty());
    let next = sent
        .iter()
        .map(round_of)
        .max()
        .expect("the next round went out");
    assert!(next > latest);
    leader.step(ack(2, 1, commit, next));
    let served: Vec<u64> = leader.take_ready().reads.iter().map(|r| r.id).collect();
    assert_eq!(served, vec![100]);
    assert_eq!(leader.pending_reads(), 0);
}

/// §6.4's batching: while a round is out and unanswered, new reads do not
/// send rounds of their own; they share the next, which goes out once a
/// majority answers the one in flight.
#[test]
fn test_reads_wait_for_the_round_in_flight_and_share_the_next_6_4() {
    let mut leader = steady_leader(3, &[], 1);
    let commit = leader.commit_index();
    leader.read_index(1).unwrap();
    let (_, sent) = settle(&mut leader);
    let first = sent.iter().map(round_of).max().expect("a round went out");
    for id in 2..=50 {
        leader.read_index(id).unwrap();
        let (ready, sent) = settle(&mut leader);
        assert!(sent.is_empty(), "read {id} sent {} messages", sent.len());
        assert!(read_ids(&ready).is_empty());
    }
    leader.step(ack(2, 1, commit, first));
    let (ready, sent) = settle(&mut leader);
    assert_eq!(read_ids(&ready), vec![1]);
    let second = sent
        .iter()
        .map(round_of)
        .max()
        .expect("the next round went out");
    assert_eq!(second, first + 1, "one round for reads 2 to 50");
    leader.step(ack(3, 1, commit, second));
    let served = read_ids(&leader.take_ready());
    assert_eq!(served, (2..=50).collect::<Vec<u64>>());
}

#[test]
fn test_read_index_needs_a_majority_round_6_4() {
    let mut leader = steady_leader(3, &[], 1);
    let commit = leader.commit_index();
    leader.read_index(7).unwrap();
    let (ready, sent) = settle(&mut leader);
    assert!(
        ready.reads.is_empty(),
        "released before any follower answered"
    );
    // The read asks every follower at once, not at the next heartbeat.
    assert_eq!(ready.replicate, vec![2, 3]);
    let round = round_of(&sent[0]);
    assert!(round > 0);
    // An answer to an older round proves nothing about this read.
    leader.step(ack(2, 1, commit, round - 1));
    assert!(leader.take_ready().reads.is_empty());
    // One follower plus the leader is a majority of three.
    leader.step(ack(2, 1, commit, round));
    let ready = leader.take_ready();
    assert_eq!(
        ready.reads,
        vec![ReadyRead {
            id: 7,
            index: commit
        }]
    );
    // Released exactly once.
    leader.step(ack(3, 1, commit, round));
    assert!(leader.take_ready().reads.is_empty());
}

#[test]
fn test_read_index_in_5_node_cluster_needs_two_followers_6_4() {
    let mut leader = steady_leader(5, &[], 1);
    let commit = leader.commit_index();
    leader.read_index(1).unwrap();
    let (_, sent) = settle(&mut leader);
    let round = round_of(&sent[0]);
    leader.step(ack(2, 1, commit, round));
    assert!(leader.take_ready().reads.is_empty());
    leader.step(ack(4, 1, commit, round));
    assert_eq!(read_ids(&leader.take_ready()), vec![1]);
}

#[test]
fn test_read_index_waits_for_the_current_term_commit_6_4() {
    // A new leader holding entries of term 1 it cannot know are committed.
    let mut leader = core_with_log(1, 3, &[1, 1], 1, None);
    make_leader(&mut leader);
    let term = leader.current_term();
    let noop = leader.log().last_index();
    assert_eq!(leader.commit_index(), 0);
    leader.read_index(9).unwrap();
    let (_, sent) = settle(&mut leader);
    let round = sent.iter().map(round_of).max().unwrap();
    // Leadership is confirmed, but nothing of this term is committed yet, so
    // the read must not be served from an older state.
    leader.step(ack(2, term, 0, round));
    leader.step(ack(3, term, 0, round));
    assert!(leader.take_ready().reads.is_empty());
    // Once the no-op commits, the read goes out at the no-op's index.
    leader.persisted(noop, term);
    leader.step(ack(2, term, noop, round));
    let ready = leader.take_ready();
    assert_eq!(ready.reads, vec![ReadyRead { id: 9, index: noop }]);
    assert_eq!(leader.commit_index(), noop);
}

#[test]
fn test_read_index_batches_reads_into_one_round_6_4() {
    let mut leader = steady_leader(3, &[], 1);
    let commit = leader.commit_index();
    for id in 1..=5 {
        leader.read_index(id).unwrap();
    }
    let (_, sent) = settle(&mut leader);
    // One AppendEntries per follower carries the latest round…
    assert_eq!(sent.len(), 2);
    let round = round_of(&sent[0]);
    // …and one answer to it releases all five, in order.
    leader.step(ack(3, 1, commit, round));
    assert_eq!(read_ids(&leader.take_ready()), vec![1, 2, 3, 4, 5]);
}

#[test]
fn test_read_index_aborted_when_leadership_is_lost_6_4() {
    let mut leader = steady_leader(3, &[], 1);
    leader.read_index(4).unwrap();
    leader.read_index(5).unwrap();
    settle(&mut leader);
    leader.step(vote_request(2, 1, 2, (9, 2)));
    assert_eq!(leader.role(), RoleKind::Follower);
    let ready = leader.take_ready();
    assert!(ready.reads.is_empty());
    assert_eq!(ready.aborted_reads, vec![4, 5]);
}

#[test]
fn test_read_index_refused_by_followers() {
    let mut follower = new_core(2, 3);
    follower.step(heartbeat(1, 2, 1));
    assert_eq!(follower.read_index(1), Err(NotLeader { leader: Some(1) }));
    assert!(follower.take_ready().reads.is_empty());
}

#[test]
fn test_read_index_on_a_single_node_is_immediate_6_4() {
    let mut core = new_core(1, 1);
    tick_until_campaign(&mut core);
    let ready = core.take_ready();
    let noop = ready.entries.last().unwrap().clone();
    core.persisted(noop.index, noop.term);
    core.take_ready();
    core.read_index(3).unwrap();
    assert_eq!(
        core.take_ready().reads,
        vec![ReadyRead {
            id: 3,
            index: noop.index
        }]
    );
}

#[test]
fn test_stale_term_refusal_confirms_no_read_6_4() {
    // A follower refusing a message of an older term answers with round 0,
    // even though its reply carries the leader's current term.
    let mut follower = core_with_log(2, 3, &[1], 3, None);
    follower.step(append(1, 2, 1, (1, 1), vec![], 0));
    let reply = only_message(&follower.take_ready()).clone();
    assert_eq!(reply.term, 3);
    assert!(matches!(
        reply.message,
        Message::AppendEntriesResponse { round: 0, .. }
    ));
}

// ===========================================================================
// Pre-vote, check-quorum and leader stickiness (§9.6 of the dissertation)
// ===========================================================================

/// The configuration nodes actually run with: pre-vote and check-quorum on.
fn extended_config(id: NodeId, n: u64) -> CoreConfig {
    let mut cfg = config(id, n);
    cfg.pre_vote = true;
    cfg.check_quorum = true;
    cfg
}

fn extended_core(id: NodeId, n: u64) -> RaftCore {
    RaftCore::new(extended_config(id, n), HardState::default(), Vec::new())
}

fn extended_network(n: u64) -> Network {
    Network::from_cores((1..=n).map(|id| extended_core(id, n)).collect())
}

/// Ticks every core once and delivers everything.
fn tick_all(net: &mut Network) {
    for id in net.ids() {
        net.tick(id);
    }
    net.deliver_all();
}

fn pre_vote(from: NodeId, to: NodeId, term: Term, last: (Index, Term)) -> Envelope {
    env(
        from,
        to,
        term,
        Message::PreVote {
            last_log_index: last.0,
            last_log_term: last.1,
        },
    )
}

#[test]
fn test_pre_vote_does_not_bump_terms_9_6() {
    let mut core = RaftCore::new(
        extended_config(1, 3),
        HardState {
            current_term: 4,
            voted_for: None,
        },
        entries_of(&[1, 4]),
    );
    for _ in 0..core.config().election_ticks_max {
        core.tick();
    }
    assert_eq!(core.role(), RoleKind::PreCandidate);
    assert_eq!(core.current_term(), 4, "a pre-candidate keeps its term");
    let ready = core.take_ready();
    assert_eq!(ready.hard_state, None, "nothing to persist for a pre-vote");
    assert_eq!(ready.messages.len(), 2);
    for m in &ready.messages {
        assert_eq!(m.term, 5, "asks about the next term");
        assert_eq!(
            m.message,
            Message::PreVote {
                last_log_index: 2,
                last_log_term: 4
            }
        );
    }

    // A voter answers without adopting the term or recording a vote.
    let mut voter = RaftCore::new(
        extended_config(2, 3),
        HardState {
            current_term: 4,
            voted_for: Some(3),
        },
        entries_of(&[1, 4]),
    );
    // (A restarted node votes only a minimum election timeout after it
    // started.)
    voter.tick_to(u64::from(voter.config().election_ticks_min));
    voter.take_ready();
    voter.step(pre_vote(1, 2, 5, (2, 4)));
    assert_eq!(voter.current_term(), 4);
    assert_eq!(voter.voted_for(), Some(3));
    let ready = voter.take_ready();
    assert_eq!(ready.hard_state, None);
    let reply = only_message(&ready);
    assert_eq!(reply.term, 5);
    assert_eq!(
        reply.message,
        Message::PreVoteResponse { vote_granted: true }
    );

    // A candidate whose log is behind is refused, with the voter's term.
    voter.step(pre_vote(1, 2, 5, (1, 1)));
    let reply = only_message(&voter.take_ready()).clone();
    assert_eq!(reply.term, 4);
    assert_eq!(
        reply.message,
        Message::PreVoteResponse {
            vote_granted: false
        }
    );
}

#[test]
fn test_pre_vote_majority_starts_the_real_election_9_6() {
    let mut core = extended_core(1, 3);
    for _ in 0..core.config().election_ticks_max {
        core.tick();
    }
    core.take_ready();
    // A grant for another term counts for nothing.
    core.step(env(
        2,
        1,
        7,
        Message::PreVoteResponse { vote_granted: true },
    ));
    assert_eq!(core.role(), RoleKind::PreCandidate);
    core.step(env(
        2,
        1,
        1,
        Message::PreVoteResponse { vote_granted: true },
    ));
    assert_eq!(core.role(), RoleKind::Candidate);
    assert_eq!(core.current_term(), 1);
    let ready = core.take_ready();
    assert_eq!(ready.hard_state.unwrap().voted_for, Some(1));
    assert!(ready
        .messages
        .iter()
        .all(|m| matches!(m.message, Message::RequestVote { .. }) && m.term == 1));
}

#[test]
fn test_pre_vote_refused_by_majority_falls_back_to_follower_9_6() {
    let mut core = extended_core(1, 3);
    for _ in 0..core.config().election_ticks_max {
        core.tick();
    }
    core.step(env(
        2,
        1,
        0,
        Message::PreVoteResponse {
            vote_granted: false,
        },
    ));
    core.step(env(
        3,
        1,
        0,
        Message::PreVoteResponse {
            vote_granted: false,
        },
    ));
    assert_eq!(core.role(), RoleKind::Follower);
    assert_eq!(core.current_term(), 0);
}

#[test]
fn test_rejoining_node_does_not_disrupt_the_leader_9_6() {
    let mut net = extended_network(3);
    net.elect(1);
    let term = net.core(1).current_term();
    net.isolate(3);
    // Node 3 times out again and again while cut off…
    for _ in 0..10 * net.core(3).config().election_ticks_max {
        net.tick(3);
        net.tick(1);
        net.tick(2);
        net.deliver_all();
    }
    assert_eq!(net.core(3).current_term(), term, "pre-vote kept its term");
    // …and when it comes back, the leader it never heard of losing stays.
    net.heal();
    for _ in 0..3 * net.core(1).config().election_ticks_max {
        tick_all(&mut net);
    }
    assert_eq!(net.leader(), Some(1));
    for id in net.ids() {
        assert_eq!(net.core(id).current_term(), term, "node {id}");
        assert_eq!(net.core(id).leader_id(), Some(1), "node {id}");
    }
}

#[test]
fn test_without_pre_vote_a_rejoining_node_does_disrupt_9_6() {
    // The control experiment: the same story with the paper's plain rules.
    let mut net = Network::new(3);
    net.elect(1);
    let term = net.core(1).current_term();
    net.isolate(3);
    for _ in 0..3 * net.core(3).config().election_ticks_max {
        net.tick(3);
    }
    assert!(net.core(3).current_term() > term);
    net.heal();
    net.heartbeat(1);
    assert!(net.core(1).current_term() > term, "the leader was deposed");
}

#[test]
fn test_leader_without_quorum_steps_down_check_quorum() {
    let mut net = extended_network(3);
    net.elect(1);
    let term = net.core(1).current_term();
    net.isolate(1);
    // Checked every election timeout: within two, the silence spans a whole one.
    for _ in 0..2 * net.core(1).config().election_ticks_min {
        net.tick(1);
        net.deliver_all();
    }
    assert_eq!(net.core(1).role(), RoleKind::Follower);
    assert_eq!(
        net.core(1).current_term(),
        term,
        "stepping down needs no new term"
    );
    assert_eq!(net.core(1).leader_id(), None);
}

#[test]
fn test_leader_with_quorum_stays_check_quorum() {
    let mut net = extended_network(5);
    net.elect(1);
    // Two of four followers cut off: with itself, still a majority of five.
    net.isolate(4);
    net.isolate(5);
    for _ in 0..4 * net.core(1).config().election_ticks_max {
        net.tick(1);
        net.tick(2);
        net.tick(3);
        net.deliver_all();
    }
    assert_eq!(net.core(1).role(), RoleKind::Leader);
}

#[test]
fn test_follower_in_lease_ignores_vote_requests_stickiness() {
    let mut follower = extended_core(2, 3);
    follower.step(heartbeat(1, 2, 1));
    follower.take_ready();
    // Just heard from the leader: a higher-term request is ignored outright.
    follower.step(vote_request(3, 2, 2, (9, 9)));
    assert_eq!(follower.current_term(), 1);
    assert!(follower.take_ready().messages.is_empty());
    follower.step(pre_vote(3, 2, 2, (9, 9)));
    assert!(follower.take_ready().messages.is_empty());
    // Once the minimum election timeout has passed without the leader, it votes.
    for _ in 0..follower.config().election_ticks_min {
        follower.tick();
    }
    follower.take_ready();
    follower.step(vote_request(3, 2, 2, (9, 9)));
    assert_eq!(follower.current_term(), 2);
    assert!(vote_granted(only_message(&follower.take_ready())));
}

/// A node that just started may have heard from the leader just before it
/// went down: it grants no vote until a minimum election timeout after it
/// started, or it could cut that leader's lease short (§6.4).
#[test]
fn test_restarted_node_grants_no_vote_for_a_minimum_election_timeout() {
    let hard_state = HardState {
        current_term: 1,
        voted_for: None,
    };
    let mut node = RaftCore::new(extended_config(2, 3), hard_state, Vec::new());
    let min = u64::from(node.config().election_ticks_min);
    node.step(vote_request(3, 2, 2, (9, 9)));
    node.step(pre_vote(3, 2, 2, (9, 9)));
    assert_eq!(node.current_term(), 1);
    assert!(node.take_ready().messages.is_empty());
    node.tick_to(min - 1);
    node.step(vote_request(3, 2, 2, (9, 9)));
    assert!(node.take_ready().messages.is_empty());
    node.tick_to(min);
    node.take_ready();
    node.step(vote_request(3, 2, 2, (9, 9)));
    assert_eq!(node.current_term(), 2);
    assert!(vote_granted(only_message(&node.take_ready())));
    // A node that never left term 0 was in no leader's lease: it votes.
    let mut fresh = extended_core(2, 3);
    fresh.step(vote_request(3, 2, 2, (9, 9)));
    assert!(vote_granted(only_message(&fresh.take_ready())));
}

/// Time is what the node's clock says: ticks missed by a late timer are
/// made up at once, so a follower's stickiness and a leader's lease end when
/// their time is up, not when the timer thread gets round to it. A long
/// gap (a paused process) costs a bounded number of ticks.
#[test]
fn test_tick_to_makes_up_missed_ticks() {
    let mut follower = extended_core(2, 3);
    follower.tick_to(100);
    follower.step(heartbeat(1, 2, 1));
    follower.take_ready();
    follower.tick_to(100 + u64::from(follower.config().election_ticks_min));
    follower.take_ready();
    follower.step(vote_request(3, 2, 2, (9, 9)));
    assert!(vote_granted(only_message(&follower.take_ready())));
    // A day's worth of ticks at once: the clock moves, the work is bounded.
    follower.tick_to(8_640_000);
    assert_eq!(follower.ticks(), 8_640_000);
    assert!(follower.take_ready().messages.len() < 1000);

    let mut leader = leader_with_fresh_lease();
    leader.read_index(1).unwrap();
    assert_eq!(leader.lease_reads_served(), 1);
    // The timer skipped a whole election timeout: no lease is left.
    let now = leader.ticks();
    leader.tick_to(now + u64::from(leader.config().election_ticks_min));
    leader.take_ready();
    leader.read_index(2).unwrap();
    assert_eq!(leader.lease_reads_served(), 1);
}

/// A lease-reading leader of three whose no-op one follower has just
/// acknowledged, in the round the no-op went out with.
fn leader_with_fresh_lease() -> RaftCore {
    let mut cfg = extended_config(1, 3);
    cfg.lease_reads = true;
    let mut leader = RaftCore::new(cfg, HardState::default(), Vec::new());
    make_leader(&mut leader);
    let noop = leader.log().last_index();
    leader.persisted(noop, 1);
    let (_, sent) = settle(&mut leader);
    leader.step(ack(2, 1, noop, round_of(&sent[0])));
    leader.take_ready();
    leader
}

#[test]
fn test_lease_read_needs_no_round_while_the_lease_holds() {
    let mut leader = leader_with_fresh_lease();
    // Fresh acknowledgement from a majority: served at once.
    leader.read_index(1).unwrap();
    assert_eq!(read_ids(&leader.take_ready()), vec![1]);
    assert_eq!(leader.lease_reads_served(), 1);
    // Without further acknowledgements the lease runs out (before the
    // followers' election timeout could) and reads need a round again.
    for _ in 0..leader.config().election_ticks_min - 2 {
        leader.tick();
    }
    leader.take_ready();
    leader.read_index(2).unwrap();
    assert!(leader.take_ready().reads.is_empty());
    assert_eq!(leader.lease_reads_served(), 1);
}

// ===========================================================================
// §7 Log compaction: snapshots, InstallSnapshot, restart
// ===========================================================================

fn install_chunk(from: NodeId, to: NodeId, term: Term, snapshot: (Index, Term)) -> Envelope {
    env(
        from,
        to,
        term,
        Message::InstallSnapshot {
            last_included_index: snapshot.0,
            last_included_term: snapshot.1,
            offset: 0,
            total: 3,
            data: b"abc".to_vec(),
            done: true,
        },
    )
}

fn snapshot_result(env: &Envelope) -> (Index, SnapshotResult) {
    match env.message {
        Message::InstallSnapshotResponse {
            last_included_index,
            result,
        } => (last_included_index, result),
        ref other => panic!("expected InstallSnapshotResponse, got {other:?}"),
    }
}

/// A durable snapshot compacts the log up to `snapshot_keep` entries before
/// its last included index, in memory and (through the Ready) on disk.
#[test]
fn test_snapshot_compacts_the_log_keeping_a_tail_7() {
    let mut leader = steady_leader(3, &[1; 10], 2);
    leader.config.snapshot_keep = 3;
    leader.snapshot_taken(9, 1);
    let ready = leader.take_ready();
    assert_eq!(ready.compact_through, Some(6));
    assert_eq!(leader.log().first_index(), 7);
    assert_eq!(leader.log().offset(), (6, 1));
    assert_eq!(leader.snapshot(), (9, 1));
    // An older snapshot finishing late changes nothing.
    leader.snapshot_taken(8, 1);
    assert_eq!(leader.take_ready().compact_through, None);
    assert_eq!(leader.snapshot(), (9, 1));
}

/// §7: "the leader must occasionally send snapshots to followers that lag
/// behind" — once the entry before a follower's next_index is compacted,
/// it gets the snapshot and nothing else until it answers; then it is
/// probed from the snapshot's index.
#[test]
fn test_leader_sends_snapshot_to_follower_behind_the_compaction_point_7() {
    let mut leader = core_with_log(1, 3, &[1; 10], 1, None);
    leader.config.snapshot_keep = 0;
    make_leader(&mut leader);
    let term = leader.current_term();
    leader.persisted(11, term);
    leader.step(success(3, 1, term, 11));
    leader.take_ready();
    // Follower 2 is empty: it rejects the first probe.
    drain_appends(&mut leader, 2);
    leader.step(reject(
        2,
        1,
        term,
        10,
        RejectHint::LogTooShort { last_index: 0 },
    ));
    leader.snapshot_taken(11, term);
    leader.take_ready();
    assert_eq!(leader.log().first_index(), 12, "everything compacted");
    assert_eq!(
        leader.append_for(2),
        Some(Outgoing::Snapshot { term }),
        "entry 1 is gone: only the snapshot has it"
    );
    assert!(leader.sending_snapshot_to(2, term));
    assert_eq!(leader.progress(2).unwrap().state(), ProgressState::Snapshot);
    leader.tick();
    assert_eq!(leader.append_for(2), None, "no heartbeat over the stream");
    // A chunk's acknowledgement keeps it in snapshot state.
    let received = SnapshotResult::Received { bytes: 3 };
    leader.step(env(2, 1, term, snapshot_result_msg(11, received)));
    assert!(leader.sending_snapshot_to(2, term));
    leader.step(env(
        2,
        1,
        term,
        snapshot_result_msg(11, SnapshotResult::Installed),
    ));
    let pr = leader.progress(2).unwrap();
    assert_eq!(
        (pr.state(), pr.match_index(), pr.next_index()),
        (ProgressState::Probe, 11, 12)
    );
    leader.propose(b"x".to_vec()).unwrap();
    let append = leader.next_append(2).expect("probing from the snapshot");
    assert_eq!(append_entries_of(&append).0, 11);
    assert_eq!(append_entries_of(&append).2, &[entry_of(&leader, 12)][..]);
    // A failed transfer starts over.
    leader.step(reject(
        2,
        1,
        term,
        11,
        RejectHint::LogTooShort { last_index: 0 },
    ));
    assert_eq!(
        leader.progress(2).unwrap().match_index(),
        11,
        "never below the match"
    );
}

fn entry_of(core: &RaftCore, index: Index) -> Entry {
    core.log().get(index).cloned().expect("held")
}

fn snapshot_result_msg(index: Index, result: SnapshotResult) -> Message {
    Message::InstallSnapshotResponse {
        last_included_index: index,
        result,
    }
}

/// §7 receiver rule 7: a log that does not hold the snapshot's last entry is
/// discarded whole; the state machine is restored before anything after it
/// is applied; the answer leaves only after storage dropped the log.
#[test]
fn test_follower_installs_snapshot_discarding_its_log_7() {
    let mut follower = core_with_log(2, 3, &[1, 1, 2], 3, None);
    follower.step(install_chunk(1, 2, 3, (10, 3)));
    let chunk = follower.take_snapshot_chunk().expect("a chunk to write");
    assert_eq!(
        (chunk.last_included_index, chunk.data.len(), chunk.done),
        (10, 3, true)
    );
    assert!(
        follower.take_ready().messages.is_empty(),
        "nothing installed yet"
    );
    follower.snapshot_received(1, 10, 3, three_voters());
    let ready = follower.take_ready();
    assert!(ready.reset_log, "storage drops the old log");
    assert_eq!(ready.install, Some((10, 3)));
    assert!(
        ready.committed.is_empty(),
        "entries up to 10 are in the snapshot"
    );
    assert_eq!(
        snapshot_result(only_message(&ready)),
        (10, SnapshotResult::Installed)
    );
    assert_eq!(follower.log().first_index(), 11);
    assert_eq!(
        (follower.log().last_index(), follower.log().last_term()),
        (10, 3)
    );
    assert_eq!(follower.commit_index(), 10);
    assert_eq!(follower.snapshots_installed(), 1);
    // The leader continues from there: its AppendEntries after 10 match.
    follower.step(append(1, 2, 3, (10, 3), vec![entry(11, 3)], 11));
    let ready = follower.take_ready();
    assert_eq!(ready.entries, vec![entry(11, 3)]);
    assert_eq!(ready.committed, vec![entry(11, 3)]);
}

/// §7 receiver rule 6: if the log holds the snapshot's last entry with the
/// same term, the entries after it are kept.
#[test]
fn test_follower_keeps_the_log_suffix_past_a_matching_snapshot_7() {
    let mut follower = core_with_log(2, 3, &[1, 1, 2, 2, 2], 2, None);
    follower.step(install_chunk(1, 2, 2, (3, 2)));
    assert!(follower.take_snapshot_chunk().is_some());
    follower.snapshot_received(1, 3, 2, three_voters());
    let ready = follower.take_ready();
    assert!(!ready.reset_log);
    assert_eq!(ready.compact_through, Some(3));
    assert_eq!(ready.install, Some((3, 2)));
    assert_eq!(terms_of(&follower), vec![2, 2], "entries 4 and 5 kept");
    assert_eq!(follower.log().first_index(), 4);
}

/// A snapshot that covers nothing past the commit index — a duplicate, or
/// one overtaken by AppendEntries — is acknowledged and not installed; one
/// from a stale term is refused with our term.
#[test]
fn test_stale_or_duplicate_snapshot_is_ignored_7() {
    let mut follower = core_with_log(2, 3, &[1, 1, 1, 1, 1], 1, None);
    follower.step(append(1, 2, 1, (5, 1), Vec::new(), 5));
    follower.take_ready();
    assert_eq!(follower.commit_index(), 5);
    follower.step(install_chunk(1, 2, 1, (4, 1)));
    assert!(follower.take_snapshot_chunk().is_none(), "nothing to write");
    let ready = follower.take_ready();
    assert_eq!(
        snapshot_result(only_message(&ready)),
        (4, SnapshotResult::Installed)
    );
    assert_eq!(ready.install, None);
    assert_eq!(terms_of(&follower), vec![1; 5], "the log is untouched");
    // Installed once, the same snapshot again is a duplicate.
    follower.step(install_chunk(1, 2, 1, (9, 1)));
    assert!(follower.take_snapshot_chunk().is_some());
    follower.snapshot_received(1, 9, 1, three_voters());
    follower.take_ready();
    follower.step(install_chunk(1, 2, 1, (9, 1)));
    assert!(follower.take_snapshot_chunk().is_none());
    // Received again after being overtaken: acknowledged, not installed.
    follower.snapshot_received(1, 9, 1, three_voters());
    assert_eq!(follower.take_ready().install, None);
    // A stale term: refused, with our term, so the sender steps down.
    follower.step(install_chunk(3, 2, 0, (20, 0)));
    assert!(follower.take_snapshot_chunk().is_none());
    let ready = follower.take_ready();
    let refusal = only_message(&ready);
    assert_eq!((refusal.to, refusal.term), (3, 1));
    assert_eq!(snapshot_result(refusal).1, SnapshotResult::Failed);
}

/// The configuration of [`config`]'s three-node clusters, as a snapshot
/// carries it.
fn three_voters() -> (Index, Configuration) {
    (
        0,
        Configuration::of_voters((1..=3).map(|id| (id, String::new()))),
    )
}

fn restored(snapshot: (Index, Term), first: Index, terms: &[Term], commit: Index) -> RaftCore {
    let mut cfg = config(1, 3);
    cfg.snapshot_keep = 1;
    let entries = terms
        .iter()
        .enumerate()
        .map(|(i, &t)| entry(first + i as Index, t))
        .collect();
    RaftCore::restore(
        cfg,
        Restored {
            hard_state: HardState {
                current_term: 3,
                voted_for: None,
            },
            snapshot,
            config: three_voters(),
            entries,
            commit_index: commit,
        },
    )
}

/// A restart resumes from the snapshot: the log is reconciled with it as an
/// install would be, and committed entries after it are applied at once.
#[test]
fn test_restart_from_snapshot_reapplies_only_committed_entries_7() {
    // Entries 8..=14 hold the snapshot's last entry (10@3): kept, up to
    // snapshot_keep before it; the saved commit index is applied.
    let mut core = restored((10, 3), 8, &[2, 2, 3, 3, 3, 3, 3], 13);
    assert_eq!(core.log().first_index(), 10, "one entry kept before 10");
    assert_eq!(core.last_applied(), 10);
    assert_eq!(core.commit_index(), 13);
    let ready = core.take_ready();
    let applied: Vec<Index> = ready.committed.iter().map(|e| e.index).collect();
    assert_eq!(applied, vec![11, 12, 13]);
    assert!(!ready.reset_log);
    // A log that starts right after the snapshot is simply continued.
    let core = restored((10, 3), 11, &[3, 3], 99);
    assert_eq!((core.log().first_index(), core.commit_index()), (11, 12));
    // A log whose entry 10 has another term was never reconciled with the
    // snapshot (a crash came first): it is discarded, on disk too.
    let mut core = restored((10, 3), 8, &[2, 2, 2, 2], 9);
    assert_eq!(
        (core.log().first_index(), core.log().last_index()),
        (11, 10)
    );
    assert_eq!(core.commit_index(), 10);
    assert!(core.take_ready().reset_log);
    // No snapshot: the log from 1, as before.
    let core = restored((0, 0), 1, &[1, 1], 2);
    assert_eq!((core.log().first_index(), core.commit_index()), (1, 2));
}

/// No heartbeat goes over a snapshot stream, so a follower that restarted,
/// or whose answer was lost with its connection, would never be noticed: a
/// transfer the follower says nothing about for ten election timeouts is
/// started over.
#[test]
fn test_a_silent_snapshot_transfer_starts_over_7() {
    let mut leader = core_with_log(1, 3, &[1; 4], 1, None);
    leader.config.snapshot_keep = 0;
    make_leader(&mut leader);
    let term = leader.current_term();
    leader.persisted(5, term);
    leader.step(success(3, 1, term, 5));
    leader.snapshot_taken(5, term);
    leader.take_ready();
    assert_eq!(leader.append_for(2), Some(Outgoing::Snapshot { term }));
    let limit = 10 * leader.config.election_ticks_max;
    for _ in 0..limit {
        leader.tick();
        // Follower 3 keeps the leader in office.
        leader.step(success(3, 1, term, 5));
    }
    assert!(
        leader.sending_snapshot_to(2, term),
        "still within the limit"
    );
    leader.tick();
    assert!(!leader.sending_snapshot_to(2, term), "given up");
    assert_eq!(
        leader.append_for(2),
        Some(Outgoing::Snapshot { term }),
        "and asked for again"
    );
}

mod membership;
