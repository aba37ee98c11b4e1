//! The replication thread for one peer: it owns this node's outbound
//! connection to that peer.
//!
//! It sends two kinds of traffic. Messages the core produced for the peer
//! (votes, vote requests, AppendEntries replies) arrive on its outbox once the
//! writer has made them durable. AppendEntries, when this node leads, are
//! *pulled*: the thread is woken whenever the core has something for the peer
//! and asks [`RaftCore::append_for`](crate::raft::core::RaftCore::append_for) for the
//! message only when it is ready to write it. Everything proposed while the
//! previous write was in progress therefore travels in one AppendEntries, up to
//! the size cap — the replication pipeline batches by itself under load, and
//! costs one message per heartbeat when idle.
//!
//! A lost connection is redialled with exponential backoff (10 ms doubling to
//! 1 s). Messages that cannot be sent meanwhile are dropped: Raft retries
//! everything that matters (heartbeats resend entries, candidates re-run
//! elections), and the core is told the peer is unreachable so that it falls
//! back to probing from the last known match.

use crate::node::wire::{self, Hello, HelloReply};
use crate::node::Shared;
use crate::raft::message::{Envelope, NodeId};
use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};
use log::{debug, info, warn};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Appends pulled before the buffered frames are written out.
const MAX_BUFFERED: usize = 4 * 1024 * 1024;

/// How other threads reach a peer's replication thread.
pub(crate) struct PeerHandle {
    outbox: Sender<Envelope>,
    wake: Sender<()>,
}

/// The receiving ends, moved into the thread.
pub(crate) struct PeerInputs {
    pub(crate) peer: NodeId,
    addr: String,
    outbox: Receiver<Envelope>,
    wake: Receiver<()>,
}

impl PeerHandle {
    pub(crate) fn new(peer: NodeId, addr: String) -> (PeerHandle, PeerInputs) {
        let (outbox_tx, outbox) = unbounded();
        // One pending wake-up is as good as many.
        let (wake_tx, wake) = bounded(1);
        let handle = PeerHandle {
            outbox: outbox_tx,
            wake: wake_tx,
        };
        let inputs = PeerInputs {
            peer,
            addr,
            outbox,
            wake,
        };
        (handle, inputs)
    }

    pub(crate) fn send(&self, message: Envelope) {
        let _ = self.outbox.send(message);
    }

    pub(crate) fn wake(&self) {
        let _ = self.wake.try_send(());
    }
}

struct Connection {
    stream: TcpStream,
    socket_id: Option<u64>,
}

pub(crate) fn run(shared: Arc<Shared>, inputs: PeerInputs, shutdown: Receiver<()>) {
    let peer = inputs.peer;
    let id = shared.config.id;
    let mut conn: Option<Connection> = None;
    let mut backoff = MIN_BACKOFF;
    let mut next_dial = Instant::now();
    let mut last_error = String::new();
    let mut buf = Vec::new();
    loop {
        // Wait for something to send.
        let mut pending = Vec::new();
        select! {
            recv(inputs.outbox) -> m => if let Ok(m) = m { pending.push(m) },
            recv(inputs.wake) -> _ => {}
            recv(shutdown) -> _ => break,
        }
        pending.extend(inputs.outbox.try_iter());

        if conn.is_none() {
            // Back off before redialling, still answering a halt at once.
            let wait = next_dial.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                select! {
                    recv(shutdown) -> _ => break,
                    default(wait) => {}
                }
                pending.extend(inputs.outbox.try_iter());
            }
            match dial(&shared, peer, &inputs.addr) {
                Ok(stream) => {
                    info!("node {id}: connected to peer {peer} at {}", inputs.addr);
                    last_error.clear();
                    backoff = MIN_BACKOFF;
                    let socket_id = shared.sockets.register(&stream);
                    conn = Some(Connection { stream, socket_id });
                }
                Err(e) => {
                    if e != last_error {
                        warn!(
                            "node {id}: cannot reach peer {peer} at {}: {e}",
                            inputs.addr
                        );
                        last_error = e;
                    } else {
                        debug!("node {id}: still cannot reach peer {peer}");
                    }
                    next_dial = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    shared.with_core(|core| core.peer_unreachable(peer));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };

        buf.clear();
        for message in &pending {
            if let Err(e) = wire::encode_frame(message, shared.config.max_frame, &mut buf) {
                warn!(
                    "node {id}: cannot send {} to {peer}: {e}",
                    message.message.name()
                );
            }
        }
        // Pull AppendEntries until the core has nothing more for this peer,
        // writing whenever the buffer fills.
        let result = loop {
            let append = shared.with_core(|core| core.append_for(peer)).flatten();
            if let Some(append) = &append {
                if let Err(e) = wire::encode_frame(append, shared.config.max_frame, &mut buf) {
                    warn!("node {id}: cannot send AppendEntries to {peer}: {e}");
                }
            }
            if append.is_none() || buf.len() >= MAX_BUFFERED {
                if let Err(e) = c.stream.write_all(&buf) {
                    break Err(e);
                }
                buf.clear();
            }
            if append.is_none() {
                break Ok(());
            }
        };
        if let Err(e) = result {
            if !shared.stopping.load(std::sync::atomic::Ordering::Acquire) {
                info!("node {id}: lost connection to peer {peer}: {e}");
            }
            if let Some(c) = conn.take() {
                shared.sockets.unregister(c.socket_id);
            }
            shared.with_core(|core| core.peer_unreachable(peer));
            next_dial = Instant::now();
        }
    }
    if let Some(c) = conn.take() {
        shared.sockets.unregister(c.socket_id);
    }
}

/// Connects to the peer and performs the handshake.
fn dial(shared: &Shared, peer: NodeId, addr: &str) -> Result<TcpStream, String> {
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
                let hello = Hello {
                    cluster_id: config.cluster_id.clone(),
                    from: config.id,
                    to: peer,
                    client_addr: config.client_addr.clone(),
                };
                wire::write_frame(&mut stream, &hello, config.max_frame)
                    .map_err(|e| format!("handshake: {e}"))?;
                return match wire::read_frame::<HelloReply, _>(&mut stream, config.max_frame) {
                    Ok(HelloReply::Accepted) => Ok(stream),
                    Ok(HelloReply::Refused { reason }) => Err(format!("refused: {reason}")),
                    Err(e) => Err(format!("handshake: {e}")),
                };
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}
