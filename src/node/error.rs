//! The errors a node reports to its callers.

use super::config::ConfigError;
use crate::codec::CodecError;
use crate::raft::message::NodeId;
use crate::storage::StorageError;
use std::fmt;
use std::io;
use std::sync::Arc;

/// Why a request was not (or may not have been) carried out.
#[derive(Debug, Clone)]
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
    Storage(Arc<StorageError>),
    /// A command or a reply could not be encoded or decoded: a bug, since
    /// both ends are this program. Nothing was proposed if encoding failed.
    Codec(CodecError),
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
            Error::Codec(e) => write!(f, "cannot encode or decode a command or reply: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Storage(e) => Some(e.as_ref()),
            Error::Codec(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a node could not start.
#[derive(Debug)]
pub enum StartError {
    /// The settings contradict each other.
    Config(ConfigError),
    /// The data dir could not be opened or read back.
    Storage(StorageError),
    /// The peer port could not be opened.
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

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Config(e) => Some(e),
            StartError::Storage(e) => Some(e),
            StartError::Bind { source, .. } => Some(source),
        }
    }
}

impl From<StorageError> for StartError {
    fn from(e: StorageError) -> StartError {
        StartError::Storage(e)
    }
}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> StartError {
        StartError::Config(e)
    }
}
