//! A map that can be captured in O(shards) and written out while it keeps
//! changing: the store's keys and its sessions live in one.
//!
//! A snapshot (§7 of the Raft paper) is taken on the apply thread, between
//! two entries, and written out on another thread while `apply` goes on.
//! Copying a map of millions of keys on the apply thread would stop every
//! write for as long, so the map is shared copy-on-write instead, at the
//! granularity of a shard:
//!
//! * the entries are split among a fixed number of shards, each an
//!   `Arc<HashMap>`; a key's shard is the top bits of its
//!   [`ShardKey::shard_hash`];
//! * [`ShardedMap::freeze`] clones the `Arc`s — one counter increment per
//!   shard, whatever the number of entries — into a [`Frozen`] view that
//!   never changes;
//! * a write goes through [`Arc::make_mut`], which copies a shard only if a
//!   frozen view still shares it, and only the first time. While a snapshot
//!   is being written, the writes pay for copying the shards they touch;
//!   once it is dropped, nothing is shared and nothing is copied.
//!
//! Writes that change nothing (a delete of an absent key, a failed
//! compare-and-set) look before they take a shard mutably, so that they
//! copy nothing either.
//!
//! Why these choices:
//!
//! * **One order for every replica.** A [`Frozen`] view is read in the
//!   order of the keys' shard hashes (then of the keys, should two hashes
//!   collide): a function of the content alone, so two replicas holding the
//!   same entries write the same snapshot bytes whatever the history that
//!   led there — a replica that restored a snapshot included. The shard
//!   hash is therefore deterministic (FNV-1a, finished by MurmurHash3's
//!   mixer), never `RandomState`. Since a shard is the top bits of that
//!   hash, the order is shard by shard, and each shard is sorted on its own
//!   as it is read — off the apply thread. The same order gives a later
//!   SCAN its cursor: a hash, from which to go on.
//! * **Hash maps inside the shards.** A lookup is the old `HashMap` lookup
//!   plus a shard hash and a read of the shard's header. Trees were measured too (`BTreeMap` per shard,
//!   by key and by hash): their nodes are cache misses, and overwriting a
//!   key among a million cost 1.7 to 3 times as much. The shards keep
//!   `RandomState`, which only they see: their own order is never read, and
//!   a client cannot make them degenerate. It can still aim many keys at
//!   one shard (the shard hash is not keyed, as it must agree between
//!   replicas): that shard grows, and so does its copy when a snapshot
//!   shares it.
//! * **A fixed number of shards**, chosen at creation, weighs the cost of
//!   freezing (one `Arc` each) and of the headers every write reads against
//!   the size of one shard's copy (the entries over the shards). The order
//!   above does not depend on it.

use std::borrow::Borrow;
use std::collections::hash_map::{self, HashMap};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

/// How a key picks its shard and its place in a [`Frozen`] view's order: a
/// well-mixed 64-bit hash, the same on every replica and in every version.
/// Every form of one key — the owned key and whatever it is looked up by —
/// must give the same hash.
pub trait ShardKey {
    fn shard_hash(&self) -> u64;
}

impl ShardKey for [u8] {
    fn shard_hash(&self) -> u64 {
        fmix64(fnv1a_64(self))
    }
}

impl ShardKey for Vec<u8> {
    fn shard_hash(&self) -> u64 {
        self.as_slice().shard_hash()
    }
}

