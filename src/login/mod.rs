//! The login flow the gateway runs itself, under the reserved path prefix `/.tessera/` on
//! every host:
//!
//! 1. an unauthenticated request to a protected location (`challenge`) creates a *flow*
//!    record in the store — the app, the IdPs allowed, the same-origin return path and a CSRF
//!    token — bound to the browser by a random cookie, and redirects to
//!    `/.tessera/login?flow=ID`;
//! 2. that page shows the IdP picker (several IdPs) or the sign-in form;
//! 3. the form posts back; the flow is consumed (single use), the session id is replaced
//!    and the browser returns to where it started.
//!
//! The return path is only ever a path on the same host that routes to the same app:
//! the gateway cannot be used as an open redirector. What one anonymous request may store
//! is bounded (`flows`): flows per client IP, the return URL's length, and flows are the
//! first thing the memory store evicts.

pub mod app_logout;
pub mod backchannel;
pub mod credentials;
pub mod flows;
pub mod lifetime;
pub mod throttle;
pub mod upstream;

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::connectors::Connector;
use crate::pages;
use crate::runtime::Runtime;
use crate::session::cookie::{cookie_values, CookieSpec};
use crate::session::random_token;
use crate::web::body::{Body, RequestBody};
use crate::web::rejection::{Outcome, Rejection};
use crate::web::respond::{self, RequestCtx};
use credentials::Checked;

pub const PREFIX: &str = "/.tessera/";
pub const LOGIN_PATH: &str = "/.tessera/login";
pub const LOGOUT_PATH: &str = "/.tessera/logout";
/// Cookie binding a login flow to the browser that started it.
pub const FLOW_COOKIE: &str = "tessera_login";
const FLOW_TTL: Duration = Duration::from_secs(600);
const MAX_FORM_BYTES: usize = 16 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Flow {
    app: String,
    return_to: String,
    idps: Vec<String>,
    csrf: String,
    /// SHA-256 of the browser-binding cookie.
    binding: String,
    /// Username to prefill (OIDC `login_hint`).
    #[serde(default)]
    login_hint: Option<String>,
}

fn flow_key(id: &str) -> String {
    format!("flow:{id}")
}

fn hash(s: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(s.as_bytes()))
}

/// The flow-binding cookie. Its path is `/` (not `/.tessera/`) so that the *next* login
/// redirect from any app page sees it and reuses it: otherwise a second flow (another tab,
/// or the browser's own `/favicon.ico` fetch) would replace it and break the first one.
/// It never reaches upstreams: proxy apps strip the gateway's cookies.
fn flow_cookie(rt: &Runtime) -> CookieSpec {
    CookieSpec {
        name: FLOW_COOKIE.to_string(),
        path: "/",
        ..rt.sessions.settings.cookie.clone()
    }
}

fn store_down(e: impl std::fmt::Display) -> Rejection {
    crate::telemetry::failures::failed("store", "sessions", "store failed during login", &e);
    Rejection::StoreUnavailable
}

fn expired() -> Rejection {
    Rejection::page(StatusCode::BAD_REQUEST, "This sign-in page has expired or was opened in another browser. Go back to the application and try again.")
}

/// What a sign-in needs to know of the app a request was for: login knows nothing of apps.
pub struct SignIn<'a> {
    /// The app's name (shown on the login page; the flow returns to it).
    pub app: &'a str,
    /// The IdPs the user may sign in with there.
    pub idps: Vec<String>,
    /// The same-origin path (and query) to come back to.
    pub return_to: &'a str,
}

/// An unauthenticated request hit a protected location: browsers (GET/HEAD) are sent to
/// sign in and come back to `return_to`; other requests are refused with 401 (their body
/// can't be replayed).
pub async fn challenge(
    rt: &Runtime,
    sign_in: &SignIn<'_>,
    req: &http::request::Parts,
    ctx: &RequestCtx,
) -> Result<Response<Body>, Rejection> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(Rejection::SignInFirst);
    }
    start_flow(
        rt,
        sign_in.app,
        sign_in.idps.clone(),
        sign_in.return_to,
        None,
        &req.headers,
        ctx,
    )
    .await
}

