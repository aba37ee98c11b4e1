//! `raftnode cli`: send commands to a cluster, following it to its leader.

use super::args::{check_addr, Flags};
use super::error::CliError;
use crate::redis::client::Client;
use crate::redis::resp::{self, Reply};
use std::io::{self, BufRead, Write};
use std::process::ExitCode;

const CLI_HELP: &str = "\
raftnode cli: send commands to a raftnode cluster

Usage:
  raftnode cli [--addr HOST:PORT] [COMMAND ARG...]

With a command, sends it, prints the reply and exits (status 1 on an error
reply). Without one, opens an interactive prompt. Follows MOVED redirects to
the leader and retries TRYAGAIN, TIMEOUT and lost connections for up to 10 s;
writes go out as SEQ n under a random CLIENT ID, so a retry is never applied
twice.

Options:
  --addr HOST:PORT   a node's client address [default: 127.0.0.1:7001]
  -h, --help         this help
";

/// `raftnode cli`: one command, or an interactive prompt.
pub(super) fn cli(args: &[String]) -> Result<ExitCode, CliError> {
    let flags = Flags::parse(args, &["--addr"], &["-h", "--help"], true)?;
    if flags.has("-h") || flags.has("--help") {
        print!("{CLI_HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let addr = flags.get("--addr").unwrap_or("127.0.0.1:7001").to_string();
    check_addr(&addr, "--addr")?;
    let mut client = Client::new(addr).on_retry(|e| eprintln!("({e}; retrying)"));
    if !flags.rest.is_empty() {
        let command: Vec<Vec<u8>> = flags.rest.iter().map(|a| a.as_bytes().to_vec()).collect();
        let reply = client.call(&command).map_err(CliError::Client)?;
        println!("{}", resp::render_human(&reply));
        return Ok(match reply {
            Reply::Error(_) => ExitCode::from(1),
            _ => ExitCode::SUCCESS,
        });
    }
    interactive(&mut client)
}

fn interactive(client: &mut Client) -> Result<ExitCode, CliError> {
    let stdin = io::stdin();
    let mut lines = stdin.lock();
    loop {
        print!("{}> ", client.addr());
        let _ = io::stdout().flush();
        let mut line = String::new();
        match lines.read_line(&mut line) {
            Ok(0) => return Ok(ExitCode::SUCCESS),
            Ok(_) => {}
            Err(e) => return Err(CliError::Stdin(e)),
        }
        let words = match resp::split_args(line.as_bytes()) {
            Ok(words) if words.is_empty() => continue,
            Ok(words) => words,
            Err(e) => {
                println!("(error) {e}");
                continue;
            }
        };
        if words[0].eq_ignore_ascii_case(b"exit") {
            return Ok(ExitCode::SUCCESS);
        }
        match client.call(&words) {
            Ok(reply) => println!("{}", resp::render_human(&reply)),
            Err(e) => println!("(error) {e}"),
        }
        if words[0].eq_ignore_ascii_case(b"quit") {
            return Ok(ExitCode::SUCCESS);
        }
    }
}
