//! Proxy apps: the request pipeline for a legacy web app behind the gateway —
//! policy lookup, authentication (or a login redirect), authorization, identity headers,
//! upstream call.

pub mod headers;
pub mod policy;
pub mod rules;
pub mod upstream;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::claims::Attributes;
use crate::edge::names::ProtectedNames;
use crate::edge::path::{CanonicalPath, PathRules};
use crate::extensions::request::{guest_request, RequestParts};
use crate::extensions::{AuthenticateAction, Hook, HookCall};
use crate::login;
use crate::runtime::Runtime;
use crate::session::Session;
use crate::telemetry::access::Decision;
use crate::telemetry::traces;
use crate::web::body::Body;
use crate::web::respond::{self, RequestCtx};
use headers::InjectedHeader;
use policy::{Policy, PolicySet};
use upstream::Upstream;

#[derive(Debug, Clone)]
pub struct AppLogout {
    pub location: String,
    pub redirect: String,
}

#[derive(Debug)]
pub struct ProxyApp {
    pub name: String,
    pub upstream: Upstream,
    pub preserve_host: bool,
    pub unauthorized_page: Option<String>,
    pub headers: Vec<InjectedHeader>,
    pub policies: PolicySet,
    pub logout: Option<AppLogout>,
    /// `attrProviders`: directories consulted after authentication (cached in the session).
    pub attr_providers: Vec<crate::connectors::providers::AttrProvider>,
    /// `loadAttrsSE`: an extension adding attributes after authentication.
    pub load_attrs_se: Option<Hook>,
    /// `headers[].createHeaderSE`: extensions adding upstream headers.
    pub header_hooks: Vec<Hook>,
    /// Which paths the app accepts and how it sees them (`pathParameters`,
    /// `caseInsensitivePaths`, `allowTrailingDotOrSpace`).
    pub paths: PathRules,
    /// Protocols a client may upgrade to (lowercase; `websocket` by default).
    pub upgrades: Vec<String>,
    /// Header names no client copy of reaches the upstream, in any spelling: the identity
    /// headers and the trust headers.
    pub protected: ProtectedNames,
}

/// The subject of the signed-in user, for the access log: `<idp>.sub` of the first of
/// `idps` the session is authenticated by, else of any connector it is authenticated by.
fn subject<'a>(attrs: &'a Attributes, idps: &[String]) -> Option<&'a str> {
    let authenticated = |idp: &str| {
        crate::claims::qualified(attrs, idp, "authenticated")
            == Some(&serde_json::Value::Bool(true))
    };
    let idp = idps
        .iter()
        .map(String::as_str)
        .find(|i| authenticated(i))
        .or_else(|| {
            attrs
                .iter()
                .filter(|(_, v)| **v == serde_json::Value::Bool(true))
                .find_map(|(k, _)| k.strip_suffix(".authenticated"))
        })?;
    crate::claims::qualified(attrs, idp, "sub").and_then(|v| v.as_str())
}

