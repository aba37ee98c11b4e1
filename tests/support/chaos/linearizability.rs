//! Linearizability checking for key-value histories recorded by the test suite.
//!
//! # What is checked
//!
//! Every key is a register whose value is an optional string (absent = `None`
//! at the start). A concurrent *history* is a set of operations, each with the
//! time it was invoked (`call`) and the time its response arrived (`ret`). The
//! history is *linearizable* (Herlihy & Wing 1990) if every operation can be
//! given a single instant between its call and its return such that, executed
//! one at a time in the order of those instants, the operations produce exactly
//! the outputs that were observed. Equivalently: there is a total order of the
//! operations that (a) respects real time — if `a` returned before `b` was
//! called, `a` comes first — and (b) is a legal sequential execution of the
//! model. Two operations whose timestamps tie (`a.ret == b.call`) are treated
//! as concurrent, which is the conservative reading of a clock tick.
//!
//! Operations that timed out or lost their connection are *indefinite*: the
//! request may have taken effect at any time after it was sent, or never. Such
//! an operation has no return time (it behaves as if it returned at +infinity),
//! its output constrains nothing, and a linearization is allowed to leave it out
//! entirely. Operations that failed definitely (the server said "not done") are
//! simply removed from the history by [`History::fail`].
//!
//! # How it is checked
//!
//! Linearizability is *local* (Herlihy & Wing): a history is linearizable iff
//! its restriction to each object is. Since every key is an independent
//! register, [`check`] splits the history by key and checks each key on its own,
//! as Porcupine does with its partitioned models. This keeps each search small.
//!
//! Each key is checked with the Wing & Gong algorithm (J. M. Wing and C. Gong,
//! "Testing and verifying concurrent objects", JPDC 1993) with the memoization
//! added by Lowe (G. Lowe, "Testing for linearizability", Concurrency and
//! Computation: Practice and Experience, 2017) — the "WGL" algorithm that
//! Porcupine (github.com/anishathalye/porcupine) also implements:
//!
//! 1. Every operation contributes two events, its call and its return, and all
//!    events are put in one doubly linked list sorted by time (calls before
//!    returns at equal times; indefinite returns at the very end).
//! 2. A depth-first search walks the list from the front. When it meets a call
//!    event, that operation is *minimal*: nothing still in the list had to
//!    happen before it. If applying it to the current model state produces the
//!    observed output, the search tentatively linearizes it: it pushes the
//!    operation and the previous state onto a stack, removes the call and its
//!    return from the list ("lifts" them, dancing-links style, so they can be
//!    put back in O(1)) and restarts from the front of the list.
//! 3. When the walk meets the return event of an operation that is not yet
//!    linearized, every way of continuing from the current prefix has been
//!    tried: that operation should have taken effect before returning and could
//!    not. The search backtracks: it pops the last linearized operation,
//!    restores the state, puts its events back into the list and tries the
//!    next candidate after it.
//! 4. Lowe's memo: the pair (set of linearized operations as a bitset, model
//!    state) fully determines the rest of the search, so each pair is explored
//!    at most once; a linearization step that would reach an already-seen pair
//!    is skipped. This turns the otherwise factorial search into something
//!    that is fast for realistic histories.
//! 5. The search succeeds as soon as every *completed* operation is
//!    linearized; indefinite operations may remain, which is exactly "it never
//!    happened". An indefinite operation's return event (at +infinity) never
//!    forces a backtrack. The search fails when it must backtrack with an
//!    empty stack.
//!
//! The search is still exponential in the worst case (the problem is
//! NP-complete; Gibbons & Korach 1997), so every key gets a time budget (and a
//! cap of about 1 GiB on its memo); when it runs out the result is
//! [`CheckResult::Unknown`] instead of a hang.
//!
//! When a key is not linearizable, the explanation shows, Porcupine-style, the
//! longest linearizable prefix the search found (in linearization order, with
//! the model state after each operation), the first operation that could not be
//! linearized after it, and all operations concurrent with that one, each
//! printed like `[client 3] call=12.345ms ret=13.001ms Write("v17")`. Times are
//! shown as milliseconds, assuming the ticks are nanoseconds as recorded by
//! [`History`].
//!
//! # The model
//!
//! * `Read` observes the current value (`None` if absent).
//! * `Write(v)` sets the value.
//! * `Cas { expected, new }` returns `true` and sets `new` iff the value equals
//!   `expected` (an absent value never matches); otherwise returns `false`.
//! * `Append(s)` concatenates `s` (absent acts as the empty string).
//! * `Incr` parses the value as a decimal `i64` (absent acts as 0), stores and
//!   returns the value plus one. On a value that is not a decimal integer (or
//!   would overflow) an `Incr` cannot be linearized at all; a store that
//!   rejects it should report the operation with [`History::fail`].

// When this file is used as a module shared by several integration-test
// binaries, each binary uses only part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// History representation
// ---------------------------------------------------------------------------

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    Read,
    Write(String),
    Cas { expected: String, new: String },
    Append(String),
    Incr,
}

/// What the client observed. `Unknown` is the output of an indefinite
/// operation (and may be used for any operation whose output was not seen).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    Read(Option<String>),
    Ok,
    Cas(bool),
    Incr(i64),
    Unknown,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub client: usize,
    pub key: String,
    /// Invocation time (nanoseconds since the history started, or any
    /// monotonic tick).
    pub call: u64,
    /// Response time; `None` for an indefinite operation.
    pub ret: Option<u64>,
    pub input: Input,
    pub output: Output,
}

impl Op {
    /// Whether the operation completed (has a response time).
    pub fn is_completed(&self) -> bool {
        self.ret.is_some()
    }

    /// The output the checker takes into account: an indefinite operation's
    /// output constrains nothing.
    fn effective_output(&self) -> &Output {
        static UNKNOWN: Output = Output::Unknown;
        if self.ret.is_some() {
            &self.output
        } else {
            &UNKNOWN
        }
    }

    /// Whether the two operations overlap in real time (neither returned
    /// strictly before the other was called).
    fn overlaps(&self, other: &Op) -> bool {
        self.call <= other.ret.unwrap_or(u64::MAX) && other.call <= self.ret.unwrap_or(u64::MAX)
    }
}

/// Formats a tick count (nanoseconds) as milliseconds, e.g. `12.345ms`.
fn fmt_ms(ns: u64) -> String {
    format!("{}.{:03}ms", ns / 1_000_000, (ns % 1_000_000) / 1_000)
}

/// The operation and its output, e.g. `Read -> Some("a")` or `Write("v")`.
fn describe(input: &Input, output: &Output) -> String {
    fn unknown_or(output: &Output, known: impl FnOnce() -> Option<String>) -> String {
        match output {
            Output::Unknown => "?".to_string(),
            _ => known().unwrap_or_else(|| format!("{output:?} (malformed output)")),
        }
    }
    match input {
        Input::Read => {
            let seen = unknown_or(output, || match output {
                Output::Read(value) => Some(format!("{value:?}")),
                _ => None,
            });
            format!("Read -> {seen}")
        }
        Input::Write(value) => match output {
            Output::Ok | Output::Unknown => format!("Write({value:?})"),
            other => format!("Write({value:?}) -> {other:?} (malformed output)"),
        },
        Input::Cas { expected, new } => {
            let outcome = unknown_or(output, || match output {
                Output::Cas(ok) => Some(ok.to_string()),
                _ => None,
            });
            format!("Cas(expected={expected:?}, new={new:?}) -> {outcome}")
        }
        Input::Append(text) => match output {
            Output::Ok | Output::Unknown => format!("Append({text:?})"),
            other => format!("Append({text:?}) -> {other:?} (malformed output)"),
        },
        Input::Incr => {
            let value = unknown_or(output, || match output {
                Output::Incr(n) => Some(n.to_string()),
                _ => None,
            });
            format!("Incr -> {value}")
        }
    }
}

