//! Linearizable reads without log entries (§6.4 of the dissertation): the
//! core's side of ReadIndex and leases. The bookkeeping is in
//! [`crate::raft::read_only`].

use super::{NotLeader, RaftCore, Role, RoleKind};
use crate::raft::message::NodeId;
use crate::raft::progress::Progress;
use crate::raft::quorum;
use crate::raft::ready::ReadyRead;
use std::collections::BTreeMap;

impl RaftCore {
    /// Starts a linearizable read with the caller's `id` (ReadIndex, §6.4 of
    /// the Raft dissertation). Only a leader can serve one. The read's index is
    /// the commit index now — or this term's no-op, if that is not committed
    /// yet, because only then does the leader know everything committed
    /// before it. The leader then needs a majority to answer a round of
    /// AppendEntries sent after this call, proving no newer leader existed
    /// when the read began; reads that arrive together share that round. The
    /// read comes out in [`Ready::reads`](crate::raft::Ready::reads) once both
    /// hold, and in [`Ready::aborted_reads`](crate::raft::Ready::aborted_reads)
    /// if leadership is lost first. It costs no log entry and no disk write.
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
        let confirmed = match &self.role {
            Role::Leader { progress, .. } => self.round_reached(progress, u64::MAX),
            _ => 0,
        };
        if let Role::Leader {
            progress, reads, ..
        } = &mut self.role
        {
            if reads.register(id, commit_index, ticks) {
                self.read_rounds += 1;
            }
            // Ask now rather than at the next heartbeat — unless an earlier
            // round is still out, unanswered by a majority: then this read's
            // round goes out the moment that one is answered (`check_reads`),
            // so one round confirms every read that arrives meanwhile rather
            // than a round each (§6.4: reads are batched). A read waits at
            // most for the round in flight and its own; meanwhile any
            // AppendEntries carries its round anyway.
            if reads.sent_round() <= confirmed {
                for pr in progress.values_mut() {
                    pr.heartbeat_due();
                }
            }
        }
        self.check_reads();
        Ok(())
    }

    /// The caller of read `id` stopped waiting (it timed out): the read is
    /// forgotten, so that pending reads stay bounded by the clients that
    /// still wait. Nothing happens if it was served or aborted already.
    pub fn cancel_read(&mut self, id: u64) {
        if let Role::Leader { reads, .. } = &mut self.role {
            reads.cancel(id);
        }
    }

    /// Reads waiting on this leader for their round or their index.
    pub fn pending_reads(&self) -> usize {
        match &self.role {
            Role::Leader { reads, .. } => reads.pending_len(),
            _ => 0,
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
        if self.timeout_now_term == self.current_term {
            // §3.10: a TimeoutNow lets its target win votes in spite of the
            // followers' stickiness, so the lease no longer says that no
            // other leader can exist — even if this node still believes it
            // leads (the transfer may have been abandoned here and succeeded
            // there).
            return false;
        }
        let Role::Leader {
            progress, reads, ..
        } = &self.role
        else {
            return false;
        };
        if self.commit_index < reads.term_start() {
            return false;
        }
        // The leader has seen its own latest round.
        let quorum_round = self.round_reached(progress, reads.round());
        // 10% for clock drift between nodes, and one tick of granularity.
        let lease = u64::from(self.config.election_ticks_min) * 9 / 10;
        reads.lease_holds(quorum_round, self.ticks, lease.saturating_sub(1))
    }

    /// Releases every pending read whose round a majority has answered and
    /// whose index is committed.
    pub(super) fn check_reads(&mut self) {
        let Role::Leader {
            progress, reads, ..
        } = &self.role
        else {
            return;
        };
        if !reads.has_pending() {
            return;
        }
        // The leader vouches for itself, in any round.
        let confirmed = self.round_reached(progress, u64::MAX);
        if let Role::Leader {
            progress, reads, ..
        } = &mut self.role
        {
            reads.release(confirmed, self.commit_index, &mut self.ready.reads);
            // The round that held later reads back is answered: theirs goes
            // out now (see `read_index`).
            if reads.round_unsent() && reads.sent_round() <= confirmed {
                progress.values_mut().for_each(Progress::heartbeat_due);
            }
        }
    }

    /// The latest read round a majority of the voters answered, the leader
    /// counting as `own` if it votes (learners and departing members say
    /// nothing about who leads).
    fn round_reached(&self, progress: &BTreeMap<NodeId, Progress>, own: u64) -> u64 {
        let rounds = self
            .configs
            .latest()
            .voters()
            .map(|v| match v == self.config.id {
                true => own,
                false => progress.get(&v).map_or(0, |pr| pr.acked_round()),
            })
            .collect();
        quorum::reached_by_majority(rounds)
    }
}
