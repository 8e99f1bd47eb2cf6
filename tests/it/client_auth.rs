//! Client authentication by JWT assertion at the provider (RFC 7523, OpenID Connect Core
//! section 9): `private_key_jwt` with inline keys and with a fetched `jwksURI`,
//! `client_secret_jwt`, and every bad assertion with its exact answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tessera::provider::keys::{generate_pem, SigningAlg, SigningKey};

const ISSUER: &str = "http://localhost:1234";
const TOKEN_URL: &str = "http://localhost:1234/oauth2/token";
const HMAC_SECRET: &str = "hmac-secret-hmac-secret-hmac-secret-42";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client's key pair: the PEM it signs with, its public JWK (with `kid`).
struct ClientKey {
    pem: String,
    kid: String,
    jwk: Value,
}

fn client_key(alg: SigningAlg) -> ClientKey {
    let pem = generate_pem(alg).unwrap();
    let key = SigningKey::from_pem(pem.as_bytes(), alg).unwrap();
    ClientKey {
        kid: key.kid.clone(),
        jwk: key.jwk.clone(),
        pem,
    }
}

impl ClientKey {
    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        let key = EncodingKey::from_ec_pem(self.pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&h, claims, &key).unwrap()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims of a good assertion of `client` for audience `aud`.
fn claims(client: &str, aud: &str) -> Value {
    json!({
        "iss": client, "sub": client, "aud": aud,
        "exp": now() + 60, "iat": now(),
        "jti": tessera::session::random_token(16),
    })
}

fn hmac(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A JWK Set served over HTTP on loopback, counting its fetches.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks_server(initial: Value) -> JwksServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let body = Arc::new(Mutex::new(initial.to_string()));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (b, f) = (body.clone(), fetches.clone());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let (b, f) = (b.clone(), f.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                f.fetch_add(1, Ordering::SeqCst);
                let text = b.lock().unwrap().clone();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    JwksServer { url, body, fetches }
}

struct Op {
    gw: Gateway,
    _dir: tempfile::TempDir,
}

/// A provider with `keyed` (private_key_jwt, inline `jwks` of `key`), `hmac`
/// (client_secret_jwt), `basic` (a secret, default methods), `remote` (private_key_jwt,
/// `jwksURI`), all with client_credentials; `basic` may introspect every token.
fn provider(key: &ClientKey, jwks_uri: &str) -> Op {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
oidcProvider:
  issuer: {ISSUER}
  signingKeys: [{{ file: {signing}, alg: ES256 }}]
apps:
  - name: keyed
    type: oidc
    clientID: keyed
    tokenEndpointAuthMethod: private_key_jwt
    jwks: {{ keys: [{jwk}] }}
    redirectURLs: []
    grantTypes: [client_credentials]
    scopes: [reports.read]
  - name: hmac
    type: oidc
    clientID: hmac
    clientSecret: {HMAC_SECRET}
    tokenEndpointAuthMethod: client_secret_jwt
    redirectURLs: []
    grantTypes: [client_credentials]
  - name: basic
    type: oidc
    clientID: basic
    clientSecret: basic-secret-basic-secret
    redirectURLs: []
    grantTypes: [client_credentials]
    introspection: {{ tokensOf: ["*"] }}
  - name: remote
    type: oidc
    clientID: remote
    tokenEndpointAuthMethod: private_key_jwt
    jwksURI: {jwks_uri}
    redirectURLs: []
    grantTypes: [client_credentials]
"#,
        signing = es256_key(&dir).display(),
        jwk = key.jwk,
    );
    Op {
        gw: Gateway::start_with(&yaml, &[("TESSERA_CLIENT_JWKS_REFETCH_MS", "3000")]),
        _dir: dir,
    }
}

/// POSTs `form` to `path`; (status, JSON body or Null).
async fn post(
    op: &Op,
    path: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut req = client().post(op.gw.url(path)).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A client_credentials request authenticated by `assertion`.
async fn with_assertion(op: &Op, assertion: &str) -> (u16, Value) {
    post(
        op,
        "/oauth2/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ],
        None,
    )
    .await
}

fn refused(answer: (u16, Value), status: u16, code: &str, description: &str) {
    assert_eq!(
        answer,
        (
            status,
            json!({"error": code, "error_description": description})
        ),
    );
}

fn invalid_client(answer: (u16, Value), description: &str) {
    refused(answer, 401, "invalid_client", description);
}

#[tokio::test]
async fn private_key_jwt_authenticates_at_every_endpoint() {
    let key = client_key(SigningAlg::Es256);
    let op = provider(&key, "https://keys.example/jwks");
    // `aud`: the issuer, or the token endpoint
    for aud in [ISSUER, TOKEN_URL] {
        let (status, body) = with_assertion(&op, &key.sign(&claims("keyed", aud))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
    }
    // an `aud` array naming the provider among others
    let mut c = claims("keyed", ISSUER);
    c["aud"] = json!(["https://other.example", TOKEN_URL]);
    let (status, body) = with_assertion(&op, &key.sign(&c)).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    // introspection and revocation take the same authentication (aud: their own URL too)
    let (status, info) = post(
        &op,
        "/oauth2/introspect",
        &[
            ("token", &token),
            ("client_assertion_type", ASSERTION_TYPE),
            (
                "client_assertion",
                &key.sign(&claims("keyed", "http://localhost:1234/oauth2/introspect")),
            ),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], "keyed");
    let (status, _) = post(
        &op,
        "/oauth2/revoke",
        &[
            ("token", &token),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &key.sign(&claims("keyed", ISSUER))),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, info) = post(
        &op,
        "/oauth2/introspect",
        &[("token", &token)],
        Some(("basic", "basic-secret-basic-secret")),
    )
    .await;
    assert_eq!(info, json!({"active": false}), "revoked by its client");
}

#[tokio::test]
async fn bad_assertions_are_refused_with_their_reason() {
    let key = client_key(SigningAlg::Es256);
    let op = provider(&key, "https://keys.example/jwks");
    let t = now();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims("keyed", ISSUER);
        edit(&mut c);
        key.sign(&c)
    };
    let cases: Vec<(String, &str)> = vec![
        (
            with(&|c| c["aud"] = json!("https://evil.example")),
            "the client assertion's aud must name this provider (http://localhost:1234 or http://localhost:1234/oauth2/token)",
        ),
        (
            with(&|c| c["aud"] = json!("http://localhost:1234/oauth2/userinfo")),
            "the client assertion's aud must name this provider (http://localhost:1234 or http://localhost:1234/oauth2/token)",
        ),
        (
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            "the client assertion's aud must name this provider (http://localhost:1234 or http://localhost:1234/oauth2/token)",
        ),
        (with(&|c| c["exp"] = json!(t - 120)), "the client assertion expired"),
        (
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "the client assertion has no `exp`",
        ),
        (
            with(&|c| c["exp"] = json!(t + 7200)),
            "the client assertion expires too late: at most 3600 seconds ahead",
        ),
        (with(&|c| c["exp"] = json!("soon")), "the client assertion's `exp` is not a number"),
        (with(&|c| c["nbf"] = json!(t + 600)), "the client assertion is not valid yet (nbf)"),
        (
            with(&|c| c["iat"] = json!(t + 600)),
            "the client assertion was issued in the future (iat)",
        ),
        (
            with(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            "the client assertion has no `jti`",
        ),
        (
            with(&|c| c["iss"] = json!("someone")),
            "the client assertion's iss and sub must both be the client ID",
        ),
        (
            with(&|c| c["sub"] = json!("nobody")),
            "unknown client or wrong credentials",
        ),
    ];
    for (assertion, why) in cases {
        invalid_client(with_assertion(&op, &assertion).await, why);
    }

    // replay: the same assertion twice
    let once = key.sign(&claims("keyed", ISSUER));
    assert_eq!(with_assertion(&op, &once).await.0, 200);
    invalid_client(
        with_assertion(&op, &once).await,
        "the client assertion was already used (jti)",
    );
    // the same jti in a new assertion is still a replay
    let first = claims("keyed", ISSUER);
    assert_eq!(with_assertion(&op, &key.sign(&first)).await.0, 200);
    let mut again = claims("keyed", ISSUER);
    again["jti"] = first["jti"].clone();
    invalid_client(
        with_assertion(&op, &key.sign(&again)).await,
        "the client assertion was already used (jti)",
    );

    // a key that is not registered, with its own kid or the registered one's
    let other = client_key(SigningAlg::Es256);
    invalid_client(
        with_assertion(&op, &other.sign(&claims("keyed", ISSUER))).await,
        "the client assertion is signed with a key that is not registered for this client",
    );
    let impostor = ClientKey {
        kid: key.kid.clone(),
        ..client_key(SigningAlg::Es256)
    };
    invalid_client(
        with_assertion(&op, &impostor.sign(&claims("keyed", ISSUER))).await,
        "the client assertion's signature does not verify",
    );

    // alg none, with and without a signature part
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let head = json!({"alg": "none", "kid": key.kid});
    let body = claims("keyed", ISSUER);
    for unsigned in [
        format!("{}.{}.", b64(&head), b64(&body)),
        format!("{}.{}.c2ln", b64(&head), b64(&body)),
    ] {
        invalid_client(
            with_assertion(&op, &unsigned).await,
            "the client assertion is not signed (alg none)",
        );
    }
    // HS256 made with the registered public key as the secret
    for secret in [
        key.jwk.to_string(),
        key.jwk["x"].as_str().unwrap().to_string(),
    ] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(key.kid.clone());
        let forged = jsonwebtoken::encode(
            &h,
            &claims("keyed", ISSUER),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        invalid_client(
            with_assertion(&op, &forged).await,
            "the client assertion is signed with `HS256`; its key is registered for ES256",
        );
    }
    invalid_client(
        with_assertion(&op, "not-a-jwt").await,
        "the client assertion is not a signed JWT",
    );

    // the form around the assertion
    let good = key.sign(&claims("keyed", ISSUER));
    invalid_client(
        post(
            &op,
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:example:saml"),
                ("client_assertion", &good),
            ],
            None,
        )
        .await,
        "client_assertion_type `urn:example:saml` is not supported",
    );
    refused(
        post(
            &op,
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion", &good),
            ],
            None,
        )
        .await,
        400,
        "invalid_request",
        "client_assertion_type is required with client_assertion",
    );
    refused(
        post(
            &op,
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "hmac"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &good),
            ],
            None,
        )
        .await,
        400,
        "invalid_request",
        "client_id does not match the client assertion",
    );
    refused(
        post(
            &op,
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &good),
            ],
            Some(("keyed", "whatever-whatever")),
        )
        .await,
        400,
        "invalid_request",
        "use one client authentication method, not two",
    );
    // none of the refused assertions above used `good`'s jti: it still works once
    assert_eq!(with_assertion(&op, &good).await.0, 200);
}

