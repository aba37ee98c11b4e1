//! The commands on the store: each request parsed into the write
//! ([`Command`]) or read ([`Read`]) it stands for, with Redis's argument
//! checks and Redis's words for their errors, and each outcome turned into
//! the reply Redis gives.
//!
//! Parsing is done once, where the request arrives, and never again: what
//! goes into the log is the parsed [`Command`], so every replica applies
//! the same thing. Checks that depend on the store (does the key exist, is
//! the value an integer) are the state machine's; checks that depend only
//! on the arguments are made here, before anything is proposed. A relative
//! time to live (`EX 10`) goes into the log as such and becomes a deadline
//! when applied, at the entry's clock (see [`crate::kv::expiry`]); only the
//! overflow checks Redis makes against its clock are made here against
//! this node's.

use crate::kv::{
    now_ms, Command, Condition, ExpireCondition, Expiry, Outcome, QueryReply, Read, MAX_VALUE_BYTES,
};
use crate::redis::catalog;
use crate::redis::resp::{parse_int, Reply};

/// The largest key a client may write.
pub const MAX_KEY_BYTES: usize = 64 * 1024;
/// The most keys one command may name (DEL, UNLINK, MGET, EXISTS, TOUCH),
/// and the most pairs one MSET may set.
pub const MAX_KEYS: usize = 4096;
/// The old name of [`MAX_KEYS`].
pub const MAX_DEL_KEYS: usize = MAX_KEYS;

/// A request on the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Goes through the log.
    Write(Command),
    /// Served by the leader without the log (ReadIndex or lease).
    Read(Read),
}

/// The names of the commands on the store, as `COMMAND` lists them.
const STORE_COMMANDS: &[&str] = &[
    "get",
    "mget",
    "exists",
    "touch",
    "dbsize",
    "keys",
    "scan",
    "type",
    "randomkey",
    "ttl",
    "pttl",
    "expiretime",
    "pexpiretime",
    "strlen",
    "getrange",
    "getex",
    "set",
    "setnx",
    "setex",
    "psetex",
    "getset",
    "getdel",
    "mset",
    "msetnx",
    "setrange",
    "incr",
    "decr",
    "incrby",
    "decrby",
    "incrbyfloat",
    "append",
    "del",
    "unlink",
    "cas",
    "rename",
    "renamenx",
    "copy",
    "flushall",
    "flushdb",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "persist",
];

/// `request` (named `name`, in capitals) as the write or read it stands
/// for: `None` if it is not a command on the store or has the wrong number
/// of arguments (the caller answers those), an error reply if its
/// arguments are refused.
pub fn parse(name: &str, args: &[Vec<u8>]) -> Option<Result<Request, Reply>> {
    // One lookup, and the table's lower-case name for the rest: nothing is
    // allocated to lower the request's.
    let spec = catalog::find(name.as_bytes())?;
    if !STORE_COMMANDS.contains(&spec.name) {
        return None;
    }
    if !spec.takes(args.len()) {
        return None;
    }
    Some(build(spec.name, args).and_then(|request| check_sizes(spec.name, args, request)))
}

fn err(msg: &str) -> Reply {
    Reply::error(msg)
}

fn syntax() -> Reply {
    err("syntax error")
}

fn not_integer() -> Reply {
    err("value is not an integer or out of range")
}

fn int(arg: &[u8]) -> Result<i64, Reply> {
    parse_int(arg).ok_or_else(not_integer)
}

fn invalid_expire(command: &str) -> Reply {
    err(&format!("invalid expire time in '{command}' command"))
}

fn key(args: &[Vec<u8>]) -> Vec<u8> {
    args[1].clone()
}

fn write(command: Command) -> Result<Request, Reply> {
    Ok(Request::Write(command))
}

fn read(read: Read) -> Result<Request, Reply> {
    Ok(Request::Read(read))
}