impl ProxyApp {
    pub async fn handle(
        &self,
        rt: &Runtime,
        req: Request<Incoming>,
        ctx: &RequestCtx,
        path: CanonicalPath,
    ) -> Response<Body> {
        let path = match self.paths.apply(path) {
            Ok(p) => p,
            Err(e) => {
                ctx.access.decide(Decision::Invalid);
                return respond::error(StatusCode::BAD_REQUEST, &format!("Bad request: {e}."), ctx);
            }
        };
        if let Some(lo) = &self.logout {
            if path.decoded == lo.location {
                ctx.access.decide(Decision::Gateway);
                return login::logout(rt, req, ctx, &lo.location, Some(&lo.redirect)).await;
            }
        }
        let Some(policy) = self.policies.find(&path.decoded) else {
            rt.metrics.authz_denied(&self.name);
            ctx.access.decide(Decision::Denied);
            return respond::error(
                StatusCode::FORBIDDEN,
                "No access policy covers this page, so it is closed.",
                ctx,
            );
        };
        let span = tracing::debug_span!("authenticate", app = %self.name);
        // Attributes extensions set when there is no session: this request only.
        let mut loose = Attributes::new();
        let mut session = match self
            .authenticate(rt, &req, ctx, policy, &path, &mut loose)
            .instrument(span)
            .await
        {
            Ok(s) => s,
            Err(resp) => return resp,
        };
        if let Some(h) = &self.load_attrs_se {
            let call = self.hook_call(rt, &req, ctx, &path, session.as_ref(), &loose);
            match h.load_attributes(call).await {
                Ok(c) => absorb(rt, &mut session, &mut loose, c.attrs, c.wrote).await,
                Err(_) => return extension_failed(ctx),
            }
        }
        if let Some(sub) = subject(
            session.as_ref().map(|s| &s.data.attrs).unwrap_or(&loose),
            &policy.idps,
        ) {
            ctx.access.user_is(sub);
        }
        let allowed = match &policy.authorization {
            policy::Authorization::Extension(h) => {
                let call = self.hook_call(rt, &req, ctx, &path, session.as_ref(), &loose);
                match h.is_authorized(call).await {
                    Ok(c) => {
                        absorb(rt, &mut session, &mut loose, c.attrs, c.wrote).await;
                        c.value
                    }
                    // Fail closed: a failed check denies.
                    Err(_) => false,
                }
            }
            _ => tracing::debug_span!("authorize").in_scope(|| {
                policy
                    .authorizes(session.as_ref().map(|s| &s.data.attrs).unwrap_or(&loose))
                    .unwrap_or(false)
            }),
        };
        let attrs = session.as_ref().map(|s| &s.data.attrs).unwrap_or(&loose);
        if !allowed {
            rt.metrics.authz_denied(&self.name);
            ctx.access.decide(Decision::Denied);
            tracing::info!(app = %self.name, location = %policy.location_text, "authorization denied");
            return match &self.unauthorized_page {
                Some(page) => respond::redirect(StatusCode::FOUND, page, &[], ctx),
                None => respond::error(
                    StatusCode::FORBIDDEN,
                    "You are signed in, but you are not allowed to open this page.",
                    ctx,
                ),
            };
        }
        let mut req = req;
        let upgrade = upstream::requested_upgrade(&req, &self.upgrades);
        // Header hooks read the client's headers later: only without them can they move.
        let incoming = match self.header_hooks.is_empty() {
            true => std::mem::take(req.headers_mut()),
            false => req.headers().clone(),
        };
        let mut headers =
            headers::upstream_headers(self, incoming, ctx, attrs, &rt.own_cookie_names());
        for h in &self.header_hooks {
            let call = self.hook_call(rt, &req, ctx, &path, session.as_ref(), &loose);
            match h.create_headers(call).await {
                Ok(c) => {
                    for (name, value) in c.value {
                        crate::edge::names::strip_variants(&mut headers, &name);
                        headers.insert(name, value);
                    }
                }
                Err(_) => return extension_failed(ctx),
            }
        }
        let span = tracing::debug_span!(
            "upstream",
            otel.kind = "client",
            app = %self.name,
            server.address = %self.upstream.authority(),
        );
        traces::inject(&span, &mut headers);
        match self
            .upstream
            .send(req, &path.forward, headers, upgrade)
            .instrument(span)
            .await
        {
            Ok(mut resp) => {
                if headers::drop_own_set_cookies(resp.headers_mut(), &rt.own_cookie_names()) {
                    tracing::warn!(app = %self.name,
                        "the upstream set a cookie named like the gateway's own; it was dropped");
                }
                ctx.access.decide(Decision::Allowed);
                resp
            }
            Err(e) => {
                rt.metrics.upstream_error(&self.name, e.kind());
                ctx.access.decide(Decision::Error);
                tracing::warn!(app = %self.name, error = %e, "upstream request failed");
                let msg = match e.status() {
                    StatusCode::GATEWAY_TIMEOUT => "The application did not answer in time.",
                    _ => "The application is not reachable right now.",
                };
                respond::error(e.status(), msg, ctx)
            }
        }
    }

