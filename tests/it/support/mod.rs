//! Test support: the real `tessera` binary on an ephemeral loopback port, a real upstream
//! HTTP app that reports what it received, and a login helper.
#![allow(dead_code)]

pub mod ingress;
pub mod redis;
pub mod slapd;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// `N` distinct free loopback ports. All listeners are held until every port is chosen, so two
/// ports of one call never coincide (the kernel could hand a just-released port out again).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("local addr").port())
}

/// One free loopback port (see [`free_ports`]).
pub fn free_port() -> u16 {
    let [p] = free_ports();
    p
}

/// argon2id hash of "pw" (computed once per test binary).
pub fn pw_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| tessera::connectors::local::hash_password("pw").unwrap())
}

/// A running `tessera run` process; killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
    /// The configuration file given with `--config`.
    pub config: PathBuf,
}

impl Gateway {
    /// Starts the binary with `yaml` (which should use `http.address: 127.0.0.1:0` and json logs).
    pub fn start(yaml: &str) -> Gateway {
        Self::start_with(yaml, &[])
    }

    pub fn start_with(yaml: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tessera.yaml");
        std::fs::write(&path, yaml).unwrap();
        Self::start_file(path, dir, env)
    }

    pub fn start_file(path: PathBuf, dir: tempfile::TempDir, env: &[(&str, &str)]) -> Gateway {
        let config = path.clone();
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--config"]).arg(&path);
        cmd.env_remove("RUST_LOG")
            .env_remove("TESSERA_HTTP_ADDRESS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tessera");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("\"listening\"") {
                    if let Some(tx) = tx.take() {
                        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                        let _ = tx.send(Ok(v["address"].as_str().unwrap().to_string()));
                    }
                }
                sink.lock().unwrap().push(line);
            }
            if let Some(tx) = tx.take() {
                let _ = tx.send(Err(()));
            }
        });
        // Generous: a first start compiles extension components (Python: ~40 s on a loaded
        // 2-core machine); a healthy start takes milliseconds, so this only bounds a failure.
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(a)) => a.parse().unwrap(),
            _ => {
                let _ = child.kill();
                panic!(
                    "tessera did not start:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Gateway {
            child,
            addr,
            logs,
            dir,
            config,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The admin listener's address (`http.adminAddress`), from its start log line.
    pub fn admin_addr(&self) -> SocketAddr {
        let line = self.wait_log("admin listener ready");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        v["address"].as_str().unwrap().parse().unwrap()
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr(), path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits (bounded) until a log line containing `needle` has been read from the process:
    /// the access line is written after the response, so it may trail it slightly.
    pub fn wait_log(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no log line with {needle}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (up to `timeout`) until at least `n` log lines contain `needle`; returns them.
    pub fn wait_logs(&self, needle: &str, n: usize, timeout: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let found: Vec<String> = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                start.elapsed() < timeout,
                "fewer than {n} log lines with {needle}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// How many log lines so far contain `needle`.
    pub fn count_logs(&self, needle: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Replaces the configuration file atomically (write aside, rename), as tools that
    /// update configuration files do.
    pub fn rewrite_config(&self, yaml: &str) {
        let aside = self.config.with_extension("yaml.new");
        std::fs::write(&aside, yaml).unwrap();
        std::fs::rename(&aside, &self.config).unwrap();
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Resident memory of the process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that does not follow redirects and keeps no cookies (tests manage them).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The status of a GET to `url` sent with `cookie`.
pub async fn status_with_cookie(
    url: impl reqwest::IntoUrl,
    cookie: impl AsRef<str>,
) -> reqwest::StatusCode {
    client()
        .get(url)
        .header("cookie", cookie.as_ref())
        .send()
        .await
        .unwrap()
        .status()
}

/// `name=value` of the first Set-Cookie for `name`.
pub fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_string())
}

pub fn full_set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

/// Result of starting a login at `url`: the login page URL and the flow cookie.
pub struct Started {
    pub login_url: String,
    pub flow_cookie: String,
}

/// GETs a protected `path` and expects the redirect to the login page.
pub async fn start_login(gw: &Gateway, path: &str) -> Started {
    let c = client();
    let r = c.get(gw.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 302, "expected a login redirect for {path}");
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("/.tessera/login?flow="), "{loc}");
    Started {
        login_url: gw.url(&loc),
        flow_cookie: set_cookie(&r, "tessera_login").expect("flow cookie"),
    }
}

/// Full login through the form; returns the `tessera_session=...` cookie pair and the
/// redirect target.
pub async fn login(
    gw: &Gateway,
    path: &str,
    idp: &str,
    user: &str,
    password: &str,
) -> (String, String) {
    let r = login_response(gw, path, idp, user, password).await;
    assert_eq!(
        r.status(),
        303,
        "login failed: {}",
        r.text().await.unwrap_or_default()
    );
    let cookie = set_cookie(&r, "tessera_session").expect("session cookie");
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    (cookie, loc)
}

/// Starts a login at `path` and posts the sign-in form; returns the form post's response
/// (a 303 with the session cookie when the login succeeded).
pub async fn login_response(
    gw: &Gateway,
    path: &str,
    idp: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let s = start_login(gw, path).await;
    let c = client();
    let url = if s.login_url.contains("idp=") {
        s.login_url.clone()
    } else {
        format!("{}&idp={idp}", s.login_url)
    };
    let page = c
        .get(&url)
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    c.post(gw.url("/.tessera/login"))
        .header("cookie", &s.flow_cookie)
        .form(&[
            ("flow", hidden(&html, "flow").as_str()),
            ("csrf", hidden(&html, "csrf").as_str()),
            ("idp", idp),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

/// A real upstream app on 127.0.0.1:0. Paths:
/// `/slow?ms=N` answers after N ms; `/bytes?n=N` streams N bytes; `/upload` counts the
/// request body; anything else echoes method, path, query and headers as JSON.
pub async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    Ok::<_, std::convert::Infallible>(upstream_answer(req).await)
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn query_num(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn upstream_answer(req: Request<Incoming>) -> Response<UpBody> {
    match req.uri().path() {
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query_num(&req, "ms"))).await;
            Response::new(Full::new(Bytes::from("slow done")).boxed())
        }
        "/bytes" => {
            let n = query_num(&req, "n");
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::unfold(n, move |left| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let take = left.min(chunk.len() as u64);
                    Some((
                        Ok::<_, std::convert::Infallible>(Frame::data(
                            chunk.slice(..take as usize),
                        )),
                        left - take,
                    ))
                }
            });
            Response::new(StreamBody::new(stream).boxed())
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut total: u64 = 0;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map(|f| f.into_data()) {
                    if let Ok(d) = data {
                        total += d.len() as u64;
                    }
                } else {
                    break;
                }
            }
            Response::new(Full::new(Bytes::from(total.to_string())).boxed())
        }
        _ => {
            let headers: Vec<(String, String)> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).to_string(),
                    )
                })
                .collect();
            let body = serde_json::json!({
                "method": req.method().as_str(),
                "path": req.uri().path(),
                "query": req.uri().query(),
                "headers": headers,
            });
            let mut resp = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
            resp.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            resp
        }
    }
}

