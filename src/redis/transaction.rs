//! Transactions: `MULTI`, the commands it queues, then `EXEC` or `DISCARD`,
//! answered as Redis 7 answers them, and atomic through one log entry.
//!
//! After `MULTI` (`+OK`; a second one is `-ERR MULTI calls can not be
//! nested`), each command on the store (GET, SET, DEL, CAS, INCR, INCRBY,
//! DECR, DECRBY, APPEND) and each PING, ECHO and UNWATCH answers `+QUEUED`. `EXEC` proposes the
//! queued store commands as one [`Command::Multi`] — one log entry, applied
//! in one step, so no other write falls between them on any node — and
//! answers an array with one reply per queued command, in order, each what
//! the command alone would have answered. A command that fails when it runs
//! (INCR of a non-integer; a SET with options, a key or value over the
//! limits, which are refused when queued but answered in their place) is an
//! error in its place in the array and the others still apply: there is no
//! rollback, as in Redis. `DISCARD` drops the queue (`+OK`). Closing the
//! connection drops it too.
//!
//! What aborts a transaction (EXEC answers `-EXECABORT Transaction discarded
//! because of previous errors.` and runs nothing), each answered with its
//! error when sent: an unknown command or a wrong number of arguments (as in
//! Redis); a command raftnode cannot queue — the ones about the connection,
//! the node or the cluster, [`NOT_QUEUEABLE`] (Redis would queue and run them
//! at EXEC; raftnode refuses rather than run them outside the entry, out of
//! step with it); `SEQ` anywhere but in front of EXEC; and the limits below.
//! `QUIT` closes the connection as ever. Once aborted, valid commands still
//! answer `+QUEUED`, as in Redis, but nothing more is kept.
//!
//! Limits: at most [`MAX_QUEUED`] commands, and the queued store commands,
//! encoded, must fit one log entry — the node's `max_command_bytes`, less
//! [`ENVELOPE_BYTES`] for what wraps them. (PING and ECHO arguments count
//! towards the same bytes: they are held until EXEC too.) The command that
//! would pass either limit is refused and the transaction aborts.
//!
//! `WATCH` is not supported: outside a transaction it answers an error
//! saying so (use `CAS` for optimistic concurrency); inside one it is
//! `-ERR WATCH inside MULTI is not allowed` without aborting, as in Redis.
//! `UNWATCH` answers `+OK` — with nothing ever watched, forgetting every
//! watched key is always done.
//!
//! Where `EXEC` runs: on the leader, like any write. Elsewhere it answers
//! `-MOVED <slot> <leader>` (the slot of the first queued key) or
//! `-TRYAGAIN`, and the transaction is discarded, as Redis discards one
//! whose EXEC is redirected; queuing itself never redirects, since it
//! touches nothing. A client retries the whole transaction on the leader
//! (redis-py raises `MovedError` from `pipeline.execute()`, and its cluster
//! client retries there by itself). A transaction of PING and ECHO alone,
//! or an empty one, needs no log entry and is answered by any node.
//! `-TIMEOUT` means, as for any write, that it may or may not have applied —
//! all of it or none.
//!
//! Exactly once: on a connection with a `CLIENT ID`, `SEQ n EXEC` makes the
//! whole transaction one sessioned write. A retry with the same `n` must
//! resend the same commands: it is answered from the first run's outcomes
//! without applying anything again (a retry with a different number of
//! store commands is refused; one with as many but different ones cannot be
//! told apart).
//!
//! This file keeps a connection's transaction and decides what each request
//! does to it. [`crate::redis::commands`] hands it the store commands it
//! builds and runs EXEC's entry through the log, passing in what that takes,
//! so this file depends on nothing in the port above it.

use crate::kv::{Command, Outcome, Wire};
use crate::redis::resp::Reply;

/// The most commands one transaction may queue.
pub const MAX_QUEUED: usize = 10_000;

