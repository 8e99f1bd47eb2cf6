//! Observability of the real binary: the access log line (request id, app, user subject,
//! decision, status, latency) and what must never be logged; OpenTelemetry spans received by a
//! real OTLP/HTTP endpoint (a hyper server decoding the protobuf export) with W3C trace
//! context propagated to the upstream; and the documented Prometheus metrics.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;

const PASSWORD: &str = "Correct-Horse-7f3a-Battery";

/// The support config with every user's password set to `PASSWORD`, plus an app whose
/// upstream refuses connections.
fn observed_config(up: SocketAddr) -> String {
    let hash = tessera::connectors::local::hash_password(PASSWORD).unwrap();
    config(up, "", DEFAULT_POLICIES).replace(pw_hash(), &hash)
        + r#"  - name: down
    type: proxy
    routePatterns: ["/down"]
    upstream: http://127.0.0.1:1
    policies:
      - location: /
        authentication: { allowUnauthenticated: true }
        authorization: { allowAll: true }
"#
}

/// The access line of the request with id `id`, as JSON.
fn access_line(gw: &Gateway, id: &str) -> serde_json::Value {
    let needle = format!(r#""request_id":"{id}""#);
    let start = Instant::now();
    loop {
        let found = gw
            .logs
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("tessera::access") && l.contains(&needle))
            .cloned();
        if let Some(l) = found {
            return serde_json::from_str(&l).unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no access line for {id}:\n{}",
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn send(gw: &Gateway, path: &str, id: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut r = client().get(gw.url(path)).header("x-request-id", id);
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    r.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_line_says_who_what_and_how_and_no_secret_is_logged() {
    let up = upstream().await;
    let gw = Gateway::start(&observed_config(up));
    let client_traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    // anonymous, on a public location, with a token in the query and a bearer header
    let r = client()
        .get(gw.url("/public?access_token=qs-secret-51d9"))
        .header("x-request-id", "obs-public")
        .header("authorization", "Bearer hdr-token-91c2")
        .header("traceparent", client_traceparent)
        .send()
        .await
        .unwrap();
    let echo = Echo::from(r).await;
    // traces are off: the caller's trace context passes through untouched
    assert_eq!(echo.one("traceparent").as_deref(), Some(client_traceparent));

    let (alice, _) = login(&gw, "/", "local", "alice", PASSWORD).await;
    let (bob, _) = login(&gw, "/", "local", "bob", PASSWORD).await;
    assert_eq!(
        send(&gw, "/", "obs-alice", Some(&alice)).await.status(),
        200
    );
    assert_eq!(
        send(&gw, "/admin", "obs-bob-admin", Some(&bob))
            .await
            .status(),
        403
    );
    assert_eq!(send(&gw, "/", "obs-anon", None).await.status(), 302);
    assert_eq!(send(&gw, "/status", "obs-status", None).await.status(), 200);
    assert_eq!(send(&gw, "/down", "obs-down", None).await.status(), 502);

    let g = &gw;
    let lines = tokio::task::block_in_place(|| {
        [
            "obs-public",
            "obs-alice",
            "obs-bob-admin",
            "obs-anon",
            "obs-status",
            "obs-down",
        ]
        .map(|id| access_line(g, id))
    });
    let expected = [
        ("app", "-", "allowed", 200),
        ("app", "alice", "allowed", 200),
        ("app", "bob", "denied", 403),
        ("app", "-", "login_required", 302),
        ("-", "-", "gateway", 200),
        ("down", "-", "error", 502),
    ];
    for (v, (app, user, decision, status)) in lines.iter().zip(expected) {
        assert_eq!(v["target"], "tessera::access", "{v}");
        assert_eq!(v["level"], "INFO", "{v}");
        assert_eq!(v["app"], app, "{v}");
        assert_eq!(v["user"], user, "{v}");
        assert_eq!(v["decision"], decision, "{v}");
        assert_eq!(v["status"], status, "{v}");
        assert!(v["latency_us"].is_u64(), "{v}");
        assert_eq!(v["client_ip"], "127.0.0.1", "{v}");
        assert_eq!(v["request_id"], v["span"]["request_id"], "{v}");
    }

    // never a cookie value, password or token, in any line
    let logs = gw.logs();
    let value = |pair: &str| pair.split_once('=').unwrap().1.to_string();
    for secret in [
        value(&alice),
        value(&bob),
        PASSWORD.to_string(),
        "qs-secret-51d9".to_string(),
        "hdr-token-91c2".to_string(),
    ] {
        assert!(!logs.contains(&secret), "{secret} is in the log:\n{logs}");
    }
}

/// The names, types of the metrics documented in docs/operations-metrics.md.
fn documented_metrics() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/operations-metrics.md"
    ))
    .unwrap();
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `tessera_"))
        .map(|rest| {
            let mut cells = rest.split('|');
            let name = format!(
                "tessera_{}",
                cells.next().unwrap().trim().trim_end_matches('`')
            );
            let kind = cells.next().unwrap().trim().to_string();
            (name, kind)
        })
        .collect()
}

