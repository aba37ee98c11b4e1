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
    if let Err(reason) = check_incarnation(shared, hello.from, hello.incarnation) {
        return refuse(reason);
    }
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
/// (or none is recorded yet: then the leader learns it, to record it).
pub(crate) fn check_incarnation(
    shared: &Shared,
    peer: NodeId,
    incarnation: u64,
) -> Result<(), String> {
    let recorded = (shared.members.lock().members.get(&peer)).and_then(|m| m.incarnation);
    match recorded {
        Some(recorded) if recorded != incarnation => {
            let reason = format!(
                "node {peer} has data dir incarnation {incarnation:016x}, but the cluster \
                 recorded {recorded:016x} for it: its data dir was wiped or replaced, so it has \
                 forgotten its votes and log and must not rejoin under its old identity. Remove \
                 it (RAFT.NODE REMOVE {peer}) and add it back (start it with an empty data dir \
                 and --join)"
            );
            error!("node {}: refusing node {peer}: {reason}", shared.config.id);
            Err(reason)
        }
        _ => {
            shared.with_core(|core| core.learn_incarnation(peer, incarnation));
            Ok(())
        }
    }
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
