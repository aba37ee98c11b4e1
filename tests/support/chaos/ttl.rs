//! Keys with short times to live in the fault suite, and the check that no
//! read ever sees one past its deadline.
//!
//! # The workload
//!
//! [`run_ttl_client`] is a sequential client, like the linearizability
//! clients, on keys `t0`, `t1`, … of its own: the linearizability checker's
//! model has no time, so a key that vanishes at its deadline would look to it
//! like a lost write. These keys are recorded here instead, in a
//! [`TtlHistory`], and never in the checker's history. Every write is one of
//! `SET k v PXAT now+t` (the client computes the deadline, so it is known
//! exactly), `SET k v PX t` (the deadline is the entry's clock plus `t`),
//! and now and then `PEXPIREAT`, `PEXPIRE` or `PERSIST`, with `t` between 20
//! and 300 ms; every value is unique. Reads are `GET` and `PEXPIRETIME`,
//! well over half of the operations: with a few dozen keys, most keys are
//! read more often than written, so reads meet keys close to and past their
//! deadlines, not just freshly written ones.
//!
//! # Why the check can be exact
//!
//! The harness runs every node in one process, so the clients, the leader
//! that stamps a write and the leader that evaluates a read all read one
//! clock, [`now_ms`], which never goes back. An operation records `now_ms()`
//! just before it is started (`call_ms`) and just after its answer
//! (`ret_ms`). Then, with no slack needed for skew or granularity:
//!
//! * a read is evaluated at the leader's `now_ms()` when it answers (which is
//!   no earlier than when the read was started), or at the store's clock if
//!   that is later: never before its `call_ms`;
//! * a key's deadline is *not after* the time a read is evaluated at means
//!   the key is absent;
//! * `PXAT d` and `PEXPIREAT d` set the deadline `d`; `PX t` and `PEXPIRE t`
//!   set the entry's clock plus `t`, and that clock is at least the write's
//!   stamp (taken after `call_ms`) and at most the time it was applied
//!   (before `ret_ms`): the deadline lies in `[call_ms + t, ret_ms + t]`, or
//!   is at least `call_ms + t` if the write's outcome is unknown.
//!
//! # What is checked
//!
//! For every `GET` that returned a value `v`, written by the unique write `W`
//! of `v`: the latest deadline `v` can have had when the read saw it is the
//! latest of `W`'s and of every `PEXPIRE`/`PEXPIREAT`/`PERSIST` (that did not
//! answer 0) on the key that may fall between `W` and the read (invoked
//! before the read returned, and not returned before `W` was invoked);
//! `PERSIST`, or a relative one of unknown outcome, has none. If that
//! deadline is not after the read's `call_ms`, the read saw a key past its
//! deadline: a **violation**. So is a `GET` returning a value no write wrote,
//! or invoked after a later write of the same key had completed (a stale
//! value, whatever the times to live), and a `PEXPIRETIME` answering a
//! deadline not after its `call_ms`, a deadline no operation could have set,
//! or "no time to live" when no `PERSIST` could have applied.
//!
//! After the scenario the harness waits for every key with a deadline to be
//! deleted on every replica by active expiry (the harness runs an
//! [`raftnode::kv::expirer::Expirer`] beside every node, as the client port does),
//! then for the replicas to agree again (see `Chaos::finish`).

use super::{definite_failure, Inner};
use parking_lot::Mutex;
use raftnode::kv::{
    now_ms, Command, Condition, ExpireCondition, Expiry, KeyValue, KvNode, Outcome, QueryReply,
    Read,
};
use raftnode::Error;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// The shortest and longest time to live the clients ask for, in ms.
pub const TTL_MS: (u64, u64) = (20, 300);

/// What a TTL client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TtlInput {
    /// `SET k value PXAT deadline`.
    SetAt {
        value: String,
        deadline: u64,
    },
    /// `SET k value PX ms`.
    SetIn {
        value: String,
        ms: u64,
    },
    /// `PEXPIREAT k deadline`.
    ExpireAt {
        deadline: u64,
    },
    /// `PEXPIRE k ms`.
    ExpireIn {
        ms: u64,
    },
    Persist,
    Get,
    /// `PEXPIRETIME k`.
    ExpireTime,
}

