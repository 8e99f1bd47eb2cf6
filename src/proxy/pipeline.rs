//! A proxy app's request pipeline: named phases over one per-request state ([`Exchange`]).
//!
//! ```text
//! policy → authenticate → refresh → load_attributes → authorize → upstream_request
//!   → upstream_login → modify_request → upstream → modify_response → response
//! ```
//!
//! Each phase returns `Result<_, Rejection>`: the first refusal ends the request and is
//! rendered (page, redirect, decision for the access line) by `web::rejection`. The phases
//! before this one (request id, input checks, canonical path, routing) run in
//! `server::service`; the access line is written there after the response.
//!
//! Extension hooks sit in the phase named like them: IsAuthenticated and Authenticate in
//! `authenticate`, LoadAttrs in `load_attributes`, IsAuthorized in `authorize`, CreateHeader
//! in `upstream_request`, UpstreamLogin in `upstream_login` (and again after `upstream` when
//! the upstream's session expired), ModifyRequest in `modify_request`, ModifyResponse in
//! `modify_response`; HandleUnauthorized answers a denial of `authorize`. The app's
//! `errorPage` replaces the page of the gateway's own 5xx refusals (`own_page`).

use http::request::Parts;
use http::{HeaderMap, Method, Request, Response};
use tracing::Instrument;

use super::policy::{Authorization, Policy};
use super::upstream::Upstream;
use super::upstream_login::{self, UpstreamLogin};
use super::{bearer, headers, AppKind, ProxyApp};
use crate::claims::Attributes;
use crate::edge::path::CanonicalPath;
use crate::extensions::cache::Cached;
use crate::extensions::request::{guest_request, RequestParts};
use crate::extensions::{AuthenticateAction, GuestRequest, HookCall, ModifiedRequest};
use crate::login;
use crate::login::upstream::Freshness;
use crate::runtime::Runtime;
use crate::session::Session;
use crate::telemetry::access::Decision;
use crate::telemetry::traces;
use crate::web::body::{Body, RequestBody};
use crate::web::rejection::{settle, BearerProblem, Rejection};
use crate::web::respond::{self, RequestCtx};

/// How an unauthenticated request is sent to sign in.
#[derive(Debug, Clone, Copy)]
pub enum SignInBy<'a> {
    /// A login flow on this host that returns to the request (a proxied browser request).
    Flow,
    /// 401: the caller sends the browser to sign in itself (nginx `auth_request`, whose
    /// `auth-signin` names the gateway's `/.tessera/login?rd=…`).
    Status,
    /// A redirect to the gateway's own sign-in at this base URL, returning to the request's
    /// full URL (Traefik `forwardAuth`, Caddy `forward_auth`).
    Redirect(&'a str),
}

/// One request on its way through a proxy app.
struct Exchange<'a> {
    /// The request line and headers, owned: phases read them, `upstream` sends them on.
    parts: Parts,
    /// The body to forward (none for a forward-auth call: the ingress has it).
    body: Option<RequestBody>,
    /// The app's view of the path (its path rules applied).
    path: CanonicalPath,
    policy: &'a Policy,
    session: Option<Session>,
    /// Attributes extensions set when there is no session (or a bearer token's claims):
    /// this request only.
    loose: Attributes,
    sign_in: SignInBy<'a>,
    /// Authenticated by an `Authorization: Bearer` token (no session: see `proxy::bearer`).
    bearer: bool,
    /// The request as hooks see it, built on the first hook call and shared by the others.
    guest: std::sync::OnceLock<GuestRequest>,
}

impl Exchange<'_> {
    /// The user's attributes: the session's, else this request's own.
    fn attrs(&self) -> &Attributes {
        self.session.as_ref().map_or(&self.loose, |s| &s.data.attrs)
    }

    /// The policy's identity for the hook caches (stable while its configuration is loaded).
    fn policy_id(&self) -> usize {
        std::ptr::from_ref(self.policy) as usize
    }

    /// Where to come back to after a sign-in: the canonical path and the query.
    fn return_to(&self) -> String {
        match self.parts.uri.query() {
            Some(q) => format!("{}?{q}", self.path.forward),
            None => self.path.forward.clone(),
        }
    }

    /// Takes the attributes a hook left: into the session (persisted) when there is one,
    /// else into this request's loose attributes.
    async fn absorb(&mut self, rt: &Runtime, attrs: Attributes, wrote: bool) {
        if !wrote {
            return;
        }
        let Some(s) = self.session.as_mut() else {
            self.loose = attrs;
            return;
        };
        if let Err(e) = rt.sessions.take_attrs(s, attrs).await {
            // The request goes on with the attributes; only their persistence failed.
            tracing::warn!(error = %e, "attributes set by an extension were not stored");
        }
    }
}

/// What the `upstream_login` phase leaves for after the upstream call.
struct LoginState<'a> {
    login: &'a UpstreamLogin,
    /// The browser's cookies as the upstream gets them, before the stored ones are merged.
    browser: Option<http::HeaderValue>,
    /// The stored cookies this request carries.
    sent: Vec<(String, String)>,
    /// The request may be sent again after a re-login: a bodiless GET or HEAD without an
    /// upgrade whose login did not already run in this request, on an app with `reloginOn`.
    resend: bool,
}

