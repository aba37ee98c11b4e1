//! The replication thread for one peer: it owns this node's outbound
//! connection to that peer.
//!
//! It sends two kinds of traffic. Messages the core produced for the peer
//! (votes, vote requests, AppendEntries replies) arrive on its outbox once the
//! writer has made them durable. AppendEntries, when this node leads, are
//! *pulled*: the thread is woken whenever the core has something for the peer
//! and asks [`RaftCore::append_for`](crate::raft::RaftCore::append_for) for
//! the message only when it is ready to write it. Everything proposed while
//! the previous write was in progress therefore travels in one
//! AppendEntries, up to the size cap — the replication pipeline batches by
//! itself under load, and costs one message per heartbeat when idle.
//!
//! A follower that needs entries the leader has compacted gets the snapshot
//! instead, streamed by this thread in chunks ([`snapshot::stream`]).
//!
//! A lost connection is redialled with exponential backoff (10 ms doubling to
//! 1 s). Messages that cannot be sent meanwhile are dropped: Raft retries
//! everything that matters (heartbeats resend entries, candidates re-run
//! elections), and the core is told the peer is unreachable so that it falls
//! back to probing from the last known match.

use super::handshake;
use super::shared::{Outbox, Shared};
use super::snapshot;
use super::wire::{self, HelloReply};
use crate::raft::message::{Envelope, NodeId};
use crate::raft::Outgoing;
use crossbeam_channel::{bounded, select, unbounded, Receiver};
use log::{debug, error, info, warn};
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Appends pulled before the buffered frames are written out.
const MAX_BUFFERED: usize = 4 * 1024 * 1024;

/// The receiving ends of a peer's [`Outbox`], moved into its thread.
pub(crate) struct PeerInputs {
    pub(crate) peer: NodeId,
    messages: Receiver<Envelope>,
    wake: Receiver<()>,
}

/// The two ends of the channels to the replication thread for `peer`.
pub(crate) fn channel(peer: NodeId) -> (Outbox, PeerInputs) {
    let (messages_tx, messages) = unbounded();
    let (wake_tx, wake) = bounded(1);
    let outbox = Outbox {
        messages: messages_tx,
        wake: wake_tx,
    };
    let inputs = PeerInputs {
        peer,
        messages,
        wake,
    };
    (outbox, inputs)
}

impl Shared {
    /// Hands `f` the outbox of the replication thread for `peer` (under the
    /// lock that guards them: no copy of its senders is made), starting the
    /// thread now if there is none and an address to dial it at is known.
    /// Without one, `f` is not called: the message is dropped, as for an
    /// unreachable peer.
    pub(crate) fn with_outbox(&self, peer: NodeId, f: impl FnOnce(&Outbox)) {
        if peer == self.config.id {
            return;
        }
        let mut peers = self.peers.lock();
        if let Some(outbox) = peers.get(&peer) {
            return f(outbox);
        }
        if self.is_stopping() || self.dial_addr(peer).is_none() {
            return;
        }
        let Some(shared) = self.this.get().and_then(Weak::upgrade) else {
            return;
        };
        let (outbox, inputs) = channel(peer);
        let shutdown = self.shutdown.clone();
        let spawned = thread::Builder::new()
            .name(format!("raft-{}-peer-{peer}", self.config.id))
            .spawn(move || run(shared, inputs, shutdown));
        match spawned {
            Ok(handle) => {
                self.peer_threads.lock().push(handle);
                f(peers.entry(peer).or_insert(outbox));
            }
            Err(e) => error!(
                "node {}: cannot start the replication thread for {peer}: {e}",
                self.config.id
            ),
        }
    }
}

/// How a redial went.
enum Dial {
    Connected,
    /// Not this time; the next try waits for the backoff.
    Failed,
    ShuttingDown,
}

struct Connection {
    stream: TcpStream,
    socket_id: Option<u64>,
    /// The peer's data dir's incarnation, and whether it is the one
    /// recorded for it (or none is). To an unverified peer only answers
    /// and requests go, no AppendEntries: its acknowledgements would not
    /// count (see [`handshake::check_incarnation`]).
    incarnation: u64,
    verified: bool,
}

