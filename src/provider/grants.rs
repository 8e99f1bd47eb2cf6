//! What a token stands for (`Grant`), the records kept in the store for codes, access and
//! refresh tokens, and minting of ID tokens, access tokens (RFC 9068 JWT or opaque) and
//! refresh tokens. Only the store's atomic operations are used, so memory and Redis
//! backends behave alike.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::errors::OAuthError;
use super::keys::{SigningKey, TokenType};
use super::{AccessTokenFormat, Client, Provider};
use crate::claims::oidc::released;
use crate::session::{now_unix, random_token};

/// What the user (or client) agreed to and who they are, snapshotted at authorization.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    pub client_id: String,
    /// `None` for client credentials: the client acts for itself.
    pub sub: Option<String>,
    pub scopes: Vec<String>,
    /// Every claim the user has (filtered by scope where used).
    pub claims: Map<String, Value>,
    /// The `claims` request parameter, if any.
    pub requested: Option<Value>,
    pub auth_time: Option<u64>,
    /// `acr` achieved by the login the grant came from (OIDC Core §2); `None`: not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// `amr` of that login (RFC 8176); empty: not known (never invented).
    pub amr: Vec<String>,
    /// The user's name as introspection answers it (RFC 7662 `username`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The gateway session the grant came from (`SessionData::sid`): its tokens end with
    /// it (see `session_end`). `None`: bound to no session.
    pub sid: Option<String>,
    pub audiences: Vec<String>,
    /// The user's attributes, kept only for clients whose token hooks read them.
    #[serde(default, skip_serializing_if = "crate::claims::Attributes::is_empty")]
    pub attrs: crate::claims::Attributes,
    /// The user's consent the grant was issued under (`consent::ConsentRecord::id`), for a
    /// client with `consent: required`: its tokens end when the user revokes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<String>,
}

impl Grant {
    pub fn scope_string(&self) -> String {
        self.scopes.join(" ")
    }
    pub fn has_scope(&self, s: &str) -> bool {
        self.scopes.iter().any(|x| x == s)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeRecord {
    pub grant: Grant,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
}

/// An access token as the store knows it (userinfo, introspection, revocation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessRecord {
    pub grant: Grant,
    pub jti: String,
    pub exp: u64,
    pub iat: u64,
    pub family: Option<String>,
    /// Claims a BuildAccessTokenClaims extension added (shown at introspection).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub ext_claims: Map<String, Value>,
}

/// The token request as token hooks see it.
pub struct TokenCall {
    /// `None` for a client without token hooks (nothing would read it).
    pub request: Option<crate::extensions::GuestRequest>,
    pub grant_type: String,
    /// The `act` claim (RFC 8693 4.1) of a token issued by token exchange.
    pub act: Option<Value>,
}

impl TokenCall {
    /// The request for a hook (always there when the client has hooks; fails closed if not).
    pub fn guest_request(&self) -> Result<crate::extensions::GuestRequest, OAuthError> {
        self.request
            .clone()
            .ok_or_else(|| OAuthError::server_error("a claims extension failed"))
    }
}

/// Claims extensions added, per token.
#[derive(Default)]
pub struct ExtensionClaims {
    pub id_token: Map<String, Value>,
    pub access_token: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rotation {
    /// Unix seconds of the rotation.
    pub at: u64,
}

/// Where the answer of a rotation is kept, only for the grace period (it holds live tokens,
/// so it must not outlive the window in which a replay may get it again).
pub fn rotation_answer_key(token: &str) -> String {
    format!("oidc:rt-answer:{}", hash(token))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub grant: Grant,
    pub family: String,
    pub exp: u64,
    pub rotated: Option<Rotation>,
}

/// Marker left by a redeemed code, so a replay can revoke what the code issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedeemedCode {
    /// The store key of an opaque token's record, or the `jti` of a JWT (then `jwt_exp` is
    /// set).
    pub access_key: String,
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_exp: Option<u64>,
}

impl RedeemedCode {
    pub fn new(issued: &IssuedAccess, family: Option<String>) -> Self {
        match issued {
            IssuedAccess::Stored(key) => Self {
                access_key: key.clone(),
                family,
                jwt_exp: None,
            },
            IssuedAccess::Jwt { jti, exp } => Self {
                access_key: jti.clone(),
                family,
                jwt_exp: Some(*exp),
            },
        }
    }

