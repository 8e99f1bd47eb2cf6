//! Consent (`consent: required`) and the connected apps page, driven as a browser and a
//! relying party would drive them: every bad form gets its exact refusal.

use std::collections::HashMap;

use crate::support::*;
use serde_json::Value;

const SECRET: &str = "s3cret-s3cret-s3cret";
const REDIRECT: &str = "https://rp.example.com/cb";
const EXPIRED: &str = "This consent request has expired or was already answered. Go back to the application and start again.";
const NOT_YOURS: &str = "This consent form was not issued to you for this request. Go back to the application and start again.";

struct Op {
    gw: Gateway,
    _keys: tempfile::TempDir,
}

/// Users alice and bob; `asks` (consent required, refresh tokens) and `trusted` (default).
fn provider() -> Op {
    let keys = tempfile::tempdir().unwrap();
    let yaml = provider_yaml(&es256_key(&keys), None);
    Op {
        gw: Gateway::start(&yaml),
        _keys: keys,
    }
}

/// The configuration of `provider`; with `redis`, sessions and the provider's state are
/// kept there (replicas).
fn provider_yaml(key: &std::path::Path, redis: Option<&str>) -> String {
    let (shared, cache) = match redis {
        Some(addr) => (
            format!(
                "session: {{ store: shared }}\ncaches:\n  - {{ name: shared, type: redis, redis: {{ addresses: [\"{addr}\"], timeoutMillis: 500 }} }}\n"
            ),
            "  cache: shared\n",
        ),
        None => (String::new(), ""),
    };
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
{shared}connectors:
  - name: local
    type: local
    users:
      - username: alice
        passwordHash: "{hash}"
        attributes: {{ email: alice@example.com, given_name: Alice }}
      - username: bob
        passwordHash: "{hash}"
        attributes: {{ email: bob@example.com }}
oidcProvider:
  issuer: http://localhost:1234
{cache}  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: Reports
    type: oidc
    clientID: asks
    clientSecret: {SECRET}
    redirectURLs: ["{REDIRECT}"]
    grantTypes: [authorization_code, refresh_token]
    refreshToken: {{ allowOfflineAccess: true }}
    accessToken: {{ type: opaque }}
    consent: required
    authentication: {{ idps: [local] }}
  - name: trusted
    type: oidc
    clientID: trusted
    clientSecret: {SECRET}
    redirectURLs: ["{REDIRECT}"]
    authentication: {{ idps: [local] }}
"#,
        hash = pw_hash(),
        key = key.display()
    )
}

