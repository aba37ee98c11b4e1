//! The client port's shared state and each connection's own: the node the
//! port serves, its address, limits and counters (behind INFO's `# Clients`
//! and `# Stats`, and the metrics endpoint's commands by name and outcome),
//! the memory budget its clients share, and what a connection has set
//! (protocol, name, session, transaction).

use crate::kv::KvNode;
use crate::redis::catalog;
use crate::redis::resp::{Protocol, Reply};
use crate::redis::transaction::Transaction;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the connections of one client port share: the node they serve, the
/// port's address and its counters.
pub struct Port {
    pub node: Arc<KvNode>,
    pub addr: SocketAddr,
    /// Shared with whoever reports them (the metrics endpoint), which may
    /// outlive the port.
    pub stats: Arc<Stats>,
    pub limits: ClientLimits,
    /// The budget for what clients hold beyond their allowances.
    pub memory: ClientMemory,
    next_connection_id: AtomicU64,
}

impl Port {
    pub fn new(node: Arc<KvNode>, addr: SocketAddr, limits: ClientLimits) -> Port {
        Port {
            node,
            addr,
            stats: Arc::new(Stats::default()),
            memory: ClientMemory::new(limits.max_memory),
            limits,
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

/// What a client port allows its clients (`raftnode run --max-clients`,
/// `--client-output-limit`, `--max-client-memory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Connections served at once; one more is answered `-ERR max number of
    /// clients reached` and closed. Each is a thread, so this is also the
    /// bound on client threads.
    pub max_clients: usize,
    /// The most reply bytes one connection may hold unsent; a client whose
    /// replies would pass it is disconnected.
    pub output_limit: usize,
    /// The most bytes all connections together may hold in requests being
    /// read, replies not yet sent and transactions' queued commands, beyond
    /// each one's [`CLIENT_ALLOWANCE`] for each.
    pub max_memory: usize,
}

impl Default for ClientLimits {
    /// 10,000 clients (Redis's `maxclients`), 64 MiB of unsent replies per
    /// client, 1 GiB for all clients' large requests and replies.
    fn default() -> Self {
        ClientLimits {
            max_clients: 10_000,
            output_limit: 64 * 1024 * 1024,
            max_memory: 1024 * 1024 * 1024,
        }
    }
}

/// What a connection's request, and separately its unsent replies, may hold
/// without drawing on [`ClientMemory`]: ordinary traffic never touches the
/// shared counter.
pub const CLIENT_ALLOWANCE: usize = 64 * 1024;

/// The bytes all clients hold beyond their allowances, against a limit.
/// Charged before a request's argument is buffered and after a reply is
/// encoded; a client that cannot be charged is disconnected, so the sum
/// never exceeds the limit by more than one reply per connection.
#[derive(Debug)]
pub struct ClientMemory {
    used: AtomicUsize,
    limit: usize,
}

impl ClientMemory {
    pub fn new(limit: usize) -> ClientMemory {
        ClientMemory {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// The bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// A connection's charge against this budget, released when dropped.
    pub fn charge(&self) -> Charge<'_> {
        Charge {
            pool: self,
            held: 0,
        }
    }
}

/// One connection's share of a [`ClientMemory`]: what it holds beyond its
/// allowance.
#[derive(Debug)]
pub struct Charge<'a> {
    pool: &'a ClientMemory,
    held: usize,
}

impl Charge<'_> {
    /// Makes this charge cover `bytes` held (less the allowance). Lowering
    /// always succeeds; raising fails, changing nothing, if the budget
    /// would be passed.
    pub fn hold(&mut self, bytes: usize) -> bool {
        let want = bytes.saturating_sub(CLIENT_ALLOWANCE);
        if want == self.held {
            // The common case, small requests and replies (nothing held):
            // no write to the counter all connections share.
            return true;
        }
        if want < self.held {
            self.pool
                .used
                .fetch_sub(self.held - want, Ordering::Relaxed);
            self.held = want;
            return true;
        }
        let more = want - self.held;
        let raised = self
            .pool
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(more).filter(|&u| u <= self.pool.limit)
            });
        if raised.is_ok() {
            self.held = want;
        }
        raised.is_ok()
    }
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        self.hold(0);
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
    /// Replies by command and outcome.
    commands: CommandCounts,
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
            commands: CommandCounts::default(),
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

    /// Which counter a command named `name` (its first word, any case)
    /// counts under: its entry in the command table, or the one for names
    /// outside it, so that no client can grow the label set.
    pub fn command_slot(&self, name: &[u8]) -> CommandSlot {
        self.commands.slot(name)
    }

    /// Counts `reply`, about to be written to a client, as the answer to a
    /// command of `slot`, by its [`Outcome`].
    pub fn replied(&self, slot: CommandSlot, reply: &Reply) {
        self.commands.count(slot, Outcome::of(reply));
    }

    /// Every command and outcome counted at least once, in the command
    /// table's order (names outside it last, as `unknown`), with its count.
    pub fn replies(&self) -> Vec<(&'static str, Outcome, u64)> {
        self.commands.nonzero()
    }
}

