//! The request path in process: the compiled configuration and `server::service::handle`
//! called with requests built here (no socket to the gateway), one test per phase's refusals.
//! What the phases forward is checked at the real echo upstream, as in the socket tests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tessera::config::{load_str, Environment};
use tessera::runtime::Runtime;
use tessera::secrets::SecretProvider;
use tessera::server::service;
use tessera::store::StorePool;
use tessera::telemetry::metrics::Metrics;
use tessera::web::body::{Body, RequestBody};

use crate::support::{self, free_port, hidden, upstream, Echo, DEFAULT_POLICIES};

/// Everything public, for the phases after authentication.
const OPEN: &str = r#"      - location: /
        authentication: { allowUnauthenticated: true }
        authorization: { allowAll: true }
"#;

/// The configuration compiled as `tessera run` compiles it.
fn runtime(yaml: &str) -> Arc<Runtime> {
    let secrets = SecretProvider::from_url(None).unwrap();
    let env = Environment {
        secrets: &secrets,
        stores: Arc::new(StorePool::new()),
        metrics: Arc::new(Metrics::new()),
    };
    match load_str(yaml, Path::new("inprocess.yaml"), Path::new("."), &env) {
        Ok(rt) => Arc::new(rt),
        Err(report) => panic!("config refused: {report}"),
    }
}

/// One answer, read whole.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or(""))
    }

    fn echo(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not an echo ({e}): {}", self.body))
    }

    /// The cookie pair `name=value` the answer sets.
    fn cookie(&self, name: &str) -> String {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .and_then(|v| v.split(';').next())
            .unwrap_or_else(|| panic!("no {name} cookie set"))
            .to_string()
    }
}

