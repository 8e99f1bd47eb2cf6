//! From a decoded document to the runtime: every reference resolved, every regex compiled,
//! every file read. All problems are collected; the runtime exists only if there are none.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use serde_yaml_ng::Value;

use super::decode::{closest, decode};
use super::model::*;
use super::source::{ConfigPath, Diagnostics};
use super::Environment;
use crate::claims::{AttrRef, Attributes, Template};
use crate::connectors::local::{check_hash, LocalUser};
use crate::connectors::{Connector, Connectors, LocalConnector};
use crate::edge::names::reserved;
use crate::extensions::HookKind;
use crate::proxy::headers::InjectedHeader;
use crate::proxy::policy::{Authorization, Location, Policy, PolicySet};
use crate::proxy::rules::parse_rule;
use crate::proxy::upstream::Upstream;
use crate::proxy::{AppLogout, ProxyApp};
use crate::runtime::{Listen, Logging, ReloadSettings, Runtime};
use crate::server::router::{RoutePattern, Router};
use crate::session::cookie::{CookieSpec, SameSite};
use crate::session::{SessionSettings, Sessions};
use crate::store::Store;
use crate::telemetry::traces::{traces_url, Settings as TracesSettings};
use crate::tls;

mod caches;
mod edge;
/// A store by reference (`None`/`default` = memory, else a cache name), for `session.store`
/// and `oidcProvider.cache`.
pub(super) use caches::store_ref;
mod extensions;
/// A hook position (`{ funcName, file | extension }`).
pub(super) use extensions::hook;
mod ldap;
mod listen;
/// An app's `attrProviders` (proxy and OIDC apps).
pub(super) use ldap::compile_attr_providers;
mod limits;
/// A connector's `throttle`.
pub(super) use limits::throttle;

const TOP_LEVEL: [&str; 13] = [
    "version",
    "http",
    "tls",
    "logger",
    "health",
    "telemetry",
    "reload",
    "session",
    "caches",
    "connectors",
    "apps",
    "oidcProvider",
    "serviceExtensions",
];
/// Keys of the contract that later versions implement: named, so the error says so.
const NOT_YET: &[&str] = &[];
const CONNECTOR_TYPES: [&str; 7] = [
    "local", "oidc", "okta", "azure", "auth0", "keycloak", "ldap",
];
const PLANNED_CONNECTOR_TYPES: [&str; 0] = [];
const APP_TYPES: [&str; 2] = ["proxy", "oidc"];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn resolve_file(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

pub(super) struct Ctx<'a> {
    pub(super) base: &'a Path,
    pub(super) diags: &'a mut Diagnostics,
    pub(super) tls: &'a BTreeMap<String, TlsProfile>,
    pub(super) connectors: HashSet<String>,
    /// Stores by cache name (`default` = memory); `None` for a cache whose config is broken.
    pub(super) caches: HashMap<String, Option<std::sync::Arc<dyn Store>>>,
    /// The stores something refers to; readiness pings each.
    pub(super) stores_in_use: BTreeMap<String, std::sync::Arc<dyn Store>>,
    /// Service extensions, loaded once per file.
    pub(super) extensions: extensions::Registry,
    /// `serviceExtensions` names: also valid attribute namespaces.
    pub(super) extension_names: HashSet<String>,
    /// Every file the configuration refers to (certificates, keys), so a reload can be
    /// triggered when one of them changes.
    pub(super) files: Vec<PathBuf>,
}

impl Ctx<'_> {
    /// `p` resolved against the configuration's directory, and remembered as referenced.
    pub(super) fn file(&mut self, p: &str) -> PathBuf {
        let path = resolve_file(self.base, p);
        if !self.files.contains(&path) {
            self.files.push(path.clone());
        }
        path
    }
}

