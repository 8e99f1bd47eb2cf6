//! What a token stands for (`Grant`), the records kept in the store for codes, access and
//! refresh tokens, and minting of ID tokens, access tokens (RFC 9068 JWT or opaque) and
//! refresh tokens. Only the store's atomic operations are used, so memory and Redis
//! backends behave alike.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use jsonwebtoken::Header;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::errors::OAuthError;
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
    pub amr: Vec<String>,
    /// Hash of the gateway session the grant came from (for logout).
    pub sid: Option<String>,
    pub audiences: Vec<String>,
    /// The user's attributes, kept only for clients whose token hooks read them.
    #[serde(default, skip_serializing_if = "crate::claims::Attributes::is_empty")]
    pub attrs: crate::claims::Attributes,
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
    pub request: crate::extensions::GuestRequest,
    pub grant_type: String,
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
    pub access_key: String,
    pub family: Option<String>,
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
    pub access_key: String,
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
        let ext = self.extension_claims(client, grant, call).await?;
        let now = now_unix();
        let settings = &client.access_token;
        let exp = now + settings.lifetime.as_secs();
        let (access_token, jti) = match settings.format {
            AccessTokenFormat::Jwt => {
                let jti = random_token(16);
                (
                    self.jwt_access_token(client, grant, &jti, now, exp, &ext.access_token)?,
                    jti,
                )
            }
            AccessTokenFormat::Opaque => {
                let t = random_chars(settings.length);
                let id = hash(&t);
                (t, id)
            }
        };
        let record = AccessRecord {
            grant: grant.clone(),
            jti: jti.clone(),
            exp,
            iat: now,
            family: refresh_family.clone(),
            ext_claims: ext.access_token,
        };
        let akey = access_key(&jti);
        self.store
            .put(&akey, to_bytes(&record), settings.lifetime)
            .await?;
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
            self.store
                .put(&refresh_key(&rt), to_bytes(&rec), client.refresh.lifetime)
                .await?;
            response["refresh_token"] = json!(rt);
        }
        Ok(Minted {
            response,
            access_key: akey,
            family: refresh_family,
        })
    }

    fn sign(&self, typ: &str, claims: &Value) -> Result<String, OAuthError> {
        let key = self.signing_key();
        let mut header = Header::new(key.alg.jwt());
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.to_string());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| {
            tracing::error!(error = %e, "signing failed");
            OAuthError::server_error("the token could not be signed")
        })
    }

    fn jwt_access_token(
        &self,
        client: &Client,
        grant: &Grant,
        jti: &str,
        now: u64,
        exp: u64,
        extra: &Map<String, Value>,
    ) -> Result<String, OAuthError> {
        let aud: Value = match grant.audiences.as_slice() {
            [] => json!(client.id),
            [one] => json!(one),
            many => json!(many),
        };
        let mut claims = json!({
            "iss": self.issuer,
            "sub": grant.sub.clone().unwrap_or_else(|| client.id.clone()),
            "aud": aud,
            "exp": exp,
            "iat": now,
            "jti": jti,
            "client_id": client.id,
            "scope": grant.scope_string(),
        });
        if let Some(t) = grant.auth_time {
            claims["auth_time"] = json!(t);
        }
        // Extension claims cannot be reserved ones (refused when the call returned).
        for (k, v) in extra {
            claims[k.as_str()] = v.clone();
        }
        self.sign("at+jwt", &claims)
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
        if !grant.amr.is_empty() {
            set("amr", json!(grant.amr));
        }
        if let Some(sid) = &grant.sid {
            set("sid", json!(sid));
        }
        if let Some(at) = access_token {
            set("at_hash", json!(self.signing_key().alg.half_hash(at)));
        }
        self.sign("JWT", &Value::Object(claims))
    }

    /// Verifies a token this provider signed (any published key); `typ` must match.
    pub fn verify(&self, token: &str, typ: &str, check_exp: bool) -> Option<Value> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref().map(|t| t.eq_ignore_ascii_case(typ)) != Some(true) {
            return None;
        }
        let key = self
            .keys
            .iter()
            .find(|k| header.kid.as_deref() == Some(k.kid.as_str()) && k.alg.jwt() == header.alg)?;
        let mut v = jsonwebtoken::Validation::new(key.alg.jwt());
        v.validate_aud = false;
        v.validate_exp = check_exp;
        v.leeway = 0;
        v.set_issuer(&[&self.issuer]);
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &key.decoding, &v)
            .ok()
            .map(|d| d.claims)
    }

    /// Finds the live record of an access token (JWT or opaque), or `None` when it is
    /// unknown, expired, revoked, or its refresh family was revoked.
    pub async fn access_record(&self, token: &str) -> Result<Option<AccessRecord>, OAuthError> {
        let id = if token.matches('.').count() == 2 {
            match self
                .verify(token, "at+jwt", true)
                .and_then(|c| c["jti"].as_str().map(str::to_string))
            {
                Some(jti) => jti,
                None => return Ok(None),
            }
        } else {
            hash(token)
        };
        let Some(bytes) = self.store.get(&access_key(&id)).await? else {
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
        Ok(Some(rec))
    }

    pub async fn family_revoked(&self, family: &str) -> Result<bool, OAuthError> {
        Ok(self.store.get(&family_revoked_key(family)).await?.is_some())
    }

    pub async fn revoke_family(&self, family: &str, lifetime: Duration) -> Result<(), OAuthError> {
        self.store
            .put(
                &family_revoked_key(family),
                Bytes::from_static(b"1"),
                lifetime,
            )
            .await?;
        Ok(())
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
                request: call.request.clone(),
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
