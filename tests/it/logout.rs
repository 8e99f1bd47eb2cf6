//! Single logout (issue 15): ending a gateway session ends the grants issued in it, on every
//! replica; `refreshToken.survivesLogout`; the provider's end-session.

use std::collections::HashMap;

use crate::support::redis::RedisServer;
use crate::support::*;
use base64::Engine;
use serde_json::Value;
use sha2::Digest;

const SECRET: &str = "s3cret-s3cret-s3cret";
const REDIRECT: &str = "https://rp.example.com/cb";

/// A provider with a proxy app and three clients: `web` (tokens end with the session),
/// `keeper` (`survivesLogout`), `svc` (client credentials), all with `access` tokens (jwt or
/// opaque). `top` is added at the top level (a Redis cache, the session store).
fn yaml(key: &std::path::Path, access: &str, top: &str, provider_extra: &str) -> String {
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: debug, format: json }}
{top}
connectors:
  - name: local
    type: local
    users: [{{ username: alice, passwordHash: "{hash}", attributes: {{ email: alice@example.com }} }}]
oidcProvider:
  issuer: http://localhost:1234
  signingKeys: [{{ file: {key}, alg: ES256 }}]
{provider_extra}
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
    logoutRedirectURLs: ["https://rp.example.com/bye"]
    grantTypes: [authorization_code, refresh_token]
    authentication: {{ idps: [local] }}
    accessToken: {{ type: {access} }}
    refreshToken: {{ allowOfflineAccess: true, reuseGraceSeconds: 0 }}
  - name: keeper
    type: oidc
    clientID: keeper
    clientSecret: {SECRET}
    redirectURLs: ["{REDIRECT}"]
    grantTypes: [authorization_code, refresh_token]
    authentication: {{ idps: [local] }}
    accessToken: {{ type: {access} }}
    refreshToken: {{ allowOfflineAccess: true, reuseGraceSeconds: 0, survivesLogout: true }}
  - name: svc
    type: oidc
    clientID: svc
    clientSecret: {SECRET}
    redirectURLs: []
    grantTypes: [client_credentials]
    accessToken: {{ type: {access} }}
"#,
        hash = pw_hash(),
        key = key.display()
    )
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The browser part of a code flow for `client` (signing alice in when `session` is `None`),
/// then the code. Returns (code, PKCE verifier, session cookie).
async fn authorize(
    gw: &Gateway,
    client_id: &str,
    scope: &str,
    session: Option<&str>,
) -> (String, String, String) {
    let c = client();
    let verifier = tessera::session::random_token(32);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", scope),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    let mut req = c.get(gw.url(&format!("/oauth2/authorize?{q}")));
    if let Some(s) = session {
        req = req.header("cookie", s);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 302);
    let mut loc = r.headers()["location"].to_str().unwrap().to_string();
    let mut cookie = session.unwrap_or_default().to_string();
    if loc.starts_with("/.tessera/login") {
        let flow = set_cookie(&r, "tessera_login").unwrap();
        let html = c
            .get(gw.url(&loc))
            .header("cookie", &flow)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r = c
            .post(gw.url("/.tessera/login"))
            .header("cookie", &flow)
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
        cookie = set_cookie(&r, "tessera_session").unwrap();
        let back = r.headers()["location"].to_str().unwrap().to_string();
        let r = c
            .get(gw.url(&back))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        loc = r.headers()["location"].to_str().unwrap().to_string();
    }
    (query_of(&loc)["code"].clone(), verifier, cookie)
}