impl fmt::Display for Op {
    /// `[client 3] call=12.345ms ret=13.001ms Write("v17")`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ret = match self.ret {
            Some(ret) => fmt_ms(ret),
            None => "indefinite".to_string(),
        };
        write!(
            f,
            "[client {}] call={} ret={} {}",
            self.client,
            fmt_ms(self.call),
            ret,
            describe(&self.input, &self.output)
        )
    }
}

// ---------------------------------------------------------------------------
// Recorder
// ---------------------------------------------------------------------------

/// Handle to an operation recorded with [`History::invoke`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpId(usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Pending,
    Completed,
    Failed,
    Indefinite,
}

/// Thread-safe recorder of a history. Share it by reference (scoped threads)
/// or in an `Arc`. Each call takes one short mutex lock.
///
/// Protocol per operation: `invoke` right before sending the request, then
/// exactly one of `complete` (response received), `fail` (the operation
/// definitely did not take effect) or `indefinite` (timeout, connection lost:
/// unknown whether it took effect). Timestamps are taken inside these calls,
/// which widens each operation's interval slightly and is therefore safe.
/// Operations still pending when [`History::ops`] is called are reported as
/// indefinite.
pub struct History {
    start: Instant,
    entries: Mutex<Vec<(Op, Status)>>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    pub fn new() -> Self {
        History {
            start: Instant::now(),
            entries: Mutex::new(Vec::new()),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Locks the entries, tolerating poisoning (a client thread that panicked
    /// must not hide the history from the checker).
    fn lock(&self) -> MutexGuard<'_, Vec<(Op, Status)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the invocation of an operation and returns its handle.
    pub fn invoke(&self, client: usize, key: impl Into<String>, input: Input) -> OpId {
        let key = key.into();
        let call = self.now();
        let mut entries = self.lock();
        entries.push((
            Op {
                client,
                key,
                call,
                ret: None,
                input,
                output: Output::Unknown,
            },
            Status::Pending,
        ));
        OpId(entries.len() - 1)
    }

    /// Records the response of an operation.
    pub fn complete(&self, id: OpId, output: Output) {
        let ret = self.now();
        self.resolve(id, Status::Completed, |op| {
            op.ret = Some(ret);
            op.output = output;
        });
    }

    /// The operation definitely did not take effect: it is removed.
    pub fn fail(&self, id: OpId) {
        self.resolve(id, Status::Failed, |_| {});
    }

    /// The operation may or may not have taken effect (timeout, lost
    /// connection); it stays in the history with no return time.
    pub fn indefinite(&self, id: OpId) {
        self.resolve(id, Status::Indefinite, |_| {});
    }

    fn resolve(&self, id: OpId, status: Status, update: impl FnOnce(&mut Op)) {
        let previous = {
            let mut entries = self.lock();
            let (op, current) = entries
                .get_mut(id.0)
                .expect("OpId does not belong to this History");
            let previous = *current;
            if previous == Status::Pending {
                update(op);
                *current = status;
            }
            previous
        };
        assert!(
            previous == Status::Pending,
            "operation {id:?} resolved twice (already {previous:?}, now {status:?})"
        );
    }

    /// Snapshot of the history: completed and indefinite operations (pending
    /// ones count as indefinite), failed ones left out, in invocation order.
    pub fn ops(&self) -> Vec<Op> {
        self.lock()
            .iter()
            .filter(|(_, status)| *status != Status::Failed)
            .map(|(op, _)| op.clone())
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Sequential model
// ---------------------------------------------------------------------------

/// Result of applying one operation to a register state.
enum Step {
    /// The observed output is impossible in this state.
    Illegal,
    Unchanged,
    Changed(Option<String>),
}

/// Applies `input` to `state`, checking it against `output` (`Unknown`
/// accepts anything).
fn step(state: &Option<String>, input: &Input, output: &Output) -> Step {
    let unknown = *output == Output::Unknown;
    match input {
        Input::Read => match output {
            Output::Read(seen) if seen == state => Step::Unchanged,
            Output::Unknown => Step::Unchanged,
            _ => Step::Illegal,
        },
        Input::Write(value) => match output {
            Output::Ok | Output::Unknown => Step::Changed(Some(value.clone())),
            _ => Step::Illegal,
        },
        Input::Cas { expected, new } => {
            let matches = state.as_deref() == Some(expected.as_str());
            if !unknown && *output != Output::Cas(matches) {
                Step::Illegal
            } else if matches {
                Step::Changed(Some(new.clone()))
            } else {
                Step::Unchanged
            }
        }
        Input::Append(text) => match output {
            Output::Ok | Output::Unknown => {
                let mut value = state.clone().unwrap_or_default();
                value.push_str(text);
                Step::Changed(Some(value))
            }
            _ => Step::Illegal,
        },
        Input::Incr => {
            let current = match state {
                None => 0,
                Some(text) => match text.parse::<i64>() {
                    Ok(n) => n,
                    Err(_) => return Step::Illegal,
                },
            };
            let Some(next) = current.checked_add(1) else {
                return Step::Illegal;
            };
            if unknown || *output == Output::Incr(next) {
                Step::Changed(Some(next.to_string()))
            } else {
                Step::Illegal
            }
        }
    }
}

/// Whether `output` is of the kind `input` produces (or `Unknown`).
fn output_matches_input(input: &Input, output: &Output) -> bool {
    matches!(
        (input, output),
        (_, Output::Unknown)
            | (Input::Read, Output::Read(_))
            | (Input::Write(_), Output::Ok)
            | (Input::Cas { .. }, Output::Cas(_))
            | (Input::Append(_), Output::Ok)
            | (Input::Incr, Output::Incr(_))
    )
}

// ---------------------------------------------------------------------------
// Checker
// ---------------------------------------------------------------------------

/// Outcome of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// Every key's history is linearizable.
    Ok,
    /// The history of `key` is not linearizable (or is malformed; the
    /// explanation then says so).
    Violation { key: String, explanation: String },
    /// No violation was found, but the search for `key` ran out of budget.
    Unknown { key: String },
}

impl CheckResult {
    pub fn is_ok(&self) -> bool {
        *self == CheckResult::Ok
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => write!(f, "linearizable"),
            CheckResult::Violation { key, explanation } => {
                write!(
                    f,
                    "linearizability violation on key {key:?}:\n{explanation}"
                )
            }
            CheckResult::Unknown { key } => write!(
                f,
                "linearizability unknown: the search for key {key:?} ran out of time"
            ),
        }
    }
}

/// Checks a history, key by key, giving each key at most `per_key_budget` of
/// search time (and about 1 GiB of memo). A violation on any key wins over an exhausted budget on
/// another; among several, the first key in lexicographic order is reported.
pub fn check(ops: &[Op], per_key_budget: Duration) -> CheckResult {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut first_unknown = None;
    for (key, key_ops) in by_key {
        match check_key(&key_ops, per_key_budget) {
            KeyOutcome::Linearizable => {}
            KeyOutcome::Violation(explanation) => {
                return CheckResult::Violation {
                    key: key.to_string(),
                    explanation,
                }
            }
            KeyOutcome::OutOfBudget => {
                first_unknown.get_or_insert_with(|| key.to_string());
            }
        }
    }
    match first_unknown {
        Some(key) => CheckResult::Unknown { key },
        None => CheckResult::Ok,
    }
}

enum KeyOutcome {
    Linearizable,
    Violation(String),
    OutOfBudget,
}

/// Checks the operations of a single key.
fn check_key(ops: &[&Op], budget: Duration) -> KeyOutcome {
    let malformed: Vec<String> = ops
        .iter()
        .filter(|op| {
            !output_matches_input(&op.input, &op.output) || op.ret.is_some_and(|r| r < op.call)
        })
        .map(|op| format!("  {op}"))
        .collect();
    if !malformed.is_empty() {
        return KeyOutcome::Violation(format!(
            "malformed history (output of the wrong kind, or return before call):\n{}",
            malformed.join("\n")
        ));
    }
    // Sorted by call time, so that explanations read naturally.
    let mut ops = prune_unobserved_writes(ops);
    ops.sort_by_key(|op| (op.call, op.ret.unwrap_or(u64::MAX), op.client));
    match search(&ops, budget) {
        SearchOutcome::Linearizable => KeyOutcome::Linearizable,
        SearchOutcome::OutOfBudget => KeyOutcome::OutOfBudget,
        SearchOutcome::NotLinearizable { longest_prefix } => {
            KeyOutcome::Violation(explain(&ops, &longest_prefix))
        }
    }
}

/// Drops the indefinite writes that no operation could have observed, which
/// would otherwise make the search try every subset of them (a minority leader
/// that times out on fifty writes to one key yields 2^50 subsets).
///
/// Dropping such a write changes nothing: if some linearization includes it,
/// removing it leaves a valid one, because between it and the next write
/// nothing read its value (no read returned it, no CAS expected it) and no CAS
/// failed there (a failed CAS is the one operation whose outcome could flip
/// when the value before the write shows through instead). Writes are
/// oblivious to the value they replace. So the history is linearizable with
/// the write iff it is without it. Keys with appends or increments, whose
/// effects depend on the value, are left alone.
fn prune_unobserved_writes<'a>(ops: &[&'a Op]) -> Vec<&'a Op> {
    if ops
        .iter()
        .any(|op| matches!(op.input, Input::Append(_) | Input::Incr))
    {
        return ops.to_vec();
    }
    let observed = |value: &String| {
        ops.iter().any(|op| match (&op.input, &op.output) {
            (Input::Read, Output::Read(Some(seen))) => seen == value,
            (Input::Cas { expected, .. }, _) => expected == value,
            _ => false,
        })
    };
    let failed_cas_after = |call: u64| {
        ops.iter().any(|op| {
            matches!(op.output, Output::Cas(false)) && op.ret.is_some_and(|ret| ret >= call)
        })
    };
    ops.iter()
        .copied()
        .filter(|op| match &op.input {
            Input::Write(value) if !op.is_completed() => {
                observed(value) || failed_cas_after(op.call)
            }
            _ => true,
        })
        .collect()
}

