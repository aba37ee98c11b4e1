//! Elections: who may vote for whom, and when a node becomes candidate or
//! leader (§5.2, §5.4.1), with the extensions of §9.6 of the dissertation —
//! pre-vote, check-quorum and leader stickiness.

use super::{RaftCore, Role};
use crate::raft::message::{Envelope, Index, Message, NodeId, Term};
use crate::raft::quorum::{self, VoteResult};
use log::{debug, info};
use std::collections::BTreeMap;

impl RaftCore {
    /// §9.6 of the dissertation: before disrupting anyone, ask whether we
    /// could win an election for the next term. Our term and vote stay as
    /// they are; only a majority of yes starts the real election.
    pub(super) fn pre_campaign(&mut self) {
        self.role = Role::PreCandidate {
            votes: BTreeMap::from([(self.config.id, true)]),
        };
        self.reset_election_timer();
        let term = self.current_term + 1;
        info!(
            "node {}: asking for pre-votes for term {term}",
            self.config.id
        );
        let voters = self.voters();
        if quorum::tally(self.votes(), &voters) == VoteResult::Won {
            self.campaign(false);
            return;
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        for peer in voters.into_iter().filter(|&p| p != self.config.id) {
            // Stamped with the term we would campaign in, not our own.
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

    /// §5.2: become a candidate, vote for ourselves, and ask every other
    /// voter. `leadership_transfer`: the leader asked for it (§3.10).
    pub(super) fn campaign(&mut self, leadership_transfer: bool) {
        self.current_term += 1;
        self.voted_for = Some(self.config.id);
        self.hard_state_dirty = true;
        self.role = Role::Candidate {
            votes: BTreeMap::from([(self.config.id, true)]),
        };
        self.reset_election_timer();
        info!(
            "node {}: starting election for term {}",
            self.config.id, self.current_term
        );
        let voters = self.voters();
        if quorum::tally(self.votes(), &voters) == VoteResult::Won {
            self.become_leader();
            return;
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        let id = self.config.id;
        for peer in voters.into_iter().filter(|&p| p != id) {
            self.send(
                peer,
                Message::RequestVote {
                    last_log_index,
                    last_log_term,
                    leadership_transfer,
                },
            );
        }
    }

    /// Whether the configuration records for this node a data dir other
    /// than its own: this dir was wiped or replaced while the node was a
    /// member, so it has forgotten the votes it gave and the entries it
    /// acknowledged. Such a node never votes and never campaigns: a vote
    /// from it could elect a second leader in a term, or a leader that lacks
    /// committed entries. (Its peers do not count its votes or
    /// acknowledgements either; the way back is to remove it and add it
    /// back, which records its new data dir.)
    pub(super) fn forgot_its_votes(&self) -> bool {
        let own = self.config.incarnation;
        let recorded =
            (self.configs.latest().members.get(&self.config.id)).and_then(|m| m.incarnation);
        own != 0 && recorded.is_some_and(|r| r != own)
    }

    /// The answers of the election (or pre-vote) under way.
    fn votes(&self) -> &BTreeMap<NodeId, bool> {
        static NONE: BTreeMap<NodeId, bool> = BTreeMap::new();
        match &self.role {
            Role::PreCandidate { votes } | Role::Candidate { votes } => votes,
            _ => &NONE,
        }
    }

    pub(super) fn handle_request_vote(
        &mut self,
        candidate: NodeId,
        last_log_index: Index,
        last_log_term: Term,
    ) {
        // Figure 2: grant if we have not voted for someone else this term and
        // the candidate's log is at least as up-to-date as ours (§5.4.1).
        let free_to_vote = self.voted_for.is_none_or(|v| v == candidate);
        let up_to_date = self.log.is_up_to_date(last_log_index, last_log_term);
        let vote_granted = free_to_vote && up_to_date && !self.forgot_its_votes();
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
    pub(super) fn handle_pre_vote(
        &mut self,
        candidate: NodeId,
        term: Term,
        last_index: Index,
        last_term: Term,
    ) {
        let up_to_date = self.log.is_up_to_date(last_index, last_term);
        let free = term > self.current_term
            || (self.leader_id().is_none() && self.voted_for.is_none_or(|v| v == candidate));
        let vote_granted = up_to_date && free && !self.forgot_its_votes();
        debug!(
            "node {}: pre-vote for {candidate} in term {term}: {vote_granted}",
            self.config.id
        );
        // A grant carries the term asked about; a refusal our own.
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

    pub(super) fn handle_pre_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        vote_granted: bool,
    ) {
        let voters = self.voters();
        let next_term = self.current_term + 1;
        let Role::PreCandidate { votes } = &mut self.role else {
            return;
        };
        if vote_granted && term != next_term {
            return; // a grant for an earlier pre-vote
        }
        *votes.entry(from).or_insert(false) |= vote_granted;
        match quorum::tally(votes, &voters) {
            VoteResult::Won => self.campaign(false),
            // No way to win: wait as a follower for the next timeout.
            VoteResult::Lost => self.become_follower(self.current_term, None),
            VoteResult::Pending => {}
        }
    }

    pub(super) fn handle_vote_response(&mut self, from: NodeId, vote_granted: bool) {
        let voters = self.voters();
        let Role::Candidate { votes } = &mut self.role else {
            return;
        };
        // A grant is final for the term (the voter persisted it); a refusal
        // arriving later answers an older request and must not undo it.
        *votes.entry(from).or_insert(false) |= vote_granted;
        if quorum::tally(votes, &voters) == VoteResult::Won {
            self.become_leader();
        }
    }

    /// Check-quorum: a leader that has not heard from a majority for an
    /// election timeout may be cut off from it, and a new leader may already
    /// lead; it steps down rather than keep clients waiting.
    pub(super) fn check_quorum(&mut self) {
        let (id, voters) = (self.config.id, self.voters());
        let latest = self.configs.latest().clone();
        let Role::Leader { progress, .. } = &mut self.role else {
            return;
        };
        let mut active: Vec<NodeId> = Vec::new();
        for (&peer, pr) in progress.iter_mut() {
            if pr.take_active() {
                active.push(peer);
            }
        }
        // A removed member that stayed silent for a whole timeout will not
        // hear of its removal from us: stop trying.
        progress.retain(|peer, _| latest.contains(*peer) || active.contains(peer));
        // Only voters count, this leader too if it is one (it is not while
        // it removes itself, §4.2.2).
        let heard = voters
            .iter()
            .filter(|&&v| v == id || active.contains(&v))
            .count();
        if heard < crate::raft::quorum::majority(voters.len()) {
            info!(
                "node {id}: heard from only {heard} of {} voters in an election timeout; stepping down",
                voters.len()
            );
            self.become_follower(self.current_term, None);
        }
    }

    /// Leader stickiness (§9.6): a vote request for a higher term is ignored
    /// — not even its term is adopted — while this node heard from a live
    /// leader too recently to believe it is gone. A node that merely lost
    /// touch must not depose a leader the rest of the cluster still follows.
    pub(super) fn ignores_vote_request(&self, env: &Envelope) -> bool {
        let asks_for_vote = matches!(
            env.message,
            Message::RequestVote { .. } | Message::PreVote { .. }
        );
        let latest = self.configs.latest();
        // The removed node, not a node added back under its id with a new
        // data dir (whose incarnation a handshake told us) that this node
        // has not heard of yet.
        let incarnation = self.incarnations.get(&env.from).copied().unwrap_or(0);
        if asks_for_vote && latest.removal_of(env.from, incarnation).is_some() {
            // A removed node must not disrupt the cluster: not even its term
            // is adopted (§4.2.3). (A node merely unknown here is heard: it
            // may be a voter added by entries this node has yet to receive,
            // whose vote an election may need.)
            debug!(
                "node {}: ignoring {} from {}, removed from the cluster",
                self.config.id,
                env.message.name(),
                env.from
            );
            return true;
        }
        // §3.10: a candidate the leader itself asked to campaign is heard
        // even while that leader's lease holds.
        let transfer = matches!(
            env.message,
            Message::RequestVote {
                leadership_transfer: true,
                ..
            }
        );
        let ignore = asks_for_vote && !transfer && env.term > self.current_term && self.in_lease();
        if ignore {
            debug!(
                "node {}: ignoring {} from {} for term {}: leader lease",
                self.config.id,
                env.message.name(),
                env.from,
                env.term
            );
        }
        ignore
    }

    /// Whether this node recently heard from a live leader (or is one) —
    /// or restarted less than a minimum election timeout ago. A restarted
    /// node may have heard from the leader just before it went down; were
    /// it to vote at once, a leader's lease, which counts on that
    /// follower's stickiness, could be cut short (§6.4). (A node that never
    /// left term 0 has acknowledged no leader, so no lease counts on it.)
    pub(super) fn in_lease(&self) -> bool {
        let min = self.config.election_ticks_min;
        self.config.check_quorum
            && match self.role {
                Role::Leader { .. } => true,
                Role::Follower { leader: Some(_) } => self.election_elapsed < min,
                Role::Follower { leader: None } => self.restarted && self.ticks < u64::from(min),
                _ => false,
            }
    }
}
