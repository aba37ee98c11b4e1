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
