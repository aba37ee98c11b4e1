//! Membership changes (chapter 4 of the dissertation) and leadership
//! transfer (§3.10): one test per rule of `core/membership.rs`, named after
//! the section it comes from.

use super::*;
use crate::raft::membership::{ChangeError, ConfChange, Suffrage};

/// A node started with an empty data dir to join a cluster: it knows no
/// configuration until the leader sends it one.
fn joining(id: NodeId) -> RaftCore {
    RaftCore::restore(
        config(id, 1),
        Restored {
            hard_state: HardState::default(),
            snapshot: (0, 0),
            config: (0, Configuration::default()),
            entries: Vec::new(),
            commit_index: 0,
        },
    )
}

fn add_learner(id: NodeId, auto_promote: bool) -> ConfChange {
    ConfChange::AddLearner {
        id,
        raft_addr: format!("10.0.0.{id}:7000"),
        client_addr: Some(format!("10.0.0.{id}:6379")),
        auto_promote,
    }
}

/// Proposes `change` on `leader` and delivers everything; returns its index.
fn change(net: &mut Network, leader: NodeId, change: ConfChange) -> Index {
    let (index, _) = net
        .core_mut(leader)
        .propose_change(change)
        .expect("change refused");
    net.deliver_all();
    index
}

/// A leader of a fresh `n`-node network that has committed its no-op.
fn network_with_leader(n: u64) -> Network {
    let mut net = Network::new(n);
    net.elect(1);
    assert_eq!(net.core(1).commit_index(), 1);
    net
}

#[test]
fn test_learner_receives_the_log_but_does_not_count_for_commit_or_reads_4_2_1() {
    let mut net = network_with_leader(3);
    net.add_core(joining(4));
    let at = change(&mut net, 1, add_learner(4, false));
    for id in 1..=4 {
        assert!(net.core(id).configuration().is_learner(4), "n{id}");
        assert_eq!(net.core(id).commit_index(), at, "n{id}");
    }
    assert_eq!(log_entries(net.core(4)), log_entries(net.core(1)));

    // Only the learner hears the leader: its copy commits nothing…
    net.isolate(2);
    net.isolate(3);
    let (index, _) = net.propose(1, b"x");
    assert_eq!(net.core(4).log().last_index(), index, "the learner has it");
    assert_eq!(net.core(1).commit_index(), at, "a learner is no replica");
    // …and confirms no read.
    net.core_mut(1).read_index(7).unwrap();
    net.deliver_all();
    net.heartbeat(1);
    assert!(
        net.reads[&1].is_empty(),
        "read released on a learner's word"
    );
    net.heal();
    net.heartbeat(1);
    assert_eq!(net.core(1).commit_index(), index);
    assert_eq!(net.reads[&1].iter().map(|r| r.id).collect::<Vec<_>>(), [7]);

    // A learner never campaigns, however long it hears nothing.
    net.isolate(4);
    let term = net.core(4).current_term();
    for _ in 0..10 * net.core(4).config().election_ticks_max {
        net.tick(4);
    }
    net.deliver_all();
    assert_eq!(net.core(4).current_term(), term);
    assert_eq!(net.core(4).role(), RoleKind::Follower);
}

#[test]
fn test_learner_does_not_keep_a_leader_in_office_check_quorum() {
    let mut cores: Vec<RaftCore> = (1..=3).map(|id| extended_core(id, 3)).collect();
    cores.push(joining(4));
    let mut net = Network::from_cores(cores);
    net.elect(1);
    change(&mut net, 1, add_learner(4, false));
    net.isolate(2);
    net.isolate(3);
    for _ in 0..2 * net.core(1).config().election_ticks_max {
        net.tick(1);
        net.deliver_all();
    }
    assert_ne!(
        net.core(1).role(),
        RoleKind::Leader,
        "heard only from a learner, the leader must step down"
    );
}

