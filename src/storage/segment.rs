//! The log as a sequence of files: segments named by their first index, and
//! the legacy `log` of format 1 before them.
//!
//! The rules (naming, rotation, what a crash can leave, how recovery judges
//! it) are defined with the rest of the data dir in [`super::disk`]; this
//! module implements them on top of [`super::log_file`], which reads and
//! writes the records of one file.

use super::error::{io_err, StorageError};
use super::log_file::{encode_commit, encode_entry, read_record_at, scan, Format, Record, MAGIC};
use super::log_store::check_continues;
use crate::raft::message::{Entry, Index, Term};
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The name of the legacy log file (format 1).
pub(super) const LEGACY_NAME: &str = "log";
/// Segments are `log-` and their first index in 20 digits, so that names
/// sort like indexes.
const SEGMENT_PREFIX: &str = "log-";
const INDEX_DIGITS: usize = 20;

/// The name of the segment whose first entry is `first_index`.
pub(super) fn segment_name(first_index: Index) -> String {
    format!(
        "{SEGMENT_PREFIX}{first_index:0width$}",
        width = INDEX_DIGITS
    )
}

/// The first index a segment's file name stands for, if it is one.
pub(super) fn parse_segment_name(name: &str) -> Option<Index> {
    let digits = name.strip_prefix(SEGMENT_PREFIX)?;
    if digits.len() != INDEX_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One file of the log, as far as it has been read or written.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    format: Format,
    /// The index of its first entry (or of the one it would hold first): the
    /// index in its name, 1 for the legacy file.
    first_index: Index,
    /// `offsets[i]` is where the record of entry `first_index + i` starts,
    /// so truncating to any index needs no reading.
    offsets: Vec<u64>,
    /// Where its last record ends, which is where the next one goes.
    end: u64,
}

impl Segment {
    /// The index its next entry would have.
    fn next_index(&self) -> Index {
        self.first_index + self.offsets.len() as Index
    }

    /// Whether every entry it holds is at or below `through`.
    fn covered_by(&self, through: Index) -> bool {
        self.next_index() <= through.saturating_add(1)
    }
}

/// The segments of a data dir, open for appending. See [`LogStore`] for
/// what each operation promises; the files are described in
/// [`super::disk`].
///
/// [`LogStore`]: super::LogStore
pub(super) struct SegmentLog {
    dir: PathBuf,
    /// A segment at least this long gets no more appends: the next batch
    /// starts a new one.
    segment_bytes: u64,
    /// Oldest first, never empty: an empty log keeps one segment with no
    /// entries, so that a data dir always has a log file and a deleted log
    /// is noticed rather than taken for an empty one. Between the first
    /// segment that holds entries and the last, names are consecutive:
    /// each one's `first_index` is the previous one's `next_index`.
    segments: Vec<Segment>,
    /// The last segment, open for writing.
    last_file: File,
    /// 0 when the log is empty.
    last_index: Index,
    /// The term of the last entry (0 when the log is empty), to refuse an
    /// append that would make terms decrease and the log unrecoverable.
    last_term: Term,
    /// The highest commit index saved (or recovered).
    commit: Index,
    /// `commit` is yet to be written: with the next write, or by `sync`.
    commit_pending: bool,
    /// The last segment was cut and the cut is not yet durable. It must be
    /// before anything is written after it: otherwise a crash could keep
    /// the new records but undo the cut, leaving stale records (or zeros,
    /// then stale records) after them, which recovery must call corrupt.
    cut_unsynced: bool,
    /// Segments were created or deleted since the directory was last
    /// fsynced.
    dir_unsynced: bool,
    /// Entry-less segments that a new one replaced (the placeholder of an
    /// empty log): deleted once the new one's name is durable, so that the
    /// dir never lacks a log file.
    obsolete: Vec<PathBuf>,
    /// Set when a write, truncation, deletion or sync failed, naming the
    /// file. After that the files' contents are unknown (a failed fsync may
    /// have dropped dirty pages; retrying it can falsely succeed), so the
    /// only safe way on is a restart, whose recovery reads what is really
    /// on disk.
    poisoned: Option<PathBuf>,
}

/// What [`SegmentLog::load`] found.
pub(super) struct LoadedLog {
    pub(super) log: SegmentLog,
    pub(super) entries: Vec<Entry>,
    pub(super) commit_index: Index,
}

