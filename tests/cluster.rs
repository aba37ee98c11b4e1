//! A real cluster: nodes on loopback TCP, each with its own data dir and
//! threads, driven through the public `Node` API.

mod support;

use raftnode::kv::{KeyValue, Kv};
use raftnode::raft::RoleKind;
use raftnode::{Error, Node};
use std::time::{Duration, Instant};
use support::{wait_for, Cluster, WAIT};

fn assert_single_leader(cluster: &Cluster) {
    let leader = cluster.wait_for_leader();
    let leaders: Vec<_> = cluster
        .running()
        .iter()
        .map(|n| n.status())
        .filter(|s| s.role == RoleKind::Leader)
        .collect();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    assert_eq!(leaders[0].id, leader);
    for node in cluster.running() {
        assert_eq!(node.status().leader_id, Some(leader));
    }
}

#[test]
fn three_node_cluster_elects_exactly_one_leader() {
    let cluster = Cluster::new(3);
    assert_single_leader(&cluster);
    assert_eq!(cluster.leader().status().members, vec![1, 2, 3]);
}

#[test]
fn five_node_cluster_elects_exactly_one_leader() {
    let cluster = Cluster::new(5);
    assert_single_leader(&cluster);
}

#[test]
fn single_node_cluster_elects_itself_and_commits() {
    let cluster = Cluster::new(1);
    assert_eq!(cluster.wait_for_leader(), 1);
    cluster.set("k", "v");
    assert_eq!(cluster.node(1).get(b"k"), Some(b"v".to_vec()));
}

#[test]
fn writes_replicate_to_every_node() {
    let cluster = Cluster::new(3);
    let leader = cluster.leader();
    leader.set("a", "1").unwrap();
    assert!(leader.cas("a", "1", "2").unwrap());
    assert!(!leader.cas("a", "1", "3").unwrap());
    assert!(!leader.cas("absent", "", "x").unwrap());
    leader.set("gone", "soon").unwrap();
    assert!(leader.delete("gone").unwrap());
    assert!(!leader.delete("gone").unwrap());
    assert_eq!(
        leader
            .delete_many(vec![b"a".to_vec(), b"nope".to_vec()])
            .unwrap(),
        1
    );
    leader.set("b", "final").unwrap();
    cluster.wait_replicated("b", "final");
    for node in cluster.running() {
        assert_eq!(node.get(b"a"), None, "node {}", node.id());
        assert_eq!(node.get(b"gone"), None);
        assert_eq!(node.get(b"absent"), None);
    }
}

#[test]
fn followers_refuse_writes_and_name_the_leader() {
    let cluster = Cluster::new(3);
    let leader = cluster.wait_for_leader();
    let follower = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    let refused = cluster.node(follower).set("k", "v");
    assert!(
        matches!(refused, Err(Error::NotLeader { leader: Some(l) }) if l == leader),
        "{refused:?}"
    );
}

#[test]
fn new_leader_after_leader_halted_and_writes_continue() {
    let mut cluster = Cluster::new(3);
    cluster.set("before", "1");
    cluster.wait_replicated("before", "1");
    let old = cluster.wait_for_leader();
    let old_term = cluster.node(old).status().term;
    cluster.halt(old);
    let new = cluster.wait_for_leader();
    assert_ne!(new, old);
    assert!(cluster.node(new).status().term > old_term);
    cluster.set("after", "2");
    cluster.wait_replicated("after", "2");
    assert_eq!(cluster.node(new).get(b"before"), Some(b"1".to_vec()));
}

#[test]
fn restarted_old_leader_catches_up() {
    let mut cluster = Cluster::new(3);
    cluster.set("k0", "v0");
    let old = cluster.wait_for_leader();
    cluster.halt(old);
    for i in 1..=20 {
        cluster.set(&format!("k{i}"), &format!("v{i}"));
    }
    cluster.restart(old);
    cluster.wait_replicated("k20", "v20");
    let node = cluster.node(old);
    for i in 0..=20 {
        assert_eq!(
            node.get(format!("k{i}").as_bytes()),
            Some(format!("v{i}").into_bytes())
        );
    }
}