async fn token(gw: &Gateway, client_id: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = client()
        .post(gw.url("/oauth2/token"))
        .basic_auth(client_id, Some(SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn redeem(gw: &Gateway, client_id: &str, code: &str, verifier: &str) -> (u16, Value) {
    token(
        gw,
        client_id,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// Signs alice in (or reuses `session`) and gets `client_id`'s tokens; returns them and
/// the session cookie.
async fn tokens(gw: &Gateway, client_id: &str, session: Option<&str>) -> (Value, String) {
    let (code, verifier, cookie) = authorize(gw, client_id, "openid offline_access", session).await;
    let (status, body) = redeem(gw, client_id, &code, &verifier).await;
    assert_eq!(status, 200, "{body}");
    (body, cookie)
}

async fn refresh(gw: &Gateway, client_id: &str, rt: &str) -> (u16, Value) {
    token(
        gw,
        client_id,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await
}

/// `active` at introspection, asked by the token's own client.
async fn active(gw: &Gateway, client_id: &str, t: &str) -> bool {
    let v: Value = client()
        .post(gw.url("/oauth2/introspect"))
        .basic_auth(client_id, Some(SECRET))
        .form(&[("token", t)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["active"].as_bool().unwrap()
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

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no {k} in {v}"))
        .to_string()
}

/// The proxy app's sign-out (confirmation, then POST) ends the access and refresh tokens
/// issued in the session, and a code issued in it; a client's own token and another
/// session's tokens live on.
async fn logout_ends_the_sessions_grants(access: &str) {
    let keys = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&yaml(&es256_key(&keys), access, "", ""));
    let (web, alice) = tokens(&gw, "web", None).await;
    let (at, rt) = (s(&web, "access_token"), s(&web, "refresh_token"));
    // a second sign-in (another browser): a session of its own
    let (other, _) = tokens(&gw, "web", None).await;
    // a code issued in the session, redeemed only after the sign-out
    let (late_code, late_verifier, _) =
        authorize(&gw, "web", "openid offline_access", Some(&alice)).await;
    let (status, svc) = token(&gw, "svc", &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{svc}");
    let svc_at = s(&svc, "access_token");
    assert!(active(&gw, "web", &at).await);
    assert!(active(&gw, "web", &rt).await);
    assert_eq!(userinfo_status(&gw, &at).await, 200);

    let r = logout(&gw, "/.tessera/logout", &alice).await;
    assert_eq!(r.status(), 200);

    assert!(!active(&gw, "web", &at).await, "{access} access token");
    assert!(!active(&gw, "web", &rt).await, "refresh token");
    assert_eq!(userinfo_status(&gw, &at).await, 401);
    let (status, body) = refresh(&gw, "web", &rt).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["error_description"],
        "the session the refresh token was issued in has ended"
    );
    let (status, body) = redeem(&gw, "web", &late_code, &late_verifier).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["error_description"],
        "the session the code was issued in has ended"
    );
    // not bound to the session: untouched
    assert!(active(&gw, "svc", &svc_at).await);
    assert!(active(&gw, "web", &s(&other, "access_token")).await);
    let (status, body) = refresh(&gw, "web", &s(&other, "refresh_token")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn logout_ends_the_sessions_jwt_grants() {
    logout_ends_the_sessions_grants("jwt").await;
}

#[tokio::test]
async fn logout_ends_the_sessions_opaque_grants() {
    logout_ends_the_sessions_grants("opaque").await;
}

/// The provider's end-session (with a hint, at once) ends the grants too, and the `sid` of
/// the ID token names the session: the same for every client, kept when the session grows.
#[tokio::test]
async fn end_session_ends_the_grants_of_every_client_of_the_session() {
    let keys = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&yaml(&es256_key(&keys), "jwt", "", ""));
    let (web, alice) = tokens(&gw, "web", None).await;
    let (keeper, same) = tokens(&gw, "keeper", Some(&alice)).await;
    assert_eq!(same, alice, "no new sign-in");
    let sid = |t: &Value| {
        let id = s(t, "id_token");
        let payload = id.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        s(&claims, "sid")
    };
    assert_eq!(sid(&web), sid(&keeper));
    assert_eq!(sid(&web).len(), 22);
    let hint = s(&web, "id_token");
    let r = client()
        .get(gw.url(&format!("/oauth2/logout?id_token_hint={hint}")))
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("You are signed out"));
    assert!(!active(&gw, "web", &s(&web, "access_token")).await);
    assert!(!active(&gw, "keeper", &s(&keeper, "access_token")).await);
    assert!(!active(&gw, "web", &s(&web, "refresh_token")).await);
    // the survivor's refresh token lives on
    assert!(active(&gw, "keeper", &s(&keeper, "refresh_token")).await);
}

/// `refreshToken.survivesLogout`: the client's refresh tokens outlive the session; what they
/// mint afterwards is bound to no session, and the access tokens the sign-out ended stay
/// ended (JWT and opaque alike).
async fn survivors_keep_their_refresh_tokens(access: &str) {
    let keys = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&yaml(&es256_key(&keys), access, "", ""));
    let (keeper, alice) = tokens(&gw, "keeper", None).await;
    let (at, rt) = (s(&keeper, "access_token"), s(&keeper, "refresh_token"));
    // a refresh inside the session: still bound to it
    let (status, inside) = refresh(&gw, "keeper", &rt).await;
    assert_eq!(status, 200, "{inside}");
    let (at2, rt2) = (s(&inside, "access_token"), s(&inside, "refresh_token"));
    assert_eq!(logout(&gw, "/.tessera/logout", &alice).await.status(), 200);
    assert!(!active(&gw, "keeper", &at).await);
    assert!(!active(&gw, "keeper", &at2).await);
    assert!(active(&gw, "keeper", &rt2).await, "{access}: the survivor");
    let (status, after) = refresh(&gw, "keeper", &rt2).await;
    assert_eq!(status, 200, "{after}");
    let at3 = s(&after, "access_token");
    assert!(active(&gw, "keeper", &at3).await);
    assert_eq!(userinfo_status(&gw, &at3).await, 200);
    // unbinding revived nothing
    assert!(!active(&gw, "keeper", &at2).await);
    assert_eq!(userinfo_status(&gw, &at2).await, 401);
    let (status, again) = refresh(&gw, "keeper", &s(&after, "refresh_token")).await;
    assert_eq!(status, 200, "{again}");
}

#[tokio::test]
async fn survivors_keep_their_jwt_refresh_tokens() {
    survivors_keep_their_refresh_tokens("jwt").await;
}

#[tokio::test]
async fn survivors_keep_their_opaque_refresh_tokens() {
    survivors_keep_their_refresh_tokens("opaque").await;
}

/// Two replicas on one Redis: a sign-out at A ends the tokens at B at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_logout_at_one_replica_ends_the_grants_at_the_other() {
    let server = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let redis = format!(
        "session: {{ store: shared }}\ncaches:\n  - {{ name: shared, type: redis, redis: {{ addresses: [\"{}\"], timeoutMillis: 500 }} }}",
        server.address()
    );
    for access in ["jwt", "opaque"] {
        let config = yaml(&es256_key(&keys), access, &redis, "  cache: shared");
        let a = Gateway::start(&config);
        let b = Gateway::start(&config);
        let (web, alice) = tokens(&a, "web", None).await;
        let (at, rt) = (s(&web, "access_token"), s(&web, "refresh_token"));
        // B knows them (and has looked at them, so a cached answer would show)
        assert!(active(&b, "web", &at).await);
        assert!(active(&b, "web", &rt).await);
        assert_eq!(userinfo_status(&b, &at).await, 200);
        assert_eq!(status_with_cookie(b.url("/portal"), &alice).await, 502);
        assert_eq!(logout(&a, "/.tessera/logout", &alice).await.status(), 200);
        assert!(!active(&b, "web", &at).await, "{access}");
        assert!(!active(&b, "web", &rt).await, "{access}");
        assert_eq!(userinfo_status(&b, &at).await, 401);
        let (status, body) = refresh(&b, "web", &rt).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        assert_eq!(status_with_cookie(b.url("/portal"), &alice).await, 302);
    }
}

/// `survivesLogout` without refresh tokens is refused at its position.
#[test]
fn survives_logout_without_refresh_tokens_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let config = yaml(&es256_key(&keys), "jwt", "", "").replace(
        "refreshToken: { allowOfflineAccess: true, reuseGraceSeconds: 0, survivesLogout: true }",
        "refreshToken: { survivesLogout: true }",
    );
    let (code, out) = validate_with(&config, &[]);
    let line = config
        .lines()
        .position(|l| l.contains("survivesLogout"))
        .unwrap()
        + 1;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            ":{line}:21: refresh tokens may survive logout but none are issued\n    hint: set refreshToken.allowOfflineAccess: true, or remove survivesLogout"
        )),
        "{out}"
    );
}

