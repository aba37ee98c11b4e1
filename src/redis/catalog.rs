//! The commands the client port knows, described the way Redis's `COMMAND`
//! describes its own: name, arity, flags, where the keys are, and ACL
//! categories.
//!
//! Cluster-mode clients depend on this: redis-py's `RedisCluster` reads the
//! `COMMAND` table when it starts and finds each command's key from its key
//! positions, to route the command by the key's hash slot. A command missing
//! here cannot be sent by such a client at all.
//!
//! Arity follows Redis: `n` means exactly `n` words including the name, `-n`
//! at least `n`. Key positions are `first`, `last` (`-1`: the last word) and
//! `step`; `0, 0, 0` means no keys.

use crate::redis::resp::Reply;

/// One command as `COMMAND INFO` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub name: &'static str,
    pub arity: i64,
    pub flags: &'static [&'static str],
    pub first_key: i64,
    pub last_key: i64,
    pub step: i64,
    pub categories: &'static [&'static str],
    /// How the command uses its keys (Redis's key-spec flags), if it has any.
    pub key_flags: &'static [&'static str],
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    categories: &'static [&'static str],
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: 0,
        last_key: 0,
        step: 0,
        categories,
        key_flags: &[],
    }
}

const fn keyed(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    (first_key, last_key, step): (i64, i64, i64),
    categories: &'static [&'static str],
    key_flags: &'static [&'static str],
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key,
        last_key,
        step,
        categories,
        key_flags,
    }
}

