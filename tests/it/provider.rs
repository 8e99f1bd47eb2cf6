//! The built-in OpenID Connect provider, driven as a relying party would drive it.

use std::collections::HashMap;

use crate::support::*;
use base64::Engine;
use serde_json::Value;
use sha2::Digest;

const SECRET: &str = "s3cret-s3cret-s3cret";
const REDIRECT: &str = "https://rp.example.com/cb";

struct Op {
    gw: Gateway,
    _keys: tempfile::TempDir,
}

/// A gateway with a proxy app and two OIDC clients: `webapp` (confidential, all grants)
/// and `spa` (public).
fn provider(extra_client: &str, access_type: &str, grace: u64) -> Op {
    let (yaml, keys) = provider_yaml(extra_client, access_type, grace);
    Op {
        gw: Gateway::start(&yaml),
        _keys: keys,
    }
}

/// The configuration of `provider`, and the directory of its key (`es256.pem`).
fn provider_yaml(extra_client: &str, access_type: &str, grace: u64) -> (String, tempfile::TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("es256.pem");
    std::fs::write(
        &key,
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256).unwrap(),
    )
    .unwrap();
    let hash = pw_hash();
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
    throttle: {{ maxFailures: 3, windowSeconds: 60 }}
    users:
      - username: alice
        passwordHash: "{hash}"
        attributes: {{ email: alice@example.com, given_name: Alice, groups: [admins], phone_number: "+100" }}
      - username: bob
        passwordHash: "{hash}"
        attributes: {{ email: bob@example.com }}
oidcProvider:
  issuer: http://localhost:1234
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: portal
    type: proxy
    routePatterns: ["/portal"]
    upstream: http://127.0.0.1:9
    policies: [{{ location: /, authentication: {{ idps: [local] }}, authorization: {{ allowAll: true }} }}]
  - name: webapp
    type: oidc
    clientID: webapp
    clientSecret: {SECRET}
    redirectURLs: ["{REDIRECT}"]
    logoutRedirectURLs: ["https://rp.example.com/bye"]
    grantTypes: [authorization_code, refresh_token, client_credentials, password]
    scopes: [reports.read]
    strictScopes: true
    authentication: {{ idps: [local] }}
    claimsMapping: {{ groups: local.groups }}
    accessToken: {{ type: {access_type}, length: 40, allowedAudiences: ["https://api.example.com", "https://other.example.com"] }}
    refreshToken: {{ allowOfflineAccess: true, reuseGraceSeconds: {grace} }}
  - name: spa
    type: oidc
    clientID: spa
    public: true
    redirectURLs: ["http://localhost:3000/cb"]
    authentication: {{ idps: [local] }}
{extra_client}
"#,
        key = key.display()
    );
    (yaml, keys)
}

