//! Answering the reads ([`Read`]), at a given time: a key whose deadline
//! is not after it is absent, whether or not its deletion has been applied
//! (see [`super::expiry`]). Reads never change the store, so the leader
//! answers them under a shared lock.
//!
//! SCAN walks the keys in the order of their shard hashes (see
//! [`super::map`]), and its cursor is the hash to go on from: a key that is
//! in the store for the whole of a scan has the same hash throughout, and
//! the batches cover every hash from 0 up, so it is returned — Redis's SCAN
//! guarantee, whatever is inserted or deleted meanwhile. A batch is never
//! cut between keys of one hash, so no key is skipped even if hashes
//! collide.

use super::command::{QueryReply, Read, MAX_READ_BYTES};
use super::{glob, Kv};

impl Kv {
    /// The value of `key` at `now_ms`.
    fn alive(&self, key: &[u8], now_ms: u64) -> Option<&Vec<u8>> {
        match self.expiries.is_due(key, now_ms) {
            true => None,
            false => self.map.get(key),
        }
    }

    /// Answers `read` at `now_ms`, or at the store's clock if that is
    /// later (the clock never goes back, and neither may a read).
    pub fn read(&self, now_ms: u64, read: &Read) -> QueryReply {
        let now = now_ms.max(self.expiries.clock());
        match read {
            Read::Get { key } => QueryReply::Value(self.alive(key, now).cloned()),
            Read::MGet { keys } => {
                let values: Vec<Option<Vec<u8>>> =
                    keys.iter().map(|k| self.alive(k, now).cloned()).collect();
                let bytes: usize = values.iter().flatten().map(Vec::len).sum();
                match bytes > MAX_READ_BYTES {
                    true => too_big("MGET", "fewer keys at a time"),
                    false => QueryReply::Values(values),
                }
            }
            Read::Exists { keys } => QueryReply::Integer(
                keys.iter().filter(|k| self.alive(k, now).is_some()).count() as i64,
            ),
            Read::DbSize => {
                QueryReply::Integer((self.map.len() - self.expiries.due_count(now)) as i64)
            }
            Read::Keys { pattern } => {
                let mut keys = Vec::new();
                let mut bytes = 0usize;
                for (key, _) in self.map.iter() {
                    if !glob::key_matches(pattern, key) || self.expiries.is_due(key, now) {
                        continue;
                    }
                    bytes += key.len();
                    if bytes > MAX_READ_BYTES {
                        return too_big("KEYS", "SCAN");
                    }
                    keys.push(key.clone());
                }
                QueryReply::Keys(keys)
            }
            Read::Scan {
                cursor,
                pattern,
                count,
                type_name,
            } => {
                let count = usize::try_from(*count).unwrap_or(usize::MAX);
                let (batch, next) = self.map.scan(*cursor, count, MAX_READ_BYTES, Vec::len);
                // Every key here is a string: TYPE anything else matches none.
                let typed = type_name
                    .as_ref()
                    .is_none_or(|t| t.eq_ignore_ascii_case(b"string"));
                let keys = batch
                    .into_iter()
                    .filter(|(key, _)| typed && !self.expiries.is_due(key, now))
                    .filter(|(key, _)| pattern.as_ref().is_none_or(|p| glob::key_matches(p, key)))
                    .map(|(key, _)| key.clone())
                    .collect();
                QueryReply::Scan { cursor: next, keys }
            }
            Read::Type { key } => QueryReply::Status(
                match self.alive(key, now) {
                    Some(_) => "string",
                    None => "none",
                }
                .into(),
            ),
            Read::RandomKey { seed } => QueryReply::Value(self.random_key(*seed, now)),
            Read::Ttl {
                key,
                millis,
                absolute,
            } => {
                let ttl = match (self.alive(key, now), self.expiries.get(key)) {
                    (None, _) => -2,
                    (Some(_), None) => -1,
                    (Some(_), Some(deadline)) => {
                        let left = match absolute {
                            true => deadline,
                            false => deadline.saturating_sub(now),
                        };
                        let left = i64::try_from(left).unwrap_or(i64::MAX);
                        match millis {
                            true => left,
                            // Redis rounds to the nearest second.
                            false => left.saturating_add(500) / 1000,
                        }
                    }
                };
                QueryReply::Integer(ttl)
            }
            Read::StrLen { key } => {
                QueryReply::Integer(self.alive(key, now).map_or(0, Vec::len) as i64)
            }
            Read::GetRange { key, start, end } => {
                let value = self.alive(key, now).map_or(&[][..], Vec::as_slice);
                QueryReply::Value(Some(range(value, *start, *end).to_vec()))
            }
        }
    }

    /// A key picked at random (`seed` is the caller's randomness) among
    /// those alive at `now_ms`; `None` if there is none.
    fn random_key(&self, seed: u64, now_ms: u64) -> Option<Vec<u8>> {
        // A few tries at random, as Redis makes; then the first live key
        // from a random place on, so that many expired keys cannot hide
        // the live ones.
        let mut x = seed;
        for _ in 0..16 {
            x = splitmix(x);
            let (key, _) = self.map.random(x)?;
            if !self.expiries.is_due(key, now_ms) {
                return Some(key.clone());
            }
        }
        let mut cursor = splitmix(x);
        let mut wrapped = false;
        loop {
            let (batch, next) = self.map.scan(cursor, 64, usize::MAX, Vec::len);
            if let Some((key, _)) = batch
                .into_iter()
                .find(|(key, _)| !self.expiries.is_due(key, now_ms))
            {
                return Some(key.clone());
            }
            if next == 0 {
                // Past the last hash: once more from the first.
                if wrapped {
                    return None;
                }
                wrapped = true;
            }
            cursor = next;
        }
    }
}

/// GETRANGE's slice (Redis's `getrangeCommand`): negative indexes count
/// from the end, and the range is clipped to the value.
fn range(value: &[u8], start: i64, end: i64) -> &[u8] {
    let len = value.len() as i64;
    if start < 0 && end < 0 && start > end {
        return &[];
    }
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end }.max(0).min(len - 1);
    if start > end || len == 0 {
        return &[];
    }
    &value[start as usize..=end as usize]
}

fn too_big(what: &str, instead: &str) -> QueryReply {
    QueryReply::Refused(format!(
        "{what} would return over {MAX_READ_BYTES} bytes; use {instead}"
    ))
}

/// SplitMix64: spreads a seed over 64 bits.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn getrange_clips_like_redis() {
        let v = b"This is a string";
        assert_eq!(range(v, 0, 3), b"This");
        assert_eq!(range(v, -3, -1), b"ing");
        assert_eq!(range(v, 0, -1), v);
        assert_eq!(range(v, 10, 100), b"string");
        assert_eq!(range(v, 5, 3), b"");
        assert_eq!(range(v, -1, -5), b"");
        assert_eq!(range(v, -100, 1), b"Th");
        assert_eq!(range(b"", 0, -1), b"");
        assert_eq!(range(v, 100, 200), b"");
    }
}
