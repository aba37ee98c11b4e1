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
//! This comment is the definition of the on-disk format. The records of one
//! log file are implemented in [`super::log_file`], the sequence of log
//! files in [`super::segment`]. A data dir holds:
//!
//! `meta`, a small text file written when the dir is initialized. It has
//! one `key: value` line each for `format`, `node_id` (the decimal
//! [`NodeId`]), `cluster_id` (any one-line string, written verbatim after
//! the `": "`) and `incarnation` (exactly 16 lowercase hex digits, not all
//! zero: a random id drawn at initialization, which tells this dir from one
//! wiped and initialized again for the same node; see
//! [`LogStore::incarnation`]). It is written last during initialization, so
//! its presence is what marks the dir as initialized. Opening the dir as a
//! different node or cluster is refused, because running a node on another
//! node's log would make it vote and acknowledge on that node's behalf.
//! `format` is `2` for a dir initialized now and `1` for one initialized by
//! an earlier release; both are accepted, and it says how the dir began, not
//! what it holds now: a format-1 dir gets segments as soon as anything is
//! appended.
//!
//! A dir initialized by an earlier release has no `incarnation` line (in
//! either format). The first open that accepts it (right node, right
//! cluster; a refused dir is left untouched) draws one and adds the line
//! after the others, keeping every earlier byte: `meta` is then replaced
//! the way `hard_state` is (below, through `meta.tmp`), and an info line is
//! logged. That is the only time `meta` is ever rewritten; an incarnation
//! once in `meta` never changes.
//!
//! `hard_state`, the codec-encoded [`HardState`] (see [`crate::codec`])
//! followed by a 4-byte big-endian CRC-32 of those encoded bytes. It is never
//! modified in place: a new version is written to `hard_state.tmp`, fsynced,
//! renamed over `hard_state`, and then the directory is fsynced, so at every
//! instant the file holds either the old or the new hard state, whole.
//!
//! `bootstrap`, only once the node has formed a cluster from its peer flags
//! ([`save_bootstrap`](super::LogStore::save_bootstrap)): the codec-encoded
//! [`Configuration`] it formed it with, followed by a 4-byte big-endian
//! CRC-32 of those encoded bytes, written like `hard_state` (through
//! `bootstrap.tmp`), so that later starts use it rather than the flags.
//! The node writes it once; its absence means the node never bootstrapped a
//! cluster.
//!
//! `removed`, only once the node has learned that it was removed from its
//! cluster ([`save_removed`](super::LogStore::save_removed)): the
//! codec-encoded [`Index`] (a u64) of the log entry that removed it,
//! followed by a 4-byte big-endian CRC-32 of those encoded bytes, written
//! like `hard_state` (through `removed.tmp`), so that starting the node
//! again on this dir is refused.
//!
//! `hard_state`, `bootstrap` and `removed` only ever appear whole (renamed
//! into place after an fsync), so one that is too short for its CRC, fails
//! it or does not decode is [`StorageError::Corrupt`], naming the file; it
//! is never taken for a torn write, nor ignored.
//!
//! The log, in segment files, and in a format-1 dir possibly the legacy file
//! `log` before them (both below).
//!
//! `LOCK`, an empty file on which an exclusive advisory lock is held for as
//! long as a [`DiskStore`] lives, so two processes (or two `DiskStore`s in
//! one process) can never write the same dir.
//!
//! `snapshots/`, a directory of snapshot files, managed elsewhere (in
//! `snapshot_store.rs`; the file format is in `snapshot_file.rs`). This
//! module never looks inside it, and its presence does not make a dir
//! without `meta` foreign.
//!
//! Transient files `hard_state.tmp`, `meta.tmp`, `bootstrap.tmp` and
//! `removed.tmp` may be left by a crash; they are ignored (and overwritten by
//! the next write). Any other file is ignored too.
//!
//! # Segments
//!
//! The log is a sequence of segment files, each named `log-` followed by the
//! index of its first entry in 20 decimal digits (`log-00000000000000000001`),
//! so that names sort like indexes. A segment starts with the 8-byte magic
//! header `RNLOG\0\0\x02` (the last byte is the format version). After it
//! come records, back to back. A record is
//!
//! ```text
//! payload length     u32, big-endian, 1 to 64 MiB
//! payload CRC        u32, big-endian, CRC-32 of the payload
//! header CRC         u32, big-endian, CRC-32 of the 8 bytes before it
//! payload            a codec-encoded record:
//!                      Entry(Entry)   (variant 0) one log entry
//!                      Commit(Index)  (variant 1) entries up to here are committed
//! ```
//!
//! The header checks itself, so a damaged length is recognized as damage
//! rather than taken for a record that a crash cut short.
//!
//! The entries of a segment have consecutive indexes starting at the index
//! in its name; the next segment's name is the index after the previous
//! one's last entry, so that the entries of all segments are consecutive.
//! Terms never decrease. Commit records may sit anywhere among the entries;
//! the log's commit index is the highest one, but never more than the last
//! entry's index (a truncation can remove entries after a commit record
//! that once covered them).
//!
//! Appends go to the last segment. Each batch of entries is written with one
//! write, and not synced: the caller batches several appends (and
//! truncations) per [`sync`](super::LogStore::sync) (group commit) and must
//! not acknowledge entries before that sync returns, which fdatasyncs the
//! last segment (and fsyncs the directory if a segment was created or
//! deleted since it last was). Once the last segment has reached the
//! segment size (8 MiB unless [`DiskOptions`] says otherwise), the next batch
//! starts a new segment, written with its magic in the same write. Before
//! that the previous last segment is fdatasynced, and the directory fsynced
//! if its name is not yet durable: so only the last segment ever holds
//! unsynced data, and every earlier one is durable as it is.
//!
//! [`save_commit`](super::LogStore::save_commit) writes a commit record only
//! when the commit index increased, with the next batch of entries or, if
//! none comes, in the next sync. Every new segment repeats the current commit
//! index, so that deleting older segments never takes it back.
//!
//! # The legacy `log` (format 1)
//!
//! Releases before segments kept the whole log in one file, `log`: the
//! magic `RNLOG\0\0\x01`, then records of a 4-byte big-endian payload
//! length, a 4-byte big-endian CRC-32 of those length bytes followed by the
//! payload, and the payload, one codec-encoded [`Entry`]; entries from
//! index 1. Such a file is read as the first segment, by its own rules
//! (below), and never appended to again: the next entries go into segments
//! after it, the first named after its last entry. It is cut by a
//! truncation that reaches into it, and deleted by compaction like any
//! segment once every entry in it is covered.
//!
//! # The empty log
//!
//! An initialized dir always holds at least one log file, so that a log
//! deleted by mistake is reported missing, never taken for an empty one.
//! Initialization creates `log-00000000000000000001` holding just its magic.
//! When the log becomes empty (a reset, or a truncation of every entry), the
//! first file stays, emptied to its magic, as a placeholder. The next append
//! may start at any index: it goes into the placeholder if the placeholder is
//! a segment named by that index, and otherwise starts a segment named by
//! it; the placeholder is then deleted after the next sync has made the new
//! segment's name durable. A file holding no entries that does not continue
//! the log (one before the first file that holds entries, or one not named
//! after the previous file's last entry) is such a placeholder left over by
//! a crash, and recovery deletes it.
//!
//! # Truncation, compaction, reset
//!
//! [`truncate_after`](super::LogStore::truncate_after) cuts the file holding
//! the first dropped entry at that entry's record, after deleting every
//! later segment, newest first. It is durable after the next sync, but
//! before anything is written after the cut, the cut file is fdatasynced
//! (and the directory fsynced if segments were deleted): otherwise a crash
//! could keep the new records but undo the cut, leaving stale records (or
//! zeros, then stale records) after them, a log that refuses to start.
//!
//! [`compact`](super::LogStore::compact) deletes whole files, oldest first,
//! while every entry in them is at or below the compaction point; never the
//! last file, nor the one holding the last entry. It is not made durable: a
//! crash may bring deleted files back, which gives a longer suffix of the
//! log, as safe. (Like the other multi-file steps, this relies on the file
//! system applying deletions from one directory in the order they were made,
//! as journaling file systems do.)
//!
//! [`reset`](super::LogStore::reset) deletes every file but the first,
//! newest first, fsyncs the directory, then empties the first to its magic
//! and fdatasyncs it: durable when it returns. A crash before leaves a
//! prefix of the old log.
//!
//! # Initialization
//!
//! A dir that does not exist, or has no `meta`, is initialized: the first
//! segment (just its header) is written and fsynced with its name, then
//! `hard_state` (default term and vote), then `meta` (with a freshly drawn
//! incarnation), each made durable before the next. A dir without `meta` is
//! only initialized if it holds nothing but what an interrupted
//! initialization leaves (`LOCK`, `meta.tmp`, log files holding at most a
//! header, empty or default `hard_state` and `hard_state.tmp`) and a
//! `snapshots` directory; anything else is refused and left untouched: in
//! particular a log with records, and `bootstrap`, `removed` or their `.tmp`
//! files, which are only written once `meta` exists, so their presence
//! means the dir held a node's state and lost its `meta`. Once `meta`
//! exists, a dir without `hard_state` or without any log file is an error,
//! never a reason to start afresh (`bootstrap` and `removed` may be absent:
//! they are written only when their events happen).
//!
//! # Recovery
//!
//! On open (and on every later [`recover`](super::LogStore::recover)), every
//! log file is fdatasynced before it is read, and the directory fsynced
//! before the store is used: a node killed after a write but before its
//! fsync finds that write in the page cache, and it must be durable before
//! the node acknowledges anything on the strength of it (the same goes for
//! a `hard_state`, `bootstrap` or `removed` renamed into place whose
//! directory fsync never happened).
//!
//! Each file is read record by record, streaming. A crash in the middle of
//! an append can only damage the end of what it was writing: it can cut the
//! file short, or leave the file longer than the data actually written, with
//! zeros in the gap. So for a segment's record at some offset:
//!
//! * fewer than 12 bytes left, or a payload running past the end of the
//!   file: a torn tail;
//! * a header whose CRC does not match: a torn tail if every byte after the
//!   header is zero, corruption otherwise (a length damaged in the middle of
//!   the log is caught here: its header no longer checks out, and real
//!   records follow);
//! * a header that checks out but gives a length of 0 or over 64 MiB, or a
//!   payload that checks out but does not decode: corruption (a writer
//!   wrote exactly that);
//! * a payload whose CRC does not match: a torn tail if nothing but zeros
//!   follows the payload, corruption otherwise.
//!
//! A segment whose magic is a prefix of the magic followed only by zeros
//! (its creation was torn) has a torn tail at offset 0; any other wrong
//! magic is corruption. The legacy `log` keeps format 1's rules: a record
//! that runs past the end of the file is a torn tail; one that is bad
//! (checksum mismatch, undecodable, zero or oversized length, the latter
//! judged from the end of its 8-byte header) is a torn tail if followed by
//! nothing but zeros, corruption otherwise; a wrong magic is corruption.
//!
//! Only the last file holding entries (or an entry-less one after it) may
//! have a torn tail; in any earlier file it is corruption, since that file
//! was synced before a later one was created. Intact records must have
//! consecutive indexes from the index in the file's name (1 for the legacy
//! file) and non-decreasing terms, and the files that hold entries must
//! continue one another without a gap; a violation is corruption too.
//!
//! Corruption is reported as [`StorageError::Corrupt`], naming the file and,
//! where it applies, the offset, without touching any file: dropping what
//! follows could drop entries this node has acknowledged. A torn tail is
//! cut off (or a torn magic written again), the cut is fsynced, and a
//! warning is logged; leftover placeholders are deleted; then the directory
//! is fsynced. The rule errs on the safe side: if a crash lost a block in the
//! middle of one unsynced batch but kept a later one, the node refuses to
//! start rather than guess.

