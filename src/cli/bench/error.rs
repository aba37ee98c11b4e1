//! Why a benchmark could not run, each printed as one line.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A failure of `raftnode bench` once its flags are read.
#[derive(Debug)]
pub(crate) enum BenchError {
    /// A directory or file of the benchmark's own could not be made.
    Io {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
    /// A thread (a client, the echo server of the round-trip floor) could
    /// not be started.
    Thread { name: String, source: io::Error },
    /// The loopback round-trip floor could not be measured.
    Loopback(io::Error),
    /// A node of the local cluster could not be started, or exited.
    Cluster {
        what: String,
        /// The last lines each node wrote to its log, to say why.
        tails: String,
    },
    /// No node named a leader in time.
    NoLeader { waited_secs: u64, tails: String },
    /// The key space could not be filled before a GET run.
    Prefill { addr: String, what: String },
    /// Ctrl-C.
    Interrupted,
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Io { what, path, source } => {
                write!(f, "cannot {what} {}: {source}", path.display())
            }
            BenchError::Thread { name, source } => {
                write!(f, "cannot start the {name} thread: {source}")
            }
            BenchError::Loopback(e) => write!(f, "loopback round trip: {e}"),
            BenchError::Cluster { what, tails } => write!(f, "{what}{tails}"),
            BenchError::NoLeader { waited_secs, tails } => {
                write!(f, "no leader within {waited_secs} s{tails}")
            }
            BenchError::Prefill { addr, what } => {
                write!(f, "filling the key space on {addr}: {what}")
            }
            BenchError::Interrupted => f.write_str("interrupted"),
        }
    }
}

impl std::error::Error for BenchError {}
