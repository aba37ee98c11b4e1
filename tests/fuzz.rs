//! Fuzzing of what a node reads from outside (issue 12): peer frames, the
//! data dir's log segments and small files, and snapshot files. A seeded
//! mutator (no extra dependency) feeds each parser random bytes, truncations
//! and mutations of valid input — bit flips, bytes set to interesting
//! values, lengths set huge, garbage appended, ranges cut or repeated — and
//! checks that it never panics, never allocates far beyond what it was given
//! (a global allocator here records the largest single allocation), and
//! round-trips what is valid.
//!
//! A few thousand cases run by default, in seconds; `RAFTNODE_FUZZ=N`
//! multiplies every count by N, and `RAFTNODE_FUZZ_SEED=S` starts from
//! another seed (each failure names the seed and case that reproduce it).

use raftnode::kv::{Command, Kv};
use raftnode::node::wire::{
    self, Hello, HelloReply, WireError, DEFAULT_MAX_FRAME, HANDSHAKE_MAX_FRAME,
};
use raftnode::node::StateMachine;
use raftnode::raft::membership::Configuration;
use raftnode::raft::message::{
    AppendResult, Entry, Envelope, HardState, Message, Payload, RejectHint, SnapshotResult,
};
use raftnode::storage::{
    DiskOptions, DiskStore, LogStore, SnapshotMeta, SnapshotReader, SnapshotWriter,
};
mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::TcpStream;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;
use support::fuzz::{cases, OneByte};

// ----- The largest allocation ----------------------------------------------

/// The system allocator, recording the largest single allocation each thread
/// makes (tests run on threads of their own, so they do not mix).
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the thread may be tearing down its locals.
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// What `f` returns, and the largest single allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(0));
    let value = f();
    (value, LARGEST.with(Cell::get))
}

// ----- Cases and the mutator -----------------------------------------------

/// Runs `case` `n` times, each with a generator seeded from the test's seed
/// and the case number; a failure names both.
fn fuzz(name: &str, n: usize, mut case: impl FnMut(&mut StdRng)) {
    let seed = std::env::var("RAFTNODE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0x5eed_f022);
    for i in 0..n {
        let mut rng = StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| case(&mut rng))) {
            let what = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{name}: case {i} of seed {seed} failed: {what}");
        }
    }
}

/// Values a parser is likely to trip on.
const INTERESTING: [u8; 10] = [0, 1, 0x7f, 0x80, 0xfb, 0xfc, 0xfd, 0xfe, 0xff, b'\n'];

