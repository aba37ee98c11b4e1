//! [`DiskStore`]: the file-backed [`LogStore`] — the node's
//! data dir.
//!
//! It makes a node's promises durable and, after a crash, gives them back
//! exactly, or refuses to start. It never silently starts from an empty or
//! shortened log, except for dropping a torn tail that was never synced (and
//! so never acknowledged).
//!
//! # The data dir
//!
//! This comment is the definition of the on-disk format (the `log` file's
//! records are implemented in [`super::log_file`]). A data dir holds four
//! files.
//!
//! `meta` is a small text file written once, when the dir is initialized. It
//! has one `key: value` line each for `format` (currently `1`), `node_id`
//! (the decimal [`NodeId`]) and `cluster_id` (any one-line string, written
//! verbatim after the `": "`). It is written last during initialization, so
//! its presence is what marks the dir as initialized. Opening the dir as a
//! different node or cluster is refused, because running a node on another
//! node's log would make it vote and acknowledge on that node's behalf.
//!
//! `hard_state` is the codec-encoded [`HardState`] (see [`crate::codec`])
//! followed by a 4-byte big-endian CRC-32 of those encoded bytes. It is never
//! modified in place: a new version is written to `hard_state.tmp`, fsynced,
//! renamed over `hard_state`, and then the directory is fsynced, so at every
//! instant the file holds either the old or the new hard state, whole.
//!
//! `log` starts with the 8-byte magic header `RNLOG\0\0\x01` (the last byte is
//! the format version). After it come records, one per log entry, back to
//! back. A record is a 4-byte big-endian payload length, then a 4-byte
//! big-endian CRC-32 computed over the 4 length bytes followed by the
//! payload, then the payload itself: one codec-encoded [`Entry`]. Payloads are
//! at most 64 MiB and never empty. Entries have consecutive indexes starting
//! at 1 and non-decreasing terms. Appends are not synced individually; the
//! caller batches several appends (and truncations) per [`DiskStore::sync`](super::LogStore::sync)
//! (group commit) and must not acknowledge entries before that sync returns.
//!
//! `LOCK` is an empty file on which an exclusive advisory lock is held for
//! as long as a [`DiskStore`] lives, so two processes (or two `DiskStore`s in one
//! process) can never write the same dir.
//!
//! Transient files `hard_state.tmp` and `meta.tmp` may be left by a crash;
//! they are ignored (and overwritten by the next write).
//!
//! # Initialization
//!
//! A dir that does not exist, or has no `meta`, is initialized: the log (just
//! its header) is written and fsynced, then `hard_state` (default term and
//! vote), then `meta`, each made durable before the next. A dir without
//! `meta` is only initialized if it holds nothing but what an interrupted
//! initialization leaves (`LOCK`, `meta.tmp`, a log holding at most the
//! header, empty or default `hard_state` and `hard_state.tmp`); anything else,
//! in particular a log with records, is refused and left untouched. Once
//! `meta` exists, a missing `log` or `hard_state` is an error, never a reason
//! to start afresh.
//!
//! # Recovery
//!
//! On open the log is read from offset 8 record by record. A defective record
//! is told apart from real corruption by what follows it. A crash in the
//! middle of an append can only damage the end of the file: it can cut the
//! file short, or leave the file longer than the data actually written, with
//! zeros in the gap. So a record that runs past the end of the file, or that
//! is bad (checksum mismatch, undecodable, zero or oversized length) but is
//! followed by nothing except zeros, is a torn tail: the file is truncated at
//! the record's start, the truncation is fsynced, and a warning is logged. A
//! bad record followed by more non-zero data cannot be explained by a crash
//! and is reported as [`StorageError::Corrupt`] without touching the file:
//! dropping the data after it could drop entries this node has acknowledged.
//! A length over 64 MiB was never written by anyone, so such a record's end
//! is unknown; it is judged by what follows its 8-byte header. (The rule errs
//! on the safe side: if a crash lost a block in the middle of one unsynced
//! batch but kept a later one, the node refuses to start rather than guess.)
//!
//! Intact records must then have consecutive indexes from 1 and
//! non-decreasing terms; a violation is corruption too.

