//! The state store: sessions, login flows, throttling counters (and later codes, refresh
//! token families, revocations). Its operations are the ones Redis offers atomically
//! (`GET`, `SET EX`, `SET NX`, `DEL`, `GETDEL`, `INCR`+`EXPIRE`, and compare-and-set by
//! script), so every backend behaves the same under concurrency.

#[doc(hidden)]
pub mod contract;
mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use self::redis::{RedisSettings, RedisStore, RedisTls};
pub use memory::MemoryStore;

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
    /// Health, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn memory_store_meets_contract() {
        contract::run(Arc::new(MemoryStore::new())).await;
    }
}
