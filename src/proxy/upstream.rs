//! The upstream side of a proxy app: a pooled HTTP/1.1 (+h2 by ALPN for https) client per
//! app, request rewriting (target URI, hop-by-hop headers, Host) and WebSocket upgrades.
//! Bodies stream in both directions: nothing is buffered.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::web::body::{empty, Body};

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

#[derive(Debug, Clone)]
pub struct Upstream {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// Base path without trailing slash ("" for an origin).
    base_path: String,
    /// `Host` sent upstream (unless the app preserves the client's): the authority, made
    /// once here rather than per request.
    host_header: Option<HeaderValue>,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(
        url: &Uri,
        tls: rustls::ClientConfig,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, String> {
        let scheme = url
            .scheme()
            .cloned()
            .ok_or("upstream needs http:// or https://")?;
        let authority = url.authority().cloned().ok_or("upstream needs a host")?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        let host_header = HeaderValue::from_str(authority.as_str()).ok();
        Ok(Self {
            scheme,
            authority,
            base_path: url.path().trim_end_matches('/').to_string(),
            host_header,
            client,
            response_timeout,
        })
    }

    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }

    /// The authority as a `Host` header value (`None` if it cannot be one).
    pub fn host_header(&self) -> Option<&HeaderValue> {
        self.host_header.as_ref()
    }

    fn target(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        let mut pq = String::with_capacity(self.base_path.len() + path.len() + 16);
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }

    /// Sends the (already rewritten) request to the upstream at `path`. An upgrade to one of
    /// `upgrades` (WebSocket by default) is joined end to end when the upstream answers 101;
    /// any other upgrade request is forwarded as a plain request.
    pub async fn send(
        &self,
        mut req: Request<Incoming>,
        path: &str,
        headers: HeaderMap,
        upgrades: &[String],
    ) -> Result<Response<Body>, UpstreamError> {
        let upgrade = requested_upgrade(&req, upgrades);
        let client_side = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let uri = self
            .target(path, req.uri().query())
            .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
        let (parts, body) = req.into_parts();
        let mut out = Request::new(body.map_err(Into::into).boxed());
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = headers;
        if let Some(proto) = &upgrade {
            out.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            out.headers_mut().insert(header::UPGRADE, proto.clone());
        }
        let mut resp =
            match tokio::time::timeout(self.response_timeout, self.client.request(out)).await {
                Err(_) => return Err(UpstreamError::Timeout(self.response_timeout)),
                Ok(Err(e)) => return Err(UpstreamError::Unreachable(error_chain(&e))),
                Ok(Ok(r)) => r,
            };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_side) = client_side {
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
            // Switching protocols unasked would hand the client a connection no policy sees.
            return Err(UpstreamError::Unreachable(
                "the upstream switched protocols although no upgrade was forwarded".into(),
            ));
        }
        strip_hop_by_hop(resp.headers_mut());
        Ok(resp.map(|b| b.map_err(Into::into).boxed()))
    }
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
fn requested_upgrade<B>(req: &Request<B>, allowed: &[String]) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 || req.method() != http::Method::GET {
        return None;
    }
    let mut values = req.headers().get_all(header::UPGRADE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let proto = value.to_str().ok()?.trim();
    let name = proto.split('/').next().unwrap_or_default();
    if proto.contains(',') || !allowed.iter().any(|a| a.eq_ignore_ascii_case(name)) {
        return None;
    }
    let wants = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    wants
        .then(|| req.headers().get(header::UPGRADE).cloned())
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
    // Only the names that are present are collected: usually none (`Connection: keep-alive`
    // names no header that is there), so nothing is allocated.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| headers.contains_key(*t))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
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
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept", "cookie"]);
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
