//! Login at an upstream OpenID Connect IdP. The real IdP here is a second Tessera process
//! acting as OpenID provider (a standards-following OP written independently of the RP code);
//! the browser-level test against panva's oidc-provider lives in tests/e2e. A hand-made IdP
//! below (`MockIdp`) forges the broken answers no real IdP gives: bad signatures, wrong
//! audience or issuer, expired tokens, wrong nonces, `alg: none`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};

fn query_of(location: &str) -> HashMap<String, String> {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

struct Pair {
    idp: Gateway,
    rp: Gateway,
    _keys: tempfile::TempDir,
}

const SECRET: &str = "rp-client-secret-0123";

/// An IdP gateway (OIDC provider with a local user) and an RP gateway whose proxy app logs in
/// there.
fn pair(rp_extra_connector: &str) -> Pair {
    pair_with("", "openid email profile groups", rp_extra_connector)
}

fn pair_with(idp_client_extra: &str, rp_scopes: &str, rp_extra_connector: &str) -> Pair {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("k.pem");
    std::fs::write(
        &key,
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256).unwrap(),
    )
    .unwrap();
    let [p, q] = free_ports();
    let hash = pw_hash();
    let idp = Gateway::start(&format!(
        r#"version: 1
http: {{ address: "127.0.0.1:{p}" }}
logger: {{ level: info, format: json }}
session: {{ cookie: {{ name: idp_session }} }}
connectors:
  - name: people
    type: local
    users:
      - {{ username: alice, passwordHash: "{hash}", attributes: {{ email: alice@corp.example, groups: [eng, ops], given_name: Alice }} }}
oidcProvider:
  issuer: http://127.0.0.1:{p}
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: gateway-rp
    type: oidc
    clientID: gw
    clientSecret: {SECRET}
    redirectURLs: ["http://127.0.0.1:{q}/corp/callback"]
    logoutRedirectURLs: ["http://127.0.0.1:{q}/corp/logged-out"]
    grantTypes: [authorization_code, refresh_token]
    scopes: [groups]
    authentication: {{ idps: [people] }}
    claimsMapping: {{ groups: people.groups }}
{idp_client_extra}
"#,
        key = key.display()
    ));
    let up = std::thread::spawn(|| {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { upstream_forever().await })
    })
    .join()
    .unwrap();
    let rp = Gateway::start(&format!(
        r#"version: 1
http: {{ address: "127.0.0.1:{q}" }}
logger: {{ level: info, format: json }}
connectors:
  - name: corp
    type: oidc
    oidcWellKnownURL: http://127.0.0.1:{p}/.well-known/openid-configuration
    oauthClientID: gw
    oauthClientSecret: {SECRET}
    oauthRedirectURL: http://127.0.0.1:{q}/corp/callback
    oidcLogoutCallbackURL: http://127.0.0.1:{q}/corp/logged-out
    scopes: {rp_scopes}
{rp_extra_connector}
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{up}
    headers:
      - {{ name: X-Email, value: "{{{{ corp.email }}}}" }}
      - {{ name: X-Groups, value: "{{{{ corp.groups }}}}" }}
      - {{ name: X-Name, value: "{{{{ corp.given_name }}}}" }}
    logout: {{ location: /logout, redirectURL: /bye }}
    policies:
      - {{ location: /bye, authentication: {{ allowUnauthenticated: true }}, authorization: {{ allowAll: true }} }}
      - {{ location: /, authentication: {{ idps: [corp] }}, authorization: {{ allowAll: true }} }}
"#
    ));
    Pair {
        idp,
        rp,
        _keys: keys,
    }
}

/// An upstream echo app that outlives the runtime that created it.
async fn upstream_forever() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            tx.send(upstream().await).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