/// Damages `bytes` in one to four random ways.
fn mutate(rng: &mut StdRng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.gen_range(1..=4) {
        let len = bytes.len();
        let at = rng.gen_range(0..=len);
        match rng.gen_range(0..9) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                bytes[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                bytes[i] = INTERESTING[rng.gen_range(0..INTERESTING.len())];
            }
            2 => bytes.truncate(at),
            3 => {
                let junk: Vec<u8> = (0..rng.gen_range(1..32)).map(|_| rng.gen()).collect();
                bytes.splice(at..at, junk);
            }
            4 => {
                let zeros = rng.gen_bool(0.5);
                let n = rng.gen_range(1..200);
                bytes.extend((0..n).map(|_| if zeros { 0 } else { rng.gen() }));
            }
            5 if len >= 4 => {
                // A length field set huge, in either byte order.
                let huge: u32 = [u32::MAX, 0x7fff_ffff, 0x0100_0001, 0x0400_0000, rng.gen()]
                    [rng.gen_range(0..5)];
                let i = rng.gen_range(0..=len - 4);
                let b = match rng.gen_bool(0.5) {
                    true => huge.to_be_bytes(),
                    false => huge.to_le_bytes(),
                };
                bytes[i..i + 4].copy_from_slice(&b);
            }
            6 if len >= 5 => {
                // A bincode varint length set huge: 253 then a u32.
                let i = rng.gen_range(0..=len - 5);
                bytes[i] = 0xfd;
                bytes[i + 1..i + 5]
                    .copy_from_slice(&rng.gen_range(1u32 << 20..=u32::MAX).to_le_bytes());
            }
            7 if len > 0 => {
                let end = rng.gen_range(at..=len);
                bytes.drain(at..end);
            }
            8 if len > 0 => {
                let start = rng.gen_range(0..len);
                let end = rng.gen_range(start..=len.min(start + 64));
                let copy = bytes[start..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => bytes.push(rng.gen()),
        }
    }
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = rng.gen_range(0..=max);
    (0..n).map(|_| rng.gen()).collect()
}

fn random_string(rng: &mut StdRng, max: usize) -> String {
    let n = rng.gen_range(0..=max);
    match rng.gen_range(0..3) {
        0 => (0..n).map(|_| rng.gen_range('a'..='z')).collect(),
        1 => (0..n).map(|_| rng.gen::<char>()).collect(),
        _ => format!("127.0.0.1:{}", rng.gen::<u16>()),
    }
}

fn random_u64(rng: &mut StdRng) -> u64 {
    match rng.gen_range(0..4) {
        0 => rng.gen_range(0..300),
        1 => u64::MAX - rng.gen_range(0..3),
        _ => rng.gen(),
    }
}

fn random_config(rng: &mut StdRng) -> Configuration {
    let n = rng.gen_range(1..6);
    Configuration::of_voters((1..=n).map(|id| (id, random_string(rng, 40))))
}

fn random_entry(rng: &mut StdRng, index: u64, term: u64) -> Entry {
    let payload = match rng.gen_range(0..4) {
        0 => Payload::Noop,
        1 => Payload::Config(random_config(rng)),
        _ => Payload::Command(random_bytes(rng, 300)),
    };
    Entry {
        index,
        term,
        payload,
    }
}

fn random_envelope(rng: &mut StdRng) -> Envelope {
    let message = match rng.gen_range(0..9) {
        0 => Message::RequestVote {
            last_log_index: random_u64(rng),
            last_log_term: random_u64(rng),
            leadership_transfer: rng.gen(),
        },
        1 => Message::RequestVoteResponse {
            vote_granted: rng.gen(),
        },
        2 => Message::PreVote {
            last_log_index: random_u64(rng),
            last_log_term: random_u64(rng),
        },
        3 => Message::PreVoteResponse {
            vote_granted: rng.gen(),
        },
        4 => {
            let first = random_u64(rng) / 2;
            let n = rng.gen_range(0..8);
            Message::AppendEntries {
                prev_log_index: first,
                prev_log_term: random_u64(rng),
                entries: (0..n)
                    .map(|i| random_entry(rng, first + 1 + i, 3))
                    .collect(),
                leader_commit: random_u64(rng),
                round: random_u64(rng),
            }
        }
        5 => Message::AppendEntriesResponse {
            round: random_u64(rng),
            result: match rng.gen_range(0..3) {
                0 => AppendResult::Success {
                    match_index: random_u64(rng),
                },
                1 => AppendResult::Reject {
                    rejected_index: random_u64(rng),
                    hint: RejectHint::LogTooShort {
                        last_index: random_u64(rng),
                    },
                },
                _ => AppendResult::Reject {
                    rejected_index: random_u64(rng),
                    hint: RejectHint::ConflictingTerm {
                        conflict_term: random_u64(rng),
                        first_index: random_u64(rng),
                    },
                },
            },
        },
        6 => Message::InstallSnapshot {
            last_included_index: random_u64(rng),
            last_included_term: random_u64(rng),
            offset: random_u64(rng),
            total: random_u64(rng),
            data: random_bytes(rng, 2000),
            done: rng.gen(),
        },
        7 => Message::InstallSnapshotResponse {
            last_included_index: random_u64(rng),
            result: match rng.gen_range(0..3) {
                0 => SnapshotResult::Received {
                    bytes: random_u64(rng),
                },
                1 => SnapshotResult::Installed,
                _ => SnapshotResult::Failed,
            },
        },
        _ => Message::TimeoutNow,
    };
    Envelope {
        from: random_u64(rng),
        to: random_u64(rng),
        term: random_u64(rng),
        message,
    }
}

fn random_hello(rng: &mut StdRng) -> Hello {
    Hello {
        cluster_id: random_string(rng, 64),
        from: random_u64(rng),
        to: random_u64(rng),
        client_addr: rng.gen_bool(0.5).then(|| random_string(rng, 64)),
        raft_addr: random_string(rng, 64),
        incarnation: random_u64(rng),
    }
}

fn random_reply(rng: &mut StdRng) -> HelloReply {
    match rng.gen_range(0..3) {
        0 => HelloReply::Accepted {
            incarnation: random_u64(rng),
        },
        1 => HelloReply::refused(random_string(rng, 2000)),
        _ => HelloReply::Removed {
            index: random_u64(rng),
        },
    }
}

// ----- Peer frames -----------------------------------------------------------

/// Reads frames of `T` from `bytes` until an error, whole and a byte at a
/// time, with `limit`; the two must agree, and neither may allocate much
/// more than the bytes it was given (a declared length is not a reason to
/// allocate it).
fn read_all<T>(bytes: &[u8], limit: usize) -> Vec<T>
where
    T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let read = |mut r: &mut dyn Read| {
        let mut values = Vec::new();
        let end = loop {
            match wire::read_frame::<T, _>(&mut r, limit) {
                Ok(v) => values.push(v),
                Err(e) => break e,
            }
        };
        (values, end.to_string())
    };
    let ((whole, end), largest) = largest_allocation(|| read(&mut &bytes[..]));
    let (slow, slow_end) = read(&mut OneByte(bytes));
    assert_eq!(whole, slow, "whole and byte by byte disagree");
    assert_eq!(end, slow_end);
    // serde preallocates a sequence by its declared length, but never past
    // 1 MiB (its `size_hint::cautious`): a fixed cost, not the claim's.
    let bound = 4 * bytes.len() + 1024 * 1024 + 128 * 1024;
    assert!(
        largest <= bound,
        "{largest} bytes allocated at once to read {} bytes",
        bytes.len()
    );
    whole
}

