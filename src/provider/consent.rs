//! User consent (OpenID Connect Core 1.0 §3.1.2.4 and §11) and the signed-in user's
//! "connected apps" page.
//!
//! A client with `consent: required` gets a code only for scopes the user allowed. The
//! decision is a `ConsentRecord` in the provider's store, per client and subject (so it is
//! shared by the replicas, and one user's consent is never another's): later requests for
//! the same or fewer scopes skip the page, a new scope asks again, `prompt=consent` always
//! asks, and `prompt=none` when the page would be shown is `consent_required`.
//!
//! While the page is shown, the authorization request waits in the store (`Pending`, only
//! for a signed-in user: an anonymous request never gets here). The form carries the
//! pending request's id and a token derived from the session's secret and that id, so a
//! form of another session or another request is refused; the pending request is taken
//! atomically when decided, so it cannot be decided twice.
//!
//! Every grant issued under a consent names it (`Grant::consent`). Revoking at the connected
//! apps page deletes the record, and with it every code, access token and refresh token of
//! that user for that client: they are checked against the record at each use
//! (`Provider::consent_withdrawn`). A new consent is a new record with a new id, so tokens
//! of the revoked one never come back. `offline_access` is a scope like the others here: the
//! page says the app keeps access while the user is away, and revoking ends the refresh
//! tokens (as Keycloak's and Google's account pages do).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::errors::OAuthError;
use super::grants::{hash, Grant};
use super::params::Params;
use super::{Client, Provider};
use crate::pages::consent as page;
use crate::runtime::Runtime;
use crate::session::{now_unix, random_token, Session};
use crate::web::body::{Body, RequestBody};
use crate::web::rejection::{settle, Rejection};
use crate::web::respond::{self, RequestCtx};

/// `consent` of an OIDC app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsentPolicy {
    /// The administrator vouches for the app: no page (the default).
    #[default]
    Trusted,
    /// The user allows the app's scopes on the consent page.
    Required,
}

/// What a user allowed a client: the scopes, under an id the grants name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub id: String,
    pub scopes: Vec<String>,
    /// Unix seconds of the last time the user allowed something.
    pub granted_at: u64,
}

/// How long a consent is remembered after the user last allowed something (at least as
/// long as a refresh token issued under it may live).
const REMEMBERED: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long the consent page may stay open.
const PENDING_TTL: Duration = Duration::from_secs(600);

fn consent_key(client_id: &str, sub: &str) -> String {
    format!("oidc:consent:{}", hash(&format!("{client_id}\0{sub}")))
}

fn pending_key(id: &str) -> String {
    format!("oidc:consent-pending:{id}")
}

/// An authorization request waiting for the user's decision.
#[derive(Serialize, Deserialize)]
struct Pending {
    params: Params,
    client_id: String,
    /// The subject the page was shown to and the session it was shown in.
    sub: String,
    sid: String,
    scopes: Vec<String>,
    /// When the user signed in for this request, if they did (keeps `prompt=login` and
    /// `max_age` satisfied when the request goes on).
    requested_at: Option<u64>,
}

/// The form token of the page shown for pending request `id` in `session`: derived from
/// the session's secret (its CSRF token) and the request, so it is valid for nothing else.
fn form_token(session: &Session, id: &str) -> String {
    hash(&format!("tessera-consent\0{}\0{id}", session.csrf_token()))
}

/// What the authorization endpoint does about consent.
pub enum Check {
    /// Go on: the grant is issued under this consent (`None`: a trusted client).
    Granted(Option<String>),
    /// Show the page for these scopes (those not allowed yet; all with `prompt=consent`).
    Ask {
        new: Vec<String>,
        allowed: Vec<String>,
    },
}

