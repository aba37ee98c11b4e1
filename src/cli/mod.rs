//! The `raftnode` command line: `run` one node, start a `dev` cluster on this
//! machine, or talk to a cluster with `cli`.
//!
//! The subcommand and flag names are a contract that scripts and tools depend
//! on: extend them, never rename them.

use crate::kv::Kv;
use crate::node::config::{Config, ReadMode};
use crate::node::Node;
use crate::raft::message::NodeId;
use crate::redis::resp::{self, Limits, Reply};
use crate::redis::server::Server;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAIN_HELP: &str = "\
raftnode: a Raft-replicated key-value store that speaks the Redis protocol

Usage:
  raftnode run --id ID --data-dir DIR --raft-addr HOST:PORT --client-addr HOST:PORT
               [--peer ID=HOST:PORT]... [--cluster-id NAME]
               [--election-timeout-ms MIN-MAX] [--heartbeat-ms MS]
               [--read-mode read-index|lease] [--pre-vote on|off] [--check-quorum on|off]
  raftnode dev [--nodes N] [--data-dir DIR] [--base-port P]
  raftnode cli [--addr HOST:PORT] [COMMAND ARG...]

Run `raftnode SUBCOMMAND --help` for the details of each.
Logging: RUST_LOG=debug (or warn, ...); the default level is info.
";

const RUN_HELP: &str = "\
raftnode run: start one node

Usage:
  raftnode run --id ID --data-dir DIR --raft-addr HOST:PORT --client-addr HOST:PORT
               [--peer ID=HOST:PORT]... [--cluster-id NAME]
               [--election-timeout-ms MIN-MAX] [--heartbeat-ms MS]
               [--read-mode read-index|lease] [--pre-vote on|off] [--check-quorum on|off]

Options:
  --id ID                       this node's id, a positive integer (required)
  --data-dir DIR                where the node keeps its term, vote and log (required)
  --raft-addr HOST:PORT         where to listen for peers (required)
  --client-addr HOST:PORT       where to listen for clients; also the address
                                other nodes send clients to (required)
  --peer ID=HOST:PORT           another member, and the address at which this node
                                dials its raft port; repeat for each. None: a
                                one-node cluster
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
  --exit-on-stdin-eof           exit when standard input closes (used by `dev`, so
                                nodes never outlive it)
  -h, --help                    this help
";

const DEV_HELP: &str = "\
raftnode dev: run a local cluster on loopback in one command

Usage:
  raftnode dev [--nodes N] [--data-dir DIR] [--base-port P]

Node i serves clients on 127.0.0.1:(P+i-1) and peers on 127.0.0.1:(P+100+i-1).
Ctrl-C (or killing this process) stops every node. Running it again resumes
the same data.

Options:
  --nodes N        how many nodes [default: 3]
  --data-dir DIR   where their data goes, one dir per node [default: ./raftnode-dev]
  --base-port P    first client port [default: 7001]
  -h, --help       this help
";

const CLI_HELP: &str = "\
raftnode cli: send commands to a raftnode cluster

Usage:
  raftnode cli [--addr HOST:PORT] [COMMAND ARG...]

With a command, sends it, prints the reply and exits (status 1 on an error
reply). Without one, opens an interactive prompt. Follows MOVED redirects to
the leader and retries TRYAGAIN, TIMEOUT and lost connections for up to 10 s;
writes go out as SEQ n under a random CLIENT ID, so a retry is never applied
twice.

Options:
  --addr HOST:PORT   a node's client address [default: 127.0.0.1:7001]
  -h, --help         this help
";

/// A failure of the command line itself.
#[derive(Debug)]
enum CliError {
    /// Bad flags: print the message and point at --help.
    Usage(String),
    /// Anything else: one line saying what and where.
    Fatal(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Fatal(m) => f.write_str(m),
        }
    }
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

fn fatal(msg: impl fmt::Display) -> CliError {
    CliError::Fatal(msg.to_string())
}

