//! The proxy hooks around the upstream call and the denial pages, through the real gateway:
//! `modifyRequestSE` (what the upstream received; rewrites out of the app or policy refused;
//! identity headers not forgeable), `handleUnauthorizedSE`, `unauthorizedPage` and
//! `errorPage` as pages, and each hook failing closed (trap, deadline).

use crate::extensions::{guest, validate};
use crate::support::*;

/// Local users: alice (admins), bob (staff); password "pw".
fn config(upstream: std::net::SocketAddr, app_keys: &str, extensions: &str) -> String {
    let hash = pw_hash();
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
    users:
      - {{ username: alice, passwordHash: "{hash}", attributes: {{ groups: [admins], username: alice }} }}
      - {{ username: bob, passwordHash: "{hash}", attributes: {{ groups: [staff], username: bob }} }}
serviceExtensions:
{extensions}
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{upstream}
    headers:
      - {{ name: X-User, value: "{{{{ local.username }}}}" }}
{app_keys}
    policies:
      - location: /public
        authentication: {{ allowUnauthenticated: true }}
        authorization: {{ allowAll: true }}
      - location: /admin
        authentication: {{ idps: [local] }}
        authorization:
          rules: {{ attribute: local.groups, contains: admins }}
      - location: /
        authentication: {{ idps: [local] }}
        authorization: {{ allowAll: true }}
  - name: other
    type: proxy
    routePatterns: ["/other"]
    upstream: http://{upstream}
    policies:
      - location: /
        authentication: {{ allowUnauthenticated: true }}
        authorization: {{ allowAll: true }}
"#
    )
}

fn extensions() -> String {
    let (hooks, lp) = (guest("proxy-hooks"), guest("loop"));
    format!(
        "  - {{ name: ext, file: \"{hooks}\", limits: {{ timeoutMillis: 2000 }} }}\n  - {{ name: spin, file: \"{lp}\", limits: {{ timeoutMillis: 100 }} }}\n"
    )
}

