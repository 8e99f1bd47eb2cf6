//! Header names as upstream frameworks read them. CGI, WSGI, Rack and PHP turn `X-User`,
//! `X_User` and `x.user` into one variable (`HTTP_X_USER`), so a client header is stripped
//! when its *normalised* name — lowercase, `_` and `.` read as `-` — is one the gateway
//! protects: the identity headers it injects, and the trust and routing headers only it may
//! set.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName};

/// Headers that say where a request came from or where it should go. Upstream frameworks
/// believe them (Symfony/IIS `X-Original-URL` rewrites the routed path; `X-Real-IP`,
/// `Forwarded` and `X-Forwarded-*` feed access checks and generated URLs), so a client's copy
/// never reaches an upstream; the gateway sets `X-Forwarded-For`, `-Proto` and `-Host` itself.
pub const TRUST_HEADERS: [&str; 16] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-original-host",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
];

/// `name` as a CGI-style server reads it: lowercase, with `_` and `.` as `-`.
pub fn normalize(name: &str) -> Cow<'_, str> {
    if name
        .bytes()
        .any(|b| b == b'_' || b == b'.' || b.is_ascii_uppercase())
    {
        Cow::Owned(
            name.bytes()
                .map(|b| match b {
                    b'_' | b'.' => '-',
                    b => b.to_ascii_lowercase() as char,
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(name)
    }
}

/// A set of protected header names, normalised, sorted for a binary search.
#[derive(Debug, Clone, Default)]
pub struct ProtectedNames {
    names: Vec<String>,
}

impl ProtectedNames {
    /// The trust headers plus `extra` (an app's identity headers).
    pub fn with_trust_headers<'a>(extra: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names: Vec<String> = TRUST_HEADERS
            .iter()
            .copied()
            .chain(extra)
            .map(|n| normalize(n).into_owned())
            .collect();
        names.sort();
        names.dedup();
        Self { names }
    }

    /// Is `name` (any spelling) protected?
    pub fn protects(&self, name: &str) -> bool {
        let name = normalize(name);
        self.names
            .binary_search_by(|n| n.as_str().cmp(&name))
            .is_ok()
    }

    /// Removes every header that any spelling of a protected name reaches. HTTP/1 and HTTP/2
    /// header names arrive lowercase, so only names holding `_` or `.` need normalising.
    pub fn strip(&self, headers: &mut HeaderMap) {
        let mut doomed: Vec<HeaderName> = Vec::new();
        for name in headers.keys() {
            if self.protects(name.as_str()) {
                doomed.push(name.clone());
            }
        }
        for name in doomed {
            headers.remove(name);
        }
    }
}

/// Removes every header whose normalised name equals `name`'s (a hook's header: the client's
/// copies, in any spelling, go).
pub fn strip_variants(headers: &mut HeaderMap, name: &HeaderName) {
    let want = normalize(name.as_str());
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| normalize(k.as_str()) == want)
        .cloned()
        .collect();
    for k in doomed {
        headers.remove(k);
    }
}

/// Headers that may not be configured as identity headers (nor set by an extension): the
/// proxy manages them.
pub fn reserved(name: &http::HeaderName) -> bool {
    [
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "cookie",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
    ]
    .contains(&name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn variants_normalise_to_one_name() {
        assert_eq!(normalize("x-user"), "x-user");
        assert_eq!(normalize("X_User"), "x-user");
        assert_eq!(normalize("x.user"), "x-user");
        assert_eq!(normalize("x_forwarded.for"), "x-forwarded-for");
        assert!(matches!(normalize("x-user"), Cow::Borrowed(_)));
    }

    #[test]
    fn strips_every_spelling_of_protected_names() {
        let set = ProtectedNames::with_trust_headers(["x-user", "X-Groups"]);
        let mut h = HeaderMap::new();
        for n in [
            "x-user",
            "x_user",
            "x.user",
            "x_groups",
            "x-real-ip",
            "x_original_url",
            "forwarded",
            "x-forwarded-for",
            "x-kept",
            "x-users",
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        h.append("x-user", HeaderValue::from_static("second"));
        set.strip(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort();
        assert_eq!(left, ["x-kept", "x-users"]);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    /// A spelling of `word-word`: any case, any of `-`, `_`, `.` between the words.
    fn spelling(words: &'static [&'static str]) -> impl Strategy<Value = String> {
        (
            prop::collection::vec(any::<bool>(), 32),
            prop::collection::vec(prop::sample::select(vec!['-', '_', '.']), 4),
        )
            .prop_map(move |(upper, seps)| {
                let mut out = String::new();
                let mut k = 0;
                for (i, w) in words.iter().enumerate() {
                    if i > 0 {
                        out.push(seps[i - 1]);
                    }
                    for c in w.chars() {
                        out.push(if upper[k % 32] {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        });
                        k += 1;
                    }
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// Invariant: no client header whose normalised name is an identity or trust header
        /// survives `strip`, whatever its spelling or how often it is repeated; other headers
        /// all survive.
        #[test]
        fn no_spelling_of_a_protected_header_survives(
            user in spelling(&["x", "user"]),
            xff in spelling(&["x", "forwarded", "for"]),
            orig in spelling(&["x", "original", "url"]),
            other in spelling(&["x", "userx"]),
            repeat in 1usize..4,
        ) {
            let set = ProtectedNames::with_trust_headers(["X-User"]);
            let mut h = HeaderMap::new();
            for name in [&user, &xff, &orig, &other] {
                let n = HeaderName::from_bytes(name.as_bytes()).unwrap();
                for _ in 0..repeat {
                    h.append(n.clone(), HeaderValue::from_static("forged"));
                }
            }
            set.strip(&mut h);
            for name in h.keys() {
                prop_assert!(!set.protects(name.as_str()), "{} survived", name);
            }
            prop_assert_eq!(h.len(), repeat);
        }
    }
}
