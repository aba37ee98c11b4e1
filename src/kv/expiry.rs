//! Keys that expire, identically on every replica.
//!
//! A replica must never consult its own clock when it applies an entry:
//! two replicas whose clocks differ would then disagree on whether a key
//! still exists, and their states would part. So time enters the state
//! machine the way everything else does — through the log:
//!
//! * **The leader stamps every write** with its wall clock
//!   ([`Command::Stamped`](super::Command::Stamped)), taken from [`now_ms`],
//!   which never goes backwards within a process.
//! * **The store keeps a clock**, [`Expiries::clock`]: the latest stamp it
//!   has applied. A stamp earlier than the clock (a new leader whose clock
//!   is behind the old one's, or a leader's clock stepped back) leaves it
//!   where it is, so the replicated clock never goes backwards either, and
//!   a new leader's writes are applied at no earlier time than its
//!   predecessor's.
//! * **Deadlines are absolute**: `EX 10` becomes "the entry's clock plus
//!   10 s" when applied. Every write that touches a key first deletes it
//!   if its deadline is not after the clock (lazy expiry, as Redis does).
//! * **Reads are evaluated at the leader's time**: the leader answers a
//!   query at its [`now_ms`] (or the store's clock, if that is later), and
//!   a key whose deadline is not after that is absent, deleted or not.
//!   Queries are not replicated, so reading a clock there is safe.
//! * **The leader deletes expired keys itself** ([`super::expirer`], Redis's
//!   active expiry): ten times a second it looks up the keys whose
//!   deadlines have passed by its clock, in deadline order, and proposes
//!   their deletion in batches ([`Command::Expired`](super::Command::Expired));
//!   each is deleted when applied only if it is still due by the entry's
//!   clock (it may have been given a new life since). Memory for expired
//!   keys is thus reclaimed within about a tick, on every replica, without
//!   any replica reading a clock.
//!
//! **What a clock jump on the leader does.** A jump forward by J moves the
//! replicated clock forward by J for good: keys expire up to J early, and
//! once the leader's clock is set right again, time stands still in the
//! store for J (TTLs stop counting down) until real time catches up. A jump
//! backwards is invisible: the store's clock, and [`now_ms`] on the leader,
//! wait for the wall clock to pass where they were. Across a leader change
//! the same holds between nodes: a new leader whose clock is behind by S
//! applies writes at the old clock and counts TTLs down S late; a key the
//! old leader had already reported expired on a read (evaluated by its own
//! clock, not yet stamped into the log) could be seen again on the new
//! leader for up to S. Keep the nodes' clocks synchronised (NTP), as lease
//! reads already require.
//!
//! Bounds: per key with a time to live, one deadline in a copy-on-write
//! map (snapshots share it, like the keys) and one entry in an ordered
//! index; nothing else. A batch of deletions holds at most
//! [`EXPIRE_BATCH`](super::expirer::EXPIRE_BATCH) keys, and a tick proposes at most [`BATCHES_PER_TICK`](super::expirer::BATCHES_PER_TICK)
//! of them, so active expiry can take no more than a bounded share of the
//! log.

use super::map::{Frozen, ShardedMap};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The deadlines are split among `2^DEADLINE_SHARD_BITS` shards.
const DEADLINE_SHARD_BITS: u32 = 8;

/// The highest time [`now_ms`] has returned in this process.
static HIGH_WATER_MS: AtomicU64 = AtomicU64::new(0);

/// The wall clock in milliseconds since the Unix epoch, never less than it
/// was at an earlier call in this process: a clock stepped back makes time
/// stand still here until it catches up, instead of running backwards.
pub fn now_ms() -> u64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // Read first: under many client threads an unconditional read-modify-
    // write on one cache line would be contended for nothing.
    let high = HIGH_WATER_MS.load(Ordering::Acquire);
    if wall <= high {
        return high;
    }
    HIGH_WATER_MS.fetch_max(wall, Ordering::AcqRel).max(wall)
}

/// The store's deadlines and its clock (see the module doc).
#[derive(Debug)]
pub struct Expiries {
    /// Each key with a time to live, and its deadline in Unix milliseconds.
    deadlines: ShardedMap<Vec<u8>, u64>,
    /// The same pairs, by deadline: what active expiry reads.
    by_deadline: BTreeSet<(u64, Vec<u8>)>,
    /// The latest stamp applied.
    clock_ms: u64,
    /// The sum of the deadlines, for their average.
    sum_ms: u128,
}

impl Default for Expiries {
    fn default() -> Expiries {
        Expiries {
            deadlines: ShardedMap::new(DEADLINE_SHARD_BITS),
            by_deadline: BTreeSet::new(),
            clock_ms: 0,
            sum_ms: 0,
        }
    }
}

