//! The application a node replicates.

use crate::raft::message::Index;
use std::fmt;
use std::io::{self, Read, Write};

/// A deterministic state machine that a [`Node`](super::Node) drives with
/// committed log entries (§5 of the Raft paper: "each server stores a log
/// containing a series of commands, which its state machine executes in
/// order").
///
/// The node knows nothing of what the commands mean: they are bytes in the
/// log, and replies are bytes back to the proposer. The node calls
/// [`apply`](StateMachine::apply) for every committed command, exactly once,
/// in log order, on its apply thread; it calls
/// [`query`](StateMachine::query) for a linearizable read once the state has
/// applied everything the read must see.
///
/// To let the log be compacted (§7), the state machine also writes itself
/// out and reads itself back: [`snapshot`](StateMachine::snapshot) captures
/// the whole state — including whatever `apply` needs to stay deterministic,
/// such as client sessions — and [`restore`](StateMachine::restore)
/// replaces the state with a snapshot's.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies the command of the committed entry at `index` and returns the
    /// reply for the client that proposed it.
    ///
    /// It must be deterministic: the same state, command and index give the
    /// same new state and reply on every node — no clock, no randomness, no
    /// I/O. Every replica has already committed the entry, so it cannot be
    /// refused: a command that makes no sense (an INCR of a word, an
    /// undecodable payload) changes nothing and says so in its reply.
    fn apply(&mut self, index: Index, command: &[u8]) -> Vec<u8>;

    /// Answers a read-only query against the current state.
    fn query(&self, query: &[u8]) -> Vec<u8>;

    /// Captures the state as it is now, cheaply: the node calls it on the
    /// apply thread between two entries and writes the result out on
    /// another thread while `apply` goes on, so it must not copy the whole
    /// state (share it copy-on-write instead).
    fn snapshot(&self) -> Box<dyn StateSnapshot>;

    /// Replaces the whole state with the one `payload` (written by a
    /// [`StateSnapshot`]) describes, read as a stream. On error the state is
    /// left as it was.
    fn restore(&mut self, payload: &mut dyn Read) -> Result<(), RestoreError>;
}

/// A state captured by [`StateMachine::snapshot`], to be written out.
pub trait StateSnapshot: Send {
    /// Writes the state to `out` as a stream, in the form
    /// [`StateMachine::restore`] reads.
    fn write_to(&self, out: &mut dyn Write) -> io::Result<()>;
}

/// A snapshot's payload could not be restored.
#[derive(Debug)]
pub enum RestoreError {
    /// Reading the payload failed.
    Io(io::Error),
    /// The payload is not a state this state machine wrote.
    Invalid(String),
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::Io(e) => write!(f, "cannot read the snapshot: {e}"),
            RestoreError::Invalid(reason) => write!(f, "not a valid snapshot: {reason}"),
        }
    }
}

impl std::error::Error for RestoreError {}

impl From<io::Error> for RestoreError {
    fn from(e: io::Error) -> RestoreError {
        RestoreError::Io(e)
    }
}
