//! The one way a request is refused. Every phase of the request path returns
//! `Result<_, Rejection>`; the refusal's page (or redirect, or the answer a login or an
//! extension built) and its access-log decision are decided here, in one place.
//!
//! The OpenID provider's protocol errors (JSON bodies and error redirects that RFC 6749 and
//! OIDC Core define) are a different audience and stay in `provider::errors`.

use std::borrow::Cow;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::body::Body;
use super::respond::{self, RequestCtx};
use crate::telemetry::access::Decision;

/// Why a request does not reach what it asked for.
#[derive(Debug)]
pub enum Rejection {
    /// Malformed input (path, header, cookie, form): 400.
    BadRequest(Cow<'static, str>),
    /// No app is served at this host and path: 404.
    NoRoute,
    /// No access policy of the app covers the path: 403 (closed by default).
    NoPolicy,
    /// Signed in, but the policy's rules (or its IsAuthorized hook) say no: 403, or a redirect
    /// to the app's `unauthorizedPage`.
    NotAllowed { unauthorized_page: Option<String> },
    /// A refusal answered with the app's own page (`unauthorizedPage` or `errorPage` given as
    /// a file or inline HTML) instead of the gateway's: the refusal's status and decision.
    OwnPage {
        status: StatusCode,
        page: std::sync::Arc<str>,
        decision: Decision,
    },
    /// Not signed in: the login challenge that `login` built (a redirect to the IdP, the
    /// picker, or the login form).
    LoginRequired(Box<Response<Body>>),
    /// Not signed in, and the request can't be sent to sign in (not a GET or HEAD: its body
    /// could not be replayed): 401.
    SignInFirst,
    /// An Authenticate extension answered the request itself.
    ExtensionAnswered(Box<Response<Body>>),
    /// An extension call failed: 500. Fail closed: never the page itself.
    ExtensionFailed,
    /// The session store failed: 503.
    StoreUnavailable,
    /// The directory an attribute check needs is not reachable: 503.
    DirectoryUnavailable,
    /// The upstream IdP could not renew the user's sign-in: 502.
    RenewalFailed,
    /// The app's upstream failed: 502 (unreachable, bad answer) or 504 (timed out).
    Upstream(StatusCode),
    /// Too many of something from one client: 429 with `Retry-After` (seconds).
    TooMany {
        message: &'static str,
        retry_after_secs: u64,
    },
    /// A request that carries (or on a bearer-only policy, lacks) an `Authorization: Bearer`
    /// token refused as RFC 6750 section 3 says: a `WWW-Authenticate: Bearer` challenge,
    /// never a redirect to a sign-in page. `realm` is the app's name.
    Bearer {
        realm: String,
        problem: BearerProblem,
    },
    /// A refusal of the gateway's own pages (login, logout, callbacks) with its own status,
    /// text and decision.
    Page {
        status: StatusCode,
        message: Cow<'static, str>,
        decision: Decision,
    },
    /// A refusal of an `apis[]` endpoint: a JSON error (its callers are programs), never a
    /// page or a sign-in redirect.
    Api(ApiProblem),
}

/// Why an `apis[]` endpoint did not call its extension, or could not use its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiProblem {
    /// The api does not answer this method: 405 with `Allow` (the methods it answers).
    MethodNotAllowed(HeaderValue),
    /// The request body could not be read whole within the api's limit: 413, 408 or 400.
    Body(super::body::ReadError),
    /// The api needs a signed-in session and the request has none: 401.
    SignInRequired,
    /// The session store failed: 503.
    StoreUnavailable,
    /// The Serve call failed (trap, deadline, memory, invalid answer): 500.
    ServeFailed,
}

