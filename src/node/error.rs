//! The errors a node reports to its callers.

use super::config::ConfigError;
use crate::codec::CodecError;
use crate::raft::membership::ChangeError;
use crate::raft::message::{Index, NodeId};
use crate::raft::TransferError;
use crate::storage::StorageError;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

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
    /// The leader is handing its leadership to `target` (§3.10) and takes no
    /// writes meanwhile; nothing was proposed. Retry shortly.
    Transferring { target: NodeId },
    /// A membership change was refused; nothing was proposed.
    Change(ChangeError),
    /// A leadership transfer could not start.
    Transfer(TransferError),
    /// A leadership transfer to `target` was started but `target` did not
    /// take over within `within`; this node leads (and takes writes) again.
    TransferTimedOut { target: NodeId, within: Duration },
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
            Error::Transferring { target } => {
                write!(f, "leadership is being transferred to node {target}; retry")
            }
            Error::Change(e) => e.fmt(f),
            Error::Transfer(e) => e.fmt(f),
            Error::TransferTimedOut { target, within } => write!(
                f,
                "transfer to {target} did not complete within {} ms",
                within.as_millis()
            ),
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
    /// This data dir's node was removed from the cluster (by the entry at
    /// `index`); it must not take part again under this identity.
    Removed { id: NodeId, index: Index },
    /// The data dir holds a log but no configuration, and none was given.
    NoConfiguration { id: NodeId },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "invalid configuration: {e}"),
            StartError::Storage(e) => e.fmt(f),
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Removed { id, index } => write!(
                f,
                "node {id} was removed from the cluster at index {index}; this data dir cannot \
                 rejoin. To bring the machine back, start it with an empty data dir and --join"
            ),
            StartError::NoConfiguration { id } => write!(
                f,
                "node {id}'s data dir holds a log from a release that kept the members in \
                 flags; start it once more with its --peer flags so they can be recorded"
            ),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Config(e) => Some(e),
            StartError::Storage(e) => Some(e),
            StartError::Bind { source, .. } => Some(source),
            StartError::Removed { .. } | StartError::NoConfiguration { .. } => None,
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
