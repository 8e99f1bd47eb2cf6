//! `upstreamLoginSE`: a legacy upstream's own login, performed by an extension and kept in
//! the gateway session.
//!
//! The pipeline (`upstream_login` phase, after the identity headers, before ModifyRequest)
//! runs the UpstreamLogin hook when the session holds no cookies for the app, stores what it
//! returns (`SessionData::upstream_cookies`, per app) and merges the cookies into every
//! upstream request of the app ([`merge_cookies`]). When the upstream's answer says its
//! session is over ([`Relogin::expired`]) the cookies are dropped and the login runs again;
//! a request the gateway may send twice ([`resendable`]) is then sent once more. An answer
//! that re-sets a stored cookie updates it ([`rotated`]).

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::extensions::Hook;

/// A proxy app's `upstreamLoginSE`.
#[derive(Debug)]
pub struct UpstreamLogin {
    pub hook: Hook,
    pub relogin: Relogin,
}

/// `reloginOn`: the upstream answers that mean its session expired. Empty: none does.
#[derive(Debug, Default)]
pub struct Relogin {
    pub status: Vec<StatusCode>,
    /// The path of the upstream's login page a redirect points to.
    pub redirect_to: Option<String>,
}

impl Relogin {
    /// Whether any answer can mean an expired session.
    pub fn is_set(&self) -> bool {
        !self.status.is_empty() || self.redirect_to.is_some()
    }

    /// Whether `resp` says the upstream's session is over: a listed status, or a redirect to
    /// the login page (its `Location`'s path, relative or absolute URL, query ignored).
    pub fn expired<B>(&self, resp: &Response<B>) -> bool {
        if self.status.contains(&resp.status()) {
            return true;
        }
        let Some(login) = &self.redirect_to else {
            return false;
        };
        if !resp.status().is_redirection() {
            return false;
        }
        let Some(location) = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let path = match url::Url::parse(location) {
            Ok(abs) => abs.path().to_string(),
            // A relative reference: resolved against any base, only its path matters.
            Err(_) => match url::Url::parse("http://upstream/").and_then(|b| b.join(location)) {
                Ok(u) => u.path().to_string(),
                Err(_) => return false,
            },
        };
        path == *login
    }
}

/// Whether the gateway may send a request again after the upstream refused it for an expired
/// session: a GET or HEAD without a body and without an upgrade (anything else could act
/// twice, or its body is gone).
pub fn resendable(method: &Method, body_empty: bool, upgrade: bool) -> bool {
    matches!(*method, Method::GET | Method::HEAD) && body_empty && !upgrade
}

