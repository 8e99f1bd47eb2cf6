//! The provider meets clients as they are (issue 18): unknown scopes ignored (or refused with
//! `strictScopes`), token parameters in the query string for a client that opts in, per-client
//! signing algorithms, `username` at introspection, `requirePKCE` and the code lifetime.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::support::*;
use base64::Engine;
use serde_json::Value;
use sha2::Digest;

const SECRET: &str = "s3cret-s3cret-s3cret";
const REDIRECT: &str = "https://rp.example.com/cb";
const ISSUER: &str = "http://localhost:1234";

/// One RSA key for the whole module (generating one takes a while in a debug build).
fn rsa_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Rs256).unwrap()
    })
}

struct Op {
    gw: Gateway,
    _keys: tempfile::TempDir,
}

/// The configuration: an ES256 key (first) and an RS256 key, the local user alice, a proxy
/// app to sign in at, and the client `rp` with `client` appended to its settings; `provider`
/// is appended to the provider's settings, `apps` to the apps.
fn yaml(client: &str, provider: &str, apps: &str) -> (String, tempfile::TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let es = es256_key(&keys);
    let rs = keys.path().join("rs256.pem");
    std::fs::write(&rs, rsa_pem()).unwrap();
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
    users:
      - {{ username: alice, passwordHash: "{hash}", attributes: {{ email: alice@example.com }} }}
oidcProvider:
  issuer: {ISSUER}
  signingKeys: [{{ file: {es}, alg: ES256 }}, {{ file: {rs}, alg: RS256 }}]
{provider}
apps:
  - name: portal
    type: proxy
    routePatterns: ["/portal"]
    upstream: http://127.0.0.1:9
    policies: [{{ location: /, authentication: {{ idps: [local] }}, authorization: {{ allowAll: true }} }}]
  - name: rp
    type: oidc
    clientID: rp
    clientSecret: {SECRET}
    redirectURLs: ["{REDIRECT}"]
    grantTypes: [authorization_code, refresh_token, client_credentials, password]
    scopes: [reports.read]
    authentication: {{ idps: [local] }}
    refreshToken: {{ allowOfflineAccess: true }}
{client}
{apps}
"#,
        hash = pw_hash(),
        es = es.display(),
        rs = rs.display(),
    );
    (yaml, keys)
}

fn start(client: &str, provider: &str, apps: &str) -> Op {
    let (yaml, keys) = yaml(client, provider, apps);
    Op {
        gw: Gateway::start(&yaml),
        _keys: keys,
    }
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Alice's session cookie (signed in at the proxy app).
async fn alice(op: &Op) -> String {
    login(&op.gw, "/portal", "local", "alice", "pw").await.0
}

/// An authorization request of a signed-in user: the query of the redirect to the client.
async fn authorize(op: &Op, cookie: &str, params: &[(&str, &str)]) -> HashMap<String, String> {
    let q = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let r = client()
        .get(op.gw.url(&format!("/oauth2/authorize?{q}")))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    query_of(loc)
}

/// A code for `client_id` with `scope` (no PKCE).
async fn code(op: &Op, cookie: &str, client_id: &str, scope: &str) -> HashMap<String, String> {
    authorize(
        op,
        cookie,
        &[
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", scope),
            ("state", "st"),
        ],
    )
    .await
}

async fn token(op: &Op, form: &[(&str, &str)], id: &str) -> (u16, Value) {
    let r = client()
        .post(op.gw.url("/oauth2/token"))
        .form(form)
        .basic_auth(id, Some(SECRET))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn redeem(op: &Op, id: &str, code: &str) -> (u16, Value) {
    token(
        op,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
        ],
        id,
    )
    .await
}

fn error_of(body: &Value) -> (&str, &str) {
    (
        body["error"].as_str().unwrap_or_default(),
        body["error_description"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn unknown_scopes_are_ignored_and_the_granted_scope_is_returned() {
    let op = start("", "", "");
    let cookie = alice(&op).await;
    // authorize: `groups` and `admin` are not this client's: dropped
    let q = code(
        &op,
        &cookie,
        "rp",
        "openid email groups profile admin email",
    )
    .await;
    let (s, body) = redeem(&op, "rp", &q["code"]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["scope"], "openid email profile");
    assert!(body["id_token"].is_string());
    // nothing grantable: invalid_scope, at authorize and at the token endpoint
    let q = code(&op, &cookie, "rp", "groups admin").await;
    assert_eq!(
        (q["error"].as_str(), q["error_description"].as_str()),
        (
            "invalid_scope",
            "none of the requested scopes is allowed for this client"
        )
    );
    assert_eq!(q["state"], "st");
    let (s, body) = token(
        &op,
        &[("grant_type", "client_credentials"), ("scope", "admin")],
        "rp",
    )
    .await;
    assert_eq!(
        (s, error_of(&body)),
        (
            400,
            (
                "invalid_scope",
                "none of the requested scopes is allowed for this client"
            )
        )
    );
    // client credentials: only its custom scopes; standard ones are not a client's
    let (s, body) = token(
        &op,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "reports.read admin openid"),
        ],
        "rp",
    )
    .await;
    assert_eq!((s, body["scope"].as_str()), (200, Some("reports.read")));
    // password grant
    let (s, body) = token(
        &op,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "pw"),
            ("scope", "openid groups offline_access"),
        ],
        "rp",
    )
    .await;
    assert_eq!(
        (s, body["scope"].as_str()),
        (200, Some("openid offline_access"))
    );
    // refresh down-scoping: a scope not granted originally is dropped
    let rt = body["refresh_token"].as_str().unwrap();
    let (s, body) = token(
        &op,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("scope", "openid email"),
        ],
        "rp",
    )
    .await;
    assert_eq!(
        (s, body["scope"].as_str()),
        (200, Some("openid offline_access")),
        "{body}"
    );
    let rt = body["refresh_token"].as_str().unwrap();
    let (s, body) = token(
        &op,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("scope", "email"),
        ],
        "rp",
    )
    .await;
    assert_eq!(
        (s, error_of(&body)),
        (
            400,
            (
                "invalid_scope",
                "none of the requested scopes is allowed for this client"
            )
        )
    );
}

