//! `raftnode cli status`: one row per member of the cluster, in the manner
//! of `etcdctl endpoint status -w table`.
//!
//! The members come from the first `--addr` that answers `RAFT.NODES`; then
//! every member's client port is asked `INFO raft` at once, each with a
//! short timeout, so a member that is down or cut off is a row saying so
//! rather than a hang. The rows are only as consistent as separate
//! questions to separate nodes can be: each is what that node said when it
//! was asked.

use super::args::Flags;
use super::error::{CliError, StatusError};
use super::json::quote;
use crate::raft::message::NodeId;
use crate::redis::resp::{self, Limits, Reply, RespError};
use std::fmt::Write as _;
use std::io::{BufReader, ErrorKind, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

pub(super) const STATUS_HELP: &str = "\
raftnode cli status: one row per member of the cluster

Usage:
  raftnode cli [--addr HOST:PORT]... status [--json] [--timeout-ms MS]

Asks the first --addr that answers for the members (RAFT.NODES), then asks
each member's client address for its state (INFO raft), all at once. Columns:

  ID           the member's id
  CLIENT ADDR  where it serves clients (- if not known yet)
  ROLE         leader, follower, candidate or pre-candidate, as the member
               says; learner for a follower that does not vote
  TERM         its current term
  COMMIT       the highest log index it knows committed
  APPLIED      the highest log index it has applied
  LAG          the leader's commit index less this member's applied index:
               committed entries it has yet to apply (- without a leader)
  REACHABLE    yes if it answered within the timeout; no otherwise (why, on
               standard error)

Exit status 0 when a member answered that it leads; 1 (saying why on
standard error) when none did: no leader is known, or none can be reached.

Options:
  --json             one JSON object instead of the table
  --timeout-ms MS    how long to wait for each node [default: 1000]
  -h, --help         this help
";

/// One member as RAFT.NODES listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    id: NodeId,
    client_addr: Option<String>,
    learner: bool,
}

/// What a member said of itself (INFO raft).
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    role: String,
    term: u64,
    commit: u64,
    applied: u64,
}

/// A member and its answer, or why there was none.
struct Row {
    member: Member,
    state: Result<State, String>,
}

