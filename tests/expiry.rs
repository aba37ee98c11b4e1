//! Keys that expire, on a cluster: every replica deletes the same keys at
//! the same entries, because time reaches the store only through the log
//! (see `src/kv/expiry.rs`). Here keys with times to live expire while a
//! follower is cut off, across a leader change (handed over, or forced by
//! cutting the leader off), across restarts of one node and of the whole
//! cluster with snapshots in between, and in a burst of 20,000 that active
//! expiry alone must clear.
//!
//! The nodes run in this process on the fault suite's harness
//! (`support/chaos`), which runs each node's active expiry beside it as the
//! client port does, and cuts links through its proxies. One process means
//! one clock: the test, the leader stamping writes and the leader
//! evaluating reads all read [`now_ms`], so deadlines and times to live can
//! be checked exactly, not within a skew.

#[path = "support/chaos/mod.rs"]
mod chaos;
mod support;

use chaos::{seed, Chaos, RECOVER};
use raftnode::kv::expirer::EXPIRE_BATCH;
use raftnode::kv::{
    now_ms, Command, Condition, Expiry, KeyValue, Kv, KvNode, Outcome, QueryReply, Read, Wire,
};
use raftnode::raft::message::{NodeId, Payload};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::wait_for;

fn set(key: &str, expiry: Expiry) -> Command {
    Command::SetWith {
        key: key.as_bytes().to_vec(),
        value: format!("value of {key}").into_bytes(),
        condition: Condition::Always,
        get: false,
        expiry,
    }
}

/// Writes `command` through whichever node leads, trying again on any
/// error until it is applied. Only for writes that may apply twice alike
/// (absolute deadlines, plain values).
fn write(c: &Chaos, command: Command) -> Outcome {
    wait_for(RECOVER, "a write to apply", || {
        let node = c.node(c.leader()?)?;
        node.write(command.clone()).ok()
    })
}

/// Reads through whichever node leads; returns it and the answer.
fn read(c: &Chaos, read: Read) -> (NodeId, QueryReply) {
    wait_for(RECOVER, "a linearizable read", || {
        let leader = c.leader()?;
        let reply = c.node(leader)?.lookup(read.clone()).ok()?;
        Some((leader, reply))
    })
}