#[tokio::test]
async fn strict_scopes_refuse_what_the_client_may_not_have() {
    let op = start("    strictScopes: true\n", "", "");
    let cookie = alice(&op).await;
    let q = code(&op, &cookie, "rp", "openid email groups").await;
    assert_eq!(
        (q["error"].as_str(), q["error_description"].as_str()),
        (
            "invalid_scope",
            "scope `groups` is not allowed for this client"
        )
    );
    assert!(!q.contains_key("code"));
    let (s, body) = token(
        &op,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "reports.read admin"),
        ],
        "rp",
    )
    .await;
    assert_eq!(
        (s, error_of(&body)),
        (
            400,
            (
                "invalid_scope",
                "scope `admin` is not allowed for this client"
            )
        )
    );
    let (s, body) = token(
        &op,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "pw"),
            ("scope", "openid offline_access"),
        ],
        "rp",
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = token(
        &op,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", body["refresh_token"].as_str().unwrap()),
            ("scope", "openid email"),
        ],
        "rp",
    )
    .await;
    assert_eq!(
        (s, error_of(&body)),
        (
            400,
            ("invalid_scope", "scope `email` was not granted originally")
        )
    );
    // what it may have is granted as before
    let q = code(&op, &cookie, "rp", "openid email").await;
    let (s, body) = redeem(&op, "rp", &q["code"]).await;
    assert_eq!((s, body["scope"].as_str()), (200, Some("openid email")));
}

/// The header of a JWT and its claims, verified with the JWKS key its `kid` names, by the
/// algorithm `alg` only.
fn verified(
    jwks: &Value,
    token: &str,
    alg: jsonwebtoken::Algorithm,
) -> (jsonwebtoken::Header, Value) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.clone().unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS"))
        .clone();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(alg);
    v.validate_aud = false;
    v.set_issuer(&[ISSUER]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims;
    (header, claims)
}

