//! INFO: the node described in Redis's sections, and the client port's
//! counters behind them.
//!
//! `INFO` (or `INFO default`, `all`, `everything`) answers every section;
//! `INFO raft`, `INFO server clients` and so on answer only the sections
//! named, case-insensitively; an unknown name adds nothing, as in Redis.
//! Sections are, in Redis's order with the Raft state where Redis has its
//! replication: `# Server`, `# Clients`, `# Stats`, `# Raft`, `# Cluster`,
//! `# Keyspace`. The `# Raft` section keeps every field INFO had before it
//! gained sections, with the same names and values, so scripts reading
//! `role:`, `term:` or `leader_id:` keep working; `members` still lists the
//! voters only.
//!
//! Membership fields of `# Raft`: `members` (voters) and `learners`, each
//! comma-separated ids; `config_index`, the index of the entry that set the
//! configuration in force (0: the bootstrap one); `config_change_in_progress`,
//! 1 while that entry is not committed; `transferring_to`, the target of a
//! leadership transfer this leader has under way (empty if none); and
//! `removed_at`, the index of the entry that removed this node from the
//! cluster (empty unless it was).

use crate::redis::port::Port;
use std::sync::OnceLock;

/// The Redis version whose commands and replies raftnode follows (and was
/// checked against), reported as `redis_version` and in `HELLO`, as other
/// Redis-compatible servers do: clients use it to decide what to send.
pub const REDIS_VERSION: &str = "7.0.15";

/// Every section, in the order INFO writes them.
const SECTIONS: &[&str] = &["server", "clients", "stats", "raft", "cluster", "keyspace"];