/// The entry point of the binary.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(CliError::Usage(msg)) => {
            eprintln!("raftnode: {msg} (see raftnode --help)");
            ExitCode::from(2)
        }
        Err(CliError::Fatal(msg)) => {
            eprintln!("raftnode: error: {msg}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(args: &[String]) -> Result<ExitCode, CliError> {
    match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("dev") => dev(&args[1..]),
        Some("cli") => cli(&args[1..]),
        Some("-h") | Some("--help") | Some("help") | None => {
            print!("{MAIN_HELP}");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => Err(usage(format!("unknown subcommand {other:?}"))),
    }
}

/// Parsed `--flag value` / `--flag=value` options, plus what follows them.
struct Flags {
    values: Vec<(String, String)>,
    switches: Vec<String>,
    rest: Vec<String>,
}

impl Flags {
    /// `with_value` and `switches` list the flags this subcommand knows;
    /// `stop_at_positional` lets `cli` pass its command through untouched.
    fn parse(
        args: &[String],
        with_value: &[&str],
        switches: &[&str],
        stop_at_positional: bool,
    ) -> Result<Flags, CliError> {
        let mut flags = Flags {
            values: Vec::new(),
            switches: Vec::new(),
            rest: Vec::new(),
        };
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if !arg.starts_with('-') || arg == "-" {
                if stop_at_positional {
                    flags.rest = args[i - 1..].to_vec();
                    break;
                }
                return Err(usage(format!("unexpected argument {arg:?}")));
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            if switches.contains(&name.as_str()) {
                if inline.is_some() {
                    return Err(usage(format!("{name} takes no value")));
                }
                flags.switches.push(name);
            } else if with_value.contains(&name.as_str()) {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let v = args
                            .get(i)
                            .ok_or_else(|| usage(format!("{name} needs a value")))?;
                        i += 1;
                        v.clone()
                    }
                };
                flags.values.push((name, value));
            } else {
                return Err(usage(format!("unknown option {name}")));
            }
        }
        Ok(flags)
    }

    fn has(&self, switch: &str) -> bool {
        self.switches.iter().any(|s| s == switch)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// An on/off option.
    fn switch_value(&self, name: &str, default: bool) -> Result<bool, CliError> {
        match self.get(name) {
            None => Ok(default),
            Some("on") | Some("true") | Some("yes") => Ok(true),
            Some("off") | Some("false") | Some("no") => Ok(false),
            Some(other) => Err(usage(format!("{name} expects on or off, got {other:?}"))),
        }
    }

    fn required(&self, name: &str) -> Result<&str, CliError> {
        self.get(name)
            .ok_or_else(|| usage(format!("missing required option {name}")))
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, CliError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| usage(format!("{name} expects a number, got {v:?}"))),
        }
    }
}

fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("info");
    let _ = env_logger::Builder::from_env(env).try_init();
}

fn parse_node_id(text: &str, what: &str) -> Result<NodeId, CliError> {
    match text.parse::<NodeId>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(usage(format!(
            "{what} must be a positive integer, got {text:?}"
        ))),
    }
}

fn check_addr(addr: &str, flag: &str) -> Result<(), CliError> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(usage(format!("{flag} expects HOST:PORT, got {addr:?}"))),
    }
}

// ----- run -------------------------------------------------------------------

