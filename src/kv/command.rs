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
    /// [`Command::Multi`] (a lone GET is served by a [`Query`], which
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
    /// `command`, applied at the leader's wall-clock time `now_ms`
    /// (milliseconds since the Unix epoch) as the leader proposed it. The
    /// store's clock moves to it unless it is already later: time enters the
    /// state machine only this way, so every replica decides expiry alike
    /// (see [`super::expiry`]).
    Stamped {
        now_ms: u64,
        command: Box<Command>,
    },
    /// SET with its options: set `value` if `condition` holds, with the
    /// time to live `expiry` says; the outcome is the old value if `get`,
    /// else `Done`, or a null `Value` when the condition did not hold.
    SetWith {
        key: Vec<u8>,
        value: Vec<u8>,
        condition: Condition,
        get: bool,
        expiry: Expiry,
    },
    /// MSET, or MSETNX if `only_if_none_exist`: every pair in one step.
    MSet {
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        only_if_none_exist: bool,
    },
    /// GETDEL: the value, and the key deleted.
    GetDel {
        key: Vec<u8>,
    },
    /// GETEX with an option: the value, and its time to live changed.
    GetEx {
        key: Vec<u8>,
        expiry: Expiry,
    },
    /// SETRANGE: overwrites from `offset`, padding with zero bytes.
    SetRange {
        key: Vec<u8>,
        offset: u64,
        value: Vec<u8>,
    },
    /// INCRBYFLOAT: `by` is the increment as the client wrote it, parsed
    /// when applied (see [`super::float`]).
    IncrByFloat {
        key: Vec<u8>,
        by: Vec<u8>,
    },
    /// RENAME, or RENAMENX if `only_if_absent`; the time to live moves
    /// with the value.
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
        only_if_absent: bool,
    },
    /// COPY: the value and its time to live.
    Copy {
        from: Vec<u8>,
        to: Vec<u8>,
        replace: bool,
    },
    /// FLUSHALL / FLUSHDB: every key goes (sessions stay: they are not
    /// the user's data, and exactly-once must survive a flush).
    FlushAll,
    /// EXPIRE and friends: `when_ms` is a deadline, or a time to live
    /// from the entry's clock if `relative`. A deadline already passed
    /// deletes the key.
    Expire {
        key: Vec<u8>,
        when_ms: i64,
        relative: bool,
        condition: ExpireCondition,
    },
    /// PERSIST: the key's time to live goes.
    Persist {
        key: Vec<u8>,
    },
    /// Active expiry: the leader found these keys past their deadlines;
    /// each is deleted if it still is by the entry's clock (it may have
    /// been given a new life since).
    Expired {
        keys: Vec<Vec<u8>>,
    },
    /// A read through the log, inside a transaction.
    Read(Read),
}

/// SET's NX and XX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    Always,
    /// NX: only if the key does not exist.
    IfAbsent,
    /// XX: only if it does.
    IfPresent,
}

/// What a write does to a key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expiry {
    /// None from now on (a plain SET).
    Clear,
    /// As it was (KEEPTTL; GETEX without an option).
    Keep,
    /// Expires this many milliseconds after the entry's clock (EX, PX).
    In(u64),
    /// Expires at this Unix time in milliseconds (EXAT, PXAT).
    At(u64),
}

/// EXPIRE's NX, XX, GT and LT; XX may come with GT or LT, the others
/// alone (the client port refuses other mixes, as Redis does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireCondition {
    /// NX: only if the key has no time to live.
    pub no_ttl: bool,
    /// XX: only if it has one.
    pub has_ttl: bool,
    /// GT: only if the new deadline is later (no time to live counts as
    /// infinitely late).
    pub later: bool,
    /// LT: only if it is sooner.
    pub sooner: bool,
}

