//! The client port: raftnode speaks the Redis protocol, so `redis-cli`,
//! `redis-benchmark`, Redis client libraries (standalone or in cluster mode)
//! and a human typing into `nc` can all use a cluster unchanged.
//!
//! * [`resp`] — the wire format (RESP2, and RESP3 after `HELLO 3`):
//!   requests in, replies out, with limits on everything a client sends;
//! * [`commands`] — what each command means and how it is answered,
//!   including redirects (`-MOVED`) to the leader;
//! * [`store`] — the commands on the store, parsed into the writes and
//!   reads they stand for, and their outcomes into Redis's replies;
//! * [`connection`] — the handshake and probes clients send (`HELLO`,
//!   `AUTH`, `CLIENT`, `CONFIG`);
//! * [`catalog`] — every command's arity, flags and key positions, which
//!   `COMMAND` reports and cluster clients route by;
//! * [`cluster`] — hash slots and the `CLUSTER` command, describing the
//!   cluster to cluster-mode clients as one Redis Cluster shard;
//! * [`transaction`] — `MULTI`/`EXEC`/`DISCARD`: a connection's queued
//!   commands, run as one log entry;
//! * [`membership`] — the cluster administration commands (`RAFT.NODE`,
//!   `RAFT.NODES`, `RAFT.TRANSFER_LEADER`);
//! * [`leader`] — running a request on the leader, or redirecting to it;
//! * [`info`] — `INFO`'s sections;
//! * [`port`] — what a client port's connections share (the node, the
//!   port's counters) and what each connection has set;
//! * [`server`] — the listener and a thread per client connection;
//! * [`client`] — the redirect-following client behind `raftnode cli`.
//!
//! Dependencies: [`crate::kv`] (the store the commands act on),
//! [`crate::node`] (the node that runs it: its errors, status and sockets)
//! and the Raft types. The Raft layers know nothing of this one.

pub mod catalog;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod connection;
pub mod info;
pub mod leader;
pub mod membership;
pub mod port;
pub mod resp;
pub mod server;
pub mod store;
pub mod transaction;
