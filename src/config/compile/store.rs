//! A Redis cache's resilience settings: `clientCache` (local session cache with
//! server-assisted invalidation) and `circuitBreaker` (fail fast while Redis is known down).

use std::time::Duration;

use super::Ctx;
use crate::config::model::{CircuitBreakerConfig, RedisClientCacheConfig};
use crate::config::source::ConfigPath;
use crate::store::breaker::{DEFAULT_FAILURES, DEFAULT_PROBE_INTERVAL, DEFAULT_WINDOW};
use crate::store::client_cache::{DEFAULT_LEASE, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_MIB};
use crate::store::{BreakerSettings, ClientCacheSettings};

/// Largest `maxEntries` and `maxMiB` (beyond them the number is a typo).
const MAX_ENTRIES: u64 = 10_000_000;
const MAX_MIB: u64 = 64 * 1024;
/// Longest lease: trust without a heartbeat longer than this would make a partitioned
/// replica serve ended sessions for too long.
const MAX_LEASE_MILLIS: u64 = 10_000;
const MAX_WINDOW_SECONDS: u64 = 3600;
const MAX_PROBE_MILLIS: u64 = 60_000;

/// `value` within `1..=max` (else a positioned error and `None`).
fn bounded(
    value: Option<u64>,
    default: u64,
    max: u64,
    path: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<u64> {
    match value {
        None => Some(default),
        Some(0) => {
            ctx.diags.error(path, "must be greater than 0");
            None
        }
        Some(n) if n > max => {
            ctx.diags.error_hint(
                path,
                format!("{n} is too large"),
                format!("use at most {max}"),
            );
            None
        }
        Some(n) => Some(n),
    }
}

/// `clientCache` at `p`; `cluster`: the cache has several addresses (then it stays off, and
/// asking for it is an error).
pub(super) fn client_cache(
    cfg: Option<&RedisClientCacheConfig>,
    cluster: bool,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<ClientCacheSettings> {
    let d = ClientCacheSettings::default();
    let Some(cfg) = cfg else {
        return Some(ClientCacheSettings {
            enabled: !cluster,
            ..d
        });
    };
    let asked = cfg.enabled;
    if cluster && asked == Some(true) {
        ctx.diags.error_hint(
            &p.key("enabled"),
            "client-side caching needs a single Redis server; a Redis Cluster is not cached",
            "remove `clientCache` (or set `enabled: false`)",
        );
        return None;
    }
    let entries = bounded(
        cfg.maxEntries,
        DEFAULT_MAX_ENTRIES as u64,
        MAX_ENTRIES,
        &p.key("maxEntries"),
        ctx,
    );
    let mib = bounded(
        cfg.maxMiB,
        DEFAULT_MAX_MIB as u64,
        MAX_MIB,
        &p.key("maxMiB"),
        ctx,
    );
    let lease = bounded(
        cfg.leaseMillis,
        DEFAULT_LEASE.as_millis() as u64,
        MAX_LEASE_MILLIS,
        &p.key("leaseMillis"),
        ctx,
    );
    Some(ClientCacheSettings {
        enabled: asked.unwrap_or(true) && !cluster,
        max_entries: usize::try_from(entries?).ok()?,
        max_bytes: usize::try_from(mib? * 1024 * 1024).ok()?,
        lease: Duration::from_millis(lease?),
    })
}

/// `circuitBreaker` at `p`.
pub(super) fn breaker(
    cfg: Option<&CircuitBreakerConfig>,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<BreakerSettings> {
    let Some(cfg) = cfg else {
        return Some(BreakerSettings::default());
    };
    let failures = bounded(
        cfg.failures.map(u64::from),
        u64::from(DEFAULT_FAILURES),
        1000,
        &p.key("failures"),
        ctx,
    );
    let window = bounded(
        cfg.windowSeconds,
        DEFAULT_WINDOW.as_secs(),
        MAX_WINDOW_SECONDS,
        &p.key("windowSeconds"),
        ctx,
    );
    let probe = bounded(
        cfg.probeIntervalMillis,
        DEFAULT_PROBE_INTERVAL.as_millis() as u64,
        MAX_PROBE_MILLIS,
        &p.key("probeIntervalMillis"),
        ctx,
    );
    Some(BreakerSettings {
        enabled: cfg.enabled.unwrap_or(true),
        failures: u32::try_from(failures?).ok()?,
        window: Duration::from_secs(window?),
        probe_interval: Duration::from_millis(probe?),
    })
}
