//! The replicated log as the core sees it, and the log's own rules.
//!
//! [`RaftLog`] holds, in memory, the entries after the *compaction point*
//! and answers the questions Raft's rules ask of a log: the term at an index
//! (the consistency check, §5.3), whether another log is at least as
//! up-to-date (§5.4.1), where a conflicting term starts (the rejection
//! hint). It also applies a leader's entries to a follower's log
//! ([`RaftLog::maybe_append`]): find the first conflict, truncate only from
//! there — never an entry that matches, never a committed one — and append
//! the rest.
//!
//! # Compaction (§7)
//!
//! Once a snapshot covers a prefix of the log, that prefix is dropped
//! ([`RaftLog::compact`]); an installed snapshot may replace the whole log
//! ([`RaftLog::restore`]). What remains is the index and term of the last
//! dropped entry — the `offset` — which is all the consistency check needs
//! of the prefix: an AppendEntries whose previous entry is the offset is
//! checked against its term. Every dropped entry was committed (snapshots
//! hold only applied state), so it matches the leader's by definition.
//!
//! The core never touches the disk. The log remembers what storage has yet to
//! be told: entries appended since the last [`RaftLog::take_unwritten`],
//! whether a truncation cut into entries already handed over, and whether an
//! installed snapshot replaced the log. It also knows how far storage has
//! reported the log durable ([`RaftLog::persisted_index`]), which is what a
//! leader may count as its own copy (§10.2.1 of the dissertation).

use super::message::{Entry, Index, RejectHint, Term};

#[derive(Debug, Clone, Default)]
pub struct RaftLog {
    /// The last entry no longer held (compacted into a snapshot, §7), or 0.
    offset: Index,
    /// The term of the entry at `offset` (0 when `offset` is 0).
    offset_term: Term,
    /// `entries[i]` holds index `offset + 1 + i`.
    entries: Vec<Entry>,
    /// Entries up to here were handed to storage; later ones are still to
    /// be written.
    handed_off: Index,
    /// Storage must drop its entries after this index before writing the
    /// unwritten ones: a conflict cut into entries it already has.
    storage_truncate: Option<Index>,
    /// Storage must drop its whole log before writing the unwritten
    /// entries: an installed snapshot replaced it.
    storage_reset: bool,
    /// Storage has reported the log durable up to here.
    persisted: Index,
    /// The lowest point a conflict truncated the log to since the core last
    /// asked ([`RaftLog::take_truncation`]).
    truncated: Option<Index>,
}

/// What storage must do, in this order, to catch up with the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unwritten {
    /// Drop the whole log (a snapshot replaced it).
    pub reset: bool,
    /// Drop every entry after this index.
    pub truncate_after: Option<Index>,
    /// Then append these.
    pub entries: Vec<Entry>,
}

/// What [`RaftLog::maybe_append`] did with a leader's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaybeAppend {
    /// The consistency check passed: the log now matches the leader's up to
    /// `last_new` (the message's last entry, or `prev_log_index` if it had
    /// none). Entries after it, if any, came from an earlier message.
    Matched { last_new: Index },
    /// The consistency check failed; the hint lets the leader skip back a
    /// whole term per round trip.
    Mismatch(RejectHint),
    /// Appending would delete the committed entry at `index`. Leader
    /// Completeness (§5.4) says no leader can ask for that, so the message
    /// comes from a broken peer and nothing was changed.
    ConflictsWithCommitted { index: Index },
}

impl RaftLog {
    /// Builds the log from recovered entries, which must be consecutive from 1
    /// (storage checks this on recovery). They are durable by definition.
    pub fn new(entries: Vec<Entry>) -> RaftLog {
        RaftLog::after(0, 0, entries)
    }

