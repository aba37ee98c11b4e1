//! The key-value store: the state machine raftnode replicates, and the
//! typed operations a program uses on a node that runs it.
//!
//! [`Kv`] maps byte-string keys to byte-string values (binary-safe, as in
//! Redis) and keeps the client [`session`]s that make retried writes take
//! effect exactly once. Writes reach it only through the log, so every node
//! applies the same [`Command`]s in the same order and ends in the same
//! state. Applying is deterministic: it depends on nothing but the state,
//! the command and the entry's index — never on a replica's clock. Keys
//! may have a time to live: time reaches the store only as the leader's
//! stamp on each entry ([`expiry`] tells how), and the leader deletes the
//! keys past their deadlines through the log ([`expirer`]). A transaction
//! is one entry ([`Command::Multi`]) applied in one step, so it is atomic
//! on every node.
//!
//! What each command does is in `write.rs` (Redis's semantics, with its
//! error texts), what each read answers in `read.rs`; [`glob`] is Redis's
//! pattern matcher for KEYS and SCAN, [`float`] INCRBYFLOAT's arithmetic.
//!
//! The keys and the sessions live in copy-on-write [`map`]s, so that a
//! snapshot of the store costs O(shards) on the apply thread, is written
//! out on another thread while entries go on being applied, and reads back
//! into an identical store ([`snapshot`] has the format).
//!
//! [`KeyValue`] gives a `Node<Kv>` its typed operations (`set`, `cas`,
//! `read`, …); underneath they are [`Node::propose`] and [`Node::query`] of
//! encoded [`Command`]s and [`Query`]s.
//!
//! Dependencies: [`crate::node`] (the [`StateMachine`] trait it implements,
//! and the node it runs on), the Raft types and the codec. Nothing here
//! knows about the Redis protocol.

#[cfg(test)]
mod bench;
mod command;
#[cfg(test)]
mod command_tests;
pub mod digest;
pub mod expirer;
pub mod expiry;
pub mod float;
pub mod glob;
pub mod map;
mod read;
pub mod session;
pub mod snapshot;
#[cfg(test)]
mod snapshot_tests;
mod write;

pub use command::{
    Command, Condition, ExpireCondition, Expiry, Outcome, Query, QueryReply, Read, Wire,
    MAX_MULTI_READ_BYTES, MAX_READ_BYTES, MAX_VALUE_BYTES,
};
pub use expiry::{now_ms, Expiries};
pub use session::{SessionLimits, SESSION_TTL_ENTRIES};

use crate::node::{Error, Node, PendingQuery, Proposal, RestoreError, StateMachine, StateSnapshot};
use crate::raft::message::Index;
use log::error;
use map::ShardedMap;
use session::{Admission, Sessions};
use snapshot::KvSnapshot;
use std::io;

/// A node running the key-value store.
pub type KvNode = Node<Kv>;

/// The keys are split among `2^KEY_SHARD_BITS` copy-on-write shards (see
/// [`map`]). More shards make smaller copies when a write meets a shard a
/// snapshot still shares; fewer keep more of the shards' headers in cache,
/// and every write reads one. Overwriting one of a million keys
/// (`kv::bench`) costs, next to one `HashMap`, about 1.15 times as much
/// with 2^8 shards, 1.2 with 2^10, 1.35 with 2^12; the first write to a
/// shared shard copies ~1000 keys at 2^10, a few hundred microseconds.
const KEY_SHARD_BITS: u32 = 10;

#[derive(Debug)]
pub struct Kv {
    map: ShardedMap<Vec<u8>, Vec<u8>>,
    /// The keys' deadlines and the store's clock ([`expiry`]). Every key
    /// here is in `map`.
    expiries: Expiries,
    sessions: Sessions,
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

    /// A store whose sessions expire after `ttl` entries (tests use a short
    /// one), with the default limits on their tombstones.
    pub fn with_session_ttl(ttl: Index) -> Kv {
        Kv::with_session_limits(SessionLimits::with_ttl(ttl))
    }

    /// A store whose sessions and tombstones live as `limits` say (tests
    /// use short ones). Every node of a cluster must use the same.
    pub fn with_session_limits(limits: SessionLimits) -> Kv {
        Kv {
            map: ShardedMap::new(KEY_SHARD_BITS),
            expiries: Expiries::default(),
            sessions: Sessions::with_limits(limits),
        }
    }

