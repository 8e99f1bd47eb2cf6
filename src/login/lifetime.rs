//! `session.lifetime`: extensions that choose a new session's lifetime and idle timeout.
//!
//! Evaluated once per login, when the record of the new session is made (the first login and
//! every later one, which makes a new session too), never on later requests. The answers can
//! only shorten: `Sessions` caps them at the configured `maxLifetimeSeconds` and
//! `idleTimeoutSeconds`, so a guest cannot make a session outlive what the operator allows.
//! A failed call (or an answer of 0) refuses the login: no session is created (fail closed;
//! falling back to the configured values would give the longest session allowed).

use http::{HeaderMap, Method};

use crate::extensions::request::{guest_request, RequestParts};
use crate::extensions::{Hook, HookCall};
use crate::runtime::Runtime;
use crate::session::{Lifetime, SessionData};
use crate::web::rejection::Rejection;
use crate::web::respond::RequestCtx;

/// The configured hooks (either may be absent).
#[derive(Debug, Clone, Default)]
pub struct LifetimeHooks {
    /// `evalMaxLifetimeSE`.
    pub max_lifetime: Option<Hook>,
    /// `evalIdleTimeoutSE`.
    pub idle_timeout: Option<Hook>,
}

/// Sets `data.lifetime` from the hooks, if any. The guest sees the request the login returns
/// to (`GET <return path>` of `app`, with the login request's headers) and, through
/// `session-get`, the new session's attributes; what it sets with `session-set` is kept in
/// the session.
pub async fn choose(
    rt: &Runtime,
    app: &str,
    return_to: &str,
    headers: &HeaderMap,
    ctx: &RequestCtx,
    data: &mut SessionData,
) -> Result<(), Rejection> {
    let hooks = &rt.session_lifetime;
    if hooks.max_lifetime.is_none() && hooks.idle_timeout.is_none() {
        return Ok(());
    }
    let uri: http::Uri = return_to.parse().unwrap_or_default();
    let request = guest_request(
        ctx,
        app,
        RequestParts {
            method: &Method::GET,
            uri: &uri,
            headers,
        },
        &rt.own_cookie_names(),
        None,
    );
    let settings = &rt.sessions.settings;
    let mut lifetime = Lifetime {
        max_secs: settings.max_lifetime.as_secs(),
        idle_secs: settings.idle_timeout.as_secs(),
    };
    for (hook, slot) in [
        (&hooks.max_lifetime, &mut lifetime.max_secs),
        (&hooks.idle_timeout, &mut lifetime.idle_secs),
    ] {
        let Some(hook) = hook else { continue };
        let call = HookCall {
            request: &request,
            attrs: data.attrs.clone(),
        };
        let called = hook
            .eval_seconds(call)
            .await
            .map_err(|_| Rejection::ExtensionFailed)?;
        // Only shorter than configured: the cap is also applied when the session is judged.
        *slot = called.value.as_secs().min(*slot);
        if called.wrote {
            data.attrs = called.attrs;
        }
    }
    data.lifetime = Some(lifetime);
    Ok(())
}
