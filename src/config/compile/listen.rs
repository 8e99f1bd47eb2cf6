//! `http.limits` (header/body read timeouts, the connection cap) and `http.adminAddress`
//! (the operators' listener).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::{unknown_ref, Ctx};
use crate::config::model::*;
use crate::config::source::ConfigPath;
use crate::runtime::Listen;
use crate::server::conn::Limits;
use crate::tls;

/// Bounds of the timeouts: under a second is no use to a real client; over five minutes
/// defeats the point of the limit.
const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=300;
const MAX_CONNECTIONS_RANGE: std::ops::RangeInclusive<u64> = 1..=1_000_000;

fn bounded(
    value: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    key: &str,
    hint: &str,
    ctx: &mut Ctx<'_>,
) -> Option<u64> {
    let v = value.unwrap_or(default);
    if range.contains(&v) {
        return Some(v);
    }
    ctx.diags.error_hint(
        &ConfigPath::root().key("http").key("limits").key(key),
        format!("{key} {v} is outside {} ..= {}", range.start(), range.end()),
        hint,
    );
    None
}

/// `http.limits` with its defaults.
pub(super) fn compile_limits(http: Option<&HttpConfig>, ctx: &mut Ctx<'_>) -> Option<Limits> {
    let l = http.and_then(|h| h.limits.as_ref());
    let defaults = Limits::default();
    let header = bounded(
        l.and_then(|l| l.headerReadTimeoutSeconds),
        defaults.header_read_timeout.as_secs(),
        TIMEOUT_RANGE,
        "headerReadTimeoutSeconds",
        "the default, 10, gives slow networks time and bounds idle connections",
        ctx,
    );
    let body = bounded(
        l.and_then(|l| l.bodyReadTimeoutSeconds),
        defaults.body_read_timeout.as_secs(),
        TIMEOUT_RANGE,
        "bodyReadTimeoutSeconds",
        "the default, 10, is ample for the small forms the gateway reads",
        ctx,
    );
    let conns = bounded(
        l.and_then(|l| l.maxConnections),
        defaults.max_connections as u64,
        MAX_CONNECTIONS_RANGE,
        "maxConnections",
        "keep it below the process's open-file limit (ulimit -n), e.g. 10000",
        ctx,
    );
    Some(Limits {
        header_read_timeout: Duration::from_secs(header?),
        body_read_timeout: Duration::from_secs(body?),
        max_connections: usize::try_from(conns?).ok()?,
    })
}

/// `http.adminAddress`: parsed, and refused when it would take the main listener's port.
/// `Some(None)` = not set (valid); `None` = invalid (reported).
pub(super) fn compile_admin(
    http: Option<&HttpConfig>,
    main: SocketAddr,
    metrics_served: bool,
    ctx: &mut Ctx<'_>,
    warnings: &mut Vec<String>,
) -> Option<Option<SocketAddr>> {
    let path = ConfigPath::root().key("http").key("adminAddress");
    let Some(text) = http.and_then(|h| h.adminAddress.as_deref()) else {
        if metrics_served {
            warnings.push(
                "telemetry.metrics is served on the main listener to every client that can \
reach it: set http.adminAddress (e.g. 127.0.0.1:9090) to serve it to operators only"
                    .to_string(),
            );
        }
        return Some(None);
    };
    let admin = match parse_address(text) {
        Ok(a) => a,
        Err(e) => {
            ctx.diags
                .error_hint(&path, e, "write `127.0.0.1:9090` or `:9090`");
            return None;
        }
    };
    let overlaps = admin.port() != 0
        && admin.port() == main.port()
        && (admin.ip() == main.ip() || admin.ip().is_unspecified() || main.ip().is_unspecified());
    if overlaps {
        ctx.diags.error_hint(
            &path,
            format!("`{text}` is the main listener's address ({main})"),
            "give the admin listener its own port, e.g. 127.0.0.1:9090",
        );
        return None;
    }
    Some(Some(admin))
}

