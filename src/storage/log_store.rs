//! The interface between a node and its stable storage.

use super::error::StorageError;
use crate::raft::message::{Entry, HardState, Index, Term};
use std::path::Path;

/// What storage gives back at start: everything it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The log, consecutive from index 1.
    pub entries: Vec<Entry>,
}

/// Stable storage for one node's hard state and log, as the writer thread
/// uses it. Writes to the log are batched: any number of `append`s and
/// `truncate_after`s, then one [`LogStore::sync`] makes them all durable
/// (group commit). Nothing may be acknowledged to anyone before the sync that
/// covers it returns.
///
/// After any error the store's contents are unknown: the node stops using
/// it (fail-stop) and a restart's recovery finds out what is really there.
pub trait LogStore: Send {
    /// What the store holds: the hard state and the log, after repairing
    /// whatever a crash may have left half-written. The node calls it once,
    /// at start, before any write.
    fn recover(&mut self) -> Result<Recovered, StorageError>;

    /// Replaces the term and vote. Durable when this returns: no sync needed.
    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError>;

    /// Appends entries that continue the log: consecutive indexes from
    /// `last_index() + 1`, terms never lower than the last entry's. Durable
    /// only after the next `sync`.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;

    /// Drops every entry after `last_kept` (a no-op past the end). Durable
    /// only after the next `sync`; a crash before it may keep or undo it,
    /// and either is safe.
    fn truncate_after(&mut self, last_kept: Index) -> Result<(), StorageError>;

    /// Makes every append and truncation since the last sync durable.
    fn sync(&mut self) -> Result<(), StorageError>;

    /// The index of the last entry, synced or not; 0 if the log is empty.
    fn last_index(&self) -> Index;
}

/// Checks that `entries` may follow a log ending at `last_index` with
/// `last_term`: an append that breaks either rule would make the log
/// unrecoverable, so every store refuses it before writing anything.
pub(super) fn check_continues(
    last_index: Index,
    last_term: Term,
    entries: &[Entry],
    path: &Path,
) -> Result<(), StorageError> {
    let mut previous_term = last_term;
    for (expected, entry) in (last_index + 1..).zip(entries) {
        if entry.index != expected {
            return Err(StorageError::Gap {
                path: path.to_path_buf(),
                expected,
                found: entry.index,
            });
        }
        if entry.term < previous_term {
            return Err(StorageError::TermRegression {
                path: path.to_path_buf(),
                index: entry.index,
                term: entry.term,
                previous_term,
            });
        }
        previous_term = entry.term;
    }
    Ok(())
}
