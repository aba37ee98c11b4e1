//! The client port answers as a Redis 7 server would: RESP3 after `HELLO 3`,
//! Redis Cluster's view of the cluster (`CLUSTER ...`, per-slot `MOVED`),
//! INFO in sections, and the `raftnode cli` niceties. Byte-level checks use a
//! raw socket, so that RESP2 and RESP3 encodings are told apart; the
//! expected bytes were read off a real redis-server 7.0.15.

mod support;

use raftnode::redis::cluster::{key_slot, node_name};
use raftnode::redis::resp::{self, Limits, Reply};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;
use support::process::{bulk, free_port, ProcCluster, BIN};
use support::redis_server::RedisServer;

/// Sends `request` on a fresh connection and reads exactly `expected.len()`
/// bytes back.
fn exchange_bytes(port: u16, request: &str, expected: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut got = vec![0; expected.len()];
    stream.read_exact(&mut got).unwrap();
    got
}

fn assert_bytes(port: u16, request: &str, expected: &str) {
    let got = exchange_bytes(port, request, expected.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&got),
        expected,
        "reply to {request:?}"
    );
}

#[test]
fn hello_3_switches_the_connection_to_resp3() {
    let cluster = ProcCluster::start(1);
    cluster.wait_for_leader();
    let port = cluster.nodes[&1].client_port;
    // The HELLO map, then RESP3's null, a map for CONFIG GET and verbatim
    // text for INFO; errors keep their codes.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"HELLO 3\r\nGET missing\r\nCONFIG GET save\r\nINFO cluster\r\nHELLO 4\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let hello = resp::read_reply(&mut reader, &Limits::default()).unwrap();
    let Reply::Map(fields) = hello else {
        panic!("HELLO 3 answered {hello:?}")
    };
    let names: Vec<Reply> = fields.iter().map(|(k, _)| k.clone()).collect();
    let expected: Vec<Reply> = [
        "server", "version", "proto", "id", "mode", "role", "modules",
    ]
    .iter()
    .map(|n| bulk(n))
    .collect();
    assert_eq!(names, expected);
    assert_eq!(fields[0].1, bulk("redis"));
    assert_eq!(fields[1].1, bulk("7.0.15"));
    assert_eq!(fields[2].1, Reply::Integer(3));
    assert!(matches!(fields[3].1, Reply::Integer(id) if id > 0));
    assert_eq!(fields[4].1, bulk("cluster"));
    assert_eq!(fields[5].1, bulk("master"));
    assert_eq!(fields[6].1, Reply::Array(vec![]));
    let rest =
        "_\r\n%1\r\n$4\r\nsave\r\n$0\r\n\r\n=34\r\ntxt:# Cluster\r\ncluster_enabled:1\r\n\r\n\
                -NOPROTO unsupported protocol version\r\n";
    let mut got = vec![0; rest.len()];
    reader.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), rest);
    // Without HELLO 3, the same requests are answered in RESP2.
    assert_bytes(
        port,
        "GET missing\r\nCONFIG GET save\r\nINFO cluster\r\n",
        "$-1\r\n*2\r\n$4\r\nsave\r\n$0\r\n\r\n$30\r\n# Cluster\r\ncluster_enabled:1\r\n\r\n",
    );
    // HELLO 3 then HELLO 2 goes back to RESP2.
    let mut c = cluster.client(1);
    assert!(matches!(c.call(&["HELLO", "3"]), Reply::Map(_)));
    assert_eq!(c.call(&["GET", "missing"]), Reply::NullBulk);
    assert!(matches!(c.call(&["HELLO", "2"]), Reply::Array(_)));
}

