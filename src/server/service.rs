//! The per-request entry point: request id, tracing span, input checks, the gateway's own
//! endpoints (health, metrics, `/.tessera/`), then routing to an app; metrics and the access
//! log line on the way out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response};
use tracing::Instrument;

use crate::edge::forwarded;
use crate::edge::path::{self, PathRules};
use crate::edge::SecureCookies;
use crate::login;
use crate::proxy::forward_auth;
use crate::runtime::Runtime;
use crate::session::cookie::MAX_COOKIE_HEADER;
use crate::telemetry::access::{AccessNote, Decision};
use crate::telemetry::traces;
use crate::web::body::{full, Body, RequestBody};
use crate::web::rejection::{settle, Rejection};
use crate::web::respond::RequestCtx;

/// Largest single header value accepted.
const MAX_HEADER_VALUE: usize = 16 * 1024;

/// Keeps a client's `X-Request-Id` when it is a plain token, else makes one.
fn request_id(req: &Request<RequestBody>) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(new_request_id)
}

/// A request id only needs to be unique, not secret: the thread-local generator avoids a
/// `getrandom` system call per request (measured +2.4% proxy throughput). Secrets (session
/// ids, tokens, CSRF) keep using the OS generator (`session::random_token`).
fn new_request_id() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut buf = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn host_of(req: &Request<RequestBody>) -> (String, Option<HeaderValue>) {
    let header = req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let host = header
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            // strip the port (IPv6 literals keep their brackets)
            match h.rfind(':') {
                Some(i) if !h[i..].contains(']') => &h[..i],
                _ => h,
            }
            // `app.example.com.` is the same name as `app.example.com` (DNS root).
            .trim_end_matches('.')
            .to_ascii_lowercase()
        })
        .unwrap_or_default();
    (host, header)
}

pub async fn handle(
    rt: Arc<Runtime>,
    req: Request<RequestBody>,
    peer: SocketAddr,
    scheme: &'static str,
) -> Response<Body> {
    let started = Instant::now();
    let (host, host_header) = host_of(&req);
    let origin = forwarded::origin(peer.ip(), scheme, req.headers(), &rt.edge.trusted_proxies);
    let ctx = RequestCtx {
        request_id: request_id(&req),
        peer,
        client_ip: origin.client_ip,
        forwarded_for: origin.chain,
        scheme: origin.scheme,
        host,
        host_header,
        access: AccessNote::default(),
    };
    // The path only: a query may carry codes or tokens.
    let span = tracing::info_span!(
        "request",
        request_id = %ctx.request_id,
        method = %req.method(),
        path = %req.uri().path(),
        otel.kind = "server",
    );
    traces::adopt_parent(&span, req.headers());
    let request_span = span.clone();
    async move {
        let (mut resp, served_by) = dispatch(&rt, req, &ctx).await;
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        secure_own_cookies(&rt, &ctx, &mut resp);
        let app = served_by.map_or("-", |s| s.name(&rt));
        let status = resp.status().as_u16();
        let decision = match ctx.access.decision() {
            Decision::Unset if status >= 500 => Decision::Error,
            Decision::Unset if served_by.is_some() => Decision::Allowed,
            Decision::Unset => Decision::Gateway,
            d => d,
        };
        let elapsed = started.elapsed();
        rt.metrics.request(app, status, elapsed.as_secs_f64());
        if traces::enabled() {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            request_span.set_attribute("http.response.status_code", i64::from(status));
            request_span.set_attribute("tessera.app", app.to_string());
            request_span.set_attribute("tessera.decision", decision.as_str());
        }
        // The access line: who (the subject only), what was decided, how it ended.
        tracing::info!(
            target: "tessera::access",
            request_id = %ctx.request_id,
            app,
            user = ctx.access.user().unwrap_or("-"),
            auth = ctx.access.auth(),
            decision = decision.as_str(),
            status,
            client_ip = %ctx.client_ip,
            latency_us = elapsed.as_micros() as u64,
            "request"
        );
        resp
    }
    .instrument(span)
    .await
}

fn check_input(req: &Request<RequestBody>) -> Result<(), Rejection> {
    input_problem(req).map_or(Ok(()), |m| Err(Rejection::BadRequest(m.into())))
}

fn input_problem(req: &Request<RequestBody>) -> Option<&'static str> {
    let cookie_bytes: usize = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.len())
        .sum();
    if cookie_bytes > MAX_COOKIE_HEADER {
        return Some("the request's cookies are too large");
    }
    if req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .any(|v| v.to_str().is_err())
    {
        return Some("the request's cookie header is malformed");
    }
    if req.headers().values().any(|v| v.len() > MAX_HEADER_VALUE) {
        return Some("a request header is too large");
    }
    None
}

/// What served a request, for metrics and logs: an app or an api (by index).
#[derive(Clone, Copy)]
enum ServedBy {
    App(usize),
    Api(usize),
}

impl ServedBy {
    fn name(self, rt: &Runtime) -> &str {
        match self {
            ServedBy::App(i) => &rt.apps[i].name,
            ServedBy::Api(i) => &rt.apis.list[i].name,
        }
    }
}

