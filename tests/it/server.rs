//! The listener: TLS with HTTP/2 and HTTP/1.1 by ALPN, malformed requests, health and
//! metrics, graceful shutdown.

use std::io::{Read, Write};
use std::time::Duration;

use crate::support::*;

const OPEN: &str = "      - location: /\n        authentication: { allowUnauthenticated: true }\n        authorization: { allowAll: true }\n";

fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert_path, key_path, cert_pem)
}

#[tokio::test]
async fn tls_serves_http2_and_http1_with_secure_cookies() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = self_signed(dir.path());
    let yaml = config(up, "", DEFAULT_POLICIES).replace(
        "http: { address: \"127.0.0.1:0\" }",
        &format!(
            "http: {{ address: \"127.0.0.1:0\", tls: main }}\ntls:\n  main: {{ certFile: {}, keyFile: {} }}",
            cert.display(),
            key.display()
        ),
    );
    let gw = Gateway::start(&yaml);
    let port = gw.addr.port();
    let root = reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap();
    let h2 = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .redirect(reqwest::redirect::Policy::none())
        .resolve("localhost", gw.addr)
        .build()
        .unwrap();
    let r = h2
        .get(format!("https://localhost:{port}/public"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN picks h2");
    let echo = Echo::from(r).await;
    assert_eq!(echo.one("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        echo.one("x-forwarded-host").as_deref(),
        Some(format!("localhost:{port}").as_str())
    );
    let h1 = reqwest::Client::builder()
        .add_root_certificate(root)
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("localhost", gw.addr)
        .build()
        .unwrap();
    let r = h1
        .get(format!("https://localhost:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 302);
    let flow = full_set_cookie(&r, "tessera_login").unwrap();
    assert!(flow.contains("; Secure"), "{flow}");
    // the login over h2 sets a Secure session cookie
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let flow_pair = flow.split(';').next().unwrap().to_string();
    let html = h2
        .get(format!("https://localhost:{port}{loc}"))
        .header("cookie", &flow_pair)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = h2
        .post(format!("https://localhost:{port}/.tessera/login"))
        .header("cookie", &flow_pair)
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
    assert!(full_set_cookie(&r, "tessera_session")
        .unwrap()
        .contains("; Secure"));
    let session = set_cookie(&r, "tessera_session").unwrap();
    let echo = Echo::from(
        h2.get(format!("https://localhost:{port}/"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.one("x-user").as_deref(), Some("alice"));
}

#[tokio::test]
async fn tls_min_version_is_enforced() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = self_signed(dir.path());
    let yaml = config(up, "", OPEN).replace(
        "http: { address: \"127.0.0.1:0\" }",
        &format!(
            "http: {{ address: \"127.0.0.1:0\", tls: main }}\ntls:\n  main: {{ certFile: {}, keyFile: {}, minVersion: \"1.3\" }}",
            cert.display(),
            key.display()
        ),
    );
    let gw = Gateway::start(&yaml);
    let root = reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap();
    let tls12 = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .resolve("localhost", gw.addr)
        .build()
        .unwrap();
    assert!(tls12
        .get(format!("https://localhost:{}/", gw.addr.port()))
        .send()
        .await
        .is_err());
    let tls13 = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", gw.addr)
        .build()
        .unwrap();
    assert_eq!(
        tls13
            .get(format!("https://localhost:{}/", gw.addr.port()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Sends raw bytes and returns the status line of the answer.
fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_the_gateway_keeps_serving() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", OPEN));
    let a = gw.addr;
    assert!(raw(a, b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(raw(a, b"GARBAGE\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(raw(a, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").starts_with("HTTP/1.1 400"));
    // a cookie with non-ASCII bytes
    assert!(raw(a, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: tessera_session=\xff\xfe\r\n\r\n").starts_with("HTTP/1.1 400"));
    // an enormous header section
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..2000 {
        big.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "a".repeat(60)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let line = raw(a, &big);
    assert!(
        line.starts_with("HTTP/1.1 431") || line.starts_with("HTTP/1.1 400"),
        "{line}"
    );
    // a single oversized header value
    let r = client()
        .get(gw.url("/"))
        .header("x-big", "v".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // bad percent-encoding in the path
    assert!(raw(
        a,
        b"GET /%E0%A4%A HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .starts_with("HTTP/1.1 400"));
    // still serving
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn health_and_metrics() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", OPEN));
    let c = client();
    c.get(gw.url("/hello")).send().await.unwrap();
    let r = c.get(gw.url("/status")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), r#"{"status":"up"}"#);
    let m = c
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "# TYPE tessera_http_requests counter",
        "tessera_http_requests_total{app=\"app\",status=\"200\"} 1",
        "# TYPE tessera_http_request_duration_seconds histogram",
        "tessera_http_request_duration_seconds_bucket{le=\"0.0001\",app=\"app\",status=\"200\"}",
    ] {
        assert!(m.contains(name), "missing {name} in\n{m}");
    }
    // every log line of a request carries its id
    let r = c
        .get(gw.url("/hello"))
        .header("x-request-id", "req-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let line = gw.wait_log("req-abc-123");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["span"]["request_id"], "req-abc-123");
    assert_eq!(v["app"], "app");
    assert_eq!(v["status"], 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let up = upstream().await;
    let mut gw = Gateway::start(&config(up, "", OPEN));
    let c = client();
    let url = gw.url("/slow?ms=1500");
    let in_flight = tokio::spawn(async move { c.get(url).send().await });
    // give the request time to reach the upstream
    tokio::time::sleep(Duration::from_millis(400)).await;
    gw.signal("TERM");
    let resp = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "slow done");
    let code = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(10)));
    assert_eq!(code, Some(0));
    assert!(gw.logs().contains("shutting down"));
    // nothing listens any more
    assert!(std::net::TcpStream::connect(gw.addr).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_is_bounded() {
    let up = upstream().await;
    let yaml = config(up, "", OPEN).replace(
        "http: { address: \"127.0.0.1:0\" }",
        "http: { address: \"127.0.0.1:0\", shutdownTimeoutSeconds: 1 }",
    );
    let mut gw = Gateway::start(&yaml);
    let c = client();
    let url = gw.url("/slow?ms=20000");
    let in_flight = tokio::spawn(async move { c.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.signal("TERM");
    let started = std::time::Instant::now();
    let code = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(10)));
    assert_eq!(code, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exited after the 1 s bound"
    );
    assert!(
        in_flight.await.unwrap().is_err(),
        "the stuck request was cut off"
    );
}

/// `config(...)` with more `http` settings.
fn with_http(yaml: &str, extra: &str) -> String {
    let plain = "http: { address: \"127.0.0.1:0\" }";
    assert!(yaml.contains(plain));
    yaml.replace(
        plain,
        &format!("http: {{ address: \"127.0.0.1:0\", {extra} }}"),
    )
}

/// Reads one HTTP/1.1 response (head and a `Content-Length` body) from a raw connection.
async fn read_response(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                return String::from_utf8_lossy(&buf[..end + 4 + len]).into_owned();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("no complete response within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads until the gateway closes the connection; returns what arrived and when it closed.
async fn read_until_closed(s: &mut tokio::net::TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout(limit, s.read(&mut chunk)).await {
            Err(_) => panic!(
                "still open after {limit:?}; received {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(Err(_)) => 0, // a reset is a close too
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            return (buf, started.elapsed());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// POSTs a form announcing 200 bytes and sends one byte every 100 ms; returns the answer
/// and how long after the head it came.
async fn drip_post(addr: std::net::SocketAddr, path: &str) -> (String, Duration) {
    use tokio::io::AsyncWriteExt;
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let dripper = tokio::spawn(async move {
        for _ in 0..200 {
            if wr.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let answer = read_response(&mut rd).await;
    let took = started.elapsed();
    dripper.abort();
    (answer, took)
}

#[tokio::test]
async fn a_dripping_sign_in_form_gets_408_at_the_body_timeout() {
    let up = upstream().await;
    let gw = Gateway::start(&with_http(
        &config(up, "", OPEN),
        "limits: { bodyReadTimeoutSeconds: 1 }",
    ));
    let (answer, took) = drip_post(gw.addr, "/.tessera/login").await;
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("The sign-in form took too long to arrive. Please try again."),
        "{answer}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // still serving
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn a_dripping_token_request_gets_408_json_at_the_body_timeout() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("es256.pem");
    std::fs::write(
        &key,
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256).unwrap(),
    )
    .unwrap();
    let up = upstream().await;
    let yaml = format!(
        "{}  - name: webapp\n    type: oidc\n    clientID: webapp\n    clientSecret: s3cret-s3cret-s3cret\n    redirectURLs: [\"https://rp.example.com/cb\"]\n    grantTypes: [client_credentials]\n    authentication: {{ idps: [local] }}\noidcProvider:\n  issuer: http://localhost:1234\n  signingKeys: [{{ file: {}, alg: ES256 }}]\n",
        config(up, "", OPEN),
        key.display()
    );
    let gw = Gateway::start(&with_http(&yaml, "limits: { bodyReadTimeoutSeconds: 1 }"));
    let (answer, took) = drip_post(gw.addr, "/oauth2/token").await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\ncontent-type: application/json"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "error": "invalid_request",
            "error_description": "the request body did not arrive in time",
        })
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // an ordinary token request still works
    let r = client()
        .post(gw.url("/oauth2/token"))
        .basic_auth("webapp", Some("s3cret-s3cret-s3cret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn silent_slow_and_idle_clients_are_closed_at_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let up = upstream().await;
    let gw = Gateway::start(&with_http(
        &config(up, "", OPEN),
        "limits: { headerReadTimeoutSeconds: 1 }",
    ));
    let in_bounds =
        |took: Duration| took >= Duration::from_millis(900) && took < Duration::from_secs(3);
    // connects and never sends a byte (hyper alone waits forever for the first bytes)
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (got, took) = read_until_closed(&mut s, Duration::from_secs(8)).await;
    assert_eq!(got, b"", "silent");
    assert!(in_bounds(took), "silent: {took:?}");
    // starts a request head and never finishes it
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    let (got, took) = read_until_closed(&mut s, Duration::from_secs(8)).await;
    assert_eq!(got, b"", "partial head");
    assert!(in_bounds(took), "partial head: {took:?}");
    // one request, then an idle keep-alive connection
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /kept HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = read_response(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let (got, took) = read_until_closed(&mut s, Duration::from_secs(8)).await;
    assert_eq!(got, b"", "idle keep-alive");
    assert!(in_bounds(took), "idle keep-alive: {took:?}");
    // an HTTP/2 (prior knowledge) connection with no stream: GOAWAY, then closed
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (got, took) = read_until_closed(&mut s, Duration::from_secs(8)).await;
    assert!(in_bounds(took), "idle h2: {took:?}");
    let mut frame_types = Vec::new();
    let mut rest = &got[..];
    while rest.len() >= 9 {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        frame_types.push(rest[3]);
        rest = &rest[(9 + len).min(rest.len())..];
    }
    assert!(
        frame_types.contains(&0x7),
        "a GOAWAY frame: {frame_types:?}"
    );
    // still serving
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn connections_over_the_cap_get_503_and_a_freed_slot_is_served() {
    use tokio::io::AsyncWriteExt;
    let up = upstream().await;
    let gw = Gateway::start(&with_http(
        &config(up, "", OPEN),
        "limits: { maxConnections: 2 }",
    ));
    let mut held = Vec::new();
    for i in 0..2 {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(format!("GET /held{i} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let answer = read_response(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        held.push(s);
    }
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let _ = s
        .write_all(b"GET /third HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let (got, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\nconnection: close\r\ncache-control: no-store\r\ncontent-length: 52\r\n\r\nThe gateway is at its connection limit; retry soon.\n"
    );
    gw.wait_log("connection limit reached");
    // one held connection closes: its slot serves the next client
    drop(held.pop());
    let started = std::time::Instant::now();
    let echo = loop {
        let r = client().get(gw.url("/again")).send().await;
        match r {
            Ok(r) if r.status() == 200 => break Echo::from(r).await,
            other => {
                assert!(
                    started.elapsed() < Duration::from_secs(3),
                    "no slot freed: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(echo.path(), "/again");
}

#[tokio::test]
async fn the_admin_listener_serves_metrics_and_the_main_one_does_not() {
    let up = upstream().await;
    let gw = Gateway::start(&with_http(
        &config(up, "", OPEN),
        "adminAddress: \"127.0.0.1:0\"",
    ));
    let c = client();
    assert_eq!(c.get(gw.url("/hello")).send().await.unwrap().status(), 200);
    // main listener: /metrics is an ordinary path, here routed to the app
    let r = c.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echo = Echo::from(r).await;
    assert_eq!(echo.path(), "/metrics", "the upstream received it");
    // admin listener: the Prometheus text
    let r = c.get(gw.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let m = r.text().await.unwrap();
    assert!(m.contains("# TYPE tessera_http_requests counter"), "{m}");
    assert!(
        m.contains("tessera_http_requests_total{app=\"app\",status=\"200\"} 2"),
        "{m}"
    );
    // status on both; nothing else on the admin listener
    for url in [gw.url("/status"), gw.admin_url("/status")] {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.text().await.unwrap(), r#"{"status":"up"}"#, "{url}");
    }
    let r = c.get(gw.admin_url("/hello")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), r#"{"error":"not found"}"#);
    let r = c.post(gw.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 405);

    // a reload cannot move the admin listener: it warns, and the metrics stay where they are
    let admin = gw.admin_addr();
    std::fs::write(
        &gw.config,
        std::fs::read_to_string(&gw.config).unwrap().replace(
            "adminAddress: \"127.0.0.1:0\"",
            "adminAddress: \"127.0.0.1:1\"",
        ),
    )
    .unwrap();
    gw.signal("HUP");
    gw.wait_log("http.adminAddress changed to 127.0.0.1:1: the admin listener stays on");
    gw.wait_log("config reloaded");
    let r = c
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("tessera_http_requests_total"));
    assert_eq!(
        Echo::from(c.get(gw.url("/metrics")).send().await.unwrap())
            .await
            .path(),
        "/metrics"
    );
}

#[tokio::test]
async fn public_status_names_nothing_and_the_admin_status_names_what_is_down() {
    let up = upstream().await;
    // a store that refuses connections (nothing listens on port 1)
    let yaml = format!(
        "{}session: {{ store: shared }}\ncaches:\n  - name: shared\n    type: redis\n    redis: {{ addresses: [\"127.0.0.1:1\"], timeoutMillis: 300 }}\n",
        config(up, "", OPEN)
    );
    for admin in [false, true] {
        let yaml = if admin {
            with_http(&yaml, "adminAddress: \"127.0.0.1:0\"")
        } else {
            yaml.clone()
        };
        let gw = Gateway::start(&yaml);
        let r = client().get(gw.url("/status")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(
            r.text().await.unwrap(),
            r#"{"status":"down"}"#,
            "admin: {admin}"
        );
        gw.wait_log("readiness: down");
        if admin {
            let r = client().get(gw.admin_url("/status")).send().await.unwrap();
            assert_eq!(r.status(), 503);
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["status"], "down");
            let err = v["stores"]["shared"].as_str().unwrap();
            assert!(err.contains("redis"), "{v}");
            assert_eq!(v["directories"], serde_json::json!({}));
        }
    }
}
