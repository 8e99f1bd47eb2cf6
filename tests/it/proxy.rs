//! Proxy apps end to end through the real binary: policies, rules, identity headers,
//! forwarding, streaming, WebSockets, upstream failures.

use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn unauthenticated_request_is_sent_to_login_and_back() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let (cookie, back) = login(&gw, "/reports?year=2024&q=a%20b", "local", "alice", "pw").await;
    assert_eq!(back, "/reports?year=2024&q=a%20b");
    let echo = Echo::from(
        client()
            .get(gw.url(&back))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.path(), "/reports");
    assert_eq!(echo.0["query"], "year=2024&q=a%20b");
    assert_eq!(echo.one("x-user").as_deref(), Some("alice"));
    assert_eq!(echo.one("x-email").as_deref(), Some("alice@example.com"));
    assert_eq!(echo.one("x-groups").as_deref(), Some("admins,staff"));
}

#[tokio::test]
async fn identity_headers_sent_by_the_client_are_replaced_or_removed() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    // anonymous on a public location: forged headers must be stripped, not forwarded
    let echo = Echo::from(
        client()
            .get(gw.url("/public/x"))
            .header("X-User", "root")
            .header("x-email", "root@example.com")
            .header("X-Groups", "admins")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.header("x-user"), Vec::<String>::new());
    assert_eq!(echo.header("x-email"), Vec::<String>::new());
    assert_eq!(echo.header("x-groups"), Vec::<String>::new());
    // signed in: the session's values replace the client's
    let (cookie, _) = login(&gw, "/", "local", "bob", "pw").await;
    let echo = Echo::from(
        client()
            .get(gw.url("/"))
            .header("cookie", format!("{cookie}; other=1"))
            .header("X-User", "root")
            .header("X-Groups", "admins")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.header("x-user"), vec!["bob"]);
    assert_eq!(echo.header("x-groups"), vec!["staff"]);
    // the gateway's own cookie never reaches the app; others do
    assert_eq!(echo.one("cookie").as_deref(), Some("other=1"));
}

