//! OpenID Connect claims: which claims each scope releases (OIDC Core 5.4), the default
//! mapping from session attributes, and the `claims` request parameter (OIDC Core 5.5).

use serde_json::{Map, Value};

use super::{AttrRef, Attributes};

/// Standard scopes and the claims they release.
pub const SCOPE_CLAIMS: [(&str, &[&str]); 4] = [
    (
        "profile",
        &[
            "name",
            "family_name",
            "given_name",
            "middle_name",
            "nickname",
            "preferred_username",
            "profile",
            "picture",
            "website",
            "gender",
            "birthdate",
            "zoneinfo",
            "locale",
            "updated_at",
        ],
    ),
    ("email", &["email", "email_verified"]),
    ("address", &["address"]),
    ("phone", &["phone_number", "phone_number_verified"]),
];

/// Every standard claim a scope can release.
pub fn standard_claims() -> impl Iterator<Item = &'static str> {
    SCOPE_CLAIMS.iter().flat_map(|(_, c)| c.iter().copied())
}

fn scope_of(claim: &str) -> Option<&'static str> {
    SCOPE_CLAIMS
        .iter()
        .find(|(_, claims)| claims.contains(&claim))
        .map(|(s, _)| *s)
}

/// Claims that never come from attributes: the protocol sets them.
pub const RESERVED: [&str; 14] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "sid",
];

/// All claims the user has, from `attrs`: configured mappings first, then for every standard
/// claim not mapped, the attribute of the same name from the IdP the user logged in with.
pub fn user_claims(
    mapping: &[(String, AttrRef)],
    attrs: &Attributes,
    idp: &str,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (claim, attr) in mapping {
        if let Some(v) = attr.get(attrs) {
            out.insert(claim.clone(), v.clone());
        }
    }
    for claim in standard_claims() {
        if out.contains_key(claim) {
            continue;
        }
        if let Some(v) = attrs.get(&format!("{idp}.{claim}")) {
            out.insert(claim.to_string(), v.clone());
        }
    }
    out
}

/// The claims released for `scopes`: standard claims of the granted scopes, every custom
/// (non-standard) mapped claim, and those named individually in `requested` (a member of
/// the `claims` parameter, `userinfo` or `id_token`).
pub fn released(
    all: &Map<String, Value>,
    scopes: &[String],
    requested: Option<&Value>,
) -> Map<String, Value> {
    all.iter()
        .filter(|(name, _)| {
            let by_scope = match scope_of(name) {
                Some(scope) => scopes.iter().any(|s| s == scope),
                None => true,
            };
            by_scope || requested.and_then(|r| r.get(name.as_str())).is_some()
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scopes_release_their_claims_only() {
        let mut attrs = Attributes::new();
        attrs.insert("local.email".into(), json!("a@x"));
        attrs.insert("local.given_name".into(), json!("Alice"));
        attrs.insert("local.phone_number".into(), json!("+1"));
        attrs.insert("local.groups".into(), json!(["g"]));
        let mapping = vec![(
            "groups".to_string(),
            AttrRef::parse("local.groups").unwrap(),
        )];
        let all = user_claims(&mapping, &attrs, "local");
        assert_eq!(all.len(), 4);
        let r = released(&all, &["openid".into(), "email".into()], None);
        assert_eq!(r.get("email"), Some(&json!("a@x")));
        assert!(r.get("given_name").is_none());
        assert!(r.get("phone_number").is_none());
        assert_eq!(
            r.get("groups"),
            Some(&json!(["g"])),
            "custom claims are always released"
        );
        let r = released(
            &all,
            &["openid".into(), "profile".into()],
            Some(&json!({"phone_number": null})),
        );
        assert_eq!(r.get("given_name"), Some(&json!("Alice")));
        assert_eq!(
            r.get("phone_number"),
            Some(&json!("+1")),
            "individually requested"
        );
        assert!(r.get("email").is_none());
    }
}
