//! The client port: raftnode speaks the Redis protocol, so `redis-cli`,
//! `redis-benchmark`, Redis client libraries and a human typing into `nc`
//! can all use a cluster unchanged.
//!
//! * [`resp`] — the wire format (RESP2): requests in, replies out, with
//!   limits on everything a client sends;
//! * [`commands`] — what each command means and how it is answered,
//!   including redirects (`-MOVED`) to the leader;
//! * [`server`] — the listener and a thread per client connection;
//! * [`client`] — the redirect-following client behind `raftnode cli`.
//!
//! Dependencies: [`crate::kv`] (the store the commands act on),
//! [`crate::node`] (the node that runs it: its errors, status and sockets)
//! and the Raft types. The Raft layers know nothing of this one.

pub mod client;
pub mod commands;
pub mod resp;
pub mod server;
