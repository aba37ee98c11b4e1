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
    // bincode allocates a string's declared length before it reads the
    // string, up to the limit it is given: with the one limit, 20 bytes
    // claiming a 32 MiB string cost 32 MiB. Every claim counts bytes of the
    // input, at most 16 per encoded byte (a u128 in one byte), so a limit of
    // 16 times the input's length never refuses a valid one, and keeps what
    // a lying length costs proportional to the input.
    const K: usize = 1024;
    match bytes.len().saturating_mul(16) {
        n if n <= 64 * K => decode_within::<T, { 64 * K }>(bytes),
        n if n <= 256 * K => decode_within::<T, { 256 * K }>(bytes),
        n if n <= 1024 * K => decode_within::<T, { 1024 * K }>(bytes),
        n if n <= 4096 * K => decode_within::<T, { 4096 * K }>(bytes),
        n if n <= 16384 * K => decode_within::<T, { 16384 * K }>(bytes),
        _ => decode_within::<T, DECODE_LIMIT>(bytes),
    }
}

fn decode_within<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<T, CodecError> {
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, config).map_err(|e| CodecError(e.to_string()))?;
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
    fn a_string_claiming_more_than_the_input_is_refused_at_its_size() {
        // A string whose length says 32 MiB, in a 9-byte input: refused by
        // the limit scaled to the input, before bincode allocates it.
        let mut bytes = vec![0xfc];
        bytes.extend_from_slice(&(32u32 << 20).to_le_bytes());
        bytes.extend_from_slice(b"abcd");
        let err = decode::<String>(&bytes).unwrap_err();
        assert!(err.0.contains("LimitExceeded"), "{err}");
        // Values near the tiers' edges still decode.
        for len in [0, 4 * 1024 - 8, 4 * 1024, 70_000, 300_000] {
            let s = "x".repeat(len);
            assert_eq!(decode::<String>(&encode(&s).unwrap()).unwrap(), s);
            let v: Vec<u128> = vec![1; len / 16];
            assert_eq!(decode::<Vec<u128>>(&encode(&v).unwrap()).unwrap(), v);
        }
    }

    #[test]
    fn lying_length_does_not_allocate() {
        // A Vec<u8> claiming u32::MAX elements: bincode must refuse, not allocate.
        let mut bytes = vec![252];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }
}
