//! Accepts peer connections: a listener thread, and a thread per inbound
//! connection that checks the handshake and then steps every message it reads
//! into the core.
//!
//! The handshake is where foreign nodes are kept out: a connection whose
//! [`Hello`] names another cluster or a receiver other than this node, comes
//! from a data dir other than the one the cluster recorded for that id, or
//! from a node whose removal is committed, is refused and logged (see
//! `handshake.rs`). Each message must also come from the node the handshake
//! named. A peer keeps at most one inbound connection: a new one from the same
//! peer replaces the old, whose thread ends (a peer that vanished without
//! closing its socket would otherwise hold a thread forever).
//!
//! Before its handshake a connection is a stranger's: its [`Hello`] must fit
//! in [`wire::HANDSHAKE_MAX_FRAME`] and arrive whole within the I/O timeout
//! (a total deadline, not one per read), and at most
//! [`MAX_UNAUTHENTICATED`] connections wait for theirs at once, each on a
//! thread; one more is closed at once. Warnings about such connections are
//! rate-limited (the rest go to the debug log), so a flood of them cannot
//! flood the log either.

use super::handshake;
use super::shared::{Outbox, Shared};
use super::snapshot;
use super::sockets;
use super::wire::{self, Hello, HelloReply, WireError};
use crate::raft::message::{Envelope, Message, NodeId};
use log::{debug, info, warn};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt::Display;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The inbound connection currently accepted from each peer.
type Current = Arc<Mutex<HashMap<NodeId, TcpStream>>>;

/// The most connections that may wait for their handshake at once. Real
/// peers are a handful and handshake at once; the cap bounds what strangers
/// can hold (a thread and a 4 KiB frame each) for the I/O timeout.
const MAX_UNAUTHENTICATED: usize = 64;

/// The most connections from nodes that passed the handshake but are not
/// members here (a node joining, a leader added since this node last caught
/// up) that may be open at once. Real ones are one or two.
const MAX_STRANGERS: usize = 16;

/// At most one warning per this interval about connections that failed
/// before their handshake.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// The connections waiting for their handshake, and the rate limit of the
/// warnings about them.
#[derive(Default)]
struct Gate {
    unauthenticated: AtomicUsize,
    strangers: AtomicUsize,
    /// When the last warning was logged, and how many went to the debug log
    /// since.
    warned: Mutex<(Option<Instant>, u64)>,
}

impl Gate {
    /// Counts a new connection in, if there is room for it.
    fn admit(self: &Arc<Gate>) -> Option<Admitted> {
        let before = self.unauthenticated.fetch_add(1, Ordering::AcqRel);
        if before >= MAX_UNAUTHENTICATED {
            self.unauthenticated.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Admitted(self.clone()))
    }

    /// Counts a non-member's accepted connection in, if there is room.
    fn admit_stranger(self: &Arc<Gate>) -> Option<Stranger> {
        let before = self.strangers.fetch_add(1, Ordering::AcqRel);
        if before >= MAX_STRANGERS {
            self.strangers.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Stranger(self.clone()))
    }

    /// Logs `message` as a warning, or at debug level if a warning was
    /// logged less than [`WARN_EVERY`] ago.
    fn warn(&self, message: impl Display) {
        let mut warned = self.warned.lock();
        let now = Instant::now();
        match warned.0 {
            Some(last) if now.duration_since(last) < WARN_EVERY => {
                warned.1 += 1;
                debug!("{message}");
            }
            _ => {
                match warned.1 {
                    0 => warn!("{message}"),
                    n => warn!("{message} (and {n} more since the last such warning)"),
                }
                *warned = (Some(now), 0);
            }
        }
    }
}

/// A non-member's connection, counted until this is dropped.
struct Stranger(Arc<Gate>);