use super::error::{io_err, missing_or_io, StorageError};
use super::log_file::{LEGACY_MAGIC, MAGIC};
use super::log_store::{new_incarnation, LogStore, Recovered};
use super::segment::{create_first, parse_segment_name, sync_dir, SegmentLog, LEGACY_NAME};
use crate::codec::{decode, encode};
use crate::raft::membership::Configuration;
use crate::raft::message::{Entry, HardState, Index, NodeId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The value of the `format` line in `meta` for a dir initialized now.
const META_FORMAT: u32 = 2;
/// The format of dirs initialized before segments; still accepted.
const LEGACY_META_FORMAT: u32 = 1;

const META: &str = "meta";
const META_TMP: &str = "meta.tmp";
const HARD_STATE: &str = "hard_state";
const HARD_STATE_TMP: &str = "hard_state.tmp";
const BOOTSTRAP: &str = "bootstrap";
const BOOTSTRAP_TMP: &str = "bootstrap.tmp";
const REMOVED: &str = "removed";
const REMOVED_TMP: &str = "removed.tmp";
const LOCK: &str = "LOCK";
/// Snapshot files live here; see the module docs.
const SNAPSHOTS: &str = "snapshots";

/// How a [`DiskStore`] lays out its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskOptions {
    /// Once the last segment is at least this long, the next append starts
    /// a new one. Larger segments mean fewer files; smaller ones let
    /// compaction free space sooner.
    pub segment_bytes: u64,
}