fn run(args: &[String]) -> Result<ExitCode, CliError> {
    let flags = Flags::parse(
        args,
        &[
            "--id",
            "--data-dir",
            "--raft-addr",
            "--client-addr",
            "--peer",
            "--cluster-id",
            "--election-timeout-ms",
            "--heartbeat-ms",
            "--read-mode",
            "--pre-vote",
            "--check-quorum",
        ],
        &["-h", "--help", "--exit-on-stdin-eof"],
        false,
    )?;
    if flags.has("-h") || flags.has("--help") {
        print!("{RUN_HELP}");
        return Ok(ExitCode::SUCCESS);
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
    config.peers = peers;
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
    // A tick fine enough for the timings asked for.
    let finest = heartbeat.min(config.election_timeout_min.as_millis() as u64);
    config.tick = Duration::from_millis((finest / 5).clamp(1, 10));
    config.core_config().map_err(|e| usage(e.to_string()))?;

    init_logging();
    let client_listener = TcpListener::bind(&client_addr)
        .map_err(|e| fatal(format!("cannot listen for clients on {client_addr}: {e}")))?;
    let bound = client_listener
        .local_addr()
        .map_err(|e| fatal(format!("cannot listen for clients on {client_addr}: {e}")))?;
    // Advertise what the operator wrote (it is what other machines can reach),
    // unless the port was left to the OS.
    config.client_addr = Some(if client_addr.ends_with(":0") {
        bound.to_string()
    } else {
        client_addr.clone()
    });
    let exit_on_eof = flags.has("--exit-on-stdin-eof");
    let node = Arc::new(Node::start(config, Kv::new()).map_err(fatal)?);
    let _server = Server::start(node.clone(), client_listener)
        .map_err(|e| fatal(format!("cannot serve clients on {client_addr}: {e}")))?;
    log::info!(
        "node {id}: up; peers on {}, clients on {bound}",
        node.raft_addr()
    );
    if exit_on_eof {
        // The parent holds our stdin open; when it dies, for whatever reason,
        // the pipe closes and we follow.
        let mut sink = [0u8; 64];
        let mut stdin = io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        log::info!("node {id}: standard input closed; exiting");
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::park();
    }
}

// ----- dev -------------------------------------------------------------------

fn dev(args: &[String]) -> Result<ExitCode, CliError> {
    let flags = Flags::parse(
        args,
        &["--nodes", "--data-dir", "--base-port"],
        &["-h", "--help"],
        false,
    )?;
    if flags.has("-h") || flags.has("--help") {
        print!("{DEV_HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let nodes: u64 = flags.number("--nodes", 3)?;
    if !(1..=99).contains(&nodes) {
        return Err(usage("--nodes must be between 1 and 99"));
    }
    let base: u16 = flags.number("--base-port", 7001)?;
    if u32::from(base) + 100 + nodes as u32 > 65535 || base == 0 {
        return Err(usage(format!(
            "--base-port {base} leaves no room for {nodes} nodes"
        )));
    }
    let dir = PathBuf::from(flags.get("--data-dir").unwrap_or("./raftnode-dev"));
    let client_port = |i: u64| base + (i - 1) as u16;
    let raft_port = |i: u64| base + 100 + (i - 1) as u16;

    // The membership is fixed by the first run: starting the same data with
    // another member count would make the nodes disagree on what a majority is.
    std::fs::create_dir_all(&dir)
        .map_err(|e| fatal(format!("cannot create {}: {e}", dir.display())))?;
    let marker = dir.join("dev-nodes");
    match std::fs::read_to_string(&marker) {
        Ok(text) if text.trim() != nodes.to_string() => {
            return Err(fatal(format!(
                "{} holds a {}-node dev cluster; run with --nodes {} or another --data-dir",
                dir.display(),
                text.trim(),
                text.trim()
            )))
        }
        Ok(_) => {}
        Err(_) => std::fs::write(&marker, format!("{nodes}\n"))
            .map_err(|e| fatal(format!("cannot write {}: {e}", marker.display())))?,
    }
    for i in 1..=nodes {
        for port in [client_port(i), raft_port(i)] {
            TcpListener::bind(("127.0.0.1", port))
                .map_err(|e| fatal(format!("port 127.0.0.1:{port} is not free: {e}")))?;
        }
    }

    let exe = std::env::current_exe()
        .map_err(|e| fatal(format!("cannot find the raftnode binary: {e}")))?;
    let mut children: Vec<(u64, Child)> = Vec::new();
    for i in 1..=nodes {
        let mut cmd = Command::new(&exe);
        cmd.arg("run")
            .args(["--id", &i.to_string()])
            .arg("--data-dir")
            .arg(dir.join(format!("node-{i}")))
            .args(["--raft-addr", &format!("127.0.0.1:{}", raft_port(i))])
            .args(["--client-addr", &format!("127.0.0.1:{}", client_port(i))])
            .args(["--cluster-id", "raftnode-dev", "--exit-on-stdin-eof"])
            .stdin(Stdio::piped());
        for j in (1..=nodes).filter(|&j| j != i) {
            cmd.args(["--peer", &format!("{j}=127.0.0.1:{}", raft_port(j))]);
        }
        match cmd.spawn() {
            Ok(child) => children.push((i, child)),
            Err(e) => {
                stop_all(&mut children);
                return Err(fatal(format!("cannot start node {i}: {e}")));
            }
        }
    }

    println!(
        "raftnode dev cluster: {nodes} node(s), data in {}",
        dir.display()
    );
    for i in 1..=nodes {
        println!(
            "  node {i}: clients 127.0.0.1:{}  peers 127.0.0.1:{}",
            client_port(i),
            raft_port(i)
        );
    }
    println!(
        "Connect to any node (followers redirect writes with MOVED):\n  \
         nc 127.0.0.1 {base}      (then type: SET greeting hello)\n  \
         redis-cli -c -p {base}\n  \
         raftnode cli --addr 127.0.0.1:{base}\n\
         Ctrl-C stops every node."
    );
    let _ = io::stdout().flush();

    // Watch the nodes: if one dies, stop the rest rather than limp on.
    loop {
        for (i, child) in &mut children {
            if let Ok(Some(status)) = child.try_wait() {
                let i = *i;
                stop_all(&mut children);
                return Err(fatal(format!(
                    "node {i} exited ({status}); stopped the other nodes"
                )));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stop_all(children: &mut Vec<(u64, Child)>) {
    for (_, child) in children.iter_mut() {
        let _ = child.kill();
    }
    for (_, child) in children.iter_mut() {
        let _ = child.wait();
    }
    children.clear();
}

// ----- cli -------------------------------------------------------------------

fn cli(args: &[String]) -> Result<ExitCode, CliError> {
    let flags = Flags::parse(args, &["--addr"], &["-h", "--help"], true)?;
    if flags.has("-h") || flags.has("--help") {
        print!("{CLI_HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let addr = flags.get("--addr").unwrap_or("127.0.0.1:7001").to_string();
    check_addr(&addr, "--addr")?;
    let mut client = Client::new(addr);
    if !flags.rest.is_empty() {
        let command: Vec<Vec<u8>> = flags.rest.iter().map(|a| a.as_bytes().to_vec()).collect();
        let reply = client.call(&command).map_err(fatal)?;
        println!("{}", resp::render_human(&reply));
        return Ok(match reply {
            Reply::Error(_) => ExitCode::from(1),
            _ => ExitCode::SUCCESS,
        });
    }
    interactive(&mut client)
}

fn interactive(client: &mut Client) -> Result<ExitCode, CliError> {
    let stdin = io::stdin();
    let mut lines = stdin.lock();
    loop {
        print!("{}> ", client.addr);
        let _ = io::stdout().flush();
        let mut line = String::new();
        match lines.read_line(&mut line) {
            Ok(0) => return Ok(ExitCode::SUCCESS),
            Ok(_) => {}
            Err(e) => return Err(fatal(format!("reading standard input: {e}"))),
        }
        let words = match resp::split_args(line.as_bytes()) {
            Ok(words) if words.is_empty() => continue,
            Ok(words) => words,
            Err(e) => {
                println!("(error) {e}");
                continue;
            }
        };
        if words[0].eq_ignore_ascii_case(b"exit") {
            return Ok(ExitCode::SUCCESS);
        }
        match client.call(&words) {
            Ok(reply) => println!("{}", resp::render_human(&reply)),
            Err(e) => println!("(error) {e}"),
        }
        if words[0].eq_ignore_ascii_case(b"quit") {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// A minimal client that follows the cluster's redirects and retries writes
/// safely: it names itself with a random client id (`CLIENT ID`) and sends
/// each write as `SEQ n ...`, so a retry after a TIMEOUT or a lost connection
/// is never applied twice.
struct Client {
    addr: String,
    conn: Option<(TcpStream, BufReader<TcpStream>)>,
    client_id: u64,
    seq: u64,
    /// Connection failures are retried only once a node has answered: a
    /// wrong address should fail at once, a node dying mid-write should not.
    ever_connected: bool,
}

/// Writes, which [`Client`] wraps in `SEQ`.
const WRITES: &[&str] = &["SET", "DEL", "CAS", "INCR", "APPEND"];

impl Client {
    fn new(addr: String) -> Client {
        Client {
            addr,
            conn: None,
            client_id: rand::random::<u64>().max(1),
            seq: 0,
            ever_connected: false,
        }
    }

    fn connect(&mut self) -> Result<&mut (TcpStream, BufReader<TcpStream>), String> {
        if self.conn.is_none() {
            let sockaddr = self
                .addr
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {}: {e}", self.addr))?
                .next()
                .ok_or_else(|| format!("no address for {}", self.addr))?;
            let stream = TcpStream::connect_timeout(&sockaddr, Duration::from_secs(2))
                .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
            let reader = BufReader::new(
                stream
                    .try_clone()
                    .map_err(|e| format!("cannot use connection to {}: {e}", self.addr))?,
            );
            self.conn = Some((stream, reader));
            self.ever_connected = true;
            let id = self.client_id.to_string();
            let hello = [b"CLIENT".to_vec(), b"ID".to_vec(), id.into_bytes()];
            match self.send_and_read(&hello)? {
                Reply::Simple(_) => {}
                other => return Err(format!("CLIENT ID refused: {}", resp::render_human(&other))),
            }
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Sends one command. Follows MOVED; retries TRYAGAIN, TIMEOUT and lost
    /// connections for a while — writes under the same sequence number, so a
    /// retry that races the original is answered, not applied again.
    fn call(&mut self, command: &[Vec<u8>]) -> Result<Reply, String> {
        let name = String::from_utf8_lossy(&command[0]).to_ascii_uppercase();
        let command: Vec<Vec<u8>> = if WRITES.contains(&name.as_str()) {
            self.seq += 1;
            let mut wrapped = vec![b"SEQ".to_vec(), self.seq.to_string().into_bytes()];
            wrapped.extend_from_slice(command);
            wrapped
        } else {
            command.to_vec()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut redirects = 0;
        loop {
            let reply = match self.call_once(&command) {
                Ok(reply) => reply,
                Err(e) if self.ever_connected && Instant::now() < deadline => {
                    eprintln!("({e}; retrying)");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Reply::Error(text) = &reply else {
                return Ok(reply);
            };
            if let Some(rest) = text.strip_prefix("MOVED ") {
                let target = rest.split_whitespace().nth(1).unwrap_or_default();
                if redirects < 5 && !target.is_empty() {
                    redirects += 1;
                    self.addr = target.to_string();
                    self.conn = None;
                    continue;
                }
            } else if (text.starts_with("TRYAGAIN") || text.starts_with("TIMEOUT"))
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            return Ok(reply);
        }
    }

    fn call_once(&mut self, command: &[Vec<u8>]) -> Result<Reply, String> {
        self.connect()?;
        self.send_and_read(command)
    }

    fn send_and_read(&mut self, command: &[Vec<u8>]) -> Result<Reply, String> {
        let addr = self.addr.clone();
        let Some((stream, reader)) = self.conn.as_mut() else {
            return Err(format!("not connected to {addr}"));
        };
        let mut buf = Vec::new();
        let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
        resp::encode_command(&args, &mut buf);
        let result = stream
            .write_all(&buf)
            .map_err(|e| format!("sending to {addr}: {e}"))
            .and_then(|()| {
                resp::read_reply(reader, &Limits::default())
                    .map_err(|e| format!("reading from {addr}: {e}"))
            });
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}
