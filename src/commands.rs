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

use crate::error::Error;
use crate::node::Node;
use crate::resp::Reply;

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
    "INFO -- this node's Raft state",
    "HELP -- this list",
    "QUIT -- close the connection",
];

/// Executes one request against `node`.
pub fn execute(node: &Node, args: &[Vec<u8>]) -> (Reply, After) {
    let Some(name) = args.first() else {
        return (err("empty command"), After::Continue);
    };
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let reply = match name.as_str() {
        "PING" => match args.len() {
            1 => Reply::Simple("PONG".into()),
            2 => Reply::Bulk(args[1].clone()),
            _ => wrong_arity("ping"),
        },
        "ECHO" if args.len() == 2 => Reply::Bulk(args[1].clone()),
        "GET" if args.len() == 2 => get(node, &args[1]),
        "SET" if args.len() == 3 => write(node, &args[1..2], Some(&args[2]), |node| {
            node.set(args[1].clone(), args[2].clone())
                .map(|()| Reply::ok())
        }),
        "SET" if args.len() > 3 => err("syntax error (SET options are not supported)"),
        "DEL" if args.len() >= 2 => {
            if args.len() - 1 > MAX_DEL_KEYS {
                err(&format!(
                    "too many arguments (DEL takes at most {MAX_DEL_KEYS} keys)"
                ))
            } else {
                write(node, &args[1..], None, |node| {
                    node.delete_many(args[1..].to_vec())
                        .map(|n| Reply::Integer(n as i64))
                })
            }
        }
        "CAS" if args.len() == 4 => write(node, &args[1..2], Some(&args[3]), |node| {
            node.cas(args[1].clone(), args[2].clone(), args[3].clone())
                .map(|swapped| Reply::Integer(i64::from(swapped)))
        }),
        "INFO" if args.len() <= 2 => Reply::Bulk(info(node).into_bytes()),
        "HELP" if args.len() == 1 => {
            Reply::Array(HELP.iter().map(|l| Reply::Simple(l.to_string())).collect())
        }
        "QUIT" => return (Reply::ok(), After::Close),
        "CLIENT" => client(args),
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
        "ECHO" | "GET" | "SET" | "DEL" | "CAS" | "INFO" | "HELP" | "SELECT" | "CONFIG" => {
            wrong_arity(&name.to_ascii_lowercase())
        }
        _ => unknown(args),
    };
    (reply, After::Continue)
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

fn client(args: &[Vec<u8>]) -> Reply {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_uppercase());
    match sub.as_deref() {
        Some("SETNAME") | Some("SETINFO") => Reply::ok(),
        Some("GETNAME") => Reply::NullBulk,
        _ => err("unsupported CLIENT subcommand (SETNAME, SETINFO and GETNAME are accepted)"),
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
fn redirect(node: &Node, leader: Option<u64>) -> Option<Reply> {
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
fn get(node: &Node, key: &[u8]) -> Reply {
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
    node: &Node,
    keys: &[Vec<u8>],
    value: Option<&Vec<u8>>,
    op: impl FnOnce(&Node) -> Result<Reply, Error>,
) -> Reply {
    if let Some(reply) = check_sizes(keys, value) {
        return reply;
    }
    match op(node) {
        Ok(reply) => reply,
        Err(Error::NotLeader { leader }) => redirect(node, leader)
            .unwrap_or_else(|| Reply::Error("TRYAGAIN leadership is changing".into())),
        Err(e @ Error::CommandTooLarge { .. }) => err(&e.to_string()),
        // Timeout, shutdown and storage failure all leave the outcome unknown.
        Err(e) => Reply::Error(format!("TIMEOUT {e}")),
    }
}

/// INFO: `field:value` lines, Redis style.
pub fn info(node: &Node) -> String {
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
    ];
    let mut out = String::from("# Raft\r\n");
    for (field, value) in fields {
        out.push_str(&format!("{field}:{value}\r\n"));
    }
    out
}
