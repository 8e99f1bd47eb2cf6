//! `upstreamLoginSE` through the real gateway, against a legacy app with its own login form
//! (a CSRF token bound to a pre-login cookie, then `LEGACYSESSION`): the upstream sees its
//! own session cookie, the browser never does, the login runs once per session, an expired
//! upstream session logs in again, and every failure of the hook fails closed before the
//! upstream is called.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::extensions::{guest, validate};
use crate::support::*;

/// What the legacy app knows and saw.
#[derive(Default)]
struct LegacyState {
    /// Pre-login cookie value → the CSRF token of its form.
    flows: HashMap<String, String>,
    /// `LEGACYSESSION` value → user.
    sessions: HashMap<String, String>,
    /// Successful form logins.
    logins: usize,
    /// Requests for protected pages: (method, path, cookie header).
    pages: Vec<(String, String, Option<String>)>,
    next: usize,
}

#[derive(Clone, Default)]
struct Legacy(Arc<Mutex<LegacyState>>);

impl Legacy {
    fn logins(&self) -> usize {
        self.0.lock().unwrap().logins
    }
    fn pages(&self) -> Vec<(String, String, Option<String>)> {
        self.0.lock().unwrap().pages.clone()
    }
    /// The app forgets every session (its sessions expired).
    fn forget_sessions(&self) {
        self.0.lock().unwrap().sessions.clear();
    }
}

fn cookie_of(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn answer(status: u16, headers: &[(&'static str, String)], body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        r.headers_mut()
            .append(*k, http::HeaderValue::from_str(v).unwrap());
    }
    r
}

/// `GET /login`: a form with a CSRF token, bound to the cookie `LOGINFLOW`. `POST /login`:
/// `username`, `password` (`s3cret`) and the token of that cookie → 302 with
/// `LEGACYSESSION`; else 200 "bad login". Any other path: without a known `LEGACYSESSION`,
/// 302 to `/login?next=…`; with one, a JSON echo (user, method, path, cookie header) that
/// also sets `LEGACYSESSION` again (the gateway must not pass that to the browser).
async fn legacy_app() -> (SocketAddr, Legacy) {
    legacy_app_with(None).await
}

/// The legacy app on https, with a certificate of a private CA (in `dir`; returns its file).
async fn legacy_app_https(dir: &std::path::Path) -> (SocketAddr, Legacy, std::path::PathBuf) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let ca = crate::support::slapd::write_tls_material(dir);
    let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (addr, legacy) = legacy_app_with(Some(acceptor)).await;
    (addr, legacy, ca)
}

async fn legacy_app_with(tls: Option<tokio_rustls::TlsAcceptor>) -> (SocketAddr, Legacy) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let legacy = Legacy::default();
    let state = legacy.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(legacy_answer(&state, req).await) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = match tls {
                    None => builder.serve_connection(TokioIo::new(stream), svc).await,
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(tls) => builder.serve_connection(TokioIo::new(tls), svc).await,
                        Err(_) => return,
                    },
                };
            });
        }
    });
    (addr, legacy)
}

