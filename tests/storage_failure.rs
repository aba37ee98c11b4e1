//! Crash-stop on storage failure (issue 12): a node whose write or fsync
//! fails stops taking part — its API returns the storage error, it stops
//! answering its peers, and it never touches its storage again (a failed
//! fsync is never retried) — while the other nodes elect a leader if they
//! need one and go on, losing no acknowledged write. Restarted on the same
//! data dir with the real store, the failed node recovers (repairing a torn
//! tail) and catches up.
//!
//! In-process clusters run every node on [`FaultyStore`], a [`LogStore`]
//! wrapper around the real [`DiskStore`] into which one fault at a time is
//! injected: a failed write (EIO), a failed fsync (EIO), a full disk
//! (ENOSPC), a short write (part of a batch reaches the file, then ENOSPC)
//! and a failed hard-state save. The last test runs real `raftnode`
//! processes with one node's data dir on a 2 MiB tmpfs that fills up: that
//! process exits with status 74 and one line naming the file; it is skipped,
//! with one line, where mounting is not permitted.

mod support;

use raftnode::kv::{KeyValue, Kv, KvNode};
use raftnode::raft::membership::Configuration;
use raftnode::raft::message::{Entry, HardState, Index, NodeId};
use raftnode::storage::{DiskStore, LogStore, Recovered, StorageError};
use raftnode::{Config, Error, Node};
use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::process::{ProcCluster, Resp};
use support::{agreed_leader, wait_for, LiveNodes, Writers, WAIT};

// ---------------------------------------------------------------------------
// The fault-injecting store

/// A fault to inject into the next operation it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The next append fails with EIO, writing nothing.
    Write,
    /// The next sync fails with EIO (what was appended stays unsynced).
    Fsync,
    /// The next append fails with ENOSPC, writing nothing.
    DiskFull,
    /// The next append writes 13 bytes of its batch (a record header and one
    /// byte of payload), then fails with ENOSPC: a torn record.
    ShortWrite,
    /// The next hard-state save fails with EIO.
    HardState,
    /// The next sync with no append or truncation before it fails with EIO:
    /// the writer's idle sync of a saved commit index.
    IdleFsync,
}

/// What a test shares with a node's [`FaultyStore`].
#[derive(Default)]
struct Injection {
    armed: Mutex<Option<Fault>>,
    /// The fault that fired, and the file it names.
    fired: Mutex<Option<(Fault, PathBuf)>>,
    /// Operations the node asked of the store after the fault fired: it
    /// must never ask again (fail-stop; a failed fsync is never retried).
    calls_after: AtomicUsize,
    /// For a short write: the file that was torn and where its intact part
    /// ends.
    torn: Mutex<Option<(PathBuf, u64)>>,
}

impl Injection {
    fn arm(&self, fault: Fault) {
        *self.armed.lock().unwrap() = Some(fault);
    }

    fn fired(&self) -> Option<(Fault, PathBuf)> {
        self.fired.lock().unwrap().clone()
    }
}

/// [`DiskStore`] with faults injected on demand (see [`Fault`]).
struct FaultyStore {
    inner: DiskStore,
    injection: Arc<Injection>,
    /// An append or truncation since the last sync.
    log_changed: bool,
}

fn os_error(path: PathBuf, op: &'static str, errno: i32) -> StorageError {
    StorageError::Io {
        path,
        op,
        source: io::Error::from_raw_os_error(errno),
    }
}

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

impl FaultyStore {
    /// Counts a call made after the fault fired; takes the armed fault if
    /// it is one of `kinds`.
    fn take(&self, kinds: &[Fault]) -> Option<Fault> {
        if self.injection.fired.lock().unwrap().is_some() {
            self.injection.calls_after.fetch_add(1, Ordering::SeqCst);
        }
        let mut armed = self.injection.armed.lock().unwrap();
        let fault = (*armed).filter(|f| kinds.contains(f))?;
        *armed = None;
        Some(fault)
    }

    fn last_segment(&self) -> PathBuf {
        self.inner
            .segment_paths()
            .last()
            .cloned()
            .expect("a log file")
    }

    fn fire(&self, fault: Fault, error: StorageError) -> StorageError {
        let path = match &error {
            StorageError::Io { path, .. } => path.clone(),
            other => panic!("injected a non-I/O error: {other}"),
        };
        *self.injection.fired.lock().unwrap() = Some((fault, path));
        error
    }
}

