//! JWT access tokens of an upstream OpenID Connect IdP (RFC 9068), for policies that accept
//! bearer tokens: verified with the keys of the JWKS the connector already fetches for ID
//! tokens (the same fetch, kept in a second form), never with a key the token names itself.
//!
//! - The algorithm is pinned by the key: a JWK's `alg` (or, without one, its key type and
//!   curve: RSA → RS256, P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA) is the only
//!   algorithm its tokens may claim. Symmetric (`oct`) and encryption keys are never used, so
//!   neither `alg: none` nor an HMAC made with a public key as the secret can verify.
//! - `iss` must equal the IdP's issuer exactly; `exp` is required, `exp` and `nbf` are judged
//!   with [`LEEWAY`] seconds of clock skew.
//! - `typ` must be `at+jwt` (RFC 9068 section 2.1) unless the policy accepts untyped tokens
//!   of this IdP; then an ID token (`nonce`, `at_hash` or `c_hash`) is still refused.
//! - `aud` is the policy's to check (one audience check for every issuer).

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Clock skew tolerated on `exp` and `nbf` (as for the IdP's ID tokens).
pub const LEEWAY: u64 = 60;

/// Why a token was refused; the texts are the gateway's own (they go into the
/// `WWW-Authenticate` answer, never anything the token says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessTokenError {
    /// No published key has the token's `kid`: perhaps the IdP rotated its keys.
    UnknownKey,
    /// The IdP's keys are not known (its discovery has not succeeded yet).
    Unavailable,
    Invalid(&'static str),
}

struct AccessKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The signing keys of one IdP, each with the one algorithm it verifies.
#[derive(Default)]
pub struct AccessKeys {
    keys: Vec<AccessKey>,
}

impl std::fmt::Debug for AccessKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| (&k.kid, k.alg)).collect();
        f.debug_struct("AccessKeys").field("keys", &kids).finish()
    }
}

/// The one algorithm a JWK verifies, or `None` for a key that must not verify access tokens
/// (symmetric, encryption, unsupported, or an `alg` that contradicts the key type).
fn pinned_alg(jwk: &Jwk) -> Option<Algorithm> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let Some(declared) = jwk.common.key_algorithm else {
        return Some(by_type);
    };
    let alg = match declared {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    };
    // The declared algorithm must belong to the key's type (an RSA key never verifies ES256).
    let same_family = match by_type {
        Algorithm::RS256 => matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        other => alg == other,
    };
    same_family.then_some(alg)
}

/// `typ` values of an RFC 9068 access token (media type, with or without `application/`).
fn is_access_token_type(typ: &str) -> bool {
    let t = typ.to_ascii_lowercase();
    t == "at+jwt" || t == "application/at+jwt"
}

