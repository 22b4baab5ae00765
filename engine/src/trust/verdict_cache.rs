//! Per-worker bounded cache of certificate verification verdicts (single-threaded, no locks).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What a verdict is about: the leaf certificate and the intermediates presented with it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VerdictKey {
    /// SHA-256 of the leaf certificate's DER.
    pub leaf_sha256: [u8; 32],
    /// Hash of the intermediates presented (computed by the caller).
    pub chain: u64,
}

/// One cached verdict.
#[derive(Debug)]
struct Slot<V> {
    key: VerdictKey,
    value: V,
    /// `None` = no bound (only when `now + ttl` overflowed and there was no not-after).
    expires: Option<Instant>,
    generation: u64,
    /// Second-chance bit: set on every hit, cleared when the clock hand passes.
    referenced: bool,
}

impl<V> Slot<V> {
    fn is_live(&self, now: Instant, generation: u64) -> bool {
        self.generation == generation && self.expires.is_none_or(|e| now < e)
    }
}

/// A bounded cache of verification verdicts for one worker thread.
///
/// An entry is a hit only for the same `generation` (bumped on every trust configuration
/// reload) and before its expiry, `min(inserted + ttl, certificate not-after)`. A lookup
/// that finds a dead entry removes it.
///
/// Eviction, when an insert finds the cache full:
/// 1. if at least `capacity` new keys were inserted since the last purge, one O(n) pass
///    drops every dead entry (expired, or of another generation than the inserter's) —
///    amortised O(1) per insert;
/// 2. if still full, a CLOCK (second-chance) sweep evicts the first entry under the hand
///    that is dead or has not been hit since the hand last passed it; entries that were
///    hit get their bit cleared and are spared once. New entries start un-hit, so a flood
///    of one-off certificates evicts itself before it evicts verdicts that are being reused.
///    Each step either evicts or clears a bit set by an earlier hit: amortised O(1), at most
///    `capacity + 1` steps.
///
/// The index uses std's keyed `RandomState`: keys derive from attacker-minted certificates,
/// which could otherwise be ground into a single hash bucket.
#[derive(Debug)]
pub struct VerdictCache<V> {
    index: HashMap<VerdictKey, usize>,
    slots: Vec<Slot<V>>,
    hand: usize,
    capacity: usize,
    ttl: Duration,
    inserts_since_purge: usize,
}

