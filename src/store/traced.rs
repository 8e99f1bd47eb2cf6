//! A `Store` wrapped so each operation is a tracing span (`store.get`, `store.put`, …) with
//! the backend's name. The spans are at debug level: with traces off and the usual `info`
//! log level they are disabled at the call site and cost a relaxed load each.
//! Keys are not recorded: some embed login-flow ids.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tracing::Instrument;

use super::{Store, StoreError};

#[derive(Debug)]
pub struct Traced<S> {
    inner: S,
    backend: &'static str,
}

impl<S: Store> Traced<S> {
    /// `backend` names the store in spans: `memory` or `redis`.
    pub fn new(inner: S, backend: &'static str) -> Self {
        Self { inner, backend }
    }
}

#[async_trait]
impl<S: Store> Store for Traced<S> {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let span = tracing::debug_span!("store.get", backend = self.backend);
        self.inner.get(key).instrument(span).await
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), StoreError> {
        let span = tracing::debug_span!("store.put", backend = self.backend);
        self.inner.put(key, value, ttl).instrument(span).await
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let span = tracing::debug_span!("store.put_if_absent", backend = self.backend);
        self.inner
            .put_if_absent(key, value, ttl)
            .instrument(span)
            .await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let span = tracing::debug_span!("store.delete", backend = self.backend);
        self.inner.delete(key).instrument(span).await
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let span = tracing::debug_span!("store.take", backend = self.backend);
        self.inner.take(key).instrument(span).await
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: &[u8],
        new: Bytes,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let span = tracing::debug_span!("store.compare_and_set", backend = self.backend);
        self.inner
            .compare_and_set(key, expected, new, ttl)
            .instrument(span)
            .await
    }

    async fn increment(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        let span = tracing::debug_span!("store.increment", backend = self.backend);
        self.inner.increment(key, ttl).instrument(span).await
    }

    async fn decrement(&self, key: &str) -> Result<u64, StoreError> {
        let span = tracing::debug_span!("store.decrement", backend = self.backend);
        self.inner.decrement(key).instrument(span).await
    }

    async fn put_evictable(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let span = tracing::debug_span!("store.put", backend = self.backend, evictable = true);
        self.inner
            .put_evictable(key, value, ttl)
            .instrument(span)
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let span = tracing::debug_span!("store.ping", backend = self.backend);
        self.inner.ping().instrument(span).await
    }
}
