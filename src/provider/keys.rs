//! Signing keys of the provider: PEM files (PKCS#8) for ES256, RS256 and EdDSA (Ed25519).
//! The first key signs; all are published in the JWKS so keys can be rotated. Key ids are
//! RFC 7638 thumbprints, so the same key always has the same `kid` on every replica.
//!
//! Each key is parsed once, when the configuration is compiled, into a ring key pair
//! (assembly P-256 and RSA, the library rustls already links): signing a token is then one
//! signature, no key parsing and no public-key derivation per token. Tokens are verified
//! with the same keys' public halves, only in the exact form this provider writes.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use sha2::{Digest, Sha256};

/// An algorithm Tessera signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    Es256,
    Rs256,
    EdDsa,
}

impl SigningAlg {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(Self::Es256),
            "RS256" => Some(Self::Rs256),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
        }
    }
    pub fn jwt(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::Rs256 => Algorithm::RS256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }
    /// Left half of the hash used by `at_hash` (OIDC Core 3.1.3.6): SHA-256 for ES256/RS256,
    /// SHA-512 for Ed25519 (as the EdDSA signature itself uses).
    pub fn half_hash(self, token: &str) -> String {
        let digest: Vec<u8> = match self {
            Self::Es256 | Self::Rs256 => Sha256::digest(token.as_bytes()).to_vec(),
            Self::EdDsa => sha2::Sha512::digest(token.as_bytes()).to_vec(),
        };
        URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
    }
}

/// A key's private half, parsed once when the configuration is compiled (keys are immutable
/// until a reload): ring's assembly-optimised P-256, RSA and Ed25519 implementations.
enum Signer {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

pub struct SigningKey {
    pub alg: SigningAlg,
    pub kid: String,
    signer: Signer,
    /// The key as jsonwebtoken holds it (the JWK was derived from it): tools and tests sign
    /// with it; the provider's tokens are signed by `signer`.
    pub encoding: EncodingKey,
    /// The public half, for verifying our own tokens.
    public: UnparsedPublicKey<Vec<u8>>,
    /// `base64url(header)` of an access token (`typ: at+jwt`), an ID token (`typ: JWT`) and a
    /// logout token (`typ: logout+jwt`) signed with this key: built once, compared byte for
    /// byte when verifying.
    at_header: String,
    id_header: String,
    logout_header: String,
    /// The public JWK as published.
    pub jwk: serde_json::Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// RFC 7638 thumbprint of the public key's required members.
fn thumbprint(jwk: &Jwk) -> String {
    let canonical = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            p.x, p.y
        ),
        AlgorithmParameters::RSA(p) => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, p.e, p.n),
        AlgorithmParameters::OctetKeyPair(p) => {
            format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, p.x)
        }
        AlgorithmParameters::OctetKey(p) => format!(r#"{{"k":"{}","kty":"oct"}}"#, p.value),
        // Other key types are never produced from the three supported algorithms.
        _ => serde_json::to_string(&jwk.algorithm).unwrap_or_default(),
    };
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The JOSE header of a token, base64url: the members in the order jsonwebtoken wrote them
/// (`typ`, `alg`, `kid`), so tokens issued before and after this signer compare equal.
fn header_segment(typ: &str, alg: SigningAlg, kid: &str) -> String {
    let json = |s: &str| serde_json::Value::from(s).to_string();
    let text = format!(
        r#"{{"typ":{},"alg":{},"kid":{}}}"#,
        json(typ),
        json(alg.name()),
        json(kid)
    );
    URL_SAFE_NO_PAD.encode(text)
}

/// The DER of a PKCS#8 PEM private key.
fn pkcs8_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    let (label, der) = p256::pkcs8::der::pem::decode_vec(pem)
        .map_err(|e| format!("not a PEM private key: {e}"))?;
    if label != "PRIVATE KEY" {
        return Err(format!(
            "the PEM holds a `{label}`, not a PKCS#8 `PRIVATE KEY`"
        ));
    }
    Ok(der)
}

/// The P-256 key pair; a PKCS#8 whose `ECPrivateKey` omits the (optional) public key gets it
/// derived once here, as ring wants both halves.
fn ecdsa_pair(der: &[u8], rng: &SystemRandom) -> Result<EcdsaKeyPair, String> {
    let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
    if let Ok(pair) = EcdsaKeyPair::from_pkcs8(alg, der, rng) {
        return Ok(pair);
    }
    use p256::pkcs8::DecodePrivateKey;
    let secret = p256::SecretKey::from_pkcs8_der(der).map_err(|e| e.to_string())?;
    let public =
        p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false);
    EcdsaKeyPair::from_private_key_and_public_key(
        alg,
        secret.to_bytes().as_slice(),
        public.as_bytes(),
        rng,
    )
    .map_err(|e| e.to_string())
}

