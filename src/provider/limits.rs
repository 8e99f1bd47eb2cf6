//! Bounded provider state: a per-client token bucket for the grants a client can call at
//! machine speed (`client_credentials`, `password`), kept in the provider's store so every
//! replica shares it; and a byte budget for the state tokens leave in the store, so that
//! tokens can never take the room sessions and login flows need.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

use super::errors::OAuthError;
use super::Provider;
use crate::session::now_unix;
use crate::store::{Store, StoreError};

/// `rateLimit` of an OIDC app: requests per second, and how many may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// Milli-tokens in one token: the bucket's level is kept in thousandths.
const MILLI: u64 = 1000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The bucket as stored: `<milli-tokens>:<unix ms of the last take>`.
fn encode(level: u64, at: u64) -> Bytes {
    Bytes::from(format!("{level}:{at}"))
}

fn decode(raw: &[u8]) -> Option<(u64, u64)> {
    let (level, at) = std::str::from_utf8(raw).ok()?.split_once(':')?;
    Some((level.parse().ok()?, at.parse().ok()?))
}

impl RateLimit {
    fn capacity(&self) -> u64 {
        u64::from(self.burst.max(1)) * MILLI
    }

    /// The bucket's level at `now`, refilled since `at` (a clock that went back refills
    /// nothing).
    fn refilled(&self, level: u64, at: u64, now: u64) -> u64 {
        let gained = now.saturating_sub(at) * u64::from(self.per_second);
        level.saturating_add(gained).min(self.capacity())
    }

    /// Whole seconds until one token is back, from `level`.
    fn wait(&self, level: u64) -> u64 {
        let missing = MILLI.saturating_sub(level);
        missing
            .div_ceil(u64::from(self.per_second.max(1)))
            .div_ceil(1000)
            .max(1)
    }

    /// How long an untouched bucket lives: until it is full again.
    fn ttl(&self) -> Duration {
        Duration::from_secs(
            u64::from(self.burst.max(1)).div_ceil(u64::from(self.per_second.max(1))) + 1,
        )
    }

    /// Takes one token from the bucket at `key`: `Ok(None)` when granted, `Ok(Some(s))` when
    /// the bucket is empty for `s` more seconds. Atomic through the store's compare-and-set,
    /// so replicas sharing a store share the bucket; a bucket that stays contended for a few
    /// attempts refuses (fails closed).
    pub async fn take(&self, store: &dyn Store, key: &str) -> Result<Option<u64>, StoreError> {
        for _ in 0..4 {
            let now = now_ms();
            let Some(raw) = store.get(key).await? else {
                let level = self.capacity() - MILLI;
                if store
                    .put_if_absent(key, encode(level, now), self.ttl())
                    .await?
                {
                    return Ok(None);
                }
                continue;
            };
            // An unreadable bucket is taken as empty: it is rewritten by the next take.
            let level = decode(&raw).map_or(0, |(level, at)| self.refilled(level, at, now));
            if level < MILLI {
                if decode(&raw).is_none() {
                    store.put(key, encode(0, now), self.ttl()).await?;
                }
                return Ok(Some(self.wait(level)));
            }
            if store
                .compare_and_set(key, &raw, encode(level - MILLI, now), self.ttl())
                .await?
            {
                return Ok(None);
            }
        }
        Ok(Some(1))
    }
}

/// What one store entry costs beyond its key and value (the memory store's own estimate of
/// its map slot, headers and allocator rounding).
const ENTRY_OVERHEAD: usize = 96;
/// Expiries are counted in slots of this many seconds.
const SLOT_SECONDS: u64 = 16;

/// The bytes of token state this process wrote and that has not expired yet, against a
/// budget. Entries are counted by expiry slot; deletions before expiry are not subtracted,
/// so the count errs on the full side.
#[derive(Debug)]
pub struct StateBudget {
    max_bytes: usize,
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    used: usize,
    /// Bytes by the slot their entries expire in (the slot's end, unix seconds).
    by_expiry: BTreeMap<u64, usize>,
}

impl Slots {
    fn expire(&mut self, now: u64) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if *entry.key() > now {
                break;
            }
            self.used -= entry.remove();
        }
    }

    fn add(&mut self, bytes: usize, ttl: Duration, now: u64) {
        let end = (now + ttl.as_secs()).div_ceil(SLOT_SECONDS) * SLOT_SECONDS;
        *self.by_expiry.entry(end).or_default() += bytes;
        self.used += bytes;
    }
}

