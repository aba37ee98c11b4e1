//! The interface between a node and its stable storage.

use super::error::StorageError;
use crate::raft::membership::Configuration;
use crate::raft::message::{Entry, HardState, Index, Term};
use rand::Rng;
use std::path::Path;

/// What storage gives back at start: everything it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The log: consecutive entries. After compaction (§7) it starts
    /// wherever the oldest kept entry is, not at index 1.
    pub entries: Vec<Entry>,
    /// The highest commit index saved with [`LogStore::save_commit`] that
    /// was made durable (0 if none): a restarted node may apply up to here
    /// without waiting to hear from a leader.
    pub commit_index: Index,
    /// The configuration this node formed its cluster with, if it ever did
    /// (saved with [`LogStore::save_bootstrap`]): a restart uses it rather
    /// than whatever peers it is given, which may have changed since.
    pub bootstrap: Option<Configuration>,
    /// The index of the log entry that removed this node from its cluster,
    /// if it learned of it (saved with [`LogStore::save_removed`]): such a
    /// node must not start again on this storage.
    pub removed: Option<Index>,
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
    /// `last_index() + 1` (from any index if the log is empty: new, reset
    /// or compacted away), terms never lower than the last entry's.
    /// Durable only after the next `sync`.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;

    /// Drops every entry after `last_kept` (a no-op past the end). Durable
    /// only after the next `sync`; a crash before it may keep or undo it,
    /// and either is safe.
    fn truncate_after(&mut self, last_kept: Index) -> Result<(), StorageError>;

    /// Records that the entries up to `commit_index` are committed. Durable
    /// with the next `sync`; a crash before it may lose it, which is safe
    /// (a lower commit index only means waiting for a leader to repeat it).
    fn save_commit(&mut self, commit_index: Index) -> Result<(), StorageError>;

    /// Drops entries up to `through`, which a durable snapshot covers (§7).
    /// A store may keep some of them (it drops whole segments, oldest
    /// first, so a crash leaves a suffix of the log), never a later one.
    fn compact(&mut self, through: Index) -> Result<(), StorageError>;

    /// Drops the whole log, because an installed snapshot replaced it (§7):
    /// the next append may start at any index. Durable when it returns.
    fn reset(&mut self) -> Result<(), StorageError>;

    /// Makes every append, truncation and commit index since the last sync
    /// durable.
    fn sync(&mut self) -> Result<(), StorageError>;

    /// The index of the last entry, synced or not; 0 if the log is empty.
    fn last_index(&self) -> Index;

    /// A random non-zero id drawn when this storage was initialized, and
    /// never changed after. A member whose storage was wiped comes back with
    /// another one, which is how the cluster tells that it has forgotten its
    /// votes and log (see [`crate::raft::membership`]).
    fn incarnation(&self) -> u64;

    /// Records the configuration the node forms its cluster with when it
    /// starts for the first time, so that later starts use it (it comes back
    /// in [`Recovered::bootstrap`]). The node saves it once, before anything
    /// else of the cluster's. Durable when this returns: no sync needed.
    fn save_bootstrap(&mut self, config: &Configuration) -> Result<(), StorageError>;

    /// Records that the log entry at `index` removed this node from its
    /// cluster, so that starting it again on this storage is refused (it
    /// comes back in [`Recovered::removed`]). Durable when this returns: no
    /// sync needed.
    fn save_removed(&mut self, index: Index) -> Result<(), StorageError>;
}

/// Checks that `entries` may follow a log ending at `last_index` with
/// `last_term` (`None` for an empty log, which any index may start): an
/// append that breaks either rule would make the log unrecoverable, so every
/// store refuses it before writing anything.
pub(super) fn check_continues(
    last: Option<(Index, Term)>,
    entries: &[Entry],
    path: &Path,
) -> Result<(), StorageError> {
    let Some(first) = entries.first() else {
        return Ok(());
    };
    let (last_index, mut previous_term) = last.unwrap_or((first.index - 1, 0));
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

/// A fresh random incarnation (see [`LogStore::incarnation`]). Never 0: 0 is
/// left free to mean "no incarnation".
pub(super) fn new_incarnation() -> u64 {
    rand::thread_rng().gen_range(1..=u64::MAX)
}