pub fn compile(
    doc: &Value,
    base: &Path,
    env: &Environment<'_>,
    diags: &mut Diagnostics,
) -> Option<Runtime> {
    let root = ConfigPath::root();
    let Value::Mapping(top) = doc else {
        diags.error_hint(
            &root,
            "the configuration must be a mapping of sections",
            "start from config.example.yaml",
        );
        return None;
    };
    for key in top.keys() {
        let k = key.as_str().unwrap_or("?");
        if TOP_LEVEL.contains(&k) {
            continue;
        }
        if NOT_YET.contains(&k) {
            diags.error_hint(
                &root.key(k),
                format!("`{k}` is not supported by this version of Tessera yet"),
                "remove this section",
            );
            continue;
        }
        let hint = match closest(k, &strings(&TOP_LEVEL)) {
            Some(b) => format!("did you mean `{b}`?"),
            None => format!("valid sections: {}", TOP_LEVEL.join(", ")),
        };
        diags.error_hint(&root.key(k), format!("unknown key `{k}`"), hint);
    }
    let section = |k: &str| top.get(k).filter(|v| !v.is_null());

    match section("version") {
        None => diags.error_hint(
            &root,
            "missing required key `version`",
            "add `version: 1` at the top",
        ),
        Some(v) => match v.as_u64() {
            Some(1) => {}
            _ => diags.error_hint(
                &root.key("version"),
                "unsupported version",
                "this Tessera reads `version: 1`",
            ),
        },
    }
    let tls_profiles: BTreeMap<String, TlsProfile> = section("tls")
        .and_then(|v| decode(v, &root.key("tls"), diags))
        .unwrap_or_default();
    for (name, p) in &tls_profiles {
        if let Some(v) = &p.minVersion {
            if let Err(e) = tls::check_min_version(v) {
                diags.error(&root.key("tls").key(name).key("minVersion"), e);
            }
        }
    }
    let http: Option<HttpConfig> =
        section("http").and_then(|v| decode(v, &root.key("http"), diags));
    let logger: Option<LoggerConfig> =
        section("logger").and_then(|v| decode(v, &root.key("logger"), diags));
    let health: Option<HealthConfig> =
        section("health").and_then(|v| decode(v, &root.key("health"), diags));
    let telemetry: Option<TelemetryConfig> =
        section("telemetry").and_then(|v| decode(v, &root.key("telemetry"), diags));
    let session: Option<SessionConfig> =
        section("session").and_then(|v| decode(v, &root.key("session"), diags));
    let reload: Option<ReloadConfig> =
        section("reload").and_then(|v| decode(v, &root.key("reload"), diags));

    let mut ctx = Ctx {
        base,
        diags,
        tls: &tls_profiles,
        connectors: HashSet::new(),
        caches: HashMap::new(),
        stores_in_use: BTreeMap::new(),
        extensions: extensions::Registry::default(),
        extension_names: HashSet::new(),
        files: Vec::new(),
    };
    caches::compile_caches(section("caches"), env, &mut ctx);
    let session_store = store_ref(
        session.as_ref().and_then(|s| s.store.as_deref()),
        &root.key("session").key("store"),
        &mut ctx,
    );
    let mut warnings = Vec::new();
    let metrics_served = telemetry
        .as_ref()
        .and_then(|t| t.metrics.as_ref())
        .is_some_and(|m| m.location.is_some());
    let listen = compile_listen(http.as_ref(), metrics_served, &mut ctx, &mut warnings);
    let logging = compile_logging(logger.as_ref(), &mut ctx);
    let health_location = location_setting(
        health.as_ref().and_then(|h| h.location.as_deref()),
        "/status",
        &root.key("health").key("location"),
        &mut ctx,
    );
    let metrics_location = telemetry
        .as_ref()
        .and_then(|t| t.metrics.as_ref())
        .and_then(|m| m.location.as_deref())
        .map(|l| {
            location_setting(
                Some(l),
                l,
                &root.key("telemetry").key("metrics").key("location"),
                &mut ctx,
            )
        });
    let tracing = telemetry
        .as_ref()
        .and_then(|t| t.tracing.as_ref())
        .and_then(|t| compile_tracing(t, &mut ctx));
    let reload = compile_reload(reload.as_ref(), &mut ctx);
    let secure_cookies = edge::secure_cookies(
        session
            .as_ref()
            .and_then(|s| s.cookie.as_ref())
            .and_then(|c| c.secure.as_deref()),
        &mut ctx,
    );
    let login_flows = limits::login_flows(session.as_ref(), &mut ctx);
    let memory_bytes = limits::memory_store_bytes(session.as_ref(), &mut ctx);
    let settings = compile_session(
        session.as_ref(),
        listen.as_ref().is_some_and(|l| l.tls.is_some()),
        secure_cookies == Some(crate::edge::SecureCookies::Always),
        &mut ctx,
    );
    let trusted_proxies = edge::trusted_proxies(
        http.as_ref()
            .map(|h| h.trustedProxies.as_slice())
            .unwrap_or_default(),
        &mut ctx,
    );

    let connectors = compile_connectors(section("connectors"), &mut ctx);
    match crate::extensions::host::http_client() {
        Ok(http) => {
            let services = crate::extensions::Services {
                secrets: std::sync::Arc::new(env.secrets.clone()),
                cache: session_store.clone().unwrap_or_else(|| env.stores.memory()),
                connectors: connectors.clone(),
                metrics: env.metrics.clone(),
                http,
            };
            extensions::compile_service_extensions(
                section("serviceExtensions"),
                services,
                &mut ctx,
            );
        }
        Err(e) => ctx.diags.error(&root.key("serviceExtensions"), e),
    }
    let (apps, router, oidc_apps) = compile_apps(section("apps"), &connectors, &mut ctx);
    let provider = super::oidc::compile_provider(
        section("oidcProvider"),
        oidc_apps,
        &connectors,
        memory_bytes,
        &mut ctx,
    );

    let listen = listen?;
    let secure_cookies = secure_cookies?;
    if listen.tls.is_none() && secure_cookies == crate::edge::SecureCookies::Auto {
        warnings.push(
            "serving plain HTTP: cookies are Secure only for requests a trusted proxy reports as HTTPS; use a TLS profile, or session.cookie.secure: always behind a TLS-terminating proxy".to_string(),
        );
    }
    Some(Runtime {
        listen,
        logging: logging?,
        health_location,
        metrics_location,
        sessions: Sessions::new(session_store?, settings?),
        stores: std::mem::take(&mut ctx.stores_in_use),
        connectors,
        apps,
        router,
        metrics: env.metrics.clone(),
        provider,
        tracing,
        reload: reload?,
        files: std::mem::take(&mut ctx.files),
        warnings,
        background: Default::default(),
        edge: crate::edge::EdgeSettings {
            trusted_proxies: trusted_proxies?,
            secure_cookies,
        },
        login_flows,
        memory_budget: Some((env.stores.memory_budget(), memory_bytes)),
    })
}

