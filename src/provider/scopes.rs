//! Which of the requested scopes a client is granted, at the authorization and token
//! endpoints alike.
//!
//! OpenID Connect Core 3.1.2.1: scope values that are not understood SHOULD be ignored, so a
//! scope the client may not have is dropped and the granted `scope` of the token response
//! says what was granted (RFC 6749 3.3). A client with `strictScopes` keeps the strict
//! answer, `invalid_scope`. A request that named scopes of which none can be granted is
//! `invalid_scope` in both modes (RFC 6749 3.3 lets the server fail a request it cannot give
//! a scope to): a token for nothing the client asked for would only hide its mistake.

use super::errors::OAuthError;

/// The scopes of `requested` (space-separated) that `allowed` admits, in the order asked,
/// each once. Another scope is dropped, or refused with `refusal(scope)` when `strict`.
pub fn granted(
    requested: Option<&str>,
    strict: bool,
    allowed: impl Fn(&str) -> bool,
    refusal: impl Fn(&str) -> String,
) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    let mut asked_any = false;
    for s in requested.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        asked_any = true;
        if !allowed(s) {
            if strict {
                return Err(OAuthError::invalid_scope(refusal(s)));
            }
            tracing::debug!(scope = s, "scope the client may not have: ignored");
            continue;
        }
        if !out.iter().any(|x| x == s) {
            out.push(s.to_string());
        }
    }
    if asked_any && out.is_empty() {
        return Err(OAuthError::invalid_scope(
            "none of the requested scopes is allowed for this client",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(s: &str) -> bool {
        ["openid", "email", "reports.read"].contains(&s)
    }

    fn refusal(s: &str) -> String {
        format!("scope `{s}` is not allowed for this client")
    }

    #[test]
    fn unknown_scopes_are_dropped_unless_strict() {
        let ask = Some("openid groups email openid admin");
        assert_eq!(
            granted(ask, false, known, refusal).unwrap(),
            ["openid", "email"]
        );
        let e = granted(ask, true, known, refusal).unwrap_err();
        assert_eq!(
            (e.code, e.description.as_str()),
            (
                "invalid_scope",
                "scope `groups` is not allowed for this client"
            )
        );
        assert_eq!(
            granted(Some("email"), true, known, refusal).unwrap(),
            ["email"]
        );
    }

    #[test]
    fn nothing_grantable_is_invalid_scope_and_nothing_asked_is_nothing() {
        for strict in [false, true] {
            let e = granted(Some("groups admin"), strict, known, refusal).unwrap_err();
            assert_eq!(e.code, "invalid_scope");
        }
        assert!(granted(None, false, known, refusal).unwrap().is_empty());
        assert!(granted(Some("  "), true, known, refusal)
            .unwrap()
            .is_empty());
    }
}
