//! Back-channel logout from upstream IdPs (OpenID Connect Back-Channel Logout 1.0, the RP
//! side): an OIDC connector with `oidcBackchannelLogoutURL` receives the IdP's logout tokens
//! there. A valid token (see `OidcConnector::verify_logout_token`) that was not seen before
//! (its `jti` is remembered in the store, so a replay at any replica is refused) ends every
//! gateway session that came from the IdP session it names — and so the grants issued in
//! them and their RPs' sessions (`session::EndListener`). Anything else is answered 400
//! `invalid_request` (section 2.8), logged with the reason, and ends nothing.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::connectors::oidc::{OidcConnector, LOGOUT_TOKEN_MAX_AGE};
use crate::runtime::Runtime;
use crate::web::body::{full, read_limited, Body, RequestBody};
use crate::web::respond::RequestCtx;

/// The store key remembering a logout token's `jti` (per connector).
fn seen_key(connector: &str, jti: &str) -> String {
    format!(
        "upstream-logout-jti:{connector}:{}",
        crate::provider::grants::hash(jti)
    )
}

fn answer(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn refused(idp: &OidcConnector, status: StatusCode, reason: &str) -> Response<Body> {
    tracing::warn!(idp = %idp.name, reason = %reason, "back-channel logout refused");
    let body = serde_json::json!({ "error": "invalid_request", "error_description": reason });
    answer(status, body.to_string())
}

pub async fn logout(
    rt: &Runtime,
    idp: &OidcConnector,
    req: Request<RequestBody>,
    _ctx: &RequestCtx,
) -> Response<Body> {
    if req.method() != Method::POST {
        return refused(idp, StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    let raw = match read_limited(req, 16 * 1024).await {
        Ok((_, raw)) => raw,
        Err(e) => return refused(idp, e.status(), e.message()),
    };
    let form = match super::fields(&raw) {
        Ok(f) => f,
        Err(e) => return refused(idp, StatusCode::BAD_REQUEST, &e),
    };
    let Some(token) = form.get("logout_token") else {
        return refused(idp, StatusCode::BAD_REQUEST, "logout_token is required");
    };
    let claims = match idp.verify_logout_token(token).await {
        Ok(c) => c,
        Err(reason) => return refused(idp, StatusCode::BAD_REQUEST, &reason),
    };
    let store = rt.sessions.store();
    let ttl = Duration::from_secs(LOGOUT_TOKEN_MAX_AGE + 120);
    match store
        .put_if_absent(
            &seen_key(&idp.name, &claims.jti),
            Bytes::from_static(b"1"),
            ttl,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return refused(
                idp,
                StatusCode::BAD_REQUEST,
                "the logout token was already used (jti)",
            )
        }
        Err(e) => {
            crate::telemetry::failures::failed("store", "sessions", "back-channel logout", &e);
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"temporarily_unavailable"}"#.into(),
            );
        }
    }
    match rt
        .sessions
        .end_upstream(&idp.name, claims.sid.as_deref(), claims.sub.as_deref())
        .await
    {
        Ok(n) => {
            tracing::info!(idp = %idp.name, sessions = n, "back-channel logout from the identity provider");
            answer(StatusCode::OK, String::new())
        }
        Err(e) => {
            // The token was good: forget its jti so that the IdP's retry is not a replay.
            let _ = store.delete(&seen_key(&idp.name, &claims.jti)).await;
            crate::telemetry::failures::failed("store", "sessions", "back-channel logout", &e);
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"temporarily_unavailable"}"#.into(),
            )
        }
    }
}