/// Builds the request; the arity is already checked.
fn build(name: &str, args: &[Vec<u8>]) -> Result<Request, Reply> {
    let n = args.len();
    match name {
        "get" => read(Read::Get { key: key(args) }),
        "mget" => read(Read::MGet {
            keys: args[1..].to_vec(),
        }),
        "exists" | "touch" => read(Read::Exists {
            keys: args[1..].to_vec(),
        }),
        "dbsize" => read(Read::DbSize),
        "keys" => read(Read::Keys { pattern: key(args) }),
        "scan" => scan(args),
        "type" => read(Read::Type { key: key(args) }),
        "randomkey" => read(Read::RandomKey {
            seed: rand::random(),
        }),
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => read(Read::Ttl {
            key: key(args),
            millis: name.starts_with('p'),
            absolute: name.ends_with("expiretime"),
        }),
        "strlen" => read(Read::StrLen { key: key(args) }),
        "getrange" => {
            let (start, end) = (int(&args[2])?, int(&args[3])?);
            read(Read::GetRange {
                key: key(args),
                start,
                end,
            })
        }
        "getex" => {
            let options = parse_set_options(&args[2..], Kind::GetEx)?;
            match options.expiry("getex")? {
                None => read(Read::Get { key: key(args) }),
                Some(expiry) => write(Command::GetEx {
                    key: key(args),
                    expiry,
                }),
            }
        }
        "set" => {
            let options = parse_set_options(&args[3..], Kind::Set)?;
            let expiry = options.expiry("set")?.unwrap_or(Expiry::Clear);
            let condition = match (options.nx, options.xx) {
                (true, _) => Condition::IfAbsent,
                (_, true) => Condition::IfPresent,
                _ => Condition::Always,
            };
            if condition == Condition::Always && !options.get && expiry == Expiry::Clear {
                // The plain SET, as it always was.
                return write(Command::Set {
                    key: key(args),
                    value: args[2].clone(),
                });
            }
            write(Command::SetWith {
                key: key(args),
                value: args[2].clone(),
                condition,
                get: options.get,
                expiry,
            })
        }
        "setex" | "psetex" => {
            let ttl = int(&args[2])?;
            let expiry = relative_expiry(name, ttl, name == "setex")?;
            write(Command::SetWith {
                key: key(args),
                value: args[3].clone(),
                condition: Condition::Always,
                get: false,
                expiry,
            })
        }
        "setnx" => write(Command::MSet {
            pairs: vec![(key(args), args[2].clone())],
            only_if_none_exist: true,
        }),
        "getset" => write(Command::SetWith {
            key: key(args),
            value: args[2].clone(),
            condition: Condition::Always,
            get: true,
            expiry: Expiry::Clear,
        }),
        "getdel" => write(Command::GetDel { key: key(args) }),
        "mset" | "msetnx" => {
            if n.is_multiple_of(2) {
                return Err(Reply::wrong_arity(name));
            }
            write(Command::MSet {
                pairs: args[1..]
                    .chunks(2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect(),
                only_if_none_exist: name == "msetnx",
            })
        }
        "setrange" => {
            let offset = int(&args[2])?;
            if offset < 0 {
                return Err(err("offset is out of range"));
            }
            let value = &args[3];
            // Redis checks the length only when there is something to
            // write: an empty value changes nothing, wherever it points.
            if !value.is_empty()
                && (offset as u64).saturating_add(value.len() as u64) > MAX_VALUE_BYTES as u64
            {
                return Err(err(
                    "string exceeds maximum allowed size (proto-max-bulk-len)",
                ));
            }
            write(Command::SetRange {
                key: key(args),
                offset: offset as u64,
                value: value.clone(),
            })
        }
        "incr" => write(Command::Incr { key: key(args) }),
        "decr" => write(Command::IncrBy {
            key: key(args),
            by: -1,
        }),
        "incrby" | "decrby" => {
            let by = int(&args[2])?;
            let by = match name {
                "incrby" => by,
                _ => by
                    .checked_neg()
                    .ok_or_else(|| err("decrement would overflow"))?,
            };
            write(Command::IncrBy { key: key(args), by })
        }
        "incrbyfloat" => {
            if crate::kv::float::LongDouble::parse(&args[2]).is_none() {
                return Err(err("value is not a valid float"));
            }
            write(Command::IncrByFloat {
                key: key(args),
                by: args[2].clone(),
            })
        }
        "append" => write(Command::Append {
            key: key(args),
            value: args[2].clone(),
        }),
        "del" | "unlink" => write(Command::Delete {
            keys: args[1..].to_vec(),
        }),
        "cas" => write(Command::Cas {
            key: key(args),
            expected: args[2].clone(),
            new: args[3].clone(),
        }),
        "rename" | "renamenx" => write(Command::Rename {
            from: key(args),
            to: args[2].clone(),
            only_if_absent: name == "renamenx",
        }),
        "copy" => copy(args),
        "flushall" | "flushdb" => match args.get(1..).unwrap_or(&[]) {
            [] => write(Command::FlushAll),
            [mode] if mode.eq_ignore_ascii_case(b"SYNC") || mode.eq_ignore_ascii_case(b"ASYNC") => {
                write(Command::FlushAll)
            }
            _ => Err(syntax()),
        },
        "expire" | "pexpire" | "expireat" | "pexpireat" => expire(name, args),
        "persist" => write(Command::Persist { key: key(args) }),
        _ => Err(err(&format!("{name} is not a command on the store"))),
    }
}

/// Which command SET's options belong to: SET takes NX, XX, GET and
/// KEEPTTL; GETEX takes PERSIST; both take EX, PX, EXAT and PXAT.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Set,
    GetEx,
}

