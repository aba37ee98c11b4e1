//! Power loss for in-process nodes: a [`LogStore`] wrapper around the real
//! data dir that forgets every log write not yet synced when the power is
//! cut.
//!
//! [`PowerSwitch::cut`] is the instant of the failure. From then on every
//! write and sync fails, so nothing more becomes durable and nothing that
//! depends on a later write leaves the node (the writer stops it, exactly as
//! a real storage failure would). When the node's writer thread lets go of
//! the store — on the halt that follows — the log file is cut back to the
//! length the last successful sync made durable. A truncation that was not
//! synced yet is kept: a real crash may keep or undo it, and either is safe.
//! The hard state is replaced atomically (temp file, fsync, rename, directory
//! fsync), so a cut leaves either the old one or the new one, as it would.
//!
//! Room for more: the same wrapper is where errors on write or fsync, or a
//! full disk, can be injected.

use parking_lot::Mutex;
use raftnode::raft::message::{Entry, HardState, Index};
use raftnode::storage::{DiskStore, LogStore, Recovered, StorageError};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Cuts the power of one node's store.
#[derive(Clone, Default)]
pub struct PowerSwitch(Arc<SwitchState>);

#[derive(Default)]
struct SwitchState {
    cut: AtomicBool,
    /// Why the log could not be cut back, if it could not: the simulation
    /// failed, and the test must not pass as if it had worked.
    failure: Mutex<Option<String>>,
}

impl PowerSwitch {
    pub fn cut(&self) {
        self.0.cut.store(true, Ordering::Release);
    }

    fn is_cut(&self) -> bool {
        self.0.cut.load(Ordering::Acquire)
    }

    /// Panics if losing the unsynced writes failed.
    pub fn check(&self) {
        if let Some(e) = self.0.failure.lock().as_ref() {
            panic!("power-loss simulation failed: {e}");
        }
    }
}

/// A data dir whose unsynced log writes are lost when its switch is cut.
pub struct PowerCutStore {
    inner: DiskStore,
    log_path: PathBuf,
    /// The log file's length as of the last successful sync (or recovery).
    synced_len: u64,
    switch: PowerSwitch,
}

impl PowerCutStore {
    pub fn new(inner: DiskStore, switch: PowerSwitch) -> PowerCutStore {
        let log_path = inner.dir().join("log");
        PowerCutStore {
            inner,
            log_path,
            synced_len: 0,
            switch,
        }
    }

    fn log_len(&self) -> Result<u64, StorageError> {
        fs::metadata(&self.log_path)
            .map(|m| m.len())
            .map_err(|source| StorageError::Io {
                path: self.log_path.clone(),
                op: "stat",
                source,
            })
    }

    /// Every operation after the cut fails as the dead disk would.
    fn powered(&self, op: &'static str) -> Result<(), StorageError> {
        if self.switch.is_cut() {
            return Err(StorageError::Io {
                path: self.log_path.clone(),
                op,
                source: io::Error::other("power cut (simulated by the test)"),
            });
        }
        Ok(())
    }
}

impl LogStore for PowerCutStore {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        let recovered = self.inner.recover()?;
        self.synced_len = self.log_len()?;
        Ok(recovered)
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.powered("write")?;
        self.inner.save_hard_state(hard_state)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.powered("write")?;
        self.inner.append(entries)
    }

    fn truncate_after(&mut self, last_kept: Index) -> Result<(), StorageError> {
        self.powered("truncate")?;
        self.inner.truncate_after(last_kept)?;
        self.synced_len = self.synced_len.min(self.log_len()?);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.powered("fsync")?;
        self.inner.sync()?;
        self.synced_len = self.log_len()?;
        Ok(())
    }

    fn save_commit(&mut self, commit_index: Index) -> Result<(), StorageError> {
        self.powered("write")?;
        self.inner.save_commit(commit_index)
    }

    fn compact(&mut self, through: Index) -> Result<(), StorageError> {
        self.powered("compact")?;
        self.inner.compact(through)
    }

    fn reset(&mut self) -> Result<(), StorageError> {
        self.powered("reset")?;
        self.inner.reset()
    }

    fn last_index(&self) -> Index {
        self.inner.last_index()
    }
}

impl Drop for PowerCutStore {
    fn drop(&mut self) {
        // Still holding the dir's lock (the inner store drops after this),
        // so no restarted node can see the log before it is cut back.
        if !self.switch.is_cut() {
            return;
        }
        let lose_unsynced = OpenOptions::new()
            .write(true)
            .open(&self.log_path)
            .and_then(|log| match log.metadata()?.len() > self.synced_len {
                true => log.set_len(self.synced_len),
                false => Ok(()),
            });
        if let Err(e) = lose_unsynced {
            *self.switch.0.failure.lock() =
                Some(format!("cannot cut back {}: {e}", self.log_path.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftnode::raft::message::Payload;

    fn entry(index: Index) -> Entry {
        Entry {
            index,
            term: 1,
            payload: Payload::Command(vec![7; 100]),
        }
    }

    fn open(dir: &std::path::Path, switch: &PowerSwitch) -> PowerCutStore {
        let store = DiskStore::open(dir, 1, "power").unwrap();
        let mut store = PowerCutStore::new(store, switch.clone());
        store.recover().unwrap();
        store
    }

    #[test]
    fn a_power_cut_loses_exactly_the_unsynced_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let switch = PowerSwitch::default();
        let mut store = open(tmp.path(), &switch);
        store.append(&[entry(1), entry(2)]).unwrap();
        store.sync().unwrap();
        store.append(&[entry(3), entry(4)]).unwrap();
        switch.cut();
        assert!(store.sync().is_err(), "no sync after the cut");
        assert!(store.append(&[entry(5)]).is_err());
        drop(store);
        switch.check();

        let mut reopened = DiskStore::open(tmp.path(), 1, "power").unwrap();
        let indexes: Vec<Index> = reopened
            .recover()
            .unwrap()
            .entries
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(indexes, [1, 2], "entries 3 and 4 were never synced");
    }

    #[test]
    fn without_a_cut_nothing_is_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let switch = PowerSwitch::default();
        let mut store = open(tmp.path(), &switch);
        store.append(&[entry(1)]).unwrap();
        store.sync().unwrap();
        store.append(&[entry(2)]).unwrap();
        drop(store);
        let mut reopened = DiskStore::open(tmp.path(), 1, "power").unwrap();
        assert_eq!(reopened.recover().unwrap().entries.len(), 2);
    }

    #[test]
    fn an_unsynced_truncation_is_kept_and_later_data_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let switch = PowerSwitch::default();
        let mut store = open(tmp.path(), &switch);
        store.append(&[entry(1), entry(2), entry(3)]).unwrap();
        store.sync().unwrap();
        store.truncate_after(1).unwrap();
        store.append(&[entry(2), entry(3), entry(4)]).unwrap();
        switch.cut();
        drop(store);
        let mut reopened = DiskStore::open(tmp.path(), 1, "power").unwrap();
        // Cut back to the truncation point, never beyond what was synced.
        assert_eq!(reopened.recover().unwrap().entries.len(), 1);
    }
}
