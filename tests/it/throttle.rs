//! Login throttling under concurrency (issue #12, finding 6): an attempt is reserved before
//! the password is checked, so a parallel burst gets at most `maxFailures` checks — at the
//! login form and at the provider's password grant — and the right password sent in the
//! burst is refused too. Buckets count the canonical user, and one IP's failures for one
//! user never lock out the other users behind it.

use std::time::Duration;

use crate::support::*;
use serde_json::Value;

const WRONG: usize = 15;

/// `support::config` with `maxFailures: 5` and the given extra throttle keys.
fn throttled_config(up: std::net::SocketAddr, extra: &str) -> String {
    config(up, "", DEFAULT_POLICIES).replace(
        "throttle: { maxFailures: 3, windowSeconds: 60 }",
        &format!("throttle: {{ maxFailures: 5, windowSeconds: 60{extra} }}"),
    )
}

/// A login form ready to post: (flow cookie, flow id, csrf).
async fn open_form(gw: &Gateway) -> (String, String, String) {
    let s = start_login(gw, "/").await;
    let html = client()
        .get(format!("{}&idp=local", s.login_url))
        .header("cookie", &s.flow_cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (s.flow_cookie, hidden(&html, "flow"), hidden(&html, "csrf"))
}

async fn post_form(
    gw_url: String,
    form: (String, String, String),
    user: String,
    pw: String,
) -> u16 {
    let (cookie, flow, csrf) = form;
    client()
        .post(gw_url)
        .header("cookie", cookie)
        .form(&[
            ("flow", flow),
            ("csrf", csrf),
            ("idp", "local".into()),
            ("username", user),
            ("password", pw),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_parallel_burst_of_guesses_gets_five_checks_and_the_right_password_is_refused() {
    let up = upstream().await;
    let gw = Gateway::start(&throttled_config(up, ""));
    let mut forms = Vec::new();
    for _ in 0..=WRONG {
        forms.push(open_form(&gw).await);
    }
    let right_form = forms.pop().unwrap();
    // The burst: every wrong guess at once, for spelling variants of one user (they are one
    // user to the throttle).
    let variants = ["bob", "BOB", " bob", "bob ", "ｂob"];
    let mut burst = Vec::new();
    for (i, f) in forms.into_iter().enumerate() {
        let user = variants[i % variants.len()].to_string();
        burst.push(tokio::spawn(post_form(
            gw.url("/.tessera/login"),
            f,
            user,
            format!("wrong-{i}"),
        )));
    }
    // the right password, while the burst is still being checked (argon2 takes a while)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let right = post_form(
        gw.url("/.tessera/login"),
        right_form,
        "bob".into(),
        "pw".into(),
    )
    .await;
    let mut statuses = Vec::new();
    for b in burst {
        statuses.push(b.await.unwrap());
    }
    statuses.sort_unstable();
    let mut expected = vec![401u16; 5];
    expected.extend(vec![429u16; WRONG - 5]);
    assert_eq!(
        statuses, expected,
        "five checks, the rest refused unchecked"
    );
    assert_eq!(right, 429, "the right password in the burst is refused");
    // observable: exactly five verifications happened
    gw.wait_logs(
        "too many failed attempts",
        WRONG - 5 + 1,
        Duration::from_secs(10),
    );
    assert_eq!(
        gw.count_logs("login failed: wrong username or password"),
        5,
        "{}",
        gw.logs()
    );
    assert_eq!(gw.count_logs("password verified"), 0);
    // alice, behind the same IP, is not locked out by bob's failures
    let (cookie, _) = login(&gw, "/", "local", "alice", "pw").await;
    let r = client()
        .get(gw.url("/who"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(Echo::from(r).await.one("x-user").as_deref(), Some("alice"));
}

#[tokio::test]
async fn one_ip_may_fail_for_a_bounded_number_of_users_who_keep_their_own_budget() {
    let up = upstream().await;
    let gw = Gateway::start(&throttled_config(up, ", maxUsersPerClientIP: 2"));
    let url = gw.url("/.tessera/login");
    // failures for two users from this IP
    for user in ["u1", "u2"] {
        let f = open_form(&gw).await;
        assert_eq!(
            post_form(url.clone(), f, user.into(), "x".into()).await,
            401
        );
    }
    // a third user from the same IP: spraying, refused without a check
    let f = open_form(&gw).await;
    assert_eq!(
        post_form(url.clone(), f, "alice".into(), "pw".into()).await,
        429
    );
    // a user already counted keeps trying within its own budget
    let f = open_form(&gw).await;
    assert_eq!(
        post_form(url.clone(), f, "u1".into(), "x".into()).await,
        401
    );
    assert_eq!(gw.count_logs("login failed: wrong username or password"), 3);
}

/// A provider with a password-grant client; the local connector allows 5 failures.
fn provider_config(keys: &tempfile::TempDir) -> String {
    local_provider_config(
        keys,
        "cli",
        "    throttle: { maxFailures: 5, windowSeconds: 60 }",
        "    grantTypes: [password]",
    )
}

async fn password_grant(url: String, user: &str, pw: &str) -> (u16, Value) {
    let r = client()
        .post(url)
        .basic_auth("cli", Some("s3cret-s3cret-s3cret"))
        .form(&[
            ("grant_type", "password"),
            ("username", user),
            ("password", pw),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn the_password_grant_reserves_before_it_verifies() {
    let keys = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&provider_config(&keys));
    let url = gw.url("/oauth2/token");
    let mut burst = Vec::new();
    for i in 0..WRONG {
        let url = url.clone();
        let user = if i % 2 == 0 { "alice" } else { "ALICE " };
        burst.push(tokio::spawn(async move {
            password_grant(url, user, &format!("wrong-{i}")).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, right) = password_grant(url.clone(), "alice", "pw").await;
    let mut descriptions = Vec::new();
    for b in burst {
        let (status, body) = b.await.unwrap();
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        descriptions.push(body["error_description"].as_str().unwrap().to_string());
    }
    let wrong = descriptions
        .iter()
        .filter(|d| *d == "wrong username or password")
        .count();
    let throttled = descriptions
        .iter()
        .filter(|d| *d == "too many failed attempts; try again later")
        .count();
    assert_eq!((wrong, throttled), (5, WRONG - 5), "{descriptions:?}");
    assert_eq!(
        (
            status,
            right["error"].as_str(),
            right["error_description"].as_str()
        ),
        (
            400,
            Some("invalid_grant"),
            Some("too many failed attempts; try again later")
        ),
        "the right password in the burst is refused"
    );
    gw.wait_logs(
        "password grant refused: too many failed attempts",
        WRONG - 5 + 1,
        Duration::from_secs(10),
    );
    assert_eq!(
        gw.count_logs("password grant: wrong username or password"),
        5,
        "{}",
        gw.logs()
    );
}
