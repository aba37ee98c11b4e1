//! Power loss for in-process nodes: a [`LogStore`] wrapper around the real
//! data dir that forgets every log write not yet synced when the power is
//! cut.
//!
//! [`PowerSwitch::cut`] is the instant of the failure. From then on every
//! write and sync fails, so nothing more becomes durable and nothing that
//! depends on a later write leaves the node (the writer stops it, exactly as
//! a real storage failure would). When the node's writer thread lets go of
//! the store — on the halt that follows — the log loses what the last
//! successful sync had not made durable. The log is a sequence of segment
//! files ([`DiskStore::segment_paths`]); every one but the last is durable
//! as it is, because the store syncs a segment (and its name) before it
//! creates the next one. So the last segment is cut back to its length at
//! the last sync, or deleted if it was created since: nothing that was made
//! durable is undone. A truncation or compaction that was not synced yet is
//! kept: a real crash may keep or undo it, and either is safe. The hard
//! state is replaced atomically (temp file, fsync, rename, directory fsync),
//! and so are the bootstrap configuration and the removed marker; like a
//! reset, each is durable when it returns, so a cut leaves either the old
//! or the new one, as it would.
//!
//! Room for more: the same wrapper is where errors on write or fsync, or a
//! full disk, can be injected.

use parking_lot::Mutex;
use raftnode::raft::membership::Configuration;
use raftnode::raft::message::{Entry, HardState, Index};
use raftnode::storage::{DiskStore, LogStore, Recovered, StorageError};
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
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
    /// Each segment's length as of the last successful sync (or recovery or
    /// reset), lowered by truncations since; a segment not in it was
    /// created since.
    synced: BTreeMap<PathBuf, u64>,
    switch: PowerSwitch,
}

fn file_len(path: &Path) -> Result<u64, StorageError> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| StorageError::Io {
            path: path.to_path_buf(),
            op: "stat",
            source,
        })
}

impl PowerCutStore {
    pub fn new(inner: DiskStore, switch: PowerSwitch) -> PowerCutStore {
        PowerCutStore {
            inner,
            synced: BTreeMap::new(),
            switch,
        }
    }

    /// Every segment is durable as it is now.
    fn all_synced(&mut self) -> Result<(), StorageError> {
        self.synced.clear();
        for path in self.inner.segment_paths() {
            let len = file_len(&path)?;
            self.synced.insert(path, len);
        }
        Ok(())
    }

    /// Keeps a truncation or deletion that was not synced: forgets deleted
    /// segments and lowers the lengths of cut ones.
    fn keep_cuts(&mut self) -> Result<(), StorageError> {
        let live = self.inner.segment_paths();
        self.synced.retain(|path, _| live.contains(path));
        for (path, len) in self.synced.iter_mut() {
            *len = (*len).min(file_len(path)?);
        }
        Ok(())
    }

    /// Every operation after the cut fails as the dead disk would.
    fn powered(&self, op: &'static str) -> Result<(), StorageError> {
        if self.switch.is_cut() {
            return Err(StorageError::Io {
                path: self.inner.dir().to_path_buf(),
                op,
                source: io::Error::other("power cut (simulated by the test)"),
            });
        }
        Ok(())
    }

    /// Loses what the last sync did not make durable: the last segment is
    /// cut back to its synced length, or deleted if it is new since.
    fn lose_unsynced(&self) -> io::Result<()> {
        let Some(last) = self.inner.segment_paths().pop() else {
            return Ok(());
        };
        match self.synced.get(&last) {
            None => fs::remove_file(&last),
            Some(&synced) => {
                let file = OpenOptions::new().write(true).open(&last)?;
                if file.metadata()?.len() > synced {
                    file.set_len(synced)?;
                }
                Ok(())
            }
        }
    }
}

impl LogStore for PowerCutStore {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        let recovered = self.inner.recover()?;
        // Recovery syncs every segment it read.
        self.all_synced()?;
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
        self.keep_cuts()
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.powered("fsync")?;
        self.inner.sync()?;
        self.all_synced()
    }

    fn save_commit(&mut self, commit_index: Index) -> Result<(), StorageError> {
        self.powered("write")?;
        self.inner.save_commit(commit_index)
    }

    fn compact(&mut self, through: Index) -> Result<(), StorageError> {
        self.powered("compact")?;
        self.inner.compact(through)?;
        self.keep_cuts()
    }

    fn reset(&mut self) -> Result<(), StorageError> {
        self.powered("reset")?;
        self.inner.reset()?;
        // Durable when it returns.
        self.all_synced()
    }

    fn last_index(&self) -> Index {
        self.inner.last_index()
    }

    fn incarnation(&self) -> u64 {
        self.inner.incarnation()
    }

    /// Like the hard state: durable when it returns, so nothing to undo at
    /// the cut.
    fn save_bootstrap(&mut self, config: &Configuration) -> Result<(), StorageError> {
        self.powered("write")?;
        self.inner.save_bootstrap(config)
    }

    /// Like the hard state: durable when it returns.
    fn save_removed(&mut self, index: Index) -> Result<(), StorageError> {
        self.powered("write")?;
        self.inner.save_removed(index)
    }
}

