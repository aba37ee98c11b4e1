//! Client sessions: exactly-once writes (§6.3 of the Raft dissertation).
//!
//! A client that times out cannot tell whether its write was applied, and
//! retrying it blindly may apply it twice. So a client may tag each write with
//! its client id and a sequence number ([`Command::Session`]). The state
//! machine remembers, per client, the last sequence number applied and its
//! outcome. A retry of that number gets the remembered outcome without being
//! applied again; an older number is refused. Sessions are part of the
//! replicated state, so they survive restarts and leader changes.
//!
//! # Expiry, and what is remembered of an expired session
//!
//! A session that has not been used for [`SessionLimits::ttl`] log entries
//! ([`SESSION_TTL_ENTRIES`]) expires — by log index, identically on every
//! node. What it remembered is gone, so a write of that client can no longer
//! be told apart from a retry of one already applied: its outcome is
//! **unknown**. Such a write is answered [`Outcome::SessionExpired`] and never
//! applied. How a node tells that a client's session expired:
//!
//! * **A sequence number above 1 with no session** always means a session
//!   existed (a client starts at 1) and is gone: expired, whenever that was.
//!   This needs no memory at all. (A client that skipped 1 is told the same.)
//! * **Sequence number 1 with no session** is either a brand-new client or
//!   the retry of an expired client's first write. To tell them apart, an
//!   expired session leaves a *tombstone* — its client id and the index of
//!   its last use — and every write of a client with a
//!   tombstone is answered `SessionExpired`. `SEQ 1` is applied, opening a
//!   session, only when the client has neither a session nor a tombstone.
//!
//! Tombstones are bounded in time and in number, so that no client input
//! makes them grow without bound: a tombstone is dropped once
//! [`SessionLimits::tombstone_entries`] more entries have passed (counted
//! from the session's last use, like the TTL), and, when more than
//! [`SessionLimits::max_tombstones`] exist, the oldest (smallest last use,
//! then smallest client id) are dropped first. Sessions expire, and
//! tombstones are made and dropped, at the first entry applied past their
//! limit, in that order: every input to the decision is replicated (entry
//! indexes and the state, which a snapshot carries whole), so every replica,
//! restored from a snapshot or not, decides the same.
//!
//! **The guarantee.** A write tagged `SEQ n` by client `c` is applied at most
//! once, except in one case: `n` = 1, and the retry is applied after `c`'s
//! tombstone was dropped — more than `ttl + tombstone_entries` entries
//! (11,000,000 by default) after `c`'s last write, or after
//! `max_tombstones` (1,000,000) sessions that were used later than `c`'s
//! have expired. Then `SEQ 1` opens a new session and is applied again. A
//! write with `n` > 1 and no session is never applied, however late.
//! Memory: at most `max_tombstones` tombstones, about 55 bytes each with
//! their index (measured with a million: about 55 MB at most by default);
//! the sessions themselves are bounded by the TTL (at most one per entry of
//! the last `ttl + 1`).
//!
//! [`Command::Session`]: super::Command::Session

use super::command::{Outcome, Wire};
use super::digest::Digest;
use super::map::{Frozen, ShardedMap};
use crate::raft::message::Index;
use std::collections::{BTreeSet, VecDeque};

/// A session unused for this many log entries is forgotten.
pub const SESSION_TTL_ENTRIES: Index = 1_000_000;

/// A tombstone is kept for this many entries after its session expired
/// (so [`SESSION_TTL_ENTRIES`] + this many after the session's last use).
pub const TOMBSTONE_ENTRIES: Index = 10_000_000;

/// At most this many tombstones are kept; the oldest go first.
pub const MAX_TOMBSTONES: usize = 1_000_000;

/// The sessions are split among `2^SESSION_SHARD_BITS` copy-on-write
/// shards (see [`super::map`]), so that a snapshot shares them rather than
/// copying them: a session may hold a transaction's outcome of megabytes.
const SESSION_SHARD_BITS: u32 = 8;