impl Default for DiskOptions {
    fn default() -> DiskOptions {
        DiskOptions {
            segment_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The node's log and hard state on disk. Owned by the node's writer thread.
pub struct DiskStore {
    dir: PathBuf,
    options: DiskOptions,
    /// The `format` in `meta`, which says what a missing log was called.
    format: u32,
    /// The `incarnation` in `meta`.
    incarnation: u64,
    log: SegmentLog,
    /// What `open` read, until [`LogStore::recover`] hands it over.
    recovered: Option<Recovered>,
    /// Holds the dir's lock; closing it (when the store drops) releases it.
    _lock: File,
}

impl DiskStore {
    /// Opens the node's data dir, creating and initializing it if it does not
    /// exist or is empty, and reads it back (repairing a torn tail).
    pub fn open(dir: &Path, node_id: NodeId, cluster_id: &str) -> Result<DiskStore, StorageError> {
        DiskStore::open_with(dir, node_id, cluster_id, DiskOptions::default())
    }

    /// [`DiskStore::open`] with other options than the defaults.
    pub fn open_with(
        dir: &Path,
        node_id: NodeId,
        cluster_id: &str,
        options: DiskOptions,
    ) -> Result<DiskStore, StorageError> {
        let opened = prepare_dir(dir, node_id, cluster_id)?;
        let (log, recovered) = read_state(dir, opened.format, options)?;
        let last_term = recovered.entries.last().map_or(0, |e| e.term);
        if recovered.hard_state.current_term < last_term {
            // Every entry's term was once the current term of its writer, so
            // current_term should be at least as high. Not fatal: the node
            // will learn a higher term soon enough, but worth a look.
            log::warn!(
                "{}: current_term {} is lower than the last log entry's term {}",
                dir.display(),
                recovered.hard_state.current_term,
                last_term
            );
        }
        Ok(DiskStore {
            dir: dir.to_path_buf(),
            options,
            format: opened.format,
            incarnation: opened.incarnation,
            log,
            recovered: Some(recovered),
            _lock: opened.lock,
        })
    }

    /// The data dir this store was opened on.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's files, oldest first: what a test that simulates a crash
    /// needs to know to lose exactly the unsynced writes. Every file but the
    /// last is durable as it is (nothing is written to a file once a later
    /// one exists, and a later one is created only after the earlier ones'
    /// contents and names are synced); the last one is durable up to its
    /// length at the last [`sync`](LogStore::sync), and is new since then if
    /// it was not in the list at that sync. Files deleted since the last sync
    /// (by truncation or compaction) may come back in a real crash; leaving
    /// them deleted is one of the outcomes a crash may have too.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.log.paths()
    }
}

/// Reads the hard state, the log, `bootstrap` and `removed`, and makes what
/// was read durable.
fn read_state(
    dir: &Path,
    format: u32,
    options: DiskOptions,
) -> Result<(SegmentLog, Recovered), StorageError> {
    let hard_state = read_hard_state(&dir.join(HARD_STATE))?;
    // Both are absent until the node writes them, so absence is no error.
    let bootstrap = read_checked_if_any(&dir.join(BOOTSTRAP), "a configuration")?;
    let removed = read_checked_if_any(&dir.join(REMOVED), "a log index")?;
    let missing = if format == LEGACY_META_FORMAT {
        LEGACY_NAME
    } else {
        "log-*"
    };
    let loaded = SegmentLog::load(dir, options.segment_bytes, missing)?;
    // The names read must be durable too: a `hard_state` renamed into place
    // or a segment created just before a crash, and the deletions recovery
    // made.
    sync_dir(dir)?;
    Ok((
        loaded.log,
        Recovered {
            hard_state,
            entries: loaded.entries,
            commit_index: loaded.commit_index,
            bootstrap,
            removed,
        },
    ))
}

impl LogStore for DiskStore {
    /// The first call hands over what `open` read; a later one reads the
    /// files again.
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        if let Some(recovered) = self.recovered.take() {
            return Ok(recovered);
        }
        self.log.check_not_poisoned()?;
        let (log, recovered) = read_state(&self.dir, self.format, self.options)?;
        self.log = log;
        Ok(recovered)
    }

    /// Writes `hard_state.tmp`, fsyncs it, renames it over `hard_state` and
    /// fsyncs the directory.
    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        write_hard_state(&self.dir, hard_state)
    }

