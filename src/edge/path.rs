//! The canonical request path: the only place a request path is decoded.
//!
//! A raw path becomes one [`CanonicalPath`]: percent-decoded, repeated slashes merged, `.` and
//! `..` resolved (also when encoded), `;` path parameters split off — or the request is refused.
//! Routes and policies match `decoded`; the upstream receives `forward`, which is `decoded`
//! re-encoded with one fixed set, so decoding `forward` once gives back exactly the path that
//! was authorized. Servers that read the path differently (Tomcat's `;jsessionid`, IIS's case
//! folding and trailing dots, double decoding) are given nothing to read differently.
//!
//! Refused everywhere (400): a path not starting with `/`; encoded `/`, `\` or NUL and literal
//! `\`; malformed escapes or non-UTF-8; control characters; an encoded `;` (`%3B`); a
//! double-encoded escape (`%25` followed by two hex digits).
//!
//! Refused unless the app opts out ([`PathRules`]): `;` path parameters (or stripped before
//! matching with `pathParameters: strip`), segments ending in `.` or white space
//! (`allowTrailingDotOrSpace`). `caseInsensitivePaths` matches and forwards the lowercase path.

use percent_encoding::percent_decode_str;

/// A request path as it is matched and as it is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    /// Percent-decoded, dot segments resolved, path parameters removed: what routes and
    /// policies match against.
    pub decoded: String,
    /// `decoded` in the one canonical encoding: what the upstream receives.
    pub forward: String,
    /// Some segment carried `;` path parameters (now removed from both forms).
    pub had_parameters: bool,
    /// Some segment ends in `.` or white space (`/admin.`, `/admin%20`).
    pub trailing_dot_or_space: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with `/`")]
    NotAbsolute,
    #[error("the path contains an encoded slash, backslash or NUL")]
    EncodedSeparator,
    #[error("the path is not valid percent-encoded UTF-8")]
    BadEncoding,
    #[error("the path contains a control character")]
    ControlCharacter,
    #[error("the path contains an encoded `;`")]
    EncodedSemicolon,
    #[error("the path is encoded twice")]
    DoubleEncoding,
    #[error("the path has `;` parameters, which this application does not accept")]
    Parameters,
    #[error("a path segment ends in `.` or a space, which this application does not accept")]
    TrailingDotOrSpace,
}

/// What `;` path parameters do (`pathParameters` of a proxy app).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parameters {
    /// 400 for any path with a `;` (the default; the gateway's own endpoints always).
    #[default]
    Refuse,
    /// Removed from every segment before matching; the upstream receives the path without
    /// them (Tomcat/Jetty/Spring read `/admin;x` as `/admin`, and so does the policy).
    Strip,
}

/// An app's choices about the paths it accepts; the defaults are the strict ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathRules {
    pub parameters: Parameters,
    /// Match and forward the lowercase path (IIS and other case-insensitive upstreams).
    pub case_insensitive: bool,
    /// Accept segments ending in `.` or white space (which Windows servers strip).
    pub allow_trailing_dot_or_space: bool,
}

impl PathRules {
    /// The gateway's own endpoints and unrouted paths.
    pub const STRICT: PathRules = PathRules {
        parameters: Parameters::Refuse,
        case_insensitive: false,
        allow_trailing_dot_or_space: false,
    };

    /// The path as this app sees it, or why the app refuses it.
    pub fn apply(&self, path: CanonicalPath) -> Result<CanonicalPath, PathError> {
        if path.had_parameters && self.parameters == Parameters::Refuse {
            return Err(PathError::Parameters);
        }
        if path.trailing_dot_or_space && !self.allow_trailing_dot_or_space {
            return Err(PathError::TrailingDotOrSpace);
        }
        if self.case_insensitive {
            let decoded = fold_case(&path.decoded);
            if decoded != path.decoded {
                return Ok(CanonicalPath {
                    forward: encode(&decoded),
                    decoded,
                    ..path
                });
            }
        }
        Ok(path)
    }
}

