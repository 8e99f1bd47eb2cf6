//! `apis[]`: custom endpoints an extension answers itself (its Serve hook), with no upstream.
//!
//! ```text
//! method → session (authentication: session) → body (maxRequestBodyBytes) → Serve → checks
//! ```
//!
//! Routed by `server::service` after the gateway's own endpoints and before apps, on the
//! strict path rules (`edge::path`): a path the edge refuses never reaches an api. Every
//! refusal is `Rejection::Api`: a JSON error, never a page or a sign-in redirect, because
//! an api's callers are programs. Which paths an api may claim (none of the gateway's own,
//! no app's, no other api's) is decided when the configuration is compiled
//! (`config/compile/apis.rs`).

use http::{HeaderValue, Method, Request, Response};

use crate::edge::path::CanonicalPath;
use crate::extensions::request::{guest_request, RequestParts};
use crate::extensions::{Hook, HookCall};
use crate::runtime::Runtime;
use crate::server::router::Router;
use crate::session::Session;
use crate::telemetry::access::Decision;
use crate::web::body::{read_limited, Body, RequestBody};
use crate::web::rejection::{settle, ApiProblem, Rejection};
use crate::web::respond::RequestCtx;

/// The default of `maxRequestBodyBytes`.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// The largest `maxRequestBodyBytes`: a body is held in memory and copied into the guest.
pub const MAX_MAX_BODY: usize = 1 << 20;

/// Who may call an api.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone: no session is read (the guest's `session-get` finds nothing).
    Public,
    /// A session signed in at one of `idps` (empty: at any connector that can sign users in).
    Session { idps: Vec<String> },
}

/// The methods an api answers.
#[derive(Debug, Clone)]
pub struct Methods {
    /// `None`: every method.
    pub only: Option<Vec<Method>>,
    /// The `Allow` value of a 405 (the configured methods, and HEAD with GET).
    pub allow: HeaderValue,
}

impl Methods {
    /// Every method.
    pub fn all() -> Self {
        Methods {
            only: None,
            allow: HeaderValue::from_static(""),
        }
    }

    /// Exactly `methods`, and HEAD where GET is (RFC 9110 9.3.2: HEAD is GET without the
    /// body; hyper drops the body of a HEAD answer).
    pub fn only(mut methods: Vec<Method>) -> Self {
        if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
            methods.push(Method::HEAD);
        }
        let allow = methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        Methods {
            only: Some(methods),
            allow: HeaderValue::from_str(&allow).unwrap_or_else(|_| HeaderValue::from_static("")),
        }
    }

    fn admits(&self, m: &Method) -> bool {
        self.only.as_ref().is_none_or(|list| list.contains(m))
    }
}

/// One `apis[]` entry, compiled.
#[derive(Debug)]
pub struct Api {
    pub name: String,
    pub serve: Hook,
    pub methods: Methods,
    /// `maxRequestBodyBytes`.
    pub max_body: usize,
    pub access: Access,
}

/// The configured apis and the routes to them (host + path prefix, as apps').
#[derive(Debug, Default)]
pub struct Apis {
    pub list: Vec<Api>,
    pub router: Router,
}

impl Api {
    /// Answers the request: the extension's response, or a JSON refusal.
    pub async fn handle(
        &self,
        rt: &Runtime,
        req: Request<RequestBody>,
        ctx: &RequestCtx,
        path: CanonicalPath,
    ) -> Response<Body> {
        let outcome = self.answer(rt, req, ctx, path).await;
        if outcome.is_ok() {
            ctx.access.decide(Decision::Allowed);
        }
        settle(outcome, ctx)
    }

    async fn answer(
        &self,
        rt: &Runtime,
        req: Request<RequestBody>,
        ctx: &RequestCtx,
        path: CanonicalPath,
    ) -> Result<Response<Body>, Rejection> {
        if !self.methods.admits(req.method()) {
            return Err(Rejection::Api(ApiProblem::MethodNotAllowed(
                self.methods.allow.clone(),
            )));
        }
        // Who, before the body is read: an anonymous caller cannot make the gateway read
        // (and hold) a body for an api it may not call.
        let mut session = self.session(rt, req.headers(), ctx).await?;
        let (parts, body) = read_limited(req, self.max_body)
            .await
            .map_err(|e| Rejection::Api(ApiProblem::Body(e)))?;
        // The guest sees the canonical path (the one routing matched), as proxy hooks do.
        let target = match parts.uri.query() {
            Some(q) => format!("{}?{q}", path.forward),
            None => path.forward.clone(),
        };
        let uri = http::Uri::try_from(target).unwrap_or_else(|_| http::Uri::from_static("/"));
        let own = rt.own_cookie_names();
        let request = guest_request(
            ctx,
            &self.name,
            RequestParts {
                method: &parts.method,
                uri: &uri,
                headers: &parts.headers,
            },
            &own,
            None,
        );
        let call = HookCall {
            request,
            attrs: session
                .as_ref()
                .map(|s| s.data.attrs.clone())
                .unwrap_or_default(),
        };
        let called = self
            .serve
            .serve(call, body.to_vec(), |resp| {
                // The gateway's cookies are the gateway's: an api that tries to set one
                // (a session fixation) has answered wrongly, not just untidily.
                if crate::proxy::headers::drop_own_set_cookies(resp.headers_mut(), &own) {
                    return Err("it sets a cookie named like the gateway's own".into());
                }
                Ok(())
            })
            .await
            .map_err(|_| Rejection::Api(ApiProblem::ServeFailed))?;
        if let (true, Some(s)) = (called.wrote, session.as_mut()) {
            if let Err(e) = rt.sessions.take_attrs(s, called.attrs).await {
                // The answer stands; only the persistence of what the guest set failed.
                tracing::warn!(api = %self.name, error = %e,
                    "attributes set by an extension were not stored");
            }
        }
        let (parts, bytes) = called.value.into_parts();
        Ok(Response::from_parts(parts, crate::web::body::full(bytes)))
    }

    /// The caller's session, where the api needs one: signed in at one of its IdPs, else 401.
    async fn session(
        &self,
        rt: &Runtime,
        headers: &http::HeaderMap,
        ctx: &RequestCtx,
    ) -> Result<Option<Session>, Rejection> {
        let Access::Session { idps } = &self.access else {
            return Ok(None);
        };
        let session = rt.sessions.load(headers).await.map_err(|e| {
            crate::telemetry::failures::failed("store", "sessions", "session store failed", &e);
            Rejection::Api(ApiProblem::StoreUnavailable)
        })?;
        let idps = if idps.is_empty() {
            rt.connectors.login_capable()
        } else {
            idps.clone()
        };
        match session {
            Some(s) if s.data.authenticated_by_any(&idps) => {
                if let Some(sub) = crate::proxy::subject(&s.data.attrs, &idps) {
                    ctx.access.user_is(sub);
                }
                Ok(Some(s))
            }
            _ => Err(Rejection::Api(ApiProblem::SignInRequired)),
        }
    }
}
