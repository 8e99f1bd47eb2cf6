//! Signing keys of the provider: PEM files (PKCS#8) for ES256, RS256 and EdDSA (Ed25519).
//! The first key signs; all are published in the JWKS so keys can be rotated. Key ids are
//! RFC 7638 thumbprints, so the same key always has the same `kid` on every replica.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
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

pub struct SigningKey {
    pub alg: SigningAlg,
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
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
        let kid = thumbprint(&jwk);
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let decoding =
            DecodingKey::from_jwk(&jwk).map_err(|e| format!("cannot use the public key: {e}"))?;
        let jwk = serde_json::to_value(&jwk).map_err(|e| e.to_string())?;
        Ok(Self {
            alg,
            kid,
            encoding,
            decoding,
            jwk,
        })
    }

    pub fn from_file(path: &Path, alg: SigningAlg) -> Result<Self, String> {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read signing key {}: {e}", path.display()))?;
        Self::from_pem(&pem, alg)
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

    #[test]
    fn generated_keys_load_sign_and_verify() {
        for alg in [SigningAlg::Es256, SigningAlg::Rs256, SigningAlg::EdDsa] {
            let pem = generate_pem(alg).unwrap();
            let key = SigningKey::from_pem(pem.as_bytes(), alg).unwrap();
            assert_eq!(key.jwk["kid"], key.kid.as_str());
            assert_eq!(key.jwk["use"], "sig");
            assert_eq!(key.jwk["alg"], alg.name());
            assert!(key.jwk.get("d").is_none(), "no private part in the JWK");
            let mut header = jsonwebtoken::Header::new(alg.jwt());
            header.kid = Some(key.kid.clone());
            let token = jsonwebtoken::encode(
                &header,
                &serde_json::json!({"sub": "x", "exp": 4102444800u64}),
                &key.encoding,
            )
            .unwrap();
            let mut v = jsonwebtoken::Validation::new(alg.jwt());
            v.validate_aud = false;
            let data =
                jsonwebtoken::decode::<serde_json::Value>(&token, &key.decoding, &v).unwrap();
            assert_eq!(data.claims["sub"], "x");
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
}