async fn get(
    gw: &Gateway,
    path: &str,
    cookie: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut r = client().get(gw.url(path));
    if !cookie.is_empty() {
        r = r.header("cookie", cookie);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

/// `modifyRequestSE` changes the path (within the app and the policy), the query and the
/// headers the upstream receives; the identity header, the gateway's managed headers and the
/// method stay the gateway's.
#[tokio::test]
async fn modify_request_rewrites_what_the_upstream_receives() {
    let up = upstream().await;
    let keys = "    modifyRequestSE: { funcName: ModifyRequest, extension: ext }";
    let gw = Gateway::start(&config(up, keys, &extensions()));
    let (cookie, _) = login(&gw, "/page", "local", "alice", "pw").await;

    // The guest leaves everything as it came.
    let r = get(&gw, "/page?q=1", &cookie, &[("x-client", "c")]).await;
    let echo = Echo::from(r).await;
    assert_eq!(echo.path(), "/page");
    assert_eq!(echo.0["query"], "q=1");
    assert_eq!(echo.one("x-user").as_deref(), Some("alice"));
    assert_eq!(echo.one("x-client").as_deref(), Some("c"));
    assert!(echo.one("x-forwarded-for").is_some());

    // Path, query and headers rewritten.
    let r = get(
        &gw,
        "/page?q=1",
        &cookie,
        &[
            ("x-mr-path", "/new/pl%20ace"),
            ("x-mr-query", "a=1&b=2"),
            ("x-mr-set", "x-added=yes"),
            ("x-mr-drop", "x-drop-me"),
            ("x-drop-me", "1"),
        ],
    )
    .await;
    let echo = Echo::from(r).await;
    assert_eq!(echo.path(), "/new/pl%20ace");
    assert_eq!(echo.0["query"], "a=1&b=2");
    assert_eq!(echo.one("x-added").as_deref(), Some("yes"));
    assert_eq!(echo.one("x-drop-me"), None);
    assert_eq!(echo.one("x-user").as_deref(), Some("alice"));
    assert!(!echo
        .header("cookie")
        .iter()
        .any(|c| c.contains("tessera_session")));

    // The query removed; the method is not the hook's.
    let r = client()
        .post(gw.url("/page?q=1"))
        .header("cookie", &cookie)
        .header("x-mr-query", "-")
        .header("x-mr-path", "/posted")
        .send()
        .await
        .unwrap();
    let echo = Echo::from(r).await;
    assert_eq!(echo.0["method"], "POST");
    assert_eq!(echo.path(), "/posted");
    assert!(echo.0["query"].is_null(), "{}", echo.0);

    // A path the app's rules refuse is an invalid answer: 500; a path under another policy,
    // another app, or the gateway's own routes never reaches the upstream: 403.
    let r = get(&gw, "/page", &cookie, &[("x-mr-path", "/a%2Fb")]).await;
    assert_eq!(r.status(), 500);
    gw.wait_log("path `/a%2Fb` is not a valid path: the path contains an encoded slash");
    let r = get(&gw, "/page", &cookie, &[("x-mr-path", "relative")]).await;
    assert_eq!(r.status(), 500);
    // Unauthenticated on a public location, rewritten under the signed-in policy `/`.
    let r = get(&gw, "/public/x", "", &[("x-mr-path", "/private")]).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("No access policy covers"));
    gw.wait_log("ModifyRequest rewrote the path out of the app or the policy");
    // Signed in at `/`, rewritten under `/admin` (another policy) or to the other app.
    let r = get(&gw, "/page", &cookie, &[("x-mr-path", "/admin/x")]).await;
    assert_eq!(r.status(), 403);
    let r = get(&gw, "/page", &cookie, &[("x-mr-path", "/other/x")]).await;
    assert_eq!(r.status(), 403);
    // Dot segments are resolved before the checks: `/public/../admin` is `/admin`.
    let r = get(&gw, "/public/x", "", &[("x-mr-path", "/public/../admin")]).await;
    assert_eq!(r.status(), 403);
}

/// An extension cannot forge an identity (in any spelling), nor set a header the gateway
/// manages: the call is invalid, 500, and the upstream is not called.
#[tokio::test]
async fn modify_request_cannot_forge_identity_or_managed_headers() {
    let up = upstream().await;
    let keys = "    modifyRequestSE: { funcName: ModifyRequest, extension: ext }";
    let gw = Gateway::start(&config(up, keys, &extensions()));
    let (cookie, _) = login(&gw, "/page", "local", "alice", "pw").await;
    for set in ["x-user=root", "x_user=root", "x-real-ip=10.0.0.1"] {
        let r = get(&gw, "/page", &cookie, &[("x-mr-set", set)]).await;
        assert_eq!(r.status(), 500, "{set}");
    }
    gw.wait_log("header `x_user` is an identity or trust header the gateway sets");
    // No identity on a public location: the guest cannot add one either.
    let r = get(&gw, "/public/x", "", &[("x-mr-set", "x-user=alice")]).await;
    assert_eq!(r.status(), 500);
    // Returning the identity header unchanged is fine (it stays the gateway's).
    let r = get(&gw, "/page", &cookie, &[("x-mr-set", "x-user=alice")]).await;
    assert_eq!(
        Echo::from(r).await.header("x-user"),
        vec!["alice".to_string()]
    );
    for set in ["host=evil.example", "x-forwarded-for=1.2.3.4", "cookie=a=b"] {
        let r = get(&gw, "/page", &cookie, &[("x-mr-set", set)]).await;
        assert_eq!(r.status(), 500, "{set}");
    }
    gw.wait_log("is managed by the gateway");
}

/// A trapping ModifyRequest and one past its deadline fail closed (500) with the app's
/// `errorPage`; an unreachable upstream gets the same page with 502.
#[tokio::test]
async fn failed_modify_request_and_upstream_get_the_error_page() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("error.html");
    std::fs::write(&page, "<h1>Our error</h1><p>id {{ requestId }}</p>").unwrap();
    let keys = format!(
        "    modifyRequestSE: {{ funcName: ModifyRequest, extension: ext }}\n    errorPage: {{ file: \"{}\" }}",
        page.display()
    );
    let mut yaml = config(up, &keys, &extensions());
    yaml.push_str(
        r#"  - name: slow
    type: proxy
    routePatterns: ["/spin"]
    upstream: http://127.0.0.1:1
    modifyRequestSE: { funcName: ModifyRequest, extension: spin }
    errorPage: { html: "<h1>slow app</h1>" }
    policies:
      - location: /
        authentication: { allowUnauthenticated: true }
        authorization: { allowAll: true }
  - name: down
    type: proxy
    routePatterns: ["/down"]
    upstream: http://127.0.0.1:1
    errorPage: { html: "<h1>down {{ requestId }}</h1>" }
    policies:
      - location: /
        authentication: { allowUnauthenticated: true }
        authorization: { allowAll: true }
"#,
    );
    let gw = Gateway::start(&yaml);

    let r = get(&gw, "/public/x", "", &[("x-mr-trap", "1")]).await;
    assert_eq!(r.status(), 500);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        r.text().await.unwrap(),
        format!("<h1>Our error</h1><p>id {id}</p>")
    );
    gw.wait_log("\"hook\":\"ModifyRequest\"");

    let r = get(&gw, "/spin/x", "", &[]).await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.text().await.unwrap(), "<h1>slow app</h1>");
    gw.wait_log("\"outcome\":\"timeout\"");

    let r = get(&gw, "/down/x", "", &[]).await;
    assert_eq!(r.status(), 502);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(r.text().await.unwrap(), format!("<h1>down {id}</h1>"));

    // A refusal that is not the gateway's failure keeps its own page.
    let r = get(&gw, "/page", "", &[]).await;
    assert_eq!(r.status(), 302);
}

