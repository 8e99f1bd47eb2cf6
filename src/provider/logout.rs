//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): `id_token_hint`,
//! `post_logout_redirect_uri` matched exactly against the client's `logoutRedirectURLs`,
//! `state` passed back, the gateway session ended.

use crate::server::body::read_limited;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::params::{self, Params};
use super::Provider;
use crate::pages;
use crate::runtime::Runtime;
use crate::server::body::Body;
use crate::server::respond::{self, RequestCtx};

/// The parameters, or the status and text of the refusal (400; 408/413 for a body that
/// came too slowly or too large).
async fn read(req: Request<Incoming>) -> Result<(http::HeaderMap, Params), (StatusCode, String)> {
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    let (parts, raw) = if req.method() == Method::POST {
        read_limited(req, 64 * 1024)
            .await
            .map_err(|e| (e.status(), e.message().to_string()))?
    } else if req.method() == Method::GET {
        let (parts, _) = req.into_parts();
        let query = bytes::Bytes::copy_from_slice(parts.uri.query().unwrap_or("").as_bytes());
        (parts, query)
    } else {
        return Err(bad("use GET or POST".into()));
    };
    let p = params::parse(&raw).map_err(|e| bad(e.description))?;
    Ok((parts.headers, p))
}

pub async fn end_session(
    p: &Provider,
    rt: &Runtime,
    req: Request<Incoming>,
    ctx: &RequestCtx,
) -> Response<Body> {
    let (headers, params) = match read(req).await {
        Ok(x) => x,
        Err((status, e)) => {
            return respond::error(status, &format!("Invalid logout request: {e}."), ctx)
        }
    };
    // The hint may be expired (that is the normal case at logout) but must be ours.
    let hint = match params.get("id_token_hint") {
        None => None,
        Some(t) => match p.verify(t, "JWT", false) {
            Some(claims) => Some(claims),
            None => {
                return respond::error(
                    StatusCode::BAD_REQUEST,
                    "The id_token_hint is not a valid ID token of this provider.",
                    ctx,
                )
            }
        },
    };
    let hinted_client = hint
        .as_ref()
        .and_then(|c| c["aud"].as_str().map(str::to_string));
    let client_id = match (params.get("client_id"), hinted_client) {
        (Some(a), Some(b)) if *a != b => {
            return respond::error(
                StatusCode::BAD_REQUEST,
                "client_id does not match the id_token_hint.",
                ctx,
            )
        }
        (Some(a), _) => Some(a.clone()),
        (None, b) => b,
    };
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let registered = client_id
                .as_ref()
                .and_then(|id| p.clients.get(id))
                .is_some_and(|c| c.logout_redirect_uris.iter().any(|u| u == uri));
            if !registered {
                return respond::error(
                    StatusCode::BAD_REQUEST,
                    "The post_logout_redirect_uri is not registered for this application.",
                    ctx,
                );
            }
            let mut url = match url::Url::parse(uri) {
                Ok(u) => u,
                Err(_) => {
                    return respond::error(
                        StatusCode::BAD_REQUEST,
                        "Invalid post_logout_redirect_uri.",
                        ctx,
                    )
                }
            };
            if let Some(state) = params.get("state") {
                url.query_pairs_mut().append_pair("state", state);
            }
            Some(url.to_string())
        }
    };
    let session = match rt.sessions.load(&headers).await {
        Ok(s) => s,
        Err(_) => {
            return respond::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-out is temporarily unavailable.",
                ctx,
            )
        }
    };
    let clear = match rt.sessions.end(session.as_ref()).await {
        Ok(c) => c,
        Err(_) => {
            return respond::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-out is temporarily unavailable.",
                ctx,
            )
        }
    };
    tracing::info!(
        client = client_id.as_deref().unwrap_or("-"),
        "RP-initiated logout"
    );
    match redirect {
        Some(to) => respond::redirect(StatusCode::FOUND, &to, &[clear], ctx),
        None => {
            let mut resp = respond::html(StatusCode::OK, pages::logged_out_page(), ctx);
            respond::add_cookies(&mut resp, &[clear]);
            resp
        }
    }
}
