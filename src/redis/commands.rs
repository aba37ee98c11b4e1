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
//! | `INFO` | `field:value` lines | any node |
//! | `HELP` | the command list | any node |
//! | `QUIT` | `+OK`, then the connection closes | any node |
//!
//! Errors say whether the request took effect. `-MOVED 0 host:port` (not the
//! leader; that is its client address) and `-TRYAGAIN` (no leader known) mean
//! it did not; `-TIMEOUT` means a write was proposed but not seen committed in
//! time, so it may or may not take effect — never a definite error when the
//! outcome is unknown. `-ERR` is for requests that are wrong in themselves.
//!
//! The connection preambles Redis clients send (`CLIENT SETNAME`/`SETINFO`,
//! `SELECT 0`, `COMMAND [DOCS]`, `CONFIG GET`, `HELLO`) get the answers Redis
//! would give a client it cannot offer more, so redis-cli, redis-benchmark and
//! client libraries work unchanged.

use crate::kv::{Command, Outcome};
use crate::kv::{KeyValue, KvNode};
use crate::node::error::Error;
use crate::redis::resp::Reply;

/// The largest key a client may write.
pub const MAX_KEY_BYTES: usize = 64 * 1024;
/// The largest value a client may write.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// The most keys one DEL may name.
pub const MAX_DEL_KEYS: usize = 4096;

/// Per-connection state.
#[derive(Debug, Default)]
pub struct Connection {
    /// The client id set by `CLIENT ID`, for exactly-once writes.
    pub session: Option<u64>,
}

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
    "INFO -- this node's Raft state",
    "HELP -- this list",
    "QUIT -- close the connection",
];

/// Executes one request against `node`.
pub fn execute(node: &KvNode, conn: &mut Connection, args: &[Vec<u8>]) -> (Reply, After) {
    execute_in(node, conn, args, None)
}

/// Executes a request; `seq` is set for the command of a `SEQ n ...`.
fn execute_in(
    node: &KvNode,
    conn: &mut Connection,
    args: &[Vec<u8>],
    seq: Option<u64>,
) -> (Reply, After) {
    let Some(name) = args.first() else {
        return (err("empty command"), After::Continue);
    };
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
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
        "SEQ" if args.len() >= 3 => sequenced(node, conn, args),
        "QUIT" => (Reply::ok(), After::Close),
        _ => (connection(node, conn, &name, args), After::Continue),
    }
}

/// The commands on the store: reads and writes, each with its arity. `None`
/// if `name` with this many arguments is not one of them.
fn key_value(
    node: &KvNode,
    name: &str,
    args: &[Vec<u8>],
    submit: impl FnOnce(Command) -> Result<Outcome, Error>,
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

/// Everything that is not about the store: the connection, the node, and
/// the preambles Redis clients send; then arity errors and unknown commands.
fn connection(node: &KvNode, conn: &mut Connection, name: &str, args: &[Vec<u8>]) -> Reply {
    match name {
        "PING" => match args.len() {
            1 => Reply::Simple("PONG".into()),
            2 => Reply::Bulk(args[1].clone()),
            _ => wrong_arity("ping"),
        },
        "ECHO" if args.len() == 2 => Reply::Bulk(args[1].clone()),
        "INFO" if args.len() <= 2 => Reply::Bulk(info(node).into_bytes()),
        "HELP" if args.len() == 1 => {
            Reply::Array(HELP.iter().map(|l| Reply::Simple(l.to_string())).collect())
        }
        "CLIENT" => client(conn, args),
        "SELECT" if args.len() == 2 => match args[1].as_slice() {
            b"0" => Reply::ok(),
            _ => err("DB index is out of range"),
        },
        // redis-cli asks for command docs to offer hints, and redis-benchmark
        // for the config: an empty answer means "none", as from a stripped-down
        // server.
        "COMMAND" => Reply::Array(Vec::new()),
        "CONFIG" if args.len() >= 2 && args[1].eq_ignore_ascii_case(b"GET") => {
            config_get(&args[2..])
        }
        // Clients that ask for RESP3 fall back to RESP2 on NOPROTO, exactly as
        // with a Redis server that does not offer it.
        "HELLO" => Reply::Error("NOPROTO this server speaks RESP2 only".into()),
        "ECHO" | "GET" | "SET" | "DEL" | "CAS" | "INCR" | "APPEND" | "SEQ" | "INFO" | "HELP"
        | "SELECT" | "CONFIG" => wrong_arity(&name.to_ascii_lowercase()),
        _ => unknown(args),
    }
}

fn err(msg: &str) -> Reply {
    Reply::Error(format!("ERR {msg}"))
}

fn wrong_arity(name: &str) -> Reply {
    err(&format!("wrong number of arguments for '{name}' command"))
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
fn sequenced(node: &KvNode, conn: &mut Connection, args: &[Vec<u8>]) -> (Reply, After) {
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
    execute_in(node, conn, &args[2..], Some(seq))
}

fn client(conn: &mut Connection, args: &[Vec<u8>]) -> Reply {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_uppercase());
    match (sub.as_deref(), args.len()) {
        (Some("SETNAME") | Some("SETINFO"), _) => Reply::ok(),
        (Some("GETNAME"), _) => Reply::NullBulk,
        (Some("ID"), 2) => match conn.session {
            Some(id) => Reply::Integer(id as i64),
            None => Reply::NullBulk,
        },
        (Some("ID"), 3) => {
            let id = std::str::from_utf8(&args[2])
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            match id {
                Some(id) if id > 0 => {
                    conn.session = Some(id);
                    Reply::ok()
                }
                _ => err("CLIENT ID takes a positive 64-bit integer"),
            }
        }
        _ => err("unsupported CLIENT subcommand (ID, SETNAME, SETINFO and GETNAME are accepted)"),
    }
}

/// CONFIG GET: the two parameters redis-benchmark asks about, described
/// truthfully (no RDB snapshots; every write is in a fsynced log); nothing
/// else is configurable this way.
fn config_get(patterns: &[Vec<u8>]) -> Reply {
    let mut pairs = Vec::new();
    for (name, value) in [("save", ""), ("appendonly", "yes")] {
        if patterns
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name.as_bytes()) || p == b"*")
        {
            pairs.push(Reply::Bulk(name.as_bytes().to_vec()));
            pairs.push(Reply::Bulk(value.as_bytes().to_vec()));
        }
    }
    Reply::Array(pairs)
}

