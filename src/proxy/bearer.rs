//! Bearer access tokens on proxy and forward-auth routes (RFC 6750): a policy with
//! `authentication.bearer` lets an API client authenticate with `Authorization: Bearer`
//! instead of a session. The token is the request's only credential: no session is loaded or
//! created (the cookie is not looked at), and its claims become the request's attributes
//! `token.<claim>` for the policy's rules and the app's header templates.
//!
//! Who can have issued it:
//! - the built-in provider (`oidcProvider`): a JWT is verified with its own keys in-process,
//!   an opaque token is looked up in its store; both then pass the checks introspection makes
//!   (expiry, revocation of the token, of its grant and of its refresh family), through the
//!   same `Provider::access_record`;
//! - an upstream OIDC connector: a JWT verified with the keys of the JWKS the connector
//!   fetches anyway (`connectors::access_tokens`: alg pinned by key, `iss`, `exp`/`nbf`,
//!   `typ: at+jwt`). Opaque tokens of another IdP are not accepted (that would need its
//!   introspection endpoint).
//!
//! The token's unverified `iss` only chooses which issuer verifies it; that issuer then checks
//! `iss` itself. Then, for every issuer alike: `aud` must name one of the policy's audiences,
//! and the token must carry every scope the policy requires.

use http::header::{self, HeaderMap};
use serde_json::{Map, Value};

use crate::claims::Attributes;
use crate::connectors::access_tokens::AccessTokenError;
use crate::provider::keys::TokenType;
use crate::runtime::Runtime;
use crate::telemetry::access::Decision;
use crate::web::rejection::{BearerProblem, Rejection};

/// The attribute namespace of a bearer token's claims (`token.sub`, `token.scope`): no
/// connector or extension may take this name.
pub const NAMESPACE: &str = "token";

/// Who may have issued a token a policy accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issuer {
    /// The built-in OpenID provider.
    Provider,
    /// An upstream OIDC connector; `untyped`: its JWTs need not be typed `at+jwt`.
    Connector { name: String, untyped: bool },
}

/// A policy's `authentication.bearer`, compiled.
#[derive(Debug, Clone)]
pub struct BearerPolicy {
    pub issuers: Vec<Issuer>,
    /// The token's `aud` must name one of these.
    pub audiences: Vec<String>,
    /// The token must carry all of these.
    pub scopes: Vec<String>,
    /// The `Authorization` header goes on to the upstream.
    pub forward_token: bool,
}

/// What a request's `Authorization` header says.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    /// No bearer token (no header, or another scheme such as `Basic`).
    Absent,
    Token(&'a str),
    /// A bearer credential that is not exactly one well-formed token.
    Malformed(&'static str),
}

/// RFC 6750 section 2.1: `Bearer <b64token>`, the scheme case-insensitive, one header.
pub fn presented(headers: &HeaderMap) -> Presented<'_> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let Some(first) = all.next() else {
        return Presented::Absent;
    };
    let is_bearer = |v: &http::HeaderValue| {
        let b = v.as_bytes();
        b.get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"bearer"))
            && b.get(6).is_none_or(|c| *c == b' ')
    };
    let more = all.next();
    if more.is_some() {
        if is_bearer(first) || more.is_some_and(is_bearer) {
            return Presented::Malformed("send one Authorization header");
        }
        return Presented::Absent;
    }
    let bytes = first.as_bytes();
    if !bytes
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case(b"bearer"))
    {
        return Presented::Absent;
    }
    match bytes.get(6) {
        None => return Presented::Malformed("the bearer token is missing"),
        Some(b' ') => {}
        // `Bearerish …`: another scheme
        Some(_) => return Presented::Absent,
    }
    let token = bytes[7..].trim_ascii();
    // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body_end = token.iter().position(|b| *b == b'=').unwrap_or(token.len());
    let well_formed = body_end > 0
        && token[..body_end]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b))
        && token[body_end..].iter().all(|b| *b == b'=');
    if !well_formed {
        return Presented::Malformed("the bearer token is not one b64token");
    }
    // ASCII only (checked above), so always UTF-8.
    std::str::from_utf8(token).map_or(
        Presented::Malformed("the bearer token is not one b64token"),
        Presented::Token,
    )
}

