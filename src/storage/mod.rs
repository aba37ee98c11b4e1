//! Stable storage: what a node must never forget.
//!
//! Raft is only safe if a node never forgets what it has promised: the term
//! it has seen (`current_term`), its vote (`voted_for`), and every entry it
//! has acknowledged to a leader (Figure 2, "Persistent state on all
//! servers"). This layer keeps them. [`LogStore`] is what the node's writer
//! thread needs from any storage; [`DiskStore`] is the data dir (its on-disk
//! format is defined in one place, the docs of [`disk`]), [`MemStore`] keeps
//! everything in memory for tests that need no disk.
//!
//! Dependencies: the Raft types ([`crate::raft::message`]) and the codec.
//! Nothing here knows about threads, the network or the state machine.

mod disk;
mod error;
mod log_file;
mod memory;

pub use disk::DiskStore;
pub use error::StorageError;
pub use memory::MemStore;

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
fn check_continues(
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

#[cfg(test)]
mod contract_tests;