/// The bytes of a transaction's log entry that are not its commands: the
/// `Multi` variant and its length, and, for `SEQ n EXEC`, the `Session`
/// around it with its client id and sequence number (varints of at most 9
/// bytes each).
pub const ENVELOPE_BYTES: usize = 32;

/// The connection-, node- and cluster-level commands raftnode knows but will
/// not queue; inside a transaction each is refused and aborts it. Any other
/// name that cannot be queued gets the error it gets outside a transaction
/// (unknown command, or wrong number of arguments).
pub const NOT_QUEUEABLE: &[&str] = &[
    "AUTH",
    "BGSAVE",
    "CLIENT",
    "CLUSTER",
    "COMMAND",
    "CONFIG",
    "DEBUG",
    "HELLO",
    "HELP",
    "INFO",
    "LASTSAVE",
    "RAFT.NODE",
    "RAFT.NODES",
    "RAFT.TRANSFER_LEADER",
    "READONLY",
    "READWRITE",
    "SELECT",
];

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

const WATCH_UNSUPPORTED: &str = "WATCH is not supported by raftnode; \
     for optimistic concurrency use CAS key expected new";

/// A command waiting for `EXEC`.
#[derive(Debug, Clone, PartialEq)]
pub enum Queued {
    /// A command on the store: it goes into the transaction's log entry.
    Store(Command),
    /// A reply known when the command was queued (PING, ECHO, UNWATCH, or a
    /// store command whose arguments were refused), given in its place in
    /// EXEC's array.
    Reply(Reply),
}

/// A connection's transaction, from `MULTI` to `EXEC` or `DISCARD`.
#[derive(Debug, Default)]
pub struct Transaction {
    queued: Vec<Queued>,
    /// The queued store commands' encoded size, plus the arguments of the
    /// other queued commands (held until EXEC, though not in the entry).
    bytes: usize,
    /// An error while queuing: EXEC will answer `-EXECABORT`.
    aborted: bool,
}

/// What the dispatcher does with a request, given the connection's
/// transaction.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Run it as usual: there is no transaction and this is not a
    /// transaction command, or it is one of the two run even inside one —
    /// `QUIT`, and `SEQ n EXEC`, which comes back here as EXEC once SEQ has
    /// checked its number.
    Run,
    /// Answer this and do nothing else.
    Answer(Reply),
    /// `EXEC`: run these, in order (see [`exec`]). The transaction is over.
    Exec(Vec<Queued>),
    /// Inside a transaction, a command that cannot be queued as it stands
    /// (an unknown name or a wrong number of arguments): answer the error it
    /// gets outside one. The transaction is already marked aborted.
    Refuse,
}

/// Decides what request `args` (named `name`, in capitals) does, given the
/// connection's transaction `state`, which it updates. `seq` is set for the
/// command of a `SEQ n ...`. `max_bytes` is the largest log entry the node
/// accepts. `store_command` builds the request's [`Command`] if it is one on
/// the store (`None` if not, or with a wrong number of arguments; an error
/// reply if its arguments are refused); it is called only to queue.
pub fn step(
    state: &mut Option<Transaction>,
    name: &str,
    args: &[Vec<u8>],
    seq: Option<u64>,
    max_bytes: usize,
    store_command: impl FnOnce() -> Option<Result<Command, Reply>>,
) -> Step {
    let n = args.len();
    match name {
        "MULTI" => return multi(state, n, seq),
        "EXEC" => return exec_step(state, n),
        "DISCARD" => return discard(state, n),
        "WATCH" => return watch(state, n),
        "UNWATCH" => return unwatch(state, n, max_bytes),
        _ => {}
    }
    let Some(tx) = state else {
        return Step::Run;
    };
    let prefixes_exec = args
        .get(2)
        .is_some_and(|command| command.eq_ignore_ascii_case(b"EXEC"));
    match name {
        "QUIT" => return Step::Run,
        "SEQ" if seq.is_none() && prefixes_exec => return Step::Run,
        // SEQ n EXEC is the only SEQ run inside MULTI: with any other
        // command SEQ is refused here, before it could hand the command on.
        _ if name == "SEQ" || seq.is_some() => {
            return tx.abort_with(Reply::error(
                "inside MULTI, SEQ may only prefix EXEC: SEQ n EXEC makes the whole \
                 transaction exactly-once",
            ))
        }
        _ => {}
    }
    let (queued, bytes) = match store_command() {
        Some(Ok(command)) => match command.encode() {
            Ok(encoded) => (Queued::Store(command), encoded.len()),
            Err(e) => return tx.abort_with(Reply::error(format!("cannot encode {name}: {e}"))),
        },
        Some(Err(refused)) => (Queued::Reply(refused), 0),
        None => match harmless(name, args) {
            Some(reply) => (Queued::Reply(reply), args.iter().map(Vec::len).sum()),
            None if NOT_QUEUEABLE.contains(&name) => {
                return tx.abort_with(Reply::error(format!(
                    "{name} cannot be used inside MULTI: raftnode queues only the commands \
                     on the store (GET, SET, EXPIRE, SCAN, ...), PING, ECHO and UNWATCH"
                )))
            }
            None => {
                tx.abort();
                return Step::Refuse;
            }
        },
    };
    tx.queue(queued, bytes, max_bytes)
}

