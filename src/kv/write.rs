//! Applying the writes: what each [`Command`] does to the store, with
//! Redis's semantics and Redis's words for its errors.
//!
//! Every write that names a key first deletes it if its deadline is not
//! after the store's clock ([`Kv::expire_if_due`], lazy expiry), so a key
//! past its deadline is absent to every command — decided by the
//! replicated clock, identically on every replica (see [`super::expiry`]).
//! Writes that change nothing look before they take a shard mutably, so
//! they copy nothing a snapshot shares (see [`super::map`]).

use super::command::{Command, Condition, ExpireCondition, Expiry, Outcome};
use super::{float, Kv, MAX_MULTI_READ_BYTES, MAX_VALUE_BYTES};

/// Redis's error for a string grown past the largest value.
pub(super) const TOO_LONG: &str = "string exceeds maximum allowed size (proto-max-bulk-len)";

impl Kv {
    /// Deletes `key` if its deadline has come by the store's clock.
    pub(super) fn expire_if_due(&mut self, key: &[u8]) {
        if !self.expiries.is_empty() && self.expiries.is_due(key, self.expiries.clock()) {
            self.remove_key(key);
        }
    }

    /// Removes `key` and its deadline; returns its value.
    pub(super) fn remove_key(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.expiries.remove(key);
        self.map.remove(key)
    }

    /// The deadline `expiry` gives a key that had `current`, or `None` for
    /// none.
    fn deadline(&self, expiry: Expiry, current: Option<u64>) -> Option<u64> {
        match expiry {
            Expiry::Clear => None,
            Expiry::Keep => current,
            Expiry::In(ms) => Some(self.expiries.clock().saturating_add(ms)),
            Expiry::At(at) => Some(at),
        }
    }

    /// Sets `key` to `value` with the time to live `expiry` says. A
    /// deadline already passed leaves the key absent, as if it had been set
    /// and had expired at once.
    fn store(&mut self, key: Vec<u8>, value: Vec<u8>, expiry: Expiry) {
        // Only KEEPTTL needs the deadline the key had.
        let current = match expiry {
            Expiry::Keep => self.expiries.get(&key),
            _ => None,
        };
        match self.deadline(expiry, current) {
            Some(deadline) if deadline <= self.expiries.clock() => {
                self.remove_key(&key);
            }
            Some(deadline) => {
                self.expiries.set(&key, deadline);
                self.map.insert(key, value);
            }
            None => {
                if !self.expiries.is_empty() {
                    self.expiries.remove(&key);
                }
                self.map.insert(key, value);
            }
        }
    }

    /// A command, outside a session (the session is [`Kv::apply_command`]'s).
    pub(super) fn apply_plain(&mut self, command: Command) -> Outcome {
        match command {
            Command::Set { key, value } => {
                self.store(key, value, Expiry::Clear);
                Outcome::Done
            }
            Command::Delete { keys } => Outcome::Deleted(
                keys.iter()
                    .filter(|k| {
                        self.expire_if_due(k);
                        self.remove_key(k).is_some()
                    })
                    .count(),
            ),
            // Compared before anything is taken mutably: a failed swap
            // copies no shard a snapshot shares. A swap is a SET: it clears
            // the time to live.
            Command::Cas { key, expected, new } => {
                self.expire_if_due(&key);
                match self.map.get(&key) {
                    Some(value) if *value == expected => {
                        self.store(key, new, Expiry::Clear);
                        Outcome::Swapped(true)
                    }
                    _ => Outcome::Swapped(false),
                }
            }
            Command::Incr { key } => self.add(key, 1),
            Command::IncrBy { key, by } => self.add(key, by),
            Command::Append { key, value } => {
                self.expire_if_due(&key);
                // Checked before anything is taken mutably, as for CAS.
                let current = self.map.get(&key).map_or(0, Vec::len);
                if current + value.len() > MAX_VALUE_BYTES {
                    return Outcome::Refused(TOO_LONG.into());
                }
                let stored = self.map.get_or_insert_default(key);
                stored.extend_from_slice(&value);
                Outcome::Integer(stored.len() as i64)
            }
            Command::Session { command, .. } => self.apply_plain(*command),
            Command::Stamped { now_ms, command } => {
                self.expiries.advance(now_ms);
                self.apply_plain(*command)
            }
            Command::Get { key } => {
                self.expire_if_due(&key);
                Outcome::Value(self.map.get(&key).cloned())
            }
            Command::Multi(commands) => Outcome::Multi(self.apply_multi(commands)),
            Command::SetWith {
                key,
                value,
                condition,
                get,
                expiry,
            } => self.set_with(key, value, condition, get, expiry),
            Command::MSet {
                pairs,
                only_if_none_exist,
            } => self.mset(pairs, only_if_none_exist),
            Command::GetDel { key } => {
                self.expire_if_due(&key);
                Outcome::Value(self.remove_key(&key))
            }
            Command::GetEx { key, expiry } => self.getex(key, expiry),
            Command::SetRange { key, offset, value } => self.setrange(key, offset, value),
            Command::IncrByFloat { key, by } => {
                self.expire_if_due(&key);
                let current = self.map.get(&key).map(Vec::as_slice);
                match float::incr_by_float(current, &by) {
                    Ok(value) => {
                        // In place: the time to live stays, as in Redis.
                        match self.map.get_mut(&key) {
                            Some(stored) => *stored = value.clone(),
                            None => {
                                self.map.insert(key, value.clone());
                            }
                        }
                        Outcome::Value(Some(value))
                    }
                    Err(e) => Outcome::Refused(e.to_string()),
                }
            }
            Command::Rename {
                from,
                to,
                only_if_absent,
            } => self.rename(from, to, only_if_absent),
            Command::Copy { from, to, replace } => self.copy(from, to, replace),
            Command::FlushAll => {
                self.map = super::map::ShardedMap::new(super::KEY_SHARD_BITS);
                self.expiries.clear();
                Outcome::Done
            }
            Command::Expire {
                key,
                when_ms,
                relative,
                condition,
            } => self.expire(key, when_ms, relative, condition),
            Command::Persist { key } => {
                self.expire_if_due(&key);
                let had = self.map.contains_key(&key) && self.expiries.remove(&key).is_some();
                Outcome::Integer(i64::from(had))
            }
            Command::Expired { keys } => {
                let clock = self.expiries.clock();
                let due: Vec<&Vec<u8>> = keys
                    .iter()
                    .filter(|k| self.expiries.is_due(k, clock))
                    .collect();
                for key in &due {
                    self.remove_key(key);
                }
                Outcome::Deleted(due.len())
            }
            Command::Read(read) => Outcome::Read(self.read(self.expiries.clock(), &read)),
        }
    }

