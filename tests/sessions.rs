//! Exactly-once writes at their edges, end to end over the Redis port: a
//! three-node cluster whose sessions expire after a few entries (the limits
//! are the state machine's, so every node gets the same), a client speaking
//! RESP, and a node that catches up by snapshot and must then decide
//! expired sessions exactly as the others do.

mod support;

use raftnode::kv::{Kv, KvNode, SessionLimits};
use raftnode::raft::message::NodeId;
use raftnode::raft::RoleKind;
use raftnode::redis::resp::Reply;
use raftnode::redis::server::Server;
use raftnode::{Config, Node};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use support::process::{bulk, error_starting, ok, Resp};
use support::{agreed_leader, wait_for, WAIT};

/// Sessions live 30 entries; tombstones 1,000 more, at most 100.
const LIMITS: SessionLimits = SessionLimits {
    ttl: 30,
    tombstone_entries: 1_000,
    max_tombstones: 100,
};

/// One node and its client port.
struct Running {
    node: Arc<KvNode>,
    server: Option<Server>,
}

impl Running {
    fn halt(mut self) {
        if let Some(server) = self.server.take() {
            server.halt();
        }
        self.node.halt();
    }
}

/// In-process nodes with client ports, halted (ports and nodes) on drop,
/// whether the test passed or not.
struct SessionCluster {
    dir: tempfile::TempDir,
    raft_addrs: BTreeMap<NodeId, SocketAddr>,
    client_addrs: BTreeMap<NodeId, SocketAddr>,
    nodes: BTreeMap<NodeId, Running>,
}

impl SessionCluster {
    fn start(n: u64) -> SessionCluster {
        support::init_logging();
        let bind = || TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let raft: BTreeMap<NodeId, TcpListener> = (1..=n).map(|id| (id, bind())).collect();
        let client: BTreeMap<NodeId, TcpListener> = (1..=n).map(|id| (id, bind())).collect();
        let addr = |l: &TcpListener| l.local_addr().expect("a bound address");
        let mut cluster = SessionCluster {
            dir: tempfile::tempdir().expect("a temporary dir"),
            raft_addrs: raft.iter().map(|(&id, l)| (id, addr(l))).collect(),
            client_addrs: client.iter().map(|(&id, l)| (id, addr(l))).collect(),
            nodes: BTreeMap::new(),
        };
        for ((id, raft), (_, client)) in raft.into_iter().zip(client) {
            cluster.start_node(id, raft, client);
        }
        cluster
    }

    fn config(&self, id: NodeId) -> Config {
        let mut config = Config::new(id, self.dir.path().join(format!("node-{id}")));
        config.cluster_id = "sessions".into();
        config.raft_addr = self.raft_addrs[&id].to_string();
        config.client_addr = Some(self.client_addrs[&id].to_string());
        config.peers = (self.raft_addrs.iter())
            .filter(|(&peer, _)| peer != id)
            .map(|(&peer, addr)| (peer, addr.to_string()))
            .collect();
        // Snapshots and compaction every few entries, so that a node that
        // was down catches up by snapshot, tombstones included.
        config.snapshot_entries = 40;
        config.snapshot_keep = 5;
        config
    }

    fn start_node(&mut self, id: NodeId, raft: TcpListener, client: TcpListener) {
        let node =
            Node::start_with_listener(self.config(id), raft, Kv::with_session_limits(LIMITS))
                .expect("the node starts");
        let node = Arc::new(node);
        let server = Server::start(node.clone(), client).expect("the client port starts");
        self.nodes.insert(
            id,
            Running {
                node,
                server: Some(server),
            },
        );
    }

    fn halt(&mut self, id: NodeId) {
        if let Some(running) = self.nodes.remove(&id) {
            running.halt();
        }
    }

    /// Starts a halted node again on its data dir and old addresses.
    fn restart(&mut self, id: NodeId) {
        let rebind = |addr: SocketAddr| {
            wait_for(WAIT, "the node's port to be free again", || {
                TcpListener::bind(addr).ok()
            })
        };
        let raft = rebind(self.raft_addrs[&id]);
        let client = rebind(self.client_addrs[&id]);
        self.start_node(id, raft, client);
    }

    fn node(&self, id: NodeId) -> &KvNode {
        &self.nodes[&id].node
    }

    fn wait_for_leader(&self) -> NodeId {
        wait_for(WAIT, "a leader", || {
            let statuses: Vec<_> = self.nodes.values().map(|r| r.node.status()).collect();
            agreed_leader(&statuses)
        })
    }

    fn client(&self, id: NodeId) -> Resp {
        Resp::connect(self.client_addrs[&id].port()).expect("connect to the client port")
    }

    /// Waits until every running node has applied the same entries and
    /// reports the same `DEBUG DIGEST` over its client port; returns it.
    fn wait_same_digest(&self) -> String {
        wait_for(WAIT, "every node to reach the same digest", || {
            let applied: Vec<_> = (self.nodes.values())
                .map(|r| r.node.status().last_applied)
                .collect();
            if applied.iter().any(|&a| a != applied[0]) {
                return None;
            }
            let digests: Vec<Reply> = (self.nodes.keys())
                .map(|&id| self.client(id).call(&["DEBUG", "DIGEST"]))
                .collect();
            let same = digests.iter().all(|d| *d == digests[0]);
            match &digests[0] {
                Reply::Simple(hex) if same => Some(hex.clone()),
                _ => None,
            }
        })
    }
}

