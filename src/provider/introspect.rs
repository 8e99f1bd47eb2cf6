//! Token introspection (RFC 7662) and revocation (RFC 7009), for authenticated clients.
//! A client introspects its own tokens, and those of the apps its `introspection.tokensOf`
//! lists; any other token is answered `{"active": false}`.

use http::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::errors::{json_no_store, OAuthError};
use super::grants::{refresh_key, LiveAccess, RefreshRecord};
use super::Provider;
use super::{client_auth, params};
use crate::session::now_unix;
use crate::web::body::{full, Body, RequestBody};

pub async fn introspect(p: &Provider, req: Request<RequestBody>) -> Response<Body> {
    match run_introspect(p, req).await {
        Ok(v) => json_no_store(&v),
        Err(e) => e.response(),
    }
}

async fn run_introspect(p: &Provider, req: Request<RequestBody>) -> Result<Value, OAuthError> {
    let (headers, form) = params::read_form(req).await?;
    let caller =
        client_auth::authenticate(p, &headers, &form, false, &p.endpoints.introspection).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let hint = form.get("token_type_hint").map(String::as_str);
    let order: [&str; 2] = if hint == Some("refresh_token") {
        ["refresh_token", "access_token"]
    } else {
        ["access_token", "refresh_token"]
    };
    for kind in order {
        let found = if kind == "access_token" {
            access_info(p, token).await?
        } else {
            refresh_info(p, token).await?
        };
        if let Some(v) = found {
            // RFC 7662 section 4: another client's token is answered as inactive (not as an
            // error, which would tell the caller that the token exists), unless the caller is
            // a resource server allowed to see that client's tokens.
            let owner = v["client_id"].as_str().unwrap_or_default();
            if !caller.may_introspect(owner) {
                tracing::info!(
                    client = %caller.id,
                    token_client = owner,
                    "introspection of another client's token answered inactive"
                );
                return Ok(inactive());
            }
            return Ok(v);
        }
    }
    Ok(inactive())
}

fn inactive() -> Value {
    json!({"active": false})
}

async fn access_info(p: &Provider, token: &str) -> Result<Option<Value>, OAuthError> {
    let Some(live) = p.access_record(token).await? else {
        return Ok(None);
    };
    let username = live.user_grant().and_then(|g| g.username.clone());
    let mut info = access_claims(p, live);
    if let Some(name) = username {
        info.insert("username".into(), json!(name));
    }
    info.insert("active".into(), json!(true));
    info.insert("token_type".into(), json!("Bearer"));
    Ok(Some(Value::Object(info)))
}

/// The claims of a live access token, as introspection answers them and as a bearer
/// request's `token.*` attributes: a JWT's own (verified) claims, the grant reference kept
/// internal; an opaque token's record in the same RFC 9068 names.
pub fn access_claims(p: &Provider, live: LiveAccess) -> Map<String, Value> {
    let rec = match live {
        LiveAccess::Jwt { claims, .. } => return claims,
        LiveAccess::Opaque(rec) => rec,
    };
    let g = &rec.grant;
    let aud: Value = if g.audiences.is_empty() {
        json!(g.client_id)
    } else {
        json!(g.audiences)
    };
    let mut info = Map::new();
    let mut set = |k: &str, v: Value| {
        info.insert(k.to_string(), v);
    };
    set("scope", json!(g.scope_string()));
    set("client_id", json!(g.client_id));
    set(
        "sub",
        json!(g.sub.clone().unwrap_or_else(|| g.client_id.clone())),
    );
    set("aud", aud);
    set("iss", json!(p.issuer));
    set("exp", json!(rec.exp));
    set("iat", json!(rec.iat));
    set("jti", json!(rec.jti));
    // Claims a BuildAccessTokenClaims extension added (never reserved ones).
    for (k, v) in &rec.ext_claims {
        info.insert(k.clone(), v.clone());
    }
    info
}

async fn refresh_info(p: &Provider, token: &str) -> Result<Option<Value>, OAuthError> {
    let Some(bytes) = p.store.get(&refresh_key(token)).await? else {
        return Ok(None);
    };
    let Ok(rec) = serde_json::from_slice::<RefreshRecord>(&bytes) else {
        return Ok(None);
    };
    if rec.rotated.is_some() || rec.exp <= now_unix() || p.family_revoked(&rec.family).await? {
        return Ok(None);
    }
    let survives = p
        .clients
        .get(&rec.grant.client_id)
        .is_some_and(|c| c.refresh.survives_logout);
    if !survives && p.session_ended(&rec.grant).await? {
        return Ok(None);
    }
    if p.consent_withdrawn(&rec.grant).await? {
        return Ok(None);
    }
    let g = &rec.grant;
    let mut info = json!({
        "active": true,
        "token_type": "refresh_token",
        "scope": g.scope_string(),
        "client_id": g.client_id,
        "sub": g.sub,
        "iss": p.issuer,
        "exp": rec.exp,
    });
    if let Some(name) = &g.username {
        info["username"] = json!(name);
    }
    Ok(Some(info))
}

pub async fn revoke(p: &Provider, req: Request<RequestBody>) -> Response<Body> {
    match run_revoke(p, req).await {
        Ok(()) => {
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::OK;
            r
        }
        Err(e) => e.response(),
    }
}

/// Revokes a refresh token (and its whole family, with the access tokens issued from it) or
/// an access token. Unknown tokens and tokens of other clients are answered 200 without
/// effect, as RFC 7009 2.2 requires.
async fn run_revoke(p: &Provider, req: Request<RequestBody>) -> Result<(), OAuthError> {
    let (headers, form) = params::read_form(req).await?;
    let client =
        client_auth::authenticate(p, &headers, &form, true, &p.endpoints.revocation).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    if let Some(bytes) = p.store.get(&refresh_key(token)).await? {
        if let Ok(rec) = serde_json::from_slice::<RefreshRecord>(&bytes) {
            if rec.grant.client_id == client.id {
                p.revoke_family(&rec.family, client.refresh.lifetime)
                    .await?;
                p.store.delete(&refresh_key(token)).await?;
            }
        }
        return Ok(());
    }
    if let Some(live) = p.access_record(token).await? {
        if live.client_id() == client.id {
            p.withdraw(&live.issued()).await?;
        }
        return Ok(());
    }
    Ok(())
}