/// EX, PX, EXAT or PXAT, and its argument.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Ex,
    Px,
    ExAt,
    PxAt,
}

#[derive(Default)]
struct SetOptions<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    persist: bool,
    expire: Option<(Unit, &'a [u8])>,
}

/// SET's and GETEX's options, as Redis's `parseExtendedStringArgumentsOrReply`
/// accepts them: each at most compatible with the others it may come with,
/// anything else a syntax error.
fn parse_set_options(options: &[Vec<u8>], kind: Kind) -> Result<SetOptions<'_>, Reply> {
    let mut o = SetOptions::default();
    let mut i = 0;
    while i < options.len() {
        let word = options[i].to_ascii_uppercase();
        let next = options.get(i + 1).map(Vec::as_slice);
        let unit = match word.as_slice() {
            b"EX" => Some(Unit::Ex),
            b"PX" => Some(Unit::Px),
            b"EXAT" => Some(Unit::ExAt),
            b"PXAT" => Some(Unit::PxAt),
            _ => None,
        };
        // A unit may repeat itself (the last wins), but not mix with another.
        let other_unit = |u: Unit| o.expire.is_some_and(|(had, _)| had != u);
        match (word.as_slice(), unit) {
            (b"NX", _) if !o.xx && kind == Kind::Set => o.nx = true,
            (b"XX", _) if !o.nx && kind == Kind::Set => o.xx = true,
            (b"GET", _) if kind == Kind::Set => o.get = true,
            (b"KEEPTTL", _) if !o.persist && o.expire.is_none() && kind == Kind::Set => {
                o.keep_ttl = true
            }
            (b"PERSIST", _) if kind == Kind::GetEx && o.expire.is_none() && !o.keep_ttl => {
                o.persist = true
            }
            (_, Some(u)) if !o.keep_ttl && !o.persist && !other_unit(u) && next.is_some() => {
                o.expire = next.map(|arg| (u, arg));
                i += 1;
            }
            _ => return Err(syntax()),
        }
        i += 1;
    }
    Ok(o)
}

impl SetOptions<'_> {
    /// The time to live asked for: `None` if the options leave it alone
    /// (and do not clear it either, for GETEX), checked as Redis's
    /// `getExpireMillisecondsOrReply` does.
    fn expiry(&self, command: &str) -> Result<Option<Expiry>, Reply> {
        if self.keep_ttl {
            return Ok(Some(Expiry::Keep));
        }
        if self.persist {
            return Ok(Some(Expiry::Clear));
        }
        let Some((unit, arg)) = self.expire else {
            return Ok(None);
        };
        let value = int(arg)?;
        let seconds = matches!(unit, Unit::Ex | Unit::ExAt);
        match unit {
            Unit::Ex | Unit::Px => relative_expiry(command, value, seconds).map(Some),
            Unit::ExAt | Unit::PxAt => {
                if value <= 0 || (seconds && value > i64::MAX / 1000) {
                    return Err(invalid_expire(command));
                }
                let ms = if seconds { value * 1000 } else { value };
                Ok(Some(Expiry::At(ms as u64)))
            }
        }
    }
}

