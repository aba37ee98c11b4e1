//! The one place where Rust values become bytes and back.
//!
//! Every encode and decode in raftnode — peer frames, log records, the hard
//! state file — goes through these two functions, so the serialization format
//! (bincode 2 with its serde integration today) can be swapped in one module.
//!
//! Decoding is always bounded: bincode is told the most bytes it may allocate,
//! so a corrupt or hostile length prefix inside a payload cannot make the node
//! allocate gigabytes.

use serde::{de::DeserializeOwned, Serialize};
use std::fmt;

/// The most bytes a single decoded value may claim. Frames and records are
/// already length-checked before they reach the codec; this caps allocations
/// *inside* a payload (a `Vec` whose encoded length lies).
pub const DECODE_LIMIT: usize = 64 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// A value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

/// Encodes `value` into a fresh buffer.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError(e.to_string()))
}

/// Appends the encoding of `value` to `buf` (avoids a copy when framing).
pub fn encode_into<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, buf, config())
        .map(|_| ())
        .map_err(|e| CodecError(e.to_string()))
}

/// Decodes a value that must fill `bytes` exactly; trailing bytes are an error
/// because they mean the payload is not what its writer wrote.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v: (u64, String, Vec<u8>) = (7, "seven".into(), vec![1, 2, 3]);
        let bytes = encode(&v).unwrap();
        assert_eq!(decode::<(u64, String, Vec<u8>)>(&bytes).unwrap(), v);
        let mut buf = vec![9];
        encode_into(&v, &mut buf).unwrap();
        assert_eq!(&buf[1..], &bytes[..]);
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = encode(&5u64).unwrap();
        bytes.push(0);
        assert!(decode::<u64>(&bytes).is_err());
    }

    #[test]
    fn lying_length_does_not_allocate() {
        // A Vec<u8> claiming u32::MAX elements: bincode must refuse, not allocate.
        let mut bytes = vec![252];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }
}
