//! Failed-login throttling, in the store so every replica sees the same counts.
//!
//! An attempt is **reserved before the password is checked**: the user's counter is
//! incremented atomically first, and only an attempt whose reservation is within the limit is
//! verified. A burst of parallel guesses therefore gets at most `maxFailures` verifications;
//! the rest are refused without checking anything (a check-then-count scheme let every
//! request of a burst through the check before the first failure was counted).
//!
//! Buckets (all expire `windowSeconds` after their first count):
//! - per user — `throttle:user:<connector>:<user>`, the *canonical* user (the folded
//!   username, see `login::username`, or an LDAP entry's DN), so `BOB`, `bob ` and `ｂob`
//!   share bob's one budget: `maxFailures` attempts, from any client IP;
//! - per (client IP, user) — `throttle:pair:<connector>:<ip>:<user>`, a marker that this user
//!   has failed from this IP;
//! - per client IP — `throttle:ip:<ip>` counts those pairs: the distinct users with failures
//!   from the IP. Past `maxUsersPerClientIP` the IP may not try further users (spraying),
//!   while the users already counted keep their own budget: one user's failures behind a
//!   shared ingress never lock out everyone else. IPv6 clients count per /64.
//!
//! A success clears the user's counter and its pair (refunding the pair's count on the IP);
//! an attempt that could not be checked (directory down) is refunded entirely.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::connectors::local::Throttle;
use crate::store::{Store, StoreError};

/// The client address a bucket is kept for: IPv4 as is, IPv6 by its /64 (one subscriber
/// usually holds a whole /64 and can rotate addresses inside it at will).
pub(crate) fn ip_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn user_key(connector: &str, user: &str) -> String {
    format!("throttle:user:{connector}:{user}")
}

fn pair_key(connector: &str, ip: &str, user: &str) -> String {
    format!("throttle:pair:{connector}:{ip}:{user}")
}

fn ip_key(ip: &str) -> String {
    format!("throttle:ip:{ip}")
}

async fn count(store: &dyn Store, key: &str) -> Result<u64, StoreError> {
    Ok(store
        .get(key)
        .await?
        .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
        .unwrap_or(0))
}

/// A granted attempt: the password may be checked once. Tell it how that went.
#[derive(Debug)]
#[must_use = "a reservation must be settled: failed, succeeded or refunded"]
pub struct Reservation {
    user: String,
    pair: String,
    ip: String,
    /// This attempt created the pair (and counted it on the IP).
    new_pair: bool,
    /// The user's attempts in the window, this one included.
    n: u64,
}

/// Reserves one attempt for the canonical `user` of `connector` from `ip`; `None` when the
/// user or the IP is over its limit (refuse without checking the password).
pub async fn reserve(
    store: &dyn Store,
    t: &Throttle,
    connector: &str,
    user: &str,
    ip: IpAddr,
) -> Result<Option<Reservation>, StoreError> {
    let ip = ip_bucket(ip);
    let r = Reservation {
        user: user_key(connector, user),
        pair: pair_key(connector, &ip, user),
        ip: ip_key(&ip),
        new_pair: false,
        n: 0,
    };
    let max = u64::from(t.max_failures);
    let max_users = u64::from(t.max_users_per_ip);
    // Already locked: refuse without counting anything (a locked-out IP spraying on must not
    // keep charging other users' counters).
    if count(store, &r.user).await? >= max {
        return Ok(None);
    }
    let known_pair = store.get(&r.pair).await?.is_some();
    if !known_pair && count(store, &r.ip).await? >= max_users {
        return Ok(None);
    }
    // The reservation itself: atomic, so concurrent attempts get distinct numbers.
    let n = store.increment(&r.user, t.window).await?;
    if n > max {
        return Ok(None);
    }
    let mut r = Reservation { n, ..r };
    if store
        .put_if_absent(&r.pair, Bytes::from_static(b"1"), t.window)
        .await?
    {
        r.new_pair = true;
        if store.increment(&r.ip, t.window).await? > max_users {
            r.refund(store).await?;
            return Ok(None);
        }
    }
    Ok(Some(r))
}

