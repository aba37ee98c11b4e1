//! The cluster administration commands, named as RedisRaft names them:
//! membership changes (`RAFT.NODE ADD|PROMOTE|REMOVE`), the members as this
//! node sees them (`RAFT.NODES`), and leadership transfer
//! (`RAFT.TRANSFER_LEADER`).
//!
//! | command | reply | where |
//! |---|---|---|
//! | `RAFT.NODE ADD <id> <raft-addr> <client-addr> [LEARNER]` | `+OK` once the entry adding it (as a learner, promoted by the leader once caught up unless `LEARNER`) is committed | leader |
//! | `RAFT.NODE PROMOTE <id>` | `+OK` once the learner is a voter (committed) | leader |
//! | `RAFT.NODE REMOVE <id>` | `+OK` once its removal is committed (the leader may remove itself: it steps down) | leader |
//! | `RAFT.NODES` | one line per member, see [`nodes_text`] | any node |
//! | `RAFT.TRANSFER_LEADER [<id>]` | `+OK` once the target (or the most up-to-date voter) leads | leader |
//!
//! A follower answers `-MOVED 0 <leader-client-addr>`, as it does for any
//! write (slot 0: these commands have no key). A change the configuration
//! forbids — an unknown id, a duplicate id or address, promoting a voter,
//! removing the last voter — is a definite `-ERR` and nothing was proposed;
//! so is a transfer to a learner or a stranger. `-TRYAGAIN <why>` means the
//! leader could not propose a change yet (another change is not committed,
//! it has not committed an entry of its term, or leadership is being
//! transferred) even after waiting two election timeouts: nothing was
//! proposed, and sending it again is safe. `-TIMEOUT` leaves the outcome
//! unknown, as for a write.
//!
//! Adding is idempotent, so that a node that retries its join (see
//! `raftnode run --join`) is not refused for having succeeded: if the id is
//! already a member at the same raft and client addresses, the leader
//! answers `+OK` without proposing anything.

use crate::kv::KvNode;
use crate::node::error::Error;
use crate::node::{MemberStatus, Membership};
use crate::raft::membership::{ChangeError, ConfChange, Suffrage};
use crate::raft::message::NodeId;
use crate::raft::TransferError;
use crate::redis::leader::on_leader;
use crate::redis::resp::Reply;
use std::time::Instant;

/// `host:port`, split at the last colon (so `[::1]:7001` works): the host
/// must not be empty and the port must be a number that fits 16 bits.
/// `None` for anything else.
pub fn host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    // A port written with a sign or spaces is not one a person meant.
    if host.is_empty() || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// A node id: a positive integer, in decimal digits.
pub fn parse_node_id(text: &str) -> Option<NodeId> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<NodeId>().ok().filter(|&id| id > 0)
}

