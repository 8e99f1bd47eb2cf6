//! Client-side caching of session records (server-assisted: RESP3 `CLIENT TRACKING`), so an
//! authenticated request needs no Redis round trip for a session this replica has read before.
//!
//! **How it stays correct.** One dedicated RESP3 connection per store has `CLIENT TRACKING on`
//! (default mode: Redis remembers which keys *this connection* read). Cache misses are read on
//! that connection (`GET` + `PTTL`, pipelined), so Redis tracks exactly the keys held here;
//! when one is written, deleted or expires — by any replica — Redis pushes an `invalidate`
//! message on the same connection. The push is applied synchronously by the connection's
//! reader (the redis crate calls our push sender in stream order), so every invalidation sent
//! before a reply is applied before that reply is seen.
//!
//! - A read's result is stored only if nothing touched its shard meanwhile (a per-shard
//!   sequence number taken before the read, compared under the shard lock) and the tracking
//!   connection is still the same one (`generation`): an invalidation racing the reply can
//!   never be overtaken by a stale insert.
//! - Entries expire locally at the TTL Redis reported (`PTTL`), bounded by count and bytes
//!   (`maxEntries`, `maxMiB`; per shard, evicting the soonest-expiring of a small sample).
//! - **Fail closed.** The cache is trusted only within a *lease*: a `PING` on the tracking
//!   connection every `lease/5`, and each answer extends the trust to (time the PING was
//!   sent + `lease`). An answer proves every invalidation sent before it has been applied. A
//!   dropped connection (`CLIENT KILL`, a Redis restart, a network error) flushes the cache at
//!   once; a silent one (a hung Redis, a partition) stops extending the lease, so after at
//!   most `lease` every lookup bypasses the cache and goes to Redis (which then fails closed
//!   as always). Tracking is re-established in the background; the cache starts empty.
//! - Only keys starting with `session:` are cached: they are read on every request and
//!   rarely written. Login flows, counters, OIDC codes and tokens are read-once or
//!   write-heavy and always go to Redis. Absent keys are never cached.
//!
//! Our own writes to a cached key also drop the local entry (before and after the write), so
//! a replica never reads its own stale write back even before Redis's push arrives.
//!
//! Single server only: a Redis Cluster would need one tracking connection per primary and
//! slot-aware routing of misses; cluster stores stay uncached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, Value};

/// `caches[].redis.clientCache`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCacheSettings {
    pub enabled: bool,
    pub max_entries: usize,
    pub max_bytes: usize,
    /// How long the cache is trusted without an answered heartbeat.
    pub lease: Duration,
}

pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
pub const DEFAULT_MAX_MIB: usize = 16;
pub const DEFAULT_LEASE: Duration = Duration::from_millis(500);

impl Default for ClientCacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_MIB * 1024 * 1024,
            lease: DEFAULT_LEASE,
        }
    }
}

/// Keys cached (after the store's key prefix): session records.
pub const CACHED_PREFIX: &str = "session:";

pub fn cacheable(key: &str) -> bool {
    key.starts_with(CACHED_PREFIX)
}

const SHARDS: usize = 16;
/// Bookkeeping per entry counted against the byte bound (map slot, key and entry headers).
const ENTRY_OVERHEAD: usize = 96;
/// Entries looked at to choose a victim when a shard is full.
const EVICTION_SAMPLE: usize = 8;

/// The cache's counters (`tessera_store_client_cache_*`).
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    pub hits: Counter,
    pub misses: Counter,
    pub bypassed: Counter,
    pub flushes: Counter,
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    /// Clock time (ms) it expires; `u64::MAX` for a key without TTL.
    expires: u64,
    size: usize,
}

#[derive(Debug, Default)]
struct Shard {
    /// Bumped by every invalidation of a key of this shard (and every flush).
    seq: u64,
    map: HashMap<String, Entry>,
    bytes: usize,
}

impl Shard {
    fn remove(&mut self, key: &str) {
        if let Some(e) = self.map.remove(key) {
            self.bytes -= e.size;
        }
    }

    fn clear(&mut self) {
        self.seq += 1;
        self.map.clear();
        self.bytes = 0;
    }

    /// Evicts one entry: the soonest-expiring of a few (an expired one first).
    fn evict_one(&mut self) {
        let victim = self
            .map
            .iter()
            .take(EVICTION_SAMPLE)
            .min_by_key(|(_, e)| e.expires)
            .map(|(k, _)| k.clone());
        if let Some(k) = victim {
            self.remove(&k);
        }
    }
}

