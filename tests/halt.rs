//! Halting a node stops and joins every thread and closes every socket and
//! file. This test binary holds a single test so that it alone owns the
//! process's thread and file-descriptor counts.

mod support;

use raftnode::kv::Kv;
use raftnode::{Config, Node};
use support::Cluster;

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn hundreds_of_nodes_start_and_halt_without_leaking_threads_or_descriptors() {
    support::init_logging();
    // Warm up anything lazily initialised once per process.
    drop(Cluster::new(1));
    let threads_before = count("/proc/self/task");
    let fds_before = count("/proc/self/fd");

    // 3-node clusters that elect, replicate and so open every connection.
    for round in 0..40 {
        let cluster = Cluster::new(3);
        cluster.set("round", &round.to_string());
        cluster.wait_replicated("round", &round.to_string());
    }
    // Single nodes halted straight after starting, mid-election.
    let dir = tempfile::tempdir().unwrap();
    for id in 1..=100 {
        let node =
            Node::start(Config::new(id, dir.path().join(id.to_string())), Kv::new()).unwrap();
        node.halt();
    }

    // A joined thread can still be listed in /proc for a moment: its
    // exit wakes the joiner before the kernel has released the task. A
    // leak stays; that moment passes.
    let settled = |dir: &str, before: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while count(dir) != before && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        count(dir)
    };
    assert_eq!(
        settled("/proc/self/task", threads_before),
        threads_before,
        "threads leaked"
    );
    assert_eq!(
        settled("/proc/self/fd", fds_before),
        fds_before,
        "descriptors leaked"
    );
}