/// `MULTI`: starts a transaction.
fn multi(state: &mut Option<Transaction>, n: usize, seq: Option<u64>) -> Step {
    match state {
        Some(tx) if n != 1 => tx.abort_with(Reply::wrong_arity("multi")),
        // As in Redis, this leaves the transaction as it was.
        Some(_) => Step::Answer(Reply::error("MULTI calls can not be nested")),
        None if n != 1 => Step::Answer(Reply::wrong_arity("multi")),
        None if seq.is_some() => Step::Answer(Reply::error(
            "SEQ goes on EXEC, not MULTI: send MULTI, the commands, then SEQ n EXEC",
        )),
        None => {
            *state = Some(Transaction::default());
            Step::Answer(Reply::ok())
        }
    }
}

/// `EXEC`: ends the transaction, running it unless it was aborted.
fn exec_step(state: &mut Option<Transaction>, n: usize) -> Step {
    if n != 1 {
        // Redis discards the transaction and says so, in one or not.
        *state = None;
        return Step::Answer(Reply::Error(
            "EXECABORT Transaction discarded because of: wrong number of arguments \
             for 'exec' command"
                .into(),
        ));
    }
    match state.take() {
        None => Step::Answer(Reply::error("EXEC without MULTI")),
        Some(tx) if tx.aborted => Step::Answer(Reply::Error(EXECABORT.into())),
        Some(tx) => Step::Exec(tx.queued),
    }
}

/// `DISCARD`: drops the transaction.
fn discard(state: &mut Option<Transaction>, n: usize) -> Step {
    match state {
        Some(tx) if n != 1 => tx.abort_with(Reply::wrong_arity("discard")),
        Some(_) => {
            *state = None;
            Step::Answer(Reply::ok())
        }
        None if n != 1 => Step::Answer(Reply::wrong_arity("discard")),
        None => Step::Answer(Reply::error("DISCARD without MULTI")),
    }
}

/// `WATCH key [key ...]`: not supported (see the module doc).
fn watch(state: &mut Option<Transaction>, n: usize) -> Step {
    match state {
        Some(tx) if n < 2 => tx.abort_with(Reply::wrong_arity("watch")),
        Some(_) => Step::Answer(Reply::error("WATCH inside MULTI is not allowed")),
        None if n < 2 => Step::Answer(Reply::wrong_arity("watch")),
        None => Step::Answer(Reply::error(WATCH_UNSUPPORTED)),
    }
}

