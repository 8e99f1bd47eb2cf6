//! Access tokens whose signature was verified, by their exact text: a resource server
//! introspects (and a client calls userinfo with) the same token many times, and verifying a
//! P-256 signature costs more than everything else such a request does. Only what the
//! signature proves is remembered — expiry, revocation and the grant are checked on every
//! use. The cache belongs to one configuration's provider, so a reload that removes a key
//! forgets what it verified. It is bounded, and holds only tokens that verified, which only
//! this provider can make.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

/// Entries kept at most (a few MB of claims).
const CAPACITY: usize = 8192;

/// A token's text and the claims its signature proved.
type ByToken = HashMap<Box<str>, Arc<Map<String, Value>>>;

#[derive(Debug, Default)]
pub struct VerifiedTokens {
    map: Mutex<ByToken>,
}

impl VerifiedTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByToken> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The claims of `token` if it verified before.
    pub fn get(&self, token: &str) -> Option<Arc<Map<String, Value>>> {
        self.lock().get(token).cloned()
    }

    /// Remembers a verified token's claims. When full, tokens past `now` are dropped; if
    /// that frees nothing, everything is (the cache is only a shortcut).
    pub fn insert(&self, token: &str, claims: Arc<Map<String, Value>>, now: u64) {
        let mut map = self.lock();
        if map.len() >= CAPACITY {
            map.retain(|_, c| {
                c.get("exp")
                    .and_then(Value::as_u64)
                    .is_some_and(|e| e > now)
            });
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(token.into(), claims);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_expired_first() {
        let cache = VerifiedTokens::default();
        let claims = |exp: u64| {
            let mut m = Map::new();
            m.insert("exp".into(), exp.into());
            Arc::new(m)
        };
        for i in 0..CAPACITY {
            cache.insert(
                &format!("t{i}"),
                claims(if i % 2 == 0 { 10 } else { 100 }),
                0,
            );
        }
        assert!(cache.get("t0").is_some());
        // full: at time 50 the expired half goes, the live half stays
        cache.insert("new", claims(100), 50);
        assert!(cache.get("t0").is_none());
        assert!(cache.get("t1").is_some());
        assert!(cache.get("new").is_some());
        assert_eq!(cache.lock().len(), CAPACITY / 2 + 1);
    }
}