#[test]
fn test_change_in_force_on_append_and_one_at_a_time_4_1() {
    let mut leader = core_with_log(1, 3, &[1], 1, None);
    make_leader(&mut leader);
    // The fix for the single-server bug: nothing until an entry of this
    // term (the no-op at 2) is committed.
    assert_eq!(
        leader.propose_change(add_learner(4, false)),
        Err(ChangeError::InProgress(
            "the leader has not yet committed an entry of its term"
        ))
    );
    leader.persisted(2, 2);
    leader.step(success(2, 1, 2, 2));
    assert_eq!(leader.commit_index(), 2);
    leader.take_ready();

    assert_eq!(leader.propose_change(add_learner(4, false)), Ok((3, 2)));
    // In force at once, before it commits (§4.1).
    assert!(leader.configuration().is_learner(4));
    assert!(leader.config_change_in_progress());
    assert!(leader.progress(4).is_some(), "the learner is replicated to");
    let ready = leader.take_ready();
    assert_eq!(ready.config.as_ref().map(|c| c.0), Some(3));
    assert!(ready.replicate.contains(&4));
    // One at a time.
    assert_eq!(
        leader.propose_change(ConfChange::Remove { id: 3 }),
        Err(ChangeError::InProgress(
            "another configuration change is not yet committed"
        ))
    );
    leader.persisted(3, 2);
    leader.step(success(2, 1, 2, 3));
    assert!(!leader.config_change_in_progress());
    assert_eq!(
        leader.propose_change(ConfChange::Remove { id: 3 }),
        Ok((4, 2))
    );
    assert_eq!(
        leader.members(),
        [1, 2],
        "removed at once, committed or not"
    );
    // The new majority is 2 of {1, 2}: 3's copy no longer counts.
    leader.persisted(4, 2);
    leader.step(success(3, 1, 2, 4));
    assert_eq!(leader.commit_index(), 3);
    leader.step(success(2, 1, 2, 4));
    assert_eq!(leader.commit_index(), 4);

    // A follower uses a configuration entry as soon as it appends it.
    let mut follower = core_with_log(2, 3, &[1], 1, None);
    let next = follower
        .configuration()
        .apply(&add_learner(4, false), 2)
        .unwrap();
    let config_entry = Entry {
        index: 2,
        term: 1,
        payload: Payload::Config(next.clone()),
    };
    follower.step(append(1, 2, 1, (1, 1), vec![config_entry], 1));
    assert_eq!(follower.configuration(), &next);
    assert_eq!(follower.config_index(), 2);
    assert_eq!(follower.take_ready().config, Some((2, next)));
}

#[test]
fn test_bad_changes_are_refused_and_nothing_is_appended() {
    let mut net = network_with_leader(3);
    let last = net.core(1).log().last_index();
    let refusals = [
        (ConfChange::Promote { id: 9 }, ChangeError::UnknownNode(9)),
        (ConfChange::Promote { id: 2 }, ChangeError::AlreadyVoter(2)),
        (
            ConfChange::AddLearner {
                id: 3,
                raft_addr: "x:1".into(),
                client_addr: None,
                auto_promote: false,
            },
            ChangeError::DuplicateId(3),
        ),
    ];
    for (change, error) in refusals {
        assert_eq!(net.core_mut(1).propose_change(change), Err(error));
    }
    assert_eq!(net.core(1).log().last_index(), last);
    assert_eq!(
        net.core_mut(2).propose_change(ConfChange::Remove { id: 3 }),
        Err(ChangeError::NotLeader(Some(1)))
    );
    // The last voter cannot go.
    let mut single = Network::new(1);
    single.elect(1);
    assert_eq!(
        single
            .core_mut(1)
            .propose_change(ConfChange::Remove { id: 1 }),
        Err(ChangeError::LastVoter(1))
    );
}

