//! `raftnode run`: one node, serving clients.

use super::args::{check_addr, init_logging, parse_node_id, usage, Flags};
use super::error::CliError;
use super::join;
use crate::kv::Kv;
use crate::metrics::{self, MetricsServer};
use crate::node::{Config, Node, ReadMode};
use crate::raft::message::NodeId;
use crate::redis::port::ClientLimits;
use crate::redis::server::{self, Server};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const RUN_HELP: &str = "\
raftnode run: start one node

Usage:
  raftnode run --id ID --data-dir DIR --raft-addr HOST:PORT --client-addr HOST:PORT
               [--peer ID=HOST:PORT]... [--join HOST:PORT] [--cluster-id NAME]
               [--election-timeout-ms MIN-MAX] [--heartbeat-ms MS]
               [--read-mode read-index|lease] [--pre-vote on|off] [--check-quorum on|off]
               [--snapshot-entries N] [--snapshot-keep N] [--max-clients N]
               [--client-output-limit SIZE] [--max-client-memory SIZE]
               [--metrics-addr HOST:PORT]

Membership is kept in the data dir. A new data dir either forms a cluster
(the node and its --peers, all voters) or, with --join, joins a running one.
After that the members change only through RAFT.NODE ADD/PROMOTE/REMOVE, and
a restart needs no --peer or --join at all.

