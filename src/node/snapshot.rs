//! Snapshots at the node level (§7): taking them without stopping the node,
//! streaming them to followers that need compacted entries, and receiving
//! them from a leader. The rules — when the log is compacted, who needs a
//! snapshot, what an install does to the log — are the core's
//! (`raft/core/snapshot.rs`); this module does the I/O they ask for.
//!
//! * **Taking.** The apply thread captures the state machine between two
//!   entries ([`StateMachine::snapshot`], a
//!   copy-on-write capture, cheap) and hands it to the **snapshot thread**
//!   ([`run`]), which writes the file with neither the core lock nor the
//!   state lock held: heartbeats, writes and reads go on meanwhile. Once the
//!   file is durable the core is told, and compacts the log.
//! * **Sending** ([`stream`]). A leader's replication thread streams the
//!   latest snapshot file to its peer in chunks of at most
//!   `snapshot_chunk_bytes`, reading one chunk at a time, and stops if the
//!   core no longer wants it sent. A failure anywhere restarts the transfer
//!   from the beginning.
//! * **Receiving** ([`receive`]). The inbound connection's thread writes
//!   each chunk the core accepted to `snapshots/incoming.tmp`, in order; the
//!   last one makes it fsync the file, check it whole, and rename it into
//!   place, and only then tell the core, which installs it.

use super::shared::Shared;
use super::snapshot_state::Incoming;
use super::state_machine::{StateMachine, StateSnapshot};
use super::wire;
use crate::raft::message::{Envelope, Message, NodeId, Term};
use crate::raft::SnapshotChunk;
use crate::storage::{SnapshotInfo, SnapshotMeta, SnapshotReader, StorageError};
use crossbeam_channel::{select, Receiver};
use log::{debug, error, info, warn};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A received snapshot is pushed to the disk every this many bytes.
const SYNC_EVERY: u64 = 8 * 1024 * 1024;

/// How often a leader logs the progress of a long transfer.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// A state captured by the apply thread, for the snapshot thread to write.
pub(crate) struct SnapshotJob {
    pub(crate) meta: SnapshotMeta,
    pub(crate) state: Box<dyn StateSnapshot>,
}

/// The snapshot thread: writes each captured state out, then lets the core
/// compact the log.
pub(crate) fn run(shared: Arc<Shared>, jobs: Receiver<SnapshotJob>, shutdown: Receiver<()>) {
    loop {
        let job = select! {
            recv(jobs) -> job => match job { Ok(job) => job, Err(_) => return },
            recv(shutdown) -> _ => return,
        };
        let index = job.meta.last_included_index;
        let started = Instant::now();
        match write(&shared, job) {
            Ok(info) => {
                let (term, bytes) = (info.meta.last_included_term, info.bytes);
                shared.snapshots.publish(info);
                shared.snapshot_stats.taken.fetch_add(1, Ordering::Relaxed);
                shared.snapshot_stats.saved_now();
                info!(
                    "node {}: snapshot at index {index} written ({bytes} bytes in {:?})",
                    shared.config.id,
                    started.elapsed()
                );
                shared.with_core(|core| core.snapshot_taken(index, term));
            }
            Err(e @ StorageError::Io { .. }) => {
                // A write or fsync in the data dir failed (a full disk, a
                // failing one): the same disk holds the log, and a failed
                // fsync must never be retried, so the node stops (fail-stop)
                // like after any other storage failure. Nothing is lost: the
                // log still holds everything, and the restarted node deletes
                // the half-written file.
                shared.snapshot_stats.failed.fetch_add(1, Ordering::Relaxed);
                shared
                    .snapshot_stats
                    .in_progress
                    .store(false, Ordering::Release);
                shared.fail(e);
                return;
            }
            Err(e) => {
                // Not the disk (a state that cannot be encoded): the log
                // still holds everything, so nothing is lost, and the next
                // snapshot tries again.
                shared.snapshot_stats.failed.fetch_add(1, Ordering::Relaxed);
                error!(
                    "node {}: snapshot at index {index} failed: {e}",
                    shared.config.id
                );
            }
        }
        shared
            .snapshot_stats
            .in_progress
            .store(false, Ordering::Release);
    }
}

fn write(shared: &Shared, job: SnapshotJob) -> Result<SnapshotInfo, StorageError> {
    let mut writer = shared.snapshots.create(&job.meta)?;
    let path = writer.tmp_path().to_path_buf();
    job.state
        .write_to(&mut writer)
        .map_err(|source| StorageError::Io {
            path,
            op: "write",
            source,
        })?;
    shared.snapshots.finish(writer, job.meta)
}

