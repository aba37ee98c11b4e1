//! `raftnode run --join HOST:PORT`: asking a running cluster to add this
//! node.
//!
//! A node started with `--join` on a new data dir has no configuration: it
//! serves its ports and waits for a leader to add it. This thread asks for
//! that: it sends `RAFT.NODE ADD <id> <raft-addr> <client-addr>` to the
//! member at `HOST:PORT`, follows `-MOVED` to the leader, and retries until
//! the cluster answers — with backoff from 100 ms doubling to 2 s, for as
//! long as it takes (the cluster may be electing a leader, or busy with
//! another change). `+OK` means this node is now a learner; the leader
//! promotes it to voter once it has caught up. A definite `-ERR` (say, the
//! id already belongs to another node) ends the attempt, and the caller
//! exits: retrying cannot help, and a node that silently never joins is
//! worse than one that stops.
//!
//! A node that is already a member (a restart, or an earlier attempt whose
//! answer was lost) sends nothing; and the leader answers a repeated ADD of
//! the same node at the same addresses with `+OK`.

use super::error::CliError;
use crate::kv::KvNode;
use crate::raft::message::NodeId;
use crate::redis::client::{Client, ClientError};
use crate::redis::resp::{self, Reply};
use log::{debug, error, info, warn};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The first wait after a failure; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A new member normally hears from the leader within a heartbeat; a much
/// longer silence is worth a warning.
const REPLICATION_EXPECTED_WITHIN: Duration = Duration::from_secs(10);

/// What to ask for, and whom.
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub(super) id: NodeId,
    /// Where peers reach this node (the `--raft-addr` as given, or the port
    /// bound for `:0`).
    pub(super) raft_addr: String,
    pub(super) client_addr: String,
    /// A member's client address (`--join`).
    pub(super) via: String,
}

/// Starts the thread that gets this node added, unless it is a member
/// already. The thread ends once it is added (`Ok`) or definitely refused
/// (`Err`, which the caller turns into the process's exit).
pub(super) fn spawn(
    node: Arc<KvNode>,
    request: Request,
) -> Result<Option<JoinHandle<Result<(), CliError>>>, CliError> {
    if is_member(&node, request.id) {
        info!(
            "node {}: already a member of the cluster; not asking {} to add it",
            request.id, request.via
        );
        return Ok(None);
    }
    thread::Builder::new()
        .name(format!("join-{}", request.id))
        .spawn(move || join(&node, &request))
        .map(Some)
        .map_err(|source| CliError::Thread {
            name: "join",
            source,
        })
}

