//! The client commands: what each one means and how it is answered.
//!
//! The commands on the store are parsed in [`crate::redis::store`]; the
//! README's command table lists every command, grouped as Redis groups
//! them. Here: where each runs.
//!
//! * Writes (SET, DEL, EXPIRE, ...) go through the log on the leader and
//!   are answered once applied; `SEQ n` makes one exactly-once.
//! * Reads (GET, MGET, SCAN, TTL, ...) are served by the leader once it has
//!   confirmed it leads (ReadIndex or its lease), at its clock.
//! * `MULTI` … `EXEC` applies the queued commands as one log entry
//!   ([`crate::redis::transaction`]); reads inside go through the log too.
//! * The connection's, the node's and the cluster's commands (`PING`,
//!   `INFO`, `CLUSTER`, `RAFT.*`, `DEBUG DIGEST`, ...) run on any node.
//!
//! Errors say whether the request took effect. `-MOVED <slot> host:port` (not
//! the leader; that is its client address, and the slot is the key's hash
//! slot, 0 for commands without a key) and `-TRYAGAIN` (no leader known, even
//! after waiting up to two election timeouts for one) mean it did not;
//! `-TIMEOUT` means a write was proposed but not seen committed in time, so
//! it may or may not take effect — never a definite error when the
//! outcome is unknown. `-SESSIONEXPIRED` answers a `SEQ` write of a client
//! whose session expired: not applied now, but an earlier attempt may have
//! been, so its outcome is unknown too ([`crate::kv::session`]). `-ERR` is
//! for requests that are wrong in themselves.
//!
//! The connection preambles Redis clients send (`HELLO`, `AUTH`,
//! `CLIENT SETNAME`/`SETINFO`, `SELECT 0`, `COMMAND [DOCS]`, `CONFIG GET`,
//! `READONLY`) are answered in [`crate::redis::connection`], the way Redis
//! answers a client it cannot offer more, so redis-cli, redis-benchmark and
//! client libraries work unchanged. A connection speaks RESP2 until it sends
//! `HELLO 3`; the replies here are built once and encoded in whichever
//! protocol the connection speaks.

use crate::kv::{Command, Outcome};
use crate::kv::{KeyValue, KvNode, PendingRead, PendingWrite};
use crate::node::error::Error;
use crate::node::BgsaveError;
use crate::redis::catalog;
use crate::redis::cluster::{self, key_slot};
use crate::redis::connection;
use crate::redis::info;
use crate::redis::leader::on_leader;
use crate::redis::membership;
use crate::redis::port::{Connection, Port};
use crate::redis::resp::Reply;
use crate::redis::store::{self, outcome_reply, query_reply, Request};
use crate::redis::transaction::{self, Step};

/// The largest value a client may write: the store's own limit.
pub use crate::kv::MAX_VALUE_BYTES;
pub use crate::redis::store::{MAX_DEL_KEYS, MAX_KEYS, MAX_KEY_BYTES};

/// What the connection should do after sending a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Continue,
    Close,
}