/// `host:port`, `:port` (all interfaces) or `[v6]:port`.
pub(super) fn parse_address(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.to_socket_addrs()
        .map_err(|e| format!("`{s}` is not a listen address ({e})"))?
        .next()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

pub(super) fn compile_listen(
    http: Option<&HttpConfig>,
    metrics_served: bool,
    ctx: &mut Ctx<'_>,
    warnings: &mut Vec<String>,
) -> Option<Listen> {
    let path = ConfigPath::root().key("http");
    let tls_cfg = match http.and_then(|h| h.tls.as_deref()) {
        None => None,
        Some(name) => match ctx.tls.get(name) {
            None => {
                unknown_ref(
                    ctx,
                    &path.key("tls"),
                    "TLS profile",
                    name,
                    ctx.tls.keys().cloned().collect(),
                );
                return None;
            }
            Some(p) => {
                let ppath = ConfigPath::root().key("tls").key(name);
                match (&p.certFile, &p.keyFile) {
                    (Some(c), Some(k)) => {
                        let (cert, key) = (ctx.file(c), ctx.file(k));
                        match tls::server_config(&cert, &key, p.minVersion.as_deref()) {
                            Ok(cfg) => Some(cfg),
                            Err(e) => {
                                ctx.diags.error(&ppath.key("certFile"), e);
                                return None;
                            }
                        }
                    }
                    _ => {
                        ctx.diags.error_hint(
                            &path.key("tls"),
                            format!(
                                "TLS profile `{name}` has no certFile/keyFile for the listener"
                            ),
                            format!("add certFile and keyFile to tls.{name}"),
                        );
                        return None;
                    }
                }
            }
        },
    };
    let default_addr = if tls_cfg.is_some() { ":8443" } else { ":8080" };
    let (addr_text, addr_path, from_env) = match std::env::var("TESSERA_HTTP_ADDRESS") {
        Ok(v) if !v.trim().is_empty() => (v, path.key("address"), true),
        _ => (
            http.and_then(|h| h.address.clone())
                .unwrap_or_else(|| default_addr.to_string()),
            path.key("address"),
            false,
        ),
    };
    let address = match parse_address(&addr_text) {
        Ok(a) => a,
        Err(e) => {
            let hint = if from_env {
                "fix TESSERA_HTTP_ADDRESS"
            } else {
                "write `:8443` or `127.0.0.1:8443`"
            };
            ctx.diags.error_hint(&addr_path, e, hint);
            return None;
        }
    };
    let limits = compile_limits(http, ctx);
    let admin = compile_admin(http, address, metrics_served, ctx, warnings);
    Some(Listen {
        address,
        tls: tls_cfg,
        shutdown_timeout: Duration::from_secs(
            http.and_then(|h| h.shutdownTimeoutSeconds).unwrap_or(10),
        ),
        limits: limits?,
        admin: admin?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use crate::config::{load_str, Environment};
    use crate::secrets::SecretProvider;
    use crate::store::StorePool;
    use crate::telemetry::metrics::Metrics;

    fn compile(http: &str) -> Result<crate::runtime::Runtime, String> {
        let secrets = SecretProvider::Env;
        let env = Environment {
            secrets: &secrets,
            stores: Arc::new(StorePool::new()),
            metrics: Arc::new(Metrics::new()),
        };
        let yaml = format!("version: 1\nhttp:\n{http}");
        load_str(&yaml, Path::new("t.yaml"), Path::new("."), &env).map_err(|r| r.to_string())
    }

    #[test]
    fn defaults() {
        let rt = compile("  address: \"127.0.0.1:0\"\n").unwrap();
        let l = &rt.listen.limits;
        assert_eq!(l.header_read_timeout.as_secs(), 10);
        assert_eq!(l.body_read_timeout.as_secs(), 10);
        assert_eq!(l.max_connections, 10_000);
        assert_eq!(rt.listen.admin, None);
    }

    #[test]
    fn values_are_read() {
        let rt = compile(
            "  address: \"127.0.0.1:8080\"\n  adminAddress: \"127.0.0.1:9090\"\n  limits: { headerReadTimeoutSeconds: 3, bodyReadTimeoutSeconds: 4, maxConnections: 5 }\n",
        )
        .unwrap();
        let l = &rt.listen.limits;
        assert_eq!(l.header_read_timeout.as_secs(), 3);
        assert_eq!(l.body_read_timeout.as_secs(), 4);
        assert_eq!(l.max_connections, 5);
        assert_eq!(rt.listen.admin, Some("127.0.0.1:9090".parse().unwrap()));
    }

    #[test]
    fn bad_limits_are_reported_with_positions() {
        for (limits, expected) in [
            (
                "{ headerReadTimeoutSeconds: 0 }",
                "t.yaml:4:13: headerReadTimeoutSeconds 0 is outside 1 ..= 300\n    hint: the default, 10,",
            ),
            (
                "{ bodyReadTimeoutSeconds: 301 }",
                "t.yaml:4:13: bodyReadTimeoutSeconds 301 is outside 1 ..= 300\n    hint: the default, 10, is ample",
            ),
            (
                "{ maxConnections: 0 }",
                "t.yaml:4:13: maxConnections 0 is outside 1 ..= 1000000\n    hint: keep it below",
            ),
            (
                "{ maxConnections: -1 }",
                "t.yaml:4:13: invalid value: integer `-1`, expected a whole number",
            ),
            ("{ maxConnection: 5 }", "unknown key `maxConnection`"),
        ] {
            let err = compile(&format!("  address: \"127.0.0.1:0\"\n  limits: {limits}\n"))
                .unwrap_err();
            assert!(err.contains(expected), "{limits}: {err}");
        }
    }

    #[test]
    fn bad_admin_addresses_are_reported() {
        for (http, expected) in [
            (
                "  address: \"127.0.0.1:0\"\n  adminAddress: \"nowhere:x\"\n",
                "t.yaml:4:3: `nowhere:x` is not a listen address",
            ),
            (
                "  address: \"127.0.0.1:8080\"\n  adminAddress: \"127.0.0.1:8080\"\n",
                "t.yaml:4:3: `127.0.0.1:8080` is the main listener's address (127.0.0.1:8080)\n    hint: give the admin listener its own port",
            ),
            (
                "  address: \":8080\"\n  adminAddress: \"127.0.0.1:8080\"\n",
                "is the main listener's address (0.0.0.0:8080)",
            ),
        ] {
            let err = compile(http).unwrap_err();
            assert!(err.contains(expected), "{http}: {err}");
        }
    }

    #[test]
    fn metrics_on_the_main_listener_warn() {
        let metrics = "telemetry: { metrics: { location: /metrics } }\n";
        let secrets = SecretProvider::Env;
        let env = Environment {
            secrets: &secrets,
            stores: Arc::new(StorePool::new()),
            metrics: Arc::new(Metrics::new()),
        };
        let load = |http: &str| {
            let yaml = format!("version: 1\nhttp: {http}\n{metrics}");
            load_str(&yaml, Path::new("t.yaml"), Path::new("."), &env).unwrap()
        };
        let open = load("{ address: \"127.0.0.1:0\" }");
        assert!(
            open.warnings
                .iter()
                .any(|w| w.contains("set http.adminAddress")),
            "{:?}",
            open.warnings
        );
        let admin = load("{ address: \"127.0.0.1:0\", adminAddress: \"127.0.0.1:0\" }");
        assert!(!admin
            .warnings
            .iter()
            .any(|w| w.contains("http.adminAddress")));
    }
}