/// Starts a login for `app` with `idps`, coming back to the same-origin `return_to`; counts
/// the flow against the client IP's limit first (429 past it).
pub async fn start_flow(
    rt: &Runtime,
    app: &str,
    idps: Vec<String>,
    return_to: &str,
    login_hint: Option<&str>,
    headers: &HeaderMap,
    ctx: &RequestCtx,
) -> Outcome {
    flows::admit(rt, ctx).await?;
    start_admitted_flow(rt, app, idps, return_to, login_hint, headers, ctx).await
}

/// `start_flow` for a caller that has already counted it (`flows::admit`) — the
/// authorization endpoint, which counts before it parks the request.
pub async fn start_admitted_flow(
    rt: &Runtime,
    app: &str,
    idps: Vec<String>,
    return_to: &str,
    login_hint: Option<&str>,
    headers: &HeaderMap,
    ctx: &RequestCtx,
) -> Outcome {
    let Some(return_to) = flows::bounded_return(return_to) else {
        return Err(flows::too_long());
    };
    // Reuse the browser's binding if it has one, so several tabs can sign in at once.
    let existing = cookie_values(headers, FLOW_COOKIE)
        .find(|v| v.len() == 43)
        .map(str::to_string);
    let binding = existing.clone().unwrap_or_else(|| random_token(32));
    let flow = Flow {
        app: app.to_string(),
        return_to: return_to.to_string(),
        idps,
        csrf: random_token(32),
        binding: hash(&binding),
        login_hint: login_hint.map(|h| h.chars().take(256).collect()),
    };
    let id = random_token(24);
    let bytes = Bytes::from(serde_json::to_vec(&flow).unwrap_or_default());
    if let Err(e) = rt
        .sessions
        .store()
        .put_evictable(&flow_key(&id), bytes, FLOW_TTL)
        .await
    {
        return Err(store_down(e));
    }
    let cookies = if existing.is_some() {
        vec![]
    } else {
        vec![flow_cookie(rt).set(&binding, Some(FLOW_TTL.as_secs()))]
    };
    Ok(respond::redirect(
        StatusCode::FOUND,
        &format!("{LOGIN_PATH}?flow={id}"),
        &cookies,
        ctx,
    ))
}

/// Turns a caller-supplied return URL into a same-origin path, or `None` when it points
/// anywhere else (another host, a scheme-relative `//x`, `/\x`, control characters).
pub fn sanitize_return(rd: &str, host: &str) -> Option<String> {
    if rd.chars().any(|c| c.is_control()) {
        return None;
    }
    let path = if rd.starts_with('/') {
        rd.to_string()
    } else {
        let url = url::Url::parse(rd).ok()?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str()? != host {
            return None;
        }
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    };
    if path.starts_with("//") || path.starts_with("/\\") || path.contains('\\') {
        return None;
    }
    Some(path)
}

/// Handles everything under `/.tessera/`.
pub async fn handle(rt: &Runtime, req: Request<RequestBody>, ctx: &RequestCtx) -> Outcome {
    match (req.method().clone(), req.uri().path()) {
        (Method::GET | Method::HEAD, LOGIN_PATH) => login_page(rt, &req, ctx).await,
        (Method::POST, LOGIN_PATH) => submit(rt, req, ctx).await,
        (Method::GET | Method::HEAD | Method::POST, LOGOUT_PATH) => {
            logout(rt, req, ctx, LOGOUT_PATH, None, None).await
        }
        (_, LOGIN_PATH | LOGOUT_PATH) => Err(Rejection::page(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed here.",
        )),
        _ => Err(Rejection::page(
            StatusCode::NOT_FOUND,
            "There is no such page.",
        )),
    }
}