/// Proof that a miss may fill the cache: the tracking connection and shard state it saw.
#[derive(Debug)]
pub struct Ticket {
    generation: u64,
    shard: usize,
    seq: u64,
}

pub enum Lookup {
    Hit(Bytes),
    /// Not cached: read it on `conn` (the tracking connection), then `insert` with the ticket.
    Miss(Ticket, MultiplexedConnection),
    /// Tracking is not established (or not trusted now): read through the normal connection.
    Bypass,
}

#[derive(Default)]
struct Control {
    conn: Option<MultiplexedConnection>,
}

pub struct LocalCache {
    shards: Box<[Mutex<Shard>]>,
    /// Identifies the tracking connection; bumped when one starts or is lost.
    generation: AtomicU64,
    /// Clock time (ms) until which the cache is trusted; 0 = not tracking.
    valid_until: AtomicU64,
    base: Instant,
    control: Mutex<Control>,
    /// Wakes the heartbeat when the connection is lost.
    lost: tokio::sync::Notify,
    key_prefix: String,
    max_entries: usize,
    max_bytes: usize,
    lease: Duration,
    pub metrics: CacheMetrics,
}

impl std::fmt::Debug for LocalCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCache")
            .field("generation", &self.generation)
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

/// FNV-1a: picks the shard (the map itself uses the std hasher).
fn shard_of(key: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % SHARDS as u64) as usize
}