/// A log file found in the dir, before reading it.
struct Found {
    path: PathBuf,
    format: Format,
    first_index: Index,
}

/// The log files in `dir`, legacy first, then by index. Anything else in
/// the dir is not the log's business.
fn list(dir: &Path) -> Result<Vec<Found>, StorageError> {
    let mut found = Vec::new();
    for dir_entry in fs::read_dir(dir).map_err(io_err(dir, "list"))? {
        let dir_entry = dir_entry.map_err(io_err(dir, "list"))?;
        let name = dir_entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let (format, first_index) = if name == LEGACY_NAME {
            (Format::Legacy, 1)
        } else if let Some(index) = parse_segment_name(name) {
            (Format::Segment, index)
        } else {
            continue;
        };
        found.push(Found {
            path: dir_entry.path(),
            format,
            first_index,
        });
    }
    found.sort_by_key(|f| (f.format == Format::Segment, f.first_index));
    Ok(found)
}

/// Writes the first segment of a new data dir (no entries) and makes it
/// durable, name included.
pub(super) fn create_first(dir: &Path) -> Result<(), StorageError> {
    let path = dir.join(segment_name(1));
    let mut file = File::create(&path).map_err(io_err(&path, "create"))?;
    file.write_all(MAGIC).map_err(io_err(&path, "write"))?;
    sync_file(&file, &path)?;
    sync_dir(dir)
}

impl SegmentLog {
    /// Reads every log file in `dir`, fsyncing each before trusting it,
    /// and repairs what a crash left (see the recovery rules in
    /// [`super::disk`]); `missing` is what to call the log if there is no
    /// file at all. The caller fsyncs the dir afterwards.
    pub(super) fn load(
        dir: &Path,
        segment_bytes: u64,
        missing: &str,
    ) -> Result<LoadedLog, StorageError> {
        let found = list(dir)?;
        if found.is_empty() {
            return Err(StorageError::Missing {
                path: dir.join(missing),
            });
        }
        let mut scans = Vec::with_capacity(found.len());
        for f in &found {
            let file = open_rw(&f.path)?;
            // What was read may so far be only in the page cache (a node
            // killed before its fsync): make it durable before anything is
            // acknowledged on the strength of it.
            sync_file(&file, &f.path)?;
            scans.push(scan(&file, &f.path, f.format, f.first_index)?);
        }

        // A torn tail is a crash in the middle of the last append, so only
        // the last file that holds entries (or one after it) may have one.
        let last_holder = scans.iter().rposition(|s| !s.entries.is_empty());
        for (i, (f, s)) in found.iter().zip(&scans).enumerate() {
            if let (Some(torn), Some(last)) = (&s.torn, last_holder) {
                if i < last {
                    return Err(StorageError::Corrupt {
                        path: f.path.clone(),
                        offset: Some(torn.offset),
                        reason: format!(
                            "{}; later log files hold entries, so this is not a torn \
                             write at the end of the log",
                            torn.reason
                        ),
                    });
                }
            }
        }

        // Keep the files that hold entries, consecutive, and the entry-less
        // ones that continue them; any other entry-less file is what
        // emptying the log or a crash while replacing a placeholder left.
        let mut kept: Vec<usize> = Vec::new();
        let mut leftovers: Vec<usize> = Vec::new();
        let mut previous: Option<(usize, Index, Term)> = None; // (file, next index, last term)
        for (i, (f, s)) in found.iter().zip(&scans).enumerate() {
            let Some(first) = s.entries.first() else {
                match previous {
                    Some((_, next, _)) if f.first_index == next => kept.push(i),
                    _ => leftovers.push(i),
                }
                continue;
            };
            if let Some((p, next, last_term)) = previous {
                if first.index != next {
                    return Err(StorageError::Corrupt {
                        path: f.path.clone(),
                        offset: None,
                        reason: format!(
                            "it starts at entry {}, but {} ends at entry {}: \
                             log entries are missing",
                            first.index,
                            found[p].path.display(),
                            next - 1
                        ),
                    });
                }
                if first.term < last_term {
                    return Err(StorageError::Corrupt {
                        path: f.path.clone(),
                        offset: Some(s.offsets[0]),
                        reason: format!(
                            "entry {} has term {}, lower than the previous entry's term \
                             {last_term} in {}",
                            first.index,
                            first.term,
                            found[p].path.display()
                        ),
                    });
                }
            }
            let last = s.entries.last().unwrap_or(first);
            previous = Some((i, last.index + 1, last.term));
            kept.push(i);
        }
        if kept.is_empty() {
            // The log is empty: its newest file stays as its placeholder.
            kept.extend(leftovers.pop());
        }

        for &i in leftovers.iter().rev() {
            let path = &found[i].path;
            log::warn!(
                "{}: removing it: it holds no entries and does not continue the log \
                 (left over from emptying the log)",
                path.display()
            );
            fs::remove_file(path).map_err(io_err(path, "remove"))?;
        }

        let mut segments = Vec::with_capacity(kept.len());
        let mut entries = Vec::new();
        let mut commit = 0;
        for &i in &kept {
            let (f, s) = (&found[i], &mut scans[i]);
            let mut end = s.end;
            if let Some(torn) = &s.torn {
                end = repair(&f.path, torn.offset, torn.file_len, &torn.reason)?;
            }
            commit = commit.max(s.commit);
            entries.append(&mut s.entries);
            segments.push(Segment {
                path: f.path.clone(),
                format: f.format,
                first_index: f.first_index,
                offsets: std::mem::take(&mut s.offsets),
                end,
            });
        }
        let last_index = entries.last().map_or(0, |e| e.index);
        let last_term = entries.last().map_or(0, |e| e.term);
        // A commit record is only ever written after the entries it covers,
        // so it cannot outlast them through a crash; but a restarted node
        // must never be told to apply an entry it does not have, whatever
        // the files say.
        let commit_index = commit.min(last_index);
        let last_path = match segments.last() {
            Some(last) => last.path.clone(),
            None => unreachable!("kept holds at least one file"),
        };
        let last_file = open_rw(&last_path)?;
        Ok(LoadedLog {
            log: SegmentLog {
                dir: dir.to_path_buf(),
                segment_bytes,
                segments,
                last_file,
                last_index,
                last_term,
                commit: commit_index,
                commit_pending: false,
                cut_unsynced: false,
                dir_unsynced: false,
                obsolete: Vec::new(),
                poisoned: None,
            },
            entries,
            commit_index,
        })
    }

