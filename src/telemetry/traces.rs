//! OpenTelemetry traces: spans of `tracing` exported over OTLP/HTTP (protobuf), and W3C
//! `traceparent` propagation (adopted from clients, passed on to upstreams).
//!
//! Off by default. When `telemetry.tracing` is configured, `telemetry::init` installs an
//! OpenTelemetry layer that exports the `tessera` spans: `request` (server), `route`,
//! `authenticate`, `authorize`, `store.*`, `upstream` (client), and `extension` spans made
//! with [`extension_span`]. The fine-grained spans are at debug level so that with traces off
//! they are disabled at their call site.
//!
//! The exporter posts through Tessera's own hyper + rustls (ring) client: the SDK's batch
//! processor runs on its own thread and blocks on each export, so the request is spawned onto
//! the tokio runtime and awaited from there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether an exporter is installed: propagation work is skipped when it is not.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Longest wait for one export (connect, send, answer).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest collector answer read (a `partial_success` message at most).
const MAX_ANSWER: usize = 64 * 1024;

/// The compiled `telemetry.tracing` section.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Full URL spans are posted to (`…/v1/traces`); `None` = from the `OTEL_EXPORTER_OTLP_*`
    /// environment variables, else `http://localhost:4318/v1/traces`.
    pub endpoint: Option<String>,
    pub service_name: String,
    pub sample_ratio: f64,
    /// Trust for an `https` endpoint.
    pub tls: rustls::ClientConfig,
    /// The TLS profile named, to tell whether the section changed.
    pub tls_profile: Option<String>,
}

impl Settings {
    /// Same settings, as far as the configuration file says (for reload warnings).
    pub fn same_as(&self, other: &Settings) -> bool {
        self.endpoint == other.endpoint
            && self.service_name == other.service_name
            && self.sample_ratio == other.sample_ratio
            && self.tls_profile == other.tls_profile
    }
}

/// `otlpEndpoint` as the URL spans are posted to: a base URL gets `/v1/traces` appended.
pub fn traces_url(base: &str) -> Result<String, String> {
    let url = url::Url::parse(base).map_err(|e| format!("`{base}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{base}` is not an http:// or https:// URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{base}` must not have a query or fragment"));
    }
    let text = url.as_str().trim_end_matches('/');
    Ok(if text.ends_with("/v1/traces") {
        text.to_string()
    } else {
        format!("{text}/v1/traces")
    })
}

/// The tracer provider for `settings`: batch export through [`ExportClient`], parent-based
/// ratio sampling, W3C trace context as the global propagator. Must be called inside the
/// tokio runtime (the exporter spawns its requests there).
pub fn provider(settings: &Settings) -> Result<SdkTracerProvider, String> {
    let client = ExportClient::new(settings.tls.clone())?;
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_timeout(EXPORT_TIMEOUT);
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let exporter = builder
        .build()
        .map_err(|e| format!("cannot set up the OTLP exporter: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    ENABLED.store(true, Ordering::Relaxed);
    Ok(provider)
}

/// The tracer the `tracing` layer records with.
pub fn tracer(provider: &SdkTracerProvider) -> opentelemetry_sdk::trace::Tracer {
    provider.tracer("tessera")
}

/// Whether spans are exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Makes `span` (not yet entered) a child of the caller's trace when the request carries a
/// W3C `traceparent`. Nothing happens when traces are off.
pub fn adopt_parent(span: &tracing::Span, headers: &HeaderMap) {
    if !enabled() || !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(cx);
}

/// Writes `span`'s W3C `traceparent` (and `tracestate`) into `headers` of an outgoing
/// request, replacing a client's. With traces off, headers are left as they are (a client's
/// `traceparent` passes through unchanged).
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The span a service-extension hook call runs in: the wasm host wraps each call with
/// `.instrument(extension_span(name, hook))`, so the call shows in traces as
/// `extension <hook>` with the extension's name, under the request's span.
pub fn extension_span(extension: &str, hook: &str) -> tracing::Span {
    tracing::debug_span!(
        "extension",
        otel.name = %format_args!("extension {hook}"),
        extension,
        hook,
    )
}

/// The OTLP exporter's HTTP client: hyper with rustls on ring (webpki roots, or a profile's
/// CA), HTTP/1.1, bounded in time and answer size.
#[derive(Debug, Clone)]
pub struct ExportClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

impl ExportClient {
    fn new(tls: rustls::ClientConfig) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the OTLP exporter needs the async runtime".to_string())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let call = async move {
            let response = client.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
            Ok::<_, HttpError>(http::Response::from_parts(parts, body))
        };
        let bounded = async move {
            tokio::time::timeout(EXPORT_TIMEOUT, call)
                .await
                .map_err(|_| HttpError::from("the OTLP endpoint did not answer in time"))?
        };
        self.runtime.spawn(bounded).await?
    }
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn endpoint_urls() {
        assert_eq!(
            traces_url("http://collector:4318").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://c.example/otlp/").unwrap(),
            "https://c.example/otlp/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces").unwrap(),
            "http://c:4318/v1/traces"
        );
        for bad in ["collector:4318", "ftp://c/", "http://c/?a=b", "", "http://"] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }
}