    /// The request's session, checked against the policy: a live session authenticated by one
    /// of its IdPs (upstream tokens refreshed, directory attributes loaded), or none on a
    /// public location. `Err` is the answer instead: a login challenge or an error page.
    async fn authenticate(
        &self,
        rt: &Runtime,
        req: &Request<Incoming>,
        ctx: &RequestCtx,
        policy: &Policy,
        path: &CanonicalPath,
        loose: &mut Attributes,
    ) -> Result<Option<Session>, Response<Body>> {
        let mut session = match rt.sessions.load(req.headers()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "session store failed");
                ctx.access.decide(Decision::Error);
                return Err(respond::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sign-in is temporarily unavailable. Please try again shortly.",
                    ctx,
                ));
            }
        };
        let return_to = || match req.uri().query() {
            Some(q) => format!("{}?{q}", path.forward),
            None => path.forward.clone(),
        };
        let authenticated = match &policy.is_authenticated_se {
            None => session
                .as_ref()
                .is_some_and(|s| s.data.authenticated_by_any(&policy.idps)),
            Some(h) => {
                let call = self.hook_call(rt, req, ctx, path, session.as_ref(), loose);
                match h.is_authenticated(call).await {
                    Ok(c) => {
                        absorb(rt, &mut session, loose, c.attrs, c.wrote).await;
                        c.value
                    }
                    Err(_) => {
                        ctx.access.decide(Decision::Error);
                        return Err(extension_failed(ctx));
                    }
                }
            }
        };
        if !policy.allow_unauthenticated && !authenticated {
            let Some(h) = &policy.authenticate_se else {
                ctx.access.decide(Decision::LoginRequired);
                return Err(login::challenge(rt, self, policy, req, ctx, &return_to()).await);
            };
            let call = self.hook_call(rt, req, ctx, path, session.as_ref(), loose);
            let called = match h.authenticate(call).await {
                Ok(c) => c,
                Err(_) => {
                    ctx.access.decide(Decision::Error);
                    return Err(extension_failed(ctx));
                }
            };
            absorb(rt, &mut session, loose, called.attrs, called.wrote).await;
            match called.value {
                AuthenticateAction::Login(idp) => {
                    if !policy.idps.contains(&idp) {
                        tracing::error!(extension = %h.extension.name, idp = %idp, request_id = %ctx.request_id,
                            "Authenticate chose an IdP this policy does not list in `idps`; failing closed");
                        ctx.access.decide(Decision::Error);
                        return Err(extension_failed(ctx));
                    }
                    ctx.access.decide(Decision::LoginRequired);
                    return Err(login::challenge_with(
                        rt,
                        &self.name,
                        vec![idp],
                        req,
                        ctx,
                        &return_to(),
                    )
                    .await);
                }
                AuthenticateAction::Respond(r) => {
                    ctx.access.decide(Decision::Denied);
                    return Err(crate::extensions::guest_response(r, ctx));
                }
                AuthenticateAction::Authenticated => {}
            }
        }
        // Upstream tokens past their expiry are refreshed (IdPs with `refreshTokens`).
        let freshness = match session.as_mut().filter(|s| !s.data.tokens.is_empty()) {
            Some(s) => login::upstream::refresh_upstream(rt, s, &policy.idps).await,
            None => login::upstream::Freshness::Fresh,
        };
        match freshness {
            login::upstream::Freshness::Fresh => {}
            login::upstream::Freshness::Expired => {
                // The session was ended: the request continues as anonymous.
                session = None;
                if !policy.allow_unauthenticated {
                    ctx.access.decide(Decision::LoginRequired);
                    return Err(login::challenge(rt, self, policy, req, ctx, &return_to()).await);
                }
            }
            login::upstream::Freshness::Unavailable(e) => {
                tracing::warn!(error = %e, "upstream token refresh failed");
                ctx.access.decide(Decision::Error);
                return Err(respond::error(
                    StatusCode::BAD_GATEWAY,
                    "Your sign-in could not be renewed right now. Please try again in a moment.",
                    ctx,
                ));
            }
        }
        // Directory attributes before authorization: fail closed (503) when unavailable.
        if let Some(s) = session.as_mut() {
            let providers = &self.attr_providers;
            if let Err(e) =
                crate::connectors::providers::ensure(&rt.connectors, &rt.sessions, providers, s)
                    .await
            {
                ctx.access.decide(Decision::Error);
                return Err(e.response(ctx));
            }
        }
        Ok(session)
    }
}