/// How long sessions and their tombstones live. Part of the state
/// machine's definition, like the TTL always was: replicas with different
/// limits decide differently, so every node of a cluster must use the same
/// (the defaults; tests use short ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// A session unused for this many entries expires.
    pub ttl: Index,
    /// A tombstone lives this many entries more (from the session's last
    /// use, `ttl + tombstone_entries` in all).
    pub tombstone_entries: Index,
    /// At most this many tombstones; the oldest are dropped first.
    pub max_tombstones: usize,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            ttl: SESSION_TTL_ENTRIES,
            tombstone_entries: TOMBSTONE_ENTRIES,
            max_tombstones: MAX_TOMBSTONES,
        }
    }
}

impl SessionLimits {
    /// The default limits with another TTL.
    pub fn with_ttl(ttl: Index) -> SessionLimits {
        SessionLimits {
            ttl,
            ..SessionLimits::default()
        }
    }
}

/// What a session remembers of its client's last write: all a snapshot
/// must keep of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub last_seq: u64,
    pub outcome: Outcome,
    /// The index of the entry that last used the session, from which it
    /// expires.
    pub last_index: Index,
}

/// Every live session, the tombstones of expired ones, and how to tell
/// which expire.
#[derive(Debug)]
pub struct Sessions {
    sessions: ShardedMap<u64, Session>,
    /// (last index used, client), oldest first, for expiry: derived from
    /// `sessions`, so a snapshot need not hold it.
    by_age: BTreeSet<(Index, u64)>,
    /// Client → the last index its expired session was used at. In a
    /// copy-on-write map for the same reason as the sessions: a snapshot
    /// shares it.
    tombstones: ShardedMap<u64, Index>,
    /// The tombstones as (last index used, client), oldest first: sessions
    /// expire in that order, so new ones go at the back. Derived, like
    /// `by_age` (sorted again on restore).
    tombstone_order: VecDeque<(Index, u64)>,
    limits: SessionLimits,
    duplicates: u64,
}

/// Whether a sessioned write should be applied.
pub enum Admission {
    /// A new sequence number: apply it, then [`Sessions::record`] it.
    Apply,
    /// Answer without applying: a retry's remembered outcome, or a refusal.
    Answer(Outcome),
}

impl Sessions {
    /// Sessions that expire after `ttl` entries, with the default limits on
    /// tombstones.
    pub fn new(ttl: Index) -> Sessions {
        Sessions::with_limits(SessionLimits::with_ttl(ttl))
    }

