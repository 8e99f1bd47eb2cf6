//! Pushed Authorization Requests (RFC 9126): push, then authorize by `request_uri`; every
//! misuse of a `request_uri` and every bad push with its exact answer.

use std::collections::HashMap;

use crate::support::*;
use serde_json::{json, Value};

const SECRET: &str = "s3cret-s3cret-s3cret";
const REDIRECT: &str = "https://rp.example.com/cb";
const PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

struct Op {
    gw: Gateway,
    _dir: tempfile::TempDir,
}

/// `webapp` and `other` (secrets), `strict` (must push), `spa` (public); pushed requests
/// live `lifetime` seconds, `limit` per client.
fn provider(lifetime: u64, limit: u64) -> Op {
    let dir = tempfile::tempdir().unwrap();
    let client = |name: &str, extra: &str| {
        format!(
            "  - name: {name}\n    type: oidc\n    clientID: {name}\n    clientSecret: {SECRET}\n    redirectURLs: [\"{REDIRECT}\"]\n    authentication: {{ idps: [local] }}\n{extra}"
        )
    };
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
    users:
      - {{ username: alice, passwordHash: "{hash}" }}
oidcProvider:
  issuer: http://localhost:1234
  signingKeys: [{{ file: {key}, alg: ES256 }}]
  pushedAuthorizationRequests: {{ lifetimeSeconds: {lifetime}, perClientLimit: {limit} }}
apps:
{webapp}{other}{strict}  - name: spa
    type: oidc
    clientID: spa
    public: true
    redirectURLs: ["{REDIRECT}"]
    authentication: {{ idps: [local] }}
"#,
        hash = pw_hash(),
        key = es256_key(&dir).display(),
        // strict: a scope it may not have is refused at push time, not ignored
        webapp = client("webapp", "    strictScopes: true\n"),
        other = client("other", ""),
        strict = client("strict", "    requirePushedAuthorizationRequests: true\n"),
    );
    Op {
        gw: Gateway::start(&yaml),
        _dir: dir,
    }
}

fn request(client: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", client.to_string()),
        ("response_type", "code".into()),
        ("redirect_uri", REDIRECT.into()),
        ("scope", "openid email".into()),
        ("state", "st-par".into()),
        ("nonce", "n-par".into()),
    ]
}

/// POSTs `form` to the PAR endpoint with `client`'s Basic credentials (if any).
async fn push(op: &Op, form: &[(&str, String)], basic: Option<&str>) -> (u16, Value) {
    let mut req = client().post(op.gw.url("/oauth2/par")).form(form);
    if let Some(id) = basic {
        req = req.basic_auth(id, Some(SECRET));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn pushed(op: &Op, client: &str) -> String {
    let (status, body) = push(op, &request(client), Some(client)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["expires_in"], 2);
    let uri = body["request_uri"].as_str().unwrap().to_string();
    assert!(
        uri.starts_with(PREFIX) && uri.len() > PREFIX.len() + 40,
        "{uri}"
    );
    uri
}

fn authorize_path(client: &str, request_uri: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("client_id", client), ("request_uri", request_uri)])
        .finish();
    format!("/oauth2/authorize?{q}")
}

