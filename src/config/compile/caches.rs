//! `caches`: named shared stores (Redis), and resolving a reference to one (`session.store`,
//! `oidcProvider.cache`). `default` always names the in-memory store of the `Environment`.

use std::collections::HashSet;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_yaml_ng::Value;

use super::{check_name, list, tagged, unknown_ref, Ctx};
use crate::config::decode::decode;
use crate::config::model::RedisCacheEntry;
use crate::config::source::ConfigPath;
use crate::config::Environment;
use crate::store::{RedisSettings, RedisTls, Store};

/// The name of the in-memory store.
pub const DEFAULT_STORE: &str = "default";
const CACHE_TYPES: [&str; 1] = ["redis"];
const DEFAULT_PORT: u16 = 6379;
const DEFAULT_PREFIX: &str = "tessera:";
const DEFAULT_TIMEOUT_MILLIS: u64 = 500;

/// Compiles the `caches` section into `ctx.caches` (plus `default`, the memory store).
/// Nothing connects here: Redis stores connect on first use.
pub(super) fn compile_caches(v: Option<&Value>, env: &Environment<'_>, ctx: &mut Ctx<'_>) {
    ctx.caches
        .insert(DEFAULT_STORE.to_string(), Some(env.stores.memory()));
    let path = ConfigPath::root().key("caches");
    let mut seen = HashSet::new();
    for (i, item) in list(v, &path, ctx).iter().enumerate() {
        let p = path.index(i);
        // a broken cache still reserves its name, so references to it add no noise
        let name = item.get("name").and_then(Value::as_str).map(str::to_string);
        let reserve = |ctx: &mut Ctx<'_>| {
            if let Some(n) = &name {
                ctx.caches.entry(n.clone()).or_insert(None);
            }
        };
        let Some((_t, rest)) = tagged(item, &p, &CACHE_TYPES, &[], "cache", ctx) else {
            reserve(ctx);
            continue;
        };
        let Some(cfg) = decode::<RedisCacheEntry>(&rest, &p, ctx.diags) else {
            reserve(ctx);
            continue;
        };
        if cfg.name == DEFAULT_STORE {
            ctx.diags.error_hint(
                &p.key("name"),
                "`default` names the in-memory store",
                "give this cache another name, e.g. `shared`",
            );
            continue;
        }
        if !check_name(&cfg.name, &p.key("name"), &mut seen, "cache", ctx) {
            continue;
        }
        let store = compile_redis(&cfg, &p.key("redis"), ctx).and_then(|settings| {
            env.stores
                .redis(settings, &env.metrics)
                .map_err(|e| {
                    ctx.diags
                        .error(&p, format!("cannot set up the Redis client: {e}"))
                })
                .ok()
        });
        ctx.caches.insert(cfg.name, store);
    }
}

/// Resolves a reference to a store: `None` or `default` = the memory store, else a cache by
/// name (unknown: a positioned error with the closest name). The store is recorded as in
/// use, so readiness (`/status`) checks it. `None` when it cannot be resolved (the error is
/// already reported).
pub(in crate::config) fn store_ref(
    name: Option<&str>,
    path: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<Arc<dyn Store>> {
    let name = name.unwrap_or(DEFAULT_STORE);
    match ctx.caches.get(name) {
        Some(Some(store)) => {
            let store = store.clone();
            ctx.stores_in_use.insert(name.to_string(), store.clone());
            Some(store)
        }
        Some(None) => None,
        None => {
            let mut known: Vec<String> = ctx.caches.keys().cloned().collect();
            known.sort();
            unknown_ref(ctx, path, "cache", name, known);
            None
        }
    }
}

/// Checks a Redis cache's settings; the client itself comes from the `StorePool`.
fn compile_redis(
    entry: &RedisCacheEntry,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<RedisSettings> {
    let cfg = &entry.redis;
    let mut ok = true;
    let mut addresses = Vec::new();
    if cfg.addresses.is_empty() {
        ctx.diags.error_hint(
            &p.key("addresses"),
            "a Redis cache needs at least one address",
            "e.g. addresses: [\"127.0.0.1:6379\"]",
        );
        ok = false;
    }
    for (j, a) in cfg.addresses.iter().enumerate() {
        match parse_address(a) {
            Ok(addr) if addresses.contains(&addr) => {
                ctx.diags.error(
                    &p.key("addresses").index(j),
                    format!("address `{a}` is listed twice"),
                );
                ok = false;
            }
            Ok(addr) => addresses.push(addr),
            Err((msg, hint)) => {
                ctx.diags
                    .error_hint(&p.key("addresses").index(j), msg, hint);
                ok = false;
            }
        }
    }
    let db = cfg.db.unwrap_or(0);
    if db != 0 && cfg.addresses.len() > 1 {
        ctx.diags.error_hint(
            &p.key("db"),
            "a Redis Cluster (several addresses) has only database 0",
            "remove `db`, or use a separate keyPrefix per deployment",
        );
        ok = false;
    }
    for (k, v) in [("username", &cfg.username), ("password", &cfg.password)] {
        if v.as_deref() == Some("") {
            ctx.diags.error_hint(
                &p.key(k),
                format!("`{k}` is empty"),
                format!("omit `{k}` when Redis needs none"),
            );
            ok = false;
        }
    }
    if cfg.username.is_some() && cfg.password.is_none() {
        ctx.diags.error_hint(
            &p.key("username"),
            "a Redis username needs a password",
            "add `password: <redis.password>`",
        );
        ok = false;
    }
    let timeout = cfg.timeoutMillis.unwrap_or(DEFAULT_TIMEOUT_MILLIS);
    if timeout == 0 {
        ctx.diags.error(
            &p.key("timeoutMillis"),
            "`timeoutMillis` must be greater than 0",
        );
        ok = false;
    }
    let tls = match cfg.tls.as_deref() {
        None => None,
        Some(name) => match redis_tls(name, &p.key("tls"), ctx) {
            Some(t) => Some(t),
            None => {
                ok = false;
                None
            }
        },
    };
    let client_cache = super::store::client_cache(
        cfg.clientCache.as_ref(),
        cfg.addresses.len() > 1,
        &p.key("clientCache"),
        ctx,
    );
    let breaker = super::store::breaker(cfg.circuitBreaker.as_ref(), &p.key("circuitBreaker"), ctx);
    let (Some(client_cache), Some(breaker), true) = (client_cache, breaker, ok) else {
        return None;
    };
    Some(RedisSettings {
        name: entry.name.clone(),
        client_cache,
        breaker,
        addresses,
        username: cfg.username.clone(),
        password: cfg.password.clone(),
        db,
        tls,
        key_prefix: cfg
            .keyPrefix
            .clone()
            .unwrap_or_else(|| DEFAULT_PREFIX.to_string()),
        timeout: Duration::from_millis(timeout),
    })
}

/// `host:port`, `host` (port 6379), `[v6]:port` or `[v6]`.
fn parse_address(s: &str) -> Result<(String, u16), (String, String)> {
    let s = s.trim();
    let bad = |msg: String| {
        Err((
            msg,
            "write `host:port`, e.g. `redis.internal:6379` or `[::1]:6379`".to_string(),
        ))
    };
    if s.contains("://") {
        return Err((
            format!("`{s}` is a URL; a Redis address is `host:port`"),
            "drop the scheme; TLS is chosen with `tls`, the database with `db`".to_string(),
        ));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return bad(format!("`{s}` is not a Redis address"));
        };
        let host = &rest[..end];
        if host.parse::<Ipv6Addr>().is_err() {
            return bad(format!("`{host}` is not an IPv6 address"));
        }
        match &rest[end + 1..] {
            "" => (host, None),
            tail => match tail.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return bad(format!("`{s}` is not a Redis address")),
            },
        }
    } else {
        match s.matches(':').count() {
            0 => (s, None),
            1 => {
                let (h, p) = s.split_once(':').unwrap_or((s, ""));
                (h, Some(p))
            }
            _ => return bad(format!("`{s}`: write an IPv6 address in brackets")),
        }
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c))
    {
        return bad(format!("`{s}` has no valid host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return bad(format!("`{p}` is not a port number")),
        },
    };
    Ok((host.to_string(), port))
}

