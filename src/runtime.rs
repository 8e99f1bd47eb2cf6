//! The compiled runtime: everything a request reads, built once from a validated config
//! and shared immutably (`Arc`) by all requests. [`Live`] holds the one in force; a reload
//! swaps in a new one whole.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::connectors::Connectors;
use crate::login::FLOW_COOKIE;
use crate::proxy::ProxyApp;
use crate::server::router::Router;
use crate::session::Sessions;
use crate::telemetry::metrics::Metrics;

#[derive(Debug)]
pub struct Listen {
    pub address: SocketAddr,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub shutdown_timeout: Duration,
    /// `http.limits`, read at each new connection (header timeout, connection cap) and by
    /// each request whose body the gateway reads.
    pub limits: crate::server::conn::Limits,
    /// `http.adminAddress`: the operators' listener (metrics, detailed status), when set.
    /// Bound at start; a reload that changes it warns that it needs a restart.
    pub admin: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct Logging {
    pub level: String,
    pub json: bool,
}

/// `reload`: whether and how often the configuration's files are checked for changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSettings {
    pub watch: bool,
    pub interval: Duration,
}

#[derive(Debug)]
pub struct Runtime {
    pub listen: Listen,
    pub logging: Logging,
    pub health_location: String,
    pub metrics_location: Option<String>,
    pub sessions: Sessions,
    /// The stores in use, by cache name (`default` = memory); readiness pings each.
    pub stores: std::collections::BTreeMap<String, Arc<dyn crate::store::Store>>,
    pub connectors: Connectors,
    pub apps: Vec<ProxyApp>,
    pub router: Router,
    /// Routes of `forwardAuth` apps, matched against the original URL of a forward-auth call
    /// only (never against requests to the gateway itself).
    pub forward_router: Router,
    pub metrics: Arc<Metrics>,
    /// The built-in OpenID Connect provider, when `oidcProvider` is configured.
    pub provider: Option<crate::provider::Provider>,
    /// `telemetry.tracing`: OpenTelemetry export, when configured (read at start only).
    pub tracing: Option<crate::telemetry::traces::Settings>,
    pub reload: ReloadSettings,
    /// Files the configuration refers to (certificates, keys): a change reloads too.
    pub files: Vec<PathBuf>,
    /// Non-fatal findings of validation (e.g. plain HTTP), logged at start.
    pub warnings: Vec<String>,
    /// Tasks working for this runtime (IdP discovery refresh): aborted when it is dropped.
    pub background: Background,
    /// The trust boundary's settings (trusted proxies, cookie security).
    pub edge: crate::edge::EdgeSettings,
    /// `session.loginFlows`: how many login flows one client IP may start.
    pub login_flows: crate::login::flows::FlowLimits,
    /// `session.memoryStore.maxMiB`, applied to the process's memory store when this
    /// runtime is put in force (the store outlives reloads, its bound follows them).
    pub memory_budget: Option<(crate::store::MemoryBudget, usize)>,
    /// `session.lifetime`: the hooks that choose a new session's lifetime at login.
    pub session_lifetime: crate::login::lifetime::LifetimeHooks,
    /// `apis[]`: endpoints an extension answers, routed before apps.
    pub apis: crate::apis::Apis,
}

/// Background tasks tied to one runtime's life.
#[derive(Debug, Default)]
pub struct Background(std::sync::Mutex<Vec<tokio::task::AbortHandle>>);

impl Background {
    pub fn add(&self, task: tokio::task::AbortHandle) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(task);
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in self
            .0
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// The runtime in force. Each request loads it once, at its start, and keeps that `Arc` to
/// its end, so a reload never changes the configuration under a request in flight; the old
/// runtime is dropped when its last request is done.
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Runtime>,
}

impl Live {
    pub fn new(rt: Arc<Runtime>) -> Self {
        rt.apply_process_settings();
        Self {
            current: ArcSwap::new(rt),
        }
    }

    /// The runtime in force now.
    pub fn load(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// Puts `rt` in force; returns the one it replaces.
    pub fn swap(&self, rt: Arc<Runtime>) -> Arc<Runtime> {
        rt.apply_process_settings();
        self.current.swap(rt)
    }
}

impl Runtime {
    /// For a sign-in that returns to `url` behind an ingress: the URL to return to (as
    /// parsed: http(s), no user info, no fragment), the `forwardAuth` app it routes to and the
    /// IdPs its policy there allows. `None` for any URL no such app serves.
    pub fn forward_auth_sign_in(&self, url: &str) -> Option<(String, &str, Vec<String>)> {
        if url.chars().any(char::is_control) {
            return None;
        }
        let parsed = url::Url::parse(url).ok()?;
        if !matches!(parsed.scheme(), "http" | "https")
            || !parsed.username().is_empty()
            || parsed.password().is_some()
            || parsed.fragment().is_some()
        {
            return None;
        }
        let host = parsed.host_str()?.to_ascii_lowercase();
        let host_port = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let path = crate::edge::path::canonicalize(parsed.path()).ok()?.decoded;
        let app = &self.apps[self.forward_router.route(&host, &host_port, &path)?];
        let idps = match app.policies.find(&path) {
            Some(p) => crate::proxy::pipeline::login_idps(self, p),
            None => self.connectors.login_capable(),
        };
        Some((parsed.to_string(), &app.name, idps))
    }

    /// The app a same-origin path routes to on this host, and the IdPs its policy there lets
    /// a user sign in with (a "Sign in" link that names only where to return).
    pub fn sign_in_at(
        &self,
        host: &str,
        host_port: &str,
        path: &str,
    ) -> Option<(&str, Vec<String>)> {
        let app = &self.apps[self.router.route(host, host_port, path)?];
        let idps = match app.policies.find(path) {
            Some(p) => crate::proxy::pipeline::login_idps(self, p),
            None => self.connectors.login_capable(),
        };
        Some((&app.name, idps))
    }

    /// Settings of things the process keeps across reloads (the memory store's budget).
    fn apply_process_settings(&self) {
        if let Some((budget, bytes)) = &self.memory_budget {
            budget.set(*bytes);
        }
    }

    /// Cookies the gateway sets; never forwarded to upstreams.
    pub fn own_cookie_names(&self) -> [&str; 2] {
        [self.sessions.settings.cookie.name.as_str(), FLOW_COOKIE]
    }
}