const HELP: &[&str] = &[
    "PING [message] -- +PONG, or the message",
    "ECHO message -- the message",
    "GET key -- the value, or nil (leader)",
    "MGET key [key ...] -- the values, nil for missing keys (leader)",
    "SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL] -- +OK once committed (leader)",
    "SETNX key value -- 1 if set, 0 if the key existed (leader)",
    "SETEX key seconds value -- SET with a time to live (leader)",
    "PSETEX key milliseconds value -- SET with a time to live (leader)",
    "GETSET key value -- SET; the old value (leader)",
    "GETDEL key -- the value; the key is deleted (leader)",
    "GETEX key [EX s|PX ms|EXAT t|PXAT t|PERSIST] -- the value; its time to live changed (leader)",
    "MSET key value [key value ...] -- +OK; all set in one entry (leader)",
    "MSETNX key value [key value ...] -- 1 if all were set, 0 if any existed (leader)",
    "STRLEN key -- the value's length (leader)",
    "GETRANGE key start end -- part of the value (leader)",
    "SETRANGE key offset value -- overwrite part of the value; the new length (leader)",
    "DEL key [key ...] -- how many keys existed (leader)",
    "UNLINK key [key ...] -- DEL (leader)",
    "CAS key expected new -- 1 if the value was expected and is now new, else 0 (leader)",
    "INCR key -- add one to an integer value; the new value (leader)",
    "INCRBY key increment -- add to an integer value; the new value (leader)",
    "DECR key -- subtract one from an integer value; the new value (leader)",
    "DECRBY key decrement -- subtract from an integer value; the new value (leader)",
    "INCRBYFLOAT key increment -- add to a number; the new value (leader)",
    "APPEND key value -- append to a value; the new length (leader)",
    "EXISTS key [key ...] -- how many of the keys exist (leader)",
    "TOUCH key [key ...] -- how many of the keys exist (leader)",
    "TYPE key -- string, or none (leader)",
    "DBSIZE -- how many keys there are (leader)",
    "KEYS pattern -- the keys matching a glob pattern (leader)",
    "SCAN cursor [MATCH pattern] [COUNT n] [TYPE type] -- the next cursor and some keys (leader)",
    "RANDOMKEY -- a key, or nil (leader)",
    "RENAME key newkey -- +OK; the value and its time to live move (leader)",
    "RENAMENX key newkey -- 1 if renamed, 0 if newkey existed (leader)",
    "COPY source destination [DB 0] [REPLACE] -- 1 if copied (leader)",
    "FLUSHALL [ASYNC|SYNC] -- +OK; every key is deleted (leader)",
    "FLUSHDB [ASYNC|SYNC] -- FLUSHALL (leader)",
    "EXPIRE key seconds [NX|XX|GT|LT] -- 1 if the time to live was set (leader)",
    "PEXPIRE key milliseconds [NX|XX|GT|LT] -- 1 if the time to live was set (leader)",
    "EXPIREAT key unix-seconds [NX|XX|GT|LT] -- 1 if the deadline was set (leader)",
    "PEXPIREAT key unix-milliseconds [NX|XX|GT|LT] -- 1 if the deadline was set (leader)",
    "TTL key -- seconds left; -1 without a time to live, -2 without the key (leader)",
    "PTTL key -- milliseconds left (leader)",
    "EXPIRETIME key -- the deadline in Unix seconds (leader)",
    "PEXPIRETIME key -- the deadline in Unix milliseconds (leader)",
    "PERSIST key -- 1 if a time to live was removed (leader)",
    "CLIENT ID id -- name this client (a random 64-bit number) for SEQ",
    "SEQ n command [arg ...] -- a write with sequence number n: retrying n never applies it twice",
    "INFO [section ...] -- this node: server, clients, stats, raft, cluster, keyspace",
    "CLUSTER SLOTS|SHARDS|NODES|MYID|INFO|KEYSLOT key -- the cluster as Redis Cluster clients see it",
    "HELLO [2|3] -- switch to RESP2 or RESP3",
    "MULTI -- start a transaction; commands answer QUEUED",
    "EXEC -- run the queued commands atomically, as one log entry (leader)",
    "DISCARD -- drop the queued commands",
    "UNWATCH -- +OK (WATCH is not supported: use CAS)",
    "DEBUG DIGEST -- a digest of this node's applied state (keys, values, deadlines, sessions)",
    "RAFT.NODE ADD id raft-addr client-addr [LEARNER] -- add a member: a learner, promoted once caught up unless LEARNER (leader)",
    "RAFT.NODE PROMOTE id -- make a learner a voter (leader)",
    "RAFT.NODE REMOVE id -- remove a member, even the leader itself (leader)",
    "RAFT.NODES -- the members as this node sees them, one line each",
    "RAFT.TRANSFER_LEADER [id] -- hand leadership to id, or the most up-to-date voter (leader)",
    "BGSAVE -- snapshot this node's state in the background, then compact its log",
    "LASTSAVE -- Unix time of this node's last snapshot (taken or installed), 0 if none",
    "HELP -- this list",
    "QUIT -- close the connection",
];

