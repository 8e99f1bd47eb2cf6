//! Hot reload and the process lifecycle, against the real binary: SIGHUP and file-watch
//! reloads (sessions kept, requests never failed), rejected configurations (positioned report,
//! old configuration serving), coalesced signal storms, Kubernetes ConfigMap symlink swaps,
//! certificate rotation, and graceful shutdown under load.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

/// `yaml` with a `reload` section.
fn with_reload(yaml: &str, reload: &str) -> String {
    let line = "telemetry: { metrics: { location: /metrics } }";
    assert!(yaml.contains(line));
    yaml.replace(line, &format!("{line}\nreload: {reload}"))
}

/// The support config with the `X-Email` header rendered as `<tag> <email>`.
fn tagged_config(up: std::net::SocketAddr, tag: &str, reload: &str) -> String {
    let yaml = config(up, "", DEFAULT_POLICIES);
    let header = r#"value: "{{ local.email }}""#;
    assert!(yaml.contains(header));
    with_reload(
        &yaml.replace(header, &format!(r#"value: "{tag} {{{{ local.email }}}}""#)),
        reload,
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

async fn email_header(gw: &Gateway, cookie: &str) -> String {
    Echo::from(get(gw, "/", cookie).await)
        .await
        .one("x-email")
        .unwrap()
}

async fn metrics(gw: &Gateway) -> String {
    client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

const TEN_S: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_new_headers_and_routes_and_sessions_survive() {
    let up = upstream().await;
    let gw = Gateway::start(&tagged_config(up, "v1", "{ watch: false }"));
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;
    assert_eq!(email_header(&gw, &cookie).await, "v1 alice@example.com");
    // before: /second belongs to the catch-all app
    let echo = Echo::from(get(&gw, "/second", &cookie).await).await;
    assert_eq!(echo.one("x-app"), None);

    let second = format!(
        r#"  - name: second
    type: proxy
    routePatterns: ["/second"]
    upstream: http://{up}
    headers:
      - {{ name: X-App, value: "second {{{{ local.username }}}}" }}
    policies:
      - location: /
        authentication: {{ idps: [local] }}
        authorization: {{ allowAll: true }}
"#
    );
    gw.rewrite_config(&(tagged_config(up, "v2", "{ watch: false }") + &second));
    gw.signal("HUP");
    let line = gw.wait_logs("config reloaded", 1, TEN_S).remove(0);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["source"], "sighup");
    assert_eq!(v["outcome"], "success");
    assert!(v["duration_ms"].is_u64(), "{line}");

    // the same cookie is still signed in, and sees the new template and the new route
    assert_eq!(email_header(&gw, &cookie).await, "v2 alice@example.com");
    let echo = Echo::from(get(&gw, "/second", &cookie).await).await;
    assert_eq!(echo.one("x-app").as_deref(), Some("second alice"));
    let m = metrics(&gw).await;
    for want in [
        r#"tessera_config_reloads_total{outcome="success"} 1"#,
        r#"tessera_config_reloads_total{outcome="failure"} 0"#,
        "tessera_config_last_reload_successful 1",
        // the counters of before the reload are kept
        r#"tessera_logins_total{idp="local",result="success"} 1"#,
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
    assert_eq!(gw.count_logs("config reload rejected"), 0);
}

/// The configuration file with `old` replaced by `new` (which must be there).
fn edit(yaml: &str, old: &str, new: &str) -> String {
    assert!(yaml.contains(old), "{old} not in\n{yaml}");
    yaml.replacen(old, new, 1)
}

/// `FILE:LINE:COL` of the first `needle` in `yaml` (1-based, as reports print them).
fn position(file: &Path, yaml: &str, needle: &str) -> String {
    let (line, text) = yaml
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in\n{yaml}"));
    let col = text.find(needle).unwrap() + 1;
    format!("{}:{}:{}", file.display(), line + 1, col)
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_configs_are_rejected_with_their_position_and_the_old_one_serves() {
    let up = upstream().await;
    let good = tagged_config(up, "v1", "{ watch: false }");
    let gw = Gateway::start(&good);
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;
    let keys_dir = gw.dir.path().join("keys");
    std::fs::create_dir(&keys_dir).unwrap();

    let broken_yaml = edit(
        &tagged_config(up, "v2", "{ watch: false }"),
        r#"routePatterns: ["/"]"#,
        r#"routePatterns: ["/"#,
    );
    let dangling = edit(
        &tagged_config(up, "v2", "{ watch: false }"),
        "authentication: { idps: [local] }\n        authorization: { allowAll: true }",
        "authentication: { idps: [lokal] }\n        authorization: { allowAll: true }",
    );
    let unreadable_key = tagged_config(up, "v2", "{ watch: false }")
        + &format!(
            "oidcProvider:\n  issuer: http://127.0.0.1:9\n  signingKeys:\n    - {{ file: {}, alg: ES256 }}\n",
            keys_dir.display()
        );
    let cases = [
        (broken_yaml, None, "invalid YAML"),
        (
            dangling.clone(),
            Some(position(&gw.config, &dangling, "lokal")),
            "lokal",
        ),
        (
            unreadable_key.clone(),
            Some(position(&gw.config, &unreadable_key, "file:")),
            "cannot read signing key",
        ),
    ];
    for (n, (yaml, at, message)) in cases.iter().enumerate() {
        gw.rewrite_config(yaml);
        gw.signal("HUP");
        let lines = gw.wait_logs("config reload rejected", n + 1, TEN_S);
        assert_eq!(lines.len(), n + 1, "one error line per rejected reload");
        let line = &lines[n];
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["level"], "ERROR");
        assert_eq!(v["outcome"], "failure");
        let report = v["report"].as_str().unwrap();
        assert!(report.contains(message), "{report}");
        match at {
            Some(at) => assert!(report.contains(&format!("{at}: ")), "{at} not in {report}"),
            None => {
                // the parser's position: FILE:LINE:COL with numbers
                let prefix = format!("{}:", gw.config.display());
                let rest = report.strip_prefix(&prefix).expect(report);
                let mut parts = rest.splitn(3, ':');
                assert!(parts.next().unwrap().parse::<u32>().is_ok(), "{report}");
                assert!(parts.next().unwrap().parse::<u32>().is_ok(), "{report}");
            }
        }
        // the report is in the log once, in this one line (as JSON writes it)
        let first = serde_json::to_string(report.lines().next().unwrap()).unwrap();
        let first = first.trim_matches('"');
        assert_eq!(gw.count_logs(first), 1, "{first}");
        // the old configuration serves, the session too
        assert_eq!(email_header(&gw, &cookie).await, "v1 alice@example.com");
    }
    let m = metrics(&gw).await;
    assert!(
        m.contains(r#"tessera_config_reloads_total{outcome="failure"} 3"#),
        "{m}"
    );
    assert!(m.contains("tessera_config_last_reload_successful 0"), "{m}");
    assert_eq!(gw.count_logs("config reloaded"), 0);

    // and a good one still goes in afterwards
    gw.rewrite_config(&tagged_config(up, "v3", "{ watch: false }"));
    gw.signal("HUP");
    gw.wait_logs("config reloaded", 1, TEN_S);
    assert_eq!(email_header(&gw, &cookie).await, "v3 alice@example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_file_watch_reloads_changes_and_rejects_a_bad_file_once() {
    let up = upstream().await;
    let watch = "{ watch: true, intervalMillis: 100 }";
    let gw = Gateway::start(&tagged_config(up, "v1", watch));
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;

    gw.rewrite_config(&tagged_config(up, "v2", watch));
    let line = gw.wait_logs("config reloaded", 1, TEN_S).remove(0);
    assert!(line.contains(r#""source":"file""#), "{line}");
    assert_eq!(email_header(&gw, &cookie).await, "v2 alice@example.com");

    // a broken file is tried once, not at every check
    gw.rewrite_config("version: 1\napps: [\n");
    let line = gw.wait_logs("config reload rejected", 1, TEN_S).remove(0);
    assert!(line.contains(r#""source":"file""#), "{line}");
    // ten more checks of the same file
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(gw.count_logs("config reload rejected"), 1, "{}", gw.logs());
    assert_eq!(email_header(&gw, &cookie).await, "v2 alice@example.com");

    // once fixed, it goes in
    gw.rewrite_config(&tagged_config(up, "v3", watch));
    gw.wait_logs("config reloaded", 2, TEN_S);
    assert_eq!(email_header(&gw, &cookie).await, "v3 alice@example.com");
    assert_eq!(gw.count_logs("config reloaded"), 2, "{}", gw.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_never_fail_while_the_config_is_reloaded() {
    let up = upstream().await;
    let gw = Arc::new(Gateway::start(&tagged_config(up, "v0", "{ watch: false }")));
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (gw, cookie, stop) = (gw.clone(), cookie.clone(), stop.clone());
        let (ok, failed) = (ok.clone(), failed.clone());
        loops.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let r = c.get(gw.url("/")).header("cookie", &cookie).send().await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        let body: serde_json::Value = r.json().await.unwrap();
                        let echo = Echo(body);
                        assert!(echo.one("x-email").unwrap().ends_with(" alice@example.com"));
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for i in 1..=5 {
        let before = ok.load(Ordering::Relaxed);
        gw.rewrite_config(&tagged_config(up, &format!("v{i}"), "{ watch: false }"));
        gw.signal("HUP");
        let g = gw.clone();
        tokio::task::spawn_blocking(move || g.wait_logs("config reloaded", i, TEN_S))
            .await
            .unwrap();
        // requests went on meanwhile
        while ok.load(Ordering::Relaxed) < before + 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) >= 50);
    assert_eq!(email_header(&gw, &cookie).await, "v5 alice@example.com");
}

/// A TCP server that accepts connections and never answers: an IdP discovery against it
/// takes the connector's whole timeout.
async fn black_hole() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sighup_storm_is_coalesced() {
    let up = upstream().await;
    let hole = black_hole().await;
    // Each reload discovers this IdP again and waits 1 s for it: a storm of signals arrives
    // while the first reload is running.
    let idp = format!(
        r#"  - name: slow
    type: oidc
    oidcWellKnownURL: http://{hole}/.well-known/openid-configuration
    oauthClientID: gw
    oauthClientSecret: not-used
    oauthRedirectURL: http://127.0.0.1:9/slow/callback
    onDiscoveryFailure: degrade
    timeoutMillis: 1000
"#
    );
    let yaml = edit(
        &tagged_config(up, "v1", "{ watch: false }"),
        "connectors:\n",
        &format!("connectors:\n{idp}"),
    );
    let mut gw = Gateway::start(&yaml);
    let pid = gw.pid().to_string();
    for _ in 0..50 {
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
    }
    // the first reload and at most one more that was pending
    let g = &gw;
    let first = tokio::task::block_in_place(|| g.wait_logs("config reloaded", 1, TEN_S));
    assert!(first[0].contains(r#""source":"sighup""#));
    // long enough for two more reloads, had more been queued
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let n = gw.count_logs("config reloaded");
    assert!(
        (1..=2).contains(&n),
        "{n} reloads for 50 signals:\n{}",
        gw.logs()
    );
    let m = metrics(&gw).await;
    assert!(
        m.contains(&format!(
            r#"tessera_config_reloads_total{{outcome="success"}} {n}"#
        )),
        "{m}"
    );
    assert!(
        gw.wait_exit(Duration::from_millis(1)).is_none(),
        "SIGHUP must not end the process"
    );
}

/// A Kubernetes ConfigMap volume: `tessera.yaml -> ..data/tessera.yaml`, `..data -> ..<ts>`.
struct ConfigMap {
    root: std::path::PathBuf,
    generation: usize,
}

impl ConfigMap {
    fn new(root: &Path, yaml: &str) -> Self {
        let mut m = ConfigMap {
            root: root.to_path_buf(),
            generation: 0,
        };
        m.publish(yaml);
        std::os::unix::fs::symlink("..data/tessera.yaml", root.join("tessera.yaml")).unwrap();
        m
    }

    /// The kubelet's update: a new timestamped directory, `..data_tmp` pointing to it, renamed
    /// over `..data` (atomic), the old directory removed.
    fn publish(&mut self, yaml: &str) {
        self.generation += 1;
        let dir = format!("..2026_01_01_00_00_0{}", self.generation);
        std::fs::create_dir(self.root.join(&dir)).unwrap();
        std::fs::write(self.root.join(&dir).join("tessera.yaml"), yaml).unwrap();
        let tmp = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(&dir, &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
        if self.generation > 1 {
            let old = format!("..2026_01_01_00_00_0{}", self.generation - 1);
            std::fs::remove_dir_all(self.root.join(old)).unwrap();
        }
    }

    /// Removes `..data`: the mounted file is missing until the next `publish`.
    fn unlink(&self) {
        std::fs::remove_file(self.root.join("..data")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configmap_swap_is_followed_and_a_missing_file_is_not_read_as_empty() {
    let up = upstream().await;
    let watch = "{ watch: true, intervalMillis: 100 }";
    let dir = tempfile::tempdir().unwrap();
    let mut map = ConfigMap::new(dir.path(), &tagged_config(up, "v1", watch));
    let path = dir.path().join("tessera.yaml");
    let gw = Gateway::start_file(path, dir, &[]);
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;

    // an atomic swap
    map.publish(&tagged_config(up, "v2", watch));
    gw.wait_logs("config reloaded", 1, TEN_S);
    assert_eq!(email_header(&gw, &cookie).await, "v2 alice@example.com");

    // a swap with the file missing for a while (several checks)
    map.unlink();
    tokio::time::sleep(Duration::from_millis(500)).await;
    map.publish(&tagged_config(up, "v3", watch));
    gw.wait_logs("config reloaded", 2, TEN_S);
    assert_eq!(email_header(&gw, &cookie).await, "v3 alice@example.com");
    assert_eq!(gw.count_logs("config reload rejected"), 0, "{}", gw.logs());
    assert_eq!(gw.count_logs("config reloaded"), 2, "{}", gw.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sighup_while_the_file_is_missing_waits_for_it() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut map = ConfigMap::new(dir.path(), &tagged_config(up, "v1", "{ watch: false }"));
    let path = dir.path().join("tessera.yaml");
    let gw = Gateway::start_file(path, dir, &[]);
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;
    map.unlink();
    gw.signal("HUP");
    tokio::time::sleep(Duration::from_millis(600)).await;
    map.publish(&tagged_config(up, "v2", "{ watch: false }"));
    let line = gw.wait_logs("config reloaded", 1, TEN_S).remove(0);
    assert!(line.contains(r#""source":"sighup""#), "{line}");
    assert_eq!(email_header(&gw, &cookie).await, "v2 alice@example.com");
    assert_eq!(gw.count_logs("config reload rejected"), 0, "{}", gw.logs());
}

fn write_cert(dir: &Path) -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    // replaced atomically, as a Secret volume update would
    for (name, pem) in [
        ("cert.pem", cert.cert.pem()),
        ("key.pem", cert.signing_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(format!("{name}.new")), pem).unwrap();
        std::fs::rename(dir.join(format!("{name}.new")), dir.join(name)).unwrap();
    }
    cert.cert.pem()
}

fn trusting(pem: &str, addr: std::net::SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .resolve("localhost", addr)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_certificate_is_served_after_the_watch_reloads_it() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let first = write_cert(dir.path());
    let yaml = edit(
        &config(up, "", DEFAULT_POLICIES),
        "http: { address: \"127.0.0.1:0\" }",
        &format!(
            "http: {{ address: \"127.0.0.1:0\", tls: main }}\ntls:\n  main: {{ certFile: {}, keyFile: {} }}\nreload: {{ intervalMillis: 100 }}",
            dir.path().join("cert.pem").display(),
            dir.path().join("key.pem").display()
        ),
    );
    let gw = Gateway::start_with(&yaml, &[]);
    let url = format!("https://localhost:{}/public", gw.addr.port());
    let old_client = trusting(&first, gw.addr);
    assert_eq!(old_client.get(&url).send().await.unwrap().status(), 200);

    // only the certificate files change, not the configuration file
    let second = write_cert(dir.path());
    let line = gw.wait_logs("config reloaded", 1, TEN_S).remove(0);
    assert!(line.contains(r#""source":"file""#), "{line}");
    let new_client = trusting(&second, gw.addr);
    assert_eq!(new_client.get(&url).send().await.unwrap().status(), 200);
    assert!(
        old_client.get(&url).send().await.is_err(),
        "new handshakes present the new certificate"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_listen_address_needs_a_restart_and_the_rest_applies() {
    let up = upstream().await;
    let gw = Gateway::start(&tagged_config(up, "v1", "{ watch: false }"));
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;
    let moved = edit(
        &tagged_config(up, "v2", "{ watch: false }"),
        "http: { address: \"127.0.0.1:0\" }",
        "http: { address: \"127.0.0.1:1\" }",
    );
    gw.rewrite_config(&moved);
    gw.signal("HUP");
    let line = gw.wait_logs("config reloaded", 1, TEN_S).remove(0);
    assert!(line.contains(r#""restart_needed":1"#), "{line}");
    let warning = gw.wait_log("http.address changed to 127.0.0.1:1");
    assert!(warning.contains("until Tessera is restarted"), "{warning}");
    // still on the old address, with the new headers
    assert_eq!(email_header(&gw, &cookie).await, "v2 alice@example.com");
}

/// An upstream whose every answer takes `delay`; counts the requests that reached it.
async fn slow_upstream(delay: Duration) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrived = Arc::new(AtomicUsize::new(0));
    let count = arrived.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    count.fetch_add(1, Ordering::SeqCst);
                    async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from("slow done")),
                        ))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, arrived)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_completes_in_flight_requests_and_refuses_new_connections() {
    let (up, arrived) = slow_upstream(Duration::from_secs(1)).await;
    let open = "      - location: /\n        authentication: { allowUnauthenticated: true }\n        authorization: { allowAll: true }\n";
    let mut gw = Gateway::start(&config(up, "", open));
    const N: usize = 12;
    let mut in_flight = Vec::new();
    for i in 0..N {
        let url = gw.url(&format!("/work/{i}"));
        in_flight.push(tokio::spawn(async move {
            let r = client().get(url).send().await?;
            let status = r.status();
            Ok::<_, reqwest::Error>((status, r.text().await?))
        }));
    }
    // every request is at the upstream
    while arrived.load(Ordering::SeqCst) < N {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gw.signal("TERM");
    let g = &gw;
    tokio::task::block_in_place(|| g.wait_log("shutting down"));
    assert!(
        std::net::TcpStream::connect(gw.addr).is_err(),
        "no new connections once shutting down"
    );
    for r in in_flight {
        let (status, body) = r.await.unwrap().expect("in-flight request completes");
        assert_eq!(status, 200);
        assert_eq!(body, "slow done");
    }
    let code = tokio::task::block_in_place(|| gw.wait_exit(TEN_S));
    assert_eq!(code, Some(0));
    let g = &gw;
    let done = tokio::task::block_in_place(|| g.wait_logs("\"decision\":\"allowed\"", N, TEN_S));
    assert_eq!(done.len(), N);
}

/// Ids of the connections Redis has from anyone but `own`.
fn redis_client_ids(own: &mut ::redis::Connection) -> Vec<u64> {
    let me: u64 = ::redis::cmd("CLIENT").arg("ID").query(own).unwrap();
    let list: String = ::redis::cmd("CLIENT").arg("LIST").query(own).unwrap();
    let mut ids: Vec<u64> = list
        .lines()
        .filter_map(|l| l.strip_prefix("id="))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .filter(|id| *id != me)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_the_redis_client_and_its_sessions() {
    let server = crate::support::redis::RedisServer::start();
    let up = upstream().await;
    let with_redis = |tag: &str| {
        format!(
            "{}session: {{ store: shared }}\ncaches:\n  - name: shared\n    type: redis\n    redis: {{ addresses: [\"{}\"], timeoutMillis: 500 }}\n",
            tagged_config(up, tag, "{ watch: false }"),
            server.address()
        )
    };
    let gw = Gateway::start(&with_redis("v1"));
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;
    assert_eq!(email_header(&gw, &cookie).await, "v1 alice@example.com");
    let mut own = server.connect();
    // one multiplexed connection, and the client-side cache's tracking connection (made in
    // the background after the first session read)
    let start = std::time::Instant::now();
    let before = loop {
        let ids = redis_client_ids(&mut own);
        if ids.len() >= 2 || start.elapsed() > TEN_S {
            break ids;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(before.len(), 2, "{before:?}");
    for i in 2..=4 {
        gw.rewrite_config(&with_redis(&format!("v{i}")));
        gw.signal("HUP");
        gw.wait_logs("config reloaded", i - 1, TEN_S);
        assert_eq!(
            email_header(&gw, &cookie).await,
            format!("v{i} alice@example.com")
        );
    }
    assert_eq!(
        redis_client_ids(&mut own),
        before,
        "the same connection serves after the reloads"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_level_follows_a_reload() {
    let up = upstream().await;
    let gw = Gateway::start(&tagged_config(up, "v1", "{ watch: false }"));
    let quiet = edit(
        &tagged_config(up, "v2", "{ watch: false }"),
        "logger: { level: info, format: json }",
        "logger: { level: warn, format: json }",
    );
    gw.rewrite_config(&quiet);
    gw.signal("HUP");
    // at warn, `config reloaded` (info) is not logged any more: the metric says it is done
    let done = r#"tessera_config_reloads_total{outcome="success"} 1"#;
    let start = std::time::Instant::now();
    while !metrics(&gw).await.contains(done) {
        assert!(start.elapsed() < TEN_S, "no reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = client()
        .get(gw.url("/public"))
        .header("x-request-id", "after-warn")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // the access line is written before the response: an error logged afterwards is a
    // barrier, after which it would have been read
    gw.rewrite_config("version: 1\napps: [\n");
    gw.signal("HUP");
    gw.wait_logs("config reload rejected", 1, TEN_S);
    assert_eq!(gw.count_logs("after-warn"), 0, "{}", gw.logs());
}