/// What it was answered; `Unknown` for an outcome never seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TtlOutput {
    Done,
    Value(Option<String>),
    Integer(i64),
    Unknown,
}

/// One operation on a key with a time to live.
#[derive(Clone, Debug)]
pub struct TtlOp {
    pub client: usize,
    pub key: String,
    pub input: TtlInput,
    pub output: TtlOutput,
    /// Invocation and response, in nanoseconds since the history began
    /// (real-time order between operations); no response if indefinite.
    pub call: u64,
    pub ret: Option<u64>,
    /// The same moments on the nodes' clock, [`now_ms`].
    pub call_ms: u64,
    pub ret_ms: Option<u64>,
}

impl TtlOp {
    /// The latest deadline this operation can have given the key: `None`
    /// for none at all (PERSIST, or a relative time to live whose write
    /// may apply at any later time). Reads give none either.
    fn latest_deadline(&self) -> Option<u64> {
        match self.input {
            TtlInput::SetAt { deadline, .. } | TtlInput::ExpireAt { deadline } => Some(deadline),
            TtlInput::SetIn { ms, .. } | TtlInput::ExpireIn { ms } => self.ret_ms.map(|r| r + ms),
            TtlInput::Persist | TtlInput::Get | TtlInput::ExpireTime => None,
        }
    }

    /// The deadlines this operation can have set, if it sets one.
    fn deadlines(&self) -> Option<(u64, u64)> {
        match self.input {
            TtlInput::SetAt { deadline, .. } | TtlInput::ExpireAt { deadline } => {
                Some((deadline, deadline))
            }
            TtlInput::SetIn { ms, .. } | TtlInput::ExpireIn { ms } => {
                Some((self.call_ms + ms, self.ret_ms.map_or(u64::MAX, |r| r + ms)))
            }
            TtlInput::Persist | TtlInput::Get | TtlInput::ExpireTime => None,
        }
    }

    fn is_write(&self) -> bool {
        matches!(self.input, TtlInput::SetAt { .. } | TtlInput::SetIn { .. })
    }

    /// A PEXPIRE, PEXPIREAT or PERSIST that may have changed the deadline:
    /// one that answered 0 did not (the key was absent, or had no deadline
    /// to take away).
    fn may_change_deadline(&self) -> bool {
        matches!(
            self.input,
            TtlInput::ExpireAt { .. } | TtlInput::ExpireIn { .. } | TtlInput::Persist
        ) && self.output != TtlOutput::Integer(0)
    }

    /// Whether it may have been linearized before an operation that
    /// returned at `ret`.
    fn invoked_before(&self, ret: u64) -> bool {
        self.call <= ret
    }
}

/// Operations printed relative to a base time, for violations.
struct Shown<'a>(&'a TtlOp, u64);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, base) = (self.0, self.1);
        let rel = |ms: u64| ms as i64 - base as i64;
        write!(f, "[client {}] {} ", op.client, op.key)?;
        match &op.input {
            TtlInput::SetAt { value, deadline } => {
                write!(f, "SET {value} PXAT +{}ms", rel(*deadline))?
            }
            TtlInput::SetIn { value, ms } => write!(f, "SET {value} PX {ms}")?,
            TtlInput::ExpireAt { deadline } => write!(f, "PEXPIREAT +{}ms", rel(*deadline))?,
            TtlInput::ExpireIn { ms } => write!(f, "PEXPIRE {ms}")?,
            TtlInput::Persist => write!(f, "PERSIST")?,
            TtlInput::Get => write!(f, "GET")?,
            TtlInput::ExpireTime => write!(f, "PEXPIRETIME")?,
        }
        match &op.output {
            TtlOutput::Unknown => write!(f, " -> ?")?,
            TtlOutput::Done => {}
            TtlOutput::Value(v) => write!(f, " -> {v:?}")?,
            TtlOutput::Integer(n) if *n > 1_000_000 => write!(f, " -> +{}ms", rel(*n as u64))?,
            TtlOutput::Integer(n) => write!(f, " -> {n}")?,
        }
        match op.ret_ms {
            Some(ret) => write!(f, " (clock +{}..+{}ms)", rel(op.call_ms), rel(ret)),
            None => write!(f, " (clock +{}ms.., no answer)", rel(op.call_ms)),
        }
    }
}

