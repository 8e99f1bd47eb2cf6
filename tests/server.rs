//! The listener: TLS with HTTP/2 and HTTP/1.1 by ALPN, malformed requests, health and
//! metrics, graceful shutdown.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::*;

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