#[test]
fn test_leader_removing_itself_steps_down_once_committed_4_2_2() {
    let mut net = network_with_leader(3);
    let term = net.core(1).current_term();
    let (at, _) = net
        .core_mut(1)
        .propose_change(ConfChange::Remove { id: 1 })
        .unwrap();
    // Until it commits, the old leader still leads, but not for itself: its
    // own durable copy is no majority of {2, 3}.
    net.flush();
    assert_eq!(net.core(1).role(), RoleKind::Leader);
    assert!(net.core(1).commit_index() < at);
    net.deliver_all();
    assert!(net.core(1).commit_index() >= at);
    assert_eq!(net.core(1).role(), RoleKind::Follower);
    assert_eq!(net.removed.get(&1), Some(&at), "told it was removed");
    // It handed over with a TimeoutNow, so a successor leads at once.
    let successor = net.leader().expect("a successor");
    assert!(matches!(successor, 2 | 3));
    assert_eq!(net.core(successor).current_term(), term + 1);
    assert!(net
        .delivered
        .iter()
        .any(|m| m.from == 1 && m.message == Message::TimeoutNow));
    for id in [2, 3] {
        assert_eq!(net.core(id).members(), [2, 3]);
    }
    // The removed node never campaigns again; were it to ask, it is ignored.
    for _ in 0..5 * net.core(1).config().election_ticks_max {
        net.tick(1);
    }
    net.deliver_all();
    assert_eq!(net.core(successor).role(), RoleKind::Leader);
    let other = 5 - successor;
    let before = net.core(other).current_term();
    net.core_mut(other)
        .step(vote_request(1, other, before + 5, (100, 100)));
    assert_eq!(net.core(other).current_term(), before);
    assert!(net.core_mut(other).take_ready().messages.is_empty());
}

#[test]
fn test_removed_follower_is_told_once_the_removal_commits_4_2_2() {
    let mut net = network_with_leader(3);
    let at = change(&mut net, 1, ConfChange::Remove { id: 3 });
    assert_eq!(net.core(1).members(), [1, 2]);
    assert_eq!(
        net.core(3).commit_index(),
        at,
        "sent the commit of its removal"
    );
    assert_eq!(net.removed.get(&3), Some(&at));
    assert!(net.core(1).progress(3).is_none(), "then let go");
    // The rest carries on as two.
    let (index, _) = net.propose(1, b"after");
    assert_eq!(net.core(2).commit_index(), index);
    assert!(net.core(3).log().last_index() < index);
}

#[test]
fn test_uncommitted_change_is_finished_by_a_new_leader_that_holds_it_4_1() {
    let mut net = network_with_leader(3);
    // The change reaches 2 only; 1 fails before anything commits it.
    net.drop_link(1, 3);
    let (at, _) = net
        .core_mut(1)
        .propose_change(add_learner(4, false))
        .unwrap();
    net.ignore("AppendEntriesResponse");
    net.deliver_all();
    assert_eq!(net.core(2).config_index(), at);
    assert!(net.core(2).commit_index() < at);
    net.heal();
    net.isolate(1);
    net.elect(2);
    // 2's no-op commits the change with it: finished.
    for id in [2, 3] {
        assert!(net.core(id).commit_index() > at, "n{id}");
        assert_eq!(net.core(id).config_index(), at, "n{id}");
        assert!(net.core(id).configuration().is_learner(4));
    }
    assert!(!net.core(2).config_change_in_progress());
}

#[test]
fn test_uncommitted_change_is_abandoned_by_a_new_leader_without_it_4_1() {
    let mut net = network_with_leader(3);
    let before = net.core(1).configuration().clone();
    net.isolate(1);
    let (at, _) = net
        .core_mut(1)
        .propose_change(add_learner(4, false))
        .unwrap();
    net.deliver_all();
    assert!(net.core(1).configuration().is_learner(4));
    net.elect(2);
    net.propose(2, b"new term");
    net.heal();
    net.heartbeat(2);
    net.heartbeat(2);
    // The entry was truncated from 1's log, and its configuration with it.
    assert_ne!(
        net.core(1).log().get(at).map(|e| &e.payload),
        Some(&Payload::Config(net.core(1).configuration().clone()))
    );
    for id in 1..=3 {
        assert_eq!(net.core(id).configuration(), &before, "n{id}");
        assert_eq!(log_entries(net.core(id)), log_entries(net.core(2)), "n{id}");
    }
}

