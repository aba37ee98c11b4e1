//! Membership changes end to end: real `raftnode run` processes, changed
//! with RAFT.NODE over the client port and `raftnode run --join`.

mod support;

use raftnode::redis::cluster::node_name;
use raftnode::redis::resp::Reply;
use std::process::Command;
use std::time::{Duration, Instant};
use support::process::{bulk, error_starting, free_port, ok, ProcCluster, Resp, Start, BIN};
use support::{wait_for, WAIT};

/// RAFT.NODES as the fields of each line.
fn nodes(c: &mut Resp) -> Vec<Vec<String>> {
    match c.call(&["RAFT.NODES"]) {
        Reply::Bulk(text) => String::from_utf8(text)
            .unwrap()
            .lines()
            .map(|l| l.split(' ').map(str::to_string).collect())
            .collect(),
        other => panic!("RAFT.NODES answered {other:?}"),
    }
}

/// The line of RAFT.NODES for `id`.
fn line_of(lines: &[Vec<String>], id: u64) -> Option<Vec<String>> {
    lines.iter().find(|l| l[0] == id.to_string()).cloned()
}

/// Sends `args` to node `id` until it answers something other than
/// `-TRYAGAIN` (or a lost connection).
fn retrying(cluster: &ProcCluster, id: u64, args: &[&str]) -> Reply {
    wait_for(WAIT, &format!("{args:?} on node {id}"), || {
        let mut c = Resp::connect(cluster.nodes[&id].client_port).ok()?;
        c.try_send(args).ok()?;
        match c.try_read().ok()? {
            Reply::Error(e) if e.starts_with("TRYAGAIN") => None,
            reply => Some(reply),
        }
    })
}

/// The running nodes other than `leader`.
fn followers(cluster: &ProcCluster, leader: u64) -> Vec<u64> {
    (cluster.running().into_iter())
        .filter(|&id| id != leader)
        .collect()
}

/// How many times any node logged `needle`.
fn logged(cluster: &ProcCluster, needle: &str) -> usize {
    (cluster.nodes.keys())
        .map(|&id| cluster.log(id).matches(needle).count())
        .sum()
}

