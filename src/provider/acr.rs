//! What an authorization request asks of the user's authentication: `acr_values` (OpenID
//! Connect Core §3.1.2.1, voluntary, in order of preference) and the `acr` member of the
//! `claims` parameter's `id_token` (§5.5.1.1: voluntary, or essential with `value`/`values`).
//!
//! The provider uses it three ways (see `authorize`): to pick which of the session's logins a
//! code is issued for, to steer a new login to a connector whose configured `acr` is wanted,
//! and to refuse (`access_denied`) when an essential `acr` is not achieved. A request no
//! connector can satisfy is only refused when it is essential; otherwise the user signs in as
//! usual and the ID token reports the `acr` really achieved.

use serde_json::Value;

use super::errors::OAuthError;
use crate::connectors::assurance::Authentication;

/// The `acr` an authorization request asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcrRequest {
    /// Wanted values, most preferred first: an essential request's values, else the
    /// `claims` values followed by `acr_values`.
    wanted: Vec<String>,
    /// `Some`: the `acr` is essential; the ID token must carry one of these values (empty:
    /// any value at all).
    essential: Option<Vec<String>>,
}

fn bad(message: &str) -> OAuthError {
    OAuthError::invalid_request(format!("claims: {message}"))
}

impl AcrRequest {
    /// From the request's `acr_values` and parsed `claims` parameter.
    pub fn parse(acr_values: Option<&str>, claims: Option<&Value>) -> Result<Self, OAuthError> {
        let listed: Vec<String> = acr_values
            .unwrap_or("")
            .split(' ')
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        let member = claims
            .and_then(|c| c.get("id_token"))
            .and_then(|t| t.get("acr"));
        let (values, essential) = match member {
            None | Some(Value::Null) => (vec![], false),
            Some(Value::Object(m)) => {
                let essential = match m.get("essential") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(bad("id_token.acr.essential must be true or false")),
                };
                let values = match (m.get("value"), m.get("values")) {
                    (Some(_), Some(_)) => {
                        return Err(bad("id_token.acr has both value and values"))
                    }
                    (Some(Value::String(v)), None) => vec![v.clone()],
                    (Some(_), None) => return Err(bad("id_token.acr.value must be a string")),
                    (None, Some(Value::Array(items))) => {
                        let strings: Option<Vec<String>> = items
                            .iter()
                            .map(|i| i.as_str().map(str::to_string))
                            .collect();
                        match strings {
                            Some(v) if !v.is_empty() => v,
                            _ => {
                                return Err(bad(
                                    "id_token.acr.values must be a non-empty array of strings",
                                ))
                            }
                        }
                    }
                    (None, Some(_)) => {
                        return Err(bad(
                            "id_token.acr.values must be a non-empty array of strings",
                        ))
                    }
                    (None, None) => vec![],
                };
                (values, essential)
            }
            Some(_) => return Err(bad("id_token.acr must be null or an object")),
        };
        let mut wanted = values.clone();
        if !essential {
            wanted.extend(listed);
        }
        let mut seen = std::collections::HashSet::new();
        wanted.retain(|v| seen.insert(v.clone()));
        Ok(Self {
            wanted,
            essential: essential.then_some(values),
        })
    }

    /// Whether the request says anything about `acr`.
    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty() && self.essential.is_none()
    }

    pub fn is_essential(&self) -> bool {
        self.essential.is_some()
    }

    /// Whether a login that achieved `acr` may get a code: always, unless the `acr` is
    /// essential and `acr` is not one of its values.
    pub fn accepts(&self, acr: Option<&str>) -> bool {
        match (&self.essential, acr) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(values), Some(a)) => values.is_empty() || values.iter().any(|v| v == a),
        }
    }

    /// Where `acr` stands in the preference order (`None`: not wanted).
    fn rank(&self, acr: Option<&str>) -> Option<usize> {
        let a = acr?;
        self.wanted.iter().position(|v| v == a)
    }

    /// Whether a login that achieved `acr` is what the request asks for: accepted, and one
    /// of the wanted values when there are any.
    pub fn satisfied_by(&self, acr: Option<&str>) -> bool {
        self.accepts(acr) && (self.wanted.is_empty() || self.rank(acr).is_some())
    }

    /// Of the session's logins (in the client's `idps` order), the one a code is issued for:
    /// an accepted one before others, then the most preferred `acr`, then the client's order.
    pub fn best_login<'a>(
        &self,
        logins: &'a [(String, Authentication)],
    ) -> Option<&'a (String, Authentication)> {
        logins
            .iter()
            .enumerate()
            .min_by_key(|(i, (_, a))| {
                let acr = a.acr.as_deref();
                (!self.accepts(acr), self.rank(acr).unwrap_or(usize::MAX), *i)
            })
            .map(|(_, l)| l)
    }

    /// The connector to send the user to so that the request is satisfied: among `idps` (the
    /// client's, in order), the first whose configured `acr` is the most preferred wanted
    /// value; for an essential request without values, the first with any accepted `acr`.
    /// `None`: no connector offers what is asked.
    pub fn steer<'a>(
        &self,
        idps: &'a [String],
        acr_of: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<&'a String> {
        self.wanted
            .iter()
            .filter(|v| self.accepts(Some(v)))
            .find_map(|v| idps.iter().find(|i| acr_of(i) == Some(v.as_str())))
            .or_else(|| {
                self.essential
                    .as_ref()
                    .filter(|values| values.is_empty())
                    .and_then(|_| idps.iter().find(|i| acr_of(i).is_some()))
            })
    }
}