    /// The whole batch goes out in one write.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.log.append(entries)
    }

    fn truncate_after(&mut self, last_kept: Index) -> Result<(), StorageError> {
        self.log.truncate_after(last_kept)
    }

    fn save_commit(&mut self, commit_index: Index) -> Result<(), StorageError> {
        self.log.save_commit(commit_index)
    }

    fn compact(&mut self, through: Index) -> Result<(), StorageError> {
        self.log.compact(through)
    }

    fn reset(&mut self) -> Result<(), StorageError> {
        self.log.reset()
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.log.sync()
    }

    fn last_index(&self) -> Index {
        self.log.last_index()
    }

    /// Read from `meta` when the store was opened.
    fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Writes `bootstrap.tmp`, fsyncs it, renames it over `bootstrap` and
    /// fsyncs the directory.
    fn save_bootstrap(&mut self, config: &Configuration) -> Result<(), StorageError> {
        write_checked(&self.dir, BOOTSTRAP_TMP, BOOTSTRAP, config)
    }

    /// Writes `removed.tmp`, fsyncs it, renames it over `removed` and fsyncs
    /// the directory.
    fn save_removed(&mut self, index: Index) -> Result<(), StorageError> {
        write_checked(&self.dir, REMOVED_TMP, REMOVED, &index)
    }
}

