//! A digest of the store's applied state — keys, values and client sessions —
//! that does not depend on the order anything was inserted in, so that two
//! replicas at the same applied index have the same digest exactly when they
//! hold the same state (`DEBUG DIGEST`, Redis's name).
//!
//! Each item (a key and its value, or a session) is hashed on its own with
//! 128-bit FNV-1a over its length-prefixed parts; the item hashes are
//! combined by wrapping addition and by XOR, both of which ignore order, and
//! the result is hashed once more with the item count. It detects divergence
//! between replicas; it is not meant to resist an adversary. An empty state
//! digests to 40 zeros, as an empty Redis does.

const FNV_OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
const FNV_PRIME: u128 = 0x0000000001000000000000000000013b;

/// Accumulates items in any order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Digest {
    sum: u128,
    xor: u128,
    count: u64,
}

impl Digest {
    /// Adds one item made of `parts` (each length-prefixed, so that
    /// `("ab", "c")` and `("a", "bc")` differ).
    pub fn add(&mut self, parts: &[&[u8]]) {
        let mut hash = Fnv::default();
        for part in parts {
            hash.write(&(part.len() as u64).to_le_bytes());
            hash.write(part);
        }
        let item = hash.0;
        self.sum = self.sum.wrapping_add(item);
        self.xor ^= item;
        self.count += 1;
    }

    /// 40 hex digits: all zeros for no items.
    pub fn hex(&self) -> String {
        if self.count == 0 {
            return "0".repeat(40);
        }
        let mut hash = Fnv::default();
        hash.write(&self.sum.to_le_bytes());
        hash.write(&self.xor.to_le_bytes());
        hash.write(&self.count.to_le_bytes());
        let high = hash.0;
        // Eight more digits to make Redis's 40, from the same inputs.
        hash.write(b"tail");
        format!("{high:032x}{:08x}", hash.0 as u32)
    }
}

struct Fnv(u128);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(FNV_OFFSET)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(items: &[(&str, &str)]) -> String {
        let mut d = Digest::default();
        for (k, v) in items {
            d.add(&[k.as_bytes(), v.as_bytes()]);
        }
        d.hex()
    }

    #[test]
    fn order_does_not_matter_content_does() {
        let a = digest(&[("k1", "v1"), ("k2", "v2"), ("k3", "v3")]);
        assert_eq!(a, digest(&[("k3", "v3"), ("k1", "v1"), ("k2", "v2")]));
        assert_eq!(a.len(), 40);
        assert_ne!(a, digest(&[("k1", "v1"), ("k2", "v2"), ("k3", "v4")]));
        assert_ne!(a, digest(&[("k1", "v1"), ("k2", "v2")]));
        // Length prefixes keep the parts apart.
        assert_ne!(digest(&[("ab", "c")]), digest(&[("a", "bc")]));
        // The same item twice is not the same as none of it.
        assert_ne!(digest(&[("k", "v"), ("k", "v")]), digest(&[]));
    }

    #[test]
    fn empty_is_forty_zeros_like_redis() {
        assert_eq!(digest(&[]), "0".repeat(40));
        assert_ne!(digest(&[("", "")]), "0".repeat(40));
    }

    #[test]
    fn fnv_128_matches_its_published_test_vector() {
        // FNV-1a 128 of "a".
        let mut h = Fnv::default();
        h.write(b"a");
        assert_eq!(h.0, 0xd228cb696f1a8caf78912b704e4a8964);
    }
}
