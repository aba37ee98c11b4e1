//! The `log` file: its records and how a log file is read back after a crash.
//!
//! The layout and the recovery rules are defined, with the rest of the data
//! dir, in [`super::disk`]; this module implements them. A record is a 4-byte
//! big-endian payload length, a 4-byte big-endian CRC-32 of those length
//! bytes followed by the payload, then the payload: one codec-encoded
//! [`Entry`].

use super::error::{io_err, StorageError};
use crate::codec::{decode, encode_into};
use crate::raft::message::Entry;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The first bytes of every log file; the last byte is the format version.
pub(super) const LOG_MAGIC: &[u8; 8] = b"RNLOG\0\0\x01";
/// Bytes before each record's payload: length (4) and CRC (4).
pub(super) const RECORD_HEADER: usize = 8;
/// The largest payload a record may have; larger lengths are corruption.
pub(super) const MAX_RECORD_PAYLOAD: usize = 64 * 1024 * 1024;

/// Appends the record for `entry` (header and payload) to `buf`.
pub(super) fn encode_record(
    entry: &Entry,
    buf: &mut Vec<u8>,
    path: &Path,
) -> Result<(), StorageError> {
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
            limit: MAX_RECORD_PAYLOAD,
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
pub(super) enum Defect {
    /// The record runs past the end of the file (or is all zeros): only a
    /// crash mid-append produces that.
    Incomplete(&'static str),
    /// The record is complete but wrong. `end` is where it (or, if its
    /// length is unusable, its header) ends; whether this is a torn write
    /// depends on what follows.
    Bad { reason: String, end: usize },
}

impl Defect {
    pub(super) fn reason(&self) -> String {
        match self {
            Defect::Incomplete(reason) => reason.to_string(),
            Defect::Bad { reason, .. } => reason.clone(),
        }
    }
}

/// Parses the record starting at `buf[pos..]`, returning the entry and the
/// offset just after the record.
pub(super) fn parse_record(buf: &[u8], pos: usize) -> Result<(Entry, usize), Defect> {
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
pub(super) struct RecoveredLog {
    pub(super) entries: Vec<Entry>,
    pub(super) offsets: Vec<u64>,
    pub(super) end: u64,
}

/// An intact record with a wrong index or term was written that way: a bug
/// or tampering, never a crash. Entries have consecutive indexes from 1 and
/// non-decreasing terms.
fn check_sequence(entry: &Entry, previous: Option<&Entry>) -> Result<(), String> {
    let expected = previous.map_or(1, |p| p.index + 1);
    if entry.index != expected {
        return Err(format!(
            "entry has index {}, expected {expected}",
            entry.index
        ));
    }
    match previous {
        Some(previous) if entry.term < previous.term => Err(format!(
            "entry {} has term {}, lower than the previous entry's term {}",
            entry.index, entry.term, previous.term
        )),
        _ => Ok(()),
    }
}

/// Reads every record of the log, applying the recovery rules of the format
/// (see [`super::disk`]). Reads the whole file at once: the entries are
/// returned in memory anyway, and it lets the torn-versus-corrupt check look
/// ahead freely.
pub(super) fn recover_log(log: &mut File, path: &Path) -> Result<RecoveredLog, StorageError> {
    let mut buf = Vec::new();
    log.seek(SeekFrom::Start(0))
        .and_then(|_| log.read_to_end(&mut buf))
        .map_err(io_err(path, "read"))?;
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
                check_sequence(&entry, entries.last()).map_err(corrupt)?;
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
