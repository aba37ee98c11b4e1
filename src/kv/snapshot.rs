//! The key-value store written out and read back: the payload of a snapshot
//! file (§7 of the Raft paper), which checksums it as a whole (see
//! `storage::snapshot_file`).
//!
//! [`KvSnapshot`] holds the keys and the sessions [frozen](super::map) at
//! one index, and streams them out on whatever thread writes the file; the
//! store goes on applying entries meanwhile. [`read`] streams a payload back
//! into an empty store.
//!
//! # The format, version 3
//!
//! ```text
//! "RNKVSNAP"                8 bytes, the magic
//! version                   u32, big-endian: 3 (1 and 2 are still read)
//! record*                   each: a u32 big-endian length, then that many
//!                           bytes of a codec-encoded Record
//! ```
//!
//! The records, in this order (a `Record`'s variant index is its first
//! encoded byte, so variants are only ever added at the end):
//!
//! * `Pairs` — keys with their values, at most [`BATCH_PAIRS`] pairs or
//!   about [`BATCH_BYTES`] of them per record, so that neither side ever
//!   holds more than a batch;
//! * `Big { key, len }`, then `Part`s — a value longer than [`PART_BYTES`]:
//!   its key and length, then its bytes in parts of at most [`PART_BYTES`].
//!   Values grow without bound (APPEND), records do not;
//! * `Session` — one client session each: client id, last sequence number,
//!   the index of its last use, the outcome remembered for a retry (encoded
//!   as an [`Outcome`] is in a reply). That is all exactly-once needs; the
//!   expiry order is rebuilt from the indexes, and the time to live is
//!   configuration, not state;
//! * `Tombstones` (version 2) — expired sessions (see [`super::session`]):
//!   client id and the index of the session's last use, at most
//!   [`BATCH_PAIRS`] per record;
//! * `Deadlines` (version 3) — keys with a time to live and their
//!   deadlines in Unix milliseconds (see [`super::expiry`]), at most
//!   [`BATCH_PAIRS`] or about [`BATCH_BYTES`] per record; each key must be
//!   one of the keys above;
//! * `EndWithClock { keys, sessions, tombstones, deadlines, clock, crc }`
//!   (version 3), `EndWithTombstones { keys, sessions, tombstones, crc }`
//!   (version 2), or `End { keys, sessions, crc }` (version 1) — the
//!   counts, the store's clock (version 3), and the CRC32 of every byte
//!   before this record (magic and version included); nothing comes after
//!   it. A payload that stops short of it, or disagrees with it, is
//!   refused.
//!
//! Version 2 is version 3 without deadlines or a clock: it is read as a
//! store whose keys never expire and whose clock is 0, which is what it
//! was. Version 1 is version 2 without tombstones and with the older end
//! record: it is read as a store whose sessions never expired. Each
//! version's own records are refused in the others.
//!
//! Keys come in the order of [`Frozen::iter`](super::map::Frozen::iter) and
//! sessions likewise: a function of the content alone, so two replicas in
//! the same state write the same bytes. A reader relies on no order.
//!
//! A reader refuses a record longer than [`MAX_RECORD`] before reading it,
//! and reads a record into memory only as its bytes arrive; every decode is
//! bounded by the codec. A key appearing twice, a part with no big value
//! open, a key after the sessions, a session after the tombstones, a client
//! with both a session and a tombstone: all are refusals.
//!
//! The snapshot file has its own checksum; the payload carries one too so
//! that it stands on its own wherever it is streamed (a CRC32 costs little
//! next to encoding). Restoring a payload damaged in a value's bytes then
//! fails like any other damage, rather than restoring a wrong value.

use super::command::Outcome;
use super::expiry::Expiries;
use super::map::{Frozen, ShardedMap};
use super::session::{Session, Sessions};
use crate::codec::{self, CodecError};
use crate::node::{RestoreError, StateSnapshot};
use crate::raft::message::Index;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read, Write};
use std::marker::PhantomData;

const MAGIC: &[u8; 8] = b"RNKVSNAP";
/// The version written.
const VERSION: u32 = 3;
/// The first version, without tombstones: still read.
const VERSION_1: u32 = 1;
/// The second, without deadlines or a clock: still read.
const VERSION_2: u32 = 2;

