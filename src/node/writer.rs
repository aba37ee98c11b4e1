//! The writer thread: makes the core's output durable before anything that
//! depends on it leaves the node.
//!
//! It takes every pending [`Ready`] at once, writes the hard state, applies
//! their truncations and appends, and syncs the log once for all of them
//! (group commit). Only then does it hand their messages to the peer threads
//! — so no vote and no acknowledgement ever leaves before what it promises is
//! on disk — and tell the core how far the log is durable, which is when a
//! leader counts itself towards a majority. The commit index is saved with
//! the log (no fsync of its own while busy; one when idle), and compaction
//! after a snapshot happens here too. A storage error stops the node
//! (fail-stop, [`Shared::fail`]): after a failed write or fsync, what the
//! disk holds is unknown, so the writer returns at once and nothing is ever
//! written or synced again — above all, a failed fsync is never retried.

use super::shared::Shared;
use crate::raft::message::{Index, Term};
use crate::raft::Ready;
use crate::storage::{LogStore, StorageError};
use crossbeam_channel::{select, Receiver};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the writer waits, idle, before syncing a saved commit index.
const COMMIT_SYNC_DELAY: Duration = Duration::from_millis(20);
/// No timeout at all.
const NEVER: Duration = Duration::from_secs(24 * 3600);

pub(crate) fn run<L: LogStore>(
    shared: Arc<Shared>,
    mut store: L,
    jobs: Receiver<Ready>,
    shutdown: Receiver<()>,
) {
    // A commit index saved since the last sync: made durable once the
    // writer has been idle for a moment, so a node restarted after a quiet
    // spell re-applies everything committed without waiting for a leader.
    // Under load it rides along with the next batch's sync instead, costing
    // no fsync of its own.
    let mut commit_unsynced = false;
    loop {
        let idle = if commit_unsynced {
            COMMIT_SYNC_DELAY
        } else {
            NEVER
        };
        let first = select! {
            recv(jobs) -> job => match job { Ok(job) => job, Err(_) => return },
            recv(shutdown) -> _ => return,
            default(idle) => {
                commit_unsynced = false;
                let started = Instant::now();
                if let Err(e) = store.sync() {
                    shared.fail(e);
                    return;
                }
                count_sync(&shared, started.elapsed());
                continue;
            }
        };
        let mut batch = vec![first];
        batch.extend(jobs.try_iter());
        match persist(&mut store, &batch) {
            Ok(Persisted {
                last_written,
                sync_took,
            }) => {
                let synced = sync_took.is_some();
                if let Some(took) = sync_took {
                    count_sync(&shared, took);
                }
                count_appended(&shared, &batch);
                if let Some(hs) = batch.iter().rev().find_map(|r| r.hard_state) {
                    (shared.durable_term).fetch_max(hs.current_term, Ordering::Release);
                }
                let saved_commit = batch.iter().any(|r| r.commit_index.is_some());
                commit_unsynced = (commit_unsynced || saved_commit) && !synced;
                for ready in &mut batch {
                    for message in ready.messages.drain(..) {
                        shared.with_outbox(message.to, |outbox| outbox.send(message));
                    }
                }
                if let Some(index) = batch.iter().find_map(|r| r.removed) {
                    shared.mark_removed(index);
                }
                if let Some((index, term)) = last_written {
                    shared.with_core(|core| core.persisted(index, term));
                }
            }
            Err(e) => {
                shared.fail(e);
                return;
            }
        }
    }
}

/// One log sync done, which took `took`.
fn count_sync(shared: &Shared, took: Duration) {
    shared.log_syncs.fetch_add(1, Ordering::Relaxed);
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    shared.stats.fsync.observe(micros);
}

/// The entries a batch wrote to the log: how many, their size (each
/// entry's [`Entry::size`](crate::raft::message::Entry::size), a bound a
/// few dozen bytes above what its record takes on disk), and how many one
/// write made durable together.
fn count_appended(shared: &Shared, batch: &[Ready]) {
    let (mut entries, mut bytes) = (0u64, 0u64);
    for ready in batch {
        entries += ready.entries.len() as u64;
        bytes += ready.entries.iter().map(|e| e.size() as u64).sum::<u64>();
    }
    if entries > 0 {
        let stats = &shared.stats;
        stats.entries_appended.fetch_add(entries, Ordering::Relaxed);
        stats.bytes_appended.fetch_add(bytes, Ordering::Relaxed);
        stats.append_batch.observe(entries);
    }
}

/// What writing a batch did.
struct Persisted {
    /// The last entry written, if any.
    last_written: Option<(Index, Term)>,
    /// How long the log sync took, if there was one.
    sync_took: Option<Duration>,
}

/// Writes a batch of readies with one log sync (and the commit index and
/// compactions they carry, which need none of their own). The hard state goes first: it is monotonic (terms only
/// grow, a vote is cast once per term), so the newest one covers every
/// earlier ready, and it must never lag the log.
fn persist<L: LogStore>(store: &mut L, batch: &[Ready]) -> Result<Persisted, StorageError> {
    if let Some(hard_state) = batch.iter().rev().find_map(|r| r.hard_state) {
        store.save_hard_state(&hard_state)?;
    }
    let mut log_changed = false;
    let mut last_written = None;
    for ready in batch {
        if let Some(index) = ready.removed {
            // Durable on return: a restart on this data dir is refused.
            store.save_removed(index)?;
        }
        if ready.reset_log {
            // Durable on return: an installed snapshot replaced the log.
            store.reset()?;
        }
        if let Some(last_kept) = ready.truncate_after {
            store.truncate_after(last_kept)?;
            log_changed = true;
        }
        if let Some(commit_index) = ready.commit_index {
            // Before the append, so it rides in the same write and the same
            // sync; it never needs a sync of its own (a lost commit index
            // is relearnt from the leader).
            store.save_commit(commit_index)?;
        }
        if let Some(last) = ready.entries.last() {
            store.append(&ready.entries)?;
            log_changed = true;
            last_written = Some((last.index, last.term));
        }
        if let Some(through) = ready.compact_through {
            // A durable snapshot covers these; dropping them need not be
            // durable itself.
            store.compact(through)?;
        }
    }
    let mut sync_took = None;
    if log_changed {
        let started = Instant::now();
        store.sync()?;
        sync_took = Some(started.elapsed());
    }
    Ok(Persisted {
        last_written,
        sync_took,
    })
}