impl Provider {
    /// The consent `sub` gave `client_id`, if any.
    pub async fn consent_of(
        &self,
        client_id: &str,
        sub: &str,
    ) -> Result<Option<ConsentRecord>, OAuthError> {
        let bytes = self.store.get(&consent_key(client_id, sub)).await?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Was the consent `grant` was issued under revoked (or replaced after a revocation)?
    /// Never, for a grant issued under none.
    pub async fn consent_withdrawn(&self, grant: &Grant) -> Result<bool, OAuthError> {
        let (Some(id), Some(sub)) = (&grant.consent, &grant.sub) else {
            return Ok(false);
        };
        let live = self.consent_of(&grant.client_id, sub).await?;
        Ok(!live.is_some_and(|r| bool::from(r.id.as_bytes().ct_eq(id.as_bytes()))))
    }

    /// Decides whether `client` may go on for `sub` with `scopes`.
    pub async fn check_consent(
        &self,
        client: &Client,
        sub: &str,
        scopes: &[String],
        forced: bool,
    ) -> Result<Check, OAuthError> {
        if client.consent == ConsentPolicy::Trusted {
            return Ok(Check::Granted(None));
        }
        let record = self.consent_of(&client.id, sub).await?;
        let allowed = record
            .as_ref()
            .map(|r| r.scopes.clone())
            .unwrap_or_default();
        let new: Vec<String> = scopes
            .iter()
            .filter(|s| forced || !allowed.contains(s))
            .cloned()
            .collect();
        match record {
            Some(r) if new.is_empty() => Ok(Check::Granted(Some(r.id))),
            _ => Ok(Check::Ask {
                allowed: scopes
                    .iter()
                    .filter(|s| !new.contains(s))
                    .cloned()
                    .collect(),
                new,
            }),
        }
    }

    /// Adds `scopes` to what `sub` allowed `client` (a new record, with a new id, if there
    /// was none). Atomic against a concurrent revocation: a revoked record is never
    /// written back.
    async fn remember_consent(
        &self,
        client: &Client,
        sub: &str,
        scopes: &[String],
    ) -> Result<(), OAuthError> {
        let key = consent_key(&client.id, sub);
        let ttl = REMEMBERED.max(client.refresh.lifetime);
        for _ in 0..3 {
            let old = self.store.get(&key).await?;
            let parsed = old
                .as_ref()
                .and_then(|b| serde_json::from_slice::<ConsentRecord>(b).ok());
            let mut rec = parsed.unwrap_or_else(|| ConsentRecord {
                id: random_token(16),
                scopes: Vec::new(),
                granted_at: 0,
            });
            for s in scopes {
                if !rec.scopes.contains(s) {
                    rec.scopes.push(s.clone());
                }
            }
            rec.granted_at = now_unix();
            let bytes = Bytes::from(serde_json::to_vec(&rec).unwrap_or_default());
            let written = match &old {
                None => self.store.put_if_absent(&key, bytes, ttl).await?,
                Some(old) => self.store.compare_and_set(&key, old, bytes, ttl).await?,
            };
            if written {
                return Ok(());
            }
        }
        Err(OAuthError::temporarily_unavailable(
            "the consent could not be saved; try again",
        ))
    }
}

/// The consent page for a signed-in user's request (`Check::Ask`): the request waits in the
/// store, the page's form decides it.
pub struct Ask<'a> {
    pub client: &'a Client,
    pub session: &'a Session,
    pub sub: &'a str,
    pub params: &'a Params,
    pub scopes: &'a [String],
    pub new: &'a [String],
    pub allowed: &'a [String],
    /// The names of the claims the client will receive.
    pub claims: Vec<String>,
    pub requested_at: Option<u64>,
}

pub async fn show_page(
    p: &Provider,
    ask: Ask<'_>,
    ctx: &RequestCtx,
) -> Result<Response<Body>, OAuthError> {
    let id = random_token(24);
    let pending = Pending {
        params: ask.params.clone(),
        client_id: ask.client.id.clone(),
        sub: ask.sub.to_string(),
        sid: ask.session.data.sid.clone(),
        scopes: ask.scopes.to_vec(),
        requested_at: ask.requested_at,
    };
    let bytes = Bytes::from(serde_json::to_vec(&pending).unwrap_or_default());
    p.store
        .put_evictable(&pending_key(&id), bytes, PENDING_TTL)
        .await?;
    let token = form_token(ask.session, &id);
    let html = page::consent_page(&page::ConsentForm {
        app: &ask.client.app,
        action: &p.endpoints.consent,
        request: &id,
        csrf: &token,
        new: ask.new,
        allowed: ask.allowed,
        claims: &ask.claims,
    });
    Ok(respond::html(StatusCode::OK, html, ctx))
}

