//! The node is generic over its state machine: a cluster of `Node<Journal>`,
//! a tiny append-only journal that is not the key-value store, on in-memory
//! log stores (no disk at all), elects, replicates, answers linearizable
//! queries and fails over exactly as `Node<Kv>` does.

mod support;

use raftnode::node::{RestoreError, StateMachine, StateSnapshot};
use raftnode::raft::membership::{ChangeError, ConfChange};
use raftnode::raft::message::{Index, NodeId, Payload};
use raftnode::storage::MemStore;
use raftnode::{Config, Error, Node};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
use support::{wait_for, WAIT};

/// An append-only journal: every command is a line.
#[derive(Debug, Default)]
struct Journal {
    lines: Vec<Vec<u8>>,
    /// The index `apply` was called with for each line, in call order.
    indexes: Vec<Index>,
}

impl StateMachine for Journal {
    fn apply(&mut self, index: Index, command: &[u8]) -> Vec<u8> {
        self.indexes.push(index);
        self.lines.push(command.to_vec());
        len_reply(self.lines.len())
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        match query {
            b"len" => len_reply(self.lines.len()),
            b"all" => self.lines.join(&b'\n'),
            _ => Vec::new(),
        }
    }

    /// The journal is small: the lines themselves, shared, then written
    /// one per line (commands in these tests hold no newline).
    fn snapshot(&self) -> Box<dyn StateSnapshot> {
        Box::new(JournalSnapshot(Arc::new(self.lines.clone())))
    }

    fn restore(&mut self, payload: &mut dyn Read) -> Result<(), RestoreError> {
        let mut bytes = Vec::new();
        payload.read_to_end(&mut bytes)?;
        self.lines = match bytes.is_empty() {
            true => Vec::new(),
            false => bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect(),
        };
        self.indexes.clear();
        Ok(())
    }
}

struct JournalSnapshot(Arc<Vec<Vec<u8>>>);

impl StateSnapshot for JournalSnapshot {
    fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(&self.0.join(&b'\n'))
    }
}

fn len_reply(len: usize) -> Vec<u8> {
    (len as u64).to_be_bytes().to_vec()
}

fn decode_len(reply: &[u8]) -> u64 {
    u64::from_be_bytes(reply.try_into().expect("an 8-byte length"))
}

/// Three (or n) `Node<Journal>`s on `MemStore`s and loopback TCP. Every node
/// is halted when this is dropped, whether the test passed or not.
struct JournalCluster {
    nodes: BTreeMap<NodeId, Option<Node<Journal>>>,
    configs: BTreeMap<NodeId, Config>,
    /// Where each node keeps its snapshots (its log is in memory).
    dirs: Vec<tempfile::TempDir>,
}

impl JournalCluster {
    fn new(n: u64) -> JournalCluster {
        JournalCluster::with(n, |_| {})
    }

    fn with(n: u64, adjust: impl Fn(&mut Config)) -> JournalCluster {
        support::init_logging();
        let listeners: BTreeMap<NodeId, TcpListener> = (1..=n)
            .map(|id| (id, TcpListener::bind("127.0.0.1:0").expect("bind port 0")))
            .collect();
        let addrs: BTreeMap<NodeId, SocketAddr> = listeners
            .iter()
            .map(|(&id, l)| (id, l.local_addr().unwrap()))
            .collect();
        let mut cluster = JournalCluster {
            nodes: BTreeMap::new(),
            configs: BTreeMap::new(),
            dirs: Vec::new(),
        };
        for (id, listener) in listeners {
            let dir = tempfile::tempdir().expect("a temp dir");
            let mut config = Config::new(id, dir.path().to_path_buf());
            cluster.dirs.push(dir);
            config.cluster_id = "journal".into();
            config.raft_addr = addrs[&id].to_string();
            config.peers = addrs
                .iter()
                .filter(|(&peer, _)| peer != id)
                .map(|(&peer, addr)| (peer, addr.to_string()))
                .collect();
            config.proposal_timeout = Duration::from_secs(3);
            adjust(&mut config);
            cluster.configs.insert(id, config.clone());
            let node = Node::start_with(config, listener, MemStore::new(), Journal::default())
                .expect("start a journal node");
            cluster.nodes.insert(id, Some(node));
        }
        cluster
    }

