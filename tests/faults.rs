//! The fault-injection suite: crashes, partitions, a lossy network and paused
//! leaders, with every scenario checked for Raft's invariants and for a
//! linearizable history (see `support/chaos`). Each scenario prints its seed;
//! `RAFTNODE_SEED=N` replays one, `RAFTNODE_SOAK=1` runs the randomized ones
//! ten times longer.

#[path = "support/chaos/mod.rs"]
mod chaos;
mod support;

use chaos::netproxy::LinkMode;
use chaos::{seed, soak, Chaos, RECOVER};
use raftnode::core::RoleKind;
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
    let elected: Vec<_> = c.leaders_seen().split_off(&(term + 1)).into_iter().collect();
    assert!(elected.is_empty(), "elected without a majority: {elected:?}");
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
    wait_for(RECOVER, "the old leader's log to converge", || {
        let commit = new_node.status().commit_index;
        (old_node.status().last_applied >= commit).then_some(())
    });
    let commit = new_node.status().commit_index as usize;
    assert_eq!(
        old_node.log_entries()[..commit],
        new_node.log_entries()[..commit],
        "committed prefixes differ"
    );
    assert!(isolated_log > 0);
    c.finish();
}

/// Figure 8 of the paper: leaders crash at random moments under load, and
/// crashed nodes come back only when fewer than a majority are up.
#[test]
fn figure_8_leaders_crash_at_random_moments_under_load() {
    let mut c = Chaos::new(5, seed(15));
    c.start_clients(4, 2);
    let iterations = 100 * soak();
    for _ in 0..iterations {
        if let Some(leader) = c.leader() {
            sleep_ms(c.rng.gen_range(0..30));
            c.crash(leader);
        } else {
            sleep_ms(c.rng.gen_range(5..40));
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
    c.finish();
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

#[test]
fn random_partitions_including_one_way_cuts() {
    let mut c = Chaos::new(5, seed(17));
    c.wait_for_leader();
    c.start_clients(5, 3);
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
        for id in c.ids() {
            c.crash(id);
        }
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
