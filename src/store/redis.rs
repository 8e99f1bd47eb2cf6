//! Redis backend: the state shared by several replicas. One address is a single server (or a
//! primary behind a proxy/sentinel VIP); several addresses are the seed nodes of a Redis
//! Cluster.
//!
//! Every `Store` operation is one atomic Redis command or one Lua script on one key, so
//! replicas racing on the same key see exactly what one process sees with the memory store:
//! `take` is `GETDEL` (Redis ≥ 6.2), `put_if_absent` is `SET NX PX`, compare-and-set and
//! increment-with-TTL-on-creation are scripts (single key, so they also work on a cluster).
//!
//! **Keys** are `keyPrefix` + the caller's key (`tessera:session:<hash>`).
//!
//! **Values** are stored as the caller's bytes, unchanged. Versioning is the caller's: session
//! records are JSON carrying a format number `v`, login flows are JSON read leniently, counters
//! are decimal integers (what `INCR` needs). Storing bytes as-is keeps this layer
//! format-neutral, so a rolling upgrade where old and new replicas share one Redis reads the
//! same records as the memory store would.
//!
//! **Failure.** The connection is made lazily on first use (start-up never waits for Redis)
//! and re-made in the background when it drops. Each call is bounded by `timeout` (connect,
//! queueing and reply together); an error or a timeout is `StoreError::Unavailable`, which
//! the request handlers turn into a 503 page. Nothing queues without bound: the multiplexed
//! connection has a bounded pipeline and every waiter gives up at the timeout.
//!
//! **Known down.** A circuit breaker (`breaker`) turns a Redis known to be down into an
//! immediate `Unavailable` (the same 503) instead of a wait of `timeout` per call, and probes
//! in the background until Redis answers again. Failures are logged once per interval with
//! a count (`telemetry::failures`), never once per request.
//!
//! **Client-side cache.** On a single server, session records are cached locally with
//! server-assisted invalidation (`client_cache`): a logout on any replica drops the record on
//! every replica as soon as Redis's push arrives, and the cache is bypassed whenever tracking
//! is not established.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, FromRedisValue, IntoConnectionInfo,
    Pipeline, ProtocolVersion, RedisConnectionInfo, RedisError, RedisFuture, RedisResult, Script,
    ServerErrorKind, TlsCertificates, Value,
};

use super::breaker::{Breaker, BreakerSettings, State};
use super::client_cache::{self, cacheable, ClientCacheSettings, LocalCache, Lookup};
use super::{Store, StoreError};
use crate::telemetry::failures::{self, Dependency};
use crate::telemetry::metrics::StoreMetrics;

/// Replaces the value only if it equals ARGV[1]; the new value expires after ARGV[3] ms.
const COMPARE_AND_SET: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"#;

/// Adds one; a counter that is new (or has lost its expiry, or holds no integer) gets a
/// fresh TTL of ARGV[1] ms. An existing counter keeps the expiry it got at creation.
const INCREMENT: &str = r#"
local n = redis.pcall('INCR', KEYS[1])
if type(n) == 'table' then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
  return 1
end
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
"#;

/// Takes one from an integer counter, keeping its expiry; never creates it, and deletes it
/// when it would reach zero (or holds no integer). Returns the new count.
const DECREMENT: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
  return 0
end
local n = tonumber(v)
if not n or n <= 1 then
  redis.call('DEL', KEYS[1])
  return 0
end
return redis.call('DECR', KEYS[1])
"#;

/// TLS towards Redis: trust and an optional client certificate, as PEM.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// CA bundle trusted for the server certificate; `None` = the public web PKI roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate chain and key, for servers that require them (`tls-auth-clients`).
    pub client_pem: Option<(Vec<u8>, Vec<u8>)>,
}

/// Everything needed to reach one Redis deployment. Equal settings mean the same client:
/// a configuration reload that keeps them keeps the connections (`StorePool`).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// The cache's name (`caches[].name`): names it in logs and metrics.
    pub name: String,
    /// `(host, port)`; several = the seed nodes of a Redis Cluster.
    pub addresses: Vec<(String, u16)>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Database number (single server only; a cluster has only database 0).
    pub db: u32,
    pub tls: Option<RedisTls>,
    pub key_prefix: String,
    /// Bound of every store call.
    pub timeout: Duration,
    /// Local cache of session records (single server only; ignored for a cluster).
    pub client_cache: ClientCacheSettings,
    pub breaker: BreakerSettings,
}

