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
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
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
        let expires = Instant::now() + ttl;
        self.shard(key)
            .insert(key.to_string(), Entry { value, expires });
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