/// Ongaro's single-server bug (raft-dev, 2015): S1 leads {S1..S4} and
/// appends a change adding S5 that reaches only S5; S2 is elected by S3 and
/// S4 and, at once, appends a change removing S4, which S3's copy commits
/// under {S1, S2, S3}; S1 then wins term 3 under its own configuration with
/// S4's and S5's votes and overwrites that committed entry. The fix — no
/// change before an entry of the leader's term commits — closes the hole:
/// that entry must reach S4 (a majority of {S1..S4} without S1 needs it),
/// and then S4 refuses S1, whose log is older.
#[test]
fn test_single_server_bug_cannot_elect_two_leaders_4_1() {
    let mut cores: Vec<RaftCore> = (1..=4).map(|id| new_core(id, 4)).collect();
    cores.push(joining(5));
    let mut net = Network::from_cores(cores);
    net.elect(1);
    change(&mut net, 1, add_learner(5, false));
    // S1's promotion of S5 reaches only S5.
    for to in [2, 3, 4] {
        net.drop_link(1, to);
    }
    let (promotion, _) = net
        .core_mut(1)
        .propose_change(ConfChange::Promote { id: 5 })
        .unwrap();
    net.deliver_all();
    assert_eq!(net.core(5).config_index(), promotion);
    assert_eq!(net.core(1).configuration().voter_count(), 5);

    // S2 is elected in term 2 by S3 and S4.
    net.heal();
    net.isolate(1);
    net.isolate(5);
    tick_until_campaign(net.core_mut(2));
    net.flush();
    let term2 = net.core(2).current_term();
    net.deliver_all();
    assert_eq!(net.core(2).role(), RoleKind::Leader);
    // The bug needs it to change the configuration at once. Refused while
    // its no-op is uncommitted — which it is, here, only if S4 never got
    // it; so take that moment: S2 elected, no-op not yet acknowledged.
    let mut early = new_core(2, 4);
    make_leader(&mut early);
    assert_eq!(
        early.propose_change(ConfChange::Remove { id: 4 }),
        Err(ChangeError::InProgress(
            "the leader has not yet committed an entry of its term"
        ))
    );
    // In the network, S2's no-op committed on S2, S3, S4 first; only then
    // may S2 remove S4, committed by S3's copy under {S1, S2, S3}.
    assert!(net.core(4).log().last_term() == term2);
    net.drop_link(2, 4);
    let removal = change(&mut net, 2, ConfChange::Remove { id: 4 });
    assert!(net.core(2).commit_index() >= removal);
    let committed = log_entries(net.core(2));

    // S1 restarts and campaigns for term 3 under {S1..S5}, heard by S4 and
    // S5 only.
    net.restart(1);
    assert_eq!(net.core(1).configuration().voter_count(), 5);
    net.heal();
    net.isolate(2);
    net.isolate(3);
    for _ in 0..5 {
        tick_until_campaign(net.core_mut(1));
        net.deliver_all();
        assert_ne!(
            net.core(1).role(),
            RoleKind::Leader,
            "S1 won without a log holding a committed entry"
        );
    }
    // S2 still holds its committed entries; no one overwrote them.
    net.heal();
    assert_eq!(&log_entries(net.core(2))[..committed.len()], &committed[..]);
}

#[test]
fn test_leader_records_incarnations_and_promotes_caught_up_learners() {
    let mut cores: Vec<RaftCore> = (1..=3)
        .map(|id| {
            let mut cfg = config(id, 3);
            cfg.incarnation = 0x1000 + id;
            RaftCore::new(cfg, HardState::default(), Vec::new())
        })
        .collect();
    let mut four = joining(4);
    four.config.incarnation = 0x1004;
    cores.push(four);
    let mut net = Network::from_cores(cores);
    net.elect(1);
    // The leader knows its own incarnation; the others' it learns from the
    // node (handshakes), one change per tick at most.
    net.core_mut(1).learn_incarnation(2, 0x1002);
    net.core_mut(1).learn_incarnation(9, 0x1009);
    for _ in 0..4 {
        net.tick(1);
        net.deliver_all();
    }
    let incarnations = |net: &Network| -> Vec<Option<u64>> {
        let c = net.core(3).configuration();
        c.members.values().map(|m| m.incarnation).collect()
    };
    assert_eq!(incarnations(&net), [Some(0x1001), Some(0x1002), None]);

    change(&mut net, 1, add_learner(4, true));
    net.core_mut(1).learn_incarnation(4, 0x1004);
    for _ in 0..4 {
        net.heartbeat(1);
    }
    for id in 1..=4 {
        let c = net.core(id).configuration();
        assert_eq!(c.members[&4].suffrage, Suffrage::Voter, "n{id}");
        assert_eq!(c.members[&4].incarnation, Some(0x1004), "n{id}");
        assert!(!c.members[&4].auto_promote);
    }
    assert!(net.core(4).is_voter());
}