/// Executes one request.
pub fn execute(port: &Port, conn: &mut Connection, args: &[Vec<u8>]) -> (Reply, After) {
    port.stats.command();
    execute_in(port, conn, args, None)
}

/// A request of a pipelining client started and not answered yet
/// ([`start`]); [`finish`] answers it.
pub struct Started<'a> {
    op: Op<'a>,
    args: Vec<Vec<u8>>,
}

enum Op<'a> {
    Write(PendingWrite<'a>),
    Read(PendingRead<'a>),
}

impl Started<'_> {
    /// The request's size, as its client sent it (less framing).
    pub fn bytes(&self) -> usize {
        self.args.iter().map(Vec::len).sum()
    }

    /// Whether it is a read, rather than a write.
    pub fn is_read(&self) -> bool {
        matches!(self.op, Op::Read(_))
    }
}

/// Starts `args` and returns at once, if it is a plain write on the store
/// (`SET`, `DEL`, `INCR` ... outside a transaction) that this node, the
/// leader, took, or a `GET` it began to confirm. Anything else comes back
/// to be run with [`execute`], as does a request the node refused (it is
/// then redirected or waited for there, exactly as if it had come alone).
///
/// A connection starts a pipelined burst's writes one after the other and
/// only then waits for the first, so the whole burst shares one fsync and
/// one round trip instead of paying for one each; likewise its reads share
/// one heartbeat round. It answers them in order with [`finish`], and never
/// has reads and writes started at once (see `server.rs`), so every request
/// of a burst sees exactly the writes before it.
///
/// `reads`, if set, says which kind may start: a read (`true`) or a write
/// (`false`), as those in flight are; one of the other kind comes back
/// unstarted. The kind is what the request parses into, not its name
/// (GETEX is a read without options and a write with one).
pub fn start<'a>(
    port: &'a Port,
    conn: &Connection,
    args: Vec<Vec<u8>>,
    reads: Option<bool>,
) -> Result<Started<'a>, Vec<Vec<u8>>> {
    if conn.transaction.is_some() {
        return Err(args);
    }
    let Some(name) = args.first() else {
        return Err(args);
    };
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let request = match store::parse(&name, &args) {
        Some(Ok(request)) => request,
        Some(Err(_)) | None => return Err(args),
    };
    let is_read = matches!(request, Request::Read(_));
    if reads.is_some_and(|reads| reads != is_read) {
        return Err(args);
    }
    let started = match request {
        Request::Read(read) => port.node.start_lookup(read).map(Op::Read),
        Request::Write(command) => port.node.start_write(command).map(Op::Write),
    };
    match started {
        Ok(op) => {
            port.stats.command();
            Ok(Started { op, args })
        }
        Err(_) => Err(args),
    }
}

/// Waits for a [`start`]ed request and answers it. A write whose entry lost
/// its place to another leader's (so it never applied), or a read whose
/// leadership was lost before it was confirmed, is run again the ordinary
/// way; one not seen through in time is `-TIMEOUT`, as it would have been
/// alone.
pub fn finish(port: &Port, conn: &mut Connection, started: Started) -> (Reply, After) {
    let is_read = started.is_read();
    let reply = match started.op {
        Op::Write(write) => write.wait().map(outcome_reply),
        Op::Read(read) => read.wait_reply().map(query_reply),
    };
    match reply {
        Ok(reply) => (reply, After::Continue),
        Err(Error::NotLeader { .. }) => execute_in(port, conn, &started.args, None),
        Err(e) if is_read => (
            Reply::Error(format!("TIMEOUT read not confirmed: {e}")),
            After::Continue,
        ),
        Err(e) => (Reply::Error(format!("TIMEOUT {e}")), After::Continue),
    }
}