/// What a reply tells a client, for counting: done, go elsewhere, try again
/// later, not known in time, or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Anything but an error reply (a nil or a 0 included).
    Ok,
    /// `-MOVED`: ask the leader.
    Moved,
    /// `-TRYAGAIN`: no leader known, or leadership changing.
    TryAgain,
    /// `-TIMEOUT`: not seen through in time; a write may yet apply.
    Timeout,
    /// Any other error: syntax, arity, wrong type, overflow, ...
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Moved,
        Outcome::TryAgain,
        Outcome::Timeout,
        Outcome::Error,
    ];

    /// The reply's outcome, from its error code if it is an error.
    pub fn of(reply: &Reply) -> Outcome {
        let Reply::Error(text) = reply else {
            return Outcome::Ok;
        };
        let code = text.split(' ').next().unwrap_or_default();
        match code {
            "MOVED" => Outcome::Moved,
            "TRYAGAIN" => Outcome::TryAgain,
            "TIMEOUT" => Outcome::Timeout,
            _ => Outcome::Error,
        }
    }

    /// Its name as a metrics label: `ok`, `moved`, `tryagain`, `timeout`,
    /// `error`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Moved => "moved",
            Outcome::TryAgain => "tryagain",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which counters of [`Stats`] a command counts under ([`Stats::command_slot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSlot(usize);

/// The longest command name looked up; longer ones are unknown (the
/// longest in the table is under 30 bytes).
const MAX_NAME: usize = 32;

/// Replies counted by command and outcome: one row of counters for each
/// entry of the command table, and a last row for everything else.
#[derive(Debug)]
struct CommandCounts {
    /// The table's names with their rows, sorted by name, for a binary
    /// search that needs no allocation.
    index: Vec<(&'static str, usize)>,
    rows: Box<[[AtomicU64; 5]]>,
}

impl Default for CommandCounts {
    fn default() -> Self {
        let mut index: Vec<(&'static str, usize)> = catalog::COMMANDS
            .iter()
            .enumerate()
            .map(|(row, spec)| (spec.name, row))
            .collect();
        index.sort_unstable();
        let rows = (0..=catalog::COMMANDS.len())
            .map(|_| Default::default())
            .collect();
        CommandCounts { index, rows }
    }
}

impl CommandCounts {
    fn unknown(&self) -> CommandSlot {
        CommandSlot(self.rows.len() - 1)
    }

    fn slot(&self, name: &[u8]) -> CommandSlot {
        // The table's names are lower case; the name is lowered into a
        // buffer on the stack.
        if name.len() > MAX_NAME {
            return self.unknown();
        }
        let mut buf = [0u8; MAX_NAME];
        let lower = &mut buf[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        match (self.index).binary_search_by(|(n, _)| n.as_bytes().cmp(lower)) {
            Ok(at) => CommandSlot(self.index[at].1),
            Err(_) => self.unknown(),
        }
    }

    fn count(&self, slot: CommandSlot, outcome: Outcome) {
        if let Some(row) = self.rows.get(slot.0) {
            row[outcome.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn nonzero(&self) -> Vec<(&'static str, Outcome, u64)> {
        let mut out = Vec::new();
        for (row, counters) in self.rows.iter().enumerate() {
            let name = catalog::COMMANDS.get(row).map_or("unknown", |s| s.name);
            for outcome in Outcome::ALL {
                let n = counters[outcome.index()].load(Ordering::Relaxed);
                if n > 0 {
                    out.push((name, outcome, n));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_beyond_the_allowance_share_one_budget_and_are_released() {
        let memory = ClientMemory::new(100_000);
        let mut a = memory.charge();
        let mut b = memory.charge();
        assert!(a.hold(CLIENT_ALLOWANCE), "the allowance costs nothing");
        assert_eq!(memory.used(), 0);
        assert!(a.hold(CLIENT_ALLOWANCE + 60_000));
        assert_eq!(memory.used(), 60_000);
        assert!(!b.hold(CLIENT_ALLOWANCE + 50_000), "over the budget");
        assert_eq!(memory.used(), 60_000, "a refused charge takes nothing");
        assert!(b.hold(CLIENT_ALLOWANCE + 40_000), "exactly the budget");
        assert!(a.hold(10), "lowering always works");
        assert_eq!(memory.used(), 40_000);
        drop(b);
        assert_eq!(memory.used(), 0);
    }

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
    fn replies_are_counted_by_command_and_outcome_and_strangers_as_unknown() {
        let stats = Stats::default();
        let set = stats.command_slot(b"SeT");
        assert_eq!(set, stats.command_slot(b"set"));
        stats.replied(set, &Reply::ok());
        stats.replied(set, &Reply::ok());
        stats.replied(set, &Reply::Error("MOVED 1 127.0.0.1:7001".into()));
        stats.replied(set, &Reply::Error("TRYAGAIN no leader".into()));
        stats.replied(set, &Reply::Error("TIMEOUT not applied".into()));
        let get = stats.command_slot(b"get");
        stats.replied(get, &Reply::NullBulk);
        stats.replied(get, &Reply::Error("ERR wrong number of arguments".into()));
        // Names outside the table, however many, share one row.
        for name in [&b"nosuch"[..], b"", &[b'x'; 100], b"\xff\xfe"] {
            let slot = stats.command_slot(name);
            stats.replied(slot, &Reply::Error("ERR unknown command".into()));
        }
        let mut replies = stats.replies();
        replies.sort_by_key(|&(name, outcome, _)| (name, outcome.name()));
        assert_eq!(
            replies,
            vec![
                ("get", Outcome::Error, 1),
                ("get", Outcome::Ok, 1),
                ("set", Outcome::Moved, 1),
                ("set", Outcome::Ok, 2),
                ("set", Outcome::Timeout, 1),
                ("set", Outcome::TryAgain, 1),
                ("unknown", Outcome::Error, 4),
            ]
        );
    }

    #[test]
    fn every_command_in_the_table_has_its_own_counters() {
        let stats = Stats::default();
        let unknown = stats.command_slot(b"nosuch");
        for spec in catalog::COMMANDS {
            let slot = stats.command_slot(spec.name.to_ascii_uppercase().as_bytes());
            assert_ne!(slot, unknown, "{}", spec.name);
        }
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
