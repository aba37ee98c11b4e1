//! One file of the log: its records, and reading it back after a crash.
//!
//! The layout and the recovery rules are defined, with the rest of the data
//! dir, in [`super::disk`]; this module implements them for one file at a
//! time. Two formats exist: a segment (`log-<index>`, format 2), whose
//! record header checks itself, and the legacy `log` of format 1, which is
//! still read but never written. What holds across files (the sequence of
//! indexes, which file may have a torn tail) is [`super::segment`]'s.

use super::error::{io_err, StorageError};
use crate::codec::{decode, encode_into};
use crate::raft::message::{Entry, Index};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// The first bytes of a segment; the last byte is the format version.
pub(super) const MAGIC: &[u8; 8] = b"RNLOG\0\0\x02";
/// The first bytes of the legacy `log` file (format 1).
pub(super) const LEGACY_MAGIC: &[u8; 8] = b"RNLOG\0\0\x01";
/// The largest payload a record may have.
pub(super) const MAX_RECORD_PAYLOAD: usize = 64 * 1024 * 1024;
/// How much of a file is read per system call when scanning it.
const READ_BUFFER: usize = 64 * 1024;

/// The two kinds of log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// `log`, format 1: record = length (4), CRC-32 of length and payload
    /// (4), payload (an [`Entry`]).
    Legacy,
    /// `log-<index>`, format 2: record = length (4), CRC-32 of the payload
    /// (4), CRC-32 of those 8 bytes (4), payload (a [`Record`]).
    Segment,
}

impl Format {
    pub(super) fn magic(self) -> &'static [u8; 8] {
        match self {
            Format::Legacy => LEGACY_MAGIC,
            Format::Segment => MAGIC,
        }
    }

    /// The bytes before a record's payload.
    pub(super) fn header_len(self) -> usize {
        match self {
            Format::Legacy => 8,
            Format::Segment => 12,
        }
    }
}

/// What a segment's record holds. The variants are encoded by position, so
/// new ones go at the end and existing ones never change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(super) enum Record {
    Entry(Entry),
    /// Entries up to here are committed (see `LogStore::save_commit`).
    Commit(Index),
}

/// Encodes exactly as [`Record`] decodes (same variants, same order),
/// borrowing the entry so that appending copies nothing.
#[derive(Serialize)]
enum RecordRef<'a> {
    Entry(&'a Entry),
    Commit(Index),
}

/// Appends the segment record of `entry` to `buf`.
pub(super) fn encode_entry(
    entry: &Entry,
    buf: &mut Vec<u8>,
    path: &Path,
) -> Result<(), StorageError> {
    encode_record(&RecordRef::Entry(entry), entry.index, buf, path)
}

/// Appends a segment record saying entries up to `commit_index` are
/// committed.
pub(super) fn encode_commit(
    commit_index: Index,
    buf: &mut Vec<u8>,
    path: &Path,
) -> Result<(), StorageError> {
    encode_record(&RecordRef::Commit(commit_index), commit_index, buf, path)
}

/// `index` only names the record in a [`StorageError::TooLarge`].
fn encode_record(
    record: &RecordRef<'_>,
    index: Index,
    buf: &mut Vec<u8>,
    path: &Path,
) -> Result<(), StorageError> {
    let start = buf.len();
    let header_len = Format::Segment.header_len();
    buf.extend_from_slice(&[0; 12]);
    if let Err(source) = encode_into(record, buf) {
        buf.truncate(start);
        return Err(StorageError::Encode {
            path: path.to_path_buf(),
            source,
        });
    }
    let len = buf.len() - start - header_len;
    if len > MAX_RECORD_PAYLOAD {
        buf.truncate(start);
        return Err(StorageError::TooLarge {
            path: path.to_path_buf(),
            index,
            len,
            limit: MAX_RECORD_PAYLOAD,
        });
    }
    let payload_crc = crc32fast::hash(&buf[start + header_len..]);
    // Cannot truncate: len <= MAX_RECORD_PAYLOAD < u32::MAX.
    buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    buf[start + 4..start + 8].copy_from_slice(&payload_crc.to_be_bytes());
    let header_crc = crc32fast::hash(&buf[start..start + 8]);
    buf[start + 8..start + 12].copy_from_slice(&header_crc.to_be_bytes());
    Ok(())
}