#[test]
fn test_learner_far_behind_is_not_promoted_yet() {
    let mut net = network_with_leader(3);
    for i in 0..PROMOTE_MAX_LAG + 10 {
        net.propose(1, format!("{i}").as_bytes());
    }
    let mut four = joining(4);
    four.config.max_append_bytes = 0;
    net.add_core(four);
    for id in 1..=3 {
        // One entry per message: the learner catches up slowly.
        net.core_mut(id).config.max_append_bytes = 0;
    }
    net.drop_if = Some(Box::new(|m: &Envelope| {
        m.to == 4
            && m.from == 1
            && {
                matches!(&m.message, Message::AppendEntries { prev_log_index, .. } if *prev_log_index > 50)
            }
    }));
    change(&mut net, 1, add_learner(4, true));
    net.heartbeat(1);
    net.heartbeat(1);
    assert!(
        net.core(1).configuration().is_learner(4),
        "promoted too early"
    );
    net.drop_if = None;
    for _ in 0..3 {
        net.heartbeat(1);
    }
    assert!(net.core(1).configuration().is_voter(4));
}

use crate::raft::core::membership::PROMOTE_MAX_LAG;

fn transfer_network() -> Network {
    let mut net = extended_network(3);
    net.elect(1);
    net.propose(1, b"x");
    net.heartbeat(1);
    net
}

#[test]
fn test_timeout_now_campaigns_at_once_past_pre_vote_and_stickiness_3_10() {
    let mut net = transfer_network();
    let term = net.core(1).current_term();
    // The followers heard from their leader just now: in its lease, they
    // would ignore any ordinary vote request.
    assert!(net.core(2).in_lease());
    net.delivered.clear();
    assert_eq!(net.core_mut(1).transfer_leadership(Some(3)), Ok(3));
    assert_eq!(
        net.core_mut(1).propose(b"y".to_vec()),
        Err(ProposeError::Transferring { target: 3 }),
        "no writes while transferring"
    );
    net.deliver_all();
    assert_eq!(net.leader(), Some(3));
    assert_eq!(net.core(3).current_term(), term + 1);
    assert_eq!(net.core(1).role(), RoleKind::Follower);
    assert_eq!(net.core(1).leader_id(), Some(3));
    let sent_by_3: Vec<&str> = net
        .delivered
        .iter()
        .filter(|m| m.from == 3)
        .map(|m| m.message.name())
        .collect();
    assert!(!sent_by_3.contains(&"PreVote"), "{sent_by_3:?}");
    assert!(net.delivered.iter().any(|m| matches!(
        m.message,
        Message::RequestVote {
            leadership_transfer: true,
            ..
        }
    )));
    // The new leader takes writes.
    net.propose(3, b"z");
    assert!(net.core(2).commit_index() >= net.core(3).log().last_index());
}

#[test]
fn test_transfer_brings_the_target_up_to_date_first_3_10() {
    let mut net = transfer_network();
    net.drop_link(1, 3);
    net.propose(1, b"behind");
    net.heal();
    let last = net.core(1).log().last_index();
    assert!(net.core(3).log().last_index() < last);
    net.core_mut(1).transfer_leadership(Some(3)).unwrap();
    net.deliver_all();
    assert_eq!(net.leader(), Some(3));
    assert!(net.core(3).log().get(last).is_some());
}

#[test]
fn test_transfer_without_a_target_picks_the_most_up_to_date_voter_3_10() {
    let mut net = transfer_network();
    net.drop_link(1, 2);
    net.propose(1, b"only 3 has it");
    net.heal();
    assert_eq!(net.core_mut(1).transfer_leadership(None), Ok(3));
    net.deliver_all();
    assert_eq!(net.leader(), Some(3));
}

