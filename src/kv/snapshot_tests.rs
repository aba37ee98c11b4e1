//! The store's snapshots, end to end: what [`Kv::snapshot`] captures, what
//! [`Kv::restore`] brings back, and what it refuses.
//!
//! [`Kv::snapshot`]: crate::node::StateMachine::snapshot
//! [`Kv::restore`]: crate::node::StateMachine::restore

use super::snapshot::PART_BYTES;
use super::{Command, Kv, Outcome};
use crate::node::{RestoreError, StateMachine};
use std::time::{Duration, Instant};

fn set(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Command {
    Command::Set {
        key: key.into(),
        value: value.into(),
    }
}

fn in_session(client: u64, seq: u64, command: Command) -> Command {
    Command::Session {
        client,
        seq,
        command: Box::new(command),
    }
}

fn incr(key: &str) -> Command {
    Command::Incr {
        key: key.as_bytes().to_vec(),
    }
}

fn payload(kv: &Kv) -> Vec<u8> {
    let mut bytes = Vec::new();
    kv.snapshot().write_to(&mut bytes).unwrap();
    bytes
}

fn restored(bytes: &[u8]) -> Kv {
    let mut kv = Kv::new();
    kv.restore(&mut &bytes[..]).unwrap();
    kv
}

/// Keys and values no text would hold, one value split into parts, and a
/// couple of sessions.
fn varied() -> Kv {
    let mut kv = Kv::new();
    let mut index = 0;
    let mut apply = |kv: &mut Kv, command| {
        index += 1;
        kv.apply_command(index, command)
    };
    apply(&mut kv, set(vec![], vec![]));
    apply(&mut kv, set(vec![0], vec![0, 0, 0]));
    apply(&mut kv, set(vec![255, 0, 254], vec![1, 2, 3, 0, 255]));
    apply(&mut kv, set("big", vec![7; 3 * PART_BYTES + 5]));
    apply(&mut kv, set("exactly a part", vec![9; PART_BYTES]));
    apply(&mut kv, set(vec![b'k'; 100_000], "a long key"));
    apply(&mut kv, in_session(7, 1, incr("n")));
    apply(
        &mut kv,
        in_session(8, 1, Command::Multi(vec![incr("n"), incr("n")])),
    );
    for n in 0..2_500u32 {
        apply(&mut kv, set(n.to_le_bytes(), n.to_be_bytes()));
    }
    kv
}

fn assert_same(a: &Kv, b: &Kv) {
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.len(), b.len());
    assert_eq!(a.sessions(), b.sessions());
    for (key, value) in a.map.iter() {
        assert_eq!(b.get(key), Some(value), "key {key:?}");
    }
}

#[test]
fn a_round_trip_keeps_every_key_and_value_byte_for_byte() {
    let kv = varied();
    let back = restored(&payload(&kv));
    assert_same(&kv, &back);
    assert_eq!(back.get(b"big").map(Vec::len), Some(3 * PART_BYTES + 5));
    assert_eq!(back.get(&[]), Some(&vec![]));
    // The restored store writes the very same bytes.
    assert_eq!(payload(&back), payload(&kv));
}

#[test]
fn an_empty_store_round_trips_and_replaces_a_full_one() {
    let empty = payload(&Kv::new());
    let mut kv = varied();
    kv.restore(&mut &empty[..]).unwrap();
    assert!(kv.is_empty());
    assert_eq!(kv.sessions(), 0);
    assert_eq!(kv.digest(), "0".repeat(40));
}

#[test]
fn the_same_commands_in_the_same_order_write_the_same_bytes() {
    assert_eq!(payload(&varied()), payload(&varied()));
    // The bytes depend on the state, not on how it was reached.
    let mut a = Kv::new();
    let mut b = Kv::new();
    for n in 0..500u32 {
        a.apply_command(1 + u64::from(n), set(n.to_be_bytes(), "v"));
    }
    for n in (0..800u32).rev() {
        b.apply_command(1 + u64::from(n), set(n.to_be_bytes(), "v"));
    }
    let extra: Vec<Vec<u8>> = (500..800u32).map(|n| n.to_be_bytes().to_vec()).collect();
    b.apply_command(900, Command::Delete { keys: extra });
    assert_eq!(payload(&a), payload(&b));
}