    /// The files of the log, oldest first. Every one but the last is
    /// durable as it is: nothing is written to a file once a later one
    /// exists, and a later one is created only after the earlier ones'
    /// contents and names are synced.
    pub(super) fn paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    pub(super) fn last_index(&self) -> Index {
        self.last_index
    }

    fn last(&self) -> &Segment {
        match self.segments.last() {
            Some(last) => last,
            None => unreachable!("the log always has a file"),
        }
    }

    fn last_mut(&mut self) -> &mut Segment {
        match self.segments.last_mut() {
            Some(last) => last,
            None => unreachable!("the log always has a file"),
        }
    }

    pub(super) fn check_not_poisoned(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some(path) => Err(StorageError::Poisoned { path: path.clone() }),
            None => Ok(()),
        }
    }

    /// Marks the log unusable after a failed change to `path` (see
    /// `poisoned`) and returns the error.
    fn poison(&mut self, path: &Path, error: StorageError) -> StorageError {
        self.poisoned = Some(path.to_path_buf());
        error
    }

    /// Runs a change to the files; if it fails, the log is poisoned.
    fn changing<T>(
        &mut self,
        path: &Path,
        change: impl FnOnce(&mut Self) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        change(self).map_err(|e| self.poison(path, e))
    }

    /// Makes the last file (at `path`) durable, and the directory if a file
    /// was created or deleted since it was last synced.
    fn sync_last_and_dir(&mut self, path: &Path) -> Result<(), StorageError> {
        self.changing(path, |log| {
            sync_file(&log.last_file, path)?;
            if log.dir_unsynced {
                sync_dir(&log.dir)?;
                log.dir_unsynced = false;
            }
            Ok(())
        })
    }

    /// Makes a cut durable before anything is written after it (see
    /// `cut_unsynced`).
    fn settle_cut(&mut self) -> Result<(), StorageError> {
        if !self.cut_unsynced {
            return Ok(());
        }
        let path = self.last().path.clone();
        self.sync_last_and_dir(&path)?;
        self.cut_unsynced = false;
        Ok(())
    }

    /// Where records go next: the last segment, or a new one starting at
    /// `first_index`. `None` means the last segment.
    fn next_segment(&self, first_index: Index) -> Option<Index> {
        let last = self.last();
        if self.last_index == 0 {
            // An empty log: its placeholder takes the records if its name
            // fits, else a segment named by the first of them replaces it.
            return (last.format != Format::Segment || last.first_index != first_index)
                .then_some(first_index);
        }
        (last.format == Format::Legacy || last.end >= self.segment_bytes).then_some(first_index)
    }

    /// Writes `buf` (records meant to start at `base`, the end of the last
    /// segment, or after the magic of a new segment `new`) in one write.
    fn write(&mut self, new: Option<Index>, buf: &[u8]) -> Result<(), StorageError> {
        self.settle_cut()?;
        let Some(first_index) = new else {
            let (path, end) = (self.last().path.clone(), self.last().end);
            return self.changing(&path, |log| {
                note("write", &path);
                (&log.last_file)
                    .seek(SeekFrom::Start(end))
                    .and_then(|_| (&log.last_file).write_all(buf))
                    .map_err(io_err(&path, "write"))
            });
        };
        let path = self.dir.join(segment_name(first_index));
        let old = self.last().path.clone();
        if self.last_index > 0 {
            // Only the last file may have a torn tail, and only the last
            // one's name may be lost: both must hold for the current last
            // one before a later one can exist.
            self.sync_last_and_dir(&old)?;
        }
        let file = self.changing(&path, |_| {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(io_err(&path, "create"))?;
            note("create", &path);
            note("write", &path);
            file.write_all(buf).map_err(io_err(&path, "write"))?;
            Ok(file)
        })?;
        // A file of this name replaced earlier is this one now.
        self.obsolete.retain(|p| *p != path);
        if self.last_index == 0 {
            // The empty log's placeholder holds nothing: it goes once the
            // new file's name is durable.
            self.obsolete
                .extend(self.segments.drain(..).map(|s| s.path));
        }
        self.dir_unsynced = true;
        self.segments.push(Segment {
            path,
            format: Format::Segment,
            first_index,
            offsets: Vec::new(),
            end: MAGIC.len() as u64,
        });
        self.last_file = file;
        Ok(())
    }

    /// The whole batch (and a pending commit record) goes out in one write.
    pub(super) fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let previous = (self.last_index > 0).then_some((self.last_index, self.last_term));
        let new = self.next_segment(first.index);
        let path = match new {
            Some(index) => self.dir.join(segment_name(index)),
            None => self.last().path.clone(),
        };
        check_continues(previous, entries, &path)?;
        // Encode everything before writing anything, so a refused batch
        // leaves the log untouched.
        let mut buf = Vec::new();
        let base = match new {
            Some(_) => {
                buf.extend_from_slice(MAGIC);
                // Every segment repeats the commit index, so that compacting
                // the older ones never takes it back.
                self.commit_pending |= self.commit > 0;
                0
            }
            None => self.last().end,
        };
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in entries {
            offsets.push(base + buf.len() as u64);
            encode_entry(entry, &mut buf, &path)?;
        }
        if self.commit_pending {
            encode_commit(self.commit, &mut buf, &path)?;
        }
        self.write(new, &buf)?;
        let segment = self.last_mut();
        segment.offsets.extend(offsets);
        segment.end = base + buf.len() as u64;
        self.commit_pending = false;
        self.last_index = last.index;
        self.last_term = last.term;
        Ok(())
    }

    /// Remembers the commit index; it is written with the next append, or
    /// by the next `sync`.
    pub(super) fn save_commit(&mut self, commit_index: Index) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        if commit_index > self.commit {
            self.commit = commit_index;
            self.commit_pending = true;
        }
        Ok(())
    }

    pub(super) fn truncate_after(&mut self, last_kept: Index) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        if last_kept >= self.last_index {
            return Ok(());
        }
        let first_dropped = last_kept + 1;
        let (new_last_index, new_last_term) = match self.first_index() {
            Some(first) if last_kept >= first => (last_kept, self.term_of(last_kept)?),
            _ => (0, 0),
        };
        // The segment holding the first dropped entry is cut there; if the
        // log starts after it (everything goes), the first segment is
        // emptied to stay as the placeholder.
        let (keep, cut_at) = match self
            .segments
            .iter()
            .position(|s| s.first_index <= first_dropped && first_dropped < s.next_index())
        {
            Some(k) => {
                let s = &self.segments[k];
                (k, s.offsets[(first_dropped - s.first_index) as usize])
            }
            None => (0, MAGIC.len() as u64),
        };
        self.cut_segments(keep, cut_at)?;
        self.cut_unsynced = true;
        self.last_index = new_last_index;
        self.last_term = new_last_term;
        if self.commit > 0 {
            // The cut may have taken the newest commit record with it.
            self.commit = self.commit.min(last_kept);
            self.commit_pending = true;
        }
        Ok(())
    }

    /// The index of the first entry, if the log has any.
    fn first_index(&self) -> Option<Index> {
        self.segments
            .iter()
            .find(|s| !s.offsets.is_empty())
            .map(|s| s.first_index)
    }

    /// Deletes the segments after `keep`, newest first so that a crash
    /// leaves a prefix of the log, and makes segment `keep` the one written.
    fn drop_segments_after(&mut self, keep: usize) -> Result<(), StorageError> {
        if self.segments.len() <= keep + 1 {
            return Ok(());
        }
        while self.segments.len() > keep + 1 {
            let path = self.last().path.clone();
            self.remove_changing(&path)?;
            self.segments.pop();
        }
        let kept = self.last().path.clone();
        self.last_file = self.changing(&kept, |_| open_rw(&kept))?;
        Ok(())
    }

    /// Deletes a file as part of a change to the log: a failure poisons the
    /// store, and the directory needs an fsync.
    fn remove_changing(&mut self, path: &Path) -> Result<(), StorageError> {
        self.changing(path, |_| remove(path))?;
        self.dir_unsynced = true;
        Ok(())
    }

    /// Deletes the segments after `keep` (newest first, so a crash leaves
    /// a prefix of the log) and cuts segment `keep` at `cut_at`.
    fn cut_segments(&mut self, keep: usize, cut_at: u64) -> Result<(), StorageError> {
        self.drop_segments_after(keep)?;
        let path = self.last().path.clone();
        self.changing(&path, |log| {
            note("truncate", &path);
            log.last_file
                .set_len(cut_at)
                .map_err(io_err(&path, "truncate"))
        })?;
        let segment = self.last_mut();
        let kept = segment
            .offsets
            .iter()
            .take_while(|&&offset| offset < cut_at)
            .count();
        segment.offsets.truncate(kept);
        segment.end = cut_at;
        Ok(())
    }

    /// The term of entry `index` (which the log holds), read back from its
    /// segment.
    fn term_of(&self, index: Index) -> Result<Term, StorageError> {
        let Some(s) = self
            .segments
            .iter()
            .find(|s| s.first_index <= index && index < s.next_index())
        else {
            return Err(StorageError::Corrupt {
                path: self.last().path.clone(),
                offset: None,
                reason: format!("no segment holds entry {index}, which the log should hold"),
            });
        };
        let offset = s.offsets[(index - s.first_index) as usize];
        let file = open_rw(&s.path)?;
        match read_record_at(&file, &s.path, s.format, offset)? {
            Record::Entry(entry) if entry.index == index => Ok(entry.term),
            other => Err(StorageError::Corrupt {
                path: s.path.clone(),
                offset: Some(offset),
                reason: format!("expected entry {index} there, found {other:?}"),
            }),
        }
    }

    /// Deletes whole segments, oldest first, while every entry they hold is
    /// at or below `through`; never the last one, nor the one holding the
    /// last entry, so the log's end stays known. Not made durable: a crash
    /// may bring some back, which leaves a longer suffix of the log, just as
    /// safe.
    pub(super) fn compact(&mut self, through: Index) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        let through = through.min(self.last_index.saturating_sub(1));
        while self.segments.len() > 1 && self.segments[0].covered_by(through) {
            let path = self.segments[0].path.clone();
            // A failed deletion changes nothing: the file is still whole.
            remove(&path)?;
            self.segments.remove(0);
        }
        Ok(())
    }

    /// Drops every entry, durably: deletes all segments but the first,
    /// newest first, fsyncs the dir, then empties the first (which stays as
    /// the empty log's placeholder) and fsyncs it. A crash on the way
    /// leaves a prefix of the old log.
    pub(super) fn reset(&mut self) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        for path in std::mem::take(&mut self.obsolete) {
            self.remove_changing(&path)?;
        }
        let first = self.segments[0].path.clone();
        self.drop_segments_after(0)?;
        let dir = self.dir.clone();
        self.changing(&dir, |log| {
            if log.dir_unsynced {
                sync_dir(&log.dir)?;
            }
            Ok(())
        })?;
        self.dir_unsynced = false;
        self.changing(&first, |log| {
            note("truncate", &first);
            log.last_file
                .set_len(MAGIC.len() as u64)
                .map_err(io_err(&first, "truncate"))?;
            sync_file(&log.last_file, &first)
        })?;
        let segment = self.last_mut();
        segment.offsets.clear();
        segment.end = MAGIC.len() as u64;
        self.last_index = 0;
        self.last_term = 0;
        self.commit = 0;
        self.commit_pending = false;
        self.cut_unsynced = false;
        Ok(())
    }

    /// fdatasync of the last segment: it also flushes the file size, which
    /// is all the metadata an append or a cut changes that matters for
    /// reading the data back. The dir is fsynced only if a segment was
    /// created or deleted since it last was.
    pub(super) fn sync(&mut self) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        if self.commit_pending && self.last_index > 0 {
            let mut buf = Vec::new();
            let new = self.next_segment(self.last_index + 1);
            let (path, base) = match new {
                Some(index) => {
                    buf.extend_from_slice(MAGIC);
                    (self.dir.join(segment_name(index)), 0)
                }
                None => (self.last().path.clone(), self.last().end),
            };
            encode_commit(self.commit, &mut buf, &path)?;
            self.write(new, &buf)?;
            self.last_mut().end = base + buf.len() as u64;
            self.commit_pending = false;
        }
        let path = self.last().path.clone();
        self.changing(&path, |log| sync_file(&log.last_file, &path))?;
        self.cut_unsynced = false;
        if self.dir_unsynced {
            let dir = self.dir.clone();
            self.changing(&dir, |log| sync_dir(&log.dir))?;
            self.dir_unsynced = false;
        }
        // The files that replaced these are durable now.
        for path in std::mem::take(&mut self.obsolete) {
            remove(&path)?;
        }
        Ok(())
    }
}

