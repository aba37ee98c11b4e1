//! The client port: a listener thread and a thread per client connection,
//! speaking RESP2 or RESP3 ([`crate::redis::resp`]) and executing
//! [`crate::redis::commands`].
//!
//! Requests on a connection are answered in order. A pipelined burst's
//! writes are all proposed before the first is waited for, so they share one
//! fsync and one round trip, and its reads share one heartbeat round
//! ([`commands::start`]); their replies are buffered and written together
//! once the burst has been read, so a pipelining client costs one write per
//! burst rather than one per request.
//! A client that sends something malformed gets `-ERR Protocol error: ...` and
//! its connection is closed; everyone else is unaffected. Every reply to a
//! command is counted by command and outcome ([`Stats::replied`]) where it
//! is written, whichever way the command ran (alone, pipelined, queued in a
//! transaction); a protocol error answers no command and is not counted. Each connection has
//! its own thread, so a slow or vanished client only ever blocks itself: the
//! node's own threads never wait on a client socket.
//!
//! # Limits
//!
//! What a client can make the server hold is bounded ([`ClientLimits`]):
//!
//! * **Connections**: at most `max_clients` at once, each one thread (with a
//!   256 KiB stack) and one file descriptor (its socket, shared with the
//!   registry a halt uses to unblock it). One more is answered `-ERR max number of
//!   clients reached` and closed by the listener itself, without a thread.
//!   [`fit_max_clients`] lowers the cap at start if the process's file
//!   descriptor limit could not hold that many beside what the node needs.
//! * **Requests**: at most 8 MiB each on the wire, checked as each argument's
//!   length arrives and before its bytes are read ([`resp::Limits`]).
//! * **Replies**: written out whenever more than [`FLUSH_AT`] bytes are
//!   pending, not only at the end of a burst, and while that write blocks
//!   (the client is not reading) the connection reads no further requests.
//!   So a burst of 2,000 `GET big` holds about one reply at a time, not
//!   2,000; the rest waits, unread, in the client's socket. A client that
//!   reads nothing for [`WRITE_TIMEOUT`] is disconnected, and one whose
//!   unsent replies would pass `output_limit` (one huge EXEC reply) is
//!   disconnected at once — both with a log line.
//! * **All clients together**: what connections hold beyond
//!   [`CLIENT_ALLOWANCE`] each, in a request being read, in unsent replies
//!   and in a transaction's queued commands, is charged to one budget of
//!   `max_memory` bytes ([`ClientMemory`]); a request that cannot be
//!   charged is refused with a protocol error, a reply or a queue that
//!   cannot be, disconnects its client.

use crate::kv::expirer::Expirer;
use crate::kv::KvNode;
use crate::node::sockets::{self, Sockets};
use crate::redis::commands::{self, After, Started};
use crate::redis::port::{Charge, ClientLimits, CommandSlot, Connection, Port, Stats};
use crate::redis::resp::{self, Limits, Reply, RespError};
use log::{debug, info, warn};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

#[cfg(doc)]
use crate::redis::port::{ClientMemory, CLIENT_ALLOWANCE};

/// A client that does not read its replies for this long is disconnected.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Client threads need little stack; hundreds of idle connections are fine.
const CONNECTION_STACK: usize = 256 * 1024;
/// Each connection's read buffer: enough for a pipelined burst of ordinary
/// requests; bigger arguments are read through it.
const READ_BUFFER: usize = 16 * 1024;
/// Pending replies are written out once they pass this many bytes, even in
/// the middle of a pipelined burst.
pub const FLUSH_AT: usize = 64 * 1024;
/// What an over-cap client is told, in Redis's words, before it is closed.
pub const MAX_CLIENTS_REACHED: &[u8] = b"-ERR max number of clients reached\r\n";
/// The protocol error for a request the shared client budget cannot hold.
const CLIENT_MEMORY_SPENT: &str = "the server's memory for client requests is spent";

/// File descriptors held whatever the clients do: the data dir's files, the
/// listeners, the log (Redis reserves 32 for the same).
const RESERVED_FDS: u64 = 32;
/// File descriptors per peer: outbound and inbound connection, a handshake
/// in progress and one spare. Counted for at least [`MIN_PEERS_RESERVED`],
/// since members can be added while the node runs.
const FDS_PER_PEER: u64 = 4;
const MIN_PEERS_RESERVED: u64 = 8;
/// File descriptors per client connection: its socket (the registry that
/// lets a halt shut it down shares it, see [`Sockets::register_shared`]).
const FDS_PER_CLIENT: u64 = 1;

