//! In-memory store: one process, zero setup. Sharded maps keep lock hold times short;
//! expired entries are dropped on access and by a periodic sweep.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Store, StoreError};

const SHARDS: usize = 32;
/// Default bound on live entries. Login flows are created by anonymous requests, so without
/// a bound a flood of them could exhaust memory; past it, writes of *new* keys fail (503)
/// instead, and existing sessions keep working.
pub const DEFAULT_MAX_ENTRIES: usize = 2_000_000;

#[derive(Debug)]
struct Entry {
    value: Bytes,
    expires: Instant,
}

type Shard = Mutex<HashMap<String, Entry>>;

#[derive(Debug)]
pub struct MemoryStore {
    shards: Arc<Vec<Shard>>,
    hasher: RandomState,
    per_shard: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_max_entries(DEFAULT_MAX_ENTRIES)
    }

    /// A store holding at most about `max` live entries.
    pub fn with_max_entries(max: usize) -> Self {
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
                        lock(shard).retain(|_, e| e.expires > now);
                    }
                }
            });
        }
        Self {
            shards,
            hasher: RandomState::new(),
            per_shard: max.div_ceil(SHARDS).max(1),
        }
    }

    /// Makes room for a write of `key`: overwriting is always fine; a new key needs a free
    /// slot, after dropping expired entries if the shard is full.
    fn room(
        &self,
        map: &mut HashMap<String, Entry>,
        key: &str,
        now: Instant,
    ) -> Result<(), StoreError> {
        if map.len() < self.per_shard || map.contains_key(key) {
            return Ok(());
        }
        map.retain(|_, e| e.expires > now);
        if map.len() < self.per_shard {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "the in-memory store is full".into(),
            ))
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<String, Entry>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        lock(&self.shards[i])
    }
}

/// A poisoned shard only means another thread panicked mid-update of a plain map; the data
/// is still a valid map, so keep serving.
fn lock(shard: &Shard) -> MutexGuard<'_, HashMap<String, Entry>> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

fn live(map: &mut HashMap<String, Entry>, key: &str, now: Instant) -> bool {
    match map.get(key) {
        Some(e) if e.expires > now => true,
        Some(_) => {
            map.remove(key);
            false
        }
        None => false,
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let mut map = self.shard(key);
        let now = Instant::now();
        Ok(live(&mut map, key, now).then(|| map[key].value.clone()))
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut map = self.shard(key);
        self.room(&mut map, key, now)?;
        map.insert(
            key.to_string(),
            Entry {
                value,
                expires: now + ttl,
            },
        );
        Ok(())
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut map = self.shard(key);
        if live(&mut map, key, now) {
            return Ok(false);
        }
        self.room(&mut map, key, now)?;
        map.insert(
            key.to_string(),
            Entry {
                value,
                expires: now + ttl,
            },
        );
        Ok(true)
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut map = self.shard(key);
        let was_live = live(&mut map, key, now);
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
        if !live(&mut map, key, now) || map[key].value.as_ref() != expected {
            return Ok(false);
        }
        map.insert(
            key.to_string(),
            Entry {
                value: new,
                expires: now + ttl,
            },
        );
        Ok(true)
    }

    async fn increment(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        let now = Instant::now();
        let mut map = self.shard(key);
        let current = if live(&mut map, key, now) {
            std::str::from_utf8(&map[key].value)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        } else {
            0
        };
        if current == 0 {
            self.room(&mut map, key, now)?;
        }
        let next = current + 1;
        let expires = map
            .get(key)
            .map(|e| e.expires)
            .filter(|_| current > 0)
            .unwrap_or(now + ttl);
        map.insert(
            key.to_string(),
            Entry {
                value: Bytes::from(next.to_string()),
                expires,
            },
        );
        Ok(next)
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
}
