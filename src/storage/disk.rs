//! Stable storage for one node: the Raft log and the hard state (Figure 2,
//! "Persistent state on all servers"), kept in the node's data dir.
//!
//! Raft is only safe if a node never forgets what it has promised: a vote
//! (`voted_for`), the term it has seen (`current_term`), and every entry it
//! has acknowledged to a leader. This module makes those durable and, after a
//! crash, gives them back exactly, or refuses to start. It never silently
//! starts from an empty or shortened log, except for dropping a torn tail
//! that was never synced (and so never acknowledged).
//!
//! # The data dir
//!
//! This comment is the definition of the on-disk format. A data dir holds
//! four files.
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
//! caller batches several appends (and truncations) per [`Storage::sync`]
//! (group commit) and must not acknowledge entries before that sync returns.
//!
//! `LOCK` is an empty file on which an exclusive advisory lock is held for
//! as long as a [`Storage`] lives, so two processes (or two `Storage`s in one
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

use crate::codec::{decode, encode, encode_into, CodecError};
use crate::raft::message::{Entry, HardState, Index, NodeId, Term};
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The first bytes of every log file; the last byte is the format version.
const LOG_MAGIC: &[u8; 8] = b"RNLOG\0\0\x01";
/// Bytes before each record's payload: length (4) and CRC (4).
const RECORD_HEADER: usize = 8;
/// The largest payload a record may have; larger lengths are corruption.
const MAX_RECORD_PAYLOAD: usize = 64 * 1024 * 1024;
/// The value of the `format` line in `meta`.
const META_FORMAT: u32 = 1;

const META: &str = "meta";
const META_TMP: &str = "meta.tmp";
const HARD_STATE: &str = "hard_state";
const HARD_STATE_TMP: &str = "hard_state.tmp";
const LOG: &str = "log";
const LOCK: &str = "LOCK";

/// The node's log and hard state on disk. Owned by the node's writer thread.
pub struct Storage {
    dir: PathBuf,
    log_path: PathBuf,
    log: File,
    /// `offsets[i - 1]` is the byte offset of the record of entry `i`, so
    /// truncating to any index needs no reading.
    offsets: Vec<u64>,
    /// The length of the log file, which is where the next record goes.
    end: u64,
    /// How much of the log file the last sync made durable.
    synced_end: u64,
    /// The term of the last entry (0 when the log is empty), to refuse an
    /// append that would make terms decrease and the log unrecoverable.
    last_term: Term,
    /// Set when a write, truncation or sync of the log failed. After that the
    /// file's contents are unknown (a failed fsync may have dropped dirty
    /// pages; retrying it can falsely succeed), so the only safe way on is a
    /// restart, whose recovery reads what is really on disk.
    poisoned: bool,
    /// Holds the dir's lock; closing it (when `Storage` drops) releases it.
    _lock: File,
}

/// What was on disk when the data dir was opened.
#[derive(Debug)]
pub struct Recovered {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
}