/// Browser-like run from a protected RP URL to the RP callback URL (not yet followed).
/// Returns (callback URL, RP flow cookie, IdP session cookie).
async fn to_callback(pair: &Pair, path: &str) -> (String, String, String) {
    let c = client();
    let s = start_login(&pair.rp, path).await;
    let r = c
        .get(&s.login_url)
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "single IdP: straight to it");
    let authorize = location(&r);
    assert!(
        authorize.starts_with(&pair.idp.url("/oauth2/authorize?")),
        "{authorize}"
    );
    let q = query_of(&authorize);
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q.contains_key("nonce") && q.contains_key("state"));
    let r = c.get(&authorize).send().await.unwrap();
    let idp_login = location(&r);
    let idp_flow = set_cookie(&r, "tessera_login").unwrap();
    let html = c
        .get(pair.idp.url(&idp_login))
        .header("cookie", &idp_flow)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = c
        .post(pair.idp.url("/.tessera/login"))
        .header("cookie", &idp_flow)
        .form(&[
            ("flow", hidden(&html, "flow")),
            ("csrf", hidden(&html, "csrf")),
            ("idp", "people".into()),
            ("username", "alice".into()),
            ("password", "pw".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let idp_session = set_cookie(&r, "idp_session").unwrap();
    let r = c
        .get(pair.idp.url(&location(&r)))
        .header("cookie", &idp_session)
        .send()
        .await
        .unwrap();
    let callback = location(&r);
    assert!(
        callback.starts_with(&pair.rp.url("/corp/callback?")),
        "{callback}"
    );
    (callback, s.flow_cookie, idp_session)
}

#[tokio::test(flavor = "multi_thread")]
async fn login_at_an_upstream_idp_and_logout_at_both() {
    let pair = pair("");
    let (callback, flow_cookie, idp_session) = to_callback(&pair, "/reports?y=1").await;
    let c = client();
    let r = c
        .get(&callback)
        .header("cookie", &flow_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    assert_eq!(location(&r), "/reports?y=1");
    let session = set_cookie(&r, "tessera_session").unwrap();
    let echo = Echo::from(
        c.get(pair.rp.url("/reports?y=1"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.one("x-email").as_deref(), Some("alice@corp.example"));
    assert_eq!(
        echo.one("x-groups").as_deref(),
        Some("eng,ops"),
        "arrays stay arrays, joined in headers"
    );
    assert_eq!(echo.one("x-name").as_deref(), Some("Alice"));
    // replaying the callback (same state) is refused
    let r = c
        .get(&callback)
        .header("cookie", &flow_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("already used"));
    // logout ends the local session and goes to the IdP's end_session endpoint
    let r = logout(&pair.rp, "/logout", &session).await;
    assert_eq!(r.status(), 303);
    let end = location(&r);
    assert!(end.starts_with(&pair.idp.url("/oauth2/logout?")), "{end}");
    let q = query_of(&end);
    assert!(q.contains_key("id_token_hint"));
    assert_eq!(
        q["post_logout_redirect_uri"],
        pair.rp.url("/corp/logged-out")
    );
    let r = c
        .get(&end)
        .header("cookie", &idp_session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), pair.rp.url("/corp/logged-out"));
    let r = c.get(pair.rp.url("/corp/logged-out")).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("You are signed out"));
    // both sessions are over
    assert_eq!(
        status_with_cookie(pair.rp.url("/reports"), &session).await,
        302
    );
    let r = c.get(pair.idp.url("/oauth2/authorize?client_id=gw&response_type=code&scope=openid&redirect_uri=http://127.0.0.1:1/x")).header("cookie", &idp_session).send().await.unwrap();
    assert_eq!(
        r.status(),
        400,
        "unregistered redirect: page, whatever the session"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_tokens_are_refreshed_when_they_expire() {
    let mut pair = pair_with(
        "    accessToken: { lifetimeSeconds: 1 }\n    refreshToken: { allowOfflineAccess: true }",
        "openid email groups offline_access",
        "    refreshTokens: true",
    );
    let (callback, flow_cookie, _) = to_callback(&pair, "/a").await;
    let c = client();
    let r = c
        .get(&callback)
        .header("cookie", &flow_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session = set_cookie(&r, "tessera_session").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    // the upstream access token has expired: refreshed at the IdP, the request goes through
    let r = c
        .get(pair.rp.url("/a"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The IdP writes its access line after its answer: wait for it rather than race it.
    let token_requests = pair
        .idp
        .wait_logs("/oauth2/token", 2, std::time::Duration::from_secs(5));
    assert!(
        token_requests.iter().all(|l| l.contains("\"status\":200")),
        "a refresh grant reached the IdP and succeeded: {token_requests:?}"
    );
    // the IdP goes away; once the new token expires, the gateway cannot renew it: 502, not a pass
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    pair.idp.signal("KILL");
    let _ = pair.idp.wait_exit(std::time::Duration::from_secs(5));
    let r = c
        .get(pair.rp.url("/a"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn callback_bad_inputs() {
    let pair = pair("");
    let c = client();
    let r = c
        .get(pair.rp.url("/corp/callback?code=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "missing state");
    assert!(set_cookie(&r, "tessera_session").is_none());
    let r = c
        .get(pair.rp.url("/corp/callback?code=abc&state=unknown"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unknown state");
    // an IdP error with a genuine state: a readable page with the IdP's error
    let s = start_login(&pair.rp, "/").await;
    let r = c
        .get(&s.login_url)
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap();
    let state = query_of(&location(&r))["state"].clone();
    let r = c
        .get(pair.rp.url(&format!(
            "/corp/callback?error=access_denied&error_description=User%20said%20no&state={state}"
        )))
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("access_denied") && page.contains("User said no"),
        "{page}"
    );
    // a genuine state from another browser (no flow cookie) is refused
    let (callback, _, _) = to_callback(&pair, "/").await;
    let r = c.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(set_cookie(&r, "tessera_session").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_idp_refuses_start_or_degrades() {
    let dead = free_port();
    let yaml = |mode: &str| {
        format!(
            r#"version: 1
http: {{ address: "127.0.0.1:0", adminAddress: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: corp
    type: okta
    oidcWellKnownURL: http://127.0.0.1:{dead}
    oauthClientID: gw
    oauthClientSecret: x
    oauthRedirectURL: http://127.0.0.1:9/corp/callback
    onDiscoveryFailure: {mode}
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://127.0.0.1:9
    policies: [{{ location: /, authentication: {{ idps: [corp] }}, authorization: {{ allowAll: true }} }}]
"#
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, yaml("refuse")).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("identity provider `corp`") && err.contains("not reachable"),
        "{err}"
    );
    // degrade: starts, reports the IdP, and a login through it answers 502
    let gw = Gateway::start(&yaml("degrade"));
    // public status: up, naming nothing; the admin listener names the IdP
    let r = client().get(gw.url("/status")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"status":"up"}"#);
    let r = client().get(gw.admin_url("/status")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["unavailableIdps"],
        json!(["corp"])
    );
    let s = start_login(&gw, "/").await;
    let r = client()
        .get(&s.login_url)
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("Okta is not reachable"));
}

// ---- A forging IdP for the answers no real IdP gives --------------------------------------

#[derive(Clone, Copy, PartialEq, Debug)]
enum Forge {
    Good,
    WrongKey,
    WrongAudience,
    WrongIssuer,
    Expired,
    WrongNonce,
    AlgNone,
    IssuedInFuture,
}

struct MockIdp {
    addr: SocketAddr,
    mode: Arc<Mutex<(Forge, String)>>,
    /// Its signing key, a key it does not publish, its issuer.
    state: Arc<MockState>,
}

async fn mock_idp() -> MockIdp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let issuer = format!("http://{addr}");
    let key = tessera::provider::keys::SigningKey::from_pem(
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256)
            .unwrap()
            .as_bytes(),
        tessera::provider::keys::SigningAlg::Es256,
    )
    .unwrap();
    let other = tessera::provider::keys::SigningKey::from_pem(
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256)
            .unwrap()
            .as_bytes(),
        tessera::provider::keys::SigningAlg::Es256,
    )
    .unwrap();
    let state = Arc::new((key, other, issuer));
    let mode = Arc::new(Mutex::new((Forge::Good, String::new())));
    let m2 = mode.clone();
    let kept = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            let mode = m2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    let mode = mode.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(mock_answer(req, &state, &mode).await)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    MockIdp {
        addr,
        mode,
        state: kept,
    }
}

/// The IdP session id in the mock's ID tokens.
const MOCK_SID: &str = "idp-session-1";

type MockState = (
    tessera::provider::keys::SigningKey,
    tessera::provider::keys::SigningKey,
    String,
);

async fn mock_answer(
    req: Request<Incoming>,
    s: &MockState,
    mode: &Mutex<(Forge, String)>,
) -> Response<Full<Bytes>> {
    let (key, other, issuer) = s;
    let json_resp = |v: Value| {
        let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    };
    match req.uri().path() {
        "/.well-known/openid-configuration" => json_resp(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256", "none", "HS256"],
        })),
        "/jwks" => json_resp(json!({"keys": [key.jwk]})),
        "/token" => {
            let _ = req.into_body().collect().await;
            let (forge, nonce) = mode.lock().unwrap().clone();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let mut claims = json!({"iss": issuer, "sub": "u1", "aud": "gw", "iat": now, "exp": now + 300, "nonce": nonce, "email": "u1@example.com", "sid": MOCK_SID});
            match forge {
                Forge::WrongAudience => claims["aud"] = json!("someone-else"),
                Forge::WrongIssuer => claims["iss"] = json!("http://evil.example.com"),
                Forge::Expired => {
                    claims["exp"] = json!(now - 600);
                    claims["iat"] = json!(now - 900);
                }
                Forge::WrongNonce => claims["nonce"] = json!("not-the-nonce"),
                Forge::IssuedInFuture => claims["iat"] = json!(now + 3600),
                _ => {}
            }
            let signer = if forge == Forge::WrongKey { other } else { key };
            let id_token = if forge == Forge::AlgNone {
                use base64::Engine;
                let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                format!(
                    "{}.{}.",
                    b.encode(br#"{"alg":"none","typ":"JWT"}"#),
                    b.encode(claims.to_string())
                )
            } else {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
                h.kid = Some(key.kid.clone());
                jsonwebtoken::encode(&h, &claims, &signer.encoding).unwrap()
            };
            json_resp(
                json!({"access_token": "at-1", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}),
            )
        }
        _ => Response::builder()
            .status(404)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_id_tokens_are_refused() {
    let idp = mock_idp().await;
    let up = upstream().await;
    let gw = Gateway::start(&format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: mock
    type: oidc
    oidcWellKnownURL: http://{idp}/.well-known/openid-configuration
    oauthClientID: gw
    oauthClientSecret: {SECRET}
    oauthRedirectURL: http://127.0.0.1:9/mock/callback
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{up}
    headers: [{{ name: X-Email, value: "{{{{ mock.email }}}}" }}]
    policies: [{{ location: /, authentication: {{ idps: [mock] }}, authorization: {{ allowAll: true }} }}]
"#,
        idp = idp.addr
    ));
    let c = client();
    for forge in [
        Forge::WrongKey,
        Forge::WrongAudience,
        Forge::WrongIssuer,
        Forge::Expired,
        Forge::WrongNonce,
        Forge::AlgNone,
        Forge::IssuedInFuture,
        Forge::Good,
    ] {
        let s = start_login(&gw, "/").await;
        let r = c
            .get(&s.login_url)
            .header("cookie", &s.flow_cookie)
            .send()
            .await
            .unwrap();
        let q = query_of(&location(&r));
        *idp.mode.lock().unwrap() = (forge, q["nonce"].clone());
        let r = c
            .get(gw.url(&format!("/mock/callback?code=c1&state={}", q["state"])))
            .header("cookie", &s.flow_cookie)
            .send()
            .await
            .unwrap();
        if forge == Forge::Good {
            assert_eq!(r.status(), 303, "the genuine token is accepted");
            let session = set_cookie(&r, "tessera_session").unwrap();
            let echo = Echo::from(
                c.get(gw.url("/"))
                    .header("cookie", session)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(echo.one("x-email").as_deref(), Some("u1@example.com"));
        } else {
            assert_eq!(r.status(), 401, "{forge:?} must be refused");
            assert!(set_cookie(&r, "tessera_session").is_none(), "{forge:?}");
        }
    }
    // the last refusal is logged before the genuine login's line
    gw.wait_log("login succeeded");
    let logs = gw.logs();
    assert!(logs.contains("upstream login refused"));
    assert_eq!(
        logs.matches("upstream login refused").count(),
        7,
        "each refusal is logged with its reason"
    );
}

/// A logout token of the mock IdP: `claims` signed with its key (or `other`), `typ`
/// `logout+jwt`.
fn logout_token(idp: &MockIdp, claims: &Value, with_other_key: bool) -> String {
    let (key, other, _) = &*idp.state;
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some(key.kid.clone());
    h.typ = Some("logout+jwt".into());
    let signer = if with_other_key { other } else { key };
    jsonwebtoken::encode(&h, claims, &signer.encoding).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Back-channel logout from an upstream IdP (issue 15): a logout token that fails any check
/// of section 2.6 is refused with 400 `invalid_request`, logged with its reason, and ends
/// nothing; a valid one ends the gateway session that came from the IdP session (the proxy
/// app asks for a sign-in again) and the tokens the provider issued in it; its replay is
/// refused.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_backchannel_logout() {
    let idp = mock_idp().await;
    let up = upstream().await;
    let keys = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: mock
    type: oidc
    oidcWellKnownURL: http://{idp}/.well-known/openid-configuration
    oauthClientID: gw
    oauthClientSecret: {SECRET}
    oauthRedirectURL: http://127.0.0.1:9/mock/callback
    oidcBackchannelLogoutURL: http://127.0.0.1:9/mock/backchannel-logout
oidcProvider:
  issuer: http://localhost:1234
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{up}
    policies: [{{ location: /, authentication: {{ idps: [mock] }}, authorization: {{ allowAll: true }} }}]
  - name: web
    type: oidc
    clientID: web
    clientSecret: {SECRET}
    redirectURLs: ["https://rp.example.com/cb"]
    grantTypes: [authorization_code, refresh_token]
    authentication: {{ idps: [mock] }}
    refreshToken: {{ allowOfflineAccess: true }}
"#,
        idp = idp.addr,
        key = es256_key(&keys).display()
    ));
    let c = client();
    // sign in through the IdP
    let s = start_login(&gw, "/").await;
    let r = c
        .get(&s.login_url)
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap();
    let q = query_of(&location(&r));
    *idp.mode.lock().unwrap() = (Forge::Good, q["nonce"].clone());
    let r = c
        .get(gw.url(&format!("/mock/callback?code=c1&state={}", q["state"])))
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session = set_cookie(&r, "tessera_session").unwrap();
    // an OIDC app gets tokens in that session (single sign-on: no second sign-in)
    let authz = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", "web"),
            ("redirect_uri", "https://rp.example.com/cb"),
            ("response_type", "code"),
            ("scope", "openid offline_access"),
        ])
        .finish();
    let r = c
        .get(gw.url(&format!("/oauth2/authorize?{authz}")))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let code = query_of(&location(&r))["code"].clone();
    let tokens: Value = c
        .post(gw.url("/oauth2/token"))
        .basic_auth("web", Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://rp.example.com/cb"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let at = tokens["access_token"].as_str().unwrap().to_string();
    let active = |t: String| {
        let gw_url = gw.url("/oauth2/introspect");
        async move {
            let v: Value = client()
                .post(gw_url)
                .basic_auth("web", Some(SECRET))
                .form(&[("token", t)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["active"].as_bool().unwrap()
        }
    };
    let signed_in =
        || async { status_with_cookie(gw.url("/"), &session).await == reqwest::StatusCode::OK };
    assert!(signed_in().await);
    assert!(active(at.clone()).await);

    let issuer = idp.state.2.clone();
    let good = |jti: &str| {
        json!({
            "iss": issuer, "aud": "gw", "iat": now(), "exp": now() + 120, "jti": jti,
            "sub": "u1", "sid": MOCK_SID,
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        })
    };
    let post = |token: String| {
        let url = gw.url("/mock/backchannel-logout");
        async move {
            let r = client()
                .post(url)
                .form(&[("logout_token", token)])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let cache = r
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = if status == 200 {
                Value::Null
            } else {
                r.json().await.unwrap()
            };
            (status, cache, body)
        }
    };
    let with = |jti: &str, f: &dyn Fn(&mut Value)| {
        let mut v = good(jti);
        f(&mut v);
        v
    };
    let bad: Vec<(String, &str)> = vec![
        (
            logout_token(&idp, &good("j-sig"), true),
            "the logout token's signature is wrong",
        ),
        (
            logout_token(
                &idp,
                &with("j-aud", &|v| v["aud"] = json!("someone-else")),
                false,
            ),
            "the logout token's aud is not this client",
        ),
        (
            logout_token(
                &idp,
                &with("j-iss", &|v| v["iss"] = json!("http://evil.example.com")),
                false,
            ),
            "the logout token's iss is not the IdP",
        ),
        (
            logout_token(&idp, &with("j-nonce", &|v| v["nonce"] = json!("n")), false),
            "the logout token carries a nonce",
        ),
        (
            logout_token(
                &idp,
                &with("j-events", &|v| {
                    v.as_object_mut().unwrap().remove("events");
                }),
                false,
            ),
            "the logout token has no back-channel logout event",
        ),
        (
            logout_token(
                &idp,
                &with("j-event", &|v| {
                    v["events"] = json!({"http://example.com/other": {}})
                }),
                false,
            ),
            "the logout token has no back-channel logout event",
        ),
        (
            logout_token(
                &idp,
                &with("j-iat", &|v| {
                    v["iat"] = json!(now() - 1000);
                    v.as_object_mut().unwrap().remove("exp");
                }),
                false,
            ),
            "the logout token is too old (iat)",
        ),
        (
            logout_token(
                &idp,
                &with("j-exp", &|v| v["exp"] = json!(now() - 600)),
                false,
            ),
            "the logout token has expired",
        ),
        (
            logout_token(
                &idp,
                &with("j-ids", &|v| {
                    let m = v.as_object_mut().unwrap();
                    m.remove("sid");
                    m.remove("sub");
                }),
                false,
            ),
            "the logout token has neither sid nor sub",
        ),
        (
            logout_token(
                &idp,
                &with("j-jti", &|v| {
                    v.as_object_mut().unwrap().remove("jti");
                }),
                false,
            ),
            "the logout token has no jti",
        ),
        ("not-a-jwt".into(), "the logout token is not a JWT"),
    ];
    for (token, reason) in &bad {
        let (status, cache, body) = post(token.clone()).await;
        assert_eq!(status, 400, "{reason}");
        assert_eq!(cache.as_deref(), Some("no-store"));
        assert_eq!(body["error"], "invalid_request", "{reason}");
        assert_eq!(body["error_description"], *reason);
        assert!(signed_in().await, "{reason}: the session is untouched");
        assert!(active(at.clone()).await, "{reason}: its tokens too");
    }
    for (_, reason) in &bad {
        gw.wait_log(reason);
    }
    // no logout_token at all, or a GET
    let r = c
        .post(gw.url("/mock/backchannel-logout"))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(gw.url("/mock/backchannel-logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(signed_in().await);

    // the genuine token: the session ends, and what was issued in it
    let genuine = logout_token(&idp, &good("j-good"), false);
    let (status, cache, _) = post(genuine.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(cache.as_deref(), Some("no-store"));
    let r = c
        .get(gw.url("/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "the proxy app asks for a sign-in again");
    assert!(location(&r).starts_with("/.tessera/login"));
    assert!(!active(at.clone()).await);
    assert!(!active(tokens["refresh_token"].as_str().unwrap().to_string()).await);
    let line = gw.wait_log("back-channel logout from the identity provider");
    assert!(line.contains("\"sessions\":1"), "{line}");
    // its replay
    let (status, _, body) = post(genuine).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error_description"],
        "the logout token was already used (jti)"
    );
    // a token naming only the subject ends the subject's sessions (none left: still 200)
    let (status, _, _) = post(logout_token(
        &idp,
        &with("j-sub", &|v| {
            v.as_object_mut().unwrap().remove("sid");
        }),
        false,
    ))
    .await;
    assert_eq!(status, 200);
}