impl ShardKey for u64 {
    fn shard_hash(&self) -> u64 {
        fmix64(*self)
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// MurmurHash3's 64-bit finalizer, a bijection. FNV-1a alone leaves its
/// high bits nearly blind to a key's last bytes (`key:1` … `key:9` would
/// share a shard); this spreads every input bit over all 64.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

type Shard<K, V> = Arc<HashMap<K, V>>;

/// A map split into `2^bits` copy-on-write shards (see the module doc).
pub struct ShardedMap<K, V> {
    shards: Vec<Shard<K, V>>,
    /// `64 - bits`: the shard of a hash is its top `bits` bits.
    shift: u32,
    len: usize,
}

impl<K: Hash + Ord + Clone + ShardKey, V: Clone> ShardedMap<K, V> {
    /// An empty map of `2^bits` shards; `bits` is between 1 and 24 (a
    /// constant of the caller's, not an input).
    pub fn new(bits: u32) -> ShardedMap<K, V> {
        assert!((1..=24).contains(&bits), "{bits} shard bits");
        ShardedMap {
            shards: (0..1usize << bits).map(|_| Arc::default()).collect(),
            shift: 64 - bits,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn index<Q: ShardKey + ?Sized>(&self, key: &Q) -> usize {
        (key.shard_hash() >> self.shift) as usize
    }

    /// The shard `key` belongs in, to change: copied first if a frozen view
    /// shares it.
    fn shard_mut<Q: ShardKey + ?Sized>(&mut self, key: &Q) -> &mut HashMap<K, V> {
        let at = self.index(key);
        Arc::make_mut(&mut self.shards[at])
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ShardKey + ?Sized,
    {
        self.shards[self.index(key)].get(key)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ShardKey + ?Sized,
    {
        self.shards[self.index(key)].contains_key(key)
    }

    /// The value of `key`, to change in place. An absent key copies no
    /// shard.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ShardKey + ?Sized,
    {
        if !self.contains_key(key) {
            return None;
        }
        self.shard_mut(key).get_mut(key)
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.shard_mut(&key).insert(key, value);
        self.len += usize::from(old.is_none());
        old
    }

    /// The value of `key`, inserting `V::default()` first if it has none.
    pub fn get_or_insert_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        let at = self.index(&key);
        // Not `shard_mut`: `len` is borrowed alongside.
        match Arc::make_mut(&mut self.shards[at]).entry(key) {
            hash_map::Entry::Occupied(entry) => entry.into_mut(),
            hash_map::Entry::Vacant(entry) => {
                self.len += 1;
                entry.insert(V::default())
            }
        }
    }

    /// Removes `key`; returns its value. An absent key copies no shard.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ShardKey + ?Sized,
    {
        if !self.contains_key(key) {
            return None;
        }
        let old = self.shard_mut(key).remove(key);
        self.len -= usize::from(old.is_some());
        old
    }

    /// Every entry, in no particular order (see [`Frozen::iter`] for one).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }

    /// SCAN's step: the entries whose shard hashes are `cursor` or more, in
    /// [`Frozen::iter`]'s order, until `count` of them (at least one) or
    /// until their `weight`s add up to over `max_weight` — but never
    /// stopping between two keys of one hash — and the hash to go on from,
    /// 0 when there are no more. Every key present throughout a sequence of
    /// steps from 0 is returned by one of them. Costs a sort of each shard
    /// it reads from.
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        max_weight: usize,
        weight: impl Fn(&K) -> usize,
    ) -> (Vec<(&K, &V)>, u64) {
        let mut out = Vec::new();
        let mut weighed = 0usize;
        let mut last = None;
        for shard in &self.shards[(cursor >> self.shift) as usize..] {
            // Only what is at or after the cursor is sorted.
            let mut entries: Vec<(u64, &K, &V)> = shard
                .iter()
                .map(|(k, v)| (k.shard_hash(), k, v))
                .filter(|(hash, _, _)| *hash >= cursor)
                .collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
            for (hash, key, value) in entries {
                let full = out.len() >= count.max(1) || weighed > max_weight;
                if full && last != Some(hash) {
                    return (out, hash);
                }
                weighed = weighed.saturating_add(weight(key));
                last = Some(hash);
                out.push((key, value));
            }
        }
        (out, 0)
    }

    /// An entry picked by `seed` (any number; the caller's randomness):
    /// a shard, then an entry in it. `None` if the map is empty.
    pub fn random(&self, seed: u64) -> Option<(&K, &V)> {
        if self.len == 0 {
            return None;
        }
        let shards = self.shards.len();
        let first = (seed >> self.shift) as usize % shards;
        let shard = (0..shards)
            .map(|i| &self.shards[(first + i) % shards])
            .find(|shard| !shard.is_empty())?;
        shard.iter().nth((seed % shard.len() as u64) as usize)
    }

    /// The map as it is now, shared rather than copied: O(shards).
    pub fn freeze(&self) -> Frozen<K, V> {
        Frozen {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for ShardedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.shards.iter().flat_map(|shard| shard.iter()))
            .finish()
    }
}

/// A [`ShardedMap`] as it was when [frozen](ShardedMap::freeze): later
/// writes to the map do not show here.
pub struct Frozen<K, V> {
    shards: Vec<Shard<K, V>>,
    len: usize,
}

impl<K: Ord + ShardKey, V> Frozen<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in the order of the keys' shard hashes, then of the
    /// keys: the same on every replica that holds the same entries. Each
    /// shard is sorted as it is reached, so this holds one shard's worth of
    /// references at a time.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|shard| in_order(shard))
    }
}

/// One shard's entries, sorted by (shard hash, key).
fn in_order<K: Ord + ShardKey, V>(shard: &HashMap<K, V>) -> impl Iterator<Item = (&K, &V)> {
    let mut entries: Vec<(u64, &K, &V)> =
        shard.iter().map(|(k, v)| (k.shard_hash(), k, v)).collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    entries.into_iter().map(|(_, k, v)| (k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ShardedMap<Vec<u8>, Vec<u8>> {
        ShardedMap::new(4)
    }

    fn key(n: u32) -> Vec<u8> {
        n.to_be_bytes().to_vec()
    }

    #[test]
    fn it_is_a_map() {
        let mut m = map();
        assert!(m.is_empty());
        assert_eq!(m.insert(b"a".to_vec(), b"1".to_vec()), None);
        assert_eq!(m.insert(b"a".to_vec(), b"2".to_vec()), Some(b"1".to_vec()));
        assert_eq!(m.get(&b"a"[..]), Some(&b"2".to_vec()));
        m.get_mut(&b"a"[..]).unwrap().push(b'!');
        assert_eq!(m.get(&b"a"[..]), Some(&b"2!".to_vec()));
        assert_eq!(m.get_mut(&b"none"[..]), None);
        m.get_or_insert_default(b"b".to_vec()).push(b'x');
        m.get_or_insert_default(b"b".to_vec()).push(b'y');
        assert_eq!(m.get(&b"b"[..]), Some(&b"xy".to_vec()));
        assert_eq!(m.len(), 2);
        assert_eq!(m.iter().count(), 2);
        assert_eq!(m.remove(&b"none"[..]), None);
        assert_eq!(m.remove(&b"a"[..]), Some(b"2!".to_vec()));
        assert_eq!(m.len(), 1);
        assert!(!m.contains_key(&b"a"[..]));
    }

    #[test]
    fn a_frozen_view_does_not_see_later_writes() {
        let mut m = map();
        for n in 0..100 {
            m.insert(key(n), key(n));
        }
        let frozen = m.freeze();
        m.insert(key(0), b"changed".to_vec());
        m.insert(key(1000), key(1000));
        m.remove(&key(1)[..]);
        m.get_mut(&key(2)[..]).unwrap().clear();
        m.get_or_insert_default(key(3)).push(0);
        assert_eq!(frozen.len(), 100);
        let seen: Vec<_> = frozen.iter().collect();
        assert_eq!(seen.len(), 100);
        assert!(seen.iter().all(|(k, v)| k == v));
        assert_eq!(m.len(), 100);
        assert_eq!(m.get(&key(0)[..]), Some(&b"changed".to_vec()));
        assert_eq!(m.get(&key(1)[..]), None);
        assert_eq!(m.get(&key(1000)[..]), Some(&key(1000)));
    }

    #[test]
    fn writes_that_change_nothing_copy_no_shard() {
        let mut m = map();
        m.insert(key(1), key(1));
        let frozen = m.freeze();
        let shared = |m: &ShardedMap<Vec<u8>, Vec<u8>>| {
            m.shards
                .iter()
                .zip(&frozen.shards)
                .filter(|(a, b)| Arc::ptr_eq(a, b))
                .count()
        };
        assert_eq!(shared(&m), 16);
        assert_eq!(m.remove(&key(2)[..]), None);
        assert_eq!(m.get_mut(&key(2)[..]), None);
        assert_eq!(shared(&m), 16);
        m.insert(key(2), key(2));
        assert_eq!(shared(&m), 15, "one write copies one shard");
        m.insert(key(2), key(3));
        assert_eq!(shared(&m), 15, "and only once");
        drop(frozen);
    }

    #[test]
    fn the_frozen_order_depends_on_the_content_not_the_history() {
        let (mut a, mut b) = (map(), map());
        for n in 0..200 {
            a.insert(key(n), key(n));
        }
        for n in (0..300).rev() {
            b.insert(key(n), b"tmp".to_vec());
        }
        for n in 0..300 {
            match n < 200 {
                true => b.insert(key(n), key(n)),
                false => b.remove(&key(n)[..]),
            };
        }
        let (a, b) = (a.freeze(), b.freeze());
        assert!(a.iter().eq(b.iter()));
        let hashes: Vec<u64> = a.iter().map(|(k, _)| k.shard_hash()).collect();
        assert!(hashes.windows(2).all(|w| w[0] < w[1]), "by hash");
    }

    /// A key whose shard hash collides with others': `n / 10`.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
    struct Colliding(u32);

    impl ShardKey for Colliding {
        fn shard_hash(&self) -> u64 {
            u64::from(self.0 / 10).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        }
    }

    #[test]
    fn keys_whose_hashes_collide_are_ordered_by_key() {
        let mut m: ShardedMap<Colliding, ()> = ShardedMap::new(2);
        for n in (0..50).rev() {
            m.insert(Colliding(n), ());
        }
        let frozen = m.freeze();
        let order: Vec<(u64, u32)> = frozen.iter().map(|(k, _)| (k.shard_hash(), k.0)).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
        assert_eq!(order.len(), 50);
    }

    /// SCAN over keys whose hashes collide in groups of ten, one key per
    /// step: every key comes back, none twice, and a step never stops
    /// inside a group (else the cursor, a hash, would skip the group's
    /// rest or repeat it).
    #[test]
    fn a_scan_step_never_stops_between_keys_of_one_hash() {
        let mut m: ShardedMap<Colliding, ()> = ShardedMap::new(2);
        for n in 0..95 {
            m.insert(Colliding(n), ());
        }
        let (mut cursor, mut seen, mut steps) = (0, Vec::new(), 0);
        loop {
            let (batch, next) = m.scan(cursor, 1, usize::MAX, |_| 1);
            assert!(batch.iter().all(|(k, _)| k.0 / 10 == batch[0].0 .0 / 10));
            seen.extend(batch.iter().map(|(k, _)| k.0));
            steps += 1;
            if next == 0 {
                break;
            }
            cursor = next;
        }
        seen.sort();
        assert_eq!(seen, (0..95).collect::<Vec<_>>());
        assert_eq!(steps, 10, "one step per group of colliding keys");
        // The weight bound cuts a step short, at a hash boundary.
        // 11 keys weigh 110 > 105: the step ends with the second group.
        let (batch, next) = m.scan(0, 1000, 105, |_| 10);
        assert_eq!((batch.len(), next != 0), (20, true));
        assert_eq!(m.scan(u64::MAX, 10, usize::MAX, |_| 1).1, 0);
    }

    #[test]
    fn random_picks_every_entry_and_none_from_an_empty_map() {
        let mut m = map();
        assert!(m.random(7).is_none());
        for n in 0..20 {
            m.insert(key(n), key(n));
        }
        let picked: std::collections::HashSet<_> = (0..2_000u64)
            .filter_map(|s| m.random(s.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(picked.len(), 20);
    }

    #[test]
    fn fnv1a_64_matches_its_published_test_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn keys_spread_over_the_shards() {
        let mut m: ShardedMap<Vec<u8>, ()> = ShardedMap::new(12);
        for n in 0..409_600u32 {
            m.insert(format!("key:{n}").into_bytes(), ());
        }
        let sizes: Vec<usize> = m.shards.iter().map(|s| s.len()).collect();
        let (min, max) = (sizes.iter().min(), sizes.iter().max());
        // 100 per shard on average; a fair hash stays well within 2x.
        assert!(min > Some(&50) && max < Some(&150), "{min:?}..{max:?}");
    }
}