// ---------------------------------------------------------------------------
// Opening the dir

/// A data dir that is locked and known to belong to this node and cluster.
struct OpenedDir {
    /// Holds the dir's lock.
    lock: File,
    /// The `format` in `meta`.
    format: u32,
    /// The `incarnation` in `meta` (added by the open if it had none).
    incarnation: u64,
}

/// Checks, creates or initializes the data dir and takes its lock; returns
/// the lock and what `meta` says once the dir is known to belong to this
/// node and cluster, after giving the dir an incarnation if an earlier
/// release initialized it without one.
fn prepare_dir(dir: &Path, node_id: NodeId, cluster_id: &str) -> Result<OpenedDir, StorageError> {
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
    // Only now: a dir that is refused (another node's or cluster's) must be
    // left exactly as it was.
    let incarnation = match meta.incarnation {
        Some(incarnation) => incarnation,
        None => add_incarnation(dir, &meta)?,
    };
    Ok(OpenedDir {
        lock,
        format: meta.format,
        incarnation,
    })
}

// ---------------------------------------------------------------------------
// Hard state, bootstrap and removed: each one codec-encoded value followed
// by its CRC-32, replaced atomically.

fn write_hard_state(dir: &Path, hs: &HardState) -> Result<(), StorageError> {
    write_checked(dir, HARD_STATE_TMP, HARD_STATE, hs)
}