#[tokio::test]
async fn the_documented_metrics_are_the_ones_exposed() {
    let up = upstream().await;
    let gw = Gateway::start(&observed_config(up));
    // a family shows once it has a series: a login, a denial, an upstream failure
    let (bob, _) = login(&gw, "/", "local", "bob", PASSWORD).await;
    assert_eq!(status_with_cookie(gw.url("/admin"), &bob).await, 403);
    assert_eq!(
        client().get(gw.url("/down")).send().await.unwrap().status(),
        502
    );
    let text = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let documented = documented_metrics();
    assert!(documented.len() >= 8, "{documented:?}");
    for (name, kind) in &documented {
        // Extension metrics need an extension: tests/it/extensions.rs checks they are exposed.
        if name.starts_with("tessera_extension_") {
            continue;
        }
        // Store metrics need a Redis cache: tests/it/redis.rs checks they are exposed.
        if name.starts_with("tessera_store_") {
            continue;
        }
        // A refused token request makes this one: tests/it/provider.rs checks it is exposed.
        if name == "tessera_oidc_token_requests_limited_total" {
            continue;
        }
        // A logout notice makes this one: tests/it/logout.rs checks it is exposed.
        if name == "tessera_logout_notices_total" {
            continue;
        }
        // the text format names a counter family without its `_total` suffix
        let family = match kind.as_str() {
            "counter" => name.strip_suffix("_total").expect(name),
            _ => name.as_str(),
        };
        let line = format!("# TYPE {family} {kind}");
        assert!(
            text.contains(&line),
            "documented {name} not exposed:\n{text}"
        );
    }
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split_whitespace().nth(2).unwrap();
        assert!(
            documented
                .iter()
                .any(|(n, _)| n == family || n.strip_suffix("_total") == Some(family)),
            "{family} is exposed but not documented in docs/operations-metrics.md"
        );
    }
}

/// Spans received, with the resource's `service.name`.
type Received = Arc<Mutex<Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>>>;

