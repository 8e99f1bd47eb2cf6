//! Building the gateway's own responses: error pages, redirects, HTML and JSON.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::body::{full, Body};
use crate::pages;

/// What every handler needs to know about the request it serves.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub request_id: String,
    /// The TCP peer (a proxy in front of the gateway, or the client itself).
    pub peer: std::net::SocketAddr,
    /// The client's address: the peer's, or the one a trusted proxy reported
    /// (`http.trustedProxies`). Use this, not `peer`, for logs, throttling and extensions.
    pub client_ip: std::net::IpAddr,
    /// The trusted hop chain (client first, the peer last) when the peer is a trusted proxy,
    /// for the upstream's `X-Forwarded-For`.
    pub forwarded_for: Option<String>,
    /// "http" or "https", as the client connected (to the gateway, or to a trusted proxy).
    pub scheme: &'static str,
    /// Host the client asked for (without port), lowercased.
    pub host: String,
    /// Host header as sent (with port), for X-Forwarded-Host and preserveHost.
    pub host_header: Option<HeaderValue>,
    /// The decision and user, noted by handlers for the access log line.
    pub access: crate::telemetry::access::AccessNote,
}

impl RequestCtx {
    /// The Host header as sent (with its port), lowercased; empty without one. Routes
    /// naming a port match it.
    pub fn host_port(&self) -> String {
        self.host_header
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    }
}

fn with_common(mut resp: Response<Body>, ctx: &RequestCtx) -> Response<Body> {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        h.insert("x-request-id", v);
    }
    resp
}

/// An HTML page the gateway renders itself (never cached, never framed).
pub fn html(status: StatusCode, body: String, ctx: &RequestCtx) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    with_common(resp, ctx)
}

/// `html`, for a page that loads `frames` (absolute URLs) in iframes: its CSP allows
/// framing exactly their origins.
pub fn html_with_frames(
    status: StatusCode,
    body: String,
    ctx: &RequestCtx,
    frames: &[String],
) -> Response<Body> {
    let mut resp = html(status, body, ctx);
    let mut origins: Vec<String> = frames
        .iter()
        .filter_map(|f| url::Url::parse(f).ok())
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
        .collect();
    origins.sort();
    origins.dedup();
    if origins.is_empty() {
        return resp;
    }
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; frame-src {}; frame-ancestors 'none'",
        origins.join(" ")
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// A friendly error page carrying the request id.
pub fn error(status: StatusCode, message: &str, ctx: &RequestCtx) -> Response<Body> {
    let title = status.canonical_reason().unwrap_or("Error");
    html(
        status,
        pages::error_page(status.as_u16(), title, message, &ctx.request_id),
        ctx,
    )
}

/// A redirect; `set_cookies` are added as separate `Set-Cookie` headers.
pub fn redirect(
    status: StatusCode,
    location: &str,
    set_cookies: &[String],
    ctx: &RequestCtx,
) -> Response<Body> {
    let mut resp = Response::new(full(""));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            h.insert(header::LOCATION, v);
        }
        Err(_) => {
            return error(StatusCode::BAD_REQUEST, "Invalid redirect target.", ctx);
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    add_cookies(&mut resp, set_cookies);
    with_common(resp, ctx)
}

pub fn add_cookies(resp: &mut Response<Body>, set_cookies: &[String]) {
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

pub fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
