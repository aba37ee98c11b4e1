//! What a peer connection's handshake checks, on both ends: the cluster,
//! the data dir's incarnation against the one the configuration recorded,
//! and whether the other node was removed. See [`super::wire`] for the
//! frames.

use super::shared::Shared;
use super::wire::{Hello, HelloReply};
use crate::raft::message::{Index, NodeId};
use crate::raft::Ready;
use log::{error, warn};

/// Nodes that are not members whose addresses a node remembers from their
/// handshakes, at most (members' are always kept): a stranger cannot make it
/// remember without bound.
const MAX_STRANGERS: usize = 64;

impl Shared {
    /// This node's [`Hello`] to `peer`.
    pub(crate) fn hello(&self, peer: NodeId) -> Hello {
        Hello {
            cluster_id: self.config.cluster_id.clone(),
            from: self.config.id,
            to: peer,
            client_addr: self.config.client_addr.clone(),
            raft_addr: self.config.raft_addr.clone(),
            incarnation: self.incarnation,
        }
    }
}

/// The listener's side: the reply to `hello`. An accepted peer's addresses
/// and incarnation are remembered.
pub(crate) fn answer(shared: &Shared, hello: &Hello) -> HelloReply {
    let config = &shared.config;
    let refuse = HelloReply::refused;
    // Within the handshake frame's limit, but over what any node sends.
    if let Some(reason) = hello.oversized_field() {
        return refuse(format!(
            "node {}'s hello is malformed: {reason}",
            hello.from
        ));
    }
    if hello.cluster_id != config.cluster_id {
        return refuse(format!(
            "node {} belongs to cluster {:?}, this is {:?}",
            hello.from, hello.cluster_id, config.cluster_id
        ));
    }
    if hello.to != config.id {
        return refuse(format!(
            "node {} meant to reach node {}, this is node {}",
            hello.from, hello.to, config.id
        ));
    }
    if hello.from == config.id {
        return refuse(format!("node {} is this node's own id", hello.from));
    }
    if let Some(index) = removed_at(shared, hello.from, hello.incarnation) {
        return HelloReply::Removed { index };
    }
    // A data dir other than the one recorded for the peer is not refused
    // here: this node's configuration may be the stale one (the peer was
    // removed and added back with a new dir while this node was down), and
    // then only the peer can bring it up to date. The connection is
    // accepted, and the listener does not count what the peer says as a
    // voter until the incarnations agree (see `check_incarnation`).
    remember(shared, hello);
    HelloReply::Accepted {
        incarnation: shared.incarnation,
    }
}

/// The index of the committed entry that removed `peer`, whose data dir
/// has `incarnation` (0: unknown), if one did and it was not added back
/// since.
pub(crate) fn removed_at(shared: &Shared, peer: NodeId, incarnation: u64) -> Option<Index> {
    let core = shared.core.lock();
    let (_, committed) = core.configuration_at(core.commit_index());
    if core.configuration().contains(peer) {
        return None;
    }
    committed.removal_of(peer, incarnation)
}

/// Whether `incarnation` is the one the configuration recorded for `peer`
/// (or none is recorded yet: then the leader learns it, to record it). If
/// not, says so loudly: either the peer's data dir was wiped or replaced —
/// it forgot its votes and log, and its votes and acknowledgements must not
/// count — or this node's configuration is behind (the peer was removed
/// and added back with a new dir since). Both ends of the connection then
/// treat the peer as *unverified*: nothing it answers as a voter (votes,
/// acknowledgements) is stepped, and no AppendEntries are sent to it, until
/// this node's configuration records the same incarnation; its requests
/// (AppendEntries if it leads, vote requests) are heard, which is how a
/// node that is behind catches up. (The peer itself, if wiped, finds its
/// old incarnation in the configuration it receives, and neither votes nor
/// campaigns.)
pub(crate) fn check_incarnation(
    shared: &Shared,
    peer: NodeId,
    incarnation: u64,
) -> Result<(), String> {
    if incarnation_matches(shared, peer, incarnation) {
        shared.with_core(|core| core.learn_incarnation(peer, incarnation));
        return Ok(());
    }
    let recorded = (shared.members.lock().members.get(&peer)).and_then(|m| m.incarnation);
    let reason = format!(
        "node {peer} has data dir incarnation {incarnation:016x}, but the cluster recorded \
         {:016x} for it: its data dir was wiped or replaced, so it has forgotten its votes and \
         log and must not rejoin under its old identity (its votes and acknowledgements are not \
         counted). Remove it (RAFT.NODE REMOVE {peer}) and add it back (start it with an empty \
         data dir and --join). (Or this node's configuration is behind, and will catch up.)",
        recorded.unwrap_or(0)
    );
    error!(
        "node {}: not counting node {peer}: {reason}",
        shared.config.id
    );
    Err(reason)
}

/// Whether the configuration records `incarnation` for `peer`, or none.
pub(crate) fn incarnation_matches(shared: &Shared, peer: NodeId, incarnation: u64) -> bool {
    let recorded = (shared.members.lock().members.get(&peer)).and_then(|m| m.incarnation);
    recorded.is_none_or(|r| r == incarnation)
}

/// Remembers where an accepted peer serves clients and listens for peers.
fn remember(shared: &Shared, hello: &Hello) {
    let member = shared.members.lock().contains(hello.from);
    let mut client_addrs = shared.client_addrs.lock();
    if let Some(addr) = &hello.client_addr {
        if member || client_addrs.len() < MAX_STRANGERS {
            client_addrs.insert(hello.from, addr.clone());
        }
    }
    let mut advertised = shared.advertised.lock();
    if member || advertised.len() < MAX_STRANGERS {
        advertised.insert(hello.from, hello.raft_addr.clone());
    }
}

/// A peer that committed this node's removal told it so: record it, as the
/// core would have had it seen the entry commit.
pub(crate) fn told_removed(shared: &Shared, peer: NodeId, index: Index) {
    if shared.removed.lock().is_some() {
        return;
    }
    warn!(
        "node {}: node {peer} says this node was removed from the cluster at index {index}",
        shared.config.id
    );
    let _ = shared.to_writer.send(Ready {
        removed: Some(index),
        ..Ready::default()
    });
}
