//! The fault-injection suite: crashes, partitions, a lossy network, paused
//! leaders and membership changes, with every scenario checked for Raft's
//! invariants and for a linearizable history (see `support/chaos`). Each
//! scenario prints its seed; `RAFTNODE_SEED=N` replays one, `RAFTNODE_SOAK=1`
//! runs the randomized ones ten times longer (the membership scenarios, which
//! run a few seeds each, ten times as many seeds).

#[path = "support/chaos/mod.rs"]
mod chaos;
mod support;

use chaos::membership::Plan;
use chaos::netproxy::LinkMode;
use chaos::{seed, seeds, soak, Chaos, RECOVER};
use raftnode::raft::membership::ConfChange;
use raftnode::raft::RoleKind;
use rand::seq::SliceRandom;
use rand::Rng;
use std::thread;
use std::time::{Duration, Instant};
use support::wait_for;

fn sleep_ms(ms: u64) {
    thread::sleep(Duration::from_millis(ms));
}

#[test]
fn initial_election_then_reelection_when_the_leader_is_cut_off_and_rejoins() {
    let mut c = Chaos::new(3, seed(11));
    let first = c.wait_for_leader();
    c.start_clients(4, 3);
    sleep_ms(300);
    c.net().isolate(first);
    let second = wait_for(RECOVER, "a new leader without the old one", || {
        c.leader().filter(|&l| l != first)
    });
    sleep_ms(300);
    c.net().heal();
    // The old leader rejoins as a follower of the new term.
    let old = c.node(first).unwrap();
    wait_for(RECOVER, "the old leader to follow", || {
        let s = old.try_status()?;
        (s.role == RoleKind::Follower && s.leader_id.is_some()).then_some(())
    });
    assert_ne!(first, second);
    sleep_ms(300);
    c.finish();
}

#[test]
fn no_new_leader_and_no_commit_without_a_majority() {
    let mut c = Chaos::new(5, seed(12));
    let leader = c.wait_for_leader();
    let term = c.node(leader).unwrap().status().term;
    // Split 2 / 1 / 1 / 1: nobody has three votes.
    let others: Vec<u64> = c.ids().into_iter().filter(|&id| id != leader).collect();
    c.net().partition(&[
        &[leader, others[0]],
        &[others[1]],
        &[others[2]],
        &[others[3]],
    ]);
    sleep_ms(200);
    c.start_clients(3, 2);
    let before = c.history_len();
    sleep_ms(1500);
    let elected: Vec<_> = c
        .leaders_seen()
        .split_off(&(term + 1))
        .into_iter()
        .collect();
    assert!(
        elected.is_empty(),
        "elected without a majority: {elected:?}"
    );
    // Anything acknowledged now would have to be committed by a minority.
    c.stop_clients();
    let acked_during = c.acknowledged_writes_since(before);
    assert_eq!(
        acked_during, 0,
        "a minority acknowledged {acked_during} writes"
    );
    c.net().heal();
    c.wait_for_leader();
    c.finish();
}

#[test]
fn many_elections_with_three_of_seven_cut_off() {
    let mut c = Chaos::new(7, seed(13));
    c.wait_for_leader();
    c.start_clients(3, 3);
    for _round in 0..10 * soak() {
        let mut ids = c.ids();
        ids.shuffle(&mut c.rng);
        for &id in &ids[..3] {
            c.net().isolate(id);
        }
        // The four connected nodes elect exactly one leader among them.
        let leader = wait_for(RECOVER, "a leader among the connected four", || {
            c.leader().filter(|l| !ids[..3].contains(l))
        });
        assert!(ids[3..].contains(&leader));
        sleep_ms(100);
        c.net().heal();
        sleep_ms(100);
    }
    c.finish();
}

#[test]
fn isolated_leader_acknowledges_nothing_and_its_entries_are_overwritten() {
    let mut c = Chaos::new(5, seed(14));
    let old = c.wait_for_leader();
    c.start_clients(3, 3);
    sleep_ms(200);
    c.net().isolate(old);
    // Clients keep writing straight to the isolated leader.
    let acked = c.write_via(old, "k-isolated", 30, 6);
    assert_eq!(acked, 0, "an isolated leader acknowledged writes");
    let isolated_log = c.node(old).unwrap().status().last_log_index;
    let new = wait_for(RECOVER, "a leader in the majority", || {
        c.leader().filter(|&l| l != old)
    });
    assert_ne!(new, old);
    c.write_via(new, "k-majority", 20, 4);
    c.net().heal();
    // After healing the old leader's log matches the new leader's: its
    // uncommitted tail was replaced.
    let old_node = c.node(old).unwrap();
    let new_node = c.node(c.wait_for_leader()).unwrap();
    // Clients are still writing, so compare up to a commit index the old
    // leader is known to have reached.
    let commit = wait_for(RECOVER, "the old leader's log to converge", || {
        let commit = new_node.status().commit_index;
        (old_node.status().last_applied >= commit).then_some(commit as usize)
    });
    // Compaction may have dropped different prefixes: compare what both
    // still hold.
    let (old_log, new_log) = (old_node.log_entries(), new_node.log_entries());
    let first_of = |log: &[raftnode::raft::message::Entry]| {
        log.first().map_or(usize::MAX, |e| e.index as usize)
    };
    let first = first_of(&old_log).max(first_of(&new_log));
    let held = |log: &[raftnode::raft::message::Entry]| -> Vec<_> {
        log.iter()
            .filter(|e| (first..=commit).contains(&(e.index as usize)))
            .cloned()
            .collect()
    };
    assert_eq!(held(&old_log), held(&new_log), "committed entries differ");
    assert!(!held(&new_log).is_empty() || first > commit);
    assert!(isolated_log > 0);
    c.finish();
}

