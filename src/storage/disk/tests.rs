//! Tests of the data dir: round trips, segments, every kind of damage,
//! refusals, the legacy format, and what is made durable before what.

use super::*;
use crate::raft::message::{Payload, Term};
use crate::storage::log_file::{
    encode_commit, encode_entry, encode_legacy_record, scan, Format, MAGIC,
};
use crate::storage::segment::{segment_name, trace, LEGACY_NAME};
use tempfile::tempdir;

const CLUSTER: &str = "test";
/// A segment record's header: length, payload CRC, header CRC.
const HEADER: u64 = 12;
/// A segment size that three of this file's records (about 26 bytes each)
/// and the magic exceed, and two do not.
const SMALL: u64 = 80;

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

fn seg(dir: &Path, first_index: Index) -> PathBuf {
    dir.join(segment_name(first_index))
}

fn open(dir: &Path) -> (DiskStore, Recovered) {
    let mut store = DiskStore::open(dir, 1, CLUSTER).unwrap();
    let recovered = store.recover().unwrap();
    (store, recovered)
}

/// Opens with segments of `segment_bytes`.
fn open_small(dir: &Path, segment_bytes: u64) -> (DiskStore, Recovered) {
    let options = DiskOptions { segment_bytes };
    let mut store = DiskStore::open_with(dir, 1, CLUSTER, options).unwrap();
    let recovered = store.recover().unwrap();
    (store, recovered)
}

fn open_err(dir: &Path) -> StorageError {
    match DiskStore::open(dir, 1, CLUSTER) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(e) => e,
    }
}

/// The names of the log files in `dir`, in order.
fn log_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(LEGACY_NAME))
        .collect();
    names.sort();
    names
}

/// Where the entry records of segment `path` start, as read back.
fn offsets(path: &Path) -> Vec<u64> {
    let name = path.file_name().unwrap().to_str().unwrap();
    let first = name.strip_prefix("log-").unwrap().parse().unwrap();
    let file = File::open(path).unwrap();
    scan(&file, path, Format::Segment, first).unwrap().offsets
}

/// Writes `n` entries of term 1 into one segment and returns their record
/// offsets and the segment's path, with the store closed.
fn log_with(dir: &Path, n: Index) -> (Vec<u64>, PathBuf) {
    let (mut s, _) = open(dir);
    s.append(&entries(1..=n, 1)).unwrap();
    s.sync().unwrap();
    drop(s);
    let path = seg(dir, 1);
    (offsets(&path), path)
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

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

/// Opens a log whose tail was damaged after entry `kept`, and checks it
/// was repaired to exactly entries 1..=kept, on disk too.
fn assert_repaired(dir: &Path, kept: Index, kept_end: u64) {
    let (mut s, rec) = open(dir);
    assert_eq!(rec.entries, entries(1..=kept, 1));
    assert_eq!(s.last_index(), kept);
    assert_eq!(file_len(&seg(dir, 1)), kept_end);
    // The repaired log takes new entries and keeps them.
    s.append(&[entry(kept + 1, 2)]).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, rec) = open(dir);
    assert_eq!(rec.entries.len() as Index, kept + 1);
    assert_eq!(rec.entries.last(), Some(&entry(kept + 1, 2)));
}

/// Asserts `err` is corruption in `path` at `offset`, and says so.
fn assert_corrupt_at(err: &StorageError, path: &Path, offset: Option<u64>) {
    let StorageError::Corrupt {
        path: p, offset: o, ..
    } = err
    else {
        panic!("expected Corrupt, got {err}");
    };
    assert_eq!((p.as_path(), *o), (path, offset), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    if let Some(offset) = offset {
        assert!(msg.contains(&format!("offset {offset}")), "{msg}");
    }
}

/// Every file in `dir` with its bytes, to check that nothing was touched.
fn snapshot_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Turns an initialized dir into one as the release before segments left
/// it: meta of format 1 and the given entries in the legacy `log`.
fn make_legacy(dir: &Path, entries: &[Entry]) {
    drop(open(dir));
    for name in log_files(dir) {
        fs::remove_file(dir.join(name)).unwrap();
    }
    let mut bytes = LEGACY_MAGIC.to_vec();
    for e in entries {
        encode_legacy_record(e, &mut bytes);
    }
    fs::write(dir.join(LEGACY_NAME), bytes).unwrap();
    fs::write(
        dir.join(META),
        format!("format: 1\nnode_id: 1\ncluster_id: {CLUSTER}\n"),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------
// Round trips

#[test]
fn fresh_open_gives_default_hard_state_and_empty_log() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path().join("a/b");
    let (s, rec) = open(&dir);
    assert_eq!(rec.hard_state, HardState::default());
    assert!(rec.entries.is_empty());
    assert_eq!(rec.commit_index, 0);
    assert_eq!(s.last_index(), 0);
    assert_eq!(s.dir(), dir);
    assert_eq!(log_files(&dir), [segment_name(1)]);
    assert_eq!(fs::read(seg(&dir, 1)).unwrap(), MAGIC);
    assert_eq!(s.segment_paths(), [seg(&dir, 1)]);
    let meta = fs::read_to_string(dir.join(META)).unwrap();
    assert_eq!(
        meta,
        format!(
            "format: 2\nnode_id: 1\ncluster_id: test\nincarnation: {:016x}\n",
            s.incarnation()
        )
    );
    assert!(rec.bootstrap.is_none() && rec.removed.is_none());
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
    let err = open_err(tmp.path());
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
    assert_eq!(file_len(&seg(tmp.path(), 1)), MAGIC.len() as u64);
    s.append(&[entry(1, 1)]).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, rec) = open(tmp.path());
    assert_eq!(rec.entries, vec![entry(1, 1)]);
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
    // Small enough segments that the log spans several, and the
    // truncation crosses into an earlier one.
    let (mut s, _) = open_small(tmp.path(), 16 * 1024);
    let all: Vec<Entry> = (1..=10_000).map(|i| entry(i, 1 + i / 1000)).collect();
    for batch in all.chunks(97) {
        s.append(batch).unwrap();
        s.sync().unwrap();
    }
    let files = s.segment_paths().len();
    assert!(files > 5, "{files} segments");
    s.truncate_after(9_500).unwrap();
    s.append(&all[9_500..]).unwrap();
    s.sync().unwrap();
    drop(s);
    let (s, rec) = open_small(tmp.path(), 16 * 1024);
    assert_eq!(s.last_index(), 10_000);
    assert_eq!(rec.entries, all);
}

// ---------------------------------------------------------------------------
// Segments

#[test]
fn segments_rotate_at_the_size_and_are_named_by_their_first_index() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = open_small(dir, SMALL);
    for batch in entries(1..=12, 1).chunks(3) {
        s.append(batch).unwrap();
    }
    s.sync().unwrap();
    // Each batch of three records fills a segment past its size, so the next batch starts a new one; a batch is never
    // split.
    let names: Vec<String> = [1, 4, 7, 10].map(segment_name).to_vec();
    assert_eq!(log_files(dir), names);
    assert_eq!(
        s.segment_paths(),
        names.iter().map(|n| dir.join(n)).collect::<Vec<_>>()
    );
    for name in &names {
        let bytes = fs::read(dir.join(name)).unwrap();
        assert!(bytes.starts_with(MAGIC), "{name}");
        assert_eq!(offsets(&dir.join(name)).len(), 3, "{name}");
    }
    drop(s);
    let (_, rec) = open_small(dir, SMALL);
    assert_eq!(rec.entries, entries(1..=12, 1));
}