/// The TLS profile `name`, read for a Redis client: CA bundle and optional client certificate.
fn redis_tls(name: &str, path: &ConfigPath, ctx: &mut Ctx<'_>) -> Option<RedisTls> {
    let Some(profile) = ctx.tls.get(name) else {
        let known = ctx.tls.keys().cloned().collect();
        unknown_ref(ctx, path, "TLS profile", name, known);
        return None;
    };
    let ppath = ConfigPath::root().key("tls").key(name);
    if profile.minVersion.as_deref() == Some("1.3") {
        ctx.diags.error_hint(
            path,
            format!("TLS profile `{name}` asks for minVersion 1.3, which the Redis client cannot enforce (it offers TLS 1.2 and 1.3)"),
            "use a TLS profile without minVersion for this cache",
        );
        return None;
    }
    let (ca_file, cert_file, key_file) = (
        profile.caFile.clone(),
        profile.certFile.clone(),
        profile.keyFile.clone(),
    );
    let mut ok = true;
    let ca_pem = match ca_file {
        None => None,
        Some(f) => match read_pem(&ctx.file(&f), Pem::Certs) {
            Ok(b) => Some(b),
            Err(e) => {
                ctx.diags.error(&ppath.key("caFile"), e);
                ok = false;
                None
            }
        },
    };
    let client_pem = match (cert_file, key_file) {
        (None, None) => None,
        (Some(c), Some(k)) => {
            let cert = read_pem(&ctx.file(&c), Pem::Certs)
                .map_err(|e| ctx.diags.error(&ppath.key("certFile"), e));
            let key = read_pem(&ctx.file(&k), Pem::Key)
                .map_err(|e| ctx.diags.error(&ppath.key("keyFile"), e));
            match (cert, key) {
                (Ok(c), Ok(k)) => Some((c, k)),
                _ => {
                    ok = false;
                    None
                }
            }
        }
        (Some(_), None) | (None, Some(_)) => {
            ctx.diags.error_hint(
                &ppath,
                "a client certificate needs both certFile and keyFile",
                "add the missing one, or remove both",
            );
            ok = false;
            None
        }
    };
    ok.then_some(RedisTls { ca_pem, client_pem })
}

enum Pem {
    Certs,
    Key,
}

/// Reads a PEM file and checks it holds what it should.
fn read_pem(path: &std::path::Path, what: Pem) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match what {
        Pem::Certs => {
            let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("bad PEM in {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("no certificate found in {}", path.display()));
            }
        }
        Pem::Key => {
            PrivateKeyDer::from_pem_slice(&bytes)
                .map_err(|e| format!("no usable private key in {}: {e}", path.display()))?;
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::parse_address;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("127.0.0.1:6380").unwrap(),
            ("127.0.0.1".into(), 6380)
        );
        assert_eq!(
            parse_address("redis.internal").unwrap(),
            ("redis.internal".into(), 6379)
        );
        assert_eq!(parse_address("[::1]:7000").unwrap(), ("::1".into(), 7000));
        assert_eq!(parse_address("[::1]").unwrap(), ("::1".into(), 6379));
        for bad in [
            "redis://h:1",
            "::1:6379",
            ":6379",
            "h:0",
            "h:99999",
            "h:x",
            "[zz]:1",
            "h/x:1",
            "",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }
}
