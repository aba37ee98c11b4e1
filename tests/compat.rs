//! A data dir written by the release before the restructuring (commit
//! e931887, `tests/fixtures/datadir-format-1/node-1`: one node, id 1,
//! `--cluster-id fixture`) still opens, replays to the same state, and keeps
//! serving. Every test works on a copy; the checked-in files are never
//! opened for writing.

mod support;

use raftnode::kv::{Command, Kv, Outcome, Wire};
use raftnode::node::StateMachine;
use raftnode::raft::message::{HardState, Payload};
use raftnode::redis::resp::Reply;
use raftnode::storage::{DiskStore, LogStore, StorageError};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use support::process::{free_port, Resp, BIN};
use support::{wait_for, WAIT};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/datadir-format-1/node-1"
);
const CLUSTER: &str = "fixture";
const ENTRIES: usize = 114;
const BIN_VALUE: &[u8] = b"\x00\xff\r\nzero";

/// A copy of the fixture's data dir in a fresh temporary directory.
struct Copy {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

fn copy_fixture() -> Copy {
    support::init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node-1");
    fs::create_dir(&dir).unwrap();
    for (name, bytes) in files(Path::new(FIXTURE)) {
        fs::write(dir.join(name), bytes).unwrap();
    }
    Copy { _tmp: tmp, dir }
}

/// Every file in `dir`, by name, with its bytes (directories such as
/// `snapshots/` are left out).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_file()))
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, fs::read(e.path()).unwrap())
        })
        .collect()
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// The commands the fixture's clients sent, in log order from index 2, with
/// the replies the store must compute for them.
fn expected_commands() -> Vec<(Command, Outcome)> {
    let set = |k: &str, v: &[u8]| Command::Set {
        key: b(k),
        value: v.to_vec(),
    };
    let seq = |seq: u64| Command::Session {
        client: 42,
        seq,
        command: Box::new(Command::Incr { key: b("seqd") }),
    };
    let mut commands = vec![
        (set("ready", b"1"), Outcome::Done),
        (set("greeting", b"hello"), Outcome::Done),
        (set("bin", BIN_VALUE), Outcome::Done),
        (Command::Incr { key: b("counter") }, Outcome::Integer(1)),
        (Command::Incr { key: b("counter") }, Outcome::Integer(2)),
        (
            Command::Append {
                key: b("greeting"),
                value: b(" world"),
            },
            Outcome::Integer(11),
        ),
        (set("gone", b"x"), Outcome::Done),
        (
            Command::Delete {
                keys: vec![b("gone"), b("nothing")],
            },
            Outcome::Deleted(1),
        ),
        (set("swap", b"old"), Outcome::Done),
        (
            Command::Cas {
                key: b("swap"),
                expected: b("old"),
                new: b("new"),
            },
            Outcome::Swapped(true),
        ),
        (seq(1), Outcome::Integer(1)),
        // The retry is answered from the session, not applied again.
        (seq(1), Outcome::Integer(1)),
        (seq(2), Outcome::Integer(2)),
    ];
    for i in 0..100 {
        commands.push((
            set(&format!("k{i}"), format!("v{i}").as_bytes()),
            Outcome::Done,
        ));
    }
    commands
}

/// The state those commands leave, key by key.
fn expected_state() -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut state: BTreeMap<Vec<u8>, Vec<u8>> = [
        ("ready", b("1")),
        ("greeting", b("hello world")),
        ("bin", BIN_VALUE.to_vec()),
        ("counter", b("2")),
        ("swap", b("new")),
        ("seqd", b("2")),
    ]
    .into_iter()
    .map(|(k, v)| (b(k), v))
    .collect();
    for i in 0..100 {
        state.insert(b(&format!("k{i}")), b(&format!("v{i}")));
    }
    state
}