    /// INCR and friends: adds `by` to the integer at `key`, with Redis's
    /// errors for a value that is not one and for overflow. The time to
    /// live stays.
    fn add(&mut self, key: Vec<u8>, by: i64) -> Outcome {
        self.expire_if_due(&key);
        let current = match self.map.get(&key) {
            None => 0,
            Some(v) => match super::parse_integer(v) {
                Some(n) => n,
                None => return Outcome::Refused("value is not an integer or out of range".into()),
            },
        };
        match current.checked_add(by) {
            Some(n) => {
                self.map.insert(key, n.to_string().into_bytes());
                Outcome::Integer(n)
            }
            None => Outcome::Refused("increment or decrement would overflow".into()),
        }
    }

    /// SET with its options (Redis's `setGenericCommand`): with GET the
    /// old value whether or not the condition held.
    fn set_with(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        condition: Condition,
        get: bool,
        expiry: Expiry,
    ) -> Outcome {
        self.expire_if_due(&key);
        let old = match get {
            true => self.map.get(&key).cloned(),
            false => None,
        };
        let exists = self.map.contains_key(&key);
        let holds = match condition {
            Condition::Always => true,
            Condition::IfAbsent => !exists,
            Condition::IfPresent => exists,
        };
        if holds {
            self.store(key, value, expiry);
        }
        match (get, holds) {
            (true, _) => Outcome::Value(old),
            (false, true) => Outcome::Done,
            (false, false) => Outcome::Value(None),
        }
    }

    fn mset(&mut self, pairs: Vec<(Vec<u8>, Vec<u8>)>, only_if_none_exist: bool) -> Outcome {
        for (key, _) in &pairs {
            self.expire_if_due(key);
        }
        if only_if_none_exist && pairs.iter().any(|(k, _)| self.map.contains_key(k)) {
            return Outcome::Integer(0);
        }
        for (key, value) in pairs {
            self.store(key, value, Expiry::Clear);
        }
        match only_if_none_exist {
            true => Outcome::Integer(1),
            false => Outcome::Done,
        }
    }

    /// GETEX with an option (without one it is a read).
    fn getex(&mut self, key: Vec<u8>, expiry: Expiry) -> Outcome {
        self.expire_if_due(&key);
        let Some(value) = self.map.get(&key).cloned() else {
            return Outcome::Value(None);
        };
        match self.deadline(expiry, self.expiries.get(&key)) {
            Some(deadline) if deadline <= self.expiries.clock() => {
                self.remove_key(&key);
            }
            Some(deadline) => self.expiries.set(&key, deadline),
            None => {
                self.expiries.remove(&key);
            }
        }
        Outcome::Value(Some(value))
    }