/// A denied request: HandleUnauthorized's answer; when the call fails (trap, deadline), the
/// static `unauthorizedPage`, else the gateway's 403 page. Allowed requests never call it.
#[tokio::test]
async fn denied_requests_get_the_extension_answer_or_the_static_page() {
    let up = upstream().await;
    let keys = "    handleUnauthorizedSE: { funcName: HandleUnauthorized, extension: ext }\n    unauthorizedPage: { html: \"<h1>static denial {{ requestId }}</h1>\" }";
    let mut yaml = config(up, keys, &extensions());
    yaml.push_str(
        r#"  - name: spin
    type: proxy
    routePatterns: ["/spin"]
    upstream: http://127.0.0.1:1
    handleUnauthorizedSE: { funcName: HandleUnauthorized, extension: spin }
    policies:
      - location: /
        authentication: { allowUnauthenticated: true }
        authorization: { rules: { attribute: local.groups, contains: admins } }
  - name: plain
    type: proxy
    routePatterns: ["/plain"]
    upstream: http://127.0.0.1:1
    unauthorizedPage: { html: "<h1>plain denial</h1>" }
    policies:
      - location: /
        authentication: { allowUnauthenticated: true }
        authorization: { rules: { attribute: local.groups, contains: admins } }
"#,
    );
    let gw = Gateway::start(&yaml);
    let (bob, _) = login(&gw, "/page", "local", "bob", "pw").await;
    let (alice, _) = login(&gw, "/page", "local", "alice", "pw").await;

    let r = get(&gw, "/admin/x", &bob, &[]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-denied-by"], "extension");
    assert_eq!(r.text().await.unwrap(), "<p>custom denial for /admin/x</p>");

    let r = get(&gw, "/admin/x", &alice, &[]).await;
    assert_eq!(Echo::from(r).await.path(), "/admin/x");

    // The hook traps: the static page, still 403.
    let r = get(&gw, "/admin/x", &bob, &[("x-hu-trap", "1")]).await;
    assert_eq!(r.status(), 403);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(r.headers().get("x-denied-by").is_none());
    assert_eq!(
        r.text().await.unwrap(),
        format!("<h1>static denial {id}</h1>")
    );
    gw.wait_log("\"hook\":\"HandleUnauthorized\"");

    // Past its deadline, without a static page: the gateway's 403 page.
    let r = get(&gw, "/spin/x", "", &[]).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("not allowed to open"));
    gw.wait_log("\"outcome\":\"timeout\"");

    // A static page alone.
    let r = get(&gw, "/plain/x", "", &[]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.text().await.unwrap(), "<h1>plain denial</h1>");
}

