//! Snapshots and log compaction (§7) on real clusters: data dirs, threads
//! and loopback TCP. Followers that fall behind the compaction point catch
//! up by InstallSnapshot and then by log; restarts resume from the latest
//! snapshot; replicas end with the same `DEBUG DIGEST` (`Kv::digest`).

mod support;

use raftnode::kv::KeyValue;
use raftnode::raft::message::NodeId;
use raftnode::{Config, Error};
use std::time::Duration;
use support::{wait_for, Cluster, WAIT};

/// Snapshots every 1,000 entries, keeping 200 behind each.
fn frequent_snapshots(config: &mut Config) {
    config.snapshot_entries = 1000;
    config.snapshot_keep = 200;
    // Several chunks for even a small snapshot.
    config.snapshot_chunk_bytes = 64 * 1024;
}

/// Writes `count` distinct keys `{prefix}{i}` through the leader from
/// `threads` concurrent writers, retrying only refusals that mean "not
/// applied" (so every key is written exactly as acknowledged).
fn write_many(cluster: &Cluster, prefix: &str, count: usize, threads: usize) {
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for i in (t..count).step_by(threads) {
                    let (key, value) = (format!("{prefix}{i}"), format!("v{i}"));
                    wait_for(WAIT, "a write to be accepted", || {
                        match cluster.leader().set(key.as_str(), value.as_str()) {
                            Ok(()) => Some(()),
                            Err(Error::NotLeader { .. }) => None,
                            Err(e) => panic!("writing {key} failed: {e}"),
                        }
                    });
                }
            });
        }
    });
}

/// Waits until every running node has applied as far as the leader and
/// then checks that they hold the same state.
fn assert_converged(cluster: &Cluster) -> String {
    let leader = cluster.leader();
    let target = leader.status().commit_index;
    let mut digests = Vec::new();
    for node in cluster.running() {
        wait_for(
            WAIT,
            &format!("node {} to apply {target}", node.id()),
            || (node.status().last_applied >= target).then_some(()),
        );
    }
    // Idle now: every node's applied index is the same, so digests compare.
    for node in cluster.running() {
        digests.push((
            node.id(),
            node.status().last_applied,
            node.with_state(|kv| kv.digest()),
        ));
    }
    let first = digests[0].clone();
    for d in &digests {
        assert_eq!(
            (d.1, &d.2),
            (first.1, &first.2),
            "replicas differ: {digests:?}"
        );
    }
    first.2
}

fn check_keys(cluster: &Cluster, prefix: &str, count: usize) {
    let leader = cluster.leader();
    for i in (0..count).step_by(97).chain([count - 1]) {
        let key = format!("{prefix}{i}");
        assert_eq!(
            leader.read(key.as_bytes()).unwrap(),
            Some(format!("v{i}").into_bytes()),
            "{key}"
        );
    }
}

fn follower_of(cluster: &Cluster) -> NodeId {
    let leader = cluster.wait_for_leader();
    cluster.ids().into_iter().find(|&id| id != leader).unwrap()
}

#[test]
fn a_follower_stopped_during_50000_writes_catches_up_by_snapshot_then_by_log() {
    let mut cluster = Cluster::with_config(3, Duration::from_secs(5), frequent_snapshots);
    let stopped = follower_of(&cluster);
    cluster.halt(stopped);
    write_many(&cluster, "k", 50_000, 32);
    let leader = cluster.leader();
    let status = leader.snapshot_status();
    assert!(status.taken >= 40, "{status:?}");
    assert!(
        status.log_first_index > 40_000,
        "the log was compacted: {status:?}"
    );
    assert!(
        leader.log_entries().len() < 2_000,
        "the in-memory log holds only the tail: {}",
        leader.log_entries().len()
    );

    cluster.restart(stopped);
    // Entries keep coming while it catches up.
    write_many(&cluster, "after", 500, 4);
    assert_converged(&cluster);
    let rejoined = cluster.node(stopped).snapshot_status();
    assert!(
        rejoined.installed >= 1,
        "caught up by snapshot: {rejoined:?}"
    );
    assert!(rejoined.index >= 40_000, "{rejoined:?}");
    check_keys(&cluster, "k", 50_000);
    check_keys(&cluster, "after", 500);
}