#[test]
fn compaction_deletes_whole_segments_oldest_first_never_the_last() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = open_small(dir, SMALL);
    for batch in entries(1..=12, 1).chunks(3) {
        s.append(batch).unwrap();
        s.sync().unwrap();
    }
    // Entry 5 is in the segment of 4..=6, which keeps it.
    s.compact(5).unwrap();
    assert_eq!(log_files(dir), [4, 7, 10].map(segment_name));
    s.compact(6).unwrap();
    assert_eq!(log_files(dir), [7, 10].map(segment_name));
    // Everything covered: the last segment stays, with the last entry.
    s.compact(100).unwrap();
    assert_eq!(log_files(dir), [segment_name(10)]);
    assert_eq!(s.last_index(), 12);
    s.append(&[entry(13, 1)]).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, rec) = open_small(dir, SMALL);
    assert_eq!(rec.entries, entries(10..=13, 1));
}

#[test]
fn truncation_spanning_segments_deletes_the_later_ones() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = open_small(dir, SMALL);
    for batch in entries(1..=12, 1).chunks(3) {
        s.append(batch).unwrap();
    }
    s.sync().unwrap();
    trace::take();
    s.truncate_after(5).unwrap();
    assert_eq!(
        trace::take(),
        [
            format!("remove {}", seg(dir, 10).display()),
            format!("remove {}", seg(dir, 7).display()),
            format!("truncate {}", seg(dir, 4).display()),
        ],
        "newest first, so a crash leaves a prefix of the log"
    );
    assert_eq!(log_files(dir), [1, 4].map(segment_name));
    s.append(&entries(6..=7, 2)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, rec) = open_small(dir, SMALL);
    let mut expected = entries(1..=5, 1);
    expected.extend(entries(6..=7, 2));
    assert_eq!(rec.entries, expected);
}

#[test]
fn a_truncation_is_durable_before_anything_is_written_after_it() {
    // A crash after a truncation and an append could otherwise keep the
    // new records but undo the cut: new records, then zeros, then the old
    // ones, which recovery must call corrupt.
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = open_small(dir, SMALL);
    for batch in entries(1..=9, 1).chunks(3) {
        s.append(batch).unwrap();
    }
    s.sync().unwrap();
    trace::take();
    s.truncate_after(5).unwrap();
    s.truncate_after(4).unwrap();
    s.append(&entries(5..=5, 2)).unwrap();
    s.append(&entries(6..=6, 2)).unwrap();
    s.sync().unwrap();
    let last = seg(dir, 4);
    assert_eq!(
        trace::take(),
        [
            format!("remove {}", seg(dir, 7).display()),
            format!("truncate {}", last.display()),
            format!("truncate {}", last.display()),
            format!("fsync {}", last.display()),
            format!("fsync dir {}", dir.display()),
            format!("write {}", last.display()),
            format!("write {}", last.display()),
            format!("fsync {}", last.display()),
        ],
        "one fsync for the cuts, before the first write after them"
    );
    drop(s);
    let (_, rec) = open_small(dir, SMALL);
    let mut expected = entries(1..=4, 1);
    expected.extend(entries(5..=6, 2));
    assert_eq!(rec.entries, expected);
}

#[test]
fn a_crash_after_a_durable_truncation_and_a_torn_append_recovers() {
    // What a crash can leave once the cut is durable before the append: the
    // cut file, then part of the new batch, then zeros.
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (offsets_before, path) = log_with(dir, 6);
    let (mut s, _) = open(dir);
    s.truncate_after(3).unwrap();
    s.append(&entries(4..=6, 2)).unwrap();
    drop(s);
    let offsets_after = offsets(&path);
    assert_eq!(offsets_after[3], offsets_before[3]);
    let end = file_len(&path);
    set_len(&path, offsets_after[4] + 5);
    set_len(&path, end);
    let (_, rec) = open(dir);
    let mut expected = entries(1..=3, 1);
    expected.push(entry(4, 2));
    assert_eq!(rec.entries, expected);
}

#[test]
fn one_write_per_batch_and_a_dir_fsync_only_after_a_new_segment() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = open_small(dir, SMALL);
    trace::take();
    s.append(&entries(1..=3, 1)).unwrap();
    s.sync().unwrap();
    let first = seg(dir, 1);
    assert_eq!(
        trace::take(),
        [
            format!("write {}", first.display()),
            format!("fsync {}", first.display()),
        ]
    );
    // The first segment is full: the next batch starts a new one, in one
    // write with its header, after making the full one durable.
    s.append(&entries(4..=6, 1)).unwrap();
    s.sync().unwrap();
    let second = seg(dir, 4);
    assert_eq!(
        trace::take(),
        [
            format!("fsync {}", first.display()),
            format!("create {}", second.display()),
            format!("write {}", second.display()),
            format!("fsync {}", second.display()),
            format!("fsync dir {}", dir.display()),
        ]
    );
}