/// The case folding of `caseInsensitivePaths` (route prefixes and policy prefixes of such an
/// app are folded the same way at compile time).
pub fn fold_case(s: &str) -> String {
    s.to_lowercase()
}

/// Makes `raw` (the request target's path, as received) canonical.
pub fn canonicalize(raw: &str) -> Result<CanonicalPath, PathError> {
    match already_canonical(raw) {
        Some(p) => Ok(p),
        None => canonicalize_any(raw),
    }
}

/// Bytes a canonical path carries as they are (everything else is `%XX`): unreserved
/// characters, sub-delimiters other than `;`, `:`, `@` and `/`.
const KEPT: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
            );
        c += 1;
    }
    t
};

/// The common case, without decoding: a path that is canonical as it stands (only kept
/// bytes, no `//`, no segment starting with `.`) is its own decoded and forwarded form.
/// Anything else takes the full route; a property test holds the two to the same answers.
fn already_canonical(raw: &str) -> Option<CanonicalPath> {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return None;
    }
    let mut trailing_dot = false;
    let mut prev = 0u8;
    for &c in b {
        if !KEPT[c as usize] || (prev == b'/' && (c == b'/' || c == b'.')) {
            return None;
        }
        trailing_dot |= c == b'/' && prev == b'.';
        prev = c;
    }
    trailing_dot |= prev == b'.';
    Some(CanonicalPath {
        decoded: raw.to_string(),
        forward: raw.to_string(),
        had_parameters: false,
        trailing_dot_or_space: trailing_dot,
    })
}

/// Any path: decoded segment by segment.
fn canonicalize_any(raw: &str) -> Result<CanonicalPath, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if raw.contains('\\') || has_escape(raw, &["2f", "5c", "00"]) {
        return Err(PathError::EncodedSeparator);
    }
    if has_escape(raw, &["3b"]) {
        return Err(PathError::EncodedSemicolon);
    }
    let mut segments: Vec<String> = Vec::new();
    let mut had_parameters = false;
    for seg in raw.split('/').skip(1) {
        // Parameters are split off the raw segment, before decoding: `..;x` is a `..`.
        let name = match seg.split_once(';') {
            Some((name, _)) => {
                had_parameters = true;
                name
            }
            None => seg,
        };
        if name.contains('%') && !valid_escapes(name) {
            return Err(PathError::BadEncoding);
        }
        let decoded = percent_decode_str(name)
            .decode_utf8()
            .map_err(|_| PathError::BadEncoding)?;
        if decoded.chars().any(char::is_control) {
            return Err(PathError::ControlCharacter);
        }
        if decoded.contains('%') && !valid_escapes_free(&decoded) {
            return Err(PathError::DoubleEncoding);
        }
        match decoded.as_ref() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(decoded.into_owned()),
        }
    }
    // A trailing slash is meaningful to many apps (directory vs file): keep it.
    let last = raw.rsplit('/').next().unwrap_or("");
    let last = last.split(';').next().unwrap_or("");
    let trailing_slash = raw.len() > 1 && matches!(last, "" | "." | ".." | "%2e" | "%2E")
        || is_encoded_dot_dot(last);
    let mut decoded = String::with_capacity(raw.len());
    for s in &segments {
        decoded.push('/');
        decoded.push_str(s);
    }
    if decoded.is_empty() || trailing_slash {
        decoded.push('/');
    }
    let trailing_dot_or_space = segments
        .iter()
        .any(|s| s.ends_with('.') || s.ends_with(char::is_whitespace));
    Ok(CanonicalPath {
        forward: encode(&decoded),
        decoded,
        had_parameters,
        trailing_dot_or_space,
    })
}

fn is_encoded_dot_dot(seg: &str) -> bool {
    seg.len() > 2
        && percent_decode_str(seg)
            .decode_utf8()
            .is_ok_and(|d| d == "..")
}