fn frame_of<T: serde::Serialize>(value: &T, limit: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    wire::encode_frame(value, limit, &mut buf).expect("a valid message encodes");
    buf
}

/// Valid frames round-trip, alone and back to back, whole and byte by byte.
#[test]
fn peer_frames_round_trip() {
    fuzz("peer_frames_round_trip", cases(2000), |rng| {
        let envelopes: Vec<Envelope> = (0..rng.gen_range(1..4))
            .map(|_| random_envelope(rng))
            .collect();
        let mut buf = Vec::new();
        for e in &envelopes {
            buf.extend(frame_of(e, DEFAULT_MAX_FRAME));
        }
        assert_eq!(read_all::<Envelope>(&buf, DEFAULT_MAX_FRAME), envelopes);
        let hello = random_hello(rng);
        let buf = frame_of(&hello, HANDSHAKE_MAX_FRAME);
        assert_eq!(read_all::<Hello>(&buf, HANDSHAKE_MAX_FRAME), vec![hello]);
        let reply = random_reply(rng);
        let buf = frame_of(&reply, HANDSHAKE_MAX_FRAME);
        assert_eq!(
            read_all::<HelloReply>(&buf, HANDSHAKE_MAX_FRAME),
            vec![reply]
        );
    });
}

/// Mutated frames and random bytes are errors (or other valid messages),
/// never panics, and cost no more memory than they brought.
#[test]
fn peer_frames_survive_damage() {
    fuzz("peer_frames_survive_damage", cases(5000), |rng| {
        let mut bytes = match rng.gen_range(0..5) {
            0 => frame_of(&random_envelope(rng), DEFAULT_MAX_FRAME),
            1 => frame_of(&random_hello(rng), HANDSHAKE_MAX_FRAME),
            2 => frame_of(&random_reply(rng), HANDSHAKE_MAX_FRAME),
            3 => random_bytes(rng, 64),
            _ => {
                // A header declaring far more than follows.
                let mut b = rng.gen_range(1u32..=u32::MAX).to_be_bytes().to_vec();
                b.extend(random_bytes(rng, 100));
                b
            }
        };
        mutate(rng, &mut bytes);
        read_all::<Envelope>(&bytes, DEFAULT_MAX_FRAME);
        read_all::<Envelope>(&bytes, HANDSHAKE_MAX_FRAME);
        read_all::<Hello>(&bytes, HANDSHAKE_MAX_FRAME);
        read_all::<HelloReply>(&bytes, HANDSHAKE_MAX_FRAME);
        // A declared length over the limit is refused before reading on.
        if bytes.len() >= 4 {
            let declared = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
            if declared > HANDSHAKE_MAX_FRAME {
                assert!(matches!(
                    wire::read_frame::<Hello, _>(&mut &bytes[..], HANDSHAKE_MAX_FRAME),
                    Err(WireError::FrameTooLarge { .. })
                ));
            }
        }
    });
}