/// An OTLP/HTTP receiver: POST /v1/traces with a protobuf `ExportTraceServiceRequest`.
async fn otlp_receiver() -> (SocketAddr, Received) {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let ok = req.method() == hyper::Method::POST
                            && req.uri().path() == "/v1/traces"
                            && req.headers()["content-type"] == "application/x-protobuf";
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let status = match ExportTraceServiceRequest::decode(body) {
                            Ok(export) if ok => {
                                let mut sink = sink.lock().unwrap();
                                for rs in export.resource_spans {
                                    let service = rs
                                        .resource
                                        .iter()
                                        .flat_map(|r| &r.attributes)
                                        .find(|a| a.key == "service.name")
                                        .and_then(|a| a.value.as_ref()?.value.clone())
                                        .map(|v| match v {
                                            any_value::Value::StringValue(s) => s,
                                            other => format!("{other:?}"),
                                        })
                                        .unwrap_or_default();
                                    for ss in rs.scope_spans {
                                        for span in ss.spans {
                                            sink.push((service.clone(), span));
                                        }
                                    }
                                }
                                200
                            }
                            _ => 400,
                        };
                        let mut resp =
                            hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        resp.headers_mut().insert(
                            "content-type",
                            hyper::header::HeaderValue::from_static("application/x-protobuf"),
                        );
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, received)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_of_a_proxied_request_reach_the_otlp_endpoint_and_the_upstream_joins_the_trace() {
    let up = upstream().await;
    let (otlp, received) = otlp_receiver().await;
    let line = "telemetry: { metrics: { location: /metrics } }";
    let yaml = config(up, "", DEFAULT_POLICIES).replace(
        line,
        &format!(
            "telemetry:\n  metrics: {{ location: /metrics }}\n  tracing: {{ otlpEndpoint: \"http://{otlp}\", serviceName: tessera-test, sampleRatio: 1.0 }}"
        ),
    );
    let gw = Gateway::start_with(&yaml, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    gw.wait_log("exporting traces over OTLP/HTTP");
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = client()
        .get(gw.url("/"))
        .header("cookie", &cookie)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    let echo = Echo::from(r).await;
    let sent = echo.one("traceparent").expect("traceparent sent upstream");
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(
        parts[1], trace_id,
        "the upstream request is in the caller's trace"
    );
    assert_ne!(
        parts[2], caller_span,
        "its parent is Tessera's upstream span"
    );
    assert_eq!(parts[3], "01");
    let upstream_span_id = parts[2].to_string();

    // the spans of that request arrive (the batch is sent every 100 ms)
    let wanted = [
        "request",
        "route",
        "authenticate",
        "store.get",
        "authorize",
        "upstream",
    ];
    let start = Instant::now();
    let spans = loop {
        let spans: Vec<_> = received
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| hex(&s.trace_id) == trace_id)
            .cloned()
            .collect();
        if wanted
            .iter()
            .all(|w| spans.iter().any(|(_, s)| s.name == *w))
        {
            break spans;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "spans of the trace: {:?}",
            spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by_name = |name: &str| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.name == name)
            .unwrap()
    };
    assert!(spans.iter().all(|(service, _)| service == "tessera-test"));
    let request = by_name("request");
    assert_eq!(hex(&request.parent_span_id), caller_span);
    assert_eq!(request.kind, 2, "server span");
    for child in ["route", "authenticate", "authorize", "upstream"] {
        assert_eq!(
            by_name(child).parent_span_id,
            request.span_id,
            "{child} is a child of request"
        );
    }
    let upstream_span = by_name("upstream");
    assert_eq!(hex(&upstream_span.span_id), upstream_span_id);
    assert_eq!(upstream_span.kind, 3, "client span");
    let authenticate = by_name("authenticate");
    assert!(
        spans
            .iter()
            .any(|(_, s)| s.name == "store.get" && s.parent_span_id == authenticate.span_id),
        "the session is read inside authenticate"
    );
    let status = request
        .attributes
        .iter()
        .find(|a| a.key == "http.response.status_code")
        .and_then(|a| a.value.as_ref()?.value.clone());
    assert_eq!(status, Some(any_value::Value::IntValue(200)));
}

