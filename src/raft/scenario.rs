//! Scenario tests of the Raft core, written as golden scripts.
//!
//! Each file in `src/raft/testscripts/` is one test (named after the file). A
//! script is a list of commands, each followed by `---` and the output it
//! produced: the trace of every message delivered, every role and term change,
//! every entry applied and every read answered. The test fails when the output
//! differs from what is written in the file, or when a cluster invariant
//! breaks. After a deliberate change, regenerate every expected output with
//!
//! ```sh
//! UPDATE_GOLDENFILES=1 cargo test --release --lib raft::scenario
//! ```
//!
//! and read the diff: an expected output is only worth something once a person
//! has checked that it is right.
//!
//! # The simulated cluster
//!
//! A [`Cluster`] holds one [`RaftCore`] per node and plays the part of the
//! node's threads, deterministically (no clock, no threads, no randomness but
//! the cores' seeded election timeouts):
//!
//! * **Time** passes only when a script ticks a node (`tick`, `campaign`,
//!   `heartbeat`).
//! * **Storage.** What a core asks to write (`Ready::hard_state`,
//!   `truncate_after`, `entries`) is queued as *unsynced*, together with the
//!   Ready's messages, which must not leave before that write is durable. A
//!   healthy disk completes the write at once: it is copied to the node's
//!   [`Disk`], the messages are sent, and the core is told with `persisted`.
//!   A `stall`ed disk completes nothing until `unstall`, so unsynced writes
//!   (and the messages waiting on them) pile up. A `crash` loses whatever is
//!   still unsynced; a `restart` builds a new core from the disk alone, so its
//!   commit index starts at 0 and its state machine is empty, as in the real
//!   node.
//! * **Network.** Every directed link has a FIFO queue. A `deliver` round steps
//!   every message queued at its start into its target, in the order they were
//!   sent; replies go out in a later round. Cutting a link (`cut`,
//!   `partition`) loses what is queued on it and whatever is sent on it until
//!   `heal`; nothing is sent to a crashed node either.
//! * **Replication threads.** When a Ready names peers in `replicate`, the
//!   harness calls `append_for` for each until it returns `None` — at once, as
//!   the leader's peer threads do, without waiting for the leader's own disk.
//! * **State machine.** Committed entries are applied as soon as a Ready hands
//!   them out; confirmed reads are answered at the same moment.
//!
//! # Invariants
//!
//! After every delivered message and every command, [`Cluster::check`]
//! verifies Raft's safety properties (Figure 3 of the paper) and the harness's
//! own bookkeeping: one leader per term, committed entries never change and are
//! durable on a majority, Log Matching, Leader Completeness, State Machine
//! Safety, the durable log agrees with what the core believes is durable, and
//! every read is served at an index covering everything committed before it
//! began. The first violation fails the test.
//!
//! # Commands
//!
//! Nodes are named by number. `[...]` is optional; a missing node list means
//! every node (every running node, for the commands that tick).
//!
//! * `cluster nodes=N [pre_vote=BOOL] [check_quorum=BOOL] [lease=BOOL]
//!   [heartbeat=TICKS] [election=MIN-MAX] [max_append=BYTES]`: a fresh cluster
//!   of nodes 1..=N. Pre-vote and check-quorum are off unless asked for (the
//!   paper's algorithm); timings default to the core's (heartbeat 5, election
//!   15-30 ticks).
//! * `restore N term=T [vote=V] log="T1 T2 ..."`: replaces node N's disk with
//!   the given hard state and a log with those terms, and restarts it. For
//!   setting up a figure's logs before anything is committed.
//! * `campaign [N...]`: ticks the nodes (default: every live node) together
//!   until one of them starts an election or a pre-vote.
//! * `tick [N...] [count=K]`: ticks the nodes K times (default once).
//! * `heartbeat N`: ticks leader N until it sends heartbeats.
//! * `propose N DATA`: proposes a command to N.
//! * `read N [count=K]`: starts K linearizable reads on N together.
//! * `deliver [from=N] [to=N]`: delivers one round of queued messages (all, or
//!   those on the matching links).
//! * `stabilize`: repeats `deliver` until no message is queued.
//! * `stall N...`, `unstall N...`: stop a node's disk from completing writes,
//!   and let it complete them.
//! * `drop [from=N] [to=N]`: discards queued messages.
//! * `cut A B [oneway=true]`, `partition N...` (the nodes named against the
//!   rest), `heal`: cut and restore links.
//! * `crash N`, `restart N`: lose a node's process, and bring it back from its
//!   disk.
//! * `unreachable N PEER`: N's replication thread for PEER lost its connection.
//! * `status [N...]`, `log [N...]`, `progress N`: print state.
//!
//! # Trace format
//!
//! Entries are `index@term`. Every delivered message is printed as it is
//! stepped into its target, followed by what that caused:
//!
//! ```text
//! n1 → n2 RequestVote term=2 last=3@1            (PreVote alike)
//! n2 → n1 RequestVoteResponse term=2 granted     (or rejected; PreVoteResponse alike)
//! n1 → n2 AppendEntries term=2 prev=3@1 entries=[4@2 5@2] commit=3 round=1
//! n2 → n1 AppendEntriesResponse term=2 success match=5 round=1
//! n2 → n1 AppendEntriesResponse term=2 reject at=5 log-too-short last=3 round=1
//! n2 → n1 AppendEntriesResponse term=2 reject at=5 conflict term=1 first=3 round=1
//! n1: follower → candidate, term 2               (role change)
//! n2: follower, term 1 → 2                       (term change alone)
//! n3: pre-candidate again, term 1                (a new election attempt)
//! n2 applied 4@2 "foo", 5@2 noop
//! n1 proposed 6@2 "bar"
//! n1 read #1 starts a new round                  (joins the pending round, answered on the lease)
//! n1 read #1 served at index 5                   (or: n1 read #1 aborted)
//! dropped n1 → n2 ...                            (by `drop`)
//! ```

