//! The LDAP connector against a real `slapd` (tests/it/support/slapd.rs): attributes for proxy
//! and OIDC apps (`attrProviders`), login by binding as the user, injection attempts, TLS
//! (ldaps and StartTLS with a configured CA), and failing closed when the directory is down.

use std::net::SocketAddr;

use crate::support::slapd::{Slapd, PEOPLE, SERVICE_DN, SERVICE_PASSWORD};
use crate::support::*;
use base64::Engine;
use serde_json::Value;

/// The service account's password reaches the config as a secret reference, like in production.
const SECRET_ENV: (&str, &str) = ("LDAP_PASSWORD", SERVICE_PASSWORD);

fn ldap_connector(name: &str, url: &str, extra: &str) -> String {
    format!(
        r#"  - name: {name}
    type: ldap
    url: {url}
    bindDN: "{SERVICE_DN}"
    bindPassword: <ldap.password>
    baseDN: "{PEOPLE}"
    searchFilter: "(&(objectClass=inetOrgPerson)(uid={{username}}))"
    attributes: [mail, givenName, sn, ou]
    timeoutMillis: 1000
    throttle: {{ maxFailures: 3, windowSeconds: 60 }}
{extra}"#
    )
}

/// Local users (password "pw"): alice and bob (also in the directory), zed (not in it), and
/// two whose names are LDAP filter injections. The app looks each up in LDAP by
/// `local.username`; `/dir` is for users signed in with LDAP itself.
fn config(up: SocketAddr, slapd: &Slapd) -> String {
    let hash = pw_hash();
    let ldap = ldap_connector("ldap", &slapd.url(), "");
    let by_mail =
        ldap_connector("bymail", &slapd.url(), "").replace("(uid={username})", "(mail={username})");
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
telemetry: {{ metrics: {{ location: /metrics }} }}
connectors:
  - name: local
    type: local
    users:
      - {{ username: alice, passwordHash: "{hash}" }}
      - {{ username: bob, passwordHash: "{hash}" }}
      - {{ username: zed, passwordHash: "{hash}" }}
      - {{ username: "*)(uid=*", passwordHash: "{hash}" }}
      - {{ username: "al*", passwordHash: "{hash}" }}
{ldap}{by_mail}apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{up}
    attrProviders:
      - {{ connector: ldap, usernameMapping: local.username }}
    headers:
      - {{ name: X-User, value: "{{{{ local.username }}}}" }}
      - {{ name: X-Mail, value: "{{{{ ldap.mail }}}}" }}
      - {{ name: X-Given, value: "{{{{ ldap.givenName }}}}" }}
      - {{ name: X-Groups, value: "{{{{ ldap.ou }}}}" }}
      - {{ name: X-DN, value: "{{{{ ldap.dn }}}}" }}
      - {{ name: X-Mail2, value: "{{{{ bymail.mail }}}}" }}
    policies:
      - location: /public
        authentication: {{ allowUnauthenticated: true }}
        authorization: {{ allowAll: true }}
      - location: /admin
        authentication: {{ idps: [local, ldap] }}
        authorization:
          rules: {{ attribute: ldap.ou, contains: admins }}
      - location: /dir
        authentication: {{ idps: [ldap] }}
        authorization: {{ allowAll: true }}
      - location: /bymail
        authentication: {{ idps: [bymail] }}
        authorization: {{ allowAll: true }}
      - location: /
        authentication: {{ idps: [local] }}
        authorization: {{ allowAll: true }}
"#
    )
}

