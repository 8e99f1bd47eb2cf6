//! Login at an upstream OpenID Connect IdP: the redirect out (state, nonce and PKCE kept in
//! the store, bound to the login flow and so to the browser), the callback back in, and
//! logout at the IdP.

use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Request, Response, StatusCode};

use super::{expired, flow_cookie, flow_key, load_flow, store_down, Flow};
use crate::connectors::oidc::{OidcConnector, PendingLogin};
use crate::pages;
use crate::runtime::Runtime;
use crate::web::body::{Body, RequestBody};
use crate::web::rejection::{Outcome, Rejection};
use crate::web::respond::{self, RequestCtx};

const PENDING_TTL: Duration = Duration::from_secs(600);

fn pending_key(state: &str) -> String {
    format!("oidc-login:{state}")
}

fn idp_unavailable(idp: &OidcConnector, e: impl std::fmt::Display) -> Rejection {
    tracing::error!(idp = %idp.name, error = %e, "identity provider unavailable");
    Rejection::page(
        StatusCode::BAD_GATEWAY,
        format!(
            "{} is not reachable right now. Please try again in a moment.",
            idp.preset.label()
        ),
    )
}

/// Sends the browser to the IdP's authorization endpoint.
pub(crate) async fn redirect_to_idp(
    rt: &Runtime,
    idp: &OidcConnector,
    flow_id: &str,
    flow: &Flow,
    ctx: &RequestCtx,
) -> Outcome {
    let (url, state, pending) = match idp.begin(flow_id, flow.login_hint.as_deref()).await {
        Ok(x) => x,
        Err(e) => return Err(idp_unavailable(idp, e)),
    };
    let bytes = Bytes::from(serde_json::to_vec(&pending).unwrap_or_default());
    if let Err(e) = rt
        .sessions
        .store()
        .put(&pending_key(&state), bytes, PENDING_TTL)
        .await
    {
        return Err(store_down(e));
    }
    Ok(respond::redirect(StatusCode::FOUND, &url, &[], ctx))
}

/// Which of an OIDC connector's endpoints a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    /// The sign-in callback (`oauthRedirectURL`).
    SignIn,
    /// Back from the IdP's logout (`oidcLogoutCallbackURL`).
    LogoutDone,
    /// The IdP's back-channel logout (`oidcBackchannelLogoutURL`).
    BackchannelLogout,
}

/// Is `path` one of an OIDC connector's endpoints?
pub fn callback_of<'r>(rt: &'r Runtime, path: &str) -> Option<(&'r OidcConnector, Callback)> {
    rt.connectors.oidc().find_map(|c| {
        if c.callback_path == path {
            Some((c, Callback::SignIn))
        } else if c.logout_callback_path.as_deref() == Some(path) {
            Some((c, Callback::LogoutDone))
        } else if c.backchannel_logout_path.as_deref() == Some(path) {
            Some((c, Callback::BackchannelLogout))
        } else {
            None
        }
    })
}

fn query(req: &Request<RequestBody>) -> Result<std::collections::HashMap<String, String>, String> {
    super::fields(req.uri().query().unwrap_or("").as_bytes())
}

/// The IdP sends the browser back here with `code` and `state` (or `error`).
pub async fn callback(
    rt: &Runtime,
    idp: &OidcConnector,
    req: Request<RequestBody>,
    ctx: &RequestCtx,
) -> Outcome {
    let q = match query(&req) {
        Ok(q) => q,
        Err(e) => {
            return Err(Rejection::page(
                StatusCode::BAD_REQUEST,
                format!("Invalid sign-in response: {e}."),
            ))
        }
    };
    let Some(state) = q.get("state") else {
        tracing::warn!(idp = %idp.name, "callback without state refused");
        return Err(Rejection::page(
            StatusCode::BAD_REQUEST,
            "The sign-in response has no state: start again from the application.",
        ));
    };
    // Single use: a replayed or unknown state finds nothing.
    let pending = match rt.sessions.store().take(&pending_key(state)).await {
        Ok(Some(b)) => serde_json::from_slice::<PendingLogin>(&b).ok(),
        Ok(None) => None,
        Err(e) => return Err(store_down(e)),
    };
    let Some(pending) = pending.filter(|p| p.connector == idp.name) else {
        tracing::warn!(idp = %idp.name, "callback with an unknown, expired or replayed state refused");
        return Err(Rejection::page(StatusCode::BAD_REQUEST, "This sign-in response is unknown, expired or was already used. Start again from the application."));
    };
    let flow = match load_flow(rt, &pending.flow, req.headers()).await {
        Ok(Some(f)) => f,
        Ok(None) => return Err(expired()),
        Err(e) => return Err(store_down(e)),
    };
    if let Some(err) = q.get("error") {
        rt.metrics.login(&idp.name, "failure");
        let desc = q.get("error_description").map(String::as_str).unwrap_or("");
        tracing::warn!(idp = %idp.name, error = %err, description = %desc, "the identity provider returned an error");
        let message = format!(
            "{} did not sign you in: {err}{}{desc}",
            idp.preset.label(),
            if desc.is_empty() { "" } else { " — " }
        );
        return Err(Rejection::page(StatusCode::FORBIDDEN, message));
    }
    let Some(code) = q.get("code") else {
        return Err(Rejection::page(
            StatusCode::BAD_REQUEST,
            "The sign-in response has no code.",
        ));
    };
    let (attrs, tokens) = match idp.finish(code, &pending).await {
        Ok(x) => x,
        Err(e) if e.is_upstream_failure() => return Err(idp_unavailable(idp, e)),
        Err(e) => {
            rt.metrics.login(&idp.name, "failure");
            tracing::warn!(idp = %idp.name, reason = %e, "upstream login refused");
            return Err(Rejection::page(
                StatusCode::UNAUTHORIZED,
                "Sign-in failed: the identity provider's answer could not be verified.",
            ));
        }
    };
    // Listed under the IdP's session only when the IdP can end it (back-channel logout).
    let upstream = idp
        .backchannel_logout_path
        .is_some()
        .then(|| crate::session::UpstreamSession {
            sid: tokens.id_claim("sid"),
            sub: tokens.id_claim("sub"),
        });
    finish_login(
        rt,
        &idp.name,
        attrs,
        Some(tokens),
        upstream,
        &pending.flow,
        &flow,
        req.headers(),
        ctx,
    )
    .await
}