#[test]
fn test_transfer_abandoned_after_an_election_timeout_3_10() {
    let mut net = transfer_network();
    net.isolate(3);
    assert_eq!(net.core_mut(1).transfer_leadership(Some(3)), Ok(3));
    assert_eq!(
        net.core_mut(1).transfer_leadership(Some(2)),
        Err(TransferError::InProgress(3))
    );
    let limit = net.core(1).config().election_ticks_max;
    for _ in 0..limit - 1 {
        net.tick(1);
        net.deliver_all();
        assert!(net.core_mut(1).propose(b"w".to_vec()).is_err());
    }
    net.tick(1);
    net.deliver_all();
    assert_eq!(net.core(1).role(), RoleKind::Leader);
    assert!(net.core_mut(1).propose(b"w".to_vec()).is_ok());
}

#[test]
fn test_transfer_refusals() {
    let mut net = transfer_network();
    net.add_core(joining(4));
    change(&mut net, 1, add_learner(4, false));
    let leader = net.core_mut(1);
    assert_eq!(
        leader.transfer_leadership(Some(9)),
        Err(TransferError::UnknownNode(9))
    );
    assert_eq!(
        leader.transfer_leadership(Some(4)),
        Err(TransferError::NotAVoter(4))
    );
    assert_eq!(leader.transfer_leadership(Some(1)), Ok(1), "already leads");
    assert!(matches!(
        net.core_mut(2).transfer_leadership(Some(3)),
        Err(TransferError::NotLeader(_))
    ));
    // A TimeoutNow from anyone but the leader is ignored.
    let term = net.core(2).current_term();
    net.core_mut(2).step(env(3, 2, term, Message::TimeoutNow));
    assert_eq!(net.core(2).current_term(), term);
}

#[test]
fn test_snapshot_and_restart_carry_the_configuration_7() {
    let four = Configuration::of_voters((1..=4).map(|id| (id, format!("h:{id}"))));
    let mut follower = core_with_log(2, 3, &[1, 1], 1, None);
    follower.step(install_chunk(1, 2, 1, (10, 1)));
    follower.take_snapshot_chunk().unwrap();
    follower.snapshot_received(1, 10, 1, (8, four.clone()));
    assert_eq!(follower.configuration(), &four);
    assert_eq!(follower.config_index(), 8);
    assert_eq!(follower.take_ready().config, Some((8, four.clone())));

    // At restart, a configuration entry after the snapshot wins over the
    // snapshot's own.
    let five = four.apply(&add_learner(5, false), 12).unwrap();
    let mut entries: Vec<Entry> = (11..=13).map(|i| entry(i, 2)).collect();
    entries[1].payload = Payload::Config(five.clone());
    let restarted = RaftCore::restore(
        config(2, 3),
        Restored {
            hard_state: HardState {
                current_term: 2,
                voted_for: None,
            },
            snapshot: (10, 1),
            config: (8, four.clone()),
            entries,
            commit_index: 11,
        },
    );
    assert_eq!(restarted.configuration(), &five);
    assert_eq!(restarted.configuration_at(11), (8, &four));
    assert!(restarted.config_change_in_progress());
}

/// A leader that sent a TimeoutNow may already be deposed — its followers
/// vote for the target in spite of its lease — so it serves no more lease
/// reads in that term, even once it abandoned the transfer; ReadIndex rounds
/// still work (a follower of the new leader would refuse them).
#[test]
fn test_no_lease_reads_after_timeout_now_3_10() {
    let cores: Vec<RaftCore> = (1..=3)
        .map(|id| {
            let mut cfg = extended_config(id, 3);
            cfg.lease_reads = true;
            RaftCore::new(cfg, HardState::default(), Vec::new())
        })
        .collect();
    let mut net = Network::from_cores(cores);
    net.elect(1);
    net.heartbeat(1);
    net.core_mut(1).read_index(1).unwrap();
    net.deliver_all();
    assert_eq!(net.core(1).lease_reads_served(), 1, "the lease holds");
    // The TimeoutNow goes out; the target never hears it (lost), and the
    // transfer is abandoned an election timeout later.
    net.drop_if = Some(Box::new(|m: &Envelope| m.message == Message::TimeoutNow));
    net.core_mut(1).transfer_leadership(Some(3)).unwrap();
    net.deliver_all();
    for _ in 0..net.core(1).config().election_ticks_max {
        net.tick(1);
        net.deliver_all();
    }
    assert_eq!(net.core(1).transferring_to(), None);
    assert_eq!(net.core(1).role(), RoleKind::Leader);
    net.core_mut(1).read_index(2).unwrap();
    net.deliver_all();
    assert_eq!(
        net.core(1).lease_reads_served(),
        1,
        "no lease read any more"
    );
    assert!(
        net.reads[&1].iter().any(|r| r.id == 2),
        "served by a ReadIndex round instead"
    );
}

