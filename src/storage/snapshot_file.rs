//! Snapshot files (§7 of the Raft paper): the state machine's state as of a
//! log index, written so that a crash at any moment leaves either the old
//! snapshot or the new one, and a damaged file is never taken for a good one.
//!
//! The format, version 2, all integers big-endian:
//!
//! ```text
//! "RNSNAP2\n"                      8 bytes, the magic
//! meta length                      u32
//! meta                             codec-encoded SnapshotMeta: last included
//!                                  index and term, the configuration in
//!                                  force at that index and the index of the
//!                                  entry that set it
//! payload                          the state machine's bytes, any length
//! payload length                   u64
//! CRC32                            u32, over meta length, meta and payload
//! "RNSNEND\n"                      8 bytes
//! ```
//!
//! Version 1 (magic `"RNSNAP1\n"`, written by releases before membership
//! changes) is the same but for the meta, which held the last included
//! index and term and a list of member ids. Such files are still read: the
//! meta becomes a version-2 one whose configuration is those ids as voters,
//! with empty addresses (version 1 never recorded any), set by the
//! bootstrap configuration (`config_index` 0). Only version 2 is written.
//!
//! The checksum sits in a trailer so the payload can be written as it is
//! produced, never held whole in memory; a reader checks it in one streaming
//! pass before anything trusts the file ([`SnapshotReader::open`]).
//!
//! Writing ([`SnapshotWriter`]): the file is created as `<name>.tmp`, the
//! payload streamed into it, the trailer appended, the file fsynced, renamed
//! to `<name>`, and the directory fsynced. A `.tmp` file is therefore never
//! a snapshot: it is what a crash interrupted, and may be deleted.

use super::error::{io_err, StorageError};
use crate::codec;
use crate::raft::membership::Configuration;
use crate::raft::message::{Index, NodeId, Term};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Take, Write};
use std::path::{Path, PathBuf};

/// The magic of the files written now.
const MAGIC: &[u8; 8] = b"RNSNAP2\n";
/// The magic of files written before membership changes, still read.
const MAGIC_V1: &[u8; 8] = b"RNSNAP1\n";
const END: &[u8; 8] = b"RNSNEND\n";
/// Payload length, CRC32 and the end marker.
const TRAILER: u64 = 8 + 4 + 8;
/// The largest meta a reader accepts: a configuration and a few numbers
/// take far less.
const MAX_META: u32 = 1024 * 1024;

/// What a snapshot stands for: the log up to and including
/// `last_included_index` (of `last_included_term`), applied, with `config`
/// the cluster's configuration in force at that index (§7), set by the
/// entry at `config_index` (0 for the bootstrap configuration). The
/// configuration travels with the snapshot because the entry that set it
/// may be compacted away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub last_included_index: Index,
    pub last_included_term: Term,
    pub config_index: Index,
    pub config: Configuration,
}

/// The meta of a version-1 file, only ever decoded.
#[derive(Deserialize)]
struct SnapshotMetaV1 {
    last_included_index: Index,
    last_included_term: Term,
    members: Vec<NodeId>,
}

impl From<SnapshotMetaV1> for SnapshotMeta {
    /// Version 1 knew only the member ids: they were all voters, and no
    /// address was recorded. Which entry set them is unknown, so they count
    /// as the bootstrap configuration.
    fn from(v1: SnapshotMetaV1) -> SnapshotMeta {
        SnapshotMeta {
            last_included_index: v1.last_included_index,
            last_included_term: v1.last_included_term,
            config_index: 0,
            config: Configuration::of_voters(v1.members.into_iter().map(|id| (id, String::new()))),
        }
    }
}

/// A snapshot being written; nothing is a snapshot until
/// [`finish`](SnapshotWriter::finish) returns.
pub struct SnapshotWriter {
    tmp: PathBuf,
    path: PathBuf,
    file: BufWriter<File>,
    crc: crc32fast::Hasher,
    payload_len: u64,
    /// Payload bytes written since the data was last pushed to the disk.
    unsynced: u64,
}

/// While a snapshot is written, its data is pushed to the disk every this
/// many bytes, so the final fsync has little left to do: one fsync of a
/// hundred megabytes would stall the log's own fsyncs (and every write
/// waiting on them) for as long as it takes.
const SYNC_EVERY: u64 = 8 * 1024 * 1024;