fn signer(der: &[u8], alg: SigningAlg) -> Result<(Signer, UnparsedPublicKey<Vec<u8>>), String> {
    let bad = |e: String| format!("not a {} private key in PEM: {e}", alg.name());
    Ok(match alg {
        SigningAlg::Es256 => {
            let pair = ecdsa_pair(der, rng()).map_err(bad)?;
            let public = pair.public_key().as_ref().to_vec();
            (
                Signer::Ecdsa(pair),
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public),
            )
        }
        SigningAlg::Rs256 => {
            let pair = RsaKeyPair::from_pkcs8(der).map_err(|e| bad(e.to_string()))?;
            let public = pair.public().as_ref().to_vec();
            (
                Signer::Rsa(pair),
                UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public),
            )
        }
        SigningAlg::EdDsa => {
            let pair =
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| bad(e.to_string()))?;
            let public = pair.public_key().as_ref().to_vec();
            (
                Signer::Ed25519(pair),
                UnparsedPublicKey::new(&signature::ED25519, public),
            )
        }
    })
}

/// The RNG of ECDSA nonces (hedged with the message digest by ring) and RSA blinding.
fn rng() -> &'static SystemRandom {
    static RNG: std::sync::OnceLock<SystemRandom> = std::sync::OnceLock::new();
    RNG.get_or_init(SystemRandom::new)
}

/// Which token a JWS is: the `typ` of its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// An RFC 9068 access token (`at+jwt`).
    Access,
    /// An ID token (`JWT`).
    Id,
    /// A back-channel logout token (`logout+jwt`).
    Logout,
}

impl SigningKey {
    /// Loads a PKCS#8 PEM private key for `alg`.
    pub fn from_pem(pem: &[u8], alg: SigningAlg) -> Result<Self, String> {
        let encoding = match alg {
            SigningAlg::Es256 => EncodingKey::from_ec_pem(pem),
            SigningAlg::Rs256 => EncodingKey::from_rsa_pem(pem),
            SigningAlg::EdDsa => EncodingKey::from_ed_pem(pem),
        }
        .map_err(|e| format!("not a {} private key in PEM: {e}", alg.name()))?;
        let mut jwk = Jwk::from_encoding_key(&encoding, alg.jwt())
            .map_err(|e| format!("cannot derive the public key: {e}"))?;
        if alg == SigningAlg::Rs256 {
            let bits = jwk_rsa_bits(&jwk);
            if bits < 2048 {
                return Err(format!(
                    "RSA keys must have at least 2048 bits, this one has {bits}"
                ));
            }
        }
        let (signer, public) = signer(&pkcs8_der(pem)?, alg)?;
        let kid = thumbprint(&jwk);
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let jwk = serde_json::to_value(&jwk).map_err(|e| e.to_string())?;
        Ok(Self {
            alg,
            at_header: header_segment("at+jwt", alg, &kid),
            id_header: header_segment("JWT", alg, &kid),
            logout_header: header_segment("logout+jwt", alg, &kid),
            kid,
            signer,
            encoding,
            public,
            jwk,
        })
    }

    pub fn from_file(path: &Path, alg: SigningAlg) -> Result<Self, String> {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read signing key {}: {e}", path.display()))?;
        Self::from_pem(&pem, alg)
    }

    fn header(&self, typ: TokenType) -> &str {
        match typ {
            TokenType::Access => &self.at_header,
            TokenType::Id => &self.id_header,
            TokenType::Logout => &self.logout_header,
        }
    }

    /// The compact JWS of `claims` (JSON) as a token of type `typ`.
    pub fn sign(&self, typ: TokenType, claims: &[u8]) -> Result<String, String> {
        let header = self.header(typ);
        let mut out = String::with_capacity(header.len() + claims.len() * 4 / 3 + 360);
        out.push_str(header);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut out);
        let fail = |_| "the signature failed".to_string();
        match &self.signer {
            Signer::Ecdsa(pair) => {
                let sig = pair.sign(rng(), out.as_bytes()).map_err(fail)?;
                out.push('.');
                URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut out);
            }
            Signer::Ed25519(pair) => {
                let sig = pair.sign(out.as_bytes());
                out.push('.');
                URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut out);
            }
            Signer::Rsa(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    rng(),
                    out.as_bytes(),
                    &mut sig,
                )
                .map_err(fail)?;
                out.push('.');
                URL_SAFE_NO_PAD.encode_string(&sig, &mut out);
            }
        }
        Ok(out)
    }

    /// The payload (JSON bytes) of `token` if this key signed it as a token of type `typ`:
    /// its header must be exactly the one this key writes, its signature must verify.
    pub fn verify(&self, typ: TokenType, token: &str) -> Option<Vec<u8>> {
        let rest = token.strip_prefix(self.header(typ))?.strip_prefix('.')?;
        let (payload, sig) = rest.split_once('.')?;
        let signed = &token[..token.len() - sig.len() - 1];
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        self.public.verify(signed.as_bytes(), &sig).ok()?;
        URL_SAFE_NO_PAD.decode(payload).ok()
    }
}

