//! Failed-login throttling: counters per (connector, username) and per client IP in the
//! store, so every replica sees the same counts. Past the limit, attempts are refused
//! without checking the password until the window ends; every failure is also slowed down.

use std::net::IpAddr;
use std::time::Duration;

use crate::connectors::local::Throttle;
use crate::store::{Store, StoreError};

fn user_key(connector: &str, username: &str) -> String {
    format!("throttle:user:{connector}:{}", username.to_lowercase())
}

fn ip_key(ip: IpAddr) -> String {
    format!("throttle:ip:{ip}")
}

async fn count(store: &dyn Store, key: &str) -> Result<u64, StoreError> {
    Ok(store
        .get(key)
        .await?
        .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
        .unwrap_or(0))
}

/// `true` when this user or this IP has failed too often recently.
pub async fn locked(
    store: &dyn Store,
    t: &Throttle,
    connector: &str,
    username: &str,
    ip: IpAddr,
) -> Result<bool, StoreError> {
    Ok(
        count(store, &user_key(connector, username)).await? >= u64::from(t.max_failures)
            || count(store, &ip_key(ip)).await? >= u64::from(t.max_ip_failures()),
    )
}

/// Records a failure and waits a little longer for each recent one (up to 2 s), which makes
/// online guessing slow without locking anyone out for long.
pub async fn failed(
    store: &dyn Store,
    t: &Throttle,
    connector: &str,
    username: &str,
    ip: IpAddr,
) -> Result<(), StoreError> {
    let n = store
        .increment(&user_key(connector, username), t.window)
        .await?;
    store.increment(&ip_key(ip), t.window).await?;
    let delay = Duration::from_millis((200 * n).min(2000));
    tokio::time::sleep(delay).await;
    Ok(())
}

/// A success clears the user's counter (not the IP's).
pub async fn succeeded(
    store: &dyn Store,
    connector: &str,
    username: &str,
) -> Result<(), StoreError> {
    store
        .delete(&user_key(connector, username))
        .await
        .map(|_| ())
}