/// What discovery may say about `acr` and `amr`: only what can really be issued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advertised {
    /// `acr_values_supported`: the distinct configured `acr` of the clients' connectors.
    pub acr_values: Vec<String>,
    /// `acr` in `claims_supported`: a connector has an `acr`, or is an upstream IdP (which
    /// may report one).
    pub acr: bool,
    /// `amr` in `claims_supported`: a connector reports methods (a password store, an
    /// upstream IdP, configured `amr`), or a client's password grant is checked by an
    /// extension (`pwd`).
    pub amr: bool,
}

impl Advertised {
    pub fn of<'a>(
        clients: impl Iterator<Item = &'a super::Client>,
        connectors: &crate::connectors::Connectors,
    ) -> Self {
        use crate::connectors::Connector;
        let mut out = Self::default();
        for c in clients {
            out.amr |= c.grants.password && c.hooks.backchannel.is_some();
            for idp in &c.idps {
                let upstream = matches!(
                    connectors.get(idp).map(|c| c.as_ref()),
                    Some(Connector::Oidc(_))
                );
                let a = connectors.achieved(idp, None, 0);
                out.acr |= upstream || a.acr.is_some();
                out.amr |= upstream || !a.amr.is_empty();
                if let Some(v) = a.acr {
                    if !out.acr_values.contains(&v) {
                        out.acr_values.push(v);
                    }
                }
            }
        }
        out.acr_values.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(acr_values: Option<&str>, claims: Value) -> Result<AcrRequest, String> {
        AcrRequest::parse(acr_values, Some(&claims)).map_err(|e| e.description)
    }

    fn login(idp: &str, acr: Option<&str>) -> (String, Authentication) {
        (
            idp.to_string(),
            Authentication {
                at: 1,
                acr: acr.map(str::to_string),
                amr: vec![],
            },
        )
    }

    #[test]
    fn acr_values_are_voluntary_and_ordered() {
        let r = parse(Some("urn:gold  urn:silver"), json!({})).unwrap();
        assert!(!r.is_essential());
        assert!(r.accepts(None));
        assert!(r.satisfied_by(Some("urn:silver")));
        assert!(!r.satisfied_by(Some("urn:bronze")));
        let logins = [login("a", Some("urn:silver")), login("b", Some("urn:gold"))];
        assert_eq!(r.best_login(&logins).unwrap().0, "b");
        let idps = ["a".to_string(), "b".to_string(), "c".to_string()];
        let acr = |i: &str| match i {
            "a" => Some("urn:silver"),
            "c" => Some("urn:gold"),
            _ => None,
        };
        assert_eq!(r.steer(&idps, acr).unwrap(), "c");
        assert_eq!(
            parse(Some("urn:none"), json!({}))
                .unwrap()
                .steer(&idps, acr),
            None
        );
    }

    #[test]
    fn essential_acr_limits_what_is_accepted() {
        let r = parse(
            Some("urn:silver"),
            json!({"id_token": {"acr": {"essential": true, "values": ["urn:gold"]}}}),
        )
        .unwrap();
        assert!(r.is_essential());
        assert!(!r.accepts(None));
        assert!(!r.accepts(Some("urn:silver")));
        assert!(r.accepts(Some("urn:gold")));
        let logins = [login("a", Some("urn:silver")), login("b", Some("urn:gold"))];
        assert_eq!(r.best_login(&logins).unwrap().0, "b");
        // acr_values do not widen an essential request.
        let idps = ["a".to_string()];
        assert_eq!(r.steer(&idps, |_| Some("urn:silver")), None);
        let any = parse(None, json!({"id_token": {"acr": {"essential": true}}})).unwrap();
        assert!(any.accepts(Some("x")) && !any.accepts(None));
        assert_eq!(any.steer(&idps, |_| Some("urn:silver")).unwrap(), "a");
        let one = parse(
            None,
            json!({"id_token": {"acr": {"essential": true, "value": "v"}}}),
        );
        assert!(one.unwrap().accepts(Some("v")));
    }

    #[test]
    fn a_voluntary_claims_acr_comes_before_acr_values() {
        let r = parse(
            Some("urn:silver"),
            json!({"id_token": {"acr": {"values": ["urn:gold"]}}}),
        )
        .unwrap();
        let logins = [login("a", Some("urn:silver")), login("b", Some("urn:gold"))];
        assert_eq!(r.best_login(&logins).unwrap().0, "b");
        assert!(r.accepts(None));
        assert!(parse(None, json!({"id_token": {"acr": null}}))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malformed_acr_requests_are_refused() {
        for (claims, message) in [
            (
                json!({"id_token": {"acr": "urn:gold"}}),
                "claims: id_token.acr must be null or an object",
            ),
            (
                json!({"id_token": {"acr": {"essential": "yes"}}}),
                "claims: id_token.acr.essential must be true or false",
            ),
            (
                json!({"id_token": {"acr": {"value": 1}}}),
                "claims: id_token.acr.value must be a string",
            ),
            (
                json!({"id_token": {"acr": {"values": "urn:gold"}}}),
                "claims: id_token.acr.values must be a non-empty array of strings",
            ),
            (
                json!({"id_token": {"acr": {"values": []}}}),
                "claims: id_token.acr.values must be a non-empty array of strings",
            ),
            (
                json!({"id_token": {"acr": {"values": ["a", 2]}}}),
                "claims: id_token.acr.values must be a non-empty array of strings",
            ),
            (
                json!({"id_token": {"acr": {"value": "a", "values": ["a"]}}}),
                "claims: id_token.acr has both value and values",
            ),
        ] {
            assert_eq!(
                parse(None, claims.clone()).unwrap_err(),
                message,
                "{claims}"
            );
        }
    }
}
