pub mod cli;
pub mod codec;
pub mod kv;
pub mod node;
pub mod raft;
pub mod redis;
pub mod storage;

pub use node::config::{Config, ReadMode};
pub use node::error::{Error, StartError};
pub use node::{Metrics, Node, Status};