/// §4.2.2 with §3.10: a leader whose removal commits while its successor
/// still lacks entries takes no more proposals, catches it up, hands over
/// with TimeoutNow and only then steps down.
#[test]
fn test_removed_leader_catches_its_successor_up_before_handing_over_4_2_2() {
    let mut net = network_with_leader(3);
    // 2 and 3 fall behind by one entry each time 1 proposes: the removal
    // commits on their acknowledgement of it, but 1 appends more meanwhile.
    let (at, _) = net
        .core_mut(1)
        .propose_change(ConfChange::Remove { id: 1 })
        .unwrap();
    net.flush();
    net.core_mut(1).propose(b"after".to_vec()).unwrap();
    net.ignore("TimeoutNow");
    net.ignore("AppendEntries");
    // Deliver just the removal's acknowledgements.
    let (last, term) = (net.core(1).log().last_index(), net.core(1).current_term());
    for peer in [2, 3] {
        net.core_mut(1).step(success(peer, 1, term, at));
    }
    assert!(net.core(1).commit_index() >= at);
    assert_eq!(net.core(1).role(), RoleKind::Leader, "hands over first");
    let successor = net.core(1).transferring_to().expect("a hand-over");
    assert!(matches!(
        net.core_mut(1).propose(b"x".to_vec()),
        Err(ProposeError::Transferring { .. })
    ));
    net.heal();
    net.deliver_all();
    assert_ne!(net.core(1).role(), RoleKind::Leader);
    assert_eq!(net.leader(), Some(successor));
    assert!(net.core(successor).log().get(last).is_some());
}

/// A member removed and added back (a new data dir under the same id)
/// starts from nothing on the leader, even if the leader still held its old
/// progress to tell it of its removal.
#[test]
fn test_member_added_back_starts_with_fresh_progress_4_1() {
    let mut leader = steady_leader(3, &[1, 1, 1], 2);
    let term = leader.current_term();
    assert!(leader.progress(3).unwrap().match_index() >= 4);
    // Removed while its replication thread sends it nothing (it is down).
    let (at, _) = leader.propose_change(ConfChange::Remove { id: 3 }).unwrap();
    leader.persisted(at, term);
    leader.step(success(2, 1, term, at));
    assert_eq!(leader.commit_index(), at);
    assert!(leader.progress(3).is_some(), "still to be told");
    let (again, _) = leader.propose_change(add_learner(3, true)).unwrap();
    let pr = leader.progress(3).unwrap();
    assert_eq!(pr.match_index(), 0, "nothing of the old match is kept");
    assert_eq!(pr.next_index(), again + 1);
}

/// A removed node's vote requests are ignored, term and all (§4.2.3); a
/// node merely unknown here is heard, since it may be a voter added by
/// entries this node has not received yet, whose election needs its vote.
#[test]
fn test_removed_nodes_vote_requests_ignored_unknown_nodes_heard_4_2_3() {
    let mut net = network_with_leader(3);
    change(&mut net, 1, ConfChange::Remove { id: 3 });
    // (No check-quorum here, so no leader stickiness to get past.)
    let term = net.core(2).current_term();
    let mut two = net.cores.remove(&2).unwrap();
    two.step(vote_request(3, 2, term + 5, (100, 100)));
    two.step(pre_vote(3, 2, term + 5, (100, 100)));
    assert_eq!(two.current_term(), term);
    assert!(two.take_ready().messages.is_empty(), "no answer at all");
    two.step(vote_request(9, 2, term + 1, (100, 100)));
    assert_eq!(two.current_term(), term + 1, "a stranger is heard");
    assert!(vote_granted(only_message(&two.take_ready())));
}