/// Appends a format-1 record of `entry` to `buf`: what the legacy `log`
/// holds. Only tests write one now, to build old files.
#[cfg(test)]
pub(super) fn encode_legacy_record(entry: &Entry, buf: &mut Vec<u8>) {
    let payload = crate::codec::encode(entry).expect("an entry encodes");
    let len = (payload.len() as u32).to_be_bytes();
    buf.extend_from_slice(&len);
    buf.extend_from_slice(&legacy_crc(&len, &payload).to_be_bytes());
    buf.extend_from_slice(&payload);
}

/// Format 1's checksum covers the length and the payload.
fn legacy_crc(len_bytes: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len_bytes);
    hasher.update(payload);
    hasher.finalize()
}

/// A defective record that a crash explains: the file is to be cut at
/// `offset` (if the file may have a torn tail at all; see `super::segment`).
#[derive(Debug, Clone)]
pub(super) struct Torn {
    /// Where the defective record (or, if below the magic's length, the
    /// file's header) starts.
    pub(super) offset: u64,
    pub(super) reason: String,
    /// The file's length when it was read, to report what a cut drops.
    pub(super) file_len: u64,
}

/// One file as read from disk.
#[derive(Debug)]
pub(super) struct Scan {
    /// The intact entries, in order.
    pub(super) entries: Vec<Entry>,
    /// `offsets[i]` is where the record of `entries[i]` starts.
    pub(super) offsets: Vec<u64>,
    /// The highest commit record (0 if none).
    pub(super) commit: Index,
    /// Just after the last intact record: where the next one goes.
    pub(super) end: u64,
    /// What follows the intact records, if anything does.
    pub(super) torn: Option<Torn>,
}

/// The next record's outcome while scanning.
enum Step {
    Record(Record, u64),
    Torn(String),
    End,
}

/// Reads every record of one file, streaming, applying the recovery rules
/// of its format (see [`super::disk`]). Entries must have consecutive
/// indexes from `first_index` and non-decreasing terms. Damage that no crash
/// can explain is [`StorageError::Corrupt`]; damage that a crash explains is
/// reported in [`Scan::torn`] and left on disk for the caller to judge.
pub(super) fn scan(
    file: &File,
    path: &Path,
    format: Format,
    first_index: Index,
) -> Result<Scan, StorageError> {
    let file_len = file.metadata().map_err(io_err(path, "stat"))?.len();
    let mut handle = file;
    handle
        .seek(SeekFrom::Start(0))
        .map_err(io_err(path, "seek"))?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, handle);
    let mut scan = Scan {
        entries: Vec::new(),
        offsets: Vec::new(),
        commit: 0,
        end: 0,
        torn: None,
    };

    let magic = format.magic();
    let mut header = [0u8; 8];
    let got = read_full(&mut reader, &mut header).map_err(io_err(path, "read"))?;
    if header != *magic {
        // Creating a segment writes its magic and first records in one
        // write; a crash can leave a prefix of it with zeros after. A
        // legacy file is never created any more, so its magic is whole.
        let torn_header = format == Format::Segment
            && header[..got]
                .iter()
                .zip(magic)
                .all(|(&b, &m)| b == m || b == 0)
            && rest_is_zero(&mut reader).map_err(io_err(path, "read"))?;
        if !torn_header {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                offset: None,
                reason: "missing or wrong magic header \
                         (not a raftnode log, or another format version)"
                    .to_string(),
            });
        }
        scan.torn = Some(Torn {
            offset: 0,
            reason: "incomplete file header".to_string(),
            file_len,
        });
        return Ok(scan);
    }

    let mut pos = magic.len() as u64;
    let mut expected = first_index;
    let mut previous_term = None;
    loop {
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.to_path_buf(),
            offset: Some(pos),
            reason,
        };
        let step = match format {
            Format::Segment => next_record(&mut reader, pos, file_len),
            Format::Legacy => next_legacy_record(&mut reader, pos, file_len),
        };
        match step.map_err(|e| match e {
            Defect::Io(e) => read_err_at(path, e),
            Defect::Corrupt(reason) => corrupt(reason),
        })? {
            Step::End => break,
            Step::Torn(reason) => {
                scan.torn = Some(Torn {
                    offset: pos,
                    reason,
                    file_len,
                });
                break;
            }
            Step::Record(Record::Commit(index), next) => {
                scan.commit = scan.commit.max(index);
                pos = next;
            }
            Step::Record(Record::Entry(entry), next) => {
                // An intact record with a wrong index or term was written
                // that way: a bug or tampering, never a crash.
                if entry.index != expected {
                    return Err(corrupt(format!(
                        "entry has index {}, expected {expected}",
                        entry.index
                    )));
                }
                if let Some(previous) = previous_term.filter(|&t| entry.term < t) {
                    return Err(corrupt(format!(
                        "entry {} has term {}, lower than the previous entry's term {previous}",
                        entry.index, entry.term
                    )));
                }
                // The next entry's index, and every "one past the last"
                // the log computes from it, must exist.
                let Some(next_index) = expected.checked_add(1) else {
                    return Err(corrupt(format!(
                        "entry has index {}, the largest possible: no log reaches it",
                        entry.index
                    )));
                };
                expected = next_index;
                previous_term = Some(entry.term);
                scan.offsets.push(pos);
                scan.entries.push(entry);
                pos = next;
            }
        }
    }
    scan.end = pos;
    Ok(scan)
}