/// Figure 8 of the paper: leaders crash at random moments under load, and
/// crashed nodes come back only when fewer than a majority are up. Tiny
/// AppendEntries (one entry each) make followers acknowledge a new leader's
/// old-term entries before its own, which is when counting replicas of an
/// old-term entry would commit it unsafely. Two of the clients pipeline
/// (bursts of up to 8 writes or reads started before the first is waited
/// for): a leader crashing under a burst leaves its waits with an unknown
/// outcome, and a new leader may overwrite the entries it did not commit.
/// Two clients write keys with short times to live: with leaders crashing
/// while they expire, no read sees one past its deadline (see
/// `support/chaos/ttl.rs`).
#[test]
fn figure_8_leaders_crash_at_random_moments_under_load() {
    let mut c = Chaos::with_config(5, seed(15), |config| config.max_append_bytes = 1);
    c.start_clients(4, 2);
    c.start_pipelined_clients(2, 2);
    c.start_ttl_clients(2, 32);
    let iterations = 100 * soak();
    for _ in 0..iterations {
        if let Some(leader) = c.leader_within(Duration::from_millis(500)) {
            sleep_ms(c.rng.gen_range(0..30));
            c.crash(leader);
        } else if let Some(&id) = c.down().choose(&mut c.rng) {
            c.restart(id);
        }
        if c.running().len() < c.majority() {
            let mut down = c.down();
            down.shuffle(&mut c.rng);
            let bring_back = c.rng.gen_range(1..=down.len());
            for &id in &down[..bring_back] {
                c.restart(id);
            }
        }
    }
    let pipelined = c.pipeline_stats();
    c.finish();
    // The pipelined paths ran: bursts of several ops completed, and waits
    // failed as leaders crashed under them.
    assert!(
        pipelined.multi_completed > 0,
        "no pipelined burst completed more than one op: {pipelined}"
    );
    assert!(
        pipelined.wait_definite + pipelined.wait_unknown > 0,
        "no pipelined wait failed, though leaders crashed under load: {pipelined}"
    );
}

/// A minority leader piles up uncommitted entries while the majority commits
/// others; flipped several times. Lagging nodes must catch up quickly: the
/// conflict hints let a leader skip a whole term per round trip.
#[test]
fn backup_minority_leader_entries_are_replaced_quickly() {
    let mut c = Chaos::new(5, seed(16));
    let mut leader = c.wait_for_leader();
    for round in 0..4 {
        let mut others: Vec<u64> = c.ids().into_iter().filter(|&id| id != leader).collect();
        others.shuffle(&mut c.rng);
        let (minority, majority) = ([leader, others[0]], [others[1], others[2], others[3]]);
        c.net().partition(&[&minority, &majority]);
        let acked = c.write_via(leader, &format!("minority{round}"), 50, 10);
        assert_eq!(acked, 0, "a minority leader acknowledged writes");
        let new = wait_for(RECOVER, "a majority leader", || {
            c.leader().filter(|l| majority.contains(l))
        });
        assert_eq!(c.write_via(new, &format!("majority{round}"), 50, 10), 50);
        leader = new;
    }
    c.net().heal();
    let started = Instant::now();
    let leader_node = c.node(c.wait_for_leader()).unwrap();
    let target = leader_node.status().commit_index;
    for id in c.ids() {
        let node = c.node(id).unwrap();
        wait_for(RECOVER, "lagging nodes to catch up", || {
            (node.status().last_applied >= target).then_some(())
        });
    }
    let took = started.elapsed();
    eprintln!("backup: every node caught up with {target} entries in {took:?}");
    assert!(took < Duration::from_secs(5), "catching up took {took:?}");
    c.finish();
}

/// Two of the clients pipeline, two write keys with short times to live
/// (see the Figure 8 scenario).
#[test]
fn random_partitions_including_one_way_cuts() {
    let mut c = Chaos::new(5, seed(17));
    c.wait_for_leader();
    c.start_clients(5, 3);
    c.start_pipelined_clients(2, 3);
    c.start_ttl_clients(2, 32);
    let until = Instant::now() + Duration::from_secs(20) * soak();
    while Instant::now() < until {
        c.net().heal();
        let mut ids = c.ids();
        ids.shuffle(&mut c.rng);
        match c.rng.gen_range(0..3) {
            0 => {
                let split = c.rng.gen_range(1..ids.len());
                c.net().partition(&[&ids[..split], &ids[split..]]);
            }
            1 => {
                // One-way cuts: a node that can send but not hear, or the reverse.
                for _ in 0..c.rng.gen_range(1..6) {
                    let (a, b) = (ids[c.rng.gen_range(0..5)], ids[c.rng.gen_range(0..5)]);
                    if a != b {
                        c.net().cut(a, b);
                    }
                }
            }
            _ => {} // healed for a while
        }
        sleep_ms(c.rng.gen_range(1000..1500));
    }
    c.finish();
}

/// Two of the clients pipeline, two write keys with short times to live
/// (see the Figure 8 scenario).
#[test]
fn unreliable_network_with_crashes_and_restarts() {
    let mut c = Chaos::new(5, seed(18));
    let flaky = LinkMode::Flaky {
        drop_frames: 0.1,
        jitter: Duration::from_millis(25),
        long_delay_probability: 0.01,
        long_delay: Duration::from_millis(600),
    };
    for a in c.ids() {
        for b in c.ids().into_iter().filter(|&b| b != a) {
            c.net().set(a, b, flaky.clone());
        }
    }
    c.start_clients(4, 3);
    c.start_pipelined_clients(2, 3);
    c.start_ttl_clients(2, 32);
    let until = Instant::now() + Duration::from_secs(12) * soak();
    while Instant::now() < until {
        let running = c.running();
        let down = c.down();
        if !down.is_empty() && (c.rng.gen_bool(0.5) || running.len() < c.majority()) {
            let id = *down.choose(&mut c.rng).unwrap();
            c.restart(id);
        } else {
            let id = *running.choose(&mut c.rng).unwrap();
            c.crash(id);
        }
        sleep_ms(c.rng.gen_range(300..900));
    }
    c.finish();
}

