//! Redis Cluster's view of a raftnode cluster, for cluster-mode clients.
//!
//! A cluster-mode client (redis-py `RedisCluster`, go-redis `ClusterClient`,
//! Jedis, Lettuce, `redis-cli -c`) starts by asking any node for the
//! cluster's layout (`CLUSTER SLOTS` or `CLUSTER SHARDS`), then sends each
//! command to the master that owns its key's *hash slot*, and updates its
//! map whenever a node answers `-MOVED <slot> <host:port>`.
//!
//! A raftnode cluster is one shard: every key lives on every member, and only
//! the leader serves reads and writes. So it describes itself as one master
//! (the leader) owning all 16,384 slots, with the other members — the
//! configuration's voters and learners — as its replicas. While no leader is
//! known (an election is under way), or the one it knows has just dropped
//! its connection (a follower sees that at once when the leader's process
//! dies, before any election), a node names *itself* as
//! the master, so that clients keep sending it commands — which it holds
//! briefly and then answers `-MOVED` to the new leader, or `-TRYAGAIN`
//! (retried by cluster clients) — instead of being sent to a dead node or
//! finding no owner for their slots and giving up.
//!
//! Node ids are the Raft node ids written as 40 hex digits, the shape Redis
//! uses (node 3 is `000…0003`); a node's cluster-bus port is its Raft port.

use crate::kv::KvNode;
use crate::raft::message::NodeId;
use crate::redis::resp::Reply;

/// How many hash slots Redis Cluster divides keys into.
pub const SLOTS: u16 = 16_384;

/// The hash slot of `key`, exactly as Redis Cluster computes it: CRC16
/// (XMODEM) of the key mod 16,384 — or, if the key contains a `{...}` with
/// at least one byte between the first `{` and the first `}` after it, of
/// only those bytes (the *hash tag*), so that `{user1000}.following` and
/// `{user1000}.followers` share a slot.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0), bit by bit: keys are
/// short and this is not on a hot path worth a table.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A member's Redis Cluster node id: its Raft id as 40 hex digits.
pub fn node_name(id: NodeId) -> String {
    format!("{id:040x}")
}

/// One member as a cluster client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: NodeId,
    /// Where it serves clients, if this node knows (the configuration
    /// records it for members added with RAFT.NODE ADD; peers also tell it
    /// in their handshake).
    pub client: Option<(String, u16)>,
    /// The port of its Raft address: Redis's "cluster bus" port.
    pub bus_port: u16,
    pub master: bool,
    pub myself: bool,
    /// Whether this node can reach it, as far as it knows (see
    /// [`crate::node::Node::peer_reachable`]); always true for itself.
    pub connected: bool,
    /// How much of the Raft log it is known to hold: the leader knows its
    /// followers' match index; otherwise only a node's own is known.
    pub offset: Option<u64>,
}

/// The cluster as this node sees it now: the master first, then the other
/// members by id.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub members: Vec<Member>,
    pub term: u64,
}

impl Layout {
    /// The configuration's members — voters, and learners as replicas —
    /// as this node sees them now. This node is listed even before it is a
    /// member (a node waiting to be added), so that it always has a
    /// `myself`.
    pub fn of(node: &KvNode) -> Layout {
        let status = node.status();
        let membership = node.membership();
        let me = node.id();
        let is_member = |id: NodeId| membership.members.iter().any(|m| m.id == id);
        // The leader owns the slots once clients can be sent to it;
        // otherwise — none known, its address unknown, or its connection
        // just lost — this node stands in for it (see the module docs).
        let master = status
            .leader_id
            .filter(|&id| id == me || (node.peer_reachable(id) && is_member(id)))
            .filter(|&id| node.client_addr_of(id).is_some())
            .unwrap_or(me);
        let mut members: Vec<Member> = membership
            .members
            .iter()
            .map(|m| Member {
                id: m.id,
                client: m.client_addr.as_deref().and_then(split_addr),
                bus_port: match m.id == me {
                    true => node.raft_addr().port(),
                    false => split_addr(&m.raft_addr).map_or(0, |(_, port)| port),
                },
                master: m.id == master,
                myself: m.id == me,
                connected: m.connected,
                offset: match m.id == me {
                    true => Some(status.last_applied),
                    false => m.match_index,
                },
            })
            .collect();
        if !is_member(me) {
            members.push(Member {
                id: me,
                client: node.client_addr_of(me).as_deref().and_then(split_addr),
                bus_port: node.raft_addr().port(),
                master: master == me,
                myself: true,
                connected: true,
                offset: Some(status.last_applied),
            });
        }
        members.sort_by_key(|m| (!m.master, m.id));
        Layout {
            members,
            term: status.term,
        }
    }