/// One peer's replication thread state.
struct Replicator {
    shared: Arc<Shared>,
    inputs: PeerInputs,
    shutdown: Receiver<()>,
    conn: Option<Connection>,
    backoff: Duration,
    next_dial: Instant,
    /// The last dial error, logged once until it changes.
    last_error: String,
    buf: Vec<u8>,
}

pub(crate) fn run(shared: Arc<Shared>, inputs: PeerInputs, shutdown: Receiver<()>) {
    let mut replicator = Replicator {
        shared,
        inputs,
        shutdown,
        conn: None,
        backoff: MIN_BACKOFF,
        next_dial: Instant::now(),
        last_error: String::new(),
        buf: Vec::new(),
    };
    // Introduce this node to the peer at once rather than with its first
    // message: the handshake tells the peer this node's client address, so
    // every node can describe every member to clients (followers seldom
    // have anything to send each other), and an election later finds the
    // connection ready. If the peer is not up yet, the first message redials.
    if let Dial::ShuttingDown = replicator.redial(&mut Vec::new()) {
        replicator.close();
        return;
    }
    while let Some(mut pending) = replicator.wait_for_work() {
        if replicator.conn.is_none() {
            match replicator.redial(&mut pending) {
                Dial::Connected => {}
                Dial::Failed => continue,
                Dial::ShuttingDown => break,
            }
        }
        if let Err(e) = replicator.send(&pending) {
            replicator.lost_connection(e);
        }
    }
    replicator.close();
}

impl Replicator {
    /// Waits for messages to send or a wake-up; `None` on shutdown, or once
    /// the node dropped this peer's outbox (it left the cluster).
    fn wait_for_work(&self) -> Option<Vec<Envelope>> {
        let mut pending = Vec::new();
        select! {
            recv(self.inputs.messages) -> m => match m {
                Ok(m) => pending.push(m),
                Err(_) => return None,
            },
            recv(self.inputs.wake) -> w => if w.is_err() { return None },
            recv(self.shutdown) -> _ => return None,
        }
        pending.extend(self.inputs.messages.try_iter());
        Some(pending)
    }

