//! The token endpoint: `authorization_code` (single use, PKCE, replay revokes what the code
//! issued), `refresh_token` (rotation on every use; a replay within `reuseGraceSeconds` gets
//! the same answer, after it revokes the whole family), `client_credentials` and `password`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::errors::{json_no_store, OAuthError};
use super::grants::{
    code_key, redeemed_key, refresh_key, rotation_answer_key, CodeRecord, Grant, RedeemedCode,
    RefreshRecord, Rotation, TokenCall,
};
use super::params::{self, Params};
use super::scopes;
use super::{Client, Provider};
use crate::claims::oidc::user_claims;
use crate::connectors::username;
use crate::connectors::Connector;
use crate::extensions::request::{guest_request, RequestParts};
use crate::login::credentials::{self, Checked};
use crate::login::throttle;
use crate::runtime::Runtime;
use crate::session::{now_unix, random_token};
use crate::web::body::{Body, RequestBody};
use crate::web::respond::RequestCtx;

pub async fn token(
    p: &Provider,
    rt: &Runtime,
    req: Request<RequestBody>,
    ctx: &RequestCtx,
) -> Response<Body> {
    let result = run(p, rt, req, ctx).await;
    rt.metrics.oidc_token_state_bytes(p.state_bytes());
    match result {
        Ok(v) => json_no_store(&v),
        Err(e) => {
            tracing::info!(error = e.code, description = %e.description, "token request refused");
            e.response()
        }
    }
}

async fn run(
    p: &Provider,
    rt: &Runtime,
    req: Request<RequestBody>,
    ctx: &RequestCtx,
) -> Result<serde_json::Value, OAuthError> {
    let peer_ip = ctx.client_ip;
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let (headers, params) = token_parameters(p, params::read_form_and_query(req).await?)?;
    let grant_type = params
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?
        .clone();
    let client =
        super::client_auth::authenticate(p, &headers, &params, true, &p.endpoints.token).await?;
    let allowed = match grant_type.as_str() {
        "authorization_code" => client.grants.authorization_code,
        "refresh_token" => client.grants.refresh_token,
        "client_credentials" => client.grants.client_credentials,
        "password" => client.grants.password,
        super::exchange::GRANT_TYPE => client.token_exchange.is_some(),
        other => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "grant_type `{other}` is not supported"
            )));
        }
    };
    if !allowed {
        return Err(OAuthError::unauthorized_client(format!(
            "this client may not use the {grant_type} grant"
        )));
    }
    // What token hooks see: the request with its form (client credentials removed); built
    // only for a client that has such hooks.
    let hooks = &client.hooks;
    let hooked = hooks.id_token_claims.is_some()
        || hooks.access_token_claims.is_some()
        || hooks.backchannel.is_some();
    let request = hooked.then(|| {
        let form: Vec<(String, String)> =
            params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let parts = RequestParts {
            method: &method,
            uri: &uri,
            headers: &headers,
        };
        guest_request(ctx, &client.app, parts, &rt.own_cookie_names(), Some(&form))
    });
    let call = TokenCall {
        request,
        grant_type: grant_type.clone(),
        act: None,
    };
    let result = match grant_type.as_str() {
        "authorization_code" => authorization_code(p, client, &params, &call).await,
        "refresh_token" => refresh(p, client, &params, &call).await,
        "client_credentials" => match limited(p, client).await {
            Ok(()) => client_credentials(p, client, &params, &call).await,
            Err(e) => Err(e),
        },
        super::exchange::GRANT_TYPE => match limited(p, client).await {
            Ok(()) => super::exchange::exchange(p, client, &params, &call).await,
            Err(e) => Err(e),
        },
        _ => match (limited(p, client).await, &client.hooks.backchannel) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(hook)) => {
                extension_password(p, rt, client, &params, hook, peer_ip, &call).await
            }
            (Ok(()), None) => password(p, rt, client, &params, peer_ip, &call).await,
        },
    };
    if let Err(OAuthError {
        limit: Some(limit), ..
    }) = &result
    {
        rt.metrics.oidc_token_limited(&client.id, limit.label());
    }
    result
}

