//! Bearer access tokens on proxy and forward-auth routes (issue #16): API clients call a
//! protected app with `Authorization: Bearer`; every case is checked by its exact status and
//! `WWW-Authenticate` answer (RFC 6750 section 3), and, when the request passes, by what the
//! echo upstream received. Tokens come from the gateway's own provider (client_credentials,
//! JWT and opaque) and from panva's `oidc-provider` as an upstream IdP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use serde_json::{json, Value};
use tessera::provider::keys::{SigningAlg, SigningKey, TokenType};

use crate::support::*;

const SECRET: &str = "s3cret-s3cret-s3cret";
const ISSUER: &str = "http://localhost:1234";
const ORDERS: &str = "https://orders.example.com";
const REALM: &str = r#"Bearer realm="orders""#;

struct Setup {
    gw: Gateway,
    /// The provider's signing key (to forge tokens the way only the provider could).
    key: SigningKey,
    _keys: tempfile::TempDir,
}

/// A gateway whose provider issues tokens to `svc` (JWT) and `svc-opaque` (opaque), with a
/// proxy app `orders` at `/api` that only bearer tokens open, and a forwardAuth app for the
/// ingress host `ingress.example.com`.
async fn setup() -> Setup {
    let keys = tempfile::tempdir().unwrap();
    let key_path = es256_key(&keys);
    let key = SigningKey::from_file(&key_path, SigningAlg::Es256).unwrap();
    let up = upstream().await;
    let hash = pw_hash();
    let bearer = format!("issuers: [oidcProvider], audiences: [\"{ORDERS}\"]");
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0", trustedProxies: ["127.0.0.1/32"] }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
    users:
      - {{ username: alice, passwordHash: "{hash}" }}
oidcProvider:
  issuer: {ISSUER}
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: orders
    type: proxy
    routePatterns: ["/api"]
    upstream: http://{up}
    headers:
      - {{ name: X-Client, value: "{{{{ token.client_id }}}}" }}
      - {{ name: X-Subject, value: "{{{{ token.sub }}}}" }}
      - {{ name: X-Scopes, value: "{{{{ token.scope }}}}" }}
    policies:
      - location: /api/write
        authentication: {{ bearer: {{ {bearer}, scopes: [orders.write] }} }}
        authorization: {{ allowAll: true }}
      - location: /api/admin
        authentication: {{ bearer: {{ {bearer} }} }}
        authorization: {{ rules: {{ attribute: token.scope, contains: orders.admin }} }}
      - location: /api/mixed
        authentication: {{ idps: [local], bearer: {{ {bearer} }} }}
        authorization: {{ allowAll: true }}
      - location: /api/passthrough
        authentication: {{ bearer: {{ {bearer}, forwardToken: true }} }}
        authorization: {{ allowAll: true }}
      - location: /api
        authentication: {{ bearer: {{ {bearer} }} }}
        authorization: {{ allowAll: true }}
  - name: orders-ingress
    type: forwardAuth
    routePatterns: ["ingress.example.com/"]
    gatewayURL: http://auth.example.com
    headers:
      - {{ name: X-Client, value: "{{{{ token.client_id }}}}" }}
    policies:
      - location: /
        authentication: {{ bearer: {{ {bearer}, scopes: [orders.read] }} }}
        authorization: {{ allowAll: true }}
  - name: svc
    type: oidc
    clientID: svc
    clientSecret: {SECRET}
    redirectURLs: ["https://svc.example.com/cb"]
    grantTypes: [client_credentials]
    scopes: [orders.read, orders.write, orders.admin]
    authentication: {{ idps: [local] }}
    accessToken: {{ allowedAudiences: ["{ORDERS}", "https://other.example.com"] }}
  - name: svc-opaque
    type: oidc
    clientID: svc-opaque
    clientSecret: {SECRET}
    redirectURLs: ["https://svc.example.com/cb"]
    grantTypes: [client_credentials]
    scopes: [orders.read]
    authentication: {{ idps: [local] }}
    accessToken: {{ type: opaque, allowedAudiences: ["{ORDERS}"] }}
"#,
        key = key_path.display()
    );
    Setup {
        gw: Gateway::start(&yaml),
        key,
        _keys: keys,
    }
}