impl SnapshotWriter {
    /// Starts `path` (as `path.tmp`) for `meta`; the payload follows through
    /// [`Write`].
    pub fn create(path: &Path, meta: &SnapshotMeta) -> Result<SnapshotWriter, StorageError> {
        let tmp = tmp_path(path);
        let file = File::create(&tmp).map_err(io_err(&tmp, "create"))?;
        let meta_bytes = codec::encode(meta).map_err(|e| StorageError::Corrupt {
            path: tmp.clone(),
            offset: None,
            reason: format!("cannot encode the snapshot's meta: {e}"),
        })?;
        let mut writer = SnapshotWriter {
            tmp,
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(256 * 1024, file),
            crc: crc32fast::Hasher::new(),
            payload_len: 0,
            unsynced: 0,
        };
        let meta_len = (meta_bytes.len() as u32).to_be_bytes();
        writer.crc.update(&meta_len);
        writer.crc.update(&meta_bytes);
        let header = [&MAGIC[..], &meta_len, &meta_bytes].concat();
        writer
            .file
            .write_all(&header)
            .map_err(io_err(&writer.tmp, "write"))?;
        Ok(writer)
    }

    /// The file being written (`<path>.tmp` until [`SnapshotWriter::finish`]),
    /// for errors that must name it.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Ends the payload, makes the file durable and puts it in place.
    pub fn finish(mut self) -> Result<PathBuf, StorageError> {
        let mut trailer = Vec::with_capacity(TRAILER as usize);
        trailer.extend_from_slice(&self.payload_len.to_be_bytes());
        trailer.extend_from_slice(&self.crc.clone().finalize().to_be_bytes());
        trailer.extend_from_slice(END);
        let tmp = self.tmp.clone();
        self.file
            .write_all(&trailer)
            .and_then(|_| self.file.flush())
            .map_err(io_err(&tmp, "write"))?;
        let file = self
            .file
            .into_inner()
            .map_err(|e| io_err(&tmp, "write")(e.into_error()))?;
        file.sync_all().map_err(io_err(&tmp, "fsync"))?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(io_err(&self.path, "rename into place"))?;
        // Without this the rename itself may not survive a crash.
        let dir = self.path.parent().unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir, "fsync directory"))?;
        Ok(self.path)
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.crc.update(&buf[..n]);
        self.payload_len += n as u64;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY {
            self.unsynced = 0;
            self.file.flush()?;
            self.file.get_ref().sync_data()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// `snapshot` → `snapshot.tmp`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// A snapshot file whose checksum has been verified.
#[derive(Debug)]
pub struct SnapshotReader {
    path: PathBuf,
    meta: SnapshotMeta,
    file: File,
    payload_start: u64,
    payload_len: u64,
}

impl SnapshotReader {
    /// Opens `path` and checks all of it — magic, meta, lengths, checksum,
    /// end marker — reading it once, a buffer at a time. Any defect is
    /// [`StorageError::Corrupt`] naming the file and what is wrong.
    pub fn open(path: &Path) -> Result<SnapshotReader, StorageError> {
        SnapshotReader::open_with(path, true)
    }

    /// Opens a snapshot this process has already checked whole with
    /// [`SnapshotReader::open`], or wrote itself (the snapshot store lists
    /// no other), reading only its header: the payload is not read twice.
    pub fn open_checked_before(path: &Path) -> Result<SnapshotReader, StorageError> {
        SnapshotReader::open_with(path, false)
    }

    fn open_with(path: &Path, check_payload: bool) -> Result<SnapshotReader, StorageError> {
        let corrupt = |offset: Option<u64>, reason: String| StorageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason,
        };
        let mut file = File::open(path).map_err(io_err(path, "open"))?;
        let file_len = file.metadata().map_err(io_err(path, "stat"))?.len();
        let mut reader = BufReader::with_capacity(256 * 1024, &mut file);
        let mut head = [0u8; 12];
        if file_len < head.len() as u64 + TRAILER {
            return Err(corrupt(None, format!("only {file_len} bytes long")));
        }
        reader.read_exact(&mut head).map_err(io_err(path, "read"))?;
        let version_1 = match &head[..8] {
            magic if magic == MAGIC => false,
            magic if magic == MAGIC_V1 => true,
            _ => {
                return Err(corrupt(
                    Some(0),
                    "not a raftnode snapshot (wrong magic)".into(),
                ))
            }
        };
        let meta_len_bytes: [u8; 4] = [head[8], head[9], head[10], head[11]];
        let meta_len = u32::from_be_bytes(meta_len_bytes);
        let payload_start = 12 + u64::from(meta_len);
        if meta_len > MAX_META || payload_start + TRAILER > file_len {
            return Err(corrupt(
                Some(8),
                format!("meta length {meta_len} does not fit"),
            ));
        }
        let mut meta_bytes = vec![0u8; meta_len as usize];
        reader
            .read_exact(&mut meta_bytes)
            .map_err(io_err(path, "read"))?;
        let payload_len = file_len - payload_start - TRAILER;
        if check_payload {
            check_payload_and_trailer(&mut reader, &meta_len_bytes, &meta_bytes, payload_len)
                .map_err(|(offset, reason)| match reason {
                    Ok(reason) => corrupt(offset, reason),
                    Err(e) => io_err(path, "read")(e),
                })?;
        }
        // Decoded only now: bytes that failed the checksum are never parsed.
        let meta = if version_1 {
            codec::decode::<SnapshotMetaV1>(&meta_bytes).map(SnapshotMeta::from)
        } else {
            codec::decode(&meta_bytes)
        }
        .map_err(|e| corrupt(Some(12), format!("meta does not decode: {e}")))?;
        Ok(SnapshotReader {
            path: path.to_path_buf(),
            meta,
            file,
            payload_start,
            payload_len,
        })
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many payload bytes there are.
    pub fn payload_len(&self) -> u64 {
        self.payload_len
    }

    /// The payload, to read as a stream.
    pub fn payload(&mut self) -> Result<Take<BufReader<&mut File>>, StorageError> {
        self.file
            .seek(SeekFrom::Start(self.payload_start))
            .map_err(io_err(&self.path, "seek"))?;
        Ok(BufReader::with_capacity(256 * 1024, &mut self.file).take(self.payload_len))
    }
}

/// Where a check failed (an offset, if one applies) and why — or the read
/// error that stopped it.
type CheckFailure = (Option<u64>, Result<String, io::Error>);

/// Streams the payload through the checksum (which also covers the meta's
/// length and bytes) and checks the trailer: stated length, checksum, end
/// marker.
fn check_payload_and_trailer(
    reader: &mut impl Read,
    meta_len_bytes: &[u8],
    meta_bytes: &[u8],
    payload_len: u64,
) -> Result<(), CheckFailure> {
    let io = |e: io::Error| (None, Err(e));
    let mut crc = crc32fast::Hasher::new();
    crc.update(meta_len_bytes);
    crc.update(meta_bytes);
    let copied = io::copy(&mut reader.take(payload_len), &mut CrcSink(&mut crc)).map_err(io)?;
    let mut trailer = [0u8; TRAILER as usize];
    reader.read_exact(&mut trailer).map_err(io)?;
    let trailer_at = Some(12 + meta_bytes.len() as u64 + payload_len);
    if copied != payload_len || &trailer[12..] != END {
        return Err((
            trailer_at,
            Ok("no end marker (an unfinished write?)".into()),
        ));
    }
    let stated_len = u64::from_be_bytes(trailer[..8].try_into().unwrap_or_default());
    let stated_crc = u32::from_be_bytes(trailer[8..12].try_into().unwrap_or_default());
    if stated_len != payload_len {
        return Err((
            trailer_at,
            Ok(format!(
                "the trailer says {stated_len} payload bytes, the file holds {payload_len}"
            )),
        ));
    }
    let crc = crc.finalize();
    if crc != stated_crc {
        return Err((
            None,
            Ok(format!(
                "checksum mismatch (stored {stated_crc:08x}, computed {crc:08x})"
            )),
        ));
    }
    Ok(())
}

/// A `Write` that only feeds a checksum.
struct CrcSink<'a>(&'a mut crc32fast::Hasher);