/// Completes a login for any connector: consumes the flow, replaces the session id, returns
/// the browser to where it started.
#[allow(clippy::too_many_arguments)]
pub(super) async fn finish_login(
    rt: &Runtime,
    idp: &str,
    attrs: crate::claims::Attributes,
    tokens: Option<crate::session::UpstreamTokens>,
    upstream: Option<crate::session::UpstreamSession>,
    flow_id: &str,
    flow: &Flow,
    headers: &HeaderMap,
    ctx: &RequestCtx,
) -> Outcome {
    // Single use: of two concurrent completions only one proceeds.
    match rt.sessions.store().take(&flow_key(flow_id)).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(expired()),
        Err(e) => return Err(store_down(e)),
    }
    let previous = match rt.sessions.load(headers).await {
        Ok(s) => s,
        Err(e) => return Err(store_down(e)),
    };
    // What this login achieved (`acr`, `amr`), remembered with it for the provider.
    let achieved = rt.connectors.achieved(idp, tokens.as_ref(), 0);
    let mut data = rt
        .sessions
        .new_record(previous.as_ref(), idp, attrs, tokens);
    data.logins.insert(
        idp.to_string(),
        crate::session::Authentication {
            at: data.created,
            ..achieved
        },
    );
    // `session.lifetime` hooks; a failure refuses the login (no session).
    super::lifetime::choose(rt, &flow.app, &flow.return_to, headers, ctx, &mut data).await?;
    let cookie = match rt
        .sessions
        .start(data, previous.as_ref(), idp, upstream.as_ref())
        .await
    {
        Ok(c) => c,
        Err(e) => return Err(store_down(e)),
    };
    rt.metrics.login(idp, "success");
    tracing::info!(idp, app = %flow.app, "login succeeded");
    Ok(respond::redirect(
        StatusCode::SEE_OTHER,
        &flow.return_to,
        &[cookie, flow_cookie(rt).clear()],
        ctx,
    ))
}

/// After logout at the IdP, the browser comes back here.
pub fn logout_done(ctx: &RequestCtx) -> Response<Body> {
    respond::html(StatusCode::OK, pages::logged_out_page(), ctx)
}

/// Where to send the browser to end the IdP session too, if the session came from an IdP
/// that supports RP-initiated logout and a logout callback is configured.
pub fn idp_logout_url(rt: &Runtime, session: &crate::session::Session) -> Option<String> {
    session.data.tokens.iter().find_map(|(name, tokens)| {
        let idp = rt.connectors.oidc().find(|c| &c.name == name)?;
        idp.logout_callback_url.as_ref()?;
        idp.logout_url(tokens)
    })
}

/// What became of a session's upstream tokens.
pub enum Freshness {
    /// Nothing to refresh, or refreshed.
    Fresh,
    /// The IdP refused the refresh: the user must sign in again.
    Expired,
    /// The IdP could not be asked.
    Unavailable(String),
}

/// For IdPs configured with `refreshTokens: true`: once the upstream access token has
/// expired, refresh it (one IdP call, then the new expiry is stored). Sessions whose IdP no
/// longer accepts the refresh token end, as the IdP's own session has.
pub async fn refresh_upstream(
    rt: &Runtime,
    session: &mut crate::session::Session,
    idps: &[String],
) -> Freshness {
    let now = crate::session::now_unix();
    for (name, tokens) in session.data.tokens.clone() {
        if !idps.contains(&name) || tokens.expires_at.is_none_or(|t| t > now) {
            continue;
        }
        let Some(idp) = rt
            .connectors
            .oidc()
            .find(|c| c.name == name && c.refresh_tokens)
        else {
            continue;
        };
        let Some(rt_token) = tokens.refresh_token.as_deref() else {
            return Freshness::Expired;
        };
        match idp.refresh(rt_token).await {
            Ok(Some(new)) => {
                std::sync::Arc::make_mut(&mut session.data)
                    .tokens
                    .insert(name.clone(), new.clone());
                let stored = rt
                    .sessions
                    .modify(session, |d| {
                        d.tokens.insert(name.clone(), new.clone());
                    })
                    .await;
                if let Err(e) = stored {
                    return Freshness::Unavailable(e.to_string());
                }
                tracing::debug!(idp = %name, "upstream tokens refreshed");
            }
            Ok(None) => {
                tracing::info!(idp = %name, "the identity provider refused the refresh: sign-in required");
                let _ = rt
                    .sessions
                    .end_for(Some(session), crate::session::EndReason::Upstream)
                    .await;
                return Freshness::Expired;
            }
            Err(e) => return Freshness::Unavailable(e.to_string()),
        }
    }
    Freshness::Fresh
}
