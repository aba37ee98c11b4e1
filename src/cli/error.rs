//! The command line's failures, each printed as one line.

use crate::node::StartError;
use crate::redis::client::ClientError;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// A failure of the command line itself.
#[derive(Debug)]
pub(super) enum CliError {
    /// Bad flags: print the message and point at --help.
    Usage(String),
    /// The node would not start.
    Start(StartError),
    /// The client port could not be opened.
    ClientPort {
        addr: String,
        source: io::Error,
    },
    /// The client port's thread could not be started.
    ServeClients {
        addr: String,
        source: io::Error,
    },
    /// The metrics port could not be opened.
    MetricsPort {
        addr: String,
        source: io::Error,
    },
    /// The metrics endpoint's threads could not be started.
    ServeMetrics {
        addr: String,
        source: io::Error,
    },
    Dev(DevError),
    /// `run --join`: the cluster definitely refused to add this node.
    JoinRefused {
        via: String,
        reason: String,
    },
    /// A helper thread of `run` could not be started.
    Thread {
        name: &'static str,
        source: io::Error,
    },
    /// `cli` got no reply.
    Client(ClientError),
    /// `cli status` could not list the members.
    Status(StatusError),
    Stdin(io::Error),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) => f.write_str(m),
            CliError::Start(e) => e.fmt(f),
            CliError::ClientPort { addr, source } => {
                write!(f, "cannot listen for clients on {addr}: {source}")
            }
            CliError::ServeClients { addr, source } => {
                write!(f, "cannot serve clients on {addr}: {source}")
            }
            CliError::MetricsPort { addr, source } => {
                write!(f, "cannot listen for metrics scrapes on {addr}: {source}")
            }
            CliError::ServeMetrics { addr, source } => {
                write!(f, "cannot serve metrics on {addr}: {source}")
            }
            CliError::Dev(e) => e.fmt(f),
            CliError::JoinRefused { via, reason } => {
                write!(f, "cannot join the cluster via {via}: {reason}")
            }
            CliError::Thread { name, source } => {
                write!(f, "cannot start the {name} thread: {source}")
            }
            CliError::Client(e) => e.fmt(f),
            CliError::Status(e) => e.fmt(f),
            CliError::Stdin(e) => write!(f, "reading standard input: {e}"),
        }
    }
}

impl From<DevError> for CliError {
    fn from(e: DevError) -> CliError {
        CliError::Dev(e)
    }
}

impl std::error::Error for CliError {}

/// Why a dev cluster could not start or keep running.
#[derive(Debug)]
pub(super) enum DevError {
    CreateDir {
        path: PathBuf,
        source: io::Error,
    },
    /// The data dir holds a cluster of another size.
    OtherSize {
        path: PathBuf,
        nodes: String,
    },
    WriteMarker {
        path: PathBuf,
        source: io::Error,
    },
    PortBusy {
        port: u16,
        source: io::Error,
    },
    NoBinary(io::Error),
    StartNode {
        id: u64,
        source: io::Error,
    },
    NodeExited {
        id: u64,
        status: ExitStatus,
    },
}

impl fmt::Display for DevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DevError::CreateDir { path, source } => {
                write!(f, "cannot create {}: {source}", path.display())
            }
            DevError::OtherSize { path, nodes } => write!(
                f,
                "{} holds a {nodes}-node dev cluster; run with --nodes {nodes} or another --data-dir",
                path.display()
            ),
            DevError::WriteMarker { path, source } => {
                write!(f, "cannot write {}: {source}", path.display())
            }
            DevError::PortBusy { port, source } => {
                write!(f, "port 127.0.0.1:{port} is not free: {source}")
            }
            DevError::NoBinary(e) => write!(f, "cannot find the raftnode binary: {e}"),
            DevError::StartNode { id, source } => write!(f, "cannot start node {id}: {source}"),
            DevError::NodeExited { id, status } => {
                write!(f, "node {id} exited ({status}); stopped the other nodes")
            }
        }
    }
}

/// What `status` could not do at all.
#[derive(Debug)]
pub(super) enum StatusError {
    /// No `--addr` answered RAFT.NODES: what each said.
    NoMembers { tried: Vec<(String, String)> },
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusError::NoMembers { tried } => {
                let tried: Vec<String> = tried.iter().map(|(a, e)| format!("{a}: {e}")).collect();
                write!(f, "cannot list the members: {}", tried.join("; "))
            }
        }
    }
}
