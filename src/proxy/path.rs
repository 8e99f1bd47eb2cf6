//! Request-path normalization. Policies are matched against the normalized path and the
//! upstream receives that same path, so the gateway and the app can never disagree about
//! which resource was authorized (`/public/../admin`, `//admin`, `/%61dmin` …).

use percent_encoding::percent_decode_str;

/// A path as it is matched and as it is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    /// Percent-decoded; what policies and routes match against.
    pub decoded: String,
    /// Same segments in their original encoding; what the upstream receives.
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with `/`")]
    NotAbsolute,
    #[error("the path contains an encoded slash, backslash or NUL")]
    EncodedSeparator,
    #[error("the path is not valid percent-encoded UTF-8")]
    BadEncoding,
}

/// Merges repeated slashes and resolves `.`/`..` segments (also when percent-encoded).
/// Refuses encoded `/`, `\` and NUL, and literal backslashes: those mean different things
/// to different servers, so they are rejected rather than guessed at.
pub fn normalize(raw: &str) -> Result<NormalizedPath, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let lower = raw.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") || raw.contains('\\')
    {
        return Err(PathError::EncodedSeparator);
    }
    let mut raw_segs: Vec<&str> = Vec::new();
    let mut dec_segs: Vec<String> = Vec::new();
    for seg in raw.split('/').skip(1) {
        if seg.contains('%') && !valid_escapes(seg) {
            return Err(PathError::BadEncoding);
        }
        let decoded = percent_decode_str(seg)
            .decode_utf8()
            .map_err(|_| PathError::BadEncoding)?;
        match decoded.as_ref() {
            "" | "." => {}
            ".." => {
                raw_segs.pop();
                dec_segs.pop();
            }
            _ => {
                raw_segs.push(seg);
                dec_segs.push(decoded.into_owned());
            }
        }
    }
    // A trailing slash is meaningful to many apps (directory vs file): keep it.
    let trailing =
        raw.len() > 1 && (raw.ends_with('/') || raw.ends_with("/.") || raw.ends_with("/.."));
    let join = |segs: &[String]| {
        let mut s = String::with_capacity(raw.len());
        for seg in segs {
            s.push('/');
            s.push_str(seg);
        }
        if s.is_empty() || trailing {
            s.push('/');
        }
        s
    };
    let raw_owned: Vec<String> = raw_segs.iter().map(|s| s.to_string()).collect();
    Ok(NormalizedPath {
        decoded: join(&dec_segs),
        raw: join(&raw_owned),
    })
}

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
        let r = normalize(p).unwrap();
        (r.decoded, r.raw)
    }

    #[test]
    fn normalizes() {
        assert_eq!(n("/"), ("/".into(), "/".into()));
        assert_eq!(n("//admin"), ("/admin".into(), "/admin".into()));
        assert_eq!(n("/public/../admin"), ("/admin".into(), "/admin".into()));
        assert_eq!(
            n("/public/%2e%2e/admin"),
            ("/admin".into(), "/admin".into())
        );
        assert_eq!(n("/a/./b/"), ("/a/b/".into(), "/a/b/".into()));
        assert_eq!(n("/%61dmin"), ("/admin".into(), "/%61dmin".into()));
        assert_eq!(n("/../../etc"), ("/etc".into(), "/etc".into()));
        assert_eq!(n("/a%20b"), ("/a b".into(), "/a%20b".into()));
        assert_eq!(n("/a/.."), ("/".into(), "/".into()));
    }

    #[test]
    fn rejects() {
        assert_eq!(normalize("/a%2fb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a%5Cb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a\\b"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a%00"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize("/a%ff"), Err(PathError::BadEncoding));
        assert_eq!(normalize("/a%zz"), Err(PathError::BadEncoding));
        assert_eq!(normalize("/a%4"), Err(PathError::BadEncoding));
        assert_eq!(normalize("a"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn prefixes() {
        assert!(under_prefix("/app", "/app"));
        assert!(under_prefix("/app/x", "/app/"));
        assert!(!under_prefix("/apple", "/app"));
        assert!(under_prefix("/anything", "/"));
    }
}