use crate::raft::core::tests::NextAppend;
use crate::raft::message::{
    AppendResult, Entry, Envelope, HardState, Index, Message, NodeId, Payload, RejectHint, Term,
};
use crate::raft::{CoreConfig, Progress, ProposeError, RaftCore, RoleKind};
use goldenscript::{ArgumentConsumer, Command};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::error::Error;
use std::path::Path;

test_each_file::test_each_path! { in "src/raft/testscripts" as scripts => run_script }

fn run_script(path: &Path) {
    goldenscript::run(&mut Scenario::default(), path).expect("goldenscript failed");
}

type CommandResult = Result<(), Box<dyn Error>>;

/// The goldenscript runner: a cluster, once a `cluster` command made one.
#[derive(Default)]
struct Scenario {
    cluster: Option<Cluster>,
}

impl goldenscript::Runner for Scenario {
    fn run(&mut self, command: &Command) -> Result<String, Box<dyn Error>> {
        if command.name == "cluster" {
            self.cluster = Some(Cluster::new(command)?);
            return Ok(String::new());
        }
        let cluster = self
            .cluster
            .as_mut()
            .ok_or("no cluster yet: start with `cluster nodes=N`")?;
        cluster.out.clear();
        cluster.run(command)?;
        Ok(std::mem::take(&mut cluster.out))
    }

    /// Fails the script at the first invariant violation, even one seen in
    /// the middle of a command that was expected to fail.
    fn end_command(&mut self, _: &Command) -> Result<String, Box<dyn Error>> {
        if let Some(cluster) = &mut self.cluster {
            cluster.check();
            if let Some(violation) = cluster.violation.take() {
                return Err(format!("invariant violated: {violation}").into());
            }
        }
        Ok(String::new())
    }
}

/// What survives a crash: the hard state and log as last made durable.
#[derive(Debug, Clone, Default)]
struct Disk {
    hard_state: HardState,
    log: Vec<Entry>,
}

/// A Ready's storage work, and the messages that must wait for it.
#[derive(Debug)]
struct Write {
    hard_state: Option<HardState>,
    truncate_after: Option<Index>,
    entries: Vec<Entry>,
    messages: Vec<Envelope>,
}

/// One simulated server.
struct Node {
    config: CoreConfig,
    /// `None` while crashed.
    core: Option<RaftCore>,
    disk: Disk,
    /// Writes not yet durable, oldest first.
    unsynced: VecDeque<Write>,
    /// The disk completes no write while set.
    stalled: bool,
    /// The state machine: every entry applied since the last (re)start.
    applied: Vec<Entry>,
    /// Role and term as last printed.
    seen: (RoleKind, Term),
}

impl Node {
    fn core(&self) -> Result<&RaftCore, Box<dyn Error>> {
        self.core.as_ref().ok_or_else(|| self.down())
    }

    fn core_mut(&mut self) -> Result<&mut RaftCore, Box<dyn Error>> {
        let down = self.down();
        self.core.as_mut().ok_or(down)
    }

    fn down(&self) -> Box<dyn Error> {
        format!("n{} is crashed", self.config.id).into()
    }

    /// The log as the node sees it: in memory if running, on disk if not.
    fn log(&self) -> Vec<Entry> {
        match &self.core {
            Some(core) => core.log().slice(1, core.log().last_index()).to_vec(),
            None => self.disk.log.clone(),
        }
    }

    /// Replaces the process with a new core recovered from the disk.
    fn boot(&mut self) {
        let core = RaftCore::new(
            self.config.clone(),
            self.disk.hard_state,
            self.disk.log.clone(),
        );
        self.seen = (core.role(), core.current_term());
        self.core = Some(core);
        self.unsynced.clear();
        self.stalled = false;
        self.applied.clear();
    }
}