/// `UNWATCH`: nothing is ever watched, so it is always done; inside a
/// transaction it is queued and answers `+OK` in EXEC's array, as in Redis.
fn unwatch(state: &mut Option<Transaction>, n: usize, max_bytes: usize) -> Step {
    match state {
        Some(tx) if n != 1 => tx.abort_with(Reply::wrong_arity("unwatch")),
        Some(tx) => tx.queue(Queued::Reply(Reply::ok()), 0, max_bytes),
        None if n != 1 => Step::Answer(Reply::wrong_arity("unwatch")),
        None => Step::Answer(Reply::ok()),
    }
}

/// The reply of a command that touches nothing, known when it is queued:
/// PING and ECHO. Redis checks PING's number of arguments only when it runs
/// it, so that error is queued too; ECHO's is checked first.
fn harmless(name: &str, args: &[Vec<u8>]) -> Option<Reply> {
    match (name, args.len()) {
        ("PING", 1) => Some(Reply::Simple("PONG".into())),
        ("PING", 2) => Some(Reply::Bulk(args[1].clone())),
        ("PING", _) => Some(Reply::wrong_arity("ping")),
        ("ECHO", 2) => Some(Reply::Bulk(args[1].clone())),
        _ => None,
    }
}

impl Transaction {
    /// What the queued commands hold: their encoded size, and the arguments
    /// of the queued PINGs and ECHOs (the server charges it to the memory
    /// its clients share).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues a command taking `bytes`, within the limits.
    fn queue(&mut self, queued: Queued, bytes: usize, max_bytes: usize) -> Step {
        if self.aborted {
            // Nothing of it will run, so nothing more is kept.
            return queued_reply();
        }
        if self.queued.len() >= MAX_QUEUED {
            return self.abort_with(Reply::error(format!(
                "a transaction may queue at most {MAX_QUEUED} commands; \
                 EXEC will discard this transaction"
            )));
        }
        let total = self.bytes.saturating_add(bytes);
        if total.saturating_add(ENVELOPE_BYTES) > max_bytes {
            return self.abort_with(Reply::error(format!(
                "the transaction would not fit the {max_bytes}-byte limit of one log \
                 entry; EXEC will discard it"
            )));
        }
        self.bytes = total;
        self.queued.push(queued);
        queued_reply()
    }

    /// Marks the transaction aborted and drops what it held.
    fn abort(&mut self) {
        self.aborted = true;
        self.queued = Vec::new();
        self.bytes = 0;
    }

    fn abort_with(&mut self, reply: Reply) -> Step {
        self.abort();
        Step::Answer(reply)
    }
}

fn queued_reply() -> Step {
    Step::Answer(Reply::Simple("QUEUED".into()))
}

