//! The state store: sessions, login flows, throttling counters (and later codes, refresh
//! token families, revocations). Its operations are the ones Redis offers atomically
//! (`GET`, `SET EX`, `SET NX`, `DEL`, `GETDEL`, `INCR`+`EXPIRE`, and compare-and-set by
//! script), so every backend behaves the same under concurrency.

pub mod breaker;
pub mod client_cache;
#[doc(hidden)]
pub mod contract;
mod memory;
mod redis;
mod traced;

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use self::redis::{RedisSettings, RedisStore, RedisTls};
pub use breaker::BreakerSettings;
pub use client_cache::{CacheMetrics, ClientCacheSettings};
pub use memory::{MemoryBudget, MemoryStore};

/// The memory store's default byte budget in MiB (`session.memoryStore.maxMiB`).
pub fn memory_default_mib() -> u64 {
    (memory::DEFAULT_MAX_BYTES / (1024 * 1024)) as u64
}
pub use traced::Traced;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The value, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    /// Sets `key` (overwriting) to expire after `ttl`.
    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), StoreError>;
    /// Sets `key` only if it is absent; `true` if it was set.
    async fn put_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<bool, StoreError>;
    /// Removes `key`; `true` if it existed.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;
    /// Atomically reads and removes `key`: exactly one caller gets the value.
    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    /// Replaces the value only if it currently equals `expected`; `true` if replaced.
    async fn compare_and_set(
        &self,
        key: &str,
        expected: &[u8],
        new: Bytes,
        ttl: Duration,
    ) -> Result<bool, StoreError>;
    /// Adds one to a counter, creating it with `ttl` if absent; returns the new count.
    async fn increment(&self, key: &str, ttl: Duration) -> Result<u64, StoreError>;
    /// Takes one from a counter (a refund), keeping its expiry; never creates one, and
    /// removes it at zero. Returns the new count (0 when absent).
    async fn decrement(&self, key: &str) -> Result<u64, StoreError>;
    /// `put` for state that anonymous requests create (login flows, parked authorization
    /// requests): a bounded store may evict such entries, soonest-expiring first, to make
    /// room for others (sessions), so a flood of them can never fill it. Backends without a
    /// bound of their own store it like `put`.
    async fn put_evictable(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put(key, value, ttl).await
    }
    /// Health, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The stores of a process, kept across configuration reloads: the in-memory store (one per
/// process, so sessions survive a reload), and one Redis client per distinct connection
/// setting. A reload that keeps a cache's settings gets the same client and its live
/// connections; changed settings get a new client, and the old one is dropped with the last
/// runtime using it (the pool holds it weakly).
#[derive(Debug)]
pub struct StorePool {
    memory: Arc<dyn Store>,
    /// The memory store's byte budget, set by the configuration in force.
    memory_budget: MemoryBudget,
    redis: Mutex<Vec<(RedisSettings, Weak<dyn Store>)>>,
}

impl Default for StorePool {
    fn default() -> Self {
        Self::new()
    }
}

impl StorePool {
    /// A pool with a new memory store (its sweeper starts when inside a tokio runtime).
    pub fn new() -> Self {
        let memory = MemoryStore::new();
        Self {
            memory_budget: memory.budget(),
            memory: Arc::new(Traced::new(memory, "memory")),
            redis: Mutex::new(Vec::new()),
        }
    }

    /// The handle setting the memory store's byte budget (`session.memoryStore.maxMiB`).
    pub fn memory_budget(&self) -> MemoryBudget {
        self.memory_budget.clone()
    }

    /// The in-memory store (`default`).
    pub fn memory(&self) -> Arc<dyn Store> {
        self.memory.clone()
    }

    /// The Redis store for `settings`: the live one with equal settings, else a new client
    /// (which connects lazily), whose breaker and cache update `metrics`' series.
    pub fn redis(
        &self,
        settings: RedisSettings,
        metrics: &crate::telemetry::metrics::Metrics,
    ) -> Result<Arc<dyn Store>, String> {
        let mut clients = self.redis.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(store) = clients
            .iter()
            .find(|(s, _)| *s == settings)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(store);
        }
        let cached = settings.client_cache.enabled && settings.addresses.len() == 1;
        let series = metrics.store(&settings.name, cached);
        let store: Arc<dyn Store> = Arc::new(Traced::new(
            RedisStore::with_metrics(settings.clone(), series)?,
            "redis",
        ));
        clients.push((settings, Arc::downgrade(&store)));
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn memory_store_meets_contract() {
        contract::run(Arc::new(MemoryStore::new())).await;
    }

    fn settings(prefix: &str) -> RedisSettings {
        RedisSettings::new(
            "shared",
            vec![("127.0.0.1".into(), 6379)],
            prefix,
            Duration::from_millis(500),
        )
    }

    #[tokio::test]
    async fn pool_reuses_live_redis_clients_with_equal_settings() {
        let pool = StorePool::new();
        let m = crate::telemetry::metrics::Metrics::new();
        let a = pool.redis(settings("a:"), &m).unwrap();
        let again = pool.redis(settings("a:"), &m).unwrap();
        assert!(Arc::ptr_eq(&a, &again), "same settings, same client");
        let b = pool.redis(settings("b:"), &m).unwrap();
        assert!(!Arc::ptr_eq(&a, &b), "other settings, other client");
        let weak = Arc::downgrade(&a);
        drop((a, again));
        assert!(
            weak.upgrade().is_none(),
            "the pool does not keep clients alive"
        );
        assert!(Arc::ptr_eq(&pool.memory(), &pool.memory()));
    }
}
