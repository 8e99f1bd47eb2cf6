//! The extension hooks an OIDC app runs at the authorization endpoint once the user is
//! authenticated, before a code is issued: LoadAttributes (`loadAttrsSE`), then IsAuthorized
//! (`authorization.isAuthorizedSE`), the order of a proxy app's `load_attributes` and
//! `authorize` phases. OIDC apps have no declarative rules, so IsAuthorized is the app's whole
//! authorization decision.
//!
//! Fail closed: a false IsAuthorized is `access_denied`, a failed call of either hook is
//! `server_error`; neither gets a code.

use http::HeaderMap;

use super::authorize::hook_call;
use super::errors::OAuthError;
use super::Client;
use crate::runtime::Runtime;
use crate::session::Session;
use crate::web::respond::RequestCtx;

/// Runs the client's LoadAttributes and IsAuthorized hooks, if any. The attributes the hooks
/// set are in `session` afterwards (and stored with it), so `claimsMapping` and the token
/// hooks see them.
pub(super) async fn decide(
    rt: &Runtime,
    client: &Client,
    headers: &HeaderMap,
    ctx: &RequestCtx,
    session: &mut Session,
) -> Result<(), OAuthError> {
    let failed = || OAuthError::server_error("an authorization extension failed");
    if let Some(hook) = &client.hooks.load_attributes {
        let call = hook_call(rt, client, headers, ctx, &session.data.attrs);
        let called = hook.load_attributes(call).await.map_err(|_| failed())?;
        if called.wrote {
            absorb(rt, session, called.attrs).await;
        }
    }
    if let Some(hook) = &client.hooks.is_authorized {
        let call = hook_call(rt, client, headers, ctx, &session.data.attrs);
        let called = hook.is_authorized(call).await.map_err(|_| failed())?;
        if called.wrote {
            absorb(rt, session, called.attrs).await;
        }
        if !called.value {
            rt.metrics.authz_denied(&client.app);
            tracing::info!(app = %client.app, request_id = %ctx.request_id,
                "authorization denied by IsAuthorized");
            return Err(OAuthError {
                code: "access_denied",
                ..OAuthError::invalid_request("the user may not use this application")
            });
        }
    }
    Ok(())
}

/// Takes the attributes a hook left into the session and its stored record. A failed write
/// does not refuse the request: the code is issued from the attributes in hand, as on the
/// proxy path.
async fn absorb(rt: &Runtime, session: &mut Session, attrs: crate::claims::Attributes) {
    if let Err(e) = rt.sessions.take_attrs(session, attrs).await {
        tracing::warn!(error = %e, "attributes set by an extension were not stored");
    }
}
