//! The command line's failures, each printed as one line.

use super::dev::DevError;
use crate::node::StartError;
use crate::redis::client::ClientError;
use std::fmt;
use std::io;

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
    Dev(DevError),
    /// `cli` got no reply.
    Client(ClientError),
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
            CliError::Dev(e) => e.fmt(f),
            CliError::Client(e) => e.fmt(f),
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