/// Every command, in the order `COMMAND` lists them. The flags and
/// categories are Redis 7.0's for the commands Redis has.
pub const COMMANDS: &[Spec] = &[
    keyed(
        "get",
        2,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@string", "@fast"],
        &["RO", "access"],
    ),
    keyed(
        "set",
        -3,
        &["write", "denyoom"],
        (1, 1, 1),
        &["@write", "@string", "@slow"],
        &["RW", "access", "update"],
    ),
    keyed(
        "del",
        -2,
        &["write"],
        (1, -1, 1),
        &["@keyspace", "@write", "@slow"],
        &["RM", "delete"],
    ),
    keyed(
        "cas",
        4,
        &["write", "denyoom"],
        (1, 1, 1),
        &["@write", "@string", "@slow"],
        &["RW", "access", "update"],
    ),
    keyed(
        "incr",
        2,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@string", "@fast"],
        &["RW", "access", "update"],
    ),
    keyed(
        "incrby",
        3,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@string", "@fast"],
        &["RW", "access", "update"],
    ),
    keyed(
        "decr",
        2,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@string", "@fast"],
        &["RW", "access", "update"],
    ),
    keyed(
        "decrby",
        3,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@string", "@fast"],
        &["RW", "access", "update"],
    ),
    keyed(
        "append",
        3,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@string", "@fast"],
        &["RW", "insert"],
    ),
    keyed(
        "mget",
        -2,
        &["readonly", "fast"],
        (1, -1, 1),
        &["@read", "@string", "@fast"],
        &["RO", "access"],
    ),
    keyed(
        "exists",
        -2,
        &["readonly", "fast"],
        (1, -1, 1),
        &["@keyspace", "@read", "@fast"],
        &["RO"],
    ),
    keyed(
        "touch",
        -2,
        &["readonly", "fast"],
        (1, -1, 1),
        &["@keyspace", "@read", "@fast"],
        &["RO"],
    ),
    spec(
        "dbsize",
        1,
        &["readonly", "fast"],
        &["@keyspace", "@read", "@fast"],
    ),
    spec(
        "keys",
        2,
        &["readonly"],
        &["@keyspace", "@read", "@slow", "@dangerous"],
    ),
    spec("scan", -2, &["readonly"], &["@keyspace", "@read", "@slow"]),
    keyed(
        "type",
        2,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@keyspace", "@read", "@fast"],
        &["RO"],
    ),
    spec(
        "randomkey",
        1,
        &["readonly"],
        &["@keyspace", "@read", "@slow"],
    ),
    keyed(
        "ttl",
        2,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@keyspace", "@read", "@fast"],
        &["RO", "access"],
    ),
    keyed(
        "pttl",
        2,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@keyspace", "@read", "@fast"],
        &["RO", "access"],
    ),
    keyed(
        "expiretime",
        2,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@keyspace", "@read", "@fast"],
        &["RO", "access"],
    ),
    keyed(
        "pexpiretime",
        2,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@keyspace", "@read", "@fast"],
        &["RO", "access"],
    ),
    keyed(
        "strlen",
        2,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@string", "@fast"],
        &["RO"],
    ),
    keyed(
        "getrange",
        4,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@string", "@slow"],
        &["RO", "access"],
    ),
    keyed(
        "getex",
        -2,
        &["write", "fast"],
        (1, 1, 1),
        &["@write", "@string", "@fast"],
        &["RW", "access", "update"],
    ),
    keyed(
        "setnx",
        3,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@string", "@fast"],
        &["OW", "insert"],
    ),
    keyed(
        "setex",
        4,
        &["write", "denyoom"],
        (1, 1, 1),
        &["@write", "@string", "@slow"],
        &["OW", "update"],
    ),
    keyed(
        "psetex",
        4,
        &["write", "denyoom"],
        (1, 1, 1),
        &["@write", "@string", "@slow"],
        &["OW", "update"],
    ),
    keyed(
        "getset",
        3,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@string", "@fast"],
        &["RW", "access", "update"],
    ),
    keyed(
        "getdel",
        2,
        &["write", "fast"],
        (1, 1, 1),
        &["@write", "@string", "@fast"],
        &["RW", "access", "delete"],
    ),
    keyed(
        "mset",
        -3,
        &["write", "denyoom"],
        (1, -1, 2),
        &["@write", "@string", "@slow"],
        &["OW", "update"],
    ),
    keyed(
        "msetnx",
        -3,
        &["write", "denyoom"],
        (1, -1, 2),
        &["@write", "@string", "@slow"],
        &["OW", "insert"],
    ),
    keyed(
        "setrange",
        4,
        &["write", "denyoom"],
        (1, 1, 1),
        &["@write", "@string", "@slow"],
        &["RW", "update"],
    ),
    keyed(
        "incrbyfloat",
        3,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@string", "@fast"],
        &["RW", "access", "update"],
    ),
    keyed(
        "unlink",
        -2,
        &["write", "fast"],
        (1, -1, 1),
        &["@keyspace", "@write", "@fast"],
        &["RM", "delete"],
    ),
    keyed(
        "rename",
        3,
        &["write"],
        (1, 2, 1),
        &["@keyspace", "@write", "@slow"],
        &["RW", "access", "delete"],
    ),
    keyed(
        "renamenx",
        3,
        &["write", "fast"],
        (1, 2, 1),
        &["@keyspace", "@write", "@fast"],
        &["RW", "access", "delete"],
    ),
    keyed(
        "copy",
        -3,
        &["write", "denyoom"],
        (1, 2, 1),
        &["@keyspace", "@write", "@slow"],
        &["RO", "access"],
    ),
    spec(
        "flushall",
        -1,
        &["write"],
        &["@keyspace", "@write", "@slow", "@dangerous"],
    ),
    spec(
        "flushdb",
        -1,
        &["write"],
        &["@keyspace", "@write", "@slow", "@dangerous"],
    ),
    keyed(
        "expire",
        -3,
        &["write", "fast"],
        (1, 1, 1),
        &["@keyspace", "@write", "@fast"],
        &["RW", "update"],
    ),
    keyed(
        "pexpire",
        -3,
        &["write", "fast"],
        (1, 1, 1),
        &["@keyspace", "@write", "@fast"],
        &["RW", "update"],
    ),
    keyed(
        "expireat",
        -3,
        &["write", "fast"],
        (1, 1, 1),
        &["@keyspace", "@write", "@fast"],
        &["RW", "update"],
    ),
    keyed(
        "pexpireat",
        -3,
        &["write", "fast"],
        (1, 1, 1),
        &["@keyspace", "@write", "@fast"],
        &["RW", "update"],
    ),
    keyed(
        "persist",
        2,
        &["write", "fast"],
        (1, 1, 1),
        &["@keyspace", "@write", "@fast"],
        &["RW", "update"],
    ),
    // SEQ's key is inside the command it wraps; clients that route by key
    // send the wrapped command's slot themselves.
    spec("seq", -3, &["write"], &["@write", "@slow"]),
    spec("ping", -1, &["fast"], &["@fast", "@connection"]),
    spec("echo", 2, &["fast"], &["@fast", "@connection"]),
    spec("info", -1, &["loading", "stale"], &["@slow", "@dangerous"]),
    spec("help", 1, &["loading", "stale"], &["@slow"]),
    spec(
        "bgsave",
        -1,
        &["noscript", "no_async_loading"],
        &["@admin", "@slow", "@dangerous"],
    ),
    spec(
        "lastsave",
        1,
        &["loading", "stale", "fast"],
        &["@admin", "@fast", "@dangerous"],
    ),
    // RedisRaft's administration commands. Like CLUSTER's subcommands that
    // change the cluster, they are admin commands and never run in scripts.
    spec(
        "raft.node",
        -2,
        &["admin", "noscript"],
        &["@admin", "@slow", "@dangerous"],
    ),
    spec(
        "raft.nodes",
        1,
        &["admin", "noscript", "loading", "stale"],
        &["@admin", "@slow", "@dangerous"],
    ),
    spec(
        "raft.transfer_leader",
        -1,
        &["admin", "noscript"],
        &["@admin", "@slow", "@dangerous"],
    ),
    spec(
        "quit",
        -1,
        &[
            "allow_busy",
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
        ],
        &["@fast", "@connection"],
    ),
    spec(
        "hello",
        -1,
        &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy",
        ],
        &["@fast", "@connection"],
    ),
    spec(
        "auth",
        -2,
        &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy",
        ],
        &["@fast", "@connection"],
    ),
    spec(
        "client",
        -2,
        &["noscript", "loading", "stale"],
        &["@slow", "@connection"],
    ),
    spec(
        "select",
        2,
        &["loading", "stale", "fast"],
        &["@fast", "@connection"],
    ),
    spec(
        "command",
        -1,
        &["loading", "stale"],
        &["@slow", "@connection"],
    ),
    spec(
        "config",
        -2,
        &["admin", "noscript", "loading", "stale"],
        &["@admin", "@slow", "@dangerous"],
    ),
    spec("cluster", -2, &[], &["@slow"]),
    spec(
        "debug",
        -2,
        &["admin", "noscript", "loading", "stale"],
        &["@admin", "@slow", "@dangerous"],
    ),
    spec(
        "multi",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        &["@fast", "@transaction"],
    ),
    spec(
        "exec",
        1,
        &["noscript", "loading", "stale", "skip_slowlog"],
        &["@slow", "@transaction"],
    ),
    spec(
        "discard",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        &["@fast", "@transaction"],
    ),
    spec(
        "unwatch",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        &["@fast", "@transaction"],
    ),
    spec(
        "readonly",
        1,
        &["loading", "stale", "fast"],
        &["@fast", "@connection"],
    ),
    spec(
        "readwrite",
        1,
        &["loading", "stale", "fast"],
        &["@fast", "@connection"],
    ),
];

