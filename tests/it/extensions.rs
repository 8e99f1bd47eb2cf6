//! Service extensions through the real gateway: the examples (C, Python, JavaScript) built
//! from source, the proxy hooks, and misbehaving guests (loop, memory bomb, trap, bad claims,
//! wrong exports, foreign imports, core module).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::*;
use base64::Engine;
use serde_json::Value;
use sha2::Digest;

const SECRET: &str = "s3cret-s3cret-s3cret";
const REDIRECT: &str = "https://rp.example.com/cb";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds (once per test binary; the scripts skip what is up to date) and returns a component.
fn component(rel: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let script = if rel.starts_with("test-guests/") {
        "extensions/test-guests/build.sh".to_string()
    } else {
        let lang = rel.split('/').nth(1).unwrap();
        format!("extensions/examples/{lang}/build.sh")
    };
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.contains(&script) {
        let out = Command::new("bash")
            .arg(root().join(&script))
            .output()
            .expect("run build script");
        assert!(
            out.status.success(),
            "{script} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        built.push(script);
    }
    let path = root().join("extensions").join(rel);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

pub(crate) fn guest(name: &str) -> String {
    component(&format!("test-guests/out/{name}.wasm"))
        .display()
        .to_string()
}

pub(crate) fn validate(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn proxy_config(upstream: std::net::SocketAddr, policy_authn: &str, extra: &str) -> String {
    let hash = pw_hash();
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
telemetry: {{ metrics: {{ location: /metrics }} }}
connectors:
  - name: local
    type: local
    users:
      - username: alice
        passwordHash: "{hash}"
        attributes: {{ groups: [admins] }}
{extra}
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{upstream}
    policies:
      - location: /
        authentication: {policy_authn}
        authorization: {{ allowAll: true }}
"#
    )
}

#[test]
fn broken_components_are_config_errors_with_positions() {
    let up: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let case = |file: &str| {
        proxy_config(
            up,
            &format!("{{ idps: [local], isAuthenticatedSE: {{ funcName: IsAuthenticated, file: \"{file}\" }} }}"),
            "",
        )
    };
    let (code, out) = validate(&case("/nonexistent/auth.wasm"));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(":20:") && out.contains("cannot read `/nonexistent/auth.wasm`"),
        "{out}"
    );

    let (code, out) = validate(&case(&guest("not-a-component")));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("is a core WebAssembly module, not a component"),
        "{out}"
    );

    // WASI beyond the deny-by-default set (wasi:http here) is refused, the import named.
    let dir = tempfile::tempdir().unwrap();
    let http = dir.path().join("http.wat");
    std::fs::write(
        &http,
        r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#,
    )
    .unwrap();
    let (code, out) = validate(&case(&http.display().to_string()));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("imports `wasi:http/outgoing-handler@0.2.0`, which Tessera does not provide"),
        "{out}"
    );
    // The C WASI probe (wasi:cli, clocks, random, io, filesystem) loads.
    let (code, out) = validate(&case(&guest("wasi-import")));
    assert_eq!(code, 0, "{out}");

    let (code, out) = validate(&case(&guest("wrong-exports")));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("does not export the IsAuthenticated hook (interface `tessera:extension/is-authenticated@0.1.0`)")
            && out.contains("it exports: IsAuthorized"),
        "{out}"
    );

    // funcName must be the position's hook; `file` xor `extension`; unknown extension names.
    let (code, out) = validate(&proxy_config(
        up,
        &format!(
            "{{ idps: [local], isAuthenticatedSE: {{ funcName: Authenticate, file: \"{}\" }}, authenticateSE: {{ funcName: Authenticate, extension: nope }} }}",
            guest("proxy-hooks")
        ),
        "",
    ));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("this position calls the IsAuthenticated hook, not Authenticate"),
        "{out}"
    );
    assert!(out.contains("unknown service extension `nope`"), "{out}");

    // A valid component passes.
    let (code, out) = validate(&case(&guest("proxy-hooks")));
    assert_eq!(code, 0, "{out}");
}

