//! [`HotCache`]: the verified-key cache, read on every authenticated request.
//!
//! A sharded map from a key's SHA-256 to its entry. A hit takes one shard's read lock,
//! probes once, and compares two integers; it allocates nothing and reads no clock (the
//! caller passes the request's time). moka, used for the colder caches, spends several
//! times that on its bookkeeping (a read-op channel, its own clock read) on every hit.
//!
//! - **Time to live**: an entry is served from its insertion until `ttl` later, in the
//!   gate's time. An entry from the future (the clock stepped back) is not served
//!   either, so a clock step never lengthens how long an entry lives.
//! - **Capacity**: each shard holds its share of `capacity`. A full shard first drops
//!   its expired entries, then the one least recently hit. Inserts follow an argon2
//!   verification, so the scan this takes is small beside it.
//! - **Hashing**: the digest is already uniform, so its first eight bytes, mixed with a
//!   per-process random seed, are the hash. Only keys whose secret was proven get in.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// SHA-256 of the whole presented key: the cache key, so the plaintext is never kept.
pub(crate) type Digest = [u8; 32];

pub(crate) fn digest(key: &[u8]) -> Digest {
    #[cfg(test)]
    HASHED.with(|n| n.set(n.get() + key.len()));
    Sha256::digest(key).into()
}

#[cfg(test)]
thread_local! {
    /// Bytes this thread has put through [`digest`]: what the unit tests count.
    pub(crate) static HASHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

const SHARDS: usize = 64;
const NANOS_PER_SEC: i64 = 1_000_000_000;

type Shard<V> = RwLock<HashMap<Digest, Slot<V>, Seeded>>;

pub(crate) struct HotCache<V> {
    shards: Box<[Shard<V>]>,
    per_shard: usize,
    ttl_nanos: i64,
}

struct Slot<V> {
    value: V,
    /// When it was inserted, in nanoseconds since the Unix epoch (gate time).
    inserted: i64,
    /// When it was last served, to the second: what eviction compares.
    last_hit: AtomicI64,
}

impl<V: Clone> HotCache<V> {
    /// A cache of at most `capacity` entries (at least one per shard), each served for
    /// `ttl`.
    pub(crate) fn new(capacity: u64, ttl: Duration) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        let shards = SHARDS.min(capacity.next_power_of_two());
        let seed = Seeded(std::collections::hash_map::RandomState::new().hash_one(0u8));
        Self {
            shards: (0..shards)
                .map(|_| RwLock::new(HashMap::with_hasher(seed.clone())))
                .collect(),
            per_shard: capacity.div_ceil(shards),
            ttl_nanos: i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX),
        }
    }

    fn shard(&self, digest: &Digest) -> &Shard<V> {
        // Bytes the map's hash does not use pick the shard.
        &self.shards[usize::from(digest[31]) & (self.shards.len() - 1)]
    }

    fn live(&self, inserted: i64, now: i64) -> bool {
        now >= inserted && now - inserted < self.ttl_nanos
    }

    /// The live entry for `digest` at `now` (nanoseconds since the epoch).
    pub(crate) fn get(&self, digest: &Digest, now: i64) -> Option<V> {
        self.get_with(digest, now, |value| Some(value.clone()))
    }

    /// `f` of the live entry for `digest` at `now`, run under the shard's read lock:
    /// the entry is read in place, not cloned. `f` must not use this cache (a read
    /// lock taken again behind a waiting writer would never be granted).
    pub(crate) fn get_with<R>(
        &self,
        digest: &Digest,
        now: i64,
        f: impl FnOnce(&V) -> Option<R>,
    ) -> Option<R> {
        // The map holds plain data, valid after any panic: ignore poisoning.
        let shard = self.shard(digest).read().unwrap_or_else(PoisonError::into_inner);
        let slot = shard.get(digest)?;
        if !self.live(slot.inserted, now) {
            return None;
        }
        // A store at most once a second per entry: hot entries stay read-mostly.
        if now - slot.last_hit.load(Ordering::Relaxed) >= NANOS_PER_SEC {
            slot.last_hit.store(now, Ordering::Relaxed);
        }
        f(&slot.value)
    }

    /// Inserts or replaces the entry for `digest`, inserted at `now`.
    pub(crate) fn insert(&self, digest: Digest, value: V, now: i64) {
        let mut shard = self
            .shard(&digest)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= self.per_shard && !shard.contains_key(&digest) {
            shard.retain(|_, slot| self.live(slot.inserted, now));
            if shard.len() >= self.per_shard {
                let coldest = shard
                    .iter()
                    .min_by_key(|(_, slot)| slot.last_hit.load(Ordering::Relaxed))
                    .map(|(digest, _)| *digest);
                if let Some(coldest) = coldest {
                    shard.remove(&coldest);
                }
            }
        }
        let slot = Slot {
            value,
            inserted: now,
            last_hit: AtomicI64::new(now),
        };
        shard.insert(digest, slot);
    }

    /// Drops every entry.
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            shard.write().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    /// Entries held, live or not yet dropped.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// The hasher of digests: their first eight bytes, mixed with a random seed.
#[derive(Clone)]
struct Seeded(u64);