    /// Builds the log from recovered entries that follow the entry at
    /// `offset`, of `offset_term` (the compaction point). They must be
    /// consecutive from `offset + 1` and are durable by definition.
    pub fn after(offset: Index, offset_term: Term, entries: Vec<Entry>) -> RaftLog {
        debug_assert!(entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == offset + 1 + i as Index));
        let last = offset + entries.len() as Index;
        RaftLog {
            offset,
            offset_term,
            entries,
            handed_off: last,
            storage_truncate: None,
            storage_reset: false,
            persisted: last,
            truncated: None,
        }
    }

    /// The first entry the log holds (one past the compaction point); equal
    /// to `last_index() + 1` when it holds none.
    pub fn first_index(&self) -> Index {
        self.offset + 1
    }

    /// The compaction point: the last entry dropped into a snapshot, and its
    /// term; (0, 0) before any.
    pub fn offset(&self) -> (Index, Term) {
        (self.offset, self.offset_term)
    }

    pub fn last_index(&self) -> Index {
        self.offset + self.entries.len() as Index
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.offset_term, |e| e.term)
    }

    /// The term of the entry at `index`: index 0 (before the log) has term
    /// 0, the compaction point its recorded term; `None` past the end or
    /// inside the compacted prefix.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.offset {
            return Some(self.offset_term);
        }
        self.get(index).map(|e| e.term)
    }

    /// Whether `index` lies in the prefix dropped into a snapshot.
    pub fn is_compacted(&self, index: Index) -> bool {
        index < self.offset
    }

    pub fn get(&self, index: Index) -> Option<&Entry> {
        let i = index.checked_sub(self.offset + 1)?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// Entries `from..=to`, clamped to what the log holds.
    pub fn slice(&self, from: Index, to: Index) -> &[Entry] {
        let start = from.max(self.offset + 1) - self.offset - 1;
        let end = to.min(self.last_index()).saturating_sub(self.offset);
        if start >= end {
            return &[];
        }
        &self.entries[start as usize..end as usize]
    }

    /// Entries from `from` onward whose sizes add up to at most `max_bytes`,
    /// but always at least one if there is one, so a single large entry still
    /// makes progress.
    pub fn entries_from(&self, from: Index, max_bytes: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for entry in self.slice(from, self.last_index()) {
            bytes += entry.size();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
        }
        out
    }

    /// The log is durable up to here.
    pub fn persisted_index(&self) -> Index {
        self.persisted
    }

    /// §5.4.1: a log is more up-to-date than another if its last entry has the
    /// later term, or, with equal last terms, if it is longer. A voter grants
    /// its vote only to a candidate whose log is at least as up-to-date as its
    /// own, so every leader holds every committed entry.
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// The first index of the run of entries with the same term as `index`
    /// (which must exist). Sent back with a rejection so the leader can skip the
    /// whole conflicting term in one step.
    pub fn first_index_of_term_at(&self, index: Index) -> Index {
        let Some(term) = self.term_at(index) else {
            return index;
        };
        let mut first = index;
        // Not into the compacted prefix: the hint only needs to be a place
        // where the logs may still differ, and everything there matches.
        while first > self.offset + 1 && self.term_at(first - 1) == Some(term) {
            first -= 1;
        }
        first
    }

    /// The last index at or before `at` holding an entry of `term`, if any.
    pub fn last_index_of_term(&self, term: Term, at: Index) -> Option<Index> {
        if at == self.offset && term == self.offset_term {
            return Some(at);
        }
        self.slice(1, at)
            .iter()
            .rev()
            .take_while(|e| e.term >= term)
            .find(|e| e.term == term)
            .map(|e| e.index)
    }

    /// Appends one entry, which must continue the log (the leader's own).
    pub fn append(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        self.entries.push(entry);
    }

    /// A follower's side of AppendEntries (§5.3, Figure 2 steps 2–4): the
    /// consistency check at `prev_log_index`/`prev_log_term`, then `entries`
    /// (consecutive from `prev_log_index + 1`) are merged in. Entries the log
    /// already has are skipped; at the first conflict (same index, another
    /// term) the log is cut there and the rest appended. A matching entry is
    /// never deleted, because a delayed, shorter message must not erase what a
    /// later one added; an entry at or below `commit_index` is never deleted
    /// at all.
    pub fn maybe_append(
        &mut self,
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry>,
        commit_index: Index,
    ) -> MaybeAppend {
        let (prev_log_index, prev_log_term, entries) =
            match self.skip_compacted(prev_log_index, prev_log_term, entries) {
                Ok(rest) => rest,
                Err(last_new) => return MaybeAppend::Matched { last_new },
            };
        match self.term_at(prev_log_index) {
            None => {
                let last_index = self.last_index();
                return MaybeAppend::Mismatch(RejectHint::LogTooShort { last_index });
            }
            Some(term) if term != prev_log_term => {
                return MaybeAppend::Mismatch(RejectHint::ConflictingTerm {
                    conflict_term: term,
                    first_index: self.first_index_of_term_at(prev_log_index),
                });
            }
            Some(_) => {}
        }
        let last_new = prev_log_index + entries.len() as Index;
        if let Some(first_new) = self.find_conflict(&entries) {
            let index = entries[first_new].index;
            if index <= self.last_index() {
                if index <= commit_index {
                    return MaybeAppend::ConflictsWithCommitted { index };
                }
                log::debug!(
                    "conflict at index {index}; truncating {} entries",
                    self.last_index() - index + 1
                );
                self.truncate_after(index - 1);
            }
            self.entries.extend(entries.into_iter().skip(first_new));
        }
        MaybeAppend::Matched { last_new }
    }

    /// A message may start inside the compacted prefix (it was sent before
    /// this node installed a snapshot, or the leader probed from far back).
    /// Those entries are committed here, so they match: drop them and check
    /// the rest against the compaction point instead. `Err(last_new)` when
    /// nothing reaches past the compaction point (all of it matches).
    fn skip_compacted(
        &self,
        prev_log_index: Index,
        prev_log_term: Term,
        mut entries: Vec<Entry>,
    ) -> Result<(Index, Term, Vec<Entry>), Index> {
        if prev_log_index >= self.offset {
            return Ok((prev_log_index, prev_log_term, entries));
        }
        let last_new = prev_log_index + entries.len() as Index;
        if last_new <= self.offset {
            return Err(last_new);
        }
        let skip = (self.offset - prev_log_index) as usize;
        let at_offset = entries[skip - 1].term;
        entries.drain(..skip);
        // The term at the offset is the message's own: if it differs from
        // ours, the consistency check below refuses the message.
        Ok((self.offset, at_offset, entries))
    }

    /// The position in `entries` of the first one this log does not hold:
    /// either it conflicts with an existing entry or it lies past the end.
    fn find_conflict(&self, entries: &[Entry]) -> Option<usize> {
        entries
            .iter()
            .position(|e| self.term_at(e.index) != Some(e.term))
    }

    /// Drops every entry after `last_kept`. If storage already holds some of
    /// them, it is told to drop them too before the next write.
    fn truncate_after(&mut self, last_kept: Index) {
        debug_assert!(last_kept >= self.offset, "truncating a compacted entry");
        self.entries
            .truncate(last_kept.saturating_sub(self.offset) as usize);
        self.persisted = self.persisted.min(last_kept);
        self.truncated = Some(self.truncated.map_or(last_kept, |t| t.min(last_kept)));
        if last_kept < self.handed_off {
            self.handed_off = last_kept;
            self.storage_truncate = Some(
                self.storage_truncate
                    .map_or(last_kept, |t| t.min(last_kept)),
            );
        }
    }

    /// The lowest index a conflict truncated the log after since the last
    /// call, if any: whatever the core derived from the dropped entries
    /// (their configurations) is gone with them.
    pub fn take_truncation(&mut self) -> Option<Index> {
        self.truncated.take()
    }

    /// What storage must do next: drop its entries after the returned index
    /// (if any), then append the returned entries. From now on they count as
    /// handed over.
    pub fn take_unwritten(&mut self) -> Unwritten {
        let entries = self.slice(self.handed_off + 1, self.last_index()).to_vec();
        self.handed_off = self.last_index();
        Unwritten {
            reset: std::mem::take(&mut self.storage_reset),
            truncate_after: self.storage_truncate.take(),
            entries,
        }
    }

    /// Drops every entry up to `through` (which must be held, or be the
    /// offset already), because a durable snapshot covers them (§7).
    pub fn compact(&mut self, through: Index) {
        if through <= self.offset {
            return;
        }
        let Some(term) = self.term_at(through) else {
            debug_assert!(false, "compacting past the end of the log");
            return;
        };
        self.entries.drain(..(through - self.offset) as usize);
        self.offset = through;
        self.offset_term = term;
    }

    /// Replaces the whole log with an installed snapshot's last entry
    /// (§7: "discard the entire log"): it becomes the compaction point, and
    /// storage is told to drop its log before writing anything more.
    pub fn restore(&mut self, index: Index, term: Term) {
        self.entries.clear();
        self.offset = index;
        self.offset_term = term;
        self.handed_off = index;
        self.persisted = index;
        self.storage_truncate = None;
        self.storage_reset = true;
    }

    /// Storage reports the log durable up to `index`, whose entry had `term`
    /// when written. If the entry has since been replaced, the report is stale
    /// and ignored (a later one will cover the replacement). Returns whether
    /// the durable point moved.
    pub fn mark_persisted(&mut self, index: Index, term: Term) -> bool {
        if index > self.persisted && self.term_at(index) == Some(term) {
            self.persisted = index;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::Payload;

    fn entry(index: Index, term: Term) -> Entry {
        Entry {
            index,
            term,
            payload: Payload::Noop,
        }
    }

    fn log_of(terms: &[Term]) -> RaftLog {
        RaftLog::new(
            terms
                .iter()
                .enumerate()
                .map(|(i, &term)| entry(i as Index + 1, term))
                .collect(),
        )
    }

    fn terms(log: &RaftLog) -> Vec<Term> {
        log.slice(1, log.last_index())
            .iter()
            .map(|e| e.term)
            .collect()
    }

    #[test]
    fn terms_and_slices() {
        let log = log_of(&[1, 1, 2, 3, 3]);
        assert_eq!(log.term_at(0), Some(0));
        assert_eq!(log.term_at(3), Some(2));
        assert_eq!(log.term_at(6), None);
        assert_eq!(log.slice(2, 4).len(), 3);
        assert_eq!(log.slice(5, 9).len(), 1);
        assert!(log.slice(6, 9).is_empty());
        assert_eq!(log.first_index_of_term_at(5), 4);
        assert_eq!(log.first_index_of_term_at(2), 1);
        assert_eq!(log.last_index_of_term(1, 5), Some(2));
        assert_eq!(log.last_index_of_term(2, 5), Some(3));
        assert_eq!(log.last_index_of_term(4, 5), None);
    }

    #[test]
    fn entries_from_respects_the_size_cap_but_sends_at_least_one() {
        let log = log_of(&[1, 1, 1, 1]);
        assert_eq!(log.entries_from(1, 0).len(), 1);
        let two = 2 * log.slice(1, 1)[0].size();
        assert_eq!(log.entries_from(1, two).len(), 2);
        assert_eq!(log.entries_from(2, usize::MAX).len(), 3);
        assert!(log.entries_from(5, usize::MAX).is_empty());
    }

    #[test]
    fn up_to_date_compares_last_term_then_length() {
        let log = log_of(&[1, 2, 2]);
        assert!(log.is_up_to_date(3, 2));
        assert!(log.is_up_to_date(1, 3));
        assert!(!log.is_up_to_date(2, 2));
        assert!(!log.is_up_to_date(9, 1));
    }

    #[test]
    fn maybe_append_checks_consistency_and_hints() {
        let mut log = log_of(&[1, 1, 2, 2]);
        assert_eq!(
            log.maybe_append(6, 2, vec![entry(7, 2)], 0),
            MaybeAppend::Mismatch(RejectHint::LogTooShort { last_index: 4 })
        );
        assert_eq!(
            log.maybe_append(4, 3, vec![entry(5, 3)], 0),
            MaybeAppend::Mismatch(RejectHint::ConflictingTerm {
                conflict_term: 2,
                first_index: 3
            })
        );
        assert_eq!(terms(&log), vec![1, 1, 2, 2], "a mismatch changes nothing");
    }

    #[test]
    fn maybe_append_cuts_only_at_the_first_conflict() {
        let mut log = log_of(&[1, 1, 2, 2]);
        // Entries already present are skipped; nothing to write.
        assert_eq!(
            log.maybe_append(0, 0, vec![entry(1, 1), entry(2, 1)], 0),
            MaybeAppend::Matched { last_new: 2 }
        );
        assert_eq!(
            terms(&log),
            vec![1, 1, 2, 2],
            "a shorter message keeps the rest"
        );
        assert_eq!(log.take_unwritten(), Unwritten::default());
        // A conflict at 3 cuts 3 and 4 and tells storage to cut too.
        assert_eq!(
            log.maybe_append(2, 1, vec![entry(3, 3), entry(4, 3), entry(5, 3)], 0),
            MaybeAppend::Matched { last_new: 5 }
        );
        assert_eq!(terms(&log), vec![1, 1, 3, 3, 3]);
        assert_eq!(log.persisted_index(), 2);
        let Unwritten {
            truncate_after: truncate,
            entries: written,
            ..
        } = log.take_unwritten();
        assert_eq!(truncate, Some(2));
        assert_eq!(
            written.iter().map(|e| e.index).collect::<Vec<_>>(),
            [3, 4, 5]
        );
    }

    #[test]
    fn maybe_append_never_deletes_a_committed_entry() {
        let mut log = log_of(&[1, 1, 2]);
        assert_eq!(
            log.maybe_append(1, 1, vec![entry(2, 3)], 2),
            MaybeAppend::ConflictsWithCommitted { index: 2 }
        );
        assert_eq!(terms(&log), vec![1, 1, 2]);
    }

    #[test]
    fn a_cut_within_unwritten_entries_needs_no_storage_truncation() {
        let mut log = log_of(&[1]);
        log.maybe_append(1, 1, vec![entry(2, 1), entry(3, 1)], 0);
        // Entries 2 and 3 have not gone to storage yet: replacing 3 only
        // changes what will be written.
        log.maybe_append(2, 1, vec![entry(3, 2)], 0);
        let Unwritten {
            truncate_after: truncate,
            entries: written,
            ..
        } = log.take_unwritten();
        assert_eq!(truncate, None);
        assert_eq!(written, vec![entry(2, 1), entry(3, 2)]);
    }

    #[test]
    fn persisted_reports_for_replaced_entries_are_ignored() {
        let mut log = log_of(&[]);
        log.append(entry(1, 1));
        log.append(entry(2, 1));
        log.take_unwritten();
        log.maybe_append(1, 1, vec![entry(2, 2)], 0);
        assert!(!log.mark_persisted(2, 1), "entry 2 of term 1 is gone");
        assert!(log.mark_persisted(1, 1));
        assert!(log.mark_persisted(2, 2));
        assert_eq!(log.persisted_index(), 2);
    }

    #[test]
    fn compaction_keeps_the_offset_for_the_consistency_check() {
        let mut log = log_of(&[1, 1, 2, 2, 3]);
        log.compact(3);
        assert_eq!((log.first_index(), log.last_index()), (4, 5));
        assert_eq!(log.offset(), (3, 2));
        assert_eq!(log.term_at(3), Some(2), "the offset's term is kept");
        assert_eq!(log.term_at(2), None, "compacted");
        assert!(log.is_compacted(2) && !log.is_compacted(3));
        assert_eq!(log.slice(1, 9).len(), 2);
        assert_eq!(log.last_index_of_term(2, 5), Some(4));
        assert_eq!(log.first_index_of_term_at(4), 4, "never into the prefix");
        // Compacting everything keeps the last term for up-to-dateness.
        log.compact(5);
        assert_eq!((log.last_index(), log.last_term()), (5, 3));
        assert!(log.entries_from(6, usize::MAX).is_empty());
    }

    #[test]
    fn a_message_reaching_into_the_compacted_prefix_matches_what_it_overlaps() {
        let mut log = log_of(&[1, 1, 2, 2]);
        log.compact(3);
        // Entirely inside the prefix: committed here, so it matches.
        assert_eq!(
            log.maybe_append(0, 0, vec![entry(1, 1), entry(2, 1)], 3),
            MaybeAppend::Matched { last_new: 2 }
        );
        // Across the offset: checked against the offset's term, then merged.
        assert_eq!(
            log.maybe_append(
                1,
                1,
                vec![entry(2, 1), entry(3, 2), entry(4, 2), entry(5, 3)],
                3
            ),
            MaybeAppend::Matched { last_new: 5 }
        );
        assert_eq!(log.last_index(), 5);
        // A message disagreeing about the offset's term is refused.
        assert!(matches!(
            log.maybe_append(2, 1, vec![entry(3, 9), entry(4, 9)], 3),
            MaybeAppend::Mismatch(_)
        ));
    }

    #[test]
    fn restoring_a_snapshot_replaces_the_log_and_tells_storage() {
        let mut log = log_of(&[1, 1, 2]);
        log.maybe_append(3, 2, vec![entry(4, 2)], 0);
        log.restore(10, 4);
        assert_eq!(
            (log.first_index(), log.last_index(), log.last_term()),
            (11, 10, 4)
        );
        assert_eq!(log.persisted_index(), 10);
        let unwritten = log.take_unwritten();
        assert!(unwritten.reset && unwritten.entries.is_empty());
        log.append(entry(11, 4));
        assert_eq!(log.take_unwritten().entries, vec![entry(11, 4)]);
        assert!(log.mark_persisted(11, 4));
    }
}
