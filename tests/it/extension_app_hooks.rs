//! Extension hooks of OIDC apps (`loadAttrsSE`, `authorization.isAuthorizedSE`) and of
//! sessions (`session.lifetime`), through the real gateway, with the C test guests
//! `proxy-hooks` and `session-lifetime` (extensions/test-guests/README.md).

use std::collections::HashMap;
use std::time::Duration;

use crate::extensions::{guest, jwt_payload};
use crate::support::*;

const SECRET: &str = "s3cret-s3cret-s3cret";
const REDIRECT: &str = "https://rp.example.com/cb";
const ISSUER: &str = "http://localhost:1234";

/// A provider whose app `rp` (client `webapp`) loads attributes and asks IsAuthorized of
/// `proxy-hooks` (extension `ext`): alice is in `admins` (allowed), bob is not (denied unless
/// he sends `x-allow: yes`). `portal` is a proxy app to sign in at.
fn oidc_hooks_config(keys: &tempfile::TempDir) -> String {
    let file = guest("proxy-hooks");
    let hash = pw_hash();
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
    users:
      - {{ username: alice, passwordHash: "{hash}", attributes: {{ groups: [admins] }} }}
      - {{ username: bob, passwordHash: "{hash}", attributes: {{ groups: [staff] }} }}
serviceExtensions:
  - name: ext
    file: "{file}"
    limits: {{ timeoutMillis: 2000, memoryMiB: 32 }}
oidcProvider:
  issuer: {ISSUER}
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: portal
    type: proxy
    routePatterns: ["/portal"]
    upstream: http://127.0.0.1:9
    policies: [{{ location: /, authentication: {{ idps: [local] }}, authorization: {{ allowAll: true }} }}]
  - name: rp
    type: oidc
    clientID: webapp
    clientSecret: {SECRET}
    redirectURLs: ["{REDIRECT}"]
    authentication: {{ idps: [local] }}
    claimsMapping: {{ tier: ext.tier, seen_path: ext.path }}
    loadAttrsSE: {{ funcName: LoadAttributes, extension: ext }}
    authorization:
      isAuthorizedSE: {{ funcName: IsAuthorized, extension: ext }}
"#,
        key = es256_key(keys).display()
    )
}

fn authorize_url(gw: &Gateway) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("state", "st-42"),
        ])
        .finish();
    gw.url(&format!("/oauth2/authorize?{q}"))
}