async fn legacy_answer(state: &Legacy, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let cookie_header = req
        .headers()
        .get("cookie")
        .map(|v| v.to_str().unwrap().to_string());
    match (method.as_str(), path.as_str()) {
        ("GET", "/login") => {
            let mut s = state.0.lock().unwrap();
            s.next += 1;
            let (flow, token) = (format!("flow-{}", s.next), format!("tok-{}", s.next));
            s.flows.insert(flow.clone(), token.clone());
            answer(
                200,
                &[("set-cookie", format!("LOGINFLOW={flow}; Path=/login"))],
                format!(
                    r#"<form method="post"><input type="hidden" name="csrf" value="{token}"><input name="username"><input name="password" type="password"></form>"#
                ),
            )
        }
        ("POST", "/login") => {
            let flow = cookie_of(&req, "LOGINFLOW");
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let form: HashMap<String, String> =
                form_urlencoded::parse(&body).into_owned().collect();
            let mut s = state.0.lock().unwrap();
            let token_ok = flow
                .and_then(|f| s.flows.remove(&f))
                .is_some_and(|t| form.get("csrf") == Some(&t));
            let user = form.get("username").cloned().unwrap_or_default();
            if !token_ok
                || user.is_empty()
                || form.get("password").map(String::as_str) != Some("s3cret")
            {
                return answer(200, &[], "bad login".into());
            }
            s.next += 1;
            s.logins += 1;
            let id = format!("sess-{}", s.next);
            s.sessions.insert(id.clone(), user);
            answer(
                302,
                &[
                    ("location", "/home".into()),
                    (
                        "set-cookie",
                        format!("LEGACYSESSION={id}; Path=/; HttpOnly"),
                    ),
                ],
                String::new(),
            )
        }
        _ => {
            let mut s = state.0.lock().unwrap();
            s.pages
                .push((method.clone(), path.clone(), cookie_header.clone()));
            let user = cookie_of(&req, "LEGACYSESSION").and_then(|id| s.sessions.get(&id).cloned());
            match user {
                None => answer(
                    302,
                    &[("location", format!("/login?next={path}"))],
                    String::new(),
                ),
                Some(user) => {
                    let mut id = cookie_of(&req, "LEGACYSESSION").unwrap();
                    let mut session_cookie = format!("LEGACYSESSION={id}; Path=/");
                    match path.as_str() {
                        // A privilege change: a new session id, the old one is void.
                        "/rotate" => {
                            s.sessions.remove(&id);
                            s.next += 1;
                            id = format!("sess-r{}", s.next);
                            s.sessions.insert(id.clone(), user.clone());
                            session_cookie = format!("LEGACYSESSION={id}; Path=/; HttpOnly");
                        }
                        // The app's own sign-out: the session ends, its cookie is deleted.
                        "/signout" => {
                            s.sessions.remove(&id);
                            session_cookie = "LEGACYSESSION=gone; Path=/; Max-Age=0".to_string();
                        }
                        _ => {}
                    }
                    let echo = serde_json::json!({
                        "user": user, "method": method, "path": path, "cookie": cookie_header,
                    });
                    answer(
                        200,
                        &[
                            ("content-type", "application/json".into()),
                            ("set-cookie", session_cookie),
                            ("set-cookie", "legacy_pref=blue; Path=/".into()),
                        ],
                        echo.to_string(),
                    )
                }
            }
        }
    }
}

/// One local user alice (password "pw"); the app `legacy` with `upstreamLoginSE` (`keys`
/// inside its mapping), signed in at `/`, public at `/public`.
fn config(upstream: SocketAddr, login: &str, extra: &str) -> String {
    let hash = pw_hash();
    let ext = guest("legacy-login");
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
{extra}connectors:
  - name: local
    type: local
    users:
      - {{ username: alice, passwordHash: "{hash}", attributes: {{ username: alice }} }}
serviceExtensions:
  - {{ name: legacy, file: "{ext}", secrets: [legacy.password], limits: {{ timeoutMillis: 1500 }} }}
apps:
  - name: legacy
    type: proxy
    routePatterns: ["/"]
    upstream: http://{upstream}
    upstreamLoginSE: {login}
    policies:
      - location: /public
        authentication: {{ allowUnauthenticated: true }}
        authorization: {{ allowAll: true }}
      - location: /
        authentication: {{ idps: [local] }}
        authorization: {{ allowAll: true }}
"#
    )
}

const LOGIN: &str = r#"{ funcName: UpstreamLogin, extension: legacy, reloginOn: { status: [401], redirectTo: /login } }"#;
const SECRET: [(&str, &str); 1] = [("LEGACY_PASSWORD", "s3cret")];