fn authorize_path(client_id: &str, scope: &str, extra: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.extend_pairs([
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", scope),
        ("state", "st-1"),
    ]);
    q.extend_pairs(extra.iter().copied());
    format!("/oauth2/authorize?{}", q.finish())
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Signs `user` in through an authorization request of `client_id`; returns the session
/// cookie and the answer of the resumed request (a consent page or a redirect).
async fn sign_in(op: &Op, user: &str, client_id: &str, scope: &str) -> (String, reqwest::Response) {
    let (cookie, back) = login(
        &op.gw,
        &authorize_path(client_id, scope, &[]),
        "local",
        user,
        "pw",
    )
    .await;
    assert!(back.starts_with("/oauth2/authorize/resume?id="), "{back}");
    let r = get(op, &back, &cookie).await;
    (cookie, r)
}

/// A form that must be refused: whose session posts it, its fields, the status and what
/// the page says.
type BadForm<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

async fn get(op: &Op, path: &str, cookie: &str) -> reqwest::Response {
    let mut req = client().get(op.gw.url(path));
    if !cookie.is_empty() {
        req = req.header("cookie", cookie);
    }
    req.send().await.unwrap()
}

async fn post(op: &Op, path: &str, cookie: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().post(op.gw.url(path)).form(form);
    if !cookie.is_empty() {
        req = req.header("cookie", cookie);
    }
    req.send().await.unwrap()
}

/// The consent page's hidden fields (`request`, `csrf`) and its HTML.
async fn consent_page(r: reqwest::Response) -> (String, String, String) {
    assert_eq!(r.status(), 200, "expected the consent page");
    let html = r.text().await.unwrap();
    assert!(html.contains("<h1>Allow access?</h1>"), "{html}");
    (hidden(&html, "request"), hidden(&html, "csrf"), html)
}

async fn decide(
    op: &Op,
    cookie: &str,
    request: &str,
    csrf: &str,
    decision: &str,
) -> reqwest::Response {
    post(
        op,
        "/oauth2/authorize/consent",
        cookie,
        &[("request", request), ("csrf", csrf), ("decision", decision)],
    )
    .await
}

/// A refusal page: its status and that it says `message`.
async fn assert_page(r: reqwest::Response, status: u16, message: &str) {
    assert_eq!(r.status(), status);
    let html = r.text().await.unwrap();
    assert!(html.contains(message), "expected {message:?} in {html}");
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

/// The code of a redirect to the client (with `state` and `iss`).
fn code_of(r: &reqwest::Response) -> String {
    assert_eq!(r.status(), 302);
    let loc = location(r);
    assert!(loc.starts_with(REDIRECT), "{loc}");
    let q = query_of(&loc);
    assert_eq!(q.get("state").map(String::as_str), Some("st-1"));
    assert_eq!(
        q.get("iss").map(String::as_str),
        Some("http://localhost:1234")
    );
    q.get("code")
        .unwrap_or_else(|| panic!("no code in {loc}"))
        .clone()
}

async fn token(op: &Op, form: &[(&str, &str)]) -> (u16, Value) {
    let r = client()
        .post(op.gw.url("/oauth2/token"))
        .basic_auth("asks", Some(SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn redeem(op: &Op, code: &str) -> (u16, Value) {
    token(
        op,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await
}

#[tokio::test]
async fn consent_is_asked_remembered_and_asked_again_for_new_scopes() {
    let op = provider();
    let (cookie, r) = sign_in(&op, "alice", "asks", "openid email").await;
    let (request, csrf, html) = consent_page(r).await;
    assert!(html.contains("<strong id=\"consent-app\">Reports</strong> asks to:"));
    assert!(html.contains("Know who you are"));
    assert!(html.contains("See your email address"));
    assert!(html.contains("It will receive: <span class=\"consent-claims\">Email address</span>"));
    let r = decide(&op, &cookie, &request, &csrf, "allow").await;
    let code = code_of(&r);
    let (status, body) = redeem(&op, &code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "openid email");

    // Remembered: the same or fewer scopes go straight back to the client.
    let r = get(&op, &authorize_path("asks", "openid", &[]), &cookie).await;
    code_of(&r);
    // A new scope asks again, for it alone.
    let r = get(
        &op,
        &authorize_path("asks", "openid email profile", &[]),
        &cookie,
    )
    .await;
    let (request, csrf, html) = consent_page(r).await;
    assert!(
        html.contains("<ul class=\"consent-new\"><li data-scope=\"profile\">"),
        "{html}"
    );
    assert!(
        html.contains("<ul class=\"consent-allowed\"><li data-scope=\"openid\">"),
        "{html}"
    );
    code_of(&decide(&op, &cookie, &request, &csrf, "allow").await);
    // prompt=consent asks again although everything was allowed.
    let r = get(
        &op,
        &authorize_path("asks", "openid", &[("prompt", "consent")]),
        &cookie,
    )
    .await;
    let (request, csrf, _) = consent_page(r).await;
    code_of(&decide(&op, &cookie, &request, &csrf, "allow").await);
}

#[tokio::test]
async fn deny_answers_access_denied_to_the_client() {
    let op = provider();
    let (cookie, r) = sign_in(&op, "alice", "asks", "openid").await;
    let (request, csrf, _) = consent_page(r).await;
    let r = decide(&op, &cookie, &request, &csrf, "deny").await;
    assert_eq!(r.status(), 302);
    let q = query_of(&location(&r));
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["error_description"], "the user denied the request");
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], "http://localhost:1234");
    assert!(!q.contains_key("code"));
    // Nothing was remembered.
    let r = get(&op, &authorize_path("asks", "openid", &[]), &cookie).await;
    consent_page(r).await;
}

#[tokio::test]
async fn consent_forms_are_bound_to_the_session_and_the_request() {
    let op = provider();
    let (alice, r) = sign_in(&op, "alice", "asks", "openid").await;
    let (request_a, csrf_a, _) = consent_page(r).await;
    let r = get(&op, &authorize_path("asks", "openid email", &[]), &alice).await;
    let (request_b, csrf_b, _) = consent_page(r).await;
    assert_ne!(csrf_a, csrf_b);
    let (bob, r) = sign_in(&op, "bob", "asks", "openid").await;
    let (_, csrf_bob, _) = consent_page(r).await;

    let path = "/oauth2/authorize/consent";
    let (ra, rb, ca, cb) = (
        request_a.as_str(),
        request_b.as_str(),
        csrf_a.as_str(),
        csrf_b.as_str(),
    );
    let allow = ("decision", "allow");
    let bad_forms: Vec<BadForm> = vec![
        // No token, a wrong one, the token of another request, of another session.
        (&alice, vec![("request", ra), allow], 403, NOT_YOURS),
        (
            &alice,
            vec![("request", ra), ("csrf", "forged"), allow],
            403,
            NOT_YOURS,
        ),
        (
            &alice,
            vec![("request", ra), ("csrf", cb), allow],
            403,
            NOT_YOURS,
        ),
        (
            &alice,
            vec![("request", rb), ("csrf", ca), allow],
            403,
            NOT_YOURS,
        ),
        (
            &bob,
            vec![("request", ra), ("csrf", ca), allow],
            403,
            NOT_YOURS,
        ),
        (
            &bob,
            vec![("request", ra), ("csrf", &csrf_bob), allow],
            403,
            NOT_YOURS,
        ),
        // No session, no request, an unknown one, no decision, an unknown one.
        (
            "",
            vec![("request", ra), ("csrf", ca), allow],
            401,
            "Sign in first, then repeat this request.",
        ),
        (&alice, vec![("csrf", ca), allow], 400, EXPIRED),
        (
            &alice,
            vec![("request", "unknown"), ("csrf", ca), allow],
            400,
            EXPIRED,
        ),
        (
            &alice,
            vec![("request", ra), ("csrf", ca)],
            400,
            "Choose Allow or Deny.",
        ),
        (
            &alice,
            vec![("request", ra), ("csrf", ca), ("decision", "maybe")],
            400,
            "Choose Allow or Deny.",
        ),
    ];
    for (cookie, form, status, message) in &bad_forms {
        assert_page(post(&op, path, cookie, form).await, *status, message).await;
    }
    assert_page(
        get(&op, path, &alice).await,
        405,
        "This address takes the form of its page only.",
    )
    .await;
    // None of these decided anything: the right form still works, once.
    code_of(&decide(&op, &alice, ra, ca, "allow").await);
    for decision in ["allow", "deny"] {
        assert_page(decide(&op, &alice, ra, ca, decision).await, 400, EXPIRED).await;
    }
}

#[tokio::test]
async fn prompt_none_without_consent_is_consent_required() {
    let op = provider();
    // Signed in through the trusted app: no consent for `asks` yet.
    let (cookie, r) = sign_in(&op, "alice", "trusted", "openid").await;
    code_of(&r);
    let r = get(
        &op,
        &authorize_path("asks", "openid", &[("prompt", "none")]),
        &cookie,
    )
    .await;
    assert_eq!(r.status(), 302);
    let q = query_of(&location(&r));
    assert_eq!(q["error"], "consent_required");
    assert_eq!(
        q["error_description"],
        "the user has not allowed this application these scopes"
    );
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], "http://localhost:1234");
    // Once allowed, prompt=none goes through; for a new scope it is consent_required again.
    let r = get(&op, &authorize_path("asks", "openid", &[]), &cookie).await;
    let (request, csrf, _) = consent_page(r).await;
    code_of(&decide(&op, &cookie, &request, &csrf, "allow").await);
    code_of(
        &get(
            &op,
            &authorize_path("asks", "openid", &[("prompt", "none")]),
            &cookie,
        )
        .await,
    );
    let r = get(
        &op,
        &authorize_path("asks", "openid email", &[("prompt", "none")]),
        &cookie,
    )
    .await;
    assert_eq!(query_of(&location(&r))["error"], "consent_required");
}

#[tokio::test]
async fn a_trusted_client_never_shows_the_page() {
    let op = provider();
    let (cookie, r) = sign_in(&op, "alice", "trusted", "openid email").await;
    code_of(&r);
    let r = get(
        &op,
        &authorize_path("trusted", "openid profile", &[("prompt", "consent")]),
        &cookie,
    )
    .await;
    code_of(&r);
    assert_eq!(
        prompt_values(&op.gw).await,
        serde_json::json!(["none", "login", "consent"])
    );
    // Without a client that asks, `consent` is not advertised.
    let keys = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&local_provider_config(&keys, "only", "", ""));
    assert_eq!(
        prompt_values(&gw).await,
        serde_json::json!(["none", "login"])
    );
}