/// Why the data dir could not be opened, read or written. Every variant
/// names the file or dir concerned.
#[derive(Debug)]
pub enum StorageError {
    /// An operating-system call failed (including a full disk).
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// A file's contents are not what this module writes.
    Corrupt {
        path: PathBuf,
        offset: Option<u64>,
        reason: String,
    },
    /// `meta` says the dir is initialized but one of its files is gone.
    Missing { path: PathBuf },
    /// The dir was initialized for another node.
    WrongNode {
        path: PathBuf,
        expected: NodeId,
        found: NodeId,
    },
    /// The dir was initialized for another cluster.
    WrongCluster {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// Another `Storage`, in this process or another, has the dir open.
    Locked { path: PathBuf },
    /// The dir has no `meta` but holds data raftnode did not put there (or
    /// a log), so initializing it could destroy something.
    NotADataDir { path: PathBuf, reason: String },
    /// An append does not continue the log: its entry `found` would follow
    /// entry `expected - 1`.
    Gap {
        path: PathBuf,
        expected: Index,
        found: Index,
    },
    /// An append would put an entry of a lower term after a higher one.
    TermRegression {
        path: PathBuf,
        index: Index,
        term: Term,
        previous_term: Term,
    },
    /// An entry encodes to more than the 64 MiB a record may hold.
    TooLarge {
        path: PathBuf,
        index: Index,
        len: usize,
    },
    /// A value could not be encoded for writing.
    Encode { path: PathBuf, source: CodecError },
    /// The cluster id cannot be stored in `meta` (it must be one line).
    InvalidClusterId { path: PathBuf, cluster_id: String },
    /// An earlier write or sync of the log failed; see [`Storage`].
    Poisoned { path: PathBuf },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use StorageError::*;
        match self {
            Io { path, op, source } => write!(f, "cannot {op} {}: {source}", path.display()),
            Corrupt {
                path,
                offset: Some(offset),
                reason,
            } => write!(
                f,
                "corrupt record in {} at offset {offset}: {reason}",
                path.display()
            ),
            Corrupt {
                path,
                offset: None,
                reason,
            } => write!(f, "corrupt {}: {reason}", path.display()),
            Missing { path } => write!(
                f,
                "{} is missing although the data dir is initialized; \
                 refusing to start without it (restore it or wipe the whole dir)",
                path.display()
            ),
            WrongNode {
                path,
                expected,
                found,
            } => write!(
                f,
                "data dir {} belongs to node {found}, not node {expected}",
                path.display()
            ),
            WrongCluster {
                path,
                expected,
                found,
            } => write!(
                f,
                "data dir {} belongs to cluster {found:?}, not cluster {expected:?}",
                path.display()
            ),
            Locked { path } => write!(
                f,
                "data dir {} is already in use by another raftnode",
                path.display()
            ),
            NotADataDir { path, reason } => write!(
                f,
                "{} is not a raftnode data dir: {reason}; refusing to initialize it",
                path.display()
            ),
            Gap {
                path,
                expected,
                found,
            } => write!(
                f,
                "cannot append entry {found} to {}: the next entry must be {expected}",
                path.display()
            ),
            TermRegression {
                path,
                index,
                term,
                previous_term,
            } => write!(
                f,
                "cannot append entry {index} of term {term} to {}: \
                 it would follow an entry of term {previous_term}",
                path.display()
            ),
            TooLarge { path, index, len } => write!(
                f,
                "cannot append entry {index} to {}: it encodes to {len} bytes, \
                 more than the {MAX_RECORD_PAYLOAD} a record may hold",
                path.display()
            ),
            Encode { path, source } => {
                write!(f, "cannot encode a value for {}: {source}", path.display())
            }
            InvalidClusterId { path, cluster_id } => write!(
                f,
                "cannot use cluster id {cluster_id:?} for data dir {}: \
                 it must be non-empty and one line",
                path.display()
            ),
            Poisoned { path } => write!(
                f,
                "{} is in an unknown state after an earlier write or sync failed; \
                 restart the node to recover it",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            StorageError::Encode { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand for wrapping an `io::Error` with the path and operation.
fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

impl Storage {
    /// Opens the node's data dir, creating and initializing it if it does not
    /// exist or is empty.
    pub fn open(
        dir: &Path,
        node_id: NodeId,
        cluster_id: &str,
    ) -> Result<(Storage, Recovered), StorageError> {
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

        let storage = Storage {
            dir: dir.to_path_buf(),
            log_path,
            log,
            offsets: recovered_log.offsets,
            end: recovered_log.end,
            synced_end: recovered_log.end,
            last_term,
            poisoned: false,
            _lock: lock,
        };
        let recovered = Recovered {
            hard_state,
            entries: recovered_log.entries,
        };
        Ok((storage, recovered))
    }

    /// Durably replaces term+vote: write `hard_state.tmp`, fsync it, rename
    /// over `hard_state`, fsync the directory.
    pub fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        write_hard_state(&self.dir, hs)
    }

    /// Drops every entry with index > `last_kept`. Not synced by itself.
    pub fn truncate_after(&mut self, last_kept: Index) -> Result<(), StorageError> {
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
            self.poisoned = true;
            return Err(io_err(&self.log_path, "truncate")(e));
        }
        self.offsets.truncate(last_kept as usize);
        self.end = new_end;
        self.synced_end = self.synced_end.min(new_end);
        self.last_term = new_last_term;
        Ok(())
    }

    /// Appends entries, which must continue the log (the first index is
    /// `last_index() + 1`, indexes consecutive, terms non-decreasing). Not
    /// synced by itself. The whole batch goes out in one write.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        // Validate and encode everything before writing anything, so a
        // refused batch leaves the log untouched.
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        let mut last_term = self.last_term;
        for (expected, entry) in (self.last_index() + 1..).zip(entries) {
            if entry.index != expected {
                return Err(StorageError::Gap {
                    path: self.log_path.clone(),
                    expected,
                    found: entry.index,
                });
            }
            if entry.term < last_term {
                return Err(StorageError::TermRegression {
                    path: self.log_path.clone(),
                    index: entry.index,
                    term: entry.term,
                    previous_term: last_term,
                });
            }
            offsets.push(self.end + buf.len() as u64);
            encode_record(entry, &mut buf, &self.log_path)?;
            last_term = entry.term;
        }
        if buf.is_empty() {
            return Ok(());
        }

        let written = self
            .log
            .seek(SeekFrom::Start(self.end))
            .and_then(|_| self.log.write_all(&buf));
        if let Err(e) = written {
            // Part of the batch may be in the file; recovery will cut it off.
            self.poisoned = true;
            return Err(io_err(&self.log_path, "write")(e));
        }
        self.offsets.extend(offsets);
        self.end += buf.len() as u64;
        self.last_term = last_term;
        Ok(())
    }

    /// Makes every truncate and append since the last sync durable. fdatasync
    /// suffices: it also flushes the file size, which is all the metadata a
    /// truncation or append changes that matters for reading the data back.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        if let Err(e) = self.log.sync_data() {
            self.poisoned = true;
            return Err(io_err(&self.log_path, "fsync")(e));
        }
        self.synced_end = self.end;
        Ok(())
    }