/// The most pairs in one `Pairs` record.
pub const BATCH_PAIRS: usize = 1000;
/// A `Pairs` record is closed once its keys and values reach this many bytes.
pub const BATCH_BYTES: usize = 64 * 1024;
/// Values longer than this are written as a `Big` record and `Part`s of at
/// most this many bytes.
pub const PART_BYTES: usize = 64 * 1024;
/// The longest record a reader accepts: what the codec may decode. Only a
/// key near the size of a whole command, or a session remembering a huge
/// value, comes near it.
pub const MAX_RECORD: usize = codec::DECODE_LIMIT;

/// One record of the payload; see the module doc. Writing borrows from the
/// frozen store, reading owns.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Record<'a> {
    /// Keys and their values.
    Pairs(Vec<(Bytes<'a>, Bytes<'a>)>),
    /// A key whose value, `len` bytes, follows in `Part`s.
    Big {
        key: Bytes<'a>,
        len: u64,
    },
    Part(Bytes<'a>),
    Session(SessionRecord<'a>),
    /// The counts, and the CRC32 of every byte before this record
    /// (version 1).
    End {
        keys: u64,
        sessions: u64,
        crc: u32,
    },
    /// Expired sessions: (client, index of last use) (version 2).
    Tombstones(Vec<(u64, Index)>),
    /// The counts, and the CRC32 of every byte before this record
    /// (version 2).
    EndWithTombstones {
        keys: u64,
        sessions: u64,
        tombstones: u64,
        crc: u32,
    },
    /// Keys and their deadlines (version 3).
    Deadlines(Vec<(Bytes<'a>, u64)>),
    /// The counts, the store's clock, and the CRC32 of every byte before
    /// this record (version 3).
    EndWithClock {
        keys: u64,
        sessions: u64,
        tombstones: u64,
        deadlines: u64,
        clock: u64,
        crc: u32,
    },
}

impl Record<'_> {
    /// The CRC an end record of either version carries.
    fn end_crc(&self) -> Option<u32> {
        match self {
            Record::End { crc, .. }
            | Record::EndWithTombstones { crc, .. }
            | Record::EndWithClock { crc, .. } => Some(*crc),
            _ => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct SessionRecord<'a> {
    client: u64,
    last_seq: u64,
    last_index: Index,
    outcome: Cow<'a, Outcome>,
}

/// A byte string, encoded as its length and its bytes in one piece: serde
/// would otherwise take a `[u8]` for a sequence, encoded and decoded one
/// element at a time.
#[derive(Debug, PartialEq, Eq)]
struct Bytes<'a>(Cow<'a, [u8]>);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Bytes<'a>, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor(PhantomData))
    }
}

struct BytesVisitor<'a>(PhantomData<&'a ()>);

impl<'a> Visitor<'_> for BytesVisitor<'a> {
    type Value = Bytes<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Bytes<'a>, E> {
        Ok(Bytes(Cow::Owned(bytes)))
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Bytes<'a>, E> {
        Ok(Bytes(Cow::Owned(bytes.to_vec())))
    }
}

fn borrowed(bytes: &[u8]) -> Bytes<'_> {
    Bytes(Cow::Borrowed(bytes))
}

/// The store's state at one index, to be written out while the store goes
/// on: [`StateSnapshot::write_to`] writes the format above.
pub struct KvSnapshot {
    keys: Frozen<Vec<u8>, Vec<u8>>,
    sessions: Frozen<u64, Session>,
    tombstones: Frozen<u64, Index>,
    deadlines: Frozen<Vec<u8>, u64>,
    clock: u64,
}

impl KvSnapshot {
    /// The store's keys and sessions, and no tombstones.
    pub fn new(keys: Frozen<Vec<u8>, Vec<u8>>, sessions: Frozen<u64, Session>) -> KvSnapshot {
        KvSnapshot {
            keys,
            sessions,
            tombstones: ShardedMap::new(1).freeze(),
            deadlines: ShardedMap::new(1).freeze(),
            clock: 0,
        }
    }

    /// The same, with the keys' deadlines and the store's clock.
    pub fn with_expiries(self, deadlines: Frozen<Vec<u8>, u64>, clock: u64) -> KvSnapshot {
        KvSnapshot {
            deadlines,
            clock,
            ..self
        }
    }

    /// The deadlines, in batches like the keys'.
    fn write_deadlines(&self, writer: &mut RecordWriter<'_>) -> io::Result<()> {
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for (key, &deadline) in self.deadlines.iter() {
            batch.push((borrowed(key), deadline));
            batch_bytes += key.len() + 8;
            if batch.len() >= BATCH_PAIRS || batch_bytes >= BATCH_BYTES {
                writer.write(&Record::Deadlines(std::mem::take(&mut batch)))?;
                batch_bytes = 0;
            }
        }
        if !batch.is_empty() {
            writer.write(&Record::Deadlines(batch))?;
        }
        Ok(())
    }

