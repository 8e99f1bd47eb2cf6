//! Sessions and the login flow as a browser (and an attacker) meets them.

use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn cookie_attributes_and_rotation_at_login() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let s = start_login(&gw, "/").await;
    let c = client();
    let page = c
        .get(&s.login_url)
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    // a session id planted by an attacker (fixation) is not adopted
    let planted = "tessera_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let r = c
        .post(gw.url("/.tessera/login"))
        .header("cookie", format!("{}; {planted}", s.flow_cookie))
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
    let full = full_set_cookie(&r, "tessera_session").unwrap();
    assert!(
        full.contains("; HttpOnly") && full.contains("; SameSite=Lax") && full.contains("; Path=/"),
        "{full}"
    );
    assert!(!full.contains("Secure"), "no Secure flag over plain HTTP");
    let first = set_cookie(&r, "tessera_session").unwrap();
    assert_ne!(first, planted);
    assert_eq!(
        first.len(),
        "tessera_session=".len() + 43,
        "256-bit id, base64url"
    );
    // a second login from the same browser gets yet another id; the old one dies
    let s2 = start_login(&gw, "/admin").await; // anonymous flow
    let html = c
        .get(format!("{}&idp=local", s2.login_url))
        .header("cookie", &s2.flow_cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = c
        .post(gw.url("/.tessera/login"))
        .header("cookie", format!("{}; {first}", s2.flow_cookie))
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
    let second = set_cookie(&r, "tessera_session").unwrap();
    assert_ne!(first, second);
    assert_eq!(
        status_with_cookie(gw.url("/"), &first).await,
        302,
        "old id is dead"
    );
    assert_eq!(status_with_cookie(gw.url("/"), &second).await, 200);
}

