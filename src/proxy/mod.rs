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
use tracing::Instrument;

use crate::claims::Attributes;
use crate::login;
use crate::runtime::Runtime;
use crate::server::body::Body;
use crate::server::respond::{self, RequestCtx};
use crate::session::Session;
use crate::telemetry::access::Decision;
use crate::telemetry::traces;
use headers::InjectedHeader;
use path::NormalizedPath;
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
}

/// The subject of the signed-in user, for the access log: `<idp>.sub` of the first of
/// `idps` the session is authenticated by, else of any connector it is authenticated by.
fn subject<'a>(attrs: &'a Attributes, idps: &[String]) -> Option<&'a str> {
    let authenticated = |idp: &str| {
        attrs.get(&format!("{idp}.authenticated")) == Some(&serde_json::Value::Bool(true))
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
    attrs.get(&format!("{idp}.sub")).and_then(|v| v.as_str())
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
                ctx.access.decide(Decision::Gateway);
                return login::logout(rt, req.headers(), ctx, Some(&lo.redirect)).await;
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
        let session = match self
            .authenticate(rt, &req, ctx, policy, &path)
            .instrument(span)
            .await
        {
            Ok(s) => s,
            Err(resp) => return resp,
        };
        let no_attrs = Attributes::new();
        let attrs = session.as_ref().map(|s| &s.data.attrs).unwrap_or(&no_attrs);
        if let Some(sub) = subject(attrs, &policy.idps) {
            ctx.access.user_is(sub);
        }
        let allowed = tracing::debug_span!("authorize").in_scope(|| policy.authorizes(attrs));
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
        let mut headers =
            headers::upstream_headers(self, req.headers(), ctx, attrs, &rt.own_cookie_names());
        let span = tracing::debug_span!(
            "upstream",
            otel.kind = "client",
            app = %self.name,
            server.address = %self.upstream.authority(),
        );
        traces::inject(&span, &mut headers);
        match self
            .upstream
            .send(req, &path.raw, headers)
            .instrument(span)
            .await
        {
            Ok(resp) => {
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
        path: &NormalizedPath,
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
            Some(q) => format!("{}?{q}", path.raw),
            None => path.raw.clone(),
        };
        if !policy.allow_unauthenticated
            && !session
                .as_ref()
                .is_some_and(|s| s.data.authenticated_by_any(&policy.idps))
        {
            ctx.access.decide(Decision::LoginRequired);
            return Err(login::challenge(rt, self, policy, req, ctx, &return_to()).await);
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
