//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): `id_token_hint`,
//! `post_logout_redirect_uri` matched exactly against the client's `logoutRedirectURLs`,
//! `state` passed back, the gateway session ended.
//!
//! Only a request whose `id_token_hint` is an ID token of this provider, issued to one of its
//! clients for the user of the current session, ends the session at once. Any other request
//! (no hint, a hint for another user) gets a confirmation page whose form POSTs back here
//! with the session's CSRF token (§2 and §6 of the specification: logout requests without a
//! valid hint are a means of denial of service, so the user must confirm).

use crate::web::body::{read_limited, RequestBody};
use http::{Method, Request, Response, StatusCode};

use super::params::{self, Params};
use super::Provider;
use crate::pages;
use crate::runtime::Runtime;
use crate::session::Session;
use crate::web::body::Body;
use crate::web::rejection::Rejection;
use crate::web::respond::{self, RequestCtx};
use serde_json::Value;

/// The parameters, or the status and text of the refusal (400; 408/413 for a body that
/// came too slowly or too large).
async fn read(
    req: Request<RequestBody>,
) -> Result<(http::HeaderMap, Params), (StatusCode, String)> {
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

/// Is `hint` (already verified as ours) an ID token for one of our clients about the user
/// of `session`? The subject is computed for the hinted client as the authorization
/// endpoint computes it (configured attribute or `<idp>.sub`, pairwise if so configured).
fn hint_is_for_session(p: &Provider, hint: &Value, session: &Session) -> bool {
    let Some(client) = hint["aud"].as_str().and_then(|aud| p.clients.get(aud)) else {
        return false;
    };
    let Some(sub) = hint["sub"].as_str() else {
        return false;
    };
    client
        .idps
        .iter()
        .filter(|idp| {
            session
                .data
                .authenticated_by_any(std::slice::from_ref(*idp))
        })
        .any(|idp| p.subject(client, &session.data.attrs, idp).as_deref() == Some(sub))
}

fn unavailable(ctx: &RequestCtx) -> Response<Body> {
    Rejection::refused_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-out is temporarily unavailable.",
    )
    .answer(ctx)
}

pub async fn end_session(
    p: &Provider,
    rt: &Runtime,
    req: Request<RequestBody>,
    ctx: &RequestCtx,
) -> Response<Body> {
    let method = req.method().clone();
    let (headers, params) = match read(req).await {
        Ok(x) => x,
        Err((status, e)) => {
            return Rejection::refused_page(status, format!("Invalid logout request: {e}."))
                .answer(ctx)
        }
    };
    // The hint may be expired (that is the normal case at logout) but must be ours.
    let hint = match params.get("id_token_hint") {
        None => None,
        Some(t) => match p.verify(t, super::keys::TokenType::Id, false) {
            Some(claims) => Some(Value::Object(claims)),
            None => {
                return Rejection::refused_page(
                    StatusCode::BAD_REQUEST,
                    "The id_token_hint is not a valid ID token of this provider.",
                )
                .answer(ctx)
            }
        },
    };
    let hinted_client = hint
        .as_ref()
        .and_then(|c| c["aud"].as_str().map(str::to_string));
    let client_id = match (params.get("client_id"), hinted_client) {
        (Some(a), Some(b)) if *a != b => {
            return Rejection::refused_page(
                StatusCode::BAD_REQUEST,
                "client_id does not match the id_token_hint.",
            )
            .answer(ctx)
        }
        (Some(a), _) => Some(a.clone()),
        (None, b) => b,
    };
    let client = client_id.as_ref().and_then(|id| p.clients.get(id));
    // Validated before anything else: an unregistered URI is never redirected to, not even
    // after a confirmation (the form carries only what was validated here).
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let registered =
                client.is_some_and(|c| c.logout_redirect_uris.iter().any(|u| u == uri));
            if !registered {
                return Rejection::refused_page(
                    StatusCode::BAD_REQUEST,
                    "The post_logout_redirect_uri is not registered for this application.",
                )
                .answer(ctx);
            }
            let mut url = match url::Url::parse(uri) {
                Ok(u) => u,
                Err(_) => {
                    return Rejection::refused_page(
                        StatusCode::BAD_REQUEST,
                        "Invalid post_logout_redirect_uri.",
                    )
                    .answer(ctx)
                }
            };
            if let Some(state) = params.get("state") {
                url.query_pairs_mut().append_pair("state", state);
            }
            Some((uri.clone(), url.to_string()))
        }
    };
    let session = match rt.sessions.load(&headers).await {
        Ok(s) => s,
        Err(_) => return unavailable(ctx),
    };
    // No session: nothing to end, nothing to confirm.
    if let Some(session) = &session {
        let hint_ok = hint
            .as_ref()
            .is_some_and(|h| hint_is_for_session(p, h, session));
        let posted_token = (method == Method::POST)
            .then(|| params.get("csrf").map(String::as_str))
            .flatten();
        if !hint_ok && posted_token.is_none() {
            let mut fields: Vec<(&str, &str)> = Vec::new();
            if let Some(id) = client.map(|c| c.id.as_str()) {
                fields.push(("client_id", id));
            }
            if let Some((uri, _)) = &redirect {
                fields.push(("post_logout_redirect_uri", uri));
                if let Some(state) = params.get("state") {
                    fields.push(("state", state));
                }
            }
            let csrf = session.csrf_token();
            let page = pages::logout_confirm_page(&pages::LogoutForm {
                action: &p.endpoints.end_session,
                csrf: &csrf,
                app: client.map(|c| c.app.as_str()),
                fields: &fields,
            });
            return respond::html(StatusCode::OK, page, ctx);
        }
        if !hint_ok && !session.csrf_matches(posted_token) {
            tracing::warn!(
                client = client_id.as_deref().unwrap_or("-"),
                "RP-initiated logout with a wrong CSRF token refused"
            );
            return crate::login::logout_refused().answer(ctx);
        }
    }
    let ended = match rt.sessions.end(session.as_ref()).await {
        Ok(e) => e,
        Err(_) => return unavailable(ctx),
    };
    let clear = ended.clear;
    if session.is_some() {
        tracing::info!(
            client = client_id.as_deref().unwrap_or("-"),
            "RP-initiated logout"
        );
    }
    // After a POST, 303 makes the browser GET the RP's page.
    let status = if method == Method::POST {
        StatusCode::SEE_OTHER
    } else {
        StatusCode::FOUND
    };
    // Apps told by front-channel logout: a page loads them, then goes on to the RP.
    if !ended.frames.is_empty() {
        let next = redirect.as_ref().map(|(_, to)| to.as_str());
        let page = pages::signed_out_page(&ended.frames, next);
        let mut resp = respond::html_with_frames(StatusCode::OK, page, ctx, &ended.frames);
        respond::add_cookies(&mut resp, &[clear]);
        return resp;
    }
    match redirect {
        Some((_, to)) => respond::redirect(status, &to, &[clear], ctx),
        None => {
            let mut resp = respond::html(StatusCode::OK, pages::logged_out_page(), ctx);
            respond::add_cookies(&mut resp, &[clear]);
            resp
        }
    }
}
