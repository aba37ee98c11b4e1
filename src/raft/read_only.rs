//! The leader's bookkeeping for linearizable reads without log entries:
//! ReadIndex and leases (§6.4 of the Raft dissertation).
//!
//! A read must reflect every write acknowledged before it began. Serving it
//! from the leader's state machine is only safe if the node really is still
//! the leader — a deposed leader that does not know it yet would serve stale
//! data — and if its state machine has caught up with everything committed.
//!
//! **ReadIndex.** The leader notes its commit index as the read's index (or
//! this term's no-op, if that is not committed yet: until then the leader
//! does not know what earlier terms committed). Every read belongs to a
//! *round*: a number carried by AppendEntries and echoed back by followers.
//! Once a majority has answered a round started after the read arrived, no
//! other leader can have existed when the read began, and the read may be
//! served as soon as the state machine has applied up to its index. Reads
//! that arrive before the current round has gone out share that round, so
//! one heartbeat round confirms a whole batch. Reads still waiting when the
//! node stops leading are aborted, never served.
//!
//! **Leases.** With check-quorum, a follower that heard from its leader
//! within the minimum election timeout refuses to vote (leader stickiness).
//! So once a majority answered a round that began less than that timeout ago
//! — less a margin for clocks running at different rates — no other leader
//! can be elected yet, and reads need no round at all. This trades safety
//! under unbounded clock drift or long process pauses for latency; it is
//! opt-in.

use super::message::Index;
use super::ready::ReadyRead;
use std::collections::VecDeque;

/// How many recent round start times are kept for lease checks.
const REMEMBERED_ROUNDS: usize = 256;

/// One leader term's pending reads and rounds.
#[derive(Debug, Default)]
pub struct ReadOnly {
    /// Incremented for every new round; AppendEntries carry the latest value
    /// and followers echo it back.
    round: u64,
    /// The index of this term's no-op: no read may be served from an earlier
    /// state (§6.4, step 1).
    term_start: Index,
    /// In registration order, so rounds and indexes are non-decreasing.
    pending: VecDeque<PendingRead>,
    /// When each recent round was started (in ticks), for leases.
    started: VecDeque<(u64, u64)>,
    /// The highest round any AppendEntries has carried so far.
    sent_round: u64,
}

#[derive(Debug)]
struct PendingRead {
    id: u64,
    index: Index,
    round: u64,
}

impl ReadOnly {
    /// Reads for a leader whose term's no-op is at `term_start`.
    pub fn new(term_start: Index) -> ReadOnly {
        ReadOnly {
            term_start,
            ..ReadOnly::default()
        }
    }

    /// The latest round.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// The index of this term's no-op.
    pub fn term_start(&self) -> Index {
        self.term_start
    }

    /// Starts a new round at `tick`, returning its number.
    pub fn start_round(&mut self, tick: u64) -> u64 {
        self.round += 1;
        self.started.push_back((self.round, tick));
        while self.started.len() > REMEMBERED_ROUNDS {
            self.started.pop_front();
        }
        self.round
    }

    /// Registers read `id` at `tick`, to be served at the commit index
    /// `commit_index` (or the term's no-op, whichever is later). Returns
    /// whether it needed a new round; otherwise it shares the current round,
    /// which has not gone out yet.
    pub fn register(&mut self, id: u64, commit_index: Index, tick: u64) -> bool {
        let new_round = self.round <= self.sent_round;
        let round = if new_round {
            self.start_round(tick)
        } else {
            self.round
        };
        self.pending.push_back(PendingRead {
            id,
            index: commit_index.max(self.term_start),
            round,
        });
        new_round
    }

    /// Forgets read `id`: its client gave up waiting. (Without this a leader
    /// that cannot confirm its rounds — no majority answers — would hold
    /// every timed-out read until it stops leading.)
    pub fn cancel(&mut self, id: u64) -> bool {
        let before = self.pending.len();
        self.pending.retain(|read| read.id != id);
        self.pending.len() != before
    }

    /// How many reads wait for their round or their index.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The latest round an AppendEntries has carried.
    pub fn sent_round(&self) -> u64 {
        self.sent_round
    }

    /// Whether reads wait for a round that has not gone out yet.
    pub fn round_unsent(&self) -> bool {
        self.pending
            .back()
            .is_some_and(|read| read.round > self.sent_round)
    }

    /// The round to stamp on an AppendEntries going out now.
    pub fn send_round(&mut self) -> u64 {
        self.sent_round = self.round;
        self.round
    }

    /// Moves every read whose round is `confirmed` (answered by a majority)
    /// and whose index is committed to `out`, in order.
    pub fn release(&mut self, confirmed: u64, commit_index: Index, out: &mut Vec<ReadyRead>) {
        while let Some(read) = self.pending.front() {
            if read.round > confirmed || read.index > commit_index {
                break;
            }
            out.push(ReadyRead {
                id: read.id,
                index: read.index,
            });
            self.pending.pop_front();
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Every pending read's id, which can now never be confirmed.
    pub fn abort_all(&mut self) -> impl Iterator<Item = u64> + '_ {
        self.pending.drain(..).map(|r| r.id)
    }

    /// Whether the lease from round `quorum_round`, answered by a majority,
    /// still holds at tick `now` for a lease of `lease_ticks`.
    pub fn lease_holds(&self, quorum_round: u64, now: u64, lease_ticks: u64) -> bool {
        quorum_round > 0
            && self
                .started_at(quorum_round)
                .is_some_and(|start| now < start + lease_ticks)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_before_a_round_goes_out_share_it() {
        let mut reads = ReadOnly::new(3);
        assert!(reads.register(1, 5, 0));
        assert!(!reads.register(2, 5, 0), "round 1 has not gone out");
        assert_eq!(reads.send_round(), 1);
        assert!(reads.register(3, 6, 1), "round 1 is out: a new one");
        let mut out = Vec::new();
        reads.release(1, 6, &mut out);
        assert_eq!(out.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
        reads.release(2, 5, &mut out);
        assert_eq!(out.len(), 2, "read 3 waits for its index to commit");
        assert_eq!(reads.abort_all().collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn no_read_is_served_before_the_term_start() {
        let mut reads = ReadOnly::new(7);
        reads.register(1, 2, 0);
        let mut out = Vec::new();
        reads.release(u64::MAX, 6, &mut out);
        assert!(out.is_empty());
        reads.release(u64::MAX, 7, &mut out);
        assert_eq!(out, [ReadyRead { id: 1, index: 7 }]);
    }

    #[test]
    fn a_lease_lasts_from_the_start_of_the_confirmed_round() {
        let mut reads = ReadOnly::new(1);
        reads.start_round(10);
        reads.start_round(20);
        assert!(!reads.lease_holds(0, 11, 5), "no round confirmed");
        assert!(reads.lease_holds(1, 14, 5));
        assert!(!reads.lease_holds(1, 15, 5));
        assert!(reads.lease_holds(2, 24, 5));
    }
}
