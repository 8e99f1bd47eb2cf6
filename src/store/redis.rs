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

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisFuture, RedisResult, Script, TlsCertificates, Value,
};

use super::{Store, StoreError};

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
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("addresses", &self.addresses)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("tls", &self.tls.is_some())
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
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
    settings: RedisSettings,
    target: Target,
    /// Made on first use, inside the async runtime; never blocks start-up.
    conn: OnceLock<Result<Conn, String>>,
    compare_and_set: Script,
    increment: Script,
    decrement: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

/// Milliseconds for `PX`: at least 1 (Redis refuses 0).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    /// Checks the settings and prepares the client; does not connect.
    pub fn new(settings: RedisSettings) -> Result<Self, String> {
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
            let client = match certs {
                Some(c) => Client::build_with_tls(info, c),
                None => Client::open(info),
            }
            .map_err(|e| e.to_string())?;
            Target::Single(client)
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
        Ok(Self {
            settings,
            target,
            conn: OnceLock::new(),
            compare_and_set: Script::new(COMPARE_AND_SET),
            increment: Script::new(INCREMENT),
            decrement: Script::new(DECREMENT),
        })
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

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

    /// Runs `op` on the connection, bounded by the timeout. A refused connection means the
    /// command never left and the manager has just started reconnecting (Redis may be back
    /// after a long outage), so it is tried once more within the same bound.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = self.conn()?;
        let attempt = async {
            match op(conn.clone()).await {
                Err(e) if e.is_connection_refusal() => op(conn).await,
                r => r,
            }
        };
        match tokio::time::timeout(self.settings.timeout, attempt).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable(format!(
                "no answer within {} ms",
                self.settings.timeout.as_millis()
            ))),
        }
    }

    /// Runs one command.
    async fn query<T: FromRedisValue>(&self, cmd: Cmd) -> Result<T, StoreError> {
        let cmd = &cmd;
        self.run(move |mut c| async move { cmd.query_async::<T>(&mut c).await })
            .await
    }

    /// Runs one script on one key (EVALSHA; EVAL when Redis does not know it yet).
    async fn script<T: FromRedisValue>(
        &self,
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
}

fn bytes(v: Option<Vec<u8>>) -> Option<Bytes> {
    v.map(Bytes::from)
}

#[async_trait]
impl Store for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(key));
        self.query::<Option<Vec<u8>>>(cmd).await.map(bytes)
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value.as_ref())
            .arg("PX")
            .arg(millis(ttl));
        self.query::<()>(cmd).await
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value.as_ref())
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        // "OK" when set, nil when the key exists
        self.query::<Option<String>>(cmd).await.map(|r| r.is_some())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(key));
        self.query::<u64>(cmd).await.map(|n| n > 0)
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(self.key(key));
        self.query::<Option<Vec<u8>>>(cmd).await.map(bytes)
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: &[u8],
        new: Bytes,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ms = millis(ttl).to_string();
        self.script::<i64>(
            &self.compare_and_set,
            key,
            &[expected, new.as_ref(), ms.as_bytes()],
        )
        .await
        .map(|n| n == 1)
    }

    async fn increment(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        let ms = millis(ttl).to_string();
        self.script::<u64>(&self.increment, key, &[ms.as_bytes()])
            .await
    }

    async fn decrement(&self, key: &str) -> Result<u64, StoreError> {
        self.script::<u64>(&self.decrement, key, &[]).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(redis::cmd("PING")).await.map(|_| ())
    }
}
