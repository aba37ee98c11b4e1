//! End to end: real `raftnode` processes, spoken to over the client port.

mod support;

use raftnode::redis::cluster::key_slot;
use raftnode::redis::resp::Reply;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use support::process::{bulk, error_starting, free_port, ok, ProcCluster, Resp, BIN};
use support::{wait_for, WAIT};

#[test]
fn write_on_leader_read_back_and_followers_redirect_with_moved() {
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let mut c = cluster.client(leader);
    assert_eq!(c.call(&["SET", "greeting", "hello"]), ok());
    assert_eq!(c.call(&["GET", "greeting"]), bulk("hello"));
    assert_eq!(c.call(&["GET", "missing"]), Reply::NullBulk);
    assert_eq!(c.call(&["DEL", "greeting", "missing"]), Reply::Integer(1));
    assert_eq!(c.call(&["CAS", "k", "a", "b"]), Reply::Integer(0));
    assert_eq!(c.call(&["SET", "k", "a"]), ok());
    assert_eq!(c.call(&["CAS", "k", "a", "b"]), Reply::Integer(1));
    assert_eq!(c.call(&["GET", "k"]), bulk("b"));

    let leader_addr = format!("127.0.0.1:{}", cluster.nodes[&leader].client_port);
    for follower in cluster.running().into_iter().filter(|&id| id != leader) {
        let mut f = cluster.client(follower);
        for command in [
            &["GET", "k"][..],
            &["SET", "k", "c"],
            &["DEL", "k"],
            &["CAS", "k", "b", "c"],
        ] {
            // The slot is the key's hash slot, as Redis Cluster computes it.
            let text = error_starting(&f.call(command), "MOVED ");
            assert_eq!(text, format!("MOVED {} {leader_addr}", key_slot(b"k")));
        }
        // Commands that any node answers.
        assert_eq!(f.call(&["PING"]), Reply::Simple("PONG".into()));
        let info = cluster.info(follower);
        assert_eq!(info["role"], "follower");
        assert_eq!(info["leader_id"], leader.to_string());
        assert_eq!(info["members"], "1,2,3");
        for field in ["term", "commit_index", "last_applied", "last_log_index"] {
            assert!(info[field].parse::<u64>().is_ok(), "{field}");
        }
    }
    // The redirected write was not applied.
    assert_eq!(c.call(&["GET", "k"]), bulk("b"));
}

#[test]
fn tryagain_while_no_leader_exists() {
    // One node of three cannot win an election.
    let cluster = ProcCluster::start_some(3, &[1]);
    let mut c = cluster.client(1);
    error_starting(&c.call(&["SET", "k", "v"]), "TRYAGAIN");
    error_starting(&c.call(&["GET", "k"]), "TRYAGAIN");
    assert_eq!(cluster.info(1)["leader_id"], "");
}

#[test]
fn kill_9_leader_then_new_leader_keeps_writes_and_restarted_node_catches_up() {
    let mut cluster = ProcCluster::start(3);
    let old = cluster.wait_for_leader();
    let mut c = cluster.client(old);
    for i in 0..20 {
        assert_eq!(c.call(&["SET", &format!("k{i}"), &format!("v{i}")]), ok());
    }
    cluster.kill(old);
    let new = cluster.wait_for_leader();
    assert_ne!(new, old);
    let mut c = cluster.client(new);
    for i in 0..20 {
        assert_eq!(c.call(&["GET", &format!("k{i}")]), bulk(&format!("v{i}")));
    }
    assert_eq!(c.call(&["SET", "after", "failover"]), ok());
    cluster.start_node(old);
    assert_eq!(cluster.wait_for_leader(), new);
    let target: u64 = cluster.info(new)["commit_index"].parse().unwrap();
    wait_for(WAIT, "the restarted node to catch up", || {
        let applied: u64 = cluster.info(old)["last_applied"].parse().ok()?;
        (applied >= target).then_some(())
    });
}