/// GET /authorize as the signed-in `cookie` with `headers`; the redirect's query parameters.
async fn authorize(
    gw: &Gateway,
    cookie: &str,
    headers: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut req = client().get(authorize_url(gw)).header("cookie", cookie);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `:N:`, N the (1-based) line of `yaml` that contains `needle`: the position an error names.
fn line_of(yaml: &str, needle: &str) -> String {
    let n = yaml
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no `{needle}` in {yaml}"));
    format!(":{}:", n + 1)
}

fn assert_refused(q: &HashMap<String, String>, error: &str) {
    assert_eq!(q.get("error").map(String::as_str), Some(error), "{q:?}");
    assert_eq!(q.get("state").map(String::as_str), Some("st-42"), "{q:?}");
    assert_eq!(q.get("iss").map(String::as_str), Some(ISSUER), "{q:?}");
    assert!(!q.contains_key("code"), "{q:?}");
}

async fn id_token_claims(gw: &Gateway, code: &str) -> serde_json::Value {
    let r = client()
        .post(gw.url("/oauth2/token"))
        .basic_auth("webapp", Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    jwt_payload(body["id_token"].as_str().unwrap())
}

/// An allowed user's ID token carries the claims mapped from LoadAttributes; IsAuthorized's
/// false is `access_denied` to the app (with `state` and `iss`); a failed call of either hook
/// is `server_error`; no code in any refusal.
#[tokio::test]
async fn oidc_app_loads_attributes_into_claims_and_is_authorized_fails_closed() {
    let keys = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&oidc_hooks_config(&keys));
    let (alice, _) = login(&gw, "/portal", "local", "alice", "pw").await;
    let (bob, _) = login(&gw, "/portal", "local", "bob", "pw").await;

    // alice (admins): a code; the ID token has the claims LoadAttributes fed.
    let q = authorize(&gw, &alice, &[]).await;
    assert_eq!(q.get("state").map(String::as_str), Some("st-42"));
    let claims = id_token_claims(&gw, &q["code"]).await;
    assert_eq!(claims["tier"], "gold", "{claims}");
    assert_eq!(claims["seen_path"], "/oauth2/authorize", "{claims}");

    // bob (not in admins): IsAuthorized says no.
    let q = authorize(&gw, &bob, &[]).await;
    assert_refused(&q, "access_denied");
    // The same bob, allowed by the hook (header x-allow: yes): the hook decides.
    let q = authorize(&gw, &bob, &[("x-allow", "yes")]).await;
    assert!(q.contains_key("code"), "{q:?}");

    // IsAuthorized traps: server_error, even for alice.
    let q = authorize(&gw, &alice, &[("x-trap", "1")]).await;
    assert_refused(&q, "server_error");
    // LoadAttributes returns an attribute outside its namespace (an invalid result):
    // server_error, and nothing of its answer is merged.
    let q = authorize(&gw, &bob, &[("x-load", "local.groups"), ("x-allow", "yes")]).await;
    assert_refused(&q, "server_error");
    let q = authorize(&gw, &bob, &[]).await;
    assert_refused(&q, "access_denied");

    let logs = gw.logs();
    assert!(
        logs.contains("\"hook\":\"IsAuthorized\"") && logs.contains("\"outcome\":\"trap\""),
        "{logs}"
    );
    assert!(
        logs.contains("\"hook\":\"LoadAttributes\"") && logs.contains("\"outcome\":\"invalid\""),
        "{logs}"
    );
}

#[test]
fn oidc_app_hook_positions_are_validated() {
    let keys = tempfile::tempdir().unwrap();
    let good = oidc_hooks_config(&keys);
    let (code, out) = validate_with(&good, &[]);
    assert_eq!(code, 0, "{out}");

    let authz_line = line_of(&good, "isAuthorizedSE:");
    let load_line = line_of(&good, "loadAttrsSE:");
    // The position calls IsAuthorized, not LoadAttributes.
    let bad = good.replace(
        "isAuthorizedSE: { funcName: IsAuthorized",
        "isAuthorizedSE: { funcName: LoadAttributes",
    );
    let (code, out) = validate_with(&bad, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&authz_line)
            && out.contains("this position calls the IsAuthorized hook, not LoadAttributes"),
        "{out}"
    );
    // No declarative rules on OIDC apps: an unknown key, named.
    let bad = good.replace(
        "      isAuthorizedSE: { funcName: IsAuthorized, extension: ext }",
        "      rules: { attribute: local.groups, contains: admins }",
    );
    let (code, out) = validate_with(&bad, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(&authz_line) && out.contains("rules"), "{out}");
    // Not cached on OIDC apps.
    let bad = good.replace(
        "loadAttrsSE: { funcName: LoadAttributes, extension: ext }",
        "loadAttrsSE: { funcName: LoadAttributes, extension: ext, cacheSeconds: 30 }",
    );
    let (code, out) = validate_with(&bad, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&load_line)
            && out.contains("cacheSeconds applies to hooks of proxy apps, not of OIDC apps"),
        "{out}"
    );
    // A component without the hook.
    let bad = good.replace(
        "loadAttrsSE: { funcName: LoadAttributes, extension: ext }",
        &format!(
            "loadAttrsSE: {{ funcName: LoadAttributes, file: \"{}\" }}",
            guest("trap")
        ),
    );
    let (code, out) = validate_with(&bad, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&load_line) && out.contains("does not export the LoadAttributes hook"),
        "{out}"
    );
}

/// A proxy app behind `session.lifetime` hooks (`session-lifetime`: the lifetime is the
/// user's `lifetime` attribute, the idle timeout their `idle` attribute, 3600 when absent).
fn lifetime_config(up: std::net::SocketAddr, hooks: &str) -> String {
    let hash = pw_hash();
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
session:
  maxLifetimeSeconds: 600
  idleTimeoutSeconds: 300
  lifetime:
{hooks}
connectors:
  - name: local
    type: local
    users:
      - {{ username: short, passwordHash: "{hash}", attributes: {{ lifetime: "4" }} }}
      - {{ username: dozy, passwordHash: "{hash}", attributes: {{ idle: "4" }} }}
      - {{ username: greedy, passwordHash: "{hash}", attributes: {{ lifetime: "99999999", idle: "99999999" }} }}
      - {{ username: plain, passwordHash: "{hash}" }}
      - {{ username: trapper, passwordHash: "{hash}", attributes: {{ lifetime: "trap" }} }}
      - {{ username: zero, passwordHash: "{hash}", attributes: {{ idle: "0" }} }}
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{up}
    policies: [{{ location: /, authentication: {{ idps: [local] }}, authorization: {{ allowAll: true }} }}]
"#
    )
}

fn lifetime_hooks() -> String {
    let file = guest("session-lifetime");
    format!(
        "    evalMaxLifetimeSE: {{ funcName: EvalMaxLifetime, file: \"{file}\" }}\n    evalIdleTimeoutSE: {{ funcName: EvalIdleTimeout, file: \"{file}\" }}"
    )
}

async fn status_with(gw: &Gateway, cookie: &str) -> (u16, String) {
    let r = client()
        .get(gw.url("/page"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let loc = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), loc)
}

