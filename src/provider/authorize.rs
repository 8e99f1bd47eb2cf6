//! The authorization endpoint: `response_type=code` with PKCE, `state`, `nonce`, `prompt`,
//! `max_age`, `login_hint`, `scope`, `resource` (RFC 8707) and `claims`.
//!
//! Until the client and its redirect URI are known to be genuine, errors are shown as a page
//! and **never** redirected (RFC 6749 4.1.2.1); after that, errors go back to the client.
//! When the user must sign in, the request is parked in the store and the gateway's login
//! flow brings the browser back to `resume`, which finishes it.

use crate::web::body::{read_limited, RequestBody};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::acr::AcrRequest;
use super::errors::OAuthError;
use super::grants::{code_key, random_chars, CodeRecord, Grant};
use super::params::{self, Params};
use super::scopes;
use super::{Client, Provider};
use crate::claims::oidc::user_claims;
use crate::extensions::request::{guest_request, RequestParts};
use crate::extensions::{AuthenticateAction, HookCall};
use crate::login;
use crate::pages::escape;
use crate::runtime::Runtime;
use crate::session::{now_unix, random_token, Authentication, Session};
use crate::web::body::{full, Body};
use crate::web::rejection::{settle, Rejection};
use crate::web::respond::{self, RequestCtx};

const PARKED_TTL: std::time::Duration = std::time::Duration::from_secs(600);
/// Largest authorization request accepted (its parameters' names and values together): an
/// anonymous browser's request is parked in the store while the user signs in, so its size
/// is what one anonymous request may make the gateway keep. Real requests are far smaller.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Longest `state` echoed back in an error redirect; a request refused for its size with a
/// longer one gets the error page instead (its redirect would be as large as the request).
const MAX_ECHOED_STATE: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseMode {
    Query,
    FormPost,
}

/// A request whose client and redirect URI have been verified: from here on errors are
/// sent back to the client.
struct Verified<'p> {
    client: &'p Client,
    redirect_uri: String,
    state: Option<String>,
    mode: ResponseMode,
}

/// A request parked while the user signs in.
#[derive(Serialize, Deserialize)]
struct Parked {
    params: Params,
    requested_at: u64,
}

fn parked_key(id: &str) -> String {
    format!("oidc:authreq:{id}")
}

/// The parameters, or the status and text of the refusal (400; 408/413 for a body that
/// came too slowly or too large).
pub(super) async fn read_params(req: Request<RequestBody>) -> Result<Params, (StatusCode, String)> {
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    let query = req.uri().query().unwrap_or("").to_string();
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return params::parse(query.as_bytes()).map_err(|e| bad(e.description));
    }
    if req.method() != Method::POST {
        return Err(bad("the authorization endpoint takes GET or POST".into()));
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(bad(
            "a POST to the authorization endpoint must be a form".into()
        ));
    }
    let (_, bytes) = read_limited(req, 64 * 1024)
        .await
        .map_err(|e| (e.status(), e.message().to_string()))?;
    params::parse(&bytes).map_err(|e| bad(e.description))
}

fn bad_request_page(ctx: &RequestCtx, message: &str) -> Response<Body> {
    Rejection::refused_page(StatusCode::BAD_REQUEST, message.to_string()).answer(ctx)
}

pub async fn authorize(
    p: &Provider,
    rt: &Runtime,
    req: Request<RequestBody>,
    ctx: &RequestCtx,
) -> Response<Body> {
    let headers = req.headers().clone();
    let params = match read_params(req).await {
        Ok(p) => p,
        Err((status, e)) => {
            return Rejection::refused_page(status, format!("Invalid authorization request: {e}."))
                .answer(ctx)
        }
    };
    // A `request_uri` stands for the parameters its client pushed (RFC 9126).
    let params = match super::par::resolve(p, params).await {
        Ok(params) => params,
        Err((status, message)) => return Rejection::refused_page(status, message).answer(ctx),
    };
    process(p, rt, params, &headers, ctx, None, false).await
}