    /// The value of `key` as this store holds it, even if its deadline has
    /// passed and its deletion is not yet applied (see [`Kv::read`] for
    /// the value a client is told).
    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.map.get(key)
    }

    /// The keys' deadlines and the store's clock.
    pub fn expiries(&self) -> &Expiries {
        &self.expiries
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A digest of the data — keys, values, deadlines and sessions — that
    /// is the same on two replicas exactly when their data are (see
    /// [`digest`]): `DEBUG DIGEST`. The store's clock is left out: every
    /// stamped entry moves it, even one that changes no data, and an empty
    /// store's digest is all zeros, as in Redis. Replicas agree on it all
    /// the same ([`Expiries::clock`]).
    pub fn digest(&self) -> String {
        let mut digest = digest::Digest::default();
        for (key, value) in self.map.iter() {
            digest.add(&[b"key", key, value]);
        }
        for (key, deadline) in self.expiries.iter() {
            digest.add(&[b"deadline", key, &deadline.to_be_bytes()]);
        }
        self.sessions.digest_into(&mut digest);
        digest.hex()
    }

    /// Retried writes answered from a session instead of being applied again.
    pub fn duplicates_suppressed(&self) -> u64 {
        self.sessions.duplicates()
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// How many expired sessions are remembered (see [`session`]).
    pub fn session_tombstones(&self) -> usize {
        self.sessions.tombstones()
    }

    /// Applies the command of the log entry at `index`.
    pub fn apply_command(&mut self, index: Index, command: Command) -> Outcome {
        self.sessions.expire(index);
        // The leader's stamp first: the clock is the same for the session's
        // decision and the command.
        let command = match command {
            Command::Stamped { now_ms, command } => {
                self.expiries.advance(now_ms);
                *command
            }
            command => command,
        };
        match command {
            Command::Session {
                client,
                seq,
                command,
            } => match self.sessions.admit(client, seq) {
                Admission::Answer(outcome) => outcome,
                Admission::Apply => {
                    // Nested sessions make no sense; the inner one is plain.
                    let outcome = self.apply_plain(*command);
                    self.sessions.record(client, seq, index, outcome.clone());
                    outcome
                }
            },
            command => self.apply_plain(command),
        }
    }
}

impl StateMachine for Kv {
    fn apply(&mut self, index: Index, command: &[u8]) -> Vec<u8> {
        let outcome = match Command::decode(command) {
            Ok(command) => self.apply_command(index, command),
            Err(e) => {
                // Only a bug or another program's entry can get here: every
                // node refuses it alike, so the replicas stay identical.
                error!("entry {index} holds an undecodable command ({e}); refused");
                Outcome::Refused(format!("undecodable command: {e}"))
            }
        };
        encode_reply(&outcome)
    }

    /// Answered on the leader, at its clock now if that is later than when
    /// the read started: a read never returns a key whose deadline has
    /// passed by the leader's clock when it answers (queries are not
    /// replicated, so reading a clock here is safe; applying never does).
    fn query(&self, query: &[u8]) -> Vec<u8> {
        let reply = match Query::decode(query) {
            Ok(query) => self.read(query.now_ms.max(now_ms()), &query.read),
            Err(e) => QueryReply::Refused(format!("undecodable query: {e}")),
        };
        encode_reply(&reply)
    }

    /// O(shards), whatever the number of keys: the keys and sessions are
    /// shared copy-on-write with the snapshot (see [`map`]), which writes
    /// them out as [`snapshot`] describes.
    fn snapshot(&self) -> Box<dyn StateSnapshot> {
        Box::new(
            KvSnapshot::new(self.map.freeze(), self.sessions.freeze())
                .with_tombstones(self.sessions.freeze_tombstones())
                .with_expiries(self.expiries.freeze(), self.expiries.clock()),
        )
    }

    /// Reads the payload into a new store, which replaces this one only once
    /// the whole payload is read and agrees with itself (so both are in
    /// memory meanwhile). The session limits are configuration and stay
    /// this store's; so does the count of duplicates suppressed, a counter of
    /// this node's rather than replicated state.
    fn restore(&mut self, payload: &mut dyn io::Read) -> Result<(), RestoreError> {
        let mut restored = Kv::with_session_limits(self.sessions.limits());
        snapshot::read(
            payload,
            &mut restored.map,
            &mut restored.sessions,
            &mut restored.expiries,
        )?;
        restored.sessions.set_duplicates(self.sessions.duplicates());
        *self = restored;
        Ok(())
    }
}

/// Replies are small enums of bytes and integers: encoding them cannot fail
/// short of a bug, and then the proposer is told it cannot read the reply.
fn encode_reply<T: Wire>(reply: &T) -> Vec<u8> {
    reply.encode().unwrap_or_else(|e| {
        error!("cannot encode a reply: {e}");
        Vec::new()
    })
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

/// The key-value operations of a node that runs a [`Kv`]. Writes return
/// once committed and applied; [`KeyValue::read`] is linearizable,
/// [`KeyValue::get`] reads this node's copy as it is.
pub trait KeyValue {
    /// Proposes any write (wrap it in [`Command::Session`] for exactly-once
    /// application) and waits until it is applied.
    fn write(&self, command: Command) -> Result<Outcome, Error>;

    /// Proposes a write without waiting for it to apply: a client with
    /// several writes at once proposes them all, then waits for each in
    /// turn ([`Node::start_proposal`]).
    fn start_write(&self, command: Command) -> Result<PendingWrite<'_>, Error>;

    /// Reads `key` linearizably (see [`Node::query`]).
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error>;

    /// Starts a linearizable read of `key` without waiting for it: reads
    /// started together share one round ([`Node::start_query`]).
    fn start_read(&self, key: &[u8]) -> Result<PendingRead<'_>, Error>;

    /// Any read, linearizably, at this node's time ([`now_ms`]).
    fn lookup(&self, read: Read) -> Result<QueryReply, Error> {
        self.start_lookup(read)?.wait_reply()
    }

    /// Starts any read without waiting for it, like [`KeyValue::start_read`].
    fn start_lookup(&self, read: Read) -> Result<PendingRead<'_>, Error>;

    /// Reads `key` from this node's state machine as it is now — a local
    /// read that may miss recent writes — at the store's own clock.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;

    /// Sets `key` to `value`.
    fn set(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<(), Error> {
        let command = Command::Set {
            key: key.into(),
            value: value.into(),
        };
        match self.write(command)? {
            Outcome::Done => Ok(()),
            other => unreachable!("set produced {other:?}"),
        }
    }

    /// Deletes `key`; returns whether it existed.
    fn delete(&self, key: impl Into<Vec<u8>>) -> Result<bool, Error> {
        self.delete_many(vec![key.into()]).map(|n| n > 0)
    }

    /// Deletes every key in one atomic write; returns how many existed.
    fn delete_many(&self, keys: Vec<Vec<u8>>) -> Result<usize, Error> {
        match self.write(Command::Delete { keys })? {
            Outcome::Deleted(n) => Ok(n),
            other => unreachable!("delete produced {other:?}"),
        }
    }

    /// Sets `key` to `new` if its value is `expected`; returns whether it did.
    /// An absent key never matches.
    fn cas(
        &self,
        key: impl Into<Vec<u8>>,
        expected: impl Into<Vec<u8>>,
        new: impl Into<Vec<u8>>,
    ) -> Result<bool, Error> {
        let command = Command::Cas {
            key: key.into(),
            expected: expected.into(),
            new: new.into(),
        };
        match self.write(command)? {
            Outcome::Swapped(swapped) => Ok(swapped),
            other => unreachable!("cas produced {other:?}"),
        }
    }

    /// Adds one to the integer at `key` (absent counts as 0); returns the new
    /// value, or `Outcome::Refused` if the value is not an integer.
    fn incr(&self, key: impl Into<Vec<u8>>) -> Result<Outcome, Error> {
        self.write(Command::Incr { key: key.into() })
    }

    /// Appends `value` to the value at `key`; returns the new length.
    fn append(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<Outcome, Error> {
        self.write(Command::Append {
            key: key.into(),
            value: value.into(),
        })
    }
}

/// A write proposed and not yet known applied ([`KeyValue::start_write`]).
#[must_use = "a write's outcome is only known by waiting for it"]
pub struct PendingWrite<'a>(Proposal<'a, Kv>);

impl PendingWrite<'_> {
    /// Gives up waiting after `timeout` ([`Proposal::within`]).
    pub fn within(self, timeout: std::time::Duration) -> Self {
        PendingWrite(self.0.within(timeout))
    }

    /// Waits until the write is applied; its outcome. The errors are
    /// [`Proposal::wait`]'s.
    pub fn wait(self) -> Result<Outcome, Error> {
        Outcome::decode(&self.0.wait()?).map_err(Error::Codec)
    }
}

/// A read started and not answered yet ([`KeyValue::start_read`]).
#[must_use = "a read's answer is only known by waiting for it"]
pub struct PendingRead<'a>(PendingQuery<'a, Kv>);

impl PendingRead<'_> {
    /// Waits for a GET; the value, or `None` if the key is absent. The
    /// errors are [`PendingQuery::wait`]'s.
    pub fn wait(self) -> Result<Option<Vec<u8>>, Error> {
        match self.wait_reply()? {
            QueryReply::Value(value) => Ok(value),
            other => unreachable!("a GET was answered {other:?}"),
        }
    }

    /// Waits for any read; its answer.
    pub fn wait_reply(self) -> Result<QueryReply, Error> {
        QueryReply::decode(&self.0.wait()?).map_err(Error::Codec)
    }
}