impl LocalCache {
    pub fn new(settings: &ClientCacheSettings, key_prefix: &str, metrics: CacheMetrics) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            generation: AtomicU64::new(0),
            valid_until: AtomicU64::new(0),
            base: Instant::now(),
            control: Mutex::new(Control::default()),
            lost: tokio::sync::Notify::new(),
            key_prefix: key_prefix.to_string(),
            max_entries: settings.max_entries.div_ceil(SHARDS).max(1),
            max_bytes: settings.max_bytes.div_ceil(SHARDS),
            lease: settings.lease,
            metrics,
        }
    }

    /// Milliseconds since the cache was made, from 1 (0 means "not tracking").
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn shard(&self, i: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Is tracking established and trusted now?
    pub fn trusted(&self) -> bool {
        self.now_ms() < self.valid_until.load(Ordering::Acquire)
    }

    /// The cached value of `key` (without the store prefix), or how to read it.
    pub fn lookup(&self, key: &str) -> Lookup {
        let now = self.now_ms();
        if now >= self.valid_until.load(Ordering::Acquire) {
            self.metrics.bypassed.inc();
            return Lookup::Bypass;
        }
        let i = shard_of(key);
        let ticket = {
            let mut shard = self.shard(i);
            match shard.map.get(key) {
                Some(e) if e.expires > now => {
                    let v = e.value.clone();
                    drop(shard);
                    self.metrics.hits.inc();
                    return Lookup::Hit(v);
                }
                Some(_) => shard.remove(key),
                None => {}
            }
            Ticket {
                generation: self.generation.load(Ordering::Acquire),
                shard: i,
                seq: shard.seq,
            }
        };
        let conn = {
            let control = self.control();
            if self.generation.load(Ordering::Acquire) != ticket.generation {
                None
            } else {
                control.conn.clone()
            }
        };
        match conn {
            Some(c) => {
                self.metrics.misses.inc();
                Lookup::Miss(ticket, c)
            }
            None => {
                self.metrics.bypassed.inc();
                Lookup::Bypass
            }
        }
    }

    /// Stores what a miss read, unless anything invalidated its shard, the tracking
    /// connection changed, or the cache is not trusted any more. `ttl_ms` is Redis's `PTTL`
    /// (-1: no expiry), `sent` the clock time the read was sent.
    pub fn insert(&self, key: &str, value: Bytes, ttl_ms: i64, sent: u64, ticket: Ticket) {
        let expires = match ttl_ms {
            -1 => u64::MAX,
            t if t > 0 => sent.saturating_add(t as u64),
            _ => return,
        };
        let size = key.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max_bytes {
            return;
        }
        let mut shard = self.shard(ticket.shard);
        if shard.seq != ticket.seq
            || self.generation.load(Ordering::Acquire) != ticket.generation
            || !self.trusted()
        {
            return;
        }
        shard.remove(key);
        while !shard.map.is_empty()
            && (shard.map.len() >= self.max_entries || shard.bytes + size > self.max_bytes)
        {
            shard.evict_one();
        }
        shard.bytes += size;
        shard.map.insert(
            key.to_string(),
            Entry {
                value,
                expires,
                size,
            },
        );
    }

    /// Drops `key` (without the store prefix): a write of our own, or an invalidation.
    pub fn forget(&self, key: &str) {
        let mut shard = self.shard(shard_of(key));
        shard.seq += 1;
        shard.remove(key);
    }

    fn flush(&self) {
        for i in 0..SHARDS {
            self.shard(i).clear();
        }
    }

    /// A tracking connection is being made: everything cached so far is dropped, nothing is
    /// trusted until its first heartbeat. Returns its generation.
    fn begin(&self) -> u64 {
        let mut control = self.control();
        control.conn = None;
        self.valid_until.store(0, Ordering::Release);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.flush();
        generation
    }

    /// The tracking connection of `generation` is ready for misses.
    fn connected(&self, generation: u64, conn: MultiplexedConnection) {
        let mut control = self.control();
        if self.generation.load(Ordering::Acquire) == generation {
            control.conn = Some(conn);
        }
    }

    /// A heartbeat sent at `sent` was answered on `generation`'s connection.
    fn extend(&self, generation: u64, sent: u64) {
        let _control = self.control();
        let until = sent.saturating_add(self.lease.as_millis() as u64);
        if self.generation.load(Ordering::Acquire) == generation
            && until > self.valid_until.load(Ordering::Acquire)
        {
            self.valid_until.store(until, Ordering::Release);
        }
    }

    /// `generation`'s connection is gone (or untrustworthy): flush, bypass, reconnect.
    pub fn lost(&self, generation: u64) {
        let mut control = self.control();
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        self.valid_until.store(0, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        control.conn = None;
        self.flush();
        drop(control);
        self.metrics.flushes.inc();
        self.lost.notify_one();
    }

    pub fn generation_of(ticket: &Ticket) -> u64 {
        ticket.generation
    }

    /// A push message from `generation`'s connection (called by its reader, in order).
    fn on_push(&self, generation: u64, info: PushInfo) {
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        match info.kind {
            PushKind::Invalidate => match info.data.first() {
                Some(Value::Array(keys)) => {
                    for k in keys {
                        if let Value::BulkString(k) = k {
                            let Ok(k) = std::str::from_utf8(k) else {
                                continue;
                            };
                            if let Some(k) = k.strip_prefix(self.key_prefix.as_str()) {
                                self.forget(k);
                            }
                        }
                    }
                }
                // FLUSHDB / FLUSHALL, or anything unexpected: drop everything
                _ => self.flush(),
            },
            PushKind::Disconnection => self.lost(generation),
            _ => {}
        }
    }

    /// Number of entries (tests).
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.shard(i).map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keeps a tracking connection (re)established while the cache lives: connect with RESP3,
/// `CLIENT TRACKING on`, then heartbeats. Holds the cache weakly: it ends once the store is
/// dropped (at the next heartbeat).
pub async fn track(
    cache: Weak<LocalCache>,
    client: Client,
    timeout: Duration,
    failures: crate::telemetry::failures::Dependency,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(c) = cache.upgrade() else { return };
        let generation = c.begin();
        drop(c);
        let weak = cache.clone();
        let push = move |info: PushInfo| -> Result<(), ()> {
            if let Some(c) = weak.upgrade() {
                c.on_push(generation, info);
            }
            Ok(())
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_push_sender(push);
        let connect = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .query_async::<()>(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>(conn)
        };
        let failed = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(conn)) => {
                backoff = Duration::from_millis(50);
                heartbeat(&cache, generation, conn).await;
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {} ms", timeout.as_millis())),
        };
        if let Some(e) = failed {
            failures.failed(
                "client-side cache: no tracking connection; sessions are read from Redis",
                &e,
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

/// PINGs `conn` every lease/5 while it is `generation`'s; each answer extends the lease.
/// Returns when the connection is lost, a PING fails, or the cache is gone.
async fn heartbeat(cache: &Weak<LocalCache>, generation: u64, mut conn: MultiplexedConnection) {
    let Some(c) = cache.upgrade() else { return };
    c.connected(generation, conn.clone());
    let lease = c.lease;
    drop(c);
    let every = (lease / 5).max(Duration::from_millis(10));
    loop {
        let Some(c) = cache.upgrade() else { return };
        if c.generation.load(Ordering::Acquire) != generation {
            return;
        }
        let sent = c.now_ms();
        let cmd = redis::cmd("PING");
        match tokio::time::timeout(lease, cmd.query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => c.extend(generation, sent),
            _ => {
                c.lost(generation);
                return;
            }
        }
        // wake early when the connection is lost
        let lost = c.lost.notified();
        tokio::pin!(lost);
        lost.as_mut().enable();
        if c.generation.load(Ordering::Acquire) != generation {
            return;
        }
        // (holding the cache for at most `every`: a dropped store ends this loop soon after)
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = lost => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: usize, max_bytes: usize) -> LocalCache {
        LocalCache::new(
            &ClientCacheSettings {
                enabled: true,
                max_entries,
                max_bytes,
                lease: Duration::from_secs(60),
            },
            "t:",
            CacheMetrics::default(),
        )
    }

    /// Tracking "established" without a connection: misses get a ticket by hand.
    fn tracking(c: &LocalCache) -> u64 {
        let g = c.begin();
        c.extend(g, c.now_ms());
        g
    }

    fn ticket(c: &LocalCache, key: &str) -> Ticket {
        let i = shard_of(key);
        Ticket {
            generation: c.generation.load(Ordering::Acquire),
            shard: i,
            seq: c.shard(i).seq,
        }
    }

    fn hit(c: &LocalCache, key: &str) -> Option<Bytes> {
        match c.lookup(key) {
            Lookup::Hit(v) => Some(v),
            _ => None,
        }
    }

    fn invalidate(c: &LocalCache, g: u64, keys: &[&str]) {
        c.on_push(
            g,
            PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Array(
                    keys.iter()
                        .map(|k| Value::BulkString(k.as_bytes().to_vec()))
                        .collect(),
                )],
            },
        );
    }

    #[test]
    fn nothing_is_served_before_tracking_is_trusted() {
        let c = cache(100, 1 << 20);
        assert!(matches!(c.lookup("session:a"), Lookup::Bypass));
        let g = c.begin();
        let t = ticket(&c, "session:a");
        c.insert("session:a", Bytes::from_static(b"v"), 1000, c.now_ms(), t);
        assert!(c.is_empty(), "not trusted yet: nothing stored");
        c.extend(g, c.now_ms());
        let t = ticket(&c, "session:a");
        c.insert("session:a", Bytes::from_static(b"v"), 1000, c.now_ms(), t);
        assert_eq!(hit(&c, "session:a").as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn an_invalidation_racing_a_read_wins() {
        let c = cache(100, 1 << 20);
        let g = tracking(&c);
        // the read is sent, the key changes, the invalidation is applied, then the (old)
        // reply arrives: it must not be stored
        let t = ticket(&c, "session:a");
        invalidate(&c, g, &["t:session:a"]);
        c.insert("session:a", Bytes::from_static(b"old"), 1000, c.now_ms(), t);
        assert!(hit(&c, "session:a").is_none());
        // an invalidation of a stored key removes it; other prefixes are ignored
        let t = ticket(&c, "session:a");
        c.insert("session:a", Bytes::from_static(b"new"), 1000, c.now_ms(), t);
        assert!(hit(&c, "session:a").is_some());
        invalidate(&c, g, &["other:session:a"]);
        assert!(hit(&c, "session:a").is_some());
        invalidate(&c, g, &["t:session:a"]);
        assert!(hit(&c, "session:a").is_none());
        // our own write drops it as well
        let t = ticket(&c, "session:b");
        c.insert("session:b", Bytes::from_static(b"b"), 1000, c.now_ms(), t);
        let t_before_write = ticket(&c, "session:b");
        c.forget("session:b");
        assert!(hit(&c, "session:b").is_none());
        c.insert(
            "session:b",
            Bytes::from_static(b"b"),
            1000,
            c.now_ms(),
            t_before_write,
        );
        assert!(hit(&c, "session:b").is_none());
    }

    #[test]
    fn a_lost_connection_flushes_and_bypasses_until_tracking_is_back() {
        let c = cache(100, 1 << 20);
        let g = tracking(&c);
        let t = ticket(&c, "session:a");
        c.insert("session:a", Bytes::from_static(b"v"), 1000, c.now_ms(), t);
        let in_flight = ticket(&c, "session:c");
        c.on_push(
            g,
            PushInfo {
                kind: PushKind::Disconnection,
                data: vec![],
            },
        );
        assert!(c.is_empty());
        assert!(matches!(c.lookup("session:a"), Lookup::Bypass));
        assert_eq!(c.metrics.flushes.get(), 1);
        // a read sent on the old connection answers late: not stored
        c.insert(
            "session:c",
            Bytes::from_static(b"v"),
            1000,
            c.now_ms(),
            in_flight,
        );
        assert!(c.is_empty());
        // pushes of the old connection are ignored; a new one is trusted after its heartbeat
        let g2 = c.begin();
        c.extend(g, c.now_ms());
        assert!(
            !c.trusted(),
            "a heartbeat of the old connection counts for nothing"
        );
        c.extend(g2, c.now_ms());
        assert!(c.trusted());
        // FLUSHDB: a null instead of keys
        let t = ticket(&c, "session:a");
        c.insert("session:a", Bytes::from_static(b"v"), 1000, c.now_ms(), t);
        c.on_push(
            g2,
            PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Nil],
            },
        );
        assert!(c.is_empty());
    }

    #[test]
    fn the_lease_runs_out_without_heartbeats() {
        let c = LocalCache::new(
            &ClientCacheSettings {
                lease: Duration::from_millis(30),
                ..ClientCacheSettings::default()
            },
            "t:",
            CacheMetrics::default(),
        );
        let g = c.begin();
        c.extend(g, c.now_ms());
        let t = ticket(&c, "session:a");
        c.insert("session:a", Bytes::from_static(b"v"), 60_000, c.now_ms(), t);
        assert!(hit(&c, "session:a").is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(c.lookup("session:a"), Lookup::Bypass));
    }

    #[test]
    fn entries_expire_with_their_redis_ttl() {
        let c = cache(100, 1 << 20);
        tracking(&c);
        let t = ticket(&c, "session:a");
        c.insert("session:a", Bytes::from_static(b"v"), 20, c.now_ms(), t);
        assert!(hit(&c, "session:a").is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(hit(&c, "session:a").is_none());
        assert!(c.is_empty(), "an expired entry is dropped when met");
        // -2 (gone) is not stored; -1 (no TTL) is, until invalidated
        let t = ticket(&c, "session:b");
        c.insert("session:b", Bytes::from_static(b"v"), -2, c.now_ms(), t);
        assert!(c.is_empty());
        let t = ticket(&c, "session:b");
        c.insert("session:b", Bytes::from_static(b"v"), -1, c.now_ms(), t);
        assert!(hit(&c, "session:b").is_some());
    }

    #[test]
    fn entry_count_and_bytes_are_bounded() {
        let c = cache(SHARDS * 4, SHARDS * 1024);
        tracking(&c);
        for i in 0..1000 {
            let k = format!("session:{i}");
            let t = ticket(&c, &k);
            c.insert(&k, Bytes::from(vec![b'x'; 100]), 60_000, c.now_ms(), t);
        }
        assert!(c.len() <= SHARDS * 4, "{}", c.len());
        for i in 0..SHARDS {
            let s = c.shard(i);
            assert!(s.bytes <= 1024, "{}", s.bytes);
            assert_eq!(
                s.bytes,
                s.map.values().map(|e| e.size).sum::<usize>(),
                "byte accounting"
            );
        }
        // too big for a shard: never stored
        let t = ticket(&c, "session:big");
        c.insert(
            "session:big",
            Bytes::from(vec![b'x'; 2000]),
            60_000,
            c.now_ms(),
            t,
        );
        assert!(hit(&c, "session:big").is_none());
        // the soonest-expiring of the sample goes first: an entry with a short TTL
        // leaves before long-lived ones
        let c = cache(SHARDS * 2, 1 << 20);
        tracking(&c);
        let mut same_shard = (0..)
            .map(|i| format!("session:{i}"))
            .filter(|k| shard_of(k) == 0);
        let (a, b, d) = (
            same_shard.next().unwrap(),
            same_shard.next().unwrap(),
            same_shard.next().unwrap(),
        );
        let t = ticket(&c, &a);
        c.insert(&a, Bytes::from_static(b"long"), 60_000, c.now_ms(), t);
        let t = ticket(&c, &b);
        c.insert(&b, Bytes::from_static(b"short"), 5_000, c.now_ms(), t);
        let t = ticket(&c, &d);
        c.insert(&d, Bytes::from_static(b"new"), 60_000, c.now_ms(), t);
        assert!(hit(&c, &a).is_some());
        assert!(hit(&c, &b).is_none());
        assert!(hit(&c, &d).is_some());
    }

    #[test]
    fn only_session_records_are_cacheable() {
        assert!(cacheable("session:abc"));
        for k in ["flow:abc", "throttle:ip:1", "oidc:code:x", "sessions", ""] {
            assert!(!cacheable(k), "{k}");
        }
    }
}