#[tokio::test]
async fn forwarded_headers_request_id_and_host() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let resp = client()
        .get(gw.url("/public"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-host", "forged.example")
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-42");
    let echo = Echo::from(resp).await;
    // a client's own X-Forwarded-For is not believed (no trusted proxies): only its address
    assert_eq!(echo.one("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(echo.one("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(echo.one("x-forwarded-host"), Some(gw.addr.to_string()));
    assert_eq!(echo.one("x-request-id").as_deref(), Some("trace-42"));
    assert_eq!(
        echo.one("host"),
        Some(up.to_string()),
        "Host is the upstream's without preserveHost"
    );
    // a request id that is not a plain token is replaced
    let resp = client()
        .get(gw.url("/public"))
        .header("x-request-id", "a b<c>")
        .send()
        .await
        .unwrap();
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(rid, "a b<c>");
    assert_eq!(rid.len(), 16);

    let gw2 = Gateway::start(&config(up, "    preserveHost: true", DEFAULT_POLICIES));
    let echo = Echo::from(
        client()
            .get(gw2.url("/public"))
            .header("host", "app.example.com")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.one("host").as_deref(), Some("app.example.com"));
}

#[tokio::test]
async fn authorization_rules_allow_and_deny() {
    let up = upstream().await;
    let policies = r#"      - location: /eq
        authentication: { idps: [local] }
        authorization: { rules: { attribute: local.email, equals: bob@example.com } }
      - location: /in
        authentication: { idps: [local] }
        authorization: { rules: { attribute: local.level, in: ["2", "3"] } }
      - location: /matches
        authentication: { idps: [local] }
        authorization: { rules: { attribute: local.email, matches: '[a-z]+@example\.com' } }
      - location: /not
        authentication: { idps: [local] }
        authorization: { rules: { not: { attribute: local.groups, contains: admins } } }
      - location: /and
        authentication: { idps: [local] }
        authorization:
          rules:
            and:
              - { attribute: local.groups, contains: staff }
              - { attribute: local.email, containsText: alice }
      - location: /or
        authentication: { idps: [local] }
        authorization:
          rules:
            or:
              - { attribute: local.groups, contains: nobody }
              - { attribute: local.username, equals: bob }
      - location: "~ \\.css$"
        authentication: { allowUnauthenticated: true }
        authorization: { allowAll: true }
      - location: /
        authentication: { idps: [local] }
        authorization: { allowAll: true }
"#;
    let gw = Gateway::start(&config(up, "", policies));
    let (alice, _) = login(&gw, "/", "local", "alice", "pw").await;
    let (bob, _) = login(&gw, "/", "local", "bob", "pw").await;
    let c = client();
    let status = |cookie: &str, path: &str| {
        let cookie = cookie.to_string();
        let url = gw.url(path);
        async move { status_with_cookie(url, cookie).await.as_u16() }
    };
    let expect = [
        ("/eq", 403, 200),
        ("/in", 200, 403),
        ("/matches", 200, 200),
        ("/not", 403, 200),
        ("/and", 200, 403),
        ("/or", 403, 200),
        ("/other", 200, 200),
    ];
    for (path, a, b) in expect {
        assert_eq!(status(&alice, path).await, a, "alice {path}");
        assert_eq!(status(&bob, path).await, b, "bob {path}");
    }
    // regex policy wins over the prefix and lets anonymous users in
    assert_eq!(
        c.get(gw.url("/eq/site.css")).send().await.unwrap().status(),
        200
    );
    let denied = c
        .get(gw.url("/eq"))
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let rid = denied.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let page = denied.text().await.unwrap();
    assert!(page.contains("not allowed to open this page"), "{page}");
    assert!(page.contains(&rid), "error page shows the request id");
    let metrics = c
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tessera_authz_denials_total{app=\"app\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn unauthorized_page_redirect_and_fail_closed_without_policy() {
    let up = upstream().await;
    let policies = r#"      - location: /admin
        authentication: { idps: [local] }
        authorization: { rules: { attribute: local.groups, contains: admins } }
      - location: /public
        authentication: { allowUnauthenticated: true }
        authorization: { allowAll: true }
"#;
    let gw = Gateway::start(&config(
        up,
        "    unauthorizedPage: /public/denied.html",
        policies,
    ));
    let (bob, _) = login(&gw, "/admin", "local", "bob", "pw").await;
    let r = client()
        .get(gw.url("/admin"))
        .header("cookie", &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/public/denied.html");
    // no policy covers /elsewhere: closed, even for a signed-in user
    let r = client()
        .get(gw.url("/elsewhere"))
        .header("cookie", &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn path_tricks_cannot_bypass_policies() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let (bob, _) = login(&gw, "/", "local", "bob", "pw").await;
    let c = client();
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "//admin",
        "/%61dmin",
        "/public/./../admin/x",
    ] {
        let r = c
            .get(gw.url(path))
            .header("cookie", &bob)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path} must hit the /admin policy");
        let r = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 302, "{path} anonymous must be asked to log in");
    }
    for path in [
        "/public%2f..%2fadmin",
        "/public%5c..%5cadmin",
        "/a%zz",
        "/a%ff",
        "/x%00",
    ] {
        let r = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
    }
    // the upstream receives the normalized path it was authorized for
    let echo = Echo::from(c.get(gw.url("/public/a/../b//c")).send().await.unwrap()).await;
    assert_eq!(echo.path(), "/public/b/c");
}

#[tokio::test]
async fn upstream_down_gives_502_and_slow_upstream_504() {
    // a port with nothing listening
    let dead: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let gw = Gateway::start(&config(dead, "", DEFAULT_POLICIES));
    let r = client().get(gw.url("/public")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let page = r.text().await.unwrap();
    assert!(page.contains("not reachable") && page.contains(&rid));
    // an outage under load is logged once per interval with a count, not once per request
    for _ in 0..100 {
        let r = client().get(gw.url("/public")).send().await.unwrap();
        assert_eq!(r.status(), 502);
    }
    let lines = gw
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("upstream request failed"))
        .count();
    assert!(
        (1..=2).contains(&lines),
        "101 failed requests wrote {lines} WARN lines"
    );

    let up = upstream().await;
    let policies = "      - location: /\n        authentication: { allowUnauthenticated: true }\n        authorization: { allowAll: true }\n";
    let gw = Gateway::start(&config(
        up,
        "    timeouts: { responseHeaderMillis: 300 }",
        policies,
    ));
    let started = std::time::Instant::now();
    let r = client().get(gw.url("/slow?ms=3000")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tessera_upstream_errors_total{app=\"app\",kind=\"timeout\"} 1"),
        "{metrics}"
    );
}

const OPEN: &str = "      - location: /\n        authentication: { allowUnauthenticated: true }\n        authorization: { allowAll: true }\n";

#[tokio::test]
async fn large_bodies_stream_without_buffering() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", OPEN));
    let c = client();
    // warm up the connection pool and allocator
    c.get(gw.url("/bytes?n=1048576"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let before = gw.rss_kib();
    const SIZE: u64 = 100 * 1024 * 1024;
    // download 100 MiB, reading it as a stream
    let mut resp = c
        .get(gw.url(&format!("/bytes?n={SIZE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = 0u64;
    let mut peak = before;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        got += chunk.len() as u64;
        if got % (8 * 1024 * 1024) < chunk.len() as u64 {
            peak = peak.max(gw.rss_kib());
        }
    }
    assert_eq!(got, SIZE);
    // upload 100 MiB as a stream
    let chunk = bytes::Bytes::from(vec![b'y'; 256 * 1024]);
    let stream =
        futures_util::stream::iter((0..400).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let resp = c
        .post(gw.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), SIZE.to_string());
    peak = peak.max(gw.rss_kib());
    let growth_mib = (peak.saturating_sub(before)) / 1024;
    assert!(
        growth_mib < 32,
        "RSS grew by {growth_mib} MiB while streaming 100 MiB"
    );
}

#[tokio::test]
#[allow(clippy::result_large_err)] // tungstenite's handshake callback signature
async fn websocket_upgrade_passes_through() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    // a real WebSocket echo server as the upstream
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_hdr_async(
                    stream,
                    |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                        // the upstream sees the identity header on the upgrade request
                        let user = req
                            .headers()
                            .get("x-user")
                            .map(|v| v.to_str().unwrap().to_string());
                        assert_eq!(user.as_deref(), Some("alice"));
                        Ok(resp)
                    },
                )
                .await
                .unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() {
                        ws.send(Message::text(format!("echo:{}", msg.to_text().unwrap())))
                            .await
                            .unwrap();
                    }
                }
            });
        }
    });
    let policies = "      - location: /\n        authentication: { idps: [local] }\n        authorization: { allowAll: true }\n";
    let gw = Gateway::start(&config(ws_addr, "", policies));
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/socket", gw.addr),
    )
    .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(Message::text(format!("hi{i}"))).await.unwrap();
        let m = ws.next().await.unwrap().unwrap();
        assert_eq!(m.to_text().unwrap(), format!("echo:hi{i}"));
    }
    // without a session the upgrade is refused with a login redirect
    let anon = tokio_tungstenite::connect_async(format!("ws://{}/socket", gw.addr)).await;
    match anon {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 302),
        other => panic!("expected HTTP 302, got {other:?}"),
    }
}