    /// For fault-injection tests: closes the storage as a power failure
    /// would, losing every log write since the last [`Storage::sync`]. (A
    /// truncation that was not synced yet is kept; a real crash may keep or
    /// undo it, and either is safe.)
    pub fn simulate_power_loss(self) {
        if self.synced_end < self.end {
            let _ = self.log.set_len(self.synced_end);
        }
    }

    /// The index of the last entry in the log, 0 if it is empty.
    pub fn last_index(&self) -> Index {
        self.offsets.len() as Index
    }

    /// The data dir this storage was opened on.
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

// ---------------------------------------------------------------------------
// Log records

/// Appends the record for `entry` (header and payload) to `buf`.
fn encode_record(entry: &Entry, buf: &mut Vec<u8>, path: &Path) -> Result<(), StorageError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; RECORD_HEADER]);
    encode_into(entry, buf).map_err(|source| StorageError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    let len = buf.len() - start - RECORD_HEADER;
    if len > MAX_RECORD_PAYLOAD {
        buf.truncate(start);
        return Err(StorageError::TooLarge {
            path: path.to_path_buf(),
            index: entry.index,
            len,
        });
    }
    // Cannot truncate: len <= MAX_RECORD_PAYLOAD < u32::MAX.
    let len_bytes = (len as u32).to_be_bytes();
    buf[start..start + 4].copy_from_slice(&len_bytes);
    let crc = record_crc(&len_bytes, &buf[start + RECORD_HEADER..]);
    buf[start + 4..start + RECORD_HEADER].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// The checksum covers the length too, so a damaged length is caught rather
/// than silently framing the wrong bytes as a payload.
fn record_crc(len_bytes: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len_bytes);
    hasher.update(payload);
    hasher.finalize()
}