/// A gateway started with `logger.format: text` (the support `Gateway` reads JSON lines):
/// the child, its address and every stderr line read so far.
struct TextGateway {
    child: std::process::Child,
    addr: String,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for TextGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_text_gateway(yaml: &str) -> TextGateway {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .env_remove("TESSERA_HTTP_ADDRESS")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // split on '\n' only, and keep what is not UTF-8: the test must see lines exactly
        for line in std::io::BufReader::new(stderr).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(a) = line
                .split_once(" listening address=")
                .map(|(_, rest)| rest.split(' ').next().unwrap_or("").to_string())
            {
                let _ = tx.send(a);
            }
            sink.lock().unwrap().push(line);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no listening line:\n{}", lines.lock().unwrap().join("\n")));
    TextGateway {
        child,
        addr,
        lines,
        _dir: dir,
    }
}

/// Issue #12 finding 13: attacker-controlled text (usernames of the login form and of the
/// password grant, OAuth parameter names in error descriptions, paths) cannot split or forge
/// lines of the text log: every line is a well-formed event, and the injected text is on the
/// line of its event, escaped.
#[tokio::test]
async fn text_logs_escape_attacker_controlled_text() {
    let up = crate::support::upstream().await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("es256.pem");
    std::fs::write(
        &key,
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256).unwrap(),
    )
    .unwrap();
    let yaml = config(up, "", DEFAULT_POLICIES)
        .replace("format: json", "format: text")
        .replace(
            "apps:\n",
            &format!(
                "oidcProvider:\n  issuer: http://localhost:1234\n  signingKeys: [{{ file: {}, alg: ES256 }}]\napps:\n",
                key.display()
            ),
        )
        + r#"  - name: rp
    type: oidc
    clientID: rp
    clientSecret: rp-secret-rp-secret-rp
    redirectURLs: []
    grantTypes: [password]
    authentication: { idps: [local] }
"#;
    let gw = start_text_gateway(&yaml);
    let url = |p: &str| format!("http://{}{p}", gw.addr);
    let c = client();
    let evil = "bob\nFAKE level=ERROR\r\u{1b}[31m";

    // the login form, with a wrong password (the username is logged)
    let r = c.get(url("/home")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let flow_cookie = set_cookie(&r, "tessera_login").unwrap();
    let login = url(r.headers()["location"].to_str().unwrap());
    let html = c
        .get(format!("{login}&idp=local"))
        .header("cookie", &flow_cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = c
        .post(url("/.tessera/login"))
        .header("cookie", &flow_cookie)
        .form(&[
            ("flow", hidden(&html, "flow").as_str()),
            ("csrf", hidden(&html, "csrf").as_str()),
            ("idp", "local"),
            ("username", evil),
            ("password", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // the password grant (the username is logged as text)
    let r = c
        .post(url("/oauth2/token"))
        .basic_auth("rp", Some("rp-secret-rp-secret-rp"))
        .form(&[
            ("grant_type", "password"),
            ("username", evil),
            ("password", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // a repeated parameter whose name carries the payload (logged in the description)
    let r = c
        .post(url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("x%0AFAKE+level%3DERROR=1&x%0AFAKE+level%3DERROR=2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // a path with an encoded newline: refused at the edge, and logged on one line
    let r = c.get(url("/public/a%0aFAKE")).send().await.unwrap();
    assert_eq!(r.status(), 400);

    let escaped = r"bob\nFAKE level=ERROR\r\u{1b}[31m";
    let wait = |needle: &str| {
        let start = Instant::now();
        loop {
            if let Some(l) = gw.lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no line with {needle}:\n{}",
                gw.lines.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let line = wait("password grant: wrong username or password");
    assert!(line.contains(&format!("user={escaped}")), "{line}");
    assert!(line.contains(" WARN "), "{line}");
    let line = wait("login failed: wrong username or password");
    assert!(
        line.contains(r#"user="bob\nFAKE level=ERROR\r\u{1b}[31m""#),
        "{line}"
    );
    let line = wait("is repeated");
    assert!(line.contains("token request refused"), "{line}");
    assert!(
        line.contains(r"description=parameter `x\nFAKE level=ERROR` is repeated"),
        "{line}"
    );
    let line = wait("/public/a%0aFAKE");
    assert!(line.contains("INFO"), "{line}");

    // every line is one well-formed event: timestamp, level, then the rest
    let lines = gw.lines.lock().unwrap().clone();
    for l in &lines {
        let mut parts = l.split_whitespace();
        let ts = parts.next().unwrap_or("");
        let level = parts.next().unwrap_or("");
        assert!(
            ts.len() >= 20 && ts.starts_with("20") && ts.ends_with('Z'),
            "not a log line: {l:?} in\n{}",
            lines.join("\n")
        );
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
            "not a log line: {l:?}"
        );
        assert!(
            !l.contains(['\r', '\u{1b}']),
            "raw control character in {l:?}"
        );
    }
}
