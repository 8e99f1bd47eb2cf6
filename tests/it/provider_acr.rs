//! `acr`/`amr` in the provider's ID tokens and `acr_values` / essential `acr` at the
//! authorization endpoint (OIDC Core §2, §3.1.2.1, §5.5.1.1; RFC 8176), driven as a relying
//! party and a browser would drive them. The upstream-IdP case (an `amr` from a real
//! oidc-provider login) is in `tests/e2e/acr.test.mjs`.

use std::collections::HashMap;

use crate::support::*;
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

const SECRET: &str = "s3cret-s3cret-s3cret";
const REDIRECT: &str = "https://rp.example.com/cb";
const BASIC: &str = "urn:example:basic";
const MFA: &str = "urn:example:mfa";

struct Op {
    gw: Gateway,
    _keys: tempfile::TempDir,
}

/// Two local stores with the same user: `basic` (acr `urn:example:basic`, default amr) and
/// `strong` (acr `urn:example:mfa`, amr `[pwd, otp]`), and `plain` with no settings. Client
/// `rp` signs in with `[plain, basic, strong]` (a picker without steering).
fn yaml(keys: &tempfile::TempDir) -> String {
    let hash = pw_hash();
    let user = format!(r#"users: [{{ username: alice, passwordHash: "{hash}" }}]"#);
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - {{ name: plain, type: local, {user} }}
  - {{ name: basic, type: local, acr: "{BASIC}", {user} }}
  - {{ name: strong, type: local, acr: "{MFA}", amr: [pwd, otp], {user} }}
oidcProvider:
  issuer: http://localhost:1234
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: rp
    type: oidc
    clientID: rp
    clientSecret: {SECRET}
    redirectURLs: ["{REDIRECT}"]
    grantTypes: [authorization_code, refresh_token, password]
    refreshToken: {{ allowOfflineAccess: true }}
    authentication: {{ idps: [plain, basic, strong] }}
  - name: strongpw
    type: oidc
    clientID: strongpw
    clientSecret: {SECRET}
    redirectURLs: ["{REDIRECT}"]
    grantTypes: [password]
    authentication: {{ idps: [strong] }}
"#,
        key = es256_key(keys).display()
    )
}

fn start() -> Op {
    let keys = tempfile::tempdir().unwrap();
    Op {
        gw: Gateway::start(&yaml(&keys)),
        _keys: keys,
    }
}