    pub fn issued(&self) -> IssuedAccess {
        match self.jwt_exp {
            None => IssuedAccess::Stored(self.access_key.clone()),
            Some(exp) => IssuedAccess::Jwt {
                jti: self.access_key.clone(),
                exp,
            },
        }
    }
}

/// How an issued access token is withdrawn: an opaque token's record is deleted; a JWT has
/// no record, its `jti` joins the revocation set until its `exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuedAccess {
    Stored(String),
    Jwt { jti: String, exp: u64 },
}

/// What a user's JWT access tokens refer to (by their `gid` claim): the grant, for userinfo,
/// and the refresh family that issued them, whose revocation revokes them. One record per
/// authorization (per refresh family), not per token; client tokens have none.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantRecord {
    pub grant: Grant,
    pub family: Option<String>,
}

/// The claims of an RFC 9068 access token this provider writes (extension claims follow).
#[derive(Debug, Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: Value,
    exp: u64,
    iat: u64,
    jti: &'a str,
    client_id: &'a str,
    scope: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<u64>,
    /// The grant record of a user's token.
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<&'a str>,
    #[serde(flatten)]
    ext: &'a Map<String, Value>,
}

/// The claim naming a user's token's grant record: internal, never shown at introspection.
pub const GRANT_CLAIM: &str = "gid";

/// A live access token, as userinfo, introspection and revocation see it.
pub enum LiveAccess {
    /// An opaque token: its record.
    Opaque(AccessRecord),
    /// A JWT: its verified claims, and the grant when it was issued to a user.
    Jwt {
        claims: Map<String, Value>,
        grant: Option<Grant>,
    },
}

impl LiveAccess {
    pub fn client_id(&self) -> &str {
        match self {
            Self::Opaque(r) => &r.grant.client_id,
            Self::Jwt { claims, .. } => claims
                .get("client_id")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        }
    }

    /// The grant of a token issued to a user (`None` for a client's own token).
    pub fn user_grant(&self) -> Option<&Grant> {
        match self {
            Self::Opaque(r) => Some(&r.grant).filter(|g| g.sub.is_some()),
            Self::Jwt { grant, .. } => grant.as_ref(),
        }
    }

    pub fn issued(&self) -> IssuedAccess {
        match self {
            Self::Opaque(r) => IssuedAccess::Stored(access_key(&r.jti)),
            Self::Jwt { claims, .. } => IssuedAccess::Jwt {
                jti: claims
                    .get("jti")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                exp: claims.get("exp").and_then(Value::as_u64).unwrap_or(0),
            },
        }
    }
}

pub fn hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

pub fn code_key(code: &str) -> String {
    format!("oidc:code:{}", hash(code))
}
pub fn redeemed_key(code: &str) -> String {
    format!("oidc:code-used:{}", hash(code))
}
pub fn access_key(id: &str) -> String {
    format!("oidc:at:{id}")
}
pub fn refresh_key(token: &str) -> String {
    format!("oidc:rt:{}", hash(token))
}
pub fn family_revoked_key(family: &str) -> String {
    format!("oidc:rt-family-revoked:{family}")
}
/// A revoked JWT access token, kept until its `exp`.
pub fn revoked_jti_key(jti: &str) -> String {
    format!("oidc:at-revoked:{jti}")
}
pub fn grant_key(gid: &str) -> String {
    format!("oidc:grant:{gid}")
}

fn to_bytes<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// A token of `len` URL-safe characters from the CSPRNG.
pub fn random_chars(len: usize) -> String {
    let mut s = random_token(len.div_ceil(4) * 3 + 3);
    s.truncate(len);
    s
}

/// What a token response carries, before it is turned into JSON.
pub struct Minted {
    pub response: Value,
    pub access: IssuedAccess,
    pub family: Option<String>,
}

