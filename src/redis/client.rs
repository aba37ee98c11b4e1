//! A small client for a raftnode cluster, used by `raftnode cli`: it follows
//! the cluster's redirects and retries writes safely.
//!
//! It names itself with a random client id (`CLIENT ID`) and sends each
//! write as `SEQ n ...`, so a retry after a TIMEOUT or a lost connection is
//! answered from the client's session, never applied twice (§6.3 of the
//! Raft dissertation).

use super::resp::{self, Limits, Reply, RespError};
use std::fmt;
use std::io::{self, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long [`Client::call`] keeps retrying, unless told otherwise
/// ([`Client::retry_for`]).
const RETRY_FOR: Duration = Duration::from_secs(10);
/// The most MOVED redirects one call follows.
const MAX_REDIRECTS: usize = 5;

/// Whether [`Client`] wraps `name` (in capitals) in `SEQ`: every command
/// the command table flags as a write on the store.
fn is_write(name: &str) -> bool {
    name != "SEQ"
        && super::catalog::find(name.as_bytes()).is_some_and(|spec| spec.flags.contains(&"write"))
}

/// Why a call got no reply.
#[derive(Debug)]
pub enum ClientError {
    Resolve {
        addr: String,
        source: io::Error,
    },
    NoAddress {
        addr: String,
    },
    Connect {
        addr: String,
        source: io::Error,
    },
    Send {
        addr: String,
        source: io::Error,
    },
    Receive {
        addr: String,
        source: RespError,
    },
    /// The node would not take this client's id.
    SessionRefused {
        reply: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Resolve { addr, source } => write!(f, "cannot resolve {addr}: {source}"),
            ClientError::NoAddress { addr } => write!(f, "no address for {addr}"),
            ClientError::Connect { addr, source } => {
                write!(f, "cannot connect to {addr}: {source}")
            }
            ClientError::Send { addr, source } => write!(f, "sending to {addr}: {source}"),
            ClientError::Receive { addr, source } => write!(f, "reading from {addr}: {source}"),
            ClientError::SessionRefused { reply } => write!(f, "CLIENT ID refused: {reply}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The node could not be reached at all (rather than failing midway).
    fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Resolve { .. }
                | ClientError::NoAddress { .. }
                | ClientError::Connect { .. }
        )
    }
}

struct Connection {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

/// A connection to one node at a time, following MOVED to the leader.
pub struct Client {
    /// The addresses it was given, tried in turn when a node cannot be
    /// reached.
    seeds: Vec<String>,
    next_seed: usize,
    addr: String,
    conn: Option<Connection>,
    client_id: u64,
    seq: u64,
    /// Connection failures are retried only once a node has answered: a
    /// wrong address should fail at once, a node dying mid-write should not.
    ever_connected: bool,
    /// How long a call keeps retrying.
    retry_for: Duration,
    /// Told about each failure that is about to be retried.
    on_retry: Box<dyn FnMut(&ClientError)>,
    /// After MULTI: the commands queued since. A transaction lives on one
    /// connection, so on a new one (a redirect, a lost connection, or EXEC
    /// retried) they are sent again after a fresh MULTI.
    transaction: Option<Vec<Vec<Vec<u8>>>>,
}

impl Client {
    pub fn new(addr: String) -> Client {
        Client::with_seeds(vec![addr])
    }

    /// A client that starts at the first of `seeds` and moves on to the next
    /// whenever the node it talks to cannot be reached. Panics if `seeds` is
    /// empty.
    pub fn with_seeds(seeds: Vec<String>) -> Client {
        assert!(!seeds.is_empty(), "a client needs at least one address");
        Client {
            addr: seeds[0].clone(),
            next_seed: 1 % seeds.len(),
            seeds,
            conn: None,
            client_id: rand::random::<u64>().max(1),
            seq: 0,
            ever_connected: false,
            retry_for: RETRY_FOR,
            on_retry: Box::new(|_| {}),
            transaction: None,
        }
    }

    /// Calls `notice` for every failure that is retried.
    pub fn on_retry(mut self, notice: impl FnMut(&ClientError) + 'static) -> Client {
        self.on_retry = Box::new(notice);
        self
    }

    /// How long each call keeps retrying TRYAGAIN, TIMEOUT and lost
    /// connections (10 s by default). Zero: one attempt, following MOVED
    /// redirects only, for callers that retry in their own way.
    pub fn retry_for(mut self, duration: Duration) -> Client {
        self.retry_for = duration;
        self
    }

    /// The node this client talks to now.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one command. Follows MOVED; retries TRYAGAIN, TIMEOUT and lost
    /// connections for a while — writes under the same sequence number, so a
    /// retry that races the original is answered, not applied again.
    ///
    /// Inside MULTI, writes go out plain (they are only queued) and EXEC goes
    /// out as `SEQ n EXEC`, so that the whole transaction is exactly-once.
    pub fn call(&mut self, command: &[Vec<u8>]) -> Result<Reply, ClientError> {
        let name = String::from_utf8_lossy(&command[0]).to_ascii_uppercase();
        let in_transaction = self.transaction.is_some();
        let sequenced = match name.as_str() {
            "EXEC" => in_transaction,
            _ => !in_transaction && is_write(&name),
        };
        let reply = self.call_sequenced(command, sequenced)?;
        match (name.as_str(), &reply) {
            ("MULTI", Reply::Simple(_)) if !in_transaction => self.transaction = Some(Vec::new()),
            ("EXEC" | "DISCARD", _) => self.transaction = None,
            (_, _) => {
                if let Some(queued) = &mut self.transaction {
                    queued.push(command.to_vec());
                }
            }
        }
        Ok(reply)
    }

    fn call_sequenced(
        &mut self,
        command: &[Vec<u8>],
        sequenced: bool,
    ) -> Result<Reply, ClientError> {
        let is_exec = command[0].eq_ignore_ascii_case(b"EXEC");
        let command: Vec<Vec<u8>> = if sequenced {
            self.seq += 1;
            let mut wrapped = vec![b"SEQ".to_vec(), self.seq.to_string().into_bytes()];
            wrapped.extend_from_slice(command);
            wrapped
        } else {
            command.to_vec()
        };
        let deadline = Instant::now() + self.retry_for;
        let mut redirects = 0;
        let mut unreachable = 0;
        loop {
            let reply = match self.call_once(&command) {
                Ok(reply) => reply,
                // A node that cannot be reached: try the next seed, and
                // after a whole round of them, wait a little. Until some node
                // has answered, a round of failures is final: the addresses
                // are probably wrong.
                Err(e) if e.is_unreachable() => {
                    unreachable += 1;
                    let round_failed = unreachable % self.seeds.len() == 0;
                    if (round_failed && !self.ever_connected) || Instant::now() >= deadline {
                        return Err(e);
                    }
                    (self.on_retry)(&e);
                    self.addr = self.seeds[self.next_seed].clone();
                    self.next_seed = (self.next_seed + 1) % self.seeds.len();
                    if round_failed {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    continue;
                }
                Err(e) if self.ever_connected && Instant::now() < deadline => {
                    (self.on_retry)(&e);
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
                if redirects < MAX_REDIRECTS && !target.is_empty() {
                    redirects += 1;
                    self.addr = target.to_string();
                    self.conn = None;
                    continue;
                }
            } else if text.starts_with("SESSIONEXPIRED") {
                // Not retried: the outcome is unknown, and a retry under any
                // number would be refused the same way. Later writes go out
                // under a new client id, from SEQ 1.
                self.client_id = rand::random::<u64>().max(1);
                self.seq = 0;
                self.conn = None;
                return Ok(reply);
            } else if (text.starts_with("TRYAGAIN") || text.starts_with("TIMEOUT"))
                && Instant::now() < deadline
            {
                if is_exec {
                    // EXEC ended the transaction on that connection: start
                    // afresh, MULTI and all.
                    self.conn = None;
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            return Ok(reply);
        }
    }

    fn call_once(&mut self, command: &[Vec<u8>]) -> Result<Reply, ClientError> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let mut conn = self.connect()?;
                // A new connection has no transaction yet: open it again.
                if let Some(queued) = &self.transaction {
                    let multi = [b"MULTI".to_vec()];
                    for earlier in std::iter::once(&multi[..]).chain(queued.iter().map(|c| &c[..]))
                    {
                        exchange(&mut conn, &self.addr, earlier)?;
                    }
                }
                conn
            }
        };
        // A connection that failed is dropped; the next call reconnects.
        let reply = exchange(&mut conn, &self.addr, command)?;
        self.conn = Some(conn);
        Ok(reply)
    }

    /// Connects and names this client, so that `SEQ` works.
    fn connect(&mut self) -> Result<Connection, ClientError> {
        let addr = self.addr.clone();
        let sockaddr = addr
            .to_socket_addrs()
            .map_err(|source| ClientError::Resolve {
                addr: addr.clone(),
                source,
            })?
            .next()
            .ok_or_else(|| ClientError::NoAddress { addr: addr.clone() })?;
        let connect_error = |source| ClientError::Connect {
            addr: addr.clone(),
            source,
        };
        let stream =
            TcpStream::connect_timeout(&sockaddr, Duration::from_secs(2)).map_err(connect_error)?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
        let reader = BufReader::new(stream.try_clone().map_err(connect_error)?);
        let mut conn = Connection { stream, reader };
        self.ever_connected = true;
        let id = self.client_id.to_string();
        let hello = [b"CLIENT".to_vec(), b"ID".to_vec(), id.into_bytes()];
        match exchange(&mut conn, &addr, &hello)? {
            Reply::Simple(_) => Ok(conn),
            other => Err(ClientError::SessionRefused {
                reply: resp::render_human(&other),
            }),
        }
    }
}

/// Sends `command` on `conn` and reads the reply.
fn exchange(conn: &mut Connection, addr: &str, command: &[Vec<u8>]) -> Result<Reply, ClientError> {
    let mut buf = Vec::new();
    let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
    resp::encode_command(&args, &mut buf);
    conn.stream
        .write_all(&buf)
        .map_err(|source| ClientError::Send {
            addr: addr.to_string(),
            source,
        })?;
    resp::read_reply(&mut conn.reader, &Limits::default()).map_err(|source| ClientError::Receive {
        addr: addr.to_string(),
        source,
    })
}