/// The token request's parameters: the form body's. A client with
/// `tokenEndpoint.acceptQueryParameters` that authenticates with HTTP Basic may send them in
/// the query string instead (never one parameter in both places); anyone else's query
/// parameters are refused as they always were. The credentials are verified next, by
/// `params::authenticate`, on the Basic header this requires.
fn token_parameters(p: &Provider, form: params::Form) -> Result<(HeaderMap, Params), OAuthError> {
    let params::Form {
        headers,
        mut body,
        query,
    } = form;
    if query.is_empty() {
        return Ok((headers, body));
    }
    let opted_in = params::basic_client_id(&headers)
        .and_then(|id| p.clients.get(&id))
        .is_some_and(|c| c.token_query_parameters);
    if !opted_in {
        return Err(params::query_refused());
    }
    for (k, v) in query {
        if body.contains_key(&k) {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{k}` is sent both in the query and in the body"
            )));
        }
        body.insert(k, v);
    }
    Ok((headers, body))
}

/// The client's rate limit, for the grants a client calls at machine speed.
async fn limited(p: &Provider, client: &Client) -> Result<(), OAuthError> {
    p.rate_limit(client).await.inspect_err(|_| {
        tracing::warn!(client = %client.id, "token request over the client's rate limit");
    })
}

fn pkce_ok(challenge: &str, verifier: &str) -> bool {
    let valid = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    valid && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

async fn authorization_code(
    p: &Provider,
    client: &Client,
    params: &Params,
    call: &TokenCall,
) -> Result<serde_json::Value, OAuthError> {
    let code = params
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let Some(bytes) = p.store.take(&code_key(code)).await? else {
        // Unknown, expired, or already used. A replay revokes what the code issued
        // (RFC 6749 4.1.2, RFC 9700 4.5).
        if let Some(marker) = p.store.take(&redeemed_key(code)).await? {
            if let Ok(m) = serde_json::from_slice::<RedeemedCode>(&marker) {
                p.withdraw(&m.issued()).await?;
                if let Some(f) = &m.family {
                    p.revoke_family(f, client.refresh.lifetime).await?;
                }
                tracing::warn!(client = %client.id, "authorization code replayed: its tokens are revoked");
            }
        }
        return Err(OAuthError::invalid_grant(
            "the code is invalid, expired or already used",
        ));
    };
    let rec: CodeRecord = serde_json::from_slice(&bytes)
        .map_err(|_| OAuthError::invalid_grant("the code is invalid"))?;
    if rec.grant.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if p.session_ended(&rec.grant).await? {
        return Err(OAuthError::invalid_grant(
            "the session the code was issued in has ended",
        ));
    }
    if p.consent_withdrawn(&rec.grant).await? {
        return Err(OAuthError::invalid_grant(
            "the user revoked the consent the code was issued under",
        ));
    }
    if params.get("redirect_uri") != Some(&rec.redirect_uri) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&rec.code_challenge, params.get("code_verifier")) {
        (Some(c), Some(v)) if pkce_ok(c, v) => {}
        (Some(_), _) => return Err(OAuthError::invalid_grant("PKCE verification failed")),
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier sent but no code_challenge was",
            ))
        }
        (None, None) => {}
    }
    let family = wants_refresh(client, &rec.grant).then(|| random_token(16));
    let minted = p
        .mint(client, &rec.grant, rec.nonce.as_deref(), family, call)
        .await?;
    let marker = RedeemedCode::new(&minted.access, minted.family.clone());
    p.put_counted(
        &redeemed_key(code),
        Bytes::from(serde_json::to_vec(&marker).unwrap_or_default()),
        client.access_token.lifetime.max(client.refresh.reuse_grace),
    )
    .await?;
    Ok(minted.response)
}

fn wants_refresh(client: &Client, grant: &Grant) -> bool {
    client.grants.refresh_token
        && client.refresh.allow_offline_access
        && grant.has_scope("offline_access")
}

async fn refresh(
    p: &Provider,
    client: &Client,
    params: &Params,
    call: &TokenCall,
) -> Result<serde_json::Value, OAuthError> {
    let token = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let key = refresh_key(token);
    // A lost compare-and-set means a concurrent rotation: read again and answer like a replay.
    for _ in 0..3 {
        let Some(bytes) = p.store.get(&key).await? else {
            return Err(OAuthError::invalid_grant(
                "the refresh token is invalid or expired",
            ));
        };
        let rec: RefreshRecord = serde_json::from_slice(&bytes)
            .map_err(|_| OAuthError::invalid_grant("the refresh token is invalid"))?;
        if rec.grant.client_id != client.id {
            return Err(OAuthError::invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        if p.family_revoked(&rec.family).await? || rec.exp <= now_unix() {
            return Err(OAuthError::invalid_grant(
                "the refresh token is invalid or expired",
            ));
        }
        if let Some(rot) = &rec.rotated {
            if now_unix().saturating_sub(rot.at) <= client.refresh.reuse_grace.as_secs() {
                if let Some(answer) = p.store.get(&rotation_answer_key(token)).await? {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&answer) {
                        return Ok(v);
                    }
                }
                // The rotating request has not stored its answer yet: look again shortly.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
            p.revoke_family(&rec.family, client.refresh.lifetime)
                .await?;
            tracing::warn!(client = %client.id, "rotated refresh token reused: the token family is revoked");
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used",
            ));
        }
        let mut grant = rec.grant.clone();
        if p.session_ended(&grant).await? {
            if !client.refresh.survives_logout {
                return Err(OAuthError::invalid_grant(
                    "the session the refresh token was issued in has ended",
                ));
            }
            // A survivor: what it mints from now on is bound to no session.
            grant.sid = None;
        }
        if p.consent_withdrawn(&grant).await? {
            return Err(OAuthError::invalid_grant(
                "the user revoked the consent the refresh token was issued under",
            ));
        }
        if let Some(scope) = params.get("scope") {
            // Down-scoping (RFC 6749 6): what was not granted originally is dropped, or
            // refused for a strict client.
            grant.scopes = scopes::granted(
                Some(scope),
                client.strict_scopes,
                |s| grant.has_scope(s),
                |s| format!("scope `{s}` was not granted originally"),
            )?;
            // the family keeps living through its own record, whatever the narrowed scope
            if !grant.has_scope("offline_access") {
                grant.scopes.push("offline_access".into());
            }
        }
        let minted = p
            .mint(client, &grant, None, Some(rec.family.clone()), call)
            .await?;
        let rotated = RefreshRecord {
            rotated: Some(Rotation { at: now_unix() }),
            ..rec.clone()
        };
        let ttl = std::time::Duration::from_secs(rec.exp.saturating_sub(now_unix()).max(1));
        if p.store
            .compare_and_set(
                &key,
                &bytes,
                Bytes::from(serde_json::to_vec(&rotated).unwrap_or_default()),
                ttl,
            )
            .await?
        {
            let grace = client
                .refresh
                .reuse_grace
                .max(std::time::Duration::from_secs(1));
            let answer = Bytes::from(serde_json::to_vec(&minted.response).unwrap_or_default());
            p.put_counted(&rotation_answer_key(token), answer, grace)
                .await?;
            return Ok(minted.response);
        }
        // Someone else rotated first: withdraw what we minted.
        p.withdraw(&minted.access).await?;
        if let Some(rt) = minted
            .response
            .get("refresh_token")
            .and_then(|v| v.as_str())
        {
            p.store.delete(&refresh_key(rt)).await?;
        }
    }
    Err(OAuthError::temporarily_unavailable(
        "too much contention on this refresh token",
    ))
}

/// The scopes of a token request a client may have: for a user (password grant) any
/// standard scope or its custom ones, for itself (client credentials) its custom ones.
fn scopes_for_client(
    client: &Client,
    params: &Params,
    user: bool,
) -> Result<Vec<String>, OAuthError> {
    scopes::granted(
        params.get("scope").map(String::as_str),
        client.strict_scopes,
        |s| {
            if user {
                client.may_have_user_scope(s)
            } else {
                client.may_have_client_scope(s)
            }
        },
        |s| format!("scope `{s}` is not allowed for this client"),
    )
}

fn audiences(client: &Client, params: &Params) -> Result<Vec<String>, OAuthError> {
    match params.get("resource") {
        None => Ok(client.access_token.allowed_audiences.clone()),
        Some(r) if client.access_token.allowed_audiences.iter().any(|a| a == r) => {
            Ok(vec![r.clone()])
        }
        Some(r) => Err(OAuthError::invalid_target(format!(
            "resource `{r}` is not allowed for this client"
        ))),
    }
}

async fn client_credentials(
    p: &Provider,
    client: &Client,
    params: &Params,
    call: &TokenCall,
) -> Result<serde_json::Value, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::unauthorized_client(
            "public clients cannot use client_credentials",
        ));
    }
    let grant = Grant {
        client_id: client.id.clone(),
        sub: None,
        scopes: scopes_for_client(client, params, false)?,
        claims: Default::default(),
        requested: None,
        auth_time: None,
        acr: None,
        amr: vec![],
        username: None,
        sid: None,
        consent: None,
        audiences: audiences(client, params)?,
        attrs: Default::default(),
    };
    Ok(p.mint(client, &grant, None, None, call).await?.response)
}

/// Resource owner password credentials: only for clients granted `password`, checked against
/// the client's `local` connectors with the same throttling as the login form: each
/// connector's attempt is reserved before the password is verified.
async fn password(
    p: &Provider,
    rt: &Runtime,
    client: &Client,
    params: &Params,
    ip: std::net::IpAddr,
    call: &TokenCall,
) -> Result<serde_json::Value, OAuthError> {
    let username = params
        .get("username")
        .ok_or_else(|| OAuthError::invalid_request("username is required"))?;
    let password = params
        .get("password")
        .ok_or_else(|| OAuthError::invalid_request("password is required"))?;
    let scopes = scopes_for_client(client, params, true)?;
    let audiences = audiences(client, params)?;
    let store = rt.sessions.store().as_ref();
    // Connectors that did not know these credentials: failures, unless a later one does.
    let mut missed: Vec<(&String, throttle::Reservation)> = Vec::new();
    for idp in &client.idps {
        let mut attrs = match credentials::check(rt, idp, username, password, ip).await? {
            Checked::NotAPasswordConnector => continue,
            Checked::Wrong(reservation) => {
                missed.push((idp, reservation));
                continue;
            }
            Checked::Throttled { .. } => {
                rt.metrics.login(idp, "throttled");
                tracing::warn!(idp = %idp, user = %username, client_ip = %ip, "password grant refused: too many failed attempts");
                // the misses before stay counted as failures
                for (_, r) in missed {
                    let _ = r.failed();
                }
                return Err(OAuthError::invalid_grant(
                    "too many failed attempts; try again later",
                ));
            }
            Checked::DirectoryDown(e) => {
                // Not the user's fault: nothing is counted, the misses before included.
                for (_, r) in missed {
                    r.refund(store).await?;
                }
                rt.metrics.login(idp, "error");
                tracing::error!(idp = %idp, error = %e, "password grant: directory unavailable");
                return Err(OAuthError::temporarily_unavailable(
                    "the user directory is not reachable; try again shortly",
                ));
            }
            Checked::Verified(attrs) => attrs,
        };
        // The user belongs to this connector: the others' misses were no guesses.
        for (_, r) in missed {
            r.refund(store).await?;
        }
        if let Err(e) = crate::connectors::providers::resolve_attrs(
            &rt.connectors,
            &client.attr_providers,
            &mut attrs,
        )
        .await
        {
            tracing::error!(client = %client.id, error = %e, "password grant: attributes unavailable");
            return Err(OAuthError::temporarily_unavailable(
                "the user directory is not reachable; try again shortly",
            ));
        }
        rt.metrics.login(idp, "success");
        let sub = p
            .subject(client, &attrs, idp)
            .ok_or_else(|| OAuthError::server_error("the user has no subject attribute"))?;
        let login = rt.connectors.achieved(idp, None, now_unix());
        let mut scopes = scopes;
        if !(client.refresh.allow_offline_access && client.grants.refresh_token) {
            scopes.retain(|s| s != "offline_access");
        }
        let grant = Grant {
            client_id: client.id.clone(),
            sub: Some(sub),
            scopes,
            claims: user_claims(&client.claims_mapping, &attrs, idp),
            requested: None,
            // What a login at this connector achieves (its `acr`, `amr`; `pwd` by default).
            auth_time: Some(login.at),
            acr: login.acr,
            amr: login.amr,
            username: p.username(&attrs, idp),
            sid: None,
            consent: None,
            audiences,
            attrs: if client.hooks.need_attributes() {
                attrs
            } else {
                Default::default()
            },
        };
        let family = wants_refresh(client, &grant).then(|| random_token(16));
        return Ok(p.mint(client, &grant, None, family, call).await?.response);
    }
    let mut delay = std::time::Duration::ZERO;
    for (i, (idp, r)) in missed.into_iter().enumerate() {
        if i == 0 {
            rt.metrics.login(idp, "failure");
            tracing::warn!(idp = %idp, user = %username, client_ip = %ip, "password grant: wrong username or password");
        }
        delay = delay.max(r.failed());
    }
    tokio::time::sleep(delay).await;
    Err(OAuthError::invalid_grant("wrong username or password"))
}

/// The throttle of a password grant checked by an extension: the client's first password
/// connector's settings (else the defaults), counted under the extension's name.
fn extension_throttle(rt: &Runtime, client: &Client) -> crate::connectors::local::Throttle {
    client
        .idps
        .iter()
        .find_map(|i| match rt.connectors.get(i).map(|c| c.as_ref()) {
            Some(Connector::Local(c)) => Some(c.throttle),
            Some(Connector::Ldap(c)) => Some(c.throttle),
            _ => None,
        })
        .unwrap_or_default()
}

/// The password grant of a client with `backchannel.authenticateSE`: the extension checks the
/// credentials and names the subject; the attributes it sets become the user's claims source.
/// The attempt is reserved (throttled) around the call like any password check.
#[allow(clippy::too_many_arguments)]
async fn extension_password(
    p: &Provider,
    rt: &Runtime,
    client: &Client,
    params: &Params,
    hook: &crate::extensions::Hook,
    ip: std::net::IpAddr,
    call: &TokenCall,
) -> Result<serde_json::Value, OAuthError> {
    for field in ["username", "password"] {
        if params.get(field).is_none_or(|v| v.is_empty()) {
            return Err(OAuthError::invalid_request(format!("{field} is required")));
        }
    }
    let mut scopes = scopes_for_client(client, params, true)?;
    let audiences = audiences(client, params)?;
    let store = rt.sessions.store().as_ref();
    let username = params.get("username").map(String::as_str).unwrap_or("");
    let bucket = format!("extension:{}", hook.extension.name);
    let t = extension_throttle(rt, client);
    let Some(reservation) =
        throttle::reserve(store, &t, &bucket, &username::fold(username), ip).await?
    else {
        tracing::warn!(client = %client.id, extension = %hook.extension.name, user = %username, client_ip = %ip,
            "password grant refused: too many failed attempts");
        return Err(OAuthError::invalid_grant(
            "too many failed attempts; try again later",
        ));
    };
    let input = crate::extensions::HookCall {
        request: call.guest_request()?,
        attrs: Default::default(),
    };
    let called = match hook.backchannel_authenticate(input).await {
        Ok(c) => c,
        Err(_) => {
            // The extension failed: nothing was checked, nothing is counted.
            reservation.refund(store).await?;
            return Err(OAuthError::invalid_grant(
                "the credentials could not be checked",
            ));
        }
    };
    let subject = match called.value {
        Ok(s) => s,
        Err(message) => {
            tracing::warn!(client = %client.id, extension = %hook.extension.name, reason = %message,
                "password grant refused by extension");
            tokio::time::sleep(reservation.failed()).await;
            return Err(OAuthError::invalid_grant("wrong username or password"));
        }
    };
    let _ = reservation.succeeded(store).await;
    if !(client.refresh.allow_offline_access && client.grants.refresh_token) {
        scopes.retain(|s| s != "offline_access");
    }
    let attrs = called.attrs;
    let idp = client.idps.first().map(String::as_str).unwrap_or_default();
    let grant = Grant {
        client_id: client.id.clone(),
        sub: Some(subject),
        scopes,
        claims: user_claims(&client.claims_mapping, &attrs, idp),
        requested: None,
        auth_time: Some(now_unix()),
        // An extension checked a password: no connector's `acr` applies.
        acr: None,
        amr: vec!["pwd".into()],
        username: p.username(&attrs, idp),
        sid: None,
        consent: None,
        audiences,
        attrs: if client.hooks.need_attributes() {
            attrs
        } else {
            Default::default()
        },
    };
    let family = wants_refresh(client, &grant).then(|| random_token(16));
    Ok(p.mint(client, &grant, None, family, call).await?.response)
}

#[cfg(test)]
mod tests {
    use super::pkce_ok;

    #[test]
    fn pkce_s256() {
        // BASE64URL(SHA256(verifier)), computed independently (Python hashlib)
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r7wW1gFWFOEjXk";
        let challenge = "bwWFMyPfdG9qreDhH2lmftFx_dFeLDalzcT1gb_j68g";
        assert!(pkce_ok(challenge, verifier));
        assert!(!pkce_ok(
            challenge,
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r7wW1gFWFOEjXX"
        ));
        assert!(!pkce_ok(challenge, "short"));
    }
}