async fn prompt_values(gw: &Gateway) -> Value {
    let doc: Value = client()
        .get(gw.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    doc["prompt_values_supported"].clone()
}

#[tokio::test]
async fn one_users_consent_is_not_anothers() {
    let op = provider();
    let (alice, r) = sign_in(&op, "alice", "asks", "openid").await;
    let (request, csrf, _) = consent_page(r).await;
    code_of(&decide(&op, &alice, &request, &csrf, "allow").await);
    let (bob, r) = sign_in(&op, "bob", "asks", "openid").await;
    consent_page(r).await;
    let r = get(
        &op,
        &authorize_path("asks", "openid", &[("prompt", "none")]),
        &bob,
    )
    .await;
    assert_eq!(query_of(&location(&r))["error"], "consent_required");
    // Bob's connected apps list nothing.
    let html = get(&op, "/connected-apps", &bob)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("You have not allowed any app to use your account."),
        "{html}"
    );
}

async fn connected_apps(op: &Op, cookie: &str) -> (String, String) {
    let r = get(op, "/connected-apps", cookie).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let csrf = if html.contains("name=\"csrf\"") {
        hidden(&html, "csrf")
    } else {
        String::new()
    };
    (html, csrf)
}

#[tokio::test]
async fn revoking_at_connected_apps_ends_the_apps_tokens() {
    let op = provider();
    let (alice, r) = sign_in(&op, "alice", "asks", "openid offline_access").await;
    let (request, csrf, html) = consent_page(r).await;
    assert!(html.contains("Keep access while you are not using it"));
    code_of(&decide(&op, &alice, &request, &csrf, "allow").await);
    // Tokens issued under the consent, and a code not redeemed yet.
    let code = code_of(
        &get(
            &op,
            &authorize_path("asks", "openid offline_access", &[]),
            &alice,
        )
        .await,
    );
    let (status, tokens) = redeem(
        &op,
        &code_of(
            &get(
                &op,
                &authorize_path("asks", "openid offline_access", &[]),
                &alice,
            )
            .await,
        ),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let access = tokens["access_token"].as_str().unwrap().to_string();

    let (html, alice_csrf) = connected_apps(&op, &alice).await;
    assert!(
        html.contains("<section class=\"connected-app\" data-client=\"asks\"><h2>Reports</h2>"),
        "{html}"
    );
    assert!(html.contains("data-scope=\"offline_access\""));

    // Anonymous: a GET signs in first (a POST is refused below).
    let r = get(&op, "/connected-apps", "").await;
    assert_eq!(r.status(), 302);
    assert!(location(&r).starts_with("/.tessera/login?flow="));
    let expired_form = "This form has expired. Reload the connected apps page and try again.";
    let not_connected = "This app is not connected to your account.";
    // Bob cannot revoke alice's app: his session knows only his own consents.
    let (bob, r) = sign_in(&op, "bob", "trusted", "openid").await;
    code_of(&r);
    let (_, no_form) = connected_apps(&op, &bob).await;
    assert!(no_form.is_empty(), "bob has no app, so no form");
    let bob_csrf = hidden(
        &get(&op, "/.tessera/logout", &bob)
            .await
            .text()
            .await
            .unwrap(),
        "csrf",
    );
    let (ac, bc) = (alice_csrf.as_str(), bob_csrf.as_str());
    let bad_forms: Vec<BadForm> = vec![
        (
            "",
            vec![("csrf", ac), ("client_id", "asks")],
            401,
            "Sign in first, then repeat this request.",
        ),
        (
            &bob,
            vec![("csrf", bc), ("client_id", "asks")],
            404,
            not_connected,
        ),
        (
            &bob,
            vec![("csrf", ac), ("client_id", "asks")],
            403,
            expired_form,
        ),
        (&alice, vec![("client_id", "asks")], 403, expired_form),
        (
            &alice,
            vec![("csrf", bc), ("client_id", "asks")],
            403,
            expired_form,
        ),
        (
            &alice,
            vec![("csrf", ac), ("client_id", "trusted")],
            404,
            not_connected,
        ),
        (
            &alice,
            vec![("csrf", ac), ("client_id", "nobody")],
            404,
            not_connected,
        ),
        (&alice, vec![("csrf", ac)], 404, not_connected),
    ];
    for (cookie, form, status, message) in &bad_forms {
        assert_page(
            post(&op, "/connected-apps", cookie, form).await,
            *status,
            message,
        )
        .await;
    }
    // Still alive after all that.
    let (status, body) = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let access2 = body["access_token"].as_str().unwrap().to_string();

    let r = post(
        &op,
        "/connected-apps",
        &alice,
        &[("csrf", &alice_csrf), ("client_id", "asks")],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/connected-apps");
    let (html, _) = connected_apps(&op, &alice).await;
    assert!(html.contains("You have not allowed any app to use your account."));

    let (status, body) = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["error_description"],
        "the user revoked the consent the refresh token was issued under"
    );
    let (status, body) = redeem(&op, &code).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["error_description"],
        "the user revoked the consent the code was issued under"
    );
    for at in [&access, &access2] {
        let r = client()
            .get(op.gw.url("/oauth2/userinfo"))
            .bearer_auth(at)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "an access token of the revoked consent");
    }
    // Revoking twice: nothing left to revoke.
    let r = post(
        &op,
        "/connected-apps",
        &alice,
        &[("csrf", &alice_csrf), ("client_id", "asks")],
    )
    .await;
    assert_page(r, 404, "This app is not connected to your account.").await;
    // The next sign-in asks again; the new consent does not revive the old tokens.
    let r = get(
        &op,
        &authorize_path("asks", "openid offline_access", &[]),
        &alice,
    )
    .await;
    let (request, csrf, _) = consent_page(r).await;
    code_of(&decide(&op, &alice, &request, &csrf, "allow").await);
    let (status, _) = token(
        &op,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, 400);
}