async fn get_json(op: &Op, path: &str) -> Value {
    client()
        .get(op.gw.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn each_client_gets_its_signing_algorithm() {
    let op = start(
        "    idTokenSignedResponseAlg: RS256\n",
        "",
        r#"  - name: api
    type: oidc
    clientID: api
    clientSecret: s3cret-s3cret-s3cret
    redirectURLs: ["https://rp.example.com/cb"]
    authentication: { idps: [local] }
    accessTokenSignedResponseAlg: RS256
"#,
    );
    let discovery = get_json(&op, "/.well-known/openid-configuration").await;
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256", "RS256"])
    );
    let jwks = get_json(&op, "/oauth2/jwks").await;
    let kid_of = |alg: &str| {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["alg"] == alg)
            .unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let cookie = alice(&op).await;
    // rp: RS256 ID tokens (at_hash with SHA-256), access tokens with the first key (ES256)
    let q = code(&op, &cookie, "rp", "openid").await;
    let (s, body) = redeem(&op, "rp", &q["code"]).await;
    assert_eq!(s, 200, "{body}");
    let access = body["access_token"].as_str().unwrap();
    let (h, claims) = verified(
        &jwks,
        body["id_token"].as_str().unwrap(),
        jsonwebtoken::Algorithm::RS256,
    );
    assert_eq!(
        (h.alg, h.kid.unwrap(), h.typ.as_deref()),
        (jsonwebtoken::Algorithm::RS256, kid_of("RS256"), Some("JWT"))
    );
    let digest = sha2::Sha256::digest(access.as_bytes());
    assert_eq!(
        claims["at_hash"],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
    );
    let (h, _) = verified(&jwks, access, jsonwebtoken::Algorithm::ES256);
    assert_eq!(
        (h.alg, h.kid.unwrap()),
        (jsonwebtoken::Algorithm::ES256, kid_of("ES256"))
    );
    // api: RS256 access tokens, ES256 ID tokens; its RS256 access token is a live token
    let q = code(&op, &cookie, "api", "openid").await;
    let (s, body) = redeem(&op, "api", &q["code"]).await;
    assert_eq!(s, 200, "{body}");
    let access = body["access_token"].as_str().unwrap();
    let (h, _) = verified(&jwks, access, jsonwebtoken::Algorithm::RS256);
    assert_eq!(
        (h.alg, h.kid.unwrap(), h.typ.as_deref()),
        (
            jsonwebtoken::Algorithm::RS256,
            kid_of("RS256"),
            Some("at+jwt")
        )
    );
    let (h, _) = verified(
        &jwks,
        body["id_token"].as_str().unwrap(),
        jsonwebtoken::Algorithm::ES256,
    );
    assert_eq!(h.alg, jsonwebtoken::Algorithm::ES256);
    let r = client()
        .get(op.gw.url("/oauth2/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn introspect(op: &Op, token: &str) -> Value {
    client()
        .post(op.gw.url("/oauth2/introspect"))
        .basic_auth("rp", Some(SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn introspection_names_the_user() {
    // default: the connector's `username`
    let op = start("", "", "");
    let cookie = alice(&op).await;
    let q = code(&op, &cookie, "rp", "openid offline_access").await;
    let (_, body) = redeem(&op, "rp", &q["code"]).await;
    for t in ["access_token", "refresh_token"] {
        let info = introspect(&op, body[t].as_str().unwrap()).await;
        assert_eq!(
            (info["active"].as_bool(), info["username"].as_str()),
            (Some(true), Some("alice")),
            "{t}: {info}"
        );
    }
    // a client's own token has no resource owner, so no username
    let (_, cc) = token(&op, &[("grant_type", "client_credentials")], "rp").await;
    let info = introspect(&op, cc["access_token"].as_str().unwrap()).await;
    assert_eq!(info["active"], true);
    assert!(info.get("username").is_none(), "{info}");
    // configured: another attribute, for the password grant and opaque tokens too
    let op = start(
        "    accessToken: { type: opaque }\n",
        "  introspection: { usernameAttribute: email }\n",
        "",
    );
    let (_, body) = token(
        &op,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "pw"),
        ],
        "rp",
    )
    .await;
    let info = introspect(&op, body["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (info["active"].as_bool(), info["username"].as_str()),
        (Some(true), Some("alice@example.com")),
        "{info}"
    );
}

#[tokio::test]
async fn require_pkce_and_the_code_lifetime_are_per_client() {
    let op = start(
        "    requirePKCE: true\n    authorizationCodeLifetimeSeconds: 1\n",
        "",
        "",
    );
    let cookie = alice(&op).await;
    let q = code(&op, &cookie, "rp", "openid").await;
    assert_eq!(
        (q["error"].as_str(), q["error_description"].as_str()),
        (
            "invalid_request",
            "PKCE is required for this client: send code_challenge with S256"
        )
    );
    let verifier = tessera::session::random_token(32);
    let fresh = pkce_code(&op, &cookie, &verifier).await;
    let (s, body) = redeem_pkce(&op, &fresh["code"], &verifier).await;
    assert_eq!(s, 200, "{body}");
    // a code past its lifetime (1 s) is gone
    let stale = pkce_code(&op, &cookie, &verifier).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (s, body) = redeem_pkce(&op, &stale["code"], &verifier).await;
    assert_eq!(
        (s, error_of(&body)),
        (
            400,
            (
                "invalid_grant",
                "the code is invalid, expired or already used"
            )
        )
    );
}

async fn pkce_code(op: &Op, cookie: &str, verifier: &str) -> HashMap<String, String> {
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    authorize(
        op,
        cookie,
        &[
            ("client_id", "rp"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await
}

async fn redeem_pkce(op: &Op, code: &str, verifier: &str) -> (u16, Value) {
    token(
        op,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
        "rp",
    )
    .await
}
/// A code exchange the way Okta's classic Flask sample sends it: the parameters in the
/// query string, an empty form body, HTTP Basic (`basic`: whether to send Basic, else the
/// secret as `client_secret` in the body); `body` adds form parameters.
async fn query_exchange(
    op: &Op,
    id: &str,
    code: &str,
    basic: bool,
    body: &[(&str, &str)],
) -> (u16, Value) {
    let q = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
        ])
        .finish();
    let mut form: Vec<(&str, &str)> = body.to_vec();
    if !basic {
        form.extend([("client_id", id), ("client_secret", SECRET)]);
    }
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req = client()
        .post(op.gw.url(&format!("/oauth2/token?{q}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form);
    if basic {
        req = req.basic_auth(id, Some(SECRET));
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn token_parameters_in_the_query_only_for_a_basic_client_that_opts_in() {
    let op = start(
        "    tokenEndpoint: { acceptQueryParameters: true }\n",
        "",
        r#"  - name: other
    type: oidc
    clientID: other
    clientSecret: s3cret-s3cret-s3cret
    redirectURLs: ["https://rp.example.com/cb"]
    authentication: { idps: [local] }
"#,
    );
    let cookie = alice(&op).await;
    let body_only = (
        400,
        (
            "invalid_request",
            "parameters must be sent in the body, not the query",
        ),
    );
    // another client: refused as always
    let q = code(&op, &cookie, "other", "openid").await;
    let (s, body) = query_exchange(&op, "other", &q["code"], true, &[]).await;
    assert_eq!((s, error_of(&body)), body_only);
    // the opted-in client, authenticating in the body: refused too
    let q = code(&op, &cookie, "rp", "openid").await;
    let (s, body) = query_exchange(&op, "rp", &q["code"], false, &[]).await;
    assert_eq!((s, error_of(&body)), body_only);
    // a parameter in both places
    let (s, body) = query_exchange(&op, "rp", &q["code"], true, &[("code", "other")]).await;
    assert_eq!(
        (s, error_of(&body)),
        (
            400,
            (
                "invalid_request",
                "parameter `code` is sent both in the query and in the body"
            )
        )
    );
    // wrong credentials are still wrong
    let r = client()
        .post(op.gw.url(&format!(
            "/oauth2/token?grant_type=authorization_code&code={}&redirect_uri={REDIRECT}",
            q["code"]
        )))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth("rp", Some("wrong-wrong-wrong-wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // the opted-in client with Basic: the code (unused by the refusals above) is exchanged
    let (s, body) = query_exchange(&op, "rp", &q["code"], true, &[]).await;
    assert_eq!(s, 200, "{body}");
    assert!(body["id_token"].is_string());
    // the other clients' other endpoints keep refusing query parameters
    let r = client()
        .post(op.gw.url("/oauth2/introspect?token=x"))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth("rp", Some(SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_of(&body), body_only.1);
}

#[test]
fn compatibility_settings_are_checked_at_load() {
    let keys = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
connectors:
  - {{ name: local, type: local, users: [] }}
oidcProvider:
  issuer: http://localhost:1234
  signingKeys: [{{ file: {key}, alg: ES256 }}]
  introspection: {{ usernameAttribute: local.email }}
apps:
  - name: a
    type: oidc
    clientID: a
    clientSecret: s3cret-s3cret-s3cret
    redirectURLs: ["https://rp.example.com/cb"]
    authentication: {{ idps: [local] }}
    idTokenSignedResponseAlg: RS256
    accessTokenSignedResponseAlg: HS256
    authorizationCodeLifetimeSeconds: 601
  - name: b
    type: oidc
    clientID: b
    public: true
    redirectURLs: ["https://rp.example.com/cb"]
    authentication: {{ idps: [local] }}
    tokenEndpoint: {{ acceptQueryParameters: true }}
    authorizationCodeLifetimeSeconds: 0
"#,
        key = es256_key(&keys).display()
    );
    let (code, text) = crate::provider::validate(&yaml);
    assert_eq!(code, Some(2), "{text}");
    assert_eq!(
        text,
        "t.yaml:8:20: `local.email` is not an attribute name
    hint: name the attribute without its connector, e.g. `username` or `mail`
t.yaml:16:5: no signing key of the provider has algorithm RS256
    hint: add a RS256 key to oidcProvider.signingKeys (configured: ES256)
t.yaml:17:5: unsupported algorithm `HS256`
    hint: use ES256, RS256 or EdDSA
t.yaml:18:5: 601 is out of range
    hint: use 1 to 600 seconds
t.yaml:25:22: query parameters are accepted only from a client that authenticates with HTTP Basic, and a public client has no secret
    hint: remove it, or give the client a clientSecret
t.yaml:26:5: 0 is out of range
    hint: use 1 to 600 seconds
6 problems in t.yaml
"
    );
}