    /// Dials the peer once its backoff has passed, collecting messages that
    /// arrive meanwhile.
    fn redial(&mut self, pending: &mut Vec<Envelope>) -> Dial {
        let (id, peer) = (self.shared.config.id, self.inputs.peer);
        let wait = self.next_dial.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            // Back off, still answering a halt at once.
            select! {
                recv(self.shutdown) -> _ => return Dial::ShuttingDown,
                default(wait) => {}
            }
            pending.extend(self.inputs.messages.try_iter());
        }
        let addr = self.shared.dial_addr(peer).unwrap_or_default();
        match dial(&self.shared, peer, &addr) {
            Ok((stream, incarnation)) => {
                info!("node {id}: connected to peer {peer} at {addr}");
                self.last_error.clear();
                self.backoff = MIN_BACKOFF;
                let socket_id = self.shared.sockets.register(&stream);
                let verified =
                    handshake::check_incarnation(&self.shared, peer, incarnation).is_ok();
                self.conn = Some(Connection {
                    stream,
                    socket_id,
                    incarnation,
                    verified,
                });
                self.shared.unreachable_peers.lock().remove(&peer);
                Dial::Connected
            }
            Err(e) => {
                if e != self.last_error {
                    warn!("node {id}: cannot reach peer {peer} at {addr}: {e}");
                    self.last_error = e;
                } else {
                    debug!("node {id}: still cannot reach peer {peer}");
                }
                self.shared.unreachable_peers.lock().insert(peer);
                self.next_dial = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                self.shared.with_core(|core| core.peer_unreachable(peer));
                Dial::Failed
            }
        }
    }

    /// Writes `pending`, then pulls AppendEntries until the core has nothing
    /// more for this peer, writing whenever the buffer fills.
    fn send(&mut self, pending: &[Envelope]) -> io::Result<()> {
        let (id, peer) = (self.shared.config.id, self.inputs.peer);
        let max_frame = self.shared.config.max_frame;
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        self.buf.clear();
        for message in pending {
            if let Err(e) = wire::encode_frame(message, max_frame, &mut self.buf) {
                warn!(
                    "node {id}: cannot send {} to {peer}: {e}",
                    message.message.name()
                );
            }
        }
        if !conn.verified {
            conn.verified = handshake::incarnation_matches(&self.shared, peer, conn.incarnation);
        }
        loop {
            // Nothing to replicate to a peer whose acknowledgements do not
            // count: only the answers and requests in `pending` go.
            let outgoing = match conn.verified {
                true => self
                    .shared
                    .with_core(|core| core.append_for(peer))
                    .flatten(),
                false => None,
            };
            match &outgoing {
                Some(Outgoing::Append(append)) => {
                    if let Err(e) = wire::encode_frame(append, max_frame, &mut self.buf) {
                        // Batches are cut to fit a frame (`Entry::size`), so
                        // this is a bug; still, never leave `next_index` past
                        // entries that did not go: probe again.
                        warn!("node {id}: cannot send AppendEntries to {peer}: {e}");
                        self.shared.with_core(|core| core.peer_unreachable(peer));
                    }
                }
                Some(Outgoing::Snapshot { term }) => {
                    conn.stream.write_all(&self.buf)?;
                    self.buf.clear();
                    // Nothing else goes to the peer until it answers; a
                    // failed attempt is retried when the thread is next
                    // woken, never in a loop here.
                    return snapshot::stream(&self.shared, peer, *term, &mut conn.stream);
                }
                None => {}
            }
            if outgoing.is_none() || self.buf.len() >= MAX_BUFFERED {
                conn.stream.write_all(&self.buf)?;
                self.buf.clear();
            }
            if outgoing.is_none() {
                return Ok(());
            }
        }
    }

    fn lost_connection(&mut self, e: io::Error) {
        let (id, peer) = (self.shared.config.id, self.inputs.peer);
        if !self.shared.is_stopping() {
            info!("node {id}: lost connection to peer {peer}: {e}");
        }
        self.close();
        self.shared.unreachable_peers.lock().insert(peer);
        self.shared.with_core(|core| core.peer_unreachable(peer));
        self.next_dial = Instant::now();
    }

    fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared.sockets.unregister(conn.socket_id);
        }
    }
}

/// Connects to the peer and performs the handshake.
/// Dials `peer` at `addr` and introduces this node. Returns the connection
/// and the peer's data dir's incarnation.
fn dial(shared: &Shared, peer: NodeId, addr: &str) -> Result<(TcpStream, u64), String> {
    let config = &shared.config;
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    let mut last = String::from("no address");
    for sockaddr in addrs {
        match TcpStream::connect_timeout(&sockaddr, config.connect_timeout) {
            Ok(mut stream) => {
                let setup = stream
                    .set_nodelay(true)
                    .and_then(|_| stream.set_write_timeout(Some(config.io_timeout)))
                    .and_then(|_| stream.set_read_timeout(Some(config.io_timeout)));
                if let Err(e) = setup {
                    last = e.to_string();
                    continue;
                }
                wire::write_frame(&mut stream, &shared.hello(peer), wire::HANDSHAKE_MAX_FRAME)
                    .map_err(|e| format!("handshake: {e}"))?;
                // What answers may not be the peer: a small reply, whole
                // within the I/O timeout.
                let mut reader = wire::Deadline::new(&stream, config.io_timeout);
                let reply =
                    wire::read_frame::<HelloReply, _>(&mut reader, wire::HANDSHAKE_MAX_FRAME);
                if let Err(e) = stream.set_read_timeout(Some(config.io_timeout)) {
                    return Err(format!("handshake: {e}"));
                }
                return match reply {
                    Ok(HelloReply::Accepted { incarnation }) => Ok((stream, incarnation)),
                    Ok(HelloReply::Refused { reason }) => Err(format!("refused: {reason}")),
                    Ok(HelloReply::Removed { index }) => {
                        handshake::told_removed(shared, peer, index);
                        Err(format!("refused: this node was removed at index {index}"))
                    }
                    Err(e) => Err(format!("handshake: {e}")),
                };
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}