/// Guests built the standard way (WASI not stubbed) in C, Python and JavaScript: their output
/// reaches the log with the extension's name, clocks and random work, the environment is empty
/// and no file opens (each probe answers true only then, so the upstream answering proves it),
/// and `exit` or an uncaught exception fails the call closed.
#[tokio::test]
async fn wasi_guests_print_to_the_log_and_get_no_files_and_no_environment() {
    let up = upstream().await;
    let c_probe = guest("wasi-import");
    let py = component("examples/wasi-probe/python.wasm")
        .display()
        .to_string();
    let js = component("examples/wasi-probe/js.wasm")
        .display()
        .to_string();
    let policy = |loc: &str, ext: &str| {
        format!(
            r#"      - location: /{loc}/
        authentication: {{ idps: [local], isAuthenticatedSE: {{ funcName: IsAuthenticated, extension: {ext} }} }}
        authorization: {{ allowAll: true }}
"#
        )
    };
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
    users: []
serviceExtensions:
  - {{ name: wasi-c, file: "{c_probe}", limits: {{ timeoutMillis: 5000 }} }}
  - {{ name: wasi-py, file: "{py}", limits: {{ timeoutMillis: 5000 }} }}
  - {{ name: wasi-js, file: "{js}", limits: {{ timeoutMillis: 5000 }} }}
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{up}
    policies:
{}{}{}"#,
        policy("c", "wasi-c"),
        policy("py", "wasi-py"),
        policy("js", "wasi-js")
    );
    // A variable the gateway has that no guest may see.
    let gw = Gateway::start_with(&yaml, &[("PROBE_VISIBLE_SECRET", "hunter2")]);
    let c = client();
    for lang in ["c", "py", "js"] {
        let r = c
            .get(gw.url(&format!("/{lang}/page")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{lang}");
        assert_eq!(Echo::from(r).await.path(), format!("/{lang}/page"));
    }
    // stdout lines in the log, tagged with the extension's name, the hook and the stream.
    for (ext, lang, report) in [
        ("wasi-c", "c", "clock=ok random=ok env=empty file=denied"),
        (
            "wasi-py",
            "python",
            "clock=ok random=ok env=empty file=denied(FileNotFoundError)",
        ),
    ] {
        let line = gw.wait_log(&format!("wasi-probe {lang}: {report}"));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["message"], "extension output", "{line}");
        assert_eq!(v["extension"], ext, "{line}");
        assert_eq!(v["hook"], "IsAuthenticated", "{line}");
        assert_eq!(v["stream"], "stdout", "{line}");
        assert!(
            gw.logs()
                .contains(&format!("wasi-probe {lang}: hello http://")),
            "{lang}"
        );
    }
    gw.wait_log("wasi-probe js: clock=ok random=ok");
    assert!(!gw.logs().contains("hunter2"));

    // exit ends the call as a failure: 500, never the upstream.
    for lang in ["c", "py"] {
        let r = c
            .get(gw.url(&format!("/{lang}/exit")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500, "{lang}");
    }
    assert_eq!(
        gw.wait_logs(
            "the guest called exit (status 1)",
            2,
            Duration::from_secs(5)
        )
        .len(),
        2
    );
    // An uncaught exception: the runtime's stderr is logged, the call fails closed.
    let r = c.get(gw.url("/js/throw")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let line = gw.wait_log("wasi-probe js: thrown on purpose");
    assert!(
        line.contains(r#""stream":"stderr""#) && line.contains(r#""extension":"wasi-js""#),
        "{line}"
    );
    // The gateway keeps serving the probes after the failures.
    let r = c.get(gw.url("/c/again")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// A proxy app whose policy and headers are all decided by `proxy-hooks.wasm`.
async fn hooks_gateway(extra_env: &[(&str, &str)]) -> (Gateway, std::net::SocketAddr) {
    let up = upstream().await;
    let file = guest("proxy-hooks");
    let hash = pw_hash();
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
    users:
      - username: alice
        passwordHash: "{hash}"
        attributes: {{ groups: [admins], username: alice }}
serviceExtensions:
  - name: ext
    file: "{file}"
    limits: {{ timeoutMillis: 2000, memoryMiB: 32 }}
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{up}
    loadAttrsSE: {{ funcName: LoadAttributes, extension: ext }}
    headers:
      - {{ name: X-Tier-Template, value: "{{{{ ext.tier }}}}" }}
      - createHeaderSE: {{ funcName: CreateHeaders, extension: ext }}
    policies:
      - location: /
        authentication:
          idps: [local]
          isAuthenticatedSE: {{ funcName: IsAuthenticated, extension: ext }}
          authenticateSE: {{ funcName: Authenticate, file: "{file}" }}
        authorization:
          isAuthorizedSE: {{ funcName: IsAuthorized, extension: ext }}
"#
    );
    (Gateway::start_with(&yaml, extra_env), up)
}

#[tokio::test]
async fn proxy_hooks_decide_authentication_authorization_attributes_and_headers() {
    let (gw, _up) = hooks_gateway(&[]).await;
    let c = client();

    // IsAuthenticated true without a session; IsAuthorized via header; LoadAttributes feeds
    // both the template and CreateHeaders.
    let r = c
        .get(gw.url("/page?q=1"))
        .header("x-ext-auth", "letmein")
        .header("x-allow", "yes")
        .header("x-ext-user", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo = Echo::from(r).await;
    assert_eq!(echo.one("x-tier-template").as_deref(), Some("gold"));
    assert_eq!(echo.one("x-ext-tier").as_deref(), Some("gold"));
    assert_eq!(echo.header("x-ext-user"), vec!["anonymous".to_string()]);

    // IsAuthorized false -> 403.
    let r = c
        .get(gw.url("/page"))
        .header("x-ext-auth", "letmein")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Authenticate: respond(401) when asked, else login at `local`.
    let r = c
        .get(gw.url("/page"))
        .header("x-ext-deny", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), "denied by extension");
    let r = c.get(gw.url("/page")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with("/.tessera/login?flow="), "{loc}");

    // A signed-in admin: IsAuthenticated says no (no header) but... the session is not what
    // this guest checks, so Authenticate sends the user to log in; after login the
    // IsAuthenticated hook still decides. With the header, alice is authorized by group and
    // the headers carry her username from the session.
    let (cookie, _) = login(&gw, "/page", "local", "alice", "pw").await;
    let r = c
        .get(gw.url("/page"))
        .header("cookie", &cookie)
        .header("x-ext-auth", "letmein")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo = Echo::from(r).await;
    assert_eq!(echo.one("x-ext-user").as_deref(), Some("alice"));
    assert_eq!(echo.one("x-ext-tier").as_deref(), Some("gold"));
    // The gateway's session cookie never reaches the guest or the upstream.
    assert!(!echo
        .header("cookie")
        .iter()
        .any(|c| c.contains("tessera_session")));
}

#[tokio::test]
async fn misbehaving_guests_fail_closed_and_others_keep_serving() {
    let up = upstream().await;
    let (lp, bomb, trap) = (guest("loop"), guest("membomb"), guest("trap"));
    let hash = pw_hash();
    let policy = |loc: &str, ext: &str| {
        format!(
            "      - location: {loc}\n        authentication: {{ idps: [local], isAuthenticatedSE: {{ funcName: IsAuthenticated, extension: {ext} }} }}\n        authorization: {{ allowAll: true }}\n"
        )
    };
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
telemetry: {{ metrics: {{ location: /metrics }} }}
connectors:
  - name: local
    type: local
    users: [{{ username: alice, passwordHash: "{hash}" }}]
serviceExtensions:
  - {{ name: loop, file: "{lp}", limits: {{ timeoutMillis: 300 }} }}
  - {{ name: bomb, file: "{bomb}", limits: {{ timeoutMillis: 5000, memoryMiB: 16 }} }}
  - {{ name: trap, file: "{trap}" }}
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{up}
    policies:
      - location: /public
        authentication: {{ allowUnauthenticated: true }}
        authorization: {{ allowAll: true }}
{}{}{}"#,
        policy("/loop", "loop"),
        policy("/bomb", "bomb"),
        policy("/trap", "trap"),
    );
    let gw = Gateway::start(&yaml);
    let c = client();

    // Infinite loop: stopped at its deadline; 500 page, never the upstream.
    let t = Instant::now();
    let r = c.get(gw.url("/loop")).send().await.unwrap();
    let took = t.elapsed();
    assert_eq!(r.status(), 500);
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(3),
        "{took:?}"
    );
    gw.wait_log("\"outcome\":\"timeout\"");

    // Memory bomb: stopped at the cap (well before its 5 s deadline).
    let t = Instant::now();
    let r = c.get(gw.url("/bomb")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let line = gw.wait_log("\"outcome\":\"memory\"");
    assert!(line.contains("memory limit of 16 MiB reached"), "{line}");

    // Trap: that request fails, the next one gets a fresh instance and fails the same way.
    for _ in 0..2 {
        let r = c.get(gw.url("/trap")).send().await.unwrap();
        assert_eq!(r.status(), 500);
    }
    let line = gw.wait_log("\"outcome\":\"trap\"");
    assert!(
        line.contains("\"extension\":\"trap\"") && line.contains("request_id"),
        "{line}"
    );

    // While loops burn their deadlines, other requests keep their latency.
    let loops: Vec<_> = (0..6)
        .map(|_| {
            let c = c.clone();
            let u = gw.url("/loop");
            tokio::spawn(async move { c.get(u).send().await.unwrap().status().as_u16() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut lat = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let r = c.get(gw.url("/public")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        lat.push(t.elapsed());
    }
    for l in loops {
        assert_eq!(l.await.unwrap(), 500);
    }
    lat.sort();
    assert!(
        lat[lat.len() / 2] < Duration::from_millis(100),
        "median latency of normal requests while guests loop: {:?}",
        lat[lat.len() / 2]
    );

    let metrics = c
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for outcome in ["timeout", "memory", "trap"] {
        assert!(
            metrics.contains(&format!("outcome=\"{outcome}\"")),
            "no {outcome} in metrics:\n{metrics}"
        );
    }
    // The names documented in docs/operations-metrics.md.
    assert!(metrics.contains("# TYPE tessera_extension_calls counter"));
    assert!(metrics.contains("# TYPE tessera_extension_call_duration_seconds histogram"));
}

struct Op {
    gw: Gateway,
    _keys: tempfile::TempDir,
}

/// The `auth.go` configuration: a local connector named `okta`, an OIDC app with all five
/// hooks of the example component `file`.
fn auth_go_provider(file: &Path, timeout_ms: u64) -> Op {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("es256.pem");
    std::fs::write(
        &key,
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256).unwrap(),
    )
    .unwrap();
    let hash = pw_hash();
    let file = file.display();
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: okta
    type: local
    users:
      - username: alice
        passwordHash: "{hash}"
        attributes: {{ email: alice@example.com, groups: [admins, staff], roles: [reports.read, reports.write] }}
serviceExtensions:
  - name: auth
    file: "{file}"
    limits: {{ timeoutMillis: {timeout_ms}, memoryMiB: 256 }}
    secrets: ["users.*.sha256"]
oidcProvider:
  issuer: http://localhost:1234
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: portal
    type: proxy
    routePatterns: ["/portal"]
    upstream: http://127.0.0.1:9
    policies: [{{ location: /, authentication: {{ idps: [okta] }}, authorization: {{ allowAll: true }} }}]
  - name: exampleOIDCApp
    type: oidc
    clientID: webapp
    clientSecret: {SECRET}
    redirectURLs: ["{REDIRECT}"]
    grantTypes: [authorization_code, password]
    authentication:
      idps: [okta]
      isAuthenticatedSE: {{ funcName: IsAuthenticated, extension: auth }}
      authenticateSE: {{ funcName: Authenticate, extension: auth }}
      backchannel:
        authenticateSE: {{ funcName: BackchannelAuthenticate, extension: auth }}
    buildAccessTokenClaimsSE: {{ funcName: BuildAccessTokenClaims, extension: auth }}
    buildIDTokenClaimsSE: {{ funcName: BuildIDTokenClaims, extension: auth }}
"#,
        key = key.display()
    );
    let pw = hex(&sha2::Sha256::digest(b"wonderland"));
    let gw = Gateway::start_with(&yaml, &[("USERS_ALICE_SHA256", pw.as_str())]);
    Op { gw, _keys: keys }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn jwt_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn authorize_url(op: &Op, challenge: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", "webapp"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid email"),
            ("state", "st"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    op.gw.url(&format!("/oauth2/authorize?{q}"))
}

async fn token(op: &Op, form: &[(&str, &str)]) -> (u16, Value) {
    let r = client()
        .post(op.gw.url("/oauth2/token"))
        .basic_auth("webapp", Some(SECRET))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The reference `auth.go` behaviour, end to end, for one example component.
async fn auth_go_behaviour(lang: &str, timeout_ms: u64) {
    let file = component(&format!("examples/{lang}/auth.wasm"));
    let op = auth_go_provider(&file, timeout_ms);
    let c = client();
    let verifier = tessera::session::random_token(32);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));

    // No session: IsAuthenticated is not asked; Authenticate sends the user to `okta`.
    let r = c.get(authorize_url(&op, &challenge)).send().await.unwrap();
    assert_eq!(r.status(), 302, "[{lang}]");
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("/.tessera/login?flow="), "[{lang}] {loc}");

    // Signed in at okta (SSO from the portal): IsAuthenticated sees okta.authenticated=true.
    let (cookie, _) = login(&op.gw, "/portal", "okta", "alice", "pw").await;
    let r = c
        .get(authorize_url(&op, &challenge))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "[{lang}]");
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(REDIRECT), "[{lang}] {loc}");
    let q: HashMap<String, String> = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let (status, body) = token(
        &op,
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "[{lang}] {body}");
    let id = jwt_payload(body["id_token"].as_str().unwrap());
    assert_eq!(
        id["groups"],
        serde_json::json!(["admins", "staff"]),
        "[{lang}] {id}"
    );
    assert_eq!(id["iss"], "http://localhost:1234");
    let at = jwt_payload(body["access_token"].as_str().unwrap());
    assert_eq!(at["scope"], "reports.read reports.write", "[{lang}] {at}");

    // Password grant: the extension checks SHA-256(password) against the secret provider.
    let (status, body) = token(
        &op,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "wonderland"),
            ("scope", "openid"),
        ],
    )
    .await;
    assert_eq!(status, 200, "[{lang}] {body}");
    assert_eq!(
        jwt_payload(body["access_token"].as_str().unwrap())["sub"],
        "alice"
    );
    let (status, body) = token(
        &op,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "wrong"),
        ],
    )
    .await;
    assert_eq!(status, 400, "[{lang}] {body}");
    assert_eq!(body["error"], "invalid_grant");
    let (status, body) = token(
        &op,
        &[
            ("grant_type", "password"),
            ("username", "mallory"),
            ("password", "wonderland"),
        ],
    )
    .await;
    assert_eq!(status, 400, "[{lang}] {body}");
    assert_eq!(body["error"], "invalid_grant");
    // The password never reaches the log.
    assert!(
        !op.gw.logs().contains("wonderland"),
        "[{lang}] password logged"
    );
}

