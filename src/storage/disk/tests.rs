//! Tests of the data dir: round trips, every kind of damage, refusals.

use super::*;
use crate::raft::message::Payload;
use crate::storage::log_file::RECORD_HEADER;
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

fn open(dir: &Path) -> (DiskStore, Recovered) {
    let mut store = DiskStore::open(dir, 1, CLUSTER).unwrap();
    let recovered = store.recover().unwrap();
    (store, recovered)
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
    let err = DiskStore::open(tmp.path(), 1, CLUSTER).err().unwrap();
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
    let err = DiskStore::open(tmp.path(), 1, CLUSTER).err().unwrap();
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
    let err = DiskStore::open(tmp.path(), 1, CLUSTER).err().unwrap();
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
    let err = DiskStore::open(tmp.path(), 1, CLUSTER).err().unwrap();
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
    let err = DiskStore::open(tmp.path(), 1, CLUSTER).err().unwrap();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

#[test]
fn wrong_magic_is_corruption() {
    let tmp = tempdir().unwrap();
    drop(open(tmp.path()));
    let log = tmp.path().join(LOG);
    flip_byte(&log, 0);
    let err = DiskStore::open(tmp.path(), 1, CLUSTER).err().unwrap();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&log.display().to_string()));
}

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
fn second_open_is_locked_until_first_is_dropped() {
    let tmp = tempdir().unwrap();
    let (first, _) = open(tmp.path());
    let err = DiskStore::open(tmp.path(), 1, CLUSTER).err().unwrap();
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    assert!(err.to_string().contains(&tmp.path().display().to_string()));
    drop(first);
    assert!(DiskStore::open(tmp.path(), 1, CLUSTER).is_ok());
}

#[test]
fn missing_log_or_hard_state_is_an_error_never_an_empty_log() {
    for victim in [LOG, HARD_STATE] {
        let tmp = tempdir().unwrap();
        log_with(tmp.path(), 3);
        fs::remove_file(tmp.path().join(victim)).unwrap();
        let err = DiskStore::open(tmp.path(), 1, CLUSTER).err().unwrap();
        assert!(matches!(err, StorageError::Missing { .. }), "{err}");
        assert!(err.to_string().contains(victim), "{err}");
        assert!(!tmp.path().join(victim).exists(), "must not be recreated");
    }
}

#[test]
fn unrelated_file_without_meta_is_refused() {
    let tmp = tempdir().unwrap();
    fs::write(tmp.path().join("photos.zip"), b"precious").unwrap();
    let err = DiskStore::open(tmp.path(), 1, CLUSTER).err().unwrap();
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
    let err = DiskStore::open(tmp.path(), 1, CLUSTER).err().unwrap();
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
    let err = DiskStore::open(tmp.path(), 1, CLUSTER).err().unwrap();
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