/// Sets the `cookie` header of an upstream request to the browser's cookies (`browser`: as
/// the upstream would get them, the gateway's own already removed) followed by the stored
/// ones. A browser cookie named like a stored one is left out: the stored one wins, so a
/// client cannot pick the upstream session its requests run in.
pub fn merge_cookies(
    headers: &mut HeaderMap,
    browser: Option<&HeaderValue>,
    stored: &[(String, String)],
) {
    let mut pairs: Vec<String> = browser
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
            !pair.is_empty() && !stored.iter().any(|(n, _)| n == name)
        })
        .map(str::to_string)
        .collect();
    pairs.extend(stored.iter().map(|(n, v)| format!("{n}={v}")));
    headers.remove(header::COOKIE);
    // Always valid: browser pairs came from a header value, stored ones were checked
    // (`extensions::call::check_upstream_cookies`).
    if let Ok(v) = HeaderValue::try_from(pairs.join("; ")) {
        if !v.is_empty() {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// The stored cookies after the upstream's answer changed some of them (`Set-Cookie` of a
/// stored name with another value: the upstream rotated its session id), or `None` when it
/// changed none (re-setting the same value, e.g. to slide its expiry, stores nothing). A cookie the answer deletes (empty value, `Max-Age` ≤ 0, or an `Expires` in
/// the past) is left out; the others keep their place. A legacy app that rotates its session
/// cookie would otherwise get the old value back and treat the user as signed out.
pub fn rotated(stored: &[(String, String)], answer: &HeaderMap) -> Option<Vec<(String, String)>> {
    let mut next = stored.to_vec();
    let mut changed = false;
    for line in answer.get_all(header::SET_COOKIE) {
        let Ok(line) = line.to_str() else { continue };
        let mut parts = line.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        let Some(at) = next.iter().position(|(n, _)| n == name) else {
            continue;
        };
        if value.is_empty() || parts.any(deletes) {
            next.remove(at);
            changed = true;
        } else if next[at].1 != value {
            next[at].1 = value.to_string();
            changed = true;
        }
    }
    changed.then_some(next)
}

/// Whether a `Set-Cookie` attribute ends the cookie now (RFC 6265 §5.2.1, §5.2.2).
fn deletes(attribute: &str) -> bool {
    let Some((key, value)) = attribute.split_once('=') else {
        return false;
    };
    let value = value.trim();
    if key.trim().eq_ignore_ascii_case("max-age") {
        return value.parse::<i64>().is_ok_and(|secs| secs <= 0);
    }
    key.trim().eq_ignore_ascii_case("expires")
        && httpdate::parse_http_date(value).is_ok_and(|at| at <= std::time::SystemTime::now())
}

/// The names of the stored cookies, for dropping the upstream's `Set-Cookie` of them: the
/// browser never holds the upstream session.
pub fn names(stored: &[(String, String)]) -> Vec<&str> {
    stored.iter().map(|(n, _)| n.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Vec<(String, String)> {
        vec![("LEGACYSESSION".into(), "abc".into())]
    }

    #[test]
    fn stored_cookies_win_over_the_browsers() {
        let mut h = HeaderMap::new();
        let browser = HeaderValue::from_static("a=1; LEGACYSESSION=forged;b=2");
        merge_cookies(&mut h, Some(&browser), &stored());
        assert_eq!(h[header::COOKIE], "a=1; b=2; LEGACYSESSION=abc");
        let mut h = HeaderMap::new();
        merge_cookies(&mut h, None, &stored());
        assert_eq!(h[header::COOKIE], "LEGACYSESSION=abc");
        let mut h = HeaderMap::new();
        merge_cookies(&mut h, None, &[]);
        assert!(h.get(header::COOKIE).is_none());
    }

    fn answer(status: u16, location: Option<&str>) -> Response<()> {
        let mut r = Response::new(());
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Some(l) = location {
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_str(l).unwrap());
        }
        r
    }

    #[test]
    fn expiry_is_a_listed_status_or_a_redirect_to_the_login_page() {
        let r = Relogin {
            status: vec![StatusCode::UNAUTHORIZED],
            redirect_to: Some("/login".into()),
        };
        assert!(r.expired(&answer(401, None)));
        assert!(r.expired(&answer(302, Some("/login?next=/x"))));
        assert!(r.expired(&answer(303, Some("http://legacy:8080/login"))));
        assert!(r.expired(&answer(302, Some("login"))));
        assert!(!r.expired(&answer(302, Some("/login/help"))));
        assert!(!r.expired(&answer(302, Some("/elsewhere"))));
        assert!(!r.expired(&answer(200, Some("/login"))));
        assert!(!r.expired(&answer(403, None)));
        assert!(!Relogin::default().expired(&answer(401, None)));
    }

    fn set_cookies(lines: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(header::SET_COOKIE, HeaderValue::from_static(l));
        }
        h
    }

    #[test]
    fn a_re_set_stored_cookie_is_rotated_or_deleted() {
        let two = vec![
            ("LEGACYSESSION".to_string(), "abc".to_string()),
            ("XSRF".to_string(), "t1".to_string()),
        ];
        // Only other cookies, or the same value again: nothing to store.
        assert_eq!(rotated(&two, &set_cookies(&["theme=dark; Path=/"])), None);
        assert_eq!(
            rotated(&two, &set_cookies(&["LEGACYSESSION=abc; Max-Age=600"])),
            None
        );
        assert_eq!(rotated(&two, &HeaderMap::new()), None);
        // A new session id, attributes and spacing ignored; the other cookie kept in place.
        assert_eq!(
            rotated(
                &two,
                &set_cookies(&["LEGACYSESSION = new1 ; Path=/; HttpOnly"])
            ),
            Some(vec![
                ("LEGACYSESSION".to_string(), "new1".to_string()),
                ("XSRF".to_string(), "t1".to_string()),
            ])
        );
        // Deleted: empty value, Max-Age 0 or negative, an Expires in the past.
        for deleting in [
            "XSRF=; Path=/",
            "XSRF=t2; Max-Age=0",
            "XSRF=t2; max-age=-1",
            "XSRF=t2; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            "XSRF=t2; expires=Thursday, 01-Jan-70 00:00:00 GMT",
        ] {
            assert_eq!(
                rotated(&two, &set_cookies(&[deleting])),
                Some(vec![("LEGACYSESSION".to_string(), "abc".to_string())]),
                "{deleting}"
            );
        }
        // Not deleting: a future Expires, a positive or unreadable Max-Age.
        for keeping in [
            "XSRF=t2; Expires=Fri, 01 Jan 2100 00:00:00 GMT",
            "XSRF=t2; Max-Age=60",
            "XSRF=t2; Max-Age=soon",
        ] {
            assert_eq!(
                rotated(&two, &set_cookies(&[keeping])).unwrap()[1].1,
                "t2",
                "{keeping}"
            );
        }
    }

    #[test]
    fn only_bodiless_gets_and_heads_are_sent_twice() {
        assert!(resendable(&Method::GET, true, false));
        assert!(resendable(&Method::HEAD, true, false));
        assert!(!resendable(&Method::GET, false, false));
        assert!(!resendable(&Method::GET, true, true));
        assert!(!resendable(&Method::POST, true, false));
        assert!(!resendable(&Method::DELETE, true, false));
    }
}
