//! Client authentication at every endpoint where a client authenticates (token,
//! introspection, revocation, pushed authorization requests): the secret methods of
//! `params::authenticate` (`client_secret_basic`, `client_secret_post`, `none`) and JWT client
//! assertions (RFC 7523 sections 2.2 and 3, OpenID Connect Core section 9):
//!
//! - `client_secret_jwt`: an HMAC (HS256/384/512) made with the client's secret;
//! - `private_key_jwt`: a signature by a key of the client's registered JWK Set (`jwks`
//!   inline, or `jwksURI`: fetched with a timeout and a size cap, cached, fetched again for an
//!   unknown `kid` at most once per `REFETCH_INTERVAL`). The algorithm is pinned by the key
//!   (`connectors::access_tokens::AccessKeys`: never `none`, never an HMAC with a public key).
//!
//! A client registered for one method (`tokenEndpointAuthMethod`) may use no other. The
//! assertion's `iss` and `sub` are the client ID, its `aud` names this provider (issuer, token
//! endpoint or the endpoint called), `exp` is required and near, `iat`/`nbf` are checked when
//! present, and `jti` is single-use: kept in the provider's store until `exp`, so replicas
//! sharing the store agree. Nothing is stored before the signature verified.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::errors::OAuthError;
use super::params::{self, Params};
use super::{Client, ClientAuth, Provider};
use crate::connectors::access_tokens::{AccessKeys, LEEWAY};
use crate::session::now_unix;

/// `client_assertion_type` of a JWT client assertion (RFC 7523 section 2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far ahead an assertion's `exp` may be (besides the leeway): its `jti` is kept that
/// long, so a client cannot make the provider keep replay marks for days.
pub const MAX_LIFETIME: u64 = 3600;
/// The longest `jti` accepted.
const MAX_JTI: usize = 256;
/// HMAC algorithms of `client_secret_jwt`.
const HMAC_ALGS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
/// Every algorithm a client assertion may be signed with, as discovery advertises them:
/// the HMACs with the client's secret, and what a registered public key can pin
/// (`access_tokens::pinned_alg`).
pub const SIGNING_ALGS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// A client authentication method (OAuth Dynamic Client Registration names, RFC 7591 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    SecretBasic,
    SecretPost,
    SecretJwt,
    PrivateKeyJwt,
    None,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 5] = [
        Self::SecretBasic,
        Self::SecretPost,
        Self::SecretJwt,
        Self::PrivateKeyJwt,
        Self::None,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::SecretBasic => "client_secret_basic",
            Self::SecretPost => "client_secret_post",
            Self::SecretJwt => "client_secret_jwt",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// The methods discovery advertises for an endpoint: all of them, `none` only where public
/// clients may call (`public`).
pub fn advertised(public: bool) -> Vec<&'static str> {
    AuthMethod::ALL
        .into_iter()
        .filter(|m| public || *m != AuthMethod::None)
        .map(AuthMethod::name)
        .collect()
}

/// May `client` authenticate with `used`? Its `tokenEndpointAuthMethod` if registered; else
/// a secret client uses basic or post, a public client none.
fn permitted(client: &Client, used: AuthMethod) -> bool {
    match client.auth_method {
        Some(m) => m == used,
        None => match client.auth {
            ClientAuth::Secret(_) => {
                matches!(used, AuthMethod::SecretBasic | AuthMethod::SecretPost)
            }
            ClientAuth::Public => used == AuthMethod::None,
            ClientAuth::Keys(_) => used == AuthMethod::PrivateKeyJwt,
        },
    }
}

fn wrong_method(client: &Client, used: AuthMethod) -> OAuthError {
    let registered = client.auth_method.map_or_else(
        || match client.auth {
            ClientAuth::Secret(_) => "client_secret_basic or client_secret_post",
            ClientAuth::Public => "none",
            ClientAuth::Keys(_) => "private_key_jwt",
        },
        AuthMethod::name,
    );
    OAuthError::invalid_client(
        format!(
            "this client authenticates with {registered}, not {}",
            used.name()
        ),
        used == AuthMethod::SecretBasic,
    )
}