Options:
  --id ID                       this node's id, a positive integer (required)
  --data-dir DIR                where the node keeps its term, vote, log, snapshots
                                and membership (required)
  --raft-addr HOST:PORT         where to listen for peers; also the address other
                                nodes dial, so give one they can reach (required)
  --client-addr HOST:PORT       where to listen for clients; also the address
                                other nodes send clients to (required)
  --peer ID=HOST:PORT           on a new data dir: another founding member of the
                                cluster this node forms, at its raft address;
                                repeat for each (none: a one-node cluster). Later
                                starts take the members from the data dir, and a
                                --peer only says where this node dials that member
                                (a proxy, a moved machine)
  --join HOST:PORT              on a new data dir: join the running cluster that
                                has a member serving clients at HOST:PORT. The node
                                asks to be added (RAFT.NODE ADD, following MOVED to
                                the leader, retrying until the cluster answers),
                                catches up as a learner and is promoted to voter.
                                Harmless on later starts; exits with status 1 if the
                                cluster refuses (say, the id is another node's)
  --cluster-id NAME             nodes refuse peers of another cluster [default: raftnode]
  --election-timeout-ms MIN-MAX randomized election timeout [default: 150-300]
  --heartbeat-ms MS             leader heartbeat interval [default: 50]
  --read-mode MODE              read-index: every GET confirms leadership with a
                                heartbeat round; lease: no round while the leader's
                                lease holds (assumes bounded clock drift)
                                [default: read-index]
  --pre-vote on|off             ask whether an election could be won before
                                starting one [default: on]
  --check-quorum on|off         leaders step down without a majority; followers
                                ignore vote requests while their leader is alive
                                [default: on]
  --snapshot-entries N          snapshot the state after N entries applied since
                                the last snapshot, then compact the log; 0: only on
                                BGSAVE [default: 10000]
  --snapshot-keep N             log entries kept before a snapshot's index, for
                                followers slightly behind [default: 5000]
  --max-clients N               clients served at once; more are answered
                                -ERR max number of clients reached. Lowered, with
                                a warning, if the open file limit cannot hold
                                them [default: 10000]
  --client-output-limit SIZE    a client whose unsent replies would pass SIZE is
                                disconnected (sizes: 123, 64kb, 64mb, 1gb)
                                [default: 64mb]
  --max-client-memory SIZE      what all clients together may hold in large
                                requests and unsent replies [default: 1gb]
  --metrics-addr HOST:PORT      serve Prometheus metrics at http://HOST:PORT/metrics
                                (port 0: any free port, named in the log line
                                saying the node is up) [default: none]
  --exit-on-stdin-eof           exit when standard input closes (used by `dev`, so
                                nodes never outlive it)
  -h, --help                    this help

A node removed from the cluster (RAFT.NODE REMOVE) exits with status 0; its
data dir then refuses to start. To bring the machine back, start it with an
empty data dir and --join.

If a write or fsync of the data dir fails (a full or failing disk), the node
stops at once and exits with status 74, its last line naming the file and the
error. Free space or fix the disk, then start it again as it was: it recovers
from what is on disk and catches up from the others.
";

/// The exit status after a storage failure: sysexits.h's EX_IOERR, distinct
/// from 1 (could not start, or refused) and 2 (bad flags), so a supervisor
/// or a script can tell a disk problem from a configuration one.
pub(super) const STORAGE_FAILED: u8 = 74;

/// How often the main thread looks at what could end the process.
const POLL: Duration = Duration::from_millis(100);

/// How long a removed node keeps serving before it exits, so that replies in
/// flight reach their clients — the `+OK` of the RAFT.NODE REMOVE that
/// removed this very node, when it led — and its last messages (the
/// TimeoutNow to its successor) leave.
const LINGER_AFTER_REMOVAL: Duration = Duration::from_millis(500);

/// What `run` was asked to do.
struct Options {
    config: Config,
    /// The client address as given.
    client_addr: String,
    exit_on_eof: bool,
    /// `--join`: a member's client address.
    join: Option<String>,
    /// `--max-clients` and the other limits of the client port.
    clients: ClientLimits,
    /// `--metrics-addr`: where to serve metrics, if anywhere.
    metrics_addr: Option<String>,
}

/// `raftnode run`: starts the node and its client port, then serves until
/// killed, until this node is removed from the cluster (status 0), until
/// standard input closes (with --exit-on-stdin-eof), until the cluster
/// refuses to let it join (status 1), or until its storage fails
/// ([`STORAGE_FAILED`]).
pub(super) fn run(args: &[String]) -> Result<ExitCode, CliError> {
    let Some(Options {
        mut config,
        client_addr,
        exit_on_eof,
        join,
        mut clients,
        metrics_addr,
    }) = parse(args)?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    init_logging();
    let client_port_error = |source| CliError::ClientPort {
        addr: client_addr.clone(),
        source,
    };
    let client_listener = TcpListener::bind(&client_addr).map_err(client_port_error)?;
    let bound = client_listener.local_addr().map_err(client_port_error)?;
    // Bound before the node starts, as the client port is, so that a port
    // in use is reported before anything else happens.
    let metrics_listener = match &metrics_addr {
        Some(addr) => {
            let metrics_port_error = |source| CliError::MetricsPort {
                addr: addr.clone(),
                source,
            };
            let listener = TcpListener::bind(addr).map_err(metrics_port_error)?;
            Some(listener)
        }
        None => None,
    };
    // Advertise what the operator wrote (it is what other machines can reach),
    // unless the port was left to the OS.
    let advertised = match client_addr.ends_with(":0") {
        true => bound.to_string(),
        false => client_addr.clone(),
    };
    config.client_addr = Some(advertised.clone());
    config.join = join.is_some();
    let id = config.id;
    let peers = config.peers.len();
    let node = Arc::new(Node::start(config, Kv::new()).map_err(CliError::Start)?);
    // Once the node has started: a node that cannot start says only why.
    clients.max_clients = server::fit_max_clients(clients.max_clients, peers);
    let server = Server::start_with(node.clone(), client_listener, clients).map_err(|source| {
        CliError::ServeClients {
            addr: client_addr.clone(),
            source,
        }
    })?;
    // Kept until `run` returns: dropping it closes the endpoint.
    let metrics_server = match metrics_listener {
        Some(listener) => {
            let render = metrics::renderer(node.clone(), server.stats());
            let serving = MetricsServer::start(listener, render).map_err(|source| {
                CliError::ServeMetrics {
                    addr: metrics_addr.clone().unwrap_or_default(),
                    source,
                }
            })?;
            Some(serving)
        }
        None => None,
    };
    let metrics_note = match &metrics_server {
        Some(m) => format!(", metrics on http://{}/metrics", m.local_addr()),
        None => String::new(),
    };
    log::info!(
        "node {id}: up; peers on {}, clients on {bound}{metrics_note}",
        node.raft_addr()
    );
    let mut joining = match join {
        Some(via) => {
            let request = join::Request {
                id,
                // The node advertises its raft address with the OS's port
                // in place of `:0`; that is the one peers can dial.
                raft_addr: node.config().raft_addr.clone(),
                client_addr: advertised,
                via,
            };
            join::spawn(node.clone(), request)?
        }
        None => None,
    };
    let stdin_closed = match exit_on_eof {
        true => Some(watch_stdin()?),
        false => None,
    };
    loop {
        if let Some(e) = node.wait_failed(POLL) {
            // The node has already stopped taking part (fail-stop) and
            // logged the error; there is nothing left to flush. Exit, so
            // that a supervisor notices (the process is what it watches) and
            // restarts it, which is what recovers. Halting only closes the
            // ports and joins threads; then the last line says why.
            server.halt();
            node.halt();
            eprintln!(
                "raftnode: error: node {id}: storage failed: {e}; stopping (restart the \
                 process: it recovers from what is on disk)"
            );
            return Ok(ExitCode::from(STORAGE_FAILED));
        }
        if let Some(index) = node.removed() {
            log::info!(
                "node {id}: removed from the cluster at index {index}; exiting (this data dir \
                 cannot start again; to bring this machine back, start it with an empty data \
                 dir and --join)"
            );
            std::thread::sleep(LINGER_AFTER_REMOVAL);
            server.halt();
            node.halt();
            return Ok(ExitCode::SUCCESS);
        }
        if stdin_closed.as_ref().is_some_and(JoinHandle::is_finished) {
            // The parent holds our stdin open; when it dies, for whatever
            // reason, the pipe closes and we follow.
            log::info!("node {id}: standard input closed; exiting");
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(handle) = joining.take_if(|h| h.is_finished()) {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(refused)) => return Err(refused),
                Err(_) => log::error!("node {id}: the join thread panicked; not retrying"),
            }
        }
    }
}