#[test]
fn open_fsyncs_every_log_file_and_the_dir_before_trusting_them() {
    // A node killed after writing but before its fsync restarts and finds
    // the writes in the page cache: they must be durable before it
    // acknowledges anything.
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = open_small(dir, SMALL);
    for batch in entries(1..=6, 1).chunks(3) {
        s.append(batch).unwrap();
    }
    drop(s);
    trace::take();
    let (mut s, _) = open_small(dir, SMALL);
    let events = trace::take();
    assert_eq!(
        events,
        [
            format!("fsync {}", seg(dir, 1).display()),
            format!("fsync {}", seg(dir, 4).display()),
            format!("fsync dir {}", dir.display()),
        ],
        "the dir fsync also makes a hard_state renamed into place durable"
    );
    // A second recover reads (and syncs) the files again.
    s.recover().unwrap();
    assert_eq!(trace::take(), events);
}

// ---------------------------------------------------------------------------
// Damage

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
    set_len(&log, offsets[4] + HEADER + 2);
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
fn a_long_tail_of_zeros_is_read_in_pieces_and_repaired() {
    // Far more zeros than the reader's buffer: the scan streams them.
    let tmp = tempdir().unwrap();
    let (_, log) = log_with(tmp.path(), 5);
    let end = file_len(&log);
    set_len(&log, end + 3 * 1024 * 1024 + 17);
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
    flip_byte(&log, offsets[4] + HEADER);
    set_len(&log, file_len(&log) + 100);
    assert_repaired(tmp.path(), 4, offsets[4]);
}

#[test]
fn damaged_last_header_followed_by_zeros_is_repaired() {
    let tmp = tempdir().unwrap();
    let (offsets, log) = log_with(tmp.path(), 5);
    flip_byte(&log, offsets[4] + 9);
    // Its payload is cut off too: all that follows the header is zeros.
    let end = file_len(&log);
    set_len(&log, offsets[4] + HEADER);
    set_len(&log, end);
    assert_repaired(tmp.path(), 4, offsets[4]);
}

#[test]
fn flipped_byte_in_middle_record_is_corruption() {
    let tmp = tempdir().unwrap();
    let (offsets, log) = log_with(tmp.path(), 5);
    flip_byte(&log, offsets[2] + HEADER + 1);
    let before = fs::read(&log).unwrap();
    let err = open_err(tmp.path());
    assert_corrupt_at(&err, &log, Some(offsets[2]));
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert_eq!(
        fs::read(&log).unwrap(),
        before,
        "the file must be left alone"
    );
}

#[test]
fn damaged_length_in_middle_record_is_corruption_with_file_and_offset() {
    // A length damaged to a larger value (running past the end of the
    // file) or a smaller one must not be taken for a torn tail, which would
    // silently drop every later (synced, acknowledged) record.
    for (byte, mask) in [(0, 0xff), (3, 0x01), (2, 0x40)] {
        let tmp = tempdir().unwrap();
        let (offsets, log) = log_with(tmp.path(), 5);
        let mut bytes = fs::read(&log).unwrap();
        bytes[(offsets[1] + byte) as usize] ^= mask;
        fs::write(&log, &bytes).unwrap();
        let err = open_err(tmp.path());
        assert_corrupt_at(&err, &log, Some(offsets[1]));
        assert!(err.to_string().contains("header checksum"), "{err}");
        assert_eq!(
            fs::read(&log).unwrap(),
            bytes,
            "the file must be left alone"
        );
    }
}

#[test]
fn intact_record_with_an_impossible_length_is_corruption() {
    // The header checks out, so a writer put this there: not a torn write,
    // even at the end.
    let tmp = tempdir().unwrap();
    let (offsets, log) = log_with(tmp.path(), 2);
    let mut header = [0u8; 12];
    header[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    let crc = crc32fast::hash(&header[..8]);
    header[8..].copy_from_slice(&crc.to_be_bytes());
    append_bytes(&log, &header);
    let err = open_err(tmp.path());
    assert_corrupt_at(&err, &log, Some(file_len(&log) - 12));
    assert_eq!(offsets.len(), 2);
}

#[test]
fn out_of_order_index_on_disk_is_corruption() {
    let tmp = tempdir().unwrap();
    drop(open(tmp.path()));
    let log = seg(tmp.path(), 1);
    let mut bytes = MAGIC.to_vec();
    encode_entry(&entry(1, 1), &mut bytes, &log).unwrap();
    let second = bytes.len() as u64;
    encode_entry(&entry(3, 1), &mut bytes, &log).unwrap();
    fs::write(&log, bytes).unwrap();
    let err = open_err(tmp.path());
    assert_corrupt_at(&err, &log, Some(second));
}

#[test]
fn decreasing_term_on_disk_is_corruption() {
    let tmp = tempdir().unwrap();
    drop(open(tmp.path()));
    let log = seg(tmp.path(), 1);
    let mut bytes = MAGIC.to_vec();
    encode_entry(&entry(1, 2), &mut bytes, &log).unwrap();
    encode_entry(&entry(2, 1), &mut bytes, &log).unwrap();
    fs::write(&log, bytes).unwrap();
    let err = open_err(tmp.path());
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

#[test]
fn wrong_magic_is_corruption() {
    let tmp = tempdir().unwrap();
    log_with(tmp.path(), 2);
    let log = seg(tmp.path(), 1);
    flip_byte(&log, 0);
    let err = open_err(tmp.path());
    assert_corrupt_at(&err, &log, None);
}

#[test]
fn a_segment_whose_first_entry_does_not_match_its_name_is_corruption() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = open_small(dir, SMALL);
    for batch in entries(1..=6, 1).chunks(3) {
        s.append(batch).unwrap();
        s.sync().unwrap();
    }
    drop(s);
    fs::rename(seg(dir, 4), seg(dir, 5)).unwrap();
    let err = open_err(dir);
    assert_corrupt_at(&err, &seg(dir, 5), Some(MAGIC.len() as u64));
    assert!(err.to_string().contains("expected 5"), "{err}");
}

#[test]
fn a_gap_between_segments_is_corruption() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = open_small(dir, SMALL);
    for batch in entries(1..=9, 1).chunks(3) {
        s.append(batch).unwrap();
        s.sync().unwrap();
    }
    drop(s);
    fs::remove_file(seg(dir, 4)).unwrap();
    let before = snapshot_files(dir);
    let err = open_err(dir);
    assert_corrupt_at(&err, &seg(dir, 7), None);
    let msg = err.to_string();
    assert!(
        msg.contains("missing") && msg.contains(&segment_name(1)),
        "{msg}"
    );
    assert_eq!(snapshot_files(dir), before);
}

