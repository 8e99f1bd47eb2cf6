//! Opt-in caching of a hook position's answer (`cacheSeconds`): IsAuthenticated,
//! IsAuthorized, LoadAttributes and CreateHeaders of proxy apps.
//!
//! An answer is reused for the same **session**, the same **policy** and the same **attribute
//! version** of the session (a fingerprint of its attributes and login time), for at most
//! `cacheSeconds`. So a changed attribute (a new login, an attribute provider's refresh, a
//! hook's own `session-set`) re-runs the hook, and a request without a session never uses the
//! cache. A logout deletes the session: its entries can no longer be reached (the key needs the
//! live session) and age out. Only successful calls are cached; a failure is never remembered.
//!
//! The cache is in the gateway's memory, one per hook position, at most [`MAX_ENTRIES`]
//! entries each (expired entries are dropped first, then arbitrary ones), so its memory is
//! bounded whatever the traffic.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::session::Session;

/// Entries one hook position keeps.
pub const MAX_ENTRIES: usize = 16_384;
/// The longest `cacheSeconds`.
pub const MAX_SECONDS: u64 = 3600;
/// A CreateHeaders answer larger than this (names and values) is not cached.
const MAX_HEADER_BYTES: usize = 8 << 10;

/// What a cached call answered.
#[derive(Debug, Clone)]
pub enum Cached {
    /// IsAuthenticated / IsAuthorized.
    Bool(bool),
    /// LoadAttributes (its attributes are in the session already).
    Loaded,
    /// CreateHeaders.
    Headers(Vec<(HeaderName, HeaderValue)>),
}

/// Where an answer applies: one session under one policy at one attribute version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The session's store key (a hash of its id; the id itself is not kept).
    session: std::sync::Arc<str>,
    /// The policy's identity within the loaded configuration.
    policy: usize,
}

struct Entry {
    version: u64,
    expires: Instant,
    value: Cached,
}

/// One hook position's cache.
pub struct DecisionCache {
    ttl: Duration,
    entries: Mutex<HashMap<CacheKey, Entry>>,
}

impl std::fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DecisionCache({}s)", self.ttl.as_secs())
    }
}

impl DecisionCache {
    pub fn new(ttl: Duration) -> Self {
        DecisionCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The key of `session` under `policy` (any value that identifies the policy for the life
    /// of the configuration, e.g. its address) and the session's current attribute version.
    pub fn key(session: &Session, policy: usize) -> (CacheKey, u64) {
        (
            CacheKey {
                session: session.key().clone(),
                policy,
            },
            attribute_version(session),
        )
    }

    /// The answer cached for `key` at `version`, if it has not expired.
    pub fn get(&self, key: &CacheKey, version: u64) -> Option<Cached> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = entries.get(key)?;
        (e.version == version && e.expires > Instant::now()).then(|| e.value.clone())
    }

    /// Remembers `value` for `key` at `version` (the version after the call's own writes).
    pub fn put(&self, key: CacheKey, version: u64, value: Cached) {
        if let Cached::Headers(h) = &value {
            let bytes: usize = h.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
            if bytes > MAX_HEADER_BYTES {
                return;
            }
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= MAX_ENTRIES {
                // Arbitrary victims (hash order): a quarter, so the next inserts are cheap.
                let victims: Vec<CacheKey> =
                    entries.keys().take(MAX_ENTRIES / 4).cloned().collect();
                for k in victims {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(
            key,
            Entry {
                version,
                expires: now + self.ttl,
                value,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

/// A cache lookup made before a call, to store the call's answer under the same key.
pub struct Lookup {
    key: CacheKey,
    /// The answer cached for the session at its current attribute version.
    pub hit: Option<Cached>,
}

impl super::Hook {
    /// Looks the answer up for `session` under `policy`: `None` when this position caches
    /// nothing (no `cacheSeconds`) or the request has no session.
    pub fn cached(&self, session: Option<&Session>, policy: usize) -> Option<Lookup> {
        let (cache, session) = (self.cache.as_ref()?, session?);
        let (key, version) = DecisionCache::key(session, policy);
        let hit = cache.get(&key, version);
        if hit.is_some() {
            tracing::debug!(extension = %self.extension.name, hook = self.kind.func_name(), "extension answer from the cache");
        }
        Some(Lookup { key, hit })
    }

    /// Stores a successful call's answer under the lookup's key, at the session's attribute
    /// version after the call (its own writes included).
    pub fn remember(&self, lookup: Option<Lookup>, session: Option<&Session>, value: Cached) {
        if let (Some(cache), Some(lookup), Some(session)) = (&self.cache, lookup, session) {
            cache.put(lookup.key, attribute_version(session), value);
        }
    }
}

/// A fingerprint of what a hook's answer may depend on in the session: its attributes and
/// the time of its login. Keyed per process, so no one can craft a collision offline.
pub fn attribute_version(session: &Session) -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    let mut h = KEYS.get_or_init(RandomState::new).build_hasher();
    session.data.created.hash(&mut h);
    session.data.attrs.len().hash(&mut h);
    for (name, value) in &session.data.attrs {
        name.hash(&mut h);
        hash_value(value, &mut h);
    }
    h.finish()
}

fn hash_value(v: &Value, h: &mut impl Hasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => (2u8, n.to_string()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(items) => {
            (4u8, items.len()).hash(h);
            items.iter().for_each(|i| hash_value(i, h));
        }
        Value::Object(map) => {
            (5u8, map.len()).hash(h);
            for (k, i) in map {
                k.hash(h);
                hash_value(i, h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> CacheKey {
        CacheKey {
            session: s.into(),
            policy: 1,
        }
    }

    #[test]
    fn answers_only_for_the_same_version_within_the_ttl() {
        let c = DecisionCache::new(Duration::from_secs(60));
        c.put(key("a"), 7, Cached::Bool(true));
        assert!(matches!(c.get(&key("a"), 7), Some(Cached::Bool(true))));
        assert!(c.get(&key("a"), 8).is_none(), "another attribute version");
        assert!(c.get(&key("b"), 7).is_none(), "another session");
        let other_policy = CacheKey {
            session: "a".into(),
            policy: 2,
        };
        assert!(c.get(&other_policy, 7).is_none(), "another policy");
        let expired = DecisionCache::new(Duration::ZERO);
        expired.put(key("a"), 7, Cached::Bool(true));
        assert!(expired.get(&key("a"), 7).is_none(), "expired");
    }

    #[test]
    fn memory_is_bounded() {
        let c = DecisionCache::new(Duration::from_secs(60));
        for i in 0..MAX_ENTRIES + 10 {
            c.put(key(&i.to_string()), 1, Cached::Loaded);
        }
        assert!(c.len() <= MAX_ENTRIES);
        let big = vec![(
            HeaderName::from_static("x-big"),
            HeaderValue::from_str(&"v".repeat(MAX_HEADER_BYTES)).unwrap(),
        )];
        c.put(key("big"), 1, Cached::Headers(big));
        assert!(c.get(&key("big"), 1).is_none(), "too large to cache");
    }
}
