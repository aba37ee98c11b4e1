//! Running a request on the leader: waiting out a failover or a leadership
//! transfer for a moment, then answering `-MOVED` or `-TRYAGAIN` from a node
//! that is not the leader. Writes, reads and the membership commands all go
//! through here, so they redirect alike.

use crate::kv::KvNode;
use crate::node::error::Error;
use crate::redis::resp::Reply;
use std::time::Instant;

/// Runs `op` on the leader. A node that knows no leader, or whose leader has
/// just dropped its connection, waits up to two election timeouts for a
/// reachable leader (the proposal or read was refused, so trying again is
/// safe), which spares clients most `-TRYAGAIN`s — and redirects to a dead
/// node — during a failover; a leader transferring its leadership is waited
/// for likewise. Then a follower answers where to go instead:
/// `-MOVED` with `slot`, the slot of the command's first key. A timeout's
/// error says `TIMEOUT <timeout_note><why>`.
pub fn on_leader<T>(
    node: &KvNode,
    slot: u16,
    timeout_note: &str,
    mut op: impl FnMut() -> Result<T, Error>,
) -> Result<T, Reply> {
    let config = node.config();
    let deadline = Instant::now() + 2 * config.election_timeout_max;
    let gone = |leader: Option<u64>| leader.is_none_or(|id| !node.peer_reachable(id));
    loop {
        match op() {
            Err(Error::NotLeader { leader }) if gone(leader) && Instant::now() < deadline => {
                std::thread::sleep(config.tick);
            }
            Err(Error::NotLeader { leader }) => return Err(redirect(node, leader, slot)),
            // A leadership transfer pauses writes for at most an election
            // timeout; then this node leads again, or redirects.
            Err(Error::Transferring { .. }) if Instant::now() < deadline => {
                std::thread::sleep(config.tick);
            }
            Err(e @ Error::Transferring { .. }) => {
                return Err(Reply::Error(format!("TRYAGAIN {e}")))
            }
            Err(e @ Error::CommandTooLarge { .. }) => return Err(Reply::error(e.to_string())),
            // Timeout, shutdown and storage failure all leave the outcome
            // unknown. (Refused membership changes and transfers are
            // definite; their callers answer them before they get here.)
            Err(e) => return Err(Reply::Error(format!("TIMEOUT {timeout_note}{e}"))),
            Ok(value) => return Ok(value),
        }
    }
}

/// Where to send a client that asked the wrong node.
pub fn redirect(node: &KvNode, leader: Option<u64>, slot: u16) -> Reply {
    match leader {
        Some(id) if id == node.id() => Reply::Error("TRYAGAIN leadership is changing".into()),
        Some(id) if !node.peer_reachable(id) => Reply::Error(format!(
            "TRYAGAIN leader {id} cannot be reached from this node; an election may be under way"
        )),
        Some(id) => match node.client_addr_of(id) {
            Some(addr) => Reply::Error(format!("MOVED {slot} {addr}")),
            None => Reply::Error(format!(
                "TRYAGAIN leader {id} has not told this node its client address yet"
            )),
        },
        None => Reply::Error("TRYAGAIN no leader known; an election is under way".into()),
    }
}