/// `RAFT.NODE ADD|PROMOTE|REMOVE ...` (and `RAFT.NODE HELP`).
pub fn raft_node(node: &KvNode, args: &[Vec<u8>]) -> Reply {
    let Some(sub) = args.get(1) else {
        return Reply::wrong_arity("raft.node");
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_uppercase();
    let arity_ok = match sub.as_str() {
        "ADD" => matches!(args.len(), 5 | 6),
        "PROMOTE" | "REMOVE" => args.len() == 3,
        "HELP" => args.len() == 2,
        _ => {
            return Reply::error(format!(
                "unknown subcommand '{}'. Try RAFT.NODE HELP.",
                String::from_utf8_lossy(&args[1])
            ))
        }
    };
    if !arity_ok {
        return Reply::wrong_arity(&format!("raft.node|{}", sub.to_ascii_lowercase()));
    }
    let parsed = match sub.as_str() {
        "ADD" => add(args),
        "PROMOTE" => node_id(&args[2]).map(|id| (ConfChange::Promote { id }, None)),
        "REMOVE" => node_id(&args[2]).map(|id| (ConfChange::Remove { id }, None)),
        _ => {
            return Reply::Array(
                NODE_HELP
                    .iter()
                    .map(|line| Reply::Simple(line.to_string()))
                    .collect(),
            )
        }
    };
    match parsed {
        Ok((change, already)) => change_on_leader(node, change, already),
        Err(refused) => refused,
    }
}

const NODE_HELP: &[&str] = &[
    "RAFT.NODE <subcommand> [<arg> ...]. Subcommands are:",
    "ADD <id> <raft-addr> <client-addr> [LEARNER] -- add a node as a learner, promoted to voter \
     once it has caught up (never, with LEARNER)",
    "PROMOTE <id> -- make a learner a voter",
    "REMOVE <id> -- remove a member (voter or learner; the leader too)",
];

/// What a member must look like for an ADD to be already done: its raft
/// and client addresses.
type Expected = (String, String);

/// `RAFT.NODE ADD <id> <raft-addr> <client-addr> [LEARNER]`: the change, and
/// the member it is already done by.
fn add(args: &[Vec<u8>]) -> Result<(ConfChange, Option<Expected>), Reply> {
    let id = node_id(&args[2])?;
    let raft_addr = address(&args[3], "raft address")?;
    let client_addr = address(&args[4], "client address")?;
    let auto_promote = match args.get(5) {
        None => true,
        Some(word) if word.eq_ignore_ascii_case(b"LEARNER") => false,
        Some(word) => {
            return Err(Reply::error(format!(
                "syntax error: expected LEARNER or nothing after the client address, got '{}'",
                String::from_utf8_lossy(word)
            )))
        }
    };
    let expected = (raft_addr.clone(), client_addr.clone());
    let change = ConfChange::AddLearner {
        id,
        raft_addr,
        client_addr: Some(client_addr),
        auto_promote,
    };
    Ok((change, Some(expected)))
}

fn node_id(word: &[u8]) -> Result<NodeId, Reply> {
    let text = String::from_utf8_lossy(word);
    parse_node_id(&text)
        .ok_or_else(|| Reply::error(format!("node id must be a positive integer, got '{text}'")))
}

/// An address a member will be reached at: `HOST:PORT` with a real port
/// (not 0), and nothing that would break the one-line-per-member listing of
/// RAFT.NODES.
fn address(word: &[u8], what: &str) -> Result<String, Reply> {
    let text = String::from_utf8_lossy(word);
    let printable = text.chars().all(|c| !c.is_whitespace() && !c.is_control());
    match host_port(&text) {
        Some((_, port)) if port != 0 && printable => Ok(text.into_owned()),
        _ => Err(Reply::error(format!(
            "{what} expects HOST:PORT, got '{text}'"
        ))),
    }
}

/// Proposes `change` on the leader and answers once it is committed.
/// `already` names the member (raft and client address) for which an ADD
/// is already done, to answer a retried join without proposing anything.
fn change_on_leader(node: &KvNode, change: ConfChange, already: Option<Expected>) -> Reply {
    let config = node.config();
    // InProgress passes by itself within a round trip or two (another
    // change committing, the new leader's first entry, a transfer ending):
    // wait for it as `on_leader` waits for a leader.
    let deadline = Instant::now() + 2 * config.election_timeout_max;
    let target = match &change {
        ConfChange::AddLearner { id, .. }
        | ConfChange::Promote { id }
        | ConfChange::Remove { id }
        | ConfChange::RecordIncarnation { id, .. } => *id,
    };
    let op = || -> Result<Result<(), Reply>, Error> {
        loop {
            let done = match &already {
                Some(expected) if node.leader_id() == Some(node.id()) => {
                    already_added(&node.membership(), target, expected)
                }
                _ => None,
            };
            let outcome = match done {
                Some(true) => return Ok(Ok(())),
                Some(false) => Err(Error::Change(ChangeError::InProgress(
                    "the entry adding this node is not yet committed",
                ))),
                None => node.change_membership(change.clone()).map(|_| ()),
            };
            match outcome {
                Ok(()) => return Ok(Ok(())),
                Err(Error::Change(ChangeError::InProgress(_))) if Instant::now() < deadline => {
                    std::thread::sleep(config.tick);
                }
                Err(Error::Change(e @ ChangeError::InProgress(_))) => {
                    return Ok(Err(Reply::Error(format!("TRYAGAIN {e}"))))
                }
                Err(Error::Change(e)) => return Ok(Err(Reply::error(e.to_string()))),
                Err(e) => return Err(e),
            }
        }
    };
    match on_leader(node, 0, "", op) {
        Ok(Ok(())) => Reply::ok(),
        Ok(Err(reply)) | Err(reply) => reply,
    }
}

/// Whether `id` is already a member at the `expected` addresses: `None` if
/// not; `Some(true)` if the entry that says so is committed, `Some(false)`
/// if not yet.
fn already_added(membership: &Membership, id: NodeId, expected: &Expected) -> Option<bool> {
    let member = membership.members.iter().find(|m| m.id == id)?;
    let (raft_addr, client_addr) = expected;
    let same = member.raft_addr == *raft_addr && member.client_addr.as_deref() == Some(client_addr);
    same.then_some(!membership.change_in_progress)
}

/// `RAFT.NODES`: the members as this node sees them, one line each.
pub fn raft_nodes(node: &KvNode, args: &[Vec<u8>]) -> Reply {
    if args.len() != 1 {
        return Reply::wrong_arity("raft.nodes");
    }
    let membership = node.membership();
    Reply::Verbatim(nodes_text(&membership, node.leader_id(), node.id()))
}

/// The lines of `RAFT.NODES`, one per member in id order, each of eight
/// fields separated by one space:
///
/// `<id> <raft-addr> <client-addr> <voter|learner> <flags> match=<n> lag=<n> <connected|disconnected>`
///
/// * `client-addr` is `-` while unknown;
/// * `flags` are, comma-separated, `leader` (the leader this node knows),
///   `myself` (the node answering) and `promote-when-caught-up` (a learner
///   the leader will promote), or `-` for none;
/// * `match` and `lag` — how much of the leader's log the member is known to
///   hold, and how many entries it lacks — are known only on the leader;
///   elsewhere both are `-`;
/// * `connected` says whether the answering node can reach the member (a
///   follower seldom talks to other followers; the leader knows best).
pub fn nodes_text(membership: &Membership, leader: Option<NodeId>, me: NodeId) -> String {
    membership
        .members
        .iter()
        .map(|m| member_line(m, leader, me))
        .collect()
}

fn member_line(m: &MemberStatus, leader: Option<NodeId>, me: NodeId) -> String {
    let mut flags = Vec::new();
    if leader == Some(m.id) {
        flags.push("leader");
    }
    if m.id == me {
        flags.push("myself");
    }
    if m.suffrage == Suffrage::Learner && m.auto_promote {
        flags.push("promote-when-caught-up");
    }
    let flags = match flags.is_empty() {
        true => "-".to_string(),
        false => flags.join(","),
    };
    let known = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
    format!(
        "{} {} {} {} {flags} match={} lag={} {}\n",
        m.id,
        m.raft_addr,
        m.client_addr.as_deref().unwrap_or("-"),
        m.suffrage,
        known(m.match_index),
        known(m.lag),
        if m.connected {
            "connected"
        } else {
            "disconnected"
        }
    )
}

/// `RAFT.TRANSFER_LEADER [<id>]`: hands leadership to `id`, or to the most
/// up-to-date voter, and answers once it leads.
pub fn transfer_leader(node: &KvNode, args: &[Vec<u8>]) -> Reply {
    let target = match args {
        [_] => None,
        [_, id] => match node_id(id) {
            Ok(id) => Some(id),
            Err(refused) => return refused,
        },
        _ => return Reply::wrong_arity("raft.transfer_leader"),
    };
    let op = || match node.transfer_leadership(target) {
        Ok(id) => Ok(Ok(id)),
        Err(Error::Transfer(e @ TransferError::InProgress(_))) => {
            Ok(Err(Reply::Error(format!("TRYAGAIN {e}"))))
        }
        Err(Error::Transfer(e)) => Ok(Err(Reply::error(e.to_string()))),
        // The transfer was abandoned and this node leads again: a definite
        // answer, nothing changed.
        Err(e @ Error::TransferTimedOut { .. }) => Ok(Err(Reply::error(e.to_string()))),
        Err(e) => Err(e),
    };
    match on_leader(node, 0, "", op) {
        Ok(Ok(_)) => Reply::ok(),
        Ok(Err(reply)) | Err(reply) => reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: NodeId, suffrage: Suffrage, leader_view: bool) -> MemberStatus {
        MemberStatus {
            id,
            raft_addr: format!("127.0.0.1:{}", 7100 + id),
            client_addr: (id != 3).then(|| format!("127.0.0.1:{}", 7000 + id)),
            suffrage,
            auto_promote: suffrage == Suffrage::Learner && id == 4,
            incarnation: None,
            match_index: leader_view.then_some(100 + id),
            lag: leader_view.then_some(20 - id),
            replication: (leader_view && id != 1).then_some(crate::raft::ProgressState::Replicate),
            connected: id != 3,
        }
    }

    fn membership(leader_view: bool) -> Membership {
        Membership {
            config_index: 7,
            change_in_progress: false,
            members: vec![
                member(1, Suffrage::Voter, leader_view),
                member(2, Suffrage::Voter, leader_view),
                member(3, Suffrage::Voter, leader_view),
                member(4, Suffrage::Learner, leader_view),
                member(5, Suffrage::Learner, leader_view),
            ],
            transferring_to: None,
        }
    }

    #[test]
    fn nodes_lines_have_eight_fields_with_flags_and_progress() {
        assert_eq!(
            nodes_text(&membership(true), Some(1), 1),
            "1 127.0.0.1:7101 127.0.0.1:7001 voter leader,myself match=101 lag=19 connected\n\
             2 127.0.0.1:7102 127.0.0.1:7002 voter - match=102 lag=18 connected\n\
             3 127.0.0.1:7103 - voter - match=103 lag=17 disconnected\n\
             4 127.0.0.1:7104 127.0.0.1:7004 learner promote-when-caught-up match=104 lag=16 connected\n\
             5 127.0.0.1:7105 127.0.0.1:7005 learner - match=105 lag=15 connected\n"
        );
        let follower = nodes_text(&membership(false), Some(1), 2);
        assert!(follower
            .contains("\n2 127.0.0.1:7102 127.0.0.1:7002 voter myself match=- lag=- connected\n"));
        assert!(follower.lines().all(|l| l.split(' ').count() == 8));
    }

    #[test]
    fn ids_and_addresses_are_checked() {
        assert_eq!(parse_node_id("7"), Some(7));
        for bad in ["0", "-1", "+1", "x", "", " 1", "99999999999999999999999"] {
            assert_eq!(parse_node_id(bad), None, "{bad}");
        }
        assert_eq!(host_port("127.0.0.1:7001"), Some(("127.0.0.1", 7001)));
        assert_eq!(host_port("[::1]:7001"), Some(("[::1]", 7001)));
        assert_eq!(host_port("db-1.example:0"), Some(("db-1.example", 0)));
        for bad in ["nope", ":7001", "h:", "h:70000", "h:+1", "h:-1"] {
            assert_eq!(host_port(bad), None, "{bad}");
        }
        assert!(
            address(b"h:0", "raft address").is_err(),
            "port 0 is no address"
        );
        assert!(address(b"h x:1", "raft address").is_err());
        assert_eq!(address(b"h:1", "raft address"), Ok("h:1".to_string()));
    }

    #[test]
    fn an_add_is_done_already_only_at_the_same_addresses_once_committed() {
        let mut m = membership(true);
        let at = |raft: &str, client: &str| (raft.to_string(), client.to_string());
        assert_eq!(
            already_added(&m, 4, &at("127.0.0.1:7104", "127.0.0.1:7004")),
            Some(true)
        );
        assert_eq!(
            already_added(&m, 4, &at("127.0.0.1:7999", "127.0.0.1:7004")),
            None
        );
        assert_eq!(already_added(&m, 9, &at("a:1", "b:2")), None);
        m.change_in_progress = true;
        assert_eq!(
            already_added(&m, 4, &at("127.0.0.1:7104", "127.0.0.1:7004")),
            Some(false)
        );
    }
}
