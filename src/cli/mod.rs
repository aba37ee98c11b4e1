//! The `raftnode` command line: `run` one node (`run.rs`, and `join.rs` for
//! `--join`), start a `dev` cluster on this machine (`dev.rs`), talk to a
//! cluster with `cli` (`shell.rs`) or see all its members at once with `cli
//! status` (`status.rs`), or measure one with `bench` (`bench.rs`).
//!
//! The subcommand and flag names are a contract that scripts and tools depend
//! on: extend them, never rename them. This module sits above every layer:
//! it builds a node's [`Config`](crate::node::Config), starts a
//! [`Node`](crate::node::Node) running the [`Kv`](crate::kv::Kv) store and
//! serves it with the Redis port.

mod args;
mod bench;
mod dev;
mod error;
mod join;
mod json;
mod run;
mod shell;
mod status;

use args::usage;
use error::CliError;
use std::process::ExitCode;

const MAIN_HELP: &str = "\
raftnode: a Raft-replicated key-value store that speaks the Redis protocol

Usage:
  raftnode run --id ID --data-dir DIR --raft-addr HOST:PORT --client-addr HOST:PORT
               [--peer ID=HOST:PORT]... [--join HOST:PORT] [--cluster-id NAME]
               [--election-timeout-ms MIN-MAX] [--heartbeat-ms MS]
               [--read-mode read-index|lease] [--pre-vote on|off] [--check-quorum on|off]
               [--metrics-addr HOST:PORT]
  raftnode dev [--nodes N] [--data-dir DIR] [--base-port P]
  raftnode cli [--addr HOST:PORT]... [COMMAND ARG...]
  raftnode cli [--addr HOST:PORT]... status [--json]
  raftnode bench [--addr HOST:PORT]... [--clients N[,N...]] [--secs S] [--op set|get]
                 [--pipeline P] [--nodes N] [--read-mode read-index|lease] [...]
  raftnode --version

A new data dir forms a cluster with its --peers, or joins a running one
with --join (a member's client address); after that membership lives in the
data dir and changes with RAFT.NODE ADD/PROMOTE/REMOVE.

Run `raftnode SUBCOMMAND --help` for the details of each.
Logging: RUST_LOG=debug (or warn, ...); the default level is info.
";

/// The entry point of the binary.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(CliError::Usage(msg)) => {
            eprintln!("raftnode: {msg} (see raftnode --help)");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("raftnode: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(args: &[String]) -> Result<ExitCode, CliError> {
    match args.first().map(String::as_str) {
        Some("run") => run::run(&args[1..]),
        Some("dev") => dev::dev(&args[1..]),
        Some("cli") => shell::cli(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        Some("-V") | Some("--version") => {
            println!("raftnode {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Some("-h") | Some("--help") | Some("help") | None => {
            print!("{MAIN_HELP}");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => Err(usage(format!("unknown subcommand {other:?}"))),
    }
}
