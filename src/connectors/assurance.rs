//! What a login at a connector achieves: its Authentication Context Class Reference (`acr`,
//! OpenID Connect Core §2) and Authentication Method References (`amr`, RFC 8176).
//!
//! Each connector has a configured `Assurance` (`connectors[].acr`, `connectors[].amr`); a
//! login records the `Authentication` it achieved in the session, per connector, so that a
//! later authorization request reusing the session reports the same values. An upstream
//! OpenID Connect IdP's own ID token is believed over the configuration: it knows how the
//! user signed in there.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::oidc::UpstreamTokens;

/// What the configuration says a login at a connector achieves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assurance {
    /// `acr`: the class a login there achieves (e.g. `urn:example:mfa`); `None`: not stated.
    pub acr: Option<String>,
    /// `amr`: the methods used (RFC 8176 values). A password store defaults to `["pwd"]`, an
    /// upstream IdP to none (it reports its own).
    pub amr: Vec<String>,
}

/// One login as the session remembers it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Authentication {
    /// Unix seconds of the login (`auth_time`).
    pub at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
}

impl Assurance {
    /// What a login at `at` achieved: the upstream ID token's `acr`/`amr` when it carries
    /// them (each on its own), else the configured ones. A malformed upstream value (an `acr`
    /// that is not a string, an `amr` that is not a non-empty list of strings) is not
    /// believed: the configured value stands.
    pub fn achieved(&self, upstream: Option<&UpstreamTokens>, at: u64) -> Authentication {
        let claim = |name: &str| upstream.and_then(|t| t.id_claim_value(name));
        let acr = match claim("acr") {
            Some(Value::String(s)) if is_token(&s) => Some(s),
            _ => self.acr.clone(),
        };
        let amr = claim("amr")
            .and_then(|v| match v {
                Value::Array(items) if !items.is_empty() => items
                    .into_iter()
                    .map(|i| match i {
                        Value::String(s) if is_token(&s) => Some(s),
                        _ => None,
                    })
                    .collect::<Option<Vec<String>>>(),
                _ => None,
            })
            .unwrap_or_else(|| self.amr.clone());
        Authentication { at, acr, amr }
    }
}

/// A value fit for `acr` or `amr`: non-empty printable ASCII without spaces (`acr_values`
/// is space-separated), at most 256 bytes.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn tokens(claims: Value) -> UpstreamTokens {
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        UpstreamTokens {
            id_token: Some(format!("e30.{body}.sig")),
            refresh_token: None,
            expires_at: None,
        }
    }

    fn configured() -> Assurance {
        Assurance {
            acr: Some("urn:example:silver".into()),
            amr: vec!["pwd".into()],
        }
    }

    #[test]
    fn a_login_without_upstream_achieves_the_configured_values() {
        let a = configured().achieved(None, 7);
        assert_eq!(
            a,
            Authentication {
                at: 7,
                acr: Some("urn:example:silver".into()),
                amr: vec!["pwd".into()],
            }
        );
    }

    #[test]
    fn the_upstream_id_token_is_believed_over_the_configuration() {
        let t = tokens(serde_json::json!({"acr": "urn:up:gold", "amr": ["pwd", "otp"]}));
        let a = configured().achieved(Some(&t), 1);
        assert_eq!(a.acr.as_deref(), Some("urn:up:gold"));
        assert_eq!(a.amr, vec!["pwd", "otp"]);
    }

    #[test]
    fn malformed_upstream_values_fall_back_to_the_configuration() {
        for claims in [
            serde_json::json!({"acr": 2, "amr": "pwd"}),
            serde_json::json!({"acr": "", "amr": []}),
            serde_json::json!({"acr": "a b", "amr": ["pwd", 3]}),
        ] {
            let a = configured().achieved(Some(&tokens(claims.clone())), 1);
            assert_eq!(a.acr.as_deref(), Some("urn:example:silver"), "{claims}");
            assert_eq!(a.amr, vec!["pwd"], "{claims}");
        }
        // Nothing configured and nothing upstream: nothing is invented.
        let a = Assurance::default().achieved(Some(&tokens(serde_json::json!({}))), 1);
        assert_eq!((a.acr, a.amr), (None, vec![]));
    }
}
