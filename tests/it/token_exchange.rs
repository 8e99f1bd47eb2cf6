//! Token exchange (RFC 8693): a user's token from one client exchanged by another for an
//! audience it may ask for, with `act` naming who acts; every bad request's exact answer.

use crate::support::*;
use base64::Engine;
use serde_json::{json, Value};

const SECRET: &str = "s3cret-s3cret-s3cret";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
const ORDERS: &str = "https://orders.example";

struct Op {
    gw: Gateway,
    _dir: tempfile::TempDir,
}

/// `frontend` (JWT tokens, password grant) and `legacy` (opaque tokens) get alice's tokens;
/// `backend` may exchange for orders and billing, `relay` for billing only; `orders` is a
/// resource server introspecting every token.
fn provider() -> Op {
    let dir = tempfile::tempdir().unwrap();
    let app = |name: &str, extra: &str| {
        format!("  - name: {name}\n    type: oidc\n    clientID: {name}\n    clientSecret: {SECRET}\n    redirectURLs: []\n{extra}")
    };
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
  issuer: http://localhost:1234
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
{frontend}{legacy}{backend}{relay}{orders}"#,
        hash = pw_hash(),
        key = es256_key(&dir).display(),
        frontend = app(
            "frontend",
            "    grantTypes: [password]\n    scopes: [orders.read]\n    authentication: { idps: [local] }\n"
        ),
        legacy = app(
            "legacy",
            "    grantTypes: [password]\n    authentication: { idps: [local] }\n    accessToken: { type: opaque }\n"
        ),
        backend = app(
            "backend",
            &format!("    grantTypes: [client_credentials]\n    tokenExchange: {{ audiences: [\"{ORDERS}\", \"https://billing.example\"] }}\n")
        ),
        relay = app(
            "relay",
            "    grantTypes: [client_credentials]\n    tokenExchange: { audiences: [\"https://billing.example\"] }\n"
        ),
        orders = app(
            "orders",
            "    grantTypes: [client_credentials]\n    introspection: { tokensOf: [\"*\"] }\n"
        ),
    );
    Op {
        gw: Gateway::start(&yaml),
        _dir: dir,
    }
}