/// Executes a request; `seq` is set for the command of a `SEQ n ...`.
fn execute_in(
    port: &Port,
    conn: &mut Connection,
    args: &[Vec<u8>],
    seq: Option<u64>,
) -> (Reply, After) {
    let Some(name) = args.first() else {
        return (err("empty command"), After::Continue);
    };
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let node = &port.node;
    // Writes go through here, wrapped in the session when SEQ asked for one.
    let session = conn.session;
    let submit = |command: Command| -> Result<Outcome, Error> {
        match (seq, session) {
            (Some(seq), Some(client)) => node.write(Command::Session {
                client,
                seq,
                command: Box::new(command),
            }),
            _ => node.write(command),
        }
    };
    // Inside MULTI nearly everything is queued; EXEC runs the queue.
    let max_bytes = node.config().max_command_bytes();
    let build = || store_command(&name, args);
    match transaction::step(&mut conn.transaction, &name, args, seq, max_bytes, build) {
        Step::Run => {}
        Step::Answer(reply) => return (reply, After::Continue),
        Step::Refuse => return (invalid(&name, args), After::Continue),
        Step::Exec(queued) => {
            let write = |multi: Command| {
                let slot = multi.first_key().map_or(0, key_slot);
                on_leader(node, slot, "", || submit(multi.clone()))
            };
            return (
                transaction::exec(queued, write, outcome_reply),
                After::Continue,
            );
        }
    }
    if let Some(reply) = key_value(node, &name, args, submit) {
        return (reply, After::Continue);
    }
    match name.as_str() {
        "SEQ" if seq.is_some() => (err("SEQ cannot be nested"), After::Continue),
        "SEQ" if args.len() >= 3 => sequenced(port, conn, args),
        "QUIT" => (Reply::ok(), After::Close),
        _ => (server(port, conn, &name, args), After::Continue),
    }
}

/// The commands on the store: reads and writes, each with its arity. `None`
/// if `name` with this many arguments is not one of them.
fn key_value(
    node: &KvNode,
    name: &str,
    args: &[Vec<u8>],
    submit: impl Fn(Command) -> Result<Outcome, Error>,
) -> Option<Reply> {
    let reply = match store::parse(name, args)? {
        Err(refused) => refused,
        Ok(Request::Read(read)) => lookup(node, read),
        Ok(Request::Write(command)) => write(node, &command, || submit(command.clone())),
    };
    Some(reply)
}

/// A request for the store as the [`Command`] it stands for inside a
/// transaction (see [`store::parse`]): its reads go through the log with
/// the rest, GET as [`Command::Get`] and the others as [`Command::Read`].
fn store_command(name: &str, args: &[Vec<u8>]) -> Option<Result<Command, Reply>> {
    Some(store::parse(name, args)?.map(|request| match request {
        Request::Write(command) => command,
        Request::Read(crate::kv::Read::Get { key }) => Command::Get { key },
        Request::Read(read) => Command::Read(read),
    }))
}

/// Everything that is not about the store: the connection, the node and the
/// cluster; then arity errors and unknown commands.
fn server(port: &Port, conn: &mut Connection, name: &str, args: &[Vec<u8>]) -> Reply {
    match name {
        "PING" => match args.len() {
            1 => Reply::Simple("PONG".into()),
            2 => Reply::Bulk(args[1].clone()),
            _ => wrong_arity("ping"),
        },
        "ECHO" if args.len() == 2 => Reply::Bulk(args[1].clone()),
        "INFO" => Reply::Verbatim(info::info(port, &args[1..])),
        "CLUSTER" => cluster::command(&port.node, args),
        "DEBUG" => debug(&port.node, args),
        "BGSAVE" => bgsave(&port.node, args),
        "RAFT.NODE" => membership::raft_node(&port.node, args),
        "RAFT.NODES" => membership::raft_nodes(&port.node, args),
        "RAFT.TRANSFER_LEADER" => membership::transfer_leader(&port.node, args),
        "LASTSAVE" if args.len() == 1 => {
            Reply::Integer(port.node.snapshot_status().last_save_unix as i64)
        }
        "HELP" if args.len() == 1 => {
            Reply::Array(HELP.iter().map(|l| Reply::Simple(l.to_string())).collect())
        }
        "HELLO" => connection::hello(port, conn, args),
        "AUTH" => connection::auth(args),
        "CLIENT" => connection::client(conn, args),
        "SELECT" if args.len() == 2 => match args[1].as_slice() {
            b"0" => Reply::ok(),
            _ => err("DB index is out of range"),
        },
        "COMMAND" => catalog::command(args),
        "CONFIG" => connection::config(args),
        // Cluster clients send READONLY before reading from a replica; reads
        // still go to the leader (followers answer MOVED), so both are no-ops.
        "READONLY" | "READWRITE" if args.len() == 1 => Reply::ok(),
        _ => invalid(name, args),
    }
}

