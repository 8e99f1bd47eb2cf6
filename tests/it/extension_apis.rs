//! `apis[]` with `serveSE`: endpoints an extension answers itself, through the real gateway.
//! The guest (`test-guests/src/api-serve.c`) echoes what it was given as JSON; headers make
//! it trap, loop, or answer what the gateway must refuse.

use serde_json::Value;

use crate::extensions::{guest, validate};
use crate::support::*;

/// Local user alice (username attribute `alice`, password "pw"); a proxy app at `/app`;
/// the apis: `echo` (public, GET and POST, bodies up to 16 bytes) and `whoami` (a signed-in
/// session). `extra_apis` is appended to the `apis` list.
fn config(upstream: std::net::SocketAddr, extra_apis: &str) -> String {
    let hash = pw_hash();
    let g = guest("api-serve");
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
    users:
      - {{ username: alice, passwordHash: "{hash}", attributes: {{ username: alice }} }}
serviceExtensions:
  - {{ name: api, file: "{g}", limits: {{ timeoutMillis: 300 }} }}
apps:
  - name: web
    type: proxy
    routePatterns: ["/app"]
    upstream: http://{upstream}
    policies:
      - location: /
        authentication: {{ idps: [local] }}
        authorization: {{ allowAll: true }}
apis:
  - name: echo
    routePatterns: ["/api/echo"]
    serveSE: {{ funcName: Serve, extension: api }}
    methods: [GET, POST]
    maxRequestBodyBytes: 16
    authentication: public
  - name: whoami
    routePatterns: ["/api/whoami"]
    serveSE: {{ funcName: Serve, extension: api }}
    idps: [local]
{extra_apis}"#
    )
}

async fn json(r: reqwest::Response) -> Value {
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// A public GET: the guest's status, headers and JSON body; the request it saw (method,
/// canonical URL with the query, the api's name, no session, no gateway cookie).
#[tokio::test]
async fn a_public_endpoint_answers_what_the_guest_computed() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, ""));
    let r = client()
        .get(gw.url("/api/echo/x?y=1"))
        .header("cookie", "tessera_session=abc; mine=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(header(&r, "x-served-by").as_deref(), Some("api-serve"));
    assert!(header(&r, "x-request-id").is_some());
    let body = json(r).await;
    assert_eq!(body["method"], "GET");
    assert_eq!(
        body["url"],
        format!("http://{}/api/echo/x?y=1", gw.addr).as_str()
    );
    assert_eq!(body["app"], "echo");
    assert_eq!(body["user"], Value::Null);
    assert_eq!(
        body["cookie"], "mine=1",
        "the gateway's cookie never reaches a guest"
    );
    assert_eq!(body["bodyLength"], 0);

    // The guest's status passes as is; HEAD is answered where GET is.
    let r = client()
        .get(gw.url("/api/echo"))
        .header("x-status", "418")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 418);
    let r = client().head(gw.url("/api/echo")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The app beside it still gets its own requests (an api is matched first, on its path).
    let r = client().get(gw.url("/app/page")).send().await.unwrap();
    assert_eq!(r.status(), 302, "the app asks to sign in");
    gw.wait_log(r#""decision":"allowed","status":200"#);
}

/// A POST body reaches the guest whole; one over `maxRequestBodyBytes` is refused with 413
/// before the guest runs (the `x-trap` header would make it fail with 500).
#[tokio::test]
async fn a_body_reaches_the_guest_up_to_the_limit() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, ""));
    let r = client()
        .post(gw.url("/api/echo"))
        .body("0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(body["method"], "POST");
    assert_eq!(body["bodyLength"], 16);
    assert_eq!(body["body"], "0123456789abcdef");

    let r = client()
        .post(gw.url("/api/echo"))
        .header("x-trap", "1")
        .body("0123456789abcdefg")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        json(r).await,
        serde_json::json!({"error": "body_too_large", "message": "the request body is too large"})
    );
    assert_eq!(gw.count_logs("extension call failed"), 0, "{}", gw.logs());
}

/// A method the api does not answer: 405 with `Allow`, the guest not called.
#[tokio::test]
async fn another_method_gets_405_with_allow() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, ""));
    let r = client()
        .put(gw.url("/api/echo"))
        .header("x-trap", "1")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(header(&r, "allow").as_deref(), Some("GET, POST, HEAD"));
    assert_eq!(
        json(r).await,
        serde_json::json!({"error": "method_not_allowed", "message": "this endpoint does not answer this method"})
    );
    // `whoami` names no methods: it answers any (here: 401, it needs a session).
    let r = client().delete(gw.url("/api/whoami")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(gw.count_logs("extension call failed"), 0);
}

