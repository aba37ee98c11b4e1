//! Log replication and commitment (§5.3, §5.4.2): the leader's proposals and
//! AppendEntries, a follower's answer, and how the leader learns what is
//! committed.

use super::{NotLeader, Outgoing, ProposeError, RaftCore, Role, RoleKind};
use crate::raft::log::MaybeAppend;
use crate::raft::membership::Configuration;
use crate::raft::message::{
    AppendResult, Entry, Envelope, Index, Message, NodeId, Payload, RejectHint, Term,
};
use crate::raft::quorum;

use log::{debug, error, info, warn};

impl RaftCore {
    /// Offers a client command. On the leader it is appended to the log and its
    /// (index, term) returned: the command is committed if and when the entry at
    /// that index, with that term, is.
    /// A leader transferring its leadership takes no proposals (§3.10).
    pub fn propose(&mut self, command: Vec<u8>) -> Result<(Index, Term), ProposeError> {
        if self.role() != RoleKind::Leader {
            return Err(ProposeError::NotLeader(NotLeader {
                leader: self.leader_id(),
            }));
        }
        if let Some(target) = self.transferring_to() {
            return Err(ProposeError::Transferring { target });
        }
        let index = self.append_own(Payload::Command(command));
        Ok((index, self.current_term))
    }

    /// Appends an entry of the current term to the leader's own log.
    pub(super) fn append_own(&mut self, payload: Payload) -> Index {
        let index = self.log.last_index() + 1;
        let config = match &payload {
            Payload::Config(config) => Some(config.clone()),
            _ => None,
        };
        self.log.append(Entry {
            index,
            term: self.current_term,
            payload,
        });
        if let Some(config) = config {
            // §4.1: in force from the moment it is in the log.
            self.config_appended(index, config);
        }
        index
    }

