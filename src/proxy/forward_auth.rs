//! Forward-auth: an ingress (nginx `auth_request`, ingress-nginx `auth-url`, Traefik
//! `forwardAuth`, Caddy `forward_auth`) moves the bytes and asks the gateway for the decision.
//! The ingress sends the original request's method, URL and cookies; the gateway routes the
//! original URL to a `forwardAuth` app and runs the same phases a proxied request runs, up to
//! and including `authorize`, then answers:
//!
//! - `200` with the identity headers, for the ingress to copy into the request it forwards;
//! - not signed in: `401` at `/.tessera/auth` (nginx, whose `auth-signin` sends the browser
//!   to the gateway's `/.tessera/login?rd=…`), or a `302` to that sign-in at
//!   `/.tessera/forward-auth` (Traefik and Caddy pass the answer to the browser);
//! - `403` when the policy says no.
//!
//! Nothing is cached: every call loads the session, so a logout is effective at the next
//! request.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use super::pipeline::SignInBy;
use super::AppKind;
use crate::edge::forwarded::{original_request, OriginalError};
use crate::edge::path;
use crate::runtime::Runtime;
use crate::web::body::{full, Body, RequestBody};
use crate::web::rejection::Rejection;
use crate::web::respond::RequestCtx;

/// `/.tessera/auth`: not signed in is `401`.
pub const AUTH_PATH: &str = "/.tessera/auth";
/// `/.tessera/forward-auth`: not signed in is a redirect to the gateway's sign-in.
pub const FORWARD_AUTH_PATH: &str = "/.tessera/forward-auth";

/// A `forwardAuth` app's own settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where browsers reach the gateway's own pages (`gatewayURL`): the sign-in a redirect
    /// sends them to.
    pub gateway_url: String,
}

/// How the caller wants "not signed in" answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Status,
    Redirect,
}

/// Answers a forward-auth call. `ctx` is the call's own context (the ingress is the peer).
pub async fn handle(
    rt: &Runtime,
    req: Request<RequestBody>,
    ctx: &RequestCtx,
    style: Style,
) -> (Response<Body>, Option<usize>) {
    match decide(rt, req, ctx, style).await {
        Ok((headers, app)) => {
            let mut resp = Response::new(full(""));
            *resp.headers_mut() = headers;
            no_store(&mut resp);
            (resp, Some(app))
        }
        Err((r, app)) => {
            let mut resp = r.answer(ctx);
            no_store(&mut resp);
            (resp, app)
        }
    }
}

type Refused = (Rejection, Option<usize>);

async fn decide(
    rt: &Runtime,
    req: Request<RequestBody>,
    ctx: &RequestCtx,
    style: Style,
) -> Result<(http::HeaderMap, usize), Refused> {
    let original = original_request(ctx.peer.ip(), req.headers(), &rt.edge.trusted_proxies)
        .map_err(|e| {
            tracing::warn!(peer = %ctx.peer, error = %e, "forward-auth call refused");
            let r = match e {
                OriginalError::UntrustedPeer => {
                    Rejection::page(StatusCode::FORBIDDEN, e.to_string())
                }
                OriginalError::Missing | OriginalError::Malformed => {
                    Rejection::BadRequest(e.to_string().into())
                }
            };
            (r, None)
        })?;
    let (path_only, query) = match original.path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (original.path_and_query.as_str(), None),
    };
    let canonical = path::canonicalize(path_only)
        .map_err(|e| (Rejection::BadRequest(e.to_string().into()), None))?;
    let host_header = HeaderValue::from_str(&original.host)
        .map_err(|_| (Rejection::BadRequest("bad original host".into()), None))?;
    let host = original
        .host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(original.host.as_str(), |(h, _)| h)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let Some(i) = rt
        .forward_router
        .route(&host, &original.host, &canonical.decoded)
    else {
        return Err((Rejection::NoRoute, None));
    };
    let app = &rt.apps[i];
    let AppKind::ForwardAuth(settings) = &app.kind else {
        return Err((Rejection::NoRoute, None));
    };
    // The original request as the app's phases see it: its method, URL and host, with the
    // call's headers (the browser's cookies come with them).
    let (mut parts, _) = req.into_parts();
    parts.method = original.method.clone();
    let pq = match query {
        Some(q) => format!("{}?{q}", canonical.forward),
        None => canonical.forward.clone(),
    };
    parts.uri = pq
        .parse()
        .map_err(|_| (Rejection::BadRequest("bad original URL".into()), Some(i)))?;
    parts.headers.insert(header::HOST, host_header.clone());
    let on_behalf = RequestCtx {
        scheme: original.scheme,
        host,
        host_header: Some(host_header),
        ..ctx.clone()
    };
    let sign_in = match style {
        Style::Status => SignInBy::Status,
        Style::Redirect => SignInBy::Redirect(&settings.gateway_url),
    };
    let decided = app.decide(rt, &on_behalf, parts, canonical, sign_in).await;
    // What the app's phases noted (user, decision) belongs to this call's access line.
    ctx.access.decide(on_behalf.access.decision());
    if let Some(user) = on_behalf.access.user() {
        ctx.access.user_is(user);
    }
    if on_behalf.access.is_bearer() {
        ctx.access.by_bearer();
    }
    match decided {
        Ok(headers) => {
            ctx.access
                .decide(crate::telemetry::access::Decision::Allowed);
            Ok((headers, i))
        }
        // nginx's `auth_request` takes any answer but 2xx, 401 and 403 as an error (500):
        // a redirect to an unauthorized page is a plain 403 there.
        Err(Rejection::NotAllowed { .. }) if style == Style::Status => Err((
            Rejection::NotAllowed {
                unauthorized_page: None,
            },
            Some(i),
        )),
        Err(r) => Err((r, Some(i))),
    }
}

fn no_store(resp: &mut Response<Body>) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