fn expired() -> Rejection {
    Rejection::refused_page(
        StatusCode::BAD_REQUEST,
        "This consent request has expired or was already answered. Go back to the application and start again.",
    )
}

fn unavailable() -> Rejection {
    Rejection::refused_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in is temporarily unavailable.",
    )
}

/// The signed-in user of a form post, or the refusal.
async fn signed_in(rt: &Runtime, headers: &http::HeaderMap) -> Result<Session, Rejection> {
    match rt.sessions.load(headers).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(Rejection::SignInFirst),
        Err(_) => Err(unavailable()),
    }
}

/// A POSTed form's fields.
async fn form(req: Request<RequestBody>) -> Result<(http::HeaderMap, Params), Rejection> {
    if req.method() != Method::POST {
        return Err(Rejection::refused_page(
            StatusCode::METHOD_NOT_ALLOWED,
            "This address takes the form of its page only.",
        ));
    }
    let headers = req.headers().clone();
    match super::authorize::read_params(req).await {
        Ok(p) => Ok((headers, p)),
        Err((status, e)) => Err(Rejection::refused_page(
            status,
            format!("Invalid form: {e}."),
        )),
    }
}

/// The consent page's form: Allow goes on with the authorization request, Deny answers
/// `access_denied` to the client.
pub async fn decide(
    p: &Provider,
    rt: &Runtime,
    req: Request<RequestBody>,
    ctx: &RequestCtx,
) -> Response<Body> {
    let (headers, fields) = match form(req).await {
        Ok(x) => x,
        Err(r) => return r.answer(ctx),
    };
    let session = match signed_in(rt, &headers).await {
        Ok(s) => s,
        Err(r) => return r.answer(ctx),
    };
    let Some(id) = fields.get("request") else {
        return expired().answer(ctx);
    };
    let pending = match p.store.get(&pending_key(id)).await {
        Ok(Some(b)) => serde_json::from_slice::<Pending>(&b).ok(),
        Ok(None) => None,
        Err(_) => return unavailable().answer(ctx),
    };
    let Some(pending) = pending else {
        return expired().answer(ctx);
    };
    let token_ok = fields
        .get("csrf")
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(form_token(&session, id).as_bytes())));
    if !token_ok || pending.sid != session.data.sid {
        tracing::warn!(client = %pending.client_id, "consent form with a wrong token refused");
        return Rejection::refused_page(
            StatusCode::FORBIDDEN,
            "This consent form was not issued to you for this request. Go back to the application and start again.",
        )
        .answer(ctx);
    }
    let allow = match fields.get("decision").map(String::as_str) {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return Rejection::refused_page(StatusCode::BAD_REQUEST, "Choose Allow or Deny.")
                .answer(ctx)
        }
    };
    // Exactly one answer per request: a second post finds nothing.
    match p.store.take(&pending_key(id)).await {
        Ok(Some(_)) => {}
        Ok(None) => return expired().answer(ctx),
        Err(_) => return unavailable().answer(ctx),
    }
    if !allow {
        tracing::info!(client = %pending.client_id, "the user denied consent");
        return super::authorize::refuse_consent(p, &pending.params, ctx);
    }
    let Some(client) = p.clients.get(&pending.client_id) else {
        return expired().answer(ctx);
    };
    if let Err(e) = p
        .remember_consent(client, &pending.sub, &pending.scopes)
        .await
    {
        tracing::error!(client = %client.id, error = %e.description, "consent not saved");
        return unavailable().answer(ctx);
    }
    tracing::info!(client = %client.id, scopes = %pending.scopes.join(" "), "the user allowed consent");
    super::authorize::after_consent(p, rt, pending.params, &headers, ctx, pending.requested_at)
        .await
}

/// The consents of the signed-in user, by client (in the order of the apps' names).
async fn consents_of<'p>(
    p: &'p Provider,
    session: &Session,
) -> Result<Vec<(&'p Client, ConsentRecord)>, OAuthError> {
    let mut clients: Vec<&Client> = p
        .clients
        .values()
        .filter(|c| c.consent == ConsentPolicy::Required)
        .collect();
    clients.sort_by(|a, b| a.app.cmp(&b.app));
    let mut out = Vec::new();
    for client in clients {
        let Some(sub) = user_subject(p, client, session) else {
            continue;
        };
        if let Some(rec) = p.consent_of(&client.id, &sub).await? {
            out.push((client, rec));
        }
    }
    Ok(out)
}