impl Provider {
    /// Issues an access token, an ID token (scope `openid` with a user) and, when
    /// `refresh_family` is given, a refresh token in that family.
    pub async fn mint(
        &self,
        client: &Client,
        grant: &Grant,
        nonce: Option<&str>,
        refresh_family: Option<String>,
        call: &TokenCall,
    ) -> Result<Minted, OAuthError> {
        let mut ext = self.extension_claims(client, grant, call).await?;
        if let Some(act) = &call.act {
            // Written like an extension's claim: into the JWT, or the opaque token's record
            // that introspection renders.
            ext.access_token.insert("act".into(), act.clone());
        }
        let now = now_unix();
        let settings = &client.access_token;
        let exp = now + settings.lifetime.as_secs();
        let (access_token, access) = match settings.format {
            AccessTokenFormat::Jwt => {
                let jti = random_token(16);
                // A user's token refers to its grant (one record per refresh family, else
                // per token); a client's own token carries all it stands for.
                // A family bound to a session and the same family unbound (a survivor of
                // the session's end) have separate records: unbinding must not revive the
                // tokens the session's end ended.
                let gid = grant
                    .sub
                    .is_some()
                    .then(|| match (&refresh_family, &grant.sid) {
                        (Some(f), Some(_)) => f.clone(),
                        (Some(f), None) => format!("{f}.unbound"),
                        (None, _) => jti.clone(),
                    });
                if let Some(gid) = &gid {
                    let rec = GrantRecord {
                        grant: grant.clone(),
                        family: refresh_family.clone(),
                    };
                    self.put_state(&grant_key(gid), to_bytes(&rec), settings.lifetime)
                        .await?;
                }
                let token = self.jwt_access_token(
                    client,
                    grant,
                    (&jti, gid.as_deref()),
                    now,
                    exp,
                    &ext.access_token,
                )?;
                (token, IssuedAccess::Jwt { jti, exp })
            }
            AccessTokenFormat::Opaque => {
                let t = random_chars(settings.length);
                let id = hash(&t);
                let record = AccessRecord {
                    grant: grant.clone(),
                    jti: id.clone(),
                    exp,
                    iat: now,
                    family: refresh_family.clone(),
                    ext_claims: ext.access_token,
                };
                let key = access_key(&id);
                self.put_state(&key, to_bytes(&record), settings.lifetime)
                    .await?;
                (t, IssuedAccess::Stored(key))
            }
        };
        let mut response = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": settings.lifetime.as_secs(),
            "scope": grant.scope_string(),
        });
        if grant.sub.is_some() && grant.has_scope("openid") {
            let id_token = self.id_token(
                client,
                grant,
                nonce,
                Some(&access_token),
                now,
                &ext.id_token,
            )?;
            response["id_token"] = json!(id_token);
        }
        if let Some(family) = &refresh_family {
            let rt = random_chars(client.refresh.length);
            let rec = RefreshRecord {
                grant: grant.clone(),
                family: family.clone(),
                exp: now + client.refresh.lifetime.as_secs(),
                rotated: None,
            };
            self.put_state(&refresh_key(&rt), to_bytes(&rec), client.refresh.lifetime)
                .await?;
            response["refresh_token"] = json!(rt);
        }
        Ok(Minted {
            response,
            access,
            family: refresh_family,
        })
    }

    fn sign<T: Serialize>(
        &self,
        key: &SigningKey,
        typ: TokenType,
        claims: &T,
    ) -> Result<String, OAuthError> {
        let fail = |e: String| {
            tracing::error!(error = %e, "signing failed");
            OAuthError::server_error("the token could not be signed")
        };
        let json = serde_json::to_vec(claims).map_err(|e| fail(e.to_string()))?;
        key.sign(typ, &json).map_err(fail)
    }

    /// The key at `index` of the configured keys (a client's chosen algorithm, checked when
    /// the configuration was compiled), else the first.
    fn key_at(&self, index: usize) -> &SigningKey {
        self.keys.get(index).unwrap_or_else(|| self.signing_key())
    }

    fn jwt_access_token(
        &self,
        client: &Client,
        grant: &Grant,
        (jti, gid): (&str, Option<&str>),
        now: u64,
        exp: u64,
        extra: &Map<String, Value>,
    ) -> Result<String, OAuthError> {
        let aud: Value = match grant.audiences.as_slice() {
            [] => json!(client.id),
            [one] => json!(one),
            many => json!(many),
        };
        // Extension claims cannot be reserved ones (refused when the call returned); one
        // that names a member written here (`scope`) replaces it, as it always did.
        let mut ext = std::borrow::Cow::Borrowed(extra);
        let mut scope = json!(grant.scope_string());
        if extra.contains_key("scope") || extra.contains_key(GRANT_CLAIM) {
            let owned = ext.to_mut();
            if let Some(s) = owned.remove("scope") {
                scope = s;
            }
            owned.remove(GRANT_CLAIM);
        }
        let claims = AccessClaims {
            iss: &self.issuer,
            sub: grant.sub.as_deref().unwrap_or(&client.id),
            aud,
            exp,
            iat: now,
            jti,
            client_id: &client.id,
            scope,
            auth_time: grant.auth_time,
            gid,
            ext: &ext,
        };
        self.sign(
            self.key_at(client.access_token_key),
            TokenType::Access,
            &claims,
        )
    }

    pub fn id_token(
        &self,
        client: &Client,
        grant: &Grant,
        nonce: Option<&str>,
        access_token: Option<&str>,
        now: u64,
        extra: &Map<String, Value>,
    ) -> Result<String, OAuthError> {
        let requested = grant.requested.as_ref().and_then(|r| r.get("id_token"));
        let mut claims = released(&grant.claims, &grant.scopes, requested);
        // Merged over the mapped claims; the protocol claims below come last.
        claims.extend(extra.clone());
        let mut set = |k: &str, v: Value| {
            claims.insert(k.to_string(), v);
        };
        set("iss", json!(self.issuer));
        set("sub", json!(grant.sub));
        set("aud", json!(client.id));
        set("azp", json!(client.id));
        set("iat", json!(now));
        set("exp", json!(now + client.id_token_lifetime.as_secs()));
        if let Some(t) = grant.auth_time {
            set("auth_time", json!(t));
        }
        if let Some(n) = nonce {
            set("nonce", json!(n));
        }
        if let Some(acr) = &grant.acr {
            set("acr", json!(acr));
        }
        if !grant.amr.is_empty() {
            set("amr", json!(grant.amr));
        }
        if let Some(sid) = &grant.sid {
            set("sid", json!(sid));
        }
        let key = self.key_at(client.id_token_key);
        if let Some(at) = access_token {
            // the hash that goes with the ID token's own `alg` (OIDC Core 3.1.3.6)
            set("at_hash", json!(key.alg.half_hash(at)));
        }
        self.sign(key, TokenType::Id, &claims)
    }

    /// Verifies a token this provider signed (any published key, so tokens of a key being
    /// rotated out stay valid until it is removed); `typ` must match, `iss` must be ours,
    /// and with `check_exp` it must carry an `exp` still in the future.
    pub fn verify(
        &self,
        token: &str,
        typ: TokenType,
        check_exp: bool,
    ) -> Option<Map<String, Value>> {
        let payload = self.keys.iter().find_map(|k| k.verify(typ, token))?;
        let claims: Map<String, Value> = serde_json::from_slice(&payload).ok()?;
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return None;
        }
        if check_exp && claims.get("exp").and_then(Value::as_u64)? <= now_unix() {
            return None;
        }
        Some(claims)
    }

    /// Finds a live access token (JWT or opaque), or `None` when it is unknown, expired,
    /// revoked, or its refresh family was revoked. A JWT is checked by its signature and
    /// expiry, then against the revocation set (and its grant record, for a user's token).
    pub async fn access_record(&self, token: &str) -> Result<Option<LiveAccess>, OAuthError> {
        if token.matches('.').count() == 2 {
            return self.live_jwt(token).await;
        }
        let Some(bytes) = self.store.get(&access_key(&hash(token))).await? else {
            return Ok(None);
        };
        let Ok(rec) = serde_json::from_slice::<AccessRecord>(&bytes) else {
            return Ok(None);
        };
        if rec.exp <= now_unix() {
            return Ok(None);
        }
        if let Some(f) = &rec.family {
            if self.family_revoked(f).await? {
                return Ok(None);
            }
        }
        if self.session_ended(&rec.grant).await? || self.consent_withdrawn(&rec.grant).await? {
            return Ok(None);
        }
        Ok(Some(LiveAccess::Opaque(rec)))
    }

    /// The claims of an access token this provider signed and that has not expired; a
    /// token verified before is not verified again (see `verified`).
    fn verified_access(&self, token: &str) -> Option<Arc<Map<String, Value>>> {
        let now = now_unix();
        let claims = match self.verified.get(token) {
            Some(c) => c,
            None => {
                let c = Arc::new(self.verify(token, TokenType::Access, false)?);
                self.verified.insert(token, c.clone(), now);
                c
            }
        };
        (claims.get("exp").and_then(Value::as_u64)? > now).then_some(claims)
    }

    async fn live_jwt(&self, token: &str) -> Result<Option<LiveAccess>, OAuthError> {
        let Some(claims) = self.verified_access(token) else {
            return Ok(None);
        };
        let mut claims = Arc::unwrap_or_clone(claims);
        let Some(jti) = claims.get("jti").and_then(Value::as_str) else {
            return Ok(None);
        };
        if self.store.get(&revoked_jti_key(jti)).await?.is_some() {
            return Ok(None);
        }
        let grant = match claims.remove(GRANT_CLAIM) {
            None => None,
            Some(gid) => {
                let Some(gid) = gid.as_str() else {
                    return Ok(None);
                };
                let Some(bytes) = self.store.get(&grant_key(gid)).await? else {
                    return Ok(None);
                };
                let Ok(rec) = serde_json::from_slice::<GrantRecord>(&bytes) else {
                    return Ok(None);
                };
                if let Some(f) = &rec.family {
                    if self.family_revoked(f).await? {
                        return Ok(None);
                    }
                }
                if self.session_ended(&rec.grant).await?
                    || self.consent_withdrawn(&rec.grant).await?
                {
                    return Ok(None);
                }
                Some(rec.grant)
            }
        };
        Ok(Some(LiveAccess::Jwt { claims, grant }))
    }

    /// Withdraws an issued access token: an opaque token's record is deleted, a JWT's `jti`
    /// is revoked until its `exp`.
    pub async fn withdraw(&self, issued: &IssuedAccess) -> Result<(), OAuthError> {
        match issued {
            IssuedAccess::Stored(key) => {
                self.store.delete(key).await?;
            }
            IssuedAccess::Jwt { jti, exp } => {
                let left = exp.saturating_sub(now_unix());
                if left > 0 {
                    let ttl = Duration::from_secs(left + 1);
                    self.put_revocation(&revoked_jti_key(jti), ttl).await?;
                }
            }
        }
        Ok(())
    }

    pub async fn family_revoked(&self, family: &str) -> Result<bool, OAuthError> {
        Ok(self.store.get(&family_revoked_key(family)).await?.is_some())
    }

    pub async fn revoke_family(&self, family: &str, lifetime: Duration) -> Result<(), OAuthError> {
        self.put_revocation(&family_revoked_key(family), lifetime)
            .await
    }

    /// The subject for a user: the configured attribute or `<idp>.sub`, pairwise if asked.
    pub fn subject(
        &self,
        client: &Client,
        attrs: &crate::claims::Attributes,
        idp: &str,
    ) -> Option<String> {
        let local = match &client.subject_attribute {
            Some(a) => a.get(attrs),
            None => attrs.get(&format!("{idp}.sub")),
        }
        .and_then(crate::claims::render_value)?
        .into_owned();
        if !client.pairwise {
            return Some(local);
        }
        let sector = client
            .redirect_uris
            .first()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| client.id.clone());
        let salt = self
            .pairwise_salt
            .as_ref()
            .map(|s| s.expose())
            .unwrap_or("");
        Some(hash(&format!("{sector}|{local}|{salt}")))
    }
}