#[test]
fn the_whole_cluster_restarted_after_compaction_keeps_every_acknowledged_write() {
    let mut cluster = Cluster::with_config(3, Duration::from_secs(5), frequent_snapshots);
    cluster.wait_for_leader();
    write_many(&cluster, "k", 5_000, 16);
    let before = assert_converged(&cluster);
    for node in cluster.running() {
        let status = node.snapshot_status();
        assert!(
            status.taken >= 3 && status.log_first_index > 1,
            "{status:?}"
        );
    }
    for id in cluster.ids() {
        cluster.halt(id);
    }
    for id in cluster.ids() {
        cluster.restart(id);
    }
    check_keys(&cluster, "k", 5_000);
    assert_eq!(assert_converged(&cluster), before, "state after restart");
    write_many(&cluster, "more", 100, 4);
    check_keys(&cluster, "more", 100);
    assert_converged(&cluster);
}

/// A restarted node re-applies from its snapshot up to the commit index it
/// saved, on its own: no leader is needed to know those entries are final.
#[test]
fn a_node_restarted_alone_applies_up_to_its_saved_commit_index() {
    let mut cluster = Cluster::with_config(3, Duration::from_secs(5), frequent_snapshots);
    cluster.wait_for_leader();
    write_many(&cluster, "k", 2_500, 8);
    assert_converged(&cluster);
    let id = follower_of(&cluster);
    let applied = cluster.node(id).status().last_applied;
    for other in cluster.ids() {
        cluster.halt(other);
    }
    cluster.restart(id);
    let node = cluster.node(id);
    let snapshot = node.snapshot_status().index;
    assert!(snapshot >= 2_000, "{snapshot}");
    // The entries after the snapshot are applied from the log, up to the
    // saved commit index (saved with the last batch, or once the writer
    // has been idle 20 ms), never beyond what was committed.
    let reapplied = wait_for(WAIT, "the lone node to re-apply from its log", || {
        let applied_now = node.status().last_applied;
        (applied_now > snapshot).then_some(applied_now)
    });
    assert!(reapplied <= applied, "{reapplied} > {applied}");
    let status = node.status();
    assert_eq!(status.leader_id, None, "it did so without a leader");
    assert_eq!(node.get(b"k0").as_deref(), Some(&b"v0"[..]));
}