/// What the `policy` phase found for the path.
enum Route<'a> {
    /// The app's own logout location.
    Logout(&'a super::AppLogout),
    Policy(&'a Policy),
}

impl ProxyApp {
    /// The whole pipeline, in order.
    pub async fn handle(
        &self,
        rt: &Runtime,
        req: Request<RequestBody>,
        ctx: &RequestCtx,
        path: CanonicalPath,
    ) -> Response<Body> {
        let (path, route) = match self.policy(rt, path) {
            Ok(found) => found,
            Err(r) => return r.answer(ctx),
        };
        let AppKind::Proxy(upstream) = &self.kind else {
            // Forward-auth apps are routed by the original URL of a forward-auth call only.
            return Rejection::NoRoute.answer(ctx);
        };
        let policy = match route {
            Route::Policy(p) => p,
            Route::Logout(lo) => {
                ctx.access.decide(Decision::Gateway);
                let app_call = lo
                    .upstream_url
                    .as_deref()
                    .map(|url| (self.name.as_str(), url));
                let outcome =
                    login::logout(rt, req, ctx, &lo.location, Some(&lo.redirect), app_call).await;
                return settle(outcome, ctx);
            }
        };
        let (parts, body) = req.into_parts();
        let mut x = Exchange {
            parts,
            body: Some(body),
            path,
            policy,
            session: None,
            loose: Attributes::new(),
            sign_in: SignInBy::Flow,
            bearer: false,
            guest: Default::default(),
        };
        let outcome: Result<Response<Body>, Rejection> = async {
            self.admit(rt, ctx, &mut x).await?;
            // ModifyResponse sees the request as the other hooks do (before its headers move
            // upstream) and the attributes as they are now.
            let modify = self.modify_response_call(rt, ctx, &x);
            let (headers, upgrade) = self.upstream_request(rt, ctx, &mut x).await?;
            let (headers, login) = self
                .upstream_login(rt, ctx, upstream, &mut x, headers, upgrade.is_some())
                .instrument(tracing::debug_span!("upstream_login", app = %self.name))
                .await?;
            let headers = self
                .modify_request(rt, ctx, &mut x, headers)
                .instrument(tracing::debug_span!("modify_request", app = %self.name))
                .await?;
            let resp = match login {
                None => self.upstream(rt, upstream, x, headers, upgrade).await?,
                // Boxed: with its re-login and second attempt this future is large, and
                // inline it would grow (and be moved with) every request's future.
                Some(login) => {
                    Box::pin(self.upstream_logged_in(rt, ctx, upstream, x, headers, upgrade, login))
                        .await?
                }
            };
            let resp = match modify {
                Some((h, call)) => self.modify_response(h, call, resp).await?,
                None => resp,
            };
            Ok(self.response(rt, resp))
        }
        .await;
        match outcome {
            Ok(resp) => {
                ctx.access.decide(Decision::Allowed);
                resp
            }
            Err(r) => self.own_page(r).answer(ctx),
        }
    }

    /// The app's `errorPage` in place of the gateway's page for its own failures (5xx).
    fn own_page(&self, r: Rejection) -> Rejection {
        match &self.error_page {
            Some(page) if r.is_gateway_failure() => Rejection::OwnPage {
                status: r.status(),
                page: page.clone(),
                decision: r.decision(),
            },
            _ => r,
        }
    }

    /// A forward-auth call's decision on the original request (`parts`, `path`): the
    /// identity headers to copy upstream, or why not.
    pub async fn decide(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        parts: Parts,
        path: CanonicalPath,
        sign_in: SignInBy<'_>,
    ) -> Result<HeaderMap, Rejection> {
        let (path, route) = self.policy(rt, path)?;
        let Route::Policy(policy) = route else {
            return Err(Rejection::NoPolicy);
        };
        let mut x = Exchange {
            parts,
            body: None,
            path,
            policy,
            session: None,
            loose: Attributes::new(),
            sign_in,
            bearer: false,
            guest: Default::default(),
        };
        self.admit(rt, ctx, &mut x)
            .await
            .map_err(|r| self.own_page(r))?;
        self.identity_headers(rt, ctx, &x)
            .await
            .map_err(|r| self.own_page(r))
    }

    /// The phases that decide whether the request may pass, in order.
    async fn admit(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        x: &mut Exchange<'_>,
    ) -> Result<(), Rejection> {
        self.authenticate(rt, ctx, x)
            .instrument(tracing::debug_span!("authenticate", app = %self.name))
            .await?;
        self.refresh(rt, ctx, x).await?;
        self.load_attributes(rt, ctx, x).await?;
        self.authorize(rt, ctx, x).await
    }

    /// The app's path rules (or 400), its logout location, then the policy covering the path
    /// (none: 403, closed by default).
    fn policy(
        &self,
        rt: &Runtime,
        path: CanonicalPath,
    ) -> Result<(CanonicalPath, Route<'_>), Rejection> {
        let path = self
            .paths
            .apply(path)
            .map_err(|e| Rejection::BadRequest(e.to_string().into()))?;
        if let Some(lo) = self
            .logout
            .as_ref()
            .filter(|lo| path.decoded == lo.location)
        {
            return Ok((path, Route::Logout(lo)));
        }
        match self.policies.find(&path.decoded) {
            Some(p) => Ok((path, Route::Policy(p))),
            None => {
                rt.metrics.authz_denied(&self.name);
                Err(Rejection::NoPolicy)
            }
        }
    }

    /// A bearer token, where the policy accepts one, is the request's only credential (the
    /// session is not looked at). Otherwise the session, checked against the policy:
    /// authenticated by one of its IdPs (or by its IsAuthenticated hook), else sent to sign in
    /// (or to its Authenticate hook); a public location goes on without one.
    async fn authenticate(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        x: &mut Exchange<'_>,
    ) -> Result<(), Rejection> {
        if let Some(b) = &x.policy.bearer {
            let refuse = |problem| Rejection::Bearer {
                realm: self.name.clone(),
                problem,
            };
            match bearer::presented(&x.parts.headers) {
                bearer::Presented::Token(token) => {
                    ctx.access.by_bearer();
                    let attrs = bearer::authenticate(rt, b, &self.name, token).await?;
                    if let Some(sub) = attrs.get("token.sub").and_then(|v| v.as_str()) {
                        ctx.access.user_is(sub);
                    }
                    bearer::check_scopes(b, &attrs, &self.name)?;
                    x.loose = attrs;
                    x.bearer = true;
                    return Ok(());
                }
                bearer::Presented::Malformed(why) => {
                    ctx.access.by_bearer();
                    return Err(refuse(BearerProblem::Malformed(why)));
                }
                bearer::Presented::Absent if x.policy.bearer_only() => {
                    return Err(refuse(BearerProblem::Missing));
                }
                bearer::Presented::Absent => {}
            }
        }
        x.session = rt.sessions.load(&x.parts.headers).await.map_err(|e| {
            // Once per interval with a count (the store logs its own failures the same way).
            crate::telemetry::failures::failed("store", "sessions", "session store failed", &e);
            Rejection::StoreUnavailable
        })?;
        let policy = x.policy;
        let authenticated = match &policy.is_authenticated_se {
            None => x
                .session
                .as_ref()
                .is_some_and(|s| s.data.authenticated_by_any(&policy.idps)),
            Some(h) => {
                let lookup = h.cached(x.session.as_ref(), x.policy_id());
                match lookup.as_ref().and_then(|l| l.hit.clone()) {
                    Some(Cached::Bool(b)) => b,
                    _ => {
                        let called = h
                            .is_authenticated(self.hook_call(rt, ctx, x))
                            .await
                            .map_err(|_| Rejection::ExtensionFailed)?;
                        x.absorb(rt, called.attrs, called.wrote).await;
                        h.remember(lookup, x.session.as_ref(), Cached::Bool(called.value));
                        called.value
                    }
                }
            }
        };
        if policy.allow_unauthenticated || authenticated {
            return Ok(());
        }
        let Some(h) = &policy.authenticate_se else {
            return Err(self.challenge(rt, ctx, x, login_idps(rt, policy)).await);
        };
        let called = h
            .authenticate(self.hook_call(rt, ctx, x))
            .await
            .map_err(|_| Rejection::ExtensionFailed)?;
        x.absorb(rt, called.attrs, called.wrote).await;
        match called.value {
            AuthenticateAction::Authenticated => Ok(()),
            AuthenticateAction::Respond(r) => Err(Rejection::ExtensionAnswered(Box::new(
                crate::extensions::guest_response(r, ctx),
            ))),
            AuthenticateAction::Login(idp) if !policy.idps.contains(&idp) => {
                tracing::error!(extension = %h.extension.name, idp = %idp, request_id = %ctx.request_id,
                    "Authenticate chose an IdP this policy does not list in `idps`; failing closed");
                Err(Rejection::ExtensionFailed)
            }
            AuthenticateAction::Login(idp) => Err(self.challenge(rt, ctx, x, vec![idp]).await),
        }
    }

    /// Upstream tokens past their expiry are refreshed (IdPs with `refreshTokens`); a sign-in
    /// that can no longer be renewed ends the session.
    async fn refresh(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        x: &mut Exchange<'_>,
    ) -> Result<(), Rejection> {
        let Some(s) = x.session.as_mut().filter(|s| !s.data.tokens.is_empty()) else {
            return Ok(());
        };
        match login::upstream::refresh_upstream(rt, s, &x.policy.idps).await {
            Freshness::Fresh => Ok(()),
            Freshness::Expired => {
                // The session was ended: the request continues as anonymous.
                x.session = None;
                if x.policy.allow_unauthenticated {
                    return Ok(());
                }
                let idps = login_idps(rt, x.policy);
                Err(self.challenge(rt, ctx, x, idps).await)
            }
            Freshness::Unavailable(e) => {
                tracing::warn!(error = %e, "upstream token refresh failed");
                Err(Rejection::RenewalFailed)
            }
        }
    }

    /// Directory attributes (`attrProviders`, cached in the session; fail closed when the
    /// directory is down), then the LoadAttrs hook.
    async fn load_attributes(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        x: &mut Exchange<'_>,
    ) -> Result<(), Rejection> {
        if let Some(s) = x.session.as_mut() {
            crate::connectors::providers::ensure(
                &rt.connectors,
                &rt.sessions,
                &self.attr_providers,
                s,
            )
            .await
            .map_err(|e| e.rejection())?;
        }
        if let Some(h) = &self.load_attrs_se {
            let lookup = h.cached(x.session.as_ref(), x.policy_id());
            if !matches!(
                lookup.as_ref().and_then(|l| l.hit.as_ref()),
                Some(Cached::Loaded)
            ) {
                let called = h
                    .load_attributes(self.hook_call(rt, ctx, x))
                    .await
                    .map_err(|_| Rejection::ExtensionFailed)?;
                x.absorb(rt, called.attrs, called.wrote).await;
                h.remember(lookup, x.session.as_ref(), Cached::Loaded);
            }
        }
        if let Some(sub) = super::subject(x.attrs(), &x.policy.idps) {
            ctx.access.user_is(sub);
        }
        Ok(())
    }

    /// The policy's rules, or its IsAuthorized hook (a failed hook denies).
    async fn authorize(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        x: &mut Exchange<'_>,
    ) -> Result<(), Rejection> {
        let allowed = match &x.policy.authorization {
            Authorization::Extension(h) => {
                let lookup = h.cached(x.session.as_ref(), x.policy_id());
                match lookup.as_ref().and_then(|l| l.hit.clone()) {
                    Some(Cached::Bool(b)) => b,
                    _ => match h.is_authorized(self.hook_call(rt, ctx, x)).await {
                        Ok(called) => {
                            x.absorb(rt, called.attrs, called.wrote).await;
                            h.remember(lookup, x.session.as_ref(), Cached::Bool(called.value));
                            called.value
                        }
                        // Fail closed: a failed check denies.
                        Err(_) => false,
                    },
                }
            }
            _ => tracing::debug_span!("authorize")
                .in_scope(|| x.policy.authorizes(x.attrs()).unwrap_or(false)),
        };
        if allowed {
            return Ok(());
        }
        rt.metrics.authz_denied(&self.name);
        tracing::info!(app = %self.name, location = %x.policy.location_text, "authorization denied");
        if x.bearer {
            // RFC 6750 3.1: the token is valid but does not grant this location.
            return Err(Rejection::Bearer {
                realm: self.name.clone(),
                problem: BearerProblem::InsufficientScope(None),
            });
        }
        if let Some(h) = &self.handle_unauthorized_se {
            if let Ok(called) = h.handle_unauthorized(self.hook_call(rt, ctx, x)).await {
                x.absorb(rt, called.attrs, called.wrote).await;
                let mut resp = crate::extensions::guest_response(called.value, ctx);
                headers::drop_own_set_cookies(resp.headers_mut(), &rt.own_cookie_names());
                return Err(Rejection::ExtensionAnswered(Box::new(resp)));
            }
            // A failed call (logged and counted): still denied, answered as without the hook.
        }
        Err(match &self.unauthorized {
            super::Unauthorized::Default => Rejection::NotAllowed {
                unauthorized_page: None,
            },
            super::Unauthorized::Redirect(to) => Rejection::NotAllowed {
                unauthorized_page: Some(to.clone()),
            },
            super::Unauthorized::Page(page) => Rejection::OwnPage {
                status: http::StatusCode::FORBIDDEN,
                page: page.clone(),
                decision: Decision::Denied,
            },
        })
    }

    /// The headers the upstream gets: the client's (taken from the request, not copied)
    /// minus hop-by-hop and every spelling of a protected name, the identity headers, the
    /// CreateHeader hooks' headers. Also the upgrade the client asked for, if the app allows it.
    async fn upstream_request(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        x: &mut Exchange<'_>,
    ) -> Result<(HeaderMap, Option<http::HeaderValue>), Rejection> {
        // Hooks see the client's headers: they run before those move (ModifyRequest runs
        // after, on the view built here).
        if self.modify_request_se.is_some() || self.upstream_login.is_some() {
            self.guest_view(rt, ctx, x);
        }
        let mut hooked = Vec::new();
        for h in &self.header_hooks {
            hooked.extend(self.created_headers(rt, ctx, x, h).await?);
        }
        let upgrade = super::upstream::requested_upgrade(&x.parts, &self.upgrades);
        if x.bearer && !x.policy.bearer.as_ref().is_some_and(|b| b.forward_token) {
            // The token was for the gateway: the upstream must not be able to replay it.
            x.parts.headers.remove(http::header::AUTHORIZATION);
        }
        let incoming = std::mem::take(&mut x.parts.headers);
        let mut headers =
            headers::upstream_headers(self, incoming, ctx, x.attrs(), &rt.own_cookie_names());
        for (name, value) in hooked {
            crate::edge::names::strip_variants(&mut headers, &name);
            headers.insert(name, value);
        }
        Ok((headers, upgrade))
    }

    /// The app's upstream login (`upstreamLoginSE`), for a request with a session: the
    /// cookies stored for the app, or, when there are none, the UpstreamLogin hook's (then
    /// stored); merged into the `cookie` header over the browser's (`upstream_login::
    /// merge_cookies`). A failed login refuses the request (500): it never reaches the
    /// upstream without its login. A request without a session (anonymous on a public
    /// location, a bearer token) has no upstream login.
    async fn upstream_login<'s>(
        &'s self,
        rt: &Runtime,
        ctx: &RequestCtx,
        upstream: &Upstream,
        x: &mut Exchange<'_>,
        mut headers: HeaderMap,
        upgrade: bool,
    ) -> Result<(HeaderMap, Option<LoginState<'s>>), Rejection> {
        let Some(login) = &self.upstream_login else {
            return Ok((headers, None));
        };
        let Some(stored) = x
            .session
            .as_ref()
            .map(|s| s.data.upstream_cookies.get(&self.name))
        else {
            return Ok((headers, None));
        };
        let (sent, ran) = match stored {
            Some(cookies) => (cookies.clone(), false),
            None => {
                let call = self.hook_call(rt, ctx, x);
                let call = HookCall {
                    request: call.request.clone(),
                    attrs: call.attrs,
                };
                let cookies =
                    self.log_in_upstream(rt, ctx, upstream, login, x.session.as_mut(), call);
                (cookies.await?, true)
            }
        };
        let body_empty = x
            .body
            .as_ref()
            .is_some_and(hyper::body::Body::is_end_stream);
        let resend = !ran
            && login.relogin.is_set()
            && upstream_login::resendable(&x.parts.method, body_empty, upgrade);
        let browser = headers.get(http::header::COOKIE).cloned();
        upstream_login::merge_cookies(&mut headers, browser.as_ref(), &sent);
        Ok((
            headers,
            Some(LoginState {
                login,
                browser,
                sent,
                resend,
            }),
        ))
    }

    /// Runs the UpstreamLogin hook and stores its cookies in the session (`session`: the
    /// request's; a failed write is logged, the request goes on with the cookies).
    async fn log_in_upstream(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        upstream: &Upstream,
        login: &UpstreamLogin,
        session: Option<&mut Session>,
        call: HookCall,
    ) -> Result<Vec<(String, String)>, Rejection> {
        let own = rt.own_cookie_names();
        let called = login
            .hook
            .upstream_login(call, upstream.url(), upstream.fetch_client(), &own)
            .await
            .map_err(|_| Rejection::ExtensionFailed)?;
        let cookies = called.value;
        tracing::info!(app = %self.name, extension = %login.hook.extension.name,
            request_id = %ctx.request_id, cookies = cookies.len(), "signed in at the upstream");
        let Some(s) = session else {
            return Ok(cookies);
        };
        if called.wrote {
            if let Err(e) = rt.sessions.take_attrs(s, called.attrs).await {
                tracing::warn!(error = %e, "attributes set by an extension were not stored");
            }
        }
        std::sync::Arc::make_mut(&mut s.data)
            .upstream_cookies
            .insert(self.name.clone(), cookies.clone());
        let stored = rt
            .sessions
            .modify(s, |d| {
                d.upstream_cookies
                    .insert(self.name.clone(), cookies.clone());
            })
            .await;
        if let Err(e) = stored {
            // This request has its login; the next one logs in again.
            tracing::warn!(app = %self.name, error = %e, "upstream cookies were not stored in the session");
        }
        Ok(cookies)
    }

    /// Drops the app's stored upstream cookies (the upstream's session is over).
    async fn forget_upstream_cookies(&self, rt: &Runtime, session: &mut Session) {
        std::sync::Arc::make_mut(&mut session.data)
            .upstream_cookies
            .remove(&self.name);
        let dropped = rt
            .sessions
            .modify(session, |d| {
                d.upstream_cookies.remove(&self.name);
            })
            .await;
        if let Err(e) = dropped {
            tracing::warn!(app = %self.name, error = %e, "expired upstream cookies were not removed from the session");
        }
    }

    /// The upstream call of an app with an upstream login. An answer that says the
    /// upstream's session expired (`reloginOn`) drops the stored cookies; a request that may
    /// be sent again (see `LoginState::resend`) logs in once more and is sent again with the
    /// new cookies, any other gets that answer (its next request logs in). At most one login
    /// per request. The browser never gets a `Set-Cookie` of a stored cookie's name.
    #[allow(clippy::too_many_arguments)]
    async fn upstream_logged_in(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        upstream: &Upstream,
        mut x: Exchange<'_>,
        headers: HeaderMap,
        upgrade: Option<http::HeaderValue>,
        state: LoginState<'_>,
    ) -> Result<Response<Body>, Rejection> {
        let LoginState {
            login,
            browser,
            mut sent,
            resend,
        } = state;
        let mut session = x.session.take();
        // What a second attempt needs, kept before the exchange moves upstream: the request
        // line, the headers as sent, and the hooks' view of the request (taken: no hook of
        // this request reads it any more).
        let again = resend.then(|| x.guest.take()).flatten().map(|view| {
            let retry = Exchange {
                parts: x.parts.clone(),
                body: Some(RequestBody::local(bytes::Bytes::new())),
                path: x.path.clone(),
                policy: x.policy,
                session: None,
                loose: Attributes::new(),
                sign_in: x.sign_in,
                bearer: false,
                guest: Default::default(),
            };
            (retry, headers.clone(), view)
        });
        let mut resp = self.upstream(rt, upstream, x, headers, upgrade).await?;
        if login.relogin.expired(&resp) {
            tracing::info!(app = %self.name, request_id = %ctx.request_id, status = resp.status().as_u16(),
                "the upstream's session expired; its cookies are dropped");
            if let Some(s) = session.as_mut() {
                self.forget_upstream_cookies(rt, s).await;
            }
            if let Some((retry, mut headers, request)) = again {
                drop(resp);
                let call = HookCall {
                    request,
                    attrs: session
                        .as_ref()
                        .map(|s| s.data.attrs.clone())
                        .unwrap_or_default(),
                };
                let cookies = self
                    .log_in_upstream(rt, ctx, upstream, login, session.as_mut(), call)
                    .await?;
                upstream_login::merge_cookies(&mut headers, browser.as_ref(), &cookies);
                resp = self.upstream(rt, upstream, retry, headers, None).await?;
                if login.relogin.expired(&resp) {
                    tracing::warn!(app = %self.name, request_id = %ctx.request_id,
                        "the upstream refused the cookies of a fresh login; its answer is passed on");
                    if let Some(s) = session.as_mut() {
                        self.forget_upstream_cookies(rt, s).await;
                    }
                }
                sent.extend(cookies);
            }
        }
        if let Some(s) = session.as_mut() {
            self.keep_rotated_cookies(rt, s, resp.headers()).await;
        }
        headers::drop_own_set_cookies(resp.headers_mut(), &upstream_login::names(&sent));
        Ok(resp)
    }

    /// Stores what the upstream's answer re-set of the app's stored cookies (a rotated
    /// session id, a slid expiry; `upstream_login::rotated`). A set that no longer passes
    /// the login's checks (all deleted, or over the size limit) is dropped: the next request
    /// logs in again.
    async fn keep_rotated_cookies(&self, rt: &Runtime, session: &mut Session, answer: &HeaderMap) {
        let Some(next) = session
            .data
            .upstream_cookies
            .get(&self.name)
            .and_then(|stored| upstream_login::rotated(stored, answer))
        else {
            return;
        };
        let own = rt.own_cookie_names();
        let refused = match next.is_empty() {
            true => Some("the answer deleted them all".to_string()),
            false => crate::extensions::call::check_upstream_cookies(&next, &own).err(),
        };
        if let Some(why) = refused {
            tracing::info!(app = %self.name, reason = %why,
                "the upstream's answer ended its stored cookies; the next request logs in again");
            self.forget_upstream_cookies(rt, session).await;
            return;
        }
        std::sync::Arc::make_mut(&mut session.data)
            .upstream_cookies
            .insert(self.name.clone(), next.clone());
        let stored = rt
            .sessions
            .modify(session, |d| {
                d.upstream_cookies.insert(self.name.clone(), next.clone());
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!(app = %self.name, error = %e, "rotated upstream cookies were not stored in the session");
        }
    }

    /// The ModifyRequest hook's rewrite of the upstream request (its headers, path and query),
    /// when the app has one. The path is checked again as a client's is and must stay in
    /// this app, under the policy that admitted the request (else 403); the headers the
    /// gateway manages, and the identity and trust headers, stay as the gateway set them (a
    /// guest returning another value for one fails closed: 500).
    async fn modify_request(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        x: &mut Exchange<'_>,
        headers: HeaderMap,
    ) -> Result<HeaderMap, Rejection> {
        let Some(h) = &self.modify_request_se else {
            return Ok(headers);
        };
        let kept_by_gateway = |name: &http::HeaderName, value: &http::HeaderValue| {
            crate::edge::names::reserved(name) || value.to_str().is_err()
        };
        let given = headers
            .iter()
            .filter(|(n, v)| !kept_by_gateway(n, v))
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let upstream = crate::extensions::UpstreamRequest {
            path: x.path.forward.clone(),
            query: x.parts.uri.query().map(str::to_string),
            headers: given,
        };
        let check = |m: ModifiedRequest| self.checked_rewrite(&headers, &x.path.forward, m);
        let called = h
            .modify_request(self.hook_call(rt, ctx, x), upstream, check)
            .await
            .map_err(|_| Rejection::ExtensionFailed)?;
        x.absorb(rt, called.attrs, called.wrote).await;
        let (path, query, from_guest) = called.value;
        if let Some(path) = path {
            if !self.admits_rewrite(rt, ctx, x.policy, &path) {
                tracing::error!(app = %self.name, extension = %h.extension.name,
                    path = %path.decoded, request_id = %ctx.request_id,
                    "ModifyRequest rewrote the path out of the app or the policy that admitted the request; refused");
                rt.metrics.authz_denied(&self.name);
                return Err(Rejection::NoPolicy);
            }
            x.path = path;
        }
        // The upstream call reads the query from the request's URI.
        let target = match &query {
            Some(q) => format!("{}?{q}", x.path.forward),
            None => x.path.forward.clone(),
        };
        x.parts.uri = http::Uri::try_from(target).map_err(|_| Rejection::ExtensionFailed)?;
        let mut out = HeaderMap::with_capacity(headers.len() + from_guest.len());
        for (n, v) in &headers {
            if kept_by_gateway(n, v) || self.protected.protects(n.as_str()) {
                out.append(n.clone(), v.clone());
            }
        }
        for (n, v) in from_guest {
            if !self.protected.protects(n.as_str()) {
                out.append(n, v);
            }
        }
        Ok(out)
    }

    /// A ModifyRequest answer made into (new path if it changed, query, headers), or why it
    /// is invalid: a path the edge rules or the app's path rules refuse, a query a URL cannot
    /// carry, an identity or trust header (any spelling) other than the gateway's.
    #[allow(clippy::type_complexity)]
    fn checked_rewrite(
        &self,
        sent: &HeaderMap,
        forward: &str,
        m: ModifiedRequest,
    ) -> Result<
        (
            Option<CanonicalPath>,
            Option<String>,
            Vec<(http::HeaderName, http::HeaderValue)>,
        ),
        String,
    > {
        let path = if m.path == forward {
            None
        } else {
            let canonical = crate::edge::path::canonicalize(&m.path)
                .map_err(|e| format!("path `{}` is not a valid path: {e}", m.path))?;
            let applied = self.paths.apply(canonical).map_err(|e| {
                format!("path `{}` is refused by the app's path rules: {e}", m.path)
            })?;
            Some(applied)
        };
        if let Some(q) = &m.query {
            if q.contains('#') || http::uri::PathAndQuery::try_from(format!("/?{q}")).is_err() {
                return Err(format!("query `{q}` is not a valid query"));
            }
        }
        for (n, v) in &m.headers {
            if self.protected.protects(n.as_str()) && sent.get(n) != Some(v) {
                return Err(format!(
                    "header `{n}` is an identity or trust header the gateway sets; an extension cannot change it"
                ));
            }
        }
        Ok((path, m.query, m.headers))
    }

    /// Whether a rewritten path stays where the request was admitted: it routes to this app
    /// on the request's host, is not the app's logout location, and the same policy covers it.
    fn admits_rewrite(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        policy: &Policy,
        path: &CanonicalPath,
    ) -> bool {
        let same_app = rt
            .router
            .route(&ctx.host, &ctx.host_port(), &path.decoded)
            .is_some_and(|i| std::ptr::eq(&rt.apps[i], self));
        let logout = self
            .logout
            .as_ref()
            .is_some_and(|lo| path.decoded == lo.location);
        let same_policy = self
            .policies
            .find(&path.decoded)
            .is_some_and(|p| std::ptr::eq(p, policy));
        same_app && !logout && same_policy
    }

    /// Of a forward-auth app: only the identity headers and the CreateHeader hooks' headers,
    /// for the ingress to copy into the request it forwards.
    async fn identity_headers(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        x: &Exchange<'_>,
    ) -> Result<HeaderMap, Rejection> {
        let mut headers = headers::identity_headers(self, x.attrs());
        for h in &self.header_hooks {
            for (name, value) in self.created_headers(rt, ctx, x, h).await? {
                headers.insert(name, value);
            }
        }
        // A declared hook header the hook did not set is answered empty too (see
        // `headers::identity_headers`).
        for name in &self.hook_header_names {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), http::HeaderValue::from_static(""));
            }
        }
        Ok(headers)
    }

    /// One CreateHeader hook's headers (from its cache when it has one and the answer is
    /// current).
    async fn created_headers(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        x: &Exchange<'_>,
        h: &crate::extensions::Hook,
    ) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, Rejection> {
        let lookup = h.cached(x.session.as_ref(), x.policy_id());
        if let Some(Cached::Headers(hit)) = lookup.as_ref().and_then(|l| l.hit.clone()) {
            return Ok(hit);
        }
        let called = h
            .create_headers(self.hook_call(rt, ctx, x))
            .await
            .map_err(|_| Rejection::ExtensionFailed)?;
        h.remember(
            lookup,
            x.session.as_ref(),
            Cached::Headers(called.value.clone()),
        );
        Ok(called.value)
    }

    /// The call to the app's upstream (streamed both ways; upgrades the app allows).
    async fn upstream(
        &self,
        rt: &Runtime,
        upstream: &Upstream,
        x: Exchange<'_>,
        mut headers: HeaderMap,
        upgrade: Option<http::HeaderValue>,
    ) -> Result<Response<Body>, Rejection> {
        let span = tracing::debug_span!(
            "upstream",
            otel.kind = "client",
            app = %self.name,
            server.address = %upstream.authority(),
        );
        traces::inject(&span, &mut headers);
        let body = x
            .body
            .ok_or(Rejection::Upstream(http::StatusCode::BAD_GATEWAY))?;
        let req = Request::from_parts(x.parts, body);
        upstream
            .send(req, &x.path.forward, headers, upgrade)
            .instrument(span)
            .await
            .map_err(|e| {
                rt.metrics.upstream_error(&self.name, e.kind());
                // Once per interval with a count: an outage under load is one line, not one
                // per request.
                crate::telemetry::failures::failed(
                    "upstream",
                    &self.name,
                    "upstream request failed",
                    &e,
                );
                Rejection::Upstream(e.status())
            })
    }

    /// The ModifyResponse hook and its input (owned: the exchange moves upstream before it
    /// runs), when the app has one.
    fn modify_response_call(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        x: &Exchange<'_>,
    ) -> Option<(&crate::extensions::Hook, HookCall)> {
        let h = self.modify_response_se.as_ref()?;
        let view = self.hook_call(rt, ctx, x);
        Some((
            h,
            HookCall {
                request: view.request.clone(),
                attrs: view.attrs,
            },
        ))
    }

    /// The ModifyResponse hook's answer instead of the upstream's (whose body is read whole,
    /// up to `modifyResponseMaxBodyKiB`: more fails closed with 502). Upgrades pass as they are.
    async fn modify_response(
        &self,
        h: &crate::extensions::Hook,
        call: HookCall,
        resp: Response<Body>,
    ) -> Result<Response<Body>, Rejection> {
        use http_body_util::BodyExt;
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(resp);
        }
        let (parts, mut upstream_body) = resp.into_parts();
        // Read frame by frame (not `Limited`, whose error conversion defeats rustc's proof
        // that the handler's future is `Send`).
        let mut body = Vec::new();
        while let Some(frame) = upstream_body.frame().await {
            let failed = |why: String| {
                tracing::error!(app = %self.name, extension = %h.extension.name, error = %why,
                    limit_bytes = self.modify_response_max_body,
                    "upstream body not read for ModifyResponse; failing closed");
                Rejection::Upstream(http::StatusCode::BAD_GATEWAY)
            };
            let frame = frame.map_err(|e| failed(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if body.len() + data.len() > self.modify_response_max_body {
                    return Err(failed("larger than modifyResponseMaxBodyKiB".into()));
                }
                body.extend_from_slice(&data);
            }
        }
        let headers = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let upstream = crate::extensions::HttpResponse {
            status: parts.status.as_u16(),
            headers,
            body,
        };
        let called = h
            .modify_response(call, upstream)
            .await
            .map_err(|_| Rejection::ExtensionFailed)?;
        let (parts, body) = called.value.into_parts();
        Ok(Response::from_parts(parts, crate::web::body::full(body)))
    }

    /// The upstream's answer as the client gets it: never a cookie named like the gateway's.
    fn response(&self, rt: &Runtime, mut resp: Response<Body>) -> Response<Body> {
        if headers::drop_own_set_cookies(resp.headers_mut(), &rt.own_cookie_names()) {
            tracing::warn!(app = %self.name,
                "the upstream set a cookie named like the gateway's own; it was dropped");
        }
        resp
    }

    /// Sends the user to sign in at `idps`, coming back to this request's address. A request
    /// that cannot be sent to sign in (401) on a location that also accepts bearer tokens gets
    /// the bearer challenge (RFC 6750 3: a 401 names the scheme that would have worked).
    async fn challenge(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        x: &Exchange<'_>,
        idps: Vec<String>,
    ) -> Rejection {
        match self.sign_in_challenge(rt, ctx, x, idps).await {
            Rejection::SignInFirst if x.policy.bearer.is_some() => Rejection::Bearer {
                realm: self.name.clone(),
                problem: BearerProblem::Missing,
            },
            other => other,
        }
    }

    async fn sign_in_challenge(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        x: &Exchange<'_>,
        idps: Vec<String>,
    ) -> Rejection {
        let gateway = match x.sign_in {
            SignInBy::Flow => None,
            SignInBy::Status => return Rejection::SignInFirst,
            SignInBy::Redirect(_) if !matches!(x.parts.method, Method::GET | Method::HEAD) => {
                return Rejection::SignInFirst
            }
            SignInBy::Redirect(gateway) => Some(gateway),
        };
        if let Some(gateway) = gateway {
            // The browser is on the app's host: it signs in on the gateway's and comes back
            // to the full URL it asked for (the gateway checks it routes to this app).
            let host = ctx.host_header.as_ref().and_then(|h| h.to_str().ok());
            let back = format!(
                "{}://{}{}",
                ctx.scheme,
                host.unwrap_or(&ctx.host),
                x.return_to()
            );
            let rd: String = form_urlencoded::byte_serialize(back.as_bytes()).collect();
            let to = format!(
                "{}{}?rd={rd}",
                gateway.trim_end_matches('/'),
                login::LOGIN_PATH
            );
            return Rejection::LoginRequired(Box::new(respond::redirect(
                http::StatusCode::FOUND,
                &to,
                &[],
                ctx,
            )));
        }
        let sign_in = login::SignIn {
            app: &self.name,
            idps,
            return_to: &x.return_to(),
        };
        match login::challenge(rt, &sign_in, &x.parts, ctx).await {
            Ok(resp) => Rejection::LoginRequired(Box::new(resp)),
            Err(r) => r,
        }
    }

    /// The input of a hook call: the request (its view built once per request, borrowed by
    /// every hook) and the attributes the user has so far.
    fn hook_call<'x>(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        x: &'x Exchange<'_>,
    ) -> HookCall<&'x GuestRequest> {
        HookCall {
            request: self.guest_view(rt, ctx, x),
            attrs: x.attrs().clone(),
        }
    }

    /// The request as hooks see it, built on first use (before its headers move upstream).
    fn guest_view<'x>(
        &self,
        rt: &Runtime,
        ctx: &RequestCtx,
        x: &'x Exchange<'_>,
    ) -> &'x GuestRequest {
        x.guest.get_or_init(|| {
            // The guest sees the canonical path, as the policy and the upstream do.
            let uri =
                http::Uri::try_from(x.return_to()).unwrap_or_else(|_| http::Uri::from_static("/"));
            let parts = RequestParts {
                method: &x.parts.method,
                uri: &uri,
                headers: &x.parts.headers,
            };
            guest_request(ctx, &self.name, parts, &rt.own_cookie_names(), None)
        })
    }
}

/// The login-capable IdPs a policy allows (all login-capable connectors if it names none).
pub fn login_idps(rt: &Runtime, policy: &Policy) -> Vec<String> {
    if policy.idps.is_empty() {
        rt.connectors.login_capable()
    } else {
        policy.idps.clone()
    }
}