/// Cuts a file's torn tail at `offset` (or, if its header is what is torn,
/// writes the header again), makes that durable and says so. Returns where
/// the next record goes.
fn repair(path: &Path, offset: u64, file_len: u64, reason: &str) -> Result<u64, StorageError> {
    let mut file = open_rw(path)?;
    let end = if offset < MAGIC.len() as u64 {
        file.set_len(0).map_err(io_err(path, "truncate"))?;
        file.write_all(MAGIC).map_err(io_err(path, "write"))?;
        MAGIC.len() as u64
    } else {
        file.set_len(offset).map_err(io_err(path, "truncate"))?;
        offset
    };
    sync_file(&file, path)?;
    // A crash interrupted the last append, which was never synced and so
    // never acknowledged. Dropping it is safe, and necessary, or the next
    // append would land after the garbage.
    log::warn!(
        "{}: dropping torn write at offset {offset} ({reason}): {} bytes removed",
        path.display(),
        file_len.saturating_sub(offset)
    );
    Ok(end)
}

fn open_rw(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err(path, "open"))
}

/// fdatasync: the data and the file's size.
pub(super) fn sync_file(file: &File, path: &Path) -> Result<(), StorageError> {
    note("fsync", path);
    file.sync_data().map_err(io_err(path, "fsync"))
}

/// Makes the creations, renames and deletions of names in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    note("fsync dir", dir);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync directory"))
}

/// Records a change to the files, for tests that check what was made
/// durable before what. Compiled away outside tests.
/// Deletes a file (noted for the tests' trace of file operations).
fn remove(path: &Path) -> Result<(), StorageError> {
    note("remove", path);
    fs::remove_file(path).map_err(io_err(path, "remove"))
}

#[cfg(not(test))]
fn note(_what: &str, _path: &Path) {}

#[cfg(test)]
fn note(what: &str, path: &Path) {
    trace::EVENTS.with(|events| {
        events
            .borrow_mut()
            .push(format!("{what} {}", path.display()))
    });
}

#[cfg(test)]
pub(super) mod trace {
    use std::cell::RefCell;

    thread_local! {
        pub(super) static EVENTS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    /// The changes this thread made since the last call, oldest first:
    /// `create`, `remove`, `truncate`, `fsync` and `fsync dir`, each
    /// followed by the path.
    pub(crate) fn take() -> Vec<String> {
        EVENTS.with(|events| std::mem::take(&mut *events.borrow_mut()))
    }
}