#[test]
fn damage_in_a_closed_segment_is_corruption_even_if_it_looks_torn() {
    // Only the last segment can have a torn tail: every earlier one was
    // made durable before a later one was created.
    for damage in ["cut", "zeros", "flip"] {
        let tmp = tempdir().unwrap();
        let dir = tmp.path();
        let (mut s, _) = open_small(dir, SMALL);
        for batch in entries(1..=9, 1).chunks(3) {
            s.append(batch).unwrap();
            s.sync().unwrap();
        }
        drop(s);
        let closed = seg(dir, 4);
        let last_record = offsets(&closed)[2];
        let end = file_len(&closed);
        match damage {
            "cut" => set_len(&closed, last_record + 5),
            "zeros" => {
                set_len(&closed, last_record);
                set_len(&closed, end);
            }
            _ => flip_byte(&closed, end - 1),
        }
        let before = snapshot_files(dir);
        let err = open_err(dir);
        assert_corrupt_at(&err, &closed, Some(last_record));
        assert_eq!(snapshot_files(dir), before, "{damage}: nothing touched");
    }
}

#[test]
fn torn_tail_in_the_last_segment_is_repaired() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = open_small(dir, SMALL);
    for batch in entries(1..=9, 1).chunks(3) {
        s.append(batch).unwrap();
        s.sync().unwrap();
    }
    drop(s);
    let last = seg(dir, 7);
    let cut = offsets(&last)[1];
    set_len(&last, cut + 7);
    let (mut s, rec) = open_small(dir, SMALL);
    assert_eq!(rec.entries, entries(1..=7, 1));
    assert_eq!(file_len(&last), cut);
    s.append(&entries(8..=8, 2)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, rec) = open_small(dir, SMALL);
    assert_eq!(rec.entries.len(), 8);
}

#[test]
fn a_torn_new_segment_is_dropped() {
    // A crash right after a segment was created: its header (and first
    // batch) only partly reached the disk.
    for kept in [0, 3, 8] {
        let tmp = tempdir().unwrap();
        let dir = tmp.path();
        let (mut s, _) = open_small(dir, SMALL);
        for batch in entries(1..=6, 1).chunks(3) {
            s.append(batch).unwrap();
            s.sync().unwrap();
        }
        drop(s);
        let new = seg(dir, 4);
        let len = file_len(&new);
        set_len(&new, kept);
        set_len(&new, len);
        let (mut s, rec) = open_small(dir, SMALL);
        assert_eq!(rec.entries, entries(1..=3, 1), "kept {kept}");
        // It goes on where the log ends, in the repaired segment.
        s.append(&entries(4..=4, 2)).unwrap();
        s.sync().unwrap();
        drop(s);
        let (_, rec) = open_small(dir, SMALL);
        assert_eq!(rec.entries.len(), 4);
        assert_eq!(log_files(dir), [1, 4].map(segment_name));
    }
}

#[test]
fn missing_log_or_hard_state_is_an_error_never_an_empty_log() {
    for victim in ["log", HARD_STATE] {
        let tmp = tempdir().unwrap();
        let dir = tmp.path();
        let (mut s, _) = open_small(dir, SMALL);
        for batch in entries(1..=6, 1).chunks(3) {
            s.append(batch).unwrap();
            s.sync().unwrap();
        }
        drop(s);
        let victims = match victim {
            "log" => log_files(dir),
            _ => vec![victim.to_string()],
        };
        for name in &victims {
            fs::remove_file(dir.join(name)).unwrap();
        }
        let err = open_err(dir);
        assert!(matches!(err, StorageError::Missing { .. }), "{err}");
        assert!(err.to_string().contains(victim), "{err}");
        for name in &victims {
            assert!(!dir.join(name).exists(), "{name} must not be recreated");
        }
    }
}

// ---------------------------------------------------------------------------
// Commit index

#[test]
fn the_commit_index_survives_reopening_and_never_exceeds_the_log() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = open_small(dir, 200);
    s.append(&entries(1..=5, 1)).unwrap();
    s.save_commit(3).unwrap();
    s.sync().unwrap();
    drop(s);
    let (mut s, rec) = open_small(dir, 200);
    assert_eq!(rec.commit_index, 3);

    // Written only when it increased.
    let len = file_len(&seg(dir, 1));
    s.save_commit(2).unwrap();
    s.save_commit(3).unwrap();
    s.sync().unwrap();
    assert_eq!(file_len(&seg(dir, 1)), len);
    // Saved with no append after it: the sync writes it.
    s.save_commit(5).unwrap();
    s.sync().unwrap();
    assert!(file_len(&seg(dir, 1)) > len);
    drop(s);
    let (mut s, rec) = open_small(dir, 200);
    assert_eq!(rec.commit_index, 5);

    // Not synced: may be lost, and is here (nothing was written).
    s.save_commit(5).unwrap();
    s.append(&entries(6..=9, 1)).unwrap();
    s.save_commit(8).unwrap();
    drop(s);
    let (mut s, rec) = open_small(dir, 200);
    assert_eq!(rec.commit_index, 5);
    assert_eq!(rec.entries.len(), 9, "appends reach the file unsynced");

    // A commit record past the entries a truncation left counts only up
    // to the last entry (a hand-made record: a node never commits entries
    // it later truncates).
    let path = seg(dir, 1);
    let mut record = Vec::new();
    encode_commit(9, &mut record, &path).unwrap();
    append_bytes(&path, &record);
    s.recover().unwrap();
    s.truncate_after(7).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, rec) = open_small(dir, 200);
    assert_eq!(rec.entries.len(), 7);
    assert_eq!(rec.commit_index, 7);
}

#[test]
fn every_new_segment_repeats_the_commit_index_so_compaction_keeps_it() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = open_small(dir, SMALL);
    s.append(&entries(1..=3, 1)).unwrap();
    s.save_commit(3).unwrap();
    s.sync().unwrap();
    for batch in entries(4..=9, 1).chunks(3) {
        s.append(batch).unwrap();
        s.sync().unwrap();
    }
    s.compact(6).unwrap();
    assert_eq!(log_files(dir), [segment_name(7)]);
    drop(s);
    let (_, rec) = open_small(dir, SMALL);
    assert_eq!(rec.entries, entries(7..=9, 1));
    assert_eq!(rec.commit_index, 3);
}

// ---------------------------------------------------------------------------
// Reset and the empty log

