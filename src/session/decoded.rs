//! Sessions decoded before, by cookie id, so an authenticated request neither hashes its id
//! nor parses its record again (together ≈ 12,000 instructions of the proxy's hot path).
//!
//! The store stays the only truth: every request still reads the record, and the decoding is
//! reused only when the bytes read are exactly the bytes decoded before. A session that was
//! ended, touched or changed anywhere (another request, another replica) reads differently
//! and is decoded again; one that is gone is gone. Lifetime and idle checks run on every
//! request as before. What this keeps is bounded ([`CAPACITY`] entries), and it belongs to one
//! compiled configuration (a reload starts empty).
//!
//! The cookie ids live here as they live in every request's headers: in this process's
//! memory only, never in the store or a log.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::SessionData;

/// Sessions kept decoded, over all shards.
const CAPACITY: usize = 4096;
/// Shards, so concurrent workers seldom wait on one lock.
const SHARDS: usize = 16;

/// One decoded record.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The store key the id hashes to.
    pub key: Arc<str>,
    /// The record's bytes as read from the store.
    pub raw: Bytes,
    pub data: Arc<SessionData>,
}

#[derive(Debug, Default)]
pub struct DecodedSessions {
    shards: [Mutex<HashMap<Box<str>, Decoded>>; SHARDS],
    hasher: std::collections::hash_map::RandomState,
}

impl DecodedSessions {
    fn shard(&self, id: &str) -> &Mutex<HashMap<Box<str>, Decoded>> {
        &self.shards[(self.hasher.hash_one(id) as usize) % SHARDS]
    }

    /// The store key of `id` if it was decoded before (so the id needs no hashing).
    pub fn get(&self, id: &str) -> Option<Decoded> {
        let shard = self.shard(id).lock().unwrap_or_else(|e| e.into_inner());
        shard.get(id).cloned()
    }

    /// Remembers the decoding of `raw` for `id`, replacing what was kept for it. A full shard
    /// gives up one entry (any: the cache only saves work, it decides nothing).
    pub fn put(&self, id: &str, decoded: Decoded) {
        let mut shard = self.shard(id).lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= CAPACITY / SHARDS && !shard.contains_key(id) {
            if let Some(victim) = shard.keys().next().cloned() {
                shard.remove(&victim);
            }
        }
        shard.insert(id.into(), decoded);
    }

    /// Forgets `id` (its session was ended here).
    pub fn forget(&self, id: &str) {
        let mut shard = self.shard(id).lock().unwrap_or_else(|e| e.into_inner());
        shard.remove(id);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(n: u64) -> Decoded {
        Decoded {
            key: format!("session:{n}").into(),
            raw: Bytes::from(n.to_string()),
            data: Arc::new(SessionData {
                v: 1,
                sid: String::new(),
                rps: Default::default(),
                lifetime: None,
                upstream_cookies: Default::default(),
                created: n,
                seen: n,
                attrs: Default::default(),
                tokens: Default::default(),
                lookups: Default::default(),
                logins: Default::default(),
            }),
        }
    }

    #[test]
    fn it_is_bounded_and_forgets() {
        let c = DecodedSessions::default();
        for n in 0..(CAPACITY as u64 * 3) {
            c.put(&format!("id{n}"), decoded(n));
        }
        assert!(c.len() <= CAPACITY, "{}", c.len());
        let last = format!("id{}", CAPACITY as u64 * 3 - 1);
        assert_eq!(c.get(&last).unwrap().data.created, CAPACITY as u64 * 3 - 1);
        c.forget(&last);
        assert!(c.get(&last).is_none());
    }
}