    /// Starts node `id` again at its address, as a new machine would: an
    /// empty log, no snapshot, an empty journal.
    /// Starts `id` again with an empty data dir, joining the cluster (it
    /// must have been added back as a new member).
    fn start_empty(&mut self, id: NodeId) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut config = self.configs[&id].clone();
        config.data_dir = dir.path().to_path_buf();
        config.join = true;
        self.dirs.push(dir);
        let listener = wait_for(WAIT, "the node's port to be free again", || {
            TcpListener::bind(&config.raft_addr).ok()
        });
        let node = Node::start_with(config, listener, MemStore::new(), Journal::default())
            .expect("restart a journal node");
        self.nodes.insert(id, Some(node));
    }

    fn running(&self) -> Vec<&Node<Journal>> {
        self.nodes.values().flatten().collect()
    }

    fn node(&self, id: NodeId) -> &Node<Journal> {
        self.nodes[&id].as_ref().expect("node is running")
    }

    /// Halts a node but keeps it, so that its journal can still be read.
    fn halt(&mut self, id: NodeId) -> Node<Journal> {
        let node = self.nodes.get_mut(&id).and_then(Option::take).unwrap();
        node.halt();
        node
    }

    /// Waits until the running nodes agree on one leader of the highest term,
    /// checking on the way that no term ever shows two leaders.
    fn wait_for_leader(&self) -> NodeId {
        wait_for(WAIT, "a leader", || {
            let statuses: Vec<_> = self.running().iter().map(|n| n.status()).collect();
            support::agreed_leader(&statuses)
        })
    }

    /// Appends `line` through the leader and returns the journal's reply.
    /// Retries only on `NotLeader`, which means the line was not applied, so
    /// every acknowledged line is in the journal exactly once.
    fn append(&self, line: &[u8]) -> u64 {
        wait_for(WAIT, "an append to be accepted", || {
            let leader = self.node(self.wait_for_leader());
            match leader.propose(line.to_vec()) {
                Ok(reply) => Some(decode_len(&reply)),
                Err(Error::NotLeader { .. }) => None,
                Err(e) => panic!("append of {:?} failed: {e}", line_text(line)),
            }
        })
    }

    /// Waits until every running node's journal holds exactly `expected`.
    fn wait_converged(&self, expected: &[Vec<u8>]) {
        for node in self.running() {
            wait_for(WAIT, &format!("node {}'s journal", node.id()), || {
                node.with_state(|j| j.lines == expected).then_some(())
            });
        }
    }
}

impl Drop for JournalCluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut().filter_map(Option::take) {
            node.halt();
        }
    }
}

fn line(n: usize) -> Vec<u8> {
    format!("line {n}").into_bytes()
}

