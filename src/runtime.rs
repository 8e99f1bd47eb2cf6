//! The compiled runtime: everything a request reads, built once from a validated config
//! and shared immutably (`Arc`) by all requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
}

#[derive(Debug, Clone)]
pub struct Logging {
    pub level: String,
    pub json: bool,
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
    pub metrics: Arc<Metrics>,
    /// The built-in OpenID Connect provider, when `oidcProvider` is configured.
    pub provider: Option<crate::provider::Provider>,
    /// Non-fatal findings of validation (e.g. plain HTTP), logged at start.
    pub warnings: Vec<String>,
}

impl Runtime {
    /// Cookies the gateway sets; never forwarded to upstreams.
    pub fn own_cookie_names(&self) -> [&str; 2] {
        [self.sessions.settings.cookie.name.as_str(), FLOW_COOKIE]
    }
}