#[tokio::test]
async fn client_secret_jwt_and_registered_methods() {
    let key = client_key(SigningAlg::Es256);
    let op = provider(&key, "https://keys.example/jwks");
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let (status, body) =
            with_assertion(&op, &hmac(alg, HMAC_SECRET, &claims("hmac", TOKEN_URL))).await;
        assert_eq!(status, 200, "{alg:?}: {body}");
    }
    invalid_client(
        with_assertion(
            &op,
            &hmac(
                Algorithm::HS256,
                "another-secret-another-secret-12345",
                &claims("hmac", ISSUER),
            ),
        )
        .await,
        "the client assertion's signature does not verify",
    );
    // an asymmetric signature is no client_secret_jwt
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(key.kid.clone());
    let es = jsonwebtoken::encode(
        &h,
        &claims("hmac", ISSUER),
        &EncodingKey::from_ec_pem(key.pem.as_bytes()).unwrap(),
    )
    .unwrap();
    invalid_client(
        with_assertion(&op, &es).await,
        "a client_secret_jwt assertion is signed with HS256, HS384 or HS512, not `ES256`",
    );
    let replayed = hmac(Algorithm::HS256, HMAC_SECRET, &claims("hmac", ISSUER));
    assert_eq!(with_assertion(&op, &replayed).await.0, 200);
    invalid_client(
        with_assertion(&op, &replayed).await,
        "the client assertion was already used (jti)",
    );

    // a client may use only the method it is registered for
    let cc = [("grant_type", "client_credentials")];
    let mut answer = post(&op, "/oauth2/token", &cc, Some(("hmac", HMAC_SECRET))).await;
    assert_eq!(answer.0, 401);
    invalid_client(
        answer,
        "this client authenticates with client_secret_jwt, not client_secret_basic",
    );
    answer = post(
        &op,
        "/oauth2/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "hmac"),
            ("client_secret", HMAC_SECRET),
        ],
        None,
    )
    .await;
    invalid_client(
        answer,
        "this client authenticates with client_secret_jwt, not client_secret_post",
    );
    invalid_client(
        post(
            &op,
            "/oauth2/token",
            &cc,
            Some(("keyed", "guess-guess-guess")),
        )
        .await,
        "this client authenticates with private_key_jwt, not client_secret_basic",
    );
    invalid_client(
        post(
            &op,
            "/oauth2/token",
            &[("grant_type", "client_credentials"), ("client_id", "keyed")],
            None,
        )
        .await,
        "this client authenticates with private_key_jwt, not none",
    );
    // a secret client that registered no method: basic or post, not an assertion
    invalid_client(
        with_assertion(
            &op,
            &hmac(
                Algorithm::HS256,
                "basic-secret-basic-secret",
                &claims("basic", ISSUER),
            ),
        )
        .await,
        "this client authenticates with client_secret_basic or client_secret_post, not client_secret_jwt",
    );
    // the private_key_jwt client's key cannot stand in for another client
    invalid_client(
        with_assertion(&op, &key.sign(&claims("hmac", ISSUER))).await,
        "a client_secret_jwt assertion is signed with HS256, HS384 or HS512, not `ES256`",
    );
    assert_eq!(
        post(
            &op,
            "/oauth2/token",
            &cc,
            Some(("basic", "basic-secret-basic-secret"))
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn jwks_uri_is_fetched_cached_and_refetched_for_new_keys() {
    let first = client_key(SigningAlg::Es256);
    let second = client_key(SigningAlg::Es256);
    let server = jwks_server(json!({"keys": [first.jwk]})).await;
    let op = provider(&first, &server.url);
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        0,
        "fetched when needed"
    );
    for _ in 0..3 {
        let (status, body) = with_assertion(&op, &first.sign(&claims("remote", ISSUER))).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1, "cached");
    // the client rotates to a new key
    *server.body.lock().unwrap() = json!({"keys": [second.jwk]}).to_string();
    // within the refetch interval (3 s here) an unknown kid is refused without a fetch...
    invalid_client(
        with_assertion(&op, &second.sign(&claims("remote", ISSUER))).await,
        "the client assertion is signed with a key that is not registered for this client",
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    // ...and after it the keys are fetched again
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let (status, body) = with_assertion(&op, &second.sign(&claims("remote", ISSUER))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    // the old key is gone from the set: refused (no fetch: the set was just fetched)
    invalid_client(
        with_assertion(&op, &first.sign(&claims("remote", ISSUER))).await,
        "the client assertion is signed with a key that is not registered for this client",
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_oversized_or_unusable_jwks_uri_fails_closed() {
    let key = client_key(SigningAlg::Es256);
    let server = jwks_server(json!({"keys": [], "pad": "x".repeat(70 * 1024)})).await;
    let op = provider(&key, &server.url);
    refused(
        with_assertion(&op, &key.sign(&claims("remote", ISSUER))).await,
        503,
        "temporarily_unavailable",
        "the client's JWK Set could not be fetched",
    );
    *server.body.lock().unwrap() = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string();
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    refused(
        with_assertion(&op, &key.sign(&claims("remote", ISSUER))).await,
        503,
        "temporarily_unavailable",
        "the client's JWK Set could not be fetched",
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn discovery_advertises_the_methods_and_algorithms() {
    let key = client_key(SigningAlg::Es256);
    let op = provider(&key, "https://keys.example/jwks");
    let d: Value = client()
        .get(op.gw.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all = json!([
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
        "private_key_jwt",
        "none"
    ]);
    assert_eq!(d["token_endpoint_auth_methods_supported"], all);
    assert_eq!(d["revocation_endpoint_auth_methods_supported"], all);
    assert_eq!(
        d["introspection_endpoint_auth_methods_supported"],
        json!([
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt"
        ])
    );
    let algs = json!([
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
        "ES384", "EdDSA"
    ]);
    for endpoint in ["token", "introspection", "revocation"] {
        assert_eq!(
            d[format!("{endpoint}_endpoint_auth_signing_alg_values_supported")],
            algs
        );
    }
}

/// An RSA client key (RS256 pinned by its JWK) and an Ed25519 one authenticate too.
#[tokio::test]
async fn rsa_and_ed25519_client_keys() {
    for (alg, jwt_alg) in [
        (SigningAlg::Rs256, Algorithm::RS256),
        (SigningAlg::EdDsa, Algorithm::EdDSA),
    ] {
        let key = client_key(alg);
        let op = provider(&key, "https://keys.example/jwks");
        let mut h = Header::new(jwt_alg);
        h.kid = Some(key.kid.clone());
        let encoding = match alg {
            SigningAlg::Rs256 => EncodingKey::from_rsa_pem(key.pem.as_bytes()),
            _ => EncodingKey::from_ed_pem(key.pem.as_bytes()),
        }
        .unwrap();
        let good = jsonwebtoken::encode(&h, &claims("keyed", ISSUER), &encoding).unwrap();
        let (status, body) = with_assertion(&op, &good).await;
        assert_eq!(status, 200, "{alg:?}: {body}");
        if alg == SigningAlg::Rs256 {
            // PS256 with the same RSA key: not the algorithm its JWK pins
            let mut h = Header::new(Algorithm::PS256);
            h.kid = Some(key.kid.clone());
            let ps = jsonwebtoken::encode(&h, &claims("keyed", ISSUER), &encoding).unwrap();
            invalid_client(
                with_assertion(&op, &ps).await,
                "the client assertion is signed with `PS256`; its key is registered for RS256",
            );
        }
    }
}

/// Each misconfiguration is refused at its position.
#[test]
fn configuration_errors_are_positioned() {
    let key = client_key(SigningAlg::Es256);
    let mut private = key.jwk.clone();
    private["d"] = json!("AAAA");
    let mut encryption = key.jwk.clone();
    encryption["use"] = json!("enc");
    let app = |extra: &str| {
        format!(
            "version: 1\noidcProvider:\n  issuer: http://localhost:1234\n  signingKeys: [{{ file: KEY, alg: ES256 }}]\napps:\n  - name: x\n    type: oidc\n    clientID: x\n    redirectURLs: []\n    grantTypes: [client_credentials]\n{extra}"
        )
    };
    let cases = [
        (
            app("    clientSecret: x-secret-x-secret-x\n    tokenEndpointAuthMethod: client_secret_jvt\n"),
            "tokenEndpointAuthMethod",
            5,
            "unknown client authentication method `client_secret_jvt`\n    hint: did you mean `client_secret_jwt`?",
        ),
        (
            app("    clientSecret: x-secret-x-secret-x\n    tokenEndpointAuthMethod: client_secret_jwt\n"),
            "clientSecret",
            5,
            "client_secret_jwt uses the secret as an HMAC key: it is too short\n    hint: use at least 32 random characters",
        ),
        (
            app("    tokenEndpointAuthMethod: private_key_jwt\n"),
            "tokenEndpointAuthMethod",
            5,
            "a private_key_jwt client needs its public keys\n    hint: add `jwksURI: https://…` or `jwks: { keys: [...] }`",
        ),
        (
            app("    clientSecret: x-secret-x-secret-x\n    tokenEndpointAuthMethod: private_key_jwt\n    jwksURI: https://rp.example/jwks\n"),
            "clientSecret",
            5,
            "a private_key_jwt client has no clientSecret\n    hint: remove it: the client signs with its private key",
        ),
        (
            app("    tokenEndpointAuthMethod: private_key_jwt\n    jwksURI: http://rp.example/jwks\n"),
            "jwksURI",
            5,
            "`http://rp.example/jwks` uses http on a non-loopback host: use https",
        ),
        (
            app(&format!("    tokenEndpointAuthMethod: private_key_jwt\n    jwks: {{ keys: [{private}] }}\n")),
            "jwks",
            21,
            "this key holds private key material (`d`)\n    hint: register the client's public keys only",
        ),
        (
            app(&format!("    tokenEndpointAuthMethod: private_key_jwt\n    jwks: {{ keys: [{encryption}] }}\n")),
            "jwks",
            5,
            "jwks has no usable signing key\n    hint: use RSA, EC (P-256, P-384) or Ed25519 public keys, not marked `use: enc`",
        ),
        (
            app("    clientSecret: x-secret-x-secret-x\n    jwksURI: https://rp.example/jwks\n"),
            "jwksURI",
            5,
            "`jwksURI` is used only by private_key_jwt clients\n    hint: set `tokenEndpointAuthMethod: private_key_jwt`, or remove this",
        ),
        (
            app("    clientSecret: x-secret-x-secret-x\n    tokenEndpointAuthMethod: none\n"),
            "tokenEndpointAuthMethod",
            5,
            "`none` is the method of public clients\n    hint: set `public: true`, or choose a method that uses the client's secret",
        ),
        (
            app("    clientSecret: x-secret-x-secret-x\n    tokenExchange: { audiences: [] }\n"),
            "tokenExchange",
            22,
            "list the audiences this client may ask tokens for\n    hint: e.g. `audiences: [https://api.example.com]`",
        ),
        (
            app("    clientSecret: x-secret-x-secret-x\n").replace(
                "  signingKeys:",
                "  pushedAuthorizationRequests: { lifetimeSeconds: 0 }\n  signingKeys:",
            ),
            "pushedAuthorizationRequests",
            34,
            "0 is out of range\n    hint: use 1 to 600",
        ),
    ];
    for (yaml, needle, col, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let yaml = yaml.replace("KEY", &es256_key(&dir).display().to_string());
        let (code, out) = validate_with(&yaml, &[]);
        let line = yaml.lines().position(|l| l.contains(needle)).unwrap() + 1;
        assert_eq!(code, 2, "{out}");
        assert!(
            out.contains(&format!(":{line}:{col}: {expected}\n1 problem in ")),
            "{yaml}\n---\n{out}"
        );
    }
}

/// Replicas sharing a Redis share the used `jti`s: an assertion used at one is a replay at
/// the other.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_sharing_redis_refuse_a_replay_made_elsewhere() {
    let server = crate::support::redis::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
caches:
  - {{ name: shared, type: redis, redis: {{ addresses: ["{redis}"], timeoutMillis: 500 }} }}
oidcProvider:
  issuer: {ISSUER}
  cache: shared
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: hmac
    type: oidc
    clientID: hmac
    clientSecret: {HMAC_SECRET}
    tokenEndpointAuthMethod: client_secret_jwt
    redirectURLs: []
    grantTypes: [client_credentials]
"#,
        redis = server.address(),
        key = es256_key(&dir).display(),
    );
    let a = Op {
        gw: Gateway::start(&yaml),
        _dir: tempfile::tempdir().unwrap(),
    };
    let b = Op {
        gw: Gateway::start(&yaml),
        _dir: tempfile::tempdir().unwrap(),
    };
    let assertion = hmac(Algorithm::HS256, HMAC_SECRET, &claims("hmac", ISSUER));
    let (status, body) = with_assertion(&a, &assertion).await;
    assert_eq!(status, 200, "{body}");
    invalid_client(
        with_assertion(&b, &assertion).await,
        "the client assertion was already used (jti)",
    );
    // a fresh assertion works at either
    let fresh = hmac(Algorithm::HS256, HMAC_SECRET, &claims("hmac", ISSUER));
    assert_eq!(with_assertion(&b, &fresh).await.0, 200);
}