/// A node added back under a removed id (a new data dir) meets the old
/// removal as it catches up, one entry at a time here: it is not its own.
#[test]
fn test_node_added_back_does_not_take_the_old_removal_for_its_own_4_1() {
    let cores: Vec<RaftCore> = (1..=3)
        .map(|id| {
            let mut cfg = config(id, 3);
            cfg.incarnation = 0x100 + id;
            cfg.max_append_bytes = 0; // one entry per message
            RaftCore::new(cfg, HardState::default(), Vec::new())
        })
        .collect();
    let mut net = Network::from_cores(cores);
    net.elect(1);
    net.core_mut(1).learn_incarnation(3, 0x103);
    for _ in 0..3 {
        net.tick(1);
        net.deliver_all();
    }
    assert_eq!(
        net.core(1).configuration().members[&3].incarnation,
        Some(0x103)
    );
    let removal = change(&mut net, 1, ConfChange::Remove { id: 3 });
    assert_eq!(net.removed.remove(&3), Some(removal));
    net.cores.remove(&3);
    change(&mut net, 1, add_learner(3, true));
    let mut again = joining(3);
    again.config.incarnation = 0x203;
    again.config.max_append_bytes = 0;
    net.add_core(again);
    for _ in 0..4 {
        net.heartbeat(1);
    }
    assert!(
        !net.removed.contains_key(&3),
        "took the old removal for its own"
    );
    assert!(net.core(3).is_voter());
}

/// A node whose configuration records another data dir for it (its own was
/// wiped or replaced while it was a member) has forgotten its votes: it
/// neither votes nor campaigns, whatever its log. And a node that knows an
/// id as removed still hears the vote requests of a node added back under
/// it, once a handshake told it that node's new data dir (it may be the
/// one behind: the node was removed and added back while it was down).
#[test]
fn test_wiped_node_never_votes_and_a_node_added_back_is_heard_4_1() {
    let mut config = Configuration::of_voters((1..=3).map(|id| (id, String::new())));
    config.members.get_mut(&2).unwrap().incarnation = Some(0x102);
    let entries = vec![Entry {
        index: 1,
        term: 1,
        payload: Payload::Config(config.clone()),
    }];
    let hard_state = HardState {
        current_term: 1,
        voted_for: None,
    };
    let mut cfg = super::config(2, 3);
    cfg.incarnation = 0x202;
    let mut wiped = RaftCore::new(cfg, hard_state, entries.clone());
    for _ in 0..2 * wiped.config().election_ticks_max {
        wiped.tick();
    }
    assert_eq!(wiped.role(), RoleKind::Follower, "it campaigned");
    wiped.take_ready();
    wiped.step(vote_request(1, 2, 2, (5, 1)));
    assert!(!vote_granted(only_message(&wiped.take_ready())));
    // The same node on the recorded data dir votes.
    let mut cfg = super::config(2, 3);
    cfg.incarnation = 0x102;
    let mut same = RaftCore::new(cfg, hard_state, entries);
    same.step(vote_request(1, 2, 2, (5, 1)));
    assert!(vote_granted(only_message(&same.take_ready())));

    // Node 3 was removed (with its data dir 0x103) as far as node 1 knows.
    config.members.remove(&3);
    config.removed.insert(
        3,
        crate::raft::message::Removal {
            index: 1,
            incarnation: Some(0x103),
        },
    );
    let entries = vec![Entry {
        index: 1,
        term: 1,
        payload: Payload::Config(config),
    }];
    let mut one = RaftCore::new(super::config(1, 3), hard_state, entries);
    one.step(vote_request(3, 1, 2, (5, 1)));
    assert!(
        one.take_ready().messages.is_empty(),
        "the removed node is heard"
    );
    assert_eq!(one.current_term(), 1);
    // A handshake says node 3 now has another data dir: added back.
    one.learn_incarnation(3, 0x303);
    one.step(vote_request(3, 1, 2, (5, 1)));
    assert!(vote_granted(only_message(&one.take_ready())));
}
