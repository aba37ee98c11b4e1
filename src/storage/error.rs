//! Why storage failed: every variant names the file or dir concerned, so an
//! operator reading the error knows where to look.

use crate::codec::CodecError;
use crate::raft::message::{Index, NodeId, Term};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why the data dir could not be opened, read or written. Every variant
/// names the file or dir concerned.
#[derive(Debug)]
pub enum StorageError {
    /// An operating-system call failed (including a full disk).
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// A file's contents are not what this module writes.
    Corrupt {
        path: PathBuf,
        offset: Option<u64>,
        reason: String,
    },
    /// `meta` says the dir is initialized but one of its files is gone.
    Missing { path: PathBuf },
    /// The dir was initialized for another node.
    WrongNode {
        path: PathBuf,
        expected: NodeId,
        found: NodeId,
    },
    /// The dir was initialized for another cluster.
    WrongCluster {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// Another `Storage`, in this process or another, has the dir open.
    Locked { path: PathBuf },
    /// The dir has no `meta` but holds data raftnode did not put there (or
    /// a log), so initializing it could destroy something.
    NotADataDir { path: PathBuf, reason: String },
    /// An append does not continue the log: its entry `found` would follow
    /// entry `expected - 1`.
    Gap {
        path: PathBuf,
        expected: Index,
        found: Index,
    },
    /// An append would put an entry of a lower term after a higher one.
    TermRegression {
        path: PathBuf,
        index: Index,
        term: Term,
        previous_term: Term,
    },
    /// An entry encodes to more than a record may hold.
    TooLarge {
        path: PathBuf,
        index: Index,
        len: usize,
        limit: usize,
    },
    /// A value could not be encoded for writing.
    Encode { path: PathBuf, source: CodecError },
    /// The cluster id cannot be stored in `meta` (it must be one line).
    InvalidClusterId { path: PathBuf, cluster_id: String },
    /// An earlier write or sync of the log failed; see
    /// [`DiskStore`](super::DiskStore).
    Poisoned { path: PathBuf },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use StorageError::*;
        match self {
            Io { path, op, source } => write!(f, "cannot {op} {}: {source}", path.display()),
            Corrupt {
                path,
                offset: Some(offset),
                reason,
            } => write!(
                f,
                "corrupt record in {} at offset {offset}: {reason}",
                path.display()
            ),
            Corrupt {
                path,
                offset: None,
                reason,
            } => write!(f, "corrupt {}: {reason}", path.display()),
            // Deleting or wiping the dir would make the node forget its
            // votes and log (the cluster refuses it then anyway, by its new
            // incarnation), and an older copy of the file is no safer: the
            // way back is through the membership (issue 11).
            Missing { path } => write!(
                f,
                "{} is missing although the data dir is initialized: this node may have \
                 forgotten votes or log entries, so it refuses to go on. Do not delete the \
                 data dir (or put back an old copy of the file) to get past this: remove the \
                 node from the cluster (RAFT.NODE REMOVE <id>, on any other member) and add it \
                 back with an empty data dir and --join",
                path.display()
            ),
            WrongNode {
                path,
                expected,
                found,
            } => write!(
                f,
                "data dir {} belongs to node {found}, not node {expected}",
                path.display()
            ),
            WrongCluster {
                path,
                expected,
                found,
            } => write!(
                f,
                "data dir {} belongs to cluster {found:?}, not cluster {expected:?}",
                path.display()
            ),
            Locked { path } => write!(
                f,
                "data dir {} is already in use by another raftnode",
                path.display()
            ),
            NotADataDir { path, reason } => write!(
                f,
                "{} is not a raftnode data dir: {reason}; refusing to initialize it",
                path.display()
            ),
            Gap {
                path,
                expected,
                found,
            } => write!(
                f,
                "cannot append entry {found} to {}: the next entry must be {expected}",
                path.display()
            ),
            TermRegression {
                path,
                index,
                term,
                previous_term,
            } => write!(
                f,
                "cannot append entry {index} of term {term} to {}: \
                 it would follow an entry of term {previous_term}",
                path.display()
            ),
            TooLarge {
                path,
                index,
                len,
                limit,
            } => write!(
                f,
                "cannot append entry {index} to {}: it encodes to {len} bytes, \
                 more than the {limit} a record may hold",
                path.display()
            ),
            Encode { path, source } => {
                write!(f, "cannot encode a value for {}: {source}", path.display())
            }
            InvalidClusterId { path, cluster_id } => write!(
                f,
                "cannot use cluster id {cluster_id:?} for data dir {}: \
                 it must be non-empty and one line",
                path.display()
            ),
            Poisoned { path } => write!(
                f,
                "{} is in an unknown state after an earlier write or sync failed; \
                 restart the node to recover it",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            StorageError::Encode { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand for wrapping an `io::Error` with the path and operation.
pub(super) fn io_err<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// A file the initialized dir must have is absent: that is [`Missing`], not
/// a plain I/O error, so nobody mistakes it for something transient.
///
/// [`Missing`]: StorageError::Missing
pub(super) fn missing_or_io(path: &Path, op: &'static str, e: io::Error) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound {
        StorageError::Missing {
            path: path.to_path_buf(),
        }
    } else {
        io_err(path, op)(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_advises_remove_and_add_back_never_wiping() {
        let e = StorageError::Missing {
            path: PathBuf::from("/data/node-2/hard_state"),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("/data/node-2/hard_state is missing"),
            "{text}"
        );
        assert!(text.contains("RAFT.NODE REMOVE <id>"), "{text}");
        assert!(text.contains("empty data dir and --join"), "{text}");
        assert!(!text.contains("wipe"), "{text}");
    }

    #[test]
    fn an_io_error_names_the_file_the_operation_and_the_os_error() {
        let e = StorageError::Io {
            path: PathBuf::from("/data/node-2/log-00000000000000000001"),
            op: "fsync",
            source: io::Error::from_raw_os_error(5),
        };
        assert_eq!(
            e.to_string(),
            format!(
                "cannot fsync /data/node-2/log-00000000000000000001: {}",
                io::Error::from_raw_os_error(5)
            )
        );
    }
}
