//! The upstream side of a proxy app: request rewriting (target URI, hop-by-hop headers,
//! Host), a pool of HTTP/1.1 connections driven by the requests themselves (see [`pool`]),
//! one shared HTTP/2 connection when an https upstream negotiates `h2`, and WebSocket
//! upgrades on a connection of their own. Bodies stream in both directions: nothing is
//! buffered.

mod connect;
mod pool;
#[cfg(test)]
mod pool_tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use self::connect::{Connector, Protocol};
use self::pool::{Http1, Leased, Pool};
use crate::web::body::{empty, Body, RequestBody};

/// Idle HTTP/1.1 connections kept per upstream, and how long one may stay idle.
const MAX_IDLE: usize = 256;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
}

impl UpstreamError {
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Unreachable(_) => StatusCode::BAD_GATEWAY,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Unreachable(_) => "connect",
        }
    }
}

fn unreachable(e: &dyn std::error::Error) -> UpstreamError {
    UpstreamError::Unreachable(error_chain(e))
}

pub struct Upstream {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// Base path without trailing slash ("" for an origin).
    base_path: String,
    /// `Host` sent upstream (unless the app preserves the client's): the authority, made
    /// once here rather than per request.
    host_header: Option<HeaderValue>,
    connector: Connector,
    pool: Arc<Pool>,
    /// The multiplexed connection, once an https upstream has chosen HTTP/2.
    http2: Mutex<Option<http2::SendRequest<Body>>>,
    response_timeout: Duration,
    /// The app's TLS profile, for the `http-fetch` client of an UpstreamLogin call (made at
    /// the first one): the legacy login reaches the upstream trusting what the proxy trusts.
    tls: rustls::ClientConfig,
    fetch_client: std::sync::OnceLock<crate::extensions::host::HttpClient>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("base_path", &self.base_path)
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(
        url: &Uri,
        tls: rustls::ClientConfig,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, String> {
        Self::with_pool(url, tls, connect_timeout, response_timeout, IDLE_TIMEOUT)
    }

    fn with_pool(
        url: &Uri,
        tls: rustls::ClientConfig,
        connect_timeout: Duration,
        response_timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<Self, String> {
        let scheme = url
            .scheme()
            .cloned()
            .ok_or("upstream needs http:// or https://")?;
        let https = match scheme.as_str() {
            "http" => false,
            "https" => true,
            other => return Err(format!("upstream scheme `{other}` is not http or https")),
        };
        let authority = url.authority().cloned().ok_or("upstream needs a host")?;
        let connector = Connector::new(&authority, https, tls.clone(), connect_timeout)?;
        let host_header = HeaderValue::from_str(authority.as_str()).ok();
        Ok(Self {
            scheme,
            authority,
            base_path: url.path().trim_end_matches('/').to_string(),
            host_header,
            connector,
            pool: Pool::new(MAX_IDLE, idle_timeout),
            http2: Mutex::new(None),
            response_timeout,
            tls,
            fetch_client: std::sync::OnceLock::new(),
        })
    }

    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }

    /// The upstream's URL as configured, without a trailing slash: `http://legacy:8080/base`.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.base_path)
    }

    /// The client an UpstreamLogin's `http-fetch` reaches this upstream with: the app's TLS
    /// profile (CA, minimum version), its own connection pool.
    pub fn fetch_client(&self) -> crate::extensions::host::HttpClient {
        self.fetch_client
            .get_or_init(|| crate::extensions::host::http_client_with(self.tls.clone()))
            .clone()
    }

    /// The authority as a `Host` header value (`None` if it cannot be one).
    pub fn host_header(&self) -> Option<&HeaderValue> {
        self.host_header.as_ref()
    }

    fn target(&self, path: &str, query: Option<&str>) -> Result<PathAndQuery, http::Error> {
        let mut pq = String::with_capacity(self.base_path.len() + path.len() + 16);
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        Ok(PathAndQuery::try_from(pq)?)
    }