impl<V: Clone> VerdictCache<V> {
    /// A cache holding at most `capacity` verdicts (0 disables caching), each for at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        VerdictCache {
            index: HashMap::new(),
            slots: Vec::new(),
            hand: 0,
            capacity,
            ttl,
            inserts_since_purge: 0,
        }
    }

    /// A hit only if the entry's generation equals `generation` and `now` < its expiry.
    pub fn get(&mut self, key: &VerdictKey, now: Instant, generation: u64) -> Option<V> {
        let i = *self.index.get(key)?;
        let slot = &mut self.slots[i];
        if slot.is_live(now, generation) {
            slot.referenced = true;
            Some(slot.value.clone())
        } else {
            self.remove_at(i);
            None
        }
    }

    /// Stores a verdict. Expiry = min(now + ttl, not_after), where `not_after` is the
    /// certificate's not-after as an `Instant` (`None` = no bound). A verdict that would
    /// already be expired is not stored (and replaces nothing but a same-key entry, which
    /// it removes).
    pub fn insert(
        &mut self,
        key: VerdictKey,
        value: V,
        now: Instant,
        not_after: Option<Instant>,
        generation: u64,
    ) {
        if self.capacity == 0 {
            return;
        }
        let expires = match (now.checked_add(self.ttl), not_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if expires.is_some_and(|e| e <= now) {
            if let Some(&i) = self.index.get(&key) {
                self.remove_at(i);
            }
            return;
        }
        let slot = Slot {
            key,
            value,
            expires,
            generation,
            referenced: false,
        };
        if let Some(&i) = self.index.get(&key) {
            self.slots[i] = slot;
            return;
        }
        self.inserts_since_purge += 1;
        if self.slots.len() >= self.capacity && self.inserts_since_purge > self.capacity {
            self.purge(now, generation);
        }
        if self.slots.len() < self.capacity {
            self.index.insert(key, self.slots.len());
            self.slots.push(slot);
            return;
        }
        let victim = self.clock_victim(now, generation);
        let old = std::mem::replace(&mut self.slots[victim], slot);
        self.index.remove(&old.key);
        self.index.insert(key, victim);
    }

    /// Number of verdicts held (live or not yet found dead).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no verdict is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The maximum number of verdicts held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Drops every verdict.
    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.hand = 0;
        self.inserts_since_purge = 0;
    }

    /// Removes slot `i` in O(1) by moving the last slot into its place.
    fn remove_at(&mut self, i: usize) {
        let removed = self.slots.swap_remove(i);
        self.index.remove(&removed.key);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.key, i);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }

    /// Drops every entry that is dead for an inserter at `now` with `generation`. O(n).
    fn purge(&mut self, now: Instant, generation: u64) {
        self.inserts_since_purge = 0;
        self.slots.retain(|s| s.is_live(now, generation));
        self.index.clear();
        for (i, s) in self.slots.iter().enumerate() {
            self.index.insert(s.key, i);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }

    /// Index of the slot to overwrite; the cache is full and non-empty.
    fn clock_victim(&mut self, now: Instant, generation: u64) -> usize {
        loop {
            let i = self.hand;
            self.hand = (i + 1) % self.slots.len();
            let slot = &mut self.slots[i];
            if !slot.referenced || !slot.is_live(now, generation) {
                return i;
            }
            slot.referenced = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn key(n: u32) -> VerdictKey {
        let mut leaf_sha256 = [0u8; 32];
        leaf_sha256[..4].copy_from_slice(&n.to_be_bytes());
        VerdictKey {
            leaf_sha256,
            chain: u64::from(n) * 3,
        }
    }

    #[test]
    fn hit_after_insert() {
        let now = Instant::now();
        let mut c = VerdictCache::new(8, TTL);
        assert!(c.is_empty());
        assert_eq!(c.get(&key(1), now, 1), None);
        c.insert(key(1), "ok", now, None, 1);
        assert_eq!(c.get(&key(1), now + Duration::from_secs(1), 1), Some("ok"));
        assert_eq!(c.len(), 1);
        // Same leaf, other intermediates: a different key.
        let other_chain = VerdictKey {
            chain: 999,
            ..key(1)
        };
        assert_eq!(c.get(&other_chain, now, 1), None);
    }

    #[test]
    fn insert_same_key_replaces() {
        let now = Instant::now();
        let mut c = VerdictCache::new(8, TTL);
        c.insert(key(1), 1, now, None, 1);
        c.insert(key(1), 2, now, None, 1);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&key(1), now, 1), Some(2));
    }

    #[test]
    fn miss_on_other_generation_and_entry_dropped() {
        let now = Instant::now();
        let mut c = VerdictCache::new(8, TTL);
        c.insert(key(1), true, now, None, 1);
        c.insert(key(2), true, now, None, 1);
        assert_eq!(c.get(&key(1), now, 2), None);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&key(1), now, 1), None, "stale entry was removed");
        assert_eq!(
            c.get(&key(2), now, 1),
            Some(true),
            "index fixed after swap_remove"
        );
    }

    #[test]
    fn expires_by_ttl() {
        let now = Instant::now();
        let mut c = VerdictCache::new(8, Duration::from_secs(10));
        c.insert(key(1), 'v', now, Some(now + Duration::from_secs(3600)), 1);
        assert_eq!(c.get(&key(1), now + Duration::from_secs(9), 1), Some('v'));
        assert_eq!(c.get(&key(1), now + Duration::from_secs(10), 1), None);
        assert!(c.is_empty());
    }

    #[test]
    fn expires_by_not_after() {
        let now = Instant::now();
        let mut c = VerdictCache::new(8, TTL);
        c.insert(key(1), 'v', now, Some(now + Duration::from_secs(5)), 1);
        assert_eq!(c.get(&key(1), now + Duration::from_secs(4), 1), Some('v'));
        assert_eq!(c.get(&key(1), now + Duration::from_secs(5), 1), None);
    }

    #[test]
    fn already_expired_verdict_is_not_stored_and_replaces_old() {
        let now = Instant::now() + Duration::from_secs(100);
        let mut c = VerdictCache::new(8, TTL);
        c.insert(key(1), 1, now, None, 1);
        c.insert(key(1), 2, now, Some(now - Duration::from_secs(1)), 1);
        assert!(c.is_empty());
        c.insert(key(2), 2, now, Some(now), 1);
        assert_eq!(c.get(&key(2), now, 1), None);
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let now = Instant::now();
        let mut c = VerdictCache::new(0, TTL);
        c.insert(key(1), 1, now, None, 1);
        assert_eq!(c.len(), 0);
        assert_eq!(c.get(&key(1), now, 1), None);
    }

    #[test]
    fn capacity_bound_holds_under_many_inserts() {
        let start = Instant::now();
        let mut c = VerdictCache::new(64, TTL);
        for n in 0..20_000u32 {
            let now = start + Duration::from_millis(u64::from(n));
            c.insert(key(n), n, now, None, u64::from(n / 5000));
            assert!(c.len() <= 64);
            assert_eq!(c.get(&key(n), now, u64::from(n / 5000)), Some(n));
            if n % 7 == 0 {
                // Hits on older keys exercise the second-chance bits.
                let _ = c.get(&key(n / 2), now, u64::from(n / 5000));
            }
        }
        assert_eq!(c.len(), 64);
        assert_eq!(c.index.len(), c.slots.len());
        for (i, s) in c.slots.iter().enumerate() {
            assert_eq!(c.index[&s.key], i);
        }
    }

    #[test]
    fn dead_entries_are_dropped_before_live_ones() {
        let now = Instant::now();
        let mut c = VerdictCache::new(3, TTL);
        c.insert(key(1), 1, now, Some(now + Duration::from_secs(1)), 1);
        c.insert(key(2), 2, now, None, 1);
        c.insert(key(3), 3, now, None, 1);
        let later = now + Duration::from_secs(2);
        c.insert(key(4), 4, later, None, 1);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&key(2), later, 1), Some(2));
        assert_eq!(c.get(&key(3), later, 1), Some(3));
        assert_eq!(c.get(&key(4), later, 1), Some(4));

        // A new generation: old-generation entries are dead for the inserter, so the clock
        // evicts them even though they were just hit.
        for n in 5..=8 {
            c.insert(key(n), n, later, None, 2);
        }
        assert_eq!(c.len(), 3);
        for n in 6..=8 {
            assert_eq!(c.get(&key(n), later, 2), Some(n));
        }
    }

    #[test]
    fn second_chance_spares_recently_hit_entries() {
        let now = Instant::now();
        let mut c = VerdictCache::new(2, TTL);
        c.insert(key(1), 1, now, None, 1);
        c.insert(key(2), 2, now, None, 1);
        assert_eq!(c.get(&key(1), now, 1), Some(1));
        c.insert(key(3), 3, now, None, 1);
        assert_eq!(c.get(&key(1), now, 1), Some(1), "hit entry spared");
        assert_eq!(c.get(&key(2), now, 1), None, "cold entry evicted");
        assert_eq!(c.get(&key(3), now, 1), Some(3));
    }

    #[test]
    fn clear_empties() {
        let now = Instant::now();
        let mut c = VerdictCache::new(4, TTL);
        c.insert(key(1), (), now, None, 1);
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.get(&key(1), now, 1), None);
        assert_eq!(c.capacity(), 4);
    }
}