async fn read(resp: Response<Body>) -> Answer {
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

const PEER: &str = "127.0.0.1:40000";

/// Sends `method target` with `headers` and `body` through the whole request path.
async fn send(
    rt: &Arc<Runtime>,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "gateway.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(RequestBody::local(body.to_string())).unwrap();
    let peer: SocketAddr = PEER.parse().unwrap();
    read(service::handle(rt.clone(), req, peer, "http").await).await
}

async fn get(rt: &Arc<Runtime>, target: &str, headers: &[(&str, &str)]) -> Answer {
    send(rt, "GET", target, headers, "").await
}

/// Signs `user` in through the login form, in process; returns the session cookie pair.
async fn sign_in(rt: &Arc<Runtime>, user: &str) -> String {
    let start = get(rt, "/private", &[]).await;
    assert_eq!(start.status, 302, "{}", start.body);
    let flow_cookie = start.cookie("tessera_login");
    let page = get(
        rt,
        &format!("{}&idp=local", start.header("location")),
        &[("cookie", &flow_cookie)],
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let form = format!(
        "flow={}&csrf={}&idp=local&username={user}&password=pw",
        hidden(&page.body, "flow"),
        hidden(&page.body, "csrf")
    );
    let done = send(
        rt,
        "POST",
        "/.tessera/login",
        &[
            ("cookie", &flow_cookie),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &form,
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    done.cookie("tessera_session")
}

/// Edge (before any app): input checks, the canonical path, routing.
#[tokio::test]
async fn edge_refusals() {
    let up = upstream().await;
    let rt = runtime(&support::config(up, "", DEFAULT_POLICIES));

    // Two cookie headers, each under the header cap, together over the cookie cap (16 KiB).
    let half = format!("a={}", "x".repeat(9000));
    let r = get(&rt, "/public", &[("cookie", &half), ("cookie", &half)]).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("cookies are too large"), "{}", r.body);

    let r = get(&rt, "/public/..;/admin", &[]).await;
    assert_eq!(r.status, 400, "path parameters are refused at the edge");

    let r = get(&rt, "/public%2Fadmin", &[]).await;
    assert_eq!(r.status, 400, "an encoded separator is refused: {}", r.body);

    // Encoded dot segments are resolved before matching: this is `/admin`, not `/public`.
    let r = get(&rt, "/public/%2e%2e/admin", &[]).await;
    assert_eq!(r.status, 302, "{}", r.body);

    let r = get(&rt, "/ADMIN", &[]).await;
    // Case-sensitive app: `/ADMIN` is an ordinary path under `/`, which needs a sign-in.
    assert_eq!(r.status, 302);
    assert!(r.header("location").starts_with("/.tessera/login?flow="));
    assert!(
        !r.header("x-request-id").is_empty(),
        "every answer names its request"
    );
}

/// `policy`: a path no policy covers is closed.
#[tokio::test]
async fn policy_refuses_an_uncovered_path() {
    let up = upstream().await;
    let policies = r#"      - location: /public
        authentication: { allowUnauthenticated: true }
        authorization: { allowAll: true }
"#;
    let rt = runtime(&support::config(up, "", policies));
    let r = get(&rt, "/elsewhere", &[]).await;
    assert_eq!(r.status, 403);
    assert!(
        r.body.contains("No access policy covers this page"),
        "{}",
        r.body
    );
    let r = get(&rt, "/public/x", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo()["path"], "/public/x");
}

/// `authenticate`: a browser GET is sent to sign in; a request whose body can't be replayed
/// after a sign-in gets 401; a forged or unknown session cookie is no session.
#[tokio::test]
async fn authenticate_refusals() {
    let up = upstream().await;
    let rt = runtime(&support::config(up, "", DEFAULT_POLICIES));

    let r = get(&rt, "/private?q=1", &[]).await;
    assert_eq!(r.status, 302);
    assert!(r.header("location").starts_with("/.tessera/login?flow="));

    let r = send(&rt, "POST", "/private", &[], "a=1").await;
    assert_eq!(r.status, 401);

    let forged = format!("tessera_session={}", "A".repeat(43));
    let r = get(&rt, "/private", &[("cookie", &forged)]).await;
    assert_eq!(r.status, 302, "an unknown session id is no session");

    // Signed in: through, with the identity headers from the session only.
    let cookie = sign_in(&rt, "bob").await;
    let r = get(&rt, "/private", &[("cookie", &cookie), ("x-user", "alice")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let echo = Echo(r.echo());
    assert_eq!(
        echo.header("x-user"),
        ["bob"],
        "the client's own X-User never arrives"
    );
}

/// `authorize`: rules say no → 403, the upstream never sees the request; an app with an
/// `unauthorizedPage` redirects there instead.
#[tokio::test]
async fn authorize_refusals() {
    let up = upstream().await;
    let rt = runtime(&support::config(up, "", DEFAULT_POLICIES));
    let bob = sign_in(&rt, "bob").await;
    let r = get(&rt, "/admin/users", &[("cookie", &bob)]).await;
    assert_eq!(r.status, 403);
    assert!(
        r.body.contains("not allowed to open this page"),
        "{}",
        r.body
    );

    let rt = runtime(&support::config(
        up,
        "    unauthorizedPage: /public/denied.html",
        DEFAULT_POLICIES,
    ));
    let bob = sign_in(&rt, "bob").await;
    let r = get(&rt, "/admin/users", &[("cookie", &bob)]).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), "/public/denied.html");
    let alice = sign_in(&rt, "alice").await;
    let r = get(&rt, "/admin/users", &[("cookie", &alice)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo()["path"], "/admin/users");
}

/// `upstream`: unreachable → 502, too slow → 504; the session and the request were fine.
#[tokio::test]
async fn upstream_refusals() {
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let rt = runtime(&support::config(dead, "", OPEN));
    let r = get(&rt, "/x", &[]).await;
    assert_eq!(r.status, 502, "{}", r.body);

    let up = upstream().await;
    let rt = runtime(&support::config(
        up,
        "    timeouts: { connectMillis: 1000, responseHeaderMillis: 200 }",
        OPEN,
    ));
    let r = get(&rt, "/slow?ms=2000", &[]).await;
    assert_eq!(r.status, 504, "{}", r.body);
    let r = get(&rt, "/slow?ms=10", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// `upstream_request`: an in-process body is forwarded whole, like a body from the wire.
#[tokio::test]
async fn the_body_the_client_sends_is_the_body_the_upstream_gets() {
    let up = upstream().await;
    let rt = runtime(&support::config(up, "", OPEN));
    let body = "x".repeat(100_000);
    let r = send(&rt, "POST", "/upload", &[], &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "100000");
}

/// `authenticate`, the store's side: a session store that is down answers 503 (fail closed),
/// never the page and never a sign-in loop.
#[tokio::test]
async fn a_store_that_is_down_answers_503() {
    let up = upstream().await;
    let dead = free_port();
    let yaml = format!(
        "{}session: {{ store: shared }}\ncaches:\n  - name: shared\n    type: redis\n    redis: {{ addresses: [\"127.0.0.1:{dead}\"], timeoutMillis: 200 }}\n",
        support::config(up, "", DEFAULT_POLICIES)
    );
    let rt = runtime(&yaml);
    let cookie = format!("tessera_session={}", "A".repeat(43));
    let r = get(&rt, "/private", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    // A public path with no session cookie needs no store: served although it is down.
    let r = get(&rt, "/public/x", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(Echo(r.echo()).path(), "/public/x");
}

/// `load_attributes`: an attribute provider whose directory is down answers 503; the upstream
/// never gets a request authorized without its attributes.
#[tokio::test]
async fn a_directory_that_is_down_answers_503() {
    let up = upstream().await;
    let dead = free_port();
    let yaml = support::config(
        up,
        "    attrProviders: [{ connector: dir, usernameMapping: local.username }]",
        DEFAULT_POLICIES,
    )
    .replace(
        "apps:\n",
        &format!(
            "  - name: dir\n    type: ldap\n    url: ldap://127.0.0.1:{dead}\n    bindDN: \"cn=svc,dc=example,dc=com\"\n    bindPassword: unused\n    baseDN: \"ou=people,dc=example,dc=com\"\n    searchFilter: \"(uid={{username}})\"\n    attributes: [mail]\n    timeoutMillis: 500\napps:\n"
        ),
    );
    let rt = runtime(&yaml);
    let bob = sign_in(&rt, "bob").await;
    let r = get(&rt, "/private", &[("cookie", &bob)]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        !r.body.contains("\"path\""),
        "the upstream was reached: {}",
        r.body
    );
}

/// `response`: an upstream `Set-Cookie` for the gateway's session cookie is dropped; the
/// app's own cookies pass.
#[tokio::test]
async fn the_upstream_cannot_set_the_session_cookie() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let answer = "HTTP/1.1 200 OK\r\nSet-Cookie: tessera_session=planted; Path=/\r\nSet-Cookie: app=1; Path=/\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    let rt = runtime(&support::config(up, "", OPEN));
    let r = get(&rt, "/x", &[]).await;
    assert_eq!(r.status, 200);
    let cookies: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(cookies, ["app=1; Path=/"]);
}