impl LogStore for FaultyStore {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        self.take(&[]);
        self.inner.recover()
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        if let Some(fault) = self.take(&[Fault::HardState]) {
            let tmp = self.inner.dir().join("hard_state.tmp");
            return Err(self.fire(fault, os_error(tmp, "fsync", EIO)));
        }
        self.inner.save_hard_state(hard_state)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.log_changed = true;
        match self.take(&[Fault::Write, Fault::DiskFull, Fault::ShortWrite]) {
            None => self.inner.append(entries),
            Some(fault @ Fault::ShortWrite) => {
                let before = self.inner.segment_paths();
                let (old_last, old_len) = match before.last() {
                    Some(p) => (p.clone(), std::fs::metadata(p).map(|m| m.len()).unwrap()),
                    None => unreachable!("a data dir always has a log file"),
                };
                self.inner.append(entries)?;
                let path = self.last_segment();
                // Where this batch's first record began: the end of the old
                // last file, or just after the magic of a new one.
                let start = if path == old_last { old_len } else { 8 };
                let cut = start + 13;
                let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                assert!(
                    file.metadata().unwrap().len() > cut,
                    "a batch longer than 13 bytes"
                );
                file.set_len(cut).unwrap();
                *self.injection.torn.lock().unwrap() = Some((path.clone(), start));
                Err(self.fire(fault, os_error(path, "write", ENOSPC)))
            }
            Some(fault) => {
                let errno = if fault == Fault::DiskFull {
                    ENOSPC
                } else {
                    EIO
                };
                let path = self.last_segment();
                Err(self.fire(fault, os_error(path, "write", errno)))
            }
        }
    }

    fn truncate_after(&mut self, last_kept: Index) -> Result<(), StorageError> {
        self.take(&[]);
        self.log_changed = true;
        self.inner.truncate_after(last_kept)
    }

    fn save_commit(&mut self, commit_index: Index) -> Result<(), StorageError> {
        self.take(&[]);
        self.inner.save_commit(commit_index)
    }

    fn compact(&mut self, through: Index) -> Result<(), StorageError> {
        self.take(&[]);
        self.inner.compact(through)
    }

    fn reset(&mut self) -> Result<(), StorageError> {
        self.take(&[]);
        self.inner.reset()
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let idle = !std::mem::take(&mut self.log_changed);
        let kinds: &[Fault] = match idle {
            true => &[Fault::Fsync, Fault::IdleFsync],
            false => &[Fault::Fsync],
        };
        if let Some(fault) = self.take(kinds) {
            let path = self.last_segment();
            return Err(self.fire(fault, os_error(path, "fsync", EIO)));
        }
        self.inner.sync()
    }

    fn last_index(&self) -> Index {
        self.inner.last_index()
    }

    fn incarnation(&self) -> u64 {
        self.inner.incarnation()
    }

    fn save_bootstrap(&mut self, config: &Configuration) -> Result<(), StorageError> {
        self.take(&[]);
        self.inner.save_bootstrap(config)
    }

    fn save_removed(&mut self, index: Index) -> Result<(), StorageError> {
        self.take(&[]);
        self.inner.save_removed(index)
    }
}

// ---------------------------------------------------------------------------
// An in-process cluster on faulty stores

/// Nodes 1..=n on loopback, each on a [`FaultyStore`] over its own data
/// dir. Every running node is halted when it is dropped, pass or fail.
struct FaultCluster {
    dir: tempfile::TempDir,
    addrs: BTreeMap<NodeId, SocketAddr>,
    live: LiveNodes,
    injections: BTreeMap<NodeId, Arc<Injection>>,
    /// A test's changes to every node's configuration.
    tweak: fn(&mut Config),
}

impl FaultCluster {
    fn new(n: u64) -> FaultCluster {
        FaultCluster::with(n, |_| {}, |_, _| {})
    }