/// The session cookie's Max-Age: the session's lifetime.
fn max_age(r: &reqwest::Response) -> u64 {
    let full = full_set_cookie(r, "tessera_session").expect("session cookie");
    let v = full
        .split(';')
        .find_map(|p| p.trim().strip_prefix("Max-Age="))
        .unwrap_or_else(|| panic!("no Max-Age in {full}"));
    v.parse().unwrap()
}

/// A lifetime hook ends a session: a 4 s lifetime (or idle timeout) from the guest, and the
/// next request after it asks to sign in; others keep theirs. A guest's answer never goes
/// past the configured maxima; a failed call (trap, 0 seconds) refuses the login.
#[tokio::test]
async fn lifetime_hooks_end_sessions_and_fail_closed() {
    let up = upstream().await;
    let gw = Gateway::start(&lifetime_config(up, &lifetime_hooks()));

    let r = login_response(&gw, "/page", "local", "greedy", "pw").await;
    assert_eq!(r.status(), 303);
    assert_eq!(max_age(&r), 600, "capped at session.maxLifetimeSeconds");
    let greedy = set_cookie(&r, "tessera_session").unwrap();
    let r = login_response(&gw, "/page", "local", "plain", "pw").await;
    assert_eq!(max_age(&r), 600);
    let plain = set_cookie(&r, "tessera_session").unwrap();
    // The short-lived ones last (a login takes a while on a loaded machine).
    let r = login_response(&gw, "/page", "local", "short", "pw").await;
    assert_eq!(r.status(), 303);
    assert_eq!(max_age(&r), 4);
    let short = set_cookie(&r, "tessera_session").unwrap();
    assert_eq!(status_with(&gw, &short).await.0, 200);
    let (dozy, _) = login(&gw, "/page", "local", "dozy", "pw").await;
    assert_eq!(status_with(&gw, &dozy).await.0, 200);
    tokio::time::sleep(Duration::from_millis(5100)).await;
    // Past the guest's 4 s: sign in again.
    let (status, loc) = status_with(&gw, &short).await;
    assert_eq!(status, 302);
    assert!(loc.starts_with("/.tessera/login?flow="), "{loc}");
    // Unused for 5 s with a 4 s idle timeout: sign in again.
    let (status, loc) = status_with(&gw, &dozy).await;
    assert_eq!(status, 302);
    assert!(loc.starts_with("/.tessera/login?flow="), "{loc}");
    // The guest asked for far more than configured (600 s / 300 s idle): still alive, and
    // the cap held (Max-Age above); no hook answer makes a session outlive the configuration.
    assert_eq!(status_with(&gw, &greedy).await.0, 200);
    assert_eq!(status_with(&gw, &plain).await.0, 200);

    // A failed call refuses the login: 500, no session cookie.
    for user in ["trapper", "zero"] {
        let r = login_response(&gw, "/page", "local", user, "pw").await;
        assert_eq!(r.status(), 500, "{user}");
        assert!(set_cookie(&r, "tessera_session").is_none(), "{user}");
    }
    // Each failure's log line, waited for: the reader of the gateway's output may lag the
    // answer.
    let trap = gw.wait_log("\"outcome\":\"trap\"");
    assert!(trap.contains("\"hook\":\"EvalMaxLifetime\""), "{trap}");
    let zero = gw.wait_log("returned 0 seconds (a session must live at least 1 s)");
    assert!(zero.contains("\"hook\":\"EvalIdleTimeout\""), "{zero}");
}

#[test]
fn lifetime_hook_positions_are_validated() {
    let up: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let file = guest("session-lifetime");
    let (code, out) = validate_with(&lifetime_config(up, &lifetime_hooks()), &[]);
    assert_eq!(code, 0, "{out}");

    let case = |hook: &str| lifetime_config(up, &format!("    {hook}"));
    // The line of the hook under `session.lifetime`.
    let line = line_of(&case("evalX"), "evalX");
    let (code, out) = validate_with(
        &case(&format!(
            "evalMaxLifetimeSE: {{ funcName: EvalIdleTimeout, file: \"{file}\" }}"
        )),
        &[],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&line)
            && out.contains("this position calls the EvalMaxLifetime hook, not EvalIdleTimeout"),
        "{out}"
    );
    let (code, out) = validate_with(
        &case(&format!(
            "evalIdleTimeoutSE: {{ funcName: EvalIdleTimeout, file: \"{file}\", cacheSeconds: 60 }}"
        )),
        &[],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&line) && out.contains("the answer of EvalIdleTimeout cannot be cached"),
        "{out}"
    );
    let (code, out) = validate_with(
        &case(&format!(
            "evalIdleTimeoutSE: {{ funcName: EvalIdleTimeout, file: \"{}\" }}",
            guest("proxy-hooks")
        )),
        &[],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&line) && out.contains("does not export the EvalIdleTimeout hook"),
        "{out}"
    );
    let (code, out) = validate_with(&case("evalLifetimeSE: { funcName: EvalMaxLifetime }"), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&line) && out.contains("evalLifetimeSE"),
        "{out}"
    );
}