    /// Reports that the log is durable up to `index`, whose entry had `term`
    /// when written. If the entry has since been replaced, the report is stale
    /// and ignored (a later one will cover the replacement). A leader counts
    /// its own copy towards a majority only from here.
    pub fn persisted(&mut self, index: Index, term: Term) {
        if self.log.mark_persisted(index, term) && self.role() == RoleKind::Leader {
            self.maybe_commit();
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

    /// Builds the next AppendEntries for `peer`, if the leader has anything to
    /// send it: new entries, a newer commit index, or a due heartbeat. Called by
    /// the peer's replication thread when it is ready to write, so everything
    /// appended since its last call travels in this one message.
    pub fn append_for(&mut self, peer: NodeId) -> Option<Outgoing> {
        let Role::Leader {
            progress, reads, ..
        } = &mut self.role
        else {
            return None;
        };
        let pr = progress.get_mut(&peer)?;
        let last_index = self.log.last_index();
        if !pr.wants_send(last_index, self.commit_index) {
            return None;
        }
        if self.log.is_compacted(pr.next_index() - 1) {
            // §7: the entry before the ones it needs is compacted; only the
            // snapshot has them.
            info!(
                "node {}: {} needs entry {}, compacted; sending it the snapshot at {}",
                self.config.id,
                peer,
                pr.next_index(),
                self.snapshot.0
            );
            pr.become_snapshot();
            return Some(Outgoing::Snapshot {
                term: self.current_term,
            });
        }
        let prev_log_index = pr.next_index() - 1;
        let Some(prev_log_term) = self.log.term_at(prev_log_index) else {
            // next_index is kept within 1..=last+1; anything else is a bug here,
            // but recover by probing from the known match point.
            error!(
                "node {}: next_index {} for {} is past the log end {}",
                self.config.id,
                pr.next_index(),
                peer,
                last_index
            );
            pr.become_probe();
            return None;
        };
        let entries = self
            .log
            .entries_from(pr.next_index(), self.config.max_append_bytes);
        let sent_through = prev_log_index + entries.len() as Index;
        pr.sent(sent_through, self.commit_index);
        let append = Envelope {
            from: self.config.id,
            to: peer,
            term: self.current_term,
            message: Message::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit: self.commit_index,
                round: reads.send_round(),
            },
        };
        self.release_departed(peer, sent_through);
        Some(Outgoing::Append(append))
    }

    /// A follower's (or candidate's) side of AppendEntries from the leader of
    /// its current term (Figure 2, "AppendEntries RPC", receiver steps 2–5).
    /// `None` means the message is ignored, unanswered.
    pub(super) fn handle_append_entries(
        &mut self,
        leader: NodeId,
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: Index,
    ) -> Option<AppendResult> {
        if !self.follow(leader) {
            return None;
        }
        if let Err(problem) =
            check_entries(prev_log_index, prev_log_term, &entries, self.current_term)
        {
            // Written, such entries would break the Log Matching Property
            // (§5.3) that every check here relies on — and storage refuses
            // them, which would stop this node. A correct leader never sends
            // them: this one is broken or not a real node.
            warn!(
                "node {}: malformed AppendEntries from {leader} at {prev_log_index}: {problem}; \
                 ignored",
                self.config.id
            );
            return None;
        }
        let commit_index = self.commit_index;
        let configs: Vec<(Index, Configuration)> = entries
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::Config(c) => Some((e.index, c.clone())),
                _ => None,
            })
            .collect();
        match (self.log).maybe_append(prev_log_index, prev_log_term, entries, commit_index) {
            MaybeAppend::Mismatch(hint) => {
                debug!(
                    "node {}: rejecting AppendEntries at {} from {}: {:?}",
                    self.config.id, prev_log_index, leader, hint
                );
                Some(AppendResult::Reject {
                    rejected_index: prev_log_index,
                    hint,
                })
            }
            MaybeAppend::ConflictsWithCommitted { index } => {
                error!(
                    "node {}: leader {} would overwrite committed entry {} (commit index {}); ignored",
                    self.config.id, leader, index, self.commit_index
                );
                None
            }
            MaybeAppend::Matched { last_new } => {
                // §4.1: configurations come and go with their entries.
                if let Some(kept) = self.log.take_truncation() {
                    self.configs_truncated(kept);
                }
                for (index, config) in configs {
                    if index > self.configs.latest_index() && index > self.log.offset().0 {
                        self.config_appended(index, config);
                    }
                }
                // Step 5. `last_new` rather than our last index: entries past
                // it came from an earlier message and may yet be replaced.
                self.commit_index = self.commit_index.max(leader_commit.min(last_new));
                Some(AppendResult::Success {
                    match_index: last_new,
                })
            }
        }
    }

    /// Recognises `leader` as the leader of the current term, on hearing an
    /// AppendEntries from it. Returns false if that cannot be right.
    pub(super) fn follow(&mut self, leader: NodeId) -> bool {
        match self.role {
            Role::Leader { .. } => {
                // Election Safety (§5.2) makes this impossible; a peer that does
                // it is broken, and obeying it could lose committed entries.
                error!(
                    "node {}: AppendEntries from {} while leader of term {}; ignored",
                    self.config.id, leader, self.current_term
                );
                return false;
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
                // §5.2: a follower stays one while it hears from a leader.
                self.election_elapsed = 0;
            }
        }
        true
    }

    pub(super) fn handle_append_response(
        &mut self,
        from: NodeId,
        round: u64,
        result: AppendResult,
    ) {
        // Any answer in our term, accepting or not, shows the follower still
        // recognised us as leader when it read that round.
        if let Role::Leader { progress, .. } = &mut self.role {
            if let Some(pr) = progress.get_mut(&from) {
                pr.answered_round(round);
            }
        }
        match result {
            AppendResult::Success { match_index } => self.handle_append_success(from, match_index),
            AppendResult::Reject {
                rejected_index,
                hint,
            } => self.handle_append_reject(from, rejected_index, hint),
        }
        self.check_reads();
    }

    fn handle_append_success(&mut self, from: NodeId, match_index: Index) {
        let last_index = self.log.last_index();
        let Role::Leader { progress, .. } = &mut self.role else {
            return;
        };
        let Some(pr) = progress.get_mut(&from) else {
            return;
        };
        if match_index > last_index {
            warn!(
                "node {}: {} claims to match up to {}, past our last index {}; ignored",
                self.config.id, from, match_index, last_index
            );
            return;
        }
        pr.accepted(match_index);
        self.maybe_commit();
        self.maybe_send_timeout_now(from);
    }

    fn handle_append_reject(&mut self, from: NodeId, rejected_index: Index, hint: RejectHint) {
        if let RejectHint::LogTooShort { last_index } = hint {
            if self.lost_entries(from, last_index) {
                return;
            }
        }
        // Where the hint says to resume. If we have entries of the follower's
        // conflicting term, the logs may match up to our last one of them;
        // otherwise skip the follower's whole run of that term.
        let hinted_next = match hint {
            RejectHint::LogTooShort { last_index } => last_index + 1,
            RejectHint::ConflictingTerm {
                conflict_term,
                first_index,
            } => self
                .log
                .last_index_of_term(conflict_term, rejected_index)
                .map_or(first_index, |i| i + 1),
        };
        let Role::Leader { progress, .. } = &mut self.role else {
            return;
        };
        let Some(pr) = progress.get_mut(&from) else {
            return;
        };
        if pr.rejected(rejected_index, hinted_next) {
            debug!(
                "node {}: {} rejected at {}; next_index now {}",
                self.config.id,
                from,
                rejected_index,
                pr.next_index()
            );
        } else {
            debug!(
                "node {}: stale rejection at {} from {} (match {}, next {})",
                self.config.id,
                rejected_index,
                from,
                pr.match_index(),
                pr.next_index()
            );
        }
    }

    /// A follower says its log ends at `log_end`, before the match index it
    /// acknowledged: it may have lost entries it had promised were durable
    /// (disk damage, or a torn tail cut off on restart). Without a fresh
    /// start its progress would never move — every rejection below the match
    /// index looks stale (see [`Progress::rejected`]) — and it would stay
    /// behind for as long as this leader lasts. Once the loss is certain
    /// ([`Progress::log_ends_before_match`]) it is said loudly, once per
    /// loss: if a majority loses entries this way, committed entries may be
    /// gone. Returns whether the follower's progress was reset.
    ///
    /// [`Progress::rejected`]: crate::raft::progress::Progress::rejected
    /// [`Progress::log_ends_before_match`]: crate::raft::progress::Progress::log_ends_before_match
    fn lost_entries(&mut self, from: NodeId, log_end: Index) -> bool {
        let Role::Leader { progress, .. } = &mut self.role else {
            return false;
        };
        let Some(pr) = progress.get_mut(&from) else {
            return false;
        };
        let acknowledged = pr.match_index();
        if log_end >= acknowledged || !pr.log_ends_before_match(log_end) {
            return false;
        }
        error!(
            "node {}: follower {from} lost acknowledged entries: its log ends at {log_end}, it \
             had acknowledged {acknowledged}; replicating to it again from there",
            self.config.id,
        );
        self.followers_repaired += 1;
        true
    }

    /// §5.3, §5.4.2: commit the highest index stored on a majority of the
    /// voters, but only if its entry is from the current term (Figure 8).
    /// The leader's own copy counts once durable, and only if it votes.
    pub(super) fn maybe_commit(&mut self) {
        let Role::Leader { progress, .. } = &self.role else {
            return;
        };
        let matched = self
            .configs
            .latest()
            .voters()
            .map(|v| match v == self.config.id {
                true => self.log.persisted_index(),
                false => progress.get(&v).map_or(0, |pr| pr.match_index()),
            })
            .collect();
        let majority_index = quorum::reached_by_majority(matched);
        if majority_index > self.commit_index
            && self.log.term_at(majority_index) == Some(self.current_term)
        {
            debug!(
                "node {}: commit index {} -> {}",
                self.config.id, self.commit_index, majority_index
            );
            self.commit_index = majority_index;
            self.check_reads();
            self.step_down_if_removed();
        }
    }
}

/// What is wrong with the entries of an AppendEntries, if anything. A log
/// holds consecutive indexes whose terms never decrease, none above the term
/// of the leader that sends them (§5.3); the first entry follows
/// `prev_log_index` and its term is at least `prev_log_term`.
fn check_entries(
    prev_log_index: Index,
    prev_log_term: Term,
    entries: &[Entry],
    leader_term: Term,
) -> Result<(), String> {
    if prev_log_term > leader_term {
        return Err(format!(
            "previous entry's term {prev_log_term} is above the leader's term {leader_term}"
        ));
    }
    let (mut index, mut term) = (prev_log_index, prev_log_term);
    for e in entries {
        if index.checked_add(1) != Some(e.index) {
            return Err(format!("entry {} follows entry {index}", e.index));
        }
        if e.term < term {
            return Err(format!(
                "entry {} has term {}, below the term {term} before it",
                e.index, e.term
            ));
        }
        if e.term > leader_term {
            return Err(format!(
                "entry {} has term {}, above the leader's term {leader_term}",
                e.index, e.term
            ));
        }
        (index, term) = (e.index, e.term);
    }
    Ok(())
}