impl RedisSettings {
    /// Settings with the defaults for everything but where Redis is and the key prefix.
    pub fn new(
        name: &str,
        addresses: Vec<(String, u16)>,
        key_prefix: &str,
        timeout: Duration,
    ) -> Self {
        Self {
            name: name.to_string(),
            addresses,
            username: None,
            password: None,
            db: 0,
            tls: None,
            key_prefix: key_prefix.to_string(),
            timeout,
            client_cache: ClientCacheSettings::default(),
            breaker: BreakerSettings::default(),
        }
    }
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("name", &self.name)
            .field("addresses", &self.addresses)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("tls", &self.tls.is_some())
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("client_cache", &self.client_cache)
            .field("breaker", &self.breaker)
            .finish()
    }
}

/// How to reach Redis. One per store, built once: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Target {
    Single(Client),
    Cluster(ClusterClient),
}

/// A live (or reconnecting) connection; cheap to clone, shared by all requests.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RedisSettings,
    target: Target,
    /// Made on first use, inside the async runtime; never blocks start-up.
    conn: OnceLock<Result<Conn, String>>,
    compare_and_set: Script,
    increment: Script,
    decrement: Script,
    breaker: Breaker,
    /// The client-side cache and the RESP3 client of its tracking connection.
    cache: Option<(Arc<LocalCache>, Client)>,
    tracking_started: AtomicBool,
    failures: Dependency,
    metrics: StoreMetrics,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // a replaced store leaves no "open" series behind
        if self.breaker.state() != State::Closed {
            self.metrics.circuit_state.set(0);
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

/// Why a call failed.
enum Failure {
    Redis(RedisError),
    Timeout,
}

impl Failure {
    /// Does it say Redis is down or unusable (as opposed to a problem of this one call)? Only
    /// those count towards opening the breaker.
    fn is_outage(&self) -> bool {
        match self {
            Failure::Timeout => true,
            Failure::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_refusal()
                    || e.is_connection_dropped()
                    || e.is_unrecoverable_error()
                    || matches!(
                        e.kind(),
                        ErrorKind::AuthenticationFailed
                            | ErrorKind::ClusterConnectionNotFound
                            | ErrorKind::Server(
                                ServerErrorKind::BusyLoading
                                    | ServerErrorKind::TryAgain
                                    | ServerErrorKind::ClusterDown
                                    | ServerErrorKind::MasterDown
                                    | ServerErrorKind::ReadOnly
                                    | ServerErrorKind::NoPerm
                            )
                    )
            }
        }
    }
}

const FAILING: &str = "Redis store unavailable";

