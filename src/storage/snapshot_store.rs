//! [`SnapshotStore`]: the `snapshots/` directory of a data dir, which holds
//! the node's latest snapshot (§7) — taken by the node itself or received
//! from a leader — in the format of [`super::snapshot_file`].
//!
//! Files are named `snapshot-<index>-<term>` (the last included index and
//! term, zero-padded to 20 digits so names sort by index). A new snapshot
//! becomes the latest only once its file is durable (written to a `.tmp`
//! file, fsynced, renamed, directory fsynced); older ones are deleted
//! afterwards, so a crash at any point leaves at least one whole snapshot
//! that the log continues. `.tmp` files are what a crash interrupted and are
//! deleted on open; `incoming.tmp` is a snapshot being received from a
//! leader.
//!
//! On open the newest snapshot is checked whole (magic, lengths, checksum,
//! end marker). If it does not check out the store refuses to open, naming
//! the file and the defect: the log before it may already be compacted, so
//! falling back to an older snapshot or to nothing could silently lose
//! committed writes.
//!
//! The store is shared by the threads that take, send, receive and restore
//! snapshots; only which file is the latest sits behind its lock, never any
//! I/O on the files' contents.

use super::error::{io_err, StorageError};
use super::snapshot_file::{SnapshotMeta, SnapshotReader, SnapshotWriter};
use crate::raft::message::{Index, Term};
use parking_lot::Mutex;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

const PREFIX: &str = "snapshot-";
/// Where a snapshot streamed from a leader is assembled.
const INCOMING: &str = "incoming.tmp";

/// The latest snapshot: what it stands for, where it is and how big.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub meta: SnapshotMeta,
    pub path: PathBuf,
    /// The file's length in bytes.
    pub bytes: u64,
}

/// A data dir's snapshots. See the module docs.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    latest: Mutex<Option<SnapshotInfo>>,
}

impl SnapshotStore {
    /// Opens (creating if needed) the snapshot directory `dir`, deletes what
    /// interrupted writes left, and checks the newest snapshot.
    pub fn open(dir: &Path) -> Result<SnapshotStore, StorageError> {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let mut newest: Option<(Index, PathBuf)> = None;
        let mut others = Vec::new();
        for dir_entry in fs::read_dir(dir).map_err(io_err(dir, "list"))? {
            let dir_entry = dir_entry.map_err(io_err(dir, "list"))?;
            let path = dir_entry.path();
            let name = dir_entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                log::info!("{}: removing an interrupted write", path.display());
                fs::remove_file(&path).map_err(io_err(&path, "remove"))?;
                continue;
            }
            let Some((index, _)) = parse_name(&name) else {
                return Err(StorageError::Corrupt {
                    path,
                    offset: None,
                    reason: "not a snapshot file name raftnode writes".into(),
                });
            };
            match &newest {
                Some((newest_index, _)) if *newest_index >= index => others.push(path),
                _ => {
                    if let Some((_, old)) = newest.replace((index, path)) {
                        others.push(old);
                    }
                }
            }
        }
        let latest = match newest {
            None => None,
            Some((_, path)) => Some(info_of(&path)?),
        };
        let store = SnapshotStore {
            dir: dir.to_path_buf(),
            latest: Mutex::new(latest),
        };
        // Older snapshots are superseded; a crash kept them after the newer
        // one was already durable.
        for path in others {
            store.remove(&path);
        }
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The latest durable snapshot, if any.
    pub fn latest(&self) -> Option<SnapshotInfo> {
        self.latest.lock().clone()
    }

    /// The latest durable snapshot's size in bytes (0 if none), without
    /// copying its metadata: the apply thread asks after every batch.
    pub fn latest_bytes(&self) -> u64 {
        self.latest.lock().as_ref().map_or(0, |s| s.bytes)
    }

    /// Starts writing a snapshot for `meta`; hand the finished writer to
    /// [`SnapshotStore::publish`].
    pub fn create(&self, meta: &SnapshotMeta) -> Result<SnapshotWriter, StorageError> {
        let name = file_name(meta.last_included_index, meta.last_included_term);
        SnapshotWriter::create(&self.dir.join(name), meta)
    }

    /// Where a snapshot received from a leader is assembled.
    pub fn incoming_path(&self) -> PathBuf {
        self.dir.join(INCOMING)
    }

    /// Checks the received snapshot at [`SnapshotStore::incoming_path`]
    /// (whole file, checksum included) and makes it durable under its
    /// name. The caller has fsynced it. Returns what it holds.
    pub fn accept_incoming(&self) -> Result<SnapshotInfo, StorageError> {
        let incoming = self.incoming_path();
        let reader = SnapshotReader::open(&incoming)?;
        let meta = reader.meta().clone();
        drop(reader);
        let path = self
            .dir
            .join(file_name(meta.last_included_index, meta.last_included_term));
        fs::rename(&incoming, &path).map_err(io_err(&path, "rename into place"))?;
        sync_dir(&self.dir)?;
        info_of(&path)
    }

    /// Finishes a snapshot started with [`SnapshotStore::create`] (making it
    /// durable) and describes it, ready to [`publish`](SnapshotStore::publish).
    pub fn finish(
        &self,
        writer: SnapshotWriter,
        meta: SnapshotMeta,
    ) -> Result<SnapshotInfo, StorageError> {
        let path = writer.finish()?;
        let bytes = fs::metadata(&path).map_err(io_err(&path, "stat"))?.len();
        Ok(SnapshotInfo { meta, path, bytes })
    }