/// What one round of collecting a node's output saw, for the commands that
/// tick until something happens.
#[derive(Default)]
struct Activity {
    /// The node asked for votes or pre-votes.
    campaigned: bool,
    /// AppendEntries its replication threads sent.
    appends: usize,
}

/// A read between `read` and its answer.
struct PendingRead {
    node: NodeId,
    /// The highest index known committed anywhere when the read began: a
    /// linearizable read must reflect at least this much.
    floor: Index,
}

/// What the invariant checks remember across the whole script.
#[derive(Default)]
struct History {
    /// The leader of each term seen so far.
    leaders: BTreeMap<Term, NodeId>,
    /// Every entry seen committed, with the highest term any node had when it
    /// was first seen committed (its commit happened in that term or earlier).
    committed: BTreeMap<Index, (Entry, Term)>,
}

struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    /// Messages in flight per directed link, tagged with a send sequence.
    links: BTreeMap<(NodeId, NodeId), VecDeque<(u64, Envelope)>>,
    sent: u64,
    cut: BTreeSet<(NodeId, NodeId)>,
    reads: BTreeMap<u64, PendingRead>,
    next_read: u64,
    history: History,
    /// The first invariant violation, reported at the end of the command.
    violation: Option<String>,
    /// The current command's output.
    out: String,
}