#[test]
fn whole_cluster_crashes_under_load_and_keeps_every_acknowledged_write() {
    let mut c = Chaos::new(3, seed(19));
    c.start_clients(5, 3);
    for _ in 0..4 * soak() {
        c.wait_for_leader();
        sleep_ms(c.rng.gen_range(200..500));
        // Power fails everywhere at once: whatever was not fsynced is lost.
        c.crash_all();
        for id in c.ids() {
            c.restart(id);
        }
    }
    c.finish();
}

#[test]
fn paused_leader_steps_down_and_does_no_harm_when_it_wakes() {
    let mut c = Chaos::new(3, seed(20));
    c.start_clients(4, 2);
    for _ in 0..3 * soak() {
        let leader = c.wait_for_leader();
        let term = c.node(leader).unwrap().status().term;
        sleep_ms(100);
        // Frozen for several election timeouts.
        c.pause_for(leader, Duration::from_millis(600));
        let node = c.node(leader).unwrap();
        wait_for(RECOVER, "the woken leader to step down", || {
            let s = node.try_status()?;
            (s.term > term && s.leader_id != Some(leader) || s.role != RoleKind::Leader)
                .then_some(())
        });
        sleep_ms(200);
    }
    c.finish();
}

/// Writes retried under message loss and leader changes take effect exactly
/// once: counters and appended strings show any double application.
#[test]
fn retried_writes_apply_exactly_once_under_loss_and_leader_changes() {
    let mut c = Chaos::new(5, seed(23));
    let lossy = LinkMode::Lossy {
        drop_frames: 0.05,
        drop_connections: 0.01,
    };
    for a in c.ids() {
        for b in c.ids().into_iter().filter(|&b| b != a) {
            c.net().set(a, b, lossy.clone());
        }
    }
    c.wait_for_leader();
    c.start_session_clients(5, 2);
    for _ in 0..6 * soak() {
        sleep_ms(c.rng.gen_range(300..700));
        if let Some(leader) = c.leader() {
            c.crash(leader);
            sleep_ms(100);
            c.restart(leader);
        }
    }
    sleep_ms(300);
    let leader = c.wait_for_leader();
    let suppressed = c
        .node(leader)
        .unwrap()
        .with_state(|kv| kv.duplicates_suppressed());
    eprintln!("exactly-once: {suppressed} retried writes were answered from their session");
    assert!(
        suppressed > 0,
        "no retry raced its original: the scenario proved nothing"
    );
    c.finish();
}

/// A follower flapping in and out of a partition does not raise the
/// cluster's term: with pre-vote it never wins a pre-vote, so never starts a
/// real election, and the leader stays.
#[test]
fn flapping_node_does_not_raise_the_term_with_pre_vote() {
    let mut c = Chaos::new(5, seed(24));
    let leader = c.wait_for_leader();
    c.start_clients(2, 2);
    sleep_ms(200);
    let term = c.term_of(leader);
    let flapper = c.ids().into_iter().find(|&id| id != leader).unwrap();
    for _ in 0..8 * soak() {
        c.net().isolate(flapper);
        sleep_ms(400); // several election timeouts
        c.net().heal();
        sleep_ms(250);
    }
    assert_eq!(c.leader(), Some(leader), "the leader was disrupted");
    assert_eq!(c.term_of(leader), term, "the term moved");
    assert_eq!(c.term_of(flapper), term, "the flapping node's term moved");
    c.finish();
}

/// A leader cut off from the majority, with clients reading from it, never
/// returns a stale value: it cannot confirm its leadership, and steps down.
#[test]
fn partitioned_leader_serves_no_stale_reads() {
    let c = Chaos::new(5, seed(25));
    let old = c.wait_for_leader();
    c.write_via(old, "r", 5, 1);
    c.net().isolate(old);
    let until = Instant::now() + Duration::from_millis(1500);
    let served = thread::scope(|s| {
        let reader = s.spawn(|| c.read_via_until(old, "r", until));
        let new = wait_for(RECOVER, "a majority leader", || {
            c.leader().filter(|&l| l != old)
        });
        c.write_via(new, "r", 20, 2);
        reader.join().unwrap()
    });
    eprintln!("the cut-off leader served {served} reads");
    let status = c.node(old).unwrap().status();
    assert_ne!(
        status.role,
        RoleKind::Leader,
        "check-quorum did not depose it"
    );
    c.finish();
}

// ---------------------------------------------------------------------------
// Membership changes (chapter 4) at random moments, under faults: a pool of
// twelve ids, three of them voters at first. A thread adds nodes (learners,
// mostly promoted by the leader once caught up), promotes, removes (the
// leader too) and transfers leadership through whichever node leads, while
// the scenario breaks the network, the nodes and their disks. Every check
// of the other scenarios holds, and at the end every member holds the same
// configuration and state (see `support/chaos/membership.rs`). An id once
// removed is not added back, and a voter is promoted or removed only if a
// majority of the voters it leaves hold the configuration in force, but in
// the ignored scenarios that show why.
// ---------------------------------------------------------------------------

/// How long each seed of a membership scenario injects faults.
const MEMBERSHIP_CHAOS: Duration = Duration::from_millis(3500);