/// A thread that reads standard input to its end and then finishes.
fn watch_stdin() -> Result<JoinHandle<()>, CliError> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(|| {
            let mut sink = [0u8; 64];
            let mut stdin = io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        })
        .map_err(|source| CliError::Thread {
            name: "stdin",
            source,
        })
}

/// The node's configuration and the rest of `run`'s options from the
/// flags; `None` for --help.
fn parse(args: &[String]) -> Result<Option<Options>, CliError> {
    let flags = Flags::parse(
        args,
        &[
            "--id",
            "--data-dir",
            "--raft-addr",
            "--client-addr",
            "--peer",
            "--join",
            "--cluster-id",
            "--election-timeout-ms",
            "--heartbeat-ms",
            "--read-mode",
            "--pre-vote",
            "--check-quorum",
            "--snapshot-entries",
            "--snapshot-keep",
            "--max-clients",
            "--client-output-limit",
            "--max-client-memory",
            "--metrics-addr",
        ],
        &["-h", "--help", "--exit-on-stdin-eof"],
        false,
    )?;
    if flags.has("-h") || flags.has("--help") {
        print!("{RUN_HELP}");
        return Ok(None);
    }
    let id = parse_node_id(flags.required("--id")?, "--id")?;
    let mut config = Config::new(id, PathBuf::from(flags.required("--data-dir")?));
    config.raft_addr = flags.required("--raft-addr")?.to_string();
    check_addr(&config.raft_addr, "--raft-addr")?;
    let client_addr = flags.required("--client-addr")?.to_string();
    check_addr(&client_addr, "--client-addr")?;
    if let Some(cluster) = flags.get("--cluster-id") {
        if cluster.is_empty() || cluster.contains('\n') {
            return Err(usage("--cluster-id must be a non-empty single line"));
        }
        config.cluster_id = cluster.to_string();
    }
    config.peers = parse_peers(&flags, id)?;
    let join = flags.get("--join").map(str::to_string);
    if let Some(via) = &join {
        check_addr(via, "--join")?;
        if *via == client_addr {
            return Err(usage(
                "--join names this node's own client address; give a member's",
            ));
        }
    }
    parse_timings(&flags, &mut config)?;
    config.read_mode = match flags.get("--read-mode") {
        None | Some("read-index") => ReadMode::ReadIndex,
        Some("lease") => ReadMode::Lease,
        Some(other) => {
            return Err(usage(format!(
                "--read-mode expects read-index or lease, got {other:?}"
            )))
        }
    };
    config.pre_vote = flags.switch_value("--pre-vote", true)?;
    config.check_quorum = flags.switch_value("--check-quorum", true)?;
    config.snapshot_entries = flags.number("--snapshot-entries", config.snapshot_entries)?;
    config.snapshot_keep = flags.number("--snapshot-keep", config.snapshot_keep)?;
    config.core_config().map_err(|e| usage(e.to_string()))?;
    let clients = parse_client_limits(&flags)?;
    let metrics_addr = flags.get("--metrics-addr").map(str::to_string);
    if let Some(addr) = &metrics_addr {
        check_addr(addr, "--metrics-addr")?;
    }
    Ok(Some(Options {
        config,
        client_addr,
        exit_on_eof: flags.has("--exit-on-stdin-eof"),
        join,
        clients,
        metrics_addr,
    }))
}