/// Handle to an operation recorded with [`TtlHistory::invoke`].
#[derive(Clone, Copy, Debug)]
pub struct TtlOpId(usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Pending,
    Completed,
    Failed,
    Indefinite,
}

/// The operations on keys with a time to live, as the linearizability
/// `History` records its own: `invoke` right before the request, then one
/// of `complete`, `fail` (definitely not done: left out) or `indefinite`.
pub struct TtlHistory {
    start: Instant,
    /// [`now_ms`] when the history began: times are shown relative to it.
    pub base_ms: u64,
    entries: Mutex<Vec<(TtlOp, Status)>>,
}

impl Default for TtlHistory {
    fn default() -> Self {
        TtlHistory {
            start: Instant::now(),
            base_ms: now_ms(),
            entries: Mutex::new(Vec::new()),
        }
    }
}

impl TtlHistory {
    fn tick(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn invoke(&self, client: usize, key: &str, input: TtlInput) -> TtlOpId {
        let call = self.tick();
        // After the tick, and before the request takes its own stamp.
        let call_ms = now_ms();
        let mut entries = self.entries.lock();
        entries.push((
            TtlOp {
                client,
                key: key.to_string(),
                input,
                output: TtlOutput::Unknown,
                call,
                ret: None,
                call_ms,
                ret_ms: None,
            },
            Status::Pending,
        ));
        TtlOpId(entries.len() - 1)
    }

    pub fn complete(&self, id: TtlOpId, output: TtlOutput) {
        let ret_ms = now_ms();
        let ret = self.tick();
        self.resolve(id, Status::Completed, |op| {
            op.output = output;
            op.ret = Some(ret);
            op.ret_ms = Some(ret_ms);
        });
    }

    pub fn fail(&self, id: TtlOpId) {
        self.resolve(id, Status::Failed, |_| {});
    }

    pub fn indefinite(&self, id: TtlOpId) {
        self.resolve(id, Status::Indefinite, |_| {});
    }

    fn resolve(&self, id: TtlOpId, status: Status, update: impl FnOnce(&mut TtlOp)) {
        let mut entries = self.entries.lock();
        let (op, current) = &mut entries[id.0];
        assert_eq!(
            *current,
            Status::Pending,
            "TTL operation {id:?} resolved twice"
        );
        update(op);
        *current = status;
    }

    /// Completed and indefinite operations (pending ones count as
    /// indefinite), in invocation order.
    pub fn ops(&self) -> Vec<TtlOp> {
        self.entries
            .lock()
            .iter()
            .filter(|(_, status)| *status != Status::Failed)
            .map(|(op, _)| op.clone())
            .collect()
    }
}

/// What [`check`] looked at, and what it found.
#[derive(Debug, Default)]
pub struct TtlReport {
    /// SETs with a time to live: completed, and of unknown outcome.
    pub writes: usize,
    pub writes_unknown: usize,
    /// PEXPIRE, PEXPIREAT and PERSIST.
    pub deadline_changes: usize,
    /// GETs answered: with a value (each checked against its deadline), and
    /// with none.
    pub gets_value: usize,
    pub gets_none: usize,
    /// GETs that returned a value at most 5 ms before the latest deadline
    /// it could have had: the check was close to biting.
    pub close_calls: usize,
    /// PEXPIRETIMEs answered.
    pub expiretimes: usize,
    pub violations: Vec<String>,
}

impl fmt::Display for TtlReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} SETs with a TTL (+{} of unknown outcome), {} PEXPIRE/PEXPIREAT/PERSIST; \
             GETs: {} with a value checked against its deadline ({} within 5 ms of it), \
             {} without; {} PEXPIRETIMEs; {} violations",
            self.writes,
            self.writes_unknown,
            self.deadline_changes,
            self.gets_value,
            self.close_calls,
            self.gets_none,
            self.expiretimes,
            self.violations.len()
        )
    }
}