async fn get(
    gw: &Gateway,
    path: &str,
    cookie: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut r = client().get(gw.url(path)).header("cookie", cookie);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

/// The `set-cookie` values of a response.
fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

async fn json(r: reqwest::Response) -> serde_json::Value {
    assert_eq!(r.status(), 200, "the legacy page was not served");
    r.json().await.unwrap()
}

/// After the SSO login at the gateway the legacy app sees its own session cookie (once per
/// session: the login runs once for several requests), the browser never gets it, and a
/// browser cookie of the same name does not reach the upstream.
#[tokio::test]
async fn the_upstream_sees_its_own_session_and_the_browser_never_does() {
    let (up, legacy) = legacy_app().await;
    let gw = Gateway::start_with(&config(up, LOGIN, ""), &SECRET);
    let (cookie, _) = login(&gw, "/home", "local", "alice", "pw").await;
    assert_eq!(
        legacy.logins(),
        0,
        "no upstream login before a request needs it"
    );

    let r = get(&gw, "/home", &cookie, &[]).await;
    let set = set_cookies(&r);
    let page = json(r).await;
    assert_eq!(page["user"], "alice");
    assert_eq!(page["cookie"], "LEGACYSESSION=sess-2");
    // The upstream's own cookies of the stored names stay in the gateway; others pass.
    assert!(
        set.iter().all(|c| !c.starts_with("LEGACYSESSION")),
        "{set:?}"
    );
    assert!(
        set.contains(&"legacy_pref=blue; Path=/".to_string()),
        "{set:?}"
    );
    assert_eq!(legacy.logins(), 1);
    gw.wait_log("signed in at the upstream");

    for path in ["/a", "/b?x=1", "/home"] {
        let page = json(get(&gw, path, &cookie, &[]).await).await;
        assert_eq!(page["cookie"], "LEGACYSESSION=sess-2", "{path}");
    }
    assert_eq!(legacy.logins(), 1, "one login for the whole session");

    // A forged browser cookie of the stored name: the stored one wins; the browser's other
    // cookies go through; the gateway's own never does.
    let forged = format!("{cookie}; LEGACYSESSION=sess-forged; theme=dark");
    let page = json(get(&gw, "/home", &forged, &[]).await).await;
    assert_eq!(page["cookie"], "theme=dark; LEGACYSESSION=sess-2");

    // Every page request the upstream got carried the stored session, and only it.
    let pages = legacy.pages();
    assert_eq!(pages.len(), 5);
    assert!(
        pages.iter().all(|(_, _, c)| c.as_deref().is_some_and(|c| {
            c.contains("LEGACYSESSION=sess-2")
                && !c.contains("forged")
                && !c.contains("tessera_session")
        })),
        "{pages:?}"
    );

    // Without a session (a public page) there is no upstream login: the app's own answer.
    let r = client().get(gw.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/login?next=/public/x");
    assert_eq!(legacy.logins(), 1);

    // Another gateway session logs in anew (the cookies are per session).
    let (other, _) = login(&gw, "/home", "local", "alice", "pw").await;
    let page = json(get(&gw, "/home", &other, &[]).await).await;
    assert_eq!(page["cookie"], "LEGACYSESSION=sess-4");
    assert_eq!(legacy.logins(), 2);
}

/// The legacy app rotates its session id (the new value is kept, the old one never sent
/// again, no new login) and later deletes its cookie at its own sign-out (the next request
/// logs in again, without `reloginOn`): the gateway follows the upstream's `Set-Cookie` of a
/// stored cookie, and the browser still never sees it.
#[tokio::test]
async fn a_rotated_or_deleted_upstream_cookie_is_followed() {
    let (up, legacy) = legacy_app().await;
    let login_only = r#"{ funcName: UpstreamLogin, extension: legacy }"#;
    let gw = Gateway::start_with(&config(up, login_only, ""), &SECRET);
    let (cookie, _) = login(&gw, "/home", "local", "alice", "pw").await;

    // The first request logs in upstream (sess-2); the answer rotates the id.
    let r = get(&gw, "/rotate", &cookie, &[]).await;
    assert!(set_cookies(&r)
        .iter()
        .all(|c| !c.starts_with("LEGACYSESSION")));
    let page = json(r).await;
    assert_eq!(page["cookie"], "LEGACYSESSION=sess-2");
    assert_eq!(legacy.logins(), 1);
    let page = json(get(&gw, "/after", &cookie, &[]).await).await;
    assert_eq!(page["user"], "alice");
    assert_eq!(
        page["cookie"], "LEGACYSESSION=sess-r3",
        "the rotated id is sent"
    );
    assert_eq!(legacy.logins(), 1, "a rotation is no new login");

    let r = get(&gw, "/signout", &cookie, &[]).await;
    assert!(set_cookies(&r)
        .iter()
        .all(|c| !c.starts_with("LEGACYSESSION")));
    json(r).await;
    let page = json(get(&gw, "/again", &cookie, &[]).await).await;
    assert_eq!(legacy.logins(), 2, "a deleted cookie means a new login");
    assert_eq!(page["cookie"], "LEGACYSESSION=sess-5");
    let sent: Vec<(String, Option<String>)> = legacy
        .pages()
        .into_iter()
        .map(|(_, path, cookie)| (path, cookie))
        .collect();
    let cookie = |c: &str| Some(format!("LEGACYSESSION={c}"));
    assert_eq!(
        sent,
        vec![
            ("/rotate".to_string(), cookie("sess-2")),
            ("/after".to_string(), cookie("sess-r3")),
            ("/signout".to_string(), cookie("sess-r3")),
            ("/again".to_string(), cookie("sess-5")),
        ],
        "the old id is never sent after the rotation, the deleted one never after the sign-out"
    );
}

/// A legacy app on https behind a private CA: the login's `http-fetch` to the app's upstream
/// trusts what the app's `tls` profile trusts (its `caFile`), as the proxied requests do; the
/// extension's other fetches keep the public roots.
#[tokio::test]
async fn the_login_reaches_an_https_upstream_with_the_apps_tls_profile() {
    let dir = tempfile::tempdir().unwrap();
    let (up, legacy, ca) = legacy_app_https(dir.path()).await;
    let yaml = config(
        up,
        LOGIN,
        &format!("tls:\n  legacyCA: {{ caFile: \"{}\" }}\n", ca.display()),
    )
    .replace(
        &format!("upstream: http://{up}\n"),
        &format!(
            "upstream: https://127.0.0.1:{}\n    tls: legacyCA\n",
            up.port()
        ),
    );
    assert!(yaml.contains("tls: legacyCA"), "{yaml}");
    let gw = Gateway::start_with(&yaml, &SECRET);
    let (cookie, _) = login(&gw, "/home", "local", "alice", "pw").await;
    let page = json(get(&gw, "/home", &cookie, &[]).await).await;
    assert_eq!(page["user"], "alice");
    assert_eq!(page["cookie"], "LEGACYSESSION=sess-2");
    assert_eq!(legacy.logins(), 1);
}

/// The legacy app forgets its sessions: a GET is answered after a new login (sent once
/// more); a POST gets the app's answer as is (never sent twice) and the next request logs in.
#[tokio::test]
async fn an_expired_upstream_session_logs_in_again() {
    let (up, legacy) = legacy_app().await;
    let gw = Gateway::start_with(&config(up, LOGIN, ""), &SECRET);
    let (cookie, _) = login(&gw, "/home", "local", "alice", "pw").await;
    json(get(&gw, "/home", &cookie, &[]).await).await;
    assert_eq!(legacy.logins(), 1);

    legacy.forget_sessions();
    let r = get(&gw, "/home", &cookie, &[]).await;
    assert!(set_cookies(&r)
        .iter()
        .all(|c| !c.starts_with("LEGACYSESSION")));
    let page = json(r).await;
    assert_eq!(page["cookie"], "LEGACYSESSION=sess-4");
    assert_eq!(legacy.logins(), 2, "one new login");
    gw.wait_log("the upstream's session expired; its cookies are dropped");
    let pages = legacy.pages();
    assert_eq!(
        pages.len(),
        3,
        "the refused GET, then the same GET once more: {pages:?}"
    );
    assert_eq!(pages[1].2.as_deref(), Some("LEGACYSESSION=sess-2"));
    assert_eq!(pages[2].2.as_deref(), Some("LEGACYSESSION=sess-4"));

    legacy.forget_sessions();
    let r = client()
        .post(gw.url("/form"))
        .header("cookie", &cookie)
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "the upstream's own answer to the POST");
    assert_eq!(r.headers()["location"], "/login?next=/form");
    assert_eq!(
        legacy.logins(),
        2,
        "a POST is not sent twice, nor logged in for"
    );
    assert_eq!(legacy.pages().len(), 4);
    let page = json(get(&gw, "/after", &cookie, &[]).await).await;
    assert_eq!(page["cookie"], "LEGACYSESSION=sess-6");
    assert_eq!(legacy.logins(), 3);
    assert_eq!(
        legacy.pages().len(),
        5,
        "logged in before the request: sent once"
    );
}

/// Every failure of the hook fails closed with 500 before the upstream is called (no page
/// request reaches it), and stores nothing: the next request logs in.
#[tokio::test]
async fn failed_upstream_logins_fail_closed() {
    let (up, legacy) = legacy_app().await;
    let gw = Gateway::start_with(&config(up, LOGIN, ""), &SECRET);
    let (cookie, _) = login(&gw, "/home", "local", "alice", "pw").await;
    for (mode, logged) in [
        ("trap", "trapped"),
        ("loop", "deadline of 1500 ms exceeded"),
        (
            "err",
            "the guest reported a failed login: refused by the test",
        ),
        ("bad-name", "cookie name `LEGACY SESSION` is not a token"),
        (
            "bad-value",
            "the value of cookie `LEGACYSESSION` has a character a cookie cannot carry",
        ),
        (
            "many",
            "21 cookies, more than the 20 an upstream login may keep",
        ),
        ("none", "the login returned no cookie"),
        (
            "own",
            "cookie `tessera_session` is one of the gateway's own cookies",
        ),
    ] {
        let r = get(&gw, "/home", &cookie, &[("x-ul", mode)]).await;
        assert_eq!(r.status(), 500, "{mode}");
        assert!(set_cookies(&r).is_empty(), "{mode}");
        let line = gw.wait_log(logged);
        assert!(line.contains("UpstreamLogin"), "{line}");
    }
    assert!(
        legacy.pages().is_empty(),
        "the upstream saw no page request"
    );
    assert_eq!(legacy.logins(), 0);
    // Nothing was stored: a request without misbehaviour logs in and is served.
    let page = json(get(&gw, "/home", &cookie, &[]).await).await;
    assert_eq!(page["user"], "alice");
    assert_eq!(legacy.logins(), 1);
}

/// A wrong service password: the upstream refuses the form, the guest says so, 500 with the
/// app's `errorPage`, and the upstream saw no page request.
#[tokio::test]
async fn a_refused_form_login_gets_the_error_page() {
    let (up, legacy) = legacy_app().await;
    let mut yaml = config(up, LOGIN, "");
    yaml = yaml.replace(
        "    upstreamLoginSE:",
        "    errorPage: { html: \"<h1>legacy down</h1>\" }\n    upstreamLoginSE:",
    );
    let gw = Gateway::start_with(&yaml, &[("LEGACY_PASSWORD", "wrong")]);
    let (cookie, _) = login(&gw, "/home", "local", "alice", "pw").await;
    let r = get(&gw, "/home", &cookie, &[]).await;
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("<h1>legacy down</h1>"));
    gw.wait_log("the guest reported a failed login: the upstream refused the login");
    assert!(legacy.pages().is_empty());
}

