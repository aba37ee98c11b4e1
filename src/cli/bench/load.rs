//! The load: client threads, each with its own connection to the leader,
//! each keeping `pipeline` requests in flight (one by default) and sending
//! the next batch only when the last one's replies are all in — a closed
//! loop, so the offered load is whatever the cluster can take.
//!
//! Every thread counts its replies and errors in its own slot of
//! [`Shared`] (for the progress line) and, while the phase is
//! [`Phase::Measure`], records each reply's latency — from the write of its
//! batch to the reply — in its own [`Histogram`], which it hands back when
//! the phase becomes [`Phase::Stop`].

use super::conn::{moved_to, Conn};
use super::error::BenchError;
use super::histogram::Histogram;
use crate::redis::resp::{encode_command, Reply};
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The most distinct error kinds one thread tells apart; the rest are
/// counted as `other`.
const MAX_ERROR_KINDS: usize = 16;
/// The pause before connecting again after a connection could not be made.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
const CLIENT_STACK: usize = 256 * 1024;

/// What each request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Set,
    Get,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Set => "SET",
            Op::Get => "GET",
        }
    }
}

/// What every client sends.
pub(crate) struct Workload {
    pub(crate) op: Op,
    /// Keys are `key:0` up to `key:<keys - 1>`, chosen uniformly.
    pub(crate) keys: u64,
    /// The value every SET writes.
    pub(crate) value: Vec<u8>,
    /// Requests sent together, in one write, before reading their replies.
    pub(crate) pipeline: usize,
}

/// Where the run is: replies are measured only in [`Phase::Measure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    WarmUp = 0,
    Measure = 1,
    Stop = 2,
}

/// One thread's counters, on a cache line of its own.
#[repr(align(64))]
#[derive(Default)]
struct Slot {
    replies: AtomicU64,
    errors: AtomicU64,
}

/// What the client threads and the thread watching them share.
struct Shared {
    phase: AtomicU8,
    slots: Vec<Slot>,
}

impl Shared {
    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::WarmUp,
            1 => Phase::Measure,
            _ => Phase::Stop,
        }
    }
}

/// What the client threads saw in the measured window.
pub(crate) struct Outcome {
    pub(crate) latencies: Histogram,
    /// Error replies by their code (`ERR`, `TIMEOUT`, `TRYAGAIN`, ...) and
    /// `io` for requests lost with their connection, or connections that
    /// could not be made.
    pub(crate) errors: Vec<(String, u64)>,
    /// `-MOVED` replies, each followed by a new connection to the node named.
    pub(crate) redirects: u64,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            latencies: Histogram::new(),
            errors: Vec::new(),
            redirects: 0,
        }
    }

    fn error(&mut self, kind: &str, n: u64) {
        let known = self.errors.iter().any(|(k, _)| k == kind);
        let kind = match known || self.errors.len() < MAX_ERROR_KINDS {
            true => kind,
            false => "other",
        };
        match self.errors.iter_mut().find(|(k, _)| k == kind) {
            Some((_, count)) => *count += n,
            None => self.errors.push((kind.to_string(), n)),
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.latencies.merge(&other.latencies);
        for (kind, n) in other.errors {
            self.error(&kind, n);
        }
        self.redirects += other.redirects;
    }

    pub(crate) fn error_count(&self) -> u64 {
        self.errors.iter().map(|(_, n)| n).sum()
    }
}

/// Client threads at work.
pub(crate) struct Running {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Outcome>>,
}

impl Running {
    /// Starts `clients` threads against `addr`, warming up.
    pub(crate) fn start(
        addr: &str,
        clients: usize,
        workload: &Arc<Workload>,
    ) -> Result<Running, BenchError> {
        let shared = Arc::new(Shared {
            phase: AtomicU8::new(Phase::WarmUp as u8),
            slots: (0..clients).map(|_| Slot::default()).collect(),
        });
        let mut running = Running {
            shared,
            threads: Vec::with_capacity(clients),
        };
        for index in 0..clients {
            let (addr, workload, shared) =
                (addr.to_string(), workload.clone(), running.shared.clone());
            let spawned = thread::Builder::new()
                .name(format!("bench-client-{index}"))
                .stack_size(CLIENT_STACK)
                .spawn(move || client(index, addr, &workload, &shared));
            match spawned {
                Ok(handle) => running.threads.push(handle),
                Err(source) => {
                    running.finish();
                    return Err(BenchError::Thread {
                        name: format!("bench-client-{index}"),
                        source,
                    });
                }
            }
        }
        Ok(running)
    }