/// EX/PX `value`: positive, and not overflowing once in milliseconds and
/// added to the clock.
fn relative_expiry(command: &str, value: i64, seconds: bool) -> Result<Expiry, Reply> {
    if value <= 0 || (seconds && value > i64::MAX / 1000) {
        return Err(invalid_expire(command));
    }
    let ms = if seconds { value * 1000 } else { value };
    let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    if ms > i64::MAX - now {
        return Err(invalid_expire(command));
    }
    Ok(Expiry::In(ms as u64))
}

/// `EXPIRE key n [NX|XX|GT|LT]` and friends (Redis's
/// `expireGenericCommand`): the options first, then the number.
fn expire(name: &str, args: &[Vec<u8>]) -> Result<Request, Reply> {
    let mut condition = ExpireCondition::default();
    for option in &args[3..] {
        match option.to_ascii_uppercase().as_slice() {
            b"NX" => condition.no_ttl = true,
            b"XX" => condition.has_ttl = true,
            b"GT" => condition.later = true,
            b"LT" => condition.sooner = true,
            _ => {
                return Err(err(&format!(
                    "Unsupported option {}",
                    String::from_utf8_lossy(option)
                )))
            }
        }
    }
    if condition.no_ttl && (condition.has_ttl || condition.later || condition.sooner) {
        return Err(err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if condition.later && condition.sooner {
        return Err(err("GT and LT options at the same time are not compatible"));
    }
    let when = int(&args[2])?;
    let seconds = !name.starts_with('p');
    let relative = !name.ends_with("at");
    if seconds && !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
        return Err(invalid_expire(name));
    }
    let when = if seconds { when * 1000 } else { when };
    let base = match relative {
        true => i64::try_from(now_ms()).unwrap_or(i64::MAX),
        false => 0,
    };
    if when > i64::MAX - base {
        return Err(invalid_expire(name));
    }
    write(Command::Expire {
        key: key(args),
        when_ms: when,
        relative,
        condition,
    })
}

/// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`.
fn scan(args: &[Vec<u8>]) -> Result<Request, Reply> {
    let cursor = parse_cursor(&args[1]).ok_or_else(|| err("invalid cursor"))?;
    let (mut pattern, mut count, mut type_name) = (None, 10, None);
    let mut options = args[2..].iter();
    while let Some(option) = options.next() {
        let value = options.next().ok_or_else(syntax)?;
        match option.to_ascii_uppercase().as_slice() {
            b"MATCH" => pattern = Some(value.clone()),
            b"COUNT" => {
                count = int(value)?;
                if count < 1 {
                    return Err(syntax());
                }
            }
            b"TYPE" => type_name = Some(value.clone()),
            _ => return Err(syntax()),
        }
    }
    read(Read::Scan {
        cursor,
        // `*` matches everything: no need to match it.
        pattern: pattern.filter(|p| p != b"*"),
        count: count as u64,
        type_name,
    })
}

/// A cursor as Redis reads one (C's `strtoul`): an optional sign, then
/// decimal digits; a minus wraps around (`-1` is the largest cursor), and
/// the empty string is 0.
fn parse_cursor(arg: &[u8]) -> Option<u64> {
    if arg.is_empty() {
        return Some(0);
    }
    let (negative, digits) = match arg[0] {
        b'-' => (true, &arg[1..]),
        b'+' => (false, &arg[1..]),
        _ => (false, arg),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    Some(if negative { n.wrapping_neg() } else { n })
}

/// `COPY source destination [DB 0] [REPLACE]`: raftnode has one database.
fn copy(args: &[Vec<u8>]) -> Result<Request, Reply> {
    let mut replace = false;
    let mut options = args[3..].iter();
    while let Some(option) = options.next() {
        match option.to_ascii_uppercase().as_slice() {
            b"REPLACE" => replace = true,
            b"DB" => {
                let db = options.next().ok_or_else(syntax)?;
                match parse_int(db) {
                    Some(0) => {}
                    Some(_) => return Err(err("DB index is out of range")),
                    None => return Err(not_integer()),
                }
            }
            _ => return Err(syntax()),
        }
    }
    if args[1] == args[2] {
        return Err(err("source and destination objects are the same"));
    }
    write(Command::Copy {
        from: key(args),
        to: args[2].clone(),
        replace,
    })
}

/// The limits on what a client may send: keys (and patterns) of at most
/// [`MAX_KEY_BYTES`], values of at most [`MAX_VALUE_BYTES`], at most
/// [`MAX_KEYS`] keys.
fn check_sizes(name: &str, args: &[Vec<u8>], request: Request) -> Result<Request, Reply> {
    let (keys, values): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) = match &request {
        Request::Read(Read::Scan { pattern, .. }) => (pattern.iter().collect(), vec![]),
        Request::Read(Read::Keys { pattern }) => (vec![pattern], vec![]),
        Request::Read(Read::MGet { keys }) | Request::Read(Read::Exists { keys }) => {
            (keys.iter().collect(), vec![])
        }
        Request::Read(read) => (
            read.first_key().map(|_| &args[1]).into_iter().collect(),
            vec![],
        ),
        Request::Write(Command::Delete { keys }) => (keys.iter().collect(), vec![]),
        Request::Write(Command::MSet { pairs, .. }) => (
            pairs.iter().map(|(k, _)| k).collect(),
            pairs.iter().map(|(_, v)| v).collect(),
        ),
        Request::Write(Command::Set { key, value })
        | Request::Write(Command::SetWith { key, value, .. })
        | Request::Write(Command::Append { key, value }) => (vec![key], vec![value]),
        Request::Write(Command::Cas { key, new, .. }) => (vec![key], vec![new]),
        Request::Write(Command::Rename { from, to, .. })
        | Request::Write(Command::Copy { from, to, .. }) => (vec![from, to], vec![]),
        Request::Write(command) => (
            command.first_key().map(|_| &args[1]).into_iter().collect(),
            vec![],
        ),
    };
    if keys.len() > MAX_KEYS {
        return Err(err(&format!(
            "too many arguments ({} takes at most {MAX_KEYS} keys)",
            name.to_ascii_uppercase()
        )));
    }
    if let Some(key) = keys.iter().find(|k| k.len() > MAX_KEY_BYTES) {
        return Err(err(&format!(
            "key of {} bytes is over the {MAX_KEY_BYTES}-byte limit",
            key.len()
        )));
    }
    if let Some(value) = values.iter().find(|v| v.len() > MAX_VALUE_BYTES) {
        return Err(err(&format!(
            "value of {} bytes is over the {MAX_VALUE_BYTES}-byte limit",
            value.len()
        )));
    }
    Ok(request)
}

/// What a client is told of a write's outcome: exactly what Redis replies
/// to the command it stands for.
pub fn outcome_reply(outcome: Outcome) -> Reply {
    match outcome {
        Outcome::Done => Reply::ok(),
        Outcome::Deleted(n) => Reply::Integer(n as i64),
        Outcome::Swapped(swapped) => Reply::Integer(i64::from(swapped)),
        Outcome::Integer(n) => Reply::Integer(n),
        Outcome::Refused(why) => err(&why),
        // Its own prefix: unlike -ERR, it does not say "not applied".
        Outcome::SessionExpired(why) => Reply::Error(format!("SESSIONEXPIRED {why}")),
        Outcome::Value(Some(value)) => Reply::Bulk(value),
        Outcome::Value(None) => Reply::NullBulk,
        // A transaction's outcomes are nested no deeper than one level.
        Outcome::Multi(outcomes) => Reply::Array(outcomes.into_iter().map(outcome_reply).collect()),
        Outcome::Read(reply) => query_reply(reply),
    }
}

/// What a client is told of a read's answer.
pub fn query_reply(reply: QueryReply) -> Reply {
    let bulk = |value: Option<Vec<u8>>| value.map_or(Reply::NullBulk, Reply::Bulk);
    match reply {
        QueryReply::Value(value) => bulk(value),
        QueryReply::Values(values) => Reply::Array(values.into_iter().map(bulk).collect()),
        QueryReply::Integer(n) => Reply::Integer(n),
        QueryReply::Keys(keys) => Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
        QueryReply::Scan { cursor, keys } => Reply::Array(vec![
            Reply::Bulk(cursor.to_string().into_bytes()),
            Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
        ]),
        QueryReply::Status(status) => Reply::Simple(status),
        QueryReply::Refused(why) => err(&why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_read_as_strtoul_reads_them() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"+7"), Some(7));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b"18446744073709551616"[..],
            b"x",
            b" 1",
            b"1 ",
            b"+",
            b"-",
            b"1.5",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }
}