/// The error for a request no command takes: a known name with the wrong
/// number of arguments, or an unknown one.
fn invalid(name: &str, args: &[Vec<u8>]) -> Reply {
    match catalog::find(name.as_bytes()) {
        Some(spec) => wrong_arity(spec.name),
        None => unknown(args),
    }
}

fn err(msg: &str) -> Reply {
    Reply::Error(format!("ERR {msg}"))
}

fn wrong_arity(name: &str) -> Reply {
    Reply::wrong_arity(name)
}

/// `BGSAVE [SCHEDULE]`: a snapshot of this node's state, written in the
/// background (§7); the log before it is then compacted.
fn bgsave(node: &KvNode, args: &[Vec<u8>]) -> Reply {
    match args {
        [_] => {}
        [_, schedule] if schedule.eq_ignore_ascii_case(b"SCHEDULE") => {}
        _ => return err("syntax error"),
    }
    match node.bgsave() {
        Ok(()) => Reply::Simple("Background saving started".into()),
        Err(BgsaveError::InProgress) => err("Background save already in progress"),
        Err(BgsaveError::ShutDown) => err("the node is shutting down"),
    }
}

/// `DEBUG DIGEST`: the digest of this node's applied state, as it is now
/// (a local read: replicas at the same applied index must agree).
fn debug(node: &KvNode, args: &[Vec<u8>]) -> Reply {
    match args {
        [_] => wrong_arity("debug"),
        [_, sub] if sub.eq_ignore_ascii_case(b"DIGEST") => {
            Reply::Simple(node.with_state(|kv| kv.digest()))
        }
        [_, sub, ..] => err(&format!(
            "unknown subcommand or wrong number of arguments for '{}'. Try DEBUG HELP.",
            String::from_utf8_lossy(sub)
        )),
        [] => wrong_arity("debug"),
    }
}

fn unknown(args: &[Vec<u8>]) -> Reply {
    let mut msg = format!(
        "unknown command '{}', with args beginning with:",
        String::from_utf8_lossy(&args[0])
    );
    for arg in args.iter().skip(1).take(8) {
        msg.push_str(&format!(" '{}'", String::from_utf8_lossy(arg)));
    }
    err(&msg)
}

/// `SEQ n command ...`: the command's write, applied at most once for this
/// client and `n`. Reads pass through unchanged (they are naturally
/// idempotent).
fn sequenced(port: &Port, conn: &mut Connection, args: &[Vec<u8>]) -> (Reply, After) {
    let seq = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&n| n > 0);
    let Some(seq) = seq else {
        return (
            err("SEQ needs a sequence number from 1 up"),
            After::Continue,
        );
    };
    if conn.session.is_none() {
        return (
            err("SEQ needs a client id first: CLIENT ID <id>"),
            After::Continue,
        );
    }
    execute_in(port, conn, &args[2..], Some(seq))
}

/// A linearizable read, served by the leader after it has confirmed it still
/// leads (ReadIndex, or its lease). A node that cannot confirm that never
/// answers with a value.
fn lookup(node: &KvNode, read: crate::kv::Read) -> Reply {
    let slot = read.first_key().map_or(0, key_slot);
    match on_leader(node, slot, "read not confirmed: ", || {
        node.lookup(read.clone())
    }) {
        Ok(reply) => query_reply(reply),
        Err(reply) => reply,
    }
}