impl BuildHasher for Seeded {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(self.0)
    }
}

struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(word);
    }

    /// The length prefix of a `[u8; 32]`: the same for every digest.
    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = NANOS_PER_SEC;

    fn digest(n: u16) -> Digest {
        let mut d = [0u8; 32];
        d[..2].copy_from_slice(&n.to_le_bytes());
        d[31] = n as u8;
        d
    }

    #[test]
    fn an_entry_is_served_for_its_ttl_and_not_after() {
        let cache = HotCache::new(100, Duration::from_secs(10));
        cache.insert(digest(1), "a", 100 * SEC);
        assert_eq!(cache.get(&digest(1), 100 * SEC), Some("a"));
        assert_eq!(cache.get(&digest(1), 110 * SEC - 1), Some("a"));
        assert_eq!(cache.get(&digest(1), 110 * SEC), None);
        assert_eq!(cache.get(&digest(2), 100 * SEC), None);
    }

    #[test]
    fn a_clock_stepped_back_does_not_lengthen_an_entrys_life() {
        let cache = HotCache::new(100, Duration::from_secs(10));
        cache.insert(digest(1), "a", 100 * SEC);
        assert_eq!(cache.get(&digest(1), 99 * SEC), None);
    }

    #[test]
    fn a_full_shard_drops_expired_entries_then_the_least_recently_hit() {
        // One shard of two entries.
        let cache = HotCache::new(1, Duration::from_secs(10));
        assert_eq!(cache.shards.len(), 1);
        let cache = HotCache {
            per_shard: 2,
            ..cache
        };
        cache.insert(digest(1), 1, 0);
        cache.insert(digest(2), 2, SEC);
        // 1 is hit later than 2, so 2 is the one to go.
        assert_eq!(cache.get(&digest(1), 5 * SEC), Some(1));
        cache.insert(digest(3), 3, 6 * SEC);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&digest(2), 6 * SEC), None);
        assert_eq!(cache.get(&digest(1), 6 * SEC), Some(1));
        // Later, 1 and 3 have expired: both go before anything live would.
        cache.insert(digest(4), 4, 16 * SEC + 1);
        cache.insert(digest(5), 5, 16 * SEC + 1);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&digest(4), 17 * SEC), Some(4));
        assert_eq!(cache.get(&digest(5), 17 * SEC), Some(5));
    }

    #[test]
    fn replacing_an_entry_never_evicts_another() {
        let cache = HotCache::new(1, Duration::from_secs(10));
        cache.insert(digest(1), 1, 0);
        cache.insert(digest(1), 2, SEC);
        assert_eq!(cache.get(&digest(1), SEC), Some(2));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn capacity_bounds_the_whole_cache() {
        let cache = HotCache::new(256, Duration::from_secs(10));
        for n in 0..2000 {
            cache.insert(digest(n), n, 0);
        }
        assert!(cache.len() <= 256, "{} entries", cache.len());
        cache.clear();
        assert_eq!(cache.len(), 0);
    }
}
