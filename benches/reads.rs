//! What a linearizable read costs: `cargo bench --bench reads`.
//!
//! A 3-node cluster on loopback, in this process. For each read mode the
//! leader serves, alternately, a local read of its state machine
//! (`Node::get`, not linearizable) and a linearizable one (`Node::read`), so
//! both see the same machine load; the report gives medians and their ratio,
//! one client and eight concurrent ones (whose reads share heartbeat rounds).
//! This machine is shared and noisy: compare the ratios, not absolute times.

use raftnode::kv::{KeyValue, Kv, KvNode};
use raftnode::{Config, Node, ReadMode};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cluster(mode: ReadMode, dir: &std::path::Path) -> Vec<Arc<KvNode>> {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: BTreeMap<u64, String> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string()))
        .collect();
    listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let id = i as u64 + 1;
            let mut config = Config::new(id, dir.join(format!("{mode}-{id}")));
            config.read_mode = mode;
            config.peers = addrs
                .iter()
                .filter(|(&p, _)| p != id)
                .map(|(&p, a)| (p, a.clone()))
                .collect();
            Arc::new(Node::start_with_listener(config, listener, Kv::new()).unwrap())
        })
        .collect()
}

fn leader(nodes: &[Arc<KvNode>]) -> Arc<KvNode> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for node in nodes {
            if node.leader_id() == Some(node.id()) && node.set("k", "v").is_ok() {
                return node.clone();
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median latency of `op` per call, for `clients` concurrent callers.
fn measure(clients: usize, calls: usize, op: impl Fn() + Sync) -> (Duration, f64) {
    let started = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| {
                    (0..calls)
                        .map(|_| {
                            let t = Instant::now();
                            op();
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let per_second = (clients * calls) as f64 / started.elapsed().as_secs_f64();
    (median(latencies), per_second)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    println!(
        "{:<11} {:>8} {:>14} {:>14} {:>9} {:>12}",
        "mode", "clients", "local median", "linear. median", "ratio", "linear. ops/s"
    );
    for mode in [ReadMode::ReadIndex, ReadMode::Lease] {
        let nodes = cluster(mode, dir.path());
        let leader = leader(&nodes);
        for clients in [1, 8] {
            let (mut local, mut linear, mut rate) = (Vec::new(), Vec::new(), Vec::new());
            // Alternate the two kinds in rounds so both see the same noise.
            for _ in 0..7 {
                local.push(
                    measure(clients, 300, || {
                        assert!(leader.get(b"k").is_some());
                    })
                    .0,
                );
                let (m, r) = measure(clients, 300, || {
                    assert!(leader.read(b"k").unwrap().is_some());
                });
                linear.push(m);
                rate.push(r);
            }
            let (local, linear) = (median(local), median(linear));
            rate.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "{:<11} {:>8} {:>14?} {:>14?} {:>8.0}x {:>12.0}",
                mode.to_string(),
                clients,
                local,
                linear,
                linear.as_secs_f64() / local.as_secs_f64(),
                rate[rate.len() / 2]
            );
        }
        let m = leader.metrics();
        println!(
            "  ({mode}: {} reads served, {} read-index rounds, {} on the lease)",
            m.reads_served, m.read_rounds, m.lease_reads
        );
        for node in nodes {
            node.halt();
        }
    }
}
