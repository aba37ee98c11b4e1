//! The client commands: what each one means and how it is answered.
//!
//! The table (also in the README):
//!
//! | command | reply | where |
//! |---|---|---|
//! | `PING [msg]` | `+PONG`, or the message | any node |
//! | `ECHO msg` | the message | any node |
//! | `GET key` | the value, or a null bulk string | leader |
//! | `SET key value` | `+OK` once committed and applied | leader |
//! | `DEL key [key ...]` | `:N`, how many of the keys existed | leader |
//! | `CAS key expected new` | `:1` if the value was `expected` and is now `new`, else `:0` | leader |
//! | `INCR key` | `:N`, the new value (absent counts as 0) | leader |
//! | `APPEND key value` | `:N`, the new length | leader |
//! | `CLIENT ID id` | `+OK`; this connection's writes may now use `SEQ` | any node |
//! | `SEQ n command ...` | the command's reply; a retry of the same `n` is not applied again | leader |
//! | `INFO [section ...]` | `field:value` lines in Redis's sections | any node |
//! | `CLUSTER SLOTS\|SHARDS\|NODES\|MYID\|INFO\|KEYSLOT key` | the cluster as Redis Cluster describes one shard | any node |
//! | `HELLO [2\|3] [AUTH user pass] [SETNAME name]` | switches protocol; describes the server | any node |
//! | `HELP` | the command list | any node |
//! | `QUIT` | `+OK`, then the connection closes | any node |
//!
//! Errors say whether the request took effect. `-MOVED <slot> host:port` (not
//! the leader; that is its client address, and the slot is the key's hash
//! slot, 0 for commands without a key) and `-TRYAGAIN` (no leader known, even
//! after waiting up to two election timeouts for one) mean it did not; `-TIMEOUT` means a write was proposed but not seen committed in
//! time, so it may or may not take effect — never a definite error when the
//! outcome is unknown. `-ERR` is for requests that are wrong in themselves.
//!
//! The connection preambles Redis clients send (`HELLO`, `AUTH`,
//! `CLIENT SETNAME`/`SETINFO`, `SELECT 0`, `COMMAND [DOCS]`, `CONFIG GET`,
//! `READONLY`) are answered in [`crate::redis::connection`], the way Redis
//! answers a client it cannot offer more, so redis-cli, redis-benchmark and
//! client libraries work unchanged. A connection speaks RESP2 until it sends
//! `HELLO 3`; the replies here are built once and encoded in whichever
//! protocol the connection speaks.

use crate::kv::{Command, Outcome};
use crate::kv::{KeyValue, KvNode};
use crate::node::error::Error;
use crate::redis::catalog;
use crate::redis::cluster::{self, key_slot};
use crate::redis::connection;
use crate::redis::info;
use crate::redis::port::{Connection, Port};
use crate::redis::resp::Reply;
use std::time::Instant;

/// The largest key a client may write.
pub const MAX_KEY_BYTES: usize = 64 * 1024;
/// The largest value a client may write.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// The most keys one DEL may name.
pub const MAX_DEL_KEYS: usize = 4096;

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
    "SET key value -- +OK once committed (leader)",
    "DEL key [key ...] -- how many keys existed (leader)",
    "CAS key expected new -- 1 if the value was expected and is now new, else 0 (leader)",
    "INCR key -- add one to an integer value; the new value (leader)",
    "APPEND key value -- append to a value; the new length (leader)",
    "CLIENT ID id -- name this client (a random 64-bit number) for SEQ",
    "SEQ n command [arg ...] -- a write with sequence number n: retrying n never applies it twice",
    "INFO [section ...] -- this node: server, clients, stats, raft, cluster, keyspace",
    "CLUSTER SLOTS|SHARDS|NODES|MYID|INFO|KEYSLOT key -- the cluster as Redis Cluster clients see it",
    "HELLO [2|3] -- switch to RESP2 or RESP3",
    "HELP -- this list",
    "QUIT -- close the connection",
];

/// Executes one request.
pub fn execute(port: &Port, conn: &mut Connection, args: &[Vec<u8>]) -> (Reply, After) {
    port.stats.command();
    execute_in(port, conn, args, None)
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
    let reply = match name {
        "GET" if args.len() == 2 => get(node, &args[1]),
        "SET" if args.len() == 3 => write(node, &args[1..2], Some(&args[2]), || {
            submit(Command::Set {
                key: args[1].clone(),
                value: args[2].clone(),
            })
        }),
        "SET" if args.len() > 3 => err("syntax error (SET options are not supported)"),
        "DEL" if args.len() - 1 > MAX_DEL_KEYS => err(&format!(
            "too many arguments (DEL takes at most {MAX_DEL_KEYS} keys)"
        )),
        "DEL" if args.len() >= 2 => write(node, &args[1..], None, || {
            submit(Command::Delete {
                keys: args[1..].to_vec(),
            })
        }),
        "CAS" if args.len() == 4 => write(node, &args[1..2], Some(&args[3]), || {
            submit(Command::Cas {
                key: args[1].clone(),
                expected: args[2].clone(),
                new: args[3].clone(),
            })
        }),
        "INCR" if args.len() == 2 => write(node, &args[1..2], None, || {
            submit(Command::Incr {
                key: args[1].clone(),
            })
        }),
        "APPEND" if args.len() == 3 => write(node, &args[1..2], Some(&args[2]), || {
            submit(Command::Append {
                key: args[1].clone(),
                value: args[2].clone(),
            })
        }),
        _ => return None,
    };
    Some(reply)
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
        "ECHO" | "GET" | "SET" | "DEL" | "CAS" | "INCR" | "APPEND" | "SEQ" | "HELP" | "SELECT"
        | "READONLY" | "READWRITE" => wrong_arity(&name.to_ascii_lowercase()),
        _ => unknown(args),
    }
}