#[test]
fn whole_cluster_restart_keeps_every_acknowledged_write() {
    let mut cluster = Cluster::new(3);
    for i in 0..50 {
        cluster.set(&format!("k{i}"), &format!("v{i}"));
    }
    let ids = cluster.ids();
    for &id in &ids {
        cluster.halt(id);
    }
    for &id in &ids {
        cluster.restart(id);
    }
    // The state machine is rebuilt by replaying the log once a new leader
    // commits its first entry.
    cluster.wait_for_leader();
    for i in 0..50 {
        cluster.wait_replicated(&format!("k{i}"), &format!("v{i}"));
    }
    cluster.set("after", "restart");
    cluster.wait_replicated("after", "restart");
}

#[test]
fn follower_that_missed_1000_entries_catches_up() {
    let mut cluster = Cluster::new(3);
    let leader = cluster.wait_for_leader();
    let lagging = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    cluster.halt(lagging);
    // Concurrent writers, so that entries are batched as they would be in use.
    std::thread::scope(|s| {
        for t in 0..10 {
            let node = cluster.node(leader);
            s.spawn(move || {
                for i in 0..100 {
                    node.set(format!("k{t}-{i}"), format!("v{i}")).unwrap();
                }
            });
        }
    });
    let target = cluster.node(leader).status().last_log_index;
    assert!(target >= 1000);
    cluster.restart(lagging);
    let node = cluster.node(lagging);
    wait_for(WAIT, "the lagging follower to catch up", || {
        (node.status().last_applied >= target).then_some(())
    });
    for t in 0..10 {
        assert_eq!(
            node.get(format!("k{t}-99").as_bytes()),
            Some(b"v99".to_vec())
        );
    }
}

#[test]
fn minority_cannot_commit() {
    let mut cluster = Cluster::with_timeout(3, Duration::from_millis(800));
    cluster.set("k", "committed");
    cluster.wait_replicated("k", "committed");
    let leader = cluster.wait_for_leader();
    for id in cluster.ids() {
        if id != leader {
            cluster.halt(id);
        }
    }
    let node = cluster.node(leader);
    // Whether it still believes it leads or not, nothing it accepts can commit.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match node.set("k", "uncommitted") {
            Err(Error::Timeout) | Err(Error::NotLeader { .. }) => {}
            other => panic!("a lone node of three committed a write: {other:?}"),
        }
    }
    assert_eq!(node.get(b"k"), Some(b"committed".to_vec()));
    let status = node.status();
    assert!(status.commit_index < status.last_log_index || status.role != RoleKind::Leader);
}

#[test]
fn starting_with_another_nodes_data_dir_is_an_error() {
    let mut cluster = Cluster::new(1);
    cluster.set("k", "v");
    cluster.halt(1);
    let mut config = cluster.config(1);
    config.id = 2;
    config.peers.clear();
    let err = Node::start(config, Kv::new()).err().expect("must refuse");
    let text = err.to_string();
    assert!(text.contains("node 1") && text.contains("node 2"), "{text}");
}

#[test]
fn apply_happens_once_per_entry_across_restarts() {
    // A CAS chain: each step only succeeds if every earlier one applied
    // exactly once, in order, on every node — including a restarted one.
    let mut cluster = Cluster::new(3);
    cluster.set("chain", "0");
    for i in 0..30 {
        let leader = cluster.leader();
        assert!(leader
            .cas("chain", i.to_string(), (i + 1).to_string())
            .unwrap());
        if i == 15 {
            let follower = cluster
                .ids()
                .into_iter()
                .find(|&id| id != leader.id())
                .unwrap();
            cluster.halt(follower);
            cluster.restart(follower);
        }
    }
    cluster.wait_replicated("chain", "30");
    let started = Instant::now();
    assert!(started.elapsed() < WAIT);
}
