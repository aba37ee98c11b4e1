//! The commands about the connection rather than the data: the handshake
//! clients open with (`HELLO`, `AUTH`, `CLIENT SETNAME`/`SETINFO`,
//! `SELECT 0`), what they probe for (`CONFIG GET`), the
//! cluster-mode switches (`READONLY`, `READWRITE`), and raftnode's own
//! `CLIENT ID <id>` for exactly-once writes.
//!
//! Each is answered as Redis 7 answers it when it has nothing more to offer:
//! no password is configured (so, as in Redis, the `default` user logs in
//! with any password and any other user is refused), there is one database,
//! and nothing is configurable at run time.

use crate::redis::info::REDIS_VERSION;
use crate::redis::port::{Connection, Port};
use crate::redis::resp::{parse_int, Protocol, Reply};

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`:
/// switches the connection to RESP2 or RESP3 and describes the server.
pub fn hello(port: &Port, conn: &mut Connection, args: &[Vec<u8>]) -> Reply {
    let mut protocol = None;
    if let Some(version) = args.get(1) {
        protocol = match parse_int(version) {
            Some(2) => Some(Protocol::Resp2),
            Some(3) => Some(Protocol::Resp3),
            Some(_) => return Reply::Error("NOPROTO unsupported protocol version".into()),
            None => return Reply::error("Protocol version is not an integer or out of range"),
        };
    }
    let (mut user, mut name) = (None, None);
    let mut rest = args.iter().skip(2);
    while let Some(option) = rest.next() {
        let upper = option.to_ascii_uppercase();
        match (upper.as_slice(), rest.len()) {
            (b"AUTH", 2..) => {
                user = rest.next();
                rest.next();
            }
            (b"SETNAME", 1..) => name = rest.next(),
            _ => {
                return Reply::error(format!(
                    "Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(option)
                ))
            }
        }
    }
    if let Some(user) = user {
        if let Some(refused) = authenticate(user) {
            return refused;
        }
    }
    if let Some(name) = name {
        if let Some(refused) = set_name(conn, name) {
            return refused;
        }
    }
    if let Some(protocol) = protocol {
        conn.protocol = protocol;
    }
    let bulk = |s: &str| Reply::Bulk(s.as_bytes().to_vec());
    let node = &port.node;
    let role = match node.leader_id() == Some(node.id()) {
        true => "master",
        false => "replica",
    };
    Reply::Map(vec![
        (bulk("server"), bulk("redis")),
        (bulk("version"), bulk(REDIS_VERSION)),
        (bulk("proto"), Reply::Integer(conn.protocol.version())),
        (bulk("id"), Reply::Integer(conn.id as i64)),
        (bulk("mode"), bulk("cluster")),
        (bulk("role"), bulk(role)),
        (bulk("modules"), Reply::Array(Vec::new())),
    ])
}

/// Logs in as `user`, with no password configured: only `default` exists,
/// and it takes any password.
fn authenticate(user: &[u8]) -> Option<Reply> {
    (user != b"default").then(|| {
        Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    })
}

/// `AUTH [username] password`.
pub fn auth(args: &[Vec<u8>]) -> Reply {
    match args.len() {
        2 => Reply::error(
            "AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ),
        3 => authenticate(&args[1]).unwrap_or_else(Reply::ok),
        _ => Reply::wrong_arity("auth"),
    }
}

/// Names the connection, refusing names Redis refuses: those with spaces,
/// line breaks or other characters outside `!`..`~`. An empty name clears it.
fn set_name(conn: &mut Connection, name: &[u8]) -> Option<Reply> {
    if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Some(Reply::error(
            "Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    conn.name = (!name.is_empty()).then(|| name.to_vec());
    None
}

/// `CLIENT ID <id>` (raftnode's: names this client for `SEQ`), `CLIENT ID`
/// (that id, or nil), `CLIENT SETNAME`, `GETNAME` and `SETINFO`.
pub fn client(conn: &mut Connection, args: &[Vec<u8>]) -> Reply {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_uppercase());
    match (sub.as_deref(), args.len()) {
        (Some("SETNAME"), 3) => set_name(conn, &args[2]).unwrap_or_else(Reply::ok),
        (Some("SETINFO"), 4) => Reply::ok(),
        (Some("GETNAME"), 2) => match &conn.name {
            Some(name) => Reply::Bulk(name.clone()),
            None => Reply::NullBulk,
        },
        (Some(sub @ ("SETNAME" | "SETINFO" | "GETNAME")), _) => {
            Reply::wrong_arity(&format!("client|{}", sub.to_ascii_lowercase()))
        }
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
                _ => Reply::error("CLIENT ID takes a positive 64-bit integer"),
            }
        }
        _ => Reply::error(
            "unsupported CLIENT subcommand (ID, SETNAME, SETINFO and GETNAME are accepted)",
        ),
    }
}

/// `CONFIG GET pattern ...`: the two parameters redis-benchmark asks about,
/// described truthfully (no RDB snapshots; every write is in a fsynced log).
/// `CONFIG SET`: nothing can be set, and it says so as Redis does for a
/// parameter it does not know.
pub fn config(args: &[Vec<u8>]) -> Reply {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_uppercase());
    match sub.as_deref() {
        Some("GET") if args.len() >= 3 => config_get(&args[2..]),
        Some("SET") if args.len() >= 4 && args.len().is_multiple_of(2) => Reply::error(format!(
            "Unknown option or number of arguments for CONFIG SET - '{}'",
            String::from_utf8_lossy(&args[2])
        )),
        Some(sub @ ("GET" | "SET")) => {
            Reply::wrong_arity(&format!("config|{}", sub.to_ascii_lowercase()))
        }
        Some(_) => Reply::error(format!(
            "unknown subcommand '{}'. Try CONFIG HELP.",
            String::from_utf8_lossy(&args[1])
        )),
        None => Reply::wrong_arity("config"),
    }
}

fn config_get(patterns: &[Vec<u8>]) -> Reply {
    let mut pairs = Vec::new();
    for (name, value) in [("save", ""), ("appendonly", "yes")] {
        if patterns
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name.as_bytes()) || p == b"*")
        {
            pairs.push((
                Reply::Bulk(name.as_bytes().to_vec()),
                Reply::Bulk(value.as_bytes().to_vec()),
            ));
        }
    }
    Reply::Map(pairs)
}
