//! The metrics endpoint: a node's state and counters in Prometheus's text
//! format, served over HTTP at `/metrics` (`raftnode run --metrics-addr`).
//!
//! * `text.rs` writes the exposition format (families, labels, histograms);
//! * `http.rs` is the smallest HTTP server that serves one page, with a
//!   fixed pool of threads and deadlines, so a slow or hostile scraper holds
//!   little;
//! * this file, [`render`], decides what is on the page: every number comes
//!   from what the layers below already keep (the node's
//!   [`status`](crate::node::Node::status), [`metrics`](crate::node::Node::metrics),
//!   [`membership`](crate::node::Node::membership) and
//!   [`snapshot_status`](crate::node::Node::snapshot_status), the client port's
//!   [`Stats`]). Nothing here is on a request's path: the
//!   counters are atomics updated where things happen, and are only read
//!   here, once per scrape.
//!
//! # Dependencies
//!
//! This layer sits between the client port and the command line: it may
//! use [`crate::redis`] (the port's counters), [`crate::kv`] (the node type
//! and its key count), [`crate::node`] (status, counters, sockets),
//! [`crate::storage`], [`crate::raft`] types and the codec. Only
//! [`crate::cli`] uses it; the layers below never know it exists, so they
//! count for anyone who asks, INFO included.

pub mod http;
pub mod text;

pub use http::{Limits, MetricsServer, Render};

use crate::kv::KvNode;
use crate::node::{Metrics, Status};
use crate::raft::RoleKind;
use crate::redis::port::Stats;
use std::sync::Arc;
use text::{Kind, Page};

/// A page renderer for [`MetricsServer`] over this node and client port.
pub fn renderer(node: Arc<KvNode>, stats: Arc<Stats>) -> Render {
    Arc::new(move || render(&node, &stats))
}

/// Every metric of `node` and its client port's `stats`, as one page.
pub fn render(node: &KvNode, stats: &Stats) -> String {
    let (status, metrics) = (node.status(), node.metrics());
    let mut page = Page::new();
    raft_state(&mut page, node, &status, &metrics);
    log_and_disk(&mut page, &metrics);
    peers(&mut page, node);
    reads_and_snapshots(&mut page, node, &metrics);
    clients(&mut page, node, stats);
    page.finish()
}

/// Who this node is, its role, term and indexes.
fn raft_state(page: &mut Page, node: &KvNode, s: &Status, m: &Metrics) {
    let id = s.id.to_string();
    let cluster = &node.config().cluster_id;
    page.family(
        "raftnode_info",
        Kind::Gauge,
        "Always 1; the labels say which node, cluster and version this is.",
    );
    page.sample(
        "raftnode_info",
        &[
            ("id", &id),
            ("cluster_id", cluster),
            ("version", env!("CARGO_PKG_VERSION")),
        ],
        1u64,
    );
    page.single(
        "raftnode_term",
        Kind::Gauge,
        "The current Raft term.",
        s.term,
    );
    page.family(
        "raftnode_role",
        Kind::Gauge,
        "1 for the role this node is in, 0 for the others.",
    );
    for role in [
        RoleKind::Follower,
        RoleKind::PreCandidate,
        RoleKind::Candidate,
        RoleKind::Leader,
    ] {
        let name = role.to_string();
        page.sample(
            "raftnode_role",
            &[("role", &name)],
            u64::from(s.role == role),
        );
    }
    page.single(
        "raftnode_leader_id",
        Kind::Gauge,
        "The id of the leader this node knows for its term; 0 if none.",
        s.leader_id.unwrap_or(0),
    );
    page.single(
        "raftnode_leader_changes_total",
        Kind::Counter,
        "Terms in which this node learnt of a leader (itself included), since it started.",
        m.leader_changes,
    );
    page.single(
        "raftnode_commit_index",
        Kind::Gauge,
        "The highest log index known committed.",
        s.commit_index,
    );
    page.single(
        "raftnode_applied_index",
        Kind::Gauge,
        "The highest log index applied to the key-value state.",
        s.last_applied,
    );
    page.single(
        "raftnode_last_log_index",
        Kind::Gauge,
        "The index of the last entry in this node's log.",
        s.last_log_index,
    );
    page.single(
        "raftnode_voters",
        Kind::Gauge,
        "Voting members in the configuration in force.",
        s.members.len() as u64,
    );
    page.single(
        "raftnode_learners",
        Kind::Gauge,
        "Learners (non-voting members) in the configuration in force.",
        s.learners.len() as u64,
    );
}

