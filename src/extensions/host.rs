//! The host API a guest imports (`tessera:extension/host`), backed by one call's state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtxView, WasiView};

use super::bindings::tessera::extension::host::{self, Level};
use super::bindings::tessera::extension::types;
use super::load::Extension;
use super::wasi::WasiState;
use super::HookKind;
use crate::claims::Attributes;
use crate::connectors::Connector;

/// Outbound bodies read at most this much.
const MAX_FETCH_BODY: usize = 1 << 20;
/// Cache keys and values are bounded so one guest cannot fill the store with a single write.
const MAX_CACHE_KEY: usize = 256;
const MAX_CACHE_VALUE: usize = 64 << 10;
const MAX_CACHE_TTL: u32 = 30 * 24 * 3600;

/// The HTTP client behind `http-fetch` (public web PKI roots, no redirects followed).
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub fn http_client() -> Result<HttpClient, String> {
    Ok(http_client_with(crate::tls::client_config(None, None)?))
}

/// An `http-fetch` client trusting what `tls` trusts: an UpstreamLogin call reaches the app's
/// upstream with the app's own TLS profile (a legacy app behind a private CA).
pub fn http_client_with(tls: rustls::ClientConfig) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// The store data of one call.
pub struct HostState {
    pub(super) limiter: MemoryLimiter,
    pub(super) ext: Arc<Extension>,
    pub(super) hook: HookKind,
    pub(super) request_id: String,
    /// The session's attributes as the guest sees them (its writes included).
    pub(super) attrs: Attributes,
    /// Whether the guest wrote any attribute.
    pub(super) wrote: bool,
    pub(super) deadline: Instant,
    /// WASI for guests that import it, built on the call's first WASI function.
    pub(super) wasi: Option<Box<WasiState>>,
    /// An UpstreamLogin call's app upstream: `http-fetch` may reach it beside `allowedHosts`,
    /// with the client of the app's TLS profile.
    pub(super) upstream_origin: Option<(Origin, HttpClient)>,
}

