//! The UserInfo endpoint (OIDC Core 5.3): GET or POST with a bearer token; the claims the
//! granted scopes (and the `claims` parameter) allow.

use http::header::{self, HeaderMap};
use http::{Method, Request, Response};
use serde_json::{json, Value};

use super::errors::{json_no_store, OAuthError};
use super::params;
use super::Provider;
use crate::claims::oidc::released;
use crate::web::body::{Body, RequestBody};

/// The bearer token from `Authorization: Bearer` or, for a form POST, `access_token`
/// (RFC 6750 2.1 and 2.2; never both).
pub fn bearer(headers: &HeaderMap, form: Option<&params::Params>) -> Result<String, OAuthError> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        });
    let from_form = form.and_then(|f| f.get("access_token").cloned());
    match (from_header, from_form) {
        (Some(_), Some(_)) => Err(OAuthError::invalid_request(
            "send the token once, not in the header and the body",
        )),
        (Some(t), None) | (None, Some(t)) if !t.is_empty() => Ok(t),
        _ => Err(OAuthError::missing_token()),
    }
}

pub async fn userinfo(
    p: &Provider,
    rt: &crate::runtime::Runtime,
    req: Request<RequestBody>,
    ctx: &crate::web::respond::RequestCtx,
) -> Response<Body> {
    let view = p.userinfo_se.as_ref().map(|_| {
        let parts = crate::extensions::request::RequestParts {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
        };
        crate::extensions::request::guest_request(ctx, "", parts, &rt.own_cookie_names(), Some(&[]))
    });
    match run(p, req, view).await {
        Ok(v) => json_no_store(&v),
        Err(e) => e.response(),
    }
}

async fn run(
    p: &Provider,
    req: Request<RequestBody>,
    view: Option<crate::extensions::GuestRequest>,
) -> Result<Value, OAuthError> {
    let token = match *req.method() {
        Method::GET => bearer(req.headers(), None)?,
        Method::POST => {
            let has_form = req.headers().contains_key(header::CONTENT_TYPE);
            if has_form {
                let (headers, form) = params::read_form(req).await?;
                bearer(&headers, Some(&form))?
            } else {
                bearer(req.headers(), None)?
            }
        }
        _ => return Err(OAuthError::invalid_request("userinfo takes GET or POST")),
    };
    let Some(live) = p.access_record(&token).await? else {
        return Err(OAuthError::invalid_token(
            "the access token is invalid, expired or revoked",
        ));
    };
    let Some((grant, Some(sub))) = live.user_grant().map(|g| (g, &g.sub)) else {
        return Err(OAuthError::invalid_token(
            "this token was issued to a client, not a user",
        ));
    };
    if !grant.has_scope("openid") {
        let mut e = OAuthError::invalid_token("the token lacks the openid scope");
        e.code = "insufficient_scope";
        e.status = http::StatusCode::FORBIDDEN;
        e.challenge = Some("Bearer error=\"insufficient_scope\", scope=\"openid\"".into());
        return Err(e);
    }
    let requested = grant.requested.as_ref().and_then(|r| r.get("userinfo"));
    let mut claims = released(&grant.claims, &grant.scopes, requested);
    if let (Some(hook), Some(mut request)) = (&p.userinfo_se, view) {
        request.app = p
            .clients
            .get(&grant.client_id)
            .map(|c| c.app.clone())
            .unwrap_or_default();
        let token = crate::extensions::TokenContext {
            client_id: grant.client_id.clone(),
            subject: sub.clone(),
            grant_type: "userinfo".into(),
            scopes: grant.scopes.clone(),
            audience: grant.audiences.clone(),
        };
        let input = crate::extensions::HookCall {
            request,
            attrs: grant.attrs.clone(),
        };
        let extra = hook
            .build_claims(input, token)
            .await
            .map_err(|_| OAuthError::server_error("a claims extension failed"))?;
        claims.extend(extra.value);
    }
    claims.insert("sub".into(), json!(sub));
    Ok(Value::Object(claims))
}
