//! A client that pipelines: its burst's writes are proposed together and
//! answered in order (issue 13). Real `raftnode run` processes.

mod support;

use raftnode::redis::cluster::key_slot;
use raftnode::redis::resp::{self, Reply};
use support::process::{bulk, ok, ProcCluster, Resp};
use support::{wait_for, WAIT};

fn command(args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let mut buf = Vec::new();
    resp::encode_command(&args, &mut buf);
    buf
}

fn log_syncs(c: &mut Resp) -> u64 {
    c.info()["log_syncs"].parse().expect("a number")
}

/// Sends `burst` in one write and reads `n` replies.
fn pipeline(port: u16, burst: &[u8], n: usize) -> Vec<Reply> {
    let mut c = Resp::connect(port).unwrap();
    c.send_raw(burst);
    (0..n).map(|_| c.read()).collect()
}

#[test]
fn a_pipelined_burst_is_answered_in_order_and_its_writes_share_syncs() {
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let port = cluster.nodes[&leader].client_port;
    let mut c = cluster.client(leader);
    let syncs_before = log_syncs(&mut c);

    // 2,000 writes, with the odd refusal, a read of an earlier write of the
    // same burst, and a delete, each answered in its place.
    const WRITES: usize = 2000;
    let (mut burst, mut expected) = (Vec::new(), Vec::new());
    let mut counter = 0;
    for i in 0..WRITES {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        burst.extend(command(&["SET", &key, &value]));
        expected.push(ok());
        if i % 250 == 0 {
            counter += 1;
            burst.extend(command(&["INCR", "n"]));
            expected.push(Reply::Integer(counter));
        }
        if i == 1000 {
            burst.extend(command(&["SET", "s", "text"]));
            expected.push(ok());
            burst.extend(command(&["INCR", "s"]));
            expected.push(Reply::error("value is not an integer or out of range"));
            burst.extend(command(&["GET", "k999"]));
            expected.push(bulk("v999"));
            burst.extend(command(&["DEL", "k0", "k1", "missing"]));
            expected.push(Reply::Integer(2));
        }
    }
    let replies = pipeline(port, &burst, expected.len());
    for (i, (got, want)) in replies.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "reply {i} of the burst");
    }
    assert_eq!(c.call(&["GET", "k1999"]), bulk("v1999"));
    assert_eq!(c.call(&["GET", "k0"]), Reply::NullBulk);

    // Each write waited for its own commit before the next was read, so it
    // had a log sync of its own: at least 2,000. Proposed together, a
    // burst's writes share them.
    let syncs = log_syncs(&mut c) - syncs_before;
    assert!(
        syncs < WRITES as u64 / 2,
        "{syncs} log syncs on the leader for {WRITES} pipelined writes"
    );
    eprintln!("{WRITES} pipelined writes: {syncs} log syncs on the leader");
}

#[test]
fn a_burst_sent_to_a_follower_is_redirected_in_order_and_not_applied() {
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    // A follower knows the leader's client address once it has heard from it.
    let mut f = cluster.client(follower);
    let leader_addr = cluster.client_addr(leader);
    wait_for(WAIT, "the follower to know the leader's address", || {
        (f.info().get("leader_client_addr") == Some(&leader_addr)).then_some(())
    });
    let keys: Vec<String> = (0..20).map(|i| format!("key{i}")).collect();
    let burst: Vec<u8> = keys
        .iter()
        .flat_map(|k| command(&["SET", k, "v"]))
        .collect();
    let replies = pipeline(cluster.nodes[&follower].client_port, &burst, keys.len());
    for (key, reply) in keys.iter().zip(&replies) {
        let moved = format!("MOVED {} {leader_addr}", key_slot(key.as_bytes()));
        assert_eq!(reply, &Reply::Error(moved));
    }
    let mut l = cluster.client(leader);
    for key in &keys {
        assert_eq!(l.call(&["GET", key]), Reply::NullBulk);
    }
}

