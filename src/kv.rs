//! The replicated state machine: a map from byte-string keys to byte-string
//! values (binary-safe, as in Redis).
//!
//! Commands reach it only through the log, so every node applies the same
//! commands in the same order and ends in the same state. Applying is
//! deterministic: it depends on nothing but the map and the command.

use crate::codec::{self, CodecError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A write, as it is stored in a log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Deletes every listed key; one entry so that a multi-key DEL is atomic.
    Delete {
        keys: Vec<Vec<u8>>,
    },
    /// Compare-and-set: replaces the value only if it currently equals
    /// `expected` (an absent key never matches).
    Cas {
        key: Vec<u8>,
        expected: Vec<u8>,
        new: Vec<u8>,
    },
}

impl Command {
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, CodecError> {
        codec::decode(bytes)
    }
}

/// What applying a command produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A Set was applied.
    Done,
    /// A Delete removed this many keys.
    Deleted(usize),
    /// Whether a CAS swapped the value.
    Swapped(bool),
}

#[derive(Debug, Default)]
pub struct Kv {
    map: HashMap<Vec<u8>, Vec<u8>>,
}

impl Kv {
    pub fn new() -> Kv {
        Kv::default()
    }

    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.map.get(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn apply(&mut self, command: Command) -> Outcome {
        match command {
            Command::Set { key, value } => {
                self.map.insert(key, value);
                Outcome::Done
            }
            Command::Delete { keys } => Outcome::Deleted(
                keys.iter()
                    .filter(|k| self.map.remove(*k).is_some())
                    .count(),
            ),
            Command::Cas { key, expected, new } => match self.map.get_mut(&key) {
                Some(value) if *value == expected => {
                    *value = new;
                    Outcome::Swapped(true)
                }
                _ => Outcome::Swapped(false),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn set_delete_cas() {
        let mut kv = Kv::new();
        assert_eq!(
            kv.apply(Command::Set {
                key: b("a"),
                value: b("1")
            }),
            Outcome::Done
        );
        assert_eq!(kv.get(b"a"), Some(&b("1")));
        let cas = |expected: &str, new: &str| Command::Cas {
            key: b("a"),
            expected: b(expected),
            new: b(new),
        };
        assert_eq!(kv.apply(cas("2", "3")), Outcome::Swapped(false));
        assert_eq!(kv.apply(cas("1", "3")), Outcome::Swapped(true));
        assert_eq!(kv.get(b"a"), Some(&b("3")));
        let del = Command::Delete {
            keys: vec![b("a"), b("missing"), b("a")],
        };
        assert_eq!(kv.apply(del), Outcome::Deleted(1));
        assert!(kv.is_empty());
        // CAS on an absent key never matches, not even the empty string.
        assert_eq!(kv.apply(cas("", "x")), Outcome::Swapped(false));
        assert_eq!(kv.get(b"a"), None);
    }

    #[test]
    fn commands_round_trip_through_the_codec() {
        let c = Command::Cas {
            key: b("k"),
            expected: vec![0, 255],
            new: vec![],
        };
        assert_eq!(Command::decode(&c.encode().unwrap()).unwrap(), c);
    }
}