/// Milliseconds for `PX`: at least 1 (Redis refuses 0).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    /// Checks the settings and prepares the client; does not connect.
    pub fn new(settings: RedisSettings) -> Result<Self, String> {
        Self::with_metrics(settings, StoreMetrics::default())
    }

    /// `new`, updating `metrics` (from `Metrics::store`).
    pub fn with_metrics(settings: RedisSettings, metrics: StoreMetrics) -> Result<Self, String> {
        if settings.addresses.is_empty() {
            return Err("at least one address is needed".into());
        }
        let certs = settings.tls.as_ref().map(|t| {
            // rustls needs a process-wide provider for the configs the redis crate builds;
            // this crate uses ring everywhere (no aws-lc). Already installed is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
            TlsCertificates {
                client_tls: t
                    .client_pem
                    .as_ref()
                    .map(|(cert, key)| redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                root_cert: t.ca_pem.clone(),
            }
        });
        let mut tracking_client = None;
        let target = if settings.addresses.len() == 1 {
            let (host, port) = settings.addresses[0].clone();
            let addr = if certs.is_some() {
                ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host, port)
            };
            let mut redis_info = RedisConnectionInfo::default().set_db(i64::from(settings.db));
            if let Some(u) = &settings.username {
                redis_info = redis_info.set_username(u);
            }
            if let Some(p) = &settings.password {
                redis_info = redis_info.set_password(p);
            }
            let info: ConnectionInfo = addr
                .into_connection_info()
                .map_err(|e| e.to_string())?
                .set_redis_settings(redis_info);
            let build = |info: ConnectionInfo| {
                match certs.clone() {
                    Some(c) => Client::build_with_tls(info, c),
                    None => Client::open(info),
                }
                .map_err(|e| e.to_string())
            };
            if settings.client_cache.enabled {
                // the tracking connection speaks RESP3: invalidations arrive in-band
                let resp3 = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                tracking_client = Some(build(info.clone().set_redis_settings(resp3))?);
            }
            Target::Single(build(info)?)
        } else {
            if settings.db != 0 {
                return Err("a Redis Cluster has only database 0".into());
            }
            let mut b = ClusterClientBuilder::new(settings.addresses.clone())
                .connection_timeout(settings.timeout)
                .response_timeout(settings.timeout)
                .retries(2);
            if let Some(u) = &settings.username {
                b = b.username(u);
            }
            if let Some(p) = &settings.password {
                b = b.password(p);
            }
            if let Some(c) = certs {
                b = b.tls(redis::TlsMode::Secure).certs(c);
            }
            Target::Cluster(b.build().map_err(|e| e.to_string())?)
        };
        let cache = tracking_client.map(|client| {
            let cache = LocalCache::new(
                &settings.client_cache,
                &settings.key_prefix,
                metrics.cache.clone(),
            );
            (Arc::new(cache), client)
        });
        metrics.circuit_state.set(0);
        Ok(Self {
            inner: Arc::new(Inner {
                failures: failures::dependency("redis", &settings.name),
                breaker: Breaker::new(settings.breaker.clone()),
                settings,
                target,
                conn: OnceLock::new(),
                compare_and_set: Script::new(COMPARE_AND_SET),
                increment: Script::new(INCREMENT),
                decrement: Script::new(DECREMENT),
                cache,
                tracking_started: AtomicBool::new(false),
                metrics,
            }),
        })
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.inner.settings
    }

    /// The client-side cache, when this store has one (tests, diagnostics).
    pub fn client_cache(&self) -> Option<&LocalCache> {
        self.inner.cache.as_ref().map(|(c, _)| c.as_ref())
    }

    /// The circuit breaker's state.
    pub fn circuit(&self) -> State {
        self.inner.breaker.state()
    }
}

