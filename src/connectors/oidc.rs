//! Upstream OpenID Connect identity providers (generic, and presets for Okta, Entra ID,
//! Auth0, Keycloak), on the `openidconnect` crate: discovery, authorization code + PKCE with
//! state and nonce kept server-side, full ID token validation, userinfo merge, logout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, LoginHint, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::access_tokens::{AccessKeys, AccessTokenError};
use crate::claims::Attributes;
use crate::connectors::local::Throttle;
use crate::secrets::SecretString;

type RpClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The provider flavours; presets only change defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Generic,
    Okta,
    Azure,
    Auth0,
    Keycloak,
}

impl Preset {
    pub fn parse(t: &str) -> Option<Self> {
        Some(match t {
            "oidc" => Self::Generic,
            "okta" => Self::Okta,
            "azure" => Self::Azure,
            "auth0" => Self::Auth0,
            "keycloak" => Self::Keycloak,
            _ => return None,
        })
    }
    pub fn label(self) -> &'static str {
        match self {
            Self::Generic => "OpenID Connect",
            Self::Okta => "Okta",
            Self::Azure => "Microsoft Entra ID",
            Self::Auth0 => "Auth0",
            Self::Keycloak => "Keycloak",
        }
    }
    /// Default scopes: Okta and Keycloak release groups with a `groups` scope.
    pub fn default_scopes(self) -> &'static str {
        match self {
            Self::Okta => "openid profile email groups",
            _ => "openid profile email",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider is not reachable: {0}")]
    Unreachable(String),
    #[error("the identity provider's discovery document is invalid: {0}")]
    BadDiscovery(String),
    #[error("the identity provider refused the code exchange: {0}")]
    TokenExchange(String),
    #[error("the ID token was refused: {0}")]
    BadIdToken(String),
    #[error("the identity provider is not available (discovery has not succeeded)")]
    NotDiscovered,
}

impl OidcError {
    /// A failure of the IdP (502-class) rather than of the credentials presented.
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::BadDiscovery(_) | Self::NotDiscovered
        )
    }
}

/// What the gateway remembers between redirecting to the IdP and its callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub connector: String,
    pub flow: String,
    pub nonce: String,
    pub pkce_verifier: Option<String>,
}

/// Upstream tokens kept with the session (never in its attributes: templates cannot reach them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpstreamTokens {
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    /// Unix seconds when the access token expires.
    pub expires_at: Option<u64>,
}

impl UpstreamTokens {
    /// A string claim of the ID token (verified when it was received).
    pub fn id_claim(&self, name: &str) -> Option<String> {
        payload_claims(self.id_token.as_deref()?)?
            .get(name)?
            .as_str()
            .map(str::to_string)
    }

    /// Any claim of the ID token (verified when it was received).
    pub fn id_claim_value(&self, name: &str) -> Option<Value> {
        payload_claims(self.id_token.as_deref()?)?.remove(name)
    }
}

/// What a valid logout token of the IdP names (OpenID Connect Back-Channel Logout 1.0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutClaims {
    pub sid: Option<String>,
    pub sub: Option<String>,
    pub jti: String,
}

/// The event a logout token must carry.
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token older than this (by `iat`) is refused; its `jti` is remembered as long.
pub const LOGOUT_TOKEN_MAX_AGE: u64 = 300;

/// The checks of a logout token's claims after its signature, `iss` and `aud` (section 2.6:
/// `iat` recent, `exp` if any not past, the logout event, no `nonce`, `sid` or `sub`, a
/// `jti`). The error is the reason logged and answered.
pub fn check_logout_claims(
    claims: &serde_json::Map<String, Value>,
    now: u64,
) -> Result<LogoutClaims, &'static str> {
    let leeway = LEEWAY as u64;
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or("the logout token has no iat")?;
    if iat > now + leeway {
        return Err("the logout token was issued in the future");
    }
    if iat + LOGOUT_TOKEN_MAX_AGE < now {
        return Err("the logout token is too old (iat)");
    }
    if let Some(exp) = claims.get("exp") {
        match exp.as_u64() {
            Some(exp) if exp + leeway > now => {}
            _ => return Err("the logout token has expired"),
        }
    }
    let event = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|e| e.get(LOGOUT_EVENT));
    if !event.is_some_and(Value::is_object) {
        return Err("the logout token has no back-channel logout event");
    }
    if claims.contains_key("nonce") {
        return Err("the logout token carries a nonce");
    }
    let text = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (sid, sub) = (text("sid"), text("sub"));
    if sid.is_none() && sub.is_none() {
        return Err("the logout token has neither sid nor sub");
    }
    let jti = text("jti").ok_or("the logout token has no jti")?;
    Ok(LogoutClaims { sid, sub, jti })
}