#[tokio::test]
async fn auth_go_example_in_c() {
    auth_go_behaviour("c", 200).await;
}

#[tokio::test]
async fn auth_go_example_in_python() {
    auth_go_behaviour("python", 2000).await;
}

#[tokio::test]
async fn auth_go_example_in_javascript() {
    auth_go_behaviour("js", 2000).await;
}

#[tokio::test]
async fn claims_hooks_refuse_bad_claims_and_fetch_only_allowed_hosts() {
    let up = upstream().await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("es256.pem");
    std::fs::write(
        &key,
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256).unwrap(),
    )
    .unwrap();
    let (bad, hooks) = (guest("bad-claims"), guest("proxy-hooks"));
    let client_app = |name: &str, id: &str, ext: &str| {
        format!(
            r#"  - name: {name}
    type: oidc
    clientID: {id}
    clientSecret: {SECRET}
    redirectURLs: []
    grantTypes: [client_credentials, password]
    scopes: [api]
    authentication:
      backchannel:
        authenticateSE: {{ funcName: BackchannelAuthenticate, extension: hooks }}
    buildAccessTokenClaimsSE: {{ funcName: BuildAccessTokenClaims, extension: {ext} }}
"#
        )
    };
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
serviceExtensions:
  - {{ name: bad, file: "{bad}" }}
  - {{ name: hooks, file: "{hooks}", allowedHosts: ["127.0.0.1"], limits: {{ timeoutMillis: 3000 }} }}