/// Bursts of `INCR` pipelined to the leader while it hands its leadership
/// over: every increment it acknowledged was applied exactly once, in
/// order, and none it redirected was applied at all.
#[test]
fn pipelined_increments_across_a_leadership_transfer_apply_exactly_once_in_order() {
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let port = cluster.nodes[&leader].client_port;
    let burst: Vec<u8> = (0..200).flat_map(|_| command(&["INCR", "n"])).collect();
    let mut conn = Resp::connect(port).unwrap();
    let mut admin = cluster.client(leader);

    let mut replies = Vec::new();
    for round in 0..30 {
        if round == 10 {
            // Sent between bursts, on another connection, while the
            // writes of the last burst may still be in flight.
            conn.send_raw(&burst);
            assert_eq!(admin.call(&["RAFT.TRANSFER_LEADER"]), ok());
            replies.extend((0..200).map(|_| conn.read()));
            continue;
        }
        conn.send_raw(&burst);
        replies.extend((0..200).map(|_| conn.read()));
    }
    let new_leader = wait_for(WAIT, "a new leader", || {
        let id = cluster.wait_for_leader();
        (id != leader).then_some(id)
    });

    let mut applied = Vec::new();
    for reply in &replies {
        match reply {
            Reply::Integer(n) => applied.push(*n),
            Reply::Error(e) if e.starts_with("MOVED ") || e.starts_with("TRYAGAIN ") => {}
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert!(applied.len() >= 2000, "{} acknowledged", applied.len());
    assert!(
        applied.windows(2).all(|w| w[1] == w[0] + 1) && applied.first() == Some(&1),
        "acknowledged increments are not 1, 2, 3, ...: {applied:?}"
    );
    let mut c = cluster.client(new_leader);
    let final_value = match c.call(&["GET", "n"]) {
        Reply::Bulk(v) => String::from_utf8(v).unwrap().parse::<i64>().unwrap(),
        other => panic!("GET n answered {other:?}"),
    };
    assert_eq!(
        final_value,
        applied.len() as i64,
        "acknowledged increments and the value disagree"
    );
}

/// A burst of reads shares heartbeat rounds, and reads and writes
/// interleaved in one burst each see exactly the writes before them.
#[test]
fn pipelined_reads_share_rounds_and_see_the_writes_before_them() {
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let port = cluster.nodes[&leader].client_port;
    let mut c = cluster.client(leader);
    for i in 0..10 {
        assert_eq!(c.call(&["SET", &format!("r{i}"), &format!("v{i}")]), ok());
    }
    let rounds = |c: &mut Resp| -> u64 { c.info()["read_index_rounds"].parse().unwrap() };
    let rounds_before = rounds(&mut c);
    const READS: usize = 500;
    let burst: Vec<u8> = (0..READS)
        .flat_map(|i| command(&["GET", &format!("r{}", i % 12)]))
        .collect();
    let replies = pipeline(port, &burst, READS);
    for (i, reply) in replies.iter().enumerate() {
        let want = match i % 12 {
            k @ 0..10 => bulk(&format!("v{k}")),
            _ => Reply::NullBulk,
        };
        assert_eq!(reply, &want, "reply {i}");
    }
    // Each read alone would have had a round of its own.
    let shared = rounds(&mut c) - rounds_before;
    assert!(
        shared < READS as u64 / 2,
        "{shared} heartbeat rounds for {READS} pipelined reads"
    );

    let (mut burst, mut expected) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let value = i.to_string();
        burst.extend(command(&["SET", "x", &value]));
        expected.push(ok());
        burst.extend(command(&["GET", "x"]));
        expected.push(bulk(&value));
        if i % 3 == 0 {
            burst.extend(command(&["GET", "x"]));
            expected.push(bulk(&value));
            burst.extend(command(&["INCR", "x"]));
            expected.push(Reply::Integer(i + 1));
            burst.extend(command(&["GET", "x"]));
            expected.push(bulk(&(i + 1).to_string()));
        }
    }
    let replies = pipeline(port, &burst, expected.len());
    for (i, (got, want)) in replies.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "reply {i} of the mixed burst");
    }
    eprintln!("{READS} pipelined reads: {shared} heartbeat rounds");
}

/// Every read sees exactly the writes before it in a burst, whatever read
/// it is — not only GET: a read that went into flight beside later writes
/// would see them (found by the differential test against redis-server).
#[test]
fn every_kind_of_read_in_a_burst_sees_exactly_the_writes_before_it() {
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let port = cluster.nodes[&leader].client_port;
    let (mut burst, mut expected) = (Vec::new(), Vec::new());
    for i in 1..=50 {
        let (ttl, len) = (1000 + i, "x".repeat(i as usize));
        burst.extend(command(&["SET", "k", &len, "EX", &ttl.to_string()]));
        expected.push(ok());
        burst.extend(command(&["TTL", "k"]));
        expected.push(Reply::Integer(ttl));
        burst.extend(command(&["STRLEN", "k"]));
        expected.push(Reply::Integer(i));
        burst.extend(command(&["MGET", "k", "none"]));
        expected.push(Reply::Array(vec![bulk(&len), Reply::NullBulk]));
        burst.extend(command(&["GETEX", "k"]));
        expected.push(bulk(&len));
        burst.extend(command(&["DBSIZE"]));
        expected.push(Reply::Integer(1));
        // A write by a name that reads in other forms.
        burst.extend(command(&["GETEX", "k", "PERSIST"]));
        expected.push(bulk(&len));
        burst.extend(command(&["TTL", "k"]));
        expected.push(Reply::Integer(-1));
    }
    let replies = pipeline(port, &burst, expected.len());
    for (i, (got, want)) in replies.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "reply {i}");
    }
}
