//! Session attributes on the proxy path (issue #12 findings 9 and 17): what authorization
//! rules mean for single values and lists, and how list values reach the upstream in
//! identity headers.

use crate::support::*;

/// Users: `sys` (one group, `sysadmins-readonly`), `admin` (one group, `admins`), `odd`
/// (groups with a comma, a CR/LF, a quote), all with password "pw". `/admin` needs
/// `local.groups contains admins`; `/text` needs `containsText: admins`.
fn config(upstream: std::net::SocketAddr) -> String {
    let hash = pw_hash();
    format!(
        r#"version: 1
http: {{ address: "127.0.0.1:0" }}
logger: {{ level: info, format: json }}
connectors:
  - name: local
    type: local
    users:
      - username: sys
        passwordHash: "{hash}"
        attributes: {{ groups: sysadmins-readonly }}
      - username: admin
        passwordHash: "{hash}"
        attributes: {{ groups: admins }}
      - username: odd
        passwordHash: "{hash}"
        attributes: {{ groups: ["staff,admins", "evil\r\nX-Admin: yes", "admins", "say \"hi\"", "x\u0000y"] }}
apps:
  - name: app
    type: proxy
    routePatterns: ["/"]
    upstream: http://{upstream}
    headers:
      - {{ name: X-User, value: "{{{{ local.username }}}}" }}
      - {{ name: X-Groups, value: "{{{{ local.groups }}}}" }}
    policies:
      - location: /admin
        authentication: {{ idps: [local] }}
        authorization: {{ rules: {{ attribute: local.groups, contains: admins }} }}
      - location: /text
        authentication: {{ idps: [local] }}
        authorization: {{ rules: {{ attribute: local.groups, containsText: admins }} }}
      - location: /
        authentication: {{ idps: [local] }}
        authorization: {{ allowAll: true }}
"#
    )
}

async fn get(gw: &Gateway, path: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(gw.url(path))
        .header("cookie", cookie)
        .header("x-groups", "admins")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn contains_is_list_membership_not_a_substring() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up));
    let (sys, _) = login(&gw, "/", "local", "sys", "pw").await;
    let (admin, _) = login(&gw, "/", "local", "admin", "pw").await;

    // `sysadmins-readonly` is not `admins`: 403, the upstream is not reached.
    let r = get(&gw, "/admin/users", &sys).await;
    assert_eq!(r.status(), 403);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("not allowed to open this page"));
    // A single value is a one-element list: `admins` is a member.
    let echo = Echo::from(get(&gw, "/admin/users", &admin).await).await;
    assert_eq!(echo.path(), "/admin/users");
    assert_eq!(echo.one("x-user").as_deref(), Some("admin"));
    assert_eq!(echo.one("x-groups").as_deref(), Some("admins"));
    // The substring test exists, by an unmistakable name.
    let echo = Echo::from(get(&gw, "/text", &sys).await).await;
    assert_eq!(echo.one("x-user").as_deref(), Some("sys"));
    assert_eq!(echo.one("x-groups").as_deref(), Some("sysadmins-readonly"));
}

#[tokio::test]
async fn list_values_reach_the_upstream_unambiguously() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up));
    let (odd, _) = login(&gw, "/", "local", "odd", "pw").await;
    let echo = Echo::from(get(&gw, "/x", &odd).await).await;
    // `staff,admins` is one group (quoted), `admins` another; the CR/LF and NUL values are
    // left out alone (the client's forged copy is gone); quotes are escaped.
    assert_eq!(
        echo.one("x-groups").as_deref(),
        Some(r#""staff,admins",admins,"say \"hi\"""#)
    );
    assert_eq!(echo.one("x-admin"), None);
    assert_eq!(echo.one("x-user").as_deref(), Some("odd"));
    // One warning per rendering, naming the header and the attribute, never the value.
    let line = gw.wait_log("identity header: attribute values with control characters left out");
    assert!(
        line.contains("\"header\":\"x-groups\"")
            && line.contains("\"attribute\":\"local.groups\"")
            && line.contains("\"dropped\":2"),
        "{line}"
    );
    assert!(!gw.logs().contains("evil"), "a dropped value was logged");
    // The rule still compares raw values: `staff,admins` is not `admins`, but `admins` is.
    assert_eq!(get(&gw, "/admin", &odd).await.status(), 200);
}