/// Where to send a client that asked the wrong node; `None` if this node leads.
fn redirect(node: &KvNode, leader: Option<u64>) -> Option<Reply> {
    match leader {
        Some(id) if id == node.id() => None,
        Some(id) => Some(match node.client_addr_of(id) {
            Some(addr) => Reply::Error(format!("MOVED 0 {addr}")),
            None => Reply::Error(format!(
                "TRYAGAIN leader {id} has not told this node its client address yet"
            )),
        }),
        None => Some(Reply::Error(
            "TRYAGAIN no leader known; an election is under way".into(),
        )),
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
    match node.read(key) {
        Ok(Some(value)) => Reply::Bulk(value),
        Ok(None) => Reply::NullBulk,
        Err(Error::NotLeader { leader }) => redirect(node, leader)
            .unwrap_or_else(|| Reply::Error("TRYAGAIN leadership is changing".into())),
        Err(e) => Reply::Error(format!("TIMEOUT read not confirmed: {e}")),
    }
}

fn write(
    node: &KvNode,
    keys: &[Vec<u8>],
    value: Option<&Vec<u8>>,
    op: impl FnOnce() -> Result<Outcome, Error>,
) -> Reply {
    if let Some(reply) = check_sizes(keys, value) {
        return reply;
    }
    match op() {
        Ok(Outcome::Done) => Reply::ok(),
        Ok(Outcome::Deleted(n)) => Reply::Integer(n as i64),
        Ok(Outcome::Swapped(swapped)) => Reply::Integer(i64::from(swapped)),
        Ok(Outcome::Integer(n)) => Reply::Integer(n),
        Ok(Outcome::Refused(why)) => err(&why),
        Err(Error::NotLeader { leader }) => redirect(node, leader)
            .unwrap_or_else(|| Reply::Error("TRYAGAIN leadership is changing".into())),
        Err(e @ Error::CommandTooLarge { .. }) => err(&e.to_string()),
        // Timeout, shutdown and storage failure all leave the outcome unknown.
        Err(e) => Reply::Error(format!("TIMEOUT {e}")),
    }
}

/// INFO: `field:value` lines, Redis style.
pub fn info(node: &KvNode) -> String {
    let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
    let m = node.metrics();
    let s = node.status();
    let config = node.config();
    let leader_addr = s.leader_id.and_then(|id| node.client_addr_of(id));
    let members: Vec<String> = s.members.iter().map(|m| m.to_string()).collect();
    let fields = [
        ("id", s.id.to_string()),
        ("cluster_id", config.cluster_id.clone()),
        ("role", s.role.to_string()),
        ("term", s.term.to_string()),
        (
            "leader_id",
            s.leader_id.map(|l| l.to_string()).unwrap_or_default(),
        ),
        ("leader_client_addr", leader_addr.unwrap_or_default()),
        ("commit_index", s.commit_index.to_string()),
        ("last_applied", s.last_applied.to_string()),
        ("last_log_index", s.last_log_index.to_string()),
        ("members", members.join(",")),
        ("raft_addr", node.raft_addr().to_string()),
        (
            "client_addr",
            config.client_addr.clone().unwrap_or_default(),
        ),
        ("pre_vote", on_off(config.pre_vote)),
        ("check_quorum", on_off(config.check_quorum)),
        ("read_mode", config.read_mode.to_string()),
        ("reads_served", m.reads_served.to_string()),
        ("read_index_rounds", m.read_rounds.to_string()),
        ("lease_reads", m.lease_reads.to_string()),
        (
            "duplicate_writes_suppressed",
            node.with_state(|kv| kv.duplicates_suppressed()).to_string(),
        ),
    ];
    let mut out = String::from("# Raft\r\n");
    for (field, value) in fields {
        out.push_str(&format!("{field}:{value}\r\n"));
    }
    out
}