impl Drop for PowerCutStore {
    fn drop(&mut self) {
        // Still holding the dir's lock (the inner store drops after this),
        // so no restarted node can see the log before it is cut back.
        if !self.switch.is_cut() {
            return;
        }
        if let Err(e) = self.lose_unsynced() {
            *self.switch.0.failure.lock() = Some(format!(
                "cannot cut back the log in {}: {e}",
                self.inner.dir().display()
            ));
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

    /// A store whose every batch of two entries fills a segment.
    fn open_small(dir: &std::path::Path, switch: &PowerSwitch) -> PowerCutStore {
        let options = raftnode::storage::DiskOptions { segment_bytes: 200 };
        let store = DiskStore::open_with(dir, 1, "power", options).unwrap();
        let mut store = PowerCutStore::new(store, switch.clone());
        store.recover().unwrap();
        store
    }

    fn reopened_indexes(dir: &std::path::Path) -> Vec<Index> {
        let mut reopened = DiskStore::open(dir, 1, "power").unwrap();
        let recovered = reopened.recover().unwrap();
        recovered.entries.iter().map(|e| e.index).collect()
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

    #[test]
    fn a_power_cut_forgets_new_segments_and_keeps_what_was_made_durable() {
        let tmp = tempfile::tempdir().unwrap();
        let switch = PowerSwitch::default();
        let mut store = open_small(tmp.path(), &switch);
        store.append(&[entry(1), entry(2)]).unwrap();
        store.sync().unwrap();
        // Each of these starts a segment, which first makes the one before
        // it durable; only the last one is still unsynced at the cut.
        store.append(&[entry(3), entry(4)]).unwrap();
        store.append(&[entry(5), entry(6)]).unwrap();
        assert_eq!(store.inner.segment_paths().len(), 3);
        switch.cut();
        drop(store);
        switch.check();
        assert_eq!(reopened_indexes(tmp.path()), [1, 2, 3, 4]);
    }

    #[test]
    fn an_unsynced_truncation_across_segments_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let switch = PowerSwitch::default();
        let mut store = open_small(tmp.path(), &switch);
        for batch in [
            [entry(1), entry(2)],
            [entry(3), entry(4)],
            [entry(5), entry(6)],
        ] {
            store.append(&batch).unwrap();
            store.sync().unwrap();
        }
        store.truncate_after(3).unwrap();
        store.append(&[entry(4)]).unwrap();
        switch.cut();
        drop(store);
        switch.check();
        assert_eq!(reopened_indexes(tmp.path()), [1, 2, 3]);
    }

    #[test]
    fn a_reset_is_never_undone() {
        let tmp = tempfile::tempdir().unwrap();
        let switch = PowerSwitch::default();
        let mut store = open_small(tmp.path(), &switch);
        store.append(&[entry(1), entry(2)]).unwrap();
        store.append(&[entry(3), entry(4)]).unwrap();
        store.sync().unwrap();
        store.reset().unwrap();
        store.append(&[entry(40)]).unwrap();
        switch.cut();
        drop(store);
        switch.check();
        assert_eq!(reopened_indexes(tmp.path()), Vec::<Index>::new());
    }

    #[test]
    fn the_bootstrap_and_removed_files_are_durable_and_refused_after_the_cut() {
        let tmp = tempfile::tempdir().unwrap();
        let switch = PowerSwitch::default();
        let mut store = open(tmp.path(), &switch);
        let incarnation = store.incarnation();
        let config = Configuration::of_voters([(1, "a:1".to_string()), (2, "b:2".to_string())]);
        store.save_bootstrap(&config).unwrap();
        switch.cut();
        assert!(store.save_removed(9).is_err(), "no write after the cut");
        drop(store);
        switch.check();
        let mut reopened = DiskStore::open(tmp.path(), 1, "power").unwrap();
        let recovered = reopened.recover().unwrap();
        assert_eq!(recovered.bootstrap, Some(config));
        assert_eq!(recovered.removed, None);
        assert_eq!(reopened.incarnation(), incarnation);
    }
}