/// Query or form fields; a repeated field is an error (ambiguous input is refused).
fn fields(raw: &[u8]) -> Result<std::collections::HashMap<String, String>, String> {
    let mut out = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(raw) {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("parameter `{k}` is repeated"));
        }
    }
    Ok(out)
}

async fn load_flow(
    rt: &Runtime,
    id: &str,
    headers: &HeaderMap,
) -> Result<Option<Flow>, crate::store::StoreError> {
    if id.len() != 32 {
        return Ok(None);
    }
    let Some(bytes) = rt.sessions.store().get(&flow_key(id)).await? else {
        return Ok(None);
    };
    let Ok(flow) = serde_json::from_slice::<Flow>(&bytes) else {
        return Ok(None);
    };
    let bound = cookie_values(headers, FLOW_COOKIE)
        .any(|b| bool::from(hash(b).as_bytes().ct_eq(flow.binding.as_bytes())));
    Ok(bound.then_some(flow))
}

async fn login_page(rt: &Runtime, req: &Request<RequestBody>, ctx: &RequestCtx) -> Outcome {
    let q = match fields(req.uri().query().unwrap_or("").as_bytes()) {
        Ok(q) => q,
        Err(e) => return Err(Rejection::page(StatusCode::BAD_REQUEST, e)),
    };
    let Some(flow_id) = q.get("flow") else {
        return direct_login(rt, req, ctx, q.get("rd").map(String::as_str)).await;
    };
    let flow = match load_flow(rt, flow_id, req.headers()).await {
        Ok(Some(f)) => f,
        Ok(None) => return Err(expired()),
        Err(e) => return Err(store_down(e)),
    };
    let chosen = match (q.get("idp"), flow.idps.as_slice()) {
        (Some(idp), _) => idp.clone(),
        (None, [only]) => only.clone(),
        (None, idps) => {
            let choices: Vec<(String, String)> = idps
                .iter()
                .filter_map(|i| rt.connectors.get(i))
                .map(|c| {
                    (
                        c.display_name(),
                        format!("{LOGIN_PATH}?flow={flow_id}&idp={}", c.name()),
                    )
                })
                .collect();
            return Ok(respond::html(
                StatusCode::OK,
                pages::picker_page(&flow.app, &choices),
                ctx,
            ));
        }
    };
    if !flow.idps.contains(&chosen) {
        return Err(Rejection::page(
            StatusCode::BAD_REQUEST,
            "That sign-in method is not offered for this application.",
        ));
    }
    match rt.connectors.get(&chosen).map(|c| c.as_ref()) {
        Some(Connector::Oidc(idp)) => upstream::redirect_to_idp(rt, idp, flow_id, &flow, ctx).await,
        Some(_) => {
            let hint = flow.login_hint.clone().unwrap_or_default();
            form(ctx, &flow, flow_id, &chosen, &hint, None, StatusCode::OK)
        }
        None => Err(Rejection::page(
            StatusCode::BAD_REQUEST,
            "Unknown sign-in method.",
        )),
    }
}

/// `/.tessera/login?rd=...` without a flow: a "Sign in" link. The app is the one the return
/// path routes to on this host; a foreign `rd` is ignored.
async fn direct_login(
    rt: &Runtime,
    req: &Request<RequestBody>,
    ctx: &RequestCtx,
    rd: Option<&str>,
) -> Outcome {
    // Back to an app behind an ingress (forward-auth): a full URL on a host such an app
    // serves. Any other foreign URL is ignored (no open redirect).
    if let Some((return_to, app, idps)) = rd.and_then(|rd| rt.forward_auth_sign_in(rd)) {
        return start_flow(rt, app, idps, &return_to, None, req.headers(), ctx).await;
    }
    let return_to = rd
        .and_then(|rd| sanitize_return(rd, &ctx.host))
        .unwrap_or_else(|| "/".to_string());
    let path_only = return_to.split('?').next().unwrap_or("/");
    let normalized = crate::edge::path::canonicalize(path_only)
        .map(|p| p.decoded)
        .unwrap_or_else(|_| "/".to_string());
    let host_port = ctx
        .host_header
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .unwrap_or(&ctx.host)
        .to_ascii_lowercase();
    let Some((app, idps)) = rt.sign_in_at(&ctx.host, &host_port, &normalized) else {
        return Err(Rejection::page(
            StatusCode::NOT_FOUND,
            "No application is served here.",
        ));
    };
    start_flow(rt, app, idps, &return_to, None, req.headers(), ctx).await
}