#[test]
fn an_unknown_consent_setting_is_positioned() {
    let keys = tempfile::tempdir().unwrap();
    let yaml = local_provider_config(&keys, "app", "", "    consent: sometimes");
    let (code, out) = validate_with(&yaml, &[]);
    assert_eq!(code, 2, "{out}");
    let line = yaml
        .lines()
        .position(|l| l.contains("consent: sometimes"))
        .unwrap()
        + 1;
    assert!(
        out.contains(&format!(
            "t.yaml:{line}:5: unknown consent setting `sometimes`\n    hint: use trusted or required\n"
        )),
        "{out}"
    );
}

#[tokio::test]
async fn replicas_sharing_redis_share_consents_and_revocations() {
    let redis = crate::support::redis::RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let yaml = provider_yaml(&es256_key(&keys), Some(&redis.address()));
    let a = Op {
        gw: Gateway::start(&yaml),
        _keys: keys,
    };
    let b = Op {
        gw: Gateway::start(&yaml),
        _keys: tempfile::tempdir().unwrap(),
    };
    let (alice, r) = sign_in(&a, "alice", "asks", "openid offline_access").await;
    let (request, csrf, _) = consent_page(r).await;
    // The page shown by A is answered at B.
    let (status, tokens) = redeem(
        &a,
        &code_of(&decide(&b, &alice, &request, &csrf, "allow").await),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    // Remembered for B too.
    code_of(
        &get(
            &b,
            &authorize_path("asks", "openid offline_access", &[]),
            &alice,
        )
        .await,
    );
    // Revoked at B: A refuses the refresh token and asks again.
    let (_, csrf) = connected_apps(&b, &alice).await;
    let r = post(
        &b,
        "/connected-apps",
        &alice,
        &[("csrf", &csrf), ("client_id", "asks")],
    )
    .await;
    assert_eq!(r.status(), 303);
    let (status, body) = token(
        &a,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    consent_page(get(&a, &authorize_path("asks", "openid", &[]), &alice).await).await;
}