impl AccessKeys {
    /// The usable keys of a JWKS document (`{"keys": [...]}`); other keys are left out.
    pub fn from_jwks(jwks: &Value) -> Self {
        let Ok(set) = serde_json::from_value::<JwkSet>(jwks.clone()) else {
            return Self::default();
        };
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let alg = pinned_alg(jwk)?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some(AccessKey {
                    kid: jwk.common.key_id.clone(),
                    alg,
                    key,
                })
            })
            .collect();
        Self { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a token names by `kid`; a token without one only when there is one key.
    fn find(&self, kid: Option<&str>) -> Option<&AccessKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }

    /// The key `kid` names (a token without `kid`: only when there is one key) and the
    /// algorithm pinned to it, for other JWTs of the same IdP (logout tokens).
    pub fn key(&self, kid: Option<&str>) -> Option<(&DecodingKey, Algorithm)> {
        self.find(kid).map(|k| (&k.key, k.alg))
    }

    /// The claims of `token` if one of these keys signed it as an access token of `issuer`.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        untyped: bool,
    ) -> Result<Map<String, Value>, AccessTokenError> {
        use AccessTokenError::Invalid;
        // The header is read only for `kid` and `typ`; its `alg` must equal the key's.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Invalid("the token's header is not valid"))?;
        let key = self
            .find(header.kid.as_deref())
            .ok_or(AccessTokenError::UnknownKey)?;
        let typed = header.typ.as_deref().is_some_and(is_access_token_type);
        let id_token_type = header
            .typ
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("jwt"));
        let accepted = typed || (untyped && id_token_type);
        if !accepted {
            return Err(Invalid(
                "the token is not typed as an access token (at+jwt)",
            ));
        }
        let mut v = Validation::new(key.alg);
        v.leeway = LEEWAY;
        v.validate_nbf = true;
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp", "iss"]);
        v.set_issuer(&[issuer]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v)
            .map_err(|e| {
                Invalid(match e.kind() {
                    ErrorKind::InvalidAlgorithm => {
                        "the token is not signed with its key's algorithm"
                    }
                    ErrorKind::InvalidSignature => "the token's signature does not verify",
                    ErrorKind::ExpiredSignature => "the token expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet",
                    ErrorKind::InvalidIssuer => "the token's issuer is not accepted here",
                    ErrorKind::MissingRequiredClaim(_) => "the token lacks exp or iss",
                    _ => "the token is malformed",
                })
            })?
            .claims;
        if !typed
            && ["nonce", "at_hash", "c_hash"]
                .iter()
                .any(|c| claims.contains_key(*c))
        {
            return Err(Invalid("an ID token is not an access token"));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn key_pair() -> (EncodingKey, Value) {
        let pem =
            crate::provider::keys::generate_pem(crate::provider::keys::SigningAlg::Es256).unwrap();
        let enc = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("k1".into());
        (enc, serde_json::to_value(jwk).unwrap())
    }

    fn sign(enc: &EncodingKey, typ: Option<&str>, kid: Option<&str>, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.typ = typ.map(str::to_string);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&h, claims, enc).unwrap()
    }

    fn claims(exp_in: i64) -> Value {
        let now = crate::session::now_unix() as i64;
        json!({"iss": "https://idp", "sub": "svc", "aud": "api", "exp": now + exp_in})
    }

    #[test]
    fn verifies_typed_tokens_with_the_pinned_key_only() {
        let (enc, jwk) = key_pair();
        let keys = AccessKeys::from_jwks(&json!({ "keys": [jwk] }));
        let ok = sign(&enc, Some("at+jwt"), Some("k1"), &claims(300));
        assert_eq!(
            keys.verify(&ok, "https://idp", false).unwrap()["sub"],
            "svc"
        );
        let ok = sign(&enc, Some("application/at+jwt"), None, &claims(300));
        assert!(
            keys.verify(&ok, "https://idp", false).is_ok(),
            "one key: no kid needed"
        );
        let inv = |t: &str, untyped| keys.verify(t, "https://idp", untyped).unwrap_err();
        let id = sign(&enc, Some("JWT"), Some("k1"), &claims(300));
        assert_eq!(
            inv(&id, false),
            AccessTokenError::Invalid("the token is not typed as an access token (at+jwt)")
        );
        assert!(
            keys.verify(&id, "https://idp", true).is_ok(),
            "untyped accepted"
        );
        let mut with_nonce = claims(300);
        with_nonce["nonce"] = json!("n");
        let id = sign(&enc, Some("JWT"), Some("k1"), &with_nonce);
        assert_eq!(
            inv(&id, true),
            AccessTokenError::Invalid("an ID token is not an access token")
        );
        let other = sign(&enc, Some("at+jwt"), Some("k2"), &claims(300));
        assert_eq!(inv(&other, false), AccessTokenError::UnknownKey);
        let expired = sign(&enc, Some("at+jwt"), Some("k1"), &claims(-61));
        assert_eq!(
            inv(&expired, false),
            AccessTokenError::Invalid("the token expired")
        );
        let skewed = sign(&enc, Some("at+jwt"), Some("k1"), &claims(-30));
        assert!(keys.verify(&skewed, "https://idp", false).is_ok(), "leeway");
        assert_eq!(
            keys.verify(&ok, "https://idp/", false).unwrap_err(),
            AccessTokenError::Invalid("the token's issuer is not accepted here"),
            "the issuer is compared exactly"
        );
    }

    #[test]
    fn hmac_with_the_public_key_and_alg_none_never_verify() {
        let (_, jwk) = key_pair();
        let keys = AccessKeys::from_jwks(&json!({ "keys": [jwk.clone()] }));
        // HS256 with the public JWK's text as the secret
        let secret = EncodingKey::from_secret(jwk.to_string().as_bytes());
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some("k1".into());
        let forged = jsonwebtoken::encode(&h, &claims(300), &secret).unwrap();
        assert_eq!(
            keys.verify(&forged, "https://idp", false).unwrap_err(),
            AccessTokenError::Invalid("the token is not signed with its key's algorithm")
        );
        use base64::Engine;
        let b64 = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "at+jwt", "kid": "k1"})),
            b64(&claims(300))
        );
        assert_eq!(
            keys.verify(&none, "https://idp", false).unwrap_err(),
            AccessTokenError::Invalid("the token's header is not valid")
        );
        // a symmetric key in the JWKS is never used
        let oct = json!({"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0"}]});
        assert!(AccessKeys::from_jwks(&oct).is_empty());
        // an EC key declared RS256 is not used either
        let mut lying = jwk;
        lying["alg"] = json!("RS256");
        assert!(AccessKeys::from_jwks(&json!({ "keys": [lying] })).is_empty());
    }
}