/// Authenticates the client calling `endpoint` (an endpoint path of the provider);
/// `allow_public`: public clients may call it (not introspection).
pub async fn authenticate<'p>(
    p: &'p Provider,
    headers: &HeaderMap,
    form: &Params,
    allow_public: bool,
    endpoint: &str,
) -> Result<&'p Client, OAuthError> {
    if !form.contains_key("client_assertion") && !form.contains_key("client_assertion_type") {
        let client = params::authenticate(p, headers, form, allow_public)?;
        let used = if basic(headers) {
            AuthMethod::SecretBasic
        } else if form.contains_key("client_secret") {
            AuthMethod::SecretPost
        } else {
            AuthMethod::None
        };
        if !permitted(client, used) {
            return Err(wrong_method(client, used));
        }
        return Ok(client);
    }
    if basic(headers) || form.contains_key("client_secret") {
        return Err(OAuthError::invalid_request(
            "use one client authentication method, not two",
        ));
    }
    match form.get("client_assertion_type").map(String::as_str) {
        Some(ASSERTION_TYPE) => {}
        Some(other) => {
            return Err(OAuthError::invalid_client(
                format!("client_assertion_type `{other}` is not supported"),
                false,
            ))
        }
        None => {
            return Err(OAuthError::invalid_request(
                "client_assertion_type is required with client_assertion",
            ))
        }
    }
    let assertion = form
        .get("client_assertion")
        .ok_or_else(|| OAuthError::invalid_request("client_assertion is required"))?;
    let jwt = Jws::split(assertion)?;
    // The client is named by the (not yet verified) `sub`; everything is verified below
    // with that client's own key or secret.
    let id = jwt.claim_str("sub")?;
    if form.get("client_id").is_some_and(|c| c != id) {
        return Err(OAuthError::invalid_request(
            "client_id does not match the client assertion",
        ));
    }
    let client = p
        .clients
        .get(id)
        .ok_or_else(|| OAuthError::invalid_client("unknown client or wrong credentials", false))?;
    let method = match &client.auth {
        ClientAuth::Keys(_) => AuthMethod::PrivateKeyJwt,
        _ => AuthMethod::SecretJwt,
    };
    if !permitted(client, method) {
        return Err(wrong_method(client, method));
    }
    let (key, alg) = match &client.auth {
        ClientAuth::Secret(secret) => {
            let alg = HMAC_ALGS
                .into_iter()
                .find(|a| jwt.alg == format!("{a:?}"))
                .ok_or_else(|| {
                    invalid(format!(
                        "a client_secret_jwt assertion is signed with HS256, HS384 or HS512, not `{}`",
                        jwt.alg
                    ))
                })?;
            (
                Arc::new(DecodingKey::from_secret(secret.expose().as_bytes())),
                alg,
            )
        }
        ClientAuth::Keys(keys) => keys.key(jwt.kid.as_deref()).await?,
        ClientAuth::Public => return Err(wrong_method(client, method)),
    };
    if jwt.alg != format!("{alg:?}") {
        return Err(invalid(format!(
            "the client assertion is signed with `{}`; its key is registered for {alg:?}",
            jwt.alg
        )));
    }
    let verified = jsonwebtoken::crypto::verify(jwt.signature, jwt.signed.as_bytes(), &key, alg)
        .unwrap_or(false);
    if !verified {
        return Err(invalid("the client assertion's signature does not verify"));
    }
    let exp = check_claims(p, &jwt.claims, &client.id, endpoint)?;
    use_jti(p, &client.id, &jwt.claims, exp).await?;
    Ok(client)
}

/// Does the request carry HTTP Basic credentials (as `params::authenticate` reads them)?
fn basic(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Basic ") || v.starts_with("basic "))
}

fn invalid(why: impl Into<String>) -> OAuthError {
    OAuthError::invalid_client(why, false)
}

/// A compact JWS taken apart (nothing verified yet).
struct Jws<'a> {
    alg: String,
    kid: Option<String>,
    claims: Map<String, Value>,
    /// `header.payload`, what the signature covers.
    signed: &'a str,
    signature: &'a str,
}

impl<'a> Jws<'a> {
    fn split(token: &'a str) -> Result<Self, OAuthError> {
        let malformed = || invalid("the client assertion is not a signed JWT");
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let json = |seg: &str| -> Option<Map<String, Value>> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).ok()?).ok()
        };
        let header = json(h).ok_or_else(malformed)?;
        let claims = json(c).ok_or_else(malformed)?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(malformed)?
            .to_string();
        if alg.eq_ignore_ascii_case("none") || s.is_empty() {
            return Err(invalid("the client assertion is not signed (alg none)"));
        }
        if header.contains_key("crit") {
            return Err(invalid(
                "the client assertion has critical header parameters this provider does not understand",
            ));
        }
        Ok(Self {
            alg,
            kid: header
                .get("kid")
                .and_then(Value::as_str)
                .map(str::to_string),
            claims,
            signed: &token[..h.len() + 1 + c.len()],
            signature: s,
        })
    }

    fn claim_str(&self, name: &str) -> Result<&str, OAuthError> {
        self.claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(format!("the client assertion has no `{name}`")))
    }
}