#[test]
fn sessions_survive_a_restore() {
    let kv = varied();
    let mut back = restored(&payload(&kv));
    let before = back.duplicates_suppressed();
    // The retry is answered from the session, not applied again…
    assert_eq!(
        back.apply_command(10_000, in_session(7, 1, incr("n"))),
        Outcome::Integer(1)
    );
    let transaction = in_session(8, 1, Command::Multi(vec![incr("n"), incr("n")]));
    assert_eq!(
        back.apply_command(10_001, transaction),
        Outcome::Multi(vec![Outcome::Integer(2), Outcome::Integer(3)])
    );
    assert_eq!(back.get(b"n"), Some(&b"3".to_vec()));
    assert_eq!(back.duplicates_suppressed(), before + 2);
    // …an older sequence number is refused, a new one applies.
    assert_eq!(
        back.apply_command(10_002, in_session(7, 2, incr("n"))),
        Outcome::Integer(4)
    );
    assert!(matches!(
        back.apply_command(10_003, in_session(7, 1, incr("n"))),
        Outcome::Refused(_)
    ));
    assert_eq!(back.get(b"n"), Some(&b"4".to_vec()));
}

#[test]
fn a_restored_store_goes_on_exactly_as_the_original() {
    // Short-lived sessions, so that some expire after the snapshot: they
    // must expire at the same entry on both.
    let mut kv = Kv::with_session_ttl(20);
    for i in 1..=30 {
        kv.apply_command(i, in_session(i % 7 + 1, i / 7 + 1, incr("n")));
    }
    let mut back = Kv::with_session_ttl(20);
    back.restore(&mut &payload(&kv)[..]).unwrap();
    for i in 31..=80 {
        let command = match i % 3 {
            0 => in_session(i % 7 + 1, i / 7 + 1, incr("n")),
            1 => in_session(i % 7 + 1, 1, incr("n")),
            _ => set(format!("k{}", i % 5), format!("{i}")),
        };
        let (a, b) = (
            kv.apply_command(i, command.clone()),
            back.apply_command(i, command),
        );
        assert_eq!(a, b, "entry {i}");
        assert_eq!(kv.digest(), back.digest(), "entry {i}");
        assert_eq!(kv.sessions(), back.sessions(), "entry {i}");
    }
}

#[test]
fn writes_after_the_snapshot_are_not_in_it_and_are_in_the_store() {
    let mut kv = varied();
    let digest = kv.digest();
    let snapshot = kv.snapshot();
    kv.apply_command(10_000, set("new", "1"));
    kv.apply_command(10_001, set(vec![0], "changed"));
    kv.apply_command(
        10_002,
        Command::Delete {
            keys: vec![vec![255, 0, 254], b"big".to_vec()],
        },
    );
    kv.apply_command(
        10_003,
        Command::Append {
            key: b"exactly a part".to_vec(),
            value: b"!".to_vec(),
        },
    );
    kv.apply_command(10_004, in_session(7, 2, incr("n")));
    kv.apply_command(10_005, in_session(9, 1, incr("n")));
    let mut bytes = Vec::new();
    snapshot.write_to(&mut bytes).unwrap();
    let then = restored(&bytes);
    assert_eq!(then.digest(), digest);
    assert_eq!(then.get(b"new"), None);
    assert_eq!(then.get(b"n"), Some(&b"3".to_vec()));
    assert_eq!(then.sessions(), 2);
    // The live store has every write.
    assert_eq!(kv.get(b"new"), Some(&b"1".to_vec()));
    assert_eq!(kv.get(&[0]), Some(&b"changed".to_vec()));
    assert_eq!(kv.get(b"big"), None);
    assert_eq!(kv.get(b"n"), Some(&b"5".to_vec()));
    assert_eq!(kv.sessions(), 3);
    assert_eq!(kv.len(), then.len() - 1);
}