    /// The same, with the tombstones of expired sessions.
    pub fn with_tombstones(self, tombstones: Frozen<u64, Index>) -> KvSnapshot {
        KvSnapshot { tombstones, ..self }
    }

    /// Every key: small values in batches, big ones in parts.
    fn write_keys(&self, writer: &mut RecordWriter<'_>) -> io::Result<()> {
        let mut batch = Vec::with_capacity(BATCH_PAIRS);
        let mut batch_bytes = 0;
        for (key, value) in self.keys.iter() {
            if value.len() > PART_BYTES {
                writer.write_pairs(&mut batch)?;
                batch_bytes = 0;
                writer.write_big(key, value)?;
                continue;
            }
            batch.push((borrowed(key), borrowed(value)));
            batch_bytes += key.len() + value.len();
            if batch.len() >= BATCH_PAIRS || batch_bytes >= BATCH_BYTES {
                writer.write_pairs(&mut batch)?;
                batch_bytes = 0;
            }
        }
        writer.write_pairs(&mut batch)
    }

    /// One record per session: a session may remember a transaction's
    /// outcome of megabytes, so they are not batched.
    fn write_sessions(&self, writer: &mut RecordWriter<'_>) -> io::Result<()> {
        for (&client, session) in self.sessions.iter() {
            writer.write(&Record::Session(SessionRecord {
                client,
                last_seq: session.last_seq,
                last_index: session.last_index,
                outcome: Cow::Borrowed(&session.outcome),
            }))?;
        }
        Ok(())
    }

    /// The tombstones, [`BATCH_PAIRS`] to a record (16 bytes each).
    fn write_tombstones(&self, writer: &mut RecordWriter<'_>) -> io::Result<()> {
        let mut batch = Vec::with_capacity(BATCH_PAIRS.min(self.tombstones.len()));
        for (&client, &last) in self.tombstones.iter() {
            batch.push((client, last));
            if batch.len() >= BATCH_PAIRS {
                writer.write(&Record::Tombstones(std::mem::take(&mut batch)))?;
            }
        }
        if !batch.is_empty() {
            writer.write(&Record::Tombstones(batch))?;
        }
        Ok(())
    }
}

impl StateSnapshot for KvSnapshot {
    fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut writer = RecordWriter {
            out,
            buf: Vec::new(),
            crc: crc32fast::Hasher::new(),
        };
        writer.write_raw(MAGIC)?;
        writer.write_raw(&VERSION.to_be_bytes())?;
        self.write_keys(&mut writer)?;
        self.write_sessions(&mut writer)?;
        self.write_tombstones(&mut writer)?;
        self.write_deadlines(&mut writer)?;
        writer.write(&Record::EndWithClock {
            keys: self.keys.len() as u64,
            sessions: self.sessions.len() as u64,
            tombstones: self.tombstones.len() as u64,
            deadlines: self.deadlines.len() as u64,
            clock: self.clock,
            crc: writer.crc.clone().finalize(),
        })
    }
}

/// Writes length-prefixed records through one reused buffer, and the CRC
/// of everything it writes.
struct RecordWriter<'w> {
    out: &'w mut dyn Write,
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
}

impl RecordWriter<'_> {
    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes)
    }

    fn write(&mut self, record: &Record<'_>) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.extend_from_slice(&[0; 4]);
        codec::encode_into(record, &mut buf).map_err(invalid_data)?;
        let len = buf.len() - 4;
        // Writing what no reader would accept would make a snapshot that
        // cannot be restored: better to fail now, while the log still has
        // the entries.
        if len > MAX_RECORD {
            return Err(invalid_data(format!(
                "a record of {len} bytes is over the {MAX_RECORD} a reader accepts"
            )));
        }
        buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
        let written = self.write_raw(&buf);
        self.buf = buf;
        written
    }

    /// Writes the pairs gathered so far, if any, and empties `batch`.
    fn write_pairs<'a>(&mut self, batch: &mut Vec<(Bytes<'a>, Bytes<'a>)>) -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let record = Record::Pairs(std::mem::take(batch));
        self.write(&record)?;
        // Reuse the allocation for the next batch.
        if let Record::Pairs(mut pairs) = record {
            pairs.clear();
            *batch = pairs;
        }
        Ok(())
    }

    fn write_big(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.write(&Record::Big {
            key: borrowed(key),
            len: value.len() as u64,
        })?;
        for part in value.chunks(PART_BYTES) {
            self.write(&Record::Part(borrowed(part)))?;
        }
        Ok(())
    }
}