fn number(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, OAuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| invalid(format!("the client assertion's `{name}` is not a number"))),
    }
}

/// The registered claims (RFC 7523 section 3); returns `exp`.
fn check_claims(
    p: &Provider,
    claims: &Map<String, Value>,
    client_id: &str,
    endpoint: &str,
) -> Result<u64, OAuthError> {
    let text = |n: &str| claims.get(n).and_then(Value::as_str);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Err(invalid(
            "the client assertion's iss and sub must both be the client ID",
        ));
    }
    let accepted = [p.issuer.clone(), p.url(&p.endpoints.token), p.url(endpoint)];
    let names_us = |a: &Value| a.as_str().is_some_and(|a| accepted.iter().any(|x| x == a));
    let aud_ok = match claims.get("aud") {
        Some(Value::Array(list)) => list.iter().any(names_us),
        Some(one) => names_us(one),
        None => false,
    };
    if !aud_ok {
        return Err(invalid(format!(
            "the client assertion's aud must name this provider ({} or {})",
            accepted[0], accepted[1]
        )));
    }
    let now = now_unix();
    let exp = number(claims, "exp")?.ok_or_else(|| invalid("the client assertion has no `exp`"))?;
    if exp + LEEWAY <= now {
        return Err(invalid("the client assertion expired"));
    }
    if exp > now + MAX_LIFETIME + LEEWAY {
        return Err(invalid(format!(
            "the client assertion expires too late: at most {MAX_LIFETIME} seconds ahead"
        )));
    }
    if number(claims, "nbf")?.is_some_and(|nbf| nbf > now + LEEWAY) {
        return Err(invalid("the client assertion is not valid yet (nbf)"));
    }
    if number(claims, "iat")?.is_some_and(|iat| iat > now + LEEWAY) {
        return Err(invalid(
            "the client assertion was issued in the future (iat)",
        ));
    }
    Ok(exp)
}

/// Marks the assertion's `jti` used until it expires; a second use is refused. The mark is
/// counted in the provider's state budget but never refused by it (refusing would let a
/// full budget turn off replay protection or authentication).
async fn use_jti(
    p: &Provider,
    client_id: &str,
    claims: &Map<String, Value>,
    exp: u64,
) -> Result<(), OAuthError> {
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .ok_or_else(|| invalid("the client assertion has no `jti`"))?;
    if jti.len() > MAX_JTI {
        return Err(invalid("the client assertion's jti is too long"));
    }
    let key = format!(
        "oidc:assertion:{}",
        super::grants::hash(&format!("{client_id}\n{jti}"))
    );
    let ttl = Duration::from_secs((exp + LEEWAY).saturating_sub(now_unix()).max(1));
    let value = Bytes::from_static(b"1");
    p.state.force(super::limits::entry_cost(&key, &value), ttl);
    if !p.store.put_if_absent(&key, value, ttl).await? {
        tracing::warn!(client = %client_id, "client assertion replayed (jti already used)");
        return Err(invalid("the client assertion was already used (jti)"));
    }
    Ok(())
}

/// The keys a `private_key_jwt` client signs with.
pub enum ClientKeys {
    /// `jwks`: registered inline.
    Inline(AccessKeys),
    /// `jwksURI`: fetched when needed.
    Remote(RemoteJwks),
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inline(k) => f.debug_tuple("Inline").field(k).finish(),
            Self::Remote(r) => f.debug_tuple("Remote").field(&r.uri).finish(),
        }
    }
}

impl ClientKeys {
    /// The key `kid` names (without a `kid`: the only key) and its pinned algorithm.
    async fn key(&self, kid: Option<&str>) -> Result<(Arc<DecodingKey>, Algorithm), OAuthError> {
        let unknown = || {
            invalid(
                "the client assertion is signed with a key that is not registered for this client",
            )
        };
        match self {
            Self::Inline(keys) => keys
                .key(kid)
                .map(|(k, a)| (Arc::new(k.clone()), a))
                .ok_or_else(unknown),
            Self::Remote(remote) => remote.key(kid).await?.ok_or_else(unknown),
        }
    }
}

