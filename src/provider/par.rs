//! Pushed Authorization Requests (RFC 9126). An authenticated client POSTs the parameters of
//! an authorization request; they are validated as the authorization endpoint would (errors
//! as OAuth JSON, section 2.3), kept in the provider's store under a random reference and
//! answered `201 {request_uri, expires_in}`. The authorization endpoint then takes
//! `client_id` + `request_uri` instead of the parameters: the reference is single use, ends
//! after `lifetimeSeconds`, and only the client that pushed it may use it.
//!
//! What a client may make the provider keep is bounded: only clients that authenticate may
//! push (public clients cannot), each entry lives `lifetimeSeconds`, counts against the
//! provider's token state budget, and a client has at most `perClientLimit` pushes per
//! lifetime window.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::errors::OAuthError;
use super::params::{self, Params};
use super::{client_auth, Provider};
use crate::session::random_token;
use crate::web::body::{Body, RequestBody};

/// The `request_uri` prefix RFC 9126 section 2.2 suggests.
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// Parameters of client authentication, never kept with the pushed request.
const CREDENTIALS: [&str; 3] = ["client_secret", "client_assertion", "client_assertion_type"];

/// `oidcProvider.pushedAuthorizationRequests`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub lifetime: Duration,
    pub per_client_limit: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(60),
            per_client_limit: 100,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Pushed {
    client_id: String,
    params: Params,
}

fn pushed_key(reference: &str) -> String {
    format!("oidc:par:{}", super::grants::hash(reference))
}

/// The pushed authorization request endpoint.
pub async fn push(p: &Provider, req: Request<RequestBody>) -> Response<Body> {
    if req.method() != Method::POST {
        let mut r = OAuthError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            ..OAuthError::invalid_request("this endpoint takes POST")
        }
        .response();
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    match run(p, req).await {
        Ok(body) => {
            let mut r = super::errors::json_no_store(&body);
            *r.status_mut() = StatusCode::CREATED;
            r
        }
        Err(e) => {
            tracing::info!(error = e.code, description = %e.description, "pushed authorization request refused");
            e.response()
        }
    }
}

async fn run(p: &Provider, req: Request<RequestBody>) -> Result<serde_json::Value, OAuthError> {
    let (headers, form) = params::read_form(req).await?;
    let client = client_auth::authenticate(p, &headers, &form, false, &p.endpoints.par).await?;
    let mut request: Params = form
        .into_iter()
        .filter(|(k, _)| !CREDENTIALS.contains(&k.as_str()))
        .collect();
    if request.contains_key("request_uri") {
        return Err(OAuthError::invalid_request(
            "request_uri cannot be pushed: push the parameters themselves",
        ));
    }
    request.insert("client_id".into(), client.id.clone());
    super::authorize::check_pushed(client, &request)?;
    let settings = p.par;
    let count_key = format!("oidc:par:count:{}", super::grants::hash(&client.id));
    if p.store.increment(&count_key, settings.lifetime).await? > settings.per_client_limit {
        tracing::warn!(client = %client.id, limit = settings.per_client_limit, "pushed authorization requests over the client's limit");
        let mut e = OAuthError::temporarily_unavailable(
            "this client has pushed too many authorization requests; try again later",
        );
        e.status = StatusCode::TOO_MANY_REQUESTS;
        e.retry_after = Some(settings.lifetime.as_secs());
        return Err(e);
    }
    let reference = random_token(32);
    let record = Pushed {
        client_id: client.id.clone(),
        params: request,
    };
    let value = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
    p.put_state(&pushed_key(&reference), value, settings.lifetime)
        .await?;
    Ok(json!({
        "request_uri": format!("{REQUEST_URI_PREFIX}{reference}"),
        "expires_in": settings.lifetime.as_secs(),
    }))
}

/// The parameters an authorization request stands for: a `request_uri` is taken (once) and
/// replaced by what its client pushed; a plain request of a client that must push is
/// refused. `Err`: the text of the error page (never a redirect: the redirect URI is not
/// known to be the client's before the pushed request is found).
pub async fn resolve(p: &Provider, params: Params) -> Result<Params, (StatusCode, &'static str)> {
    let bad = |m| (StatusCode::BAD_REQUEST, m);
    let Some(uri) = params.get("request_uri") else {
        let must_push = params
            .get("client_id")
            .and_then(|id| p.clients.get(id))
            .is_some_and(|c| c.require_par);
        if must_push {
            return Err(bad(
                "This application must push its authorization requests (request_uri from the pushed authorization request endpoint).",
            ));
        }
        return Ok(params);
    };
    let client_id = params
        .get("client_id")
        .ok_or(bad("The request has no client_id."))?;
    let reference = uri
        .strip_prefix(REQUEST_URI_PREFIX)
        .ok_or(bad("The request_uri was not issued by this provider."))?;
    let taken = p.store.take(&pushed_key(reference)).await.map_err(|e| {
        tracing::error!(error = %e, "store failed");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is temporarily unavailable.",
        )
    })?;
    let pushed = taken
        .and_then(|b| serde_json::from_slice::<Pushed>(&b).ok())
        .ok_or(bad(
            "The request_uri is unknown, expired or already used. Go back to the application and start again.",
        ))?;
    if pushed.client_id != *client_id {
        tracing::warn!(client = %client_id, pushed_by = %pushed.client_id, "request_uri used by another client");
        return Err(bad("The request_uri was pushed by another application."));
    }
    Ok(pushed.params)
}