/// Returns the response and the app or api that served it.
async fn dispatch(
    rt: &Runtime,
    req: Request<RequestBody>,
    ctx: &RequestCtx,
) -> (Response<Body>, Option<ServedBy>) {
    // The one place the path is decoded: everything after sees only the canonical path.
    let canonical = match check_input(&req).and_then(|()| {
        path::canonicalize(req.uri().path())
            .map_err(|e| Rejection::BadRequest(e.to_string().into()))
    }) {
        Ok(p) => p,
        Err(r) => return (r.answer(ctx), None),
    };
    let target = tracing::debug_span!("route", app = tracing::field::Empty)
        .in_scope(|| route(rt, ctx, &canonical.decoded));
    // An app applies its own path rules; everything else takes the strict ones.
    let canonical = match target {
        Target::App(_) => canonical,
        _ => match PathRules::STRICT.apply(canonical) {
            Ok(p) => p,
            Err(e) => {
                return (
                    Rejection::BadRequest(e.to_string().into()).answer(ctx),
                    None,
                )
            }
        },
    };
    let normalized = canonical;
    if !matches!(target, Target::App(_) | Target::Api(_) | Target::Nowhere) {
        ctx.access.decide(Decision::Gateway);
    }
    match target {
        Target::Health => (super::health::public(rt).await, None),
        Target::Metrics => {
            let mut resp = Response::new(full(rt.metrics.render()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            (resp, None)
        }
        // Boxed: each handler's future is large, and a future is moved whole on every request.
        Target::ForwardAuth(style) => {
            let (resp, app) = Box::pin(forward_auth::handle(rt, req, ctx, style)).await;
            (resp, app.map(ServedBy::App))
        }
        Target::Login => (
            settle(Box::pin(login::handle(rt, req, ctx)).await, ctx),
            None,
        ),
        Target::IdpLogoutDone => (login::upstream::logout_done(ctx), None),
        Target::IdpBackchannelLogout(idp) => (
            Box::pin(login::backchannel::logout(rt, idp, req, ctx)).await,
            None,
        ),
        Target::IdpCallback(idp) => (
            settle(
                Box::pin(login::upstream::callback(rt, idp, req, ctx)).await,
                ctx,
            ),
            None,
        ),
        Target::Provider(provider) => (
            Box::pin(provider.handle(rt, req, ctx, &normalized.decoded)).await,
            None,
        ),
        Target::Api(i) => {
            let resp = Box::pin(rt.apis.list[i].handle(rt, req, ctx, normalized)).await;
            (resp, Some(ServedBy::Api(i)))
        }
        Target::App(i) => {
            let resp = Box::pin(rt.apps[i].handle(rt, req, ctx, normalized)).await;
            (resp, Some(ServedBy::App(i)))
        }
        Target::Nowhere => (Rejection::NoRoute.answer(ctx), None),
    }
}

/// `session.cookie.secure: auto` behind a trusted proxy that terminates TLS: the gateway's
/// own cookies are marked `Secure` when the client's connection was HTTPS. (With the
/// gateway's own TLS, or `always`, they are built `Secure` already; upstream cookies are the
/// upstream's business, and it can never set the gateway's names.)
fn secure_own_cookies(rt: &Runtime, ctx: &RequestCtx, resp: &mut Response<Body>) {
    if ctx.scheme != "https"
        || rt.sessions.settings.cookie.secure
        || rt.edge.secure_cookies != SecureCookies::Auto
        || !resp.headers().contains_key(header::SET_COOKIE)
    {
        return;
    }
    let own = rt.own_cookie_names();
    let values: Vec<HeaderValue> = resp
        .headers_mut()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| {
            let text = v.to_str().unwrap_or_default();
            let name = text.split('=').next().unwrap_or_default().trim();
            let already = text
                .split(';')
                .skip(1)
                .any(|a| a.trim().eq_ignore_ascii_case("secure"));
            if own.contains(&name) && !already {
                HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or_else(|_| v.clone())
            } else {
                v.clone()
            }
        })
        .collect();
    resp.headers_mut().remove(header::SET_COOKIE);
    for v in values {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Who answers a request.
enum Target<'rt> {
    Health,
    Metrics,
    Login,
    ForwardAuth(forward_auth::Style),
    IdpCallback(&'rt crate::connectors::OidcConnector),
    IdpLogoutDone,
    IdpBackchannelLogout(&'rt crate::connectors::OidcConnector),
    Provider(&'rt crate::provider::Provider),
    /// An `apis[]` entry (strict path rules, like the gateway's own endpoints).
    Api(usize),
    App(usize),
    Nowhere,
}

/// The gateway's own endpoints first, then the apis, then the apps by host and path.
fn route<'rt>(rt: &'rt Runtime, ctx: &RequestCtx, path: &str) -> Target<'rt> {
    if path == rt.health_location {
        return Target::Health;
    }
    // With an admin listener the metrics are served there only; here the path is an
    // ordinary one (routed to an app, or 404).
    if rt.listen.admin.is_none() && rt.metrics_location.as_deref() == Some(path) {
        return Target::Metrics;
    }
    if path == forward_auth::AUTH_PATH {
        return Target::ForwardAuth(forward_auth::Style::Status);
    }
    if path == forward_auth::FORWARD_AUTH_PATH {
        return Target::ForwardAuth(forward_auth::Style::Redirect);
    }
    if path.starts_with(login::PREFIX) {
        return Target::Login;
    }
    if let Some((idp, kind)) = login::upstream::callback_of(rt, path) {
        return match kind {
            login::upstream::Callback::SignIn => Target::IdpCallback(idp),
            login::upstream::Callback::LogoutDone => Target::IdpLogoutDone,
            login::upstream::Callback::BackchannelLogout => Target::IdpBackchannelLogout(idp),
        };
    }
    if let Some(provider) = rt.provider.as_ref().filter(|p| p.serves(path)) {
        return Target::Provider(provider);
    }
    if let Some(i) = rt.apis.router.route(&ctx.host, &ctx.host_port(), path) {
        tracing::Span::current().record("app", rt.apis.list[i].name.as_str());
        return Target::Api(i);
    }
    match rt.router.route(&ctx.host, &ctx.host_port(), path) {
        Some(i) => {
            tracing::Span::current().record("app", rt.apps[i].name.as_str());
            Target::App(i)
        }
        None => Target::Nowhere,
    }
}
