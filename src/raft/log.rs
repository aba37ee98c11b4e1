//! The replicated log as the core sees it, and the log's own rules.
//!
//! [`RaftLog`] holds the entries with indexes 1, 2, 3, … in memory and answers
//! the questions Raft's rules ask of a log: the term at an index (the
//! consistency check, §5.3), whether another log is at least as up-to-date
//! (§5.4.1), where a conflicting term starts (the rejection hint). It also
//! applies a leader's entries to a follower's log ([`RaftLog::maybe_append`]):
//! find the first conflict, truncate only from there — never an entry that
//! matches, never a committed one — and append the rest.
//!
//! The core never touches the disk. The log remembers what storage has yet to
//! be told: entries appended since the last [`RaftLog::take_unwritten`], and
//! whether a truncation cut into entries already handed over. It also knows
//! how far storage has reported the log durable ([`RaftLog::persisted_index`]),
//! which is what a leader may count as its own copy (§10.2.1 of the
//! dissertation).

use super::message::{Entry, Index, RejectHint, Term};

#[derive(Debug, Clone, Default)]
pub struct RaftLog {
    /// `entries[i]` holds index `i + 1`.
    entries: Vec<Entry>,
    /// Entries up to here were handed to storage; later ones are still to
    /// be written.
    handed_off: Index,
    /// Storage must drop its entries after this index before writing the
    /// unwritten ones: a conflict cut into entries it already has.
    storage_truncate: Option<Index>,
    /// Storage has reported the log durable up to here.
    persisted: Index,
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
        debug_assert!(entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == i as Index + 1));
        let last = entries.len() as Index;
        RaftLog {
            entries,
            handed_off: last,
            storage_truncate: None,
            persisted: last,
        }
    }

    pub fn last_index(&self) -> Index {
        self.entries.len() as Index
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(0, |e| e.term)
    }

    /// The term of the entry at `index`; index 0 (before the log) has term 0.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == 0 {
            return Some(0);
        }
        self.get(index).map(|e| e.term)
    }

    pub fn get(&self, index: Index) -> Option<&Entry> {
        let i = index.checked_sub(1)?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// Entries `from..=to`, clamped to the log.
    pub fn slice(&self, from: Index, to: Index) -> &[Entry] {
        let start = (from.max(1) - 1) as usize;
        let end = (to.min(self.last_index())) as usize;
        if start >= end {
            return &[];
        }
        &self.entries[start..end]
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
        while first > 1 && self.term_at(first - 1) == Some(term) {
            first -= 1;
        }
        first
    }

    /// The last index at or before `at` holding an entry of `term`, if any.
    pub fn last_index_of_term(&self, term: Term, at: Index) -> Option<Index> {
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
        self.entries.truncate(last_kept as usize);
        self.persisted = self.persisted.min(last_kept);
        if last_kept < self.handed_off {
            self.handed_off = last_kept;
            self.storage_truncate = Some(
                self.storage_truncate
                    .map_or(last_kept, |t| t.min(last_kept)),
            );
        }
    }

    /// What storage must do next: drop its entries after the returned index
    /// (if any), then append the returned entries. From now on they count as
    /// handed over.
    pub fn take_unwritten(&mut self) -> (Option<Index>, Vec<Entry>) {
        let entries = self.slice(self.handed_off + 1, self.last_index()).to_vec();
        self.handed_off = self.last_index();
        (self.storage_truncate.take(), entries)
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
        assert_eq!(log.entries_from(1, 32).len(), 2);
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
        assert_eq!(log.take_unwritten(), (None, vec![]));
        // A conflict at 3 cuts 3 and 4 and tells storage to cut too.
        assert_eq!(
            log.maybe_append(2, 1, vec![entry(3, 3), entry(4, 3), entry(5, 3)], 0),
            MaybeAppend::Matched { last_new: 5 }
        );
        assert_eq!(terms(&log), vec![1, 1, 3, 3, 3]);
        assert_eq!(log.persisted_index(), 2);
        let (truncate, written) = log.take_unwritten();
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
        let (truncate, written) = log.take_unwritten();
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
}
