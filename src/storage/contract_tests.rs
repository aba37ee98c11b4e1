//! The [`LogStore`] contract, run against every implementation: what was
//! written and synced comes back from `recover`, and a refused append
//! changes nothing.

use super::*;
use crate::raft::message::{Entry, HardState, Index, Payload, Term};

fn entry(index: Index, term: Term) -> Entry {
    Entry {
        index,
        term,
        payload: Payload::Command(format!("{index}@{term}").into_bytes()),
    }
}

/// Drives a store through appends, a truncation, a hard state and refused
/// writes; `reopen` stands for a restart (a no-op for memory).
fn exercise<S: LogStore>(mut store: S, reopen: impl Fn(S) -> S) {
    let empty = store.recover().unwrap();
    assert_eq!(empty.hard_state, HardState::default());
    assert!(empty.entries.is_empty());

    let first: Vec<Entry> = (1..=5).map(|i| entry(i, 1 + i / 3)).collect();
    store.append(&first).unwrap();
    store.truncate_after(3).unwrap();
    store.append(&[entry(4, 3), entry(5, 3)]).unwrap();
    let hard_state = HardState {
        current_term: 3,
        voted_for: Some(2),
    };
    store.save_hard_state(&hard_state).unwrap();
    store.sync().unwrap();
    assert_eq!(store.last_index(), 5);

    // Refused: a gap, a repeat and a term going down. Nothing is written.
    assert!(matches!(
        store.append(&[entry(7, 3)]),
        Err(StorageError::Gap { expected: 6, .. })
    ));
    assert!(matches!(
        store.append(&[entry(5, 3)]),
        Err(StorageError::Gap { .. })
    ));
    assert!(matches!(
        store.append(&[entry(6, 3), entry(7, 2)]),
        Err(StorageError::TermRegression { index: 7, .. })
    ));
    assert_eq!(store.last_index(), 5);
    store.truncate_after(99).unwrap();
    store.sync().unwrap();

    let mut store = reopen(store);
    let recovered = store.recover().unwrap();
    assert_eq!(recovered.hard_state, hard_state);
    let mut expected = first[..3].to_vec();
    expected.extend([entry(4, 3), entry(5, 3)]);
    assert_eq!(recovered.entries, expected);
    // Asked again, the store reads what it holds once more.
    assert_eq!(store.recover().unwrap(), recovered);
    // The store goes on from there.
    store.append(&[entry(6, 4)]).unwrap();
    store.sync().unwrap();
    assert_eq!(store.last_index(), 6);
}

#[test]
fn memory_store_keeps_the_contract() {
    exercise(MemStore::new(), |store| store);
}

#[test]
fn disk_store_keeps_the_contract_across_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    exercise(DiskStore::open(&dir, 1, "c").unwrap(), |store| {
        drop(store);
        DiskStore::open(&dir, 1, "c").unwrap()
    });
}

#[test]
fn a_memory_store_can_start_from_a_given_state() {
    let hard_state = HardState {
        current_term: 2,
        voted_for: None,
    };
    let mut store = MemStore::with(hard_state, vec![entry(1, 1), entry(2, 2)]).unwrap();
    let recovered = store.recover().unwrap();
    assert_eq!(recovered.hard_state, hard_state);
    assert_eq!(recovered.entries.len(), 2);
    assert!(MemStore::with(hard_state, vec![entry(1, 1), entry(3, 1)]).is_err());
}