impl Reservation {
    /// The password was wrong: the reservation stays counted. Returns how long to wait
    /// before answering: a little longer for each recent failure (up to 2 s), which makes
    /// online guessing slow without locking anyone out for long.
    pub fn failed(self) -> Duration {
        Duration::from_millis((200 * self.n).min(2000))
    }

    /// The password was right: the user's counter and pair are cleared, and the pair no
    /// longer counts against the IP.
    pub async fn succeeded(self, store: &dyn Store) -> Result<(), StoreError> {
        store.delete(&self.user).await?;
        if store.delete(&self.pair).await? {
            store.decrement(&self.ip).await?;
        }
        Ok(())
    }

    /// The password could not be checked (the directory did not answer), or the attempt was
    /// refused after its reservation: nothing is counted.
    pub async fn refund(self, store: &dyn Store) -> Result<(), StoreError> {
        store.decrement(&self.user).await?;
        if self.new_pair && store.delete(&self.pair).await? {
            store.decrement(&self.ip).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::sync::Arc;

    fn throttle(max_failures: u32, max_users_per_ip: u32) -> Throttle {
        Throttle {
            max_failures,
            window: Duration::from_secs(60),
            max_users_per_ip,
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[tokio::test]
    async fn a_parallel_burst_gets_at_most_max_failures_reservations() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let t = throttle(5, 50);
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                reserve(store.as_ref(), &t, "local", "bob", IP)
                    .await
                    .unwrap()
            }));
        }
        let mut granted = Vec::new();
        for task in tasks {
            granted.extend(task.await.unwrap());
        }
        assert_eq!(granted.len(), 5);
        // the IP counted one user, not five attempts
        assert_eq!(
            count(store.as_ref(), "throttle:ip:192.0.2.7")
                .await
                .unwrap(),
            1
        );
    }

    #[tokio::test]
    async fn success_clears_the_user_and_refunds_the_ip_an_error_refunds_everything() {
        let store = MemoryStore::new();
        let t = throttle(3, 2);
        // alice fails twice, then signs in: her counter and her place on the IP are cleared
        for _ in 0..2 {
            let r = reserve(&store, &t, "local", "alice", IP)
                .await
                .unwrap()
                .unwrap();
            let _ = r.failed();
        }
        let r = reserve(&store, &t, "local", "alice", IP)
            .await
            .unwrap()
            .unwrap();
        r.succeeded(&store).await.unwrap();
        assert_eq!(count(&store, "throttle:user:local:alice").await.unwrap(), 0);
        assert_eq!(count(&store, "throttle:ip:192.0.2.7").await.unwrap(), 0);
        // an attempt that could not be checked costs nothing
        let r = reserve(&store, &t, "local", "carol", IP)
            .await
            .unwrap()
            .unwrap();
        r.refund(&store).await.unwrap();
        assert_eq!(count(&store, "throttle:user:local:carol").await.unwrap(), 0);
        assert_eq!(count(&store, "throttle:ip:192.0.2.7").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn one_ip_may_fail_for_a_bounded_number_of_users_but_they_keep_trying() {
        let store = MemoryStore::new();
        let t = throttle(3, 2);
        for user in ["u1", "u2"] {
            let r = reserve(&store, &t, "local", user, IP)
                .await
                .unwrap()
                .unwrap();
            let _ = r.failed();
        }
        // a third user from the same IP: spraying, refused without touching u3's counter
        assert!(reserve(&store, &t, "local", "u3", IP)
            .await
            .unwrap()
            .is_none());
        assert_eq!(count(&store, "throttle:user:local:u3").await.unwrap(), 0);
        // u1, already counted on this IP, keeps its own budget
        assert!(reserve(&store, &t, "local", "u1", IP)
            .await
            .unwrap()
            .is_some());
        // another IP is not affected
        let other = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 8));
        assert!(reserve(&store, &t, "local", "u3", other)
            .await
            .unwrap()
            .is_some());
    }

    #[test]
    fn ipv6_clients_count_per_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_bucket(a), ip_bucket(b));
        assert_ne!(ip_bucket(a), ip_bucket(c));
        assert_eq!(ip_bucket("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
    }
}
