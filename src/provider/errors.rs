//! OAuth 2.0 errors (RFC 6749 5.2, RFC 6750 3, RFC 7009, RFC 8707) and their responses.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::web::body::{full, Body};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
    pub status: StatusCode,
    /// `WWW-Authenticate` challenge to send (401 for HTTP Basic client auth, Bearer errors).
    pub challenge: Option<String>,
    /// Seconds for `Retry-After` (a limit was reached).
    pub retry_after: Option<u64>,
    /// Which limit refused the request (for metrics).
    pub limit: Option<Limit>,
}

/// The limits that refuse token requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The client's `rateLimit` bucket is empty (429).
    ClientRate,
    /// The provider's token state budget is full (503).
    StateBudget,
}

impl Limit {
    pub fn label(self) -> &'static str {
        match self {
            Self::ClientRate => "client_rate",
            Self::StateBudget => "state_budget",
        }
    }
}

impl OAuthError {
    fn new(code: &'static str, status: StatusCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            status,
            challenge: None,
            retry_after: None,
            limit: None,
        }
    }
    /// The client's rate limit is reached: 429, `Retry-After` (RFC 6585 4).
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = Self::new(
            "temporarily_unavailable",
            StatusCode::TOO_MANY_REQUESTS,
            "this client sends token requests faster than its rate limit; try again later",
        );
        e.retry_after = Some(retry_after);
        e.limit = Some(Limit::ClientRate);
        e
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new("invalid_request", StatusCode::BAD_REQUEST, d)
    }
    pub fn invalid_client(d: impl Into<String>, basic: bool) -> Self {
        let mut e = Self::new("invalid_client", StatusCode::UNAUTHORIZED, d);
        if basic {
            e.challenge = Some("Basic realm=\"tessera\"".into());
        }
        e
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", StatusCode::BAD_REQUEST, d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new("unauthorized_client", StatusCode::BAD_REQUEST, d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new("unsupported_grant_type", StatusCode::BAD_REQUEST, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new("invalid_scope", StatusCode::BAD_REQUEST, d)
    }
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new("invalid_target", StatusCode::BAD_REQUEST, d)
    }
    pub fn unsupported_response_type(d: impl Into<String>) -> Self {
        Self::new("unsupported_response_type", StatusCode::BAD_REQUEST, d)
    }
    pub fn login_required(d: impl Into<String>) -> Self {
        Self::new("login_required", StatusCode::BAD_REQUEST, d)
    }
    pub fn server_error(d: impl Into<String>) -> Self {
        Self::new("server_error", StatusCode::INTERNAL_SERVER_ERROR, d)
    }
    pub fn temporarily_unavailable(d: impl Into<String>) -> Self {
        Self::new(
            "temporarily_unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            d,
        )
    }
    /// A bad, expired or revoked bearer token (RFC 6750 3.1).
    pub fn invalid_token(d: impl Into<String>) -> Self {
        let d = d.into();
        let mut e = Self::new("invalid_token", StatusCode::UNAUTHORIZED, d.clone());
        e.challenge = Some(format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            d.replace('"', "'")
        ));
        e
    }
    /// No bearer token at all: a bare challenge (RFC 6750 3.1).
    pub fn missing_token() -> Self {
        let mut e = Self::new(
            "invalid_request",
            StatusCode::UNAUTHORIZED,
            "a bearer token is required",
        );
        e.challenge = Some("Bearer realm=\"tessera\"".into());
        e
    }

    /// The JSON error response.
    pub fn response(&self) -> Response<Body> {
        let body = serde_json::json!({"error": self.code, "error_description": self.description});
        let mut resp = Response::new(full(body.to_string()));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(c) = &self.challenge {
            if let Ok(v) = HeaderValue::from_str(c) {
                h.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        resp
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store failed in the OIDC provider");
        Self::temporarily_unavailable("the provider's state store is unavailable")
    }
}

/// A JSON success response that must not be cached (RFC 6749 5.1).
pub fn json_no_store(value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}
