//! raftnode: a Raft-replicated key-value store that speaks the Redis
//! protocol.
//!
//! The crate is built in layers; each may use only the layers below it
//! (checked by `tests/architecture.rs`):
//!
//! ```text
//!   cli      the `raftnode` command line: run, dev, cli
//!   metrics  the Prometheus endpoint: what is on the page, and its HTTP
//!   redis    the client port: RESP, commands, redirects, the cli's client
//!   kv       the key-value state machine, sessions, typed operations
//!   node     threads, peer wire and sockets driving a core; generic over
//!            any StateMachine and any LogStore
//!   storage  durable term, vote and log: the data dir (or memory)
//!   raft     the Raft rules as a pure state machine: no I/O, no clock
//! ```
//!
//! `codec` is the one place values become bytes, used by every layer that
//! stores or sends them.

pub mod cli;
pub mod codec;
pub mod kv;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod redis;
pub mod storage;

pub use node::{Config, Error, Metrics, Node, ReadMode, StartError, Status};