impl Expiries {
    /// The latest stamp applied: the store's time.
    pub fn clock(&self) -> u64 {
        self.clock_ms
    }

    /// Applies a stamp: the clock moves forward to it, never back.
    pub fn advance(&mut self, stamp_ms: u64) {
        self.clock_ms = self.clock_ms.max(stamp_ms);
    }

    /// Sets the clock as a snapshot recorded it.
    pub fn restore_clock(&mut self, clock_ms: u64) {
        self.clock_ms = clock_ms;
    }

    pub fn get(&self, key: &[u8]) -> Option<u64> {
        self.deadlines.get(key).copied()
    }

    /// Whether `key` has a deadline that is not after `now_ms`.
    pub fn is_due(&self, key: &[u8], now_ms: u64) -> bool {
        self.get(key).is_some_and(|deadline| deadline <= now_ms)
    }

    /// Gives `key` the deadline `deadline_ms`, replacing any it had.
    pub fn set(&mut self, key: &[u8], deadline_ms: u64) {
        if let Some(old) = self.deadlines.insert(key.to_vec(), deadline_ms) {
            self.by_deadline.remove(&(old, key.to_vec()));
            self.sum_ms -= u128::from(old);
        }
        self.by_deadline.insert((deadline_ms, key.to_vec()));
        self.sum_ms += u128::from(deadline_ms);
    }

    /// Takes `key`'s deadline away; returns it.
    pub fn remove(&mut self, key: &[u8]) -> Option<u64> {
        let old = self.deadlines.remove(key)?;
        self.by_deadline.remove(&(old, key.to_vec()));
        self.sum_ms -= u128::from(old);
        Some(old)
    }

    pub fn clear(&mut self) {
        self.deadlines = ShardedMap::new(DEADLINE_SHARD_BITS);
        self.by_deadline.clear();
        self.sum_ms = 0;
    }

    /// How many keys have a deadline.
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }

    /// The average time left until the deadlines, in milliseconds (INFO's
    /// `avg_ttl`); 0 if there are none.
    pub fn average_ttl(&self, now_ms: u64) -> u64 {
        match self.len() {
            0 => 0,
            n => (self.sum_ms / n as u128).saturating_sub(u128::from(now_ms)) as u64,
        }
    }

    /// Up to `max` keys due by `now_ms`, soonest deadline first.
    pub fn due(&self, now_ms: u64, max: usize) -> Vec<Vec<u8>> {
        self.due_iter(now_ms)
            .take(max)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// How many keys are due by `now_ms`: those the store still holds but
    /// no read may see. Active expiry keeps them few.
    pub fn due_count(&self, now_ms: u64) -> usize {
        self.due_iter(now_ms).count()
    }

    fn due_iter(&self, now_ms: u64) -> impl Iterator<Item = &(u64, Vec<u8>)> {
        self.by_deadline
            .range(..(now_ms.saturating_add(1), Vec::new()))
    }

    /// Every deadline, in a snapshot's order.
    pub fn freeze(&self) -> Frozen<Vec<u8>, u64> {
        self.deadlines.freeze()
    }

    /// Every (key, deadline), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &u64)> {
        self.deadlines.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_never_goes_backwards() {
        let a = now_ms();
        HIGH_WATER_MS.fetch_max(a + 60_000, Ordering::AcqRel);
        assert!(
            now_ms() >= a + 60_000,
            "a clock behind the high water waits"
        );
        let b = now_ms();
        assert!(now_ms() >= b);
    }

    #[test]
    fn deadlines_are_kept_in_order_and_replaced() {
        let mut e = Expiries::default();
        e.set(b"a", 30);
        e.set(b"b", 10);
        e.set(b"c", 20);
        e.set(b"a", 5);
        assert_eq!(e.len(), 3);
        assert_eq!(
            e.due(20, 10),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(e.due(19, 10), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(e.due(20, 1), vec![b"a".to_vec()]);
        assert_eq!(e.due_count(10), 2);
        assert_eq!(e.remove(b"b"), Some(10));
        assert_eq!(e.remove(b"b"), None);
        assert_eq!(e.due_count(u64::MAX), 2);
        assert!(e.is_due(b"c", 20) && !e.is_due(b"c", 19) && !e.is_due(b"b", 99));
        assert_eq!(e.average_ttl(0), 12, "(5 + 20) / 2, rounded down");
        assert_eq!(e.average_ttl(100), 0);
        e.clear();
        assert_eq!((e.len(), e.average_ttl(0)), (0, 0));
    }

    #[test]
    fn the_clock_only_moves_forward() {
        let mut e = Expiries::default();
        e.advance(100);
        e.advance(50);
        assert_eq!(e.clock(), 100);
        e.advance(101);
        assert_eq!(e.clock(), 101);
    }
}