/// The cookies ride in the session record: a second gateway on the same Redis serves the
/// session with the first one's upstream login.
#[tokio::test]
async fn upstream_cookies_persist_with_the_session_in_redis() {
    let redis = crate::support::redis::RedisServer::start();
    let (up, legacy) = legacy_app().await;
    let shared = format!(
        "session: {{ store: shared }}\ncaches:\n  - name: shared\n    type: redis\n    redis: {{ addresses: [\"{}\"] }}\n",
        redis.address()
    );
    let yaml = config(up, LOGIN, &shared);
    let one = Gateway::start_with(&yaml, &SECRET);
    let (cookie, _) = login(&one, "/home", "local", "alice", "pw").await;
    json(get(&one, "/home", &cookie, &[]).await).await;
    assert_eq!(legacy.logins(), 1);
    let two = Gateway::start_with(&yaml, &SECRET);
    let page = json(get(&two, "/home", &cookie, &[]).await).await;
    assert_eq!(page["cookie"], "LEGACYSESSION=sess-2");
    assert_eq!(
        legacy.logins(),
        1,
        "the second gateway used the stored cookies"
    );
}

#[test]
fn upstream_login_settings_are_checked() {
    let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let check = |login: &str, needle: &str| {
        let (code, out) = validate(&config(up, login, ""));
        assert_eq!(code, 2, "{login}: {out}");
        assert!(out.contains(needle), "{login}: {out}");
    };
    check(
        "{ funcName: UpstreamLogin, extension: legacy, reloginOn: {} }",
        ":16:68: reloginOn needs `status` or `redirectTo`",
    );
    check(
        "{ funcName: UpstreamLogin, extension: legacy, reloginOn: { status: [401, 302] } }",
        "302 is not an error status (400..=599)",
    );
    check(
        "{ funcName: UpstreamLogin, extension: legacy, reloginOn: { redirectTo: \"login?x\" } }",
        "`login?x` is not an absolute path",
    );
    check(
        "{ funcName: ModifyRequest, extension: legacy }",
        "this position calls the UpstreamLogin hook, not ModifyRequest",
    );
    check(
        "{ funcName: UpstreamLogin, extension: legacy, cacheSeconds: 5 }",
        "cacheSeconds",
    );
    let hooks = guest("proxy-hooks");
    check(
        &format!("{{ funcName: UpstreamLogin, file: \"{hooks}\" }}"),
        "does not export the UpstreamLogin hook (interface `tessera:extension/upstream-login@0.1.0`)",
    );
    let (code, out) = validate(&config(up, LOGIN, ""));
    assert_eq!(code, 0, "{out}");

    // Not on a forwardAuth app: the ingress forwards the request, there is no upstream call.
    let ext = guest("legacy-login");
    let (code, out) = validate(&format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0", trustedProxies: [127.0.0.1] }}
connectors:
  - {{ name: local, type: local, users: [] }}
apps:
  - name: fa
    type: forwardAuth
    routePatterns: ["app.example.com/"]
    gatewayURL: https://auth.example.com
    upstreamLoginSE: {{ funcName: UpstreamLogin, file: "{ext}" }}
    policies:
      - location: /
        authentication: {{ idps: [local] }}
        authorization: {{ allowAll: true }}
"#
    ));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(
            ":10:5: a forwardAuth app has no `upstreamLoginSE`: the ingress forwards the request"
        ),
        "{out}"
    );
}
