//! What the key-value store is asked to do, and what it answers: writes
//! ([`Command`], stored in log entries) with their [`Outcome`]s, and reads
//! ([`Query`]) with their [`QueryReply`]s. All cross the node as bytes
//! encoded by [`crate::codec`].
//!
//! The encoding of [`Command`] is part of the data-dir format (log entries
//! hold it): variants may be added at the end, never reordered or changed.

use crate::codec::{self, CodecError};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

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
    /// `command`, applied at most once for this client and sequence number
    /// (see [`super::session`]).
    Session {
        client: u64,
        seq: u64,
        command: Box<Command>,
    },
    /// Reads `key` through the log: its outcome is the value as of this
    /// entry. Valid anywhere, but the client port only proposes it inside a
    /// [`Command::Multi`] (a lone GET is served by [`Query::Get`], which
    /// writes nothing to the log).
    Get {
        key: Vec<u8>,
    },
    /// A transaction (MULTI … EXEC): every command applied in order in one
    /// step, so no other write falls between them and every node applies all
    /// of them or none. A command that fails (say INCR of a non-integer) is
    /// refused alone and the others still apply — there is no rollback, as
    /// in Redis. A `Multi` or `Session` inside a `Multi` is refused (the
    /// outer entry may be a `Session`, making the whole transaction
    /// exactly-once). The GETs of one transaction return at most
    /// [`MAX_MULTI_READ_BYTES`] of values between them; a GET over that is
    /// refused, so a transaction's outcome stays bounded.
    Multi(Vec<Command>),
    /// Adds `by` to the decimal integer stored at `key` (absent counts as
    /// 0), as Redis's INCRBY, DECRBY and DECR do.
    IncrBy {
        key: Vec<u8>,
        by: i64,
    },
}

/// The most value bytes the GETs of one [`Command::Multi`] may return. Its
/// outcome is held whole in memory (and by a session, until it expires) and
/// must decode within the codec's limit, so it is capped well below that.
pub const MAX_MULTI_READ_BYTES: usize = 16 * 1024 * 1024;

/// The largest value the store holds. Clients cannot write a larger one
/// (the client port checks SET's value), and a command that would grow a
/// value past it (APPEND) is refused when applied, identically on every
/// replica — so it is part of the state machine's definition: changing it
/// would make replicas of different releases disagree.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

impl Command {
    /// The first key the command names, if any (a transaction's is that of
    /// its first command that names one): where a cluster client sends it.
    pub fn first_key(&self) -> Option<&[u8]> {
        match self {
            Command::Set { key, .. }
            | Command::Cas { key, .. }
            | Command::Incr { key }
            | Command::IncrBy { key, .. }
            | Command::Append { key, .. }
            | Command::Get { key } => Some(key),
            Command::Delete { keys } => keys.first().map(Vec::as_slice),
            Command::Session { command, .. } => command.first_key(),
            Command::Multi(commands) => commands.iter().find_map(Command::first_key),
        }
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
    /// A Get's value, if the key has one.
    Value(Option<Vec<u8>>),
    /// A Multi's outcomes, one per command, in order.
    Multi(Vec<Outcome>),
    /// A sessioned write of a client whose session expired (see
    /// [`super::session`]): not applied now, but an earlier attempt of it
    /// may have been, so **its outcome is unknown** — unlike `Refused`,
    /// which means nothing changed. Never remembered by a session.
    SessionExpired(String),
}

/// A read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    Get { key: Vec<u8> },
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryReply {
    /// The value of a key, if it has one.
    Value(Option<Vec<u8>>),
    /// The query could not be understood.
    Refused(String),
}

/// Encoding to and from the bytes that cross the node, for every type here.
pub trait Wire: Serialize + DeserializeOwned {
    fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode(bytes)
    }
}

impl Wire for Command {}
impl Wire for Outcome {}
impl Wire for Query {}
impl Wire for QueryReply {}