#[test]
fn the_old_data_dir_recovers_and_replays_to_the_same_state() {
    let copy = copy_fixture();
    let before = files(&copy.dir);
    let mut store = DiskStore::open(&copy.dir, 1, CLUSTER).expect("the old dir opens");
    let recovered = store.recover().unwrap();
    assert_eq!(
        recovered.hard_state,
        HardState {
            current_term: 1,
            voted_for: Some(1)
        }
    );
    let entries = recovered.entries;
    assert_eq!(entries.len(), ENTRIES);
    assert_eq!(store.last_index(), ENTRIES as u64);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.index, i as u64 + 1, "consecutive indexes");
        assert_eq!(entry.term, 1, "entry {}", entry.index);
    }
    assert_eq!(entries[0].payload, Payload::Noop, "the leader's no-op");

    let expected = expected_commands();
    assert_eq!(expected.len(), ENTRIES - 1);
    let mut kv = Kv::new();
    for (entry, (command, outcome)) in entries[1..].iter().zip(expected) {
        let Payload::Command(bytes) = &entry.payload else {
            panic!(
                "entry {} is not a command: {:?}",
                entry.index, entry.payload
            );
        };
        assert_eq!(
            Command::decode(bytes).unwrap(),
            command,
            "entry {}",
            entry.index
        );
        let reply = StateMachine::apply(&mut kv, entry.index, bytes);
        assert_eq!(
            Outcome::decode(&reply).unwrap(),
            outcome,
            "reply to entry {}",
            entry.index
        );
    }
    let state = expected_state();
    for (key, value) in &state {
        assert_eq!(
            kv.get(key),
            Some(value),
            "key {}",
            String::from_utf8_lossy(key)
        );
    }
    assert_eq!(kv.get(b"gone"), None);
    assert_eq!(kv.len(), state.len(), "no other keys");
    assert_eq!(kv.duplicates_suppressed(), 1);
    assert_eq!(kv.sessions(), 1);

    // The one write: the dir predates incarnations, so it gets one, in a
    // line added to meta after the old ones.
    let incarnation = store.incarnation();
    assert_ne!(incarnation, 0);
    drop(store);
    let mut expected = before;
    let meta = expected.get_mut("meta").unwrap();
    meta.extend_from_slice(format!("incarnation: {incarnation:016x}\n").as_bytes());
    assert_eq!(
        files(&copy.dir),
        expected,
        "opening and recovering wrote nothing but the incarnation"
    );
    let mut store = DiskStore::open(&copy.dir, 1, CLUSTER).expect("the dir opens again");
    assert_eq!(store.incarnation(), incarnation, "added once");
    assert_eq!(store.recover().unwrap().entries.len(), ENTRIES);
}

#[test]
fn a_wrong_node_id_or_cluster_is_refused_and_the_files_stay_byte_identical() {
    let copy = copy_fixture();
    let before = files(&copy.dir);
    assert_eq!(before, files(Path::new(FIXTURE)));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        ["LOCK", "hard_state", "log", "meta"]
    );

    match DiskStore::open(&copy.dir, 2, CLUSTER) {
        Err(StorageError::WrongNode {
            expected, found, ..
        }) => assert_eq!((expected, found), (2, 1)),
        Err(e) => panic!("node 2 refused for another reason: {e}"),
        Ok(_) => panic!("node 2 opened node 1's data dir"),
    }
    assert_eq!(files(&copy.dir), before, "after the wrong node id");

    match DiskStore::open(&copy.dir, 1, "raftnode") {
        Err(StorageError::WrongCluster {
            expected, found, ..
        }) => assert_eq!((expected.as_str(), found.as_str()), ("raftnode", CLUSTER)),
        Err(e) => panic!("another cluster refused for another reason: {e}"),
        Ok(_) => panic!("cluster raftnode opened cluster fixture's data dir"),
    }
    assert_eq!(files(&copy.dir), before, "after the wrong cluster id");

    // The binary refuses them too, with a non-zero status and a line that
    // names the problem, and leaves the files alone.
    for (id, cluster) in [("2", CLUSTER), ("1", "raftnode"), ("3", "other")] {
        let output = Process::new(BIN)
            .args(["run", "--id", id, "--data-dir"])
            .arg(&copy.dir)
            .args(["--raft-addr", "127.0.0.1:0", "--client-addr", "127.0.0.1:0"])
            .args(["--cluster-id", cluster, "--exit-on-stdin-eof"])
            .stdin(Stdio::null())
            .output()
            .expect("run raftnode");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "--id {id} --cluster-id {cluster} started: {stderr}"
        );
        let wanted = if cluster == CLUSTER {
            "belongs to node 1, not node"
        } else {
            "belongs to cluster \"fixture\", not cluster"
        };
        assert!(
            stderr.lines().count() == 1 && stderr.contains(wanted),
            "--id {id} --cluster-id {cluster}: {stderr}"
        );
        assert_eq!(
            files(&copy.dir),
            before,
            "after --id {id} --cluster-id {cluster}"
        );
    }
}

