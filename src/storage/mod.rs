//! Stable storage: what a node must never forget.
//!
//! Raft is only safe if a node never forgets what it has promised: the term
//! it has seen (`current_term`), its vote (`voted_for`), and every entry it
//! has acknowledged to a leader (Figure 2, "Persistent state on all
//! servers"). This layer keeps them. [`LogStore`] is what the node's writer
//! thread needs from any storage; [`DiskStore`] is the data dir (its on-disk
//! format is defined in one place, the docs of `disk.rs`), [`MemStore`] keeps
//! everything in memory for tests that need no disk. Snapshots (§7) are
//! files of their own ([`SnapshotWriter`], [`SnapshotReader`]; the format is
//! in the docs of `snapshot_file.rs`), kept in the data dir's `snapshots/`
//! by [`SnapshotStore`].
//!
//! Dependencies: the Raft types ([`crate::raft::message`], and the
//! configuration of [`crate::raft::membership`], which a data dir and a
//! snapshot record) and the codec.
//! Nothing here knows about threads, the network or the state machine.

mod disk;
mod error;
mod log_file;
mod log_store;
mod memory;
mod segment;
mod snapshot_file;
mod snapshot_store;

pub use disk::{DiskOptions, DiskStore};
pub use error::StorageError;
pub use log_store::{LogStore, Recovered};
pub use memory::MemStore;
pub use snapshot_file::{SnapshotMeta, SnapshotReader, SnapshotWriter};
pub use snapshot_store::{SnapshotInfo, SnapshotStore};

#[cfg(test)]
mod contract_tests;