/// The unverified `iss` of a JWT, to choose who verifies it (never trusted beyond that).
fn claimed_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
    }
    serde_json::from_slice::<Iss>(&bytes).ok().map(|i| i.iss)
}

fn is_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// A refusal of this request (`realm`: the app's name).
fn refuse(realm: &str, problem: BearerProblem) -> Rejection {
    Rejection::Bearer {
        realm: realm.to_string(),
        problem,
    }
}

fn invalid(realm: &str, why: &'static str) -> Rejection {
    refuse(realm, BearerProblem::Invalid(why))
}

/// Authenticates a request by its bearer `token`: its claims as `token.*` attributes, or the
/// refusal (401 `invalid_token`, 503 when the store or the IdP cannot say). What the token
/// grants is [`check_scopes`]'s to judge.
pub async fn authenticate(
    rt: &Runtime,
    policy: &BearerPolicy,
    realm: &str,
    token: &str,
) -> Result<Attributes, Rejection> {
    let claims = verify(rt, policy, realm, token).await?;
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => policy.audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| policy.audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !audience_ok {
        return Err(invalid(realm, "the token is not meant for this audience"));
    }
    Ok(attributes(claims))
}

/// The token carries every scope the policy requires, or 403 `insufficient_scope` naming them.
pub fn check_scopes(
    policy: &BearerPolicy,
    attrs: &Attributes,
    realm: &str,
) -> Result<(), Rejection> {
    if policy.scopes.is_empty() {
        return Ok(());
    }
    let granted = attrs.get("token.scope").and_then(Value::as_array);
    let has = |s: &String| granted.is_some_and(|g| g.iter().any(|x| x.as_str() == Some(s)));
    if policy.scopes.iter().all(has) {
        return Ok(());
    }
    Err(refuse(
        realm,
        BearerProblem::InsufficientScope(Some(policy.scopes.join(" "))),
    ))
}

/// The claims of a token one of the policy's issuers vouches for.
async fn verify(
    rt: &Runtime,
    policy: &BearerPolicy,
    realm: &str,
    token: &str,
) -> Result<Map<String, Value>, Rejection> {
    let provider = rt
        .provider
        .as_ref()
        .filter(|_| policy.issuers.contains(&Issuer::Provider));
    // Only the provider to ask (or not a JWT, which only the provider issues): no need to
    // read the claimed issuer first, the provider's own check comes first (a cache hit for a
    // token it verified before).
    let only_provider = policy.issuers.iter().all(|i| *i == Issuer::Provider);
    if let Some(p) = provider.filter(|_| only_provider || !is_jwt(token)) {
        return from_provider(p, realm, token).await;
    }
    if !is_jwt(token) {
        return Err(invalid(
            realm,
            "the token is not a JWT of an accepted issuer",
        ));
    }
    let Some(iss) = claimed_issuer(token) else {
        return Err(invalid(realm, "the token is malformed"));
    };
    if let Some(p) = provider.filter(|p| p.issuer == iss) {
        return from_provider(p, realm, token).await;
    }
    for issuer in &policy.issuers {
        let Issuer::Connector { name, untyped } = issuer else {
            continue;
        };
        let Some(idp) = rt.connectors.oidc().find(|c| &c.name == name) else {
            continue;
        };
        if !idp.issues(&iss) {
            continue;
        }
        return idp
            .verify_access_token(token, *untyped)
            .await
            .map_err(|e| match e {
                AccessTokenError::Invalid(why) => invalid(realm, why),
                AccessTokenError::UnknownKey => invalid(realm, "the token's signing key is unknown"),
                AccessTokenError::Unavailable => Rejection::Page {
                    status: http::StatusCode::SERVICE_UNAVAILABLE,
                    message: "The identity provider that issued the token is not available right now. Please try again shortly.".into(),
                    decision: Decision::Error,
                },
            });
    }
    Err(invalid(realm, "the token's issuer is not accepted here"))
}