/// A `raftnode run` process on the fixture's copy. Killed when dropped,
/// whether the test passed or not.
struct FixtureNode {
    child: Option<Child>,
    client_port: u16,
    stderr_log: PathBuf,
}

impl FixtureNode {
    fn start(data_dir: &Path, stderr_log: &Path) -> FixtureNode {
        let client_port = free_port();
        let stderr = fs::File::options()
            .create(true)
            .append(true)
            .open(stderr_log)
            .unwrap();
        let child = Process::new(BIN)
            .args(["run", "--id", "1", "--data-dir"])
            .arg(data_dir)
            .args(["--raft-addr", "127.0.0.1:0"])
            .args(["--client-addr", &format!("127.0.0.1:{client_port}")])
            .args(["--cluster-id", CLUSTER, "--exit-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn raftnode");
        let mut node = FixtureNode {
            child: Some(child),
            client_port,
            stderr_log: stderr_log.to_path_buf(),
        };
        wait_for(WAIT, "the node to serve clients", || {
            node.check_running();
            let mut client = Resp::connect(client_port).ok()?;
            (client.call(&["PING"]) == Reply::Simple("PONG".into())).then_some(())
        });
        node
    }

    /// Fails the test, with the node's log, if the process has exited.
    fn check_running(&mut self) {
        let child = self.child.as_mut().expect("the node was started");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the node exited with {status}:\n{}", self.log());
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    fn client(&self) -> Resp {
        Resp::connect(self.client_port).expect("connect to the node")
    }

    /// `GET key` on a fresh connection, or `None` if the node cannot answer
    /// it yet (no leader, connection refused).
    fn try_get(&mut self, key: &str) -> Option<Reply> {
        self.check_running();
        let mut client = Resp::connect(self.client_port).ok()?;
        client.try_send(&["GET", key]).ok()?;
        match client.try_read().ok()? {
            Reply::Error(e) if e.starts_with("TRYAGAIN") || e.starts_with("MOVED") => None,
            reply => Some(reply),
        }
    }

    /// Waits until the node leads and has re-applied the log: a linearizable
    /// `GET greeting` then answers what the old release left there.
    fn wait_replayed(&mut self) {
        let reply = wait_for(WAIT, "GET greeting to be answered", || {
            self.try_get("greeting")
        });
        assert_eq!(reply, Reply::Bulk(b("hello world")), "{}", self.log());
    }

    fn info(&self) -> BTreeMap<String, String> {
        self.client().info()
    }

    /// Closes the node's standard input, so that it shuts down cleanly, and
    /// waits for it to exit.
    fn stop(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("the node is running");
        drop(child.stdin.take());
        let status = wait_for(WAIT, "the node to exit", || child.try_wait().unwrap());
        self.child = None;
        status
    }
}

impl Drop for FixtureNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn get(client: &mut Resp, key: &str) -> Reply {
    client.call(&["GET", key])
}

fn bulk(value: &[u8]) -> Reply {
    Reply::Bulk(value.to_vec())
}

#[test]
fn the_binary_serves_the_old_data_dir_and_keeps_new_writes_across_a_restart() {
    let copy = copy_fixture();
    let log = copy.dir.with_file_name("node-1.log");

    let mut node = FixtureNode::start(&copy.dir, &log);
    node.wait_replayed();
    let mut c = node.client();
    assert_eq!(get(&mut c, "bin"), bulk(BIN_VALUE));
    assert_eq!(get(&mut c, "counter"), bulk(b"2"));
    assert_eq!(get(&mut c, "seqd"), bulk(b"2"));
    assert_eq!(get(&mut c, "swap"), bulk(b"new"));
    assert_eq!(get(&mut c, "ready"), bulk(b"1"));
    assert_eq!(get(&mut c, "k0"), bulk(b"v0"));
    assert_eq!(get(&mut c, "k99"), bulk(b"v99"));
    assert_eq!(get(&mut c, "gone"), Reply::NullBulk);
    let info = node.info();
    assert_eq!(info["role"], "leader");
    assert_eq!(info["cluster_id"], CLUSTER);
    assert!(info["term"].parse::<u64>().unwrap() > 1, "{info:?}");
    assert!(info["last_applied"].parse::<u64>().unwrap() > ENTRIES as u64);
    assert_eq!(info["duplicate_writes_suppressed"], "1");

    // The session of client 42 came back with the log: a retry of its last
    // write is answered from it, an older one is refused.
    assert_eq!(c.call(&["CLIENT", "ID", "42"]), Reply::Simple("OK".into()));
    assert_eq!(c.call(&["SEQ", "2", "INCR", "seqd"]), Reply::Integer(2));
    assert!(matches!(
        c.call(&["SEQ", "1", "INCR", "seqd"]),
        Reply::Error(_)
    ));
    assert_eq!(get(&mut c, "seqd"), bulk(b"2"));

    assert_eq!(
        c.call(&["SET", "after", "restructure"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(get(&mut c, "after"), bulk(b"restructure"));
    drop(c);
    let status = node.stop();
    assert!(status.success(), "exit {status}:\n{}", node.log());
    drop(node);

    let mut node = FixtureNode::start(&copy.dir, &log);
    node.wait_replayed();
    let mut c = node.client();
    assert_eq!(get(&mut c, "after"), bulk(b"restructure"));
    assert_eq!(get(&mut c, "bin"), bulk(BIN_VALUE));
    assert_eq!(get(&mut c, "seqd"), bulk(b"2"));
    assert_eq!(get(&mut c, "k42"), bulk(b"v42"));
    assert_eq!(get(&mut c, "gone"), Reply::NullBulk);
    // Kept as it was, but for the incarnation the first start added.
    let meta = fs::read_to_string(copy.dir.join("meta")).unwrap();
    let old_meta = fs::read_to_string(Path::new(FIXTURE).join("meta")).unwrap();
    let added = meta
        .strip_prefix(&old_meta)
        .unwrap_or_else(|| panic!("{meta}"));
    assert!(
        added.starts_with("incarnation: ") && added.len() == "incarnation: ".len() + 17,
        "{meta}"
    );
    let log_now = fs::read(copy.dir.join("log")).unwrap();
    let log_then = fs::read(Path::new(FIXTURE).join("log")).unwrap();
    assert_eq!(
        log_now, log_then,
        "the old records are kept as they were, and the old file is never written again"
    );
    let segments: Vec<String> = files(&copy.dir)
        .into_keys()
        .filter(|name| name.starts_with("log-"))
        .collect();
    assert_eq!(
        segments.first().map(String::as_str),
        Some("log-00000000000000000115"),
        "new entries go into segments that continue the old log: {segments:?}"
    );
}