/// What is wrong with the record at some offset.
#[derive(Debug)]
enum Defect {
    /// The record runs past the end of the file (or is all zeros): only a
    /// crash mid-append produces that.
    Incomplete(&'static str),
    /// The record is complete but wrong. `end` is where it (or, if its
    /// length is unusable, its header) ends; whether this is a torn write
    /// depends on what follows.
    Bad { reason: String, end: usize },
}

impl Defect {
    fn reason(&self) -> String {
        match self {
            Defect::Incomplete(reason) => reason.to_string(),
            Defect::Bad { reason, .. } => reason.clone(),
        }
    }
}

/// Parses the record starting at `buf[pos..]`, returning the entry and the
/// offset just after the record.
fn parse_record(buf: &[u8], pos: usize) -> Result<(Entry, usize), Defect> {
    let rest = &buf[pos..];
    if is_all_zero(rest) {
        return Err(Defect::Incomplete("only zero bytes"));
    }
    if rest.len() < RECORD_HEADER {
        return Err(Defect::Incomplete("incomplete record header"));
    }
    let len_bytes = &rest[..4];
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
    let header_end = pos + RECORD_HEADER;
    if len == 0 {
        return Err(Defect::Bad {
            reason: "zero payload length".to_string(),
            end: header_end,
        });
    }
    if len > MAX_RECORD_PAYLOAD {
        // No writer ever produced this length, so it is damage, not a record
        // cut short; where the record "ends" is unknowable, so judge it by
        // what follows its header.
        return Err(Defect::Bad {
            reason: format!("payload length {len} exceeds the {MAX_RECORD_PAYLOAD}-byte limit"),
            end: header_end,
        });
    }
    if rest.len() < RECORD_HEADER + len {
        return Err(Defect::Incomplete("incomplete record payload"));
    }
    let payload = &rest[RECORD_HEADER..RECORD_HEADER + len];
    let end = header_end + len;
    if record_crc(len_bytes, payload) != crc {
        return Err(Defect::Bad {
            reason: "checksum mismatch".to_string(),
            end,
        });
    }
    match decode::<Entry>(payload) {
        Ok(entry) => Ok((entry, end)),
        Err(e) => Err(Defect::Bad {
            reason: format!("undecodable entry ({e})"),
            end,
        }),
    }
}

fn is_all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// The log as found on disk (after dropping any torn tail).
struct RecoveredLog {
    entries: Vec<Entry>,
    offsets: Vec<u64>,
    end: u64,
}

/// Reads every record of the log, applying the recovery rules in the module
/// doc. Reads the whole file at once: the entries are returned in memory
/// anyway, and it lets the torn-versus-corrupt check look ahead freely.
fn recover_log(log: &mut File, path: &Path) -> Result<RecoveredLog, StorageError> {
    let mut buf = Vec::new();
    log.read_to_end(&mut buf).map_err(io_err(path, "read"))?;
    if buf.len() < LOG_MAGIC.len() || &buf[..LOG_MAGIC.len()] != LOG_MAGIC {
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            offset: None,
            reason: "missing or wrong magic header (not a raftnode log, or another format version)"
                .to_string(),
        });
    }

    let mut entries: Vec<Entry> = Vec::new();
    let mut offsets = Vec::new();
    let mut pos = LOG_MAGIC.len();
    while pos < buf.len() {
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.to_path_buf(),
            offset: Some(pos as u64),
            reason,
        };
        let torn_reason = match parse_record(&buf, pos) {
            Ok((entry, next)) => {
                // The record is intact, so a wrong index or term was written
                // that way: a bug or tampering, never a crash.
                let expected = offsets.len() as Index + 1;
                if entry.index != expected {
                    return Err(corrupt(format!(
                        "entry has index {}, expected {expected}",
                        entry.index
                    )));
                }
                if let Some(previous) = entries.last() {
                    if entry.term < previous.term {
                        return Err(corrupt(format!(
                            "entry {} has term {}, lower than the previous entry's term {}",
                            entry.index, entry.term, previous.term
                        )));
                    }
                }
                offsets.push(pos as u64);
                entries.push(entry);
                pos = next;
                continue;
            }
            Err(Defect::Incomplete(reason)) => reason.to_string(),
            Err(Defect::Bad { reason, end }) => {
                if end < buf.len() && !is_all_zero(&buf[end..]) {
                    return Err(corrupt(format!(
                        "{reason}; refusing to start (the record is followed by more data, \
                         so this is not a torn write)"
                    )));
                }
                reason
            }
        };
        // A torn tail: the crash interrupted the last append, which was
        // never synced and so never acknowledged. Dropping it is safe, and
        // necessary, or the next append would land after the garbage.
        let dropped = buf.len() - pos;
        log::warn!(
            "{}: dropping torn write at offset {pos} ({torn_reason}): {dropped} bytes removed; \
             the {} entries before it are intact",
            path.display(),
            entries.len()
        );
        log.set_len(pos as u64).map_err(io_err(path, "truncate"))?;
        log.sync_all().map_err(io_err(path, "fsync"))?;
        break;
    }
    Ok(RecoveredLog {
        entries,
        offsets,
        end: pos as u64,
    })
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

