//! Proxy apps: the request pipeline for a legacy web app behind the gateway —
//! policy lookup, authentication (or a login redirect), authorization, identity headers,
//! upstream call.

pub mod headers;
pub mod path;
pub mod policy;
pub mod rules;
pub mod upstream;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::claims::Attributes;
use crate::login;
use crate::runtime::Runtime;
use crate::server::body::Body;
use crate::server::respond::{self, RequestCtx};
use headers::InjectedHeader;
use path::NormalizedPath;
use policy::PolicySet;
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
}

impl ProxyApp {
    pub async fn handle(
        &self,
        rt: &Runtime,
        req: Request<Incoming>,
        ctx: &RequestCtx,
        path: NormalizedPath,
    ) -> Response<Body> {
        if let Some(lo) = &self.logout {
            if path.decoded == lo.location {
                return login::logout(rt, req.headers(), ctx, Some(&lo.redirect)).await;
            }
        }
        let Some(policy) = self.policies.find(&path.decoded) else {
            rt.metrics.authz_denied(&self.name);
            return respond::error(
                StatusCode::FORBIDDEN,
                "No access policy covers this page, so it is closed.",
                ctx,
            );
        };
        let mut session = match rt.sessions.load(req.headers()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "session store failed");
                return respond::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sign-in is temporarily unavailable. Please try again shortly.",
                    ctx,
                );
            }
        };
        if !policy.allow_unauthenticated
            && !session
                .as_ref()
                .is_some_and(|s| s.data.authenticated_by_any(&policy.idps))
        {
            let return_to = match req.uri().query() {
                Some(q) => format!("{}?{q}", path.raw),
                None => path.raw.clone(),
            };
            return login::challenge(rt, self, policy, &req, ctx, &return_to).await;
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
                    let return_to = match req.uri().query() {
                        Some(q) => format!("{}?{q}", path.raw),
                        None => path.raw.clone(),
                    };
                    return login::challenge(rt, self, policy, &req, ctx, &return_to).await;
                }
            }
            login::upstream::Freshness::Unavailable(e) => {
                tracing::warn!(error = %e, "upstream token refresh failed");
                return respond::error(
                    StatusCode::BAD_GATEWAY,
                    "Your sign-in could not be renewed right now. Please try again in a moment.",
                    ctx,
                );
            }
        }
        // Directory attributes before authorization: fail closed (503) when unavailable.
        if let Some(s) = session.as_mut() {
            let providers = &self.attr_providers;
            if let Err(e) =
                crate::connectors::providers::ensure(&rt.connectors, &rt.sessions, providers, s)
                    .await
            {
                return e.response(ctx);
            }
        }
        let no_attrs = Attributes::new();
        let attrs = session.as_ref().map(|s| &s.data.attrs).unwrap_or(&no_attrs);
        if !policy.authorizes(attrs) {
            rt.metrics.authz_denied(&self.name);
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
        let headers =
            headers::upstream_headers(self, req.headers(), ctx, attrs, &rt.own_cookie_names());
        match self.upstream.send(req, &path.raw, headers).await {
            Ok(resp) => resp,
            Err(e) => {
                rt.metrics.upstream_error(&self.name, e.kind());
                tracing::warn!(app = %self.name, error = %e, "upstream request failed");
                let msg = match e.status() {
                    StatusCode::GATEWAY_TIMEOUT => "The application did not answer in time.",
                    _ => "The application is not reachable right now.",
                };
                respond::error(e.status(), msg, ctx)
            }
        }
    }
}