    /// Sends the (already rewritten) request to the upstream at `path`. `upgrade` (see
    /// [`requested_upgrade`]) is joined end to end when the upstream answers 101.
    pub async fn send(
        &self,
        mut req: Request<RequestBody>,
        path: &str,
        headers: HeaderMap,
        upgrade: Option<HeaderValue>,
    ) -> Result<Response<Body>, UpstreamError> {
        let client_side = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let target = self
            .target(path, req.uri().query())
            .map_err(|e| unreachable(&e))?;
        let (parts, body) = req.into_parts();
        let mut out = Request::new(body.map_err(Into::into).boxed());
        *out.method_mut() = parts.method;
        // Origin form, as HTTP/1.1 sends it; an HTTP/2 connection puts the authority back.
        *out.uri_mut() = Uri::from(target);
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = headers;
        let Some(proto) = upgrade else {
            return tokio::time::timeout(self.response_timeout, self.exchange(out))
                .await
                .unwrap_or(Err(UpstreamError::Timeout(self.response_timeout)));
        };
        out.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        out.headers_mut().insert(header::UPGRADE, proto);
        let upgraded = Box::pin(self.upgrade_exchange(out));
        let mut resp = tokio::time::timeout(self.response_timeout, upgraded)
            .await
            .unwrap_or(Err(UpstreamError::Timeout(self.response_timeout)))?;
        if let (StatusCode::SWITCHING_PROTOCOLS, Some(client_side)) = (resp.status(), client_side) {
            let upstream_side = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                let (Ok(c), Ok(u)) = (client_side.await, upstream_side.await) else {
                    tracing::debug!("upgrade did not complete");
                    return;
                };
                let mut c = TokioIo::new(c);
                let mut u = TokioIo::new(u);
                let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
            });
            let (parts, _) = resp.into_parts();
            return Ok(Response::from_parts(parts, empty()));
        }
        finish(resp, |b| b.map_err(Into::into).boxed())
    }

    /// One request on a pooled (or new) HTTP/1.1 connection, or on the HTTP/2 connection.
    /// A request that a reused connection failed before writing any of it (the upstream
    /// closed the connection as it was taken) goes once more, on a new connection.
    /// (What a reused HTTP/1.1 connection does not need is boxed: connecting, TLS, HTTP/2
    /// would otherwise make this future, moved on every request, several times larger.)
    async fn exchange(&self, mut req: Request<Body>) -> Result<Response<Body>, UpstreamError> {
        if let Some(h2) = self.shared_http2() {
            return Box::pin(self.exchange_http2(h2, req)).await;
        }
        let mut reused = self.pool.checkout().await;
        loop {
            let was_reused = reused.is_some();
            let mut conn = match reused.take() {
                Some(c) => c,
                None => match Box::pin(self.connect()).await? {
                    Connected::Http1(c) => *c,
                    Connected::Http2(h2) => return Box::pin(self.exchange_http2(h2, req)).await,
                },
            };
            match conn.exchange(req).await {
                Ok(resp) => {
                    let pool = self.pool.clone();
                    return finish(resp, move |b| Leased::new(b, conn, pool).boxed());
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if was_reused => req = unsent,
                    _ => return Err(unreachable(e.error())),
                },
            }
        }
    }

    async fn exchange_http2(
        &self,
        mut h2: http2::SendRequest<Body>,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let mut parts = http::uri::Parts::from(std::mem::take(req.uri_mut()));
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        *req.uri_mut() = Uri::from_parts(parts).map_err(|e| unreachable(&e))?;
        *req.version_mut() = Version::HTTP_2;
        let resp = h2.send_request(req).await.map_err(|e| unreachable(&e))?;
        finish(resp, |b| b.map_err(Into::into).boxed())
    }

    fn shared_http2(&self) -> Option<http2::SendRequest<Body>> {
        let mut slot = self.http2.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(h2) if !h2.is_closed() => Some(h2.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    async fn connect(&self) -> Result<Connected, UpstreamError> {
        let (io, protocol) = self
            .connector
            .connect(false)
            .await
            .map_err(|e| unreachable(&e))?;
        match protocol {
            Protocol::Http1 => Http1::handshake(io)
                .await
                .map(|c| Connected::Http1(Box::new(c)))
                .map_err(|e| unreachable(&e)),
            Protocol::Http2 => {
                let (h2, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(TokioIo::new(io))
                    .await
                    .map_err(|e| unreachable(&e))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
                    }
                });
                *self.http2.lock().unwrap_or_else(|e| e.into_inner()) = Some(h2.clone());
                Ok(Connected::Http2(h2))
            }
        }
    }

    /// An upgrade request, on an HTTP/1.1 connection of its own that becomes the tunnel.
    async fn upgrade_exchange(
        &self,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let (io, _) = self
            .connector
            .connect(true)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream upgrade connection ended");
            }
        });
        send.send_request(req).await.map_err(|e| unreachable(&e))
    }
}

