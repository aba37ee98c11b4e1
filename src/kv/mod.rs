//! The replicated state machine: a map from byte-string keys to byte-string
//! values (binary-safe, as in Redis), plus the client sessions that make
//! retried writes take effect exactly once.
//!
//! Commands reach it only through the log, so every node applies the same
//! commands in the same order and ends in the same state. Applying is
//! deterministic: it depends on nothing but the state, the command and the
//! entry's index — never on a clock.
//!
//! # Exactly-once writes (§6.3 of the Raft dissertation)
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

use crate::codec::{self, CodecError};
use crate::raft::message::Index;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// A session unused for this many log entries is forgotten.
pub const SESSION_TTL_ENTRIES: Index = 1_000_000;

/// A write, as it is stored in a log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Deletes every listed key; one entry so that a multi-key DEL is atomic.
    Delete {
        keys: Vec<Vec<u8>>,
    },
    /// Compare-and-set: replaces the value only if it currently equals
    /// `expected` (an absent key never matches).
    Cas {
        key: Vec<u8>,
        expected: Vec<u8>,
        new: Vec<u8>,
    },
    /// Adds one to the decimal integer stored at `key` (absent counts as 0),
    /// as Redis's INCR does.
    Incr {
        key: Vec<u8>,
    },
    /// Appends to the value at `key` (absent counts as empty), as Redis's
    /// APPEND does.
    Append {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// `command`, applied at most once for this client and sequence number.
    Session {
        client: u64,
        seq: u64,
        command: Box<Command>,
    },
}

impl Command {
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, CodecError> {
        codec::decode(bytes)
    }
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A Set was applied.
    Done,
    /// A Delete removed this many keys.
    Deleted(usize),
    /// Whether a CAS swapped the value.
    Swapped(bool),
    /// INCR's new value, or APPEND's new length.
    Integer(i64),
    /// The command was refused and changed nothing (e.g. INCR of a value
    /// that is not an integer, or a session error).
    Refused(String),
}

/// What a session remembers of its client's last write.
#[derive(Debug, Clone)]
struct Session {
    last_seq: u64,
    outcome: Outcome,
    last_index: Index,
}

#[derive(Debug)]
pub struct Kv {
    map: HashMap<Vec<u8>, Vec<u8>>,
    sessions: HashMap<u64, Session>,
    /// (last index used, client), oldest first, for expiry.
    by_age: BTreeSet<(Index, u64)>,
    session_ttl: Index,
    duplicates: u64,
}

impl Default for Kv {
    fn default() -> Kv {
        Kv::with_session_ttl(SESSION_TTL_ENTRIES)
    }
}

impl Kv {
    pub fn new() -> Kv {
        Kv::default()
    }