/// The scheme, host and port of a URL: what an UpstreamLogin call may fetch besides the
/// extension's `allowedHosts` (the app's own upstream, whatever its path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    pub fn of(url: &str) -> Option<Origin> {
        let u = url::Url::parse(url).ok()?;
        Some(Origin {
            scheme: u.scheme().to_string(),
            host: u.host_str()?.to_ascii_lowercase(),
            port: u.port_or_known_default()?,
        })
    }

    fn admits(&self, url: &url::Url) -> bool {
        Origin::of(url.as_str()).as_ref() == Some(self)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (ext, hook, request_id) = (&self.ext, self.hook, &self.request_id);
        let wasi = self
            .wasi
            .get_or_insert_with(|| Box::new(WasiState::new(ext, hook, request_id)));
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

/// Bytes a table element is counted as (a pointer; wasmtime's tables hold pointers).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Caps the memory of one call's instance: every linear memory and table of the component
/// together (a component holds several core modules, each may have its own memory, so a
/// per-memory cap would let it use a multiple of the limit). Remembers a refusal so the
/// failure is reported as "memory limit", not as a bare trap.
pub struct MemoryLimiter {
    pub max_bytes: usize,
    /// Bytes of all memories and tables granted so far (creation counts: wasmtime asks for a
    /// new memory's or table's initial size with `current` = 0).
    pub used: usize,
    pub exceeded: bool,
}

impl MemoryLimiter {
    pub fn new(max_bytes: usize) -> Self {
        MemoryLimiter {
            max_bytes,
            used: 0,
            exceeded: false,
        }
    }

    /// Grants growing one memory or table from `current` to `desired` bytes if the total stays
    /// within the cap.
    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.max_bytes {
            self.exceeded = true;
            return Err(wasmtime::format_err!(
                "memory limit of {} MiB reached (all memories and tables of the component together)",
                self.max_bytes >> 20
            ));
        }
        self.used = total;
        Ok(true)
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    async fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let ext = self.ext.name.as_str();
        let hook = self.hook.func_name();
        let rid = self.request_id.as_str();
        match level {
            Level::Trace => {
                tracing::trace!(extension = ext, hook, request_id = rid, fields, "{message}")
            }
            Level::Debug => {
                tracing::debug!(extension = ext, hook, request_id = rid, fields, "{message}")
            }
            Level::Info => {
                tracing::info!(extension = ext, hook, request_id = rid, fields, "{message}")
            }
            Level::Warn => {
                tracing::warn!(extension = ext, hook, request_id = rid, fields, "{message}")
            }
            Level::Error => {
                tracing::error!(extension = ext, hook, request_id = rid, fields, "{message}")
            }
        }
    }

    async fn session_get(&mut self, name: String) -> Option<String> {
        self.attrs
            .get(&name)
            .and_then(crate::claims::render_value)
            .map(|v| v.into_owned())
    }

    async fn session_values(&mut self, name: String) -> Vec<String> {
        match self.attrs.get(&name) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(crate::claims::render_value)
                .map(|v| v.into_owned())
                .collect(),
            Some(v) => crate::claims::render_value(v)
                .map(|v| vec![v.into_owned()])
                .unwrap_or_default(),
        }
    }

    /// Writes only in the extension's own namespace: never a connector's attributes (which
    /// rules, headers and the session's login state trust). Refused: an error to the guest,
    /// nothing written, a warning (once per name).
    async fn session_set(&mut self, name: String, value: String) -> Result<(), String> {
        let attr = crate::claims::AttrRef::parse(&name)?;
        if let Err(e) = self.ext.may_write(&attr) {
            if self.ext.first_refusal(format!("attribute:{}", attr.key())) {
                tracing::warn!(extension = %self.ext.name, hook = self.hook.func_name(), request_id = %self.request_id,
                    attribute = attr.key(), "session-set outside the extension's namespace refused");
            }
            return Err(e);
        }
        self.attrs
            .insert(attr.key().to_string(), Value::String(value));
        self.wrote = true;
        Ok(())
    }

    /// Only the secrets the extension's configuration lists (`secrets`); any other name
    /// answers "not found", as a missing secret does, and is logged once.
    async fn secret(&mut self, name: String) -> Option<String> {
        if !self.ext.may_read_secret(&name) {
            if self.ext.first_refusal(format!("secret:{name}")) {
                let hint = if self.ext.namespace.is_some() {
                    "list it in this extension's serviceExtensions `secrets`"
                } else {
                    "a component named only by `file` may read no secret: declare it in serviceExtensions with `secrets`"
                };
                tracing::warn!(extension = %self.ext.name, hook = self.hook.func_name(), request_id = %self.request_id,
                    secret = ?name, hint, "secret not listed for this extension: answered as not found");
            }
            return None;
        }
        self.ext
            .services
            .secrets
            .resolve(&name)
            .map(|s| s.expose().to_string())
    }

    async fn query_attributes(
        &mut self,
        connector: String,
        username: String,
    ) -> Result<Vec<(String, Vec<String>)>, String> {
        let Some(c) = self.ext.services.connectors.get(&connector) else {
            return Err(format!("no connector named `{connector}`"));
        };
        let Connector::Ldap(ldap) = c.as_ref() else {
            return Err(format!("connector `{connector}` cannot look up attributes"));
        };
        let found = within_deadline(self.deadline, ldap.lookup(&username))
            .await?
            .map_err(|e| format!("directory lookup failed: {e}"))?;
        Ok(found
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let values = match v {
                    Value::Array(items) => items
                        .iter()
                        .filter_map(crate::claims::render_value)
                        .map(|s| s.into_owned())
                        .collect(),
                    other => crate::claims::render_value(&other)
                        .map(|s| vec![s.into_owned()])
                        .unwrap_or_default(),
                };
                (k, values)
            })
            .collect())
    }

    async fn cache_get(&mut self, key: String) -> Option<String> {
        let k = self.cache_key(&key).ok()?;
        let store = self.ext.services.cache.clone();
        match within_deadline(self.deadline, store.get(&k)).await {
            Ok(Ok(v)) => v.and_then(|b| String::from_utf8(b.to_vec()).ok()),
            Ok(Err(e)) => {
                tracing::warn!(extension = %self.ext.name, request_id = %self.request_id, error = %e, "extension cache read failed");
                None
            }
            Err(_) => None,
        }
    }

    async fn cache_set(
        &mut self,
        key: String,
        value: String,
        ttl_seconds: u32,
    ) -> Result<(), String> {
        let k = self.cache_key(&key)?;
        if value.len() > MAX_CACHE_VALUE {
            return Err(format!("value longer than {MAX_CACHE_VALUE} bytes"));
        }
        if !(1..=MAX_CACHE_TTL).contains(&ttl_seconds) {
            return Err(format!("ttl-seconds must be 1..={MAX_CACHE_TTL}"));
        }
        let store = self.ext.services.cache.clone();
        within_deadline(
            self.deadline,
            store.put(
                &k,
                Bytes::from(value),
                Duration::from_secs(ttl_seconds.into()),
            ),
        )
        .await?
        .map_err(|e| format!("cache unavailable: {e}"))
    }

    async fn http_fetch(
        &mut self,
        request: host::HttpRequest,
    ) -> Result<host::HttpResponse, String> {
        let url = url::Url::parse(&request.url).map_err(|e| format!("invalid URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("only http:// and https:// URLs can be fetched".into());
        }
        let host = url.host_str().ok_or("the URL has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_or_known_default().unwrap_or(80);
        let own_upstream = self
            .upstream_origin
            .as_ref()
            .filter(|(o, _)| o.admits(&url))
            .map(|(_, client)| client.clone());
        if own_upstream.is_none() && !self.ext.allowed_hosts.iter().any(|p| p.matches(host, port)) {
            tracing::warn!(extension = %self.ext.name, request_id = %self.request_id, host, "outbound request to a host not in allowedHosts refused");
            return Err(format!(
                "host `{host}` is not in this extension's allowedHosts"
            ));
        }
        let method = http::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| format!("invalid method `{}`", request.method))?;
        let mut builder = http::Request::builder().method(method).uri(url.as_str());
        for (k, v) in &request.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let req = builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|e| format!("invalid request: {e}"))?;
        let left = self.deadline.saturating_duration_since(Instant::now());
        let limit = match request.timeout_millis {
            0 => left,
            ms => left.min(Duration::from_millis(ms.into())),
        };
        let client = own_upstream.unwrap_or_else(|| self.ext.services.http.clone());
        let fetch = async move {
            let resp = client
                .request(req)
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let body = Limited::new(resp.into_body(), MAX_FETCH_BODY)
                .collect()
                .await
                .map_err(|e| format!("reading the response failed: {e}"))?
                .to_bytes()
                .to_vec();
            Ok(host::HttpResponse {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(limit, fetch)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    async fn metadata(&mut self) -> Vec<(String, String)> {
        let mut m = self.ext.metadata.clone();
        m.push(("extension".into(), self.ext.name.clone()));
        m.push(("hook".into(), self.hook.func_name().into()));
        m
    }
}

impl HostState {
    fn cache_key(&self, key: &str) -> Result<String, String> {
        if key.is_empty() || key.len() > MAX_CACHE_KEY {
            return Err(format!("cache keys are 1..={MAX_CACHE_KEY} bytes"));
        }
        Ok(format!("ext:{}:{key}", self.ext.name))
    }
}

/// Host I/O is bounded by what is left of the call's deadline. (A free function: the future
/// must not hold `&HostState`, whose WASI part is not `Sync`.)
async fn within_deadline<F: std::future::Future>(
    deadline: Instant,
    f: F,
) -> Result<F::Output, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, f)
        .await
        .map_err(|_| "the call's deadline passed".to_string())
}
