//! The leader's view of one follower (Figure 2, "volatile state on leaders"),
//! and the only place it changes.
//!
//! A follower's progress is in one of two states, as in etcd. In *probe* the
//! leader does not know where their logs match: it sends one AppendEntries
//! and waits for the answer (or the next heartbeat) before sending another,
//! moving `next_index` back on each rejection. In *replicate* the match point
//! is known and new entries are pipelined: `next_index` moves forward as
//! soon as entries are sent, without waiting for acknowledgements. A
//! rejection or a lost connection sends the follower back to probing from
//! its last known match.

use super::message::Index;

/// How the leader is replicating to one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// Where the logs match is unknown: one AppendEntries at a time.
    Probe,
    /// The match point is known: send new entries as they come.
    Replicate,
    /// The follower needs entries the leader has compacted (§7): its
    /// replication thread is streaming it the snapshot, and nothing else is
    /// sent until the follower reports it installed (or the transfer fails).
    Snapshot,
}

impl std::fmt::Display for ProgressState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProgressState::Probe => "probe",
            ProgressState::Replicate => "replicate",
            ProgressState::Snapshot => "snapshot",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Index of the next entry to send.
    next_index: Index,
    /// Highest index known to be replicated (and durable) on the follower.
    match_index: Index,
    state: ProgressState,
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
    /// In snapshot state: ticks since the follower last answered about the
    /// snapshot (or since it was asked for).
    snapshot_silence: u32,
    /// Rejections in a row saying the follower's log ends before its match
    /// index (see [`Progress::log_ends_before_match`]).
    short_rejections: u32,
}

impl Progress {
    /// A follower a new leader knows nothing about: probe from the leader's
    /// own next index (§5.3: "initialized to leader last log index + 1"),
    /// with a heartbeat due at once (§5.2).
    pub fn new(next_index: Index) -> Progress {
        Progress {
            next_index,
            match_index: 0,
            state: ProgressState::Probe,
            probe_sent: false,
            heartbeat_due: true,
            commit_sent: 0,
            acked_round: 0,
            recent_active: false,
            snapshot_silence: 0,
            short_rejections: 0,
        }
    }

    pub fn next_index(&self) -> Index {
        self.next_index
    }

    pub fn match_index(&self) -> Index {
        self.match_index
    }

    pub fn state(&self) -> ProgressState {
        self.state
    }

    /// The highest read round this follower has answered.
    pub fn acked_round(&self) -> u64 {
        self.acked_round
    }

    /// Whether the leader has something to send: new entries, a newer commit
    /// index, or a due heartbeat — in probe state, only if no probe is out.
    pub fn wants_send(&self, last_index: Index, commit_index: Index) -> bool {
        let has_news = self.next_index <= last_index || self.commit_sent < commit_index;
        match self.state {
            // The replication thread is busy streaming; the follower resets
            // its election timer on every chunk.
            ProgressState::Snapshot => false,
            ProgressState::Probe => self.heartbeat_due || (!self.probe_sent && has_news),
            ProgressState::Replicate => self.heartbeat_due || has_news,
        }
    }

    /// An AppendEntries carrying entries up to `last_sent` and commit index
    /// `commit_index` is going out.
    pub fn sent(&mut self, last_sent: Index, commit_index: Index) {
        match self.state {
            // Pipelining: assume the entries arrive; a rejection or a lost
            // connection sends us back to probing.
            ProgressState::Replicate => self.next_index = last_sent + 1,
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
        self.heartbeat_due = false;
        // The follower can only commit what it holds (Figure 2, step 5 of
        // AppendEntries), so it learns at most `last_sent` from this message.
        self.commit_sent = self.commit_sent.max(commit_index.min(last_sent));
    }

    /// The follower accepted entries up to `match_index`: its log matches
    /// ours that far, so pipelining can start.
    pub fn accepted(&mut self, match_index: Index) {
        self.short_rejections = 0;
        self.match_index = self.match_index.max(match_index);
        self.next_index = self.next_index.max(self.match_index + 1);
        // Not while a snapshot is on its way: that ends with its own answer.
        if self.state == ProgressState::Probe {
            self.become_replicate();
        }
    }

    /// The follower rejected the AppendEntries whose previous entry was
    /// `rejected_index`; `hinted_next` is where its hint says to resume.
    /// Returns false, changing nothing, if the rejection is stale: it answers
    /// a message sent before a later success or rejection moved us on. (A
    /// follower that acknowledged `match_index` holds our entry there, so a
    /// rejection at or below it is necessarily old.)
    pub fn rejected(&mut self, rejected_index: Index, hinted_next: Index) -> bool {
        if rejected_index <= self.match_index
            || rejected_index >= self.next_index
            || self.state == ProgressState::Snapshot
        {
            return false;
        }
        self.become_probe();
        // Never below what it has acknowledged, never past the rejected point.
        self.next_index = hinted_next.clamp(self.match_index + 1, rejected_index.max(1));
        true
    }

    /// The follower rejected an AppendEntries saying its log ends at
    /// `log_end`, before the match index it acknowledged. Once is no proof
    /// of anything: a rejection delayed across a reconnection may arrive
    /// after a later success. Twice in a row, with no success between, it
    /// is: the follower lost entries it had made durable (a damaged disk, a
    /// torn tail cut off on restart). Then nothing it acknowledged can be
    /// assumed any more — even the entries it kept may be from a different
    /// history, if its disk was restored from a backup — so the match point
    /// is forgotten and found again by probing from its log end. Returns
    /// whether it was.
    pub fn log_ends_before_match(&mut self, log_end: Index) -> bool {
        self.short_rejections += 1;
        if self.short_rejections < 2 {
            return false;
        }
        self.short_rejections = 0;
        self.match_index = 0;
        self.state = ProgressState::Probe;
        self.next_index = log_end + 1;
        self.probe_sent = false;
        self.heartbeat_due = true;
        true
    }

    /// Probe again from the last known match: whatever was in flight may be
    /// lost.
    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
    }