enum Connected {
    /// Boxed: a new connection is the rare case, and this enum lives in the request's future.
    Http1(Box<Http1>),
    Http2(http2::SendRequest<Body>),
}

/// The upstream's response as the client gets it: no hop-by-hop headers; and never a switch
/// of protocols that was not asked for (it would hand the client a connection no policy sees).
fn finish(
    mut resp: Response<Incoming>,
    body: impl FnOnce(Incoming) -> Body,
) -> Result<Response<Body>, UpstreamError> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Err(UpstreamError::Unreachable(
            "the upstream switched protocols although no upgrade was forwarded".into(),
        ));
    }
    strip_hop_by_hop(resp.headers_mut());
    Ok(resp.map(body))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// The protocol a client asks to upgrade to (HTTP/1.1 GET, `Connection: upgrade` +
/// `Upgrade` naming one protocol of `allowed`). Anything else — `h2c`, several protocols, a
/// POST — is no upgrade: the hop-by-hop headers are dropped and the request goes on as is.
pub fn requested_upgrade(req: &http::request::Parts, allowed: &[String]) -> Option<HeaderValue> {
    if req.version != Version::HTTP_11 || req.method != http::Method::GET {
        return None;
    }
    let mut values = req.headers.get_all(header::UPGRADE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let proto = value.to_str().ok()?.trim();
    let name = proto.split('/').next().unwrap_or_default();
    if proto.contains(',') || !allowed.iter().any(|a| a.eq_ignore_ascii_case(name)) {
        return None;
    }
    let wants = req
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    wants
        .then(|| req.headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Parsed once: removing by `HeaderName` skips parsing and validating a `&str` name on every
/// call (twice per proxied request).
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    // The h2c upgrade's settings: meaningful only to the connection they arrived on.
    HeaderName::from_static("http2-settings"),
];

/// Removes hop-by-hop headers (RFC 9110 7.6.1), including those named by `Connection`,
/// and `Upgrade` (re-added explicitly for upgrades).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the few headers a request or response has, instead of a lookup per
    // hop-by-hop name: usually only `Connection` (or nothing) is there to remove, and the
    // names it lists are collected only when present.
    let mut found: Vec<HeaderName> = headers
        .keys()
        .filter(|name| *name == header::UPGRADE || HOP_BY_HOP.contains(name))
        .cloned()
        .collect();
    found.extend(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| headers.contains_key(*t))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok()),
    );
    for name in found {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = map(&[
            ("Connection", "keep-alive, X-Secret ,Close"),
            ("Connection", "x-other"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Authenticate", "Basic"),
            ("Proxy-Authorization", "Basic eA=="),
            ("TE", "trailers"),
            ("Trailer", "x-t"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("x-secret", "1"),
            ("X-Other", "2"),
            ("close", "3"),
            ("x-kept", "4"),
            ("Cookie", "a=b"),
        ]);
        strip_hop_by_hop(&mut h);
        // (The order of different names carries no meaning; removal may change it.)
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["cookie", "x-kept"]);
    }

    #[test]
    fn connection_tokens_that_are_not_header_names_are_ignored() {
        let mut h = map(&[
            ("connection", "keep-alive, bad token, (x),"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept"]);
    }
}