impl Inner {
    fn key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.settings.key_prefix.len() + key.len());
        k.push_str(&self.settings.key_prefix);
        k.push_str(key);
        k
    }

    fn connect(&self) -> Result<Conn, String> {
        let t = self.settings.timeout;
        match &self.target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(t))
                    .set_response_timeout(Some(t))
                    // Background reconnection after a drop: 50 ms doubling to 500 ms, six
                    // tries (about 2 s); after that the next call starts a new round. Callers
                    // never wait past `timeout`.
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500))
                    .set_number_of_retries(6);
                ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map(Conn::Single)
                    .map_err(|e| e.to_string())
            }
            Target::Cluster(client) => Ok(Conn::Cluster(
                client.get_pending_async_connection_with_config(
                    ClusterConfig::new()
                        .set_connection_timeout(t)
                        .set_response_timeout(t),
                ),
            )),
        }
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        self.conn
            .get_or_init(|| self.connect())
            .clone()
            .map_err(unavailable)
    }

    /// Runs `op` on the connection, bounded by the timeout; refused at once while the breaker
    /// is open. A refused connection means the command never left and the manager has just
    /// started reconnecting (Redis may be back after a long outage), so it is tried once more
    /// within the same bound.
    async fn run<T, F, Fut>(self: &Arc<Self>, op: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.breaker.allows() {
            return Err(self.rejected());
        }
        let deadline = tokio::time::Instant::now() + self.settings.timeout;
        match self.attempt(deadline, op).await {
            Ok(v) => {
                self.breaker.succeeded();
                Ok(v)
            }
            Err(f) => Err(self.failed(f)),
        }
    }

    /// `op` on the connection until `deadline`, without the breaker.
    async fn attempt<T, F, Fut>(&self, deadline: tokio::time::Instant, op: F) -> Result<T, Failure>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = self.conn().map_err(|e| {
            Failure::Redis(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "cannot connect",
                e.to_string(),
            )))
        })?;
        let attempt = async {
            match op(conn.clone()).await {
                Err(e) if e.is_connection_refusal() => op(conn).await,
                r => r,
            }
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Accounts for a failed call: the breaker, the failure log. The error to return.
    fn failed(self: &Arc<Self>, f: Failure) -> StoreError {
        if f.is_outage() && self.breaker.failed(Instant::now()) {
            self.opened();
        }
        let e = match f {
            Failure::Redis(e) => unavailable(e),
            Failure::Timeout => unavailable(format!(
                "no answer within {} ms",
                self.settings.timeout.as_millis()
            )),
        };
        self.failures.failed(FAILING, &e);
        e
    }

    /// A call refused by the open breaker.
    fn rejected(&self) -> StoreError {
        self.metrics.circuit_rejected.inc();
        let e = StoreError::Unavailable(format!(
            "redis: known down (circuit open after {} failures in a row; probing every {} ms)",
            self.settings.breaker.failures,
            self.settings.breaker.probe_interval.as_millis()
        ));
        self.failures.failed(FAILING, &e);
        e
    }

    /// The breaker has just opened: probe in the background until Redis answers.
    fn opened(self: &Arc<Self>) {
        self.metrics.circuit_opened.inc();
        self.metrics.circuit_state.set(State::Open as i64);
        tracing::warn!(
            cache = %self.settings.name,
            failures = self.settings.breaker.failures,
            probe_ms = self.settings.breaker.probe_interval.as_millis() as u64,
            "Redis store known down: circuit open, store calls fail at once until a probe succeeds"
        );
        let weak = Arc::downgrade(self);
        let every = self.settings.breaker.probe_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                if !inner.breaker.probe_starts() {
                    return;
                }
                inner.metrics.circuit_state.set(State::HalfOpen as i64);
                let deadline = tokio::time::Instant::now() + inner.settings.timeout;
                let ping = inner
                    .attempt(deadline, |mut c| async move {
                        redis::cmd("PING").query_async::<String>(&mut c).await
                    })
                    .await;
                let ok = ping.is_ok();
                inner.breaker.probe_ended(ok);
                if ok {
                    inner.metrics.circuit_state.set(State::Closed as i64);
                    tracing::info!(cache = %inner.settings.name, "Redis store answers again: circuit closed");
                    return;
                }
                inner.metrics.circuit_state.set(State::Open as i64);
            }
        });
    }

    /// Runs one command.
    async fn query<T: FromRedisValue>(self: &Arc<Self>, cmd: Cmd) -> Result<T, StoreError> {
        let cmd = &cmd;
        self.run(move |mut c| async move { cmd.query_async::<T>(&mut c).await })
            .await
    }

    /// Runs one script on one key (EVALSHA; EVAL when Redis does not know it yet).
    async fn script<T: FromRedisValue>(
        self: &Arc<Self>,
        script: &Script,
        key: &str,
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let mut inv = script.key(self.key(key));
        for a in args {
            inv.arg(*a);
        }
        let inv = &inv;
        self.run(move |mut c| async move { inv.invoke_async::<T>(&mut c).await })
            .await
    }

    /// The client-side cache for `key`, if it has one (starting its tracking connection on
    /// first use, inside the runtime).
    fn cache_for(&self, key: &str) -> Option<&Arc<LocalCache>> {
        let (cache, client) = self.cache.as_ref()?;
        if !cacheable(key) {
            return None;
        }
        if !self.tracking_started.load(Ordering::Relaxed)
            && !self.tracking_started.swap(true, Ordering::AcqRel)
        {
            tokio::spawn(client_cache::track(
                Arc::downgrade(cache),
                client.clone(),
                self.settings.timeout,
                self.failures.clone(),
            ));
        }
        Some(cache)
    }

    /// Our own write of `key` (before and after it): the local copy goes.
    fn forget(&self, key: &str) {
        if let Some((cache, _)) = &self.cache {
            if cacheable(key) {
                cache.forget(key);
            }
        }
    }

    async fn get(self: &Arc<Self>, key: &str) -> Result<Option<Bytes>, StoreError> {
        if let Some(cache) = self.cache_for(key) {
            if !self.breaker.allows() {
                return Err(self.rejected());
            }
            match cache.lookup(key) {
                Lookup::Hit(v) => return Ok(Some(v)),
                Lookup::Miss(ticket, mut conn) => {
                    // read on the tracking connection, so Redis tracks the key for us
                    let generation = LocalCache::generation_of(&ticket);
                    let deadline = tokio::time::Instant::now() + self.settings.timeout;
                    let full = self.key(key);
                    let mut pipe = redis::pipe();
                    pipe.cmd("GET").arg(&full).cmd("PTTL").arg(&full);
                    let sent = cache.now_ms();
                    let read = pipe.query_async::<(Option<Vec<u8>>, i64)>(&mut conn);
                    match tokio::time::timeout_at(deadline, read).await {
                        Ok(Ok((value, ttl))) => {
                            self.breaker.succeeded();
                            let value = value.map(Bytes::from);
                            if let Some(v) = &value {
                                cache.insert(key, v.clone(), ttl, sent, ticket);
                            }
                            return Ok(value);
                        }
                        // the tracking connection failed (killed, dropped): it is replaced in
                        // the background; this read goes the normal way, in what is left of
                        // the time
                        Ok(Err(_)) => {
                            cache.lost(generation);
                            let mut cmd = redis::cmd("GET");
                            cmd.arg(full);
                            let cmd = &cmd;
                            return match self
                                .attempt(deadline, move |mut c| async move {
                                    cmd.query_async::<Option<Vec<u8>>>(&mut c).await
                                })
                                .await
                            {
                                Ok(v) => {
                                    self.breaker.succeeded();
                                    Ok(bytes(v))
                                }
                                Err(f) => Err(self.failed(f)),
                            };
                        }
                        Err(_) => {
                            cache.lost(generation);
                            return Err(self.failed(Failure::Timeout));
                        }
                    }
                }
                Lookup::Bypass => {}
            }
        }
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(key));
        self.query::<Option<Vec<u8>>>(cmd).await.map(bytes)
    }
}

