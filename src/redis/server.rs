//! The client port: a listener thread and a thread per client connection,
//! speaking RESP2 or RESP3 ([`crate::redis::resp`]) and executing
//! [`crate::redis::commands`].
//!
//! Requests on a connection are answered in order. Replies to a pipelined
//! burst are buffered and written together once the burst has been read, so a
//! pipelining client costs one write per burst rather than one per request.
//! A client that sends something malformed gets `-ERR Protocol error: ...` and
//! its connection is closed; everyone else is unaffected. Each connection has
//! its own thread, so a slow or vanished client only ever blocks itself: the
//! node's own threads never wait on a client socket.

use crate::kv::KvNode;
use crate::node::sockets::{self, Sockets};
use crate::redis::commands::{self, After};
use crate::redis::port::Port;
use crate::redis::resp::{self, Limits, RespError};
use log::{debug, info};
use parking_lot::Mutex;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A client that does not read its replies for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Client threads need little stack; hundreds of idle connections are fine.
const CONNECTION_STACK: usize = 256 * 1024;

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
}

impl Server {
    /// Serves clients of `node` on `listener`.
    pub fn start(node: Arc<KvNode>, listener: TcpListener) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            port: Port::new(node, addr),
            stopping: AtomicBool::new(false),
            sockets: Sockets::default(),
            connections: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        let id = state.port.node.id();
        let handle = thread::Builder::new()
            .name(format!("client-{id}-listener"))
            .spawn(move || accept_loop(s, listener))?;
        info!("node {id}: serving clients on {addr}");
        Ok(Server {
            state,
            addr,
            listener: Some(handle),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the port and every client connection, and joins their threads.
    pub fn halt(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
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

fn accept_loop(state: Arc<State>, listener: TcpListener) {
    let id = state.port.node.id();
    let what = format!("node {id}: client port");
    sockets::accept_each(
        &listener,
        &state.stopping,
        &state.connections,
        &what,
        |stream| {
            let s = state.clone();
            let spawned = thread::Builder::new()
                .name(format!("client-{id}"))
                .stack_size(CONNECTION_STACK)
                .spawn(move || {
                    let socket = s.sockets.register(&stream);
                    if !s.stopping.load(Ordering::Acquire) {
                        s.port.stats.connected();
                        serve(&s.port, stream);
                        s.port.stats.disconnected();
                    }
                    s.sockets.unregister(socket);
                });
            if spawned.is_err() {
                state.port.stats.rejected();
            }
            spawned
        },
    );
}

fn serve(port: &Port, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut writer = &stream;
    let mut reader = BufReader::with_capacity(64 * 1024, &stream);
    let limits = Limits::default();
    let mut out = Vec::new();
    let mut conn = port.connection();
    loop {
        let after = match resp::read_request(&mut reader, &limits) {
            Ok(None) => break,
            Ok(Some(args)) => {
                let (reply, after) = commands::execute(port, &mut conn, &args);
                reply.write_to(&mut out, conn.protocol);
                after
            }
            Err(e @ RespError::Protocol(_)) => {
                debug!("client {peer}: {e}; closing");
                if let Some(reply) = e.to_reply() {
                    reply.write_to(&mut out, conn.protocol);
                }
                After::Close
            }
            Err(RespError::Io(e)) => {
                debug!("client {peer}: {e}");
                break;
            }
        };
        // Write once the pipelined burst has been read (or before closing).
        if after == After::Close || reader.buffer().is_empty() {
            if writer.write_all(&out).is_err() {
                break;
            }
            out.clear();
        }
        if after == After::Close {
            linger(&stream);
            break;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// How long a closing connection is drained, at most.
const LINGER_FOR: Duration = Duration::from_millis(500);
/// How much a closing connection may still send before it is cut off.
const LINGER_BYTES: usize = 1024 * 1024;

/// Lets the client read our last reply before the connection closes. Closing
/// a socket that still holds unread input makes the kernel answer with a
/// reset, and a reset can destroy the reply still unread at the client (seen
/// after a protocol error, whose request is left half-read). So: send FIN
/// after the reply, then read and drop what the client sends until it
/// closes too — for at most `LINGER_FOR` and `LINGER_BYTES`.
fn linger(stream: &TcpStream) {
    if stream.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_FOR;
    let mut buf = [0u8; 16 * 1024];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*stream).read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}