fn invalid_data(e: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn invalid(reason: impl Into<String>) -> RestoreError {
    RestoreError::Invalid(reason.into())
}

/// Reads a payload written by [`KvSnapshot`] into `keys`, `sessions` and
/// `expiries`, which should be empty. On error they hold part of it and are
/// to be dropped.
pub fn read(
    payload: &mut dyn Read,
    keys: &mut ShardedMap<Vec<u8>, Vec<u8>>,
    sessions: &mut Sessions,
    expiries: &mut Expiries,
) -> Result<(), RestoreError> {
    let mut stream = Stream {
        payload,
        buf: Vec::new(),
        crc: crc32fast::Hasher::new(),
    };
    let version = stream.read_header()?;
    let mut reader = Reader {
        keys,
        sessions,
        expiries,
        big: None,
        in_sessions: false,
        in_tombstones: false,
        in_deadlines: false,
        version,
        ended: false,
    };
    while !reader.ended {
        let crc_before = stream.crc.clone().finalize();
        let record = stream.next_record()?;
        match record.end_crc() {
            Some(crc) if crc != crc_before => {
                return Err(invalid(format!(
                    "the payload's CRC is {crc_before:08x}, its end record says {crc:08x}"
                )));
            }
            _ => reader.take(record)?,
        }
    }
    stream.expect_eof()?;
    reader.sessions.restored();
    Ok(())
}

/// The payload's bytes, and the CRC of those read so far.
struct Stream<'p> {
    payload: &'p mut dyn Read,
    /// The current record's bytes, reused.
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
}

impl Stream<'_> {
    /// Reads the magic and returns the version.
    fn read_header(&mut self) -> Result<u32, RestoreError> {
        let mut magic = [0; 8];
        self.read_exact(&mut magic, "the magic")?;
        if &magic != MAGIC {
            return Err(invalid("not a key-value store's snapshot (wrong magic)"));
        }
        let mut version = [0; 4];
        self.read_exact(&mut version, "the format version")?;
        match u32::from_be_bytes(version) {
            version @ (VERSION_1 | VERSION_2 | VERSION) => Ok(version),
            other => Err(invalid(format!(
                "format version {other}; this build reads versions {VERSION_1} to {VERSION}"
            ))),
        }
    }

    /// Fills `buf`; a payload that ends first is not valid.
    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), RestoreError> {
        self.payload.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => invalid(format!("the payload ends in {what}")),
            _ => RestoreError::Io(e),
        })?;
        self.crc.update(buf);
        Ok(())
    }

    fn next_record(&mut self) -> Result<Record<'static>, RestoreError> {
        let mut len = [0; 4];
        self.read_exact(&mut len, "a record's length (no end record)")?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_RECORD {
            return Err(invalid(format!(
                "a record of {len} bytes, over the limit of {MAX_RECORD}"
            )));
        }
        // As the bytes arrive, not all at once: a corrupt length is no
        // reason to allocate it.
        self.buf.clear();
        (&mut *self.payload)
            .take(len as u64)
            .read_to_end(&mut self.buf)?;
        if self.buf.len() != len {
            return Err(invalid(format!(
                "the payload ends in a record ({} of its {len} bytes)",
                self.buf.len()
            )));
        }
        self.crc.update(&self.buf);
        codec::decode(&self.buf)
            .map_err(|e: CodecError| invalid(format!("undecodable record: {e}")))
    }

    /// After the end record, nothing.
    fn expect_eof(&mut self) -> Result<(), RestoreError> {
        let mut byte = [0];
        loop {
            match self.payload.read(&mut byte) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(invalid("bytes after the end record")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(RestoreError::Io(e)),
            }
        }
    }
}

/// What the records read so far have built, and what may come next.
struct Reader<'r> {
    keys: &'r mut ShardedMap<Vec<u8>, Vec<u8>>,
    sessions: &'r mut Sessions,
    expiries: &'r mut Expiries,
    /// A big value being read: its key, the bytes so far, its length.
    big: Option<(Vec<u8>, Vec<u8>, u64)>,
    /// Whether a session was read: keys may no longer come.
    in_sessions: bool,
    /// Whether a tombstone was read: sessions may no longer come either.
    in_tombstones: bool,
    /// Whether a deadline was read: tombstones may no longer come either.
    in_deadlines: bool,
    /// The payload's format version: which records it may hold.
    version: u32,
    /// Whether the end record was read and agreed: nothing may come.
    ended: bool,
}