    /// Like [`FaultCluster::new`], with `tweak` applied to every node's
    /// configuration and `prepare` called with each node's data dir before
    /// the node starts.
    fn with(
        n: u64,
        tweak: fn(&mut Config),
        mut prepare: impl FnMut(NodeId, &Path),
    ) -> FaultCluster {
        support::init_logging();
        let listeners: BTreeMap<NodeId, TcpListener> = (1..=n)
            .map(|id| (id, TcpListener::bind("127.0.0.1:0").expect("bind port 0")))
            .collect();
        let mut cluster = FaultCluster {
            dir: tempfile::tempdir().unwrap(),
            addrs: listeners
                .iter()
                .map(|(&id, l)| (id, l.local_addr().unwrap()))
                .collect(),
            live: LiveNodes::default(),
            injections: BTreeMap::new(),
            tweak,
        };
        for (id, listener) in listeners {
            let injection = Arc::new(Injection::default());
            let config = cluster.config(id);
            prepare(id, &config.data_dir);
            let inner = DiskStore::open(&config.data_dir, id, &config.cluster_id).unwrap();
            let store = FaultyStore {
                inner,
                injection: injection.clone(),
                log_changed: false,
            };
            let node = Node::start_with(config, listener, store, Kv::new()).unwrap();
            cluster.injections.insert(id, injection);
            cluster.live.lock().insert(id, Arc::new(node));
        }
        cluster
    }

    fn data_dir(&self, id: NodeId) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    fn config(&self, id: NodeId) -> Config {
        let mut config = Config::new(id, self.data_dir(id));
        config.cluster_id = "test".into();
        config.raft_addr = self.addrs[&id].to_string();
        config.peers = (self.addrs.iter())
            .filter(|(&peer, _)| peer != id)
            .map(|(&peer, addr)| (peer, addr.to_string()))
            .collect();
        config.proposal_timeout = Duration::from_secs(3);
        (self.tweak)(&mut config);
        config
    }

    fn node(&self, id: NodeId) -> Arc<KvNode> {
        self.live.lock()[&id].clone()
    }

    /// Waits until the running nodes `ids` agree on a leader among them.
    fn wait_for_leader_among(&self, ids: &[NodeId]) -> NodeId {
        wait_for(WAIT, &format!("a leader among {ids:?}"), || {
            let statuses: Vec<_> = ids.iter().map(|&id| self.node(id).status()).collect();
            agreed_leader(&statuses).filter(|l| ids.contains(l))
        })
    }

    /// Takes node `id` out of the running nodes and halts it.
    fn halt(&self, id: NodeId) {
        let node = self.live.lock().remove(&id);
        if let Some(node) = node {
            node.halt();
        }
    }

    /// Starts node `id` again on its data dir, with the real store.
    fn restart_real(&self, id: NodeId) {
        let addr = self.addrs[&id];
        let listener = wait_for(WAIT, "the node's port to be free again", || {
            TcpListener::bind(addr).ok()
        });
        let node = Node::start_with_listener(self.config(id), listener, Kv::new()).unwrap();
        self.live.lock().insert(id, Arc::new(node));
    }
}

impl Drop for FaultCluster {
    fn drop(&mut self) {
        let nodes: Vec<_> = std::mem::take(&mut *self.live.lock())
            .into_values()
            .collect();
        for node in nodes {
            node.halt();
        }
    }
}

/// Which node to fail.
#[derive(Debug, Clone, Copy)]
enum Victim {
    Leader,
    Follower,
}