#[test]
fn hook_and_page_settings_are_validated_with_positions() {
    let up: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let ext = extensions();
    let check = |keys: &str, want: &str| {
        let (code, out) = validate(&config(up, keys, &ext));
        assert_eq!(code, 2, "{keys}: {out}");
        assert!(out.contains(want), "{keys}: want {want}\n{out}");
    };
    // The app keys are on line 21 (see `config`).
    check(
        "    modifyRequestSE: { funcName: ModifyResponse, extension: ext }",
        ":21:24: this position calls the ModifyRequest hook, not ModifyResponse",
    );
    check(
        &format!(
            "    modifyRequestSE: {{ funcName: ModifyRequest, file: \"{}\" }}",
            guest("wrong-exports")
        ),
        "does not export the ModifyRequest hook (interface `tessera:extension/modify-request@0.1.0`)",
    );
    check(
        "    handleUnauthorizedSE: { funcName: HandleUnauthorized, extension: ext, cacheSeconds: 5 }",
        "the answer of HandleUnauthorized cannot be cached",
    );
    check(
        "    unauthorizedPage: 403",
        ":21:5: unauthorizedPage is a URL to redirect to, or a page",
    );
    check(
        "    unauthorizedPage: { file: a.html, html: b }",
        ":21:5: a page is either `file` or `html`",
    );
    check(
        "    unauthorizedPage: { page: a.html }",
        ":21:25: unknown key `page`",
    );
    check(
        "    errorPage: { file: /nonexistent/error.html }",
        ":21:18: cannot serve `/nonexistent/error.html`: ",
    );
    check(
        "    errorPage: /500.html",
        ":21:5: errorPage is a page: `{ file: … }` or `{ html: … }`",
    );
    check(
        "    unauthorizedPage: \"javascript:alert(1)\"",
        "`javascript:alert(1)` is not a valid URL",
    );
}

#[test]
fn forward_auth_apps_refuse_the_hooks_of_an_upstream_call_and_of_a_denial() {
    let hooks = guest("proxy-hooks");
    let yaml = |key: &str| {
        format!(
            r#"version: 1
http: {{ address: "127.0.0.1:0", trustedProxies: [127.0.0.1] }}
connectors:
  - {{ name: local, type: local, users: [] }}
apps:
  - name: fa
    type: forwardAuth
    routePatterns: ["app.example.com/"]
    gatewayURL: https://auth.example.com
    {key}: {{ funcName: {func}, file: "{hooks}" }}
    policies:
      - location: /
        authentication: {{ idps: [local] }}
        authorization: {{ allowAll: true }}
"#,
            func = if key == "modifyRequestSE" {
                "ModifyRequest"
            } else {
                "HandleUnauthorized"
            }
        )
    };
    let (code, out) = validate(&yaml("modifyRequestSE"));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(":10:5: a forwardAuth app has no `modifyRequestSE`"),
        "{out}"
    );
    let (code, out) = validate(&yaml("handleUnauthorizedSE"));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(":10:5: a forwardAuth app has no `handleUnauthorizedSE`: the ingress would read a 2xx answer as allowed"),
        "{out}"
    );
}