    pub fn with_limits(limits: SessionLimits) -> Sessions {
        Sessions {
            sessions: ShardedMap::new(SESSION_SHARD_BITS),
            by_age: BTreeSet::new(),
            tombstones: ShardedMap::new(SESSION_SHARD_BITS),
            tombstone_order: VecDeque::new(),
            limits,
            duplicates: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// How many expired sessions are remembered as tombstones.
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }

    /// How many entries an unused session lives: configuration, not state.
    pub fn ttl(&self) -> Index {
        self.limits.ttl
    }

    /// The limits on sessions and tombstones: configuration, not state.
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// Retried writes answered from a session instead of being applied again.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Carries on counting duplicates from `count` (a counter of this node's,
    /// not replicated state: it survives a restore).
    pub fn set_duplicates(&mut self, count: u64) {
        self.duplicates = count;
    }

    /// As of entry `index`: turns sessions unused for more than the TTL
    /// into tombstones, then drops tombstones past their time, then the
    /// oldest while there are too many.
    pub fn expire(&mut self, index: Index) {
        while let Some(&(last, client)) = self.by_age.first() {
            if last.saturating_add(self.limits.ttl) >= index {
                break;
            }
            self.by_age.pop_first();
            self.sessions.remove(&client);
            self.tombstones.insert(client, last);
            self.tombstone_order.push_back((last, client));
        }
        let lifetime = self
            .limits
            .ttl
            .saturating_add(self.limits.tombstone_entries);
        while let Some(&(last, client)) = self.tombstone_order.front() {
            let too_old = last.saturating_add(lifetime) < index;
            if !too_old && self.tombstone_order.len() <= self.limits.max_tombstones {
                break;
            }
            self.tombstone_order.pop_front();
            self.tombstones.remove(&client);
        }
    }

    /// Decides what to do with write `seq` of `client`.
    pub fn admit(&mut self, client: u64, seq: u64) -> Admission {
        let Some(session) = self.sessions.get(&client) else {
            if seq == 1 && !self.tombstones.contains_key(&client) {
                return Admission::Apply;
            }
            return Admission::Answer(Outcome::SessionExpired(format!(
                "client {client} has no session (it expired, or never began with SEQ 1): \
                 the outcome of SEQ {seq} and of any earlier unanswered write is unknown; \
                 it was not applied now. Use a new client id"
            )));
        };
        if seq == session.last_seq {
            self.duplicates += 1;
            Admission::Answer(session.outcome.clone())
        } else if seq < session.last_seq {
            Admission::Answer(Outcome::Refused(format!(
                "sequence number {seq} is older than this client's last, {}",
                session.last_seq
            )))
        } else {
            Admission::Apply
        }
    }

    /// Adds every session and tombstone to `digest`: client, last sequence
    /// number, last index and remembered outcome; client and last index (the
    /// replicated state, not the counters).
    pub fn digest_into(&self, digest: &mut Digest) {
        for (client, s) in self.sessions.iter() {
            // Outcomes always encode (they were decoded or built here).
            let outcome = s.outcome.encode().unwrap_or_default();
            digest.add(&[
                b"session",
                &client.to_le_bytes(),
                &s.last_seq.to_le_bytes(),
                &s.last_index.to_le_bytes(),
                &outcome,
            ]);
        }
        for (client, last) in self.tombstones.iter() {
            digest.add(&[b"tombstone", &client.to_le_bytes(), &last.to_le_bytes()]);
        }
    }

    /// Remembers that write `seq` of `client`, at log `index`, produced
    /// `outcome`.
    pub fn record(&mut self, client: u64, seq: u64, index: Index, outcome: Outcome) {
        let session = Session {
            last_seq: seq,
            outcome,
            last_index: index,
        };
        if let Some(old) = self.sessions.insert(client, session) {
            self.by_age.remove(&(old.last_index, client));
        }
        self.by_age.insert((index, client));
    }

    /// The sessions as they are now, for a snapshot: shared, not copied.
    pub fn freeze(&self) -> Frozen<u64, Session> {
        self.sessions.freeze()
    }

    /// The tombstones as they are now, for a snapshot: shared, not copied.
    pub fn freeze_tombstones(&self) -> Frozen<u64, Index> {
        self.tombstones.freeze()
    }

    /// Adds a session read back from a snapshot; false (and nothing
    /// changes) if `client` already has one, or a tombstone.
    pub fn restore(&mut self, client: u64, session: Session) -> bool {
        if self.sessions.contains_key(&client) || self.tombstones.contains_key(&client) {
            return false;
        }
        self.by_age.insert((session.last_index, client));
        self.sessions.insert(client, session);
        true
    }

    /// Adds a tombstone read back from a snapshot; false (and nothing
    /// changes) if `client` already has one, or a session. Call
    /// [`Sessions::restored`] once all are in.
    pub fn restore_tombstone(&mut self, client: u64, last_index: Index) -> bool {
        if self.sessions.contains_key(&client) || self.tombstones.contains_key(&client) {
            return false;
        }
        self.tombstones.insert(client, last_index);
        self.tombstone_order.push_back((last_index, client));
        true
    }

    /// Puts the tombstones read back from a snapshot in their order (a
    /// snapshot holds them in hash order).
    pub fn restored(&mut self) {
        self.tombstone_order.make_contiguous().sort_unstable();
    }
}
