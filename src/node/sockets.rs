//! Listening and halting: the accept loop shared by the peer and client
//! ports, a registry of open streams that a halt shuts down to unblock their
//! threads, and a way to wake a blocked `accept`.

use log::warn;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Accepts connections on `listener` until `stopping` is set, handing each to
/// `spawn`, which serves it on a thread of its own. The threads' handles go
/// into `handles` (pruned of finished ones as it goes) so that a halt can
/// join them all. `what` names the connections in logs.
pub fn accept_each(
    listener: &TcpListener,
    stopping: &AtomicBool,
    handles: &Mutex<Vec<JoinHandle<()>>>,
    what: &str,
    mut spawn: impl FnMut(TcpStream) -> io::Result<JoinHandle<()>>,
) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::Acquire) {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Typically out of file descriptors: pause rather than spin.
                warn!("{what}: accepting a connection failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let spawned = spawn(stream);
        let mut handles = handles.lock();
        handles.retain(|h| !h.is_finished());
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => warn!("{what}: cannot start a thread for a connection: {e}"),
        }
    }
}

/// Open sockets by a registration number, so halting can shut them down.
#[derive(Default)]
pub struct Sockets {
    next: AtomicU64,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    streams: HashMap<u64, TcpStream>,
    /// Set by the first [`Sockets::shutdown_all`]: a socket registered
    /// afterwards (its thread was preempted between accepting and
    /// registering) is shut down at once, or the halt could wait forever
    /// for a thread blocked reading it.
    closed: bool,
}

impl Sockets {
    pub fn register(&self, stream: &TcpStream) -> Option<u64> {
        let mut open = self.open.lock();
        if open.closed {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return None;
        }
        let clone = stream.try_clone().ok()?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        open.streams.insert(id, clone);
        Some(id)
    }

    pub fn unregister(&self, id: Option<u64>) {
        if let Some(id) = id {
            self.open.lock().streams.remove(&id);
        }
    }

    /// Shuts down every registered socket, and every one registered from
    /// now on.
    pub fn shutdown_all(&self) {
        let mut open = self.open.lock();
        open.closed = true;
        for (_, stream) in open.streams.drain() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Unblocks a listener's `accept` by connecting to it, so that its thread
/// notices it is stopping.
pub fn wake_listener(addr: SocketAddr) {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
}
