//! The trust boundary (issue #12, findings 1–5 and 11) through the real binary, each checked
//! by what the upstream received: path parameters, case and trailing-character variants,
//! h2c upgrades, identity-header spellings, trust headers and trusted proxies, cookies an
//! upstream tries to set.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends `request` as raw bytes (so nothing normalises the path on the way) and reads the
/// whole answer (the request should say `Connection: close`): status, head, body.
async fn raw(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// A GET of `path` (sent as is) with extra header lines.
async fn get(gw: &Gateway, path: &str, extra: &str) -> (u16, String, String) {
    raw(
        gw.addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{extra}Connection: close\r\n\r\n",
            gw.addr
        ),
    )
    .await
}

/// The echo upstream's JSON from a raw answer's body (the body may be chunked).
fn echo_of(status: u16, body: &str) -> Echo {
    assert_eq!(status, 200, "upstream not reached: {body}");
    let start = body.find('{').expect("json body");
    let end = body.rfind('}').unwrap();
    Echo(serde_json::from_str(&body[start..=end]).unwrap())
}

const POLICIES_WITH_CSS: &str = r#"      - location: /public
        authentication: { allowUnauthenticated: true }
        authorization: { allowAll: true }
      - location: "~ \\.(css|js)$"
        authentication: { allowUnauthenticated: true }
        authorization: { allowAll: true }
      - location: /admin
        authentication: { idps: [local] }
        authorization:
          rules: { attribute: local.groups, contains: admins }
      - location: /
        authentication: { idps: [local] }
        authorization: { allowAll: true }
"#;

/// Finding 1: `;` path parameters are refused by default — before any upstream sees them.
#[tokio::test]
async fn path_parameters_are_refused_by_default() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", POLICIES_WITH_CSS));
    let (bob, _) = login(&gw, "/", "local", "bob", "pw").await;
    let cookie = format!("Cookie: {bob}\r\n");
    for path in [
        "/public/..;/admin",
        "/admin;x",
        "/admin;jsessionid=1/users",
        "/admin/secret;.css",
        "/public/..%3B/admin",
    ] {
        for c in ["", cookie.as_str()] {
            let (status, _, body) = get(&gw, path, c).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert!(body.contains("Bad request"), "{path}: {body}");
            assert!(
                !body.contains("\"path\""),
                "{path} reached the upstream: {body}"
            );
        }
    }
    // the gateway's own endpoints take no parameters either
    let (status, _, _) = get(&gw, "/.tessera/login;x", "").await;
    assert_eq!(status, 400);
}

/// Finding 1, `pathParameters: strip`: parameters are removed before matching and the
/// upstream receives exactly the path that was authorized.
#[tokio::test]
async fn stripped_path_parameters_match_and_forward_the_same_path() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "    pathParameters: strip", POLICIES_WITH_CSS));
    // anonymous: none of these is public any more
    for path in ["/public/..;/admin", "/admin/secret;.css", "/admin;x"] {
        let (status, head, _) = get(&gw, path, "").await;
        assert_eq!(status, 302, "{path}");
        assert!(head.contains("/.tessera/login?flow="), "{path}: {head}");
    }
    let (bob, _) = login(&gw, "/", "local", "bob", "pw").await;
    let (alice, _) = login(&gw, "/", "local", "alice", "pw").await;
    for path in ["/public/..;/admin", "/admin;x", "/admin;jsessionid=1/users"] {
        let (status, _, body) = get(&gw, path, &format!("Cookie: {bob}\r\n")).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    for (path, forwarded) in [
        ("/public/..;/admin", "/admin"),
        ("/admin;jsessionid=1/users", "/admin/users"),
        ("/admin;x/..;/public;y/z", "/public/z"),
    ] {
        let (status, _, body) = get(&gw, path, &format!("Cookie: {alice}\r\n")).await;
        assert_eq!(echo_of(status, &body).path(), forwarded, "{path}");
    }
}