// ----- The data dir ----------------------------------------------------------

/// A scratch dir, in memory where the machine has `/dev/shm`: recovery
/// fsyncs every file it reads, and thousands of fsyncs on a disk would
/// take minutes.
fn scratch() -> tempfile::TempDir {
    match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap()),
        false => tempfile::tempdir().unwrap(),
    }
}

/// What recovery made of a data dir.
#[derive(Debug, PartialEq)]
struct Found {
    hard_state: HardState,
    entries: Vec<Entry>,
    commit_index: u64,
    bootstrap: Option<Configuration>,
    removed: Option<u64>,
}

fn recover(dir: &Path) -> Result<Found, String> {
    let options = DiskOptions {
        segment_bytes: 4 * 1024,
    };
    let mut store = DiskStore::open_with(dir, 1, "fuzz", options).map_err(|e| e.to_string())?;
    let r = store.recover().map_err(|e| e.to_string())?;
    Ok(Found {
        hard_state: r.hard_state,
        entries: r.entries,
        commit_index: r.commit_index,
        bootstrap: r.bootstrap,
        removed: r.removed,
    })
}

/// The files of a data dir written through the store: several segments,
/// hard state, commit records, bootstrap and removal files.
fn seed_data_dir(rng: &mut StdRng) -> (BTreeMap<String, Vec<u8>>, Found) {
    let dir = scratch();
    {
        let options = DiskOptions {
            segment_bytes: 4 * 1024,
        };
        let mut store = DiskStore::open_with(dir.path(), 1, "fuzz", options).unwrap();
        store.recover().unwrap();
        store.save_bootstrap(&random_config(rng)).unwrap();
        let mut index = 1;
        let mut term = 1;
        for _ in 0..rng.gen_range(1..6) {
            term += rng.gen_range(0..2);
            let batch: Vec<Entry> = (0..rng.gen_range(1..12))
                .map(|i| random_entry(rng, index + i, term))
                .collect();
            index += batch.len() as u64;
            store.append(&batch).unwrap();
            store
                .save_hard_state(&HardState {
                    current_term: term,
                    voted_for: Some(rng.gen_range(1..4)),
                })
                .unwrap();
            store.save_commit(index - 1 - rng.gen_range(0..2)).unwrap();
            store.sync().unwrap();
        }
        if rng.gen_bool(0.2) {
            store.save_removed(index - 1).unwrap();
        }
    }
    let files = read_dir_files(dir.path());
    let found = recover(dir.path()).expect("the seed data dir recovers");
    (files, found)
}

fn read_dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            (e.file_type().ok()?.is_file() && name != "LOCK")
                .then(|| (name, std::fs::read(e.path()).unwrap()))
        })
        .collect()
}