/// A pushed authorization request (RFC 9126 section 2.1) checked as this endpoint checks a
/// request, with every error as OAuth JSON: the client's redirect URI, the size, then the
/// parameters.
pub(super) fn check_pushed(client: &Client, params: &Params) -> Result<(), OAuthError> {
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(OAuthError::invalid_request(
            "redirect_uri is not registered for this client",
        ));
    }
    let size: usize = params.iter().map(|(k, val)| k.len() + val.len()).sum();
    if size > MAX_REQUEST_BYTES {
        return Err(OAuthError::invalid_request(format!(
            "the authorization request is too large (more than {MAX_REQUEST_BYTES} bytes of parameters)"
        )));
    }
    validate(client, params).map(|_| ())
}

/// Back from the login flow: finish the parked request.
pub async fn resume(
    p: &Provider,
    rt: &Runtime,
    req: Request<RequestBody>,
    ctx: &RequestCtx,
) -> Response<Body> {
    let id = req
        .uri()
        .query()
        .and_then(|q| params::parse(q.as_bytes()).ok())
        .and_then(|mut q| q.remove("id"))
        .unwrap_or_default();
    let parked = match p.store.take(&parked_key(&id)).await {
        Ok(Some(b)) => serde_json::from_slice::<Parked>(&b).ok(),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "store failed");
            return Rejection::refused_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is temporarily unavailable.",
            )
            .answer(ctx);
        }
    };
    let Some(parked) = parked else {
        return bad_request_page(
            ctx,
            "This sign-in has expired. Go back to the application and start again.",
        );
    };
    process(
        p,
        rt,
        parked.params,
        req.headers(),
        ctx,
        Some(parked.requested_at),
        false,
    )
    .await
}

/// The user allowed the request on the consent page (`consent::decide`): go on with it.
pub(super) async fn after_consent(
    p: &Provider,
    rt: &Runtime,
    params: Params,
    headers: &http::HeaderMap,
    ctx: &RequestCtx,
    resumed_after: Option<u64>,
) -> Response<Body> {
    process(p, rt, params, headers, ctx, resumed_after, true).await
}

/// The user denied the request on the consent page: `access_denied` to the client (with
/// `state` and `iss`), if it is still registered with that redirect URI.
pub(super) fn refuse_consent(p: &Provider, params: &Params, ctx: &RequestCtx) -> Response<Body> {
    match verify_client(p, params) {
        Ok(v) => redirect_error(
            p,
            &v,
            &OAuthError {
                code: "access_denied",
                ..OAuthError::invalid_request("the user denied the request")
            },
            ctx,
        ),
        Err(msg) => bad_request_page(ctx, msg),
    }
}

/// Checks the client and redirect URI; errors here are pages, never redirects.
fn verify_client<'p>(p: &'p Provider, params: &Params) -> Result<Verified<'p>, &'static str> {
    let client_id = params
        .get("client_id")
        .ok_or("The request has no client_id.")?;
    let client = p
        .clients
        .get(client_id)
        .ok_or("The application (client_id) is not registered.")?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or("The request has no redirect_uri.")?;
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err("The redirect_uri is not registered for this application.");
    }
    let mode = match params.get("response_mode").map(String::as_str) {
        None | Some("query") => ResponseMode::Query,
        Some("form_post") => ResponseMode::FormPost,
        // Reported to the client below, in the default mode.
        Some(_) => ResponseMode::Query,
    };
    Ok(Verified {
        client,
        redirect_uri: redirect_uri.clone(),
        state: params.get("state").cloned(),
        mode,
    })
}

/// A validated authorization request.
struct AuthzRequest {
    scopes: Vec<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    audiences: Vec<String>,
    claims: Option<Value>,
    prompt: Vec<String>,
    max_age: Option<u64>,
    login_hint: Option<String>,
    /// `acr_values` and the `claims` parameter's `acr` (see `acr`).
    acr: AcrRequest,
}

fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn validate(client: &Client, params: &Params) -> Result<AuthzRequest, OAuthError> {
    if let Some(m) = params.get("response_mode") {
        if m != "query" && m != "form_post" {
            return Err(OAuthError::invalid_request(format!(
                "response_mode `{m}` is not supported"
            )));
        }
    }
    match params.get("response_type").map(String::as_str) {
        None => return Err(OAuthError::invalid_request("response_type is required")),
        Some("code") => {}
        Some(other) => {
            return Err(OAuthError::unsupported_response_type(format!(
                "response_type `{other}` is not supported: use `code`"
            )))
        }
    }
    if params.contains_key("request") {
        return Err(OAuthError {
            code: "request_not_supported",
            ..OAuthError::invalid_request("request objects are not supported")
        });
    }
    if params.contains_key("request_uri") {
        return Err(OAuthError {
            code: "request_uri_not_supported",
            ..OAuthError::invalid_request("request_uri is not supported")
        });
    }
    if !client.grants.authorization_code {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the authorization code flow",
        ));
    }
    let mut scopes = scopes::granted(
        params.get("scope").map(String::as_str),
        client.strict_scopes,
        |s| client.may_have_user_scope(s),
        |s| format!("scope `{s}` is not allowed for this client"),
    )?;
    // offline_access is ignored when the client may not have refresh tokens (OIDC Core 11)
    if !(client.refresh.allow_offline_access && client.grants.refresh_token) {
        scopes.retain(|s| s != "offline_access");
    }
    let code_challenge = match (
        params.get("code_challenge"),
        params.get("code_challenge_method").map(String::as_str),
    ) {
        (None, None) if client.is_public() => {
            return Err(OAuthError::invalid_request(
                "PKCE is required for public clients: send code_challenge with S256",
            ))
        }
        (None, None) if client.require_pkce => {
            return Err(OAuthError::invalid_request(
                "PKCE is required for this client: send code_challenge with S256",
            ))
        }
        (None, None) => None,
        (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method without code_challenge",
            ))
        }
        (Some(c), Some("S256")) if is_pkce_value(c) => Some(c.clone()),
        (Some(_), Some("S256")) => {
            return Err(OAuthError::invalid_request("code_challenge is malformed"))
        }
        (Some(_), _) => {
            return Err(OAuthError::invalid_request(
                "only code_challenge_method S256 is supported",
            ))
        }
    };
    let audiences = match params.get("resource") {
        None => client.access_token.allowed_audiences.clone(),
        Some(r) => {
            if !client.access_token.allowed_audiences.iter().any(|a| a == r) {
                return Err(OAuthError::invalid_target(format!(
                    "resource `{r}` is not allowed for this client"
                )));
            }
            vec![r.clone()]
        }
    };
    let claims = match params.get("claims") {
        None => None,
        Some(c) => match serde_json::from_str::<Value>(c) {
            Ok(v @ Value::Object(_)) => Some(v),
            _ => return Err(OAuthError::invalid_request("claims must be a JSON object")),
        },
    };
    let prompt: Vec<String> = params
        .get("prompt")
        .map(|p| {
            p.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if prompt.iter().any(|p| p == "none") && prompt.len() > 1 {
        return Err(OAuthError::invalid_request(
            "prompt=none cannot be combined with other values",
        ));
    }
    let max_age = match params.get("max_age") {
        None => None,
        Some(m) => Some(m.parse::<u64>().map_err(|_| {
            OAuthError::invalid_request("max_age must be a whole number of seconds")
        })?),
    };
    let acr = AcrRequest::parse(
        params.get("acr_values").map(String::as_str),
        claims.as_ref(),
    )?;
    Ok(AuthzRequest {
        acr,
        scopes,
        nonce: params.get("nonce").cloned(),
        code_challenge,
        audiences,
        claims,
        prompt,
        max_age,
        login_hint: params.get("login_hint").cloned(),
    })
}

async fn process(
    p: &Provider,
    rt: &Runtime,
    params: Params,
    headers: &http::HeaderMap,
    ctx: &RequestCtx,
    resumed_after: Option<u64>,
    just_consented: bool,
) -> Response<Body> {
    let v = match verify_client(p, &params) {
        Ok(v) => v,
        Err(msg) => return bad_request_page(ctx, msg),
    };
    let size: usize = params.iter().map(|(k, val)| k.len() + val.len()).sum();
    if size > MAX_REQUEST_BYTES {
        tracing::info!(client = %v.client.id, size, limit = MAX_REQUEST_BYTES,
            "authorization request too large: refused");
        if v.state.as_ref().is_some_and(|s| s.len() > MAX_ECHOED_STATE) {
            return bad_request_page(ctx, "Invalid authorization request: it is too large.");
        }
        return redirect_error(
            p,
            &v,
            &OAuthError::invalid_request(format!(
                "the authorization request is too large (more than {MAX_REQUEST_BYTES} bytes of parameters)"
            )),
            ctx,
        );
    }
    let req = match validate(v.client, &params) {
        Ok(r) => r,
        Err(e) => return redirect_error(p, &v, &e, ctx),
    };
    let session = match rt.sessions.load(headers).await {
        Ok(s) => s,
        Err(e) => return redirect_error(p, &v, &OAuthError::from(e), ctx),
    };
    let now = now_unix();
    // The session's logins with the client's IdPs (in its order), with what each achieved.
    let mut logins: Vec<(String, Authentication)> = session
        .as_ref()
        .map(|s| {
            v.client
                .idps
                .iter()
                .filter(|i| s.data.authenticated_by_any(std::slice::from_ref(i)))
                .map(|i| (i.clone(), achieved(rt, s, i)))
                .collect()
        })
        .unwrap_or_default();
    // IsAuthenticated may refuse a session the gateway would accept (it cannot create one:
    // the subject comes from the session).
    if let (Some(hook), Some(s)) = (&v.client.hooks.is_authenticated, session.as_ref()) {
        let call = hook_call(rt, v.client, headers, ctx, &s.data.attrs);
        match hook.is_authenticated(call).await {
            Ok(c) if c.value => {}
            Ok(_) => logins.clear(),
            Err(_) => {
                return redirect_error(
                    p,
                    &v,
                    &OAuthError::server_error("an authentication extension failed"),
                    ctx,
                )
            }
        }
    }
    // The login a code would be issued for: the one that best matches the requested `acr`.
    let best = req.acr.best_login(&logins).cloned();
    let idp = best.as_ref().map(|(i, _)| i.clone());
    let auth_time = best.as_ref().map(|(_, a)| a.at).unwrap_or(0);
    // A connector that would achieve the requested `acr` when the session's login does not.
    let met = best
        .as_ref()
        .is_some_and(|(_, a)| req.acr.satisfied_by(a.acr.as_deref()));
    let steer = if met {
        None
    } else {
        req.acr
            .steer(&v.client.idps, |i| rt.connectors.acr_of(i))
            .cloned()
    };
    // An essential `acr` nothing can achieve is refused before the user signs in for nothing.
    let accepted = best
        .as_ref()
        .is_some_and(|(_, a)| req.acr.accepts(a.acr.as_deref()));
    if req.acr.is_essential() && !accepted && steer.is_none() {
        return redirect_error(p, &v, &acr_not_achieved(), ctx);
    }
    let wants_login = req.prompt.iter().any(|p| p == "login");
    // A login that happened after the request was made satisfies prompt=login and max_age.
    let fresh = resumed_after.is_some_and(|t| idp.is_some() && auth_time >= t);
    let too_old = req
        .max_age
        .is_some_and(|m| now.saturating_sub(auth_time) > m);
    // Sent to the steered connector once; back from it, what was achieved is reported (or
    // refused below when essential). A voluntary `acr` never fails `prompt=none`.
    let prompt_none = req.prompt.iter().any(|p| p == "none");
    let steered =
        steer.is_some() && resumed_after.is_none() && (req.acr.is_essential() || !prompt_none);
    let must_login = idp.is_none() || steered || (!fresh && (wants_login || too_old));
    if must_login {
        if req.prompt.iter().any(|p| p == "none") {
            return redirect_error(
                p,
                &v,
                &OAuthError::login_required("the user is not signed in"),
                ctx,
            );
        }
        if resumed_after.is_some() && idp.is_none() {
            // Came back from the login flow still unauthenticated: do not loop.
            return redirect_error(
                p,
                &v,
                &OAuthError {
                    code: "access_denied",
                    ..OAuthError::invalid_request("the user did not sign in")
                },
                ctx,
            );
        }
        let mut idps = match &steer {
            Some(to) => vec![to.clone()],
            None => v.client.idps.clone(),
        };
        if let Some(hook) = &v.client.hooks.authenticate {
            let attrs = session
                .as_ref()
                .map(|s| s.data.attrs.clone())
                .unwrap_or_default();
            let call = hook_call(rt, v.client, headers, ctx, &attrs);
            match hook.authenticate(call).await {
                Ok(c) => match c.value {
                    // The extension's choice comes before `acr` steering (an essential
                    // `acr` is still checked once the user is back).
                    AuthenticateAction::Login(chosen) if v.client.idps.contains(&chosen) => {
                        idps = vec![chosen];
                    }
                    AuthenticateAction::Login(chosen) => {
                        tracing::error!(extension = %hook.extension.name, idp = %chosen, request_id = %ctx.request_id,
                            "Authenticate chose an IdP this app does not list in `idps`; failing closed");
                        return redirect_error(
                            p,
                            &v,
                            &OAuthError::server_error("an authentication extension failed"),
                            ctx,
                        );
                    }
                    AuthenticateAction::Respond(r) => {
                        return crate::extensions::guest_response(r, ctx);
                    }
                    AuthenticateAction::Authenticated => {
                        // Nothing to authenticate with: there is no signed-in user to name.
                        return redirect_error(
                            p,
                            &v,
                            &OAuthError::login_required("the user is not signed in"),
                            ctx,
                        );
                    }
                },
                Err(_) => {
                    return redirect_error(
                        p,
                        &v,
                        &OAuthError::server_error("an authentication extension failed"),
                        ctx,
                    )
                }
            }
        }
        // Counted against the client IP's login flows before anything is stored.
        if let Err(refused) = login::flows::admit(rt, ctx).await {
            return refused.answer(ctx);
        }
        let id = random_token(24);
        let parked = Parked {
            params: params.clone(),
            requested_at: resumed_after.unwrap_or(now),
        };
        let bytes = Bytes::from(serde_json::to_vec(&parked).unwrap_or_default());
        if let Err(e) = p
            .store
            .put_evictable(&parked_key(&id), bytes, PARKED_TTL)
            .await
        {
            return redirect_error(p, &v, &OAuthError::from(e), ctx);
        }
        let return_to = format!("{}?id={id}", p.endpoints.authorization_resume);
        let flow = login::start_admitted_flow(
            rt,
            &v.client.app,
            idps,
            &return_to,
            req.login_hint.as_deref(),
            headers,
            ctx,
        )
        .await;
        return settle(flow, ctx);
    }
    let (Some(mut session), Some((idp, login))) = (session, best) else {
        return redirect_error(
            p,
            &v,
            &OAuthError::login_required("the user is not signed in"),
            ctx,
        );
    };
    // An essential `acr` the login did not achieve (OIDC Core §5.5.1.1): no code.
    if !req.acr.accepts(login.acr.as_deref()) {
        return redirect_error(p, &v, &acr_not_achieved(), ctx);
    }
    // Directory attributes (`attrProviders`) must be in the session before claims are taken.
    if let Err(e) = crate::connectors::providers::ensure(
        &rt.connectors,
        &rt.sessions,
        &v.client.attr_providers,
        &mut session,
    )
    .await
    {
        tracing::error!(client = %v.client.id, error = %e, "attributes unavailable: authorization refused");
        return redirect_error(
            p,
            &v,
            &OAuthError::temporarily_unavailable(
                "the user directory is not reachable; try again shortly",
            ),
            ctx,
        );
    }
    // The app's LoadAttributes, then its IsAuthorized: a denial or failure gets no code.
    if let Err(e) = super::app_hooks::decide(rt, v.client, headers, ctx, &mut session).await {
        return redirect_error(p, &v, &e, ctx);
    }
    let consent = match consent_step(
        p,
        &v,
        &req,
        &session,
        &idp,
        &params,
        (resumed_after, just_consented),
        ctx,
    )
    .await
    {
        Ok(ConsentStep::Granted(c)) => c,
        Ok(ConsentStep::Page(page)) => return page,
        Err(e) => return redirect_error(p, &v, &e, ctx),
    };
    match issue_code(p, &rt.sessions, &v, &req, &session, (&idp, &login), consent).await {
        Ok(code) => {
            let mut out = vec![("code", code)];
            if let Some(s) = &v.state {
                out.push(("state", s.clone()));
            }
            out.push(("iss", p.issuer.clone()));
            respond_to_client(&v, &out, ctx)
        }
        Err(e) => redirect_error(p, &v, &e, ctx),
    }
}

/// What the session's login with `idp` achieved: as recorded at the login, or (a session
/// from before logins were recorded) the connector's configured values at the session's start.
fn achieved(rt: &Runtime, session: &Session, idp: &str) -> Authentication {
    match session.data.logins.get(idp) {
        Some(a) => a.clone(),
        None => rt.connectors.achieved(idp, None, session.data.created),
    }
}

/// `access_denied` for an essential `acr` (OIDC Core §5.5.1.1) that was not achieved.
fn acr_not_achieved() -> OAuthError {
    OAuthError {
        code: "access_denied",
        ..OAuthError::invalid_request("the requested essential acr was not achieved")
    }
}

async fn issue_code(
    p: &Provider,
    sessions: &crate::session::Sessions,
    v: &Verified<'_>,
    req: &AuthzRequest,
    session: &Session,
    (idp, login): (&str, &Authentication),
    consent: Option<String>,
) -> Result<String, OAuthError> {
    let attrs = &session.data.attrs;
    let sub = p
        .subject(v.client, attrs, idp)
        .ok_or_else(|| OAuthError::server_error("the user has no subject attribute"))?;
    // The session remembers the client (and the subject it knows), to tell it when the
    // session ends; written once per client and subject.
    if session.data.rps.get(&v.client.id) != Some(&sub) {
        let (id, known_as) = (v.client.id.clone(), sub.clone());
        sessions
            .modify(session, |d| {
                d.rps.insert(id.clone(), known_as.clone());
            })
            .await?;
    }
    let grant = Grant {
        client_id: v.client.id.clone(),
        sub: Some(sub),
        scopes: req.scopes.clone(),
        claims: user_claims(&v.client.claims_mapping, attrs, idp),
        requested: req.claims.clone(),
        auth_time: Some(login.at),
        acr: login.acr.clone(),
        amr: login.amr.clone(),
        username: p.username(attrs, idp),
        sid: Some(session.data.sid.clone()).filter(|s| !s.is_empty()),
        audiences: req.audiences.clone(),
        attrs: if v.client.hooks.need_attributes() {
            attrs.clone()
        } else {
            Default::default()
        },
        consent,
    };
    let code = random_chars(43);
    let record = CodeRecord {
        grant,
        redirect_uri: v.redirect_uri.clone(),
        code_challenge: req.code_challenge.clone(),
        nonce: req.nonce.clone(),
    };
    p.store
        .put(
            &code_key(&code),
            Bytes::from(serde_json::to_vec(&record).unwrap_or_default()),
            v.client.code_lifetime,
        )
        .await?;
    Ok(code)
}

enum ConsentStep {
    /// Issue the code under this consent (`None`: a trusted client).
    Granted(Option<String>),
    /// The consent page.
    Page(Response<Body>),
}

/// Consent (see `consent`): the user allowed the scopes before, or is asked now.
/// `prompt=consent` asks again, unless the user has just answered this very request.
#[allow(clippy::too_many_arguments)]
async fn consent_step(
    p: &Provider,
    v: &Verified<'_>,
    req: &AuthzRequest,
    session: &Session,
    idp: &str,
    params: &Params,
    (resumed_after, just_consented): (Option<u64>, bool),
    ctx: &RequestCtx,
) -> Result<ConsentStep, OAuthError> {
    if v.client.consent == super::consent::ConsentPolicy::Trusted {
        return Ok(ConsentStep::Granted(None));
    }
    let sub = p
        .subject(v.client, &session.data.attrs, idp)
        .ok_or_else(|| OAuthError::server_error("the user has no subject attribute"))?;
    let forced = req.prompt.iter().any(|p| p == "consent") && !just_consented;
    let (new, allowed) = match p.check_consent(v.client, &sub, &req.scopes, forced).await? {
        super::consent::Check::Granted(c) => return Ok(ConsentStep::Granted(c)),
        super::consent::Check::Ask { new, allowed } => (new, allowed),
    };
    if req.prompt.iter().any(|p| p == "none") {
        return Err(OAuthError {
            code: "consent_required",
            ..OAuthError::invalid_request("the user has not allowed this application these scopes")
        });
    }
    let all = user_claims(&v.client.claims_mapping, &session.data.attrs, idp);
    let mut claims: Vec<String> = Vec::new();
    for member in ["id_token", "userinfo"] {
        let requested = req.claims.as_ref().and_then(|c| c.get(member));
        for name in crate::claims::oidc::released(&all, &req.scopes, requested).keys() {
            if !claims.contains(name) {
                claims.push(name.clone());
            }
        }
    }
    let ask = super::consent::Ask {
        client: v.client,
        session,
        sub: &sub,
        params,
        scopes: &req.scopes,
        new: &new,
        allowed: &allowed,
        claims,
        requested_at: resumed_after,
    };
    Ok(ConsentStep::Page(
        super::consent::show_page(p, ask, ctx).await?,
    ))
}

fn redirect_error(
    p: &Provider,
    v: &Verified<'_>,
    e: &OAuthError,
    ctx: &RequestCtx,
) -> Response<Body> {
    tracing::info!(client = %v.client.id, error = e.code, description = %e.description, "authorization request refused");
    let mut out = vec![
        ("error", e.code.to_string()),
        ("error_description", e.description.clone()),
    ];
    if let Some(s) = &v.state {
        out.push(("state", s.clone()));
    }
    out.push(("iss", p.issuer.clone()));
    respond_to_client(v, &out, ctx)
}

/// Sends the result to the client's redirect URI, by query or form post.
fn respond_to_client(
    v: &Verified<'_>,
    pairs: &[(&str, String)],
    ctx: &RequestCtx,
) -> Response<Body> {
    match v.mode {
        ResponseMode::Query => {
            let Ok(mut url) = url::Url::parse(&v.redirect_uri) else {
                return bad_request_page(ctx, "The registered redirect_uri is not a valid URL.");
            };
            url.query_pairs_mut()
                .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
            respond::redirect(StatusCode::FOUND, url.as_str(), &[], ctx)
        }
        ResponseMode::FormPost => {
            let mut inputs = String::new();
            for (k, val) in pairs {
                inputs.push_str(&format!(
                    "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                    escape(k),
                    escape(val)
                ));
            }
            // The script is the standard auto-submit; the button covers browsers without JS.
            let body = format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Continue</title></head>\
<body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{}\">{inputs}\
<noscript><button type=\"submit\">Continue</button></noscript></form></body></html>",
                escape(&v.redirect_uri)
            );
            let mut resp = Response::new(full(body));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; script-src 'unsafe-hashes' 'sha256-ePniVEkSivX/c7XWBGafqh8tSpiRrKiqYeqbG7N1TOE='; form-action *; frame-ancestors 'none'"),
            );
            resp
        }
    }
}

/// The input of an authorize-time hook: the authorization request as the browser sent it.
pub(super) fn hook_call(
    rt: &Runtime,
    client: &Client,
    headers: &http::HeaderMap,
    ctx: &RequestCtx,
    attrs: &crate::claims::Attributes,
) -> HookCall {
    // The parameters may come from a parked request: the guest sees the authorize endpoint.
    let uri: http::Uri = rt
        .provider
        .as_ref()
        .map(|p| p.endpoints.authorization.as_str())
        .unwrap_or("/")
        .parse()
        .unwrap_or_default();
    let parts = RequestParts {
        method: &http::Method::GET,
        uri: &uri,
        headers,
    };
    HookCall {
        request: guest_request(ctx, &client.app, parts, &rt.own_cookie_names(), None),
        attrs: attrs.clone(),
    }
}