/// Finding 2: trailing dots and white space are refused; `caseInsensitivePaths` matches and
/// forwards the folded path.
#[tokio::test]
async fn case_and_trailing_character_variants() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let (bob, _) = login(&gw, "/", "local", "bob", "pw").await;
    let c = format!("Cookie: {bob}\r\n");
    for path in [
        "/admin.",
        "/admin%20",
        "/admin%09",
        "/admin./users",
        "/admin%E3%80%80",
    ] {
        let (status, _, body) = get(&gw, path, &c).await;
        assert!(status == 400, "{path}: {status} {body}");
    }
    // a case-sensitive upstream serves /ADMIN as another resource: the `/` policy applies and
    // the upstream gets /ADMIN, not /admin
    let (status, _, body) = get(&gw, "/ADMIN", &c).await;
    assert_eq!(echo_of(status, &body).path(), "/ADMIN");

    let ci = Gateway::start(&config(
        up,
        "    caseInsensitivePaths: true",
        DEFAULT_POLICIES,
    ));
    let (bob, _) = login(&ci, "/", "local", "bob", "pw").await;
    let (alice, _) = login(&ci, "/", "local", "alice", "pw").await;
    for path in ["/ADMIN", "/Admin/users", "/aDmIn;", "/%41dmin"] {
        let (status, _, body) = get(&ci, path, &format!("Cookie: {bob}\r\n")).await;
        let want = if path.contains(';') { 400 } else { 403 };
        assert_eq!(status, want, "{path}: {body}");
    }
    let (status, _, body) = get(&ci, "/Admin/Users?Q=1", &format!("Cookie: {alice}\r\n")).await;
    let echo = echo_of(status, &body);
    assert_eq!(echo.path(), "/admin/users");
    assert_eq!(echo.0["query"], "Q=1", "the query is not folded");

    let lax = Gateway::start(&config(
        up,
        "    allowTrailingDotOrSpace: true",
        DEFAULT_POLICIES,
    ));
    let (bob, _) = login(&lax, "/", "local", "bob", "pw").await;
    let (status, _, body) = get(&lax, "/admin.", &format!("Cookie: {bob}\r\n")).await;
    assert_eq!(echo_of(status, &body).path(), "/admin.");
}

/// A raw upstream: records each request head, answers with `answer(head)` (one request per
/// connection: answers say `Connection: close` so the gateway does not pool them).
struct RawUpstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawUpstream {
    async fn start(answer: fn(&str) -> String) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    seen.lock().unwrap().push(head.clone());
                    let _ = s.write_all(answer(&head).as_bytes()).await;
                    // hold the connection a moment, as a tunnel would
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                });
            }
        });
        RawUpstream { addr, heads }
    }

    fn last_head(&self) -> String {
        self.heads
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

/// An upstream that accepts h2c: it switches protocols whenever it is asked to.
fn h2c_upstream(head: &str) -> String {
    if head.to_ascii_lowercase().contains("upgrade: h2c") {
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nTUNNEL"
            .into()
    } else {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nplain".into()
    }
}

/// Finding 3: an h2c upgrade is never forwarded; the request goes on as a plain one, and an
/// upstream switching protocols unasked gets the client a 502, not a tunnel.
#[tokio::test]
async fn h2c_upgrades_are_not_forwarded() {
    let up = RawUpstream::start(h2c_upstream).await;
    let gw = Gateway::start(&config(up.addr, "", DEFAULT_POLICIES));
    let (status, head, body) = get(
        &gw,
        "/public",
        "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n",
    )
    .await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, "plain");
    let received = up.last_head().to_ascii_lowercase();
    assert!(!received.contains("upgrade"), "{received}");
    assert!(!received.contains("http2-settings"), "{received}");
    // a POST or a listed-with-others upgrade is no upgrade either
    for (method, upgrade) in [("POST", "websocket"), ("GET", "websocket, h2c")] {
        let (status, _, _) = raw(
            gw.addr,
            &format!("{method} /public HTTP/1.1\r\nHost: x\r\nUpgrade: {upgrade}\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 200, "{method} {upgrade}");
        assert!(!up.last_head().to_ascii_lowercase().contains("upgrade"));
    }
    // an upstream that switches protocols on its own
    fn always_101(_: &str) -> String {
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nTUNNEL"
            .into()
    }
    let rogue = RawUpstream::start(always_101).await;
    let gw = Gateway::start(&config(rogue.addr, "", DEFAULT_POLICIES));
    let (status, _, body) = get(&gw, "/public", "").await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.contains("TUNNEL"));
    // `upgrades` refuses h2c in the configuration
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(
        &file,
        config(up.addr, "    upgrades: [websocket, h2c]", DEFAULT_POLICIES),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("upgrading to `h2c` cannot be allowed"),
        "{err}"
    );
}

/// Finding 4: no spelling of an identity header reaches the upstream, signed in or not.
#[tokio::test]
async fn identity_header_spellings_are_stripped_on_every_path() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let forged = "X_User: root\r\nX.User: root\r\nx-user: root\r\nX-User: root2\r\nX_GROUPS: admins\r\nx.email: r@x\r\nX-Userx: kept\r\n";
    let (status, _, body) = get(&gw, "/public/p", forged).await;
    let echo = echo_of(status, &body);
    for name in [
        "x_user", "x.user", "x-user", "x_groups", "x.email", "x-groups", "x-email",
    ] {
        assert_eq!(
            echo.header(name),
            Vec::<String>::new(),
            "{name} reached the upstream"
        );
    }
    assert_eq!(echo.one("x-userx").as_deref(), Some("kept"));
    let (bob, _) = login(&gw, "/", "local", "bob", "pw").await;
    let (status, _, body) = get(&gw, "/p", &format!("{forged}Cookie: {bob}\r\n")).await;
    let echo = echo_of(status, &body);
    assert_eq!(echo.header("x-user"), vec!["bob"]);
    assert_eq!(echo.header("x-groups"), vec!["staff"]);
    for name in ["x_user", "x.user", "x_groups", "x.email"] {
        assert_eq!(
            echo.header(name),
            Vec::<String>::new(),
            "{name} reached the upstream"
        );
    }
}

