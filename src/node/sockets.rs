//! Listening and halting: the accept loop shared by the peer and client
//! ports (which backs off when the process runs out of file descriptors or
//! memory), a registry of open streams that a halt shuts down to unblock
//! their threads, a way to wake a blocked `accept`, and the process's file
//! descriptor limit.

use log::{debug, info, warn};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The first pause after an accept failed for want of resources; it doubles
/// with each further failure up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts connections on `listener` until `stopping` is set, handing each to
/// `spawn`, which serves it on a thread of its own — or deals with it at
/// once, on the accepting thread, and returns `None` (a connection refused).
/// The threads' handles go into `handles` (pruned of finished ones as it
/// goes) so that a halt can join them all. `what` names the connections in
/// logs.
pub fn accept_each(
    listener: &TcpListener,
    stopping: &AtomicBool,
    handles: &Mutex<Vec<JoinHandle<()>>>,
    what: &str,
    mut spawn: impl FnMut(TcpStream) -> Option<io::Result<JoinHandle<()>>>,
) {
    accept_loop(listener, stopping, what, |stream| {
        let Some(spawned) = spawn(stream) else {
            return;
        };
        let mut handles = handles.lock();
        handles.retain(|h| !h.is_finished());
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => warn!("{what}: cannot start a thread for a connection: {e}"),
        }
    });
}

/// Accepts connections on `listener` until `stopping` is set, handing each to
/// `handle`. When accepting fails for want of resources (out of file
/// descriptors, socket buffers or memory) it pauses, 10 ms at first and
/// doubling up to a second, until one succeeds: the connection stays queued
/// in the kernel meanwhile, and spinning on it would only burn a core and
/// fill the log. Such a run of failures is logged once when it starts and
/// once when it ends. `what` names the connections in logs.
pub fn accept_loop(
    listener: &TcpListener,
    stopping: &AtomicBool,
    what: &str,
    mut handle: impl FnMut(TcpStream),
) {
    let mut backoff = MIN_ACCEPT_BACKOFF;
    let mut failures = 0u64;
    for stream in listener.incoming() {
        if stopping.load(Ordering::Acquire) {
            break;
        }
        match stream {
            Ok(stream) => {
                if failures > 0 {
                    info!("{what}: accepting connections again after {failures} failures");
                    failures = 0;
                    backoff = MIN_ACCEPT_BACKOFF;
                }
                handle(stream);
            }
            Err(e) if !lacks_resources(&e) => {
                // A connection reset before it was accepted, and the like:
                // nothing is wrong with this process.
                debug!("{what}: accepting a connection failed: {e}");
            }
            Err(e) => {
                if failures == 0 {
                    warn!(
                        "{what}: accepting a connection failed: {e}; pausing (up to \
                         {MAX_ACCEPT_BACKOFF:?} at a time) until it works again"
                    );
                }
                failures += 1;
                pause(backoff, stopping);
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
}

/// Whether an accept failed for want of file descriptors, socket buffers or
/// memory: the errors that persist until something is released.
fn lacks_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    ) || e.kind() == io::ErrorKind::OutOfMemory
}

/// Sleeps for `how_long`, waking early if `stopping` is set, so a halt is
/// not held up by a long pause.
fn pause(how_long: Duration, stopping: &AtomicBool) {
    let step = MIN_ACCEPT_BACKOFF;
    let mut slept = Duration::ZERO;
    while slept < how_long && !stopping.load(Ordering::Acquire) {
        thread::sleep(step);
        slept += step;
    }
}

/// Raises the soft limit on open file descriptors (RLIMIT_NOFILE) towards
/// `wanted`, as far as the hard limit allows, as Redis does at start; the
/// limit in force afterwards. An unlimited limit is reported as `u64::MAX`.
pub fn raise_fd_limit(wanted: u64) -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let current = limit.rlim_cur;
    if current >= wanted {
        return Ok(current);
    }
    let raised = libc::rlimit {
        rlim_cur: wanted.min(limit.rlim_max),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        // Above the kernel's nr_open, say: keep what we have.
        let e = io::Error::last_os_error();
        warn!("cannot raise the open file limit from {current} to {wanted}: {e}");
        return Ok(current);
    }
    Ok(raised.rlim_cur)
}

/// Open sockets by a registration number, so halting can shut them down.
#[derive(Default)]
pub struct Sockets {
    next: AtomicU64,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    streams: HashMap<u64, Arc<TcpStream>>,
    /// Set by the first [`Sockets::shutdown_all`]: a socket registered
    /// afterwards (its thread was preempted between accepting and
    /// registering) is shut down at once, or the halt could wait forever
    /// for a thread blocked reading it.
    closed: bool,
}

impl Sockets {
    /// Registers `stream` by a copy of its descriptor (one descriptor more
    /// while it is registered).
    pub fn register(&self, stream: &TcpStream) -> Option<u64> {
        let clone = stream.try_clone().ok()?;
        self.register_shared(&Arc::new(clone))
    }

    /// Registers a shared `stream` at no descriptor's cost: the socket
    /// stays open until the last of its owner and this registration lets it
    /// go, so a halt never shuts down a descriptor number that was closed
    /// and reused meanwhile.
    pub fn register_shared(&self, stream: &Arc<TcpStream>) -> Option<u64> {
        let mut open = self.open.lock();
        if open.closed {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        open.streams.insert(id, stream.clone());
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

/// Lets the peer read our last bytes before the connection closes, and
/// returns whether it closed its side in time. Closing a socket that still
/// holds unread input makes the kernel answer with a reset, and a reset can
/// destroy what is still unread at the peer (seen after a protocol error,
/// whose request is left half-read). So: send FIN, then read and drop what
/// the peer sends until it closes too — for at most `how_long` and
/// `max_bytes`. Used by the client port and the metrics endpoint.
pub fn linger(stream: &TcpStream, how_long: Duration, max_bytes: usize) -> bool {
    if stream.shutdown(std::net::Shutdown::Write).is_err() {
        return true;
    }
    let deadline = Instant::now() + how_long;
    let mut buf = [0u8; 16 * 1024];
    let mut drained = 0;
    while drained < max_bytes {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match (&*stream).read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(n) => drained += n,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_errors_are_told_from_passing_ones() {
        assert!(lacks_resources(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(lacks_resources(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(lacks_resources(&io::Error::from_raw_os_error(
            libc::ENOBUFS
        )));
        assert!(lacks_resources(&io::Error::from_raw_os_error(libc::ENOMEM)));
        assert!(!lacks_resources(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }

    #[test]
    fn the_fd_limit_is_at_least_what_is_open() {
        // Asking for no more than we have changes nothing.
        let limit = raise_fd_limit(0).expect("getrlimit");
        assert!(limit >= 3, "{limit}");
        assert_eq!(raise_fd_limit(limit).expect("getrlimit"), limit);
    }
}