#[test]
fn reset_empties_the_log_durably_and_keeps_one_file() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = open_small(dir, SMALL);
    for batch in entries(1..=9, 1).chunks(3) {
        // Written with the batch, in the same write.
        s.save_commit(batch[0].index - 1).unwrap();
        s.append(batch).unwrap();
    }
    s.sync().unwrap();
    trace::take();
    s.reset().unwrap();
    assert_eq!(
        trace::take(),
        [
            format!("remove {}", seg(dir, 7).display()),
            format!("remove {}", seg(dir, 4).display()),
            format!("fsync dir {}", dir.display()),
            format!("truncate {}", seg(dir, 1).display()),
            format!("fsync {}", seg(dir, 1).display()),
        ]
    );
    assert_eq!(log_files(dir), [segment_name(1)]);
    assert_eq!(fs::read(seg(dir, 1)).unwrap(), MAGIC);
    assert_eq!(s.last_index(), 0);
    drop(s);
    let (_, rec) = open_small(dir, SMALL);
    assert!(rec.entries.is_empty());
    assert_eq!(rec.commit_index, 0);
}

#[test]
fn after_a_reset_the_log_starts_at_any_index_in_a_segment_named_by_it() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = open_small(dir, SMALL);
    s.append(&entries(1..=3, 1)).unwrap();
    s.sync().unwrap();
    s.reset().unwrap();
    s.append(&entries(501..=502, 4)).unwrap();
    // The placeholder stays until the new segment's name is durable.
    assert_eq!(log_files(dir), [1, 501].map(segment_name));
    s.sync().unwrap();
    assert_eq!(log_files(dir), [segment_name(501)]);
    assert_eq!(s.segment_paths(), [seg(dir, 501)]);
    drop(s);
    let (mut s, rec) = open_small(dir, SMALL);
    assert_eq!(rec.entries, entries(501..=502, 4));

    // Lower than before, too.
    s.reset().unwrap();
    s.append(&entries(20..=20, 5)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (mut s, rec) = open_small(dir, SMALL);
    assert_eq!(rec.entries, entries(20..=20, 5));
    assert_eq!(log_files(dir), [segment_name(20)]);

    // At the placeholder's own index, into the placeholder itself.
    s.reset().unwrap();
    s.append(&entries(20..=21, 6)).unwrap();
    s.sync().unwrap();
    assert_eq!(log_files(dir), [segment_name(20)]);
    drop(s);
    let (_, rec) = open_small(dir, SMALL);
    assert_eq!(rec.entries, entries(20..=21, 6));
}

#[test]
fn a_placeholder_left_by_a_crash_is_removed_at_recovery() {
    // A crash after the first append to an emptied log, before the sync
    // that deletes the placeholder; the placeholder may sort either side.
    for start in [3, 900] {
        let tmp = tempdir().unwrap();
        let dir = tmp.path();
        let (mut s, _) = open_small(dir, SMALL);
        s.append(&entries(1..=500, 1)).unwrap();
        s.compact(400).unwrap();
        s.append(&entries(501..=501, 1)).unwrap();
        s.sync().unwrap();
        s.compact(450).unwrap();
        s.reset().unwrap();
        let placeholder = s.segment_paths();
        assert_eq!(placeholder, [seg(dir, 1)]);
        s.append(&entries(start..=start + 1, 2)).unwrap();
        drop(s);
        assert!(seg(dir, 1).exists());
        let (_, rec) = open_small(dir, SMALL);
        assert_eq!(rec.entries, entries(start..=start + 1, 2), "start {start}");
        assert_eq!(log_files(dir), [segment_name(start)]);
    }
}

#[test]
fn a_zeroed_first_segment_before_later_ones_is_corruption() {
    // A segment whose whole content is gone is not a placeholder when
    // later segments hold entries: the log would silently lose its start.
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, _) = open_small(dir, SMALL);
    for batch in entries(1..=6, 1).chunks(3) {
        s.append(batch).unwrap();
        s.sync().unwrap();
    }
    drop(s);
    let first = seg(dir, 1);
    let len = file_len(&first);
    set_len(&first, 0);
    set_len(&first, len);
    let err = open_err(dir);
    assert_corrupt_at(&err, &first, Some(0));
}

// ---------------------------------------------------------------------------
// The legacy format

#[test]
fn a_legacy_log_is_read_first_and_new_entries_go_to_segments_across_reopening() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    make_legacy(dir, &entries(1..=5, 1));
    let legacy = fs::read(dir.join(LEGACY_NAME)).unwrap();
    let (mut s, rec) = open_small(dir, SMALL);
    let incarnation = s.incarnation();
    assert_eq!(rec.entries, entries(1..=5, 1));
    assert_eq!(s.segment_paths(), [dir.join(LEGACY_NAME)]);
    s.append(&entries(6..=8, 2)).unwrap();
    s.save_commit(7).unwrap();
    s.sync().unwrap();
    for batch in entries(9..=14, 2).chunks(3) {
        s.append(batch).unwrap();
        s.sync().unwrap();
    }
    drop(s);
    assert_eq!(
        fs::read(dir.join(LEGACY_NAME)).unwrap(),
        legacy,
        "never written"
    );
    assert_eq!(
        log_files(dir),
        [
            "log".to_string(),
            segment_name(6),
            segment_name(9),
            segment_name(12)
        ]
    );
    let (mut s, rec) = open_small(dir, SMALL);
    let mut expected = entries(1..=5, 1);
    expected.extend(entries(6..=14, 2));
    assert_eq!(rec.entries, expected);
    assert_eq!(rec.commit_index, 7);
    assert_eq!(s.incarnation(), incarnation);
    assert_eq!(
        fs::read_to_string(dir.join(META)).unwrap(),
        format!("format: 1\nnode_id: 1\ncluster_id: {CLUSTER}\nincarnation: {incarnation:016x}\n"),
        "meta is rewritten once, to add the incarnation, and keeps its format"
    );

    // Compaction deletes it like any segment once it is covered.
    s.compact(4).unwrap();
    assert!(dir.join(LEGACY_NAME).exists());
    s.compact(5).unwrap();
    assert!(!dir.join(LEGACY_NAME).exists());
    drop(s);
    let (_, rec) = open_small(dir, SMALL);
    assert_eq!(rec.entries, expected[5..]);
}