fn err(msg: &str) -> Reply {
    Reply::Error(format!("ERR {msg}"))
}

fn wrong_arity(name: &str) -> Reply {
    Reply::wrong_arity(name)
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

/// Runs `op` on the leader. A node that knows no leader waits up to two
/// election timeouts for one to emerge (the proposal or read was refused, so
/// trying again is safe), which spares clients most `-TRYAGAIN`s during a
/// failover. Then a follower answers where to go instead: `-MOVED` with
/// `slot`, the slot of the command's first key. A timeout's error says
/// `TIMEOUT <timeout_note><why>`.
fn on_leader<T>(
    node: &KvNode,
    slot: u16,
    timeout_note: &str,
    mut op: impl FnMut() -> Result<T, Error>,
) -> Result<T, Reply> {
    let config = node.config();
    let deadline = Instant::now() + 2 * config.election_timeout_max;
    loop {
        match op() {
            Err(Error::NotLeader { leader: None }) if Instant::now() < deadline => {
                std::thread::sleep(config.tick);
            }
            Err(Error::NotLeader { leader }) => return Err(redirect(node, leader, slot)),
            Err(e @ Error::CommandTooLarge { .. }) => return Err(err(&e.to_string())),
            // Timeout, shutdown and storage failure all leave the outcome unknown.
            Err(e) => return Err(Reply::Error(format!("TIMEOUT {timeout_note}{e}"))),
            Ok(value) => return Ok(value),
        }
    }
}

/// Where to send a client that asked the wrong node.
fn redirect(node: &KvNode, leader: Option<u64>, slot: u16) -> Reply {
    match leader {
        Some(id) if id == node.id() => Reply::Error("TRYAGAIN leadership is changing".into()),
        Some(id) => match node.client_addr_of(id) {
            Some(addr) => Reply::Error(format!("MOVED {slot} {addr}")),
            None => Reply::Error(format!(
                "TRYAGAIN leader {id} has not told this node its client address yet"
            )),
        },
        None => Reply::Error("TRYAGAIN no leader known; an election is under way".into()),
    }
}

fn check_sizes(keys: &[Vec<u8>], value: Option<&Vec<u8>>) -> Option<Reply> {
    if let Some(key) = keys.iter().find(|k| k.len() > MAX_KEY_BYTES) {
        return Some(err(&format!(
            "key of {} bytes is over the {MAX_KEY_BYTES}-byte limit",
            key.len()
        )));
    }
    match value {
        Some(v) if v.len() > MAX_VALUE_BYTES => Some(err(&format!(
            "value of {} bytes is over the {MAX_VALUE_BYTES}-byte limit",
            v.len()
        ))),
        _ => None,
    }
}

/// A linearizable read, served by the leader after it has confirmed it still
/// leads (ReadIndex). A node that cannot confirm that never answers with a
/// value.
fn get(node: &KvNode, key: &[u8]) -> Reply {
    if let Some(reply) = check_sizes(&[key.to_vec()], None) {
        return reply;
    }
    let read = || node.read(key);
    match on_leader(node, key_slot(key), "read not confirmed: ", read) {
        Ok(Some(value)) => Reply::Bulk(value),
        Ok(None) => Reply::NullBulk,
        Err(reply) => reply,
    }
}

fn write(
    node: &KvNode,
    keys: &[Vec<u8>],
    value: Option<&Vec<u8>>,
    op: impl Fn() -> Result<Outcome, Error>,
) -> Reply {
    if let Some(reply) = check_sizes(keys, value) {
        return reply;
    }
    match on_leader(node, key_slot(&keys[0]), "", op) {
        Ok(Outcome::Done) => Reply::ok(),
        Ok(Outcome::Deleted(n)) => Reply::Integer(n as i64),
        Ok(Outcome::Swapped(swapped)) => Reply::Integer(i64::from(swapped)),
        Ok(Outcome::Integer(n)) => Reply::Integer(n),
        Ok(Outcome::Refused(why)) => err(&why),
        Err(reply) => reply,
    }
}