/// The ids a membership scenario may use: enough for an addition every few
/// hundred milliseconds without adding a removed id back.
const POOL: u64 = 12;

/// Restarts every crashed node if too few voters run to make progress.
fn keep_a_majority_of_voters(c: &Chaos) {
    if c.voters_short() {
        for id in c.down() {
            c.restart(id);
        }
    }
}

/// Single-server changes while partitions (also one-way), crashes and
/// restarts and a paused leader come and go: a change may be cut off from
/// the majority half-way, be finished by the next leader or abandoned
/// (§4.1), and a removed node may be cut off before it learns it was.
#[test]
fn membership_changes_during_partitions_and_crashes_stay_linearizable() {
    for seed in seeds(&[41, 42, 43]) {
        membership_changes_under_faults(seed, Plan::default());
    }
}

/// Partitions (also one-way), crashes and restarts and a paused leader,
/// while the membership thread follows `plan`.
fn membership_changes_under_faults(seed: u64, plan: Plan) {
    let pool = if plan.add_back_removed { 5 } else { POOL };
    let mut c = Chaos::with_pool(pool, 3, seed, |_| {});
    c.wait_for_leader();
    c.start_clients(4, 3);
    c.start_membership_changes(plan);
    let until = Instant::now() + MEMBERSHIP_CHAOS;
    while Instant::now() < until {
        c.net().heal();
        // The nodes that run: the others have no traffic to cut.
        let mut ids = c.running();
        ids.shuffle(&mut c.rng);
        match c.rng.gen_range(0..8) {
            0 if ids.len() > 1 => {
                let split = c.rng.gen_range(1..ids.len());
                c.net().partition(&[&ids[..split], &ids[split..]]);
            }
            1 => {
                if let Some(leader) = c.leader() {
                    c.net().isolate(leader);
                }
            }
            2 => {
                for _ in 0..c.rng.gen_range(1..5) {
                    let (a, b) = (ids.choose(&mut c.rng), ids.choose(&mut c.rng));
                    if let (Some(&a), Some(&b)) = (a, b) {
                        if a != b {
                            c.net().cut(a, b);
                        }
                    }
                }
            }
            3 => {
                if let Some(&id) = ids.first() {
                    c.crash(id);
                }
            }
            4 => {
                if let Some(&id) = c.down().choose(&mut c.rng) {
                    c.restart(id);
                }
            }
            5 => {
                if let Some(leader) = c.leader() {
                    let pause = c.rng.gen_range(100..300);
                    c.pause_for(leader, Duration::from_millis(pause));
                }
            }
            _ => {} // healed for a while
        }
        keep_a_majority_of_voters(&c);
        sleep_ms(c.rng.gen_range(150..400));
    }
    let report = c.finish().expect("membership changes ran");
    assert!(
        report.added + report.removed > 0,
        "seed {seed}: no membership change happened: {report}"
    );
}

/// Like the scenario above, with removed ids added back (with an empty data
/// dir, the way back for a wiped machine): see the next scenario for the
/// bug this runs into, usually within a few seconds, and
/// `a_lagging_voter_votes_for_members_added_back_while_it_was_down` for one
/// it met once that one was fixed (seed 5002).
#[test]
fn membership_changes_adding_removed_nodes_back_under_faults() {
    for seed in seeds(&[44, 45, 46]) {
        let plan = Plan {
            add_back_removed: true,
            ..Plan::default()
        };
        membership_changes_under_faults(seed, plan);
    }
}

/// The way back for a wiped machine, without any fault: remove the node,
/// start it with an empty data dir and `join`, add it back. The leader took
/// a snapshot between the removal and the addition, so the node added back
/// catches up from it. The configuration in force at that snapshot is the
/// one that removed the node, committed; the core takes the node's
/// removal (`RaftCore::removed_at`, from the committed configuration at
/// its commit index) for its own, and the node records it durably: as a
/// process it would exit, and its data dir refuses to start ("was removed
/// from the cluster"), although it is a member. Catching up from the log
/// instead does the same whenever its commit index stops between the two
/// entries.
#[test]
fn a_node_added_back_after_its_removal_does_not_take_itself_for_removed() {
    let mut c = Chaos::with_pool(4, 3, seed(71), |config| {
        config.snapshot_entries = 40;
        config.snapshot_keep = 10;
    });
    c.wait_for_leader();
    c.start_clients(2, 2);
    c.add_node(4, true);
    wait_for(RECOVER, "node 4 to be promoted", || {
        c.voters().contains(&4).then_some(())
    });
    let removed_at = c.remove_node(4);
    // The leader snapshots past the removal and compacts its log: a node
    // that joins now catches up from that snapshot.
    wait_for(RECOVER, "a snapshot past the removal", || {
        let node = c.node(c.leader()?)?;
        (node.snapshot_status().log_first_index > removed_at + 1).then_some(())
    });
    let added_at = c.add_node(4, true);
    let node = c.node(4).unwrap();
    wait_for(RECOVER, "node 4 to catch up", || {
        (node.status().last_applied >= added_at).then_some(())
    });
    assert_eq!(
        node.removed(),
        None,
        "node 4, added back at {added_at} with an empty data dir, takes itself for removed \
         (its earlier removal was at {removed_at})"
    );
    // Its data dir starts again.
    drop(node);
    c.crash(4);
    c.restart(4);
    c.finish();
}