#[allow(clippy::too_many_arguments)]
fn form(
    ctx: &RequestCtx,
    flow: &Flow,
    flow_id: &str,
    idp: &str,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Outcome {
    Ok(respond::html(
        status,
        pages::login_page(&pages::LoginForm {
            app: &flow.app,
            flow: flow_id,
            csrf: &flow.csrf,
            idp,
            username,
            error,
            action: LOGIN_PATH,
        }),
        ctx,
    ))
}

async fn read_form(
    req: Request<RequestBody>,
) -> Result<(HeaderMap, std::collections::HashMap<String, String>), Rejection> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
        .unwrap_or(false);
    if !is_form {
        return Err(Rejection::page(
            StatusCode::BAD_REQUEST,
            "The sign-in form must be sent as application/x-www-form-urlencoded.",
        ));
    }
    use crate::web::body::{read_limited, ReadError};
    let (parts, bytes) = match read_limited(req, MAX_FORM_BYTES).await {
        Ok(x) => x,
        Err(e) => {
            let message = match e {
                ReadError::TooLarge => "The sign-in form is too large.",
                ReadError::TimedOut => {
                    "The sign-in form took too long to arrive. Please try again."
                }
                ReadError::Incomplete => "The sign-in form was cut off. Please try again.",
            };
            return Err(Rejection::page(e.status(), message));
        }
    };
    match fields(&bytes) {
        Ok(f) => Ok((parts.headers, f)),
        Err(e) => Err(Rejection::page(StatusCode::BAD_REQUEST, e)),
    }
}