async fn post(op: &Op, path: &str, who: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = client()
        .post(op.gw.url(path))
        .basic_auth(who, Some(SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// alice's access token from `client` (password grant).
async fn alice_token(op: &Op, client: &str, scope: &str) -> String {
    let (status, body) = post(
        op,
        "/oauth2/token",
        client,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "pw"),
            ("scope", scope),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

async fn exchange(op: &Op, who: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![("grant_type", GRANT)];
    form.extend_from_slice(extra);
    post(op, "/oauth2/token", who, &form).await
}

fn payload(jwt: &str) -> Value {
    let seg = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(seg)
            .unwrap(),
    )
    .unwrap()
}

async fn introspect(op: &Op, token: &str) -> Value {
    post(op, "/oauth2/introspect", "orders", &[("token", token)])
        .await
        .1
}

#[tokio::test]
async fn a_token_exchanged_for_another_audience_names_its_actor() {
    let op = provider();
    let subject = alice_token(&op, "frontend", "openid email orders.read").await;
    let (status, body) = exchange(
        &op,
        "backend",
        &[
            ("subject_token", &subject),
            ("subject_token_type", ACCESS),
            ("audience", ORDERS),
            ("scope", "orders.read"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "orders.read");
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    let token = body["access_token"].as_str().unwrap().to_string();
    let claims = payload(&token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], ORDERS);
    assert_eq!(claims["client_id"], "backend");
    assert_eq!(claims["act"], json!({"sub": "backend"}));
    // the audience's resource server introspects it: active, the same act
    let info = introspect(&op, &token).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["act"], json!({"sub": "backend"}));
    assert_eq!(info["scope"], "orders.read");

    // exchanged again by relay: the earlier actor is nested (RFC 8693 4.1)
    let (status, body) = exchange(
        &op,
        "relay",
        &[("subject_token", &token), ("subject_token_type", ACCESS)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let nested = payload(body["access_token"].as_str().unwrap());
    assert_eq!(nested["aud"], "https://billing.example");
    assert_eq!(
        nested["act"],
        json!({"sub": "relay", "act": {"sub": "backend"}})
    );
    assert_eq!(nested["scope"], "orders.read");

    // with an actor token: the actor is its subject
    let (_, own) = post(
        &op,
        "/oauth2/token",
        "orders",
        &[("grant_type", "client_credentials")],
    )
    .await;
    let (status, body) = exchange(
        &op,
        "backend",
        &[
            ("subject_token", &subject),
            ("subject_token_type", ACCESS),
            ("actor_token", own["access_token"].as_str().unwrap()),
            ("actor_token_type", ACCESS),
            ("resource", "https://billing.example"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let acted = payload(body["access_token"].as_str().unwrap());
    assert_eq!(acted["act"], json!({"sub": "orders"}));
    assert_eq!(acted["aud"], "https://billing.example");
    assert_eq!(
        acted["scope"], "openid email orders.read",
        "all of the subject's scope"
    );

    // an opaque subject token works the same
    let opaque = alice_token(&op, "legacy", "email").await;
    let (status, body) = exchange(
        &op,
        "backend",
        &[
            ("subject_token", &opaque),
            ("subject_token_type", ACCESS),
            ("audience", ORDERS),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let claims = payload(body["access_token"].as_str().unwrap());
    assert_eq!(
        (claims["sub"].clone(), claims["act"].clone()),
        (json!("alice"), json!({"sub": "backend"}))
    );
}

#[tokio::test]
async fn bad_exchanges_are_refused() {
    let op = provider();
    let subject = alice_token(&op, "frontend", "email").await;
    let err = |code: &str, d: &str| (400, json!({"error": code, "error_description": d}));
    let s = subject.as_str();
    // (client, form, answer)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, (u16, Value));
    let cases: Vec<Case> = vec![
        (
            "backend",
            vec![("subject_token", s), ("subject_token_type", ACCESS), ("audience", "https://evil.example")],
            err("invalid_target", "audience `https://evil.example` is not allowed for this client"),
        ),
        (
            "relay",
            vec![("subject_token", s), ("subject_token_type", ACCESS), ("audience", ORDERS)],
            err("invalid_target", "audience `https://orders.example` is not allowed for this client"),
        ),
        (
            "backend",
            vec![("subject_token", s), ("subject_token_type", ACCESS), ("scope", "email orders.read")],
            err("invalid_scope", "scope `orders.read` is not in the subject token's scope"),
        ),
        (
            "backend",
            vec![("subject_token", "not-a-token"), ("subject_token_type", ACCESS)],
            err("invalid_request", "the subject_token is not an active access token of this provider"),
        ),
        (
            "backend",
            vec![("subject_token", s)],
            err("invalid_request", "subject_token_type is required"),
        ),
        (
            "backend",
            vec![("subject_token", s), ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token")],
            err("invalid_request", "subject_token_type `urn:ietf:params:oauth:token-type:id_token` is not supported: use urn:ietf:params:oauth:token-type:access_token"),
        ),
        (
            "backend",
            vec![("subject_token_type", ACCESS)],
            err("invalid_request", "subject_token is required"),
        ),
        (
            "backend",
            vec![("subject_token", s), ("subject_token_type", ACCESS), ("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token")],
            err("invalid_request", "requested_token_type `urn:ietf:params:oauth:token-type:refresh_token` is not supported: use urn:ietf:params:oauth:token-type:access_token"),
        ),
        (
            "backend",
            vec![("subject_token", s), ("subject_token_type", ACCESS), ("actor_token", "nope"), ("actor_token_type", ACCESS)],
            err("invalid_request", "the actor_token is not an active access token of this provider"),
        ),
        (
            "frontend",
            vec![("subject_token", s), ("subject_token_type", ACCESS)],
            err("unauthorized_client", "this client may not use the urn:ietf:params:oauth:grant-type:token-exchange grant"),
        ),
    ];
    for (who, form, expected) in cases {
        assert_eq!(exchange(&op, who, &form).await, expected, "{who} {form:?}");
    }
    // a revoked (inactive) subject token
    assert_eq!(
        post(&op, "/oauth2/revoke", "frontend", &[("token", s)])
            .await
            .0,
        200
    );
    assert_eq!(
        exchange(
            &op,
            "backend",
            &[("subject_token", s), ("subject_token_type", ACCESS)]
        )
        .await,
        err(
            "invalid_request",
            "the subject_token is not an active access token of this provider"
        ),
    );
    let d: Value = client()
        .get(op.gw.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(d["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(GRANT)));
}