/// `telemetry.tracing`: endpoint URL, service name, sampling ratio, collector trust.
fn compile_tracing(t: &TracingConfig, ctx: &mut Ctx<'_>) -> Option<TracesSettings> {
    let path = ConfigPath::root().key("telemetry").key("tracing");
    let mut ok = true;
    let endpoint = match t.otlpEndpoint.as_deref() {
        None => None,
        Some(e) => match traces_url(e) {
            Ok(u) => Some(u),
            Err(msg) => {
                ctx.diags.error_hint(
                    &path.key("otlpEndpoint"),
                    msg,
                    "write the collector's OTLP/HTTP base URL, e.g. http://collector:4318",
                );
                ok = false;
                None
            }
        },
    };
    let ratio = t.sampleRatio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&ratio) {
        ctx.diags.error_hint(
            &path.key("sampleRatio"),
            format!("sampleRatio {ratio} is outside 0.0 ..= 1.0"),
            "1.0 records every trace, 0.1 one in ten",
        );
        ok = false;
    }
    let service_name = t
        .serviceName
        .clone()
        .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "tessera".to_string());
    let tls = client_tls(t.tls.as_deref(), &path.key("tls"), ctx);
    Some(TracesSettings {
        endpoint,
        service_name,
        sample_ratio: ratio,
        tls: tls?,
        tls_profile: t.tls.clone(),
    })
    .filter(|_| ok)
}

/// `reload`: file watching on by default, checked every second.
fn compile_reload(r: Option<&ReloadConfig>, ctx: &mut Ctx<'_>) -> Option<ReloadSettings> {
    let interval = r.and_then(|r| r.intervalMillis).unwrap_or(1000);
    if interval < 100 {
        ctx.diags.error_hint(
            &ConfigPath::root().key("reload").key("intervalMillis"),
            format!("intervalMillis {interval} is too short"),
            "use at least 100 (the default, 1000, suits most deployments)",
        );
        return None;
    }
    Some(ReloadSettings {
        watch: r.and_then(|r| r.watch).unwrap_or(true),
        interval: Duration::from_millis(interval),
    })
}