impl ProxyApp {
    /// The input of a hook call: the request and the attributes the user has so far.
    fn hook_call(
        &self,
        rt: &Runtime,
        req: &Request<Incoming>,
        ctx: &RequestCtx,
        path: &CanonicalPath,
        session: Option<&Session>,
        loose: &Attributes,
    ) -> HookCall {
        // The guest sees the canonical path, as the policy and the upstream do.
        let pq = match req.uri().query() {
            Some(q) => format!("{}?{q}", path.forward),
            None => path.forward.clone(),
        };
        let uri = http::Uri::try_from(pq).unwrap_or_else(|_| http::Uri::from_static("/"));
        let parts = RequestParts {
            method: req.method(),
            uri: &uri,
            headers: req.headers(),
        };
        HookCall {
            request: guest_request(ctx, &self.name, parts, &rt.own_cookie_names(), None),
            attrs: session.map_or_else(|| loose.clone(), |s| s.data.attrs.clone()),
        }
    }
}

/// Takes the attributes a hook left: into the session (persisted) when there is one, else
/// into this request's loose attributes.
async fn absorb(
    rt: &Runtime,
    session: &mut Option<Session>,
    loose: &mut Attributes,
    attrs: Attributes,
    wrote: bool,
) {
    if !wrote {
        return;
    }
    let Some(s) = session.as_mut() else {
        *loose = attrs;
        return;
    };
    let changes: Vec<(String, serde_json::Value)> = attrs
        .iter()
        .filter(|(k, v)| s.data.attrs.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    s.data.attrs = attrs;
    if changes.is_empty() {
        return;
    }
    let result = rt
        .sessions
        .modify(s, |data| {
            for (k, v) in &changes {
                data.attrs.insert(k.clone(), v.clone());
            }
        })
        .await;
    if let Err(e) = result {
        // The request goes on with the attributes; only their persistence failed.
        tracing::warn!(error = %e, "attributes set by an extension were not stored");
    }
}

/// A failed extension call on the proxy path: an error page, never the page itself.
fn extension_failed(ctx: &RequestCtx) -> Response<Body> {
    respond::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "A check this page requires could not be completed. Please try again later.",
        ctx,
    )
}

#[cfg(test)]
mod tests {
    use super::subject;
    use serde_json::json;

    #[test]
    fn the_subject_comes_from_the_authenticating_idp() {
        let attrs = [
            ("ldap.sub", json!("uid=a,dc=x")),
            ("ldap.authenticated", json!(true)),
            ("okta.sub", json!("00u1")),
            ("okta.authenticated", json!(true)),
            ("okta.email", json!("a@example.com")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(subject(&attrs, &["okta".into()]), Some("00u1"));
        assert_eq!(subject(&attrs, &["ldap".into()]), Some("uid=a,dc=x"));
        assert!(subject(&attrs, &[]).is_some());
        assert_eq!(subject(&Default::default(), &["okta".into()]), None);
    }
}