/// Finding 5: routing and trust headers never pass from a client; X-Forwarded-* are the
/// gateway's; only a trusted proxy may report the client's address and scheme.
#[tokio::test]
async fn trust_headers_and_trusted_proxies() {
    let up = upstream().await;
    let forged = "X-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nForwarded: for=6.6.6.6;proto=https\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nX_Forwarded_For: 7.7.7.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nTrue-Client-IP: 6.6.6.6\r\n";
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let (status, _, body) = get(&gw, "/public", forged).await;
    let echo = echo_of(status, &body);
    for name in [
        "x-original-url",
        "x-rewrite-url",
        "forwarded",
        "x-real-ip",
        "x_forwarded_for",
        "true-client-ip",
    ] {
        assert_eq!(
            echo.header(name),
            Vec::<String>::new(),
            "{name} reached the upstream"
        );
    }
    assert_eq!(echo.header("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(echo.header("x-forwarded-proto"), vec!["http"]);
    assert_eq!(echo.header("x-forwarded-host"), vec![gw.addr.to_string()]);
    // the access log and the flow cookie believe the peer, not the headers
    let (status, head, _) = get(
        &gw,
        "/p",
        "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Request-Id: direct-1\r\n",
    )
    .await;
    assert_eq!(status, 302);
    assert!(!head.to_ascii_lowercase().contains("; secure"), "{head}");
    let line = gw.wait_log("direct-1\"");
    assert!(line.contains("\"client_ip\":\"127.0.0.1\""), "{line}");

    // behind a trusted proxy (the test client is on 127.0.0.1)
    let yaml = config(up, "", DEFAULT_POLICIES).replace(
        r#"http: { address: "127.0.0.1:0" }"#,
        r#"http: { address: "127.0.0.1:0", trustedProxies: ["127.0.0.0/8"] }"#,
    );
    let gw = Gateway::start(&yaml);
    let (status, _, body) = get(
        &gw,
        "/public",
        "X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\nX-Forwarded-Proto: https\r\nX-Real-IP: 6.6.6.6\r\n",
    )
    .await;
    let echo = echo_of(status, &body);
    assert_eq!(
        echo.header("x-forwarded-for"),
        vec!["203.0.113.7, 127.0.0.1"]
    );
    assert_eq!(echo.header("x-forwarded-proto"), vec!["https"]);
    assert_eq!(echo.header("x-real-ip"), Vec::<String>::new());
    let (status, head, _) = get(
        &gw,
        "/p",
        "X-Forwarded-For: 203.0.113.8\r\nX-Forwarded-Proto: https\r\nX-Request-Id: proxied-1\r\n",
    )
    .await;
    assert_eq!(status, 302);
    let set_cookie = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: tessera_login=")
        })
        .unwrap_or_else(|| panic!("{head}"));
    assert!(set_cookie.ends_with("; Secure"), "{set_cookie}");
    let line = gw.wait_log("proxied-1\"");
    assert!(line.contains("\"client_ip\":\"203.0.113.8\""), "{line}");
    // plain http reported by the proxy: no Secure
    let (_, head, _) = get(&gw, "/p", "X-Forwarded-Proto: http\r\n").await;
    assert!(!head.contains("; Secure"), "{head}");

    // session.cookie.secure: always
    let yaml = config(up, "", DEFAULT_POLICIES).replace(
        "connectors:",
        "session: { cookie: { secure: always } }\nconnectors:",
    );
    let gw = Gateway::start(&yaml);
    let (_, head, _) = get(&gw, "/p", "").await;
    let set_cookie = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: tessera_login=")
        })
        .unwrap_or_else(|| panic!("{head}"));
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
}

/// Finding 11: an upstream cannot set the gateway's own cookies.
#[tokio::test]
async fn upstreams_cannot_set_the_gateways_cookies() {
    fn planting(_: &str) -> String {
        "HTTP/1.1 200 OK\r\nSet-Cookie: tessera_session=planted; Path=/\r\nSet-Cookie: tessera_login=planted\r\nSet-Cookie: app=1; Path=/\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".into()
    }
    let up = RawUpstream::start(planting).await;
    let gw = Gateway::start(&config(up.addr, "", DEFAULT_POLICIES));
    let (status, head, body) = get(&gw, "/public", "").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let cookies: Vec<&str> = head
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .collect();
    assert_eq!(cookies, ["set-cookie: app=1; Path=/"]);
}
