//! In-memory store: one process, zero setup. Sharded maps keep lock hold times short;
//! expired entries are dropped on access and by a periodic sweep.
//!
//! It is bounded twice: by live entries and by **bytes** (keys + values + a fixed
//! per-entry overhead), each split evenly over the shards. Login flows and parked
//! authorization requests — state that anonymous requests create — are written with
//! `put_evictable`: when a write would pass a bound, evictable entries are dropped,
//! soonest-expiring first, until it fits. Sessions and counters are never evicted; only when
//! they alone fill the store is a write refused (503). So a flood of anonymous requests can
//! push out other anonymous state but never make a real login fail.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Store, StoreError};

const SHARDS: usize = 32;
/// Default bound on live entries.
pub const DEFAULT_MAX_ENTRIES: usize = 2_000_000;
/// Default byte budget (`session.memoryStore.maxMiB`: 256).
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024 * 1024;
/// What one entry costs beyond its key and value bytes: the map slot, the `String` and
/// `Bytes` headers, the expiry and the allocator's rounding (measured order of magnitude).
const ENTRY_OVERHEAD: usize = 96;
/// An eviction frees this much more than needed (an eighth of the shard's budget), so a
/// flood at the bound pays for one sort per many writes, not one per write.
const EVICTION_SLACK_DIVISOR: usize = 8;

#[derive(Debug)]
struct Entry {
    value: Bytes,
    expires: Instant,
    evictable: bool,
}

fn cost(key: &str, value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

/// One shard: its entries and the bytes they cost (kept exact on every change).
#[derive(Debug, Default)]
struct Map {
    entries: HashMap<String, Entry>,
    bytes: usize,
}

impl Map {
    fn insert(&mut self, key: &str, entry: Entry) {
        self.bytes += cost(key, &entry.value);
        if let Some(old) = self.entries.insert(key.to_string(), entry) {
            self.bytes -= cost(key, &old.value);
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.bytes -= cost(key, &e.value);
        Some(e)
    }

    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        let mut freed = 0;
        self.entries.retain(|k, e| {
            let kept = keep(e);
            if !kept {
                freed += cost(k, &e.value);
            }
            kept
        });
        self.bytes -= freed;
    }

    /// `true` when `key` is present and not expired (an expired one is removed).
    fn live(&mut self, key: &str, now: Instant) -> bool {
        match self.entries.get(key) {
            Some(e) if e.expires > now => true,
            Some(_) => {
                self.remove(key);
                false
            }
            None => false,
        }
    }
}

type Shard = Mutex<Map>;

/// The memory store's byte budget, shared with the `StorePool` so the configuration in
/// force can set it (`session.memoryStore.maxMiB`) without replacing the store — sessions
/// survive a reload.
#[derive(Debug, Clone)]
pub struct MemoryBudget(Arc<AtomicUsize>);

impl MemoryBudget {
    pub fn set(&self, max_bytes: usize) {
        self.0.store(max_bytes.max(SHARDS), Ordering::Relaxed);
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct MemoryStore {
    shards: Arc<Vec<Shard>>,
    hasher: RandomState,
    per_shard: usize,
    max_bytes: MemoryBudget,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_MAX_ENTRIES, DEFAULT_MAX_BYTES)
    }

    /// A store holding at most about `max` live entries.
    pub fn with_max_entries(max: usize) -> Self {
        Self::with_limits(max, DEFAULT_MAX_BYTES)
    }

    /// A store holding at most about `max_entries` live entries and `max_bytes` bytes.
    pub fn with_limits(max_entries: usize, max_bytes: usize) -> Self {
        let shards: Arc<Vec<Shard>> = Arc::new((0..SHARDS).map(|_| Mutex::default()).collect());
        // The sweeper holds only a weak reference: it ends when the store is dropped.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let weak: Weak<Vec<Shard>> = Arc::downgrade(&shards);
            handle.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(30));
                loop {
                    tick.tick().await;
                    let Some(shards) = weak.upgrade() else { break };
                    let now = Instant::now();
                    for shard in shards.iter() {
                        lock(shard).retain(|e| e.expires > now);
                    }
                }
            });
        }
        let budget = MemoryBudget(Arc::new(AtomicUsize::new(0)));
        budget.set(max_bytes);
        Self {
            shards,
            hasher: RandomState::new(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
            max_bytes: budget,
        }
    }

    /// The handle of this store's byte budget.
    pub fn budget(&self) -> MemoryBudget {
        self.max_bytes.clone()
    }

    /// Bytes in use now (keys + values + per-entry overhead), all shards together.
    pub fn bytes_used(&self) -> usize {
        self.shards.iter().map(|s| lock(s).bytes).sum()
    }

    /// Whether writing `new_cost` bytes at `key` keeps the shard `slack` (entries, bytes)
    /// inside both bounds. Overwriting a key with no more bytes always fits: a session that
    /// exists keeps working whatever else happens.
    fn fits(&self, map: &Map, key: &str, new_cost: usize, slack: (usize, usize)) -> bool {
        let byte_budget = self.max_bytes.get().div_ceil(SHARDS);
        let replaced = map.entries.get(key).map(|e| cost(key, &e.value));
        if replaced.is_some_and(|r| r >= new_cost) {
            return true;
        }
        let bytes = map.bytes - replaced.unwrap_or(0) + new_cost;
        let count = map.entries.len() + usize::from(replaced.is_none());
        count + slack.0 <= self.per_shard && bytes + slack.1 <= byte_budget
    }

    /// Makes room for writing `value` at `key`: fine when both bounds hold afterwards;
    /// otherwise expired entries are dropped, then evictable ones (soonest-expiring first).
    fn room(&self, map: &mut Map, key: &str, value: &[u8], now: Instant) -> Result<(), StoreError> {
        let new_cost = cost(key, value);
        if self.fits(map, key, new_cost, (0, 0)) {
            return Ok(());
        }
        map.retain(|e| e.expires > now);
        if self.fits(map, key, new_cost, (0, 0)) {
            return Ok(());
        }
        // Evict anonymous state, soonest expiry first, down to the bounds less some slack.
        let mut victims: Vec<(Instant, String)> = map
            .entries
            .iter()
            .filter(|(k, e)| e.evictable && k.as_str() != key)
            .map(|(k, e)| (e.expires, k.clone()))
            .collect();
        victims.sort_unstable();
        let slack = (
            self.per_shard / EVICTION_SLACK_DIVISOR,
            self.max_bytes.get().div_ceil(SHARDS) / EVICTION_SLACK_DIVISOR,
        );
        let mut evicted = 0usize;
        for (_, victim) in victims {
            if self.fits(map, key, new_cost, slack) {
                break;
            }
            map.remove(&victim);
            evicted += 1;
        }
        if evicted > 0 {
            tracing::debug!(
                evicted,
                "memory store at its bound: evicted anonymous entries"
            );
        }
        if self.fits(map, key, new_cost, (0, 0)) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "the in-memory store is full".into(),
            ))
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Map> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        lock(&self.shards[i])
    }

    fn write(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
        evictable: bool,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut map = self.shard(key);
        self.room(&mut map, key, &value, now)?;
        map.insert(
            key,
            Entry {
                value,
                expires: now + ttl,
                evictable,
            },
        );
        Ok(())
    }
}

