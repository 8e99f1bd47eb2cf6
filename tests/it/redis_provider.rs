//! The OIDC provider on two replicas sharing one Redis: a code issued by A is redeemed at B,
//! a refresh token rotated at A and replayed at B is detected, both publish the same keys.

use std::collections::HashMap;

use crate::support::redis::RedisServer;
use crate::support::*;
use serde_json::Value;

const SECRET: &str = "replica-client-secret";
const REDIRECT: &str = "https://rp.example.com/cb";

fn yaml(redis: &str, key: &std::path::Path) -> String {
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
session: {{ store: shared }}
caches:
  - {{ name: shared, type: redis, redis: {{ addresses: ["{redis}"], timeoutMillis: 500 }} }}
connectors:
  - name: local
    type: local
    users: [{{ username: alice, passwordHash: "{hash}", attributes: {{ email: alice@example.com }} }}]
oidcProvider:
  issuer: http://localhost:1234
  cache: shared
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: portal
    type: proxy
    routePatterns: ["/portal"]
    upstream: http://127.0.0.1:9
    policies: [{{ location: /, authentication: {{ idps: [local] }}, authorization: {{ allowAll: true }} }}]
  - name: web
    type: oidc
    clientID: web
    clientSecret: {SECRET}
    redirectURLs: ["{REDIRECT}"]
    grantTypes: [authorization_code, refresh_token]
    authentication: {{ idps: [local] }}
    refreshToken: {{ allowOfflineAccess: true, reuseGraceSeconds: 0 }}
  - name: svc
    type: oidc
    clientID: svc
    clientSecret: {SECRET}
    redirectURLs: []
    grantTypes: [client_credentials]
    rateLimit: {{ requestsPerSecond: 1, burst: 4 }}
"#,
        hash = pw_hash(),
        key = key.display()
    )
}

async fn token(gw: &Gateway, form: &[(&str, &str)]) -> (u16, Value) {
    let r = client()
        .post(gw.url("/oauth2/token"))
        .basic_auth("web", Some(SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn introspect(gw: &Gateway, t: &str) -> Value {
    client()
        .post(gw.url("/oauth2/introspect"))
        .basic_auth("web", Some(SECRET))
        .form(&[("token", t)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn userinfo_status(gw: &Gateway, t: &str) -> u16 {
    client()
        .get(gw.url("/oauth2/userinfo"))
        .bearer_auth(t)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_state_is_shared_by_replicas() {
    let server = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("k.pem");
    std::fs::write(
        &key,
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256).unwrap(),
    )
    .unwrap();
    let config = yaml(&server.address(), &key);
    let a = Gateway::start(&config);
    let b = Gateway::start(&config);
    let c = client();
    // same keys published by both
    let ja: Value = c
        .get(a.url("/oauth2/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jb: Value = c
        .get(b.url("/oauth2/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ja, jb);

    // sign in at A (the session lives in Redis), authorize at B with that session
    let (session, _) = login(&a, "/portal", "local", "alice", "pw").await;
    let verifier = tessera::session::random_token(32);
    use base64::Engine;
    use sha2::Digest;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", "web"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "openid offline_access"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    let r = c
        .get(b.url(&format!("/oauth2/authorize?{q}")))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with(REDIRECT),
        "B sees the session made at A: {loc}"
    );
    let params: HashMap<String, String> = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let code = &params["code"];

    // the code issued by B is redeemed at A, once
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let (s, tokens) = token(&a, &form).await;
    assert_eq!(s, 200, "{tokens}");

    // a JWT access token revoked at A is inactive at B (the revocation set is shared), and
    // userinfo at B refuses it
    let at = tokens["access_token"].as_str().unwrap();
    assert_eq!(introspect(&b, at).await["active"], true);
    assert_eq!(userinfo_status(&b, at).await, 200);
    let r = c
        .post(a.url("/oauth2/revoke"))
        .basic_auth("web", Some(SECRET))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        introspect(&b, at).await,
        serde_json::json!({"active": false})
    );
    assert_eq!(userinfo_status(&b, at).await, 401);
    assert_eq!(introspect(&a, at).await["active"], false);

    // rotated at A, replayed at B after the grace period: detected, the family is revoked
    let rt1 = tokens["refresh_token"].as_str().unwrap();
    let (s, rotated) = token(
        &a,
        &[("grant_type", "refresh_token"), ("refresh_token", rt1)],
    )
    .await;
    assert_eq!(s, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, e) = token(
        &b,
        &[("grant_type", "refresh_token"), ("refresh_token", rt1)],
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    let rt2 = rotated["refresh_token"].as_str().unwrap();
    let (s, e) = token(
        &a,
        &[("grant_type", "refresh_token"), ("refresh_token", rt2)],
    )
    .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "the whole family is revoked"
    );
    let r = c
        .get(b.url("/oauth2/userinfo"))
        .bearer_auth(rotated["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "and its access tokens, at every replica");
    assert_eq!(
        introspect(&b, rotated["access_token"].as_str().unwrap()).await,
        serde_json::json!({"active": false})
    );
    // the code, single use across replicas
    let (s, e) = token(&b, &form).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "code replay at the other replica"
    );

    // a client's rate limit is one bucket for all replicas: 4 at once, then 1 per second
    let mut statuses = Vec::new();
    for gw in [&a, &b, &a, &b, &a, &b] {
        let r = c
            .post(gw.url("/oauth2/token"))
            .basic_auth("svc", Some(SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
}