/// Checks a TTL history (see the module doc); `base_ms` is where the
/// times in violations are shown from.
pub fn check(ops: &[TtlOp], base_ms: u64) -> TtlReport {
    let mut report = TtlReport::default();
    let mut by_key: BTreeMap<&str, Vec<&TtlOp>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    for key_ops in by_key.values() {
        check_key(key_ops, base_ms, &mut report);
    }
    report
}

fn check_key(ops: &[&TtlOp], base: u64, report: &mut TtlReport) {
    let show = |op: &TtlOp| Shown(op, base).to_string();
    let mut written: HashMap<&str, &TtlOp> = HashMap::new();
    for op in ops.iter().filter(|op| op.is_write()) {
        match &op.input {
            TtlInput::SetAt { value, .. } | TtlInput::SetIn { value, .. } => {
                written.insert(value.as_str(), op);
            }
            _ => unreachable!(),
        }
        match op.ret {
            Some(_) => report.writes += 1,
            None => report.writes_unknown += 1,
        }
    }
    let changes: Vec<&TtlOp> = ops
        .iter()
        .copied()
        .filter(|op| op.may_change_deadline())
        .collect();
    report.deadline_changes += ops
        .iter()
        .filter(|op| {
            matches!(
                op.input,
                TtlInput::ExpireAt { .. } | TtlInput::ExpireIn { .. } | TtlInput::Persist
            )
        })
        .count();
    // Completed writes by response, with the latest invocation among those
    // that responded by then: a read invoked after response r cannot see a
    // value whose write completed before the invocation recorded for r.
    let mut completed: Vec<(u64, u64)> = ops
        .iter()
        .filter(|op| op.is_write())
        .filter_map(|op| Some((op.ret?, op.call)))
        .collect();
    completed.sort_unstable();
    let mut latest_call = 0;
    for (_, call) in completed.iter_mut() {
        latest_call = latest_call.max(*call);
        *call = latest_call;
    }
    // The latest invocation of a write that completed before `t`.
    let last_write_before = |t: u64| -> Option<u64> {
        let n = completed.partition_point(|&(ret, _)| ret < t);
        n.checked_sub(1).map(|i| completed[i].1)
    };
    for read in ops {
        let Some(read_ret) = read.ret else { continue };
        match (&read.input, &read.output) {
            (TtlInput::Get, TtlOutput::Value(None)) => report.gets_none += 1,
            (TtlInput::Get, TtlOutput::Value(Some(value))) => {
                report.gets_value += 1;
                let Some(&write) = written.get(value.as_str()) else {
                    report.violations.push(format!(
                        "a GET returned a value no write wrote: {}",
                        show(read)
                    ));
                    continue;
                };
                if write.call > read_ret {
                    report.violations.push(format!(
                        "a GET returned a value before its write was invoked: {} / {}",
                        show(read),
                        show(write)
                    ));
                }
                if let (Some(write_ret), Some(later)) = (write.ret, last_write_before(read.call)) {
                    if later > write_ret {
                        report.violations.push(format!(
                            "a GET returned a value overwritten before it was invoked: {} \
                             returned {}, and a write invoked after that completed before \
                             the read",
                            show(read),
                            show(write)
                        ));
                    }
                }
                // The latest deadline the value can have had: `None` is none.
                let between: Vec<&TtlOp> = changes
                    .iter()
                    .copied()
                    .filter(|c| c.invoked_before(read_ret) && c.ret.is_none_or(|r| r >= write.call))
                    .collect();
                let mut latest = write.latest_deadline();
                for change in &between {
                    latest = match (latest, change.latest_deadline()) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                }
                let Some(latest) = latest else { continue };
                if latest <= read.call_ms {
                    let mut why = format!(
                        "a GET invoked at +{}ms returned a value whose deadline was +{}ms at \
                         the latest:\n  {}\n  {}",
                        read.call_ms as i64 - base as i64,
                        latest as i64 - base as i64,
                        show(read),
                        show(write)
                    );
                    for change in between {
                        why.push_str(&format!("\n  {}", show(change)));
                    }
                    report.violations.push(why);
                } else if latest <= read.call_ms + 5 {
                    report.close_calls += 1;
                }
            }
            (TtlInput::ExpireTime, TtlOutput::Integer(deadline)) => {
                report.expiretimes += 1;
                match *deadline {
                    -2 => {}
                    -1 => {
                        let persisted = changes
                            .iter()
                            .any(|c| c.input == TtlInput::Persist && c.invoked_before(read_ret));
                        if !persisted {
                            report.violations.push(format!(
                                "PEXPIRETIME found no deadline, but no PERSIST could have \
                                 taken one away: {}",
                                show(read)
                            ));
                        }
                    }
                    d if d >= 0 => {
                        let d = d as u64;
                        if d <= read.call_ms {
                            report.violations.push(format!(
                                "PEXPIRETIME invoked at +{}ms answered a deadline already \
                                 passed: {}",
                                read.call_ms as i64 - base as i64,
                                show(read)
                            ));
                        }
                        let explained = ops.iter().any(|op| {
                            op.invoked_before(read_ret)
                                && op.output != TtlOutput::Integer(0)
                                && op
                                    .deadlines()
                                    .is_some_and(|(lo, hi)| (lo..=hi).contains(&d))
                        });
                        if !explained {
                            report.violations.push(format!(
                                "PEXPIRETIME answered a deadline no operation could have set: \
                                 {}",
                                show(read)
                            ));
                        }
                    }
                    _ => report
                        .violations
                        .push(format!("PEXPIRETIME answered nonsense: {}", show(read))),
                }
            }
            (TtlInput::Get | TtlInput::ExpireTime, other) => report
                .violations
                .push(format!("a read was answered {other:?}: {}", show(read))),
            _ => {}
        }
    }
}

