//! Client sessions: exactly-once writes (§6.3 of the Raft dissertation).
//!
//! A client that times out cannot tell whether its write was applied, and
//! retrying it blindly may apply it twice. So a client may tag each write with
//! its client id and a sequence number ([`Command::Session`]). The state
//! machine remembers, per client, the last sequence number applied and its
//! outcome. A retry of that number gets the remembered outcome without being
//! applied again; an older number is refused. Sessions are part of the
//! replicated state, so they survive restarts and leader changes. A session
//! that has not been used for [`SESSION_TTL_ENTRIES`] log entries expires —
//! by log index, identically on every node. A later write of an unknown
//! session with a sequence number above 1 is refused as expired rather than
//! risk applying a very old retry twice.
//!
//! [`Command::Session`]: super::Command::Session

use super::command::{Outcome, Wire};
use super::digest::Digest;
use super::map::{Frozen, ShardedMap};
use crate::raft::message::Index;
use std::collections::BTreeSet;

/// A session unused for this many log entries is forgotten.
pub const SESSION_TTL_ENTRIES: Index = 1_000_000;

/// The sessions are split among `2^SESSION_SHARD_BITS` copy-on-write
/// shards (see [`super::map`]), so that a snapshot shares them rather than
/// copying them: a session may hold a transaction's outcome of megabytes.
const SESSION_SHARD_BITS: u32 = 8;

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

/// Every live session, and how to tell which expire.
#[derive(Debug)]
pub struct Sessions {
    sessions: ShardedMap<u64, Session>,
    /// (last index used, client), oldest first, for expiry: derived from
    /// `sessions`, so a snapshot need not hold it.
    by_age: BTreeSet<(Index, u64)>,
    ttl: Index,
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
    pub fn new(ttl: Index) -> Sessions {
        Sessions {
            sessions: ShardedMap::new(SESSION_SHARD_BITS),
            by_age: BTreeSet::new(),
            ttl,
            duplicates: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// How many entries an unused session lives: configuration, not state.
    pub fn ttl(&self) -> Index {
        self.ttl
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

    /// Forgets sessions unused for more than the TTL as of entry `index`.
    pub fn expire(&mut self, index: Index) {
        while let Some(&(last, client)) = self.by_age.first() {
            if last + self.ttl >= index {
                break;
            }
            self.by_age.pop_first();
            self.sessions.remove(&client);
        }
    }

    /// Decides what to do with write `seq` of `client`.
    pub fn admit(&mut self, client: u64, seq: u64) -> Admission {
        match self.sessions.get(&client) {
            Some(session) if seq == session.last_seq => {
                self.duplicates += 1;
                Admission::Answer(session.outcome.clone())
            }
            Some(session) if seq < session.last_seq => {
                Admission::Answer(Outcome::Refused(format!(
                    "sequence number {seq} is older than this client's last, {}",
                    session.last_seq
                )))
            }
            None if seq != 1 => Admission::Answer(Outcome::Refused(format!(
                "client {client} has no session (expired, or never started with sequence number 1)"
            ))),
            _ => Admission::Apply,
        }
    }

    /// Adds every session to `digest`: client, last sequence number, last
    /// index and remembered outcome (the replicated state, not the counters).
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

    /// Adds a session read back from a snapshot; false (and nothing
    /// changes) if `client` already has one.
    pub fn restore(&mut self, client: u64, session: Session) -> bool {
        if self.sessions.contains_key(&client) {
            return false;
        }
        self.by_age.insert((session.last_index, client));
        self.sessions.insert(client, session);
        true
    }
}