    /// Makes a durable snapshot the latest, if it is newer than the current
    /// one, and deletes the one it replaces. Returns whether it became the
    /// latest.
    pub fn publish(&self, info: SnapshotInfo) -> bool {
        let path = info.path.clone();
        let replaced = {
            let mut latest = self.latest.lock();
            match latest.as_ref() {
                Some(current)
                    if current.meta.last_included_index > info.meta.last_included_index =>
                {
                    None
                }
                _ => Some(latest.replace(info)),
            }
        };
        match replaced {
            None => {
                // Overtaken by a newer one (installed from the leader while
                // this was written): it is of no use.
                self.remove(&path);
                false
            }
            Some(old) => {
                if let Some(old) = old.filter(|old| old.path != path) {
                    self.remove(&old.path);
                }
                true
            }
        }
    }

    /// Deletes a superseded file. Failing to is only untidy (the next open
    /// deletes it), so it is logged, not fatal. A thread still reading it
    /// (streaming it to a follower) keeps its open file.
    fn remove(&self, path: &Path) {
        if let Err(e) = fs::remove_file(path) {
            log::warn!("cannot remove old snapshot {}: {e}", path.display());
        }
    }
}

/// `snapshot-<index>-<term>`.
fn file_name(index: Index, term: Term) -> String {
    format!("{PREFIX}{index:020}-{term:020}")
}

fn parse_name(name: &str) -> Option<(Index, Term)> {
    let (index, term) = name.strip_prefix(PREFIX)?.split_once('-')?;
    Some((index.parse().ok()?, term.parse().ok()?))
}

/// Checks the whole file and describes it; the name must agree with the
/// meta inside.
fn info_of(path: &Path) -> Result<SnapshotInfo, StorageError> {
    let reader = SnapshotReader::open(path)?;
    let meta = reader.meta().clone();
    let bytes = fs::metadata(path).map_err(io_err(path, "stat"))?.len();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let named = name.as_deref().and_then(parse_name);
    if named != Some((meta.last_included_index, meta.last_included_term)) {
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            offset: None,
            reason: format!(
                "holds the snapshot at index {}, term {}, which its name does not say",
                meta.last_included_index, meta.last_included_term
            ),
        });
    }
    Ok(SnapshotInfo {
        meta,
        path: path.to_path_buf(),
        bytes,
    })
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync directory"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::membership::Configuration;
    use std::io::Write;

    fn meta(index: Index, term: Term) -> SnapshotMeta {
        SnapshotMeta {
            last_included_index: index,
            last_included_term: term,
            config_index: 0,
            config: Configuration::of_voters((1..=3).map(|id| (id, format!("h:{id}")))),
        }
    }

    fn take(store: &SnapshotStore, index: Index, payload: &[u8]) -> PathBuf {
        let mut writer = store.create(&meta(index, 2)).unwrap();
        writer.write_all(payload).unwrap();
        let info = store.finish(writer, meta(index, 2)).unwrap();
        let path = info.path.clone();
        assert!(store.publish(info));
        path
    }

    #[test]
    fn the_newest_durable_snapshot_is_the_latest_and_older_ones_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("snapshots");
        let store = SnapshotStore::open(&dir).unwrap();
        assert_eq!(store.latest(), None);
        let first = take(&store, 10, b"ten");
        let second = take(&store, 20, b"twenty");
        assert!(!first.exists(), "superseded");
        let latest = store.latest().unwrap();
        assert_eq!(
            (latest.meta.last_included_index, &latest.path),
            (20, &second)
        );
        // An older one finishing late does not replace it.
        let mut late = store.create(&meta(15, 2)).unwrap();
        late.write_all(b"fifteen").unwrap();
        let late = store.finish(late, meta(15, 2)).unwrap();
        let late_path = late.path.clone();
        assert!(!store.publish(late));
        assert!(!late_path.exists());
        // Reopening finds it, and drops an interrupted write.
        let mut torn = store.create(&meta(30, 2)).unwrap();
        torn.write_all(b"half").unwrap();
        drop(torn);
        drop(store);
        let store = SnapshotStore::open(&dir).unwrap();
        assert_eq!(store.latest().unwrap().meta.last_included_index, 20);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn a_damaged_latest_snapshot_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("snapshots");
        let store = SnapshotStore::open(&dir).unwrap();
        let path = take(&store, 7, b"the state");
        drop(store);
        let mut bytes = fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        fs::write(&path, bytes).unwrap();
        match SnapshotStore::open(&dir) {
            Err(StorageError::Corrupt { path: p, .. }) => assert_eq!(p, path),
            other => panic!("opened a damaged snapshot: {other:?}"),
        }
    }

    #[test]
    fn a_received_snapshot_is_checked_before_it_is_accepted() {
        let tmp = tempfile::tempdir().unwrap();
        let source = SnapshotStore::open(&tmp.path().join("a")).unwrap();
        let sent = take(&source, 42, b"from the leader");
        let store = SnapshotStore::open(&tmp.path().join("b")).unwrap();
        let mut bytes = fs::read(&sent).unwrap();
        bytes[20] ^= 0x10;
        fs::write(store.incoming_path(), &bytes).unwrap();
        assert!(store.accept_incoming().is_err());
        assert_eq!(store.latest(), None);
        bytes[20] ^= 0x10;
        fs::write(store.incoming_path(), &bytes).unwrap();
        let info = store.accept_incoming().unwrap();
        assert!(store.publish(info));
        assert_eq!(store.latest().unwrap().meta.last_included_index, 42);
        assert!(!store.incoming_path().exists());
    }
}
