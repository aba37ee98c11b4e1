//! raftnode: a Raft-replicated key-value store.
//!
//! The pieces, each in its own module:
//! * [`core`] — the Raft rules as a pure state machine (no I/O, no clock);
//! * [`raft_log`] — the in-memory log the core reasons about;
//! * [`storage`] — the data dir: term and vote, the checksummed log file;
//! * [`wire`] — framing and the handshake on peer connections;
//! * [`node`] — the threads that drive a core: timer, writer, apply,
//!   [`peer`] replication threads and the [`listener`];
//! * [`kv`] — the replicated key-value state machine;
//! * [`codec`] — the one place values become bytes.

pub mod cli;
pub mod codec;
pub mod commands;
pub mod config;
pub mod core;
pub mod error;
pub mod kv;
mod listener;
pub mod message;
pub mod node;
mod peer;
pub mod raft_log;
pub mod resp;
pub mod server;
pub mod sockets;
pub mod storage;
pub mod wire;

pub use config::{Config, ReadMode};
pub use error::{Error, StartError};
pub use node::{Metrics, Node, Status};