pub fn entry_cost(key: &str, value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

impl StateBudget {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            slots: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `bytes` living `ttl` if they fit in the budget; `false` (nothing counted) if not.
    pub fn charge(&self, bytes: usize, ttl: Duration) -> bool {
        let now = now_unix();
        let mut slots = self.lock();
        slots.expire(now);
        if slots.used + bytes > self.max_bytes {
            return false;
        }
        slots.add(bytes, ttl, now);
        true
    }

    /// Counts `bytes` whatever the budget says (revocations are never refused).
    pub fn force(&self, bytes: usize, ttl: Duration) {
        let now = now_unix();
        let mut slots = self.lock();
        slots.expire(now);
        slots.add(bytes, ttl, now);
    }

    /// Bytes counted now.
    pub fn used(&self) -> usize {
        let mut slots = self.lock();
        slots.expire(now_unix());
        slots.used
    }

    /// Seconds until the oldest counted bytes expire (a `Retry-After` for a full budget).
    fn next_expiry(&self) -> u64 {
        let now = now_unix();
        let slots = self.lock();
        slots
            .by_expiry
            .keys()
            .next()
            .map_or(1, |end| end.saturating_sub(now).max(1))
    }
}

impl Provider {
    /// Writes token state (records of opaque tokens, grants, refresh tokens) within the
    /// provider's byte budget: a full budget refuses the token (503 with `Retry-After`), so
    /// tokens never take the room of sessions and login flows.
    pub async fn put_state(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), OAuthError> {
        if !self.state.charge(entry_cost(key, &value), ttl) {
            tracing::warn!(
                budget_bytes = self.state.max_bytes,
                "OIDC provider: token state budget full, token refused"
            );
            let mut e = OAuthError::temporarily_unavailable(
                "the provider holds as many tokens as it may; try again later",
            );
            e.retry_after = Some(self.state.next_expiry().min(3600));
            e.limit = Some(super::errors::Limit::StateBudget);
            return Err(e);
        }
        self.store.put(key, value, ttl).await?;
        Ok(())
    }

    /// Writes a revocation: counted in the budget but never refused, as failing to revoke
    /// would fail open.
    pub async fn put_revocation(&self, key: &str, ttl: Duration) -> Result<(), OAuthError> {
        self.put_counted(key, Bytes::from_static(b"1"), ttl).await
    }

    /// Writes state that completes a token already issued (a redeemed code's marker, a
    /// rotation's answer): counted in the budget, never refused.
    pub async fn put_counted(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), OAuthError> {
        self.state.force(entry_cost(key, &value), ttl);
        self.store.put(key, value, ttl).await?;
        Ok(())
    }

    /// Bytes of token state counted against the budget now.
    pub fn state_bytes(&self) -> usize {
        self.state.used()
    }

    /// Takes a token from `client`'s bucket, if it has a rate limit; an empty bucket is
    /// answered 429 with `Retry-After` and an OAuth error body.
    pub async fn rate_limit(&self, client: &super::Client) -> Result<(), OAuthError> {
        let Some(limit) = &client.rate_limit else {
            return Ok(());
        };
        let key = format!("oidc:bucket:{}", super::grants::hash(&client.id));
        match limit.take(self.store.as_ref(), &key).await? {
            None => Ok(()),
            Some(wait) => Err(OAuthError::rate_limited(wait)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn bucket_grants_its_burst_then_refuses_with_the_wait() {
        let store = MemoryStore::new();
        let limit = RateLimit {
            per_second: 2,
            burst: 3,
        };
        for _ in 0..3 {
            assert_eq!(limit.take(&store, "b").await.unwrap(), None);
        }
        assert_eq!(limit.take(&store, "b").await.unwrap(), Some(1));
        // another bucket is independent
        assert_eq!(limit.take(&store, "c").await.unwrap(), None);
        // refills at the rate: after 600 ms one token is back
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(limit.take(&store, "b").await.unwrap(), None);
        assert_eq!(limit.take(&store, "b").await.unwrap(), Some(1));
        // garbage in the bucket's place is taken as empty (fails closed), then repaired
        store
            .put("d", Bytes::from_static(b"junk"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(limit.take(&store, "d").await.unwrap(), Some(1));
    }

    #[test]
    fn bucket_arithmetic() {
        let l = RateLimit {
            per_second: 10,
            burst: 5,
        };
        assert_eq!(l.capacity(), 5000);
        assert_eq!(l.refilled(0, 1000, 1100), 1000);
        assert_eq!(
            l.refilled(0, 1000, 900),
            0,
            "a clock going back refills nothing"
        );
        assert_eq!(l.refilled(4500, 0, 10_000), 5000, "never above the burst");
        assert_eq!(l.wait(0), 1);
        let slow = RateLimit {
            per_second: 1,
            burst: 1,
        };
        assert_eq!(slow.wait(0), 1);
        assert_eq!(slow.ttl(), Duration::from_secs(2));
    }

    #[test]
    fn budget_refuses_past_its_bytes_and_frees_on_expiry() {
        let b = StateBudget::new(1000);
        assert!(b.charge(600, Duration::from_secs(60)));
        assert!(!b.charge(500, Duration::from_secs(60)));
        assert_eq!(b.used(), 600);
        b.force(500, Duration::from_secs(60));
        assert_eq!(b.used(), 1100, "revocations are counted, never refused");
        assert!(!b.charge(1, Duration::from_secs(1)));
        // expired slots are freed
        let mut slots = b.lock();
        let now = now_unix() + 3600;
        slots.expire(now);
        assert_eq!(slots.used, 0);
    }
}