/// An authorization request of `rp` with `extra` parameters (state `st`, PKCE): the
/// request's URL and the code verifier.
fn authorize_url(op: &Op, extra: &[(&str, &str)]) -> (String, String) {
    let verifier = tessera::session::random_token(32);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut params = vec![
        ("client_id", "rp"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "openid offline_access"),
        ("state", "st"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.extend_from_slice(extra);
    let q = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    (op.gw.url(&format!("/oauth2/authorize?{q}")), verifier)
}

/// Where the authorization endpoint sent the browser.
enum Answer {
    /// To the client (its redirect URI's query).
    Client(HashMap<String, String>),
    /// To sign in: the login page's status and HTML, and the flow cookie.
    Login(u16, String, String),
}

async fn authorize(url: &str, session: Option<&str>) -> Answer {
    let c = client();
    let mut req = c.get(url);
    if let Some(s) = session {
        req = req.header("cookie", s);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    if loc.starts_with(REDIRECT) {
        return Answer::Client(query_of(&loc));
    }
    assert!(loc.starts_with("/.tessera/login?flow="), "{loc}");
    let flow_cookie = set_cookie(&r, "tessera_login").unwrap();
    let host = url.split("/oauth2/").next().unwrap();
    let page = c
        .get(format!("{host}{loc}"))
        .header("cookie", &flow_cookie)
        .send()
        .await
        .unwrap();
    let status = page.status().as_u16();
    Answer::Login(status, page.text().await.unwrap(), flow_cookie)
}

/// Signs alice in on the form `html` with `idp` (in the browser's `session`, if any),
/// follows the resume: the client's query and the session cookie.
async fn sign_in(
    op: &Op,
    html: &str,
    flow_cookie: &str,
    idp: &str,
    session: Option<&str>,
) -> (HashMap<String, String>, String) {
    let c = client();
    let cookies = match session {
        Some(s) => format!("{flow_cookie}; {s}"),
        None => flow_cookie.to_string(),
    };
    let r = c
        .post(op.gw.url("/.tessera/login"))
        .header("cookie", cookies)
        .form(&[
            ("flow", hidden(html, "flow").as_str()),
            ("csrf", hidden(html, "csrf").as_str()),
            ("idp", idp),
            ("username", "alice"),
            ("password", "pw"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = set_cookie(&r, "tessera_session").unwrap();
    let back = r.headers()["location"].to_str().unwrap().to_string();
    let r = c
        .get(op.gw.url(&back))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    (query_of(loc), cookie)
}

async fn token(op: &Op, client_id: &str, form: &[(&str, &str)]) -> Value {
    let r = client()
        .post(op.gw.url("/oauth2/token"))
        .basic_auth(client_id, Some(SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Redeems the code in `q` (state `st` checked): the token response.
async fn redeem(op: &Op, q: &HashMap<String, String>, verifier: &str) -> Value {
    assert_eq!(q["state"], "st");
    assert_eq!(q["iss"], "http://localhost:1234");
    token(
        op,
        "rp",
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// Redeems the code in `q` and returns the ID token's claims.
async fn id_token(op: &Op, q: &HashMap<String, String>, verifier: &str) -> Value {
    jwt_payload(redeem(op, q, verifier).await["id_token"].as_str().unwrap())
}

/// The connector whose sign-in form `html` is.
fn login_form_for(html: &str) -> String {
    hidden(html, "idp")
}

#[tokio::test]
async fn acr_values_steer_to_the_connector_that_achieves_them() {
    let op = start();
    // Without acr_values: the picker of the three.
    let (url, _) = authorize_url(&op, &[]);
    let Answer::Login(200, html, _) = authorize(&url, None).await else {
        panic!("expected the login page")
    };
    for idp in ["plain", "basic", "strong"] {
        assert!(html.contains(&format!("idp={idp}")), "{html}");
    }
    // The most preferred value a connector offers wins: straight to `strong`'s form.
    let (url, verifier) = authorize_url(
        &op,
        &[("acr_values", &format!("urn:example:none {MFA} {BASIC}"))],
    );
    let Answer::Login(200, html, flow) = authorize(&url, None).await else {
        panic!("expected the login page")
    };
    assert_eq!(login_form_for(&html), "strong");
    let (q, session) = sign_in(&op, &html, &flow, "strong", None).await;
    let body = redeem(&op, &q, &verifier).await;
    let id = jwt_payload(body["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], MFA);
    assert_eq!(id["amr"], json!(["pwd", "otp"]));
    assert!(id["auth_time"].as_u64().is_some());

    // Refresh keeps what the login achieved.
    let refreshed = token(
        &op,
        "rp",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", body["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    let again = jwt_payload(refreshed["id_token"].as_str().unwrap());
    assert_eq!((&again["acr"], &again["amr"]), (&id["acr"], &id["amr"]));
    assert_eq!(again["auth_time"], id["auth_time"]);

    // The session's `strong` login is reused for the same request: a code at once.
    let (url, verifier) = authorize_url(&op, &[("acr_values", MFA)]);
    let Answer::Client(q) = authorize(&url, Some(&session)).await else {
        panic!("expected a code without signing in again")
    };
    let id = id_token(&op, &q, &verifier).await;
    assert_eq!(id["acr"], MFA);

    // A value only `basic` achieves sends the signed-in user to `basic`'s form; after it,
    // the session has both logins and each request gets the one it asks for.
    let (url, verifier) = authorize_url(&op, &[("acr_values", BASIC)]);
    let Answer::Login(200, html, flow) = authorize(&url, Some(&session)).await else {
        panic!("expected the login page")
    };
    assert_eq!(login_form_for(&html), "basic");
    let (q, session) = sign_in(&op, &html, &flow, "basic", Some(&session)).await;
    let id = id_token(&op, &q, &verifier).await;
    assert_eq!(
        (id["acr"].as_str(), &id["amr"]),
        (Some(BASIC), &json!(["pwd"]))
    );
    for wanted in [MFA, BASIC] {
        let (url, verifier) = authorize_url(&op, &[("acr_values", wanted)]);
        let Answer::Client(q) = authorize(&url, Some(&session)).await else {
            panic!("expected a code for {wanted}")
        };
        let id = id_token(&op, &q, &verifier).await;
        assert_eq!(id["acr"], wanted);
    }
}

#[tokio::test]
async fn an_unmet_voluntary_acr_signs_in_and_reports_what_was_achieved() {
    let op = start();
    // No connector offers it: the usual picker, no steering.
    let (url, verifier) = authorize_url(&op, &[("acr_values", "urn:example:gold")]);
    let Answer::Login(200, html, flow) = authorize(&url, None).await else {
        panic!("expected the login page")
    };
    assert!(
        html.contains("idp=plain") && html.contains("idp=strong"),
        "{html}"
    );
    // The picker's link to `plain`, then its form.
    let flow_id = html
        .split("flow=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let form = client()
        .get(
            op.gw
                .url(&format!("/.tessera/login?flow={flow_id}&idp=plain")),
        )
        .header("cookie", &flow)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (q, session) = sign_in(&op, &form, &flow, "plain", None).await;
    let id = id_token(&op, &q, &verifier).await;
    // `plain` states no acr: none is reported (never invented); a password store's amr.
    assert_eq!(id.get("acr"), None, "{id}");
    assert_eq!(id["amr"], json!(["pwd"]));

    // Signed in at `plain`, a voluntary value another connector offers is still asked for
    // with prompt=none: the session is used as it is, no login_required.
    let (url, verifier) = authorize_url(&op, &[("acr_values", MFA), ("prompt", "none")]);
    let Answer::Client(q) = authorize(&url, Some(&session)).await else {
        panic!("expected a code")
    };
    let id = id_token(&op, &q, &verifier).await;
    assert_eq!(id.get("acr"), None, "{id}");
}

#[tokio::test]
async fn an_essential_acr_is_achieved_or_refused() {
    let op = start();
    let essential = |values: &[&str]| {
        json!({"id_token": {"acr": {"essential": true, "values": values}}}).to_string()
    };
    // Nothing achieves it: refused before any login, with state and iss, and no code.
    let (url, _) = authorize_url(&op, &[("claims", &essential(&["urn:example:gold"]))]);
    let Answer::Client(q) = authorize(&url, None).await else {
        panic!("expected an error redirect")
    };
    assert_eq!(q["error"], "access_denied");
    assert_eq!(
        q["error_description"],
        "the requested essential acr was not achieved"
    );
    assert_eq!(
        (q["state"].as_str(), q["iss"].as_str()),
        ("st", "http://localhost:1234")
    );
    assert!(!q.contains_key("code"));
    // acr_values do not widen an essential request.
    let (url, _) = authorize_url(
        &op,
        &[
            ("claims", &essential(&["urn:example:gold"])),
            ("acr_values", MFA),
        ],
    );
    let Answer::Client(q) = authorize(&url, None).await else {
        panic!("expected an error redirect")
    };
    assert_eq!(q["error"], "access_denied");

    // Achievable at `strong`: steered there (the `value` form), then a code with it.
    let one = json!({"id_token": {"acr": {"essential": true, "value": MFA}}}).to_string();
    let (url, verifier) = authorize_url(&op, &[("claims", &one)]);
    let Answer::Login(200, html, flow) = authorize(&url, None).await else {
        panic!("expected the login page")
    };
    assert_eq!(login_form_for(&html), "strong");
    let (q, _) = sign_in(&op, &html, &flow, "strong", None).await;
    let id = id_token(&op, &q, &verifier).await;
    assert_eq!(id["acr"], MFA);

    // Signed in at `basic` only: prompt=none cannot steer, so login_required; without it
    // the user is sent to `strong`. With the session's own acr essential: a code at once.
    let (url, _) = authorize_url(&op, &[("acr_values", BASIC)]);
    let Answer::Login(200, html, flow) = authorize(&url, None).await else {
        panic!("expected the login page")
    };
    let (_, session) = sign_in(&op, &html, &flow, "basic", None).await;
    let (url, _) = authorize_url(&op, &[("claims", &essential(&[MFA])), ("prompt", "none")]);
    let Answer::Client(q) = authorize(&url, Some(&session)).await else {
        panic!("expected an error redirect")
    };
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str()),
        ("login_required", "st")
    );
    let (url, _) = authorize_url(&op, &[("claims", &essential(&[MFA]))]);
    let Answer::Login(200, html, _) = authorize(&url, Some(&session)).await else {
        panic!("expected the login page")
    };
    assert_eq!(login_form_for(&html), "strong");
    let (url, verifier) = authorize_url(&op, &[("claims", &essential(&[MFA, BASIC]))]);
    let Answer::Client(q) = authorize(&url, Some(&session)).await else {
        panic!("expected a code")
    };
    let id = id_token(&op, &q, &verifier).await;
    assert_eq!(id["acr"], BASIC);
}

#[tokio::test]
async fn malformed_acr_requests_are_invalid_request() {
    let op = start();
    for (claims, description) in [
        (
            json!({"id_token": {"acr": MFA}}),
            "claims: id_token.acr must be null or an object",
        ),
        (
            json!({"id_token": {"acr": {"essential": "true"}}}),
            "claims: id_token.acr.essential must be true or false",
        ),
        (
            json!({"id_token": {"acr": {"value": ["x"]}}}),
            "claims: id_token.acr.value must be a string",
        ),
        (
            json!({"id_token": {"acr": {"values": MFA}}}),
            "claims: id_token.acr.values must be a non-empty array of strings",
        ),
        (
            json!({"id_token": {"acr": {"essential": true, "values": []}}}),
            "claims: id_token.acr.values must be a non-empty array of strings",
        ),
        (
            json!({"id_token": {"acr": {"value": MFA, "values": [MFA]}}}),
            "claims: id_token.acr has both value and values",
        ),
    ] {
        let (url, _) = authorize_url(&op, &[("claims", &claims.to_string())]);
        let Answer::Client(q) = authorize(&url, None).await else {
            panic!("expected an error redirect for {claims}")
        };
        assert_eq!(q["error"], "invalid_request", "{claims}");
        assert_eq!(q["error_description"], description, "{claims}");
        assert_eq!(
            (q["state"].as_str(), q["iss"].as_str()),
            ("st", "http://localhost:1234")
        );
        assert!(!q.contains_key("code"));
    }
}

#[tokio::test]
async fn the_password_grant_reports_its_connectors_acr_and_amr() {
    let op = start();
    for (client_id, acr, amr) in [
        ("strongpw", Some(MFA), json!(["pwd", "otp"])),
        ("rp", None, json!(["pwd"])),
    ] {
        let body = token(
            &op,
            client_id,
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "pw"),
                ("scope", "openid"),
            ],
        )
        .await;
        let id = jwt_payload(body["id_token"].as_str().unwrap());
        assert_eq!(
            id.get("acr").and_then(Value::as_str),
            acr,
            "{client_id}: {id}"
        );
        assert_eq!(id["amr"], amr, "{client_id}");
    }
}

async fn discovery(gw: &Gateway) -> Value {
    get_json(gw, "/.well-known/openid-configuration").await
}

#[tokio::test]
async fn discovery_advertises_acr_only_when_a_connector_achieves_one() {
    let op = start();
    let doc = discovery(&op.gw).await;
    assert_eq!(doc["acr_values_supported"], json!([BASIC, MFA]));
    let claims = doc["claims_supported"].as_array().unwrap();
    assert!(
        claims.contains(&json!("acr")) && claims.contains(&json!("amr")),
        "{doc}"
    );

    // Local stores without `acr`: amr (pwd) can be issued, acr cannot.
    let keys = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&local_provider_config(&keys, "c", "", ""));
    let doc = discovery(&gw).await;
    assert_eq!(doc.get("acr_values_supported"), None, "{doc}");
    let claims = doc["claims_supported"].as_array().unwrap();
    assert!(!claims.contains(&json!("acr")), "{doc}");
    assert!(claims.contains(&json!("amr")), "{doc}");

    // `amr: []`: nothing to report, so not advertised either.
    let keys = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&local_provider_config(&keys, "c", "    amr: []", ""));
    let doc = discovery(&gw).await;
    assert!(
        !doc["claims_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("amr")),
        "{doc}"
    );
}

#[test]
fn bad_acr_and_amr_settings_are_configuration_errors() {
    let keys = tempfile::tempdir().unwrap();
    for (setting, needle, col, expected) in [
        (
            "    acr: \"urn:a b\"",
            "acr:",
            5,
            "`acr` `urn:a b` is not a valid value",
        ),
        ("    acr: \"\"", "acr:", 5, "`acr` must not be empty"),
        (
            "    amr: [pwd, \"o t p\"]",
            "amr:",
            16,
            "`amr` value `o t p` is not a valid value",
        ),
        (
            "    amr: [pwd, otp, pwd]",
            "amr:",
            21,
            "`amr` value `pwd` is repeated",
        ),
        (
            "    amr: [\"\"]",
            "amr:",
            11,
            "`amr` values must not be empty",
        ),
    ] {
        let yaml = local_provider_config(&keys, "c", setting, "");
        let (code, out) = validate_with(&yaml, &[]);
        let line = yaml.lines().position(|l| l.contains(needle)).unwrap() + 1;
        assert_eq!(code, 2, "{out}");
        assert!(
            out.contains(&format!(":{line}:{col}: {expected}")),
            "{setting}\n---\n{out}"
        );
    }
}