/// The operator's view, on real processes: BGSAVE and LASTSAVE, the INFO
/// fields, a kill -9 and a restart from the snapshot, and a damaged
/// snapshot that stops the node from starting, naming the file.
#[test]
fn bgsave_lastsave_info_and_a_restart_from_the_snapshot_after_kill_9() {
    use raftnode::redis::resp::Reply;
    use support::process::{bulk, ok, ProcCluster};

    let mut cluster =
        ProcCluster::start_with(3, &["--snapshot-entries", "0", "--snapshot-keep", "10"]);
    let leader = cluster.wait_for_leader();
    let mut c = cluster.client(leader);
    assert_eq!(c.call(&["LASTSAVE"]), Reply::Integer(0), "no snapshot yet");
    for i in 0..300 {
        assert_eq!(c.call(&["SET", &format!("k{i}"), &format!("v{i}")]), ok());
    }
    assert_eq!(
        c.call(&["BGSAVE"]),
        Reply::Simple("Background saving started".into())
    );
    let info = wait_for(WAIT, "the snapshot to be written", || {
        let info = cluster.info(leader);
        (info["snapshots_taken"] == "1" && info["snapshot_in_progress"] == "0").then_some(info)
    });
    let index: u64 = info["snapshot_index"].parse().unwrap();
    assert!(index > 300, "{info:?}");
    assert!(info["snapshot_bytes"].parse::<u64>().unwrap() > 300 * 6);
    assert!(
        info["log_first_index"].parse::<u64>().unwrap() >= index - 10,
        "{info:?}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    match c.call(&["LASTSAVE"]) {
        Reply::Integer(t) => assert!((now - 5..=now + 1).contains(&t), "LASTSAVE {t}, now {now}"),
        other => panic!("LASTSAVE answered {other:?}"),
    }
    assert!(matches!(c.call(&["BGSAVE", "NOW"]), Reply::Error(_)));
    drop(c);

    // kill -9 and restart: the node comes back from its snapshot.
    cluster.kill(leader);
    cluster.start_node(leader);
    let new_leader = cluster.wait_for_leader();
    let mut c = cluster.client(new_leader);
    assert_eq!(c.call(&["SET", "after", "restart"]), ok());
    for id in [1, 2, 3] {
        wait_for(WAIT, &format!("node {id} to apply everything"), || {
            let info = cluster.info(id);
            (info["last_applied"] == cluster.info(new_leader)["commit_index"]).then_some(())
        });
    }
    let digests: Vec<Reply> = [1, 2, 3]
        .iter()
        .map(|&id| cluster.client(id).call(&["DEBUG", "DIGEST"]))
        .collect();
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    assert_eq!(cluster.info(leader)["snapshot_index"], index.to_string());
    assert_eq!(c.call(&["GET", "k299"]), bulk("v299"));

    // A snapshot damaged on disk: the node refuses to start, naming it.
    cluster.kill(leader);
    let snapshots = cluster.data_dir(leader).join("snapshots");
    let file = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snapshot-")
        })
        .expect("the snapshot file");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let mut child = cluster
        .command(leader)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(WAIT, "the node to refuse to start", || {
        child.try_wait().unwrap()
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains(&file.display().to_string()) && stderr.contains("checksum"),
        "{stderr}"
    );
}

/// Writes `values` of `size` bytes to keys `{prefix}{i}`, pipelined in
/// batches of 500 through `start_write`.
fn write_pipelined(node: &raftnode::kv::KvNode, prefix: &str, count: usize, size: usize) {
    let keys: Vec<usize> = (0..count).collect();
    for batch in keys.chunks(500) {
        let pending: Vec<_> = batch
            .iter()
            .map(|i| {
                let command = raftnode::kv::Command::Set {
                    key: format!("{prefix}{i}").into_bytes(),
                    value: vec![b'x'; size],
                };
                node.start_write(command)
                    .expect("the leader takes the write")
            })
            .collect();
        for write in pending {
            write.wait().expect("the write applies");
        }
    }
}

/// Once the state is not small, a snapshot is due only when the log since
/// the last one is as large as that snapshot (§5.1 of the dissertation):
/// rewriting a big state every `snapshot_entries` small writes cost a fifth
/// of the servers' CPU under load.
#[test]
fn a_large_state_is_snapshotted_once_the_log_has_grown_by_its_size() {
    fn every_1000(config: &mut Config) {
        config.snapshot_entries = 1000;
    }
    let cluster = Cluster::with_config(1, Duration::from_secs(10), every_1000);
    let node = cluster.handle(cluster.wait_for_leader());
    // About 6 MiB of state.
    write_pipelined(&node, "big", 6000, 1024);
    let settled = || {
        wait_for(WAIT, "the snapshot in progress to finish", || {
            let status = node.snapshot_status();
            (!status.in_progress).then_some(status)
        })
    };
    let mut status = settled();
    if status.bytes < 4 * 1024 * 1024 {
        // The last snapshot was taken while the state was still small.
        write_pipelined(&node, "big", 1000, 1024);
        status = settled();
    }
    assert!(status.bytes >= 4 * 1024 * 1024, "{status:?}");

    // 3,000 entries, each far smaller than the snapshot per entry: three
    // times snapshot_entries, and still not a snapshot's worth of log.
    write_pipelined(&node, "small", 3000, 10);
    assert_eq!(
        settled().taken,
        status.taken,
        "a snapshot of the big state again"
    );

    // Now as many bytes of log as the snapshot has.
    write_pipelined(&node, "big", (status.bytes / 1024) as usize + 100, 1024);
    let now = settled();
    assert!(now.taken > status.taken, "no snapshot after {now:?}");
}