/// Marks the end of the event list.
const NIL: usize = usize::MAX;
/// Node 0 of the event list is a sentinel in front of the first event.
const HEAD: usize = 0;

/// The call and return events of a key's operations, as a doubly linked list
/// in time order, stored in parallel vectors indexed by node.
struct EventList {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Operation (index into the key's ops) of each node.
    op: Vec<usize>,
    is_call: Vec<bool>,
    /// For a call node, the node of its return event.
    return_node: Vec<usize>,
}

impl EventList {
    fn new(ops: &[&Op]) -> Self {
        // (time, is_return, op): at equal times calls sort before returns, so
        // touching intervals count as concurrent.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call, false, i));
            events.push((op.ret.unwrap_or(u64::MAX), true, i));
        }
        events.sort_unstable();

        let nodes = events.len() + 1;
        let mut list = EventList {
            next: (1..=nodes)
                .map(|n| if n == nodes { NIL } else { n })
                .collect(),
            prev: (0..nodes).map(|n| n.wrapping_sub(1)).collect(),
            op: vec![NIL; nodes],
            is_call: vec![false; nodes],
            return_node: vec![NIL; nodes],
        };
        list.prev[HEAD] = NIL;
        let mut call_node_of_op = vec![NIL; ops.len()];
        for (index, &(_, is_return, op)) in events.iter().enumerate() {
            let node = index + 1;
            list.op[node] = op;
            list.is_call[node] = !is_return;
            if is_return {
                list.return_node[call_node_of_op[op]] = node;
            } else {
                call_node_of_op[op] = node;
            }
        }
        list
    }

    fn first(&self) -> usize {
        self.next[HEAD]
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    /// Re-inserts a node removed by `unlink`; its own links still point at
    /// its old neighbours (dancing links), as removals are undone in LIFO
    /// order.
    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    /// Removes a call event and its return event.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.return_node[call]);
    }

    /// Undoes `lift`.
    fn unlift(&mut self, call: usize) {
        self.relink(self.return_node[call]);
        self.relink(call);
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(bits: usize) -> Self {
        Bitset(vec![0; bits.div_ceil(64)])
    }
    fn set(&mut self, bit: usize) {
        self.0[bit / 64] |= 1 << (bit % 64);
    }
    fn clear(&mut self, bit: usize) {
        self.0[bit / 64] &= !(1 << (bit % 64));
    }
    fn get(&self, bit: usize) -> bool {
        self.0[bit / 64] & (1 << (bit % 64)) != 0
    }
    /// The bits where the value changes (from the 0 before bit 0): the
    /// bitset, losslessly, in space that grows with its runs rather than its
    /// length.
    fn runs(&self) -> Vec<u32> {
        let mut changes = Vec::new();
        let mut carry = 0;
        for (i, &word) in self.0.iter().enumerate() {
            let mut flips = word ^ ((word << 1) | carry);
            carry = word >> 63;
            while flips != 0 {
                changes.push(i as u32 * 64 + flips.trailing_zeros());
                flips &= flips - 1;
            }
        }
        changes
    }
}

/// Gives each distinct model state a small number, so the memo stores
/// `(bitset, u32)` instead of strings.
#[derive(Default)]
struct States {
    ids: HashMap<Option<String>, u32>,
    values: Vec<Option<String>>,
}

impl States {
    fn intern(&mut self, state: Option<String>) -> u32 {
        if let Some(&id) = self.ids.get(&state) {
            return id;
        }
        let id = u32::try_from(self.values.len()).expect("too many distinct states");
        self.values.push(state.clone());
        self.ids.insert(state, id);
        id
    }
    fn get(&self, id: u32) -> &Option<String> {
        &self.values[id as usize]
    }
}

enum SearchOutcome {
    Linearizable,
    /// `longest_prefix`: the longest sequence of operations (indices) that
    /// the search managed to linearize.
    NotLinearizable {
        longest_prefix: Vec<usize>,
    },
    OutOfBudget,
}

/// How many search steps run between two looks at the clock.
const STEPS_PER_CLOCK_CHECK: u32 = 256;
/// Rough cap on the memory of one key's memo; past it the search gives up
/// as if out of time (a generous time budget must not exhaust the machine).
const MEMO_BYTES_LIMIT: usize = 1 << 30;

/// The WGL search with Lowe's memo over one key's operations.
fn search(ops: &[&Op], budget: Duration) -> SearchOutcome {
    let started = Instant::now();
    let mut list = EventList::new(ops);
    let mut states = States::default();
    let mut state = states.intern(None);
    let mut linearized = Bitset::new(ops.len());
    // The linearized set as its runs: in a long history nearly every op
    // before the search's frontier is linearized, so an entry stays small
    // however long the history (a whole bitset per entry made the memo
    // grow with the square of the ops).
    let mut memo: HashSet<(Vec<u32>, u32)> = HashSet::new();
    let mut memo_bytes = 0;
    // Linearized call nodes, each with the state before it.
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut longest_prefix: Vec<usize> = Vec::new();
    let mut completed_left = ops.iter().filter(|op| op.is_completed()).count();
    let mut steps_until_clock_check = STEPS_PER_CLOCK_CHECK;

    // On a key that only ever grows (appends and reads), a state that is not a
    // prefix of what a read still to come returned can never lead anywhere:
    // pruning it turns the search for an order of concurrent appends from
    // exponential into nearly linear.
    let append_only = ops
        .iter()
        .all(|op| matches!(op.input, Input::Append(_) | Input::Read));
    let pending_reads: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| append_only && op.is_completed() && op.input == Input::Read)
        .map(|(i, _)| i)
        .collect();
    let fits_later_reads = |linearized: &Bitset, value: &Option<String>| {
        pending_reads.iter().all(|&r| {
            linearized.get(r)
                || match (&ops[r].output, value) {
                    (Output::Read(Some(seen)), Some(now)) => seen.starts_with(now.as_str()),
                    (Output::Read(None), Some(_)) => false,
                    _ => true,
                }
        })
    };

