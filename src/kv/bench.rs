//! What applying a SET costs, and what a snapshot costs: `cargo test
//! --release --lib kv::bench -- --ignored --nocapture --test-threads 1`.
//!
//! [`apply_a_million_sets`]: one million `SET`s of distinct keys, in a
//! scrambled order, go through [`StateMachine::apply`] — decode, sessions'
//! expiry, the map, the reply — then the same million again (overwrites).
//! Next to the store as it is, the same work is done by a copy of the
//! store's original write path (one `HashMap` behind the same decode,
//! expiry and reply), and by stores of other shard counts. All live side by
//! side and take the commands in chunks, in turns, so all see the same
//! machine load; the report gives medians over the rounds. The machine is
//! shared and noisy: compare the ratios, not the absolute times. The median
//! of the per-chunk ratios moves least with bursts of load; the ratio of
//! the totals also counts the baseline's rehashes as its one table grows.
//!
//! [`a_snapshot_of_a_million_keys`]: what `snapshot()` takes, what applying
//! costs while a snapshot still shares the shards (each first write to one
//! copies it), and how long writing and restoring the payload take.

use super::map::ShardedMap;
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

/// How many commands are timed at a time, taking turns.
const CHUNK: usize = 10_000;

/// A store under test.
enum Store {
    Baseline(Baseline),
    Kv(Kv),
}

impl Store {
    fn apply(&mut self, index: Index, bytes: &[u8]) -> Vec<u8> {
        match self {
            Store::Baseline(b) => b.apply(index, bytes),
            Store::Kv(kv) => kv.apply(index, bytes),
        }
    }

    fn len(&self) -> usize {
        match self {
            Store::Baseline(b) => b.map.len(),
            Store::Kv(kv) => kv.len(),
        }
    }
}

/// A store of `2^bits` key shards, otherwise as [`Kv::new`] makes it.
fn kv_with_shards(bits: u32) -> Kv {
    Kv {
        map: ShardedMap::new(bits),
        expiries: Default::default(),
        sessions: Sessions::new(SESSION_TTL_ENTRIES),
    }
}

/// Each store's nanoseconds per command, and the median of its per-chunk
/// ratios to store 0's.
type PassTimes = Vec<(f64, f64)>;

/// One pass of `commands` through every store, chunk by chunk, which store
/// goes first rotating with each chunk (so none always runs on caches
/// another just warmed or trashed).
fn pass(commands: &[Vec<u8>], first_index: Index, stores: &mut [Store]) -> PassTimes {
    let n = stores.len();
    let mut total = vec![0u128; n];
    let mut ratios = vec![Vec::new(); n];
    for (c, chunk) in commands.chunks(CHUNK).enumerate() {
        let index = first_index + (c * CHUNK) as Index;
        let mut times = vec![0u128; n];
        for turn in 0..n {
            let s = (c + turn) % n;
            times[s] = time_chunk(chunk, index, &mut stores[s]);
        }
        for s in 0..n {
            total[s] += times[s];
            ratios[s].push(times[s] as f64 / times[0] as f64);
        }
    }
    let per_op = |ns: u128| ns as f64 / commands.len() as f64;
    (0..n)
        .map(|s| (per_op(total[s]), median(&ratios[s])))
        .collect()
}

/// Nanoseconds to apply `chunk`, its first command at `index`.
fn time_chunk(chunk: &[Vec<u8>], index: Index, store: &mut Store) -> u128 {
    let start = Instant::now();
    for (i, bytes) in chunk.iter().enumerate() {
        black_box(store.apply(index + i as Index, bytes));
    }
    start.elapsed().as_nanos()
}

fn median(xs: &[f64]) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[test]
#[ignore = "a benchmark: run it with --ignored --nocapture"]
fn apply_a_million_sets() {
    let commands = commands();
    let names = ["baseline", "kv", "kv 2^8", "kv 2^12"];
    let passes = ["insert", "overwrite"];
    // Per pass, per store: ns/op and chunk ratio, one per round.
    let mut results = vec![vec![(Vec::new(), Vec::new()); names.len()]; passes.len()];
    for round in 0..ROUNDS {
        let mut stores = vec![
            Store::Baseline(Baseline {
                map: HashMap::new(),
                sessions: Sessions::new(SESSION_TTL_ENTRIES),
            }),
            Store::Kv(Kv::new()),
            Store::Kv(kv_with_shards(8)),
            Store::Kv(kv_with_shards(12)),
        ];
        for (p, pass_name) in passes.iter().enumerate() {
            let first = 1 + p as Index * KEYS;
            print!("round {round} {pass_name:9}");
            for (s, (ns, ratio)) in pass(&commands, first, &mut stores).into_iter().enumerate() {
                print!("  {} {ns:5.0} ns ({ratio:.2})", names[s]);
                results[p][s].0.push(ns);
                results[p][s].1.push(ratio);
            }
            println!();
        }
        assert!(stores.iter().all(|s| s.len() as u64 == KEYS));
    }
    println!("\nmedians      store       ns/op   / baseline   chunk ratio");
    for (p, pass_name) in passes.iter().enumerate() {
        let base = median(&results[p][0].0);
        for (s, name) in names.iter().enumerate() {
            let (ns, chunks) = (median(&results[p][s].0), median(&results[p][s].1));
            println!(
                "{pass_name:12} {name:10} {ns:6.0}   {:10.2}   {chunks:11.2}",
                ns / base
            );
        }
    }
}

#[test]
#[ignore = "a benchmark: run it with --ignored --nocapture"]
fn a_snapshot_of_a_million_keys() {
    let commands = commands();
    let mut kv = Kv::new();
    let mut index = 0;
    for bytes in &commands {
        index += 1;
        kv.apply(index, bytes);
    }
    for held in [false, true, false, true] {
        let start = Instant::now();
        let snapshot = held.then(|| kv.snapshot());
        let took = start.elapsed();
        // Every key overwritten, each write timed.
        let mut latencies = Vec::with_capacity(commands.len());
        let start = Instant::now();
        for bytes in &commands {
            index += 1;
            let t = Instant::now();
            black_box(kv.apply(index, bytes));
            latencies.push(t.elapsed().as_nanos() as u64);
        }
        let per_op = start.elapsed().as_nanos() as f64 / commands.len() as f64;
        latencies.sort_unstable();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        print!(
            "{}: {per_op:.0} ns/op, p50 {} ns, p99 {} ns, p99.9 {} µs, max {} µs",
            if held {
                "snapshot held"
            } else {
                "no snapshot  "
            },
            at(0.5),
            at(0.99),
            at(0.999) / 1000,
            at(1.0) / 1000
        );
        match snapshot {
            Some(snapshot) => {
                let start = Instant::now();
                let mut payload = Vec::new();
                snapshot.write_to(&mut payload).unwrap();
                let wrote = start.elapsed();
                let start = Instant::now();
                let mut back = Kv::new();
                back.restore(&mut &payload[..]).unwrap();
                println!(
                    "; snapshot() {took:?}, write_to {wrote:?} ({} MB), restore {:?}",
                    payload.len() / 1_000_000,
                    start.elapsed()
                );
                assert_eq!(back.len(), kv.len());
            }
            None => println!(),
        }
    }
}
