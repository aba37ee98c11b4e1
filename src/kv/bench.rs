//! What applying a SET costs: `cargo test --release --lib kv::bench --
//! --ignored --nocapture`.
//!
//! One million `SET`s of distinct keys, in a scrambled order, go through
//! [`StateMachine::apply`] — decode, sessions' expiry, the map, the reply —
//! and then the same million again (overwrites). Next to the store as it is,
//! the same work is done by a copy of the store's original write path: a
//! `HashMap` behind the same decode, expiry and reply. The rounds alternate
//! between the two so both see the same machine load, and the report gives
//! medians. The machine is shared and noisy: compare the ratio, not the
//! absolute times.

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

/// Nanoseconds per command over two passes: inserts, then overwrites.
fn time(commands: &[Vec<u8>], mut apply: impl FnMut(Index, &[u8]) -> Vec<u8>) -> (f64, f64) {
    let mut index = 0;
    let mut pass = || {
        let start = Instant::now();
        for bytes in commands {
            index += 1;
            black_box(apply(index, bytes));
        }
        start.elapsed().as_nanos() as f64 / commands.len() as f64
    };
    (pass(), pass())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[test]
#[ignore = "a benchmark: run it with --ignored --nocapture"]
fn apply_a_million_sets() {
    let commands = commands();
    let (mut base, mut kv) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for round in 0..ROUNDS {
        let mut baseline = Baseline {
            map: HashMap::new(),
            sessions: Sessions::new(SESSION_TTL_ENTRIES),
        };
        let (insert, overwrite) = time(&commands, |i, c| baseline.apply(i, c));
        assert_eq!(baseline.map.len() as u64, KEYS);
        drop(baseline);
        base.0.push(insert);
        base.1.push(overwrite);
        let mut store = Kv::new();
        let (insert, overwrite) = time(&commands, |i, c| store.apply(i, c));
        assert_eq!(store.len() as u64, KEYS);
        drop(store);
        kv.0.push(insert);
        kv.1.push(overwrite);
        println!(
            "round {round}: baseline {:.0}/{:.0} ns, kv {:.0}/{:.0} ns (insert/overwrite)",
            base.0[round], base.1[round], kv.0[round], kv.1[round]
        );
    }
    let (b, k) = (
        (median(base.0), median(base.1)),
        (median(kv.0), median(kv.1)),
    );
    println!("median ns/op   baseline (HashMap)   kv     kv/baseline");
    println!(
        "insert         {:>8.0}             {:>6.0}   {:.2}",
        b.0,
        k.0,
        k.0 / b.0
    );
    println!(
        "overwrite      {:>8.0}             {:>6.0}   {:.2}",
        b.1,
        k.1,
        k.1 / b.1
    );
}