/// Replaces `state` with the snapshot `info` describes, reading the file as
/// a stream; returns what the snapshot stands for. The store lists only
/// files it checked whole or this process wrote, so the file is not checked
/// a second time here. A payload the state machine refuses is corruption of
/// that file.
pub(crate) fn restore_from<S: StateMachine + ?Sized>(
    info: &SnapshotInfo,
    state: &mut S,
) -> Result<SnapshotMeta, StorageError> {
    let mut reader = SnapshotReader::open_checked_before(&info.path)?;
    let mut payload = reader.payload()?;
    state
        .restore(&mut payload)
        .map_err(|e| StorageError::Corrupt {
            path: info.path.clone(),
            offset: None,
            reason: e.to_string(),
        })?;
    Ok(reader.meta().clone())
}

/// Streams the latest snapshot to `peer` as this node's leader of `term`.
/// Returns an I/O error if the connection failed (the caller treats it as
/// a lost connection); any other failure is reported to the core, which
/// starts over.
pub(crate) fn stream(
    shared: &Shared,
    peer: NodeId,
    term: Term,
    conn: &mut TcpStream,
) -> io::Result<()> {
    let id = shared.config.id;
    let Some(info) = shared.snapshots.latest() else {
        error!("node {id}: {peer} needs a snapshot, but there is none");
        shared.with_core(|core| core.snapshot_send_failed(peer));
        return Ok(());
    };
    let mut file = match File::open(&info.path) {
        Ok(file) => file,
        Err(e) => {
            // Replaced by a newer snapshot since `latest`: ask again.
            warn!("node {id}: cannot open {}: {e}", info.path.display());
            shared.with_core(|core| core.snapshot_send_failed(peer));
            return Ok(());
        }
    };
    let (index, total) = (info.meta.last_included_index, info.bytes);
    info!(
        "node {id}: sending snapshot at {index} ({} MiB) to {peer}",
        mib(total)
    );
    let result = send_chunks(shared, peer, term, &info, &mut file, conn);
    shared.snapshot_stats.sending.lock().remove(&peer);
    match result {
        Ok(true) => debug!("node {id}: sent snapshot at {index} to {peer}"),
        Ok(false) => debug!("node {id}: stopped sending snapshot at {index} to {peer}"),
        Err(SendError::Connection(e)) => return Err(e),
        Err(SendError::File(e)) => {
            error!("node {id}: cannot read {}: {e}", info.path.display());
            shared.with_core(|core| core.snapshot_send_failed(peer));
        }
    }
    Ok(())
}

enum SendError {
    Connection(io::Error),
    File(io::Error),
}

/// Sends the chunks; false if the core stopped wanting them sent.
fn send_chunks(
    shared: &Shared,
    peer: NodeId,
    term: Term,
    info: &SnapshotInfo,
    file: &mut File,
    conn: &mut TcpStream,
) -> Result<bool, SendError> {
    let id = shared.config.id;
    let total = info.bytes;
    let chunk_len = shared.config.snapshot_chunk_bytes.max(1);
    let mut data = vec![0u8; chunk_len];
    let mut frame = Vec::with_capacity(chunk_len + 128);
    let mut offset = 0u64;
    let mut last_report = Instant::now();
    loop {
        let still_wanted = shared
            .with_core(|core| core.sending_snapshot_to(peer, term))
            .unwrap_or(false);
        if !still_wanted {
            return Ok(false);
        }
        let want = (total - offset).min(chunk_len as u64) as usize;
        file.read_exact(&mut data[..want])
            .map_err(SendError::File)?;
        let done = offset + want as u64 == total;
        let envelope = Envelope {
            from: id,
            to: peer,
            term,
            message: Message::InstallSnapshot {
                last_included_index: info.meta.last_included_index,
                last_included_term: info.meta.last_included_term,
                offset,
                total,
                data: data[..want].to_vec(),
                done,
            },
        };
        frame.clear();
        wire::encode_frame(&envelope, shared.config.max_frame, &mut frame)
            .map_err(|e| SendError::File(io::Error::other(e.to_string())))?;
        conn.write_all(&frame).map_err(SendError::Connection)?;
        offset += want as u64;
        shared
            .snapshot_stats
            .sending
            .lock()
            .insert(peer, (offset, total));
        if last_report.elapsed() >= PROGRESS_EVERY && !done {
            last_report = Instant::now();
            info!(
                "node {id}: sending snapshot to {peer}: {}% ({} MiB of {} MiB)",
                offset * 100 / total.max(1),
                mib(offset),
                mib(total)
            );
        }
        if done {
            return Ok(true);
        }
    }
}

fn mib(bytes: u64) -> u64 {
    bytes / (1024 * 1024)
}