/// The scenario every fault goes through: writers write through whoever
/// leads; `fault` is injected into the victim; it must stop — its API
/// answers with the storage error naming the file, its peer port closes,
/// it never calls its store again — while the others (electing a new
/// leader if it led) keep acknowledging writes; after it is restarted with
/// the real store on the same dir it catches up, and no acknowledged write
/// is lost anywhere.
fn a_failed_node_stops_and_the_others_go_on(fault: Fault, victim: Victim) {
    let cluster = FaultCluster::new(3);
    let all = [1, 2, 3];
    let leader = cluster.wait_for_leader_among(&all);
    let writers = Writers::start(cluster.live.clone(), 3);
    writers.wait_for_more(50);
    let id = match victim {
        Victim::Leader => leader,
        Victim::Follower => *all.iter().find(|&&i| i != leader).unwrap(),
    };
    let others: Vec<NodeId> = all.iter().copied().filter(|&i| i != id).collect();
    let node = cluster.node(id);
    cluster.injections[&id].arm(fault);
    if fault == Fault::HardState {
        // Hard state changes with the term: move leadership to the other
        // follower, whose election reaches the victim with a new term.
        let target = *others.iter().find(|&&i| i != leader).unwrap();
        let _ = cluster.node(leader).transfer_leadership(Some(target));
    }

    // The victim stops.
    let failure = node.wait_failed(WAIT).expect("the node's storage to fail");
    let (fired, path) = cluster.injections[&id].fired().expect("the fault fired");
    assert_eq!(fired, fault);
    let text = failure.to_string();
    assert!(
        text.contains(&path.display().to_string()),
        "the error names {}: {text}",
        path.display()
    );
    match node.set("after", "failure") {
        Err(Error::Storage(e)) => assert_eq!(e.to_string(), text),
        other => panic!("a write on the failed node answered {other:?}"),
    }
    match node.read(b"after") {
        Err(Error::Storage(_)) => {}
        other => panic!("a read on the failed node answered {other:?}"),
    }
    // Its peer port closes (at the latest, at the next connection attempt).
    let raft_addr = cluster.addrs[&id];
    wait_for(WAIT, "the failed node's peer port to close", || {
        TcpStream::connect_timeout(&raft_addr, Duration::from_secs(1))
            .is_err()
            .then_some(())
    });

    // The others go on: a leader among them, more writes acknowledged.
    let new_leader = cluster.wait_for_leader_among(&others);
    if matches!(victim, Victim::Leader) {
        assert_ne!(new_leader, id);
    }
    writers.wait_for_more(100);

    cluster.halt(id);
    assert_eq!(
        cluster.injections[&id].calls_after.load(Ordering::SeqCst),
        0,
        "the failed node used its store again after the {fault:?} failure"
    );

    // A short write left a torn record: the real store repairs it on open,
    // cutting the file back to the end of the last whole record.
    let torn = cluster.injections[&id].torn.lock().unwrap().clone();
    if let Some((path, intact)) = torn {
        assert_eq!(std::fs::metadata(&path).unwrap().len(), intact + 13);
        let store = DiskStore::open(&cluster.data_dir(id), id, "test").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), intact);
        drop(store);
    }

    // Restarted with the real store on the same dir, it catches up.
    cluster.restart_real(id);
    writers.wait_for_more(50);
    let log = writers.stop();
    for unexpected in &log.unexpected {
        assert!(
            unexpected.contains(&format!("on node {id}: Storage(")),
            "a write failed other than on the failed node: {unexpected}"
        );
    }
    check_acknowledged(&cluster, &all, &log.acked);
}

/// Every acknowledged write is read linearizably on the leader and applied
/// on every one of `ids`.
fn check_acknowledged(cluster: &FaultCluster, ids: &[NodeId], acked: &BTreeMap<String, String>) {
    assert!(!acked.is_empty());
    let leader = cluster.node(cluster.wait_for_leader_among(ids));
    let (last_key, last_value) = acked.iter().next_back().unwrap();
    let read = wait_for(WAIT, "a linearizable read", || {
        leader.read(last_key.as_bytes()).ok()
    });
    assert_eq!(read.as_deref(), Some(last_value.as_bytes()));
    for &id in ids {
        support::wait_applied(&cluster.node(id), acked.iter());
    }
}

#[test]
fn a_leader_whose_log_write_fails_stops_and_a_new_leader_takes_over() {
    a_failed_node_stops_and_the_others_go_on(Fault::Write, Victim::Leader);
}

#[test]
fn a_leader_whose_fsync_fails_stops_and_never_retries_it() {
    a_failed_node_stops_and_the_others_go_on(Fault::Fsync, Victim::Leader);
}

#[test]
fn a_follower_whose_disk_is_full_stops_and_the_others_go_on() {
    a_failed_node_stops_and_the_others_go_on(Fault::DiskFull, Victim::Follower);
}

#[test]
fn a_short_write_stops_the_leader_and_the_restart_repairs_the_torn_tail() {
    a_failed_node_stops_and_the_others_go_on(Fault::ShortWrite, Victim::Leader);
}

#[test]
fn a_follower_whose_hard_state_save_fails_stops() {
    a_failed_node_stops_and_the_others_go_on(Fault::HardState, Victim::Follower);
}