/// What the echo upstream saw.
pub struct Echo(pub serde_json::Value);

impl Echo {
    pub async fn from(resp: reqwest::Response) -> Echo {
        assert_eq!(resp.status(), 200, "upstream not reached");
        Echo(resp.json().await.unwrap())
    }
    /// All values of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p[0] == name)
            .map(|p| p[1].as_str().unwrap().to_string())
            .collect()
    }
    pub fn one(&self, name: &str) -> Option<String> {
        let v = self.header(name);
        assert!(v.len() <= 1, "header {name} sent {} times", v.len());
        v.into_iter().next()
    }
    pub fn path(&self) -> &str {
        self.0["path"].as_str().unwrap()
    }
}

/// A config with one local connector (users alice: admins, bob: staff; password "pw") and
/// one proxy app to `upstream`; `extra_app` is appended to the app's keys, `policies` replace
/// the default ones.
pub fn config(upstream: SocketAddr, app_extra: &str, policies: &str) -> String {
    let hash = pw_hash();
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
telemetry: {{ metrics: {{ location: /metrics }} }}
connectors:
  - name: local
    type: local
    throttle: {{ maxFailures: 3, windowSeconds: 60 }}
    users:
      - username: alice
        passwordHash: "{hash}"
        attributes: {{ email: alice@example.com, groups: [admins, staff], level: 3 }}
      - username: bob
        passwordHash: "{hash}"
        attributes: {{ email: bob@example.com, groups: [staff], level: 1 }}
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{upstream}
    headers:
      - {{ name: X-User, value: "{{{{ local.username }}}}" }}
      - {{ name: X-Email, value: "{{{{ local.email }}}}" }}
      - {{ name: X-Groups, value: "{{{{ local.groups }}}}" }}
    logout: {{ location: /logout, redirectURL: /public }}
{app_extra}
    policies:
{policies}
"#
    )
}

pub const DEFAULT_POLICIES: &str = r#"      - location: /public
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

/// `tessera validate` of `yaml` with `env`: the exit code and everything it printed.
pub fn validate_with(yaml: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Signs out as a browser does: GET the sign-out `path` (the confirmation page), then POST
/// its form with the CSRF token. Returns the POST's response.
pub async fn logout(gw: &Gateway, path: &str, cookie: &str) -> reqwest::Response {
    let c = client();
    let page = c
        .get(gw.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "sign-out confirmation page at {path}");
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign out?"), "{html}");
    c.post(gw.url(path))
        .header("cookie", cookie)
        .form(&[("csrf", hidden(&html, "csrf"))])
        .send()
        .await
        .unwrap()
}

/// Writes a fresh ES256 signing key into `dir`; returns its path.
pub fn es256_key(dir: &tempfile::TempDir) -> PathBuf {
    let key = dir.path().join("es256.pem");
    std::fs::write(
        &key,
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256).unwrap(),
    )
    .unwrap();
    key
}

/// An OpenID provider with the local user alice (password "pw") and one confidential client
/// `client_id` (secret `s3cret-s3cret-s3cret`, redirect `https://rp.example.com/cb`).
/// `connector_extra` is added to the local connector's keys, `client_extra` to the client's.
pub fn local_provider_config(
    keys: &tempfile::TempDir,
    client_id: &str,
    connector_extra: &str,
    client_extra: &str,
) -> String {
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
{connector_extra}
    users:
      - {{ username: alice, passwordHash: "{hash}" }}
oidcProvider:
  issuer: http://localhost:1234
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: {client_id}
    type: oidc
    clientID: {client_id}
    clientSecret: s3cret-s3cret-s3cret
    redirectURLs: ["https://rp.example.com/cb"]
{client_extra}
    authentication: {{ idps: [local] }}
"#,
        hash = pw_hash(),
        key = es256_key(keys).display()
    )
}

/// The query parameters of a URL (e.g. where the provider sent the browser back to a client).
pub fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The claims of a JWT, unverified (where the signature is tested elsewhere).
pub fn jwt_payload(token: &str) -> serde_json::Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// GETs `path` of the gateway and parses the answer as JSON (discovery, JWKS …).
pub async fn get_json(gw: &Gateway, path: &str) -> serde_json::Value {
    client()
        .get(gw.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
