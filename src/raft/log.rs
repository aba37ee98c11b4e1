//! The replicated log as the core sees it: an in-memory sequence of entries
//! with indexes 1, 2, 3, … and the few queries Raft's rules need.
//!
//! The log on disk ([`crate::storage`]) mirrors this one; the core never reads
//! the disk, it tells the node what to write through its `Ready`.

use crate::raft::message::{Entry, Index, Term};

#[derive(Debug, Clone, Default)]
pub struct RaftLog {
    /// `entries[i]` holds index `i + 1`.
    entries: Vec<Entry>,
}

impl RaftLog {
    /// Builds the log from recovered entries, which must be consecutive from 1
    /// (storage checks this on recovery).
    pub fn new(entries: Vec<Entry>) -> RaftLog {
        debug_assert!(entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == i as Index + 1));
        RaftLog { entries }
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

    /// Appends one entry, which must continue the log.
    pub fn append(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        self.entries.push(entry);
    }

    /// Drops every entry after `last_kept`.
    pub fn truncate_after(&mut self, last_kept: Index) {
        self.entries.truncate(last_kept as usize);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::Payload;

    fn log_of(terms: &[Term]) -> RaftLog {
        RaftLog::new(
            terms
                .iter()
                .enumerate()
                .map(|(i, &term)| Entry {
                    index: i as Index + 1,
                    term,
                    payload: Payload::Noop,
                })
                .collect(),
        )
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
}
