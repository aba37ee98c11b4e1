//! `raftnode bench` as a user runs it: against a cluster of its own (SET
//! and GET), against one it is pointed at, and with bad flags. Short runs:
//! these check that it works and reports honestly, not how fast anything is.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn raftnode() -> Command {
    Command::new(env!("CARGO_BIN_EXE_raftnode"))
}

fn bench(args: &[&str]) -> Output {
    raftnode()
        .arg("bench")
        .args(args)
        .output()
        .expect("run raftnode bench")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The table row of `op` with `clients` clients, split into its columns:
/// op clients pipeline ops/s p50 p90 p99 max errors cpu p50/floor.
fn row(text: &str, op: &str, clients: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.len() == 11 && cols[0] == op && cols[1] == clients)
        .unwrap_or_else(|| panic!("no {op} row for {clients} clients in:\n{text}"))
}

/// What follows `prefix` on the line that starts with it.
fn after<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{text}"))
}

/// The run succeeded with a row of replies and no errors, a JSON line for
/// it, and the floors above the table.
fn check_clean_run(out: &Output, op: &str) -> String {
    let text = stdout(out);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{text}\nstderr:\n{}",
        out.status,
        stderr(out)
    );
    assert!(text.contains("4 KiB append + fdatasync"), "{text}");
    assert!(text.contains("loopback TCP round trip"), "{text}");
    assert!(text.contains("single-client write floor"), "{text}");
    let cols = row(&text, op, "2");
    let ops_per_sec: f64 = cols[3].parse().expect("ops/s is a number");
    assert!(ops_per_sec > 0.0, "{text}");
    assert_eq!(cols[8], "0", "errors in:\n{text}");
    assert_ne!(cols[9], "-", "server CPU not measured:\n{text}");
    let json = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON row in:\n{text}"));
    for field in [
        format!("\"op\":\"{op}\""),
        "\"clients\":2,".to_string(),
        "\"errors\":0,".to_string(),
        "\"errors_by_kind\":{}".to_string(),
    ] {
        assert!(json.contains(&field), "{field} missing from {json}");
    }
    assert!(json.ends_with('}'), "{json}");
    assert!(!json.contains("\"ops\":0,"), "{json}");
    text
}

/// The benchmark's own nodes and data are gone once it has exited.
fn check_cleaned_up(text: &str) {
    for pid in after(text, "server pids: ").split_whitespace() {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "node process {pid} still there"
        );
    }
    let dir = after(text, "cluster: 3 local node(s), data in ")
        .split(" (removed afterwards)")
        .next()
        .unwrap_or_default();
    assert!(!dir.is_empty(), "{text}");
    assert!(!Path::new(dir).exists(), "{dir} was left behind");
}

#[test]
fn set_against_its_own_cluster() {
    let out = bench(&[
        "--clients",
        "2",
        "--secs",
        "1",
        "--warmup",
        "0",
        "--keys",
        "100",
        "--json",
    ]);
    let text = check_clean_run(&out, "SET");
    check_cleaned_up(&text);
}

#[test]
fn get_against_its_own_cluster_in_lease_mode() {
    let out = bench(&[
        "--op",
        "get",
        "--read-mode",
        "lease",
        "--clients",
        "2",
        "--secs",
        "1",
        "--warmup",
        "0",
        "--keys",
        "100",
        "--json",
    ]);
    let text = check_clean_run(&out, "GET");
    assert!(text.contains("read mode lease"), "{text}");
    check_cleaned_up(&text);
}

/// A one-node cluster started here, killed when dropped.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn against_a_running_cluster_with_addr() {
    let dir = tempfile::tempdir().unwrap();
    let port = |l: &TcpListener| l.local_addr().unwrap().port();
    let (a, b) = (
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let (client, raft) = (format!("127.0.0.1:{}", port(&a)), port(&b));
    drop((a, b));
    let node = Node(
        raftnode()
            .args(["run", "--id", "1", "--client-addr", &client])
            .args(["--raft-addr", &format!("127.0.0.1:{raft}")])
            .arg("--data-dir")
            .arg(dir.path().join("node-1"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let out = bench(&[
        "--addr",
        &client,
        "--clients",
        "2",
        "--secs",
        "1",
        "--warmup",
        "0",
        "--no-floors",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        !text.contains("fdatasync"),
        "--no-floors measured floors:\n{text}"
    );
    assert_eq!(after(&text, "server pids: "), node.0.id().to_string());
    let cols = row(&text, "SET", "2");
    assert!(cols[3].parse::<f64>().unwrap() > 0.0, "{text}");
    assert_eq!(cols[8], "0", "{text}");
    assert_eq!(cols[10], "-", "a ratio without floors:\n{text}");
}

#[test]
fn bad_flags_are_refused_with_status_2() {
    for (args, says) in [
        (&["--clients", "0"][..], "--clients expects counts"),
        (&["--clients", "1,x"], "--clients expects counts"),
        (&["--op", "put"], "--op expects set or get"),
        (&["--secs", "0"], "--secs must be more than 0"),
        (&["--warmup", "-1"], "--warmup must be 0"),
        (&["--pipeline", "0"], "--pipeline must be between"),
        (&["--value-size", "2mb"], "--value-size is at most 1mb"),
        (
            &["--read-mode", "fast"],
            "--read-mode expects read-index or lease",
        ),
        (&["--addr", "nowhere"], "--addr expects HOST:PORT"),
        (
            &["--addr", "127.0.0.1:1", "--nodes", "5"],
            "--nodes is for the local cluster",
        ),
        (&["--frobnicate"], "unknown option --frobnicate"),
    ] {
        let out = bench(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(err.contains("see raftnode --help"), "{args:?}: {err}");
    }
}

#[test]
fn help_lists_every_flag() {
    let out = bench(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for flag in [
        "--addr",
        "--clients",
        "--secs",
        "--warmup",
        "--op",
        "--value-size",
        "--keys",
        "--pipeline",
        "--nodes",
        "--data-dir",
        "--read-mode",
        "--no-floors",
        "--json",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
    let main = raftnode().arg("--help").output().unwrap();
    assert!(stdout(&main).contains("raftnode bench"));
}