/// `host:port`, `:port` (all interfaces) or `[v6]:port`.
fn parse_address(s: &str) -> Result<SocketAddr, String> {
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

fn compile_listen(
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
    let limits = listen::compile_limits(http, ctx);
    let admin = listen::compile_admin(http, address, metrics_served, ctx, warnings);
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

fn compile_logging(l: Option<&LoggerConfig>, ctx: &mut Ctx<'_>) -> Option<Logging> {
    let path = ConfigPath::root().key("logger");
    let level = l
        .and_then(|l| l.level.clone())
        .unwrap_or_else(|| "info".into());
    let known = ["trace", "debug", "info", "warn", "error", "off"];
    let plain_ok = known.contains(&level.to_ascii_lowercase().as_str());
    let directive_ok =
        level.contains('=') && tracing_subscriber::EnvFilter::try_new(&level).is_ok();
    let level_ok = plain_ok || directive_ok;
    if !level_ok {
        ctx.diags.error_hint(
            &path.key("level"),
            format!("invalid log level `{level}`"),
            "use trace, debug, info, warn or error",
        );
    }
    let json = match l.and_then(|l| l.format.as_deref()).unwrap_or("json") {
        "json" => true,
        "text" => false,
        other => {
            ctx.diags.error_hint(
                &path.key("format"),
                format!("invalid log format `{other}`"),
                "use json or text",
            );
            return None;
        }
    };
    if !level_ok {
        return None;
    }
    Some(Logging { level, json })
}

fn location_setting(
    value: Option<&str>,
    default: &str,
    path: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> String {
    let v = value.unwrap_or(default);
    if !v.starts_with('/') || v.starts_with(crate::login::PREFIX) {
        ctx.diags.error_hint(
            path,
            format!("`{v}` is not a usable path"),
            "use an absolute path like /status (not under /.tessera/)",
        );
    }
    v.to_string()
}

fn compile_session(
    s: Option<&SessionConfig>,
    tls_on: bool,
    always_secure: bool,
    ctx: &mut Ctx<'_>,
) -> Option<SessionSettings> {
    let path = ConfigPath::root().key("session");
    let cookie = s.and_then(|s| s.cookie.as_ref());
    let name = cookie
        .and_then(|c| c.name.clone())
        .unwrap_or_else(|| "tessera_session".into());
    let mut ok = true;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        ctx.diags.error_hint(
            &path.key("cookie").key("name"),
            format!("`{name}` is not a valid cookie name"),
            "use letters, digits, `-`, `_` or `.`",
        );
        ok = false;
    }
    if name == crate::login::FLOW_COOKIE {
        ctx.diags.error(
            &path.key("cookie").key("name"),
            format!("`{name}` is reserved by the login flow"),
        );
        ok = false;
    }
    let same_site = match cookie.and_then(|c| c.sameSite.as_deref()) {
        None => SameSite::Lax,
        Some(v) => match SameSite::parse(v) {
            Some(s) => s,
            None => {
                ctx.diags.error_hint(
                    &path.key("cookie").key("sameSite"),
                    format!("invalid sameSite `{v}`"),
                    "use Lax, Strict or None",
                );
                ok = false;
                SameSite::Lax
            }
        },
    };
    if same_site == SameSite::None && !tls_on && !always_secure {
        ctx.diags.error_hint(
            &path.key("cookie").key("sameSite"),
            "sameSite None needs TLS (browsers drop such cookies unless Secure)",
            "use Lax, configure http.tls, or set session.cookie.secure: always behind TLS",
        );
        ok = false;
    }
    let domain = cookie
        .and_then(|c| c.domain.clone())
        .filter(|d| !d.is_empty());
    let max = s.and_then(|s| s.maxLifetimeSeconds).unwrap_or(28800);
    let idle = s.and_then(|s| s.idleTimeoutSeconds).unwrap_or(1800);
    for (k, v) in [("maxLifetimeSeconds", max), ("idleTimeoutSeconds", idle)] {
        if v == 0 {
            ctx.diags
                .error(&path.key(k), format!("`{k}` must be greater than 0"));
            ok = false;
        }
    }
    // `store` is resolved by `store_ref` in `compile`
    ok.then(|| SessionSettings {
        cookie: CookieSpec {
            name,
            path: "/",
            domain,
            same_site,
            secure: tls_on || always_secure,
        },
        max_lifetime: Duration::from_secs(max),
        idle_timeout: Duration::from_secs(idle),
    })
}

pub(super) fn unknown_ref(
    ctx: &mut Ctx<'_>,
    path: &ConfigPath,
    what: &str,
    name: &str,
    known: Vec<String>,
) {
    let hint = match closest(name, &known) {
        Some(b) => format!("did you mean `{b}`?"),
        None if known.is_empty() => format!("no {what} is defined"),
        None => format!("defined: {}", known.join(", ")),
    };
    ctx.diags
        .error_hint(path, format!("unknown {what} `{name}`"), hint);
}

/// Splits a `type`-tagged item into its type and the remaining keys.
fn tagged(
    v: &Value,
    path: &ConfigPath,
    known: &[&str],
    planned: &[&str],
    what: &str,
    ctx: &mut Ctx<'_>,
) -> Option<(String, Value)> {
    let Value::Mapping(m) = v else {
        ctx.diags
            .error(path, format!("each {what} must be a mapping"));
        return None;
    };
    let Some(t) = m.get("type") else {
        ctx.diags.error_hint(
            path,
            format!("missing required key `type` for this {what}"),
            format!("use one of: {}", known.join(", ")),
        );
        return None;
    };
    let Some(t) = t.as_str() else {
        ctx.diags
            .error(&path.key("type"), "`type` must be a string");
        return None;
    };
    if planned.contains(&t) {
        ctx.diags.error_hint(
            &path.key("type"),
            format!("{what} type `{t}` is not supported by this version of Tessera yet"),
            format!("available: {}", known.join(", ")),
        );
        return None;
    }
    if !known.contains(&t) {
        let hint = match closest(t, &strings(known)) {
            Some(b) => format!("did you mean `{b}`?"),
            None => format!("use one of: {}", known.join(", ")),
        };
        ctx.diags.error_hint(
            &path.key("type"),
            format!("unknown {what} type `{t}`"),
            hint,
        );
        return None;
    }
    let mut rest = m.clone();
    rest.remove("type");
    Some((t.to_string(), Value::Mapping(rest)))
}

fn list<'a>(v: Option<&'a Value>, path: &ConfigPath, ctx: &mut Ctx<'_>) -> &'a [Value] {
    match v {
        None => &[],
        Some(Value::Sequence(s)) => s,
        Some(_) => {
            ctx.diags.error(path, "must be a list");
            &[]
        }
    }
}

/// The TLS client configuration for an outbound connection (upstream app, IdP): the CA of
/// the named profile, or the public web PKI without one. `None` = reported error.
pub(super) fn client_tls(
    profile: Option<&str>,
    path: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<rustls::ClientConfig> {
    match profile {
        None => tls::client_config(None, None)
            .map_err(|e| ctx.diags.error(path, e))
            .ok(),
        Some(name) => match ctx.tls.get(name) {
            None => {
                let known = ctx.tls.keys().cloned().collect();
                unknown_ref(ctx, path, "TLS profile", name, known);
                None
            }
            Some(prof) => {
                let ca = prof.caFile.as_deref().map(|c| ctx.file(c));
                tls::client_config(ca.as_deref(), prof.minVersion.as_deref())
                    .map_err(|e| {
                        ctx.diags
                            .error(&ConfigPath::root().key("tls").key(name).key("caFile"), e)
                    })
                    .ok()
            }
        },
    }
}

pub(super) fn check_name(
    name: &str,
    path: &ConfigPath,
    seen: &mut HashSet<String>,
    what: &str,
    ctx: &mut Ctx<'_>,
) -> bool {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    {
        ctx.diags.error_hint(
            path,
            format!("`{name}` is not a valid {what} name"),
            "use letters, digits, `_` and `-`",
        );
        return false;
    }
    if !seen.insert(name.to_string()) {
        ctx.diags
            .error(path, format!("duplicate {what} name `{name}`"));
        return false;
    }
    true
}

fn yaml_to_attr(v: &Value) -> Option<serde_json::Value> {
    match v {
        Value::String(s) => Some(s.clone().into()),
        Value::Bool(b) => Some((*b).into()),
        Value::Number(n) => serde_json::to_value(n).ok(),
        Value::Sequence(items) => items
            .iter()
            .map(|i| match i {
                Value::Sequence(_) | Value::Mapping(_) | Value::Null | Value::Tagged(_) => None,
                other => yaml_to_attr(other),
            })
            .collect::<Option<Vec<_>>>()
            .map(serde_json::Value::Array),
        _ => None,
    }
}

fn compile_connectors(v: Option<&Value>, ctx: &mut Ctx<'_>) -> Connectors {
    let path = ConfigPath::root().key("connectors");
    let mut out = Connectors::default();
    let mut seen = HashSet::new();
    for (i, item) in list(v, &path, ctx).iter().enumerate() {
        let p = path.index(i);
        let Some((t, rest)) = tagged(
            item,
            &p,
            &CONNECTOR_TYPES,
            &PLANNED_CONNECTOR_TYPES,
            "connector",
            ctx,
        ) else {
            // still reserve the name so references to it do not cascade into more errors
            if let Some(n) = item.get("name").and_then(Value::as_str) {
                ctx.connectors.insert(n.to_string());
            }
            continue;
        };
        // Reserve the name first, so references to a broken connector do not cascade.
        let name = rest.get("name").and_then(Value::as_str).map(str::to_string);
        if let Some(n) = &name {
            if !check_name(n, &p.key("name"), &mut seen, "connector", ctx) {
                continue;
            }
            ctx.connectors.insert(n.clone());
        }
        let connector = match t.as_str() {
            "local" => decode::<LocalConnectorConfig>(&rest, &p, ctx.diags)
                .and_then(|cfg| compile_local(cfg, &p, ctx))
                .map(Connector::Local),
            "oidc" | "okta" | "azure" | "auth0" | "keycloak" => {
                decode::<OidcConnectorConfig>(&rest, &p, ctx.diags)
                    .and_then(|cfg| super::upstream::compile_oidc_connector(&t, cfg, &p, ctx))
                    .map(Connector::Oidc)
            }
            "ldap" => decode::<LdapConnectorConfig>(&rest, &p, ctx.diags)
                .and_then(|cfg| ldap::compile_ldap(cfg, &p, ctx))
                .map(Connector::Ldap),
            _ => None,
        };
        if let Some(c) = connector {
            out.insert(c);
        }
    }
    out
}

fn compile_local(
    cfg: LocalConnectorConfig,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<LocalConnector> {
    let mut users = HashMap::new();
    let mut ok = true;
    for (j, u) in cfg.users.iter().enumerate() {
        let up = p.key("users").index(j);
        if u.username.is_empty() {
            ctx.diags
                .error(&up.key("username"), "username must not be empty");
            ok = false;
        }
        if let Err(e) = check_hash(&u.passwordHash) {
            ctx.diags.error_hint(
                &up.key("passwordHash"),
                e,
                "generate one with `tessera hash-password`",
            );
            ok = false;
        }
        let mut attributes = Attributes::new();
        for (k, v) in &u.attributes {
            match yaml_to_attr(v) {
                Some(a) => {
                    attributes.insert(k.clone(), a);
                }
                None => {
                    ctx.diags.error(
                        &up.key("attributes").key(k),
                        "attributes must be strings, numbers, booleans or lists of those",
                    );
                    ok = false;
                }
            }
        }
        let user = LocalUser {
            password_hash: u.passwordHash.clone(),
            attributes,
        };
        if users.insert(u.username.clone(), user).is_some() {
            ctx.diags.error(
                &up.key("username"),
                format!("duplicate username `{}`", u.username),
            );
            ok = false;
        }
    }
    let errors_before = ctx.diags.items.len();
    let throttle = throttle(cfg.throttle.as_ref(), &p.key("throttle"), ctx);
    ok &= ctx.diags.items.len() == errors_before;
    ok.then(|| LocalConnector::new(cfg.name, users, throttle))
}

pub(super) fn check_attr_ref(a: &AttrRef, path: &ConfigPath, ctx: &mut Ctx<'_>) {
    if !ctx.connectors.contains(a.connector()) && !ctx.extension_names.contains(a.connector()) {
        let known: Vec<String> = ctx.connectors.iter().cloned().collect();
        let hint = match closest(a.connector(), &known) {
            Some(b) => format!("did you mean `{b}.…`?"),
            None => "attributes are named `<connector>.<attribute>` after a configured connector"
                .to_string(),
        };
        ctx.diags.error_hint(
            path,
            format!(
                "`{}` refers to unknown connector `{}`",
                a.key(),
                a.connector()
            ),
            hint,
        );
    }
}

/// A redirect target in config: an absolute path or an http(s) URL.
fn check_target(s: &str, path: &ConfigPath, ctx: &mut Ctx<'_>) -> bool {
    let ok = (s.starts_with('/') && !s.starts_with("//"))
        || url::Url::parse(s)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !ok {
        ctx.diags.error_hint(
            path,
            format!("`{s}` is not a valid URL"),
            "use an absolute path like /403.html or an https:// URL",
        );
    }
    ok
}

fn compile_apps(
    v: Option<&Value>,
    connectors: &Connectors,
    ctx: &mut Ctx<'_>,
) -> (Vec<ProxyApp>, Router, Vec<(ConfigPath, OidcAppConfig)>) {
    let path = ConfigPath::root().key("apps");
    let mut apps = Vec::new();
    let mut oidc_apps = Vec::new();
    let mut routes = Vec::new();
    let mut seen = HashSet::new();
    let mut patterns: HashMap<RoutePattern, String> = HashMap::new();
    for (i, item) in list(v, &path, ctx).iter().enumerate() {
        let p = path.index(i);
        let Some((t, rest)) = tagged(item, &p, &APP_TYPES, &[], "app", ctx) else {
            continue;
        };
        if t == "oidc" {
            if let Some(cfg) = decode::<OidcAppConfig>(&rest, &p, ctx.diags) {
                if check_name(&cfg.name, &p.key("name"), &mut seen, "app", ctx) {
                    oidc_apps.push((p, cfg));
                }
            }
            continue;
        }
        let Some(cfg) = decode::<ProxyAppConfig>(&rest, &p, ctx.diags) else {
            continue;
        };
        if !check_name(&cfg.name, &p.key("name"), &mut seen, "app", ctx) {
            continue;
        }
        let mut app_routes = Vec::new();
        if cfg.routePatterns.is_empty() {
            ctx.diags.error_hint(
                &p.key("routePatterns"),
                "an app needs at least one route pattern",
                "e.g. routePatterns: [\"app.example.com/\"] or [\"/legacy\"]",
            );
        }
        for (j, rp) in cfg.routePatterns.iter().enumerate() {
            let rpath = p.key("routePatterns").index(j);
            match RoutePattern::parse(rp) {
                Err(e) => ctx.diags.error(&rpath, e),
                Ok(r) if r.prefix.starts_with(crate::login::PREFIX.trim_end_matches('/')) => {
                    ctx.diags.error(&rpath, "paths under /.tessera/ are reserved for the gateway")
                }
                Ok(r) => match patterns.get(&r) {
                    Some(other) if *other == cfg.name => ctx.diags.error(
                        &rpath,
                        format!("route pattern `{rp}` repeats another pattern of this app"),
                    ),
                    Some(other) => ctx.diags.error_hint(
                        &rpath,
                        format!("route pattern `{rp}` overlaps app `{other}`: both claim the same host and path"),
                        "give each app its own host or path prefix",
                    ),
                    None => {
                        patterns.insert(r.clone(), cfg.name.clone());
                        app_routes.push(if cfg.caseInsensitivePaths {
                            r.case_insensitive()
                        } else {
                            r
                        });
                    }
                },
            }
        }
        if let Some(app) = compile_proxy_app(cfg, &p, connectors, ctx) {
            let idx = apps.len();
            routes.extend(app_routes.into_iter().map(|r| (r, idx)));
            apps.push(app);
        }
    }
    (apps, Router::new(routes), oidc_apps)
}

fn compile_proxy_app(
    cfg: ProxyAppConfig,
    p: &ConfigPath,
    connectors: &Connectors,
    ctx: &mut Ctx<'_>,
) -> Option<ProxyApp> {
    let mut ok = true;
    // upstream
    let upstream_uri = match url::Url::parse(&cfg.upstream) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            ctx.diags.error_hint(
                &p.key("upstream"),
                format!("upstream scheme `{}` is not supported", u.scheme()),
                "use http:// or https://",
            );
            None
        }
        Ok(u) if u.host().is_none() => {
            ctx.diags
                .error(&p.key("upstream"), "upstream URL has no host");
            None
        }
        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
            ctx.diags.error(
                &p.key("upstream"),
                "upstream URL must not have a query or fragment",
            );
            None
        }
        Ok(u) => u.as_str().parse::<http::Uri>().ok(),
        Err(e) => {
            ctx.diags.error_hint(
                &p.key("upstream"),
                format!("`{}` is not a valid URL: {e}", cfg.upstream),
                "write e.g. http://127.0.0.1:9000",
            );
            None
        }
    };
    let client_tls = client_tls(cfg.tls.as_deref(), &p.key("tls"), ctx);
    let timeouts = cfg.timeouts.as_ref();
    let connect = Duration::from_millis(
        timeouts
            .and_then(|t| t.connectMillis)
            .unwrap_or(5000)
            .max(1),
    );
    let response = Duration::from_millis(
        timeouts
            .and_then(|t| t.responseHeaderMillis)
            .unwrap_or(60000)
            .max(1),
    );
    let upstream = match (upstream_uri, client_tls) {
        (Some(u), Some(t)) => match Upstream::new(&u, t, connect, response) {
            Ok(up) => Some(up),
            Err(e) => {
                ctx.diags.error(&p.key("upstream"), e);
                None
            }
        },
        _ => None,
    };
    if let Some(page) = &cfg.unauthorizedPage {
        ok &= check_target(page, &p.key("unauthorizedPage"), ctx);
    }
    // headers
    let mut headers = Vec::new();
    let mut header_hooks = Vec::new();
    let mut header_names = HashSet::new();
    // Headers a createHeaderSE hook sets (`name` beside it): protected like identity headers.
    let mut hook_header_names: Vec<HeaderName> = Vec::new();
    for (j, h) in cfg.headers.iter().enumerate() {
        let hp = p.key("headers").index(j);
        let (raw, value) = match (&h.name, &h.value, &h.createHeaderSE) {
            (name, None, Some(se)) => {
                if let Some(raw) = name {
                    match HeaderName::from_bytes(raw.as_bytes()) {
                        Ok(n) if !reserved(&n) => hook_header_names.push(n),
                        _ => {
                            ctx.diags.error_hint(
                                &hp.key("name"),
                                format!("`{raw}` cannot be a header a hook sets"),
                                "use letters, digits and `-`; not a header the gateway manages",
                            );
                            ok = false;
                        }
                    }
                }
                match hook(
                    Some(se),
                    HookKind::CreateHeaders,
                    &hp.key("createHeaderSE"),
                    ctx,
                ) {
                    Ok(Some(hk)) => header_hooks.push(hk),
                    _ => ok = false,
                }
                continue;
            }
            (Some(n), Some(v), None) => (n.as_str(), v),
            _ => {
                ctx.diags.error_hint(
                    &hp,
                    "a header entry has either `name` and `value`, or `createHeaderSE` (with an optional `name`)",
                    "e.g. { name: X-User, value: \"{{ okta.email }}\" }",
                );
                ok = false;
                continue;
            }
        };
        let name = match HeaderName::from_bytes(raw.as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                ctx.diags.error_hint(
                    &hp.key("name"),
                    format!("`{raw}` is not a valid header name"),
                    "use letters, digits and `-`",
                );
                ok = false;
                continue;
            }
        };
        if reserved(&name) {
            ctx.diags.error(
                &hp.key("name"),
                format!("`{raw}` is managed by the gateway and cannot be configured"),
            );
            ok = false;
            continue;
        }
        if !header_names.insert(name.clone()) {
            ctx.diags.error(
                &hp.key("name"),
                format!("header `{raw}` is configured twice"),
            );
            ok = false;
            continue;
        }
        match Template::parse(value) {
            Ok(t) => {
                for r in t.refs() {
                    check_attr_ref(r, &hp.key("value"), ctx);
                }
                headers.push(InjectedHeader { name, template: t });
            }
            Err(e) => {
                ctx.diags.error_hint(
                    &hp.key("value"),
                    e,
                    "write placeholders as {{ connector.attribute }}",
                );
                ok = false;
            }
        }
    }
    // policies
    let mut policies = Vec::new();
    let mut locations = HashSet::new();
    if cfg.policies.is_empty() {
        ctx.diags.error_hint(
            &p.key("policies"),
            "an app needs at least one policy",
            "add a policy with `location: /`",
        );
        ok = false;
    }
    for (j, pol) in cfg.policies.iter().enumerate() {
        let pp = p.key("policies").index(j);
        match compile_policy(pol, &pp, connectors, ctx) {
            Some(mut policy) => {
                if cfg.caseInsensitivePaths {
                    policy.location = policy.location.folded();
                }
                if !locations.insert(pol.location.trim().to_string()) {
                    ctx.diags.error(
                        &pp.key("location"),
                        format!("location `{}` appears twice in this app", pol.location),
                    );
                    ok = false;
                }
                policies.push(policy);
            }
            None => ok = false,
        }
    }
    let logout = match &cfg.logout {
        None => None,
        Some(l) => {
            if !l.location.starts_with('/') {
                ctx.diags.error(
                    &p.key("logout").key("location"),
                    "logout location must be a path starting with `/`",
                );
                ok = false;
            }
            let redirect = l.redirectURL.clone().unwrap_or_else(|| "/".into());
            ok &= check_target(&redirect, &p.key("logout").key("redirectURL"), ctx);
            Some(AppLogout {
                location: if cfg.caseInsensitivePaths {
                    crate::edge::path::fold_case(&l.location)
                } else {
                    l.location.clone()
                },
                redirect,
            })
        }
    };
    let attr_providers = compile_attr_providers(&cfg.attrProviders, p, connectors, ctx);
    ok &= attr_providers.is_some();
    let load_attrs_se = hook(
        cfg.loadAttrsSE.as_ref(),
        HookKind::LoadAttributes,
        &p.key("loadAttrsSE"),
        ctx,
    );
    ok &= load_attrs_se.is_ok();
    let paths = edge::path_rules(&cfg, p, ctx);
    let upgrades = edge::upgrades(&cfg, p, ctx);
    let protected = crate::edge::names::ProtectedNames::with_trust_headers(
        headers
            .iter()
            .map(|h: &InjectedHeader| h.name.as_str())
            .chain(hook_header_names.iter().map(|n: &HeaderName| n.as_str())),
    );
    let upstream = upstream?;
    let (paths, upgrades) = (paths?, upgrades?);
    ok.then(|| ProxyApp {
        paths,
        upgrades,
        protected,
        load_attrs_se: load_attrs_se.ok().flatten(),
        header_hooks,
        attr_providers: attr_providers.unwrap_or_default(),
        name: cfg.name,
        upstream,
        preserve_host: cfg.preserveHost,
        unauthorized_page: cfg.unauthorizedPage,
        headers,
        policies: PolicySet::new(policies),
        logout,
    })
}

