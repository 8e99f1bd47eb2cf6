//! Token exchange (RFC 8693) for delegation between services: a client that enables it
//! (`tokenExchange.audiences`) presents an access token of this provider (`subject_token`,
//! JWT or opaque, active as introspection decides: `Provider::access_record`) and gets a new
//! access token for one of its allowed audiences. The new token keeps the subject (its user,
//! claims, session binding), its scope is within the subject token's, and it carries an `act`
//! claim (section 4.1) naming the party acting for the subject: the requesting client, or
//! the subject of an `actor_token`; a subject token that already had an `act` is nested
//! inside it, so the chain of delegation stays visible. No refresh token or ID token is
//! issued.

use serde_json::{json, Map, Value};

use super::errors::OAuthError;
use super::grants::{Grant, TokenCall};
use super::params::Params;
use super::{Client, Provider};

/// The grant type (RFC 8693 section 2.1).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The only token type exchanged and issued: an access token of this provider.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The claims of an active access token of this provider and, for a user's token, its
/// grant; `what` names the parameter in errors.
async fn active(
    p: &Provider,
    params: &Params,
    what: &str,
) -> Result<Option<(Map<String, Value>, Option<Grant>)>, OAuthError> {
    let Some(token) = params.get(what) else {
        return Ok(None);
    };
    let type_param = format!("{what}_type");
    match params.get(&type_param).map(String::as_str) {
        None => {
            return Err(OAuthError::invalid_request(format!(
                "{type_param} is required"
            )))
        }
        Some(ACCESS_TOKEN_TYPE) => {}
        Some(other) => {
            return Err(OAuthError::invalid_request(format!(
                "{type_param} `{other}` is not supported: use {ACCESS_TOKEN_TYPE}"
            )))
        }
    }
    let live = p.access_record(token).await?.ok_or_else(|| {
        OAuthError::invalid_request(format!(
            "the {what} is not an active access token of this provider"
        ))
    })?;
    let grant = live.user_grant().cloned();
    Ok(Some((super::introspect::access_claims(p, live), grant)))
}

pub async fn exchange(
    p: &Provider,
    client: &Client,
    params: &Params,
    call: &TokenCall,
) -> Result<Value, OAuthError> {
    let allowed = client.token_exchange.as_deref().unwrap_or_default();
    if let Some(t) = params.get("requested_token_type") {
        if t != ACCESS_TOKEN_TYPE {
            return Err(OAuthError::invalid_request(format!(
                "requested_token_type `{t}` is not supported: use {ACCESS_TOKEN_TYPE}"
            )));
        }
    }
    let (subject, user_grant) = active(p, params, "subject_token")
        .await?
        .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
    let actor = active(p, params, "actor_token").await?;
    if actor.is_none() && params.contains_key("actor_token_type") {
        return Err(OAuthError::invalid_request(
            "actor_token_type without actor_token",
        ));
    }
    // The audiences: each `audience`/`resource` asked for must be allowed; none: all of them.
    let asked: Vec<&String> = ["audience", "resource"]
        .iter()
        .filter_map(|k| params.get(*k))
        .collect();
    if let Some(bad) = asked.iter().find(|a| !allowed.contains(a)) {
        return Err(OAuthError::invalid_target(format!(
            "audience `{bad}` is not allowed for this client"
        )));
    }
    let audiences: Vec<String> = if asked.is_empty() {
        allowed.to_vec()
    } else {
        let mut a: Vec<String> = asked.into_iter().cloned().collect();
        a.dedup();
        a
    };
    // The scope: within the subject token's (default: all of it), never offline_access.
    let held: Vec<&str> = subject
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    let mut scopes: Vec<String> = Vec::new();
    match params.get("scope") {
        None => scopes.extend(held.iter().map(|s| s.to_string())),
        Some(asked) => {
            for s in asked.split(' ').filter(|s| !s.is_empty()) {
                if !held.contains(&s) {
                    return Err(OAuthError::invalid_scope(format!(
                        "scope `{s}` is not in the subject token's scope"
                    )));
                }
                if !scopes.iter().any(|x| x == s) {
                    scopes.push(s.to_string());
                }
            }
        }
    }
    scopes.retain(|s| s != "offline_access");
    // Who acts for the subject; the subject token's own actor is nested (RFC 8693 4.1).
    let actor_sub = match &actor {
        Some((claims, _)) => claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or(&client.id)
            .to_string(),
        None => client.id.clone(),
    };
    let mut act = json!({ "sub": actor_sub });
    if let Some(prior) = subject.get("act") {
        act["act"] = prior.clone();
    }
    let subject_sub = subject
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| OAuthError::server_error("the subject token has no subject"))?
        .to_string();
    let grant = match user_grant {
        Some(g) => Grant {
            client_id: client.id.clone(),
            scopes,
            audiences,
            requested: None,
            attrs: Default::default(),
            ..g
        },
        None => Grant {
            client_id: client.id.clone(),
            sub: Some(subject_sub),
            scopes,
            claims: Default::default(),
            requested: None,
            auth_time: None,
            acr: None,
            amr: vec![],
            username: None,
            sid: None,
            audiences,
            attrs: Default::default(),
            consent: None,
        },
    };
    let call = TokenCall {
        request: call.request.clone(),
        grant_type: call.grant_type.clone(),
        act: Some(act),
    };
    let mut response = p.mint(client, &grant, None, None, &call).await?.response;
    if let Some(m) = response.as_object_mut() {
        // Token exchange answers with an access token only (RFC 8693 2.2.1).
        m.remove("id_token");
        m.insert("issued_token_type".into(), json!(ACCESS_TOKEN_TYPE));
    }
    Ok(response)
}