#[test]
fn inline_and_multibulk_forms_pipelined_in_order() {
    let cluster = ProcCluster::start(1);
    cluster.wait_for_leader();
    let mut c = cluster.client(1);
    // A burst mixing both forms, quotes and escapes, sent in one write.
    c.send_raw(
        b"SET greeting hello\r\n\
          *3\r\n$3\r\nSET\r\n$4\r\nk\r\nv\r\n$1\r\n2\r\n\
          set \"two words\" \"tab\\there\\x21\"\r\n\
          GET greeting\n\
          \r\n\
          *2\r\n$3\r\nget\r\n$4\r\nk\r\nv\r\n\
          GET 'two words'\r\n\
          ping\r\n\
          PING \"hi there\"\r\n",
    );
    let expected = [
        ok(),
        ok(),
        ok(),
        bulk("hello"),
        bulk("2"),
        bulk("tab\there!"),
        Reply::Simple("PONG".into()),
        bulk("hi there"),
    ];
    for want in expected {
        assert_eq!(c.read(), want);
    }
    // Many pipelined writes come back in order.
    let mut burst = Vec::new();
    for i in 0..200 {
        burst.extend_from_slice(format!("SET p{i} {i}\r\nGET p{i}\r\n").as_bytes());
    }
    c.send_raw(&burst);
    for i in 0..200 {
        assert_eq!(c.read(), ok());
        assert_eq!(c.read(), bulk(&i.to_string()));
    }
}

#[test]
fn errors_are_clear_and_protocol_errors_close_only_that_connection() {
    let cluster = ProcCluster::start(1);
    cluster.wait_for_leader();
    let mut other = cluster.client(1);
    let mut c = cluster.client(1);
    error_starting(&c.call(&["NOSUCH", "x"]), "ERR unknown command 'NOSUCH'");
    error_starting(&c.call(&["GET"]), "ERR wrong number of arguments for 'get'");
    error_starting(
        &c.call(&["SET", "k"]),
        "ERR wrong number of arguments for 'set'",
    );
    error_starting(&c.call(&["CAS", "k", "v"]), "ERR wrong number of arguments");
    let big_key = "k".repeat(64 * 1024 + 1);
    error_starting(&c.call(&["SET", &big_key, "v"]), "ERR key of 65537 bytes");
    let big_value = "v".repeat(1024 * 1024 + 1);
    error_starting(
        &c.call(&["SET", "k", &big_value]),
        "ERR value of 1048577 bytes",
    );
    // The connection survived all of that, and nothing was written.
    assert_eq!(c.call(&["GET", "k"]), Reply::NullBulk);

    for garbage in [
        &b"*abc\r\n"[..],
        b"*1\r\n$x\r\n",
        b"SET \"unbalanced\r\n",
        b"*1\r\n$3\r\nGETX\r\n",
    ] {
        let mut bad = cluster.client(1);
        bad.send_raw(garbage);
        error_starting(&bad.read(), "ERR Protocol error");
        assert!(
            bad.try_read().is_err(),
            "connection should be closed after {garbage:?}"
        );
    }
    let mut long = cluster.client(1);
    long.send_raw(&vec![b'a'; 70 * 1024]);
    error_starting(&long.read(), "ERR Protocol error: too big inline request");
    assert!(long.try_read().is_err());

    assert_eq!(other.call(&["SET", "still", "fine"]), ok());
    assert_eq!(c.call(&["QUIT"]), ok());
    assert!(c.try_read().is_err());
}