async fn submit(rt: &Runtime, req: Request<RequestBody>, ctx: &RequestCtx) -> Outcome {
    let (headers, f) = read_form(req).await?;
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let (flow_id, idp, username, password) =
        (get("flow"), get("idp"), get("username"), get("password"));
    let flow = match load_flow(rt, flow_id, &headers).await {
        Ok(Some(f)) => f,
        Ok(None) => return Err(expired()),
        Err(e) => return Err(store_down(e)),
    };
    if !bool::from(get("csrf").as_bytes().ct_eq(flow.csrf.as_bytes())) {
        tracing::warn!("login form with a wrong CSRF token refused");
        return Err(expired());
    }
    if !flow.idps.iter().any(|i| i == idp) {
        return Err(Rejection::page(
            StatusCode::BAD_REQUEST,
            "That sign-in method is not offered for this application.",
        ));
    }
    let unknown_method = || Rejection::page(StatusCode::BAD_REQUEST, "Unknown sign-in method.");
    if !matches!(
        rt.connectors.get(idp).map(|c| c.as_ref()),
        Some(Connector::Local(_) | Connector::Ldap(_))
    ) {
        return Err(unknown_method());
    }
    if username.is_empty() || password.is_empty() || username.len() > 256 || password.len() > 1024 {
        return form(
            ctx,
            &flow,
            flow_id,
            idp,
            "",
            Some("Enter your username and password."),
            StatusCode::BAD_REQUEST,
        );
    }
    let ip = ctx.client_ip;
    let attrs = match credentials::check(rt, idp, username, password, ip)
        .await
        .map_err(store_down)?
    {
        Checked::Verified(attrs) => attrs,
        Checked::NotAPasswordConnector => return Err(unknown_method()),
        Checked::DirectoryDown(e) => {
            // Not the user's fault: no throttling count, the flow stays usable for a retry.
            rt.metrics.login(idp, "error");
            tracing::error!(idp, user = username, error = %e, "login failed: directory unavailable");
            let msg = "The directory is not reachable right now, so your password cannot be checked. Please try again shortly.";
            return form(
                ctx,
                &flow,
                flow_id,
                idp,
                username,
                Some(msg),
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
        Checked::Throttled { retry_after } => {
            rt.metrics.login(idp, "throttled");
            tracing::warn!(idp, user = username, client_ip = %ip, "login refused: too many failed attempts");
            let mut resp = form(
                ctx,
                &flow,
                flow_id,
                idp,
                username,
                Some("Too many failed attempts. Wait a few minutes, then try again."),
                StatusCode::TOO_MANY_REQUESTS,
            )?;
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                http::HeaderValue::from(retry_after.as_secs()),
            );
            return Ok(resp);
        }
        Checked::Wrong(reservation) => {
            rt.metrics.login(idp, "failure");
            tracing::warn!(idp, user = username, client_ip = %ip, "login failed: wrong username or password");
            tokio::time::sleep(reservation.failed()).await;
            return form(
                ctx,
                &flow,
                flow_id,
                idp,
                username,
                Some("The username or password is not correct."),
                StatusCode::UNAUTHORIZED,
            );
        }
    };
    tracing::info!(idp, user = username, "password verified");
    upstream::finish_login(rt, idp, attrs, None, None, flow_id, &flow, &headers, ctx).await
}

/// Sign-out at `/.tessera/logout` or an app's `logout.location` (`action`, where the
/// confirmation form posts back to). A GET only shows the confirmation page: a link, an
/// image or a cross-site navigation must not end a session. A POST ends it when it carries
/// the session's CSRF token (which only that page has), and is refused with 403 otherwise.
/// Without a session there is nothing to protect: the browser is shown the signed-out page
/// (or sent to `redirect`) directly.
pub async fn logout(
    rt: &Runtime,
    req: Request<RequestBody>,
    ctx: &RequestCtx,
    action: &str,
    redirect: Option<&str>,
    app_logout: Option<(&str, &str)>,
) -> Outcome {
    // The app's own logout URL, with the browser's cookies for the app (`logout.upstreamURL`):
    // called only once the session has really ended.
    let app_call = app_logout.map(|(app, url)| {
        app_logout::AppLogoutCall::new(app, url, req.headers(), &rt.own_cookie_names())
    });
    let session = match rt.sessions.load(req.headers()).await {
        Ok(s) => s,
        Err(e) => return Err(store_down(e)),
    };
    let Some(session) = session else {
        return end_session(rt, None, ctx, redirect, StatusCode::FOUND).await;
    };
    match *req.method() {
        Method::GET | Method::HEAD => {
            let csrf = session.csrf_token();
            let page = pages::logout_confirm_page(&pages::LogoutForm {
                action,
                csrf: &csrf,
                app: None,
                fields: &[],
            });
            Ok(respond::html(StatusCode::OK, page, ctx))
        }
        Method::POST => {
            // A body that is not a form (or too large) carries no token: refused like one
            // with a wrong token.
            let confirmed = match read_form(req).await {
                Ok((_, f)) => session.csrf_matches(f.get("csrf").map(String::as_str)),
                Err(_) => false,
            };
            if !confirmed {
                tracing::warn!("sign-out without the confirmation page's CSRF token refused");
                return Err(logout_refused());
            }
            let ended = end_session(rt, Some(&session), ctx, redirect, StatusCode::SEE_OTHER).await;
            if let (Ok(_), Some(call)) = (&ended, app_call) {
                call.spawn(rt.metrics.clone());
            }
            ended
        }
        _ => Err(Rejection::page(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed here.",
        )),
    }
}

/// 403 for a sign-out POST that did not come from the confirmation page.
pub fn logout_refused() -> Rejection {
    Rejection::page(StatusCode::FORBIDDEN, "This sign-out request did not come from the sign-out page, so you are still signed in. Open the sign-out page again and confirm there.")
}

/// Ends `session` server-side and clears the cookie; then goes to the IdP's logout (when
/// the session came from an OIDC IdP that supports it), to `redirect` (app logout) or shows
/// the signed-out page. `status` is the redirect status (303 after a POST).
async fn end_session(
    rt: &Runtime,
    session: Option<&crate::session::Session>,
    ctx: &RequestCtx,
    redirect: Option<&str>,
    status: StatusCode,
) -> Outcome {
    let ended = match rt.sessions.end(session).await {
        Ok(e) => e,
        Err(e) => return Err(store_down(e)),
    };
    let clear = ended.clear;
    if session.is_some() {
        tracing::info!("logout");
    }
    let idp_url = session.and_then(|s| upstream::idp_logout_url(rt, s));
    // Apps told by front-channel logout: a page loads them, then goes on.
    if !ended.frames.is_empty() {
        let next = idp_url.as_deref().or(redirect);
        let page = pages::signed_out_page(&ended.frames, next);
        let mut resp = respond::html_with_frames(StatusCode::OK, page, ctx, &ended.frames);
        respond::add_cookies(&mut resp, &[clear]);
        return Ok(resp);
    }
    if let Some(idp_url) = idp_url {
        return Ok(respond::redirect(status, &idp_url, &[clear], ctx));
    }
    match redirect {
        Some(to) => Ok(respond::redirect(status, to, &[clear], ctx)),
        None => {
            let mut resp = respond::html(StatusCode::OK, pages::logged_out_page(), ctx);
            respond::add_cookies(&mut resp, &[clear]);
            Ok(resp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{fields, sanitize_return};
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    }

    /// Keys and values with the characters the encoding must carry (`&`, `=`, `+`, `%`,
    /// spaces, newlines, NUL, non-ASCII); empty values included.
    fn text(min: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!(r"(.|[&=+% \n\r\x00]){{{min},24}}")).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// The login and logout forms' parser never panics, whatever the bytes.
        #[test]
        fn form_fields_never_panic(raw in vec(any::<u8>(), 0..512)) {
            let _ = fields(&raw);
        }

        /// Serialising a map and parsing it back yields the same map (empty values too: the
        /// login form keeps them, unlike the OAuth parameters).
        #[test]
        fn form_fields_round_trip(map in btree_map(text(1), text(0), 0..8)) {
            let raw = encode(map.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let parsed: BTreeMap<String, String> =
                fields(raw.as_bytes()).map_err(TestCaseError::fail)?.into_iter().collect();
            prop_assert_eq!(parsed, map);
        }

        /// A field given twice is refused, wherever the copies are and whatever their values
        /// (a second `csrf` or `username` must never pick which one counts).
        #[test]
        fn repeated_form_field_is_refused(
            map in btree_map(text(1), text(0), 1..6),
            pick in any::<prop::sample::Index>(),
            other in text(0),
            at in any::<prop::sample::Index>(),
        ) {
            let keys: Vec<&String> = map.keys().collect();
            let key = keys[pick.index(keys.len())].as_str();
            let mut pairs: Vec<(&str, &str)> =
                map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            pairs.insert(at.index(pairs.len() + 1), (key, other.as_str()));
            let err = fields(encode(pairs).as_bytes()).unwrap_err();
            prop_assert!(err.contains("is repeated"), "{}", err);
        }
    }

    #[test]
    fn return_urls_stay_on_this_host() {
        assert_eq!(sanitize_return("/a?b=1", "h").as_deref(), Some("/a?b=1"));
        assert_eq!(
            sanitize_return("https://h/x?y", "h").as_deref(),
            Some("/x?y")
        );
        assert_eq!(sanitize_return("https://evil.com/x", "h"), None);
        assert_eq!(sanitize_return("//evil.com/x", "h"), None);
        assert_eq!(sanitize_return("/\\evil.com", "h"), None);
        assert_eq!(sanitize_return("javascript:alert(1)", "h"), None);
        assert_eq!(sanitize_return("/x\r\nSet-Cookie: a", "h"), None);
    }
}