impl Drop for SessionCluster {
    fn drop(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.halt(id);
        }
    }
}

/// `count` plain SETs through `client`, one log entry each.
fn fill(client: &mut Resp, count: usize, tag: &str) {
    for i in 0..count {
        assert_eq!(client.call(&["SET", &format!("{tag}{i}"), "x"]), ok());
    }
}

#[test]
fn expired_sessions_are_answered_sessionexpired_on_every_node_snapshot_or_not() {
    let mut cluster = SessionCluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let mut c = cluster.client(leader);
    assert_eq!(c.call(&["CLIENT", "ID", "7"]), ok());
    assert_eq!(c.call(&["SEQ", "1", "INCR", "n"]), Reply::Integer(1));
    // Within the session's life a retry is answered, not applied.
    assert_eq!(c.call(&["SEQ", "1", "INCR", "n"]), Reply::Integer(1));

    // A follower goes down before the session expires: it will learn of
    // the expiry from a snapshot. Enough entries for the session to expire,
    // for snapshots, and for a compaction past the follower.
    cluster.halt(follower);
    let mut other = cluster.client(leader);
    fill(&mut other, 100, "a");

    // The retry of SEQ 1 after expiry: unknown outcome, not applied again.
    error_starting(
        &c.call(&["SEQ", "1", "INCR", "n"]),
        "SESSIONEXPIRED client 7 has no session",
    );
    // A later number: the same.
    error_starting(&c.call(&["SEQ", "2", "INCR", "n"]), "SESSIONEXPIRED");
    // A whole transaction under SEQ: the same, nothing applied.
    assert_eq!(c.call(&["MULTI"]), ok());
    assert_eq!(c.call(&["INCR", "n"]), Reply::Simple("QUEUED".into()));
    error_starting(&c.call(&["SEQ", "3", "EXEC"]), "SESSIONEXPIRED");
    assert_eq!(c.call(&["GET", "n"]), bulk("1"));

    // A brand-new client's SEQ 1 is applied.
    let mut fresh = cluster.client(leader);
    assert_eq!(fresh.call(&["CLIENT", "ID", "8"]), ok());
    assert_eq!(fresh.call(&["SEQ", "1", "INCR", "n"]), Reply::Integer(2));

    cluster.restart(follower);
    wait_for(WAIT, "the follower to install a snapshot", || {
        (cluster.node(follower).snapshot_status().installed > 0).then_some(())
    });
    let digest = cluster.wait_same_digest();
    assert_eq!(
        cluster
            .node(follower)
            .with_state(|kv| kv.session_tombstones()),
        1,
        "client 7's tombstone came with the snapshot"
    );

    // The restored node, leading, decides as the others did.
    let new_leader = cluster
        .node(leader)
        .transfer_leadership(Some(follower))
        .expect("the transfer completes");
    assert_eq!(new_leader, follower);
    wait_for(WAIT, "the follower to lead", || {
        (cluster.node(follower).status().role == RoleKind::Leader).then_some(())
    });
    let mut c = cluster.client(follower);
    assert_eq!(c.call(&["CLIENT", "ID", "7"]), ok());
    error_starting(&c.call(&["SEQ", "1", "INCR", "n"]), "SESSIONEXPIRED");
    assert_eq!(c.call(&["CLIENT", "ID", "8"]), ok());
    assert_eq!(c.call(&["SEQ", "1", "INCR", "n"]), Reply::Integer(2));
    assert_eq!(c.call(&["GET", "n"]), bulk("2"));
    // Nothing those changed but the log position.
    let after = cluster.wait_same_digest();
    assert_eq!(after, digest, "refusals and retries change no state");
}

/// `raftnode cli`'s client, told its session expired, hands the reply back
/// (the outcome is unknown: it does not retry) and goes on under a new
/// client id, whose writes are applied again — a shell left open across
/// the expiry does not get SESSIONEXPIRED for every write from then on.
#[test]
fn the_cli_client_starts_a_new_session_after_sessionexpired() {
    let cluster = SessionCluster::start(3);
    let leader = cluster.wait_for_leader();
    let mut client =
        raftnode::redis::client::Client::new(cluster.client_addrs[&leader].to_string());
    let incr = |client: &mut raftnode::redis::client::Client| {
        client
            .call(&[b"INCR".to_vec(), b"n".to_vec()])
            .expect("a reply")
    };
    assert_eq!(incr(&mut client), Reply::Integer(1));
    let mut other = cluster.client(leader);
    fill(&mut other, 40, "b");
    match incr(&mut client) {
        Reply::Error(e) => assert!(e.starts_with("SESSIONEXPIRED"), "{e}"),
        other => panic!("expected SESSIONEXPIRED, got {other:?}"),
    }
    assert_eq!(incr(&mut client), Reply::Integer(2));
    assert_eq!(incr(&mut client), Reply::Integer(3));
}
