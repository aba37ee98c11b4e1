//! End to end: the metrics endpoint (`raftnode run --metrics-addr`) and
//! `raftnode cli status`, on real `raftnode` processes.

mod support;

use raftnode::redis::resp::Reply;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::process::{error_starting, ok, ProcCluster, BIN};
use support::{wait_for, WAIT};

/// The address node `id` serves metrics on, from the line its log says it
/// is up with (it was started with `--metrics-addr 127.0.0.1:0`).
fn metrics_addr(cluster: &ProcCluster, id: u64) -> String {
    wait_for(
        WAIT,
        &format!("node {id} to say where its metrics are"),
        || {
            let log = cluster.log(id);
            let at = log.find("metrics on http://")? + "metrics on http://".len();
            let rest = &log[at..];
            Some(rest[..rest.find("/metrics")?].to_string())
        },
    )
}

/// A raw HTTP exchange: the whole response, as text.
fn http(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    response
}

/// `GET /metrics`, checked to be a 200 with Prometheus's content type; the
/// page.
fn scrape(addr: &str) -> String {
    let response = http(addr, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse::<usize>().ok())
        .expect("a Content-Length");
    assert_eq!(length, body.len(), "the body is as long as the head says");
    body.to_string()
}

/// A page's samples: each series (name and labels, as written) and value.
type Samples = BTreeMap<String, f64>;

/// Checks the page against the exposition format's rules, and returns its
/// samples: every sample belongs to a family with a `# TYPE` given before
/// it, families are not interleaved or repeated, counters end in `_total`,
/// and each histogram's buckets rise with `le`, end with `+Inf` and agree
/// with its `_count`.
fn validate(page: &str) -> Samples {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Samples::new();
    let mut current: Option<String> = None;
    // Per histogram: its (le, count) buckets in order, and its count.
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    assert!(page.ends_with('\n'), "the page ends with a line break");
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} ends in _total");
            }
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{name} typed twice"
            );
            current = Some(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (series, value) = line.rsplit_once(' ').expect("a series and a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number in {line:?}")),
        };
        let name = &series[..series.find('{').unwrap_or(series.len())];
        assert!(
            name.starts_with("raftnode_")
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{name}"
        );
        let family = current.as_deref().expect("a sample after a # TYPE");
        let kind = &types[family];
        if kind == "histogram" {
            let suffix = name.strip_prefix(family).unwrap_or_else(|| {
                panic!("{name} is not of the family {family}, the last one typed")
            });
            match suffix {
                "_bucket" => {
                    let le = series
                        .split("le=\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .expect("a bucket's le");
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().expect("le is a number")
                    };
                    buckets.entry(family.into()).or_default().push((le, value));
                }
                "_count" => {
                    counts.insert(family.into(), value);
                }
                "_sum" => {}
                other => panic!("{name}: histograms have no {other}"),
            }
        } else {
            assert_eq!(name, family, "{name} after # TYPE {family}");
        }
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{series} twice"
        );
    }
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let b = &buckets[family];
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0), "{family}: le rises");
        assert!(
            b.windows(2).all(|w| w[0].1 <= w[1].1),
            "{family}: cumulative"
        );
        let (le, last) = *b.last().expect("buckets");
        assert_eq!(le, f64::INFINITY, "{family}: +Inf last");
        assert_eq!(Some(&last), counts.get(family), "{family}: +Inf == _count");
    }
    samples
}

/// Scrapes `addr` until its page satisfies `cond`; that page's samples.
fn scrape_until(addr: &str, what: &str, cond: impl Fn(&Samples) -> bool) -> Samples {
    wait_for(WAIT, what, || {
        let samples = validate(&scrape(addr));
        cond(&samples).then_some(samples)
    })
}