fn integer(reply: QueryReply) -> i64 {
    match reply {
        QueryReply::Integer(n) => n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// PEXPIRETIME of `key` through the leader.
fn expire_time(c: &Chaos, key: &str) -> i64 {
    integer(
        read(
            c,
            Read::Ttl {
                key: key.as_bytes().to_vec(),
                millis: true,
                absolute: true,
            },
        )
        .1,
    )
}

/// Checks that PTTL of `key` through the leader counts down to `deadline`:
/// between `deadline - now` taken after the read and before it.
fn assert_counts_down_to(c: &Chaos, key: &str, deadline: u64) {
    let before = now_ms();
    let (by, reply) = read(
        c,
        Read::Ttl {
            key: key.as_bytes().to_vec(),
            millis: true,
            absolute: false,
        },
    );
    let after = now_ms();
    let left = integer(reply);
    let range = (deadline - after) as i64..=(deadline - before) as i64;
    assert!(
        range.contains(&left),
        "PTTL of {key} on node {by} is {left} ms, not between {range:?}: its deadline moved"
    );
}

fn has(kv: &Kv, key: &str) -> bool {
    kv.get(key.as_bytes()).is_some()
}

/// Whether the node holds none of `keys`, expired or not.
fn holds_none(node: &KvNode, keys: &[String]) -> bool {
    node.with_state(|kv| keys.iter().all(|k| !has(kv, k)))
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// A follower cut off while keys expire applies no deletion by its own
/// clock: it holds the keys past their deadlines until the leader's
/// deletions reach it, and then holds exactly what the others hold.
#[test]
fn keys_expiring_while_a_follower_is_cut_off_are_deleted_on_it_after_healing() {
    let c = Chaos::new(3, seed(81));
    let leader = c.wait_for_leader();
    let follower = c.ids().into_iter().find(|&id| id != leader).unwrap();
    let f = c.node(follower).unwrap();
    let (before, during, later, kept) = (
        names("before", 50),
        names("during", 100),
        names("later", 20),
        names("kept", 30),
    );
    // One entry: keys that expire before the cut, keys that expire while it
    // lasts, keys that outlive it, and keys that never expire.
    let mut commands: Vec<Command> = before.iter().map(|k| set(k, Expiry::In(100))).collect();
    commands.extend(during.iter().map(|k| set(k, Expiry::In(1_000))));
    commands.extend(later.iter().map(|k| set(k, Expiry::In(60_000))));
    commands.extend(kept.iter().map(|k| set(k, Expiry::Clear)));
    write(&c, Command::Multi(commands));
    wait_for(
        RECOVER,
        "the follower to apply the keys, then their deletions",
        || {
            f.with_state(|kv| has(kv, "kept0") && before.iter().all(|k| !has(kv, k)))
                .then_some(())
        },
    );
    c.net().isolate(follower);
    let cut_at = now_ms();
    assert!(
        f.with_state(|kv| during.iter().all(|k| has(kv, k))),
        "the keys that expire during the cut were gone before it"
    );
    let majority = wait_for(RECOVER, "a leader of the majority", || {
        c.leader().filter(|&l| l != follower)
    });
    wait_for(RECOVER, "the majority to delete the expired keys", || {
        let node = c.node(c.leader()?)?;
        holds_none(&node, &during).then_some(())
    });
    assert_eq!(
        read(
            &c,
            Read::Exists {
                keys: during.iter().map(|k| k.as_bytes().to_vec()).collect()
            }
        )
        .1,
        QueryReply::Integer(0)
    );
    // Past every deadline by every clock, the follower deleted nothing.
    let (held, due, clock) = f.with_state(|kv| {
        let held = during.iter().filter(|k| has(kv, k)).count();
        (
            held,
            kv.expiries().due_count(now_ms()),
            kv.expiries().clock(),
        )
    });
    assert_eq!(
        held,
        during.len(),
        "the cut-off follower deleted keys by itself"
    );
    assert!(due >= during.len(), "only {due} keys due on the follower");
    assert!(
        clock < cut_at,
        "the follower's clock moved while it was cut off"
    );
    c.net().heal();
    let (applied, digest) = c.wait_converged();
    for id in c.running() {
        let node = c.node(id).unwrap();
        let (len, deadlines, due, gone) = node.with_state(|kv| {
            (
                kv.len(),
                kv.expiries().len(),
                kv.expiries().due_count(now_ms()),
                before.iter().chain(&during).all(|k| !has(kv, k)),
            )
        });
        assert!(gone, "node {id} still holds expired keys");
        assert_eq!(
            (len, deadlines, due),
            (later.len() + kept.len(), later.len(), 0),
            "node {id}: keys, keys with a deadline, keys due"
        );
    }
    eprintln!(
        "expiry: follower {follower} held {held} keys past their deadlines while cut off (leader \
         {majority}); after healing every replica applied {applied} entries, digest {digest}"
    );
    c.finish();
}

/// Keys with times to live across a change of leader: deadlines are
/// absolute and replicated, so the new leader reports the same ones (the
/// TTLs are not reset), and its own active expiry deletes what comes due.
/// `change` makes another node lead and returns it.
fn deadlines_survive_a_leader_change(seed: u64, change: impl FnOnce(&Chaos, NodeId) -> NodeId) {
    let c = Chaos::new(3, seed);
    let old = c.wait_for_leader();
    let (long, short) = (names("long", 20), names("short", 40));
    let long_deadline = now_ms() + 10_000;
    // PXAT: the deadlines are known exactly. The short keys expire from
    // 300 ms on, around and after the change.
    let mut commands: Vec<Command> = (0..long.len())
        .map(|i| set(&long[i], Expiry::At(long_deadline + i as u64)))
        .collect();
    commands.extend((0..short.len()).map(|i| set(&short[i], Expiry::In(300 + 15 * i as u64))));
    let written = now_ms();
    write(&c, Command::Multi(commands));
    for (i, key) in long.iter().enumerate() {
        assert_eq!(expire_time(&c, key), (long_deadline + i as u64) as i64);
    }
    let old_clock = c.node(old).unwrap().with_state(|kv| kv.expiries().clock());
    let new = change(&c, old);
    assert_ne!(new, old);
    let new_node = c.node(new).unwrap();
    let term = new_node.status().term;
    // Not reset: the same deadlines, counting down.
    for (i, key) in long.iter().enumerate() {
        let deadline = long_deadline + i as u64;
        assert_eq!(
            expire_time(&c, key),
            deadline as i64,
            "{key}'s deadline changed with the leader"
        );
        assert_counts_down_to(&c, key, deadline);
    }
    assert!(new_node.with_state(|kv| kv.expiries().clock()) >= old_clock);
    // What comes due is deleted, by the new leader's entries.
    let last_due = written + 300 + 15 * short.len() as u64;
    wait_for(RECOVER, "the new leader to delete the short keys", || {
        holds_none(&new_node, &short).then_some(())
    });
    let late = now_ms().saturating_sub(last_due);
    let reply = read(
        &c,
        Read::Exists {
            keys: short.iter().map(|k| k.as_bytes().to_vec()).collect(),
        },
    );
    assert_eq!(reply.1, QueryReply::Integer(0));
    let by_new: usize = new_node
        .log_entries()
        .iter()
        .filter(|e| e.term == term)
        .filter_map(|e| expired_keys(&e.payload))
        .map(|keys| keys.iter().filter(|k| k.starts_with(b"short")).count())
        .sum();
    assert!(
        by_new > 0,
        "the new leader (term {term}) deleted none of the short keys itself"
    );
    c.net().heal();
    let (applied, _) = c.wait_converged();
    for id in c.running() {
        let node = c.node(id).unwrap();
        node.with_state(|kv| {
            for (i, key) in long.iter().enumerate() {
                assert_eq!(
                    kv.expiries().get(key.as_bytes()),
                    Some(long_deadline + i as u64)
                );
            }
            assert_eq!(kv.len(), long.len(), "node {id}");
        });
    }
    eprintln!(
        "expiry: leader {old} -> {new}: {by_new} of {} short keys deleted in the new term, the \
         last {late} ms after the last deadline; every replica agrees at {applied}",
        short.len()
    );
    c.finish();
}

/// The keys an entry deletes by active expiry, if it is such an entry.
fn expired_keys(payload: &Payload) -> Option<Vec<Vec<u8>>> {
    let Payload::Command(bytes) = payload else {
        return None;
    };
    match Command::decode(bytes).ok()? {
        Command::Stamped { command, .. } => match *command {
            Command::Expired { keys } => Some(keys),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn deadlines_survive_a_leadership_transfer_and_the_new_leader_expires_keys() {
    deadlines_survive_a_leader_change(seed(82), |c, old| {
        let target = c.ids().into_iter().find(|&id| id != old).unwrap();
        wait_for(RECOVER, "the transfer to take effect", || {
            if c.leader() == Some(target) {
                return Some(target);
            }
            let _ = c.node(c.leader()?)?.transfer_leadership(Some(target));
            None
        })
    });
}

/// The old leader, cut off, goes on proposing deletions nobody commits;
/// after healing its log is replaced, and its state agrees.
#[test]
fn deadlines_survive_a_leader_cut_off_and_the_new_leader_expires_keys() {
    deadlines_survive_a_leader_change(seed(83), |c, old| {
        c.net().isolate(old);
        wait_for(RECOVER, "a leader of the majority", || {
            c.leader().filter(|&l| l != old)
        })
    });
}

/// The node's clock and applied index, read in that order: the clock is
/// that of an entry no later than the index.
fn clock_then_applied(node: &KvNode) -> (u64, u64) {
    let clock = node.with_state(|kv| kv.expiries().clock());
    (clock, node.status().last_applied)
}

/// Waits until `node` has applied up to `index`, checking on the way that
/// its clock never goes back, and that it has reached `clock` by then.
fn catch_up_keeping_the_clock(node: &KvNode, index: u64, clock: u64) {
    let mut last = 0;
    wait_for(RECOVER, "the restarted node to catch up", || {
        let (now, applied) = clock_then_applied(node);
        assert!(now >= last, "node {}: clock {now} after {last}", node.id());
        last = now;
        (applied >= index).then_some(())
    });
    let now = node.with_state(|kv| kv.expiries().clock());
    assert!(
        now >= clock,
        "node {} applied as far as before its crash (entry {index}) with its clock at {now}, \
         behind the {clock} it had reached",
        node.id()
    );
}

/// Has `node` save a snapshot of its state as applied now (BGSAVE), and
/// waits for it; returns the store's clock that the snapshot holds at least.
fn snapshot_now(node: &KvNode) -> u64 {
    let (clock, applied) = clock_then_applied(node);
    wait_for(RECOVER, "BGSAVE to be accepted", || node.bgsave().ok());
    wait_for(RECOVER, "the snapshot", || {
        let status = node.snapshot_status();
        (status.index >= applied && !status.in_progress).then_some(())
    });
    clock
}

/// Snapshots and crashes: a follower crashes after a snapshot and catches
/// up; then the whole cluster loses power at once while keys expire. The
/// clock is restored from the snapshot and never goes back, deadlines are
/// the ones set, and the keys that expired while the nodes were down are
/// deleted once they are back.
#[test]
fn deadlines_and_the_clock_survive_restarts_and_snapshots() {
    let c = Chaos::with_config(3, seed(84), |config| {
        config.snapshot_entries = 50;
        config.snapshot_keep = 10;
    });
    let leader = c.wait_for_leader();
    let (long, short, filler) = (names("long", 20), names("short", 20), names("filler", 160));
    let long_deadline = now_ms() + 30_000;
    let mut commands: Vec<Command> = (0..long.len())
        .map(|i| set(&long[i], Expiry::At(long_deadline + i as u64)))
        .collect();
    commands.extend(short.iter().map(|k| set(k, Expiry::In(200))));
    write(&c, Command::Multi(commands));
    for key in &filler[..80] {
        write(&c, set(key, Expiry::Clear));
    }
    // A follower saves a snapshot, then loses power.
    let follower = c.ids().into_iter().find(|&id| id != leader).unwrap();
    let f = c.node(follower).unwrap();
    let commit = c.node(leader).unwrap().status().commit_index;
    wait_for(RECOVER, "the follower to apply everything", || {
        (f.status().last_applied >= commit).then_some(())
    });
    let saved_clock = snapshot_now(&f);
    let (clock_before, applied_before) = clock_then_applied(&f);
    drop(f);
    c.crash(follower);
    // Meanwhile the short keys expire, and the leader snapshots past the
    // follower's log.
    for key in &filler[80..] {
        write(&c, set(key, Expiry::Clear));
    }
    wait_for(RECOVER, "the short keys to be deleted", || {
        let node = c.node(c.leader()?)?;
        holds_none(&node, &short).then_some(())
    });
    // The leader compacts its log past the follower's: it catches up from
    // a snapshot.
    let l = c.node(c.wait_for_leader()).unwrap();
    snapshot_now(&l);
    wait_for(
        RECOVER,
        "the leader's log compacted past the follower's",
        || (l.snapshot_status().log_first_index > applied_before + 1).then_some(()),
    );
    drop(l);
    c.restart(follower);
    let f = c.node(follower).unwrap();
    let restored = f.with_state(|kv| kv.expiries().clock());
    assert!(
        restored >= saved_clock,
        "node {follower} restarted with clock {restored}, behind its snapshot's {saved_clock}"
    );
    catch_up_keeping_the_clock(&f, applied_before, clock_before);
    let commit = c.node(c.wait_for_leader()).unwrap().status().commit_index;
    catch_up_keeping_the_clock(&f, commit, clock_before);
    let installed = f.snapshot_status().installed;
    assert!(
        installed > 0,
        "node {follower} caught up without a snapshot"
    );
    f.with_state(|kv| {
        for (i, key) in long.iter().enumerate() {
            assert_eq!(
                kv.expiries().get(key.as_bytes()),
                Some(long_deadline + i as u64)
            );
        }
        assert!(short.iter().all(|k| !has(kv, k)), "expired keys came back");
    });
    drop(f);

    // The whole cluster loses power while keys are about to expire; they
    // expire while it is down.
    let doomed = names("doomed", 20);
    let doomed_deadline = now_ms() + 300;
    let commands = doomed
        .iter()
        .map(|k| set(k, Expiry::At(doomed_deadline)))
        .collect();
    write(&c, Command::Multi(commands));
    let leader = c.wait_for_leader();
    let l = c.node(leader).unwrap();
    snapshot_now(&l);
    let (clock_before, applied_before) = clock_then_applied(&l);
    drop(l);
    c.crash_all();
    wait_for(
        Duration::from_secs(2),
        "the doomed keys' deadline to pass",
        || (now_ms() > doomed_deadline).then_some(()),
    );
    for id in c.ids() {
        c.restart(id);
    }
    let leader = c.wait_for_leader();
    catch_up_keeping_the_clock(&c.node(leader).unwrap(), applied_before, clock_before);
    let (by, reply) = read(
        &c,
        Read::Exists {
            keys: doomed.iter().map(|k| k.as_bytes().to_vec()).collect(),
        },
    );
    assert_eq!(
        reply,
        QueryReply::Integer(0),
        "node {by} shows expired keys"
    );
    for (i, key) in long.iter().enumerate() {
        let deadline = long_deadline + i as u64;
        assert_eq!(expire_time(&c, key), deadline as i64);
        assert_counts_down_to(&c, key, deadline);
    }
    for id in c.ids() {
        let node = c.node(id).unwrap();
        wait_for(RECOVER, "active expiry to delete the doomed keys", || {
            holds_none(&node, &doomed).then_some(())
        });
    }
    let (applied, _) = c.wait_converged();
    for id in c.ids() {
        let node = c.node(id).unwrap();
        let (keys, deadlines) = node.with_state(|kv| (kv.len(), kv.expiries().len()));
        assert_eq!(
            (keys, deadlines),
            (long.len() + filler.len(), long.len()),
            "node {id}"
        );
    }
    eprintln!(
        "expiry: restarts: node {follower} restarted at clock {restored} (its snapshot's at \
         least {saved_clock}), installed {installed} snapshot(s) and caught up; after the power \
         cut every replica agrees at {applied}"
    );
    c.finish();
}

/// Active expiry alone (no read or write touches the keys) deletes a burst
/// of 20,000 keys with PX 50 within a few seconds, on every replica, in
/// entries of at most `EXPIRE_BATCH` keys.
#[test]
fn a_burst_of_20000_keys_with_px_50_is_deleted_by_active_expiry_in_batches() {
    const KEYS: usize = 20_000;
    // No snapshot: the whole log stays, to count the deletions in it.
    let c = Chaos::with_config(3, seed(85), |config| config.snapshot_entries = 1_000_000);
    c.wait_for_leader();
    // 20 transactions of 1,000 SETs: 20 entries.
    for chunk in 0..20 {
        let commands = (0..1_000)
            .map(|i| set(&format!("burst{}", chunk * 1_000 + i), Expiry::In(50)))
            .collect();
        write(&c, Command::Multi(commands));
    }
    let written = Instant::now();
    let nodes: Vec<Arc<KvNode>> = c.ids().into_iter().map(|id| c.node(id).unwrap()).collect();
    wait_for(
        Duration::from_secs(5),
        "every key deleted on every replica",
        || {
            nodes
                .iter()
                .all(|n| n.with_state(|kv| kv.is_empty() && kv.expiries().is_empty()))
                .then_some(())
        },
    );
    let took = written.elapsed();
    let (applied, _) = c.wait_converged();
    let leader = c.node(c.wait_for_leader()).unwrap();
    let batches: Vec<Vec<Vec<u8>>> = leader
        .log_entries()
        .iter()
        .filter_map(|e| expired_keys(&e.payload))
        .collect();
    let largest = batches.iter().map(Vec::len).max().unwrap_or(0);
    let deleted: BTreeSet<&Vec<u8>> = batches.iter().flatten().collect();
    let proposed: usize = batches.iter().map(Vec::len).sum();
    eprintln!(
        "expiry: {KEYS} keys with PX 50 gone from every replica {took:?} after the last was \
         written, in {} entries of at most {largest} keys ({proposed} keys proposed); applied \
         {applied}",
        batches.len()
    );
    assert_eq!(deleted.len(), KEYS, "keys deleted by active expiry");
    assert!(largest <= EXPIRE_BATCH, "an entry deleted {largest} keys");
    assert!(batches.len() >= KEYS.div_ceil(EXPIRE_BATCH));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    c.finish();
}
