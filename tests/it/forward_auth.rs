//! Forward-auth through real ingresses (issue #16): Debian's nginx with `auth_request` (as
//! ingress-nginx configures it) and Caddy's `forward_auth`, the gateway deciding and the
//! ingress forwarding. Each case is checked by what the upstream received.

use std::net::SocketAddr;

use crate::support::ingress::{self, Ingress};
use crate::support::*;

/// A gateway on `gateway` with one `forwardAuth` app for the ingress on `ingress_port`
/// (`/admin` for the `admins` group only), believing forward-auth calls from `trusted`.
fn gateway(gateway: SocketAddr, ingress_port: u16, trusted: &str) -> Gateway {
    let hash = pw_hash();
    Gateway::start(&format!(
        r#"version: 1
http: {{ address: "{gateway}", trustedProxies: ["{trusted}"] }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
    users:
      - {{ username: alice, passwordHash: "{hash}", attributes: {{ groups: [admins, staff] }} }}
      - {{ username: bob, passwordHash: "{hash}", attributes: {{ groups: [staff] }} }}
apps:
  - name: behind-ingress
    type: forwardAuth
    routePatterns: ["127.0.0.1:{ingress_port}/"]
    gatewayURL: http://{gateway}
    headers:
      - {{ name: X-User, value: "{{{{ local.username }}}}" }}
      - {{ name: X-Groups, value: "{{{{ local.groups }}}}" }}
    policies:
      - location: /public
        authentication: {{ allowUnauthenticated: true }}
        authorization: {{ allowAll: true }}
      - location: /admin
        authentication: {{ idps: [local] }}
        authorization: {{ rules: {{ attribute: local.groups, contains: admins }} }}
      - location: /
        authentication: {{ idps: [local] }}
        authorization: {{ allowAll: true }}
"#
    ))
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn through(ingress: &Ingress, path: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(ingress.url(path))
        .header("cookie", cookie)
        // a client's own identity header: the ingress must replace it with the gateway's
        .header("x-user", "mallory")
        .send()
        .await
        .unwrap()
}

/// Signs in as `user` at the gateway's sign-in for `back` (as the ingress's redirect does);
/// returns the session cookie after checking the browser is sent back to `back`.
async fn sign_in(gw: &Gateway, back: &str, user: &str) -> String {
    let (cookie, location) = login(
        gw,
        &format!("/.tessera/login?rd={}", encode(back)),
        "local",
        user,
        "pw",
    )
    .await;
    assert_eq!(location, back, "back at the app after sign-in");
    cookie
}

#[tokio::test]
async fn nginx_auth_request_signs_in_forwards_identity_and_denies() {
    let up = upstream().await;
    let [g] = free_ports();
    let gw_addr: SocketAddr = ([127, 0, 0, 1], g).into();
    // nginx's auth subrequests leave from 127.0.0.2; the test's own client is 127.0.0.1
    let nginx = ingress::nginx(gw_addr, up);
    let gw = gateway(gw_addr, nginx.port, "127.0.0.2/32");
    let app_url = nginx.url("/hello");

    // anonymous: nginx turns the gateway's 401 into the sign-in redirect (auth-signin)
    let r = through(&nginx, "/hello", "").await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        format!("http://{gw_addr}/.tessera/login?rd={app_url}").as_str()
    );
    let alice = sign_in(&gw, &app_url, "alice").await;

    // signed in: the upstream gets the gateway's identity headers, never the client's
    let r = through(&nginx, "/hello", &alice).await;
    assert_eq!(r.status(), 200);
    let echo = Echo::from(r).await;
    assert_eq!(echo.header("x-user"), vec!["alice".to_string()]);
    assert_eq!(echo.one("x-groups").as_deref(), Some("admins,staff"));
    assert_eq!(echo.path(), "/hello");
    let r = through(&nginx, "/admin/panel", &alice).await;
    assert_eq!(r.status(), 200);

    // a user the policy refuses: 403 from nginx, nothing reaches the upstream
    let bob = sign_in(&gw, &nginx.url("/admin/panel"), "bob").await;
    let r = through(&nginx, "/admin/panel", &bob).await;
    assert_eq!(r.status(), 403);
    assert!(!r.text().await.unwrap().contains("\"path\""));
    assert_eq!(through(&nginx, "/other", &bob).await.status(), 200);
    let echo = Echo::from(through(&nginx, "/public/page", "").await).await;
    assert!(echo.header("x-user").iter().all(|v| v.is_empty()));

    // the gateway believes the original request only from the ingress: a client calling the
    // forward-auth endpoint itself (127.0.0.1, not trusted) gets no decision and no headers
    let r = client()
        .get(gw.url("/.tessera/auth"))
        .header("cookie", &alice)
        .header("x-original-url", app_url.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("x-user").is_none());
    gw.wait_log("forward-auth call refused");

    // signed out at the gateway: the next request through nginx asks to sign in again
    let r = logout(&gw, "/.tessera/logout", &alice).await;
    assert!(
        r.status().is_redirection() || r.status() == 200,
        "{}",
        r.status()
    );
    let r = through(&nginx, "/hello", &alice).await;
    assert_eq!(
        r.status(),
        302,
        "a logout is effective at once (nothing cached)"
    );

    // the sign-in returns only to hosts a forwardAuth app serves: no open redirect
    let r = client()
        .get(gw.url(&format!(
            "/.tessera/login?rd={}",
            encode("http://evil.example/steal")
        )))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 302, "a foreign return URL starts no sign-in");
}

