//! [`MemStore`]: a [`LogStore`] that keeps everything in memory, for tests
//! that need a node but no disk. It enforces the same rules as the data dir
//! (an append must continue the log), so a node behaves the same on it.
//!
//! A test "restarts" a node on a `MemStore` by handing the new node the same
//! store (or a clone of it): everything a data dir would keep, the
//! incarnation included, lives in the store's fields, so it survives that.

use super::error::StorageError;
use super::log_store::{check_continues, new_incarnation, LogStore, Recovered};
use crate::raft::membership::Configuration;
use crate::raft::message::{Entry, HardState, Index};
use std::path::Path;

/// Where a `MemStore`'s errors say they happened.
const NAME: &str = "(memory)";

#[derive(Debug, Clone)]
pub struct MemStore {
    hard_state: HardState,
    /// Consecutive, from wherever compaction left the log.
    entries: Vec<Entry>,
    commit_index: Index,
    /// Drawn when the store is created; a clone (a restart) keeps it, a new
    /// store (a wiped data dir) gets another.
    incarnation: u64,
    bootstrap: Option<Configuration>,
    removed: Option<Index>,
}

impl Default for MemStore {
    fn default() -> MemStore {
        MemStore {
            hard_state: HardState::default(),
            entries: Vec::new(),
            commit_index: 0,
            incarnation: new_incarnation(),
            bootstrap: None,
            removed: None,
        }
    }
}

impl MemStore {
    /// An empty store with a fresh incarnation.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// A store that already holds this state, as if recovered from disk.
    pub fn with(hard_state: HardState, entries: Vec<Entry>) -> Result<MemStore, StorageError> {
        let mut store = MemStore {
            hard_state,
            ..MemStore::default()
        };
        store.append(&entries)?;
        Ok(store)
    }
}

impl LogStore for MemStore {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        Ok(Recovered {
            hard_state: self.hard_state,
            entries: self.entries.clone(),
            commit_index: self.commit_index,
            bootstrap: self.bootstrap.clone(),
            removed: self.removed,
        })
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.hard_state = *hard_state;
        Ok(())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let last = self.entries.last().map(|e| (e.index, e.term));
        check_continues(last, entries, Path::new(NAME))?;
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    fn truncate_after(&mut self, last_kept: Index) -> Result<(), StorageError> {
        self.entries.retain(|e| e.index <= last_kept);
        Ok(())
    }

    fn save_commit(&mut self, commit_index: Index) -> Result<(), StorageError> {
        self.commit_index = self.commit_index.max(commit_index);
        Ok(())
    }

    fn compact(&mut self, through: Index) -> Result<(), StorageError> {
        // Like the data dir, never the last entry: the log's end stays known.
        let through = through.min(self.last_index().saturating_sub(1));
        self.entries.retain(|e| e.index > through);
        Ok(())
    }

    fn reset(&mut self) -> Result<(), StorageError> {
        self.entries.clear();
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    fn last_index(&self) -> Index {
        self.entries.last().map_or(0, |e| e.index)
    }

    fn incarnation(&self) -> u64 {
        self.incarnation
    }

    fn save_bootstrap(&mut self, config: &Configuration) -> Result<(), StorageError> {
        self.bootstrap = Some(config.clone());
        Ok(())
    }

    fn save_removed(&mut self, index: Index) -> Result<(), StorageError> {
        self.removed = Some(index);
        Ok(())
    }
}
