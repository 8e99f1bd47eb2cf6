//! The headers an upstream receives: the client's, minus hop-by-hop headers, the gateway's
//! own cookies and any client-sent copy of an identity header; plus the identity headers
//! rendered from the session and the `X-Forwarded-*` set.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::upstream::strip_hop_by_hop;
use super::ProxyApp;
use crate::claims::{Attributes, Template};
use crate::server::respond::RequestCtx;
use crate::session::cookie::without_cookie;

#[derive(Debug, Clone)]
pub struct InjectedHeader {
    pub name: HeaderName,
    pub template: Template,
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers that may not be configured as identity headers: the proxy manages them.
pub fn reserved(name: &HeaderName) -> bool {
    [
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "cookie",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
    ]
    .contains(&name.as_str())
}

pub fn upstream_headers(
    app: &ProxyApp,
    incoming: &HeaderMap,
    ctx: &RequestCtx,
    attrs: &Attributes,
    own_cookies: &[&str],
) -> HeaderMap {
    let mut h = incoming.clone();
    strip_hop_by_hop(&mut h);
    for ih in &app.headers {
        h.remove(&ih.name);
    }
    match without_cookie(incoming, own_cookies) {
        Some(c) => match HeaderValue::from_str(&c) {
            Ok(v) => {
                h.insert(header::COOKIE, v);
            }
            Err(_) => {
                h.remove(header::COOKIE);
            }
        },
        None => {
            h.remove(header::COOKIE);
        }
    }
    let ip = ctx.client_ip.to_string();
    let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip}"),
        _ => ip,
    };
    h.remove(&X_FORWARDED_FOR);
    // `try_from(String)` validates like `from_str` but keeps the buffer instead of copying it.
    if let Ok(v) = HeaderValue::try_from(xff) {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    h.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(ctx.scheme),
    );
    h.remove(&X_FORWARDED_HOST);
    if let Some(host) = &ctx.host_header {
        h.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        h.insert(X_REQUEST_ID.clone(), v);
    }
    if app.preserve_host {
        if let Some(host) = &ctx.host_header {
            h.insert(header::HOST, host.clone());
        }
    } else if let Some(v) = app.upstream.host_header() {
        h.insert(header::HOST, v.clone());
    }
    for ih in &app.headers {
        // Always a valid value: items a header cannot carry are left out (and logged).
        if let Some(v) = ih.template.render_header(&ih.name, attrs) {
            h.insert(ih.name.clone(), v);
        }
    }
    h
}
