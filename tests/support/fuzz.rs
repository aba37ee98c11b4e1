//! What the fuzz tests share: how many cases to run, and a reader as slow as
//! a socket can be.

use std::io::{self, Read};

/// `base` cases, times the positive integer in `RAFTNODE_FUZZ` (1 when it
/// is unset or not one).
pub fn cases(base: usize) -> usize {
    let factor = std::env::var("RAFTNODE_FUZZ")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1);
    base.saturating_mul(factor)
}

/// Yields at most one byte per read, as a slow peer's socket would: the
/// worst a socket can do to a parser.
pub struct OneByte<'a>(pub &'a [u8]);

impl Read for OneByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match (self.0.split_first(), buf.is_empty()) {
            (Some((&b, rest)), false) => {
                buf[0] = b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}