use super::error::{io_err, missing_or_io, StorageError};
use super::log_file::{encode_record, parse_record, recover_log, LOG_MAGIC};
use super::log_store::{check_continues, LogStore, Recovered};
use crate::codec::{decode, encode};
use crate::raft::message::{Entry, HardState, Index, NodeId, Term};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The value of the `format` line in `meta`.
const META_FORMAT: u32 = 1;

const META: &str = "meta";
const META_TMP: &str = "meta.tmp";
const HARD_STATE: &str = "hard_state";
const HARD_STATE_TMP: &str = "hard_state.tmp";
const LOG: &str = "log";
const LOCK: &str = "LOCK";

/// The node's log and hard state on disk. Owned by the node's writer thread.
pub struct DiskStore {
    dir: PathBuf,
    log_path: PathBuf,
    log: File,
    /// `offsets[i - 1]` is the byte offset of the record of entry `i`, so
    /// truncating to any index needs no reading.
    offsets: Vec<u64>,
    /// The length of the log file, which is where the next record goes.
    end: u64,
    /// The term of the last entry (0 when the log is empty), to refuse an
    /// append that would make terms decrease and the log unrecoverable.
    last_term: Term,
    /// Set when a write, truncation or sync of the log failed. After that the
    /// file's contents are unknown (a failed fsync may have dropped dirty
    /// pages; retrying it can falsely succeed), so the only safe way on is a
    /// restart, whose recovery reads what is really on disk.
    poisoned: bool,
    /// What `open` read, until [`LogStore::recover`] hands it over.
    recovered: Option<Recovered>,
    /// Holds the dir's lock; closing it (when the store drops) releases it.
    _lock: File,
}

impl DiskStore {
    /// Opens the node's data dir, creating and initializing it if it does not
    /// exist or is empty, and reads it back (repairing a torn tail).
    pub fn open(dir: &Path, node_id: NodeId, cluster_id: &str) -> Result<DiskStore, StorageError> {
        let lock = prepare_dir(dir, node_id, cluster_id)?;
        let hard_state = read_hard_state(&dir.join(HARD_STATE))?;
        let log_path = dir.join(LOG);
        let mut log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| missing_or_io(&log_path, "open", e))?;
        let recovered_log = recover_log(&mut log, &log_path)?;
        let last_term = recovered_log.entries.last().map_or(0, |e| e.term);
        if hard_state.current_term < last_term {
            // Every entry's term was once the current term of its writer, so
            // current_term should be at least as high. Not fatal: the node
            // will learn a higher term soon enough, but worth a look.
            log::warn!(
                "{}: current_term {} is lower than the last log entry's term {}",
                dir.display(),
                hard_state.current_term,
                last_term
            );
        }
        Ok(DiskStore {
            dir: dir.to_path_buf(),
            log_path,
            log,
            offsets: recovered_log.offsets,
            end: recovered_log.end,
            last_term,
            poisoned: false,
            recovered: Some(Recovered {
                hard_state,
                entries: recovered_log.entries,
                commit_index: 0,
            }),
            _lock: lock,
        })
    }

    /// The data dir this store was opened on.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_not_poisoned(&self) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned {
                path: self.log_path.clone(),
            });
        }
        Ok(())
    }

    /// Marks the store unusable after a failed write (see `poisoned`).
    fn poison(&mut self, op: &'static str, e: std::io::Error) -> StorageError {
        self.poisoned = true;
        io_err(&self.log_path, op)(e)
    }

    /// Reads back the entry at `index` (which must be in the log).
    fn read_entry(&mut self, index: Index) -> Result<Entry, StorageError> {
        let start = self.offsets[index as usize - 1];
        let end = self
            .offsets
            .get(index as usize)
            .copied()
            .unwrap_or(self.end);
        let mut bytes = vec![0; (end - start) as usize];
        self.log
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.log.read_exact(&mut bytes))
            .map_err(io_err(&self.log_path, "read"))?;
        parse_record(&bytes, 0)
            .map(|(entry, _)| entry)
            .map_err(|defect| StorageError::Corrupt {
                path: self.log_path.clone(),
                offset: Some(start),
                reason: format!("re-reading entry {index}: {}", defect.reason()),
            })
    }
}