#[test]
fn redis_client_preambles_are_answered() {
    let cluster = ProcCluster::start(1);
    cluster.wait_for_leader();
    let mut c = cluster.client(1);
    assert_eq!(c.call(&["CLIENT", "SETNAME", "me"]), ok());
    assert_eq!(c.call(&["CLIENT", "SETINFO", "lib-name", "redis-py"]), ok());
    assert_eq!(c.call(&["SELECT", "0"]), ok());
    error_starting(&c.call(&["SELECT", "1"]), "ERR");
    assert_eq!(c.call(&["COMMAND", "DOCS"]), Reply::Array(vec![]));
    assert_eq!(
        c.call(&["CONFIG", "GET", "appendonly"]),
        Reply::Array(vec![bulk("appendonly"), bulk("yes")])
    );
    error_starting(&c.call(&["HELLO", "4"]), "NOPROTO");
    // HELLO 2 describes the server as a flat array of fields and values.
    match c.call(&["HELLO", "2"]) {
        Reply::Array(fields) => {
            assert_eq!(fields.len(), 14);
            assert_eq!(fields[4..6], [bulk("proto"), Reply::Integer(2)]);
        }
        other => panic!("{other:?}"),
    }
    match c.call(&["HELP"]) {
        Reply::Array(lines) => assert!(lines.len() >= 8),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hundreds_of_idle_connections_are_fine() {
    let cluster = ProcCluster::start(1);
    cluster.wait_for_leader();
    let mut clients: Vec<Resp> = (0..300).map(|_| cluster.client(1)).collect();
    assert_eq!(clients[0].call(&["SET", "k", "v"]), ok());
    for c in clients.iter_mut().rev() {
        assert_eq!(c.call(&["GET", "k"]), bulk("v"));
    }
}

fn run_bin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_and_bad_invocations_give_one_clear_line() {
    for sub in ["run", "dev", "cli"] {
        let (code, out, _) = run_bin(&[sub, "--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("Usage:") && out.contains("default"), "{out}");
    }
    let (_, out, _) = run_bin(&["run", "--help"]);
    assert!(
        out.contains("--join HOST:PORT") && out.contains("RAFT.NODE"),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d").to_string_lossy().into_owned();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["run".into(), "--id".into(), "1".into()],
            "missing required option --data-dir",
        ),
        (
            vec!["run".into(), "--bogus".into()],
            "unknown option --bogus",
        ),
        (vec!["frobnicate".into()], "unknown subcommand"),
        (
            [
                "run",
                "--id",
                "x",
                "--data-dir",
                &data,
                "--raft-addr",
                "127.0.0.1:1",
                "--client-addr",
                "127.0.0.1:2",
            ]
            .map(String::from)
            .to_vec(),
            "--id must be a positive integer",
        ),
        (
            [
                "run",
                "--id",
                "1",
                "--data-dir",
                &data,
                "--raft-addr",
                "nope",
                "--client-addr",
                "127.0.0.1:2",
            ]
            .map(String::from)
            .to_vec(),
            "--raft-addr expects HOST:PORT",
        ),
        (
            [
                "run",
                "--id",
                "1",
                "--data-dir",
                &data,
                "--raft-addr",
                "127.0.0.1:1",
                "--client-addr",
                "127.0.0.1:2",
                "--join",
                "somewhere",
            ]
            .map(String::from)
            .to_vec(),
            "--join expects HOST:PORT",
        ),
        (
            [
                "run",
                "--id",
                "1",
                "--data-dir",
                &data,
                "--raft-addr",
                "127.0.0.1:1",
                "--client-addr",
                "127.0.0.1:2",
                "--join",
                "127.0.0.1:2",
            ]
            .map(String::from)
            .to_vec(),
            "--join names this node's own client address",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = run_bin(&args);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!err.contains("panicked"));
    }

    // A port in use.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let raft = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = run_bin(&[
        "run",
        "--id",
        "1",
        "--data-dir",
        &data,
        "--raft-addr",
        &raft,
        "--client-addr",
        &taken_addr,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains(&taken_addr) && err.contains("in use"), "{err}");

    // Another node's data dir.
    let mut cluster = ProcCluster::start(1);
    cluster.wait_for_leader();
    cluster.kill(1);
    let other = cluster.data_dir(1).to_string_lossy().into_owned();
    let client = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = run_bin(&[
        "run",
        "--id",
        "7",
        "--data-dir",
        &other,
        "--raft-addr",
        &raft,
        "--client-addr",
        &client,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("belongs to node 1, not node 7"), "{err}");
    assert!(err.contains(&other), "{err}");
    assert_eq!(
        err.trim().lines().filter(|l| l.contains("error")).count(),
        1,
        "{err}"
    );

    // Corrupt data: a flipped byte in the middle of the log (in the first
    // record's header of its first segment, with more data after it).
    let log = cluster.data_dir(1).join("log-00000000000000000001");
    let mut bytes = std::fs::read(&log).unwrap();
    if bytes.len() > 20 {
        bytes[12] ^= 0xff;
        bytes.extend_from_slice(&[1; 64]);
        std::fs::write(&log, bytes).unwrap();
        let (code, _, err) = run_bin(&[
            "run",
            "--id",
            "1",
            "--data-dir",
            &other,
            "--raft-addr",
            &raft,
            "--client-addr",
            &client,
        ]);
        assert_eq!(code, 1);
        assert!(err.contains("corrupt") && err.contains("offset"), "{err}");
    }
}

/// A block of client ports P..P+n-1 and raft ports P+100.. that are all free.
fn free_port_block(n: u16) -> u16 {
    wait_for(WAIT, "a free block of ports", || {
        let base = free_port();
        if base > 65535 - 200 {
            return None;
        }
        let ports = (0..n).flat_map(|i| [base + i, base + 100 + i]);
        let held: Vec<_> = ports
            .map(|p| TcpListener::bind(("127.0.0.1", p)).ok())
            .collect::<Option<Vec<_>>>()?;
        drop(held);
        Some(base)
    })
}

#[test]
fn dev_starts_a_cluster_and_stops_every_node_when_killed() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_block(3);
    let data = dir.path().join("dev");
    let mut dev = Command::new(BIN)
        .args(["dev", "--base-port", &base.to_string(), "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(dev.stdout.take().unwrap());
    let mut banner = String::new();
    while !banner.contains("Ctrl-C") {
        assert!(
            out.read_line(&mut banner).unwrap() > 0,
            "dev ended early: {banner}"
        );
    }
    assert!(banner.contains(&format!("127.0.0.1:{base}")), "{banner}");

    // Write through any node, following the redirect to the leader.
    let leader_port = wait_for(WAIT, "a dev leader", || {
        let mut c = Resp::connect(base).ok()?;
        match c.call(&["SET", "k", "v"]) {
            Reply::Simple(_) => Some(base),
            Reply::Error(e) if e.starts_with("MOVED") => {
                let port: u16 = e.rsplit(':').next()?.parse().ok()?;
                let mut l = Resp::connect(port).ok()?;
                (l.call(&["SET", "k", "v"]) == ok()).then_some(port)
            }
            _ => None,
        }
    });
    assert_eq!(
        Resp::connect(leader_port).unwrap().call(&["GET", "k"]),
        bulk("v")
    );

    // SIGKILL gives dev no chance to clean up: its nodes must still go.
    dev.kill().unwrap();
    dev.wait().unwrap();
    for port in (0..3).flat_map(|i| [base + i, base + 100 + i]) {
        wait_for(WAIT, &format!("port {port} to be released"), || {
            TcpListener::bind(("127.0.0.1", port)).ok().map(drop)
        });
    }
    // A second run resumes the same data (and a different size is refused).
    let (code, _, err) = run_bin(&[
        "dev",
        "--nodes",
        "5",
        "--base-port",
        &base.to_string(),
        "--data-dir",
        &data.to_string_lossy(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("3-node dev cluster"), "{err}");
    // The same size resumes: the membership comes from the data dirs, and
    // the write is still there.
    let mut dev = Command::new(BIN)
        .args(["dev", "--base-port", &base.to_string(), "--data-dir"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let value = wait_for(WAIT, "the resumed dev cluster to answer", || {
        let mut c = Resp::connect(base).ok()?;
        match c.call(&["GET", "k"]) {
            Reply::Error(e) if e.starts_with("MOVED") => {
                let port: u16 = e.rsplit(':').next()?.parse().ok()?;
                Some(Resp::connect(port).ok()?.call(&["GET", "k"]))
            }
            Reply::Error(_) => None,
            value => Some(value),
        }
    });
    assert_eq!(value, bulk("v"));
    dev.kill().unwrap();
    dev.wait().unwrap();
    for port in (0..3).flat_map(|i| [base + i, base + 100 + i]) {
        wait_for(WAIT, &format!("port {port} to be released"), || {
            TcpListener::bind(("127.0.0.1", port)).ok().map(drop)
        });
    }
}

#[test]
fn redis_cli_and_redis_benchmark_work_unchanged() {
    let have = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    if !have("redis-cli") || !have("redis-benchmark") {
        eprintln!("redis-tools not installed; skipping (CI installs them)");
        return;
    }
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower = cluster
        .running()
        .into_iter()
        .find(|&id| id != leader)
        .unwrap();
    let port = |id: u64| cluster.nodes[&id].client_port.to_string();
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli").args(args).output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // -c follows MOVED from the follower to the leader.
    assert_eq!(
        cli(&["-c", "-p", &port(follower), "SET", "tool", "redis-cli"]),
        "OK"
    );
    assert_eq!(cli(&["-p", &port(leader), "GET", "tool"]), "redis-cli");
    assert!(cli(&["-p", &port(follower), "GET", "tool"]).starts_with("MOVED"));
    assert!(cli(&["-p", &port(leader), "INFO"]).contains("role:leader"));

    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &port(leader),
            "-t",
            "set,get",
            "-n",
            "2000",
            "-c",
            "10",
            "-q",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SET:") && text.contains("GET:"), "{text}");
    let lower = text.to_lowercase();
    assert!(
        !lower.contains("error") && !lower.contains("warning"),
        "{text}"
    );
}

#[test]
fn incr_append_and_exactly_once_writes_with_client_sessions() {
    let cluster = ProcCluster::start(1);
    cluster.wait_for_leader();
    let mut c = cluster.client(1);
    assert_eq!(c.call(&["INCR", "n"]), Reply::Integer(1));
    assert_eq!(c.call(&["INCR", "n"]), Reply::Integer(2));
    assert_eq!(c.call(&["APPEND", "s", "ab"]), Reply::Integer(2));
    assert_eq!(c.call(&["APPEND", "s", "cd"]), Reply::Integer(4));
    assert_eq!(c.call(&["GET", "s"]), bulk("abcd"));
    error_starting(&c.call(&["INCR", "s"]), "ERR value is not an integer");
    // APPEND stops at the 1 MiB value limit, as Redis at proto-max-bulk-len
    // (and a GET of the value still works).
    let half = "x".repeat(512 * 1024);
    assert_eq!(
        c.call(&["APPEND", "big", &half]),
        Reply::Integer(512 * 1024)
    );
    assert_eq!(
        c.call(&["APPEND", "big", &half]),
        Reply::Integer(1024 * 1024)
    );
    error_starting(
        &c.call(&["APPEND", "big", "y"]),
        "ERR string exceeds maximum allowed size",
    );
    assert_eq!(c.call(&["GET", "big"]), bulk(&"x".repeat(1024 * 1024)));

    error_starting(
        &c.call(&["SEQ", "1", "INCR", "n"]),
        "ERR SEQ needs a client id",
    );
    assert_eq!(c.call(&["CLIENT", "ID", "77"]), ok());
    assert_eq!(c.call(&["CLIENT", "ID"]), Reply::Integer(77));
    assert_eq!(c.call(&["SEQ", "1", "INCR", "n"]), Reply::Integer(3));
    // The retry of sequence 1 — say after a TIMEOUT — is answered, not applied.
    assert_eq!(c.call(&["SEQ", "1", "INCR", "n"]), Reply::Integer(3));
    assert_eq!(c.call(&["GET", "n"]), bulk("3"));
    // Sessions belong to the client, not the connection.
    let mut again = cluster.client(1);
    assert_eq!(again.call(&["CLIENT", "ID", "77"]), ok());
    assert_eq!(again.call(&["SEQ", "1", "INCR", "n"]), Reply::Integer(3));
    assert_eq!(again.call(&["SEQ", "2", "SET", "k", "v"]), ok());
    error_starting(
        &again.call(&["SEQ", "1", "INCR", "n"]),
        "ERR sequence number 1 is older",
    );
    assert_eq!(again.call(&["GET", "n"]), bulk("3"));
    // A client unknown to the cluster must start at 1: without a session,
    // a higher number may be a write of an expired session, whose outcome
    // is unknown.
    assert_eq!(again.call(&["CLIENT", "ID", "78"]), ok());
    error_starting(
        &again.call(&["SEQ", "5", "SET", "k", "x"]),
        "SESSIONEXPIRED client 78 has no session",
    );
    let info = cluster.info(1);
    assert_eq!(info["duplicate_writes_suppressed"], "2");
    assert_eq!(info["pre_vote"], "on");
    assert_eq!(info["check_quorum"], "on");
    assert_eq!(info["read_mode"], "read-index");
    assert_eq!(info["reads_served"], "4");
}

#[test]
fn raftnode_cli_follows_redirects_and_uses_sessions() {
    let cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower = cluster
        .running()
        .into_iter()
        .find(|&id| id != leader)
        .unwrap();
    let addr = format!("127.0.0.1:{}", cluster.nodes[&follower].client_port);
    let (code, out, err) = run_bin(&["cli", "--addr", &addr, "INCR", "visits"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "(integer) 1");
    let (code, out, _) = run_bin(&["cli", "--addr", &addr, "GET", "visits"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "\"1\"");
    let (code, out, _) = run_bin(&["cli", "--addr", &addr, "NOSUCH"]);
    assert_eq!(code, 1);
    assert!(out.starts_with("(error) ERR unknown command"), "{out}");
    // Interactive, with quoting, as a person would type it.
    let mut child = Command::new(BIN)
        .args(["cli", "--addr", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        stdin
            .write_all(b"SET greeting \"hello world\"\nGET greeting\nquit\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("OK") && text.contains("\"hello world\""),
        "{text}"
    );
    // An address with nothing behind it fails at once, clearly.
    let dead = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = run_bin(&["cli", "--addr", &dead, "PING"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot connect"), "{err}");
}