fn read_err_at(path: &Path, e: io::Error) -> StorageError {
    io_err(path, "read")(e)
}

/// Why the next record could not be read.
enum Defect {
    Io(io::Error),
    /// Damage no crash explains.
    Corrupt(String),
}

impl From<io::Error> for Defect {
    fn from(e: io::Error) -> Defect {
        Defect::Io(e)
    }
}

const PAST_THE_END: &str = "record runs past the end of the file";

/// Reads a record's `len`-byte payload, which should end at `end`; `None`
/// if the file stops first (a record cut short by a crash).
fn read_payload(
    reader: &mut impl Read,
    len: usize,
    end: u64,
    file_len: u64,
) -> Result<Option<Vec<u8>>, Defect> {
    if end > file_len {
        return Ok(None);
    }
    let mut payload = vec![0; len];
    if read_full(reader, &mut payload)? < len {
        return Ok(None);
    }
    Ok(Some(payload))
}

/// Reads the segment record at `pos` (the reader is there).
fn next_record(reader: &mut impl Read, pos: u64, file_len: u64) -> Result<Step, Defect> {
    if pos == file_len {
        return Ok(Step::End);
    }
    let mut header = [0u8; 12];
    if read_full(reader, &mut header)? < header.len() {
        return Ok(Step::Torn("incomplete record header".to_string()));
    }
    let [l0, l1, l2, l3, p0, p1, p2, p3, h0, h1, h2, h3] = header;
    if crc32fast::hash(&header[..8]) != u32::from_be_bytes([h0, h1, h2, h3]) {
        // The length cannot be trusted, so where this record would end is
        // unknown: only a file that is empty from here on is a torn write.
        return if rest_is_zero(reader)? {
            Ok(Step::Torn("record header checksum mismatch".to_string()))
        } else {
            Err(Defect::Corrupt(
                "record header checksum mismatch, and more data follows \
                 (not a torn write)"
                    .to_string(),
            ))
        };
    }
    let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
    if len == 0 || len > MAX_RECORD_PAYLOAD {
        // The header checks out, so a writer put this length there, and no
        // writer writes one like it.
        return Err(Defect::Corrupt(format!(
            "payload length {len} is not between 1 and {MAX_RECORD_PAYLOAD}"
        )));
    }
    let end = pos + 12 + len as u64;
    let Some(payload) = read_payload(reader, len, end, file_len)? else {
        return Ok(Step::Torn(PAST_THE_END.to_string()));
    };
    if crc32fast::hash(&payload) != u32::from_be_bytes([p0, p1, p2, p3]) {
        return if rest_is_zero(reader)? {
            Ok(Step::Torn("payload checksum mismatch".to_string()))
        } else {
            Err(Defect::Corrupt(
                "payload checksum mismatch, and more data follows (not a torn write)".to_string(),
            ))
        };
    }
    match decode::<Record>(&payload) {
        Ok(record) => Ok(Step::Record(record, end)),
        // Both checksums match: these are the bytes that were written.
        Err(e) => Err(Defect::Corrupt(format!("undecodable record ({e})"))),
    }
}