/// Power cuts (unsynced writes lost) aimed at membership changes: the leader
/// or another member while a configuration entry is not yet committed, a
/// learner while it catches up (often by snapshot), the whole cluster at
/// once, or anyone. A configuration entry appended but never synced may be
/// lost with the power; one that was committed never may, and no
/// acknowledged write is lost.
#[test]
fn membership_changes_with_power_cuts_lose_no_acknowledged_write() {
    for seed in seeds(&[51, 52, 53]) {
        let mut c = Chaos::with_pool(POOL, 3, seed, |config| {
            // New members catch up by snapshot as well as by log.
            config.snapshot_entries = 60;
            config.snapshot_keep = 20;
        });
        c.wait_for_leader();
        c.start_clients(4, 3);
        c.start_membership_changes(Plan {
            interval_ms: (20, 120),
            ..Plan::default()
        });
        let (mut in_flight, mut catching_up, mut rounds) = (0, 0, 0);
        let until = Instant::now() + MEMBERSHIP_CHAOS;
        while Instant::now() < until {
            rounds += 1;
            let aim = rounds % 4;
            // Wait for the moment this round aims at.
            let deadline = Instant::now() + Duration::from_millis(300);
            let mut victims = Vec::new();
            while Instant::now() < deadline && victims.is_empty() {
                let Some(leader) = c.leader() else {
                    sleep_ms(1);
                    continue;
                };
                let Some(status) = c.node(leader).and_then(|n| n.try_status()) else {
                    continue;
                };
                let others: Vec<u64> = c.running().into_iter().filter(|&id| id != leader).collect();
                match aim {
                    0 if status.config_change_in_progress => victims = vec![leader],
                    1 if status.config_change_in_progress && !others.is_empty() => {
                        victims = vec![*others.choose(&mut c.rng).unwrap()]
                    }
                    2 if !status.learners.is_empty() => {
                        victims = vec![*status.learners.choose(&mut c.rng).unwrap()];
                        catching_up += 1;
                    }
                    3 => victims = c.running(),
                    _ => {}
                }
                if aim < 2 && !victims.is_empty() {
                    in_flight += 1;
                }
                thread::sleep(Duration::from_micros(200));
            }
            if victims.is_empty() {
                victims.extend(c.running().choose(&mut c.rng));
            }
            if aim == 3 {
                c.crash_all();
            } else {
                for id in victims {
                    c.crash(id);
                }
            }
            sleep_ms(c.rng.gen_range(20..150));
            for id in c.down() {
                c.restart(id);
            }
            sleep_ms(c.rng.gen_range(50..250));
        }
        eprintln!(
            "power cuts: {rounds} rounds, {in_flight} with a configuration change in flight, \
             {catching_up} of a learner"
        );
        let report = c.finish().expect("membership changes ran");
        assert!(
            report.added + report.removed > 0,
            "seed {seed}: no membership change happened: {report}"
        );
    }
}

/// Leadership transfers (§3.10), mostly, and a change of membership now and
/// then, over a lossy network while nodes are paused, cut off, crashed and
/// restarted: the target may be frozen, unreachable or down, or lose its
/// TimeoutNow. A transfer either hands leadership to its target or is
/// abandoned within an election timeout, and leaves no write lost or
/// applied twice.
#[test]
fn leadership_transfers_under_chaos() {
    fn lossy_everywhere(c: &Chaos) {
        let lossy = LinkMode::Lossy {
            drop_frames: 0.02,
            drop_connections: 0.005,
        };
        for a in c.ids() {
            for b in c.ids().into_iter().filter(|&b| b != a) {
                c.net().set(a, b, lossy.clone());
            }
        }
    }
    for seed in seeds(&[61, 62, 63]) {
        let mut c = Chaos::with_pool(POOL, 3, seed, |_| {});
        lossy_everywhere(&c);
        c.wait_for_leader();
        c.start_clients(4, 3);
        c.start_membership_changes(Plan::transfers());
        let until = Instant::now() + MEMBERSHIP_CHAOS;
        while Instant::now() < until {
            lossy_everywhere(&c);
            let running = c.running();
            match c.rng.gen_range(0..6) {
                0 | 1 => {
                    if let Some(&id) = running.choose(&mut c.rng) {
                        let pause = c.rng.gen_range(50..250);
                        c.pause_for(id, Duration::from_millis(pause));
                    }
                }
                2 => {
                    if let Some(&id) = running.choose(&mut c.rng) {
                        c.net().isolate(id);
                    }
                }
                3 => {
                    if let Some(&id) = running.choose(&mut c.rng) {
                        c.crash(id);
                    }
                }
                4 => {
                    if let Some(&id) = c.down().choose(&mut c.rng) {
                        c.restart(id);
                    }
                }
                _ => {}
            }
            keep_a_majority_of_voters(&c);
            sleep_ms(c.rng.gen_range(150..400));
        }
        let report = c.finish().expect("membership changes ran");
        assert!(
            report.transfers > 0,
            "seed {seed}: no transfer succeeded: {report}"
        );
    }
}

/// Like the first membership scenario, with voters promoted and removed even
/// when most of the voters they leave lag behind the configuration in
/// force: see the next scenario for the bug this runs into (seeds 1010 and
/// 1013 of the first scenario did, before its membership thread was made
/// to avoid it: no leader for good after healing).
#[test]
fn membership_changes_leaving_lagging_voters_under_faults() {
    for seed in seeds(&[1010, 1013, 47]) {
        let plan = Plan {
            caught_up_majority: false,
            ..Plan::default()
        };
        membership_changes_under_faults(seed, plan);
    }
}