/// Writes a chunk the core accepted; on the last one, checks the file and
/// has the core install it. Any failure makes the leader start over.
pub(crate) fn receive(shared: &Shared, chunk: SnapshotChunk) {
    let id = shared.config.id;
    let (leader, index) = (chunk.from, chunk.last_included_index);
    let outcome = {
        let mut incoming = shared.incoming_snapshot.lock();
        write_chunk(shared, &mut incoming, chunk)
    };
    match outcome {
        Ok(Received::Partial(bytes)) => {
            shared.with_core(|core| core.snapshot_chunk_written(leader, index, bytes));
        }
        Ok(Received::Whole(info)) => {
            let term = info.meta.last_included_term;
            let config = (info.meta.config_index, info.meta.config.clone());
            shared.snapshots.publish(info);
            shared
                .snapshot_stats
                .installed
                .fetch_add(1, Ordering::Relaxed);
            shared.snapshot_stats.saved_now();
            shared.with_core(|core| core.snapshot_received(leader, index, term, config));
        }
        Err(Refusal::Defect(reason)) => {
            warn!("node {id}: snapshot at {index} from {leader} refused: {reason}");
            shared.with_core(|core| core.snapshot_receive_failed(leader, index));
        }
        Err(Refusal::Storage(e)) => {
            // Writing or syncing the file failed: the disk, not the
            // transfer. Stop, as after any storage failure (a failed fsync
            // is never retried).
            shared.fail(e);
        }
    }
}

/// Why a received chunk was not taken.
enum Refusal {
    /// The transfer itself is wrong (out of order, a file that does not
    /// check out): the leader starts over.
    Defect(String),
    /// Writing, syncing or renaming the file failed.
    Storage(StorageError),
}

enum Received {
    /// This many bytes are in the file so far.
    Partial(u64),
    /// The file is whole, checked and durable.
    Whole(SnapshotInfo),
}

fn write_chunk(
    shared: &Shared,
    incoming: &mut Option<Incoming>,
    chunk: SnapshotChunk,
) -> Result<Received, Refusal> {
    let path = shared.snapshots.incoming_path();
    let fail = |op: &'static str| {
        let path = path.clone();
        move |source: io::Error| Refusal::Storage(StorageError::Io { path, op, source })
    };
    if chunk.offset == 0 {
        // A transfer (re)starts: whatever was half-received is dropped.
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(fail("create"))?;
        *incoming = Some(Incoming {
            leader: chunk.from,
            index: chunk.last_included_index,
            term: chunk.last_included_term,
            file,
            received: 0,
        });
    }
    let Some(current) = incoming.as_mut() else {
        return Err(Refusal::Defect(format!(
            "chunk at offset {} of a transfer never started",
            chunk.offset
        )));
    };
    let same = (current.leader, current.index, current.term)
        == (
            chunk.from,
            chunk.last_included_index,
            chunk.last_included_term,
        );
    let new_len = current.received + chunk.data.len() as u64;
    let defect = if !same || chunk.offset != current.received {
        Some(format!(
            "chunk at offset {} out of order (expected {})",
            chunk.offset,
            if same { current.received } else { 0 }
        ))
    } else if new_len > chunk.total {
        Some(format!("chunks run past the stated {} bytes", chunk.total))
    } else {
        None
    };
    if let Some(defect) = defect {
        *incoming = None;
        return Err(Refusal::Defect(defect));
    }
    current
        .file
        .seek(SeekFrom::Start(current.received))
        .and_then(|_| current.file.write_all(&chunk.data))
        .map_err(fail("write"))?;
    // Pushed to the disk as it comes, so the final fsync is short and does
    // not stall the log's fsyncs behind a large flush.
    if new_len / SYNC_EVERY > current.received / SYNC_EVERY {
        current.file.sync_data().map_err(fail("fsync"))?;
    }
    current.received = new_len;
    if !chunk.done {
        return Ok(Received::Partial(new_len));
    }
    let Some(done) = incoming.take() else {
        return Err(Refusal::Defect("transfer vanished".into()));
    };
    if done.received != chunk.total {
        return Err(Refusal::Defect(format!(
            "the last chunk came at {} of {} bytes",
            done.received, chunk.total
        )));
    }
    done.file.sync_all().map_err(fail("fsync"))?;
    drop(done.file);
    let info = shared.snapshots.accept_incoming().map_err(|e| match e {
        // Renaming it into place or syncing the directory failed.
        e @ StorageError::Io { .. } => Refusal::Storage(e),
        // The file does not check out: the transfer was bad.
        e => Refusal::Defect(e.to_string()),
    })?;
    if (info.meta.last_included_index, info.meta.last_included_term) != (done.index, done.term) {
        return Err(Refusal::Defect(format!(
            "the file holds the snapshot at {}, not the announced {}",
            info.meta.last_included_index, done.index
        )));
    }
    Ok(Received::Whole(info))
}
