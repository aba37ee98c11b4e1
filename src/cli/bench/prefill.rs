//! Before a GET run: every key of the key space written once, so that
//! every GET finds a value of the size asked for. The keys go in
//! transactions (MULTI, up to 1,000 SETs, EXEC — one log entry each),
//! sent whole in one write, over a few connections at once: 100,000 keys
//! take a second or so, where as many single SETs would take far longer.

use super::conn::{moved_to, Conn, ConnError};
use super::error::BenchError;
use crate::redis::resp::{encode_command, Reply};
use std::io::Write;
use std::thread;
use std::time::Duration;

/// Connections writing at once.
const CONNECTIONS: u64 = 4;
/// The most bytes of SETs in one transaction, and the most SETs.
const BATCH_BYTES: u64 = 256 * 1024;
const BATCH_KEYS: u64 = 1000;
/// How often one transaction is tried again after `-TRYAGAIN`, `-TIMEOUT`
/// or `-MOVED` (SETs are idempotent: running one twice is harmless).
const ATTEMPTS: usize = 50;

/// Writes `value` to `key:0` .. `key:<keys - 1>` through `leader`.
pub(crate) fn prefill(leader: &str, keys: u64, value: &[u8]) -> Result<(), BenchError> {
    let per_batch = (BATCH_BYTES / (value.len() as u64 + 32)).clamp(1, BATCH_KEYS);
    let batches = keys.div_ceil(per_batch);
    let connections = CONNECTIONS.min(batches);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|first| {
                let name = format!("bench-prefill-{first}");
                let worker = move || -> Result<(), BenchError> {
                    let mut filler = Filler::new(leader);
                    for batch in (first..batches).step_by(connections as usize) {
                        let start = batch * per_batch;
                        filler.fill(start..(start + per_batch).min(keys), value)?;
                    }
                    Ok(())
                };
                thread::Builder::new()
                    .name(name.clone())
                    .spawn_scoped(scope, worker)
                    .map_err(|source| BenchError::Thread { name, source })
            })
            .collect();
        let mut result = Ok(());
        for worker in workers {
            let outcome = match worker {
                Ok(handle) => handle.join().unwrap_or_else(|_| {
                    Err(BenchError::Prefill {
                        addr: leader.to_string(),
                        what: "a prefill thread panicked".into(),
                    })
                }),
                Err(e) => Err(e),
            };
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    })
}

/// One connection writing transactions, following the leader.
struct Filler {
    addr: String,
    conn: Option<Conn>,
    buf: Vec<u8>,
}

impl Filler {
    fn new(leader: &str) -> Filler {
        Filler {
            addr: leader.to_string(),
            conn: None,
            buf: Vec::new(),
        }
    }

    fn fill(&mut self, range: std::ops::Range<u64>, value: &[u8]) -> Result<(), BenchError> {
        self.buf.clear();
        encode_command(&[b"MULTI"], &mut self.buf);
        let mut key = Vec::with_capacity(32);
        for n in range.clone() {
            key.clear();
            // Writing to a Vec cannot fail.
            let _ = write!(key, "key:{n}");
            encode_command(&[b"SET", &key, value], &mut self.buf);
        }
        encode_command(&[b"EXEC"], &mut self.buf);
        let replies = range.end - range.start + 2;
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match self.exchange(replies) {
                Ok(Reply::Array(_)) => return Ok(()),
                Ok(Reply::Error(text)) => {
                    if let Some(target) = moved_to(&text) {
                        self.addr = target.to_string();
                        self.conn = None;
                    } else if !(text.starts_with("TRYAGAIN") || text.starts_with("TIMEOUT")) {
                        return Err(self.failed(format!("EXEC answered -{text}")));
                    }
                    last = text;
                }
                Ok(other) => return Err(self.failed(format!("EXEC answered {other:?}"))),
                Err(e) => {
                    self.conn = None;
                    last = e.to_string();
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err(self.failed(format!("gave up after {ATTEMPTS} attempts (last: {last})")))
    }

    /// Sends the transaction and reads its replies: the last one (EXEC's)
    /// is returned, or the first error before it.
    fn exchange(&mut self, replies: u64) -> Result<Reply, ConnError> {
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => self.conn.insert(Conn::connect(&self.addr)?),
        };
        conn.send(&self.buf)?;
        let mut first_error = None;
        for _ in 1..replies {
            if let Reply::Error(text) = conn.read()? {
                first_error.get_or_insert(Reply::Error(text));
            }
        }
        let exec = conn.read()?;
        Ok(first_error.unwrap_or(exec))
    }

    fn failed(&self, what: String) -> BenchError {
        BenchError::Prefill {
            addr: self.addr.clone(),
            what,
        }
    }
}