/// Atomically replaces `dir/name` with the encoding of `value` followed by
/// the big-endian CRC-32 of that encoding.
fn write_checked<T: Serialize>(
    dir: &Path,
    tmp_name: &str,
    name: &str,
    value: &T,
) -> Result<(), StorageError> {
    let mut bytes = encode(value).map_err(|source| StorageError::Encode {
        path: dir.join(name),
        source,
    })?;
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    replace_file(dir, tmp_name, name, &bytes)
}

/// Reads and checks `hard_state`; its absence is an error (see [`Missing`]).
///
/// [`Missing`]: StorageError::Missing
fn read_hard_state(path: &Path) -> Result<HardState, StorageError> {
    let bytes = fs::read(path).map_err(|e| missing_or_io(path, "read", e))?;
    decode_hard_state(&bytes).map_err(corrupt_file(path))
}

/// Reads and checks a file written by [`write_checked`] holding `what`;
/// `None` if there is no such file. A file that is there but does not check
/// out is [`Corrupt`](StorageError::Corrupt): it was written whole (renamed
/// into place only after an fsync), so damage is damage, not a torn write.
fn read_checked_if_any<T: DeserializeOwned>(
    path: &Path,
    what: &str,
) -> Result<Option<T>, StorageError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "read")(e)),
    };
    decode_checked(&bytes, what)
        .map(Some)
        .map_err(corrupt_file(path))
}

fn decode_hard_state(bytes: &[u8]) -> Result<HardState, String> {
    decode_checked(bytes, "a hard state")
}

/// Checks the trailing CRC-32 of `bytes` and decodes what it covers, one
/// `what` (for the error message).
fn decode_checked<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
    if bytes.len() < 4 {
        return Err(format!("only {} bytes, too short for {what}", bytes.len()));
    }
    let (encoded, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(encoded).to_be_bytes() != crc {
        return Err("checksum mismatch".to_string());
    }
    decode(encoded).map_err(|e| format!("undecodable as {what} ({e})"))
}

/// Turns the reason a whole file is bad into the error naming it.
fn corrupt_file(path: &Path) -> impl FnOnce(String) -> StorageError + '_ {
    move |reason| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: None,
        reason,
    }
}

// ---------------------------------------------------------------------------
// Meta and initialization

struct Meta {
    format: u32,
    node_id: NodeId,
    cluster_id: String,
    /// `None` in a dir initialized by a release before incarnations.
    incarnation: Option<u64>,
    /// The file as read, which [`add_incarnation`] extends.
    text: String,
}

fn read_meta(path: &Path) -> Result<Meta, StorageError> {
    let text = fs::read_to_string(path).map_err(|e| missing_or_io(path, "read", e))?;
    parse_meta(text).map_err(corrupt_file(path))
}

fn parse_meta(text: String) -> Result<Meta, String> {
    let (mut format, mut node_id, mut cluster_id, mut incarnation) = (None, None, None, None);
    for line in text.lines() {
        let (key, value) = line
            .split_once(": ")
            .ok_or_else(|| format!("line {line:?} is not `key: value`"))?;
        match key {
            "format" => format = Some(value),
            "node_id" => node_id = Some(value),
            "cluster_id" => cluster_id = Some(value),
            "incarnation" => incarnation = Some(parse_incarnation(value)?),
            _ => return Err(format!("unknown key {key:?}")),
        }
    }
    let format = format.ok_or("no `format` line")?;
    let format = match format.parse() {
        Ok(f @ (LEGACY_META_FORMAT | META_FORMAT)) => f,
        _ => {
            return Err(format!(
                "format {format:?} is not a supported format \
                 ({LEGACY_META_FORMAT} or {META_FORMAT})"
            ))
        }
    };
    let node_id = node_id.ok_or("no `node_id` line")?;
    let node_id = node_id
        .parse()
        .map_err(|_| format!("node_id {node_id:?} is not a number"))?;
    let cluster_id = cluster_id.ok_or("no `cluster_id` line")?.to_string();
    Ok(Meta {
        format,
        node_id,
        cluster_id,
        incarnation,
        text,
    })
}

