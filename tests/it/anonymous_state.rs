//! What anonymous requests may make the gateway keep (issue #12, finding 7): login flows per
//! client IP (429 past the limit), the return URL's length (path only past 2 KiB, 414 for a
//! longer path), parked authorization requests (8 KiB), and the memory store's byte budget —
//! at which flows are evicted, so a flood never makes a real login answer 503.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::support::*;

fn with_session(up: std::net::SocketAddr, session: &str) -> String {
    let yaml = config(up, "", DEFAULT_POLICIES);
    yaml.replace(
        "connectors:\n",
        &format!("session: {session}\nconnectors:\n"),
    )
}

fn client_from(ip: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .local_address(ip)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_flood_of_anonymous_requests_stays_in_the_budget_and_logins_still_work() {
    let up = upstream().await;
    let gw = Gateway::start(&with_session(
        up,
        "{ loginFlows: { maxPerClientIP: 1000000 }, memoryStore: { maxMiB: 1 } }",
    ));
    // warm up (first requests allocate buffers, the runtime's threads, ...)
    let c = client();
    for _ in 0..50 {
        c.get(gw.url("/warm")).send().await.unwrap();
    }
    let before = gw.rss_kib();
    // 4000 anonymous requests, each asking the gateway to keep a ~1.9 KiB return URL for
    // 600 s: ~9 MiB of flows offered to a 1 MiB store
    let query = "q=".to_string() + &"a".repeat(1900);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let url = gw.url(&format!("/flood/{t}?{query}"));
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut found = 0;
            for _ in 0..500 {
                let r = c.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 302);
                found += 1;
            }
            found
        }));
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await.unwrap();
    }
    assert_eq!(sent, 4000);
    let grown = gw.rss_kib().saturating_sub(before);
    // Unbounded, the flows alone would be ~9 MiB (plus their map): the store is bounded
    // at 1 MiB, and what was evicted is reused.
    assert!(grown < 6 * 1024, "RSS grew by {grown} KiB");
    // a real login right after the flood: not 503, and the session works
    let (cookie, back) = login(&gw, "/after", "local", "alice", "pw").await;
    assert_eq!(back, "/after");
    let r = client()
        .get(gw.url("/after"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo = Echo::from(r).await;
    assert_eq!(echo.path(), "/after");
    assert_eq!(echo.one("x-user").as_deref(), Some("alice"));
}

#[tokio::test]
async fn one_client_ip_may_start_a_bounded_number_of_flows() {
    let up = upstream().await;
    let gw = Gateway::start(&with_session(
        up,
        "{ loginFlows: { maxPerClientIP: 5, windowSeconds: 60 } }",
    ));
    let c = client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
    for _ in 0..5 {
        let r = c.get(gw.url("/page")).send().await.unwrap();
        assert_eq!(r.status(), 302);
    }
    let r = c.get(gw.url("/page")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "60");
    assert!(r.headers().get("location").is_none());
    assert!(
        r.headers().get("set-cookie").is_none(),
        "no flow was started"
    );
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Too many sign-ins were started from your network"),
        "{body}"
    );
    gw.wait_log("too many sign-ins started from one client IP");
    // another client is not affected
    let other = client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let r = other.get(gw.url("/page")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    // the direct sign-in link counts too
    let r = c
        .get(gw.url("/.tessera/login?rd=/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn a_long_return_url_keeps_its_path_and_a_long_path_is_refused() {
    let up = upstream().await;
    let gw = Gateway::start(&config(up, "", DEFAULT_POLICIES));
    let long_query = format!("/reports/q3?filter={}", "x".repeat(3000));
    let (cookie, back) = login(&gw, &long_query, "local", "alice", "pw").await;
    assert_eq!(back, "/reports/q3", "the query was dropped, the path kept");
    let echo = Echo::from(
        client()
            .get(gw.url(&back))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.path(), "/reports/q3");
    // a short one comes back whole
    let (_, back) = login(&gw, "/reports/q3?filter=x", "local", "alice", "pw").await;
    assert_eq!(back, "/reports/q3?filter=x");
    // a path too long to come back to: 414, nothing stored
    let r = client()
        .get(gw.url(&format!("/{}", "p".repeat(3000))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 414);
    assert!(r.headers().get("set-cookie").is_none());
}

fn provider_config(keys: &tempfile::TempDir) -> String {
    local_provider_config(keys, "web", "", "")
}

fn authorize(gw: &Gateway, extra: &[(&str, &str)]) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", "web"),
            ("redirect_uri", "https://rp.example.com/cb"),
            ("response_type", "code"),
            ("scope", "openid"),
        ])
        .extend_pairs(extra)
        .finish();
    gw.url(&format!("/oauth2/authorize?{q}"))
}

#[tokio::test]
async fn an_oversized_authorization_request_is_refused_not_parked() {
    let keys = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&provider_config(&keys));
    let c = client();
    // a normal request is parked and sent to sign in
    let r = c
        .get(authorize(&gw, &[("state", "xyz"), ("nonce", "n")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/.tessera/login?flow="));
    // 10 KiB of parameters (each under the 8 KiB a single one may have): refused back to
    // the (registered) client with invalid_request
    let big = "n".repeat(5 * 1024);
    let r = c
        .get(authorize(
            &gw,
            &[("state", "xyz"), ("nonce", &big), ("login_hint", &big)],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("https://rp.example.com/cb?"), "{loc}");
    let q: HashMap<String, String> = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "xyz");
    assert!(q["error_description"].contains("too large"), "{loc}");
    assert!(
        r.headers().get("set-cookie").is_none(),
        "nothing was started"
    );
    // much of it is the state itself: not echoed, an error page
    let r = c
        .get(authorize(&gw, &[("state", &big), ("nonce", &big)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    // an unregistered redirect_uri still never gets a redirect
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", "web"),
            ("redirect_uri", "https://evil.example.com/cb"),
            ("response_type", "code"),
            ("nonce", &big),
            ("login_hint", &big),
        ])
        .finish();
    let r = c
        .get(gw.url(&format!("/oauth2/authorize?{q}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
}