impl Reader<'_> {
    fn take(&mut self, record: Record<'static>) -> Result<(), RestoreError> {
        match record {
            Record::Part(part) => self.part(part.0.into_owned()),
            _ if self.big.is_some() => Err(invalid("a big value ends before all its parts")),
            Record::Session(_) | Record::Tombstones(_) if self.in_deadlines => {
                Err(invalid("a session or tombstone after the deadlines"))
            }
            Record::Session(_) if self.in_tombstones => {
                Err(invalid("a session after the tombstones"))
            }
            Record::Session(session) => self.session(session),
            Record::Tombstones(list) if self.version >= VERSION_2 => self.tombstones(list),
            Record::Deadlines(list) if self.version >= VERSION => self.deadlines(list),
            Record::End { keys, sessions, .. } if self.version == VERSION_1 => {
                self.end(keys, sessions, 0)
            }
            Record::EndWithTombstones {
                keys,
                sessions,
                tombstones,
                ..
            } if self.version == VERSION_2 => self.end(keys, sessions, tombstones),
            Record::EndWithClock {
                keys,
                sessions,
                tombstones,
                deadlines,
                clock,
                ..
            } if self.version == VERSION => {
                if deadlines != self.expiries.len() as u64 {
                    return Err(invalid(format!(
                        "the end record counts {deadlines} deadlines; the payload held {}",
                        self.expiries.len()
                    )));
                }
                self.expiries.restore_clock(clock);
                self.end(keys, sessions, tombstones)
            }
            Record::Tombstones(_)
            | Record::Deadlines(_)
            | Record::End { .. }
            | Record::EndWithTombstones { .. }
            | Record::EndWithClock { .. } => Err(invalid(format!(
                "a record of another format version than {}",
                self.version
            ))),
            _ if self.in_sessions => Err(invalid("keys after the sessions")),
            Record::Pairs(pairs) => pairs
                .into_iter()
                .try_for_each(|(key, value)| self.insert(key.0.into_owned(), value.0.into_owned())),
            Record::Big { key, len } => {
                self.big = Some((key.0.into_owned(), Vec::new(), len));
                Ok(())
            }
        }
    }

    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), RestoreError> {
        // Overwriting is harmless here: the whole store is dropped on error.
        match self.keys.insert(key, value) {
            None => Ok(()),
            Some(_) => Err(invalid("a key appears twice")),
        }
    }

    fn part(&mut self, part: Vec<u8>) -> Result<(), RestoreError> {
        let Some((_, value, len)) = &mut self.big else {
            return Err(invalid("a part of no big value"));
        };
        if part.is_empty() || (value.len() + part.len()) as u64 > *len {
            return Err(invalid("a big value's parts disagree with its length"));
        }
        value.extend_from_slice(&part);
        if value.len() as u64 == *len {
            if let Some((key, value, _)) = self.big.take() {
                self.insert(key, value)?;
            }
        }
        Ok(())
    }

    fn session(&mut self, record: SessionRecord<'static>) -> Result<(), RestoreError> {
        self.in_sessions = true;
        let session = Session {
            last_seq: record.last_seq,
            outcome: record.outcome.into_owned(),
            last_index: record.last_index,
        };
        match self.sessions.restore(record.client, session) {
            true => Ok(()),
            false => Err(invalid(format!(
                "client {} has two sessions",
                record.client
            ))),
        }
    }

    fn tombstones(&mut self, list: Vec<(u64, Index)>) -> Result<(), RestoreError> {
        self.in_sessions = true;
        self.in_tombstones = true;
        for (client, last) in list {
            if !self.sessions.restore_tombstone(client, last) {
                return Err(invalid(format!(
                    "client {client} has two sessions or tombstones"
                )));
            }
        }
        Ok(())
    }

    fn deadlines(&mut self, list: Vec<(Bytes<'static>, u64)>) -> Result<(), RestoreError> {
        self.in_sessions = true;
        self.in_tombstones = true;
        self.in_deadlines = true;
        for (key, deadline) in list {
            let key = key.0;
            if !self.keys.contains_key(key.as_ref()) {
                return Err(invalid("a deadline for a key the payload does not hold"));
            }
            if self.expiries.get(&key).is_some() {
                return Err(invalid("a key has two deadlines"));
            }
            self.expiries.set(&key, deadline);
        }
        Ok(())
    }

    fn end(&mut self, keys: u64, sessions: u64, tombstones: u64) -> Result<(), RestoreError> {
        let read = (
            self.keys.len() as u64,
            self.sessions.len() as u64,
            self.sessions.tombstones() as u64,
        );
        if (keys, sessions, tombstones) != read {
            return Err(invalid(format!(
                "the end record counts {keys} keys, {sessions} sessions and {tombstones} \
                 tombstones; the payload held {}, {} and {}",
                read.0, read.1, read.2
            )));
        }
        self.ended = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(b: &[u8]) -> Bytes<'_> {
        borrowed(b)
    }

    /// The version 1 payload of `records` (what the writer wrote before
    /// tombstones), then an end record counting `keys` and `sessions` with
    /// the right CRC: structurally whatever the test wants.
    fn payload_of(records: &[Record<'_>], keys: u64, sessions: u64) -> Vec<u8> {
        payload_with_end(VERSION_1, records, |crc| Record::End {
            keys,
            sessions,
            crc,
        })
    }

    /// The same in version 2, counting `tombstones` too.
    fn payload_v2(records: &[Record<'_>], keys: u64, sessions: u64, tombstones: u64) -> Vec<u8> {
        payload_with_end(VERSION_2, records, |crc| Record::EndWithTombstones {
            keys,
            sessions,
            tombstones,
            crc,
        })
    }

    fn payload_with_end(
        version: u32,
        records: &[Record<'_>],
        end: impl FnOnce(u32) -> Record<'static>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = RecordWriter {
            out: &mut out,
            buf: Vec::new(),
            crc: crc32fast::Hasher::new(),
        };
        writer.write_raw(MAGIC).unwrap();
        writer.write_raw(&version.to_be_bytes()).unwrap();
        for record in records {
            writer.write(record).unwrap();
        }
        let crc = writer.crc.clone().finalize();
        writer.write(&end(crc)).unwrap();
        out
    }

    /// How many keys and sessions `payload` restores, or why not.
    fn restore(payload: &[u8]) -> Result<(usize, usize), String> {
        let mut keys = ShardedMap::new(4);
        let mut sessions = Sessions::new(100);
        read(
            &mut &payload[..],
            &mut keys,
            &mut sessions,
            &mut Expiries::default(),
        )
        .map(|()| (keys.len(), sessions.len()))
        .map_err(|e| e.to_string())
    }

    fn session(client: u64) -> Record<'static> {
        Record::Session(SessionRecord {
            client,
            last_seq: 1,
            last_index: 5,
            outcome: Cow::Owned(Outcome::Done),
        })
    }

    #[test]
    fn bytes_encode_as_a_vec_of_bytes_does_in_one_piece() {
        let v = vec![0u8, 1, 255, 7];
        assert_eq!(
            codec::encode(&bytes(&v)).unwrap(),
            codec::encode(&v).unwrap()
        );
        let back: Bytes<'static> = codec::decode(&codec::encode(&v).unwrap()).unwrap();
        assert_eq!(back.0.as_ref(), &v[..]);
    }

    #[test]
    fn well_formed_records_restore() {
        let records = [
            Record::Pairs(vec![(bytes(b"a"), bytes(b"1")), (bytes(b""), bytes(b""))]),
            Record::Big {
                key: bytes(b"big"),
                len: 5,
            },
            Record::Part(bytes(b"abc")),
            Record::Part(bytes(b"de")),
            session(1),
            session(2),
        ];
        assert_eq!(restore(&payload_of(&records, 3, 2)), Ok((3, 2)));
    }

    #[test]
    fn records_that_disagree_are_refused() {
        let pair = || Record::Pairs(vec![(bytes(b"a"), bytes(b"1"))]);
        let big = |len| Record::Big {
            key: bytes(b"big"),
            len,
        };
        let part = || Record::Part(bytes(b"xyz"));
        let cases: [(&[Record<'_>], u64, u64, &str); 9] = [
            (&[pair(), pair()], 1, 0, "appears twice"),
            (&[session(1), session(1)], 0, 1, "two sessions"),
            (&[session(1), pair()], 1, 1, "keys after the sessions"),
            (&[part()], 0, 0, "a part of no big value"),
            (&[big(4), part()], 0, 0, "before all its parts"),
            (&[big(3), part(), part()], 1, 0, "a part of no big value"),
            (&[big(2), part()], 1, 0, "disagree with its length"),
            (&[big(3), pair()], 1, 0, "before all its parts"),
            (&[pair()], 2, 0, "counts 2 keys"),
        ];
        for (records, keys, sessions, why) in cases {
            let error = restore(&payload_of(records, keys, sessions)).unwrap_err();
            assert!(error.contains(why), "{records:?}: {error}");
        }
    }

    #[test]
    fn a_record_length_over_the_limit_is_refused_before_it_is_read() {
        let mut payload = MAGIC.to_vec();
        payload.extend_from_slice(&VERSION.to_be_bytes());
        payload.extend_from_slice(&u32::MAX.to_be_bytes());
        let error = restore(&payload).unwrap_err();
        assert!(error.contains("over the limit"), "{error}");
        // A length within the limit over a short payload: truncated.
        let mut payload = payload[..12].to_vec();
        payload.extend_from_slice(&(MAX_RECORD as u32).to_be_bytes());
        payload.extend_from_slice(b"short");
        let error = restore(&payload).unwrap_err();
        assert!(error.contains("ends in a record (5 of"), "{error}");
    }

    #[test]
    fn records_stay_within_a_batch() {
        let mut keys = ShardedMap::new(4);
        for n in 0..5_000u32 {
            let value = vec![b'v'; (n % 3 * 20_000) as usize];
            keys.insert(n.to_be_bytes().to_vec(), value);
        }
        keys.insert(b"big".to_vec(), vec![0; 5 * PART_BYTES]);
        let snapshot = KvSnapshot::new(keys.freeze(), Sessions::new(1).freeze());
        let mut payload = Vec::new();
        snapshot.write_to(&mut payload).unwrap();
        let (mut at, mut records) = (12, 0);
        while at < payload.len() {
            let len = u32::from_be_bytes(payload[at..at + 4].try_into().unwrap()) as usize;
            // A batch closes once it reaches BATCH_BYTES: one pair over.
            assert!(len < BATCH_BYTES + PART_BYTES + 100, "a record of {len}");
            if let Record::Pairs(pairs) = codec::decode(&payload[at + 4..at + 4 + len]).unwrap() {
                assert!(pairs.len() <= BATCH_PAIRS);
            }
            at += 4 + len;
            records += 1;
        }
        assert!(records > 5_000 / BATCH_PAIRS + 5, "{records} records");
        assert_eq!(restore(&payload), Ok((5_001, 0)));
    }

    #[test]
    fn a_record_no_reader_would_accept_is_not_written() {
        let mut sessions = Sessions::new(10);
        let huge = Outcome::Value(Some(vec![0; MAX_RECORD]));
        sessions.record(1, 1, 1, huge);
        let snapshot = KvSnapshot::new(ShardedMap::new(4).freeze(), sessions.freeze());
        let error = snapshot.write_to(&mut io::sink()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("a reader accepts"), "{error}");
    }

    /// How many sessions and tombstones `payload` restores, or why not.
    fn restore_sessions(payload: &[u8]) -> Result<(usize, usize), String> {
        let mut keys = ShardedMap::new(4);
        let mut sessions = Sessions::new(100);
        read(
            &mut &payload[..],
            &mut keys,
            &mut sessions,
            &mut Expiries::default(),
        )
        .map(|()| (sessions.len(), sessions.tombstones()))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn version_2_carries_tombstones_and_version_1_still_reads() {
        let tombstones = |list: &[u64]| Record::Tombstones(list.iter().map(|&c| (c, c)).collect());
        let records = [session(1), tombstones(&[2, 3]), tombstones(&[4])];
        assert_eq!(restore_sessions(&payload_v2(&records, 0, 1, 3)), Ok((1, 3)));
        // A version 1 payload, as the writer wrote before tombstones: its
        // sessions come back, with no tombstones.
        let old = payload_of(&[session(1), session(2)], 0, 2);
        assert_eq!(&old[8..12], &1u32.to_be_bytes());
        assert_eq!(restore_sessions(&old), Ok((2, 0)));
        // The writer writes version 2.
        let mut sessions = Sessions::new(1);
        sessions.record(9, 1, 1, Outcome::Done);
        sessions.expire(3);
        assert_eq!(sessions.tombstones(), 1);
        let snapshot = KvSnapshot::new(ShardedMap::new(4).freeze(), sessions.freeze())
            .with_tombstones(sessions.freeze_tombstones());
        let mut payload = Vec::new();
        snapshot.write_to(&mut payload).unwrap();
        assert_eq!(&payload[8..12], &3u32.to_be_bytes());
        assert_eq!(restore_sessions(&payload), Ok((0, 1)));
    }

    #[test]
    fn tombstone_records_that_disagree_are_refused() {
        let tombstone = |client| Record::Tombstones(vec![(client, 5)]);
        let cases: [(Vec<u8>, &str); 7] = [
            (payload_of(&[tombstone(1)], 0, 0), "another format version"),
            (payload_v2(&[], 0, 0, 0)[..12].to_vec(), "no end record"),
            (
                payload_v2(&[tombstone(1), tombstone(1)], 0, 0, 1),
                "two sessions or tombstones",
            ),
            (
                payload_v2(&[session(1), tombstone(1)], 0, 1, 1),
                "two sessions or tombstones",
            ),
            (
                payload_v2(&[tombstone(1), session(2)], 0, 1, 1),
                "a session after the tombstones",
            ),
            (payload_v2(&[tombstone(1)], 0, 0, 2), "2 tombstones"),
            (
                payload_v2(&[tombstone(1), Record::Pairs(vec![])], 0, 0, 1),
                "keys after the sessions",
            ),
        ];
        for (payload, why) in cases {
            let error = restore_sessions(&payload).unwrap_err();
            assert!(error.contains(why), "{why}: {error}");
        }
        // Each version's end record is refused in the other.
        let v2_with_v1_end = payload_with_end(VERSION_2, &[], |crc| Record::End {
            keys: 0,
            sessions: 0,
            crc,
        });
        let error = restore_sessions(&v2_with_v1_end).unwrap_err();
        assert!(error.contains("another format version"), "{error}");
        let v1_with_v2_end = payload_with_end(VERSION_1, &[], |crc| Record::EndWithTombstones {
            keys: 0,
            sessions: 0,
            tombstones: 0,
            crc,
        });
        let error = restore_sessions(&v1_with_v2_end).unwrap_err();
        assert!(error.contains("another format version"), "{error}");
    }

    fn payload_v3(records: &[Record<'_>], keys: u64, deadlines: u64, clock: u64) -> Vec<u8> {
        payload_with_end(VERSION, records, |crc| Record::EndWithClock {
            keys,
            sessions: 0,
            tombstones: 0,
            deadlines,
            clock,
            crc,
        })
    }

    fn restore_expiries(payload: &[u8]) -> Result<(usize, u64), String> {
        let mut keys = ShardedMap::new(2);
        let mut expiries = Expiries::default();
        read(
            &mut &payload[..],
            &mut keys,
            &mut Sessions::new(100),
            &mut expiries,
        )
        .map(|()| (expiries.len(), expiries.clock()))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn version_3_carries_deadlines_and_the_clock() {
        let pairs = Record::Pairs(vec![(bytes(b"a"), bytes(b"1")), (bytes(b"b"), bytes(b"2"))]);
        let deadlines = |list: &[&'static [u8]]| {
            Record::Deadlines(list.iter().map(|k| (bytes(k), 7)).collect())
        };
        let good = payload_v3(&[pairs, deadlines(&[b"a"]), deadlines(&[b"b"])], 2, 2, 99);
        assert_eq!(restore_expiries(&good), Ok((2, 99)));
        let pairs = || Record::Pairs(vec![(bytes(b"a"), bytes(b"1"))]);
        let cases = [
            (
                payload_v3(&[pairs(), deadlines(&[b"z"])], 1, 1, 0),
                "does not hold",
            ),
            (
                payload_v3(&[pairs(), deadlines(&[b"a", b"a"])], 1, 2, 0),
                "two deadlines",
            ),
            (
                payload_v3(&[pairs(), deadlines(&[b"a"])], 1, 0, 0),
                "counts 0 deadlines",
            ),
            (
                payload_v3(&[deadlines(&[]), pairs()], 1, 0, 0),
                "keys after",
            ),
            (
                payload_v3(&[deadlines(&[]), session(1)], 0, 0, 0),
                "after the deadlines",
            ),
            (
                payload_v2(&[deadlines(&[])], 0, 0, 0),
                "another format version",
            ),
        ];
        for (payload, why) in cases {
            let error = restore_expiries(&payload).unwrap_err();
            assert!(error.contains(why), "{why}: {error}");
        }
        // A version 2 payload is a store without deadlines, at clock 0.
        assert_eq!(
            restore_expiries(&payload_v2(&[pairs()], 1, 0, 0)),
            Ok((0, 0))
        );
    }
}