/// §4.1: "servers also grant votes to candidates that are not part of the
/// server's latest configuration (if the candidate has a sufficiently
/// up-to-date log and a current term). This vote may occasionally be needed
/// to keep the cluster available." Here it is needed. Voters 1, 2, 3; one
/// of them (the lagging node) goes down; node 4 is added and promoted;
/// another of the first three is removed; the leader removes itself, which
/// leaves voters {lagging, 4} — an entry that cannot commit while the
/// lagging node is down. The lagging node comes back, with a log from
/// before node 4 was added. Node 4 holds every entry and needs only the
/// lagging node's vote; but the lagging node ignores pre-votes and votes
/// from node 4, "not a member" of its configuration
/// (`RaftCore::ignores_vote_request`), and cannot be elected itself (the
/// old leader, holding a longer log, refuses it). No leader is ever
/// elected again, with every node up and the network whole.
#[test]
fn a_lagging_voter_votes_for_a_member_it_does_not_know_yet() {
    let c = Chaos::with_pool(4, 3, seed(72), |_| {});
    let first = c.wait_for_leader();
    let lagging = (1..=3).find(|&id| id != first).unwrap();
    let known: Vec<u64> = (1..=3).filter(|&id| id != lagging).collect();
    c.crash(lagging);
    c.add_node(4, true);
    wait_for(RECOVER, "node 4 to be promoted", || {
        c.voters().contains(&4).then_some(())
    });
    // A leader the lagging node knows.
    let leader = wait_for(RECOVER, "a leader other than node 4", || {
        let leader = c.leader()?;
        if leader == 4 {
            let _ = c.node(4)?.transfer_leadership(Some(known[0]));
            return None;
        }
        Some(leader)
    });
    let other = *known.iter().find(|&&id| id != leader).unwrap();
    c.remove_node(other);
    // Voters {lagging, 4}: not committed while the lagging node is down.
    let removal = c
        .node(leader)
        .unwrap()
        .change_membership(ConfChange::Remove { id: leader });
    eprintln!("node {leader} removing itself: {removal:?}");
    c.restart(lagging);
    let elected = c.leader_within(Duration::from_secs(5));
    assert!(
        elected.is_some(),
        "no leader within 5 s: node 4, up to date and a voter of {{{lagging}, 4}}, needs the \
         vote of node {lagging}, whose configuration (from before node 4 was added) does not \
         have node 4"
    );
    c.finish();
}

/// A voter that was down while other members were removed and added back
/// with new data dirs (the way back for a wiped machine) knows them by
/// their old data dirs' incarnations, and refuses them at the handshake
/// ("its data dir was wiped or replaced"), so it can neither vote for them
/// nor hear from them. Here: voters {leader, lagging, other, 4}; the
/// lagging node goes down; 4 and `other` are removed and added back; the
/// leader, cut off from them, removes itself (an entry only it holds, so it
/// no longer campaigns, and its longer log makes it refuse the others); the
/// lagging node comes back. Nodes 4 and `other` hold every committed entry
/// and need a third vote: only the lagging node's can be had, and §4.1
/// says it should be given. None is: no leader, with every node up and the
/// network whole. (Found by `membership_changes_adding_removed_nodes_back
/// _under_faults` run against main's fixes for the two bugs above, seed
/// 5002, where the lagging node also hung up on a node it knew as removed
/// though it had been added back since.)
#[test]
fn a_lagging_voter_votes_for_members_added_back_while_it_was_down() {
    let c = Chaos::with_pool(4, 3, seed(73), |_| {});
    let leader = c.wait_for_leader();
    let mut others = (1..=3).filter(|&id| id != leader);
    let (lagging, other) = (others.next().unwrap(), others.next().unwrap());
    c.add_node(4, true);
    wait_for(RECOVER, "four voters, every incarnation recorded", || {
        let membership = c.node(lagging)?.membership();
        let recorded = membership.members.iter().all(|m| {
            m.incarnation.is_some() && m.suffrage == raftnode::raft::membership::Suffrage::Voter
        });
        (membership.members.len() == 4 && recorded).then_some(())
    });
    c.crash(lagging);
    for id in [4, other] {
        c.remove_node(id);
        c.add_node(id, true);
        wait_for(RECOVER, "the node added back to be promoted", || {
            c.voters().contains(&id).then_some(())
        });
    }
    assert_eq!(c.wait_for_leader(), leader, "the leader changed");
    // Nothing left for the leader to record: its removal is not refused.
    wait_for(RECOVER, "every incarnation recorded, and committed", || {
        let membership = c.node(leader)?.membership();
        let recorded = membership.members.iter().all(|m| m.incarnation.is_some());
        (recorded && !membership.change_in_progress).then_some(())
    });
    for id in [4, other] {
        c.net().cut(leader, id);
    }
    let removal = c
        .node(leader)
        .unwrap()
        .change_membership(ConfChange::Remove { id: leader });
    eprintln!("node {leader} removing itself, cut off: {removal:?}");
    c.net().heal();
    c.restart(lagging);
    let elected = c.leader_within(Duration::from_secs(5));
    assert!(
        elected.is_some(),
        "no leader within 5 s: nodes 4 and {other} need the vote of node {lagging}, which \
         knows them by the data dirs they had before they were removed and added back"
    );
    c.finish();
}

// ---------------------------------------------------------------------------
// Real processes: only a real crash shows what fsync really saved.
// ---------------------------------------------------------------------------