/// Damaged data dirs: recovery repairs a torn tail or refuses with a clear
/// error, never panics, never allocates a declared huge length, and never
/// makes up an entry, a term or a vote.
#[test]
fn data_dir_recovery_survives_damage() {
    // (refused, repaired by dropping a torn tail, unharmed)
    let mut outcomes = (0, 0, 0);
    fuzz("data_dir_recovery_survives_damage", cases(300), |rng| {
        let (files, original) = seed_data_dir(rng);
        for _ in 0..10 {
            let dir = scratch();
            let mut damaged = files.clone();
            let names: Vec<String> = damaged.keys().cloned().collect();
            let name = &names[rng.gen_range(0..names.len())];
            let bytes = damaged.get_mut(name).unwrap();
            mutate(rng, bytes);
            if name.starts_with("log-") && rng.gen_bool(0.1) {
                // A segment under another index's name.
                let bytes = damaged.remove(name).unwrap();
                let index = [0, 1, u64::MAX, u64::MAX - 1, rng.gen()][rng.gen_range(0..5)];
                damaged.insert(format!("log-{index:020}"), bytes);
            }
            for (name, bytes) in &damaged {
                std::fs::write(dir.path().join(name), bytes).unwrap();
            }
            let total: usize = damaged.values().map(Vec::len).sum();
            let (result, largest) = largest_allocation(|| recover(dir.path()));
            assert!(
                largest <= 4 * total + 1024 * 1024,
                "{largest} bytes allocated at once recovering {total} bytes ({name} damaged)"
            );
            match result {
                Err(e) => {
                    outcomes.0 += 1;
                    assert!(e.len() > 10, "an unclear error: {e:?}");
                }
                Ok(found) => {
                    match found.entries.len() < original.entries.len() {
                        true => outcomes.1 += 1,
                        false => outcomes.2 += 1,
                    }
                    // Only a torn tail may be dropped: what is left is a
                    // prefix of what was written, and nothing else changed
                    // unless its file was the damaged one.
                    let n = found.entries.len();
                    assert!(
                        n <= original.entries.len() && found.entries[..] == original.entries[..n],
                        "recovery of a damaged {name} made up entries"
                    );
                    assert!(found.commit_index <= original.commit_index);
                    if name != "hard_state" {
                        assert_eq!(found.hard_state, original.hard_state, "{name} damaged");
                    }
                    if name != "bootstrap" {
                        assert_eq!(found.bootstrap, original.bootstrap, "{name} damaged");
                    }
                    if name != "removed" {
                        assert_eq!(found.removed, original.removed, "{name} damaged");
                    }
                    // What it repaired opens again, to the same state.
                    assert_eq!(recover(dir.path()), Ok(found), "{name} damaged");
                }
            }
        }
    });
    // Damage of every kind was made, or the fuzzer fuzzes nothing.
    eprintln!("data dirs: (refused, repaired, unharmed) = {outcomes:?}");
    assert!(
        outcomes.0 > 0 && outcomes.1 > 0 && outcomes.2 > 0,
        "{outcomes:?}"
    );
}