/// The INFO text for the sections `args` (INFO's arguments) ask for.
pub fn info(port: &Port, args: &[Vec<u8>]) -> String {
    let asked: Vec<String> = args
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let everything = asked.is_empty()
        || asked
            .iter()
            .any(|a| matches!(a.as_str(), "all" | "everything" | "default"));
    let mut out = String::new();
    for &section in SECTIONS {
        if !everything && !asked.iter().any(|a| a == section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let (title, fields) = match section {
            "server" => ("Server", owned(server(port))),
            "clients" => ("Clients", owned(clients(port))),
            "stats" => ("Stats", owned(stats(port))),
            "raft" => ("Raft", raft(port)),
            "cluster" => ("Cluster", owned(vec![("cluster_enabled", "1".into())])),
            _ => ("Keyspace", owned(keyspace(port))),
        };
        out.push_str(&format!("# {title}\r\n"));
        for (field, value) in fields {
            out.push_str(&format!("{field}:{value}\r\n"));
        }
    }
    out
}

type Fields = Vec<(&'static str, String)>;

/// Fields whose names are not all known in advance (one per follower).
fn owned(fields: Fields) -> Vec<(String, String)> {
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn server(port: &Port) -> Fields {
    vec![
        ("redis_version", REDIS_VERSION.to_string()),
        ("raftnode_version", env!("CARGO_PKG_VERSION").to_string()),
        ("redis_mode", "cluster".to_string()),
        ("os", os().to_string()),
        ("arch_bits", usize::BITS.to_string()),
        ("process_id", std::process::id().to_string()),
        ("tcp_port", port.addr.port().to_string()),
        (
            "uptime_in_seconds",
            port.stats.uptime().as_secs().to_string(),
        ),
    ]
}

/// `Linux 6.1.0 x86_64`, as Redis prints `uname`.
fn os() -> &'static str {
    static OS: OnceLock<String> = OnceLock::new();
    OS.get_or_init(|| {
        let name = match std::env::consts::OS {
            "linux" => "Linux",
            "macos" => "Darwin",
            other => other,
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let parts = [name, release.trim(), std::env::consts::ARCH];
        parts
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    })
}

fn clients(port: &Port) -> Fields {
    vec![
        (
            "connected_clients",
            port.stats.connected_clients().to_string(),
        ),
        ("maxclients", port.limits.max_clients.to_string()),
    ]
}

fn stats(port: &Port) -> Fields {
    let s = &port.stats;
    vec![
        (
            "total_connections_received",
            s.connections_received().to_string(),
        ),
        (
            "total_commands_processed",
            s.commands_processed().to_string(),
        ),
        ("instantaneous_ops_per_sec", s.ops_per_sec().to_string()),
        ("rejected_connections", s.connections_rejected().to_string()),
    ]
}

fn raft(port: &Port) -> Vec<(String, String)> {
    let node = &port.node;
    let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
    let m = node.metrics();
    let s = node.status();
    let config = node.config();
    let leader_addr = s.leader_id.and_then(|id| node.client_addr_of(id));
    let list = |ids: &[u64]| {
        ids.iter()
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let transferring_to = node.membership().transferring_to;
    let or_empty = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    let mut fields = vec![
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
        // The voters (the field's meaning before learners existed).
        ("members", list(&s.members)),
        ("learners", list(&s.learners)),
        ("config_index", s.config_index.to_string()),
        (
            "config_change_in_progress",
            u8::from(s.config_change_in_progress).to_string(),
        ),
        ("transferring_to", or_empty(transferring_to)),
        ("removed_at", or_empty(node.removed())),
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
        ("sessions", node.with_state(|kv| kv.sessions()).to_string()),
        (
            "session_tombstones",
            node.with_state(|kv| kv.session_tombstones()).to_string(),
        ),
    ];
    fields.push(("followers_repaired", m.followers_repaired.to_string()));
    fields.push(("log_syncs", m.log_syncs.to_string()));
    fields.extend(snapshot_fields(port));
    let mut fields = owned(fields);
    fields.extend(follower_fields(port));
    fields
}

/// On the leader, one line per other member, as Redis lists its replicas
/// (`slave0:ip=...,state=online,offset=...,lag=...`):
/// `follower_2:state=replicate,match_index=120,lag=0,connected=1`, where
/// `state` is how it is being replicated to — `probe` (looking for where
/// the logs match), `replicate` (pipelining) or `snapshot` (being sent the
/// snapshot). Nothing on other nodes.
fn follower_fields(port: &Port) -> Vec<(String, String)> {
    let own = port.node.id();
    port.node
        .membership()
        .members
        .into_iter()
        .filter(|m| m.id != own)
        .filter_map(|m| {
            let state = m.replication?;
            Some((
                format!("follower_{}", m.id),
                format!(
                    "state={state},match_index={},lag={},connected={}",
                    m.match_index.unwrap_or(0),
                    m.lag.unwrap_or(0),
                    u8::from(m.connected)
                ),
            ))
        })
        .collect()
}

/// Snapshots and the compacted log (§7).
fn snapshot_fields(port: &Port) -> Fields {
    let s = port.node.snapshot_status();
    let sending: Vec<String> = s
        .sending
        .iter()
        .map(|(peer, (sent, total))| {
            format!("{peer}:{}%:{sent}/{total}", sent * 100 / (*total).max(1))
        })
        .collect();
    vec![
        ("snapshot_index", s.index.to_string()),
        ("snapshot_term", s.term.to_string()),
        ("snapshot_bytes", s.bytes.to_string()),
        ("log_first_index", s.log_first_index.to_string()),
        ("snapshots_taken", s.taken.to_string()),
        ("snapshots_installed", s.installed.to_string()),
        ("snapshots_failed", s.failed.to_string()),
        ("snapshot_in_progress", u8::from(s.in_progress).to_string()),
        ("snapshot_sending", sending.join(",")),
        (
            "snapshot_entries",
            port.node.config().snapshot_entries.to_string(),
        ),
        (
            "snapshot_keep",
            port.node.config().snapshot_keep.to_string(),
        ),
    ]
}

/// `db0:keys=N,expires=N,avg_ttl=MS`, only when there are keys (Redis
/// leaves out empty databases): this node's applied state, with the keys
/// past their deadlines whose deletion is not applied yet.
fn keyspace(port: &Port) -> Fields {
    let now = crate::kv::now_ms();
    let (keys, expires, avg_ttl) = port.node.with_state(|kv| {
        let e = kv.expiries();
        (kv.len(), e.len(), e.average_ttl(now))
    });
    match keys {
        0 => Vec::new(),
        keys => vec![(
            "db0",
            format!("keys={keys},expires={expires},avg_ttl={avg_ttl}"),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_names_the_system_and_machine() {
        assert!(os().ends_with(std::env::consts::ARCH), "{}", os());
    }
}