/// GET `path` on the gateway: (status, body text).
async fn page(op: &Op, path: &str) -> (u16, String) {
    let r = client().get(op.gw.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn refused_page((status, body): (u16, String), text: &str) {
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(text), "{body}");
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn a_pushed_request_signs_in_once() {
    let op = provider(2, 100);
    let uri = pushed(&op, "webapp").await;
    let path = authorize_path("webapp", &uri);
    let (cookie, resume) = login(&op.gw, &path, "local", "alice", "pw").await;
    let r = client()
        .get(op.gw.url(&resume))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let back = r.headers()["location"].to_str().unwrap().to_string();
    assert!(back.starts_with(REDIRECT), "{back}");
    let q = query_of(&back);
    assert_eq!(q["state"], "st-par", "the pushed state comes back");
    let r = client()
        .post(op.gw.url("/oauth2/token"))
        .basic_auth("webapp", Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", q["code"].as_str()),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    assert_eq!(tokens["scope"], "openid email");

    // the request_uri was used: a second use is refused, signed in or not
    refused_page(
        page(&op, &path).await,
        "The request_uri is unknown, expired or already used.",
    );
}

#[tokio::test]
async fn request_uri_misuse_is_refused() {
    let op = provider(2, 100);
    // used by another client: refused (and used up)
    let uri = pushed(&op, "webapp").await;
    refused_page(
        page(&op, &authorize_path("other", &uri)).await,
        "The request_uri was pushed by another application.",
    );
    refused_page(
        page(&op, &authorize_path("webapp", &uri)).await,
        "The request_uri is unknown, expired or already used.",
    );
    // expired
    let uri = pushed(&op, "webapp").await;
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    refused_page(
        page(&op, &authorize_path("webapp", &uri)).await,
        "The request_uri is unknown, expired or already used.",
    );
    // made up, or not ours
    refused_page(
        page(&op, &authorize_path("webapp", &format!("{PREFIX}guessed"))).await,
        "The request_uri is unknown, expired or already used.",
    );
    refused_page(
        page(
            &op,
            &authorize_path("webapp", "https://rp.example.com/request.jwt"),
        )
        .await,
        "The request_uri was not issued by this provider.",
    );
    let uri = pushed(&op, "webapp").await;
    refused_page(
        page(
            &op,
            &format!(
                "/oauth2/authorize?request_uri={}",
                form_urlencoded::byte_serialize(uri.as_bytes()).collect::<String>()
            ),
        )
        .await,
        "The request has no client_id.",
    );
    // a client that must push: a plain request is refused; a pushed one goes to sign-in
    let plain: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(request("strict").iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    refused_page(
        page(&op, &format!("/oauth2/authorize?{plain}")).await,
        "This application must push its authorization requests",
    );
    let uri = pushed(&op, "strict").await;
    let r = client()
        .get(op.gw.url(&authorize_path("strict", &uri)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/.tessera/login"));
}

#[tokio::test]
async fn bad_pushes_are_json_errors() {
    let op = provider(2, 3);
    let with = |k: &'static str, v: &str| {
        let mut r = request("webapp");
        r.retain(|(n, _)| *n != k);
        if !v.is_empty() {
            r.push((k, v.to_string()));
        }
        r
    };
    // (form, Basic client, status, body)
    type Case<'a> = (Vec<(&'a str, String)>, Option<&'a str>, u16, Value);
    let cases: Vec<Case> = vec![
        (
            with("redirect_uri", "https://evil.example/cb"),
            Some("webapp"),
            400,
            json!({"error": "invalid_request", "error_description": "redirect_uri is not registered for this client"}),
        ),
        (
            with("redirect_uri", ""),
            Some("webapp"),
            400,
            json!({"error": "invalid_request", "error_description": "redirect_uri is required"}),
        ),
        (
            with("scope", "openid admin"),
            Some("webapp"),
            400,
            json!({"error": "invalid_scope", "error_description": "scope `admin` is not allowed for this client"}),
        ),
        (
            with("response_type", "token"),
            Some("webapp"),
            400,
            json!({"error": "unsupported_response_type", "error_description": "response_type `token` is not supported: use `code`"}),
        ),
        (
            with("request_uri", "urn:ietf:params:oauth:request_uri:x"),
            Some("webapp"),
            400,
            json!({"error": "invalid_request", "error_description": "request_uri cannot be pushed: push the parameters themselves"}),
        ),
        (
            with("client_id", "other"),
            Some("webapp"),
            400,
            json!({"error": "invalid_request", "error_description": "client_id does not match the credentials"}),
        ),
        (
            request("webapp"),
            None,
            401,
            json!({"error": "invalid_client", "error_description": "this client must authenticate with its secret"}),
        ),
        (
            request("spa"),
            None,
            401,
            json!({"error": "invalid_client", "error_description": "public clients cannot use this endpoint"}),
        ),
    ];
    for (form, basic, status, body) in cases {
        assert_eq!(push(&op, &form, basic).await, (status, body), "{form:?}");
    }
    // GET is not a push
    let r = client().get(op.gw.url("/oauth2/par")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    // at most `perClientLimit` (3) pushes per lifetime, then 429
    for _ in 0..3 {
        assert_eq!(push(&op, &request("other"), Some("other")).await.0, 201);
    }
    let (status, body) = push(&op, &request("other"), Some("other")).await;
    assert_eq!(
        (status, body),
        (
            429,
            json!({"error": "temporarily_unavailable", "error_description": "this client has pushed too many authorization requests; try again later"})
        )
    );
    // another client is not affected
    assert_eq!(push(&op, &request("strict"), Some("strict")).await.0, 201);
}

#[tokio::test]
async fn discovery_advertises_par() {
    let op = provider(2, 100);
    let d: Value = client()
        .get(op.gw.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        d["pushed_authorization_request_endpoint"],
        "http://localhost:1234/oauth2/par"
    );
    assert_eq!(d["require_pushed_authorization_requests"], false);
}