/// Checks for `over` that `cond` holds throughout.
fn holds_for(over: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + over;
    while Instant::now() < end {
        assert!(cond(), "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn raft_commands_answer_and_refuse_clearly() {
    let mut cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let [follower, other] = followers(&cluster, leader)[..] else {
        panic!("two followers")
    };
    let leader_addr = cluster.client_addr(leader);
    let mut l = cluster.client(leader);

    // RAFT.NODES on the leader: progress for everyone.
    wait_for(WAIT, "the leader to reach everyone", || {
        let lines = nodes(&mut l);
        lines.iter().all(|f| f[7] == "connected").then_some(())
    });
    let lines = nodes(&mut l);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for f in &lines {
        let id: u64 = f[0].parse().unwrap();
        assert_eq!(f.len(), 8, "{f:?}");
        assert_eq!(f[1], cluster.raft_addr(id));
        assert_eq!(f[3], "voter");
        assert!(f[5].strip_prefix("match=").unwrap().parse::<u64>().is_ok());
        assert!(f[6].strip_prefix("lag=").unwrap().parse::<u64>().is_ok());
        let flags = if id == leader { "leader,myself" } else { "-" };
        assert_eq!(f[4], flags, "{f:?}");
    }
    assert_eq!(line_of(&lines, leader).unwrap()[2], leader_addr);
    // raftnode cli shows the same as a table.
    let out = Command::new(BIN)
        .args(["cli", "--addr", &leader_addr, "RAFT.NODES"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 4, "{table}");
    assert!(rows[0].starts_with("ID  RAFT ADDR"), "{table}");
    assert!(rows[0].ends_with("MATCH  LAG  CONNECTED"), "{table}");
    // On a follower: its own view, without progress.
    let mut f = cluster.client(follower);
    let lines = nodes(&mut f);
    assert_eq!(lines.len(), 3);
    let me = line_of(&lines, follower).unwrap();
    assert_eq!(
        me[3..],
        ["voter", "myself", "match=-", "lag=-", "connected"]
    );
    assert_eq!(me[2], cluster.client_addr(follower));
    assert_eq!(line_of(&lines, leader).unwrap()[4], "leader");

    // A learner that is not running yet.
    let (raft4, client4) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let add4 = ["RAFT.NODE", "ADD", "4", &raft4, &client4, "LEARNER"];
    assert_eq!(l.call(&add4), ok());
    let four = line_of(&nodes(&mut l), 4).expect("node 4 listed");
    assert_eq!(four[1..5], [&raft4, &client4, "learner", "-"]);
    // (A peer counts as reachable until a dial fails: the leader needs a
    // moment to find out that nothing listens there.)
    wait_for(WAIT, "node 4 to be seen unreachable", || {
        let four = line_of(&nodes(&mut l), 4)?;
        (four[7] == "disconnected").then_some(())
    });
    // Cluster clients see it as a replica.
    let Reply::Bulk(text) = l.call(&["CLUSTER", "NODES"]) else {
        panic!("CLUSTER NODES is text")
    };
    let text = String::from_utf8(text).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    let raft4_port = raft4.rsplit(':').next().unwrap();
    let replica = format!("{} {client4}@{raft4_port} slave", node_name(4));
    assert!(text.contains(&replica), "{text}");
    // A retried ADD is answered without proposing anything.
    assert_eq!(l.call(&add4), ok());
    assert_eq!(l.call(&add4[..5]), ok(), "same addresses: done already");
    assert_eq!(logged(&cluster, ": add 4 at"), 1);
    // A node that joins under an id the cluster gave another node is
    // refused, and stops.
    cluster.add_node(4, Start::Join(follower));
    cluster.spawn_node(4);
    let status = cluster.wait_exit(4, WAIT);
    assert_eq!(status.code(), Some(1), "{}", cluster.log(4));
    let log = cluster.log(4);
    assert!(
        log.contains(&format!(
            "raftnode: error: cannot join the cluster via {}: ERR node 4 is already a member",
            cluster.client_addr(follower)
        )),
        "{log}"
    );
    let info = wait_for(WAIT, "the change to commit everywhere", || {
        let info = cluster.info(follower);
        (info["learners"] == "4").then_some(cluster.info(leader))
    });
    assert_eq!(info["members"], "1,2,3");
    assert_eq!(info["learners"], "4");
    assert!(info["config_index"].parse::<u64>().unwrap() > 0);
    assert_eq!(info["transferring_to"], "");
    assert_eq!(info["removed_at"], "");
    wait_for(WAIT, "no change in flight", || {
        (cluster.info(leader)["config_change_in_progress"] == "0").then_some(())
    });

    // What the configuration refuses, and malformed requests.
    let refusals: &[(&[&str], &str)] = &[
        (
            &["RAFT.NODE", "ADD", "4", "127.0.0.1:1", &client4],
            "ERR node 4 is already a member",
        ),
        (
            &[
                "RAFT.NODE",
                "ADD",
                "5",
                &cluster.raft_addr(1),
                "127.0.0.1:2",
            ],
            &format!(
                "ERR address {} is already used by node 1",
                cluster.raft_addr(1)
            ),
        ),
        (
            &["RAFT.NODE", "ADD", "5", "127.0.0.1:1", &client4],
            &format!("ERR address {client4} is already used by node 4"),
        ),
        (
            &["RAFT.NODE", "ADD", "5", "nope", "127.0.0.1:2"],
            "ERR raft address expects HOST:PORT, got 'nope'",
        ),
        (
            &["RAFT.NODE", "ADD", "5", "127.0.0.1:1", "127.0.0.1:0"],
            "ERR client address expects HOST:PORT, got '127.0.0.1:0'",
        ),
        (
            &["RAFT.NODE", "ADD", "x", "127.0.0.1:1", "127.0.0.1:2"],
            "ERR node id must be a positive integer, got 'x'",
        ),
        (
            &["RAFT.NODE", "ADD", "0", "127.0.0.1:1", "127.0.0.1:2"],
            "ERR node id must be a positive integer, got '0'",
        ),
        (
            &[
                "RAFT.NODE",
                "ADD",
                "5",
                "127.0.0.1:1",
                "127.0.0.1:2",
                "VOTER",
            ],
            "ERR syntax error",
        ),
        (&["RAFT.NODE", "REMOVE", "9"], "ERR node 9 is not a member"),
        (&["RAFT.NODE", "PROMOTE", "9"], "ERR node 9 is not a member"),
        (
            &["RAFT.NODE", "PROMOTE", "1"],
            "ERR node 1 is already a voter",
        ),
        (
            &["RAFT.NODE"],
            "ERR wrong number of arguments for 'raft.node' command",
        ),
        (
            &["RAFT.NODE", "ADD", "5"],
            "ERR wrong number of arguments for 'raft.node|add' command",
        ),
        (
            &["RAFT.NODE", "REMOVE"],
            "ERR wrong number of arguments for 'raft.node|remove' command",
        ),
        (
            &["RAFT.NODE", "JOIN", "5"],
            "ERR unknown subcommand 'JOIN'. Try RAFT.NODE HELP.",
        ),
        (
            &["RAFT.NODES", "x"],
            "ERR wrong number of arguments for 'raft.nodes' command",
        ),
        (
            &["RAFT.TRANSFER_LEADER", "4"],
            "ERR node 4 is a learner; only a voter can lead",
        ),
        (&["RAFT.TRANSFER_LEADER", "9"], "ERR node 9 is not a member"),
    ];
    for (request, want) in refusals {
        let text = error_starting(&l.call(request), "ERR");
        assert!(text.starts_with(want), "{request:?}: {text}");
    }
    // Followers send changes and transfers to the leader, as they do writes.
    let moved = format!("MOVED 0 {leader_addr}");
    for request in [
        &["RAFT.NODE", "REMOVE", "4"][..],
        &["RAFT.NODE", "PROMOTE", "4"],
        &["RAFT.TRANSFER_LEADER"],
    ] {
        assert_eq!(f.call(request), Reply::Error(moved.clone()), "{request:?}");
    }
    // Not inside a transaction.
    assert_eq!(l.call(&["MULTI"]), ok());
    let text = error_starting(&l.call(&["RAFT.NODE", "REMOVE", "4"]), "ERR");
    assert!(text.contains("cannot be used inside MULTI"), "{text}");
    error_starting(&l.call(&["EXEC"]), "EXECABORT");
    assert!(
        matches!(l.call(&["COMMAND", "INFO", "raft.node"]), Reply::Array(a) if a[0] != Reply::NullBulk)
    );

    assert_eq!(l.call(&["RAFT.NODE", "REMOVE", "4"]), ok());
    assert!(line_of(&nodes(&mut l), 4).is_none());
    assert_eq!(cluster.info(leader)["learners"], "");

    // Transfer to a voter: it leads when the answer comes.
    assert_eq!(
        retrying(
            &cluster,
            leader,
            &["RAFT.TRANSFER_LEADER", &follower.to_string()]
        ),
        ok()
    );
    let info = cluster.info(follower);
    assert_eq!(info["role"], "leader");
    assert_eq!(info["transferring_to"], "");
    assert_eq!(cluster.wait_for_leader(), follower);
    // A transfer to a node that is down gives up after an election timeout.
    cluster.kill(other);
    let reply = retrying(
        &cluster,
        follower,
        &["RAFT.TRANSFER_LEADER", &other.to_string()],
    );
    assert_eq!(
        reply,
        Reply::Error(format!(
            "ERR transfer to {other} did not complete within 300 ms"
        ))
    );
    assert_eq!(
        retrying(&cluster, follower, &["SET", "after", "transfer"]),
        ok()
    );

    // A cluster of one cannot lose its only voter, nor hand leadership over.
    let single = ProcCluster::start(1);
    single.wait_for_leader();
    let mut s = single.client(1);
    let text = error_starting(&s.call(&["RAFT.NODE", "REMOVE", "1"]), "ERR");
    assert!(text.contains("node 1 is the last voter"), "{text}");
    let text = error_starting(&s.call(&["RAFT.TRANSFER_LEADER"]), "ERR");
    assert!(text.contains("no other voter"), "{text}");
    assert_eq!(s.call(&["RAFT.TRANSFER_LEADER", "1"]), ok(), "itself");
}

#[test]
fn a_cluster_grows_from_three_to_five_with_join() {
    let mut cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower = followers(&cluster, leader)[0];
    for i in 0..20 {
        assert_eq!(
            retrying(&cluster, leader, &["SET", &format!("k{i}"), "v"]),
            ok()
        );
    }
    // One joins through a follower (which redirects it), one through the
    // leader; neither is given any --peer.
    cluster.add_node(4, Start::Join(follower));
    cluster.add_node(5, Start::Join(leader));
    cluster.start_node(4);
    cluster.start_node(5);
    // Writes go on while they join.
    for i in 20..40 {
        assert_eq!(
            retrying(&cluster, leader, &["SET", &format!("k{i}"), "v"]),
            ok()
        );
    }
    let leader = wait_for(WAIT, "five voters", || {
        let leader = cluster.wait_for_leader();
        let lines = nodes(&mut cluster.client(leader));
        let voters = lines.iter().filter(|f| f[3] == "voter").count();
        (voters == 5).then_some(leader)
    });
    let info = cluster.info(leader);
    assert_eq!(info["members"], "1,2,3,4,5");
    assert_eq!(info["learners"], "");
    for id in [4, 5] {
        let log = cluster.log(id);
        assert!(log.contains("waiting to be promoted"), "{log}");
        assert_eq!(log.matches("asking the cluster via").count(), 1, "{log}");
    }
    assert_eq!(retrying(&cluster, leader, &["SET", "k40", "v"]), ok());
    let commit: u64 = cluster.info(leader)["commit_index"].parse().unwrap();
    for id in [4, 5] {
        wait_for(WAIT, &format!("node {id} to catch up"), || {
            let info = cluster.info(id);
            let applied: u64 = info["last_applied"].parse().ok()?;
            (applied >= commit && info["members"] == "1,2,3,4,5").then_some(())
        });
        assert_eq!(cluster.info(id)["db0"], "keys=41,expires=0,avg_ttl=0");
    }

    // Restarting a joined node with the same flags asks for nothing.
    cluster.kill(4);
    cluster.start_node(4);
    wait_for(WAIT, "node 4 to see it is a member", || {
        let log = cluster.log(4);
        log.contains("already a member of the cluster; not asking")
            .then_some(())
    });
    assert_eq!(cluster.log(4).matches("asking the cluster via").count(), 1);
    assert_eq!(retrying(&cluster, leader, &["SET", "k41", "v"]), ok());
    wait_for(WAIT, "node 4 to rejoin its place", || {
        let info = cluster.info(4);
        let lines = nodes(&mut cluster.client(cluster.wait_for_leader()));
        let four = line_of(&lines, 4)?;
        (info["db0"] == "keys=42,expires=0,avg_ttl=0"
            && four[3] == "voter"
            && four[7] == "connected")
            .then_some(())
    });
    assert_eq!(logged(&cluster, ": add 4 at"), 1);
    assert_eq!(logged(&cluster, ": add 5 at"), 1);
}

#[test]
fn a_removed_node_exits_cleanly_and_its_data_dir_will_not_start() {
    let mut cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let [victim, last] = followers(&cluster, leader)[..] else {
        panic!("two followers")
    };
    assert_eq!(retrying(&cluster, leader, &["SET", "a", "1"]), ok());
    let remove = |id: u64| ["RAFT.NODE".to_string(), "REMOVE".into(), id.to_string()];
    let args = remove(victim);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(retrying(&cluster, leader, &args), ok());
    let status = cluster.wait_exit(victim, WAIT);
    assert!(status.success(), "{status}");
    let log = cluster.log(victim);
    assert!(log.contains("removed from the cluster at index"), "{log}");
    let mut members = [leader, last];
    members.sort();
    let members = format!("{},{}", members[0], members[1]);
    assert_eq!(cluster.info(leader)["members"], members);

    let (status, err) = cluster.try_start(victim);
    assert!(!status.success(), "{err}");
    let error_lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(error_lines.len(), 1, "{err}");
    assert!(
        error_lines[0].contains(&format!(
            "node {victim} was removed from the cluster at index"
        )),
        "{err}"
    );

    // The leader may remove itself: it answers, steps down and exits.
    let args = remove(leader);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(retrying(&cluster, leader, &args), ok());
    let status = cluster.wait_exit(leader, WAIT);
    assert!(status.success(), "{status}");
    assert_eq!(cluster.wait_for_leader(), last);
    assert_eq!(cluster.info(last)["members"], last.to_string());
    assert_eq!(retrying(&cluster, last, &["SET", "b", "2"]), ok());
    assert_eq!(cluster.client(last).call(&["GET", "a"]), bulk("1"));
}

#[test]
fn a_node_restarted_without_peers_keeps_its_membership_and_never_leads_alone() {
    let mut cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    assert_eq!(retrying(&cluster, leader, &["SET", "k", "v"]), ok());
    for id in 1..=3 {
        cluster.kill(id);
        cluster.nodes.get_mut(&id).unwrap().start = Start::Bare;
    }
    cluster.start_node(1);
    assert_eq!(cluster.info(1)["members"], "1,2,3");
    let mut c = cluster.client(1);
    error_starting(&c.call(&["SET", "alone", "x"]), "TRYAGAIN");
    holds_for(
        Duration::from_millis(800),
        "node 1 never leads alone",
        || cluster.info(1)["role"] != "leader",
    );
    // The others, also without flags, find each other from the data dirs.
    cluster.start_node(2);
    cluster.start_node(3);
    let leader = cluster.wait_for_leader();
    assert_eq!(retrying(&cluster, leader, &["SET", "together", "y"]), ok());
    assert_eq!(cluster.client(leader).call(&["GET", "k"]), bulk("v"));
    assert_eq!(
        cluster.client(leader).call(&["GET", "alone"]),
        Reply::NullBulk
    );
}

#[test]
fn a_wiped_node_is_refused_under_its_old_identity() {
    let mut cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let victim = followers(&cluster, leader)[0];
    for i in 0..10 {
        assert_eq!(
            retrying(&cluster, leader, &["SET", &format!("k{i}"), "v"]),
            ok()
        );
    }
    // The cluster must have recorded the victim's data dir first.
    wait_for(WAIT, "the victim's incarnation to be recorded", || {
        let recorded = format!("for {victim} (now");
        let proposed = (cluster.nodes.keys()).any(|&id| {
            (cluster.log(id).lines())
                .any(|l| l.contains("record incarnation") && l.contains(&recorded))
        });
        (proposed && cluster.info(leader)["config_change_in_progress"] == "0").then_some(())
    });
    cluster.kill(victim);
    std::fs::remove_dir_all(cluster.data_dir(victim)).unwrap();
    cluster.start_node(victim);
    let advice = format!("Remove it (RAFT.NODE REMOVE {victim})");
    let others: Vec<u64> = (1..=3).filter(|&id| id != victim).collect();
    wait_for(WAIT, "the others to refuse the wiped node", || {
        others
            .iter()
            .any(|&id| cluster.log(id).contains(&advice))
            .then_some(())
    });
    holds_for(
        Duration::from_millis(1500),
        "the wiped node stays out",
        || {
            let info = cluster.info(victim);
            info["leader_id"].is_empty() && !info.contains_key("db0") && info["role"] != "leader"
        },
    );
    let leader = cluster.wait_for_leader_among(&others);
    assert_ne!(leader, victim);
    assert_eq!(retrying(&cluster, leader, &["SET", "still", "fine"]), ok());
}

#[test]
fn a_dead_node_is_replaced_by_a_new_one_that_catches_up_by_snapshot() {
    let args = ["--snapshot-entries", "100", "--snapshot-keep", "10"];
    let mut cluster = ProcCluster::start_with(3, &args);
    let leader = cluster.wait_for_leader();
    let victim = followers(&cluster, leader)[0];
    let mut l = cluster.client(leader);
    for i in 0..300 {
        assert_eq!(l.call(&["SET", &format!("k{i}"), &format!("v{i}")]), ok());
    }
    cluster.kill(victim);
    let remove = victim.to_string();
    assert_eq!(
        retrying(&cluster, leader, &["RAFT.NODE", "REMOVE", &remove]),
        ok()
    );
    cluster.add_node(4, Start::Join(leader));
    cluster.start_node(4);
    wait_for(WAIT, "node 4 to become a voter", || {
        let four = line_of(&nodes(&mut cluster.client(leader)), 4)?;
        (four[3] == "voter").then_some(())
    });
    let info = cluster.info(leader);
    let mut members: Vec<u64> = vec![
        leader,
        (1..=3).find(|&id| id != leader && id != victim).unwrap(),
        4,
    ];
    members.sort();
    let members: Vec<String> = members.iter().map(u64::to_string).collect();
    assert_eq!(info["members"], members.join(","));
    wait_for(WAIT, "node 4 to hold every key", || {
        let info = cluster.info(4);
        (info.get("db0")? == "keys=300,expires=0,avg_ttl=0").then_some(())
    });
    let installed: u64 = cluster.info(4)["snapshots_installed"].parse().unwrap();
    assert!(installed >= 1, "node 4 caught up by snapshot");
    for i in 0..300 {
        assert_eq!(l.call(&["GET", &format!("k{i}")]), bulk(&format!("v{i}")));
    }
    assert_eq!(
        retrying(&cluster, leader, &["SET", "after", "replacement"]),
        ok()
    );
}

#[test]
fn a_join_waits_for_the_cluster_to_elect_a_leader() {
    // One node of three is up: no leader, so the join is answered TRYAGAIN.
    let mut cluster = ProcCluster::start_some(3, &[1]);
    cluster.add_node(4, Start::Join(1));
    cluster.start_node(4);
    wait_for(WAIT, "the join to be put off", || {
        let log = cluster.log(4);
        (log.contains("cannot join via") && log.contains("TRYAGAIN")).then_some(())
    });
    // Retried with backoff, but said once.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(cluster.log(4).matches("cannot join via").count(), 1);
    cluster.start_node(2);
    cluster.start_node(3);
    wait_for(WAIT, "node 4 to become a voter", || {
        let leader = cluster.wait_for_leader_among(&[1, 2, 3]);
        let four = line_of(&nodes(&mut cluster.client(leader)), 4)?;
        (four[3] == "voter").then_some(())
    });
    assert!(cluster.log(4).contains("waiting to be promoted"));
}

/// The procedure the node's own messages advise for a wiped or dead node:
/// remove it, then start it under the same id with an empty data dir and
/// `--join`, three rounds. (This found two bugs, since fixed: the leader
/// told the newcomer it was removed while the entry adding it back was not
/// yet committed, and it reused the removed node's progress — its match
/// index — for the empty newcomer, whose rejections it then ignored as
/// stale.)
#[test]
fn a_removed_id_comes_back_with_an_empty_data_dir_and_join() {
    let mut cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let victim = followers(&cluster, leader)[0];
    let others: Vec<u64> = (1..=3).filter(|&id| id != victim).collect();
    for round in 0..3 {
        cluster.kill(victim);
        std::fs::remove_dir_all(cluster.data_dir(victim)).unwrap();
        let leader = cluster.wait_for_leader_among(&others);
        let remove = victim.to_string();
        assert_eq!(
            retrying(&cluster, leader, &["RAFT.NODE", "REMOVE", &remove]),
            ok()
        );
        cluster.nodes.get_mut(&victim).unwrap().start = Start::Join(leader);
        cluster.start_node(victim);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = cluster.exited(victim) {
                panic!(
                    "round {round}: node {victim} exited ({status}): {}",
                    cluster.log(victim)
                );
            }
            let lines = nodes(&mut cluster.client(leader));
            let back =
                line_of(&lines, victim).is_some_and(|f| f[3] == "voter" && f[7] == "connected");
            if back && cluster.info(victim)["leader_id"] == leader.to_string() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: {lines:?}\n{}\nleader:\n{}",
                cluster.log(victim),
                cluster.log(leader)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