impl LogStore for DiskStore {
    /// The first call hands over what `open` read; a later one reads the
    /// files again.
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        if let Some(recovered) = self.recovered.take() {
            return Ok(recovered);
        }
        self.check_not_poisoned()?;
        let hard_state = read_hard_state(&self.dir.join(HARD_STATE))?;
        let log = recover_log(&mut self.log, &self.log_path)?;
        self.offsets = log.offsets;
        self.end = log.end;
        self.last_term = log.entries.last().map_or(0, |e| e.term);
        Ok(Recovered {
            hard_state,
            entries: log.entries,
            commit_index: 0,
        })
    }

    /// Writes `hard_state.tmp`, fsyncs it, renames it over `hard_state` and
    /// fsyncs the directory.
    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        write_hard_state(&self.dir, hard_state)
    }

    /// The whole batch goes out in one write.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        // Validate and encode everything before writing anything, so a
        // refused batch leaves the log untouched.
        let last = (self.last_index() > 0).then_some((self.last_index(), self.last_term));
        check_continues(last, entries, &self.log_path)?;
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in entries {
            offsets.push(self.end + buf.len() as u64);
            encode_record(entry, &mut buf, &self.log_path)?;
        }
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let written = self
            .log
            .seek(SeekFrom::Start(self.end))
            .and_then(|_| self.log.write_all(&buf));
        if let Err(e) = written {
            // Part of the batch may be in the file; recovery will cut it off.
            return Err(self.poison("write", e));
        }
        self.offsets.extend(offsets);
        self.end += buf.len() as u64;
        self.last_term = last.term;
        Ok(())
    }

    fn truncate_after(&mut self, last_kept: Index) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        if last_kept >= self.last_index() {
            return Ok(());
        }
        let new_last_term = if last_kept == 0 {
            0
        } else {
            self.read_entry(last_kept)?.term
        };
        // Entry `last_kept + 1` starts at offsets[last_kept]; cut there.
        let new_end = self.offsets[last_kept as usize];
        if let Err(e) = self.log.set_len(new_end) {
            return Err(self.poison("truncate", e));
        }
        self.offsets.truncate(last_kept as usize);
        self.end = new_end;
        self.last_term = new_last_term;
        Ok(())
    }

    /// fdatasync suffices: it also flushes the file size, which is all the
    /// metadata a truncation or append changes that matters for reading the
    /// data back.
    fn sync(&mut self) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        if let Err(e) = self.log.sync_data() {
            return Err(self.poison("fsync", e));
        }
        Ok(())
    }

    // Placeholders until the log is split into segments: keeping every
    // entry and forgetting the commit index are both safe.
    fn save_commit(&mut self, _commit_index: Index) -> Result<(), StorageError> {
        Ok(())
    }

    fn compact(&mut self, _through: Index) -> Result<(), StorageError> {
        Ok(())
    }

    fn reset(&mut self) -> Result<(), StorageError> {
        Err(StorageError::Corrupt {
            path: self.log_path.clone(),
            offset: None,
            reason: "resetting the log is not supported yet".into(),
        })
    }

    fn last_index(&self) -> Index {
        self.offsets.len() as Index
    }
}

// ---------------------------------------------------------------------------
// Opening the dir