/// `authentication: session` (the default): without a session, 401 JSON (no sign-in
/// redirect: the callers are programs), the guest not called; with one, the guest reads the
/// user's attributes.
#[tokio::test]
async fn a_session_api_needs_a_signed_in_user() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, ""));
    for cookie in ["", "tessera_session=forged"] {
        let mut req = client().get(gw.url("/api/whoami")).header("x-trap", "1");
        if !cookie.is_empty() {
            req = req.header("cookie", cookie);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{cookie}");
        assert_eq!(header(&r, "location"), None);
        assert_eq!(
            json(r).await,
            serde_json::json!({"error": "sign_in_required", "message": "this endpoint needs a signed-in session"})
        );
    }
    assert_eq!(gw.count_logs("extension call failed"), 0);

    let (cookie, _) = login(&gw, "/app", "local", "alice", "pw").await;
    let r = client()
        .get(gw.url("/api/whoami"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(body["user"], "alice");
    assert_eq!(body["app"], "whoami");
    assert_eq!(body["cookie"], Value::Null);
    assert_eq!(body["note"], Value::Null);
    gw.wait_log(r#""app":"whoami","user":"alice""#);

    // What the guest sets with `session-set` is stored with the session.
    let r = client()
        .get(gw.url("/api/whoami"))
        .header("cookie", &cookie)
        .header("x-note", "remembered")
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["note"], "remembered");
    let r = client()
        .get(gw.url("/api/whoami"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["note"], "remembered");

    // A public api reads no session, even when there is one.
    let r = client()
        .get(gw.url("/api/echo"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let body = json(r).await;
    assert_eq!(body["user"], Value::Null);
    assert_eq!(
        body["note"],
        Value::Null,
        "no session: nothing of it is read"
    );
    // ... and keeps nothing a guest sets beyond the call.
    let r = client()
        .get(gw.url("/api/echo"))
        .header("x-note", "fleeting")
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["note"], "fleeting");
    let r = client().get(gw.url("/api/echo")).send().await.unwrap();
    assert_eq!(json(r).await["note"], Value::Null);
}

/// A trap, the deadline, or an answer the gateway refuses (its own cookie, a hop-by-hop
/// header, a status out of range, a body over 1 MiB): 500 with the JSON error, logged and
/// counted as a failed call. Another cookie passes.
#[tokio::test]
async fn a_failed_or_refused_answer_is_a_500_json_error() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, ""));
    let failed = serde_json::json!({"error": "server_error", "message": "the endpoint could not compute its answer"});
    let cases: [(&str, &str, &str); 6] = [
        ("x-trap", "1", "\"outcome\":\"trap\""),
        ("x-loop", "1", "deadline of 300 ms exceeded"),
        (
            "x-set-cookie",
            "tessera_session=planted; Path=/",
            "it sets a cookie named like the gateway's own",
        ),
        (
            "x-header",
            "connection",
            "header `connection` is hop-by-hop",
        ),
        ("x-status", "1000", "response status 1000 is not 100..=599"),
        (
            "x-big",
            "1",
            "the response body has 1048577 bytes, more than 1048576",
        ),
    ];
    for (name, value, log) in cases {
        let r = client()
            .get(gw.url("/api/echo"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500, "{name}");
        assert_eq!(header(&r, "set-cookie"), None, "{name}");
        assert_eq!(json(r).await, failed, "{name}");
        gw.wait_log(log);
    }
    let r = client()
        .get(gw.url("/api/echo"))
        .header("x-set-cookie", "theirs=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "set-cookie").as_deref(), Some("theirs=1"));
    gw.wait_log(r#""hook":"Serve""#);
}

/// The edge's path rules come first: a path it refuses under an api's prefix gets the edge's
/// answer, and the guest never sees it.
#[tokio::test]
async fn edge_refusals_apply_before_an_api() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, ""));
    for path in [
        "/api/echo;x",
        "/api/echo/a%2Fb",
        "/api/echo/..;/x",
        "/api/echo/%2e%2e;/x",
    ] {
        let r = client()
            .get(format!("http://{}{path}", gw.addr))
            .header("x-trap", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let text = r.text().await.unwrap();
        assert!(text.contains("Bad request"), "{path}: {text}");
    }
    // Dot segments resolve before routing: out of the api's prefix, it is not the api's.
    let r = client()
        .get(format!("http://{}/api/echo/%2e%2e/%2e%2e/app/x", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "routed to the app at /app/x");
    assert_eq!(gw.count_logs("extension call failed"), 0);
}

/// `tessera validate` refuses what would shadow a route or cannot work, at its position.
#[tokio::test]
async fn validate_refuses_overlaps_and_bad_settings() {
    let up = upstream().await;
    // The extra api starts at line 31 (see `config`).
    let mut failures = Vec::new();
    let mut check = |extra: &str, want: &str| {
        let (code, out) = validate(&config(up, extra));
        if code != 2 || !out.contains(want) {
            failures.push(format!("{extra}: want {want}\n{out}"));
        }
    };
    let api = |keys: &str| {
        format!("  - name: extra\n    serveSE: {{ funcName: Serve, extension: api }}\n{keys}\n")
    };
    check(
        &api("    routePatterns: [\"/app/api\"]"),
        ":33:21: route pattern `/app/api` overlaps app `web` (`/app`)",
    );
    check(
        &api("    routePatterns: [\"/\"]"),
        ":33:21: route pattern `/` overlaps the gateway's own paths `/.tessera`",
    );
    check(
        &api("    routePatterns: [\"/status\"]"),
        ":33:21: route pattern `/status` overlaps the gateway's health endpoint `/status`",
    );
    check(
        &api("    routePatterns: [\"/.tessera/x\"]"),
        ":33:21: route pattern `/.tessera/x` overlaps the gateway's own paths `/.tessera`",
    );
    check(
        &api("    routePatterns: [\"/other\", \"any.example.com/api\"]"),
        ":33:31: route pattern `any.example.com/api` overlaps api `echo` (`/api/echo`)",
    );
    check(
        &api("    routePatterns: [\"/api/echo/v2\"]"),
        ":33:21: route pattern `/api/echo/v2` overlaps api `echo` (`/api/echo`)",
    );
    check(
        "  - name: extra\n    routePatterns: [/x]\n    serveSE: { funcName: Serve, extension: nope }\n",
        ":33:33: unknown service extension `nope`",
    );
    check(
        "  - name: extra\n    routePatterns: [/x]\n    serveSE: { funcName: IsAuthenticated, extension: api }\n",
        ":33:16: this position calls the Serve hook, not IsAuthenticated",
    );
    check(
        &api("    routePatterns: [/x]\n    maxRequestBodyBytes: 1048577"),
        ":34:5: maxRequestBodyBytes must be 0..=1048576, not 1048577",
    );
    check(
        &api("    routePatterns: [/x]\n    methods: [GET, get]"),
        ":34:20: `get` is not an HTTP method",
    );
    check(
        &api("    routePatterns: [/x]\n    methods: []"),
        ":34:5: an api needs at least one method",
    );
    check(
        &api("    routePatterns: [/x]\n    authentication: anyone"),
        ":34:5: unknown authentication `anyone`",
    );
    check(
        &api("    routePatterns: [/x]\n    authentication: public\n    idps: [local]"),
        ":35:5: a public api reads no session: `idps` has no effect",
    );
    check(
        &api("    routePatterns: [/x]\n    idps: [okta]"),
        ":34:12: unknown connector `okta`",
    );
    check(
        &api("    routePatterns: []"),
        ":33:5: an api needs at least one route pattern",
    );
    check(
        "  - name: web\n    routePatterns: [/x]\n    serveSE: { funcName: Serve, extension: api }\n",
        ":31:5: `web` is also the name of app `web`",
    );
    assert!(failures.is_empty(), "{}", failures.join("\n----\n"));
    // A component without the hook.
    let other = guest("trap");
    let yaml = config(up, "").replace(
        "limits: { timeoutMillis: 300 } }",
        &format!("limits: {{ timeoutMillis: 300 }} }}\n  - {{ name: trap, file: \"{other}\" }}"),
    ) + "  - name: extra\n    routePatterns: [/x]\n    serveSE: { funcName: Serve, extension: trap }\n";
    let (code, out) = validate(&yaml);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(":34:33: "), "{out}");
    assert!(out.contains("serve"), "{out}");
    // A clean configuration passes.
    let (code, out) = validate(&config(up, ""));
    assert_eq!(code, 0, "{out}");
}

/// An api may not take an endpoint of the built-in OpenID provider.
#[tokio::test]
async fn validate_refuses_a_provider_endpoint() {
    let keys = tempfile::tempdir().unwrap();
    let g = guest("api-serve");
    let yaml = local_provider_config(&keys, "rp", "", "")
        + &format!(
            "serviceExtensions:\n  - {{ name: api, file: \"{g}\" }}\napis:\n  - name: tokens\n    routePatterns: [\"/oauth2\"]\n    serveSE: {{ funcName: Serve, extension: api }}\n"
        );
    let (code, out) = validate_with(&yaml, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(
            "route pattern `/oauth2` overlaps the gateway's OpenID provider endpoint `/oauth2/authorize`"
        ),
        "{out}"
    );
}