/// The writer syncs a saved commit index by itself once idle for a moment
/// (so a restart re-applies everything committed without a leader); that
/// sync failing stops the node too.
#[test]
fn a_follower_whose_idle_commit_sync_fails_stops() {
    let cluster = FaultCluster::new(3);
    let all = [1, 2, 3];
    let leader = cluster.wait_for_leader_among(&all);
    let id = *all.iter().find(|&&i| i != leader).unwrap();
    let mut acked = BTreeMap::new();
    let write = |acked: &mut BTreeMap<String, String>, key: String| {
        wait_for(WAIT, &format!("the write {key}"), || {
            cluster.node(leader).set(key.clone(), "v").ok()
        });
        acked.insert(key, "v".to_string());
    };
    write(&mut acked, "first".into());
    check_acknowledged(&cluster, &all, &acked);
    // The next write reaches the follower as an append (synced with it),
    // then its commit index in a heartbeat: saved, and synced once idle.
    cluster.injections[&id].arm(Fault::IdleFsync);
    write(&mut acked, "second".into());
    let node = cluster.node(id);
    let failure = node.wait_failed(WAIT).expect("the idle sync to fail");
    let (fired, path) = cluster.injections[&id].fired().unwrap();
    assert_eq!(fired, Fault::IdleFsync);
    assert!(failure.to_string().contains(&path.display().to_string()));
    // The leader goes on with the other follower.
    for i in 0..10 {
        write(&mut acked, format!("after{i}"));
    }
    cluster.halt(id);
    assert_eq!(
        cluster.injections[&id].calls_after.load(Ordering::SeqCst),
        0
    );
    cluster.restart_real(id);
    check_acknowledged(&cluster, &all, &acked);
}

// ---------------------------------------------------------------------------
// A real process on a full tmpfs

/// A tmpfs mounted on a dir, unmounted when dropped (lazily, so a process
/// that still has a file open cannot keep it mounted).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`2m`) on `dir`; `None` where this process
    /// may not mount.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "remount {} with size {size}",
            self.0.display()
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Sends SETs of 4 KiB values to `port` until one is refused, the
/// connection drops, `limit` were sent or `done` says so (asked every 20
/// writes); returns the keys acknowledged.
fn fill(port: u16, prefix: &str, limit: usize, mut done: impl FnMut() -> bool) -> Vec<String> {
    let mut client = Resp::connect(port).expect("connect");
    let value = "x".repeat(4096);
    let mut acked = Vec::new();
    for i in 0..limit {
        if i % 20 == 0 && done() {
            break;
        }
        let key = format!("{prefix}{i}");
        if client.try_send(&["SET", &key, &value]).is_err() {
            break;
        }
        match client.try_read() {
            Ok(reply) if reply == support::process::ok() => acked.push(key),
            _ => break,
        }
    }
    acked
}