/// Runs `op`, the write of `command`, on the leader.
fn write(node: &KvNode, command: &Command, op: impl Fn() -> Result<Outcome, Error>) -> Reply {
    let slot = command.first_key().map_or(0, key_slot);
    match on_leader(node, slot, "", op) {
        Ok(outcome) => outcome_reply(outcome),
        Err(reply) => reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command added to HELP must also be placed inside MULTI: queued, or
    /// refused with a clear error (listed in `transaction::NOT_QUEUEABLE`)
    /// rather than called unknown. Each is tried with HELP's own arguments.
    #[test]
    fn every_command_in_help_is_queued_or_clearly_refused_inside_multi() {
        for line in HELP {
            let synopsis = line.split(" -- ").next().unwrap_or(line);
            let args: Vec<Vec<u8>> = synopsis
                .split_whitespace()
                .filter(|word| !word.starts_with('[') && !word.ends_with(']'))
                .map(|word| word.as_bytes().to_vec())
                .collect();
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            let mut state = Some(transaction::Transaction::default());
            let build = || store_command(&name, &args);
            let step = transaction::step(&mut state, &name, &args, None, 1 << 20, build);
            // Refuse is for unknown commands and wrong arities only.
            assert_ne!(step, Step::Refuse, "{line}");
        }
    }

    /// `COMMAND` must describe every command HELP lists, or cluster clients
    /// (which route by that table) cannot send it.
    #[test]
    fn every_command_in_help_is_in_the_command_table() {
        for line in HELP {
            let name = line.split_whitespace().next().unwrap_or(line);
            assert!(catalog::find(name.as_bytes()).is_some(), "{line}");
        }
    }

    #[test]
    fn store_commands_are_built_with_their_arity_and_limits() {
        let args = |line: &str| -> Vec<Vec<u8>> {
            line.split_whitespace()
                .map(|a| a.as_bytes().to_vec())
                .collect()
        };
        let build = |line: &str| store_command(line.split(' ').next().unwrap_or(""), &args(line));
        assert_eq!(
            build("GET k"),
            Some(Ok(Command::Get { key: b"k".to_vec() }))
        );
        assert_eq!(
            build("DEL a b"),
            Some(Ok(Command::Delete {
                keys: vec![b"a".to_vec(), b"b".to_vec()]
            }))
        );
        assert_eq!(build("GET"), None);
        assert_eq!(build("INCR a b"), None);
        assert_eq!(build("PING"), None);
        assert!(matches!(build("SET k v NX XX"), Some(Err(Reply::Error(_)))));
        assert!(matches!(
            build("SET k v NX"),
            Some(Ok(Command::SetWith { .. }))
        ));
        let big_key = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(
            build(&format!("GET {big_key}")),
            Some(Err(Reply::Error(text))) if text.contains("byte limit")
        ));
    }

    /// An expired session's write has its own prefix: `-ERR` would say it
    /// was not applied, and an earlier attempt may have been. Inside a
    /// transaction's reply too.
    #[test]
    fn an_expired_session_is_answered_sessionexpired_not_err() {
        let expired = || Outcome::SessionExpired("client 7 has no session".into());
        assert_eq!(
            outcome_reply(expired()),
            Reply::Error("SESSIONEXPIRED client 7 has no session".into())
        );
        assert_eq!(
            outcome_reply(Outcome::Refused("sequence number 1 is older".into())),
            Reply::Error("ERR sequence number 1 is older".into())
        );
        let queued = vec![transaction::Queued::Store(Command::Incr {
            key: b"n".to_vec(),
        })];
        assert_eq!(
            transaction::exec(queued, |_| Ok(expired()), outcome_reply),
            Reply::Error("SESSIONEXPIRED client 7 has no session".into())
        );
    }
}