/// A token of the built-in provider, live as introspection would answer it.
async fn from_provider(
    p: &crate::provider::Provider,
    realm: &str,
    token: &str,
) -> Result<Map<String, Value>, Rejection> {
    let live = p.access_record(token).await.map_err(|e| {
        tracing::warn!(error = ?e, "the provider's store could not check a bearer token");
        Rejection::StoreUnavailable
    })?;
    if let Some(live) = live {
        return Ok(crate::provider::introspect::access_claims(p, live));
    }
    // Refused: say why as precisely as the gateway knows (only this slow path verifies again).
    if !is_jwt(token) {
        return Err(invalid(realm, "the token is unknown, expired or revoked"));
    }
    if claimed_issuer(token).is_some_and(|iss| iss != p.issuer) {
        return Err(invalid(realm, "the token's issuer is not accepted here"));
    }
    let why = match p.verify(token, TokenType::Access, false) {
        None if p.verify(token, TokenType::Id, false).is_some() => {
            "an ID token is not an access token"
        }
        None => "the token's signature does not verify",
        Some(c)
            if c.get("exp")
                .and_then(Value::as_u64)
                .is_none_or(|e| e <= crate::session::now_unix()) =>
        {
            "the token expired"
        }
        Some(_) => "the token was revoked",
    };
    Err(invalid(realm, why))
}

/// A token's claims as attributes: `token.<claim>`; `scope` split on spaces into a list (so
/// `token.scope contains orders.read` is list membership), `aud` always a list.
pub fn attributes(claims: Map<String, Value>) -> Attributes {
    claims
        .into_iter()
        .map(|(k, v)| {
            let v = match (k.as_str(), v) {
                ("scope", Value::String(s)) => Value::Array(
                    s.split(' ')
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                ),
                ("aud", Value::String(a)) => Value::Array(vec![Value::String(a)]),
                (_, v) => v,
            };
            (format!("{NAMESPACE}.{k}"), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn h(values: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(header::AUTHORIZATION, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn reads_one_bearer_token_and_nothing_else() {
        assert_eq!(presented(&h(&[])), Presented::Absent);
        assert_eq!(presented(&h(&["Basic YTpi"])), Presented::Absent);
        assert_eq!(presented(&h(&["Bearerx abc"])), Presented::Absent);
        assert_eq!(
            presented(&h(&["Bearer abc.def-_~+/=="])),
            Presented::Token("abc.def-_~+/==")
        );
        assert_eq!(presented(&h(&["bearer  abc "])), Presented::Token("abc"));
        assert_eq!(
            presented(&h(&["Bearer"])),
            Presented::Malformed("the bearer token is missing")
        );
        for bad in [
            "Bearer ",
            "Bearer a b",
            "Bearer a=b",
            "Bearer ==",
            "Bearer a\"b",
        ] {
            assert_eq!(
                presented(&h(&[bad])),
                Presented::Malformed("the bearer token is not one b64token"),
                "{bad}"
            );
        }
        assert_eq!(
            presented(&h(&["Basic YTpi", "Bearer abc"])),
            Presented::Malformed("send one Authorization header")
        );
        assert_eq!(
            presented(&h(&["Basic YTpi", "Basic Yjpj"])),
            Presented::Absent
        );
    }

    #[test]
    fn claims_become_token_attributes_with_scope_and_aud_as_lists() {
        let attrs = attributes(
            json!({"sub": "svc", "scope": "orders.read  orders.write", "aud": "api",
                   "client_id": "c1", "tenant": {"id": 7}})
            .as_object()
            .unwrap()
            .clone(),
        );
        assert_eq!(attrs["token.sub"], "svc");
        assert_eq!(attrs["token.scope"], json!(["orders.read", "orders.write"]));
        assert_eq!(attrs["token.aud"], json!(["api"]));
        assert_eq!(attrs["token.client_id"], "c1");
        assert_eq!(attrs["token.tenant"], json!({"id": 7}));
    }

    #[test]
    fn the_claimed_issuer_is_read_from_the_payload_only() {
        use base64::Engine;
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let t = format!(
            "{}.{}.sig",
            b(r#"{"alg":"ES256"}"#),
            b(r#"{"iss":"https://i"}"#)
        );
        assert_eq!(claimed_issuer(&t).as_deref(), Some("https://i"));
        assert!(is_jwt(&t));
        assert_eq!(claimed_issuer("a.b.c"), None);
        assert!(!is_jwt("opaque-token"));
    }
}
