//! The snapshot bookkeeping the node's threads share: what INFO shows, and
//! the transfer being received. Kept apart from [`super::snapshot`], which
//! does the work, so that [`super::shared`] can hold it.

use crate::raft::message::{Index, NodeId, Term};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// What INFO shows about snapshots, and whether one is being taken.
#[derive(Default)]
pub(crate) struct SnapshotStats {
    pub(crate) taken: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) installed: AtomicU64,
    pub(crate) in_progress: AtomicBool,
    /// Unix time of the last snapshot this node completed (taken or
    /// installed), 0 before any.
    pub(crate) last_save_unix: AtomicU64,
    /// Transfers to followers under way: bytes sent of the file's total.
    pub(crate) sending: Mutex<BTreeMap<NodeId, (u64, u64)>>,
}

impl SnapshotStats {
    pub(crate) fn saved_now(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_save_unix.store(now, Ordering::Relaxed);
    }
}

/// A snapshot being received from a leader.
pub(crate) struct Incoming {
    pub(crate) leader: NodeId,
    pub(crate) index: Index,
    pub(crate) term: Term,
    pub(crate) file: File,
    pub(crate) received: u64,
}