#[test]
fn a_commit_index_saved_on_a_legacy_log_goes_into_a_segment() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    make_legacy(dir, &entries(1..=5, 1));
    let (mut s, _) = open(dir);
    s.save_commit(5).unwrap();
    s.sync().unwrap();
    assert_eq!(log_files(dir), ["log".to_string(), segment_name(6)]);
    drop(s);
    let (mut s, rec) = open(dir);
    assert_eq!(rec.commit_index, 5);
    // The new segment, holding no entry yet, takes the next ones.
    s.append(&entries(6..=6, 1)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, rec) = open(dir);
    assert_eq!(rec.entries, entries(1..=6, 1));
    assert_eq!(log_files(dir), ["log".to_string(), segment_name(6)]);
}

#[test]
fn a_truncation_into_a_legacy_log_cuts_it_and_a_reset_empties_it() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    make_legacy(dir, &entries(1..=5, 1));
    let (mut s, _) = open(dir);
    s.append(&entries(6..=7, 1)).unwrap();
    s.sync().unwrap();
    s.truncate_after(3).unwrap();
    assert!(!seg(dir, 6).exists());
    s.append(&entries(4..=4, 3)).unwrap();
    s.sync().unwrap();
    assert_eq!(log_files(dir), ["log".to_string(), segment_name(4)]);
    drop(s);
    let (mut s, rec) = open(dir);
    let mut expected = entries(1..=3, 1);
    expected.push(entry(4, 3));
    assert_eq!(rec.entries, expected);

    s.reset().unwrap();
    assert_eq!(log_files(dir), ["log"]);
    assert_eq!(fs::read(dir.join(LEGACY_NAME)).unwrap(), LEGACY_MAGIC);
    s.append(&entries(30..=30, 4)).unwrap();
    s.sync().unwrap();
    assert_eq!(log_files(dir), [segment_name(30)]);
    drop(s);
    let (_, rec) = open(dir);
    assert_eq!(rec.entries, entries(30..=30, 4));
}

#[test]
fn a_legacy_log_keeps_its_own_recovery_rules() {
    // A torn tail while it is the last file is repaired...
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    make_legacy(dir, &entries(1..=5, 1));
    let legacy = dir.join(LEGACY_NAME);
    let len = file_len(&legacy);
    set_len(&legacy, len - 3);
    let (mut s, rec) = open(dir);
    assert_eq!(rec.entries, entries(1..=4, 1));
    // ...but once segments follow it, damage in it is corruption.
    s.append(&entries(5..=5, 1)).unwrap();
    s.sync().unwrap();
    drop(s);
    let len = file_len(&legacy);
    flip_byte(&legacy, len - 1);
    let err = open_err(dir);
    assert!(
        matches!(&err, StorageError::Corrupt { path, offset: Some(_), .. } if *path == legacy),
        "{err}"
    );
}

