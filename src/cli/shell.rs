//! `raftnode cli`: send commands to a cluster, following it to its leader.

use super::args::{check_addr, Flags};
use super::error::CliError;
use super::status;
use crate::redis::client::Client;
use crate::redis::resp::{self, Reply};
use std::io::{self, BufRead, Write};
use std::process::ExitCode;

const CLI_HELP: &str = "\
raftnode cli: send commands to a raftnode cluster

Usage:
  raftnode cli [--addr HOST:PORT]... [COMMAND ARG...]
  raftnode cli [--addr HOST:PORT]... status [--json] [--timeout-ms MS]

With a command, sends it, prints the reply and exits (status 1 on an error
reply). Without one, opens an interactive prompt. Follows MOVED redirects to
the leader and retries TRYAGAIN, TIMEOUT and lost connections for up to 10 s;
writes go out as SEQ n under a random CLIENT ID, so a retry is never applied
twice. INFO, CLUSTER NODES and CLUSTER INFO are printed as plain text, as
redis-cli prints them; RAFT.NODES as a table (ID, RAFT ADDR, CLIENT ADDR, ROLE,
FLAGS, MATCH, LAG, CONNECTED).

`status` prints one row per member (ID, CLIENT ADDR, ROLE, TERM, COMMIT,
APPLIED, LAG, REACHABLE) and exits non-zero when no leader is known; see
`raftnode cli status --help`.

Cluster administration (sent to the leader, following MOVED):
  RAFT.NODE ADD ID RAFT-ADDR CLIENT-ADDR [LEARNER]   add a member
  RAFT.NODE PROMOTE ID | RAFT.NODE REMOVE ID        promote a learner, remove a member
  RAFT.TRANSFER_LEADER [ID]                         hand leadership over
  RAFT.NODES                                        the members (any node)

Options:
  --addr HOST:PORT   a node's client address [default: 127.0.0.1:7001]; give
                     it several times to name several nodes, tried in turn
                     when one cannot be reached
  -h, --help         this help
";

/// `raftnode cli`: one command, or an interactive prompt.
pub(super) fn cli(args: &[String]) -> Result<ExitCode, CliError> {
    let flags = Flags::parse(args, &["--addr"], &["-h", "--help"], true)?;
    if flags.has("-h") || flags.has("--help") {
        print!("{CLI_HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut seeds: Vec<String> = flags.all("--addr").map(str::to_string).collect();
    if seeds.is_empty() {
        seeds.push("127.0.0.1:7001".to_string());
    }
    for addr in &seeds {
        check_addr(addr, "--addr")?;
    }
    // `status` is ours, not a command for the cluster (Redis has none of
    // that name).
    if let Some((first, rest)) = flags.rest.split_first() {
        if first.eq_ignore_ascii_case("status") {
            return status::status(&seeds, rest);
        }
    }
    let mut client = Client::with_seeds(seeds).on_retry(|e| eprintln!("({e}; retrying)"));
    if !flags.rest.is_empty() {
        let command: Vec<Vec<u8>> = flags.rest.iter().map(|a| a.as_bytes().to_vec()).collect();
        let reply = client.call(&command).map_err(CliError::Client)?;
        println!("{}", render(&command, &reply));
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
            Ok(reply) => println!("{}", render(&words, &reply)),
            Err(e) => println!("(error) {e}"),
        }
        if words[0].eq_ignore_ascii_case(b"quit") {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// A reply as redis-cli shows it: the text of INFO, CLUSTER NODES and
/// CLUSTER INFO as it is, line breaks and all; RAFT.NODES as a table;
/// everything else quoted and typed.
fn render(command: &[Vec<u8>], reply: &Reply) -> String {
    let is = |i: usize, word: &str| {
        command
            .get(i)
            .is_some_and(|w| w.eq_ignore_ascii_case(word.as_bytes()))
    };
    let plain_text = is(0, "INFO")
        || (command.len() == 2 && is(0, "CLUSTER") && (is(1, "NODES") || is(1, "INFO")));
    let text = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .replace("\r\n", "\n")
            .trim_end_matches('\n')
            .to_string()
    };
    match reply {
        Reply::Bulk(bytes) if command.len() == 1 && is(0, "RAFT.NODES") => {
            // A listing this client does not understand is shown as it is.
            let text = text(bytes);
            nodes_table(&text).unwrap_or(text)
        }
        Reply::Bulk(bytes) if plain_text => text(bytes),
        _ => resp::render_human(reply),
    }
}

/// The lines of RAFT.NODES (`id raft client role flags match=N lag=N link`)
/// as an aligned table with a header; `None` if a line is not of that form.
fn nodes_table(text: &str) -> Option<String> {
    const HEADER: [&str; 8] = [
        "ID",
        "RAFT ADDR",
        "CLIENT ADDR",
        "ROLE",
        "FLAGS",
        "MATCH",
        "LAG",
        "CONNECTED",
    ];
    let mut rows = vec![HEADER.map(str::to_string).to_vec()];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [id, raft, client, role, flags, matched, lag, link] = fields[..] else {
            return None;
        };
        rows.push(vec![
            id.to_string(),
            raft.to_string(),
            client.to_string(),
            role.to_string(),
            flags.to_string(),
            matched.strip_prefix("match=")?.to_string(),
            lag.strip_prefix("lag=")?.to_string(),
            link.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|col| rows.iter().map(|r| r[col].len()).max().unwrap_or(0))
        .collect();
    let lines: Vec<String> = rows
        .iter()
        .map(|row| {
            let cells: Vec<String> = (row.iter().zip(&widths))
                .map(|(cell, &width)| format!("{cell:width$}"))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect();
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn info_and_cluster_text_print_as_lines() {
        let text = Reply::Bulk(b"# Raft\r\nrole:leader\r\n".to_vec());
        assert_eq!(render(&words(&["info"]), &text), "# Raft\nrole:leader");
        assert_eq!(
            render(&words(&["CLUSTER", "nodes"]), &text),
            "# Raft\nrole:leader"
        );
        // Any other bulk reply stays quoted, as redis-cli shows it.
        assert_eq!(
            render(&words(&["GET", "k"]), &text),
            "\"# Raft\\r\\nrole:leader\\r\\n\""
        );
        let error = Reply::Error("ERR x".into());
        assert_eq!(render(&words(&["INFO"]), &error), "(error) ERR x");
    }

    #[test]
    fn raft_nodes_prints_as_a_table() {
        let text = Reply::Bulk(
            b"1 127.0.0.1:7101 127.0.0.1:7001 voter leader,myself match=120 lag=0 connected\n\
              12 10.0.0.12:7101 - learner promote-when-caught-up match=3 lag=117 disconnected\n"
                .to_vec(),
        );
        assert_eq!(
            render(&words(&["raft.nodes"]), &text),
            "ID  RAFT ADDR       CLIENT ADDR     ROLE     FLAGS                   MATCH  LAG  CONNECTED\n\
             1   127.0.0.1:7101  127.0.0.1:7001  voter    leader,myself           120    0    connected\n\
             12  10.0.0.12:7101  -               learner  promote-when-caught-up  3      117  disconnected"
        );
        // Anything else is shown as it came.
        let odd = Reply::Bulk(b"something else\n".to_vec());
        assert_eq!(render(&words(&["RAFT.NODES"]), &odd), "something else");
    }
}
