//! Discovery (OpenID Connect Discovery 1.0, RFC 8414) and the JWKS. Only what really works
//! is advertised.

use http::header::{self, HeaderValue};
use http::Response;
use serde_json::{json, Value};

use super::{client_auth, Provider};
use crate::claims::oidc::standard_claims;
use crate::web::body::{full, Body};

pub fn document(p: &Provider, openid: bool) -> Value {
    let e = &p.endpoints;
    // Exactly the algorithms of the keys, each once (a client may be given any of them).
    let mut algs: Vec<&str> = Vec::new();
    for k in p.keys.iter() {
        if !algs.contains(&k.alg.name()) {
            algs.push(k.alg.name());
        }
    }
    let mut scopes = vec![
        "openid",
        "profile",
        "email",
        "address",
        "phone",
        "offline_access",
    ];
    let mut custom: Vec<&str> = p
        .clients
        .values()
        .flat_map(|c| c.custom_scopes.iter().map(String::as_str))
        .collect();
    custom.sort();
    custom.dedup();
    scopes.extend(custom);
    let mut grants = Vec::new();
    for (name, on) in [
        (
            "authorization_code",
            p.clients.values().any(|c| c.grants.authorization_code),
        ),
        (
            "refresh_token",
            p.clients.values().any(|c| c.grants.refresh_token),
        ),
        (
            "client_credentials",
            p.clients.values().any(|c| c.grants.client_credentials),
        ),
        ("password", p.clients.values().any(|c| c.grants.password)),
        (
            super::exchange::GRANT_TYPE,
            p.clients.values().any(|c| c.token_exchange.is_some()),
        ),
    ] {
        if on {
            grants.push(name);
        }
    }
    let mut claims: Vec<String> = [
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "azp",
        "at_hash",
        "sid",
    ]
    .iter()
    .chain(p.acr_advertised.acr.then_some(&"acr"))
    .chain(p.acr_advertised.amr.then_some(&"amr"))
    .map(|s| s.to_string())
    .chain(standard_claims().map(str::to_string))
    .collect();
    let mut custom_claims: Vec<String> = p
        .clients
        .values()
        .flat_map(|c| c.claims_mapping.iter().map(|(n, _)| n.clone()))
        .filter(|c| !claims.contains(c))
        .collect();
    custom_claims.sort();
    custom_claims.dedup();
    claims.extend(custom_claims);
    let auth_methods = json!(client_auth::advertised(true));
    // Algorithms of `client_secret_jwt` and `private_key_jwt` assertions.
    let assertion_algs = json!(client_auth::SIGNING_ALGS);
    let mut subject_types = vec!["public"];
    if p.clients.values().any(|c| c.pairwise) {
        subject_types.push("pairwise");
    }
    let mut doc = json!({
        "issuer": p.issuer,
        "authorization_endpoint": p.url(&e.authorization),
        "token_endpoint": p.url(&e.token),
        "jwks_uri": p.url(&e.jwks),
        "introspection_endpoint": p.url(&e.introspection),
        "revocation_endpoint": p.url(&e.revocation),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": grants,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "introspection_endpoint_auth_methods_supported": client_auth::advertised(false),
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "scopes_supported": scopes,
        "authorization_response_iss_parameter_supported": true,
        "pushed_authorization_request_endpoint": p.url(&e.par),
        // true only when every client must push (RFC 9126 section 5)
        "require_pushed_authorization_requests":
            !p.clients.is_empty() && p.clients.values().all(|c| c.require_par),
    });
    if openid {
        let m = doc.as_object_mut().expect("object literal");
        m.insert("userinfo_endpoint".into(), json!(p.url(&e.userinfo)));
        m.insert("end_session_endpoint".into(), json!(p.url(&e.end_session)));
        // Logout tokens carry `sid` (and `sub`) whenever the session had one.
        m.insert("backchannel_logout_supported".into(), json!(true));
        m.insert("backchannel_logout_session_supported".into(), json!(true));
        m.insert("frontchannel_logout_supported".into(), json!(true));
        m.insert("frontchannel_logout_session_supported".into(), json!(true));
        m.insert("subject_types_supported".into(), json!(subject_types));
        m.insert("id_token_signing_alg_values_supported".into(), json!(algs));
        m.insert("claims_supported".into(), json!(claims));
        m.insert("claims_parameter_supported".into(), json!(true));
        // Only the `acr` values a connector is configured to achieve (OIDC Discovery §3).
        if !p.acr_advertised.acr_values.is_empty() {
            m.insert(
                "acr_values_supported".into(),
                json!(p.acr_advertised.acr_values),
            );
        }
        m.insert("request_parameter_supported".into(), json!(false));
        m.insert("request_uri_parameter_supported".into(), json!(false));
        // `consent` only when a client asks for consent: trusted clients never show the page.
        let mut prompts = vec!["none", "login"];
        if p.clients
            .values()
            .any(|c| c.consent == super::consent::ConsentPolicy::Required)
        {
            prompts.push("consent");
        }
        m.insert("prompt_values_supported".into(), json!(prompts));
    }
    doc
}

pub fn jwks(p: &Provider) -> Value {
    json!({ "keys": p.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

pub fn serve(body: &str, cache: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body.to_string()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}