fn line_text(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

fn lines_of(node: &Node<Journal>) -> Vec<Vec<u8>> {
    node.with_state(|j| j.lines.clone())
}

#[test]
fn a_journal_replicates_through_the_generic_node() {
    let cluster = JournalCluster::new(3);
    let leader_id = cluster.wait_for_leader();
    let leader = cluster.node(leader_id);
    assert_eq!(leader.status().members, vec![1, 2, 3]);
    assert_eq!(decode_len(&leader.query(b"len".to_vec()).unwrap()), 0);
    assert_eq!(leader.query(b"all".to_vec()).unwrap(), b"");

    let mut acknowledged = Vec::new();
    for n in 1..=20 {
        let reply = leader.propose(line(n)).expect("the leader appends");
        assert_eq!(decode_len(&reply), n as u64, "reply to line {n}");
        acknowledged.push(line(n));
        // Linearizable: the read sees every line acknowledged before it.
        assert_eq!(
            leader.query(b"all".to_vec()).unwrap(),
            acknowledged.join(&b'\n'),
            "after line {n}"
        );
        assert_eq!(
            decode_len(&leader.query(b"len".to_vec()).unwrap()),
            n as u64
        );
    }
    assert_eq!(leader.query(b"something else".to_vec()).unwrap(), b"");
    cluster.wait_converged(&acknowledged);
}

#[test]
fn a_follower_refuses_proposals_and_queries_naming_the_leader() {
    let cluster = JournalCluster::new(3);
    let leader_id = cluster.wait_for_leader();
    let leader = cluster.node(leader_id);
    assert_eq!(cluster.append(b"first"), 1);
    for follower in cluster
        .running()
        .into_iter()
        .filter(|n| n.id() != leader_id)
    {
        match follower.propose(b"refused".to_vec()) {
            Err(Error::NotLeader {
                leader: Some(named),
            }) => assert_eq!(named, leader_id),
            other => panic!("node {}: propose answered {other:?}", follower.id()),
        }
        match follower.query(b"all".to_vec()) {
            Err(Error::NotLeader {
                leader: Some(named),
            }) => assert_eq!(named, leader_id),
            other => panic!("node {}: query answered {other:?}", follower.id()),
        }
    }
    // Nothing of the refused proposals reached any journal.
    assert_eq!(cluster.append(b"second"), 2);
    assert_eq!(leader.query(b"all".to_vec()).unwrap(), b"first\nsecond");
    cluster.wait_converged(&[b"first".to_vec(), b"second".to_vec()]);
}

#[test]
fn after_the_leader_halts_the_other_two_keep_appending_and_journals_agree() {
    let mut cluster = JournalCluster::new(3);
    let first_leader = cluster.wait_for_leader();
    let first_term = cluster.node(first_leader).status().term;
    let mut acknowledged = Vec::new();
    for n in 1..=10 {
        assert_eq!(cluster.append(&line(n)), n as u64);
        acknowledged.push(line(n));
    }
    cluster.wait_converged(&acknowledged);

    let old = cluster.halt(first_leader);
    let new_leader = cluster.wait_for_leader();
    assert_ne!(new_leader, first_leader);
    let status = cluster.node(new_leader).status();
    assert!(status.term > first_term, "{status:?}");
    assert_eq!(cluster.running().len(), 2);

    for n in 11..=25 {
        assert_eq!(cluster.append(&line(n)), n as u64, "line {n}");
        acknowledged.push(line(n));
    }
    assert_eq!(
        cluster.node(new_leader).query(b"all".to_vec()).unwrap(),
        acknowledged.join(&b'\n')
    );
    cluster.wait_converged(&acknowledged);

    // Prefix consistency: the halted leader's journal is a prefix of the
    // survivors' (here, exactly what was acknowledged while it led).
    let old_lines = lines_of(&old);
    assert_eq!(old_lines, acknowledged[..10]);
    for node in cluster.running() {
        let lines = lines_of(node);
        assert!(lines.starts_with(&old_lines), "node {}", node.id());
        assert_eq!(lines, acknowledged, "node {}", node.id());
    }
}

/// `apply` is called once per committed command, in log order: the indexes
/// it sees strictly increase, are exactly the log's command entries (the
/// leaders' no-ops are skipped, nothing else), and each line is the payload
/// of its entry. Concurrent proposers and a leader change included.
#[test]
fn apply_sees_strictly_increasing_indexes_each_once() {
    let mut cluster = JournalCluster::new(3);
    let writers = 4;
    let per_writer = 15;
    let propose_concurrently = |cluster: &JournalCluster, round: usize| {
        std::thread::scope(|scope| {
            for w in 0..writers {
                scope.spawn(move || {
                    for i in 0..per_writer {
                        cluster.append(format!("round {round} writer {w} item {i}").as_bytes());
                    }
                });
            }
        });
    };
    propose_concurrently(&cluster, 1);
    let first_leader = cluster.wait_for_leader();
    let _old = cluster.halt(first_leader);
    propose_concurrently(&cluster, 2);

    let leader = cluster.node(cluster.wait_for_leader());
    let total = (2 * writers * per_writer) as u64;
    assert_eq!(decode_len(&leader.query(b"len".to_vec()).unwrap()), total);
    let commit = leader.status().commit_index;
    for node in cluster.running() {
        wait_for(
            WAIT,
            &format!("node {} to apply everything", node.id()),
            || (node.status().last_applied >= commit).then_some(()),
        );
        let (lines, indexes) = node.with_state(|j| (j.lines.clone(), j.indexes.clone()));
        assert_eq!(lines.len(), indexes.len());
        assert_eq!(lines.len() as u64, total, "node {}", node.id());
        assert!(
            indexes.windows(2).all(|w| w[0] < w[1]),
            "node {}: indexes not strictly increasing: {indexes:?}",
            node.id()
        );
        let log = node.log_entries();
        let commands: Vec<(Index, Vec<u8>)> = log
            .iter()
            .filter(|e| e.index <= commit)
            .filter_map(|e| match &e.payload {
                Payload::Command(c) => Some((e.index, c.clone())),
                Payload::Noop | Payload::Config(_) => None,
            })
            .collect();
        let applied: Vec<(Index, Vec<u8>)> = indexes.into_iter().zip(lines).collect();
        assert_eq!(applied, commands, "node {}", node.id());
        let noops = log.iter().filter(|e| e.payload == Payload::Noop).count();
        assert!(noops >= 2, "node {}: two leaders, two no-ops", node.id());
    }
}

/// §7 end to end: with snapshots every 20 entries and a tail of 5, a node
/// that comes back empty after 200 appends cannot be sent the entries (they
/// are compacted away): it is sent the leader's snapshot, in chunks, then
/// the entries after it, and ends with the same journal.
#[test]
fn an_empty_node_catches_up_by_snapshot_then_by_log() {
    let mut cluster = JournalCluster::with(3, |config| {
        config.snapshot_entries = 20;
        config.snapshot_keep = 5;
        // Several chunks per snapshot.
        config.snapshot_chunk_bytes = 256;
    });
    let leader_id = cluster.wait_for_leader();
    let absent = if leader_id == 3 { 2 } else { 3 };
    drop(cluster.halt(absent));
    let mut acknowledged = Vec::new();
    for n in 1..=200 {
        assert_eq!(cluster.append(&line(n)), n as u64);
        acknowledged.push(line(n));
    }
    let leader = cluster.node(cluster.wait_for_leader());
    wait_for(WAIT, "the leader to compact its log", || {
        let status = leader.snapshot_status();
        (status.taken > 0 && status.log_first_index > 10).then_some(())
    });
    // A node that lost its data dir must not come back under its old
    // identity: it is removed and added back, and joins with the empty dir.
    // A leader elected just now refuses changes until its first entry
    // commits (InProgress): try again until it takes them.
    let raft_addr = cluster.configs[&absent].raft_addr.clone();
    let change = |change: ConfChange| {
        wait_for(WAIT, "the leader to take a membership change", || {
            let leader = cluster.node(cluster.wait_for_leader());
            match leader.change_membership(change.clone()) {
                Ok(index) => Some(index),
                Err(Error::Change(ChangeError::InProgress(_)) | Error::NotLeader { .. }) => None,
                Err(e) => panic!("{change:?} refused: {e}"),
            }
        })
    };
    change(ConfChange::Remove { id: absent });
    change(ConfChange::AddLearner {
        id: absent,
        raft_addr,
        client_addr: None,
        auto_promote: true,
    });
    cluster.start_empty(absent);
    wait_for(WAIT, "the new node to be promoted", || {
        let status = cluster.node(absent).status();
        status.members.contains(&absent).then_some(())
    });
    for n in 201..=210 {
        assert_eq!(cluster.append(&line(n)), n as u64);
        acknowledged.push(line(n));
    }
    cluster.wait_converged(&acknowledged);
    let rejoined = cluster.node(absent).snapshot_status();
    assert!(rejoined.installed >= 1, "{rejoined:?}");
    assert!(rejoined.index >= 20, "{rejoined:?}");
}