/// A file the initialized dir must have is absent: that is [`Missing`], not
/// a plain I/O error, so nobody mistakes it for something transient.
///
/// [`Missing`]: StorageError::Missing
fn missing_or_io(path: &Path, op: &'static str, e: io::Error) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound {
        StorageError::Missing {
            path: path.to_path_buf(),
        }
    } else {
        io_err(path, op)(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::Payload;
    use tempfile::tempdir;

    const CLUSTER: &str = "test";

    fn entry(index: Index, term: Term) -> Entry {
        Entry {
            index,
            term,
            payload: Payload::Command(format!("command {index}").into_bytes()),
        }
    }

    fn entries(range: std::ops::RangeInclusive<Index>, term: Term) -> Vec<Entry> {
        range.map(|i| entry(i, term)).collect()
    }

    fn open(dir: &Path) -> (Storage, Recovered) {
        Storage::open(dir, 1, CLUSTER).unwrap()
    }

    /// Writes `n` entries of term 1 and returns the record offsets and the
    /// log path, with the storage closed.
    fn log_with(dir: &Path, n: Index) -> (Vec<u64>, PathBuf) {
        let (mut s, _) = open(dir);
        s.append(&entries(1..=n, 1)).unwrap();
        s.sync().unwrap();
        (s.offsets.clone(), s.log_path.clone())
    }

    fn file_len(path: &Path) -> u64 {
        fs::metadata(path).unwrap().len()
    }

    fn set_len(path: &Path, len: u64) {
        OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len)
            .unwrap();
    }

    fn flip_byte(path: &Path, offset: u64) {
        let mut bytes = fs::read(path).unwrap();
        bytes[offset as usize] ^= 0xff;
        fs::write(path, bytes).unwrap();
    }

    /// Opens a log whose tail was damaged after entry `kept`, and checks it
    /// was repaired to exactly entries 1..=kept, on disk too.
    fn assert_repaired(dir: &Path, kept: Index, kept_end: u64) {
        let (mut s, rec) = open(dir);
        assert_eq!(rec.entries, entries(1..=kept, 1));
        assert_eq!(s.last_index(), kept);
        assert_eq!(file_len(&dir.join(LOG)), kept_end);
        // The repaired log takes new entries and keeps them.
        s.append(&[entry(kept + 1, 2)]).unwrap();
        s.sync().unwrap();
        drop(s);
        let (_, rec) = open(dir);
        assert_eq!(rec.entries.len() as Index, kept + 1);
        assert_eq!(rec.entries.last(), Some(&entry(kept + 1, 2)));
    }

    #[test]
    fn fresh_open_gives_default_hard_state_and_empty_log() {
        let tmp = tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let (s, rec) = open(&dir);
        assert_eq!(rec.hard_state, HardState::default());
        assert!(rec.entries.is_empty());
        assert_eq!(s.last_index(), 0);
        assert_eq!(s.dir(), dir);
        assert_eq!(fs::read(dir.join(LOG)).unwrap(), LOG_MAGIC);
        let meta = fs::read_to_string(dir.join(META)).unwrap();
        assert_eq!(meta, "format: 1\nnode_id: 1\ncluster_id: test\n");
        assert!(!dir.join(META_TMP).exists());
        assert!(!dir.join(HARD_STATE_TMP).exists());
    }

    #[test]
    fn empty_existing_dir_is_initialized() {
        let tmp = tempdir().unwrap();
        let (_, rec) = open(tmp.path());
        assert!(rec.entries.is_empty());
        assert!(tmp.path().join(META).exists());
    }

    #[test]
    fn append_sync_reopen_round_trip() {
        let tmp = tempdir().unwrap();
        let (mut s, _) = open(tmp.path());
        let mut written = entries(1..=3, 1);
        written.push(Entry {
            index: 4,
            term: 2,
            payload: Payload::Noop,
        });
        s.append(&written[..2]).unwrap();
        s.append(&written[2..]).unwrap();
        s.append(&[]).unwrap();
        s.sync().unwrap();
        assert_eq!(s.last_index(), 4);
        drop(s);
        let (s, rec) = open(tmp.path());
        assert_eq!(rec.entries, written);
        assert_eq!(s.last_index(), 4);
    }

    #[test]
    fn hard_state_round_trip() {
        let tmp = tempdir().unwrap();
        let (mut s, _) = open(tmp.path());
        let hs = HardState {
            current_term: 7,
            voted_for: Some(3),
        };
        s.save_hard_state(&hs).unwrap();
        let later = HardState {
            current_term: 8,
            voted_for: None,
        };
        s.save_hard_state(&later).unwrap();
        assert!(!tmp.path().join(HARD_STATE_TMP).exists());
        drop(s);
        let (_, rec) = open(tmp.path());
        assert_eq!(rec.hard_state, later);
    }

    #[test]
    fn corrupt_hard_state_is_an_error() {
        let tmp = tempdir().unwrap();
        let (mut s, _) = open(tmp.path());
        s.save_hard_state(&HardState {
            current_term: 5,
            voted_for: Some(2),
        })
        .unwrap();
        drop(s);
        let path = tmp.path().join(HARD_STATE);
        flip_byte(&path, 0);
        let err = Storage::open(tmp.path(), 1, CLUSTER).err().unwrap();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn truncate_after_then_append_then_reopen_shows_new_suffix() {
        let tmp = tempdir().unwrap();
        let (mut s, _) = open(tmp.path());
        s.append(&entries(1..=5, 1)).unwrap();
        s.truncate_after(2).unwrap();
        assert_eq!(s.last_index(), 2);
        let suffix = entries(3..=4, 2);
        s.append(&suffix).unwrap();
        s.sync().unwrap();
        drop(s);
        let (_, rec) = open(tmp.path());
        let mut expected = entries(1..=2, 1);
        expected.extend(suffix);
        assert_eq!(rec.entries, expected);
    }

    #[test]
    fn truncate_after_edge_cases() {
        let tmp = tempdir().unwrap();
        let (mut s, _) = open(tmp.path());
        s.append(&entries(1..=3, 2)).unwrap();
        // Keeping everything (or more) changes nothing.
        s.truncate_after(3).unwrap();
        s.truncate_after(10).unwrap();
        assert_eq!(s.last_index(), 3);
        // After truncating to entry 2 (term 2), a term-1 entry may not follow.
        s.truncate_after(2).unwrap();
        assert!(matches!(
            s.append(&[entry(3, 1)]),
            Err(StorageError::TermRegression { .. })
        ));
        // Truncating everything leaves just the header and accepts any term.
        s.truncate_after(0).unwrap();
        assert_eq!(s.last_index(), 0);
        assert_eq!(file_len(&tmp.path().join(LOG)), LOG_MAGIC.len() as u64);
        s.append(&[entry(1, 1)]).unwrap();
        s.sync().unwrap();
        drop(s);
        let (_, rec) = open(tmp.path());
        assert_eq!(rec.entries, vec![entry(1, 1)]);
    }

    #[test]
    fn torn_tail_cut_mid_header_is_repaired() {
        let tmp = tempdir().unwrap();
        let (offsets, log) = log_with(tmp.path(), 5);
        set_len(&log, offsets[4] + 3);
        assert_repaired(tmp.path(), 4, offsets[4]);
    }

    #[test]
    fn torn_tail_cut_mid_payload_is_repaired() {
        let tmp = tempdir().unwrap();
        let (offsets, log) = log_with(tmp.path(), 5);
        set_len(&log, offsets[4] + RECORD_HEADER as u64 + 2);
        assert_repaired(tmp.path(), 4, offsets[4]);
    }

    #[test]
    fn torn_tail_of_zeros_is_repaired() {
        let tmp = tempdir().unwrap();
        let (_, log) = log_with(tmp.path(), 5);
        let end = file_len(&log);
        set_len(&log, end + 4096);
        assert_repaired(tmp.path(), 5, end);
    }

    #[test]
    fn torn_tail_of_zeroed_last_record_is_repaired() {
        // The file size reached disk but the last record's data did not.
        let tmp = tempdir().unwrap();
        let (offsets, log) = log_with(tmp.path(), 5);
        let end = file_len(&log);
        set_len(&log, offsets[4]);
        set_len(&log, end);
        assert_repaired(tmp.path(), 4, offsets[4]);
    }

    #[test]
    fn torn_tail_flipped_byte_in_last_record_is_repaired() {
        let tmp = tempdir().unwrap();
        let (offsets, log) = log_with(tmp.path(), 5);
        flip_byte(&log, file_len(&log) - 1);
        assert_repaired(tmp.path(), 4, offsets[4]);
    }

    #[test]
    fn bad_last_record_followed_by_zeros_is_repaired() {
        let tmp = tempdir().unwrap();
        let (offsets, log) = log_with(tmp.path(), 5);
        flip_byte(&log, offsets[4] + RECORD_HEADER as u64);
        set_len(&log, file_len(&log) + 100);
        assert_repaired(tmp.path(), 4, offsets[4]);
    }

    #[test]
    fn flipped_byte_in_middle_record_is_corruption() {
        let tmp = tempdir().unwrap();
        let (offsets, log) = log_with(tmp.path(), 5);
        flip_byte(&log, offsets[2] + RECORD_HEADER as u64 + 1);
        let before = fs::read(&log).unwrap();
        let err = Storage::open(tmp.path(), 1, CLUSTER).err().unwrap();
        let StorageError::Corrupt { offset, .. } = &err else {
            panic!("expected Corrupt, got {err}");
        };
        assert_eq!(*offset, Some(offsets[2]));
        let msg = err.to_string();
        assert!(msg.contains(&log.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("offset {}", offsets[2])), "{msg}");
        assert!(msg.contains("checksum mismatch"), "{msg}");
        assert_eq!(
            fs::read(&log).unwrap(),
            before,
            "the file must be left alone"
        );
    }

    #[test]
    fn oversized_length_in_middle_record_is_corruption() {
        // A damaged length that points past the end of the file must not be
        // taken for a torn tail when real records follow it.
        let tmp = tempdir().unwrap();
        let (offsets, log) = log_with(tmp.path(), 5);
        flip_byte(&log, offsets[1]);
        let before = fs::read(&log).unwrap();
        let err = Storage::open(tmp.path(), 1, CLUSTER).err().unwrap();
        assert!(
            matches!(err, StorageError::Corrupt { offset: Some(o), .. } if o == offsets[1]),
            "{err}"
        );
        assert_eq!(fs::read(&log).unwrap(), before);
    }

    #[test]
    fn out_of_order_index_on_disk_is_corruption() {
        let tmp = tempdir().unwrap();
        drop(open(tmp.path()));
        let log = tmp.path().join(LOG);
        let mut bytes = LOG_MAGIC.to_vec();
        encode_record(&entry(1, 1), &mut bytes, &log).unwrap();
        let second = bytes.len() as u64;
        encode_record(&entry(3, 1), &mut bytes, &log).unwrap();
        fs::write(&log, bytes).unwrap();
        let err = Storage::open(tmp.path(), 1, CLUSTER).err().unwrap();
        assert!(
            matches!(err, StorageError::Corrupt { offset: Some(o), .. } if o == second),
            "{err}"
        );
    }

    #[test]
    fn decreasing_term_on_disk_is_corruption() {
        let tmp = tempdir().unwrap();
        drop(open(tmp.path()));
        let log = tmp.path().join(LOG);
        let mut bytes = LOG_MAGIC.to_vec();
        encode_record(&entry(1, 2), &mut bytes, &log).unwrap();
        encode_record(&entry(2, 1), &mut bytes, &log).unwrap();
        fs::write(&log, bytes).unwrap();
        let err = Storage::open(tmp.path(), 1, CLUSTER).err().unwrap();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn wrong_magic_is_corruption() {
        let tmp = tempdir().unwrap();
        drop(open(tmp.path()));
        let log = tmp.path().join(LOG);
        flip_byte(&log, 0);
        let err = Storage::open(tmp.path(), 1, CLUSTER).err().unwrap();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(&log.display().to_string()));
    }

    #[test]
    fn wrong_node_id_is_refused() {
        let tmp = tempdir().unwrap();
        drop(Storage::open(tmp.path(), 2, CLUSTER).unwrap());
        let err = Storage::open(tmp.path(), 3, CLUSTER).err().unwrap();
        assert!(matches!(err, StorageError::WrongNode { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "data dir {} belongs to node 2, not node 3",
                tmp.path().display()
            )
        );
    }

    #[test]
    fn wrong_cluster_is_refused() {
        let tmp = tempdir().unwrap();
        drop(Storage::open(tmp.path(), 1, "prod").unwrap());
        let err = Storage::open(tmp.path(), 1, "staging").err().unwrap();
        assert!(matches!(err, StorageError::WrongCluster { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("prod") && msg.contains("staging"), "{msg}");
        assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
    }

    #[test]
    fn multi_line_cluster_id_is_refused() {
        let tmp = tempdir().unwrap();
        let err = Storage::open(tmp.path(), 1, "a\nnode_id: 9").err().unwrap();
        assert!(
            matches!(err, StorageError::InvalidClusterId { .. }),
            "{err}"
        );
        assert!(!tmp.path().join(META).exists());
    }

    #[test]
    fn second_open_is_locked_until_first_is_dropped() {
        let tmp = tempdir().unwrap();
        let (first, _) = open(tmp.path());
        let err = Storage::open(tmp.path(), 1, CLUSTER).err().unwrap();
        assert!(matches!(err, StorageError::Locked { .. }), "{err}");
        assert!(err.to_string().contains(&tmp.path().display().to_string()));
        drop(first);
        assert!(Storage::open(tmp.path(), 1, CLUSTER).is_ok());
    }

    #[test]
    fn missing_log_or_hard_state_is_an_error_never_an_empty_log() {
        for victim in [LOG, HARD_STATE] {
            let tmp = tempdir().unwrap();
            log_with(tmp.path(), 3);
            fs::remove_file(tmp.path().join(victim)).unwrap();
            let err = Storage::open(tmp.path(), 1, CLUSTER).err().unwrap();
            assert!(matches!(err, StorageError::Missing { .. }), "{err}");
            assert!(err.to_string().contains(victim), "{err}");
            assert!(!tmp.path().join(victim).exists(), "must not be recreated");
        }
    }

    #[test]
    fn unrelated_file_without_meta_is_refused() {
        let tmp = tempdir().unwrap();
        fs::write(tmp.path().join("photos.zip"), b"precious").unwrap();
        let err = Storage::open(tmp.path(), 1, CLUSTER).err().unwrap();
        assert!(matches!(err, StorageError::NotADataDir { .. }), "{err}");
        assert!(err.to_string().contains("photos.zip"), "{err}");
        assert!(!tmp.path().join(META).exists());
        assert!(!tmp.path().join(LOG).exists());
        assert_eq!(
            fs::read(tmp.path().join("photos.zip")).unwrap(),
            b"precious"
        );
    }

    #[test]
    fn log_without_meta_is_refused() {
        let tmp = tempdir().unwrap();
        let (_, log) = log_with(tmp.path(), 2);
        fs::remove_file(tmp.path().join(META)).unwrap();
        let before = fs::read(&log).unwrap();
        let err = Storage::open(tmp.path(), 1, CLUSTER).err().unwrap();
        assert!(matches!(err, StorageError::NotADataDir { .. }), "{err}");
        assert!(err.to_string().contains("has a log"), "{err}");
        assert_eq!(fs::read(&log).unwrap(), before);
    }

    #[test]
    fn voted_hard_state_without_meta_is_refused() {
        let tmp = tempdir().unwrap();
        let (mut s, _) = open(tmp.path());
        s.save_hard_state(&HardState {
            current_term: 4,
            voted_for: Some(1),
        })
        .unwrap();
        drop(s);
        fs::remove_file(tmp.path().join(META)).unwrap();
        let err = Storage::open(tmp.path(), 1, CLUSTER).err().unwrap();
        assert!(matches!(err, StorageError::NotADataDir { .. }), "{err}");
    }

    #[test]
    fn leftovers_of_interrupted_initialization_are_reused() {
        let tmp = tempdir().unwrap();
        let dir = tmp.path();
        // A crash during initialization: part of the log header written,
        // a default hard state in place, meta not yet renamed.
        fs::write(dir.join(LOCK), b"").unwrap();
        fs::write(dir.join(LOG), &LOG_MAGIC[..3]).unwrap();
        write_hard_state(dir, &HardState::default()).unwrap();
        fs::write(dir.join(HARD_STATE_TMP), b"").unwrap();
        fs::write(dir.join(META_TMP), b"format: 1\nnode_i").unwrap();
        let (mut s, rec) = open(dir);
        assert!(rec.entries.is_empty());
        assert_eq!(rec.hard_state, HardState::default());
        assert_eq!(fs::read(dir.join(LOG)).unwrap(), LOG_MAGIC);
        s.append(&[entry(1, 1)]).unwrap();
        s.sync().unwrap();
    }

    #[test]
    fn append_with_gap_is_an_error() {
        let tmp = tempdir().unwrap();
        let (mut s, _) = open(tmp.path());
        s.append(&entries(1..=2, 1)).unwrap();
        let err = s.append(&[entry(4, 1)]).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::Gap {
                    expected: 3,
                    found: 4,
                    ..
                }
            ),
            "{err}"
        );
        // A gap inside a batch is refused too, and nothing of it is written.
        let err = s.append(&[entry(3, 1), entry(5, 1)]).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::Gap {
                    expected: 4,
                    found: 5,
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            s.append(&[entry(3, 0)]),
            Err(StorageError::TermRegression { .. })
        ));
        assert_eq!(s.last_index(), 2);
        // The storage is still usable after refusing.
        s.append(&[entry(3, 1)]).unwrap();
        s.sync().unwrap();
        drop(s);
        let (_, rec) = open(tmp.path());
        assert_eq!(rec.entries, entries(1..=3, 1));
    }

    #[test]
    fn ten_thousand_entries_survive_reopen() {
        let tmp = tempdir().unwrap();
        let (mut s, _) = open(tmp.path());
        let all: Vec<Entry> = (1..=10_000).map(|i| entry(i, 1 + i / 1000)).collect();
        for batch in all.chunks(97) {
            s.append(batch).unwrap();
            s.sync().unwrap();
        }
        s.truncate_after(9_990).unwrap();
        s.append(&all[9_990..]).unwrap();
        s.sync().unwrap();
        drop(s);
        let (s, rec) = open(tmp.path());
        assert_eq!(s.last_index(), 10_000);
        assert_eq!(rec.entries, all);
    }
}