/// Checks, creates or initializes the data dir and takes its lock; returns
/// the lock once the dir is known to belong to this node and cluster.
fn prepare_dir(dir: &Path, node_id: NodeId, cluster_id: &str) -> Result<File, StorageError> {
    if cluster_id.is_empty() || cluster_id.contains(['\n', '\r']) {
        return Err(StorageError::InvalidClusterId {
            path: dir.to_path_buf(),
            cluster_id: cluster_id.to_string(),
        });
    }
    let meta_path = dir.join(META);
    let dir_existed = dir.exists();
    if dir_existed && !file_exists(&meta_path)? {
        // Refuse a foreign dir before putting even a LOCK file into it.
        // This look is unlocked, so it is repeated under the lock below.
        check_uninitialized(dir)?;
    }
    fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
    if !dir_existed {
        // A dir that vanishes in a crash would take every vote and entry
        // with it, so its own name must be durable too.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    // Lock before deciding anything, so that two nodes started on the
    // same dir cannot both decide to initialize it.
    let lock = lock_dir(dir)?;
    if !file_exists(&meta_path)? {
        check_uninitialized(dir)?;
        initialize(dir, node_id, cluster_id)?;
    }
    let meta = read_meta(&meta_path)?;
    if meta.cluster_id != cluster_id {
        return Err(StorageError::WrongCluster {
            path: dir.to_path_buf(),
            expected: cluster_id.to_string(),
            found: meta.cluster_id,
        });
    }
    if meta.node_id != node_id {
        return Err(StorageError::WrongNode {
            path: dir.to_path_buf(),
            expected: node_id,
            found: meta.node_id,
        });
    }
    Ok(lock)
}

// ---------------------------------------------------------------------------
// Hard state

fn write_hard_state(dir: &Path, hs: &HardState) -> Result<(), StorageError> {
    let path = dir.join(HARD_STATE);
    let mut bytes = encode(hs).map_err(|source| StorageError::Encode {
        path: path.clone(),
        source,
    })?;
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    replace_file(dir, HARD_STATE_TMP, HARD_STATE, &bytes)
}

/// Reads and checks `hard_state`; its absence is an error (see [`Missing`]).
///
/// [`Missing`]: StorageError::Missing
fn read_hard_state(path: &Path) -> Result<HardState, StorageError> {
    let bytes = fs::read(path).map_err(|e| missing_or_io(path, "read", e))?;
    decode_hard_state(&bytes).map_err(|reason| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: None,
        reason,
    })
}

fn decode_hard_state(bytes: &[u8]) -> Result<HardState, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "only {} bytes, too short for a hard state",
            bytes.len()
        ));
    }
    let (encoded, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(encoded).to_be_bytes() != crc {
        return Err("checksum mismatch".to_string());
    }
    decode(encoded).map_err(|e| format!("undecodable hard state ({e})"))
}

// ---------------------------------------------------------------------------
// Meta and initialization

struct Meta {
    node_id: NodeId,
    cluster_id: String,
}

fn read_meta(path: &Path) -> Result<Meta, StorageError> {
    let text = fs::read_to_string(path).map_err(|e| missing_or_io(path, "read", e))?;
    parse_meta(&text).map_err(|reason| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: None,
        reason,
    })
}

fn parse_meta(text: &str) -> Result<Meta, String> {
    let (mut format, mut node_id, mut cluster_id) = (None, None, None);
    for line in text.lines() {
        let (key, value) = line
            .split_once(": ")
            .ok_or_else(|| format!("line {line:?} is not `key: value`"))?;
        match key {
            "format" => format = Some(value),
            "node_id" => node_id = Some(value),
            "cluster_id" => cluster_id = Some(value),
            _ => return Err(format!("unknown key {key:?}")),
        }
    }
    let format = format.ok_or("no `format` line")?;
    if format != META_FORMAT.to_string() {
        return Err(format!(
            "format {format:?} is not the supported format {META_FORMAT}"
        ));
    }
    let node_id = node_id.ok_or("no `node_id` line")?;
    let node_id = node_id
        .parse()
        .map_err(|_| format!("node_id {node_id:?} is not a number"))?;
    let cluster_id = cluster_id.ok_or("no `cluster_id` line")?.to_string();
    Ok(Meta {
        node_id,
        cluster_id,
    })
}

