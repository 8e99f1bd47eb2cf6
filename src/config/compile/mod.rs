//! From a decoded document to the runtime: every reference resolved, every regex compiled,
//! every file read. All problems are collected; the runtime exists only if there are none.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::decode::{closest, decode};
use super::model::*;
use super::source::{ConfigPath, Diagnostics};
use super::Environment;
use crate::claims::AttrRef;
use crate::runtime::Runtime;
use crate::session::Sessions;
use crate::store::Store;
use crate::tls;

mod apis;
mod apps;
use apps::compile_apps;
mod bearer;
mod caches;
mod connectors;
use connectors::compile_connectors;
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
use listen::compile_listen;
mod limits;
mod pages;
mod reload;
use reload::compile_reload;
mod session;
mod session_lifetime;
mod store;
use session::{compile_session, location_setting};
mod telemetry;
mod upstream_login;
/// A connector's `throttle`.
pub(super) use limits::throttle;
use telemetry::{compile_logging, compile_tracing};

const TOP_LEVEL: [&str; 14] = [
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
    "apis",
];
/// Keys of the contract that later versions implement: named, so the error says so.
const NOT_YET: &[&str] = &[];
const CONNECTOR_TYPES: [&str; 7] = [
    "local", "oidc", "okta", "azure", "auth0", "keycloak", "ldap",
];
const PLANNED_CONNECTOR_TYPES: [&str; 0] = [];
const APP_TYPES: [&str; 3] = ["proxy", "forwardAuth", "oidc"];

pub(super) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub(super) fn resolve_file(base: &Path, p: &str) -> PathBuf {
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
    /// `http.trustedProxies` lists at least one proxy (forward-auth apps need one).
    pub(super) trusted_proxies_set: bool,
    /// `oidcProvider` is configured (policies may accept its bearer tokens).
    pub(super) provider_configured: bool,
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
    check_sections(top, diags);
    let section = |k: &str| top.get(k).filter(|v| !v.is_null());
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
        trusted_proxies_set: http.as_ref().is_some_and(|h| !h.trustedProxies.is_empty()),
        provider_configured: section("oidcProvider").is_some(),
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
    let session_lifetime = session_lifetime::compile(session.as_ref(), &mut ctx);
    let (apps, routers, oidc_apps) = compile_apps(section("apps"), &connectors, &mut ctx);
    let mut provider = super::oidc::compile_provider(
        section("oidcProvider"),
        oidc_apps,
        &connectors,
        memory_bytes,
        env.metrics.clone(),
        &mut ctx,
    );
    let apis = apis::compile_apis(
        section("apis"),
        &apis::Claimed {
            health: &health_location,
            metrics: metrics_location.as_deref(),
            provider: provider.as_ref(),
            connectors: &connectors,
            apps: &apps,
            app_router: &routers.proxy,
        },
        &mut ctx,
    );
    // Grants end with their session, also when it expires (see `Provider::session_ended`).
    if let (Some(p), Some(store)) = (provider.as_mut(), session_store.as_ref()) {
        p.session_store = Some(store.clone());
    }

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
        sessions: Sessions::new(session_store?, settings?).ending_with(
            provider
                .as_ref()
                .map(|p| p.session_ends.clone() as std::sync::Arc<dyn crate::session::EndListener>),
        ),
        stores: std::mem::take(&mut ctx.stores_in_use),
        connectors,
        apps,
        router: routers.proxy,
        forward_router: routers.forward_auth,
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
        session_lifetime,
        apis,
    })
}

/// The top level: known sections only (an unknown one is named, with the closest known
/// one), and `version: 1`.
fn check_sections(top: &serde_yaml_ng::Mapping, diags: &mut Diagnostics) {
    let root = ConfigPath::root();
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

    match top.get("version").filter(|v| !v.is_null()) {
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
pub(super) fn tagged(
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

pub(super) fn list<'a>(v: Option<&'a Value>, path: &ConfigPath, ctx: &mut Ctx<'_>) -> &'a [Value] {
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
    if name == crate::proxy::bearer::NAMESPACE && what != "app" && what != "cache" {
        ctx.diags.error_hint(
            path,
            format!("`{name}` is reserved: `token.<claim>` names a bearer token's claims"),
            format!("give the {what} another name"),
        );
        return false;
    }
    true
}

pub(super) fn check_attr_ref(a: &AttrRef, path: &ConfigPath, ctx: &mut Ctx<'_>) {
    // `token.<claim>`: a bearer token's claims (present only on requests with one).
    if a.connector() == crate::proxy::bearer::NAMESPACE {
        return;
    }
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