fn value(samples: &Samples, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

#[test]
fn metrics_of_a_running_cluster_are_scraped_and_count_what_happened() {
    let cluster = ProcCluster::start_with(3, &["--metrics-addr", "127.0.0.1:0"]);
    let leader = cluster.wait_for_leader();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let addr = metrics_addr(&cluster, leader);
    let before = validate(&scrape(&addr));
    let commit_before = value(&before, "raftnode_commit_index");

    // 20 SETs one at a time, 10 pipelined, 5 GETs, one unknown command on
    // the leader; a SET on a follower.
    let mut c = cluster.client(leader);
    for i in 0..20 {
        assert_eq!(c.call(&["SET", &format!("k{i}"), "v"]), ok());
    }
    for i in 20..30 {
        c.send(&["SET", &format!("k{i}"), "v"]);
    }
    for _ in 20..30 {
        assert_eq!(c.read(), ok());
    }
    for i in 0..5 {
        assert_eq!(
            c.call(&["GET", &format!("k{i}")]),
            Reply::Bulk(b"v".to_vec())
        );
    }
    error_starting(&c.call(&["NOSUCHCOMMAND", "x"]), "ERR unknown command");
    let mut f = cluster.client(follower);
    error_starting(&f.call(&["SET", "k0", "w"]), "MOVED ");

    // A write commits once two of the three logs hold it, which need not
    // include the leader's own: its writer may count its last appends (and
    // the follower's) a moment after the client had its replies.
    let appended = |m: &Samples| value(m, "raftnode_log_appended_entries_total");
    let m = scrape_until(&addr, "the leader to count its appends", |m| {
        appended(m) >= commit_before + 30.0
    });
    let series = |s: &str| value(&m, s);
    assert_eq!(series("raftnode_role{role=\"leader\"}"), 1.0);
    assert_eq!(series("raftnode_role{role=\"follower\"}"), 0.0);
    assert_eq!(series("raftnode_leader_id"), leader as f64);
    assert!(series("raftnode_term") >= 1.0);
    assert!(series("raftnode_leader_changes_total") >= 1.0);
    assert!(series("raftnode_commit_index") >= commit_before + 30.0);
    assert!(series("raftnode_applied_index") >= commit_before + 30.0);
    assert!(series("raftnode_proposals_total") >= 30.0);
    assert!(series("raftnode_entries_committed_total") >= 30.0);
    assert!(series("raftnode_log_appended_bytes_total") >= 30.0 * (36.0 + 2.0));
    let fsyncs = series("raftnode_log_fsync_seconds_count");
    assert!(fsyncs > 0.0);
    assert!(series("raftnode_log_fsync_seconds_sum") > 0.0);
    // Each sync is counted once, whether by the counter or the histogram
    // (read a moment apart, so one more may have happened in between).
    assert!((series("raftnode_log_fsyncs_total") - fsyncs).abs() <= 1.0);
    // The 10 pipelined SETs were in flight together: fewer writes than
    // entries.
    assert!(series("raftnode_log_append_batch_entries_count") > 0.0);
    assert!(
        series("raftnode_log_append_batch_entries_sum")
            >= series("raftnode_log_append_batch_entries_count")
    );
    for peer in (1..=3).filter(|&id| id != leader) {
        assert_eq!(
            series(&format!("raftnode_peer_connected{{peer=\"{peer}\"}}")),
            1.0
        );
        let lag = series(&format!("raftnode_peer_match_lag{{peer=\"{peer}\"}}"));
        assert!(lag >= 0.0);
    }
    assert!(series("raftnode_reads_total") >= 5.0);
    assert!(series("raftnode_read_index_rounds_total") >= 1.0);
    assert_eq!(series("raftnode_lease_reads_total"), 0.0);
    assert_eq!(
        series("raftnode_commands_total{command=\"set\",outcome=\"ok\"}"),
        30.0
    );
    assert_eq!(
        series("raftnode_commands_total{command=\"get\",outcome=\"ok\"}"),
        5.0
    );
    assert_eq!(
        series("raftnode_commands_total{command=\"unknown\",outcome=\"error\"}"),
        1.0
    );
    assert!(!m.contains_key("raftnode_commands_total{command=\"set\",outcome=\"moved\"}"));
    assert_eq!(series("raftnode_keys"), 30.0);
    assert!(series("raftnode_clients_connected") >= 1.0);
    assert!(series("raftnode_client_connections_total") >= 2.0);
    assert_eq!(series("raftnode_voters"), 3.0);

    // The follower counted its redirect, and knows no replication progress.
    let fm = scrape_until(
        &metrics_addr(&cluster, follower),
        "the follower to count its appends",
        |m| appended(m) >= commit_before + 30.0,
    );
    assert_eq!(
        value(
            &fm,
            "raftnode_commands_total{command=\"set\",outcome=\"moved\"}"
        ),
        1.0
    );
    assert_eq!(value(&fm, "raftnode_role{role=\"follower\"}"), 1.0);
    assert_eq!(value(&fm, "raftnode_leader_id"), leader as f64);
    assert!(!fm.keys().any(|k| k.starts_with("raftnode_peer_match_lag")));
    assert_eq!(
        value(
            &fm,
            &format!("raftnode_peer_connected{{peer=\"{leader}\"}}")
        ),
        1.0
    );
    assert!(value(&fm, "raftnode_proposals_total") == 0.0);

    // Only GET /metrics.
    let not_found = http(&addr, "GET / HTTP/1.1\r\n\r\n");
    assert!(not_found.starts_with("HTTP/1.1 404 "), "{not_found}");
    let not_allowed = http(&addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(not_allowed.starts_with("HTTP/1.1 405 "), "{not_allowed}");
    let bad = http(&addr, "hello\r\n\r\n");
    assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");

    // And curl, as Prometheus would scrape it.
    match Command::new("curl")
        .args(["--silent", "--show-error", "--include", "--max-time", "10"])
        .arg(format!("http://{addr}/metrics"))
        .output()
    {
        Err(_) => eprintln!("curl not found; skipping the scrape with curl"),
        Ok(out) => {
            assert!(out.status.success(), "curl failed: {out:?}");
            let text = String::from_utf8(out.stdout).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
            assert!(
                head.contains("Content-Type: text/plain; version=0.0.4"),
                "{head}"
            );
            let page = validate(body);
            assert_eq!(
                value(
                    &page,
                    "raftnode_commands_total{command=\"set\",outcome=\"ok\"}"
                ),
                30.0
            );
            promtool_check(body);
        }
    }
}

/// Prometheus's own linter on the page, where it is installed (Debian's
/// `prometheus` package has it); skipped with one line where it is not.
fn promtool_check(page: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool not found; skipping its check of the page");
        return;
    };
    let mut stdin = child.stdin.take().expect("promtool's stdin");
    stdin.write_all(page.as_bytes()).expect("write to promtool");
    drop(stdin);
    let out = child.wait_with_output().expect("promtool's verdict");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `raftnode cli --addr A --addr B status`: its exit status, standard
/// output and standard error.
fn status(addrs: &[String], extra: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("cli");
    for addr in addrs {
        cmd.args(["--addr", addr]);
    }
    let out = cmd
        .arg("status")
        .args(["--timeout-ms", "500"])
        .args(extra)
        .output()
        .expect("run raftnode cli status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The table's rows (without the header), each as its cells, by id.
fn rows(table: &str) -> BTreeMap<u64, Vec<String>> {
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("a header")
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "ID",
            "CLIENT ADDR",
            "ROLE",
            "TERM",
            "COMMIT",
            "APPLIED",
            "LAG",
            "REACHABLE"
        ]
    );
    lines
        .map(|line| {
            let cells: Vec<String> = line.split_whitespace().map(String::from).collect();
            assert_eq!(cells.len(), 8, "{line}");
            (cells[0].parse().expect("an id"), cells)
        })
        .collect()
}

#[test]
fn status_has_a_row_per_member_and_fails_without_a_leader() {
    let mut cluster = ProcCluster::start(3);
    let leader = cluster.wait_for_leader();
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    // Asked through a follower: the members come from its RAFT.NODES.
    let (code, out, err) = status(&[cluster.client_addr(followers[0])], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let table = rows(&out);
    assert_eq!(table.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    for (id, row) in &table {
        assert_eq!(row[1], cluster.client_addr(*id));
        assert_eq!(row[2], if *id == leader { "leader" } else { "follower" });
        assert_eq!(row[7], "yes");
        assert!(row[3].parse::<u64>().unwrap() >= 1, "{row:?}");
    }
    let (code, json, _) = status(&[cluster.client_addr(leader)], &["--json"]);
    assert_eq!(code, 0);
    assert!(
        json.starts_with(&format!("{{\"leader\":{leader},\"members\":[")),
        "{json}"
    );
    assert_eq!(json.matches("\"reachable\":true").count(), 3, "{json}");

    // A follower killed: its row says so; the leader is still known.
    cluster.kill(followers[0]);
    // The dead one named first: the next is asked instead.
    let seeds = [
        cluster.client_addr(followers[0]),
        cluster.client_addr(followers[1]),
    ];
    let (code, out, err) = status(&seeds, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let table = rows(&out);
    assert_eq!(table.len(), 3);
    assert_eq!(table[&followers[0]][7], "no");
    assert_eq!(table[&followers[0]][2], "-");
    assert_eq!(table[&leader][2], "leader");
    assert_eq!(table[&followers[1]][7], "yes");
    assert!(
        err.contains(&format!("node {} ({})", followers[0], seeds[0])),
        "{err}"
    );

    // Both followers killed: the leader loses its quorum and steps down
    // (check-quorum) within an election timeout; from then on, no leader.
    cluster.kill(followers[1]);
    let seeds = [cluster.client_addr(leader)];
    let (out, err) = wait_for(WAIT, "status to find no leader", || {
        let (code, out, err) = status(&seeds, &[]);
        (code != 0).then_some((out, err))
    });
    assert!(err.contains("no leader"), "{err}");
    let table = rows(&out);
    assert_eq!(table.len(), 3);
    assert_eq!(table[&leader][7], "yes");
    assert_ne!(table[&leader][2], "leader");
    assert_eq!(table[&followers[0]][7], "no");
    assert_eq!(table[&followers[1]][7], "no");
}