fn jwk_rsa_bits(jwk: &Jwk) -> usize {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => URL_SAFE_NO_PAD
            .decode(&p.n)
            .map(|n| {
                let lead = n.iter().position(|b| *b != 0).unwrap_or(n.len());
                (n.len() - lead) * 8
            })
            .unwrap_or(0),
        _ => 0,
    }
}

/// Generates a new private key as PKCS#8 PEM.
pub fn generate_pem(alg: SigningAlg) -> Result<String, String> {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let mut rng = rand::rngs::OsRng;
    let pem = match alg {
        SigningAlg::Es256 => p256::SecretKey::random(&mut rng)
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?,
        SigningAlg::Rs256 => rsa::RsaPrivateKey::new(&mut rng, 2048)
            .map_err(|e| e.to_string())?
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?,
        // PKCS#8 v1 (no embedded public key): the form jsonwebtoken and OpenSSL read.
        SigningAlg::EdDsa => ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: ed25519_dalek::SigningKey::generate(&mut rng).to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?,
    };
    Ok(pem.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn independent_decoding_key(key: &SigningKey) -> jsonwebtoken::DecodingKey {
        let jwk: Jwk = serde_json::from_value(key.jwk.clone()).unwrap();
        jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap()
    }

    /// Tokens signed here verify with another implementation (jsonwebtoken's pure-Rust
    /// backend, from the published JWK), and tokens it signs verify here: the form is
    /// interoperable and tokens issued before this signer stay valid.
    #[test]
    fn generated_keys_load_sign_and_verify() {
        for alg in [SigningAlg::Es256, SigningAlg::Rs256, SigningAlg::EdDsa] {
            let pem = generate_pem(alg).unwrap();
            let key = SigningKey::from_pem(pem.as_bytes(), alg).unwrap();
            assert_eq!(key.jwk["kid"], key.kid.as_str());
            assert_eq!(key.jwk["use"], "sig");
            assert_eq!(key.jwk["alg"], alg.name());
            assert!(key.jwk.get("d").is_none(), "no private part in the JWK");
            let claims = br#"{"sub":"x","exp":4102444800}"#;
            let token = key.sign(TokenType::Access, claims).unwrap();
            let mut v = jsonwebtoken::Validation::new(alg.jwt());
            v.validate_aud = false;
            let data = jsonwebtoken::decode::<serde_json::Value>(
                &token,
                &independent_decoding_key(&key),
                &v,
            )
            .unwrap();
            assert_eq!(data.claims["sub"], "x");
            assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(data.header.kid.as_deref(), Some(key.kid.as_str()));
            assert_eq!(key.verify(TokenType::Access, &token).unwrap(), claims);
            // the type is part of what is verified
            assert!(key.verify(TokenType::Id, &token).is_none());
            // a token jsonwebtoken signed with the same key (the former signer) verifies
            let mut header = jsonwebtoken::Header::new(alg.jwt());
            header.kid = Some(key.kid.clone());
            header.typ = Some("JWT".into());
            let encoding = match alg {
                SigningAlg::Es256 => EncodingKey::from_ec_pem(pem.as_bytes()),
                SigningAlg::Rs256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
                SigningAlg::EdDsa => EncodingKey::from_ed_pem(pem.as_bytes()),
            }
            .unwrap();
            let old =
                jsonwebtoken::encode(&header, &serde_json::json!({"sub": "y"}), &encoding).unwrap();
            assert_eq!(key.verify(TokenType::Id, &old).unwrap(), br#"{"sub":"y"}"#);
            // same key, same kid
            assert_eq!(
                SigningKey::from_pem(pem.as_bytes(), alg).unwrap().kid,
                key.kid
            );
        }
        assert!(SigningKey::from_pem(b"nope", SigningAlg::Es256).is_err());
        let ec = generate_pem(SigningAlg::Es256).unwrap();
        assert!(SigningKey::from_pem(ec.as_bytes(), SigningAlg::Rs256).is_err());
    }

    /// Whatever is changed in a signed token, it no longer verifies.
    #[test]
    fn tampered_tokens_are_refused() {
        let key = SigningKey::from_pem(
            generate_pem(SigningAlg::Es256).unwrap().as_bytes(),
            SigningAlg::Es256,
        )
        .unwrap();
        let other = SigningKey::from_pem(
            generate_pem(SigningAlg::Es256).unwrap().as_bytes(),
            SigningAlg::Es256,
        )
        .unwrap();
        let token = key.sign(TokenType::Id, br#"{"sub":"x"}"#).unwrap();
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"y"}"#);
        for bad in [
            format!("{head}.{forged_payload}.{sig}"),
            format!("{token}x"),
            format!("{head}.{rest}.extra"),
            token[..token.len() - 2].to_string(),
            format!("{}.{rest}", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#)),
            String::new(),
        ] {
            assert!(key.verify(TokenType::Id, &bad).is_none(), "{bad}");
        }
        assert!(other.verify(TokenType::Id, &token).is_none());
    }
}