/// A segment whose records carry valid checksums around damaged payloads:
/// what gets past the checksums must still be refused cleanly.
#[test]
fn log_records_with_valid_checksums_and_bad_payloads_are_refused() {
    let mut seed_rng = StdRng::seed_from_u64(7);
    let (files, _) = seed_data_dir(&mut seed_rng);
    fuzz("log_records_with_valid_checksums", cases(600), |rng| {
        let dir = scratch();
        for (name, bytes) in &files {
            if !name.starts_with("log-") {
                std::fs::write(dir.path().join(name), bytes).unwrap();
            }
        }
        // One segment, from entry 1, of re-checksummed damaged records.
        let mut segment = b"RNLOG\0\0\x02".to_vec();
        for i in 0..rng.gen_range(1..5) {
            let mut payload = encode_record(&random_entry(rng, i + 1, 1));
            if rng.gen_bool(0.7) {
                mutate(rng, &mut payload);
            }
            let payload_crc = crc32fast::hash(&payload);
            // Now and then a length no writer writes, under a valid header
            // checksum: past the file's end, or past the record limit.
            let len = match rng.gen_bool(0.2) {
                true => rng.gen_range(payload.len() as u32 + 1..=u32::MAX),
                false => payload.len() as u32,
            };
            let mut header = len.to_be_bytes().to_vec();
            header.extend(payload_crc.to_be_bytes());
            let header_crc = crc32fast::hash(&header);
            segment.extend(header);
            segment.extend(header_crc.to_be_bytes());
            segment.extend(payload);
        }
        std::fs::write(dir.path().join(format!("log-{:020}", 1)), &segment).unwrap();
        let (result, largest) = largest_allocation(|| recover(dir.path()));
        assert!(
            largest <= 4 * segment.len() + 1024 * 1024,
            "{largest} bytes allocated at once recovering a {}-byte segment",
            segment.len()
        );
        if let Err(e) = result {
            assert!(e.contains("log-"), "the error names the file: {e}");
        }
    });
}

/// A segment record's payload, as the store encodes it: variant 0 of the
/// record enum is an entry.
fn encode_record(entry: &Entry) -> Vec<u8> {
    let mut payload = vec![0u8];
    payload.extend(raftnode::codec::encode(entry).unwrap());
    payload
}

// ----- Snapshots -------------------------------------------------------------

/// A small key-value store, a few of its values big enough to be written
/// in parts.
fn random_kv(rng: &mut StdRng) -> Kv {
    let mut kv = Kv::new();
    for i in 0..rng.gen_range(0..40) {
        let value_len = match rng.gen_range(0..10) {
            0 => rng.gen_range(64 * 1024..200 * 1024),
            _ => rng.gen_range(0..100),
        };
        let command = Command::Set {
            key: random_bytes(rng, 20),
            value: vec![rng.gen(); value_len],
        };
        kv.apply_command(i + 1, command);
    }
    kv
}

/// A snapshot file of a small key-value store, and the store.
fn seed_snapshot(rng: &mut StdRng, path: &Path) -> Kv {
    let kv = random_kv(rng);
    let meta = SnapshotMeta {
        last_included_index: 40,
        last_included_term: 2,
        config_index: 0,
        config: random_config(rng),
    };
    let mut writer = SnapshotWriter::create(path, &meta).unwrap();
    kv.snapshot().write_to(&mut writer).unwrap();
    writer.finish().unwrap();
    kv
}

/// Reads a snapshot file whole: its checks, then the store's payload.
fn restore(path: &Path) -> Result<Kv, String> {
    let mut reader = SnapshotReader::open(path).map_err(|e| e.to_string())?;
    let mut payload = reader.payload().map_err(|e| e.to_string())?;
    let mut kv = Kv::new();
    kv.restore(&mut payload).map_err(|e| e.to_string())?;
    Ok(kv)
}

/// Damaged snapshot files are refused, naming the file; a payload damaged
/// under a valid checksum is refused by the store, which is left as it was.
#[test]
fn snapshots_survive_damage() {
    fuzz("snapshots_survive_damage", cases(150), |rng| {
        let dir = scratch();
        let path = dir.path().join("snapshot-40-2");
        let kv = seed_snapshot(rng, &path);
        assert_eq!(restore(&path).unwrap().digest(), kv.digest());
        let original = std::fs::read(&path).unwrap();
        for _ in 0..5 {
            let mut bytes = original.clone();
            mutate(rng, &mut bytes);
            std::fs::write(&path, &bytes).unwrap();
            let (result, largest) = largest_allocation(|| restore(&path));
            assert!(
                largest <= 4 * bytes.len() + 1024 * 1024,
                "{largest} bytes allocated at once reading a {}-byte snapshot",
                bytes.len()
            );
            match result {
                Err(e) => assert!(e.contains("snapshot-40-2"), "the error names the file: {e}"),
                // Only a harmless change (none a checksum misses) may pass.
                Ok(restored) => assert_eq!(restored.digest(), kv.digest()),
            }
        }
    });
}