async fn get(gw: &Gateway, path: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(gw.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// Posts the sign-in form for `idp` (the flow started at `path`); returns the response.
async fn submit_login(
    gw: &Gateway,
    path: &str,
    idp: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let s = start_login(gw, path).await;
    let c = client();
    let url = if s.login_url.contains("idp=") {
        s.login_url.clone()
    } else {
        format!("{}&idp={idp}", s.login_url)
    };
    let html = c
        .get(&url)
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    c.post(gw.url("/.tessera/login"))
        .header("cookie", &s.flow_cookie)
        .form(&[
            ("flow", hidden(&html, "flow").as_str()),
            ("csrf", hidden(&html, "csrf").as_str()),
            ("idp", idp),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn directory_attributes_reach_headers_and_rules() {
    let slapd = Slapd::start();
    let up = upstream().await;
    let gw = Gateway::start_with(&config(up, &slapd), &[SECRET_ENV]);

    let (alice, _) = login(&gw, "/", "local", "alice", "pw").await;
    let r = client()
        .get(gw.url("/hello"))
        .header("cookie", &alice)
        .header("x-mail", "forged@example.com")
        .header("x-groups", "admins")
        .send()
        .await
        .unwrap();
    let echo = Echo::from(r).await;
    assert_eq!(echo.one("x-user").as_deref(), Some("alice"));
    assert_eq!(
        echo.one("x-mail").as_deref(),
        Some("alice@example.com"),
        "client copy removed, LDAP value sent"
    );
    assert_eq!(echo.one("x-given").as_deref(), Some("Alice"));
    assert_eq!(
        echo.one("x-groups").as_deref(),
        Some("admins,staff"),
        "multi-valued: joined with ,"
    );
    // One value with commas: an RFC 9110 quoted-string, so it cannot be read as a list.
    assert_eq!(
        echo.one("x-dn").as_deref(),
        Some("\"uid=alice,ou=people,dc=example,dc=com\"")
    );
    assert_eq!(
        echo.one("x-mail2"),
        None,
        "only the app's providers are consulted"
    );
    assert_eq!(get(&gw, "/admin", &alice).await.status(), 200);

    let (bob, _) = login(&gw, "/", "local", "bob", "pw").await;
    let echo = Echo::from(get(&gw, "/x", &bob).await).await;
    assert_eq!(
        echo.one("x-groups").as_deref(),
        Some("staff"),
        "one value: a string"
    );
    assert_eq!(get(&gw, "/admin", &bob).await.status(), 403);

    // a user the directory does not know: signed in, but no directory attributes
    let (zed, _) = login(&gw, "/", "local", "zed", "pw").await;
    let echo = Echo::from(get(&gw, "/x", &zed).await).await;
    assert_eq!(echo.one("x-user").as_deref(), Some("zed"));
    assert_eq!(echo.one("x-mail"), None);
    assert_eq!(get(&gw, "/admin", &zed).await.status(), 403);

    // LDAP injection through the mapped username: escaped, so it matches nobody
    let (evil, _) = login(&gw, "/", "local", "*)(uid=*", "pw").await;
    let echo = Echo::from(get(&gw, "/x", &evil).await).await;
    assert_eq!(
        echo.one("x-mail"),
        None,
        "the injected filter matched someone"
    );
    assert_eq!(echo.one("x-groups"), None);
    assert_eq!(get(&gw, "/admin", &evil).await.status(), 403);
    // a wildcard that would match exactly one (privileged) entry if it were not escaped
    let (wild, _) = login(&gw, "/", "local", "al*", "pw").await;
    let echo = Echo::from(get(&gw, "/x", &wild).await).await;
    assert_eq!(echo.one("x-mail"), None, "`al*` was matched as a wildcard");
    assert_eq!(get(&gw, "/admin", &wild).await.status(), 403);

    // a second login as another user in the same browser never keeps the first one's
    // directory attributes
    let s = start_login(&gw, "/").await;
    let html = client()
        .get(format!("{}&idp=local", s.login_url))
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = client()
        .post(gw.url("/.tessera/login"))
        .header("cookie", format!("{}; {alice}", s.flow_cookie))
        .form(&[
            ("flow", hidden(&html, "flow")),
            ("csrf", hidden(&html, "csrf")),
            ("idp", "local".into()),
            ("username", "bob".into()),
            ("password", "pw".into()),
        ])
        .send()
        .await
        .unwrap();
    let bob_after_alice = set_cookie(&r, "tessera_session").unwrap();
    let echo = Echo::from(get(&gw, "/x", &bob_after_alice).await).await;
    assert_eq!(echo.one("x-user").as_deref(), Some("bob"));
    assert_eq!(echo.one("x-groups").as_deref(), Some("staff"));
    assert_eq!(get(&gw, "/admin", &bob_after_alice).await.status(), 403);
    assert!(
        !gw.logs().contains(SERVICE_PASSWORD),
        "the bind password never reaches the logs"
    );
}

#[tokio::test]
async fn login_with_ldap_binds_as_the_user() {
    let slapd = Slapd::start();
    let up = upstream().await;
    let gw = Gateway::start_with(&config(up, &slapd), &[SECRET_ENV]);

    let (cookie, back) = login(&gw, "/dir/page", "ldap", "alice", "wonderland").await;
    assert_eq!(back, "/dir/page");
    let echo = Echo::from(get(&gw, "/dir/page", &cookie).await).await;
    assert_eq!(echo.one("x-mail").as_deref(), Some("alice@example.com"));
    assert_eq!(echo.one("x-groups").as_deref(), Some("admins,staff"));
    assert_eq!(
        get(&gw, "/admin", &cookie).await.status(),
        200,
        "ldap is an idp of /admin"
    );

    // a name with a filter metacharacter is a legitimate username, matched literally
    let (star, _) = login(&gw, "/dir", "ldap", "st*r", "twinkle").await;
    let echo = Echo::from(get(&gw, "/dir", &star).await).await;
    assert_eq!(echo.one("x-mail").as_deref(), Some("star@example.com"));

    // wrong password, unknown user, wildcard and injection attempts: refused with 401
    for (user, password) in [
        ("alice", "wrong"),
        ("nobody", "wonderland"),
        ("st*", "twinkle"),
        ("ali*", "wonderland"),
        ("a*e", "wonderland"),
        ("*", "wonderland"),
        ("*)(uid=*", "wonderland"),
        ("alice)(|(uid=*", "wonderland"),
        ("*)(uid=*))(|(uid=*", "wonderland"),
        ("alice\\", "wonderland"),
    ] {
        let r = submit_login(&gw, "/dir", "ldap", user, password).await;
        assert_eq!(r.status(), 401, "{user:?} / {password:?}");
        assert!(set_cookie(&r, "tessera_session").is_none());
        let html = r.text().await.unwrap();
        assert!(
            html.contains("The username or password is not correct."),
            "{html}"
        );
    }
    // an empty password is never sent as an (anonymous) bind
    let r = submit_login(&gw, "/dir", "ldap", "alice", "").await;
    assert_eq!(r.status(), 400);
    assert!(set_cookie(&r, "tessera_session").is_none());

    // a filter that matches two entries refuses to pick one
    let r = submit_login(&gw, "/bymail", "bymail", "twins@example.com", "twin").await;
    assert_eq!(r.status(), 401, "ambiguous match");
    gw.wait_log("matched several entries");
    let r = submit_login(&gw, "/bymail", "bymail", "alice@example.com", "wonderland").await;
    assert_eq!(r.status(), 303);

    // the same throttling as local: 3 failures for bob, then 429 without checking (a fresh
    // gateway: the failures above count against this client's IP too)
    let gw2 = Gateway::start_with(&config(up, &slapd), &[SECRET_ENV]);
    for _ in 0..3 {
        assert_eq!(
            submit_login(&gw2, "/dir", "ldap", "bob", "nope")
                .await
                .status(),
            401
        );
    }
    let r = submit_login(&gw2, "/dir", "ldap", "bob", "builder").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"tessera_logins_total{idp="ldap",result="success"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"tessera_logins_total{idp="ldap",result="failure"}"#));
}

#[tokio::test]
async fn directory_down_fails_closed() {
    let mut slapd = Slapd::start();
    let up = upstream().await;
    let yaml = config(up, &slapd).replace(
        "http: { address: \"127.0.0.1:0\" }",
        "http: { address: \"127.0.0.1:0\", adminAddress: \"127.0.0.1:0\" }",
    );
    let gw = Gateway::start_with(&yaml, &[SECRET_ENV]);
    let r = client().get(gw.url("/status")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let (alice, _) = login(&gw, "/", "local", "alice", "pw").await;
    let echo = Echo::from(get(&gw, "/x", &alice).await).await;
    assert_eq!(echo.one("x-mail").as_deref(), Some("alice@example.com"));
    let (bob, _) = login(&gw, "/", "local", "bob", "pw").await; // not looked up yet

    slapd.stop();

    // cached in the session: no directory call, still served
    let echo = Echo::from(get(&gw, "/x", &alice).await).await;
    assert_eq!(echo.one("x-groups").as_deref(), Some("admins,staff"));
    // needs a lookup: 503, never a request without its attributes
    let r = get(&gw, "/x", &bob).await;
    assert_eq!(r.status(), 503);
    let html = r.text().await.unwrap();
    assert!(html.contains("The directory is not reachable"), "{html}");
    assert_eq!(get(&gw, "/admin", &bob).await.status(), 503);
    // sign-in with LDAP: 503 page, logged
    let r = submit_login(&gw, "/dir", "ldap", "alice", "wonderland").await;
    assert_eq!(r.status(), 503);
    assert!(set_cookie(&r, "tessera_session").is_none());
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("The directory is not reachable"));
    gw.wait_log("login failed: directory unavailable");
    // readiness reports it: down in public, with the directory's name on the admin listener
    let r = client().get(gw.url("/status")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), r#"{"status":"down"}"#);
    let r = client().get(gw.admin_url("/status")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "down");
    assert!(v["directories"]["ldap"].is_string(), "{v}");
    // local sign-in and public pages keep working
    assert_eq!(get(&gw, "/public", "").await.status(), 200);
}

#[tokio::test]
async fn ldaps_and_starttls_with_a_configured_ca() {
    let slapd = Slapd::start_tls();
    let tls = slapd.tls.as_ref().unwrap();
    let up = upstream().await;
    let hash = pw_hash();
    let ldaps_url = format!("ldaps://127.0.0.1:{}", tls.ldaps_port);
    let connectors = [
        ldap_connector("ldaps", &ldaps_url, "    tls: ldapCA\n"),
        ldap_connector(
            "starttls",
            &slapd.url(),
            "    startTLS: true\n    tls: ldapCA\n",
        ),
        // the server requires TLS (security tls=1): plain ldap:// must not get an answer
        ldap_connector("plain", &slapd.url(), ""),
        // without the CA the certificate is not trusted (public web PKI roots only)
        ldap_connector("untrusted", &ldaps_url, ""),
    ]
    .concat();
    let app = |name: &str| {
        format!(
            r#"  - name: {name}
    type: proxy
    routePatterns: ["/{name}"]
    upstream: http://{up}
    attrProviders: [{{ connector: {name}, usernameMapping: local.username }}]
    headers: [{{ name: X-Mail, value: "{{{{ {name}.mail }}}}" }}]
    policies: [{{ location: /, authentication: {{ idps: [local] }}, authorization: {{ allowAll: true }} }}]
"#
        )
    };
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0", adminAddress: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
tls:
  ldapCA: {{ caFile: "{ca}" }}
connectors:
  - name: local
    type: local
    users: [{{ username: alice, passwordHash: "{hash}" }}]
{connectors}apps:
{a}{b}{c}{d}"#,
        ca = tls.ca_file.display(),
        a = app("ldaps"),
        b = app("starttls"),
        c = app("plain"),
        d = app("untrusted"),
    );
    let gw = Gateway::start_with(&yaml, &[SECRET_ENV]);
    let (alice, _) = login(&gw, "/ldaps", "local", "alice", "pw").await;
    for name in ["ldaps", "starttls"] {
        let echo = Echo::from(get(&gw, &format!("/{name}/x"), &alice).await).await;
        assert_eq!(
            echo.one("x-mail").as_deref(),
            Some("alice@example.com"),
            "{name}"
        );
    }
    for name in ["plain", "untrusted"] {
        assert_eq!(
            get(&gw, &format!("/{name}/x"), &alice).await.status(),
            503,
            "{name}"
        );
    }
    let v: Value = client()
        .get(gw.admin_url("/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "down");
    let down = v["directories"].as_object().unwrap();
    let mut names: Vec<&str> = down.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["plain", "untrusted"], "{v}");
}

fn jwt_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn oidc_apps_get_directory_claims() {
    let slapd = Slapd::start();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("es256.pem");
    std::fs::write(
        &key,
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256).unwrap(),
    )
    .unwrap();
    let hash = pw_hash();
    let ldap = ldap_connector("ldap", &slapd.url(), "");
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
    users: [{{ username: alice, passwordHash: "{hash}" }}]
{ldap}oidcProvider:
  issuer: http://localhost:1234
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: portal
    type: proxy
    routePatterns: ["/portal"]
    upstream: http://127.0.0.1:9
    policies: [{{ location: /, authentication: {{ idps: [local] }}, authorization: {{ allowAll: true }} }}]
  - name: webapp
    type: oidc
    clientID: webapp
    clientSecret: s3cret-s3cret-s3cret
    redirectURLs: ["https://rp.example.com/cb"]
    grantTypes: [authorization_code, password]
    authentication: {{ idps: [local] }}
    attrProviders: [{{ connector: ldap, usernameMapping: local.username }}]
    claimsMapping: {{ email: ldap.mail, given_name: ldap.givenName, groups: ldap.ou }}
"#,
        key = key.display()
    );
    let gw = Gateway::start_with(&yaml, &[SECRET_ENV]);
    let expect = |claims: &Value| {
        assert_eq!(claims["email"], "alice@example.com", "{claims}");
        assert_eq!(claims["given_name"], "Alice");
        assert_eq!(
            claims["groups"],
            serde_json::json!(["admins", "staff"]),
            "a JSON array"
        );
    };
    // authorization code flow with an existing gateway session
    let (session, _) = login(&gw, "/portal", "local", "alice", "pw").await;
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", "webapp"),
            ("redirect_uri", "https://rp.example.com/cb"),
            ("scope", "openid email profile"),
            ("state", "st"),
        ])
        .finish();
    let r = get(&gw, &format!("/oauth2/authorize?{q}"), &session).await;
    assert_eq!(r.status(), 302);
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = loc
        .query_pairs()
        .find(|(k, _)| k == "code")
        .expect("a code")
        .1
        .to_string();
    let token: Value = client()
        .post(gw.url("/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://rp.example.com/cb"),
            ("client_id", "webapp"),
            ("client_secret", "s3cret-s3cret-s3cret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    expect(&jwt_payload(
        token["id_token"].as_str().expect("an id_token"),
    ));
    // password grant: the same claims, looked up without a session
    let token: Value = client()
        .post(gw.url("/oauth2/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "pw"),
            ("scope", "openid email profile"),
            ("client_id", "webapp"),
            ("client_secret", "s3cret-s3cret-s3cret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    expect(&jwt_payload(
        token["id_token"].as_str().expect("an id_token"),
    ));
}

fn validate(yaml: &str) -> (i32, String) {
    validate_with(yaml, &[("LDAP_PASSWORD", "x")])
}

#[test]
fn ldap_configuration_is_validated() {
    let hash = pw_hash();
    let base = |connector: &str, providers: &str| {
        format!(
            r#"version: 1
tls:
  ca: {{ caFile: /nonexistent/ca.pem }}
connectors:
  - {{ name: local, type: local, users: [{{ username: u, passwordHash: "{hash}" }}] }}
  - name: ldap
    type: ldap
{connector}apps:
  - name: a
    type: proxy
    routePatterns: ["/"]
    upstream: http://127.0.0.1:9
{providers}    policies: [{{ location: /, authentication: {{ idps: [local, ldap] }}, authorization: {{ allowAll: true }} }}]
"#
        )
    };
    let good = r#"    url: ldaps://ldap.example.com:636
    bindDN: cn=svc,dc=example,dc=com
    bindPassword: <ldap.password>
    baseDN: ou=people,dc=example,dc=com
    searchFilter: "(mail={username})"
    attributes: [mail, givenName, sn, memberOf]
"#;
    let providers = "    attrProviders: [{ connector: ldap, usernameMapping: local.username }]\n";
    let (code, out) = validate(&base(good, providers));
    assert_eq!(code, 0, "{out}");

    let bad = r#"    url: ldaps://ldap.example.com:636/ou=x?y
    startTLS: true
    tls: nope
    bindDN: svc
    bindPassword: <ldap.password>
    baseDN: ""
    searchFilter: "(mail=alice)"
    attributes: [mail, dn, "bad attr", Mail]
    timeoutMillis: 0
    poolSize: 0
"#;
    let providers_bad = "    attrProviders:\n      - { connector: local, usernameMapping: local.username }\n      - { connector: ldap, usernameMapping: ldap.mail }\n      - { connector: nope, usernameMapping: okta.email }\n";
    let (code, out) = validate(&base(bad, providers_bad));
    assert_eq!(code, 2, "{out}");
    for expected in [
        "the URL must be only scheme, host and port",
        "StartTLS is for ldap:// URLs",
        "unknown TLS profile `nope`",
        "`svc` is not a DN",
        "the DN is empty",
        "has no `{username}` placeholder",
        "`ldap.dn` is set by the connector itself",
        "`bad attr` is not an LDAP attribute name",
        "attribute `Mail` is listed twice",
        "`timeoutMillis` must be greater than 0",
        "`poolSize` must be greater than 0",
        "connector `local` cannot provide attributes",
        "would look `ldap` up by its own attribute",
        "unknown connector `nope`",
        "refers to unknown connector `okta`",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
    // plain ldap:// with a TLS profile; an unreadable CA file; a bad scheme
    let (code, out) = validate(&base(
        &good
            .replace("ldaps://ldap.example.com:636", "ldap://ldap.example.com")
            .replace("    bindDN", "    tls: ca\n    bindDN"),
        "",
    ));
    assert_eq!(code, 2);
    assert!(
        out.contains("a TLS profile is set but the connection is plain ldap://"),
        "{out}"
    );
    assert!(out.contains("/nonexistent/ca.pem"), "{out}");
    let (code, out) = validate(&base(&good.replace("ldaps://", "http://"), ""));
    assert_eq!(code, 2);
    assert!(out.contains("URL scheme `http` is not supported"), "{out}");
    // ldaps with the CA of a profile is accepted (the CA file must exist)
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["ldap.example.com".to_string()]).unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert.pem()).unwrap();
    let yaml = base(
        &good.replace("    bindDN", "    tls: ca\n    bindDN"),
        providers,
    )
    .replace("/nonexistent/ca.pem", &ca_path.display().to_string());
    let (code, out) = validate(&yaml);
    assert_eq!(code, 0, "{out}");
}

/// Issue #12, finding 16: a directory matches `uid` ignoring case, width and surrounding
/// spaces; the gateway must take the user's name from the entry, not as typed.
fn canonical_config(up: SocketAddr, slapd: &Slapd) -> String {
    let hash = pw_hash();
    let ldap = ldap_connector("ldap", &slapd.url(), "");
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
    users:
      - {{ username: alice, passwordHash: "{hash}" }}
      - {{ username: ALICE, passwordHash: "{hash}" }}
      - {{ username: "ａlice", passwordHash: "{hash}" }}
{ldap}apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{up}
    attrProviders:
      - {{ connector: ldap, usernameMapping: local.username }}
    headers:
      - {{ name: X-User, value: "{{{{ ldap.username }}}}" }}
      - {{ name: X-Local, value: "{{{{ local.username }}}}" }}
      - {{ name: X-Mail, value: "{{{{ ldap.mail }}}}" }}
      - {{ name: X-DN, value: "{{{{ ldap.dn }}}}" }}
    policies:
      - location: /notbob
        authentication: {{ idps: [ldap] }}
        authorization:
          rules: {{ not: {{ attribute: ldap.username, in: [bob] }} }}
      - location: /dir
        authentication: {{ idps: [ldap] }}
        authorization: {{ allowAll: true }}
      - location: /
        authentication: {{ idps: [local] }}
        authorization: {{ allowAll: true }}
"#
    )
}