/// Longest wait for a client's JWK Set.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWK Set read.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// How long fetched keys are used before they are fetched again.
const MAX_AGE: Duration = Duration::from_secs(3600);

/// The shortest time between two fetches of one client's JWK Set for an unknown `kid`:
/// 60 s, or `TESSERA_CLIENT_JWKS_REFETCH_MS` (read once; tests shorten it).
fn refetch_interval() -> Duration {
    static INTERVAL: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *INTERVAL.get_or_init(|| {
        std::env::var("TESSERA_CLIENT_JWKS_REFETCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(60))
    })
}

/// A client's `jwksURI` and what was last fetched from it.
pub struct RemoteJwks {
    pub uri: String,
    http: openidconnect::reqwest::Client,
    /// Held across a fetch, so concurrent requests wait for one fetch.
    cached: tokio::sync::Mutex<Fetched>,
}

#[derive(Default)]
struct Fetched {
    keys: Arc<AccessKeys>,
    /// When the last fetch was tried (successful or not).
    at: Option<Instant>,
}

impl RemoteJwks {
    pub fn new(uri: String) -> Result<Self, String> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            uri,
            http,
            cached: Default::default(),
        })
    }

    async fn key(
        &self,
        kid: Option<&str>,
    ) -> Result<Option<(Arc<DecodingKey>, Algorithm)>, OAuthError> {
        let mut cached = self.cached.lock().await;
        let found = |keys: &AccessKeys| keys.key(kid).map(|(k, a)| (Arc::new(k.clone()), a));
        let age = cached.at.map(|at| at.elapsed());
        let fresh = age.is_some_and(|a| a < MAX_AGE);
        if fresh {
            if let Some(hit) = found(&cached.keys) {
                return Ok(Some(hit));
            }
            if age.is_some_and(|a| a < refetch_interval()) {
                return Ok(None);
            }
        }
        cached.at = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => cached.keys = Arc::new(keys),
            Err(e) => {
                // The keys fetched before stay in use until a later fetch succeeds.
                tracing::warn!(uri = %self.uri, error = %e, "client JWK Set could not be fetched");
                if cached.keys.is_empty() {
                    return Err(OAuthError::temporarily_unavailable(
                        "the client's JWK Set could not be fetched",
                    ));
                }
            }
        }
        Ok(found(&cached.keys))
    }

    async fn fetch(&self) -> Result<AccessKeys, String> {
        let mut resp = self
            .http
            .get(&self.uri)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("answered {}", resp.status()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let doc: Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        let keys = AccessKeys::from_jwks(&doc);
        if keys.is_empty() {
            return Err("no usable signing key".into());
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_round_trip() {
        for m in AuthMethod::ALL {
            assert_eq!(AuthMethod::parse(m.name()), Some(m));
        }
        assert_eq!(AuthMethod::parse("client_secret"), None);
        assert_eq!(advertised(false).len(), 4);
        assert!(!advertised(false).contains(&"none"));
        assert!(advertised(true).contains(&"none"));
    }

    fn seg(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn unsigned_and_malformed_assertions_are_refused() {
        let none = format!("{}.{}.", seg(r#"{"alg":"none"}"#), seg(r#"{"sub":"a"}"#));
        assert_eq!(
            Jws::split(&none).err().unwrap().description,
            "the client assertion is not signed (alg none)"
        );
        let none_sig = format!("{}.{}.xx", seg(r#"{"alg":"None"}"#), seg(r#"{"sub":"a"}"#));
        assert!(Jws::split(&none_sig).is_err());
        for bad in ["", "a.b", "a.b.c.d", &format!("{}.e30.x", seg("[]"))] {
            assert_eq!(
                Jws::split(bad).err().unwrap().description,
                "the client assertion is not a signed JWT",
                "{bad}"
            );
        }
        let crit = format!(
            "{}.{}.x",
            seg(r#"{"alg":"HS256","crit":["exp"]}"#),
            seg("{}")
        );
        assert!(Jws::split(&crit).is_err());
        let ok = format!("{}.{}.sig", seg(r#"{"alg":"HS256","kid":"k"}"#), seg("{}"));
        let jws = Jws::split(&ok).unwrap();
        assert_eq!(jws.kid.as_deref(), Some("k"));
        assert_eq!(jws.signature, "sig");
        assert_eq!(jws.signed.len() + 4, ok.len());
    }
}