    fn master(&self) -> Option<&Member> {
        self.members.first().filter(|m| m.master)
    }

    /// The members a client can be sent to: the master, then replicas with a
    /// known address that this node can reach (Redis likewise leaves failed
    /// replicas out of `CLUSTER SLOTS`).
    fn reachable(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|m| m.client.is_some() && (m.master || m.connected))
    }

    /// `CLUSTER SLOTS`: one range, 0–16383, served by the master and its
    /// replicas, each as `[ip, port, id, {}]`.
    pub fn slots(&self) -> Reply {
        if self.master().and_then(|m| m.client.as_ref()).is_none() {
            return Reply::Array(Vec::new());
        }
        let mut range = vec![Reply::Integer(0), Reply::Integer(i64::from(SLOTS - 1))];
        for m in self.reachable() {
            let (host, port) = m.client.clone().unwrap_or_default();
            range.push(Reply::Array(vec![
                Reply::Bulk(host.into_bytes()),
                Reply::Integer(i64::from(port)),
                Reply::Bulk(node_name(m.id).into_bytes()),
                Reply::Map(Vec::new()),
            ]));
        }
        Reply::Array(vec![Reply::Array(range)])
    }

    /// `CLUSTER SHARDS`: one shard, its slot range and its nodes.
    pub fn shards(&self) -> Reply {
        let bulk = |s: &str| Reply::Bulk(s.as_bytes().to_vec());
        let nodes = self
            .members
            .iter()
            .filter(|m| m.client.is_some())
            .map(|m| {
                let (host, port) = m.client.clone().unwrap_or_default();
                let health = if m.connected { "online" } else { "failed" };
                Reply::Map(vec![
                    (bulk("id"), bulk(&node_name(m.id))),
                    (bulk("port"), Reply::Integer(i64::from(port))),
                    (bulk("ip"), bulk(&host)),
                    (bulk("endpoint"), bulk(&host)),
                    (
                        bulk("role"),
                        bulk(if m.master { "master" } else { "replica" }),
                    ),
                    (
                        bulk("replication-offset"),
                        Reply::Integer(m.offset.unwrap_or(0) as i64),
                    ),
                    (bulk("health"), bulk(health)),
                ])
            })
            .collect();
        let slots = Reply::Array(vec![
            Reply::Integer(0),
            Reply::Integer(i64::from(SLOTS - 1)),
        ]);
        Reply::Array(vec![Reply::Map(vec![
            (bulk("slots"), slots),
            (bulk("nodes"), Reply::Array(nodes)),
        ])])
    }

    /// `CLUSTER NODES`: a line per member, in Redis's format:
    /// `<id> <ip:port@bus-port> <flags> <master-id|-> <ping-sent> <pong-recv>
    /// <config-epoch> <link-state> [<slots>]`.
    pub fn nodes(&self) -> String {
        let master_name = self.master().map(|m| node_name(m.id));
        let mut out = String::new();
        for m in &self.members {
            let mut flags = Vec::new();
            if m.myself {
                flags.push("myself");
            }
            flags.push(if m.master { "master" } else { "slave" });
            if !m.connected {
                flags.push("fail?");
            }
            let addr = match &m.client {
                Some((host, port)) => format!("{host}:{port}@{}", m.bus_port),
                None => {
                    flags.push("noaddr");
                    ":0@0".to_string()
                }
            };
            let of = match (&master_name, m.master) {
                (Some(name), false) => name.clone(),
                _ => "-".to_string(),
            };
            let link = if m.connected {
                "connected"
            } else {
                "disconnected"
            };
            out.push_str(&format!(
                "{} {addr} {} {of} 0 0 {} {link}",
                node_name(m.id),
                flags.join(","),
                self.term
            ));
            if m.master {
                out.push_str(&format!(" 0-{}", SLOTS - 1));
            }
            out.push('\n');
        }
        out
    }

    /// `CLUSTER INFO`: `field:value` lines.
    pub fn info(&self) -> String {
        let fields = [
            ("cluster_state", "ok".to_string()),
            ("cluster_slots_assigned", SLOTS.to_string()),
            ("cluster_slots_ok", SLOTS.to_string()),
            ("cluster_slots_pfail", "0".to_string()),
            ("cluster_slots_fail", "0".to_string()),
            ("cluster_known_nodes", self.members.len().to_string()),
            ("cluster_size", "1".to_string()),
            ("cluster_current_epoch", self.term.to_string()),
            ("cluster_my_epoch", self.term.to_string()),
        ];
        fields
            .iter()
            .map(|(field, value)| format!("{field}:{value}\r\n"))
            .collect()
    }
}