fn is_member(node: &KvNode, id: NodeId) -> bool {
    node.membership().members.iter().any(|m| m.id == id)
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    Added,
    /// Worth retrying: the kind (each is logged once) and what happened.
    Retry(&'static str, String),
    /// The cluster refused, for good.
    Refused(String),
}

/// Asks until added or refused.
fn join(node: &KvNode, request: &Request) -> Result<(), CliError> {
    let id = request.id;
    let command: Vec<Vec<u8>> = [
        "RAFT.NODE",
        "ADD",
        &id.to_string(),
        &request.raft_addr,
        &request.client_addr,
    ]
    .iter()
    .map(|w| w.as_bytes().to_vec())
    .collect();
    info!(
        "node {id}: asking the cluster via {} to add it (raft {}, clients {})",
        request.via, request.raft_addr, request.client_addr
    );
    let mut backoff = FIRST_BACKOFF;
    let mut logged = BTreeSet::new();
    loop {
        // Each attempt starts again from the address given: the leader a
        // MOVED named last time may be gone.
        let mut client = Client::new(request.via.clone()).retry_for(Duration::ZERO);
        match classify(client.call(&command)) {
            Attempt::Added => {
                info!(
                    "node {id}: joined the cluster via {}; waiting to be promoted",
                    request.via
                );
                await_first_entries(node, id);
                return Ok(());
            }
            Attempt::Refused(reason) => {
                error!(
                    "node {id}: the cluster refused to add this node (via {}): {reason}",
                    request.via
                );
                return Err(CliError::JoinRefused {
                    via: request.via.clone(),
                    reason,
                });
            }
            Attempt::Retry(kind, what) => {
                // Once per kind: a cluster that is down for an hour should
                // not fill the log.
                if logged.insert(kind) {
                    warn!(
                        "node {id}: cannot join via {} yet ({what}); retrying every {} ms at \
                         most (further failures of this kind are logged at debug level)",
                        request.via,
                        MAX_BACKOFF.as_millis()
                    );
                } else {
                    debug!("node {id}: cannot join via {} yet: {what}", request.via);
                }
            }
        }
        thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
        // The entry adding this node may have arrived although its answer
        // did not (a TIMEOUT, a lost connection).
        if is_member(node, id) {
            info!("node {id}: now a member of the cluster; waiting to be promoted");
            return Ok(());
        }
    }
}

/// Waits for the leader to replicate the configuration that adds this node;
/// says so if it does not come soon. The leader answers an ADD of a node
/// that is already a member at the same addresses with `+OK` — also for a
/// data dir wiped and restarted under its old id, which the cluster then
/// refuses (its peers tell it why, in this log): the operator must
/// RAFT.NODE REMOVE it first.
fn await_first_entries(node: &KvNode, id: NodeId) {
    let deadline = Instant::now() + REPLICATION_EXPECTED_WITHIN;
    while Instant::now() < deadline {
        if is_member(node, id) {
            return;
        }
        thread::sleep(FIRST_BACKOFF);
    }
    warn!(
        "node {id}: the cluster added this node, but after {} s no leader has replicated to it; \
         if peers refuse this data dir (see above), remove the node (RAFT.NODE REMOVE {id}) and \
         start it again with an empty data dir and --join",
        REPLICATION_EXPECTED_WITHIN.as_secs()
    );
}

/// Sorts an answer to RAFT.NODE ADD into done, worth retrying, or refused.
fn classify(answer: Result<Reply, ClientError>) -> Attempt {
    let text = match answer {
        Ok(Reply::Simple(ok)) if ok == "OK" => return Attempt::Added,
        Ok(Reply::Error(text)) => text,
        Ok(other) => {
            return Attempt::Refused(format!("unexpected answer {}", resp::render_human(&other)))
        }
        Err(e) => return Attempt::Retry("connection", e.to_string()),
    };
    let code = text.split_whitespace().next().unwrap_or_default();
    match code {
        // No leader yet, a change under way, an outcome unknown, or more
        // redirects than one call follows: all pass.
        "TRYAGAIN" => Attempt::Retry("tryagain", text),
        "TIMEOUT" => Attempt::Retry("timeout", text),
        "MOVED" => Attempt::Retry("moved", text),
        "CLUSTERDOWN" | "LOADING" | "BUSY" => Attempt::Retry("busy", text),
        _ => Attempt::Refused(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_done_retried_or_refused() {
        assert_eq!(classify(Ok(Reply::ok())), Attempt::Added);
        let error = |text: &str| classify(Ok(Reply::Error(text.into())));
        assert!(matches!(
            error("TRYAGAIN no leader known; an election is under way"),
            Attempt::Retry("tryagain", _)
        ));
        assert!(matches!(
            error("TIMEOUT timed out waiting for commit; outcome unknown"),
            Attempt::Retry("timeout", _)
        ));
        assert!(matches!(
            error("MOVED 0 127.0.0.1:7001"),
            Attempt::Retry("moved", _)
        ));
        assert_eq!(
            error("ERR node 4 is already a member"),
            Attempt::Refused("ERR node 4 is already a member".into())
        );
        let lost = ClientError::NoAddress { addr: "x:1".into() };
        assert!(matches!(
            classify(Err(lost)),
            Attempt::Retry("connection", _)
        ));
        assert!(matches!(
            classify(Ok(Reply::Integer(1))),
            Attempt::Refused(_)
        ));
    }
}