impl KeyValue for Node<Kv> {
    fn write(&self, command: Command) -> Result<Outcome, Error> {
        self.start_write(command)?.wait()
    }

    /// Stamps the write with this node's clock: if it is the leader, that
    /// is the time at which the write applies (see [`expiry`]).
    fn start_write(&self, command: Command) -> Result<PendingWrite<'_>, Error> {
        let stamped = Command::Stamped {
            now_ms: now_ms(),
            command: Box::new(command),
        };
        let bytes = stamped.encode().map_err(Error::Codec)?;
        self.start_proposal(bytes).map(PendingWrite)
    }

    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.start_read(key)?.wait()
    }

    fn start_read(&self, key: &[u8]) -> Result<PendingRead<'_>, Error> {
        self.start_lookup(Read::Get { key: key.to_vec() })
    }

    fn start_lookup(&self, read: Read) -> Result<PendingRead<'_>, Error> {
        let query = Query {
            now_ms: now_ms(),
            read,
        };
        let bytes = query.encode().map_err(Error::Codec)?;
        self.start_query(bytes).map(PendingRead)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let key = key.to_vec();
        match self.with_state(|kv| kv.read(0, &Read::Get { key })) {
            QueryReply::Value(value) => value,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn incr_by_adds_and_refuses_overflow_and_non_integers_changing_nothing() {
        let mut kv = Kv::new();
        let by = |n: i64| Command::IncrBy { key: b("n"), by: n };
        assert_eq!(kv.apply_command(1, by(-5)), Outcome::Integer(-5));
        assert_eq!(
            kv.apply_command(2, by(i64::MAX)),
            Outcome::Integer(i64::MAX - 5)
        );
        let overflow = Outcome::Refused("increment or decrement would overflow".into());
        assert_eq!(kv.apply_command(3, by(6)), overflow);
        assert_eq!(kv.get(b"n"), Some(&(i64::MAX - 5).to_string().into_bytes()));
        kv.apply_command(
            4,
            Command::Set {
                key: b("n"),
                value: b("x"),
            },
        );
        let not_integer = Outcome::Refused("value is not an integer or out of range".into());
        assert_eq!(kv.apply_command(5, by(1)), not_integer);
        assert_eq!(kv.get(b"n"), Some(&b("x")));
    }

    #[test]
    fn set_delete_cas() {
        let mut kv = Kv::new();
        let set = Command::Set {
            key: b("a"),
            value: b("1"),
        };
        assert_eq!(kv.apply_command(1, set), Outcome::Done);
        assert_eq!(kv.get(b"a"), Some(&b("1")));
        let cas = |expected: &str, new: &str| Command::Cas {
            key: b("a"),
            expected: b(expected),
            new: b(new),
        };
        assert_eq!(kv.apply_command(2, cas("2", "3")), Outcome::Swapped(false));
        assert_eq!(kv.apply_command(3, cas("1", "3")), Outcome::Swapped(true));
        assert_eq!(kv.get(b"a"), Some(&b("3")));
        let del = Command::Delete {
            keys: vec![b("a"), b("missing"), b("a")],
        };
        assert_eq!(kv.apply_command(4, del), Outcome::Deleted(1));
        assert!(kv.is_empty());
        // CAS on an absent key never matches, not even the empty string.
        assert_eq!(kv.apply_command(5, cas("", "x")), Outcome::Swapped(false));
        assert_eq!(kv.get(b"a"), None);
    }

    #[test]
    fn incr_and_append_behave_like_redis() {
        let mut kv = Kv::new();
        let incr = || Command::Incr { key: b("n") };
        assert_eq!(kv.apply_command(1, incr()), Outcome::Integer(1));
        assert_eq!(kv.apply_command(2, incr()), Outcome::Integer(2));
        assert_eq!(kv.get(b"n"), Some(&b("2")));
        for bad in ["x", " 1", "01", "+1", "", "-0", "9223372036854775807"] {
            kv.apply_command(
                3,
                Command::Set {
                    key: b("n"),
                    value: b(bad),
                },
            );
            assert!(
                matches!(kv.apply_command(4, incr()), Outcome::Refused(_)),
                "INCR of {bad:?}"
            );
            assert_eq!(
                kv.get(b"n"),
                Some(&b(bad)),
                "a refused INCR changes nothing"
            );
        }
        kv.apply_command(
            5,
            Command::Set {
                key: b("n"),
                value: b("-5"),
            },
        );
        assert_eq!(kv.apply_command(6, incr()), Outcome::Integer(-4));
        let append = |v: &str| Command::Append {
            key: b("s"),
            value: b(v),
        };
        assert_eq!(kv.apply_command(7, append("ab")), Outcome::Integer(2));
        assert_eq!(kv.apply_command(8, append("cde")), Outcome::Integer(5));
        assert_eq!(kv.get(b"s"), Some(&b("abcde")));
    }

    /// APPEND never grows a value past the store's limit: at the limit it
    /// is refused, changing nothing, the same way on every replica.
    #[test]
    fn append_stops_at_the_value_limit() {
        let mut kv = Kv::new();
        let append = |len: usize| Command::Append {
            key: b("big"),
            value: vec![b'x'; len],
        };
        let half = MAX_VALUE_BYTES / 2;
        assert_eq!(
            kv.apply_command(1, append(half)),
            Outcome::Integer(half as i64)
        );
        let to_limit = MAX_VALUE_BYTES - half;
        let full = Outcome::Integer(MAX_VALUE_BYTES as i64);
        assert_eq!(kv.apply_command(2, append(to_limit)), full);
        assert_eq!(
            kv.apply_command(3, append(1)),
            Outcome::Refused("string exceeds maximum allowed size (proto-max-bulk-len)".into())
        );
        assert_eq!(kv.get(b"big").map(Vec::len), Some(MAX_VALUE_BYTES));
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
        assert_eq!(
            kv.apply_command(1, in_session(7, 1, incr())),
            Outcome::Integer(1)
        );
        // The retry finds the stored reply; the counter does not move.
        assert_eq!(
            kv.apply_command(2, in_session(7, 1, incr())),
            Outcome::Integer(1)
        );
        assert_eq!(kv.get(b"n"), Some(&b("1")));
        assert_eq!(kv.duplicates_suppressed(), 1);
        assert_eq!(
            kv.apply_command(3, in_session(7, 2, incr())),
            Outcome::Integer(2)
        );
        // An older sequence number is refused; another client is independent.
        assert!(matches!(
            kv.apply_command(4, in_session(7, 1, incr())),
            Outcome::Refused(_)
        ));
        assert_eq!(
            kv.apply_command(5, in_session(8, 1, incr())),
            Outcome::Integer(3)
        );
        assert_eq!(kv.get(b"n"), Some(&b("3")));
    }

    #[test]
    fn sessions_expire_by_log_index_not_by_clock() {
        let mut kv = Kv::with_session_ttl(10);
        let set = |v: &str| Command::Set {
            key: b("k"),
            value: b(v),
        };
        kv.apply_command(1, in_session(1, 1, set("a")));
        kv.apply_command(5, in_session(2, 1, set("b")));
        assert_eq!(kv.sessions(), 2);
        kv.apply_command(11, set("c"));
        assert_eq!(kv.sessions(), 2, "exactly ttl entries later it still lives");
        kv.apply_command(12, set("d"));
        assert_eq!(kv.sessions(), 1, "client 1 expired");
        // A write of an expired session is not applied: its outcome is
        // unknown…
        assert!(matches!(
            kv.apply_command(13, in_session(1, 2, set("late"))),
            Outcome::SessionExpired(_)
        ));
        assert_eq!(kv.get(b"k"), Some(&b("d")));
        // …and client 2, still alive, is deduplicated.
        assert_eq!(
            kv.apply_command(14, in_session(2, 1, set("b"))),
            Outcome::Done
        );
        assert_eq!(kv.get(b"k"), Some(&b("d")));
    }

    #[test]
    fn the_state_machine_speaks_bytes() {
        let mut kv = Kv::new();
        let set = Command::Set {
            key: b("k"),
            value: b("v"),
        };
        let reply = StateMachine::apply(&mut kv, 1, &set.encode().unwrap());
        assert_eq!(Outcome::decode(&reply).unwrap(), Outcome::Done);
        let get = |key: &str| {
            let query = Query {
                now_ms: 0,
                read: Read::Get { key: b(key) },
            }
            .encode()
            .unwrap();
            QueryReply::decode(&kv.query(&query)).unwrap()
        };
        assert_eq!(get("k"), QueryReply::Value(Some(b("v"))));
        assert_eq!(get("nothing"), QueryReply::Value(None));
        assert!(matches!(
            QueryReply::decode(&kv.query(b"\xff\xff")).unwrap(),
            QueryReply::Refused(_)
        ));
        let mut kv = Kv::new();
        let reply = StateMachine::apply(&mut kv, 1, b"\xff\xff");
        assert!(matches!(
            Outcome::decode(&reply).unwrap(),
            Outcome::Refused(_)
        ));
        assert!(kv.is_empty(), "an undecodable command changes nothing");
    }

    fn set(key: &str, value: &str) -> Command {
        Command::Set {
            key: b(key),
            value: b(value),
        }
    }

    fn get(key: &str) -> Command {
        Command::Get { key: b(key) }
    }

    fn value(v: &str) -> Outcome {
        Outcome::Value(Some(b(v)))
    }

    #[test]
    fn a_transaction_applies_every_command_in_order_in_one_entry() {
        let mut kv = Kv::new();
        kv.apply_command(1, set("old", "x"));
        let multi = Command::Multi(vec![
            get("a"),
            set("a", "1"),
            Command::Incr { key: b("a") },
            get("a"),
            Command::Append {
                key: b("a"),
                value: b("0"),
            },
            Command::Cas {
                key: b("a"),
                expected: b("20"),
                new: b("21"),
            },
            Command::Delete {
                keys: vec![b("old"), b("none")],
            },
            get("a"),
            get("old"),
        ]);
        let outcome = kv.apply_command(2, multi);
        assert_eq!(
            outcome,
            Outcome::Multi(vec![
                Outcome::Value(None),
                Outcome::Done,
                Outcome::Integer(2),
                value("2"),
                Outcome::Integer(2),
                Outcome::Swapped(true),
                Outcome::Deleted(1),
                value("21"),
                Outcome::Value(None),
            ])
        );
        assert_eq!(kv.get(b"a"), Some(&b("21")));
        assert_eq!(kv.len(), 1);
        // An empty transaction is an empty list of outcomes.
        assert_eq!(
            kv.apply_command(3, Command::Multi(vec![])),
            Outcome::Multi(vec![])
        );
        // A lone Get is a read through the log.
        assert_eq!(kv.apply_command(4, get("a")), value("21"));
    }

    #[test]
    fn a_failing_command_is_refused_alone_and_the_rest_still_apply() {
        let mut kv = Kv::new();
        let multi = Command::Multi(vec![
            set("n", "not a number"),
            Command::Incr { key: b("n") },
            set("m", "1"),
            Command::Multi(vec![set("nested", "1")]),
            in_session(1, 1, set("sessioned", "1")),
            get("n"),
        ]);
        let Outcome::Multi(outcomes) = kv.apply_command(1, multi) else {
            panic!("a Multi answers with a Multi");
        };
        assert_eq!(outcomes.len(), 6);
        assert_eq!(outcomes[0], Outcome::Done);
        assert!(matches!(&outcomes[1], Outcome::Refused(why) if why.contains("not an integer")));
        assert_eq!(outcomes[2], Outcome::Done);
        assert!(matches!(outcomes[3], Outcome::Refused(_)), "no nesting");
        assert!(
            matches!(outcomes[4], Outcome::Refused(_)),
            "no inner session"
        );
        assert_eq!(outcomes[5], value("not a number"));
        assert_eq!(kv.get(b"m"), Some(&b("1")));
        assert_eq!(kv.get(b"nested"), None);
        assert_eq!(kv.get(b"sessioned"), None);
        assert_eq!(kv.sessions(), 0);
    }

    #[test]
    fn a_transactions_reads_are_bounded() {
        let mut kv = Kv::new();
        let big = vec![b'x'; MAX_MULTI_READ_BYTES / 2 + 1];
        kv.apply_command(
            1,
            Command::Set {
                key: b("big"),
                value: big.clone(),
            },
        );
        let multi = Command::Multi(vec![get("big"), get("missing"), get("big"), get("big")]);
        let Outcome::Multi(outcomes) = kv.apply_command(2, multi) else {
            panic!("a Multi answers with a Multi");
        };
        assert_eq!(outcomes[0], Outcome::Value(Some(big.clone())));
        assert_eq!(outcomes[1], Outcome::Value(None));
        assert!(
            matches!(&outcomes[2], Outcome::Refused(why) if why.contains("outside the transaction"))
        );
        assert!(matches!(outcomes[3], Outcome::Refused(_)));
        // A lone Get has no such limit: the value is one value.
        assert_eq!(kv.apply_command(3, get("big")), Outcome::Value(Some(big)));
    }

    #[test]
    fn a_sessioned_transaction_is_applied_once() {
        let mut kv = Kv::new();
        let multi = || {
            in_session(
                9,
                1,
                Command::Multi(vec![Command::Incr { key: b("n") }, get("n")]),
            )
        };
        let first = kv.apply_command(1, multi());
        assert_eq!(first, Outcome::Multi(vec![Outcome::Integer(1), value("1")]));
        assert_eq!(kv.apply_command(2, multi()), first, "the retry's answer");
        assert_eq!(kv.get(b"n"), Some(&b("1")));
        assert_eq!(kv.duplicates_suppressed(), 1);
    }

    #[test]
    fn first_key_is_where_a_command_goes() {
        assert_eq!(set("k", "v").first_key(), Some(&b"k"[..]));
        let del = Command::Delete { keys: vec![] };
        assert_eq!(del.first_key(), None);
        let multi = Command::Multi(vec![del, get("g"), set("k", "v")]);
        assert_eq!(multi.first_key(), Some(&b"g"[..]));
        assert_eq!(in_session(1, 1, multi).first_key(), Some(&b"g"[..]));
        assert_eq!(Command::Multi(vec![]).first_key(), None);
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
        let multi = in_session(
            3,
            10,
            Command::Multi(vec![get("k"), set("k", "v"), Command::Multi(vec![])]),
        );
        assert_eq!(Command::decode(&multi.encode().unwrap()).unwrap(), multi);
        let outcome = Outcome::Multi(vec![Outcome::Value(None), value("v"), Outcome::Done]);
        assert_eq!(
            Outcome::decode(&outcome.encode().unwrap()).unwrap(),
            outcome
        );
    }

    #[test]
    fn the_old_variants_keep_their_encoding() {
        // The data-dir format: a variant's index is its first byte, so new
        // variants go at the end and these never move.
        assert_eq!(set("k", "v").encode().unwrap()[0], 0);
        assert_eq!(in_session(1, 1, set("k", "v")).encode().unwrap()[0], 5);
        assert_eq!(get("k").encode().unwrap()[0], 6);
        assert_eq!(Command::Multi(vec![]).encode().unwrap()[0], 7);
        assert_eq!(Outcome::Refused(String::new()).encode().unwrap()[0], 4);
    }

    /// Short limits: sessions live 10 entries, tombstones 20 more, at most 3.
    fn short_lived() -> Kv {
        Kv::with_session_limits(SessionLimits {
            ttl: 10,
            tombstone_entries: 20,
            max_tombstones: 3,
        })
    }

    fn expired(outcome: &Outcome) -> bool {
        matches!(outcome, Outcome::SessionExpired(why) if why.contains("unknown"))
    }

    #[test]
    fn an_expired_sessions_retry_of_seq_1_is_not_applied_again() {
        let mut kv = short_lived();
        let incr = || Command::Incr { key: b("n") };
        assert_eq!(
            kv.apply_command(1, in_session(7, 1, incr())),
            Outcome::Integer(1)
        );
        kv.apply_command(12, set("other", "x"));
        assert_eq!((kv.sessions(), kv.session_tombstones()), (0, 1));
        // The retry of SEQ 1 — its session gone — would have been applied
        // a second time; now its outcome is unknown, and nothing changes.
        let before = kv.digest();
        assert!(expired(&kv.apply_command(13, in_session(7, 1, incr()))));
        assert_eq!(kv.get(b"n"), Some(&b("1")));
        assert_eq!(kv.digest(), before, "a refused write changes no state");
        assert_eq!(kv.sessions(), 0, "no session was opened");
        // However often it is retried.
        assert!(expired(&kv.apply_command(20, in_session(7, 1, incr()))));
        assert_eq!(kv.get(b"n"), Some(&b("1")));
    }

    #[test]
    fn an_expired_session_with_a_higher_seq_is_session_expired() {
        let mut kv = short_lived();
        kv.apply_command(1, in_session(7, 1, set("k", "1")));
        kv.apply_command(2, in_session(7, 2, set("k", "2")));
        kv.apply_command(13, set("other", "x"));
        for seq in [2, 3, 1_000] {
            let outcome = kv.apply_command(14, in_session(7, seq, set("k", "late")));
            assert!(expired(&outcome), "SEQ {seq}: {outcome:?}");
        }
        assert_eq!(kv.get(b"k"), Some(&b("2")));
        // Long after its tombstone is gone, a number above 1 is still never
        // applied: a session existed, since it did not start at 1.
        kv.apply_command(1_000, set("other", "y"));
        assert_eq!(kv.session_tombstones(), 0);
        assert!(expired(
            &kv.apply_command(1_001, in_session(7, 3, set("k", "late")))
        ));
        assert_eq!(kv.get(b"k"), Some(&b("2")));
    }

    #[test]
    fn a_brand_new_clients_seq_1_is_applied() {
        let mut kv = short_lived();
        // Other clients' sessions and tombstones change nothing for it.
        kv.apply_command(1, in_session(1, 1, set("a", "1")));
        kv.apply_command(20, in_session(2, 1, set("b", "1")));
        assert_eq!((kv.sessions(), kv.session_tombstones()), (1, 1));
        assert_eq!(
            kv.apply_command(21, in_session(3, 1, set("c", "1"))),
            Outcome::Done
        );
        assert_eq!(kv.get(b"c"), Some(&b("1")));
        assert_eq!(kv.sessions(), 2);
        // A new client that skipped 1 cannot be told from an expired one.
        assert!(expired(
            &kv.apply_command(22, in_session(4, 2, set("d", "1")))
        ));
        assert_eq!(kv.get(b"d"), None);
    }

    #[test]
    fn a_sessioned_transaction_of_an_expired_session_is_not_applied() {
        let mut kv = short_lived();
        let multi = || in_session(9, 1, Command::Multi(vec![Command::Incr { key: b("n") }]));
        assert_eq!(
            kv.apply_command(1, multi()),
            Outcome::Multi(vec![Outcome::Integer(1)])
        );
        kv.apply_command(12, set("other", "x"));
        assert!(expired(&kv.apply_command(13, multi())));
        assert_eq!(kv.get(b"n"), Some(&b("1")));
    }

    /// The exact guarantee: a tombstone lives `ttl + tombstone_entries`
    /// entries from the session's last use, and at most `max_tombstones`
    /// are kept, the oldest dropped first. Past either, SEQ 1 opens a new
    /// session (the documented limit).
    #[test]
    fn tombstones_are_bounded_in_time_and_number() {
        let mut kv = short_lived();
        kv.apply_command(1, in_session(1, 1, set("k", "1")));
        // Entry 31 is exactly ttl + tombstone_entries after 1: still there.
        kv.apply_command(31, set("other", "x"));
        assert_eq!(kv.session_tombstones(), 1);
        assert!(expired(
            &kv.apply_command(31, in_session(1, 1, set("k", "2")))
        ));
        kv.apply_command(32, set("other", "y"));
        assert_eq!(kv.session_tombstones(), 0, "forgotten one entry later");
        assert_eq!(
            kv.apply_command(33, in_session(1, 1, set("k", "2"))),
            Outcome::Done,
            "past the window, SEQ 1 opens a new session"
        );
        // By number: 1,000 clients, each writing once, expiring in turn.
        let mut kv = short_lived();
        let mut index = 0;
        for client in 1..=1_000u64 {
            index += 1;
            kv.apply_command(index, in_session(client, 1, set("k", "v")));
            assert!(kv.session_tombstones() <= 3, "entry {index}");
            // A session lives through the ttl entries after its last use.
            assert!(kv.sessions() <= 11, "entry {index}");
        }
        assert_eq!((kv.sessions(), kv.session_tombstones()), (11, 3));
        // The three most recently used expired clients are remembered, an
        // older one is not.
        index += 1;
        for client in 988..=990 {
            assert!(expired(
                &kv.apply_command(index, in_session(client, 1, set("k", "x")))
            ));
        }
        assert_eq!(
            kv.apply_command(index, in_session(987, 1, set("k", "x"))),
            Outcome::Done
        );
    }

    #[test]
    fn the_digest_covers_tombstones() {
        let mut a = short_lived();
        let mut b = short_lived();
        a.apply_command(1, in_session(1, 1, set("k", "v")));
        b.apply_command(1, set("k", "v"));
        a.apply_command(12, set("x", "1"));
        b.apply_command(12, set("x", "1"));
        assert_eq!((a.sessions(), a.session_tombstones()), (0, 1));
        assert_ne!(a.digest(), b.digest(), "only a tombstone differs");
        // Until it is dropped, on both alike.
        a.apply_command(40, set("x", "2"));
        b.apply_command(40, set("x", "2"));
        assert_eq!(a.digest(), b.digest());
    }

    /// A node restored from a snapshot taken while sessions and tombstones
    /// live decides every later write as the one that applied the log: the
    /// same outcomes and the same digest after every entry, as sessions
    /// expire and tombstones are dropped on both.
    #[test]
    fn a_restored_store_decides_expired_sessions_identically() {
        let mut kv = short_lived();
        // 30 clients, each writing now and then with SEQ 1 to 3, mostly
        // after its session expired: a pseudo-random function of the index.
        let command = |i: u64| {
            let x = i.wrapping_mul(2_654_435_761) >> 7;
            match x % 5 {
                0 => set(&format!("k{}", x % 7), "v"),
                _ => in_session(x % 30 + 1, x / 30 % 3 + 1, Command::Incr { key: b("n") }),
            }
        };
        let mut index = 0;
        for _ in 0..60 {
            index += 1 + index % 3;
            kv.apply_command(index, command(index));
        }
        assert!(kv.session_tombstones() > 0 && kv.sessions() > 0);
        let mut bytes = Vec::new();
        kv.snapshot().write_to(&mut bytes).unwrap();
        let mut back = short_lived();
        back.restore(&mut &bytes[..]).unwrap();
        assert_eq!(back.digest(), kv.digest());
        let (mut refused, mut applied) = (0, 0);
        for _ in 0..300 {
            index += 1 + index % 3;
            let (a, b) = (
                kv.apply_command(index, command(index)),
                back.apply_command(index, command(index)),
            );
            refused += usize::from(matches!(a, Outcome::SessionExpired(_)));
            applied += usize::from(matches!(a, Outcome::Integer(_)));
            assert_eq!(a, b, "entry {index}");
            assert_eq!(kv.digest(), back.digest(), "entry {index}");
        }
        assert!(
            refused > 10 && applied > 10,
            "{refused} expired, {applied} applied"
        );
    }
}