fn pkce() -> (String, String) {
    let verifier = tessera::session::random_token(32);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn query_of(location: &str) -> HashMap<String, String> {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn authorize_url(op: &Op, params: &[(&str, &str)]) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    op.gw.url(&format!("/oauth2/authorize?{q}"))
}

/// Runs the browser part of the code flow: authorize -> sign in -> back with a code.
/// Returns (redirect Location to the client, session cookie).
async fn browser_authorize(
    op: &Op,
    params: &[(&str, &str)],
    session: Option<&str>,
) -> (String, String) {
    let c = client();
    let mut req = c.get(authorize_url(op, params));
    if let Some(s) = session {
        req = req.header("cookie", s);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    if !loc.starts_with("/.tessera/login") {
        return (loc, session.unwrap_or_default().to_string());
    }
    let flow_cookie = set_cookie(&r, "tessera_login").unwrap();
    let html = c
        .get(op.gw.url(&loc))
        .header("cookie", &flow_cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = c
        .post(op.gw.url("/.tessera/login"))
        .header("cookie", &flow_cookie)
        .form(&[
            ("flow", hidden(&html, "flow")),
            ("csrf", hidden(&html, "csrf")),
            ("idp", "local".into()),
            ("username", "alice".into()),
            ("password", "pw".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = set_cookie(&r, "tessera_session").unwrap();
    let back = r.headers()["location"].to_str().unwrap().to_string();
    assert!(back.starts_with("/oauth2/authorize/resume?id="), "{back}");
    let r = c
        .get(op.gw.url(&back))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    (
        r.headers()["location"].to_str().unwrap().to_string(),
        cookie,
    )
}

async fn token(
    op: &Op,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = client().post(op.gw.url("/oauth2/token")).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().await.unwrap(), headers)
}

fn decode_jwt(op_jwks: &Value, token: &str, typ: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some(typ));
    let kid = header.kid.unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(
        op_jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .unwrap()
            .clone(),
    )
    .unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.validate_aud = false;
    v.set_issuer(&["http://localhost:1234"]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims
}

async fn jwks(op: &Op) -> Value {
    client()
        .get(op.gw.url("/oauth2/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Full code flow; returns the token response.
async fn code_flow(op: &Op, scope: &str) -> Value {
    let (verifier, challenge) = pkce();
    let (loc, _) = browser_authorize(
        op,
        &[
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", scope),
            ("state", "st-1"),
            ("nonce", "n-1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
        None,
    )
    .await;
    let q = query_of(&loc);
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], "http://localhost:1234");
    let (status, body, _) = token(
        op,
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn discovery_and_jwks_advertise_what_works() {
    let op = provider("", "jwt", 10);
    let c = client();
    let r = c
        .get(op.gw.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["issuer"], "http://localhost:1234");
    assert_eq!(
        d["authorization_endpoint"],
        "http://localhost:1234/oauth2/authorize"
    );
    assert_eq!(d["token_endpoint"], "http://localhost:1234/oauth2/token");
    assert_eq!(d["jwks_uri"], "http://localhost:1234/oauth2/jwks");
    assert_eq!(
        d["end_session_endpoint"],
        "http://localhost:1234/oauth2/logout"
    );
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    assert_eq!(
        d["grant_types_supported"],
        serde_json::json!([
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "password"
        ])
    );
    assert!(d["scopes_supported"]
        .as_array()
        .unwrap()
        .contains(&"reports.read".into()));
    let m: Value = c
        .get(op.gw.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["issuer"], d["issuer"]);
    assert!(
        m.get("userinfo_endpoint").is_none(),
        "RFC 8414 metadata carries OAuth fields only"
    );
    let k = jwks(&op).await;
    let key = &k["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert!(key["kid"].as_str().unwrap().len() >= 43);
    assert!(key.get("d").is_none());
}

#[tokio::test]
async fn code_flow_with_pkce_issues_valid_tokens() {
    let op = provider("", "jwt", 10);
    let body = code_flow(&op, "openid email offline_access reports.read").await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "openid email offline_access reports.read");
    assert_eq!(body["refresh_token"].as_str().unwrap().len(), 28);
    let keys = jwks(&op).await;
    let id = decode_jwt(&keys, body["id_token"].as_str().unwrap(), "JWT");
    assert_eq!(id["iss"], "http://localhost:1234");
    assert_eq!(id["aud"], "webapp");
    assert_eq!(id["azp"], "webapp");
    assert_eq!(id["sub"], "alice");
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["groups"], serde_json::json!(["admins"]));
    assert!(id.get("given_name").is_none(), "profile scope not granted");
    assert!(id["auth_time"].as_u64().is_some());
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    let at = body["access_token"].as_str().unwrap();
    let expected_hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(&sha2::Sha256::digest(at.as_bytes())[..16]);
    assert_eq!(id["at_hash"], expected_hash.as_str());
    let access = decode_jwt(&keys, at, "at+jwt");
    assert_eq!(access["client_id"], "webapp");
    assert_eq!(access["sub"], "alice");
    assert_eq!(access["scope"], "openid email offline_access reports.read");
    assert_eq!(
        access["aud"],
        serde_json::json!(["https://api.example.com", "https://other.example.com"])
    );
    assert!(access["jti"].as_str().is_some());
    // userinfo: GET with a bearer token, POST with the token in the form
    let c = client();
    let ui: Value = c
        .get(op.gw.url("/oauth2/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ui["sub"], "alice");
    assert_eq!(ui["email"], "alice@example.com");
    assert!(ui.get("given_name").is_none());
    assert!(ui.get("phone_number").is_none());
    let ui: Value = c
        .post(op.gw.url("/oauth2/userinfo"))
        .form(&[("access_token", at)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ui["sub"], "alice");
}

#[tokio::test]
async fn scopes_and_the_claims_parameter_drive_claims() {
    let op = provider("", "jwt", 10);
    let (verifier, challenge) = pkce();
    let claims = r#"{"userinfo":{"phone_number":null}}"#;
    let (loc, _) = browser_authorize(
        &op,
        &[
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "openid profile"),
            ("claims", claims),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
        None,
    )
    .await;
    let (_, body, _) = token(
        &op,
        &[
            ("grant_type", "authorization_code"),
            ("code", &query_of(&loc)["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
        Some(("webapp", SECRET)),
    )
    .await;
    let ui: Value = client()
        .get(op.gw.url("/oauth2/userinfo"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ui["given_name"], "Alice");
    assert_eq!(ui["phone_number"], "+100", "requested individually");
    assert!(ui.get("email").is_none(), "email scope not granted");
}

#[tokio::test]
async fn refresh_rotation_grace_and_reuse_detection() {
    let op = provider("", "jwt", 2);
    let body = code_flow(&op, "openid offline_access").await;
    let rt1 = body["refresh_token"].as_str().unwrap().to_string();
    let (s, r2, _) = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!(s, 200, "{r2}");
    let rt2 = r2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2, "rotated");
    assert!(r2["id_token"].is_string());
    // replay inside the grace period: the same answer
    let (s, again, _) = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(again, r2);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    // replay after the grace period: refused, and the whole family dies
    let (s, err, _) = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!((s, err["error"].as_str()), (400, Some("invalid_grant")));
    let (s, err, _) = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt2)],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!(
        (s, err["error"].as_str()),
        (400, Some("invalid_grant")),
        "the newer token of the family is revoked too"
    );
    let r = client()
        .get(op.gw.url("/oauth2/userinfo"))
        .bearer_auth(r2["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer error=\"invalid_token\""));
    // a narrower scope on refresh is fine, a wider one is not
    let body = code_flow(&op, "openid email offline_access").await;
    let rt = body["refresh_token"].as_str().unwrap();
    let (s, err, _) = token(
        &op,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("scope", "openid profile"),
        ],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!((s, err["error"].as_str()), (400, Some("invalid_scope")));
    let (s, ok, _) = token(
        &op,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("scope", "openid"),
        ],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(ok["scope"], "openid offline_access");
}

#[tokio::test]
async fn code_replay_fails_and_revokes_what_it_issued() {
    let op = provider("", "jwt", 10);
    let (verifier, challenge) = pkce();
    let (loc, _) = browser_authorize(
        &op,
        &[
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "openid offline_access"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
        None,
    )
    .await;
    let code = query_of(&loc)["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let (s, first, _) = token(&op, &form, Some(("webapp", SECRET))).await;
    assert_eq!(s, 200);
    let (s, err, _) = token(&op, &form, Some(("webapp", SECRET))).await;
    assert_eq!((s, err["error"].as_str()), (400, Some("invalid_grant")));
    let r = client()
        .get(op.gw.url("/oauth2/userinfo"))
        .bearer_auth(first["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "the access token of the replayed code is revoked"
    );
    let (s, err, _) = token(
        &op,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", first["refresh_token"].as_str().unwrap()),
        ],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!((s, err["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn token_endpoint_errors() {
    let op = provider("", "jwt", 10);
    let (verifier, challenge) = pkce();
    let (loc, _) = browser_authorize(
        &op,
        &[
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
        None,
    )
    .await;
    let code = query_of(&loc)["code"].clone();
    // wrong PKCE verifier
    let (s, e, _) = token(
        &op,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &"x".repeat(43)),
        ],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    let _ = verifier;
    // (the code is consumed by that attempt: single use)
    let (s, e, h) = token(
        &op,
        &[("grant_type", "client_credentials")],
        Some(("webapp", "wrong-secret")),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
    assert_eq!(h["www-authenticate"], "Basic realm=\"tessera\"");
    let (s, e, h) = token(
        &op,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "webapp"),
            ("client_secret", "nope"),
        ],
        None,
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
    assert!(h.get("www-authenticate").is_none());
    let (s, e, _) = token(
        &op,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
            ("client_secret", "x"),
        ],
        None,
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
    let (s, e, _) = token(
        &op,
        &[("grant_type", "urn:ietf:params:oauth:grant-type:device_code")],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (s, e, _) = token(
        &op,
        &[("grant_type", "client_credentials"), ("client_id", "spa")],
        None,
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("unauthorized_client")));
    let (s, e, _) = token(
        &op,
        &[("grant_type", "client_credentials"), ("scope", "admin")],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_scope")));
    let (s, e, _) = token(
        &op,
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://evil.example.com"),
        ],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_target")));
    let (s, e, _) = token(
        &op,
        &[
            ("grant_type", "authorization_code"),
            ("code", "nope"),
            ("redirect_uri", REDIRECT),
        ],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    // malformed requests
    let c = client();
    let r = c
        .post(op.gw.url("/oauth2/token"))
        .basic_auth("webapp", Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=password")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = c
        .post(op.gw.url("/oauth2/token"))
        .basic_auth("webapp", Some(SECRET))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = c
        .get(op.gw.url("/oauth2/token?grant_type=client_credentials"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = c
        .post(op.gw.url("/oauth2/token"))
        .basic_auth("webapp", Some(SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", &"a".repeat(10_000)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    // both Basic and client_secret_post
    let r = c
        .post(op.gw.url("/oauth2/token"))
        .basic_auth("webapp", Some(SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_secret", SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
}

#[tokio::test]
async fn authorize_errors_never_redirect_to_unregistered_uris() {
    let op = provider("", "jwt", 10);
    let c = client();
    for params in [
        vec![
            ("client_id", "nobody"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
        ],
        vec![
            ("client_id", "webapp"),
            ("redirect_uri", "https://evil.example.com/cb"),
            ("response_type", "code"),
        ],
        vec![
            ("client_id", "webapp"),
            ("redirect_uri", "https://rp.example.com/cb/extra"),
            ("response_type", "code"),
        ],
        vec![("client_id", "webapp"), ("response_type", "code")],
    ] {
        let r = c.get(authorize_url(&op, &params)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{params:?}");
        assert!(r.headers().get("location").is_none());
        assert!(r.text().await.unwrap().contains("request id"));
    }
    let expect_redirect = |params: Vec<(&'static str, &'static str)>, error: &'static str| {
        let c = c.clone();
        let url = authorize_url(&op, &params);
        async move {
            let r = c.get(url).send().await.unwrap();
            assert_eq!(r.status(), 302);
            let loc = r.headers()["location"].to_str().unwrap().to_string();
            assert!(
                loc.starts_with("https://rp.example.com/cb?")
                    || loc.starts_with("http://localhost:3000/cb?"),
                "{loc}"
            );
            let q = query_of(&loc);
            assert_eq!(q["error"], error, "{loc}");
            assert_eq!(q.get("state").map(String::as_str), Some("xyz"));
        }
    };
    expect_redirect(
        vec![
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("response_type", "token"),
            ("state", "xyz"),
        ],
        "unsupported_response_type",
    )
    .await;
    expect_redirect(
        vec![
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("state", "xyz"),
        ],
        "invalid_request",
    )
    .await;
    expect_redirect(
        vec![
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "openid admin"),
            ("state", "xyz"),
        ],
        "invalid_scope",
    )
    .await;
    expect_redirect(
        vec![
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("resource", "https://evil.example.com"),
            ("state", "xyz"),
        ],
        "invalid_target",
    )
    .await;
    expect_redirect(
        vec![
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("code_challenge", "abc"),
            ("code_challenge_method", "plain"),
            ("state", "xyz"),
        ],
        "invalid_request",
    )
    .await;
    expect_redirect(
        vec![
            ("client_id", "spa"),
            ("redirect_uri", "http://localhost:3000/cb"),
            ("response_type", "code"),
            ("scope", "openid"),
            ("state", "xyz"),
        ],
        "invalid_request",
    )
    .await;
    expect_redirect(
        vec![
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("prompt", "none"),
            ("state", "xyz"),
        ],
        "login_required",
    )
    .await;
    expect_redirect(
        vec![
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("claims", "not json"),
            ("state", "xyz"),
        ],
        "invalid_request",
    )
    .await;
    expect_redirect(
        vec![
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("request", "eyJ.x.y"),
            ("state", "xyz"),
        ],
        "request_not_supported",
    )
    .await;
    // a repeated parameter is refused before anything else
    let r = c.get(op.gw.url(&format!("/oauth2/authorize?client_id=webapp&client_id=spa&redirect_uri={REDIRECT}&response_type=code"))).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
}

#[tokio::test]
async fn sso_across_proxy_and_oidc_apps() {
    let op = provider("", "jwt", 10);
    // signed in at the proxy app first
    let (session, _) = login(&op.gw, "/portal", "local", "alice", "pw").await;
    let (_, challenge) = pkce();
    let params = [
        ("client_id", "webapp"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "s"),
    ];
    let r = client()
        .get(authorize_url(&op, &params))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with(REDIRECT), "no second login: {loc}");
    // prompt=login forces a new sign-in even with a session
    let mut forced = params.to_vec();
    forced.push(("prompt", "login"));
    let r = client()
        .get(authorize_url(&op, &forced))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/.tessera/login"));
    // and the other way round: signed in through the provider, the proxy app needs no login
    let (_, session2) = browser_authorize(&op, &params, None).await;
    let r = client()
        .get(op.gw.url("/portal"))
        .header("cookie", &session2)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        502,
        "reached the (absent) upstream without a login redirect"
    );
}

#[tokio::test]
async fn form_post_response_mode() {
    let op = provider("", "jwt", 10);
    let (session, _) = login(&op.gw, "/portal", "local", "alice", "pw").await;
    let (_, challenge) = pkce();
    let r = client()
        .get(authorize_url(
            &op,
            &[
                ("client_id", "webapp"),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("response_mode", "form_post"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("state", "st"),
            ],
        ))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains(&format!("action=\"{REDIRECT}\"")));
    assert!(html.contains("name=\"code\" value=\""));
    assert!(html.contains("name=\"state\" value=\"st\""));
}

#[tokio::test]
async fn client_credentials_and_password_grants() {
    let op = provider("", "jwt", 10);
    let keys = jwks(&op).await;
    let (s, body, _) = token(
        &op,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "reports.read"),
            ("resource", "https://api.example.com"),
        ],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    let at = decode_jwt(&keys, body["access_token"].as_str().unwrap(), "at+jwt");
    assert_eq!(at["sub"], "webapp");
    assert_eq!(at["aud"], "https://api.example.com");
    assert_eq!(at["scope"], "reports.read");
    // client_secret_post works as well
    let (s, _, _) = token(
        &op,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "webapp"),
            ("client_secret", SECRET),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, body, _) = token(
        &op,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "pw"),
            ("scope", "openid email offline_access"),
        ],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        decode_jwt(&keys, body["id_token"].as_str().unwrap(), "JWT")["email"],
        "alice@example.com"
    );
    assert!(body["refresh_token"].is_string());
    let (s, e, _) = token(
        &op,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "nope"),
        ],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    let (s, e, _) = token(
        &op,
        &[
            ("grant_type", "password"),
            ("client_id", "spa"),
            ("username", "alice"),
            ("password", "pw"),
        ],
        None,
    )
    .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("unauthorized_client")),
        "spa is not granted `password`"
    );
}

#[tokio::test]
async fn introspection_and_revocation() {
    let op = provider("", "opaque", 10);
    let body = code_flow(&op, "openid offline_access").await;
    let at = body["access_token"].as_str().unwrap();
    assert_eq!(at.len(), 40, "opaque token of the configured length");
    assert!(at
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let rt = body["refresh_token"].as_str().unwrap();
    let c = client();
    let intro = |token: String| {
        let c = c.clone();
        let url = op.gw.url("/oauth2/introspect");
        async move {
            c.post(url)
                .basic_auth("webapp", Some(SECRET))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let i = intro(at.to_string()).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["client_id"], "webapp");
    assert_eq!(i["sub"], "alice");
    let i = intro(rt.to_string()).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["token_type"], "refresh_token");
    assert_eq!(
        intro("garbage".into()).await,
        serde_json::json!({"active": false})
    );
    // public clients may not introspect
    let r = c
        .post(op.gw.url("/oauth2/introspect"))
        .form(&[("token", at), ("client_id", "spa")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // revoke the access token
    let r = c
        .post(op.gw.url("/oauth2/revoke"))
        .basic_auth("webapp", Some(SECRET))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(intro(at.to_string()).await["active"], false);
    assert_eq!(
        c.get(op.gw.url("/oauth2/userinfo"))
            .bearer_auth(at)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // revoke the refresh token: the family is gone
    let r = c
        .post(op.gw.url("/oauth2/revoke"))
        .basic_auth("webapp", Some(SECRET))
        .form(&[("token", rt), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, e, _) = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    // unknown tokens: 200 all the same (RFC 7009)
    let r = c
        .post(op.gw.url("/oauth2/revoke"))
        .basic_auth("webapp", Some(SECRET))
        .form(&[("token", "unknown")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn end_session_with_hint_and_registered_redirect() {
    let op = provider("", "jwt", 10);
    let (_, challenge) = pkce();
    let (verifier2, challenge2) = pkce();
    let _ = challenge;
    let (loc, session) = browser_authorize(
        &op,
        &[
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", &challenge2),
            ("code_challenge_method", "S256"),
        ],
        None,
    )
    .await;
    let (_, body, _) = token(
        &op,
        &[
            ("grant_type", "authorization_code"),
            ("code", &query_of(&loc)["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier2),
        ],
        Some(("webapp", SECRET)),
    )
    .await;
    let id_token = body["id_token"].as_str().unwrap();
    let c = client();
    let bad = c.get(op.gw.url(&format!("/oauth2/logout?id_token_hint={id_token}&post_logout_redirect_uri=https://evil.example.com/"))).header("cookie", &session).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.headers().get("location").is_none());
    let r = c.get(op.gw.url(&format!("/oauth2/logout?id_token_hint={id_token}&post_logout_redirect_uri=https://rp.example.com/bye&state=abc"))).header("cookie", &session).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "https://rp.example.com/bye?state=abc"
    );
    // the gateway session is over: the proxy app asks for a login again
    let r = c
        .get(op.gw.url("/portal"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/.tessera/login"));
}

/// Is the gateway session behind `cookie` still alive? (The sign-out page asks for a
/// confirmation only while there is a session to end.)
async fn signed_in(op: &Op, cookie: &str) -> bool {
    let html = client()
        .get(op.gw.url("/.tessera/logout"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    html.contains("Sign out?")
}

/// An ID token of `webapp` for alice, and alice's session cookie.
async fn alice_id_token(op: &Op) -> (String, String) {
    let (verifier, challenge) = pkce();
    let (loc, session) = browser_authorize(
        op,
        &[
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
        None,
    )
    .await;
    let (_, body, _) = token(
        op,
        &[
            ("grant_type", "authorization_code"),
            ("code", &query_of(&loc)["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
        Some(("webapp", SECRET)),
    )
    .await;
    (body["id_token"].as_str().unwrap().to_string(), session)
}

/// Issue #12 finding 10: without a valid `id_token_hint` for the session's user, the end
/// session endpoint asks the user to confirm (RP-Initiated Logout 1.0 sections 2 and 6), with
/// a CSRF-protected POST that keeps the validated redirect and state.
#[tokio::test]
async fn end_session_without_a_valid_hint_asks_to_confirm() {
    let op = provider("", "jwt", 10);
    let c = client();
    let (alice_hint, alice) = alice_id_token(&op).await;
    let url = op.gw.url(
        "/oauth2/logout?client_id=webapp&post_logout_redirect_uri=https://rp.example.com/bye&state=a%26b",
    );
    // a cross-site GET without a hint: the confirmation page, the session lives on
    let r = c.get(&url).header("cookie", &alice).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert!(full_set_cookie(&r, "tessera_session").is_none());
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<strong>webapp</strong> asks to sign you out"),
        "{html}"
    );
    assert!(
        html.contains("<form method=\"post\" action=\"/oauth2/logout\">"),
        "{html}"
    );
    assert_eq!(hidden(&html, "client_id"), "webapp");
    assert_eq!(
        hidden(&html, "post_logout_redirect_uri"),
        "https://rp.example.com/bye"
    );
    assert_eq!(hidden(&html, "state"), "a&amp;b");
    let csrf = hidden(&html, "csrf");
    assert!(signed_in(&op, &alice).await);
    // the RP's own form POST without a hint: the same confirmation
    let r = c
        .post(op.gw.url("/oauth2/logout"))
        .header("cookie", &alice)
        .form(&[("client_id", "webapp")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Sign out?"));
    assert!(signed_in(&op, &alice).await);
    // a forged confirmation: 403, still signed in
    for bad in ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &csrf[1..]] {
        let r = c
            .post(op.gw.url("/oauth2/logout"))
            .header("cookie", &alice)
            .form(&[
                ("client_id", "webapp"),
                ("post_logout_redirect_uri", "https://rp.example.com/bye"),
                ("csrf", bad),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers().get("location").is_none());
    }
    // the token in a GET does not count (it would leak through URLs)
    let r = c
        .get(format!("{url}&csrf={csrf}"))
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(signed_in(&op, &alice).await);
    // the hint of another user (bob's session, alice's ID token): confirmation as well,
    // the client taken from the hint
    let (bob, _) = login(&op.gw, "/portal", "local", "bob", "pw").await;
    let r = c
        .get(op.gw.url(&format!(
            "/oauth2/logout?id_token_hint={alice_hint}&post_logout_redirect_uri=https://rp.example.com/bye"
        )))
        .header("cookie", &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bob_html = r.text().await.unwrap();
    assert_eq!(hidden(&bob_html, "client_id"), "webapp");
    assert_eq!(
        hidden(&bob_html, "post_logout_redirect_uri"),
        "https://rp.example.com/bye"
    );
    assert!(!bob_html.contains("name=\"id_token_hint\""));
    assert!(signed_in(&op, &bob).await);
    // alice's token does not end bob's session either
    let r = c
        .post(op.gw.url("/oauth2/logout"))
        .header("cookie", &bob)
        .form(&[("client_id", "webapp"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(signed_in(&op, &bob).await);
    // the confirmation form as the browser sends it: signed out, back to the RP with state
    let r = c
        .post(op.gw.url("/oauth2/logout"))
        .header("cookie", &alice)
        .form(&[
            ("csrf", csrf.as_str()),
            ("client_id", "webapp"),
            ("post_logout_redirect_uri", "https://rp.example.com/bye"),
            ("state", "a&b"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "https://rp.example.com/bye?state=a%26b"
    );
    assert!(full_set_cookie(&r, "tessera_session")
        .unwrap()
        .contains("Max-Age=0"));
    assert!(!signed_in(&op, &alice).await);
    assert!(signed_in(&op, &bob).await);
    // no session: nothing to confirm, straight back to the RP (or the signed-out page)
    let r = c.get(&url).header("cookie", &alice).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "https://rp.example.com/bye?state=a%26b"
    );
    let r = c.get(op.gw.url("/oauth2/logout")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("You are signed out"));
    // an unregistered redirect is refused before any confirmation
    let r = c
        .get(op.gw.url(
            "/oauth2/logout?client_id=webapp&post_logout_redirect_uri=https://evil.example.com/",
        ))
        .header("cookie", &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(signed_in(&op, &bob).await);
}

const OTHER_CLIENT: &str = r#"  - name: other
    type: oidc
    clientID: other-client
    clientSecret: other-secret-other-secret
    redirectURLs: []
    grantTypes: [client_credentials]
"#;

const RESOURCE_SERVERS: &str = r#"  - name: api
    type: oidc
    clientID: api-client
    clientSecret: api-secret-api-secret-api
    redirectURLs: []
    grantTypes: [client_credentials]
    introspection: { tokensOf: [webapp] }
  - name: gateway-rs
    type: oidc
    clientID: every-client
    clientSecret: every-secret-every-secret
    redirectURLs: []
    grantTypes: [client_credentials]
    introspection: { tokensOf: ["*"] }
"#;

const WEBAPP: (&str, &str) = ("webapp", SECRET);
const OTHER: (&str, &str) = ("other-client", "other-secret-other-secret");

/// Tokens for the introspection tests: webapp's access and refresh tokens (alice), and
/// an access token of `other` (client credentials).
async fn three_tokens(op: &Op) -> (String, String, String) {
    let body = code_flow(op, "openid offline_access").await;
    let (s, other, _) = token(op, &[("grant_type", "client_credentials")], Some(OTHER)).await;
    assert_eq!(s, 200, "{other}");
    (
        body["access_token"].as_str().unwrap().to_string(),
        body["refresh_token"].as_str().unwrap().to_string(),
        other["access_token"].as_str().unwrap().to_string(),
    )
}

async fn introspect_as(op: &Op, who: (&str, &str), token: &str) -> Value {
    let r = client()
        .post(op.gw.url("/oauth2/introspect"))
        .basic_auth(who.0, Some(who.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()
}

/// Issue #12 finding 12: a client introspects its own tokens; another client's access and
/// refresh tokens are `{"active": false}` (RFC 7662 section 4), nothing about them leaks.
#[tokio::test]
async fn introspection_of_another_clients_tokens_is_inactive() {
    for access_type in ["jwt", "opaque"] {
        let op = provider(OTHER_CLIENT, access_type, 10);
        let (at, rt, other_at) = three_tokens(&op).await;
        let inactive = serde_json::json!({"active": false});
        // its own tokens: active
        let i = introspect_as(&op, WEBAPP, &at).await;
        assert_eq!(i["active"], true, "{access_type}");
        assert_eq!(i["client_id"], "webapp");
        let i = introspect_as(&op, WEBAPP, &rt).await;
        assert_eq!(i["active"], true);
        assert_eq!(i["token_type"], "refresh_token");
        let i = introspect_as(&op, OTHER, &other_at).await;
        assert_eq!(i["active"], true);
        assert_eq!(i["client_id"], "other-client");
        // another client's: inactive
        assert_eq!(
            introspect_as(&op, OTHER, &at).await,
            inactive,
            "{access_type}"
        );
        assert_eq!(introspect_as(&op, OTHER, &rt).await, inactive);
        assert_eq!(introspect_as(&op, WEBAPP, &other_at).await, inactive);
        // with a token_type_hint too
        let r = client()
            .post(op.gw.url("/oauth2/introspect"))
            .basic_auth(OTHER.0, Some(OTHER.1))
            .form(&[("token", rt.as_str()), ("token_type_hint", "refresh_token")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.json::<Value>().await.unwrap(), inactive);
    }
}

/// `introspection.tokensOf` makes a client a resource server for the apps it lists (or all
/// with `*`): it sees their access and refresh tokens, and still no others.
#[tokio::test]
async fn listed_resource_servers_may_introspect() {
    let op = provider(&format!("{OTHER_CLIENT}{RESOURCE_SERVERS}"), "jwt", 10);
    let (at, rt, other_at) = three_tokens(&op).await;
    let api = ("api-client", "api-secret-api-secret-api");
    let every = ("every-client", "every-secret-every-secret");
    let i = introspect_as(&op, api, &at).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["client_id"], "webapp");
    assert_eq!(i["sub"], "alice");
    let i = introspect_as(&op, api, &rt).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["client_id"], "webapp");
    assert_eq!(
        introspect_as(&op, api, &other_at).await,
        serde_json::json!({"active": false})
    );
    for token in [&at, &rt, &other_at] {
        assert_eq!(introspect_as(&op, every, token).await["active"], true);
    }
}

/// `introspection.tokensOf` names apps: unknown names, `*` among names and unknown keys are
/// errors, each at its position.
#[test]
fn introspection_configuration_errors_are_positioned() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("es256.pem");
    std::fs::write(
        &key,
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256).unwrap(),
    )
    .unwrap();
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
oidcProvider:
  issuer: http://localhost:1234
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: webapp
    type: oidc
    clientID: webapp
    clientSecret: {SECRET}
    redirectURLs: []
    grantTypes: [client_credentials]
  - name: api
    type: oidc
    clientID: api
    clientSecret: {SECRET}
    redirectURLs: []
    grantTypes: [client_credentials]
    introspection: {{ tokensOf: [webap, nobody] }}
  - name: api2
    type: oidc
    clientID: api2
    clientSecret: {SECRET}
    redirectURLs: []
    grantTypes: [client_credentials]
    introspection: {{ tokensOf: ["*", webapp], clients: [] }}
"#,
        key = key.display()
    );
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&path)
        .env_remove("TESSERA_HTTP_ADDRESS")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stderr)
        .unwrap()
        .replace(&path.display().to_string(), "t.yaml");
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(
        text,
        "t.yaml:19:33: unknown OIDC app `webap`
    hint: did you mean `webapp`?
t.yaml:19:40: unknown OIDC app `nobody`
    hint: defined: api, api2, webapp
t.yaml:26:22: `*` already means every app
    hint: write `tokensOf: [\"*\"]` alone, or list app names
t.yaml:26:47: unknown key `clients`
    hint: valid keys here: tokensOf
4 problems in t.yaml
"
    );
}

async fn introspect(op: &Op, token: &str) -> Value {
    introspect_as(op, ("webapp", SECRET), token).await
}

/// Userinfo's status and `WWW-Authenticate` for a bearer token.
async fn userinfo_refusal(op: &Op, token: &str) -> (u16, String) {
    let r = client()
        .get(op.gw.url("/oauth2/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), challenge)
}

async fn revoke(op: &Op, token: &str) {
    let r = client()
        .post(op.gw.url("/oauth2/revoke"))
        .basic_auth("webapp", Some(SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn assert_invalid_token(refusal: (u16, String), why: &str) {
    assert_eq!(refusal.0, 401, "{why}");
    assert!(
        refusal.1.starts_with("Bearer error=\"invalid_token\""),
        "{why}: {}",
        refusal.1
    );
}

const SHORT_LIVED: &str = r#"  - name: short
    type: oidc
    clientID: short
    clientSecret: short-secret-short-secret
    redirectURLs: []
    grantTypes: [client_credentials]
    accessToken: { lifetimeSeconds: 1 }
    introspection: { tokensOf: ["*"] }
"#;

/// Issue #14: a JWT access token has no store record. Introspection and userinfo check its
/// signature and expiry, then the revocation set (a revoked `jti` until its `exp`) and, for
/// a user's token, the grant and the refresh family that issued it.
#[tokio::test]
async fn jwt_access_tokens_are_stateless_and_revocable() {
    let op = provider(SHORT_LIVED, "jwt", 0);
    let body = code_flow(&op, "openid email offline_access").await;
    let at1 = body["access_token"].as_str().unwrap();
    let rt1 = body["refresh_token"].as_str().unwrap();
    let i = introspect(&op, at1).await;
    assert_eq!(
        (&i["active"], &i["sub"], &i["client_id"], &i["token_type"]),
        (
            &true.into(),
            &"alice".into(),
            &"webapp".into(),
            &"Bearer".into()
        ),
        "{i}"
    );
    assert_eq!(i["scope"], "openid email offline_access");
    assert!(
        i.get("gid").is_none(),
        "the grant reference stays internal: {i}"
    );
    assert_eq!(userinfo_refusal(&op, at1).await.0, 200);
    // RFC 7009 revocation of the access token alone: its jti is revoked
    revoke(&op, at1).await;
    assert_eq!(
        introspect(&op, at1).await,
        serde_json::json!({"active": false})
    );
    assert_invalid_token(userinfo_refusal(&op, at1).await, "revoked JWT");
    // the family lives on: a refresh issues a new, active token
    let (s, r2, _) = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", rt1)],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!(s, 200, "{r2}");
    let at2 = r2["access_token"].as_str().unwrap();
    assert_eq!(introspect(&op, at2).await["active"], true);
    assert_eq!(userinfo_refusal(&op, at2).await.0, 200);
    // reuse of the rotated refresh token (past the grace second) revokes the family and the
    // JWTs it issued
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, e, _) = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", rt1)],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(
        introspect(&op, at2).await,
        serde_json::json!({"active": false})
    );
    assert_invalid_token(userinfo_refusal(&op, at2).await, "family revoked");

    // a client's own JWT: active, then revoked
    let (s, cc, _) = token(
        &op,
        &[("grant_type", "client_credentials")],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!(s, 200);
    let cc = cc["access_token"].as_str().unwrap();
    let i = introspect(&op, cc).await;
    assert_eq!((&i["active"], &i["sub"]), (&true.into(), &"webapp".into()));
    let (status, body) = {
        let r = client()
            .get(op.gw.url("/oauth2/userinfo"))
            .bearer_auth(cc)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "a client's token has no user"
    );
    revoke(&op, cc).await;
    assert_eq!(introspect(&op, cc).await["active"], false);

    // forged and altered tokens: inactive, 401
    let (s, fresh, _) = token(
        &op,
        &[("grant_type", "client_credentials")],
        Some(("webapp", SECRET)),
    )
    .await;
    assert_eq!(s, 200);
    let fresh = fresh["access_token"].as_str().unwrap();
    let parts: Vec<&str> = fresh.split('.').collect();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    claims["scope"] = "openid".into();
    claims["sub"] = "alice".into();
    let altered = format!(
        "{}.{}.{}",
        parts[0],
        engine.encode(claims.to_string()),
        parts[2]
    );
    let foreign_key = tessera::provider::keys::SigningKey::from_pem(
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256)
            .unwrap()
            .as_bytes(),
        tessera::provider::keys::SigningAlg::Es256,
    )
    .unwrap();
    let foreign = foreign_key
        .sign(
            tessera::provider::keys::TokenType::Access,
            claims.to_string().as_bytes(),
        )
        .unwrap();
    let none_alg = format!(
        "{}.{}.",
        engine.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
        parts[1]
    );
    for bad in [altered, foreign, none_alg, format!("{fresh}x")] {
        assert_eq!(
            introspect(&op, &bad).await,
            serde_json::json!({"active": false}),
            "{bad}"
        );
        assert_invalid_token(userinfo_refusal(&op, &bad).await, &bad);
    }
    // an ID token is not an access token
    let id = body_id_token(&op).await;
    assert_eq!(introspect(&op, &id).await["active"], false);
    assert_invalid_token(userinfo_refusal(&op, &id).await, "ID token as bearer");

    // expiry: a token of a 1 s lifetime is inactive once it has passed
    let (s, short, _) = token(
        &op,
        &[("grant_type", "client_credentials")],
        Some(("short", "short-secret-short-secret")),
    )
    .await;
    assert_eq!(s, 200, "{short}");
    let short = short["access_token"].as_str().unwrap();
    let as_short = ("short", "short-secret-short-secret");
    assert_eq!(introspect_as(&op, as_short, short).await["active"], true);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(introspect_as(&op, as_short, short).await["active"], false);
}

async fn body_id_token(op: &Op) -> String {
    code_flow(op, "openid").await["id_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `yaml` with the metrics served at `/metrics`.
fn with_metrics(yaml: &str) -> String {
    yaml.replace(
        "oidcProvider:\n",
        "telemetry: { metrics: { location: /metrics } }\noidcProvider:\n",
    )
}

async fn metrics_text(gw: &Gateway) -> String {
    client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Floods the token endpoint with `client_credentials` for `client` from `tasks` concurrent
/// loops for `secs`; returns (answers by status, the refusals' Retry-After and body).
async fn flood(
    gw: &Gateway,
    client_id: &'static str,
    secret: &'static str,
    tasks: usize,
    secs: u64,
) -> (HashMap<u16, usize>, Vec<(String, Value)>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let url = gw.url("/oauth2/token");
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let url = url.clone();
        handles.push(tokio::spawn(async move {
            let c = client();
            let mut counts: HashMap<u16, usize> = HashMap::new();
            let mut refusals = Vec::new();
            while std::time::Instant::now() < deadline {
                let r = c
                    .post(&url)
                    .basic_auth(client_id, Some(secret))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                *counts.entry(status).or_default() += 1;
                if status != 200 && refusals.len() < 3 {
                    let retry = r
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    refusals.push((retry, r.json::<Value>().await.unwrap()));
                }
            }
            (counts, refusals)
        }));
    }
    let mut counts: HashMap<u16, usize> = HashMap::new();
    let mut refusals = Vec::new();
    for h in handles {
        let (c, r) = h.await.unwrap();
        for (k, v) in c {
            *counts.entry(k).or_default() += v;
        }
        refusals.extend(r);
    }
    (counts, refusals)
}

const FLOODER: &str = r#"  - name: flooder
    type: oidc
    clientID: flooder
    clientSecret: flooder-secret-flooder
    redirectURLs: []
    grantTypes: [client_credentials]
    rateLimit: { requestsPerSecond: 20, burst: 10 }
"#;

/// Issue #14: one client hammering `client_credentials` is held to its `rateLimit` (429 with
/// `Retry-After` and an OAuth error body, counted in the metrics), its JWTs leave nothing in
/// the store, and a user signing in through the browser meanwhile is not affected.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_credentials_flood_is_limited_and_logins_keep_working() {
    let (yaml, keys) = provider_yaml(FLOODER, "jwt", 10);
    let op = Op {
        gw: Gateway::start(&with_metrics(&yaml)),
        _keys: keys,
    };
    let secs = 3;
    let started = std::time::Instant::now();
    let (flooded, logins) = tokio::join!(
        flood(&op.gw, "flooder", "flooder-secret-flooder", 8, secs),
        async {
            let mut done = 0;
            while started.elapsed() < std::time::Duration::from_secs(secs) {
                let body = code_flow(&op, "openid email").await;
                assert!(body["id_token"].is_string(), "{body}");
                done += 1;
            }
            done
        }
    );
    let elapsed = started.elapsed().as_secs_f64();
    let (counts, refusals) = flooded;
    let granted = counts.get(&200).copied().unwrap_or(0);
    let limited = counts.get(&429).copied().unwrap_or(0);
    assert!(logins >= 1, "the user signed in during the flood");
    assert_eq!(
        granted + limited,
        counts.values().sum::<usize>(),
        "only 200 and 429: {counts:?}"
    );
    // the bucket: 10 at once, then 20 per second
    let allowed = 10.0 + 20.0 * elapsed + 5.0;
    assert!(
        (granted as f64) <= allowed && granted >= 10,
        "{granted} granted in {elapsed:.1} s (at most {allowed:.0}): {counts:?}"
    );
    assert!(
        limited > granted,
        "the flood exceeded the limit: {counts:?}"
    );
    for (retry, body) in &refusals {
        assert_eq!(retry, "1", "Retry-After of a 20/s bucket");
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    }
    let m = metrics_text(&op.gw).await;
    let line = format!(
        "tessera_oidc_token_requests_limited_total{{client=\"flooder\",limit=\"client_rate\"}} {limited}"
    );
    assert!(m.contains(&line), "{line} in\n{m}");
    let rss_mib = op.gw.rss_kib() / 1024;
    assert!(rss_mib < 150, "RSS {rss_mib} MiB after the flood");
}

/// Issue #14: token state has a budget (`tokenStateMiB`) inside the memory store's: opaque
/// tokens past it are refused (503, `Retry-After`), and sessions still find room.
#[tokio::test(flavor = "multi_thread")]
async fn the_token_state_budget_never_starves_logins() {
    let opaque = r#"  - name: bulk
    type: oidc
    clientID: bulk
    clientSecret: bulk-secret-bulk-secret
    redirectURLs: []
    grantTypes: [client_credentials]
    accessToken: { type: opaque }
"#;
    let (yaml, keys) = provider_yaml(opaque, "jwt", 10);
    let yaml = yaml.replace(
        "oidcProvider:\n",
        "session: { memoryStore: { maxMiB: 4 } }\noidcProvider:\n  tokenStateMiB: 1\n",
    );
    let op = Op {
        gw: Gateway::start(&with_metrics(&yaml)),
        _keys: keys,
    };
    // ~1 MiB of records fill within seconds; the answers of every round count
    let mut refused = None;
    let mut counts = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..20 {
        let (round, refusals) = flood(&op.gw, "bulk", "bulk-secret-bulk-secret", 8, 1).await;
        for (status, n) in &round {
            *counts.entry(*status).or_default() += *n;
        }
        if round.contains_key(&503) {
            refused = Some(refusals);
            break;
        }
    }
    let refusals = refused.expect("the budget filled");
    // each record (the grant with its claims) costs ~1.5 KiB
    assert!(counts[&200] >= 300, "{counts:?}");
    assert_eq!(counts.len(), 2, "200 then 503 only: {counts:?}");
    for (retry, body) in &refusals {
        assert!(retry.parse::<u64>().unwrap() >= 1, "{retry}");
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    }
    // the budget is full, the store is not: a browser login still makes a session
    let (cookie, _) = login(&op.gw, "/portal", "local", "alice", "pw").await;
    assert!(cookie.starts_with("tessera_session="));
    let m = metrics_text(&op.gw).await;
    assert!(
        m.contains(
            r#"tessera_oidc_token_requests_limited_total{client="bulk",limit="state_budget"}"#
        ),
        "{m}"
    );
    let used: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("tessera_oidc_token_state_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(used <= 1024 * 1024, "{used}");
}

/// `tessera validate` on `yaml`: (exit code, stderr with the file named `t.yaml`).
pub(crate) fn validate(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&path)
        .env_remove("TESSERA_HTTP_ADDRESS")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stderr)
        .unwrap()
        .replace(&path.display().to_string(), "t.yaml");
    (out.status.code(), text)
}

/// The line of `needle` in `yaml`, 1-based.
fn line_of(yaml: &str, needle: &str) -> usize {
    yaml.lines().position(|l| l.contains(needle)).unwrap() + 1
}

/// Rate limits and budgets are checked at load: each bad value refused at its position.
#[test]
fn limit_configuration_errors_are_positioned() {
    let app = |extra: &str| {
        format!("  - name: x\n    type: oidc\n    clientID: x\n    clientSecret: x-secret-x-secret-x\n    redirectURLs: []\n    grantTypes: [client_credentials]\n{extra}")
    };
    let cases = [
        (
            app("    rateLimit: { requestsPerSecond: 0 }\n"),
            "rateLimit",
            18,
            "0 is out of range\n    hint: use 1 to 1000000",
        ),
        (
            app("    rateLimit: { requestsPerSecond: 5, burst: 2000000 }\n"),
            "rateLimit",
            40,
            "2000000 is out of range\n    hint: use 1 to 1000000",
        ),
        (
            app("    rateLimit: { requestsPerSecond: 5, bucket: 1 }\n"),
            "rateLimit",
            40,
            "unknown key `bucket`\n    hint: valid keys here: requestsPerSecond, burst",
        ),
        (
            "  - name: x\n    type: oidc\n    clientID: x\n    clientSecret: x-secret-x-secret-x\n    redirectURLs: [\"https://x.example/cb\"]\n    authentication: { idps: [local] }\n    rateLimit: { requestsPerSecond: 5 }\n".to_string(),
            "rateLimit",
            5,
            "rateLimit applies to client_credentials and password requests, which this app does not use\n    hint: remove it, or add one of these grant types",
        ),
    ];
    for (extra, needle, col, expected) in cases {
        let (yaml, _keys) = provider_yaml(&extra, "jwt", 10);
        let (code, out) = validate(&yaml);
        let line = line_of(&yaml, needle);
        assert_eq!(code, Some(2), "{out}");
        assert_eq!(
            out,
            format!("t.yaml:{line}:{col}: {expected}\n1 problem in t.yaml\n"),
            "{yaml}"
        );
    }
    for (top, expected) in [
        ("tokenStateMiB: 0", "must be greater than 0"),
        (
            "tokenStateMiB: 200",
            "200 MiB of tokens would leave too little of the memory store (256 MiB) to sessions and login flows\n    hint: use at most three quarters of session.memoryStore.maxMiB, or raise it",
        ),
    ] {
        let (yaml, _keys) = provider_yaml("", "jwt", 10);
        let yaml = yaml.replace("oidcProvider:\n", &format!("oidcProvider:\n  {top}\n"));
        let (code, out) = validate(&yaml);
        assert_eq!(code, Some(2), "{out}");
        let line = line_of(&yaml, top);
        assert_eq!(
            out,
            format!("t.yaml:{line}:3: {expected}\n1 problem in t.yaml\n")
        );
    }
}

/// Key rotation by reload: a new first key signs, the old one (still listed) verifies what it
/// signed until it is removed.
#[tokio::test(flavor = "multi_thread")]
async fn key_rotation_by_reload() {
    let (yaml, keys) = provider_yaml("", "jwt", 10);
    let old_key = keys.path().join("es256.pem");
    let new_key = keys.path().join("new.pem");
    std::fs::write(
        &new_key,
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256).unwrap(),
    )
    .unwrap();
    let op = Op {
        gw: Gateway::start(&yaml),
        _keys: keys,
    };
    let cc = || async {
        let (s, b, _) = token(
            &op,
            &[("grant_type", "client_credentials")],
            Some(("webapp", SECRET)),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        b["access_token"].as_str().unwrap().to_string()
    };
    let kid_of = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    let old_token = cc().await;
    let old_id = body_id_token(&op).await;
    let old_kid = kid_of(&old_token);
    let reload = |keys: String| {
        let line = format!(
            "  signingKeys: [{{ file: {}, alg: ES256 }}]",
            old_key.display()
        );
        assert!(yaml.contains(&line));
        let n = op.gw.count_logs("config reloaded");
        op.gw
            .rewrite_config(&yaml.replace(&line, &format!("  signingKeys: [{keys}]")));
        op.gw.signal("HUP");
        op.gw
            .wait_logs("config reloaded", n + 1, std::time::Duration::from_secs(20));
    };
    reload(format!(
        "{{ file: {}, alg: ES256 }}, {{ file: {}, alg: ES256 }}",
        new_key.display(),
        old_key.display()
    ));
    let published: Vec<String> = jwks(&op).await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(published.len(), 2);
    assert_eq!(published[1], old_kid, "the old key is still published");
    let new_token = cc().await;
    assert_eq!(kid_of(&new_token), published[0], "the new first key signs");
    assert_ne!(published[0], old_kid);
    assert_eq!(introspect(&op, &old_token).await["active"], true);
    assert_eq!(introspect(&op, &new_token).await["active"], true);
    // the old key removed: what it signed is no longer ours
    reload(format!("{{ file: {}, alg: ES256 }}", new_key.display()));
    assert_eq!(introspect(&op, &old_token).await["active"], false);
    assert_eq!(introspect(&op, &new_token).await["active"], true);
    // an ID token of the removed key is no valid id_token_hint any more
    let r = client()
        .get(op.gw.url(&format!("/oauth2/logout?id_token_hint={old_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