/// Checks that a dir without `meta` holds nothing but what an interrupted
/// initialization may have left, so initializing it destroys nothing.
fn check_uninitialized(dir: &Path) -> Result<(), StorageError> {
    let not_ours = |reason: String| StorageError::NotADataDir {
        path: dir.to_path_buf(),
        reason,
    };
    for dir_entry in fs::read_dir(dir).map_err(io_err(dir, "list"))? {
        let dir_entry = dir_entry.map_err(io_err(dir, "list"))?;
        let path = dir_entry.path();
        let name = dir_entry.file_name();
        match name.to_str() {
            Some(LOCK) | Some(META_TMP) => {}
            Some(LOG) => {
                let bytes = fs::read(&path).map_err(io_err(&path, "read"))?;
                // Initialization writes the log header in one go; a crash can
                // leave any prefix of it.
                if bytes.len() > LOG_MAGIC.len() || !LOG_MAGIC.starts_with(&bytes) {
                    return Err(not_ours(format!(
                        "it has a log ({} bytes) but no meta",
                        bytes.len()
                    )));
                }
            }
            Some(HARD_STATE) | Some(HARD_STATE_TMP) => {
                let bytes = fs::read(&path).map_err(io_err(&path, "read"))?;
                // Empty: created, then the crash came before the write.
                let fresh = bytes.is_empty()
                    || decode_hard_state(&bytes).is_ok_and(|hs| hs == HardState::default());
                if !fresh {
                    return Err(not_ours(format!(
                        "it has a non-initial {} but no meta",
                        path.display()
                    )));
                }
            }
            _ => {
                return Err(not_ours(format!(
                    "it contains {name:?}, which raftnode did not create"
                )))
            }
        }
    }
    Ok(())
}

/// Creates the files of a fresh data dir. `meta` goes last, and only after
/// everything before it is durable, so a crash at any point leaves either an
/// initialized dir or one that [`check_uninitialized`] accepts.
fn initialize(dir: &Path, node_id: NodeId, cluster_id: &str) -> Result<(), StorageError> {
    let log_path = dir.join(LOG);
    let mut log = File::create(&log_path).map_err(io_err(&log_path, "create"))?;
    log.write_all(LOG_MAGIC)
        .map_err(io_err(&log_path, "write"))?;
    log.sync_all().map_err(io_err(&log_path, "fsync"))?;
    // The log's directory entry must be durable before meta's can be.
    sync_dir(dir)?;

    write_hard_state(dir, &HardState::default())?;

    let meta = format!("format: {META_FORMAT}\nnode_id: {node_id}\ncluster_id: {cluster_id}\n");
    replace_file(dir, META_TMP, META, meta.as_bytes())?;
    log::info!(
        "initialized data dir {} for node {node_id} of cluster {cluster_id:?}",
        dir.display()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// File-system helpers

/// Atomically replaces `dir/name` with `contents`: after a crash the file
/// holds either its old or its new contents, never a mix.
fn replace_file(
    dir: &Path,
    tmp_name: &str,
    name: &str,
    contents: &[u8],
) -> Result<(), StorageError> {
    let tmp = dir.join(tmp_name);
    let target = dir.join(name);
    let mut file = File::create(&tmp).map_err(io_err(&tmp, "create"))?;
    file.write_all(contents).map_err(io_err(&tmp, "write"))?;
    // The data must be on disk before the rename makes it visible, or a crash
    // could leave `name` pointing at an empty or partial file.
    file.sync_all().map_err(io_err(&tmp, "fsync"))?;
    fs::rename(&tmp, &target).map_err(io_err(&target, "rename into place"))?;
    // The rename is a change to the directory; until the directory is synced
    // a crash can undo it and bring the old contents back.
    sync_dir(dir)
}

fn file_exists(path: &Path) -> Result<bool, StorageError> {
    path.try_exists().map_err(io_err(path, "check for"))
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync directory"))
}

/// Opens (creating if needed) `dir/LOCK` and takes its exclusive lock.
fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(&path, "open"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StorageError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(io_err(&path, "lock")(e)),
    }
}

#[cfg(test)]
mod tests;