/// A client_credentials token of `client` for `resource` with `scope`.
async fn token(gw: &Gateway, client_id: &str, resource: &str, scope: &str) -> String {
    let r = client()
        .post(gw.url("/oauth2/token"))
        .basic_auth(client_id, Some(SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

async fn revoke(gw: &Gateway, client_id: &str, token: &str) {
    let r = client()
        .post(gw.url("/oauth2/revoke"))
        .basic_auth(client_id, Some(SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn call(gw: &Gateway, path: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .get(gw.url(path))
        // a client's own identity header: never what the upstream sees
        .header("x-client", "mallory");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

/// The request is refused with `status` and exactly `challenge`, never sent to sign in.
async fn refused(r: reqwest::Response, status: u16, challenge: &str) {
    assert_eq!(r.status().as_u16(), status, "{challenge}");
    assert!(r.headers().get("location").is_none(), "never a redirect");
    assert!(
        r.headers().get("set-cookie").is_none(),
        "nothing is stored for a refused bearer request"
    );
    assert_eq!(r.headers()["www-authenticate"], challenge);
    assert!(
        !r.text().await.unwrap().contains("\"path\""),
        "upstream not reached"
    );
}

fn invalid(why: &str) -> String {
    format!(r#"{REALM}, error="invalid_token", error_description="{why}""#)
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// Claims as the provider writes them for `svc`, living `exp_in` more seconds.
fn claims(exp_in: i64) -> Value {
    let now = tessera::session::now_unix() as i64;
    json!({"iss": ISSUER, "sub": "svc", "aud": ORDERS, "exp": now + exp_in, "iat": now,
           "jti": tessera::session::random_token(16), "client_id": "svc", "scope": "orders.read"})
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_tokens_open_the_app_and_the_upstream_sees_their_claims() {
    let s = setup().await;
    let gw = &s.gw;
    for (client_id, kind) in [("svc", "jwt"), ("svc-opaque", "opaque")] {
        let t = token(gw, client_id, ORDERS, "orders.read").await;
        assert_eq!(t.matches('.').count() == 2, kind == "jwt", "{t}");
        let r = client()
            .get(gw.url("/api/orders?page=2"))
            .header("authorization", format!("Bearer {t}"))
            .header("x-client", "mallory")
            // a cookie is not what authenticates a bearer request
            .header("cookie", "tessera_session=forged")
            .send()
            .await
            .unwrap();
        assert!(
            r.headers().get("set-cookie").is_none(),
            "{kind}: no session"
        );
        let echo = Echo::from(r).await;
        assert_eq!(echo.path(), "/api/orders", "{kind}");
        assert_eq!(echo.one("x-client").as_deref(), Some(client_id), "{kind}");
        assert_eq!(echo.one("x-subject").as_deref(), Some(client_id), "{kind}");
        assert_eq!(
            echo.one("x-scopes").as_deref(),
            Some("orders.read"),
            "{kind}"
        );
        assert_eq!(
            echo.one("authorization"),
            None,
            "{kind}: the token stays at the gateway"
        );
        let line = gw.wait_log(&format!("\"user\":\"{client_id}\""));
        assert!(line.contains("\"auth\":\"bearer\""), "{line}");
        assert!(line.contains("\"decision\":\"allowed\""), "{line}");
    }
    // `forwardToken: true`: the upstream checks the token itself
    let t = token(gw, "svc", ORDERS, "orders.read").await;
    let echo = Echo::from(call(gw, "/api/passthrough", Some(&format!("Bearer {t}"))).await).await;
    assert_eq!(echo.one("authorization"), Some(format!("Bearer {t}")));
    // scopes the location requires, as a list in rules
    let t = token(gw, "svc", ORDERS, "orders.read orders.write orders.admin").await;
    let echo = Echo::from(call(gw, "/api/write", Some(&format!("Bearer {t}"))).await).await;
    assert_eq!(
        echo.one("x-scopes").as_deref(),
        Some("orders.read,orders.write,orders.admin")
    );
    Echo::from(call(gw, "/api/admin", Some(&format!("bearer {t}"))).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_token_gets_its_exact_rfc6750_answer() {
    let s = setup().await;
    let gw = &s.gw;
    let bearer = |t: &str| format!("Bearer {t}");

    // no token where only a token opens: a challenge without an error code
    refused(call(gw, "/api/orders", None).await, 401, REALM).await;
    refused(
        call(gw, "/api/orders", Some("Basic YTpi")).await,
        401,
        REALM,
    )
    .await;
    refused(
        call(gw, "/api/orders", Some("Bearer a b")).await,
        400,
        &format!(
            r#"{REALM}, error="invalid_request", error_description="the bearer token is not one b64token""#
        ),
    )
    .await;

    // expired (signed by the provider's own key, so only `exp` is wrong)
    let expired = s
        .key
        .sign(TokenType::Access, claims(-5).to_string().as_bytes())
        .unwrap();
    refused(
        call(gw, "/api/orders", Some(&bearer(&expired))).await,
        401,
        &invalid("the token expired"),
    )
    .await;
    // a live token of the same shape passes: the forgeries below differ in one thing each
    let live = s
        .key
        .sign(TokenType::Access, claims(60).to_string().as_bytes())
        .unwrap();
    Echo::from(call(gw, "/api/orders", Some(&bearer(&live))).await).await;

    // wrong audience: a real token for another resource
    let other = token(gw, "svc", "https://other.example.com", "orders.read").await;
    refused(
        call(gw, "/api/orders", Some(&bearer(&other))).await,
        401,
        &invalid("the token is not meant for this audience"),
    )
    .await;

    // wrong issuer, even signed by the right key
    let mut c = claims(60);
    c["iss"] = json!("https://evil.example.com");
    let foreign = s
        .key
        .sign(TokenType::Access, c.to_string().as_bytes())
        .unwrap();
    refused(
        call(gw, "/api/orders", Some(&bearer(&foreign))).await,
        401,
        &invalid("the token's issuer is not accepted here"),
    )
    .await;

    let bad_signature = invalid("the token's signature does not verify");
    // alg: none
    let none = format!(
        "{}.{}.",
        b64(&json!({"typ": "at+jwt", "alg": "none", "kid": s.key.kid})),
        b64(&claims(60))
    );
    refused(
        call(gw, "/api/orders", Some(&bearer(&none))).await,
        401,
        &bad_signature,
    )
    .await;
    // HS256 with the provider's public key as the secret
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.typ = Some("at+jwt".into());
    h.kid = Some(s.key.kid.clone());
    let public_key = s.key.jwk.to_string();
    let hs = jsonwebtoken::encode(
        &h,
        &claims(60),
        &jsonwebtoken::EncodingKey::from_secret(public_key.as_bytes()),
    )
    .unwrap();
    refused(
        call(gw, "/api/orders", Some(&bearer(&hs))).await,
        401,
        &bad_signature,
    )
    .await;
    // tampered: the payload of a real token changed, its signature kept
    let real = token(gw, "svc", ORDERS, "orders.read").await;
    let parts: Vec<&str> = real.split('.').collect();
    let mut payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    payload["scope"] = json!("orders.read orders.write");
    let tampered = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
    refused(
        call(gw, "/api/write", Some(&bearer(&tampered))).await,
        401,
        &bad_signature,
    )
    .await;
    // an ID token (typ JWT) is not an access token
    let id = s
        .key
        .sign(TokenType::Id, claims(60).to_string().as_bytes())
        .unwrap();
    refused(
        call(gw, "/api/orders", Some(&bearer(&id))).await,
        401,
        &invalid("an ID token is not an access token"),
    )
    .await;

    // revoked at the revocation endpoint: the opaque token and the JWT
    let opaque = token(gw, "svc-opaque", ORDERS, "orders.read").await;
    Echo::from(call(gw, "/api/orders", Some(&bearer(&opaque))).await).await;
    revoke(gw, "svc-opaque", &opaque).await;
    refused(
        call(gw, "/api/orders", Some(&bearer(&opaque))).await,
        401,
        &invalid("the token is unknown, expired or revoked"),
    )
    .await;
    Echo::from(call(gw, "/api/orders", Some(&bearer(&real))).await).await;
    revoke(gw, "svc", &real).await;
    refused(
        call(gw, "/api/orders", Some(&bearer(&real))).await,
        401,
        &invalid("the token was revoked"),
    )
    .await;
    refused(
        call(gw, "/api/orders", Some(&bearer("not-a-token-we-issued"))).await,
        401,
        &invalid("the token is unknown, expired or revoked"),
    )
    .await;

    // valid, but not enough: the location's scopes, then its rules
    let read = token(gw, "svc", ORDERS, "orders.read").await;
    refused(
        call(gw, "/api/write", Some(&bearer(&read))).await,
        403,
        &format!(r#"{REALM}, error="insufficient_scope", scope="orders.write""#),
    )
    .await;
    refused(
        call(gw, "/api/admin", Some(&bearer(&read))).await,
        403,
        &format!(r#"{REALM}, error="insufficient_scope""#),
    )
    .await;
    let line = gw.wait_log("\"status\":403");
    assert!(line.contains("\"auth\":\"bearer\""), "{line}");
    assert!(line.contains("\"user\":\"svc\""), "{line}");
    assert!(line.contains("\"decision\":\"denied\""), "{line}");

    // a location that also signs users in: a browser without a token still goes to sign
    // in; a request with a bad token never does, not even a GET
    let r = call(gw, "/api/mixed", None).await;
    assert_eq!(r.status(), 302);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/.tessera/login"));
    // one that cannot be sent to sign in (its body could not be replayed) is told which
    // scheme would work
    let r = client().post(gw.url("/api/mixed")).send().await.unwrap();
    refused(r, 401, REALM).await;
    refused(
        call(gw, "/api/mixed", Some(&bearer(&expired))).await,
        401,
        &invalid("the token expired"),
    )
    .await;
    Echo::from(call(gw, "/api/mixed", Some(&bearer(&read))).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_decides_a_bearer_call() {
    let s = setup().await;
    let gw = &s.gw;
    let ask = |authorization: Option<String>| {
        let mut req = client()
            .get(gw.url("/.tessera/auth"))
            .header("x-original-url", "http://ingress.example.com/orders/7")
            .header("x-original-method", "GET");
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        req.send()
    };
    let t = token(gw, "svc", ORDERS, "orders.read").await;
    let r = ask(Some(format!("Bearer {t}"))).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-client"], "svc");
    let realm = r#"Bearer realm="orders-ingress""#;
    let expired_answer =
        format!(r#"{realm}, error="invalid_token", error_description="the token expired""#);
    let r = ask(None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], realm);
    let expired = s
        .key
        .sign(TokenType::Access, claims(-5).to_string().as_bytes())
        .unwrap();
    let r = ask(Some(format!("Bearer {expired}"))).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], expired_answer.as_str());
    assert!(r.headers().get("x-client").is_none());
    // the `/.tessera/forward-auth` style (Traefik, Caddy) redirects browsers to sign in, but
    // never a bearer request
    let r = client()
        .get(gw.url("/.tessera/forward-auth"))
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "ingress.example.com")
        .header("x-forwarded-uri", "/orders/7")
        .header("authorization", format!("Bearer {expired}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], expired_answer.as_str());
    // the first call's access line: allowed, by bearer, for svc
    let line = gw.wait_log("\"app\":\"orders-ingress\"");
    assert!(line.contains("\"user\":\"svc\""), "{line}");
    assert!(line.contains("\"auth\":\"bearer\""), "{line}");
    assert!(line.contains("\"decision\":\"allowed\""), "{line}");
}

/// panva's oidc-provider as an upstream IdP (tests/e2e/token-idp.mjs), and what it printed.
struct Idp {
    child: Child,
    out: Value,
    /// Kept open: the IdP's later output must not meet a closed pipe.
    _stdout: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_idp() -> Idp {
    let [port] = free_ports();
    let script = format!("{}/tests/e2e/token-idp.mjs", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("node")
        .arg(script)
        .arg(port.to_string())
        // it exits when its stdin closes: with this test, even if the test is killed
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node (tests/e2e/node_modules: scripts/install-deps.sh)");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let out = loop {
        let line = lines
            .next()
            .expect(
                "token-idp.mjs printed nothing (tests/e2e/node_modules: scripts/install-deps.sh)",
            )
            .unwrap();
        if line.starts_with('{') {
            break serde_json::from_str(&line).unwrap();
        }
    };
    Idp {
        child,
        out,
        _stdout: lines,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_idps_jwt_is_verified_with_its_jwks() {
    let idp = start_idp();
    let issuer = idp.out["issuer"].as_str().unwrap();
    let up = upstream().await;
    let gw = Gateway::start(&format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: corp
    type: oidc
    oidcWellKnownURL: {issuer}/.well-known/openid-configuration
    oauthClientID: gw
    oauthClientSecret: gw-secret-0123456789
    oauthRedirectURL: http://127.0.0.1:1/corp/callback
apps:
  - name: orders
    type: proxy
    routePatterns: ["/"]
    upstream: http://{up}
    headers:
      - {{ name: X-Client, value: "{{{{ token.client_id }}}}" }}
      - {{ name: X-Issuer, value: "{{{{ token.iss }}}}" }}
    policies:
      - location: /untyped
        authentication: {{ bearer: {{ issuers: [corp], audiences: ["{ORDERS}"], untypedTokensFrom: [corp] }} }}
        authorization: {{ allowAll: true }}
      - location: /
        authentication: {{ bearer: {{ issuers: [corp], audiences: ["{ORDERS}"], scopes: [orders.read] }} }}
        authorization: {{ rules: {{ attribute: token.scope, contains: orders.read }} }}
"#
    ));
    let t = |k: &str| format!("Bearer {}", idp.out[k].as_str().unwrap());
    assert_eq!(idp.out["header"]["typ"], "at+jwt");
    let echo = Echo::from(call(&gw, "/orders", Some(&t("token"))).await).await;
    assert_eq!(echo.one("x-client").as_deref(), Some("orders-cli"));
    assert_eq!(echo.one("x-issuer").as_deref(), Some(issuer));
    assert_eq!(echo.one("authorization"), None);
    refused(
        call(&gw, "/orders", Some(&t("other_key"))).await,
        401,
        &invalid("the token's signature does not verify"),
    )
    .await;
    refused(
        call(&gw, "/orders", Some(&t("unknown_kid"))).await,
        401,
        &invalid("the token's signing key is unknown"),
    )
    .await;
    // RFC 9068: this IdP types its access tokens, so an ID token (typ JWT) is refused, unless
    // the policy accepts untyped tokens of this IdP
    refused(
        call(&gw, "/orders", Some(&t("id_typed"))).await,
        401,
        &invalid("the token is not typed as an access token (at+jwt)"),
    )
    .await;
    let echo = Echo::from(call(&gw, "/untyped", Some(&t("id_typed"))).await).await;
    assert_eq!(echo.one("x-client").as_deref(), Some("orders-cli"));
}

#[test]
fn bearer_settings_are_validated_with_exact_errors() {
    let keys = tempfile::tempdir().unwrap();
    let key = es256_key(&keys);
    let yaml = |provider: bool, bearer: &str| {
        let provider = if provider {
            format!(
                "oidcProvider:\n  issuer: {ISSUER}\n  signingKeys: [{{ file: {}, alg: ES256 }}]\n",
                key.display()
            )
        } else {
            String::new()
        };
        format!(
            r#"version: 1
connectors:
  - {{ name: local, type: local, users: [] }}
  - name: corp
    type: oidc
    oidcWellKnownURL: https://idp.example.com/.well-known/openid-configuration
    oauthClientID: gw
    oauthClientSecret: gw-secret-0123456789
    oauthRedirectURL: https://gw.example.com/corp/callback
{provider}apps:
  - name: orders
    type: proxy
    routePatterns: ["/"]
    upstream: http://127.0.0.1:9
    headers: [{{ name: X-Client, value: "{{{{ token.client_id }}}}" }}]
    policies:
      - location: /
        authentication: {{ bearer: {bearer} }}
        authorization: {{ rules: {{ attribute: token.scope, contains: orders.read }} }}
"#
        )
    };
    let (code, out) = validate_with(
        &yaml(true, "{ issuers: [oidcProvider, corp], audiences: [a], scopes: [orders.read], untypedTokensFrom: [corp] }"),
        &[],
    );
    assert_eq!(code, 0, "{out}");
    for (provider, bearer, expected) in [
        (
            true,
            "{ issuers: [oidcprovider], audiences: [a] }",
            "t.yaml:21:47: unknown issuer `oidcprovider`\n    hint: did you mean `oidcProvider`?",
        ),
        (
            false,
            "{ issuers: [oidcProvider], audiences: [a] }",
            "t.yaml:18:47: `oidcProvider` is named as an issuer, but no `oidcProvider` is configured",
        ),
        (
            true,
            "{ issuers: [local], audiences: [a] }",
            "t.yaml:21:47: connector `local` is not an OpenID Connect IdP: it issues no access tokens",
        ),
        (
            true,
            "{ issuers: [], audiences: [a] }",
            "t.yaml:21:37: name at least one issuer whose tokens this location accepts",
        ),
        (
            true,
            "{ issuers: [corp], audiences: [] }",
            "t.yaml:21:54: list the audiences a token must be issued for",
        ),
        (
            true,
            "{ issuers: [corp, corp], audiences: [a] }",
            "t.yaml:21:53: issuer `corp` is listed twice",
        ),
        (
            true,
            "{ issuers: [corp], audiences: [a], scopes: [\"orders read\"] }",
            "t.yaml:21:79: `orders read` is not a scope: one word, without spaces, quotes or backslashes",
        ),
        (
            true,
            "{ issuers: [corp], audiences: [a], untypedTokensFrom: [oidcProvider] }",
            "t.yaml:21:90: `oidcProvider` is not a connector listed in `issuers`",
        ),
        (
            true,
            "{ issuers: [corp], audiences: [a], forward: true }",
            "t.yaml:21:70: unknown key `forward`",
        ),
    ] {
        let (code, out) = validate_with(&yaml(provider, bearer), &[]);
        assert_eq!(code, 2, "{bearer}: {out}");
        assert!(out.contains(expected), "{bearer}: missing `{expected}` in:\n{out}");
    }
    // `token` names a bearer token's claims: no connector may take it
    let (code, out) = validate_with(
        &yaml(true, "{ issuers: [corp], audiences: [a] }")
            .replace("name: local, type: local", "name: token, type: local"),
        &[],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("`token` is reserved: `token.<claim>` names a bearer token's claims"),
        "{out}"
    );
}
