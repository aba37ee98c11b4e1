//! Bookkeeping that lets a halt unblock threads stuck in socket calls: a
//! registry of open streams to shut down, and a way to wake a blocked
//! `accept`.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Open sockets by a registration number, so halting can shut them down.
#[derive(Default)]
pub struct Sockets {
    next: AtomicU64,
    open: Mutex<HashMap<u64, TcpStream>>,
}

impl Sockets {
    pub fn register(&self, stream: &TcpStream) -> Option<u64> {
        let clone = stream.try_clone().ok()?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().insert(id, clone);
        Some(id)
    }

    pub fn unregister(&self, id: Option<u64>) {
        if let Some(id) = id {
            self.open.lock().remove(&id);
        }
    }

    pub fn shutdown_all(&self) {
        for (_, stream) in self.open.lock().drain() {
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
