//! The contract every `Store` backend meets, as one test body run against each backend: the
//! memory store in the unit tests, Redis in `tests/it/redis.rs`. Public (but hidden) only so the
//! integration tests can reach it; it panics on the first broken promise.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::Store;

/// Checks `store` (which must start empty) against the contract.
pub async fn run(store: Arc<dyn Store>) {
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
    // counters read back as decimal text
    assert_eq!(store.get("c").await.unwrap().as_deref(), Some(&b"2"[..]));
    // a refund takes one off, never creates, and removes the counter at zero
    assert_eq!(store.decrement("c").await.unwrap(), 1);
    assert_eq!(store.get("c").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(store.decrement("c").await.unwrap(), 0);
    assert!(store.get("c").await.unwrap().is_none());
    assert_eq!(store.decrement("never").await.unwrap(), 0);
    assert!(store.get("never").await.unwrap().is_none());
    assert_eq!(store.increment("c", ttl).await.unwrap(), 1);
    assert_eq!(store.increment("c", ttl).await.unwrap(), 2);
    // evictable entries read back like any other
    store
        .put_evictable("ev", Bytes::from_static(b"flow"), ttl)
        .await
        .unwrap();
    assert_eq!(
        store.get("ev").await.unwrap().as_deref(),
        Some(&b"flow"[..])
    );
    // put overwrites
    store.put("o", Bytes::from_static(b"x"), ttl).await.unwrap();
    store.put("o", Bytes::from_static(b"y"), ttl).await.unwrap();
    assert_eq!(store.get("o").await.unwrap().as_deref(), Some(&b"y"[..]));
    // compare-and-set never creates
    assert!(!store
        .compare_and_set("absent", b"", Bytes::from_static(b"v"), ttl)
        .await
        .unwrap());
    assert!(store.get("absent").await.unwrap().is_none());
    // values are bytes, not text
    let binary = Bytes::from_static(&[0, 159, 146, 150, 255, b'\n', b'"']);
    store.put("bin", binary.clone(), ttl).await.unwrap();
    assert_eq!(store.get("bin").await.unwrap(), Some(binary.clone()));
    assert!(store
        .compare_and_set("bin", &binary, Bytes::from_static(b"z"), ttl)
        .await
        .unwrap());
    // expiry: get, take, delete, put_if_absent and compare_and_set all see it
    let short = Duration::from_millis(30);
    for k in ["short", "t", "d", "n", "cas"] {
        store.put(k, Bytes::from_static(b"x"), short).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(store.get("short").await.unwrap().is_none());
    assert!(store.take("t").await.unwrap().is_none());
    assert!(!store.delete("d").await.unwrap());
    assert!(store
        .put_if_absent("n", Bytes::from_static(b"y"), ttl)
        .await
        .unwrap());
    assert!(!store
        .compare_and_set("cas", b"x", Bytes::from_static(b"y"), ttl)
        .await
        .unwrap());
    // compare-and-set sets the new TTL
    store
        .put("ttl", Bytes::from_static(b"1"), ttl)
        .await
        .unwrap();
    assert!(store
        .compare_and_set("ttl", b"1", Bytes::from_static(b"2"), short)
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(store.get("ttl").await.unwrap().is_none());
    // a counter's TTL is set when it is created and not extended by later increments
    let window = Duration::from_millis(300);
    assert_eq!(store.increment("w", window).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.increment("w", window).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        store.increment("w", window).await.unwrap(),
        1,
        "the window started at the first increment"
    );
    // a refund keeps the window: the counter still expires when it was going to
    assert_eq!(store.increment("w", window).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.decrement("w").await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(store.get("w").await.unwrap().is_none(), "expired on time");
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
    // only one of many concurrent compare-and-setters wins
    store
        .put("cas-race", Bytes::from_static(b"0"), ttl)
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..16u32 {
        let s = store.clone();
        handles.push(tokio::spawn(async move {
            s.compare_and_set("cas-race", b"0", Bytes::from(format!("v{i}")), ttl)
                .await
                .unwrap()
        }));
    }
    let mut wins = 0;
    for h in handles {
        wins += h.await.unwrap() as u32;
    }
    assert_eq!(wins, 1);
    // concurrent increments are all counted
    let mut handles = Vec::new();
    for _ in 0..32 {
        let s = store.clone();
        handles.push(tokio::spawn(async move {
            s.increment("many", ttl).await.unwrap()
        }));
    }
    let mut seen = Vec::new();
    for h in handles {
        seen.push(h.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=32).collect::<Vec<u64>>());
    store.ping().await.unwrap();
}