oidcProvider:
  issuer: http://localhost:1234
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
{}{}"#,
        client_app("badApp", "bad", "bad"),
        client_app("goodApp", "good", "hooks"),
        key = key.display()
    );
    let gw = Gateway::start(&yaml);
    let c = client();
    let tok = |id: &'static str, form: Vec<(&'static str, String)>, fetch: Option<String>| {
        let c = c.clone();
        let url = gw.url("/oauth2/token");
        async move {
            let mut r = c.post(url).basic_auth(id, Some(SECRET)).form(&form);
            if let Some(f) = fetch {
                r = r.header("x-fetch-url", f);
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let cc = || vec![("grant_type", "client_credentials".to_string())];

    // A reserved claim (`iss`) from BuildAccessTokenClaims: no token, server_error, logged.
    let (status, body) = tok("bad", cc(), None).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "server_error");
    let line = gw.wait_log("claim `iss` is reserved");
    assert!(line.contains("\"outcome\":\"invalid\""), "{line}");

    // Outbound HTTP: allowed host answers; another host is an error to the guest.
    let (status, body) = tok("good", cc(), Some(format!("http://{up}/hello"))).await;
    assert_eq!(status, 200, "{body}");
    let at = jwt_payload(body["access_token"].as_str().unwrap());
    assert_eq!(at["fetched_status"], 200, "{at}");
    let (status, body) = tok(
        "good",
        cc(),
        Some(format!("http://localhost:{}/", up.port())),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let at = jwt_payload(body["access_token"].as_str().unwrap());
    assert!(
        at["fetch_error"]
            .as_str()
            .unwrap_or_default()
            .contains("not in this extension's allowedHosts"),
        "{at}"
    );
    // The cache written by the previous call is read by the next one.
    assert!(at.get("cached_before").is_some(), "{at}");

    // Password grant decided by the extension: subject from the guest.
    let pw = |p: &str| {
        vec![
            ("grant_type", "password".to_string()),
            ("username", "bob".to_string()),
            ("password", p.to_string()),
        ]
    };
    let (status, body) = tok("good", pw("s3cret"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        jwt_payload(body["access_token"].as_str().unwrap())["sub"],
        "svc-bob"
    );
    let (status, body) = tok("good", pw("nope"), None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}

#[test]
fn malformed_claims_json_is_refused() {
    // The bad-claims guest's BuildIDTokenClaims returns `groups: not json`: a config with it
    // validates (the export exists); the refusal is at run time, covered through the
    // gateway in `claims_hooks_refuse_bad_claims_and_fetch_only_allowed_hosts` for the
    // access-token hook and here through the library for the ID-token hook.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use tessera::extensions::{GuestRequest, HookCall, HookKind, TokenContext};
        let ext = load_for_test(&guest("bad-claims"));
        let hook = tessera::extensions::Hook {
            extension: ext,
            kind: HookKind::BuildIdTokenClaims,
            cache: None,
        };
        let call = HookCall {
            request: GuestRequest {
                id: "rid".into(),
                method: "POST".into(),
                url: "http://x/token".into(),
                headers: vec![],
                form: vec![],
                app: "a".into(),
                client_ip: "127.0.0.1".into(),
            },
            attrs: Default::default(),
        };
        let token = TokenContext {
            client_id: "c".into(),
            subject: "s".into(),
            grant_type: "authorization_code".into(),
            scopes: vec!["openid".into()],
            audience: vec!["c".into()],
        };
        let err = hook.build_claims(call, token).await.err().expect("refused");
        assert_eq!(err.outcome(), "invalid");
        assert!(
            err.to_string().contains("claim `groups` is not valid JSON"),
            "{err}"
        );
    });
}

fn load_for_test(file: &str) -> std::sync::Arc<tessera::extensions::Extension> {
    use tessera::extensions::load::Settings;
    load_with(
        file,
        Settings {
            name: "test".into(),
            limits: Default::default(),
            allowed_hosts: vec![],
            metadata: vec![],
            secrets: vec![],
            namespace: Some("test".into()),
        },
    )
}

fn load_with(
    file: &str,
    settings: tessera::extensions::load::Settings,
) -> std::sync::Arc<tessera::extensions::Extension> {
    let services = tessera::extensions::Services {
        secrets: std::sync::Arc::new(tessera::secrets::SecretProvider::Env),
        cache: std::sync::Arc::new(tessera::store::MemoryStore::new()),
        connectors: Default::default(),
        metrics: std::sync::Arc::new(tessera::telemetry::metrics::Metrics::new()),
        http: tessera::extensions::host::http_client().unwrap(),
    };
    std::sync::Arc::new(
        tessera::extensions::Extension::load(
            Path::new(file),
            settings,
            std::sync::Arc::new(services),
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn a_reload_naming_a_component_without_the_hook_is_rejected_and_the_old_one_serves() {
    let up = upstream().await;
    let with = |file: &str| {
        proxy_config(
            up,
            &format!("{{ idps: [local], isAuthenticatedSE: {{ funcName: IsAuthenticated, file: \"{file}\" }} }}"),
            "",
        )
        .replace("logger:", "reload: { watch: false }\nlogger:")
    };
    let gw = Gateway::start(&with(&guest("proxy-hooks")));
    let c = client();
    let allowed = || {
        c.get(gw.url("/page"))
            .header("x-ext-auth", "letmein")
            .send()
    };
    assert_eq!(allowed().await.unwrap().status(), 200);

    gw.rewrite_config(&with(&guest("wrong-exports")));
    gw.signal("HUP");
    let line = gw.wait_log("config reload rejected");
    assert!(
        line.contains("does not export the IsAuthenticated hook") && line.contains("tessera.yaml:"),
        "{line}"
    );
    // The old configuration (and its component) keeps serving.
    assert_eq!(allowed().await.unwrap().status(), 200);
    assert_eq!(gw.count_logs("config reload rejected"), 1);
}

/// Issue #12 finding 14: a proxy app decided by `proxy-hooks.wasm` configured as extension
/// `ext`, which may read the secrets `demo.token` and `users.*.sha256` and write only `ext.*`.
/// bob (group staff) is not an admin; the environment holds secrets no line lists.
async fn confined_gateway() -> Gateway {
    let up = upstream().await;
    let file = guest("proxy-hooks");
    let hash = pw_hash();
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
    users:
      - username: bob
        passwordHash: "{hash}"
        attributes: {{ groups: [staff] }}
serviceExtensions:
  - name: ext
    file: "{file}"
    limits: {{ timeoutMillis: 2000 }}
    secrets: [demo.token, "users.*.sha256"]
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{up}
    loadAttrsSE: {{ funcName: LoadAttributes, extension: ext }}
    headers:
      - {{ name: X-Groups, value: "{{{{ local.groups }}}}" }}
      - {{ name: X-Note, value: "{{{{ ext.note }}}}" }}
      - createHeaderSE: {{ funcName: CreateHeaders, extension: ext }}
    policies:
      - location: /
        authentication: {{ idps: [local] }}
        authorization:
          isAuthorizedSE: {{ funcName: IsAuthorized, extension: ext }}
"#
    );
    Gateway::start_with(
        &yaml,
        &[
            ("DEMO_TOKEN", "tok-123"),
            ("USERS_BOB_SHA256", "bob-digest"),
            ("AWS_SECRET_ACCESS_KEY", "aws-leak"),
        ],
    )
}

async fn get_as(gw: &Gateway, cookie: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client().get(gw.url("/page")).header("cookie", cookie);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn extensions_read_only_the_secrets_their_configuration_lists() {
    let gw = confined_gateway().await;
    let (bob, _) = login(&gw, "/", "local", "bob", "pw").await;
    let secret = |name: &'static str| {
        let (gw, bob) = (&gw, bob.clone());
        async move {
            let r = get_as(gw, &bob, &[("x-allow", "yes"), ("x-secret", name)]).await;
            Echo::from(r).await.one("x-ext-secret")
        }
    };
    // Listed (exactly, or by pattern): read.
    assert_eq!(secret("demo.token").await.as_deref(), Some("tok-123"));
    assert_eq!(
        secret("users.bob.sha256").await.as_deref(),
        Some("bob-digest")
    );
    // Not listed: "not found", as if it did not exist, although the environment has it.
    for name in [
        "aws.secret_access_key",
        "AWS_SECRET_ACCESS_KEY",
        "demo.token.x",
        "users.sha256",
    ] {
        assert_eq!(secret(name).await.as_deref(), Some("absent"), "{name}");
    }
    assert_eq!(
        secret("aws.secret_access_key").await.as_deref(),
        Some("absent")
    );
    // Each refused name is logged once (4 names, 5 refusals), with the extension and the name.
    let lines = gw.wait_logs(
        "secret not listed for this extension",
        4,
        Duration::from_secs(5),
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"extension\":\"ext\"") && l.contains("aws.secret_access_key")),
        "{lines:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gw.count_logs("secret not listed for this extension"), 4);
    assert!(!gw.logs().contains("aws-leak"));
}

#[tokio::test]
async fn extensions_write_only_their_own_namespace() {
    let gw = confined_gateway().await;
    let (bob, _) = login(&gw, "/", "local", "bob", "pw").await;

    // IsAuthorized tries session-set("local.groups", "admins") and then checks for admins:
    // the write is refused, bob stays staff, 403.
    let r = get_as(&gw, &bob, &[("x-set", "local.groups=admins")]).await;
    assert_eq!(r.status(), 403);
    // The same from CreateHeaders (authorized by header): the guest gets the refusal, the
    // upstream gets bob's own groups.
    let r = get_as(
        &gw,
        &bob,
        &[("x-allow", "yes"), ("x-set", "local.groups=admins")],
    )
    .await;
    let echo = Echo::from(r).await;
    assert_eq!(echo.one("x-groups").as_deref(), Some("staff"));
    let err = echo.one("x-ext-set").unwrap_or_default();
    assert_eq!(
        err,
        "attribute `local.groups` is outside this extension's namespace: extension `ext` may set only `ext.<name>`"
    );
    // Nothing was stored: still denied.
    assert_eq!(get_as(&gw, &bob, &[]).await.status(), 403);
    gw.wait_log("session-set outside the extension's namespace refused");

    // Its own namespace: written, stored with the session, seen by templates.
    let r = get_as(&gw, &bob, &[("x-allow", "yes"), ("x-set", "ext.note=hi")]).await;
    assert_eq!(Echo::from(r).await.one("x-ext-set").as_deref(), Some("ok"));
    let echo = Echo::from(get_as(&gw, &bob, &[("x-allow", "yes")]).await).await;
    assert_eq!(echo.one("x-note").as_deref(), Some("hi"));

    // LoadAttributes returning `local.groups`: an invalid answer, the request fails closed
    // (500, the upstream is not reached) and nothing is merged.
    let r = get_as(&gw, &bob, &[("x-load", "local.groups")]).await;
    assert_eq!(r.status(), 500);
    let line = gw.wait_log("\"outcome\":\"invalid\"");
    assert!(
        line.contains("\"hook\":\"LoadAttributes\"")
            && line.contains("attribute `local.groups` is outside this extension's namespace"),
        "{line}"
    );
    assert_eq!(get_as(&gw, &bob, &[]).await.status(), 403);
    // LoadAttributes in its own namespace is merged as before.
    let echo =
        Echo::from(get_as(&gw, &bob, &[("x-allow", "yes"), ("x-load", "ext.note")]).await).await;
    assert_eq!(echo.one("x-note").as_deref(), Some("admins"));
    assert_eq!(echo.one("x-groups").as_deref(), Some("staff"));
}

#[test]
fn extension_names_and_secret_lists_are_checked_at_load() {
    let up: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let file = guest("proxy-hooks");
    let (code, out) = validate(&proxy_config(
        up,
        "{ idps: [local] }",
        &format!(
            "serviceExtensions:\n  - {{ name: local, file: \"{file}\" }}\n  - {{ name: ok, file: \"{}\", secrets: [demo.token, \"*.key\", \"a.b*\"] }}",
            guest("trap")
        ),
    ));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(":13:")
            && out.contains("`local` is also the name of connector `local`")
            && out.contains("give it a name no connector has"),
        "{out}"
    );
    assert!(
        out.contains(":14:")
            && out.contains(
                "`*.key` is not a secret name: the first segment must be a name, not `*`"
            ),
        "{out}"
    );
    assert!(
        out.contains("`a.b*` is not a secret name: `*` must be a whole segment"),
        "{out}"
    );
    assert!(!out.contains("demo.token"), "{out}");
}

/// A request view for library-level hook calls.
fn plain_request(headers: &[(&str, &str)]) -> tessera::extensions::GuestRequest {
    tessera::extensions::GuestRequest {
        id: "rid".into(),
        method: "GET".into(),
        url: "http://x/page".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        form: vec![],
        app: "a".into(),
        client_ip: "127.0.0.1".into(),
    }
}

#[test]
fn a_component_named_only_by_file_reads_no_secret_and_writes_no_attribute() {
    use tessera::extensions::load::{SecretPattern, Settings};
    use tessera::extensions::{HookCall, HookKind};
    let rt = tokio::runtime::Runtime::new().unwrap();
    // `path` reads the environment variable PATH, which every process has.
    let path = std::env::var("PATH").unwrap();
    let headers = |ext| {
        let hook = tessera::extensions::Hook {
            extension: ext,
            kind: HookKind::CreateHeaders,
            cache: None,
        };
        let call = HookCall {
            request: plain_request(&[("x-secret", "path"), ("x-set", "test.note=hi")]),
            attrs: Default::default(),
        };
        let out = match rt.block_on(hook.create_headers(call)) {
            Ok(out) => out,
            Err(e) => panic!("the call failed: {e}"),
        };
        let get = |n: &str| {
            out.value
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.to_str().unwrap().to_string())
        };
        (get("x-ext-secret"), get("x-ext-set"), out.attrs)
    };
    let settings = |namespace: Option<&str>, secrets: &[&str]| Settings {
        name: namespace.unwrap_or("ext/hooks.wasm").into(),
        limits: Default::default(),
        allowed_hosts: vec![],
        metadata: vec![],
        secrets: secrets
            .iter()
            .map(|s| SecretPattern::parse(s).unwrap())
            .collect(),
        namespace: namespace.map(str::to_string),
    };
    let file = guest("proxy-hooks");

    let (secret, set, attrs) = headers(load_with(&file, settings(None, &[])));
    assert_eq!(secret.as_deref(), Some("absent"));
    assert_eq!(
        set.as_deref(),
        Some("attribute `test.note` refused: `ext/hooks.wasm` is named only by `file`, so it has no attribute namespace; declare it in serviceExtensions and set `<its name>.<name>`")
    );
    assert!(attrs.is_empty());

    // Declared as `test` with `secrets: [path]`: both allowed.
    let (secret, set, attrs) = headers(load_with(&file, settings(Some("test"), &["path"])));
    assert_eq!(secret.as_deref(), Some(path.as_str()));
    assert_eq!(set.as_deref(), Some("ok"));
    assert_eq!(attrs.get("test.note"), Some(&Value::String("hi".into())));
}

#[test]
fn the_memory_cap_covers_all_memories_of_a_component_together() {
    use tessera::extensions::load::Settings;
    use tessera::extensions::{HookCall, HookKind, Limits};
    // Core modules with a memory of 24 pages (1.5 MiB) each; the cap is 2 MiB. One fits,
    // two together do not, although each alone is under the cap.
    let dir = tempfile::tempdir().unwrap();
    let component = |modules: usize| {
        let mut wat = String::from("(component\n");
        for i in 0..modules {
            wat += &format!("  (core module $m{i} (memory (export \"m\") 24))\n");
            wat += &format!("  (core instance (instantiate $m{i}))\n");
        }
        wat += ")\n";
        let path = dir.path().join(format!("mem{modules}.wat"));
        std::fs::write(&path, wat).unwrap();
        path.display().to_string()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let outcome = |file: String| {
        let ext = load_with(
            &file,
            Settings {
                name: "mem".into(),
                limits: Limits {
                    timeout: Duration::from_secs(5),
                    memory_bytes: 2 << 20,
                },
                allowed_hosts: vec![],
                metadata: vec![],
                secrets: vec![],
                namespace: Some("mem".into()),
            },
        );
        let hook = tessera::extensions::Hook {
            extension: ext,
            kind: HookKind::IsAuthenticated,
            cache: None,
        };
        let call = HookCall {
            request: plain_request(&[]),
            attrs: Default::default(),
        };
        let err = rt
            .block_on(hook.is_authenticated(call))
            .err()
            .expect("these components export no hook");
        (err.outcome(), err.to_string())
    };
    // One memory: instantiated (then fails for want of the hook, not for memory).
    let (one, msg) = outcome(component(1));
    assert_eq!(one, "trap", "{msg}");
    assert!(msg.contains("does not export this hook"), "{msg}");
    // Two memories: refused at instantiation by the cap on their sum.
    let (two, msg) = outcome(component(2));
    assert_eq!(two, "memory", "{msg}");
    assert_eq!(msg, "memory limit of 2 MiB reached");
}

/// Calls of `hook` of extension `ext` that succeeded, from the gateway's metrics.
async fn ok_calls(gw: &Gateway, ext: &str, hook: &str) -> u64 {
    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let needle = format!(
        "tessera_extension_calls_total{{extension=\"{ext}\",hook=\"{hook}\",outcome=\"ok\"}} "
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// `cacheSeconds`: a cached answer is reused for the same session, policy and attributes (the
/// hook is not called, even when the request alone would make it answer otherwise); a changed
/// attribute or the expiry re-runs it; a logout leaves nothing usable behind.
#[tokio::test]
async fn cached_hook_answers_are_reused_until_attributes_change_or_they_expire() {
    let up = upstream().await;
    let file = guest("proxy-hooks");
    let hash = pw_hash();
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
telemetry: {{ metrics: {{ location: /metrics }} }}
connectors:
  - name: local
    type: local
    users:
      - username: alice
        passwordHash: "{hash}"
        attributes: {{ groups: [staff], username: alice }}
serviceExtensions:
  - name: ext
    file: "{file}"
    limits: {{ timeoutMillis: 2000 }}
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{up}
    loadAttrsSE: {{ funcName: LoadAttributes, extension: ext }}
    headers:
      - createHeaderSE: {{ funcName: CreateHeaders, extension: ext, cacheSeconds: 2 }}
    policies:
      - location: /
        authentication:
          idps: [local]
          isAuthenticatedSE: {{ funcName: IsAuthenticated, extension: ext, cacheSeconds: 2 }}
          authenticateSE: {{ funcName: Authenticate, extension: ext }}
        authorization:
          isAuthorizedSE: {{ funcName: IsAuthorized, extension: ext, cacheSeconds: 2 }}
"#
    );
    let gw = Gateway::start(&yaml);
    let (cookie, _) = login(&gw, "/a", "local", "alice", "pw").await;
    let c = client();
    let get = |path: &'static str, ok_headers: bool| {
        let mut r = c.get(gw.url(path)).header("cookie", &cookie);
        if ok_headers {
            r = r.header("x-ext-auth", "letmein").header("x-allow", "yes");
        }
        r.send()
    };
    let counts = || async {
        let mut n = Vec::new();
        for hook in [
            "IsAuthenticated",
            "IsAuthorized",
            "CreateHeaders",
            "LoadAttributes",
        ] {
            n.push(ok_calls(&gw, "ext", hook).await);
        }
        n
    };

    // Twice: the first request's LoadAttributes changes the attributes IsAuthenticated saw.
    for _ in 0..2 {
        let r = get("/a", true).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let before = counts().await;
    // Same session, policy and attributes: IsAuthenticated and IsAuthorized answer from the
    // cache although this request alone would make both say no (no x-ext-auth, no
    // x-allow, alice is not an admin); CreateHeaders' headers too. LoadAttributes (not
    // cached) runs and writes the same values.
    let r = get("/a", false).await.unwrap();
    assert_eq!(r.status(), 200);
    let echo = Echo::from(r).await;
    assert_eq!(echo.one("x-ext-user").as_deref(), Some("alice"));
    assert_eq!(echo.one("x-ext-tier").as_deref(), Some("gold"));
    let after = counts().await;
    assert_eq!(after[..3], before[..3], "cached hooks were not called");
    assert_eq!(after[3], before[3] + 1, "LoadAttributes runs every time");

    // A changed attribute (LoadAttributes sets ext.path from the path) re-runs the hooks that
    // come after it; IsAuthenticated ran before the change, so it still answers from the cache.
    let r = get("/b", false).await.unwrap();
    assert_eq!(
        r.status(),
        403,
        "IsAuthorized re-ran: no x-allow, not an admin"
    );
    let changed = counts().await;
    assert_eq!(
        changed[0], after[0],
        "IsAuthenticated: same attributes when it ran"
    );
    assert_eq!(changed[1], after[1] + 1, "IsAuthorized re-ran");
    let r = get("/b", true).await.unwrap();
    assert_eq!(r.status(), 403, "a cached deny is a deny");
    let denied = counts().await;
    assert_eq!(denied[1], changed[1], "the deny came from the cache");
    // (IsAuthenticated saw the new attributes for the first time: it ran.)
    assert_eq!(denied[0], changed[0] + 1);

    // Expiry re-runs them all.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let r = get("/b", true).await.unwrap();
    assert_eq!(r.status(), 200);
    let expired = counts().await;
    assert_eq!(expired[0], denied[0] + 1, "IsAuthenticated re-ran");
    assert_eq!(expired[1], denied[1] + 1, "IsAuthorized re-ran");
    assert_eq!(expired[2], denied[2] + 1, "CreateHeaders re-ran");

    // After a logout the old cookie has no session: nothing cached applies, and without the
    // header IsAuthenticated says no (sent to sign in).
    let r = logout(&gw, "/.tessera/logout", &cookie).await;
    assert_eq!(r.status(), 200, "signed out");
    let r = get("/b", false).await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(counts().await[0], expired[0] + 1, "IsAuthenticated ran");
}

#[test]
fn cache_seconds_is_validated() {
    let up: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let file = guest("proxy-hooks");
    let case = |hook: &str| proxy_config(up, &format!("{{ idps: [local], {hook} }}"), "");
    let (code, out) = validate(&case(&format!(
        "isAuthenticatedSE: {{ funcName: IsAuthenticated, file: \"{file}\", cacheSeconds: 0 }}"
    )));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(":20:") && out.contains("cacheSeconds must be 1..=3600, not 0"),
        "{out}"
    );
    let (code, out) = validate(&case(&format!(
        "isAuthenticatedSE: {{ funcName: IsAuthenticated, file: \"{file}\", cacheSeconds: 3601 }}"
    )));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("cacheSeconds must be 1..=3600, not 3601"),
        "{out}"
    );
    let (code, out) = validate(&case(&format!(
        "authenticateSE: {{ funcName: Authenticate, file: \"{file}\", cacheSeconds: 5 }}"
    )));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(":20:") && out.contains("the answer of Authenticate cannot be cached"),
        "{out}"
    );
    let (code, out) = validate(&case(&format!(
        "isAuthenticatedSE: {{ funcName: IsAuthenticated, file: \"{file}\", cacheSeconds: 30 }}"
    )));
    assert_eq!(code, 0, "{out}");
}