/// Does `raw` contain `%XY` for one of `escapes` (lowercase hex pairs), in either case?
fn has_escape(raw: &str, escapes: &[&str]) -> bool {
    let b = raw.as_bytes();
    b.windows(3).any(|w| {
        w[0] == b'%'
            && escapes.iter().any(|e| {
                let e = e.as_bytes();
                w[1].eq_ignore_ascii_case(&e[0]) && w[2].eq_ignore_ascii_case(&e[1])
            })
    })
}

/// Every `%` starts a two-digit hex escape.
fn valid_escapes(seg: &str) -> bool {
    let b = seg.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() {
                return false;
            }
            if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// A decoded segment holds no `%XY` escape (which a second decoding would turn into
/// something else).
fn valid_escapes_free(decoded: &str) -> bool {
    !decoded
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// The one canonical encoding of a decoded path: unreserved characters, sub-delimiters other
/// than `;`, `:`, `@` and `/` stay as they are; everything else is `%XX` (uppercase) of its
/// UTF-8 bytes.
pub fn encode(decoded: &str) -> String {
    let mut out = String::with_capacity(decoded.len());
    for &b in decoded.as_bytes() {
        if KEPT[b as usize] {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

/// Does `path` fall under `prefix` on a segment boundary (`/app` covers `/app` and
/// `/app/x`, not `/apple`)?
pub fn under_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" || prefix.is_empty() {
        return true;
    }
    let prefix = prefix.trim_end_matches('/');
    path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> (String, String) {
        let r = canonicalize(p).unwrap();
        (r.decoded, r.forward)
    }

    #[test]
    fn canonicalizes() {
        assert_eq!(n("/"), ("/".into(), "/".into()));
        assert_eq!(n("//admin"), ("/admin".into(), "/admin".into()));
        assert_eq!(n("/public/../admin"), ("/admin".into(), "/admin".into()));
        assert_eq!(
            n("/public/%2e%2e/admin"),
            ("/admin".into(), "/admin".into())
        );
        assert_eq!(n("/a/./b/"), ("/a/b/".into(), "/a/b/".into()));
        // The upstream receives the canonical encoding, not the client's.
        assert_eq!(n("/%61dmin"), ("/admin".into(), "/admin".into()));
        assert_eq!(n("/../../etc"), ("/etc".into(), "/etc".into()));
        assert_eq!(n("/a%20b"), ("/a b".into(), "/a%20b".into()));
        assert_eq!(n("/a/.."), ("/".into(), "/".into()));
        assert_eq!(n("/a/%2E%2E"), ("/".into(), "/".into()));
        assert_eq!(n("/caf%C3%A9"), ("/café".into(), "/caf%C3%A9".into()));
        assert_eq!(n("/café"), ("/café".into(), "/caf%C3%A9".into()));
        assert_eq!(
            n("/a+b=c,d@e:f"),
            ("/a+b=c,d@e:f".into(), "/a+b=c,d@e:f".into())
        );
        assert_eq!(n("/100%25"), ("/100%".into(), "/100%25".into()));
        assert_eq!(n("/a%22b%3c"), ("/a\"b<".into(), "/a%22b%3C".into()));
    }

    #[test]
    fn path_parameters_are_split_off_before_dot_segments() {
        let p = canonicalize("/public/..;/admin").unwrap();
        assert_eq!((p.decoded.as_str(), p.had_parameters), ("/admin", true));
        let p = canonicalize("/admin;jsessionid=1/users").unwrap();
        assert_eq!(
            (p.forward.as_str(), p.had_parameters),
            ("/admin/users", true)
        );
        let p = canonicalize("/admin/secret;.css").unwrap();
        assert_eq!(p.decoded, "/admin/secret");
        let p = canonicalize("/x/.;/y").unwrap();
        assert_eq!(p.decoded, "/x/y");
        assert!(!canonicalize("/admin").unwrap().had_parameters);
        assert_eq!(
            PathRules::default().apply(canonicalize("/admin;x").unwrap()),
            Err(PathError::Parameters)
        );
        let strip = PathRules {
            parameters: Parameters::Strip,
            ..PathRules::default()
        };
        assert_eq!(
            strip
                .apply(canonicalize("/admin;x").unwrap())
                .unwrap()
                .forward,
            "/admin"
        );
    }

    #[test]
    fn trailing_dots_and_spaces_and_case() {
        for p in [
            "/admin.",
            "/admin%20",
            "/admin%09x/..",
            "/a/admin./b",
            "/admin..",
            "/admin%E3%80%80",
        ] {
            let c = canonicalize(p);
            if p == "/admin%09x/.." {
                assert_eq!(c, Err(PathError::ControlCharacter), "{p}");
                continue;
            }
            let c = c.unwrap();
            assert!(c.trailing_dot_or_space, "{p}");
            assert_eq!(
                PathRules::default().apply(c.clone()),
                Err(PathError::TrailingDotOrSpace),
                "{p}"
            );
            let lax = PathRules {
                allow_trailing_dot_or_space: true,
                ..PathRules::default()
            };
            assert_eq!(lax.apply(c.clone()).unwrap(), c);
        }
        assert!(!canonicalize("/a.b/c.d").unwrap().trailing_dot_or_space);
        let ci = PathRules {
            case_insensitive: true,
            ..PathRules::default()
        };
        let p = ci
            .apply(canonicalize("/ADMIN/Users%C3%89").unwrap())
            .unwrap();
        assert_eq!(
            (p.decoded.as_str(), p.forward.as_str()),
            ("/admin/usersé", "/admin/users%C3%A9")
        );
    }

    #[test]
    fn refuses() {
        let e = |p| canonicalize(p).unwrap_err();
        assert_eq!(e("/a%2fb"), PathError::EncodedSeparator);
        assert_eq!(e("/a%5Cb"), PathError::EncodedSeparator);
        assert_eq!(e("/a\\b"), PathError::EncodedSeparator);
        assert_eq!(e("/a%00"), PathError::EncodedSeparator);
        assert_eq!(e("/a%ff"), PathError::BadEncoding);
        assert_eq!(e("/a%zz"), PathError::BadEncoding);
        assert_eq!(e("/a%4"), PathError::BadEncoding);
        assert_eq!(e("/a%"), PathError::BadEncoding);
        assert_eq!(e("a"), PathError::NotAbsolute);
        assert_eq!(e("*"), PathError::NotAbsolute);
        assert_eq!(e("/a%0ab"), PathError::ControlCharacter);
        assert_eq!(e("/a%7f"), PathError::ControlCharacter);
        assert_eq!(e("/admin%3bx"), PathError::EncodedSemicolon);
        assert_eq!(e("/admin%3B"), PathError::EncodedSemicolon);
        assert_eq!(e("/%252e%252e/admin"), PathError::DoubleEncoding);
        assert_eq!(e("/a%2541"), PathError::DoubleEncoding);
    }

    #[test]
    fn prefixes() {
        assert!(under_prefix("/app", "/app"));
        assert!(under_prefix("/app/x", "/app/"));
        assert!(!under_prefix("/apple", "/app"));
        assert!(under_prefix("/anything", "/"));
    }
}

/// Properties of the canonicaliser, over paths built from the pieces attacks are made of.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::proxy::policy::{Authorization, Location, Policy, PolicySet};
    use proptest::prelude::*;

    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "/", "/", "/", ".", "..", ";", ";x=1", "%2e", "%2E", "%2f", "%5c", "%3b", "%25",
            "%2541", "%20", " ", "%00", "%0a", "%ff", "%C3%A9", "é", "\\", "%", "%4", "a", "A",
            "admin", "Admin", "public", "x.css", "+", "=", "@", ":", "~", "%7e", "%41",
        ])
    }

    fn raw_path() -> impl Strategy<Value = String> {
        prop::collection::vec(piece(), 0..20).prop_map(|p| format!("/{}", p.concat()))
    }

    fn decode(s: &str) -> String {
        percent_decode_str(s).decode_utf8().unwrap().into_owned()
    }

    fn policy(loc: &str) -> Policy {
        Policy {
            location_text: loc.into(),
            location: Location::parse(loc).unwrap(),
            allow_unauthenticated: false,
            idps: vec![],
            authorization: Authorization::AllowAll,
            is_authenticated_se: None,
            authenticate_se: None,
            bearer: None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// Invariant: a path is refused, or its canonical form is a fixed point — the forwarded
        /// path decodes to exactly the matched path, has no dot segments, empty segments,
        /// parameters, controls, backslashes or encoded separators, and canonicalising it again
        /// changes nothing.
        #[test]
        fn canonical_paths_are_fixed_points(raw in raw_path()) {
            let Ok(c) = canonicalize(&raw) else { return Ok(()) };
            prop_assert_eq!(decode(&c.forward), c.decoded.clone());
            prop_assert!(c.decoded.starts_with('/'));
            prop_assert!(!c.forward.contains(';') && !c.forward.contains('\\'));
            prop_assert!(!c.decoded.chars().any(char::is_control));
            let body = c.decoded.trim_end_matches('/');
            for seg in body.split('/').skip(1) {
                prop_assert!(!seg.is_empty() && seg != "." && seg != "..", "segment {:?} in {:?}", seg, c.decoded);
            }
            let again = canonicalize(&c.forward).unwrap();
            prop_assert_eq!(&again.decoded, &c.decoded);
            prop_assert_eq!(&again.forward, &c.forward);
            prop_assert!(!again.had_parameters);
            prop_assert_eq!(again.trailing_dot_or_space, c.trailing_dot_or_space);
        }

        /// Invariant: if the canonical path matches policy P, the upstream receives exactly that
        /// path — the upstream, decoding what it is sent, lands under the same policy (for every
        /// app rule set, strict or lax).
        #[test]
        fn the_upstream_receives_the_path_the_policy_saw(
            raw in raw_path(),
            strip in any::<bool>(),
            ci in any::<bool>(),
            lax in any::<bool>(),
        ) {
            let set = PolicySet::new(vec![
                policy("/"),
                policy("/public"),
                policy("/admin"),
                policy("~ \\.(css|js)$"),
            ]);
            let rules = PathRules {
                parameters: if strip { Parameters::Strip } else { Parameters::Refuse },
                case_insensitive: ci,
                allow_trailing_dot_or_space: lax,
            };
            let Ok(c) = canonicalize(&raw) else { return Ok(()) };
            let Ok(c) = rules.apply(c) else { return Ok(()) };
            let seen = set.find(&c.decoded).map(|p| p.location_text.clone());
            let upstream_path = decode(&c.forward);
            prop_assert_eq!(&upstream_path, &c.decoded);
            let upstream_seen = set.find(&upstream_path).map(|p| p.location_text.clone());
            prop_assert_eq!(seen, upstream_seen);
            if ci {
                prop_assert_eq!(fold_case(&c.decoded), c.decoded.clone());
            }
            if !strip {
                prop_assert!(!raw.contains(';'), "a `;` passed in refuse mode: {}", raw);
            }
            if !lax {
                prop_assert!(!c.trailing_dot_or_space);
            }
        }

        /// Invariant: the shortcut for already-canonical paths answers exactly as the full
        /// route does.
        #[test]
        fn the_shortcut_agrees_with_the_full_route(raw in raw_path()) {
            if let Some(fast) = already_canonical(&raw) {
                prop_assert_eq!(Ok(fast), canonicalize_any(&raw));
            }
        }

        /// Invariant: the strict rules (the gateway's own endpoints) accept only paths that
        /// need no app's leniency.
        #[test]
        fn strict_rules_refuse_parameters_and_trailing_dots(raw in raw_path()) {
            if let Ok(c) = canonicalize(&raw).and_then(|c| PathRules::STRICT.apply(c)) {
                prop_assert!(!raw.contains(';'));
                prop_assert!(!c.trailing_dot_or_space);
            }
        }
    }
}