/// Reads the format-1 record at `pos` (the reader is there), by the rules
/// format 1 always had: a defective record followed by nothing but zeros is
/// a torn write.
fn next_legacy_record(reader: &mut impl Read, pos: u64, file_len: u64) -> Result<Step, Defect> {
    if pos == file_len {
        return Ok(Step::End);
    }
    let mut header = [0u8; 8];
    if read_full(reader, &mut header)? < header.len() {
        return Ok(Step::Torn("incomplete record header".to_string()));
    }
    let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
    let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
    let crc = u32::from_be_bytes([c0, c1, c2, c3]);
    let bad = |reason: String, reader: &mut dyn Read| -> Result<Step, Defect> {
        if rest_is_zero(reader)? {
            Ok(Step::Torn(reason))
        } else {
            Err(Defect::Corrupt(format!(
                "{reason}, and more data follows (not a torn write)"
            )))
        }
    };
    if len == 0 || len > MAX_RECORD_PAYLOAD {
        // No writer produced this length, so where the record ends is
        // unknown: judge it by what follows its header.
        return bad(format!("invalid payload length {len}"), reader);
    }
    // Format 1 cannot tell a damaged length from a record cut short; the
    // self-checking header of format 2 exists for that.
    let end = pos + 8 + len as u64;
    let Some(payload) = read_payload(reader, len, end, file_len)? else {
        return Ok(Step::Torn(PAST_THE_END.to_string()));
    };
    if legacy_crc(&header[..4], &payload) != crc {
        return bad("checksum mismatch".to_string(), reader);
    }
    match decode::<Entry>(&payload) {
        Ok(entry) => Ok(Step::Record(Record::Entry(entry), end)),
        Err(e) => bad(format!("undecodable entry ({e})"), reader),
    }
}

/// Reads the record at `offset` of a file again (to learn an entry's term
/// when truncating to it). It was read intact at recovery or written since,
/// so any defect now is corruption.
pub(super) fn read_record_at(
    file: &File,
    path: &Path,
    format: Format,
    offset: u64,
) -> Result<Record, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: Some(offset),
        reason: format!("re-reading a record: {reason}"),
    };
    let file_len = file.metadata().map_err(io_err(path, "stat"))?.len();
    let mut handle = file;
    handle
        .seek(SeekFrom::Start(offset))
        .map_err(io_err(path, "seek"))?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, handle);
    let step = match format {
        Format::Segment => next_record(&mut reader, offset, file_len),
        Format::Legacy => next_legacy_record(&mut reader, offset, file_len),
    };
    match step {
        Ok(Step::Record(record, _)) => Ok(record),
        Ok(Step::Torn(reason)) => Err(corrupt(reason)),
        Ok(Step::End) => Err(corrupt("the file ends here".to_string())),
        Err(Defect::Corrupt(reason)) => Err(corrupt(reason)),
        Err(Defect::Io(e)) => Err(read_err_at(path, e)),
    }
}

/// Fills as much of `buf` as the reader has; fewer bytes only at its end.
fn read_full(reader: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Whether everything the reader has left is zero bytes, read in fixed-size
/// pieces so that a large remainder is never held in memory.
fn rest_is_zero(reader: &mut (impl Read + ?Sized)) -> io::Result<bool> {
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = read_full(reader, &mut buf)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        if n < buf.len() {
            return Ok(true);
        }
    }
}