#[test]
fn out_of_order_index_in_a_legacy_log_is_corruption() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    make_legacy(dir, &[entry(1, 1), entry(3, 1)]);
    let err = open_err(dir);
    assert!(
        matches!(
            &err,
            StorageError::Corrupt {
                offset: Some(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("expected 2"), "{err}");
}

// ---------------------------------------------------------------------------
// Refusals and initialization

#[test]
fn wrong_node_id_is_refused() {
    let tmp = tempdir().unwrap();
    drop(DiskStore::open(tmp.path(), 2, CLUSTER).unwrap());
    let err = DiskStore::open(tmp.path(), 3, CLUSTER).err().unwrap();
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
    drop(DiskStore::open(tmp.path(), 1, "prod").unwrap());
    let err = DiskStore::open(tmp.path(), 1, "staging").err().unwrap();
    assert!(matches!(err, StorageError::WrongCluster { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("prod") && msg.contains("staging"), "{msg}");
    assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
}

#[test]
fn multi_line_cluster_id_is_refused() {
    let tmp = tempdir().unwrap();
    let err = DiskStore::open(tmp.path(), 1, "a\nnode_id: 9")
        .err()
        .unwrap();
    assert!(
        matches!(err, StorageError::InvalidClusterId { .. }),
        "{err}"
    );
    assert!(!tmp.path().join(META).exists());
}

#[test]
fn unknown_meta_format_is_refused() {
    let tmp = tempdir().unwrap();
    drop(open(tmp.path()));
    fs::write(
        tmp.path().join(META),
        format!("format: 3\nnode_id: 1\ncluster_id: {CLUSTER}\n"),
    )
    .unwrap();
    let err = open_err(tmp.path());
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

#[test]
fn second_open_is_locked_until_first_is_dropped() {
    let tmp = tempdir().unwrap();
    let (first, _) = open(tmp.path());
    let err = open_err(tmp.path());
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    assert!(err.to_string().contains(&tmp.path().display().to_string()));
    drop(first);
    assert!(DiskStore::open(tmp.path(), 1, CLUSTER).is_ok());
}

#[test]
fn unrelated_file_without_meta_is_refused() {
    let tmp = tempdir().unwrap();
    fs::write(tmp.path().join("photos.zip"), b"precious").unwrap();
    let err = open_err(tmp.path());
    assert!(matches!(err, StorageError::NotADataDir { .. }), "{err}");
    assert!(err.to_string().contains("photos.zip"), "{err}");
    assert!(!tmp.path().join(META).exists());
    assert!(log_files(tmp.path()).is_empty());
    assert_eq!(
        fs::read(tmp.path().join("photos.zip")).unwrap(),
        b"precious"
    );
}

#[test]
fn log_without_meta_is_refused() {
    for name in [segment_name(1), LEGACY_NAME.to_string()] {
        let tmp = tempdir().unwrap();
        let dir = tmp.path();
        if name == LEGACY_NAME {
            make_legacy(dir, &entries(1..=2, 1));
        } else {
            log_with(dir, 2);
        }
        fs::remove_file(dir.join(META)).unwrap();
        let before = snapshot_files(dir);
        let err = open_err(dir);
        assert!(matches!(err, StorageError::NotADataDir { .. }), "{err}");
        assert!(err.to_string().contains("has a log"), "{err}");
        assert_eq!(snapshot_files(dir), before);
    }
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
    let err = open_err(tmp.path());
    assert!(matches!(err, StorageError::NotADataDir { .. }), "{err}");
}

#[test]
fn leftovers_of_interrupted_initialization_are_reused() {
    // A crash during initialization, by this release or by one that wrote
    // the legacy `log`: part of a log header written, a default hard state
    // in place, meta not yet renamed.
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    fs::write(dir.join(LOCK), b"").unwrap();
    fs::write(seg(dir, 1), &MAGIC[..3]).unwrap();
    fs::write(dir.join(LEGACY_NAME), &LEGACY_MAGIC[..5]).unwrap();
    write_hard_state(dir, &HardState::default()).unwrap();
    fs::write(dir.join(HARD_STATE_TMP), b"").unwrap();
    fs::write(dir.join(META_TMP), b"format: 2\nnode_i").unwrap();
    let (mut s, rec) = open(dir);
    assert!(rec.entries.is_empty());
    assert_eq!(rec.hard_state, HardState::default());
    assert_eq!(log_files(dir), [segment_name(1)]);
    assert_eq!(fs::read(seg(dir, 1)).unwrap(), MAGIC);
    s.append(&[entry(1, 1)]).unwrap();
    s.sync().unwrap();
}

#[test]
fn a_snapshots_directory_is_tolerated() {
    // Without meta (it may be made before the dir is initialized) and
    // with it; nothing in it is looked at.
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir(dir.join(SNAPSHOTS)).unwrap();
    fs::write(dir.join(SNAPSHOTS).join("anything"), b"not ours").unwrap();
    let (mut s, _) = open(dir);
    s.append(&entries(1..=2, 1)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, rec) = open(dir);
    assert_eq!(rec.entries.len(), 2);
    assert_eq!(
        fs::read(dir.join(SNAPSHOTS).join("anything")).unwrap(),
        b"not ours"
    );
    // A file called `snapshots` is still foreign.
    let other = tempdir().unwrap();
    fs::write(other.path().join(SNAPSHOTS), b"x").unwrap();
    let err = open_err(other.path());
    assert!(matches!(err, StorageError::NotADataDir { .. }), "{err}");
}

// ---------------------------------------------------------------------------
// Incarnation

/// The incarnation in `dir`'s meta, read as text.
fn incarnation_in_meta(dir: &Path) -> String {
    let meta = fs::read_to_string(dir.join(META)).unwrap();
    let lines: Vec<&str> = meta
        .lines()
        .filter_map(|l| l.strip_prefix("incarnation: "))
        .collect();
    assert_eq!(lines.len(), 1, "{meta}");
    lines[0].to_string()
}

#[test]
fn the_incarnation_is_random_nonzero_in_meta_and_kept_across_reopening() {
    let tmp = tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (store_a, _) = open(&a);
    let (store_b, _) = open(&b);
    let (first_a, first_b) = (store_a.incarnation(), store_b.incarnation());
    assert_ne!(first_a, 0);
    assert_ne!(first_b, 0);
    assert_ne!(first_a, first_b, "two fresh dirs, two incarnations");
    assert_eq!(incarnation_in_meta(&a), format!("{first_a:016x}"));
    drop((store_a, store_b));
    for _ in 0..2 {
        let (store, _) = open(&a);
        assert_eq!(store.incarnation(), first_a);
    }
    assert_eq!(incarnation_in_meta(&a), format!("{first_a:016x}"));

    // A wiped dir is a new incarnation of the same node.
    fs::remove_dir_all(&a).unwrap();
    let (store, _) = open(&a);
    assert_ne!(store.incarnation(), first_a);
}

#[test]
fn a_dir_initialized_without_an_incarnation_gets_one_once() {
    for format in [1, 2] {
        let tmp = tempdir().unwrap();
        let dir = tmp.path();
        // As an earlier release left it, with a log and a vote in it.
        let (mut s, _) = open(dir);
        s.append(&entries(1..=3, 1)).unwrap();
        s.sync().unwrap();
        let hard_state = HardState {
            current_term: 2,
            voted_for: Some(1),
        };
        s.save_hard_state(&hard_state).unwrap();
        drop(s);
        if format == 1 {
            make_legacy(dir, &entries(1..=3, 1));
        }
        let old_meta = format!("format: {format}\nnode_id: 1\ncluster_id: {CLUSTER}\n");
        fs::write(dir.join(META), &old_meta).unwrap();

        let (s, rec) = open(dir);
        let incarnation = s.incarnation();
        assert_ne!(incarnation, 0);
        assert_eq!(rec.entries, entries(1..=3, 1), "format {format}");
        assert_eq!(rec.hard_state, hard_state);
        assert_eq!(
            fs::read_to_string(dir.join(META)).unwrap(),
            format!("{old_meta}incarnation: {incarnation:016x}\n"),
            "format {format}: the old lines kept, the new one after them"
        );
        assert!(!dir.join(META_TMP).exists());
        drop(s);
        let meta = fs::read(dir.join(META)).unwrap();
        let (s, _) = open(dir);
        assert_eq!(s.incarnation(), incarnation, "format {format}");
        assert_eq!(fs::read(dir.join(META)).unwrap(), meta, "written once");
    }
}

#[test]
fn a_meta_without_a_final_newline_gets_the_incarnation_on_a_line_of_its_own() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    drop(open(dir));
    fs::write(
        dir.join(META),
        format!("format: 2\nnode_id: 1\ncluster_id: {CLUSTER}"),
    )
    .unwrap();
    let (s, _) = open(dir);
    assert_eq!(
        fs::read_to_string(dir.join(META)).unwrap(),
        format!(
            "format: 2\nnode_id: 1\ncluster_id: {CLUSTER}\nincarnation: {:016x}\n",
            s.incarnation()
        )
    );
}

#[test]
fn a_refused_dir_without_an_incarnation_is_left_untouched() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    drop(open(dir));
    fs::write(
        dir.join(META),
        format!("format: 2\nnode_id: 1\ncluster_id: {CLUSTER}\n"),
    )
    .unwrap();
    let before = snapshot_files(dir);
    assert!(matches!(
        DiskStore::open(dir, 2, CLUSTER),
        Err(StorageError::WrongNode { .. })
    ));
    assert!(matches!(
        DiskStore::open(dir, 1, "other"),
        Err(StorageError::WrongCluster { .. })
    ));
    assert_eq!(snapshot_files(dir), before);
}

#[test]
fn a_malformed_incarnation_is_corruption_of_meta() {
    for bad in [
        "0000000000000000",
        "00000000000000001",
        "000000000000001",
        "00000000000000AB",
        "+00000000000000a",
        "000000000000000g",
        "",
    ] {
        let tmp = tempdir().unwrap();
        let dir = tmp.path();
        drop(open(dir));
        let meta = format!("format: 2\nnode_id: 1\ncluster_id: {CLUSTER}\nincarnation: {bad}\n");
        fs::write(dir.join(META), &meta).unwrap();
        let err = open_err(dir);
        assert_corrupt_at(&err, &dir.join(META), None);
        assert!(err.to_string().contains("incarnation"), "{bad:?}: {err}");
        assert_eq!(fs::read_to_string(dir.join(META)).unwrap(), meta);
    }
}

// ---------------------------------------------------------------------------
// Bootstrap configuration and removed marker

fn config() -> Configuration {
    Configuration::of_voters([
        (1, "10.0.0.1:7000".to_string()),
        (2, "10.0.0.2:7000".to_string()),
        (3, "10.0.0.3:7000".to_string()),
    ])
}

#[test]
fn the_bootstrap_configuration_is_durable_and_comes_back_after_reopening() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, rec) = open(dir);
    assert_eq!(rec.bootstrap, None, "a fresh dir has none");
    assert!(!dir.join(BOOTSTRAP).exists());
    trace::take();
    s.save_bootstrap(&config()).unwrap();
    assert_eq!(
        trace::take(),
        [format!("fsync dir {}", dir.display())],
        "durable when it returns"
    );
    assert!(!dir.join(BOOTSTRAP_TMP).exists());
    // The format: the encoded configuration, then its CRC-32.
    let bytes = fs::read(dir.join(BOOTSTRAP)).unwrap();
    let (encoded, crc) = bytes.split_at(bytes.len() - 4);
    assert_eq!(encoded, encode(&config()).unwrap());
    assert_eq!(crc, crc32fast::hash(encoded).to_be_bytes());
    assert_eq!(s.recover().unwrap().bootstrap, Some(config()));
    drop(s);
    let (_, rec) = open(dir);
    assert_eq!(rec.bootstrap, Some(config()));
    assert_eq!(rec.removed, None);
}

#[test]
fn the_removed_marker_is_durable_and_comes_back_after_reopening() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    let (mut s, rec) = open(dir);
    assert_eq!(rec.removed, None, "a fresh dir has none");
    s.save_bootstrap(&config()).unwrap();
    trace::take();
    s.save_removed(1234).unwrap();
    assert_eq!(trace::take(), [format!("fsync dir {}", dir.display())]);
    assert!(!dir.join(REMOVED_TMP).exists());
    let bytes = fs::read(dir.join(REMOVED)).unwrap();
    let (encoded, crc) = bytes.split_at(bytes.len() - 4);
    assert_eq!(encoded, encode(&1234u64).unwrap());
    assert_eq!(crc, crc32fast::hash(encoded).to_be_bytes());
    assert_eq!(s.recover().unwrap().removed, Some(1234));
    drop(s);
    let (_, rec) = open(dir);
    assert_eq!(rec.removed, Some(1234));
    assert_eq!(rec.bootstrap, Some(config()));
}