/// Proposals, commits, appends and the disk.
fn log_and_disk(page: &mut Page, m: &Metrics) {
    page.single(
        "raftnode_proposals_total",
        Kind::Counter,
        "Entries this node appended as leader (client writes and membership changes).",
        m.proposals,
    );
    page.single(
        "raftnode_entries_committed_total",
        Kind::Counter,
        "Log entries this node learnt were committed.",
        m.entries_committed,
    );
    page.single(
        "raftnode_log_appended_entries_total",
        Kind::Counter,
        "Entries written to this node's log, as leader or follower.",
        m.entries_appended,
    );
    page.single(
        "raftnode_log_appended_bytes_total",
        Kind::Counter,
        "Bytes of the entries written to the log (each entry's payload and 36 bytes).",
        m.bytes_appended,
    );
    page.single(
        "raftnode_log_fsyncs_total",
        Kind::Counter,
        "Syncs (fsync) of the log; each makes a whole group of writes durable.",
        m.log_syncs,
    );
    page.histogram(
        "raftnode_log_fsync_seconds",
        "How long each log sync took.",
        &m.fsync_micros,
        1e6,
    );
    page.histogram(
        "raftnode_log_append_batch_entries",
        "Entries made durable by one log write and its sync (group commit).",
        &m.append_batch,
        1.0,
    );
}

/// The other members: reachable or not, and on the leader how far behind.
fn peers(page: &mut Page, node: &KvNode) {
    let own = node.id();
    let members = node.membership().members;
    let others: Vec<_> = members.iter().filter(|m| m.id != own).collect();
    let ids: Vec<String> = others.iter().map(|m| m.id.to_string()).collect();
    page.family(
        "raftnode_peer_connected",
        Kind::Gauge,
        "1 if this node can reach the member, 0 if its last attempt failed.",
    );
    for (m, id) in others.iter().zip(&ids) {
        page.sample(
            "raftnode_peer_connected",
            &[("peer", id)],
            u64::from(m.connected),
        );
    }
    page.family(
        "raftnode_peer_match_index",
        Kind::Gauge,
        "On the leader: how much of its log the member is known to hold.",
    );
    for (m, id) in others.iter().zip(&ids) {
        if let Some(index) = m.match_index {
            page.sample("raftnode_peer_match_index", &[("peer", id)], index);
        }
    }
    page.family(
        "raftnode_peer_match_lag",
        Kind::Gauge,
        "On the leader: entries of its log the member is not known to hold.",
    );
    for (m, id) in others.iter().zip(&ids) {
        if let Some(lag) = m.lag {
            page.sample("raftnode_peer_match_lag", &[("peer", id)], lag);
        }
    }
}

/// Linearizable reads, snapshots and compaction.
fn reads_and_snapshots(page: &mut Page, node: &KvNode, m: &Metrics) {
    page.single(
        "raftnode_reads_total",
        Kind::Counter,
        "Linearizable reads answered.",
        m.reads_served,
    );
    page.single(
        "raftnode_read_index_rounds_total",
        Kind::Counter,
        "Heartbeat rounds run to confirm leadership for reads (ReadIndex).",
        m.read_rounds,
    );
    page.single(
        "raftnode_lease_reads_total",
        Kind::Counter,
        "Reads served on the leader's lease, without a round.",
        m.lease_reads,
    );
    page.single(
        "raftnode_followers_repaired_total",
        Kind::Counter,
        "Followers found to have lost entries they had acknowledged.",
        m.followers_repaired,
    );
    let s = node.snapshot_status();
    page.single(
        "raftnode_snapshots_taken_total",
        Kind::Counter,
        "Snapshots this node took of its own state.",
        s.taken,
    );
    page.single(
        "raftnode_snapshots_installed_total",
        Kind::Counter,
        "Snapshots received from the leader and installed.",
        s.installed,
    );
    page.single(
        "raftnode_snapshots_failed_total",
        Kind::Counter,
        "Snapshots that could not be written or installed.",
        s.failed,
    );
    page.single(
        "raftnode_snapshot_index",
        Kind::Gauge,
        "The last log index the latest snapshot covers; 0 if none.",
        s.index,
    );
    page.single(
        "raftnode_snapshot_bytes",
        Kind::Gauge,
        "The latest snapshot's file size.",
        s.bytes,
    );
    page.single(
        "raftnode_log_first_index",
        Kind::Gauge,
        "The first entry the log still holds (earlier ones are compacted into the snapshot).",
        s.log_first_index,
    );
}

/// The client port and the keys.
fn clients(page: &mut Page, node: &KvNode, stats: &Stats) {
    page.single(
        "raftnode_clients_connected",
        Kind::Gauge,
        "Client connections open now.",
        stats.connected_clients(),
    );
    page.single(
        "raftnode_client_connections_total",
        Kind::Counter,
        "Client connections accepted.",
        stats.connections_received(),
    );
    page.single(
        "raftnode_client_connections_rejected_total",
        Kind::Counter,
        "Client connections refused (over --max-clients).",
        stats.connections_rejected(),
    );
    page.family(
        "raftnode_commands_total",
        Kind::Counter,
        "Replies to client commands by command (its first word; unknown for names outside \
         the command table) and outcome (ok, moved, tryagain, timeout, error).",
    );
    for (command, outcome, count) in stats.replies() {
        page.sample(
            "raftnode_commands_total",
            &[("command", command), ("outcome", outcome.name())],
            count,
        );
    }
    page.single(
        "raftnode_keys",
        Kind::Gauge,
        "Keys in this node's applied state.",
        node.with_state(|kv| kv.len()) as u64,
    );
    page.single(
        "raftnode_uptime_seconds",
        Kind::Gauge,
        "Seconds since the client port started.",
        stats.uptime().as_secs(),
    );
}