#[test]
fn a_process_whose_disk_fills_up_exits_74_naming_the_file_and_recovers_after_a_restart() {
    let mut cluster = ProcCluster::start_some(3, &[]);
    // Node 2's data dir is the mount point itself.
    let Some(tmpfs) = Tmpfs::mount(&cluster.data_dir(2), "2m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    };
    let args = |extra: &[&str]| -> Vec<String> {
        (["--snapshot-entries", "0"].iter().chain(extra))
            .map(|a| a.to_string())
            .collect()
    };
    // Node 2 most likely leads (it starts first, and the others wait longer
    // before campaigning), so that the disk that fills is the leader's and
    // the others must take over; the test holds either way.
    cluster.extra_args = args(&[]);
    cluster.start_node(2);
    cluster.extra_args = args(&["--election-timeout-ms", "1000-1500"]);
    cluster.start_node(1);
    cluster.start_node(3);
    cluster.extra_args = args(&[]);
    let leader = cluster.wait_for_leader();
    let port = cluster.nodes[&leader].client_port;
    let exited = std::cell::Cell::new(false);
    let mut acked = fill(port, "k", 5_000, || {
        exited.set(exited.get() || cluster_exited(&mut cluster, 2));
        exited.get()
    });
    assert!(
        !acked.is_empty(),
        "no write was acknowledged before the disk filled"
    );

    // Node 2 ran out of space (as leader or as follower) and exits.
    let status = match cluster.exited(2) {
        Some(status) => status,
        None => cluster.wait_exit(2, WAIT),
    };
    assert_eq!(status.code(), Some(74), "exit status after a full disk");
    let log = cluster.log(2);
    let lines: Vec<&str> = (log.lines())
        .filter(|l| l.starts_with("raftnode: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line:\n{log}");
    let line = lines[0];
    assert!(
        line.starts_with("raftnode: error: node 2: storage failed: cannot "),
        "{line}"
    );
    let dir = cluster.data_dir(2).display().to_string();
    assert!(line.contains(&dir), "{line}");
    assert!(line.contains("No space left on device"), "{line}");
    assert!(
        line.ends_with("it recovers from what is on disk)"),
        "{line}"
    );
    assert_eq!(
        log.lines().last(),
        Some(line),
        "the error line is the last:\n{log}"
    );

    // The others go on.
    let leader = cluster.wait_for_leader_among(&[1, 3]);
    let after = fill(cluster.nodes[&leader].client_port, "after", 20, || false);
    assert_eq!(after.len(), 20, "writes after node 2 stopped");
    acked.extend(after);

    // With room again, node 2 restarts, recovers and catches up.
    tmpfs.resize("64m");
    cluster.start_node(2);
    wait_for(WAIT, "node 2 to catch up", || {
        let applied = cluster.info(leader)["last_applied"].clone();
        (cluster.info(2)["last_applied"] == applied).then_some(())
    });
    let mut client = cluster.client(leader);
    let value = support::process::bulk(&"x".repeat(4096));
    for key in [&acked[0], acked.last().unwrap()] {
        assert_eq!(client.call(&["GET", key]), value, "{key}");
    }
    wait_for(WAIT, "the same DEBUG DIGEST on every node", || {
        let digests: Vec<_> = [1, 2, 3]
            .iter()
            .map(|&id| cluster.client(id).call(&["DEBUG", "DIGEST"]))
            .collect();
        digests.windows(2).all(|w| w[0] == w[1]).then_some(())
    });
    // The processes go before the mount.
    drop(cluster);
    drop(tmpfs);
}

/// A snapshot that cannot be written because its disk is full stops the
/// node like any storage failure (the log is on another disk here, so only
/// the snapshot's write fails); restarted with room, the node deletes the
/// half-written file and catches up.
#[test]
fn a_node_whose_snapshot_write_fails_stops_and_recovers_after_a_restart() {
    let mut mounts: Vec<Tmpfs> = Vec::new();
    let mut unmountable = false;
    let cluster = FaultCluster::with(
        3,
        |config| {
            config.snapshot_entries = 40;
            config.snapshot_keep = 10;
        },
        |id, dir| {
            // Node 3's snapshots go to a 256 KiB tmpfs: room for the first
            // one, not for the first two.
            if id == 3 {
                match Tmpfs::mount(&dir.join("snapshots"), "256k") {
                    Some(tmpfs) => mounts.push(tmpfs),
                    None => unmountable = true,
                }
            }
        },
    );
    if unmountable {
        eprintln!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    }
    let node = cluster.node(3);
    let value = "s".repeat(4096);
    let mut acked = BTreeMap::new();
    // Writes of 4 KiB until node 3 fails (as leader or follower), then on.
    for i in 0..400 {
        if i > 100 && node.failure().is_some() {
            break;
        }
        let key = format!("s{i}");
        wait_for(WAIT, &format!("the write {key}"), || {
            let leader = support::leader_of(&cluster.live)?;
            leader.set(key.clone(), value.clone()).ok()
        });
        acked.insert(key, value.clone());
    }
    let failure = node.wait_failed(WAIT).expect("node 3's snapshot to fail");
    let text = failure.to_string();
    let snapshots = cluster.data_dir(3).join("snapshots");
    assert!(
        text.contains(&format!("{}/snapshot-", snapshots.display())),
        "{text}"
    );
    assert!(text.contains(".tmp: No space left on device"), "{text}");
    assert!(node.snapshot_status().failed >= 1);
    let leader = cluster.wait_for_leader_among(&[1, 2]);
    for i in 0..20 {
        let key = format!("after{i}");
        wait_for(WAIT, &format!("the write {key}"), || {
            cluster.node(leader).set(key.clone(), "v").ok()
        });
        acked.insert(key, "v".to_string());
    }
    cluster.halt(3);
    mounts[0].resize("64m");
    cluster.restart_real(3);
    check_acknowledged(&cluster, &[1, 2, 3], &acked);
    let leftovers: Vec<_> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(cluster);
    drop(mounts);
}

fn cluster_exited(cluster: &mut ProcCluster, id: NodeId) -> bool {
    cluster.exited(id).is_some()
}
