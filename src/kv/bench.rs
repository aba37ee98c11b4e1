//! What applying a SET costs: `cargo test --release --lib kv::bench --
//! --ignored --nocapture`.
//!
//! One million `SET`s of distinct keys, in a scrambled order, go through
//! [`StateMachine::apply`] — decode, sessions' expiry, the map, the reply —
//! and then the same million again (overwrites). Next to the store as it is,
//! the same work is done by a copy of the store's original write path: one
//! `HashMap` behind the same decode, expiry and reply. Both stores live side
//! by side and take the commands in alternating chunks, so both see the
//! same machine load; the report gives medians over the rounds. The machine
//! is shared and noisy: compare the ratios, not the absolute times. The
//! median of the per-chunk ratios moves least with bursts of load; the
//! ratio of totals also counts the baseline's rehashes as its one table
//! grows (the shards grow in small steps).

use super::session::Sessions;
use super::{Command, Kv, Outcome, Wire, SESSION_TTL_ENTRIES};
use crate::node::StateMachine;
use crate::raft::message::Index;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

const KEYS: u64 = 1_000_000;
const ROUNDS: usize = 5;

/// The store's write path before the sharded map, for `Set` alone.
struct Baseline {
    map: HashMap<Vec<u8>, Vec<u8>>,
    sessions: Sessions,
}

impl Baseline {
    fn apply(&mut self, index: Index, bytes: &[u8]) -> Vec<u8> {
        let outcome = match Command::decode(bytes) {
            Ok(command) => {
                self.sessions.expire(index);
                match command {
                    Command::Set { key, value } => {
                        self.map.insert(key, value);
                        Outcome::Done
                    }
                    _ => unreachable!("the bench only sets"),
                }
            }
            Err(e) => Outcome::Refused(e.to_string()),
        };
        outcome.encode().unwrap_or_default()
    }
}

/// Encoded `SET key:<n> value-<n>` commands, keys in a scrambled order
/// (a multiplicative permutation of 0..KEYS) so neither map sees them sorted.
fn commands() -> Vec<Vec<u8>> {
    (0..KEYS)
        .map(|i| {
            let n = i.wrapping_mul(0x9E37_79B9) % KEYS;
            let set = Command::Set {
                key: format!("key:{n:010}").into_bytes(),
                value: format!("value-{n:016}").into_bytes(),
            };
            set.encode().unwrap()
        })
        .collect()
}

/// How many commands are timed at a time, alternating between the two.
const CHUNK: usize = 10_000;

/// One pass of `commands` through both stores, interleaved chunk by chunk
/// so that both see the same machine load; the nanoseconds per command of
/// each, and the median of the per-chunk ratios (kv / baseline), which a
/// burst of load on this shared machine moves least.
fn pass(
    commands: &[Vec<u8>],
    first_index: Index,
    baseline: &mut Baseline,
    kv: &mut Kv,
) -> (f64, f64, f64) {
    let (mut base_ns, mut kv_ns, mut ratios) = (0u128, 0u128, Vec::new());
    for (n, chunk) in commands.chunks(CHUNK).enumerate() {
        let index = first_index + (n * CHUNK) as Index;
        let mut run_base = || time_chunk(chunk, index, &mut |i, c| baseline.apply(i, c));
        let mut run_kv = || time_chunk(chunk, index, &mut |i, c| kv.apply(i, c));
        // Alternate which goes first, so neither always runs on a cache the
        // other just warmed or trashed.
        let (b, k) = if n % 2 == 0 {
            let b = run_base();
            (b, run_kv())
        } else {
            let k = run_kv();
            (run_base(), k)
        };
        base_ns += b;
        kv_ns += k;
        ratios.push(k as f64 / b as f64);
    }
    let per_op = |ns: u128| ns as f64 / commands.len() as f64;
    (per_op(base_ns), per_op(kv_ns), median(ratios))
}

/// Nanoseconds to apply `chunk`, its first command at `index`.
fn time_chunk(
    chunk: &[Vec<u8>],
    index: Index,
    apply: &mut dyn FnMut(Index, &[u8]) -> Vec<u8>,
) -> u128 {
    let start = Instant::now();
    for (i, bytes) in chunk.iter().enumerate() {
        black_box(apply(index + i as Index, bytes));
    }
    start.elapsed().as_nanos()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[test]
#[ignore = "a benchmark: run it with --ignored --nocapture"]
fn apply_a_million_sets() {
    let commands = commands();
    // [insert, overwrite] × [baseline ns, kv ns, chunk ratio], per round.
    let mut results = [
        [Vec::new(), Vec::new(), Vec::new()],
        [Vec::new(), Vec::new(), Vec::new()],
    ];
    for round in 0..ROUNDS {
        let mut baseline = Baseline {
            map: HashMap::new(),
            sessions: Sessions::new(SESSION_TTL_ENTRIES),
        };
        let mut kv = Kv::new();
        for (p, name) in ["insert", "overwrite"].into_iter().enumerate() {
            let first = 1 + (p as u64 * KEYS);
            let (b, k, ratio) = pass(&commands, first, &mut baseline, &mut kv);
            println!("round {round} {name:9}: baseline {b:5.0} ns, kv {k:5.0} ns, chunk ratio {ratio:.2}");
            for (i, x) in [b, k, ratio].into_iter().enumerate() {
                results[p][i].push(x);
            }
        }
        assert_eq!(baseline.map.len() as u64, KEYS);
        assert_eq!(kv.len() as u64, KEYS);
    }
    println!("median ns/op   baseline (HashMap)   kv     kv/baseline   median chunk ratio");
    for (p, name) in ["insert", "overwrite"].into_iter().enumerate() {
        let [b, k, r] = results[p].clone().map(median);
        println!(
            "{name:9}      {b:>8.0}             {k:>6.0}   {:.2}          {r:.2}",
            k / b
        );
    }
}