/// The store's snapshot payload, damaged and fed to `restore` directly
/// (as if its checksum had matched): refused or equal, never a panic.
#[test]
fn kv_snapshot_payloads_survive_damage() {
    fuzz("kv_snapshot_payloads_survive_damage", cases(20), |rng| {
        let kv = random_kv(rng);
        let mut original = Vec::new();
        kv.snapshot().write_to(&mut original).unwrap();
        for _ in 0..100 {
            let mut payload = original.clone();
            mutate(rng, &mut payload);
            let mut restored = Kv::new();
            let (result, largest) = largest_allocation(|| restored.restore(&mut &payload[..]));
            assert!(
                largest <= 4 * payload.len() + 1024 * 1024,
                "{largest} bytes allocated at once restoring {} bytes",
                payload.len()
            );
            match result {
                Ok(()) => assert_eq!(restored.digest(), kv.digest()),
                Err(_) => assert!(restored.is_empty(), "a refused payload left keys behind"),
            }
        }
    });
}

/// Every byte of a valid frame's payload in turn replaced by a bincode
/// length that claims megabytes (the frame's header corrected to match):
/// whatever field it lands in, the claim costs no more than the frame.
#[test]
fn peer_frames_with_a_huge_length_anywhere() {
    fuzz(
        "peer_frames_with_a_huge_length_anywhere",
        cases(100),
        |rng| {
            let (frame, limit) = match rng.gen_range(0..3) {
                0 => (
                    frame_of(&random_envelope(rng), DEFAULT_MAX_FRAME),
                    DEFAULT_MAX_FRAME,
                ),
                1 => (
                    frame_of(&random_hello(rng), HANDSHAKE_MAX_FRAME),
                    HANDSHAKE_MAX_FRAME,
                ),
                _ => (
                    frame_of(&random_reply(rng), HANDSHAKE_MAX_FRAME),
                    HANDSHAKE_MAX_FRAME,
                ),
            };
            for at in 4..frame.len().min(120) {
                let mut bytes = frame.clone();
                let claim: u32 = rng.gen_range(1 << 20..60 << 20);
                let mut varint = vec![0xfc];
                varint.extend_from_slice(&claim.to_le_bytes());
                bytes.splice(at..at + 1, varint);
                let len = bytes.len() as u32 - 4;
                bytes[..4].copy_from_slice(&len.to_be_bytes());
                read_all::<Envelope>(&bytes, limit);
                read_all::<Hello>(&bytes, limit);
                read_all::<HelloReply>(&bytes, limit);
            }
        },
    );
}

/// The allocation tracker sees allocations (or every bound here would pass
/// vacuously); and the shape the fuzzer found: a 20-byte hello whose
/// cluster id claims 32 MiB made bincode allocate 32 MiB before it found
/// the bytes missing.
#[test]
fn a_hello_claiming_a_huge_string_costs_what_it_sent() {
    let ((), largest) = largest_allocation(|| drop(std::hint::black_box(vec![1u8; 300_000])));
    assert!(largest >= 300_000);
    let hello = Hello {
        cluster_id: "c".into(),
        from: 1,
        to: 2,
        client_addr: None,
        raft_addr: "a".into(),
        incarnation: 3,
    };
    let mut frame = frame_of(&hello, HANDSHAKE_MAX_FRAME);
    // The cluster id's length, a one-byte varint after the header: 32 MiB.
    assert_eq!(frame[4], 1);
    frame.splice(4..5, [0xfc, 0, 0, 0, 2]);
    let len = frame.len() as u32 - 4;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    let (result, largest) =
        largest_allocation(|| wire::read_frame::<Hello, _>(&mut &frame[..], HANDSHAKE_MAX_FRAME));
    assert!(matches!(result, Err(WireError::Codec(_))), "{result:?}");
    assert!(largest <= 64 * 1024, "{largest} bytes allocated at once");
}