/// A client of keys `t0..t{keys}` with short times to live (see the module
/// doc), against whichever node it believes leads, as the other clients
/// pick it.
pub(super) fn run_ttl_client(inner: Arc<Inner>, client: usize, keys: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !inner.stop_clients.load(Ordering::Acquire) {
        let Some((target, node)) = inner.pick_node(&mut rng) else {
            continue;
        };
        let key = format!("t{}", rng.gen_range(0..keys));
        let ms = rng.gen_range(TTL_MS.0..=TTL_MS.1);
        let set = |value: String, expiry| Command::SetWith {
            key: key.clone().into_bytes(),
            value: value.into_bytes(),
            condition: Condition::Always,
            get: false,
            expiry,
        };
        let expire = |when_ms: u64, relative| Command::Expire {
            key: key.clone().into_bytes(),
            when_ms: when_ms as i64,
            relative,
            condition: ExpireCondition::default(),
        };
        let result = match rng.gen_range(0..100) {
            0..=19 => {
                let value = inner.fresh_value(client);
                let deadline = now_ms() + ms;
                let input = TtlInput::SetAt {
                    value: value.clone(),
                    deadline,
                };
                ttl_write(
                    &inner,
                    client,
                    &node,
                    &key,
                    input,
                    set(value, Expiry::At(deadline)),
                )
            }
            20..=31 => {
                let value = inner.fresh_value(client);
                let input = TtlInput::SetIn {
                    value: value.clone(),
                    ms,
                };
                ttl_write(
                    &inner,
                    client,
                    &node,
                    &key,
                    input,
                    set(value, Expiry::In(ms)),
                )
            }
            32..=76 => ttl_read(&inner, client, &node, &key, TtlInput::Get),
            77..=89 => ttl_read(&inner, client, &node, &key, TtlInput::ExpireTime),
            90..=93 => {
                let deadline = now_ms() + ms;
                let input = TtlInput::ExpireAt { deadline };
                ttl_write(&inner, client, &node, &key, input, expire(deadline, false))
            }
            94..=96 => {
                let input = TtlInput::ExpireIn { ms };
                ttl_write(&inner, client, &node, &key, input, expire(ms, true))
            }
            _ => {
                let command = Command::Persist {
                    key: key.clone().into_bytes(),
                };
                ttl_write(&inner, client, &node, &key, TtlInput::Persist, command)
            }
        };
        inner.after_attempt(&mut rng, target, result);
    }
}

