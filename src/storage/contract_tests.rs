//! The [`LogStore`] contract, run against every implementation: what was
//! written and synced comes back from `recover`, a refused append changes
//! nothing, and the incarnation, bootstrap configuration and removed marker
//! last as long as the storage.

use super::*;
use crate::raft::membership::{ConfChange, Configuration};
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

/// Checks that `kept` is what compacting `all` through `through` may leave:
/// a suffix of it, holding at least every entry after `through` and the
/// last entry.
fn assert_suffix(kept: &[Entry], all: &[Entry], through: Index) {
    let first = kept.first().expect("compaction keeps the last entry").index;
    assert!(first <= through + 1, "entry {} was dropped", through + 1);
    assert_eq!(kept, &all[first as usize - 1..]);
}

/// Drives a store through compaction, commit indexes, reset and appends
/// after a reset at other indexes; `reopen` stands for a restart.
fn exercise_compaction_and_reset<S: LogStore>(mut store: S, reopen: impl Fn(S) -> S) {
    store.recover().unwrap();
    let mut all: Vec<Entry> = (1..=40).map(|i| entry(i, 1 + i / 10)).collect();
    for batch in all.chunks(4) {
        store.append(batch).unwrap();
        store.sync().unwrap();
    }
    store.save_commit(30).unwrap();
    // A lower commit index changes nothing.
    store.save_commit(20).unwrap();
    store.sync().unwrap();
    store.compact(25).unwrap();
    assert_eq!(store.last_index(), 40);
    store.sync().unwrap();

    let mut store = reopen(store);
    let recovered = store.recover().unwrap();
    assert_suffix(&recovered.entries, &all, 25);
    assert_eq!(recovered.commit_index, 30);
    // Asked again, the store reads the same once more.
    assert_eq!(store.recover().unwrap(), recovered);

    // Compacting past the end keeps the last entry: the log's end stays
    // known, and the log goes on from it.
    store.compact(1000).unwrap();
    assert_eq!(store.last_index(), 40);
    all.push(entry(41, 5));
    store.append(&all[40..]).unwrap();
    store.save_commit(41).unwrap();
    store.sync().unwrap();
    let mut store = reopen(store);
    let recovered = store.recover().unwrap();
    assert_suffix(&recovered.entries, &all, 40);
    assert_eq!(recovered.commit_index, 41);

    // A reset is durable without a sync, and the log may then start
    // anywhere: past its old end, or before it.
    store.reset().unwrap();
    assert_eq!(store.last_index(), 0);
    let mut store = reopen(store);
    assert!(store.recover().unwrap().entries.is_empty());
    assert_eq!(store.last_index(), 0);
    store.append(&[entry(101, 7), entry(102, 7)]).unwrap();
    store.save_commit(101).unwrap();
    store.sync().unwrap();
    let mut store = reopen(store);
    let recovered = store.recover().unwrap();
    assert_eq!(recovered.entries, [entry(101, 7), entry(102, 7)]);
    assert_eq!(recovered.commit_index, 101);
    assert_eq!(store.recover().unwrap(), recovered);

    store.reset().unwrap();
    store.append(&[entry(7, 2)]).unwrap();
    store.sync().unwrap();
    let mut store = reopen(store);
    assert_eq!(store.recover().unwrap().entries, [entry(7, 2)]);
    assert_eq!(store.last_index(), 7);
    store.append(&[entry(8, 2)]).unwrap();
    store.sync().unwrap();
    assert_eq!(store.last_index(), 8);
}

/// Drives a store through what membership keeps: its incarnation, the
/// bootstrap configuration and the removed marker, each durable without a
/// sync and kept across restarts and alongside the log; `reopen` stands
/// for a restart.
fn exercise_membership_state<S: LogStore>(mut store: S, reopen: impl Fn(S) -> S) {
    let incarnation = store.incarnation();
    assert_ne!(incarnation, 0);
    let fresh = store.recover().unwrap();
    assert_eq!((fresh.bootstrap, fresh.removed), (None, None));

    let config = Configuration::of_voters((1..=3).map(|id| (id, format!("h{id}:7000"))))
        .apply(
            &ConfChange::AddLearner {
                id: 4,
                raft_addr: "h4:7000".into(),
                client_addr: Some("h4:6379".into()),
                auto_promote: true,
            },
            0,
        )
        .unwrap();
    store.save_bootstrap(&config).unwrap();
    store.append(&[entry(1, 1), entry(2, 1)]).unwrap();
    store.sync().unwrap();
    // Asked again without a restart, the store has it too.
    assert_eq!(store.recover().unwrap().bootstrap.as_ref(), Some(&config));

    let mut store = reopen(store);
    assert_eq!(store.incarnation(), incarnation, "a restart keeps it");
    let recovered = store.recover().unwrap();
    assert_eq!(recovered.bootstrap.as_ref(), Some(&config));
    assert_eq!(recovered.removed, None);
    assert_eq!(recovered.entries, [entry(1, 1), entry(2, 1)]);

    store.save_removed(2).unwrap();
    let mut store = reopen(store);
    let recovered = store.recover().unwrap();
    assert_eq!(recovered.removed, Some(2));
    assert_eq!(recovered.bootstrap, Some(config));
    assert_eq!(recovered.entries.len(), 2);
    assert_eq!(store.incarnation(), incarnation);
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
fn memory_store_keeps_the_compaction_and_reset_contract() {
    exercise_compaction_and_reset(MemStore::new(), |store| store);
}

#[test]
fn disk_store_keeps_the_compaction_and_reset_contract_across_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    // Small segments, so that compaction has whole files to delete.
    let options = DiskOptions { segment_bytes: 64 };
    let open = || DiskStore::open_with(&dir, 1, "c", options).unwrap();
    exercise_compaction_and_reset(open(), |store| {
        drop(store);
        open()
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
    // An empty store takes a log starting anywhere (after a snapshot),
    // but not one with a gap.
    assert!(MemStore::with(hard_state, vec![entry(2, 1)]).is_ok());
    assert!(MemStore::with(hard_state, vec![entry(2, 1), entry(4, 1)]).is_err());
}

#[test]
fn memory_store_keeps_the_membership_state_contract() {
    // A clone is how a test restarts a node on the same memory store.
    exercise_membership_state(MemStore::new(), |store| store.clone());
    exercise_membership_state(MemStore::new(), |store| store);
}

#[test]
fn disk_store_keeps_the_membership_state_contract_across_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    exercise_membership_state(DiskStore::open(&dir, 1, "c").unwrap(), |store| {
        drop(store);
        DiskStore::open(&dir, 1, "c").unwrap()
    });
}

#[test]
fn each_new_store_gets_its_own_incarnation() {
    let tmp = tempfile::tempdir().unwrap();
    let disk: Vec<u64> = (1..=2)
        .map(|i| {
            let dir = tmp.path().join(i.to_string());
            DiskStore::open(&dir, 1, "c").unwrap().incarnation()
        })
        .collect();
    let memory = [MemStore::new().incarnation(), MemStore::new().incarnation()];
    for pair in [disk.as_slice(), &memory] {
        assert!(pair.iter().all(|&i| i != 0), "{pair:?}");
        assert_ne!(pair[0], pair[1]);
    }
    // The state a memory store starts from is a new incarnation too.
    let store = MemStore::with(HardState::default(), vec![entry(1, 1)]).unwrap();
    assert_ne!(store.incarnation(), 0);
}