/// `raftnode cli [--addr ...] status [--json] [--timeout-ms MS]`.
pub(super) fn status(seeds: &[String], args: &[String]) -> Result<ExitCode, CliError> {
    let flags = Flags::parse(args, &["--timeout-ms"], &["-h", "--help", "--json"], false)?;
    if flags.has("-h") || flags.has("--help") {
        print!("{STATUS_HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let timeout_ms: u64 = flags.number("--timeout-ms", 1000)?;
    if timeout_ms == 0 {
        return Err(super::args::usage("--timeout-ms must be positive"));
    }
    let timeout = Duration::from_millis(timeout_ms);
    let members = members(seeds, timeout).map_err(CliError::Status)?;
    // Every member at once: a row costs one timeout at most, not one each.
    let rows: Vec<Row> = std::thread::scope(|scope| {
        let asking: Vec<_> = members
            .into_iter()
            .map(|member| {
                scope.spawn(move || {
                    let state = ask(&member, timeout);
                    Row { member, state }
                })
            })
            .collect();
        asking
            .into_iter()
            .filter_map(|handle| handle.join().ok())
            .collect()
    });
    let leader = leader(&rows);
    if flags.has("--json") {
        println!("{}", json(&rows, leader));
    } else {
        println!("{}", table(&rows, leader));
    }
    for row in &rows {
        if let Err(why) = &row.state {
            let addr = row.member.client_addr.as_deref().unwrap_or("-");
            eprintln!("node {} ({addr}): {why}", row.member.id);
        }
    }
    match leader {
        Some(_) => Ok(ExitCode::SUCCESS),
        None => {
            let answered = rows.iter().filter(|r| r.state.is_ok()).count();
            eprintln!(
                "raftnode: no leader: none of the {answered} members that answered (of {}) \
                 says it leads",
                rows.len()
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// The members, from the first seed that lists them.
fn members(seeds: &[String], timeout: Duration) -> Result<Vec<Member>, StatusError> {
    let mut tried = Vec::new();
    for seed in seeds {
        match call(seed, &["RAFT.NODES"], timeout) {
            Ok(Reply::Bulk(bytes)) => match parse_nodes(&String::from_utf8_lossy(&bytes)) {
                Some(members) if !members.is_empty() => return Ok(members),
                _ => tried.push((seed.clone(), "an unexpected RAFT.NODES listing".into())),
            },
            Ok(Reply::Verbatim(text)) => match parse_nodes(&text) {
                Some(members) if !members.is_empty() => return Ok(members),
                _ => tried.push((seed.clone(), "an unexpected RAFT.NODES listing".into())),
            },
            Ok(other) => tried.push((seed.clone(), resp::render_human(&other))),
            Err(e) => tried.push((seed.clone(), e)),
        }
    }
    Err(StatusError::NoMembers { tried })
}

/// RAFT.NODES's lines (`id raft-addr client-addr voter|learner flags
/// match=N lag=N connected`); `None` if one is not of that form.
fn parse_nodes(text: &str) -> Option<Vec<Member>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [id, _raft, client, suffrage, ..] = fields[..] else {
                return None;
            };
            Some(Member {
                id: id.parse().ok()?,
                client_addr: (client != "-").then(|| client.to_string()),
                learner: suffrage == "learner",
            })
        })
        .collect()
}

/// What `member` says of itself, or why it could not be asked.
fn ask(member: &Member, timeout: Duration) -> Result<State, String> {
    let Some(addr) = &member.client_addr else {
        return Err("its client address is not known yet".into());
    };
    let text = match call(addr, &["INFO", "raft"], timeout)? {
        Reply::Bulk(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Reply::Verbatim(text) => text,
        other => return Err(format!("INFO answered {}", resp::render_human(&other))),
    };
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.trim_end().split_once(':'))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let number = |name: &str| -> Result<u64, String> {
        let value = field(name).ok_or_else(|| format!("INFO has no {name}"))?;
        value
            .parse()
            .map_err(|_| format!("INFO's {name} is not a number: {value:?}"))
    };
    let id = number("id")?;
    if id != member.id {
        // The address now serves someone else (a machine reused, a stale
        // listing): its state is not this member's.
        return Err(format!("{addr} is node {id}, not {}", member.id));
    }
    let mut role = field("role").ok_or("INFO has no role")?;
    if member.learner && role == "follower" {
        role = "learner".into();
    }
    Ok(State {
        role,
        term: number("term")?,
        commit: number("commit_index")?,
        applied: number("last_applied")?,
    })
}

/// Sends one command to `addr` and reads its reply, each step within
/// `timeout`.
fn call(addr: &str, command: &[&str], timeout: Duration) -> Result<Reply, String> {
    let sockaddr = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {addr}"))?;
    let stream = TcpStream::connect_timeout(&sockaddr, timeout)
        .map_err(|e| format!("cannot connect: {e}"))?;
    let io = |e: std::io::Error| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            format!("no answer within {} ms", timeout.as_millis())
        }
        _ => format!("no answer: {e}"),
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut request = Vec::new();
    let args: Vec<&[u8]> = command.iter().map(|a| a.as_bytes()).collect();
    resp::encode_command(&args, &mut request);
    (&stream).write_all(&request).map_err(io)?;
    let mut reader = BufReader::new(&stream);
    resp::read_reply(&mut reader, &Limits::default()).map_err(|e| match e {
        RespError::Io(e) => io(e),
        e => format!("no answer: {e}"),
    })
}

/// The row of the member that says it leads, in the highest term if
/// several do (one deposed but not yet told).
fn leader(rows: &[Row]) -> Option<usize> {
    (rows.iter().enumerate())
        .filter_map(|(i, r)| Some((i, r.state.as_ref().ok()?)))
        .filter(|(_, s)| s.role == "leader")
        .max_by_key(|(_, s)| s.term)
        .map(|(i, _)| i)
}

/// Committed entries `state`'s member has yet to apply, by the leader's
/// commit index.
fn lag(rows: &[Row], leader: Option<usize>, state: &State) -> Option<u64> {
    let leader = rows[leader?].state.as_ref().ok()?;
    Some(leader.commit.saturating_sub(state.applied))
}

const HEADER: [&str; 8] = [
    "ID",
    "CLIENT ADDR",
    "ROLE",
    "TERM",
    "COMMIT",
    "APPLIED",
    "LAG",
    "REACHABLE",
];

/// The rows as an aligned table with a header.
fn table(rows: &[Row], leader: Option<usize>) -> String {
    let mut cells = vec![HEADER.map(str::to_string).to_vec()];
    for row in rows {
        let addr = row.member.client_addr.clone().unwrap_or_else(|| "-".into());
        let mut line = vec![row.member.id.to_string(), addr];
        match &row.state {
            Ok(s) => line.extend([
                s.role.clone(),
                s.term.to_string(),
                s.commit.to_string(),
                s.applied.to_string(),
                lag(rows, leader, s).map_or("-".into(), |l| l.to_string()),
                "yes".into(),
            ]),
            Err(_) => line.extend(["-", "-", "-", "-", "-", "no"].map(String::from)),
        }
        cells.push(line);
    }
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|col| cells.iter().map(|r| r[col].len()).max().unwrap_or(0))
        .collect();
    let lines: Vec<String> = cells
        .iter()
        .map(|row| {
            let padded: Vec<String> = (row.iter().zip(&widths))
                .map(|(cell, &width)| format!("{cell:width$}"))
                .collect();
            padded.join("  ").trim_end().to_string()
        })
        .collect();
    lines.join("\n")
}

/// The rows as one JSON object: `{"leader": id or null, "members": [...]}`,
/// each member with the table's columns (numbers `null` when unknown) and,
/// if it did not answer, why.
fn json(rows: &[Row], leader: Option<usize>) -> String {
    let leader_id = leader.map_or("null".into(), |i| rows[i].member.id.to_string());
    let mut out = format!("{{\"leader\":{leader_id},\"members\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let state = row.state.as_ref().ok();
        let num = |n: Option<u64>| n.map_or("null".into(), |n| n.to_string());
        let text = |s: Option<&str>| s.map_or("null".into(), quote);
        let _ = write!(
            out,
            "{{\"id\":{},\"client_addr\":{},\"role\":{},\"term\":{},\"commit_index\":{},\
             \"applied_index\":{},\"lag\":{},\"reachable\":{},\"error\":{}}}",
            row.member.id,
            text(row.member.client_addr.as_deref()),
            text(state.map(|s| s.role.as_str())),
            num(state.map(|s| s.term)),
            num(state.map(|s| s.commit)),
            num(state.map(|s| s.applied)),
            num(state.and_then(|s| lag(rows, leader, s))),
            state.is_some(),
            text(row.state.as_ref().err().map(String::as_str)),
        );
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: NodeId, state: Result<(&str, u64, u64, u64), &str>) -> Row {
        Row {
            member: Member {
                id,
                client_addr: Some(format!("127.0.0.1:700{id}")),
                learner: false,
            },
            state: state
                .map(|(role, term, commit, applied)| State {
                    role: role.into(),
                    term,
                    commit,
                    applied,
                })
                .map_err(String::from),
        }
    }

    #[test]
    fn raft_nodes_lines_give_ids_addresses_and_suffrage() {
        let text = "1 127.0.0.1:7101 127.0.0.1:7001 voter leader,myself match=120 lag=0 connected\n\
                    12 10.0.0.12:7101 - learner promote-when-caught-up match=- lag=- disconnected\n";
        assert_eq!(
            parse_nodes(text),
            Some(vec![
                Member {
                    id: 1,
                    client_addr: Some("127.0.0.1:7001".into()),
                    learner: false,
                },
                Member {
                    id: 12,
                    client_addr: None,
                    learner: true,
                },
            ])
        );
        assert_eq!(parse_nodes("garbage\n"), None);
    }

    #[test]
    fn the_table_has_a_row_per_member_with_lag_behind_the_leaders_commit() {
        let rows = vec![
            row(1, Ok(("follower", 3, 120, 118))),
            row(2, Ok(("leader", 3, 121, 121))),
            row(3, Err("cannot connect: Connection refused")),
        ];
        let leader = leader(&rows);
        assert_eq!(leader, Some(1));
        assert_eq!(
            table(&rows, leader),
            "ID  CLIENT ADDR     ROLE      TERM  COMMIT  APPLIED  LAG  REACHABLE\n\
             1   127.0.0.1:7001  follower  3     120     118      3    yes\n\
             2   127.0.0.1:7002  leader    3     121     121      0    yes\n\
             3   127.0.0.1:7003  -         -     -       -        -    no"
        );
        assert_eq!(
            json(&rows[1..], Some(0)),
            "{\"leader\":2,\"members\":[\
             {\"id\":2,\"client_addr\":\"127.0.0.1:7002\",\"role\":\"leader\",\"term\":3,\
             \"commit_index\":121,\"applied_index\":121,\"lag\":0,\"reachable\":true,\"error\":null},\
             {\"id\":3,\"client_addr\":\"127.0.0.1:7003\",\"role\":null,\"term\":null,\
             \"commit_index\":null,\"applied_index\":null,\"lag\":null,\"reachable\":false,\
             \"error\":\"cannot connect: Connection refused\"}]}"
        );
    }

    #[test]
    fn a_deposed_leader_gives_way_to_the_one_of_a_later_term() {
        let rows = vec![
            row(1, Ok(("leader", 3, 100, 100))),
            row(2, Ok(("leader", 4, 105, 104))),
            row(3, Ok(("follower", 4, 105, 105))),
        ];
        assert_eq!(leader(&rows), Some(1));
        let none = vec![row(1, Ok(("candidate", 5, 100, 100))), row(2, Err("x"))];
        assert_eq!(leader(&none), None);
        assert!(table(&none, None).contains("candidate  5     100     100      -    yes"));
    }
}