    /// A state machine whose sessions expire after `ttl` entries (tests use a
    /// short one).
    pub fn with_session_ttl(ttl: Index) -> Kv {
        Kv {
            map: HashMap::new(),
            sessions: HashMap::new(),
            by_age: BTreeSet::new(),
            session_ttl: ttl,
            duplicates: 0,
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.map.get(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Retried writes answered from a session instead of being applied again.
    pub fn duplicates_suppressed(&self) -> u64 {
        self.duplicates
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Applies the command of the log entry at `index`.
    pub fn apply(&mut self, index: Index, command: Command) -> Outcome {
        self.expire_sessions(index);
        match command {
            Command::Session {
                client,
                seq,
                command,
            } => self.apply_in_session(index, client, seq, *command),
            command => self.apply_plain(command),
        }
    }

    fn apply_in_session(
        &mut self,
        index: Index,
        client: u64,
        seq: u64,
        command: Command,
    ) -> Outcome {
        match self.sessions.get(&client) {
            Some(session) if seq == session.last_seq => {
                self.duplicates += 1;
                return session.outcome.clone();
            }
            Some(session) if seq < session.last_seq => {
                return Outcome::Refused(format!(
                    "sequence number {seq} is older than this client's last, {}",
                    session.last_seq
                ));
            }
            None if seq != 1 => {
                return Outcome::Refused(format!(
                    "client {client} has no session (expired, or never started with sequence number 1)"
                ));
            }
            _ => {}
        }
        // Nested sessions make no sense; treat the inner one as plain.
        let outcome = self.apply_plain(command);
        if let Some(old) = self.sessions.insert(
            client,
            Session {
                last_seq: seq,
                outcome: outcome.clone(),
                last_index: index,
            },
        ) {
            self.by_age.remove(&(old.last_index, client));
        }
        self.by_age.insert((index, client));
        outcome
    }

    fn expire_sessions(&mut self, index: Index) {
        while let Some(&(last, client)) = self.by_age.first() {
            if last + self.session_ttl >= index {
                break;
            }
            self.by_age.pop_first();
            self.sessions.remove(&client);
        }
    }

    fn apply_plain(&mut self, command: Command) -> Outcome {
        match command {
            Command::Set { key, value } => {
                self.map.insert(key, value);
                Outcome::Done
            }
            Command::Delete { keys } => Outcome::Deleted(
                keys.iter()
                    .filter(|k| self.map.remove(*k).is_some())
                    .count(),
            ),
            Command::Cas { key, expected, new } => match self.map.get_mut(&key) {
                Some(value) if *value == expected => {
                    *value = new;
                    Outcome::Swapped(true)
                }
                _ => Outcome::Swapped(false),
            },
            Command::Incr { key } => {
                let current = match self.map.get(&key) {
                    None => Some(0),
                    Some(v) => parse_integer(v),
                };
                match current.and_then(|n| n.checked_add(1)) {
                    Some(n) => {
                        self.map.insert(key, n.to_string().into_bytes());
                        Outcome::Integer(n)
                    }
                    None => Outcome::Refused("value is not an integer or out of range".into()),
                }
            }
            Command::Append { key, value } => {
                let stored = self.map.entry(key).or_default();
                stored.extend_from_slice(&value);
                Outcome::Integer(stored.len() as i64)
            }
            Command::Session { command, .. } => self.apply_plain(*command),
        }
    }
}

/// Parses a value the way Redis's INCR does: a decimal i64 with no spaces,
/// no leading `+` and no leading zeros.
fn parse_integer(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    if !canonical {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn set_delete_cas() {
        let mut kv = Kv::new();
        let set = Command::Set {
            key: b("a"),
            value: b("1"),
        };
        assert_eq!(kv.apply(1, set), Outcome::Done);
        assert_eq!(kv.get(b"a"), Some(&b("1")));
        let cas = |expected: &str, new: &str| Command::Cas {
            key: b("a"),
            expected: b(expected),
            new: b(new),
        };
        assert_eq!(kv.apply(2, cas("2", "3")), Outcome::Swapped(false));
        assert_eq!(kv.apply(3, cas("1", "3")), Outcome::Swapped(true));
        assert_eq!(kv.get(b"a"), Some(&b("3")));
        let del = Command::Delete {
            keys: vec![b("a"), b("missing"), b("a")],
        };
        assert_eq!(kv.apply(4, del), Outcome::Deleted(1));
        assert!(kv.is_empty());
        // CAS on an absent key never matches, not even the empty string.
        assert_eq!(kv.apply(5, cas("", "x")), Outcome::Swapped(false));
        assert_eq!(kv.get(b"a"), None);
    }

    #[test]
    fn incr_and_append_behave_like_redis() {
        let mut kv = Kv::new();
        let incr = || Command::Incr { key: b("n") };
        assert_eq!(kv.apply(1, incr()), Outcome::Integer(1));
        assert_eq!(kv.apply(2, incr()), Outcome::Integer(2));
        assert_eq!(kv.get(b"n"), Some(&b("2")));
        for bad in ["x", " 1", "01", "+1", "", "-0", "9223372036854775807"] {
            kv.apply(
                3,
                Command::Set {
                    key: b("n"),
                    value: b(bad),
                },
            );
            assert!(
                matches!(kv.apply(4, incr()), Outcome::Refused(_)),
                "INCR of {bad:?}"
            );
            assert_eq!(
                kv.get(b"n"),
                Some(&b(bad)),
                "a refused INCR changes nothing"
            );
        }
        kv.apply(
            5,
            Command::Set {
                key: b("n"),
                value: b("-5"),
            },
        );
        assert_eq!(kv.apply(6, incr()), Outcome::Integer(-4));
        let append = |v: &str| Command::Append {
            key: b("s"),
            value: b(v),
        };
        assert_eq!(kv.apply(7, append("ab")), Outcome::Integer(2));
        assert_eq!(kv.apply(8, append("cde")), Outcome::Integer(5));
        assert_eq!(kv.get(b"s"), Some(&b("abcde")));
    }

    fn in_session(client: u64, seq: u64, command: Command) -> Command {
        Command::Session {
            client,
            seq,
            command: Box::new(command),
        }
    }

    #[test]
    fn a_retried_write_is_applied_once() {
        let mut kv = Kv::new();
        let incr = || Command::Incr { key: b("n") };
        assert_eq!(kv.apply(1, in_session(7, 1, incr())), Outcome::Integer(1));
        // The retry finds the stored reply; the counter does not move.
        assert_eq!(kv.apply(2, in_session(7, 1, incr())), Outcome::Integer(1));
        assert_eq!(kv.get(b"n"), Some(&b("1")));
        assert_eq!(kv.duplicates_suppressed(), 1);
        assert_eq!(kv.apply(3, in_session(7, 2, incr())), Outcome::Integer(2));
        // An older sequence number is refused; another client is independent.
        assert!(matches!(
            kv.apply(4, in_session(7, 1, incr())),
            Outcome::Refused(_)
        ));
        assert_eq!(kv.apply(5, in_session(8, 1, incr())), Outcome::Integer(3));
        assert_eq!(kv.get(b"n"), Some(&b("3")));
    }

    #[test]
    fn sessions_expire_by_log_index_not_by_clock() {
        let mut kv = Kv::with_session_ttl(10);
        let set = |v: &str| Command::Set {
            key: b("k"),
            value: b(v),
        };
        kv.apply(1, in_session(1, 1, set("a")));
        kv.apply(5, in_session(2, 1, set("b")));
        assert_eq!(kv.sessions(), 2);
        kv.apply(11, set("c"));
        assert_eq!(kv.sessions(), 2, "exactly ttl entries later it still lives");
        kv.apply(12, set("d"));
        assert_eq!(kv.sessions(), 1, "client 1 expired");
        // A retry from an expired session is refused, not applied again…
        assert!(matches!(
            kv.apply(13, in_session(1, 2, set("late"))),
            Outcome::Refused(_)
        ));
        assert_eq!(kv.get(b"k"), Some(&b("d")));
        // …and client 2, still alive, is deduplicated.
        assert_eq!(kv.apply(14, in_session(2, 1, set("b"))), Outcome::Done);
        assert_eq!(kv.get(b"k"), Some(&b("d")));
    }

    #[test]
    fn commands_round_trip_through_the_codec() {
        let c = in_session(
            3,
            9,
            Command::Cas {
                key: b("k"),
                expected: vec![0, 255],
                new: vec![],
            },
        );
        assert_eq!(Command::decode(&c.encode().unwrap()).unwrap(), c);
    }
}