#[tokio::test]
async fn ldap_identities_are_the_directory_s_not_as_typed() {
    let slapd = Slapd::start();
    let up = upstream().await;
    let gw = Gateway::start_with(&canonical_config(up, &slapd), &[SECRET_ENV]);

    // Spelling variants of bob, with bob's real password: the session is bob's, so the rule
    // refusing bob refuses them all, and the upstream is told `bob`.
    for typed in ["bob", "BOB", "bob ", " bob", "ｂob"] {
        let (cookie, _) = login(&gw, "/dir", "ldap", typed, "builder").await;
        let echo = Echo::from(get(&gw, "/dir/page", &cookie).await).await;
        assert_eq!(echo.one("x-user").as_deref(), Some("bob"), "{typed:?}");
        // a DN holds commas, so the list format sends it quoted
        assert_eq!(
            echo.one("x-dn").as_deref(),
            Some("\"uid=bob,ou=people,dc=example,dc=com\""),
            "{typed:?}"
        );
        assert_eq!(
            get(&gw, "/notbob", &cookie).await.status(),
            403,
            "{typed:?} passed a rule that refuses bob"
        );
    }
    let (alice_ldap, _) = login(&gw, "/dir", "ldap", "alice", "wonderland").await;
    assert_eq!(get(&gw, "/notbob", &alice_ldap).await.status(), 200);

    // Local users: `alice` gets the directory's alice; `ALICE` and `ａlice` are other users of
    // the local connector, which the directory's matching rule would also find as alice:
    // refused, they get no directory attributes.
    let (alice, _) = login(&gw, "/", "local", "alice", "pw").await;
    let echo = Echo::from(get(&gw, "/x", &alice).await).await;
    assert_eq!(echo.one("x-mail").as_deref(), Some("alice@example.com"));
    for other in ["ALICE", "ａlice"] {
        let (cookie, _) = login(&gw, "/", "local", other, "pw").await;
        let echo = Echo::from(get(&gw, "/x", &cookie).await).await;
        assert_eq!(echo.one("x-local").as_deref(), Some(other));
        assert_eq!(echo.one("x-mail"), None, "{other:?} got alice's entry");
        assert_eq!(echo.one("x-dn"), None, "{other:?} got alice's entry");
    }
    gw.wait_log("stored username is not the one asked for");

    // While alice is locked out (maxFailures: 3), no spelling of her name gets a check.
    for _ in 0..3 {
        let r = submit_login(&gw, "/dir", "ldap", "alice", "wrong").await;
        assert_eq!(r.status(), 401);
    }
    for typed in ["alice ", "ALICE", " ａlice", "alice"] {
        let r = submit_login(&gw, "/dir", "ldap", typed, "wonderland").await;
        assert_eq!(r.status(), 429, "{typed:?} got past alice's lock-out");
        assert!(set_cookie(&r, "tessera_session").is_none());
    }
}