/// EXEC's reply for `queued`. The store commands among them go to `write`
/// as one [`Command::Multi`]; `write` proposes it on the leader and returns
/// its outcome, or the error reply for the whole EXEC (`-MOVED`,
/// `-TRYAGAIN`, `-TIMEOUT`, …). It is not called if there are none. `reply`
/// turns each command's outcome into what the command alone would answer.
pub fn exec(
    queued: Vec<Queued>,
    write: impl FnOnce(Command) -> Result<Outcome, Reply>,
    reply: impl Fn(Outcome) -> Reply,
) -> Reply {
    let mut commands = Vec::new();
    // Each queued command's reply if it is already known; `None` holds a
    // store command's place.
    let mut places = Vec::with_capacity(queued.len());
    for queued in queued {
        match queued {
            Queued::Store(command) => {
                commands.push(command);
                places.push(None);
            }
            Queued::Reply(known) => places.push(Some(known)),
        }
    }
    if commands.is_empty() {
        return Reply::Array(places.into_iter().flatten().collect());
    }
    let count = commands.len();
    let outcomes = match write(Command::Multi(commands)) {
        Ok(Outcome::Multi(outcomes)) if outcomes.len() == count => outcomes,
        // A session's refusal (a sequence number older than the client's
        // last): nothing was applied.
        Ok(Outcome::Refused(why)) => return Reply::error(why),
        // An expired session: not applied now, but an earlier EXEC under
        // this number may have been, so it keeps its own error.
        Ok(expired @ Outcome::SessionExpired(_)) => return reply(expired),
        // A session answers a retry with the first run's outcome, which only
        // fits if the retry resent the same transaction. (A retry with as
        // many store commands but different ones cannot be told apart.)
        Ok(Outcome::Multi(first)) => {
            return Reply::error(format!(
                "this sequence number already answered a transaction of {} commands on \
                 the store, not {count}: a retry must resend the same transaction",
                first.len()
            ))
        }
        Ok(_) => {
            return Reply::error(
                "this sequence number already answered a request that was not a \
                 transaction: a retry must resend the same transaction",
            )
        }
        Err(error) => return error,
    };
    let mut outcomes = outcomes.into_iter();
    // There is exactly one outcome for each place left open.
    Reply::Array(
        places
            .into_iter()
            .filter_map(|known| known.or_else(|| outcomes.next().map(&reply)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024 * 1024;

    fn req(line: &str) -> Vec<Vec<u8>> {
        line.split_whitespace()
            .map(|a| a.as_bytes().to_vec())
            .collect()
    }

    /// A stand-in for the port's store commands: SET and GET, by arity.
    fn store(args: &[Vec<u8>]) -> Option<Result<Command, Reply>> {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        match (name.as_str(), args.len()) {
            ("SET", 3) => Some(Ok(Command::Set {
                key: args[1].clone(),
                value: args[2].clone(),
            })),
            ("SET", 4..) => Some(Err(Reply::error("syntax error"))),
            ("GET", 2) => Some(Ok(Command::Get {
                key: args[1].clone(),
            })),
            _ => None,
        }
    }

    /// Sends one request on a connection whose transaction is `state`.
    fn send(state: &mut Option<Transaction>, line: &str) -> Step {
        send_with(state, line, None, MAX)
    }

    fn send_with(
        state: &mut Option<Transaction>,
        line: &str,
        seq: Option<u64>,
        max_bytes: usize,
    ) -> Step {
        let args = req(line);
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        step(state, &name, &args, seq, max_bytes, || store(&args))
    }

    /// `+OK` and `+QUEUED`, or an error's whole text.
    fn answer(text: &str) -> Step {
        Step::Answer(match text {
            "OK" | "QUEUED" => Reply::Simple(text.into()),
            _ => Reply::Error(text.into()),
        })
    }

    fn set(key: &str, value: &str) -> Queued {
        Queued::Store(Command::Set {
            key: key.into(),
            value: value.into(),
        })
    }

    #[test]
    fn multi_queues_and_exec_hands_over_the_queue_in_order() {
        let mut s = None;
        assert_eq!(send(&mut s, "PING"), Step::Run, "no transaction yet");
        assert_eq!(send(&mut s, "MULTI"), answer("OK"));
        assert_eq!(
            send(&mut s, "MULTI"),
            answer("ERR MULTI calls can not be nested")
        );
        assert_eq!(send(&mut s, "SET a 1"), answer("QUEUED"));
        assert_eq!(send(&mut s, "PING"), answer("QUEUED"));
        assert_eq!(send(&mut s, "ECHO hi"), answer("QUEUED"));
        assert_eq!(send(&mut s, "SET a 1 NX"), answer("QUEUED"));
        assert_eq!(send(&mut s, "PING a b"), answer("QUEUED"));
        assert_eq!(send(&mut s, "UNWATCH"), answer("QUEUED"));
        assert_eq!(
            send(&mut s, "WATCH a"),
            answer("ERR WATCH inside MULTI is not allowed")
        );
        assert_eq!(send(&mut s, "GET a"), answer("QUEUED"));
        let Step::Exec(queued) = send(&mut s, "EXEC") else {
            panic!("EXEC runs the transaction");
        };
        assert!(s.is_none(), "the transaction is over");
        assert_eq!(
            queued,
            vec![
                set("a", "1"),
                Queued::Reply(Reply::Simple("PONG".into())),
                Queued::Reply(Reply::Bulk(b"hi".to_vec())),
                Queued::Reply(Reply::error("syntax error")),
                Queued::Reply(Reply::wrong_arity("ping")),
                Queued::Reply(Reply::ok()),
                Queued::Store(Command::Get { key: b"a".to_vec() }),
            ]
        );
        assert_eq!(send(&mut s, "EXEC"), answer("ERR EXEC without MULTI"));
    }

    #[test]
    fn errors_while_queuing_abort_the_transaction() {
        for bad in ["GET", "FOO bar", "ECHO", "MULTI x", "DISCARD x", "WATCH"] {
            let mut s = None;
            send(&mut s, "MULTI");
            assert_eq!(send(&mut s, "SET a 1"), answer("QUEUED"));
            let step = send(&mut s, bad);
            assert!(
                step == Step::Refuse || matches!(&step, Step::Answer(Reply::Error(_))),
                "{bad}: {step:?}"
            );
            // Valid commands are still answered as queued, as in Redis.
            assert_eq!(send(&mut s, "SET b 2"), answer("QUEUED"), "{bad}");
            assert_eq!(send(&mut s, "EXEC"), answer(EXECABORT), "{bad}");
            assert!(s.is_none());
        }
        for refused in ["INFO", "CLIENT ID 5", "HELLO 3", "CLUSTER INFO", "SELECT 0"] {
            let mut s = None;
            send(&mut s, "MULTI");
            let Step::Answer(Reply::Error(text)) = send(&mut s, refused) else {
                panic!("{refused} is refused inside MULTI");
            };
            assert!(text.contains("cannot be used inside MULTI"), "{text}");
            assert_eq!(send(&mut s, "EXEC"), answer(EXECABORT), "{refused}");
        }
        // EXEC with arguments discards the transaction, aborted or not.
        let mut s = None;
        send(&mut s, "MULTI");
        let Step::Answer(Reply::Error(text)) = send(&mut s, "EXEC now") else {
            panic!("EXEC with an argument is refused");
        };
        assert!(text.starts_with("EXECABORT") && text.contains("'exec'"));
        assert!(s.is_none());
    }

    #[test]
    fn discard_watch_and_unwatch_outside_and_inside() {
        let mut s = None;
        assert_eq!(send(&mut s, "DISCARD"), answer("ERR DISCARD without MULTI"));
        let Step::Answer(Reply::Error(text)) = send(&mut s, "WATCH k") else {
            panic!("WATCH is refused");
        };
        assert!(text.contains("not supported"), "{text}");
        assert_eq!(send(&mut s, "UNWATCH"), answer("OK"));
        assert!(s.is_none(), "none of them starts a transaction");
        send(&mut s, "MULTI");
        send(&mut s, "SET a 1");
        assert_eq!(send(&mut s, "DISCARD"), answer("OK"));
        assert!(s.is_none());
        assert_eq!(send(&mut s, "SET a 1"), Step::Run);
    }

    #[test]
    fn seq_goes_on_exec_only() {
        let mut s = None;
        assert!(matches!(
            send_with(&mut s, "MULTI", Some(1), MAX),
            Step::Answer(Reply::Error(_))
        ));
        assert!(s.is_none());
        send(&mut s, "MULTI");
        send(&mut s, "SET a 1");
        // SEQ n EXEC is left to SEQ, which checks n and comes back as EXEC.
        assert_eq!(send(&mut s, "SEQ 1 exec"), Step::Run);
        assert_eq!(send(&mut s, "QUIT"), Step::Run);
        assert!(matches!(
            send_with(&mut s, "EXEC", Some(1), MAX),
            Step::Exec(q) if q == vec![set("a", "1")]
        ));
        send(&mut s, "MULTI");
        assert!(matches!(
            send(&mut s, "SEQ 1 SET a 1"),
            Step::Answer(Reply::Error(text)) if text.contains("SEQ may only prefix EXEC")
        ));
        assert_eq!(send(&mut s, "EXEC"), answer(EXECABORT));
    }

    #[test]
    fn the_queue_is_bounded_in_commands_and_bytes() {
        let mut s = None;
        send(&mut s, "MULTI");
        for _ in 0..MAX_QUEUED {
            assert_eq!(send(&mut s, "SET k v"), answer("QUEUED"));
        }
        let Step::Answer(Reply::Error(text)) = send(&mut s, "PING") else {
            panic!("one command too many is refused");
        };
        assert!(text.contains("at most 10000"), "{text}");
        assert_eq!(s.as_ref().map(|tx| tx.queued.len()), Some(0), "dropped");
        assert_eq!(send(&mut s, "EXEC"), answer(EXECABORT));

        // SET k v is 5 bytes encoded; the envelope takes its share.
        let max = ENVELOPE_BYTES + 10;
        send(&mut s, "MULTI");
        assert_eq!(send_with(&mut s, "SET k v", None, max), answer("QUEUED"));
        assert_eq!(send_with(&mut s, "SET k v", None, max), answer("QUEUED"));
        let Step::Answer(Reply::Error(text)) = send_with(&mut s, "SET k v", None, max) else {
            panic!("a command over the byte limit is refused");
        };
        assert!(text.contains(&format!("{max}-byte limit")), "{text}");
        assert_eq!(send(&mut s, "EXEC"), answer(EXECABORT));
    }

    #[test]
    fn exec_interleaves_known_replies_with_the_outcomes_in_order() {
        let queued = vec![
            set("a", "x"),
            Queued::Reply(Reply::Simple("PONG".into())),
            Queued::Store(Command::Incr { key: b"a".to_vec() }),
            Queued::Store(Command::Get { key: b"a".to_vec() }),
        ];
        let write = |command: Command| {
            let Command::Multi(commands) = command else {
                panic!("EXEC proposes one Multi");
            };
            assert_eq!(commands.len(), 3);
            Ok(Outcome::Multi(vec![
                Outcome::Done,
                Outcome::Refused("value is not an integer or out of range".into()),
                Outcome::Value(Some(b"x".to_vec())),
            ]))
        };
        let reply = |outcome: Outcome| match outcome {
            Outcome::Done => Reply::ok(),
            Outcome::Refused(why) => Reply::error(why),
            Outcome::Value(Some(v)) => Reply::Bulk(v),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            exec(queued.clone(), write, reply),
            Reply::Array(vec![
                Reply::ok(),
                Reply::Simple("PONG".into()),
                Reply::error("value is not an integer or out of range"),
                Reply::Bulk(b"x".to_vec()),
            ])
        );
        // A redirect or timeout answers for the whole transaction.
        let moved = Reply::Error("MOVED 15495 127.0.0.1:7001".into());
        assert_eq!(exec(queued.clone(), |_| Err(moved.clone()), reply), moved);
        // A session's refusal too, and a retry that does not match its first
        // run is an error rather than misattributed replies.
        let refused = |_| Ok(Outcome::Refused("sequence number 1 is older".into()));
        assert_eq!(
            exec(queued.clone(), refused, reply),
            Reply::error("sequence number 1 is older")
        );
        let other = |_| Ok(Outcome::Multi(vec![Outcome::Done]));
        assert!(matches!(
            exec(queued, other, reply),
            Reply::Error(text) if text.contains("same transaction")
        ));
        // Nothing to write: no entry at all.
        let none = vec![Queued::Reply(Reply::Simple("PONG".into()))];
        let never = |_| -> Result<Outcome, Reply> { panic!("nothing to propose") };
        assert_eq!(
            exec(none, never, reply),
            Reply::Array(vec![Reply::Simple("PONG".into())])
        );
        assert_eq!(exec(vec![], never, reply), Reply::Array(vec![]));
    }
}
