//! The state store: sessions, login flows, throttling counters (and later codes, refresh
//! token families, revocations). Its operations are the ones Redis offers atomically
//! (`GET`, `SET EX`, `SET NX`, `DEL`, `GETDEL`, `INCR`+`EXPIRE`, and compare-and-set by
//! script), so every backend behaves the same under concurrency.

mod memory;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

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

    /// The contract every backend must meet; run against each.
    pub(crate) async fn contract(store: Arc<dyn Store>) {
        let ttl = Duration::from_secs(60);
        assert!(store.get("a").await.unwrap().is_none());
        store.put("a", Bytes::from_static(b"1"), ttl).await.unwrap();
        assert_eq!(store.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
        assert!(!store
            .put_if_absent("a", Bytes::from_static(b"2"), ttl)
            .await
            .unwrap());
        assert!(store
            .put_if_absent("b", Bytes::from_static(b"2"), ttl)
            .await
            .unwrap());
        assert!(!store
            .compare_and_set("a", b"x", Bytes::from_static(b"3"), ttl)
            .await
            .unwrap());
        assert!(store
            .compare_and_set("a", b"1", Bytes::from_static(b"3"), ttl)
            .await
            .unwrap());
        assert_eq!(store.take("a").await.unwrap().as_deref(), Some(&b"3"[..]));
        assert!(store.take("a").await.unwrap().is_none());
        assert!(store.delete("b").await.unwrap());
        assert!(!store.delete("b").await.unwrap());
        assert_eq!(store.increment("c", ttl).await.unwrap(), 1);
        assert_eq!(store.increment("c", ttl).await.unwrap(), 2);
        store
            .put("short", Bytes::from_static(b"x"), Duration::from_millis(30))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(store.get("short").await.unwrap().is_none());
        // only one of many concurrent takers wins
        store
            .put("once", Bytes::from_static(b"v"), ttl)
            .await
            .unwrap();
        let mut handles = Vec::new();
        for _ in 0..16 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.take("once").await.unwrap().is_some()
            }));
        }
        let mut wins = 0;
        for h in handles {
            wins += h.await.unwrap() as u32;
        }
        assert_eq!(wins, 1);
    }

    #[tokio::test]
    async fn memory_store_meets_contract() {
        contract(Arc::new(MemoryStore::new())).await;
    }
}