/// The password grant checks passwords where the login form does (issue #13: they had
/// drifted, and the grant ignored LDAP): by binding as the directory user, with the
/// connector's throttle, and failing closed when the directory is down.
#[tokio::test]
async fn the_password_grant_checks_directory_passwords() {
    let mut slapd = Slapd::start();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("es256.pem");
    std::fs::write(
        &key,
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256).unwrap(),
    )
    .unwrap();
    let ldap = ldap_connector("ldap", &slapd.url(), "");
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
{ldap}oidcProvider:
  issuer: http://localhost:1234
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: cli
    type: oidc
    clientID: cli
    clientSecret: s3cret-s3cret-s3cret
    redirectURLs: ["https://rp.example.com/cb"]
    grantTypes: [password]
    authentication: {{ idps: [ldap] }}
    claimsMapping: {{ email: ldap.mail }}
"#,
        key = key.display()
    );
    let gw = Gateway::start_with(&yaml, &[SECRET_ENV]);
    let grant = |user: &'static str, password: &'static str| {
        let url = gw.url("/oauth2/token");
        async move {
            let r = client()
                .post(url)
                .form(&[
                    ("grant_type", "password"),
                    ("username", user),
                    ("password", password),
                    ("scope", "openid email"),
                    ("client_id", "cli"),
                    ("client_secret", "s3cret-s3cret-s3cret"),
                ])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    // the directory's password, as the form would take it
    let (status, token) = grant("alice", "wonderland").await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(
        jwt_payload(token["id_token"].as_str().expect("an id_token"))["email"],
        "alice@example.com"
    );
    // a wrong one: invalid_grant, counted; past the connector's `maxFailures: 3` even the
    // right password is refused unchecked
    for _ in 0..3 {
        let (status, body) = grant("bob", "not-his").await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_grant");
        assert_eq!(body["error_description"], "wrong username or password");
    }
    let (status, body) = grant("bob", "builder").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error_description"], "too many failed attempts; try again later",
        "the throttle counts grant failures as the form does: {body}"
    );
    // the directory down: 503 temporarily_unavailable, never a token
    slapd.stop();
    let (status, body) = grant("alice", "wonderland").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    gw.wait_log("password grant: directory unavailable");
}
