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

/// The newest log segment in `dir` (segments are named `log-<first index>`,
/// padded so they sort by index).
fn newest_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("log-")
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found.pop().expect("a log segment")
}

/// A follower that comes back with less of the log than it acknowledged (its
/// last writes torn off, as a crash mid-write or a damaged disk leaves them)
/// is noticed by the leader and brought up to date while that leader still
/// leads — not left rejecting every AppendEntries until some election.
#[test]
fn a_follower_that_lost_acknowledged_entries_is_repaired_by_the_same_leader() {
    let mut cluster = Cluster::new(3);
    let leader = cluster.wait_for_leader();
    let term = cluster.node(leader).status().term;
    for i in 0..40 {
        cluster.write(&format!("k{i}"), "v");
    }
    let follower = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    cluster.wait_replicated("k39", "v");
    let acked = cluster.node(follower).status().last_log_index;
    cluster.halt(follower);

    // Cut the follower's newest segment short, mid-record: on restart the
    // torn tail is dropped, and with it entries it had acknowledged.
    let segment = newest_segment(&cluster.data_dir(follower));
    let len = std::fs::metadata(&segment).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(len - len / 3).unwrap();
    drop(file);
    cluster.restart(follower);
    let restarted_at = cluster.node(follower).status().last_log_index;
    assert!(
        restarted_at < acked,
        "the cut lost nothing: {restarted_at} vs {acked}"
    );

    // The leader notices and catches it up, without an election.
    cluster.write("after", "cut");
    let leader_last = cluster.node(leader).status().last_log_index;
    wait_for(WAIT, "the damaged follower to catch up", || {
        let s = cluster.node(follower).status();
        (s.last_log_index >= leader_last && s.commit_index >= leader_last).then_some(())
    });
    let status = cluster.node(leader).status();
    assert_eq!((status.role, status.term), (RoleKind::Leader, term));
    assert!(cluster.node(leader).metrics().followers_repaired >= 1);
    cluster.wait_replicated("after", "cut");
}

/// A leader whose timer thread stalls (as one descheduled or stuck behind a
/// busy lock would) does not go on serving reads on its lease: the lease is
/// measured by the monotonic clock, not by the timer's wake-ups. Its
/// followers stop answering; once more than an election timeout has really
/// passed — the time in which they could have elected someone else — the
/// leader serves no lease read, though its timer has not ticked once since.
#[test]
fn a_leader_whose_timer_stalls_serves_no_read_on_an_expired_lease() {
    let mut cluster = Cluster::with_config(3, Duration::from_secs(1), |c| {
        c.read_mode = raftnode::ReadMode::Lease;
    });
    let leader = cluster.wait_for_leader();
    cluster.write("k", "v1");
    let node = cluster.handle(leader);
    wait_for(WAIT, "a read served on the lease", || {
        (node.read(b"k").ok().flatten() == Some(b"v1".to_vec()) && node.metrics().lease_reads > 0)
            .then_some(())
    });

    node.freeze_timer(true);
    for id in cluster.ids() {
        if id != leader {
            cluster.halt(id);
        }
    }
    // Not synchronisation: the test is that this much time passes. Twice
    // the longest election timeout, in which the followers, had they been
    // cut off rather than stopped, could have elected a new leader.
    std::thread::sleep(2 * node.config().election_timeout_max);
    let lease_reads = node.metrics().lease_reads;
    let read = node.read(b"k");
    assert!(read.is_err(), "served on an expired lease: {read:?}");
    assert_eq!(node.metrics().lease_reads, lease_reads);
    assert_ne!(node.status().role, RoleKind::Leader);
    node.freeze_timer(false);
}

/// A read started and then dropped unwaited (its pipelining client went
/// away) is forgotten by the leader at once, even when no round can be
/// confirmed: abandoned reads cannot pile up.
#[test]
fn a_started_read_dropped_unwaited_is_forgotten() {
    let mut cluster = Cluster::with_config(3, Duration::from_secs(10), |config| {
        // A leader that cannot reach a majority keeps leading here.
        config.check_quorum = false;
        config.read_mode = raftnode::ReadMode::ReadIndex;
    });
    let leader = cluster.wait_for_leader();
    cluster.set("k", "v");
    for id in cluster.ids() {
        if id != leader {
            cluster.halt(id);
        }
    }
    let node = cluster.handle(leader);
    let reads: Vec<_> = (0..10).map(|_| node.start_read(b"k").unwrap()).collect();
    assert_eq!(node.pending_reads(), 10, "no round can be confirmed");
    drop(reads);
    assert_eq!(node.pending_reads(), 0);
}
