//! The client port's shared state and each connection's own: the node the
//! port serves, its address and counters (behind INFO's `# Clients` and
//! `# Stats`), and what a connection has set (protocol, name, session,
//! transaction).

use crate::kv::KvNode;
use crate::redis::resp::Protocol;
use crate::redis::transaction::Transaction;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the connections of one client port share: the node they serve, the
/// port's address and its counters.
pub struct Port {
    pub node: Arc<KvNode>,
    pub addr: SocketAddr,
    pub stats: Stats,
    next_connection_id: AtomicU64,
}

impl Port {
    pub fn new(node: Arc<KvNode>, addr: SocketAddr) -> Port {
        Port {
            node,
            addr,
            stats: Stats::default(),
            next_connection_id: AtomicU64::new(1),
        }
    }

    /// The state of a new connection, with its own id.
    pub fn connection(&self) -> Connection {
        Connection {
            id: self.next_connection_id.fetch_add(1, Ordering::Relaxed),
            ..Connection::default()
        }
    }
}

/// Per-connection state.
#[derive(Debug, Default)]
pub struct Connection {
    /// This connection's number on this port (HELLO's `id`).
    pub id: u64,
    /// The client id set by `CLIENT ID`, for exactly-once writes.
    pub session: Option<u64>,
    /// RESP2 until the client sends `HELLO 3`.
    pub protocol: Protocol,
    /// Set by `CLIENT SETNAME` or `HELLO ... SETNAME`.
    pub name: Option<Vec<u8>>,
    /// From `MULTI` to `EXEC` or `DISCARD`: the commands queued so far.
    pub transaction: Option<Transaction>,
}

/// `instantaneous_ops_per_sec` is the rate over about this long, as in Redis.
const RATE_WINDOW: Duration = Duration::from_millis(1600);
/// How often the command counter is sampled for that rate (at most).
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Samples kept: a window's worth and one more.
const MAX_SAMPLES: usize = 17;

/// The client port's counters, shared by its connections.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    connected_clients: AtomicU64,
    connections_received: AtomicU64,
    connections_rejected: AtomicU64,
    commands_processed: AtomicU64,
    /// When the last sample was taken, in milliseconds since `started`.
    last_sample_ms: AtomicU64,
    /// `(when, commands_processed)`, oldest first, at least `SAMPLE_EVERY`
    /// apart; taken as commands arrive, so there is no timer thread.
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            connected_clients: AtomicU64::new(0),
            connections_received: AtomicU64::new(0),
            connections_rejected: AtomicU64::new(0),
            commands_processed: AtomicU64::new(0),
            last_sample_ms: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::new()),
        }
    }
}

impl Stats {
    /// A client connected; it holds a place until `disconnected`.
    pub fn connected(&self) {
        self.connections_received.fetch_add(1, Ordering::Relaxed);
        self.connected_clients.fetch_add(1, Ordering::Relaxed);
    }

    pub fn disconnected(&self) {
        self.connected_clients.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection was refused (the port could not serve it).
    pub fn rejected(&self) {
        self.connections_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// One more command processed.
    pub fn command(&self) {
        let total = self.commands_processed.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let now_ms = now.duration_since(self.started).as_millis() as u64;
        let last = self.last_sample_ms.load(Ordering::Relaxed);
        if now_ms < last + SAMPLE_EVERY.as_millis() as u64 {
            return;
        }
        // One connection takes the sample; the others need not wait for it.
        if self
            .last_sample_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let mut samples = self.samples.lock();
            samples.push_back((now, total));
            while samples.len() > MAX_SAMPLES {
                samples.pop_front();
            }
        }
    }

    /// Commands per second over the last 1.6 s: measured from the oldest
    /// sample in that window, and 0 if there is none old enough to measure
    /// from (nothing happened lately).
    pub fn ops_per_sec(&self) -> u64 {
        let now = Instant::now();
        let total = self.commands_processed.load(Ordering::Relaxed);
        let samples = self.samples.lock();
        let oldest = samples
            .iter()
            .find(|(when, _)| now.duration_since(*when) <= RATE_WINDOW);
        match oldest {
            Some(&(when, count)) if now.duration_since(when) >= SAMPLE_EVERY => {
                let secs = now.duration_since(when).as_secs_f64();
                (total.saturating_sub(count) as f64 / secs).round() as u64
            }
            _ => 0,
        }
    }
}

impl Stats {
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn connected_clients(&self) -> u64 {
        self.connected_clients.load(Ordering::Relaxed)
    }

    pub fn connections_received(&self) -> u64 {
        self.connections_received.load(Ordering::Relaxed)
    }

    pub fn connections_rejected(&self) -> u64 {
        self.connections_rejected.load(Ordering::Relaxed)
    }

    pub fn commands_processed(&self) -> u64 {
        self.commands_processed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_per_sec_measures_recent_commands_and_falls_to_zero_when_idle() {
        let stats = Stats::default();
        assert_eq!(stats.ops_per_sec(), 0);
        // Pretend a sample was taken half a second ago with 0 commands,
        // and 500 commands have been processed since.
        let then = Instant::now() - Duration::from_millis(500);
        stats.samples.lock().push_back((then, 0));
        stats.commands_processed.store(500, Ordering::Relaxed);
        let rate = stats.ops_per_sec();
        assert!((900..=1000).contains(&rate), "rate {rate}");
        // A sample older than the window does not count: idle means 0.
        stats.samples.lock().clear();
        let long_ago = Instant::now() - Duration::from_secs(5);
        stats.samples.lock().push_back((long_ago, 0));
        assert_eq!(stats.ops_per_sec(), 0);
    }

    #[test]
    fn commands_are_sampled_at_most_every_100_ms() {
        let stats = Stats::default();
        for _ in 0..1000 {
            stats.command();
        }
        assert_eq!(stats.commands_processed.load(Ordering::Relaxed), 1000);
        assert!(stats.samples.lock().len() <= 1);
    }
}