/// Exactly as written: 16 lowercase hex digits, not all zero. Anything else
/// was not written by raftnode, and a misread incarnation would make the
/// cluster take this dir for another one.
fn parse_incarnation(value: &str) -> Result<u64, String> {
    let well_formed = value.len() == 16
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match u64::from_str_radix(value, 16) {
        Ok(incarnation) if well_formed && incarnation != 0 => Ok(incarnation),
        _ => Err(format!(
            "incarnation {value:?} is not 16 lowercase hex digits, not all zero"
        )),
    }
}

/// The `meta` line for an incarnation.
fn incarnation_line(incarnation: u64) -> String {
    format!("incarnation: {incarnation:016x}\n")
}

/// Gives a dir initialized by an earlier release its incarnation: `meta`
/// is replaced (atomically, like every file here) by what it held plus an
/// `incarnation` line, so every line the earlier release wrote stays as it
/// was. Returns the new incarnation, durable.
fn add_incarnation(dir: &Path, meta: &Meta) -> Result<u64, StorageError> {
    let incarnation = new_incarnation();
    let mut text = meta.text.clone();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&incarnation_line(incarnation));
    replace_file(dir, META_TMP, META, text.as_bytes())?;
    log::info!(
        "data dir {} was initialized without an incarnation (by an earlier release); \
         gave it incarnation {incarnation:016x}",
        dir.display()
    );
    Ok(incarnation)
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
            // Snapshots are kept apart and not this module's to judge.
            Some(SNAPSHOTS) if path.is_dir() => {}
            Some(name) if name == LEGACY_NAME || parse_segment_name(name).is_some() => {
                // Initialization (by this release, or by one that wrote the
                // legacy `log`) writes a log file's header in one go; a
                // crash can leave any prefix of it. A longer file holds
                // records, and is not looked at further.
                let magic = if name == LEGACY_NAME {
                    LEGACY_MAGIC
                } else {
                    MAGIC
                };
                let len = fs::metadata(&path).map_err(io_err(&path, "stat"))?.len();
                let header_only = len <= magic.len() as u64
                    && fs::read(&path)
                        .map(|bytes| magic.starts_with(&bytes))
                        .map_err(io_err(&path, "read"))?;
                if !header_only {
                    return Err(not_ours(format!(
                        "it has a log ({} with {len} bytes) but no meta",
                        path.display()
                    )));
                }
            }
            // Written only once the dir is initialized, so in a dir without
            // meta they are someone else's (or meta was lost): never start
            // afresh over them.
            Some(BOOTSTRAP) | Some(BOOTSTRAP_TMP) | Some(REMOVED) | Some(REMOVED_TMP) => {
                return Err(not_ours(format!(
                    "it has {}, which only an initialized data dir has, but no meta",
                    path.display()
                )))
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
    // Log files an interrupted initialization left hold at most a header
    // (checked by `check_uninitialized`); the log starts afresh without
    // them, so none can be taken for part of it.
    for dir_entry in fs::read_dir(dir).map_err(io_err(dir, "list"))? {
        let dir_entry = dir_entry.map_err(io_err(dir, "list"))?;
        let name = dir_entry.file_name();
        let name = name.to_str().unwrap_or_default();
        if name == LEGACY_NAME || parse_segment_name(name).is_some() {
            let path = dir_entry.path();
            fs::remove_file(&path).map_err(io_err(&path, "remove"))?;
        }
    }
    // The first segment and its directory entry are durable before meta
    // can be.
    create_first(dir)?;

    write_hard_state(dir, &HardState::default())?;

    let incarnation = new_incarnation();
    let meta = format!(
        "format: {META_FORMAT}\nnode_id: {node_id}\ncluster_id: {cluster_id}\n{}",
        incarnation_line(incarnation)
    );
    replace_file(dir, META_TMP, META, meta.as_bytes())?;
    log::info!(
        "initialized data dir {} for node {node_id} of cluster {cluster_id:?}, \
         incarnation {incarnation:016x}",
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