/// The command named `name` (any case).
pub fn find(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

impl Spec {
    /// Whether a request of `words` words (the name included) has the
    /// command's arity.
    pub fn takes(&self, words: usize) -> bool {
        let n = words as i64;
        match self.arity {
            a if a >= 0 => n == a,
            a => n >= -a,
        }
    }

    /// The ten-element entry of `COMMAND` / `COMMAND INFO`: name, arity,
    /// flags, first key, last key, step, ACL categories, tips, key specs,
    /// subcommands. Flags, categories, tips, key specs and subcommands are
    /// sets, as Redis 7.0 sends them.
    pub fn reply(&self) -> Reply {
        let statuses = |words: &[&str]| {
            Reply::Set(words.iter().map(|w| Reply::Simple(w.to_string())).collect())
        };
        Reply::Array(vec![
            Reply::Bulk(self.name.as_bytes().to_vec()),
            Reply::Integer(self.arity),
            statuses(self.flags),
            Reply::Integer(self.first_key),
            Reply::Integer(self.last_key),
            Reply::Integer(self.step),
            statuses(self.categories),
            Reply::Set(Vec::new()),
            Reply::Set(self.key_spec().into_iter().collect()),
            Reply::Set(Vec::new()),
        ])
    }

    /// Redis's key specification: where the first key is (an index), and how
    /// the rest follow it (a range).
    fn key_spec(&self) -> Option<Reply> {
        if self.first_key == 0 {
            return None;
        }
        let bulk = |s: &str| Reply::Bulk(s.as_bytes().to_vec());
        let flags = Reply::Set(
            self.key_flags
                .iter()
                .map(|f| Reply::Simple(f.to_string()))
                .collect(),
        );
        let last = if self.last_key < 0 { self.last_key } else { 0 };
        Some(Reply::Map(vec![
            (bulk("flags"), flags),
            (
                bulk("begin_search"),
                Reply::Map(vec![
                    (bulk("type"), bulk("index")),
                    (
                        bulk("spec"),
                        Reply::Map(vec![(bulk("index"), Reply::Integer(self.first_key))]),
                    ),
                ]),
            ),
            (
                bulk("find_keys"),
                Reply::Map(vec![
                    (bulk("type"), bulk("range")),
                    (
                        bulk("spec"),
                        Reply::Map(vec![
                            (bulk("lastkey"), Reply::Integer(last)),
                            (bulk("keystep"), Reply::Integer(self.step)),
                            (bulk("limit"), Reply::Integer(0)),
                        ]),
                    ),
                ]),
            ),
        ]))
    }

    /// The keys in `args` (a whole command, name first), by the key
    /// positions.
    pub fn keys<'a>(&self, args: &'a [Vec<u8>]) -> Vec<&'a [u8]> {
        if self.first_key <= 0 || self.step <= 0 {
            return Vec::new();
        }
        let last = match self.last_key {
            n if n < 0 => args.len() as i64 + n,
            n => n,
        };
        (self.first_key..=last)
            .step_by(self.step as usize)
            .filter_map(|i| args.get(i as usize).map(Vec::as_slice))
            .collect()
    }
}