/// `host:port` split at its last colon (so `[::1]:7001` works too).
fn split_addr(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

/// The CLUSTER command: `SLOTS`, `SHARDS`, `NODES`, `MYID`, `INFO`,
/// `KEYSLOT key`, and `HELP`.
pub fn command(node: &KvNode, args: &[Vec<u8>]) -> Reply {
    let Some(sub) = args.get(1) else {
        return Reply::wrong_arity("cluster");
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_uppercase();
    let arity = match sub.as_str() {
        "KEYSLOT" => 3,
        "SLOTS" | "SHARDS" | "NODES" | "MYID" | "INFO" | "HELP" => 2,
        _ => {
            return Reply::Error(format!(
                "ERR unknown subcommand '{}'. Try CLUSTER HELP.",
                String::from_utf8_lossy(&args[1])
            ))
        }
    };
    if args.len() != arity {
        return Reply::wrong_arity(&format!("cluster|{}", sub.to_ascii_lowercase()));
    }
    match sub.as_str() {
        "KEYSLOT" => Reply::Integer(i64::from(key_slot(&args[2]))),
        "MYID" => Reply::Bulk(node_name(node.id()).into_bytes()),
        "SLOTS" => Layout::of(node).slots(),
        "SHARDS" => Layout::of(node).shards(),
        "NODES" => Reply::Verbatim(Layout::of(node).nodes()),
        "INFO" => Reply::Verbatim(Layout::of(node).info()),
        _ => Reply::Array(
            HELP.iter()
                .map(|line| Reply::Simple(line.to_string()))
                .collect(),
        ),
    }
}

const HELP: &[&str] = &[
    "CLUSTER <subcommand> [<arg> ...]. Subcommands are:",
    "INFO -- the cluster's state",
    "KEYSLOT <key> -- the hash slot of <key>",
    "MYID -- this node's id",
    "NODES -- the members, in Redis's CLUSTER NODES format",
    "SHARDS -- the one shard: all slots, its master (the Raft leader) and replicas",
    "SLOTS -- the slot range 0-16383 and the nodes that serve it",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slot_matches_redis_published_examples() {
        // From the CLUSTER KEYSLOT documentation.
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"foo{hash_tag}"), key_slot(b"hash_tag"));
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // The CRC16 check value from the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        // Values a real redis-server 7.0.15 gave for CLUSTER KEYSLOT.
        assert_eq!(key_slot(b"nokey"), 11187);
        assert_eq!(key_slot(b"foo"), 12182);
    }

    #[test]
    fn hash_tag_edge_cases() {
        // Empty key: CRC16 of nothing is 0.
        assert_eq!(key_slot(b""), 0);
        // `{}` is no tag: the whole key is hashed.
        assert_eq!(key_slot(b"{}abc"), crc16(b"{}abc") % SLOTS);
        assert_ne!(key_slot(b"{}abc"), key_slot(b"abc"));
        // `{` without `}` is no tag.
        assert_eq!(key_slot(b"{abc"), crc16(b"{abc") % SLOTS);
        // The tag may be in the middle; only the first `{` and the first `}`
        // after it count.
        assert_eq!(key_slot(b"pre{tag}post"), key_slot(b"tag"));
        assert_eq!(key_slot(b"{a}{b}"), key_slot(b"a"));
        assert_eq!(key_slot(b"x{{a}}"), key_slot(b"{a"));
        // An empty first tag disables hashing by tag, even if another follows.
        assert_eq!(key_slot(b"{}{b}"), crc16(b"{}{b}") % SLOTS);
        // A `}` before the `{` does not close anything.
        assert_eq!(key_slot(b"}x{tag}"), key_slot(b"tag"));
    }

    fn member(id: NodeId, master: bool, myself: bool, connected: bool) -> Member {
        Member {
            id,
            client: Some(("127.0.0.1".into(), 7000 + id as u16)),
            bus_port: 7100 + id as u16,
            master,
            myself,
            connected,
            offset: Some(10),
        }
    }

    fn layout() -> Layout {
        Layout {
            members: vec![
                member(2, true, false, true),
                member(1, false, true, true),
                member(3, false, false, false),
            ],
            term: 4,
        }
    }

    #[test]
    fn cluster_slots_has_one_range_with_master_then_reachable_replicas() {
        let bulk = |s: &str| Reply::Bulk(s.as_bytes().to_vec());
        let node = |id: u64| {
            Reply::Array(vec![
                bulk("127.0.0.1"),
                Reply::Integer(7000 + id as i64),
                bulk(&node_name(id)),
                Reply::Map(vec![]),
            ])
        };
        assert_eq!(
            layout().slots(),
            Reply::Array(vec![Reply::Array(vec![
                Reply::Integer(0),
                Reply::Integer(16383),
                node(2),
                node(1),
            ])])
        );
    }

    #[test]
    fn cluster_shards_lists_every_node_with_role_and_health() {
        let Reply::Array(shards) = layout().shards() else {
            panic!("not an array")
        };
        assert_eq!(shards.len(), 1);
        let Reply::Map(shard) = &shards[0] else {
            panic!("shard is not a map")
        };
        assert_eq!(shard[0].0, Reply::Bulk(b"slots".to_vec()));
        assert_eq!(
            shard[0].1,
            Reply::Array(vec![Reply::Integer(0), Reply::Integer(16383)])
        );
        let Reply::Array(nodes) = &shard[1].1 else {
            panic!("nodes is not an array")
        };
        let field = |node: &Reply, name: &str| match node {
            Reply::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| *k == Reply::Bulk(name.as_bytes().to_vec()))
                .map(|(_, v)| v.clone())
                .unwrap(),
            _ => panic!("node is not a map"),
        };
        let roles: Vec<_> = nodes.iter().map(|n| field(n, "role")).collect();
        let health: Vec<_> = nodes.iter().map(|n| field(n, "health")).collect();
        let b = |s: &str| Reply::Bulk(s.as_bytes().to_vec());
        assert_eq!(roles, vec![b("master"), b("replica"), b("replica")]);
        assert_eq!(health, vec![b("online"), b("online"), b("failed")]);
        assert_eq!(field(&nodes[0], "id"), b(&node_name(2)));
        assert_eq!(field(&nodes[0], "port"), Reply::Integer(7002));
    }

    #[test]
    fn cluster_nodes_lines_are_in_redis_format() {
        let m = node_name(2);
        assert_eq!(
            layout().nodes(),
            format!(
                "{m} 127.0.0.1:7002@7102 master - 0 0 4 connected 0-16383\n\
                 {} 127.0.0.1:7001@7101 myself,slave {m} 0 0 4 connected\n\
                 {} 127.0.0.1:7003@7103 slave,fail? {m} 0 0 4 disconnected\n",
                node_name(1),
                node_name(3)
            )
        );
        assert_eq!(node_name(3), "0000000000000000000000000000000000000003");
    }

    #[test]
    fn unknown_client_address_is_noaddr_and_left_out_of_slots() {
        let mut l = layout();
        l.members[2].client = None;
        assert!(l.nodes().contains(":0@0 slave,fail?,noaddr"));
        let Reply::Array(ranges) = l.slots() else {
            panic!()
        };
        let Reply::Array(range) = &ranges[0] else {
            panic!()
        };
        assert_eq!(range.len(), 4, "range, master and one replica");
    }

    #[test]
    fn cluster_info_reports_one_healthy_shard() {
        let info = layout().info();
        assert!(info.starts_with("cluster_state:ok\r\n"));
        assert!(info.contains("cluster_slots_assigned:16384\r\n"));
        assert!(info.contains("cluster_known_nodes:3\r\n"));
        assert!(info.contains("cluster_size:1\r\n"));
        assert!(info.contains("cluster_current_epoch:4\r\n"));
    }
}