#[tokio::test]
async fn forged_malformed_and_oversized_cookies() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let c = client();
    for cookie in [
        "tessera_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "tessera_session=../../etc/passwd",
        "tessera_session=",
        "tessera_session",
        ";;;=;=",
        "tessera_session=\"quoted\"",
    ] {
        let r = c
            .get(gw.url("/"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "{cookie}: treated as no session");
    }
    let huge = format!("tessera_session={}", "A".repeat(20_000));
    let r = c
        .get(gw.url("/"))
        .header("cookie", huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn session_expiry_sends_the_user_to_login_and_back() {
    let up = upstream().await;
    let yaml = config(up, "", DEFAULT_POLICIES).replace(
        "telemetry:",
        "session: { maxLifetimeSeconds: 2 }\ntelemetry:",
    );
    let gw = Gateway::start(&yaml);
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;
    let c = client();
    assert_eq!(
        status_with_cookie(gw.url("/docs?page=2"), &cookie).await,
        200
    );
    // Sessions count whole seconds and end early rather than late: with 2 s, a use within a
    // second of the login is always alive and one 2.1 s later always gone. (The exact
    // boundaries are tested on a manual clock in `session`.)
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = c
        .get(gw.url("/docs?page=2"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "expired session: login again");
    let (_, back) = login(&gw, "/docs?page=2", "local", "alice", "pw").await;
    assert_eq!(back, "/docs?page=2");
}

#[tokio::test]
async fn idle_timeout_ends_unused_sessions() {
    let up = upstream().await;
    let yaml = config(up, "", DEFAULT_POLICIES).replace(
        "telemetry:",
        "session: { idleTimeoutSeconds: 2 }\ntelemetry:",
    );
    let gw = Gateway::start(&yaml);
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;
    assert_eq!(status_with_cookie(gw.url("/"), &cookie).await, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(status_with_cookie(gw.url("/"), &cookie).await, 302);
}

#[tokio::test]
async fn logout_deletes_the_session_server_side() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let c = client();
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;
    let r = logout(&gw, "/logout", &cookie).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/public");
    assert!(full_set_cookie(&r, "tessera_session")
        .unwrap()
        .contains("Max-Age=0"));
    // replaying the old cookie (as an attacker who copied it would) no longer works
    assert_eq!(status_with_cookie(gw.url("/"), &cookie).await, 302);
    // the global logout page
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;
    let r = logout(&gw, "/.tessera/logout", &cookie).await;
    assert_eq!(r.status(), 200);
    assert!(full_set_cookie(&r, "tessera_session")
        .unwrap()
        .contains("Max-Age=0"));
    assert!(r.text().await.unwrap().contains("You are signed out"));
    assert_eq!(status_with_cookie(gw.url("/"), &cookie).await, 302);
    let _ = c;
}

/// Issue #12 finding 10: a GET (a link, an image, a cross-site navigation) never ends a
/// session; only a POST carrying the session's CSRF token from the confirmation page does.
#[tokio::test]
async fn logout_needs_the_confirmation_pages_csrf_token() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let c = client();
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;
    let (other, _) = login(&gw, "/", "local", "alice", "pw").await;
    let still_signed_in = |cookie: String| {
        let gw = &gw;
        async move {
            let r = c_get(gw, "/still", &cookie).await;
            assert_eq!(r.status(), 200, "the session must still be alive");
            let echo = Echo::from(r).await;
            assert_eq!(echo.path(), "/still");
            assert_eq!(echo.one("x-user").as_deref(), Some("alice"));
        }
    };
    for path in ["/logout", "/.tessera/logout"] {
        // a cross-site GET (with the cookie, as SameSite=Lax sends it on navigations)
        let r = c
            .get(gw.url(path))
            .header("cookie", &cookie)
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(full_set_cookie(&r, "tessera_session").is_none(), "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let html = r.text().await.unwrap();
        assert!(html.contains("<h1>Sign out?</h1>"), "{html}");
        assert!(
            html.contains(&format!("<form method=\"post\" action=\"{path}\">")),
            "{html}"
        );
        let token = hidden(&html, "csrf");
        assert_eq!(token.len(), 43);
        still_signed_in(cookie.clone()).await;
        // HEAD does not sign out either
        let r = c
            .head(gw.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // POSTs without the token, with a wrong one, with another session's, as JSON
        let other_token = {
            let html = c_get(&gw, path, &other).await.text().await.unwrap();
            hidden(&html, "csrf")
        };
        assert_ne!(other_token, token, "the token is bound to the session");
        for body in [
            String::new(),
            "csrf=".to_string(),
            "csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
            format!("csrf={other_token}"),
            format!("csrf={token}&csrf={token}"),
        ] {
            let r = c
                .post(gw.url(path))
                .header("cookie", &cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{path} {body}");
            assert!(full_set_cookie(&r, "tessera_session").is_none());
            assert!(r
                .text()
                .await
                .unwrap()
                .contains("did not come from the sign-out page"));
        }
        let r = c
            .post(gw.url(path))
            .header("cookie", &cookie)
            .header("content-type", "text/plain")
            .body(format!("csrf={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}: a text/plain body is no form");
        let r = c
            .put(gw.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{path}");
        still_signed_in(cookie.clone()).await;
    }
    // the confirmation page's token ends the session (and only this one)
    let r = logout(&gw, "/logout", &cookie).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/public");
    assert_eq!(status_with_cookie(gw.url("/"), &cookie).await, 302);
    still_signed_in(other.clone()).await;
}

/// Without a session there is nothing to confirm: the app's logout location redirects and
/// the gateway's shows the signed-out page, as before.
#[tokio::test]
async fn logout_without_a_session_needs_no_confirmation() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let r = client().get(gw.url("/logout")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/public");
    let r = client()
        .get(gw.url("/.tessera/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("You are signed out"));
    let r = client()
        .post(gw.url("/.tessera/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn c_get(gw: &Gateway, path: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(gw.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn csrf_binding_and_single_use_flows() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let c = client();
    let s = start_login(&gw, "/").await;
    let html = c
        .get(&s.login_url)
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let form = |csrf: String| {
        vec![
            ("flow", hidden(&html, "flow")),
            ("csrf", csrf),
            ("idp", "local".to_string()),
            ("username", "alice".to_string()),
            ("password", "pw".to_string()),
        ]
    };
    // wrong CSRF token
    let r = c
        .post(gw.url("/.tessera/login"))
        .header("cookie", &s.flow_cookie)
        .form(&form("x".repeat(43)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(set_cookie(&r, "tessera_session").is_none());
    // right token but another browser (no binding cookie)
    let r = c
        .post(gw.url("/.tessera/login"))
        .form(&form(hidden(&html, "csrf")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("expired or was opened in another browser"));
    // the login page itself also refuses to render for another browser
    assert_eq!(c.get(&s.login_url).send().await.unwrap().status(), 400);
    // the genuine submission works once
    let r = c
        .post(gw.url("/.tessera/login"))
        .header("cookie", &s.flow_cookie)
        .form(&form(hidden(&html, "csrf")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = c
        .post(gw.url("/.tessera/login"))
        .header("cookie", &s.flow_cookie)
        .form(&form(hidden(&html, "csrf")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a flow is single use");
    // unknown flow id
    let r = c
        .get(gw.url("/.tessera/login?flow=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn bad_login_requests_get_400() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let c = client();
    let s = start_login(&gw, "/").await;
    let r = c
        .post(gw.url("/.tessera/login"))
        .header("cookie", &s.flow_cookie)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(gw.url("/.tessera/login"))
        .header("cookie", &s.flow_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("username={}", "a".repeat(20_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "oversized form");
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("The sign-in form is too large."));
    let r = c
        .post(gw.url("/.tessera/login"))
        .header("cookie", &s.flow_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("flow=a&flow=b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "duplicate parameters");
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("parameter `flow` is repeated"));
    let r = c.put(gw.url("/.tessera/login")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = c.get(gw.url("/.tessera/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // a non-GET request without a session cannot be replayed after login: 401, no redirect
    let r = c.post(gw.url("/orders")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn wrong_passwords_are_throttled_and_never_logged() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let c = client();
    let attempt = |user: &'static str, password: &'static str| {
        let c = c.clone();
        let gw_url = gw.url("/");
        let login_url = gw.url("/.tessera/login");
        let base = format!("http://{}", gw.addr);
        async move {
            let r = c.get(gw_url).send().await.unwrap();
            let flow_cookie = set_cookie(&r, "tessera_login").unwrap();
            let loc = r.headers()["location"].to_str().unwrap().to_string();
            let html = c
                .get(format!("{base}{loc}"))
                .header("cookie", &flow_cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            c.post(login_url)
                .header("cookie", &flow_cookie)
                .form(&[
                    ("flow", hidden(&html, "flow")),
                    ("csrf", hidden(&html, "csrf")),
                    ("idp", "local".into()),
                    ("username", user.to_string()),
                    ("password", password.to_string()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..3 {
        let r = attempt("alice", "Wrong-Secret-123").await;
        assert_eq!(r.status(), 401);
        let html = r.text().await.unwrap();
        assert!(html.contains("The username or password is not correct."));
        assert!(
            html.contains("value=\"alice\""),
            "the username is kept in the form"
        );
    }
    // the limit (maxFailures: 3) is reached: even the right password is refused for now
    let r = attempt("alice", "pw").await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "60");
    assert!(set_cookie(&r, "tessera_session").is_none());
    // other users are not locked out by alice's failures
    assert_eq!(attempt("bob", "pw").await.status(), 303);
    // unknown users fail the same way as wrong passwords
    assert_eq!(attempt("mallory", "x").await.status(), 401);
    gw.wait_log("login failed: wrong username or password");
    gw.wait_log("too many failed attempts");
    let logs = gw.logs();
    assert!(
        !logs.contains("Wrong-Secret-123"),
        "passwords never reach the logs"
    );
    let metrics = c
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tessera_logins_total{idp=\"local\",result=\"failure\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("tessera_logins_total{idp=\"local\",result=\"throttled\"} 1"));
    assert!(metrics.contains("tessera_logins_total{idp=\"local\",result=\"success\"} 1"));
}

#[tokio::test]
async fn return_urls_never_leave_the_host() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let c = client();
    for (rd, expected_back) in [
        ("https://evil.example/steal", "/"),
        ("//evil.example/steal", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/reports?x=1", "/reports?x=1"),
    ] {
        let r = c
            .get(gw.url(&format!("/.tessera/login?rd={}", urlencode(rd))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        let flow_cookie = set_cookie(&r, "tessera_login").unwrap();
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let html = c
            .get(gw.url(&loc))
            .header("cookie", &flow_cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r = c
            .post(gw.url("/.tessera/login"))
            .header("cookie", &flow_cookie)
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
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], expected_back, "rd={rd}");
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn several_idps_show_a_picker() {
    let up = upstream().await;
    let hash = pw_hash();
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - {{ name: staff, type: local, users: [{{ username: s, passwordHash: "{hash}", attributes: {{ role: employee }} }}] }}
  - {{ name: partners, type: local, users: [{{ username: p, passwordHash: "{hash}", attributes: {{ role: partner }} }}] }}
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{up}
    headers: [{{ name: X-Role, value: "{{{{ staff.role }}}}{{{{ partners.role }}}}" }}]
    policies:
      - {{ location: /, authentication: {{ idps: [staff, partners] }}, authorization: {{ allowAll: true }} }}
"#
    );
    let gw = Gateway::start(&yaml);
    let c = client();
    let s = start_login(&gw, "/x").await;
    let picker = c
        .get(&s.login_url)
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(picker.status(), 200);
    let html = picker.text().await.unwrap();
    assert!(html.contains("Choose how to sign in"));
    assert!(html.contains("&amp;idp=staff") && html.contains("&amp;idp=partners"));
    // an IdP the policy does not list is refused
    let r = c
        .get(format!("{}&idp=other", s.login_url))
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (cookie, back) = login(&gw, "/x", "partners", "p", "pw").await;
    assert_eq!(back, "/x");
    let echo = Echo::from(
        c.get(gw.url("/x"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.one("x-role").as_deref(), Some("partner"));
}

/// A second challenge in the same browser (another tab, a favicon fetch) reuses the
/// flow-binding cookie, so the first sign-in page stays valid.
#[tokio::test]
async fn concurrent_flows_in_one_browser() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let c = client();
    let first = start_login(&gw, "/home").await;
    assert!(first.flow_cookie.starts_with("tessera_login="));
    let r = c
        .get(gw.url("/favicon.ico"))
        .header("cookie", &first.flow_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(
        set_cookie(&r, "tessera_login").is_none(),
        "the binding is reused, not replaced"
    );
    let page = c
        .get(&first.login_url)
        .header("cookie", &first.flow_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let flow =
        full_set_cookie(&c.get(gw.url("/x")).send().await.unwrap(), "tessera_login").unwrap();
    assert!(flow.contains("; Path=/;"), "{flow}");
}