#[test]
fn a_snapshot_is_written_while_the_store_changes_on_another_thread() {
    let mut kv = varied();
    let digest = kv.digest();
    let snapshot = kv.snapshot();
    let writer = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        snapshot.write_to(&mut bytes).map(|()| bytes)
    });
    for i in 0..5_000u32 {
        kv.apply_command(20_000 + u64::from(i), set(i.to_le_bytes(), "overwritten"));
    }
    let bytes = writer.join().unwrap().unwrap();
    assert_eq!(restored(&bytes).digest(), digest);
    assert_eq!(kv.get(&0u32.to_le_bytes()), Some(&b"overwritten".to_vec()));
}

/// Restores `bytes` into `kv`, expecting a refusal that leaves it as it
/// was.
fn refused(kv: &mut Kv, bytes: &[u8]) -> RestoreError {
    let (digest, len) = (kv.digest(), kv.len());
    let error = kv.restore(&mut &bytes[..]).unwrap_err();
    assert_eq!(kv.digest(), digest, "a refused restore changes nothing");
    assert_eq!(kv.len(), len);
    error
}

#[test]
fn a_truncated_payload_is_refused_and_changes_nothing() {
    let mut kv = varied();
    let bytes = payload(&kv);
    // Every cut in the first and last records, and a spread of them between.
    let cuts = (0..200)
        .chain((200..bytes.len() - 200).step_by(997))
        .chain(bytes.len() - 200..bytes.len());
    for cut in cuts {
        let error = refused(&mut kv, &bytes[..cut]);
        assert!(
            matches!(error, RestoreError::Invalid(_)),
            "cut at {cut}: {error}"
        );
    }
}

#[test]
fn a_damaged_byte_anywhere_is_refused_and_changes_nothing() {
    let mut kv = varied();
    let bytes = payload(&kv);
    for at in (0..bytes.len()).step_by(509).chain([bytes.len() - 1]) {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x10;
        refused(&mut kv, &damaged);
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let error = refused(&mut kv, &longer);
    assert!(
        error.to_string().contains("after the end record"),
        "{error}"
    );
}

#[test]
fn a_payload_that_is_not_a_store_snapshot_is_refused() {
    let mut kv = varied();
    let mut bytes = payload(&kv);
    bytes[..8].copy_from_slice(b"RNSNAP1\n");
    assert!(refused(&mut kv, &bytes).to_string().contains("wrong magic"));
    let mut bytes = payload(&kv);
    bytes[8..12].copy_from_slice(&4u32.to_be_bytes());
    let error = refused(&mut kv, &bytes);
    assert!(error.to_string().contains("format version 4"), "{error}");
    assert!(matches!(refused(&mut kv, b""), RestoreError::Invalid(_)));
    assert!(matches!(
        refused(&mut kv, b"hello"),
        RestoreError::Invalid(_)
    ));
}

#[test]
fn a_reader_that_fails_is_an_io_error() {
    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let mut kv = varied();
    let error = kv.restore(&mut Failing).unwrap_err();
    assert!(matches!(error, RestoreError::Io(_)), "{error}");
    assert_eq!(kv.len(), varied().len());
}

#[test]
fn a_large_store_round_trips() {
    let mut kv = Kv::new();
    for n in 0..200_000u64 {
        let value = n.to_string().repeat((n % 7) as usize);
        kv.apply_command(n + 1, set(n.to_be_bytes(), value));
    }
    kv.apply_command(200_001, in_session(1, 1, set("s", "1")));
    let bytes = payload(&kv);
    let back = restored(&bytes);
    assert_same(&kv, &back);
    assert_eq!(back.len(), 200_001);
}

#[test]
fn taking_a_snapshot_of_a_million_keys_copies_nothing() {
    let mut kv = Kv::new();
    for n in 0..1_000_000u64 {
        kv.apply_command(n + 1, set(n.to_be_bytes(), "v"));
    }
    // A bug catcher, not a benchmark: a copy of the map takes far longer.
    let start = Instant::now();
    let snapshot = kv.snapshot();
    let took = start.elapsed();
    assert!(took < Duration::from_millis(50), "snapshot() took {took:?}");
    // The first write after it copies one shard, not the map.
    let start = Instant::now();
    kv.apply_command(1_000_001, set(0u64.to_be_bytes(), "w"));
    let took = start.elapsed();
    assert!(took < Duration::from_millis(50), "a write took {took:?}");
    drop(snapshot);
}