/// Every way a `bootstrap` or `removed` file can be damaged is corruption
/// naming it, and leaves it as it was.
#[test]
fn a_damaged_bootstrap_or_removed_is_corruption_naming_it() {
    for name in [BOOTSTRAP, REMOVED] {
        let tmp = tempdir().unwrap();
        let dir = tmp.path();
        let (mut s, _) = open(dir);
        s.save_bootstrap(&config()).unwrap();
        s.save_removed(77).unwrap();
        drop(s);
        let path = dir.join(name);
        let good = fs::read(&path).unwrap();
        // Garbage under a valid checksum: it is the decoding that fails.
        let mut undecodable = vec![0xff; 9];
        undecodable.extend_from_slice(&crc32fast::hash(&[0xff; 9]).to_be_bytes());
        let mut damaged = vec![
            (undecodable, "undecodable"),
            (good[..3].to_vec(), "too short"),
        ];
        damaged.push((Vec::new(), "too short"));
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            damaged.push((bad, ""));
        }
        for (bytes, why) in damaged {
            fs::write(&path, &bytes).unwrap();
            let err = open_err(dir);
            assert_corrupt_at(&err, &path, None);
            assert!(err.to_string().contains(why), "{name}: {err}");
            assert_eq!(fs::read(&path).unwrap(), bytes, "{name}: left alone");
        }
        fs::write(&path, &good).unwrap();
        let (_, rec) = open(dir);
        assert_eq!((rec.bootstrap, rec.removed), (Some(config()), Some(77)));
    }
}

#[test]
fn leftover_tmp_files_of_bootstrap_and_removed_are_ignored_and_overwritten() {
    let tmp = tempdir().unwrap();
    let dir = tmp.path();
    drop(open(dir));
    fs::write(dir.join(BOOTSTRAP_TMP), b"half a conf").unwrap();
    fs::write(dir.join(REMOVED_TMP), b"").unwrap();
    let (mut s, rec) = open(dir);
    assert_eq!((rec.bootstrap, rec.removed), (None, None));
    s.save_bootstrap(&config()).unwrap();
    s.save_removed(5).unwrap();
    assert!(!dir.join(BOOTSTRAP_TMP).exists());
    assert!(!dir.join(REMOVED_TMP).exists());
    drop(s);
    let (_, rec) = open(dir);
    assert_eq!((rec.bootstrap, rec.removed), (Some(config()), Some(5)));
}

#[test]
fn bootstrap_or_removed_without_meta_is_refused() {
    for name in [BOOTSTRAP, BOOTSTRAP_TMP, REMOVED, REMOVED_TMP] {
        let tmp = tempdir().unwrap();
        let dir = tmp.path();
        // An initialized dir that lost its meta.
        let (mut s, _) = open(dir);
        s.save_bootstrap(&config()).unwrap();
        s.save_removed(3).unwrap();
        drop(s);
        for other in [BOOTSTRAP, REMOVED] {
            fs::remove_file(dir.join(other)).unwrap();
        }
        fs::remove_file(dir.join(META)).unwrap();
        fs::write(dir.join(name), b"whatever it holds").unwrap();
        let before = snapshot_files(dir);
        let err = open_err(dir);
        assert!(matches!(err, StorageError::NotADataDir { .. }), "{err}");
        assert!(err.to_string().contains(name), "{err}");
        assert_eq!(snapshot_files(dir), before, "{name}: nothing touched");
    }
}
