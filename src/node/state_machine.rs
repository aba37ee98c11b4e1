//! The application a node replicates.

use crate::raft::message::Index;

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
/// The next issue adds two methods without changing these: `snapshot`,
/// which serializes the whole state (including whatever `apply` needs to
/// stay deterministic, such as client sessions), and `restore`, which
/// replaces the state with a snapshot's, so the log before it can be
/// discarded (§7).
pub trait StateMachine: Send + 'static {
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
}