impl Cluster {
    fn new(command: &Command) -> Result<Cluster, Box<dyn Error>> {
        let mut args = command.consume_args();
        let n: u64 = args.lookup_parse("nodes")?.ok_or("nodes=N not given")?;
        let pre_vote = args.lookup_parse("pre_vote")?.unwrap_or(false);
        let check_quorum = args.lookup_parse("check_quorum")?.unwrap_or(false);
        let lease_reads = args.lookup_parse("lease")?.unwrap_or(false);
        let heartbeat = args.lookup_parse("heartbeat")?;
        let max_append = args.lookup_parse("max_append")?;
        let election = match args.lookup("election") {
            Some(arg) => {
                let (min, max) = arg.value.split_once('-').ok_or("election=MIN-MAX")?;
                Some((min.parse()?, max.parse()?))
            }
            None => None,
        };
        args.reject_rest()?;
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            let mut config = CoreConfig::new(id, (1..=n).filter(|&p| p != id).collect());
            config.pre_vote = pre_vote;
            config.check_quorum = check_quorum;
            config.lease_reads = lease_reads;
            if let Some(ticks) = heartbeat {
                config.heartbeat_ticks = ticks;
            }
            if let Some((min, max)) = election {
                config.election_ticks_min = min;
                config.election_ticks_max = max;
            }
            if let Some(bytes) = max_append {
                config.max_append_bytes = bytes;
            }
            let mut node = Node {
                config,
                core: None,
                disk: Disk::default(),
                unsynced: VecDeque::new(),
                stalled: false,
                applied: Vec::new(),
                seen: (RoleKind::Follower, 0),
            };
            node.boot();
            nodes.insert(id, node);
        }
        Ok(Cluster {
            nodes,
            links: BTreeMap::new(),
            sent: 0,
            cut: BTreeSet::new(),
            reads: BTreeMap::new(),
            next_read: 1,
            history: History::default(),
            violation: None,
            out: String::new(),
        })
    }

    fn run(&mut self, command: &Command) -> CommandResult {
        let mut args = command.consume_args();
        match command.name.as_str() {
            "restore" => {
                let id = self.node_arg(&mut args)?;
                let term = args.lookup_parse("term")?.ok_or("term=T not given")?;
                let voted_for = args.lookup_parse("vote")?;
                let terms = args.lookup("log").map_or("", |a| a.value.as_str());
                let log = terms
                    .split_whitespace()
                    .enumerate()
                    .map(|(i, t)| Ok(command_entry(i as Index + 1, t.parse()?)))
                    .collect::<Result<_, Box<dyn Error>>>()?;
                args.reject_rest()?;
                self.crash(id);
                let node = self.node_mut(id)?;
                node.disk = Disk {
                    hard_state: HardState {
                        current_term: term,
                        voted_for,
                    },
                    log,
                };
                self.restart(id)?;
            }
            "campaign" => {
                let ids = self.nodes_arg(&mut args, self.live())?;
                let ticks = self.campaign(&ids)?;
                if ids.len() > 1 {
                    self.say(format!("(after {ticks} ticks)"));
                }
            }
            "tick" => {
                let count = args.lookup_parse("count")?.unwrap_or(1);
                let ids = self.nodes_arg(&mut args, self.live())?;
                for _ in 0..count {
                    for &id in &ids {
                        self.tick(id)?;
                    }
                }
            }
            "heartbeat" => {
                let id = self.node_arg(&mut args)?;
                args.reject_rest()?;
                self.heartbeat(id)?;
            }
            "propose" => {
                let id = self.node_arg(&mut args)?;
                let data = &args.next_pos().ok_or("DATA not given")?.value;
                args.reject_rest()?;
                let result = self.node_mut(id)?.core_mut()?.propose(data.clone().into());
                let (index, term) = result.map_err(|e| match e {
                    ProposeError::NotLeader(e) => not_leader(id, e.leader),
                    ProposeError::Transferring { target } => {
                        format!("n{id} is transferring its leadership to n{target}").into()
                    }
                })?;
                self.say(format!("n{id} proposed {index}@{term} {data:?}"));
                self.drive(id);
            }
            "read" => {
                let id = self.node_arg(&mut args)?;
                let count = args.lookup_parse("count")?.unwrap_or(1);
                args.reject_rest()?;
                self.read(id, count)?;
            }
            "deliver" => {
                let (from, to) = links_arg(&mut args)?;
                self.deliver(from, to);
            }
            "stabilize" => {
                args.reject_rest()?;
                self.stabilize()?;
            }
            "stall" | "unstall" => {
                let stalled = command.name == "stall";
                for id in self.nodes_arg(&mut args, Vec::new())? {
                    self.node_mut(id)?.stalled = stalled;
                    self.persist(id);
                }
            }
            "drop" => {
                let (from, to) = links_arg(&mut args)?;
                for env in self.take_queued(from, to) {
                    self.say(format!("dropped {}", describe(&env)));
                }
            }
            "cut" => {
                let a = self.node_arg(&mut args)?;
                let b = self.node_arg(&mut args)?;
                let oneway = args.lookup_parse("oneway")?.unwrap_or(false);
                args.reject_rest()?;
                self.cut_link(a, b);
                if !oneway {
                    self.cut_link(b, a);
                }
            }
            "partition" => {
                let side = self.nodes_arg(&mut args, Vec::new())?;
                if side.is_empty() {
                    return Err("name the nodes of one side".into());
                }
                for &a in &side {
                    for b in self.all() {
                        if !side.contains(&b) {
                            self.cut_link(a, b);
                            self.cut_link(b, a);
                        }
                    }
                }
            }
            "heal" => {
                args.reject_rest()?;
                self.cut.clear();
            }
            "crash" => {
                let id = self.node_arg(&mut args)?;
                args.reject_rest()?;
                self.node(id)?.core()?;
                let lost = self.crash(id);
                if lost.is_empty() {
                    self.say(format!("n{id} crashed"));
                } else {
                    self.say(format!("n{id} crashed, losing unsynced {}", ids(&lost)));
                }
            }
            "restart" => {
                let id = self.node_arg(&mut args)?;
                args.reject_rest()?;
                self.restart(id)?;
            }
            "unreachable" => {
                let id = self.node_arg(&mut args)?;
                let peer = self.node_arg(&mut args)?;
                args.reject_rest()?;
                self.node_mut(id)?.core_mut()?.peer_unreachable(peer);
                self.drive(id);
            }
            "status" => {
                for id in self.nodes_arg(&mut args, self.all())? {
                    let line = self.status_line(id);
                    self.say(line);
                }
            }
            "log" => {
                for id in self.nodes_arg(&mut args, self.all())? {
                    let node = &self.nodes[&id];
                    let entries: Vec<String> = node.log().iter().map(show_entry).collect();
                    let line = format!("n{id}: {}", entries.join(", "));
                    self.say(line);
                }
            }
            "progress" => {
                let id = self.node_arg(&mut args)?;
                args.reject_rest()?;
                let core = self.nodes[&id].core()?;
                let lines: Vec<String> = self
                    .nodes
                    .keys()
                    .filter_map(|&peer| progress_line(core, peer))
                    .collect();
                if lines.is_empty() {
                    return Err(format!("n{id} is not the leader").into());
                }
                for line in lines {
                    self.say(line);
                }
            }
            name => return Err(format!("unknown command {name}").into()),
        }
        Ok(())
    }

    // ----- Argument helpers ------------------------------------------------

    fn node_arg(&self, args: &mut ArgumentConsumer) -> Result<NodeId, Box<dyn Error>> {
        let id = parse_node(&args.next_pos().ok_or("node not given")?.value)?;
        self.node(id)?;
        Ok(id)
    }

    /// The positional node arguments, or `default` if there are none.
    fn nodes_arg(
        &self,
        args: &mut ArgumentConsumer,
        default: Vec<NodeId>,
    ) -> Result<Vec<NodeId>, Box<dyn Error>> {
        let ids = args
            .rest_pos()
            .iter()
            .map(|a| parse_node(&a.value))
            .collect::<Result<Vec<_>, _>>()?;
        args.reject_rest()?;
        for &id in &ids {
            self.node(id)?;
        }
        Ok(if ids.is_empty() { default } else { ids })
    }

    fn node(&self, id: NodeId) -> Result<&Node, Box<dyn Error>> {
        self.nodes
            .get(&id)
            .ok_or_else(|| format!("no node n{id}").into())
    }

    fn node_mut(&mut self, id: NodeId) -> Result<&mut Node, Box<dyn Error>> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node n{id}").into())
    }

    fn all(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    fn live(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.core.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    fn say(&mut self, line: String) {
        self.out.push_str(&line);
        self.out.push('\n');
    }

    // ----- Driving the cores -----------------------------------------------

    /// Collects what node `id` produced since its last input: prints its role
    /// and term changes, applies committed entries, answers reads, queues its
    /// storage work with the messages that wait for it, and lets its
    /// replication threads send.
    fn drive(&mut self, id: NodeId) -> Activity {
        let node = self.nodes.get_mut(&id).expect("known node");
        let Some(core) = node.core.as_mut() else {
            return Activity::default();
        };
        let ready = core.take_ready();
        let campaigned = ready.messages.iter().any(|m| {
            matches!(
                m.message,
                Message::RequestVote { .. } | Message::PreVote { .. }
            )
        });
        let mut lines = Vec::new();
        let (role, term) = (core.role(), core.current_term());
        let (was_role, was_term) = node.seen;
        if role != was_role {
            lines.push(format!("n{id}: {was_role} → {role}, term {term}"));
        } else if term != was_term {
            lines.push(format!("n{id}: {role}, term {was_term} → {term}"));
        } else if campaigned {
            lines.push(format!("n{id}: {role} again, term {term}"));
        }
        node.seen = (role, term);

        if !ready.committed.is_empty() {
            let applied: Vec<String> = ready.committed.iter().map(show_entry).collect();
            lines.push(format!("n{id} applied {}", applied.join(", ")));
            node.applied.extend(ready.committed);
        }
        let mut violations = Vec::new();
        for read in ready.reads {
            lines.push(format!(
                "n{id} read #{} served at index {}",
                read.id, read.index
            ));
            let applied = node.applied.len() as Index;
            violations.push(match self.reads.remove(&read.id) {
                Some(p) if p.node != id => {
                    format!("read #{} begun on n{} was served by n{id}", read.id, p.node)
                }
                Some(p) if read.index < p.floor => format!(
                    "read #{} served at index {} on n{id}, but {} was committed before it began",
                    read.id, read.index, p.floor
                ),
                Some(_) if applied < read.index => format!(
                    "read #{} released at index {} before n{id} applied that far ({applied})",
                    read.id, read.index
                ),
                Some(_) => continue,
                None => format!("n{id} served unknown read #{}", read.id),
            });
        }
        for read in ready.aborted_reads {
            self.reads.remove(&read);
            lines.push(format!("n{id} read #{read} aborted"));
        }
        let write = Write {
            hard_state: ready.hard_state,
            truncate_after: ready.truncate_after,
            entries: ready.entries,
            messages: ready.messages,
        };
        if write.hard_state.is_some()
            || write.truncate_after.is_some()
            || !write.entries.is_empty()
            || !write.messages.is_empty()
        {
            node.unsynced.push_back(write);
        }
        let mut appends = Vec::new();
        for peer in ready.replicate {
            while let Some(env) = core.next_append(peer) {
                appends.push(env);
                assert!(appends.len() < 10_000, "n{id}: append_for never runs dry");
            }
        }
        for line in lines {
            self.say(line);
        }
        for violation in violations {
            self.violate(violation);
        }
        let activity = Activity {
            campaigned: campaigned || (role == RoleKind::Leader && was_role != role),
            appends: appends.len(),
        };
        for env in appends {
            self.send(env);
        }
        self.persist(id);
        activity
    }

    fn tick(&mut self, id: NodeId) -> Result<Activity, Box<dyn Error>> {
        self.node_mut(id)?.core_mut()?.tick();
        Ok(self.drive(id))
    }

    /// Ticks the nodes together until one of them starts an election (or a
    /// pre-vote); returns the number of ticks.
    fn campaign(&mut self, ids: &[NodeId]) -> Result<u32, Box<dyn Error>> {
        let max = ids
            .iter()
            .map(|id| self.nodes[id].config.election_ticks_max)
            .max()
            .ok_or("no live node")?;
        for ticks in 1..=max + 1 {
            let mut campaigned = false;
            for &id in ids {
                campaigned |= self.tick(id)?.campaigned;
            }
            if campaigned {
                return Ok(ticks);
            }
        }
        Err(format!("no election started within {} ticks", max + 1).into())
    }

    /// Ticks leader `id` until it sends heartbeats.
    fn heartbeat(&mut self, id: NodeId) -> CommandResult {
        if self.node(id)?.core()?.role() != RoleKind::Leader {
            return Err(format!("n{id} is not the leader").into());
        }
        for _ in 0..self.nodes[&id].config.heartbeat_ticks {
            if self.tick(id)?.appends > 0 {
                return Ok(());
            }
        }
        Err(format!("n{id} sent no heartbeat").into())
    }

    /// Starts `count` reads on `id` before its replication threads run, so
    /// that they may share a round.
    fn read(&mut self, id: NodeId, count: u64) -> CommandResult {
        let floor = self.history.committed.keys().next_back().copied();
        for _ in 0..count {
            let read = self.next_read;
            let core = self.node_mut(id)?.core_mut()?;
            let (rounds, leased) = (core.read_rounds(), core.lease_reads_served());
            core.read_index(read)
                .map_err(|e| not_leader(id, e.leader))?;
            let how = if core.lease_reads_served() > leased {
                "answered on the lease"
            } else if core.read_rounds() > rounds {
                "starts a new round"
            } else {
                "joins the pending round"
            };
            self.say(format!("n{id} read #{read} {how}"));
            self.next_read += 1;
            self.reads.insert(
                read,
                PendingRead {
                    node: id,
                    floor: floor.unwrap_or(0),
                },
            );
        }
        self.drive(id);
        Ok(())
    }

    // ----- Storage ---------------------------------------------------------

    /// Makes node `id`'s unsynced writes durable, in order, then sends the
    /// messages that waited for them and reports the write to the core;
    /// unless its disk is stalled.
    fn persist(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if node.core.is_none() || node.stalled || node.unsynced.is_empty() {
            return;
        }
        let mut messages = Vec::new();
        let mut last_written = None;
        let mut broken = None;
        for write in std::mem::take(&mut node.unsynced) {
            if let Some(hard_state) = write.hard_state {
                node.disk.hard_state = hard_state;
            }
            if let Some(last_kept) = write.truncate_after {
                node.disk.log.truncate(last_kept as usize);
            }
            for entry in write.entries {
                let end = node.disk.log.len() as Index;
                if entry.index != end + 1 && broken.is_none() {
                    broken = Some(format!(
                        "n{id} was asked to write entry {} after durable entry {end}",
                        entry.index
                    ));
                }
                last_written = Some((entry.index, entry.term));
                node.disk.log.push(entry);
            }
            messages.extend(write.messages);
        }
        if let Some(violation) = broken {
            self.violate(violation);
        }
        for env in messages {
            self.send(env);
        }
        if let Some((index, term)) = last_written {
            let core = self.nodes.get_mut(&id).and_then(|n| n.core.as_mut());
            core.expect("live node").persisted(index, term);
            self.drive(id);
        }
    }

    /// Loses node `id`'s process and unsynced writes; returns the unsynced
    /// entries lost.
    fn crash(&mut self, id: NodeId) -> Vec<Entry> {
        let node = self.nodes.get_mut(&id).expect("known node");
        node.core = None;
        let lost = node.unsynced.drain(..).flat_map(|w| w.entries).collect();
        node.applied.clear();
        self.reads.retain(|_, r| r.node != id);
        self.take_queued(None, Some(id));
        lost
    }

    fn restart(&mut self, id: NodeId) -> CommandResult {
        let node = self.node_mut(id)?;
        if node.core.is_some() {
            return Err(format!("n{id} is running").into());
        }
        node.boot();
        let line = self.status_line(id);
        self.say(format!("restarted {line}"));
        Ok(())
    }

    // ----- Network ---------------------------------------------------------

    fn send(&mut self, env: Envelope) {
        let link = (env.from, env.to);
        let target_up = self.nodes.get(&env.to).is_some_and(|n| n.core.is_some());
        if target_up && !self.cut.contains(&link) {
            self.sent += 1;
            self.links
                .entry(link)
                .or_default()
                .push_back((self.sent, env));
        }
    }

    fn cut_link(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
        self.links.remove(&(from, to));
    }

    /// Removes the queued messages on the matching links, in send order.
    fn take_queued(&mut self, from: Option<NodeId>, to: Option<NodeId>) -> Vec<Envelope> {
        let mut taken: Vec<(u64, Envelope)> = Vec::new();
        for (&(f, t), queue) in self.links.iter_mut() {
            if from.is_none_or(|id| id == f) && to.is_none_or(|id| id == t) {
                taken.extend(queue.drain(..));
            }
        }
        taken.sort_by_key(|&(seq, _)| seq);
        taken.into_iter().map(|(_, env)| env).collect()
    }

    /// One round: every message queued on the matching links is delivered.
    /// Returns how many were.
    fn deliver(&mut self, from: Option<NodeId>, to: Option<NodeId>) -> usize {
        let round = self.take_queued(from, to);
        for env in &round {
            self.say(describe(env));
            let to = env.to;
            if let Some(core) = self.nodes.get_mut(&to).and_then(|n| n.core.as_mut()) {
                core.step(env.clone());
                self.drive(to);
            }
            self.check();
        }
        round.len()
    }

    fn stabilize(&mut self) -> CommandResult {
        for _ in 0..1000 {
            if self.deliver(None, None) == 0 {
                return Ok(());
            }
        }
        Err("the cluster did not stabilize in 1000 rounds".into())
    }

    // ----- Printing --------------------------------------------------------

    fn status_line(&self, id: NodeId) -> String {
        let node = &self.nodes[&id];
        let Some(core) = &node.core else {
            let hs = node.disk.hard_state;
            return format!(
                "n{id}: crashed, disk term={} vote={} log=[{}]",
                hs.current_term,
                show_node(hs.voted_for),
                ids(&node.disk.log)
            );
        };
        let log = node.log();
        let mut line = format!(
            "n{id}: {} term={} vote={} leader={} commit={} applied={} log=[{}]",
            core.role(),
            core.current_term(),
            show_node(core.voted_for()),
            show_node(core.leader_id()),
            core.commit_index(),
            core.last_applied(),
            ids(&log)
        );
        if node.disk.log != log {
            line += &format!(" disk=[{}]", ids(&node.disk.log));
        }
        if node.stalled {
            line += " (disk stalled)";
        }
        line
    }

    // ----- Invariants ------------------------------------------------------

    fn violate(&mut self, violation: String) {
        self.violation.get_or_insert(violation);
    }

    /// Checks Raft's safety properties and the harness's own bookkeeping,
    /// recording the first violation (see the module docs).
    fn check(&mut self) {
        if let Err(violation) = self.check_all() {
            self.violate(violation);
        }
    }

    fn check_all(&mut self) -> Result<(), String> {
        let quorum = self.nodes.len() / 2 + 1;
        for (&id, node) in &self.nodes {
            let log = node.log();
            if let Some(core) = &node.core {
                let term = core.current_term();
                // Election Safety: at most one leader per term, ever.
                if core.role() == RoleKind::Leader {
                    let leader = *self.history.leaders.entry(term).or_insert(id);
                    if leader != id {
                        return Err(format!("n{leader} and n{id} both led term {term}"));
                    }
                }
                let commit = core.commit_index();
                if commit > core.log().last_index() {
                    return Err(format!("n{id} commit index {commit} is past its log"));
                }
                // Committed entries never change (Leader Completeness and
                // State Machine Safety both rest on it).
                for entry in &log[..commit as usize] {
                    let (seen, _) = self
                        .history
                        .committed
                        .entry(entry.index)
                        .or_insert_with(|| (entry.clone(), term));
                    if seen != entry {
                        return Err(format!(
                            "n{id} has {} committed, but {} was committed before",
                            show_entry(entry),
                            show_entry(seen)
                        ));
                    }
                }
                // The disk holds what the core believes is durable.
                let durable = core.persisted_index() as usize;
                if node.disk.log.len() < durable || node.disk.log[..durable] != log[..durable] {
                    return Err(format!(
                        "n{id} believes its log durable up to {durable}, but its disk has [{}]",
                        ids(&node.disk.log)
                    ));
                }
                if node.disk.hard_state.current_term > term {
                    return Err(format!("n{id}'s disk has a term ahead of its core"));
                }
                if core.last_applied() != node.applied.len() as Index {
                    return Err(format!(
                        "n{id} reports {} applied, the state machine has {}",
                        core.last_applied(),
                        node.applied.len()
                    ));
                }
            }
            // State Machine Safety: every node applies the committed entries,
            // in order, each once.
            for (i, entry) in node.applied.iter().enumerate() {
                let committed = self.history.committed.get(&(i as Index + 1));
                if committed.is_none_or(|(c, _)| c != entry) {
                    return Err(format!(
                        "n{id} applied {} as its entry {}",
                        show_entry(entry),
                        i + 1
                    ));
                }
            }
            // Log Matching: two logs with the same entry at an index are
            // identical up to there.
            for other in self.nodes.values().filter(|o| o.config.id > id) {
                let other_log = other.log();
                let common = log.len().min(other_log.len());
                if let Some(i) = (0..common)
                    .rev()
                    .find(|&i| log[i].term == other_log[i].term)
                {
                    if log[..=i] != other_log[..=i] {
                        return Err(format!(
                            "n{id} and n{} share entry {} but differ before it",
                            other.config.id,
                            show_entry(&log[i])
                        ));
                    }
                }
            }
        }
        for (&index, (entry, seen_term)) in &self.history.committed {
            // Durability: a committed entry is on the disk of a majority.
            let copies = self
                .nodes
                .values()
                .filter(|n| n.disk.log.get(index as usize - 1) == Some(entry))
                .count();
            if copies < quorum {
                return Err(format!(
                    "committed entry {} is durable on only {copies} nodes",
                    show_entry(entry)
                ));
            }
            // Leader Completeness: every leader of a later term holds it.
            for (&id, node) in &self.nodes {
                let Some(core) = &node.core else { continue };
                if core.role() == RoleKind::Leader
                    && core.current_term() > *seen_term
                    && core.log().get(index) != Some(entry)
                {
                    return Err(format!(
                        "n{id}, leader of term {}, lacks committed entry {}",
                        core.current_term(),
                        show_entry(entry)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One line about the leader's view of `peer`; `None` unless the core leads.
/// The only place that reads the core's `Progress`.
fn progress_line(core: &RaftCore, peer: NodeId) -> Option<String> {
    let pr: &Progress = core.progress(peer)?;
    let state = format!("{:?}", pr.state()).to_lowercase();
    Some(format!(
        "n{peer}: next={} match={} {state}",
        pr.next_index(),
        pr.match_index()
    ))
}

/// Optional `from=N` and `to=N`, selecting links.
fn links_arg(
    args: &mut ArgumentConsumer,
) -> Result<(Option<NodeId>, Option<NodeId>), Box<dyn Error>> {
    let from = args.lookup_parse("from")?;
    let to = args.lookup_parse("to")?;
    args.reject_rest()?;
    Ok((from, to))
}

fn parse_node(arg: &str) -> Result<NodeId, Box<dyn Error>> {
    let digits = arg.strip_prefix('n').unwrap_or(arg);
    Ok(digits
        .parse()
        .map_err(|_| format!("invalid node {arg:?}"))?)
}

fn not_leader(id: NodeId, leader: Option<NodeId>) -> Box<dyn Error> {
    format!("n{id} is not the leader (leader: {})", show_node(leader)).into()
}

/// A command entry whose payload names its position, as restored logs have.
fn command_entry(index: Index, term: Term) -> Entry {
    Entry {
        index,
        term,
        payload: Payload::Command(format!("{index}@{term}").into_bytes()),
    }
}

fn show_node(id: Option<NodeId>) -> String {
    id.map_or("-".into(), |id| format!("n{id}"))
}

fn show_entry(entry: &Entry) -> String {
    match &entry.payload {
        Payload::Noop => format!("{}@{} noop", entry.index, entry.term),
        Payload::Config(config) => {
            format!(
                "{}@{} config {}",
                entry.index,
                entry.term,
                config.describe()
            )
        }
        Payload::Command(data) => format!(
            "{}@{} {:?}",
            entry.index,
            entry.term,
            String::from_utf8_lossy(data)
        ),
    }
}

/// Entries as `index@term`, space-separated.
fn ids(entries: &[Entry]) -> String {
    let ids: Vec<String> = entries
        .iter()
        .map(|e| format!("{}@{}", e.index, e.term))
        .collect();
    ids.join(" ")
}

/// One message, as the trace prints it.
fn describe(env: &Envelope) -> String {
    let granted = |yes: bool| if yes { "granted" } else { "rejected" };
    let details = match &env.message {
        Message::RequestVote {
            last_log_index,
            last_log_term,
            leadership_transfer: true,
        } => format!("last={last_log_index}@{last_log_term} transfer"),
        Message::RequestVote {
            last_log_index,
            last_log_term,
            ..
        }
        | Message::PreVote {
            last_log_index,
            last_log_term,
        } => format!("last={last_log_index}@{last_log_term}"),
        Message::TimeoutNow => String::new(),
        Message::RequestVoteResponse { vote_granted }
        | Message::PreVoteResponse { vote_granted } => granted(*vote_granted).to_string(),
        Message::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
            round,
        } => format!(
            "prev={prev_log_index}@{prev_log_term} entries=[{}] commit={leader_commit} round={round}",
            ids(entries)
        ),
        Message::AppendEntriesResponse { round, result } => {
            let result = match result {
                AppendResult::Success { match_index } => format!("success match={match_index}"),
                AppendResult::Reject {
                    rejected_index,
                    hint: RejectHint::LogTooShort { last_index },
                } => format!("reject at={rejected_index} log-too-short last={last_index}"),
                AppendResult::Reject {
                    rejected_index,
                    hint:
                        RejectHint::ConflictingTerm {
                            conflict_term,
                            first_index,
                        },
                } => format!(
                    "reject at={rejected_index} conflict term={conflict_term} first={first_index}"
                ),
            };
            format!("{result} round={round}")
        }
        Message::InstallSnapshot {
            last_included_index,
            last_included_term,
            offset,
            total,
            data,
            done,
        } => format!(
            "snapshot={last_included_index}@{last_included_term} offset={offset} len={} \
             total={total} done={done}",
            data.len()
        ),
        Message::InstallSnapshotResponse {
            last_included_index,
            result,
        } => format!("snapshot={last_included_index} {result:?}"),
    };
    format!(
        "n{} → n{} {} term={} {details}",
        env.from,
        env.to,
        env.message.name(),
        env.term
    )
}