impl Write for CrcSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::membership::ConfChange;

    /// A configuration with everything a version-1 meta could not hold:
    /// addresses, a learner, a recorded incarnation, a removal.
    fn meta() -> SnapshotMeta {
        let config = Configuration::of_voters((1..=3).map(|id| (id, format!("10.0.0.{id}:7000"))));
        let changes = [
            ConfChange::AddLearner {
                id: 4,
                raft_addr: "10.0.0.4:7000".into(),
                client_addr: Some("10.0.0.4:6379".into()),
                auto_promote: true,
            },
            ConfChange::RecordIncarnation {
                id: 2,
                incarnation: 0xdead_beef,
            },
            ConfChange::Remove { id: 3 },
        ];
        let config = changes
            .iter()
            .zip(30..)
            .fold(config, |config, (change, at)| {
                config.apply(change, at).unwrap()
            });
        SnapshotMeta {
            last_included_index: 42,
            last_included_term: 3,
            config_index: 32,
            config,
        }
    }

    fn write(dir: &Path, payload: &[u8]) -> PathBuf {
        let mut w = SnapshotWriter::create(&dir.join("snapshot"), &meta()).unwrap();
        // In pieces, as a state machine would stream it.
        for chunk in payload.chunks(7) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    fn payload_of(reader: &mut SnapshotReader) -> Vec<u8> {
        let mut out = Vec::new();
        reader.payload().unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn round_trip_and_no_tmp_left() {
        let dir = tempfile::tempdir().unwrap();
        let payload: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let path = write(dir.path(), &payload);
        assert!(!tmp_path(&path).exists());
        assert!(fs::read(&path).unwrap().starts_with(b"RNSNAP2\n"));
        let mut reader = SnapshotReader::open(&path).unwrap();
        // The whole configuration comes back, addresses and all.
        assert_eq!(reader.meta(), &meta());
        let config = &reader.meta().config;
        assert_eq!(config.members[&1].raft_addr, "10.0.0.1:7000");
        assert_eq!(
            config.members[&4].client_addr.as_deref(),
            Some("10.0.0.4:6379")
        );
        assert!(config.is_learner(4));
        assert_eq!(config.members[&2].incarnation, Some(0xdead_beef));
        assert_eq!(config.removed.get(&3).map(|r| r.index), Some(32));
        assert_eq!(reader.payload_len(), payload.len() as u64);
        assert_eq!(payload_of(&mut reader), payload);
        // An empty payload is a valid snapshot too.
        let empty = write(dir.path(), b"");
        assert_eq!(payload_of(&mut SnapshotReader::open(&empty).unwrap()), b"");
    }

    /// Every single damaged byte, anywhere in the file, is caught and
    /// reported against the file; none gives back a snapshot.
    #[test]
    fn any_flipped_byte_is_corruption_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), b"the whole key-value map");
        let good = fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            match SnapshotReader::open(&path) {
                Err(StorageError::Corrupt {
                    path: p, reason, ..
                }) => {
                    assert_eq!(p, path, "byte {i}: {reason}")
                }
                other => panic!("byte {i} flipped: {other:?}"),
            }
        }
    }

    #[test]
    fn a_file_cut_short_anywhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), b"some state");
        let good = fs::read(&path).unwrap();
        for len in 0..good.len() {
            fs::write(&path, &good[..len]).unwrap();
            assert!(
                matches!(
                    SnapshotReader::open(&path),
                    Err(StorageError::Corrupt { .. })
                ),
                "cut to {len} bytes"
            );
        }
    }

    #[test]
    fn an_unfinished_write_leaves_only_a_tmp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot");
        let mut w = SnapshotWriter::create(&path, &meta()).unwrap();
        w.write_all(b"half of it").unwrap();
        drop(w); // a crash before finish
        assert!(!path.exists());
        assert!(tmp_path(&path).exists());
        // Whatever made it to the tmp file is not a snapshot either.
        assert!(SnapshotReader::open(&tmp_path(&path)).is_err());
    }

    /// A version-1 file, byte by byte as the release before membership
    /// changes wrote it: meta {index 42, term 3, members [1, 2, 3]}.
    fn version_1_file(payload: &[u8]) -> Vec<u8> {
        // The codec writes small integers as one byte each; the member list
        // is its length, then the ids.
        let meta: &[u8] = &[42, 3, 3, 1, 2, 3];
        let meta_len = (meta.len() as u32).to_be_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&meta_len);
        crc.update(meta);
        crc.update(payload);
        let mut file = b"RNSNAP1\n".to_vec();
        file.extend_from_slice(&meta_len);
        file.extend_from_slice(meta);
        file.extend_from_slice(payload);
        file.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        file.extend_from_slice(&crc.finalize().to_be_bytes());
        file.extend_from_slice(b"RNSNEND\n");
        file
    }

    #[test]
    fn a_version_1_file_is_read_and_its_members_become_voters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot");
        fs::write(&path, version_1_file(b"old state")).unwrap();
        for mut reader in [
            SnapshotReader::open(&path).unwrap(),
            SnapshotReader::open_checked_before(&path).unwrap(),
        ] {
            let expected = SnapshotMeta {
                last_included_index: 42,
                last_included_term: 3,
                config_index: 0,
                config: Configuration::of_voters([1, 2, 3].map(|id| (id, String::new()))),
            };
            assert_eq!(reader.meta(), &expected);
            assert_eq!(reader.meta().config.voters().collect::<Vec<_>>(), [1, 2, 3]);
            assert_eq!(payload_of(&mut reader), b"old state");
        }
    }

    #[test]
    fn a_damaged_version_1_file_is_still_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot");
        let good = version_1_file(b"old state");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            assert!(
                matches!(
                    SnapshotReader::open(&path),
                    Err(StorageError::Corrupt { .. })
                ),
                "byte {i} flipped"
            );
        }
    }
}