/// One write, recorded: a definite failure leaves the history, any other
/// error leaves it with an unknown outcome.
fn ttl_write(
    inner: &Inner,
    client: usize,
    node: &KvNode,
    key: &str,
    input: TtlInput,
    command: Command,
) -> Result<(), Error> {
    let history = &inner.ttl;
    let op = history.invoke(client, key, input);
    match node.write(command) {
        Ok(Outcome::Done) => history.complete(op, TtlOutput::Done),
        Ok(Outcome::Integer(n)) => history.complete(op, TtlOutput::Integer(n)),
        Ok(other) => {
            inner.violation(format!(
                "client {client}: a write of {key} produced {other:?}"
            ));
            history.indefinite(op);
        }
        Err(e) => {
            match definite_failure(&e) {
                true => history.fail(op),
                false => history.indefinite(op),
            }
            return Err(e);
        }
    }
    Ok(())
}

/// One linearizable read (GET or PEXPIRETIME) at the node's time, recorded:
/// a failed read took no effect and leaves the history.
fn ttl_read(
    inner: &Inner,
    client: usize,
    node: &KvNode,
    key: &str,
    input: TtlInput,
) -> Result<(), Error> {
    let history = &inner.ttl;
    let read = match input {
        TtlInput::Get => Read::Get {
            key: key.as_bytes().to_vec(),
        },
        _ => Read::Ttl {
            key: key.as_bytes().to_vec(),
            millis: true,
            absolute: true,
        },
    };
    let op = history.invoke(client, key, input);
    match node.lookup(read) {
        Ok(QueryReply::Value(v)) => {
            let v = v.map(|v| String::from_utf8(v).expect("values are UTF-8"));
            history.complete(op, TtlOutput::Value(v));
        }
        Ok(QueryReply::Integer(n)) => history.complete(op, TtlOutput::Integer(n)),
        Ok(other) => {
            inner.violation(format!(
                "client {client}: a read of {key} produced {other:?}"
            ));
            history.fail(op);
        }
        Err(e) => {
            history.fail(op);
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 1_000_000_000;

    fn op(input: TtlInput, output: TtlOutput, call: u64, ret: Option<u64>) -> TtlOp {
        // Ticks in ms here, for readability: the checker only compares them.
        TtlOp {
            client: 1,
            key: "t0".into(),
            input,
            output,
            call,
            ret,
            call_ms: BASE + call,
            ret_ms: ret.map(|r| BASE + r),
        }
    }

    fn set_at(value: &str, deadline: u64, call: u64, ret: u64) -> TtlOp {
        let input = TtlInput::SetAt {
            value: value.into(),
            deadline: BASE + deadline,
        };
        op(input, TtlOutput::Done, call, Some(ret))
    }

    fn get(value: Option<&str>, call: u64, ret: u64) -> TtlOp {
        let output = TtlOutput::Value(value.map(Into::into));
        op(TtlInput::Get, output, call, Some(ret))
    }

    #[test]
    fn a_value_read_after_its_deadline_is_a_violation() {
        let ops = [set_at("a", 100, 0, 2), get(Some("a"), 99, 101)];
        assert!(check(&ops, BASE).violations.is_empty(), "before: fine");
        let ops = [set_at("a", 100, 0, 2), get(Some("a"), 100, 101)];
        let report = check(&ops, BASE);
        assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
        assert!(report.violations[0].contains("deadline"));
    }

    #[test]
    fn a_relative_ttl_counts_from_the_writes_response_at_the_latest() {
        let set = |ret| {
            let input = TtlInput::SetIn {
                value: "a".into(),
                ms: 50,
            };
            op(input, TtlOutput::Done, 0, ret)
        };
        let read = |call| get(Some("a"), call, call + 1);
        assert!(check(&[set(Some(10)), read(59)], BASE)
            .violations
            .is_empty());
        assert_eq!(check(&[set(Some(10)), read(60)], BASE).violations.len(), 1);
        // Of unknown outcome, the write may have applied at any time.
        assert!(check(&[set(None), read(10_000)], BASE)
            .violations
            .is_empty());
    }

    #[test]
    fn a_deadline_moved_or_taken_away_in_between_is_allowed_for() {
        let expire = |deadline, output, call, ret| {
            op(
                TtlInput::ExpireAt {
                    deadline: BASE + deadline,
                },
                output,
                call,
                ret,
            )
        };
        let base = [set_at("a", 100, 0, 2), get(Some("a"), 150, 151)];
        let with = |extra: TtlOp| {
            let mut ops = base.to_vec();
            ops.push(extra);
            check(&ops, BASE).violations.len()
        };
        assert_eq!(with(expire(200, TtlOutput::Integer(1), 50, Some(52))), 0);
        assert_eq!(with(expire(200, TtlOutput::Unknown, 50, None)), 0);
        let persist = op(TtlInput::Persist, TtlOutput::Integer(1), 50, Some(52));
        assert_eq!(with(persist), 0);
        // One that answered 0 changed nothing; one invoked after the read
        // returned, or that returned before the write was invoked, could not
        // fall between them.
        assert_eq!(with(expire(200, TtlOutput::Integer(0), 50, Some(52))), 1);
        assert_eq!(with(expire(200, TtlOutput::Integer(1), 152, Some(153))), 1);
        let mut early = base.to_vec();
        early[0] = set_at("a", 100, 10, 12);
        early.push(expire(200, TtlOutput::Integer(1), 5, Some(8)));
        assert_eq!(check(&early, BASE).violations.len(), 1);
    }

    #[test]
    fn stale_and_unwritten_values_are_violations() {
        let ops = [
            set_at("a", 1000, 0, 2),
            set_at("b", 1000, 3, 5),
            get(Some("a"), 6, 7),
        ];
        let report = check(&ops, BASE);
        assert_eq!(report.violations.len(), 1);
        assert!(report.violations[0].contains("overwritten"));
        // Concurrent with the second write: either order is possible.
        let ops = [
            set_at("a", 1000, 0, 2),
            set_at("b", 1000, 3, 8),
            get(Some("a"), 6, 7),
        ];
        assert!(check(&ops, BASE).violations.is_empty());
        let report = check(&[get(Some("z"), 6, 7)], BASE);
        assert!(report.violations[0].contains("no write wrote"));
    }

    #[test]
    fn pexpiretime_must_be_in_the_future_and_explained() {
        let expiretime = |n: i64, call| {
            op(
                TtlInput::ExpireTime,
                TtlOutput::Integer(n),
                call,
                Some(call + 1),
            )
        };
        let deadline = (BASE + 100) as i64;
        let set = set_at("a", 100, 0, 2);
        assert!(check(&[set.clone(), expiretime(deadline, 50)], BASE)
            .violations
            .is_empty());
        assert_eq!(
            check(&[set.clone(), expiretime(deadline, 100)], BASE)
                .violations
                .len(),
            1,
            "already passed"
        );
        assert_eq!(
            check(&[set.clone(), expiretime(deadline + 1, 50)], BASE)
                .violations
                .len(),
            1,
            "never set"
        );
        assert_eq!(
            check(&[set.clone(), expiretime(-1, 50)], BASE)
                .violations
                .len(),
            1,
            "no PERSIST"
        );
        let persist = op(TtlInput::Persist, TtlOutput::Unknown, 10, None);
        assert!(check(&[set, persist, expiretime(-1, 50)], BASE)
            .violations
            .is_empty());
    }
}