struct Discovered {
    client: RpClient,
    issuer: String,
    /// The issuer exactly as the discovery document writes it: what `iss` must equal.
    issuer_exact: String,
    /// The same JWKS as verification keys, each pinned to its algorithm: for the IdP's JWT
    /// access tokens (bearer tokens) and its logout tokens.
    access_keys: AccessKeys,
    end_session_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    fetched: Instant,
}

pub struct OidcConnector {
    pub name: String,
    pub preset: Preset,
    well_known: String,
    client_id: String,
    client_secret: SecretString,
    redirect_url: String,
    /// Path of `redirect_url`: served by the gateway.
    pub callback_path: String,
    pub logout_callback_url: Option<String>,
    pub logout_callback_path: Option<String>,
    /// Path of `oidcBackchannelLogoutURL`: where the IdP POSTs logout tokens.
    pub backchannel_logout_path: Option<String>,
    scopes: Vec<String>,
    pkce: bool,
    extra_params: Vec<(String, String)>,
    auth_post: bool,
    pub refresh_tokens: bool,
    pub refuse_start_without_idp: bool,
    pub discovery_refresh: Duration,
    pub throttle: Throttle,
    http: openidconnect::reqwest::Client,
    state: RwLock<Option<Arc<Discovered>>>,
    /// Last forced key refresh (unknown `kid`), to rate-limit them.
    last_forced_refresh: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for OidcConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConnector")
            .field("name", &self.name)
            .field("preset", &self.preset)
            .field("well_known", &self.well_known)
            .finish_non_exhaustive()
    }
}

/// Settings compiled from the configuration.
pub struct OidcSettings {
    pub name: String,
    pub preset: Preset,
    pub well_known: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_url: String,
    pub logout_callback_url: Option<String>,
    pub backchannel_logout_url: Option<String>,
    pub scopes: Vec<String>,
    pub pkce: bool,
    pub extra_params: Vec<(String, String)>,
    pub auth_post: bool,
    pub refresh_tokens: bool,
    pub refuse_start_without_idp: bool,
    pub discovery_refresh: Duration,
    pub timeout: Duration,
    pub tls: rustls::ClientConfig,
    pub throttle: Throttle,
}

fn path_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.path().to_string())
        .unwrap_or_else(|_| "/".into())
}

/// Algorithms accepted on ID tokens: asymmetric only. `none` is never accepted by the
/// library, and HMAC is excluded so a public key can never be used as an HMAC secret.
fn allowed_algs() -> Vec<CoreJwsSigningAlgorithm> {
    use CoreJwsSigningAlgorithm::*;
    vec![
        RsaSsaPkcs1V15Sha256,
        RsaSsaPkcs1V15Sha384,
        RsaSsaPkcs1V15Sha512,
        RsaSsaPssSha256,
        RsaSsaPssSha384,
        RsaSsaPssSha512,
        EcdsaP256Sha256,
        EcdsaP384Sha384,
        EdDsa,
    ]
}

/// The reason a logout token signed with a key the IdP does not publish is refused.
const UNKNOWN_KEY: &str = "the logout token is signed with an unknown key";

/// Clock skew tolerated on `exp` and `iat`.
const LEEWAY: i64 = 60;
/// Forced key refreshes (unknown `kid`) at most this often.
const FORCED_REFRESH_EVERY: Duration = Duration::from_secs(30);