impl Drop for Stranger {
    fn drop(&mut self) {
        self.0.strangers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection counted as waiting for its handshake until this is dropped.
struct Admitted(Arc<Gate>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.unauthenticated.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) fn run(
    shared: Arc<Shared>,
    listener: TcpListener,
    handles: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    let id = shared.config.id;
    let current: Current = Arc::default();
    let gate = Arc::new(Gate::default());
    let what = format!("node {id}: peer port");
    sockets::accept_each(&listener, &shared.stopping, &handles, &what, |stream| {
        let Some(admitted) = gate.admit() else {
            // Closed at once, on this thread: a stranger's flood costs no
            // thread, and its warnings are rate-limited.
            drop(stream);
            gate.warn(format_args!(
                "node {id}: peer port: closed a new connection at once: \
                 {MAX_UNAUTHENTICATED} connections are already in their handshake"
            ));
            return None;
        };
        let (s, c, g) = (shared.clone(), current.clone(), gate.clone());
        let spawned = thread::Builder::new()
            .name(format!("raft-{id}-inbound"))
            .spawn(move || serve(s, c, g, admitted, stream));
        Some(spawned)
    });
}

fn serve(
    shared: Arc<Shared>,
    current: Current,
    gate: Arc<Gate>,
    admitted: Admitted,
    stream: TcpStream,
) {
    let id = shared.config.id;
    let remote = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    if shared.is_stopping() {
        return;
    }
    let socket_id = shared.sockets.register(&stream);
    let mut accepted = match handshake(&shared, &gate, &stream) {
        Ok(accepted) => accepted,
        Err(reason) => {
            gate.warn(format_args!(
                "node {id}: refused peer connection from {remote}: {reason}"
            ));
            shared.sockets.unregister(socket_id);
            return;
        }
    };
    drop(admitted);
    let peer = accepted.peer;
    info!("node {id}: peer {peer} connected from {remote}");
    shared.unreachable_peers.lock().remove(&peer);
    // The peer may have been down when this node introduced itself: nudge
    // our replicator, which dials it if it holds no connection (and sends
    // nothing new otherwise), so the peer learns our client address too.
    shared.with_outbox(peer, Outbox::wake);
    if let Ok(clone) = stream.try_clone() {
        if let Some(old) = current.lock().insert(peer, clone) {
            let _ = old.shutdown(std::net::Shutdown::Both);
        }
    }
    let mut reader = BufReader::with_capacity(64 * 1024, &stream);
    let reason = loop {
        match wire::read_frame::<Envelope, _>(&mut reader, shared.config.max_frame) {
            Ok(envelope) if envelope.from != peer => {
                break format!(
                    "message claims to be from node {} on a connection from node {peer}",
                    envelope.from
                );
            }
            Ok(envelope) => {
                let asks_for_vote = matches!(
                    envelope.message,
                    Message::PreVote { .. } | Message::RequestVote { .. }
                );
                if asks_for_vote {
                    // A removed node that never heard of its removal (it was
                    // cut off when it was removed) keeps asking for votes,
                    // which are ignored. Hang up: its next message redials,
                    // and the handshake tells it it was removed.
                    let removed = handshake::removed_at(&shared, peer, accepted.incarnation);
                    if let Some(index) = removed {
                        break format!("it was removed from the cluster at index {index}");
                    }
                }
                let counts_as_voter = matches!(
                    envelope.message,
                    Message::RequestVoteResponse { .. }
                        | Message::PreVoteResponse { .. }
                        | Message::AppendEntriesResponse { .. }
                        | Message::InstallSnapshotResponse { .. }
                );
                if counts_as_voter && !accepted.verified {
                    // Until this node's configuration records the peer's
                    // data dir, its votes and acknowledgements do not count.
                    accepted.verified =
                        handshake::incarnation_matches(&shared, peer, accepted.incarnation);
                    if !accepted.verified {
                        debug!(
                            "node {id}: not counting {} from {peer}: its data dir is not the \
                             one recorded for it",
                            envelope.message.name()
                        );
                        continue;
                    }
                }
                let stepped = shared.with_core(|core| {
                    core.step(envelope);
                    core.take_snapshot_chunk()
                });
                match stepped {
                    None => break "node has stopped".to_string(),
                    // Written here, off the core lock: the next chunk waits
                    // in the socket meanwhile.
                    Some(Some(chunk)) => snapshot::receive(&shared, chunk),
                    Some(None) => {}
                }
            }
            Err(WireError::Closed) => break String::new(),
            Err(e) => break e.to_string(),
        }
    };
    if !reason.is_empty() && !shared.is_stopping() {
        match reason.contains("i/o error") {
            true => debug!("node {id}: connection from peer {peer} ended: {reason}"),
            false => warn!("node {id}: closing connection from peer {peer}: {reason}"),
        }
    } else {
        debug!("node {id}: peer {peer} disconnected");
    }
    {
        let mut current = current.lock();
        let ours = current.get(&peer).and_then(|s| s.peer_addr().ok()) == stream.peer_addr().ok();
        if ours {
            current.remove(&peer);
            // Not replaced by a newer connection: the peer stopped or the
            // link broke. (A killed process's sockets are closed by its
            // kernel, so this is how a follower learns of its leader's
            // death at once, well before its election timer fires.)
            if !shared.is_stopping() {
                shared.unreachable_peers.lock().insert(peer);
            }
        }
    }
    shared.sockets.unregister(socket_id);
}

/// Reads and checks the [`Hello`], answering it. Returns the peer's id.
/// A peer that passed the handshake.
struct Accepted {
    peer: NodeId,
    /// Its data dir's incarnation.
    incarnation: u64,
    /// Whether that is the incarnation recorded for it (or none is): if
    /// not, what it answers as a voter is not stepped (see
    /// [`handshake::check_incarnation`]).
    verified: bool,
    /// Held while the connection lasts, if the peer is no member here.
    _stranger: Option<Stranger>,
}

fn handshake(
    shared: &Shared,
    gate: &Arc<Gate>,
    mut stream: &TcpStream,
) -> Result<Accepted, String> {
    let config = &shared.config;
    stream
        .set_write_timeout(Some(config.io_timeout))
        .and_then(|_| stream.set_nodelay(true))
        .map_err(|e| e.to_string())?;
    // The whole hello within the I/O timeout, and small: the other end is
    // nobody yet.
    let mut reader = wire::Deadline::new(stream, config.io_timeout);
    let hello: Hello = wire::read_frame(&mut reader, wire::HANDSHAKE_MAX_FRAME)
        .map_err(|e| format!("bad handshake: {e}"))?;
    let mut reply = handshake::answer(shared, &hello);
    // A node of this cluster that is not a member here (a joining node, or
    // a leader added since this node last caught up) is accepted, but only
    // so many at once: the cluster id is no secret, and each such
    // connection may send frames of up to the full limit.
    let mut stranger = None;
    if matches!(reply, HelloReply::Accepted { .. }) && !shared.members.lock().contains(hello.from) {
        stranger = gate.admit_stranger();
        if stranger.is_none() {
            reply = HelloReply::Refused {
                reason: format!(
                    "node {} is not a member here, and {MAX_STRANGERS} connections from \
                     non-members are open already",
                    hello.from
                ),
            };
        }
    }
    // Best effort: the refusal is logged here whether or not the peer hears it.
    let _ = wire::write_frame(&mut stream, &reply, wire::HANDSHAKE_MAX_FRAME);
    match reply {
        HelloReply::Accepted { .. } => {}
        HelloReply::Refused { reason } => return Err(reason),
        HelloReply::Removed { index } => {
            return Err(format!(
                "node {} was removed from the cluster at index {index} (told so)",
                hello.from
            ))
        }
    }
    // From now on the connection may be idle for long stretches (followers
    // rarely talk to each other); a replacement connection ends it instead.
    stream.set_read_timeout(None).map_err(|e| e.to_string())?;
    Ok(Accepted {
        peer: hello.from,
        incarnation: hello.incarnation,
        verified: handshake::check_incarnation(shared, hello.from, hello.incarnation).is_ok(),
        _stranger: stranger,
    })
}