    /// The entries the follower needs next are compacted: send it the
    /// snapshot instead.
    pub fn become_snapshot(&mut self) {
        self.state = ProgressState::Snapshot;
        self.probe_sent = false;
        self.snapshot_silence = 0;
    }

    /// The follower reported how much of the snapshot it holds.
    pub fn snapshot_answered(&mut self) {
        self.snapshot_silence = 0;
    }

    /// One tick passes in snapshot state. A follower silent for more than
    /// `limit` ticks may have restarted, or its answer may be lost with a
    /// connection that nothing else would notice (no heartbeats go over a
    /// snapshot stream): probe again, which starts the transfer over.
    /// Returns whether it gave up.
    pub fn tick_snapshot(&mut self, limit: u32) -> bool {
        if self.state != ProgressState::Snapshot {
            return false;
        }
        self.snapshot_silence += 1;
        if self.snapshot_silence > limit {
            self.become_probe();
            return true;
        }
        false
    }

    /// The follower's state includes everything up to `index` (it installed
    /// a snapshot of it): probe onward from there.
    pub fn snapshot_installed(&mut self, index: Index) {
        self.match_index = self.match_index.max(index);
        self.become_probe();
    }

    fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
    }

    /// Time for a heartbeat (§5.2), or a read round that needs an answer.
    pub fn heartbeat_due(&mut self) {
        self.heartbeat_due = true;
    }

    /// The follower answered read round `round` (any answer in the leader's
    /// term counts: it shows the follower still recognised the leader).
    pub fn answered_round(&mut self, round: u64) {
        self.acked_round = self.acked_round.max(round);
    }

    /// Heard from the follower in the leader's term.
    pub fn mark_active(&mut self) {
        self.recent_active = true;
    }

    /// Whether the follower was heard from since the last call.
    pub fn take_active(&mut self) -> bool {
        std::mem::take(&mut self.recent_active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sends_one_message_at_a_time() {
        let mut pr = Progress::new(5);
        assert!(pr.wants_send(4, 0), "a heartbeat is due at once");
        pr.sent(4, 0);
        assert!(!pr.wants_send(6, 3), "a probe is out");
        pr.heartbeat_due();
        assert!(pr.wants_send(6, 3), "a heartbeat goes regardless");
    }

    #[test]
    fn acceptance_starts_pipelining() {
        let mut pr = Progress::new(5);
        pr.sent(4, 0);
        pr.accepted(4);
        assert_eq!(pr.state(), ProgressState::Replicate);
        assert_eq!((pr.match_index(), pr.next_index()), (4, 5));
        pr.sent(9, 4);
        assert_eq!(pr.next_index(), 10, "pipelined");
        assert!(pr.wants_send(12, 4));
        assert!(!pr.wants_send(9, 4), "nothing new");
    }

    #[test]
    fn rejection_moves_back_but_never_below_the_match() {
        let mut pr = Progress::new(10);
        pr.accepted(3);
        pr.sent(9, 0);
        assert!(pr.rejected(8, 1));
        assert_eq!(pr.state(), ProgressState::Probe);
        assert_eq!(pr.next_index(), 4, "clamped above the match");
        assert!(!pr.rejected(3, 1), "at the match: stale");
        assert!(!pr.rejected(4, 1), "at next_index or beyond: stale");
        assert_eq!(pr.next_index(), 4);
    }

    #[test]
    fn activity_is_taken_once() {
        let mut pr = Progress::new(1);
        assert!(!pr.take_active());
        pr.mark_active();
        assert!(pr.take_active());
        assert!(!pr.take_active());
    }

    #[test]
    fn a_snapshot_pauses_sending_until_it_is_installed() {
        let mut pr = Progress::new(5);
        pr.accepted(2);
        pr.become_snapshot();
        pr.heartbeat_due();
        assert!(
            !pr.wants_send(9, 4),
            "the snapshot stream has the connection"
        );
        assert!(!pr.rejected(3, 1), "a late rejection changes nothing");
        pr.snapshot_installed(7);
        assert_eq!(
            (pr.state(), pr.match_index(), pr.next_index()),
            (ProgressState::Probe, 7, 8)
        );
        assert!(pr.wants_send(9, 4));
    }

    #[test]
    fn a_silent_snapshot_transfer_is_given_up() {
        let mut pr = Progress::new(5);
        pr.become_snapshot();
        assert!(!pr.tick_snapshot(2));
        pr.snapshot_answered();
        assert!(!pr.tick_snapshot(2) && !pr.tick_snapshot(2));
        assert!(pr.tick_snapshot(2), "three silent ticks");
        assert_eq!(pr.state(), ProgressState::Probe);
        assert!(!pr.tick_snapshot(2), "only in snapshot state");
    }
}