    let mut node = list.first();
    while completed_left > 0 {
        steps_until_clock_check -= 1;
        if steps_until_clock_check == 0 {
            steps_until_clock_check = STEPS_PER_CLOCK_CHECK;
            if started.elapsed() > budget || memo_bytes > MEMO_BYTES_LIMIT {
                return SearchOutcome::OutOfBudget;
            }
        }
        // While a completed op is unlinearized its return event lies ahead
        // (returns are never skipped), so the walk cannot fall off the end.
        debug_assert_ne!(node, NIL);
        let op_index = list.op[node];
        let op = ops[op_index];

        if list.is_call[node] {
            // A minimal op: try to linearize it now.
            let next_state = match step(states.get(state), &op.input, op.effective_output()) {
                Step::Illegal => None,
                Step::Unchanged => Some(state),
                Step::Changed(value) if append_only && !fits_later_reads(&linearized, &value) => {
                    None
                }
                Step::Changed(value) => Some(states.intern(value)),
            };
            if let Some(next_state) = next_state {
                linearized.set(op_index);
                let runs = linearized.runs();
                // The runs, the vector header, the state id, allocator and
                // hash-table overhead.
                let entry_bytes = 4 * runs.len() + 64;
                if memo.insert((runs, next_state)) {
                    memo_bytes += entry_bytes;
                    stack.push((node, state));
                    state = next_state;
                    list.lift(node);
                    if op.is_completed() {
                        completed_left -= 1;
                    }
                    node = list.first();
                    continue;
                }
                // Already explored from this configuration.
                linearized.clear(op_index);
            }
            node = list.next[node];
        } else if !op.is_completed() {
            // The "return at +infinity" of an indefinite op forces nothing.
            node = list.next[node];
        } else {
            // A completed op is about to return unlinearized: backtrack.
            // The stack has only grown since the last backtrack, so this is
            // where it is longest (copying it on every push made the search
            // quadratic in a long history).
            if stack.len() > longest_prefix.len() {
                longest_prefix = stack.iter().map(|&(call, _)| list.op[call]).collect();
            }
            let Some((call, previous_state)) = stack.pop() else {
                return SearchOutcome::NotLinearizable { longest_prefix };
            };
            let undone = list.op[call];
            linearized.clear(undone);
            if ops[undone].is_completed() {
                completed_left += 1;
            }
            state = previous_state;
            list.unlift(call);
            node = list.next[call];
        }
    }
    SearchOutcome::Linearizable
}

/// How many operations of the longest prefix to print at most.
const PREFIX_LINES: usize = 20;