// ----- The handshake, through a real listener --------------------------------

/// Hellos with arbitrary values — other clusters, other receivers, ids of
/// members and strangers, any incarnation, strings of any size — and
/// damaged hello frames, sent to a node of a running cluster: every one is
/// answered with a reply that fits a handshake frame or closed, and the
/// cluster keeps committing.
#[test]
fn handshakes_with_arbitrary_hellos() {
    let cluster = support::Cluster::new(3);
    cluster.wait_for_leader();
    // Once every incarnation is recorded, a random one cannot pass for a
    // member's.
    support::wait_for(support::WAIT, "the incarnations to be recorded", || {
        let m = cluster.node(1).membership();
        m.members
            .iter()
            .all(|m| m.incarnation.is_some())
            .then_some(())
    });
    let addr = cluster.node(1).raft_addr();
    let mut replies = [0usize; 4]; // accepted, refused, removed, closed
    fuzz("handshakes_with_arbitrary_hellos", cases(150), |rng| {
        let mut hello = random_hello(rng);
        if rng.gen_bool(0.6) {
            hello.cluster_id = "test".into();
        }
        if rng.gen_bool(0.6) {
            hello.to = 1;
        }
        if rng.gen_bool(0.5) {
            hello.from = rng.gen_range(1..6);
        }
        if rng.gen_bool(0.1) {
            hello.raft_addr = "r".repeat(rng.gen_range(500..1200));
        }
        let mut frame = frame_of(&hello, HANDSHAKE_MAX_FRAME);
        if rng.gen_bool(0.3) {
            mutate(rng, &mut frame);
        }
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // The node may close at once on a bad frame: a failed write is an
        // answer too.
        let _ = io::Write::write_all(&mut stream, &frame);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        match wire::read_frame::<HelloReply, _>(&mut stream, HANDSHAKE_MAX_FRAME) {
            Ok(HelloReply::Accepted { .. }) => replies[0] += 1,
            Ok(HelloReply::Refused { reason }) => {
                assert!(reason.len() <= wire::MAX_REASON);
                replies[1] += 1;
            }
            Ok(HelloReply::Removed { .. }) => replies[2] += 1,
            Err(WireError::Closed) | Err(WireError::Io(_)) => replies[3] += 1,
            Err(e) => panic!("the node answered {e}"),
        }
    });
    eprintln!("hellos: (accepted, refused, removed, closed) = {replies:?}");
    assert!(
        replies[0] > 0 && replies[1] > 0 && replies[3] > 0,
        "{replies:?}"
    );
    cluster.set("after", "the hellos");
    cluster.wait_replicated("after", "the hellos");
}

/// A segment named for the last possible index, holding an entry of that
/// index under valid checksums: no log can continue past it (the next index
/// would overflow), so recovery refuses it, naming the file.
#[test]
fn an_entry_at_the_last_possible_index_is_refused() {
    let (files, _) = seed_data_dir(&mut StdRng::seed_from_u64(11));
    let dir = scratch();
    for (name, bytes) in &files {
        if !name.starts_with("log-") {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
    }
    let mut segment = b"RNLOG\0\0\x02".to_vec();
    let payload = encode_record(&Entry {
        index: u64::MAX,
        term: 1,
        payload: Payload::Noop,
    });
    let mut header = (payload.len() as u32).to_be_bytes().to_vec();
    header.extend(crc32fast::hash(&payload).to_be_bytes());
    let header_crc = crc32fast::hash(&header);
    segment.extend(header);
    segment.extend(header_crc.to_be_bytes());
    segment.extend(payload);
    let name = format!("log-{}", u64::MAX);
    std::fs::write(dir.path().join(&name), &segment).unwrap();
    match recover(dir.path()) {
        Err(e) => assert!(e.contains(&name) && e.contains("index"), "{e}"),
        Ok(found) => panic!("recovered {:?}", found.entries),
    }
}