/// §7 under power failure: snapshots every 30 entries keeping 10, and nodes
/// power-cut at moments chosen around snapshots — while one is being written
/// when the timing allows, right after one (during compaction), or anywhere.
/// Every restart must succeed (no damaged or stale snapshot is loaded), and
/// the history must stay linearizable with every invariant intact: no
/// acknowledged write is lost.
#[test]
fn power_cuts_around_snapshots_and_compaction_lose_no_acknowledged_write() {
    let mut c = Chaos::with_config(3, seed(31), |config| {
        config.snapshot_entries = 30;
        config.snapshot_keep = 10;
        config.snapshot_chunk_bytes = 512;
    });
    c.wait_for_leader();
    c.start_clients(4, 5);
    let mut during = 0;
    let mut taken_before_cuts = 0;
    for round in 0..12 {
        let ids = c.running();
        let id = *ids.choose(&mut c.rng).unwrap();
        let node = c.node(id).unwrap();
        let taken = node.snapshot_status().taken;
        let deadline = Instant::now() + Duration::from_millis(400);
        // Wait for the moment this round aims at.
        while Instant::now() < deadline {
            let status = node.snapshot_status();
            let hit = match round % 3 {
                0 => status.in_progress,
                1 => status.taken > taken,
                _ => true,
            };
            if hit {
                during += usize::from(status.in_progress);
                break;
            }
            thread::sleep(Duration::from_micros(200));
        }
        taken_before_cuts += node.snapshot_status().taken;
        drop(node);
        c.crash(id);
        sleep_ms(c.rng.gen_range(20..150));
        c.restart(id);
        sleep_ms(100);
    }
    let snapshots: u64 = taken_before_cuts
        + c.running()
            .iter()
            .map(|&id| c.node(id).unwrap().snapshot_status().taken)
            .sum::<u64>();
    eprintln!(
        "power cuts while a snapshot was being written: {during}; snapshots taken: {snapshots}"
    );
    assert!(snapshots > 0, "no snapshot was taken");
    c.finish();
}

mod processes {
    use super::chaos::linearizability::{self, CheckResult, History, Input, Output};
    use super::chaos::seed;
    use super::support::process::{ProcCluster, Resp};
    use super::support::wait_for;
    use raftnode::redis::resp::Reply;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    /// A client process over RESP: follows MOVED, treats a lost connection or
    /// a TIMEOUT as an unknown outcome.
    fn run_client(
        ports: Vec<u16>,
        history: Arc<History>,
        stop: Arc<AtomicBool>,
        client: usize,
        seed: u64,
        values: Arc<AtomicU64>,
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut port = ports[client % ports.len()];
        let mut conn: Option<Resp> = None;
        while !stop.load(Ordering::Acquire) {
            let Some(c) = conn.as_mut() else {
                conn = Resp::connect(port).ok().inspect(|c| {
                    let _ = c.stream.set_read_timeout(Some(Duration::from_secs(2)));
                });
                if conn.is_none() {
                    port = ports[rng.gen_range(0..ports.len())];
                    thread::sleep(Duration::from_millis(20));
                }
                continue;
            };
            let key = format!("p{}", rng.gen_range(0..3));
            let (args, input) = if rng.gen_bool(0.5) {
                (vec!["GET".to_string(), key.clone()], Input::Read)
            } else {
                let v = format!("c{client}v{}", values.fetch_add(1, Ordering::Relaxed));
                (vec!["SET".into(), key.clone(), v.clone()], Input::Write(v))
            };
            let is_read = input == Input::Read;
            let op = history.invoke(client, key.as_str(), input);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            match c
                .try_send(&refs)
                .map_err(Into::into)
                .and_then(|()| c.try_read())
            {
                Ok(Reply::Bulk(v)) => {
                    history.complete(op, Output::Read(Some(String::from_utf8(v).unwrap())))
                }
                Ok(Reply::NullBulk) => history.complete(op, Output::Read(None)),
                Ok(Reply::Simple(_)) => history.complete(op, Output::Ok),
                Ok(Reply::Error(e)) if e.starts_with("TIMEOUT") && !is_read => {
                    history.indefinite(op)
                }
                Ok(Reply::Error(e)) => {
                    history.fail(op);
                    if let Some(target) = e.strip_prefix("MOVED 0 ") {
                        port = target.rsplit(':').next().unwrap().parse().unwrap();
                        conn = None;
                    } else {
                        thread::sleep(Duration::from_millis(10));
                    }
                }
                Ok(other) => panic!("unexpected reply {other:?}"),
                Err(_) => {
                    // Lost connection or no answer in time: unknown outcome.
                    if is_read {
                        history.fail(op);
                    } else {
                        history.indefinite(op);
                    }
                    conn = None;
                    port = ports[rng.gen_range(0..ports.len())];
                }
            }
        }
    }

    struct Clients {
        stop: Arc<AtomicBool>,
        threads: Vec<thread::JoinHandle<()>>,
        history: Arc<History>,
    }

    impl Clients {
        fn start(cluster: &ProcCluster, count: usize, seed: u64) -> Clients {
            let ports: Vec<u16> = cluster.nodes.values().map(|n| n.client_port).collect();
            let history = Arc::new(History::new());
            let stop = Arc::new(AtomicBool::new(false));
            let values = Arc::new(AtomicU64::new(0));
            let threads = (0..count)
                .map(|client| {
                    let (p, h, s, v) =
                        (ports.clone(), history.clone(), stop.clone(), values.clone());
                    thread::spawn(move || run_client(p, h, s, client, seed + client as u64, v))
                })
                .collect();
            Clients {
                stop,
                threads,
                history,
            }
        }

        /// Stops the clients, reads every key on the leader, and checks the
        /// whole history.
        fn finish(mut self, cluster: &ProcCluster, seed: u64) {
            self.stop.store(true, Ordering::Release);
            for t in self.threads.drain(..) {
                t.join().unwrap();
            }
            let leader = cluster.wait_for_leader();
            let mut c = cluster.client(leader);
            for key in ["p0", "p1", "p2"] {
                let op = self.history.invoke(999, key, Input::Read);
                match c.call(&["GET", key]) {
                    Reply::Bulk(v) => self
                        .history
                        .complete(op, Output::Read(Some(String::from_utf8(v).unwrap()))),
                    Reply::NullBulk => self.history.complete(op, Output::Read(None)),
                    other => panic!("final read failed: {other:?}"),
                }
            }
            let ops = self.history.ops();
            let done = ops.iter().filter(|op| op.is_completed()).count();
            eprintln!(
                "processes: seed {seed}: {} ops, {done} completed",
                ops.len()
            );
            assert!(done > 50, "too little happened to check: {done} ops");
            match linearizability::check(&ops, Duration::from_secs(20)) {
                CheckResult::Ok => {}
                other => panic!("seed {seed}: history not linearizable:\n{other}"),
            }
        }
    }

