//! Cookie header parsing and `Set-Cookie` construction.

use http::header::COOKIE;
use http::HeaderMap;

/// Largest `Cookie` header accepted (browsers send at most ~8 KiB per cookie).
pub const MAX_COOKIE_HEADER: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

impl SameSite {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "lax" => Some(Self::Lax),
            "strict" => Some(Self::Strict),
            "none" => Some(Self::None),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::Lax => "Lax",
            Self::Strict => "Strict",
            Self::None => "None",
        }
    }
}

/// Every value of cookie `name` in the request (there may be several: other paths/domains).
pub fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// The request's `Cookie` header(s) without cookie `name`, so the upstream never sees
/// the gateway's own cookies. `None` when nothing is left.
pub fn without_cookie(headers: &HeaderMap, names: &[&str]) -> Option<String> {
    let kept: Vec<&str> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let k = pair.split_once('=').map(|(k, _)| k.trim()).unwrap_or(pair);
            !pair.is_empty() && !names.contains(&k)
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Attributes of a cookie set by the gateway.
#[derive(Debug, Clone)]
pub struct CookieSpec {
    pub name: String,
    pub path: &'static str,
    pub domain: Option<String>,
    pub same_site: SameSite,
    pub secure: bool,
}

impl CookieSpec {
    /// `Set-Cookie` value; `max_age: None` = a browser-session cookie.
    pub fn set(&self, value: &str, max_age: Option<u64>) -> String {
        let mut s = format!("{}={}; Path={}; HttpOnly", self.name, value, self.path);
        if let Some(d) = &self.domain {
            s.push_str("; Domain=");
            s.push_str(d);
        }
        if self.secure {
            s.push_str("; Secure");
        }
        s.push_str("; SameSite=");
        s.push_str(self.same_site.as_str());
        if let Some(age) = max_age {
            s.push_str(&format!("; Max-Age={age}"));
        }
        s
    }

    pub fn clear(&self) -> String {
        self.set("", Some(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn parses_and_strips() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; tessera_session=abc; b=2"),
        );
        h.append(COOKIE, HeaderValue::from_static("tessera_session=def"));
        let v: Vec<&str> = cookie_values(&h, "tessera_session").collect();
        assert_eq!(v, vec!["abc", "def"]);
        assert_eq!(
            without_cookie(&h, &["tessera_session"]).as_deref(),
            Some("a=1; b=2")
        );
        let mut only = HeaderMap::new();
        only.insert(COOKIE, HeaderValue::from_static("tessera_session=x"));
        assert_eq!(without_cookie(&only, &["tessera_session"]), None);
    }

    #[test]
    fn set_cookie_attributes() {
        let spec = CookieSpec {
            name: "s".into(),
            path: "/",
            domain: None,
            same_site: SameSite::Lax,
            secure: true,
        };
        assert_eq!(
            spec.set("v", None),
            "s=v; Path=/; HttpOnly; Secure; SameSite=Lax"
        );
        assert_eq!(
            spec.clear(),
            "s=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn pair() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec![
                "tessera_session",
                "tessera_flow",
                "a",
                "b",
                "tessera_sessionx",
                " tessera_session",
                "tessera_session ",
            ]),
            "[a-zA-Z0-9=\"]{0,6}",
        )
            .prop_map(|(k, v)| format!("{k}={v}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// Invariants: the gateway's cookies never survive `without_cookie`, in any position
        /// or spacing; every other pair survives, in order; `cookie_values` finds exactly the
        /// gateway cookie's pairs.
        #[test]
        fn own_cookies_never_reach_the_upstream(
            lines in prop::collection::vec(prop::collection::vec(pair(), 0..6), 1..3),
            sep in prop::sample::select(vec![";", "; ", " ;  "]),
        ) {
            let own = ["tessera_session", "tessera_flow"];
            let mut h = HeaderMap::new();
            for l in &lines {
                h.append(COOKIE, HeaderValue::from_str(&l.join(sep)).unwrap());
            }
            let is_own = |p: &str| own.contains(&p.split_once('=').map(|(k, _)| k.trim()).unwrap_or(p));
            let expected: Vec<String> = lines
                .iter()
                .flatten()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty() && !is_own(p))
                .collect();
            let kept = without_cookie(&h, &own);
            match kept {
                None => prop_assert!(expected.is_empty()),
                Some(k) => {
                    let got: Vec<&str> = k.split("; ").collect();
                    prop_assert_eq!(got, expected.iter().map(String::as_str).collect::<Vec<_>>());
                }
            }
            let found = cookie_values(&h, "tessera_session").count();
            let want = lines.iter().flatten().filter(|p| p.split_once('=').map(|(k, _)| k.trim()) == Some("tessera_session")).count();
            prop_assert_eq!(found, want);
        }
    }
}