fn compile_policy(
    pol: &PolicyConfig,
    pp: &ConfigPath,
    connectors: &Connectors,
    ctx: &mut Ctx<'_>,
) -> Option<Policy> {
    let mut ok = true;
    let location = match Location::parse(&pol.location) {
        Ok(l) => Some(l),
        Err(e) => {
            ctx.diags.error(&pp.key("location"), e);
            None
        }
    };
    let authn = &pol.authentication;
    for (k, idp) in authn.idps.iter().enumerate() {
        if !ctx.connectors.contains(idp) {
            let known = ctx.connectors.iter().cloned().collect();
            unknown_ref(
                ctx,
                &pp.key("authentication").key("idps").index(k),
                "IdP",
                idp,
                known,
            );
            ok = false;
        } else if connectors.get(idp).is_some_and(|c| !c.can_login()) {
            ctx.diags.error(
                &pp.key("authentication").key("idps").index(k),
                format!("connector `{idp}` cannot log users in"),
            );
            ok = false;
        }
    }
    let is_authenticated_se = hook(
        authn.isAuthenticatedSE.as_ref(),
        HookKind::IsAuthenticated,
        &pp.key("authentication").key("isAuthenticatedSE"),
        ctx,
    );
    let authenticate_se = hook(
        authn.authenticateSE.as_ref(),
        HookKind::Authenticate,
        &pp.key("authentication").key("authenticateSE"),
        ctx,
    );
    ok &= is_authenticated_se.is_ok() && authenticate_se.is_ok();
    let (is_authenticated_se, authenticate_se) = (
        is_authenticated_se.ok().flatten(),
        authenticate_se.ok().flatten(),
    );
    if !authn.allowUnauthenticated
        && authn.idps.is_empty()
        && authenticate_se.is_none()
        && is_authenticated_se.is_none()
    {
        ctx.diags.error_hint(
            &pp.key("authentication"),
            "say how users sign in here",
            "add `idps: [<connector>]`, or `allowUnauthenticated: true` for a public location",
        );
        ok = false;
    }
    let authz = &pol.authorization;
    let authorization = match (authz.allowAll, &authz.rules, &authz.isAuthorizedSE) {
        (true, Some(_), _) | (true, _, Some(_)) | (_, Some(_), Some(_)) => {
            ctx.diags.error(
                &pp.key("authorization"),
                "use one of `allowAll: true`, `rules` or `isAuthorizedSE`",
            );
            None
        }
        (false, None, Some(se)) => hook(
            Some(se),
            HookKind::IsAuthorized,
            &pp.key("authorization").key("isAuthorizedSE"),
            ctx,
        )
        .ok()
        .flatten()
        .map(Authorization::Extension),
        (true, None, None) => Some(Authorization::AllowAll),
        (false, Some(r), None) => {
            let rp = pp.key("authorization").key("rules");
            parse_rule(r, &rp, ctx.diags).map(|rule| {
                for a in rule.refs() {
                    check_attr_ref(a, &rp, ctx);
                }
                Authorization::Rules(rule)
            })
        }
        (false, None, None) => {
            ctx.diags.error_hint(
                &pp.key("authorization"),
                "say who may enter",
                "add `allowAll: true`, `rules:` or `isAuthorizedSE:`",
            );
            None
        }
    };
    if !ok {
        return None;
    }
    Some(Policy {
        location_text: pol.location.trim().to_string(),
        location: location?,
        allow_unauthenticated: authn.allowUnauthenticated,
        idps: authn.idps.clone(),
        authorization: authorization?,
        is_authenticated_se,
        authenticate_se,
    })
}