impl Provider {
    /// Runs the client's BuildIDTokenClaims / BuildAccessTokenClaims hooks. A failed call
    /// fails the token request (`server_error`): no token without the claims it should carry.
    async fn extension_claims(
        &self,
        client: &Client,
        grant: &Grant,
        call: &TokenCall,
    ) -> Result<ExtensionClaims, OAuthError> {
        let mut out = ExtensionClaims::default();
        let hooks = [
            (&client.hooks.id_token_claims, true),
            (&client.hooks.access_token_claims, false),
        ];
        for (hook, for_id_token) in hooks {
            let Some(hook) = hook else { continue };
            if for_id_token && !(grant.sub.is_some() && grant.has_scope("openid")) {
                continue;
            }
            let token = crate::extensions::TokenContext {
                client_id: client.id.clone(),
                subject: grant.sub.clone().unwrap_or_default(),
                grant_type: call.grant_type.clone(),
                scopes: grant.scopes.clone(),
                audience: if grant.audiences.is_empty() {
                    vec![client.id.clone()]
                } else {
                    grant.audiences.clone()
                },
            };
            let input = crate::extensions::HookCall {
                request: call.guest_request()?,
                attrs: grant.attrs.clone(),
            };
            let claims = hook
                .build_claims(input, token)
                .await
                .map_err(|_| OAuthError::server_error("a claims extension failed"))?
                .value;
            let target = if for_id_token {
                &mut out.id_token
            } else {
                &mut out.access_token
            };
            target.extend(claims);
        }
        Ok(out)
    }
}
