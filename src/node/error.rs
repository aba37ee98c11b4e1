//! The errors a node reports to its callers.

use crate::raft::message::NodeId;
use crate::storage::StorageError;
use std::fmt;
use std::io;

/// Why a request was not (or may not have been) carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// This node is not the leader; the request was not applied. `leader` is
    /// the current leader if this node knows it.
    NotLeader { leader: Option<NodeId> },
    /// The write was proposed but not seen committed in time: it may or may not
    /// have taken effect, and may still take effect later.
    Timeout,
    /// The node is shutting down; a write in progress may or may not have
    /// taken effect.
    ShutDown,
    /// The command is larger than any peer frame can carry; not applied.
    CommandTooLarge { len: usize, limit: usize },
    /// The node's storage failed and it stopped serving; the write may or may
    /// not have taken effect.
    Storage(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotLeader { leader: Some(id) } => write!(f, "not the leader; node {id} is"),
            Error::NotLeader { leader: None } => f.write_str("not the leader; no leader known"),
            Error::Timeout => f.write_str("timed out waiting for commit; outcome unknown"),
            Error::ShutDown => f.write_str("node is shutting down; outcome unknown"),
            Error::CommandTooLarge { len, limit } => {
                write!(f, "command of {len} bytes exceeds the {limit}-byte limit")
            }
            Error::Storage(e) => write!(f, "storage failed, node stopped: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// Why a node could not start.
#[derive(Debug)]
pub enum StartError {
    Config(String),
    Storage(StorageError),
    Bind { addr: String, source: io::Error },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "invalid configuration: {e}"),
            StartError::Storage(e) => e.fmt(f),
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<StorageError> for StartError {
    fn from(e: StorageError) -> StartError {
        StartError::Storage(e)
    }
}