    impl Drop for Clients {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    #[test]
    fn kill_9_the_whole_cluster_under_load_keeps_every_acknowledged_write() {
        let seed = seed(21);
        let mut cluster = ProcCluster::start(3);
        cluster.wait_for_leader();
        let clients = Clients::start(&cluster, 4, seed);
        for _ in 0..3 {
            thread::sleep(Duration::from_millis(600));
            for id in 1..=3 {
                cluster.kill(id);
            }
            for id in 1..=3 {
                cluster.start_node(id);
            }
            cluster.wait_for_leader();
        }
        thread::sleep(Duration::from_millis(500));
        clients.finish(&cluster, seed);
    }

    #[test]
    fn sigstopped_leader_serves_no_stale_read_when_it_wakes() {
        let seed = seed(22);
        let cluster = ProcCluster::start(3);
        let leader = cluster.wait_for_leader();
        let clients = Clients::start(&cluster, 6, seed);
        thread::sleep(Duration::from_millis(500));
        cluster.signal(leader, "STOP");
        // Well past the election timeout: the others elect a new leader and
        // move on while clients connected to the old one wait.
        let new = wait_for(Duration::from_secs(10), "a new leader", || {
            let other = (1..=3).find(|&id| id != leader)?;
            let info = cluster.info(other);
            let l: u64 = info.get("leader_id")?.parse().ok()?;
            (l != leader).then_some(l)
        });
        thread::sleep(Duration::from_millis(800));
        cluster.signal(leader, "CONT");
        wait_for(
            Duration::from_secs(10),
            "the woken leader to step down",
            || (cluster.info(leader)["role"] != "leader").then_some(()),
        );
        thread::sleep(Duration::from_millis(500));
        assert_ne!(new, leader);
        clients.finish(&cluster, seed);
    }
}

/// `Node::halt` must return while peers keep connecting. A connection that
/// the listener accepts just before a halt is served by a thread that first
/// checks whether the node is stopping and only then registers its socket
/// for the halt to shut down (`node/listener.rs`, `serve`): one preempted
/// between the two registers after the halt's last `shutdown_all`, reads
/// on with no timeout once its handshake is done, and the halt waits for
/// it forever. Here peers (plain sockets that handshake, then stay silent)
/// connect without pause while nodes are halted, again and again for a
/// minute, with spinning threads to make preemption likely. The window is
/// narrow: this failed once in about five minutes of tries (at its 36th
/// halt), and the chaos harness met it once in some 60 runs of the power
/// cut scenario (seed 3018: `Chaos::crash` stuck in `Node::halt` joining
/// `raft-1-inbound`, blocked in `read_frame` at `listener.rs:79`, with
/// every other thread of node 1 gone). Registering the socket before the
/// check closes the window (tried out of tree: no hang in 300 halts; but
/// without it 300 halts hang only sometimes, so that is no proof).
#[test]
#[ignore = "soak: a minute of halts while peers connect; the bug it found (a socket registered after
            the halt shut the others down) is fixed in node/sockets.rs — run with --ignored"]
fn halting_a_node_while_peers_connect_returns() {
    use raftnode::kv::Kv;
    use raftnode::node::wire::{self, Hello, HelloReply};
    use raftnode::Node;
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    support::init_logging();
    let until = Instant::now() + Duration::from_secs(60) * soak();
    let stop_spinning = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop_spinning.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut round: u64 = 0;
    while Instant::now() < until {
        round += 1;
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = raftnode::Config::new(1, dir.path().join("node-1"));
        config.raft_addr = addr.to_string();
        let node = Node::start_with_listener(config, listener, Kv::new()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let dialers: Vec<_> = (0..4u64)
            .map(|k| {
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut open = Vec::new();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut stream) = TcpStream::connect(addr) else {
                            continue;
                        };
                        n += 1;
                        let hello = Hello {
                            cluster_id: "raftnode".into(),
                            from: 100 + k * 1000 + n,
                            to: 1,
                            client_addr: None,
                            raft_addr: "127.0.0.1:1".into(),
                            incarnation: 7,
                        };
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                        if wire::write_frame(&mut stream, &hello, 1 << 20).is_ok()
                            && wire::read_frame::<HelloReply, _>(&mut stream, 1 << 20).is_ok()
                        {
                            // Silent from now on, and kept open.
                            open.push(stream);
                        }
                    }
                    open
                })
            })
            .collect();
        sleep_ms(round % 7);
        let (done_tx, done_rx) = mpsc::channel();
        let halting = thread::spawn(move || {
            node.halt();
            let _ = done_tx.send(());
        });
        let halted = done_rx.recv_timeout(Duration::from_secs(5)).is_ok();
        stop.store(true, Ordering::Relaxed);
        // Closing the peers' sockets ends the stuck thread, and the halt.
        let open: usize = dialers.into_iter().map(|d| d.join().unwrap().len()).sum();
        halting.join().unwrap();
        if !halted {
            stop_spinning.store(true, Ordering::Relaxed);
            panic!(
                "round {round}: the halt did not return within 5 s ({open} peer connections \
                 were open); it returned once the peers closed them"
            );
        }
    }
    stop_spinning.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
}