/// The subject `client` knows the user of `session` by (as the authorization endpoint
/// computes it), if the user signed in with one of its IdPs.
fn user_subject(p: &Provider, client: &Client, session: &Session) -> Option<String> {
    let idp = client
        .idps
        .iter()
        .find(|i| session.data.authenticated_by_any(std::slice::from_ref(*i)))?;
    p.subject(client, &session.data.attrs, idp)
}

/// `GET`: the signed-in user's connected apps (anonymous: sign in first). `POST`: revoke one.
pub async fn connected_apps(
    p: &Provider,
    rt: &Runtime,
    req: Request<RequestBody>,
    ctx: &RequestCtx,
) -> Response<Body> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        let headers = req.headers().clone();
        return list(p, rt, &headers, ctx).await;
    }
    let (headers, fields) = match form(req).await {
        Ok(x) => x,
        Err(r) => return r.answer(ctx),
    };
    settle(revoke(p, rt, &headers, &fields, ctx).await, ctx)
}

async fn list(
    p: &Provider,
    rt: &Runtime,
    headers: &http::HeaderMap,
    ctx: &RequestCtx,
) -> Response<Body> {
    let session = match rt.sessions.load(headers).await {
        Ok(s) => s,
        Err(_) => return unavailable().answer(ctx),
    };
    let Some(session) = session else {
        // Signing in is a login flow like any other (counted per client IP, bounded).
        let mut idps: Vec<String> = p
            .clients
            .values()
            .filter(|c| c.consent == ConsentPolicy::Required)
            .flat_map(|c| c.idps.iter().cloned())
            .collect();
        idps.sort();
        idps.dedup();
        if idps.is_empty() {
            return Rejection::NoRoute.answer(ctx);
        }
        let flow = crate::login::start_flow(
            rt,
            "your connected apps",
            idps,
            &p.endpoints.connected_apps,
            None,
            headers,
            ctx,
        )
        .await;
        return settle(flow, ctx);
    };
    let apps = match consents_of(p, &session).await {
        Ok(a) => a,
        Err(_) => return unavailable().answer(ctx),
    };
    let rows: Vec<page::ConnectedApp<'_>> = apps
        .iter()
        .map(|(c, r)| page::ConnectedApp {
            app: &c.app,
            client_id: &c.id,
            scopes: &r.scopes,
            granted_at: r.granted_at,
        })
        .collect();
    let html = page::connected_apps_page(&p.endpoints.connected_apps, &session.csrf_token(), &rows);
    respond::html(StatusCode::OK, html, ctx)
}

/// Forgets the user's consent for the posted client: its codes and tokens for this user
/// end with it (see `Provider::consent_withdrawn`).
async fn revoke(
    p: &Provider,
    rt: &Runtime,
    headers: &http::HeaderMap,
    fields: &Params,
    ctx: &RequestCtx,
) -> Result<Response<Body>, Rejection> {
    let session = signed_in(rt, headers).await?;
    if !session.csrf_matches(fields.get("csrf").map(String::as_str)) {
        tracing::warn!("connected apps: revocation with a wrong CSRF token refused");
        return Err(Rejection::refused_page(
            StatusCode::FORBIDDEN,
            "This form has expired. Reload the connected apps page and try again.",
        ));
    }
    let not_connected = || {
        Rejection::refused_page(
            StatusCode::NOT_FOUND,
            "This app is not connected to your account.",
        )
    };
    let client = fields
        .get("client_id")
        .and_then(|id| p.clients.get(id))
        .filter(|c| c.consent == ConsentPolicy::Required)
        .ok_or_else(not_connected)?;
    let sub = user_subject(p, client, &session).ok_or_else(not_connected)?;
    match p.store.delete(&consent_key(&client.id, &sub)).await {
        Ok(true) => {}
        Ok(false) => return Err(not_connected()),
        Err(_) => return Err(unavailable()),
    }
    tracing::info!(client = %client.id, "the user revoked an app's consent: its tokens for the user end");
    Ok(respond::redirect(
        StatusCode::SEE_OTHER,
        &p.endpoints.connected_apps,
        &[],
        ctx,
    ))
}