#[tokio::test]
async fn caddy_forward_auth_redirects_to_sign_in_and_forwards_identity() {
    let up = upstream().await;
    let [g] = free_ports();
    let gw_addr: SocketAddr = ([127, 0, 0, 1], g).into();
    let caddy = ingress::caddy(gw_addr, up);
    let gw = gateway(gw_addr, caddy.port, "127.0.0.1/32");
    let app_url = caddy.url("/docs?page=2");

    // anonymous: Caddy passes the gateway's redirect to the browser
    let r = through(&caddy, "/docs?page=2", "").await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        format!("http://{gw_addr}/.tessera/login?rd={}", encode(&app_url)).as_str()
    );
    let alice = sign_in(&gw, &app_url, "alice").await;
    let r = through(&caddy, "/docs?page=2", &alice).await;
    assert_eq!(r.status(), 200);
    let echo = Echo::from(r).await;
    assert_eq!(echo.header("x-user"), vec!["alice".to_string()]);
    assert_eq!(echo.path(), "/docs");

    let bob = sign_in(&gw, &caddy.url("/admin"), "bob").await;
    assert_eq!(through(&caddy, "/admin", &bob).await.status(), 403);

    // a public location: no user, and the client's own X-User does not get through either
    let r = through(&caddy, "/public/page", "").await;
    assert_eq!(r.status(), 200);
    let echo = Echo::from(r).await;
    assert!(
        echo.header("x-user").iter().all(|v| v.is_empty()),
        "{:?}",
        echo.header("x-user")
    );

    // a POST without a session is not redirected (its body could not be replayed): 401
    let r = client()
        .post(caddy.url("/form"))
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn forward_auth_configuration_is_validated() {
    let app = |extra: &str| {
        format!(
            r#"version: 1
http: {{ address: "127.0.0.1:0"{extra} }}
connectors: [{{ name: local, type: local, users: [] }}]
apps:
  - name: fa
    type: forwardAuth
    routePatterns: ["app.example.com/"]
    upstream: http://127.0.0.1:9
    logout: {{ location: /bye }}
    gatewayURL: "ftp://auth.example.com"
    policies: [{{ location: /, authentication: {{ idps: [local] }}, authorization: {{ allowAll: true }} }}]
"#
        )
    };
    let (code, out) = validate_with(&app(""), &[]);
    assert_eq!(code, 2, "{out}");
    for expected in [
        "t.yaml:8:5: a forwardAuth app has no `upstream`: the ingress forwards the request",
        "t.yaml:9:5: a forwardAuth app has no `logout`: the ingress forwards the request",
        "t.yaml:5:5: a forwardAuth app needs `http.trustedProxies`: the original request is believed only from the ingress",
        "t.yaml:10:5: `ftp://auth.example.com` is not an http(s) URL without query or fragment",
        "4 problems",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
    let fixed = app(r#", trustedProxies: ["10.0.0.0/8"]"#)
        .replace("    upstream: http://127.0.0.1:9\n", "")
        .replace("    logout: { location: /bye }\n", "")
        .replace("ftp://", "https://");
    let (code, out) = validate_with(&fixed, &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = validate_with(
        &fixed.replace("    gatewayURL: \"https://auth.example.com\"\n", ""),
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        out.contains("a forwardAuth app needs `gatewayURL`"),
        "{out}"
    );
}