/// `--max-clients`, `--client-output-limit`, `--max-client-memory`.
fn parse_client_limits(flags: &Flags) -> Result<ClientLimits, CliError> {
    let default = ClientLimits::default();
    let limits = ClientLimits {
        max_clients: flags.number("--max-clients", default.max_clients)?,
        output_limit: flags.size("--client-output-limit", default.output_limit)?,
        max_memory: flags.size("--max-client-memory", default.max_memory)?,
    };
    if limits.max_clients == 0 {
        return Err(usage("--max-clients must be at least 1"));
    }
    Ok(limits)
}

/// `--peer ID=HOST:PORT`, repeated: on a new data dir the other founding
/// members; always, where to dial them.
fn parse_peers(flags: &Flags, id: NodeId) -> Result<BTreeMap<NodeId, String>, CliError> {
    let mut peers = BTreeMap::new();
    for peer in flags.all("--peer") {
        let (peer_id, addr) = peer
            .split_once('=')
            .ok_or_else(|| usage(format!("--peer expects ID=HOST:PORT, got {peer:?}")))?;
        let peer_id = parse_node_id(peer_id, "a --peer id")?;
        check_addr(addr, "--peer")?;
        if peer_id == id {
            return Err(usage(format!("--peer {peer_id} is this node's own id")));
        }
        if peers.insert(peer_id, addr.to_string()).is_some() {
            return Err(usage(format!("--peer {peer_id} given twice")));
        }
    }
    Ok(peers)
}

/// The election timeout and heartbeat, and a tick fine enough for both.
fn parse_timings(flags: &Flags, config: &mut Config) -> Result<(), CliError> {
    if let Some(range) = flags.get("--election-timeout-ms") {
        let parsed = range
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
        let Some((min, max)) = parsed.filter(|&(min, max)| 0 < min && min <= max) else {
            return Err(usage(format!(
                "--election-timeout-ms expects MIN-MAX in milliseconds, got {range:?}"
            )));
        };
        config.election_timeout_min = Duration::from_millis(min);
        config.election_timeout_max = Duration::from_millis(max);
    }
    let heartbeat = flags.number("--heartbeat-ms", 50u64)?;
    if heartbeat == 0 {
        return Err(usage("--heartbeat-ms must be positive"));
    }
    config.heartbeat_interval = Duration::from_millis(heartbeat);
    let finest = heartbeat.min(config.election_timeout_min.as_millis() as u64);
    config.tick = Duration::from_millis((finest / 5).clamp(1, 10));
    Ok(())
}