fn bytes(v: Option<Vec<u8>>) -> Option<Bytes> {
    v.map(Bytes::from)
}

#[async_trait]
impl Store for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), StoreError> {
        let s = &self.inner;
        let mut cmd = redis::cmd("SET");
        cmd.arg(s.key(key))
            .arg(value.as_ref())
            .arg("PX")
            .arg(millis(ttl));
        s.forget(key);
        let r = s.query::<()>(cmd).await;
        s.forget(key);
        r
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let s = &self.inner;
        let mut cmd = redis::cmd("SET");
        cmd.arg(s.key(key))
            .arg(value.as_ref())
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        s.forget(key);
        // "OK" when set, nil when the key exists
        let r = s.query::<Option<String>>(cmd).await.map(|r| r.is_some());
        s.forget(key);
        r
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let s = &self.inner;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(s.key(key));
        s.forget(key);
        let r = s.query::<u64>(cmd).await.map(|n| n > 0);
        s.forget(key);
        r
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let s = &self.inner;
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(s.key(key));
        s.forget(key);
        let r = s.query::<Option<Vec<u8>>>(cmd).await.map(bytes);
        s.forget(key);
        r
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: &[u8],
        new: Bytes,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let s = &self.inner;
        let ms = millis(ttl).to_string();
        s.forget(key);
        let r = s
            .script::<i64>(
                &s.compare_and_set,
                key,
                &[expected, new.as_ref(), ms.as_bytes()],
            )
            .await
            .map(|n| n == 1);
        s.forget(key);
        r
    }

    async fn increment(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        let s = &self.inner;
        let ms = millis(ttl).to_string();
        s.forget(key);
        let r = s.script::<u64>(&s.increment, key, &[ms.as_bytes()]).await;
        s.forget(key);
        r
    }

    async fn decrement(&self, key: &str) -> Result<u64, StoreError> {
        let s = &self.inner;
        s.forget(key);
        let r = s.script::<u64>(&s.decrement, key, &[]).await;
        s.forget(key);
        r
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner
            .query::<String>(redis::cmd("PING"))
            .await
            .map(|_| ())
    }
}