/// Builds the Porcupine-style explanation of a violation.
fn explain(ops: &[&Op], longest_prefix: &[usize]) -> String {
    use fmt::Write as _;
    let mut out = String::new();
    let completed = ops.iter().filter(|op| op.is_completed()).count();
    let _ = writeln!(
        out,
        "no linearization exists for these {} ops ({} completed, {} indefinite).",
        ops.len(),
        completed,
        ops.len() - completed
    );

    // Replay the prefix to show the state after each op.
    let mut position = vec![None; ops.len()];
    let mut state: Option<String> = None;
    let mut lines = Vec::with_capacity(longest_prefix.len());
    for (k, &i) in longest_prefix.iter().enumerate() {
        position[i] = Some(k);
        if let Step::Changed(value) = step(&state, &ops[i].input, ops[i].effective_output()) {
            state = value;
        }
        lines.push(format!("  #{k:<4} {}   => state {state:?}", ops[i]));
    }
    let _ = writeln!(
        out,
        "Longest linearizable prefix found ({} ops, in linearization order):",
        longest_prefix.len()
    );
    if lines.len() > PREFIX_LINES {
        let _ = writeln!(
            out,
            "  ... {} earlier ops omitted",
            lines.len() - PREFIX_LINES
        );
    }
    for line in lines.iter().skip(lines.len().saturating_sub(PREFIX_LINES)) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "State after the prefix: {state:?}");

    // The completed op returning first among those not linearized: its return
    // event is where every extension of the prefix got stuck.
    let stuck = (0..ops.len())
        .filter(|&i| position[i].is_none() && ops[i].is_completed())
        .min_by_key(|&i| (ops[i].ret, ops[i].call));
    let Some(stuck) = stuck else {
        return out;
    };
    let _ = writeln!(
        out,
        "First op that could not be linearized after this prefix (from this prefix, no \
         order of the remaining ops lets it take effect before it returned):\n  {}",
        ops[stuck]
    );
    // Indefinite ops overlap everything after their call; those called before
    // the window of completed concurrent ops and already used by the prefix
    // are only counted, to keep the list short.
    let concurrent: Vec<usize> = (0..ops.len())
        .filter(|&i| i != stuck && ops[i].overlaps(ops[stuck]))
        .collect();
    let window_start = concurrent
        .iter()
        .filter(|&&i| ops[i].is_completed())
        .map(|&i| ops[i].call)
        .fold(ops[stuck].call, u64::min);
    let (shown, omitted): (Vec<usize>, Vec<usize>) = concurrent.into_iter().partition(|&i| {
        ops[i].is_completed() || ops[i].call >= window_start || position[i].is_none()
    });
    let _ = writeln!(out, "Ops concurrent with it, sorted by call:");
    if shown.is_empty() && omitted.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for i in shown {
        let mark = match position[i] {
            Some(k) => format!("(prefix #{k})"),
            None => "(not in prefix)".to_string(),
        };
        let _ = writeln!(out, "  {}   {mark}", ops[i]);
    }
    if !omitted.is_empty() {
        let _ = writeln!(
            out,
            "  ... and {} older indefinite ops, already taken into the prefix",
            omitted.len()
        );
    }
    out
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_secs(10);
    const MS: u64 = 1_000_000;

    /// SplitMix64: a tiny deterministic generator, so no dependencies.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in `0..n` (n > 0).
        fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len() as u64) as usize]
        }
    }

    // --- history builders (times in milliseconds) ---

    fn op_on(key: &str, client: usize, call: u64, ret: u64, input: Input, output: Output) -> Op {
        Op {
            client,
            key: key.to_string(),
            call: call * MS,
            ret: Some(ret * MS),
            input,
            output,
        }
    }
    fn write(client: usize, call: u64, ret: u64, value: &str) -> Op {
        op_on(
            "k",
            client,
            call,
            ret,
            Input::Write(value.into()),
            Output::Ok,
        )
    }
    fn read(client: usize, call: u64, ret: u64, seen: Option<&str>) -> Op {
        let seen = seen.map(String::from);
        op_on("k", client, call, ret, Input::Read, Output::Read(seen))
    }
    fn cas(client: usize, call: u64, ret: u64, expected: &str, new: &str, ok: bool) -> Op {
        let input = Input::Cas {
            expected: expected.into(),
            new: new.into(),
        };
        op_on("k", client, call, ret, input, Output::Cas(ok))
    }
    fn append(client: usize, call: u64, ret: u64, text: &str) -> Op {
        op_on(
            "k",
            client,
            call,
            ret,
            Input::Append(text.into()),
            Output::Ok,
        )
    }
    fn incr(client: usize, call: u64, ret: u64, value: i64) -> Op {
        op_on("k", client, call, ret, Input::Incr, Output::Incr(value))
    }
    /// Makes an op indefinite (no return, output unknown).
    fn indefinite(mut op: Op) -> Op {
        op.ret = None;
        op.output = Output::Unknown;
        op
    }
    fn on_key(key: &str, mut op: Op) -> Op {
        op.key = key.to_string();
        op
    }

    fn assert_ok(ops: &[Op]) {
        let result = check(ops, BUDGET);
        assert_eq!(result, CheckResult::Ok, "expected linearizable:\n{result}");
    }

    /// Asserts a violation on key "k" and returns its explanation.
    fn assert_violation(ops: &[Op]) -> String {
        match check(ops, BUDGET) {
            CheckResult::Violation { key, explanation } => {
                assert_eq!(key, "k");
                explanation
            }
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    // --- known-good histories ---

    #[test]
    fn empty_history_is_linearizable() {
        assert_ok(&[]);
    }

    #[test]
    fn sequential_history_is_linearizable() {
        assert_ok(&[
            read(0, 0, 1, None),
            write(0, 2, 3, "a"),
            read(1, 4, 5, Some("a")),
            write(1, 6, 7, "b"),
            read(0, 8, 9, Some("b")),
            cas(0, 10, 11, "b", "c", true),
            cas(1, 12, 13, "b", "d", false),
            read(1, 14, 15, Some("c")),
        ]);
    }

    #[test]
    fn sequential_history_with_wrong_read_is_not() {
        // Sanity check that the sequential case is checked at all.
        assert_violation(&[write(0, 2, 3, "a"), read(1, 4, 5, Some("b"))]);
    }

    #[test]
    fn overlapping_writes_and_reads_may_see_either_value() {
        // Two overlapping writes; concurrent and later reads agree on an order.
        assert_ok(&[
            write(0, 0, 10, "a"),
            write(1, 1, 11, "b"),
            read(2, 2, 3, None),
            read(3, 5, 12, Some("a")),
            read(2, 13, 14, Some("a")),
        ]);
        assert_ok(&[
            write(0, 0, 10, "a"),
            write(1, 1, 11, "b"),
            read(3, 5, 12, Some("b")),
            read(2, 13, 14, Some("b")),
        ]);
        // Reads overlapping both writes may even see a then b.
        assert_ok(&[
            write(0, 0, 10, "a"),
            write(1, 1, 11, "b"),
            read(2, 2, 12, Some("a")),
            read(3, 3, 13, Some("b")),
        ]);
        // But once some later read saw "a" (so b came first), no read after it
        // can go back to "b".
        assert_violation(&[
            write(0, 0, 10, "a"),
            write(1, 1, 11, "b"),
            read(2, 12, 13, Some("a")),
            read(3, 14, 15, Some("b")),
        ]);
    }

    #[test]
    fn touching_intervals_count_as_concurrent() {
        // The read is called in the same tick as the write returns.
        assert_ok(&[
            write(0, 0, 1, "a"),
            write(0, 2, 5, "b"),
            read(1, 5, 6, Some("a")),
        ]);
        assert_violation(&[
            write(0, 0, 1, "a"),
            write(0, 2, 5, "b"),
            read(1, 6, 7, Some("a")),
        ]);
    }

    #[test]
    fn indefinite_write_read_later_is_ok() {
        assert_ok(&[
            write(0, 0, 1, "a"),
            indefinite(write(1, 2, 0, "b")),
            read(2, 3, 4, Some("a")),
            read(2, 50, 51, Some("b")),
        ]);
    }

    #[test]
    fn indefinite_write_never_seen_is_ok() {
        assert_ok(&[
            write(0, 0, 1, "a"),
            indefinite(write(1, 2, 0, "b")),
            read(2, 3, 4, Some("a")),
            read(2, 50, 51, Some("a")),
        ]);
    }

    #[test]
    fn indefinite_write_cannot_take_effect_before_its_call() {
        assert_violation(&[
            write(0, 0, 1, "a"),
            read(2, 3, 4, Some("b")),
            indefinite(write(1, 5, 0, "b")),
        ]);
    }

    #[test]
    fn indefinite_write_takes_effect_at_most_once() {
        // Seen, then overwritten, then seen again: it cannot have happened twice.
        assert_violation(&[
            indefinite(write(1, 0, 0, "b")),
            read(2, 3, 4, Some("b")),
            write(0, 5, 6, "a"),
            read(2, 7, 8, Some("b")),
        ]);
    }

    #[test]
    fn indefinite_output_constrains_nothing() {
        // An indefinite op with a (bogus) recorded output is still unconstrained:
        // here the CAS must have taken effect even though "false" was recorded.
        let mut op = cas(1, 2, 3, "a", "b", false);
        op.ret = None;
        assert_ok(&[write(0, 0, 1, "a"), op, read(2, 5, 6, Some("b"))]);
        let mut op = incr(1, 2, 3, 100);
        op.ret = None;
        assert_ok(&[op, read(2, 5, 6, Some("1"))]);
    }

    #[test]
    fn cas_chain_is_linearizable() {
        assert_ok(&[
            write(0, 0, 1, "0"),
            // Three concurrent CAS from "0": exactly one may win.
            cas(1, 2, 10, "0", "1", false),
            cas(2, 3, 11, "0", "1", true),
            cas(3, 4, 12, "0", "1", false),
            // Then a chain 1 -> 2 -> 3 with an indefinite step in the middle.
            cas(1, 13, 14, "1", "2", true),
            indefinite(cas(2, 15, 0, "2", "3", true)),
            cas(3, 16, 20, "2", "3", false),
            cas(1, 21, 22, "3", "4", true),
            read(2, 23, 24, Some("4")),
        ]);
    }

    #[test]
    fn cas_on_absent_value_never_matches() {
        assert_ok(&[cas(0, 0, 1, "", "x", false), read(0, 2, 3, None)]);
        assert_violation(&[cas(0, 0, 1, "", "x", true)]);
    }

    #[test]
    fn append_and_incr_histories_are_linearizable() {
        assert_ok(&[
            append(0, 0, 10, "a"),
            append(1, 1, 11, "b"),
            read(2, 12, 13, Some("ba")),
            append(0, 14, 15, "c"),
            read(1, 16, 17, Some("bac")),
        ]);
        assert_ok(&[
            incr(0, 0, 10, 2),
            incr(1, 1, 11, 1),
            indefinite(op_on("k", 2, 2, 0, Input::Incr, Output::Unknown)),
            read(3, 12, 13, Some("2")),
            incr(0, 14, 15, 3),
            read(1, 30, 31, Some("4")), // the indefinite incr landed late
        ]);
    }

    // --- known-bad histories (each paired with a near miss that is fine) ---

    #[test]
    fn stale_read_after_completed_write_is_violation() {
        let history = |read_call| {
            vec![
                write(0, 0, 1, "old"),
                write(0, 2, 5, "new"),
                read(1, read_call, 9, Some("old")),
            ]
        };
        let explanation = assert_violation(&history(6));
        assert!(
            explanation.contains(r#"Read -> Some("old")"#),
            "{explanation}"
        );
        // Overlapping the write, the old value is fine.
        assert_ok(&history(4));
    }

    #[test]
    fn lost_acknowledged_write_is_violation() {
        let history = |last_write_ret| {
            vec![
                write(0, 0, 1, "a"),
                write(1, 2, last_write_ret, "b"),
                read(2, 10, 11, Some("a")),
                read(3, 12, 13, Some("a")),
                read(2, 14, 15, Some("a")),
            ]
        };
        assert_violation(&history(3));
        // If the write were still in flight (indefinite), it may be lost.
        let mut ops = history(3);
        ops[1] = indefinite(ops[1].clone());
        assert_ok(&ops);
    }

    #[test]
    fn cas_succeeding_twice_from_same_value_is_violation() {
        assert_violation(&[
            write(0, 0, 1, "a"),
            cas(1, 2, 3, "a", "b", true),
            cas(2, 4, 5, "a", "b", true),
        ]);
        // With a write of "a" in between, both may succeed.
        assert_ok(&[
            write(0, 0, 1, "a"),
            cas(1, 2, 3, "a", "b", true),
            write(0, 3, 4, "a"),
            cas(2, 4, 5, "a", "b", true),
        ]);
    }

    #[test]
    fn read_of_never_written_value_is_violation() {
        let explanation = assert_violation(&[
            write(0, 0, 10, "a"),
            write(1, 0, 10, "b"),
            read(2, 0, 10, Some("c")),
        ]);
        assert!(explanation.contains(r#"Some("c")"#), "{explanation}");
        // Written by an indefinite op, it is fine.
        assert_ok(&[
            write(0, 0, 10, "a"),
            indefinite(write(1, 0, 10, "c")),
            read(2, 0, 10, Some("c")),
        ]);
    }

    #[test]
    fn incr_that_skips_or_repeats_a_number_is_violation() {
        // Skips 2.
        assert_violation(&[incr(0, 0, 1, 1), incr(0, 2, 3, 3)]);
        // Repeats 1 (concurrently, so order is no excuse).
        assert_violation(&[incr(0, 0, 5, 1), incr(1, 1, 6, 1)]);
        // Concurrent increments may return in either order; 3 is fine after an
        // indefinite one.
        assert_ok(&[incr(0, 0, 5, 2), incr(1, 1, 6, 1)]);
        assert_ok(&[
            incr(0, 0, 1, 1),
            indefinite(op_on("k", 1, 1, 0, Input::Incr, Output::Unknown)),
            incr(0, 2, 3, 3),
        ]);
    }

    #[test]
    fn incr_on_non_numeric_value_cannot_be_linearized() {
        assert_violation(&[write(0, 0, 1, "x"), incr(0, 2, 3, 1)]);
    }

    #[test]
    fn append_whose_text_appears_twice_is_violation() {
        assert_violation(&[
            append(0, 0, 1, "a"),
            append(1, 2, 3, "b"),
            read(2, 4, 5, Some("abb")),
        ]);
        assert_ok(&[
            append(0, 0, 1, "a"),
            append(1, 2, 3, "b"),
            read(2, 4, 5, Some("ab")),
        ]);
    }

    #[test]
    fn malformed_op_is_reported() {
        let mut bad = write(0, 0, 1, "a");
        bad.output = Output::Cas(true);
        let explanation = assert_violation(&[bad]);
        assert!(explanation.contains("malformed"), "{explanation}");
        let explanation = assert_violation(&[read(0, 5, 4, None)]);
        assert!(explanation.contains("malformed"), "{explanation}");
    }

    // --- multiple keys ---

    #[test]
    fn violation_on_one_key_is_reported_with_that_key() {
        let ops = vec![
            on_key("alpha", write(0, 0, 1, "a")),
            on_key("beta", write(1, 0, 1, "x")),
            on_key("alpha", read(2, 2, 3, Some("a"))),
            // Stale: "beta" was written before this read started.
            on_key("beta", read(3, 2, 3, None)),
            on_key("gamma", read(3, 4, 5, None)),
        ];
        match check(&ops, BUDGET) {
            CheckResult::Violation { key, explanation } => {
                assert_eq!(key, "beta");
                assert!(explanation.contains("[client 3] call=2.000ms ret=3.000ms Read -> None"));
                assert!(!explanation.contains("alpha"), "{explanation}");
            }
            other => panic!("expected a violation on beta, got {other:?}"),
        }
        // Keys are independent: the same values on different keys do not mix.
        assert_ok(&[
            on_key("alpha", write(0, 0, 1, "a")),
            on_key("beta", read(1, 2, 3, None)),
        ]);
    }

    #[test]
    fn explanation_shows_prefix_and_concurrent_ops() {
        let explanation = assert_violation(&[
            write(0, 0, 1, "a"),
            write(1, 2, 3, "b"),
            write(2, 4, 8, "c"),
            read(3, 5, 9, Some("a")),
            read(4, 6, 7, Some("b")),
        ]);
        let expected = [
            "Longest linearizable prefix found",
            r#"[client 0] call=0.000ms ret=1.000ms Write("a")"#,
            r#"=> state Some("b")"#,
            "First op that could not be linearized",
            r#"[client 3] call=5.000ms ret=9.000ms Read -> Some("a")"#,
            r#"[client 2] call=4.000ms ret=8.000ms Write("c")"#,
        ];
        for fragment in expected {
            assert!(
                explanation.contains(fragment),
                "missing {fragment:?} in:\n{explanation}"
            );
        }
    }

    // --- the recorder ---

    #[test]
    fn history_records_outcomes() {
        let history = History::new();
        let a = history.invoke(0, "k", Input::Write("a".into()));
        let b = history.invoke(1, "k", Input::Read);
        let c = history.invoke(2, "k", Input::Write("c".into()));
        let d = history.invoke(3, "k", Input::Incr);
        let _pending = history.invoke(4, "k", Input::Read);
        history.complete(a, Output::Ok);
        history.fail(b);
        history.indefinite(c);
        history.complete(d, Output::Incr(1));
        let ops = history.ops();
        assert_eq!(ops.len(), 4, "the failed op is removed");
        assert_eq!(ops[0].ret.map(|r| r >= ops[0].call), Some(true));
        assert_eq!(ops[0].output, Output::Ok);
        assert_eq!(
            (ops[1].client, ops[1].ret, &ops[1].output),
            (2, None, &Output::Unknown)
        );
        assert_eq!(ops[2].output, Output::Incr(1));
        assert_eq!(
            (ops[3].client, ops[3].ret),
            (4, None),
            "pending counts as indefinite"
        );
    }

    #[test]
    #[should_panic(expected = "resolved twice")]
    fn history_rejects_double_completion() {
        let history = History::new();
        let a = history.invoke(0, "k", Input::Read);
        history.complete(a, Output::Read(None));
        history.fail(a);
    }

    #[test]
    fn recorded_history_of_a_mutex_store_is_linearizable() {
        // Many threads against a store that is linearizable by construction.
        let history = History::new();
        let store: Mutex<HashMap<String, String>> = Mutex::new(HashMap::new());
        std::thread::scope(|scope| {
            for client in 0..6 {
                let (history, store) = (&history, &store);
                scope.spawn(move || {
                    let mut rng = Rng(client as u64 + 1);
                    for i in 0..150u32 {
                        let key = ["x", "y"][rng.below(2) as usize];
                        let value = format!("{client}-{i}");
                        let input = match rng.below(4) {
                            0 => Input::Write(value),
                            1 => Input::Cas {
                                expected: format!("{}-{}", rng.below(6), i.saturating_sub(1)),
                                new: value,
                            },
                            _ => Input::Read,
                        };
                        let id = history.invoke(client, key, input.clone());
                        let mut map = store.lock().unwrap();
                        let current = map.get(key).cloned();
                        let output = match input {
                            Input::Read => Output::Read(current),
                            Input::Write(v) => {
                                map.insert(key.to_string(), v);
                                Output::Ok
                            }
                            Input::Cas { expected, new } => {
                                let ok = current.as_deref() == Some(expected.as_str());
                                if ok {
                                    map.insert(key.to_string(), new);
                                }
                                Output::Cas(ok)
                            }
                            _ => unreachable!(),
                        };
                        drop(map);
                        match rng.below(20) {
                            0 => history.indefinite(id),
                            1 if output == Output::Read(None) => history.fail(id),
                            _ => history.complete(id, output),
                        }
                    }
                });
            }
        });
        let ops = history.ops();
        assert!(ops.len() > 800);
        assert_eq!(check(&ops, BUDGET), CheckResult::Ok);
    }

    // --- random small histories against a brute-force checker ---

    /// Independent reference model: the next state, or `None` if `op`'s
    /// observed output is impossible in `state`.
    fn reference_apply(state: &Option<String>, op: &Op) -> Option<Option<String>> {
        let free = op.ret.is_none() || op.output == Output::Unknown;
        let expect = |observed: Output| free || op.output == observed;
        match &op.input {
            Input::Read => expect(Output::Read(state.clone())).then(|| state.clone()),
            Input::Write(v) => Some(Some(v.clone())),
            Input::Cas { expected, new } => {
                let hit = state.as_ref() == Some(expected);
                let next = if hit {
                    Some(new.clone())
                } else {
                    state.clone()
                };
                expect(Output::Cas(hit)).then_some(next)
            }
            Input::Append(s) => Some(Some(format!("{}{s}", state.as_deref().unwrap_or("")))),
            Input::Incr => {
                let n = state.as_deref().unwrap_or("0").parse::<i64>().ok()? + 1;
                expect(Output::Incr(n)).then(|| Some(n.to_string()))
            }
        }
    }

    /// Tries every order of every subset of the ops that contains all
    /// completed ops and respects real time (`a` before `b` whenever
    /// `a.ret < b.call`), pruning orders at the first illegal step.
    fn brute_force(ops: &[Op]) -> bool {
        fn extend(ops: &[Op], placed: &mut [bool], state: &Option<String>) -> bool {
            let done = (0..ops.len()).all(|i| placed[i] || ops[i].ret.is_none());
            if done {
                return true;
            }
            for i in 0..ops.len() {
                let blocked = (0..ops.len())
                    .any(|j| !placed[j] && j != i && ops[j].ret.is_some_and(|r| r < ops[i].call));
                if placed[i] || blocked {
                    continue;
                }
                if let Some(next) = reference_apply(state, &ops[i]) {
                    placed[i] = true;
                    if extend(ops, placed, &next) {
                        return true;
                    }
                    placed[i] = false;
                }
            }
            false
        }
        extend(ops, &mut vec![false; ops.len()], &None)
    }

    const VALUES: [&str; 3] = ["a", "b", "1"];

    fn random_input(rng: &mut Rng) -> Input {
        match rng.below(10) {
            0..=2 => Input::Read,
            3..=4 => Input::Write(rng.pick(&VALUES).into()),
            5..=6 => Input::Cas {
                expected: rng.pick(&VALUES).into(),
                new: rng.pick(&VALUES).into(),
            },
            7 => Input::Append(rng.pick(&VALUES).into()),
            _ => Input::Incr,
        }
    }

    fn random_output(rng: &mut Rng, input: &Input) -> Output {
        match input {
            Input::Read if rng.chance(25) => Output::Read(None),
            Input::Read => Output::Read(Some(rng.pick(&["a", "b", "1", "2", "ab", "a1"]).into())),
            Input::Write(_) | Input::Append(_) => Output::Ok,
            Input::Cas { .. } => Output::Cas(rng.chance(50)),
            Input::Incr => Output::Incr(rng.below(4) as i64),
        }
    }

    /// A small random history on key "k". Half the time the outputs come from
    /// an actual execution in an order consistent with the intervals (then
    /// one output is sometimes corrupted); otherwise they are random.
    fn random_small_history(rng: &mut Rng) -> Vec<Op> {
        let n = 1 + rng.below(7) as usize;
        let mut ops: Vec<Op> = (0..n)
            .map(|client| {
                let call = rng.below(12);
                let input = random_input(rng);
                let mut op = op_on("k", client, call, call + rng.below(6), input, Output::Ok);
                op.output = random_output(rng, &op.input);
                if rng.chance(20) {
                    op = indefinite(op);
                }
                op
            })
            .collect();
        if rng.chance(50) {
            // Execute at random points inside the intervals (indefinite ops may
            // be skipped), derive outputs, maybe corrupt one.
            let mut points: Vec<(u64, usize)> = ops
                .iter()
                .enumerate()
                .map(|(i, op)| {
                    let end = op.ret.unwrap_or(op.call + 10 * MS);
                    (op.call + rng.below(end - op.call + 1), i)
                })
                .collect();
            points.sort();
            let mut state: Option<String> = None;
            for (_, i) in points {
                if ops[i].ret.is_none() && rng.chance(50) {
                    continue;
                }
                let (next, output) = execute(&state, &ops[i].input);
                if ops[i].ret.is_some() {
                    ops[i].output = output;
                }
                state = next;
            }
            if rng.chance(30) {
                let i = rng.below(n as u64) as usize;
                if ops[i].ret.is_some() {
                    ops[i].output = random_output(rng, &ops[i].input);
                }
            }
        }
        ops
    }

    /// Executes an op sequentially (for generating histories).
    fn execute(state: &Option<String>, input: &Input) -> (Option<String>, Output) {
        match input {
            Input::Read => (state.clone(), Output::Read(state.clone())),
            Input::Write(v) => (Some(v.clone()), Output::Ok),
            Input::Cas { expected, new } => {
                if state.as_ref() == Some(expected) {
                    (Some(new.clone()), Output::Cas(true))
                } else {
                    (state.clone(), Output::Cas(false))
                }
            }
            Input::Append(s) => (
                Some(format!("{}{s}", state.as_deref().unwrap_or(""))),
                Output::Ok,
            ),
            Input::Incr => match state.as_deref().unwrap_or("0").parse::<i64>() {
                Ok(n) => (Some((n + 1).to_string()), Output::Incr(n + 1)),
                // Rejected by the "store": leave the state alone, and record an
                // output that no linearization can produce.
                Err(_) => (state.clone(), Output::Incr(-1)),
            },
        }
    }

    #[test]
    fn random_small_histories_agree_with_brute_force() {
        let mut rng = Rng(0x5eed);
        let cases = 5_000;
        let mut linearizable = 0;
        for case in 0..cases {
            let ops = random_small_history(&mut rng);
            let expected = brute_force(&ops);
            let result = check(&ops, BUDGET);
            assert!(
                !matches!(result, CheckResult::Unknown { .. }),
                "case {case}: out of budget"
            );
            assert_eq!(
                result.is_ok(),
                expected,
                "case {case}: checker says {result}, brute force says {expected}, for:\n{}",
                ops.iter().map(|op| format!("  {op}\n")).collect::<String>()
            );
            linearizable += usize::from(expected);
        }
        // Both outcomes must be well represented for the comparison to mean much.
        assert!(
            (cases / 5..=cases * 4 / 5).contains(&linearizable),
            "{linearizable} of {cases} linearizable"
        );
    }

    // --- performance and budget ---

    /// A linearizable history: ops are executed sequentially at increasing
    /// linearization points on a shared store; each op gets a random interval
    /// around its point on a client that is idle then. Some become indefinite.
    fn generate_large_history(rng: &mut Rng, ops: usize, keys: usize, clients: usize) -> Vec<Op> {
        let mut store: HashMap<String, Option<String>> = HashMap::new();
        let mut idle_from = vec![0u64; clients];
        let mut history = Vec::with_capacity(ops);
        let mut now = 0u64;
        while history.len() < ops {
            let i = history.len();
            now += 1 + rng.below(10);
            let idle: Vec<usize> = (0..clients).filter(|&c| idle_from[c] <= now).collect();
            if idle.is_empty() {
                // Everybody is busy: skip ahead to the first client to be free.
                now = *idle_from.iter().min().unwrap();
                continue;
            }
            let client = idle[rng.below(idle.len() as u64) as usize];
            let key = format!("key{}", rng.below(keys as u64));
            let state = store.entry(key.clone()).or_default();
            let input = match rng.below(10) {
                0..=4 => Input::Read,
                5..=7 => Input::Write(format!("v{i}")),
                8 => Input::Cas {
                    // Sometimes the current value, so that some succeed.
                    expected: match state {
                        Some(current) if rng.chance(50) => current.clone(),
                        _ => format!("v{}", rng.below(i as u64 + 1)),
                    },
                    new: format!("v{i}"),
                },
                _ => Input::Append(format!("+{i}")),
            };
            let (next, output) = execute(state, &input);
            *state = next;
            let call = now - rng.below(40).min(now - idle_from[client]);
            let ret = now + rng.below(40);
            let mut op = Op {
                client,
                key,
                // Ticks are microseconds.
                call: call * 1_000,
                ret: Some(ret * 1_000),
                input,
                output,
            };
            if rng.chance(2) {
                op = indefinite(op);
            }
            idle_from[client] = ret + 1;
            history.push(op);
        }
        history
    }

    /// Generous in debug builds; the real target is release mode.
    fn time_limit() -> Duration {
        if cfg!(debug_assertions) {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(500)
        }
    }

    #[test]
    fn large_linearizable_history_checks_quickly() {
        let mut rng = Rng(42);
        let ops = generate_large_history(&mut rng, 2_000, 3, 5);
        let started = Instant::now();
        let result = check(&ops, BUDGET);
        let elapsed = started.elapsed();
        assert_eq!(result, CheckResult::Ok, "{result}");
        assert!(elapsed < time_limit(), "took {elapsed:?}");
    }

    #[test]
    fn large_history_with_one_stale_read_is_violation() {
        let mut rng = Rng(7);
        let mut ops = generate_large_history(&mut rng, 2_000, 3, 5);
        // Corrupt a completed read in the middle to a value written much earlier.
        let victim = (1_000..ops.len())
            .find(|&i| ops[i].input == Input::Read && ops[i].is_completed())
            .unwrap();
        ops[victim].output = Output::Read(Some("v3".into()));
        let victim_key = ops[victim].key.clone();
        let started = Instant::now();
        let result = check(&ops, BUDGET);
        let elapsed = started.elapsed();
        match result {
            CheckResult::Violation { key, explanation } => {
                assert_eq!(key, victim_key);
                assert!(
                    explanation.contains(r#"Read -> Some("v3")"#),
                    "{explanation}"
                );
            }
            other => panic!("expected a violation, got {other:?}"),
        }
        assert!(elapsed < time_limit(), "took {elapsed:?}");
    }

    #[test]
    fn long_history_checks_in_memory_that_grows_with_it_linearly() {
        // Seconds of work: done once, in the fault suite, and not again in
        // every test binary that includes the harness (tests/expiry.rs).
        if !module_path!().starts_with("faults::") {
            return;
        }
        // A 20-second scenario with pipelining clients records some 70,000
        // ops per key; with a whole bitset per memo entry the memo grew with
        // the square of that, past its cap (about 1 GiB at 50,000 ops).
        let mut rng = Rng(11);
        let ops = generate_large_history(&mut rng, 60_000, 1, 8);
        let started = Instant::now();
        let result = check(&ops, BUDGET);
        let elapsed = started.elapsed();
        assert_eq!(result, CheckResult::Ok, "{result}");
        assert!(elapsed < 10 * time_limit(), "took {elapsed:?}");
    }

    #[test]
    fn bitset_runs_are_the_bitset() {
        let mut rng = Rng(5);
        let mut seen = HashMap::new();
        for _ in 0..2_000 {
            let len = 1 + rng.below(300) as usize;
            let mut bits = Bitset::new(len);
            let density = rng.below(101);
            for bit in 0..len {
                if rng.chance(density) {
                    bits.set(bit);
                }
            }
            // Rebuilt from its runs, with the length it has.
            let runs = bits.runs();
            let mut rebuilt = Bitset::new(len);
            for pair in runs.chunks(2) {
                let end = pair.get(1).map_or(len, |&end| end as usize);
                (pair[0] as usize..end).for_each(|bit| rebuilt.set(bit));
            }
            assert!(bits == rebuilt, "{:?} from runs {runs:?}", bits.0);
            if let Some(other) = seen.insert((len, runs), bits.clone()) {
                assert!(other == bits, "two bitsets with the same runs");
            }
        }
    }

    #[test]
    fn tiny_budget_returns_unknown_on_hard_history() {
        // 40 mutually concurrent writes and a concurrent read of a value nobody
        // wrote: refuting it means visiting about 40 * 2^39 (set, state) pairs.
        let mut ops: Vec<Op> = (0..40)
            .map(|i| write(i, 0, 100, &format!("v{i}")))
            .collect();
        ops.push(read(40, 0, 100, Some("never written")));
        let started = Instant::now();
        let result = check(&ops, Duration::from_millis(20));
        let elapsed = started.elapsed();
        assert_eq!(result, CheckResult::Unknown { key: "k".into() });
        assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    }

    #[test]
    fn many_unobserved_indefinite_writes_check_quickly() {
        // Fifty writes that timed out on a minority leader, then a read that
        // sees an earlier value: trivially linearizable, but 2^50 subsets to a
        // naive search.
        let mut ops = vec![Op {
            client: 0,
            key: "k".into(),
            call: 0,
            ret: Some(1),
            input: Input::Write("base".into()),
            output: Output::Ok,
        }];
        for i in 0..50 {
            ops.push(Op {
                client: 1 + i,
                key: "k".into(),
                call: 2 + i as u64,
                ret: None,
                input: Input::Write(format!("lost{i}")),
                output: Output::Unknown,
            });
        }
        ops.push(Op {
            client: 99,
            key: "k".into(),
            call: 100,
            ret: Some(101),
            input: Input::Read,
            output: Output::Read(Some("base".into())),
        });
        let started = Instant::now();
        assert!(check(&ops, Duration::from_secs(5)).is_ok());
        assert!(started.elapsed() < Duration::from_secs(1));
        // Pruning must not hide a real violation: a read of a value never
        // written is still caught.
        ops.last_mut().unwrap().output = Output::Read(Some("never".into()));
        assert!(matches!(
            check(&ops, Duration::from_secs(5)),
            CheckResult::Violation { .. }
        ));
    }
}