/// RP-Initiated Logout without a hint (issue 15): `client_id` and a registered
/// `post_logout_redirect_uri` get the confirmation page; confirming signs out, ends the
/// session's tokens and returns to the RP with its `state`; afterwards `prompt=none` answers
/// `login_required` instead of a code.
#[tokio::test]
async fn end_session_without_a_hint_confirms_ends_the_grants_and_returns_to_the_rp() {
    let keys = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&yaml(&es256_key(&keys), "opaque", "", ""));
    let c = client();
    let (web, alice) = tokens(&gw, "web", None).await;
    let url = gw.url(
        "/oauth2/logout?client_id=web&post_logout_redirect_uri=https://rp.example.com/bye&state=s1",
    );
    let r = c.get(&url).header("cookie", &alice).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<strong>web</strong> asks to sign you out"),
        "{html}"
    );
    // not yet: the page alone ends nothing
    assert!(active(&gw, "web", &s(&web, "access_token")).await);
    let r = c
        .post(gw.url("/oauth2/logout"))
        .header("cookie", &alice)
        .form(&[
            ("csrf", hidden(&html, "csrf")),
            ("client_id", hidden(&html, "client_id")),
            (
                "post_logout_redirect_uri",
                hidden(&html, "post_logout_redirect_uri"),
            ),
            ("state", hidden(&html, "state")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "https://rp.example.com/bye?state=s1"
    );
    assert!(!active(&gw, "web", &s(&web, "access_token")).await);
    assert!(!active(&gw, "web", &s(&web, "refresh_token")).await);
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", "web"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "openid"),
            ("prompt", "none"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    let r = c
        .get(gw.url(&format!("/oauth2/authorize?{q}")))
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let back = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(
        back.get("error").map(String::as_str),
        Some("login_required")
    );
    assert!(!back.contains_key("code"));
}

/// An RP's back-channel logout endpoint: records every request body (in order) and answers
/// each with the next status of `statuses` (200 once they are used up).
struct Receiver {
    port: u16,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    async fn start(statuses: Vec<u16>) -> Receiver {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let statuses = std::sync::Arc::new(std::sync::Mutex::new(statuses));
        let (seen, next) = (bodies.clone(), statuses.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (seen, next) = (seen.clone(), next.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // headers, then the body by Content-Length
                    let (head, len) = loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_string();
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            buf.drain(..end + 4);
                            break (head, len);
                        }
                    };
                    while buf.len() < len {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = String::from_utf8_lossy(&buf[..len]).to_string();
                    seen.lock().unwrap().push((head, body));
                    let status = {
                        let mut s = next.lock().unwrap();
                        if s.is_empty() {
                            200
                        } else {
                            s.remove(0)
                        }
                    };
                    let _ = sock
                        .write_all(
                            format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .as_bytes(),
                        )
                        .await;
                });
            }
        });
        Receiver { port, bodies }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn count(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    /// Waits until `n` requests came (10 s at most); returns them (head, body).
    async fn wait_for(&self, n: usize) -> Vec<(String, String)> {
        for _ in 0..200 {
            if self.bodies.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.bodies.lock().unwrap().clone()
    }
}

/// The verified claims of a logout token (signature by the provider's JWKS, `typ`
/// `logout+jwt`, `iss`, `aud` = `client_id`).
async fn verify_logout_token(gw: &Gateway, token: &str, client_id: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = client()
        .get(gw.url("/oauth2/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_issuer(&["http://localhost:1234"]);
    v.set_audience(&[client_id]);
    v.set_required_spec_claims(&["iss", "aud", "exp", "iat"]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .unwrap()
    .claims
}

fn id_claims(tokens: &Value) -> Value {
    let id = s(tokens, "id_token");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// `yaml` with back-channel logout URIs for `web` and `keeper`, and metrics.
fn backchannel_yaml(key: &std::path::Path, web: &str, keeper: &str) -> String {
    yaml(key, "jwt", "telemetry: { metrics: { location: /metrics } }", "")
        .replace(
            "    clientID: web\n",
            &format!("    clientID: web\n    backchannelLogoutURI: \"{web}\"\n    backchannelLogoutSessionRequired: true\n"),
        )
        .replace(
            "    clientID: keeper\n",
            &format!("    clientID: keeper\n    backchannelLogoutURI: \"{keeper}\"\n"),
        )
}

async fn metric(gw: &Gateway, line_start: &str) -> Option<String> {
    let text = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .map(str::to_string)
}

/// Back-channel logout (OpenID Connect Back-Channel Logout 1.0): a sign-out tells every
/// client that got a code in the session, with a logout token signed by the provider's key
/// (`typ: logout+jwt`, the event, `sid` of the ID tokens, each client's `sub`, no `nonce`),
/// POSTed as a form; discovery says so.
#[tokio::test]
async fn backchannel_logout_tells_every_rp_of_the_session() {
    let rp = Receiver::start(vec![]).await;
    let keys = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&backchannel_yaml(
        &es256_key(&keys),
        &rp.url("/web/bc"),
        &rp.url("/keeper/bc"),
    ));
    let doc: Value = client()
        .get(gw.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["backchannel_logout_supported"], true);
    assert_eq!(doc["backchannel_logout_session_supported"], true);
    let (web, alice) = tokens(&gw, "web", None).await;
    let (keeper, _) = tokens(&gw, "keeper", Some(&alice)).await;
    // another session of alice's: not told
    let (_other, _) = tokens(&gw, "web", None).await;
    assert_eq!(rp.count(), 0, "told before any sign-out");
    assert_eq!(logout(&gw, "/.tessera/logout", &alice).await.status(), 200);
    let got = rp.wait_for(2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    for (client_id, tokens) in [("web", &web), ("keeper", &keeper)] {
        let (head, body) = got
            .iter()
            .find(|(h, _)| h.starts_with(&format!("POST /{client_id}/bc HTTP/1.1")))
            .unwrap_or_else(|| panic!("{client_id} not told: {got:?}"));
        assert!(head
            .to_ascii_lowercase()
            .contains("content-type: application/x-www-form-urlencoded"));
        let token = body.strip_prefix("logout_token=").unwrap();
        let claims = verify_logout_token(&gw, token, client_id).await;
        let id = id_claims(tokens);
        assert_eq!(claims["sid"], id["sid"], "{claims}");
        assert_eq!(claims["sub"], id["sub"]);
        assert_eq!(
            claims["events"],
            serde_json::json!({"http://schemas.openid.net/event/backchannel-logout": {}})
        );
        assert!(claims.get("nonce").is_none());
        assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            120
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rp.count(), 2, "only the ended session's RPs");
    assert_eq!(
        metric(
            &gw,
            "tessera_logout_notices_total{client=\"web\",channel=\"back\",result=\"delivered\"}"
        )
        .await
        .as_deref(),
        Some(
            "tessera_logout_notices_total{client=\"web\",channel=\"back\",result=\"delivered\"} 1"
        )
    );
}

/// An RP that fails is retried with a pause that doubles (a 5xx, then success); one that
/// refuses (4xx) is not retried; one that cannot be reached is given up after 5 tries,
/// counted and logged once. The user's sign-out never waits for any of them.
#[tokio::test]
async fn backchannel_logout_retries_is_bounded_and_never_blocks_the_user() {
    let flaky = Receiver::start(vec![503, 502]).await;
    let refusing = Receiver::start(vec![400]).await;
    let keys = tempfile::tempdir().unwrap();
    let gw = Gateway::start_with(
        &backchannel_yaml(&es256_key(&keys), &flaky.url("/bc"), &refusing.url("/bc")),
        &[("TESSERA_BACKCHANNEL_RETRY_MS", "100")],
    );
    let (_, alice) = tokens(&gw, "web", None).await;
    tokens(&gw, "keeper", Some(&alice)).await;
    assert_eq!(logout(&gw, "/.tessera/logout", &alice).await.status(), 200);
    assert_eq!(flaky.wait_for(3).await.len(), 3);
    assert_eq!(refusing.wait_for(1).await.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(flaky.count(), 3, "delivered at the third try");
    assert_eq!(refusing.count(), 1, "a refusal is final");
    let delivered =
        "tessera_logout_notices_total{client=\"web\",channel=\"back\",result=\"delivered\"}";
    assert_eq!(metric(&gw, delivered).await, Some(format!("{delivered} 1")));
    let refused =
        "tessera_logout_notices_total{client=\"keeper\",channel=\"back\",result=\"refused\"}";
    assert_eq!(metric(&gw, refused).await, Some(format!("{refused} 1")));
    gw.wait_log("back-channel logout refused by the app");

    // unreachable: a port nobody listens on, and a listener that never answers
    let [closed] = free_ports::<1>();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = Gateway::start_with(
        &backchannel_yaml(
            &es256_key(&keys),
            &format!("http://127.0.0.1:{closed}/bc"),
            &format!("http://{}/bc", silent.local_addr().unwrap()),
        ),
        &[("TESSERA_BACKCHANNEL_RETRY_MS", "50")],
    );
    let (_, alice) = tokens(&gw, "web", None).await;
    tokens(&gw, "keeper", Some(&alice)).await;
    let started = std::time::Instant::now();
    assert_eq!(logout(&gw, "/.tessera/logout", &alice).await.status(), 200);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let failed = "tessera_logout_notices_total{client=\"web\",channel=\"back\",result=\"failed\"}";
    for _ in 0..100 {
        if metric(&gw, failed).await.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&gw, failed).await, Some(format!("{failed} 1")));
    let line = gw.wait_log("back-channel logout failed after 5 tries");
    assert!(line.contains("\"name\":\"web\""), "{line}");
    assert_eq!(gw.count_logs("back-channel logout failed after 5 tries"), 1);
    drop(silent);
}

/// Back-channel settings are checked at load, each error at its position.
#[test]
fn backchannel_configuration_errors_are_positioned() {
    let keys = tempfile::tempdir().unwrap();
    let base = yaml(&es256_key(&keys), "jwt", "", "");
    for (line, col, expected) in [
        (
            "    backchannelLogoutURI: \"ftp://rp.example.com/bc\"\n",
            5,
            "`ftp://rp.example.com/bc` must be an http or https URL",
        ),
        (
            "    backchannelLogoutURI: \"https://rp.example.com/bc#x\"\n",
            5,
            "`https://rp.example.com/bc#x` must not have a fragment",
        ),
        (
            "    backchannelLogoutURI: \"http://rp.example.com/bc\"\n",
            5,
            "`http://rp.example.com/bc` uses http on a non-loopback host: use https",
        ),
        (
            "    backchannelLogoutSessionRequired: true\n",
            5,
            "the session is required for back-channel logout, which is not configured\n    hint: set backchannelLogoutURI, or remove this",
        ),
        (
            "    frontchannelLogoutURI: \"rp.example.com/fc\"\n",
            5,
            "`rp.example.com/fc` must be an http or https URL",
        ),
        (
            "    frontchannelLogoutSessionRequired: true\n",
            5,
            "the session is required for front-channel logout, which is not configured\n    hint: set frontchannelLogoutURI, or remove this",
        ),
    ] {
        let config = base.replace("    clientID: web\n", &format!("    clientID: web\n{line}"));
        let (code, out) = validate_with(&config, &[]);
        let at = config.lines().position(|l| l == line.trim_end()).unwrap() + 1;
        assert_eq!(code, 2, "{out}");
        assert!(out.contains(&format!(":{at}:{col}: {expected}\n")), "{out}");
    }
}

/// Front-channel logout (OpenID Connect Front-Channel Logout 1.0): the signed-out page loads
/// the `frontchannelLogoutURI` of every app that got a code in the session (with `iss` and
/// `sid` when asked), in hidden iframes its CSP allows exactly; after the provider's
/// end-session it then goes on to the RP. Discovery says so.
#[tokio::test]
async fn frontchannel_logout_loads_the_apps_pages() {
    let keys = tempfile::tempdir().unwrap();
    let config = yaml(&es256_key(&keys), "jwt", "", "")
        .replace(
            "    clientID: web\n",
            "    clientID: web\n    frontchannelLogoutURI: \"https://rp.example.com/fc?x=1\"\n    frontchannelLogoutSessionRequired: true\n",
        )
        .replace(
            "    clientID: keeper\n",
            "    clientID: keeper\n    frontchannelLogoutURI: \"https://keeper.example.com:8443/fc\"\n",
        );
    let gw = Gateway::start(&config);
    let c = client();
    let doc: Value = c
        .get(gw.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["frontchannel_logout_supported"], true);
    assert_eq!(doc["frontchannel_logout_session_supported"], true);

    // the gateway's sign-out
    let (web, alice) = tokens(&gw, "web", None).await;
    tokens(&gw, "keeper", Some(&alice)).await;
    let sid = s(&id_claims(&web), "sid");
    let r = logout(&gw, "/.tessera/logout", &alice).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'; frame-src https://keeper.example.com:8443 https://rp.example.com; frame-ancestors 'none'"
    );
    assert!(full_set_cookie(&r, "tessera_session")
        .unwrap()
        .contains("Max-Age=0"));
    let html = r.text().await.unwrap();
    assert!(html.contains(&format!(
        "<iframe hidden src=\"https://rp.example.com/fc?x=1&amp;iss=http%3A%2F%2Flocalhost%3A1234&amp;sid={sid}\"></iframe>"
    )), "{html}");
    assert!(
        html.contains("<iframe hidden src=\"https://keeper.example.com:8443/fc\"></iframe>"),
        "{html}"
    );
    assert_eq!(html.matches("<iframe").count(), 2);
    assert!(!active(&gw, "web", &s(&web, "access_token")).await);

    // the provider's end-session with a hint and a redirect: the page, then the RP
    let (web, alice) = tokens(&gw, "web", None).await;
    let r = c
        .get(gw.url(&format!(
            "/oauth2/logout?id_token_hint={}&post_logout_redirect_uri=https://rp.example.com/bye&state=s2",
            s(&web, "id_token")
        )))
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-src https://rp.example.com;"));
    let html = r.text().await.unwrap();
    assert_eq!(
        html.matches("<iframe").count(),
        1,
        "only web got a code: {html}"
    );
    assert!(html.contains(
        "<meta http-equiv=\"refresh\" content=\"2;url=https://rp.example.com/bye?state=s2\"><a class=\"button\" href=\"https://rp.example.com/bye?state=s2\">Continue</a>"
    ), "{html}");
    assert!(!active(&gw, "web", &s(&web, "access_token")).await);

    // a session no front-channel app got a code in (a proxy app's sign-in only): the plain
    // signed-out page, with the usual CSP
    let (portal, _) = login(&gw, "/portal", "local", "alice", "pw").await;
    let r = logout(&gw, "/.tessera/logout", &portal).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    );
    assert!(!r.text().await.unwrap().contains("<iframe"));
}

/// `logout.upstreamURL`: after a confirmed sign-out at the proxy app's logout location, the
/// gateway calls the app's own logout URL (GET, in the background) with the browser's
/// cookies for the app, never the gateway's; not for an unconfirmed or forged sign-out. An
/// app that cannot be reached never delays the user, and is counted and logged.
#[tokio::test]
async fn an_apps_own_logout_url_is_called_after_its_sign_out() {
    let app = Receiver::start(vec![]).await;
    let keys = tempfile::tempdir().unwrap();
    let with_logout = |url: &str| {
        yaml(&es256_key(&keys), "jwt", "telemetry: { metrics: { location: /metrics } }", "")
            .replace(
                "    upstream: http://127.0.0.1:9\n",
                &format!("    upstream: http://127.0.0.1:9\n    logout: {{ location: /portal/logout, redirectURL: /bye, upstreamURL: \"{url}\" }}\n"),
            )
    };
    let gw = Gateway::start(&with_logout(&app.url("/app/logout?all=1")));
    let c = client();
    let (session, _) = login(&gw, "/portal", "local", "alice", "pw").await;
    let cookies = format!("app_sid=abc; {session}; tessera_login=zzz; theme=dark");
    let page = c
        .get(gw.url("/portal/logout"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csrf = hidden(&page.text().await.unwrap(), "csrf");
    let forged = c
        .post(gw.url("/portal/logout"))
        .header("cookie", &cookies)
        .form(&[("csrf", "AAAA")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        app.count(),
        0,
        "nothing is called before the sign-out is confirmed"
    );
    let r = c
        .post(gw.url("/portal/logout"))
        .header("cookie", &cookies)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/bye");
    let got = app.wait_for(1).await;
    assert_eq!(got.len(), 1);
    let head = got[0].0.to_ascii_lowercase();
    assert!(head.starts_with("get /app/logout?all=1 http/1.1"), "{head}");
    assert!(
        head.contains("\r\ncookie: app_sid=abc; theme=dark"),
        "{head}"
    );
    assert!(!head.contains("tessera_"), "{head}");
    let delivered =
        "tessera_logout_notices_total{client=\"portal\",channel=\"upstream\",result=\"delivered\"}";
    assert_eq!(metric(&gw, delivered).await, Some(format!("{delivered} 1")));

    // unreachable: the sign-out is not delayed; counted and logged
    let [closed] = free_ports::<1>();
    let gw = Gateway::start(&with_logout(&format!("http://127.0.0.1:{closed}/logout")));
    let (session, _) = login(&gw, "/portal", "local", "alice", "pw").await;
    let started = std::time::Instant::now();
    let r = logout(&gw, "/portal/logout", &session).await;
    assert_eq!(r.status(), 303);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let line = gw.wait_log("the app's logout URL could not be called");
    assert!(line.contains("\"name\":\"portal\""), "{line}");
    let failed =
        "tessera_logout_notices_total{client=\"portal\",channel=\"upstream\",result=\"failed\"}";
    assert_eq!(metric(&gw, failed).await, Some(format!("{failed} 1")));
}

/// A `logout.upstreamURL` that is not an absolute http(s) URL is refused at its position.
#[test]
fn an_apps_logout_url_must_be_absolute() {
    let keys = tempfile::tempdir().unwrap();
    let config = yaml(&es256_key(&keys), "jwt", "", "").replace(
        "    upstream: http://127.0.0.1:9\n",
        "    upstream: http://127.0.0.1:9\n    logout:\n      location: /portal/logout\n      upstreamURL: /logout\n",
    );
    let (code, out) = validate_with(&config, &[]);
    let line = config
        .lines()
        .position(|l| l.contains("upstreamURL"))
        .unwrap()
        + 1;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            ":{line}:7: `/logout` must be an absolute http or https URL\n"
        )),
        "{out}"
    );
}

/// A session that ends by itself (here: its idle timeout, in the store's TTL, with no request
/// to notice it) ends the grants issued in it like a sign-out; `survivesLogout` refresh
/// tokens and client tokens live on.
#[tokio::test]
async fn an_expired_session_ends_its_grants() {
    let keys = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&yaml(
        &es256_key(&keys),
        "jwt",
        "session: { idleTimeoutSeconds: 2 }",
        "",
    ));
    let (web, alice) = tokens(&gw, "web", None).await;
    let (keeper, _) = tokens(&gw, "keeper", Some(&alice)).await;
    let (at, rt) = (s(&web, "access_token"), s(&web, "refresh_token"));
    let (status, svc) = token(&gw, "svc", &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{svc}");
    assert!(active(&gw, "web", &at).await);
    assert!(active(&gw, "web", &rt).await);

    // Idle past the timeout: nothing ran, the store dropped the session.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;

    assert!(
        !active(&gw, "web", &at).await,
        "access token of an expired session"
    );
    assert!(
        !active(&gw, "web", &rt).await,
        "refresh token of an expired session"
    );
    assert_eq!(userinfo_status(&gw, &at).await, 401);
    let (status, body) = refresh(&gw, "web", &rt).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error_description"],
        "the session the refresh token was issued in has ended"
    );
    let (status, body) = refresh(&gw, "keeper", &s(&keeper, "refresh_token")).await;
    assert_eq!(status, 200, "survivesLogout outlives expiry too: {body}");
    assert!(active(&gw, "svc", &s(&svc, "access_token")).await);
}