impl OidcConnector {
    pub fn new(s: OidcSettings) -> Result<Self, String> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would let a hostile IdP point us anywhere (SSRF).
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(s.timeout)
            .use_preconfigured_tls(s.tls)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            callback_path: path_of(&s.redirect_url),
            logout_callback_path: s.logout_callback_url.as_deref().map(path_of),
            backchannel_logout_path: s.backchannel_logout_url.as_deref().map(path_of),
            name: s.name,
            preset: s.preset,
            well_known: s.well_known,
            client_id: s.client_id,
            client_secret: s.client_secret,
            redirect_url: s.redirect_url,
            logout_callback_url: s.logout_callback_url,
            scopes: s.scopes,
            pkce: s.pkce,
            extra_params: s.extra_params,
            auth_post: s.auth_post,
            refresh_tokens: s.refresh_tokens,
            refuse_start_without_idp: s.refuse_start_without_idp,
            discovery_refresh: s.discovery_refresh,
            throttle: s.throttle,
            http,
            state: RwLock::new(None),
            last_forced_refresh: Mutex::new(None),
        })
    }

    fn current(&self) -> Option<Arc<Discovered>> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Has discovery succeeded (the IdP can be used)?
    pub fn available(&self) -> bool {
        self.current().is_some()
    }

    /// Is the discovery older than the refresh interval?
    pub fn stale(&self) -> bool {
        self.current()
            .is_none_or(|d| d.fetched.elapsed() >= self.discovery_refresh)
    }

    async fn get_json(&self, url: &str) -> Result<Value, OidcError> {
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| OidcError::Unreachable(format!("{url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(OidcError::Unreachable(format!(
                "{url} answered {}",
                resp.status()
            )));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| OidcError::Unreachable(format!("{url}: {e}")))?;
        serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| OidcError::BadDiscovery(format!("{url}: not JSON: {e}")))
    }

    /// Fetches the discovery document and the keys, and swaps them in.
    pub async fn discover(&self) -> Result<(), OidcError> {
        let doc = self.get_json(&self.well_known).await?;
        let metadata: CoreProviderMetadata = serde_json::from_value(doc.clone())
            .map_err(|e| OidcError::BadDiscovery(e.to_string()))?;
        let issuer_exact = metadata.issuer().as_str().to_string();
        let issuer = issuer_exact.trim_end_matches('/').to_string();
        // OIDC Discovery 4.3: the issuer must be the URL the document was fetched under.
        let expected = self
            .well_known
            .trim_end_matches("/.well-known/openid-configuration")
            .trim_end_matches('/');
        if issuer != expected {
            return Err(OidcError::BadDiscovery(format!(
                "issuer `{issuer}` does not match the discovery URL (expected `{expected}`)"
            )));
        }
        let jwks_value = self.get_json(metadata.jwks_uri().as_str()).await?;
        let access_keys = AccessKeys::from_jwks(&jwks_value);
        let jwks: CoreJsonWebKeySet = serde_json::from_value(jwks_value)
            .map_err(|e| OidcError::BadDiscovery(format!("keys: {e}")))?;
        let metadata = metadata.set_jwks(jwks);
        let redirect = RedirectUrl::new(self.redirect_url.clone())
            .map_err(|e| OidcError::BadDiscovery(e.to_string()))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.client_id.clone()),
            Some(ClientSecret::new(self.client_secret.expose().to_string())),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(if self.auth_post {
            AuthType::RequestBody
        } else {
            AuthType::BasicAuth
        });
        let discovered = Discovered {
            client,
            issuer,
            issuer_exact,
            access_keys,
            end_session_endpoint: doc
                .get("end_session_endpoint")
                .and_then(Value::as_str)
                .map(str::to_string),
            userinfo_endpoint: doc
                .get("userinfo_endpoint")
                .and_then(Value::as_str)
                .map(str::to_string),
            fetched: Instant::now(),
        };
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(discovered));
        Ok(())
    }

    /// The URL to send the browser to, and what to remember until the callback.
    pub async fn begin(
        &self,
        flow: &str,
        login_hint: Option<&str>,
    ) -> Result<(String, String, PendingLogin), OidcError> {
        if self.current().is_none() || self.stale() {
            if let Err(e) = self.discover().await {
                if self.current().is_none() {
                    return Err(e);
                }
                crate::telemetry::failures::failed(
                    "oidc",
                    &self.name,
                    "discovery refresh failed; using the previous document",
                    &e,
                );
            }
        }
        let d = self.current().ok_or(OidcError::NotDiscovered)?;
        let mut req = d.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in &self.scopes {
            if s != "openid" {
                req = req.add_scope(Scope::new(s.clone()));
            }
        }
        for (k, v) in &self.extra_params {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        if let Some(h) = login_hint {
            req = req.set_login_hint(LoginHint::new(h.to_string()));
        }
        let verifier = if self.pkce {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            req = req.set_pkce_challenge(challenge);
            Some(verifier.secret().clone())
        } else {
            None
        };
        let (url, state, nonce) = req.url();
        let pending = PendingLogin {
            connector: self.name.clone(),
            flow: flow.to_string(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier,
        };
        Ok((url.to_string(), state.secret().clone(), pending))
    }

    /// Exchanges the code, validates the ID token fully, merges userinfo; returns the session
    /// attributes (`<name>.<claim>`) and the tokens to keep.
    pub async fn finish(
        &self,
        code: &str,
        pending: &PendingLogin,
    ) -> Result<(Attributes, UpstreamTokens), OidcError> {
        let d = self.current().ok_or(OidcError::NotDiscovered)?;
        let mut exchange = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::BadDiscovery(e.to_string()))?;
        if let Some(v) = &pending.pkce_verifier {
            exchange = exchange.set_pkce_verifier(PkceCodeVerifier::new(v.clone()));
        }
        let tokens = exchange.request_async(&self.http).await.map_err(|e| {
            let text = match &e {
                openidconnect::RequestTokenError::ServerResponse(r) => format!("{r}"),
                openidconnect::RequestTokenError::Request(r) => {
                    return OidcError::Unreachable(r.to_string())
                }
                other => other.to_string(),
            };
            OidcError::TokenExchange(text)
        })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| OidcError::BadIdToken("the token response has no id_token".into()))?;
        let claims = match self.verify_id_token(&d, id_token, &pending.nonce) {
            Ok(c) => c,
            Err(e) if e.contains("key") && self.may_force_refresh() => {
                // Perhaps the IdP rotated its keys: refresh once (rate-limited) and retry.
                self.discover().await?;
                let d2 = self.current().ok_or(OidcError::NotDiscovered)?;
                self.verify_id_token(&d2, id_token, &pending.nonce)
                    .map_err(OidcError::BadIdToken)?
            }
            Err(e) => return Err(OidcError::BadIdToken(e)),
        };
        // at_hash, when present, binds the access token to the ID token.
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| OidcError::BadIdToken(e.to_string()))?;
            let verifier = d.client.id_token_verifier();
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| OidcError::BadIdToken(e.to_string()))?;
            let actual = AccessTokenHash::from_token(tokens.access_token(), alg, key)
                .map_err(|e| OidcError::BadIdToken(e.to_string()))?;
            if actual != *expected {
                return Err(OidcError::BadIdToken(
                    "at_hash does not match the access token".into(),
                ));
            }
        }
        // The library validated signature and claims; read every claim (incl. custom ones such
        // as groups) from the same, now trusted, payload.
        let mut all = payload_claims(&id_token.to_string())
            .ok_or_else(|| OidcError::BadIdToken("unreadable payload".into()))?;
        if let Some(url) = &d.userinfo_endpoint {
            match self.userinfo(url, tokens.access_token().secret()).await {
                Ok(info) if info.get("sub") == all.get("sub") => {
                    for (k, v) in info {
                        all.entry(k).or_insert(v);
                    }
                }
                Ok(_) => {
                    return Err(OidcError::BadIdToken(
                        "userinfo `sub` differs from the ID token's".into(),
                    ))
                }
                Err(e) => crate::telemetry::failures::failed(
                    "oidc",
                    &self.name,
                    "userinfo failed; using the ID token's claims",
                    &e,
                ),
            }
        }
        let mut attrs = Attributes::new();
        for (k, v) in all {
            if matches!(
                k.as_str(),
                "nonce"
                    | "at_hash"
                    | "c_hash"
                    | "aud"
                    | "azp"
                    | "exp"
                    | "iat"
                    | "nbf"
                    | "auth_time"
                    | "sid"
                    | "jti"
            ) {
                continue;
            }
            attrs.insert(format!("{}.{k}", self.name), v);
        }
        let kept = UpstreamTokens {
            id_token: Some(id_token.to_string()),
            refresh_token: tokens.refresh_token().map(|r| r.secret().clone()),
            expires_at: tokens
                .expires_in()
                .map(|e| crate::session::now_unix() + e.as_secs()),
        };
        Ok((attrs, kept))
    }

    fn verify_id_token(
        &self,
        d: &Discovered,
        id_token: &openidconnect::core::CoreIdToken,
        nonce: &str,
    ) -> Result<openidconnect::core::CoreIdTokenClaims, String> {
        let verifier = d
            .client
            .id_token_verifier()
            .set_allowed_algs(allowed_algs())
            .set_time_fn(|| chrono_now_minus(LEEWAY))
            .set_issue_time_verifier_fn(|iat| {
                let now = chrono_now_minus(0);
                if iat > now + chrono::Duration::seconds(LEEWAY) {
                    Err(format!("ID token issued in the future ({iat})"))
                } else if iat < now - chrono::Duration::seconds(600) {
                    Err(format!("ID token issued too long ago ({iat})"))
                } else {
                    Ok(())
                }
            });
        id_token
            .claims(&verifier, &Nonce::new(nonce.to_string()))
            .cloned()
            .map_err(|e| e.to_string())
    }

    /// Verifies a logout token of this IdP: a JWT (`typ`, if any, `logout+jwt`) signed with
    /// one of its keys by an asymmetric algorithm, `iss` its issuer, `aud` our client ID,
    /// then `check_logout_claims`. An unknown key refreshes the keys once (rate-limited).
    /// The error is the reason logged and answered.
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutClaims, String> {
        let d = self
            .current()
            .ok_or("the identity provider is not discovered")?;
        let claims = match self.logout_token_claims(&d, token) {
            Err(e) if e == UNKNOWN_KEY && self.may_force_refresh() => {
                self.discover().await.map_err(|e| e.to_string())?;
                let d = self
                    .current()
                    .ok_or("the identity provider is not discovered")?;
                self.logout_token_claims(&d, token)?
            }
            other => other?,
        };
        check_logout_claims(&claims, crate::session::now_unix()).map_err(str::to_string)
    }

    fn logout_token_claims(
        &self,
        d: &Discovered,
        token: &str,
    ) -> Result<serde_json::Map<String, Value>, String> {
        use jsonwebtoken::errors::ErrorKind;
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| "the logout token is not a JWT")?;
        if let Some(typ) = &header.typ {
            let typ = typ.to_ascii_lowercase();
            if typ != "logout+jwt" && typ != "application/logout+jwt" {
                return Err(format!("the logout token's typ is `{typ}`"));
            }
        }
        // The key's own algorithm (asymmetric only), never the one the header names.
        let (key, alg) = d
            .access_keys
            .key(header.kid.as_deref())
            .ok_or(UNKNOWN_KEY)?;
        if header.alg != alg {
            return Err(format!(
                "the logout token's algorithm {:?} is not its key's",
                header.alg
            ));
        }
        let mut v = jsonwebtoken::Validation::new(alg);
        v.set_issuer(&[&d.issuer, &format!("{}/", d.issuer)]);
        v.set_audience(&[&self.client_id]);
        v.set_required_spec_claims(&["iss", "aud"]);
        v.validate_exp = false; // checked with the other claims (it is optional here)
        v.leeway = LEEWAY as u64;
        jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &v)
            .map(|t| t.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => "the logout token's signature is wrong".to_string(),
                ErrorKind::InvalidIssuer => "the logout token's iss is not the IdP".to_string(),
                ErrorKind::InvalidAudience => {
                    "the logout token's aud is not this client".to_string()
                }
                ErrorKind::MissingRequiredClaim(c) => format!("the logout token has no {c}"),
                _ => format!("the logout token is invalid: {e}"),
            })
    }

    fn may_force_refresh(&self) -> bool {
        let mut last = self
            .last_forced_refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < FORCED_REFRESH_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    async fn userinfo(
        &self,
        url: &str,
        access_token: &str,
    ) -> Result<BTreeMap<String, Value>, OidcError> {
        let resp = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| OidcError::Unreachable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(OidcError::Unreachable(format!(
                "userinfo answered {}",
                resp.status()
            )));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| OidcError::Unreachable(format!("userinfo: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| OidcError::Unreachable(format!("userinfo: not JSON: {e}")))
    }

    /// Refreshes upstream tokens; `None` when the IdP refuses (the user must sign in again).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Option<UpstreamTokens>, OidcError> {
        let d = self.current().ok_or(OidcError::NotDiscovered)?;
        let rt = RefreshToken::new(refresh_token.to_string());
        let req = d
            .client
            .exchange_refresh_token(&rt)
            .map_err(|e| OidcError::BadDiscovery(e.to_string()))?;
        match req.request_async(&self.http).await {
            Ok(t) => Ok(Some(UpstreamTokens {
                id_token: t.id_token().map(|i| i.to_string()),
                refresh_token: Some(
                    t.refresh_token()
                        .map(|r| r.secret().clone())
                        .unwrap_or_else(|| refresh_token.to_string()),
                ),
                expires_at: t
                    .expires_in()
                    .map(|e| crate::session::now_unix() + e.as_secs()),
            })),
            Err(openidconnect::RequestTokenError::Request(e)) => {
                Err(OidcError::Unreachable(e.to_string()))
            }
            Err(_) => Ok(None),
        }
    }

    /// RP-initiated logout at the IdP, when it supports it and a callback is configured.
    pub fn logout_url(&self, tokens: &UpstreamTokens) -> Option<String> {
        let d = self.current()?;
        let end = d.end_session_endpoint.as_ref()?;
        let mut url = url::Url::parse(end).ok()?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(id) = &tokens.id_token {
                q.append_pair("id_token_hint", id);
            }
            q.append_pair("client_id", &self.client_id);
            if let Some(cb) = &self.logout_callback_url {
                q.append_pair("post_logout_redirect_uri", cb);
            }
        }
        Some(url.to_string())
    }

    pub fn issuer(&self) -> Option<String> {
        self.current().map(|d| d.issuer.clone())
    }

    /// Is `iss` exactly this IdP's issuer (as discovered)?
    pub fn issues(&self, iss: &str) -> bool {
        self.current().is_some_and(|d| d.issuer_exact == iss)
    }

    /// The claims of a JWT access token this IdP issued (see `access_tokens`). A `kid` the
    /// keys do not have refreshes them once, at most every `FORCED_REFRESH_EVERY` (so tokens
    /// with made-up key ids cannot make the gateway hammer the IdP), and retries.
    pub async fn verify_access_token(
        &self,
        token: &str,
        untyped: bool,
    ) -> Result<serde_json::Map<String, Value>, AccessTokenError> {
        let d = self.current().ok_or(AccessTokenError::Unavailable)?;
        match d.access_keys.verify(token, &d.issuer_exact, untyped) {
            Err(AccessTokenError::UnknownKey) if self.may_force_refresh() => {
                if let Err(e) = self.discover().await {
                    crate::telemetry::failures::failed(
                        "oidc",
                        &self.name,
                        "key refresh for an unknown key id failed",
                        &e,
                    );
                }
                let d = self.current().ok_or(AccessTokenError::Unavailable)?;
                d.access_keys.verify(token, &d.issuer_exact, untyped)
            }
            other => other,
        }
    }
}