/// The largest client cap the process's file descriptor limit can hold
/// beside the node's own descriptors, after raising the soft limit as far
/// as the hard limit allows (as Redis does): `requested` if it fits,
/// otherwise less, with a warning. `peers` is how many other members the
/// node starts with.
pub fn fit_max_clients(requested: usize, peers: usize) -> usize {
    let reserved = RESERVED_FDS + FDS_PER_PEER * (peers as u64).max(MIN_PEERS_RESERVED);
    let wanted = reserved.saturating_add((requested as u64).saturating_mul(FDS_PER_CLIENT));
    let limit = match sockets::raise_fd_limit(wanted) {
        Ok(limit) => limit,
        Err(e) => {
            warn!("cannot read the open file limit ({e}); keeping --max-clients {requested}");
            return requested;
        }
    };
    if limit >= wanted {
        return requested;
    }
    let fitted = (limit.saturating_sub(reserved) / FDS_PER_CLIENT).max(1) as usize;
    warn!(
        "the open file limit is {limit}, too low for --max-clients {requested} ({wanted} \
         descriptors with {reserved} kept for the node and its peers); serving at most \
         {fitted} clients. Raise the limit (ulimit -n) to serve more"
    );
    fitted
}

struct State {
    port: Port,
    stopping: AtomicBool,
    sockets: Sockets,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

/// A running client port.
pub struct Server {
    state: Arc<State>,
    addr: SocketAddr,
    listener: Option<JoinHandle<()>>,
    /// Deletes expired keys while this node leads (see
    /// [`crate::kv::expirer`]).
    expirer: Option<Expirer>,
}

impl Server {
    /// Serves clients of `node` on `listener`, with the default limits.
    pub fn start(node: Arc<KvNode>, listener: TcpListener) -> std::io::Result<Server> {
        Server::start_with(node, listener, ClientLimits::default())
    }

    /// Serves clients of `node` on `listener` within `limits`.
    pub fn start_with(
        node: Arc<KvNode>,
        listener: TcpListener,
        limits: ClientLimits,
    ) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            port: Port::new(node, addr, limits),
            stopping: AtomicBool::new(false),
            sockets: Sockets::default(),
            connections: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        let id = state.port.node.id();
        let expirer = Expirer::start(state.port.node.clone())?;
        let handle = thread::Builder::new()
            .name(format!("client-{id}-listener"))
            .spawn(move || accept_loop(s, listener))?;
        info!(
            "node {id}: serving clients on {addr} (at most {})",
            limits.max_clients
        );
        Ok(Server {
            state,
            addr,
            listener: Some(handle),
            expirer: Some(expirer),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port's counters, which outlive it.
    pub fn stats(&self) -> Arc<Stats> {
        self.state.port.stats.clone()
    }

    /// Closes the port and every client connection, and joins their threads.
    pub fn halt(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.expirer.take();
        let Some(listener) = self.listener.take() else {
            return;
        };
        self.state.stopping.store(true, Ordering::Release);
        sockets::wake_listener(self.addr);
        let _ = listener.join();
        self.state.sockets.shutdown_all();
        for handle in self.state.connections.lock().drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Gives its connection's place back when the connection's thread ends
/// (or was never started).
struct Place<'a>(&'a Port);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.stats.disconnected();
    }
}

fn accept_loop(state: Arc<State>, listener: TcpListener) {
    let id = state.port.node.id();
    let what = format!("node {id}: client port");
    let max_clients = state.port.limits.max_clients;
    // Refusals come in floods; one line per flood.
    let mut refusing = false;
    sockets::accept_loop(&listener, &state.stopping, &what, |stream| {
        let mut handles = state.connections.lock();
        handles.retain(|h| !h.is_finished());
        // Counted here, not in the thread, so a burst of connections cannot
        // all pass the check before any of them is counted.
        if state.port.stats.connected_clients() >= max_clients as u64 {
            state.port.stats.rejected();
            if !refusing {
                warn!("{what}: max number of clients ({max_clients}) reached; refusing more");
                refusing = true;
            }
            refuse(stream);
            return;
        }
        if refusing {
            info!("{what}: accepting clients again");
            refusing = false;
        }
        state.port.stats.connected();
        let s = state.clone();
        let spawned = thread::Builder::new()
            .name(format!("client-{id}"))
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let _place = Place(&s.port);
                // Shared with the registry rather than copied: a client
                // costs one file descriptor.
                let stream = Arc::new(stream);
                let socket = s.sockets.register_shared(&stream);
                if !s.stopping.load(Ordering::Acquire) {
                    serve(&s.port, &stream);
                }
                s.sockets.unregister(socket);
            });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                state.port.stats.disconnected();
                state.port.stats.rejected();
                warn!("{what}: cannot start a thread for a connection: {e}");
            }
        }
    });
}

