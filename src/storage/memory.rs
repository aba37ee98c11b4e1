//! [`MemStore`]: a [`LogStore`] that keeps everything in memory, for tests
//! that need a node but no disk. It enforces the same rules as the data dir
//! (an append must continue the log), so a node behaves the same on it.

use super::error::StorageError;
use super::log_store::{check_continues, LogStore, Recovered};
use crate::raft::message::{Entry, HardState, Index};
use std::path::Path;

/// Where a `MemStore`'s errors say they happened.
const NAME: &str = "(memory)";

#[derive(Debug, Default, Clone)]
pub struct MemStore {
    hard_state: HardState,
    entries: Vec<Entry>,
}

impl MemStore {
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
        })
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.hard_state = *hard_state;
        Ok(())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let last_term = self.entries.last().map_or(0, |e| e.term);
        check_continues(self.last_index(), last_term, entries, Path::new(NAME))?;
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    fn truncate_after(&mut self, last_kept: Index) -> Result<(), StorageError> {
        self.entries
            .truncate(usize::try_from(last_kept).unwrap_or(usize::MAX));
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    fn last_index(&self) -> Index {
        self.entries.len() as Index
    }
}