/// `COMMAND`, `COMMAND COUNT`, `COMMAND LIST`, `COMMAND INFO [name ...]`,
/// `COMMAND DOCS [name ...]` (no docs: an empty map) and
/// `COMMAND GETKEYS command [arg ...]`.
pub fn command(args: &[Vec<u8>]) -> Reply {
    let Some(sub) = args.get(1) else {
        return Reply::Array(COMMANDS.iter().map(Spec::reply).collect());
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_uppercase();
    match sub.as_str() {
        "COUNT" if args.len() == 2 => Reply::Integer(COMMANDS.len() as i64),
        "LIST" if args.len() == 2 => Reply::Array(
            COMMANDS
                .iter()
                .map(|s| Reply::Bulk(s.name.as_bytes().to_vec()))
                .collect(),
        ),
        "INFO" if args.len() == 2 => Reply::Array(COMMANDS.iter().map(Spec::reply).collect()),
        "INFO" => Reply::Array(
            args[2..]
                .iter()
                .map(|name| find(name).map_or(Reply::NullBulk, Spec::reply))
                .collect(),
        ),
        "DOCS" => Reply::Map(Vec::new()),
        // Redis wants at least one argument after the command's name.
        "GETKEYS" if args.len() >= 4 => getkeys(&args[2..]),
        "COUNT" | "LIST" | "GETKEYS" => {
            Reply::wrong_arity(&format!("command|{}", sub.to_ascii_lowercase()))
        }
        _ => Reply::error(format!(
            "unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(&args[1])
        )),
    }
}

fn getkeys(command: &[Vec<u8>]) -> Reply {
    let Some(spec) = find(&command[0]) else {
        return Reply::error("Invalid command specified");
    };
    if !spec.takes(command.len()) {
        return Reply::error("Invalid number of arguments specified for command");
    }
    let keys = spec.keys(command);
    if keys.is_empty() {
        return Reply::error("The command has no key arguments");
    }
    Reply::Array(keys.iter().map(|k| Reply::Bulk(k.to_vec())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::resp::Protocol;

    fn words(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// Byte for byte what redis-server 7.0.15 answers to `COMMAND INFO get`
    /// on a RESP3 connection.
    #[test]
    fn command_info_get_matches_redis() {
        let expected = "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n\
            ~3\r\n+@read\r\n+@string\r\n+@fast\r\n~0\r\n~1\r\n%3\r\n$5\r\nflags\r\n~2\r\n+RO\r\n+access\r\n\
            $12\r\nbegin_search\r\n%2\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n%1\r\n$5\r\nindex\r\n:1\r\n\
            $9\r\nfind_keys\r\n%2\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n%3\r\n$7\r\nlastkey\r\n:0\r\n\
            $7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n~0\r\n";
        let got = command(&words(&["COMMAND", "INFO", "get"])).to_bytes(Protocol::Resp3);
        assert_eq!(String::from_utf8_lossy(&got), expected);
    }

    #[test]
    fn every_command_is_listed_once_and_found_by_name() {
        for (i, a) in COMMANDS.iter().enumerate() {
            assert!(
                COMMANDS[i + 1..].iter().all(|b| b.name != a.name),
                "{} twice",
                a.name
            );
            assert_eq!(find(a.name.to_ascii_uppercase().as_bytes()), Some(a));
        }
        assert_eq!(
            command(&words(&["COMMAND", "COUNT"])),
            Reply::Integer(COMMANDS.len() as i64)
        );
    }

    #[test]
    fn key_positions_find_the_keys() {
        let keys = |list: &[&str]| {
            let args = words(list);
            let spec = find(&args[0]).unwrap();
            spec.keys(&args)
                .iter()
                .map(|k| k.to_vec())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&["GET", "k"]), words(&["k"]));
        assert_eq!(keys(&["SET", "k", "v"]), words(&["k"]));
        assert_eq!(keys(&["DEL", "a", "b", "c"]), words(&["a", "b", "c"]));
        assert_eq!(keys(&["CAS", "k", "old", "new"]), words(&["k"]));
        assert!(keys(&["PING"]).is_empty());
        assert_eq!(
            command(&words(&["COMMAND", "GETKEYS", "DEL", "x", "y"])),
            Reply::Array(vec![Reply::Bulk(b"x".to_vec()), Reply::Bulk(b"y".to_vec())])
        );
        assert_eq!(
            command(&words(&["COMMAND", "GETKEYS", "PING", "x"])),
            Reply::error("The command has no key arguments")
        );
        assert_eq!(
            command(&words(&["COMMAND", "GETKEYS", "GET"])),
            Reply::wrong_arity("command|getkeys")
        );
        assert_eq!(
            command(&words(&["COMMAND", "INFO", "nope"])),
            Reply::Array(vec![Reply::NullBulk])
        );
    }
}