/// A poisoned shard only means another thread panicked mid-update of a plain map; the data
/// is still a valid map, so keep serving.
fn lock(shard: &Shard) -> MutexGuard<'_, Map> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

fn counter(e: &Entry) -> u64 {
    std::str::from_utf8(&e.value)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let mut map = self.shard(key);
        let now = Instant::now();
        Ok(map.live(key, now).then(|| map.entries[key].value.clone()))
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), StoreError> {
        self.write(key, value, ttl, false)
    }

    async fn put_evictable(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.write(key, value, ttl, true)
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut map = self.shard(key);
        if map.live(key, now) {
            return Ok(false);
        }
        self.room(&mut map, key, &value, now)?;
        map.insert(
            key,
            Entry {
                value,
                expires: now + ttl,
                evictable: false,
            },
        );
        Ok(true)
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut map = self.shard(key);
        let was_live = map.live(key, now);
        map.remove(key);
        Ok(was_live)
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let now = Instant::now();
        let mut map = self.shard(key);
        Ok(map.remove(key).filter(|e| e.expires > now).map(|e| e.value))
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: &[u8],
        new: Bytes,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut map = self.shard(key);
        if !map.live(key, now) || map.entries[key].value.as_ref() != expected {
            return Ok(false);
        }
        self.room(&mut map, key, &new, now)?;
        let evictable = map.entries.get(key).is_some_and(|e| e.evictable);
        map.insert(
            key,
            Entry {
                value: new,
                expires: now + ttl,
                evictable,
            },
        );
        Ok(true)
    }

    async fn increment(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        let now = Instant::now();
        let mut map = self.shard(key);
        let current = if map.live(key, now) {
            counter(&map.entries[key])
        } else {
            0
        };
        let next = current + 1;
        let value = Bytes::from(next.to_string());
        if current == 0 {
            self.room(&mut map, key, &value, now)?;
        }
        let expires = map
            .entries
            .get(key)
            .map(|e| e.expires)
            .filter(|_| current > 0)
            .unwrap_or(now + ttl);
        map.insert(
            key,
            Entry {
                value,
                expires,
                evictable: false,
            },
        );
        Ok(next)
    }

    async fn decrement(&self, key: &str) -> Result<u64, StoreError> {
        let now = Instant::now();
        let mut map = self.shard(key);
        if !map.live(key, now) {
            return Ok(0);
        }
        let current = counter(&map.entries[key]);
        if current <= 1 {
            map.remove(key);
            return Ok(0);
        }
        let expires = map.entries[key].expires;
        map.insert(
            key,
            Entry {
                value: Bytes::from((current - 1).to_string()),
                expires,
                evictable: false,
            },
        );
        Ok(current - 1)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_store_refuses_new_keys_but_keeps_serving_old_ones() {
        let s = MemoryStore::with_max_entries(SHARDS); // one entry per shard
        let ttl = Duration::from_secs(60);
        let mut refused = 0;
        for i in 0..200 {
            if s.put(&format!("k{i}"), Bytes::from_static(b"v"), ttl)
                .await
                .is_err()
            {
                refused += 1;
            }
        }
        assert!(refused >= 200 - SHARDS, "{refused}");
        // overwriting an existing key still works
        let kept = (0..200)
            .map(|i| format!("k{i}"))
            .find(|k| {
                futures_util::FutureExt::now_or_never(s.get(k))
                    .unwrap()
                    .unwrap()
                    .is_some()
            })
            .unwrap();
        s.put(&kept, Bytes::from_static(b"w"), ttl).await.unwrap();
        assert_eq!(s.get(&kept).await.unwrap().as_deref(), Some(&b"w"[..]));
        // expired entries make room again
        let s = MemoryStore::with_max_entries(SHARDS);
        for i in 0..200 {
            let _ = s
                .put(
                    &format!("k{i}"),
                    Bytes::from_static(b"v"),
                    Duration::from_millis(10),
                )
                .await;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(s.put("fresh", Bytes::from_static(b"v"), ttl).await.is_ok());
    }

    #[tokio::test]
    async fn a_flood_of_evictable_entries_stays_in_the_byte_budget_and_never_blocks_sessions() {
        let budget = 1024 * 1024;
        let s = MemoryStore::with_limits(DEFAULT_MAX_ENTRIES, budget);
        let ttl = Duration::from_secs(600);
        let flow = Bytes::from(vec![b'x'; 2048]);
        // 20 MB of flows offered to a 1 MiB store: every write succeeds, the oldest go
        for i in 0..10_000 {
            s.put_evictable(&format!("flow:{i}"), flow.clone(), ttl)
                .await
                .unwrap();
            assert!(s.bytes_used() <= budget, "{} > {budget}", s.bytes_used());
        }
        assert!(
            s.get("flow:9999").await.unwrap().is_some(),
            "the newest is kept"
        );
        assert!(
            s.get("flow:0").await.unwrap().is_none(),
            "the oldest was evicted"
        );
        // sessions still get in, evicting flows
        for i in 0..50 {
            s.put(&format!("session:{i}"), Bytes::from(vec![b's'; 1000]), ttl)
                .await
                .unwrap();
        }
        assert!(s.bytes_used() <= budget);
        // sessions are never evicted: once they alone fill a shard, writes there are refused
        let mut refused = 0;
        for i in 50..2_000 {
            if s.put(&format!("session:{i}"), Bytes::from(vec![b's'; 1000]), ttl)
                .await
                .is_err()
            {
                refused += 1;
            }
        }
        assert!(refused > 0);
        for i in 0..50 {
            assert!(s.get(&format!("session:{i}")).await.unwrap().is_some());
        }
        assert!(s.bytes_used() <= budget);
    }

    #[tokio::test]
    async fn the_budget_can_be_changed_in_place() {
        let s = MemoryStore::with_limits(DEFAULT_MAX_ENTRIES, 1 << 30);
        let ttl = Duration::from_secs(60);
        s.budget().set(64 * 1024);
        for i in 0..1_000 {
            s.put_evictable(&format!("f{i}"), Bytes::from(vec![0; 500]), ttl)
                .await
                .unwrap();
        }
        assert!(s.bytes_used() <= 64 * 1024, "{}", s.bytes_used());
    }
}