impl ApiProblem {
    fn status(&self) -> StatusCode {
        match self {
            ApiProblem::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiProblem::Body(e) => e.status(),
            ApiProblem::SignInRequired => StatusCode::UNAUTHORIZED,
            ApiProblem::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiProblem::ServeFailed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON error code and sentence (texts of the gateway's own).
    fn error(&self) -> (&'static str, &'static str) {
        match self {
            ApiProblem::MethodNotAllowed(_) => (
                "method_not_allowed",
                "this endpoint does not answer this method",
            ),
            ApiProblem::Body(e) => (
                match e {
                    super::body::ReadError::TooLarge => "body_too_large",
                    super::body::ReadError::TimedOut => "body_timeout",
                    super::body::ReadError::Incomplete => "body_incomplete",
                },
                e.message(),
            ),
            ApiProblem::SignInRequired => (
                "sign_in_required",
                "this endpoint needs a signed-in session",
            ),
            ApiProblem::StoreUnavailable => (
                "temporarily_unavailable",
                "sessions cannot be read right now; try again shortly",
            ),
            ApiProblem::ServeFailed => {
                ("server_error", "the endpoint could not compute its answer")
            }
        }
    }

    fn decision(&self) -> Decision {
        match self {
            ApiProblem::MethodNotAllowed(_) | ApiProblem::Body(_) => Decision::Invalid,
            ApiProblem::SignInRequired => Decision::LoginRequired,
            ApiProblem::StoreUnavailable | ApiProblem::ServeFailed => Decision::Error,
        }
    }
}

/// What is wrong with a bearer request (RFC 6750 section 3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerProblem {
    /// No token on a location only a token opens: 401, a challenge without an error code.
    Missing,
    /// The `Authorization` header is not one well-formed bearer token: 400 `invalid_request`.
    Malformed(&'static str),
    /// The token is expired, revoked, forged, or not meant for this location: 401
    /// `invalid_token`, with why (text of the gateway's own, never the token's).
    Invalid(&'static str),
    /// The token is valid but does not grant enough: 403 `insufficient_scope`, with the scopes
    /// the location requires when it names some.
    InsufficientScope(Option<String>),
}

impl BearerProblem {
    /// The `WWW-Authenticate` value. Every text in it is the gateway's own: `realm` is an app
    /// name, descriptions are constants, scopes are configured tokens (quotes and
    /// backslashes are dropped all the same, so a quoted-string can never be broken).
    pub fn challenge(&self, realm: &str) -> String {
        let q = |s: &str| s.replace(['"', '\\'], "");
        let mut out = format!("Bearer realm=\"{}\"", q(realm));
        let (code, detail) = match self {
            BearerProblem::Missing => return out,
            BearerProblem::Malformed(d) => ("invalid_request", Some(("error_description", *d))),
            BearerProblem::Invalid(d) => ("invalid_token", Some(("error_description", *d))),
            BearerProblem::InsufficientScope(s) => {
                ("insufficient_scope", s.as_deref().map(|s| ("scope", s)))
            }
        };
        out.push_str(&format!(", error=\"{code}\""));
        if let Some((k, v)) = detail {
            out.push_str(&format!(", {k}=\"{}\"", q(v)));
        }
        out
    }

    fn status(&self) -> StatusCode {
        match self {
            BearerProblem::Missing | BearerProblem::Invalid(_) => StatusCode::UNAUTHORIZED,
            BearerProblem::Malformed(_) => StatusCode::BAD_REQUEST,
            BearerProblem::InsufficientScope(_) => StatusCode::FORBIDDEN,
        }
    }
}

impl Rejection {
    /// A gateway page's refusal: `decision` is what the access line says.
    pub fn page(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Rejection::Page {
            status,
            message: message.into(),
            decision: Decision::Gateway,
        }
    }

    /// A refusal shown as a page by an endpoint whose protocol has no other way to answer
    /// (the provider's authorize and end-session pages when the client can't be redirected
    /// to): decided `invalid` for a client error, `error` for a server one.
    pub fn refused_page(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Rejection::Page {
            status,
            message: message.into(),
            decision: if status.is_server_error() {
                Decision::Error
            } else {
                Decision::Invalid
            },
        }
    }

    /// One of the gateway's own failures on the request path (5xx): what an app's
    /// `errorPage` replaces. Not an answer someone else built (a login challenge, an
    /// extension's response).
    pub fn is_gateway_failure(&self) -> bool {
        matches!(
            self,
            Rejection::ExtensionFailed
                | Rejection::StoreUnavailable
                | Rejection::DirectoryUnavailable
                | Rejection::RenewalFailed
                | Rejection::Upstream(_)
        )
    }

    /// What the access log line says of this refusal.
    pub fn decision(&self) -> Decision {
        match self {
            Rejection::BadRequest(_) => Decision::Invalid,
            Rejection::NoRoute => Decision::NoRoute,
            Rejection::NoPolicy | Rejection::NotAllowed { .. } => Decision::Denied,
            Rejection::ExtensionAnswered(_) => Decision::Denied,
            Rejection::LoginRequired(_) | Rejection::SignInFirst => Decision::LoginRequired,
            Rejection::ExtensionFailed
            | Rejection::StoreUnavailable
            | Rejection::DirectoryUnavailable
            | Rejection::RenewalFailed
            | Rejection::Upstream(_) => Decision::Error,
            Rejection::TooMany { .. } => Decision::Denied,
            Rejection::Bearer { problem, .. } => match problem {
                BearerProblem::Missing => Decision::LoginRequired,
                BearerProblem::Malformed(_) => Decision::Invalid,
                BearerProblem::Invalid(_) | BearerProblem::InsufficientScope(_) => Decision::Denied,
            },
            Rejection::Page { decision, .. } | Rejection::OwnPage { decision, .. } => *decision,
            Rejection::Api(problem) => problem.decision(),
        }
    }

    /// The status the client gets (of a prebuilt answer: its own).
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::BadRequest(_) => StatusCode::BAD_REQUEST,
            Rejection::NoRoute => StatusCode::NOT_FOUND,
            Rejection::NoPolicy => StatusCode::FORBIDDEN,
            Rejection::NotAllowed {
                unauthorized_page: Some(_),
            } => StatusCode::FOUND,
            Rejection::NotAllowed { .. } => StatusCode::FORBIDDEN,
            Rejection::LoginRequired(r) | Rejection::ExtensionAnswered(r) => r.status(),
            Rejection::SignInFirst => StatusCode::UNAUTHORIZED,
            Rejection::ExtensionFailed => StatusCode::INTERNAL_SERVER_ERROR,
            Rejection::StoreUnavailable | Rejection::DirectoryUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Rejection::RenewalFailed => StatusCode::BAD_GATEWAY,
            Rejection::Upstream(s) => *s,
            Rejection::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            Rejection::Bearer { problem, .. } => problem.status(),
            Rejection::Page { status, .. } | Rejection::OwnPage { status, .. } => *status,
            Rejection::Api(problem) => problem.status(),
        }
    }

    fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Rejection::BadRequest(m) => return Cow::Owned(format!("Bad request: {m}.")),
            Rejection::Page { message, .. } => return message.clone(),
            Rejection::NoRoute => "No application is served at this address.",
            Rejection::NoPolicy => "No access policy covers this page, so it is closed.",
            Rejection::NotAllowed { .. } => {
                "You are signed in, but you are not allowed to open this page."
            }
            Rejection::SignInFirst => "Sign in first, then repeat this request.",
            Rejection::ExtensionFailed => {
                "A check this page requires could not be completed. Please try again later."
            }
            Rejection::StoreUnavailable => {
                "Sign-in is temporarily unavailable. Please try again shortly."
            }
            Rejection::DirectoryUnavailable => {
                "The directory is not reachable right now, so your access cannot be checked. Please try again shortly."
            }
            Rejection::RenewalFailed => {
                "Your sign-in could not be renewed right now. Please try again in a moment."
            }
            Rejection::Upstream(StatusCode::GATEWAY_TIMEOUT) => {
                "The application did not answer in time."
            }
            Rejection::Upstream(_) => "The application is not reachable right now.",
            Rejection::TooMany { message, .. } => message,
            Rejection::Bearer { problem, .. } => match problem {
                BearerProblem::Missing => "This location needs an access token.",
                BearerProblem::Malformed(_) => "The Authorization header is malformed.",
                BearerProblem::Invalid(_) => "The access token is not valid here.",
                BearerProblem::InsufficientScope(_) => {
                    "The access token does not grant access to this location."
                }
            },
            Rejection::Api(problem) => problem.error().1,
            Rejection::LoginRequired(_)
            | Rejection::ExtensionAnswered(_)
            | Rejection::OwnPage { .. } => "",
        })
    }

    /// Notes the decision for the access line and renders the answer.
    pub fn answer(self, ctx: &RequestCtx) -> Response<Body> {
        ctx.access.decide(self.decision());
        let status = self.status();
        match self {
            Rejection::LoginRequired(resp) | Rejection::ExtensionAnswered(resp) => *resp,
            Rejection::NotAllowed {
                unauthorized_page: Some(page),
            } => respond::redirect(StatusCode::FOUND, &page, &[], ctx),
            Rejection::OwnPage { page, .. } => {
                // The request id is a short plain token (see `server::service`); escaped all
                // the same, as anything put into HTML.
                let id = crate::pages::escape(&ctx.request_id);
                respond::html(status, page.replace("{{ requestId }}", &id), ctx)
            }
            Rejection::TooMany {
                retry_after_secs, ..
            } => {
                let mut resp = respond::error(status, &self.message(), ctx);
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                resp
            }
            Rejection::Bearer {
                ref realm,
                ref problem,
            } => {
                let mut resp = respond::error(status, &self.message(), ctx);
                // The challenge is built of the gateway's own texts (see `challenge`).
                if let Ok(v) = HeaderValue::from_str(&problem.challenge(realm)) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                resp
            }
            Rejection::Api(problem) => {
                let (error, message) = problem.error();
                let body = serde_json::json!({ "error": error, "message": message });
                let mut resp = respond::json(status, body.to_string());
                if let ApiProblem::MethodNotAllowed(allow) = problem {
                    resp.headers_mut().insert(header::ALLOW, allow);
                }
                resp
            }
            other => respond::error(status, &other.message(), ctx),
        }
    }
}