/// The reference product's seed configuration: `authenticateSE` and no `idps` (the extension
/// picks the IdP, any configured connector), on an OIDC app and on a proxy policy. It
/// validates, and a user logs in through the IdP the extension chose.
#[tokio::test]
async fn seed_shaped_config_authenticate_se_without_idps_logs_in() {
    let up = upstream().await;
    let file = component("examples/c/auth.wasm");
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("es256.pem");
    std::fs::write(
        &key,
        tessera::provider::keys::generate_pem(tessera::provider::keys::SigningAlg::Es256).unwrap(),
    )
    .unwrap();
    let hash = pw_hash();
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: corp
    type: local
    users: []
  - name: okta
    type: local
    users:
      - username: alice
        passwordHash: "{hash}"
        attributes: {{ email: alice@example.com, groups: [admins, staff], roles: [reports.read] }}
serviceExtensions:
  - name: auth
    file: "{file}"
    limits: {{ timeoutMillis: 500 }}
oidcProvider:
  issuer: http://localhost:1234
  signingKeys: [{{ file: {key}, alg: ES256 }}]
apps:
  - name: legacy
    type: proxy
    routePatterns: ["/legacy"]
    upstream: http://{up}
    policies:
      - location: /
        authentication:
          authenticateSE: {{ funcName: Authenticate, extension: auth }}
        authorization: {{ allowAll: true }}
  - name: exampleOIDCApp
    type: oidc
    clientID: webapp
    clientSecret: {SECRET}
    redirectURLs: ["{REDIRECT}"]
    grantTypes: [authorization_code]
    authentication:
      isAuthenticatedSE: {{ funcName: IsAuthenticated, extension: auth }}
      authenticateSE: {{ funcName: Authenticate, extension: auth }}
    buildIDTokenClaimsSE: {{ funcName: BuildIDTokenClaims, extension: auth }}
"#,
        file = file.display(),
        key = key.display()
    );
    let (code, out) = validate(&yaml);
    assert_eq!(code, 0, "{out}");
    let gw = Gateway::start(&yaml);
    let op = Op { gw, _keys: keys };
    let c = client();
    let verifier = tessera::session::random_token(32);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let authorize = authorize_url(&op, &challenge);
    let path = authorize.trim_start_matches(&op.gw.url(""));
    // The extension chose okta: the login flow offers it (corp would be refused by the form).
    let (cookie, mut loc) = login(
        &op.gw,
        &format!("/{}", path.trim_start_matches('/')),
        "okta",
        "alice",
        "pw",
    )
    .await;
    for _ in 0..3 {
        if loc.starts_with(REDIRECT) {
            break;
        }
        let r = c
            .get(op.gw.url(&loc))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "{loc}");
        loc = r.headers()["location"].to_str().unwrap().to_string();
    }
    assert!(loc.starts_with(REDIRECT), "{loc}");
    let q: HashMap<String, String> = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let (status, body) = token(
        &op,
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = jwt_payload(body["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], "alice", "{id}");

    // The proxy policy without idps: anonymous is sent to the extension's IdP; the session
    // from okta is accepted.
    let r = c.get(op.gw.url("/legacy/x")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/.tessera/login?flow="));
    let r = c
        .get(op.gw.url("/legacy/x"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(Echo::from(r).await.path(), "/legacy/x");
}

/// `modifyResponseSE`: the upstream's answer rewritten (status, headers, body) before the
/// client gets it; an invalid rewrite fails closed (500); a body over
/// `modifyResponseMaxBodyKiB` fails closed (502); a response the hook leaves alone passes.
#[tokio::test]
async fn modify_response_rewrites_the_upstream_answer_and_fails_closed() {
    let up = upstream().await;
    let file = guest("proxy-hooks");
    let yaml = format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - {{ name: local, type: local, users: [] }}
serviceExtensions:
  - {{ name: ext, file: "{file}", limits: {{ timeoutMillis: 2000 }} }}
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{up}
    modifyResponseSE: {{ funcName: ModifyResponse, extension: ext }}
    modifyResponseMaxBodyKiB: 1
    policies:
      - location: /
        authentication: {{ allowUnauthenticated: true }}
        authorization: {{ allowAll: true }}
"#
    );
    let (code, out) =
        validate(&yaml.replace("modifyResponseMaxBodyKiB: 1", "modifyResponseMaxBodyKiB: 0"));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(":14:5: modifyResponseMaxBodyKiB must be 1..=65536, not 0"),
        "{out}"
    );
    let gw = Gateway::start(&yaml);
    let c = client();

    let r = c.get(gw.url("/rewrite/page")).send().await.unwrap();
    assert_eq!(r.status(), 203);
    assert_eq!(r.headers()["x-rewritten"], "yes");
    let body = r.text().await.unwrap();
    let echo = body.strip_prefix("rewritten:").expect("rewritten body");
    let echo: Value = serde_json::from_str(echo).unwrap();
    assert_eq!(echo["path"], "/rewrite/page", "{echo}");

    let r = c.get(gw.url("/plain")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-rewritten").is_none());
    assert_eq!(Echo::from(r).await.path(), "/plain");

    let r = c.get(gw.url("/bytes?n=1000")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 1000);

    // An invalid status: the call fails closed.
    let r = c.get(gw.url("/badstatus")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    gw.wait_log("response status 1000 is not 100..=599");
    // More than 1 KiB from the upstream: not read, 502.
    let r = c.get(gw.url("/bytes?n=2000")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    gw.wait_log("larger than modifyResponseMaxBodyKiB");
}
