//! Prometheus metrics. Names, types and labels are documented in `docs/operations-metrics.md`
//! (a test checks that every metric exposed is documented there, and the reverse).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub app: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    pub idp: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    pub app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub app: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExtensionLabels {
    pub extension: String,
    pub hook: &'static str,
    pub outcome: &'static str,
}

/// The handles of one (extension, hook) pair's `ok` counter and latency histogram; they share
/// their values with the families in the registry.
#[derive(Clone, Debug)]
pub struct HookCallSeries {
    ok: Counter,
    latency: Histogram,
}

impl HookCallSeries {
    pub fn record_ok(&self, seconds: f64) {
        self.ok.inc();
        self.latency.observe(seconds);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExtensionHookLabels {
    pub extension: String,
    pub hook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLimitLabels {
    pub client: String,
    pub limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LogoutNoticeLabels {
    pub client: String,
    /// back, front: the channel; upstream: an app's own logout URL.
    pub channel: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLookupLabels {
    pub cache: String,
    pub result: &'static str,
}

/// The series of one shared store (a `caches` entry), resolved once when the store is made:
/// the store updates them without a label lookup. Without a registry (`Default`) they count
/// for nobody (tests that build a store directly).
#[derive(Clone, Debug, Default)]
pub struct StoreMetrics {
    /// 0 closed, 1 open, 2 half-open.
    pub circuit_state: Gauge,
    pub circuit_opened: Counter,
    pub circuit_rejected: Counter,
    pub cache: crate::store::CacheMetrics,
}

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// All metrics of a process; they outlive configuration reloads.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    logins: Family<LoginLabels, Counter>,
    authz_denials: Family<AppLabels, Counter>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    extension_calls: Family<ExtensionLabels, Counter>,
    extension_latency: Family<ExtensionHookLabels, Histogram, fn() -> Histogram>,
    reloads: Family<ReloadLabels, Counter>,
    last_reload_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    last_reload_successful: Gauge,
    store_circuit_state: Family<CacheLabels, Gauge>,
    store_circuit_opened: Family<CacheLabels, Counter>,
    store_circuit_rejected: Family<CacheLabels, Counter>,
    store_cache_lookups: Family<CacheLookupLabels, Counter>,
    store_cache_flushes: Family<CacheLabels, Counter>,
    oidc_token_limited: Family<TokenLimitLabels, Counter>,
    oidc_token_state_bytes: Gauge,
    logout_notices: Family<LogoutNoticeLabels, Counter>,
}

fn extension_histogram() -> Histogram {
    // 10 µs .. ~1.3 s
    Histogram::new(exponential_buckets(0.00001, 2.0, 18))
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tessera");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let logins = Family::<LoginLabels, Counter>::default();
        let authz_denials = Family::<AppLabels, Counter>::default();
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by app and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response headers, by app and status",
            latency.clone(),
        );
        registry.register(
            "logins",
            "Login attempts, by IdP and result",
            logins.clone(),
        );
        registry.register(
            "authz_denials",
            "Requests denied by authorization, by app",
            authz_denials.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed upstream requests, by app and kind (connect, timeout)",
            upstream_errors.clone(),
        );
        let extension_calls = Family::<ExtensionLabels, Counter>::default();
        let extension_latency: Family<ExtensionHookLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(extension_histogram);
        registry.register(
            "extension_calls",
            "Service extension calls, by extension, hook and outcome (ok, timeout, memory, trap, invalid, unavailable)",
            extension_calls.clone(),
        );
        registry.register(
            "extension_call_duration_seconds",
            "Time of a service extension call (fresh instance + call), by extension and hook",
            extension_latency.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        let last_reload_success = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let last_reload_successful = Gauge::default();
        registry.register(
            "config_reloads",
            "Configuration reloads, by outcome (success, failure)",
            reloads.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration loaded (at start or by a reload)",
            last_reload_success.clone(),
        );
        registry.register(
            "config_last_reload_successful",
            "1 if the last configuration reload (or the start) succeeded, else 0",
            last_reload_successful.clone(),
        );
        for outcome in ["success", "failure"] {
            let _ = reloads.get_or_create(&ReloadLabels { outcome });
        }
        let store_circuit_state = Family::<CacheLabels, Gauge>::default();
        let store_circuit_opened = Family::<CacheLabels, Counter>::default();
        let store_circuit_rejected = Family::<CacheLabels, Counter>::default();
        let store_cache_lookups = Family::<CacheLookupLabels, Counter>::default();
        let store_cache_flushes = Family::<CacheLabels, Counter>::default();
        registry.register(
            "store_circuit_state",
            "Circuit breaker of a shared store, by cache: 0 closed, 1 open (Redis known down: calls fail at once), 2 half-open (a probe is in flight)",
            store_circuit_state.clone(),
        );
        registry.register(
            "store_circuit_opened",
            "Times a shared store's circuit breaker opened, by cache",
            store_circuit_opened.clone(),
        );
        registry.register(
            "store_circuit_rejections",
            "Store calls refused at once because the circuit breaker was open, by cache",
            store_circuit_rejected.clone(),
        );
        registry.register(
            "store_client_cache_lookups",
            "Session reads through the client-side cache, by cache and result (hit, miss, bypass: tracking not established)",
            store_cache_lookups.clone(),
        );
        registry.register(
            "store_client_cache_flushes",
            "Times the client-side cache was flushed because its tracking connection was lost, by cache",
            store_cache_flushes.clone(),
        );
        let oidc_token_limited = Family::<TokenLimitLabels, Counter>::default();
        let oidc_token_state_bytes = Gauge::default();
        registry.register(
            "oidc_token_requests_limited",
            "Token requests refused by a limit, by client and limit (client_rate, state_budget)",
            oidc_token_limited.clone(),
        );
        registry.register(
            "oidc_token_state_bytes",
            "Bytes of token state the OIDC provider counts against its budget",
            oidc_token_state_bytes.clone(),
        );
        let logout_notices = Family::<LogoutNoticeLabels, Counter>::default();
        registry.register(
            "logout_notices",
            "Logout notices sent to apps, by client, channel (back, upstream) and result (delivered, refused, failed, dropped)",
            logout_notices.clone(),
        );
        Self {
            logout_notices,
            store_circuit_state,
            store_circuit_opened,
            store_circuit_rejected,
            store_cache_lookups,
            store_cache_flushes,
            oidc_token_limited,
            oidc_token_state_bytes,
            registry,
            extension_calls,
            extension_latency,
            reloads,
            last_reload_success,
            last_reload_successful,
            requests,
            latency,
            logins,
            authz_denials,
            upstream_errors,
        }
    }

    pub fn request(&self, app: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            app: app.to_string(),
            status,
        };
        self.latency.get_or_create(&labels).observe(seconds);
        self.requests.get_or_create(&labels).inc();
    }

    pub fn oidc_token_limited(&self, client: &str, limit: &'static str) {
        self.oidc_token_limited
            .get_or_create(&TokenLimitLabels {
                client: client.to_string(),
                limit,
            })
            .inc();
    }

    pub fn logout_notice(&self, client: &str, channel: &'static str, result: &'static str) {
        self.logout_notices
            .get_or_create(&LogoutNoticeLabels {
                client: client.to_string(),
                channel,
                result,
            })
            .inc();
    }

    pub fn oidc_token_state_bytes(&self, bytes: usize) {
        self.oidc_token_state_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn login(&self, idp: &str, result: &'static str) {
        self.logins
            .get_or_create(&LoginLabels {
                idp: idp.to_string(),
                result,
            })
            .inc();
    }

    pub fn authz_denied(&self, app: &str) {
        self.authz_denials
            .get_or_create(&AppLabels {
                app: app.to_string(),
            })
            .inc();
    }

    pub fn upstream_error(&self, app: &str, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                app: app.to_string(),
                kind,
            })
            .inc();
    }

    /// A configuration was loaded: at start (`counted` false) or by a reload.
    pub fn config_loaded(&self, counted: bool) {
        if counted {
            self.reloads
                .get_or_create(&ReloadLabels { outcome: "success" })
                .inc();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_reload_success.set(now);
        self.last_reload_successful.set(1);
    }

    /// A reload was rejected; the running configuration stays.
    pub fn config_rejected(&self) {
        self.reloads
            .get_or_create(&ReloadLabels { outcome: "failure" })
            .inc();
        self.last_reload_successful.set(0);
    }

    /// The series of the shared store `cache` (created now, so they show from the start);
    /// `client_cache`: whether it has a client-side cache (its series exist only then).
    pub fn store(&self, cache: &str, client_cache: bool) -> StoreMetrics {
        let labels = CacheLabels {
            cache: cache.to_string(),
        };
        let lookup = |result| {
            self.store_cache_lookups
                .get_or_create(&CacheLookupLabels {
                    cache: cache.to_string(),
                    result,
                })
                .clone()
        };
        StoreMetrics {
            circuit_state: self.store_circuit_state.get_or_create(&labels).clone(),
            circuit_opened: self.store_circuit_opened.get_or_create(&labels).clone(),
            circuit_rejected: self.store_circuit_rejected.get_or_create(&labels).clone(),
            cache: if client_cache {
                crate::store::CacheMetrics {
                    hits: lookup("hit"),
                    misses: lookup("miss"),
                    bypassed: lookup("bypass"),
                    flushes: self.store_cache_flushes.get_or_create(&labels).clone(),
                }
            } else {
                crate::store::CacheMetrics::default()
            },
        }
    }

    pub fn extension_call(
        &self,
        extension: &str,
        hook: &'static str,
        outcome: &'static str,
        seconds: f64,
    ) {
        self.extension_calls
            .get_or_create(&ExtensionLabels {
                extension: extension.to_string(),
                hook,
                outcome,
            })
            .inc();
        self.extension_latency
            .get_or_create(&ExtensionHookLabels {
                extension: extension.to_string(),
                hook,
            })
            .observe(seconds);
    }

    /// The series a successful call of `hook` on `extension` counts into, resolved once so
    /// that the hot path neither allocates the labels nor hashes them (a failed call takes
    /// [`Metrics::extension_call`], its outcome is one of several).
    pub fn extension_ok_series(&self, extension: &str, hook: &'static str) -> HookCallSeries {
        HookCallSeries {
            ok: self
                .extension_calls
                .get_or_create(&ExtensionLabels {
                    extension: extension.to_string(),
                    hook,
                    outcome: "ok",
                })
                .clone(),
            latency: self
                .extension_latency
                .get_or_create(&ExtensionHookLabels {
                    extension: extension.to_string(),
                    hook,
                })
                .clone(),
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