/// A handler's outcome: its answer, or why not.
pub type Outcome = Result<Response<Body>, Rejection>;

/// The response of an outcome (a rejection rendered, its decision noted).
pub fn settle(outcome: Outcome, ctx: &RequestCtx) -> Response<Body> {
    outcome.unwrap_or_else(|r| r.answer(ctx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::access::AccessNote;
    use http_body_util::BodyExt;

    fn ctx() -> RequestCtx {
        RequestCtx {
            request_id: "rid-1".into(),
            peer: "127.0.0.1:1".parse().unwrap(),
            client_ip: "127.0.0.1".parse().unwrap(),
            forwarded_for: None,
            scheme: "http",
            host: "h".into(),
            host_header: None,
            access: AccessNote::default(),
        }
    }

    async fn text(r: Response<Body>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn every_refusal_renders_its_status_page_and_decision() {
        let cases: Vec<(Rejection, u16, &str, Decision)> = vec![
            (
                Rejection::BadRequest("encoded slash".into()),
                400,
                "Bad request: encoded slash.",
                Decision::Invalid,
            ),
            (
                Rejection::NoRoute,
                404,
                "No application is served",
                Decision::NoRoute,
            ),
            (
                Rejection::NoPolicy,
                403,
                "No access policy covers",
                Decision::Denied,
            ),
            (
                Rejection::NotAllowed {
                    unauthorized_page: None,
                },
                403,
                "not allowed to open",
                Decision::Denied,
            ),
            (
                Rejection::SignInFirst,
                401,
                "Sign in first",
                Decision::LoginRequired,
            ),
            (
                Rejection::ExtensionFailed,
                500,
                "could not be completed",
                Decision::Error,
            ),
            (
                Rejection::StoreUnavailable,
                503,
                "temporarily unavailable",
                Decision::Error,
            ),
            (
                Rejection::DirectoryUnavailable,
                503,
                "directory is not reachable",
                Decision::Error,
            ),
            (
                Rejection::RenewalFailed,
                502,
                "could not be renewed",
                Decision::Error,
            ),
            (
                Rejection::Upstream(StatusCode::GATEWAY_TIMEOUT),
                504,
                "did not answer in time",
                Decision::Error,
            ),
            (
                Rejection::Upstream(StatusCode::BAD_GATEWAY),
                502,
                "not reachable right now",
                Decision::Error,
            ),
            (
                Rejection::page(StatusCode::GONE, "This page is gone."),
                410,
                "This page is gone.",
                Decision::Gateway,
            ),
        ];
        for (rejection, status, text_part, decision) in cases {
            let c = ctx();
            let what = format!("{rejection:?}");
            let resp = rejection.answer(&c);
            assert_eq!(resp.status().as_u16(), status, "{what}");
            assert_eq!(c.access.decision(), decision, "{what}");
            assert_eq!(resp.headers()["x-request-id"], "rid-1", "{what}");
            let body = text(resp).await;
            assert!(body.contains(text_part), "{what}: {body}");
            assert!(
                body.contains("rid-1"),
                "{what}: the page carries the request id"
            );
        }
    }

    #[tokio::test]
    async fn api_refusals_are_json_with_their_status_and_decision() {
        use super::super::body::ReadError;
        let cases: Vec<(ApiProblem, u16, &str, Decision)> = vec![
            (
                ApiProblem::MethodNotAllowed(HeaderValue::from_static("GET, HEAD")),
                405,
                r#"{"error":"method_not_allowed","message":"this endpoint does not answer this method"}"#,
                Decision::Invalid,
            ),
            (
                ApiProblem::Body(ReadError::TooLarge),
                413,
                r#"{"error":"body_too_large","message":"the request body is too large"}"#,
                Decision::Invalid,
            ),
            (
                ApiProblem::Body(ReadError::TimedOut),
                408,
                r#"{"error":"body_timeout","message":"the request body did not arrive in time"}"#,
                Decision::Invalid,
            ),
            (
                ApiProblem::SignInRequired,
                401,
                r#"{"error":"sign_in_required","message":"this endpoint needs a signed-in session"}"#,
                Decision::LoginRequired,
            ),
            (
                ApiProblem::StoreUnavailable,
                503,
                r#"{"error":"temporarily_unavailable","message":"sessions cannot be read right now; try again shortly"}"#,
                Decision::Error,
            ),
            (
                ApiProblem::ServeFailed,
                500,
                r#"{"error":"server_error","message":"the endpoint could not compute its answer"}"#,
                Decision::Error,
            ),
        ];
        for (problem, status, json, decision) in cases {
            let c = ctx();
            let what = format!("{problem:?}");
            let allow = matches!(problem, ApiProblem::MethodNotAllowed(_));
            let resp = Rejection::Api(problem).answer(&c);
            assert_eq!(resp.status().as_u16(), status, "{what}");
            assert_eq!(c.access.decision(), decision, "{what}");
            assert_eq!(resp.headers()["content-type"], "application/json", "{what}");
            assert_eq!(
                resp.headers().get("allow").map(|v| v.to_str().unwrap()),
                allow.then_some("GET, HEAD"),
                "{what}"
            );
            assert_eq!(text(resp).await, json, "{what}");
        }
    }

    #[tokio::test]
    async fn an_unauthorized_page_is_a_redirect_and_too_many_says_when_to_retry() {
        let c = ctx();
        let resp = Rejection::NotAllowed {
            unauthorized_page: Some("/denied.html".into()),
        }
        .answer(&c);
        assert_eq!(resp.status(), 302);
        assert_eq!(resp.headers()["location"], "/denied.html");
        assert_eq!(c.access.decision(), Decision::Denied);

        let c = ctx();
        let resp = Rejection::TooMany {
            message: "Slow down.",
            retry_after_secs: 60,
        }
        .answer(&c);
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "60");
        assert!(text(resp).await.contains("Slow down."));
    }

    #[tokio::test]
    async fn a_prebuilt_answer_passes_through_with_its_decision() {
        let c = ctx();
        let built = respond::redirect(StatusCode::FOUND, "/.tessera/login", &[], &c);
        let r = Rejection::LoginRequired(Box::new(built));
        assert_eq!(r.status(), 302);
        let resp = r.answer(&c);
        assert_eq!(resp.headers()["location"], "/.tessera/login");
        assert_eq!(c.access.decision(), Decision::LoginRequired);
    }

    #[tokio::test]
    async fn a_bearer_refusal_is_an_rfc6750_challenge_never_a_redirect() {
        let cases: Vec<(BearerProblem, u16, &str, Decision)> = vec![
            (
                BearerProblem::Missing,
                401,
                r#"Bearer realm="orders""#,
                Decision::LoginRequired,
            ),
            (
                BearerProblem::Malformed("send one bearer token"),
                400,
                r#"Bearer realm="orders", error="invalid_request", error_description="send one bearer token""#,
                Decision::Invalid,
            ),
            (
                BearerProblem::Invalid("the token expired"),
                401,
                r#"Bearer realm="orders", error="invalid_token", error_description="the token expired""#,
                Decision::Denied,
            ),
            (
                BearerProblem::InsufficientScope(Some("orders.read orders.write".into())),
                403,
                r#"Bearer realm="orders", error="insufficient_scope", scope="orders.read orders.write""#,
                Decision::Denied,
            ),
            (
                BearerProblem::InsufficientScope(None),
                403,
                r#"Bearer realm="orders", error="insufficient_scope""#,
                Decision::Denied,
            ),
        ];
        for (problem, status, challenge, decision) in cases {
            let c = ctx();
            let what = format!("{problem:?}");
            let resp = Rejection::Bearer {
                realm: "orders".into(),
                problem,
            }
            .answer(&c);
            assert_eq!(resp.status().as_u16(), status, "{what}");
            assert_eq!(resp.headers()["www-authenticate"], challenge, "{what}");
            assert!(resp.headers().get("location").is_none(), "{what}");
            assert_eq!(c.access.decision(), decision, "{what}");
            assert!(text(resp).await.contains("rid-1"), "{what}");
        }
    }

    #[test]
    fn a_challenge_cannot_be_broken_out_of_its_quoted_strings() {
        let v =
            BearerProblem::InsufficientScope(Some(r#"a" error="x\"#.into())).challenge(r#"ap"p\"#);
        assert_eq!(
            v,
            r#"Bearer realm="app", error="insufficient_scope", scope="a error=x""#
        );
    }
}