fn chrono_now_minus(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::seconds(secs)
}

/// The claims of a JWT's payload (no verification: callers verify first).
fn payload_claims(jwt: &str) -> Option<BTreeMap<String, Value>> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Discovers every OIDC connector at start. An unreachable IdP refuses the start unless it is
/// configured with `onDiscoveryFailure: degrade` (then it is marked unavailable and retried).
pub async fn discover_all(connectors: &super::Connectors) -> Result<(), String> {
    let idps: Vec<&OidcConnector> = connectors.oidc().collect();
    let results = futures_util::future::join_all(idps.iter().map(|c| c.discover())).await;
    for (idp, result) in idps.iter().zip(results) {
        match result {
            Ok(()) => tracing::info!(idp = %idp.name, issuer = idp.issuer().as_deref().unwrap_or(""), "identity provider discovered"),
            Err(e) if idp.refuse_start_without_idp => {
                return Err(format!(
                    "identity provider `{}`: {e} (set `onDiscoveryFailure: degrade` to start without it)",
                    idp.name
                ))
            }
            Err(e) => crate::telemetry::failures::failed(
                "oidc",
                &idp.name,
                "identity provider unavailable; retrying in the background",
                &e,
            ),
        }
    }
    Ok(())
}

/// Keeps discovery documents and keys fresh (and retries unavailable IdPs) while the
/// runtime lives. It holds the runtime weakly (strongly only during a refresh), and the runtime
/// aborts it when dropped: a runtime replaced by a reload leaves no task behind once its last
/// request is done.
pub fn spawn_refresher(
    rt: std::sync::Weak<crate::runtime::Runtime>,
) -> tokio::task::JoinHandle<()> {
    let weak = rt.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(rt) = rt.upgrade() else { break };
            for idp in rt.connectors.oidc() {
                if idp.stale() {
                    if let Err(e) = idp.discover().await {
                        crate::telemetry::failures::failed(
                            "oidc",
                            &idp.name,
                            "discovery refresh failed",
                            &e,
                        );
                    }
                }
            }
        }
    });
    if let Some(rt) = weak.upgrade() {
        rt.background.add(task.abort_handle());
    }
    task
}