/// A read: answered as a [`Query`] by the leader, or applied as
/// [`Command::Read`] inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Read {
    Get {
        key: Vec<u8>,
    },
    MGet {
        keys: Vec<Vec<u8>>,
    },
    /// EXISTS and TOUCH: how many of the keys exist, a key named twice
    /// counting twice.
    Exists {
        keys: Vec<Vec<u8>>,
    },
    DbSize,
    Keys {
        pattern: Vec<u8>,
    },
    /// SCAN from `cursor`: about `count` keys, then those matching.
    Scan {
        cursor: u64,
        pattern: Option<Vec<u8>>,
        count: u64,
        type_name: Option<Vec<u8>>,
    },
    Type {
        key: Vec<u8>,
    },
    /// RANDOMKEY: `seed` is the client port's random number.
    RandomKey {
        seed: u64,
    },
    /// TTL, PTTL, EXPIRETIME, PEXPIRETIME.
    Ttl {
        key: Vec<u8>,
        millis: bool,
        absolute: bool,
    },
    StrLen {
        key: Vec<u8>,
    },
    GetRange {
        key: Vec<u8>,
        start: i64,
        end: i64,
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

/// The most bytes of keys or values one read returns (MGET, KEYS; SCAN
/// returns fewer keys instead): its answer is held whole in memory on the
/// leader and must decode within the codec's limit. A read over it is
/// refused with a clear error.
pub const MAX_READ_BYTES: usize = 16 * 1024 * 1024;

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
            Command::SetWith { key, .. }
            | Command::GetDel { key }
            | Command::GetEx { key, .. }
            | Command::SetRange { key, .. }
            | Command::IncrByFloat { key, .. }
            | Command::Expire { key, .. }
            | Command::Persist { key } => Some(key),
            Command::Rename { from, .. } | Command::Copy { from, .. } => Some(from),
            Command::MSet { pairs, .. } => pairs.first().map(|(k, _)| k.as_slice()),
            Command::Delete { keys } | Command::Expired { keys } => keys.first().map(Vec::as_slice),
            Command::FlushAll => None,
            Command::Read(read) => read.first_key(),
            Command::Session { command, .. } | Command::Stamped { command, .. } => {
                command.first_key()
            }
            Command::Multi(commands) => commands.iter().find_map(Command::first_key),
        }
    }
}

impl Read {
    /// The first key the read names, if any.
    pub fn first_key(&self) -> Option<&[u8]> {
        match self {
            Read::Get { key }
            | Read::Type { key }
            | Read::Ttl { key, .. }
            | Read::StrLen { key }
            | Read::GetRange { key, .. } => Some(key),
            Read::MGet { keys } | Read::Exists { keys } => keys.first().map(Vec::as_slice),
            Read::DbSize | Read::Keys { .. } | Read::Scan { .. } | Read::RandomKey { .. } => None,
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
    /// A read's answer ([`Command::Read`]).
    Read(QueryReply),
}

/// A read served by the leader without the log (ReadIndex or lease), at
/// the leader's wall-clock time when it answers — at least `now_ms`, its
/// time when the read started: a key whose deadline has passed by then is
/// not there, whether or not its deletion has been applied yet.
/// Queries never reach the disk, so their encoding may change freely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    pub now_ms: u64,
    pub read: Read,
}

/// The answer to a [`Read`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryReply {
    /// The value of a key, if it has one.
    Value(Option<Vec<u8>>),
    /// The query could not be understood, or its answer would be too big.
    Refused(String),
    /// MGET's values, in the order asked.
    Values(Vec<Option<Vec<u8>>>),
    Integer(i64),
    /// KEYS's keys.
    Keys(Vec<Vec<u8>>),
    /// SCAN's next cursor (0 when done) and keys.
    Scan {
        cursor: u64,
        keys: Vec<Vec<u8>>,
    },
    /// TYPE's answer, a status word.
    Status(String),
}

impl QueryReply {
    /// About how many bytes the answer holds: what a transaction's reads
    /// are bounded by.
    pub fn bytes(&self) -> usize {
        let sum = |list: &[Vec<u8>]| list.iter().map(Vec::len).sum::<usize>();
        match self {
            QueryReply::Value(v) => v.as_ref().map_or(0, Vec::len),
            QueryReply::Values(vs) => vs.iter().flatten().map(Vec::len).sum(),
            QueryReply::Keys(keys) | QueryReply::Scan { keys, .. } => sum(keys),
            QueryReply::Refused(s) | QueryReply::Status(s) => s.len(),
            QueryReply::Integer(_) => 8,
        }
    }
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