    /// SETRANGE (Redis's `setrangeCommand`): an empty value changes
    /// nothing and answers the length; a missing key counts as empty and
    /// is padded with zero bytes.
    fn setrange(&mut self, key: Vec<u8>, offset: u64, value: Vec<u8>) -> Outcome {
        self.expire_if_due(&key);
        let current = self.map.get(&key).map_or(0, Vec::len);
        if value.is_empty() {
            return Outcome::Integer(current as i64);
        }
        let end = offset.saturating_add(value.len() as u64);
        if end > MAX_VALUE_BYTES as u64 {
            return Outcome::Refused(TOO_LONG.into());
        }
        let (offset, end) = (offset as usize, end as usize);
        let stored = self.map.get_or_insert_default(key);
        if stored.len() < end {
            stored.resize(end, 0);
        }
        stored[offset..end].copy_from_slice(&value);
        Outcome::Integer(stored.len() as i64)
    }

    /// RENAME and RENAMENX (Redis's `renameGenericCommand`).
    fn rename(&mut self, from: Vec<u8>, to: Vec<u8>, only_if_absent: bool) -> Outcome {
        self.expire_if_due(&from);
        self.expire_if_due(&to);
        if !self.map.contains_key(&from) {
            return Outcome::Refused("no such key".into());
        }
        let done = |renamed: bool| match only_if_absent {
            true => Outcome::Integer(i64::from(renamed)),
            false => Outcome::Done,
        };
        if from == to {
            return done(false);
        }
        if only_if_absent && self.map.contains_key(&to) {
            return done(false);
        }
        let deadline = self.expiries.get(&from);
        let Some(value) = self.remove_key(&from) else {
            return Outcome::Refused("no such key".into());
        };
        self.store(to, value, deadline.map_or(Expiry::Clear, Expiry::At));
        done(true)
    }

    /// COPY (Redis's `copyCommand`): the value and its time to live.
    fn copy(&mut self, from: Vec<u8>, to: Vec<u8>, replace: bool) -> Outcome {
        if from == to {
            return Outcome::Refused("source and destination objects are the same".into());
        }
        self.expire_if_due(&from);
        self.expire_if_due(&to);
        let Some(value) = self.map.get(&from).cloned() else {
            return Outcome::Integer(0);
        };
        if !replace && self.map.contains_key(&to) {
            return Outcome::Integer(0);
        }
        let deadline = self.expiries.get(&from);
        self.store(to, value, deadline.map_or(Expiry::Clear, Expiry::At));
        Outcome::Integer(1)
    }

    /// EXPIRE and friends (Redis's `expireGenericCommand`).
    fn expire(
        &mut self,
        key: Vec<u8>,
        when_ms: i64,
        relative: bool,
        condition: ExpireCondition,
    ) -> Outcome {
        self.expire_if_due(&key);
        if !self.map.contains_key(&key) {
            return Outcome::Integer(0);
        }
        let clock = i64::try_from(self.expiries.clock()).unwrap_or(i64::MAX);
        let when = match relative {
            true => clock.saturating_add(when_ms),
            false => when_ms,
        };
        let current = self
            .expiries
            .get(&key)
            .map(|d| i64::try_from(d).unwrap_or(i64::MAX));
        let refused = (condition.no_ttl && current.is_some())
            || (condition.has_ttl && current.is_none())
            || (condition.later && current.is_none_or(|c| when <= c))
            || (condition.sooner && current.is_some_and(|c| when >= c));
        if refused {
            return Outcome::Integer(0);
        }
        if when <= clock {
            self.remove_key(&key);
        } else {
            self.expiries.set(&key, when as u64);
        }
        Outcome::Integer(1)
    }

    /// A transaction's commands, in order, each seeing the ones before it.
    /// Its reads return at most [`MAX_MULTI_READ_BYTES`] between them.
    pub(super) fn apply_multi(&mut self, commands: Vec<Command>) -> Vec<Outcome> {
        let mut read = 0usize;
        let mut outcomes = Vec::with_capacity(commands.len());
        let too_much = || {
            Outcome::Refused(format!(
                "the transaction's reads would return over {MAX_MULTI_READ_BYTES} \
                 bytes; read this outside the transaction"
            ))
        };
        for command in commands {
            let outcome = match command {
                Command::Multi(_) | Command::Session { .. } | Command::Stamped { .. } => {
                    Outcome::Refused(
                        "a transaction cannot hold another transaction or a session".into(),
                    )
                }
                command @ (Command::Get { .. } | Command::Read(_)) => {
                    match self.apply_plain(command) {
                        outcome
                            if read.saturating_add(outcome_bytes(&outcome))
                                > MAX_MULTI_READ_BYTES =>
                        {
                            too_much()
                        }
                        outcome => {
                            read += outcome_bytes(&outcome);
                            outcome
                        }
                    }
                }
                command => self.apply_plain(command),
            };
            outcomes.push(outcome);
        }
        outcomes
    }
}

/// The bytes a read's outcome returns.
fn outcome_bytes(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Value(v) => v.as_ref().map_or(0, Vec::len),
        Outcome::Read(reply) => reply.bytes(),
        _ => 0,
    }
}