#[tokio::test]
async fn routing_by_host_and_path_prefix() {
    let up = upstream().await;
    let hash = pw_hash();
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - {{ name: local, type: local, users: [{{ username: u, passwordHash: "{hash}" }}] }}
apps:
  - name: legacy
    type: proxy
    routePatterns: ["/legacy"]
    upstream: http://{up}/base
    headers: [{{ name: X-App, value: legacy }}]
    policies: [{{ location: /, authentication: {{ allowUnauthenticated: true }}, authorization: {{ allowAll: true }} }}]
  - name: hosted
    type: proxy
    routePatterns: ["app.example.com"]
    upstream: http://{up}
    headers: [{{ name: X-App, value: hosted }}]
    policies: [{{ location: /, authentication: {{ allowUnauthenticated: true }}, authorization: {{ allowAll: true }} }}]
"#
    );
    let gw = Gateway::start(&yaml);
    let c = client();
    let echo = Echo::from(c.get(gw.url("/legacy/page")).send().await.unwrap()).await;
    assert_eq!(echo.one("x-app").as_deref(), Some("legacy"));
    assert_eq!(echo.path(), "/base/legacy/page");
    let echo = Echo::from(
        c.get(gw.url("/legacy/x"))
            .header("host", "app.example.com")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        echo.one("x-app").as_deref(),
        Some("hosted"),
        "host-specific route wins"
    );
    let r = c.get(gw.url("/legacyx")).send().await.unwrap();
    assert_eq!(r.status(), 404, "prefix matches on segment boundaries only");
    let r = c.get(gw.url("/status")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"status":"up"}"#);
}

/// An upstream answering `ok` that counts the connections it accepted; stops with the task.
async fn counting_upstream(
    listener: tokio::net::TcpListener,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            connections.spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from("ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (accepted, task)
}

#[tokio::test]
async fn upstream_connections_are_reused_and_replaced_after_a_restart() {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let (accepted, task) = counting_upstream(listener).await;
    let gw = Gateway::start(&config(up, "", OPEN));
    let c = client();
    for _ in 0..20 {
        let r = c.get(gw.url("/page")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    // one request at a time: one upstream connection carried all of them
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // the upstream restarts on the same port; its old connections are gone
    task.abort();
    let _ = task.await;
    let listener = tokio::net::TcpListener::bind(up).await.unwrap();
    let (accepted, _task) = counting_upstream(listener).await;
    for _ in 0..5 {
        let r = c.get(gw.url("/page")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}