    /// Replies and errors so far, in every phase, summed over the threads.
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.shared.slots.iter().fold((0, 0), |(r, e), slot| {
            (
                r + slot.replies.load(Ordering::Relaxed),
                e + slot.errors.load(Ordering::Relaxed),
            )
        })
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.shared.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Stops the threads (each finishes the batch it is waiting for) and
    /// merges what they measured.
    pub(crate) fn finish(self) -> Outcome {
        self.set_phase(Phase::Stop);
        let mut total = Outcome::new();
        for handle in self.threads {
            match handle.join() {
                Ok(outcome) => total.merge(outcome),
                Err(_) => total.error("panic", 1),
            }
        }
        total
    }
}

/// One client: connects to `addr`, sends batches until told to stop, and
/// moves to the node a `-MOVED` names (reconnecting once per batch).
fn client(index: usize, mut addr: String, workload: &Workload, shared: &Shared) -> Outcome {
    let slot = &shared.slots[index];
    let mut rng = XorShift::new(index as u64);
    let mut out = Outcome::new();
    let mut conn: Option<Conn> = None;
    let mut batch = Vec::new();
    let mut key = Vec::with_capacity(32);
    let count_errors = |out: &mut Outcome, kind: &str, n: u64| {
        slot.errors.fetch_add(n, Ordering::Relaxed);
        if shared.phase() == Phase::Measure {
            out.error(kind, n);
        }
    };
    while shared.phase() != Phase::Stop {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::connect(&addr) {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    count_errors(&mut out, "io", 1);
                    thread::sleep(RECONNECT_PAUSE);
                    continue;
                }
            },
        };
        batch.clear();
        for _ in 0..workload.pipeline {
            key.clear();
            // Writing to a Vec cannot fail.
            let _ = write!(key, "key:{}", rng.next() % workload.keys);
            match workload.op {
                Op::Set => encode_command(&[b"SET", &key, &workload.value], &mut batch),
                Op::Get => encode_command(&[b"GET", &key], &mut batch),
            }
        }
        let sent = Instant::now();
        if c.send(&batch).is_err() {
            count_errors(&mut out, "io", workload.pipeline as u64);
            conn = None;
            continue;
        }
        let mut moved: Option<String> = None;
        for answered in 0..workload.pipeline {
            let reply = match c.read() {
                Ok(reply) => reply,
                Err(_) => {
                    count_errors(&mut out, "io", (workload.pipeline - answered) as u64);
                    conn = None;
                    break;
                }
            };
            let latency = sent.elapsed();
            match reply {
                Reply::Error(text) => match moved_to(&text) {
                    Some(target) => {
                        moved = Some(target.to_string());
                        if shared.phase() == Phase::Measure {
                            out.redirects += 1;
                        }
                    }
                    None => count_errors(&mut out, error_kind(&text), 1),
                },
                _ => {
                    slot.replies.fetch_add(1, Ordering::Relaxed);
                    if shared.phase() == Phase::Measure {
                        out.latencies.record(latency.as_nanos() as u64);
                    }
                }
            }
        }
        if let Some(target) = moved {
            addr = target;
            conn = None;
        }
    }
    out
}

/// An error reply's code: its first word if that looks like one
/// (`TIMEOUT`, `TRYAGAIN`, `ERR`), else `ERR`.
fn error_kind(text: &str) -> &str {
    let word = text.split_whitespace().next().unwrap_or("");
    let is_code = !word.is_empty()
        && word.len() <= 32
        && word
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if is_code {
        word
    } else {
        "ERR"
    }
}

/// xorshift64*: a fast generator for picking keys (not for anything that
/// needs unpredictability), seeded apart for every thread.
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(stream: u64) -> XorShift {
        let seed = rand::random::<u64>() ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        XorShift(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::error_kind;

    #[test]
    fn error_kinds_are_the_codes() {
        assert_eq!(
            error_kind("TIMEOUT the write may or may not apply"),
            "TIMEOUT"
        );
        assert_eq!(error_kind("TRYAGAIN no leader"), "TRYAGAIN");
        assert_eq!(error_kind("ERR max number of clients reached"), "ERR");
        assert_eq!(error_kind("weird lowercase"), "ERR");
        assert_eq!(error_kind(""), "ERR");
    }
}