#[test]
fn hello_and_auth_answer_as_redis_without_a_password() {
    let cluster = ProcCluster::start(1);
    cluster.wait_for_leader();
    let mut c = cluster.client(1);
    let err = |reply: Reply| match reply {
        Reply::Error(text) => text,
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(
        err(c.call(&["HELLO", "abc"])),
        "ERR Protocol version is not an integer or out of range"
    );
    assert_eq!(
        err(c.call(&["HELLO", "3", "AUTH", "bob", "secret"])),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(
        err(c.call(&["HELLO", "2", "SETNAME"])),
        "ERR Syntax error in HELLO option 'SETNAME'"
    );
    // The default user takes any password when none is configured.
    match c.call(&["HELLO", "3", "AUTH", "default", "any", "SETNAME", "me"]) {
        Reply::Map(fields) => assert!(fields.contains(&(bulk("proto"), Reply::Integer(3)))),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.call(&["CLIENT", "GETNAME"]), bulk("me"));
    assert_eq!(c.call(&["AUTH", "default", "x"]), Reply::ok());
    assert!(err(c.call(&["AUTH", "x"])).starts_with("ERR AUTH <password> called without"));
    assert_eq!(
        err(c.call(&["CONFIG", "SET", "maxmemory", "1gb"])),
        "ERR Unknown option or number of arguments for CONFIG SET - 'maxmemory'"
    );
    assert_eq!(
        err(c.call(&["CONFIG", "SET", "maxmemory"])),
        "ERR wrong number of arguments for 'config|set' command"
    );
}

/// The fields of each node in `CLUSTER SLOTS`' one range: (port, id).
fn slot_owners(reply: &Reply) -> Vec<(i64, String)> {
    let Reply::Array(ranges) = reply else {
        panic!("CLUSTER SLOTS answered {reply:?}")
    };
    assert_eq!(ranges.len(), 1, "one slot range");
    let Reply::Array(range) = &ranges[0] else {
        panic!("{reply:?}")
    };
    assert_eq!(range[..2], [Reply::Integer(0), Reply::Integer(16383)]);
    range[2..]
        .iter()
        .map(|node| match node {
            Reply::Array(f) if f.len() == 4 => match (&f[0], &f[1], &f[2], &f[3]) {
                (Reply::Bulk(ip), Reply::Integer(port), Reply::Bulk(id), Reply::Array(meta)) => {
                    assert_eq!(ip, b"127.0.0.1");
                    assert!(meta.is_empty());
                    (*port, String::from_utf8(id.clone()).unwrap())
                }
                _ => panic!("{node:?}"),
            },
            _ => panic!("{node:?}"),
        })
        .collect()
}

#[test]
fn cluster_commands_describe_one_shard_led_by_the_leader() {
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let port = |id: u64| i64::from(cluster.nodes[&id].client_port);
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    // Every node names the leader as master and the others as replicas,
    // once it has heard every peer's client address.
    for id in 1..=3 {
        let mut c = cluster.client(id);
        support::wait_for(support::WAIT, "every node in CLUSTER SLOTS", || {
            (slot_owners(&c.call(&["CLUSTER", "SLOTS"])).len() == 3).then_some(())
        });
        let owners = slot_owners(&c.call(&["CLUSTER", "SLOTS"]));
        assert_eq!(owners[0], (port(leader), node_name(leader)));
        let replicas: Vec<_> = owners[1..].iter().map(|o| o.0).collect();
        assert_eq!(
            replicas,
            followers.iter().map(|&f| port(f)).collect::<Vec<_>>()
        );
        assert_eq!(
            c.call(&["CLUSTER", "MYID"]),
            bulk(&node_name(id)),
            "node {id}"
        );

        let Reply::Bulk(nodes) = c.call(&["CLUSTER", "NODES"]) else {
            panic!("CLUSTER NODES is text")
        };
        let nodes = String::from_utf8(nodes).unwrap();
        let lines: Vec<Vec<&str>> = nodes.lines().map(|l| l.split(' ').collect()).collect();
        assert_eq!(lines.len(), 3, "{nodes}");
        for fields in &lines {
            let node: u64 = u64::from_str_radix(fields[0], 16).unwrap();
            let raft_port = cluster.nodes[&node].raft_port;
            assert_eq!(
                fields[1],
                format!("127.0.0.1:{}@{raft_port}", port(node)),
                "{nodes}"
            );
            let mut flags = vec![];
            if node == id {
                flags.push("myself");
            }
            flags.push(if node == leader { "master" } else { "slave" });
            assert_eq!(fields[2], flags.join(","), "{nodes}");
            let master = if node == leader {
                "-".to_string()
            } else {
                node_name(leader)
            };
            assert_eq!(fields[3], master, "{nodes}");
            assert_eq!(fields[7], "connected", "{nodes}");
            let slots = if node == leader {
                Some("0-16383")
            } else {
                None
            };
            assert_eq!(fields.get(8).copied(), slots, "{nodes}");
        }

        let Reply::Array(shards) = c.call(&["CLUSTER", "SHARDS"]) else {
            panic!("CLUSTER SHARDS is an array")
        };
        assert_eq!(shards.len(), 1);
        let Reply::Array(shard) = &shards[0] else {
            panic!("{shards:?}")
        };
        assert_eq!(shard[0], bulk("slots"));
        assert_eq!(shard[2], bulk("nodes"));

        let Reply::Bulk(info) = c.call(&["CLUSTER", "INFO"]) else {
            panic!("CLUSTER INFO is text")
        };
        let info = String::from_utf8(info).unwrap();
        assert!(info.contains("cluster_state:ok\r\n"), "{info}");
        assert!(info.contains("cluster_known_nodes:3\r\n"), "{info}");
    }
    // Redis's published examples.
    let mut c = cluster.client(followers[0]);
    assert_eq!(
        c.call(&["CLUSTER", "KEYSLOT", "somekey"]),
        Reply::Integer(11058)
    );
    assert_eq!(
        c.call(&["CLUSTER", "KEYSLOT", "{user1000}.following"]),
        c.call(&["CLUSTER", "KEYSLOT", "{user1000}.followers"])
    );
    // MOVED carries each key's own slot.
    let leader_addr = format!("127.0.0.1:{}", port(leader));
    for key in ["somekey", "a", "{user1000}.following", ""] {
        assert_eq!(
            c.call(&["SET", key, "v"]),
            Reply::Error(format!("MOVED {} {leader_addr}", key_slot(key.as_bytes())))
        );
    }
}

#[test]
fn a_dead_replica_is_marked_failed_and_left_out_of_cluster_slots() {
    let mut cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let victim = (1..=3).find(|&id| id != leader).unwrap();
    let mut c = cluster.client(leader);
    support::wait_for(support::WAIT, "all three in CLUSTER SLOTS", || {
        (slot_owners(&c.call(&["CLUSTER", "SLOTS"])).len() == 3).then_some(())
    });
    cluster.kill(victim);
    support::wait_for(
        support::WAIT,
        "the dead replica to leave CLUSTER SLOTS",
        || (slot_owners(&c.call(&["CLUSTER", "SLOTS"])).len() == 2).then_some(()),
    );
    let Reply::Bulk(nodes) = c.call(&["CLUSTER", "NODES"]) else {
        panic!()
    };
    let nodes = String::from_utf8(nodes).unwrap();
    let line = nodes
        .lines()
        .find(|l| l.starts_with(&node_name(victim)))
        .unwrap();
    assert!(line.contains(" slave,fail? "), "{nodes}");
    assert!(line.ends_with(" disconnected"), "{nodes}");
}

#[test]
fn info_has_redis_sections_and_the_raft_fields() {
    let cluster = ProcCluster::start(1);
    cluster.wait_for_leader();
    let port = cluster.nodes[&1].client_port;
    let mut c = cluster.client(1);
    for i in 0..5 {
        assert_eq!(c.call(&["SET", &format!("k{i}"), "v"]), Reply::ok());
    }
    let text = |reply: Reply| match reply {
        Reply::Bulk(t) => String::from_utf8(t).unwrap(),
        other => panic!("INFO answered {other:?}"),
    };
    let all = text(c.call(&["INFO"]));
    let headers: Vec<&str> = all.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        headers,
        [
            "# Server",
            "# Clients",
            "# Stats",
            "# Raft",
            "# Cluster",
            "# Keyspace"
        ]
    );
    let field = |name: &str| {
        all.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {all}"))
            .trim_end()
            .to_string()
    };
    assert_eq!(field("redis_version"), "7.0.15");
    assert_eq!(field("raftnode_version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field("redis_mode"), "cluster");
    assert_eq!(field("arch_bits"), "64");
    assert_eq!(field("tcp_port"), port.to_string());
    let pid = cluster.pid(1).unwrap();
    assert_eq!(field("process_id"), pid.to_string());
    assert_eq!(field("connected_clients"), "1");
    assert_eq!(field("cluster_enabled"), "1");
    assert_eq!(field("role"), "leader");
    assert_eq!(field("db0"), "keys=5,expires=0,avg_ttl=0");
    assert!(field("total_commands_processed").parse::<u64>().unwrap() >= 6);
    assert!(field("total_connections_received").parse::<u64>().unwrap() >= 1);
    assert_eq!(field("rejected_connections"), "0");
    assert!(field("uptime_in_seconds").parse::<u64>().is_ok());
    assert!(field("instantaneous_ops_per_sec").parse::<u64>().is_ok());
    // Sections by name, any case, several at once; unknown names add
    // nothing; all, everything and default are everything.
    assert_eq!(
        text(c.call(&["INFO", "CLUSTER"])),
        "# Cluster\r\ncluster_enabled:1\r\n"
    );
    let two = text(c.call(&["INFO", "keyspace", "Clients"]));
    // (maxclients is 10000, or less where the file limit is lower.)
    let (clients, keyspace) = two.split_once("\r\n\r\n").unwrap();
    assert!(clients.starts_with("# Clients\r\nconnected_clients:1\r\nmaxclients:"));
    assert!(keyspace.starts_with("# Keyspace\r\n"));
    assert_eq!(text(c.call(&["INFO", "nosuchsection"])), "");
    for everything in ["all", "everything", "default", "ALL"] {
        let again = text(c.call(&["INFO", everything]));
        assert_eq!(
            again.lines().filter(|l| l.starts_with('#')).count(),
            6,
            "INFO {everything}"
        );
    }
    // A second client is counted while it is connected.
    let _other = cluster.client(1);
    support::wait_for(support::WAIT, "connected_clients:2", || {
        text(c.call(&["INFO", "clients"]))
            .contains("connected_clients:2\r\n")
            .then_some(())
    });
}

#[test]
fn cli_prints_version_info_as_lines_and_tries_each_seed() {
    let cluster = ProcCluster::start(1);
    cluster.wait_for_leader();
    let live = format!("127.0.0.1:{}", cluster.nodes[&1].client_port);
    let dead = format!("127.0.0.1:{}", free_port());
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for flag in ["--version", "-V"] {
        let (code, out, _) = run(&[flag]);
        assert_eq!(code, Some(0));
        assert_eq!(out, format!("raftnode {}\n", env!("CARGO_PKG_VERSION")));
    }
    // The first seed is down: the cli says so and uses the next.
    let (code, out, err) = run(&["cli", "--addr", &dead, "--addr", &live, "SET", "a", "b"]);
    assert_eq!((code, out.as_str()), (Some(0), "OK\n"), "{err}");
    assert!(err.contains(&dead), "{err}");
    // INFO prints as lines, not as one quoted string.
    let (code, out, _) = run(&["cli", "--addr", &live, "INFO", "raft"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("# Raft\nid:1\n"), "{out}");
    assert!(out.lines().any(|l| l == "role:leader"), "{out}");
    // Every seed down is a clear failure, not a hang.
    let (code, _, err) = run(&["cli", "--addr", &dead, "--addr", &dead, "PING"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn cli_transaction_typed_into_a_follower_runs_once_on_the_leader() {
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let addr = format!("127.0.0.1:{}", cluster.nodes[&follower].client_port);
    let mut child = Command::new(BIN)
        .args(["cli", "--addr", &addr])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Queued on the follower; EXEC is redirected, and the whole transaction
    // is sent again to the leader.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"MULTI\nSET a 1\nINCR n\nGET a\nEXEC\nGET n\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // The prompt names the node talked to: drop it, keep the replies.
    let mut text = stdout.to_string();
    for node in cluster.nodes.values() {
        text = text.replace(&format!("127.0.0.1:{}> ", node.client_port), "\u{1}");
    }
    let replies: Vec<&str> = text
        .split('\u{1}')
        .map(str::trim_end)
        .filter(|r| !r.is_empty())
        .collect();
    assert_eq!(
        replies,
        [
            "OK",
            "QUEUED",
            "QUEUED",
            "QUEUED",
            "1) OK\n2) (integer) 1\n3) \"1\"",
            "\"1\"",
        ],
        "{stdout}"
    );
}

/// Requests whose replies must be byte for byte what a real redis-server
/// gives, on RESP2 and on RESP3 (the connection sends `HELLO 3` first).
/// Every key has the hash tag `{t}`, so a Redis in cluster mode would take
/// them all too.
const SAME_AS_REDIS: &[&str] = &[
    "SET {t}a hello",
    "GET {t}a",
    "GET {t}missing",
    "APPEND {t}a \" world\"",
    "GET {t}a",
    "DEL {t}a {t}missing",
    "SET {t}n 9223372036854775806",
    "INCRBY {t}n 1",
    "INCRBY {t}n 1",
    "INCR {t}n",
    "DECRBY {t}n -9223372036854775808",
    "INCRBY {t}n abc",
    "INCRBY {t}n +5",
    "DECR {t}n",
    "DECRBY {t}n 5",
    "SET {t}s x",
    "INCR {t}s",
    "DECR {t}s",
    "INCRBY {t}new 7",
    "DECR {t}new2",
    "MULTI",
    "SET {t}m 1",
    "INCR {t}m",
    "INCRBY {t}m 10",
    "DECRBY {t}m 2",
    "GET {t}m",
    "GET {t}nothing",
    "EXEC",
    "MULTI",
    "INCR {t}m",
    "DISCARD",
    "GET {t}m",
    "EXEC",
    "DISCARD",
    "PING",
    "PING hi",
    "ECHO \"a b\"",
    "GET",
    "SET {t}x",
    "HELLO 4",
    "HELLO abc",
    "HELLO 3 AUTH bob pw",
    "AUTH x",
    "AUTH default anything",
    "AUTH bob pw",
    "CONFIG SET nosuchparam 10",
    "CONFIG SET nosuchparam",
    "CONFIG GET appendonly",
    "CLIENT GETNAME",
    "CLIENT SETNAME me",
    "CLIENT GETNAME",
    "SELECT 0",
    "CLUSTER KEYSLOT somekey",
    "CLUSTER KEYSLOT {user1000}.following",
    "CLUSTER KEYSLOT",
    "CLUSTER NOPE",
    "READONLY",
    "READWRITE",
    // SET and DEL differ on purpose: Redis's SET notes its GET option and
    // DEL carries multi-shard routing tips; raftnode has neither.
    "COMMAND INFO get",
    "COMMAND INFO incr",
    "COMMAND INFO nosuchcommand",
    "UNWATCH",
    "DEL {t}n {t}s {t}new {t}new2 {t}m",
    // Everything is deleted again, so both digests are of an empty store.
    "DEBUG DIGEST",
    "DEBUG NOPE",
    "DEBUG DIGEST extra",
    "DEBUG",
];

/// Sends each request on one connection (after `HELLO 3` if `resp3`) and
/// returns each reply's bytes.
fn replies_from(port: u16, resp3: bool) -> Vec<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut exchange = |request: &str| {
        writer
            .write_all(format!("{request}\r\n").as_bytes())
            .unwrap();
        resp::read_reply(&mut reader, &Limits::default()).unwrap()
    };
    if resp3 {
        exchange("HELLO 3");
    }
    let protocol = if resp3 {
        resp::Protocol::Resp3
    } else {
        resp::Protocol::Resp2
    };
    SAME_AS_REDIS
        .iter()
        .map(|request| {
            let bytes = exchange(request).to_bytes(protocol);
            format!("{request} -> {}", String::from_utf8_lossy(&bytes))
        })
        .collect()
}

#[test]
fn replies_are_byte_for_byte_those_of_a_real_redis_server() {
    let redis_port = free_port();
    let (port, bus_port) = (redis_port.to_string(), free_port().to_string());
    // Besides its unix socket, a TCP port: a one-node Redis Cluster, its bus
    // on a port reserved for it (the default, port + 10000, is nobody's to
    // take). Later flags override the helper's `--port 0 --appendonly no`.
    let Some(_redis) = RedisServer::start(&[
        "--port",
        &port,
        "--appendonly",
        "yes",
        "--enable-debug-command",
        "yes",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-port",
        &bus_port,
    ]) else {
        return;
    };
    // A one-node Redis Cluster owning every slot, like a raftnode cluster.
    let mut admin = support::process::Resp::connect(redis_port).unwrap();
    assert_eq!(
        admin.call(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]),
        Reply::ok()
    );
    support::wait_for(support::WAIT, "the Redis cluster to be ok", || match admin
        .call(&["CLUSTER", "INFO"])
    {
        Reply::Bulk(info) => String::from_utf8_lossy(&info)
            .contains("cluster_state:ok")
            .then_some(()),
        _ => None,
    });
    let cluster = ProcCluster::start(1);
    cluster.wait_for_leader();
    let ours = cluster.nodes[&1].client_port;
    for resp3 in [false, true] {
        // Replies are re-encoded after parsing, which keeps every byte that
        // matters (types, lengths, order) and is how both are compared.
        let theirs = replies_from(redis_port, resp3);
        let mine = replies_from(ours, resp3);
        for (t, m) in theirs.iter().zip(&mine) {
            assert_eq!(m, t, "RESP{}", if resp3 { 3 } else { 2 });
        }
    }
}

#[test]
fn replicas_at_the_same_applied_index_have_the_same_debug_digest() {
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let mut c = cluster.client(leader);
    let digest = |id: u64| match cluster.client(id).call(&["DEBUG", "DIGEST"]) {
        Reply::Simple(hex) => hex,
        other => panic!("DEBUG DIGEST answered {other:?}"),
    };
    let empty = digest(leader);
    assert_eq!(empty, "0".repeat(40));
    // Keys, values and a client session (SEQ) are all part of the state.
    assert_eq!(c.call(&["CLIENT", "ID", "77"]), Reply::ok());
    for i in 0..50 {
        let key = format!("k{i}");
        assert_eq!(c.call(&["SET", &key, &format!("v{i}")]), Reply::ok());
    }
    assert_eq!(c.call(&["SEQ", "1", "INCR", "n"]), Reply::Integer(1));
    let applied = |id: u64| cluster.info(id)["last_applied"].clone();
    let converged = || {
        let target = applied(leader);
        support::wait_for(support::WAIT, "every node to apply as far", || {
            (1..=3).all(|id| applied(id) == target).then_some(())
        });
    };
    converged();
    let first = digest(leader);
    assert_ne!(first, empty);
    for id in 1..=3 {
        assert_eq!(digest(id), first, "node {id} at {}", applied(id));
    }
    // One value changed is another digest, again the same everywhere.
    assert_eq!(c.call(&["SET", "k7", "changed"]), Reply::ok());
    converged();
    let second = digest(leader);
    assert_ne!(second, first);
    for id in 1..=3 {
        assert_eq!(digest(id), second, "node {id}");
    }
}