/// Tells an over-cap client why, and closes it, without blocking the
/// listener: a fresh socket's send buffer takes the line at once. What the
/// client has already sent is read and dropped first, since closing a
/// socket with unread input sends a reset, which can destroy the line
/// before the client reads it (see [`linger`]; a client that sends only
/// later may still see that happen).
fn refuse(stream: TcpStream) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let _ = (&stream).write_all(MAX_CLIENTS_REACHED);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match (&stream).read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

fn serve(port: &Port, stream: &TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut writer = stream;
    let mut reader = BufReader::with_capacity(READ_BUFFER, stream);
    let limits = Limits::default();
    let output_limit = port.limits.output_limit;
    let mut out = Vec::new();
    let mut conn = port.connection();
    // This connection's shares of the budget all clients draw on.
    let mut input = port.memory.charge();
    let mut output = port.memory.charge();
    let mut queued = port.memory.charge();
    // A pipelined burst's requests, started and not yet answered; what must
    // wait until they are; and whether the budget asks them answered now.
    let mut inflight = Inflight::new(port.memory.charge());
    let mut waiting = None;
    let mut draining = false;
    loop {
        let after = if !inflight.is_empty()
            && (waiting.is_some() || draining || reader.buffer().is_empty())
        {
            // The burst is read (as far as it had arrived), or something
            // must wait for what is in flight: answer it, a flush's worth
            // at a time.
            inflight.finish_some(port, &mut conn, &mut out)
        } else {
            draining = false;
            let next = match waiting.take() {
                Some(next) => next,
                None => {
                    let mut meter = |size: usize| match input.hold(size) {
                        true => Ok(()),
                        false => Err(CLIENT_MEMORY_SPENT.to_string()),
                    };
                    match resp::read_request_metered(&mut reader, &limits, &mut meter) {
                        Ok(None) => Next::End,
                        Ok(Some(args)) => Next::Request(args),
                        Err(e @ RespError::Protocol(_)) => {
                            debug!("client {peer}: {e}; closing");
                            Next::Refuse(e.to_reply())
                        }
                        Err(RespError::Io(e)) => {
                            debug!("client {peer}: {e}");
                            break;
                        }
                    }
                }
            };
            match next {
                Next::Request(args) => match inflight.start(port, &conn, args) {
                    Ok(room) => {
                        draining = !room;
                        After::Continue
                    }
                    Err(args) if inflight.is_empty() => {
                        let (reply, after) = commands::execute(port, &mut conn, &args);
                        port.stats.replied(command_slot(port, &args), &reply);
                        reply.write_to(&mut out, conn.protocol);
                        after
                    }
                    // Its turn comes once everything before it is answered.
                    Err(args) => {
                        waiting = Some(Next::Request(args));
                        After::Continue
                    }
                },
                next if !inflight.is_empty() => {
                    waiting = Some(next);
                    After::Continue
                }
                Next::End => {
                    let _ = writer.write_all(&out);
                    break;
                }
                Next::Refuse(reply) => {
                    if let Some(reply) = reply {
                        reply.write_to(&mut out, conn.protocol);
                    }
                    After::Close
                }
            }
        };
        // The request's arguments are gone by now.
        input.hold(0);
        // A transaction holds its queued commands until EXEC (up to a log
        // entry's worth): that too is the clients' memory.
        let queued_bytes = conn.transaction.as_ref().map_or(0, |t| t.bytes());
        if !queued.hold(queued_bytes) {
            warn!(
                "client {peer}: a transaction of {queued_bytes} bytes, and the server's memory \
                 for clients ({} bytes) is spent; disconnecting",
                port.limits.max_memory
            );
            break;
        }
        if out.len() > output_limit {
            warn!(
                "client {peer}: {} bytes of replies unsent, over the limit of {output_limit}; \
                 disconnecting",
                out.len()
            );
            break;
        }
        if !output.hold(out.len()) {
            warn!(
                "client {peer}: {} bytes of replies unsent, and the server's memory for \
                 clients ({} bytes) is spent; disconnecting",
                out.len(),
                port.limits.max_memory
            );
            break;
        }
        // Write once the pipelined burst has been read, before closing, or
        // as soon as enough is pending: a client that sends faster than it
        // reads waits here, holding no more than this.
        let burst_read = reader.buffer().is_empty() && inflight.is_empty();
        if after == After::Close || out.len() >= FLUSH_AT || burst_read {
            if let Err(e) = writer.write_all(&out) {
                match e.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => warn!(
                        "client {peer}: read none of its replies for {WRITE_TIMEOUT:?} \
                         ({} bytes pending); disconnecting",
                        out.len()
                    ),
                    _ => debug!("client {peer}: {e}"),
                }
                break;
            }
            out.clear();
            // A big reply's buffer is not kept for the connection's life.
            out.shrink_to(FLUSH_AT);
            output.hold(0);
        }
        if after == After::Close {
            linger(stream);
            break;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// The most requests a connection starts before answering any.
const MAX_INFLIGHT: usize = 256;
/// The most request bytes a connection's unanswered requests hold (each
/// keeps its request, in case it must run again after a change of leader).
const MAX_INFLIGHT_BYTES: usize = 1024 * 1024;

/// Which counters a request's reply counts under: its command's, by its
/// first word.
fn command_slot(port: &Port, args: &[Vec<u8>]) -> CommandSlot {
    port.stats
        .command_slot(args.first().map_or(&[][..], Vec::as_slice))
}

/// A connection's started, unanswered requests, oldest first, each with the
/// counters its reply counts under: all writes or all reads. Their requests
/// are charged to the clients' shared budget.
struct Inflight<'a> {
    requests: VecDeque<(Started<'a>, CommandSlot)>,
    bytes: usize,
    charge: Charge<'a>,
}

impl<'a> Inflight<'a> {
    fn new(charge: Charge<'a>) -> Inflight<'a> {
        Inflight {
            requests: VecDeque::new(),
            bytes: 0,
            charge,
        }
    }

    fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Starts `args` if it is a request that can wait for its answer
    /// ([`commands::start`]) and there is room, and says whether there is
    /// room for more; gives it back if not started. Reads and writes are
    /// never in flight together: a read started beside unanswered writes
    /// could miss them, and a write started beside unanswered reads could
    /// be seen by them. So one of the other kind is given back too, to wait
    /// for what is in flight.
    fn start(
        &mut self,
        port: &'a Port,
        conn: &Connection,
        args: Vec<Vec<u8>>,
    ) -> Result<bool, Vec<Vec<u8>>> {
        if self.requests.len() >= MAX_INFLIGHT || self.bytes >= MAX_INFLIGHT_BYTES {
            return Err(args);
        }
        // The kind in flight; `start` gives back one of the other kind.
        let reads = self.requests.front().map(|(s, _)| s.is_read());
        // Before `start` takes the arguments: the reply is counted when it
        // is written, after them.
        let slot = command_slot(port, &args);
        let started = commands::start(port, conn, args, reads)?;
        self.bytes += started.bytes();
        self.requests.push_back((started, slot));
        Ok(self.charge.hold(self.bytes))
    }

    /// Waits for requests in turn, appending their replies to `out`, until
    /// none is left or `out` holds [`FLUSH_AT`] bytes (a burst of reads of
    /// big values is written out as it is answered, not held whole).
    fn finish_some(&mut self, port: &Port, conn: &mut Connection, out: &mut Vec<u8>) -> After {
        let mut after = After::Continue;
        while let Some((started, slot)) = self.requests.pop_front() {
            self.bytes -= started.bytes();
            let (reply, then) = commands::finish(port, conn, started);
            port.stats.replied(slot, &reply);
            reply.write_to(out, conn.protocol);
            if then == After::Close {
                after = After::Close;
            }
            if out.len() >= FLUSH_AT {
                break;
            }
        }
        self.charge.hold(self.bytes);
        after
    }
}

/// What must wait until a connection's requests in flight are answered.
enum Next {
    /// A request that cannot be started beside them.
    Request(Vec<Vec<u8>>),
    /// The client closed its side.
    End,
    /// A malformed request: its error reply, then the connection closes.
    Refuse(Option<Reply>),
}

/// How long a closing connection is drained, at most.
const LINGER_FOR: Duration = Duration::from_millis(500);
/// How much a closing connection may still send before it is cut off.
const LINGER_BYTES: usize = 1024 * 1024;

/// Lets the client read our last reply before the connection closes
/// ([`sockets::linger`]).
fn linger(stream: &TcpStream) {
    sockets::linger(stream, LINGER_FOR, LINGER_BYTES);
}
